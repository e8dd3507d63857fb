//! The worked examples of the user's material, with their numbers.

// The functions under test are written the way users write numeric code (index loops,
// `x = x + …`), since those are the constructs the transform must handle.
#![allow(
    clippy::needless_range_loop,
    clippy::assign_op_pattern,
    clippy::manual_swap,
    clippy::useless_vec,
    clippy::let_and_return,
    clippy::neg_cmp_op_on_partial_ord,
    clippy::unusual_byte_groupings,
    clippy::eq_op,
    clippy::too_many_arguments,
    clippy::unnecessary_cast,
    clippy::needless_late_init
)]

mod common;

use adjoint::prelude::*;
use common::*;

// (6) A linear unit: y = w·x + b.
#[differentiable]
fn linear(x: f64, w: f64, b: f64) -> f64 {
    w * x + b
}

#[test]
fn seed_06_linear_unit() {
    let (gx, gw, gb) = grad!(linear)(2.0, 3.0, 1.0);
    assert_eq!(gx, 3.0, "dy/dx = w");
    assert_eq!(gw, 2.0, "dy/dw = x");
    assert_eq!(gb, 1.0, "dy/db = 1");
    let (y, _) = value_and_grad!(linear)(2.0, 3.0, 1.0);
    assert_eq!(y, 7.0);
}

// (7) A chain: y = x², z = y + 3.
#[differentiable]
fn chain(x: f64) -> f64 {
    let y = x * x;
    y + 3.0
}

#[test]
fn seed_07_chain_rule() {
    let (z, dz_dx) = value_and_grad!(chain)(1.0);
    assert_eq!(z, 4.0);
    assert_eq!(dz_dx, 2.0);
}

// (10) The expression graph ((a + b)·b²) + ((c − d)·d²).
#[differentiable]
fn graph(a: f64, b: f64, c: f64, d: f64) -> f64 {
    let left = (a + b) * (b * b);
    let right = (c - d) * (d * d);
    left + right
}

#[test]
fn seed_10_expression_graph() {
    let (a, b, c, d) = (1.5, -2.0, 0.5, 3.0);
    let (ga, gb, gc, gd) = grad!(graph)(a, b, c, d);
    assert_close("d/da = b^2", ga, b * b, EXACT);
    assert_close("d/db = b^2 + 2b(a+b)", gb, b * b + 2.0 * b * (a + b), EXACT);
    assert_close("d/dc = d^2", gc, d * d, EXACT);
    assert_close("d/dd = -d^2 + 2d(c-d)", gd, -d * d + 2.0 * d * (c - d), EXACT);
    assert_eq!((ga, gb, gc, gd), (4.0, 6.0, 9.0, -24.0));
    let (fa, fb, fc) = fd3(|a, b, c| graph(a, b, c, d), a, b, c);
    let fdd = fd(|t| graph(a, b, c, t), d);
    assert_close("d/da fd", ga, fa, FD);
    assert_close("d/db fd", gb, fb, FD);
    assert_close("d/dc fd", gc, fc, FD);
    assert_close("d/dd fd", gd, fdd, FD);
}

// (15) y = x²: first gradient 2x, second gradient 2, by nesting.
#[differentiable]
fn square(x: f64) -> f64 {
    x * x
}

#[differentiable]
fn d_square(x: f64) -> f64 {
    grad!(square)(x)
}

#[test]
fn seed_15_second_gradient() {
    for x in [-3.0, -0.5, 0.0, 1.0, 2.5, 10.0] {
        assert_eq!(grad!(square)(x), 2.0 * x);
        assert_eq!(d_square(x), 2.0 * x);
        assert_eq!(grad!(d_square)(x), 2.0);
    }
}

// (17) Gradient descent on loss = (a − 1)² + (b + 1)² + (a − b)².
#[differentiable]
fn loss(a: f64, b: f64) -> f64 {
    let p = a - 1.0;
    let q = b + 1.0;
    let r = a - b;
    p * p + q * q + r * r
}

#[test]
fn seed_17_gradient_descent() {
    let (mut a, mut b) = (0.5, -0.5);
    let lr = 0.1;
    for _ in 0..100 {
        let (ga, gb) = grad!(loss)(a, b);
        a -= lr * ga;
        b -= lr * gb;
    }
    assert!((a - 1.0 / 3.0).abs() < 1e-6, "a = {a}, want 1/3");
    assert!((b + 1.0 / 3.0).abs() < 1e-6, "b = {b}, want -1/3");
    // At the minimum the gradient vanishes and the loss is 4/3.
    let (l, (ga, gb)) = value_and_grad!(loss)(a, b);
    assert!(ga.abs() < 1e-6 && gb.abs() < 1e-6, "gradient at the minimum: ({ga}, {gb})");
    assert_close("minimum loss", l, 4.0 / 3.0, Tol { rel: 1e-9, abs: 1e-9 });
}
