//! Batch normalisation over one image plane of a channel: the statistics'
//! sums in `f64`, the normalisation, and its gradient.
//!
//! The sums keep eight interleaved `f64` partial sums (one AVX-512 register,
//! two AVX2 ones), so they run on SIMD lanes while every level adds the same
//! values in the same order: the bits do not depend on the CPU. The
//! elementwise loops multiply and add without fusing, for the same reason.

use multiversion::multiversion;

use crate::real::Real;

/// `v` as `f64` (exact for `f32` and `f64`).
#[inline(always)]
fn wide<F: Real>(v: F) -> f64 {
    v.to_f64().unwrap_or(f64::NAN)
}

/// `Σ f(x)` over `x` in `f64`, in eight interleaved partial sums added up
/// at the end, then the tail.
#[inline(always)]
fn lanes<F: Real>(x: &[F], f: impl Fn(f64) -> f64) -> f64 {
    let mut lanes = [0.0_f64; 8];
    let chunks = x.chunks_exact(8);
    let tail = chunks.remainder();
    for chunk in chunks {
        for (lane, &v) in lanes.iter_mut().zip(chunk) {
            *lane += f(wide(v));
        }
    }
    let mut total = lanes.iter().sum::<f64>();
    for &v in tail {
        total += f(wide(v));
    }
    total
}

simd! {
    /// `Σ x` in `f64`.
    pub(crate) fn sum_f64<F: Real>(x: &[F]) -> f64 {
        lanes(x, |v| v)
    }
}

simd! {
    /// `Σ (x - mean)²` in `f64`.
    pub(crate) fn squared_deviations_f64<F: Real>(x: &[F], mean: f64) -> f64 {
        lanes(x, |v| (v - mean) * (v - mean))
    }
}

simd! {
    /// `(Σ g, Σ g·x̂)` in `f64`, each as [`sum_f64`].
    pub(crate) fn grad_sums_f64<F: Real>(g: &[F], xhat: &[F]) -> (f64, f64) {
        let (mut sum_g, mut sum_gx) = ([0.0_f64; 8], [0.0_f64; 8]);
        let (chunks_g, chunks_x) = (g.chunks_exact(8), xhat.chunks_exact(8));
        let (tail_g, tail_x) = (chunks_g.remainder(), chunks_x.remainder());
        for (cg, cx) in chunks_g.zip(chunks_x) {
            for k in 0..8 {
                let (g, x) = (wide(cg[k]), wide(cx[k]));
                sum_g[k] += g;
                sum_gx[k] += g * x;
            }
        }
        let mut total_g = sum_g.iter().sum::<f64>();
        let mut total_gx = sum_gx.iter().sum::<f64>();
        for (&g, &x) in tail_g.iter().zip(tail_x) {
            total_g += wide(g);
            total_gx += wide(g) * wide(x);
        }
        (total_g, total_gx)
    }
}

simd! {
    /// `x̂ = (x - mean) · rstd` and `y = x̂ · weight + bias`, for
    /// `statistics = (mean, rstd)` and `affine = (weight, bias)`.
    pub(crate) fn normalize<F: Real>(
        x: &[F],
        statistics: (F, F),
        affine: (F, F),
        xhat: &mut [F],
        y: &mut [F],
    ) {
        let ((mean, rstd), (weight, bias)) = (statistics, affine);
        for ((xhat, y), &x) in xhat.iter_mut().zip(y.iter_mut()).zip(x) {
            *xhat = (x - mean) * rstd;
            *y = *xhat * weight + bias;
        }
    }
}

simd! {
    /// `dx = scale · (g - mean_g - x̂ · mean_gx)` with batch statistics
    /// (`means = Some((mean_g, mean_gx))`), else `dx = scale · g` (the
    /// statistics are constants).
    pub(crate) fn normalize_backward<F: Real>(
        g: &[F],
        xhat: &[F],
        scale: F,
        means: Option<(F, F)>,
        dx: &mut [F],
    ) {
        match means {
            Some((mean_g, mean_gx)) => {
                for ((dx, &g), &xhat) in dx.iter_mut().zip(g).zip(xhat) {
                    *dx = scale * (g - mean_g - xhat * mean_gx);
                }
            }
            None => {
                for (dx, &g) in dx.iter_mut().zip(g) {
                    *dx = scale * g;
                }
            }
        }
    }
}
