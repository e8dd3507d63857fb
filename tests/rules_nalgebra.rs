//! Every nalgebra derivative rule against central finite differences in `f64`, over
//! random sizes and values (fixed proptest seed), for dynamic (`DMatrix`, `DVector`) and
//! static (`SMatrix`, `SVector`) dimensions.
//!
//! A function with a matrix result is checked through its vector-Jacobian product:
//! `vjp!(f)(x, c)` against central differences of `x ↦ ⟨f(x), c⟩` for a random cotangent
//! `c`. Scalar results go through `grad!`. The compositions (least squares, a quadratic
//! form, a static two-layer function, a matrix power in a loop) are also checked
//! against their analytic gradients. The Cholesky decomposition's rules (its `solve`, its
//! factor, the log-determinant from the factor's diagonal) are checked entry by entry
//! (the decomposition reads the lower triangle: the upper one has no gradient) and in a
//! Gaussian-process likelihood against its closed form. An `f32` smoke test and the
//! conversions between tensors and nalgebra types close the file.

// The functions under test are written the way users write numeric code; `vjp!(f)` is
// wrapped in closures to read the same for every property.
#![allow(clippy::redundant_closure)]

mod common;

use adjoint::nalgebra::allocator::Allocator;
use adjoint::nalgebra::{DMatrix, DVector, DefaultAllocator, Dim, OMatrix, SMatrix, SVector};
use adjoint::prelude::*;
use common::*;
use proptest::prelude::*;
use proptest::test_runner::TestCaseError;

type M = DMatrix<f64>;
type V = DVector<f64>;
type R = Result<(), TestCaseError>;

/// The largest number of rows or columns.
const MAX_DIM: usize = 4;

/// Cases of the properties of one primitive.
const CASES_N: u32 = 32;
/// Cases of the compositions.
const CASES_C: u32 = 16;

// ------------------------------------------------------------------ helpers

/// `Σ a ⊙ b`, element by element (independent of nalgebra's `dot`, which is under test).
fn inner<Rows: Dim, Cols: Dim>(a: &OMatrix<f64, Rows, Cols>, b: &OMatrix<f64, Rows, Cols>) -> f64
where
    DefaultAllocator: Allocator<Rows, Cols>,
{
    assert_eq!(a.shape(), b.shape(), "inner product of matrices of different shapes");
    a.iter().zip(b.iter()).map(|(x, y)| x * y).sum()
}

/// Central differences of `f` with respect to every element of `x`.
fn fd_mat<Rows: Dim, Cols: Dim>(
    f: impl Fn(&OMatrix<f64, Rows, Cols>) -> f64,
    x: &OMatrix<f64, Rows, Cols>,
) -> OMatrix<f64, Rows, Cols>
where
    DefaultAllocator: Allocator<Rows, Cols>,
{
    let mut probe = x.clone();
    let mut grad = x.clone();
    for k in 0..x.len() {
        let h = step_at(x[k]);
        probe[k] = x[k] + h;
        let up = f(&probe);
        probe[k] = x[k] - h;
        let down = f(&probe);
        probe[k] = x[k];
        grad[k] = (up - down) / (2.0 * h);
    }
    grad
}

/// A gradient against the wanted one: same shape, elements within `tol`.
fn check_mat<Rows: Dim, Cols: Dim>(
    what: &str,
    got: &OMatrix<f64, Rows, Cols>,
    want: &OMatrix<f64, Rows, Cols>,
    tol: Tol,
) -> R
where
    DefaultAllocator: Allocator<Rows, Cols>,
{
    if got.shape() != want.shape() {
        return Err(TestCaseError::fail(format!(
            "{what}: gradient of shape {:?}, want {:?}\n  got {got}",
            got.shape(),
            want.shape()
        )));
    }
    check_vec(what, got.as_slice(), want.as_slice(), tol)
}

/// `vjp` of a matrix function of two matrices against central differences.
fn check_pair(what: &str, f: impl Fn(&M, &M) -> M, vjp: impl Fn(&M, &M, M) -> (M, M), a: &M, b: &M, c: &M) -> R {
    let (ga, gb) = vjp(a, b, c.clone());
    let at = format!("{what} at a = {a}, b = {b}, c = {c}");
    check_mat(&format!("d/da {at}"), &ga, &fd_mat(|a| inner(&f(a, b), c), a), FD)?;
    check_mat(&format!("d/db {at}"), &gb, &fd_mat(|b| inner(&f(a, b), c), b), FD)
}

// ------------------------------------------------------------------ strategies

fn values(len: usize, lo: f64, hi: f64) -> impl Strategy<Value = Vec<f64>> {
    proptest::collection::vec(lo..hi, len)
}

/// A `rows × cols` matrix with elements in `lo..hi`.
fn matrix(rows: usize, cols: usize, lo: f64, hi: f64) -> impl Strategy<Value = M> {
    values(rows * cols, lo, hi).prop_map(move |v| M::from_vec(rows, cols, v))
}

/// A vector of `len` elements in `lo..hi`.
fn vector(len: usize, lo: f64, hi: f64) -> impl Strategy<Value = V> {
    values(len, lo, hi).prop_map(V::from_vec)
}

/// A matrix of random dimensions (1..=MAX_DIM) with elements in −2..2.
fn any_matrix() -> impl Strategy<Value = M> {
    (1..=MAX_DIM, 1..=MAX_DIM).prop_flat_map(|(r, c)| matrix(r, c, -2.0, 2.0))
}

/// Two matrices of the same random dimensions (elements in −2..2).
fn matrix_pair() -> impl Strategy<Value = (M, M)> {
    (1..=MAX_DIM, 1..=MAX_DIM).prop_flat_map(|(r, c)| (matrix(r, c, -2.0, 2.0), matrix(r, c, -2.0, 2.0)))
}

/// A `rows × cols` matrix with every element of magnitude in `lo..hi`, either sign.
fn signed(rows: usize, cols: usize, lo: f64, hi: f64) -> impl Strategy<Value = M> {
    proptest::collection::vec(magnitude(lo, hi), rows * cols).prop_map(move |v| M::from_vec(rows, cols, v))
}

/// A matrix of random dimensions with every element of magnitude in `lo..hi`, either sign.
fn signed_matrix(lo: f64, hi: f64) -> impl Strategy<Value = M> {
    (1..=MAX_DIM, 1..=MAX_DIM).prop_flat_map(move |(r, c)| signed(r, c, lo, hi))
}

/// A matrix of random dimensions drawn by `values`, and a cotangent of its shape.
fn with_cotangent(values: impl Strategy<Value = M>) -> impl Strategy<Value = (M, M)> {
    values.prop_flat_map(|x| {
        let (r, c) = x.shape();
        (Just(x), matrix(r, c, -1.0, 1.0))
    })
}

/// A static matrix with elements in `lo..hi`.
fn smatrix<const ROWS: usize, const COLS: usize>(lo: f64, hi: f64) -> impl Strategy<Value = SMatrix<f64, ROWS, COLS>> {
    values(ROWS * COLS, lo, hi).prop_map(|v| SMatrix::from_column_slice(&v))
}

// ------------------------------------------------------------------ the matrix product

mod product {
    use super::*;

    #[differentiable]
    pub fn mm(a: &DMatrix<f64>, b: &DMatrix<f64>) -> DMatrix<f64> {
        a * b
    }

    /// Owned operands (fresh matrices the product may consume).
    #[differentiable]
    pub fn mm_owned(a: &DMatrix<f64>, b: &DMatrix<f64>) -> DMatrix<f64> {
        a.clone() * (b * 1.0)
    }

    #[differentiable]
    pub fn mv(a: &DMatrix<f64>, x: &DVector<f64>) -> DVector<f64> {
        a * x
    }

    /// Both factors the same matrix: the contributions of the two operands add up.
    #[differentiable]
    pub fn square(a: &DMatrix<f64>) -> DMatrix<f64> {
        a * a
    }

    #[differentiable]
    pub fn static_mm(a: &SMatrix<f64, 2, 3>, b: &SMatrix<f64, 3, 2>) -> SMatrix<f64, 2, 2> {
        a * b
    }

    #[differentiable]
    pub fn static_mv(a: &SMatrix<f64, 2, 3>, x: &SVector<f64, 3>) -> SVector<f64, 2> {
        a * x
    }

    /// `a` is n×k, `b` k×m, the cotangent n×m.
    fn mm_operands() -> impl Strategy<Value = (M, M, M)> {
        (1..=MAX_DIM, 1..=MAX_DIM, 1..=MAX_DIM)
            .prop_flat_map(|(n, k, m)| (matrix(n, k, -1.5, 1.5), matrix(k, m, -1.5, 1.5), matrix(n, m, -1.0, 1.0)))
    }

    /// `vjp` of a product-like function of two matrices against central differences.
    fn check_product(what: &str, f: impl Fn(&M, &M) -> M, vjp: impl Fn(&M, &M, M) -> (M, M), a: &M, b: &M, c: &M) -> R {
        let (ga, gb) = vjp(a, b, c.clone());
        let at = format!("{what} at a = {a}, b = {b}, c = {c}");
        check_mat(&format!("d/da {at}"), &ga, &fd_mat(|a| inner(&f(a, b), c), a), FD)?;
        check_mat(&format!("d/db {at}"), &gb, &fd_mat(|b| inner(&f(a, b), c), b), FD)?;
        // The rule itself: ā = c·bᵀ, b̄ = aᵀ·c.
        check_mat(&format!("d/da {at} vs c·bᵀ"), &ga, &(c * b.transpose()), EXACT)?;
        check_mat(&format!("d/db {at} vs aᵀ·c"), &gb, &(a.transpose() * c), EXACT)
    }

    proptest! {
        #![proptest_config(config_with(CASES_N))]

        #[test]
        fn matrix_matrix((a, b, c) in mm_operands()) {
            check_product("a * b", mm, |a, b, c| vjp!(mm)(a, b, c), &a, &b, &c)?;
            check_product("owned a * b", mm_owned, |a, b, c| vjp!(mm_owned)(a, b, c), &a, &b, &c)?;
        }

        #[test]
        fn matrix_vector((a, x, c) in (1..=MAX_DIM, 1..=MAX_DIM).prop_flat_map(|(n, k)| {
            (matrix(n, k, -1.5, 1.5), vector(k, -1.5, 1.5), vector(n, -1.0, 1.0))
        })) {
            let (ga, gx) = vjp!(mv)(&a, &x, c.clone());
            let at = format!("a * x at a = {a}, x = {x}, c = {c}");
            check_mat(&format!("d/da {at}"), &ga, &fd_mat(|a| inner(&mv(a, &x), &c), &a), FD)?;
            check_mat(&format!("d/dx {at}"), &gx, &fd_mat(|x| inner(&mv(&a, x), &c), &x), FD)?;
        }

        #[test]
        fn same_operand_twice((a, c) in (1..=MAX_DIM).prop_flat_map(|n| (matrix(n, n, -1.5, 1.5), matrix(n, n, -1.0, 1.0)))) {
            let g = vjp!(square)(&a, c.clone());
            check_mat(&format!("a * a at a = {a}, c = {c}"), &g, &fd_mat(|a| inner(&square(a), &c), &a), FD)?;
        }

        #[test]
        fn static_sizes(
            a in smatrix::<2, 3>(-1.5, 1.5),
            b in smatrix::<3, 2>(-1.5, 1.5),
            x in smatrix::<3, 1>(-1.5, 1.5),
            c in smatrix::<2, 2>(-1.0, 1.0),
            cv in smatrix::<2, 1>(-1.0, 1.0),
        ) {
            let (ga, gb) = vjp!(static_mm)(&a, &b, c);
            let at = format!("SMatrix<2, 3> * SMatrix<3, 2> at a = {a}, b = {b}, c = {c}");
            check_mat(&format!("d/da {at}"), &ga, &fd_mat(|a| inner(&static_mm(a, &b), &c), &a), FD)?;
            check_mat(&format!("d/db {at}"), &gb, &fd_mat(|b| inner(&static_mm(&a, b), &c), &b), FD)?;
            let (ga, gx) = vjp!(static_mv)(&a, &x, cv);
            let at = format!("SMatrix<2, 3> * SVector<3> at a = {a}, x = {x}, c = {cv}");
            check_mat(&format!("d/da {at}"), &ga, &fd_mat(|a| inner(&static_mv(a, &x), &cv), &a), FD)?;
            check_mat(&format!("d/dx {at}"), &gx, &fd_mat(|x| inner(&static_mv(&a, x), &cv), &x), FD)?;
        }
    }
}

// ------------------------------------------------------------------ scalars and operators

mod operators {
    use super::*;

    #[differentiable]
    pub fn add(a: &DMatrix<f64>, b: &DMatrix<f64>) -> DMatrix<f64> {
        a + b
    }

    #[differentiable]
    pub fn sub(a: &DMatrix<f64>, b: &DMatrix<f64>) -> DMatrix<f64> {
        a - b
    }

    /// Owned operands, an operand used twice, and negation of a borrowed and an owned
    /// matrix.
    #[differentiable]
    pub fn mixed(a: &DMatrix<f64>, b: &DMatrix<f64>) -> DMatrix<f64> {
        let d = (a * 2.0) - b;
        -a + (d + b) - (-(b * 3.0))
    }

    #[differentiable]
    pub fn times_scalar(a: &DMatrix<f64>, s: f64) -> DMatrix<f64> {
        a * s
    }

    #[differentiable]
    pub fn scalar_times(s: f64, a: &DMatrix<f64>) -> DMatrix<f64> {
        s * a
    }

    #[differentiable]
    pub fn over_scalar(a: &DMatrix<f64>, s: f64) -> DMatrix<f64> {
        a / s
    }

    /// Literal constants on either side.
    #[differentiable]
    pub fn literals(a: &DMatrix<f64>) -> DMatrix<f64> {
        2.5 * a + a * 1.5 - a / 4.0
    }

    fn check_scalar(
        what: &str,
        f: impl Fn(&M, f64) -> M,
        vjp: impl Fn(&M, f64, M) -> (M, f64),
        a: &M,
        s: f64,
        c: &M,
    ) -> R {
        let (ga, gs) = vjp(a, s, c.clone());
        let at = format!("{what} at a = {a}, s = {s}, c = {c}");
        check_mat(&format!("d/da {at}"), &ga, &fd_mat(|a| inner(&f(a, s), c), a), FD)?;
        check(&format!("d/ds {at}"), gs, fd(|s| inner(&f(a, s), c), s), FD)
    }

    fn operands() -> impl Strategy<Value = (M, M, M)> {
        (1..=MAX_DIM, 1..=MAX_DIM)
            .prop_flat_map(|(r, c)| (matrix(r, c, -2.0, 2.0), matrix(r, c, -2.0, 2.0), matrix(r, c, -1.0, 1.0)))
    }

    proptest! {
        #![proptest_config(config_with(CASES_N))]

        #[test]
        fn add_sub_neg((a, b, c) in operands()) {
            check_pair("a + b", add, |a, b, c| vjp!(add)(a, b, c), &a, &b, &c)?;
            check_pair("a - b", sub, |a, b, c| vjp!(sub)(a, b, c), &a, &b, &c)?;
            check_pair("-a + (2a - b + b) + 3b", mixed, |a, b, c| vjp!(mixed)(a, b, c), &a, &b, &c)?;
            // Linear in each operand: the gradients are constants times the cotangent.
            let (ga, gb) = vjp!(mixed)(&a, &b, c.clone());
            check_mat("d/da of mixed vs c", &ga, &c, EXACT)?;
            check_mat("d/db of mixed vs 3c", &gb, &(&c * 3.0), EXACT)?;
        }

        #[test]
        fn scalar_products((a, _, c) in operands(), s in magnitude(0.5, 2.0)) {
            check_scalar("a * s", times_scalar, |a, s, c| vjp!(times_scalar)(a, s, c), &a, s, &c)?;
            check_scalar("s * a", |a, s| scalar_times(s, a), |a, s, c| {
                let (gs, ga) = vjp!(scalar_times)(s, a, c);
                (ga, gs)
            }, &a, s, &c)?;
            check_scalar("a / s", over_scalar, |a, s, c| vjp!(over_scalar)(a, s, c), &a, s, &c)?;
            let g = vjp!(literals)(&a, c.clone());
            check_mat(&format!("2.5a + 1.5a - a/4 at a = {a}"), &g, &(&c * 3.75), EXACT)?;
        }
    }
}

// ------------------------------------------------------------------ shapes, products, reductions

mod methods {
    use super::*;

    #[differentiable]
    pub fn transpose(x: &DMatrix<f64>) -> DMatrix<f64> {
        x.transpose()
    }

    /// A transposed operand of a product (`xᵀ` has another type than `x` for static sizes).
    #[differentiable]
    pub fn gram(x: &SMatrix<f64, 3, 2>) -> SMatrix<f64, 2, 2> {
        x.transpose() * x
    }

    #[differentiable]
    pub fn dot(a: &DVector<f64>, b: &DVector<f64>) -> f64 {
        a.dot(b)
    }

    /// The Frobenius inner product of matrices.
    #[differentiable]
    pub fn dot_matrix(a: &DMatrix<f64>, b: &DMatrix<f64>) -> f64 {
        a.dot(b)
    }

    #[differentiable]
    pub fn norm(x: &DMatrix<f64>) -> f64 {
        x.norm()
    }

    #[differentiable]
    pub fn norm_squared(x: &DMatrix<f64>) -> f64 {
        x.norm_squared()
    }

    #[differentiable]
    pub fn component_mul(a: &DMatrix<f64>, b: &DMatrix<f64>) -> DMatrix<f64> {
        a.component_mul(b)
    }

    #[differentiable]
    pub fn component_div(a: &DMatrix<f64>, b: &DMatrix<f64>) -> DMatrix<f64> {
        a.component_div(b)
    }

    #[differentiable]
    pub fn add_scalar(x: &DMatrix<f64>, s: f64) -> DMatrix<f64> {
        x.add_scalar(s)
    }

    #[differentiable]
    pub fn abs(x: &DMatrix<f64>) -> DMatrix<f64> {
        x.abs()
    }

    #[differentiable]
    pub fn sum(x: &DMatrix<f64>) -> f64 {
        x.sum()
    }

    #[differentiable]
    pub fn mean(x: &DMatrix<f64>) -> f64 {
        x.mean()
    }

    /// Reductions of owned intermediate matrices, combined as scalars.
    #[differentiable]
    pub fn reductions(x: &DMatrix<f64>, y: &DMatrix<f64>) -> f64 {
        let p = x.component_mul(y);
        let q = (x - y).abs();
        p.sum() * q.mean() + p.norm() / (1.0 + q.norm_squared()) + x.dot(&q)
    }

    proptest! {
        #![proptest_config(config_with(CASES_N))]

        #[test]
        fn transposes((x, c) in (1..=MAX_DIM, 1..=MAX_DIM).prop_flat_map(|(r, k)| {
            (matrix(r, k, -2.0, 2.0), matrix(k, r, -1.0, 1.0))
        }), s in smatrix::<3, 2>(-1.5, 1.5), sc in smatrix::<2, 2>(-1.0, 1.0)) {
            let g = vjp!(transpose)(&x, c.clone());
            check_mat(&format!("xᵀ at x = {x}, c = {c}"), &g, &c.transpose(), EXACT)?;
            let g = vjp!(gram)(&s, sc);
            check_mat(&format!("xᵀx at x = {s}, c = {sc}"), &g, &fd_mat(|s| inner(&gram(s), &sc), &s), FD)?;
        }

        #[test]
        fn dots((u, v) in (1..=MAX_DIM).prop_flat_map(|n| (vector(n, -2.0, 2.0), vector(n, -2.0, 2.0))), (a, b) in matrix_pair()) {
            let (gu, gv) = grad!(dot)(&u, &v);
            check_mat(&format!("d/du u·v at u = {u}, v = {v}"), &gu, &fd_mat(|u| dot(u, &v), &u), FD)?;
            check_mat(&format!("d/dv u·v at u = {u}, v = {v}"), &gv, &fd_mat(|v| dot(&u, v), &v), FD)?;
            let (ga, gb) = grad!(dot_matrix)(&a, &b);
            check_mat(&format!("d/da a·b at a = {a}, b = {b}"), &ga, &fd_mat(|a| dot_matrix(a, &b), &a), FD)?;
            check_mat(&format!("d/da a·b at a = {a} vs b"), &ga, &b, EXACT)?;
            check_mat(&format!("d/db a·b at b = {b} vs a"), &gb, &a, EXACT)?;
        }

        #[test]
        fn norms(x in signed_matrix(0.1, 2.0)) {
            let g = grad!(norm)(&x);
            check_mat(&format!("‖x‖ at x = {x}"), &g, &fd_mat(norm, &x), FD)?;
            check_mat(&format!("‖x‖ at x = {x} vs x/‖x‖"), &g, &(&x / x.norm()), EXACT)?;
            let g = grad!(norm_squared)(&x);
            check_mat(&format!("‖x‖² at x = {x}"), &g, &fd_mat(norm_squared, &x), FD)?;
            check_mat(&format!("‖x‖² at x = {x} vs 2x"), &g, &(&x * 2.0), EXACT)?;
        }

        #[test]
        fn componentwise((a, b, c) in (1..=MAX_DIM, 1..=MAX_DIM).prop_flat_map(|(r, k)| {
            // `b` is also a divisor: its elements stay away from zero.
            (matrix(r, k, -2.0, 2.0), signed(r, k, 0.5, 2.0), matrix(r, k, -1.0, 1.0))
        })) {
            check_pair("a ⊙ b", component_mul, |a, b, c| vjp!(component_mul)(a, b, c), &a, &b, &c)?;
            check_pair("a ⊘ b", component_div, |a, b, c| vjp!(component_div)(a, b, c), &a, &b, &c)?;
        }

        #[test]
        fn scalar_addition((x, c) in with_cotangent(any_matrix()), s in -2.0..2.0f64) {
            let (gx, gs) = vjp!(add_scalar)(&x, s, c.clone());
            let at = format!("x.add_scalar(s) at x = {x}, s = {s}, c = {c}");
            check_mat(&format!("d/dx {at}"), &gx, &fd_mat(|x| inner(&add_scalar(x, s), &c), &x), FD)?;
            check(&format!("d/ds {at}"), gs, fd(|s| inner(&add_scalar(&x, s), &c), s), FD)?;
            check_mat(&format!("d/dx {at} vs c"), &gx, &c, EXACT)?;
        }

        #[test]
        fn abs_away_from_zero((x, c) in with_cotangent(signed_matrix(0.05, 2.0))) {
            let g = vjp!(abs)(&x, c.clone());
            check_mat(&format!("|x| at x = {x}, c = {c}"), &g, &fd_mat(|x| inner(&abs(x), &c), &x), FD)?;
            check_mat(&format!("|x| at x = {x} vs c ⊙ sign x"), &g, &c.zip_map(&x, |c, x| c * x.signum()), EXACT)?;
        }

        #[test]
        fn sums(x in any_matrix()) {
            let g = grad!(sum)(&x);
            check_mat(&format!("Σx at x = {x}"), &g, &fd_mat(sum, &x), FD)?;
            check_mat(&format!("Σx at x = {x} vs 1"), &g, &x.map(|_| 1.0), EXACT)?;
            let g = grad!(mean)(&x);
            check_mat(&format!("mean x at x = {x}"), &g, &fd_mat(mean, &x), FD)?;
        }

        #[test]
        fn reduction_chain((x, y) in matrix_pair()) {
            // `|x − y|` must stay away from its kink.
            prop_assume!(x.iter().zip(y.iter()).all(|(a, b)| (a - b).abs() > 0.05));
            let (gx, gy) = grad!(reductions)(&x, &y);
            let at = format!("reductions at x = {x}, y = {y}");
            check_mat(&format!("d/dx {at}"), &gx, &fd_mat(|x| reductions(x, &y), &x), FD)?;
            check_mat(&format!("d/dy {at}"), &gy, &fd_mat(|y| reductions(&x, y), &y), FD)?;
        }
    }

    /// At `x = 0` the norm's gradient is 0 (the subgradient PyTorch uses), not NaN.
    #[test]
    fn norm_at_zero() {
        let g = grad!(norm)(&M::zeros(2, 3));
        assert_eq!(g, M::zeros(2, 3));
    }
}

// ------------------------------------------------------------------ indexing

mod indexing {
    use super::*;

    /// Elements of a vector and of a matrix argument, each read more than once.
    #[differentiable]
    pub fn elements(m: &DMatrix<f64>, v: &DVector<f64>) -> f64 {
        m[(0, 1)] * v[0] + m[(1, 0)] * m[(0, 1)] - v[1] * v[1] * m[(1, 1)]
    }

    /// Elements read in loops, including a transposed read of the same matrix.
    #[differentiable]
    pub fn in_loops(m: &DMatrix<f64>, v: &DVector<f64>) -> f64 {
        let n = v.len();
        let mut s = 0.0;
        for i in 0..n {
            for j in 0..n {
                s += m[(i, j)] * v[j] * m[(j, i)];
            }
            s += v[i].sin();
        }
        s
    }

    /// Elements of intermediate results: a product, a scaled matrix and a 1×1 matrix
    /// (the quadratic form `xᵀAx`).
    #[differentiable]
    pub fn of_results(a: &DMatrix<f64>, x: &DVector<f64>) -> f64 {
        let y = a * x;
        let q = x.transpose() * a * x;
        y[0] * y[1] + (a * 2.0)[(1, 0)] + q[(0, 0)] + y.norm_squared()
    }

    /// Static sizes.
    #[differentiable]
    pub fn static_elements(m: &SMatrix<f64, 2, 3>, v: &SVector<f64, 3>) -> f64 {
        let w = m * v;
        m[(1, 2)] * v[0] + w[1] * w[0] - m[(0, 0)] * m[(0, 0)]
    }

    proptest! {
        #![proptest_config(config_with(CASES_N))]

        #[test]
        fn argument_elements(m in matrix(2, 2, -2.0, 2.0), v in vector(2, -2.0, 2.0)) {
            let (gm, gv) = grad!(elements)(&m, &v);
            let at = format!("elements at m = {m}, v = {v}");
            check_mat(&format!("d/dm {at}"), &gm, &fd_mat(|m| elements(m, &v), &m), FD)?;
            check_mat(&format!("d/dv {at}"), &gv, &fd_mat(|v| elements(&m, v), &v), FD)?;
        }

        #[test]
        fn loop_elements((m, v) in (1..=MAX_DIM).prop_flat_map(|n| (matrix(n, n, -2.0, 2.0), vector(n, -2.0, 2.0)))) {
            let (gm, gv) = grad!(in_loops)(&m, &v);
            let at = format!("in_loops at m = {m}, v = {v}");
            check_mat(&format!("d/dm {at}"), &gm, &fd_mat(|m| in_loops(m, &v), &m), FD)?;
            check_mat(&format!("d/dv {at}"), &gv, &fd_mat(|v| in_loops(&m, v), &v), FD)?;
        }

        #[test]
        fn result_elements((a, x) in (2..=MAX_DIM).prop_flat_map(|n| (matrix(n, n, -2.0, 2.0), vector(n, -2.0, 2.0)))) {
            let (ga, gx) = grad!(of_results)(&a, &x);
            let at = format!("of_results at a = {a}, x = {x}");
            check_mat(&format!("d/da {at}"), &ga, &fd_mat(|a| of_results(a, &x), &a), FD)?;
            check_mat(&format!("d/dx {at}"), &gx, &fd_mat(|x| of_results(&a, x), &x), FD)?;
        }

        #[test]
        fn static_size_elements(m in smatrix::<2, 3>(-2.0, 2.0), v in smatrix::<3, 1>(-2.0, 2.0)) {
            let (gm, gv) = grad!(static_elements)(&m, &v);
            let at = format!("static_elements at m = {m}, v = {v}");
            check_mat(&format!("d/dm {at}"), &gm, &fd_mat(|m| static_elements(m, &v), &m), FD)?;
            check_mat(&format!("d/dv {at}"), &gv, &fd_mat(|v| static_elements(&m, v), &v), FD)?;
        }
    }

    /// Only the elements read receive a gradient.
    #[test]
    fn unread_elements_get_zero() {
        let m = M::from_row_slice(2, 2, &[1.0, 2.0, 3.0, 4.0]);
        let v = V::from_vec(vec![5.0, 6.0]);
        let (gm, gv) = grad!(elements)(&m, &v);
        // f = m01·v0 + m10·m01 − v1²·m11
        assert_eq!(gm, M::from_row_slice(2, 2, &[0.0, 5.0 + 3.0, 2.0, -36.0]));
        assert_eq!(gv, V::from_vec(vec![2.0, -2.0 * 6.0 * 4.0]));
    }
}

// ------------------------------------------------------------------ compositions

mod compositions {
    use super::*;

    /// The least-squares loss ‖A x − b‖².
    #[differentiable]
    pub fn least_squares(a: &DMatrix<f64>, x: &DVector<f64>, b: &DVector<f64>) -> f64 {
        let r = a * x - b;
        r.norm_squared()
    }

    /// A two-layer function of static sizes: `y = W₂ (h ⊙ h / 2) − W₂ |h|` with
    /// `h = W₁ x + b₁` (the second product written through transposes), then
    /// `‖y‖² (1 + W₁[0, 0])`.
    #[differentiable]
    pub fn two_layer(
        w1: &SMatrix<f64, 4, 3>,
        b1: &SVector<f64, 4>,
        w2: &SMatrix<f64, 2, 4>,
        x: &SVector<f64, 3>,
    ) -> f64 {
        let h = w1 * x + b1;
        let a = h.component_mul(&h) * 0.5;
        let y = w2 * a - (h.abs().transpose() * w2.transpose()).transpose();
        y.norm_squared() + y.dot(&y) * w1[(0, 0)]
    }

    /// `‖Aⁿ x‖²` by repeated products in a loop (a matrix-valued loop-carried value).
    #[differentiable]
    pub fn power(a: &DMatrix<f64>, x: &DVector<f64>, n: usize) -> f64 {
        let mut y = x.clone();
        for _ in 0..n {
            y = a * y;
        }
        y.norm_squared()
    }

    /// Generic over the static size.
    #[differentiable]
    pub fn generic_size<const N: usize>(a: &SMatrix<f64, N, N>, x: &SVector<f64, N>) -> f64 {
        let y = a * x;
        y.dot(x) + x[N - 1] * a[(0, N - 1)]
    }

    /// The quadratic form and an element read, at sizes 1, 2 and 4.
    #[test]
    fn generic_static_size() {
        fn check_size<const N: usize>() {
            let a = SMatrix::<f64, N, N>::from_fn(|i, j| (i as f64 - 0.5 * j as f64).sin());
            let x = SVector::<f64, N>::from_fn(|i, _| 0.3 * i as f64 - 0.7);
            let (ga, gx) = grad!(generic_size)(&a, &x);
            let want_a = fd_mat(|a| generic_size(a, &x), &a);
            let want_x = fd_mat(|x| generic_size(&a, x), &x);
            assert_vec_close(&format!("d/da at N = {N}"), ga.as_slice(), want_a.as_slice(), FD);
            assert_vec_close(&format!("d/dx at N = {N}"), gx.as_slice(), want_x.as_slice(), FD);
        }
        check_size::<1>();
        check_size::<2>();
        check_size::<4>();
    }

    proptest! {
        #![proptest_config(config_with(CASES_C))]

        #[test]
        fn least_squares_loss((a, x, b) in (1..=MAX_DIM, 1..=MAX_DIM).prop_flat_map(|(m, n)| {
            (matrix(m, n, -2.0, 2.0), vector(n, -2.0, 2.0), vector(m, -2.0, 2.0))
        })) {
            let (ga, gx, gb) = grad!(least_squares)(&a, &x, &b);
            let at = format!("‖Ax − b‖² at a = {a}, x = {x}, b = {b}");
            check_mat(&format!("d/da {at}"), &ga, &fd_mat(|a| least_squares(a, &x, &b), &a), FD)?;
            check_mat(&format!("d/dx {at}"), &gx, &fd_mat(|x| least_squares(&a, x, &b), &x), FD)?;
            check_mat(&format!("d/db {at}"), &gb, &fd_mat(|b| least_squares(&a, &x, b), &b), FD)?;
            // Analytic: with r = Ax − b, ∂/∂A = 2 r xᵀ, ∂/∂x = 2 Aᵀ r, ∂/∂b = −2 r.
            let r = &a * &x - &b;
            check_mat(&format!("d/da {at} vs 2rxᵀ"), &ga, &(&r * x.transpose() * 2.0), EXACT)?;
            check_mat(&format!("d/dx {at} vs 2Aᵀr"), &gx, &(a.transpose() * &r * 2.0), EXACT)?;
            check_mat(&format!("d/db {at} vs −2r"), &gb, &(&r * -2.0), EXACT)?;
            let (value, grads) = value_and_grad!(least_squares)(&a, &x, &b);
            check(&format!("value of {at}"), value, r.norm_squared(), EXACT)?;
            check_mat("value_and_grad! d/da", &grads.0, &ga, EXACT)?;
        }

        #[test]
        fn static_two_layer(
            w1 in smatrix::<4, 3>(-1.0, 1.0),
            b1 in smatrix::<4, 1>(-1.0, 1.0),
            w2 in smatrix::<2, 4>(-1.0, 1.0),
            x in smatrix::<3, 1>(-1.0, 1.0),
        ) {
            let h = w1 * x + b1;
            prop_assume!(h.iter().all(|v| v.abs() > 0.05)); // away from the kink of |h|
            let (g1, gb, g2, gx) = grad!(two_layer)(&w1, &b1, &w2, &x);
            let at = format!("two_layer at w1 = {w1}, b1 = {b1}, w2 = {w2}, x = {x}");
            check_mat(&format!("d/dw1 {at}"), &g1, &fd_mat(|w1| two_layer(w1, &b1, &w2, &x), &w1), FD)?;
            check_mat(&format!("d/db1 {at}"), &gb, &fd_mat(|b1| two_layer(&w1, b1, &w2, &x), &b1), FD)?;
            check_mat(&format!("d/dw2 {at}"), &g2, &fd_mat(|w2| two_layer(&w1, &b1, w2, &x), &w2), FD)?;
            check_mat(&format!("d/dx {at}"), &gx, &fd_mat(|x| two_layer(&w1, &b1, &w2, x), &x), FD)?;
        }

        #[test]
        fn matrix_power((a, x) in (1..=3usize).prop_flat_map(|n| (matrix(n, n, -1.0, 1.0), vector(n, -1.0, 1.0))), n in 0..4usize) {
            let (ga, gx) = grad!(power)(&a, &x, n);
            let at = format!("‖Aⁿx‖² (n = {n}) at a = {a}, x = {x}");
            check_mat(&format!("d/da {at}"), &ga, &fd_mat(|a| power(a, &x, n), &a), FD)?;
            check_mat(&format!("d/dx {at}"), &gx, &fd_mat(|x| power(&a, x, n), &x), FD)?;
        }
    }
}

// ------------------------------------------------------------------ f32

mod single_precision {
    use super::*;

    #[differentiable]
    pub fn f(a: &DMatrix<f32>, w: &SMatrix<f32, 2, 3>, x: &SVector<f32, 3>) -> f32 {
        let y = w * x;
        (a * 2.0).norm_squared() * 0.25 + y.dot(&y) + x[2] * a[(0, 1)]
    }

    /// Gradients in `f32` against the analytic ones evaluated in `f64`.
    #[test]
    fn smoke() {
        let a = DMatrix::<f32>::from_row_slice(2, 2, &[0.5, -1.0, 1.5, 2.0]);
        let w = SMatrix::<f32, 2, 3>::new(0.1, -0.2, 0.3, 0.4, 0.5, -0.6);
        let x = SVector::<f32, 3>::new(1.0, -2.0, 0.5);
        let (ga, gw, gx) = grad!(f)(&a, &w, &x);
        let (a64, w64, x64) = (a.cast::<f64>(), w.cast::<f64>(), x.cast::<f64>());
        let y = w64 * x64;
        // ∂/∂a = 2a (+ x₂ at (0, 1)), ∂/∂w = 2 y xᵀ, ∂/∂x = 2 wᵀy (+ a₀₁ at 2).
        let mut want_a = &a64 * 2.0;
        want_a[(0, 1)] += x64[2];
        let want_w = y * x64.transpose() * 2.0;
        let mut want_x = w64.transpose() * y * 2.0;
        want_x[2] += a64[(0, 1)];
        let as_f64 = |v: &[f32]| v.iter().map(|&e| e as f64).collect::<Vec<f64>>();
        assert_vec_close("f32 d/da", &as_f64(ga.as_slice()), want_a.as_slice(), F32);
        assert_vec_close("f32 d/dw", &as_f64(gw.as_slice()), want_w.as_slice(), F32);
        assert_vec_close("f32 d/dx", &as_f64(gx.as_slice()), want_x.as_slice(), F32);
    }
}

// ------------------------------------------------------------------ conversions

mod conversions {
    use super::*;

    #[test]
    fn static_round_trip() {
        let m = SMatrix::<f64, 2, 3>::new(1.0, 2.0, 3.0, 4.0, 5.0, 6.0);
        let t = Tensor::from(&m);
        assert_eq!(t.shape(), &[2, 3]);
        assert_eq!(t.to_vec(), vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0]);
        assert_eq!(t.to_smatrix::<2, 3>(), m);
        assert_eq!(t.t().to_smatrix::<3, 2>(), m.transpose());
        assert_eq!(t.to_dmatrix(), DMatrix::from_row_slice(2, 3, &[1.0, 2.0, 3.0, 4.0, 5.0, 6.0]));
        let v = SVector::<f32, 3>::new(1.0, -2.0, 0.5);
        assert_eq!(Tensor::from(&v).shape(), &[3, 1], "an SVector converts as a column");
        let tv = Tensor::from(v.as_slice().to_vec());
        assert_eq!(tv.to_svector::<3>(), v);
    }

    #[test]
    fn dynamic_round_trip() {
        let m = DMatrix::from_fn(3, 4, |i, j| (i * 4 + j) as f64 - 5.5);
        assert_eq!(Tensor::from(&m).to_dmatrix(), m);
        let v = DVector::from_fn(5, |i, _| i as f32 * 0.5);
        assert_eq!(Tensor::from(&v).to_dvector(), v);
    }

    #[test]
    #[should_panic(expected = "needs a tensor of shape [3, 2]")]
    fn static_shape_mismatch() {
        let t = Tensor::<f64>::zeros(&[2, 3]);
        let _ = t.to_smatrix::<3, 2>();
    }
}

mod cholesky {
    use super::*;

    /// ½ yᵀΣ⁻¹y + log det L, through the decomposition, its `solve` and its factor.
    #[differentiable]
    pub fn half_quadratic_and_log_det(sigma: &DMatrix<f64>, y: &DVector<f64>) -> f64 {
        let chol = sigma.clone().cholesky().expect("positive definite");
        let alpha = chol.solve(y);
        0.5 * y.dot(&alpha) + chol.l().diagonal().iter().map(|d| d.ln()).sum::<f64>()
    }

    /// The negative log marginal likelihood of a GP with a squared-exponential kernel
    /// built by `from_fn` (realistic program p12, less its constant).
    #[differentiable(wrt(ell, sf2, sn2))]
    pub fn gp_nll(ell: f64, sf2: f64, sn2: f64, x: &[f64], y: &DVector<f64>) -> f64 {
        let n = x.len();
        let k = DMatrix::from_fn(n, n, |i, j| {
            let d = x[i] - x[j];
            let k = sf2 * (-0.5 * d * d / (ell * ell)).exp();
            if i == j {
                k + sn2
            } else {
                k
            }
        });
        let chol = k.cholesky().unwrap();
        let alpha = chol.solve(y);
        0.5 * y.dot(&alpha) + chol.l().diagonal().iter().map(|d| d.ln()).sum::<f64>()
    }

    /// A symmetric positive-definite matrix: B Bᵀ + n I.
    fn spd(n: usize) -> impl Strategy<Value = M> {
        matrix(n, n, -1.0, 1.0).prop_map(move |b| &b * b.transpose() + M::identity(n, n) * n as f64)
    }

    proptest! {
        #![proptest_config(config_with(CASES_N))]

        #[test]
        fn decomposition_solve_and_factor((sigma, y) in (1..=MAX_DIM).prop_flat_map(|n| (spd(n), vector(n, -1.0, 1.0)))) {
            let (g_sigma, g_y) = grad!(half_quadratic_and_log_det)(&sigma, &y);
            let n = sigma.nrows();
            for i in 0..n {
                for j in 0..n {
                    let want = fd(|v| { let mut s = sigma.clone(); s[(i, j)] = v; half_quadratic_and_log_det(&s, &y) }, sigma[(i, j)]);
                    check(&format!("Σ[({i}, {j})]"), g_sigma[(i, j)], want, FD)?;
                }
            }
            let want_y = sigma.clone().try_inverse().expect("invertible") * &y;
            for i in 0..n {
                check(&format!("y[{i}]"), g_y[i], want_y[i], EXACT2)?;
            }
        }

        #[test]
        fn gaussian_process_likelihood(ell in 0.6..1.5f64, sf2 in 0.5..2.0f64, sn2 in 0.05..0.5f64, n in 2..6usize) {
            let x: Vec<f64> = (0..n).map(|i| -1.5 + 0.7 * i as f64).collect();
            let y = DVector::from_iterator(n, x.iter().map(|t| t.sin()));
            let (g_ell, g_sf2, g_sn2) = grad!(gp_nll)(ell, sf2, sn2, &x, &y);
            // ½ tr((K⁻¹ − ααᵀ) ∂K/∂θ).
            let k = DMatrix::from_fn(n, n, |i, j| sf2 * (-0.5 * (x[i] - x[j]).powi(2) / (ell * ell)).exp() + if i == j { sn2 } else { 0.0 });
            let k_inv = k.try_inverse().expect("invertible");
            let alpha = &k_inv * &y;
            let w = &k_inv - &alpha * alpha.transpose();
            let d_ell = DMatrix::from_fn(n, n, |i, j| { let d2 = (x[i] - x[j]).powi(2); sf2 * (-0.5 * d2 / (ell * ell)).exp() * d2 / ell.powi(3) });
            let d_sf2 = DMatrix::from_fn(n, n, |i, j| (-0.5 * (x[i] - x[j]).powi(2) / (ell * ell)).exp());
            check("ℓ", g_ell, 0.5 * w.component_mul(&d_ell).sum(), EXACT2)?;
            check("σ²", g_sf2, 0.5 * w.component_mul(&d_sf2).sum(), EXACT2)?;
            check("σ²ₙ", g_sn2, 0.5 * w.trace(), EXACT2)?;
        }
    }
}
