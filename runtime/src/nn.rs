//! Layers and loss functions, as in `torch.nn`.
//!
//! Everything here is ordinary `#[differentiable]` code over tensors: a model built
//! from these layers is differentiated like any other function.

use crate::{differentiable, Differentiable, Float, Param, Rng, Tensor};

/// A fully connected layer `y = x·Wᵀ + b`, with `W` of shape `[out, in]` and `b` of
/// shape `[out]`, initialised as PyTorch's `nn.Linear`: every entry uniform in
/// `[−1/√in, 1/√in)`.
#[derive(Clone, Debug, Differentiable)]
#[adjoint(crate = crate)]
pub struct Linear<E: Float = f32> {
    pub weight: Param<Tensor<E>>,
    pub bias: Param<Tensor<E>>,
}

impl<E: Float> Linear<E> {
    /// A layer from `inputs` to `outputs` features, initialised from `rng`.
    pub fn new(inputs: usize, outputs: usize, rng: &mut Rng) -> Self {
        let bound = E::ONE / E::from_f64(inputs as f64).sqrt();
        Linear {
            weight: Param::new(Tensor::uniform(&[outputs, inputs], -bound, bound, rng)),
            bias: Param::new(Tensor::uniform(&[outputs], -bound, bound, rng)),
        }
    }

    /// A layer with the given weight (`[out, in]`) and bias (`[out]`).
    pub fn from_parts(weight: Tensor<E>, bias: Tensor<E>) -> Self {
        Linear { weight: Param::new(weight), bias: Param::new(bias) }
    }

    /// `x·Wᵀ + b` for `x` of shape `[batch, in]` (or `[in]`).
    #[differentiable(crate = crate)]
    pub fn forward(&self, x: &Tensor<E>) -> Tensor<E> {
        x.matmul(&self.weight.t()) + &self.bias
    }
}

/// `max(x, 0)` elementwise.
#[differentiable(crate = crate)]
pub fn relu<E: Float>(x: &Tensor<E>) -> Tensor<E> {
    x.relu()
}

/// The mean squared error between `pred` and `target` (0-d), broadcast together.
#[differentiable(crate = crate)]
pub fn mse_loss<E: Float>(pred: &Tensor<E>, target: &Tensor<E>) -> Tensor<E> {
    pred.mse_loss(target)
}

/// The cross-entropy of `logits` (`[n, classes]`) against class indices (mean over
/// the rows), as PyTorch's `F.cross_entropy`.
#[differentiable(crate = crate)]
pub fn cross_entropy<E: Float>(logits: &Tensor<E>, targets: &[usize]) -> Tensor<E> {
    logits.cross_entropy(targets)
}
