//! Branch-free `exp`, `expm1`, `ln_1p`, `sigmoid` and `tanh`, generic over [`Real`],
//! written once against [`MulAdd`] and compiled in two flavours.
//!
//! Every function here is straight-line arithmetic plus comparisons that LLVM
//! turns into blends, so a loop over a slice that calls them vectorises (the
//! kernels (the private `kernels` module) compile such loops for AVX2, AVX-512 and NEON
//! and pick one at run time). libm's `expf` is a call per element and never
//! vectorises; that, not the arithmetic, is what makes the naive `mapv` slow.
//!
//! [`Fused`] multiply-adds round once and take half the latency of a multiply
//! then an add, on the dependency chain that bounds the vectorised loops; the
//! kernels use them on every CPU with the instruction (x86-64 with FMA, since
//! 2013; every aarch64). A fused multiply-add is correctly rounded by
//! definition, so all those CPUs compute bit-identical results. Without the
//! instruction (x86-64 before Haswell, some Atom-class CPUs, virtual CPUs
//! like QEMU's `qemu64`) `f32::mul_add` would be a call into libm's software
//! `fma` for each operation, hundreds of times slower, so the kernels use
//! [`Unfused`] there: a multiply then an add, different bits within the same
//! error bounds (the exhaustive test checks both).
//!
//! Error bounds, checked exhaustively for `f32` by `tests/exhaustive_f32.rs`
//! against an `f64` reference and by random sampling for `f64`:
//! `exp` ≤ 1 ulp, `ln_1p` ≤ 1.58 ulp, and `sigmoid` and `tanh` faithfully
//! rounded (< 1 ulp: measured on all `f32` inputs, 0.662 and 0.721 ulp with
//! fused multiply-adds, 0.823 and 0.723 without), over the whole range, with
//! subnormal results accurate to one unit of the smallest subnormal.
//!
//! ```
//! use ndlayers::math::{Fused, MulAdd, Unfused};
//!
//! assert_eq!(Fused::sigmoid(0.0f32), 0.5);
//! assert!((Unfused::tanh(0.5f64) - 0.5f64.tanh()).abs() < 1e-16);
//! ```

use crate::real::Real;

/// Beyond `±EXPM1_LIMIT` we have `e^x - 1 = e^x` (x > 64) or `-1` (x < -64) to
/// within half an ulp in both formats (`e^-64 = 1.6e-28 < 2^-54`), and `2^k`
/// for `k = round(x/ln2)` stays a normal number (|k| ≤ 93).
const EXPM1_LIMIT: f64 = 64.0;

/// `exp` scales by `2^(k ± SCALE_SHIFT)` and then by `2^∓SCALE_SHIFT`: `k`
/// spans `[-150, 129]` for `f32` (`[-1077, 1025]` for `f64`), wider than the
/// normal powers of two, and moving it 64 towards zero brings every `k` of one
/// sign inside them (`[-86, 64]` and `[-63, 65]`; `[-1013, 64]` and `[-63, 961]`).
/// The first product is exact, the second rounds once, so subnormal results
/// are correctly rounded and overflow gives `∞`.
const SCALE_SHIFT: f64 = 64.0;

/// `2^SCALE_SHIFT`.
const TWO_POW_SHIFT: f64 = 18_446_744_073_709_551_616.0;

/// Multiply-adds rounded once: the CPU's FMA instruction, or libm's `fma`
/// where there is none.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Fused;

/// Multiply-adds as a multiplication, then an addition, each rounded.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Unfused;

mod sealed {
    pub trait Sealed {}
    impl Sealed for super::Fused {}
    impl Sealed for super::Unfused {}
}

/// How `a · b + c` is computed, and the math written on top of it.
///
/// Implemented by [`Fused`] and [`Unfused`] only (the trait is sealed: the
/// error bounds are proven for those two); the provided methods are the
/// public face of this module.
///
/// ```compile_fail
/// // error[E0277]: the trait bound `Mine: Sealed` is not satisfied
/// struct Mine;
/// impl ndlayers::math::MulAdd for Mine {
///     fn mul_add<F: ndlayers::Real>(a: F, b: F, c: F) -> F { a * b + c }
///     fn two_product<F: ndlayers::Real>(a: F, b: F) -> (F, F) { (a * b, F::zero()) }
/// }
/// ```
pub trait MulAdd: Sized + sealed::Sealed {
    /// `a · b + c`.
    fn mul_add<F: Real>(a: F, b: F, c: F) -> F;

    /// `(p, error)` with `a · b = p + error` exactly: with [`Fused`], the
    /// error is one multiply-add; with [`Unfused`], Dekker's product with
    /// Veltkamp's split. `|a|, |b|` must stay below `MAX / SPLITTER` and the
    /// product away from underflow.
    fn two_product<F: Real>(a: F, b: F) -> (F, F);

    /// `n - q·d` rounded once, where `q·d` is within a factor 2 of `n` (the
    /// residual of a quotient `q ≈ n/d`): one fused multiply-add with
    /// [`Fused`], the exact product and two subtractions with [`Unfused`]
    /// (`n - p` is exact there by Sterbenz's lemma).
    #[inline(always)]
    fn residual<F: Real>(q: F, d: F, n: F) -> F {
        let (p, p_lo) = Self::two_product(q, d);
        (n - p) - p_lo
    }

    /// `e^x`, within 1 ulp over the whole range; `e^NaN = NaN`, `e^-∞ = 0`, `e^∞ = ∞`.
    #[inline(always)]
    fn exp<F: Real>(x: F) -> F {
        let x = clamp_keep_nan(x, F::EXP_UNDERFLOW, F::EXP_OVERFLOW);
        let (shift, unshift) = if x > F::zero() {
            (-SCALE_SHIFT, TWO_POW_SHIFT)
        } else {
            (SCALE_SHIFT, 1.0 / TWO_POW_SHIFT)
        };
        scaled_exp::<Self, F>(reduce::<Self, F>(x), F::lit(shift)) * F::lit(unshift)
    }

    /// `e^x` for `x ≤ 0`, within 1 ulp, one blend cheaper than [`MulAdd::exp`];
    /// `e^NaN = NaN`, `e^-∞ = 0`. (Positive `x` give wrong results.)
    ///
    /// Every `exp` in a softmax (`x - max`) or a sigmoid (`-|x|`) is of this kind.
    #[inline(always)]
    fn exp_nonpositive<F: Real>(x: F) -> F {
        exp_nonpositive_finish::<Self, F>(exp_nonpositive_reduce::<Self, F>(x))
    }

    /// `e^x - 1`, accurate for small `|x|` where `exp(x) - 1` would cancel.
    #[inline(always)]
    fn expm1<F: Real>(x: F) -> F {
        let limit = F::lit(EXPM1_LIMIT);
        let bounded = expm1_finish::<Self, F>(reduce::<Self, F>(clamp_keep_nan(x, -limit, limit)));
        if x > limit { Self::exp(x) } else { bounded }
    }

    /// `ln(1 + x)`, accurate however small `x` is (within 1.58 ulp on every
    /// `f32`; within 2.5 ulp of std's `ln_1p` in `f64`); `ln_1p(-1) = -∞`,
    /// `ln_1p(∞) = ∞`, and NaN below `-1` and for NaN.
    #[inline(always)]
    fn ln_1p<F: Real>(x: F) -> F {
        // u = 1 + x rounded, and its rounding error exactly (Fast2Sum, the
        // larger operand first): 1 + x = u + error.
        let u = F::ONE + x;
        let (large, small) = if x > F::ONE { (x, F::ONE) } else { (F::ONE, x) };
        let error = small - (u - large);
        // u = 2^k·m, so 1 + x = 2^k·(1 + f) with f = (m - 1) + error·2^-k;
        // m - 1 is exact (Sterbenz: m ∈ [√½, √2)). Past k = 64 the error is
        // below 2^-64 of 1 + f and can be dropped, which keeps 2^-k normal.
        let (k, m) = u.split_exponent();
        let capped = if k < F::lit(64.0) { k } else { F::lit(64.0) };
        let f = (m - F::ONE) + error * F::exp2_shifted(F::ROUND_SHIFTER - capped);
        // ln(1 + f) = 2·atanh(s) = 2s + s·R with s = f/(2 + f), R = w·LN_ATANH(w),
        // w = s²; and 2s = f - s·f, so ln(1 + f) = f - s·(f - R): the leading
        // f is exact and the correction, at most 0.2·|f|, carries the roundings.
        let s = f / (F::TWO + f);
        let w = s * s;
        let r = w * polynomial::<Self, F>(w, F::LN_ATANH);
        let ln_1p_f = f - s * (f - r);
        // k·LN2_HI is exact; everything else is added to it in one rounding.
        let result = Self::mul_add(k, F::LN2_HI, Self::mul_add(k, F::LN2_LO, ln_1p_f));
        let finite = if u < F::infinity() { result } else { u };
        if u > F::zero() {
            finite
        } else if u == F::zero() {
            F::neg_infinity()
        } else {
            F::nan()
        }
    }

    /// The logistic function `σ(x) = 1 / (1 + e^-x)`.
    #[inline(always)]
    fn sigmoid<F: Real>(x: F) -> F {
        sigmoid_finish_faithful::<Self, F>(x, sigmoid_reduce_faithful::<Self, F>(x))
    }

    /// The hyperbolic tangent.
    #[inline(always)]
    fn tanh<F: Real>(x: F) -> F {
        tanh_finish::<Self, F>(x, tanh_reduce::<Self, F>(x))
    }
}

// Each function below the public ones is cut in two at its argument reduction
// `x = k·ln2 + r`: `f(x) = finish(x, reduce(x))`. The public methods compose
// the halves; the kernels run them as two loops over a block of elements
// (`kernels::staging::staged`), which is faster and gives the same bits.

/// The argument reduction that the two halves of a function pass between
/// them: `[k + ROUND_SHIFTER, r]` (see [`reduce`]).
pub(crate) type Reduced<F> = [F; 2];

/// First half of [`MulAdd::exp_nonpositive`].
#[inline(always)]
pub(crate) fn exp_nonpositive_reduce<M: MulAdd, F: Real>(x: F) -> Reduced<F> {
    reduce::<M, F>(raise_to_underflow(x))
}

/// Second half of [`MulAdd::exp_nonpositive`].
#[inline(always)]
pub(crate) fn exp_nonpositive_finish<M: MulAdd, F: Real>(reduced: Reduced<F>) -> F {
    scaled_exp::<M, F>(reduced, F::lit(SCALE_SHIFT)) * F::lit(1.0 / TWO_POW_SHIFT)
}

/// First half of `e^(x - max)` for `x ≤ max`, a softmax term, that also
/// counts the rounding of the subtraction; second half: [`exp_nonpositive_finish`].
///
/// `x - max` rounds to `d` with an error of up to half an ulp of `d`, which
/// `e^d` turns into a relative error of up to `|d|·2^-24` in `f32`, `|d|/2` to
/// `|d|` ulp of the result: up to 20 at `d = -20`, 88 at `d = -88`. Knuth's two-sum recovers the
/// rounding error `lo` exactly (`d + lo = x - max`), and since `|lo|` is at
/// most half an ulp of `d`, it joins the reduced argument as `r + lo` with one
/// more rounding of at most half an ulp of `|r| ≤ ln2/2`: the term stays within
/// the error of `exp` itself. When `x - max` is exact (always when
/// `max/2 ≤ x ≤ 2·max`, by Sterbenz's lemma), `lo = 0` and so are the bits.
#[inline(always)]
pub(crate) fn exp_difference_reduce<M: MulAdd, F: Real>(x: F, max: F) -> Reduced<F> {
    let d = x - max;
    let x_part = d + max;
    let max_part = x_part - d;
    let lo = (x - x_part) + (max_part - max);
    let [shifted, r] = reduce::<M, F>(raise_to_underflow(d));
    // `lo` is NaN for `d = -∞` (`x = -∞`, whose term is 0) and meaningless below
    // the underflow cutoff; the comparison is false there and for NaN.
    [shifted, if d >= F::EXP_UNDERFLOW { r + lo } else { r }]
}

/// The reduction of `-|x|`, the only exponential every sigmoid needs.
///
/// σ(x) = 1/(1 + e^-x) for x ≥ 0 and e^x/(1 + e^x) for x < 0. Both need only
/// e = e^-|x| ≤ 1, which never overflows and, as σ(x) → 0 for x → -∞, is
/// itself the leading term, so the result keeps full relative precision.
/// (The first half of the products' sigmoids, [`sigmoid_scaled`]; the
/// faithful `σ` itself starts from [`sigmoid_reduce_faithful`].)
#[inline(always)]
pub(crate) fn sigmoid_reduce<M: MulAdd, F: Real>(x: F) -> Reduced<F> {
    reduce::<M, F>(raise_to_underflow(-x.abs()))
}

// Faithfully rounded sigmoid and tanh.
//
// A plain evaluation rounds four times: e^-|x| (≤ 1 ulp), 1 + e, the
// division, and (tanh) the numerator; each is up to an ulp of the result,
// so the total reached 2.40 (sigmoid) and 2.62 ulp (tanh). Here e^-|x| and
// e^-2|x| - 1 are double words `hi + lo` good to about 2^-28 relative for
// `f32` (the reduction's rounding kept in `r_lo`, the sums with 1 kept by
// Fast2Sum), and the quotient is one division corrected by its residual,
// in which the denominator's sum `1 + e` or `2 + m` is never rounded
// ([`quotient_by_sum`]). What is left is the final rounding, half an ulp,
// and the double words' errors: at most 0.662 ulp (sigmoid) and 0.721 (tanh)
// on every f32 with fused multiply-adds, 0.823 and 0.723 without (the
// exhaustive test). So the saturation points are where correct rounding puts
// them (f32 tanh reaches 1 at 9.010914, σ at 17.32868, the first floats past
// atanh(1 - 2^-25) and ln(2^25 - 1)), and the cached `y` is as good as
// PyTorch's for the backward `(1 - y)(1 + y)` and `y(1 - y)`, at the cost
// of a longer polynomial and the double-word arithmetic (the README's
// performance tables show where that leaves the forwards).

/// Cody–Waite reduction `a = k·ln2 + r_hi + r_lo` that keeps the rounding of
/// `r` in `r_lo`; returns `[k + shifter, r_hi, r_lo]`, for a `shifter` of
/// `ROUND_SHIFTER` plus a small integer (an exponent offset folded in).
///
/// `t = a - k·LN2_HI` is exact (see [`reduce`]); `r_hi = t - k·LN2_LO`
/// rounds, and `r_lo = (t - r_hi) - k·LN2_LO` recovers that rounding (to
/// 2^-36 of `ln 2` for `f32`, beyond which `LN2_LO` itself is truncated).
#[inline(always)]
fn reduce_double_word<M: MulAdd, F: Real>(a: F, shifter: F) -> [F; 3] {
    let shifted = M::mul_add(a, F::LOG2_E, shifter);
    let k = shifted - shifter;
    let t = M::mul_add(-k, F::LN2_HI, a);
    let r = M::mul_add(-k, F::LN2_LO, t);
    [shifted, r, M::mul_add(-k, F::LN2_LO, t - r)]
}

/// `e^(r + r_lo) - 1` for `|r| ≤ ln2/2` as a double word `(hi, lo)`, `|lo|`
/// at most an ulp of `hi`.
///
/// `e^r - 1 = r + c` with `c = r²/2 + r³·Q(r)` (`Q` from `cubic`): the sum
/// `r + c` keeps its rounding (Fast2Sum, `|c| < |r|`), and `r_lo` enters as
/// `r_lo` (its product with `r`, 2^-25 of it, is dropped). Left are the
/// roundings of `c` (`r²`, then the multiply-add: about an ulp of
/// `c ≤ 0.18·|r|`, 2^-26.5 of the result) and the error of `Q`
/// (`Internals::EXPM1_CUBIC`: 2^-29.8 of the result for `f32`).
#[inline(always)]
fn expm1_reduced_double_word<M: MulAdd, F: Real>(r: F, r_lo: F, cubic: &[F]) -> (F, F) {
    let square = r * r;
    let c = M::mul_add(r * square, polynomial::<M, F>(r, cubic), square * F::HALF);
    let hi = r + c;
    let hi_lo = c - (hi - r);
    let lo = hi_lo + r_lo;
    (hi, lo)
}

/// `(n + n_lo) / (c + d + d_lo)` rounded once, within half an ulp plus about
/// 2^-(2p-4) relative: for `c` a power of two, `d + d_lo` and `n + n_lo`
/// double words, `c + d > 0`, and `n/c` within a factor 2 of the quotient.
///
/// One division gives `q`, within two ulps of the quotient `Q`; then Newton's
/// correction `q + ρ/(c + d)` with the residual `ρ = n + n_lo - q·(c + d + d_lo)`.
/// `ρ` is formed without rounding `c + d` at all: `n - q·c` is exact (`q·c`
/// is a power-of-two scaling, within a factor 2 of `n`: Sterbenz), `- q·d`
/// then rounds once ([`MulAdd::residual`]), relative to `ρ`, which is a few
/// ulps of `n`; `n_lo - q·d_lo` is smaller still. So the rounding of `c + d`,
/// up to an ulp of the result, never enters: only the reciprocal sees it,
/// and it scales the correction, a few ulps, by a relative 2^-p.
#[inline(always)]
fn quotient_by_sum<M: MulAdd, F: Real>(n: F, n_lo: F, c: F, d: F, d_lo: F) -> F {
    let reciprocal = F::ONE / (c + d);
    let q = n * reciprocal;
    let exact = M::mul_add(-q, c, n);
    let residual = M::residual(q, d, exact) + M::mul_add(-q, d_lo, n_lo);
    M::mul_add(residual, reciprocal, q)
}

/// First half of [`MulAdd::sigmoid`]: `E = e^-|x| · 2^64` as a double word.
///
/// The scaling keeps `E` normal where `e^-|x|` is subnormal (x below -87.3
/// in `f32`), so that `σ(x) ≈ e^x` is rounded once, into the subnormal range.
#[inline(always)]
pub(crate) fn sigmoid_reduce_faithful<M: MulAdd, F: Real>(x: F) -> Reduced<F> {
    // The scaling by 2^64 is folded into the shifter: `shifted` holds k + 64.
    let shifter = F::ROUND_SHIFTER + F::lit(SCALE_SHIFT);
    let [shifted, r, r_lo] = reduce_double_word::<M, F>(raise_to_underflow(-x.abs()), shifter);
    let (m, m_lo) = expm1_reduced_double_word::<M, F>(r, r_lo, F::EXP_CUBIC_SIGMOID);
    // e^r = 1 + m + m_lo, with 1 + m rounded and its error kept (|m| < 1).
    let u = F::ONE + m;
    let u_lo = (m - (u - F::ONE)) + m_lo;
    // Exact: a power of two, and both products stay normal (k + 64 ≥ -86).
    let scale = F::exp2_shifted(shifted);
    [u * scale, u_lo * scale]
}

/// Second half of [`MulAdd::sigmoid`]: `σ(x) = N / (2^64 + E)`, with
/// `N = 2^64` for `x ≥ 0` (`1/(1 + e)`) and `N = E` for `x < 0` (`e/(1 + e)`).
#[inline(always)]
pub(crate) fn sigmoid_finish_faithful<M: MulAdd, F: Real>(
    x: F,
    [scaled_e, scaled_e_lo]: Reduced<F>,
) -> F {
    let big = F::lit(TWO_POW_SHIFT);
    // N/2^64 is within a factor 2 of σ: 1/(1 + e) ∈ [1/2, 1], e/(1 + e) ∈ [e/2, e].
    let (n, n_lo) = if x < F::zero() {
        (scaled_e, scaled_e_lo)
    } else {
        (big, F::zero())
    };
    quotient_by_sum::<M, F>(n, n_lo, big, scaled_e, scaled_e_lo)
}

/// `σ(x)` and `σ(-x)` for products such as `x·σ(x)`, where rounding a
/// subnormal `σ(x)` before the multiplication would lose digits the product
/// (a normal number) should have: see [`sigmoid_scaled`].
#[derive(Debug, Clone, Copy)]
pub(crate) struct ScaledSigmoid<F> {
    /// `σ(t) / unscale`: normal wherever `σ(t)·|x|` can be, 0 below the underflow cutoff.
    pub(crate) lead: F,
    /// `σ(-t)`.
    pub(crate) other: F,
    /// `1`, or `2^-64` for `t < 0`: multiplying a product of `lead` by it is
    /// exact, or rounds once into the subnormal range.
    pub(crate) unscale: F,
    /// `e^-|t|` (subnormal far out; for sums with 1).
    pub(crate) e: F,
    /// `e^-|t| · 2^64`, normal wherever `e^-|t|·|t|` can be.
    pub(crate) scaled_e: F,
}

/// Second half of a sigmoid of `t` reduced by [`sigmoid_reduce`] (or with
/// its rounding error carried, [`sigmoid_reduce_carrying`]), split for products.
///
/// With `e = e^-|t|` and `E = e·2^64` (normal where `e` is subnormal):
/// for `t ≥ 0`, `σ(t) = 1/(1 + e)` and `σ(-t) = e/(1 + e)`; for `t < 0`,
/// `σ(t)·2^64 = E/(1 + e)` and `σ(-t) = 1/(1 + e)`. Two divisions, each
/// rounded once, and no cancellation: `σ(-t)` keeps its digits where `σ(t)`
/// rounds to 1, which a derivative `σ(t)(1 - σ(t))` written as `σ(t)·σ(-t)` needs.
#[inline(always)]
pub(crate) fn sigmoid_scaled<M: MulAdd, F: Real>(t: F, reduced: Reduced<F>) -> ScaledSigmoid<F> {
    let scaled_e = scaled_exp::<M, F>(reduced, F::lit(SCALE_SHIFT));
    let e = scaled_e * F::lit(1.0 / TWO_POW_SHIFT);
    let d = F::ONE + e;
    let negative = t < F::zero();
    // Below the cutoff the reduction was clamped (e is e^cutoff, not e^t): the
    // true σ(t)·|t| rounds to 0 there, and so must every product of `lead`.
    // The numerators are chosen first, so that each quotient is one division.
    let lead_numerator = if t < F::EXP_UNDERFLOW {
        F::zero()
    } else if negative {
        scaled_e
    } else {
        F::ONE
    };
    let other_numerator = if negative { F::ONE } else { e };
    ScaledSigmoid {
        lead: lead_numerator / d,
        other: other_numerator / d,
        unscale: F::lit(if t < F::zero() {
            1.0 / TWO_POW_SHIFT
        } else {
            1.0
        }),
        e,
        scaled_e,
    }
}

/// First half of the sigmoid of `hi + lo` (a double-word argument, `|lo|`
/// at most half an ulp of `hi`): the reduction of `-|hi + lo|`, with `lo`
/// joined to the reduced argument as in [`exp_difference_reduce`].
///
/// The relative error of `σ(t)` from an error `δ` in `t` is `|δ|·σ(-t)`, up
/// to `|t|·2^-24` for the `f32` rounding of a large negative `t`: that is
/// the ulps this recovers.
#[inline(always)]
pub(crate) fn sigmoid_reduce_carrying<M: MulAdd, F: Real>(hi: F, lo: F) -> Reduced<F> {
    let minus_abs = -hi.abs();
    let [shifted, r] = reduce::<M, F>(raise_to_underflow(minus_abs));
    let carried = if hi < F::zero() { r + lo } else { r - lo };
    [
        shifted,
        if minus_abs >= F::EXP_UNDERFLOW {
            carried
        } else {
            r
        },
    ]
}

/// `a + b = s + error` exactly (Knuth's two-sum, any order of magnitudes).
#[inline(always)]
pub(crate) fn two_sum<F: Real>(a: F, b: F) -> (F, F) {
    let s = a + b;
    let a_part = s - b;
    let b_part = s - a_part;
    (s, (a - a_part) + (b - b_part))
}

/// First half of [`MulAdd::expm1`] where only `x ≤ 0` matters (the
/// exponential linear units): positive `x` are reduced as 0. Second half:
/// [`expm1_finish`].
#[inline(always)]
pub(crate) fn expm1_nonpositive_reduce<M: MulAdd, F: Real>(x: F) -> Reduced<F> {
    reduce::<M, F>(clamp_keep_nan(x, F::lit(-EXPM1_LIMIT), F::zero()))
}

/// First half of [`MulAdd::tanh`]: `e^-2|x| - 1` as a double word.
///
/// With `m = e^-2|x| - 1 ∈ (-1, 0]`, `tanh|x| = -m / (2 + m)`. For small
/// `|x|`, `m ≈ -2|x|` to full relative precision (an `expm1`, not `exp - 1`),
/// so `tanh(1e-10) = 1e-10` exactly; for large `|x|`, `m → -1` and the
/// quotient → 1 without overflow. Below `-EXPM1_LIMIT` (`|x| > 32`) the
/// argument is clamped: `tanh` is 1 to far below an ulp there.
#[inline(always)]
pub(crate) fn tanh_reduce<M: MulAdd, F: Real>(x: F) -> Reduced<F> {
    let limit = F::lit(-EXPM1_LIMIT);
    // Exact: a scaling by a power of two.
    let minus_two_a = x.abs() * -F::TWO;
    let a = if minus_two_a < limit {
        limit
    } else {
        minus_two_a
    };
    let [shifted, r, r_lo] = reduce_double_word::<M, F>(a, F::ROUND_SHIFTER);
    let (m, m_lo) = expm1_reduced_double_word::<M, F>(r, r_lo, F::EXPM1_CUBIC);
    // e^a - 1 = (s - 1) + s·(m + m_lo) with s = 2^k; s - 1 is not a float
    // for k below -p, so it is a two-sum too. Products by s are exact.
    // k ≤ 0, so both are Fast2Sums: 1 ≥ s, and |s - 1| ≥ 1/2 > |s·m| unless
    // k = 0, where s - 1 = 0 and the sum is exact.
    let s = F::exp2_shifted(shifted);
    let s_minus_1 = s - F::ONE;
    let s_minus_1_lo = s - (s_minus_1 + F::ONE);
    let scaled_m = s * m;
    let hi = s_minus_1 + scaled_m;
    let hi_lo = scaled_m - (hi - s_minus_1);
    [hi, hi_lo + s_minus_1_lo + s * m_lo]
}

/// Second half of [`MulAdd::tanh`].
#[inline(always)]
pub(crate) fn tanh_finish<M: MulAdd, F: Real>(x: F, [m, m_lo]: Reduced<F>) -> F {
    // -m/2 is within a factor 2 of the quotient -m/(2 + m), as 2 + m ∈ (1, 2].
    quotient_by_sum::<M, F>(-m, -m_lo, F::TWO, m, m_lo).copysign(x)
}

impl MulAdd for Fused {
    #[inline(always)]
    fn mul_add<F: Real>(a: F, b: F, c: F) -> F {
        a.mul_add(b, c)
    }

    #[inline(always)]
    fn two_product<F: Real>(a: F, b: F) -> (F, F) {
        let p = a * b;
        (p, a.mul_add(b, -p))
    }

    #[inline(always)]
    fn residual<F: Real>(q: F, d: F, n: F) -> F {
        (-q).mul_add(d, n)
    }
}

impl MulAdd for Unfused {
    #[inline(always)]
    fn mul_add<F: Real>(a: F, b: F, c: F) -> F {
        a * b + c
    }

    #[inline(always)]
    fn two_product<F: Real>(a: F, b: F) -> (F, F) {
        let split = |v: F| {
            let t = F::SPLITTER * v;
            let hi = t - (t - v);
            (hi, v - hi)
        };
        let p = a * b;
        let ((ah, al), (bh, bl)) = (split(a), split(b));
        (p, ((ah * bh - p) + ah * bl + al * bh) + al * bl)
    }
}

/// `x` clamped to `[lo, hi]` by comparisons, so that NaN passes through
/// (`f32::clamp` would also keep NaN, but `max`/`min` drop it).
#[inline(always)]
fn clamp_keep_nan<F: Real>(x: F, lo: F, hi: F) -> F {
    if x < lo {
        lo
    } else if x > hi {
        hi
    } else {
        x
    }
}

/// Cody–Waite reduction: `x = k·ln2 + r` with integer `k` and `|r| ≤ ln2/2`.
///
/// Returns `k + ROUND_SHIFTER` (whose low mantissa bits hold `k`, for
/// `Internals::exp2_shifted`) and `r`. `k·LN2_HI` is exact (see
/// `Internals::LN2_HI`) and the fused subtraction rounds once, so `r` carries
/// only the rounding of `k·LN2_LO`, far below an ulp of the result.
#[inline(always)]
fn reduce<M: MulAdd, F: Real>(x: F) -> Reduced<F> {
    let shifted = M::mul_add(x, F::LOG2_E, F::ROUND_SHIFTER);
    let k = shifted - F::ROUND_SHIFTER;
    let r = M::mul_add(-k, F::LN2_LO, M::mul_add(-k, F::LN2_HI, x));
    [shifted, r]
}

/// `Σ c_i r^i` by Estrin's scheme: pair up terms as `c_2i + c_2i+1 · r`, then
/// pair those with `r²`, then `r⁴`, … The dependency chain is `log2(n)`
/// multiply-adds deep instead of Horner's `n`, which is what bounds the speed
/// of a vectorised loop here: the out-of-order window holds only a few
/// iterations of a chain that long. (Up to 16 coefficients; the loops unroll
/// completely because the coefficient count is a constant.)
#[inline(always)]
fn polynomial<M: MulAdd, F: Real>(r: F, coefficients: &[F]) -> F {
    let mut terms = [F::zero(); 16];
    let mut len = coefficients.len().min(terms.len());
    terms[..len].copy_from_slice(&coefficients[..len]);
    let mut power = r;
    while len > 1 {
        let half = len.div_ceil(2);
        for i in 0..half {
            terms[i] = if 2 * i + 1 < len {
                M::mul_add(terms[2 * i + 1], power, terms[2 * i])
            } else {
                terms[2 * i]
            };
        }
        len = half;
        power = power * power;
    }
    terms[0]
}

/// `e^r - 1` for `|r| ≤ ln2/2`: `r + r²/2! + … + r^n/n!`.
///
/// Evaluated as `(r + r²·(1/2! + r/3!)) + r⁴·(1/4! + r/5! + …)`: the first
/// group keeps the exact leading `r`, so its rounding is relative to the
/// result; the second is [`polynomial`]'s Estrin tree. The two groups are
/// independent, so the chain is one multiply-add shorter than `r + r²·P(r)`
/// (four cycles less of latency), at the price of one more rounding of
/// the first group (tanh's worst case for `f32` moves from 2.50 to 2.58 ulp).
/// The truncation bound is on `Internals::EXPM1_TAYLOR`.
#[inline(always)]
fn expm1_reduced<M: MulAdd, F: Real>(r: F) -> F {
    let c = &F::EXPM1_TAYLOR;
    let r2 = r * r;
    let low = M::mul_add(r2, M::mul_add(c[2], r, c[1]), r);
    M::mul_add(r2 * r2, polynomial::<M, F>(r, &c[3..]), low)
}

/// `e^x · 2^shift` from the reduction of `x` (already clamped to
/// `[EXP_UNDERFLOW, EXP_OVERFLOW]`), with `shift = ±SCALE_SHIFT` moving `k`
/// into the normal range (see [`SCALE_SHIFT`]).
#[inline(always)]
fn scaled_exp<M: MulAdd, F: Real>([shifted, r]: Reduced<F>, shift: F) -> F {
    let s = F::exp2_shifted(shifted + shift);
    // 2^k·e^r = s + s·(e^r - 1), rounded once.
    M::mul_add(s, expm1_reduced::<M, F>(r), s)
}

/// `x`, or `EXP_UNDERFLOW` if `x` is below it (NaN passes).
///
/// Below `EXP_UNDERFLOW`, `e^x` is 0 anyway; clamping keeps `k` small enough
/// that `k·LN2_HI` stays exact and the scaling yields exactly 0 by ordinary rounding.
#[inline(always)]
fn raise_to_underflow<F: Real>(x: F) -> F {
    if x < F::EXP_UNDERFLOW {
        F::EXP_UNDERFLOW
    } else {
        x
    }
}

/// `e^x - 1` for `x` in `[-EXPM1_LIMIT, EXPM1_LIMIT]`, from the reduction of `x`.
///
/// With `s = 2^k`, `e^x - 1 = s·(e^r - 1) + (s - 1)`. For `k = 0` this is the
/// polynomial itself, exact in relative terms however small `x` is; for
/// `k ≠ 0`, `|x| > ln2/2`, the result is at least 0.29 in magnitude and the
/// final addition loses nothing to cancellation.
#[inline(always)]
pub(crate) fn expm1_finish<M: MulAdd, F: Real>([shifted, r]: Reduced<F>) -> F {
    let s = F::exp2_shifted(shifted);
    M::mul_add(s, expm1_reduced::<M, F>(r), s - F::ONE)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Distance in units of the last place of `reference` (as an `f64` value).
    fn ulps64(got: f64, reference: f64) -> f64 {
        if got == reference || (got.is_nan() && reference.is_nan()) {
            return 0.0;
        }
        let exponent = reference.abs().log2().floor().max(-1022.0);
        (got - reference).abs() / 2f64.powf(exponent - 52.0)
    }

    /// Worst error of `M::exp` and `M::exp_nonpositive` against std over the f64 range.
    fn exp_error<M: MulAdd>() -> f64 {
        let mut worst = 0.0f64;
        let mut x = -745.0;
        while x < 709.7 {
            worst = worst.max(ulps64(M::exp(x), x.exp()));
            if x <= 0.0 {
                worst = worst.max(ulps64(M::exp_nonpositive(x), x.exp()));
            }
            x += 0.01237;
        }
        worst
    }

    /// Worst error of `M::expm1` against std, including tiny arguments.
    fn expm1_error<M: MulAdd>() -> f64 {
        let mut worst = 0.0f64;
        for i in -2000..2000 {
            let x = i as f64 * 0.0137;
            worst = worst.max(ulps64(M::expm1(x), x.exp_m1()));
            let tiny = x * 1e-12;
            worst = worst.max(ulps64(M::expm1(tiny), tiny.exp_m1()));
        }
        worst
    }

    /// Worst error of `M::ln_1p` against std: tiny to huge arguments, and down towards -1.
    fn ln_1p_error<M: MulAdd>() -> f64 {
        let mut worst = 0.0f64;
        let mut x = 1e-300f64;
        while x < 1e300 {
            for v in [x, -x.min(1.0 - 1e-15)] {
                worst = worst.max(ulps64(M::ln_1p(v), v.ln_1p()));
            }
            x *= 1.002;
        }
        worst
    }

    #[test]
    fn ln_1p_matches_std_in_both_flavours() {
        // std's log1p is itself within 1 ulp; measured: 2.0 ulp apart at most.
        for (name, error) in [
            ("fused", ln_1p_error::<Fused>()),
            ("unfused", ln_1p_error::<Unfused>()),
        ] {
            assert!(error <= 2.5, "{name} ln_1p f64 max error {error} ulp");
        }
    }

    #[test]
    fn exp_and_expm1_match_std_in_both_flavours() {
        for (name, exp, expm1) in [
            ("fused", exp_error::<Fused>(), expm1_error::<Fused>()),
            ("unfused", exp_error::<Unfused>(), expm1_error::<Unfused>()),
        ] {
            assert!(exp <= 1.0, "{name} exp f64 max error {exp} ulp");
            assert!(expm1 <= 2.0, "{name} expm1 f64 max error {expm1} ulp");
        }
    }

    fn special_values<M: MulAdd>() {
        assert_eq!(M::exp(f32::NEG_INFINITY), 0.0);
        assert_eq!(M::exp_nonpositive(f32::NEG_INFINITY), 0.0);
        assert_eq!(M::exp(f32::INFINITY), f32::INFINITY);
        assert!(M::exp(f32::NAN).is_nan());
        assert!(M::exp_nonpositive(f64::NAN).is_nan());
        assert!(M::expm1(f64::NAN).is_nan());
        assert_eq!(M::exp(0.0f64), 1.0);
        assert_eq!(M::exp_nonpositive(0.0f32), 1.0);
        assert_eq!(M::expm1(0.0f32), 0.0);
        assert_eq!(M::expm1(1000.0f64), f64::INFINITY);
        assert_eq!(M::expm1(-1000.0f64), -1.0);
        assert_eq!(M::ln_1p(0.0f32), 0.0);
        assert_eq!(M::ln_1p(1e-30f32), 1e-30);
        assert_eq!(M::ln_1p(-1.0f64), f64::NEG_INFINITY);
        assert_eq!(M::ln_1p(f32::INFINITY), f32::INFINITY);
        assert_eq!(M::ln_1p(f64::MAX), f64::MAX.ln());
        assert!(M::ln_1p(-1.5f32).is_nan());
        assert!(M::ln_1p(f64::NEG_INFINITY).is_nan());
        assert!(M::ln_1p(f32::NAN).is_nan());
        // The smallest subnormal, e^-103.28 = 2^-149, comes out exactly.
        assert_eq!(
            M::exp_nonpositive(-(149.0f32 * std::f32::consts::LN_2)),
            f32::from_bits(1)
        );
    }

    #[test]
    fn special_values_in_both_flavours() {
        special_values::<Fused>();
        special_values::<Unfused>();
    }
}
