use adjoint::prelude::*;

#[differentiable]
fn f(x: f64, w: f64) -> f64 {
    let scale = |v: f64| v * w;
    let w = 2.0;
    scale(x) + w
}

fn main() {}
