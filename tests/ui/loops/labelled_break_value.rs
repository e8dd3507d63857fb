// `break 'label value` out of a nested loop: a value carried by a labelled exit is not
// supported; the message says what to write instead.
use adjoint::prelude::*;

#[differentiable]
fn first_large(x: &[f64], a: f64) -> f64 {
    let found = 'search: loop {
        for &v in x {
            if v * a > 1.0 {
                break 'search v * a;
            }
        }
        break a;
    };
    found
}

fn main() {
    let _ = grad!(first_large)(&[1.0, 2.0], 0.5);
}
