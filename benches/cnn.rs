//! The CNN layers on the shapes of issue 28, `f32`, forward and backward
//! through the allocation-free API; `benches/peers/cnn.py` times the same
//! cases in PyTorch (eager, its oneDNN/native kernels) and JAX (`jit`).
//!
//! - `lenet5_step_batch64`: LeNet-5 on 28x28 images (Conv 1→6 5x5, ReLU,
//!   max-pool 2, Conv 6→16 5x5, ReLU, max-pool 2, 256-120-84-10), a whole
//!   SGD training step with softmax cross-entropy;
//! - `conv3x3_64to64_32x32_batch32`: forward and backward (input and weight
//!   gradients) of a 3x3 convolution 64→64, padding 1;
//! - `depthwise3x3_64ch_56x56_batch8`: the same for a depthwise 3x3, padding 1;
//! - `batchnorm2d_32x64x32x32`, `maxpool2x2_32x64x32x32`: forward and backward.
//!
//! `taskset -c 0 cargo bench --bench cnn -- --noplot` (one core); with the
//! `rayon` feature, `cargo bench --features rayon --bench cnn` uses both.

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use ndlayers::ndarray::{Array1, Array4, Ix2, Ix4};
use ndlayers::prelude::*;
use ndlayers::rand::SeedableRng;
use ndlayers::rand::rngs::StdRng;

fn images(shape: (usize, usize, usize, usize)) -> Array4<f32> {
    Array4::from_shape_fn(shape, |(n, c, i, j)| {
        ((n * 7 + c * 5 + i * 3 + j) % 17) as f32 / 8.0 - 1.0
    })
}

/// Forward then backward of `layer` on `x`, upstream gradient of ones.
fn forward_backward<E: ndlayers::ndarray::Dimension>(
    c: &mut Criterion,
    name: &str,
    layer: &mut impl Layer<f32, Ix4, E>,
    x: &Array4<f32>,
) {
    let g = layer.forward(x.view()).expect("forward").mapv(|_| 1.0_f32);
    c.bench_function(name, |b| {
        b.iter(|| {
            layer.forward_view(black_box(x.view())).expect("forward");
            black_box(layer.backward_view(g.view()).expect("backward").len())
        })
    });
}

fn layers(c: &mut Criterion) {
    let mut rng = StdRng::seed_from_u64(0);
    let mut conv = Conv2d::<f32>::new(64, 64, (3, 3), Init::FanInUniform, &mut rng)
        .and_then(|l| l.with_padding((1, 1)))
        .expect("conv");
    forward_backward(
        c,
        "conv3x3_64to64_32x32_batch32",
        &mut conv,
        &images((32, 64, 32, 32)),
    );
    let mut depthwise = Conv2d::<f32>::new(64, 64, (3, 3), Init::FanInUniform, &mut rng)
        .and_then(|l| l.with_padding((1, 1)))
        .and_then(|l| l.with_groups(64))
        .expect("depthwise");
    forward_backward(
        c,
        "depthwise3x3_64ch_56x56_batch8",
        &mut depthwise,
        &images((8, 64, 56, 56)),
    );
    let x = images((32, 64, 32, 32));
    forward_backward(
        c,
        "batchnorm2d_32x64x32x32",
        &mut BatchNorm2d::<f32>::new(64).expect("bn"),
        &x,
    );
    forward_backward(
        c,
        "maxpool2x2_32x64x32x32",
        &mut MaxPool2d::<f32>::new((2, 2)).expect("pool"),
        &x,
    );
}

fn lenet5(c: &mut Criterion) {
    let mut rng = StdRng::seed_from_u64(0);
    let mut net: Sequential<f32, Ix4, Ix2> = Sequential::new()
        .with(Conv2d::new(1, 6, (5, 5), Init::FanInUniform, &mut rng).expect("conv"))
        .with(Relu::new())
        .with(MaxPool2d::new((2, 2)).expect("pool"))
        .with(Conv2d::new(6, 16, (5, 5), Init::FanInUniform, &mut rng).expect("conv"))
        .with(Relu::new())
        .with(MaxPool2d::new((2, 2)).expect("pool"))
        .with(Flatten::new())
        .with(Dense::new(256, 120, Init::FanInUniform, &mut rng).expect("dense"))
        .with(Relu::new())
        .with(Dense::new(120, 84, Init::FanInUniform, &mut rng).expect("dense"))
        .with(Relu::new())
        .with(Dense::new(84, 10, Init::FanInUniform, &mut rng).expect("dense"));
    let x = images((64, 1, 28, 28));
    let labels = Array1::from_shape_fn(64, |i| (i % 10) as u8);
    let mut loss = SoftmaxCrossEntropy::new();
    let mut sgd = Sgd::new(0.01).expect("optimiser");
    c.bench_function("lenet5_step_batch64", |b| {
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

criterion_group!(benches, lenet5, layers);
criterion_main!(benches);
