use adjoint::prelude::*;

fn weight(n: usize) -> f64 {
    1.0 / (n as f64 + 1.0)
}

fn plain(v: f64) -> f64 {
    v * 3.0
}

// Calling a plain function is fine when no derivative flows through it; the
// `compile_error!` below only keeps this file in the compile-fail suite.
#[differentiable]
fn f(x: f64, n: usize) -> f64 {
    x * weight(n) + plain(detach(x))
}

fn main() {
    let _ = grad!(f)(1.0, 3);
    compile_error!("the function above compiles");
}
