// `custom_vjp` applies to free functions.
use adjoint::prelude::*;

struct Scale(f64);

impl Scale {
    #[differentiable(custom_vjp = apply_vjp)]
    fn apply(&self, x: f64) -> f64 {
        self.0 * x
    }
}

fn apply_vjp(s: &Scale, x: f64) -> (f64, impl FnOnce(f64) -> f64 + '_) {
    (s.0 * x, move |ybar| ybar * s.0)
}

fn main() {}
