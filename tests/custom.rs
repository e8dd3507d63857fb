//! Custom derivatives (`#[differentiable(custom_vjp = f_vjp)]`): a numerically safer
//! rule, an implicit function (a root solve differentiated by the implicit-function
//! theorem, never through its iterations), a body the transform does not read (raw
//! pointers, as a call into C would be), a buffer argument and a data argument, `wrt`,
//! and each used from differentiable callers: straight-line, in a loop, with masks.

#![allow(clippy::needless_range_loop)]

mod common;

use adjoint::prelude::*;
use common::*;
use proptest::prelude::*;

// ---- a numerically safer rule

/// log(1 + eˣ) without overflow.
#[differentiable(custom_vjp = softplus_vjp)]
fn softplus(x: f64) -> f64 {
    x.max(0.0) + (-x.abs()).exp().ln_1p()
}

/// The derivative is the logistic function, evaluated without overflow on either side.
fn softplus_vjp(x: f64) -> (f64, impl FnOnce(f64) -> f64) {
    let sigmoid = if x >= 0.0 { 1.0 / (1.0 + (-x).exp()) } else { x.exp() / (1.0 + x.exp()) };
    (softplus(x), move |ybar| ybar * sigmoid)
}

#[differentiable(wrt(w, b), order = 1)]
fn smooth_hinge_loss(w: f64, b: f64, xs: &[f64], ys: &[f64]) -> f64 {
    let mut total = 0.0;
    for i in 0..xs.len() {
        total += softplus(-ys[i] * (w * xs[i] + b));
    }
    total / xs.len() as f64
}

// ---- an implicit function: the real root of x³ + a·x − b (a > 0)

#[differentiable(custom_vjp = cubic_root_vjp)]
fn cubic_root(a: f64, b: f64) -> f64 {
    let mut x = 1.0;
    for _ in 0..100 {
        let step = (x * x * x + a * x - b) / (3.0 * x * x + a);
        x -= step;
        if step.abs() < 1e-15 * x.abs().max(1.0) {
            break;
        }
    }
    x
}

/// g(x, a, b) = x³ + a·x − b = 0 at the root: ∂x/∂a = −x/g′, ∂x/∂b = 1/g′.
fn cubic_root_vjp(a: f64, b: f64) -> (f64, impl FnOnce(f64) -> (f64, f64)) {
    let x = cubic_root(a, b);
    let slope = 3.0 * x * x + a;
    (x, move |xbar| (-xbar * x / slope, xbar / slope))
}

/// A fit through the root: the caller differentiates through `cubic_root` as through
/// any other call (first order: a custom rule has no derivative of its own).
#[differentiable(order = 1)]
fn root_misfit(a: f64, b: f64, target: f64) -> f64 {
    let r = cubic_root(a * a + 0.5, b);
    (r - target) * (r - target) + 0.1 * a * r
}

// ---- a body the transform never reads, a buffer and a data argument

/// Σ wᵢ·xᵢⁿ, read through raw pointers the way a call into C would be.
#[differentiable(custom_vjp = weighted_power_vjp)]
fn weighted_power(w: &[f64], x: &[f64], n: i32) -> f64 {
    assert_eq!(w.len(), x.len(), "weighted_power: `w` has {} values, `x` has {}", w.len(), x.len());
    let mut s = 0.0;
    for i in 0..w.len() {
        // SAFETY: i < len of both slices.
        s += unsafe { *w.as_ptr().add(i) * (*x.as_ptr().add(i)).powi(n) };
    }
    s
}

fn weighted_power_vjp<'a>(w: &'a [f64], x: &'a [f64], n: i32) -> (f64, impl FnOnce(f64) -> (Vec<f64>, Vec<f64>) + 'a) {
    let value = weighted_power(w, x, n);
    (value, move |ybar| {
        let dw = x.iter().map(|xi| ybar * xi.powi(n)).collect();
        let dx = w.iter().zip(x).map(|(wi, xi)| ybar * wi * f64::from(n) * xi.powi(n - 1)).collect();
        (dw, dx)
    })
}

/// Only the weights' gradient faces the user; callers still get both.
#[differentiable(wrt(w), custom_vjp = weighted_power_vjp)]
fn weighted_power_w(w: &[f64], x: &[f64], n: i32) -> f64 {
    weighted_power(w, x, n)
}

#[differentiable(order = 1)]
fn energy(w: &[f64], x: &[f64], scale: f64) -> f64 {
    let mut e = 0.0;
    for k in 1..4 {
        e += scale * weighted_power(w, x, k) / k as f64;
    }
    e + softplus(scale * w[0])
}

/// A caller that differentiates with respect to `x` only: the custom rule is called
/// with a mask, and its pullback still returns both gradients.
#[differentiable(wrt(x), order = 1)]
fn energy_in_x(w: &[f64], x: &[f64]) -> f64 {
    weighted_power(w, x, 2).sqrt()
}

fn data(len: usize) -> impl Strategy<Value = (Vec<f64>, Vec<f64>)> {
    (vec_in(-2.0, 2.0, len..len + 1), vec_in(0.2, 1.5, len..len + 1))
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn softplus_rule_matches_finite_differences_and_the_logistic(x in -30.0..30.0f64) {
        let g = grad!(softplus)(x);
        check("softplus'", g, fd(softplus, x), FD)?;
        check("logistic", g, 1.0 / (1.0 + (-x).exp()), EXACT)?;
        let (v, g2) = value_and_grad!(softplus)(x);
        check("value", v, softplus(x), EXACT)?;
        check("value_and_grad", g2, g, EXACT)?;
        check("vjp", vjp!(softplus)(x, 2.5), 2.5 * g, EXACT)?;
    }

    #[test]
    fn softplus_in_a_loop_of_a_caller(w in -2.0..2.0f64, b in -1.0..1.0f64, (xs, ys) in data(6)) {
        let ys: Vec<f64> = ys.iter().enumerate().map(|(i, y)| if i % 2 == 0 { *y } else { -*y }).collect();
        let (gw, gb) = grad!(smooth_hinge_loss)(w, b, &xs, &ys);
        let (fw, fb) = fd2(|w, b| smooth_hinge_loss(w, b, &xs, &ys), w, b);
        check("w", gw, fw, FD)?;
        check("b", gb, fb, FD)?;
    }

    #[test]
    fn implicit_root_matches_finite_differences(a in 0.5..4.0f64, b in -5.0..5.0f64) {
        let (ga, gb) = grad!(cubic_root)(a, b);
        let (fa, fb) = fd2(cubic_root, a, b);
        check("∂x/∂a", ga, fa, FD)?;
        check("∂x/∂b", gb, fb, FD)?;
        let x = cubic_root(a, b);
        check("residual", x * x * x + a * x - b, 0.0, Tol { rel: 0.0, abs: 1e-9 })?;
    }

    #[test]
    fn a_caller_differentiates_through_the_implicit_root(a in -1.5..1.5f64, b in -3.0..3.0f64, t in -1.0..1.0f64) {
        let (ga, gb, gt) = grad!(root_misfit)(a, b, t);
        let (fa, fb, ft) = fd3(root_misfit, a, b, t);
        check("a", ga, fa, FD)?;
        check("b", gb, fb, FD)?;
        check("target", gt, ft, FD)?;
    }

    #[test]
    fn buffer_arguments_and_a_data_argument((w, x) in data(5), n in 1..4i32) {
        let (gw, gx) = grad!(weighted_power)(&w, &x, n);
        check_vec("w", &gw, &fd_vec(|w| weighted_power(w, &x, n), &w), FD)?;
        check_vec("x", &gx, &fd_vec(|x| weighted_power(&w, x, n), &x), FD)?;
        let only_w = grad!(weighted_power_w)(&w, &x, n);
        check_vec("wrt(w)", &only_w, &gw, EXACT)?;
    }

    #[test]
    fn callers_of_a_custom_rule_with_buffers((w, x) in data(4), scale in 0.3..2.0f64) {
        let (gw, gx, gs) = grad!(energy)(&w, &x, scale);
        check_vec("w", &gw, &fd_vec(|w| energy(w, &x, scale), &w), FD)?;
        check_vec("x", &gx, &fd_vec(|x| energy(&w, x, scale), &x), FD)?;
        check("scale", gs, fd(|s| energy(&w, &x, s), scale), FD)?;
        let w: Vec<f64> = w.iter().map(|v| v.abs() + 0.1).collect();
        let gx = grad!(energy_in_x)(&w, &x);
        check_vec("masked x", &gx, &fd_vec(|x| energy_in_x(&w, x), &x), FD)?;
    }
}

/// Where the naive formula overflows, the custom rule still gives the exact slope.
#[test]
fn softplus_rule_is_finite_where_the_naive_derivative_overflows() {
    for x in [-800.0, -40.0, 0.0, 40.0, 800.0] {
        let g = grad!(softplus)(x);
        let want = if x > 0.0 { 1.0 / (1.0 + (-x).exp()) } else { x.exp() / (1.0 + x.exp()) };
        assert!(g.is_finite(), "softplus'({x}) = {g}");
        assert_close("softplus'", g, want, EXACT);
    }
}

/// The implicit rule is exact at the root, not the derivative of the last iterations:
/// it agrees with the closed form of the root of x³ + x − 2 (x = 1) to rounding.
#[test]
fn implicit_rule_agrees_with_the_closed_form() {
    let (ga, gb) = grad!(cubic_root)(1.0, 2.0);
    assert_close("∂x/∂a", ga, -1.0 / 4.0, EXACT);
    assert_close("∂x/∂b", gb, 1.0 / 4.0, EXACT);
}
