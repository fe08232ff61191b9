//! [`Standardizer`]: zero mean and unit variance per feature, fitted on the
//! training set.

use ndarray::{Array, ArrayView, Axis, Dimension, IxDyn};

use crate::error::LayerError;
use crate::real::Real;

/// Standardises each feature (each position of a sample: a column of rows,
/// a pixel of images) to zero mean and unit variance with statistics taken
/// from the training set, as scikit-learn's `StandardScaler`:
/// ```text
/// x' = (x - mean) / std      std = √(mean((x - mean)²))   (the population's)
/// ```
/// A feature that is constant in the training set has `std = 0` and is only
/// centred (divided by 1, as scikit-learn does). The statistics are
/// computed in two passes, in `f64`.
///
/// ```
/// use ndlayers::data::Standardizer;
/// use ndlayers::ndarray::array;
///
/// let train = array![[1.0, 5.0], [3.0, 5.0]];
/// let scale = Standardizer::fit(train.view())?;
/// assert_eq!(scale.transform(train.view())?, array![[-1.0, 0.0], [1.0, 0.0]]);
/// assert_eq!(scale.transform(array![[2.0, 7.0]].view())?, array![[0.0, 2.0]]);
/// # Ok::<(), ndlayers::LayerError>(())
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct Standardizer<F> {
    mean: Array<F, IxDyn>,
    /// The divisor: the standard deviation, or 1 where it is 0.
    scale: Array<F, IxDyn>,
}

const STANDARDIZER: &str = "Standardizer";

impl<F: Real> Standardizer<F> {
    /// The statistics of `train` (samples along axis 0, at least one; finite values).
    pub fn fit<D: Dimension>(train: ArrayView<'_, F, D>) -> Result<Self, LayerError> {
        let train = train.into_dyn();
        let samples = train.shape().first().copied().unwrap_or(0);
        if samples == 0 {
            return Err(LayerError::Empty {
                layer: STANDARDIZER,
                what: "the training set (axis 0)",
            });
        }
        crate::error::require_all(
            STANDARDIZER,
            "training value",
            &train,
            |v: F| v.is_finite(),
            "must be finite",
        )?;
        let as_f64 = |v: &F| v.to_f64().unwrap_or(f64::NAN);
        let n = samples as f64;
        let mean = train.map(as_f64).sum_axis(Axis(0)) / n;
        let mut variance = Array::zeros(mean.raw_dim());
        for sample in train.axis_iter(Axis(0)) {
            ndarray::Zip::from(&mut variance)
                .and(&sample)
                .and(&mean)
                .for_each(|v: &mut f64, x, m| *v += (as_f64(x) - m).powi(2));
        }
        let to_f = |v: f64| F::from_f64(v).unwrap_or(F::nan());
        Ok(Standardizer {
            mean: mean.mapv(to_f),
            scale: variance.mapv(|v| {
                let std = (v / n).sqrt();
                to_f(if std == 0.0 { 1.0 } else { std })
            }),
        })
    }

    /// Each feature's mean.
    pub fn mean(&self) -> ArrayView<'_, F, IxDyn> {
        self.mean.view()
    }

    /// Each feature's divisor: its standard deviation, or 1 where that is 0.
    pub fn scale(&self) -> ArrayView<'_, F, IxDyn> {
        self.scale.view()
    }

    /// `x` standardised (samples along axis 0, each of the fitted shape).
    pub fn transform<D: Dimension>(
        &self,
        x: ArrayView<'_, F, D>,
    ) -> Result<Array<F, D>, LayerError> {
        let mut out = x.to_owned();
        self.transform_mut(&mut out)?;
        Ok(out)
    }

    /// Standardises `x` in place.
    pub fn transform_mut<D: Dimension>(&self, x: &mut Array<F, D>) -> Result<(), LayerError> {
        if x.ndim() == 0 || x.shape()[1..] != *self.mean.shape() {
            let expected = format!(
                "(samples, {:?}): the fitted sample shape",
                self.mean.shape()
            );
            return Err(LayerError::shape_described(
                STANDARDIZER,
                "x",
                expected,
                x.shape(),
            ));
        }
        let mut x = x.view_mut().into_dyn();
        for mut sample in x.axis_iter_mut(Axis(0)) {
            ndarray::Zip::from(&mut sample)
                .and(&self.mean)
                .and(&self.scale)
                .for_each(|x, &m, &s| *x = (*x - m) / s);
        }
        Ok(())
    }
}
