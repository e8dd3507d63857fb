use adjoint::prelude::*;

// A helper that writes into a `&mut` buffer is differentiated where a
// `#[differentiable]` function calls it; `grad!` of the helper itself is an error.
#[differentiable]
fn forces(x: &[f64], out: &mut [f64]) -> f64 {
    for i in 0..x.len() {
        out[i] = -x[i];
    }
    x[0]
}

fn main() {
    let mut out = vec![0.0; 2];
    let _ = grad!(forces)(&[1.0, 2.0], &mut out);
}
