//! Rules of the float methods with several operands, and of casts.

use crate::{detach, differentiable, Float};

/// `y = xⁿ` with an integer exponent.
#[differentiable(crate = crate, order = 3, higher_order = crate::HigherOrder)]
pub trait Powi: Sized {
    /// d xⁿ/dx = n·xⁿ⁻¹.
    fn powi_adjoint(ybar: &Self, x: &Self, n: &i32) -> Self;
}

#[differentiable(crate = crate, order = 3)]
impl<F: Float> Powi for F {
    #[inline]
    fn powi_adjoint(ybar: &F, x: &F, n: &i32) -> F {
        let n = *n;
        if n == 0 {
            // x⁰ = 1 everywhere (0⁰ included): every derivative is 0, also at x = 0
            // where n·x⁻¹ would be 0·∞.
            *ybar * F::ZERO
        } else if n == i32::MIN {
            // n − 1 is not an `i32`.
            *ybar * F::from_i32(n) * x.powf(F::from_f64(-2_147_483_649.0))
        } else if n >= 1 {
            // xⁿ⁻¹ is finite wherever x is: no guard on this hot path.
            *ybar * F::from_i32(n) * x.powi(n - 1)
        } else {
            // ∂ decides, read detached and off the adjoint chain (see `rules`).
            if crate::detach(F::from_i32(n) * x.powi(n - 1)).is_finite() {
                *ybar * (F::from_i32(n) * x.powi(n - 1))
            } else if *ybar == F::ZERO {
                *ybar * F::ZERO
            } else {
                *ybar * F::from_i32(n) * x.powi(n - 1)
            }
        }
    }
}

/// `y = xᵖ` with a float exponent.
#[differentiable(crate = crate, order = 3, higher_order = crate::HigherOrder)]
pub trait Powf<P = Self>: Sized {
    /// ∂xᵖ/∂x = p·xᵖ⁻¹ (at x ≤ 0 with an integer p, by `powi`, so that every
    /// derivative of order k is exact at 0: k! at k = p and 0 otherwise, where
    /// `p·xᵖ⁻¹` by `powf` would give 0·∞).
    fn powf_base_adjoint(ybar: &Self, x: &Self, p: &P) -> Self;
    /// ∂xᵖ/∂p = xᵖ·ln x = y·ln x (0 where y = 0, the limit for x → 0⁺ and p > 0).
    fn powf_exponent_adjoint(ybar: &Self, x: &Self, p: &P, y: &Self) -> P;
}

#[differentiable(crate = crate, order = 3)]
impl<F: Float> Powf for F {
    #[inline]
    fn powf_base_adjoint(ybar: &F, x: &F, p: &F) -> F {
        let integer = *p == p.trunc() && p.abs() <= F::from_f64(2_147_483_647.0);
        if *x <= F::ZERO && integer {
            // 0ᵖ⁻¹ by `powf` is ∞ for p = 0 (first derivative, 0·∞), and the
            // derivatives of `powf` reach 0⁻¹ the same way at orders past p; `powi`
            // has exact derivatives at 0 for every integer exponent. Below 0 (where
            // only integer exponents give a real power) `powi` also keeps ln x, NaN
            // there, out of the derivatives of this rule with respect to p, which a
            // third derivative in x would otherwise multiply by a zero seed.
            let n = F::to_f64(detach(*p)) as i32;
            if n == 0 {
                *ybar * F::ZERO
            } else {
                *ybar * *p * x.powi(n - 1)
            }
        } else {
            // ∂ decides, read detached and off the adjoint chain (see `rules`).
            if crate::detach(*p * x.powf(*p - F::ONE)).is_finite() {
                *ybar * (*p * x.powf(*p - F::ONE))
            } else if *ybar == F::ZERO {
                *ybar * F::ZERO
            } else {
                *ybar * *p * x.powf(*p - F::ONE)
            }
        }
    }
    #[inline]
    fn powf_exponent_adjoint(ybar: &F, x: &F, _p: &F, y: &F) -> F {
        if *y == F::ZERO {
            *ybar * F::ZERO
        } else {
            // ∂ decides, read detached and off the adjoint chain (see `rules`).
            if crate::detach(*y * x.ln()).is_finite() {
                *ybar * (*y * x.ln())
            } else if *ybar == F::ZERO {
                *ybar * F::ZERO
            } else {
                *ybar * *y * x.ln()
            }
        }
    }
}

/// `y = atan2(a, b)` (the angle of the point `(b, a)`).
#[differentiable(crate = crate, order = 3, higher_order = crate::HigherOrder)]
pub trait Atan2: Sized {
    /// ∂atan2(a, b)/∂a = b/(a²+b²), computed as (b/r)/r with r = hypot(a, b) so that
    /// a²+b² does not overflow (or underflow) where the derivative is representable.
    fn atan2_lhs_adjoint(ybar: &Self, a: &Self, b: &Self) -> Self;
    /// ∂atan2(a, b)/∂b = −a/(a²+b²), likewise.
    fn atan2_rhs_adjoint(ybar: &Self, a: &Self, b: &Self) -> Self;
}

#[differentiable(crate = crate, order = 3)]
impl<F: Float> Atan2 for F {
    #[inline]
    fn atan2_lhs_adjoint(ybar: &F, a: &F, b: &F) -> F {
        let r = a.hypot(*b);
        // ∂ decides, read detached and off the adjoint chain (see `rules`).
        if crate::detach((*b / r) / r).is_finite() {
            *ybar * ((*b / r) / r)
        } else if *ybar == F::ZERO {
            *ybar * F::ZERO
        } else {
            *ybar * (*b / r) / r
        }
    }
    #[inline]
    fn atan2_rhs_adjoint(ybar: &F, a: &F, b: &F) -> F {
        let r = a.hypot(*b);
        // ∂ decides, read detached and off the adjoint chain (see `rules`).
        if crate::detach(-((*a / r) / r)).is_finite() {
            *ybar * (-((*a / r) / r))
        } else if *ybar == F::ZERO {
            *ybar * F::ZERO
        } else {
            -(*ybar * (*a / r) / r)
        }
    }
}

/// `y = log_b x = ln x / ln b` (`x.log(b)`).
#[differentiable(crate = crate, order = 3, higher_order = crate::HigherOrder)]
pub trait Log: Sized {
    /// ∂y/∂x = 1/(x·ln b), as (1/x)/ln b: its own derivatives stay finite (0) as
    /// x → ∞, where 1/x² would meet ∞/∞.
    fn log_value_adjoint(ybar: &Self, x: &Self, b: &Self) -> Self;
    /// ∂y/∂b = −ln x/(b·ln²b) = −y/(b·ln b).
    fn log_base_adjoint(ybar: &Self, b: &Self, y: &Self) -> Self;
}

#[differentiable(crate = crate, order = 3)]
impl<F: Float> Log for F {
    #[inline]
    fn log_value_adjoint(ybar: &F, x: &F, b: &F) -> F {
        // ∂ decides, read detached and off the adjoint chain (see `rules`).
        if crate::detach(x.recip() / b.ln()).is_finite() {
            *ybar * (x.recip() / b.ln())
        } else if *ybar == F::ZERO {
            *ybar * F::ZERO
        } else {
            *ybar * x.recip() / b.ln()
        }
    }
    #[inline]
    fn log_base_adjoint(ybar: &F, b: &F, y: &F) -> F {
        // ∂ decides, read detached and off the adjoint chain (see `rules`).
        if crate::detach(-(*y / (*b * b.ln()))).is_finite() {
            *ybar * (-(*y / (*b * b.ln())))
        } else if *ybar == F::ZERO {
            *ybar * F::ZERO
        } else {
            -(*ybar * *y / (*b * b.ln()))
        }
    }
}

/// `y = √(a²+b²)`.
#[differentiable(crate = crate, order = 3, higher_order = crate::HigherOrder)]
pub trait Hypot: Sized {
    /// ∂y/∂a = a/y, and 0 at the origin (the subgradient, as `abs` at 0: hypot(a, 0)
    /// is |a|), where a/y would be 0/0.
    fn hypot_lhs_adjoint(ybar: &Self, a: &Self, y: &Self) -> Self;
    /// ∂y/∂b = b/y, and 0 at the origin.
    fn hypot_rhs_adjoint(ybar: &Self, b: &Self, y: &Self) -> Self;
}

#[differentiable(crate = crate, order = 3)]
impl<F: Float> Hypot for F {
    #[inline]
    fn hypot_lhs_adjoint(ybar: &F, a: &F, y: &F) -> F {
        if *y == F::ZERO {
            *ybar * F::ZERO
        } else {
            *ybar * *a / *y
        }
    }
    #[inline]
    fn hypot_rhs_adjoint(ybar: &F, b: &F, y: &F) -> F {
        if *y == F::ZERO {
            *ybar * F::ZERO
        } else {
            *ybar * *b / *y
        }
    }
}

/// `y = max(a, b)`: the gradient goes to the larger operand, split evenly on a tie.
#[differentiable(crate = crate, order = 3, higher_order = crate::HigherOrder)]
pub trait Max: Sized {
    fn max_lhs_adjoint(ybar: &Self, a: &Self, b: &Self) -> Self;
    fn max_rhs_adjoint(ybar: &Self, a: &Self, b: &Self) -> Self;
}

#[differentiable(crate = crate, order = 3)]
impl<F: Float> Max for F {
    #[inline]
    fn max_lhs_adjoint(ybar: &F, a: &F, b: &F) -> F {
        // `max` returns the operand that is not NaN: all of the gradient goes there.
        if *a > *b || b.is_nan() {
            *ybar
        } else if *a < *b || a.is_nan() {
            *ybar * F::ZERO
        } else {
            *ybar * F::HALF
        }
    }
    #[inline]
    fn max_rhs_adjoint(ybar: &F, a: &F, b: &F) -> F {
        if *b > *a || a.is_nan() {
            *ybar
        } else if *b < *a || b.is_nan() {
            *ybar * F::ZERO
        } else {
            *ybar * F::HALF
        }
    }
}

/// `y = min(a, b)`: the gradient goes to the smaller operand, split evenly on a tie.
#[differentiable(crate = crate, order = 3, higher_order = crate::HigherOrder)]
pub trait Min: Sized {
    fn min_lhs_adjoint(ybar: &Self, a: &Self, b: &Self) -> Self;
    fn min_rhs_adjoint(ybar: &Self, a: &Self, b: &Self) -> Self;
}

#[differentiable(crate = crate, order = 3)]
impl<F: Float> Min for F {
    #[inline]
    fn min_lhs_adjoint(ybar: &F, a: &F, b: &F) -> F {
        // `min` returns the operand that is not NaN: all of the gradient goes there.
        if *a < *b || b.is_nan() {
            *ybar
        } else if *a > *b || a.is_nan() {
            *ybar * F::ZERO
        } else {
            *ybar * F::HALF
        }
    }
    #[inline]
    fn min_rhs_adjoint(ybar: &F, a: &F, b: &F) -> F {
        if *b < *a || a.is_nan() {
            *ybar
        } else if *b > *a || b.is_nan() {
            *ybar * F::ZERO
        } else {
            *ybar * F::HALF
        }
    }
}

/// `y = x·a + b` (fused multiply-add).
#[differentiable(crate = crate, order = 3, higher_order = crate::HigherOrder)]
pub trait MulAdd: Sized {
    /// ∂y/∂x = a.
    fn mul_add_self_adjoint(ybar: &Self, a: &Self) -> Self;
    /// ∂y/∂a = x.
    fn mul_add_factor_adjoint(ybar: &Self, x: &Self) -> Self;
    /// ∂y/∂b = 1.
    fn mul_add_addend_adjoint(ybar: &Self, b: &Self) -> Self;
}

#[differentiable(crate = crate, order = 3)]
impl<F: Float> MulAdd for F {
    #[inline]
    fn mul_add_self_adjoint(ybar: &F, a: &F) -> F {
        // ∂ decides, read detached and off the adjoint chain (see `rules`).
        if crate::detach(*a).is_finite() {
            *ybar * (*a)
        } else if *ybar == F::ZERO {
            *ybar * F::ZERO
        } else {
            *ybar * *a
        }
    }
    #[inline]
    fn mul_add_factor_adjoint(ybar: &F, x: &F) -> F {
        // ∂ decides, read detached and off the adjoint chain (see `rules`).
        if crate::detach(*x).is_finite() {
            *ybar * (*x)
        } else if *ybar == F::ZERO {
            *ybar * F::ZERO
        } else {
            *ybar * *x
        }
    }
    #[inline]
    fn mul_add_addend_adjoint(ybar: &F, _b: &F) -> F {
        *ybar
    }
}

/// `y = clamp(x, lo, hi)`: the gradient goes to whichever of the three is returned.
#[differentiable(crate = crate, order = 3, higher_order = crate::HigherOrder)]
pub trait Clamp: Sized {
    fn clamp_value_adjoint(ybar: &Self, x: &Self, lo: &Self, hi: &Self) -> Self;
    fn clamp_min_adjoint(ybar: &Self, x: &Self, lo: &Self) -> Self;
    fn clamp_max_adjoint(ybar: &Self, x: &Self, hi: &Self) -> Self;
}

#[differentiable(crate = crate, order = 3)]
impl<F: Float> Clamp for F {
    #[inline]
    fn clamp_value_adjoint(ybar: &F, x: &F, lo: &F, hi: &F) -> F {
        if *x < *lo || *x > *hi {
            *ybar * F::ZERO
        } else {
            *ybar
        }
    }
    #[inline]
    fn clamp_min_adjoint(ybar: &F, x: &F, lo: &F) -> F {
        if *x < *lo {
            *ybar
        } else {
            *ybar * F::ZERO
        }
    }
    #[inline]
    fn clamp_max_adjoint(ybar: &F, x: &F, hi: &F) -> F {
        if *x > *hi {
            *ybar
        } else {
            *ybar * F::ZERO
        }
    }
}

/// `y = x as Y` between float types: the adjoint is cast back.
#[differentiable(crate = crate, order = 3, higher_order = crate::HigherOrder)]
pub trait Cast<Y>: Sized {
    fn cast_adjoint(ybar: &Y, x: &Self) -> Self;
}

/// `y = x as Y` where the macro cannot see the type of `x` (a field of a struct,
/// `p.degree as f64`): a float's adjoint is cast back, an integer has none (`()`, the
/// gradient type of an integer field).
#[differentiable(crate = crate, order = 3, higher_order = crate::HigherOrder)]
pub trait CastField<Y>: Sized {
    type Adjoint;
    fn cast_field_adjoint(ybar: &Y, x: &Self) -> Self::Adjoint;
}

// Between floats both rules cast the adjoint back.
macro_rules! cast_rule {
    ($($from:ty => $to:ty),*) => {$(
        #[differentiable(crate = crate, order = 3)]
        impl Cast<$to> for $from {
            #[inline]
            fn cast_adjoint(ybar: &$to, _x: &$from) -> $from {
                *ybar as $from
            }
        }

        #[differentiable(crate = crate, order = 3)]
        impl CastField<$to> for $from {
            type Adjoint = $from;
            #[inline]
            fn cast_field_adjoint(ybar: &$to, _x: &$from) -> $from {
                *ybar as $from
            }
        }
    )*};
}
cast_rule!(f32 => f32, f32 => f64, f64 => f32, f64 => f64);

macro_rules! cast_int_field_rule {
    ($($from:ty),*) => {$(
        impl<Y> CastField<Y> for $from {
            type Adjoint = ();
            #[inline]
            fn cast_field_adjoint(_ybar: &Y, _x: &$from) {}
        }
    )*};
}
cast_int_field_rule!(usize, isize, u8, u16, u32, u64, i8, i16, i32, i64, bool);

/// Buffers that must be as long as each other (`u = next;`, `y = step(&y, dt);`): a
/// panic that names both lengths otherwise.
pub trait Lengths {
    fn assert_same(assigned: &Self, source: &Self);
}

impl Lengths for usize {
    #[inline]
    #[track_caller]
    fn assert_same(assigned: &usize, source: &usize) {
        if assigned != source {
            lengths_differ(*assigned, *source);
        }
    }
}

#[cold]
#[inline(never)]
#[track_caller]
fn lengths_differ(assigned: usize, source: usize) -> ! {
    panic!(
        "adjoint: a buffer of length {assigned} is assigned a buffer of length {source}; a buffer keeps its length \
         (write its elements, or bind the new value to a new name)"
    )
}
