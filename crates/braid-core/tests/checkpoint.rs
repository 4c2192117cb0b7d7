//! Checkpoints end to end: safetensors into a module through the tracking var builder,
//! sharded safetensors, GGUF metadata and tensors, llama.cpp remapping, corrupt files.

use std::collections::HashMap;
use std::path::Path;

use braid_core::checkpoint::{Checkpoint, Gguf, RemapTable, Transform};
use braid_core::testing::max_abs_diff;
use candle_core::quantized::gguf_file::{self, Value};
use candle_core::quantized::{GgmlDType, QTensor};
use candle_core::{DType, Device, Module, Tensor};

type R = anyhow::Result<()>;

/// Two linear layers under `encoder.layer.{0,1}`, built as a model would be.
struct Tiny {
    layers: Vec<candle_nn::Linear>,
}

impl Tiny {
    fn new(vb: candle_nn::VarBuilder) -> candle_core::Result<Self> {
        let vb = vb.pp("encoder.layer");
        Ok(Self {
            layers: vec![
                candle_nn::linear(4, 8, vb.pp("0"))?,
                candle_nn::linear(8, 3, vb.pp("1"))?,
            ],
        })
    }

    /// x: [batch, 4] -> [batch, 3]
    fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        self.layers.iter().try_fold(x.clone(), |x, l| l.forward(&x))
    }
}

fn tiny_weights() -> candle_core::Result<HashMap<String, Tensor>> {
    let d = Device::Cpu;
    let mut m = HashMap::new();
    m.insert("encoder.layer.0.weight".into(), Tensor::randn(0f32, 1., (8, 4), &d)?);
    m.insert("encoder.layer.0.bias".into(), Tensor::randn(0f32, 1., 8, &d)?);
    m.insert("encoder.layer.1.weight".into(), Tensor::randn(0f32, 1., (3, 8), &d)?);
    m.insert("encoder.layer.1.bias".into(), Tensor::randn(0f32, 1., 3, &d)?);
    Ok(m)
}

fn load(path: &Path) -> anyhow::Result<(Tiny, braid_core::checkpoint::LoadReport)> {
    let ckpt = Checkpoint::open(path)?;
    let (vb, tracker) = ckpt.var_builder(DType::F32, &Device::Cpu);
    let model = Tiny::new(vb)?;
    Ok((model, tracker.report()))
}

#[test]
fn safetensors_load_reports_every_problem() -> R {
    let dir = tempfile::tempdir()?;
    let w = tiny_weights()?;
    let good = dir.path().join("good.safetensors");
    candle_core::safetensors::save(&w, &good)?;
    let (model, report) = load(&good)?;
    assert_eq!(
        report.to_string(),
        "0 missing, 0 unexpected, 0 mismatched; 4 tensors, 67 parameters"
    );
    let x = Tensor::ones((2, 4), DType::F32, &Device::Cpu)?;
    let l0 = &w["encoder.layer.0.weight"];
    let want = x.matmul(&l0.t()?)?.broadcast_add(&w["encoder.layer.0.bias"])?;
    let want = want
        .matmul(&w["encoder.layer.1.weight"].t()?)?
        .broadcast_add(&w["encoder.layer.1.bias"])?;
    assert!(max_abs_diff(&model.forward(&x)?, &want)? < 1e-5);
    report.into_result(&good)?;

    let mut bad = w.clone();
    bad.remove("encoder.layer.1.bias");
    bad.insert("encoder.layer.2.weight".into(), Tensor::zeros(2, DType::F32, &Device::Cpu)?);
    bad.insert("encoder.layer.0.weight".into(), Tensor::zeros((8, 5), DType::F32, &Device::Cpu)?);
    let p = dir.path().join("bad.safetensors");
    candle_core::safetensors::save(&bad, &p)?;
    let (_, report) = load(&p)?;
    assert_eq!(report.missing, vec!["encoder.layer.1.bias".to_string()]);
    assert_eq!(report.unexpected, vec!["encoder.layer.2.weight".to_string()]);
    assert_eq!(
        report.mismatched,
        vec![("encoder.layer.0.weight".to_string(), vec![8, 4], vec![8, 5])]
    );
    let msg = report.into_result(&p).err().map(|e| e.to_string()).unwrap_or_default();
    assert!(msg.starts_with(&p.display().to_string()) && !msg.contains('\n'), "{msg}");
    assert!(msg.contains("encoder.layer.1.bias") && msg.contains("[8, 5]"), "{msg}");
    Ok(())
}

#[test]
fn sharded_safetensors_open_through_the_index() -> R {
    let dir = tempfile::tempdir()?;
    let w = tiny_weights()?;
    let (a, b): (HashMap<_, _>, HashMap<_, _>) =
        w.into_iter().partition(|(k, _)| k.contains(".0."));
    candle_core::safetensors::save(&a, dir.path().join("model-00001-of-00002.safetensors"))?;
    candle_core::safetensors::save(&b, dir.path().join("model-00002-of-00002.safetensors"))?;
    let mut map = serde_json::Map::new();
    for k in a.keys() {
        map.insert(k.clone(), "model-00001-of-00002.safetensors".into());
    }
    for k in b.keys() {
        map.insert(k.clone(), "model-00002-of-00002.safetensors".into());
    }
    let index = dir.path().join("model.safetensors.index.json");
    std::fs::write(&index, serde_json::json!({ "metadata": {}, "weight_map": map }).to_string())?;
    let (_, report) = load(&index)?;
    assert!(report.is_clean(), "{report}");
    assert_eq!(report.used, 4);
    Ok(())
}

fn one_line_error_naming(path: &Path, err: Option<braid_core::Error>) {
    let msg = err.map(|e| e.to_string()).unwrap_or_default();
    eprintln!("{msg}");
    assert!(msg.contains(&path.display().to_string()), "{msg}");
    assert!(!msg.contains('\n'), "{msg}");
}

#[test]
fn corrupt_files_are_one_line_errors_naming_the_path() -> R {
    let dir = tempfile::tempdir()?;
    let st = dir.path().join("t.safetensors");
    candle_core::safetensors::save(&tiny_weights()?, &st)?;
    let bytes = std::fs::read(&st)?;
    std::fs::write(&st, &bytes[..bytes.len() - 10])?;
    one_line_error_naming(&st, Checkpoint::open(&st).err());
    std::fs::write(&st, &bytes[..5])?;
    one_line_error_naming(&st, Checkpoint::open(&st).err());

    let g = dir.path().join("bad.gguf");
    std::fs::write(&g, b"GGUX\x03\x00\x00\x00and some more bytes")?;
    one_line_error_naming(&g, Gguf::open(&g).err());
    one_line_error_naming(&g, Checkpoint::open(&g).err());

    let good = dir.path().join("good.gguf");
    write_gguf(&good)?;
    let bytes = std::fs::read(&good)?;
    for cut in [10, 40, bytes.len() / 2, bytes.len() - 8] {
        let t = dir.path().join(format!("cut{cut}.gguf"));
        std::fs::write(&t, &bytes[..cut])?;
        let err = Gguf::open(&t).and_then(|g| {
            g.names().iter().try_for_each(|n| g.tensor_f32(n, &Device::Cpu).map(drop))
        });
        one_line_error_naming(&t, err.err());
    }
    let missing = dir.path().join("absent.npz");
    one_line_error_naming(&missing, Checkpoint::open(&missing).err());
    Ok(())
}

const TEMPLATE: &str =
    "{% for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content }}<|im_end|>\n{% endfor %}";

fn q_weight() -> candle_core::Result<Tensor> {
    Tensor::randn(0f32, 1., (8, 64), &Device::Cpu)
}

/// A tiny llama.cpp-style GGUF: f32 norm, Q8_0 embedding, Q4_0 permuted q projection.
fn write_gguf(path: &Path) -> anyhow::Result<(Tensor, Tensor)> {
    let d = Device::Cpu;
    let emb = Tensor::randn(0f32, 1., (16, 64), &d)?;
    let q = q_weight()?;
    let q_gguf = Transform::PermuteRope { heads: 2 }.apply(&q, "q")?;
    let norm = QTensor::quantize(&Tensor::ones(64, DType::F32, &d)?, GgmlDType::F32)?;
    let tensors = [
        ("token_embd.weight", QTensor::quantize(&emb, GgmlDType::Q8_0)?),
        ("blk.0.attn_q.weight", QTensor::quantize(&q_gguf, GgmlDType::Q4_0)?),
        ("output_norm.weight", norm),
    ];
    let tokens =
        Value::Array(vec![Value::String("<|im_start|>".into()), Value::String("hi".into())]);
    let meta = [
        ("general.architecture", Value::String("llama".into())),
        ("llama.block_count", Value::U32(1)),
        ("llama.rope.freq_base", Value::F32(10000.)),
        ("tokenizer.ggml.tokens", tokens),
        ("tokenizer.chat_template", Value::String(TEMPLATE.into())),
    ];
    let mut f = std::fs::File::create(path)?;
    let meta: Vec<(&str, &Value)> = meta.iter().map(|(k, v)| (*k, v)).collect();
    let tensors: Vec<(&str, &QTensor)> = tensors.iter().map(|(k, v)| (*k, v)).collect();
    gguf_file::write(&mut f, &meta, &tensors)?;
    Ok((emb, q))
}

#[test]
fn gguf_metadata_and_tensors_read_back() -> R {
    let dir = tempfile::tempdir()?;
    let p = dir.path().join("tiny.gguf");
    let (emb, q) = write_gguf(&p)?;
    let g = Gguf::open(&p)?;
    assert_eq!(g.get_str("general.architecture")?, "llama");
    assert_eq!(g.get_u32("llama.block_count")?, 1);
    assert_eq!(g.get_usize("llama.block_count")?, 1);
    assert_eq!(g.get_f32("llama.rope.freq_base")?, 10000.);
    assert_eq!(g.get_str("tokenizer.chat_template")?, TEMPLATE);
    assert_eq!(g.get_str_array("tokenizer.ggml.tokens")?, vec!["<|im_start|>", "hi"]);
    one_line_error_naming(&p, g.get_str("llama.block_count").err());
    one_line_error_naming(&p, g.get_u32("nope").err());
    assert_eq!(g.names(), vec!["blk.0.attn_q.weight", "output_norm.weight", "token_embd.weight"]);
    let e = g.tensor_f32("token_embd.weight", &Device::Cpu)?;
    assert!(max_abs_diff(&e, &emb)? < 0.05, "Q8_0 error too large");
    let qt = g.qtensor("blk.0.attn_q.weight", &Device::Cpu)?;
    assert_eq!(qt.dtype(), GgmlDType::Q4_0);
    assert_eq!(qt.shape().dims(), &[8, 64]);

    // Through the llama.cpp remap, names are Hugging Face's and q is un-permuted.
    let ckpt = Checkpoint::open(&p)?.with_remap(&RemapTable::llama_gguf(2, 1))?;
    assert_eq!(
        ckpt.names(),
        vec![
            "model.embed_tokens.weight",
            "model.layers.0.self_attn.q_proj.weight",
            "model.norm.weight"
        ]
    );
    let hf_q = ckpt.tensor("model.layers.0.self_attn.q_proj.weight", DType::F32, &Device::Cpu)?;
    let tol = 0.35 * q.abs()?.max_keepdim(1)?.max(0)?.to_vec1::<f32>()?[0];
    assert!(max_abs_diff(&hf_q, &q)? < tol, "un-permuted q differs");
    let qq = ckpt.qtensor("model.layers.0.self_attn.q_proj.weight", &Device::Cpu)?;
    assert_eq!(qq.dtype(), GgmlDType::Q4_0);
    assert_eq!(max_abs_diff(&qq.dequantize(&Device::Cpu)?, &hf_q)?, 0.0);
    let (vb, tracker) = ckpt.var_builder(DType::F32, &Device::Cpu);
    let _ = vb.get((16, 64), "model.embed_tokens.weight")?;
    let _ = vb.get(64, "model.norm.weight")?;
    let report = tracker.report();
    assert_eq!(report.unexpected, vec!["model.layers.0.self_attn.q_proj.weight".to_string()]);
    Ok(())
}

#[test]
fn npz_opens_as_a_checkpoint() -> R {
    use braid_core::checkpoint::{write_npz, NpyArray, NpyData};
    let dir = tempfile::tempdir()?;
    let p = dir.path().join("w.npz");
    let a = NpyArray { shape: vec![2, 2], data: NpyData::F64(vec![1., 2., 3., 4.]) };
    write_npz(&p, &[("fc.weight".to_string(), a)])?;
    let ckpt = Checkpoint::open(&p)?;
    assert_eq!(ckpt.shape("fc.weight"), Some(vec![2, 2]));
    let t = ckpt.tensor("fc.weight", DType::F32, &Device::Cpu)?;
    assert_eq!(t.to_vec2::<f32>()?, vec![vec![1., 2.], vec![3., 4.]]);
    Ok(())
}

/// Every fourth header byte set to 0xff in turn: errors or values, never a panic.
#[test]
fn corrupted_header_bytes_never_panic() -> R {
    let dir = tempfile::tempdir()?;
    let g = dir.path().join("g.gguf");
    write_gguf(&g)?;
    let st = dir.path().join("s.safetensors");
    candle_core::safetensors::save(&tiny_weights()?, &st)?;
    for good in [g, st] {
        let bytes = std::fs::read(&good)?;
        let bad = good.with_extension(format!(
            "bad.{}",
            good.extension().and_then(|e| e.to_str()).unwrap_or("")
        ));
        for i in (0..bytes.len().min(600)).step_by(4) {
            let mut b = bytes.clone();
            b[i] = 0xff;
            std::fs::write(&bad, &b)?;
            if let Ok(ckpt) = Checkpoint::open(&bad) {
                for n in ckpt.names() {
                    let _ = ckpt.tensor(&n, DType::F32, &Device::Cpu);
                }
            }
        }
    }
    Ok(())
}
