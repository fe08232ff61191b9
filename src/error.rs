//! [`LayerError`], the crate's one error type for layer, loss and optimiser
//! calls, and the small family of checks that build it.
//!
//! This is the ground floor: it uses nothing else of the crate.

use std::fmt::Display;

use thiserror::Error;

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
    #[error("{layer}: {what} has shape {found:?}, expected {expected}")]
    ShapeMismatch {
        /// The layer or loss that was called.
        layer: &'static str,
        /// Which argument was wrong, e.g. `"grad_output"`.
        what: &'static str,
        /// The shape that would have fit, e.g. `[32, 10]`, or a description
        /// of it with what each axis means, e.g. `(batch, 64): rows are
        /// samples, columns the layer's 64 inputs; is it transposed?`.
        expected: String,
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
        /// The offending label (negative for a negative signed label).
        label: i128,
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
    /// Two entries of a network's state share one name, so a checkpoint or
    /// an optimiser could not tell them apart.
    #[error("two state entries are named `{name}`; give each part of the network its own name")]
    DuplicateName {
        /// The name used twice.
        name: String,
    },
    /// An optimiser's state does not fit the parameters it is asked to
    /// update, or is not one the optimiser could have written.
    #[error("{owner}: state of `{name}`: {reason}")]
    InvalidState {
        /// Whose state: the optimiser, or `"state walk"` for a layer whose
        /// two walks disagree.
        owner: &'static str,
        /// The parameter (or `"step"` for the step count).
        name: String,
        /// What is wrong with it.
        reason: String,
    },
}

impl LayerError {
    /// A [`LayerError::InvalidParameter`] for `value` of the hyperparameter `name`.
    pub(crate) fn invalid(
        layer: &'static str,
        name: &'static str,
        value: impl Display,
        requirement: &'static str,
    ) -> Self {
        LayerError::InvalidParameter {
            layer,
            name,
            value: value.to_string(),
            requirement,
        }
    }

    /// A [`LayerError::InvalidState`] of `owner` for the entry `name`.
    pub(crate) fn state(owner: &'static str, name: impl Display, reason: impl Display) -> Self {
        LayerError::InvalidState {
            owner,
            name: name.to_string(),
            reason: reason.to_string(),
        }
    }
    /// A [`LayerError::ShapeMismatch`] from two shapes.
    pub(crate) fn shape(
        layer: &'static str,
        what: &'static str,
        expected: &[usize],
        found: &[usize],
    ) -> Self {
        Self::shape_described(layer, what, format!("{expected:?}"), found)
    }

    /// A [`LayerError::ShapeMismatch`] whose expected shape is described in words.
    pub(crate) fn shape_described(
        layer: &'static str,
        what: &'static str,
        expected: String,
        found: &[usize],
    ) -> Self {
        LayerError::ShapeMismatch {
            layer,
            what,
            expected,
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

/// `value` if `valid`, otherwise the [`LayerError::InvalidParameter`] naming
/// `layer`, `name`, the value and `requirement`: the one check every
/// constructor and builder runs on a hyperparameter.
pub(crate) fn require<T: Display>(
    layer: &'static str,
    name: &'static str,
    value: T,
    valid: bool,
    requirement: &'static str,
) -> Result<T, LayerError> {
    if valid {
        Ok(value)
    } else {
        Err(LayerError::invalid(layer, name, value, requirement))
    }
}

/// The first element of `values` (in logical order) for which `bad` holds,
/// with its index: where validation reports what it found.
pub(crate) fn first_where<F: Copy, D: ndarray::Dimension>(
    values: &ndarray::ArrayView<'_, F, D>,
    bad: impl Fn(F) -> bool,
) -> Option<(Vec<usize>, F)> {
    values
        .view()
        .into_dyn()
        .indexed_iter()
        .find(|&(_, &v)| bad(v))
        .map(|(index, &v)| (ndarray::Dimension::slice(&index).to_vec(), v))
}

/// `Ok` if `valid` holds for every element of `values`, otherwise the
/// [`LayerError::InvalidParameter`] naming `layer`, `name`, the first element
/// that breaks it and where (`-inf at [1, 2]`).
pub(crate) fn require_all<F: Copy + Display, D: ndarray::Dimension>(
    layer: &'static str,
    name: &'static str,
    values: &ndarray::ArrayView<'_, F, D>,
    valid: impl Fn(F) -> bool,
    requirement: &'static str,
) -> Result<(), LayerError> {
    match first_where(values, |v| !valid(v)) {
        None => Ok(()),
        Some((index, value)) => Err(LayerError::invalid(
            layer,
            name,
            format_args!("{value} at {index:?}"),
            requirement,
        )),
    }
}
