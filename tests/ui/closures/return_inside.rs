use adjoint::prelude::*;

#[differentiable]
fn f(x: f64) -> f64 {
    let clipped = |v: f64| {
        if v > 1.0 {
            return 1.0;
        }
        v
    };
    clipped(x) * x
}

fn main() {}
