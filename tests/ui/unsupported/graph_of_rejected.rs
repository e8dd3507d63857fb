use adjoint::prelude::*;

// The function is rejected; asking for its graph adds no error of its own.
#[differentiable]
fn f(x: f64) -> f64 {
    if let Some(v) = Some(x) {
        v * v
    } else {
        0.0
    }
}

fn main() {
    println!("{}", graph!(f).to_dot());
}
