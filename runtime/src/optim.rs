//! Optimizers, as in `torch.optim`: each holds handles to the parameters it updates
//! (the same parameters the model holds), `step()` updates them in place from their
//! accumulated gradients, and `zero_grad()` clears those gradients.
//!
//! Parameters without a gradient (`grad()` is `None`) are skipped, as in PyTorch.

use crate::{Float, Param, Tensor};

/// `f(value, grad)` over the elements of one parameter, written in place.
fn update_with_grad<E: Float>(p: &Param<Tensor<E>>, f: impl FnOnce(&mut [E], &[E])) {
    let Some(grad) = p.grad() else { return };
    let grad = grad.contiguous();
    let read = grad.read();
    let g = read.as_slice().expect("contiguous");
    p.value().update(|value| {
        if value.unique_slice_mut().is_none() {
            // Someone still reads the old values: they keep them, we write a copy.
            *value = Tensor::from_vec(value.to_vec(), value.shape());
        }
        let w = value.unique_slice_mut().expect("a fresh buffer is unique");
        if w.len() != g.len() {
            panic!("adjoint: a gradient of {} elements for a parameter of {}", g.len(), w.len());
        }
        f(w, g);
    });
}

/// Stochastic gradient descent with optional momentum and weight decay
/// (PyTorch's `SGD` with `dampening = 0`, `nesterov = false`).
pub struct Sgd<E: Float = f32> {
    params: Vec<Param<Tensor<E>>>,
    lr: E,
    momentum: E,
    weight_decay: E,
    velocity: Vec<Vec<E>>,
}

impl<E: Float> Sgd<E> {
    /// Plain SGD: `p ← p − lr·∇p`.
    pub fn new(params: Vec<Param<Tensor<E>>>, lr: E) -> Self {
        let velocity = params.iter().map(|_| Vec::new()).collect();
        Sgd { params, lr, momentum: E::ZERO, weight_decay: E::ZERO, velocity }
    }

    /// With momentum `μ`: `v ← μ·v + g` (`v = g` at the first step), `p ← p − lr·v`.
    pub fn momentum(mut self, momentum: E) -> Self {
        self.momentum = momentum;
        self
    }

    /// With L2 weight decay `λ`: the gradient becomes `g + λ·p`.
    pub fn weight_decay(mut self, weight_decay: E) -> Self {
        self.weight_decay = weight_decay;
        self
    }

    /// The parameters, in the order given.
    pub fn params(&self) -> &[Param<Tensor<E>>] {
        &self.params
    }

    /// One update of every parameter that has a gradient.
    pub fn step(&mut self) {
        let (lr, mu, wd) = (self.lr, self.momentum, self.weight_decay);
        for (p, v) in self.params.iter().zip(&mut self.velocity) {
            if mu == E::ZERO {
                update_with_grad(p, |w, g| {
                    for (w, &g) in w.iter_mut().zip(g) {
                        *w -= lr * (g + wd * *w);
                    }
                });
                continue;
            }
            let first = v.is_empty();
            if first {
                *v = vec![E::ZERO; p.value().numel()];
            }
            update_with_grad(p, |w, g| {
                for ((w, &g), v) in w.iter_mut().zip(g).zip(v.iter_mut()) {
                    let g = g + wd * *w;
                    *v = if first { g } else { mu * *v + g };
                    *w -= lr * *v;
                }
            });
        }
    }

    /// Clear the gradient of every parameter.
    pub fn zero_grad(&self) {
        self.params.iter().for_each(Param::zero_grad);
    }
}

/// Adam (Kingma & Ba), with PyTorch's defaults: `lr = 1e-3`, `β = (0.9, 0.999)`,
/// `ε = 1e-8`, no weight decay.
pub struct Adam<E: Float = f32> {
    params: Vec<Param<Tensor<E>>>,
    lr: E,
    betas: (E, E),
    eps: E,
    weight_decay: E,
    /// Steps taken by each parameter (counted per parameter, as PyTorch does: one
    /// whose first gradient arrives late starts its bias correction at 1).
    steps: Vec<i32>,
    /// First and second moments of each parameter.
    moments: Vec<[Vec<E>; 2]>,
}

impl<E: Float> Adam<E> {
    /// Adam over `params` with PyTorch's defaults.
    pub fn new(params: Vec<Param<Tensor<E>>>) -> Self {
        let moments: Vec<[Vec<E>; 2]> =
            params.iter().map(|p| [vec![E::ZERO; p.value().numel()], vec![E::ZERO; p.value().numel()]]).collect();
        Adam {
            params,
            lr: E::from_f64(1e-3),
            betas: (E::from_f64(0.9), E::from_f64(0.999)),
            eps: E::from_f64(1e-8),
            weight_decay: E::ZERO,
            steps: vec![0; moments.len()],
            moments,
        }
    }

    /// The learning rate.
    pub fn lr(mut self, lr: E) -> Self {
        self.lr = lr;
        self
    }

    /// The decay rates of the moment estimates.
    pub fn betas(mut self, beta1: E, beta2: E) -> Self {
        self.betas = (beta1, beta2);
        self
    }

    /// The term added to the denominator.
    pub fn eps(mut self, eps: E) -> Self {
        self.eps = eps;
        self
    }

    /// L2 weight decay `λ` (added to the gradient, as PyTorch's `Adam`).
    pub fn weight_decay(mut self, weight_decay: E) -> Self {
        self.weight_decay = weight_decay;
        self
    }

    /// The parameters, in the order given.
    pub fn params(&self) -> &[Param<Tensor<E>>] {
        &self.params
    }

    /// One update of every parameter that has a gradient.
    pub fn step(&mut self) {
        let (b1, b2) = self.betas;
        let (lr, eps, wd) = (self.lr, self.eps, self.weight_decay);
        for ((p, m), steps) in self.params.iter().zip(&mut self.moments).zip(&mut self.steps) {
            let [m1, m2] = m;
            // Runs only for a parameter that has a gradient: that is a step for it.
            update_with_grad(p, |w, g| {
                *steps += 1;
                let c1 = E::ONE - b1.powi(*steps);
                let c2 = E::ONE - b2.powi(*steps);
                for (((w, &g), m1), m2) in w.iter_mut().zip(g).zip(m1.iter_mut()).zip(m2.iter_mut()) {
                    let g = g + wd * *w;
                    *m1 = b1 * *m1 + (E::ONE - b1) * g;
                    *m2 = b2 * *m2 + (E::ONE - b2) * g * g;
                    *w -= lr * (*m1 / c1) / ((*m2 / c2).sqrt() + eps);
                }
            });
        }
    }

    /// Clear the gradient of every parameter.
    pub fn zero_grad(&self) {
        self.params.iter().for_each(Param::zero_grad);
    }
}
