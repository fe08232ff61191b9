//! Softmax, log-softmax and softmin along any axis of an array of any dimension.
//!
//! All three share one layer, [`Normalize`]: it moves the chosen axis last
//! (a free view when the input is already laid out that way, one copy
//! otherwise), runs a row kernel over the contiguous rows, and hands the
//! result back in the caller's axis order. The row kernels are vectorised
//! and, with the `rayon` feature, split across threads by whole rows.

use std::fmt::Debug;
use std::marker::PhantomData;
use std::mem::MaybeUninit;

use ndarray::{Array, Array3, ArrayView, ArrayViewMut, Axis, CowArray, Dimension, Ix2};

use crate::buffer::{filled, fresh, reuse_like};
use crate::error::{LayerError, require};
use crate::kernels;
use crate::layer::Layer;
use crate::real::Real;
use crate::state::StateDict;

/// What [`Normalize`] computes along its axis: a row kernel and its
/// vector–Jacobian product, both written from the output `y`.
pub trait Normalization: Clone + Copy + Debug + Default + Send + Sync {
    /// Name used in error messages.
    const NAME: &'static str;
    /// `y` for each contiguous row of `cols` elements of `x`.
    fn forward_rows<F: Real>(x: &[F], y: &mut [F], cols: usize);
    /// `dL/dx` for each row, from the row's `y` and `g = dL/dy`.
    fn backward_rows<F: Real>(y: &[F], g: &[F], out: &mut [F], cols: usize);

    /// [`backward_rows`](Self::backward_rows) into memory that may be
    /// uninitialised, writing every element: an owned `dL/dx` is then never
    /// cleared before being written. The default clears it and calls
    /// `backward_rows` (log-softmax, whose row kernel reads back what it wrote).
    #[doc(hidden)]
    fn backward_rows_uninit<F: Real>(y: &[F], g: &[F], out: &mut [MaybeUninit<F>], cols: usize) {
        for o in out.iter_mut() {
            o.write(F::zero());
        }
        // SAFETY: every element was written just above, and `MaybeUninit<F>`
        // has `F`'s layout. (Exercised by every owned log-softmax backward.)
        let out = unsafe { &mut *(std::ptr::from_mut(out) as *mut [F]) };
        Self::backward_rows(y, g, out, cols);
    }
}

/// `y_i = e^(x_i - m) / Σ_j e^(x_j - m)`, `dL/dx = y ⊙ (g - g·y)`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SoftmaxKind;

impl Normalization for SoftmaxKind {
    const NAME: &'static str = "Softmax";
    fn forward_rows<F: Real>(x: &[F], y: &mut [F], cols: usize) {
        kernels::softmax_rows(x, y, cols, F::ONE);
    }
    fn backward_rows<F: Real>(y: &[F], g: &[F], out: &mut [F], cols: usize) {
        kernels::softmax_backward_rows(y, g, out, cols, F::ONE);
    }
    fn backward_rows_uninit<F: Real>(y: &[F], g: &[F], out: &mut [MaybeUninit<F>], cols: usize) {
        kernels::softmax_backward_rows(y, g, out, cols, F::ONE);
    }
}

/// `y = softmax(-x)`, `dL/dx = -y ⊙ (g - g·y)`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SoftminKind;

impl Normalization for SoftminKind {
    const NAME: &'static str = "Softmin";
    fn forward_rows<F: Real>(x: &[F], y: &mut [F], cols: usize) {
        kernels::softmax_rows(x, y, cols, -F::ONE);
    }
    fn backward_rows<F: Real>(y: &[F], g: &[F], out: &mut [F], cols: usize) {
        kernels::softmax_backward_rows(y, g, out, cols, -F::ONE);
    }
    fn backward_rows_uninit<F: Real>(y: &[F], g: &[F], out: &mut [MaybeUninit<F>], cols: usize) {
        kernels::softmax_backward_rows(y, g, out, cols, -F::ONE);
    }
}

/// `y_i = x_i - m - ln Σ_j e^(x_j - m)`, `dL/dx = g - e^y · Σ g`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LogSoftmaxKind;

impl Normalization for LogSoftmaxKind {
    const NAME: &'static str = "LogSoftmax";
    fn forward_rows<F: Real>(x: &[F], y: &mut [F], cols: usize) {
        kernels::log_softmax_rows(x, y, cols);
    }
    fn backward_rows<F: Real>(y: &[F], g: &[F], out: &mut [F], cols: usize) {
        kernels::log_softmax_backward_rows(y, g, out, cols);
    }
}

/// A normalisation along one axis: use it through [`Softmax`], [`LogSoftmax`] or [`Softmin`].
///
/// The default axis is the last one (the classes of a `(batch, classes)`
/// array); [`along`](Self::along) picks another, e.g. the channels of a
/// `(batch, channels, height, width)` array. The cache is `y`, kept with the
/// axis moved last; the view methods reuse their buffers while the shape stays.
#[derive(Clone, Debug)]
pub struct Normalize<K, F, D: Dimension = Ix2> {
    axis: Option<Axis>,
    kind: PhantomData<K>,
    /// `y` with the axis moved last, row-major.
    cache: Option<Array<F, D>>,
    /// The buffer behind `backward_view`, same layout as the cache.
    grad: Option<Array<F, D>>,
}

/// Softmax along an axis (by default the last: row-wise on `(batch, classes)`).
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
/// Each output is within a few ulp of the exact softmax of the given inputs
/// (measured: at most 5.5 ulp in `f32` over 10^6 random rows), even far
/// below the maximum: the rounding of `x - max`, which `e^(x - max)` would
/// magnify to `|x - max|·2^-24` (66 ulp at `x - max = -80`), is carried into
/// the exponential. Rows sum to 1 within a few ulps. Any input layout is accepted.
///
/// # Example
/// ```
/// use ndlayers::prelude::*;
/// use ndlayers::ndarray::{array, Array4, Axis};
///
/// let mut softmax = Softmax::new();
/// let y = softmax.forward(array![[1000.0_f64, 1000.0], [-1000.0, 0.0]].view())?;
/// assert_eq!(y, array![[0.5, 0.5], [0.0, 1.0]]);
/// // Each row's gradient is y ⊙ (g - g·y): a constant g has zero gradient.
/// let dx = softmax.backward(array![[3.0, 3.0], [3.0, 3.0]].view())?;
/// assert_eq!(dx, array![[0.0, 0.0], [0.0, 0.0]]);
///
/// // Over the channels of (batch, channels, height, width):
/// let mut per_pixel = Softmax::along(Axis(1));
/// let y = per_pixel.forward(Array4::<f32>::zeros((2, 4, 3, 3)).view())?;
/// assert_eq!(y[[1, 2, 0, 0]], 0.25);
/// # Ok::<(), LayerError>(())
/// ```
pub type Softmax<F, D = Ix2> = Normalize<SoftmaxKind, F, D>;

/// Log-softmax along an axis, computed stably by log-sum-exp, never as `ln(softmax)`:
///
/// ```text
/// y_i = (x_i - m) - ln Σ_j e^(x_j - m),   m = max_j x_j
/// ∂y_i/∂x_j = δ_ij - softmax_j = δ_ij - e^(y_j)
/// dL/dx_j = g_j - e^(y_j) Σ_i g_i
/// ```
/// `[0, -1000]` gives `[0, -1000]` exactly, where `ln(softmax)` would give `-∞`.
/// The sum's terms where `x = m` are exactly 1, so it is taken as
/// `ln Σ = ln_1p(s + ties - 1)`, `s` the other terms: `[0, -35]` gives
/// `[-6.3e-16, -35]`, where `ln(1 + s)` would round `y_0` to `0`. Each output
/// is within a few ulp (measured: at most 3.5 in `f32` over 10^6 random rows).
/// Special values follow [`Softmax`]'s table (`NaN` rows stay `NaN`; a row of
/// `-∞` is `NaN`).
///
/// # Example
/// ```
/// use ndlayers::softmax::LogSoftmax;
/// use ndlayers::prelude::*;
/// use ndlayers::ndarray::array;
///
/// let y = LogSoftmax::new().forward(array![[0.0_f64, -1000.0]].view())?;
/// assert_eq!(y, array![[0.0, -1000.0]]);
/// # Ok::<(), LayerError>(())
/// ```
pub type LogSoftmax<F, D = Ix2> = Normalize<LogSoftmaxKind, F, D>;

/// Softmin along an axis: `y = softmax(-x)`, so `dL/dx = -y ⊙ (g - g·y)`.
///
/// # Example
/// ```
/// use ndlayers::softmax::Softmin;
/// use ndlayers::prelude::*;
/// use ndlayers::ndarray::array;
///
/// let y = Softmin::new().forward(array![[0.0_f64, 1000.0]].view())?;
/// assert_eq!(y, array![[1.0, 0.0]]);
/// # Ok::<(), LayerError>(())
/// ```
pub type Softmin<F, D = Ix2> = Normalize<SoftminKind, F, D>;

impl<K: Default, F, D: Dimension> Default for Normalize<K, F, D> {
    fn default() -> Self {
        Normalize {
            axis: None,
            kind: PhantomData,
            cache: None,
            grad: None,
        }
    }
}

impl<K: Default, F, D: Dimension> Normalize<K, F, D> {
    /// Normalises along the last axis.
    pub fn new() -> Self {
        Self::default()
    }

    /// Normalises along `axis`; an axis the input does not have is an error at `forward`.
    pub fn along(axis: Axis) -> Self {
        Normalize {
            axis: Some(axis),
            ..Self::default()
        }
    }
}

/// The permutation moving `axis` last, and its inverse, for `ndim` axes.
fn axis_last_permutation<D: Dimension>(ndim: usize, axis: usize) -> (D, D) {
    let mut to_last = D::zeros(ndim);
    let mut back = D::zeros(ndim);
    let order = (0..ndim).filter(|&i| i != axis).chain([axis]);
    for (position, original) in order.enumerate() {
        to_last[position] = original;
        back[original] = position;
    }
    (to_last, back)
}

impl<K: Normalization, F: Real, D: Dimension> Normalize<K, F, D> {
    /// The axis index for an `ndim`-dimensional input, checked.
    fn axis_index(axis: Option<Axis>, ndim: usize) -> Result<usize, LayerError> {
        let index = axis.map_or(ndim.checked_sub(1), |a| Some(a.index()));
        index
            .filter(|&a| a < ndim)
            .ok_or(LayerError::AxisOutOfRange {
                layer: K::NAME,
                axis: axis.map_or(0, |a| a.index()),
                ndim,
            })
    }

    /// `input` with the axis moved last, in a row-major array (a free view
    /// when it already is one), and the permutation that moves it back.
    fn moved_last<'a>(
        axis: Option<Axis>,
        input: ArrayView<'a, F, D>,
    ) -> Result<(CowArray<'a, F, D>, D), LayerError> {
        let ndim = input.ndim();
        let axis = Self::axis_index(axis, ndim)?;
        let (to_last, back) = axis_last_permutation::<D>(ndim, axis);
        let moved = input.permuted_axes(to_last);
        let moved = if moved.is_standard_layout() {
            CowArray::from(moved)
        } else {
            CowArray::from(moved.as_standard_layout().into_owned())
        };
        Ok((moved, back))
    }

    /// The cache, its axis permutations, and a check of `grad_output`'s shape against it.
    fn cached_for<'a>(
        cache: &'a Option<Array<F, D>>,
        axis: Option<Axis>,
        grad_output: &ArrayView<'_, F, D>,
    ) -> Result<(&'a Array<F, D>, D, D), LayerError> {
        let y = cache
            .as_ref()
            .ok_or(LayerError::BackwardBeforeForward { layer: K::NAME })?;
        let axis = Self::axis_index(axis, y.ndim())?;
        let (to_last, back) = axis_last_permutation::<D>(y.ndim(), axis);
        let expected = y.view().permuted_axes(back.clone());
        LayerError::check_shape(
            K::NAME,
            "grad_output",
            expected.shape(),
            grad_output.shape(),
        )?;
        Ok((y, to_last, back))
    }

    /// Writes `dL/dx` for the cached forward into `out` (same shape as the output).
    pub fn backward_into(
        &self,
        grad_output: ArrayView<'_, F, D>,
        out: ArrayViewMut<'_, F, D>,
    ) -> Result<(), LayerError> {
        let (y, to_last, back) = Self::cached_for(&self.cache, self.axis, &grad_output)?;
        let expected = y.view().permuted_axes(back);
        LayerError::check_shape(K::NAME, "out", expected.shape(), out.shape())?;
        let g = grad_output.permuted_axes(to_last.clone());
        let g = g.as_standard_layout();
        let mut out = out.permuted_axes(to_last);
        let cols = y.shape().last().copied().unwrap_or(0);
        match out.as_slice_mut() {
            Some(os) => vjp::<K, F, D>(y, &g.view(), os, cols),
            None => {
                let mut tmp = Array::zeros(y.raw_dim());
                if let Some(ts) = tmp.as_slice_mut() {
                    vjp::<K, F, D>(y, &g.view(), ts, cols);
                }
                out.assign(&tmp);
            }
        }
        Ok(())
    }
}

/// The row kernel's backward on the row-major cache `y` and row-major `g`.
fn vjp<K: Normalization, F: Real, D: Dimension>(
    y: &Array<F, D>,
    g: &ArrayView<'_, F, D>,
    out: &mut [F],
    cols: usize,
) {
    if let (Some(ys), Some(gs)) = (y.as_slice(), g.as_slice()) {
        K::backward_rows(ys, gs, out, cols);
    }
}

impl<F: Real> Normalize<SoftmaxKind, F, Ix2> {
    /// The largest Jacobian [`jacobian`](Self::jacobian) builds: `2^27`
    /// elements, 512 MiB of `f32`, 1 GiB of `f64`.
    pub const JACOBIAN_MAX_ELEMENTS: usize = 1 << 27;

    /// The Jacobian of each row, shape `(rows, classes, classes)`:
    /// `J[b, i, j] = ∂y_i/∂x_j = y_i (δ_ij - y_j)` for row `b` of the cached output.
    ///
    /// With the default axis the rows are the batch; along `Axis(0)` they are
    /// the columns. Contracting with `g` (`Σ_i g_i J[b, i, j]`) equals
    /// [`Layer::backward`]`(g)`.
    ///
    /// The matrix takes `rows · classes²` elements: a row of 100,000
    /// classes would be 80 GB of `f64`. Past [`Self::JACOBIAN_MAX_ELEMENTS`]
    /// it is an error; `backward` computes the same products in `O(classes)`.
    pub fn jacobian(&self) -> Result<Array3<F>, LayerError> {
        let y = self
            .cache
            .as_ref()
            .ok_or(LayerError::BackwardBeforeForward {
                layer: SoftmaxKind::NAME,
            })?;
        let (rows, classes) = y.dim();
        let elements = classes
            .checked_mul(classes)
            .and_then(|square| square.checked_mul(rows))
            .filter(|&n| n <= Self::JACOBIAN_MAX_ELEMENTS);
        require(
            SoftmaxKind::NAME,
            "jacobian size",
            format_args!("{rows} rows x {classes}² classes"),
            elements.is_some(),
            "at most 2^27 elements (1 GiB of f64); use backward for products with the Jacobian",
        )?;
        Ok(Array3::from_shape_fn(
            (rows, classes, classes),
            |(b, i, j)| {
                let diagonal = if i == j { y[[b, i]] } else { F::zero() };
                diagonal - y[[b, i]] * y[[b, j]]
            },
        ))
    }
}

impl<K: Normalization, F: Real, D: Dimension> Layer<F, D> for Normalize<K, F, D> {
    /// Allocates only for a larger array than before, or to reorder an input
    /// whose normalised axis is not the innermost one in memory.
    fn forward_view(
        &mut self,
        input: ArrayView<'_, F, D>,
    ) -> Result<ArrayView<'_, F, D>, LayerError> {
        let (moved, back) = Self::moved_last(self.axis, input)?;
        let y = reuse_like(&mut self.cache, &moved.view());
        forward_rows::<K, F, D>(&moved.view(), y);
        Ok(y.view().permuted_axes(back))
    }

    fn backward_view(
        &mut self,
        grad_output: ArrayView<'_, F, D>,
    ) -> Result<ArrayView<'_, F, D>, LayerError> {
        let (y, to_last, back) = Self::cached_for(&self.cache, self.axis, &grad_output)?;
        let g = grad_output.permuted_axes(to_last);
        let g = g.as_standard_layout();
        let cols = y.shape().last().copied().unwrap_or(0);
        let out = reuse_like(&mut self.grad, &y.view());
        if let Some(os) = out.as_slice_mut() {
            vjp::<K, F, D>(y, &g.view(), os, cols);
        }
        Ok(out.view().permuted_axes(back))
    }

    fn infer(&self, input: ArrayView<'_, F, D>) -> Result<Array<F, D>, LayerError> {
        let (moved, back) = Self::moved_last(self.axis, input)?;
        let mut y = fresh(moved.raw_dim(), false);
        forward_rows::<K, F, D>(&moved.view(), &mut y);
        Ok(y.permuted_axes(back))
    }

    /// Computes each block of rows into the cache and copies it to the
    /// result while it is in L1 (`kernels::teed`): one pass over memory, into
    /// an array that is never cleared first. The result has the cache's
    /// memory order (the axis innermost), as `forward_view`'s has.
    fn forward(&mut self, input: ArrayView<'_, F, D>) -> Result<Array<F, D>, LayerError> {
        let (moved, back) = Self::moved_last(self.axis, input)?;
        let cols = moved.shape().last().copied().unwrap_or(0);
        let cache = reuse_like(&mut self.cache, &moved.view());
        // SAFETY: teed writes every element of its last slice, here the whole
        // of the fresh array, row-major like `moved` and the cache.
        let y = unsafe {
            filled(moved.raw_dim(), false, |mut y| {
                let (Some(xs), Some(cs), Some(ys)) =
                    (moved.as_slice(), cache.as_slice_mut(), y.as_slice_mut())
                else {
                    unreachable!("row-major input, cache and result")
                };
                kernels::teed(xs, cs, ys, cols, |x, c| K::forward_rows(x, c, cols));
            })
        };
        Ok(y.permuted_axes(back))
    }

    /// Writes into a fresh array, never cleared first where the axis is the
    /// innermost one, rather than copying the layer's buffer.
    fn backward(&mut self, grad_output: ArrayView<'_, F, D>) -> Result<Array<F, D>, LayerError> {
        let (y, _, back) = Self::cached_for(&self.cache, self.axis, &grad_output)?;
        let axis_last = back.slice().iter().enumerate().all(|(i, &a)| i == a);
        if axis_last && let (Some(ys), Some(gs)) = (y.as_slice(), grad_output.as_slice()) {
            let cols = y.shape().last().copied().unwrap_or(0);
            // SAFETY: backward_rows_uninit writes every element of its
            // output, here the fresh row-major array of `y`'s shape.
            return Ok(unsafe {
                filled(y.raw_dim(), false, |mut out| {
                    let os = out.as_slice_mut().expect("a fresh row-major array");
                    K::backward_rows_uninit(ys, gs, os, cols);
                })
            });
        }
        let mut out = fresh(y.view().permuted_axes(back).raw_dim(), false);
        self.backward_into(grad_output, out.view_mut())?;
        Ok(out)
    }
}

/// The row kernel on row-major `x` into row-major `y` of the same shape.
fn forward_rows<K: Normalization, F: Real, D: Dimension>(
    x: &ArrayView<'_, F, D>,
    y: &mut Array<F, D>,
) {
    let cols = x.shape().last().copied().unwrap_or(0);
    if let (Some(xs), Some(ys)) = (x.as_slice(), y.as_slice_mut()) {
        K::forward_rows(xs, ys, cols);
    }
}

/// Normalisations have no parameters.
impl<K, F, D: Dimension> StateDict<F> for Normalize<K, F, D> {}
