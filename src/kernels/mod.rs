//! The loops that touch every element, compiled once per SIMD target and
//! dispatched at run time.
//!
//! Each loop is plain Rust over slices calling the `#[inline(always)]` math of
//! [`crate::math`] and an activation's [`ElementwiseFn`]; `multiversion`
//! compiles it for AVX-512, AVX2+FMA, NEON and the portable baseline, and
//! calls the best one the CPU supports (detected once, then cached). LLVM
//! vectorises each copy for its target. Reductions keep [`LANES`]
//! independent accumulators, because LLVM may not reassociate a single float sum.
//!
//! The folder, from the bottom up (each file uses only those above it, and
//! [`crate::math`] and [`crate::real`]; nothing here knows about layers):
//!
//! | file | what |
//! |---|---|
//! | `mod.rs` | the `simd!` dispatch, the multiply-add flavour, threading ([`chunked`]), one-pass result and cache ([`teed`]) |
//! | `prefetch.rs` | software prefetch of the inputs that loops stream from memory |
//! | `staging.rs` | two-loop evaluation of `exp`-based functions over L1 blocks |
//! | `reduce.rs` | maxima, dot products and sums with independent accumulators |
//! | `elementwise.rs` | [`ElementwiseFn`], and the forward and backward loops over any layout |
//! | `steps.rs` | one bit an element for activations whose derivative is a step (ReLU) |
//! | `short_rows.rs` | rows of fewer than [`SHORT_ROW`] elements as two overlapping vectors |
//! | `softmax.rs` | row-wise softmax and softmin, forward and backward |
//! | `log_softmax.rs` | row-wise log-softmax, forward and backward |
//! | `normalize.rs` | batch normalisation over one plane: sums in `f64`, the normalisation and its gradient |
//! | `windows.rs` | a 2-D kernel slid over an image plane (depthwise convolution), forward and backward |
//!
//! The layout-generic entry points ([`map_unary`], [`map_backward`]) take the
//! slice path whenever all arrays share one contiguous memory order, and
//! otherwise gather blocks into contiguous buffers for the same slice code.

// Macros first: textual scope.
/// Compiles a function once per SIMD target and dispatches to the best one the
/// CPU has, detected at run time: AVX-512, AVX2+FMA, NEON, or the portable
/// baseline; [`simd_level`] can hold it to a lower level (`NDLAYERS_SIMD`).
///
/// (multiversion enables its AVX-512 target only on CPUs with the Ice Lake /
/// Zen 4 feature set, where 512-bit code does not lower the clock; older
/// AVX-512 CPUs run the AVX2 code.)
///
/// Each level is its own multiversioned copy of the body, offering only the
/// targets up to that level; the outer function picks the copy once per call
/// (an atomic load), and the copy's own dispatcher the best target it allows.
macro_rules! simd {
    ($(#[$attr:meta])* $vis:vis fn $name:ident <$($g:ident : $bound:path),*> ($($arg:ident : $ty:ty),* $(,)?) $(-> $ret:ty)? $body:block) => {
        $(#[$attr])*
        $vis fn $name<$($g: $bound),*>($($arg: $ty),*) $(-> $ret)? {
            #[multiversion(targets(
                "x86_64+avx512f+avx512vl+avx512dq+avx512bw+avx2+fma",
                "x86_64+avx2+fma",
                "aarch64+neon"
            ))]
            fn best<$($g: $bound),*>($($arg: $ty),*) $(-> $ret)? $body

            #[multiversion(targets("x86_64+avx2+fma", "aarch64+neon"))]
            fn avx2<$($g: $bound),*>($($arg: $ty),*) $(-> $ret)? $body

            // No x86-64 target: the default copy, x86-64's baseline (SSE2, no FMA).
            #[multiversion(targets("aarch64+neon"))]
            fn baseline<$($g: $bound),*>($($arg: $ty),*) $(-> $ret)? $body

            match crate::kernels::simd_level() {
                crate::kernels::SimdLevel::Best => best($($arg),*),
                crate::kernels::SimdLevel::Avx2 => avx2($($arg),*),
                crate::kernels::SimdLevel::Baseline => baseline($($arg),*),
            }
        }
    };
}

/// Declares the type `$flavour` as the multiply-add flavour of the SIMD target
/// a `simd!` function is being compiled for: [`Fused`](crate::math::Fused)
/// where the target has an FMA instruction (x86-64 with FMA, every aarch64),
/// [`Unfused`](crate::math::Unfused) where `mul_add` would be a call into
/// libm's software `fma` for every operation. Only valid inside `simd!`.
macro_rules! mul_add_flavour {
    ($flavour:ident) => {
        #[multiversion::target::target_cfg(any(target_feature = "fma", target_arch = "aarch64"))]
        type $flavour = crate::math::Fused;
        #[multiversion::target::target_cfg(not(any(
            target_feature = "fma",
            target_arch = "aarch64"
        )))]
        type $flavour = crate::math::Unfused;
    };
}

mod elementwise;
mod log_softmax;
mod normalize;
mod prefetch;
mod reduce;
mod short_rows;
mod softmax;
mod staging;
mod steps;
mod windows;

pub use elementwise::{DerivativeFrom, ElementwiseFn, ElementwiseKernel};
pub(crate) use elementwise::{forward_slice, map_backward, map_unary, map_unary_in_place};
pub(crate) use log_softmax::{log_softmax_backward_rows, log_softmax_rows};
pub(crate) use normalize::{
    grad_sums_f64, normalize, normalize_backward, squared_deviations_f64, sum_f64,
};
pub(crate) use reduce::{sum, total};
pub(crate) use softmax::{softmax_backward_rows, softmax_rows};
pub(crate) use steps::{WORD, backward_chunks, forward_chunks};
pub(crate) use windows::{Windows, window_backward, window_forward};

use std::mem::MaybeUninit;
use std::sync::OnceLock;

use multiversion::multiversion;

use crate::real::Real;

/// The highest SIMD level the crate's own kernels (activations, softmax,
/// log-softmax) may use; see [`simd_level`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SimdLevel {
    /// The best the CPU has: AVX-512 (Ice Lake / Zen 4 feature set), AVX2+FMA or NEON.
    Best,
    /// At most AVX2+FMA (NEON on aarch64).
    Avx2,
    /// The portable baseline: SSE2 and no FMA on x86-64 (NEON on aarch64).
    Baseline,
}

/// The level the kernels run at, read once from the environment variable
/// `NDLAYERS_SIMD`: `avx2` or `baseline` hold them to that level on a CPU
/// that has a higher one (for reproducible numbers across machines, runs
/// free of AVX-512 clock changes, or measuring every path on one machine);
/// unset, empty or `best` is the best the CPU has. Another value is treated
/// as `best`. The matrix products of [`Dense`](crate::Dense) (the `gemm`
/// crate) dispatch on their own and are not affected.
///
/// Results differ between levels only where the multiply-add flavour does:
/// AVX2 and AVX-512 both fuse, the x86-64 baseline does not; every level is
/// within the documented accuracy bounds.
pub fn simd_level() -> SimdLevel {
    static LEVEL: OnceLock<SimdLevel> = OnceLock::new();
    *LEVEL.get_or_init(|| match std::env::var("NDLAYERS_SIMD").as_deref() {
        Ok("avx2") => SimdLevel::Avx2,
        Ok("baseline") => SimdLevel::Baseline,
        _ => SimdLevel::Best,
    })
}

/// An element a kernel writes: one that holds a value already (a layer's
/// buffer, a caller's array), or uninitialised memory (a fresh owned result,
/// which is then never cleared before being overwritten).
pub(crate) trait Slot<F>: Send {
    /// Stores `value`.
    fn set(&mut self, value: F);
}

impl<F: Real> Slot<F> for F {
    #[inline(always)]
    fn set(&mut self, value: F) {
        *self = value;
    }
}

impl<F: Real> Slot<F> for MaybeUninit<F> {
    #[inline(always)]
    fn set(&mut self, value: F) {
        self.write(value);
    }
}

/// Independent accumulators in a reduction (maxima, dot products): two
/// AVX-512 or four AVX2 registers of `f32`, so that the 4-cycle adds of one
/// accumulator do not set the pace. The same at every level, so the bits are
/// too. Fewer lanes let the adds' latency set the pace; more gained nothing;
/// the baseline (SSE2) level, 8 registers of 4 lanes, pays for this with
/// spills (the CHANGELOG has the measurements).
pub(crate) const LANES: usize = 32;

/// Below this many elements a loop stays on the calling thread, so that small
/// batches never pay for waking workers (PyTorch's grain size is 32768 too).
#[cfg(feature = "rayon")]
const PARALLEL_MIN: usize = 32 * 1024;

/// With the `rayon` feature, the length of the pieces (a multiple of `unit`,
/// one per thread, each at least [`PARALLEL_MIN`]) that `len` elements are
/// cut into; `None` where they stay on the calling thread.
#[cfg(feature = "rayon")]
fn parallel_piece(len: usize, unit: usize) -> Option<usize> {
    (len >= PARALLEL_MIN && unit > 0).then(|| {
        let per_thread = len.div_ceil(rayon::current_num_threads()).max(PARALLEL_MIN);
        per_thread.div_ceil(unit) * unit
    })
}

/// Runs `f` over `out` and the matching parts of `inputs`, cut into pieces of a
/// multiple of `unit` elements (a softmax row, or 1).
///
/// With the `rayon` feature and at least [`PARALLEL_MIN`] elements, the pieces
/// (one per thread, each at least `PARALLEL_MIN`) run in parallel; otherwise
/// `f` sees the whole slices at once.
pub(crate) fn chunked<F: Real, O: Send, const N: usize>(
    inputs: [&[F]; N],
    out: &mut [O],
    unit: usize,
    f: impl Fn([&[F]; N], &mut [O]) + Sync,
) {
    #[cfg(feature = "rayon")]
    if let Some(piece) = parallel_piece(out.len(), unit) {
        use rayon::prelude::*;
        out.par_chunks_mut(piece).enumerate().for_each(|(i, out)| {
            let start = i * piece;
            f(inputs.map(|input| &input[start..start + out.len()]), out)
        });
        return;
    }
    let _ = unit;
    f(inputs, out)
}

simd! {
    /// `to = from`, vectorised for the target (a plain loop outside `simd!`
    /// is compiled for baseline x86-64: 16-byte moves).
    pub(crate) fn copy_into<F: Real, O: Slot<F>>(from: &[F], to: &mut [O]) {
        for (to, &v) in to.iter_mut().zip(from) {
            to.set(v);
        }
    }
}

/// Bytes of `cache` that [`teed`] computes before copying them to `y`: 16 KiB,
/// so the copy reads L1.
const TEE_BYTES: usize = 16 << 10;

/// `cache = y = f(x)`, for a row kernel `f` (whole units of `unit` elements)
/// and slices of one length: one pass over memory that computes each block
/// into `cache` and copies it to `y` while it is in L1 (or L2, for a unit
/// larger than a block). Every element of `y` is written.
///
/// The owned forward of the layers that cache their output, where computing
/// into the cache and then copying the whole of it out would read the cache
/// back from memory (for arrays larger than L2; on L2-resident ones the two
/// are equal).
pub(crate) fn teed<F: Real>(
    x: &[F],
    cache: &mut [F],
    y: &mut [MaybeUninit<F>],
    unit: usize,
    f: impl Fn(&[F], &mut [F]) + Sync,
) {
    debug_assert!(x.len() == cache.len() && x.len() == y.len());
    let unit = unit.max(1);
    let block = (TEE_BYTES / std::mem::size_of::<F>() / unit).max(1) * unit;
    chunked_pair(x, (cache, y), unit, |x, cache, y| {
        let blocks = x.chunks(block).zip(cache.chunks_mut(block));
        for ((xb, cb), yb) in blocks.zip(y.chunks_mut(block)) {
            f(xb, cb);
            copy_into(cb, yb);
        }
    });
}

/// [`chunked`] for one input and two outputs of its length (a result and a
/// layer's cache), cut into pieces of a multiple of `unit` elements.
fn chunked_pair<F: Real, O: Send, P: Send>(
    input: &[F],
    (first, second): (&mut [O], &mut [P]),
    unit: usize,
    f: impl Fn(&[F], &mut [O], &mut [P]) + Sync,
) {
    #[cfg(feature = "rayon")]
    if let Some(piece) = parallel_piece(input.len(), unit) {
        use rayon::prelude::*;
        input
            .par_chunks(piece)
            .zip(first.par_chunks_mut(piece))
            .zip(second.par_chunks_mut(piece))
            .for_each(|((input, first), second)| f(input, first, second));
        return;
    }
    let _ = unit;
    f(input, first, second)
}
