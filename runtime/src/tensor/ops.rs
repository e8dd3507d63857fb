//! Operators (`+ - * /`, unary `-`, `+= -= *= /=`) with NumPy broadcasting, elementwise
//! maps and functions, and comparisons.
//!
//! The owning forms (`Tensor + &Tensor`, `Tensor * 2.0`, `x += &g` …) write into the
//! owned operand's buffer when nothing else shares it and the result has its shape,
//! so chains like `(a + &b) * 2.0` allocate one buffer.

use core::ops::{Add, AddAssign, Div, DivAssign, Mul, MulAssign, Neg, Sub, SubAssign};

use super::{ShapeFmt, Tensor};
use crate::kernels::dims::same_dims;
use crate::kernels::layout::{broadcast_shapes, broadcast_strides, small_contiguous, Dims, View, SMALL_MAP};
use crate::kernels::{binary, unary, Cost, KernelParams};
use crate::Float;

/// The broadcast shape of `a` and `b`, or a panic naming `op` and both shapes.
pub(crate) fn broadcast_or_panic(a: &[usize], b: &[usize], op: &str) -> Dims {
    if same_dims(a, b) {
        return Dims::from_slice(a);
    }
    broadcast_shapes(a, b)
        .unwrap_or_else(|| panic!("adjoint: cannot broadcast shapes {} and {} in `{}`", ShapeFmt(a), ShapeFmt(b), op))
}

/// `t`'s strides broadcast to `shape` (which must be a broadcast of `t`'s shape).
fn strides_to<E: Float>(t: &Tensor<E>, shape: &[usize]) -> Dims {
    if same_dims(&t.shape, shape) {
        return t.strides.clone();
    }
    broadcast_strides(&t.shape, &t.strides, shape).expect("adjoint: internal error: broadcast strides")
}

/// `f(a, b)` elementwise with broadcasting, into a fresh tensor.
pub(crate) fn zip_new<E: Float, F: Fn(E, E) -> E + Sync + Send>(
    a: &Tensor<E>,
    b: &Tensor<E>,
    op: &str,
    f: F,
    cost: Cost,
) -> Tensor<E> {
    zip_to_shape(a, b, broadcast_or_panic(&a.shape, &b.shape, op), f, cost)
}

/// `f(a, b)` into a fresh tensor of `shape`, the broadcast of both shapes.
fn zip_to_shape<E: Float, F: Fn(E, E) -> E + Sync + Send>(
    a: &Tensor<E>,
    b: &Tensor<E>,
    shape: Dims,
    f: F,
    cost: Cost,
) -> Tensor<E> {
    let (a_read, b_read) = (a.read(), b.read());
    if same_dims(&a.shape, &shape) && same_dims(&b.shape, &shape) {
        if let (Some(x), Some(y)) = (a_read.as_slice(), b_read.as_slice()) {
            if x.len() <= SMALL_MAP {
                // Small, contiguous and of one shape (the common case in a small model):
                // one loop, no broadcast strides.
                return Tensor::filled(shape, |out| {
                    for ((d, &x), &y) in out.iter_mut().zip(x).zip(y) {
                        d.write(f(x, y));
                    }
                });
            }
        }
    }
    let (sa, sb) = (strides_to(a, &shape), strides_to(b, &shape));
    let (va, vb) = (View { strides: &sa, ..a_read.view() }, View { strides: &sb, ..b_read.view() });
    let data = binary::zip(&shape, va, vb, f, cost, &KernelParams::current());
    drop((a_read, b_read));
    Tensor::from_parts(data, shape)
}

/// `dst = f(dst, src)` in `dst`'s buffer if `dst` owns it and keeps its shape;
/// otherwise hands both back.
fn try_in_place<E: Float, F: Fn(E, E) -> E + Sync + Send>(
    mut dst: Tensor<E>,
    src: &Tensor<E>,
    shape: &[usize],
    f: F,
    cost: Cost,
) -> Result<Tensor<E>, (Tensor<E>, F)> {
    if !same_dims(&dst.shape, shape) {
        return Err((dst, f));
    }
    let Some(buf) = dst.unique_slice_mut() else { return Err((dst, f)) };
    // (`dst` owns its buffer alone, so `src` cannot share it.)
    let ss = strides_to(src, shape);
    let src_read = src.read();
    let src_view = View { strides: &ss, ..src_read.view() };
    binary::zip_in_place(buf, shape, src_view, f, cost, &KernelParams::current());
    drop(src_read);
    Ok(dst)
}

/// `f(a, b)` where `a` is owned: in `a`'s buffer when possible.
pub(crate) fn zip_owned_left<E: Float, F: Fn(E, E) -> E + Sync + Send>(
    a: Tensor<E>,
    b: &Tensor<E>,
    op: &str,
    f: F,
) -> Tensor<E> {
    let shape = broadcast_or_panic(&a.shape, &b.shape, op);
    match try_in_place(a, b, &shape, f, Cost::Cheap) {
        Ok(t) => t,
        Err((a, f)) => zip_to_shape(&a, b, shape, f, Cost::Cheap),
    }
}

/// `f(a, b)` where `b` is owned: in `b`'s buffer when possible.
pub(crate) fn zip_owned_right<E: Float, F: Fn(E, E) -> E + Sync + Send>(
    a: &Tensor<E>,
    b: Tensor<E>,
    op: &str,
    f: F,
) -> Tensor<E> {
    let shape = broadcast_or_panic(&a.shape, &b.shape, op);
    zip_owned_right_to_shape(a, b, shape, f)
}

fn zip_owned_right_to_shape<E: Float, F: Fn(E, E) -> E + Sync + Send>(
    a: &Tensor<E>,
    b: Tensor<E>,
    shape: Dims,
    f: F,
) -> Tensor<E> {
    match try_in_place(b, a, &shape, move |y, x| f(x, y), Cost::Cheap) {
        Ok(t) => t,
        Err((b, g)) => zip_to_shape(a, &b, shape, move |x, y| g(y, x), Cost::Cheap),
    }
}

/// `f(a, b)` where both are owned: in whichever buffer can take it.
pub(crate) fn zip_owned_both<E: Float, F: Fn(E, E) -> E + Sync + Send + Copy>(
    a: Tensor<E>,
    b: Tensor<E>,
    op: &str,
    f: F,
) -> Tensor<E> {
    let shape = broadcast_or_panic(&a.shape, &b.shape, op);
    match try_in_place(a, &b, &shape, f, Cost::Cheap) {
        Ok(t) => t,
        Err((a, f)) => zip_owned_right_to_shape(&a, b, shape, f),
    }
}

/// `f(x)` elementwise where `t` is owned: in its buffer when possible.
fn map_owned<E: Float, F: Fn(E) -> E + Sync + Send>(mut t: Tensor<E>, f: F, cost: Cost) -> Tensor<E> {
    let params = KernelParams::current();
    if let Some(buf) = t.unique_slice_mut() {
        unary::map_in_place(buf, f, cost, &params);
        return t;
    }
    t.map_with_cost(f, cost)
}

/// `lhs = f(lhs, rhs)` for the compound assignments: `rhs` broadcasts to `lhs`'s shape,
/// which must not change.
fn assign_op<E: Float, F: Fn(E, E) -> E + Sync + Send>(lhs: &mut Tensor<E>, rhs: &Tensor<E>, op: &str, f: F) {
    let shape = broadcast_or_panic(&lhs.shape, &rhs.shape, op);
    if shape != lhs.shape {
        panic!(
            "adjoint: cannot broadcast shape {} into the shape {} of the left side of `{}`",
            ShapeFmt(&rhs.shape),
            ShapeFmt(&lhs.shape),
            op
        );
    }
    let ss = strides_to(rhs, &shape);
    let rhs_read = rhs.read();
    let rhs_view = View { strides: &ss, ..rhs_read.view() };
    let params = KernelParams::current();
    match lhs.unique_slice_mut() {
        Some(buf) => binary::zip_in_place(buf, &shape, rhs_view, f, Cost::Cheap, &params),
        None => *lhs = zip_new(lhs, rhs, op, f, Cost::Cheap),
    }
}

/// `lhs += rhs` with an owned `rhs`: in `lhs`'s buffer if it is not shared, else in
/// `rhs`'s (addition commutes), else in a fresh one.
pub(crate) fn add_assign_owned<E: Float>(lhs: &mut Tensor<E>, rhs: Tensor<E>) {
    if lhs.unique_slice_mut().is_some() || rhs.shape != lhs.shape {
        return assign_op(lhs, &rhs, "add_assign", |x, y| x + y);
    }
    *lhs = zip_owned_right(lhs, rhs, "add_assign", |x, y| x + y);
}

impl<E: Float> Tensor<E> {
    /// `f` applied to every element, with the parallel threshold of `cost`.
    pub(crate) fn map_with_cost(&self, f: impl Fn(E) -> E + Sync + Send, cost: Cost) -> Self {
        let read = self.read();
        if let Some(x) = small_contiguous(&self.shape, &read.view()) {
            return Tensor::filled(self.shape.clone(), |out| {
                for (d, &x) in out.iter_mut().zip(x) {
                    d.write(f(x));
                }
            });
        }
        let data = unary::map(read.view(), f, cost, &KernelParams::current());
        drop(read);
        Tensor::from_parts(data, self.shape.clone())
    }

    /// `f` applied to every element (in parallel above the size threshold).
    pub fn map(&self, f: impl Fn(E) -> E + Sync + Send) -> Self {
        self.map_with_cost(f, Cost::Heavy)
    }

    /// `f(self, other)` elementwise, with broadcasting.
    pub fn zip_map(&self, other: &Self, f: impl Fn(E, E) -> E + Sync + Send) -> Self {
        zip_new(self, other, "zip_map", f, Cost::Heavy)
    }

    /// [`Tensor::zip_map`] with the parallel threshold of `cost`.
    pub(crate) fn zip_map_with_cost(&self, other: &Self, f: impl Fn(E, E) -> E + Sync + Send, cost: Cost) -> Self {
        zip_new(self, other, "zip_map", f, cost)
    }

    /// `x^n` elementwise.
    pub fn powi(&self, n: i32) -> Self {
        match n {
            1 => self.map_with_cost(|x| x, Cost::Cheap),
            2 => self.map_with_cost(|x| x * x, Cost::Cheap),
            _ => self.map(move |x| x.powi(n)),
        }
    }

    /// `x^p` elementwise.
    pub fn powf(&self, p: E) -> Self {
        self.map(move |x| x.powf(p))
    }

    /// `eˣ` elementwise.
    pub fn exp(&self) -> Self {
        self.map(E::exp_vectorizable)
    }

    /// Natural logarithm elementwise.
    pub fn ln(&self) -> Self {
        self.map(E::ln)
    }

    /// Square root elementwise.
    pub fn sqrt(&self) -> Self {
        self.map(E::sqrt)
    }

    /// Absolute value elementwise.
    pub fn abs(&self) -> Self {
        self.map_with_cost(E::abs, Cost::Cheap)
    }

    /// Sine elementwise.
    pub fn sin(&self) -> Self {
        self.map(E::sin)
    }

    /// Cosine elementwise.
    pub fn cos(&self) -> Self {
        self.map(E::cos)
    }

    /// Hyperbolic tangent elementwise.
    pub fn tanh(&self) -> Self {
        self.map(E::tanh_vectorizable)
    }

    /// The logistic function `1 / (1 + e^{-x})`, computed without overflow.
    pub fn sigmoid(&self) -> Self {
        self.map(sigmoid)
    }

    /// `max(x, 0)` elementwise (NaN stays NaN).
    pub fn relu(&self) -> Self {
        self.map_with_cost(|x| if x < E::ZERO { E::ZERO } else { x }, Cost::Cheap)
    }

    /// −1, 0 or 1 by the sign (`signum(0) = 0`; NaN stays NaN).
    pub fn signum(&self) -> Self {
        self.map_with_cost(
            |x| {
                if x > E::ZERO {
                    E::ONE
                } else if x < E::ZERO {
                    -E::ONE
                } else {
                    x
                }
            },
            Cost::Cheap,
        )
    }

    /// 1 where `self > other`, else 0 (with broadcasting).
    pub fn gt(&self, other: &Self) -> Self {
        zip_new(self, other, "gt", |a, b| indicator(a > b), Cost::Cheap)
    }

    /// 1 where `self < other`, else 0 (with broadcasting).
    pub fn lt(&self, other: &Self) -> Self {
        zip_new(self, other, "lt", |a, b| indicator(a < b), Cost::Cheap)
    }

    /// 1 where `self >= other`, else 0 (with broadcasting).
    pub fn ge(&self, other: &Self) -> Self {
        zip_new(self, other, "ge", |a, b| indicator(a >= b), Cost::Cheap)
    }

    /// 1 where `self <= other`, else 0 (with broadcasting).
    pub fn le(&self, other: &Self) -> Self {
        zip_new(self, other, "le", |a, b| indicator(a <= b), Cost::Cheap)
    }
}

#[inline(always)]
fn indicator<E: Float>(b: bool) -> E {
    if b {
        E::ONE
    } else {
        E::ZERO
    }
}

/// `1 / (1 + e^{-x})` from `e = e^{-|x|}` (never overflows): `1 / (1 + e)` for `x ≥ 0`,
/// `e / (1 + e)` otherwise; branch-free, so the map vectorises.
#[inline(always)]
fn sigmoid<E: Float>(x: E) -> E {
    let e = (-x.abs()).exp_vectorizable();
    let s = E::ONE / (E::ONE + e);
    if x >= E::ZERO {
        s
    } else {
        e * s
    }
}

macro_rules! binary_operator {
    ($Trait:ident, $method:ident, $name:literal, $op:tt, $($scalar:ty),*) => {
        impl<E: Float> $Trait<&Tensor<E>> for &Tensor<E> {
            type Output = Tensor<E>;
            fn $method(self, rhs: &Tensor<E>) -> Tensor<E> {
                zip_new(self, rhs, $name, |a, b| a $op b, Cost::Cheap)
            }
        }
        impl<E: Float> $Trait<Tensor<E>> for Tensor<E> {
            type Output = Tensor<E>;
            fn $method(self, rhs: Tensor<E>) -> Tensor<E> {
                zip_owned_both(self, rhs, $name, |a, b| a $op b)
            }
        }
        impl<E: Float> $Trait<&Tensor<E>> for Tensor<E> {
            type Output = Tensor<E>;
            fn $method(self, rhs: &Tensor<E>) -> Tensor<E> {
                zip_owned_left(self, rhs, $name, |a, b| a $op b)
            }
        }
        impl<E: Float> $Trait<Tensor<E>> for &Tensor<E> {
            type Output = Tensor<E>;
            fn $method(self, rhs: Tensor<E>) -> Tensor<E> {
                zip_owned_right(self, rhs, $name, |a, b| a $op b)
            }
        }
        impl<E: Float> $Trait<E> for Tensor<E> {
            type Output = Tensor<E>;
            fn $method(self, rhs: E) -> Tensor<E> {
                map_owned(self, move |a| a $op rhs, Cost::Cheap)
            }
        }
        impl<E: Float> $Trait<E> for &Tensor<E> {
            type Output = Tensor<E>;
            fn $method(self, rhs: E) -> Tensor<E> {
                self.map_with_cost(move |a| a $op rhs, Cost::Cheap)
            }
        }
        $(
            impl $Trait<Tensor<$scalar>> for $scalar {
                type Output = Tensor<$scalar>;
                fn $method(self, rhs: Tensor<$scalar>) -> Tensor<$scalar> {
                    map_owned(rhs, move |b| self $op b, Cost::Cheap)
                }
            }
            impl $Trait<&Tensor<$scalar>> for $scalar {
                type Output = Tensor<$scalar>;
                fn $method(self, rhs: &Tensor<$scalar>) -> Tensor<$scalar> {
                    rhs.map_with_cost(move |b| self $op b, Cost::Cheap)
                }
            }
        )*
    };
}

binary_operator!(Add, add, "add", +, f32, f64);
binary_operator!(Sub, sub, "sub", -, f32, f64);
binary_operator!(Mul, mul, "mul", *, f32, f64);
binary_operator!(Div, div, "div", /, f32, f64);

macro_rules! assign_operator {
    ($Trait:ident, $method:ident, $name:literal, $op:tt) => {
        impl<E: Float> $Trait<&Tensor<E>> for Tensor<E> {
            fn $method(&mut self, rhs: &Tensor<E>) {
                assign_op(self, rhs, $name, |a, b| a $op b);
            }
        }
        impl<E: Float> $Trait<Tensor<E>> for Tensor<E> {
            fn $method(&mut self, rhs: Tensor<E>) {
                assign_op(self, &rhs, $name, |a, b| a $op b);
            }
        }
        impl<E: Float> $Trait<E> for Tensor<E> {
            fn $method(&mut self, rhs: E) {
                let params = KernelParams::current();
                match self.unique_slice_mut() {
                    Some(buf) => unary::map_in_place(buf, move |a| a $op rhs, Cost::Cheap, &params),
                    None => *self = self.map_with_cost(move |a| a $op rhs, Cost::Cheap),
                }
            }
        }
    };
}

assign_operator!(SubAssign, sub_assign, "sub_assign", -);
assign_operator!(MulAssign, mul_assign, "mul_assign", *);
assign_operator!(DivAssign, div_assign, "div_assign", /);

impl<E: Float> AddAssign<&Tensor<E>> for Tensor<E> {
    fn add_assign(&mut self, rhs: &Tensor<E>) {
        assign_op(self, rhs, "add_assign", |a, b| a + b);
    }
}

impl<E: Float> AddAssign<Tensor<E>> for Tensor<E> {
    /// Gradient accumulation: in `self`'s buffer if it is not shared, else in `rhs`'s.
    fn add_assign(&mut self, rhs: Tensor<E>) {
        add_assign_owned(self, rhs);
    }
}

impl<E: Float> AddAssign<E> for Tensor<E> {
    fn add_assign(&mut self, rhs: E) {
        let params = KernelParams::current();
        match self.unique_slice_mut() {
            Some(buf) => unary::map_in_place(buf, move |a| a + rhs, Cost::Cheap, &params),
            None => *self = self.map_with_cost(move |a| a + rhs, Cost::Cheap),
        }
    }
}

impl<E: Float> Neg for Tensor<E> {
    type Output = Tensor<E>;
    fn neg(self) -> Tensor<E> {
        map_owned(self, |a| -a, Cost::Cheap)
    }
}

impl<E: Float> Neg for &Tensor<E> {
    type Output = Tensor<E>;
    fn neg(self) -> Tensor<E> {
        self.map_with_cost(|a| -a, Cost::Cheap)
    }
}
