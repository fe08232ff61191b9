//! One full training step of the digits MLP (64-128-10, ReLU, batch 64, f32):
//! forward, fused softmax cross-entropy, backward, SGD with momentum.
//!
//! `cargo bench --bench training_step`

#[path = "../examples/support/mod.rs"]
mod support;

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use ndlayers::prelude::*;
use support::{DIGITS_PATH, Mlp, load_digits};

const BATCH: usize = 64;

fn training_step(c: &mut Criterion) {
    let data = load_digits(DIGITS_PATH).expect("digits data set");
    let batch = data.select(&(0..BATCH).collect::<Vec<_>>());
    let mut model = Mlp::new(128, 0).expect("model");
    let mut sgd = Sgd::new(0.01)
        .and_then(|s| s.with_momentum(0.9))
        .expect("optimiser");

    let mut group = c.benchmark_group("mlp_64_128_10");
    group.throughput(Throughput::Elements(BATCH as u64));
    group.bench_function("train_step_batch64_f32", |b| {
        b.iter(|| {
            let loss = model
                .train_step(
                    black_box(batch.features.view()),
                    batch.labels.view(),
                    &mut sgd,
                )
                .expect("step");
            black_box(loss)
        })
    });
    group.finish();
}

// No HTML plots: the examples' plotters build (embedded font, no system fonts)
// leaves criterion's plotters backend without a font to draw with.
criterion_group! {
    name = benches;
    config = Criterion::default().without_plots();
    targets = training_step
}
criterion_main!(benches);
