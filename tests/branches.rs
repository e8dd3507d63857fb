//! Branches: `if`/`else if`/`else` as statements and as expressions, early `return`,
//! conditions on data (floats) and on integer or boolean arguments, and `match` on
//! integers with literals, ranges, `|`, `_`, bindings and guards. Inputs are kept away
//! from the branch boundaries so that finite differences are meaningful.

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
#![allow(unexpected_cfgs)]

mod common;

use adjoint::prelude::*;
use common::*;
use proptest::prelude::*;

const LIMIT: i32 = 7;

#[differentiable]
fn if_statement(x: f64, y: f64) -> f64 {
    let mut z = x * y;
    if x > y {
        z = z * x + y.sin();
    } else {
        z = z - y * y;
    }
    if z > 1.0 {
        z *= 2.0;
    }
    z + x
}

/// The value `if_statement` compares with 1.0 (plain Rust, to stay away from it).
fn if_statement_z(x: f64, y: f64) -> f64 {
    if x > y {
        x * y * x + y.sin()
    } else {
        x * y - y * y
    }
}

#[allow(unused_assignments)]
#[differentiable]
fn else_if_statement(x: f64) -> f64 {
    let mut y = 0.0;
    if x < -1.0 {
        y = x * x;
    } else if x < 0.5 {
        y = x.sin() * 3.0;
    } else if x < 2.0 {
        y = x.exp();
    } else {
        y = x.ln() + x;
    }
    y * x
}

#[differentiable]
fn if_expression(x: f64, y: f64) -> f64 {
    let a = if x > 0.0 { x.exp() } else { 1.0 + x * x };
    let b = if y * a > 1.0 {
        (y * a).ln()
    } else if y < -1.0 {
        -y
    } else {
        y * y
    };
    a * b
}

#[differentiable]
fn tail_if(x: f64) -> f64 {
    if x > 1.0 {
        x * x
    } else if x > -1.0 {
        x.sin()
    } else {
        -x
    }
}

#[differentiable]
fn d_tail_if(x: f64) -> f64 {
    grad!(tail_if)(x)
}

#[differentiable]
fn nested_if(x: f64, y: f64) -> f64 {
    let mut r = x;
    if x > 0.0 {
        if y > 0.0 {
            r = x * y;
        } else {
            r = x - y;
        }
    } else if y > x {
        r = y.exp() * x;
    }
    r * r
}

/// Branches producing tuples.
#[differentiable]
fn tuple_branch(x: f64, y: f64) -> f64 {
    let (hi, lo) = if x > y { (x, y) } else { (y, x) };
    hi * hi - lo * hi.sin()
}

/// A branch overwriting a value the reverse sweep needs afterwards.
#[differentiable]
fn overwrite_in_branch(x: f64, y: f64) -> f64 {
    let mut a = x;
    if a > 0.5 {
        a = a * a;
        a = a.sin() * a;
    } else {
        let t = a.cos();
        a = t * t * y;
    }
    a * y + a * a
}

/// Compound conditions and float predicates.
#[differentiable]
fn logic(x: f64, y: f64) -> f64 {
    let mut r = x + y;
    if (x > 0.0 && y > 0.0) || !(x > -1.0) {
        r = r * x * y;
    }
    if x.is_finite() && x.is_sign_positive() && !y.is_nan() {
        r = r + x.sqrt();
    }
    if y.is_sign_negative() || x.is_infinite() {
        r = r - y * y;
    }
    r
}

#[differentiable]
fn int_condition(x: f64, n: i32) -> f64 {
    if n % 2 == 0 {
        x * x
    } else if n > 3 {
        x.sin()
    } else {
        -x
    }
}

#[differentiable]
fn bool_argument(x: f64, flag: bool) -> f64 {
    if flag {
        x.exp()
    } else {
        x.cos()
    }
}

/// Several returns, inside branches and at the end.
#[differentiable]
fn multi_return(x: f64, y: f64) -> f64 {
    if x > 1.0 {
        return x * y;
    }
    let a = x.exp();
    if a > y {
        return a - y;
    }
    a * y
}

/// `match` as the function's value: literals, `|`, ranges, bindings, guards and `_`.
#[differentiable]
fn match_expression(x: f64, k: i32) -> f64 {
    match k {
        0 => x.sin(),
        1 | 2 => x * x * 2.0,
        3..=5 => x.powi(3),
        6..10 => {
            let t = x.exp();
            t * t
        }
        n if n < 0 && x > 0.0 => x.sqrt() * n as f64,
        n if n < 0 => x * n as f64,
        _ => x,
    }
}

/// `match` as a statement assigning in its arms, with a constant pattern, a binding
/// sub-pattern and half-open ranges.
#[differentiable]
fn match_statement(x: f64, k: i64) -> f64 {
    let mut y = x;
    match k {
        0 => {
            y = y * 2.0;
        }
        limits::SEVEN => {
            y = y.exp();
        }
        m @ 1..=3 => {
            y = y * y * m as f64;
        }
        ..=-1 => {
            y = y.sin();
        }
        20.. => {
            y = y.cos() * y;
        }
        _ => {}
    }
    y * x
}

mod limits {
    pub const SEVEN: i64 = 7;
}

/// A constant pattern written as a bare name (it parses like a binding).
#[differentiable]
fn match_const_name(x: f64, k: i32) -> f64 {
    match k {
        LIMIT => x * x,
        _ => x,
    }
}

/// `match` on an integer computed from the data.
#[differentiable]
fn match_on_data(x: f64) -> f64 {
    let bucket = (x * 2.0).floor() as i32;
    let y = match bucket {
        ..=-2 => x * x,
        -1 | 0 => x.sin(),
        1..=3 => x.exp() * 0.5,
        _ => x.ln(),
    };
    y * x
}

/// `match` with arms guarded by float comparisons.
#[differentiable]
fn match_guards(x: f64, y: f64, k: u8) -> f64 {
    match k {
        0 if x > y => x - y,
        0 => y * y,
        1 | 2 if x * y > 0.0 => (x * y).sqrt(),
        _ => x * y + 1.0,
    }
}

/// `match` on a boolean.
#[differentiable]
fn match_bool(x: f64) -> f64 {
    match x > 0.0 {
        true => x * x,
        false => x.exp(),
    }
}

#[differentiable]
fn single_precision(x: f32) -> f32 {
    if x > 0.5 {
        x * x
    } else {
        x.sin()
    }
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn if_statement_matches(x in -2.0..2.0f64, y in -2.0..2.0f64) {
        prop_assume!((x - y).abs() > 0.01 && (if_statement_z(x, y) - 1.0).abs() > 0.01);
        let (gx, gy) = grad!(if_statement)(x, y);
        let (fx, fy) = fd2(if_statement, x, y);
        check(&format!("if_statement d/dx at ({x}, {y})"), gx, fx, FD)?;
        check(&format!("if_statement d/dy at ({x}, {y})"), gy, fy, FD)?;
        let (v, (vx, vy)) = value_and_grad!(if_statement)(x, y);
        check("if_statement value", v, if_statement(x, y), EXACT)?;
        check("if_statement value_and_grad d/dx", vx, gx, EXACT)?;
        check("if_statement value_and_grad d/dy", vy, gy, EXACT)?;
    }

    #[test]
    fn else_if_statement_matches(x in away_from(-3.0, 4.0, &[-1.0, 0.5, 2.0], 0.01)) {
        let g: f64 = grad!(else_if_statement)(x);
        check(&format!("else_if_statement at {x}"), g, fd(else_if_statement, x), FD)?;
        let want = if x < -1.0 {
            3.0 * x * x
        } else if x < 0.5 {
            3.0 * (x.sin() + x * x.cos())
        } else if x < 2.0 {
            x.exp() * (1.0 + x)
        } else {
            x.ln() + 1.0 + 2.0 * x
        };
        check(&format!("else_if_statement analytic at {x}"), g, want, EXACT)?;
    }

    #[test]
    fn if_expression_matches(x in away_from(-2.0, 2.0, &[0.0], 0.01), y in away_from(-3.0, 3.0, &[-1.0], 0.01)) {
        let a = if x > 0.0 { x.exp() } else { 1.0 + x * x };
        prop_assume!((y * a - 1.0).abs() > 0.01);
        let (gx, gy) = grad!(if_expression)(x, y);
        let (fx, fy) = fd2(if_expression, x, y);
        check(&format!("if_expression d/dx at ({x}, {y})"), gx, fx, FD)?;
        check(&format!("if_expression d/dy at ({x}, {y})"), gy, fy, FD)?;
    }

    #[test]
    fn tail_if_matches(x in away_from(-3.0, 3.0, &[-1.0, 1.0], 0.01)) {
        let g: f64 = grad!(tail_if)(x);
        let want = if x > 1.0 { 2.0 * x } else if x > -1.0 { x.cos() } else { -1.0 };
        check(&format!("tail_if at {x}"), g, want, EXACT)?;
        check(&format!("tail_if at {x} vs fd"), g, fd(tail_if, x), FD)?;
        let gg: f64 = grad!(d_tail_if)(x);
        let want2 = if x > 1.0 { 2.0 } else if x > -1.0 { -x.sin() } else { 0.0 };
        check(&format!("tail_if'' at {x}"), gg, want2, EXACT2)?;
        check(&format!("tail_if'' at {x} vs fd"), gg, fd(d_tail_if, x), FD2)?;
    }

    #[test]
    fn nested_if_matches(x in away_from(-2.0, 2.0, &[0.0], 0.01), y in away_from(-2.0, 2.0, &[0.0], 0.01)) {
        prop_assume!((x - y).abs() > 0.01);
        let (gx, gy) = grad!(nested_if)(x, y);
        let (fx, fy) = fd2(nested_if, x, y);
        check(&format!("nested_if d/dx at ({x}, {y})"), gx, fx, FD)?;
        check(&format!("nested_if d/dy at ({x}, {y})"), gy, fy, FD)?;
    }

    #[test]
    fn tuple_branch_matches(x in -3.0..3.0f64, y in -3.0..3.0f64) {
        prop_assume!((x - y).abs() > 0.01);
        let (gx, gy) = grad!(tuple_branch)(x, y);
        let (fx, fy) = fd2(tuple_branch, x, y);
        check("tuple_branch d/dx", gx, fx, FD)?;
        check("tuple_branch d/dy", gy, fy, FD)?;
        let (hi, lo) = if x > y { (x, y) } else { (y, x) };
        let d_hi = 2.0 * hi - lo * hi.cos();
        let d_lo = -hi.sin();
        let (wx, wy) = if x > y { (d_hi, d_lo) } else { (d_lo, d_hi) };
        check("tuple_branch d/dx analytic", gx, wx, EXACT)?;
        check("tuple_branch d/dy analytic", gy, wy, EXACT)?;
    }

    #[test]
    fn overwrite_in_branch_matches(x in away_from(-2.0, 2.0, &[0.5], 0.01), y in -2.0..2.0f64) {
        let (gx, gy) = grad!(overwrite_in_branch)(x, y);
        let (fx, fy) = fd2(overwrite_in_branch, x, y);
        check(&format!("overwrite_in_branch d/dx at ({x}, {y})"), gx, fx, FD)?;
        check(&format!("overwrite_in_branch d/dy at ({x}, {y})"), gy, fy, FD)?;
    }

    #[test]
    fn logic_matches(x in away_from(-3.0, 3.0, &[-1.0, 0.0], 0.01), y in away_from(-3.0, 3.0, &[0.0], 0.01)) {
        let (gx, gy) = grad!(logic)(x, y);
        let (fx, fy) = fd2(logic, x, y);
        check(&format!("logic d/dx at ({x}, {y})"), gx, fx, FD)?;
        check(&format!("logic d/dy at ({x}, {y})"), gy, fy, FD)?;
    }

    #[test]
    fn int_and_bool_conditions(x in -3.0..3.0f64, n in -5i32..8, flag in any::<bool>()) {
        let g: f64 = grad!(int_condition)(x, n);
        let want = if n % 2 == 0 { 2.0 * x } else if n > 3 { x.cos() } else { -1.0 };
        check(&format!("int_condition({x}, {n})"), g, want, EXACT)?;
        check(&format!("int_condition({x}, {n}) vs fd"), g, fd(|t| int_condition(t, n), x), FD)?;
        let g: f64 = grad!(bool_argument)(x, flag);
        let want = if flag { x.exp() } else { -x.sin() };
        check(&format!("bool_argument({x}, {flag})"), g, want, EXACT)?;
    }

    #[test]
    fn multi_return_matches(x in away_from(-2.0, 2.5, &[1.0], 0.01), y in -1.0..5.0f64) {
        prop_assume!((x.exp() - y).abs() > 0.01);
        let (gx, gy) = grad!(multi_return)(x, y);
        let (fx, fy) = fd2(multi_return, x, y);
        check(&format!("multi_return d/dx at ({x}, {y})"), gx, fx, FD)?;
        check(&format!("multi_return d/dy at ({x}, {y})"), gy, fy, FD)?;
        let (wx, wy) = if x > 1.0 {
            (y, x)
        } else if x.exp() > y {
            (x.exp(), -1.0)
        } else {
            (x.exp() * y, x.exp())
        };
        check("multi_return d/dx analytic", gx, wx, EXACT)?;
        check("multi_return d/dy analytic", gy, wy, EXACT)?;
        let (v, _) = value_and_grad!(multi_return)(x, y);
        check("multi_return value", v, multi_return(x, y), EXACT)?;
    }

    #[test]
    fn match_expression_matches(x in away_from(-2.0, 2.0, &[0.0], 0.01), k in -4i32..14) {
        let g: f64 = grad!(match_expression)(x, k);
        let kf = k as f64;
        let want = match k {
            0 => x.cos(),
            1 | 2 => 4.0 * x,
            3..=5 => 3.0 * x * x,
            6..10 => 2.0 * (2.0 * x).exp(),
            n if n < 0 && x > 0.0 => 0.5 / x.sqrt() * kf,
            n if n < 0 => kf,
            _ => 1.0,
        };
        check(&format!("match_expression({x}, {k})"), g, want, EXACT)?;
        check(&format!("match_expression({x}, {k}) vs fd"), g, fd(|t| match_expression(t, k), x), FD)?;
    }

    #[test]
    fn match_statement_matches(x in -2.0..2.0f64, k in -3i64..25) {
        let g: f64 = grad!(match_statement)(x, k);
        check(&format!("match_statement({x}, {k}) vs fd"), g, fd(|t| match_statement(t, k), x), FD)?;
        let want = match k {
            0 => 4.0 * x,
            7 => x.exp() * (1.0 + x),
            1..=3 => 3.0 * x * x * k as f64,
            ..=-1 => x.sin() + x * x.cos(),
            20.. => 2.0 * x * x.cos() - x * x * x.sin(),
            _ => 2.0 * x,
        };
        check(&format!("match_statement({x}, {k})"), g, want, EXACT)?;
    }

    #[test]
    fn match_const_name_matches(x in -2.0..2.0f64, k in 0i32..10) {
        let g: f64 = grad!(match_const_name)(x, k);
        let want = if k == LIMIT { 2.0 * x } else { 1.0 };
        check(&format!("match_const_name({x}, {k})"), g, want, EXACT)?;
    }

    #[test]
    fn match_on_data_matches(x in non_integer(-4.0, 4.0, 0.01)) {
        // Also away from half-integers, where `floor(2x)` jumps.
        prop_assume!(((2.0 * x) - (2.0 * x).round()).abs() > 0.02);
        let g: f64 = grad!(match_on_data)(x);
        check(&format!("match_on_data({x}) vs fd"), g, fd(match_on_data, x), FD)?;
    }

    #[test]
    fn match_guards_match(x in -2.0..2.0f64, y in -2.0..2.0f64, k in 0u8..4) {
        prop_assume!((x - y).abs() > 0.01 && (x * y).abs() > 0.01);
        let (gx, gy) = grad!(match_guards)(x, y, k);
        let (fx, fy) = fd2(|a, b| match_guards(a, b, k), x, y);
        check(&format!("match_guards d/dx at ({x}, {y}, {k})"), gx, fx, FD)?;
        check(&format!("match_guards d/dy at ({x}, {y}, {k})"), gy, fy, FD)?;
    }

    #[test]
    fn match_bool_matches(x in away_from(-2.0, 2.0, &[0.0], 0.01)) {
        let g: f64 = grad!(match_bool)(x);
        check("match_bool", g, if x > 0.0 { 2.0 * x } else { x.exp() }, EXACT)?;
    }

    #[test]
    fn single_precision_branches(x in away_from(-2.0, 2.0, &[0.5], 0.05)) {
        let xs = x as f32;
        let g: f32 = grad!(single_precision)(xs);
        let xd = xs as f64;
        let want = if xs > 0.5 { 2.0 * xd } else { xd.cos() };
        check(&format!("f32 branches at {xs}"), g as f64, want, F32)?;
        check(&format!("f32 branches at {xs} vs fd"), g as f64, fd_f32(single_precision, xs), F32_FD)?;
    }
}

mod mutable_parameters {
    use super::*;

    /// A `mut` parameter reassigned inside a branch: the generated code refers to
    /// variables it never declared (`x_bar`, `x_1`, `x_bar_bar_4`, ...).
    #[differentiable]
    fn mut_parameter_in_branch(mut x: f64, y: f64) -> f64 {
        if y > 0.0 {
            x = x.sin();
        }
        x * y
    }

    #[test]
    fn mut_parameter_assigned_in_branch() {
        let (gx, gy) = grad!(mut_parameter_in_branch)(0.5, 2.0);
        assert_close("d/dx", gx, 0.5f64.cos() * 2.0, EXACT);
        assert_close("d/dy", gy, 0.5f64.sin(), EXACT);
    }
}

// ---- `Option`s of data: `if let Some(v)`, `match` with `Some`/`None`, `unwrap_or`.

#[differentiable]
fn observed_sum(w: f64, b: f64, xs: &[Option<f64>]) -> f64 {
    let mut s = 0.0;
    for x in xs {
        if let Some(v) = x {
            s += (w * v + b).powi(2);
        } else {
            s += b * b;
        }
    }
    s
}

#[differentiable]
fn imputed_sum(w: f64, xs: &[Option<f64>]) -> f64 {
    let mut s = 0.0;
    for x in xs {
        s += match x {
            Some(v) => (w * v).sin(),
            None => w * w,
        };
    }
    s + xs.iter().map(|x| w * x.unwrap_or(0.5)).sum::<f64>()
}

fn observations() -> impl Strategy<Value = Vec<Option<f64>>> {
    prop::collection::vec(prop::option::of(-2.0..2.0f64), 0..7)
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn options_of_data(w in -1.5..1.5f64, b in -1.0..1.0f64, xs in observations()) {
        let (gw, gb) = grad!(observed_sum)(w, b, &xs);
        let (fw, fb) = fd2(|w, b| observed_sum(w, b, &xs), w, b);
        check("if let: w", gw, fw, FD)?;
        check("if let: b", gb, fb, FD)?;
        check("match: w", grad!(imputed_sum)(w, &xs), fd(|w| imputed_sum(w, &xs), w), FD)?;
        // Second order by nesting through the rewritten branches.
        let h = grad!(d_imputed_sum)(w, &xs);
        check("match: second", h, fd(|w| d_imputed_sum(w, &xs), w), FD2)?;
    }
}

#[differentiable]
fn d_imputed_sum(w: f64, xs: &[Option<f64>]) -> f64 {
    grad!(imputed_sum)(w, xs)
}

// ---- `match` on an enum of data (an enum has no gradient type: it is data)

#[derive(Clone, Copy, Debug)]
enum Penalty {
    Squared,
    Huber(f64),
    Cauchy { c: f64 },
}

impl Penalty {
    #[differentiable]
    fn value(&self, r: f64) -> f64 {
        match *self {
            Penalty::Squared => 0.5 * r * r,
            Penalty::Huber(delta) => {
                if r.abs() <= delta {
                    0.5 * r * r
                } else {
                    delta * (r.abs() - 0.5 * delta)
                }
            }
            Penalty::Cauchy { c } => 0.5 * c * c * (1.0 + (r / c).powi(2)).ln(),
        }
    }
}

#[differentiable(wrt(slope, intercept))]
fn penalized_fit(penalty: &Penalty, slope: f64, intercept: f64, xs: &[f64], ys: &[f64]) -> f64 {
    xs.iter().zip(ys).map(|(&x, &y)| penalty.value(slope * x + intercept - y)).sum()
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn match_on_an_enum_of_data(slope in -2.0..2.0f64, intercept in -1.0..1.0f64, delta in 0.3..2.0f64, c in 0.3..2.0f64, xs in vec_in(-2.0, 2.0, 1..6)) {
        let ys: Vec<f64> = xs.iter().map(|x| 1.5 * x - 0.3 + 0.1 * x * x).collect();
        for penalty in [Penalty::Squared, Penalty::Huber(delta), Penalty::Cauchy { c }] {
            // Away from the Huber kink |r| = δ.
            let near_kink = xs.iter().zip(&ys).any(|(x, y)| ((slope * x + intercept - y).abs() - delta).abs() < 1e-3);
            if near_kink && matches!(penalty, Penalty::Huber(_)) {
                continue;
            }
            let (gs, gi) = grad!(penalized_fit)(&penalty, slope, intercept, &xs, &ys);
            let (fs, fi) = fd2(|s, i| penalized_fit(&penalty, s, i, &xs, &ys), slope, intercept);
            check(&format!("{penalty:?} slope"), gs, fs, FD)?;
            check(&format!("{penalty:?} intercept"), gi, fi, FD)?;
        }
    }
}
