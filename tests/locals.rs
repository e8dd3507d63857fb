//! Locals wherever plain Rust allows them: buffers declared inside a branch, a loop
//! body or after an early `return`; the value of `loop { … break v; }`; sub-slices of
//! local buffers passed to calls inside loops; values returned by a nested `grad!` or
//! `value_and_grad!` used like any other local (iterated, zipped, sub-sliced, summed,
//! destructured); `break`/`return` inside loops over `.rev()` and `.step_by(k)`
//! ranges. Every gradient is checked against central differences, and the second
//! derivative (through a nested `grad!`) against differences of the gradient.
//!
//! The first four groups are the shapes a differential fuzz campaign found producing
//! generated code that did not compile (issue 14).

#![allow(
    clippy::needless_range_loop,
    clippy::assign_op_pattern,
    clippy::useless_vec,
    clippy::let_and_return,
    clippy::never_loop,
    clippy::needless_return
)]

mod common;

use adjoint::prelude::*;
use common::*;
use proptest::prelude::*;

// ------------------------------------------------------------------ buffers in regions

/// A buffer declared inside an `if` branch (the reverse sweep reads its elements and
/// its adjoint needs its shape, though the buffer is out of scope there).
#[differentiable]
fn buffer_in_branch(x: f64, c: f64) -> f64 {
    let mut s = c;
    if c >= 0.0 {
        let mut buf = vec![0.0; 2];
        buf[0] = x * s;
        s += buf[0] * buf[0];
    }
    s
}

/// A buffer declared after an early `return` (it lives in the region guarded by the
/// return flag), never written: its elements cannot be re-read in the reverse sweep.
#[differentiable]
fn buffer_after_return(a: f64, b: f64) -> f64 {
    if a > 5.0 {
        return a * a;
    }
    let buf = [b, a];
    buf[0] * buf[1]
}

/// A fresh buffer per iteration, written, read, overwritten and passed to a call.
#[differentiable]
fn buffer_in_loop_body(x: &[f64], a: f64) -> f64 {
    let mut s = 0.0;
    for i in 0..x.len() {
        let mut buf = vec![0.0; 3];
        buf[0] = x[i] * a;
        buf[1] = buf[0].sin();
        buf[0] = buf[0] * buf[1];
        let t = ends(a, &buf);
        s += buf[1] * buf[0] + t;
    }
    s
}

/// A buffer grown by `push` inside a `while` body.
#[differentiable]
#[allow(clippy::vec_init_then_push)] // the construct under test
fn pushed_in_while(x: f64, y: f64) -> f64 {
    let mut s = 0.0;
    let mut k = 0;
    while k < 3 {
        let mut v = Vec::with_capacity(2);
        v.push(x * s + y);
        v.push(v[0] * x);
        s += v[0] + v[1] * v[1];
        k += 1;
    }
    s
}

#[differentiable(order = 3)]
fn ends(a: f64, x: &[f64]) -> f64 {
    a * x[0] * x[x.len() - 1]
}

/// A sub-slice of a local buffer, written in the same loop, passed to a call.
#[differentiable]
fn sub_slice_of_local(a: f64, x: &[f64]) -> f64 {
    let mut buf = vec![0.0; x.len()];
    let mut s = 0.0;
    for i in 0..buf.len() {
        buf[i] = x[i] * a;
        s += ends(a, &buf[0..buf.len() - 1]);
    }
    s
}

/// Sub-slices of a buffer local to the loop body, with bounds computed in the body.
#[differentiable]
fn sub_slice_of_body_local(a: f64, x: &[f64]) -> f64 {
    let mut s = 0.0;
    for i in 1..x.len() {
        let mut buf = x.to_vec();
        buf[i] = buf[i] * a + s;
        let lo = i - 1;
        s += ends(a, &buf[lo..=i]) + ends(s, &buf[i..]);
    }
    s
}

// ------------------------------------------------------------------ break values

#[differentiable(order = 3)]
fn square(a: f64) -> f64 {
    a * a
}

/// `loop { … break value; }` whose value uses a differentiable call's result.
#[differentiable]
fn break_with_call_value(b: f64) -> f64 {
    let s = square(b);
    let mut k = 0;
    let r = loop {
        k += 1;
        if k >= 6 {
            break b * s;
        }
    };
    r
}

/// A tuple break value carrying a derivative, taken on a data-dependent iteration.
#[differentiable]
fn break_with_tuple(x: f64, y: f64) -> f64 {
    let mut acc = square(x);
    let (p, q) = loop {
        acc = acc * 0.5 + y;
        if acc < 1.0 + y {
            break (acc * x, square(acc));
        }
    };
    p + q
}

// ------------------------------------------------------------------ nested derivatives as locals

#[differentiable(order = 3)]
fn quad_ends(x: &[f64]) -> f64 {
    x[0] * x[0] + x[x.len() - 1] * x[1]
}

#[differentiable(order = 3)]
fn cubic(a: f64, b: f64) -> f64 {
    a * a * b + b.sin()
}

/// The gradient a nested `grad!` returns, iterated with `.iter().sum()`.
#[differentiable]
fn sum_of_gradient(x: &[f64], a: f64) -> f64 {
    let gx = grad!(quad_ends)(x);
    let s: f64 = gx.iter().sum();
    s * a
}

/// … iterated by a `for` loop, zipped with an argument, sub-sliced, and summed with a
/// turbofish.
#[differentiable]
fn gradient_as_buffer(x: &[f64], a: f64) -> f64 {
    let gx = grad!(quad_ends)(x);
    let mut s = 0.0;
    for g in gx.iter() {
        s += g * a;
    }
    for (g, y) in gx.iter().zip(x.iter()) {
        s += g * y;
    }
    for i in 0..gx.len() {
        s += gx[i] * gx[i];
    }
    s + quad_ends(&gx[0..2]) * a + gx.iter().sum::<f64>()
}

/// `let (v, (g1, g2)) = value_and_grad!(…)(…)`.
#[differentiable]
fn destructured_value_and_grad(a: f64, b: f64) -> f64 {
    let (v, (g1, g2)) = value_and_grad!(cubic)(a, b);
    v * g1 + g2
}

/// A gradient tuple bound to a name, then destructured.
#[differentiable]
fn destructured_later(a: f64, b: f64) -> f64 {
    let gt = grad!(cubic)(a, b);
    let (g1, g2) = gt;
    let (_, again) = gt;
    g1 * g2 + again
}

// ------------------------------------------------------------------ early exits from stepped ranges

#[differentiable]
fn break_in_rev(x: &[f64], a: f64) -> f64 {
    let mut s = 0.0;
    for i in (0..x.len()).rev() {
        s += x[i] * a * (s + 1.0);
        if s > 2.0 {
            break;
        }
    }
    s
}

#[differentiable]
fn return_in_step_by(x: &[f64], a: f64) -> f64 {
    let mut s = 0.0;
    for i in (1..x.len()).step_by(2) {
        if x[i] > 5.0 {
            return s;
        }
        s += x[i] * a * s + x[i];
    }
    s * a
}

#[differentiable]
fn break_in_step_by_rev(x: &[f64], a: f64) -> f64 {
    let mut s = 0.0;
    for i in (0..x.len()).step_by(2).rev() {
        s = s * a + x[i];
        if i < 1 {
            break;
        }
    }
    s
}

#[differentiable]
fn break_in_rev_iter(x: &[f64], a: f64) -> f64 {
    let mut s = 0.0;
    for v in x.iter().rev() {
        s = s * a + v;
        if s > 3.0 {
            break;
        }
    }
    s
}

#[differentiable]
fn continue_in_inclusive_rev_step(x: &[f64], a: f64) -> f64 {
    let mut s = 0.0;
    for i in (0..=x.len() - 1).rev().step_by(3) {
        if x[i] < 0.0 {
            continue;
        }
        s += (x[i] * a).sin();
        if s > 1.5 {
            return s * 2.0;
        }
    }
    s
}

/// `.zip(…)` then `.enumerate()`: the index pairs with the zipped pair, `(i, (a, b))`.
#[differentiable]
fn zip_then_enumerate(x: &[f64], y: &[f64]) -> f64 {
    let mut s = 0.0;
    for (i, (&a, &b)) in x.iter().zip(y.iter()).enumerate() {
        s += a * b * (i as f64 + 1.0) + a.sin();
    }
    for ((i, &a), &b) in x.iter().enumerate().zip(y.iter()) {
        s += (a - b) * (i as f64);
    }
    s
}

// ------------------------------------------------------------------ second derivatives

#[differentiable]
fn d_buffer_in_branch(x: f64, c: f64) -> f64 {
    let (gx, _) = grad!(buffer_in_branch)(x, c);
    gx
}

#[differentiable]
fn d_break_with_call_value(b: f64) -> f64 {
    grad!(break_with_call_value)(b)
}

#[differentiable]
fn d_sub_slice_of_local(a: f64, x: &[f64]) -> f64 {
    let (ga, _) = grad!(sub_slice_of_local)(a, x);
    ga
}

#[differentiable]
fn d_break_in_rev(x: &[f64], a: f64) -> f64 {
    let (_, ga) = grad!(break_in_rev)(x, a);
    ga
}

#[differentiable]
fn d_buffer_in_loop_body(x: &[f64], a: f64) -> f64 {
    let (_, ga) = grad!(buffer_in_loop_body)(x, a);
    ga
}

// ------------------------------------------------------------------ tests

fn with(x: &[f64], i: usize, v: f64) -> Vec<f64> {
    let mut y = x.to_vec();
    y[i] = v;
    y
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn buffers_in_branches(x in -2.0..2.0f64, c in -1.0..1.0f64) {
        let (gx, gc) = grad!(buffer_in_branch)(x, c);
        let (fx, fc) = fd2(buffer_in_branch, x, c);
        check("d/dx", gx, fx, FD)?;
        check("d/dc", gc, fc, FD)?;
        check("d/dx through the nested call", d_buffer_in_branch(x, c), gx, FD)?;
        check("d2/dx2 nested", grad!(d_buffer_in_branch)(x, c).0, fd(|t| d_buffer_in_branch(t, c), x), FD2)?;
    }

    #[test]
    fn buffers_after_return(a in -8.0..8.0f64, b in -2.0..2.0f64) {
        prop_assume!((a - 5.0).abs() > 1e-3);
        let (ga, gb) = grad!(buffer_after_return)(a, b);
        let (fa, fb) = fd2(buffer_after_return, a, b);
        check("d/da", ga, fa, FD)?;
        check("d/db", gb, fb, FD)?;
    }

    #[test]
    fn buffers_in_loop_bodies(x in vec_in(-1.5, 1.5, 2..6), a in -1.5..1.5f64) {
        let (gx, ga) = grad!(buffer_in_loop_body)(&x, a);
        check_vec("d/dx", &gx, &fd_vec(|v| buffer_in_loop_body(v, a), &x), FD)?;
        check("d/da", ga, fd(|t| buffer_in_loop_body(&x, t), a), FD)?;
        let (_, g2) = grad!(d_buffer_in_loop_body)(&x, a);
        check("d2/da2", g2, fd(|t| d_buffer_in_loop_body(&x, t), a), FD2)?;
    }

    #[test]
    fn buffers_pushed_in_while(x in -1.0..1.0f64, y in -1.0..1.0f64) {
        let (gx, gy) = grad!(pushed_in_while)(x, y);
        let (fx, fy) = fd2(pushed_in_while, x, y);
        check("d/dx", gx, fx, FD)?;
        check("d/dy", gy, fy, FD)?;
    }

    #[test]
    fn sub_slices_of_locals(a in -1.5..1.5f64, x in vec_in(-1.5, 1.5, 3..7)) {
        let (ga, gx) = grad!(sub_slice_of_local)(a, &x);
        check("d/da", ga, fd(|t| sub_slice_of_local(t, &x), a), FD)?;
        check_vec("d/dx", &gx, &fd_vec(|v| sub_slice_of_local(a, v), &x), FD)?;
        let (ga, gx) = grad!(sub_slice_of_body_local)(a, &x);
        check("d/da (body local)", ga, fd(|t| sub_slice_of_body_local(t, &x), a), FD)?;
        check_vec("d/dx (body local)", &gx, &fd_vec(|v| sub_slice_of_body_local(a, v), &x), FD)?;
        let (g2, _) = grad!(d_sub_slice_of_local)(a, &x);
        check("d2/da2", g2, fd(|t| d_sub_slice_of_local(t, &x), a), FD2)?;
    }

    #[test]
    fn break_values(b in -2.0..2.0f64, y in 0.0..1.0f64) {
        check("d/db", grad!(break_with_call_value)(b), fd(break_with_call_value, b), FD)?;
        check("d2/db2", grad!(d_break_with_call_value)(b), 6.0 * b, EXACT2)?;
        let (gx, gy) = grad!(break_with_tuple)(b, y);
        let (fx, fy) = fd2(break_with_tuple, b, y);
        check("tuple d/dx", gx, fx, FD)?;
        check("tuple d/dy", gy, fy, FD)?;
    }

    #[test]
    fn nested_gradients_as_locals(x in vec_in(-1.5, 1.5, 2..6), a in -1.5..1.5f64) {
        let (gx, ga) = grad!(sum_of_gradient)(&x, a);
        check_vec("sum d/dx", &gx, &fd_vec(|v| sum_of_gradient(v, a), &x), FD)?;
        check("sum d/da", ga, fd(|t| sum_of_gradient(&x, t), a), FD)?;
        let (gx, ga) = grad!(gradient_as_buffer)(&x, a);
        check_vec("buffer d/dx", &gx, &fd_vec(|v| gradient_as_buffer(v, a), &x), FD)?;
        check("buffer d/da", ga, fd(|t| gradient_as_buffer(&x, t), a), FD)?;
    }

    #[test]
    fn zipped_and_enumerated(x in vec_in(-1.5, 1.5, 3..6), y in vec_in(-1.5, 1.5, 3..6)) {
        let (gx, gy) = grad!(zip_then_enumerate)(&x, &y);
        check_vec("d/dx", &gx, &fd_vec(|v| zip_then_enumerate(v, &y), &x), FD)?;
        check_vec("d/dy", &gy, &fd_vec(|v| zip_then_enumerate(&x, v), &y), FD)?;
    }

    #[test]
    fn nested_gradients_destructured(a in -1.5..1.5f64, b in -1.5..1.5f64) {
        let (ga, gb) = grad!(destructured_value_and_grad)(a, b);
        let (fa, fb) = fd2(destructured_value_and_grad, a, b);
        check("value_and_grad d/da", ga, fa, FD)?;
        check("value_and_grad d/db", gb, fb, FD)?;
        let (ga, gb) = grad!(destructured_later)(a, b);
        let (fa, fb) = fd2(destructured_later, a, b);
        check("later d/da", ga, fa, FD)?;
        check("later d/db", gb, fb, FD)?;
    }

    #[test]
    fn early_exits_from_stepped_ranges(x in vec_in(-1.0, 1.5, 1..8), a in -1.2..1.2f64) {
        type F = fn(&[f64], f64) -> f64;
        type G = fn(&[f64], f64) -> (Vec<f64>, f64);
        let cases: [(&str, F, G); 5] = [
            ("rev", break_in_rev, |x, a| grad!(break_in_rev)(x, a)),
            ("step_by", return_in_step_by, |x, a| grad!(return_in_step_by)(x, a)),
            ("step_by rev", break_in_step_by_rev, |x, a| grad!(break_in_step_by_rev)(x, a)),
            ("iter rev", break_in_rev_iter, |x, a| grad!(break_in_rev_iter)(x, a)),
            ("inclusive rev step_by", continue_in_inclusive_rev_step, |x, a| grad!(continue_in_inclusive_rev_step)(x, a)),
        ];
        for (name, f, g) in cases {
            // A branch switch between the two evaluations of a difference is a kink,
            // not a derivative: such points are skipped (two step sizes must agree).
            let fa = fd(|t| f(&x, t), a);
            let fa2 = (f(&x, a + 1e-4) - f(&x, a - 1e-4)) / 2e-4;
            if (fa - fa2).abs() > 1e-3 * (1.0 + fa.abs()) {
                continue;
            }
            let (gx, ga) = g(&x, a);
            check(&format!("{name} d/da"), ga, fa, FD)?;
            let fx = fd_vec(|v| f(v, a), &x);
            for i in 0..x.len() {
                let fx2 = (f(&with(&x, i, x[i] + 1e-4), a) - f(&with(&x, i, x[i] - 1e-4), a)) / 2e-4;
                if (fx[i] - fx2).abs() <= 1e-3 * (1.0 + fx[i].abs()) {
                    check(&format!("{name} d/dx[{i}]"), gx[i], fx[i], FD)?;
                }
            }
        }
        let (_, g2) = grad!(d_break_in_rev)(&x, a);
        let f2 = fd(|t| d_break_in_rev(&x, t), a);
        let f2b = (d_break_in_rev(&x, a + 1e-4) - d_break_in_rev(&x, a - 1e-4)) / 2e-4;
        if (f2 - f2b).abs() <= 1e-3 * (1.0 + f2.abs()) {
            check("rev d2/da2", g2, f2, FD2)?;
        }
    }
}

/// The exact iteration orders of the stepped ranges, including empty ones.
#[test]
fn stepped_ranges_visit_rusts_indices() {
    for n in 0..7 {
        let x: Vec<f64> = (0..n).map(|i| 0.1 * (i as f64 + 1.0)).collect();
        for a in [0.3, 0.9] {
            let want = {
                let mut s = 0.0;
                for i in (0..x.len()).step_by(2).rev() {
                    s = s * a + x[i];
                    if i < 1 {
                        break;
                    }
                }
                s
            };
            assert_close("step_by rev value", break_in_step_by_rev(&x, a), want, EXACT);
            let (v, _) = value_and_grad!(break_in_step_by_rev)(&x, a);
            assert_close("step_by rev value_and_grad", v, want, EXACT);
        }
    }
}

/// An array buffer overwritten in a loop from a differentiable call that reads it: the
/// call's gradient (a `Vec`) flows into the array's adjoint, at every order.
#[differentiable(order = 3)]
fn ends_product(u: &[f64]) -> f64 {
    u[0] * u[u.len() - 1]
}

#[differentiable(order = 2)]
fn array_through_calls(a: f64) -> f64 {
    let mut state = [0.0; 2];
    state[0] = a;
    for _ in 0..2 {
        state[1] = ends_product(&state) - a;
    }
    let g = grad!(ends_product)(&state);
    state[1] + g[0] * a
}

#[differentiable]
fn d_array_through_calls(a: f64) -> f64 {
    grad!(array_through_calls)(a)
}

/// `(a..=b).step_by(k)` and its reverse, with an early exit from one of them.
#[differentiable]
fn inclusive_steps(x: &[f64], a: f64) -> f64 {
    let mut s = 0.0;
    for i in (0..=x.len() - 1).step_by(2) {
        s = s * a + x[i];
    }
    for i in (0..=x.len() - 1).rev().step_by(2) {
        if s > 50.0 {
            break;
        }
        s += a * x[i] * x[i];
    }
    s
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn array_buffers_through_calls(a in -1.5..1.5f64) {
        check("d/da", grad!(array_through_calls)(a), fd(array_through_calls, a), FD)?;
        check("d2/da2", grad!(d_array_through_calls)(a), fd(d_array_through_calls, a), FD2)?;
    }

    #[test]
    fn inclusive_stepped_ranges(x in vec_in(-1.5, 1.5, 1..7), a in -1.5..1.5f64) {
        let (gx, ga) = grad!(inclusive_steps)(&x, a);
        check_vec("d/dx", &gx, &fd_vec(|v| inclusive_steps(v, a), &x), FD)?;
        check("d/da", ga, fd(|t| inclusive_steps(&x, t), a), FD)?;
    }
}

/// A buffer built by `push`, differentiated twice: the first derivative pops its
/// adjoint element by element, and the second must replay those pops (and push back a
/// zero for the element that received nothing).
#[differentiable]
#[allow(clippy::vec_init_then_push)] // the construct under test
fn pushed_then_read(b: f64) -> f64 {
    let mut buf = Vec::with_capacity(3);
    buf.push(1.0);
    buf.push(b);
    buf.push(b * b);
    (buf[buf.len() - 1] + 1.5).acosh() * buf[1]
}

#[differentiable]
fn d_pushed_then_read(b: f64) -> f64 {
    grad!(pushed_then_read)(b)
}

/// … and a pushed buffer handed to a nested `value_and_grad!`, at the third order.
#[differentiable(order = 3)]
fn squares(u: &[f64]) -> f64 {
    u.iter().map(|v| v * v).sum()
}

#[differentiable(order = 2)]
#[allow(clippy::vec_init_then_push)] // the construct under test
fn pushed_into_nested(a: f64) -> f64 {
    let mut buf = Vec::with_capacity(2);
    buf.push(a);
    buf.push(2.0);
    let (v, g) = value_and_grad!(squares)(&buf);
    v * g[0]
}

#[differentiable]
fn d_pushed_into_nested(a: f64) -> f64 {
    grad!(pushed_into_nested)(a)
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn pushed_buffers_at_second_order(b in 0.2..1.5f64) {
        check("d/db", grad!(pushed_then_read)(b), fd(pushed_then_read, b), FD)?;
        check("d2/db2", grad!(d_pushed_then_read)(b), fd(d_pushed_then_read, b), FD2)?;
        // (a² + 4)·2a: derivative 6a² + 8, second derivative 12a.
        check("d/da", d_pushed_into_nested(b), 6.0 * b * b + 8.0, FD)?;
        check("d2/da2", grad!(d_pushed_into_nested)(b), 12.0 * b, FD2)?;
    }
}

/// A gradient tuple destructured, then one of its scalar fields read again (Rust allows
/// it: only the vector moved out).
#[differentiable(order = 2)]
fn ends_scaled(u: &[f64], v: f64) -> f64 {
    u[0] * v * v
}

#[differentiable]
fn unpacked_then_field(x: &[f64]) -> f64 {
    let gt = grad!(ends_scaled)(&x[1..], x[0]);
    let (g, gv) = gt;
    g[0] * gv + gt.1 * x[0]
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn tuples_unpacked_then_read(x in vec_in(-1.5, 1.5, 2..6)) {
        // g[0]·gv + gv·x₀ = v²·2u₀v + 2u₀v·v with u₀ = x₁, v = x₀: 2x₁x₀³ + 2x₁x₀².
        let want = [6.0 * x[1] * x[0] * x[0] + 4.0 * x[1] * x[0], 2.0 * x[0].powi(3) + 2.0 * x[0] * x[0]];
        let g = grad!(unpacked_then_field)(&x);
        check("d/dx0", g[0], want[0], FD)?;
        check("d/dx1", g[1], want[1], FD)?;
        check_vec("grad", &g, &fd_vec(unpacked_then_field, &x), FD)?;
    }
}
