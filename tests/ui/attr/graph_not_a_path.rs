use adjoint::prelude::*;

#[differentiable]
fn f(x: f64) -> f64 {
    x * x
}

fn main() {
    let _ = graph!(f(1.0));
}
