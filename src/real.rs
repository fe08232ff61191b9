//! The float trait every layer is generic over, implemented for `f32` and `f64`.
//!
//! [`Real`] adds to `ndarray`'s [`NdFloat`] a few named constants and
//! [`Real::lit`]. The per-type facts the branch-free math in [`crate::math`]
//! needs (polynomial coefficients, range cutoffs, bit-level operations) live
//! in a sealed supertrait, `Internals`, which users can neither name nor
//! implement: they are tuned to the two IEEE formats and may change in any
//! release. Everything else is written once, generically.

use ndarray::NdFloat;
use num_traits::FromPrimitive;

mod internal {
    /// The implementation details of [`super::Real`]; sealed: implemented
    /// for `f32` and `f64` only, and not part of the public API.
    pub trait Internals: Sized + 'static {
        /// Taylor coefficients `1/1!, 1/2!, …, 1/n!` of `e^r - 1`, used on `|r| <= ln2/2`.
        ///
        /// The truncation error is at most `|r|^(n+1)/(n+1)! · e^|r|`, which for
        /// `|r| <= 0.3466` is `7.4e-9` (0.12 ulp of `f32` near 1) with `n = 7`
        /// and `4.2e-18` (0.04 ulp of `f64`) with `n = 13`.
        const EXPM1_TAYLOR: &'static [Self];
        /// Coefficients of `Q(r)` in `e^r - 1 = r + r²/2 + r³·Q(r)`, on
        /// `|r| <= ln2/2`, for the double-word `expm1` of the faithful sigmoid and tanh.
        ///
        /// `f32`: a degree-4 polynomial fitted to minimise the error of
        /// `r³·Q(r)` relative to `e^r - 1` (Lawson's iteration on 4000
        /// Chebyshev points against 40-digit values, `tests/reference/expm1_cubic.py`):
        /// 2^-31.3, and 2^-29.8 with the coefficients rounded to `f32`.
        /// `f64`: Taylor's `1/3!, …, 1/14!`, whose truncation relative to `|r|`
        /// is at most `|r|^12/15! · e^|r|` = 4.4e-19 (2^-61).
        const EXPM1_CUBIC: &'static [Self];
        /// [`Self::EXPM1_CUBIC`] for the sigmoid, which needs `e^r` to a
        /// relative 2^-27, not `e^r - 1`: `f32`, a degree-3 fit minimising the
        /// error relative to `e^r` (same script, `expm1_cubic.py 3 exp`):
        /// 2^-28.0 with the coefficients rounded. `f64`: as `EXPM1_CUBIC`.
        const EXP_CUBIC_SIGMOID: &'static [Self];
        /// `log2(e)`, rounded to nearest.
        const LOG2_E: Self;
        /// High part of `ln 2` with trailing zero bits, so that `k · LN2_HI` is exact
        /// for every `k` the exponent range can produce (Cody–Waite reduction).
        const LN2_HI: Self;
        /// `ln 2 - LN2_HI`, rounded to nearest.
        const LN2_LO: Self;
        /// Below this `e^x` rounds to zero: `e^x < 2^-(subnormal bits) / 2`.
        const EXP_UNDERFLOW: Self;
        /// Above this `e^x` rounds to infinity.
        const EXP_OVERFLOW: Self;
        /// `1.5 · 2^(mantissa bits)`: adding and subtracting it rounds any `|v| < 2^(mantissa bits - 1)`
        /// to the nearest integer (ties to even) without a rounding instruction, so the
        /// code vectorises on every x86-64 (SSE2 has no `round`).
        const ROUND_SHIFTER: Self;
        /// `2^k` from `shifted = k + ROUND_SHIFTER` (integer `k` in the normal
        /// exponent range), built from bits.
        ///
        /// The shifter's exponent makes the unit of `shifted`'s mantissa 1, so
        /// its low bits hold `k` in two's complement; shifting them into the
        /// exponent field drops the shifter's own bits, and adding the bias
        /// finishes `2^k`. Two integer operations, so it vectorises; the result
        /// for `k` outside the normal range is meaningless (callers keep `k` inside it).
        fn exp2_shifted(shifted: Self) -> Self;
        /// Coefficients `2/3, 2/5, 2/7, …` of `R(w) = Σ_{i≥1} 2/(2i+1)·w^(i-1)`,
        /// so that `ln(1 + f) = 2·atanh(s) = 2s + s·w·R(w)` with `s = f/(2 + f)`, `w = s²`.
        ///
        /// For `1 + f` in `[√½, √2)`, `|s| ≤ 0.1716` and `w ≤ 0.02944`; the first
        /// omitted term, relative to `2s`, is `w^(n+1)/(2n+3)`: `2.0e-9` (0.03
        /// ulp of `f32`) with `n = 4` coefficients, `6.3e-19` (0.006 ulp of `f64`)
        /// with `n = 10`.
        const LN_ATANH: &'static [Self];
        /// `(k, m)` with `self = 2^k · m` and `m` in `[√½, √2)`, for positive
        /// normal `self` (anything else gives meaningless values; callers blend).
        ///
        /// Integer operations on the bits, so it vectorises: adding
        /// `bits(1) - bits(√½)` carries into the exponent field exactly when the
        /// mantissa is at least `√2 / 2^k`'s, and adding `bits(√½)` back to the
        /// mantissa field rebuilds `m`.
        fn split_exponent(self) -> (Self, Self);
        /// `2^⌈p/2⌉ + 1` for `p` mantissa digits: Veltkamp's constant, which
        /// splits a float into two halves whose products are exact (Dekker's
        /// exact product, `MulAdd::two_product` without FMA). `a · SPLITTER` must
        /// not overflow.
        const SPLITTER: Self;
    }
}

/// A floating-point element type the layers work on: `f32` or `f64`.
///
/// The trait is sealed: its implementation details are tuned to the two IEEE formats.
pub trait Real: NdFloat + FromPrimitive + internal::Internals {
    /// `0.5`.
    const HALF: Self;
    /// `1.0`.
    const ONE: Self;
    /// `2.0`.
    const TWO: Self;
    /// `3.0`.
    const THREE: Self;
    /// `6.0`.
    const SIX: Self;
    /// Machine epsilon, `2^(1 - mantissa digits)`.
    const EPSILON: Self;
    /// `v` converted from `f64`, rounded to nearest: for named constants in generic code.
    fn lit(v: f64) -> Self;
}

impl Real for f32 {
    const HALF: Self = 0.5;
    const ONE: Self = 1.0;
    const TWO: Self = 2.0;
    const THREE: Self = 3.0;
    const SIX: Self = 6.0;
    const EPSILON: Self = f32::EPSILON;
    #[inline(always)]
    fn lit(v: f64) -> Self {
        v as f32
    }
}

impl internal::Internals for f32 {
    const EXPM1_TAYLOR: &'static [Self] = &[
        1.0,
        1.0 / 2.0,
        1.0 / 6.0,
        1.0 / 24.0,
        1.0 / 120.0,
        1.0 / 720.0,
        1.0 / 5040.0,
    ];
    const EXPM1_CUBIC: &'static [Self] = &[
        0.166_666_66,
        0.041_666_48,
        0.008_333_419,
        0.001_393_324_5,
        0.000_198_241_3,
    ];
    const EXP_CUBIC_SIGMOID: &'static [Self] =
        &[0.166_665_35, 0.041_667_238, 0.008_367_476, 0.001_386_378_7];
    const LOG2_E: Self = std::f32::consts::LOG2_E;
    // 0x3f317200: 15 significant bits, so k·LN2_HI is exact for |k| < 2^9 (we need 150).
    const LN2_HI: Self = f32::from_bits(0x3f31_7200); // 0.693145751953125
    const LN2_LO: Self = f32::from_bits(0x35bfbe8e); // 1.4286068e-6
    // e^-104 = 6.8e-46 < 2^-150 (half the smallest subnormal), so it rounds to 0.
    const EXP_UNDERFLOW: Self = -104.0;
    // e^89 = 4.5e38 > f32::MAX = 3.4e38.
    const EXP_OVERFLOW: Self = 89.0;
    const ROUND_SHIFTER: Self = 12_582_912.0; // 1.5 · 2^23
    const SPLITTER: Self = 4097.0; // 2^12 + 1
    #[inline(always)]
    fn exp2_shifted(shifted: Self) -> Self {
        // ROUND_SHIFTER's bits are 0x4b40_0000: nothing below bit 9 survives `<< 23`.
        f32::from_bits((shifted.to_bits() << 23).wrapping_add(127 << 23))
    }
    const LN_ATANH: &'static [Self] = &[2.0 / 3.0, 2.0 / 5.0, 2.0 / 7.0, 2.0 / 9.0];
    #[inline(always)]
    fn split_exponent(self) -> (Self, Self) {
        const SQRT_HALF: u32 = 0x3f35_04f3; // √½ rounded down, so m < √2 stays below 1.4142135
        let bits = self.to_bits().wrapping_add(1.0f32.to_bits() - SQRT_HALF);
        let k = (bits >> 23) as i32 - 127;
        (k as f32, f32::from_bits((bits & 0x007f_ffff) + SQRT_HALF))
    }
}

impl Real for f64 {
    const HALF: Self = 0.5;
    const ONE: Self = 1.0;
    const TWO: Self = 2.0;
    const THREE: Self = 3.0;
    const SIX: Self = 6.0;
    const EPSILON: Self = f64::EPSILON;
    #[inline(always)]
    fn lit(v: f64) -> Self {
        v
    }
}

/// `1/n!` for `n = 1..=14`: the `f64` Taylor coefficients of `e^r - 1`, of
/// which `EXPM1_TAYLOR` takes the first 13 and `EXPM1_CUBIC` those from `1/3!`.
const F64_RECIPROCAL_FACTORIALS: [f64; 14] = [
    1.0,
    1.0 / 2.0,
    1.0 / 6.0,
    1.0 / 24.0,
    1.0 / 120.0,
    1.0 / 720.0,
    1.0 / 5040.0,
    1.0 / 40320.0,
    1.0 / 362_880.0,
    1.0 / 3_628_800.0,
    1.0 / 39_916_800.0,
    1.0 / 479_001_600.0,
    1.0 / 6_227_020_800.0,
    1.0 / 87_178_291_200.0,
];

impl internal::Internals for f64 {
    const EXPM1_TAYLOR: &'static [Self] = F64_RECIPROCAL_FACTORIALS.split_at(13).0;
    const EXPM1_CUBIC: &'static [Self] = F64_RECIPROCAL_FACTORIALS.split_at(2).1;
    const EXP_CUBIC_SIGMOID: &'static [Self] = Self::EXPM1_CUBIC;
    const LOG2_E: Self = std::f64::consts::LOG2_E;
    // fdlibm's split (0x3fe62e42fee00000): 32 significant bits, exact k·LN2_HI for |k| < 2^20.
    const LN2_HI: Self = f64::from_bits(0x3fe6_2e42_fee0_0000); // 0.6931471803691238
    const LN2_LO: Self = f64::from_bits(0x3dea39ef35793c76); // 1.9082149292705877e-10
    // e^-746 < 2^-1075 (half the smallest subnormal).
    const EXP_UNDERFLOW: Self = -746.0;
    // e^710 > f64::MAX = 1.8e308.
    const EXP_OVERFLOW: Self = 710.0;
    const ROUND_SHIFTER: Self = 6_755_399_441_055_744.0; // 1.5 · 2^52
    const SPLITTER: Self = 134_217_729.0; // 2^27 + 1
    #[inline(always)]
    fn exp2_shifted(shifted: Self) -> Self {
        // ROUND_SHIFTER's bits are 0x4338_0000_0000_0000: nothing below bit 12 survives `<< 52`.
        f64::from_bits((shifted.to_bits() << 52).wrapping_add(1023 << 52))
    }
    const LN_ATANH: &'static [Self] = &[
        2.0 / 3.0,
        2.0 / 5.0,
        2.0 / 7.0,
        2.0 / 9.0,
        2.0 / 11.0,
        2.0 / 13.0,
        2.0 / 15.0,
        2.0 / 17.0,
        2.0 / 19.0,
        2.0 / 21.0,
    ];
    #[inline(always)]
    fn split_exponent(self) -> (Self, Self) {
        const SQRT_HALF: u64 = 0x3fe6_a09e_667f_3bcd;
        let bits = self.to_bits().wrapping_add(1.0f64.to_bits() - SQRT_HALF);
        // The exponent field fits in 11 bits: i32 converts to f64 in vector registers.
        let k = (bits >> 52) as i32 - 1023;
        (
            f64::from(k),
            f64::from_bits((bits & 0x000f_ffff_ffff_ffff) + SQRT_HALF),
        )
    }
}
