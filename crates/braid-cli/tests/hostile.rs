//! Hostile and broken inputs through the `braid` binary (issue 17): each crafted file, config
//! or flag is run in a child process under a 4 GB address-space limit (`prlimit`) and a
//! 60 s timeout, so an unbounded allocation or a hang fails the test instead of the machine.
//! Every case must end with exit status 1, exactly one `error:` line on stderr naming the
//! file, field or flag that was wrong, and no panic message. The inputs are built here, in a
//! temporary directory, from the committed tiny fixtures; nothing needs fetching.
//!
//! Pickles are not in this list: no command reads a local pickle (the HAPT pickle arrives
//! only through `braid fetch`, verified by its sha256); the pickle reader's hostile cases are
//! in `braid-core`'s pickle tests.
#![allow(clippy::panic, clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

mod common;

/// Address-space limit of each child (bytes).
const MEMORY_LIMIT: &str = "4000000000";
/// Wall-clock limit of each child (seconds).
const TIME_LIMIT_S: u64 = 60;

fn have(tool: &str) -> bool {
    Command::new(tool).arg("--version").output().is_ok_and(|o| o.status.success())
}

/// Whether `prlimit` and `timeout` (util-linux, coreutils) are there; without them the
/// child runs unlimited, with a note.
fn limits() -> (bool, bool) {
    static LIMITS: OnceLock<(bool, bool)> = OnceLock::new();
    *LIMITS.get_or_init(|| {
        let l = (have("prlimit"), have("timeout"));
        if !l.0 {
            eprintln!("note: prlimit not installed (util-linux): running without a memory limit");
        }
        if !l.1 {
            eprintln!("note: timeout not installed (coreutils): running without a time limit");
        }
        l
    })
}

fn fixtures() -> PathBuf {
    common::root().join("fixtures")
}

/// Runs `braid ARGS` under the limits and checks that it failed cleanly, its one error
/// line holding every one of `needles`.
fn refused(args: &[&str], needles: &[&str]) {
    let (prlimit, timeout) = limits();
    let exe = env!("CARGO_BIN_EXE_braid");
    let mut cmd = match (prlimit, timeout) {
        (true, _) => {
            let mut c = Command::new("prlimit");
            c.arg(format!("--as={MEMORY_LIMIT}")).arg("--");
            c
        }
        (false, true) => Command::new("timeout"),
        (false, false) => Command::new(exe),
    };
    if timeout {
        if prlimit {
            cmd.arg("timeout");
        }
        cmd.args(["--kill-after=5", &TIME_LIMIT_S.to_string(), exe]);
    } else if prlimit {
        cmd.arg(exe);
    }
    let start = Instant::now();
    let out = cmd.args(args).current_dir(common::root()).output().unwrap();
    let took = start.elapsed();
    let stderr = String::from_utf8_lossy(&out.stderr);
    let what = format!("braid {}", args.join(" "));
    assert!(took < Duration::from_secs(TIME_LIMIT_S), "{what}: took {took:?}\n{stderr}");
    assert!(!stderr.contains("panicked"), "{what}: panicked\n{stderr}");
    assert_eq!(out.status.code(), Some(1), "{what}: exit {:?} (124: hang)\n{stderr}", out.status);
    let errors: Vec<&str> = stderr.lines().filter(|l| l.contains("error:")).collect();
    assert_eq!(errors.len(), 1, "{what}: want one error line\n{stderr}");
    eprintln!("{what}\n  -> {}", errors[0]);
    for n in needles {
        assert!(errors[0].contains(n), "{what}: `{n}` not named in\n{}", errors[0]);
    }
}

fn write(dir: &Path, name: &str, bytes: impl AsRef<[u8]>) -> String {
    let p = dir.join(name);
    std::fs::write(&p, bytes).unwrap();
    p.to_str().unwrap().to_string()
}

/// Copies a fixture folder, so that one file of it can be replaced.
fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
    }
}

// ---- crafted file formats ------------------------------------------------------------

/// A GGUF value in the header.
enum Kv {
    U32(u32),
    Str(&'static str),
}

fn gguf_str(out: &mut Vec<u8>, s: &str) {
    out.extend((s.len() as u64).to_le_bytes());
    out.extend(s.as_bytes());
}

/// GGUF v3: metadata `kv`, one F32 tensor `w` of shape `dims`, its data (when `data`), at
/// the default alignment of 32.
fn gguf(kv: &[(&str, Kv)], dims: &[u64], data: bool) -> Vec<u8> {
    let mut out = b"GGUF".to_vec();
    out.extend(3u32.to_le_bytes());
    out.extend(1u64.to_le_bytes());
    out.extend((kv.len() as u64).to_le_bytes());
    for (k, v) in kv {
        gguf_str(&mut out, k);
        match v {
            Kv::U32(x) => {
                out.extend(4u32.to_le_bytes());
                out.extend(x.to_le_bytes());
            }
            Kv::Str(s) => {
                out.extend(8u32.to_le_bytes());
                gguf_str(&mut out, s);
            }
        }
    }
    gguf_str(&mut out, "w");
    out.extend((dims.len() as u32).to_le_bytes());
    for d in dims {
        out.extend(d.to_le_bytes());
    }
    out.extend(0u32.to_le_bytes()); // F32
    out.extend(0u64.to_le_bytes()); // offset in the data section
    if data {
        out.resize(out.len().div_ceil(32) * 32, 0);
        let n: u64 = dims.iter().product();
        out.extend(std::iter::repeat_n(0u8, n as usize * 4));
    }
    out
}

/// A `.npy` v1 file with header dict `dict` and `payload` bytes.
fn npy(dict: &str, payload: &[u8]) -> Vec<u8> {
    let mut header = dict.as_bytes().to_vec();
    let total = (10 + header.len() + 1).div_ceil(64) * 64;
    header.resize(total - 10 - 1, b' ');
    header.push(b'\n');
    let mut out = b"\x93NUMPY\x01\x00".to_vec();
    out.extend((header.len() as u16).to_le_bytes());
    out.extend(header);
    out.extend(payload);
    out
}

fn crc32(bytes: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &b in bytes {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 == 1 { (crc >> 1) ^ 0xEDB8_8320 } else { crc >> 1 };
        }
    }
    !crc
}

/// A ZIP archive of stored (uncompressed) entries, as `numpy.savez` writes them.
fn stored_zip(entries: &[(&str, Vec<u8>)]) -> Vec<u8> {
    let (mut out, mut central) = (Vec::new(), Vec::new());
    for (name, data) in entries {
        let offset = out.len() as u32;
        let (crc, len) = (crc32(data), data.len() as u32);
        let fields = |sig: u32, central: bool| {
            let mut h = sig.to_le_bytes().to_vec();
            if central {
                h.extend(20u16.to_le_bytes()); // version made by
            }
            h.extend(20u16.to_le_bytes()); // version needed
            h.extend([0u8; 4]); // flags, method: stored
            h.extend([0u8; 4]); // time, date
            h.extend(crc.to_le_bytes());
            h.extend(len.to_le_bytes());
            h.extend(len.to_le_bytes());
            h.extend((name.len() as u16).to_le_bytes());
            h.extend(0u16.to_le_bytes()); // extra
            if central {
                h.extend([0u8; 6]); // comment, disk, internal attributes
                h.extend([0u8; 4]); // external attributes
                h.extend(offset.to_le_bytes());
            }
            h.extend(name.as_bytes());
            h
        };
        out.extend(fields(0x0403_4b50, false));
        out.extend(data);
        central.extend(fields(0x0201_4b50, true));
    }
    let (start, size) = (out.len() as u32, central.len() as u32);
    out.extend(central);
    out.extend(0x0605_4b50u32.to_le_bytes());
    out.extend([0u8; 4]);
    out.extend((entries.len() as u16).to_le_bytes());
    out.extend((entries.len() as u16).to_le_bytes());
    out.extend(size.to_le_bytes());
    out.extend(start.to_le_bytes());
    out.extend(0u16.to_le_bytes());
    out
}

/// A WAV file: `format` 1 (PCM) or 3 (IEEE float), `bits` per sample, `data` as is.
fn wav(format: u16, channels: u16, rate: u32, bits: u16, data: &[u8]) -> Vec<u8> {
    let block = channels * bits / 8;
    let mut out = b"RIFF".to_vec();
    out.extend((36 + data.len() as u32).to_le_bytes());
    out.extend(b"WAVEfmt ");
    out.extend(16u32.to_le_bytes());
    out.extend(format.to_le_bytes());
    out.extend(channels.to_le_bytes());
    out.extend(rate.to_le_bytes());
    out.extend((rate * u32::from(block)).to_le_bytes());
    out.extend(block.to_le_bytes());
    out.extend(bits.to_le_bytes());
    out.extend(b"data");
    out.extend((data.len() as u32).to_le_bytes());
    out.extend(data);
    out
}

// ---- the cases, one test per class ---------------------------------------------------------

#[test]
fn silent_gguf_truncated_or_header_only() {
    let dir = tempfile::tempdir().unwrap();
    let full = gguf(&[("general.architecture", Kv::Str("llama"))], &[4, 4], true);
    let header_only = gguf(&[("general.architecture", Kv::Str("llama"))], &[4, 4], false);
    for (name, bytes) in [
        ("cut_in_table.gguf", full[..40].to_vec()),
        ("cut_in_data.gguf", full[..full.len() - 8].to_vec()),
        ("header_only.gguf", header_only),
        ("magic_only.gguf", b"GGUF".to_vec()),
    ] {
        let p = write(dir.path(), name, bytes);
        refused(&["inspect", &p], &[name]);
    }
}

#[test]
fn panic_gguf_alignment_zero_and_huge_dims() {
    let dir = tempfile::tempdir().unwrap();
    let zero = gguf(&[("general.alignment", Kv::U32(0))], &[4, 4], true);
    let p = write(dir.path(), "align0.gguf", zero);
    refused(&["inspect", &p], &["align0.gguf"]);
    let huge = gguf(&[], &[1 << 40, 1 << 40], false);
    let p = write(dir.path(), "huge.gguf", huge);
    refused(&["inspect", &p], &["huge.gguf"]);
}

#[test]
fn alloc_npz_entry_with_huge_shape() {
    let dir = tempfile::tempdir().unwrap();
    let cases = [
        (
            "huge.npz",
            "{'descr': '<f4', 'fortran_order': False, 'shape': (1000000000000, 1000000000000), }",
        ),
        ("paren.npz", "{'descr': '<f4', 'fortran_order': False, 'shape': )1, 2(, }"),
        ("multibyte.npz", "{'descr': '<f4', 'fortran_order': False, 'shape': (\u{e9}, ), }"),
        ("short.npz", "{'descr': '<f4', 'fortran_order': False, 'shape': (1000, 1000), }"),
    ];
    for (name, dict) in cases {
        let zip = stored_zip(&[("a.npy", npy(dict, &[0u8; 16]))]);
        let p = write(dir.path(), name, zip);
        refused(&["inspect", &p], &[name, "`a.npy`"]);
    }
}

#[test]
fn alloc_safetensors_header_length() {
    let dir = tempfile::tempdir().unwrap();
    let mut huge = u64::MAX.to_le_bytes().to_vec();
    huge.extend(b"{}");
    let p = write(dir.path(), "huge.safetensors", huge);
    refused(&["inspect", &p], &["huge.safetensors"]);
    let mut lying = 40u64.to_le_bytes().to_vec();
    lying.extend(
        br#"{"w": {"dtype": "F32", "shape": [1000000, 1000000], "data_offsets": [0, 16]}}"#,
    );
    let p = write(dir.path(), "lying.safetensors", lying);
    refused(&["inspect", &p], &["lying.safetensors"]);
}

#[test]
fn panic_wav_sample_rate_zero_and_nan_samples() {
    let dir = tempfile::tempdir().unwrap();
    let model = fixtures().join("whisper/tiny_a");
    let model = model.to_str().unwrap();
    let out = dir.path().join("e.npy");
    let out = out.to_str().unwrap();
    let pcm = [0u8; 3200];
    let mut nan = Vec::new();
    for i in 0..1600 {
        nan.extend(if i % 7 == 0 { f32::NAN } else { 0.1 }.to_le_bytes());
    }
    let cases = [
        ("rate0.wav", wav(1, 1, 0, 16, &pcm)),
        ("bits0.wav", wav(1, 1, 16000, 0, &pcm)),
        ("channels0.wav", wav(1, 0, 16000, 16, &pcm)),
        ("nan.wav", wav(3, 1, 16000, 32, &nan)),
        ("ghz.wav", wav(1, 1, u32::MAX / 2, 16, &pcm)),
    ];
    for (name, bytes) in cases {
        let p = write(dir.path(), name, bytes);
        refused(&["embed", "audio", "--model", model, "--input", &p, "--out", out], &[name]);
    }
}

#[test]
fn nan_sampling_flags() {
    let dir = tempfile::tempdir().unwrap();
    let model = fixtures().join("llm/qwen2_chat_tiny");
    let model = model.to_str().unwrap();
    let gen = |flags: &[&str], needle: &str| {
        let mut args = vec!["generate", "--model", model, "--prompt", "hi", "--max-tokens", "2"];
        args.extend(flags);
        refused(&args, &[needle]);
    };
    gen(&["--temperature", "NaN"], "temperature");
    gen(&["--temperature", "inf"], "temperature");
    gen(&["--repetition-penalty", "NaN"], "repetition_penalty");
    gen(&["--top-p", "NaN"], "top_p");
    gen(&["--threads", "100000"], "--threads");
    let text = write(dir.path(), "t.txt", "hello hello hello");
    refused(&["perplexity", "--model", model, "--input", &text, "--window", "0"], &["--window"]);
}

#[test]
fn panic_model_config_values() {
    let dir = tempfile::tempdir().unwrap();
    let base = fixtures().join("llm/qwen2_chat_tiny");
    let config: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(base.join("config.json")).unwrap()).unwrap();
    let cases: [(&str, &str, serde_json::Value); 7] = [
        ("kv0", "num_key_value_heads", 0.into()),
        ("heads0", "num_attention_heads", 0.into()),
        ("layers", "num_hidden_layers", 1_000_000.into()),
        ("vocab", "vocab_size", 0.into()),
        ("rope0", "rope_parameters.rope_theta", 0.into()),
        ("eps", "rms_norm_eps", (-1.0).into()),
        ("hidden", "hidden_size", 30.into()),
    ];
    for (name, key, value) in cases {
        let model = dir.path().join(name);
        copy_dir(&base, &model);
        let mut c = config.clone();
        match key.split_once('.') {
            Some((outer, inner)) => c[outer][inner] = value,
            None => c[key] = value,
        }
        std::fs::write(model.join("config.json"), c.to_string()).unwrap();
        let m = model.to_str().unwrap();
        refused(&["generate", "--model", m, "--prompt", "hi", "--max-tokens", "2"], &[key]);
    }
}

/// Encoder configs (CLIP, Whisper) whose values would size tensors wrongly or divide by
/// zero: the error names the file and its own field (`vision_config.num_attention_heads`),
/// not an internal one (`attention.kv_heads`) or the checkpoint tensors a wrong value
/// mismatches.
#[test]
fn wrong_name_encoder_config_fields() {
    let dir = tempfile::tempdir().unwrap();
    let edit = |base: &str, name: &str, path: &[&str], value: serde_json::Value| {
        let model = dir.path().join(name);
        copy_dir(&fixtures().join(base), &model);
        let mut c: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(model.join("config.json")).unwrap())
                .unwrap();
        match path {
            [outer, inner] => c[*outer][*inner] = value,
            [key] => c[*key] = value,
            _ => unreachable!(),
        }
        std::fs::write(model.join("config.json"), c.to_string()).unwrap();
        model.to_str().unwrap().to_string()
    };
    let image = fixtures().join("image/flower.jpg");
    let out = dir.path().join("o.npy");
    let clip: [(&str, &[&str], serde_json::Value, &str); 8] = [
        ("vh0", &["vision_config", "num_attention_heads"], 0.into(), "got 0"),
        (
            "vh5",
            &["vision_config", "num_attention_heads"],
            5.into(),
            "5 does not divide `hidden_size` 36",
        ),
        ("vw0", &["vision_config", "hidden_size"], 0.into(), "got 0"),
        ("vp0", &["vision_config", "patch_size"], 0.into(), "got 0"),
        ("vp64", &["vision_config", "patch_size"], 64.into(), "larger than the image"),
        ("veps", &["vision_config", "layer_norm_eps"], (-1.0).into(), "(0, 1]"),
        ("th0", &["text_config", "num_attention_heads"], 0.into(), "got 0"),
        ("proj", &["projection_dim"], 0.into(), "got 0"),
    ];
    for (name, path, value, want) in clip {
        let m = edit("clip/p4_32", name, path, value);
        let field = format!("`{}`", path.join("."));
        refused(
            &[
                "embed",
                "image",
                "--model",
                &m,
                "--input",
                image.to_str().unwrap(),
                "--out",
                out.to_str().unwrap(),
            ],
            &["config.json", &field, want],
        );
    }
    let wav = write(dir.path(), "a.wav", wav(1, 1, 16000, 16, &[0, 1, 0, 2].repeat(4000)));
    let whisper: [(&str, &str, serde_json::Value, &str); 4] = [
        ("wh0", "encoder_attention_heads", 0.into(), "got 0"),
        ("wh3", "encoder_attention_heads", 3.into(), "3 does not divide `d_model` 16"),
        ("wmel", "num_mel_bins", 0.into(), "got 0"),
        ("wl", "encoder_layers", 1_000_000.into(), "must be in 1..=1024"),
    ];
    for (name, key, value, want) in whisper {
        let m = edit("whisper/tiny_a", name, &[key], value);
        refused(
            &["embed", "audio", "--model", &m, "--input", &wav, "--out", out.to_str().unwrap()],
            &["config.json", &format!("`{key}`"), want],
        );
    }
}

#[test]
fn hang_chat_template_nested_loops() {
    let dir = tempfile::tempdir().unwrap();
    let model = dir.path().join("m");
    copy_dir(&fixtures().join("llm/qwen2_chat_tiny"), &model);
    std::fs::write(
        model.join("chat_template.jinja"),
        "{% for a in range(100000) %}{% for b in range(100000) %}x{% endfor %}{% endfor %}",
    )
    .unwrap();
    let m = model.to_str().unwrap();
    refused(&["chat", "--model", m, "hi", "--max-tokens", "2"], &["BRAID_MAX_TEMPLATE_FUEL"]);
}

#[test]
fn config_recipe_unknown_stage_and_bad_values() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("run");
    let data = dir.path().join("d.csv");
    std::fs::write(&data, "ax,label\n1,a\n2,b\n").unwrap();
    let head = format!("out_dir = \"{}\"\n[data]\npath = \"{}\"\n", out.display(), data.display());
    let model = "[model.encoder]\ntype = \"cnn\"\nchannels = 1\nwidths = [4]\nkernel_size = 1\nstride = 1\n[model.head]\n";
    let cases = [
        ("stage.toml", format!("stage = \"bogus\"\n{head}"), "bogus"),
        ("nostage.toml", head.clone(), "stage"),
        (
            "overflow.toml",
            format!("stage = \"classify\"\n{head}{model}[train]\nbatch_size = 4294967296\ngrad_accum = 4294967296\n"),
            "train.grad_accum",
        ),
        (
            "lr.toml",
            format!("stage = \"classify\"\n{head}{model}[train]\nlr = nan\n"),
            "train.lr",
        ),
        (
            "betas.toml",
            format!("stage = \"classify\"\n{head}{model}[train.optimizer]\nbetas = [1.0, 1.0]\n"),
            "betas",
        ),
        ("syntax.toml", "stage = [".to_string(), "syntax.toml"),
    ];
    for (name, text, needle) in cases {
        let p = write(dir.path(), name, text);
        refused(&["train", &p, "--quiet"], &[needle]);
    }
}

#[test]
fn silent_imu_std_zero_and_nan_csv() {
    use braid_core::Modality;
    use braid_encoders::imu::{RecurrentConfig, RnnKind};
    use braid_encoders::EncoderConfig;
    use braid_pipeline::{EncoderSlot, ImuPreprocess, Pipeline, PipelineConfig, Preprocess};
    let dir = tempfile::tempdir().unwrap();
    let model = dir.path().join("model");
    let encoder = EncoderConfig::Recurrent(RecurrentConfig {
        kind: RnnKind::Gru,
        input_size: 2,
        hidden_size: 4,
        num_layers: 1,
        bias: true,
    });
    let pre = ImuPreprocess {
        channels: vec!["ax".into(), "ay".into()],
        mean: vec![0.0, 0.0],
        std: vec![1.0, 0.5],
        window: Some(4),
        stride: Some(2),
        rate_hz: None,
    };
    let slot = EncoderSlot {
        modality: Modality::Imu,
        model: None,
        placeholder: None,
        token_id: None,
        encoder: Some(encoder),
        preprocess: Some(Preprocess::Imu(pre)),
        projector: None,
    };
    let cfg = PipelineConfig { encoders: vec![slot], ..Default::default() };
    Pipeline::init(&cfg, &model, &candle_core::Device::Cpu).unwrap().save(&model).unwrap();
    let toml_path = model.join("pipeline.toml");
    let text = std::fs::read_to_string(&toml_path).unwrap();
    assert!(text.contains("0.5"), "{text}");
    std::fs::write(&toml_path, text.replacen("0.5", "0.0", 1)).unwrap();
    let body: String = (0..10).map(|i| format!("{i},{}\n", i * 2)).collect();
    let csv = write(dir.path(), "x.csv", format!("ax,ay\n{body}"));
    let out = dir.path().join("e.npy");
    let (m, o) = (model.to_str().unwrap(), out.to_str().unwrap());
    refused(&["embed", "imu", "--model", m, "--input", &csv, "--out", o], &["channel `ay`", "std"]);
    assert!(!out.exists());
    // "nothing was embedded" did not say why: recordings shorter than the model's window.
    std::fs::write(&toml_path, &text).unwrap();
    let short = write(dir.path(), "short.csv", "ax,ay\n1,2\n3,4\n");
    let args = ["embed", "imu", "--model", m, "--input", &short, "--out", o];
    refused(&args, &["short.csv", "shorter than the 4-sample window", "--window"]);
    let nan = write(dir.path(), "nan.csv", "ax,ay\n1,2\n3,nan\n");
    refused(&["data", "stats", &nan], &["nan.csv"]);
    let ragged = write(dir.path(), "ragged.csv", "ax,ay\n1,2\n3\n");
    refused(&["data", "stats", &ragged], &["ragged.csv"]);
}

#[test]
fn alloc_image_and_gif_canvas() {
    let dir = tempfile::tempdir().unwrap();
    let model = dir.path().join("clip");
    copy_dir(&fixtures().join("clip/p4_32"), &model);
    let pre = fixtures().join("image/preprocessor_clip.json");
    std::fs::copy(pre, model.join("preprocessor_config.json")).unwrap();
    let m = model.to_str().unwrap();
    let out = dir.path().join("e.npy");
    let o = out.to_str().unwrap();
    // A 65535x65535 canvas (two-colour palette) holding one 1x1 frame.
    let big = b"GIF89a\xff\xff\xff\xff\x80\x00\x00\x00\x00\x00\xff\xff\xff\
        \x2c\x00\x00\x00\x00\x01\x00\x01\x00\x00\x02\x02\x44\x01\x00;";
    let gif = write(dir.path(), "big.gif", big);
    refused(&["embed", "video", "--model", m, "--input", &gif, "--out", o], &["big.gif", "canvas"]);
    let bomb = fixtures().join("image/bomb_20000x20000.png");
    let bomb = bomb.to_str().unwrap();
    refused(
        &["embed", "image", "--model", m, "--input", bomb, "--out", o],
        &["bomb_20000x20000.png", "decompression-bomb", "BRAID_MAX_PIXELS"],
    );
    refused(
        &["embed", "video", "--model", m, "--input", &gif, "--out", o, "--frames", "0"],
        &["frames"],
    );
}
