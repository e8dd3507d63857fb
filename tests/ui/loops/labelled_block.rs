// A labelled block with a `break 'label` inside: one error, at the label.
use adjoint::prelude::*;

#[differentiable]
fn clipped(a: f64) -> f64 {
    let mut s = a;
    'done: {
        if a > 1.0 {
            break 'done;
        }
        s *= a;
    }
    s
}

fn main() {
    let _ = grad!(clipped)(0.5);
}
