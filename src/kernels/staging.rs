//! Two-loop evaluation of the functions built on `exp`: the argument
//! reductions of a block are stored, then finished (see [`staged`]).

use super::Slot;
use super::prefetch::prefetch;
use crate::math::{self, MulAdd, Reduced};
use crate::real::Real;

/// Elements in a block of [`staged`]: its two stack buffers (2 KiB for `f32`)
/// stay in L1, while a block is long enough to repay the second loop's setup
/// (64 lost most of the gain, 1024 some of it).
const STAGE_BLOCK: usize = 256;

/// Slices shorter than this are computed in one loop by [`staged`]: a
/// 256-element block's worth of setup (two stack buffers) is not repaid
/// below it (rows of 64 were a third slower staged).
const MIN_STAGED: usize = 256;

/// A stack buffer on its own cache lines, so that no vector load or store
/// of it is split across two.
#[repr(align(64))]
pub(super) struct CacheAligned<T>(pub(super) T);

/// `y = finish(x, reduce(x))`, as two loops over each block of [`STAGE_BLOCK`]
/// elements: the first stores the argument reductions, the second reads them
/// back and finishes. Same operations, so the same bits as one loop.
///
/// Why: in one loop, every element carries a dependency chain of about 50
/// cycles (sigmoid: the reduction, the polynomial, a division), and a
/// floating-point scheduler that holds only a few iterations of it runs the
/// loop at the chain's pace, not the pipes'. Each stage alone has a chain
/// half as long; the round trip through L1 costs two stores and two loads
/// per vector. The buffers must be cache-line aligned: at 8 bytes off, every
/// other vector store is split across two lines and the gain is gone.
#[inline(always)]
pub(super) fn staged<F: Real, O: Slot<F>>(
    x: &[F],
    y: &mut [O],
    reduce: impl Fn(F) -> Reduced<F>,
    finish: impl Fn(F, Reduced<F>) -> F,
) {
    staged_pairs(
        x,
        x,
        y,
        |x, _| reduce(x),
        |x, _, reduced| finish(x, reduced),
    );
}

/// [`staged`] with a second input: `y = finish(a, b, reduce(a, b))`.
#[inline(always)]
pub(super) fn staged_pairs<F: Real, O: Slot<F>>(
    a: &[F],
    b: &[F],
    y: &mut [O],
    reduce: impl Fn(F, F) -> Reduced<F>,
    finish: impl Fn(F, F, Reduced<F>) -> F,
) {
    if a.len() < MIN_STAGED {
        // Short slices (a row of a strided matrix or of a softmax) skip the
        // stage buffers, whose setup would cost more than staging saves.
        for (y, (&a, &b)) in y.iter_mut().zip(a.iter().zip(b)) {
            y.set(finish(a, b, reduce(a, b)));
        }
        return;
    }
    let mut shifted = CacheAligned([F::zero(); STAGE_BLOCK]);
    let mut r = CacheAligned([F::zero(); STAGE_BLOCK]);
    let blocks = a.chunks(STAGE_BLOCK).zip(b.chunks(STAGE_BLOCK));
    for (i, ((ab, bb), yb)) in blocks.zip(y.chunks_mut(STAGE_BLOCK)).enumerate() {
        prefetch(a, i * STAGE_BLOCK, ab.len());
        if !std::ptr::eq(a, b) {
            prefetch(b, i * STAGE_BLOCK, bb.len());
        }
        let (shifted, r) = (&mut shifted.0[..ab.len()], &mut r.0[..ab.len()]);
        let reductions = shifted.iter_mut().zip(r.iter_mut());
        for ((shifted, r), (&a, &b)) in reductions.zip(ab.iter().zip(bb)) {
            [*shifted, *r] = reduce(a, b);
        }
        let reductions = shifted.iter().zip(&*r);
        for ((y, (&a, &b)), (&shifted, &r)) in yb.iter_mut().zip(ab.iter().zip(bb)).zip(reductions)
        {
            y.set(finish(a, b, [shifted, r]));
        }
    }
}

/// Elements in one AVX-512 vector of `f32`: the unit of [`staged_in_vectors`].
const VECTOR: usize = 16;

/// [`staged`] with every loop over whole vectors of [`VECTOR`] elements
/// (`as_chunks`, constant trip counts) and the last `len % VECTOR` elements
/// as one vector padded with a value of the slice: same operations, so the
/// same bits. For the softmax rows, where LLVM's loops leave a scalar
/// remainder (a row of 1000 `f32` ends in 40 scalar `exp`s, a fifth of the
/// forward time). Not for the sigmoid: its larger body, unrolled 16 times,
/// is not vectorised again.
#[inline(always)]
pub(super) fn staged_in_vectors<F: Real>(
    x: &[F],
    y: &mut [F],
    reduce: impl Fn(F) -> Reduced<F>,
    finish: impl Fn(F, Reduced<F>) -> F,
) {
    let (x_vectors, x_tail) = x.as_chunks::<VECTOR>();
    let (y_vectors, y_tail) = y.as_chunks_mut::<VECTOR>();
    let mut shifted = CacheAligned([[F::zero(); VECTOR]; STAGE_BLOCK / VECTOR]);
    let mut r = CacheAligned([[F::zero(); VECTOR]; STAGE_BLOCK / VECTOR]);
    let blocks = x_vectors.chunks(STAGE_BLOCK / VECTOR);
    for (xb, yb) in blocks.zip(y_vectors.chunks_mut(STAGE_BLOCK / VECTOR)) {
        for ((s, r), x) in shifted.0.iter_mut().zip(r.0.iter_mut()).zip(xb) {
            for i in 0..VECTOR {
                [s[i], r[i]] = reduce(x[i]);
            }
        }
        for ((y, x), (s, r)) in yb.iter_mut().zip(xb).zip(shifted.0.iter().zip(&r.0)) {
            for i in 0..VECTOR {
                y[i] = finish(x[i], [s[i], r[i]]);
            }
        }
    }
    if let Some(&pad) = x_tail.first() {
        let mut x_vector = [pad; VECTOR];
        x_vector[..x_tail.len()].copy_from_slice(x_tail);
        let mut y_vector = [F::zero(); VECTOR];
        for i in 0..VECTOR {
            y_vector[i] = finish(x_vector[i], reduce(x_vector[i]));
        }
        y_tail.copy_from_slice(&y_vector[..y_tail.len()]);
    }
}

/// `y = e^arg(x)` for `arg(x) ≤ 0` (or NaN), by [`staged`].
#[inline(always)]
pub(super) fn staged_exp<M: MulAdd, F: Real>(x: &[F], y: &mut [F], arg: impl Fn(F) -> F) {
    staged(
        x,
        y,
        |x| math::exp_nonpositive_reduce::<M, F>(arg(x)),
        |_, reduced| math::exp_nonpositive_finish::<M, F>(reduced),
    );
}
