//! AdamW state as safetensors, for resuming: per variable `NAME.exp_avg`, `NAME.exp_avg_sq`
//! and `NAME.step` (one f64, exact up to 2^53 steps), plus
//! `__lr__`, the learning rate in force. Loading checks that every saved variable is one
//! this optimiser owns, with the same shape, so a resume against another model fails early.

use std::collections::HashMap;
use std::path::Path;

use braid_core::{Error, Result};
use candle_core::{Device, Tensor};

use super::adamw::{AdamW, ParamState};

const LR_KEY: &str = "__lr__";

impl AdamW {
    /// Writes the optimiser state to `path` (safetensors).
    pub fn save_state(&self, path: &Path) -> Result<()> {
        let mut out: HashMap<String, Tensor> = HashMap::new();
        for (name, st) in &self.state {
            out.insert(format!("{name}.exp_avg"), st.exp_avg.clone());
            out.insert(format!("{name}.exp_avg_sq"), st.exp_avg_sq.clone());
            out.insert(format!("{name}.step"), Tensor::new(&[st.step as f64], &Device::Cpu)?);
        }
        out.insert(LR_KEY.to_string(), Tensor::new(&[self.config().lr], &Device::Cpu)?);
        candle_core::safetensors::save(&out, path)?;
        Ok(())
    }

    /// Replaces the optimiser state with the one saved at `path` by [`Self::save_state`].
    pub fn load_state(&mut self, path: &Path) -> Result<()> {
        let mut saved = candle_core::safetensors::load(path, &Device::Cpu)?;
        let lr = take(&mut saved, LR_KEY, path)?.to_vec1::<f64>()?;
        let mut state = std::collections::BTreeMap::new();
        let names: Vec<String> = self.names().cloned().collect();
        for name in names {
            let key = format!("{name}.step");
            let Some(step) = saved.remove(&key) else { continue };
            let step = step.to_vec1::<f64>()?.first().copied().unwrap_or(0.0) as u64;
            let exp_avg = take(&mut saved, &format!("{name}.exp_avg"), path)?;
            let exp_avg_sq = take(&mut saved, &format!("{name}.exp_avg_sq"), path)?;
            state.insert(name, ParamState { step, exp_avg, exp_avg_sq });
        }
        if let Some(extra) = saved.keys().next() {
            return Err(Error::format(
                path,
                format!("optimiser state `{extra}` names no variable of this model"),
            ));
        }
        self.check_shapes(&state)?;
        self.state = state;
        self.set_lr(lr.first().copied().unwrap_or(self.config().lr));
        Ok(())
    }
}

fn take(saved: &mut HashMap<String, Tensor>, key: &str, path: &Path) -> Result<Tensor> {
    saved.remove(key).ok_or_else(|| Error::format(path, format!("optimiser state lacks `{key}`")))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use std::collections::BTreeMap;

    use candle_core::DType;
    use candle_nn::{Init, VarMap};

    use super::*;
    use crate::optim::{AdamWConfig, Grads};

    fn setup() -> (VarMap, AdamW) {
        let varmap = VarMap::new();
        varmap.get((2, 2), "w", Init::Const(1.0), DType::F32, &Device::Cpu).unwrap();
        let opt = AdamW::new(&varmap, AdamWConfig::default()).unwrap();
        (varmap, opt)
    }

    fn grads(v: f32) -> Grads {
        let g = Tensor::new(&[[v, -v], [2.0 * v, 0.5]], &Device::Cpu).unwrap();
        Grads::from_map(BTreeMap::from([("w".into(), g)]))
    }

    #[test]
    fn resumed_optimiser_takes_the_same_step() {
        let (vm_a, mut a) = setup();
        a.step(&grads(1.0)).unwrap();
        a.set_lr(5e-3);
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("optim.safetensors");
        a.save_state(&path).unwrap();
        let (vm_b, mut b) = setup();
        vm_b.data().lock().unwrap()["w"].set(vm_a.data().lock().unwrap()["w"].as_tensor()).unwrap();
        b.load_state(&path).unwrap();
        assert_eq!(b.step_of("w"), 1);
        assert_eq!(b.config().lr, 5e-3);
        a.step(&grads(3.0)).unwrap();
        b.step(&grads(3.0)).unwrap();
        let wa = vm_a.data().lock().unwrap()["w"].to_vec2::<f32>().unwrap();
        let wb = vm_b.data().lock().unwrap()["w"].to_vec2::<f32>().unwrap();
        assert_eq!(wa, wb);
    }
}
