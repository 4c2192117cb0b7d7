//! Metrics as JSON Lines (`metrics.jsonl`): one object per logged step,
//! `{"step": 12, "split": "train", "loss": 0.53, "lr": 0.001, ...}`, so any tool (pandas,
//! jq) reads a run. Resuming from step `s` first drops the lines after `s`, so the file
//! tells the story of the run that actually produced the weights.

use std::collections::BTreeMap;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use braid_core::{Error, Result};
use serde_json::{Map, Value};

/// The log's file name in a run directory.
pub const METRICS_FILE: &str = "metrics.jsonl";

/// One line of the log.
#[derive(Debug, Clone, PartialEq)]
pub struct Record {
    /// Optimiser steps taken when it was logged.
    pub step: usize,
    /// `train` or `eval`.
    pub split: String,
    /// Named values.
    pub values: BTreeMap<String, f64>,
}

impl Record {
    fn to_json(&self) -> Value {
        let mut m = Map::new();
        m.insert("step".into(), self.step.into());
        m.insert("split".into(), self.split.clone().into());
        for (k, v) in &self.values {
            m.insert(
                k.clone(),
                serde_json::Number::from_f64(*v).map_or(Value::Null, Value::Number),
            );
        }
        Value::Object(m)
    }

    fn from_json(v: &Value) -> Option<Self> {
        let obj = v.as_object()?;
        let step = obj.get("step")?.as_u64()? as usize;
        let split = obj.get("split")?.as_str()?.to_string();
        let values = obj
            .iter()
            .filter_map(|(k, v)| Some((k.clone(), v.as_f64()?)))
            .filter(|(k, _)| k != "step")
            .collect();
        Some(Self { step, split, values })
    }
}

/// An append-only metrics log.
#[derive(Debug)]
pub struct MetricsLog {
    path: PathBuf,
    file: fs::File,
}

impl MetricsLog {
    /// Opens `dir/metrics.jsonl`, keeping only the records up to step `keep_until` (a fresh
    /// run passes 0 and starts an empty log).
    pub fn open(dir: &Path, keep_until: usize) -> Result<Self> {
        let path = dir.join(METRICS_FILE);
        let kept: Vec<Record> = read_records(&path)?
            .into_iter()
            .filter(|r| r.step <= keep_until && keep_until > 0)
            .collect();
        let mut text = String::new();
        for r in &kept {
            text.push_str(&r.to_json().to_string());
            text.push('\n');
        }
        braid_core::fsx::write_file(&path, text.as_bytes())?;
        let file =
            fs::OpenOptions::new().append(true).open(&path).map_err(|e| Error::io(&path, e))?;
        Ok(Self { path, file })
    }

    /// Appends a record (flushed at once, so a killed run keeps its log).
    pub fn write(&mut self, record: &Record) -> Result<()> {
        writeln!(self.file, "{}", record.to_json()).map_err(|e| Error::io(&self.path, e))?;
        self.file.flush().map_err(|e| Error::io(&self.path, e))
    }

    /// The log file.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// Every well-formed record in a log (a missing file has none; a torn last line is skipped).
pub fn read_records(path: &Path) -> Result<Vec<Record>> {
    let text = match fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(Error::io(path, e)),
    };
    Ok(text
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter_map(|v| Record::from_json(&v))
        .collect())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn rec(step: usize, loss: f64) -> Record {
        Record { step, split: "train".into(), values: BTreeMap::from([("loss".into(), loss)]) }
    }

    #[test]
    fn resuming_drops_records_after_the_checkpoint() {
        let dir = tempfile::tempdir().unwrap();
        let mut log = MetricsLog::open(dir.path(), 0).unwrap();
        for s in 1..=4 {
            log.write(&rec(s, s as f64)).unwrap();
        }
        fs::OpenOptions::new()
            .append(true)
            .open(log.path())
            .unwrap()
            .write_all(b"{\"step\": 5, \"spl")
            .unwrap();
        let mut log = MetricsLog::open(dir.path(), 2).unwrap();
        log.write(&rec(3, 0.5)).unwrap();
        let got = read_records(log.path()).unwrap();
        assert_eq!(got, vec![rec(1, 1.0), rec(2, 2.0), rec(3, 0.5)]);
        assert!(MetricsLog::open(dir.path(), 0).is_ok());
        assert!(read_records(&dir.path().join(METRICS_FILE)).unwrap().is_empty());
    }
}
