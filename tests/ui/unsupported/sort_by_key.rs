use adjoint::prelude::*;

// A sort compares the elements themselves (`a.partial_cmp(b).unwrap()`, descending,
// `total_cmp`); a comparator on something else is rejected with that hint.
#[differentiable]
fn f(x: &[f64]) -> f64 {
    let mut s = x.to_vec();
    s.sort_by(|a, b| a.abs().partial_cmp(&b.abs()).unwrap());
    s[0]
}

fn main() {}
