//! Row-wise log-softmax of row-major matrices, forward and backward.

use multiversion::multiversion;

use super::chunked;
use super::reduce::{max_ignoring_nan, sum};
use super::short_rows::{Ends, SHORT_ROW, with_ends_width};
use super::softmax::SOFTMAX_BLOCK;
use super::staging::{CacheAligned, staged, staged_exp, staged_pairs};
use crate::math::{self, MulAdd, Reduced};
use crate::real::Real;

/// Row-wise log-softmax: `y = (x - max) - ln Σ e^(x - max)` per row, never `ln(softmax)`.
///
/// The sum is `t + s` with `t ≥ 1` terms exactly 1 (where `x = max`) and `s`
/// the rest, so `ln Σ = ln_1p((t - 1) + s)`: for a dominant logit, `s` can be
/// far below an ulp of 1, and `ln(1 + s)` rounded would lose it (`y = 0`
/// instead of `-s`). The terms take the rounding of `x - max` into account
/// ([`math::exp_difference_reduce`]), and `x - max` is subtracted before
/// `ln Σ`, not `x - (max + ln Σ)`, whose rounding is an ulp of `max`, not of `y`.
pub(crate) fn log_softmax_rows<F: Real>(x: &[F], y: &mut [F], cols: usize) {
    chunked([x], y, cols, |[x], y| log_softmax_rows_serial(x, y, cols));
}

/// `Σ e^(x - max) - 1` from the sum of the terms where `x ≠ max` and the
/// number of terms where `x = max` (each exactly 1): the argument of `ln_1p`.
#[inline(always)]
fn sum_of_terms_minus_one<F: Real>(others: F, ties: F) -> F {
    others + (ties - F::ONE)
}

/// Whether `x - max = 0`: the term is exactly 1. `x = max = ±∞` gives NaN,
/// not 0, so that such a row comes out NaN, as in [`softmax_rows`].
#[inline(always)]
fn is_tie<F: Real>(x: F, max: F) -> bool {
    x - max == F::zero()
}

/// Second half of a log-softmax term `e^(x - max)`, or 0 where `x` ties the
/// maximum: ties are counted apart (see [`sum_of_terms_minus_one`]).
#[inline(always)]
fn term_unless_tie<M: MulAdd, F: Real>(x: F, max: F, reduced: Reduced<F>) -> F {
    if is_tie(x, max) {
        F::zero()
    } else {
        math::exp_nonpositive_finish::<M, F>(reduced)
    }
}

simd! {
    fn log_softmax_rows_serial<F: Real>(x: &[F], y: &mut [F], cols: usize) {
        mul_add_flavour!(M);
        if cols == 0 {
            return;
        }
        if cols < SHORT_ROW {
            return with_ends_width!(cols, |W| short_log_softmax_rows::<M, F, W>(x, y, cols));
        }
        for (xr, yr) in x.chunks_exact(cols).zip(y.chunks_exact_mut(cols)) {
            let max = max_ignoring_nan(xr, F::ONE);
            // y holds the terms e^(x - max) other than the ties just long enough to be summed.
            staged(
                xr,
                yr,
                |x| math::exp_difference_reduce::<M, F>(x, max),
                |x, reduced| term_unless_tie::<M, F>(x, max, reduced),
            );
            // (Counted in integers, which LLVM may add in any order, so vectorises.)
            let ties = xr.iter().map(|&x| u32::from(is_tie(x, max))).sum::<u32>();
            let ties = F::from_u32(ties).unwrap_or(F::nan());
            let log_sum = M::ln_1p(sum_of_terms_minus_one(sum(yr), ties));
            for (y, &x) in yr.iter_mut().zip(xr) {
                *y = (x - max) - log_sum;
            }
        }
    }
}

/// The short-row log-softmax, by blocks of rows as [`short_softmax_rows`].
#[inline(always)]
fn short_log_softmax_rows<M: MulAdd, F: Real, const W: usize>(x: &[F], y: &mut [F], cols: usize) {
    let block = SOFTMAX_BLOCK / cols * cols;
    let fresh = Ends::<F, W>::fresh_lanes(cols);
    let mut maxima = CacheAligned([F::zero(); SOFTMAX_BLOCK]);
    let mut log_sums = CacheAligned([F::zero(); SOFTMAX_BLOCK]);
    for (xb, yb) in x.chunks(block).zip(y.chunks_mut(block)) {
        let maxima = &mut maxima.0[..xb.len()];
        for (xr, mr) in xb.chunks_exact(cols).zip(maxima.chunks_exact_mut(cols)) {
            Ends::<F, W>::splat(Ends::<F, W>::load(xr).max()).store(mr);
        }
        // y holds the terms other than the ties just long enough to be summed.
        staged_pairs(
            xb,
            maxima,
            yb,
            |x, max| math::exp_difference_reduce::<M, F>(x, max),
            term_unless_tie::<M, F>,
        );
        // ln Σ for every row of the block as one vectorised loop.
        let log_sums = &mut log_sums.0[..xb.len() / cols];
        let rows = xb.chunks_exact(cols).zip(maxima.chunks_exact(cols));
        for (((xr, mr), yr), log_sum) in rows.zip(yb.chunks_exact(cols)).zip(log_sums.iter_mut()) {
            let one_if_tie = |x| if is_tie(x, mr[0]) { F::ONE } else { F::zero() };
            let ties = Ends::<F, W>::load(xr).map(one_if_tie).sum(&fresh);
            *log_sum = sum_of_terms_minus_one(Ends::<F, W>::load(yr).sum(&fresh), ties);
        }
        for log_sum in log_sums.iter_mut() {
            *log_sum = M::ln_1p(*log_sum);
        }
        let rows = xb.chunks_exact(cols).zip(maxima.chunks_exact(cols));
        for (((xr, mr), yr), &log_sum) in rows.zip(yb.chunks_exact_mut(cols)).zip(log_sums.iter()) {
            let max = mr[0];
            Ends::<F, W>::load(xr)
                .map(|x| (x - max) - log_sum)
                .store(yr);
        }
    }
}

/// Row-wise log-softmax vector–Jacobian product: `out = g - e^y · Σ g` per row
/// (`∂y_i/∂x_j = δ_ij - softmax_j`).
pub(crate) fn log_softmax_backward_rows<F: Real>(y: &[F], g: &[F], out: &mut [F], cols: usize) {
    chunked([y, g], out, cols, |[y, g], out| {
        log_softmax_backward_rows_serial(y, g, out, cols)
    });
}

simd! {
    fn log_softmax_backward_rows_serial<F: Real>(y: &[F], g: &[F], out: &mut [F], cols: usize) {
        mul_add_flavour!(M);
        if cols == 0 {
            return;
        }
        if cols < SHORT_ROW {
            // out = e^y for a block of rows as one vectorised loop, then per row.
            let block = SOFTMAX_BLOCK / cols * cols;
            return with_ends_width!(cols, |W| {
                let fresh = Ends::<F, W>::fresh_lanes(cols);
                for ((yb, gb), ob) in y.chunks(block).zip(g.chunks(block)).zip(out.chunks_mut(block)) {
                    staged_exp::<M, F>(yb, ob, |y| y);
                    for (gr, or) in gb.chunks_exact(cols).zip(ob.chunks_exact_mut(cols)) {
                        let g = Ends::<F, W>::load(gr);
                        let total = g.sum(&fresh);
                        g.zip_map(Ends::load(or), |g, e| g - e * total).store(or);
                    }
                }
            });
        }
        for ((yr, gr), or) in y
            .chunks_exact(cols)
            .zip(g.chunks_exact(cols))
            .zip(out.chunks_exact_mut(cols))
        {
            let total = sum(gr);
            for ((o, &y), &g) in or.iter_mut().zip(yr).zip(gr) {
                *o = g - M::exp_nonpositive(y) * total;
            }
        }
    }
}
