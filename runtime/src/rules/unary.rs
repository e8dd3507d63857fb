//! Rules of the unary float methods.
//!
//! Where the derivative is cheapest in terms of the result `y` (e.g. `exp`, `tanh`,
//! `sqrt`), the rule reads `y` instead of `x`, so the forward value is reused.

use crate::{differentiable, Float};

macro_rules! unary_rule {
    // One rule: its trait, and its implementation for floats, whose body reads `ȳ` and
    // the argument by value.
    (@rule $(#[doc = $doc:literal])+ $trait_:ident :: $method:ident ($ybar:ident, $arg:ident) { $($body:tt)* }) => {
        $(#[doc = $doc])+
        #[differentiable(crate = crate, order = 3, higher_order = crate::HigherOrder)]
        pub trait $trait_: Sized {
            $(#[doc = $doc])+
            fn $method($ybar: &Self, $arg: &Self) -> Self;
        }
        #[differentiable(crate = crate, order = 3)]
        impl<F: Float> $trait_ for F {
            #[inline]
            fn $method($ybar: &F, $arg: &F) -> F {
                let $ybar = *$ybar;
                let $arg = *$arg;
                $($body)*
            }
        }
    };
    // Rules whose partial may not be finite: the contribution is ȳ·∂ where ∂ is finite,
    // 0 where ȳ is exactly 0 and ∂ is not, and the exact formula otherwise (∞ or NaN, or
    // a finite value where only ∂ overflows). The test reads a detached ∂, which reads
    // no ȳ: the adjoint chain waits for one multiplication, not for the test. Each
    // formula, ∂ included, stands in its own branch, so the derivatives of the rule
    // (second order) never differentiate through a NaN either; in the rule itself
    // rustc computes ∂ once.
    (guarded = true; $($(#[doc = $doc:literal])+ $trait_:ident :: $method:ident ($ybar:ident, $arg:ident) => $body:expr, partial $partial:expr;)*) => {$(
        unary_rule! { @rule $(#[doc = $doc])+ $trait_::$method($ybar, $arg) {
            if crate::detach($partial).is_finite() {
                $ybar * ($partial)
            } else if $ybar == F::ZERO {
                $ybar * F::ZERO
            } else {
                $body
            }
        } }
    )*};
    (guarded = false; $($(#[doc = $doc:literal])+ $trait_:ident :: $method:ident ($ybar:ident, $arg:ident) => $body:expr;)*) => {$(
        unary_rule! { @rule $(#[doc = $doc])+ $trait_::$method($ybar, $arg) { $body } }
    )*};
}

// Rules whose partial is finite wherever their value is: no guard on these paths.
unary_rule! {
    guarded = false;
    /// d eˣ/dx = eˣ = y.
    Exp::exp_adjoint(ybar, y) => ybar * y;
    /// d 2ˣ/dx = ln 2 · 2ˣ = ln 2 · y.
    Exp2::exp2_adjoint(ybar, y) => ybar * y * F::LN_2;
    /// d(eˣ−1)/dx = eˣ = y + 1.
    ExpM1::exp_m1_adjoint(ybar, y) => ybar * (y + F::ONE);
    /// d sin x/dx = cos x.
    Sin::sin_adjoint(ybar, x) => ybar * x.cos();
    /// d cos x/dx = −sin x.
    Cos::cos_adjoint(ybar, x) => -(ybar * x.sin());
    /// d atan x/dx = 1/(1+x²); for |x| > 1 as u²/(1+u²) with u = 1/x, so that the
    /// derivatives of this rule are 0, not NaN, as x → ±∞ (x·x would meet 0·∞).
    Atan::atan_adjoint(ybar, x) => if x.abs() > F::ONE {
        let u = x.recip();
        ybar * (u * u) / (F::ONE + u * u)
    } else {
        ybar / (F::ONE + x * x)
    };
    /// d sinh x/dx = cosh x.
    Sinh::sinh_adjoint(ybar, x) => ybar * x.cosh();
    /// d cosh x/dx = sinh x.
    Cosh::cosh_adjoint(ybar, x) => ybar * x.sinh();
    /// d tanh x/dx = 1 − tanh²x = 1 − y².
    Tanh::tanh_adjoint(ybar, y) => ybar * (F::ONE - y * y);
    /// d asinh x/dx = 1/√(x²+1): 1/hypot(x, 1) for |x| ≤ 1 (x² would overflow for
    /// |x| > 10¹⁵⁴), and |u|/√(1+u²) with u = 1/x beyond, whose derivatives stay finite
    /// as x → ±∞.
    Asinh::asinh_adjoint(ybar, x) => if x > F::ONE {
        let u = x.recip();
        ybar * u / (F::ONE + u * u).sqrt()
    } else if x < -F::ONE {
        let u = x.recip();
        -(ybar * u / (F::ONE + u * u).sqrt())
    } else {
        ybar / x.hypot(F::ONE)
    };
    /// d|x|/dx = sign x, and 0 at x = 0 (the subgradient PyTorch and JAX use).
    Abs::abs_adjoint(ybar, x) => if x > F::ZERO { ybar } else if x < F::ZERO { -ybar } else { ybar * F::ZERO };
}

// Rules whose partial is not finite at some points where the value is (0 for `√x`,
// ±1 for `asin`) or beyond the domain (a NaN value): a zero ȳ gives a zero
// contribution there (see the notes of `rules`).
unary_rule! {
    guarded = true;
    /// d√x/dx = 1/(2√x) = 1/(2y).
    Sqrt::sqrt_adjoint(ybar, y) => ybar / (F::TWO * y), partial (F::TWO * y).recip();
    /// d∛x/dx = 1/(3∛x²) = 1/(3y²), as u²/3 with u = 1/y: its own derivatives stay
    /// finite as x → ±∞ (y·y would meet 0·∞).
    Cbrt::cbrt_adjoint(ybar, y) => {
        let u = y.recip();
        ybar * u * u / F::from_f64(3.0)
    }, partial {
        let u = y.recip();
        u * u / F::from_f64(3.0)
    };
    /// d ln x/dx = 1/x.
    Ln::ln_adjoint(ybar, x) => ybar / x, partial x.recip();
    /// d ln(1+x)/dx = 1/(1+x).
    Ln1p::ln_1p_adjoint(ybar, x) => ybar / (F::ONE + x), partial (F::ONE + x).recip();
    /// d log₁₀x/dx = 1/(x ln 10).
    Log10::log10_adjoint(ybar, x) => ybar / (x * F::LN_10), partial (x * F::LN_10).recip();
    /// d log₂x/dx = 1/(x ln 2).
    Log2::log2_adjoint(ybar, x) => ybar / (x * F::LN_2), partial (x * F::LN_2).recip();
    /// d tan x/dx = 1 + tan²x = 1 + y².
    Tan::tan_adjoint(ybar, y) => ybar * (F::ONE + y * y), partial F::ONE + y * y;
    /// d asin x/dx = 1/√(1−x²).
    Asin::asin_adjoint(ybar, x) => ybar / (F::ONE - x * x).sqrt(), partial (F::ONE - x * x).sqrt().recip();
    /// d acos x/dx = −1/√(1−x²).
    Acos::acos_adjoint(ybar, x) => -(ybar / (F::ONE - x * x).sqrt()), partial -(F::ONE - x * x).sqrt().recip();
    /// d acosh x/dx = 1/√(x²−1): 1/(√(x−1)·√(x+1)) near 1 (no cancellation), and
    /// u/√(1−u²) with u = 1/x for x > 2 (no overflow; finite derivatives as x → ∞).
    Acosh::acosh_adjoint(ybar, x) => if x > F::TWO {
        let u = x.recip();
        ybar * u / (F::ONE - u * u).sqrt()
    } else {
        ybar / ((x - F::ONE).sqrt() * (x + F::ONE).sqrt())
    }, partial if x > F::TWO {
        let u = x.recip();
        u / (F::ONE - u * u).sqrt()
    } else {
        ((x - F::ONE).sqrt() * (x + F::ONE).sqrt()).recip()
    };
    /// d atanh x/dx = 1/(1−x²) = 1/((1−x)(1+x)) (no cancellation near ±1).
    Atanh::atanh_adjoint(ybar, x) => ybar / ((F::ONE - x) * (F::ONE + x)), partial ((F::ONE - x) * (F::ONE + x)).recip();
    /// d(1/x)/dx = −1/x² = −y².
    Recip::recip_adjoint(ybar, y) => -(ybar * y * y), partial -(y * y);
}

/// `y = x·180/π`: d y/dx = 180/π.
#[differentiable(crate = crate, order = 3, higher_order = crate::HigherOrder)]
pub trait ToDegrees: Sized {
    fn to_degrees_adjoint(ybar: &Self) -> Self;
}

#[differentiable(crate = crate, order = 3)]
impl<F: Float> ToDegrees for F {
    #[inline]
    fn to_degrees_adjoint(ybar: &F) -> F {
        *ybar / F::DEG_PER_RAD
    }
}

/// `y = x·π/180`: d y/dx = π/180.
#[differentiable(crate = crate, order = 3, higher_order = crate::HigherOrder)]
pub trait ToRadians: Sized {
    fn to_radians_adjoint(ybar: &Self) -> Self;
}

#[differentiable(crate = crate, order = 3)]
impl<F: Float> ToRadians for F {
    #[inline]
    fn to_radians_adjoint(ybar: &F) -> F {
        *ybar * F::DEG_PER_RAD
    }
}
