//! Tensors: n-dimensional arrays of `f32` or `f64` with shared, copy-on-write storage.
//!
//! A [`Tensor`] is a strided view (shape, strides, offset) of a reference-counted buffer,
//! so `clone`, [`Tensor::t`], [`Tensor::transpose`], [`Tensor::narrow`],
//! [`Tensor::select`], [`Tensor::broadcast_to`] and the [`Tensor::reshape`] of a
//! contiguous tensor copy no data. Every other operation returns a fresh, contiguous
//! tensor, except the in-place operators (`+=` …) and the owning binary operators,
//! which write into the left operand's buffer when nothing else shares it.
//!
//! The operations are grouped by family: [`shape`](self::shape) (views, joining,
//! gathering), `ops` (operators and elementwise maps), `reduce`, `linalg` (matmul),
//! `nn` (softmax and losses) and `convert` (nalgebra). The numeric work is done by the
//! crate's kernels, whose parallelism is set by [`KernelParams`].
//!
//! ```
//! use adjoint_runtime::tensor::Tensor;
//! let x = Tensor::from_vec(vec![1.0_f32, 2.0, 3.0, 4.0, 5.0, 6.0], &[2, 3]);
//! let b = Tensor::from_vec(vec![10.0, 20.0, 30.0], &[3]);
//! let y = &x + &b; // broadcast over the rows
//! assert_eq!(y.to_vec(), vec![11.0, 22.0, 33.0, 14.0, 25.0, 36.0]);
//! assert_eq!(y.sum().item(), 141.0);
//! assert_eq!(x.matmul(&x.t()).shape(), &[2, 2]);
//! ```

mod convert;
mod linalg;
mod nn;
pub(crate) mod ops;
mod pool;
mod reduce;
pub mod shape;
mod storage;

pub(crate) use storage::Read;
use storage::{inline_capacity, Storage};

use std::fmt;
use std::mem::{ManuallyDrop, MaybeUninit};
use std::sync::Arc;

use crate::kernels::layout::{contiguous_strides, is_contiguous, Dims};
use crate::kernels::unary;
use crate::kernels::Cost;
pub use crate::kernels::{in_thread_pool, set_kernel_params, with_kernel_params, KernelParams, Par};
use crate::random::Rng;
use crate::support::{Adjoint, Seed, Tangent, ZeroTangent};
use crate::Float;

/// An n-dimensional array of `E` (`f32` by default).
///
/// Cloning is cheap (the storage is shared); the tensor is `Send + Sync`. Shape errors
/// panic with a message that names the operation and the shapes.
pub struct Tensor<E: Float = f32> {
    /// Given back to the [`pool`] when the tensor drops (hence `ManuallyDrop`).
    storage: ManuallyDrop<Arc<Storage<E>>>,
    shape: Dims,
    strides: Dims,
    offset: usize,
    /// A gradient nothing has been added to yet: every element is zero and the
    /// storage holds a single zero broadcast to the shape (see [`Adjoint::zero_like`]),
    /// so starting an adjoint costs no buffer of the full size and a parameter the
    /// output does not depend on receives no gradient at all (PyTorch's `None`).
    untouched_zero: bool,
}

impl<E: Float> Drop for Tensor<E> {
    fn drop(&mut self) {
        // SAFETY: the field is not used again.
        pool::give(unsafe { ManuallyDrop::take(&mut self.storage) });
    }
}

impl<E: Float> Clone for Tensor<E> {
    fn clone(&self) -> Self {
        Tensor {
            storage: ManuallyDrop::new(Arc::clone(&self.storage)),
            shape: self.shape.clone(),
            strides: self.strides.clone(),
            offset: self.offset,
            untouched_zero: self.untouched_zero,
        }
    }
}

/// `[a, b, c]` for messages.
pub(crate) struct ShapeFmt<'a>(pub &'a [usize]);

impl fmt::Display for ShapeFmt<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.0)
    }
}

impl<E: Float> Tensor<E> {
    /// A contiguous tensor owning `data` (row-major) with `shape`.
    #[inline]
    pub(crate) fn from_parts(data: Vec<E>, shape: impl Into<Dims>) -> Self {
        let shape = shape.into();
        debug_assert_eq!(data.len(), shape.iter().product::<usize>());
        let strides = contiguous_strides(&shape);
        Tensor {
            storage: ManuallyDrop::new(Arc::new(Storage::new(data))),
            shape,
            strides,
            offset: 0,
            untouched_zero: false,
        }
    }

    /// A contiguous tensor of `shape` whose elements `fill` writes (all of them, in
    /// row-major order); a small one is held inside its storage, allocating once.
    #[inline]
    pub(crate) fn filled(shape: impl Into<Dims>, fill: impl FnOnce(&mut [MaybeUninit<E>])) -> Self {
        let shape = shape.into();
        let strides = contiguous_strides(&shape);
        let len = shape.iter().product();
        let pooled = if len <= inline_capacity::<E>() { pool::take::<E>() } else { None };
        let storage = match pooled {
            Some(mut storage) => {
                Arc::get_mut(&mut storage).expect("a pooled storage has no other handle").refill(len, fill);
                storage
            }
            None => Storage::filled(len, fill),
        };
        Tensor { storage: ManuallyDrop::new(storage), shape, strides, offset: 0, untouched_zero: false }
    }

    /// A view of this tensor's storage with another layout.
    pub(crate) fn with_layout(&self, shape: impl Into<Dims>, strides: impl Into<Dims>, offset: usize) -> Self {
        let (shape, strides) = (shape.into(), strides.into());
        let storage = ManuallyDrop::new(Arc::clone(&self.storage));
        Tensor { storage, shape, strides, offset, untouched_zero: self.untouched_zero }
    }

    /// A snapshot of this tensor's data for one operation: `t.read().view()`.
    pub(crate) fn read(&self) -> Read<'_, E> {
        let data = self.storage.begin_read();
        // SAFETY: the read in progress keeps the buffer's `len` elements alive and
        // unchanged until `Read::drop` ends it.
        Read { data: unsafe { std::slice::from_raw_parts(data, self.storage.len) }, tensor: self }
    }

    /// Whether this is the transpose of a row-major matrix (a 2-D view with unit row
    /// stride, such as `w.t()`).
    pub(crate) fn is_column_major(&self) -> bool {
        self.shape.len() == 2 && self.strides[0] == 1 && self.shape[1] > 1 && self.strides[1] == self.shape[0]
    }

    /// Whether the elements are laid out row-major without gaps.
    pub fn is_contiguous(&self) -> bool {
        is_contiguous(&self.shape, &self.strides)
    }

    /// The elements as a mutable row-major slice, if the tensor is contiguous, spans its
    /// whole buffer and shares it with no other tensor.
    pub(crate) fn unique_slice_mut(&mut self) -> Option<&mut [E]> {
        let n = self.numel();
        if self.offset != 0 || !self.is_contiguous() {
            return None;
        }
        // A shared storage is the common refusal: a plain load says so, where
        // `Arc::get_mut` would spend a compare-and-swap.
        if Arc::strong_count(&self.storage) != 1 {
            return None;
        }
        let storage = Arc::get_mut(&mut self.storage)?;
        if storage.len != n {
            return None;
        }
        // The caller is about to write: this is no longer a zero nothing was added to.
        self.untouched_zero = false;
        Some(storage.as_mut_slice())
    }

    /// Change the elements of this tensor *for every handle that shares its storage*
    /// (clones, views, the `Param` that holds it): `f` gets the tensor to modify and
    /// must keep its shape. This is how optimizers update parameters in place: the
    /// buffer is written where it is, unless a computation still reads it, in which
    /// case that computation keeps the old values and the handles get a new buffer.
    ///
    /// Panics if the tensor is a view of part of a larger buffer, or if `f` changes the
    /// shape, and if `f` reads this tensor through another handle (a read would wait
    /// for the update to finish; `f` should read the tensor it receives).
    pub fn update(&self, f: impl FnOnce(&mut Tensor<E>)) {
        let n = self.numel();
        if self.offset != 0 || !self.is_contiguous() || self.storage.len != n {
            panic!(
                "adjoint: `update` needs a tensor that owns its whole buffer, got a view of shape {}",
                ShapeFmt(&self.shape)
            );
        }
        let (outcome, new_shape, aliased) = self.storage.update(|data| {
            let mut value = Tensor::from_parts(data, self.shape.clone());
            let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| f(&mut value)));
            let (new_shape, aliased) = (value.shape.clone(), Arc::ptr_eq(&value.storage, &self.storage));
            // The new buffer: what `f` left (also when it panicked or changed the shape
            // but not the length), else NaNs, which no later computation mistakes for
            // values.
            let installed = match value.numel() == n && !aliased {
                true => value.into_contiguous_vec(),
                false => vec![E::from_f64(f64::NAN); n],
            };
            (installed, (outcome, new_shape, aliased))
        });
        if let Err(panic) = outcome {
            std::panic::resume_unwind(panic);
        }
        if aliased {
            panic!("adjoint: the function given to `update` replaced the tensor by a view of the tensor it updates; write into the tensor it receives instead");
        }
        if new_shape != self.shape {
            panic!(
                "adjoint: `update` changed the shape {} to {}; an update must keep the shape",
                ShapeFmt(&self.shape),
                ShapeFmt(&new_shape)
            );
        }
    }

    /// The elements in row-major order as an owned `Vec`: this tensor's buffer itself
    /// when it is the buffer's only handle and spans all of it, else a copy.
    fn into_contiguous_vec(self) -> Vec<E> {
        if self.offset == 0 && self.is_contiguous() && self.storage.len == self.numel() {
            let storage = Arc::clone(&self.storage);
            drop(self);
            Storage::into_vec(storage)
        } else {
            self.to_vec()
        }
    }

    /// A zero gradient of `shape` that owns no buffer of that size: one zero, broadcast.
    fn untouched_zero(shape: &[usize]) -> Self {
        Tensor {
            storage: ManuallyDrop::new(Arc::new(Storage::new(vec![E::ZERO]))),
            shape: shape.into(),
            strides: Dims::from_elem(0, shape.len()),
            offset: 0,
            untouched_zero: true,
        }
    }

    /// This tensor, contiguous (itself if it already is, else a copy).
    pub fn contiguous(&self) -> Self {
        if self.is_contiguous() {
            self.clone()
        } else {
            Tensor::from_parts(self.to_vec(), self.shape.clone())
        }
    }

    /// A tensor of `shape` holding `data` in row-major order.
    ///
    /// Panics if `data.len()` is not the product of `shape`.
    pub fn from_vec(data: Vec<E>, shape: &[usize]) -> Self {
        let n: usize = shape.iter().product();
        if data.len() != n {
            panic!("adjoint: `from_vec` got {} values for shape {} ({} elements)", data.len(), ShapeFmt(shape), n);
        }
        Tensor::from_parts(data, shape.to_vec())
    }

    /// A tensor of `shape` with every element `value`.
    pub fn full(shape: &[usize], value: E) -> Self {
        // Written element by element (not calloc'd): an adjoint buffer is read before it
        // is written, and fresh zero pages would then fault twice.
        Tensor::filled(shape, |out| out.iter_mut().for_each(|x| _ = x.write(value)))
    }

    /// Zeros of `shape`.
    pub fn zeros(shape: &[usize]) -> Self {
        Tensor::full(shape, E::ZERO)
    }

    /// Ones of `shape`.
    pub fn ones(shape: &[usize]) -> Self {
        Tensor::full(shape, E::ONE)
    }

    /// A 0-d tensor holding `value`.
    pub fn scalar(value: E) -> Self {
        Tensor::filled(Dims::new(), |out| _ = out[0].write(value))
    }

    /// Standard normal samples of `shape`.
    pub fn randn(shape: &[usize], rng: &mut Rng) -> Self {
        let mut data = vec![E::ZERO; shape.iter().product()];
        rng.fill_normal(&mut data);
        Tensor::from_parts(data, shape.to_vec())
    }

    /// Uniform samples in `[0, 1)` of `shape`.
    pub fn rand(shape: &[usize], rng: &mut Rng) -> Self {
        Tensor::uniform(shape, E::ZERO, E::ONE, rng)
    }

    /// Uniform samples in `[lo, hi)` of `shape`.
    pub fn uniform(shape: &[usize], lo: E, hi: E, rng: &mut Rng) -> Self {
        let mut data = vec![E::ZERO; shape.iter().product()];
        rng.fill_uniform(&mut data, lo, hi);
        Tensor::from_parts(data, shape.to_vec())
    }

    /// The length of each dimension.
    pub fn shape(&self) -> &[usize] {
        &self.shape
    }

    /// The number of dimensions.
    pub fn ndim(&self) -> usize {
        self.shape.len()
    }

    /// The number of elements.
    pub fn numel(&self) -> usize {
        self.shape.iter().product()
    }

    /// The elements in row-major order.
    pub fn to_vec(&self) -> Vec<E> {
        let read = self.read();
        match read.as_slice() {
            Some(s) => s.to_vec(),
            None => unary::map(read.view(), |x| x, Cost::Cheap, &KernelParams::current()),
        }
    }

    /// The single element of a tensor with one element (of any shape).
    ///
    /// Panics unless `numel() == 1`.
    pub fn item(&self) -> E {
        if self.numel() != 1 {
            panic!("adjoint: `item` needs a tensor with one element, got shape {}", ShapeFmt(&self.shape));
        }
        self.read().buffer()[self.offset]
    }

    /// Zeros of this tensor's shape.
    pub fn zeros_like(&self) -> Self {
        Tensor::zeros(&self.shape)
    }

    /// Ones of this tensor's shape.
    pub fn ones_like(&self) -> Self {
        Tensor::ones(&self.shape)
    }
}

impl<E: Float> fmt::Debug for Tensor<E> {
    /// `Tensor([2, 3], [[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]])`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fn nested<E: Float>(f: &mut fmt::Formatter<'_>, shape: &[usize], data: &[E]) -> fmt::Result {
            match shape {
                [] => write!(f, "{:?}", data[0]),
                [n, rest @ ..] => {
                    let step: usize = rest.iter().product();
                    write!(f, "[")?;
                    for i in 0..*n {
                        if i > 0 {
                            write!(f, ", ")?;
                        }
                        nested(f, rest, &data[i * step..(i + 1) * step])?;
                    }
                    write!(f, "]")
                }
            }
        }
        write!(f, "Tensor({:?}, ", self.shape)?;
        nested(f, &self.shape, &self.to_vec())?;
        write!(f, ")")
    }
}

impl<E: Float> PartialEq for Tensor<E> {
    /// Same shape and the same elements (so NaN ≠ NaN).
    fn eq(&self, other: &Self) -> bool {
        if self.shape != other.shape {
            return false;
        }
        match (self.read().as_slice(), other.read().as_slice()) {
            (Some(a), Some(b)) => a == b,
            _ => self.to_vec() == other.to_vec(),
        }
    }
}

impl<E: Float> Tangent for Tensor<E> {
    type Tangent = Tensor<E>;
}

impl<E: Float> Adjoint for Tensor<E> {
    /// A zero that allocates nothing of the full size: the first gradient added to it
    /// replaces it.
    fn zero_like(&self) -> Self {
        Tensor::untouched_zero(&self.shape)
    }

    fn is_untouched_zero(&self) -> bool {
        self.untouched_zero
    }

    /// `self += other`, in place when `self`'s storage is not shared (else into
    /// `other`'s, or a fresh buffer). Panics with both shapes if they differ: gradients
    /// are never broadcast silently.
    fn accumulate(&mut self, other: Self) {
        if self.shape != other.shape {
            panic!(
                "adjoint: cannot accumulate a gradient of shape {} into one of shape {}",
                ShapeFmt(&other.shape),
                ShapeFmt(&self.shape)
            );
        }
        if other.untouched_zero {
            return;
        }
        if self.untouched_zero {
            *self = other;
            return;
        }
        ops::add_assign_owned(self, other);
    }
}

impl<E: Float> ZeroTangent for Tensor<E> {
    fn zero_tangent(&self) -> Self {
        Tensor::untouched_zero(&self.shape)
    }
}

impl<E: Float> Seed for Tensor<E> {
    /// The seed of `grad!` for a tensor output: 1, for a one-element tensor only.
    fn one_like(&self) -> Self {
        if self.numel() != 1 {
            panic!(
                "adjoint: `grad!` needs a scalar output, but the function returned a tensor of shape {}; \
                 use `vjp!` (or `backward!(f(…), seed)`) with a cotangent of that shape",
                ShapeFmt(&self.shape)
            );
        }
        self.ones_like()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outer_products_of_empty_vectors() {
        let (u, empty) = (Tensor::<f64>::ones(&[3]), Tensor::<f64>::zeros(&[0]));
        assert_eq!(u.outer(&empty).shape(), &[3, 0]);
        assert_eq!(empty.outer(&u).shape(), &[0, 3]);
        assert_eq!(u.outer(&u).to_vec(), vec![1.0; 9]);
    }
}
