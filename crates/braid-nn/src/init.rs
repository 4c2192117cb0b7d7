//! Seeded initialisation: candle's CPU random generator cannot be seeded, so a model built
//! through [`seeded_var_builder`] draws its initial weights from a `StdRng` seeded by the
//! recipe instead, with the distributions candle's [`Init`] names (Kaiming as in
//! `torch.nn.init`). The same seed and architecture give the same initial model.

use std::sync::{Arc, Mutex};

use candle_core::{DType, Device, Shape, Tensor, Var};
use candle_nn::init::{FanInOut, NormalOrUniform};
use candle_nn::var_builder::SimpleBackend;
use candle_nn::{Init, VarBuilder, VarMap};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

struct Seeded {
    map: VarMap,
    rng: Arc<Mutex<StdRng>>,
}

impl Seeded {
    fn draw(&self, shape: &Shape, init: Init) -> candle_core::Result<Vec<f32>> {
        let n = shape.elem_count();
        let mut rng =
            self.rng.lock().map_err(|_| candle_core::Error::Msg("init rng poisoned".into()))?;
        let uniform = |rng: &mut StdRng, b: f64| {
            (0..n).map(|_| rng.gen_range(-b..=b) as f32).collect::<Vec<_>>()
        };
        // Box-Muller: two uniforms give one standard normal.
        let normal = |rng: &mut StdRng, mean: f64, std: f64| -> candle_core::Result<Vec<f32>> {
            let z = |rng: &mut StdRng| {
                (-2.0 * (1.0 - rng.gen::<f64>()).ln()).sqrt()
                    * (std::f64::consts::TAU * rng.gen::<f64>()).cos()
            };
            Ok((0..n).map(|_| (mean + std * z(rng)) as f32).collect())
        };
        Ok(match init {
            Init::Const(v) => vec![v as f32; n],
            Init::Uniform { lo, up } => (0..n).map(|_| rng.gen_range(lo..=up) as f32).collect(),
            Init::Randn { mean, stdev } => normal(&mut rng, mean, stdev)?,
            Init::Kaiming { dist, fan, non_linearity } => {
                let fan = match fan {
                    FanInOut::FanIn | FanInOut::FanOut => fan.for_shape(shape),
                };
                let std = non_linearity.gain() / (fan.max(1) as f64).sqrt();
                match dist {
                    NormalOrUniform::Uniform => uniform(&mut rng, 3f64.sqrt() * std),
                    NormalOrUniform::Normal => normal(&mut rng, 0.0, std)?,
                }
            }
        })
    }
}

impl SimpleBackend for Seeded {
    fn get(
        &self,
        s: Shape,
        name: &str,
        h: Init,
        dtype: DType,
        dev: &Device,
    ) -> candle_core::Result<Tensor> {
        let data = self.map.data();
        let mut vars =
            data.lock().map_err(|_| candle_core::Error::Msg("VarMap lock poisoned".into()))?;
        if let Some(v) = vars.get(name) {
            if v.shape() != &s {
                return Err(candle_core::Error::Msg(format!(
                    "variable {name}: shape {:?} requested, {:?} exists",
                    s.dims(),
                    v.dims()
                )));
            }
            return Ok(v.as_tensor().clone());
        }
        let t = Tensor::from_vec(self.draw(&s, h)?, s, dev)?.to_dtype(dtype)?;
        let var = Var::from_tensor(&t)?;
        let out = var.as_tensor().clone();
        vars.insert(name.to_string(), var);
        Ok(out)
    }

    fn get_unchecked(
        &self,
        name: &str,
        _dtype: DType,
        _dev: &Device,
    ) -> candle_core::Result<Tensor> {
        let data = self.map.data();
        let vars =
            data.lock().map_err(|_| candle_core::Error::Msg("VarMap lock poisoned".into()))?;
        vars.get(name)
            .map(|v| v.as_tensor().clone())
            .ok_or_else(|| candle_core::Error::Msg(format!("no variable {name}")))
    }

    fn contains_tensor(&self, name: &str) -> bool {
        self.map.data().lock().map(|m| m.contains_key(name)).unwrap_or(false)
    }
}

/// A `VarBuilder` that creates its variables in `varmap`, drawn from `seed`.
pub fn seeded_var_builder(
    varmap: &VarMap,
    seed: u64,
    dtype: DType,
    device: &Device,
) -> VarBuilder<'static> {
    let backend: Box<dyn SimpleBackend> = Box::new(Seeded {
        map: varmap.clone(),
        rng: Arc::new(Mutex::new(StdRng::seed_from_u64(seed))),
    });
    VarBuilder::from_backend(backend, dtype, device.clone())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn build(seed: u64) -> (VarMap, Vec<f32>) {
        let vm = VarMap::new();
        let vb = seeded_var_builder(&vm, seed, DType::F32, &Device::Cpu);
        let lin = candle_nn::linear(64, 32, vb.pp("fc")).unwrap();
        (vm, lin.weight().flatten_all().unwrap().to_vec1().unwrap())
    }

    #[test]
    fn same_seed_same_weights_and_kaiming_bounds() {
        let ((vm, a), (_, b), (_, c)) = (build(1), build(1), build(2));
        assert_eq!(a, b);
        assert_ne!(a, c);
        // candle's linear weight: Kaiming normal, fan-in 64, ReLU gain: std sqrt(2/64).
        let std = (a.iter().map(|v| v * v).sum::<f32>() / a.len() as f32).sqrt();
        assert!((std - (2f32 / 64.0).sqrt()).abs() < 0.01, "{std}");
        assert_eq!(vm.all_vars().len(), 2, "weight and bias are variables of the map");
    }
}
