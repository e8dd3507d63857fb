// One mistake, one error: the rejected function is still emitted, with stubs of its
// generated API, so its callers — plain code and differentiable code, `grad!`,
// `value_and_grad!`, destructured results, nested derivatives — add no error of their own.
use adjoint::prelude::*;

#[differentiable]
fn entry(x: &[f64], a: f64) -> f64 {
    x[0].rem_euclid(a)
}

#[differentiable]
fn caller(x: &[f64], a: f64) -> f64 {
    let (gx, ga) = grad!(entry)(x, a);
    entry(x, a) + gx.iter().sum::<f64>() + ga
}

fn main() {
    let x = vec![1.0, 2.0];
    let (gx, ga) = grad!(entry)(&x, 0.5);
    let (v, (gx2, _)) = value_and_grad!(entry)(&x, 0.5);
    let total: f64 = gx.iter().sum::<f64>() + ga + v + gx2[0];
    let (gc, _) = grad!(caller)(&x, 0.5);
    println!("{total} {gc:?}");
}
