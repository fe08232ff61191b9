//! The rest of the elementwise family, each a kernel for [`Elementwise`]:
//! ReLU variants, the exponential units, GELU, SiLU, Mish, softplus and the
//! piecewise-linear "hard" activations.
//!
//! Conventions follow PyTorch: the exponential units go through `expm1`,
//! softplus through `ln_1p` with a linear threshold, log-sigmoid as
//! `min(x, 0) - ln_1p(e^-|x|)`, `HardSigmoid = relu6(x + 3) / 6`, gradients are
//! 0 at the kinks of ReLU6 and HardTanh, and LeakyReLU at exactly 0 uses the
//! negative slope. Every exact forward has its exact derivative; no finite
//! input gives a NaN gradient, and infinite inputs give the limits.
//!
//! | layer | `y` | `dy/dx` | derivative from |
//! |---|---|---|---|
//! | [`LeakyRelu`] | `x` if `x > 0`, else `a x` | `1` or `a` | input |
//! | [`Elu`] | `x` if `x > 0`, else `α (eˣ - 1)` | `1` or `α eˣ` | input |
//! | [`Selu`] | `λ x` if `x > 0`, else `λ α (eˣ - 1)` | `λ` or `λ α eˣ` | input |
//! | [`Celu`] | `x` if `x > 0`, else `α (e^(x/α) - 1)` | `1` or `e^(x/α)` | input |
//! | [`Gelu`] | `x Φ(x)` (exact) or `x σ(2u)`, `u = √(2/π)(x + 0.044715 x³)` | `Φ(x) + x φ(x)`, or its tanh-form derivative | input |
//! | [`Silu`] | `x σ(x)` | `σ(x) (1 + x (1 - σ(x)))` | input |
//! | [`Mish`] | `x tanh(softplus::<M, F>(x))` | `tanh(sp) + x σ(x) (1 - tanh²(sp))` | input |
//! | [`Softplus`] | `ln(1 + e^(βx)) / β`, `x` where `βx > threshold` | `σ(βx)`, or 1 | input |
//! | [`Softsign`] | `x / (1 + |x|)` | `1 / (1 + |x|)²` | input |
//! | [`HardTanh`] | `clamp(x, min, max)` | `1` inside `(min, max)`, else 0 | input |
//! | [`Relu6`] | `clamp(x, 0, 6)` | `1` inside `(0, 6)`, else 0 | input |
//! | [`HardSigmoid`] | `relu6(x + 3) / 6` | `1/6` inside `(-3, 3)`, else 0 | input |
//! | [`HardSwish`] | `x relu6(x + 3) / 6` | `0` to -3, `x/3 + 1/2` inside, `1` from 3 | input |
//! | [`LogSigmoid`] | `ln σ(x) = min(x, 0) - ln(1 + e^-|x|)` | `σ(-x)` | input |

use ndarray::Dimension;

use super::{DerivativeFrom, Elementwise, ElementwiseFn};
use crate::layer::LayerError;
use crate::math::{self, MulAdd, Reduced};
use crate::real::Real;

/// Checks a hyperparameter, naming it and the rule it broke.
fn require<F: Real>(
    layer: &'static str,
    name: &'static str,
    value: F,
    ok: bool,
    requirement: &'static str,
) -> Result<(), LayerError> {
    if ok {
        Ok(())
    } else {
        Err(LayerError::InvalidParameter {
            layer,
            name,
            value: value.to_string(),
            requirement,
        })
    }
}

/// `x · factor`, but a zero with the sign of `x` when `factor` is 0: the
/// limit of `x · f(x)` as `x → ±∞` where `f → 0`, instead of `∞ · 0 = NaN`,
/// and `-0` (the correctly rounded tiny negative value) far to the left.
#[inline(always)]
fn times_unless_zero<F: Real>(x: F, factor: F) -> F {
    if factor == F::zero() {
        F::zero().copysign(x)
    } else {
        x * factor
    }
}

/// Declares a kernel without hyperparameters: a unit struct, its `ElementwiseFn`
/// impl, and the layer alias.
macro_rules! plain_kernel {
    ($(#[$doc:meta])* $alias:ident, $kernel:ident, $name:literal, |$x:ident| $value:expr, |$c:ident| $derivative:expr) => {
        #[doc = concat!("The kernel of [`", stringify!($alias), "`].")]
        #[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
        pub struct $kernel;

        impl<F: Real> ElementwiseFn<F> for $kernel {
            const NAME: &'static str = $name;
            const DERIVATIVE_FROM: DerivativeFrom = DerivativeFrom::Input;

            fused_by_default!();

            #[inline(always)]
            fn value_with<M: MulAdd>(&self, $x: F) -> F {
                $value
            }

            #[inline(always)]
            fn derivative_with<M: MulAdd>(&self, $c: F) -> F {
                $derivative
            }
        }

        $(#[$doc])*
        pub type $alias<F, D> = Elementwise<$kernel, F, D>;
    };
}

// ---------------------------------------------------------------- LeakyReLU

/// The kernel of [`LeakyRelu`]: the slope for `x ≤ 0`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LeakyReluFn<F> {
    slope: F,
}

impl<F: Real> Default for LeakyReluFn<F> {
    /// PyTorch's default slope, 0.01.
    fn default() -> Self {
        LeakyReluFn {
            slope: F::lit(0.01),
        }
    }
}

impl<F: Real> ElementwiseFn<F> for LeakyReluFn<F> {
    const NAME: &'static str = "LeakyRelu";
    const DERIVATIVE_FROM: DerivativeFrom = DerivativeFrom::Input;

    #[inline(always)]
    fn value(&self, x: F) -> F {
        if x > F::zero() { x } else { self.slope * x }
    }

    #[inline(always)]
    fn derivative(&self, x: F) -> F {
        // At exactly 0 the negative slope, as PyTorch; NaN stays NaN.
        if x > F::zero() {
            F::ONE
        } else if x <= F::zero() {
            self.slope
        } else {
            x
        }
    }
}

/// Leaky ReLU: `y = x` for `x > 0`, `a·x` otherwise (default `a = 0.01`).
///
/// # Example
/// ```
/// use ndlayers::activation::LeakyRelu;
/// use ndlayers::prelude::*;
/// use ndlayers::ndarray::array;
///
/// let mut leaky = LeakyRelu::with_slope(0.1)?;
/// assert_eq!(leaky.forward(array![-2.0_f64, 3.0].view())?, array![-0.2, 3.0]);
/// assert_eq!(leaky.backward(array![1.0, 1.0].view())?, array![0.1, 1.0]);
/// # Ok::<(), LayerError>(())
/// ```
pub type LeakyRelu<F, D> = Elementwise<LeakyReluFn<F>, F, D>;

impl<F: Real, D: Dimension> Elementwise<LeakyReluFn<F>, F, D> {
    /// A leaky ReLU with negative slope `slope` (finite; any sign).
    pub fn with_slope(slope: F) -> Result<Self, LayerError> {
        require(
            "LeakyRelu",
            "slope",
            slope,
            slope.is_finite(),
            "must be finite",
        )?;
        Ok(Self::with_fn(LeakyReluFn { slope }))
    }
}

// ---------------------------------------------------------------- ELU, SELU, CELU

/// The kernel of [`Elu`]: `x if x > 0 else α (eˣ - 1)`; with a scale, SELU's too.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct EluFn<F> {
    alpha: F,
    scale: F,
}

impl<F: Real> Default for EluFn<F> {
    /// ELU with `α = 1`.
    fn default() -> Self {
        EluFn {
            alpha: F::ONE,
            scale: F::ONE,
        }
    }
}

impl<F: Real> ElementwiseFn<F> for EluFn<F> {
    const NAME: &'static str = "Elu";
    const DERIVATIVE_FROM: DerivativeFrom = DerivativeFrom::Input;

    fused_by_default!();
    staged_value!();

    #[inline(always)]
    fn reduce_with<M: MulAdd>(&self, x: F) -> Reduced<F> {
        math::expm1_nonpositive_reduce::<M, F>(x)
    }

    #[inline(always)]
    fn finish_with<M: MulAdd>(&self, x: F, reduced: Reduced<F>) -> F {
        // `x` itself at ±0 (and NaN): the reduction of -0 gives +0, PyTorch keeps -0.
        self.scale
            * if x < F::zero() {
                self.alpha * math::expm1_finish::<M, F>(reduced)
            } else {
                x
            }
    }

    #[inline(always)]
    fn derivative_with<M: MulAdd>(&self, x: F) -> F {
        self.scale
            * if x > F::zero() {
                F::ONE
            } else {
                self.alpha * M::exp(x)
            }
    }
}

/// Exponential linear unit: `y = x` for `x > 0`, `α (eˣ - 1)` otherwise (default `α = 1`).
///
/// `dy/dx = 1` for `x > 0`, `α eˣ` otherwise. Computed with `expm1`, so small
/// negative `x` keep full relative precision.
///
/// # Example
/// ```
/// use ndlayers::activation::Elu;
/// use ndlayers::prelude::*;
/// use ndlayers::ndarray::array;
///
/// let mut elu = Elu::with_alpha(2.0)?;
/// let y = elu.forward(array![1.0_f64, f64::NEG_INFINITY, -1e-20].view())?;
/// assert_eq!(y, array![1.0, -2.0, -2e-20]);
/// # Ok::<(), LayerError>(())
/// ```
pub type Elu<F, D> = Elementwise<EluFn<F>, F, D>;

/// SELU's `α`, to the precision of the paper's derivation.
const SELU_ALPHA: f64 = 1.673_263_242_354_377_3;
/// SELU's `λ`.
const SELU_SCALE: f64 = 1.050_700_987_355_480_5;

/// The kernel of [`Selu`]: ELU's with SELU's fixed `α` and `λ`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SeluFn;

impl SeluFn {
    #[inline(always)]
    fn elu<F: Real>() -> EluFn<F> {
        EluFn {
            alpha: F::lit(SELU_ALPHA),
            scale: F::lit(SELU_SCALE),
        }
    }
}

impl<F: Real> ElementwiseFn<F> for SeluFn {
    const NAME: &'static str = "Selu";
    const DERIVATIVE_FROM: DerivativeFrom = DerivativeFrom::Input;

    fused_by_default!();
    staged_value!();

    #[inline(always)]
    fn reduce_with<M: MulAdd>(&self, x: F) -> Reduced<F> {
        Self::elu::<F>().reduce_with::<M>(x)
    }

    #[inline(always)]
    fn finish_with<M: MulAdd>(&self, x: F, reduced: Reduced<F>) -> F {
        Self::elu::<F>().finish_with::<M>(x, reduced)
    }

    #[inline(always)]
    fn derivative_with<M: MulAdd>(&self, x: F) -> F {
        Self::elu::<F>().derivative_with::<M>(x)
    }
}

/// Scaled ELU with the self-normalising constants `λ = 1.0507…`, `α = 1.6732…`
/// (Klambauer et al. 2017): `y = λ x` for `x > 0`, `λ α (eˣ - 1)` otherwise;
/// `dy/dx = λ` or `λ α eˣ`. No hyperparameters, as PyTorch's `nn.SELU`.
///
/// # Example
/// ```
/// use ndlayers::activation::Selu;
/// use ndlayers::prelude::*;
/// use ndlayers::ndarray::array;
///
/// let y = Selu::new().forward(array![1.0_f64, -1.0].view())?;
/// assert_eq!(y[0], 1.0507009873554805);
/// assert!((y[1] - -1.1113307378125628).abs() < 1e-15); // λα(e⁻¹ - 1), mpmath
/// # Ok::<(), LayerError>(())
/// ```
pub type Selu<F, D> = Elementwise<SeluFn, F, D>;

impl<F: Real, D: Dimension> Elementwise<EluFn<F>, F, D> {
    /// ELU with `alpha ≥ 0` (finite).
    pub fn with_alpha(alpha: F) -> Result<Self, LayerError> {
        require(
            "Elu",
            "alpha",
            alpha,
            alpha >= F::zero() && alpha.is_finite(),
            "must be finite and non-negative",
        )?;
        Ok(Self::with_fn(EluFn {
            alpha,
            scale: F::ONE,
        }))
    }
}

/// The kernel of [`Celu`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CeluFn<F> {
    alpha: F,
}

impl<F: Real> Default for CeluFn<F> {
    /// `α = 1`.
    fn default() -> Self {
        CeluFn { alpha: F::ONE }
    }
}

impl<F: Real> ElementwiseFn<F> for CeluFn<F> {
    const NAME: &'static str = "Celu";
    const DERIVATIVE_FROM: DerivativeFrom = DerivativeFrom::Input;

    fused_by_default!();
    staged_value!();

    #[inline(always)]
    fn reduce_with<M: MulAdd>(&self, x: F) -> Reduced<F> {
        math::expm1_nonpositive_reduce::<M, F>(x / self.alpha)
    }

    #[inline(always)]
    fn finish_with<M: MulAdd>(&self, x: F, reduced: Reduced<F>) -> F {
        if x < F::zero() {
            self.alpha * math::expm1_finish::<M, F>(reduced)
        } else {
            x
        }
    }

    #[inline(always)]
    fn derivative_with<M: MulAdd>(&self, x: F) -> F {
        if x > F::zero() {
            F::ONE
        } else {
            M::exp(x / self.alpha)
        }
    }
}

/// Continuously differentiable ELU: `y = max(0, x) + min(0, α (e^(x/α) - 1))` (default `α = 1`).
///
/// # Example
/// ```
/// use ndlayers::activation::Celu;
/// use ndlayers::prelude::*;
/// use ndlayers::ndarray::array;
///
/// let mut celu = Celu::with_alpha(0.5)?;
/// assert_eq!(celu.forward(array![2.0_f64, f64::NEG_INFINITY].view())?, array![2.0, -0.5]);
/// assert!(Celu::<f64, ndlayers::ndarray::Ix1>::with_alpha(0.0).is_err());
/// # Ok::<(), LayerError>(())
/// ```
pub type Celu<F, D> = Elementwise<CeluFn<F>, F, D>;

impl<F: Real, D: Dimension> Elementwise<CeluFn<F>, F, D> {
    /// CELU with `alpha > 0` (finite): `α` divides `x`, so 0 is invalid.
    pub fn with_alpha(alpha: F) -> Result<Self, LayerError> {
        require(
            "Celu",
            "alpha",
            alpha,
            alpha > F::zero() && alpha.is_finite(),
            "must be finite and positive",
        )?;
        Ok(Self::with_fn(CeluFn { alpha }))
    }
}

// ---------------------------------------------------------------- GELU

/// Which GELU: PyTorch's `approximate='none'` or `'tanh'`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum GeluApproximation {
    /// `x Φ(x)` with the exact normal CDF (`approximate='none'`).
    #[default]
    None,
    /// `½ x (1 + tanh(√(2/π) (x + 0.044715 x³)))` (`approximate='tanh'`).
    Tanh,
}

/// The kernel of [`Gelu`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct GeluFn {
    approximation: GeluApproximation,
}

/// `1/√2`.
const FRAC_1_SQRT_2: f64 = std::f64::consts::FRAC_1_SQRT_2;
/// `1/√(2π)`, the normal density at 0.
const FRAC_1_SQRT_2PI: f64 = 0.398_942_280_401_432_7;
/// `√(2/π)`.
const SQRT_2_OVER_PI: f64 = 0.797_884_560_802_865_4;
/// The cubic coefficient of the tanh approximation.
const GELU_CUBIC: f64 = 0.044_715;

impl GeluFn {
    /// `2u = 2√(2/π) (x + 0.044715 x³)`, the argument of the tanh form's
    /// `½(1 + tanh u) = σ(2u)`, which avoids the cancellation of `1 + tanh u`
    /// for negative `x`.
    #[inline(always)]
    fn two_u<F: Real>(x: F) -> F {
        let c = F::lit(GELU_CUBIC);
        F::TWO * F::lit(SQRT_2_OVER_PI) * (x + c * x * x * x)
    }

    /// `(σ(2u), 2u')` of the tanh form.
    #[inline(always)]
    fn tanh_form<M: MulAdd, F: Real>(x: F) -> (F, F) {
        let c = F::lit(GELU_CUBIC);
        let two_du = F::TWO * F::lit(SQRT_2_OVER_PI) * (F::ONE + F::THREE * c * x * x);
        (M::sigmoid(Self::two_u(x)), two_du)
    }

    /// `Φ(x) = ½ erfc(-x/√2)`: accurate in the left tail, where `1 + erf` cancels.
    #[inline(always)]
    fn normal_cdf<F: Real>(x: F) -> F {
        F::HALF * (-x * F::lit(FRAC_1_SQRT_2)).erfc()
    }
}

impl<F: Real> ElementwiseFn<F> for GeluFn {
    const NAME: &'static str = "Gelu";
    const DERIVATIVE_FROM: DerivativeFrom = DerivativeFrom::Input;

    fused_by_default!();
    staged_value!();

    #[inline(always)]
    fn reduce_with<M: MulAdd>(&self, x: F) -> Reduced<F> {
        match self.approximation {
            // erfc is a scalar libm call; nothing to stage.
            GeluApproximation::None => [x, F::zero()],
            GeluApproximation::Tanh => math::sigmoid_reduce::<M, F>(Self::two_u(x)),
        }
    }

    #[inline(always)]
    fn finish_with<M: MulAdd>(&self, x: F, reduced: Reduced<F>) -> F {
        let gate = match self.approximation {
            GeluApproximation::None => Self::normal_cdf(x),
            GeluApproximation::Tanh => math::sigmoid_finish::<M, F>(Self::two_u(x), reduced),
        };
        times_unless_zero(x, gate)
    }

    #[inline(always)]
    fn derivative_with<M: MulAdd>(&self, x: F) -> F {
        match self.approximation {
            GeluApproximation::None => {
                let cdf = Self::normal_cdf(x);
                let density = F::lit(FRAC_1_SQRT_2PI) * M::exp_nonpositive(-F::HALF * x * x);
                cdf + times_unless_zero(x, density)
            }
            GeluApproximation::Tanh => {
                // d/dx [x σ(2u)] = σ(2u) + x · σ(2u)(1 - σ(2u)) · 2u'
                let (s, two_du) = Self::tanh_form::<M, F>(x);
                let ds = s * (F::ONE - s);
                s + times_unless_zero(x * two_du, ds)
            }
        }
    }
}

/// Gaussian error linear unit. [`Gelu::new`] is the exact form, `x Φ(x)`
/// (PyTorch's default, `approximate='none'`); [`Gelu::tanh_approximation`] is
/// `½ x (1 + tanh(√(2/π) (x + 0.044715 x³)))` (`approximate='tanh'`).
///
/// Each form's backward is its own exact derivative: `Φ(x) + x φ(x)` for the
/// exact form, never the tanh form's. `GELU(-∞) = 0`, `GELU(∞) = ∞`.
///
/// # Example
/// ```
/// use ndlayers::activation::Gelu;
/// use ndlayers::prelude::*;
/// use ndlayers::ndarray::array;
///
/// let exact = Gelu::new().forward(array![1.0_f64].view())?;
/// let tanh = Gelu::tanh_approximation().forward(array![1.0_f64].view())?;
/// assert!((exact[0] - 0.8413447460685429).abs() < 1e-15); // Φ(1), mpmath
/// assert!((tanh[0] - 0.8411919906082768).abs() < 1e-15);  // mpmath, tanh form
/// # Ok::<(), LayerError>(())
/// ```
pub type Gelu<F, D> = Elementwise<GeluFn, F, D>;

impl<F: Real, D: Dimension> Elementwise<GeluFn, F, D> {
    /// GELU in the given form, as PyTorch's `nn.GELU(approximate=...)`.
    pub fn with_approximation(approximation: GeluApproximation) -> Self {
        Self::with_fn(GeluFn { approximation })
    }

    /// The tanh approximation of GELU: `with_approximation(GeluApproximation::Tanh)`.
    pub fn tanh_approximation() -> Self {
        Self::with_approximation(GeluApproximation::Tanh)
    }
}

// ---------------------------------------------------------------- SiLU, Mish

/// The kernel of [`Silu`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SiluFn;

impl<F: Real> ElementwiseFn<F> for SiluFn {
    const NAME: &'static str = "Silu";
    const DERIVATIVE_FROM: DerivativeFrom = DerivativeFrom::Input;

    fused_by_default!();
    staged_value!();

    #[inline(always)]
    fn reduce_with<M: MulAdd>(&self, x: F) -> Reduced<F> {
        math::sigmoid_reduce::<M, F>(x)
    }

    #[inline(always)]
    fn finish_with<M: MulAdd>(&self, x: F, reduced: Reduced<F>) -> F {
        times_unless_zero(x, math::sigmoid_finish::<M, F>(x, reduced))
    }

    #[inline(always)]
    fn derivative_with<M: MulAdd>(&self, x: F) -> F {
        let s = M::sigmoid(x);
        s + times_unless_zero(x, s * (F::ONE - s))
    }
}

/// SiLU (swish): `y = x σ(x)`, `dy/dx = σ(x) (1 + x (1 - σ(x)))`.
///
/// # Example
/// ```
/// use ndlayers::activation::Silu;
/// use ndlayers::prelude::*;
/// use ndlayers::ndarray::array;
///
/// let y = Silu::new().forward(array![0.0_f32, f32::NEG_INFINITY, f32::INFINITY].view())?;
/// assert_eq!(y, array![0.0, 0.0, f32::INFINITY]);
/// # Ok::<(), LayerError>(())
/// ```
pub type Silu<F, D> = Elementwise<SiluFn, F, D>;

/// `softplus::<M, F>(x) = ln(1 + eˣ) = max(x, 0) + ln(1 + e^-|x|)`, stable everywhere.
#[inline(always)]
fn softplus<M: MulAdd, F: Real>(x: F) -> F {
    let positive = if x > F::zero() { x } else { F::zero() };
    positive + M::exp_nonpositive(-x.abs()).ln_1p()
}

plain_kernel!(
    /// Mish: `y = x tanh(softplus::<M, F>(x))`,
    /// `dy/dx = tanh(sp) + x σ(x) (1 - tanh²(sp))` with `sp = softplus::<M, F>(x)`.
    ///
    /// # Example
    /// ```
    /// use ndlayers::activation::Mish;
    /// use ndlayers::prelude::*;
    /// use ndlayers::ndarray::array;
    ///
    /// let y = Mish::new().forward(array![1.0_f64].view())?;
    /// assert!((y[0] - 0.8650983882673103).abs() < 1e-15); // mpmath: tanh(log(1+e))
    /// # Ok::<(), LayerError>(())
    /// ```
    Mish, MishFn, "Mish",
    |x| times_unless_zero(x, M::tanh(softplus::<M, F>(x))),
    |x| {
        let t = M::tanh(softplus::<M, F>(x));
        t + times_unless_zero(x, M::sigmoid(x) * (F::ONE - t) * (F::ONE + t))
    }
);

// ---------------------------------------------------------------- Softplus

/// The kernel of [`Softplus`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SoftplusFn<F> {
    beta: F,
    threshold: F,
}

impl<F: Real> Default for SoftplusFn<F> {
    /// PyTorch's defaults: `β = 1`, threshold 20.
    fn default() -> Self {
        SoftplusFn {
            beta: F::ONE,
            threshold: F::lit(20.0),
        }
    }
}

impl<F: Real> ElementwiseFn<F> for SoftplusFn<F> {
    const NAME: &'static str = "Softplus";
    const DERIVATIVE_FROM: DerivativeFrom = DerivativeFrom::Input;

    fused_by_default!();

    #[inline(always)]
    fn value_with<M: MulAdd>(&self, x: F) -> F {
        let z = self.beta * x;
        if z > self.threshold {
            x
        } else {
            softplus::<M, F>(z) / self.beta
        }
    }

    #[inline(always)]
    fn derivative_with<M: MulAdd>(&self, x: F) -> F {
        let z = self.beta * x;
        if z > self.threshold {
            F::ONE
        } else {
            M::sigmoid(z)
        }
    }
}

/// Softplus: `y = ln(1 + e^(βx)) / β`, and `y = x` where `βx > threshold`
/// (PyTorch's defaults `β = 1`, threshold 20). `dy/dx = σ(βx)`, or 1 in the linear region.
///
/// # Example
/// ```
/// use ndlayers::activation::Softplus;
/// use ndlayers::prelude::*;
/// use ndlayers::ndarray::array;
///
/// let mut softplus = Softplus::new();
/// let y = softplus.forward(array![0.0_f64, -800.0, 800.0].view())?;
/// assert_eq!(y, array![2f64.ln(), 0.0, 800.0]);
/// assert!(Softplus::<f64, ndlayers::ndarray::Ix1>::with_beta_threshold(0.0, 20.0).is_err());
/// # Ok::<(), LayerError>(())
/// ```
pub type Softplus<F, D> = Elementwise<SoftplusFn<F>, F, D>;

impl<F: Real, D: Dimension> Elementwise<SoftplusFn<F>, F, D> {
    /// Softplus with `beta > 0` and a threshold (both finite).
    pub fn with_beta_threshold(beta: F, threshold: F) -> Result<Self, LayerError> {
        require(
            "Softplus",
            "beta",
            beta,
            beta > F::zero() && beta.is_finite(),
            "must be finite and positive",
        )?;
        require(
            "Softplus",
            "threshold",
            threshold,
            threshold.is_finite(),
            "must be finite",
        )?;
        Ok(Self::with_fn(SoftplusFn { beta, threshold }))
    }
}

// ---------------------------------------------------------------- Softsign

plain_kernel!(
    /// Softsign: `y = x / (1 + |x|)`, `dy/dx = 1 / (1 + |x|)²`; `±∞ ↦ ±1`.
    ///
    /// # Example
    /// ```
    /// use ndlayers::activation::Softsign;
    /// use ndlayers::prelude::*;
    /// use ndlayers::ndarray::array;
    ///
    /// let y = Softsign::new().forward(array![1.0_f64, -3.0, f64::INFINITY].view())?;
    /// assert_eq!(y, array![0.5, -0.75, 1.0]);
    /// # Ok::<(), LayerError>(())
    /// ```
    Softsign, SoftsignFn, "Softsign",
    |x| if x.is_infinite() { x.signum() } else { x / (F::ONE + x.abs()) },
    |x| {
        let d = F::ONE + x.abs();
        F::ONE / (d * d)
    }
);

// ---------------------------------------------------------------- Hard activations

/// The kernel of [`HardTanh`]: clamping to `[min, max]`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct HardTanhFn<F> {
    min: F,
    max: F,
}

impl<F: Real> Default for HardTanhFn<F> {
    /// `[-1, 1]`.
    fn default() -> Self {
        HardTanhFn {
            min: -F::ONE,
            max: F::ONE,
        }
    }
}

impl<F: Real> ElementwiseFn<F> for HardTanhFn<F> {
    const NAME: &'static str = "HardTanh";
    const DERIVATIVE_FROM: DerivativeFrom = DerivativeFrom::Input;

    #[inline(always)]
    fn value(&self, x: F) -> F {
        // Comparisons, not max/min, so NaN passes through.
        if x < self.min {
            self.min
        } else if x > self.max {
            self.max
        } else {
            x
        }
    }

    #[inline(always)]
    fn derivative(&self, x: F) -> F {
        // 0 at the kinks themselves, as PyTorch.
        if x > self.min && x < self.max {
            F::ONE
        } else if x.is_nan() {
            x
        } else {
            F::zero()
        }
    }
}

/// HardTanh: `y = clamp(x, min, max)` (default `[-1, 1]`); `dy/dx = 1` strictly
/// inside, 0 outside and at the kinks.
///
/// # Example
/// ```
/// use ndlayers::activation::HardTanh;
/// use ndlayers::prelude::*;
/// use ndlayers::ndarray::array;
///
/// let mut hard = HardTanh::with_range(-2.0, 2.0)?;
/// assert_eq!(hard.forward(array![-5.0_f64, 0.5, 2.0].view())?, array![-2.0, 0.5, 2.0]);
/// assert_eq!(hard.backward(array![1.0, 1.0, 1.0].view())?, array![0.0, 1.0, 0.0]);
/// assert!(HardTanh::<f64, ndlayers::ndarray::Ix1>::with_range(1.0, -1.0).is_err());
/// # Ok::<(), LayerError>(())
/// ```
pub type HardTanh<F, D> = Elementwise<HardTanhFn<F>, F, D>;

/// The kernel of [`Relu6`]: HardTanh's on `[0, 6]`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Relu6Fn;

impl Relu6Fn {
    #[inline(always)]
    fn clamp<F: Real>() -> HardTanhFn<F> {
        HardTanhFn {
            min: F::zero(),
            max: F::SIX,
        }
    }
}

impl<F: Real> ElementwiseFn<F> for Relu6Fn {
    const NAME: &'static str = "Relu6";
    const DERIVATIVE_FROM: DerivativeFrom = DerivativeFrom::Input;

    #[inline(always)]
    fn value(&self, x: F) -> F {
        Self::clamp::<F>().value(x)
    }

    #[inline(always)]
    fn derivative(&self, x: F) -> F {
        Self::clamp::<F>().derivative(x)
    }
}

/// ReLU6: `y = clamp(x, 0, 6)`; `dy/dx = 1` on `(0, 6)`, else 0 (also at
/// the kinks, as PyTorch).
///
/// # Example
/// ```
/// use ndlayers::activation::Relu6;
/// use ndlayers::prelude::*;
/// use ndlayers::ndarray::array;
///
/// let mut relu6 = Relu6::new();
/// assert_eq!(relu6.forward(array![-1.0_f32, 3.0, 9.0].view())?, array![0.0, 3.0, 6.0]);
/// assert_eq!(relu6.backward(array![1.0, 1.0, 1.0].view())?, array![0.0, 1.0, 0.0]);
/// # Ok::<(), LayerError>(())
/// ```
pub type Relu6<F, D> = Elementwise<Relu6Fn, F, D>;

impl<F: Real, D: Dimension> Elementwise<HardTanhFn<F>, F, D> {
    /// HardTanh on `[min, max]`; `min ≤ max`, neither NaN.
    pub fn with_range(min: F, max: F) -> Result<Self, LayerError> {
        require("HardTanh", "min", min, !min.is_nan(), "must not be NaN")?;
        require("HardTanh", "max", max, !max.is_nan(), "must not be NaN")?;
        require("HardTanh", "min", min, min <= max, "must not exceed max")?;
        Ok(Self::with_fn(HardTanhFn { min, max }))
    }
}

plain_kernel!(
    /// HardSigmoid: `y = relu6(x + 3) / 6` (PyTorch's form, not ONNX's `0.2x + 0.5`);
    /// `dy/dx = 1/6` on `(-3, 3)`, else 0.
    ///
    /// # Example
    /// ```
    /// use ndlayers::activation::HardSigmoid;
    /// use ndlayers::prelude::*;
    /// use ndlayers::ndarray::array;
    ///
    /// let y = HardSigmoid::new().forward(array![-4.0_f64, 0.0, 1.5, 4.0].view())?;
    /// assert_eq!(y, array![0.0, 0.5, 0.75, 1.0]);
    /// # Ok::<(), LayerError>(())
    /// ```
    HardSigmoid, HardSigmoidFn, "HardSigmoid",
    |x| Relu6Fn::clamp::<F>().value(x + F::THREE) / F::SIX,
    |x| HardTanhFn { min: -F::THREE, max: F::THREE }.derivative(x) / F::SIX
);

plain_kernel!(
    /// HardSwish: `y = x relu6(x + 3) / 6`; `dy/dx = 0` for `x ≤ -3`,
    /// `x/3 + 1/2` for `-3 < x < 3`, 1 from 3 on (PyTorch's choice at the
    /// kinks, pytorch PR #148049: the slope of the outer piece).
    ///
    /// # Example
    /// ```
    /// use ndlayers::activation::HardSwish;
    /// use ndlayers::prelude::*;
    /// use ndlayers::ndarray::array;
    ///
    /// let mut hs = HardSwish::new();
    /// assert_eq!(hs.forward(array![-4.0_f64, 1.5, 4.0].view())?, array![-0.0, 1.125, 4.0]);
    /// assert_eq!(hs.backward(array![1.0, 1.0, 1.0].view())?, array![0.0, 1.0, 1.0]);
    /// # Ok::<(), LayerError>(())
    /// ```
    HardSwish, HardSwishFn, "HardSwish",
    |x| times_unless_zero(x, Relu6Fn::clamp::<F>().value(x + F::THREE) / F::SIX),
    |x| {
        if x <= -F::THREE {
            F::zero()
        } else if x < F::THREE {
            x / F::THREE + F::HALF
        } else if x >= F::THREE {
            F::ONE
        } else {
            x
        }
    }
);

plain_kernel!(
    /// LogSigmoid: `y = ln σ(x) = min(x, 0) - ln(1 + e^-|x|)`, `dy/dx = σ(-x)`.
    ///
    /// # Example
    /// ```
    /// use ndlayers::activation::LogSigmoid;
    /// use ndlayers::prelude::*;
    /// use ndlayers::ndarray::array;
    ///
    /// let y = LogSigmoid::new().forward(array![0.0_f64, -1000.0, 1000.0].view())?;
    /// assert_eq!(y, array![-(2f64.ln()), -1000.0, -0.0]);
    /// # Ok::<(), LayerError>(())
    /// ```
    LogSigmoid, LogSigmoidFn, "LogSigmoid",
    |x| {
        let negative = if x < F::zero() { x } else { F::zero() };
        negative - M::exp_nonpositive(-x.abs()).ln_1p()
    },
    |x| M::sigmoid(-x)
);
