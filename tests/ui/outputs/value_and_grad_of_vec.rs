use adjoint::prelude::*;

#[differentiable]
fn squares(x: &[f64]) -> Vec<f64> {
    let mut v = Vec::with_capacity(x.len());
    for i in 0..x.len() {
        v.push(x[i] * x[i]);
    }
    v
}

fn main() {
    let _ = value_and_grad!(squares)(&[1.0, 2.0]);
}
