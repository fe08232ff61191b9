//! One SGD training step (forward, softmax cross-entropy, backward, update)
//! of `Linear → ReLU → Linear` on the three network sizes of the README's
//! performance table, `f32`, through the allocation-free API. Throughput is
//! in samples per second; `benches/peers/training_step.py` times the same
//! networks in JAX, PyTorch and numpy.
//!
//! `taskset -c 0 cargo bench --bench networks -- --noplot` (one core)

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use ndlayers::ndarray::{Array1, Array2};
use ndlayers::prelude::*;
use ndlayers::rand::SeedableRng;
use ndlayers::rand::rngs::StdRng;

/// (inputs, hidden, classes, batch)
const NETWORKS: [(usize, usize, usize, usize); 3] =
    [(64, 128, 10, 64), (784, 256, 10, 128), (784, 1024, 10, 256)];

fn training_step(c: &mut Criterion) {
    let mut group = c.benchmark_group("train_step_f32");
    for (inputs, hidden, classes, batch) in NETWORKS {
        let mut rng = StdRng::seed_from_u64(0);
        let mut net = Sequential::new()
            .with(Dense::<f32>::new(inputs, hidden, Init::HeUniform, &mut rng).expect("layer"))
            .with(Relu::new())
            .with(Dense::new(hidden, classes, Init::GlorotUniform, &mut rng).expect("layer"));
        let x = Array2::from_shape_fn((batch, inputs), |(i, j)| {
            ((i * 7 + j * 3) % 17) as f32 / 16.0
        });
        let labels = Array1::from_shape_fn(batch, |i| (i % classes) as u8);
        let mut loss = SoftmaxCrossEntropy::new();
        let mut sgd = Sgd::new(0.01).expect("optimiser");
        group.throughput(Throughput::Elements(batch as u64));
        group.bench_function(format!("{inputs}-{hidden}-{classes}_batch{batch}"), |b| {
            b.iter(|| {
                let logits = net.forward_view(black_box(x.view())).expect("forward");
                let value = loss.forward(logits, labels.view()).expect("loss");
                net.backward_parameters(loss.backward_view().expect("gradient"))
                    .expect("backward");
                sgd.step(&mut [&mut net]).expect("step");
                black_box(value)
            })
        });
    }
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().without_plots();
    targets = training_step
}
criterion_main!(benches);
