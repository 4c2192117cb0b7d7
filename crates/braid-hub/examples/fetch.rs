//! `cargo run -p braid-hub --example fetch -- NAME...`: fetch without the `braid` binary.

fn main() -> braid_core::Result<()> {
    let opts = braid_hub::FetchOptions::default();
    for name in std::env::args().skip(1) {
        let t = std::time::Instant::now();
        let f = braid_hub::fetch(&name, &opts)?;
        let how = if f.downloaded { "fetched" } else { "already present" };
        println!("{name}: {how} in {:.1}s -> {}", t.elapsed().as_secs_f64(), f.main.display());
    }
    Ok(())
}
