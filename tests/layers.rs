//! Dropout and LayerNorm: PyTorch's numbers and semantics, gradients, errors,
//! and both inside a `Sequential` with checkpoints.

use crate::common;

use common::uniform;
use ndlayers::checkpoint;
use ndlayers::gradcheck::GradCheck;
use ndlayers::ndarray::{Array1, Array2, Array3, ArrayD, IxDyn, array};
use ndlayers::prelude::*;

/// `tests/reference/layer_norm.txt`, written by `tests/reference/layer_norm.py`
/// (PyTorch 2.15, float64).
const LAYER_NORM: &str = include_str!("reference/layer_norm.txt");

fn printed(label: &str) -> ArrayD<f64> {
    let line = LAYER_NORM
        .lines()
        .find(|l| l.starts_with(&format!("{label} [")))
        .expect("label in the file");
    let (shape, values) = line[label.len() + 2..].split_once("] ").unwrap();
    let shape: Vec<usize> = shape.split(' ').map(|d| d.parse().unwrap()).collect();
    let values = values.split(' ').map(|v| v.parse().unwrap()).collect();
    ArrayD::from_shape_vec(IxDyn(&shape), values).unwrap()
}

fn matrix(label: &str) -> Array2<f64> {
    printed(label).into_dimensionality().unwrap()
}

fn vector(label: &str) -> Array1<f64> {
    printed(label).into_dimensionality().unwrap()
}

/// Elementwise within `tolerance` of `want`, relative to its largest magnitude.
fn close<D: ndlayers::ndarray::Dimension>(
    got: &ndlayers::ndarray::Array<f64, D>,
    want: &ndlayers::ndarray::Array<f64, D>,
    tolerance: f64,
    what: &str,
) {
    let scale = want.iter().fold(1e-300_f64, |m, v| m.max(v.abs()));
    for ((index, g), w) in got.indexed_iter().zip(want) {
        assert!(
            (g - w).abs() <= tolerance * scale,
            "{what} at {index:?}: ndlayers {g:e}, PyTorch {w:e}"
        );
    }
}

#[test]
fn layer_norm_matches_pytorch() {
    let mut norm = LayerNorm::<f64>::new(5).unwrap();
    norm.set_parameters(vector("weight").view(), vector("bias").view())
        .unwrap();
    let y = norm.forward(matrix("x").view()).unwrap();
    // The row offset by 1e6 loses about 1e6·ε to the subtraction x - μ in
    // both libraries; the others agree to a few ulps.
    close(&y, &matrix("y"), 1e-9, "y");
    close(&norm.infer(matrix("x").view()).unwrap(), &y, 0.0, "infer");
    let dx = norm.backward(matrix("g").view()).unwrap();
    close(&dx, &matrix("dx"), 1e-9, "dx");
    close(
        &norm.grad_weight().to_owned(),
        &vector("dweight"),
        1e-9,
        "dweight",
    );
    close(
        &norm.grad_bias().to_owned(),
        &vector("dbias"),
        1e-12,
        "dbias",
    );
}

#[test]
fn layer_norm_gradients_match_finite_differences_on_any_dimension() {
    let mut norm = LayerNorm::<f64, ndlayers::ndarray::Ix3>::new(6).unwrap();
    norm.set_parameters(
        array![1.5, -0.5, 2.0, 0.25, 1.0, 0.7].view(),
        array![0.1, 0.2, -0.3, 0.0, 0.5, -1.0].view(),
    )
    .unwrap();
    let x: Array3<f64> = uniform((2, 3, 6), -2.0, 2.0, 40);
    let report = GradCheck::default()
        .check_layer(&mut norm, x.view())
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(report.checked, 2 * 3 * 6 + 6 + 6);
    // Any layout gives the same numbers.
    let transposed = x.clone().permuted_axes([1, 0, 2]);
    let strided = transposed.as_standard_layout().into_owned();
    assert_eq!(
        norm.infer(transposed.view()).unwrap(),
        norm.infer(strided.view()).unwrap()
    );
}

#[test]
fn layer_norm_errors_and_edges() {
    assert!(LayerNorm::<f32>::new(0).is_err());
    assert!(LayerNorm::<f32>::new(3).unwrap().with_eps(0.0).is_err());
    let mut norm = LayerNorm::<f32>::new(4).unwrap();
    let err = norm.forward(Array2::zeros((2, 3)).view()).unwrap_err();
    assert_eq!(
        err.to_string(),
        "LayerNorm: input has shape [2, 3], expected (…, 4): the last axis holds the 4 normalised features"
    );
    assert!(matches!(
        norm.backward(Array2::zeros((2, 4)).view()),
        Err(LayerError::BackwardBeforeForward { .. })
    ));
    // An empty batch, a constant row (x̂ = 0, not NaN) and NaN propagating.
    assert_eq!(
        norm.forward(Array2::zeros((0, 4)).view()).unwrap().dim(),
        (0, 4)
    );
    let y = norm
        .forward(array![[3.0, 3.0, 3.0, 3.0], [1.0, f32::NAN, 0.0, 2.0]].view())
        .unwrap();
    assert_eq!(y.row(0), array![0.0, 0.0, 0.0, 0.0]);
    assert!(y.row(1).iter().all(|v| v.is_nan()));
    assert!(
        norm.set_parameters(
            array![1.0, f32::INFINITY, 1.0, 1.0].view(),
            Array1::zeros(4).view()
        )
        .is_err()
    );
    assert_eq!(
        norm.weight(),
        Array1::<f32>::ones(4),
        "unchanged after an error"
    );
}

#[test]
fn dropout_drops_with_probability_p_and_scales_the_rest() {
    let mut dropout = Dropout::<f64>::new(0.3, 1).unwrap();
    let n = 200_000;
    let x = Array2::from_elem((200, n / 200), 2.0);
    let y = dropout.forward(x.view()).unwrap();
    let kept = y.iter().filter(|&&v| v != 0.0).count();
    // Binomial(n, 0.7): σ = √(n p (1 - p)) ≈ 205; allow 5σ.
    let expected = 0.7 * n as f64;
    assert!(
        (kept as f64 - expected).abs() < 5.0 * 205.0,
        "{kept} kept of {n}"
    );
    assert!(y.iter().all(|&v| v == 0.0 || v == 2.0 / 0.7));
    // The mean is preserved in expectation (within 5σ of the mean of the scaled Bernoulli).
    let mean = y.mean().unwrap();
    assert!(
        (mean - 2.0).abs() < 5.0 * 2.0 / 0.7 * (0.21f64 / n as f64).sqrt(),
        "{mean}"
    );
    // Backward uses the same mask.
    let g = uniform((200, n / 200), -1.0, 1.0, 41);
    let dx = dropout.backward(g.view()).unwrap();
    for ((&d, &g), &y) in dx.iter().zip(&g).zip(&y) {
        assert_eq!(d, if y == 0.0 { 0.0 } else { g * (1.0 / 0.7) });
    }
    // A new mask per forward, and the same masks for the same seed.
    let again = dropout.forward(x.view()).unwrap();
    assert_ne!(again, y);
    let mut twin = Dropout::<f64>::new(0.3, 1).unwrap();
    assert_eq!(twin.forward(x.view()).unwrap(), y);
}

#[test]
fn dropout_modes_edges_and_gradient() {
    let x = uniform((4, 5), -2.0, 2.0, 42);
    let mut dropout = Dropout::<f64>::new(0.5, 2).unwrap();
    assert!(dropout.is_training());
    dropout.set_training(false);
    assert_eq!(
        dropout.forward(x.view()).unwrap(),
        x,
        "evaluation is the identity"
    );
    assert_eq!(dropout.backward(x.view()).unwrap(), x);
    assert_eq!(dropout.infer(x.view()).unwrap(), x);
    assert_eq!(
        Dropout::<f64>::new(0.0, 0)
            .unwrap()
            .forward(x.view())
            .unwrap(),
        x
    );
    let zeroed = Dropout::<f64>::new(1.0, 0)
        .unwrap()
        .forward(x.view())
        .unwrap();
    assert!(zeroed.iter().all(|&v| v == 0.0));
    let nan = Dropout::<f64>::new(0.5, 0)
        .unwrap()
        .forward(array![[f64::NAN; 8]].view())
        .unwrap();
    assert!(
        nan.iter().all(|v| v.is_nan()),
        "NaN stays NaN, dropped or not"
    );
    for p in [-0.1, 1.5, f64::NAN] {
        let err = Dropout::<f32>::new(p, 0).unwrap_err().to_string();
        assert!(err.contains("must be a probability, in [0, 1]"), "{err}");
    }
    assert!(
        Dropout::<f32>::new(0.5, 0)
            .unwrap()
            .backward(Array2::zeros((1, 1)).view())
            .is_err()
    );
    // The gradient of Σ w ⊙ dropout(x) for a fixed mask (the same seed every evaluation).
    let w = uniform((4, 5), -1.0, 1.0, 43);
    let mut layer = Dropout::<f64>::new(0.4, 9).unwrap();
    layer.forward(x.view()).unwrap();
    let analytic = layer.backward(w.view()).unwrap();
    GradCheck::default()
        .check_function("dropout", x.view(), analytic.view(), |x| {
            let y = Dropout::<f64>::new(0.4, 9)?.forward(x)?;
            Ok((&y * &w).sum())
        })
        .unwrap_or_else(|e| panic!("{e}"));
}

#[test]
fn both_work_in_a_sequential_with_modes_and_checkpoints() {
    let mut net = Sequential::new()
        .with(Dense::<f32>::from_fn(4, 6, |i, j| ((i + 2 * j) % 5) as f32 * 0.1 - 0.2).unwrap())
        .with(LayerNorm::new(6).unwrap())
        .with(Relu::new())
        .with(Dropout::new(0.5, 3).unwrap())
        .with(Dense::from_fn(6, 2, |i, j| (i + j) as f32 * 0.1).unwrap());
    let x = Array2::from_shape_fn((8, 4), |(i, j)| (i * j) as f32 * 0.25 - 1.0);
    let trained = net.forward(x.view()).unwrap();
    let evaluated = net.infer(x.view()).unwrap();
    assert_ne!(trained, evaluated, "training drops, inference does not");
    net.set_training(false);
    assert_eq!(
        net.forward(x.view()).unwrap(),
        evaluated,
        "eval mode is inference"
    );
    net.set_training(true);
    // Names: LayerNorm's weight and bias at position 1, as nn.Sequential.
    let names: Vec<String> = ndlayers::state::named_parameters(&net)
        .into_iter()
        .map(|(name, _)| name)
        .collect();
    assert_eq!(
        names,
        [
            "0.weight", "0.bias", "1.weight", "1.bias", "4.weight", "4.bias"
        ]
    );
    let bytes = checkpoint::to_bytes(&net, None).unwrap();
    let mut copy = Sequential::new()
        .with(Dense::<f32>::from_fn(4, 6, |_, _| 0.0).unwrap())
        .with(LayerNorm::new(6).unwrap())
        .with(Relu::new())
        .with(Dropout::new(0.5, 3).unwrap())
        .with(Dense::from_fn(6, 2, |_, _| 0.0).unwrap());
    checkpoint::from_bytes(&bytes, &mut copy, None).unwrap();
    assert_eq!(copy.infer(x.view()).unwrap(), evaluated);
}
