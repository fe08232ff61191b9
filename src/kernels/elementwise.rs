//! What an elementwise activation is to the kernels ([`ElementwiseFn`]),
//! and the forward and backward loops over arrays of any layout.

use std::fmt::Debug;

use multiversion::multiversion;
use ndarray::{ArrayView, ArrayViewMut, Axis, Dimension, Zip};

use super::prefetch::{STREAM_BLOCK, prefetch};
use super::staging::staged;
use super::{Slot, chunked};
use crate::math::MulAdd;
use crate::real::Real;

/// Which value an activation's derivative is written in terms of.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DerivativeFrom {
    /// `dy/dx` is a function of `y`: the layer caches its output.
    Output,
    /// `dy/dx` is a function of `x`: the layer caches its input.
    Input,
}

/// One elementwise activation: its value and its derivative.
///
/// Implement this (and [`ElementwiseKernel`], empty) to add an activation;
/// [`Elementwise`](crate::activation::Elementwise) supplies the layer, the
/// caching, the vectorised loops and every memory layout. Both methods must
/// be branch-free in spirit (`if` on floats is fine: it becomes a blend) and
/// `#[inline(always)]`, so the slice loops vectorise.
///
/// ```
/// use ndlayers::activation::{DerivativeFrom, Elementwise, ElementwiseFn, ElementwiseKernel};
/// use ndlayers::prelude::*;
///
/// /// `x³`, whose derivative `3x²` is written in terms of the input.
/// #[derive(Debug, Clone, Copy, Default)]
/// struct CubeFn;
///
/// impl<F: Real> ElementwiseFn<F> for CubeFn {
///     const NAME: &'static str = "Cube";
///     const DERIVATIVE_FROM: DerivativeFrom = DerivativeFrom::Input;
///     #[inline(always)]
///     fn value(&self, x: F) -> F {
///         x * x * x
///     }
///     #[inline(always)]
///     fn derivative(&self, x: F) -> F {
///         F::lit(3.0) * x * x
///     }
/// }
/// impl<F: Real> ElementwiseKernel<F> for CubeFn {}
///
/// let mut cube = Elementwise::<CubeFn, f64, ndlayers::ndarray::Ix1>::new();
/// let y = cube.forward(ndlayers::ndarray::array![2.0, -1.0].view())?;
/// assert_eq!(y, ndlayers::ndarray::array![8.0, -1.0]);
/// let dx = cube.backward(ndlayers::ndarray::array![1.0, 1.0].view())?;
/// assert_eq!(dx, ndlayers::ndarray::array![12.0, 3.0]);
/// # Ok::<(), LayerError>(())
/// ```
pub trait ElementwiseFn<F: Real>: Clone + Debug + Send + Sync {
    /// Name used in error messages.
    const NAME: &'static str;
    /// Whether [`derivative`](Self::derivative) takes `y` or `x`.
    const DERIVATIVE_FROM: DerivativeFrom;
    /// `f(x)`.
    fn value(&self, x: F) -> F;
    /// `f'(x)`, written in terms of the cached value (`y` or `x`, per [`Self::DERIVATIVE_FROM`]).
    fn derivative(&self, cached: F) -> F;
}

/// How the kernels evaluate an [`ElementwiseFn`]: hooks with defaults that
/// call [`value`](ElementwiseFn::value) and
/// [`derivative`](ElementwiseFn::derivative), so an activation of your own
/// implements it empty. The built-in activations override them to run the
/// multiply-adds of [`crate::math`] in each CPU's flavour, in two stages
/// (`exp`-based functions), or with a one-bit cache (ReLU).
pub trait ElementwiseKernel<F: Real>: ElementwiseFn<F> {
    /// [`value`](ElementwiseFn::value) with the multiply-adds of
    /// [`crate::math`] in flavour `M`: the kernels call this, with
    /// [`Unfused`](crate::math::Unfused) on CPUs without an FMA instruction.
    #[inline(always)]
    fn value_with<M: MulAdd>(&self, x: F) -> F {
        self.value(x)
    }

    /// [`derivative`](ElementwiseFn::derivative) with multiply-adds in flavour `M`; see [`Self::value_with`].
    #[inline(always)]
    fn derivative_with<M: MulAdd>(&self, cached: F) -> F {
        self.derivative(cached)
    }

    /// Whether the forward kernels compute [`Self::value_with`] in two
    /// stages, as `finish_with(x, reduce_with(x))`, each a loop over an L1
    /// block (the first stage's loop then has no calls and vectorises
    /// fully). Set by the activations built on `exp`; the default runs
    /// `value_with` in one loop.
    const STAGED: bool = false;

    /// First stage of a [`Self::STAGED`] value: the argument reduction, two
    /// numbers per element.
    #[inline(always)]
    fn reduce_with<M: MulAdd>(&self, x: F) -> [F; 2] {
        [x, F::zero()]
    }

    /// Second stage of a [`Self::STAGED`] value, from `x` and [`Self::reduce_with`]`(x)`.
    #[inline(always)]
    fn finish_with<M: MulAdd>(&self, x: F, _reduced: [F; 2]) -> F {
        self.value_with::<M>(x)
    }

    /// Whether `f'` is a step decided by [`Self::step`]`(x)` alone, except
    /// that it is NaN at a NaN `x` (ReLU: 1 where `x > 0`, else 0). The layer
    /// then caches one bit an element rather than an array, wherever the
    /// input is contiguous and holds no NaN. The default is `false`.
    const STEP: bool = false;

    /// For a [`Self::STEP`] activation: which side of the step `x` is on.
    #[inline(always)]
    fn step(&self, _x: F) -> bool {
        false
    }

    /// For a [`Self::STEP`] activation: `f'` on the side where
    /// [`Self::step`] is `high`; equal to [`derivative`](ElementwiseFn::derivative)
    /// of the value cached there, so that both caches give the same bits.
    #[inline(always)]
    fn step_derivative(&self, _high: bool) -> F {
        F::zero()
    }
}

simd! {
    pub(crate) fn forward_slice<F: Real, A: ElementwiseKernel<F>, O: Slot<F>>(act: &A, x: &[F], y: &mut [O]) {
        mul_add_flavour!(M);
        if A::STAGED {
            staged(x, y, |x| act.reduce_with::<M>(x), |x, r| act.finish_with::<M>(x, r));
            return;
        }
        let blocks = y.chunks_mut(STREAM_BLOCK).zip(x.chunks(STREAM_BLOCK));
        for (i, (yb, xb)) in blocks.enumerate() {
            prefetch(x, i * STREAM_BLOCK, xb.len());
            for (y, &x) in yb.iter_mut().zip(xb) {
                y.set(act.value_with::<M>(x));
            }
        }
    }
}

simd! {
    fn backward_slice<F: Real, A: ElementwiseKernel<F>, O: Slot<F>>(
        act: &A,
        cached: &[F],
        g: &[F],
        out: &mut [O],
    ) {
        mul_add_flavour!(M);
        let inputs = cached.chunks(STREAM_BLOCK).zip(g.chunks(STREAM_BLOCK));
        let blocks = out.chunks_mut(STREAM_BLOCK).zip(inputs);
        for (i, (ob, (cb, gb))) in blocks.enumerate() {
            prefetch(cached, i * STREAM_BLOCK, cb.len());
            prefetch(g, i * STREAM_BLOCK, gb.len());
            for ((out, &c), &g) in ob.iter_mut().zip(cb).zip(gb) {
                out.set(g * act.derivative_with::<M>(c));
            }
        }
    }
}

/// `y = act(x)` elementwise; `x` and `y` must have the same shape. Every
/// element of `y` is written, so it may start uninitialised.
pub(crate) fn map_unary<F: Real, A: ElementwiseKernel<F>, D: Dimension, O: Slot<F>>(
    act: &A,
    x: ArrayView<'_, F, D>,
    mut y: ArrayViewMut<'_, O, D>,
) {
    debug_assert_eq!(x.shape(), y.shape());
    if x.strides() == y.strides()
        && let (Some(xs), Some(ys)) = (x.as_slice_memory_order(), y.as_slice_memory_order_mut())
    {
        chunked([xs], ys, 1, |[xs], ys| forward_slice(act, xs, ys));
        return;
    }
    if let Some(axis) = contiguous_rows(x.shape(), &[x.strides(), y.strides()]) {
        Zip::from(x.lanes(axis))
            .and(y.lanes_mut(axis))
            .for_each(|x, mut y| {
                // Unit stride along the lane: both are slices. (Never skip a
                // lane: callers rely on every element of `y` being written.)
                let (Some(xs), Some(ys)) = (x.as_slice(), y.as_slice_mut()) else {
                    unreachable!("a unit-stride lane is a slice")
                };
                forward_slice(act, xs, ys);
            });
        return;
    }
    gathered([x.iter()], y.iter_mut(), |[xs], ys| {
        forward_slice(act, xs, ys)
    });
}

/// `y = act(y)` elementwise, in place: blocks of [`GATHER_BLOCK`] elements
/// are copied to the stack, computed into the array and so run the same
/// dispatched code, with the same bits, as [`map_unary`].
pub(crate) fn map_unary_in_place<F: Real, A: ElementwiseKernel<F>, D: Dimension>(
    act: &A,
    mut y: ArrayViewMut<'_, F, D>,
) {
    let mut block = [F::zero(); GATHER_BLOCK];
    let mut in_place = |ys: &mut [F]| {
        for chunk in ys.chunks_mut(GATHER_BLOCK) {
            let xs = &mut block[..chunk.len()];
            xs.copy_from_slice(chunk);
            forward_slice(act, xs, chunk);
        }
    };
    if let Some(ys) = y.as_slice_memory_order_mut() {
        in_place(ys);
        return;
    }
    let Some(last) = y.ndim().checked_sub(1) else {
        // A 0-dimensional array is contiguous, so only n ≥ 1 axes reach here.
        return;
    };
    // Lanes along the last axis, each through a 1-D strided view of one block.
    for mut lane in y.lanes_mut(Axis(last)) {
        let len = lane.len();
        for start in (0..len).step_by(GATHER_BLOCK) {
            let end = (start + GATHER_BLOCK).min(len);
            let mut part = lane.slice_mut(ndarray::s![start..end]);
            let xs = &mut block[..end - start];
            for (x, &v) in xs.iter_mut().zip(part.iter()) {
                *x = v;
            }
            let mut ys = [F::zero(); GATHER_BLOCK];
            forward_slice(act, xs, &mut ys[..end - start]);
            for (v, &y) in part.iter_mut().zip(&ys) {
                *v = y;
            }
        }
    }
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
/// Takes the arrays' common shape and each one's strides.
fn contiguous_rows(shape: &[usize], strides: &[&[isize]]) -> Option<Axis> {
    let last = shape.len().checked_sub(1)?;
    let long = shape[last] >= MIN_CONTIGUOUS_ROW;
    let unit = strides.iter().all(|s| s[last] == 1);
    (long && unit).then_some(Axis(last))
}

/// `out = g · act'(cached)` elementwise; all three must have the same shape.
/// Every element of `out` is written, so it may start uninitialised.
pub(crate) fn map_backward<F: Real, A: ElementwiseKernel<F>, D: Dimension, O: Slot<F>>(
    act: &A,
    cached: ArrayView<'_, F, D>,
    g: ArrayView<'_, F, D>,
    mut out: ArrayViewMut<'_, O, D>,
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
    if let Some(axis) = contiguous_rows(g.shape(), &[cached.strides(), g.strides(), out.strides()])
    {
        Zip::from(cached.lanes(axis))
            .and(g.lanes(axis))
            .and(out.lanes_mut(axis))
            .for_each(|c, g, mut o| {
                let (Some(cs), Some(gs), Some(os)) = (c.as_slice(), g.as_slice(), o.as_slice_mut())
                else {
                    unreachable!("a unit-stride lane is a slice")
                };
                backward_slice(act, cs, gs, os);
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
fn gathered<'a, F: Real, D: Dimension, O: Slot<F> + 'a, const N: usize>(
    mut inputs: [ndarray::iter::Iter<'a, F, D>; N],
    mut out: ndarray::iter::IterMut<'a, O, D>,
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
            o.set(r);
        }
    }
}
