use adjoint::prelude::*;

// Every independent problem is reported, each at its own tokens.
#[differentiable]
fn f(x: f64) -> f64 {
    let a = [x, 2.0 * x].iter().scan(0.0, |s, v| Some(*s + v)).sum::<f64>();
    let b = x * const { 2.0 };
    a + b
}

fn main() {}
