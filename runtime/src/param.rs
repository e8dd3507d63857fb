//! Leaves: parameters whose gradients accumulate, and the values that hold them.
//!
//! A [`Param`] is a shared handle to a value and its accumulated gradient, like a
//! PyTorch tensor with `requires_grad`: clones share both, so a model and its optimizer
//! see the same parameter. `backward!` adds the gradient of a function's output into
//! every parameter among its arguments ([`Differentiable::deposit`]); gradients add up
//! across calls until [`Param::zero_grad`]. Accumulation is behind a lock, so backward
//! calls from several threads into the same parameters lose no update.

use std::fmt;
use std::ops::Deref;
use std::sync::{Arc, Mutex, MutexGuard};

use crate::support::{Adjoint, Tangent, ZeroTangent};

struct ParamInner<T: Tangent> {
    value: T,
    grad: Mutex<Option<T::Tangent>>,
}

/// A parameter (a leaf): a value and the gradient accumulated into it.
pub struct Param<T: Tangent> {
    inner: Arc<ParamInner<T>>,
}

impl<T: Tangent> Clone for Param<T> {
    /// Another handle to the same parameter.
    fn clone(&self) -> Self {
        Param { inner: Arc::clone(&self.inner) }
    }
}

impl<T: Tangent> Param<T> {
    /// A new parameter with no gradient yet.
    pub fn new(value: T) -> Self {
        Param { inner: Arc::new(ParamInner { value, grad: Mutex::new(None) }) }
    }

    /// The parameter's value.
    pub fn value(&self) -> &T {
        &self.inner.value
    }

    fn grad_slot(&self) -> MutexGuard<'_, Option<T::Tangent>> {
        // A panic while accumulating leaves a well-formed value behind.
        self.inner.grad.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The accumulated gradient: `None` until the first backward pass, and after
    /// [`zero_grad`](Self::zero_grad).
    pub fn grad(&self) -> Option<T::Tangent>
    where
        T::Tangent: Clone,
    {
        self.grad_slot().clone()
    }

    /// Forget the accumulated gradient.
    pub fn zero_grad(&self) {
        *self.grad_slot() = None;
    }

    /// Add `g` to the accumulated gradient.
    pub fn accumulate_grad(&self, g: T::Tangent)
    where
        T::Tangent: Adjoint,
    {
        if g.is_untouched_zero() {
            // Nothing reached this leaf: like PyTorch, its gradient stays as it was.
            return;
        }
        let mut slot = self.grad_slot();
        match slot.as_mut() {
            Some(acc) => acc.accumulate(g),
            None => *slot = Some(g),
        }
    }

    /// Update the value in place, for every handle: `f(value, grad)` with the
    /// accumulated gradient (`None` before the first backward pass). Like PyTorch's
    /// `with torch.no_grad(): w -= lr * w.grad`:
    ///
    /// ```
    /// # use adjoint_runtime::{Param, Tensor};
    /// let w = Param::new(Tensor::from_vec(vec![1.0_f32, 2.0], &[2]));
    /// w.accumulate_grad(Tensor::from_vec(vec![10.0, 10.0], &[2]));
    /// let alias = w.clone();
    /// w.update(|value, grad| *value -= &(grad.unwrap() * 0.1));
    /// assert_eq!(alias.value().to_vec(), vec![0.0, 1.0]);
    /// ```
    pub fn update(&self, f: impl FnOnce(&mut T, Option<&T::Tangent>))
    where
        T: UpdateInPlace,
        T::Tangent: Clone,
    {
        let grad = self.grad();
        self.inner.value.update_in_place(|value| f(value, grad.as_ref()));
    }

    /// Whether two handles are the same parameter.
    pub fn ptr_eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.inner, &other.inner)
    }
}

impl<T: Tangent> Deref for Param<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.inner.value
    }
}

impl<T: Tangent + fmt::Debug> fmt::Debug for Param<T>
where
    T::Tangent: fmt::Debug,
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Param").field("value", &self.inner.value).field("grad", &*self.grad_slot()).finish()
    }
}

impl<T: Tangent> From<T> for Param<T> {
    fn from(value: T) -> Self {
        Param::new(value)
    }
}

impl<T: Tangent> Tangent for Param<T> {
    type Tangent = T::Tangent;
}

impl<T: ZeroTangent> ZeroTangent for Param<T> {
    fn zero_tangent(&self) -> T::Tangent {
        self.inner.value.zero_tangent()
    }
}

/// Values a [`Param`] can update in place while handing out `&Self` (their storage is
/// shared and synchronised: tensors).
pub trait UpdateInPlace {
    fn update_in_place(&self, f: impl FnOnce(&mut Self));
}

impl<E: crate::Float> UpdateInPlace for crate::Tensor<E> {
    fn update_in_place(&self, f: impl FnOnce(&mut Self)) {
        self.update(f)
    }
}

/// Values that can be differentiated as a whole and may hold parameters: floats,
/// tensors, [`Param`]s, vectors of those, and structs with `#[derive(Differentiable)]`.
#[diagnostic::on_unimplemented(
    message = "`{Self}` has no gradient type, but it is an argument adjoint differentiates",
    label = "no gradient type",
    note = "add `#[derive(Differentiable)]` to `{Self}` (its float, vector and array fields get gradients, its integer fields none), or leave the argument out of the gradient with `#[differentiable(wrt(…))]` or `#[no_grad]` on it"
)]
pub trait Differentiable: ZeroTangent {
    /// The parameter type held inside (`Param<Tensor>` for a model of tensors).
    type Param;

    /// Append every parameter, with its dotted path below `prefix`, in field order.
    fn collect_params(&self, prefix: &str, out: &mut Vec<(String, Self::Param)>);

    /// Add a gradient of this value into the parameters it holds.
    fn deposit(&self, grad: &Self::Tangent);

    /// Every parameter, in field order.
    fn parameters(&self) -> Vec<Self::Param> {
        self.named_parameters().into_iter().map(|(_, p)| p).collect()
    }

    /// Every parameter with its dotted field path (`fc1.weight`), in field order.
    fn named_parameters(&self) -> Vec<(String, Self::Param)> {
        let mut out = Vec::new();
        self.collect_params("", &mut out);
        out
    }
}

/// `prefix.name`, or `name` at the top.
pub fn join_path(prefix: &str, name: &str) -> String {
    if prefix.is_empty() {
        name.to_string()
    } else {
        format!("{prefix}.{name}")
    }
}

impl<T: ZeroTangent> Differentiable for Param<T>
where
    T::Tangent: Adjoint + Clone,
{
    type Param = Param<T>;
    fn collect_params(&self, prefix: &str, out: &mut Vec<(String, Param<T>)>) {
        out.push((prefix.to_string(), self.clone()));
    }
    fn deposit(&self, grad: &T::Tangent) {
        self.accumulate_grad(grad.clone());
    }
}

macro_rules! no_params {
    ($($t:ty)*) => {$(
        impl Differentiable for $t {
            type Param = Param<$t>;
            fn collect_params(&self, _: &str, _: &mut Vec<(String, Param<$t>)>) {}
            fn deposit(&self, _: &$t) {}
        }
    )*};
}
no_params!(f32 f64);

impl<E: crate::Float> Differentiable for crate::Tensor<E> {
    type Param = Param<crate::Tensor<E>>;
    fn collect_params(&self, _: &str, _: &mut Vec<(String, Self::Param)>) {}
    fn deposit(&self, _: &Self) {}
}

impl<T, R, C, S> Differentiable for nalgebra::Matrix<T, R, C, S>
where
    T: crate::rules::MatrixScalar,
    R: nalgebra::Dim,
    C: nalgebra::Dim,
    S: nalgebra::RawStorage<T, R, C>,
    nalgebra::DefaultAllocator: nalgebra::allocator::Allocator<R, C>,
{
    type Param = Param<Self>;
    fn collect_params(&self, _: &str, _: &mut Vec<(String, Self::Param)>) {}
    fn deposit(&self, _: &Self::Tangent) {}
}

impl<T: Differentiable + Clone> Differentiable for Vec<T>
where
    T::Tangent: Adjoint + Clone,
{
    type Param = T::Param;
    fn collect_params(&self, prefix: &str, out: &mut Vec<(String, T::Param)>) {
        for (i, item) in self.iter().enumerate() {
            item.collect_params(&join_path(prefix, &i.to_string()), out);
        }
    }
    fn deposit(&self, grad: &Vec<T::Tangent>) {
        for (item, g) in self.iter().zip(grad) {
            item.deposit(g);
        }
    }
}

impl<T: Differentiable + ?Sized> Differentiable for &T {
    type Param = T::Param;
    fn collect_params(&self, prefix: &str, out: &mut Vec<(String, T::Param)>) {
        (**self).collect_params(prefix, out)
    }
    fn deposit(&self, grad: &T::Tangent) {
        (**self).deposit(grad)
    }
}

impl<T: Tangent + crate::support::Primal> crate::support::Primal for Param<T> {
    type Value = T::Value;
    #[inline]
    fn primal(&self) -> &T::Value {
        self.inner.value.primal()
    }
}

/// Operators on tensor parameters: a `Param<Tensor>` (or a reference to one) combines
/// with tensors, other parameters and scalars as its value does, so model code reads
/// `x.matmul(&self.weight) + &self.bias` without spelling out the dereference.
mod operators {
    use super::Param;
    use crate::{Float, Tensor};
    use std::ops::{Add, Div, Mul, Neg, Sub};

    // How each operand is seen by the tensor operator (`&Tensor` or a scalar).
    fn tensor<E: Float>(x: &Tensor<E>) -> &Tensor<E> {
        x
    }
    fn tensor_ref<'a, E: Float>(x: &&'a Tensor<E>) -> &'a Tensor<E> {
        x
    }
    fn param<E: Float>(x: &Param<Tensor<E>>) -> &Tensor<E> {
        x
    }
    fn param_ref<'a, E: Float>(x: &&'a Param<Tensor<E>>) -> &'a Tensor<E> {
        x
    }
    fn scalar<F: Float>(x: &F) -> F {
        *x
    }

    macro_rules! param_operator {
        ($Trait:ident, $method:ident) => {
            param_operator!(@pair $Trait, $method, [E: Float], Tensor<E>, Param<Tensor<E>>, Tensor<E>, param, tensor);
            param_operator!(@pair $Trait, $method, [E: Float], Tensor<E>, Param<Tensor<E>>, &Tensor<E>, param, tensor_ref);
            param_operator!(@pair $Trait, $method, [E: Float], Tensor<E>, &Param<Tensor<E>>, Tensor<E>, param_ref, tensor);
            param_operator!(@pair $Trait, $method, [E: Float], Tensor<E>, &Param<Tensor<E>>, &Tensor<E>, param_ref, tensor_ref);
            param_operator!(@pair $Trait, $method, [E: Float], Tensor<E>, Tensor<E>, Param<Tensor<E>>, tensor, param);
            param_operator!(@pair $Trait, $method, [E: Float], Tensor<E>, &Tensor<E>, Param<Tensor<E>>, tensor_ref, param);
            param_operator!(@pair $Trait, $method, [E: Float], Tensor<E>, Tensor<E>, &Param<Tensor<E>>, tensor, param_ref);
            param_operator!(@pair $Trait, $method, [E: Float], Tensor<E>, &Tensor<E>, &Param<Tensor<E>>, tensor_ref, param_ref);
            param_operator!(@pair $Trait, $method, [E: Float], Tensor<E>, Param<Tensor<E>>, Param<Tensor<E>>, param, param);
            param_operator!(@pair $Trait, $method, [E: Float], Tensor<E>, &Param<Tensor<E>>, &Param<Tensor<E>>, param_ref, param_ref);
            param_operator!(@pair $Trait, $method, [E: Float], Tensor<E>, Param<Tensor<E>>, E, param, scalar);
            param_operator!(@pair $Trait, $method, [E: Float], Tensor<E>, &Param<Tensor<E>>, E, param_ref, scalar);
            param_operator!(@pair $Trait, $method, [], Tensor<f32>, f32, Param<Tensor<f32>>, scalar, param);
            param_operator!(@pair $Trait, $method, [], Tensor<f32>, f32, &Param<Tensor<f32>>, scalar, param_ref);
            param_operator!(@pair $Trait, $method, [], Tensor<f64>, f64, Param<Tensor<f64>>, scalar, param);
            param_operator!(@pair $Trait, $method, [], Tensor<f64>, f64, &Param<Tensor<f64>>, scalar, param_ref);
        };
        (@pair $Trait:ident, $method:ident, [$($g:tt)*], $Out:ty, $Lhs:ty, $Rhs:ty, $l:ident, $r:ident) => {
            impl<$($g)*> $Trait<$Rhs> for $Lhs {
                type Output = $Out;
                #[inline]
                fn $method(self, rhs: $Rhs) -> Self::Output {
                    $Trait::$method($l(&self), $r(&rhs))
                }
            }
        };
    }

    param_operator!(Add, add);
    param_operator!(Sub, sub);
    param_operator!(Mul, mul);
    param_operator!(Div, div);

    impl<E: Float> Neg for Param<Tensor<E>> {
        type Output = Tensor<E>;
        fn neg(self) -> Tensor<E> {
            -&*self
        }
    }

    impl<E: Float> Neg for &Param<Tensor<E>> {
        type Output = Tensor<E>;
        fn neg(self) -> Tensor<E> {
            -&**self
        }
    }
}
