// A struct without `#[derive(Differentiable)]` has no gradient type: the error says how
// to give it one, or how to leave it out.
use adjoint::prelude::*;

struct Config {
    scale: f64,
}

#[differentiable]
fn scaled(c: &Config, x: f64) -> f64 {
    c.scale * x
}

fn main() {
    let c = Config { scale: 2.0 };
    let _ = grad!(scaled)(&c, 1.0);
}
