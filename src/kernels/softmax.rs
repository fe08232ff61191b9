//! Row-wise softmax and softmin of row-major matrices, forward and backward.

use multiversion::multiversion;

use super::reduce::{divide_then_max, dot, max_ignoring_nan, sum, vjp_row_then_dot};
use super::short_rows::{Ends, SHORT_ROW, with_ends_width};
use super::staging::{CacheAligned, staged_in_vectors, staged_pairs};
use super::{Slot, chunked};
use crate::math::{self, MulAdd};
use crate::real::Real;

/// Rows of a short-row softmax are grouped into blocks of about this many
/// elements, so that `exp` runs vectorised over a whole block that stays in L1.
pub(super) const SOFTMAX_BLOCK: usize = 2048;
const _: () = assert!(
    SOFTMAX_BLOCK >= SHORT_ROW,
    "a block holds at least one short row"
);

/// Row-wise softmax of a row-major `(rows, cols)` matrix held in `x`, into `y`.
///
/// Long rows: per row, the maximum of `sign · x` (lane-wise), `y = exp(sign · x - max)` vectorised,
/// the compensated sum, and a vectorised division, which also takes the next
/// row's maximum (so memory streams the next row while this one is finished).
/// A row of 32768 `f32` stays in L2 between these passes, so memory sees one
/// read of `x` and one write of `y`.
///
/// Short rows (e.g. 10 classes), where per-row vector loops would be mostly
/// remainder: see [`short_softmax_rows`]; each row's maximum and sum are a
/// few vector operations on its two overlapping halves ([`Ends`]), and `exp`
/// runs as one vectorised loop over a block of rows.
///
/// `sign = -1` computes softmin, the softmax of `-x` (negation is exact).
pub(crate) fn softmax_rows<F: Real>(x: &[F], y: &mut [F], cols: usize, sign: F) {
    chunked([x], y, cols, |[x], y| softmax_rows_serial(x, y, cols, sign));
}

simd! {
    fn softmax_rows_serial<F: Real>(x: &[F], y: &mut [F], cols: usize, sign: F) {
        mul_add_flavour!(M);
        if cols == 0 {
            return;
        }
        if cols >= SHORT_ROW {
            let rows = y.len() / cols;
            let mut max = max_ignoring_nan(&x[..cols], sign);
            for i in 0..rows {
                let row = i * cols..(i + 1) * cols;
                let (xr, yr) = (&x[row.clone()], &mut y[row.clone()]);
                staged_in_vectors(
                    xr,
                    yr,
                    |x| math::exp_difference_reduce::<M, F>(sign * x, max),
                    |_, reduced| math::exp_nonpositive_finish::<M, F>(reduced),
                );
                let total = sum(yr);
                let next = if i + 1 < rows { row.end..row.end + cols } else { row };
                max = divide_then_max(yr, total, &x[next], sign);
            }
            return;
        }
        with_ends_width!(cols, |W| short_softmax_rows::<M, F, W>(x, y, cols, sign))
    }
}

/// The short-row softmax: blocks of rows of `W..=2W` elements (see [`Ends`]).
///
/// Per block: each row's maximum of `sign · x`, spread over the row's
/// places in a scratch block; `e^(sign · x - max)` of the whole block as one
/// vectorised loop; then each row divided by its sum.
#[inline(always)]
fn short_softmax_rows<M: MulAdd, F: Real, const W: usize>(
    x: &[F],
    y: &mut [F],
    cols: usize,
    sign: F,
) {
    let block = SOFTMAX_BLOCK / cols * cols;
    let fresh = Ends::<F, W>::fresh_lanes(cols);
    let mut maxima = CacheAligned([F::zero(); SOFTMAX_BLOCK]);
    for (xb, yb) in x.chunks(block).zip(y.chunks_mut(block)) {
        let maxima = &mut maxima.0[..xb.len()];
        for (xr, mr) in xb.chunks_exact(cols).zip(maxima.chunks_exact_mut(cols)) {
            let max = Ends::<F, W>::load(xr).map(|v| sign * v).max();
            Ends::<F, W>::splat(max).store(mr);
        }
        staged_pairs(
            xb,
            maxima,
            yb,
            |x, max| math::exp_difference_reduce::<M, F>(sign * x, max),
            |_, _, reduced| math::exp_nonpositive_finish::<M, F>(reduced),
        );
        for yr in yb.chunks_exact_mut(cols) {
            let e = Ends::<F, W>::load(yr);
            let total = e.sum(&fresh);
            e.map(|v| v / total).store(yr);
        }
    }
}

/// Row-wise softmax vector–Jacobian product: `out = sign · y ⊙ (g - (g·y))`
/// per row (`sign = -1` for softmin), with the same long-row / short-row
/// split as [`softmax_rows`].
pub(crate) fn softmax_backward_rows<F: Real, O: Slot<F>>(
    y: &[F],
    g: &[F],
    out: &mut [O],
    cols: usize,
    sign: F,
) {
    chunked([y, g], out, cols, |[y, g], out| {
        softmax_backward_rows_serial(y, g, out, cols, sign)
    });
}

simd! {
    fn softmax_backward_rows_serial<F: Real, O: Slot<F>>(y: &[F], g: &[F], out: &mut [O], cols: usize, sign: F) {
        if cols == 0 {
            return;
        }
        if cols >= SHORT_ROW {
            let rows = out.len() / cols;
            let mut gy = dot(&g[..cols], &y[..cols]);
            for i in 0..rows {
                let row = i * cols..(i + 1) * cols;
                // The last row "prefetches" itself: one wasted dot, no special case.
                let next = if i + 1 < rows { row.end..row.end + cols } else { row.clone() };
                gy = vjp_row_then_dot(
                    (&y[row.clone()], &g[row.clone()], &mut out[row]),
                    gy,
                    sign,
                    (&y[next.clone()], &g[next]),
                );
            }
            return;
        }
        with_ends_width!(cols, |W| {
            let fresh = Ends::<F, W>::fresh_lanes(cols);
            for ((yr, gr), or) in y
                .chunks_exact(cols)
                .zip(g.chunks_exact(cols))
                .zip(out.chunks_exact_mut(cols))
            {
                let (y, g) = (Ends::<F, W>::load(yr), Ends::load(gr));
                let gy = y.zip_map(g, |y, g| y * g).sum(&fresh);
                y.zip_map(g, |y, g| sign * y * (g - gy)).store(or);
            }
        })
    }
}
