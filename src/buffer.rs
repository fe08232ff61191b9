//! Arrays a layer keeps between calls, so that a training loop whose shapes
//! do not change allocates nothing after its first step.

use ndarray::{Array, ArrayView, Dimension, ShapeBuilder};

use crate::layer::LayerError;
use crate::real::Real;

/// An empty vector with room for `len` elements, or an error naming the
/// layer and the size where `len` elements overflow the address space or
/// cannot be allocated (where `Vec::with_capacity` panics or aborts).
pub(crate) fn try_vec<F>(
    len: usize,
    layer: &'static str,
    size: String,
) -> Result<Vec<F>, LayerError> {
    let too_large = |requirement| LayerError::InvalidParameter {
        layer,
        name: "size",
        value: size.clone(),
        requirement,
    };
    if len
        .checked_mul(std::mem::size_of::<F>())
        .is_none_or(|bytes| bytes > isize::MAX as usize)
    {
        return Err(too_large("overflows the address space"));
    }
    let mut v = Vec::new();
    v.try_reserve_exact(len)
        .map_err(|_| too_large("does not fit in memory"))?;
    Ok(v)
}

/// The array a layer cached in its last forward, once `grad_output` has its
/// shape: the check every elementwise-shaped backward starts with.
pub(crate) fn cached_for<'a, F, D: Dimension>(
    cache: &'a Option<Array<F, D>>,
    layer: &'static str,
    grad_output: &ArrayView<'_, F, D>,
) -> Result<&'a Array<F, D>, LayerError> {
    let cache = cache
        .as_ref()
        .ok_or(LayerError::BackwardBeforeForward { layer })?;
    LayerError::check_shape(layer, "grad_output", cache.shape(), grad_output.shape())?;
    Ok(cache)
}

/// `true` for an array that is contiguous in column-major order only.
pub(crate) fn is_fortran<F, D: Dimension>(a: &ArrayView<'_, F, D>) -> bool {
    !a.is_standard_layout() && a.t().is_standard_layout()
}

/// The array in `slot`, reshaped to `dim` in the requested memory order.
///
/// Its memory is reused whenever it is large enough, so a layer's buffers
/// grow to the largest batch seen and serve every smaller one (an evaluation
/// batch after training batches costs no allocation, nor does the training
/// batch after it). Only a larger shape allocates, zeroed (zeroed memory
/// comes from the OS untouched, so this costs no more than an uninitialised
/// allocation). The contents are unspecified: callers overwrite every element.
pub(crate) fn reuse<F: Real, D: Dimension>(
    slot: &mut Option<Array<F, D>>,
    dim: D,
    fortran: bool,
) -> &mut Array<F, D> {
    let fits = slot
        .as_ref()
        .is_some_and(|a| a.raw_dim() == dim && is_fortran(&a.view()) == fortran);
    if !fits {
        let len = dim.size();
        let memory = slot
            .take()
            .map(Array::into_raw_vec_and_offset)
            .filter(|(v, offset)| v.capacity() >= len && offset.unwrap_or(0) == 0)
            .map(|(mut v, _)| {
                // Within the capacity: shortens, or extends without allocating.
                v.resize(len, F::zero());
                v
            });
        *slot = Some(match memory {
            Some(v) => Array::from_shape_vec(dim.set_f(fortran), v)
                .expect("a vector of exactly dim.size() elements"),
            None => Array::zeros(dim.set_f(fortran)),
        });
    }
    slot.as_mut().expect("filled above")
}

/// [`reuse`] with `like`'s shape and memory order (row-major for non-contiguous `like`).
pub(crate) fn reuse_like<'a, F: Real, D: Dimension>(
    slot: &'a mut Option<Array<F, D>>,
    like: &ArrayView<'_, F, D>,
) -> &'a mut Array<F, D> {
    reuse(slot, like.raw_dim(), is_fortran(like))
}
