use adjoint::prelude::*;

// `let … else` destructures slices; on an `Option` it is one error, and the names it
// would bind add no errors of their own.
#[differentiable]
fn f(x: &[f64]) -> f64 {
    let Some(first) = x.first().copied() else {
        return 0.0;
    };
    first * first
}

fn main() {}
