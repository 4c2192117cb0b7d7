use std::sync::Arc;

use braid_core::{Error, Features, Result};
use braid_nn::gradcheck::check_all_vars_get_grad;
use candle_core::{DType, Device, D};
use candle_nn::{VarBuilder, VarMap};

use super::*;
use crate::test_support::{features, loss};

fn cfg(top_k: Option<usize>) -> UpmConfig {
    UpmConfig {
        experts: 3,
        layers: 2,
        width: 16,
        heads: 2,
        ffn_multiple_of: 8,
        queries: 4,
        top_k,
        ..UpmConfig::default()
    }
}

fn vb(vm: &VarMap) -> VarBuilder<'static> {
    VarBuilder::from_varmap(vm, DType::F32, &Device::Cpu)
}

/// Shared experts and two modalities of different widths, each in its own map.
fn two_modalities(top_k: Option<usize>) -> Result<([VarMap; 3], [UpmProjector; 2])> {
    let maps = [VarMap::new(), VarMap::new(), VarMap::new()];
    let experts = Arc::new(UpmExperts::new(&cfg(top_k), vb(&maps[0]))?);
    let image = UpmProjector::with_experts(experts.clone(), &cfg(top_k), 6, 8, vb(&maps[1]))?;
    let imu = UpmProjector::with_experts(experts, &cfg(top_k), 5, 8, vb(&maps[2]))?;
    Ok((maps, [image, imu]))
}

#[test]
fn emits_tags_around_the_queries_and_weights_that_sum_to_one() -> Result<()> {
    let (_, [image, _]) = two_modalities(None)?;
    let f = features(2, 7, 6, true)?;
    let out = image.project(&f)?;
    assert_eq!(out.tokens.dims(), &[2, 4 + 2, 8]);
    assert!(out.mask.is_none());
    let w = image.routing_weights(&f)?.ok_or_else(|| Error::Invalid("no weights".into()))?;
    assert_eq!(w.dims(), &[2, 4, 3]);
    for s in w.sum(D::Minus1)?.flatten_all()?.to_vec1::<f32>()? {
        assert!((s - 1.0).abs() < 1e-6, "row sums to {s}");
    }
    Ok(())
}

/// Padding changes nothing: a sequence with padded tokens gives the output of the same
/// sequence without them.
#[test]
fn padded_tokens_are_ignored() -> Result<()> {
    let (_, [image, _]) = two_modalities(None)?;
    let f = features(2, 7, 6, true)?;
    let padded = image.project(&f)?.tokens.narrow(0, 1, 1)?;
    let trimmed = Features::new(f.tokens.narrow(0, 1, 1)?.narrow(1, 0, 5)?, None)?;
    let alone = image.project(&trimmed)?.tokens;
    let d = (padded - alone)?.abs()?.flatten_all()?.max(0)?.to_scalar::<f32>()?;
    assert!(d < 1e-5, "{d}");
    Ok(())
}

/// Every expert, query table, router, projection and tag of both modalities gets
/// gradient when each modality is used once (soft routing: every expert weighs in).
#[test]
fn gradients_reach_every_expert_query_table_and_router() -> Result<()> {
    let (maps, [image, imu]) = two_modalities(None)?;
    let total = (loss(&image.project(&features(2, 7, 6, true)?)?)?
        + loss(&imu.project(&features(2, 3, 5, false)?)?)?)?;
    for vm in &maps {
        check_all_vars_get_grad(vm, &total)?;
    }
    Ok(())
}

/// With top-2 routing the route's variables all get gradient, and an expert gets
/// gradient exactly when some token was routed to it.
#[test]
fn top_k_gradients_reach_the_route_and_the_chosen_experts() -> Result<()> {
    let (maps, [image, _]) = two_modalities(Some(2))?;
    let f = features(2, 7, 6, true)?;
    let chosen: Vec<bool> = {
        let w = image.routing_weights(&f)?.ok_or_else(|| Error::Invalid("no weights".into()))?;
        let peak = w.flatten_to(1)?.max(0)?.to_vec1::<f32>()?;
        peak.iter().map(|&p| p > 0.0).collect()
    };
    let total = loss(&image.project(&f)?)?;
    let grads = total.backward()?;
    check_all_vars_get_grad(&maps[1], &total)?;
    let data = maps[0].data().lock().map_err(|e| Error::Invalid(e.to_string()))?;
    for (e, &used) in chosen.iter().enumerate() {
        let name = format!("resample_layers.{e}.0.attention.wq.weight");
        let var = data.get(&name).ok_or_else(|| Error::Invalid(format!("no {name}")))?;
        let peak = match grads.get(var.as_tensor()) {
            Some(g) => g.abs()?.flatten_all()?.max(0)?.to_scalar::<f32>()?,
            None => 0.0,
        };
        assert_eq!(peak > 0.0, used, "expert {e}: routed to {used}, gradient {peak}");
    }
    Ok(())
}

#[test]
fn top_1_routes_each_token_to_one_expert() -> Result<()> {
    let (_, [_, imu]) = two_modalities(Some(1))?;
    let w = imu.routing_weights(&features(2, 3, 5, false)?)?;
    let w = w.ok_or_else(|| Error::Invalid("no weights".into()))?;
    for row in w.flatten_to(1)?.to_vec2::<f32>()? {
        assert_eq!(row.iter().filter(|&&x| x > 0.0).count(), 1, "{row:?}");
        assert!((row.iter().sum::<f32>() - 1.0).abs() < 1e-6);
    }
    Ok(())
}

#[test]
fn bad_settings_name_the_field() {
    let vm = VarMap::new();
    let cases = [
        (UpmConfig { heads: 3, ..cfg(None) }, "projector.heads"),
        (UpmConfig { top_k: Some(4), ..cfg(None) }, "projector.top_k"),
        (UpmConfig { queries: 0, ..cfg(None) }, "projector.queries"),
    ];
    for (c, field) in cases {
        let e = UpmProjector::new(&c, 6, 8, vb(&vm)).err().map(|e| e.to_string());
        assert!(e.as_deref().unwrap_or("").contains(field), "{e:?}");
    }
    let experts = UpmExperts::new(&cfg(None), vb(&vm)).map(Arc::new);
    let other = UpmConfig { layers: 3, ..cfg(None) };
    let e = experts.and_then(|x| UpmProjector::with_experts(x, &other, 6, 8, vb(&vm)));
    assert!(e.err().map(|e| e.to_string()).unwrap_or_default().contains("differ"));
}
