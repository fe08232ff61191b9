//! Losses: fused softmax cross-entropy for classification, mean squared error for regression.
//!
//! A loss's `forward` returns the scalar loss (a mean) and caches what its
//! `backward` needs; `backward` returns the gradient of that mean, ready to be
//! fed to the last layer's `backward`.

use ndarray::{Array, Array1, Array2, ArrayView, ArrayView1, ArrayView2, Dimension, Ix2, Zip};

use crate::buffer::{reuse, reuse_like};
use crate::error::{LayerError, require, require_all};
use crate::kernels;
use crate::layer::Layer;
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
/// As PyTorch's `CrossEntropyLoss`, it can weigh classes
/// ([`with_weight`](Self::with_weight)), smooth labels
/// ([`with_label_smoothing`](Self::with_label_smoothing)) and sum instead of
/// averaging ([`with_reduction`](Self::with_reduction)); `tests/reductions.rs`
/// checks each against PyTorch 2.15's numbers.
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
    /// The gradient of the reduced loss with respect to the logits, from the last forward.
    grad: Option<Array2<F>>,
    reduction: Reduction,
    /// Per-class weights, PyTorch's `weight`.
    weight: Option<Array1<F>>,
    /// PyTorch's `label_smoothing` ε, in `[0, 1]`.
    smoothing: F,
    /// One row's target coefficients, reused (weighted or smoothed losses only).
    coefficients: Vec<F>,
}

/// How a loss combines its terms (the rows' losses of a cross-entropy, the
/// elements' squared errors of `Mse`), as PyTorch's `reduction`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Reduction {
    /// Their mean, PyTorch's default: the step size does not depend on the batch.
    #[default]
    Mean,
    /// Their sum: gradients of several calls add up to the gradient of one
    /// call over all their terms.
    Sum,
}

impl Reduction {
    /// The factor each term is multiplied by: `1/n` for the mean of `n`, 1 for the sum.
    fn scale<F: Real>(self, n: usize) -> F {
        match self {
            Reduction::Mean => F::ONE / F::from_usize(n).unwrap_or(F::nan()),
            Reduction::Sum => F::ONE,
        }
    }
}

const CE: &str = "SoftmaxCrossEntropy";

/// The losses' common interface, for training code generic over the loss:
/// `forward` returns the mean loss and fills the gradient, `loss` computes
/// the same number through `&self` without touching it, `backward_view`
/// lends the gradient of the last `forward`.
///
/// `T` is the target: class indices or probabilities for
/// [`SoftmaxCrossEntropy`] (see [`ClassTargets`]), an array like the
/// prediction for [`Mse`].
pub trait Loss<F, D: Dimension, T> {
    /// The mean loss of `prediction` against `target`; caches its gradient.
    fn forward(&mut self, prediction: ArrayView<'_, F, D>, target: T) -> Result<F, LayerError>;

    /// The same mean loss as [`forward`](Self::forward), leaving the cached gradient alone.
    fn loss(&self, prediction: ArrayView<'_, F, D>, target: T) -> Result<F, LayerError>;

    /// `d(mean loss)/d(prediction)` for the last forward, as a view of the loss's own buffer.
    fn backward_view(&self) -> Result<ArrayView<'_, F, D>, LayerError>;
}

/// What [`SoftmaxCrossEntropy`] compares each row of logits with, as
/// PyTorch's `CrossEntropyLoss` accepts:
///
/// | target | type | row loss `ℓ_b` | `dℓ_b/dx_bj` |
/// |---|---|---|---|
/// | class indices, shape `(batch)` | `ArrayView1` of any integer type ([`ClassIndex`]) | `-log_softmax(x_b)[t_b]` | `p_bj - [j = t_b]` |
/// | probabilities (one-hot or soft), shape `(batch, classes)` | `ArrayView2<F>` | `-Σ_j t_bj log_softmax(x_b)_j` | `p_bj Σ_k t_bk - t_bj` |
///
/// Probabilities must be finite and non-negative; rows need not sum to 1
/// (the gradient's `Σ_k t_bk` keeps it exact for any row sum). A class
/// whose probability is 0 contributes 0 even where its log-probability is
/// `-∞` (a `-∞` logit), where PyTorch's `0 · -∞` gives NaN.
///
/// The trait is sealed: these are the targets there are.
pub trait ClassTargets<F>: sealed::Sealed {
    /// Checks the targets against logits of shape `(batch, classes)`.
    #[doc(hidden)]
    fn check(&self, batch: usize, classes: usize) -> Result<(), LayerError>;
    /// `ℓ_b` from row `b`'s log-probabilities.
    #[doc(hidden)]
    fn row_loss(&self, row: usize, log_p: &[F]) -> F;
    /// Turns row `b`'s probabilities `p` into `scale · dℓ_b/dx_b`.
    #[doc(hidden)]
    fn row_gradient(&self, row: usize, p: &mut [F], scale: F);
    /// Row `b`'s coefficients `a` of a weighted or smoothed loss
    /// (`ℓ_b = -Σ_c a_c log p_c`), and the row's share of the mean's divisor.
    #[doc(hidden)]
    fn row_coefficients(&self, row: usize, weight: Option<&[F]>, smoothing: F, a: &mut [F]) -> F;
}

mod sealed {
    pub trait Sealed {}
    impl<U: super::ClassIndex> Sealed for ndarray::ArrayView1<'_, U> {}
    impl<F> Sealed for ndarray::ArrayView2<'_, F> {}
    macro_rules! sealed {
        ($($t:ty),*) => {$( impl Sealed for $t {} )*};
    }
    sealed!(u8, u16, u32, u64, usize, i8, i16, i32, i64, isize);
}

/// An integer type usable as a class index: any unsigned one (`u8` to
/// `u64`, `usize`) and, as PyTorch's `int64` labels, the signed ones, where a
/// negative label is a [`LayerError::LabelOutOfRange`]. Unsuffixed literals
/// (`array![0, 2]`) are `i32` and work as they are.
pub trait ClassIndex: Copy + sealed::Sealed {
    /// The index as a `usize`, or `None` where it is negative or does not fit.
    fn to_index(self) -> Option<usize>;
    /// The value, for error messages.
    fn value(self) -> i128;
}

macro_rules! class_index {
    ($($t:ty),*) => {$(
        impl ClassIndex for $t {
            #[inline]
            fn to_index(self) -> Option<usize> {
                usize::try_from(self).ok()
            }
            fn value(self) -> i128 {
                // Lossless: i128 holds every u64 and i64.
                self as i128
            }
        }
    )*};
}
class_index!(u8, u16, u32, u64, usize, i8, i16, i32, i64, isize);

impl<F: Real, U: ClassIndex> ClassTargets<F> for ArrayView1<'_, U> {
    fn check(&self, batch: usize, classes: usize) -> Result<(), LayerError> {
        if self.len() != batch {
            // Logits of shape (classes, labels) are the transpose of what fits:
            // blame them, not the labels.
            return Err(if classes == self.len() {
                LayerError::shape_described(
                    CE,
                    "logits",
                    format!(
                        "({}, classes): one row per label (is it transposed?)",
                        self.len()
                    ),
                    &[batch, classes],
                )
            } else {
                LayerError::shape_described(
                    CE,
                    "labels",
                    format!("[{batch}]: one class index per row of the logits"),
                    self.shape(),
                )
            });
        }
        match self
            .iter()
            .enumerate()
            .find(|&(_, &t)| t.to_index().is_none_or(|label| label >= classes))
        {
            Some((index, &label)) => Err(LayerError::LabelOutOfRange {
                layer: CE,
                index,
                label: label.value(),
                classes,
            }),
            None => Ok(()),
        }
    }

    fn row_loss(&self, row: usize, log_p: &[F]) -> F {
        -log_p[label(self, row)]
    }

    fn row_gradient(&self, row: usize, p: &mut [F], scale: F) {
        let label = label(self, row);
        // The true class's p - 1 cancels when the answer is confident (in
        // f32 it is 0 once p rounds to 1); -Σ_{j≠label} p_j is the same
        // number without the cancellation.
        let others = sum_except(p, label);
        for p in p.iter_mut() {
            *p *= scale;
        }
        p[label] = -others * scale;
    }

    fn row_coefficients(&self, row: usize, weight: Option<&[F]>, smoothing: F, a: &mut [F]) -> F {
        // (1 - ε) w_t [c = t] + (ε / C) w_c, as PyTorch's
        // (1 - ε) nll_loss + ε / C · smooth_loss; the mean divides by Σ_b w_(t_b).
        let label = label(self, row);
        let spread = smoothing / F::from_usize(a.len()).unwrap_or(F::nan());
        let w = |c: usize| weight.map_or(F::ONE, |w| w[c]);
        for (c, a) in a.iter_mut().enumerate() {
            *a = spread * w(c);
        }
        a[label] += (F::ONE - smoothing) * w(label);
        w(label)
    }
}

/// Row `row`'s label, checked by [`ClassTargets::check`] before any use.
fn label<U: ClassIndex>(labels: &ArrayView1<'_, U>, row: usize) -> usize {
    labels[row].to_index().unwrap_or(usize::MAX)
}

impl<F: Real> ClassTargets<F> for ArrayView2<'_, F> {
    fn check(&self, batch: usize, classes: usize) -> Result<(), LayerError> {
        if batch != classes && self.shape() == [classes, batch] {
            // Logits of shape (classes, batch) are the transpose of what
            // fits targets of shape (batch, classes): blame the logits.
            return Err(LayerError::shape_described(
                CE,
                "logits",
                format!("({classes}, {batch}): one row per row of the targets (is it transposed?)"),
                &[batch, classes],
            ));
        }
        LayerError::check_shape(CE, "target probabilities", &[batch, classes], self.shape())?;
        let valid = |t: F| t.is_finite() && t >= F::zero();
        let requirement = "must be finite and non-negative";
        require_all(CE, "target probability", self, valid, requirement)
    }

    fn row_loss(&self, row: usize, log_p: &[F]) -> F {
        -self
            .row(row)
            .iter()
            .zip(log_p)
            .filter(|&(&t, _)| t != F::zero())
            .fold(F::zero(), |total, (&t, &l)| total + t * l)
    }

    fn row_gradient(&self, row: usize, p: &mut [F], scale: F) {
        let t = self.row(row);
        let mass = t.iter().fold(F::zero(), |total, &t| total + t);
        for (p, &t) in p.iter_mut().zip(&t) {
            *p = (*p * mass - t) * scale;
        }
    }

    fn row_coefficients(&self, row: usize, weight: Option<&[F]>, smoothing: F, a: &mut [F]) -> F {
        // w_c (t_c (1 - ε) + ε / C), as PyTorch smooths probability targets;
        // the mean divides by the batch, weights or not.
        let spread = smoothing / F::from_usize(a.len()).unwrap_or(F::nan());
        for (c, (a, &t)) in a.iter_mut().zip(self.row(row)).enumerate() {
            *a = (t * (F::ONE - smoothing) + spread) * weight.map_or(F::ONE, |w| w[c]);
        }
        F::ONE
    }
}

impl<F: Real> SoftmaxCrossEntropy<F> {
    /// A loss with an empty cache.
    pub fn new() -> Self {
        SoftmaxCrossEntropy {
            grad: None,
            reduction: Reduction::Mean,
            weight: None,
            smoothing: F::zero(),
            coefficients: Vec::new(),
        }
    }

    /// Weighs each class's terms by `weight[c]` (finite, non-negative; one
    /// per class, checked against the logits), as PyTorch's `weight`. With
    /// class indices the mean divides by `Σ_b weight[t_b]`; with
    /// probabilities, by the batch (PyTorch's rules):
    /// ```text
    /// ℓ_b = -weight[t_b] log p_b,t_b            loss = Σ_b ℓ_b / Σ_b weight[t_b]
    /// ```
    pub fn with_weight(mut self, weight: Array1<F>) -> Result<Self, LayerError> {
        let valid = |w: F| w.is_finite() && w >= F::zero();
        require_all(
            CE,
            "weight",
            &weight.view(),
            valid,
            "must be finite and non-negative",
        )?;
        // In memory order, whatever the strides given.
        self.weight = Some(weight.iter().copied().collect());
        Ok(self)
    }

    /// Label smoothing ε in `[0, 1]`, as PyTorch's `label_smoothing`: the
    /// target becomes `(1 - ε) · target + ε / classes` (weighted by class
    /// when there are weights).
    pub fn with_label_smoothing(mut self, smoothing: F) -> Result<Self, LayerError> {
        let valid = smoothing >= F::zero() && smoothing <= F::ONE;
        self.smoothing = require(CE, "label_smoothing", smoothing, valid, "must be in [0, 1]")?;
        Ok(self)
    }

    /// The loss with `reduction` (the mean by default; [`Reduction::Sum`]
    /// as PyTorch's `reduction="sum"`), for `forward`, `loss` and the gradient.
    pub fn with_reduction(mut self, reduction: Reduction) -> Self {
        self.reduction = reduction;
        self
    }

    /// The mean cross-entropy of `softmax(logits)` against `target`: class
    /// indices (one per row, any unsigned integer type) or probabilities
    /// (see [`ClassTargets`]). Caches the gradient for [`backward_view`](Self::backward_view).
    pub fn forward<T: ClassTargets<F>>(
        &mut self,
        logits: ArrayView2<'_, F>,
        target: T,
    ) -> Result<F, LayerError> {
        let (batch, classes) = check_logits(&logits, &target)?;
        let adjustments = adjustments(&self.weight, self.smoothing, classes)?;
        let grad = reuse(&mut self.grad, Ix2(batch, classes), false);
        let logits = logits.as_standard_layout();
        let (Some(x), Some(g)) = (logits.as_slice(), grad.as_slice_mut()) else {
            unreachable!("standard-layout arrays are contiguous slices")
        };
        if let Some((weight, smoothing)) = adjustments {
            let a = &mut self.coefficients;
            a.resize(classes, F::zero());
            kernels::log_softmax_rows(x, g, classes);
            let (total, divisor) = adjusted_loss(&target, g, weight, smoothing, a);
            let scale = match self.reduction {
                Reduction::Mean => F::ONE / divisor,
                Reduction::Sum => F::ONE,
            };
            kernels::softmax_rows(x, g, classes, F::ONE);
            for (row, p) in g.chunks_exact_mut(classes).enumerate() {
                target.row_coefficients(row, weight, smoothing, a);
                let mass = a.iter().fold(F::zero(), |t, &a| t + a);
                for (p, &a) in p.iter_mut().zip(a.iter()) {
                    *p = (*p * mass - a) * scale;
                }
            }
            return Ok(match self.reduction {
                Reduction::Mean => total / divisor,
                Reduction::Sum => total,
            });
        }
        // Each row's loss is taken from the log-softmax kernel (a dominant
        // correct logit keeps its tiny loss instead of rounding ln(1 + s) to
        // 0); the gradient from the softmax kernel, whose small probabilities
        // keep full precision too. g holds one, then the other.
        kernels::log_softmax_rows(x, g, classes);
        let scale = self.reduction.scale::<F>(batch);
        let mean = reduced_loss::<F, T>(&target, g, batch, classes, scale);
        kernels::softmax_rows(x, g, classes, F::ONE);
        for (row, p) in g.chunks_exact_mut(classes).enumerate() {
            target.row_gradient(row, p, scale);
        }
        Ok(mean)
    }

    /// The mean loss of [`forward`](Self::forward), through `&self`: the
    /// cached gradient is left as it was, and none is computed.
    pub fn loss<T: ClassTargets<F>>(
        &self,
        logits: ArrayView2<'_, F>,
        target: T,
    ) -> Result<F, LayerError> {
        let (batch, classes) = check_logits(&logits, &target)?;
        let logits = logits.as_standard_layout();
        let mut log_p = Array2::zeros((batch, classes));
        let (Some(x), Some(l)) = (logits.as_slice(), log_p.as_slice_mut()) else {
            unreachable!("standard-layout arrays are contiguous slices")
        };
        kernels::log_softmax_rows(x, l, classes);
        if let Some((weight, smoothing)) = adjustments(&self.weight, self.smoothing, classes)? {
            let (total, divisor) =
                adjusted_loss(&target, l, weight, smoothing, &mut vec![F::zero(); classes]);
            return Ok(match self.reduction {
                Reduction::Mean => total / divisor,
                Reduction::Sum => total,
            });
        }
        let scale = self.reduction.scale::<F>(batch);
        Ok(reduced_loss::<F, T>(&target, l, batch, classes, scale))
    }

    /// `softmax(logits)` row by row: the probabilities the loss compares
    /// with its target, for evaluation (`&self`; the cache is untouched).
    pub fn probabilities(&self, logits: ArrayView2<'_, F>) -> Result<Array2<F>, LayerError> {
        crate::softmax::Softmax::new().infer(logits)
    }

    /// `d(mean loss)/d(logits)` for the last forward, e.g. `(softmax(logits) - onehot(labels)) / batch`.
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

impl<F: Real, T: ClassTargets<F>> Loss<F, Ix2, T> for SoftmaxCrossEntropy<F> {
    fn forward(&mut self, logits: ArrayView2<'_, F>, target: T) -> Result<F, LayerError> {
        SoftmaxCrossEntropy::forward(self, logits, target)
    }

    fn loss(&self, logits: ArrayView2<'_, F>, target: T) -> Result<F, LayerError> {
        SoftmaxCrossEntropy::loss(self, logits, target)
    }

    fn backward_view(&self) -> Result<ArrayView2<'_, F>, LayerError> {
        SoftmaxCrossEntropy::backward_view(self)
    }
}

/// The logits' `(batch, classes)`, once the target fits them and the batch is not empty.
fn check_logits<F: Real, T: ClassTargets<F>>(
    logits: &ArrayView2<'_, F>,
    target: &T,
) -> Result<(usize, usize), LayerError> {
    let (batch, classes) = logits.dim();
    // Before the targets: with no classes every label is out of range, and
    // the error would blame the labels for the logits' shape.
    if classes == 0 {
        return Err(LayerError::Empty {
            layer: CE,
            what: "the classes (logits have no columns)",
        });
    }
    target.check(batch, classes)?;
    if batch == 0 {
        return Err(LayerError::Empty {
            layer: CE,
            what: "the batch",
        });
    }
    Ok((batch, classes))
}

/// The rows' losses, from the row-major log-probabilities, summed and
/// multiplied by `scale` (`1/batch` for the mean).
fn reduced_loss<F: Real, T: ClassTargets<F>>(
    target: &T,
    log_p: &[F],
    batch: usize,
    classes: usize,
    scale: F,
) -> F {
    let row_loss = |row: usize| target.row_loss(row, &log_p[row * classes..][..classes]);
    let total = (0..batch).map(row_loss).fold(F::zero(), |t, l| t + l);
    if total.is_infinite() && scale < F::ONE && (0..batch).map(row_loss).all(|l| l.is_finite()) {
        // Huge finite losses (logits near 1e38 in f32) whose sum overflows
        // while their mean does not: scale each before adding.
        return (0..batch)
            .map(row_loss)
            .fold(F::zero(), |t, l| t + l * scale);
    }
    total * scale
}

/// A cross-entropy's class weights (if any) and label smoothing, when it
/// has either; `None` for the plain loss.
type Adjustments<'w, F> = Option<(Option<&'w [F]>, F)>;

/// The class weights and smoothing of a loss, once the weights fit `classes`.
fn adjustments<F: Real>(
    weight: &Option<Array1<F>>,
    smoothing: F,
    classes: usize,
) -> Result<Adjustments<'_, F>, LayerError> {
    if let Some(weight) = weight
        && weight.len() != classes
    {
        let expected = format!("[{classes}]: one weight per class (column of the logits)");
        return Err(LayerError::shape_described(
            CE,
            "weight",
            expected,
            weight.shape(),
        ));
    }
    let weight = weight.as_ref().and_then(|w| w.as_slice());
    Ok((weight.is_some() || smoothing != F::zero()).then_some((weight, smoothing)))
}

/// A weighted or smoothed loss from the row-major log-probabilities: the
/// sum of the rows' `-Σ_c a_c log p_c` (terms with `a_c = 0` skipped, as a
/// 0 target is, even at a `-∞` log-probability) and the mean's divisor.
fn adjusted_loss<F: Real, T: ClassTargets<F>>(
    target: &T,
    log_p: &[F],
    weight: Option<&[F]>,
    smoothing: F,
    a: &mut [F],
) -> (F, F) {
    let mut total = F::zero();
    let mut divisor = F::zero();
    for (row, log_p) in log_p.chunks_exact(a.len()).enumerate() {
        divisor += target.row_coefficients(row, weight, smoothing, a);
        for (&a, &l) in a.iter().zip(log_p) {
            if a != F::zero() {
                total -= a * l;
            }
        }
    }
    (total, divisor)
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
    /// `2 (p - t) / N` (mean) or `2 (p - t)` (sum) from the last forward.
    grad: Option<Array<F, D>>,
    reduction: Reduction,
}

impl<F, D: Dimension> Default for Mse<F, D> {
    fn default() -> Self {
        Mse {
            grad: None,
            reduction: Reduction::Mean,
        }
    }
}

const MSE: &str = "Mse";

impl<F: Real, D: Dimension> Mse<F, D> {
    /// A loss with an empty cache.
    pub fn new() -> Self {
        Self::default()
    }

    /// The loss with `reduction`: the mean over all elements by default,
    /// [`Reduction::Sum`] as PyTorch's `reduction="sum"` (gradient `2 (p - t)`).
    pub fn with_reduction(mut self, reduction: Reduction) -> Self {
        self.reduction = reduction;
        self
    }

    /// `N`, once `target` fits `prediction` and there is at least one element.
    fn check(
        prediction: &ArrayView<'_, F, D>,
        target: &ArrayView<'_, F, D>,
    ) -> Result<F, LayerError> {
        LayerError::check_shape(MSE, "target", prediction.shape(), target.shape())?;
        if prediction.is_empty() {
            return Err(LayerError::Empty {
                layer: MSE,
                what: "the prediction",
            });
        }
        Ok(F::from_usize(prediction.len()).unwrap_or(F::nan()))
    }

    /// The mean of `(prediction - target)²` over all elements; caches the
    /// gradient in a buffer reused for every shape no larger than the largest seen.
    pub fn forward(
        &mut self,
        prediction: ArrayView<'_, F, D>,
        target: ArrayView<'_, F, D>,
    ) -> Result<F, LayerError> {
        let n = Self::check(&prediction, &target)?;
        let two_over_n = match self.reduction {
            Reduction::Mean => F::TWO / n,
            Reduction::Sum => F::TWO,
        };
        let grad = reuse_like(&mut self.grad, &prediction);
        let mut total = F::zero();
        Zip::from(grad)
            .and(&prediction)
            .and(&target)
            .for_each(|g, &p, &t| {
                let d = p - t;
                total += d * d;
                *g = two_over_n * d;
            });
        Ok(self.reduce(total, n))
    }

    /// The mean loss of [`forward`](Self::forward) through `&self`, leaving the cached gradient alone.
    pub fn loss(
        &self,
        prediction: ArrayView<'_, F, D>,
        target: ArrayView<'_, F, D>,
    ) -> Result<F, LayerError> {
        let n = Self::check(&prediction, &target)?;
        let mut total = F::zero();
        Zip::from(&prediction).and(&target).for_each(|&p, &t| {
            let d = p - t;
            total += d * d;
        });
        Ok(self.reduce(total, n))
    }

    /// The sum of `n` squared errors, reduced.
    fn reduce(&self, total: F, n: F) -> F {
        match self.reduction {
            Reduction::Mean => total / n,
            Reduction::Sum => total,
        }
    }

    /// `d(loss)/d(prediction) = 2 (prediction - target) / N` (mean) or
    /// `2 (prediction - target)` (sum) for the last forward.
    pub fn backward(&self) -> Result<Array<F, D>, LayerError> {
        Ok(self.backward_view()?.to_owned())
    }

    /// The same gradient as [`backward`](Self::backward), as a view of the loss's own buffer.
    pub fn backward_view(&self) -> Result<ArrayView<'_, F, D>, LayerError> {
        self.grad
            .as_ref()
            .map(|g| g.view())
            .ok_or(LayerError::BackwardBeforeForward { layer: MSE })
    }
}

impl<'t, F: Real, D: Dimension> Loss<F, D, ArrayView<'t, F, D>> for Mse<F, D> {
    fn forward(
        &mut self,
        prediction: ArrayView<'_, F, D>,
        target: ArrayView<'t, F, D>,
    ) -> Result<F, LayerError> {
        Mse::forward(self, prediction, target)
    }

    fn loss(
        &self,
        prediction: ArrayView<'_, F, D>,
        target: ArrayView<'t, F, D>,
    ) -> Result<F, LayerError> {
        Mse::loss(self, prediction, target)
    }

    fn backward_view(&self) -> Result<ArrayView<'_, F, D>, LayerError> {
        Mse::backward_view(self)
    }
}
