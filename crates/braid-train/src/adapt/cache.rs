//! The adapter cache directory that `braid adapt` writes and `braid classify --cache`
//! reads: `adapter.toml` ([`CacheFile`]: method, classes, prompts, hyper-parameters, the
//! model it was built with and that model's fingerprint) and `adapter.safetensors`
//! (`text` [C, D]; with a cache `keys` [N, D] and `values` [N, C]; CapS `captions`
//! [N, D]; a linear probe `probe.weight` [C, D] and `probe.bias` [C]). Reading checks
//! every shape against the file and the method, and names the file and tensor at fault.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use braid_core::{fsx, Error, Result};
use candle_core::{DType, Device, Tensor};
use serde::{Deserialize, Serialize};

use super::{Adapter, Method, Params};

/// The description file of a cache directory.
pub const CACHE_FILE: &str = "adapter.toml";
/// The tensors of a cache directory.
pub const CACHE_WEIGHTS: &str = "adapter.safetensors";

/// `adapter.toml`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CacheFile {
    /// The adapter.
    pub method: Method,
    /// The aligned towers it was built with, as given to `braid adapt` (a path is
    /// relative to the cache directory when it was written so).
    pub model: String,
    /// SHA-256 of that model's weights and configuration ([`super::fingerprint`]).
    pub model_fingerprint: String,
    /// Width of the shared space.
    pub dim: usize,
    /// Class names, in label order.
    pub classes: Vec<String>,
    /// The prompt templates of the class text weights.
    pub templates: Vec<String>,
    /// Target images per class in the cache (0 for zero-shot and SuS-X).
    pub shots: usize,
    /// Hyper-parameters.
    pub params: Params,
    /// Accuracy on the validation split the parameters were chosen on.
    pub val_accuracy: f64,
    /// Where the shots came from (informative).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data: Option<String>,
}

/// Writes `adapter` into `dir` (created; files replaced atomically).
pub fn write_cache(dir: &Path, file: &CacheFile, adapter: &Adapter) -> Result<()> {
    std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    let mut tensors: HashMap<String, Tensor> = HashMap::new();
    tensors.insert("text".into(), adapter.text.clone());
    let mut put = |name: &str, t: &Option<Tensor>| {
        if let Some(t) = t {
            tensors.insert(name.into(), t.clone());
        }
    };
    put("keys", &adapter.keys);
    put("values", &adapter.values);
    put("captions", &adapter.captions);
    if let Some((w, b)) = &adapter.probe {
        tensors.insert("probe.weight".into(), w.clone());
        tensors.insert("probe.bias".into(), b.clone());
    }
    let weights = dir.join(CACHE_WEIGHTS);
    let tmp = dir.join(format!(".{CACHE_WEIGHTS}.tmp"));
    candle_core::safetensors::save(&tensors, &tmp)?;
    std::fs::rename(&tmp, &weights).map_err(|e| Error::io(&weights, e))?;
    let text = toml::to_string_pretty(file)
        .map_err(|e| Error::format(dir.join(CACHE_FILE), e.to_string()))?;
    fsx::write_file(&dir.join(CACHE_FILE), text.as_bytes())
}

/// Reads a cache directory. -> (its description, the adapter)
pub fn read_cache(dir: &Path, dev: &Device) -> Result<(CacheFile, Adapter)> {
    let path = dir.join(CACHE_FILE);
    let text = std::fs::read_to_string(&path).map_err(|e| Error::io(&path, e))?;
    let file: CacheFile = toml::from_str(&text).map_err(|e| Error::format(&path, e.to_string()))?;
    let (c, d) = (file.classes.len(), file.dim);
    if c < 2 || d == 0 {
        return Err(Error::format(&path, format!("{c} classes of width {d}: not a classifier")));
    }
    let p = &file.params;
    let numbers = [p.scale, p.alpha, p.beta, p.gamma, p.delta, p.temperature];
    if numbers.iter().any(|x| !x.is_finite())
        || p.temperature <= 0.0
        || !(0.0..=1.0).contains(&p.delta)
    {
        return Err(Error::format(&path, format!("params out of range: {p:?}")));
    }
    let weights = dir.join(CACHE_WEIGHTS);
    let mut t = candle_core::safetensors::load(&weights, dev)
        .map_err(|e| Error::format(&weights, e.to_string()))?;
    let mut take = |name: &str, want: Option<&[usize]>| -> Result<Option<Tensor>> {
        let Some(x) = t.remove(name) else { return Ok(None) };
        if x.dtype() != DType::F32 {
            return Err(Error::format(&weights, format!("`{name}` is {:?}, not f32", x.dtype())));
        }
        if let Some(w) = want {
            if x.dims() != w {
                return Err(Error::format(
                    &weights,
                    format!("`{name}` has shape {:?}; {CACHE_FILE} implies {w:?}", x.dims()),
                ));
            }
        }
        Ok(Some(x))
    };
    let need = |x: Option<Tensor>, name: &str| {
        x.ok_or_else(|| {
            Error::format(
                &weights,
                format!("no `{name}` tensor, which a {} cache needs", file.method.name()),
            )
        })
    };
    let text_w = need(take("text", Some(&[c, d]))?, "text")?;
    let keys = take("keys", None)?;
    let n = keys.as_ref().map(|k| k.dim(0)).transpose()?.unwrap_or(0);
    if let Some(k) = &keys {
        if k.dims() != [n, d] {
            return Err(Error::format(
                &weights,
                format!("`keys` has shape {:?}; expected [N, {d}]", k.dims()),
            ));
        }
    }
    let values = take("values", Some(&[n, c]))?;
    let captions = take("captions", Some(&[n, d]))?;
    let probe = match (take("probe.weight", Some(&[c, d]))?, take("probe.bias", Some(&[c]))?) {
        (Some(w), Some(b)) => Some((w, b)),
        _ => None,
    };
    let m = file.method;
    let (keys, values, captions, probe) = match m {
        Method::ZeroShot => (None, None, None, None),
        Method::LinearProbe => {
            let probe = probe.ok_or_else(|| {
                Error::format(
                    &weights,
                    "no `probe.weight` and `probe.bias`, which a linear-probe cache needs",
                )
            })?;
            (None, None, None, Some(probe))
        }
        _ => (
            Some(need(keys, "keys")?),
            Some(need(values, "values")?),
            if m == Method::Caps { Some(need(captions, "captions")?) } else { None },
            None,
        ),
    };
    let adapter = Adapter {
        method: m,
        classes: file.classes.clone(),
        text: text_w,
        keys,
        values,
        captions,
        probe,
        params: file.params,
    };
    Ok((file, adapter))
}

/// The model directory a cache names, resolved against the cache directory.
pub fn model_of(dir: &Path, file: &CacheFile) -> Result<PathBuf> {
    braid_hub::resolve_field(&file.model, dir, "model")
}
