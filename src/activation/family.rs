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

use ndarray::{Dimension, Ix2};

use super::{DerivativeFrom, Elementwise, ElementwiseFn, ElementwiseKernel};
use crate::error::{LayerError, require};
use crate::math::{self, MulAdd, Reduced};
use crate::real::Real;

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

/// `x · lead · unscale` for a factor kept scaled by `1/unscale` (see
/// [`math::ScaledSigmoid`]): the product is formed in the normal range and
/// rounds once into the subnormal one; a zero factor gives a zero with the sign of `x`.
#[inline(always)]
fn times_scaled<F: Real>(x: F, lead: F, unscale: F) -> F {
    times_unless_zero(x, lead) * unscale
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
        }

        impl<F: Real> ElementwiseKernel<F> for $kernel {
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
        pub type $alias<F, D = Ix2> = Elementwise<$kernel, F, D>;
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

impl<F: Real> ElementwiseKernel<F> for LeakyReluFn<F> {}

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
pub type LeakyRelu<F, D = Ix2> = Elementwise<LeakyReluFn<F>, F, D>;

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
}

impl<F: Real> ElementwiseKernel<F> for EluFn<F> {
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
pub type Elu<F, D = Ix2> = Elementwise<EluFn<F>, F, D>;

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
}

impl<F: Real> ElementwiseKernel<F> for SeluFn {
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
pub type Selu<F, D = Ix2> = Elementwise<SeluFn, F, D>;

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
}

impl<F: Real> ElementwiseKernel<F> for CeluFn<F> {
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
pub type Celu<F, D = Ix2> = Elementwise<CeluFn<F>, F, D>;

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

/// `1/√(2π)`, the normal density at 0.
const FRAC_1_SQRT_2PI: f64 = 0.398_942_280_401_432_7;
/// `1/√2` as a double word: `FRAC_1_SQRT_2 + FRAC_1_SQRT_2_LO` to 106 bits.
const FRAC_1_SQRT_2: f64 = std::f64::consts::FRAC_1_SQRT_2;
/// `1/√2 - FRAC_1_SQRT_2`.
const FRAC_1_SQRT_2_LO: f64 = -4.833_646_656_726_457e-17;
/// `2/√π`, the slope of `erfc` at 0.
const FRAC_2_SQRT_PI: f64 = std::f64::consts::FRAC_2_SQRT_PI;
/// `2√(2/π)` as a double word, the tanh form's `2u = GELU_K · x (1 + 0.044715 x²)`.
const GELU_K: f64 = 1.595_769_121_605_730_8;
/// `2√(2/π) - GELU_K`.
const GELU_K_LO: f64 = -9.969_308_809_110_92e-17;
/// The cubic coefficient of the tanh approximation.
const GELU_CUBIC: f64 = 0.044_715;
/// `2√(2/π) · 0.044715` as a double word (mpmath).
const GELU_KC: f64 = 0.071_354_816_272_600_25;
/// `2√(2/π) · 0.044715 - GELU_KC`.
const GELU_KC_LO: f64 = -6.175_149_918_155_315e-19;
/// Past `|x| = 64` the tanh form's `σ(2u)` is 0 or 1 in both formats
/// (`|2u| > 18000`), so `2u` needs no extra digits; below it, the exact
/// products cannot overflow.
const GELU_TANH_DOUBLE_WORD_LIMIT: f64 = 64.0;
/// Where `Φ(x)`'s `erfc` would leave the normal range (`erfc(26) = 5.7e-296`,
/// `x = -26√2`), GELU switches to the asymptotic series.
const GELU_ASYMPTOTIC_Z: f64 = 26.0;
/// `√(2π)`.
const FRAC_SQRT_2PI: f64 = 2.506_628_274_631_000_5;
/// Past `|x| = 40`, `φ(x) = e^(-800)/√(2π)` is 0 in `f64`, and `x²` may overflow.
const GELU_DENSITY_LIMIT: f64 = 40.0;

/// The exact GELU's value and derivative, in `f64` (the `f32` layer rounds
/// them once more: `erfc` is a scalar libm call either way, and `f64`
/// keeps the left tail's subnormal `Φ(x)` normal).
///
/// The left tail needs care twice. `Φ(x) = ½ erfc(z)` with `z = -x/√2`,
/// and `erfc'(z)/erfc(z) ≈ -2z`, so the rounding of `z` alone costs `2z²`
/// ulps (900 at `x = -30`): `z` is computed as a double word `zh + zl` and
/// `erfc(zh + zl) = erfc(zh) - zl·(2/√π)·e^(-zh²)` to first order (the
/// second is below `2^-100` relative). Likewise `e^(-x²/2)` takes `x²` as a
/// double word. And past `z = 26`, `erfc` itself leaves the normal range
/// before `x·Φ(x)` does; there `Φ(x) = φ(x)/|x| · S` with the asymptotic
/// series `S = Σ (-1)ⁿ (2n-1)!! / x²ⁿ` (eight terms: the ninth is below
/// `2^-60` for `x² > 1352`), so `x Φ(x) = -φ(x)·S` with no subnormal on the way.
fn gelu_exact(x: f64, derivative: bool) -> f64 {
    if x.is_infinite() {
        // The limits: x·1 and 1 on the right, -0 (tiny negative) on the left.
        return match (x > 0.0, derivative) {
            (true, false) => x,
            (true, true) => 1.0,
            (false, _) => -0.0,
        };
    }
    let minus_x = -x;
    let zh = minus_x * FRAC_1_SQRT_2;
    let tail = zh > 1.0;
    // φ(x) = e^(-x²/2)/√(2π), with x² = sh + sl exactly; needed by the
    // derivative, and by the tail's correction (e^(-zh²) = √(2π)·φ(x) to
    // far more digits than the correction's size needs).
    let density = if (derivative || tail) && x.abs() < GELU_DENSITY_LIMIT {
        let sh = x * x;
        let sl = x.mul_add(x, -sh);
        FRAC_1_SQRT_2PI * (-0.5 * sh).exp() * (1.0 - 0.5 * sl)
    } else {
        0.0
    };
    if zh > GELU_ASYMPTOTIC_Z {
        let inverse_square = 1.0 / (x * x);
        let (mut term, mut series) = (1.0, 1.0);
        for n in 1..=8 {
            term *= -f64::from(2 * n - 1) * inverse_square;
            series += term;
        }
        return if derivative {
            density * (series / minus_x - minus_x)
        } else {
            -density * series
        };
    }
    let correction = if tail {
        let zl = minus_x.mul_add(FRAC_1_SQRT_2, -zh) + minus_x * FRAC_1_SQRT_2_LO;
        zl * FRAC_2_SQRT_PI * FRAC_SQRT_2PI * density
    } else {
        0.0
    };
    let cdf = 0.5 * (libm::erfc(zh) - correction);
    if derivative {
        cdf + x * density
    } else if cdf == 0.0 {
        0.0f64.copysign(x)
    } else {
        x * cdf
    }
}

/// The double word `hi + lo` (an `f64` pair, 106 bits) as a double word of `F`.
#[inline(always)]
fn split_constant<F: Real>(hi: f64, lo: f64) -> (F, F) {
    let head = F::lit(hi);
    // hi - head is exact in f64 (head is hi rounded to fewer bits).
    (head, F::lit((hi - head.to_f64().unwrap_or(hi)) + lo))
}

impl GeluFn {
    /// `2u = 2√(2/π) (x + 0.044715 x³)`, the argument of the tanh form's
    /// `½(1 + tanh u) = σ(2u)`, which avoids the cancellation of `1 + tanh u`
    /// for negative `x`.
    #[inline(always)]
    fn two_u<F: Real>(x: F) -> F {
        let c = F::lit(GELU_CUBIC);
        F::lit(GELU_K) * (x + c * x * x * x)
    }

    /// `2u` as a double word `(hi, lo)`, exact to about `2^-2p`.
    ///
    /// The relative error of `σ(2u)` is `|δ(2u)|` where `2u < 0`, and `2u`
    /// reaches -380 at `x = -17`: plain rounding of `2u` (and of its two
    /// constants, neither exact in binary) cost 530 ulps there. Every product
    /// is exact ([`MulAdd::two_product`]) and every sum carries its error (two-sum), so the
    /// only error left is the `lo` parts' own rounding.
    #[inline(always)]
    fn two_u_double_word<M: MulAdd, F: Real>(x: F) -> (F, F) {
        // 2u = x (K + Kc x²): three exact products and one exact sum.
        let (kh, kl) = split_constant::<F>(GELU_K, GELU_K_LO);
        let (ch, cl) = split_constant::<F>(GELU_KC, GELU_KC_LO);
        let (sh, sl) = M::two_product(x, x);
        let (qh, ql) = M::two_product(ch, sh);
        let ql = ql + (ch * sl + cl * sh);
        let (rh, rl) = math::two_sum(kh, qh);
        let rl = rl + (kl + ql);
        let (hi, lo) = M::two_product(x, rh);
        let lo = lo + x * rl;
        // A blend, not a branch, so the loops stay vectorised.
        if x.abs() < F::lit(GELU_TANH_DOUBLE_WORD_LIMIT) {
            (hi, lo)
        } else {
            (Self::two_u(x), F::zero())
        }
    }

    /// `2u'`, the derivative of [`Self::two_u`].
    #[inline(always)]
    fn two_du<F: Real>(x: F) -> F {
        let c = F::lit(GELU_CUBIC);
        F::lit(GELU_K) * (F::ONE + F::THREE * c * x * x)
    }
}

impl<F: Real> ElementwiseFn<F> for GeluFn {
    const NAME: &'static str = "Gelu";

    const DERIVATIVE_FROM: DerivativeFrom = DerivativeFrom::Input;

    fused_by_default!();
}

impl<F: Real> ElementwiseKernel<F> for GeluFn {
    staged_value!();

    #[inline(always)]
    fn reduce_with<M: MulAdd>(&self, x: F) -> Reduced<F> {
        match self.approximation {
            // erfc is a scalar libm call; nothing to stage.
            GeluApproximation::None => [x, F::zero()],
            GeluApproximation::Tanh => {
                let (hi, lo) = Self::two_u_double_word::<M, F>(x);
                math::sigmoid_reduce_carrying::<M, F>(hi, lo)
            }
        }
    }

    #[inline(always)]
    fn finish_with<M: MulAdd>(&self, x: F, reduced: Reduced<F>) -> F {
        match self.approximation {
            GeluApproximation::None => F::lit(gelu_exact(x.to_f64().unwrap_or(f64::NAN), false)),
            GeluApproximation::Tanh => {
                let s = math::sigmoid_scaled::<M, F>(Self::two_u(x), reduced);
                times_scaled(x, s.lead, s.unscale)
            }
        }
    }

    #[inline(always)]
    fn derivative_with<M: MulAdd>(&self, x: F) -> F {
        match self.approximation {
            GeluApproximation::None => F::lit(gelu_exact(x.to_f64().unwrap_or(f64::NAN), true)),
            GeluApproximation::Tanh => {
                // d/dx [x σ(2u)] = σ(2u) (1 + x · σ(-2u) · 2u')
                let (hi, lo) = Self::two_u_double_word::<M, F>(x);
                let s =
                    math::sigmoid_scaled::<M, F>(hi, math::sigmoid_reduce_carrying::<M, F>(hi, lo));
                let factor = F::ONE + times_unless_zero(x * Self::two_du(x), s.other);
                times_scaled(factor, s.lead, s.unscale)
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
pub type Gelu<F, D = Ix2> = Elementwise<GeluFn, F, D>;

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
}

impl<F: Real> ElementwiseKernel<F> for SiluFn {
    staged_value!();

    #[inline(always)]
    fn reduce_with<M: MulAdd>(&self, x: F) -> Reduced<F> {
        math::sigmoid_reduce::<M, F>(x)
    }

    #[inline(always)]
    fn finish_with<M: MulAdd>(&self, x: F, reduced: Reduced<F>) -> F {
        let s = math::sigmoid_scaled::<M, F>(x, reduced);
        times_scaled(x, s.lead, s.unscale)
    }

    #[inline(always)]
    fn derivative_with<M: MulAdd>(&self, x: F) -> F {
        // σ(x) + x σ(x)(1 - σ(x)) = σ(x) (1 + x σ(-x)): σ(-x) keeps the
        // digits that 1 - σ(x) loses where σ(x) rounds to 1.
        let s = math::sigmoid_scaled::<M, F>(x, math::sigmoid_reduce::<M, F>(x));
        let factor = F::ONE + times_unless_zero(x, s.other);
        times_scaled(factor, s.lead, s.unscale)
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
pub type Silu<F, D = Ix2> = Elementwise<SiluFn, F, D>;

/// `softplus::<M, F>(x) = ln(1 + eˣ) = max(x, 0) + ln(1 + e^-|x|)`, stable everywhere.
#[inline(always)]
fn softplus<M: MulAdd, F: Real>(x: F) -> F {
    let positive = if x > F::zero() { x } else { F::zero() };
    positive + M::ln_1p(M::exp_nonpositive(-x.abs()))
}

/// The kernel of [`Mish`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MishFn;

/// Mish's `t = tanh(softplus(x))` and its parts, from `e = e^-|x|`, in the
/// form [`MishFn`] derives.
struct MishParts<F> {
    /// `t`, scaled by `2^64` where `x < 0` (as [`math::ScaledSigmoid::lead`]).
    lead: F,
    /// `1 - t`.
    complement: F,
    /// `σ(x)`, scaled as `lead`.
    sigmoid: F,
    /// `1`, or `2^-64` for `x < 0`.
    unscale: F,
}

impl MishFn {
    /// `tanh(ln(1 + eˣ)) = ((1 + eˣ)² - 1) / ((1 + eˣ)² + 1)`, rewritten
    /// with `e = e^-|x| ≤ 1` so that nothing overflows or cancels:
    ///
    /// ```text
    /// x ≥ 0:  t = (1 + 2e) / (1 + 2e + 2e²),   1 - t = 2e² / (1 + 2e + 2e²),   σ(x) = 1 / (1 + e)
    /// x < 0:  t = e (2 + e) / (2 + 2e + e²),   1 - t = 2 / (2 + 2e + e²),      σ(x) = e / (1 + e)
    /// ```
    ///
    /// One exponential instead of an exp, a log and a tanh; `1 - t` keeps
    /// the digits that `1 - tanh` loses for large `x` (the backward), and
    /// `e` enters the left tail's products as `E = e·2^64`, never as a
    /// subnormal (as in [`math::sigmoid_scaled`]).
    #[inline(always)]
    fn parts<M: MulAdd, F: Real>(x: F, reduced: Reduced<F>) -> MishParts<F> {
        let s = math::sigmoid_scaled::<M, F>(x, reduced);
        let e = s.e;
        let two_e = F::TWO * e;
        if x < F::zero() {
            let d = F::TWO + e * (F::TWO + e);
            MishParts {
                // 0 below the underflow cutoff, as `s.lead`.
                lead: if s.lead == F::zero() {
                    F::zero()
                } else {
                    s.scaled_e * (F::TWO + e) / d
                },
                complement: F::TWO / d,
                sigmoid: s.lead,
                unscale: s.unscale,
            }
        } else {
            let d = F::ONE + two_e * (F::ONE + e);
            MishParts {
                lead: (F::ONE + two_e) / d,
                complement: two_e * e / d,
                sigmoid: s.lead,
                unscale: s.unscale,
            }
        }
    }
}

impl<F: Real> ElementwiseFn<F> for MishFn {
    const NAME: &'static str = "Mish";

    const DERIVATIVE_FROM: DerivativeFrom = DerivativeFrom::Input;

    fused_by_default!();
}

impl<F: Real> ElementwiseKernel<F> for MishFn {
    staged_value!();

    #[inline(always)]
    fn reduce_with<M: MulAdd>(&self, x: F) -> Reduced<F> {
        math::sigmoid_reduce::<M, F>(x)
    }

    #[inline(always)]
    fn finish_with<M: MulAdd>(&self, x: F, reduced: Reduced<F>) -> F {
        let p = Self::parts::<M, F>(x, reduced);
        times_scaled(x, p.lead, p.unscale)
    }

    #[inline(always)]
    fn derivative_with<M: MulAdd>(&self, x: F) -> F {
        // t + x σ(x) (1 - t)(1 + t), every term scaled alike.
        let p = Self::parts::<M, F>(x, math::sigmoid_reduce::<M, F>(x));
        let t = p.lead * p.unscale;
        let slope = p.sigmoid * p.complement * (F::ONE + t);
        (p.lead + times_unless_zero(x, slope)) * p.unscale
    }
}

/// Mish: `y = x tanh(softplus(x))`, `dy/dx = tanh(sp) + x σ(x) (1 - tanh²(sp))`
/// with `sp = ln(1 + eˣ)`.
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
pub type Mish<F, D = Ix2> = Elementwise<MishFn, F, D>;

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
}

impl<F: Real> ElementwiseKernel<F> for SoftplusFn<F> {
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
pub type Softplus<F, D = Ix2> = Elementwise<SoftplusFn<F>, F, D>;

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

impl<F: Real> ElementwiseKernel<F> for HardTanhFn<F> {}

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
pub type HardTanh<F, D = Ix2> = Elementwise<HardTanhFn<F>, F, D>;

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

impl<F: Real> ElementwiseKernel<F> for Relu6Fn {}

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
pub type Relu6<F, D = Ix2> = Elementwise<Relu6Fn, F, D>;

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
        negative - M::ln_1p(M::exp_nonpositive(-x.abs()))
    },
    |x| M::sigmoid(-x)
);
