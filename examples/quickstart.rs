//! Quickstart: the scalar examples of the autograd tutorials, in adjoint.
//!
//! Each section mirrors one behaviour of the user's reference material (SEEDS.md item
//! numbers in brackets) and asserts the numbers it prints:
//! - [6]  `y = w·x + b` and its three gradients;
//! - [7]  a chain `y = x²`, `z = y + 3`;
//! - [10] the expression graph `((a + b)·b²) + ((c − d)·d²)`;
//! - [15] a second derivative by differentiating a gradient;
//! - [17] gradient descent with the functional `grad!` API.
//!
//! Run with `cargo run --release --example quickstart`.

use adjoint::prelude::*;

/// [6] A linear unit: `y = w·x + b`.
#[differentiable]
fn linear(x: f64, w: f64, b: f64) -> f64 {
    w * x + b
}

/// [7] A chain of two operations.
#[differentiable]
fn chain(x: f64) -> f64 {
    let y = x * x;
    y + 3.0
}

/// [10] The computation graph `((a + b)·b²) + ((c − d)·d²)`.
#[differentiable]
fn graph(a: f64, b: f64, c: f64, d: f64) -> f64 {
    let left = (a + b) * b.powi(2);
    let right = (c - d) * d.powi(2);
    left + right
}

/// [15] `y = x²`, whose gradient `2x` is itself differentiated below.
#[differentiable]
fn square(x: f64) -> f64 {
    x * x
}

/// [15] The first derivative as a differentiable function.
#[differentiable]
fn dsquare(x: f64) -> f64 {
    grad!(square)(x)
}

/// [17] A loss whose minimum is at `(1/3, −1/3)`.
#[differentiable]
fn loss(a: f64, b: f64) -> f64 {
    (a - 1.0).powi(2) + (b + 1.0).powi(2) + (a - b).powi(2)
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() <= 1e-12 * (1.0 + b.abs())
}

fn main() {
    // [6] y = w·x + b at x = 2, w = 3, b = 1.
    let (y, (gx, gw, gb)) = value_and_grad!(linear)(2.0, 3.0, 1.0);
    println!("[6]  y = w·x + b = {y}: dy/dx = {gx}, dy/dw = {gw}, dy/db = {gb}");
    assert_eq!((y, gx, gw, gb), (7.0, 3.0, 2.0, 1.0));

    // [7] z = x² + 3 at x = 1.
    let dz = grad!(chain)(1.0);
    println!("[7]  z = x² + 3: dz/dx at x = 1 is {dz}");
    assert_eq!(dz, 2.0);

    // [10] The expression graph at (a, b, c, d) = (1, 2, 3, 4).
    let (v, (ga, gb, gc, gd)) = value_and_grad!(graph)(1.0, 2.0, 3.0, 4.0);
    println!("[10] ((a+b)·b²) + ((c−d)·d²) = {v}: gradients {ga}, {gb}, {gc}, {gd}");
    // ∂/∂a = b², ∂/∂b = b² + 2b(a+b), ∂/∂c = d², ∂/∂d = −d² + 2d(c−d).
    assert_eq!((v, ga, gb, gc, gd), (-4.0, 4.0, 16.0, 16.0, -24.0));

    // [15] First and second derivative of x² at x = 3.
    let first = grad!(square)(3.0);
    let second = grad!(dsquare)(3.0);
    println!("[15] y = x²: dy/dx at 3 is {first}, d²y/dx² is {second}");
    assert_eq!((first, second), (6.0, 2.0));

    // [17] 100 steps of gradient descent, learning rate 0.1.
    let (mut a, mut b) = (0.5, -0.5);
    for step in 0..100 {
        let (ga, gb) = grad!(loss)(a, b);
        a -= 0.1 * ga;
        b -= 0.1 * gb;
        if step % 25 == 0 {
            println!("[17] step {step:3}: loss = {:.6}, a = {a:.6}, b = {b:.6}", loss(a, b));
        }
    }
    println!("[17] after 100 steps: a = {a:.9}, b = {b:.9} (the minimum is at 1/3, −1/3)");
    assert!(close(a, 1.0 / 3.0) && close(b, -1.0 / 3.0));
}
