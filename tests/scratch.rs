use adjoint::prelude::*;
#[differentiable]
fn pairs(pts: &[(f64, f64)]) -> f64 {
    let mut s = 0.0;
    for &(x, y) in pts {
        s += x * y;
    }
    let (a, b) = pts[0];
    s + a * b
}
#[test]
fn t() {
    println!("{:?}", grad!(pairs)(&[(1.0, 2.0), (3.0, 4.0)]));
}
