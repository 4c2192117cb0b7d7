//! The k-shot table of the few-shot literature (CoOp, Tip-Adapter, SuS-X): for each k,
//! k training images per class sampled with each of several seeds, every method fitted
//! on them (hyper-parameters on the validation split) and scored on the test split; the
//! mean and standard deviation over the samplings. Zero-shot and SuS-X see no target
//! image and are the same for every k.

use std::collections::BTreeMap;
use std::path::Path;

use braid_core::{Error, Result};
use candle_core::Tensor;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::SeedableRng;
use serde::{Deserialize, Serialize};

use super::{accuracy, fit, FitInputs, Labelled, Method, Support};

/// CapS inputs aligned row for row with the training pool: features of an image
/// regenerated from each pool image's caption, and of the caption itself.
#[derive(Debug, Clone)]
pub struct CapsPool {
    /// Regenerated-image features [P, D].
    pub regenerated: Tensor,
    /// Caption features [P, D].
    pub captions: Tensor,
}

/// One line of a CapS file: a training image, its caption (written by a captioning
/// model) and an image generated from that caption; paths relative to the file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CapsEntry {
    /// The target training image.
    pub image: std::path::PathBuf,
    /// Its caption.
    pub caption: String,
    /// The image regenerated from the caption.
    pub regenerated: std::path::PathBuf,
}

/// Reads a CapS file (a JSON list of [`CapsEntry`]); errors name the file.
pub fn read_caps_file(path: &Path) -> Result<Vec<CapsEntry>> {
    let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
    serde_json::from_str(&text).map_err(|e| Error::format(path, e.to_string()))
}

/// Everything a table is computed from (features already extracted).
#[derive(Debug, Clone)]
pub struct TableInputs<'a> {
    /// Class names.
    pub classes: &'a [String],
    /// Class text weights [C, D].
    pub text: &'a Tensor,
    /// Zero-shot scale.
    pub scale: f64,
    /// The training images the shots are drawn from.
    pub pool: &'a Labelled,
    /// Validation split.
    pub val: &'a Labelled,
    /// Test split.
    pub test: &'a Labelled,
    /// SuS-X's generated support set.
    pub sus: Option<&'a Support>,
    /// CapS's regenerated images and captions of the pool.
    pub caps: Option<&'a CapsPool>,
    /// Tip-Adapter-F's epochs.
    pub tip_f_epochs: usize,
}

/// One cell: accuracies (%) over the samplings.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Cell {
    /// Mean.
    pub mean: f64,
    /// Standard deviation (population).
    pub std: f64,
    /// Each sampling's accuracy.
    pub runs: Vec<f64>,
}

/// The table: method -> k -> cell.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Table {
    /// Shots per class of the columns.
    pub shots: Vec<usize>,
    /// Cells by method name, then k.
    pub cells: BTreeMap<String, BTreeMap<usize, Cell>>,
}

/// `k` pool rows per class, sampled with `seed`. Errors when a class has fewer.
pub fn sample_shots(labels: &[usize], classes: usize, k: usize, seed: u64) -> Result<Vec<usize>> {
    let mut by_class = vec![Vec::new(); classes];
    for (i, &l) in labels.iter().enumerate() {
        by_class[l].push(i);
    }
    let mut rng = StdRng::seed_from_u64(seed);
    let mut out = Vec::with_capacity(k * classes);
    for (c, rows) in by_class.iter_mut().enumerate() {
        if rows.len() < k {
            return Err(Error::config(
                "shots",
                format!("{k} shots asked, but class {c} has only {} training images", rows.len()),
            ));
        }
        rows.shuffle(&mut rng);
        out.extend_from_slice(&rows[..k]);
    }
    Ok(out)
}

/// Computes the table for `methods` over `shots` x `seeds`; `log` hears each cell.
pub fn kshot_table(
    inp: &TableInputs,
    methods: &[Method],
    shots: &[usize],
    seeds: u64,
    log: &mut dyn FnMut(&str),
) -> Result<Table> {
    let mut table = Table { shots: shots.to_vec(), cells: BTreeMap::new() };
    let score = |m: Method, support: Option<&Support>, seed: u64| -> Result<f64> {
        let fi = FitInputs {
            classes: inp.classes,
            text: inp.text,
            scale: inp.scale,
            support,
            val: inp.val,
            seed,
            tip_f_epochs: inp.tip_f_epochs,
        };
        let (adapter, _) = fit(m, &fi)?;
        Ok(100.0 * accuracy(&adapter.predict(&inp.test.features)?, &inp.test.labels))
    };
    for &m in methods {
        let row = table.cells.entry(m.name().to_string()).or_default();
        // Methods that see no target image: one score for every k.
        if !m.uses_shots() {
            let acc = score(m, if m == Method::SusX { inp.sus } else { None }, 0)?;
            log(&format!("{:<13} any k: {acc:.2}", m.name()));
            for &k in shots {
                row.insert(k, Cell { mean: acc, std: 0.0, runs: vec![acc] });
            }
            continue;
        }
        for &k in shots {
            let mut runs = Vec::new();
            for seed in 0..seeds {
                let idx = sample_shots(&inp.pool.labels, inp.classes.len(), k, seed)?;
                let images = inp.pool.select(&idx)?;
                let support = if m == Method::Caps {
                    let caps = inp.caps.ok_or_else(|| {
                        Error::config(
                            "caps",
                            "CapS needs regenerated images and captions".to_string(),
                        )
                    })?;
                    let ids = Tensor::new(
                        idx.iter().map(|&i| i as u32).collect::<Vec<_>>(),
                        images.features.device(),
                    )?;
                    Support {
                        images: Labelled {
                            features: caps.regenerated.index_select(&ids, 0)?,
                            labels: images.labels.clone(),
                        },
                        captions: Some(caps.captions.index_select(&ids, 0)?),
                    }
                } else {
                    Support { images, captions: None }
                };
                runs.push(score(m, Some(&support), seed)?);
            }
            let cell = summarise(runs);
            log(&format!("{:<13} k={k:<2}: {:.2} ± {:.2}", m.name(), cell.mean, cell.std));
            row.insert(k, cell);
        }
    }
    Ok(table)
}

fn summarise(runs: Vec<f64>) -> Cell {
    let n = runs.len().max(1) as f64;
    let mean = runs.iter().sum::<f64>() / n;
    let std = (runs.iter().map(|r| (r - mean).powi(2)).sum::<f64>() / n).sqrt();
    Cell { mean, std, runs }
}

impl Table {
    /// A Markdown table: methods down, k across, `mean ± std`.
    pub fn markdown(&self) -> String {
        let mut s = String::from("| method |");
        for k in &self.shots {
            s += &format!(" {k}-shot |");
        }
        s += "\n|---|";
        s += &"---|".repeat(self.shots.len());
        for m in Method::ALL {
            let Some(row) = self.cells.get(m.name()) else { continue };
            s += &format!("\n| {} |", m.name());
            for k in &self.shots {
                match row.get(k) {
                    Some(c) if c.runs.len() > 1 => s += &format!(" {:.1} ± {:.1} |", c.mean, c.std),
                    Some(c) => s += &format!(" {:.1} |", c.mean),
                    None => s += " – |",
                }
            }
        }
        s + "\n"
    }

    /// Writes `table.json`, `table.md` and `table.png` (accuracy against shots) into `dir`.
    pub fn write(&self, dir: &Path, title: &str) -> Result<()> {
        std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
        let json =
            serde_json::to_string_pretty(self).map_err(|e| Error::format(dir, e.to_string()))?;
        braid_core::fsx::write_file(&dir.join("table.json"), json.as_bytes())?;
        braid_core::fsx::write_file(&dir.join("table.md"), self.markdown().as_bytes())?;
        let series: Vec<(String, Vec<(f64, f64)>)> = Method::ALL
            .iter()
            .filter_map(|m| {
                let row = self.cells.get(m.name())?;
                Some((
                    m.name().to_string(),
                    row.iter().map(|(&k, c)| ((k as f64).log2(), c.mean)).collect(),
                ))
            })
            .collect();
        crate::plot::line_chart_xy(&dir.join("table.png"), title, "log2(shots per class)", &series)
    }
}
