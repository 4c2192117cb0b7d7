//! A trained IMU encoder as a directory: `imu_encoder.json` (which encoder, its config),
//! `model.safetensors` (its variables) and `imu_stats.json` (the per-channel statistics the
//! inputs were standardised with, `braid_data::imu::STATS_FILE`), so that inference applies
//! the training-time standardisation.

use std::path::Path;

use braid_core::checkpoint::{Checkpoint, LoadReport};
use braid_core::{Error, Features, Result};
use braid_data::imu::{ChannelStats, STATS_FILE};
use candle_core::{DType, Device, Tensor};
use candle_nn::{VarBuilder, VarMap};
use serde::{Deserialize, Serialize};

use super::{Cnn1d, Cnn1dConfig, PatchTransformer, PatchTransformerConfig, RecurrentConfig, RecurrentEncoder};
use crate::Encoder;

/// The config file's name in a model directory.
pub const CONFIG_FILE: &str = "imu_encoder.json";

/// Which IMU encoder, with its settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ImuEncoderConfig {
    /// [`RecurrentEncoder`] (GRU or LSTM).
    Recurrent(RecurrentConfig),
    /// [`PatchTransformer`].
    Patch(PatchTransformerConfig),
    /// [`Cnn1d`].
    Cnn(Cnn1dConfig),
}

impl ImuEncoderConfig {
    /// Builds the encoder from `vb`.
    pub fn build(&self, vb: VarBuilder) -> Result<Box<dyn Encoder>> {
        Ok(match self {
            Self::Recurrent(c) => Box::new(RecurrentEncoder::new(*c, vb)?),
            Self::Patch(c) => Box::new(PatchTransformer::new(*c, vb)?),
            Self::Cnn(c) => Box::new(Cnn1d::new(c.clone(), vb)?),
        })
    }
}

/// An encoder with the statistics its inputs must be standardised with.
pub struct ImuModel {
    /// The encoder.
    pub encoder: Box<dyn Encoder>,
    /// Its configuration.
    pub config: ImuEncoderConfig,
    /// Per-channel statistics (`None`: inputs are used as they are).
    pub stats: Option<ChannelStats>,
}

impl ImuModel {
    /// Writes `dir/imu_encoder.json`, `dir/model.safetensors` (from `varmap`) and, when
    /// given, `dir/imu_stats.json`.
    pub fn save(dir: &Path, config: &ImuEncoderConfig, varmap: &VarMap, stats: Option<&ChannelStats>) -> Result<()> {
        std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
        let cfg_path = dir.join(CONFIG_FILE);
        let json = serde_json::to_string_pretty(config).map_err(|e| Error::format(&cfg_path, e.to_string()))?;
        std::fs::write(&cfg_path, json).map_err(|e| Error::io(&cfg_path, e))?;
        varmap.save(dir.join("model.safetensors"))?;
        if let Some(s) = stats {
            s.save(dir.join(STATS_FILE))?;
        }
        Ok(())
    }

    /// Loads a directory written by [`Self::save`]; every variable must be present and used.
    pub fn load(dir: &Path, device: &Device) -> Result<(Self, LoadReport)> {
        let cfg_path = dir.join(CONFIG_FILE);
        let text = std::fs::read_to_string(&cfg_path).map_err(|e| Error::io(&cfg_path, e))?;
        let config: ImuEncoderConfig = serde_json::from_str(&text).map_err(|e| Error::format(&cfg_path, e.to_string()))?;
        let path = dir.join("model.safetensors");
        let ckpt = Checkpoint::open(&path)?;
        let (vb, tracker) = ckpt.var_builder(DType::F32, device);
        let encoder = config.build(vb)?;
        let report = tracker.report().into_result(&path)?;
        let stats_path = dir.join(STATS_FILE);
        let stats = if stats_path.is_file() { Some(ChannelStats::load(&stats_path)?) } else { None };
        Ok((Self { encoder, config, stats }, report))
    }

    /// Standardises (when statistics are present) and encodes.
    ///
    /// x: [batch, time, channels]; mask: [batch, time] -> tokens [batch, n, D]
    pub fn encode(&self, x: &Tensor, mask: Option<&Tensor>) -> Result<Features> {
        let x = match &self.stats {
            Some(s) => s.apply(x)?,
            None => x.clone(),
        };
        self.encoder.encode(&x, mask)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::imu::RnnKind;
    use braid_data::imu::Recording;

    #[test]
    fn a_saved_model_loads_with_its_statistics_and_gives_the_same_output() -> Result<()> {
        let dir = tempfile::tempdir().map_err(|e| Error::io("tempdir", e))?;
        let config = ImuEncoderConfig::Recurrent(RecurrentConfig { kind: RnnKind::Lstm, input_size: 2, hidden_size: 3, num_layers: 1, bias: true });
        let vm = VarMap::new();
        let encoder = config.build(VarBuilder::from_varmap(&vm, DType::F32, &Device::Cpu))?;
        let rec = Recording { name: "r".into(), values: vec![1.0, 10.0, 3.0, 30.0], labels: vec![0, 0], subject: None };
        let stats = ChannelStats::fit([&rec], &["a".to_string(), "b".to_string()])?;
        ImuModel::save(dir.path(), &config, &vm, Some(&stats))?;
        let (model, report) = ImuModel::load(dir.path(), &Device::Cpu)?;
        assert_eq!((report.used, model.stats.as_ref()), (4, Some(&stats)));
        let x = Tensor::new(&[[[1f32, 10.], [3., 30.]]], &Device::Cpu)?;
        let want = encoder.encode(&stats.apply(&x)?, None)?.tokens;
        braid_core::testing::assert_close(&model.encode(&x, None)?.tokens, &want, 1e-6, "reloaded")?;
        Ok(())
    }
}
