//! Row-wise softmax over `(batch, classes)` arrays.

use ndarray::{Array2, Array3, ArrayView2, ArrayViewMut2, Ix2};

use crate::activation::reuse_buffer;
use crate::kernels;
use crate::layer::{Layer, LayerError};
use crate::real::Real;

const NAME: &str = "Softmax";

/// Softmax layer: normalises each row of a `(batch, classes)` array into a
/// probability distribution.
///
/// ```text
/// y_i = e^(x_i - m) / Σ_j e^(x_j - m),   m = max_j x_j   (the shift cancels; it prevents overflow)
/// ∂y_i/∂x_j = y_i (δ_ij - y_j)
/// dL/dx_j = Σ_i g_i y_i (δ_ij - y_j) = y_j (g_j - Σ_i g_i y_i)
/// ```
/// `backward` computes the last line, `O(classes)` per row, without building
/// the Jacobian; [`Softmax::jacobian`] builds it explicitly for teaching and checking.
///
/// | row | output | note |
/// |---|---|---|
/// | `[1000, 1000]` | `[0.5, 0.5]` | no overflow: the row maximum is subtracted |
/// | `[-1000, 0]` | `[0, 1]` | |
/// | contains `NaN` | all `NaN` | |
/// | contains `+∞` | all `NaN` | `∞ - ∞`, as PyTorch |
/// | all `-∞` | all `NaN` | as PyTorch |
/// | some `-∞`, rest finite | `0` where `-∞` | |
/// | zero classes or zero rows | empty output of the same shape | |
///
/// Rows sum to 1 within a few ulps. Any input layout is accepted; row-major
/// input takes the vectorised path directly, other layouts are copied to
/// row-major first.
///
/// # Example
/// ```
/// use ndlayers::prelude::*;
/// use ndlayers::ndarray::array;
///
/// let mut softmax = Softmax::new();
/// let y = softmax.forward(array![[1000.0_f64, 1000.0], [-1000.0, 0.0]].view())?;
/// assert_eq!(y, array![[0.5, 0.5], [0.0, 1.0]]);
/// // Each row's gradient is y ⊙ (g - g·y): a constant g has zero gradient.
/// let dx = softmax.backward(array![[3.0, 3.0], [3.0, 3.0]].view())?;
/// assert_eq!(dx, array![[0.0, 0.0], [0.0, 0.0]]);
/// # Ok::<(), LayerError>(())
/// ```
#[derive(Clone, Debug)]
pub struct Softmax<F> {
    /// The last output `y`, row-major.
    cache: Option<Array2<F>>,
    /// The buffer behind [`Softmax::backward_view`].
    grad: Option<Array2<F>>,
}

impl<F> Default for Softmax<F> {
    fn default() -> Self {
        Softmax {
            cache: None,
            grad: None,
        }
    }
}

impl<F> Softmax<F> {
    /// A layer with an empty cache.
    pub fn new() -> Self {
        Self::default()
    }
}

impl<F: Real> Softmax<F> {
    /// Runs forward and returns a view of the output, kept inside the layer.
    ///
    /// Allocates only when the shape differs from the last call (or the input is not row-major).
    pub fn forward_view(
        &mut self,
        input: ArrayView2<'_, F>,
    ) -> Result<ArrayView2<'_, F>, LayerError> {
        let input = input.as_standard_layout();
        let y = reuse_buffer(&mut self.cache, &input.view());
        let cols = input.ncols();
        if let (Some(xs), Some(ys)) = (input.as_slice(), y.as_slice_mut()) {
            kernels::softmax_rows(xs, ys, cols);
        }
        Ok(y.view())
    }

    fn cached_for<'a>(
        cache: &'a Option<Array2<F>>,
        grad_output: &ArrayView2<'_, F>,
    ) -> Result<&'a Array2<F>, LayerError> {
        let cache = cache
            .as_ref()
            .ok_or(LayerError::BackwardBeforeForward { layer: NAME })?;
        LayerError::check_shape(NAME, "grad_output", cache.shape(), grad_output.shape())?;
        Ok(cache)
    }

    /// Writes `dL/dx` for the cached forward into `out` (same shape as the output).
    pub fn backward_into(
        &self,
        grad_output: ArrayView2<'_, F>,
        mut out: ArrayViewMut2<'_, F>,
    ) -> Result<(), LayerError> {
        let y = Self::cached_for(&self.cache, &grad_output)?;
        LayerError::check_shape(NAME, "out", y.shape(), out.shape())?;
        let g = grad_output.as_standard_layout();
        match out.as_slice_mut() {
            Some(os) => vjp(y, g.view(), os),
            None => {
                let mut tmp = Array2::zeros(y.raw_dim());
                if let Some(ts) = tmp.as_slice_mut() {
                    vjp(y, g.view(), ts);
                }
                out.assign(&tmp);
            }
        }
        Ok(())
    }

    /// Returns a view of `dL/dx`, computed into a buffer the layer keeps and reuses.
    pub fn backward_view(
        &mut self,
        grad_output: ArrayView2<'_, F>,
    ) -> Result<ArrayView2<'_, F>, LayerError> {
        let y = Self::cached_for(&self.cache, &grad_output)?;
        let out = reuse_buffer(&mut self.grad, &y.view());
        let g = grad_output.as_standard_layout();
        if let Some(os) = out.as_slice_mut() {
            vjp(y, g.view(), os);
        }
        Ok(out.view())
    }

    /// The Jacobian of each row, shape `(batch, classes, classes)`:
    /// `J[b, i, j] = ∂y_i/∂x_j = y_i (δ_ij - y_j)` for row `b` of the cached output.
    ///
    /// Contracting it with `g` (`Σ_i g_i J[b, i, j]`) equals [`Layer::backward`]`(g)`.
    pub fn jacobian(&self) -> Result<Array3<F>, LayerError> {
        let y = self
            .cache
            .as_ref()
            .ok_or(LayerError::BackwardBeforeForward { layer: NAME })?;
        let (batch, classes) = y.dim();
        Ok(Array3::from_shape_fn(
            (batch, classes, classes),
            |(b, i, j)| {
                let diagonal = if i == j { y[[b, i]] } else { F::zero() };
                diagonal - y[[b, i]] * y[[b, j]]
            },
        ))
    }
}

/// Row-wise `out = y ⊙ (g - g·y)`; `y` is row-major (the cache), `g` row-major.
fn vjp<F: Real>(y: &Array2<F>, g: ArrayView2<'_, F>, out: &mut [F]) {
    if let (Some(ys), Some(gs)) = (y.as_slice(), g.as_slice()) {
        kernels::softmax_backward_rows(ys, gs, out, y.ncols());
    }
}

impl<F: Real> Layer<F, Ix2> for Softmax<F> {
    fn forward(&mut self, input: ArrayView2<'_, F>) -> Result<Array2<F>, LayerError> {
        Ok(self.forward_view(input)?.to_owned())
    }

    fn backward(&mut self, grad_output: ArrayView2<'_, F>) -> Result<Array2<F>, LayerError> {
        let y = Self::cached_for(&self.cache, &grad_output)?;
        let mut out = Array2::zeros(y.raw_dim());
        self.backward_into(grad_output, out.view_mut())?;
        Ok(out)
    }
}
