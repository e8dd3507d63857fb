use adjoint::prelude::*;

// Every independent problem is reported, each at its own tokens.
#[differentiable]
fn f(x: f64) -> f64 {
    let a = (0..3).map(|i| i as f64).sum::<f64>();
    let b = if let Some(v) = Some(x) { v } else { 0.0 };
    a + b
}

fn main() {}
