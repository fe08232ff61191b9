//! The rest of the activation family, forward and backward through the
//! allocation-free path, `f32`, single thread, on L2-resident data (256x1024),
//! next to the memory-copy floor: `cargo bench --bench family`.

use std::hint::black_box;
use std::time::Duration;

use criterion::{
    BenchmarkGroup, Criterion, Throughput, criterion_group, criterion_main, measurement::WallTime,
};
use ndlayers::Layer;
use ndlayers::activation::{Elu, Gelu, GeluApproximation, Mish, Selu, Silu, Softplus};
use ndlayers::ndarray::{Array2, Ix2};
use ndlayers::{Elementwise, ElementwiseKernel};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

const SHAPE: (usize, usize) = (256, 1024);

fn bench<A: ElementwiseKernel<f32>>(
    c: &mut Criterion,
    name: &str,
    mut layer: Elementwise<A, f32, Ix2>,
) {
    let mut rng = StdRng::seed_from_u64(7);
    let x = Array2::from_shape_simple_fn(SHAPE, || rng.random_range(-8.0f32..8.0));
    let g = Array2::from_elem(SHAPE, 1.0f32);
    let mut group: BenchmarkGroup<'_, WallTime> = c.benchmark_group(format!("family/{name}"));
    group.throughput(Throughput::Elements((SHAPE.0 * SHAPE.1) as u64));
    group.sample_size(20);
    group.warm_up_time(Duration::from_millis(300));
    group.measurement_time(Duration::from_secs(1));
    group.bench_function("forward", |b| {
        b.iter(|| {
            layer.forward_view(black_box(x.view())).unwrap();
        })
    });
    group.bench_function("forward_owned", |b| {
        b.iter(|| layer.forward(black_box(x.view())).unwrap())
    });
    group.bench_function("backward", |b| {
        b.iter(|| {
            layer.backward_view(black_box(g.view())).unwrap();
        })
    });
    let mut out = Array2::zeros(SHAPE);
    group.bench_function("memory_floor", |b| b.iter(|| out.assign(black_box(&x))));
    group.finish();
}

fn family(c: &mut Criterion) {
    bench(c, "silu", Silu::new());
    bench(c, "mish", Mish::new());
    bench(c, "gelu", Gelu::new());
    bench(
        c,
        "gelu_tanh",
        Gelu::with_approximation(GeluApproximation::Tanh),
    );
    bench(c, "elu", Elu::new());
    bench(c, "selu", Selu::new());
    bench(c, "softplus", Softplus::new());
}

criterion_group!(benches, family);
criterion_main!(benches);
