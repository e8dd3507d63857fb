//! Straight-line code: bindings, shadowing, reassignment, compound assignment, blocks,
//! tuples, constants, integer side computations and classic test functions. Every
//! gradient is compared with central finite differences over random inputs, and with
//! the analytic gradient where it is cheap to write down.

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
use proptest::prelude::*;

const SCALE: f64 = 2.5;

#[differentiable]
fn affine(x: f64, y: f64, z: f64) -> f64 {
    2.0 * x - 3.0 * y + z / 4.0 + 1.0
}

/// One value used by many later operations.
#[differentiable]
fn fan_out(x: f64) -> f64 {
    let a = x * x;
    let b = a * x;
    let c = a + b;
    let d = c * a - b / (1.0 + a);
    d + a.sin() + c * c * x
}

#[differentiable]
fn shadowing(x: f64, y: f64) -> f64 {
    let x = x * y;
    let x = x.sin() + y;
    let y = x * x;
    y - x
}

/// A `let mut` reassigned in straight-line code, each new value reading the old one.
#[differentiable]
fn reassign(x: f64, y: f64) -> f64 {
    let mut a = x;
    a = a * y;
    a = a + x;
    a = a.exp() * a;
    a = a / (1.0 + a * a);
    a
}

#[differentiable]
fn compound(x: f64, y: f64) -> f64 {
    let mut a = x;
    a += y;
    a -= 0.5 * x;
    a *= y;
    a /= 1.0 + x * x;
    a += a * a;
    a
}

#[differentiable]
fn compound_rem(x: f64, y: f64) -> f64 {
    let mut a = x * y;
    a %= 1.5;
    a *= x;
    a
}

/// `x * y` before the `%= 1.5` of [`compound_rem`] (to stay away from its jumps).
fn compound_rem_quotient(x: f64, y: f64) -> f64 {
    x * y / 1.5
}

/// Block expressions, tuples, tuple fields and destructuring.
#[differentiable]
fn blocks_and_tuples(x: f64, y: f64) -> f64 {
    let a = {
        let t = x * y;
        t + t.sin()
    };
    let b = (a, x);
    let (p, q) = b;
    let c = b.0 * b.1;
    let ((u, v), w) = ((p * 2.0, q), y);
    p * q + c + (x - y) * (x + y) + u * v * w
}

/// Type annotations, parentheses and a discarded expression.
#[allow(unused_parens)]
#[differentiable]
fn annotated(x: f64, y: f64) -> f64 {
    let a: f64 = x * 2.0;
    let b: f64 = ((a + y) * (a - y));
    let _ignored = b * 1000.0;
    (b)
}

#[differentiable]
fn unused_argument(x: f64, y: f64) -> f64 {
    let _ = y;
    x * x
}

#[differentiable]
fn constant_output(x: f64) -> f64 {
    let _unused = x * 2.0;
    3.0
}

/// Paths to constants and a `const` item.
#[differentiable]
fn constants(x: f64) -> f64 {
    x * std::f64::consts::PI + f64::EPSILON + SCALE * x * x + core::f64::consts::E
}

/// Integer side computations are passed through and only scale the float path.
#[differentiable]
fn integer_side(x: f64, n: i32) -> f64 {
    let k = n * 2 + 1;
    let m = k as f64;
    let r = (k % 3) as f64;
    let flag = n > 2;
    let s = if flag { 1.0 } else { 2.0 };
    x * m + r * x.sin() + s * x
}

/// Float methods called as associated functions.
#[differentiable]
fn associated_calls(x: f64, y: f64) -> f64 {
    f64::sin(x) * f64::max(x, y) + f64::powi(y, 3) + f64::hypot(x, y) + f64::exp(f64::mul_add(x, y, 1.0))
}

/// Deferred initialisation.
#[differentiable]
fn deferred(x: f64) -> f64 {
    let a;
    a = x * 3.0;
    a * a
}

/// Shadowing inside a nested block.
#[differentiable]
fn inner_block_shadowing(x: f64) -> f64 {
    let mut s = 0.0;
    {
        let x = x * 2.0;
        s += x * x;
    }
    let y = {
        let x = s * 0.5;
        x * x
    };
    s + x + y
}

/// Names that the generated code might also use for its own variables.
#[differentiable]
fn name_clash(x: f64, cotangent: f64) -> f64 {
    let x_bar = x * cotangent;
    let prod = x_bar * x;
    let sum_bar = prod + 1.0;
    let len = sum_bar * x_bar;
    let tape = len.sin();
    let returned = tape * 2.0;
    let ybar = returned + sum_bar;
    let x_grad = ybar * x;
    x_grad + ybar
}

/// A `mut` parameter reassigned in straight-line code.
#[differentiable]
fn mut_parameter(mut x: f64, y: f64) -> f64 {
    x = x * 2.0;
    x *= y;
    x = x.sin() + x;
    x
}

/// Method chains and literal forms.
#[differentiable]
fn chains_and_literals(x: f64, y: f64, z: f64) -> f64 {
    x.sin().cos().exp() + (x * y).max(z).min(2.0) + 1e-3 * x + 1_000.0 * y + 2.0f64 * z + 0.5e1 * x * z
}

#[differentiable]
fn rosenbrock(x: f64, y: f64) -> f64 {
    let a = 1.0 - x;
    let b = y - x * x;
    a * a + 100.0 * b * b
}

#[differentiable]
fn sigmoid(x: f64) -> f64 {
    1.0 / (1.0 + (-x).exp())
}

#[differentiable]
fn gaussian(x: f64, mu: f64, sigma: f64) -> f64 {
    let z = (x - mu) / sigma;
    (-0.5 * z * z).exp() / (sigma * (2.0 * std::f64::consts::PI).sqrt())
}

#[differentiable]
fn logsumexp3(a: f64, b: f64, c: f64) -> f64 {
    let m = a.max(b).max(c);
    m + ((a - m).exp() + (b - m).exp() + (c - m).exp()).ln()
}

#[differentiable]
fn softplus_chain(x: f64, y: f64) -> f64 {
    let s = (1.0 + x.exp()).ln();
    let t = (1.0 + (s * y).exp()).ln();
    let u = t.tanh() * s.sqrt();
    u * u + s.atan() - t.asinh()
}

/// A long chain of dependent statements.
#[differentiable]
fn long_chain(x: f64, y: f64) -> f64 {
    let a0 = x * y;
    let a1 = a0.sin() + x;
    let a2 = a1 * a1 - y;
    let a3 = a2.tanh() * a0;
    let a4 = a3 + a1 * a2;
    let a5 = (a4 * 0.1).exp();
    let a6 = a5 * a3 - a2;
    let a7 = a6.atan() + a0 * a5;
    let a8 = a7 * a7 * 0.5 + a1;
    let a9 = (a8 * a8 + 1.0).sqrt() + a4.cos();
    let a10 = a9 * a8 - a7 * a6;
    let a11 = (a10 * 0.01).sinh() + a9;
    a11 * x + a10 * y + a5
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn affine_matches((x, y, z) in (-10.0..10.0f64, -10.0..10.0f64, -10.0..10.0f64)) {
        let (gx, gy, gz) = grad!(affine)(x, y, z);
        let (fx, fy, fz) = fd3(affine, x, y, z);
        check("affine d/dx", gx, fx, FD)?;
        check("affine d/dy", gy, fy, FD)?;
        check("affine d/dz", gz, fz, FD)?;
        check("affine d/dx analytic", gx, 2.0, EXACT)?;
        check("affine d/dy analytic", gy, -3.0, EXACT)?;
        check("affine d/dz analytic", gz, 0.25, EXACT)?;
        let (v, g) = value_and_grad!(affine)(x, y, z);
        check("affine value", v, affine(x, y, z), EXACT)?;
        check("affine value_and_grad d/dx", g.0, gx, EXACT)?;
    }

    #[test]
    fn fan_out_matches(x in -2.0..2.0f64) {
        let g: f64 = grad!(fan_out)(x);
        check(&format!("fan_out'({x})"), g, fd(fan_out, x), FD)?;
        let (v, g2) = value_and_grad!(fan_out)(x);
        check("fan_out value", v, fan_out(x), EXACT)?;
        check("fan_out value_and_grad", g2, g, EXACT)?;
    }

    #[test]
    fn shadowing_matches(x in -2.0..2.0f64, y in -2.0..2.0f64) {
        let (gx, gy) = grad!(shadowing)(x, y);
        let (fx, fy) = fd2(shadowing, x, y);
        check("shadowing d/dx", gx, fx, FD)?;
        check("shadowing d/dy", gy, fy, FD)?;
        // Analytic: s = sin(xy) + y, f = s^2 - s.
        let s = (x * y).sin() + y;
        let ds = 2.0 * s - 1.0;
        check("shadowing d/dx analytic", gx, ds * (x * y).cos() * y, EXACT)?;
        check("shadowing d/dy analytic", gy, ds * ((x * y).cos() * x + 1.0), EXACT)?;
    }

    #[test]
    fn reassign_matches(x in -1.5..1.5f64, y in -1.5..1.5f64) {
        let (gx, gy) = grad!(reassign)(x, y);
        let (fx, fy) = fd2(reassign, x, y);
        check("reassign d/dx", gx, fx, FD)?;
        check("reassign d/dy", gy, fy, FD)?;
        let (v, _) = value_and_grad!(reassign)(x, y);
        check("reassign value", v, reassign(x, y), EXACT)?;
    }

    #[test]
    fn compound_matches(x in -3.0..3.0f64, y in -3.0..3.0f64) {
        let (gx, gy) = grad!(compound)(x, y);
        let (fx, fy) = fd2(compound, x, y);
        check("compound d/dx", gx, fx, FD)?;
        check("compound d/dy", gy, fy, FD)?;
    }

    #[test]
    fn compound_rem_matches(x in -3.0..3.0f64, y in -3.0..3.0f64) {
        let q = compound_rem_quotient(x, y);
        prop_assume!((q - q.round()).abs() > 0.01);
        let (gx, gy) = grad!(compound_rem)(x, y);
        let (fx, fy) = fd2(compound_rem, x, y);
        check("compound %= d/dx", gx, fx, FD)?;
        check("compound %= d/dy", gy, fy, FD)?;
        // a = (x*y) % 1.5 has da/dx = y, da/dy = x; f = a * x.
        let a = (x * y) % 1.5;
        check("compound %= d/dx analytic", gx, y * x + a, EXACT)?;
        check("compound %= d/dy analytic", gy, x * x, EXACT)?;
    }

    #[test]
    fn blocks_and_tuples_match(x in -2.0..2.0f64, y in -2.0..2.0f64) {
        let (gx, gy) = grad!(blocks_and_tuples)(x, y);
        let (fx, fy) = fd2(blocks_and_tuples, x, y);
        check("blocks_and_tuples d/dx", gx, fx, FD)?;
        check("blocks_and_tuples d/dy", gy, fy, FD)?;
    }

    #[test]
    fn annotated_matches(x in -2.0..2.0f64, y in -2.0..2.0f64) {
        let (gx, gy) = grad!(annotated)(x, y);
        check("annotated d/dx", gx, 8.0 * x, EXACT)?;
        check("annotated d/dy", gy, -2.0 * y, EXACT)?;
        let (fx, fy) = fd2(annotated, x, y);
        check("annotated d/dx fd", gx, fx, FD)?;
        check("annotated d/dy fd", gy, fy, FD)?;
    }

    #[test]
    fn unused_and_constant(x in -5.0..5.0f64, y in -5.0..5.0f64) {
        let (gx, gy) = grad!(unused_argument)(x, y);
        check("unused_argument d/dx", gx, 2.0 * x, EXACT)?;
        prop_assert_eq!(gy, 0.0, "the gradient of an unused argument is exactly zero");
        let g: f64 = grad!(constant_output)(x);
        prop_assert_eq!(g, 0.0, "the gradient of a constant is exactly zero");
        let (v, g) = value_and_grad!(constant_output)(x);
        prop_assert_eq!((v, g), (3.0, 0.0));
    }

    #[test]
    fn constants_match(x in -5.0..5.0f64) {
        let g: f64 = grad!(constants)(x);
        check("constants", g, std::f64::consts::PI + 2.0 * SCALE * x, EXACT)?;
        check("constants fd", g, fd(constants, x), FD)?;
    }

    #[test]
    fn integer_side_matches(x in -5.0..5.0f64, n in -10i32..10) {
        let g: f64 = grad!(integer_side)(x, n);
        let k = n * 2 + 1;
        let s = if n > 2 { 1.0 } else { 2.0 };
        check("integer_side", g, k as f64 + ((k % 3) as f64) * x.cos() + s, EXACT)?;
        check("integer_side fd", g, fd(|t| integer_side(t, n), x), FD)?;
    }

    #[test]
    fn associated_calls_match(x in -2.0..2.0f64, y in -2.0..2.0f64) {
        prop_assume!((x - y).abs() > 0.01 && x.hypot(y) > 0.1);
        let (gx, gy) = grad!(associated_calls)(x, y);
        let (fx, fy) = fd2(associated_calls, x, y);
        check("associated_calls d/dx", gx, fx, FD)?;
        check("associated_calls d/dy", gy, fy, FD)?;
    }

    #[test]
    fn deferred_matches(x in -5.0..5.0f64) {
        let g: f64 = grad!(deferred)(x);
        check("deferred", g, 18.0 * x, EXACT)?;
    }

    #[test]
    fn inner_block_shadowing_matches(x in -2.0..2.0f64) {
        let g: f64 = grad!(inner_block_shadowing)(x);
        // s = 4x^2, y = 4x^4: f = 4x^2 + x + 4x^4.
        check("shadowing in blocks", g, 8.0 * x + 1.0 + 16.0 * x * x * x, EXACT)?;
    }

    #[test]
    fn name_clash_matches(x in -2.0..2.0f64, c in -2.0..2.0f64) {
        let (gx, gc) = grad!(name_clash)(x, c);
        let (fx, fc) = fd2(name_clash, x, c);
        check("name clash d/dx", gx, fx, FD)?;
        check("name clash d/dcotangent", gc, fc, FD)?;
    }

    #[test]
    fn mut_parameter_matches(x in -2.0..2.0f64, y in -2.0..2.0f64) {
        let (gx, gy) = grad!(mut_parameter)(x, y);
        let u = 2.0 * x * y;
        check("mut parameter d/dx", gx, (u.cos() + 1.0) * 2.0 * y, EXACT)?;
        check("mut parameter d/dy", gy, (u.cos() + 1.0) * 2.0 * x, EXACT)?;
    }

    #[test]
    fn chains_and_literals_match(x in -2.0..2.0f64, y in -2.0..2.0f64, z in -2.0..2.0f64) {
        let p = x * y;
        prop_assume!((p - z).abs() > 0.01 && (p.max(z) - 2.0).abs() > 0.01);
        let (gx, gy, gz) = grad!(chains_and_literals)(x, y, z);
        let (fx, fy, fz) = fd3(chains_and_literals, x, y, z);
        check("chains d/dx", gx, fx, FD)?;
        check("chains d/dy", gy, fy, FD)?;
        check("chains d/dz", gz, fz, FD)?;
    }

    #[test]
    fn rosenbrock_matches(x in -2.0..2.0f64, y in -1.0..3.0f64) {
        let (gx, gy) = grad!(rosenbrock)(x, y);
        check("rosenbrock d/dx", gx, -2.0 * (1.0 - x) - 400.0 * x * (y - x * x), EXACT)?;
        check("rosenbrock d/dy", gy, 200.0 * (y - x * x), EXACT)?;
        let (fx, fy) = fd2(rosenbrock, x, y);
        check("rosenbrock d/dx fd", gx, fx, FD)?;
        check("rosenbrock d/dy fd", gy, fy, FD)?;
    }

    #[test]
    fn sigmoid_matches(x in -10.0..10.0f64) {
        let g: f64 = grad!(sigmoid)(x);
        let s = sigmoid(x);
        check("sigmoid", g, s * (1.0 - s), EXACT)?;
        check("sigmoid fd", g, fd(sigmoid, x), FD)?;
    }

    #[test]
    fn gaussian_matches(x in -3.0..3.0f64, mu in -1.0..1.0f64, sigma in 0.3..2.0f64) {
        let (gx, gm, gs) = grad!(gaussian)(x, mu, sigma);
        let p = gaussian(x, mu, sigma);
        let z = (x - mu) / sigma;
        check("gaussian d/dx", gx, -p * z / sigma, EXACT)?;
        check("gaussian d/dmu", gm, p * z / sigma, EXACT)?;
        check("gaussian d/dsigma", gs, p * (z * z - 1.0) / sigma, EXACT)?;
        let (fx, fm, fs) = fd3(gaussian, x, mu, sigma);
        check("gaussian d/dx fd", gx, fx, FD)?;
        check("gaussian d/dmu fd", gm, fm, FD)?;
        check("gaussian d/dsigma fd", gs, fs, FD)?;
    }

    #[test]
    fn logsumexp_is_softmax(a in -5.0..5.0f64, b in -5.0..5.0f64, c in -5.0..5.0f64) {
        prop_assume!((a - b).abs() > 0.01 && (b - c).abs() > 0.01 && (a - c).abs() > 0.01);
        let (ga, gb, gc) = grad!(logsumexp3)(a, b, c);
        let z = a.exp() + b.exp() + c.exp();
        check("logsumexp d/da", ga, a.exp() / z, EXACT)?;
        check("logsumexp d/db", gb, b.exp() / z, EXACT)?;
        check("logsumexp d/dc", gc, c.exp() / z, EXACT)?;
        let (fa, fb, fc) = fd3(logsumexp3, a, b, c);
        check("logsumexp d/da fd", ga, fa, FD)?;
        check("logsumexp d/db fd", gb, fb, FD)?;
        check("logsumexp d/dc fd", gc, fc, FD)?;
    }

    #[test]
    fn softplus_chain_matches(x in -3.0..3.0f64, y in -2.0..2.0f64) {
        let (gx, gy) = grad!(softplus_chain)(x, y);
        let (fx, fy) = fd2(softplus_chain, x, y);
        check("softplus_chain d/dx", gx, fx, FD)?;
        check("softplus_chain d/dy", gy, fy, FD)?;
    }

    #[test]
    fn long_chain_matches(x in -1.0..1.0f64, y in -1.0..1.0f64) {
        let (gx, gy) = grad!(long_chain)(x, y);
        let (fx, fy) = fd2(long_chain, x, y);
        check(&format!("long_chain d/dx at ({x}, {y})"), gx, fx, FD)?;
        check(&format!("long_chain d/dy at ({x}, {y})"), gy, fy, FD)?;
        let (v, (vx, vy)) = value_and_grad!(long_chain)(x, y);
        check("long_chain value", v, long_chain(x, y), EXACT)?;
        check("long_chain value_and_grad d/dx", vx, gx, EXACT)?;
        check("long_chain value_and_grad d/dy", vy, gy, EXACT)?;
    }
}
