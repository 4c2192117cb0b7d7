//! Placeholder splicing: projected encoder tokens take the place of `<image>` (`<audio>`,
//! `<imu>`, ...) ids among the text embeddings, in order, as transformers'
//! `LlavaModel.forward` does with `masked_scatter` (`models/llava/modeling_llava.py`).
//! Built from `narrow` and `cat`, so gradients reach both the text embeddings and the
//! projected tokens.

use braid_core::{Error, Result};
use candle_core::Tensor;

/// How many ids in `ids` equal `token`.
pub fn count_placeholders(ids: &[u32], token: u32) -> usize {
    ids.iter().filter(|&&id| id == token).count()
}

/// Replaces, row by row, every position of `ids` equal to `token` with the next row of
/// `features` (the rows of all images, in prompt order).
///
/// embeds: [batch, seq, d]; ids: batch rows of seq ids; features: [n, d] with n the
/// number of placeholder ids -> [batch, seq, d]
pub fn splice(embeds: &Tensor, ids: &[Vec<u32>], token: u32, features: &Tensor) -> Result<Tensor> {
    let total: usize = ids.iter().map(|row| count_placeholders(row, token)).sum();
    let (n, _) = features.dims2()?;
    if total != n {
        return Err(Error::Invalid(format!(
            "the prompt has {total} placeholder tokens but {n} projected tokens were given"
        )));
    }
    let mut next = 0;
    let rows = ids
        .iter()
        .enumerate()
        .map(|(b, row)| {
            let out = splice_row(&embeds.get(b)?, row, token, features, next)?;
            next += count_placeholders(row, token);
            Ok(out)
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(Tensor::stack(&rows, 0)?)
}

/// row: [seq, d] -> [seq, d], placeholders filled from `features[start..]`.
fn splice_row(
    row: &Tensor,
    ids: &[u32],
    token: u32,
    features: &Tensor,
    start: usize,
) -> Result<Tensor> {
    let mut parts = Vec::new();
    let (mut i, mut next) = (0, start);
    while i < ids.len() {
        let is_slot = ids[i] == token;
        let run = ids[i..].iter().take_while(|&&id| (id == token) == is_slot).count();
        parts.push(if is_slot { features.narrow(0, next, run)? } else { row.narrow(0, i, run)? });
        if is_slot {
            next += run;
        }
        i += run;
    }
    if parts.is_empty() {
        return Ok(row.clone());
    }
    Ok(Tensor::cat(&parts, 0)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    #[test]
    fn fills_slots_in_order_across_rows() -> Result<()> {
        let dev = Device::Cpu;
        let embeds = Tensor::zeros((2, 4, 2), candle_core::DType::F32, &dev)?;
        let feats = Tensor::new(&[[1f32, 1.], [2., 2.], [3., 3.]], &dev)?;
        let ids = vec![vec![5, 9, 9, 5], vec![9, 5, 5, 5]];
        let out: Vec<Vec<Vec<f32>>> = splice(&embeds, &ids, 9, &feats)?.to_vec3()?;
        assert_eq!(out[0][1], vec![1., 1.]);
        assert_eq!(out[0][2], vec![2., 2.]);
        assert_eq!(out[1][0], vec![3., 3.]);
        assert_eq!(out[1][1], vec![0., 0.]);
        Ok(())
    }

    #[test]
    fn counts_must_agree() {
        let dev = Device::Cpu;
        let embeds = Tensor::zeros((1, 3, 2), candle_core::DType::F32, &dev).unwrap();
        let feats = Tensor::zeros((1, 2), candle_core::DType::F32, &dev).unwrap();
        let err = splice(&embeds, &[vec![9, 9, 1]], 9, &feats).unwrap_err().to_string();
        assert!(err.contains('2') && err.contains('1'), "{err}");
    }
}
