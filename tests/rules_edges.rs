//! Every scalar rule at its edge points, up to the third derivative.
//!
//! Edge points are where a rule's formula is likely to be wrong although the
//! derivative exists: 0 (`0·∞` in `p·xᵖ⁻¹`), integer exponents (`powi`, `powf` with
//! an integral exponent), points next to poles, ±∞ (limits that must come out 0, not
//! NaN), ties and kinks (where the documented convention holds). Each function is
//! differentiated by nesting `grad!` three times (`f` → `d1` → `d2` → `d3`), so the
//! second and third derivatives go through the rules' own derivatives.
//!
//! Points where a derivative does not exist (a pole, `√x` at 0, `x^2.5`'s third
//! derivative at 0) are not checked there.

#![allow(clippy::eq_op)] // `x / x` is one of the edge cases
#![allow(clippy::excessive_precision, clippy::approx_constant)]

mod common;

use adjoint::prelude::*;
use common::*;
use std::f64::consts::{LN_10, LN_2, PI};

/// `f` (order 3), its derivative `d1`, and `d2`, `d3` by nesting `grad!`.
macro_rules! tower {
    ($($f:ident, $d1:ident, $d2:ident, $d3:ident: |$x:ident| $body:expr;)*) => {$(
        #[differentiable(order = 3)]
        fn $f($x: f64) -> f64 {
            $body
        }
        #[differentiable(order = 2)]
        fn $d1($x: f64) -> f64 {
            grad!($f)($x)
        }
        #[differentiable(order = 1)]
        fn $d2($x: f64) -> f64 {
            grad!($d1)($x)
        }
        fn $d3($x: f64) -> f64 {
            grad!($d2)($x)
        }
    )*};
}

tower! {
    powf0, powf0_d1, powf0_d2, powf0_d3: |x| x.powf(0.0);
    powf1, powf1_d1, powf1_d2, powf1_d3: |x| x.powf(1.0);
    powf2, powf2_d1, powf2_d2, powf2_d3: |x| x.powf(2.0);
    powf3, powf3_d1, powf3_d2, powf3_d3: |x| x.powf(3.0);
    powf25, powf25_d1, powf25_d2, powf25_d3: |x| x.powf(2.5);
    powf_zero_base, powf_zero_base_d1, powf_zero_base_d2, powf_zero_base_d3: |p| 0.0_f64.powf(p);
    powf_two_base, powf_two_base_d1, powf_two_base_d2, powf_two_base_d3: |p| 2.0_f64.powf(p);
    powi0, powi0_d1, powi0_d2, powi0_d3: |x| x.powi(0);
    powi1, powi1_d1, powi1_d2, powi1_d3: |x| x.powi(1);
    powi2, powi2_d1, powi2_d2, powi2_d3: |x| x.powi(2);
    powi3, powi3_d1, powi3_d2, powi3_d3: |x| x.powi(3);
    powim1, powim1_d1, powim1_d2, powim1_d3: |x| x.powi(-1);
    powim2, powim2_d1, powim2_d2, powim2_d3: |x| x.powi(-2);
    sqrt, sqrt_d1, sqrt_d2, sqrt_d3: |x| x.sqrt();
    cbrt, cbrt_d1, cbrt_d2, cbrt_d3: |x| x.cbrt();
    exp, exp_d1, exp_d2, exp_d3: |x| x.exp();
    exp2, exp2_d1, exp2_d2, exp2_d3: |x| x.exp2();
    exp_m1, exp_m1_d1, exp_m1_d2, exp_m1_d3: |x| x.exp_m1();
    ln, ln_d1, ln_d2, ln_d3: |x| x.ln();
    ln_1p, ln_1p_d1, ln_1p_d2, ln_1p_d3: |x| x.ln_1p();
    log10, log10_d1, log10_d2, log10_d3: |x| x.log10();
    log2, log2_d1, log2_d2, log2_d3: |x| x.log2();
    log_base2, log_base2_d1, log_base2_d2, log_base2_d3: |x| x.log(2.0);
    log_of8, log_of8_d1, log_of8_d2, log_of8_d3: |b| 8.0_f64.log(b);
    sin, sin_d1, sin_d2, sin_d3: |x| x.sin();
    cos, cos_d1, cos_d2, cos_d3: |x| x.cos();
    tan, tan_d1, tan_d2, tan_d3: |x| x.tan();
    asin, asin_d1, asin_d2, asin_d3: |x| x.asin();
    acos, acos_d1, acos_d2, acos_d3: |x| x.acos();
    atan, atan_d1, atan_d2, atan_d3: |x| x.atan();
    sinh, sinh_d1, sinh_d2, sinh_d3: |x| x.sinh();
    cosh, cosh_d1, cosh_d2, cosh_d3: |x| x.cosh();
    tanh, tanh_d1, tanh_d2, tanh_d3: |x| x.tanh();
    asinh, asinh_d1, asinh_d2, asinh_d3: |x| x.asinh();
    acosh, acosh_d1, acosh_d2, acosh_d3: |x| x.acosh();
    atanh, atanh_d1, atanh_d2, atanh_d3: |x| x.atanh();
    abs, abs_d1, abs_d2, abs_d3: |x| x.abs();
    recip, recip_d1, recip_d2, recip_d3: |x| x.recip();
    signum, signum_d1, signum_d2, signum_d3: |x| x.signum();
    floor, floor_d1, floor_d2, floor_d3: |x| x.floor();
    ceil, ceil_d1, ceil_d2, ceil_d3: |x| x.ceil();
    round, round_d1, round_d2, round_d3: |x| x.round();
    trunc, trunc_d1, trunc_d2, trunc_d3: |x| x.trunc();
    fract, fract_d1, fract_d2, fract_d3: |x| x.fract();
    to_degrees, to_degrees_d1, to_degrees_d2, to_degrees_d3: |x| x.to_degrees();
    to_radians, to_radians_d1, to_radians_d2, to_radians_d3: |x| x.to_radians();
    hypot3, hypot3_d1, hypot3_d2, hypot3_d3: |x| x.hypot(3.0);
    hypot0, hypot0_d1, hypot0_d2, hypot0_d3: |x| x.hypot(0.0);
    atan2_y, atan2_y_d1, atan2_y_d2, atan2_y_d3: |x| x.atan2(1.0);
    atan2_x, atan2_x_d1, atan2_x_d2, atan2_x_d3: |x| 1.0_f64.atan2(x);
    max1, max1_d1, max1_d2, max1_d3: |x| x.max(1.0);
    min1, min1_d1, min1_d2, min1_d3: |x| x.min(1.0);
    clamp, clamp_d1, clamp_d2, clamp_d3: |x| x.clamp(-1.0, 1.0);
    mul_add, mul_add_d1, mul_add_d2, mul_add_d3: |x| x.mul_add(x, x);
    rem_lhs, rem_lhs_d1, rem_lhs_d2, rem_lhs_d3: |x| x % 0.7;
    rem_rhs, rem_rhs_d1, rem_rhs_d2, rem_rhs_d3: |x| 2.0 % x;
    div_rhs, div_rhs_d1, div_rhs_d2, div_rhs_d3: |x| 1.0 / x;
    div_self, div_self_d1, div_self_d2, div_self_d3: |x| x / x;
}

type F = fn(f64) -> f64;

/// One edge point: the derivatives of orders 1 to 3 that exist there (`None`: the
/// derivative does not exist, or its value there is not a limit the rules promise).
struct Edge {
    name: &'static str,
    x: f64,
    want: [Option<f64>; 3],
}

fn e(name: &'static str, x: f64, d1: f64, d2: f64, d3: f64) -> Edge {
    Edge { name, x, want: [Some(d1), Some(d2), Some(d3)] }
}

fn check_edges(derivatives: [F; 3], edges: &[Edge]) {
    for edge in edges {
        for (k, (d, want)) in derivatives.iter().zip(edge.want).enumerate() {
            let Some(want) = want else { continue };
            let got = d(edge.x);
            let ok = if want.is_infinite() { got == want } else { close(got, want, EXACT2) };
            assert!(ok, "{} at x = {}: derivative {} is {got:e}, want {want:e}", edge.name, edge.x, k + 1);
        }
    }
}

const INF: f64 = f64::INFINITY;

#[test]
fn powf_at_zero_with_integer_exponents() {
    // x^c at 0: the k-th derivative is c! at k = c and 0 otherwise (0⁰ = 1).
    check_edges([powf0_d1, powf0_d2, powf0_d3], &[e("x^0", 0.0, 0.0, 0.0, 0.0), e("x^0", -2.0, 0.0, 0.0, 0.0)]);
    check_edges([powf1_d1, powf1_d2, powf1_d3], &[e("x^1", 0.0, 1.0, 0.0, 0.0), e("x^1", -2.0, 1.0, 0.0, 0.0)]);
    check_edges([powf2_d1, powf2_d2, powf2_d3], &[e("x^2", 0.0, 0.0, 2.0, 0.0), e("x^2", -1.5, -3.0, 2.0, 0.0)]);
    check_edges([powf3_d1, powf3_d2, powf3_d3], &[e("x^3", 0.0, 0.0, 0.0, 6.0), e("x^3", -2.0, 12.0, -12.0, 6.0)]);
    // x^2.5: 2.5·x^1.5 and 3.75·x^0.5 vanish at 0; the third derivative does not exist.
    check_edges(
        [powf25_d1, powf25_d2, powf25_d3],
        &[Edge { name: "x^2.5", x: 0.0, want: [Some(0.0), Some(0.0), None] }, e("x^2.5", 4.0, 20.0, 7.5, 0.9375)],
    );
}

#[test]
fn powf_with_respect_to_the_exponent() {
    // 0^p = 0 for p > 0: every derivative in p is 0.
    check_edges(
        [powf_zero_base_d1, powf_zero_base_d2, powf_zero_base_d3],
        &[e("0^p", 2.0, 0.0, 0.0, 0.0), e("0^p", 0.5, 0.0, 0.0, 0.0)],
    );
    // 2^p: lnᵏ2 · 2^p.
    check_edges(
        [powf_two_base_d1, powf_two_base_d2, powf_two_base_d3],
        &[e("2^p", 0.0, LN_2, LN_2 * LN_2, LN_2.powi(3)), e("2^p", -INF, 0.0, 0.0, 0.0)],
    );
}

#[test]
fn powi_at_zero_and_negative_exponents() {
    check_edges([powi0_d1, powi0_d2, powi0_d3], &[e("x^0", 0.0, 0.0, 0.0, 0.0)]);
    check_edges([powi1_d1, powi1_d2, powi1_d3], &[e("x^1", 0.0, 1.0, 0.0, 0.0)]);
    check_edges([powi2_d1, powi2_d2, powi2_d3], &[e("x^2", 0.0, 0.0, 2.0, 0.0)]);
    check_edges([powi3_d1, powi3_d2, powi3_d3], &[e("x^3", 0.0, 0.0, 0.0, 6.0)]);
    check_edges(
        [powim1_d1, powim1_d2, powim1_d3],
        &[e("x^-1", -2.0, -0.25, -0.25, -0.375), e("x^-1", INF, 0.0, 0.0, 0.0)],
    );
    check_edges([powim2_d1, powim2_d2, powim2_d3], &[e("x^-2", 1.0, -2.0, 6.0, -24.0)]);
}

#[test]
fn roots_exponentials_and_logarithms() {
    check_edges([sqrt_d1, sqrt_d2, sqrt_d3], &[e("sqrt", 1.0, 0.5, -0.25, 0.375), e("sqrt", INF, 0.0, 0.0, 0.0)]);
    check_edges(
        [cbrt_d1, cbrt_d2, cbrt_d3],
        &[
            e("cbrt", 1.0, 1.0 / 3.0, -2.0 / 9.0, 10.0 / 27.0),
            e("cbrt", -8.0, 1.0 / 12.0, 1.0 / 144.0, 10.0 / 6912.0),
            e("cbrt", INF, 0.0, 0.0, 0.0),
        ],
    );
    check_edges([exp_d1, exp_d2, exp_d3], &[e("exp", 0.0, 1.0, 1.0, 1.0), e("exp", -INF, 0.0, 0.0, 0.0)]);
    check_edges(
        [exp2_d1, exp2_d2, exp2_d3],
        &[e("exp2", 1.0, 2.0 * LN_2, 2.0 * LN_2 * LN_2, 2.0 * LN_2.powi(3)), e("exp2", -INF, 0.0, 0.0, 0.0)],
    );
    check_edges(
        [exp_m1_d1, exp_m1_d2, exp_m1_d3],
        &[e("exp_m1", 0.0, 1.0, 1.0, 1.0), e("exp_m1", -INF, 0.0, 0.0, 0.0)],
    );
    check_edges([ln_d1, ln_d2, ln_d3], &[e("ln", 1.0, 1.0, -1.0, 2.0), e("ln", INF, 0.0, 0.0, 0.0)]);
    check_edges([ln_1p_d1, ln_1p_d2, ln_1p_d3], &[e("ln_1p", 0.0, 1.0, -1.0, 2.0), e("ln_1p", INF, 0.0, 0.0, 0.0)]);
    check_edges(
        [log10_d1, log10_d2, log10_d3],
        &[e("log10", 1.0, 1.0 / LN_10, -1.0 / LN_10, 2.0 / LN_10), e("log10", INF, 0.0, 0.0, 0.0)],
    );
    check_edges(
        [log2_d1, log2_d2, log2_d3],
        &[e("log2", 1.0, 1.0 / LN_2, -1.0 / LN_2, 2.0 / LN_2), e("log2", INF, 0.0, 0.0, 0.0)],
    );
    check_edges(
        [log_base2_d1, log_base2_d2, log_base2_d3],
        &[e("log(x, 2)", 1.0, 1.0 / LN_2, -1.0 / LN_2, 2.0 / LN_2), e("log(x, 2)", INF, 0.0, 0.0, 0.0)],
    );
    // log_b 8 = ln 8 / ln b = 3 ln 2 / ln b; at b = 2 (u = ln b = ln 2):
    // d/db = −3 ln2 / (b u²); d²/db² = 3 ln2 (u + 2) / (b² u³);
    // d³/db³ = −3 ln2 (2u² + 6u + 6) / (b³ u⁴).
    let u = LN_2;
    let l8 = 3.0 * LN_2;
    check_edges(
        [log_of8_d1, log_of8_d2, log_of8_d3],
        &[e(
            "log(8, b)",
            2.0,
            -l8 / (2.0 * u * u),
            l8 * (u + 2.0) / (4.0 * u.powi(3)),
            -l8 * (2.0 * u * u + 6.0 * u + 6.0) / (8.0 * u.powi(4)),
        )],
    );
}

#[test]
fn trigonometric_and_hyperbolic() {
    check_edges([sin_d1, sin_d2, sin_d3], &[e("sin", 0.0, 1.0, 0.0, -1.0)]);
    check_edges([cos_d1, cos_d2, cos_d3], &[e("cos", 0.0, 0.0, -1.0, 0.0)]);
    check_edges([tan_d1, tan_d2, tan_d3], &[e("tan", 0.0, 1.0, 0.0, 2.0)]);
    check_edges([asin_d1, asin_d2, asin_d3], &[e("asin", 0.0, 1.0, 0.0, 1.0)]);
    check_edges([acos_d1, acos_d2, acos_d3], &[e("acos", 0.0, -1.0, 0.0, -1.0)]);
    check_edges(
        [atan_d1, atan_d2, atan_d3],
        &[e("atan", 0.0, 1.0, 0.0, -2.0), e("atan", INF, 0.0, 0.0, 0.0), e("atan", -INF, 0.0, 0.0, 0.0)],
    );
    check_edges([sinh_d1, sinh_d2, sinh_d3], &[e("sinh", 0.0, 1.0, 0.0, 1.0)]);
    check_edges([cosh_d1, cosh_d2, cosh_d3], &[e("cosh", 0.0, 0.0, 1.0, 0.0)]);
    check_edges(
        [tanh_d1, tanh_d2, tanh_d3],
        &[e("tanh", 0.0, 1.0, 0.0, -2.0), e("tanh", INF, 0.0, 0.0, 0.0), e("tanh", -INF, 0.0, 0.0, 0.0)],
    );
    check_edges(
        [asinh_d1, asinh_d2, asinh_d3],
        &[e("asinh", 0.0, 1.0, 0.0, -1.0), e("asinh", 1e200, 1e-200, 0.0, 0.0), e("asinh", -INF, 0.0, 0.0, 0.0)],
    );
    // acosh at 2: (x²−1)^(−1/2), −x (x²−1)^(−3/2), (2x²+1)(x²−1)^(−5/2).
    let s3 = 3.0_f64.sqrt();
    check_edges(
        [acosh_d1, acosh_d2, acosh_d3],
        &[e("acosh", 2.0, 1.0 / s3, -2.0 / (3.0 * s3), 9.0 / (9.0 * s3)), e("acosh", INF, 0.0, 0.0, 0.0)],
    );
    check_edges([atanh_d1, atanh_d2, atanh_d3], &[e("atanh", 0.0, 1.0, 0.0, 2.0)]);
}

#[test]
fn piecewise_and_linear() {
    check_edges(
        [abs_d1, abs_d2, abs_d3],
        &[e("abs", 0.0, 0.0, 0.0, 0.0), e("abs", -2.0, -1.0, 0.0, 0.0), e("abs", 2.0, 1.0, 0.0, 0.0)],
    );
    check_edges(
        [recip_d1, recip_d2, recip_d3],
        &[e("recip", 1.0, -1.0, 2.0, -6.0), e("recip", -2.0, -0.25, -0.25, -0.375), e("recip", INF, 0.0, 0.0, 0.0)],
    );
    for (name, d) in [
        ("signum", [signum_d1 as F, signum_d2, signum_d3]),
        ("floor", [floor_d1, floor_d2, floor_d3]),
        ("ceil", [ceil_d1, ceil_d2, ceil_d3]),
        ("round", [round_d1, round_d2, round_d3]),
        ("trunc", [trunc_d1, trunc_d2, trunc_d3]),
    ] {
        check_edges(d, &[e(name, 0.0, 0.0, 0.0, 0.0), e(name, 0.3, 0.0, 0.0, 0.0), e(name, -INF, 0.0, 0.0, 0.0)]);
    }
    check_edges([fract_d1, fract_d2, fract_d3], &[e("fract", 0.3, 1.0, 0.0, 0.0), e("fract", -2.7, 1.0, 0.0, 0.0)]);
    check_edges([to_degrees_d1, to_degrees_d2, to_degrees_d3], &[e("to_degrees", 0.0, 180.0 / PI, 0.0, 0.0)]);
    check_edges([to_radians_d1, to_radians_d2, to_radians_d3], &[e("to_radians", 0.0, PI / 180.0, 0.0, 0.0)]);
}

#[test]
fn operands_of_two_and_three() {
    // hypot(x, 3) = √(x²+9): x/r, 9/r³, −27x/r⁵ at x = 4 (r = 5).
    check_edges(
        [hypot3_d1, hypot3_d2, hypot3_d3],
        &[e("hypot(x, 3)", 4.0, 0.8, 9.0 / 125.0, -108.0 / 3125.0), e("hypot(x, 3)", 0.0, 0.0, 1.0 / 3.0, 0.0)],
    );
    // hypot(x, 0) = |x| away from 0.
    // At 0 it is |x| at its kink: the subgradient 0, as `abs` gives (x/r would be 0/0).
    check_edges(
        [hypot0_d1, hypot0_d2, hypot0_d3],
        &[e("hypot(x, 0)", 2.0, 1.0, 0.0, 0.0), Edge { name: "hypot(x, 0)", x: 0.0, want: [Some(0.0), None, None] }],
    );
    check_edges(
        [atan2_y_d1, atan2_y_d2, atan2_y_d3],
        &[e("atan2(x, 1)", 0.0, 1.0, 0.0, -2.0), e("atan2(x, 1)", 1e200, 0.0, 0.0, 0.0)],
    );
    check_edges([atan2_x_d1, atan2_x_d2, atan2_x_d3], &[e("atan2(1, x)", 0.0, -1.0, 0.0, 2.0)]);
    check_edges(
        [max1_d1, max1_d2, max1_d3],
        &[e("max(x, 1)", 2.0, 1.0, 0.0, 0.0), e("max(x, 1)", 0.0, 0.0, 0.0, 0.0), e("max(x, 1)", 1.0, 0.5, 0.0, 0.0)],
    );
    check_edges(
        [min1_d1, min1_d2, min1_d3],
        &[e("min(x, 1)", 2.0, 0.0, 0.0, 0.0), e("min(x, 1)", 0.0, 1.0, 0.0, 0.0), e("min(x, 1)", 1.0, 0.5, 0.0, 0.0)],
    );
    check_edges(
        [clamp_d1, clamp_d2, clamp_d3],
        &[e("clamp", 0.5, 1.0, 0.0, 0.0), e("clamp", 2.0, 0.0, 0.0, 0.0), e("clamp", -INF, 0.0, 0.0, 0.0)],
    );
    check_edges(
        [mul_add_d1, mul_add_d2, mul_add_d3],
        &[e("x·x + x", 1.0, 3.0, 2.0, 0.0), e("x·x + x", 0.0, 1.0, 2.0, 0.0)],
    );
    check_edges([rem_lhs_d1, rem_lhs_d2, rem_lhs_d3], &[e("x % 0.7", 0.3, 1.0, 0.0, 0.0)]);
    check_edges([rem_rhs_d1, rem_rhs_d2, rem_rhs_d3], &[e("2 % x", 0.7, -2.0, 0.0, 0.0)]);
    check_edges(
        [div_rhs_d1, div_rhs_d2, div_rhs_d3],
        &[e("1/x", 2.0, -0.25, 0.25, -0.375), e("1/x", INF, 0.0, 0.0, 0.0), e("1/x", 1e-50, -1e100, 2e150, -6e200)],
    );
    check_edges([div_self_d1, div_self_d2, div_self_d3], &[e("x/x", 3.0, 0.0, 0.0, 0.0)]);
}

/// The analytic values above, cross-checked against differences of the next lower
/// derivative at ordinary points (a typo in a table entry would show here).
#[test]
fn towers_agree_with_differences() {
    let cases: &[(&str, [F; 4], f64)] = &[
        ("powf3", [powf3, powf3_d1, powf3_d2, powf3_d3], 0.7),
        ("powf25", [powf25, powf25_d1, powf25_d2, powf25_d3], 1.3),
        ("log_of8", [log_of8, log_of8_d1, log_of8_d2, log_of8_d3], 2.0),
        ("acosh", [acosh, acosh_d1, acosh_d2, acosh_d3], 2.0),
        ("hypot3", [hypot3, hypot3_d1, hypot3_d2, hypot3_d3], 4.0),
        ("atan2_x", [atan2_x, atan2_x_d1, atan2_x_d2, atan2_x_d3], 0.4),
        ("cbrt", [cbrt, cbrt_d1, cbrt_d2, cbrt_d3], -8.0),
    ];
    for (name, fs, x) in cases {
        for k in 0..3 {
            assert_close(&format!("{name}: derivative {}", k + 1), fs[k + 1](*x), fd(fs[k], *x), FD2);
        }
    }
}

/// A value that went unused sends no NaN back through its rule: a skipped sample, an
/// untaken branch, the NaN operand of `max`/`min`, a quotient of it that is discarded.
#[differentiable]
fn skipped_samples(x: &[f64], a: f64) -> f64 {
    let mut s = 0.0;
    for &v in x {
        let y = (v * a).ln();
        if !y.is_finite() {
            continue;
        }
        s += y * y;
    }
    s
}

#[differentiable]
fn nan_not_taken(x: f64) -> f64 {
    let r = (x - 1.0).sqrt();
    let discarded = (x - 2.0).acos() / x + (1.0 - x).ln() / (x - 1.0);
    let r = if r.is_nan() { 0.0 } else { r + 0.0 * discarded };
    r + r.max(x) + (x - 3.0).ln().min(2.0 * x)
}

#[differentiable]
fn d_nan_not_taken(x: f64) -> f64 {
    grad!(nan_not_taken)(x)
}

#[test]
fn unused_values_send_back_no_nan() {
    let g = grad!(skipped_samples)(&[1.0, -1.0, 2.0], 0.5);
    assert!(g.0.iter().all(|v| v.is_finite()) && g.1.is_finite(), "{g:?}");
    assert!(close(g.0[0], 2.0 * 0.5f64.ln(), EXACT2) && g.0[1] == 0.0, "{g:?}");
    // Below 1 every NaN is unused: r = 0, max(0, x) = x, min(NaN, 2x) = 2x.
    for x in [0.25, 0.5, 0.75] {
        assert_eq!(grad!(nan_not_taken)(x), 3.0, "at {x}");
        assert_eq!(grad!(d_nan_not_taken)(x), 0.0, "at {x}");
    }
}

/// A value computed at a rule's singular point (`atan2` at the origin) and then
/// overwritten, seen by second derivatives: fuzz campaign 0x2200, program 464, as the
/// shrinker left it (the NaN of the guarded formula came back through the second
/// order's unguarded `*`). The function does not depend on it.
#[allow(unused_variables, unused_mut, unused_parens, unused_assignments, clippy::all)]
mod fuzz_0x2200_464 {
    use super::*;

    #[differentiable]
    pub fn h0(u: f64) -> f64 {
        let mut s1 = (2.0 * u.tanh()).sinh();
        for i2 in 0..4 {
            let mut buf3 = vec![u, 1.0, s1];
            s1 *= (i2 as f64);
            let s4 = buf3.pop().unwrap();
        }
        (-s1).atan2((s1 * s1))
    }

    #[differentiable]
    pub fn f(y: &[f64], a: f64, x: &[f64]) -> f64 {
        let mut s5 = (h0((a + 0.25)) + 2.0);
        s5 -= y.iter().sum::<f64>();
        for i6 in (0..y.len() - 1).step_by(3).rev() {
            s5 *= 1.0;
            let mut buf10 = x.to_vec();
        }
        s5 += (x[1] * s5);
        s5 = a;
        s5
    }

    #[differentiable]
    pub fn d_f(y: &[f64], a: f64, x: &[f64]) -> f64 {
        let (g0, g1, g2) = grad!(f)(y, a, x);
        (g0[0] + g0.iter().sum::<f64>()) * 0.75 + g1 * -1.25 + (g2[0] + g2.iter().sum::<f64>()) * 0.5
    }
}

#[test]
fn singular_values_unused_in_second_order() {
    let (y, x) = ([0.3, -0.2, 0.5], [0.1, 0.4, -0.3]);
    assert_eq!(grad!(fuzz_0x2200_464::d_f)(&y, 0.6, &x), (vec![0.0; 3], 0.0, vec![0.0; 3]));
}
