// A custom derivative is first order; a caller is differentiable to order 2 unless it
// says otherwise, so its second-derivative code would need one through the rule.
use adjoint::prelude::*;

#[differentiable(custom_vjp = softplus_vjp)]
fn softplus(x: f64) -> f64 {
    x.max(0.0) + (-x.abs()).exp().ln_1p()
}

fn softplus_vjp(x: f64) -> (f64, impl FnOnce(f64) -> f64) {
    let sigmoid = 1.0 / (1.0 + (-x).exp());
    (softplus(x), move |ybar| ybar * sigmoid)
}

#[differentiable]
fn loss(w: f64) -> f64 {
    softplus(w * 2.0)
}

fn main() {
    let _ = grad!(loss)(1.0);
}
