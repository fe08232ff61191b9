//! Reductions over slices with independent accumulators: maxima, dot
//! products, compensated sums, and the balanced trees that combine lanes.

use multiversion::multiversion;

use super::{LANES, Slot};
use crate::math::two_sum;
use crate::real::Real;

/// Partial sums in a compensated sum: each one's loop-carried chain is a
/// single addition (the carried errors are a second, independent one), so
/// two AVX-512 or four AVX2 registers of `f32` keep the adds' pipes busy.
const SUM_LANES: usize = 32;

/// Largest element of `sign · x` (`sign` is ±1, so exact), ignoring NaN (a NaN still reaches the output through `exp(x - max)`).
#[inline(always)]
pub(super) fn max_ignoring_nan<F: Real>(x: &[F], sign: F) -> F {
    let mut acc = [F::neg_infinity(); LANES];
    let chunks = x.chunks_exact(LANES);
    let tail = chunks.remainder();
    for chunk in chunks {
        for (a, &v) in acc.iter_mut().zip(chunk) {
            let v = sign * v;
            *a = if v > *a { v } else { *a };
        }
    }
    for (a, &v) in acc.iter_mut().zip(tail) {
        let v = sign * v;
        *a = if v > *a { v } else { *a };
    }
    acc.into_iter()
        .fold(F::neg_infinity(), |m, v| if v > m { v } else { m })
}

/// `y /= total`, returning [`max_ignoring_nan`] of the next row's `sign · x`
/// from the same loop, so that the next row streams in while this one is divided.
#[inline(always)]
pub(super) fn divide_then_max<F: Real>(y: &mut [F], total: F, next_x: &[F], sign: F) -> F {
    let mut acc = [F::neg_infinity(); LANES];
    for (yc, xc) in y.chunks_exact_mut(LANES).zip(next_x.chunks_exact(LANES)) {
        for ((y, a), &v) in yc.iter_mut().zip(acc.iter_mut()).zip(xc) {
            *y /= total;
            let v = sign * v;
            *a = if v > *a { v } else { *a };
        }
    }
    let tail = y.len() / LANES * LANES;
    for y in &mut y[tail..] {
        *y /= total;
    }
    acc[0] = max_ignoring_nan(&next_x[tail..], sign).max(acc[0]);
    acc.into_iter()
        .fold(F::neg_infinity(), |m, v| if v > m { v } else { m })
}

/// `Σ a_i · b_i` with [`LANES`] partial sums, then a pairwise combine.
#[inline(always)]
pub(super) fn dot<F: Real>(a: &[F], b: &[F]) -> F {
    let mut acc = [F::zero(); LANES];
    let (ca, cb) = (a.chunks_exact(LANES), b.chunks_exact(LANES));
    let (ta, tb) = (ca.remainder(), cb.remainder());
    for (xa, xb) in ca.zip(cb) {
        for ((s, &u), &v) in acc.iter_mut().zip(xa).zip(xb) {
            *s += u * v;
        }
    }
    for ((s, &u), &v) in acc.iter_mut().zip(ta).zip(tb) {
        *s += u * v;
    }
    pairwise_total(acc)
}

/// Writes one row of the softmax vector–Jacobian product, `out = sign · y ⊙ (g - gy)`,
/// and returns the next row's `g · y`, bitwise as [`dot`] computes it.
///
/// With a dot pass and a write pass per row, memory would idle while each row
/// is written from L1; here the next row streams in during the write, and is
/// in L1 when its turn comes.
#[inline(always)]
pub(super) fn vjp_row_then_dot<F: Real, O: Slot<F>>(
    (y, g, out): (&[F], &[F], &mut [O]),
    gy: F,
    sign: F,
    (next_y, next_g): (&[F], &[F]),
) -> F {
    let mut acc = [F::zero(); LANES];
    let blocks = out
        .chunks_exact_mut(LANES)
        .zip(y.chunks_exact(LANES).zip(g.chunks_exact(LANES)))
        .zip(next_g.chunks_exact(LANES).zip(next_y.chunks_exact(LANES)));
    for ((o, (y, g)), (a, b)) in blocks {
        for ((o, &y), &g) in o.iter_mut().zip(y).zip(g) {
            o.set(sign * y * (g - gy));
        }
        for ((s, &u), &v) in acc.iter_mut().zip(a).zip(b) {
            *s += u * v;
        }
    }
    let tail = out.len() / LANES * LANES;
    for ((o, &y), &g) in out[tail..].iter_mut().zip(&y[tail..]).zip(&g[tail..]) {
        o.set(sign * y * (g - gy));
    }
    for ((s, &u), &v) in acc.iter_mut().zip(&next_g[tail..]).zip(&next_y[tail..]) {
        *s += u * v;
    }
    pairwise_total(acc)
}

/// `Σ x_i` with [`SUM_LANES`] partial sums, each carrying the exact rounding
/// error of every one of its additions in a second sum (Ogita, Rump and
/// Oishi's Sum2: Knuth's two-sum, cascaded), added back at the end.
///
/// Plain partial sums of 32768 `f32` softmax terms drift by ~6 ulp; with the
/// errors carried, the sum is as good as if computed in twice the precision
/// and rounded (plus the final combination of the lanes), whatever the length.
/// Kahan's compensation has about the same accuracy, but its
/// correction is a chain of four dependent operations a step (16 cycles on
/// AVX-512, the pace of the whole pass); here only the two sums are chains,
/// one addition each, and the six operations of a two-sum run in parallel
/// (the CHANGELOG has the measurements). The lanes are the same at every
/// level, so the bits are too.
#[inline(always)]
pub(crate) fn sum<F: Real>(x: &[F]) -> F {
    let mut total = [F::zero(); SUM_LANES];
    let mut error = [F::zero(); SUM_LANES];
    let add = |s: &mut F, e: &mut F, v: F| {
        let (t, rounding) = two_sum(*s, v);
        *s = t;
        *e += rounding;
    };
    let chunks = x.chunks_exact(SUM_LANES);
    let tail = chunks.remainder();
    for chunk in chunks {
        for ((s, e), &v) in total.iter_mut().zip(error.iter_mut()).zip(chunk) {
            add(s, e, v);
        }
    }
    for ((s, e), &v) in total.iter_mut().zip(error.iter_mut()).zip(tail) {
        add(s, e, v);
    }
    for (s, e) in total.iter_mut().zip(error) {
        *s += e;
    }
    pairwise_total(total)
}

simd! {
    /// [`sum`] on its own, compiled for each SIMD level: for callers outside
    /// the kernels (a bias gradient's planes).
    pub(crate) fn total<F: Real>(x: &[F]) -> F {
        sum(x)
    }
}

#[inline(always)]
pub(super) fn pairwise_total<F: Real, const N: usize>(acc: [F; N]) -> F {
    pairwise(acc, |a, b| a + b)
}

/// Folds `N` (a power of two) values with `op` as a balanced tree: depth
/// `log2 N`, and on vector registers a shuffle and an operation a level.
#[inline(always)]
pub(super) fn pairwise<F: Real, const N: usize>(mut acc: [F; N], op: impl Fn(F, F) -> F) -> F {
    let mut width = N;
    while width > 1 {
        width /= 2;
        for i in 0..width {
            acc[i] = op(acc[i], acc[i + width]);
        }
    }
    acc[0]
}
