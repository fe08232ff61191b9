//! The losses' `Reduction::Mean` and `Reduction::Sum` (issue 29) against
//! PyTorch's `reduction="mean"` / `"sum"` (`tests/reference/reductions.py`,
//! PyTorch 2.15, float64).

use std::collections::HashMap;

use ndlayers::ndarray::{Array1, Array2, ArrayD, Ix2};
use ndlayers::prelude::*;

fn reference() -> HashMap<String, ArrayD<f64>> {
    crate::common::reference_table(include_str!("reference/reductions.txt"))
}

fn matrix(table: &HashMap<String, ArrayD<f64>>, name: &str) -> Array2<f64> {
    table[name].clone().into_dimensionality::<Ix2>().unwrap()
}

#[track_caller]
fn close(got: f64, want: f64) {
    assert!(
        (got - want).abs() <= 1e-14 * want.abs().max(1.0),
        "{got} against {want}"
    );
}

#[test]
fn reductions_match_pytorch() {
    let table = reference();
    let logits = matrix(&table, "inputs/logits");
    let labels: Array1<usize> = table["inputs/labels"].iter().map(|&l| l as usize).collect();
    let probabilities = matrix(&table, "inputs/probabilities");
    let (prediction, target) = (
        matrix(&table, "inputs/prediction"),
        matrix(&table, "inputs/target"),
    );
    for (reduction, name) in [(Reduction::Mean, "mean"), (Reduction::Sum, "sum")] {
        let mut ce = SoftmaxCrossEntropy::new().with_reduction(reduction);
        for (case, loss) in [
            (
                "ce_labels",
                ce.forward(logits.view(), labels.view()).unwrap(),
            ),
            (
                "ce_probabilities",
                ce.forward(logits.view(), probabilities.view()).unwrap(),
            ),
        ] {
            let c = format!("{case}.{name}");
            if case == "ce_labels" {
                // The gradient of the labels' call, before the second forward overwrote it.
                let mut again = SoftmaxCrossEntropy::new().with_reduction(reduction);
                again.forward(logits.view(), labels.view()).unwrap();
                let grad = again.backward().unwrap();
                for (g, w) in grad.iter().zip(&table[&format!("{c}/grad")]) {
                    close(*g, *w);
                }
                close(
                    again.loss(logits.view(), labels.view()).unwrap(),
                    table[&format!("{c}/loss")][[0]],
                );
            } else {
                for (g, w) in ce
                    .backward()
                    .unwrap()
                    .iter()
                    .zip(&table[&format!("{c}/grad")])
                {
                    close(*g, *w);
                }
            }
            close(loss, table[&format!("{c}/loss")][[0]]);
        }
        let mut mse = Mse::new().with_reduction(reduction);
        let loss = mse.forward(prediction.view(), target.view()).unwrap();
        close(loss, table[&format!("mse.{name}/loss")][[0]]);
        close(mse.loss(prediction.view(), target.view()).unwrap(), loss);
        for (g, w) in mse
            .backward()
            .unwrap()
            .iter()
            .zip(&table[&format!("mse.{name}/grad")])
        {
            close(*g, *w);
        }
    }
}

/// With `Sum`, the gradients of per-sample calls add up to the gradient of
/// one call over the whole batch (upstream's per-sample port, issue 29).
#[test]
fn summed_per_sample_gradients_are_the_batch_gradient() {
    let prediction = Array2::from_shape_fn((4, 3), |(i, j)| (i * 3 + j) as f64 * 0.25 - 1.0);
    let target = Array2::from_shape_fn((4, 3), |(i, j)| ((i + j) % 2) as f64);
    let mut whole = Mse::new().with_reduction(Reduction::Sum);
    whole.forward(prediction.view(), target.view()).unwrap();
    let mut one = Mse::new().with_reduction(Reduction::Sum);
    let mut summed = Array2::<f64>::zeros((4, 3));
    for i in 0..4 {
        let (p, t) = (
            prediction.slice(ndlayers::ndarray::s![i..=i, ..]),
            target.slice(ndlayers::ndarray::s![i..=i, ..]),
        );
        one.forward(p, t).unwrap();
        summed.row_mut(i).assign(&one.backward().unwrap().row(0));
    }
    assert_eq!(summed, whole.backward().unwrap());
}

/// Class weights and label smoothing against PyTorch's `cross_entropy(...,
/// weight=, label_smoothing=)`, with class indices and with probabilities,
/// each reduction: loss (from `forward` and from `loss`) and gradient.
#[test]
fn class_weights_and_label_smoothing_match_pytorch() {
    let table = reference();
    let logits = matrix(&table, "inputs/logits");
    let labels: Array1<usize> = table["inputs/labels"].iter().map(|&l| l as usize).collect();
    let probabilities = matrix(&table, "inputs/probabilities");
    let weight: Array1<f64> = table["inputs/weight"].iter().copied().collect();
    for (reduction, name) in [(Reduction::Mean, "mean"), (Reduction::Sum, "sum")] {
        for (case, w, smoothing) in [
            ("weighted", Some(&weight), 0.0),
            ("smoothed", None, 0.1),
            ("weighted_smoothed", Some(&weight), 0.3),
        ] {
            let mut ce = SoftmaxCrossEntropy::new()
                .with_reduction(reduction)
                .with_label_smoothing(smoothing)
                .unwrap();
            if let Some(w) = w {
                ce = ce.with_weight(w.clone()).unwrap();
            }
            for target in ["labels", "probabilities"] {
                let c = format!("ce_{target}_{case}.{name}");
                let (loss, again) = if target == "labels" {
                    let loss = ce.forward(logits.view(), labels.view()).unwrap();
                    (loss, ce.loss(logits.view(), labels.view()).unwrap())
                } else {
                    let loss = ce.forward(logits.view(), probabilities.view()).unwrap();
                    (loss, ce.loss(logits.view(), probabilities.view()).unwrap())
                };
                close(loss, table[&format!("{c}/loss")][[0]]);
                assert_eq!(loss, again, "{c}: forward and loss agree");
                for (g, w) in ce
                    .backward()
                    .unwrap()
                    .iter()
                    .zip(&table[&format!("{c}/grad")])
                {
                    close(*g, *w);
                }
            }
        }
    }
}

#[test]
fn class_weights_and_smoothing_are_checked() {
    let err = SoftmaxCrossEntropy::<f64>::new()
        .with_weight(ndlayers::ndarray::array![1.0, -1.0])
        .unwrap_err();
    assert!(err.to_string().contains("weight"), "{err}");
    assert!(
        SoftmaxCrossEntropy::<f64>::new()
            .with_label_smoothing(1.5)
            .is_err()
    );
    let mut ce = SoftmaxCrossEntropy::<f64>::new()
        .with_weight(ndlayers::ndarray::array![1.0, 2.0])
        .unwrap();
    let logits = Array2::<f64>::zeros((2, 3));
    let err = ce
        .forward(logits.view(), ndlayers::ndarray::array![0usize, 1].view())
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "SoftmaxCrossEntropy: weight has shape [2], expected [3]: one weight per class (column of the logits)"
    );
    // A weight array with a negative stride is read in its logical order.
    let mut reversed = ndlayers::ndarray::array![3.0, 2.0, 1.0];
    reversed.invert_axis(ndlayers::ndarray::Axis(0));
    let mut a = SoftmaxCrossEntropy::new().with_weight(reversed).unwrap();
    let mut b = SoftmaxCrossEntropy::new()
        .with_weight(ndlayers::ndarray::array![1.0, 2.0, 3.0])
        .unwrap();
    let labels = ndlayers::ndarray::array![2usize, 0];
    let logits = ndlayers::ndarray::array![[0.5, -1.0, 2.0], [1.0, 0.0, 0.0]];
    assert_eq!(
        a.forward(logits.view(), labels.view()).unwrap(),
        b.forward(logits.view(), labels.view()).unwrap()
    );
}

#[test]
fn transposed_logits_with_probability_targets_blame_the_logits() {
    // Friction 5 of the port: (10, 250) logits against (250, 10) one-hot
    // targets were blamed on the targets.
    let logits = Array2::<f64>::zeros((10, 250));
    let targets = Array2::<f64>::zeros((250, 10));
    let err = SoftmaxCrossEntropy::new()
        .forward(logits.view(), targets.view())
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "SoftmaxCrossEntropy: logits has shape [10, 250], expected (250, 10): one row per row of the targets (is it transposed?)"
    );
}
