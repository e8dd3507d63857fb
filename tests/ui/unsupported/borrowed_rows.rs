use adjoint::prelude::*;

// Rows borrowed from elsewhere cannot carry a gradient of their own: the gradient of a
// buffer of rows has the same nesting, owned (`Vec<Vec<f64>>`).
#[differentiable]
fn total(rows: &[&[f64]]) -> f64 {
    rows[0][0] * rows[1][0]
}

fn main() {}
