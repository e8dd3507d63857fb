//! Rules of tensor primitives.
//!
//! Elementwise rules are the scalar rules mapped over the elements, so each derivative
//! is written once. The gradient of an operand that was broadcast is summed back to the
//! operand's shape (`sum_to_shape`). Tensor rules are first-order: they implement the
//! rule traits but not their derivative companions (see [`HigherOrder`](crate::HigherOrder)).

use super::{Abs, Cos, Exp, Ln, Powf, Powi, Sin, Sqrt, Tanh};
use crate::kernels::Cost;
use crate::support::Adjoint;
use crate::tensor::ops::broadcast_or_panic;
use crate::tensor::{with_kernel_params, KernelParams, Par, Tensor};
use crate::Float;

/// The tensor form of a scalar rule, elementwise. `Cheap` rules (a few arithmetic
/// operations per element) go parallel only as late as an addition does: waking the
/// pool for a ReLU's adjoint over 128×256 elements took 16 µs, the work 2.
macro_rules! elementwise_rule {
    ($($trait_:ident :: $method:ident, $cost:ident;)*) => {$(
        impl<E: Float> super::$trait_ for Tensor<E> {
            fn $method(ybar: &Self, arg: &Self) -> Self {
                ybar.zip_map_with_cost(arg, |g, a| <E as $trait_>::$method(&g, &a), Cost::$cost)
            }
        }
    )*};
}

elementwise_rule! {
    Sqrt::sqrt_adjoint, Cheap;
    Exp::exp_adjoint, Cheap;
    Ln::ln_adjoint, Cheap;
    Sin::sin_adjoint, Heavy;
    Cos::cos_adjoint, Heavy;
    Tanh::tanh_adjoint, Cheap;
    Abs::abs_adjoint, Cheap;
}

impl<E: Float> Powi for Tensor<E> {
    fn powi_adjoint(ybar: &Self, x: &Self, n: &i32) -> Self {
        if *n == 2 {
            // The scalar rule's `ȳ·2·x¹`, without a `powi` call per element (squared
            // errors are the common case).
            return ybar.zip_map_with_cost(x, |g, x| g * E::TWO * x, Cost::Cheap);
        }
        ybar.zip_map(x, |g, x| <E as Powi>::powi_adjoint(&g, &x, n))
    }
}

impl<E: Float> Powf<E> for Tensor<E> {
    fn powf_base_adjoint(ybar: &Self, x: &Self, p: &E) -> Self {
        ybar.zip_map(x, |g, x| <E as Powf>::powf_base_adjoint(&g, &x, p))
    }
    fn powf_exponent_adjoint(ybar: &Self, x: &Self, p: &E, y: &Self) -> E {
        let xy = x.zip_map(y, |x, y| <E as Powf>::powf_exponent_adjoint(&E::ONE, &x, p, &y));
        (ybar * &xy).sum().item()
    }
}

/// `y = σ(x)`: ∂y/∂x = y(1 − y).
pub trait Sigmoid: Sized {
    fn sigmoid_adjoint(ybar: &Self, y: &Self) -> Self;
}

impl<E: Float> Sigmoid for Tensor<E> {
    fn sigmoid_adjoint(ybar: &Self, y: &Self) -> Self {
        ybar.zip_map_with_cost(y, |g, y| g * y * (E::ONE - y), Cost::Cheap)
    }
}

/// `y = max(x, 0)`: ∂y/∂x = 1 where y > 0, else 0 (PyTorch's choice at 0).
pub trait Relu: Sized {
    fn relu_adjoint(ybar: &Self, y: &Self) -> Self;
}

impl<E: Float> Relu for Tensor<E> {
    fn relu_adjoint(ybar: &Self, y: &Self) -> Self {
        ybar.zip_map_with_cost(y, |g, y| if y > E::ZERO { g } else { g * E::ZERO }, Cost::Cheap)
    }
}

// ---- Operators, with broadcasting: the adjoint of a broadcast operand is summed back
// to its shape.

impl<E: Float> super::Add for Tensor<E> {
    type Output = Tensor<E>;
    fn add_lhs_adjoint(ybar: &Self, a: &Self, _b: &Self) -> Self {
        ybar.sum_to_shape(a.shape())
    }
    fn add_rhs_adjoint(ybar: &Self, _a: &Self, b: &Self) -> Self {
        ybar.sum_to_shape(b.shape())
    }
}

impl<E: Float> super::Sub for Tensor<E> {
    type Output = Tensor<E>;
    fn sub_lhs_adjoint(ybar: &Self, a: &Self, _b: &Self) -> Self {
        ybar.sum_to_shape(a.shape())
    }
    fn sub_rhs_adjoint(ybar: &Self, _a: &Self, b: &Self) -> Self {
        -ybar.sum_to_shape(b.shape())
    }
}

impl<E: Float> super::Mul for Tensor<E> {
    type Output = Tensor<E>;
    fn mul_lhs_adjoint(ybar: &Self, a: &Self, b: &Self) -> Self {
        (ybar * b).sum_to_shape(a.shape())
    }
    fn mul_rhs_adjoint(ybar: &Self, a: &Self, b: &Self) -> Self {
        (ybar * a).sum_to_shape(b.shape())
    }
}

impl<E: Float> super::Div for Tensor<E> {
    type Output = Tensor<E>;
    fn div_lhs_adjoint(ybar: &Self, a: &Self, b: &Self) -> Self {
        (ybar / b).sum_to_shape(a.shape())
    }
    fn div_rhs_adjoint(ybar: &Self, a: &Self, b: &Self) -> Self {
        // −ȳ·a/b², summed to b's shape.
        let q = ybar * a;
        q.zip_map_with_cost(b, |q, b| -(q / (b * b)), Cost::Cheap).sum_to_shape(b.shape())
    }
}

/// The sum of all elements of `t`, as a float.
fn total<E: Float>(t: &Tensor<E>) -> E {
    t.sum().item()
}

// Tensor ⊕ scalar.
impl<E: Float> super::Add<E> for Tensor<E> {
    type Output = Tensor<E>;
    fn add_lhs_adjoint(ybar: &Self, _a: &Self, _b: &E) -> Self {
        ybar.clone()
    }
    fn add_rhs_adjoint(ybar: &Self, _a: &Self, _b: &E) -> E {
        total(ybar)
    }
}

impl<E: Float> super::Sub<E> for Tensor<E> {
    type Output = Tensor<E>;
    fn sub_lhs_adjoint(ybar: &Self, _a: &Self, _b: &E) -> Self {
        ybar.clone()
    }
    fn sub_rhs_adjoint(ybar: &Self, _a: &Self, _b: &E) -> E {
        -total(ybar)
    }
}

impl<E: Float> super::Mul<E> for Tensor<E> {
    type Output = Tensor<E>;
    fn mul_lhs_adjoint(ybar: &Self, _a: &Self, b: &E) -> Self {
        ybar * *b
    }
    fn mul_rhs_adjoint(ybar: &Self, a: &Self, _b: &E) -> E {
        total(&(ybar * a))
    }
}

impl<E: Float> super::Div<E> for Tensor<E> {
    type Output = Tensor<E>;
    fn div_lhs_adjoint(ybar: &Self, _a: &Self, b: &E) -> Self {
        ybar / *b
    }
    fn div_rhs_adjoint(ybar: &Self, a: &Self, b: &E) -> E {
        -total(&(ybar * a)) / (*b * *b)
    }
}

// Scalar ⊕ tensor.
impl<E: Float> super::Add<Tensor<E>> for E {
    type Output = Tensor<E>;
    fn add_lhs_adjoint(ybar: &Tensor<E>, _a: &E, _b: &Tensor<E>) -> E {
        total(ybar)
    }
    fn add_rhs_adjoint(ybar: &Tensor<E>, _a: &E, _b: &Tensor<E>) -> Tensor<E> {
        ybar.clone()
    }
}

impl<E: Float> super::Sub<Tensor<E>> for E {
    type Output = Tensor<E>;
    fn sub_lhs_adjoint(ybar: &Tensor<E>, _a: &E, _b: &Tensor<E>) -> E {
        total(ybar)
    }
    fn sub_rhs_adjoint(ybar: &Tensor<E>, _a: &E, _b: &Tensor<E>) -> Tensor<E> {
        -ybar
    }
}

impl<E: Float> super::Mul<Tensor<E>> for E {
    type Output = Tensor<E>;
    fn mul_lhs_adjoint(ybar: &Tensor<E>, _a: &E, b: &Tensor<E>) -> E {
        total(&(ybar * b))
    }
    fn mul_rhs_adjoint(ybar: &Tensor<E>, a: &E, _b: &Tensor<E>) -> Tensor<E> {
        ybar * *a
    }
}

impl<E: Float> super::Div<Tensor<E>> for E {
    type Output = Tensor<E>;
    fn div_lhs_adjoint(ybar: &Tensor<E>, _a: &E, b: &Tensor<E>) -> E {
        total(&(ybar / b))
    }
    fn div_rhs_adjoint(ybar: &Tensor<E>, a: &E, b: &Tensor<E>) -> Tensor<E> {
        let a = *a;
        ybar.zip_map_with_cost(b, |g, b| -(g * a / (b * b)), Cost::Cheap)
    }
}

// ---- Shapes and views.

/// `y = xᵀ` (the last two axes; a 1-D tensor is its own transpose). The rule is
/// dispatched on the adjoint's type, so it also serves nalgebra, where `xᵀ` has
/// another type than `x`.
pub trait Transpose {
    type Input;
    fn transpose_adjoint(ybar: &Self) -> Self::Input;
}

impl<E: Float> Transpose for Tensor<E> {
    type Input = Tensor<E>;
    fn transpose_adjoint(ybar: &Self) -> Self {
        ybar.t()
    }
}

/// `y = x.transpose(d0, d1)`: the adjoint swaps the same axes back.
pub trait TransposeDims: Sized {
    fn transpose_dims_adjoint(ybar: &Self, d0: &usize, d1: &usize) -> Self;
}

impl<E: Float> TransposeDims for Tensor<E> {
    fn transpose_dims_adjoint(ybar: &Self, d0: &usize, d1: &usize) -> Self {
        ybar.transpose(*d0, *d1)
    }
}

/// `y = x.reshape(shape)`: the adjoint takes `x`'s shape back.
pub trait Reshape: Sized {
    fn reshape_adjoint(ybar: &Self, x: &Self) -> Self;
}

impl<E: Float> Reshape for Tensor<E> {
    fn reshape_adjoint(ybar: &Self, x: &Self) -> Self {
        ybar.contiguous().reshape(x.shape())
    }
}

/// `y = x.unsqueeze(axis)`: the adjoint drops the axis again.
pub trait Unsqueeze: Sized {
    fn unsqueeze_adjoint(ybar: &Self, axis: &usize) -> Self;
}

impl<E: Float> Unsqueeze for Tensor<E> {
    fn unsqueeze_adjoint(ybar: &Self, axis: &usize) -> Self {
        ybar.sum_dim(*axis, false)
    }
}

/// `y = x.broadcast_to(shape)`: the adjoint sums over the broadcast axes.
pub trait BroadcastTo: Sized {
    fn broadcast_to_adjoint(ybar: &Self, x: &Self) -> Self;
}

impl<E: Float> BroadcastTo for Tensor<E> {
    fn broadcast_to_adjoint(ybar: &Self, x: &Self) -> Self {
        ybar.sum_to_shape(x.shape())
    }
}

/// `y = x.sum_to_shape(shape)`: the adjoint broadcasts back.
pub trait SumToShape: Sized {
    fn sum_to_shape_adjoint(ybar: &Self, x: &Self) -> Self;
}

impl<E: Float> SumToShape for Tensor<E> {
    fn sum_to_shape_adjoint(ybar: &Self, x: &Self) -> Self {
        ybar.broadcast_to(x.shape()).contiguous()
    }
}

/// Zeros of `shape` with `len` along `axis` replaced by `len` (helper of the slicing rules).
fn zeros_with_axis<E: Float>(shape: &[usize], axis: usize, len: usize) -> Tensor<E> {
    let mut s = shape.to_vec();
    s[axis] = len;
    Tensor::zeros(&s)
}

/// `ybar` placed at `start` along `axis` in zeros of `shape`.
fn pad_along<E: Float>(ybar: &Tensor<E>, shape: &[usize], axis: usize, start: usize) -> Tensor<E> {
    let len = ybar.shape()[axis];
    let after = shape[axis] - start - len;
    let mut parts = Vec::with_capacity(3);
    if start > 0 {
        parts.push(zeros_with_axis(shape, axis, start));
    }
    parts.push(ybar.clone());
    if after > 0 {
        parts.push(zeros_with_axis(shape, axis, after));
    }
    Tensor::cat(&parts, axis)
}

/// `y = x.narrow(axis, start, len)`: the adjoint is `ȳ` in place, zeros elsewhere.
pub trait Narrow: Sized {
    fn narrow_adjoint(ybar: &Self, x: &Self, axis: &usize, start: &usize) -> Self;
}

impl<E: Float> Narrow for Tensor<E> {
    fn narrow_adjoint(ybar: &Self, x: &Self, axis: &usize, start: &usize) -> Self {
        pad_along(ybar, x.shape(), *axis, *start)
    }
}

/// `y = a.cat2(b, axis)` (`Tensor::cat(&[a, b], axis)`): each operand's adjoint is its
/// part of `ȳ` along `axis`, a view (nothing is copied).
pub trait Cat2: Sized {
    fn cat2_lhs_adjoint(ybar: &Self, a: &Self, axis: &usize) -> Self;
    fn cat2_rhs_adjoint(ybar: &Self, a: &Self, axis: &usize) -> Self;
}

impl<E: Float> Cat2 for Tensor<E> {
    fn cat2_lhs_adjoint(ybar: &Self, a: &Self, axis: &usize) -> Self {
        ybar.narrow(*axis, 0, a.shape()[*axis])
    }

    fn cat2_rhs_adjoint(ybar: &Self, a: &Self, axis: &usize) -> Self {
        let start = a.shape()[*axis];
        ybar.narrow(*axis, start, ybar.shape()[*axis] - start)
    }
}

/// `y = a.cat3(b, c, axis)` (`Tensor::cat(&[a, b, c], axis)`): as [`Cat2`], with three
/// parts.
pub trait Cat3: Sized {
    fn cat3_first_adjoint(ybar: &Self, a: &Self, axis: &usize) -> Self;
    fn cat3_second_adjoint(ybar: &Self, a: &Self, b: &Self, axis: &usize) -> Self;
    fn cat3_third_adjoint(ybar: &Self, a: &Self, b: &Self, axis: &usize) -> Self;
}

impl<E: Float> Cat3 for Tensor<E> {
    fn cat3_first_adjoint(ybar: &Self, a: &Self, axis: &usize) -> Self {
        ybar.narrow(*axis, 0, a.shape()[*axis])
    }

    fn cat3_second_adjoint(ybar: &Self, a: &Self, b: &Self, axis: &usize) -> Self {
        ybar.narrow(*axis, a.shape()[*axis], b.shape()[*axis])
    }

    fn cat3_third_adjoint(ybar: &Self, a: &Self, b: &Self, axis: &usize) -> Self {
        let start = a.shape()[*axis] + b.shape()[*axis];
        ybar.narrow(*axis, start, ybar.shape()[*axis] - start)
    }
}

/// `y = x.select(axis, index)`: the adjoint is `ȳ` at `index`, zeros elsewhere.
pub trait Select: Sized {
    fn select_adjoint(ybar: &Self, x: &Self, axis: &usize, index: &usize) -> Self;
}

impl<E: Float> Select for Tensor<E> {
    fn select_adjoint(ybar: &Self, x: &Self, axis: &usize, index: &usize) -> Self {
        pad_along(&ybar.unsqueeze(*axis), x.shape(), *axis, *index)
    }
}

/// `y = x.index_rows(rows)`: the adjoint adds each row of `ȳ` into the row it came
/// from (a row taken twice gets both).
pub trait IndexRows: Sized {
    fn index_rows_adjoint(ybar: &Self, x: &Self, rows: &[usize]) -> Self;
}

impl<E: Float> IndexRows for Tensor<E> {
    fn index_rows_adjoint(ybar: &Self, x: &Self, rows: &[usize]) -> Self {
        let m = x.shape()[1];
        let mut data = vec![E::ZERO; x.numel()];
        let g = ybar.to_vec();
        for (i, &r) in rows.iter().enumerate() {
            for (d, s) in data[r * m..(r + 1) * m].iter_mut().zip(&g[i * m..(i + 1) * m]) {
                *d += *s;
            }
        }
        Tensor::from_vec(data, x.shape())
    }
}

// ---- Products.

/// `y = a·b` (matrix product).
pub trait Matmul<Rhs = Self>: Sized {
    type Output;
    /// ∂/∂a: `ȳ·bᵀ`.
    fn matmul_lhs_adjoint(ybar: &Self::Output, a: &Self, b: &Rhs) -> Self;
    /// ∂/∂b: `aᵀ·ȳ`.
    fn matmul_rhs_adjoint(ybar: &Self::Output, a: &Self, b: &Rhs) -> Rhs;

    /// `acc += ȳ·bᵀ`: what generated code calls when the contribution is added straight
    /// into an adjoint (a weight used at every step of a loop), so an implementation can
    /// add the product where `acc` lies instead of writing it out and adding it.
    fn matmul_lhs_adjoint_into(acc: &mut Self, ybar: &Self::Output, a: &Self, b: &Rhs)
    where
        Self: Adjoint,
    {
        acc.accumulate(Self::matmul_lhs_adjoint(ybar, a, b));
    }

    /// `acc += aᵀ·ȳ` (see [`Matmul::matmul_lhs_adjoint_into`]).
    fn matmul_rhs_adjoint_into(acc: &mut Rhs, ybar: &Self::Output, a: &Self, b: &Rhs)
    where
        Rhs: Adjoint,
    {
        acc.accumulate(Self::matmul_rhs_adjoint(ybar, a, b));
    }

    /// `acc += ȳ·bᵀ` inside a loop whose other statements never read `acc` (generated
    /// code adds `pending` into `acc` after the loop): an implementation may keep an
    /// outer product in `pending` instead of adding it, so a weight's adjoint summed
    /// over the steps of an RNN becomes one matrix product at the end.
    fn matmul_lhs_adjoint_deferred(acc: &mut Self, pending: &mut OuterSum<Self>, ybar: &Self::Output, a: &Self, b: &Rhs)
    where
        Self: Adjoint,
    {
        let _ = pending;
        Self::matmul_lhs_adjoint_into(acc, ybar, a, b);
    }

    /// `acc += aᵀ·ȳ`, deferred as in [`Matmul::matmul_lhs_adjoint_deferred`].
    fn matmul_rhs_adjoint_deferred(acc: &mut Rhs, pending: &mut OuterSum<Rhs>, ybar: &Self::Output, a: &Self, b: &Rhs)
    where
        Rhs: Adjoint,
    {
        let _ = pending;
        Self::matmul_rhs_adjoint_into(acc, ybar, a, b);
    }
}

/// Outer products `u ⊗ v` owed to one adjoint, collected over the steps of a loop and
/// added after it by [`OuterSum::add_to`]: as the single product `Uᵀ·V` of the stacked
/// vectors, which runs at matrix-product speed, where adding each step's outer product
/// into the adjoint would stream the whole matrix through the cache once per step.
pub struct OuterSum<T> {
    pairs: Vec<(T, T)>,
    /// How to add the pairs into an adjoint, set by the implementation that defers.
    add: Option<AddOuterSum<T>>,
}

/// `acc += Σ u ⊗ v` over the pairs `(u, v)`.
pub type AddOuterSum<T> = fn(&mut T, Vec<(T, T)>);

impl<T> OuterSum<T> {
    pub fn new() -> Self {
        OuterSum { pairs: Vec::new(), add: None }
    }

    /// Keep `u ⊗ v`, to be added by `add`.
    pub fn push(&mut self, u: T, v: T, add: AddOuterSum<T>) {
        self.pairs.push((u, v));
        self.add = Some(add);
    }

    /// Add every product kept into `acc`.
    pub fn add_to(self, acc: &mut T) {
        if let Some(add) = self.add {
            add(acc, self.pairs);
        }
    }
}

impl<T> Default for OuterSum<T> {
    fn default() -> Self {
        Self::new()
    }
}

/// `acc += Σ u ⊗ v` as `Uᵀ·V`, the vectors stacked as the rows of `U` and `V`.
fn add_outer_sum<E: Float>(acc: &mut Tensor<E>, pairs: Vec<(Tensor<E>, Tensor<E>)>) {
    let (us, vs): (Vec<_>, Vec<_>) = pairs.into_iter().unzip();
    // On this thread: the product comes at the end of a loop of small steps, during
    // which the pool's threads went to sleep, and waking them costs more than they
    // save (an RNN's 128×100·100×128: ~100 µs against ~20 µs).
    let serial = KernelParams { par: Par::Seq, ..KernelParams::current() };
    let sum = with_kernel_params(serial, || Tensor::stack(&us, 0).t().matmul(&Tensor::stack(&vs, 0)));
    acc.accumulate(sum);
}

/// The operands of a tensor product as matrices (a 1-D left operand is a row, a 1-D
/// right operand a column) and the adjoint reshaped to their product's shape.
fn as_matrices<E: Float>(ybar: &Tensor<E>, a: &Tensor<E>, b: &Tensor<E>) -> (Tensor<E>, Tensor<E>, Tensor<E>) {
    let a2 = if a.ndim() == 1 { a.unsqueeze(0) } else { a.clone() };
    let b2 = if b.ndim() == 1 { b.unsqueeze(1) } else { b.clone() };
    let (na, nb) = (a2.ndim(), b2.ndim());
    let mut y_shape = broadcast_or_panic(&a2.shape()[..na - 2], &b2.shape()[..nb - 2], "matmul");
    y_shape.extend([a2.shape()[na - 2], b2.shape()[nb - 1]]);
    let ybar2 = ybar.contiguous().reshape(&y_shape);
    (ybar2, a2, b2)
}

fn swap_last<E: Float>(t: &Tensor<E>) -> Tensor<E> {
    let n = t.ndim();
    t.transpose(n - 2, n - 1)
}

impl<E: Float> Matmul for Tensor<E> {
    type Output = Tensor<E>;
    fn matmul_lhs_adjoint(ybar: &Self, a: &Self, b: &Self) -> Self {
        // The unbatched cases directly (no reshapes, no batch reduction): they are
        // most products, and small ones are dominated by that bookkeeping.
        match (a.ndim(), b.ndim()) {
            // The gradient in the operand's own layout: `x.t()` gets a column-major
            // one, so the gradient of `x` (its transpose) is row-major.
            (2, 2) if a.is_column_major() => return b.matmul(&ybar.t()).t(),
            (2, 2) => return ybar.matmul_t(false, b, true),
            (2, 1) => return ybar.outer(b),
            (1, 2) => return b.matmul(ybar),
            _ => {}
        }
        let (ybar2, a2, b2) = as_matrices(ybar, a, b);
        ybar2.matmul(&swap_last(&b2)).sum_to_shape(a2.shape()).reshape(a.shape())
    }
    fn matmul_lhs_adjoint_into(acc: &mut Self, ybar: &Self, a: &Self, b: &Self) {
        // `ȳ ⊗ b` (a matrix times a vector): added row by row into `acc`.
        if a.ndim() == 2 && b.ndim() == 1 && acc.add_outer(ybar, b) {
            return;
        }
        acc.accumulate(Self::matmul_lhs_adjoint(ybar, a, b));
    }

    fn matmul_rhs_adjoint_into(acc: &mut Self, ybar: &Self, a: &Self, b: &Self) {
        if a.ndim() == 1 && b.ndim() == 2 && acc.add_outer(a, ybar) {
            return;
        }
        acc.accumulate(Self::matmul_rhs_adjoint(ybar, a, b));
    }

    fn matmul_lhs_adjoint_deferred(acc: &mut Self, pending: &mut OuterSum<Self>, ybar: &Self, a: &Self, b: &Self) {
        match (a.ndim(), b.ndim()) {
            (2, 1) => pending.push(ybar.clone(), b.clone(), add_outer_sum),
            _ => Self::matmul_lhs_adjoint_into(acc, ybar, a, b),
        }
    }

    fn matmul_rhs_adjoint_deferred(acc: &mut Self, pending: &mut OuterSum<Self>, ybar: &Self, a: &Self, b: &Self) {
        match (a.ndim(), b.ndim()) {
            (1, 2) => pending.push(a.clone(), ybar.clone(), add_outer_sum),
            _ => Self::matmul_rhs_adjoint_into(acc, ybar, a, b),
        }
    }

    fn matmul_rhs_adjoint(ybar: &Self, a: &Self, b: &Self) -> Self {
        match (a.ndim(), b.ndim()) {
            (2, 2) if b.is_column_major() => return ybar.t().matmul(a).t(),
            (2, 2) | (2, 1) => return a.matmul_t(true, ybar, false),
            (1, 2) => return a.outer(ybar),
            _ => {}
        }
        let (ybar2, a2, b2) = as_matrices(ybar, a, b);
        swap_last(&a2).matmul(&ybar2).sum_to_shape(b2.shape()).reshape(b.shape())
    }
}

// ---- Reductions.

/// `y = Σ x` (a 0-d tensor, or a float for a matrix): every element gets `ȳ`.
pub trait Sum: Sized {
    /// The type of the result.
    type Output;
    fn sum_adjoint(ybar: &Self::Output, x: &Self) -> Self;
}

impl<E: Float> Sum for Tensor<E> {
    type Output = Tensor<E>;
    fn sum_adjoint(ybar: &Self, x: &Self) -> Self {
        Tensor::full(x.shape(), ybar.item())
    }
}

/// `y = mean x` (a 0-d tensor, or a float for a matrix): every element gets `ȳ/n`.
pub trait Mean: Sized {
    /// The type of the result.
    type Output;
    fn mean_adjoint(ybar: &Self::Output, x: &Self) -> Self;
}

impl<E: Float> Mean for Tensor<E> {
    type Output = Tensor<E>;
    fn mean_adjoint(ybar: &Self, x: &Self) -> Self {
        Tensor::full(x.shape(), ybar.item() / E::from_f64(x.numel() as f64))
    }
}

/// `ȳ` with the reduced axis put back (if it was dropped) and broadcast to `x`.
fn spread<E: Float>(ybar: &Tensor<E>, x: &Tensor<E>, axis: usize, keepdim: bool) -> Tensor<E> {
    let kept = if keepdim { ybar.clone() } else { ybar.unsqueeze(axis) };
    kept.broadcast_to(x.shape()).contiguous()
}

/// `y = x.sum_dim(axis, keepdim)`.
pub trait SumDim: Sized {
    fn sum_dim_adjoint(ybar: &Self, x: &Self, axis: &usize, keepdim: &bool) -> Self;
}

impl<E: Float> SumDim for Tensor<E> {
    fn sum_dim_adjoint(ybar: &Self, x: &Self, axis: &usize, keepdim: &bool) -> Self {
        spread(ybar, x, *axis, *keepdim)
    }
}

/// `y = x.mean_dim(axis, keepdim)`.
pub trait MeanDim: Sized {
    fn mean_dim_adjoint(ybar: &Self, x: &Self, axis: &usize, keepdim: &bool) -> Self;
}

impl<E: Float> MeanDim for Tensor<E> {
    fn mean_dim_adjoint(ybar: &Self, x: &Self, axis: &usize, keepdim: &bool) -> Self {
        spread(ybar, x, *axis, *keepdim) / E::from_f64(x.shape()[*axis] as f64)
    }
}

/// `y = x.max_dim(axis, keepdim)`: the gradient goes to the first maximal element of
/// each slice (as `argmax_dim` picks it).
pub trait MaxDim: Sized {
    fn max_dim_adjoint(ybar: &Self, x: &Self, y: &Self, axis: &usize, keepdim: &bool) -> Self;
}

impl<E: Float> MaxDim for Tensor<E> {
    fn max_dim_adjoint(ybar: &Self, x: &Self, _y: &Self, axis: &usize, _keepdim: &bool) -> Self {
        // `argmax_dim` gives, for each element of the result (row-major, whether or not
        // the axis is kept), the row-major flat index into `x` of its maximum.
        let winners = x.argmax_dim(*axis);
        let g = ybar.to_vec();
        let mut data = vec![E::ZERO; x.numel()];
        for (&w, &g) in winners.iter().zip(&g) {
            data[w] = g;
        }
        Tensor::from_vec(data, x.shape())
    }
}

/// `y = ‖x‖₂` (a 0-d tensor, or a float for a matrix): ∂y/∂x = x/y (0 at x = 0, the
/// subgradient PyTorch uses).
pub trait Norm: Sized {
    type Norm;
    fn norm_adjoint(ybar: &Self::Norm, x: &Self, y: &Self::Norm) -> Self;
}

impl<E: Float> Norm for Tensor<E> {
    type Norm = Tensor<E>;
    fn norm_adjoint(ybar: &Self, x: &Self, y: &Self) -> Self {
        let y = y.item();
        let scale = if y == E::ZERO { E::ZERO } else { ybar.item() / y };
        x * scale
    }
}

/// The result of `sum()`/`item()` for matrices and tensors: `y = x[0]` of a
/// one-element tensor, as a float.
pub trait Item: Sized {
    type Scalar;
    fn item_adjoint(ybar: &Self::Scalar, x: &Self) -> Self;
}

impl<E: Float> Item for Tensor<E> {
    type Scalar = E;
    fn item_adjoint(ybar: &E, x: &Self) -> Self {
        Tensor::full(x.shape(), *ybar)
    }
}

// ---- Neural-network functions.

/// `y = softmax(x)` along `axis`: `x̄ = y ⊙ (ȳ − Σ ȳ⊙y)`.
pub trait Softmax: Sized {
    fn softmax_adjoint(ybar: &Self, y: &Self, axis: &usize) -> Self;
}

impl<E: Float> Softmax for Tensor<E> {
    fn softmax_adjoint(ybar: &Self, y: &Self, axis: &usize) -> Self {
        let dot = (ybar * y).sum_dim(*axis, true);
        y * &(ybar - &dot)
    }
}

/// `y = log_softmax(x)` along `axis`: `x̄ = ȳ − exp(y) Σ ȳ`.
pub trait LogSoftmax: Sized {
    fn log_softmax_adjoint(ybar: &Self, y: &Self, axis: &usize) -> Self;
}

impl<E: Float> LogSoftmax for Tensor<E> {
    fn log_softmax_adjoint(ybar: &Self, y: &Self, axis: &usize) -> Self {
        let total = ybar.sum_dim(*axis, true);
        ybar - &(&y.exp() * &total)
    }
}

/// `y = mean((p − t)²)`: ∂y/∂p = 2(p − t)/n, ∂y/∂t = −2(p − t)/n.
pub trait MseLoss: Sized {
    fn mse_loss_lhs_adjoint(ybar: &Self, pred: &Self, target: &Self) -> Self;
    fn mse_loss_rhs_adjoint(ybar: &Self, pred: &Self, target: &Self) -> Self;
}

/// `2ȳ(p − t)/n` over the broadcast shape.
fn mse_residual<E: Float>(ybar: &Tensor<E>, pred: &Tensor<E>, target: &Tensor<E>) -> Tensor<E> {
    let diff = pred - target;
    let scale = E::TWO * ybar.item() / E::from_f64(diff.numel() as f64);
    diff * scale
}

impl<E: Float> MseLoss for Tensor<E> {
    fn mse_loss_lhs_adjoint(ybar: &Self, pred: &Self, target: &Self) -> Self {
        mse_residual(ybar, pred, target).sum_to_shape(pred.shape())
    }
    fn mse_loss_rhs_adjoint(ybar: &Self, pred: &Self, target: &Self) -> Self {
        -mse_residual(ybar, pred, target).sum_to_shape(target.shape())
    }
}

/// `y = mean_i(−log_softmax(xᵢ)[tᵢ])`: `x̄ = ȳ (softmax(x) − onehot(t))/n`.
pub trait CrossEntropy: Sized {
    fn cross_entropy_adjoint(ybar: &Self, logits: &Self, targets: &[usize]) -> Self;
}

impl<E: Float> CrossEntropy for Tensor<E> {
    fn cross_entropy_adjoint(ybar: &Self, logits: &Self, targets: &[usize]) -> Self {
        let n = targets.len();
        let classes = logits.shape()[1];
        let p = logits.softmax(1) - Tensor::one_hot(targets, classes);
        p * (ybar.item() / E::from_f64(n as f64))
    }
}
