//! [`one_hot`]: class indices as rows of zeros and a one.

use ndarray::{Array2, ArrayView1};

use crate::error::LayerError;
use crate::loss::ClassIndex;
use crate::real::Real;

/// `labels` (any integer type) as a `(labels, classes)` array with a 1 in
/// each row's label column and 0 elsewhere, as PyTorch's
/// `F.one_hot(labels, classes)` (in the network's float type). A label
/// outside `0..classes` is an error naming it and its position.
///
/// ```
/// use ndlayers::data::one_hot;
/// use ndlayers::ndarray::array;
///
/// let encoded = one_hot::<f32, _>(array![2u8, 0].view(), 3)?;
/// assert_eq!(encoded, array![[0.0, 0.0, 1.0], [1.0, 0.0, 0.0]]);
/// # Ok::<(), ndlayers::LayerError>(())
/// ```
pub fn one_hot<F: Real, U: ClassIndex>(
    labels: ArrayView1<'_, U>,
    classes: usize,
) -> Result<Array2<F>, LayerError> {
    let mut encoded = Array2::zeros((labels.len(), classes));
    for (index, (&label, mut row)) in labels.iter().zip(encoded.rows_mut()).enumerate() {
        match label.to_index().filter(|&l| l < classes) {
            Some(l) => row[l] = F::ONE,
            None => {
                return Err(LayerError::LabelOutOfRange {
                    layer: "one_hot",
                    index,
                    label: label.value(),
                    classes,
                });
            }
        }
    }
    Ok(encoded)
}
