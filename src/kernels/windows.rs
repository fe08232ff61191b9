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
        if stride == 1 {
            // The same without the divisions (im2col asks once per row of
            // its matrix).
            let j1 = (self.w + padding).saturating_sub(offset).min(self.ow);
            let j0 = padding.saturating_sub(offset).min(j1);
            return (j0, j1, (j0 + offset).saturating_sub(padding));
        }
        let j1 = if self.w + padding > offset {
            ((self.w + padding - offset - 1) / stride + 1).min(self.ow)
        } else {
            0
        };
        let j0 = padding.saturating_sub(offset).div_ceil(stride).min(j1);
        (j0, j1, (j0 * stride + offset).saturating_sub(padding))
    }

    /// For a stride-1 walk whose output rows are as wide as the image's
    /// (`ow == w`, as "same" padding gives), with `oh` output rows: the
    /// output rows `i0..i1` whose kernel row `p` reads inside the image, and
    /// the shift `s` with which tap `(p, q)` of flat output `k = i·ow + j`
    /// reads flat image element `k + s`. That holds for the columns
    /// [`inside`](Self::inside) gives; the others would read a neighbouring
    /// row (or outside the plane) and are the caller's to mask. `None` for
    /// other walks.
    #[inline(always)]
    pub(crate) fn shifted_rows(
        &self,
        oh: usize,
        p: usize,
        q: usize,
    ) -> Option<(usize, usize, isize)> {
        if self.stride != (1, 1) || self.ow != self.w {
            return None;
        }
        // Output row i reads image row i + p·dh − ph.
        let down = p * self.dilation.0;
        let i1 = (self.h + self.padding.0).saturating_sub(down).min(oh);
        let i0 = self.padding.0.saturating_sub(down).min(i1);
        let rows = down as isize - self.padding.0 as isize;
        let columns = (q * self.dilation.1) as isize - self.padding.1 as isize;
        Some((i0, i1, rows * self.w as isize + columns))
    }
}

/// A stride-1 walk on the zero-padded plane (`hp x wp`), with the outputs
/// laid out `wp` apart: tap `(p, q)` of output `k` (flat) reads padded
/// element `k + p·dh·wp + q·dw`, so the flat outputs `0..len` (the last
/// row's garbage columns left out) take each tap in one loop.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Flat {
    /// The walk on the unpadded plane, whose sizes and settings these are.
    walk: Windows,
    oh: usize,
    wp: usize,
    hp: usize,
}

// Inlined into the kernels that call them, so compiled for their SIMD level.
impl Flat {
    /// The flat outputs: rows `wp` apart, the last one `ow` long.
    #[inline(always)]
    fn len(&self) -> usize {
        (self.oh - 1) * self.wp + self.walk.ow
    }

    /// Where tap `(p, q)` of output 0 reads the padded plane.
    #[inline(always)]
    fn offset(&self, p: usize, q: usize) -> usize {
        p * self.walk.dilation.0 * self.wp + q * self.walk.dilation.1
    }

    /// The padded plane and the wide outputs, from `scratch`.
    #[inline(always)]
    fn split<'s, F: Real>(&self, scratch: &'s mut Vec<F>) -> (&'s mut [F], &'s mut [F]) {
        let padded = self.hp * self.wp;
        scratch.resize(padded + self.len(), F::zero());
        let (padded, wide) = scratch.split_at_mut(padded);
        (padded, wide)
    }

    /// `image` into the padded plane, zeros around it (every element written once).
    #[inline(always)]
    fn pad<F: Real>(&self, image: &[F], padded: &mut [F]) {
        let (ph, pw) = self.walk.padding;
        let (top, rest) = padded.split_at_mut(ph * self.wp);
        let (middle, bottom) = rest.split_at_mut(self.walk.h * self.wp);
        top.fill(F::zero());
        bottom.fill(F::zero());
        for (row, line) in middle
            .chunks_exact_mut(self.wp)
            .zip(image.chunks_exact(self.walk.w))
        {
            let (left, row) = row.split_at_mut(pw);
            let (inside, right) = row.split_at_mut(self.walk.w);
            left.fill(F::zero());
            copy_short(line, inside);
            right.fill(F::zero());
        }
    }

    /// The outputs `out` (`oh x ow`) into the wide layout.
    #[inline(always)]
    fn widen<F: Real>(&self, out: &[F], wide: &mut [F]) {
        for (row, line) in wide.chunks_mut(self.wp).zip(out.chunks_exact(self.walk.ow)) {
            let (values, gap) = row.split_at_mut(self.walk.ow);
            copy_short(line, values);
            gap.fill(F::zero());
        }
    }

    /// The wide outputs back into `out`.
    #[inline(always)]
    fn narrow<F: Real>(&self, wide: &[F], out: &mut [F]) {
        for (row, line) in wide.chunks(self.wp).zip(out.chunks_exact_mut(self.walk.ow)) {
            copy_short(&row[..self.walk.ow], line);
        }
    }
}

impl Flat {
    /// `image +=` the padded plane's interior (the image's pixels), or
    /// `image =` it with `overwrite`.
    #[inline(always)]
    fn add_interior<F: Real>(&self, padded: &[F], image: &mut [F], overwrite: bool) {
        let (ph, pw) = self.walk.padding;
        for (row, line) in padded[ph * self.wp..]
            .chunks_exact(self.wp)
            .zip(image.chunks_exact_mut(self.walk.w))
            .take(self.walk.h)
        {
            let row = &row[pw..pw + self.walk.w];
            if overwrite {
                copy_short(row, line);
            } else {
                for (d, &v) in line.iter_mut().zip(row) {
                    *d += v;
                }
            }
        }
    }
}

simd! {
    /// `total += a · b`, with the crate's reduction order ([`LANES`] partial
    /// sums, combined pairwise); on its own so it is vectorised whatever
    /// the loop around it.
    fn dot_into<F: Real>(a: &[F], b: &[F], total: &mut F) {
        *total += super::reduce::dot(a, b);
    }
}

/// `to.copy_from_slice(from)` for rows of a few dozen elements, in
/// fixed-size blocks the compiler moves with a few vector instructions: a
/// call to `memmove` for each such row cost about a fifth of the depthwise
/// convolution's time.
#[inline(always)]
fn copy_short<F: Copy>(from: &[F], to: &mut [F]) {
    let (blocks, rest) = from.as_chunks::<16>();
    let (to_blocks, to_rest) = to.as_chunks_mut::<16>();
    for (to, from) in to_blocks.iter_mut().zip(blocks) {
        *to = *from;
    }
    for (to, &from) in to_rest.iter_mut().zip(rest) {
        *to = from;
    }
}

impl Windows {
    /// The flat walk, for stride 1 on a plane with outputs.
    fn flat(&self) -> Option<Flat> {
        let (hp, wp) = (self.h + 2 * self.padding.0, self.w + 2 * self.padding.1);
        let oh = (hp + 1).checked_sub(self.dilation.0 * (self.kernel.0 - 1) + 1)?;
        (self.stride == (1, 1) && oh > 0 && self.ow > 0 && self.h > 0 && self.w > 0).then_some(
            Flat {
                walk: *self,
                oh,
                wp,
                hp,
            },
        )
    }
}

simd! {
    /// `out = start + Σ taps[p, q] · image(window at tap p, q)` over one plane:
    /// tap by tap (each tap's column range worked out once), each output row
    /// adding the tap times a run of one image row.
    pub(crate) fn window_forward<F: Real>(
        walk: &Windows,
        image: &[F],
        taps: &[F],
        start: F,
        out: &mut [F],
        scratch: &mut Vec<F>,
    ) {
        let (kh, kw) = walk.kernel;
        let (w, ow, stride) = (walk.w, walk.ow, walk.stride.1);
        if let Some(flat) = walk.flat() {
            // Stride 1: on the zero-padded plane, tap (p, q) adds a constant
            // offset of the flat index, so each tap is one long loop over
            // the plane (output rows `wp` apart) instead of a short one a
            // row; every output gets the same additions in the same order
            // as below.
            let (padded, wide) = flat.split(scratch);
            flat.pad(image, padded);
            wide.fill(start);
            for p in 0..kh {
                for q in 0..kw {
                    let tap = taps[p * kw + q];
                    let run = &padded[flat.offset(p, q)..][..wide.len()];
                    for (o, &v) in wide.iter_mut().zip(run) {
                        *o += tap * v;
                    }
                }
            }
            flat.narrow(wide, out);
            return;
        }
        out.fill(start);
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
    /// The backward of [`window_forward`] for one plane, with `grad =
    /// (grad_image, overwrite)`: `grad_image +=` each tap times the rows of
    /// `g` it produced (`grad_image =` that sum with `overwrite`: whatever
    /// it held is not read), and `grad_taps +=` each tap's dot product of
    /// `g` with the image runs it read ([`LANES`] accumulators, as every
    /// reduction of the crate).
    pub(crate) fn window_backward<F: Real>(
        walk: &Windows,
        image: &[F],
        g: &[F],
        taps: &[F],
        grad: (&mut [F], bool),
        grad_taps: &mut [F],
        scratch: &mut Vec<F>,
    ) {
        let (grad_image, overwrite) = grad;
        if let Some(flat) = walk.flat() {
            // As in the forward: the image and its gradient padded, `g`
            // widened (zeros in its gap columns, which so add nothing).
            let padded_len = flat.hp * flat.wp;
            scratch.resize(2 * padded_len + flat.len(), F::zero());
            let (padded, rest) = scratch.split_at_mut(padded_len);
            let (grad_padded, wide) = rest.split_at_mut(padded_len);
            flat.pad(image, padded);
            grad_padded.fill(F::zero());
            flat.widen(g, wide);
            let (kh, kw) = walk.kernel;
            for p in 0..kh {
                for q in 0..kw {
                    let tap = taps[p * kw + q];
                    let offset = flat.offset(p, q);
                    let run = &padded[offset..][..wide.len()];
                    dot_into(wide, run, &mut grad_taps[p * kw + q]);
                    let grad_run = &mut grad_padded[offset..][..wide.len()];
                    for (d, &g) in grad_run.iter_mut().zip(wide.iter()) {
                        *d += tap * g;
                    }
                }
            }
            flat.add_interior(grad_padded, grad_image, overwrite);
            return;
        }
        if overwrite {
            grad_image.fill(F::zero());
        }
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
