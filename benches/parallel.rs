//! One thread against two, through the `rayon` feature: large arrays should
//! split across threads, small ones must not pay for it.
//!
//! `cargo bench --features rayon --bench parallel` runs both:
//! - `parallel/4096x4096/*/{1,2}_threads`: the layer inside a 1-thread and a
//!   2-thread rayon pool (`install` costs ~15 µs, negligible at this size);
//! - `small/256x10/*`: the layer called directly, as a training loop would.
//!   Run `cargo bench --bench parallel` (no feature: one thread) first, and
//!   criterion prints the change the feature makes.

use std::hint::black_box;
use std::time::Duration;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use ndlayers::ndarray::{Array2, Ix2};
use ndlayers::prelude::*;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

fn random(shape: (usize, usize), seed: u64) -> Array2<f32> {
    let mut rng = StdRng::seed_from_u64(seed);
    Array2::from_shape_simple_fn(shape, || rng.random_range(-8.0..8.0))
}

#[cfg(feature = "rayon")]
fn threads(c: &mut Criterion) {
    let pools: Vec<(usize, rayon::ThreadPool)> = [1, 2]
        .into_iter()
        .map(|n| {
            (
                n,
                rayon::ThreadPoolBuilder::new()
                    .num_threads(n)
                    .build()
                    .expect("thread pool"),
            )
        })
        .collect();
    let shape = (4096, 4096);
    let x = random(shape, 1);
    let g = random(shape, 2);
    let elements = (shape.0 * shape.1) as u64;
    let mut sigmoid = Sigmoid::<f32, Ix2>::new();
    let mut tanh = Tanh::<f32, Ix2>::new();
    let mut softmax = Softmax::<f32>::new();
    let mut group = c.benchmark_group("parallel/4096x4096");
    group.sample_size(20);
    group.warm_up_time(Duration::from_millis(500));
    group.measurement_time(Duration::from_secs(2));
    for (threads, pool) in &pools {
        group.throughput(Throughput::Bytes(8 * elements));
        group.bench_function(format!("sigmoid_forward/{threads}_threads"), |b| {
            b.iter(|| pool.install(|| black_box(sigmoid.forward_view(x.view()).map(|y| y[[0, 0]]))))
        });
        group.bench_function(format!("tanh_forward/{threads}_threads"), |b| {
            b.iter(|| pool.install(|| black_box(tanh.forward_view(x.view()).map(|y| y[[0, 0]]))))
        });
        group.bench_function(format!("softmax_forward/{threads}_threads"), |b| {
            b.iter(|| pool.install(|| black_box(softmax.forward_view(x.view()).map(|y| y[[0, 0]]))))
        });
        group.throughput(Throughput::Bytes(12 * elements));
        group.bench_function(format!("sigmoid_backward/{threads}_threads"), |b| {
            b.iter(|| {
                pool.install(|| black_box(sigmoid.backward_view(g.view()).map(|d| d[[0, 0]])))
            })
        });
        group.bench_function(format!("softmax_backward/{threads}_threads"), |b| {
            b.iter(|| {
                pool.install(|| black_box(softmax.backward_view(g.view()).map(|d| d[[0, 0]])))
            })
        });
    }
    group.finish();
}

#[cfg(not(feature = "rayon"))]
fn threads(_: &mut Criterion) {}

fn small(c: &mut Criterion) {
    let shape = (256, 10);
    let x = random(shape, 1);
    let g = random(shape, 2);
    let mut sigmoid = Sigmoid::<f32, Ix2>::new();
    let mut softmax = Softmax::<f32>::new();
    let mut group = c.benchmark_group("small/256x10");
    group.warm_up_time(Duration::from_millis(500));
    group.measurement_time(Duration::from_secs(2));
    group.throughput(Throughput::Bytes(8 * (shape.0 * shape.1) as u64));
    group.bench_function("sigmoid_forward", |b| {
        b.iter(|| black_box(sigmoid.forward_view(x.view()).map(|y| y[[0, 0]])))
    });
    group.bench_function("softmax_forward", |b| {
        b.iter(|| black_box(softmax.forward_view(x.view()).map(|y| y[[0, 0]])))
    });
    group.throughput(Throughput::Bytes(12 * (shape.0 * shape.1) as u64));
    group.bench_function("sigmoid_backward", |b| {
        b.iter(|| black_box(sigmoid.backward_view(g.view()).map(|d| d[[0, 0]])))
    });
    group.bench_function("softmax_backward", |b| {
        b.iter(|| black_box(softmax.backward_view(g.view()).map(|d| d[[0, 0]])))
    });
    group.finish();
}

// No HTML plots: the examples' plotters build (embedded font, no system fonts)
// leaves criterion's plotters backend without a font to draw with.
criterion_group! {
    name = benches;
    config = Criterion::default().without_plots();
    targets = threads, small
}
criterion_main!(benches);
