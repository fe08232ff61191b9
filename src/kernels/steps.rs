//! Activations whose derivative is a step, decided by `x` alone
//! (ReLU: `1` where `x > 0`, else `0`): forward records one bit an element
//! ([`Steps`]), and backward reads those bits instead of a cached array.
//!
//! Why: ReLU's owned forward used to compute into its cache and copy the
//! cache out, four memory streams (read `x`, write the cache, read it, write
//! the result) where PyTorch has two. With a mask it has two and 1/32 of one
//! (`f32`), and backward reads `g` and the mask instead of `g` and `y`.
//!
//! The bits cannot say NaN, whose gradient is NaN: a forward that meets one
//! reports it, and the layer then caches the values as before.

use multiversion::multiversion;
use ndarray::{ArrayView, ArrayViewMut, Dimension};

use super::{ElementwiseFn, Slot};
use crate::layer::LayerError;
use crate::math::MulAdd;
use crate::real::Real;

/// Elements a mask word holds: bit `i` of word `w` is element `64 w + i`, in
/// the memory order of the forward's input.
const WORD: usize = 64;

/// One bit an element: the step [`ElementwiseFn::step`] of each `x` in the
/// last forward, in that input's memory order (row- or column-major).
#[derive(Clone, Debug, Default)]
pub(crate) struct Steps<D> {
    bits: Vec<u64>,
    dim: D,
    fortran: bool,
    /// Whether the bits are the last forward's (else the layer cached values).
    current: bool,
}

/// `true` if `a`'s elements, in memory order, are its elements in row-major
/// order (`fortran = false`) or in column-major order (`true`).
fn in_order<T, D: Dimension>(a: &ArrayView<'_, T, D>, fortran: bool) -> bool {
    if fortran {
        a.t().is_standard_layout()
    } else {
        a.is_standard_layout()
    }
}

/// Inside a `simd!` body: defines `pack(&[u8; WORD]) -> u64`, whose bit `i`
/// is set where byte `i` is (each byte 0 or 1), with the mask instructions of
/// the target being compiled. Written as a loop of shifts and ors, LLVM
/// vectorises it into about 100 instructions per word (ReLU forward 256x4096
/// `f32` view, AMD EPYC Zen 4, AVX-512, one thread: 183 µs, against 96 µs for
/// the values alone, and 114 µs with this); one `vptestmb` (AVX-512) or four
/// `pmovmskb` (SSE2, every x86-64) do it. Elsewhere, a multiplication per
/// eight bytes.
macro_rules! bit_packer {
    () => {
        #[multiversion::target::target_cfg(all(
            target_arch = "x86_64",
            target_feature = "avx512bw"
        ))]
        #[target_feature(enable = "avx512f,avx512bw")]
        #[inline]
        fn pack(bytes: &[u8; WORD]) -> u64 {
            use std::arch::x86_64::{_mm512_loadu_si512, _mm512_test_epi8_mask};
            // SAFETY: `bytes` is 64 readable bytes, and the load is unaligned.
            let v = unsafe { _mm512_loadu_si512(bytes.as_ptr().cast()) };
            _mm512_test_epi8_mask(v, v)
        }

        #[multiversion::target::target_cfg(all(
            target_arch = "x86_64",
            not(target_feature = "avx512bw")
        ))]
        #[inline(always)]
        fn pack(bytes: &[u8; WORD]) -> u64 {
            use std::arch::x86_64::{
                _mm_loadu_si128, _mm_movemask_epi8, _mm_setzero_si128, _mm_sub_epi8,
            };
            let (quarters, _) = bytes.as_chunks::<16>();
            let mut word = 0;
            for (j, quarter) in quarters.iter().enumerate() {
                // SAFETY: SSE2 is part of x86-64 itself, so these instructions
                // exist on every CPU that runs this code; `quarter` is 16
                // readable bytes, and the load is unaligned. (0 - 1 = 0xff
                // sets the top bit of each byte, the bit movemask collects.)
                let top_bits = unsafe {
                    let v = _mm_loadu_si128(quarter.as_ptr().cast());
                    _mm_movemask_epi8(_mm_sub_epi8(_mm_setzero_si128(), v))
                };
                word |= u64::from(top_bits as u16) << (16 * j);
            }
            word
        }

        /// Per eight bytes, the multiplication moves byte `k` (bit `8k`) to
        /// bit `56 + k`, with no carries since each byte is 0 or 1.
        #[multiversion::target::target_cfg(not(target_arch = "x86_64"))]
        #[inline(always)]
        fn pack(bytes: &[u8; WORD]) -> u64 {
            const GATHER: u64 = 0x0102_0408_1020_4080;
            let (groups, _) = bytes.as_chunks::<8>();
            let mut word = 0;
            for (j, group) in groups.iter().enumerate() {
                word |= (u64::from_le_bytes(*group).wrapping_mul(GATHER) >> 56) << (8 * j);
            }
            word
        }
    };
}

/// `y = act(x)` for one block of up to [`WORD`] elements; `steps` gets a
/// byte 0 or 1 an element, and `nans` a nonzero byte for each NaN.
/// `#[inline(always)]`, so that a whole word (constant length) unrolls into
/// vector compares.
#[inline(always)]
fn forward_word<M: MulAdd, F: Real, A: ElementwiseFn<F>, O: Slot<F>>(
    act: &A,
    x: &[F],
    y: &mut [O],
    nans: &mut [u8; WORD],
) -> [u8; WORD] {
    let mut steps = [0; WORD];
    for (((&x, y), step), nan) in x.iter().zip(y).zip(&mut steps).zip(nans.iter_mut()) {
        y.set(act.value_with::<M>(x));
        *step = u8::from(act.step(x));
        *nan |= u8::from(x.is_nan());
    }
    steps
}

simd! {
    fn forward_slice<F: Real, A: ElementwiseFn<F>, O: Slot<F>>(
        act: &A,
        x: &[F],
        y: &mut [O],
        bits: &mut [u64],
        nan: &mut bool,
    ) {
        mul_add_flavour!(M);
        bit_packer!();
        let (x_words, x_tail) = x.as_chunks::<WORD>();
        let (y_words, y_tail) = y.as_chunks_mut::<WORD>();
        let mut nans = [0; WORD];
        for ((x, y), bits) in x_words.iter().zip(y_words).zip(bits.iter_mut()) {
            *bits = pack(&forward_word::<M, _, _, _>(act, x, y, &mut nans));
        }
        if let Some(last) = bits.get_mut(x_words.len()) {
            *last = pack(&forward_word::<M, _, _, _>(act, x_tail, y_tail, &mut nans));
        }
        *nan |= nans.iter().any(|&n| n != 0);
    }
}

/// `out = g · act'` for one block of up to [`WORD`] elements and its word.
#[inline(always)]
fn backward_word<F: Real, O: Slot<F>>(steps: u64, [high, low]: [F; 2], g: &[F], out: &mut [O]) {
    for (i, (&g, out)) in g.iter().zip(out).enumerate() {
        out.set(g * if steps >> i & 1 == 1 { high } else { low });
    }
}

simd! {
    fn backward_slice<F: Real, O: Slot<F>>(derivatives: [F; 2], bits: &[u64], g: &[F], out: &mut [O]) {
        let (g_words, g_tail) = g.as_chunks::<WORD>();
        let (out_words, out_tail) = out.as_chunks_mut::<WORD>();
        for ((g, out), &steps) in g_words.iter().zip(out_words).zip(bits) {
            backward_word(steps, derivatives, g, out);
        }
        if let Some(&steps) = bits.get(g_words.len()) {
            backward_word(steps, derivatives, g_tail, out_tail);
        }
    }
}

impl<D: Dimension> Steps<D> {
    /// Whether [`Self::forward`] takes `x`: it must be contiguous in row- or
    /// column-major order (other layouts cache values).
    pub(crate) fn fit<F>(x: &ArrayView<'_, F, D>) -> bool {
        in_order(x, false) || in_order(x, true)
    }

    /// `y = act(x)`, recording the steps of `x`; every element of `y` is
    /// written. `x` must [`fit`](Self::fit), and `y` have its shape and memory
    /// order. Returns whether the bits are usable: `false` if `x` holds a NaN
    /// (the caller then caches `y`).
    pub(crate) fn forward<F: Real, A: ElementwiseFn<F>, O: Slot<F>>(
        &mut self,
        act: &A,
        x: ArrayView<'_, F, D>,
        mut y: ArrayViewMut<'_, O, D>,
    ) -> bool {
        let fortran = !in_order(&x, false);
        let (Some(xs), true, Some(ys)) = (
            x.as_slice_memory_order(),
            in_order(&y.view(), fortran),
            y.as_slice_memory_order_mut(),
        ) else {
            unreachable!("Steps::forward needs contiguous x and y in one order: callers check fit")
        };
        // Only a longer mask zeroes its new words; the kernel writes every word.
        self.bits.resize(xs.len().div_ceil(WORD), 0);
        let mut nan = false;
        forward_chunks(act, xs, ys, &mut self.bits, &mut nan);
        self.dim = x.raw_dim();
        self.fortran = fortran;
        self.current = !nan;
        self.current
    }

    /// Marks the bits stale: the last forward cached values.
    pub(crate) fn forget(&mut self) {
        self.current = false;
    }

    /// Whether the last forward recorded bits.
    pub(crate) fn current(&self) -> bool {
        self.current
    }

    /// The shape and memory order of the recorded forward, once `g` has its
    /// shape (the error names `layer`).
    pub(crate) fn layout<F>(
        &self,
        layer: &'static str,
        g: &ArrayView<'_, F, D>,
    ) -> Result<(D, bool), LayerError> {
        LayerError::check_shape(layer, "grad_output", self.dim.slice(), g.shape())?;
        Ok((self.dim.clone(), self.fortran))
    }

    /// `out = g · act'(x)` for the recorded `x`, writing every element of
    /// `out`; `g` and `out` must have the recorded shape, in any layout.
    pub(crate) fn backward<F: Real, A: ElementwiseFn<F>, O: Slot<F>>(
        &self,
        act: &A,
        g: ArrayView<'_, F, D>,
        mut out: ArrayViewMut<'_, O, D>,
    ) {
        debug_assert!(self.current && g.shape() == self.dim.slice());
        debug_assert_eq!(g.shape(), out.shape());
        let derivatives = [act.step_derivative(true), act.step_derivative(false)];
        if in_order(&g, self.fortran)
            && in_order(&out.view(), self.fortran)
            && let (Some(gs), Some(os)) =
                (g.as_slice_memory_order(), out.as_slice_memory_order_mut())
        {
            backward_chunks(derivatives, &self.bits, gs, os);
            return;
        }
        // Any other layout: element by element in the bits' order, which is
        // the logical order of the axes reversed for column-major bits. The
        // same single multiplication per element, so the same bits as above.
        let (g, out) = if self.fortran {
            (g.reversed_axes(), out.reversed_axes())
        } else {
            (g, out)
        };
        for (i, (&g, out)) in g.iter().zip(out).enumerate() {
            let high = self.bits[i / WORD] >> (i % WORD) & 1 == 1;
            out.set(g * derivatives[usize::from(!high)]);
        }
    }
}

/// Elements a thread takes at least, as in [`super::chunked`]; a whole number of words.
#[cfg(feature = "rayon")]
const PARALLEL_MIN: usize = super::PARALLEL_MIN;

/// [`forward_slice`] over the slices, split across threads like
/// [`super::chunked`] at word boundaries (with the `rayon` feature).
fn forward_chunks<F: Real, A: ElementwiseFn<F>, O: Slot<F>>(
    act: &A,
    x: &[F],
    y: &mut [O],
    bits: &mut [u64],
    nan: &mut bool,
) {
    #[cfg(feature = "rayon")]
    if let Some(piece) = piece(x.len()) {
        use rayon::prelude::*;
        let nans = x
            .par_chunks(piece)
            .zip(y.par_chunks_mut(piece))
            .zip(bits.par_chunks_mut(piece / WORD))
            .map(|((x, y), bits)| {
                let mut nan = false;
                forward_slice(act, x, y, bits, &mut nan);
                nan
            })
            .reduce(|| false, |a, b| a | b);
        *nan |= nans;
        return;
    }
    forward_slice(act, x, y, bits, nan);
}

/// [`backward_slice`] over the slices, split as [`forward_chunks`].
fn backward_chunks<F: Real, O: Slot<F>>(derivatives: [F; 2], bits: &[u64], g: &[F], out: &mut [O]) {
    #[cfg(feature = "rayon")]
    if let Some(piece) = piece(g.len()) {
        use rayon::prelude::*;
        g.par_chunks(piece)
            .zip(out.par_chunks_mut(piece))
            .zip(bits.par_chunks(piece / WORD))
            .for_each(|((g, out), bits)| backward_slice(derivatives, bits, g, out));
        return;
    }
    backward_slice(derivatives, bits, g, out);
}

/// The elements per thread for `len` elements, a multiple of [`WORD`], or
/// `None` to stay on the calling thread.
#[cfg(feature = "rayon")]
fn piece(len: usize) -> Option<usize> {
    (len >= PARALLEL_MIN).then(|| {
        len.div_ceil(rayon::current_num_threads())
            .max(PARALLEL_MIN)
            .next_multiple_of(WORD)
    })
}
