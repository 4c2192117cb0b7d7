//! Reads the shared HAPT archive when it is present (CI may not have it).

use braid_core::checkpoint::{read_npz, NpyData};

#[test]
fn reads_hapt_npz() -> anyhow::Result<()> {
    let path = std::path::Path::new("/work/shared/data/hapt.npz");
    if !path.exists() {
        eprintln!("note: {} is absent; skipping", path.display());
        return Ok(());
    }
    let arrays = read_npz(path)?;
    assert_eq!(arrays.len(), 122);
    let get = |k: &str| arrays.iter().find(|(n, _)| n == k).map(|(_, a)| a);
    let imu = get("u01_r0_imu").ok_or_else(|| anyhow::anyhow!("no u01_r0_imu"))?;
    let label = get("u01_r0_label").ok_or_else(|| anyhow::anyhow!("no u01_r0_label"))?;
    assert!(matches!(imu.data, NpyData::F32(_)));
    assert!(matches!(label.data, NpyData::I8(_)));
    assert_eq!(imu.shape.len(), 2);
    assert_eq!(imu.shape[1], 6);
    assert_eq!(label.shape, vec![imu.shape[0]]);
    let t = imu.to_tensor(&candle_core::Device::Cpu)?;
    assert_eq!(t.dims(), imu.shape.as_slice());
    // Row 1 as Python's zipfile + struct read it (the archive is stored fortran_order).
    let row: Vec<f32> = t.get(1)?.to_vec1()?;
    let want = [0.911_111_1, -0.093_055_56, 0.5375, -0.012_522_737, 0.019_242_255, -0.038_484_51];
    for (a, b) in row.iter().zip(want) {
        assert!((a - b).abs() < 1e-6, "{row:?}");
    }
    Ok(())
}
