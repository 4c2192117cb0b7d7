//! Fuzzing braid-core's parsers (issue 17): `.npy`, `.npz`, safetensors, GGUF (metadata
//! and tensor table) and the pickle reader get structured mutations of valid files
//! (`fuzz/mutate.rs`) and must answer `Ok` or `Err`, never panic, within a time bound.
//! Whatever they accept is read through to its data, so a header that lies about its
//! extents is caught where the data is used, not only where it is parsed.
#![allow(clippy::unwrap_used, clippy::panic)]

use std::collections::HashMap;

use braid_core::checkpoint::{read_npy, read_npz, write_npy, write_npz, Checkpoint, Gguf};
use braid_core::checkpoint::{NpyArray, NpyData};
use candle_core::quantized::{gguf_file, GgmlDType, QTensor};
use candle_core::{DType, Device, Tensor};

#[path = "fuzz/mutate.rs"]
mod mutate;
use mutate::{fuzz, fuzz_file, Scratch};

fn arrays() -> Vec<(String, NpyArray)> {
    vec![
        ("x".into(), NpyArray { shape: vec![2, 3], data: NpyData::F32(vec![1.0; 6]) }),
        ("label".into(), NpyArray { shape: vec![3], data: NpyData::I64(vec![0, 1, 2]) }),
        ("b".into(), NpyArray { shape: vec![2, 2], data: NpyData::U8(vec![1, 2, 3, 4]) }),
    ]
}

/// Every tensor of an opened checkpoint, read as f32 (lies about extents show here).
fn read_all(ckpt: &Checkpoint) {
    for name in ckpt.names() {
        let _ = ckpt.shape(&name);
        let _ = ckpt.tensor(&name, DType::F32, &Device::Cpu);
    }
}

#[test]
fn fuzz_npy_header_and_data() {
    let scratch = Scratch::new("a.npy");
    let seeds: Vec<Vec<u8>> = arrays()
        .iter()
        .map(|(_, a)| {
            write_npy(&scratch.path, a).unwrap();
            std::fs::read(&scratch.path).unwrap()
        })
        .collect();
    fuzz_file("npy", &scratch, &seeds, true, 50000, |path| {
        if let Ok(a) = read_npy(path) {
            let _ = a.to_tensor(&Device::Cpu);
        }
    });
}

#[test]
fn fuzz_npz_archive() {
    let scratch = Scratch::new("a.npz");
    write_npz(&scratch.path, &arrays()).unwrap();
    let deflated = std::fs::read(&scratch.path).unwrap();
    // Stored entries as numpy.savez writes them: mutations reach the npy headers.
    let mut stored = std::io::Cursor::new(Vec::new());
    {
        let mut zip = zip::ZipWriter::new(&mut stored);
        let opts = zip::write::SimpleFileOptions::default()
            .compression_method(zip::CompressionMethod::Stored);
        let one = Scratch::new("e.npy");
        for (name, a) in arrays() {
            write_npy(&one.path, &a).unwrap();
            zip.start_file(format!("{name}.npy"), opts).unwrap();
            std::io::Write::write_all(&mut zip, &std::fs::read(&one.path).unwrap()).unwrap();
        }
        zip.finish().unwrap();
    }
    let seeds = vec![deflated, stored.into_inner()];
    fuzz_file("npz", &scratch, &seeds, false, 40000, |path| {
        if let Ok(arrays) = read_npz(path) {
            for (_, a) in arrays {
                let _ = a.to_tensor(&Device::Cpu);
            }
        }
        if let Ok(ckpt) = Checkpoint::open(path) {
            read_all(&ckpt);
        }
    });
}

#[test]
fn fuzz_safetensors_header() {
    let scratch = Scratch::new("m.safetensors");
    let tensors = HashMap::from([
        ("a.weight".to_string(), Tensor::ones((2, 3), DType::F32, &Device::Cpu).unwrap()),
        ("b.bias".to_string(), Tensor::zeros(4, DType::F16, &Device::Cpu).unwrap()),
        ("c".to_string(), Tensor::zeros((1, 2, 2), DType::U8, &Device::Cpu).unwrap()),
    ]);
    candle_core::safetensors::save(&tensors, &scratch.path).unwrap();
    let seeds = vec![std::fs::read(&scratch.path).unwrap()];
    fuzz_file("safetensors", &scratch, &seeds, true, 60000, |path| {
        if let Ok(ckpt) = Checkpoint::open(path) {
            read_all(&ckpt);
        }
    });
}

fn gguf_seed() -> Vec<u8> {
    use gguf_file::Value;
    let dev = Device::Cpu;
    let w = Tensor::ones((4, 32), DType::F32, &dev).unwrap();
    let f32_t = QTensor::quantize(&w, GgmlDType::F32).unwrap();
    let q8 = QTensor::quantize(&Tensor::ones((2, 32), DType::F32, &dev).unwrap(), GgmlDType::Q8_0)
        .unwrap();
    let arch = Value::String("llama".into());
    let heads = Value::U32(4);
    let base = Value::F32(10000.0);
    let tokens = Value::Array(vec![Value::String("a".into()), Value::String("b".into())]);
    let align = Value::U32(32);
    let metadata = [
        ("general.architecture", &arch),
        ("llama.attention.head_count", &heads),
        ("llama.rope.freq_base", &base),
        ("tokenizer.ggml.tokens", &tokens),
        ("general.alignment", &align),
    ];
    let mut out = std::io::Cursor::new(Vec::new());
    gguf_file::write(&mut out, &metadata, &[("w", &f32_t), ("q", &q8)]).unwrap();
    out.into_inner()
}

#[test]
fn fuzz_gguf_metadata_and_tensor_table() {
    let scratch = Scratch::new("m.gguf");
    let seed = gguf_seed();
    // The header alone (the tensor table and metadata are where the mutations matter).
    fuzz_file("gguf", &scratch, &[seed], false, 50000, |path| {
        if let Ok(g) = Gguf::open(path) {
            let _ = (g.get_str("general.architecture"), g.get_u32("llama.attention.head_count"));
            let _ = (g.get_f32("llama.rope.freq_base"), g.get_str_array("tokenizer.ggml.tokens"));
            for name in g.names() {
                let _ = g.tensor_f32(&name, &Device::Cpu);
            }
        }
    });
}

#[test]
fn fuzz_pickle_reader() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/hub");
    let mut seeds = vec![std::fs::read(dir.join("hapt_mini.pkl")).unwrap()];
    for name in ["ndarray_p2.pkl", "plain_p2.pkl", "plain_p4.pkl"] {
        seeds.push(std::fs::read(dir.join("pickle").join(name)).unwrap());
    }
    let allow = [
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
        ("copy_reg", "_reconstructor"),
        ("__builtin__", "object"),
        ("_codecs", "encode"),
        ("pandas.core.frame", "DataFrame"),
        ("pandas.core.internals.managers", "BlockManager"),
        ("pandas.core.indexes.base", "_new_Index"),
    ];
    fuzz("pickle", &seeds, false, 200000, |bytes| {
        let _ = braid_core::pickle::loads(bytes, &allow);
    });
}
