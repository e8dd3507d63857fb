// The pullback returns one gradient per differentiable argument: here two, not one.
use adjoint::prelude::*;

#[differentiable(custom_vjp = product_vjp)]
fn product(a: f64, b: f64) -> f64 {
    a * b
}

fn product_vjp(a: f64, b: f64) -> (f64, impl FnOnce(f64) -> f64) {
    (a * b, move |ybar| ybar * b)
}

fn main() {
    let _ = grad!(product)(1.0, 2.0);
}
