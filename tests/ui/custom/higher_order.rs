// A custom derivative is first order: `order = 2` asks for what it does not have.
use adjoint::prelude::*;

#[differentiable(custom_vjp = cube_vjp, order = 2)]
fn cube(x: f64) -> f64 {
    x * x * x
}

fn cube_vjp(x: f64) -> (f64, impl FnOnce(f64) -> f64) {
    (x * x * x, move |ybar| 3.0 * x * x * ybar)
}

fn main() {}
