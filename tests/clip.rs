//! Gradient clipping (issue 29) against PyTorch's `clip_grad_norm_` and
//! `clip_grad_value_` (`tests/reference/clip.py`, PyTorch 2.15).

use std::collections::HashMap;

use ndlayers::ndarray::ArrayD;
use ndlayers::optim::{Norm, clip_grad_norm, clip_grad_value};
use ndlayers::prelude::*;
use ndlayers::state::{Entry, EntryMut, Name};

/// name → values, as `clip.py` printed them.
fn reference() -> HashMap<String, ArrayD<f64>> {
    crate::common::reference_table(include_str!("reference/clip.txt"))
}

/// `Linear(3, 4) → ReLU → Linear(4, 2)` whose gradients are PyTorch's `grads.<suffix>`.
fn network<F: Real>(table: &HashMap<String, ArrayD<f64>>, suffix: &str) -> Sequential<F> {
    let mut net = Sequential::new()
        .with(Dense::from_fn(3, 4, |_, _| F::zero()).unwrap())
        .with(Relu::new())
        .with(Dense::from_fn(4, 2, |_, _| F::zero()).unwrap());
    net.visit_state_mut(&Name::ROOT, &mut |name, entry| {
        if let EntryMut::Parameter { mut grad, .. } = entry {
            grad.assign(&table[&format!("grads.{suffix}/{name}")].mapv(F::lit));
        }
    });
    net
}

/// The largest difference of `net`'s gradients from the case's, relative to the largest.
fn worst<F: Real>(net: &Sequential<F>, table: &HashMap<String, ArrayD<f64>>, case: &str) -> f64 {
    let mut worst = 0.0_f64;
    net.visit_state(&Name::ROOT, &mut |name, entry| {
        if let Entry::Parameter { grad, .. } = entry {
            let want = &table[&format!("{case}/{name}")];
            let scale = want.iter().fold(1e-300_f64, |m, v| m.max(v.abs()));
            for (g, w) in grad.iter().zip(want) {
                worst = worst.max((g.to_f64().unwrap() - w).abs() / scale);
            }
        }
    });
    worst
}

fn clipping_matches_pytorch<F: Real>(suffix: &str, tolerance: f64) {
    let table = reference();
    for (case, max_norm, norm) in [
        ("norm2", 0.5, Norm::L2),
        ("norminf", 0.5, Norm::Inf),
        ("norm_large", 1e3, Norm::L2),
    ] {
        let mut net = network::<F>(&table, suffix);
        let total = clip_grad_norm(&mut net, F::lit(max_norm), norm, true).unwrap();
        let c = format!("{case}.{suffix}");
        let want = table[&format!("{c}/total")][[0]];
        assert!(
            (total.to_f64().unwrap() - want).abs() <= tolerance * want,
            "{c}: total {total} against {want}"
        );
        let worst = worst(&net, &table, &c);
        assert!(worst <= tolerance, "{c}: {worst:e}");
    }
    let mut net = network::<F>(&table, suffix);
    clip_grad_value(&mut net, F::lit(0.7)).unwrap();
    assert_eq!(
        worst(&net, &table, &format!("value.{suffix}")),
        0.0,
        "clamping is exact"
    );
}

#[test]
fn clipping_matches_pytorch_in_f32_and_f64() {
    // The norm is summed in f64 here, in f32 by PyTorch for f32.
    clipping_matches_pytorch::<f32>("f32", 1e-6);
    clipping_matches_pytorch::<f64>("f64", 1e-14);
}

#[test]
fn non_finite_norms_and_bad_settings() {
    let table = reference();
    let mut net = network::<f64>(&table, "f64");
    net.visit_state_mut(&Name::ROOT, &mut |name, entry| {
        if let EntryMut::Parameter { mut grad, .. } = entry
            && name.is("2.bias")
        {
            grad[[0]] = f64::NAN;
        }
    });
    let before = ndlayers::state::named_parameters(&net);
    let err = clip_grad_norm(&mut net, 1.0, Norm::L2, true).unwrap_err();
    assert!(
        err.to_string().contains("total gradient norm = NaN"),
        "{err}"
    );
    assert_eq!(ndlayers::state::named_parameters(&net), before);
    // Without the check, PyTorch's arithmetic: every gradient times NaN.
    assert!(
        clip_grad_norm(&mut net, 1.0, Norm::Inf, false)
            .unwrap()
            .is_nan()
    );
    for bad in [-1.0, f64::NAN, f64::INFINITY] {
        assert!(clip_grad_norm(&mut net, bad, Norm::L2, false).is_err());
        assert!(clip_grad_value(&mut net, bad).is_err());
    }
    // An empty network has norm 0 and nothing to scale.
    let mut empty = Sequential::<f64>::new();
    assert_eq!(
        clip_grad_norm(&mut empty, 1.0, Norm::L2, true).unwrap(),
        0.0
    );
}
