//! The [`Layer`] trait every layer implements, and the crate's error type.

use ndarray::{Array, ArrayView, Dimension};
use thiserror::Error;

/// A differentiable layer: `forward` maps an input batch to an output and
/// remembers what `backward` needs; `backward` maps `dL/dy` to `dL/dx`.
///
/// `backward` always refers to the most recent successful `forward`.
pub trait Layer<F, D: Dimension> {
    /// Computes the output for `input` and caches what `backward` needs.
    fn forward(&mut self, input: ArrayView<'_, F, D>) -> Result<Array<F, D>, LayerError>;

    /// Returns `dL/dx` for the cached forward, given `grad_output = dL/dy`.
    fn backward(&mut self, grad_output: ArrayView<'_, F, D>) -> Result<Array<F, D>, LayerError>;
}

/// A boxed layer is a layer, so networks can hold `Vec<Box<dyn Layer<F, D>>>`.
impl<F, D: Dimension, L: Layer<F, D> + ?Sized> Layer<F, D> for Box<L> {
    fn forward(&mut self, input: ArrayView<'_, F, D>) -> Result<Array<F, D>, LayerError> {
        (**self).forward(input)
    }

    fn backward(&mut self, grad_output: ArrayView<'_, F, D>) -> Result<Array<F, D>, LayerError> {
        (**self).backward(grad_output)
    }
}

/// What went wrong in a layer, loss or optimiser call.
///
/// Every public function of the crate reports bad input through this type; none panics.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum LayerError {
    /// `backward` was called before any `forward`, so there is nothing to differentiate.
    #[error(
        "{layer}: backward called before forward; there is no cached forward pass to differentiate"
    )]
    BackwardBeforeForward {
        /// The layer or loss that was called.
        layer: &'static str,
    },
    /// An array's shape does not fit what the call needs.
    #[error("{layer}: {what} has shape {found:?}, expected {expected:?}")]
    ShapeMismatch {
        /// The layer or loss that was called.
        layer: &'static str,
        /// Which argument was wrong, e.g. `"grad_output"`.
        what: &'static str,
        /// The shape that would have fit.
        expected: Vec<usize>,
        /// The shape that was passed.
        found: Vec<usize>,
    },
    /// A class label is not below the number of classes.
    #[error("{layer}: label {label} at batch index {index} is out of range for {classes} classes")]
    LabelOutOfRange {
        /// The loss that was called.
        layer: &'static str,
        /// Position of the label in the batch.
        index: usize,
        /// The offending label.
        label: usize,
        /// Number of classes (columns of the logits).
        classes: usize,
    },
    /// The layer was asked to work along an axis the input does not have.
    #[error("{layer}: axis {axis} is out of range for an array of {ndim} dimensions")]
    AxisOutOfRange {
        /// The layer that was called.
        layer: &'static str,
        /// The requested axis (0 when the default, the last axis, does not exist).
        axis: usize,
        /// Number of dimensions of the input.
        ndim: usize,
    },
    /// A loss was given no elements to average over.
    #[error("{layer}: {what} is empty; a mean over no elements is undefined")]
    Empty {
        /// The loss that was called.
        layer: &'static str,
        /// Which argument was empty.
        what: &'static str,
    },
    /// A hyperparameter is outside its valid range.
    #[error("{layer}: invalid {name} = {value}: {requirement}")]
    InvalidParameter {
        /// The layer or optimiser being built.
        layer: &'static str,
        /// The parameter's name.
        name: &'static str,
        /// The value that was passed, formatted.
        value: String,
        /// What the value must satisfy.
        requirement: &'static str,
    },
}

impl LayerError {
    /// A [`LayerError::ShapeMismatch`] from two shapes.
    pub(crate) fn shape(
        layer: &'static str,
        what: &'static str,
        expected: &[usize],
        found: &[usize],
    ) -> Self {
        LayerError::ShapeMismatch {
            layer,
            what,
            expected: expected.to_vec(),
            found: found.to_vec(),
        }
    }

    /// Checks that `found` equals `expected`, naming both on failure.
    pub(crate) fn check_shape(
        layer: &'static str,
        what: &'static str,
        expected: &[usize],
        found: &[usize],
    ) -> Result<(), Self> {
        if expected == found {
            Ok(())
        } else {
            Err(Self::shape(layer, what, expected, found))
        }
    }
}
