//! Gradient clipping over every parameter of a network, as PyTorch's
//! `torch.nn.utils.clip_grad_norm_` and `clip_grad_value_`, through the
//! state interface and without allocating.

use crate::error::{LayerError, require};
use crate::real::Real;
use crate::state::{Entry, EntryMut, Name, StateDict};

/// Which norm [`clip_grad_norm`] measures the gradients with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Norm {
    /// `√(Σ g²)` over every element of every gradient (PyTorch's `norm_type=2`).
    L2,
    /// `max |g|` over every element of every gradient (`norm_type=inf`).
    Inf,
}

const CLIP_NORM: &str = "clip_grad_norm";
const CLIP_VALUE: &str = "clip_grad_value";

/// Scales every parameter gradient of `net` so that their total norm is at
/// most `max_norm`, and returns the total norm before clipping, as PyTorch's
/// `clip_grad_norm_(parameters, max_norm, norm_type, error_if_nonfinite)`:
/// ```text
/// total = ‖(‖g₁‖, ‖g₂‖, …)‖          (= √(Σ g²) for L2, max |g| for Inf)
/// g ← g · min(1, max_norm / (total + 1e-6))
/// ```
/// The norm is accumulated in `f64`. A total that is NaN or infinite is an
/// error when `error_if_nonfinite` (and nothing is scaled); otherwise the
/// gradients are scaled as PyTorch scales them (by NaN, or by 0 for an
/// infinite total). `max_norm` must be non-negative and finite (PyTorch does
/// not check; a negative one would flip every gradient).
///
/// ```
/// use ndlayers::optim::{Norm, clip_grad_norm};
/// use ndlayers::prelude::*;
/// use ndlayers::ndarray::array;
///
/// let mut dense = Dense::<f64>::from_fn(2, 1, |_, _| 1.0)?;
/// dense.forward(array![[3.0, 4.0]].view())?;
/// dense.backward(array![[1.0]].view())?; // dL/dW = (3, 4), dL/db = 1
/// let total = clip_grad_norm(&mut dense, 1.0, Norm::L2, true)?;
/// assert!((total - 26f64.sqrt()).abs() < 1e-12);
/// assert!((dense.grad_weight()[[0, 0]] - 3.0 / (26f64.sqrt() + 1e-6)).abs() < 1e-12);
/// # Ok::<(), LayerError>(())
/// ```
pub fn clip_grad_norm<F: Real>(
    net: &mut dyn StateDict<F>,
    max_norm: F,
    norm: Norm,
    error_if_nonfinite: bool,
) -> Result<F, LayerError> {
    let valid = max_norm >= F::zero() && max_norm.is_finite();
    require(
        CLIP_NORM,
        "max_norm",
        max_norm,
        valid,
        "must be non-negative and finite",
    )?;
    let mut total = 0.0_f64;
    net.visit_state(&Name::ROOT, &mut |_, entry| {
        if let Entry::Parameter { grad, .. } = entry {
            for &g in grad.iter() {
                let g = g.to_f64().unwrap_or(f64::NAN);
                total = match norm {
                    Norm::L2 => total + g * g,
                    // NaN-propagating maximum: PyTorch's amax keeps NaN.
                    Norm::Inf if g.is_nan() || total.is_nan() => f64::NAN,
                    Norm::Inf => total.max(g.abs()),
                };
            }
        }
    });
    if norm == Norm::L2 {
        total = total.sqrt();
    }
    let total_f = F::lit(total);
    if error_if_nonfinite && !total_f.is_finite() {
        return Err(LayerError::invalid(
            CLIP_NORM,
            "total gradient norm",
            total_f,
            "must be finite (error_if_nonfinite)",
        ));
    }
    let coefficient = F::lit((max_norm.to_f64().unwrap_or(f64::NAN) / (total + 1e-6)).min(1.0));
    net.visit_state_mut(&Name::ROOT, &mut |_, entry| {
        if let EntryMut::Parameter { mut grad, .. } = entry {
            grad.mapv_inplace(|g| g * coefficient);
        }
    });
    Ok(total_f)
}

/// Clamps every element of every parameter gradient of `net` to
/// `[-clip_value, clip_value]`, as PyTorch's `clip_grad_value_`; NaN stays
/// NaN. `clip_value` must be non-negative and finite.
///
/// ```
/// use ndlayers::optim::clip_grad_value;
/// use ndlayers::prelude::*;
/// use ndlayers::ndarray::array;
///
/// let mut dense = Dense::<f32>::from_fn(2, 1, |_, _| 1.0)?;
/// dense.forward(array![[3.0, -0.25]].view())?;
/// dense.backward(array![[1.0]].view())?;
/// clip_grad_value(&mut dense, 0.5)?;
/// assert_eq!(dense.grad_weight().column(0).to_vec(), [0.5, -0.25]);
/// # Ok::<(), LayerError>(())
/// ```
pub fn clip_grad_value<F: Real>(
    net: &mut dyn StateDict<F>,
    clip_value: F,
) -> Result<(), LayerError> {
    let valid = clip_value >= F::zero() && clip_value.is_finite();
    require(
        CLIP_VALUE,
        "clip_value",
        clip_value,
        valid,
        "must be non-negative and finite",
    )?;
    net.visit_state_mut(&Name::ROOT, &mut |_, entry| {
        if let EntryMut::Parameter { mut grad, .. } = entry {
            // Comparisons are false for NaN, which therefore stays.
            grad.mapv_inplace(|g| {
                if g > clip_value {
                    clip_value
                } else if g < -clip_value {
                    -clip_value
                } else {
                    g
                }
            });
        }
    });
    Ok(())
}
