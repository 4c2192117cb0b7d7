//! Running a vision recipe: decode the captioned easy-VQA images once, embed the 24
//! possible captions once with the frozen text tower, train the ViT with [`fit`] on
//! [`ContrastiveTask`], save the model directory atomically, and score zero-shot captioning.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use braid_core::{Error, Result};
use braid_data::vqa::{EasyVqa, Split, COLORS, SHAPES};
use braid_encoders::text::SentenceEncoder;
use candle_core::{DType, Device, Tensor, Var, D};
use candle_nn::VarMap;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::Serialize;

use braid_pipeline::ContrastiveConfig;

use super::model::{normalize, VisionModel, VisionModelFile, IMAGE_MEAN, IMAGE_STD};
use super::VisionRecipe;
use crate::recipe::Launch;
use crate::stages::{l2_normalize, ContrastiveTask, INITIAL_LOGIT_SCALE};
use crate::{fit, RunSummary};
use braid_nn::init::seeded_var_builder;

const EVAL_BATCH: usize = 250;

/// What a vision run or evaluation produced: zero-shot captioning of the captioned test
/// images (predicted caption = the nearest of the 24).
#[derive(Debug, Clone, Serialize)]
pub struct VisionReport {
    /// Share of images whose predicted colour is right.
    pub accuracy_color: f64,
    /// Share of images whose predicted shape is right.
    pub accuracy_shape: f64,
    /// Share with both right.
    pub accuracy: f64,
    /// Test images scored.
    pub n: usize,
    /// Trained parameters (ViT, heads, logit scale).
    pub params: usize,
    /// Training wall time of this invocation, seconds (0 for an evaluation).
    pub train_seconds: f64,
    /// The model directory.
    pub model_dir: PathBuf,
}

/// "a {colour} {shape}" for every colour and shape; caption `c * SHAPES.len() + s`.
pub fn captions() -> Vec<String> {
    COLORS.iter().flat_map(|c| SHAPES.iter().map(move |s| format!("a {c} {s}"))).collect()
}

/// Captioned images of a split, decoded and normalised.
struct Images {
    /// [n, 3, 64, 64]
    pixels: Tensor,
    /// Caption index per image.
    labels: Vec<usize>,
}

fn load_split(dir: &Path, split: Split, max: Option<usize>, dev: &Device) -> Result<Images> {
    let data = EasyVqa::open(dir, split)?;
    let mut labelled = Vec::new();
    for id in data.image_ids() {
        if let Some((c, s)) = data.image_attributes(id) {
            let ci = COLORS.iter().position(|&x| x == c).unwrap_or(0);
            let si = SHAPES.iter().position(|&x| x == s).unwrap_or(0);
            labelled.push((id, ci * SHAPES.len() + si));
        }
    }
    labelled.truncate(max.unwrap_or(usize::MAX));
    if labelled.is_empty() {
        return Err(Error::config(
            "data.path",
            format!("{}: no captioned {} images", dir.display(), split.as_str()),
        ));
    }
    let raw =
        labelled.iter().map(|&(id, _)| data.load_image(id, dev)).collect::<Result<Vec<_>>>()?;
    let pixels = normalize(&Tensor::stack(&raw, 0)?, &IMAGE_MEAN, &IMAGE_STD)?;
    Ok(Images { pixels, labels: labelled.into_iter().map(|(_, l)| l).collect() })
}

/// The frozen text tower's embeddings of [`captions`]: [24, text_dim].
fn embed_captions(text_dir: &Path, dev: &Device) -> Result<Tensor> {
    let (enc, _) = SentenceEncoder::load(text_dir, None, dev)?;
    let texts = captions();
    let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
    Ok(enc.embed(&refs, dev)?.0)
}

/// (colour, shape, both) accuracies and n.
struct Scores(f64, f64, f64, usize);

impl Scores {
    fn metrics(&self) -> BTreeMap<String, f64> {
        [("accuracy_color", self.0), ("accuracy_shape", self.1), ("accuracy", self.2)]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v))
            .collect()
    }
}

fn zero_shot(model: &VisionModel, images: &Images, text: &Tensor) -> Result<Scores> {
    let text = l2_normalize(&model.text_embeds(text)?)?;
    let n = images.labels.len();
    let mut predicted = Vec::with_capacity(n);
    for start in (0..n).step_by(EVAL_BATCH) {
        let px = images.pixels.narrow(0, start, EVAL_BATCH.min(n - start))?;
        let sim = l2_normalize(&model.image_embeds(&px)?)?.matmul(&text.t()?)?;
        predicted.extend(sim.argmax(D::Minus1)?.to_vec1::<u32>()?.into_iter().map(|p| p as usize));
    }
    let k = SHAPES.len();
    let share = |f: &dyn Fn(usize, usize) -> bool| {
        predicted.iter().zip(&images.labels).filter(|(&p, &t)| f(p, t)).count() as f64 / n as f64
    };
    Ok(Scores(
        share(&|p, t| p / k == t / k),
        share(&|p, t| p % k == t % k),
        share(&|p, t| p == t),
        n,
    ))
}

/// One of the 8 symmetries of the square per image, at random (flips and quarter turns):
/// colour and shape, hence the caption, stay the same. x: [b, 3, S, S] -> [b, 3, S, S]
fn dihedral(x: &Tensor, rng: &mut StdRng) -> Result<Tensor> {
    let rows = (0..x.dim(0)?)
        .map(|i| {
            let (mut t, k) = (x.get(i)?, rng.gen_range(0u8..8));
            if k & 1 != 0 {
                t = t.flip(&[2])?;
            }
            if k & 2 != 0 {
                t = t.flip(&[1])?;
            }
            if k & 4 != 0 {
                t = t.transpose(1, 2)?.contiguous()?;
            }
            Ok(t)
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(Tensor::stack(&rows, 0)?)
}

fn named(prefix: &str, vm: &VarMap) -> Result<Vec<(String, Var)>> {
    let data = vm.data().lock().map_err(|_| Error::Invalid("VarMap lock poisoned".into()))?;
    Ok(data.iter().map(|(k, v)| (format!("{prefix}.{k}"), v.clone())).collect())
}

fn count(vm: &VarMap) -> usize {
    vm.all_vars().iter().map(|v| v.elem_count()).sum()
}

/// The model's description before training (the trained `logit_scale` is filled in after).
fn model_file(recipe: &VisionRecipe, text_dim: usize) -> VisionModelFile {
    let contrastive = ContrastiveConfig {
        // A packaged text tower keeps its registered name (`minilm`), not this machine's
        // cache path, so that the model directory opens elsewhere.
        text: braid_hub::registered_name(&recipe.model.text)
            .map(String::from)
            .unwrap_or_else(|| recipe.model.text.to_string_lossy().into_owned()),
        text_dim,
        embed_dim: recipe.model.embed_dim.unwrap_or(text_dim),
        text_projection: recipe.model.embed_dim.is_some(),
        logit_scale: INITIAL_LOGIT_SCALE,
    };
    VisionModelFile {
        vit: recipe.model.vit.clone(),
        image_mean: IMAGE_MEAN,
        image_std: IMAGE_STD,
        contrastive,
    }
}

/// Trains the recipe's ViT against the frozen text tower (resuming its run when asked),
/// saves `out_dir/model/` and scores it zero-shot on the test images.
pub fn train_vision(recipe: &VisionRecipe, launch: &Launch) -> Result<(VisionReport, RunSummary)> {
    recipe.validate()?;
    let dev = Device::Cpu;
    let text = embed_captions(&recipe.model.text, &dev)?;
    let max = recipe.data.max_images;
    let (train, test) = (
        load_split(&recipe.data.path, Split::Train, max, &dev)?,
        load_split(&recipe.data.path, Split::Test, max, &dev)?,
    );
    let text_dim = text.dim(1)?;
    let mut file = model_file(recipe, text_dim);
    let (enc_vars, head_vars) = (VarMap::new(), VarMap::new());
    let seed = recipe.train.seed;
    let model = VisionModel::new(
        file.clone(),
        seeded_var_builder(&enc_vars, seed, DType::F32, &dev),
        seeded_var_builder(&head_vars, seed.wrapping_add(1), DType::F32, &dev),
    )?;
    let logit_scale = Var::from_tensor(&Tensor::new(INITIAL_LOGIT_SCALE as f32, &dev)?)?;
    let index = |ix: &[usize]| {
        Tensor::from_vec(ix.iter().map(|&i| i as u32).collect::<Vec<_>>(), ix.len(), &dev)
    };
    let mut vars = named("encoder", &enc_vars)?;
    vars.extend(named("head", &head_vars)?);
    let rng = RefCell::new(StdRng::seed_from_u64(seed.wrapping_add(2)));
    let batch = |ix: &[usize]| -> Result<Tensor> {
        let px = train.pixels.index_select(&index(ix)?, 0)?;
        if recipe.data.augment {
            return dihedral(&px, &mut rng.borrow_mut());
        }
        Ok(px)
    };
    let task = ContrastiveTask {
        left: Box::new(|ix| model.image_embeds(&batch(ix)?)),
        right: Box::new(|ix| {
            model.text_embeds(&text.index_select(
                &index(&ix.iter().map(|&i| train.labels[i]).collect::<Vec<_>>())?,
                0,
            )?)
        }),
        logit_scale: logit_scale.clone(),
        groups: Some(train.labels.clone()),
        len: train.labels.len(),
        vars,
        evaluate: Some(Box::new(|| Ok(zero_shot(&model, &test, &text)?.metrics()))),
    };
    let summary = fit(&task, &recipe.train, &launch.run_options(&recipe.out_dir))?;
    file.contrastive.logit_scale = f64::from(logit_scale.as_tensor().to_scalar::<f32>()?);
    let model_dir = launch
        .save_model(&recipe.out_dir, |tmp| VisionModel::save(&file, tmp, &enc_vars, &head_vars))?;
    let s = zero_shot(&model, &test, &text)?;
    let params = count(&enc_vars) + count(&head_vars) + 1;
    let report = VisionReport {
        accuracy_color: s.0,
        accuracy_shape: s.1,
        accuracy: s.2,
        n: s.3,
        params,
        train_seconds: summary.seconds,
        model_dir,
    };
    // A fresh model directory of this run: its score goes beside its weights.
    write_report(&report, &report.model_dir)?;
    Ok((report, summary))
}

/// Scores a saved model zero-shot on the recipe's test images (captions embedded by the
/// recipe's text tower); writes `eval.json` into `report_dir` (the run, or where the user
/// says: never the model directory read, which may be shared or read-only).
pub fn evaluate_vision(
    recipe: &VisionRecipe,
    model_dir: &Path,
    report_dir: &Path,
) -> Result<VisionReport> {
    recipe.validate()?;
    let dev = Device::Cpu;
    let (model, params) = VisionModel::load(model_dir, &dev)?;
    let text = embed_captions(&recipe.model.text, &dev)?;
    if text.dim(1)? != model.file.contrastive.text_dim {
        return Err(Error::config(
            "model.text",
            format!(
                "embeds in {} dimensions; {} was trained against {}",
                text.dim(1)?,
                model_dir.display(),
                model.file.contrastive.text_dim
            ),
        ));
    }
    let test = load_split(&recipe.data.path, Split::Test, recipe.data.max_images, &dev)?;
    let s = zero_shot(&model, &test, &text)?;
    let report = VisionReport {
        accuracy_color: s.0,
        accuracy_shape: s.1,
        accuracy: s.2,
        n: s.3,
        params,
        train_seconds: 0.0,
        model_dir: model_dir.to_path_buf(),
    };
    write_report(&report, report_dir)?;
    Ok(report)
}

fn write_report(report: &VisionReport, dir: &Path) -> Result<()> {
    let path = dir.join("eval.json");
    let json =
        serde_json::to_string_pretty(report).map_err(|e| Error::format(&path, e.to_string()))?;
    braid_core::fsx::write_file(&path, json.as_bytes())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use std::collections::BTreeSet;

    use super::*;

    #[test]
    fn dihedral_draws_all_eight_symmetries_and_keeps_pixels() {
        let x = Tensor::arange(0f32, 8.0, &Device::Cpu).unwrap().reshape((2, 1, 2, 2)).unwrap();
        let mut rng = StdRng::seed_from_u64(0);
        let mut seen = BTreeSet::new();
        for _ in 0..64 {
            let y = dihedral(&x, &mut rng).unwrap();
            assert_eq!(y.dims(), x.dims());
            let rows: Vec<Vec<f32>> = (0..2)
                .map(|i| y.get(i).unwrap().flatten_all().unwrap().to_vec1().unwrap())
                .collect();
            let mut sorted = rows[0].clone();
            sorted.sort_by(f32::total_cmp);
            assert_eq!(sorted, [0.0, 1.0, 2.0, 3.0]);
            seen.insert(rows[0].iter().map(|v| *v as u8).collect::<Vec<_>>());
        }
        // A 2x2 square with 4 distinct pixels has 8 distinct images under its symmetries.
        assert_eq!(seen.len(), 8);
    }
}
