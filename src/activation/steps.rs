//! What an activation whose derivative is a step (ReLU) keeps instead of a
//! cached array: one bit an element, recorded by the forward kernel.
//!
//! Why: an owned forward that computes into a cache of values and copies the
//! cache out has four memory streams (read `x`, write the cache, read it,
//! write the result) where PyTorch has two. With a mask it has two and 1/32 of one
//! (`f32`), and backward reads `g` and the mask instead of `g` and `y`.
//!
//! The bits cannot say NaN, whose gradient is NaN: a forward that meets one
//! reports it, and the layer then caches the values as before.

use ndarray::{ArrayView, ArrayViewMut, Dimension};

use crate::error::LayerError;
use crate::kernels::{ElementwiseKernel, Slot, WORD, backward_chunks, forward_chunks};
use crate::real::Real;

/// One bit an element: the step [`ElementwiseKernel::step`] of each `x` in the
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
    pub(crate) fn forward<F: Real, A: ElementwiseKernel<F>, O: Slot<F>>(
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
    pub(crate) fn backward<F: Real, A: ElementwiseKernel<F>, O: Slot<F>>(
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
