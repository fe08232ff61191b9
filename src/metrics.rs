//! Classification metrics over logits or predicted classes: [`argmax_rows`],
//! [`accuracy`], [`top_k_accuracy`], and a [`ConfusionMatrix`] with
//! per-class precision, recall and F1 that prints as a table.

use std::fmt;

use ndarray::{Array1, Array2, ArrayView1, ArrayView2};

use crate::error::LayerError;
use crate::real::Real;

const NAME: &str = "metrics";

/// The index of each row's largest value (the predicted class of each row of
/// `(batch, classes)` logits), as PyTorch's `argmax(dim=1)`: the first
/// maximum, and NaN counts as larger than any number (the first NaN wins).
/// A row of no columns is an error.
///
/// ```
/// use ndlayers::metrics::argmax_rows;
/// use ndlayers::ndarray::array;
///
/// let logits = array![[0.1_f32, 2.0, -1.0], [3.0, 3.0, 0.0]];
/// assert_eq!(argmax_rows(logits.view())?.to_vec(), [1, 0]);
/// # Ok::<(), ndlayers::LayerError>(())
/// ```
pub fn argmax_rows<F: Real>(logits: ArrayView2<'_, F>) -> Result<Array1<usize>, LayerError> {
    if logits.ncols() == 0 && logits.nrows() > 0 {
        return Err(LayerError::Empty {
            layer: NAME,
            what: "each row of the logits (no classes)",
        });
    }
    Ok(logits
        .rows()
        .into_iter()
        .map(|row| {
            let mut best = 0;
            for (i, &v) in row.iter().enumerate() {
                let current = row[best];
                if current.is_nan() {
                    break;
                }
                if v.is_nan() || v > current {
                    best = i;
                }
            }
            best
        })
        .collect())
}

/// The fraction of `predicted` equal to `labels` (same length, not empty).
///
/// ```
/// use ndlayers::metrics::accuracy;
/// use ndlayers::ndarray::array;
///
/// assert_eq!(accuracy(array![1, 0, 2, 2].view(), array![1, 1, 2, 0].view())?, 0.5);
/// # Ok::<(), ndlayers::LayerError>(())
/// ```
pub fn accuracy(
    predicted: ArrayView1<'_, usize>,
    labels: ArrayView1<'_, usize>,
) -> Result<f64, LayerError> {
    check_lengths(predicted.len(), labels.len())?;
    let correct = predicted
        .iter()
        .zip(&labels)
        .filter(|(p, t)| p == t)
        .count();
    Ok(correct as f64 / labels.len() as f64)
}

/// The fraction of rows of `(batch, classes)` logits whose label is among
/// the `k` largest logits of the row (ties broken by column order, NaN
/// largest), as the usual top-k accuracy. `k` must be at least 1.
///
/// ```
/// use ndlayers::metrics::top_k_accuracy;
/// use ndlayers::ndarray::array;
///
/// let logits = array![[0.1_f32, 2.0, 1.0], [3.0, 0.0, 1.0]];
/// assert_eq!(top_k_accuracy(logits.view(), array![2, 2].view(), 2)?, 1.0);
/// assert_eq!(top_k_accuracy(logits.view(), array![2, 1].view(), 2)?, 0.5);
/// # Ok::<(), ndlayers::LayerError>(())
/// ```
pub fn top_k_accuracy<F: Real>(
    logits: ArrayView2<'_, F>,
    labels: ArrayView1<'_, usize>,
    k: usize,
) -> Result<f64, LayerError> {
    check_lengths(logits.nrows(), labels.len())?;
    crate::error::require(NAME, "k", k, k >= 1, "must be at least 1")?;
    let mut hits = 0;
    for (row, &label) in logits.rows().into_iter().zip(&labels) {
        let Some(&mine) = row.get(label) else {
            return Err(LayerError::LabelOutOfRange {
                layer: NAME,
                index: 0,
                label: label as i128,
                classes: row.len(),
            });
        };
        // Columns ranked above the label's: larger, or equal and earlier.
        let above = row
            .iter()
            .enumerate()
            .filter(|&(j, &v)| ranks_above(v, j, mine, label))
            .count();
        hits += usize::from(above < k);
    }
    Ok(hits as f64 / labels.len() as f64)
}

/// Whether value `v` at column `j` ranks above `mine` at column `label`.
fn ranks_above<F: Real>(v: F, j: usize, mine: F, label: usize) -> bool {
    match (v.is_nan(), mine.is_nan()) {
        (true, true) => j < label,
        (true, false) => true,
        (false, true) => false,
        (false, false) => v > mine || (v == mine && j < label),
    }
}

fn check_lengths(predicted: usize, labels: usize) -> Result<(), LayerError> {
    if labels == 0 {
        return Err(LayerError::Empty {
            layer: NAME,
            what: "the labels",
        });
    }
    LayerError::check_shape(NAME, "predictions", &[labels], &[predicted])
}

/// Counts of (true class, predicted class) pairs: row `t`, column `p` holds
/// how many samples of class `t` were predicted as `p`, as scikit-learn's
/// `confusion_matrix`. Prints as a table.
///
/// ```
/// use ndlayers::metrics::ConfusionMatrix;
/// use ndlayers::ndarray::array;
///
/// let matrix = ConfusionMatrix::new(array![0, 1, 1, 2].view(), array![0, 1, 2, 2].view(), 3)?;
/// assert_eq!(matrix.counts()[[2, 1]], 1); // one 2 predicted as 1
/// assert_eq!(matrix.recall(2), 0.5);
/// assert_eq!(matrix.precision(1), 0.5);
/// println!("{matrix}");
/// # Ok::<(), ndlayers::LayerError>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfusionMatrix {
    counts: Array2<usize>,
}

impl ConfusionMatrix {
    /// The matrix of `classes` classes from predictions and true labels
    /// (same length; every value below `classes`).
    pub fn new(
        predicted: ArrayView1<'_, usize>,
        labels: ArrayView1<'_, usize>,
        classes: usize,
    ) -> Result<Self, LayerError> {
        check_lengths(predicted.len(), labels.len())?;
        let mut counts = Array2::zeros((classes, classes));
        for (index, (&p, &t)) in predicted.iter().zip(&labels).enumerate() {
            if let Some(bad) = [t, p].into_iter().find(|&c| c >= classes) {
                return Err(LayerError::LabelOutOfRange {
                    layer: NAME,
                    index,
                    label: bad as i128,
                    classes,
                });
            }
            counts[[t, p]] += 1;
        }
        Ok(ConfusionMatrix { counts })
    }

    /// The counts: row = true class, column = predicted class.
    pub fn counts(&self) -> ArrayView2<'_, usize> {
        self.counts.view()
    }

    /// Number of classes.
    pub fn classes(&self) -> usize {
        self.counts.nrows()
    }

    /// Of the samples predicted as `class`, the fraction that are (0 if none is).
    pub fn precision(&self, class: usize) -> f64 {
        ratio(self.counts[[class, class]], self.counts.column(class).sum())
    }

    /// Of the samples of `class`, the fraction predicted as it (0 if there is none).
    pub fn recall(&self, class: usize) -> f64 {
        ratio(self.counts[[class, class]], self.counts.row(class).sum())
    }

    /// The harmonic mean of precision and recall (0 where both are 0).
    pub fn f1(&self, class: usize) -> f64 {
        let (p, r) = (self.precision(class), self.recall(class));
        if p + r == 0.0 {
            0.0
        } else {
            2.0 * p * r / (p + r)
        }
    }

    /// The fraction of all samples on the diagonal.
    pub fn accuracy(&self) -> f64 {
        ratio(self.counts.diag().sum(), self.counts.sum())
    }
}

/// `a / b`, 0 for `b = 0` (scikit-learn's `zero_division=0`).
fn ratio(a: usize, b: usize) -> f64 {
    if b == 0 { 0.0 } else { a as f64 / b as f64 }
}

/// The counts with true classes down and predictions across, then each
/// class's precision, recall, F1 and support.
impl fmt::Display for ConfusionMatrix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let width = self
            .counts
            .iter()
            .max()
            .map_or(1, |m| m.to_string().len())
            .max(self.classes().to_string().len())
            .max(2);
        write!(f, "{:>6} |", "true")?;
        for p in 0..self.classes() {
            write!(f, " {p:>width$}")?;
        }
        writeln!(f, "  (predicted)")?;
        writeln!(f, "{}", "-".repeat(8 + (width + 1) * self.classes()))?;
        for (t, row) in self.counts.rows().into_iter().enumerate() {
            write!(f, "{t:>6} |")?;
            for count in row {
                write!(f, " {count:>width$}")?;
            }
            writeln!(f)?;
        }
        writeln!(
            f,
            "\n{:>6}  {:>9} {:>9} {:>9} {:>9}",
            "class", "precision", "recall", "f1", "support"
        )?;
        for c in 0..self.classes() {
            let support = self.counts.row(c).sum();
            writeln!(
                f,
                "{c:>6}  {:>9.4} {:>9.4} {:>9.4} {support:>9}",
                self.precision(c),
                self.recall(c),
                self.f1(c)
            )?;
        }
        write!(
            f,
            "accuracy {:.4} of {}",
            self.accuracy(),
            self.counts.sum()
        )
    }
}
