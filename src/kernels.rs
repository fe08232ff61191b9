//! The loops that touch every element, compiled once per SIMD target and
//! dispatched at run time.
//!
//! Each loop is plain Rust over slices calling the `#[inline(always)]` math of
//! [`crate::math`] and the activation kernels; `multiversion` compiles it for
//! AVX-512, AVX2+FMA, NEON and the portable baseline, and calls the best one
//! the CPU supports (detected once, then cached). LLVM vectorises each copy
//! for its target. Reductions keep [`LANES`] independent accumulators, because
//! LLVM may not reassociate a single float sum.
//!
//! The layout-generic entry points ([`map_unary`], [`map_backward`]) take the
//! slice path whenever all arrays share one contiguous memory order, and fall
//! back to `Zip` (same kernel, element by element) for every other layout.

use multiversion::multiversion;
use ndarray::{ArrayView, ArrayViewMut, Dimension, Zip};

use crate::activation::ElementwiseFn;
use crate::math;
use crate::real::Real;

/// Independent accumulators in a reduction: two AVX2 registers of `f32`,
/// enough to hide the latency of the adds.
const LANES: usize = 16;

/// Rows of a short-row softmax are grouped into blocks of about this many
/// elements, so that `exp` runs vectorised over a whole block that stays in L1.
const SOFTMAX_BLOCK: usize = 2048;

#[multiversion(targets(
    "x86_64+avx512f+avx512vl+avx512dq+avx512bw+avx2+fma",
    "x86_64+avx2+fma",
    "aarch64+neon"
))]
fn forward_slice<F: Real, A: ElementwiseFn<F>>(act: &A, x: &[F], y: &mut [F]) {
    for (y, &x) in y.iter_mut().zip(x) {
        *y = act.value(x);
    }
}

#[multiversion(targets(
    "x86_64+avx512f+avx512vl+avx512dq+avx512bw+avx2+fma",
    "x86_64+avx2+fma",
    "aarch64+neon"
))]
fn backward_slice<F: Real, A: ElementwiseFn<F>>(act: &A, cached: &[F], g: &[F], out: &mut [F]) {
    for ((out, &c), &g) in out.iter_mut().zip(cached).zip(g) {
        *out = g * act.derivative(c);
    }
}

/// `y = act(x)` elementwise; `x` and `y` must have the same shape.
pub(crate) fn map_unary<F: Real, A: ElementwiseFn<F>, D: Dimension>(
    act: &A,
    x: ArrayView<'_, F, D>,
    mut y: ArrayViewMut<'_, F, D>,
) {
    debug_assert_eq!(x.shape(), y.shape());
    if x.strides() == y.strides()
        && let (Some(xs), Some(ys)) = (x.as_slice_memory_order(), y.as_slice_memory_order_mut())
    {
        forward_slice(act, xs, ys);
        return;
    }
    Zip::from(&mut y)
        .and(&x)
        .for_each(|y, &x| *y = act.value(x));
}

/// `out = g · act'(cached)` elementwise; all three must have the same shape.
pub(crate) fn map_backward<F: Real, A: ElementwiseFn<F>, D: Dimension>(
    act: &A,
    cached: ArrayView<'_, F, D>,
    g: ArrayView<'_, F, D>,
    mut out: ArrayViewMut<'_, F, D>,
) {
    debug_assert_eq!(cached.shape(), g.shape());
    debug_assert_eq!(cached.shape(), out.shape());
    if cached.strides() == g.strides()
        && g.strides() == out.strides()
        && let (Some(cs), Some(gs), Some(os)) = (
            cached.as_slice_memory_order(),
            g.as_slice_memory_order(),
            out.as_slice_memory_order_mut(),
        )
    {
        backward_slice(act, cs, gs, os);
        return;
    }
    Zip::from(&mut out)
        .and(&cached)
        .and(&g)
        .for_each(|out, &c, &g| *out = g * act.derivative(c));
}

/// Largest element, ignoring NaN (a NaN still reaches the output through `exp(x - max)`).
#[inline(always)]
fn max_ignoring_nan<F: Real>(x: &[F]) -> F {
    let mut acc = [F::neg_infinity(); LANES];
    let chunks = x.chunks_exact(LANES);
    let tail = chunks.remainder();
    for chunk in chunks {
        for (a, &v) in acc.iter_mut().zip(chunk) {
            *a = if v > *a { v } else { *a };
        }
    }
    for &v in tail {
        acc[0] = if v > acc[0] { v } else { acc[0] };
    }
    acc.into_iter()
        .fold(F::neg_infinity(), |m, v| if v > m { v } else { m })
}

/// `Σ a_i · b_i` with [`LANES`] partial sums, then a pairwise combine.
#[inline(always)]
fn dot<F: Real>(a: &[F], b: &[F]) -> F {
    let mut acc = [F::zero(); LANES];
    let (ca, cb) = (a.chunks_exact(LANES), b.chunks_exact(LANES));
    let (ta, tb) = (ca.remainder(), cb.remainder());
    for (xa, xb) in ca.zip(cb) {
        for ((s, &u), &v) in acc.iter_mut().zip(xa).zip(xb) {
            *s += u * v;
        }
    }
    for (&u, &v) in ta.iter().zip(tb) {
        acc[0] += u * v;
    }
    pairwise_total(acc)
}

/// `Σ x_i` with [`LANES`] compensated (Kahan) partial sums.
///
/// Plain partial sums of 32768 `f32` softmax terms drift by ~6 ulp; the
/// compensation bounds the error by about 2 ulp whatever the length, for
/// 3 more adds an element on data that is already in L1.
#[inline(always)]
fn sum<F: Real>(x: &[F]) -> F {
    let mut total = [F::zero(); LANES];
    let mut carry = [F::zero(); LANES];
    let chunks = x.chunks_exact(LANES);
    let tail = chunks.remainder();
    for chunk in chunks {
        for ((s, c), &v) in total.iter_mut().zip(carry.iter_mut()).zip(chunk) {
            let y = v - *c;
            let t = *s + y;
            *c = (t - *s) - y;
            *s = t;
        }
    }
    for (s, &v) in total.iter_mut().zip(tail) {
        *s += v;
    }
    for (s, c) in total.iter_mut().zip(carry) {
        *s -= c;
    }
    pairwise_total(total)
}

#[inline(always)]
fn pairwise_total<F: Real>(mut acc: [F; LANES]) -> F {
    let mut width = LANES;
    while width > 1 {
        width /= 2;
        for i in 0..width {
            acc[i] += acc[i + width];
        }
    }
    acc[0]
}

/// Row-wise softmax of a row-major `(rows, cols)` matrix held in `x`, into `y`.
///
/// Rows are processed in blocks of about [`SOFTMAX_BLOCK`] elements: per row,
/// `y = x - max(x)`; then `exp` over the whole block at once (vectorised even
/// when rows are 10 wide); then per row, divide by the sum. The block stays
/// in L1/L2, so main memory sees one read of `x` and one write of `y`.
#[multiversion(targets(
    "x86_64+avx512f+avx512vl+avx512dq+avx512bw+avx2+fma",
    "x86_64+avx2+fma",
    "aarch64+neon"
))]
pub(crate) fn softmax_rows<F: Real>(x: &[F], y: &mut [F], cols: usize) {
    if cols == 0 {
        return;
    }
    let block = (SOFTMAX_BLOCK / cols).max(1) * cols;
    for (xb, yb) in x.chunks(block).zip(y.chunks_mut(block)) {
        for (xr, yr) in xb.chunks_exact(cols).zip(yb.chunks_exact_mut(cols)) {
            let max = max_ignoring_nan(xr);
            for (y, &x) in yr.iter_mut().zip(xr) {
                *y = x - max;
            }
        }
        for y in yb.iter_mut() {
            *y = math::exp(*y);
        }
        for yr in yb.chunks_exact_mut(cols) {
            let total = sum(yr);
            for y in yr.iter_mut() {
                *y /= total;
            }
        }
    }
}

/// Row-wise softmax vector–Jacobian product: `out = y ⊙ (g - (g·y))` per row.
#[multiversion(targets(
    "x86_64+avx512f+avx512vl+avx512dq+avx512bw+avx2+fma",
    "x86_64+avx2+fma",
    "aarch64+neon"
))]
pub(crate) fn softmax_backward_rows<F: Real>(y: &[F], g: &[F], out: &mut [F], cols: usize) {
    if cols == 0 {
        return;
    }
    for ((yr, gr), or) in y
        .chunks_exact(cols)
        .zip(g.chunks_exact(cols))
        .zip(out.chunks_exact_mut(cols))
    {
        let gy = dot(gr, yr);
        for ((o, &y), &g) in or.iter_mut().zip(yr).zip(gr) {
            *o = y * (g - gy);
        }
    }
}
