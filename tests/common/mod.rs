//! Helpers shared by the integration tests.
#![allow(dead_code)]

use ndlayers::Real;
use ndlayers::ndarray::{Array, Dimension, IntoDimension};
use ndlayers::state::{Entry, EntryMut, Name};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use proptest::prelude::*;

/// Any f64, weighted towards the values that break naive formulas.
pub fn any_value() -> impl Strategy<Value = f64> + Clone {
    prop_oneof![
        4 => -50.0..50.0f64,
        1 => prop::sample::select(vec![
            f64::NAN, f64::INFINITY, f64::NEG_INFINITY, 0.0, -0.0, 1e30, -1e30,
            f64::MAX, f64::MIN, f64::MIN_POSITIVE, 5e-324, -5e-324, 710.0, -746.0,
        ]),
        1 => any::<f64>(),
    ]
}

/// A seeded array of `shape` with elements uniform in `[lo, hi)`.
pub fn uniform<Sh: IntoDimension>(shape: Sh, lo: f64, hi: f64, seed: u64) -> Array<f64, Sh::Dim> {
    let mut rng = StdRng::seed_from_u64(seed);
    Array::from_shape_simple_fn(shape, || rng.random_range(lo..hi))
}

/// Like [`uniform`], but with every element at least `gap` away from zero
/// (for ReLU, whose derivative jumps there).
pub fn away_from_zero<Sh: IntoDimension>(shape: Sh, gap: f64, seed: u64) -> Array<f64, Sh::Dim> {
    uniform(shape, -3.0, 3.0, seed).mapv(|v| {
        if v.abs() < gap {
            v.signum() * gap + v
        } else {
            v
        }
    })
}

/// Distance between `got` and `want` in units of the last place of `want` (`f64`).
pub fn ulps_f64(got: f64, want: f64) -> f64 {
    if got == want || (got.is_nan() && want.is_nan()) {
        return 0.0;
    }
    let exponent = want.abs().log2().floor().max(-1022.0);
    (got - want).abs() / 2f64.powf(exponent - 52.0)
}

/// Distance in `f32` ulps of `want` (subnormal spacing below the normal range).
pub fn ulps_f32(got: f32, want: f64) -> f64 {
    if got as f64 == want || (got.is_nan() && want.is_nan()) {
        return 0.0;
    }
    let exponent = want.abs().log2().floor().clamp(-126.0, 127.0);
    (got as f64 - want).abs() / 2f64.powf(exponent - 23.0)
}

/// Asserts two arrays are elementwise equal (bitwise, NaN equal to NaN),
/// reporting the first index that differs.
pub fn assert_same<F: Real, D: Dimension>(got: &Array<F, D>, want: &Array<F, D>, what: &str) {
    assert_eq!(got.shape(), want.shape(), "{what}: shapes differ");
    // Widening to f64 is exact and one-to-one, so f64 bits tell f32 values apart too.
    let bits = |v: F| v.to_f64().unwrap().to_bits();
    for ((i, &g), &w) in got.indexed_iter().zip(want.iter()) {
        assert!(
            bits(g) == bits(w) || (g.is_nan() && w.is_nan()),
            "{what}: element {i:?} is {g:e}, expected {w:e}"
        );
    }
}

/// Whether this CPU runs the kernels' fused multiply-add flavour.
pub fn cpu_has_fma() -> bool {
    #[cfg(target_arch = "x86_64")]
    return std::arch::is_x86_feature_detected!("fma");
    #[cfg(not(target_arch = "x86_64"))]
    return cfg!(target_arch = "aarch64");
}

/// Two parameters `a` and `b` with gradients set by hand (to give one the wrong shape).
pub struct TwoParameters {
    pub a: ndlayers::ndarray::ArrayD<f64>,
    pub a_grad: ndlayers::ndarray::ArrayD<f64>,
    pub b: ndlayers::ndarray::ArrayD<f64>,
    pub b_grad: ndlayers::ndarray::ArrayD<f64>,
}

impl ndlayers::StateDict<f64> for TwoParameters {
    fn visit_state(&self, prefix: &Name<'_>, visit: &mut dyn FnMut(&Name<'_>, Entry<'_, f64>)) {
        let a = Entry::Parameter {
            value: self.a.view(),
            grad: self.a_grad.view(),
        };
        visit(&prefix.field("a"), a);
        let b = Entry::Parameter {
            value: self.b.view(),
            grad: self.b_grad.view(),
        };
        visit(&prefix.field("b"), b);
    }

    fn visit_state_mut(
        &mut self,
        prefix: &Name<'_>,
        visit: &mut dyn FnMut(&Name<'_>, EntryMut<'_, f64>),
    ) {
        let a = EntryMut::Parameter {
            value: self.a.view_mut(),
            grad: self.a_grad.view_mut(),
        };
        visit(&prefix.field("a"), a);
        let b = EntryMut::Parameter {
            value: self.b.view_mut(),
            grad: self.b_grad.view_mut(),
        };
        visit(&prefix.field("b"), b);
    }
}

/// The parameters of `net` by name, in PyTorch's orientation: its `state_dict` less the buffers.
pub fn state_dict<F: Clone>(
    net: &dyn ndlayers::StateDict<F>,
) -> std::collections::BTreeMap<String, ndlayers::ndarray::ArrayD<F>> {
    ndlayers::state::named_parameters(net).into_iter().collect()
}

/// A reference file of `tests/reference/`: one tensor a line, `name [shape] values…`
/// (lines starting with `#` are comments), as a table of name → array.
pub fn reference_table(
    text: &str,
) -> std::collections::HashMap<String, ndlayers::ndarray::ArrayD<f64>> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .map(|line| {
            let (name, rest) = line.split_once(" [").expect("name [shape] values");
            let (shape, values) = rest.split_once(']').expect("[shape]");
            let shape: Vec<usize> = shape
                .split_whitespace()
                .map(|d| d.parse().unwrap())
                .collect();
            let values = values
                .split_whitespace()
                .map(|v| v.parse().unwrap())
                .collect();
            let array =
                ndlayers::ndarray::ArrayD::from_shape_vec(ndlayers::ndarray::IxDyn(&shape), values);
            (name.to_string(), array.expect("shape and values agree"))
        })
        .collect()
}
