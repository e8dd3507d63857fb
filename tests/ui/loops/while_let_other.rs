use adjoint::prelude::*;

// `while let` drains a local buffer (`while let Some(v) = stack.pop()`); other
// patterns are rejected with that hint.
#[differentiable]
fn f(x: &[f64]) -> f64 {
    let mut s = 0.0;
    let mut it = x.iter();
    while let Some(v) = it.next() {
        s += v;
    }
    s
}

fn main() {}
