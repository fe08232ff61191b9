//! Gradient accumulation (issue 29): k backwards summed equal one backward
//! over the k batches concatenated; the per-sample port that lost all but
//! the last sample's gradient; errors.

use ndlayers::ndarray::{Array1, Array2, Array4, Axis, array, s};
use ndlayers::optim::GradAccumulator;
use ndlayers::prelude::*;
use ndlayers::state::named_parameters;
use rand::{Rng, SeedableRng, rngs::StdRng};

fn mlp(seed: u64) -> Sequential<f64> {
    let mut rng = StdRng::seed_from_u64(seed);
    Sequential::new()
        .with(Dense::new(5, 7, Init::HeUniform, &mut rng).unwrap())
        .with(Tanh::new())
        .with(Dense::new(7, 3, Init::GlorotUniform, &mut rng).unwrap())
}

#[track_caller]
fn assert_close(a: &[(String, Vec<f64>)], b: &[(String, Vec<f64>)]) {
    assert_eq!(a.len(), b.len());
    for ((name, a), (_, b)) in a.iter().zip(b) {
        for (x, y) in a.iter().zip(b) {
            assert!(
                (x - y).abs() <= 1e-13 * y.abs().max(1.0),
                "{name}: {x} against {y}"
            );
        }
    }
}

#[test]
fn k_backwards_summed_equal_one_over_the_concatenated_batch() {
    let mut rng = StdRng::seed_from_u64(3);
    let x = Array2::from_shape_fn((12, 5), |_| rng.random_range(-2.0..2.0));
    let labels: Array1<usize> = (0..12).map(|i| (i * 7) % 3).collect();
    for (reduction, mean) in [(Reduction::Sum, false), (Reduction::Mean, true)] {
        let mut ce = SoftmaxCrossEntropy::new().with_reduction(reduction);
        let mut whole = mlp(1);
        let logits = whole.forward(x.view()).unwrap();
        ce.forward(logits.view(), labels.view()).unwrap();
        whole.backward(ce.backward_view().unwrap()).unwrap();
        let want = gradients_of(&whole);

        let mut net = mlp(1);
        let mut sum = GradAccumulator::new();
        for k in 0..3 {
            let rows = s![4 * k..4 * k + 4, ..];
            let logits = net.forward(x.slice(rows)).unwrap();
            ce.forward(logits.view(), labels.slice(s![4 * k..4 * k + 4]))
                .unwrap();
            net.backward(ce.backward_view().unwrap()).unwrap();
            sum.add(&net).unwrap();
        }
        assert_eq!(sum.count(), 3);
        if mean {
            sum.store_mean(&mut net).unwrap();
        } else {
            sum.store_sum(&mut net).unwrap();
        }
        assert_close(&gradients_of(&net), &want);
    }
}

#[test]
fn accumulation_works_for_convolutions_too() {
    let mut rng = StdRng::seed_from_u64(8);
    let make = |rng: &mut StdRng| {
        Sequential::new()
            .with(Conv2d::new(2, 3, (3, 3), Init::HeUniform, rng).unwrap())
            .with(Relu::new())
            .with(Flatten::new())
            .with(Dense::new(3 * 4 * 4, 2, Init::GlorotUniform, rng).unwrap())
    };
    let mut whole = make(&mut StdRng::seed_from_u64(1));
    let mut net = make(&mut StdRng::seed_from_u64(1));
    let x = Array4::from_shape_fn((6, 2, 6, 6), |_| rng.random_range(-1.0..1.0));
    let y = Array2::from_shape_fn((6, 2), |_| rng.random_range(-1.0..1.0));
    let mut mse = Mse::new().with_reduction(Reduction::Sum);
    let out = whole.forward(x.view()).unwrap();
    mse.forward(out.view(), y.view()).unwrap();
    whole.backward(mse.backward_view().unwrap()).unwrap();
    let mut sum = GradAccumulator::new();
    for k in 0..2 {
        let out = net
            .forward(x.slice(s![3 * k..3 * k + 3, .., .., ..]))
            .unwrap();
        mse.forward(out.view(), y.slice(s![3 * k..3 * k + 3, ..]))
            .unwrap();
        net.backward(mse.backward_view().unwrap()).unwrap();
        sum.add(&net).unwrap();
    }
    sum.store_sum(&mut net).unwrap();
    assert_close(&gradients_of(&net), &gradients_of(&whole));
}

fn gradients_of<D: ndlayers::ndarray::Dimension, E: ndlayers::ndarray::Dimension>(
    net: &Sequential<f64, D, E>,
) -> Vec<(String, Vec<f64>)> {
    let mut grads = Vec::new();
    net.visit_state(&ndlayers::state::Name::ROOT, &mut |name, entry| {
        if let ndlayers::state::Entry::Parameter { grad, .. } = entry {
            grads.push((name.to_string(), grad.iter().copied().collect()));
        }
    });
    grads
}

#[test]
fn a_per_sample_loop_keeps_every_sample() {
    // Friction 1 of the port of lumi-a/rust-multilayer-perceptron: upstream
    // sums per-sample gradients and steps once; a literal port kept only the
    // last sample's ([[0], [1]] where [[1], [1]] is right).
    let mut dense = Dense::<f64>::from_fn(2, 1, |_, _| 0.0).unwrap();
    let mut sum = GradAccumulator::new();
    for sample in [array![[1.0, 0.0]], array![[0.0, 1.0]]] {
        dense.forward(sample.view()).unwrap();
        dense.backward(array![[1.0]].view()).unwrap();
        sum.add(&dense).unwrap();
    }
    assert_eq!(
        dense.grad_weight(),
        array![[0.0], [1.0]],
        "backward overwrites"
    );
    sum.store_sum(&mut dense).unwrap();
    assert_eq!(dense.grad_weight(), array![[1.0], [1.0]]);
    assert_eq!(dense.grad_bias(), array![2.0]);
    // clear starts the next total.
    sum.clear();
    assert_eq!(sum.count(), 0);
    dense.forward(array![[3.0, 0.0]].view()).unwrap();
    dense.backward(array![[1.0]].view()).unwrap();
    sum.add(&dense).unwrap();
    sum.store_mean(&mut dense).unwrap();
    assert_eq!(dense.grad_weight(), array![[3.0], [0.0]]);
}

#[test]
fn misuse_is_an_error_that_changes_nothing() {
    let mut net = mlp(1);
    let mut sum = GradAccumulator::<f64>::new();
    let err = sum.store_sum(&mut net).unwrap_err();
    assert!(err.to_string().contains("nothing was ever added"), "{err}");
    let x = Array2::from_elem((2, 5), 0.5);
    let out = net.forward(x.view()).unwrap();
    net.backward(out.view()).unwrap();
    sum.add(&net).unwrap();
    sum.clear();
    let err = sum.store_mean(&mut net).unwrap_err();
    assert!(err.to_string().contains("a mean of no gradients"), "{err}");

    // Another network: refused, by name and shape, and nothing changes.
    sum.add(&net).unwrap();
    let mut other = Sequential::new()
        .with(Dense::<f64>::from_fn(5, 4, |_, _| 0.1).unwrap())
        .with(Tanh::new())
        .with(Dense::<f64>::from_fn(4, 3, |_, _| 0.1).unwrap());
    let before = named_parameters(&other);
    let err = sum.add(&other).unwrap_err();
    assert!(
        err.to_string().contains("shape [4, 5]") || err.to_string().contains("[7, 5]"),
        "{err}"
    );
    assert_eq!(sum.count(), 1, "a refused add counts nothing");
    assert!(sum.store_sum(&mut other).is_err());
    assert_eq!(named_parameters(&other), before);
    let sums: Vec<_> = sum
        .sums()
        .map(|(n, s)| (n.to_string(), s.len_of(Axis(0))))
        .collect();
    assert_eq!(sums[0], ("0.weight".to_string(), 7));
}
