//! Every activation, forward and backward, `f32`, single thread, against the
//! naive hand-written `ndarray` version and the memory-copy floor.
//!
//! `cargo bench --bench activations` (about 4 minutes); `python3 benches/table.py`
//! then prints the README's table from criterion's results.
//!
//! In each group:
//! - `ndlayers_view`: the allocation-free path (`forward_view` / `backward_view`),
//! - `ndlayers_owned`: `Layer::forward` / `Layer::backward`, which return new arrays,
//! - `naive`: `mapv` with `f32::exp`/`tanh`, `Zip` for backward, a per-row loop for softmax,
//! - `memory_floor`: `assign` of the input into a preallocated output (forward),
//!   or a preallocated `Zip` of two inputs into one output (backward);
//!   inputs and floor outputs are in huge pages, as the layers' buffers are,
//! - `owned_floor` (forward of the layers that cache an array: sigmoid, tanh,
//!   softmax; not ReLU, which caches bits): one pass that copies the input
//!   into a fresh array and a preallocated cache, the memory traffic that an
//!   owned forward keeping its output for backward cannot avoid (three
//!   streams to the floor's two).
//!
//! Throughput is in bytes moved: 8 per element forward (read + write), 12 backward.

use std::hint::black_box;
use std::time::Duration;

use criterion::{
    BenchmarkGroup, Criterion, Throughput, criterion_group, criterion_main, measurement::WallTime,
};
use ndlayers::ndarray::{Array2, Zip};
use ndlayers::prelude::*;
use ndlayers::{Elementwise, ElementwiseKernel};

const ELEMENTWISE_SHAPES: [(usize, usize); 2] = [(256, 4096), (4096, 4096)];
const SOFTMAX_SHAPES: [(usize, usize); 3] = [(65536, 10), (4096, 1000), (256, 32768)];

/// Uniform in [-8, 8): the top 24 bits of a multiplicative hash of the
/// element's row-major index and the seed, so that `benches/peers/activations.py`
/// can compute the same inputs. In huge pages from 4 MiB (`ndlayers::zeros`),
/// as numpy allocates the peers' inputs.
fn inputs(shape: (usize, usize), seed: u64) -> Array2<f32> {
    const GOLDEN: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut x = ndlayers::zeros(shape);
    for (i, v) in (0u64..).zip(x.iter_mut()) {
        let mut h = seed
            .wrapping_mul(GOLDEN)
            .wrapping_add(i)
            .wrapping_mul(GOLDEN);
        h ^= h >> 29;
        h = h.wrapping_mul(0xBF58_476D_1CE4_E5B9);
        *v = ((h >> 40) as f64 / f64::from(1u32 << 24) * 16.0 - 8.0) as f32;
    }
    x
}

fn group<'a>(
    c: &'a mut Criterion,
    name: &str,
    shape: (usize, usize),
    bytes_per_element: u64,
) -> BenchmarkGroup<'a, WallTime> {
    let mut group = c.benchmark_group(format!("{name}/{}x{}", shape.0, shape.1));
    group.throughput(Throughput::Bytes(
        bytes_per_element * (shape.0 * shape.1) as u64,
    ));
    group.sample_size(10);
    group.warm_up_time(Duration::from_millis(500));
    group.measurement_time(Duration::from_secs(2));
    group
}

fn memory_floor_forward(group: &mut BenchmarkGroup<'_, WallTime>, x: &Array2<f32>) {
    let mut out = ndlayers::zeros(x.dim());
    group.bench_function("memory_floor", |b| b.iter(|| out.assign(black_box(x))));
}

fn owned_floor_forward(group: &mut BenchmarkGroup<'_, WallTime>, x: &Array2<f32>) {
    let mut cache = ndlayers::zeros(x.dim());
    group.bench_function("owned_floor", |b| {
        b.iter(|| {
            let mut fresh = ndlayers::uninit(x.dim());
            Zip::from(&mut fresh)
                .and(&mut cache)
                .and(black_box(x))
                .for_each(|fresh, cache, &x| {
                    fresh.write(x);
                    *cache = x;
                });
            // SAFETY: the `Zip` wrote every element.
            unsafe { fresh.assume_init() }
        })
    });
}

fn memory_floor_backward(
    group: &mut BenchmarkGroup<'_, WallTime>,
    a: &Array2<f32>,
    g: &Array2<f32>,
) {
    let mut out = ndlayers::zeros(a.dim());
    group.bench_function("memory_floor", |b| {
        b.iter(|| {
            Zip::from(&mut out)
                .and(black_box(a))
                .and(black_box(g))
                .for_each(|o, &a, &g| *o = a * g)
        })
    });
}

/// Benches one elementwise activation given its naive value and naive derivative-from-output.
fn elementwise<A: ElementwiseKernel<f32> + Default>(
    c: &mut Criterion,
    name: &str,
    naive_value: fn(f32) -> f32,
    naive_derivative: fn(f32) -> f32,
) {
    for shape in ELEMENTWISE_SHAPES {
        let x = inputs(shape, 1);
        let g = inputs(shape, 2);
        let mut layer = Elementwise::<A, f32, _>::new();

        let mut fwd = group(c, &format!("{name}_forward"), shape, 8);
        fwd.bench_function("ndlayers_view", |b| {
            b.iter(|| black_box(layer.forward_view(x.view()).map(|y| y[[0, 0]])))
        });
        fwd.bench_function("ndlayers_owned", |b| b.iter(|| layer.forward(x.view())));
        fwd.bench_function("naive", |b| b.iter(|| x.mapv(naive_value)));
        memory_floor_forward(&mut fwd, &x);
        if !A::STEP {
            owned_floor_forward(&mut fwd, &x);
        }
        fwd.finish();

        let y = layer.forward(x.view()).expect("forward");
        let mut bwd = group(c, &format!("{name}_backward"), shape, 12);
        bwd.bench_function("ndlayers_view", |b| {
            b.iter(|| black_box(layer.backward_view(g.view()).map(|d| d[[0, 0]])))
        });
        bwd.bench_function("ndlayers_owned", |b| b.iter(|| layer.backward(g.view())));
        bwd.bench_function("naive", |b| {
            b.iter(|| {
                Zip::from(&y)
                    .and(&g)
                    .map_collect(|&y, &g| g * naive_derivative(y))
            })
        });
        memory_floor_backward(&mut bwd, &y, &g);
        bwd.finish();
    }
}

fn naive_softmax(x: &Array2<f32>) -> Array2<f32> {
    let mut y = Array2::zeros(x.dim());
    for (xr, mut yr) in x.rows().into_iter().zip(y.rows_mut()) {
        let max = xr.fold(f32::NEG_INFINITY, |m, &v| m.max(v));
        yr.zip_mut_with(&xr, |y, &x| *y = (x - max).exp());
        let sum = yr.sum();
        yr /= sum;
    }
    y
}

fn naive_softmax_backward(y: &Array2<f32>, g: &Array2<f32>) -> Array2<f32> {
    let mut out = Array2::zeros(y.dim());
    for ((yr, gr), mut or) in y.rows().into_iter().zip(g.rows()).zip(out.rows_mut()) {
        let dot = yr.dot(&gr);
        Zip::from(&mut or)
            .and(&yr)
            .and(&gr)
            .for_each(|o, &y, &g| *o = y * (g - dot));
    }
    out
}

fn softmax(c: &mut Criterion) {
    for shape in SOFTMAX_SHAPES {
        let x = inputs(shape, 3);
        let g = inputs(shape, 4);
        let mut layer = Softmax::new();

        let mut fwd = group(c, "softmax_forward", shape, 8);
        fwd.bench_function("ndlayers_view", |b| {
            b.iter(|| black_box(layer.forward_view(x.view()).map(|y| y[[0, 0]])))
        });
        fwd.bench_function("ndlayers_owned", |b| b.iter(|| layer.forward(x.view())));
        fwd.bench_function("naive", |b| b.iter(|| naive_softmax(&x)));
        memory_floor_forward(&mut fwd, &x);
        owned_floor_forward(&mut fwd, &x);
        fwd.finish();

        let y = layer.forward(x.view()).expect("forward");
        let mut bwd = group(c, "softmax_backward", shape, 12);
        bwd.bench_function("ndlayers_view", |b| {
            b.iter(|| black_box(layer.backward_view(g.view()).map(|d| d[[0, 0]])))
        });
        bwd.bench_function("ndlayers_owned", |b| b.iter(|| layer.backward(g.view())));
        bwd.bench_function("naive", |b| b.iter(|| naive_softmax_backward(&y, &g)));
        memory_floor_backward(&mut bwd, &y, &g);
        bwd.finish();
    }
}

fn activations(c: &mut Criterion) {
    elementwise::<ndlayers::activation::SigmoidFn>(
        c,
        "sigmoid",
        |v| 1.0 / (1.0 + (-v).exp()),
        |y| y * (1.0 - y),
    );
    elementwise::<ndlayers::activation::TanhFn>(c, "tanh", f32::tanh, |y| 1.0 - y * y);
    elementwise::<ndlayers::activation::ReluFn>(
        c,
        "relu",
        |v| v.max(0.0),
        |y| if y > 0.0 { 1.0 } else { 0.0 },
    );
    softmax(c);
}

// No HTML plots: the examples' plotters build (embedded font, no system fonts)
// leaves criterion's plotters backend without a font to draw with.
criterion_group! {
    name = benches;
    config = Criterion::default().without_plots();
    targets = activations
}
criterion_main!(benches);
