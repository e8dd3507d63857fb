use adjoint::prelude::*;

#[differentiable]
fn f(x: f64) -> f64 {
    x * x
}

fn main() {
    let _ = grad!(f(1.0));
}
