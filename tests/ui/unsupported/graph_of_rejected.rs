use adjoint::prelude::*;

// The function is rejected; asking for its graph adds no error of its own.
#[differentiable]
fn f(x: f64) -> f64 {
    let square = |v: f64| v * v;
    square(x)
}

fn main() {
    println!("{}", graph!(f).to_dot());
}
