//! PNG plots of a run: the loss curve (train and eval), the eval metrics over steps, and a
//! confusion matrix. Drawn with `plotters` and an embedded DejaVu Sans Mono (Bitstream Vera
//! licence, `assets/fonts/`), so plots look the same on machines without fonts.

use std::path::Path;
use std::sync::Once;

use braid_core::{Error, Result};
use plotters::prelude::*;
use plotters::style::FontStyle;

use crate::metrics::Record;

static FONT: &[u8] = include_bytes!("../../../assets/fonts/DejaVuSansMono.ttf");
static REGISTER: Once = Once::new();
const SIZE: (u32, u32) = (900, 560);
const FAMILY: &str = "sans-serif";

fn fonts() {
    REGISTER.call_once(|| {
        // The embedded font parses; an error here would only lose the plot's text.
        let _ = plotters::style::register_font(FAMILY, FontStyle::Normal, FONT);
    });
}

fn plot_err(path: &Path, e: impl std::fmt::Display) -> Error {
    Error::format(path, format!("could not draw the plot: {e}"))
}

/// One named series of `(step, value)` points.
type Series = (String, Vec<(f64, f64)>);

/// Values of `key` in the records of `split`.
fn series(records: &[Record], split: &str, key: &str) -> Vec<(f64, f64)> {
    records
        .iter()
        .filter(|r| r.split == split)
        .filter_map(|r| Some((r.step as f64, *r.values.get(key)?)))
        .filter(|(_, v)| v.is_finite())
        .collect()
}

/// Writes `loss.png` (train and eval loss) and, when evaluation logged other metrics,
/// `metrics.png`, into `dir`. Returns the files written.
pub fn plot_run(records: &[Record], dir: &Path) -> Result<Vec<std::path::PathBuf>> {
    let mut written = Vec::new();
    let losses: Vec<Series> = [("train loss", "train"), ("eval loss", "eval")]
        .iter()
        .map(|(name, split)| (name.to_string(), series(records, split, "loss")))
        .filter(|(_, s)| !s.is_empty())
        .collect();
    if !losses.is_empty() {
        let path = dir.join("loss.png");
        line_chart(&path, "loss", &losses)?;
        written.push(path);
    }
    let mut keys: Vec<&String> = records
        .iter()
        .filter(|r| r.split == "eval")
        .flat_map(|r| r.values.keys())
        .filter(|k| *k != "loss" && *k != "n")
        .collect();
    keys.sort();
    keys.dedup();
    let metrics: Vec<Series> = keys
        .iter()
        .map(|k| (k.to_string(), series(records, "eval", k)))
        .filter(|(_, s)| !s.is_empty())
        .collect();
    if !metrics.is_empty() {
        let path = dir.join("metrics.png");
        line_chart(&path, "eval metrics", &metrics)?;
        written.push(path);
    }
    Ok(written)
}

fn bounds(series: &[Series]) -> ((f64, f64), (f64, f64)) {
    let pts = series.iter().flat_map(|(_, s)| s.iter());
    let (mut x0, mut x1, mut y0, mut y1) = (f64::MAX, f64::MIN, f64::MAX, f64::MIN);
    for &(x, y) in pts {
        (x0, x1, y0, y1) = (x0.min(x), x1.max(x), y0.min(y), y1.max(y));
    }
    let pad = ((y1 - y0) * 0.05).max(1e-6);
    ((x0, x1.max(x0 + 1.0)), (y0 - pad, y1 + pad))
}

/// A line chart of `series` against steps.
pub fn line_chart(path: &Path, title: &str, series: &[Series]) -> Result<()> {
    line_chart_xy(path, title, "step", series)
}

/// A line chart of `series` against an x axis described by `x_desc`.
pub fn line_chart_xy(path: &Path, title: &str, x_desc: &str, series: &[Series]) -> Result<()> {
    fonts();
    let root = BitMapBackend::new(path, SIZE).into_drawing_area();
    root.fill(&WHITE).map_err(|e| plot_err(path, e))?;
    let ((x0, x1), (y0, y1)) = bounds(series);
    let mut chart = ChartBuilder::on(&root)
        .caption(title, (FAMILY, 24))
        .margin(16)
        .x_label_area_size(40)
        .y_label_area_size(64)
        .build_cartesian_2d(x0..x1, y0..y1)
        .map_err(|e| plot_err(path, e))?;
    chart
        .configure_mesh()
        .x_desc(x_desc)
        .label_style((FAMILY, 14))
        .draw()
        .map_err(|e| plot_err(path, e))?;
    for (i, (name, pts)) in series.iter().enumerate() {
        let color = Palette99::pick(i).to_rgba();
        let anno = chart
            .draw_series(LineSeries::new(pts.iter().copied(), color.stroke_width(2)))
            .map_err(|e| plot_err(path, e))?;
        anno.label(name.as_str()).legend(move |(x, y)| {
            PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2))
        });
    }
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .label_font((FAMILY, 14))
        .draw()
        .map_err(|e| plot_err(path, e))?;
    root.present().map_err(|e| plot_err(path, e))
}

/// A confusion matrix (rows: true class, columns: predicted) as a heat map with counts,
/// each row shaded by its share of the row's windows.
pub fn confusion_png(path: &Path, matrix: &[Vec<usize>], classes: &[String]) -> Result<()> {
    let n = classes.len();
    if matrix.len() != n || matrix.iter().any(|r| r.len() != n) {
        return Err(Error::shape(
            "confusion matrix",
            &[n, n],
            &[matrix.len(), matrix.first().map_or(0, Vec::len)],
        ));
    }
    let cells: Vec<Vec<(f64, String)>> = matrix
        .iter()
        .map(|row| {
            let total = row.iter().sum::<usize>().max(1) as f64;
            row.iter().map(|&c| (c as f64 / total, c.to_string())).collect()
        })
        .collect();
    heatmap_png(path, "rows: true class, columns: predicted", &cells, classes, classes)
}

/// A heat map: `cells[r][c]` is a shade in [0, 1] and the text written in the cell;
/// rows and columns labelled (column labels cut to 11 characters).
pub fn heatmap_png(
    path: &Path,
    title: &str,
    cells: &[Vec<(f64, String)>],
    rows: &[String],
    columns: &[String],
) -> Result<()> {
    fonts();
    let (nr, nc) = (rows.len(), columns.len());
    if cells.len() != nr || cells.iter().any(|r| r.len() != nc) {
        return Err(Error::shape(
            "heat map cells",
            &[nr, nc],
            &[cells.len(), cells.first().map_or(0, Vec::len)],
        ));
    }
    let (cell, left, top) = (80i32, 190i32, 60i32);
    let size =
        (left as u32 + cell as u32 * nc as u32 + 20, top as u32 + cell as u32 * nr as u32 + 40);
    let root = BitMapBackend::new(path, size).into_drawing_area();
    root.fill(&WHITE).map_err(|e| plot_err(path, e))?;
    let put = |s: &str, px: i32, at: (i32, i32)| -> Result<()> {
        let style = TextStyle::from((FAMILY, px).into_font()).color(&BLACK);
        root.draw(&Text::new(s.to_string(), at, style)).map_err(|e| plot_err(path, e))
    };
    put(title, 18, (8, 12))?;
    for (r, row) in cells.iter().enumerate() {
        let y = top + cell * r as i32;
        put(&rows[r], 14, (8, y + cell / 2 - 7))?;
        for (c, (shade, label)) in row.iter().enumerate() {
            let share = shade.clamp(0.0, 1.0);
            let x = left + cell * c as i32;
            let fill = RGBColor(255 - (200.0 * share) as u8, 255 - (120.0 * share) as u8, 255);
            root.draw(&Rectangle::new([(x, y), (x + cell, y + cell)], fill.filled()))
                .map_err(|e| plot_err(path, e))?;
            root.draw(&Rectangle::new([(x, y), (x + cell, y + cell)], BLACK.mix(0.2)))
                .map_err(|e| plot_err(path, e))?;
            put(label, 16, (x + cell / 2 - 5 * label.len() as i32, y + cell / 2 - 8))?;
        }
    }
    for (c, name) in columns.iter().enumerate() {
        let short: String = name.chars().take(11).collect();
        put(&short, 12, (left + cell * c as i32 + 2, top + cell * nr as i32 + 6))?;
    }
    root.present().map_err(|e| plot_err(path, e))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use std::collections::BTreeMap;

    use super::*;

    fn is_png(path: &Path) -> bool {
        std::fs::read(path).unwrap().starts_with(b"\x89PNG")
    }

    #[test]
    fn run_and_confusion_plots_are_pngs() {
        let dir = tempfile::tempdir().unwrap();
        let rec = |step, split: &str, k: &str, v| Record {
            step,
            split: split.into(),
            values: BTreeMap::from([(k.to_string(), v)]),
        };
        let records = vec![
            rec(1, "train", "loss", 2.0),
            rec(2, "train", "loss", 1.0),
            rec(2, "eval", "accuracy", 0.5),
            rec(2, "eval", "loss", 1.5),
        ];
        let files = plot_run(&records, dir.path()).unwrap();
        assert_eq!(files.len(), 2);
        assert!(files.iter().all(|f| is_png(f)));
        let path = dir.path().join("cm.png");
        confusion_png(&path, &[vec![3, 1], vec![0, 4]], &["a".into(), "b".into()]).unwrap();
        assert!(is_png(&path));
        assert!(confusion_png(&path, &[vec![1]], &["a".into(), "b".into()]).is_err());
    }
}
