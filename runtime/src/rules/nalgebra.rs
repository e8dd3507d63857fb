//! Rules of nalgebra matrices and vectors (`DMatrix`, `DVector`, `SMatrix`, `SVector`
//! and every other `OMatrix<T, R, C>`), for `T` = `f32` or `f64`.
//!
//! Each rule is written once over generic dimensions: with static dimensions the
//! adjoints live on the stack (no allocation), with `Dyn` ones on the heap. nalgebra's
//! `*` between matrices is the matrix product, so its [`Mul`] rule is the matrix one.
//! Like the tensor rules, these are first-order.
//!
//! The float methods (`exp`, `tanh`, …) have no elementwise rule for matrices on
//! purpose: nalgebra's `exp()` of a square matrix is the matrix exponential, so an
//! elementwise rule under that name would give wrong gradients. The elementwise
//! operations nalgebra has are `abs`, `add_scalar`, `component_mul` and `component_div`.
//!
//! Reading an element (`v[i]`, `m[(i, j)]`) needs no rule: the reverse sweep adds `ȳ`
//! into that element of the matrix's adjoint, as it does for slices.

use crate::differentiable;
use nalgebra::allocator::Allocator;
use nalgebra::{Cholesky, Const, DefaultAllocator, Dim, OMatrix, RealField, Rotation};

use super::{Abs, Add, Div, Mean, Mul, Norm, Sub, Sum, Transpose};
use crate::Float;

/// The element types of differentiable matrices: `f32` and `f64`.
pub trait MatrixScalar: Float + RealField {}

impl<T: Float + RealField> MatrixScalar for T {}

/// A matrix with the dimensions of `x` whose every element is `value`.
fn filled<T: MatrixScalar, R: Dim, C: Dim>(x: &OMatrix<T, R, C>, value: T) -> OMatrix<T, R, C>
where
    DefaultAllocator: Allocator<R, C>,
{
    let (rows, cols) = x.shape_generic();
    OMatrix::from_element_generic(rows, cols, value)
}

// ---- Operators.

impl<T: MatrixScalar, R: Dim, C: Dim> Add for OMatrix<T, R, C>
where
    DefaultAllocator: Allocator<R, C>,
{
    type Output = Self;
    fn add_lhs_adjoint(ybar: &Self, _a: &Self, _b: &Self) -> Self {
        ybar.clone()
    }
    fn add_rhs_adjoint(ybar: &Self, _a: &Self, _b: &Self) -> Self {
        ybar.clone()
    }
}

impl<T: MatrixScalar, R: Dim, C: Dim> Sub for OMatrix<T, R, C>
where
    DefaultAllocator: Allocator<R, C>,
{
    type Output = Self;
    fn sub_lhs_adjoint(ybar: &Self, _a: &Self, _b: &Self) -> Self {
        ybar.clone()
    }
    fn sub_rhs_adjoint(ybar: &Self, _a: &Self, _b: &Self) -> Self {
        -ybar
    }
}

/// The matrix product `y = a·b` (`a` is R×K, `b` is K×C): `ā = ȳ·bᵀ`, `b̄ = aᵀ·ȳ`.
impl<T: MatrixScalar, R: Dim, K: Dim, C: Dim> Mul<OMatrix<T, K, C>> for OMatrix<T, R, K>
where
    DefaultAllocator: Allocator<R, K> + Allocator<K, C> + Allocator<R, C> + Allocator<C, K>,
{
    type Output = OMatrix<T, R, C>;
    fn mul_lhs_adjoint(ybar: &OMatrix<T, R, C>, _a: &Self, b: &OMatrix<T, K, C>) -> Self {
        ybar * b.transpose()
    }
    fn mul_rhs_adjoint(ybar: &OMatrix<T, R, C>, a: &Self, _b: &OMatrix<T, K, C>) -> OMatrix<T, K, C> {
        a.tr_mul(ybar)
    }
}

/// `y = a·s` with a scalar `s`: `ā = ȳ·s`, `s̄ = Σ ȳ⊙a`.
impl<T: MatrixScalar, R: Dim, C: Dim> Mul<T> for OMatrix<T, R, C>
where
    DefaultAllocator: Allocator<R, C>,
{
    type Output = Self;
    fn mul_lhs_adjoint(ybar: &Self, _a: &Self, s: &T) -> Self {
        ybar * *s
    }
    fn mul_rhs_adjoint(ybar: &Self, a: &Self, _s: &T) -> T {
        ybar.dot(a)
    }
}

/// `y = s·b` with a scalar `s`: `s̄ = Σ ȳ⊙b`, `b̄ = s·ȳ`.
impl<T: MatrixScalar, R: Dim, C: Dim> Mul<OMatrix<T, R, C>> for T
where
    DefaultAllocator: Allocator<R, C>,
{
    type Output = OMatrix<T, R, C>;
    fn mul_lhs_adjoint(ybar: &OMatrix<T, R, C>, _s: &T, b: &OMatrix<T, R, C>) -> T {
        ybar.dot(b)
    }
    fn mul_rhs_adjoint(ybar: &OMatrix<T, R, C>, s: &T, _b: &OMatrix<T, R, C>) -> OMatrix<T, R, C> {
        ybar * *s
    }
}

/// `y = a/s` with a scalar `s`: `ā = ȳ/s`, `s̄ = −Σ ȳ⊙a / s²`.
impl<T: MatrixScalar, R: Dim, C: Dim> Div<T> for OMatrix<T, R, C>
where
    DefaultAllocator: Allocator<R, C>,
{
    type Output = Self;
    fn div_lhs_adjoint(ybar: &Self, _a: &Self, s: &T) -> Self {
        ybar / *s
    }
    fn div_rhs_adjoint(ybar: &Self, a: &Self, s: &T) -> T {
        -(ybar.dot(a) / (*s * *s))
    }
}

// ---- Shapes.

/// `y = xᵀ`, dispatched on `ȳ` (R×C): `x̄ = ȳᵀ` (C×R).
impl<T: MatrixScalar, R: Dim, C: Dim> Transpose for OMatrix<T, R, C>
where
    DefaultAllocator: Allocator<R, C> + Allocator<C, R>,
{
    type Input = OMatrix<T, C, R>;
    fn transpose_adjoint(ybar: &Self) -> OMatrix<T, C, R> {
        ybar.transpose()
    }
}

// ---- Products and elementwise operations.

/// `y = a·b = Σᵢ aᵢbᵢ` (`a.dot(&b)`, a scalar): `ā = ȳ·b`, `b̄ = ȳ·a`.
pub trait Dot: Sized {
    /// The type of the result.
    type Output;
    /// `ā = ȳ·b`.
    fn dot_lhs_adjoint(ybar: &Self::Output, b: &Self) -> Self;
    /// `b̄ = ȳ·a`.
    fn dot_rhs_adjoint(ybar: &Self::Output, a: &Self) -> Self;
}

impl<T: MatrixScalar, R: Dim, C: Dim> Dot for OMatrix<T, R, C>
where
    DefaultAllocator: Allocator<R, C>,
{
    type Output = T;
    fn dot_lhs_adjoint(ybar: &T, b: &Self) -> Self {
        b * *ybar
    }
    fn dot_rhs_adjoint(ybar: &T, a: &Self) -> Self {
        a * *ybar
    }
}

/// `y = a ⊙ b` (`a.component_mul(&b)`): `ā = ȳ ⊙ b`, `b̄ = ȳ ⊙ a`.
pub trait ComponentMul: Sized {
    /// `ā = ȳ ⊙ b`.
    fn component_mul_lhs_adjoint(ybar: &Self, b: &Self) -> Self;
    /// `b̄ = ȳ ⊙ a`.
    fn component_mul_rhs_adjoint(ybar: &Self, a: &Self) -> Self;
}

impl<T: MatrixScalar, R: Dim, C: Dim> ComponentMul for OMatrix<T, R, C>
where
    DefaultAllocator: Allocator<R, C>,
{
    fn component_mul_lhs_adjoint(ybar: &Self, b: &Self) -> Self {
        ybar.component_mul(b)
    }
    fn component_mul_rhs_adjoint(ybar: &Self, a: &Self) -> Self {
        ybar.component_mul(a)
    }
}

/// `y = a ⊘ b` (`a.component_div(&b)`): `ā = ȳ ⊘ b`, `b̄ = −ȳ ⊙ a ⊘ b² = −ȳ ⊙ y ⊘ b`.
pub trait ComponentDiv: Sized {
    /// `ā = ȳ ⊘ b`.
    fn component_div_lhs_adjoint(ybar: &Self, b: &Self) -> Self;
    /// `b̄ = −ȳ ⊙ y ⊘ b` (reads the result `y` rather than `a`).
    fn component_div_rhs_adjoint(ybar: &Self, b: &Self, y: &Self) -> Self;
}

impl<T: MatrixScalar, R: Dim, C: Dim> ComponentDiv for OMatrix<T, R, C>
where
    DefaultAllocator: Allocator<R, C>,
{
    fn component_div_lhs_adjoint(ybar: &Self, b: &Self) -> Self {
        ybar.component_div(b)
    }
    fn component_div_rhs_adjoint(ybar: &Self, b: &Self, y: &Self) -> Self {
        -ybar.component_mul(y).component_div(b)
    }
}

/// `y = x + s` elementwise with a scalar `s` (`x.add_scalar(s)`): `x̄ = ȳ` (no rule
/// needed), `s̄ = Σ ȳ`. Dispatched on `ȳ`.
pub trait AddScalar: Sized {
    /// The type of the scalar.
    type Scalar;
    /// `s̄ = Σ ȳ`.
    fn add_scalar_scalar_adjoint(ybar: &Self) -> Self::Scalar;
}

impl<T: MatrixScalar, R: Dim, C: Dim> AddScalar for OMatrix<T, R, C>
where
    DefaultAllocator: Allocator<R, C>,
{
    type Scalar = T;
    fn add_scalar_scalar_adjoint(ybar: &Self) -> T {
        ybar.sum()
    }
}

/// `y = |x|` elementwise (`x.abs()`): the scalar rule of [`Abs`] on every element
/// (sign x, and 0 at x = 0).
impl<T: MatrixScalar, R: Dim, C: Dim> Abs for OMatrix<T, R, C>
where
    DefaultAllocator: Allocator<R, C>,
{
    fn abs_adjoint(ybar: &Self, x: &Self) -> Self {
        ybar.zip_map(x, |g, x| <T as Abs>::abs_adjoint(&g, &x))
    }
}

// ---- Reductions.

/// `y = Σ x` (`x.sum()`): every element gets `ȳ`.
impl<T: MatrixScalar, R: Dim, C: Dim> Sum for OMatrix<T, R, C>
where
    DefaultAllocator: Allocator<R, C>,
{
    type Output = T;
    fn sum_adjoint(ybar: &T, x: &Self) -> Self {
        filled(x, *ybar)
    }
}

/// `y = mean x` (`x.mean()`): every element gets `ȳ/n`.
impl<T: MatrixScalar, R: Dim, C: Dim> Mean for OMatrix<T, R, C>
where
    DefaultAllocator: Allocator<R, C>,
{
    type Output = T;
    fn mean_adjoint(ybar: &T, x: &Self) -> Self {
        filled(x, *ybar / <T as Float>::from_f64(x.len() as f64))
    }
}

/// `y = ‖x‖₂` (the Frobenius norm of a matrix): `x̄ = ȳ·x/y`, and 0 at `x = 0`.
impl<T: MatrixScalar, R: Dim, C: Dim> Norm for OMatrix<T, R, C>
where
    DefaultAllocator: Allocator<R, C>,
{
    type Norm = T;
    fn norm_adjoint(ybar: &T, x: &Self, y: &T) -> Self {
        let scale = if *y == <T as Float>::ZERO { <T as Float>::ZERO } else { *ybar / *y };
        x * scale
    }
}

/// `y = ‖x‖₂² = Σ xᵢ²` (`x.norm_squared()`): `x̄ = 2ȳ·x`.
pub trait NormSquared: Sized {
    /// The type of the result.
    type Output;
    /// `x̄ = 2ȳ·x`.
    fn norm_squared_adjoint(ybar: &Self::Output, x: &Self) -> Self;
}

impl<T: MatrixScalar, R: Dim, C: Dim> NormSquared for OMatrix<T, R, C>
where
    DefaultAllocator: Allocator<R, C>,
{
    type Output = T;
    fn norm_squared_adjoint(ybar: &T, x: &Self) -> Self {
        x * (<T as Float>::TWO * *ybar)
    }
}

// ---- Rotations.

/// `y = R·b` for a rotation `R` (its matrix) and a D×C matrix or vector `b`:
/// `R̄ = ȳ·bᵀ` (held in a rotation, see the `Tangent` of rotations), `b̄ = Rᵀ·ȳ`.
impl<T: MatrixScalar, const D: usize, C: Dim> Mul<OMatrix<T, Const<D>, C>> for Rotation<T, D>
where
    DefaultAllocator: Allocator<Const<D>, C> + Allocator<C, Const<D>>,
{
    type Output = OMatrix<T, Const<D>, C>;
    fn mul_lhs_adjoint(ybar: &OMatrix<T, Const<D>, C>, _a: &Self, b: &OMatrix<T, Const<D>, C>) -> Self {
        Rotation::from_matrix_unchecked(ybar * b.transpose())
    }
    fn mul_rhs_adjoint(
        ybar: &OMatrix<T, Const<D>, C>,
        a: &Self,
        _b: &OMatrix<T, Const<D>, C>,
    ) -> OMatrix<T, Const<D>, C> {
        a.matrix().tr_mul(ybar)
    }
}

/// `R = Rotation2::new(θ)`, the matrix [[cos θ, −sin θ], [sin θ, cos θ]]:
/// `θ̄ = Σ R̄ᵢⱼ ∂Rᵢⱼ/∂θ = −sin θ (R̄₀₀ + R̄₁₁) + cos θ (R̄₁₀ − R̄₀₁)`.
#[differentiable(crate = crate, order = 3, higher_order = crate::HigherOrder)]
pub trait Rotation2New: Sized {
    fn rotation2_new_adjoint(ybar: &Rotation<Self, 2>, angle: &Self) -> (Self,);
}

impl<T: MatrixScalar> Rotation2New for T {
    fn rotation2_new_adjoint(ybar: &Rotation<T, 2>, angle: &T) -> (T,) {
        let (s, c) = (Float::sin(*angle), Float::cos(*angle));
        let m = ybar.matrix();
        (-s * (m[(0, 0)] + m[(1, 1)]) + c * (m[(1, 0)] - m[(0, 1)]),)
    }
}

/// `DMatrix::from_vec(rows, cols, values)` and `DVector::from_vec(values)`: the values'
/// adjoint is the result's, read in nalgebra's column-major order (the order `values`
/// fills it in); the dimensions have none.
pub trait FromVec<T> {
    fn matrix_from_vec_adjoint(ybar: &Self, rows: &usize, cols: &usize, values: &[T]) -> ((), (), Vec<T>);
    fn vector_from_vec_adjoint(ybar: &Self, values: &[T]) -> (Vec<T>,);
}

impl<T: MatrixScalar, R: Dim, C: Dim> FromVec<T> for OMatrix<T, R, C>
where
    DefaultAllocator: Allocator<R, C>,
{
    fn matrix_from_vec_adjoint(ybar: &Self, _rows: &usize, _cols: &usize, _values: &[T]) -> ((), (), Vec<T>) {
        ((), (), ybar.as_slice().to_vec())
    }
    fn vector_from_vec_adjoint(ybar: &Self, _values: &[T]) -> (Vec<T>,) {
        (ybar.as_slice().to_vec(),)
    }
}

// ---- Cholesky (`m.cholesky()`, its `solve` and its factor `l()`), in closed form.
//
// A decomposition's gradient is held in a `Cholesky` value (the operand-typed convention)
// whose matrix is Σ̄, the symmetric gradient with respect to the decomposed matrix Σ.
// nalgebra reads only the lower triangle of the matrix it decomposes, so the gradient of
// that matrix's entries is 2Σ̄ᵢⱼ below the diagonal, Σ̄ᵢᵢ on it and 0 above (for a
// matrix built symmetric, e.g. a kernel, the sum over its entries is the same either way).

/// `Option` of a decomposition (`m.cholesky()`), taken apart by `expect`/`unwrap`.
#[differentiable(crate = crate, order = 3, higher_order = crate::HigherOrder)]
pub trait Unwrap: Sized {
    type Inner;
    fn unwrap_adjoint(ybar: &Self::Inner, x: &Self) -> Self;
    fn expect_adjoint(ybar: &Self::Inner, x: &Self) -> Self;
}

impl<T: Clone> Unwrap for Option<T> {
    type Inner = T;
    fn unwrap_adjoint(ybar: &T, _x: &Self) -> Self {
        Some(ybar.clone())
    }
    fn expect_adjoint(ybar: &T, _x: &Self) -> Self {
        Some(ybar.clone())
    }
}

/// `y = m.cholesky()`: the matrix's gradient from the decomposition's Σ̄ (see above).
#[differentiable(crate = crate, order = 3, higher_order = crate::HigherOrder)]
pub trait CholeskyOf: Sized {
    type Decomposition;
    fn cholesky_adjoint(ybar: &Option<Self::Decomposition>, m: &Self) -> Self;
}

impl<T: MatrixScalar, D: Dim> CholeskyOf for OMatrix<T, D, D>
where
    DefaultAllocator: Allocator<D, D>,
{
    type Decomposition = Cholesky<T, D>;
    fn cholesky_adjoint(ybar: &Option<Cholesky<T, D>>, m: &Self) -> Self {
        let Some(sigma_bar) = ybar else { return Self::zeros_generic(m.shape_generic().0, m.shape_generic().1) };
        let s = sigma_bar.l_dirty();
        let mut out = s.clone() * T::TWO;
        out.fill_upper_triangle(T::ZERO, 1);
        for i in 0..out.nrows() {
            out[(i, i)] = s[(i, i)];
        }
        out
    }
}

/// Σ̄ contributions of the decomposition's uses.
#[differentiable(crate = crate, order = 3, higher_order = crate::HigherOrder)]
pub trait CholeskyUse<B>: Sized {
    /// `x = chol.solve(b)` (x = Σ⁻¹b): Σ̄ = −sym(Σ⁻¹x̄ xᵀ).
    fn solve_decomposition_adjoint(ybar: &B, chol: &Self, x: &B) -> Self;
    /// `x = chol.solve(b)`: b̄ = Σ⁻¹x̄.
    fn solve_rhs_adjoint(ybar: &B, chol: &Self) -> B;
    /// `l = chol.l()`: Σ̄ = sym(L⁻ᵀ Φ(Lᵀ L̄) L⁻¹), Φ the lower triangle with half the
    /// diagonal (Murray, "Differentiation of the Cholesky decomposition", 2016).
    fn l_adjoint(ybar: &B, chol: &Self) -> Self;
}

impl<T: MatrixScalar, D: Dim, C: Dim> CholeskyUse<OMatrix<T, D, C>> for Cholesky<T, D>
where
    DefaultAllocator: Allocator<D, D> + Allocator<D, C> + Allocator<C, D>,
{
    fn solve_decomposition_adjoint(ybar: &OMatrix<T, D, C>, chol: &Self, x: &OMatrix<T, D, C>) -> Self {
        let b_bar = chol.solve(ybar);
        let g = &b_bar * x.transpose();
        Cholesky::pack_dirty(symmetric_part(&g) * -T::ONE)
    }
    fn solve_rhs_adjoint(ybar: &OMatrix<T, D, C>, chol: &Self) -> OMatrix<T, D, C> {
        chol.solve(ybar)
    }
    fn l_adjoint(ybar: &OMatrix<T, D, C>, chol: &Self) -> Self {
        // `l()` is D×D: the rule is used with C = D.
        let l = chol.l();
        let (rows, cols) = ybar.shape_generic();
        assert_eq!(rows.value(), cols.value(), "adjoint: the factor of a Cholesky decomposition is square");
        let l_bar = OMatrix::<T, D, D>::from_iterator_generic(rows, l.shape_generic().1, ybar.iter().cloned());
        let mut phi = l.tr_mul(&l_bar);
        phi.fill_upper_triangle(T::ZERO, 1);
        let half = T::HALF;
        for i in 0..phi.nrows() {
            phi[(i, i)] *= half;
        }
        // L⁻ᵀ Φ L⁻¹: two triangular solves.
        let left = l.tr_solve_lower_triangular(&phi).expect("a Cholesky factor is invertible");
        let both = l.tr_solve_lower_triangular(&left.transpose()).expect("a Cholesky factor is invertible");
        Cholesky::pack_dirty(symmetric_part(&both.transpose()))
    }
}

/// ½(A + Aᵀ).
fn symmetric_part<T: MatrixScalar, D: Dim>(a: &OMatrix<T, D, D>) -> OMatrix<T, D, D>
where
    DefaultAllocator: Allocator<D, D>,
{
    (a + a.transpose()) * T::HALF
}

/// `d = m.diagonal()`: m̄ is the diagonal matrix of d̄.
#[differentiable(crate = crate, order = 3, higher_order = crate::HigherOrder)]
pub trait Diagonal: Sized {
    type Diag;
    fn diagonal_adjoint(ybar: &Self::Diag, m: &Self) -> Self;
}

impl<T: MatrixScalar, D: Dim> Diagonal for OMatrix<T, D, D>
where
    DefaultAllocator: Allocator<D, D> + Allocator<D, nalgebra::U1>,
{
    type Diag = OMatrix<T, D, nalgebra::U1>;
    fn diagonal_adjoint(ybar: &OMatrix<T, D, nalgebra::U1>, m: &Self) -> Self {
        let (rows, cols) = m.shape_generic();
        let mut out = Self::zeros_generic(rows, cols);
        for i in 0..out.nrows().min(ybar.nrows()) {
            out[(i, i)] = ybar[i];
        }
        out
    }
}
