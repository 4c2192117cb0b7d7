//! Classification metrics as scikit-learn computes them: accuracy, per-class F1
//! (`f1_score(average=None)`, 0 where a class is never predicted nor present), macro F1
//! (their unweighted mean over the classes present in truth or predictions) and the
//! confusion matrix (rows: true class, columns: predicted).

use std::collections::BTreeMap;

use serde::Serialize;

/// Scores of one evaluation.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ClassMetrics {
    /// Examples scored.
    pub n: usize,
    /// Share of correct predictions.
    pub accuracy: f64,
    /// Mean of the per-class F1 over classes that occur (in truth or predictions).
    pub macro_f1: f64,
    /// F1 per class (index order).
    pub per_class_f1: Vec<f64>,
    /// `confusion[true][predicted]` counts.
    pub confusion: Vec<Vec<usize>>,
}

impl ClassMetrics {
    /// Scores `predicted` against `truth` over `classes` classes (labels `< classes`).
    pub fn new(predicted: &[usize], truth: &[usize], classes: usize) -> Self {
        let mut confusion = vec![vec![0usize; classes]; classes];
        for (&p, &t) in predicted.iter().zip(truth) {
            if let Some(cell) = confusion.get_mut(t).and_then(|row| row.get_mut(p)) {
                *cell += 1;
            }
        }
        let n = truth.len().min(predicted.len());
        let correct: usize = (0..classes).map(|k| confusion[k][k]).sum();
        let mut per_class_f1 = Vec::with_capacity(classes);
        let mut occurring = Vec::new();
        for k in 0..classes {
            let tp = confusion[k][k] as f64;
            let actual: usize = confusion[k].iter().sum();
            let predicted_k: usize = confusion.iter().map(|row| row[k]).sum();
            let denom = (actual + predicted_k) as f64;
            per_class_f1.push(if denom > 0.0 { 2.0 * tp / denom } else { 0.0 });
            if denom > 0.0 {
                occurring.push(k);
            }
        }
        let macro_f1 = if occurring.is_empty() {
            0.0
        } else {
            occurring.iter().map(|&k| per_class_f1[k]).sum::<f64>() / occurring.len() as f64
        };
        let accuracy = if n == 0 { 0.0 } else { correct as f64 / n as f64 };
        Self { n, accuracy, macro_f1, per_class_f1, confusion }
    }

    /// `accuracy`, `macro_f1` and `n` by name (what the training log records).
    pub fn summary(&self) -> BTreeMap<String, f64> {
        BTreeMap::from([
            ("accuracy".into(), self.accuracy),
            ("macro_f1".into(), self.macro_f1),
            ("n".into(), self.n as f64),
        ])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_scikit_learn() {
        // sklearn: f1_score([0,0,1,1,2,2], [0,1,1,1,2,0], average=None) = [0.5, 0.8, 0.6667]
        let m = ClassMetrics::new(&[0, 1, 1, 1, 2, 0], &[0, 0, 1, 1, 2, 2], 4);
        assert_eq!(m.confusion[0], vec![1, 1, 0, 0]);
        assert!((m.accuracy - 4.0 / 6.0).abs() < 1e-12);
        let want = [0.5, 0.8, 2.0 / 3.0, 0.0];
        assert!(
            m.per_class_f1.iter().zip(want).all(|(a, b)| (a - b).abs() < 1e-12),
            "{:?}",
            m.per_class_f1
        );
        assert!((m.macro_f1 - (0.5 + 0.8 + 2.0 / 3.0) / 3.0).abs() < 1e-12);
        assert_eq!(m.summary()["n"], 6.0);
    }
}
