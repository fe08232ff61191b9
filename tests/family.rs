//! The activation family: reference values and derivatives (mpmath), gradient
//! checks, special values, and hyperparameter validation.

use crate::common;
#[path = "reference/family.rs"]
mod reference;

use common::{assert_same, cpu_has_fma, uniform};
use ndlayers::activation::{
    Celu, Elu, Gelu, HardSigmoid, HardSwish, HardTanh, LeakyRelu, LogSigmoid, Mish, Relu6, Selu,
    Silu, Softplus, Softsign,
};
use ndlayers::gradcheck::GradCheck;
use ndlayers::ndarray::{Array1, Array2, Ix1, Ix2, array};
use ndlayers::prelude::*;
use ndlayers::{Elementwise, ElementwiseKernel};

type BoxedLayer = Box<dyn Layer<f64, Ix1>>;

/// Each family member with default hyperparameters, by the name the reference table uses.
fn layer<F: Real>(name: &str) -> Box<dyn Layer<F, Ix1>> {
    match name {
        "leaky_relu" => Box::new(LeakyRelu::new()),
        "elu" => Box::new(Elu::new()),
        "selu" => Box::new(Selu::new()),
        "celu" => Box::new(Celu::new()),
        "gelu" => Box::new(Gelu::new()),
        "gelu_tanh" => Box::new(Gelu::tanh_approximation()),
        "silu" => Box::new(Silu::new()),
        "mish" => Box::new(Mish::new()),
        "softplus" => Box::new(Softplus::new()),
        "softsign" => Box::new(Softsign::new()),
        "hardtanh" => Box::new(HardTanh::new()),
        "relu6" => Box::new(Relu6::new()),
        "hardsigmoid" => Box::new(HardSigmoid::new()),
        "hardswish" => Box::new(HardSwish::new()),
        "logsigmoid" => Box::new(LogSigmoid::new()),
        other => panic!("no layer named {other}"),
    }
}

fn names() -> impl Iterator<Item = &'static str> {
    reference::FAMILY.iter().map(|(name, _)| *name)
}

/// `|got - want| ≤ rel · |want| + floor`; reports where it failed.
fn assert_close_floor(what: &str, x: f64, got: f64, want: f64, rel: f64, floor: f64) {
    let ok = got == want || (got - want).abs() <= rel * want.abs() + floor;
    assert!(
        ok,
        "{what} at x = {x}: got {got:e}, want {want:e} (relative error {:e})",
        ((got - want) / want).abs()
    );
}

/// `|got - want| ≤ rel · |want|`.
fn assert_close(what: &str, x: f64, got: f64, want: f64, rel: f64) {
    assert_close_floor(what, x, got, want, rel, 0.0);
}

/// Twice the smallest positive subnormal `f32`: results below it may round to 0.
const F32_FLOOR: f64 = 2.0 * 1.401298464324817e-45;

#[test]
fn values_and_derivatives_match_mpmath_references_in_f64_and_f32() {
    for (name, points) in reference::FAMILY {
        let x = Array1::from_iter(points.iter().map(|p| p.0));
        let mut l64 = layer::<f64>(name);
        let y = l64.forward(x.view()).unwrap();
        let dy = l64.backward(Array1::ones(x.len()).view()).unwrap();
        let x32 = x.mapv(|v| v as f32);
        let mut l32 = layer::<f32>(name);
        let y32 = l32.forward(x32.view()).unwrap();
        let dy32 = l32.backward(Array1::ones(x.len()).view()).unwrap();
        for (i, &(x, want_y, want_dy)) in points.iter().enumerate() {
            // GELU's tail Φ(x) has condition number ≈ x² (380 at x = -19.5): the
            // half-ulp rounding of x/√2 alone moves it by that many ulps.
            let conditioning = if name.starts_with("gelu") {
                1.0 + x * x
            } else {
                1.0
            };
            assert_close(
                &format!("{name} f64"),
                x,
                y[i],
                want_y,
                1e-14 * conditioning,
            );
            assert_close(
                &format!("{name}' f64"),
                x,
                dy[i],
                want_dy,
                1e-13 * conditioning,
            );
            // x = ±0.001 is not exact in f32: allow for the input's own rounding.
            assert_close_floor(
                &format!("{name} f32"),
                x,
                y32[i] as f64,
                want_y,
                1e-6 * conditioning,
                F32_FLOOR,
            );
            assert_close_floor(
                &format!("{name}' f32"),
                x,
                dy32[i] as f64,
                want_dy,
                1e-5 * conditioning,
                F32_FLOOR,
            );
        }
    }
}

#[test]
fn gradients_match_finite_differences() {
    // Kinks (0, ±1, ±3, 6) are avoided: the derivative jumps there.
    let x = uniform(40, -7.0, 7.0, 60).mapv(|v| {
        let near_kink = [-3.0, -1.0, 0.0, 1.0, 3.0, 6.0]
            .iter()
            .any(|k| (v - k).abs() < 1e-3);
        if near_kink { v + 0.01 } else { v }
    });
    for name in names() {
        GradCheck::default()
            .check_input(&mut layer::<f64>(name), x.view())
            .unwrap_or_else(|e| panic!("{name}: {e}"));
    }
    // With other hyperparameters too.
    let custom: [(&str, BoxedLayer); 5] = [
        ("leaky 0.3", Box::new(LeakyRelu::with_slope(0.3).unwrap())),
        ("elu 2", Box::new(Elu::with_alpha(2.0).unwrap())),
        ("celu 0.5", Box::new(Celu::with_alpha(0.5).unwrap())),
        (
            "softplus β=2 t=5",
            Box::new(Softplus::with_beta_threshold(2.0, 5.0).unwrap()),
        ),
        (
            "hardtanh [-2, 0.5]",
            Box::new(HardTanh::with_range(-2.0, 0.5).unwrap()),
        ),
    ];
    let x = x.mapv(|v| {
        if (v + 2.0).abs() < 1e-3 || (v - 0.5).abs() < 1e-3 || (v - 2.5).abs() < 1e-3 {
            v + 0.01
        } else {
            v
        }
    });
    for (name, mut l) in custom {
        GradCheck::default()
            .check_input(&mut l, x.view())
            .unwrap_or_else(|e| panic!("{name}: {e}"));
    }
}

#[test]
fn nan_in_nan_out_and_no_nan_gradient_for_any_non_nan_input() {
    let special = array![
        f64::NAN,
        f64::INFINITY,
        f64::NEG_INFINITY,
        1e300,
        -1e300,
        f64::MAX,
        -f64::MAX,
        0.0,
        -0.0,
        5e-324
    ];
    for name in names() {
        let mut l = layer::<f64>(name);
        let y = l.forward(special.view()).unwrap();
        let dy = l.backward(Array1::ones(special.len()).view()).unwrap();
        assert!(
            y[0].is_nan() && dy[0].is_nan(),
            "{name}: NaN must give NaN, got {} and {}",
            y[0],
            dy[0]
        );
        for i in 1..special.len() {
            assert!(!y[i].is_nan(), "{name}({:e}) is NaN", special[i]);
            assert!(dy[i].is_finite(), "{name}'({:e}) = {}", special[i], dy[i]);
        }
        // Large finite inputs stay finite except where the function itself grows.
        let x = array![-1e30_f32, 1e30, -88.0, 88.0];
        let y = layer::<f32>(name).forward(x.view()).unwrap();
        assert!(y.iter().all(|v| !v.is_nan()), "{name} f32 on {x}: {y}");
    }
}

#[test]
fn limits_at_infinity() {
    let x = array![f64::NEG_INFINITY, f64::INFINITY];
    let expect: [(&str, [f64; 2]); 8] = [
        ("gelu", [0.0, f64::INFINITY]),
        ("gelu_tanh", [0.0, f64::INFINITY]),
        ("silu", [0.0, f64::INFINITY]),
        ("mish", [0.0, f64::INFINITY]),
        ("softsign", [-1.0, 1.0]),
        ("elu", [-1.0, f64::INFINITY]),
        ("logsigmoid", [f64::NEG_INFINITY, 0.0]),
        ("hardswish", [0.0, f64::INFINITY]),
    ];
    for (name, want) in expect {
        let y = layer::<f64>(name).forward(x.view()).unwrap();
        assert_eq!(y.to_vec(), want.to_vec(), "{name}");
    }
}

#[test]
fn small_inputs_keep_relative_precision() {
    // expm1 and ln_1p, not exp - 1 and ln(1 + ·): ELU(-1e-20) = -1e-20 exactly.
    let y = Elu::<f64, Ix1>::new()
        .forward(array![-1e-20].view())
        .unwrap();
    assert_eq!(y[0], -1e-20);
    // log σ(x) for large x is about -e^-x, far below an ulp of 1:
    // mpmath, 60 digits: log(1/(1+exp(-20))) = -2.061_153_620_314_381e-9.
    let y = LogSigmoid::<f64, Ix1>::new()
        .forward(array![20.0].view())
        .unwrap();
    assert!(
        (y[0] / -2.061_153_620_314_381e-9 - 1.0).abs() < 1e-14,
        "{}",
        y[0]
    );
    // GELU in the left tail: x Φ(x) at x = -10 is -7.6198530241605269e-23 (mpmath).
    let y = Gelu::<f64, Ix1>::new()
        .forward(array![-10.0].view())
        .unwrap();
    assert!(
        (y[0] / -7.619853024160527e-23 - 1.0).abs() < 1e-13,
        "{}",
        y[0]
    );
}

#[test]
fn kinks_follow_pytorch() {
    let mut leaky = LeakyRelu::<f64, Ix1>::with_slope(0.2).unwrap();
    leaky.forward(array![0.0].view()).unwrap();
    assert_eq!(
        leaky.backward(array![1.0].view()).unwrap()[0],
        0.2,
        "LeakyReLU'(0) is the negative slope"
    );
    let mut relu6 = Relu6::<f64, Ix1>::new();
    relu6.forward(array![0.0, 6.0, 3.0].view()).unwrap();
    assert_eq!(
        relu6.backward(array![1.0, 1.0, 1.0].view()).unwrap(),
        array![0.0, 0.0, 1.0]
    );
    let mut hs = HardSwish::<f64, Ix1>::new();
    hs.forward(array![-3.0, 3.0].view()).unwrap();
    // PyTorch 2.15's torch.nn.functional.hardswish backward at -3 and 3: 0 and 1.
    assert_eq!(
        hs.backward(array![1.0, 1.0].view()).unwrap(),
        array![0.0, 1.0]
    );
    let mut hsig = HardSigmoid::<f64, Ix1>::new();
    hsig.forward(array![-3.0, 3.0, 0.0].view()).unwrap();
    assert_eq!(
        hsig.backward(array![6.0, 6.0, 6.0].view()).unwrap(),
        array![0.0, 0.0, 1.0]
    );
}

#[test]
fn invalid_hyperparameters_are_errors_at_construction() {
    let message = |e: LayerError| e.to_string();
    assert_eq!(
        message(Elu::<f64, Ix2>::with_alpha(-1.0).unwrap_err()),
        "Elu: invalid alpha = -1: must be finite and non-negative"
    );
    assert!(Celu::<f64, Ix2>::with_alpha(0.0).is_err());
    assert!(Celu::<f64, Ix2>::with_alpha(-0.5).is_err());
    assert_eq!(
        message(HardTanh::<f32, Ix2>::with_range(2.0, 1.0).unwrap_err()),
        "HardTanh: invalid min = 2: must not exceed max"
    );
    assert!(HardTanh::<f32, Ix2>::with_range(f32::NAN, 1.0).is_err());
    assert_eq!(
        message(Softplus::<f64, Ix2>::with_beta_threshold(0.0, 20.0).unwrap_err()),
        "Softplus: invalid beta = 0: must be finite and positive"
    );
    assert!(Softplus::<f64, Ix2>::with_beta_threshold(-1.0, 20.0).is_err());
    assert!(Softplus::<f64, Ix2>::with_beta_threshold(1.0, f64::NAN).is_err());
    assert!(LeakyRelu::<f64, Ix2>::with_slope(f64::INFINITY).is_err());
}

#[test]
fn members_work_on_any_dimension_and_layout() {
    let x = uniform((3, 4, 5), -5.0, 5.0, 61);
    let g = uniform((5, 4, 3), -1.0, 1.0, 62);
    // A transposed (non-contiguous in row-major order) view gives exactly what its copy gives.
    let y = Gelu::new().forward(x.t()).unwrap();
    assert_eq!(
        y,
        Gelu::new()
            .forward(x.t().as_standard_layout().view())
            .unwrap()
    );
    let mut softplus = Softplus::new();
    softplus.forward(x.t()).unwrap();
    let dx = softplus.backward(g.view()).unwrap();
    let mut copy = Softplus::new();
    copy.forward(x.t().as_standard_layout().view()).unwrap();
    assert_eq!(dx, copy.backward(g.view()).unwrap());
    let dynamic = Mish::new().forward(x.view().into_dyn()).unwrap();
    assert_eq!(dynamic.shape(), &[3, 4, 5]);
}

mod prelu {
    use super::common::uniform;
    use ndlayers::gradcheck::GradCheck;
    use ndlayers::ndarray::{Array1, Array2, Array4, Ix2, Ix4, array};
    use ndlayers::prelu::Prelu;
    use ndlayers::prelude::*;

    fn away_from_zero<D: ndlayers::ndarray::Dimension>(
        x: ndlayers::ndarray::Array<f64, D>,
    ) -> ndlayers::ndarray::Array<f64, D> {
        x.mapv(|v| if v.abs() < 1e-3 { 0.5 } else { v })
    }

    #[test]
    fn input_and_slope_gradients_match_finite_differences() {
        let x = away_from_zero(uniform((5, 3), -2.0, 2.0, 80));
        let mut per_feature = Prelu::<f64, Ix2>::with_weight(array![0.1, -0.3, 0.7]).unwrap();
        let report = GradCheck::default()
            .check_layer(&mut per_feature, x.view())
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(report.checked, 15 + 3);
        let x = away_from_zero(uniform((2, 3, 2, 2), -2.0, 2.0, 81));
        let mut per_channel = Prelu::<f64, Ix4>::new(3).unwrap();
        GradCheck::default()
            .check_layer(&mut per_channel, x.view())
            .unwrap_or_else(|e| panic!("{e}"));
        let mut shared = Prelu::<f64, Ix4>::new(1).unwrap();
        GradCheck::default()
            .check_layer(&mut shared, x.view())
            .unwrap_or_else(|e| panic!("{e}"));
    }

    #[test]
    fn slopes_learn_through_the_optimiser_interface() {
        let mut prelu = Prelu::<f64, Ix2>::new(1).unwrap();
        let mut sgd = Sgd::new(0.1).unwrap();
        prelu.forward(array![[-1.0, -3.0]].view()).unwrap();
        prelu.backward(array![[1.0, 1.0]].view()).unwrap(); // dL/da = -1 - 3 = -4
        sgd.step(&mut [&mut prelu]).unwrap();
        assert_eq!(prelu.weight()[0], 0.25 + 0.4);
    }

    #[test]
    fn channel_count_and_values_are_checked() {
        let mut prelu = Prelu::<f32, Ix4>::new(3).unwrap();
        let err = prelu
            .forward(Array4::zeros((2, 4, 5, 5)).view())
            .unwrap_err();
        assert!(
            err.to_string()
                .contains("input has shape [2, 4, 5, 5], expected [2, 3, 5, 5]"),
            "{err}"
        );
        // A 1-D input has no channel axis: the error says so (it used to
        // suggest the shape [5, 3]) and names the type.
        let err = Prelu::<f32, ndlayers::ndarray::Ix1>::new(3)
            .unwrap()
            .forward(Array1::zeros(5).view())
            .unwrap_err()
            .to_string();
        assert_eq!(
            err,
            "Prelu: axis 1 is out of range for an array of 1 dimensions"
        );
        assert!(Prelu::<f32, Ix2>::new(0).is_err());
        assert!(Prelu::<f32, Ix2>::with_weight(Array1::from_elem(2, f32::NAN)).is_err());
        assert!(matches!(
            Prelu::<f32, Ix2>::new(2)
                .unwrap()
                .backward(Array2::zeros((1, 2)).view()),
            Err(LayerError::BackwardBeforeForward { .. })
        ));
        let y = Prelu::<f64, Ix2>::new(2)
            .unwrap()
            .forward(array![[f64::NAN, f64::NEG_INFINITY]].view())
            .unwrap();
        assert!(y[[0, 0]].is_nan() && y[[0, 1]] == f64::NEG_INFINITY);
    }
}

/// The layer's output for 4001 points over `[-100, 100]` plus special values,
/// through the contiguous and the gathered path, bit for bit equal to the
/// kernel's scalar `value` in the flavour this CPU runs. The exponential
/// units, SiLU and GELU run in two staged loops over blocks; this pins them
/// to the one-call-per-element definition (4001 is no multiple of a block).
fn layer_matches_scalar_value<F: Real, A: ElementwiseKernel<F>>(
    mut layer: Elementwise<A, F, Ix2>,
    name: &str,
) {
    use ndlayers::math::{Fused, Unfused};
    let specials = [
        f64::NAN,
        f64::INFINITY,
        f64::NEG_INFINITY,
        -0.0,
        0.0,
        1e-30,
        -1e-30,
    ];
    let x = Array2::from_shape_fn((1, 4001 + specials.len()), |(_, j)| {
        let v = specials
            .get(j)
            .copied()
            .unwrap_or((j as f64 - 2000.0).powi(3) * 1.25e-8);
        F::from_f64(v).unwrap()
    });
    let kernel = layer.function().clone();
    let want = x.mapv(|v| {
        if cpu_has_fma() {
            kernel.value_with::<Fused>(v)
        } else {
            kernel.value_with::<Unfused>(v)
        }
    });
    for view in [x.view(), x.t().reversed_axes()] {
        assert_same(&layer.forward(view).unwrap(), &want, name);
    }
}

#[test]
fn staged_kernels_match_their_scalar_value_bit_for_bit() {
    fn each<F: Real>() {
        layer_matches_scalar_value::<F, _>(Elu::new(), "elu");
        layer_matches_scalar_value::<F, _>(Selu::new(), "selu");
        layer_matches_scalar_value::<F, _>(Celu::with_alpha(F::HALF).unwrap(), "celu");
        layer_matches_scalar_value::<F, _>(Silu::new(), "silu");
        layer_matches_scalar_value::<F, _>(Gelu::tanh_approximation(), "gelu tanh");
        layer_matches_scalar_value::<F, _>(Gelu::new(), "gelu");
    }
    each::<f32>();
    each::<f64>();
}
