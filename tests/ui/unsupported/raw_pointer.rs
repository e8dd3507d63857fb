use adjoint::prelude::*;

#[differentiable]
fn f(x: *const f64) -> f64 {
    let _ = x;
    2.0
}

fn main() {}
