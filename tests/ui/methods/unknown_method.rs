use adjoint::prelude::*;

#[differentiable]
fn f(x: f64) -> f64 {
    x.sin() + x.rem_euclid(1.0)
}

fn main() {}
