//! The scalar float trait that the derivative rules are written against.
//!
//! Implemented for `f32` and `f64`. A `#[differentiable]` function may be generic over
//! `T: Float`; the macro then treats values of type `T` as scalars.

use core::fmt::{Debug, Display};
use core::ops::{Add, AddAssign, Div, DivAssign, Mul, MulAssign, Neg, Rem, Sub, SubAssign};

/// A scalar floating-point type (`f32` or `f64`).
pub trait Float:
    crate::Tangent<Tangent = Self>
    + crate::ZeroTangent
    + HigherOrder
    + crate::Primal<Value = Self>
    + Copy
    + Debug
    + Display
    + Default
    + PartialOrd
    + Send
    + Sync
    + 'static
    + Add<Output = Self>
    + Sub<Output = Self>
    + Mul<Output = Self>
    + Div<Output = Self>
    + Rem<Output = Self>
    + Neg<Output = Self>
    + AddAssign
    + SubAssign
    + MulAssign
    + DivAssign
{
    const ZERO: Self;
    const ONE: Self;
    const TWO: Self;
    const HALF: Self;
    const LN_2: Self;
    const LN_10: Self;
    /// π / 180.
    const DEG_PER_RAD: Self;
    /// Significant bits of the type (24 for `f32`, 53 for `f64`).
    const MANTISSA_DIGITS: u32;

    fn from_f64(x: f64) -> Self;
    fn to_f64(self) -> f64;
    fn from_i32(n: i32) -> Self;

    fn sqrt(self) -> Self;
    fn cbrt(self) -> Self;
    fn exp(self) -> Self;
    fn exp2(self) -> Self;
    fn exp_m1(self) -> Self;
    fn ln(self) -> Self;
    fn ln_1p(self) -> Self;
    fn log10(self) -> Self;
    fn log2(self) -> Self;
    fn sin(self) -> Self;
    fn cos(self) -> Self;
    fn tan(self) -> Self;
    fn asin(self) -> Self;
    fn acos(self) -> Self;
    fn atan(self) -> Self;
    fn sinh(self) -> Self;
    fn cosh(self) -> Self;
    fn tanh(self) -> Self;
    fn asinh(self) -> Self;
    fn acosh(self) -> Self;
    fn atanh(self) -> Self;
    fn abs(self) -> Self;
    fn signum(self) -> Self;
    fn recip(self) -> Self;
    fn floor(self) -> Self;
    fn ceil(self) -> Self;
    fn round(self) -> Self;
    fn trunc(self) -> Self;
    fn fract(self) -> Self;
    fn to_degrees(self) -> Self;
    fn to_radians(self) -> Self;
    fn powi(self, n: i32) -> Self;
    fn powf(self, p: Self) -> Self;
    /// The logarithm in base `base`.
    fn log(self, base: Self) -> Self;
    fn atan2(self, other: Self) -> Self;
    fn hypot(self, other: Self) -> Self;
    fn max(self, other: Self) -> Self;
    fn min(self, other: Self) -> Self;
    fn mul_add(self, a: Self, b: Self) -> Self;
    /// `eˣ` within 1 ulp of [`Float::exp`] (same special values), by range reduction
    /// and a polynomial with no branch or library call, so that loops over it
    /// vectorise. The tensor kernels use it.
    fn exp_vectorizable(self) -> Self;
    /// `tanh x` for the tensor kernels: in f32 with no library call (so loops over
    /// it vectorise) and within 1 ulp of [`Float::tanh`]; in f64 it is `tanh` itself.
    fn tanh_vectorizable(self) -> Self;
    fn clamp(self, lo: Self, hi: Self) -> Self;
    fn is_nan(self) -> bool;
    fn is_finite(self) -> bool;
    fn is_infinite(self) -> bool;
}

macro_rules! impl_float {
    ($t:ident, $exp:ident, $tanh:path) => {
        impl Float for $t {
            const ZERO: Self = 0.0;
            const ONE: Self = 1.0;
            const TWO: Self = 2.0;
            const HALF: Self = 0.5;
            const LN_2: Self = core::$t::consts::LN_2;
            const LN_10: Self = core::$t::consts::LN_10;
            const DEG_PER_RAD: Self = core::$t::consts::PI / 180.0;
            const MANTISSA_DIGITS: u32 = $t::MANTISSA_DIGITS;

            #[inline]
            fn from_f64(x: f64) -> Self {
                x as $t
            }
            #[inline]
            fn to_f64(self) -> f64 {
                self as f64
            }
            #[inline]
            fn from_i32(n: i32) -> Self {
                n as $t
            }
            impl_float!(@unary $t: sqrt cbrt exp exp2 exp_m1 ln ln_1p log10 log2 sin cos tan asin acos atan
                sinh cosh tanh asinh acosh atanh abs signum recip floor ceil round trunc fract to_degrees to_radians);
            #[inline]
            fn powi(self, n: i32) -> Self {
                $t::powi(self, n)
            }
            #[inline]
            fn powf(self, p: Self) -> Self {
                $t::powf(self, p)
            }
            #[inline]
            fn log(self, base: Self) -> Self {
                $t::log(self, base)
            }
            #[inline]
            fn atan2(self, other: Self) -> Self {
                $t::atan2(self, other)
            }
            #[inline]
            fn hypot(self, other: Self) -> Self {
                $t::hypot(self, other)
            }
            #[inline]
            fn max(self, other: Self) -> Self {
                $t::max(self, other)
            }
            #[inline]
            fn min(self, other: Self) -> Self {
                $t::min(self, other)
            }
            #[inline]
            fn mul_add(self, a: Self, b: Self) -> Self {
                $t::mul_add(self, a, b)
            }
            #[inline(always)]
            fn exp_vectorizable(self) -> Self {
                $exp(self)
            }
            #[inline(always)]
            fn tanh_vectorizable(self) -> Self {
                $tanh(self)
            }
            #[inline]
            fn clamp(self, lo: Self, hi: Self) -> Self {
                $t::clamp(self, lo, hi)
            }
            #[inline]
            fn is_nan(self) -> bool {
                $t::is_nan(self)
            }
            #[inline]
            fn is_finite(self) -> bool {
                $t::is_finite(self)
            }
            #[inline]
            fn is_infinite(self) -> bool {
                $t::is_infinite(self)
            }
        }
    };
    (@unary $t:ident: $($m:ident)*) => {
        $(
            #[inline]
            fn $m(self) -> Self {
                $t::$m(self)
            }
        )*
    };
}

impl_float!(f32, exp_f32, tanh_f32);
impl_float!(f64, exp_f64, f64::tanh);

// `eˣ = 2ⁿ·eʳ` with `n = round(x·log₂e)` and `r = x − n·ln 2` (Cody–Waite: `ln 2` split in
// a high part with trailing zeros, so `n·LN2_HI` is exact, and the low remainder). `eʳ`
// with `|r| ≤ ln2/2` is its Taylor polynomial (truncation below 2⁻²⁶ in f32 and 2⁻⁵⁷ in
// f64). `n` is rounded by adding and subtracting 1.5·2^(mantissa bits), and `2ⁿ` is built
// from the exponent bits (`n` is read from the low mantissa bits of the rounding sum) in two halves so results that overflow become ∞ and those that
// underflow become subnormals or 0, as `exp` does. The clamps pass NaN through (both
// comparisons are false), and the polynomial of a NaN is NaN whatever the scale.

#[inline(always)]
fn exp_f32(x: f32) -> f32 {
    const MAGIC: f32 = 12_582_912.0; // 1.5·2²³
    const LN2_HI: f32 = 0.693_359_4;
    const LN2_LO: f32 = -2.121_944_4e-4;
    let x = if x > 89.0 { 89.0 } else { x };
    let x = if x < -104.0 { -104.0 } else { x };
    let t = x * core::f32::consts::LOG2_E + MAGIC;
    let n = t - MAGIC;
    let r = (x - n * LN2_HI) - n * LN2_LO;
    let mut p = 1.0 / 5040.0;
    p = p * r + 1.0 / 720.0;
    p = p * r + 1.0 / 120.0;
    p = p * r + 1.0 / 24.0;
    p = p * r + 1.0 / 6.0;
    p = p * r + 0.5;
    p = p * r + 1.0;
    p = p * r + 1.0;
    // `n` sits in the low mantissa bits of `t` (no float-to-int conversion).
    let ni = t.to_bits() as i32 - MAGIC.to_bits() as i32;
    let n1 = ni >> 1;
    let n2 = ni - n1;
    p * f32::from_bits(((n1 + 127) as u32) << 23) * f32::from_bits(((n2 + 127) as u32) << 23)
}

#[inline(always)]
fn exp_f64(x: f64) -> f64 {
    const MAGIC: f64 = 6_755_399_441_055_744.0; // 1.5·2⁵²
    const LN2_HI: f64 = 6.931_471_803_691_238e-1;
    const LN2_LO: f64 = 1.908_214_929_270_587_7e-10;
    let x = if x > 710.0 { 710.0 } else { x };
    let x = if x < -746.0 { -746.0 } else { x };
    let t = x * core::f64::consts::LOG2_E + MAGIC;
    let n = t - MAGIC;
    let r = (x - n * LN2_HI) - n * LN2_LO;
    let mut p = 1.0 / 6_227_020_800.0;
    for c in [
        1.0 / 479_001_600.0,
        1.0 / 39_916_800.0,
        1.0 / 3_628_800.0,
        1.0 / 362_880.0,
        1.0 / 40_320.0,
        1.0 / 5_040.0,
        1.0 / 720.0,
        1.0 / 120.0,
        1.0 / 24.0,
        1.0 / 6.0,
        0.5,
        1.0,
        1.0,
    ] {
        p = p * r + c;
    }
    let ni = t.to_bits() as i64 - MAGIC.to_bits() as i64;
    let n1 = ni >> 1;
    let n2 = ni - n1;
    p * f64::from_bits(((n1 + 1023) as u64) << 52) * f64::from_bits(((n2 + 1023) as u64) << 52)
}

/// `tanh x = (e²ˣ − 1)/(e²ˣ + 1)`, evaluated in f64 (so the cancellation in `e²ˣ − 1`
/// for small `x` costs nothing at f32 precision) with the vectorisable [`exp_f64`].
/// Below 2⁻¹², `tanh x` rounds to `x` in f32; `|x| > 20` clamps to ±1 (and ±∞ with
/// it); NaN propagates through the clamps and the quotient.
#[inline(always)]
fn tanh_f32(x: f32) -> f32 {
    let w = x as f64;
    let w = if w > 20.0 { 20.0 } else { w };
    let w = if w < -20.0 { -20.0 } else { w };
    let e = exp_f64(2.0 * w);
    let t = ((e - 1.0) / (e + 1.0)) as f32;
    if x.abs() < 1.0 / 4096.0 {
        x
    } else {
        t
    }
}

/// Types whose derivative rules are themselves differentiable: second and higher
/// derivatives (nested `grad!`) go through them. Scalars only; the rules of tensors and
/// matrices are first-order.
#[doc(hidden)]
#[diagnostic::on_unimplemented(
    message = "higher-order derivatives through `{Self}` are not supported",
    label = "a nested `grad!` differentiates this rule again",
    note = "tensors and matrices have first derivatives only: take `grad!`/`backward!` of the scalar function itself, or nest `grad!` over float code"
)]
pub trait HigherOrder {}
impl HigherOrder for f32 {}
impl HigherOrder for f64 {}
