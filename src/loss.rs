//! Losses: fused softmax cross-entropy for classification, mean squared error for regression.
//!
//! A loss's `forward` returns the scalar loss (a mean) and caches what its
//! `backward` needs; `backward` returns the gradient of that mean, ready to be
//! fed to the last layer's `backward`.

use ndarray::{Array, Array2, ArrayView, ArrayView1, ArrayView2, Dimension, Ix2, Zip};

use crate::buffer::reuse;
use crate::kernels;
use crate::layer::LayerError;
use crate::real::Real;

/// Softmax followed by cross-entropy against integer class labels, fused, averaged over the batch.
///
/// For logits `x` of shape `(batch, classes)` and labels `t`:
/// ```text
/// loss = (1/B) Σ_b [ ln Σ_j e^(x_bj) - x_b,t_b ]          (log-sum-exp, shifted by the row maximum)
/// dloss/dx_bj = (softmax(x_b)_j - [j = t_b]) / B
/// ```
/// The fused form never takes the logarithm of a probability that has
/// underflowed to 0, so the loss and gradient stay finite for logits as large
/// as `±1e4` (and beyond). A `NaN` logit makes the loss `NaN`.
///
/// Each row's loss comes from [`LogSoftmax`](crate::softmax::LogSoftmax)'s
/// kernel and the probabilities from [`Softmax`](crate::softmax::Softmax)'s,
/// so both keep their digits at the extremes: a confident right answer's loss
/// `ln(1 + e^-20) = 2.06e-9` is not rounded to 0 in `f32`, and a probability
/// of `1e-30` is not off by the rounding of `x - max`. The true class's
/// gradient is computed as `-Σ_{j≠t} p_j / B`, the same number as
/// `(p_t - 1) / B` without its cancellation (`p_t` rounds to 1 in `f32` once
/// the others sum below `6e-8`, which would make that entry 0).
///
/// # Example
/// ```
/// use ndlayers::prelude::*;
/// use ndlayers::ndarray::array;
///
/// let mut ce = SoftmaxCrossEntropy::<f64>::new();
/// // Uniform logits: the loss is ln(classes).
/// let loss = ce.forward(array![[0.0, 0.0, 0.0, 0.0]].view(), array![2].view())?;
/// assert!((loss - 4f64.ln()).abs() < 1e-15);
/// let dlogits = ce.backward()?;
/// assert_eq!(dlogits, array![[0.25, 0.25, -0.75, 0.25]]);
/// # Ok::<(), LayerError>(())
/// ```
#[derive(Clone, Debug, Default)]
pub struct SoftmaxCrossEntropy<F> {
    /// `(softmax(x) - onehot(t)) / B` from the last forward.
    grad: Option<Array2<F>>,
}

const CE: &str = "SoftmaxCrossEntropy";

impl<F: Real> SoftmaxCrossEntropy<F> {
    /// A loss with an empty cache.
    pub fn new() -> Self {
        SoftmaxCrossEntropy { grad: None }
    }

    /// The mean cross-entropy of `softmax(logits)` against `labels` (one class index per row).
    pub fn forward(
        &mut self,
        logits: ArrayView2<'_, F>,
        labels: ArrayView1<'_, usize>,
    ) -> Result<F, LayerError> {
        let (batch, classes) = logits.dim();
        LayerError::check_shape(CE, "labels", &[batch], labels.shape())?;
        if batch == 0 {
            return Err(LayerError::Empty {
                layer: CE,
                what: "the batch",
            });
        }
        if let Some((index, &label)) = labels.indexed_iter().find(|&(_, &label)| label >= classes) {
            return Err(LayerError::LabelOutOfRange {
                layer: CE,
                index,
                label,
                classes,
            });
        }
        let grad = reuse(&mut self.grad, Ix2(batch, classes), false);
        let logits = logits.as_standard_layout();
        let (Some(x), Some(g)) = (logits.as_slice(), grad.as_slice_mut()) else {
            unreachable!("standard-layout arrays are contiguous slices")
        };
        // Each row's loss is -log_softmax(x)[label], taken from the log-softmax
        // kernel (a dominant correct logit keeps its tiny loss instead of
        // rounding ln(1 + s) to 0); the gradient from the softmax kernel,
        // whose small probabilities keep full precision too. g holds one, then the other.
        kernels::log_softmax_rows(x, g, classes);
        let scale = F::ONE / F::from_usize(batch).unwrap_or(F::nan());
        let row_loss = |(row, &label): (usize, &usize)| -g[row * classes + label];
        let total = labels
            .iter()
            .enumerate()
            .map(row_loss)
            .fold(F::zero(), |t, l| t + l);
        let mut mean = total * scale;
        if total.is_infinite()
            && labels
                .iter()
                .enumerate()
                .map(row_loss)
                .all(|l| l.is_finite())
        {
            // Huge finite losses (logits near 1e38 in f32) whose sum overflows
            // while their mean does not: scale each before adding.
            mean = labels
                .iter()
                .enumerate()
                .map(row_loss)
                .fold(F::zero(), |t, l| t + l * scale);
        }
        kernels::softmax_rows(x, g, classes, F::ONE);
        for (row, &label) in g.chunks_exact_mut(classes).zip(&labels) {
            // The true class's p - 1 cancels when the answer is confident (in
            // f32 it is 0 once p rounds to 1); -Σ_{j≠label} p_j is the same
            // number without the cancellation.
            let others = sum_except(row, label);
            for g in row.iter_mut() {
                *g *= scale;
            }
            row[label] = -others * scale;
        }
        Ok(mean)
    }

    /// `d(mean loss)/d(logits) = (softmax(logits) - onehot(labels)) / batch` for the last forward.
    pub fn backward(&self) -> Result<Array2<F>, LayerError> {
        Ok(self.backward_view()?.to_owned())
    }

    /// The same gradient as [`backward`](Self::backward), as a view of the loss's own buffer.
    pub fn backward_view(&self) -> Result<ArrayView2<'_, F>, LayerError> {
        self.grad
            .as_ref()
            .map(|g| g.view())
            .ok_or(LayerError::BackwardBeforeForward { layer: CE })
    }
}

/// `Σ_{j≠skip} row_j`: a plain sum over short rows (a few ulp; a call to the
/// compensated sum costs more than the rest of the loss on rows of 10),
/// [`kernels::sum`]'s compensated one over long rows, where plain sums drift.
fn sum_except<F: Real>(row: &[F], skip: usize) -> F {
    let (before, after) = (&row[..skip], &row[skip + 1..]);
    if row.len() < 128 {
        before
            .iter()
            .chain(after)
            .fold(F::zero(), |total, &p| total + p)
    } else {
        kernels::sum(before) + kernels::sum(after)
    }
}

/// Mean squared error over all elements (PyTorch's default `reduction='mean'`):
/// ```text
/// loss = (1/N) Σ (p - t)²,    dloss/dp = 2 (p - t) / N
/// ```
///
/// # Example
/// ```
/// use ndlayers::prelude::*;
/// use ndlayers::ndarray::array;
///
/// let mut mse = Mse::<f64>::new();
/// let loss = mse.forward(array![[1.0, 2.0]].view(), array![[0.0, 4.0]].view())?;
/// assert_eq!(loss, 2.5); // (1 + 4) / 2
/// assert_eq!(mse.backward()?, array![[1.0, -2.0]]);
/// # Ok::<(), LayerError>(())
/// ```
#[derive(Clone, Debug)]
pub struct Mse<F, D: Dimension = Ix2> {
    /// `2 (p - t) / N` from the last forward.
    grad: Option<Array<F, D>>,
}

impl<F, D: Dimension> Default for Mse<F, D> {
    fn default() -> Self {
        Mse { grad: None }
    }
}

const MSE: &str = "Mse";

impl<F: Real, D: Dimension> Mse<F, D> {
    /// A loss with an empty cache.
    pub fn new() -> Self {
        Self::default()
    }

    /// The mean of `(prediction - target)²` over all elements.
    pub fn forward(
        &mut self,
        prediction: ArrayView<'_, F, D>,
        target: ArrayView<'_, F, D>,
    ) -> Result<F, LayerError> {
        LayerError::check_shape(MSE, "target", prediction.shape(), target.shape())?;
        if prediction.is_empty() {
            return Err(LayerError::Empty {
                layer: MSE,
                what: "the prediction",
            });
        }
        let n = F::from_usize(prediction.len()).unwrap_or(F::nan());
        let two_over_n = F::TWO / n;
        let grad = self
            .grad
            .get_or_insert_with(|| Array::zeros(prediction.raw_dim()));
        if grad.shape() != prediction.shape() {
            *grad = Array::zeros(prediction.raw_dim());
        }
        let mut total = F::zero();
        Zip::from(grad)
            .and(&prediction)
            .and(&target)
            .for_each(|g, &p, &t| {
                let d = p - t;
                total += d * d;
                *g = two_over_n * d;
            });
        Ok(total / n)
    }

    /// `d(mean loss)/d(prediction) = 2 (prediction - target) / N` for the last forward.
    pub fn backward(&self) -> Result<Array<F, D>, LayerError> {
        self.grad
            .as_ref()
            .cloned()
            .ok_or(LayerError::BackwardBeforeForward { layer: MSE })
    }
}
