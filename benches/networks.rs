//! One SGD training step (forward, softmax cross-entropy, backward, update)
//! of `Linear → ReLU → Linear` on the three network sizes of the README's
//! performance table, `f32`, through the allocation-free API. Throughput is
//! in samples per second; `benches/peers/training_step.py` times the same
//! networks in JAX, PyTorch and numpy.
//!
//! The `dense_products` group times `Dense`'s three products on their own
//! (forward with bias, input gradient, weight and bias gradients) at batch 1,
//! 32 and 256 and square widths 64 to 4096, against ndarray's
//! `general_mat_mul` (the `matrixmultiply` crate) on the same shapes;
//! throughput is in multiply-adds plus adds, i.e. "Gelem/s" reads GFLOP/s.
//!
//! `taskset -c 0 cargo bench --bench networks -- --noplot` (one core); with
//! `--no-default-features` the products stop at gemm's AVX2 kernels.

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use ndlayers::ndarray::linalg::general_mat_mul;
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

/// Batches and square widths of the product benchmark.
const PRODUCT_BATCHES: [usize; 3] = [1, 32, 256];
const PRODUCT_WIDTHS: [usize; 4] = [64, 512, 1024, 4096];

/// A `width x width` layer after a forward pass, its input and a gradient.
type Operands = (Dense<f32>, Array2<f32>, Array2<f32>);

/// The operands of one product benchmark, built on first use so that
/// benchmarks left out by a filter cost nothing (and stay out of profiles).
fn operands(setup: &mut Option<Operands>, batch: usize, width: usize) -> &mut Operands {
    setup.get_or_insert_with(|| {
        let mut rng = StdRng::seed_from_u64(1);
        let mut dense = Dense::<f32>::new(width, width, Init::HeUniform, &mut rng).expect("layer");
        let x = Array2::from_shape_fn((batch, width), |(i, j)| {
            ((i * 7 + j * 3) % 17) as f32 / 16.0
        });
        dense.forward_view(x.view()).expect("forward");
        let g = x.mapv(|v| v - 0.5);
        (dense, x, g)
    })
}

fn dense_products(c: &mut Criterion) {
    let mut group = c.benchmark_group("dense_products");
    // 60 cases: fewer, shorter samples than criterion's default keep the
    // group to a few minutes.
    group.sample_size(30);
    group.warm_up_time(std::time::Duration::from_millis(500));
    group.measurement_time(std::time::Duration::from_secs(2));
    for width in PRODUCT_WIDTHS {
        for batch in PRODUCT_BATCHES {
            let mut setup = None;
            let flops = 2 * (batch * width * width) as u64;
            group.throughput(Throughput::Elements(flops));
            let shape = format!("{batch}x{width}x{width}");
            group.bench_function(format!("forward/{shape}"), |b| {
                let (dense, x, _) = operands(&mut setup, batch, width);
                b.iter(|| {
                    black_box(dense.forward_view(black_box(x.view())).expect("forward")[[0, 0]])
                })
            });
            group.bench_function(format!("matrixmultiply_forward/{shape}"), |b| {
                let (dense, x, _) = operands(&mut setup, batch, width);
                let w = dense.weight().to_owned();
                let mut y = Array2::zeros((batch, width));
                b.iter(|| {
                    general_mat_mul(1.0, &black_box(x.view()), &w, 0.0, &mut y);
                    black_box(y[[0, 0]])
                })
            });
            group.bench_function(format!("parameter_gradients/{shape}"), |b| {
                let (dense, _, g) = operands(&mut setup, batch, width);
                b.iter(|| {
                    dense
                        .backward_parameters(black_box(g.view()))
                        .expect("backward")
                })
            });
            group.bench_function(format!("matrixmultiply_parameter_gradients/{shape}"), |b| {
                let (_, x, g) = operands(&mut setup, batch, width);
                let mut dw = Array2::zeros((width, width));
                b.iter(|| {
                    general_mat_mul(1.0, &black_box(x.t()), &*g, 0.0, &mut dw);
                    black_box(dw[[0, 0]])
                })
            });
            // Both backward products: parameter gradients and dL/dx.
            group.throughput(Throughput::Elements(2 * flops));
            group.bench_function(format!("backward/{shape}"), |b| {
                let (dense, _, g) = operands(&mut setup, batch, width);
                b.iter(|| {
                    black_box(dense.backward_view(black_box(g.view())).expect("backward")[[0, 0]])
                })
            });
        }
    }
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().without_plots();
    targets = training_step, dense_products
}
criterion_main!(benches);
