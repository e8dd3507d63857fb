use adjoint::prelude::*;

fn apply(f: impl Fn(f64) -> f64, x: f64) -> f64 {
    f(x)
}

#[differentiable]
fn f(x: f64) -> f64 {
    let double = |v: f64| v * 2.0;
    apply(double, x)
}

fn main() {}
