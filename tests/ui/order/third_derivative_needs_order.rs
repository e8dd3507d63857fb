use adjoint::prelude::*;

#[differentiable]
fn quart(x: f64) -> f64 {
    x * x * x * x
}

#[differentiable]
fn dquart(x: f64) -> f64 {
    grad!(quart)(x)
}

#[differentiable]
fn d2quart(x: f64) -> f64 {
    grad!(dquart)(x)
}

fn main() {
    let _ = grad!(d2quart)(1.0);
}
