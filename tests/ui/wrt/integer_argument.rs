use adjoint::prelude::*;

#[differentiable(wrt(x, n))]
fn scaled(x: f64, n: usize) -> f64 {
    x * n as f64
}

fn main() {}
