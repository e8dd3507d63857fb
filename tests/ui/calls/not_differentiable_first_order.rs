use adjoint::prelude::*;

fn plain(t: &Tensor<f64>) -> Tensor<f64> {
    t * 3.0
}

// A function over tensors has order 1: its derivative calls the split derivatives of
// its callees, and a callee without one is reported once, at the call.
#[differentiable]
fn f(x: &Tensor<f64>, w: &Tensor<f64>) -> Tensor<f64> {
    (plain(x) * w).sum()
}

fn main() {
    let x = Tensor::<f64>::ones(&[2]);
    let _ = grad!(f)(&x, &x);
}
