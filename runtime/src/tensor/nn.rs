//! Neural-network functions: softmax, log-softmax, one-hot encoding and the losses.
//!
//! All are numerically stable (the maximum is subtracted before exponentiating), and
//! the losses are fused: they make no intermediate tensor.

use super::ops::broadcast_or_panic;
use super::{ShapeFmt, Tensor};
use crate::kernels::layout::{broadcast_strides, View};
use crate::kernels::reduce::zip_sum;
use crate::kernels::softmax;
use crate::kernels::KernelParams;
use crate::Float;

impl<E: Float> Tensor<E> {
    /// `[outer, r, inner]` around `axis`, and the contiguous data.
    fn around_axis(&self, axis: usize, op: &str) -> (Tensor<E>, (usize, usize, usize)) {
        if axis >= self.ndim() {
            panic!("adjoint: axis {} is out of range for shape {} in `{}`", axis, ShapeFmt(&self.shape), op);
        }
        let outer = self.shape[..axis].iter().product();
        let inner = self.shape[axis + 1..].iter().product();
        (self.contiguous(), (outer, self.shape[axis], inner))
    }

    /// `exp(x) / Σ exp(x)` along `axis`.
    pub fn softmax(&self, axis: usize) -> Self {
        let (x, dims) = self.around_axis(axis, "softmax");
        let data = softmax::softmax(x.read().as_slice().expect("contiguous"), dims, false, &KernelParams::current());
        Tensor::from_parts(data, self.shape.clone())
    }

    /// `x − log Σ exp(x)` along `axis`.
    pub fn log_softmax(&self, axis: usize) -> Self {
        let (x, dims) = self.around_axis(axis, "log_softmax");
        let data = softmax::softmax(x.read().as_slice().expect("contiguous"), dims, true, &KernelParams::current());
        Tensor::from_parts(data, self.shape.clone())
    }

    /// `[targets.len(), classes]`: row `i` is 1 at column `targets[i]`, else 0.
    ///
    /// Panics if a target is not below `classes`.
    pub fn one_hot(targets: &[usize], classes: usize) -> Self {
        let mut data = vec![E::ZERO; targets.len() * classes];
        for (i, &t) in targets.iter().enumerate() {
            if t >= classes {
                panic!("adjoint: target {} is out of range for {} classes in `one_hot`", t, classes);
            }
            data[i * classes + t] = E::ONE;
        }
        Tensor::from_parts(data, vec![targets.len(), classes])
    }

    /// The mean of `(self − target)²` (0-d), with both broadcast together. Fused: no
    /// intermediate tensor. (The differentiable form is [`crate::nn::mse_loss`].)
    pub fn mse_loss(&self, target: &Self) -> Self {
        mse_loss(self, target)
    }

    /// The mean over the rows of `self` (`[n, classes]` logits) of
    /// `−log_softmax(row)[target]` (0-d). (The differentiable form is
    /// [`crate::nn::cross_entropy`].)
    pub fn cross_entropy(&self, targets: &[usize]) -> Self {
        cross_entropy(self, targets)
    }
}

/// The mean of `(pred − target)²` (0-d), with `pred` and `target` broadcast together.
pub(crate) fn mse_loss<E: Float>(pred: &Tensor<E>, target: &Tensor<E>) -> Tensor<E> {
    let shape = broadcast_or_panic(&pred.shape, &target.shape, "mse_loss");
    let sp = broadcast_strides(&pred.shape, &pred.strides, &shape).expect("broadcast");
    let st = broadcast_strides(&target.shape, &target.strides, &shape).expect("broadcast");
    let n: usize = shape.iter().product();
    let s = zip_sum(
        &shape,
        View { strides: &sp, ..pred.read().view() },
        View { strides: &st, ..target.read().view() },
        |a, b| (a - b) * (a - b),
        &KernelParams::current(),
    );
    Tensor::scalar(s / E::from_f64(n as f64))
}

/// The mean over the rows of `logits` (`[n, c]`) of `−log_softmax(row)[target]` (0-d).
///
/// Panics unless `logits` is 2-D with one row per target and every target is below `c`.
pub(crate) fn cross_entropy<E: Float>(logits: &Tensor<E>, targets: &[usize]) -> Tensor<E> {
    if logits.ndim() != 2 || logits.shape[0] != targets.len() {
        panic!(
            "adjoint: `cross_entropy` needs logits of shape [n, classes] with n = {} targets, got {}",
            targets.len(),
            ShapeFmt(&logits.shape)
        );
    }
    let c = logits.shape[1];
    if let Some(&t) = targets.iter().find(|&&t| t >= c) {
        panic!(
            "adjoint: target {} is out of range for logits of shape {} in `cross_entropy`",
            t,
            ShapeFmt(&logits.shape)
        );
    }
    let x = logits.contiguous();
    let s = softmax::cross_entropy_sum(x.read().as_slice().expect("contiguous"), c, targets, &KernelParams::current());
    Tensor::scalar(s / E::from_f64(targets.len() as f64))
}
