//! Calls between differentiable functions: in the same module, by path into other
//! modules and through `use`, inside loops and branches, recursion, sub-slices
//! (`g(&x[a..b])`), local buffers and arrays as arguments, functions returning tuples
//! and vectors, and callees with `wrt(…)` or `#[no_grad]`.

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

#[differentiable]
fn helper(a: f64, b: f64) -> f64 {
    a * b.sin()
}

#[differentiable]
fn caller(x: f64, y: f64) -> f64 {
    let u = helper(x, y);
    let v = helper(u, x);
    u + v + helper(helper(y, x), 2.0)
}

mod geometry {
    use adjoint::prelude::*;

    #[differentiable]
    pub fn norm2(x: f64, y: f64) -> f64 {
        (x * x + y * y).sqrt()
    }

    #[differentiable]
    pub fn polar(r: f64, t: f64) -> (f64, f64) {
        (r * t.cos(), r * t.sin())
    }

    pub mod deeper {
        use adjoint::prelude::*;

        #[differentiable]
        pub fn area(a: f64, b: f64) -> f64 {
            crate::geometry::norm2(a, b) * a * b * 0.5
        }
    }
}

use geometry::deeper::area;

/// Calls by path, through `use`, and a tuple result destructured.
#[differentiable]
fn by_path(r: f64, t: f64) -> f64 {
    let (x, y) = geometry::polar(r, t);
    let n = geometry::norm2(x, y);
    let a = geometry::deeper::area(x + 2.0, y + 2.0);
    let b = area(n, r);
    n * a + b
}

#[differentiable]
fn min_max(a: f64, b: f64) -> (f64, f64) {
    if a < b {
        (a, b)
    } else {
        (b, a)
    }
}

#[differentiable]
fn tuple_results(x: f64, y: f64) -> f64 {
    let (lo, hi) = min_max(x * x, y);
    let (c, s) = geometry::polar(hi, lo);
    c * s + lo
}

/// Calls in a loop and in both arms of a branch.
#[differentiable]
fn calls_in_control(x: &[f64], t: f64) -> f64 {
    let mut s = 0.0;
    for i in 0..x.len() {
        if x[i] > 0.0 {
            s += helper(x[i], t);
        } else {
            s = helper(s + x[i], t) * 0.5;
        }
    }
    while s > 10.0 {
        s = helper(s, 0.5);
    }
    s
}

/// Calls in loop and branch conditions.
#[differentiable]
fn calls_in_conditions(x: f64, y: f64) -> f64 {
    let mut z = x;
    while helper(z, y) > 0.5 {
        z = z * 0.5;
    }
    if helper(x, z) > 0.1 {
        z * x
    } else {
        z + x
    }
}

/// Recursion around a loop.
#[differentiable]
fn recursive_loop(x: &[f64], d: u32) -> f64 {
    let mut s = 0.0;
    for i in 0..x.len() {
        s = s * x[i] + 1.0;
    }
    if d == 0 {
        s
    } else {
        s * recursive_loop(x, d - 1) + x[0]
    }
}

#[differentiable]
fn power(x: f64, n: usize) -> f64 {
    if n == 0 {
        1.0
    } else {
        x * power(x, n - 1)
    }
}

/// Recursion that reads its argument after the recursive call returns.
#[differentiable]
fn nested_sin(x: f64, depth: u32) -> f64 {
    if depth == 0 {
        x
    } else {
        let inner = nested_sin(x * 0.9, depth - 1);
        inner.sin() * x + inner
    }
}

/// Recursion over a slice, by halves.
#[differentiable]
fn tree_sum_squares(x: &[f64]) -> f64 {
    let n = x.len();
    if n == 0 {
        0.0
    } else if n == 1 {
        x[0] * x[0]
    } else {
        let m = n / 2;
        tree_sum_squares(&x[..m]) * 1.5 + tree_sum_squares(&x[m..])
    }
}

#[differentiable]
fn dot(a: &[f64], b: &[f64]) -> f64 {
    let mut s = 0.0;
    for i in 0..a.len() {
        s += a[i] * b[i];
    }
    s
}

#[differentiable]
fn sum_sq(x: &[f64]) -> f64 {
    let mut s = 0.0;
    for &v in x {
        s += v * v;
    }
    s
}

/// Every form of sub-slice as an argument.
#[differentiable]
fn sub_slices(x: &[f64]) -> f64 {
    let n = x.len();
    let h = n / 2;
    let a = sum_sq(&x[1..n]);
    let b = sum_sq(&x[..2]);
    let c = sum_sq(&x[h..]);
    let d = dot(&x[0..h], &x[n - h..n]);
    let e = sum_sq(&x[1..=2]);
    a * b + c * d + e
}

/// A sliding window: sub-slices inside a loop.
#[differentiable]
fn windows(x: &[f64], w: usize) -> f64 {
    let mut s = 0.0;
    for i in 0..x.len() - w + 1 {
        let v = sum_sq(&x[i..i + w]);
        s += v.sqrt();
    }
    s
}

/// Local buffers and arrays passed to callees.
#[differentiable]
fn local_arguments(x: &[f64]) -> f64 {
    let n = x.len();
    let mut v = vec![0.0; n];
    for i in 0..n {
        v[i] = x[i].sin();
    }
    let c = x.to_vec();
    let p = [x[0], x[n - 1], 2.0];
    dot(&v, &c) + sum_sq(&v) * array_fn(p) + owned(c.clone())
}

#[differentiable]
fn array_fn(p: [f64; 3]) -> f64 {
    p[0] * p[1] + p[2]
}

#[differentiable]
fn owned(v: Vec<f64>) -> f64 {
    let mut s = 0.0;
    for i in 0..v.len() {
        s += v[i] * (i as f64 + 1.0);
    }
    s
}

#[differentiable]
fn squares(x: &[f64]) -> Vec<f64> {
    let mut out = Vec::with_capacity(x.len());
    for &v in x {
        out.push(v * v);
    }
    out
}

/// A callee returning a `Vec`, passed on to another callee. (Indexing the result: see
/// `module_paths_and_callee_results::index_vec_result`.)
#[differentiable]
fn uses_vec_result(x: &[f64]) -> f64 {
    let sq = squares(x);
    dot(&sq, x)
}

/// Integer, boolean and constant float arguments.
#[differentiable]
fn mixed_args(x: f64, k: i32, flag: bool, c: f64) -> f64 {
    let base = if flag { x * c } else { x + c };
    base * k as f64
}

#[differentiable]
fn passes_constants(x: f64) -> f64 {
    mixed_args(x, 3, true, 2.0) + mixed_args(x * x, -1, false, 0.5) + helper(2.0, x)
}

#[differentiable]
fn eight(a: f64, b: f64, c: f64, d: f64, e: f64, f: f64, g: f64, h: f64) -> f64 {
    a * b + c * d + e * f + g * h + a * h.sin()
}

/// A callee with many arguments, and a branch as an argument.
#[differentiable]
fn many_arguments(x: f64, y: f64) -> f64 {
    eight(x, y, x * y, 2.0, if x > 0.0 { x } else { -x }, y, x, x) * y
}

#[differentiable(wrt(a))]
fn restricted(a: f64, b: f64) -> f64 {
    a * b * b
}

/// `wrt` only restricts what `grad!` returns: a caller still differentiates through
/// every argument.
#[differentiable]
fn calls_restricted(x: f64, y: f64) -> f64 {
    restricted(x, y) + restricted(y, x)
}

#[differentiable]
fn is_even_poly(x: f64, n: u32) -> f64 {
    if n == 0 {
        1.0
    } else {
        x * is_odd_poly(x, n - 1)
    }
}

#[differentiable]
fn is_odd_poly(x: f64, n: u32) -> f64 {
    if n == 0 {
        x
    } else {
        x.sin() + is_even_poly(x, n - 1)
    }
}

fn vector(len: std::ops::Range<usize>) -> impl Strategy<Value = Vec<f64>> {
    vec_in(-2.0, 2.0, len)
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn same_module(x in -2.0..2.0f64, y in -2.0..2.0f64) {
        let (gx, gy) = grad!(caller)(x, y);
        let (fx, fy) = fd2(caller, x, y);
        check("caller d/dx", gx, fx, FD)?;
        check("caller d/dy", gy, fy, FD)?;
    }

    #[test]
    fn other_modules(r in 0.2..3.0f64, t in -3.0..3.0f64) {
        let (gr, gt) = grad!(by_path)(r, t);
        let (fr, ft) = fd2(by_path, r, t);
        check("by_path d/dr", gr, fr, FD)?;
        check("by_path d/dt", gt, ft, FD)?;
        // grad! by path and through `use`.
        let (ga, gb) = grad!(geometry::deeper::area)(r, t);
        let (ua, ub) = grad!(area)(r, t);
        prop_assert_eq!((ga, gb), (ua, ub));
        let (fa, fb) = fd2(area, r, t);
        check("area d/da", ga, fa, FD)?;
        check("area d/db", gb, fb, FD)?;
        let (nx, ny) = grad!(geometry::norm2)(r, t);
        let n = r.hypot(t);
        check("norm2 d/dx", nx, r / n, EXACT)?;
        check("norm2 d/dy", ny, t / n, EXACT)?;
    }

    #[test]
    fn tuple_returns(x in -2.0..2.0f64, y in -2.0..2.0f64) {
        prop_assume!((x * x - y).abs() > 0.01);
        let (gx, gy) = grad!(tuple_results)(x, y);
        let (fx, fy) = fd2(tuple_results, x, y);
        check("tuple results d/dx", gx, fx, FD)?;
        check("tuple results d/dy", gy, fy, FD)?;
    }

    #[test]
    fn in_loops_and_branches(x in vector(0..7), t in -1.0..1.0f64) {
        prop_assume!(x.iter().all(|v| v.abs() > 0.01));
        let (gx, gt) = grad!(calls_in_control)(&x, t);
        check_vec("calls in control d/dx", &gx, &fd_vec(|v| calls_in_control(v, t), &x), FD)?;
        check("calls in control d/dt", gt, fd(|s| calls_in_control(&x, s), t), FD)?;
    }

    #[test]
    fn calls_in_conditions_match(x in 0.1..4.0f64, y in 0.2..1.5f64) {
        // Away from the thresholds of both conditions.
        let mut z = x;
        let mut m = (z * y.sin() - 0.5).abs();
        while z * y.sin() > 0.5 {
            z *= 0.5;
            m = m.min((z * y.sin() - 0.5).abs());
        }
        prop_assume!(m > 0.01 && (x * z.sin() - 0.1).abs() > 0.01);
        let (gx, gy) = grad!(calls_in_conditions)(x, y);
        let (fx, fy) = fd2(calls_in_conditions, x, y);
        check("calls in conditions d/dx", gx, fx, FD)?;
        check("calls in conditions d/dy", gy, fy, FD)?;
    }

    #[test]
    fn recursion_around_loops(x in vec_in(-1.0, 1.0, 1..5), d in 0u32..4) {
        let g = grad!(recursive_loop)(&x, d);
        check_vec(&format!("recursion around a loop, depth {d}"), &g, &fd_vec(|v| recursive_loop(v, d), &x), FD)?;
    }

    #[test]
    fn recursion(x in -1.5..1.5f64, n in 0usize..8, depth in 0u32..6, v in vector(0..9)) {
        let g: f64 = grad!(power)(x, n);
        let want = if n == 0 { 0.0 } else { n as f64 * x.powi(n as i32 - 1) };
        check(&format!("recursive power {n} at {x}"), g, want, Tol { rel: 1e-12, abs: 1e-12 })?;
        let g: f64 = grad!(nested_sin)(x, depth);
        check(&format!("nested_sin depth {depth}"), g, fd(|t| nested_sin(t, depth), x), FD)?;
        let g = grad!(tree_sum_squares)(&v);
        check_vec("recursive over halves", &g, &fd_vec(tree_sum_squares, &v), FD)?;
        let g: f64 = grad!(is_even_poly)(x, depth);
        check(&format!("mutual recursion depth {depth}"), g, fd(|t| is_even_poly(t, depth), x), FD)?;
    }

    #[test]
    fn sub_slice_arguments(x in vector(3..9), w in 1usize..4) {
        let g = grad!(sub_slices)(&x);
        check_vec("sub-slices", &g, &fd_vec(sub_slices, &x), FD)?;
        prop_assume!(w <= x.len());
        let g = grad!(windows)(&x, w);
        check_vec(&format!("windows of {w}"), &g, &fd_vec(|v| windows(v, w), &x), FD)?;
    }

    #[test]
    fn buffer_arguments_and_results(x in vector(1..7)) {
        let g = grad!(local_arguments)(&x);
        check_vec("local buffers as arguments", &g, &fd_vec(local_arguments, &x), FD)?;
        let g = grad!(uses_vec_result)(&x);
        let want: Vec<f64> = x.iter().map(|v| 3.0 * v * v).collect();
        check_vec("Vec result of a callee", &g, &want, EXACT)?;
    }

    #[test]
    fn constant_and_inactive_arguments(x in -2.0..2.0f64) {
        let g: f64 = grad!(passes_constants)(x);
        let want = 3.0 * 2.0 - 2.0 * x + 2.0 * x.cos();
        check("constants passed to callees", g, want, EXACT)?;
    }

    #[test]
    fn many_arguments_match(x in away_from(-2.0, 2.0, &[0.0], 0.01), y in -2.0..2.0f64) {
        let (gx, gy) = grad!(many_arguments)(x, y);
        let (fx, fy) = fd2(many_arguments, x, y);
        check("many arguments d/dx", gx, fx, FD)?;
        check("many arguments d/dy", gy, fy, FD)?;
        let g = grad!(eight)(1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, x);
        prop_assert_eq!((g.0, g.1, g.2, g.3, g.4, g.5, g.6), (2.0 + x.sin(), 1.0, 4.0, 3.0, 6.0, 5.0, x));
        check("eight d/dh", g.7, 7.0 + x.cos(), EXACT)?;
    }

    #[test]
    fn restricted_callees(x in -2.0..2.0f64, y in -2.0..2.0f64) {
        let (gx, gy) = grad!(calls_restricted)(x, y);
        check("wrt callee d/dx", gx, y * y + 2.0 * x * y, EXACT)?;
        check("wrt callee d/dy", gy, 2.0 * x * y + x * x, EXACT)?;
    }
}

/// The first element squared.
#[differentiable]
fn first_squared(x: &[f64]) -> f64 {
    x[0] * x[0]
}

/// A local buffer passed to a callee and overwritten afterwards: the callee's derivative
/// must see the values it was called with.
#[differentiable]
fn buffer_overwritten_after_call(x: &[f64]) -> f64 {
    let mut v = x.to_vec();
    let p = first_squared(&v);
    v[0] = v[0] * 3.0;
    p + v[0]
}

/// The same through a sub-slice.
#[differentiable]
fn sub_slice_overwritten_after_call(x: &[f64]) -> f64 {
    let mut v = x.to_vec();
    let p = first_squared(&v[0..1]);
    v[0] = v[0] * 3.0;
    p + v[0]
}

/// The same in a loop.
#[differentiable]
fn buffer_overwritten_in_loop(x: &[f64]) -> f64 {
    let mut v = x.to_vec();
    let mut s = 0.0;
    for _ in 0..2 {
        s += first_squared(&v);
        v[0] = v[0] * 3.0;
    }
    s
}

/// A buffer that grows after the call.
#[differentiable]
fn buffer_pushed_after_call(x: f64) -> f64 {
    let mut v = Vec::new();
    v.push(x);
    let p = first_squared(&v);
    v.push(1.0);
    p + v[1]
}

#[differentiable]
fn owned_first_squared(x: Vec<f64>) -> f64 {
    x[0] * x[0]
}

/// The buffer passed by value (a clone) is not affected.
#[differentiable]
fn clone_overwritten_after_call(x: &[f64]) -> f64 {
    let mut v = x.to_vec();
    let p = owned_first_squared(v.clone());
    v[0] = v[0] * 3.0;
    p + v[0]
}

/// A callee with a loop, called on a buffer that is updated between calls.
#[differentiable]
fn product(x: &[f64]) -> f64 {
    let mut p = 1.0;
    for &v in x {
        p = p * v;
    }
    p
}

#[differentiable]
fn iterated_products(x: &[f64]) -> f64 {
    let n = x.len();
    let mut v = x.to_vec();
    for _ in 0..3 {
        let p = product(&v);
        for i in 0..n {
            v[i] = v[i] * p.tanh() + 0.5;
        }
    }
    product(&v)
}

#[test]
fn buffer_passed_by_value_then_overwritten() {
    for x0 in [-1.5, 0.5, 2.0] {
        assert_vec_close("clone then overwrite", &grad!(clone_overwritten_after_call)(&[x0]), &[2.0 * x0 + 3.0], EXACT);
    }
}

#[test]
fn buffer_passed_by_reference_then_overwritten() {
    // f = x0^2 + 3 x0: f' = 2 x0 + 3 (got 6 x0 + 3: the callee is differentiated at the
    // overwritten value 3 x0).
    for x0 in [-1.5, 0.5, 2.0] {
        let want = [2.0 * x0 + 3.0];
        assert_vec_close("overwritten after the call", &grad!(buffer_overwritten_after_call)(&[x0]), &want, EXACT);
        assert_vec_close(
            "sub-slice overwritten after the call",
            &grad!(sub_slice_overwritten_after_call)(&[x0]),
            &want,
            EXACT,
        );
        // x0^2 + 9 x0^2: 20 x0 (got 72 x0 at 2.0: 144 instead of 40).
        assert_vec_close("overwritten in a loop", &grad!(buffer_overwritten_in_loop)(&[x0]), &[20.0 * x0], EXACT);
    }
    let x = [0.5, -0.3, 0.8, 1.2];
    assert_vec_close("iterated products", &grad!(iterated_products)(&x), &fd_vec(iterated_products, &x), FD);
}

#[test]
fn buffer_passed_by_reference_then_pushed() {
    assert_close("pushed after the call", grad!(buffer_pushed_after_call)(2.0), 4.0, EXACT);
}

/// Paths relative to the caller's module, `#[no_grad]` parameters of callees, and
/// buffers returned by callees.
mod module_paths_and_callee_results {
    use super::*;

    mod outer {
        use adjoint::prelude::*;

        #[differentiable]
        pub fn g(x: f64) -> f64 {
            x * x
        }

        pub mod inner {
            use adjoint::prelude::*;

            /// `super::g` is resolved from inside the generated companion module.
            #[differentiable]
            pub fn f(x: f64) -> f64 {
                super::g(x) * 2.0
            }
        }
    }

    #[differentiable]
    fn half_frozen(a: f64, #[no_grad] b: f64) -> f64 {
        a * b * b
    }

    /// The caller adds the `()` gradient of the `#[no_grad]` parameter to a float.
    #[differentiable]
    fn calls_no_grad(x: f64, y: f64) -> f64 {
        half_frozen(x, y)
    }

    /// A `Vec` returned by a callee, indexed.
    #[differentiable]
    fn index_vec_result(x: &[f64]) -> f64 {
        let sq = squares(x);
        let mut s = 0.0;
        for i in 0..sq.len() {
            s += sq[i] * x[i];
        }
        s
    }

    #[test]
    fn super_path() {
        assert_close("super::g", grad!(outer::inner::f)(1.5), 6.0, EXACT);
    }

    #[test]
    fn no_grad_callee() {
        let (gx, gy) = grad!(calls_no_grad)(2.0, 3.0);
        assert_close("d/dx", gx, 9.0, EXACT);
        assert_close("d/dy (no_grad contributes nothing)", gy, 0.0, EXACT);
    }

    #[test]
    fn vec_result_indexed() {
        let x = [0.5, -1.0, 2.0];
        let want: Vec<f64> = x.iter().map(|v| 3.0 * v * v).collect();
        assert_vec_close("indexed Vec result", &grad!(index_vec_result)(&x), &want, EXACT);
    }
}

/// Items in scope named like a caller's parameters (`scale`, `cotangent`): the
/// derivative code reaches callee companions through a glob import, which must not let
/// these items stand in for the parameters.
mod items_named_like_parameters {
    use super::*;

    #[allow(dead_code)]
    fn scale() -> f64 {
        1000.0
    }

    #[allow(dead_code)]
    fn cotangent() -> f64 {
        -1000.0
    }

    #[differentiable]
    fn inner(a: f64) -> f64 {
        a * a
    }

    #[differentiable]
    pub fn outer(x: f64, scale: f64) -> f64 {
        inner(x) * scale
    }

    #[test]
    fn parameters_are_not_shadowed_by_items() {
        let (gx, gs) = grad!(outer)(1.5, 2.0);
        assert_eq!((gx, gs), (2.0 * 1.5 * 2.0, 1.5 * 1.5));
        let (gx, gs) = vjp!(outer)(1.5, 2.0, 3.0);
        assert_eq!((gx, gs), (3.0 * 2.0 * 1.5 * 2.0, 3.0 * 1.5 * 1.5));
    }
}

/// A caller that needs the gradients of some arguments only calls a variant of the
/// callee's derivative that skips the others (`__adjoint_d1_masked`): every mask gives
/// the gradients the full derivative gives.
mod partially_active_arguments {
    use super::*;

    #[differentiable(order = 1)]
    fn g(a: f64, b: f64, c: f64) -> f64 {
        a.sin() * b * b + c.exp() * a
    }

    #[differentiable(order = 1)]
    fn each_argument_alone(x: f64) -> f64 {
        g(x, 2.0, 0.5) + g(1.5, x, 0.25) + g(0.75, 1.25, x)
    }

    #[differentiable(order = 1)]
    fn pairs(x: f64, y: f64) -> f64 {
        g(x, y, 0.5) * g(0.3, x, y) + g(y, 0.7, x)
    }

    fn dg(a: f64, b: f64, c: f64) -> (f64, f64, f64) {
        (a.cos() * b * b + c.exp(), 2.0 * a.sin() * b, c.exp() * a)
    }

    proptest! {
        #![proptest_config(config())]
        #[test]
        fn masked_calls_match_the_full_derivative(x in -2.0..2.0f64, y in -2.0..2.0f64) {
            let want = dg(x, 2.0, 0.5).0 + dg(1.5, x, 0.25).1 + dg(0.75, 1.25, x).2;
            check("one argument", grad!(each_argument_alone)(x), want, EXACT)?;

            let (g1, g2) = (g(x, y, 0.5), g(0.3, x, y));
            let (d1, d2, d3) = (dg(x, y, 0.5), dg(0.3, x, y), dg(y, 0.7, x));
            let want_x = d1.0 * g2 + g1 * d2.1 + d3.2;
            let want_y = d1.1 * g2 + g1 * d2.2 + d3.0;
            let (gx, gy) = grad!(pairs)(x, y);
            check("pairs, x", gx, want_x, EXACT)?;
            check("pairs, y", gy, want_y, EXACT)?;
        }
    }
}

/// Writing into a `Vec` a call returned (`let mut h = dense(…); h[k] = …`), typed or not.
mod writes_into_returned_vecs {
    use super::*;

    #[differentiable(order = 3)]
    fn dense(x: &[f64], a: f64) -> Vec<f64> {
        x.iter().map(|v| (v * a).tanh()).collect()
    }

    #[differentiable(order = 2)]
    fn layer(x: &[f64], a: f64) -> f64 {
        let mut h = dense(x, a);
        h[0] = h[0] * 2.0 + a;
        for k in 1..h.len() {
            h[k] += x[k - 1] * h[k - 1];
        }
        let mut g: Vec<f64> = dense(&h, 0.5);
        g[0] *= a;
        h.iter().map(|v| v * v).sum::<f64>() + g.iter().sum::<f64>()
    }

    #[differentiable]
    fn d_layer(x: &[f64], a: f64) -> f64 {
        grad!(layer)(x, a).1
    }

    proptest! {
        #![proptest_config(config())]

        #[test]
        fn returned_vec_written(x in vec_in(-1.5, 1.5, 1..6), a in -1.0..1.0f64) {
            let (gx, ga) = grad!(layer)(&x, a);
            check_vec("d/dx", &gx, &fd_vec(|v| layer(v, a), &x), FD)?;
            check("d/da", ga, fd(|t| layer(&x, t), a), FD)?;
            let (hx, ha) = grad!(d_layer)(&x, a);
            check_vec("second order d/dx", &hx, &fd_vec(|v| d_layer(v, a), &x), FD2)?;
            check("second order d/da", ha, fd(|t| d_layer(&x, t), a), FD2)?;
        }
    }
}

/// Helpers that write into `&mut` buffers (`fn forces(x: &[f64], out: &mut [f64])`),
/// called with `&mut buf`: with and without a value, with an early `return`, reading
/// the buffer's old contents, two output buffers, and one helper calling another.
mod output_parameters {
    use super::*;

    #[differentiable(order = 3)]
    fn forces(x: &[f64], k: f64, out: &mut [f64]) {
        for i in 0..x.len() {
            out[i] = -k * x[i] * x[i].abs();
        }
    }

    /// Adds into the buffer (its old contents are read) and returns the energy.
    #[allow(clippy::ptr_arg)] // `&mut Vec<f64>`, as users write it, is under test
    #[differentiable(order = 3)]
    fn energy(x: &[f64], k: f64, acc: &mut Vec<f64>) -> f64 {
        let mut e = 0.0;
        for i in 0..x.len() {
            acc[i] += k * x[i] * acc[i];
            e += 0.5 * k * x[i] * x[i];
            if e > 3.0 {
                return e;
            }
        }
        e
    }

    #[differentiable(order = 3)]
    fn split(x: &[f64], lo: &mut [f64], hi: &mut [f64]) -> f64 {
        let mut s = 0.0;
        for i in 0..x.len() {
            lo[i] = x[i].min(0.0) * x[i];
            hi[i] = x[i].max(0.0).sin();
            s += lo[i] + hi[i];
        }
        forces(x, 0.5, hi);
        s
    }

    #[differentiable(order = 2)]
    fn simulate(x: &[f64], k: f64, dt: f64) -> f64 {
        let n = x.len();
        let mut f = vec![0.0; n];
        forces(x, k, &mut f);
        let mut acc = vec![1.0; n];
        let e = energy(x, k, &mut acc);
        let (mut lo, mut hi) = (vec![0.0; n], vec![0.0; n]);
        let s = split(&acc, &mut lo, &mut hi);
        let v: Vec<f64> = x.iter().zip(&f).map(|(a, b)| a + dt * b).collect();
        v.iter().map(|t| t * t).sum::<f64>() + e + s + lo.iter().sum::<f64>() * hi[0]
    }

    #[differentiable]
    fn d_simulate(x: &[f64], k: f64, dt: f64) -> f64 {
        grad!(simulate)(x, k, dt).1
    }

    proptest! {
        #![proptest_config(config())]

        #[test]
        fn output_buffers(x in vec_in(-1.5, 1.5, 1..6), k in 0.2..1.5f64) {
            prop_assume!(x.iter().all(|v| v.abs() > 1e-3));
            let (gx, gk, _) = grad!(simulate)(&x, k, 0.1);
            check_vec("d/dx", &gx, &fd_vec(|v| simulate(v, k, 0.1), &x), FD)?;
            check("d/dk", gk, fd(|t| simulate(&x, t, 0.1), k), FD)?;
            let (hx, hk, _) = grad!(d_simulate)(&x, k, 0.1);
            check_vec("second order d/dx", &hx, &fd_vec(|v| d_simulate(v, k, 0.1), &x), FD2)?;
            check("second order d/dk", hk, fd(|t| d_simulate(&x, t, 0.1), k), FD2)?;
        }
    }

    /// The helpers stay ordinary functions for ordinary callers.
    #[test]
    fn helpers_still_write() {
        let mut out = vec![0.0; 2];
        forces(&[1.0, -2.0], 0.5, &mut out);
        assert_eq!(out, vec![-0.5, 2.0]);
    }
}
