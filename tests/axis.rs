//! Softmax, LogSoftmax and Softmin along every axis of arrays of several dimensions.

use crate::common;

use common::{assert_same, ulps_f32, ulps_f64, uniform};
use ndlayers::gradcheck::GradCheck;
use ndlayers::ndarray::{Array, Array2, ArrayD, Axis, Ix2, Ix3, IxDyn, array};
use ndlayers::prelude::*;

/// Applies the row-wise 2-D layer to every lane along `axis`, one lane at a time.
fn lane_by_lane<L: Layer<f64, Ix2> + Default>(
    x: &ArrayD<f64>,
    g: &ArrayD<f64>,
    axis: usize,
) -> (ArrayD<f64>, ArrayD<f64>) {
    let mut y = ArrayD::zeros(x.raw_dim());
    let mut dx = ArrayD::zeros(x.raw_dim());
    for (((xl, gl), mut yl), mut dl) in x
        .lanes(Axis(axis))
        .into_iter()
        .zip(g.lanes(Axis(axis)))
        .zip(y.lanes_mut(Axis(axis)))
        .zip(dx.lanes_mut(Axis(axis)))
    {
        let mut layer = L::default();
        let row = layer.forward(xl.insert_axis(Axis(0))).unwrap();
        yl.assign(&row.row(0));
        dl.assign(&layer.backward(gl.insert_axis(Axis(0))).unwrap().row(0));
    }
    (y, dx)
}

fn check_all_axes<L: Layer<f64, IxDyn>, R: Layer<f64, Ix2> + Default>(make: impl Fn(Axis) -> L) {
    let x = uniform(IxDyn(&[2, 3, 4, 5]), -6.0, 6.0, 70);
    let g = uniform(IxDyn(&[2, 3, 4, 5]), -1.0, 1.0, 71);
    for axis in 0..4 {
        let mut layer = make(Axis(axis));
        let y = layer.forward(x.view()).unwrap();
        let dx = layer.backward(g.view()).unwrap();
        let (want_y, want_dx) = lane_by_lane::<R>(&x, &g, axis);
        assert_same(
            &y.as_standard_layout().into_owned(),
            &want_y,
            &format!("forward along axis {axis}"),
        );
        assert_same(&dx, &want_dx, &format!("backward along axis {axis}"));
    }
}

#[test]
fn every_axis_of_a_4d_array_matches_lane_by_lane_evaluation() {
    check_all_axes::<_, Softmax<f64>>(Softmax::along);
    check_all_axes::<_, LogSoftmax<f64>>(LogSoftmax::along);
    check_all_axes::<_, Softmin<f64>>(Softmin::along);
}

#[test]
fn gradients_match_finite_differences_along_each_axis() {
    let x = uniform((3, 4, 5), -5.0, 5.0, 72);
    for axis in 0..3 {
        let check = GradCheck::default();
        check
            .check_input(&mut Softmax::<f64, Ix3>::along(Axis(axis)), x.view())
            .unwrap_or_else(|e| panic!("softmax {axis}: {e}"));
        check
            .check_input(&mut LogSoftmax::<f64, Ix3>::along(Axis(axis)), x.view())
            .unwrap_or_else(|e| panic!("log-softmax {axis}: {e}"));
        check
            .check_input(&mut Softmin::<f64, Ix3>::along(Axis(axis)), x.view())
            .unwrap_or_else(|e| panic!("softmin {axis}: {e}"));
    }
    // Long rows take the lane-wise path.
    let x = uniform((2, 70), -5.0, 5.0, 73);
    GradCheck::default()
        .check_input(&mut LogSoftmax::new(), x.view())
        .unwrap_or_else(|e| panic!("{e}"));
}

#[test]
fn log_softmax_is_stable_and_matches_references() {
    // mpmath, 50 digits: [v - log(e + e^2 + e^3) for v in (1, 2, 3)]
    let want = [-2.40760596444438, -1.4076059644443804, -0.4076059644443803];
    let y = LogSoftmax::new()
        .forward(array![[1.0_f64, 2.0, 3.0]].view())
        .unwrap();
    // y = (x - max) - ln Σ: x - max is exact here, so the error is that of
    // ln Σ and one subtraction, relative to the result.
    for (got, want) in y.iter().zip(want) {
        assert!(ulps_f64(*got, want) <= 3.0, "{got} vs {want}");
    }
    // Where ln(softmax) would give -inf, log-softmax stays exact.
    let y = LogSoftmax::new()
        .forward(array![[0.0_f32, -1000.0], [1e4, -1e4]].view())
        .unwrap();
    assert_eq!(y, array![[0.0, -1000.0], [0.0, -2e4]]);
    // NaN and all -inf rows follow softmax's table.
    let y = LogSoftmax::new()
        .forward(array![[f64::NAN, 0.0], [f64::NEG_INFINITY, f64::NEG_INFINITY]].view())
        .unwrap();
    assert!(y.iter().all(|v| v.is_nan()), "{y}");
}

#[test]
fn log_softmax_keeps_the_digits_of_a_dominant_logit() {
    // The row maximum's y is -ln(1 + s), s the sum of the other terms: with
    // s = e^-35 below an ulp of 1, ln(1 + s) would round to 0; computing
    // x - (max + ln Σ) would lose y = -0.31 to an ulp of 100 (~100 ulp of y).
    // mpmath, 50 digits: [float(v - log(sum(exp(u) for u in row))) for v in row]
    let cases: [(&[f64], &[f64]); 3] = [
        (&[0.0, -35.0], &[-6.305116760146987e-16, -35.0]),
        (&[100.0, 99.0], &[-0.3132616875182228, -1.3132616875182228]),
        (
            &[3.0, 3.0, -20.0],
            &[
                -0.6931471806112547,
                -0.6931471806112547,
                -23.693147180611255,
            ],
        ),
    ];
    for (row, want) in cases {
        let x = Array2::from_shape_vec((1, row.len()), row.to_vec()).unwrap();
        let y64 = LogSoftmax::new().forward(x.view()).unwrap();
        let y32 = LogSoftmax::new()
            .forward(x.mapv(|v| v as f32).view())
            .unwrap();
        for (j, &want) in want.iter().enumerate() {
            let (e64, e32) = (ulps_f64(y64[[0, j]], want), ulps_f32(y32[[0, j]], want));
            assert!(
                e64 <= 3.0 && e32 <= 3.0,
                "{row:?}[{j}]: {e64} ulp (f64), {e32} ulp (f32)"
            );
        }
    }
}

#[test]
fn softmin_is_softmax_of_the_negation() {
    let x = uniform((4, 9), -3.0, 3.0, 74);
    let g = uniform((4, 9), -1.0, 1.0, 75);
    let mut softmin = Softmin::new();
    let mut softmax = Softmax::new();
    let y = softmin.forward(x.view()).unwrap();
    assert_same(&y, &softmax.forward((-&x).view()).unwrap(), "forward");
    // d/dx softmax(-x) = -(softmax backward at -x)
    assert_same(
        &softmin.backward(g.view()).unwrap(),
        &-softmax.backward(g.view()).unwrap(),
        "backward",
    );
}

#[test]
fn axis_errors_and_empty_arrays() {
    let mut softmax = Softmax::<f64, Ix3>::along(Axis(3));
    let err = softmax.forward(Array::zeros((2, 2, 2)).view()).unwrap_err();
    assert_eq!(
        err.to_string(),
        "Softmax: axis 3 is out of range for an array of 3 dimensions"
    );
    let mut zero_dim = LogSoftmax::<f64, IxDyn>::new();
    assert!(zero_dim.forward(ArrayD::zeros(IxDyn(&[])).view()).is_err());
    let mut empty = Softmax::<f32, Ix3>::along(Axis(1));
    assert_eq!(
        empty
            .forward(Array::zeros((2, 0, 3)).view())
            .unwrap()
            .shape(),
        &[2, 0, 3]
    );
    assert_eq!(
        empty
            .backward(Array::zeros((2, 0, 3)).view())
            .unwrap()
            .shape(),
        &[2, 0, 3]
    );
    let mut rows = Softmax::<f64>::along(Axis(0));
    rows.forward(Array2::zeros((3, 5)).view()).unwrap();
    let err = rows.backward(Array2::zeros((5, 3)).view()).unwrap_err();
    assert!(
        err.to_string()
            .contains("grad_output has shape [5, 3], expected [3, 5]"),
        "{err}"
    );
}
