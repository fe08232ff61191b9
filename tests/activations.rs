//! Sigmoid, Tanh and ReLU: gradients, reference values, edge cases, layouts, errors.

use crate::common;

use common::{assert_same, away_from_zero, cpu_has_fma, ulps_f32, ulps_f64, uniform};
use ndlayers::gradcheck::GradCheck;
use ndlayers::ndarray::{
    Array, Array2, ArrayView, Dimension, Ix1, Ix2, IxDyn, ShapeBuilder, array, s,
};
use ndlayers::prelude::*;

fn gradcheck<L: Layer<f64, D>, D: Dimension>(layer: &mut L, x: Array<f64, D>) {
    let report = GradCheck::default()
        .check_input(layer, x.view())
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(report.checked, x.len());
}

#[test]
fn sigmoid_gradient_matches_finite_differences() {
    gradcheck(&mut Sigmoid::new(), uniform(7, -6.0, 6.0, 1));
    gradcheck(&mut Sigmoid::new(), uniform((4, 5), -6.0, 6.0, 2));
    gradcheck(&mut Sigmoid::new(), uniform((2, 3, 4), -6.0, 6.0, 3));
    gradcheck(
        &mut Sigmoid::new(),
        uniform(IxDyn(&[2, 1, 3, 2]), -6.0, 6.0, 4),
    );
}

#[test]
fn tanh_gradient_matches_finite_differences() {
    gradcheck(&mut Tanh::new(), uniform(7, -3.0, 3.0, 5));
    gradcheck(&mut Tanh::new(), uniform((4, 5), -3.0, 3.0, 6));
    gradcheck(&mut Tanh::new(), uniform((2, 3, 4), -3.0, 3.0, 7));
    gradcheck(
        &mut Tanh::new(),
        uniform(IxDyn(&[2, 1, 3, 2]), -3.0, 3.0, 8),
    );
}

#[test]
fn relu_gradient_matches_finite_differences() {
    gradcheck(&mut Relu::new(), away_from_zero(7, 1e-3, 9));
    gradcheck(&mut Relu::new(), away_from_zero((4, 5), 1e-3, 10));
    gradcheck(&mut Relu::new(), away_from_zero((2, 3, 4), 1e-3, 11));
    gradcheck(
        &mut Relu::new(),
        away_from_zero(IxDyn(&[2, 1, 3, 2]), 1e-3, 12),
    );
}

#[test]
fn a_wrong_gradient_is_caught_and_located() {
    // A Sigmoid forward with a Tanh backward must fail the check, naming an element.
    struct Mismatched(Sigmoid<f64, Ix1>, Tanh<f64, Ix1>);
    impl Layer<f64, Ix1> for Mismatched {
        fn forward_view(
            &mut self,
            x: ArrayView<'_, f64, Ix1>,
        ) -> Result<ArrayView<'_, f64, Ix1>, LayerError> {
            self.1.forward_view(x)?;
            self.0.forward_view(x)
        }
        fn backward_view(
            &mut self,
            g: ArrayView<'_, f64, Ix1>,
        ) -> Result<ArrayView<'_, f64, Ix1>, LayerError> {
            self.1.backward_view(g)
        }
        fn infer(&self, x: ArrayView<'_, f64, Ix1>) -> Result<Array<f64, Ix1>, LayerError> {
            self.0.infer(x)
        }
    }
    impl StateDict<f64> for Mismatched {}
    let mut layer = Mismatched(Sigmoid::new(), Tanh::new());
    let err = GradCheck::default()
        .check_input(&mut layer, array![0.1, 0.2, 0.3].view())
        .unwrap_err();
    let message = err.to_string();
    assert!(message.contains("input at ["), "{message}");
}

/// Reference values: Python `mpmath` with 50 digits,
/// `float(1/(1+mp.exp(-x)))` and `float(mp.tanh(x))`, rounded to `f64`.
const REFERENCE: [(f64, f64, f64); 12] = [
    (-745.0, 5e-324, -1.0),
    (-100.0, 3.720075976020836e-44, -1.0),
    (-20.0, 2.0611536181902037e-09, -1.0),
    (-3.5, 0.02931223075135632, -0.9981778976111987),
    (-1.0, 0.2689414213699951, -0.7615941559557649),
    (-1e-8, 0.4999999975, -1e-08),
    (0.0, 0.5, 0.0),
    (1e-8, 0.5000000025, 1e-08),
    (0.5, 0.6224593312018546, 0.46211715726000974),
    (2.0, 0.8807970779778824, 0.9640275800758169),
    (15.0, 0.9999996940977731, 0.9999999999998128),
    (40.0, 1.0, 1.0),
];

#[test]
fn sigmoid_and_tanh_match_high_precision_references() {
    let x = Array::from_iter(REFERENCE.iter().map(|r| r.0));
    let sig64 = Sigmoid::new().forward(x.view()).unwrap();
    let tanh64 = Tanh::new().forward(x.view()).unwrap();
    let x32 = x.mapv(|v| v as f32);
    let sig32 = Sigmoid::new().forward(x32.view()).unwrap();
    let tanh32 = Tanh::new().forward(x32.view()).unwrap();
    for (i, &(x, sigmoid, tanh)) in REFERENCE.iter().enumerate() {
        assert!(
            ulps_f64(sig64[i], sigmoid) < 1.0,
            "sigmoid({x}) = {:e}, want {sigmoid:e}",
            sig64[i]
        );
        assert!(
            ulps_f64(tanh64[i], tanh) < 1.0,
            "tanh({x}) = {:e}, want {tanh:e}",
            tanh64[i]
        );
        // The f32 reference is the f64 one: x is exactly representable in f32
        // except ±1e-8, whose rounding moves the result by far less than an f32 ulp.
        assert!(
            ulps_f32(sig32[i], sigmoid) < 1.0,
            "f32 sigmoid({x}) = {:e}",
            sig32[i]
        );
        assert!(
            ulps_f32(tanh32[i], tanh) < 1.0,
            "f32 tanh({x}) = {:e}",
            tanh32[i]
        );
    }
}

#[test]
fn f64_results_stay_within_a_few_ulps_of_std_across_the_range() {
    // std's exp and tanh are within 1 ulp; sample the whole useful range densely.
    let x = Array::linspace(-750.0_f64, 750.0, 200_001);
    let sig = Sigmoid::new().forward(x.view()).unwrap();
    let tanh = Tanh::new().forward(x.view()).unwrap();
    let (mut worst_sig, mut worst_tanh) = (0.0f64, 0.0f64);
    for ((&x, &s), &t) in x.iter().zip(&sig).zip(&tanh) {
        let want_sig = if x >= 0.0 {
            1.0 / (1.0 + (-x).exp())
        } else {
            x.exp() / (1.0 + x.exp())
        };
        worst_sig = worst_sig.max(ulps_f64(s, want_sig));
        worst_tanh = worst_tanh.max(ulps_f64(t, x.tanh()));
    }
    assert!(worst_sig <= 4.0, "sigmoid f64 worst {worst_sig} ulp");
    assert!(worst_tanh <= 4.0, "tanh f64 worst {worst_tanh} ulp");
}

#[test]
fn sigmoid_is_finite_and_exact_at_the_ends_of_the_range() {
    let x = array![
        1e30_f32,
        -1e30,
        f32::INFINITY,
        f32::NEG_INFINITY,
        f32::MAX,
        -f32::MAX
    ];
    let y = Sigmoid::new().forward(x.view()).unwrap();
    assert_eq!(y, array![1.0, 0.0, 1.0, 0.0, 1.0, 0.0]);
    // While σ(x) is a normal f32 (x > -87.3), relative precision holds.
    let y = Sigmoid::new()
        .forward(array![-80.0_f32, -87.0].view())
        .unwrap();
    assert!(ulps_f32(y[0], 1.8048513878454153e-35) <= 2.0, "{}", y[0]); // mpmath: 1/(1+exp(80))
    assert!(ulps_f32(y[1], 1.6458114310822737e-38) <= 2.0, "{}", y[1]); // mpmath: 1/(1+exp(87))
}

#[test]
fn tanh_is_exact_for_tiny_and_huge_inputs() {
    let y = Tanh::new()
        .forward(array![1e-10_f64, -1e-10, 1e-300, 1e30, -1e30, 0.0, -0.0].view())
        .unwrap();
    assert_eq!(
        y.slice(s![..6]),
        array![1e-10, -1e-10, 1e-300, 1.0, -1.0, 0.0]
    );
    assert!(
        y[6] == 0.0 && y[6].is_sign_negative(),
        "tanh(-0) keeps its sign"
    );
    let y = Tanh::new()
        .forward(array![1e-10_f32, f32::INFINITY, f32::NEG_INFINITY].view())
        .unwrap();
    assert_eq!(y, array![1e-10, 1.0, -1.0]);
}

#[test]
fn nan_propagates_through_every_activation_forward_and_backward() {
    let x = array![f64::NAN, 1.0];
    let g = array![1.0, 1.0];
    let mut sigmoid = Sigmoid::new();
    let mut tanh = Tanh::new();
    let mut relu = Relu::new();
    for (name, y, dx) in [
        (
            "sigmoid",
            sigmoid.forward(x.view()).unwrap(),
            sigmoid.backward(g.view()).unwrap(),
        ),
        (
            "tanh",
            tanh.forward(x.view()).unwrap(),
            tanh.backward(g.view()).unwrap(),
        ),
        (
            "relu",
            relu.forward(x.view()).unwrap(),
            relu.backward(g.view()).unwrap(),
        ),
    ] {
        assert!(
            y[0].is_nan() && dx[0].is_nan(),
            "{name}: NaN must give NaN, got {y} and {dx}"
        );
        assert!(
            y[1].is_finite() && dx[1].is_finite(),
            "{name}: NaN leaked into its neighbour"
        );
    }
}

#[test]
fn relu_values_and_gradient_at_zero() {
    let mut relu = Relu::new();
    let y = relu
        .forward(array![-2.0_f32, -0.0, 0.0, 1e-45, f32::INFINITY, f32::NEG_INFINITY].view())
        .unwrap();
    assert_eq!(y, array![0.0, 0.0, 0.0, 1e-45, f32::INFINITY, 0.0]);
    let dx = relu
        .backward(array![7.0, 7.0, 7.0, 7.0, 7.0, 7.0].view())
        .unwrap();
    assert_eq!(dx, array![0.0, 0.0, 0.0, 7.0, 7.0, 0.0]);
}

#[test]
fn backward_before_forward_is_an_error_that_says_so() {
    let err = Sigmoid::<f64, Ix2>::new()
        .backward(Array2::zeros((2, 2)).view())
        .unwrap_err();
    assert_eq!(err, LayerError::BackwardBeforeForward { layer: "Sigmoid" });
    assert!(
        err.to_string().contains("backward called before forward"),
        "{err}"
    );
    let err = Relu::<f32, Ix1>::new()
        .backward_view(array![1.0].view())
        .unwrap_err();
    assert!(matches!(
        err,
        LayerError::BackwardBeforeForward { layer: "Relu" }
    ));
}

#[test]
fn gradient_of_the_wrong_shape_is_an_error_naming_both_shapes() {
    let mut tanh = Tanh::new();
    tanh.forward(Array2::<f64>::zeros((2, 3)).view()).unwrap();
    let err = tanh.backward(Array2::zeros((3, 2)).view()).unwrap_err();
    let message = err.to_string();
    assert!(
        message.contains("[3, 2]") && message.contains("[2, 3]"),
        "{message}"
    );
    let mut out = Array2::zeros((2, 2));
    let err = tanh
        .backward_into(Array2::zeros((2, 3)).view(), out.view_mut())
        .unwrap_err();
    assert!(
        err.to_string()
            .contains("out has shape [2, 2], expected [2, 3]"),
        "{err}"
    );
}

#[test]
fn empty_arrays_pass_through() {
    for shape in [vec![0], vec![3, 0], vec![0, 4], vec![2, 0, 5]] {
        let x = Array::<f64, IxDyn>::zeros(shape.clone());
        let mut sigmoid = Sigmoid::new();
        assert_eq!(sigmoid.forward(x.view()).unwrap().shape(), &shape[..]);
        assert_eq!(sigmoid.backward(x.view()).unwrap().shape(), &shape[..]);
    }
}

#[test]
fn every_dimension_from_one_to_six_and_dynamic() {
    let x6 = uniform((2, 1, 2, 3, 1, 2), -2.0, 2.0, 13);
    let mut tanh = Tanh::new();
    let y = tanh.forward(x6.view()).unwrap();
    for (&got, &x) in y.iter().zip(&x6) {
        assert!(ulps_f64(got, x.tanh()) <= 4.0, "6-D tanh({x}) = {got}");
    }
    let xd = x6.clone().into_dyn();
    let yd = Tanh::new().forward(xd.view()).unwrap();
    assert_eq!(yd, y.into_dyn());
}

type View2<'a> = ArrayView<'a, f64, Ix2>;

/// Forward and backward on `view` equal forward and backward on a contiguous copy.
fn check_layout<L: Layer<f64, D> + Clone, D: Dimension>(
    layer: &L,
    x: ArrayView<'_, f64, D>,
    g: ArrayView<'_, f64, D>,
) {
    let (mut a, mut b) = (layer.clone(), layer.clone());
    let contiguous = x.as_standard_layout().into_owned();
    let g_contiguous = g.as_standard_layout().into_owned();
    assert_same(
        &a.forward(x).unwrap(),
        &b.forward(contiguous.view()).unwrap(),
        "forward",
    );
    assert_same(
        &a.backward(g).unwrap(),
        &b.backward(g_contiguous.view()).unwrap(),
        "backward",
    );
}

#[test]
fn every_layout_gives_the_same_numbers_as_a_contiguous_copy() {
    let base = uniform((6, 8), -4.0, 4.0, 14);
    let gbase = uniform((6, 8), -1.0, 1.0, 15);
    let fortran = {
        let mut f = Array2::zeros((6, 8).f());
        f.assign(&base);
        f
    };
    let views: [(&str, View2<'_>, View2<'_>); 5] = [
        ("transposed", base.t(), gbase.t()),
        (
            "stepped",
            base.slice(s![..;2, 1..;3]),
            gbase.slice(s![..;2, 1..;3]),
        ),
        (
            "reversed",
            base.slice(s![..;-1, ..;-2]),
            gbase.slice(s![..;-1, ..;-2]),
        ),
        ("column-major", fortran.view(), gbase.view()),
        (
            "mixed: column-major x, reversed g",
            fortran.view(),
            gbase.slice(s![..;-1, ..]),
        ),
    ];
    for (name, x, g) in views {
        println!("layout: {name}");
        check_layout(&Sigmoid::new(), x, g);
        check_layout(&Tanh::new(), x, g);
        check_layout(&Relu::new(), x, g);
    }
}

#[test]
fn column_ranges_of_a_wider_matrix_give_the_same_numbers() {
    // Rows contiguous, the whole not (an LSTM's gate block, say): rows of at
    // least 16 go to the slice kernel one by one, shorter ones are gathered;
    // 300 is long enough for the staged loops within each row.
    let base = uniform((5, 320), -6.0, 6.0, 18);
    let gbase = uniform((5, 320), -1.0, 1.0, 19);
    for width in [10, 16, 70, 300] {
        let (x, g) = (
            base.slice(s![.., 7..7 + width]),
            gbase.slice(s![.., 3..3 + width]),
        );
        check_layout(&Sigmoid::new(), x, g);
        check_layout(&Tanh::new(), x, g);
        check_layout(&Relu::new(), x, g);
        // backward_into a column range of a wider output, too.
        let mut tanh = Tanh::new();
        tanh.forward(x).unwrap();
        let mut wide_out = Array2::from_elem((5, 320), 7.0);
        let range = s![.., 11..11 + width];
        tanh.backward_into(g, wide_out.slice_mut(range)).unwrap();
        let want = tanh.backward(g).unwrap();
        assert_same(&wide_out.slice(range).to_owned(), &want, "backward_into");
        assert!(wide_out.slice(s![.., ..11]).iter().all(|&v| v == 7.0));
    }
}

#[test]
fn a_later_forward_replaces_the_cache_and_reuses_buffers() {
    let mut sigmoid = Sigmoid::new();
    sigmoid.forward(array![[5.0_f64, 5.0]].view()).unwrap();
    sigmoid.forward(array![[0.0_f64, 0.0]].view()).unwrap();
    assert_eq!(
        sigmoid.backward(array![[1.0, 1.0]].view()).unwrap(),
        array![[0.25, 0.25]]
    );
    // A different shape after that is fine too: the buffers are replaced.
    sigmoid
        .forward(array![[0.0_f64], [0.0], [0.0]].view())
        .unwrap();
    assert_eq!(
        sigmoid
            .backward_view(array![[4.0], [4.0], [4.0]].view())
            .unwrap(),
        array![[1.0], [1.0], [1.0]]
    );
}

#[test]
fn view_api_agrees_with_owned_api() {
    let x = uniform((5, 33), -5.0, 5.0, 16);
    let g = uniform((5, 33), -1.0, 1.0, 17);
    let mut owned = Tanh::new();
    let mut viewing = Tanh::new();
    let y = owned.forward(x.view()).unwrap();
    assert_same(
        &viewing.forward_view(x.view()).unwrap().to_owned(),
        &y,
        "forward_view",
    );
    let dx = owned.backward(g.view()).unwrap();
    assert_same(
        &viewing.backward_view(g.view()).unwrap().to_owned(),
        &dx,
        "backward_view",
    );
    let mut out = Array2::zeros((5, 33));
    viewing.backward_into(g.view(), out.view_mut()).unwrap();
    assert_same(&out, &dx, "backward_into");
}

#[test]
fn layers_are_default_clone_and_debug() {
    let a: Sigmoid<f32, Ix2> = Default::default();
    let b = a.clone();
    assert!(format!("{b:?}").contains("Elementwise"));
}

#[test]
fn large_contiguous_arrays_match_the_gathered_path() {
    // 300 × 257 = 77 100 elements: above the parallel threshold, so with the
    // `rayon` feature this compares the threaded path with the gathered one,
    // and not a multiple of the 256-element gather block, so the last block is partial.
    let wide = uniform((300, 514), -30.0, 30.0, 40);
    let strided = wide.slice(s![.., ..;2]); // not contiguous: gathered in blocks
    let contiguous = strided.to_owned();
    let g = uniform((300, 257), -1.0, 1.0, 41);
    check_layout(&Sigmoid::new(), strided, g.view());
    check_layout(&Tanh::new(), strided, g.view());
    check_layout(&Relu::new(), strided, g.view());
    let y = Sigmoid::new().forward(contiguous.view()).unwrap();
    assert_eq!(y.dim(), (300, 257));
}

#[test]
fn kernels_compute_the_flavour_of_math_this_cpu_has() {
    kernels_compute_the_flavour_of::<f32>();
    kernels_compute_the_flavour_of::<f64>();
}

fn kernels_compute_the_flavour_of<F: Real>() {
    use ndlayers::math::{Fused, MulAdd, Unfused};
    // 4001 points over [-800, 800], dense near 0, through the contiguous and
    // the transposed (gathered) paths; 4001 is not a multiple of any block
    // the kernels work in. The exhaustive f32 test checks the accuracy of both flavours.
    let x = Array2::from_shape_fn((1, 4001), |(_, j)| {
        F::from_f64((j as f64 - 2000.0).powi(3) * 1e-7).unwrap()
    });
    type Scalar<F> = fn(F) -> F;
    let (sigmoid, tanh): (Scalar<F>, Scalar<F>) = if cpu_has_fma() {
        (Fused::sigmoid, Fused::tanh)
    } else {
        (Unfused::sigmoid, Unfused::tanh)
    };
    // The flavours differ in the last bit at some of these points, so the test can tell them apart.
    assert!(x.iter().any(|&v| Fused::sigmoid(v) != Unfused::sigmoid(v)));
    assert!(x.iter().any(|&v| Fused::tanh(v) != Unfused::tanh(v)));
    for view in [x.view(), x.t().reversed_axes()] {
        assert_same(
            &Sigmoid::new().forward(view).unwrap(),
            &view.mapv(sigmoid),
            "sigmoid",
        );
        assert_same(
            &Tanh::new().forward(view).unwrap(),
            &view.mapv(tanh),
            "tanh",
        );
    }
}

/// `x` with a NaN at `nan_at` (if any), every special value, and both signs.
fn relu_inputs<F: Real>(len: usize, nan_at: Option<usize>) -> Vec<F> {
    let specials = [0.0, -0.0, 1e-300, -1e-300, f64::INFINITY, f64::NEG_INFINITY];
    let mut x: Vec<F> = (0..len)
        .map(|i| match i % 9 {
            k @ 0..6 => F::from(specials[k]).unwrap(),
            k => F::from((i as f64 * 0.37).sin() * 3.0 * (k as f64 - 7.0)).unwrap(),
        })
        .collect();
    if let Some(i) = nan_at {
        x[i] = F::nan();
    }
    x
}

/// ReLU's backward by definition: `g · 1` where `x > 0`, `g · 0` where
/// `x ≤ 0`, NaN where `x` is NaN (the multiplication is the layer's too, so
/// `g = ±∞` at `x ≤ 0` gives NaN on both sides).
fn relu_reference<F: Real>(x: F, g: F) -> (F, F) {
    if x.is_nan() {
        (x, F::nan())
    } else if x > F::zero() {
        (x, g)
    } else {
        (F::zero(), g * F::zero())
    }
}

/// The one-bit cache (contiguous input without NaN) and the value cache
/// (strided input, or a NaN anywhere) give ReLU's reference bits on every
/// route: mask words cut at 64 elements, in both memory orders, with `out`
/// and `g` in any layout.
fn relu_routes_match_the_definition<F: Real>() {
    for (len, nan_at) in [
        (0, None),
        (1, None),
        (63, None),
        (64, None),
        (65, None),
        (65, Some(64)),
        (1000, None),
        (1000, Some(777)),
    ] {
        let x = Array::from(relu_inputs::<F>(len, nan_at));
        let g: Array<F, Ix1> = Array::from_shape_fn(len, |i| {
            if i % 13 == 5 {
                F::infinity()
            } else {
                F::from(i as f64 * 0.25 - 3.0).unwrap()
            }
        });
        let (want_y, want_dx): (Vec<F>, Vec<F>) = x
            .iter()
            .zip(&g)
            .map(|(&x, &g)| relu_reference(x, g))
            .unzip();
        let (want_y, want_dx) = (Array::from(want_y), Array::from(want_dx));
        let what = |route: &str| format!("{route}, {len} elements, NaN at {nan_at:?}");

        let mut relu = Relu::<F, Ix1>::new();
        assert_same(&relu.forward(x.view()).unwrap(), &want_y, &what("forward"));
        assert_same(
            &relu.backward(g.view()).unwrap(),
            &want_dx,
            &what("backward"),
        );
        let reversed_g = g.slice(s![..;-1]).to_owned();
        let mut out = Array::from_elem(len, F::from(9.0).unwrap());
        relu.backward_into(reversed_g.slice(s![..;-1]), out.slice_mut(s![..;-1]))
            .unwrap();
        assert_same(
            &out.slice(s![..;-1]).to_owned(),
            &want_dx,
            &what("backward_into, reversed g and out"),
        );
        let y = relu.forward_view(x.view()).unwrap().to_owned();
        assert_same(&y, &want_y, &what("forward_view"));
        let dx = relu.backward_view(g.view()).unwrap().to_owned();
        assert_same(&dx, &want_dx, &what("backward_view"));

        // 2-D, both memory orders; g transposed against x (a different layout
        // from the bits' order).
        let rows = if len % 8 == 0 { 8 } else { 1 };
        let shape = (rows, len / rows);
        let x2 = x.to_shape(shape).unwrap().to_owned();
        let g2 = g.to_shape(shape).unwrap().to_owned();
        let (want_y2, want_dx2) = (
            want_y.to_shape(shape).unwrap().to_owned(),
            want_dx.to_shape(shape).unwrap().to_owned(),
        );
        let mut x_fortran = Array2::zeros(shape.f());
        x_fortran.assign(&x2);
        let g_transposed = g2.t().as_standard_layout().into_owned();
        for (order, x2) in [("row-major", x2.view()), ("column-major", x_fortran.view())] {
            let mut relu = Relu::<F, Ix2>::new();
            assert_same(&relu.forward(x2).unwrap(), &want_y2, &what(order));
            assert_same(&relu.backward(g2.view()).unwrap(), &want_dx2, &what(order));
            assert_same(
                &relu.backward(g_transposed.t()).unwrap(),
                &want_dx2,
                &what(&format!("{order}, g transposed")),
            );
        }
    }
}

#[test]
fn relu_bit_cache_and_value_cache_give_the_reference_bits() {
    relu_routes_match_the_definition::<f32>();
    relu_routes_match_the_definition::<f64>();
}

#[test]
fn relu_backward_follows_the_latest_forward_whichever_cache_it_used() {
    let mut relu = Relu::<f64, Ix2>::new();
    let contiguous = array![[1.0, -1.0, 2.0], [-2.0, 3.0, -3.0]];
    let wide = array![[-1.0, 9.0, 1.0, 9.0], [1.0, 9.0, -1.0, 9.0]];
    let strided = wide.slice(s![.., ..;2]); // (2, 2), not contiguous: values cached
    let g3 = Array2::from_elem((2, 3), 5.0);
    let g2 = Array2::from_elem((2, 2), 5.0);
    let bits = array![[5.0, 0.0, 5.0], [0.0, 5.0, 0.0]];
    let values = array![[0.0, 5.0], [5.0, 0.0]];

    relu.forward(contiguous.view()).unwrap(); // bits
    assert_eq!(relu.backward(g3.view()).unwrap(), bits);
    relu.forward_view(strided).unwrap(); // values, another shape
    assert_eq!(relu.backward(g2.view()).unwrap(), values);
    let err = relu.backward(g3.view()).unwrap_err().to_string();
    assert!(err.contains("[2, 2]") && err.contains("[2, 3]"), "{err}");
    relu.forward(contiguous.view()).unwrap(); // bits again
    assert_eq!(relu.backward_view(g3.view()).unwrap(), bits);
    let err = relu.backward(g2.view()).unwrap_err().to_string();
    assert!(err.contains("[2, 3]") && err.contains("[2, 2]"), "{err}");
    let mut wrong_out = Array2::zeros((3, 2));
    let err = relu
        .backward_into(g3.view(), wrong_out.view_mut())
        .unwrap_err();
    assert!(err.to_string().contains("out"), "{err}");
    // In place caches values; the bits of the forward before must not be read.
    let mut x = array![[-1.0, 1.0, -1.0], [1.0, -1.0, 1.0]];
    relu.forward_in_place(x.view_mut());
    assert_eq!(
        relu.backward(g3.view()).unwrap(),
        array![[0.0, 5.0, 0.0], [5.0, 0.0, 5.0]]
    );
    // A NaN forward caches values; the next forward without one uses bits.
    relu.forward(array![[f64::NAN, 1.0, -1.0], [1.0, 1.0, 1.0]].view())
        .unwrap();
    let dx = relu.backward(g3.view()).unwrap();
    assert!(dx[[0, 0]].is_nan() && dx[[0, 1]] == 5.0 && dx[[0, 2]] == 0.0);
    relu.forward(contiguous.view()).unwrap();
    assert_eq!(relu.backward(g3.view()).unwrap(), bits);
}

/// The owned forward of the activations that cache their output computes
/// blocks into the cache and copies each to the result (`kernels::teed`):
/// the same bits as the view path, for lengths that end mid-block, in both
/// memory orders, split across threads with `rayon` (35000 elements), and
/// the cache it leaves gives `backward` the view path's bits.
#[test]
fn owned_forward_in_one_pass_gives_the_view_paths_bits_and_cache() {
    fn check<L: Layer<f32, ndlayers::ndarray::Ix2> + Default>(name: &str) {
        for (shape, fortran) in [
            ((7, 5000), false),
            ((7, 5000), true),
            ((1, 4096), false),
            ((2, 7), false),
            ((0, 9), false),
        ] {
            let x = Array2::from_shape_fn(shape.set_f(fortran), |(i, j)| {
                ((i * 7919 + j * 104_729) % 2001) as f32 / 100.0 - 10.0
            });
            let g = x.mapv(|v| (v * 3.0).sin());
            let what = format!("{name} {shape:?} fortran {fortran}");
            let mut by_view = L::default();
            let want_y = by_view.forward_view(x.view()).unwrap().to_owned();
            let want_dx = by_view.backward_view(g.view()).unwrap().to_owned();
            let mut owned = L::default();
            let y = owned.forward(x.view()).unwrap();
            assert_eq!(
                y.t().is_standard_layout() && !y.is_standard_layout(),
                fortran && shape.0 > 1,
                "{what}: order"
            );
            assert_same(&y, &want_y, &format!("{what}: forward"));
            assert_same(
                &owned.backward(g.view()).unwrap(),
                &want_dx,
                &format!("{what}: backward"),
            );
        }
    }
    check::<Sigmoid<f32, ndlayers::ndarray::Ix2>>("sigmoid");
    check::<Tanh<f32, ndlayers::ndarray::Ix2>>("tanh");
}
