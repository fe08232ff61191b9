//! Layer normalisation over the last axis, as PyTorch's `nn.LayerNorm(features)`.

use ndarray::{Array, Array1, ArrayView, ArrayView1, Axis, CowArray, Dimension, Ix2};

use crate::buffer::{cached_for, reuse, try_vec};
use crate::error::{LayerError, require, require_all};
use crate::layer::Layer;
use crate::real::Real;
use crate::state::{Entry, EntryMut, Name, StateDict, visit_fields, visit_fields_mut};

const NAME: &str = "LayerNorm";

/// PyTorch's default `eps`.
const DEFAULT_EPS: f64 = 1e-5;

/// Normalises each row (the last axis) to mean 0 and variance 1, then
/// applies a learned scale `γ` (`"weight"`, starting at 1) and shift `β`
/// (`"bias"`, starting at 0), one per feature. For a row `x` of `n` features:
/// ```text
/// μ = Σ x / n,   σ² = Σ (x - μ)² / n   (biased, as PyTorch),   r = 1 / √(σ² + ε)
/// x̂ = (x - μ) r,   y = γ ⊙ x̂ + β
/// with ĝ = g ⊙ γ:   dL/dx = r (ĝ - mean(ĝ) - x̂ · mean(ĝ ⊙ x̂))
///                   dL/dγ = Σ_rows g ⊙ x̂,   dL/dβ = Σ_rows g
/// ```
/// The input-gradient line follows from `∂x̂_i/∂x_j = r (δ_ij - 1/n - x̂_i x̂_j / n)`.
/// The variance is computed in two passes (about `x - μ`), never as
/// `E[x²] - μ²`, which cancels for rows with a large mean. Inputs of any
/// dimension work: every axis but the last is a batch axis.
///
/// # Example
/// ```
/// use ndlayers::prelude::*;
/// use ndlayers::ndarray::array;
///
/// let mut norm = LayerNorm::<f64>::new(4)?;
/// let y = norm.forward(array![[1.0, 2.0, 3.0, 4.0]].view())?;
/// assert!(y.sum().abs() < 1e-12); // mean 0
/// assert!((y.mapv(|v| v * v).mean().unwrap() - 1.0).abs() < 1e-4); // variance 1 (less ε)
/// # Ok::<(), LayerError>(())
/// ```
#[derive(Clone, Debug)]
pub struct LayerNorm<F, D: Dimension = Ix2> {
    weight: Array1<F>,
    bias: Array1<F>,
    grad_weight: Array1<F>,
    grad_bias: Array1<F>,
    eps: F,
    /// `x̂` of the last forward, row-major.
    normalized: Option<Array<F, D>>,
    /// `r` of each row of the last forward.
    rstd: Vec<F>,
    output: Option<Array<F, D>>,
    grad_input: Option<Array<F, D>>,
}

impl<F: Real, D: Dimension> LayerNorm<F, D> {
    /// Normalises rows of `features ≥ 1` elements, with PyTorch's `eps = 1e-5`.
    pub fn new(features: usize) -> Result<Self, LayerError> {
        require(
            NAME,
            "features",
            features,
            features > 0,
            "must be at least 1",
        )?;
        let filled = |value: F| -> Result<Array1<F>, LayerError> {
            let mut v = try_vec(features, NAME, format!("{features} features"))?;
            v.resize(features, value);
            Ok(Array1::from_vec(v))
        };
        Ok(LayerNorm {
            weight: filled(F::ONE)?,
            bias: filled(F::zero())?,
            grad_weight: filled(F::zero())?,
            grad_bias: filled(F::zero())?,
            eps: F::lit(DEFAULT_EPS),
            normalized: None,
            rstd: Vec::new(),
            output: None,
            grad_input: None,
        })
    }

    /// The same layer with `eps` (positive and finite) added to the variance.
    pub fn with_eps(mut self, eps: F) -> Result<Self, LayerError> {
        let valid = eps > F::zero() && eps.is_finite();
        self.eps = require(NAME, "eps", eps, valid, "must be positive and finite")?;
        Ok(self)
    }

    /// Number of features per row.
    pub fn features(&self) -> usize {
        self.weight.len()
    }

    /// The scale `γ`.
    pub fn weight(&self) -> ArrayView1<'_, F> {
        self.weight.view()
    }

    /// The shift `β`.
    pub fn bias(&self) -> ArrayView1<'_, F> {
        self.bias.view()
    }

    /// `dL/dγ` from the last backward.
    pub fn grad_weight(&self) -> ArrayView1<'_, F> {
        self.grad_weight.view()
    }

    /// `dL/dβ` from the last backward.
    pub fn grad_bias(&self) -> ArrayView1<'_, F> {
        self.grad_bias.view()
    }

    /// Overwrites `γ` and `β` in place (one per feature, finite). On error nothing changes.
    pub fn set_parameters(
        &mut self,
        weight: ArrayView1<'_, F>,
        bias: ArrayView1<'_, F>,
    ) -> Result<(), LayerError> {
        for (name, values) in [("weight", &weight), ("bias", &bias)] {
            LayerError::check_shape(NAME, name, self.weight.shape(), values.shape())?;
            require_all(NAME, name, values, F::is_finite, "must be finite")?;
        }
        self.weight.assign(&weight);
        self.bias.assign(&bias);
        Ok(())
    }

    /// `input` as a row-major array, once its last axis holds the features.
    fn rows_of<'a>(&self, input: ArrayView<'a, F, D>) -> Result<CowArray<'a, F, D>, LayerError> {
        let features = self.features();
        if input.ndim() == 0 || input.len_of(Axis(input.ndim() - 1)) != features {
            return Err(LayerError::shape_described(
                NAME,
                "input",
                format!("(…, {features}): the last axis holds the {features} normalised features"),
                input.shape(),
            ));
        }
        Ok(if input.is_standard_layout() {
            CowArray::from(input)
        } else {
            CowArray::from(input.as_standard_layout().into_owned())
        })
    }
}

/// Normalises one row into `out` (`x̂`), returning `r`.
fn normalize_row<F: Real>(x: &[F], out: &mut [F], eps: F) -> F {
    let n = F::from_usize(x.len()).unwrap_or(F::nan());
    let mean = x.iter().fold(F::zero(), |s, &v| s + v) / n;
    let variance = x
        .iter()
        .fold(F::zero(), |s, &v| s + (v - mean) * (v - mean))
        / n;
    let rstd = F::ONE / (variance + eps).sqrt();
    for (o, &v) in out.iter_mut().zip(x) {
        *o = (v - mean) * rstd;
    }
    rstd
}

impl<F: Real, D: Dimension> Layer<F, D> for LayerNorm<F, D> {
    /// Allocates only for a larger array than before.
    fn forward_view(
        &mut self,
        input: ArrayView<'_, F, D>,
    ) -> Result<ArrayView<'_, F, D>, LayerError> {
        let x = self.rows_of(input)?;
        let features = self.features();
        let normalized = reuse(&mut self.normalized, x.raw_dim(), false);
        let y = reuse(&mut self.output, x.raw_dim(), false);
        self.rstd.clear();
        let (Some(xs), Some(ns), Some(ys)) =
            (x.as_slice(), normalized.as_slice_mut(), y.as_slice_mut())
        else {
            unreachable!("row-major arrays are slices")
        };
        for ((x, n), y) in xs
            .chunks_exact(features)
            .zip(ns.chunks_exact_mut(features))
            .zip(ys.chunks_exact_mut(features))
        {
            self.rstd.push(normalize_row(x, n, self.eps));
            for (((y, &n), &w), &b) in y.iter_mut().zip(&*n).zip(&self.weight).zip(&self.bias) {
                *y = n * w + b;
            }
        }
        Ok(y.view())
    }

    /// Also stores `dL/dγ` and `dL/dβ`.
    fn backward_view(
        &mut self,
        grad_output: ArrayView<'_, F, D>,
    ) -> Result<ArrayView<'_, F, D>, LayerError> {
        let normalized = cached_for(&self.normalized, NAME, &grad_output)?;
        let g = grad_output.as_standard_layout();
        let features = self.features();
        let n = F::from_usize(features).unwrap_or(F::nan());
        let dx = reuse(&mut self.grad_input, normalized.raw_dim(), false);
        self.grad_weight.fill(F::zero());
        self.grad_bias.fill(F::zero());
        let (Some(gs), Some(ns), Some(dxs)) =
            (g.as_slice(), normalized.as_slice(), dx.as_slice_mut())
        else {
            unreachable!("row-major arrays are slices")
        };
        for (((g, x_hat), dx), &rstd) in gs
            .chunks_exact(features)
            .zip(ns.chunks_exact(features))
            .zip(dxs.chunks_exact_mut(features))
            .zip(&self.rstd)
        {
            let (mut mean_g, mut mean_gx) = (F::zero(), F::zero());
            for (((&g, &xh), &w), (dw, db)) in g
                .iter()
                .zip(x_hat)
                .zip(&self.weight)
                .zip(self.grad_weight.iter_mut().zip(self.grad_bias.iter_mut()))
            {
                let scaled = g * w;
                mean_g += scaled;
                mean_gx += scaled * xh;
                *dw += g * xh;
                *db += g;
            }
            let (mean_g, mean_gx) = (mean_g / n, mean_gx / n);
            for (((dx, &g), &xh), &w) in dx.iter_mut().zip(g).zip(x_hat).zip(&self.weight) {
                *dx = rstd * (g * w - mean_g - xh * mean_gx);
            }
        }
        Ok(dx.view())
    }

    fn infer(&self, input: ArrayView<'_, F, D>) -> Result<Array<F, D>, LayerError> {
        let x = self.rows_of(input)?;
        let features = self.features();
        let mut y = Array::zeros(x.raw_dim());
        let (Some(xs), Some(ys)) = (x.as_slice(), y.as_slice_mut()) else {
            unreachable!("row-major arrays are slices")
        };
        for (x, y) in xs.chunks_exact(features).zip(ys.chunks_exact_mut(features)) {
            normalize_row(x, y, self.eps);
            for ((y, &w), &b) in y.iter_mut().zip(&self.weight).zip(&self.bias) {
                *y = *y * w + b;
            }
        }
        Ok(y)
    }
}

/// `weight` (`γ`) and `bias` (`β`), PyTorch's names.
impl<F: Real, D: Dimension> StateDict<F> for LayerNorm<F, D> {
    fn visit_state(&self, prefix: &Name<'_>, visit: &mut dyn FnMut(&Name<'_>, Entry<'_, F>)) {
        let weight = Entry::parameter(self.weight.view(), self.grad_weight.view());
        let bias = Entry::parameter(self.bias.view(), self.grad_bias.view());
        visit_fields(prefix, visit, [("weight", weight), ("bias", bias)]);
    }

    fn visit_state_mut(
        &mut self,
        prefix: &Name<'_>,
        visit: &mut dyn FnMut(&Name<'_>, EntryMut<'_, F>),
    ) {
        let weight = EntryMut::parameter(self.weight.view_mut(), self.grad_weight.view_mut());
        let bias = EntryMut::parameter(self.bias.view_mut(), self.grad_bias.view_mut());
        visit_fields_mut(prefix, visit, [("weight", weight), ("bias", bias)]);
    }
}
