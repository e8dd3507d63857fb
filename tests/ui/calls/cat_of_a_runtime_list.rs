use adjoint::prelude::*;

// The tensors of a differentiated join must be listed in the call.
#[differentiable]
fn joined(a: &Tensor<f64>, b: &Tensor<f64>) -> Tensor<f64> {
    let parts = vec![a.clone(), b.clone()];
    Tensor::cat(&parts, 0).sum()
}

fn main() {
    let a = Tensor::<f64>::ones(&[2]);
    let _ = grad!(joined)(&a, &a);
}
