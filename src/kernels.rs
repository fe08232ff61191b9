//! The loops that touch every element, compiled once per SIMD target and
//! dispatched at run time.
//!
//! Each loop is plain Rust over slices calling the `#[inline(always)]` math of
//! [`crate::math`] and the activation kernels; `multiversion` compiles it for
//! AVX-512, AVX2+FMA, NEON and the portable baseline, and calls the best one
//! the CPU supports (detected once, then cached). LLVM vectorises each copy
//! for its target. Reductions keep [`LANES`] independent accumulators, because
//! LLVM may not reassociate a single float sum.
//!
//! The layout-generic entry points ([`map_unary`], [`map_backward`]) take the
//! slice path whenever all arrays share one contiguous memory order, and
//! otherwise gather blocks into contiguous buffers for the same slice code.

use multiversion::multiversion;
use ndarray::{ArrayView, ArrayViewMut, Axis, Dimension, Zip};

use crate::activation::ElementwiseFn;
use crate::math::{self, MulAdd, Reduced};
use crate::real::Real;

/// Compiles a function once per SIMD target and dispatches to the best one the
/// CPU has, detected at run time: AVX-512, AVX2+FMA, NEON, or the portable baseline.
///
/// (multiversion enables its AVX-512 target only on CPUs with the Ice Lake /
/// Zen 4 feature set, where 512-bit code does not lower the clock; older
/// AVX-512 CPUs run the AVX2 code.)
macro_rules! simd {
    ($function:item) => {
        #[multiversion(targets(
            "x86_64+avx512f+avx512vl+avx512dq+avx512bw+avx2+fma",
            "x86_64+avx2+fma",
            "aarch64+neon"
        ))]
        $function
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

/// Independent accumulators in a reduction: two AVX2 registers of `f32`,
/// enough to hide the latency of the adds.
const LANES: usize = 16;

/// Partial sums in a compensated sum: its four-operation dependency chain is
/// 12 cycles long, so it takes four AVX2 registers of `f32` to keep it from
/// setting the pace.
const SUM_LANES: usize = 32;

/// Below this many elements a loop stays on the calling thread, so that small
/// batches never pay for waking workers (PyTorch's grain size is 32768 too).
#[cfg(feature = "rayon")]
const PARALLEL_MIN: usize = 32 * 1024;

/// Runs `f` over `out` and the matching parts of `inputs`, cut into pieces of a
/// multiple of `unit` elements (a softmax row, or 1).
///
/// With the `rayon` feature and at least [`PARALLEL_MIN`] elements, the pieces
/// (one per thread, each at least `PARALLEL_MIN`) run in parallel; otherwise
/// `f` sees the whole slices at once.
fn chunked<F: Real, const N: usize>(
    inputs: [&[F]; N],
    out: &mut [F],
    unit: usize,
    f: impl Fn([&[F]; N], &mut [F]) + Sync,
) {
    #[cfg(feature = "rayon")]
    if out.len() >= PARALLEL_MIN && unit > 0 {
        use rayon::prelude::*;
        let per_thread = out
            .len()
            .div_ceil(rayon::current_num_threads())
            .max(PARALLEL_MIN);
        let piece = per_thread.div_ceil(unit) * unit;
        out.par_chunks_mut(piece).enumerate().for_each(|(i, out)| {
            let start = i * piece;
            f(inputs.map(|input| &input[start..start + out.len()]), out)
        });
        return;
    }
    let _ = unit;
    f(inputs, out)
}

/// Rows of a short-row softmax are grouped into blocks of about this many
/// elements, so that `exp` runs vectorised over a whole block that stays in L1.
const SOFTMAX_BLOCK: usize = 2048;

/// Elements in a block of [`staged`]: its two stack buffers (2 KiB for `f32`)
/// stay in L1. (Measured: 64 loses most of the gain, 1024 some of it.)
const STAGE_BLOCK: usize = 256;

/// Slices shorter than this are computed in one loop by [`staged`]: a
/// 256-element block's worth of setup (two stack buffers) is not repaid
/// below it (measured on rows of 64: 0.81 ns an element staged, 0.55 not).
const MIN_STAGED: usize = 256;

/// A stack buffer on its own cache lines, so that no vector load or store
/// of it is split across two.
#[repr(align(64))]
struct CacheAligned<T>(T);

/// `y = finish(x, reduce(x))`, as two loops over each block of [`STAGE_BLOCK`]
/// elements: the first stores the argument reductions, the second reads them
/// back and finishes. Same operations, so the same bits as one loop.
///
/// Why: in one loop, every element carries a dependency chain of about 50
/// cycles (sigmoid: the reduction, the polynomial, a division), and Zen 3's
/// floating-point scheduler holds only about three iterations of it, so
/// the loop runs at the chain's pace, not the pipes'. Each stage alone has a
/// chain half as long; the round trip through L1 costs two stores and two
/// loads per vector of eight `f32`. Measured on L1-resident data (2048
/// elements): sigmoid 0.53 → 0.43 ns an element, tanh 0.60 → 0.44, softmax
/// rows of 1000 0.745 → 0.725. The buffers must be cache-line aligned: at
/// 8 bytes off, every other vector store is split across two lines and the
/// gain is gone (sigmoid 0.64 ns, at about half of all stack positions).
#[inline(always)]
fn staged<F: Real>(
    x: &[F],
    y: &mut [F],
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
fn staged_pairs<F: Real>(
    a: &[F],
    b: &[F],
    y: &mut [F],
    reduce: impl Fn(F, F) -> Reduced<F>,
    finish: impl Fn(F, F, Reduced<F>) -> F,
) {
    if a.len() < MIN_STAGED {
        // Short slices (a row of a strided matrix or of a softmax) skip the
        // stage buffers, whose setup would cost more than staging saves.
        for (y, (&a, &b)) in y.iter_mut().zip(a.iter().zip(b)) {
            *y = finish(a, b, reduce(a, b));
        }
        return;
    }
    let mut shifted = CacheAligned([F::zero(); STAGE_BLOCK]);
    let mut r = CacheAligned([F::zero(); STAGE_BLOCK]);
    let blocks = a.chunks(STAGE_BLOCK).zip(b.chunks(STAGE_BLOCK));
    for ((ab, bb), yb) in blocks.zip(y.chunks_mut(STAGE_BLOCK)) {
        let (shifted, r) = (&mut shifted.0[..ab.len()], &mut r.0[..ab.len()]);
        let reductions = shifted.iter_mut().zip(r.iter_mut());
        for ((shifted, r), (&a, &b)) in reductions.zip(ab.iter().zip(bb)) {
            [*shifted, *r] = reduce(a, b);
        }
        let reductions = shifted.iter().zip(&*r);
        for ((y, (&a, &b)), (&shifted, &r)) in yb.iter_mut().zip(ab.iter().zip(bb)).zip(reductions)
        {
            *y = finish(a, b, [shifted, r]);
        }
    }
}

/// `y = e^arg(x)` for `arg(x) ≤ 0` (or NaN), by [`staged`].
#[inline(always)]
fn staged_exp<M: MulAdd, F: Real>(x: &[F], y: &mut [F], arg: impl Fn(F) -> F) {
    staged(
        x,
        y,
        |x| math::exp_nonpositive_reduce::<M, F>(arg(x)),
        |_, reduced| math::exp_nonpositive_finish::<M, F>(reduced),
    );
}

simd! {
    fn forward_slice<F: Real, A: ElementwiseFn<F>>(act: &A, x: &[F], y: &mut [F]) {
        mul_add_flavour!(M);
        if A::STAGED {
            staged(x, y, |x| act.reduce_with::<M>(x), |x, r| act.finish_with::<M>(x, r));
            return;
        }
        for (y, &x) in y.iter_mut().zip(x) {
            *y = act.value_with::<M>(x);
        }
    }
}

simd! {
    fn backward_slice<F: Real, A: ElementwiseFn<F>>(act: &A, cached: &[F], g: &[F], out: &mut [F]) {
        mul_add_flavour!(M);
        for ((out, &c), &g) in out.iter_mut().zip(cached).zip(g) {
            *out = g * act.derivative_with::<M>(c);
        }
    }
}

/// `y = act(x)` elementwise; `x` and `y` must have the same shape.
pub(crate) fn map_unary<F: Real, A: ElementwiseFn<F>, D: Dimension>(
    act: &A,
    x: ArrayView<'_, F, D>,
    mut y: ArrayViewMut<'_, F, D>,
) {
    debug_assert_eq!(x.shape(), y.shape());
    if x.strides() == y.strides()
        && let (Some(xs), Some(ys)) = (x.as_slice_memory_order(), y.as_slice_memory_order_mut())
    {
        chunked([xs], ys, 1, |[xs], ys| forward_slice(act, xs, ys));
        return;
    }
    if let Some(axis) = contiguous_rows(&[x.view(), y.view()]) {
        Zip::from(x.lanes(axis))
            .and(y.lanes_mut(axis))
            .for_each(|x, mut y| {
                if let (Some(xs), Some(ys)) = (x.as_slice(), y.as_slice_mut()) {
                    forward_slice(act, xs, ys);
                }
            });
        return;
    }
    gathered([x.iter()], y.iter_mut(), |[xs], ys| {
        forward_slice(act, xs, ys)
    });
}

/// Rows at least this long go to the slice kernel one by one when only the
/// rows are contiguous; shorter ones are copied through [`gathered`], since a
/// call per row of 8 costs as much as copying its elements one by one
/// (sigmoid forward, ns an element: rows of 1000: 2.4 gathered, 0.44 by
/// rows; rows of 32: 2.4, 0.59; rows of 8: 2.4, 2.4).
const MIN_CONTIGUOUS_ROW: usize = 16;

/// The last axis, if every array is contiguous along it (unit stride) and it
/// is at least [`MIN_CONTIGUOUS_ROW`] long: a range of columns of a wider
/// matrix (an LSTM's gate block, say), whose rows are slices though the whole is not.
fn contiguous_rows<F, D: Dimension>(arrays: &[ArrayView<'_, F, D>]) -> Option<Axis> {
    let last = arrays.first()?.ndim().checked_sub(1)?;
    let long = arrays[0].len_of(Axis(last)) >= MIN_CONTIGUOUS_ROW;
    let unit = arrays.iter().all(|a| a.strides()[last] == 1);
    (long && unit).then_some(Axis(last))
}

/// `out = g · act'(cached)` elementwise; all three must have the same shape.
pub(crate) fn map_backward<F: Real, A: ElementwiseFn<F>, D: Dimension>(
    act: &A,
    cached: ArrayView<'_, F, D>,
    g: ArrayView<'_, F, D>,
    mut out: ArrayViewMut<'_, F, D>,
) {
    debug_assert_eq!(cached.shape(), g.shape());
    debug_assert_eq!(cached.shape(), out.shape());
    if cached.strides() == g.strides()
        && g.strides() == out.strides()
        && let (Some(cs), Some(gs), Some(os)) = (
            cached.as_slice_memory_order(),
            g.as_slice_memory_order(),
            out.as_slice_memory_order_mut(),
        )
    {
        chunked([cs, gs], os, 1, |[cs, gs], os| {
            backward_slice(act, cs, gs, os)
        });
        return;
    }
    if let Some(axis) = contiguous_rows(&[cached.view(), g.view(), out.view()]) {
        Zip::from(cached.lanes(axis))
            .and(g.lanes(axis))
            .and(out.lanes_mut(axis))
            .for_each(|c, g, mut o| {
                if let (Some(cs), Some(gs), Some(os)) =
                    (c.as_slice(), g.as_slice(), o.as_slice_mut())
                {
                    backward_slice(act, cs, gs, os);
                }
            });
        return;
    }
    gathered([cached.iter(), g.iter()], out.iter_mut(), |[cs, gs], os| {
        backward_slice(act, cs, gs, os)
    });
}

/// Elements a [`gathered`] block holds: enough to amortise a dispatched call,
/// few enough to stay on the stack and in L1.
const GATHER_BLOCK: usize = 256;

/// Runs a slice kernel over arrays that share no memory order (transposed,
/// stepped, reversed, mixed): blocks of elements are copied in logical order
/// into stack buffers, computed by `f`, and copied out. Every layout thus
/// runs the same dispatched code as contiguous data and gets bit-identical
/// results at the same speed per element, rather than the math compiled for
/// baseline x86-64, where each fused multiply-add is a libm call.
fn gathered<'a, F: Real, D: Dimension, const N: usize>(
    mut inputs: [ndarray::iter::Iter<'a, F, D>; N],
    mut out: ndarray::iter::IterMut<'a, F, D>,
    f: impl Fn([&[F]; N], &mut [F]),
) {
    let mut blocks = [[F::zero(); GATHER_BLOCK]; N];
    let mut results = [F::zero(); GATHER_BLOCK];
    loop {
        let mut len = GATHER_BLOCK;
        for (block, input) in blocks.iter_mut().zip(inputs.iter_mut()) {
            // The block comes first in the zip, so no element is drawn and dropped.
            len = block.iter_mut().zip(input).map(|(b, &v)| *b = v).count();
        }
        if len == 0 {
            return;
        }
        f(
            std::array::from_fn(|i| &blocks[i][..len]),
            &mut results[..len],
        );
        for (&r, o) in results[..len].iter().zip(out.by_ref()) {
            *o = r;
        }
    }
}

/// Largest element of `sign · x` (`sign` is ±1, so exact), ignoring NaN (a NaN still reaches the output through `exp(x - max)`).
#[inline(always)]
fn max_ignoring_nan<F: Real>(x: &[F], sign: F) -> F {
    let mut acc = [F::neg_infinity(); LANES];
    let chunks = x.chunks_exact(LANES);
    let tail = chunks.remainder();
    for chunk in chunks {
        for (a, &v) in acc.iter_mut().zip(chunk) {
            let v = sign * v;
            *a = if v > *a { v } else { *a };
        }
    }
    for &v in tail {
        let v = sign * v;
        acc[0] = if v > acc[0] { v } else { acc[0] };
    }
    acc.into_iter()
        .fold(F::neg_infinity(), |m, v| if v > m { v } else { m })
}

/// `y /= total`, returning [`max_ignoring_nan`] of the next row's `sign · x`
/// from the same loop, so that the next row streams in while this one is divided.
#[inline(always)]
fn divide_then_max<F: Real>(y: &mut [F], total: F, next_x: &[F], sign: F) -> F {
    let mut acc = [F::neg_infinity(); LANES];
    for (yc, xc) in y.chunks_exact_mut(LANES).zip(next_x.chunks_exact(LANES)) {
        for ((y, a), &v) in yc.iter_mut().zip(acc.iter_mut()).zip(xc) {
            *y /= total;
            let v = sign * v;
            *a = if v > *a { v } else { *a };
        }
    }
    let tail = y.len() / LANES * LANES;
    for y in &mut y[tail..] {
        *y /= total;
    }
    acc[0] = max_ignoring_nan(&next_x[tail..], sign).max(acc[0]);
    acc.into_iter()
        .fold(F::neg_infinity(), |m, v| if v > m { v } else { m })
}

/// `Σ a_i · b_i` with [`LANES`] partial sums, then a pairwise combine.
#[inline(always)]
fn dot<F: Real>(a: &[F], b: &[F]) -> F {
    let mut acc = [F::zero(); LANES];
    let (ca, cb) = (a.chunks_exact(LANES), b.chunks_exact(LANES));
    let (ta, tb) = (ca.remainder(), cb.remainder());
    for (xa, xb) in ca.zip(cb) {
        for ((s, &u), &v) in acc.iter_mut().zip(xa).zip(xb) {
            *s += u * v;
        }
    }
    for (&u, &v) in ta.iter().zip(tb) {
        acc[0] += u * v;
    }
    pairwise_total(acc)
}

/// Writes one row of the softmax vector–Jacobian product, `out = sign · y ⊙ (g - gy)`,
/// and returns the next row's `g · y`, bitwise as [`dot`] computes it.
///
/// With a dot pass and a write pass per row, memory would idle while each row
/// is written from L1; here the next row streams in during the write, and is
/// in L1 when its turn comes.
#[inline(always)]
fn vjp_row_then_dot<F: Real>(
    (y, g, out): (&[F], &[F], &mut [F]),
    gy: F,
    sign: F,
    (next_y, next_g): (&[F], &[F]),
) -> F {
    let mut acc = [F::zero(); LANES];
    let blocks = out
        .chunks_exact_mut(LANES)
        .zip(y.chunks_exact(LANES).zip(g.chunks_exact(LANES)))
        .zip(next_g.chunks_exact(LANES).zip(next_y.chunks_exact(LANES)));
    for ((o, (y, g)), (a, b)) in blocks {
        for ((o, &y), &g) in o.iter_mut().zip(y).zip(g) {
            *o = sign * y * (g - gy);
        }
        for ((s, &u), &v) in acc.iter_mut().zip(a).zip(b) {
            *s += u * v;
        }
    }
    let tail = out.len() / LANES * LANES;
    for ((o, &y), &g) in out[tail..].iter_mut().zip(&y[tail..]).zip(&g[tail..]) {
        *o = sign * y * (g - gy);
    }
    for (&u, &v) in next_g[tail..].iter().zip(&next_y[tail..]) {
        acc[0] += u * v;
    }
    pairwise_total(acc)
}

/// `Σ x_i` with [`SUM_LANES`] compensated (Kahan) partial sums.
///
/// Plain partial sums of 32768 `f32` softmax terms drift by ~6 ulp; the
/// compensation bounds the error by about 2 ulp whatever the length, for
/// 3 more adds an element on data that is already in L1.
#[inline(always)]
pub(crate) fn sum<F: Real>(x: &[F]) -> F {
    let mut total = [F::zero(); SUM_LANES];
    let mut carry = [F::zero(); SUM_LANES];
    let chunks = x.chunks_exact(SUM_LANES);
    let tail = chunks.remainder();
    for chunk in chunks {
        for ((s, c), &v) in total.iter_mut().zip(carry.iter_mut()).zip(chunk) {
            let y = v - *c;
            let t = *s + y;
            *c = (t - *s) - y;
            *s = t;
        }
    }
    for (s, &v) in total.iter_mut().zip(tail) {
        *s += v;
    }
    for (s, c) in total.iter_mut().zip(carry) {
        *s -= c;
    }
    pairwise_total(total)
}

#[inline(always)]
fn pairwise_total<F: Real, const N: usize>(acc: [F; N]) -> F {
    pairwise(acc, |a, b| a + b)
}

/// Folds `N` (a power of two) values with `op` as a balanced tree: depth
/// `log2 N`, and on vector registers a shuffle and an operation a level.
#[inline(always)]
fn pairwise<F: Real, const N: usize>(mut acc: [F; N], op: impl Fn(F, F) -> F) -> F {
    let mut width = N;
    while width > 1 {
        width /= 2;
        for i in 0..width {
            acc[i] = op(acc[i], acc[i + width]);
        }
    }
    acc[0]
}

/// Rows shorter than this take the short-row path: with fewer than eight
/// chunks of [`LANES`], the long-row loops are mostly remainder (softmax
/// forward, ns an element on L1-resident rows, long path → short path: rows
/// of 32: 2.6 → 0.88, of 40: 2.2 → 1.1, of 100: 1.25 → 0.92; backward on rows
/// of 100: 0.46 → 0.22).
const SHORT_ROW: usize = 8 * LANES;

/// A row of `W..=2W` elements held as its first `W` and its last `W`
/// elements, which overlap in the middle (entirely when the row has `W`).
///
/// Why: whatever the row length, each per-row step is then a fixed-width
/// operation that LLVM emits as one or two vector instructions, and a
/// reduction is a shuffle tree of depth `log2 W`. A scalar fold over a row of
/// 10 would be 10 dependent operations (softmax on 65536×10: row maximum and
/// sum cost 1.1 ns an element that way). Elements in the overlap are computed
/// twice from the same inputs, so both stores write the same bits.
#[derive(Clone, Copy)]
struct Ends<F, const W: usize> {
    first: [F; W],
    last: [F; W],
}

impl<F: Real, const W: usize> Ends<F, W> {
    #[inline(always)]
    fn load(row: &[F]) -> Self {
        let split = row.len() - W;
        let (first, last) = (&row[..W], &row[split..]);
        Self {
            first: first.try_into().expect("W elements"),
            last: last.try_into().expect("W elements"),
        }
    }

    #[inline(always)]
    fn splat(value: F) -> Self {
        Self {
            first: [value; W],
            last: [value; W],
        }
    }

    #[inline(always)]
    fn store(self, row: &mut [F]) {
        let split = row.len() - W;
        row[split..].copy_from_slice(&self.last);
        row[..W].copy_from_slice(&self.first);
    }

    #[inline(always)]
    fn map(mut self, f: impl Fn(F) -> F) -> Self {
        for v in &mut self.first {
            *v = f(*v);
        }
        for v in &mut self.last {
            *v = f(*v);
        }
        self
    }

    #[inline(always)]
    fn zip_map(mut self, other: Self, f: impl Fn(F, F) -> F) -> Self {
        for (v, &w) in self.first.iter_mut().zip(&other.first) {
            *v = f(*v, w);
        }
        for (v, &w) in self.last.iter_mut().zip(&other.last) {
            *v = f(*v, w);
        }
        self
    }

    /// The largest element. A NaN anywhere may or may not win, which is
    /// harmless: the softmax of a row holding a NaN is NaN throughout either way.
    #[inline(always)]
    fn max(self) -> F {
        let larger = |a: F, b: F| if b > a { b } else { a };
        let mut lanes = self.first;
        for (a, &b) in lanes.iter_mut().zip(&self.last) {
            *a = larger(*a, b);
        }
        pairwise(lanes, larger)
    }

    /// The sum of the row's elements: the lanes of `last` that `first`
    /// already holds (`fresh[i] == false`) are left out.
    #[inline(always)]
    fn sum(self, fresh: &[bool; W]) -> F {
        let mut lanes = self.first;
        for ((a, &b), &fresh) in lanes.iter_mut().zip(&self.last).zip(fresh) {
            *a += if fresh { b } else { F::zero() };
        }
        pairwise(lanes, |a, b| a + b)
    }

    /// For [`Ends::sum`] on rows of `cols` elements: lane `i` of `last` holds
    /// element `cols - W + i`, which `first` also holds when it is below `W`.
    #[inline(always)]
    fn fresh_lanes(cols: usize) -> [bool; W] {
        std::array::from_fn(|i| cols - W + i >= W)
    }
}

/// Calls `$body` with `$w` bound to the [`Ends`] width for rows of `$cols`
/// elements, `1 ≤ $cols < SHORT_ROW`: the power of two with
/// `$w < $cols ≤ 2·$w` (1 for one column), so the halves overlap as little as
/// they can: rows of 16 are two disjoint halves of 8, not one of 16 twice.
macro_rules! with_ends_width {
    ($cols:expr, |$w:ident| $body:expr) => {
        with_ends_width!(@arms $cols, |$w| $body, 65 => 64, 33 => 32, 17 => 16, 9 => 8, 5 => 4, 3 => 2, 0 => 1)
    };
    (@arms $cols:expr, |$w:ident| $body:expr, $($from:literal => $width:literal),*) => {
        match $cols {
            $($from.. => {
                const $w: usize = $width;
                $body
            })*
        }
    };
}

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
                staged(
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
pub(crate) fn softmax_backward_rows<F: Real>(
    y: &[F],
    g: &[F],
    out: &mut [F],
    cols: usize,
    sign: F,
) {
    chunked([y, g], out, cols, |[y, g], out| {
        softmax_backward_rows_serial(y, g, out, cols, sign)
    });
}

simd! {
    fn softmax_backward_rows_serial<F: Real>(y: &[F], g: &[F], out: &mut [F], cols: usize, sign: F) {
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
