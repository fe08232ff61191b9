//! Arrays a layer keeps between calls, so that a training loop whose shapes
//! do not change allocates nothing after its first step.

use ndarray::{Array, ArrayView, Dimension, ShapeBuilder};

use crate::real::Real;

/// `true` for an array that is contiguous in column-major order only.
pub(crate) fn is_fortran<F, D: Dimension>(a: &ArrayView<'_, F, D>) -> bool {
    !a.is_standard_layout() && a.t().is_standard_layout()
}

/// The array in `slot` if it has shape `dim` and the requested memory order;
/// otherwise a new zeroed one (zeroed memory comes from the OS untouched, so
/// this costs no more than an uninitialised allocation).
pub(crate) fn reuse<F: Real, D: Dimension>(
    slot: &mut Option<Array<F, D>>,
    dim: D,
    fortran: bool,
) -> &mut Array<F, D> {
    let fits = slot
        .as_ref()
        .is_some_and(|a| a.raw_dim() == dim && is_fortran(&a.view()) == fortran);
    if !fits {
        *slot = None;
    }
    slot.get_or_insert_with(|| Array::zeros(dim.set_f(fortran)))
}

/// [`reuse`] with `like`'s shape and memory order (row-major for non-contiguous `like`).
pub(crate) fn reuse_like<'a, F: Real, D: Dimension>(
    slot: &'a mut Option<Array<F, D>>,
    like: &ArrayView<'_, F, D>,
) -> &'a mut Array<F, D> {
    reuse(slot, like.raw_dim(), is_fortran(like))
}
