//! Gradients keyed by the `VarMap` name of their variable, so that accumulation, clipping
//! and the optimiser never depend on tensor identity.

use std::collections::BTreeMap;

use braid_core::Result;
use candle_core::backprop::GradStore;
use candle_core::{Tensor, Var};
use candle_nn::VarMap;

/// Gradients by variable name, in name order (deterministic reductions).
#[derive(Debug, Clone, Default)]
pub struct Grads {
    map: BTreeMap<String, Tensor>,
}

impl Grads {
    /// The gradient of every variable in `varmap` that `store` holds one for (detached);
    /// variables the loss does not reach are left out, as PyTorch leaves their `.grad` None.
    pub fn from_store(varmap: &VarMap, store: &GradStore) -> Result<Self> {
        let vars = varmap
            .data()
            .lock()
            .map_err(|_| candle_core::Error::Msg("VarMap lock poisoned".into()))?;
        Ok(Self::from_vars(vars.iter().map(|(n, v)| (n.as_str(), v)), store))
    }

    /// As [`Self::from_store`], for named variables gathered from several `VarMap`s.
    pub fn from_vars<'a>(
        vars: impl IntoIterator<Item = (&'a str, &'a Var)>,
        store: &GradStore,
    ) -> Self {
        let map = vars
            .into_iter()
            .filter_map(|(name, var)| {
                store.get(var.as_tensor()).map(|g| (name.to_string(), g.detach()))
            })
            .collect();
        Self { map }
    }

    /// Builds gradients from named tensors.
    pub fn from_map(map: BTreeMap<String, Tensor>) -> Self {
        Self { map }
    }

    /// The gradient of `name`, if any.
    pub fn get(&self, name: &str) -> Option<&Tensor> {
        self.map.get(name)
    }

    /// (name, gradient) pairs in name order.
    pub fn iter(&self) -> impl Iterator<Item = (&String, &Tensor)> {
        self.map.iter()
    }

    /// Number of gradients held.
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// Whether no gradient is held.
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// Every gradient multiplied by `factor`.
    pub fn scale(&self, factor: f64) -> Result<Self> {
        let mut map = BTreeMap::new();
        for (name, g) in &self.map {
            map.insert(name.clone(), g.affine(factor, 0.0)?);
        }
        Ok(Self { map })
    }

    /// Adds `other` into `self`, name by name (a name only in `other` is copied in).
    pub fn add_assign(&mut self, other: &Grads) -> Result<()> {
        for (name, g) in &other.map {
            let sum = match self.map.get(name) {
                Some(acc) => acc.add(g)?,
                None => g.clone(),
            };
            self.map.insert(name.clone(), sum);
        }
        Ok(())
    }
}

/// The variables of `varmap` by name (a snapshot: the map's lock is not held after).
pub fn named_vars(varmap: &VarMap) -> Result<std::collections::HashMap<String, Var>> {
    Ok(varmap
        .data()
        .lock()
        .map_err(|_| braid_core::Error::Invalid("a variable map's lock is poisoned".into()))?
        .clone())
}

/// The variables of `varmap` named `prefix.NAME`, so that several components' maps can
/// share one optimiser (see [`crate::AdamW::from_vars`]).
pub fn prefixed_vars(prefix: &str, varmap: &VarMap) -> Result<Vec<(String, Var)>> {
    Ok(named_vars(varmap)?.into_iter().map(|(n, v)| (format!("{prefix}.{n}"), v)).collect())
}
