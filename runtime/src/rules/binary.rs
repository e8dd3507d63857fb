//! Rules of the arithmetic operators.

use crate::{differentiable, Float};

/// `y = a * b` on scalars: each factor's adjoint is `ȳ` times the other factor.
#[differentiable(crate = crate, order = 3, higher_order = crate::HigherOrder)]
pub trait ScalarMul: Sized {
    /// ∂(a·b)/∂a · ȳ = ȳ · b (called with `other = b`, and symmetrically for `b`).
    fn mul_adjoint(ybar: &Self, other: &Self) -> Self;
}

#[differentiable(crate = crate, order = 3)]
impl<F: Float> ScalarMul for F {
    #[inline]
    fn mul_adjoint(ybar: &F, other: &F) -> F {
        // Unguarded (see the module notes of `rules`): the hottest rule, and its partial
        // is an operand, finite unless a NaN value was computed.
        *ybar * *other
    }
}

/// `y = a / b` on scalars.
#[differentiable(crate = crate, order = 3, higher_order = crate::HigherOrder)]
pub trait ScalarDiv: Sized {
    /// ∂(a/b)/∂a = 1/b.
    fn div_lhs_adjoint(ybar: &Self, b: &Self) -> Self;
    /// ∂(a/b)/∂b = −a/b² = −y/b.
    fn div_rhs_adjoint(ybar: &Self, b: &Self, y: &Self) -> Self;
}

#[differentiable(crate = crate, order = 3)]
impl<F: Float> ScalarDiv for F {
    #[inline]
    fn div_lhs_adjoint(ybar: &F, b: &F) -> F {
        // ∂ decides, read detached and off the adjoint chain (see `rules`).
        if crate::detach(b.recip()).is_finite() {
            *ybar * (b.recip())
        } else if *ybar == F::ZERO {
            *ybar * F::ZERO
        } else {
            *ybar / *b
        }
    }
    #[inline]
    fn div_rhs_adjoint(ybar: &F, b: &F, y: &F) -> F {
        // ∂ decides, read detached and off the adjoint chain (see `rules`).
        // The sign stays outside: folded into the product it becomes −1/b, a second
        // division beside the 1/b that `div_lhs_adjoint` computes.
        if crate::detach(*y * b.recip()).is_finite() {
            -(*ybar * (*y * b.recip()))
        } else if *ybar == F::ZERO {
            *ybar * F::ZERO
        } else {
            -(*ybar * *y / *b)
        }
    }
}

/// `y = a + b` in general (operands may have different shapes once tensors broadcast).
#[differentiable(crate = crate, order = 3, higher_order = crate::HigherOrder)]
pub trait Add<Rhs = Self>: Sized {
    type Output;
    /// ∂(a+b)/∂a = 1 (reduced to the shape of `a`).
    fn add_lhs_adjoint(ybar: &Self::Output, a: &Self, b: &Rhs) -> Self;
    /// ∂(a+b)/∂b = 1 (reduced to the shape of `b`).
    fn add_rhs_adjoint(ybar: &Self::Output, a: &Self, b: &Rhs) -> Rhs;
}

/// `y = a − b` in general.
#[differentiable(crate = crate, order = 3, higher_order = crate::HigherOrder)]
pub trait Sub<Rhs = Self>: Sized {
    type Output;
    /// ∂(a−b)/∂a = 1.
    fn sub_lhs_adjoint(ybar: &Self::Output, a: &Self, b: &Rhs) -> Self;
    /// ∂(a−b)/∂b = −1.
    fn sub_rhs_adjoint(ybar: &Self::Output, a: &Self, b: &Rhs) -> Rhs;
}

/// `y = a · b` in general.
#[differentiable(crate = crate, order = 3, higher_order = crate::HigherOrder)]
pub trait Mul<Rhs = Self>: Sized {
    type Output;
    /// ∂(a·b)/∂a · ȳ = ȳ · b.
    fn mul_lhs_adjoint(ybar: &Self::Output, a: &Self, b: &Rhs) -> Self;
    /// ∂(a·b)/∂b · ȳ = a · ȳ.
    fn mul_rhs_adjoint(ybar: &Self::Output, a: &Self, b: &Rhs) -> Rhs;
}

/// `y = a / b` in general.
#[differentiable(crate = crate, order = 3, higher_order = crate::HigherOrder)]
pub trait Div<Rhs = Self>: Sized {
    type Output;
    /// ∂(a/b)/∂a = 1/b.
    fn div_lhs_adjoint(ybar: &Self::Output, a: &Self, b: &Rhs) -> Self;
    /// ∂(a/b)/∂b = −a/b².
    fn div_rhs_adjoint(ybar: &Self::Output, a: &Self, b: &Rhs) -> Rhs;
}

/// `y = a % b` (`a − b·trunc(a/b)`), differentiable where `a/b` is not an integer.
#[differentiable(crate = crate, order = 3, higher_order = crate::HigherOrder)]
pub trait Rem<Rhs = Self>: Sized {
    type Output;
    /// ∂(a % b)/∂a = 1.
    fn rem_lhs_adjoint(ybar: &Self::Output, a: &Self, b: &Rhs) -> Self;
    /// ∂(a % b)/∂b = −trunc(a/b).
    fn rem_rhs_adjoint(ybar: &Self::Output, a: &Self, b: &Rhs) -> Rhs;
}

#[differentiable(crate = crate, order = 3)]
impl<F: Float> Add for F {
    type Output = F;
    #[inline]
    fn add_lhs_adjoint(ybar: &F, _a: &F, _b: &F) -> F {
        *ybar
    }
    #[inline]
    fn add_rhs_adjoint(ybar: &F, _a: &F, _b: &F) -> F {
        *ybar
    }
}

#[differentiable(crate = crate, order = 3)]
impl<F: Float> Sub for F {
    type Output = F;
    #[inline]
    fn sub_lhs_adjoint(ybar: &F, _a: &F, _b: &F) -> F {
        *ybar
    }
    #[inline]
    fn sub_rhs_adjoint(ybar: &F, _a: &F, _b: &F) -> F {
        -*ybar
    }
}

#[differentiable(crate = crate, order = 3)]
impl<F: Float> Mul for F {
    type Output = F;
    #[inline]
    fn mul_lhs_adjoint(ybar: &F, _a: &F, b: &F) -> F {
        *ybar * *b
    }
    #[inline]
    fn mul_rhs_adjoint(ybar: &F, a: &F, _b: &F) -> F {
        *a * *ybar
    }
}

#[differentiable(crate = crate, order = 3)]
impl<F: Float> Div for F {
    type Output = F;
    #[inline]
    fn div_lhs_adjoint(ybar: &F, _a: &F, b: &F) -> F {
        *ybar / *b
    }
    #[inline]
    fn div_rhs_adjoint(ybar: &F, a: &F, b: &F) -> F {
        // (a/b)/b rather than a/b²: b² overflows or underflows long before a/b² does.
        -(*ybar * (*a / *b) / *b)
    }
}

#[differentiable(crate = crate, order = 3)]
impl<F: Float> Rem for F {
    type Output = F;
    #[inline]
    fn rem_lhs_adjoint(ybar: &F, _a: &F, _b: &F) -> F {
        *ybar
    }
    #[inline]
    fn rem_rhs_adjoint(ybar: &F, a: &F, b: &F) -> F {
        -(*ybar * (*a / *b).trunc())
    }
}
