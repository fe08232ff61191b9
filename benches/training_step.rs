//! One full training step of the digits MLP (64-128-10, ReLU, batch 64, f32):
//! forward, fused softmax cross-entropy, backward, SGD with momentum; and a
//! 512x512 `Dense` built from row-major and from column-major weights (the
//! transpose of PyTorch's `(outputs, inputs)` array), which must train at the
//! same speed.
//!
//! `cargo bench --bench training_step -- --noplot`

#[path = "../examples/support/mod.rs"]
mod support;

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use ndlayers::ndarray::{Array1, Array2};
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

/// Issue "From layers to networks", point 3: a 512x512 layer whose weights
/// arrive column-major (`w.reversed_axes()` of an `(outputs, inputs)` array)
/// against one built row-major: `Sgd::step` alone, and a whole
/// forward-backward-step at batch 64.
fn dense_layout(c: &mut Criterion) {
    const WIDTH: usize = 512;
    const BATCH: usize = 64;
    let pytorch = Array2::from_shape_fn((WIDTH, WIDTH), |(i, j)| {
        ((i * 31 + j * 17) % 97) as f32 * 1e-4
    });
    let row_major = pytorch.t().as_standard_layout().into_owned();
    let column_major = pytorch.reversed_axes();
    let x = Array2::from_shape_fn((BATCH, WIDTH), |(i, j)| ((i + j) % 13) as f32 * 0.1);
    let g = Array2::from_elem((BATCH, WIDTH), 1e-3_f32);
    let mut group = c.benchmark_group("dense_512x512_layout");
    for (name, weight) in [("row_major", row_major), ("column_major", column_major)] {
        let mut layer = Dense::from_parameters(weight, Array1::zeros(WIDTH)).expect("layer");
        let mut sgd = Sgd::new(1e-3)
            .and_then(|s| s.with_momentum(0.9))
            .expect("optimiser");
        layer.forward_view(x.view()).expect("forward");
        layer.backward_view(g.view()).expect("backward");
        group.bench_function(format!("sgd_step_{name}"), |b| {
            b.iter(|| sgd.step(&mut [&mut layer]).expect("step"))
        });
        group.bench_function(format!("forward_backward_step_batch64_{name}"), |b| {
            b.iter(|| {
                layer.forward_view(black_box(x.view())).expect("forward");
                layer.backward_view(g.view()).expect("backward");
                sgd.step(&mut [&mut layer]).expect("step");
            })
        });
    }
    group.finish();
}

// No HTML plots: the examples' plotters build (embedded font, no system fonts)
// leaves criterion's plotters backend without a font to draw with.
criterion_group! {
    name = benches;
    config = Criterion::default().without_plots();
    targets = training_step, dense_layout
}
criterion_main!(benches);
