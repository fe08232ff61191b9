//! Reductions over slices with independent accumulators: maxima, dot
//! products, compensated sums, and the balanced trees that combine lanes.

use super::{LANES, Slot};
use crate::real::Real;

/// Partial sums in a compensated sum: its four-operation dependency chain is
/// 12 cycles long, so it takes four AVX2 registers of `f32` to keep it from
/// setting the pace.
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
    for &v in tail {
        let v = sign * v;
        acc[0] = if v > acc[0] { v } else { acc[0] };
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
    for (&u, &v) in ta.iter().zip(tb) {
        acc[0] += u * v;
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
    for (&u, &v) in next_g[tail..].iter().zip(&next_y[tail..]) {
        acc[0] += u * v;
    }
    pairwise_total(acc)
}

/// `Σ x_i` with [`SUM_LANES`] compensated (Kahan) partial sums.
///
/// Plain partial sums of 32768 `f32` softmax terms drift by ~6 ulp; the
/// compensation bounds the error by about 2 ulp whatever the length, for
/// 3 more adds an element on data that is already in L1.
#[inline(always)]
pub(crate) fn sum<F: Real>(x: &[F]) -> F {
    let mut total = [F::zero(); SUM_LANES];
    let mut carry = [F::zero(); SUM_LANES];
    let chunks = x.chunks_exact(SUM_LANES);
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
