//! Sliding a 2-D kernel over one image plane, for the convolutions that
//! are computed straight from the image (depthwise): the geometry of the
//! walk, and the forward and backward loops, compiled per SIMD target.

use multiversion::multiversion;

use super::LANES;
use super::reduce::pairwise_total;
use crate::real::Real;

/// One image plane of `h x w`, read by a `kernel` moved by `stride` over the
/// plane padded with zeros by `padding`, taps `dilation` apart, giving
/// output rows of `ow`.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Windows {
    pub(crate) h: usize,
    pub(crate) w: usize,
    pub(crate) ow: usize,
    pub(crate) kernel: (usize, usize),
    pub(crate) stride: (usize, usize),
    pub(crate) padding: (usize, usize),
    pub(crate) dilation: (usize, usize),
}

impl Windows {
    /// The image row that kernel row `p` of output row `i` reads, if inside
    /// the image. Never overflows for an output that exists: `i·sh + p·dh`
    /// is below the padded height.
    #[inline(always)]
    pub(crate) fn source_row(&self, i: usize, p: usize) -> Option<usize> {
        (i * self.stride.0 + p * self.dilation.0)
            .checked_sub(self.padding.0)
            .filter(|&r| r < self.h)
    }

    /// The output columns `j0..j1` whose kernel column `q` reads inside a
    /// row of the image, and the image column that `j0` reads: column `j`
    /// reads `j·sw + q·dw - pw`, so the range is where that lies in `0..w`.
    #[inline(always)]
    pub(crate) fn inside(&self, q: usize) -> (usize, usize, usize) {
        let (stride, padding) = (self.stride.1, self.padding.1);
        let offset = q * self.dilation.1;
        let j1 = if self.w + padding > offset {
            ((self.w + padding - offset - 1) / stride + 1).min(self.ow)
        } else {
            0
        };
        let j0 = padding.saturating_sub(offset).div_ceil(stride).min(j1);
        (j0, j1, (j0 * stride + offset).saturating_sub(padding))
    }
}

simd! {
    /// `out += Σ taps[p, q] · image(window at tap p, q)` over one plane:
    /// tap by tap (each tap's column range worked out once), each output row
    /// adding the tap times a run of one image row.
    pub(crate) fn window_forward<F: Real>(walk: &Windows, image: &[F], taps: &[F], out: &mut [F]) {
        let (kh, kw) = walk.kernel;
        let (w, ow, stride) = (walk.w, walk.ow, walk.stride.1);
        for p in 0..kh {
            for q in 0..kw {
                let (j0, j1, from) = walk.inside(q);
                if j0 == j1 {
                    continue;
                }
                let tap = taps[p * kw + q];
                for (i, out) in out.chunks_exact_mut(ow).enumerate() {
                    let Some(r) = walk.source_row(i, p) else {
                        continue;
                    };
                    let out = &mut out[j0..j1];
                    let start = r * w + from;
                    if stride == 1 {
                        let run = &image[start..][..out.len()];
                        for (o, &v) in out.iter_mut().zip(run) {
                            *o += tap * v;
                        }
                    } else {
                        for (k, o) in out.iter_mut().enumerate() {
                            *o += tap * image[start + k * stride];
                        }
                    }
                }
            }
        }
    }
}

simd! {
    /// The backward of [`window_forward`] for one plane: `grad_image +=`
    /// each tap times the rows of `g` it produced, and `grad_taps +=` each
    /// tap's dot product of `g` with the image runs it read ([`LANES`]
    /// accumulators, as every reduction of the crate).
    pub(crate) fn window_backward<F: Real>(
        walk: &Windows,
        image: &[F],
        g: &[F],
        taps: &[F],
        grad_image: &mut [F],
        grad_taps: &mut [F],
    ) {
        let (kh, kw) = walk.kernel;
        let (w, ow, stride) = (walk.w, walk.ow, walk.stride.1);
        for p in 0..kh {
            for q in 0..kw {
                let (j0, j1, from) = walk.inside(q);
                if j0 == j1 {
                    continue;
                }
                let tap = taps[p * kw + q];
                let mut acc = [F::zero(); LANES];
                for (i, g_row) in g.chunks_exact(ow).enumerate() {
                    let Some(r) = walk.source_row(i, p) else {
                        continue;
                    };
                    let g_run = &g_row[j0..j1];
                    let start = r * w + from;
                    if stride == 1 {
                        let run = &image[start..][..g_run.len()];
                        let (g_lanes, g_rest) = g_run.as_chunks::<LANES>();
                        let (v_lanes, v_rest) = run.as_chunks::<LANES>();
                        for (gs, vs) in g_lanes.iter().zip(v_lanes) {
                            for ((a, &g), &v) in acc.iter_mut().zip(gs).zip(vs) {
                                *a += g * v;
                            }
                        }
                        for ((a, &g), &v) in acc.iter_mut().zip(g_rest).zip(v_rest) {
                            *a += g * v;
                        }
                        let grad_run = &mut grad_image[start..][..g_run.len()];
                        for (d, &g) in grad_run.iter_mut().zip(g_run) {
                            *d += tap * g;
                        }
                    } else {
                        for (k, &g) in g_run.iter().enumerate() {
                            acc[k % LANES] += g * image[start + k * stride];
                            grad_image[start + k * stride] += tap * g;
                        }
                    }
                }
                grad_taps[p * kw + q] += pairwise_total(acc);
            }
        }
    }
}
