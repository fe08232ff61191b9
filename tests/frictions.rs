//! The six frictions of porting `lumi-a/rust-multilayer-perceptron` onto
//! ndlayers (issue 29), each shown fixed. The first is tested at length in
//! `accumulate.rs`, the second in `reductions.rs`, the fifth's transposed
//! logits in `reductions.rs` and its metrics in `metrics.rs`.

use ndlayers::metrics::{accuracy, argmax_rows};
use ndlayers::ndarray::{Array2, array};
use ndlayers::optim::lr_scheduler::{ExponentialLR, LrScheduler};
use ndlayers::optim::{GradAccumulator, Sgd};
use ndlayers::prelude::*;
use rand::{Rng, SeedableRng, rngs::StdRng};

#[test]
fn one_gradient_per_sample_summed_then_one_step() {
    // 1. Upstream sums per-sample gradients and steps once per batch.
    let mut net = Dense::<f64>::from_fn(2, 1, |_, _| 0.0).unwrap();
    let mut total = GradAccumulator::new();
    for sample in [array![[1.0, 0.0]], array![[0.0, 1.0]]] {
        net.forward(sample.view()).unwrap();
        net.backward(array![[1.0]].view()).unwrap();
        total.add(&net).unwrap();
    }
    total.store_sum(&mut net).unwrap();
    assert_eq!(net.grad_weight(), array![[1.0], [1.0]]);
}

#[test]
fn squared_error_summed_as_upstream() {
    // 2. Upstream's gradient is 2 (p - t) per output, not divided by their count.
    let mut mse = Mse::new().with_reduction(Reduction::Sum);
    mse.forward(
        array![[1.0, 2.0, 3.0]].view(),
        array![[0.0, 0.0, 0.0]].view(),
    )
    .unwrap();
    assert_eq!(mse.backward().unwrap(), array![[2.0, 4.0, 6.0]]);
}

#[test]
fn one_sample_as_a_one_dimensional_array() {
    // 3. A sample is a row; infer_one takes it without the batch axis.
    let mut rng = StdRng::seed_from_u64(0);
    let net = Sequential::new()
        .with(Dense::<f32>::new(3, 4, Init::GlorotUniform, &mut rng).unwrap())
        .with(Tanh::new())
        .with(Dense::new(4, 2, Init::GlorotUniform, &mut rng).unwrap());
    let sample = array![0.5f32, -1.0, 2.0];
    let one = net.infer_one(sample.view()).unwrap();
    let batch = net
        .infer(sample.view().insert_axis(ndlayers::ndarray::Axis(0)))
        .unwrap();
    assert_eq!(one.shape(), [2]);
    assert_eq!(one, batch.row(0));
}

#[test]
fn initialisation_in_the_network_float_and_biases_reachable() {
    // 4. Scales in f32; a bias initialiser; a Dense inside a Sequential
    // reachable as a Dense; one's own weights drawn without rand_distr.
    let mut rng = StdRng::seed_from_u64(1);
    let a: f32 = 0.3;
    let dense = Dense::<f32>::new(3, 2, Init::uniform(a), &mut rng)
        .unwrap()
        .with_bias_init(Init::normal(0.1f32), &mut rng)
        .unwrap();
    assert!(dense.weight().iter().all(|w| w.abs() <= a));
    assert!(dense.bias().iter().all(|&b| b != 0.0));
    let mut net = Sequential::new().with(dense).with(Tanh::new());
    let inner: &mut Dense<f32> = net.layer_mut(0).unwrap();
    inner.set_bias(array![0.5, -0.5].view()).unwrap();
    assert_eq!(
        net.layer::<Dense<f32>>(0).unwrap().bias(),
        array![0.5, -0.5]
    );
    let own = Dense::<f32>::from_fn(3, 2, |_, _| rng.random_range(-0.1..0.1)).unwrap();
    assert!(own.weight().iter().all(|w| w.abs() < 0.1));
}

#[test]
fn argmax_accuracy_and_transposed_logits() {
    // 5. argmax and accuracy are the crate's; (classes, batch) logits are blamed.
    let logits = array![[0.1, 0.9], [0.8, 0.2], [0.3, 0.7]];
    let predicted = argmax_rows(logits.view()).unwrap();
    assert_eq!(predicted, array![1, 0, 1]);
    assert_eq!(
        accuracy(predicted.view(), array![1, 0, 0].view()).unwrap(),
        2.0 / 3.0
    );
    let one_hot = Array2::<f64>::eye(3).slice_move(ndlayers::ndarray::s![.., ..2]);
    let err = SoftmaxCrossEntropy::new()
        .forward(logits.t(), one_hot.view())
        .unwrap_err();
    assert!(err.to_string().contains("logits has shape [2, 3]"), "{err}");
}

#[test]
fn an_optimizer_whose_rate_a_schedule_sets() {
    // 6. No step size at construction when a schedule sets it every epoch.
    let mut sgd = Sgd::<f32>::default().with_momentum(0.9).unwrap();
    sgd.set_learning_rate(0.2).unwrap();
    let mut schedule = ExponentialLR::new(&mut sgd, 0.5).unwrap();
    schedule.step(&mut sgd).unwrap();
    assert_eq!(sgd.learning_rate(), 0.1);
}
