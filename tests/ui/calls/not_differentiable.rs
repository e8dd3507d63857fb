use adjoint::prelude::*;

fn plain(v: f64) -> f64 {
    v * 3.0
}

#[differentiable]
fn f(x: f64) -> f64 {
    plain(x) + x
}

fn main() {
    let _ = grad!(f)(1.0);
}
