//! Software prefetch for the loops that stream their inputs from memory.
//!
//! Each streaming loop, as it starts a block of its input, asks the CPU to
//! load the cache lines [`AHEAD`] bytes further on, so that they arrive while
//! the block is computed rather than when the loop reaches them.
//!
//! Why: the CPUs' own stream prefetchers do not always keep up, and the cost
//! shows where a kernel is bound by arithmetic and by memory at once (the
//! `exp`-based forwards over arrays larger than L2 gain most; the CHANGELOG
//! has the measurements). Memory-bound loops gain little; ReLU's and the
//! softmax rows' loops are left without (no gain, and a burst per block of
//! short softmax rows cost more than it saved). Any distance from 1 to 8 KiB
//! does; asking for the output lines too (`prefetchw`) gained nothing.
//!
//! A prefetch is only a hint: it never faults and never changes what a
//! program computes, so results are the same bits with or without it. On
//! other architectures [`prefetch`] does nothing.

/// How far ahead of the block being computed the inputs are prefetched.
const AHEAD: usize = 4 << 10;

/// Elements a streaming loop computes between two calls of [`prefetch`]
/// (where it has no blocks of its own): 1 KiB of `f32`, 16 cache lines.
pub(super) const STREAM_BLOCK: usize = 256;

/// Bytes in a cache line (x86-64).
#[cfg(target_arch = "x86_64")]
const LINE: usize = 64;

/// Asks the CPU to start loading the cache lines of `s` that lie [`AHEAD`]
/// bytes beyond `s[from..from + len]` (those inside `s`), into L1.
///
/// Called once per block of a loop over `s`, with consecutive blocks, it
/// touches every line of `s` past its first `AHEAD` bytes: a line that the
/// stride of one call skips at its end holds the start of the next call's range.
#[inline(always)]
pub(super) fn prefetch<T>(s: &[T], from: usize, len: usize) {
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::x86_64::{_MM_HINT_T0, _mm_prefetch};

        let base = s.as_ptr().cast::<i8>();
        let size = std::mem::size_of::<T>();
        for offset in ahead(std::mem::size_of_val(s), size, from, len).step_by(LINE) {
            // SAFETY: `_mm_prefetch` needs SSE, part of x86-64 itself, so
            // every CPU that runs this code has it; `offset` is below the
            // byte length of `s` (`ahead`), so `add` stays inside `s`; and a
            // prefetch reads nothing the program sees and never faults.
            unsafe { _mm_prefetch::<_MM_HINT_T0>(base.add(offset)) }
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = (s, from, len);
}

/// The byte offsets [`prefetch`] asks for, in a slice of `bytes` bytes of
/// `size`-byte elements: those of elements `from..from + len`, moved
/// [`AHEAD`] bytes on and cut at the end of the slice (saturating, so no
/// arguments overflow).
#[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
fn ahead(bytes: usize, size: usize, from: usize, len: usize) -> std::ops::Range<usize> {
    let start = from.saturating_mul(size).saturating_add(AHEAD).min(bytes);
    let end = start.saturating_add(len.saturating_mul(size)).min(bytes);
    start..end
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefetched_bytes_are_ahead_and_inside_the_slice() {
        // 4096 f32: the block at 0 asks for bytes 4 KiB on.
        assert_eq!(ahead(16384, 4, 0, 256), 4096..5120);
        assert_eq!(ahead(16384, 8, 256, 256), 6144..8192);
        // Cut at the end, and nothing once past it (the last 4 KiB of a loop).
        assert_eq!(ahead(16384, 4, 3000, 256), 16096..16384);
        assert_eq!(ahead(16384, 4, 3840, 256), 16384..16384);
        assert_eq!(ahead(0, 4, 0, 0), 0..0);
        // Sizes whose products overflow saturate instead.
        assert_eq!(ahead(100, usize::MAX, usize::MAX, usize::MAX), 100..100);
        for (bytes, from, len) in [(64, 0, 16), (5000, 1, 1), (1 << 20, 1 << 17, 1 << 20)] {
            let range = ahead(bytes, 4, from, len);
            assert!(
                range.start <= range.end && range.end <= bytes,
                "{range:?} of {bytes}"
            );
        }
    }

    #[test]
    fn prefetch_accepts_any_block_of_any_slice() {
        // The hint has no effect to observe; this runs the `unsafe` call on
        // every kind of range (empty slice, zero-sized type, past the end).
        let v = vec![1.0f32; 5000];
        for (from, len) in [
            (0, 0),
            (0, 256),
            (4000, 256),
            (4999, 1),
            (6000, 10),
            (0, usize::MAX),
        ] {
            prefetch(&v, from, len);
        }
        prefetch::<f64>(&[], 0, 256);
        prefetch(&[(); 1000], 0, 1000);
        assert_eq!(v.iter().sum::<f32>(), 5000.0);
    }
}
