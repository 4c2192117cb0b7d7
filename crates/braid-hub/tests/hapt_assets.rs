//! The HAPT npz produced by `braid fetch hapt` must equal the reference conversion
//! (`/work/shared/data/hapt.npz`), checked through a committed table of per-array sha256
//! digests of the raw little-endian data (`fixtures/hub/hapt_digests.json`), so the test
//! needs neither the reference file nor the network. Skipped, with a note, when the asset
//! is not in the cache, unless `BRAID_REQUIRE_ASSETS=1` (CI sets it after fetching).
#![allow(clippy::unwrap_used, clippy::panic)] // test helpers fail loudly

use braid_core::checkpoint::npy::{read_npz, NpyData};
use sha2::{Digest, Sha256};

fn raw_le(d: &NpyData) -> (Vec<u8>, &'static str) {
    match d {
        NpyData::F32(v) => (v.iter().flat_map(|x| x.to_le_bytes()).collect(), "<f4"),
        NpyData::I8(v) => (v.iter().map(|&x| x as u8).collect(), "|i1"),
        other => panic!("unexpected dtype {other:?}"),
    }
}

#[test]
fn fetched_hapt_matches_reference_digests() {
    let path = braid_hub::home().join("datasets/hapt/hapt.npz");
    if !path.is_file() {
        assert!(
            std::env::var("BRAID_REQUIRE_ASSETS").as_deref() != Ok("1"),
            "{} is missing and BRAID_REQUIRE_ASSETS=1; run `braid fetch hapt`",
            path.display()
        );
        eprintln!("note: skipping, {} is missing (run `braid fetch hapt`)", path.display());
        return;
    }
    let table: serde_json::Value =
        serde_json::from_str(include_str!("../../../fixtures/hub/hapt_digests.json")).unwrap();
    let table = table.as_object().unwrap();
    let arrays = read_npz(&path).unwrap();
    assert_eq!(arrays.len(), table.len(), "number of arrays");
    assert_eq!(table.len(), 122);
    for (name, a) in &arrays {
        let want = table.get(name).unwrap_or_else(|| panic!("unexpected array {name}"));
        let (raw, dtype) = raw_le(&a.data);
        assert_eq!(want["dtype"], dtype, "{name} dtype");
        let shape: Vec<usize> = want["shape"]
            .as_array()
            .unwrap()
            .iter()
            .map(|d| d.as_u64().unwrap() as usize)
            .collect();
        assert_eq!(a.shape, shape, "{name} shape");
        assert_eq!(want["sha256"], hex::encode(Sha256::digest(&raw)), "{name} data");
    }
}
