//! The kernels of activations whose derivative is a step, decided by `x`
//! alone (ReLU: `1` where `x > 0`, else `0`): forward records one bit an
//! element, and backward reads those bits instead of a cached array. The
//! layer's record of them (shape, order, whether current) is
//! `activation::steps::Steps`.

use multiversion::multiversion;

use super::{ElementwiseKernel, Slot};
use crate::math::MulAdd;
use crate::real::Real;

/// Elements a mask word holds: bit `i` of word `w` is element `64 w + i`, in
/// the memory order of the forward's input.
pub(crate) const WORD: usize = 64;

/// Inside a `simd!` body: defines `pack(&[u8; WORD]) -> u64`, whose bit `i`
/// is set where byte `i` is (each byte 0 or 1), with the mask instructions of
/// the target being compiled. Written as a loop of shifts and ors, LLVM
/// vectorises it into about 100 instructions per word, which nearly doubled
/// ReLU's forward; one `vptestmb` (AVX-512) or four `pmovmskb` (SSE2, every
/// x86-64) do it. Elsewhere, a multiplication per eight bytes.
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
fn forward_word<M: MulAdd, F: Real, A: ElementwiseKernel<F>, O: Slot<F>>(
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
    fn forward_slice<F: Real, A: ElementwiseKernel<F>, O: Slot<F>>(
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

/// Elements a thread takes at least, as in [`super::chunked`]; a whole number of words.
#[cfg(feature = "rayon")]
const PARALLEL_MIN: usize = super::PARALLEL_MIN;

/// `y = act(x)` over slices of one length, recording in `bits` (one word
/// per [`WORD`] elements, bit `i` of word `w` for element `WORD w + i`)
/// whether each `act.step(x)` holds, and setting `nan` if any `x` is NaN.
/// Split across threads like [`super::chunked`] at word boundaries (with
/// the `rayon` feature).
pub(crate) fn forward_chunks<F: Real, A: ElementwiseKernel<F>, O: Slot<F>>(
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

/// `out = g · derivatives[0]` where the recorded bit is set, `g ·
/// derivatives[1]` where it is not, over slices of one length in the bits'
/// order; split as [`forward_chunks`].
pub(crate) fn backward_chunks<F: Real, O: Slot<F>>(
    derivatives: [F; 2],
    bits: &[u64],
    g: &[F],
    out: &mut [O],
) {
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
