//! Elementwise activations: one generic layer, [`Elementwise`], driven by a
//! tiny kernel per activation ([`ElementwiseFn`]: the value, the derivative,
//! and whether the derivative is written from the output or the input).
//!
//! | layer | `y = f(x)` | `dy/dx` | cached |
//! |---|---|---|---|
//! | [`Sigmoid`] | `1 / (1 + e^-x)` | `y (1 - y)` | `y` |
//! | [`Tanh`] | `tanh x` | `1 - y² = (1 - y)(1 + y)` | `y` |
//! | [`Relu`] | `max(x, 0)` | `1` if `x > 0`, else `0` | one bit an element (`y` if `x` holds a NaN or is not contiguous) |
//!
//! and the rest of the family, which cache `x`: [`LeakyRelu`], [`Elu`],
//! [`Selu`], [`Celu`], [`Gelu`] (exact and tanh forms), [`Silu`], [`Mish`],
//! [`Softplus`], [`Softsign`], [`HardTanh`], [`Relu6`], [`HardSigmoid`],
//! [`HardSwish`], [`LogSigmoid`].

/// Inside an [`ElementwiseFn`] impl whose [`ElementwiseKernel`] impl writes
/// `value_with` and `derivative_with`: defines `value` and `derivative` as
/// their [`Fused`](crate::math::Fused) flavour.
macro_rules! fused_by_default {
    () => {
        #[inline(always)]
        fn value(&self, x: F) -> F {
            self.value_with::<crate::math::Fused>(x)
        }

        #[inline(always)]
        fn derivative(&self, cached: F) -> F {
            self.derivative_with::<crate::math::Fused>(cached)
        }
    };
}

/// Inside an [`ElementwiseKernel`] impl that writes `reduce_with` and
/// `finish_with`: marks the kernel [`STAGED`](ElementwiseKernel::STAGED) and
/// defines `value_with` as their composition, so every path computes the
/// same bits.
macro_rules! staged_value {
    () => {
        const STAGED: bool = true;

        #[inline(always)]
        fn value_with<M: MulAdd>(&self, x: F) -> F {
            self.finish_with::<M>(x, self.reduce_with::<M>(x))
        }
    };
}

mod family;
mod steps;
pub use family::*;
use steps::Steps;

use ndarray::{Array, ArrayView, ArrayViewMut, Dimension, Ix2};

use crate::buffer::{cached_for, filled, filled_like, owned_copy, reuse, reuse_like};
use crate::error::LayerError;
use crate::kernels;
pub use crate::kernels::{DerivativeFrom, ElementwiseFn, ElementwiseKernel};
use crate::layer::Layer;
use crate::math::{self, MulAdd, Reduced};
use crate::real::Real;
use crate::state::StateDict;

/// The logistic sigmoid kernel, for [`Sigmoid`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SigmoidFn;

impl<F: Real> ElementwiseFn<F> for SigmoidFn {
    const NAME: &'static str = "Sigmoid";

    const DERIVATIVE_FROM: DerivativeFrom = DerivativeFrom::Output;

    fused_by_default!();
}

impl<F: Real> ElementwiseKernel<F> for SigmoidFn {
    staged_value!();

    #[inline(always)]
    fn reduce_with<M: MulAdd>(&self, x: F) -> Reduced<F> {
        math::sigmoid_reduce_faithful::<M, F>(x)
    }

    #[inline(always)]
    fn finish_with<M: MulAdd>(&self, x: F, reduced: Reduced<F>) -> F {
        math::sigmoid_finish_faithful::<M, F>(x, reduced)
    }

    #[inline(always)]
    fn derivative_with<M: MulAdd>(&self, y: F) -> F {
        y * (F::ONE - y)
    }
}

/// The hyperbolic tangent kernel, for [`Tanh`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TanhFn;

impl<F: Real> ElementwiseFn<F> for TanhFn {
    const NAME: &'static str = "Tanh";

    const DERIVATIVE_FROM: DerivativeFrom = DerivativeFrom::Output;

    fused_by_default!();
}

impl<F: Real> ElementwiseKernel<F> for TanhFn {
    staged_value!();

    #[inline(always)]
    fn reduce_with<M: MulAdd>(&self, x: F) -> Reduced<F> {
        math::tanh_reduce::<M, F>(x)
    }

    #[inline(always)]
    fn finish_with<M: MulAdd>(&self, x: F, reduced: Reduced<F>) -> F {
        math::tanh_finish::<M, F>(x, reduced)
    }

    #[inline(always)]
    fn derivative_with<M: MulAdd>(&self, y: F) -> F {
        // (1 - y)(1 + y) rather than 1 - y²: where |y| → 1, 1 - |y| is exact
        // (Sterbenz) while y² has already rounded.
        (F::ONE - y) * (F::ONE + y)
    }
}

/// The rectified linear unit kernel, for [`Relu`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ReluFn;

impl<F: Real> ElementwiseFn<F> for ReluFn {
    const NAME: &'static str = "Relu";

    const DERIVATIVE_FROM: DerivativeFrom = DerivativeFrom::Output;

    #[inline(always)]
    fn value(&self, x: F) -> F {
        // `x <= 0` is false for NaN, so NaN passes through (f32::max would drop it).
        if x <= F::zero() { F::zero() } else { x }
    }

    #[inline(always)]
    fn derivative(&self, y: F) -> F {
        // y > 0 iff x > 0. Otherwise y is 0 (derivative 0, also at x = 0) or NaN (NaN).
        if y > F::zero() { F::ONE } else { y }
    }
}

impl<F: Real> ElementwiseKernel<F> for ReluFn {
    const STEP: bool = true;

    #[inline(always)]
    fn step(&self, x: F) -> bool {
        x > F::zero()
    }

    #[inline(always)]
    fn step_derivative(&self, high: bool) -> F {
        if high { F::ONE } else { F::zero() }
    }
}

/// An elementwise activation layer over arrays of any dimension.
///
/// Use it through its aliases: [`Sigmoid`], [`Tanh`], [`Relu`] and the rest of
/// the family ([`Gelu`], [`Silu`], …). It caches `y` (sigmoid, tanh), `x`
/// (the others; see [`ElementwiseFn::DERIVATIVE_FROM`]) or, for ReLU, one bit
/// an element (`x > 0`; `y` instead when `x` holds a NaN, whose gradient is
/// NaN, or is neither row- nor column-major), and reuses its buffers
/// for every shape no larger than the largest seen, so the view-returning methods
/// ([`Layer::forward_view`], [`Layer::backward_view`],
/// [`backward_into`](Self::backward_into)) allocate nothing in a steady
/// training loop. [`Layer::infer`] and [`infer_in_place`](Self::infer_in_place)
/// compute through `&self`, leaving the caches alone. [`Layer::forward`] and [`Layer::backward`] return owned
/// copies of the same results.
///
/// Any input layout works: views that are transposed, sliced with steps or
/// reversed give bit for bit the same numbers as a contiguous copy. Contiguous
/// inputs in either memory order are computed in place; other layouts are
/// gathered in blocks of 256 elements through the same vectorised code.
#[derive(Clone, Debug)]
pub struct Elementwise<A, F, D: Dimension = Ix2> {
    act: A,
    /// `y` or `x`, per `A::DERIVATIVE_FROM`.
    cache: Option<Array<F, D>>,
    /// The output buffer, when the cache holds `x`.
    output: Option<Array<F, D>>,
    /// The buffer behind [`Elementwise::backward_view`].
    grad: Option<Array<F, D>>,
    /// For step derivatives (ReLU): one bit an element, which backward
    /// reads instead of `cache` whenever the last forward recorded it.
    steps: Steps<D>,
}

/// Logistic sigmoid layer, elementwise over arrays of any dimension.
///
/// ```text
/// y = σ(x) = 1 / (1 + e^-x)
/// dy/dx = e^-x / (1 + e^-x)² = σ(x) · (1 - σ(x)) = y (1 - y)
/// ```
/// The derivative follows from `d/dx (1 + e^-x)^-1 = -(1 + e^-x)^-2 · (-e^-x)`,
/// and `e^-x / (1 + e^-x) = 1 - σ(x)`. Backward is `dL/dx = g · y · (1 - y)`.
///
/// | input | output | note |
/// |---|---|---|
/// | `+∞` | `1` | |
/// | `-∞` | `0` | |
/// | `x < -88` (`f32`), `x < -708` (`f64`) | subnormal, then `0` | relative precision is kept while `σ(x)` is a normal float |
/// | `NaN` | `NaN` | backward too |
///
/// Where `y` rounds to 1 (`x > 17` in `f32`), the cached-output derivative is 0.
///
/// # Example
/// ```
/// use ndlayers::prelude::*;
/// use ndlayers::ndarray::array;
///
/// let mut sigmoid = Sigmoid::new();
/// let y = sigmoid.forward(array![[0.0_f64, 2.0], [-2.0, 40.0]].view())?;
/// assert_eq!(y[[0, 0]], 0.5);
/// let dx = sigmoid.backward(array![[1.0, 1.0], [1.0, 1.0]].view())?;
/// assert_eq!(dx[[0, 0]], 0.25); // σ'(0) = 1/4
/// # Ok::<(), LayerError>(())
/// ```
pub type Sigmoid<F, D = Ix2> = Elementwise<SigmoidFn, F, D>;

/// Hyperbolic tangent layer, elementwise over arrays of any dimension.
///
/// ```text
/// y = tanh x = (e^x - e^-x) / (e^x + e^-x)
/// dy/dx = 1 - tanh² x = 1 - y²
/// ```
/// Backward is `dL/dx = g · (1 - y)(1 + y)`.
///
/// | input | output |
/// |---|---|
/// | `±∞` | `±1` |
/// | tiny `x` (e.g. `1e-10`) | `x` to full relative precision |
/// | `±0` | `±0` |
/// | `NaN` | `NaN` (backward too) |
///
/// # Example
/// ```
/// use ndlayers::prelude::*;
/// use ndlayers::ndarray::array;
///
/// let mut tanh = Tanh::new();
/// let y = tanh.forward(array![0.0_f32, 1e-10, 1e30].view())?;
/// assert_eq!(y, array![0.0, 1e-10, 1.0]);
/// let dx = tanh.backward(array![1.0, 1.0, 1.0].view())?;
/// assert_eq!(dx, array![1.0, 1.0, 0.0]);
/// # Ok::<(), LayerError>(())
/// ```
pub type Tanh<F, D = Ix2> = Elementwise<TanhFn, F, D>;

/// Rectified linear unit layer, elementwise over arrays of any dimension.
///
/// ```text
/// y = max(x, 0)
/// dy/dx = 1 if x > 0, 0 otherwise (0 at x = 0 too)
/// ```
/// Since `y > 0` exactly when `x > 0`, backward is `dL/dx = g · [y > 0]`.
/// The layer caches `[x > 0]` as one bit an element (a 256x4096 `f32` batch:
/// 128 KiB rather than 4 MiB), so forward writes one array and backward
/// reads one; an input with a NaN, or neither row- nor column-major, caches
/// `y` instead. Both give the same bits.
///
/// | input | output | gradient |
/// |---|---|---|
/// | `x > 0` | `x` | `g` |
/// | `x ≤ 0`, incl. `-0`, `-∞` | `0` | `0` |
/// | `NaN` | `NaN` (as PyTorch) | `NaN` |
///
/// # Example
/// ```
/// use ndlayers::prelude::*;
/// use ndlayers::ndarray::array;
///
/// let mut relu = Relu::new();
/// let y = relu.forward(array![-1.0_f64, 0.0, 3.0].view())?;
/// assert_eq!(y, array![0.0, 0.0, 3.0]);
/// let dx = relu.backward(array![5.0, 5.0, 5.0].view())?;
/// assert_eq!(dx, array![0.0, 0.0, 5.0]);
/// # Ok::<(), LayerError>(())
/// ```
pub type Relu<F, D = Ix2> = Elementwise<ReluFn, F, D>;

impl<A: Default, F, D: Dimension> Default for Elementwise<A, F, D> {
    fn default() -> Self {
        Self::with_fn(A::default())
    }
}

impl<A: Default, F, D: Dimension> Elementwise<A, F, D> {
    /// A layer with an empty cache.
    pub fn new() -> Self {
        Self::default()
    }
}

impl<A, F, D: Dimension> Elementwise<A, F, D> {
    /// A layer for the given kernel (for kernels with parameters).
    pub fn with_fn(act: A) -> Self {
        Elementwise {
            act,
            cache: None,
            output: None,
            grad: None,
            steps: Steps::default(),
        }
    }

    /// The kernel this layer applies.
    pub fn function(&self) -> &A {
        &self.act
    }
}

impl<F: Real, D: Dimension, A: ElementwiseKernel<F>> Elementwise<A, F, D> {
    /// Writes `dL/dx` for the cached forward into `out` (same shape as the output).
    pub fn backward_into(
        &self,
        grad_output: ArrayView<'_, F, D>,
        out: ArrayViewMut<'_, F, D>,
    ) -> Result<(), LayerError> {
        if self.steps.current() {
            self.steps.layout(A::NAME, &grad_output)?;
            LayerError::check_shape(A::NAME, "out", grad_output.shape(), out.shape())?;
            self.steps.backward(&self.act, grad_output, out);
            return Ok(());
        }
        let cache = cached_for(&self.cache, A::NAME, &grad_output)?;
        LayerError::check_shape(A::NAME, "out", cache.shape(), out.shape())?;
        kernels::map_backward(&self.act, cache.view(), grad_output, out);
        Ok(())
    }

    /// Replaces each element of `x` by `f(x)`, without caching: inference
    /// in place, with no output array at all.
    ///
    /// ```
    /// use ndlayers::prelude::*;
    /// use ndlayers::ndarray::array;
    ///
    /// let mut x = array![[-1.0_f32, 2.0]];
    /// Relu::new().infer_in_place(x.view_mut());
    /// assert_eq!(x, array![[0.0, 2.0]]);
    /// ```
    pub fn infer_in_place(&self, x: ArrayViewMut<'_, F, D>) {
        kernels::map_unary_in_place(&self.act, x);
    }

    /// Replaces each element of `x` by `f(x)` and caches what `backward`
    /// needs (a copy of `y` or of `x`): training in place, with no output buffer.
    pub fn forward_in_place(&mut self, mut x: ArrayViewMut<'_, F, D>) {
        self.steps.forget();
        let cache = reuse_like(&mut self.cache, &x.view());
        match A::DERIVATIVE_FROM {
            DerivativeFrom::Output => {
                kernels::map_unary_in_place(&self.act, x.view_mut());
                cache.assign(&x);
            }
            DerivativeFrom::Input => {
                cache.assign(&x);
                kernels::map_unary_in_place(&self.act, x);
            }
        }
    }
}

/// Any input layout works: the output has the input's memory order when the
/// input is contiguous in either order, and is row-major otherwise.
impl<F: Real, D: Dimension, A: ElementwiseKernel<F>> Layer<F, D> for Elementwise<A, F, D> {
    /// Allocates only for a larger array or another memory order than before.
    fn forward_view(
        &mut self,
        input: ArrayView<'_, F, D>,
    ) -> Result<ArrayView<'_, F, D>, LayerError> {
        if A::STEP && Steps::fit(&input) {
            let y = reuse_like(&mut self.output, &input);
            if !self.steps.forward(&self.act, input.view(), y.view_mut()) {
                reuse_like(&mut self.cache, &input).assign(y);
            }
            return Ok(y.view());
        }
        self.steps.forget();
        let y = match A::DERIVATIVE_FROM {
            DerivativeFrom::Output => reuse_like(&mut self.cache, &input),
            DerivativeFrom::Input => {
                reuse_like(&mut self.cache, &input).assign(&input);
                reuse_like(&mut self.output, &input)
            }
        };
        kernels::map_unary(&self.act, input, y.view_mut());
        Ok(y.view())
    }

    fn backward_view(
        &mut self,
        grad_output: ArrayView<'_, F, D>,
    ) -> Result<ArrayView<'_, F, D>, LayerError> {
        if self.steps.current() {
            let (dim, fortran) = self.steps.layout(A::NAME, &grad_output)?;
            let out = reuse(&mut self.grad, dim, fortran);
            self.steps.backward(&self.act, grad_output, out.view_mut());
            return Ok(out.view());
        }
        let cache = cached_for(&self.cache, A::NAME, &grad_output)?;
        let out = reuse_like(&mut self.grad, &cache.view());
        kernels::map_backward(&self.act, cache.view(), grad_output, out.view_mut());
        Ok(out.view())
    }

    fn infer(&self, input: ArrayView<'_, F, D>) -> Result<Array<F, D>, LayerError> {
        // SAFETY: map_unary writes every element of its output.
        Ok(unsafe { filled_like(&input, |y| kernels::map_unary(&self.act, input.view(), y)) })
    }

    /// On contiguous input (row- or column-major), step activations (ReLU)
    /// write the result and cache one bit an element, and those that cache
    /// `x` copy it and write the result directly. Those that cache `y`
    /// compute each L1 block into the cache and copy it to the result while
    /// it is there (`kernels::teed`). Other layouts compute into the
    /// cache and copy it out (`buffer::owned_copy`).
    fn forward(&mut self, input: ArrayView<'_, F, D>) -> Result<Array<F, D>, LayerError> {
        if !Steps::fit(&input) {
            return Ok(owned_copy(self.forward_view(input)?));
        }
        if A::DERIVATIVE_FROM == DerivativeFrom::Output && !A::STEP {
            self.steps.forget();
            let cache = reuse_like(&mut self.cache, &input);
            // SAFETY: teed writes every element of `y`, which has
            // `input`'s shape and memory order, as the cache has.
            return Ok(unsafe {
                filled_like(&input, |mut y| {
                    let (Some(xs), Some(cs), Some(ys)) = (
                        input.as_slice_memory_order(),
                        cache.as_slice_memory_order_mut(),
                        y.as_slice_memory_order_mut(),
                    ) else {
                        unreachable!("contiguous input, and fresh arrays in its order")
                    };
                    kernels::teed(xs, cs, ys, 1, |x, c| {
                        kernels::forward_slice(&self.act, x, c)
                    });
                })
            });
        }
        if A::STEP {
            let mut bits_usable = true;
            // SAFETY: Steps::forward writes every element of its output.
            let y = unsafe {
                filled_like(&input, |y| {
                    bits_usable = self.steps.forward(&self.act, input.view(), y);
                })
            };
            if !bits_usable {
                reuse_like(&mut self.cache, &input).assign(&y);
            }
            return Ok(y);
        }
        self.steps.forget();
        reuse_like(&mut self.cache, &input).assign(&input);
        // SAFETY: map_unary writes every element of its output.
        Ok(unsafe { filled_like(&input, |y| kernels::map_unary(&self.act, input.view(), y)) })
    }

    /// Writes into a fresh array, never cleared first, rather than copying
    /// the layer's buffer.
    fn backward(&mut self, grad_output: ArrayView<'_, F, D>) -> Result<Array<F, D>, LayerError> {
        if self.steps.current() {
            let (dim, fortran) = self.steps.layout(A::NAME, &grad_output)?;
            // SAFETY: Steps::backward writes every element of its output.
            return Ok(unsafe {
                filled(dim, fortran, |out| {
                    self.steps.backward(&self.act, grad_output, out)
                })
            });
        }
        let cache = cached_for(&self.cache, A::NAME, &grad_output)?;
        // SAFETY: map_backward writes every element of its output.
        Ok(unsafe {
            filled_like(&cache.view(), |out| {
                kernels::map_backward(&self.act, cache.view(), grad_output, out)
            })
        })
    }
}

/// Elementwise layers have no parameters.
impl<A, F, D: Dimension> StateDict<F> for Elementwise<A, F, D> {}
