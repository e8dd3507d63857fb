//! Reductions: sums, means, maxima, argmax, the L2 norm, and `sum_to_shape` (the inverse
//! of broadcasting, which the gradient of a broadcast operand needs).
//!
//! Full reductions give 0-d tensors. They add fixed blocks and then the block sums in
//! order, so results do not depend on the number of threads.

use super::{ShapeFmt, Tensor};
use crate::kernels::layout::{broadcast_strides, contiguous_strides, Dims};
use crate::kernels::reduce::{self as kr, Max, Sum};
use crate::kernels::KernelParams;
use crate::Float;

impl<E: Float> Tensor<E> {
    /// Panics unless `axis < ndim`.
    fn check_reduce_axis(&self, axis: usize, op: &str) {
        if axis >= self.ndim() {
            panic!("adjoint: axis {} is out of range for shape {} in `{}`", axis, ShapeFmt(&self.shape), op);
        }
    }

    /// The shape after reducing `axis`.
    fn reduced_shape(&self, axis: usize, keepdim: bool) -> Dims {
        let mut shape = self.shape.clone();
        if keepdim {
            shape[axis] = 1;
        } else {
            shape.remove(axis);
        }
        shape
    }

    /// The sum of all elements (0-d).
    pub fn sum(&self) -> Self {
        Tensor::scalar(kr::sum_map(self.read().view(), |x| x, &KernelParams::current()))
    }

    /// The mean of all elements (0-d; NaN for an empty tensor).
    pub fn mean(&self) -> Self {
        let s = kr::sum_map(self.read().view(), |x| x, &KernelParams::current());
        Tensor::scalar(s / E::from_f64(self.numel() as f64))
    }

    /// Sums along `axis`, which is removed unless `keepdim` (then it has length 1).
    pub fn sum_dim(&self, axis: usize, keepdim: bool) -> Self {
        self.check_reduce_axis(axis, "sum_dim");
        let mask: Vec<bool> = (0..self.ndim()).map(|d| d == axis).collect();
        let data = kr::reduce_axes::<E, Sum>(self.read().view(), &mask, &KernelParams::current());
        Tensor::from_parts(data, self.reduced_shape(axis, keepdim))
    }

    /// Means along `axis`, which is removed unless `keepdim`.
    pub fn mean_dim(&self, axis: usize, keepdim: bool) -> Self {
        self.check_reduce_axis(axis, "mean_dim");
        let n = E::from_f64(self.shape[axis] as f64);
        self.sum_dim(axis, keepdim) / n
    }

    /// Maxima along `axis`, which is removed unless `keepdim` (NaN wins).
    ///
    /// Panics if `axis` has length 0.
    pub fn max_dim(&self, axis: usize, keepdim: bool) -> Self {
        self.check_reduce_axis(axis, "max_dim");
        if self.shape[axis] == 0 && self.reduced_shape(axis, false).iter().product::<usize>() > 0 {
            panic!("adjoint: `max_dim` along axis {} of length 0 (shape {})", axis, ShapeFmt(&self.shape));
        }
        let mask: Vec<bool> = (0..self.ndim()).map(|d| d == axis).collect();
        let data = kr::reduce_axes::<E, Max>(self.read().view(), &mask, &KernelParams::current());
        Tensor::from_parts(data, self.reduced_shape(axis, keepdim))
    }

    /// Where the maxima along `axis` are: for each position of the result of
    /// `max_dim(axis, false)` (row-major), the row-major flat index into `self` of its
    /// maximum (the first on ties). For the index *along* the axis of a 2-D `[n, c]`
    /// tensor and `axis = 1`, take `i % c`.
    ///
    /// Panics if `axis` has length 0.
    pub fn argmax_dim(&self, axis: usize) -> Vec<usize> {
        self.check_reduce_axis(axis, "argmax_dim");
        let out: usize = self.reduced_shape(axis, false).iter().product();
        if out == 0 {
            return Vec::new();
        }
        if self.shape[axis] == 0 {
            panic!("adjoint: `argmax_dim` along axis {} of length 0 (shape {})", axis, ShapeFmt(&self.shape));
        }
        kr::argmax_axis(self.read().view(), axis, &KernelParams::current())
    }

    /// The L2 (Frobenius) norm of all elements (0-d).
    pub fn norm(&self) -> Self {
        Tensor::scalar(kr::sum_map(self.read().view(), |x| x * x, &KernelParams::current()).sqrt())
    }

    /// Sums over the broadcast axes so the result has `shape`: the inverse of
    /// `broadcast_to(self.shape())`.
    ///
    /// Panics unless `shape` broadcasts to `self.shape()`.
    pub fn sum_to_shape(&self, shape: &[usize]) -> Self {
        if shape == self.shape.as_slice() {
            return self.clone();
        }
        if broadcast_strides(shape, &contiguous_strides(shape), &self.shape).is_none() {
            panic!(
                "adjoint: cannot sum shape {} to {} in `sum_to_shape`: {} does not broadcast to {}",
                ShapeFmt(&self.shape),
                ShapeFmt(shape),
                ShapeFmt(shape),
                ShapeFmt(&self.shape)
            );
        }
        let lead = self.ndim() - shape.len();
        let mask: Vec<bool> =
            (0..self.ndim()).map(|d| d < lead || (shape[d - lead] == 1 && self.shape[d] != 1)).collect();
        let data = kr::reduce_axes::<E, Sum>(self.read().view(), &mask, &KernelParams::current());
        Tensor::from_parts(data, shape.to_vec())
    }
}
