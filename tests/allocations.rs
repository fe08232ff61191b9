//! A steady-state training step allocates nothing in the activations, the
//! loss, the optimiser or a `Sequential`, proven with a counting global allocator.
//!
//! This file holds a single test, so no other test allocates concurrently.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};

use ndlayers::ndarray::{Array1, Array2, Ix2};
use ndlayers::prelu::Prelu;
use ndlayers::prelude::*;

/// Counts every allocation, then lets the system allocator do the work.
struct CountingAllocator;

static ALLOCATIONS: AtomicUsize = AtomicUsize::new(0);

// SAFETY: every method forwards to `System` with the caller's arguments
// unchanged, so `System`'s guarantees carry over; counting has no effect on memory.
unsafe impl GlobalAlloc for CountingAllocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: the caller upholds `GlobalAlloc::alloc`'s contract, which is `System.alloc`'s.
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: as for `alloc`.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: `ptr` was allocated by this allocator, i.e. by `System`, with `layout`.
        unsafe { System.realloc(ptr, layout, new_size) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` was allocated by `System` with `layout`.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: CountingAllocator = CountingAllocator;

/// The activation, loss and optimiser half of a training step, on the
/// allocation-free API. Shapes are above the parallel threshold, so with the
/// `rayon` feature this also covers the threaded path.
struct Step {
    sigmoid: Sigmoid<f32, Ix2>,
    tanh: Tanh<f32, Ix2>,
    relu: Relu<f32, Ix2>,
    softmax: Softmax<f32>,
    loss: SoftmaxCrossEntropy<f32>,
    dense: Dense<f32>,
    sgd: Sgd<f32>,
    grad_out: Array2<f32>,
}

impl Step {
    fn run(
        &mut self,
        x: &Array2<f32>,
        g: &Array2<f32>,
        labels: &Array1<usize>,
    ) -> Result<f32, LayerError> {
        let a = self.sigmoid.forward_view(x.view())?;
        let b = self.tanh.forward_view(a)?;
        let c = self.relu.forward_view(b)?;
        let p = self.softmax.forward_view(c)?;
        let loss = self.loss.forward(p, labels.view())?;
        let dp = self.loss.backward_view()?;
        let dc = self.softmax.backward_view(dp)?;
        let db = self.relu.backward_view(dc)?;
        let da = self.tanh.backward_view(db)?;
        self.sigmoid.backward_into(da, self.grad_out.view_mut())?;
        self.relu
            .backward_into(g.view(), self.grad_out.view_mut())?;
        // Only the optimiser's part of Dense: its gradients are set by hand below.
        self.sgd.step(&mut [&mut self.dense])?;
        Ok(loss)
    }
}

#[test]
fn a_steady_state_step_allocates_nothing() {
    let (batch, classes) = (512, 100);
    let x = Array2::from_shape_fn((batch, classes), |(i, j)| {
        ((i * 7 + j * 3) % 17) as f32 / 4.0 - 2.0
    });
    let g = Array2::from_elem((batch, classes), 0.5);
    let labels = Array1::from_shape_fn(batch, |i| i % classes);
    let mut step = Step {
        sigmoid: Sigmoid::new(),
        tanh: Tanh::new(),
        relu: Relu::new(),
        softmax: Softmax::new(),
        loss: SoftmaxCrossEntropy::new(),
        dense: Dense::from_parameters(Array2::ones((4, 3)), Array1::zeros(3)).unwrap(),
        sgd: Sgd::new(0.1).unwrap().with_momentum(0.9).unwrap(),
        grad_out: Array2::zeros((batch, classes)),
    };
    // The first step allocates the buffers (and the optimiser's velocities);
    // with `rayon`, the thread pool also sets itself up during the first steps.
    for _ in 0..3 {
        step.run(&x, &g, &labels).unwrap();
    }
    let before = ALLOCATIONS.load(Ordering::Relaxed);
    for _ in 0..100 {
        step.run(&x, &g, &labels).unwrap();
    }
    let allocations = ALLOCATIONS.load(Ordering::Relaxed) - before;
    println!("{allocations} allocations in 100 steady-state steps");
    #[cfg(not(feature = "rayon"))]
    assert_eq!(
        allocations, 0,
        "{allocations} allocations in 100 steady-state steps"
    );
    // rayon's global job queue allocates one block per 63 jobs sent from outside
    // its pool (measured: 17 in these 100 steps of 11 parallel calls each: the
    // loss runs two, log-softmax for its value and softmax for its gradient);
    // the layers themselves still allocate nothing.
    #[cfg(feature = "rayon")]
    assert!(
        allocations <= 100 * 11 / 63 + 2,
        "{allocations} allocations in 100 steady-state steps"
    );

    a_steady_state_sequential_step_allocates_only_in_the_matrix_products();

    // The counter really counts: the owned API allocates.
    let before = ALLOCATIONS.load(Ordering::Relaxed);
    let _ = step.sigmoid.forward(x.view()).unwrap();
    assert!(ALLOCATIONS.load(Ordering::Relaxed) > before);
}

/// Allocations made by `f`.
fn allocations_of(f: impl FnOnce()) -> usize {
    let before = ALLOCATIONS.load(Ordering::Relaxed);
    f();
    ALLOCATIONS.load(Ordering::Relaxed) - before
}

/// Allocations of one matrix product `(m, k) · (k, n)` as `Dense` makes it,
/// through the `gemm` crate with `lhs` transposed or not (`Dense`'s three
/// products: `x W`, `xᵀ g`, `g Wᵀ`). gemm allocates its packing memory on
/// every call and takes no workspace.
fn product_allocations(
    m: usize,
    k: usize,
    n: usize,
    lhs_transposed: bool,
    rhs_transposed: bool,
) -> usize {
    let a = if lhs_transposed {
        Array2::<f32>::ones((k, m)).reversed_axes()
    } else {
        Array2::<f32>::ones((m, k))
    };
    let b = if rhs_transposed {
        Array2::<f32>::ones((n, k)).reversed_axes()
    } else {
        Array2::<f32>::ones((k, n))
    };
    let mut c = Array2::<f32>::zeros((m, n));
    let mut product = || {
        let (sa, sb) = (a.strides(), b.strides());
        let sc = [c.strides()[0], c.strides()[1]];
        // SAFETY: the pointers are the first elements of arrays of shapes
        // (m, k), (k, n) and (m, n) with exactly these strides; c is a
        // separate array, so it aliases neither input.
        unsafe {
            gemm::gemm(
                m,
                n,
                k,
                c.as_mut_ptr(),
                sc[1],
                sc[0],
                false,
                a.as_ptr(),
                sa[1],
                sa[0],
                b.as_ptr(),
                sb[1],
                sb[0],
                1.0,
                1.0,
                false,
                false,
                false,
                gemm::Parallelism::None,
            )
        }
    };
    product(); // warm-up
    allocations_of(product)
}

/// A `Sequential` training step (forward, loss, backward, SGD with momentum)
/// followed by an evaluation on a smaller batch through the view path.
fn sequential_step(
    net: &mut Sequential<f32>,
    loss: &mut SoftmaxCrossEntropy<f32>,
    sgd: &mut Sgd<f32>,
    (x, labels): (&Array2<f32>, &Array1<u8>),
    eval: &Array2<f32>,
) -> Result<f32, LayerError> {
    let logits = net.forward_view(x.view())?;
    let value = loss.forward(logits, labels.view())?;
    net.backward_parameters(loss.backward_view()?)?;
    sgd.step(&mut [net])?;
    let logits = net.forward_view(eval.view())?;
    Ok(value + logits[[0, 0]])
}

fn a_steady_state_sequential_step_allocates_only_in_the_matrix_products() {
    let (batch, inputs, hidden, classes) = (64, 64, 128, 10);
    let x = Array2::from_shape_fn((batch, inputs), |(i, j)| ((i + 3 * j) % 7) as f32 - 3.0);
    let labels = Array1::from_shape_fn(batch, |i| (i % classes) as u8);
    let eval = x.slice(ndlayers::ndarray::s![..batch / 2, ..]).to_owned();
    let mut net = Sequential::new()
        .with(Dense::from_fn(inputs, hidden, |i, j| ((i + j) % 5) as f32 * 0.01).unwrap())
        .with(Sigmoid::new())
        .with(Dense::from_fn(hidden, classes, |i, j| ((i * j) % 3) as f32 * 0.01).unwrap())
        .with(Prelu::new(classes).unwrap());
    let mut loss = SoftmaxCrossEntropy::new();
    let mut sgd = Sgd::new(0.01).unwrap().with_momentum(0.9).unwrap();
    for _ in 0..3 {
        sequential_step(&mut net, &mut loss, &mut sgd, (&x, &labels), &eval).unwrap();
    }
    // Per step: two forward products at each batch size, the second layer's
    // dL/dW and dL/dx, the first layer's dL/dW (its dL/dx is skipped).
    let products = product_allocations(batch, inputs, hidden, false, false)
        + product_allocations(batch, hidden, classes, false, false)
        + product_allocations(batch / 2, inputs, hidden, false, false)
        + product_allocations(batch / 2, hidden, classes, false, false)
        + product_allocations(hidden, batch, classes, true, false)
        + product_allocations(batch, classes, hidden, false, true)
        + product_allocations(inputs, batch, hidden, true, false);
    let steps = 50;
    let allocations = allocations_of(|| {
        for _ in 0..steps {
            sequential_step(&mut net, &mut loss, &mut sgd, (&x, &labels), &eval).unwrap();
        }
    });
    println!(
        "{allocations} allocations in {steps} Sequential steps; the matrix products account for {}",
        steps * products
    );
    assert_eq!(
        allocations,
        steps * products,
        "every allocation of a steady-state step is a matrix product's packing buffer"
    );
}
