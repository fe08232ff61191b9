//! Gradient checking by central finite differences, for the crate's layers and yours.
//!
//! Modelled on PyTorch's `gradcheck`: the layer is run in `f64`, a fixed
//! random upstream gradient `g` turns its output into a scalar
//! `L(x) = Σ g ⊙ layer(x)`, and `backward(g)` is compared element by element
//! with `(L(x + h eᵢ) - L(x - h eᵢ)) / 2h`. An element passes when
//! `|analytic - numeric| ≤ atol + rtol · |numeric|`; the report names the
//! worst element either way.
//!
//! ```
//! use ndlayers::gradcheck::GradCheck;
//! use ndlayers::prelude::*;
//! use ndlayers::ndarray::array;
//!
//! let report = GradCheck::default().check_input(&mut Tanh::new(), array![[0.3, -1.2], [2.0, 0.1]].view())?;
//! assert_eq!(report.checked, 4);
//! # Ok::<(), ndlayers::gradcheck::GradCheckError>(())
//! ```

use std::fmt;

use ndarray::{Array, ArrayD, ArrayView, ArrayViewD, Dimension};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use thiserror::Error;

use crate::error::LayerError;
use crate::layer::Layer;
use crate::state::{Entry, EntryMut, Name, StateDict};

/// Settings for a finite-difference check. `Default` uses PyTorch's `gradcheck` values.
#[derive(Debug, Clone, PartialEq)]
pub struct GradCheck {
    /// Relative step: element `x` is perturbed by `± step · max(1, |x|)`. Default `1e-6`.
    pub step: f64,
    /// Absolute tolerance. Default `1e-5`.
    pub atol: f64,
    /// Relative tolerance. Default `1e-3`.
    pub rtol: f64,
    /// Seed of the random upstream gradient. Default `0`.
    pub seed: u64,
}

impl Default for GradCheck {
    fn default() -> Self {
        GradCheck {
            step: 1e-6,
            atol: 1e-5,
            rtol: 1e-3,
            seed: 0,
        }
    }
}

/// One compared element.
#[derive(Debug, Clone, PartialEq)]
pub struct Comparison {
    /// What was differentiated: `"input"` or a parameter's name.
    pub what: String,
    /// Index of the element (flattened in logical row-major order for parameters).
    pub index: Vec<usize>,
    /// The gradient from `backward`.
    pub analytic: f64,
    /// The central finite difference.
    pub numeric: f64,
    /// `|analytic - numeric| / (atol + rtol·|numeric|)`: above 1 fails.
    pub score: f64,
}

impl fmt::Display for Comparison {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} at {:?}: analytic {:e}, numeric {:e}, |difference| {:e} ({:.3} of tolerance)",
            self.what,
            self.index,
            self.analytic,
            self.numeric,
            (self.analytic - self.numeric).abs(),
            self.score
        )
    }
}

/// The outcome of a check: how many elements and the worst of them.
#[derive(Debug, Clone, PartialEq)]
pub struct GradCheckReport {
    /// Number of elements compared.
    pub checked: usize,
    /// The element with the largest score, if any was compared.
    pub worst: Option<Comparison>,
}

impl GradCheckReport {
    fn empty() -> Self {
        GradCheckReport {
            checked: 0,
            worst: None,
        }
    }

    fn record(&mut self, comparison: Comparison) {
        self.checked += 1;
        // A NaN score always becomes the worst.
        let worse = self
            .worst
            .as_ref()
            .is_none_or(|w| comparison.score.is_nan() || comparison.score > w.score);
        if worse {
            self.worst = Some(comparison);
        }
    }

    fn passed(&self) -> bool {
        self.worst.as_ref().is_none_or(|w| w.score <= 1.0)
    }

    /// Merges another report into this one.
    pub fn merge(&mut self, other: GradCheckReport) {
        let checked = self.checked + other.checked;
        if let Some(w) = other.worst {
            self.record(w);
        }
        self.checked = checked;
    }
}

/// Why a gradient check failed.
#[derive(Debug, Clone, PartialEq, Error)]
pub enum GradCheckError {
    /// The layer returned an error during the check.
    #[error("layer error during gradient check: {0}")]
    Layer(#[from] LayerError),
    /// Some element's analytic gradient disagrees with finite differences.
    #[error("gradient check failed over {} elements; worst: {}", .0.checked, .0.worst.as_ref().map_or_else(String::new, |w| w.to_string()))]
    Mismatch(GradCheckReport),
}

/// The upstream gradient `g` used for a check, and the `dL/dx` it produced.
type UpstreamAndGradient<D, E> = (Array<f64, E>, Array<f64, D>);

impl GradCheck {
    /// The scalar `Σ g ⊙ layer(x)`.
    fn loss<L: Layer<f64, D, E> + ?Sized, D: Dimension, E: Dimension>(
        layer: &mut L,
        x: ArrayView<'_, f64, D>,
        g: &Array<f64, E>,
    ) -> Result<f64, LayerError> {
        let y = layer.forward(x)?;
        LayerError::check_shape("gradcheck", "layer output", g.shape(), y.shape())?;
        Ok((&y * g).sum())
    }

    fn compare(&self, what: &str, index: Vec<usize>, analytic: f64, numeric: f64) -> Comparison {
        Comparison {
            what: what.to_string(),
            index,
            analytic,
            numeric,
            score: (analytic - numeric).abs() / (self.atol + self.rtol * numeric.abs()),
        }
    }

    /// Uniform values in `[-1, 1)` shaped like `y`, from [`GradCheck::seed`].
    fn random_like<D: Dimension>(&self, y: &Array<f64, D>) -> Array<f64, D> {
        let mut rng = StdRng::seed_from_u64(self.seed);
        y.mapv(|_| rng.random_range(-1.0..1.0))
    }

    /// Runs `forward`, then `backward` with the seeded random upstream gradient
    /// `g`; returns `g` and `dL/dx`. Parameter gradients are now stored in the layer.
    fn differentiate<L: Layer<f64, D, E> + ?Sized, D: Dimension, E: Dimension>(
        &self,
        layer: &mut L,
        input: ArrayView<'_, f64, D>,
    ) -> Result<UpstreamAndGradient<D, E>, LayerError> {
        let y = layer.forward(input)?;
        let g = self.random_like(&y);
        let dx = layer.backward(g.view())?;
        Ok((g, dx))
    }

    /// Smallest and largest accepted [`step`](Self::step): below `1e-12` the
    /// difference quotient is all rounding error of `f64` losses; above `0.1`
    /// it measures the secant of a wide interval, not a derivative.
    pub const STEP_RANGE: (f64, f64) = (1e-12, 0.1);

    /// Checks the settings, naming the one that is wrong: `step` in
    /// [`STEP_RANGE`](Self::STEP_RANGE), `atol` and `rtol` finite and not
    /// negative, and not both 0 (no comparison could then pass).
    pub fn validate(&self) -> Result<(), LayerError> {
        let invalid = |name: &'static str, value: f64, requirement: &'static str| {
            Err(LayerError::invalid("GradCheck", name, value, requirement))
        };
        let (lo, hi) = Self::STEP_RANGE;
        if !(self.step >= lo && self.step <= hi) {
            return invalid("step", self.step, "must be in [1e-12, 0.1]");
        }
        for (name, value) in [("atol", self.atol), ("rtol", self.rtol)] {
            if !(value >= 0.0 && value.is_finite()) {
                return invalid(name, value, "must be finite and not negative");
            }
        }
        if self.atol == 0.0 && self.rtol == 0.0 {
            return invalid("atol", self.atol, "atol and rtol must not both be 0");
        }
        Ok(())
    }

    /// Checks `dL/dx` from `layer.backward` against finite differences at `input`.
    ///
    /// Returns the report when every element passes, or [`GradCheckError::Mismatch`]
    /// with the same report when one does not.
    pub fn check_input<L: Layer<f64, D, E> + ?Sized, D: Dimension, E: Dimension>(
        &self,
        layer: &mut L,
        input: ArrayView<'_, f64, D>,
    ) -> Result<GradCheckReport, GradCheckError> {
        self.validate()?;
        let (g, analytic) = self.differentiate(layer, input.view())?;
        self.check_function("input", input, analytic.view(), |x| {
            Self::loss(layer, x, &g)
        })
    }

    /// Checks the parameter gradients a layer stores in `backward` (its
    /// [`StateDict`] parameters) against finite differences of the same scalar loss.
    pub fn check_parameters<L: Layer<f64, D, E> + ?Sized, D: Dimension, E: Dimension>(
        &self,
        layer: &mut L,
        input: ArrayView<'_, f64, D>,
    ) -> Result<GradCheckReport, GradCheckError> {
        self.validate()?;
        let (g, _) = self.differentiate(layer, input.view())?;
        let mut analytic: Vec<(String, ArrayD<f64>)> = Vec::new();
        layer.visit_state(&Name::ROOT, &mut |name, entry| {
            if let Entry::Parameter { grad, .. } = entry {
                analytic.push((name.to_string(), grad.as_standard_layout().into_owned()));
            }
        });

        let mut report = GradCheckReport::empty();
        for (which, (name, grad)) in analytic.iter().enumerate() {
            let mut value = parameter_value(layer, which);
            LayerError::check_shape(
                "gradcheck",
                "parameter gradient",
                value.shape(),
                grad.shape(),
            )?;
            for (i, &a) in grad.iter().enumerate() {
                let numeric = self.central_difference(&mut value, i, |v| {
                    set_parameter(layer, which, v);
                    Self::loss(layer, input.view(), &g)
                })?;
                set_parameter(layer, which, value.view());
                report.record(self.compare(name, unravel(i, grad.shape()), a, numeric));
            }
        }
        self.verdict(report)
    }

    /// [`check_input`](Self::check_input) and [`check_parameters`](Self::check_parameters) together.
    pub fn check_layer<L: Layer<f64, D, E> + ?Sized, D: Dimension, E: Dimension>(
        &self,
        layer: &mut L,
        input: ArrayView<'_, f64, D>,
    ) -> Result<GradCheckReport, GradCheckError> {
        let mut report = self.check_input(layer, input.view())?;
        report.merge(self.check_parameters(layer, input)?);
        Ok(report)
    }

    /// Checks `analytic` as the gradient of the scalar function `f` at `x`
    /// (for losses, or anything else that is not a [`Layer`]).
    pub fn check_function<D: Dimension>(
        &self,
        what: &str,
        x: ArrayView<'_, f64, D>,
        analytic: ArrayView<'_, f64, D>,
        mut f: impl FnMut(ArrayView<'_, f64, D>) -> Result<f64, LayerError>,
    ) -> Result<GradCheckReport, GradCheckError> {
        self.validate()?;
        LayerError::check_shape(
            "gradcheck",
            "analytic gradient",
            x.shape(),
            analytic.shape(),
        )?;
        // Row-major copies, so element i of `x` is element i of `analytic`.
        let mut x = x.as_standard_layout().into_owned();
        let shape = x.shape().to_vec();
        let mut report = GradCheckReport::empty();
        for (i, &a) in analytic.iter().enumerate() {
            let numeric = self.central_difference(&mut x, i, &mut f)?;
            report.record(self.compare(what, unravel(i, &shape), a, numeric));
        }
        self.verdict(report)
    }

    /// `(L(x + h eᵢ) - L(x - h eᵢ)) / 2h` for element `i` of the row-major `x`, restored afterwards.
    pub(crate) fn central_difference<D: Dimension>(
        &self,
        x: &mut Array<f64, D>,
        i: usize,
        mut loss: impl FnMut(ArrayView<'_, f64, D>) -> Result<f64, LayerError>,
    ) -> Result<f64, LayerError> {
        let x0 = element(x, i);
        let h = self.step * x0.abs().max(1.0);
        set_element(x, i, x0 + h);
        let up = loss(x.view());
        set_element(x, i, x0 - h);
        let down = loss(x.view());
        set_element(x, i, x0);
        Ok((up? - down?) / (2.0 * h))
    }

    /// `Ok(report)` if it passed, else `Err(Mismatch(report))`.
    pub(crate) fn verdict(
        &self,
        report: GradCheckReport,
    ) -> Result<GradCheckReport, GradCheckError> {
        if report.passed() {
            Ok(report)
        } else {
            Err(GradCheckError::Mismatch(report))
        }
    }
}

/// A row-major copy of parameter number `which` of `layer`.
fn parameter_value<L: StateDict<f64> + ?Sized>(layer: &L, which: usize) -> ArrayD<f64> {
    let mut found = None;
    let mut index = 0;
    layer.visit_state(&Name::ROOT, &mut |_, entry| {
        if let Entry::Parameter { value, .. } = entry {
            if index == which {
                found = Some(value.as_standard_layout().into_owned());
            }
            index += 1;
        }
    });
    // Not found only if the layer visits fewer parameters than before; the
    // caller's shape check then reports it.
    found.unwrap_or_else(|| ArrayD::zeros(vec![0]))
}

/// Overwrites parameter number `which` of `layer` with `value` (same shape).
fn set_parameter<L: StateDict<f64> + ?Sized>(
    layer: &mut L,
    which: usize,
    new: ArrayViewD<'_, f64>,
) {
    let mut index = 0;
    layer.visit_state_mut(&Name::ROOT, &mut |_, entry| {
        if let EntryMut::Parameter { mut value, .. } = entry {
            if index == which && value.shape() == new.shape() {
                value.assign(&new);
            }
            index += 1;
        }
    });
}

/// Element `i` of `x` in logical row-major order.
fn element<D: Dimension>(x: &Array<f64, D>, i: usize) -> f64 {
    x.iter().nth(i).copied().unwrap_or(f64::NAN)
}

fn set_element<D: Dimension>(x: &mut Array<f64, D>, i: usize, value: f64) {
    if let Some(v) = x.iter_mut().nth(i) {
        *v = value;
    }
}

/// The multi-index of flat position `i` in a row-major array of `shape`.
pub(crate) fn unravel(mut i: usize, shape: &[usize]) -> Vec<usize> {
    let mut index = vec![0; shape.len()];
    for (slot, &n) in index.iter_mut().zip(shape).rev() {
        *slot = i % n.max(1);
        i /= n.max(1);
    }
    index
}
