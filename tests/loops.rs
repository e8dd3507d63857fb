//! Loops: `for` over ranges (`a..b`, `a..=b`, `.rev()`, `.step_by(k)`) and over slices
//! (`x.iter()`, `&x`, `x`, `.enumerate()`, `.zip()`, `.copied()`), `while` with
//! data-dependent conditions, `loop` with `break`/`continue`/`break value`, early
//! `return` from inside loops, nested loops, and loop-carried values the reverse sweep
//! has to restore (products, recurrences, overwritten accumulators).

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

// ------------------------------------------------------------------ ranges

#[differentiable]
fn range_sum(x: &[f64]) -> f64 {
    let mut s = 0.0;
    for i in 1..x.len() {
        s += x[i] * x[i - 1];
    }
    s
}

#[differentiable]
fn inclusive_range(x: &[f64]) -> f64 {
    let n = x.len();
    let mut s = 0.0;
    for i in 0..=n - 1 {
        s += x[i].sin() * (i as f64 + 1.0);
    }
    s
}

#[differentiable]
fn reversed(x: &[f64]) -> f64 {
    // Horner's rule from the highest coefficient: a loop-carried product.
    let mut acc = 0.0;
    for i in (0..x.len()).rev() {
        acc = acc * 0.7 + x[i] * x[i];
    }
    acc
}

#[differentiable]
fn stepped(x: &[f64]) -> f64 {
    let mut s = 0.0;
    for i in (0..x.len()).step_by(2) {
        s += x[i].exp();
    }
    for i in (1..x.len()).step_by(3) {
        s += x[i] * x[0];
    }
    s
}

#[differentiable]
fn reversed_stepped(x: &[f64]) -> f64 {
    let mut p = 1.0;
    for i in (0..x.len()).rev().step_by(2) {
        p = p * x[i] + 0.5;
    }
    for i in (0..x.len()).step_by(2).rev() {
        p = p * x[i].cos();
    }
    p
}

/// A scalar raised to a power by a counted loop.
#[differentiable]
fn power_loop(x: f64, n: usize) -> f64 {
    let mut p = 1.0;
    for _ in 0..n {
        p *= x;
    }
    p
}

/// A recurrence that needs every intermediate value in the reverse sweep.
#[differentiable]
fn recurrence(x: f64, c: f64, n: usize) -> f64 {
    let mut y = x;
    for _ in 0..n {
        y = (y * y * 0.5 + c).sin();
    }
    y
}

/// Bounds and step given at run time.
#[differentiable]
fn variable_bounds(x: &[f64], lo: usize, k: usize) -> f64 {
    let mut s = 0.0;
    for i in (lo..x.len()).step_by(k) {
        s += x[i] * x[i] * x[i];
    }
    for i in lo..=lo {
        if i < x.len() {
            s += x[i].exp();
        }
    }
    s
}

/// Two loop-carried values updated from each other (the old `a` is needed for `b`).
#[differentiable]
fn coupled(x: f64, y: f64, n: usize) -> f64 {
    let mut a = x;
    let mut b = y;
    for _ in 0..n {
        let t = a;
        a = a * 0.5 + b.sin();
        b = t * b.cos();
    }
    a * b
}

/// A value overwritten on every iteration but not carried: only the last one counts.
#[differentiable]
fn last_value(x: &[f64]) -> f64 {
    let mut last = 0.0;
    for &v in x {
        last = v * v;
    }
    last * 2.0
}

/// A loop inside a branch and a `for` inside a `while`.
#[differentiable]
fn loops_in_control(x: &[f64], t: f64) -> f64 {
    let mut s = t;
    if t > 0.0 {
        for &v in x {
            s = s * 0.5 + v * t;
        }
    } else {
        for i in 0..x.len() {
            s += x[i].sin() * t;
        }
    }
    let mut k = 0;
    while k < 2 {
        for &v in x {
            s = s * v.cos() + 0.1;
        }
        k += 1;
    }
    s
}

/// Names that the generated code might also use for its own variables.
#[differentiable]
fn name_clash(x: &[f64], x_bar: f64) -> f64 {
    let mut cotangent = 1.0;
    for i in 0..x.len() {
        let len = x[i] * x_bar;
        cotangent = cotangent * len + 0.1;
    }
    let broke = cotangent;
    broke
}

/// The trip count comes from a float.
#[differentiable]
fn float_trip_count(x: f64) -> f64 {
    let mut s = 0.0;
    for i in 0..(x as usize) {
        s += x * i as f64 + (x * i as f64).sin();
    }
    s
}

/// A loop-carried pair bound by one tuple pattern.
#[differentiable]
fn tuple_carried(x: f64, y: f64, n: usize) -> f64 {
    let (mut a, mut b) = (x, y);
    for _ in 0..n {
        let t = a;
        a = b * 0.5;
        b = t + b * a;
    }
    a * b
}

/// An integer exponent from the loop index.
#[differentiable]
fn powi_from_index(x: f64, n: i32) -> f64 {
    let mut s = 0.0;
    for k in 0..n {
        s += x.powi(k);
    }
    s
}

/// `match` inside a loop, with `break` in an arm.
#[differentiable]
fn match_in_loop(x: &[f64]) -> f64 {
    let mut s = 1.0;
    for i in 0..x.len() {
        match i % 3 {
            0 => s = s * x[i],
            1 => {
                if x[i] > 0.0 {
                    break;
                }
                s += x[i];
            }
            _ => {
                s = s.sin();
            }
        }
    }
    s
}

/// `return` from a `match` arm inside a loop.
#[differentiable]
fn return_in_match(x: &[f64], k: usize) -> f64 {
    let mut s = 0.0;
    for i in 0..x.len() {
        match i {
            3 => return s * x[i],
            _ => s += x[i] * x[i],
        }
        if i == k {
            return s;
        }
    }
    s
}

/// Loops inside `match` arms.
#[differentiable]
fn loops_in_match(x: &[f64], k: u8) -> f64 {
    match k {
        0 => {
            let mut p = 1.0;
            for &v in x {
                p *= v;
            }
            p
        }
        _ => {
            let mut s = 0.0;
            let mut i = 0;
            while i < x.len() {
                s += x[i].exp() * s;
                i += 1;
            }
            s
        }
    }
}

/// `return` from a loop that also pushes to a buffer read in the returned value.
#[differentiable]
fn early_with_push(x: &[f64]) -> f64 {
    let mut w = Vec::new();
    let mut s = 1.0;
    for i in 0..x.len() {
        w.push(s * x[i]);
        s = s * x[i] + 0.5;
        if s > 3.0 {
            return w[0] * s + w[w.len() - 1];
        }
    }
    s * w.len() as f64
}

/// `continue` in the outer loop, `break` in the inner one.
#[differentiable]
fn nested_break_continue(x: &[f64]) -> f64 {
    let n = x.len();
    let mut s = 0.5;
    for i in 0..n {
        if x[i] < -0.5 {
            continue;
        }
        for j in 0..n {
            if x[j] > 1.0 {
                break;
            }
            s = s * 0.9 + x[i] * x[j];
        }
    }
    s
}

/// A `for` in a branch in a `for` in a `while`, with a `return` at the bottom.
#[differentiable]
fn deep_nesting(x: &[f64], t: f64) -> f64 {
    let mut s = t;
    let mut k = 0;
    while k < 3 {
        for i in 0..x.len() {
            if x[i] > 0.0 {
                for j in 0..i {
                    s = s * 0.5 + x[j] * s.sin();
                    if s > 2.0 {
                        return s * t;
                    }
                }
            } else {
                s = s - x[i] * t;
            }
        }
        k += 1;
    }
    s
}

// ------------------------------------------------------------------ slice iterators

#[differentiable]
fn iter_forms(x: &[f64], y: Vec<f64>) -> f64 {
    let mut s = 0.0;
    for &v in x.iter() {
        s += v * v;
    }
    for v in x.iter() {
        s += v * 0.5;
    }
    for v in x {
        s += v.sin();
    }
    for &v in &y {
        s += v * v * v;
    }
    for v in y.iter().copied() {
        s += v.exp();
    }
    s
}

#[differentiable]
fn enumerate_zip(x: &[f64], y: &[f64]) -> f64 {
    let mut s = 0.0;
    for (i, &v) in x.iter().enumerate() {
        s += v * v * i as f64;
    }
    for (a, b) in x.iter().zip(y.iter()) {
        s += a * b;
    }
    for (&a, &b) in x.iter().zip(y) {
        s += (a - b) * (a - b);
    }
    for (i, v) in y.iter().enumerate() {
        if i % 2 == 0 {
            s += v.cos();
        }
    }
    s
}

/// A product over a slice: each factor's gradient needs all the others.
#[differentiable]
fn product(x: &[f64]) -> f64 {
    let mut p = 1.0;
    for &v in x {
        p = p * v;
    }
    p
}

// ------------------------------------------------------------------ while

/// The number of halvings depends on the data.
#[differentiable]
fn while_halve(x: f64) -> f64 {
    let mut y = x;
    let mut n = 0;
    while y > 1.0 {
        y = y * 0.5 + 0.1 * y.sin();
        n += 1;
    }
    y * y + n as f64
}

/// The smallest distance of the iterates of [`while_halve`] to its threshold.
fn while_halve_margin(x: f64) -> f64 {
    let mut y = x;
    let mut m = (y - 1.0).abs();
    while y > 1.0 {
        y = y * 0.5 + 0.1 * y.sin();
        m = m.min((y - 1.0).abs());
    }
    m
}

/// A counter loop whose condition reads the data, with a short-circuit guard.
#[differentiable]
fn while_positive_prefix(x: &[f64]) -> f64 {
    let mut i = 0;
    let mut s = 0.0;
    while i < x.len() && x[i] > 0.0 {
        s += x[i].sqrt() * (i as f64 + 1.0);
        i += 1;
    }
    s + i as f64
}

/// Newton's iteration for √a, with a fixed number of steps through `while`.
#[differentiable]
fn newton_sqrt(a: f64) -> f64 {
    let mut y = a;
    let mut k = 0;
    while k < 8 {
        y = 0.5 * (y + a / y);
        k += 1;
    }
    y
}

// ------------------------------------------------------------------ loop, break, continue

#[differentiable]
fn break_continue(x: &[f64]) -> f64 {
    let mut s = 0.0;
    for i in 0..x.len() {
        if x[i] < -1.0 {
            break;
        }
        if i % 3 == 1 {
            continue;
        }
        s += x[i] * x[i] * (1.0 + s * 0.1);
    }
    s
}

#[differentiable]
fn break_value(x: f64) -> f64 {
    let mut y = x;
    let mut k = 0;
    let r = loop {
        y = y.sin() + x * 0.5;
        k += 1;
        if k >= 5 {
            break y * y;
        }
    };
    r + y
}

/// `loop` whose exit depends on the data.
#[differentiable]
fn loop_until_small(x: f64) -> f64 {
    let mut y = x;
    let mut steps = 0.0;
    loop {
        y = y * 0.7 + 0.1 * y.cos();
        steps += 1.0;
        if y < 0.5 {
            break;
        }
    }
    y * steps
}

fn loop_until_small_margin(x: f64) -> f64 {
    let mut y = x;
    let mut m = f64::INFINITY;
    loop {
        y = y * 0.7 + 0.1 * y.cos();
        m = m.min((y - 0.5).abs());
        if y < 0.5 {
            break;
        }
    }
    m
}

/// `while` with `continue` and `break`.
#[differentiable]
fn while_continue(x: &[f64]) -> f64 {
    let mut i = 0;
    let mut s = 1.0;
    while i < x.len() {
        let v = x[i];
        i += 1;
        if v < 0.0 {
            continue;
        }
        if v > 1.8 {
            break;
        }
        s = s * (1.0 + v);
    }
    s
}

// ------------------------------------------------------------------ early return

#[differentiable]
fn return_from_for(x: &[f64], t: f64) -> f64 {
    let mut s = 0.0;
    for i in 0..x.len() {
        s += x[i] * t;
        if x[i] > t {
            return s * x[i];
        }
    }
    s * t
}

#[differentiable]
fn return_from_while(x: f64) -> f64 {
    let mut y = x;
    let mut k = 0;
    while k < 10 {
        y = y * 1.3 + 0.1;
        if y > 3.0 {
            return y * y;
        }
        k += 1;
    }
    -y
}

fn return_from_while_margin(x: f64) -> f64 {
    let mut y = x;
    let mut m = f64::INFINITY;
    for _ in 0..10 {
        y = y * 1.3 + 0.1;
        m = m.min((y - 3.0).abs());
        if y > 3.0 {
            break;
        }
    }
    m
}

#[differentiable]
fn return_from_nested(x: &[f64]) -> f64 {
    let n = x.len();
    let mut s = 0.0;
    for i in 0..n {
        for j in 0..n {
            s += x[i] * x[j];
            if s > 5.0 {
                return s.sqrt();
            }
        }
    }
    s
}

// ------------------------------------------------------------------ nested loops

#[differentiable]
fn quadratic_form(x: &[f64]) -> f64 {
    let n = x.len();
    let mut s = 0.0;
    for i in 0..n {
        for j in 0..n {
            let a = 1.0 / (1.0 + (i + j) as f64);
            s += a * x[i] * x[j];
        }
    }
    s
}

/// The inner trip count depends on the outer index; the accumulator is a product.
#[differentiable]
fn triangular(x: &[f64]) -> f64 {
    let n = x.len();
    let mut total = 0.0;
    for i in 0..n {
        let mut p = 1.0;
        for j in 0..=i {
            p = p * (x[j] * 0.5 + 1.0);
        }
        total += p.ln() * x[i];
    }
    total
}

/// Nested loops with a branch inside, carrying a value the reverse sweep needs.
#[differentiable]
fn nested_branchy(x: &[f64], k: usize) -> f64 {
    let mut y = 0.5;
    for _ in 0..k {
        for i in 0..x.len() {
            if x[i] > 0.0 {
                y = y * x[i] + 0.1;
            } else {
                y = (y * x[i]).sin();
            }
        }
    }
    y
}

#[differentiable]
fn single_precision_loop(x: &[f32]) -> f32 {
    let mut p = 1.0;
    for &v in x {
        p = p * (1.0 + v * v);
    }
    p.ln()
}

// ------------------------------------------------------------------ stencils
// Reads at constant offsets from the index. The reverse loop runs forward, carries the
// adjoint shares of the neighbouring elements between iterations, and (for the value
// and gradient) runs fused with the forward loop.

/// Offsets −1, 0 and +1; the loop is empty when `x.len() == 2`.
#[differentiable]
fn second_difference(x: &[f64]) -> f64 {
    let mut s = 0.0;
    for i in 1..x.len() - 1 {
        let d = x[i - 1] - 2.0 * x[i] + x[i + 1];
        s += d * d;
    }
    s
}

/// Offsets 0 and 2 (nothing at 1) on `x`, 0 and 1 on `y`, over an inclusive range.
#[differentiable]
fn gapped_stencils(x: &[f64], y: &[f64]) -> f64 {
    let n = x.len();
    let mut s = 0.0;
    for i in 0..=n - 3 {
        s += x[i] * x[i + 2].sin() + y[i] * y[i + 1] * x[i];
    }
    s
}

/// Two buffers' stencils whose accumulations interleave in the reverse body.
#[differentiable]
fn interleaved_stencils(x: &[f64], y: &[f64]) -> f64 {
    let mut s = 0.0;
    for i in 0..x.len() - 1 {
        s += x[i] * y[i + 1].cos() + y[i] * x[i + 1] * x[i];
    }
    s
}

/// A stencil whose result is used after the loop (the statements reading it stay
/// after the fused loop), with the index offset written on the left.
#[differentiable]
fn stencil_then_scale(x: &[f64]) -> f64 {
    let mut s = 0.0;
    for i in 0..x.len() - 1 {
        s += (x[1 + i] - x[i]).powi(2);
    }
    let r = s.sqrt();
    r * 3.0
}

/// Generic over the float type.
#[differentiable]
fn generic_stencil<T: Float>(x: &[T]) -> T {
    let mut s = T::ZERO;
    for i in 0..x.len() - 1 {
        let t = x[i + 1] - x[i] * x[i];
        s += t * t;
    }
    s
}

/// A row-by-row stencil: the inner loop's indices are not the loop index plus a
/// constant, so nothing is carried.
#[differentiable]
fn row_differences(x: &[f64], w: usize) -> f64 {
    let mut s = 0.0;
    for r in 0..x.len() / w {
        for c in 0..w - 1 {
            let d = x[r * w + c + 1] - x[r * w + c];
            s += d * d * (c as f64 + 1.0);
        }
    }
    s
}

// ------------------------------------------------------------------ properties

fn vector(len: std::ops::Range<usize>) -> impl Strategy<Value = Vec<f64>> {
    vec_in(-2.0, 2.0, len)
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn range_loops(x in vector(1..9)) {
        check_vec("a..b", &grad!(range_sum)(&x), &fd_vec(range_sum, &x), FD)?;
        let want: Vec<f64> = (0..x.len())
            .map(|i| {
                (if i > 0 { x[i - 1] } else { 0.0 }) + (if i + 1 < x.len() { x[i + 1] } else { 0.0 })
            })
            .collect();
        check_vec("a..b analytic", &grad!(range_sum)(&x), &want, EXACT)?;
        check_vec("a..=b", &grad!(inclusive_range)(&x), &fd_vec(inclusive_range, &x), FD)?;
        let want: Vec<f64> = x.iter().enumerate().map(|(i, v)| v.cos() * (i as f64 + 1.0)).collect();
        check_vec("a..=b analytic", &grad!(inclusive_range)(&x), &want, EXACT)?;
        check_vec(".rev()", &grad!(reversed)(&x), &fd_vec(reversed, &x), FD)?;
        let want: Vec<f64> = x.iter().enumerate().map(|(i, v)| 2.0 * v * 0.7f64.powi(i as i32)).collect();
        check_vec(".rev() analytic", &grad!(reversed)(&x), &want, EXACT)?;
        check_vec(".step_by(k)", &grad!(stepped)(&x), &fd_vec(stepped, &x), FD)?;
        check_vec(".rev().step_by(k) and .step_by(k).rev()", &grad!(reversed_stepped)(&x), &fd_vec(reversed_stepped, &x), FD)?;
    }

    #[test]
    fn stencils(x in vector(2..10), y in vector(9..10)) {
        let g = grad!(second_difference)(&x);
        check_vec("offsets -1, 0, 1", &g, &fd_vec(second_difference, &x), FD)?;
        let mut want = vec![0.0; x.len()];
        for i in 1..x.len() - 1 {
            let d = x[i - 1] - 2.0 * x[i] + x[i + 1];
            want[i - 1] += 2.0 * d;
            want[i] -= 4.0 * d;
            want[i + 1] += 2.0 * d;
        }
        check_vec("offsets -1, 0, 1 analytic", &g, &want, EXACT)?;
        let (v, gv) = value_and_grad!(second_difference)(&x);
        check("offsets -1, 0, 1 value", v, second_difference(&x), EXACT)?;
        check_vec("offsets -1, 0, 1 value_and_grad", &gv, &want, EXACT)?;

        if x.len() >= 3 {
            let (gx, gy) = grad!(gapped_stencils)(&x, &y);
            check_vec("offsets 0, 2 on x", &gx, &fd_vec(|v| gapped_stencils(v, &y), &x), FD)?;
            check_vec("offsets 0, 1 on y", &gy, &fd_vec(|v| gapped_stencils(&x, v), &y), FD)?;
            let (v, (vx, vy)) = value_and_grad!(gapped_stencils)(&x, &y);
            check("gapped value", v, gapped_stencils(&x, &y), EXACT)?;
            check_vec("gapped value_and_grad x", &vx, &gx, EXACT)?;
            check_vec("gapped value_and_grad y", &vy, &gy, EXACT)?;
        }

        if x.len() <= y.len() {
            let (gx, gy) = grad!(interleaved_stencils)(&x, &y);
            check_vec("interleaved stencils x", &gx, &fd_vec(|v| interleaved_stencils(v, &y), &x), FD)?;
            check_vec("interleaved stencils y", &gy, &fd_vec(|v| interleaved_stencils(&x, v), &y), FD)?;
        }

        let g = grad!(stencil_then_scale)(&x);
        check_vec("stencil read after the loop", &g, &fd_vec(stencil_then_scale, &x), FD)?;
        let (v, gv) = value_and_grad!(stencil_then_scale)(&x);
        check("stencil read after the loop value", v, stencil_then_scale(&x), EXACT)?;
        check_vec("stencil read after the loop value_and_grad", &gv, &g, EXACT)?;

        let g = grad!(generic_stencil)(&x);
        check_vec("generic stencil f64", &g, &fd_vec(generic_stencil, &x), FD)?;
        let x32: Vec<f32> = x.iter().map(|&v| v as f32).collect();
        let g32 = grad!(generic_stencil)(&x32);
        let g_of32: Vec<f64> = grad!(generic_stencil)(&x32.iter().map(|&v| v as f64).collect::<Vec<_>>());
        let g32: Vec<f64> = g32.iter().map(|&v| v as f64).collect();
        check_vec("generic stencil f32", &g32, &g_of32, Tol { rel: 1e-4, abs: 1e-4 })?;

        let w = 1 + x.len() % 3;
        let g = grad!(row_differences)(&x, w);
        check_vec("row differences", &g, &fd_vec(|v| row_differences(v, w), &x), FD)?;
    }

    #[test]
    fn runtime_bounds(x in vector(0..9), lo in 0usize..4, k in 1usize..4) {
        let g = grad!(variable_bounds)(&x, lo, k);
        check_vec(&format!("(lo..n).step_by(k) with lo = {lo}, k = {k}"), &g, &fd_vec(|v| variable_bounds(v, lo, k), &x), FD)?;
        let want: Vec<f64> = (0..x.len())
            .map(|i| {
                let stepped = if i >= lo && (i - lo) % k == 0 { 3.0 * x[i] * x[i] } else { 0.0 };
                stepped + if i == lo { x[i].exp() } else { 0.0 }
            })
            .collect();
        check_vec("runtime bounds analytic", &g, &want, EXACT)?;
    }

    #[test]
    fn carried_values(x in -1.5..1.5f64, y in -1.5..1.5f64, n in 0usize..8, v in vector(0..6)) {
        let (gx, gy) = grad!(coupled)(x, y, n);
        let (fx, fy) = fd2(|a, b| coupled(a, b, n), x, y);
        check(&format!("coupled d/dx (n = {n})"), gx, fx, FD)?;
        check(&format!("coupled d/dy (n = {n})"), gy, fy, FD)?;

        let g = grad!(last_value)(&v);
        let want: Vec<f64> = (0..v.len()).map(|i| if i + 1 == v.len() { 4.0 * v[i] } else { 0.0 }).collect();
        check_vec("last value", &g, &want, EXACT)?;

        for t in [x, -x.abs() - 0.1] {
            let (gv, gt) = grad!(loops_in_control)(&v, t);
            check_vec(&format!("loops in control d/dx (t = {t})"), &gv, &fd_vec(|w| loops_in_control(w, t), &v), FD)?;
            check(&format!("loops in control d/dt (t = {t})"), gt, fd(|u| loops_in_control(&v, u), t), FD)?;
        }
    }

    #[test]
    fn more_loop_forms(x in vector(0..7), t in -2.0..2.0f64, y in -1.0..1.0f64, n in 0usize..6, k in 0usize..7, m in 0u8..2, p in 0i32..6) {
        let (gx, gt) = grad!(name_clash)(&x, t);
        check_vec("name clash d/dx", &gx, &fd_vec(|v| name_clash(v, t), &x), FD)?;
        check("name clash d/dx_bar", gt, fd(|s| name_clash(&x, s), t), FD)?;

        let (ga, gb) = grad!(tuple_carried)(t, y, n);
        let (fa, fb) = fd2(|a, b| tuple_carried(a, b, n), t, y);
        check("tuple-carried d/dx", ga, fa, FD)?;
        check("tuple-carried d/dy", gb, fb, FD)?;

        let g: f64 = grad!(powi_from_index)(t, p);
        let want: f64 = (1..p).map(|k| k as f64 * t.powi(k - 1)).sum();
        check(&format!("sum of x^k, k < {p}"), g, want, Tol { rel: 1e-12, abs: 1e-12 })?;

        prop_assume!(x.iter().all(|v| v.abs() > 0.01));
        check_vec("match in loop", &grad!(match_in_loop)(&x), &fd_vec(match_in_loop, &x), FD)?;
        check_vec("return in match", &grad!(return_in_match)(&x, k), &fd_vec(|v| return_in_match(v, k), &x), FD)?;
        check_vec("loops in match", &grad!(loops_in_match)(&x, m), &fd_vec(|v| loops_in_match(v, m), &x), FD)?;
    }

    #[test]
    fn exits_in_nested_loops(x in vec_in(-1.0, 2.0, 0..7), t in -1.0..1.0f64) {
        // Away from every threshold the exits compare with.
        prop_assume!(x.iter().all(|v| v.abs() > 0.01 && (v + 0.5).abs() > 0.01 && (v - 1.0).abs() > 0.01));
        let mut s = 1.0;
        let mut margin = f64::INFINITY;
        for v in &x {
            s = s * v + 0.5;
            margin = margin.min((s - 3.0).abs());
            if s > 3.0 {
                break;
            }
        }
        prop_assume!(margin > 0.01);
        check_vec("return with pushes", &grad!(early_with_push)(&x), &fd_vec(early_with_push, &x), FD)?;
        check_vec("nested break/continue", &grad!(nested_break_continue)(&x), &fd_vec(nested_break_continue, &x), FD)?;
        let (gx, gt) = grad!(deep_nesting)(&x, t);
        let f = |v: &[f64], t: f64| deep_nesting(v, t);
        // The exit `s > 2.0` must not be crossed by the finite differences: compare only
        // when the two one-sided differences agree.
        let fdx = fd_vec(|v| f(v, t), &x);
        let fdt = fd(|u| f(&x, u), t);
        let h = 1e-4;
        let one_sided = (f(&x, t + h) - f(&x, t)) / h;
        prop_assume!((one_sided - fdt).abs() < 1e-2 * (1.0 + fdt.abs()));
        check_vec("deep nesting d/dx", &gx, &fdx, Tol { rel: 1e-4, abs: 1e-5 })?;
        check("deep nesting d/dt", gt, fdt, Tol { rel: 1e-4, abs: 1e-5 })?;
    }

    #[test]
    fn float_trip_count_matches(x in non_integer(0.0, 8.0, 0.01)) {
        let g: f64 = grad!(float_trip_count)(x);
        check(&format!("trip count from {x}"), g, fd(float_trip_count, x), FD)?;
        let want: f64 = (0..(x as usize)).map(|i| i as f64 * (1.0 + (x * i as f64).cos())).sum();
        check(&format!("trip count from {x} analytic"), g, want, EXACT)?;
    }

    #[test]
    fn counted_scalar_loops(x in -1.5..1.5f64, c in -1.0..1.0f64, n in 0usize..12) {
        let g: f64 = grad!(power_loop)(x, n);
        let want = if n == 0 { 0.0 } else { n as f64 * x.powi(n as i32 - 1) };
        check(&format!("x^{n} by a loop at {x}"), g, want, Tol { rel: 1e-12, abs: 1e-12 })?;
        let (gx, gc) = grad!(recurrence)(x, c, n);
        let (fx, fc) = fd2(|a, b| recurrence(a, b, n), x, c);
        check(&format!("recurrence d/dx (n = {n})"), gx, fx, FD)?;
        check(&format!("recurrence d/dc (n = {n})"), gc, fc, FD)?;
    }

    #[test]
    fn slice_iterators(x in vector(0..7), y in vector(0..7)) {
        let (gx, gy) = grad!(iter_forms)(&x, y.clone());
        check_vec("iter forms d/dx", &gx, &fd_vec(|v| iter_forms(v, y.clone()), &x), FD)?;
        check_vec("iter forms d/dy", &gy, &fd_vec(|v| iter_forms(&x, v.to_vec()), &y), FD)?;
        let want_x: Vec<f64> = x.iter().map(|v| 2.0 * v + 0.5 + v.cos()).collect();
        let want_y: Vec<f64> = y.iter().map(|v| 3.0 * v * v + v.exp()).collect();
        check_vec("iter forms d/dx analytic", &gx, &want_x, EXACT)?;
        check_vec("iter forms d/dy analytic", &gy, &want_y, EXACT)?;

        let (gx, gy) = grad!(enumerate_zip)(&x, &y);
        check_vec("enumerate/zip d/dx", &gx, &fd_vec(|v| enumerate_zip(v, &y), &x), FD)?;
        check_vec("enumerate/zip d/dy", &gy, &fd_vec(|v| enumerate_zip(&x, v), &y), FD)?;
    }

    #[test]
    fn product_matches(x in vector(0..10)) {
        let g = grad!(product)(&x);
        let want: Vec<f64> = (0..x.len())
            .map(|i| x.iter().enumerate().filter(|(j, _)| *j != i).map(|(_, v)| v).product())
            .collect();
        check_vec("product analytic", &g, &want, Tol { rel: 1e-12, abs: 1e-14 })?;
        check_vec("product fd", &g, &fd_vec(product, &x), FD)?;
        let (v, g2) = value_and_grad!(product)(&x);
        check("product value", v, product(&x), EXACT)?;
        check_vec("product value_and_grad", &g2, &g, EXACT)?;
    }

    #[test]
    fn while_data_dependent(x in 0.1..40.0f64) {
        prop_assume!(while_halve_margin(x) > 0.01);
        let g: f64 = grad!(while_halve)(x);
        check(&format!("while_halve at {x}"), g, fd(while_halve, x), FD)?;
    }

    #[test]
    fn while_short_circuit(x in vec_in(-0.5, 3.0, 0..8)) {
        prop_assume!(x.iter().all(|v| v.abs() > 0.01));
        let g = grad!(while_positive_prefix)(&x);
        check_vec("while i < n && x[i] > 0", &g, &fd_vec(while_positive_prefix, &x), FD)?;
        let k = x.iter().take_while(|v| **v > 0.0).count();
        let want: Vec<f64> = (0..x.len())
            .map(|i| if i < k { 0.5 / x[i].sqrt() * (i as f64 + 1.0) } else { 0.0 })
            .collect();
        check_vec("while i < n && x[i] > 0 analytic", &g, &want, EXACT)?;
    }

    #[test]
    fn newton_iteration(a in 0.5..20.0f64) {
        let g: f64 = grad!(newton_sqrt)(a);
        // After 8 steps from y0 = a the iteration has converged: d√a/da.
        check(&format!("newton sqrt' at {a}"), g, 0.5 / a.sqrt(), Tol { rel: 1e-8, abs: 1e-10 })?;
        check(&format!("newton sqrt' at {a} vs fd"), g, fd(newton_sqrt, a), FD)?;
    }

    #[test]
    fn break_and_continue(x in vec_in(-1.5, 2.0, 0..10)) {
        prop_assume!(x.iter().all(|v| (v + 1.0).abs() > 0.01));
        let g = grad!(break_continue)(&x);
        check_vec("for with break/continue", &g, &fd_vec(break_continue, &x), FD)?;
    }

    #[test]
    fn loop_break_value(x in -2.0..2.0f64) {
        let g: f64 = grad!(break_value)(x);
        check(&format!("break value at {x}"), g, fd(break_value, x), FD)?;
    }

    #[test]
    fn loop_data_dependent_exit(x in 0.0..30.0f64) {
        prop_assume!(loop_until_small_margin(x) > 0.01);
        let g: f64 = grad!(loop_until_small)(x);
        check(&format!("loop until small at {x}"), g, fd(loop_until_small, x), FD)?;
    }

    #[test]
    fn while_with_continue(x in vec_in(-1.0, 2.0, 0..8)) {
        prop_assume!(x.iter().all(|v| v.abs() > 0.01 && (v - 1.8).abs() > 0.01));
        let g = grad!(while_continue)(&x);
        check_vec("while with continue/break", &g, &fd_vec(while_continue, &x), FD)?;
    }

    #[test]
    fn early_return_from_for(x in vector(0..8), t in -1.0..1.5f64) {
        prop_assume!(x.iter().all(|v| (v - t).abs() > 0.01));
        let (gx, gt) = grad!(return_from_for)(&x, t);
        check_vec("return inside for d/dx", &gx, &fd_vec(|v| return_from_for(v, t), &x), FD)?;
        check("return inside for d/dt", gt, fd(|s| return_from_for(&x, s), t), FD)?;
    }

    #[test]
    fn early_return_from_while(x in -2.0..2.9f64) {
        prop_assume!(return_from_while_margin(x) > 0.01);
        let g: f64 = grad!(return_from_while)(x);
        check(&format!("return inside while at {x}"), g, fd(return_from_while, x), FD)?;
    }

    #[test]
    fn early_return_from_nested(x in vec_in(0.0, 1.5, 0..6)) {
        let g = grad!(return_from_nested)(&x);
        // Away from the exit threshold along the partial sums.
        let mut s = 0.0;
        let mut ok = true;
        'outer: for i in 0..x.len() {
            for j in 0..x.len() {
                s += x[i] * x[j];
                ok &= (s - 5.0).abs() > 0.01;
                if s > 5.0 {
                    break 'outer;
                }
            }
        }
        prop_assume!(ok);
        check_vec("return inside nested loops", &g, &fd_vec(return_from_nested, &x), FD)?;
    }

    #[test]
    fn nested_loops(x in vector(0..7), k in 0usize..4) {
        let g = grad!(quadratic_form)(&x);
        check_vec("quadratic form", &g, &fd_vec(quadratic_form, &x), FD)?;
        let n = x.len();
        let want: Vec<f64> = (0..n)
            .map(|i| (0..n).map(|j| 2.0 * x[j] / (1.0 + (i + j) as f64)).sum())
            .collect();
        check_vec("quadratic form analytic", &g, &want, Tol { rel: 1e-12, abs: 1e-13 })?;

        let xt: Vec<f64> = x.iter().map(|v| v.abs() + 0.1).collect();
        check_vec("triangular", &grad!(triangular)(&xt), &fd_vec(triangular, &xt), FD)?;

        prop_assume!(x.iter().all(|v| v.abs() > 0.01));
        let xs: Vec<f64> = x.iter().map(|v| v * 0.5).collect();
        check_vec("nested with branches", &grad!(nested_branchy)(&xs, k), &fd_vec(|v| nested_branchy(v, k), &xs), FD)?;
    }

    #[test]
    fn single_precision(x in vec_in(-1.0, 1.0, 0..6)) {
        let xs: Vec<f32> = x.iter().map(|v| *v as f32).collect();
        let g: Vec<f32> = grad!(single_precision_loop)(&xs);
        let want: Vec<f64> = xs.iter().map(|&v| 2.0 * v as f64 / (1.0 + (v as f64) * (v as f64))).collect();
        let got: Vec<f64> = g.iter().map(|v| *v as f64).collect();
        check_vec("f32 loop", &got, &want, F32)?;
    }
}

#[test]
fn long_loops() {
    // Many iterations: the values saved by the forward sweep are restored in order.
    let x: Vec<f64> = (0..2000).map(|i| 1.0 + 0.001 * ((i * 7919) % 13) as f64).collect();
    let g = grad!(reversed)(&x);
    let want: Vec<f64> = x.iter().enumerate().map(|(i, v)| 2.0 * v * 0.7f64.powi(i as i32)).collect();
    assert_vec_close("reversed over 2000 elements", &g, &want, Tol { rel: 1e-12, abs: 1e-300 });

    let (gx, gc) = grad!(recurrence)(0.3, 0.2, 500);
    assert_close("recurrence over 500 steps d/dx", gx, fd(|a| recurrence(a, 0.2, 500), 0.3), FD);
    assert_close("recurrence over 500 steps d/dc", gc, fd(|c| recurrence(0.3, c, 500), 0.2), FD);

    let small: Vec<f64> = (0..300).map(|i| 1.0 + 0.0001 * i as f64).collect();
    let g = grad!(product)(&small);
    let fd_g = fd_vec(product, &small[..]);
    assert_vec_close("product over 300 elements", &g, &fd_g, Tol { rel: 1e-5, abs: 1e-6 });
}

mod tuple_break_values {
    use super::*;

    /// `break` with a tuple value: "this value does not fit the variable it is assigned
    /// to" at `break`, and "this pattern is not supported" at `let (p, q)`.
    #[differentiable]
    fn break_tuple(x: f64) -> f64 {
        let mut a = x;
        let mut k = 0;
        let (p, q) = loop {
            a = a * 0.9 + 0.1;
            k += 1;
            if k == 4 {
                break (a * 2.0, a);
            }
        };
        p * q
    }

    #[test]
    fn break_with_tuple_value() {
        assert_close("break tuple", grad!(break_tuple)(0.7), fd(break_tuple, 0.7), FD);
    }
}

/// Labelled `continue`/`break` out of an inner `for`, as in a search over pairs.
#[differentiable(order = 2)]
fn labelled_search(x: &[f64], a: f64) -> f64 {
    let mut s = 0.0;
    'rows: for i in 0..x.len() {
        for j in 0..x.len() {
            if x[i] * x[j] > 2.0 {
                continue 'rows;
            }
            if s > 5.0 {
                break 'rows;
            }
            s += x[i] * x[j] * a;
        }
        s *= a;
    }
    s
}

/// A labelled `break` two levels out (a `while` inside an `if` inside a `loop`), next to
/// an unlabelled `continue` of the inner loop.
#[differentiable]
fn labelled_break_from_while(x: &[f64], a: f64) -> f64 {
    let mut s = a;
    let mut k = 0;
    'outer: loop {
        k += 1;
        let mut i = 0;
        while i < x.len() {
            if x[i] < 0.0 {
                if k > 3 {
                    break 'outer;
                }
                i += 1;
                continue;
            }
            s = s * 0.5 + x[i] * a;
            i += 1;
        }
        if k >= 5 {
            break;
        }
    }
    s
}

#[differentiable]
fn d_labelled_search(x: &[f64], a: f64) -> f64 {
    grad!(labelled_search)(x, a).1
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn labelled_exits(x in vec_in(-1.0, 2.0, 1..6), a in 0.3..1.5f64) {
        let (gx, ga) = grad!(labelled_search)(&x, a);
        check_vec("search d/dx", &gx, &fd_vec(|v| labelled_search(v, a), &x), FD)?;
        check("search d/da", ga, fd(|t| labelled_search(&x, t), a), FD)?;
        let (gx, ga) = grad!(labelled_break_from_while)(&x, a);
        check_vec("while d/dx", &gx, &fd_vec(|v| labelled_break_from_while(v, a), &x), FD)?;
        check("while d/da", ga, fd(|t| labelled_break_from_while(&x, t), a), FD)?;
        check("d2/da2", grad!(d_labelled_search)(&x, a).1, fd(|t| d_labelled_search(&x, t), a), FD2)?;
    }
}

/// The value of a `loop` that may `return` first, of a type the macro cannot see (a
/// call's result, a field of a nested `value_and_grad!`): when the `return` is taken the
/// loop never assigned its value, and the reverse sweep must not shape a zero by it.
mod loop_value_after_return {
    use super::*;

    #[differentiable(order = 3)]
    fn square(u: f64) -> f64 {
        u * u
    }

    #[differentiable(order = 2)]
    fn call_value(c: f64) -> f64 {
        let mut k = 0;
        let r = loop {
            k += 1;
            if c < 1.0 {
                return 3.0 * c;
            }
            if k >= 2 {
                break square(c);
            }
        };
        r * c
    }

    /// The same loop inside another loop (its value's zero saved per outer iteration).
    #[differentiable(order = 2)]
    fn nested_value(x: &[f64], c: f64) -> f64 {
        let mut s = 0.0;
        for &xi in x {
            let mut k = 0;
            let r = loop {
                k += 1;
                if xi * c > 2.0 {
                    return s + xi;
                }
                if k >= 2 {
                    break square(xi * c);
                }
            };
            s += r;
        }
        s
    }

    /// A field of a `value_and_grad!` result as the loop's value.
    #[differentiable]
    fn nested_grad_value(c: f64) -> f64 {
        let vg = value_and_grad!(square)(c);
        let mut k = 0;
        let r = loop {
            k += 1;
            if c > 1.5 {
                return c * c;
            }
            if k >= 3 {
                break vg.1;
            }
        };
        r * c
    }

    #[differentiable]
    fn d_call_value(c: f64) -> f64 {
        grad!(call_value)(c)
    }

    proptest! {
        #![proptest_config(config())]

        #[test]
        fn loop_value_of_a_loop_that_returned(c in -1.0..3.0f64, x in vec_in(-1.0, 2.0, 0..5)) {
            prop_assume!((c - 1.0).abs() > 1e-3 && (c - 1.5).abs() > 1e-3);
            check("call value", grad!(call_value)(c), fd(call_value, c), FD)?;
            check("call value, second order", grad!(d_call_value)(c), fd(d_call_value, c), FD2)?;
            check("grad value", grad!(nested_grad_value)(c), fd(nested_grad_value, c), FD)?;
            prop_assume!(x.iter().all(|v| (v * c - 2.0).abs() > 1e-3));
            let (gx, gc) = grad!(nested_value)(&x, c);
            check_vec("nested d/dx", &gx, &fd_vec(|v| nested_value(v, c), &x), FD)?;
            check("nested d/dc", gc, fd(|t| nested_value(&x, t), c), FD)?;
        }
    }
}

/// Values of a zero-sized type (here a unit saved by a `loop … break value` nested in a
/// derivative of a derivative) saved through a tape segment in a counted loop: fuzz
/// campaign 0x2600, program 1088, as the shrinker left it. The segment counted its room
/// by addresses, which a zero-sized value does not have, and reported an overrun.
#[allow(unused_variables, unused_mut, unused_parens, unused_assignments, clippy::all)]
mod fuzz_0x2600_1088 {
    use super::*;

    #[differentiable(order = 3)]
    pub fn h0(u: f64, v: f64) -> f64 {
        let mut k4 = 0;
        let r5 = loop {
            k4 += 1;
            let s6 = (((0.1_f64).mul_add(u, (k4 as f64)) * (0.1_f64).mul_add(u, (k4 as f64))) + 2.0).powi(-2);
            let s7 = ((s6 - u).hypot((-s6)) - (-0.75));
            let buf8 = [((2.0 / (-1.5)) - s7.mul_add(u, u)), ((3.0_f64).powi(2) + (s6 + 0.25))];
            if k4 >= 2 {
                break ((((buf8[1] - buf8[buf8.len() - 1]) * (buf8[1] - buf8[buf8.len() - 1])) + 0.5) + 1.5);
            }
        };
        r5.min((1.5 / 2.0))
    }

    #[differentiable(order = 2)]
    pub fn f(a: f64) -> f64 {
        let gt13 = grad!(h0)(0.5, (a.clamp((-1.0), 0.0)).asinh());
        let s14 = ((a / ((gt13.0 * gt13.0) + 0.25)) + ((2.0 - a) * a));
        let mut s15 = s14;
        (((s15 - s14.powi(2)) + s15) + s15)
    }

    #[differentiable]
    pub fn d_f(a: f64) -> f64 {
        let g0 = grad!(f)(a);
        g0 * 0.75
    }
}

#[test]
fn zero_sized_values_through_a_tape_segment() {
    for a in [-0.7, 0.3, 1.2] {
        assert_close("f'", grad!(fuzz_0x2600_1088::f)(a), fd(fuzz_0x2600_1088::f, a), FD);
        assert_close("f''", grad!(fuzz_0x2600_1088::d_f)(a), fd(fuzz_0x2600_1088::d_f, a), FD2);
    }
}
