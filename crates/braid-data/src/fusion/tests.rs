use super::*;

fn meta() -> FusionMeta {
    let input = |name: &str, modality, shape: &[usize]| FusionInputMeta {
        name: name.into(),
        modality,
        shape: shape.to_vec(),
    };
    FusionMeta {
        classes: vec!["a".into(), "b".into(), "c".into()],
        inputs: vec![input("acc", Modality::Imu, &[3, 4]), input("image", Modality::Image, &[2])],
        about: "tiny".into(),
    }
}

fn split(n: usize, offset: f32) -> FusionSplit {
    let t = |per: usize, shape: &[usize]| {
        let v: Vec<f32> = (0..n * per).map(|i| i as f32 + offset).collect();
        Tensor::from_vec(v, [&[n][..], shape].concat(), &Device::Cpu).unwrap()
    };
    FusionSplit {
        inputs: vec![t(12, &[3, 4]), t(2, &[2])],
        labels: (0..n).map(|i| i % 3).collect(),
        groups: Some((0..n).map(|i| 10 + i / 2).collect()),
    }
}

fn dataset() -> FusionDataset {
    FusionDataset { meta: meta(), train: split(5, 0.0), test: split(2, 0.5) }
}

#[test]
fn a_written_dataset_loads_back_the_same() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("ds");
    let ds = dataset();
    ds.write(&out).unwrap();
    let back = FusionDataset::load(&out).unwrap();
    assert_eq!(back.meta, ds.meta);
    for (a, b) in [(&back.train, &ds.train), (&back.test, &ds.test)] {
        assert_eq!((&a.labels, &a.groups), (&b.labels, &b.groups));
        for (x, y) in a.inputs.iter().zip(&b.inputs) {
            assert_eq!(x.dims(), y.dims());
            assert_eq!(braid_core::testing::max_abs_diff(x, y).unwrap(), 0.0);
        }
    }
    assert_eq!((back.train.len(), back.test.len(), back.train.is_empty()), (5, 2, false));
    assert_eq!((back.meta.input("image"), back.meta.input("gyro")), (Some(1), None));
    assert_eq!(back.train.class_counts(3), [2, 2, 1]);
    assert_eq!(back.to_string(), "train 5, test 2; acc imu [3, 4], image image [2]; 3 classes");
    // Written again: the folder is replaced whole, groups may be absent.
    let mut no_groups = dataset();
    no_groups.test.groups = None;
    no_groups.write(&out).unwrap();
    assert_eq!(FusionDataset::load(&out).unwrap().test.groups, None);
}

/// Writes `ds` past the checks of `write`, as another tool might.
fn write_raw(ds: &FusionDataset, dir: &Path, meta_json: Option<&str>) {
    std::fs::create_dir_all(dir).unwrap();
    let json = serde_json::to_string(&ds.meta).unwrap();
    std::fs::write(dir.join(META_FILE), meta_json.unwrap_or(&json)).unwrap();
    for (file, s) in [(TRAIN_FILE, &ds.train), (TEST_FILE, &ds.test)] {
        candle_core::safetensors::save(&s.tensors(&ds.meta).unwrap(), dir.join(file)).unwrap();
    }
}

/// The load error of `ds` written raw (and the write error, which must agree on content).
fn load_error(ds: &FusionDataset, meta_json: Option<&str>) -> String {
    let dir = tempfile::tempdir().unwrap();
    write_raw(ds, dir.path(), meta_json);
    let e = FusionDataset::load(dir.path()).unwrap_err().to_string();
    assert!(!e.contains('\n'), "{e}");
    if meta_json.is_none() {
        let w = ds.write(&dir.path().join("again")).unwrap_err().to_string();
        assert!(w.contains(&dir.path().join("again").display().to_string()), "{w}");
    }
    e
}

#[test]
fn bad_descriptions_are_refused_naming_the_file_and_field() {
    let json = serde_json::to_string(&meta()).unwrap();
    let extra = json.replacen('{', r#"{"labels": 3, "#, 1);
    let e = load_error(&dataset(), Some(&extra));
    assert!(e.contains("fusion.json") && e.contains("unknown field `labels`"), "{e}");
    let extra_input = json.replacen(r#""shape""#, r#""dtype": "f32", "shape""#, 1);
    assert!(load_error(&dataset(), Some(&extra_input)).contains("unknown field `dtype`"));
    let bad_modality = json.replacen("imu", "smell", 1);
    assert!(load_error(&dataset(), Some(&bad_modality)).contains("unknown variant `smell`"));

    let mut ds = dataset();
    ds.meta.inputs[1].name = "acc".into();
    let e = load_error(&ds, None);
    assert!(e.contains("fusion.json") && e.contains("`acc` is used twice"), "{e}");
    let mut ds = dataset();
    ds.meta.inputs.clear();
    ds.train.inputs.clear();
    ds.test.inputs.clear();
    assert!(load_error(&ds, None).contains("`inputs` is empty"));
    let mut ds = dataset();
    ds.meta.classes.clear();
    assert!(load_error(&ds, None).contains("`classes` is empty"));
}

#[test]
fn missing_files_and_tensors_are_named() {
    let dir = tempfile::tempdir().unwrap();
    let e = FusionDataset::load(dir.path()).unwrap_err().to_string();
    assert!(e.contains("fusion.json"), "{e}");
    write_raw(&dataset(), dir.path(), None);
    std::fs::remove_file(dir.path().join(TEST_FILE)).unwrap();
    let e = FusionDataset::load(dir.path()).unwrap_err().to_string();
    assert!(e.contains("test.safetensors"), "{e}");

    // An input missing from a split: the description names one the file lacks.
    let mut renamed = meta();
    renamed.inputs[1].name = "audio".into();
    let json = serde_json::to_string(&renamed).unwrap();
    let e = load_error(&dataset(), Some(&json));
    assert!(e.contains("train.safetensors") && e.contains("no tensor `audio`"), "{e}");
    // A tensor the description does not name.
    let mut fewer = meta();
    fewer.inputs.pop();
    let json = serde_json::to_string(&fewer).unwrap();
    let e = load_error(&dataset(), Some(&json));
    assert!(e.contains("tensor `image` is neither an input"), "{e}");
    std::fs::write(dir.path().join(TRAIN_FILE), b"not safetensors").unwrap();
    let e = FusionDataset::load(dir.path()).unwrap_err().to_string();
    assert!(e.contains("train.safetensors: not a readable safetensors file"), "{e}");
}

#[test]
fn bad_splits_are_refused_naming_the_tensor() {
    let mut ds = dataset();
    ds.train.inputs[0] = Tensor::zeros((5, 3, 5), DType::F32, &Device::Cpu).unwrap();
    let e = load_error(&ds, None);
    assert!(
        e.contains("train.safetensors")
            && e.contains("tensor `acc`: per-sample shape [3, 5], expected [3, 4]"),
        "{e}"
    );
    let mut ds = dataset();
    ds.test.inputs[1] = Tensor::zeros((3, 2), DType::F32, &Device::Cpu).unwrap();
    let e = load_error(&ds, None);
    assert!(e.contains("test.safetensors") && e.contains("`image` has 3 samples, `label` has 2"));
    let mut ds = dataset();
    ds.train.labels[4] = 3;
    let e = load_error(&ds, None);
    assert!(e.contains("sample 4 has label 3, but there are 3 classes"), "{e}");
    let mut ds = dataset();
    ds.test = split(0, 0.0);
    ds.test.groups = None;
    let e = load_error(&ds, None);
    assert!(e.contains("test.safetensors: no samples"), "{e}");
    let mut ds = dataset();
    let mut v = vec![0f32; 2 * 2];
    v[3] = f32::NAN;
    ds.test.inputs[1] = Tensor::from_vec(v, (2, 2), &Device::Cpu).unwrap();
    let e = load_error(&ds, None);
    assert!(e.contains("tensor `image`: non-finite value NaN in sample 1"), "{e}");
    let mut ds = dataset();
    ds.train.groups = Some(vec![1, 2]);
    assert!(load_error(&ds, None).contains("`group` has 2 samples, `label` has 5"));
    let mut ds = dataset();
    ds.train.inputs[0] = ds.train.inputs[0].to_dtype(DType::F64).unwrap();
    assert!(load_error(&ds, None).contains("tensor `acc` is F64; expected f32"));
}
