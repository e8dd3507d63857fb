//! Buffers: `vec![0.0; n]`, `Vec::with_capacity` + `push`, `[0.0; N]`, array and `vec!`
//! literals, indexed writes (`v[i] = …`, `+=`, `-=`, `*=`, `/=`), overwrites of values
//! the reverse sweep still needs, `x.to_vec()`, `.clone()`, `x.iter().sum()` and
//! `.product()`, `Vec` and array arguments, and buffers as outputs (through `vjp!`).

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

#[differentiable]
fn zeros_then_fill(x: &[f64]) -> f64 {
    let n = x.len();
    let mut v = vec![0.0; n];
    for i in 0..n {
        v[i] = x[i] * x[i];
    }
    let mut s = 0.0;
    for i in 0..n {
        s += v[i] * x[i];
    }
    s
}

/// In-place updates with every compound operator.
#[differentiable]
fn compound_writes(x: &[f64]) -> f64 {
    let n = x.len();
    let mut v = vec![1.0; n];
    for i in 0..n {
        v[i] += x[i];
        v[i] *= x[i];
        v[i] -= 0.5 * x[i];
        v[i] /= 1.0 + x[i] * x[i];
        v[i] += v[i] * v[i];
    }
    let mut s = 0.0;
    for i in 0..n {
        s += v[i];
    }
    s
}

/// Each element is overwritten with a function of its old value, several times: the
/// reverse sweep needs every old value.
#[differentiable]
fn overwrite_needed(x: &[f64]) -> f64 {
    let n = x.len();
    let mut v = x.to_vec();
    for _ in 0..3 {
        for i in 0..n {
            v[i] = v[i] * v[i] * 0.5 + v[i].sin();
        }
    }
    let mut s = 0.0;
    for i in 0..n {
        s += v[i];
    }
    s
}

/// Smoothing in place (Gauss-Seidel style): each write reads a neighbour written in
/// the same sweep.
#[differentiable]
fn smooth_in_place(x: &[f64], sweeps: usize) -> f64 {
    let n = x.len();
    let mut v = x.to_vec();
    for _ in 0..sweeps {
        for i in 1..n - 1 {
            v[i] = 0.5 * v[i] + 0.25 * (v[i - 1] * v[i - 1] + v[i + 1]);
        }
    }
    let mut s = 0.0;
    for i in 0..n {
        s += v[i] * (i as f64 + 1.0);
    }
    s
}

/// Prefix sums read the previous write.
#[differentiable]
fn prefix_products(x: &[f64]) -> f64 {
    let n = x.len();
    let mut p = vec![0.0; n];
    p[0] = x[0];
    for i in 1..n {
        p[i] = p[i - 1] * (1.0 + 0.1 * x[i]) + x[i];
    }
    p[n - 1] + p[0] * p[n / 2]
}

#[differentiable]
fn with_capacity_push(x: &[f64]) -> f64 {
    let n = x.len();
    let mut w = Vec::with_capacity(n);
    for i in 0..n {
        w.push(x[i].exp() * (i as f64 + 1.0));
    }
    let mut s = 0.0;
    for i in 0..w.len() {
        s += w[i] * w[i];
    }
    s
}

/// Pushing into a `Vec::new()` and reading the last element right away.
#[differentiable]
fn push_and_read(x: &[f64]) -> f64 {
    let mut w = Vec::new();
    let mut prev = 1.0;
    for &v in x {
        w.push(prev * v + 0.5);
        prev = w[w.len() - 1];
    }
    let mut s = 0.0;
    for &v in &w {
        s += v;
    }
    s + prev
}

/// A local fixed-size array and an array literal.
#[differentiable]
fn local_arrays(x: f64, y: f64) -> f64 {
    let mut a = [0.0; 4];
    a[0] = x;
    a[1] = x * y;
    a[2] = a[1].sin();
    a[3] = a[0] * a[2];
    let b = [x, y, x * y];
    let mut s = 0.0;
    for i in 0..4 {
        s += a[i] * a[i];
    }
    s + b[0] * b[1] - b[2]
}

/// A `vec!` literal of values.
#[differentiable]
fn vec_literal(x: f64, y: f64) -> f64 {
    let v = vec![x, y, x * y, 1.0];
    let mut s = 0.0;
    for i in 0..v.len() {
        s += v[i] * (i as f64 + 1.0);
    }
    s * v[2]
}

/// A copy is independent of the original.
#[differentiable]
fn copy_then_modify(x: &[f64]) -> f64 {
    let mut c = x.to_vec();
    let d = x.to_vec();
    for i in 0..c.len() {
        c[i] = c[i] * 3.0;
    }
    let mut s = 0.0;
    for i in 0..c.len() {
        s += c[i] * d[i] + x[i];
    }
    s
}

#[differentiable]
fn sums(x: &[f64]) -> f64 {
    let s: f64 = x.iter().sum();
    let t = x.iter().sum::<f64>();
    let mut sq = x.to_vec();
    for i in 0..sq.len() {
        sq[i] = sq[i] * sq[i];
    }
    let q: f64 = sq.iter().sum();
    s * t + q
}

#[differentiable]
fn products(x: &[f64]) -> f64 {
    let p: f64 = x.iter().product();
    p * 2.0
}

/// Index arithmetic and a swap through a temporary.
#[differentiable]
fn permuted(x: &[f64]) -> f64 {
    let n = x.len();
    let mut v = x.to_vec();
    let t = v[0];
    v[0] = v[n - 1];
    v[n - 1] = t;
    let mut s = 0.0;
    for i in 0..n {
        s += v[(i * 3) % n] * (i as f64 + 1.0) + v[i] * v[i];
    }
    s
}

/// A parameter shadowed by a local copy, and a local named like an element temporary.
#[differentiable]
fn shadowed_buffer(x: &[f64]) -> f64 {
    let x = x.to_vec();
    let mut s = 0.0;
    for i in 0..x.len() {
        let x_i = x[i] * 2.0;
        s += x_i * x_i;
    }
    s
}

/// A matrix (flat, row-major) times a vector, then a norm.
#[differentiable]
fn matvec_norm(a: &[f64], x: &[f64]) -> f64 {
    let n = x.len();
    let m = a.len() / n;
    let mut y = vec![0.0; m];
    for i in 0..m {
        for j in 0..n {
            y[i] += a[i * n + j] * x[j];
        }
    }
    let mut s = 0.0;
    for i in 0..m {
        s += y[i] * y[i];
    }
    s.sqrt()
}

/// Softmax into a buffer, then a weighted sum.
#[differentiable]
fn softmax_weighted(x: &[f64], w: &[f64]) -> f64 {
    let n = x.len();
    let mut e = vec![0.0; n];
    let mut z = 0.0;
    for i in 0..n {
        e[i] = x[i].exp();
        z += e[i];
    }
    let mut s = 0.0;
    for i in 0..n {
        e[i] /= z;
        s += e[i] * w[i];
    }
    s
}

/// An owned `Vec` argument, cloned.
#[differentiable]
fn owned_vec(x: Vec<f64>) -> f64 {
    let y = x.clone();
    let mut s = 0.0;
    for i in 0..y.len() {
        s += y[i] * x[i].cos();
    }
    if x.is_empty() {
        0.0
    } else {
        s
    }
}

/// An array argument: the gradient is an array.
#[differentiable]
fn array_argument(p: [f64; 3]) -> f64 {
    let q = [p[0] * 2.0, p[1] + p[2], p[2]];
    q[0] * q[1] - q[2] * p[0].sin()
}

/// A buffer as the output.
#[differentiable]
fn squares(x: &[f64]) -> Vec<f64> {
    let mut out = vec![0.0; x.len()];
    for i in 0..x.len() {
        out[i] = x[i] * x[i] + x[0];
    }
    out
}

/// An array as the output.
#[differentiable]
fn rotate(p: [f64; 2], t: f64) -> [f64; 2] {
    [p[0] * t.cos() - p[1] * t.sin(), p[0] * t.sin() + p[1] * t.cos()]
}

/// Writes and pushes inside branches.
#[differentiable]
fn conditional_writes(x: &[f64]) -> f64 {
    let n = x.len();
    let mut v = vec![0.5; n];
    let mut w = Vec::new();
    for i in 0..n {
        if x[i] > 0.0 {
            v[i] = x[i] * x[i];
            w.push(v[i] * x[i]);
        } else {
            v[i] *= x[i].exp();
        }
    }
    let mut s = 0.0;
    for i in 0..n {
        s += v[i];
    }
    for i in 0..w.len() {
        s += w[i] * (i as f64 + 1.0);
    }
    s
}

/// Buffers whose elements are copies of an active scalar. (`vec![x; n]` with an active
/// `x` is rejected with a located error; the supported form fills with a constant.)
#[differentiable]
fn repeated_scalar(x: f64, n: usize) -> f64 {
    let mut v = vec![0.0; n];
    let mut a = [0.0; 3];
    for i in 0..3 {
        a[i] = x * 2.0;
    }
    for i in 0..n {
        v[i] = x;
    }
    for i in 0..n {
        v[i] = v[i] * (i as f64 + 1.0);
    }
    let mut s = a[0] * a[1] * a[2];
    for i in 0..n {
        s += v[i] * v[i];
    }
    s
}

/// Gather and scatter through an integer index buffer.
#[differentiable]
fn gather_scatter(x: &[f64], idx: &[usize]) -> f64 {
    let mut acc = vec![0.0; x.len()];
    for k in 0..idx.len() {
        let j = idx[k];
        acc[j] += x[j] * x[(j + 1) % x.len()];
    }
    let mut s = 0.0;
    for i in 0..acc.len() {
        s += acc[i] * acc[i];
    }
    s
}

/// An index computed from the data.
#[differentiable]
fn data_index(x: &[f64], y: f64) -> f64 {
    let j = (y * 3.0) as usize % x.len();
    x[j] * y + x[(j + 1) % x.len()] * y * y
}

/// Scatter-multiply through an index buffer: each write reads the old value.
#[differentiable]
fn scatter_mul(x: &[f64], idx: &[usize]) -> f64 {
    let mut v = vec![1.0; x.len()];
    for i in 0..idx.len() {
        v[idx[i]] *= x[i % x.len()] + 0.5;
    }
    let mut s = 0.0;
    for i in 0..v.len() {
        s += v[i];
    }
    s
}

/// A shift register: element copies overwrite values still needed.
#[differentiable]
fn shift_register(x: &[f64], z: f64) -> f64 {
    let n = x.len();
    let mut v = x.to_vec();
    for _ in 0..3 {
        for i in (1..n).rev() {
            v[i] = v[i - 1];
        }
        v[0] = z * v[n - 1] * v[0];
    }
    let mut s = 0.0;
    for i in 0..n {
        s += v[i] * (i as f64 + 1.0);
    }
    s
}

/// `.iter().sum()` of a buffer that changes in the loop.
#[differentiable]
fn sum_in_loop(x: &[f64]) -> f64 {
    let mut v = x.to_vec();
    let mut t = 0.0;
    for i in 0..v.len() {
        v[i] = v[i] * v[i];
        t += v.iter().sum::<f64>() * x[i];
    }
    t
}

/// `f32` buffers with pushes in a reversed loop.
#[differentiable]
fn f32_push(x: &[f32]) -> f32 {
    let mut w = Vec::new();
    for i in (0..x.len()).rev() {
        w.push(x[i] * x[i]);
    }
    let mut s = 0.0;
    for i in 0..w.len() {
        s += w[i] * (i as f32 + 1.0);
    }
    s
}

fn vector(len: std::ops::Range<usize>) -> impl Strategy<Value = Vec<f64>> {
    vec_in(-2.0, 2.0, len)
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn fill_and_compound(x in vector(0..8)) {
        let g = grad!(zeros_then_fill)(&x);
        check_vec("vec![0.0; n] filled", &g, &fd_vec(zeros_then_fill, &x), FD)?;
        let want: Vec<f64> = x.iter().map(|v| 3.0 * v * v).collect();
        check_vec("vec![0.0; n] filled analytic", &g, &want, EXACT)?;
        let g = grad!(compound_writes)(&x);
        check_vec("v[i] op= ...", &g, &fd_vec(compound_writes, &x), FD)?;
    }

    #[test]
    fn overwrites(x in vec_in(-1.0, 1.0, 0..8), sweeps in 0usize..4) {
        check_vec("overwrite needed", &grad!(overwrite_needed)(&x), &fd_vec(overwrite_needed, &x), FD)?;
        prop_assume!(x.len() >= 2);
        check_vec(&format!("smooth in place ({sweeps} sweeps)"), &grad!(smooth_in_place)(&x, sweeps),
            &fd_vec(|v| smooth_in_place(v, sweeps), &x), FD)?;
    }

    #[test]
    fn prefix(x in vector(1..8)) {
        check_vec("prefix products", &grad!(prefix_products)(&x), &fd_vec(prefix_products, &x), FD)?;
    }

    #[test]
    fn pushes(x in vec_in(-1.0, 1.0, 0..8)) {
        let g = grad!(with_capacity_push)(&x);
        check_vec("with_capacity + push", &g, &fd_vec(with_capacity_push, &x), FD)?;
        let want: Vec<f64> = x.iter().enumerate().map(|(i, v)| 2.0 * (v.exp() * (i as f64 + 1.0)).powi(2)).collect();
        check_vec("with_capacity + push analytic", &g, &want, EXACT)?;
        check_vec("push and read back", &grad!(push_and_read)(&x), &fd_vec(push_and_read, &x), FD)?;
    }

    #[test]
    fn arrays_and_literals(x in -2.0..2.0f64, y in -2.0..2.0f64) {
        let (gx, gy) = grad!(local_arrays)(x, y);
        let (fx, fy) = fd2(local_arrays, x, y);
        check("[0.0; 4] and [a, b, c] d/dx", gx, fx, FD)?;
        check("[0.0; 4] and [a, b, c] d/dy", gy, fy, FD)?;
        let (gx, gy) = grad!(vec_literal)(x, y);
        let (fx, fy) = fd2(vec_literal, x, y);
        check("vec![a, b, c] d/dx", gx, fx, FD)?;
        check("vec![a, b, c] d/dy", gy, fy, FD)?;
    }

    #[test]
    fn copies_and_folds(x in vector(0..8)) {
        let g = grad!(copy_then_modify)(&x);
        let want: Vec<f64> = x.iter().map(|v| 6.0 * v + 1.0).collect();
        check_vec("to_vec copies", &g, &want, EXACT)?;
        let g = grad!(sums)(&x);
        let s: f64 = x.iter().sum();
        let want: Vec<f64> = x.iter().map(|v| 2.0 * s + 2.0 * v).collect();
        check_vec("iter().sum()", &g, &want, Tol { rel: 1e-12, abs: 1e-12 })?;
        check_vec("iter().sum() fd", &g, &fd_vec(sums, &x), FD)?;
        let g = grad!(products)(&x);
        check_vec("iter().product()", &g, &fd_vec(products, &x), FD)?;
    }

    #[test]
    fn more_buffer_patterns(x in vector(1..7), y in 0.05..2.0f64, z in -1.0..1.0f64, raw in proptest::collection::vec(0usize..100, 0..12)) {
        prop_assume!(((y * 3.0) - (y * 3.0).round()).abs() > 0.01);
        let (gx, gy) = grad!(data_index)(&x, y);
        check_vec("data-dependent index d/dx", &gx, &fd_vec(|v| data_index(v, y), &x), FD)?;
        check("data-dependent index d/dy", gy, fd(|t| data_index(&x, t), y), FD)?;

        let idx: Vec<usize> = raw.iter().map(|k| k % x.len()).collect();
        check_vec(&format!("scatter-multiply {idx:?}"), &grad!(scatter_mul)(&x, &idx), &fd_vec(|v| scatter_mul(v, &idx), &x), FD)?;

        let (gx, gz) = grad!(shift_register)(&x, z);
        check_vec("shift register d/dx", &gx, &fd_vec(|v| shift_register(v, z), &x), FD)?;
        check("shift register d/dz", gz, fd(|t| shift_register(&x, t), z), FD)?;

        check_vec("sum of a changing buffer", &grad!(sum_in_loop)(&x), &fd_vec(sum_in_loop, &x), FD)?;

        let xs: Vec<f32> = x.iter().map(|v| *v as f32).collect();
        let g: Vec<f64> = grad!(f32_push)(&xs).iter().map(|v| *v as f64).collect();
        let n = xs.len();
        let want: Vec<f64> = (0..n).map(|i| 2.0 * xs[i] as f64 * (n - i) as f64).collect();
        check_vec("f32 pushes", &g, &want, F32)?;
    }

    #[test]
    fn shadowing(x in vector(0..6)) {
        let g = grad!(shadowed_buffer)(&x);
        let want: Vec<f64> = x.iter().map(|v| 8.0 * v).collect();
        check_vec("shadowed buffer", &g, &want, EXACT)?;
    }

    #[test]
    fn indexing(x in vector(1..8), raw in proptest::collection::vec(0usize..100, 0..10)) {
        check_vec("permuted indices", &grad!(permuted)(&x), &fd_vec(permuted, &x), FD)?;
        let idx: Vec<usize> = raw.iter().map(|k| k % x.len()).collect();
        let g = grad!(gather_scatter)(&x, &idx);
        check_vec(&format!("gather/scatter with {idx:?}"), &g, &fd_vec(|v| gather_scatter(v, &idx), &x), FD)?;
    }

    #[test]
    fn branches_and_repeats(x in vector(0..8), y in -2.0..2.0f64, n in 0usize..6) {
        prop_assume!(x.iter().all(|v| v.abs() > 0.01));
        check_vec("writes and pushes in branches", &grad!(conditional_writes)(&x), &fd_vec(conditional_writes, &x), FD)?;
        let g: f64 = grad!(repeated_scalar)(y, n);
        let sq: f64 = (0..n).map(|i| ((i + 1) * (i + 1)) as f64).sum();
        check(&format!("vec![x; {n}] and [2x; 3]"), g, 24.0 * y * y + 2.0 * y * sq, EXACT)?;
        check(&format!("vec![x; {n}] and [2x; 3] fd"), g, fd(|t| repeated_scalar(t, n), y), FD)?;
    }

    #[test]
    fn matrices(m in 1usize..4, x in vector(1..4), seed in vector(12..13)) {
        let n = x.len();
        let a: Vec<f64> = (0..m * n).map(|k| seed[k % seed.len()] + 0.1 * k as f64).collect();
        let (ga, gx) = grad!(matvec_norm)(&a, &x);
        prop_assume!(matvec_norm(&a, &x) > 0.1);
        check_vec("matvec d/da", &ga, &fd_vec(|v| matvec_norm(v, &x), &a), FD)?;
        check_vec("matvec d/dx", &gx, &fd_vec(|v| matvec_norm(&a, v), &x), FD)?;
    }

    #[test]
    fn softmax(x in vector(1..7), w in vector(7..8)) {
        let w = &w[..x.len()];
        let (gx, gw) = grad!(softmax_weighted)(&x, w);
        check_vec("softmax d/dx", &gx, &fd_vec(|v| softmax_weighted(v, w), &x), FD)?;
        check_vec("softmax d/dw", &gw, &fd_vec(|v| softmax_weighted(&x, v), w), FD)?;
        let z: f64 = x.iter().map(|v| v.exp()).sum();
        let p: Vec<f64> = x.iter().map(|v| v.exp() / z).collect();
        check_vec("softmax d/dw analytic", &gw, &p, EXACT)?;
    }

    #[test]
    fn owned_and_array_arguments(x in vector(0..6), p in (-2.0..2.0f64, -2.0..2.0f64, -2.0..2.0f64)) {
        let g: Vec<f64> = grad!(owned_vec)(x.clone());
        let want: Vec<f64> = x.iter().map(|v| v.cos() - v * v.sin()).collect();
        check_vec("Vec argument", &g, &want, EXACT)?;

        let p = [p.0, p.1, p.2];
        let g: [f64; 3] = grad!(array_argument)(p);
        let want = [2.0 * (p[1] + p[2]) - p[2] * p[0].cos(), 2.0 * p[0], 2.0 * p[0] - p[0].sin()];
        check_vec("array argument", &g, &want, EXACT)?;
        check_vec("array argument fd", &g, &fd_arr(array_argument, p), FD)?;
    }

    #[test]
    fn buffer_outputs(x in vector(1..6), ct in vector(6..7), p in (-2.0..2.0f64, -2.0..2.0f64), t in -3.0..3.0f64) {
        let ct = ct[..x.len()].to_vec();
        let g = vjp!(squares)(&x, ct.clone());
        let dot = |v: &[f64]| squares(v).iter().zip(&ct).map(|(a, b)| a * b).sum::<f64>();
        check_vec("vjp of a Vec output", &g, &fd_vec(dot, &x), FD)?;
        let mut want: Vec<f64> = x.iter().zip(&ct).map(|(v, c)| 2.0 * v * c).collect();
        want[0] += ct.iter().sum::<f64>();
        check_vec("vjp of a Vec output analytic", &g, &want, EXACT)?;

        let p = [p.0, p.1];
        let (gp, gt): ([f64; 2], f64) = vjp!(rotate)(p, t, [1.0, 0.0]);
        check_vec("vjp of an array output d/dp", &gp, &[t.cos(), -t.sin()], EXACT)?;
        check("vjp of an array output d/dt", gt, -p[0] * t.sin() - p[1] * t.cos(), EXACT)?;
        let (gp, gt) = vjp!(rotate)(p, t, [0.0, 1.0]);
        check_vec("vjp of an array output d/dp (2)", &gp, &[t.sin(), t.cos()], EXACT)?;
        check("vjp of an array output d/dt (2)", gt, p[0] * t.cos() - p[1] * t.sin(), EXACT)?;
    }
}

/// A buffer passed to a call in a branch of an early `return` whose value the
/// second-order code does not need: the snapshot of the buffer at the call is still
/// taken (fuzz campaign 0x2001, program 339: the branch was dropped with its snapshot).
mod snapshot_in_a_returned_branch {
    use super::*;

    #[differentiable(order = 3)]
    fn pair_product(u: &[f64]) -> f64 {
        u[0] * u[1]
    }

    #[differentiable(order = 2)]
    fn early_call(a: f64, b: f64) -> f64 {
        let mut buf = vec![a, b, a * b];
        buf[0] *= b;
        if a <= 0.5 {
            return if b <= 1.5 { b * a } else { pair_product(&buf) };
        }
        buf[1] += a;
        buf[0] * a
    }

    #[differentiable]
    fn d_early_call(a: f64, b: f64) -> f64 {
        let (ga, gb) = grad!(early_call)(a, b);
        ga + 0.5 * gb
    }

    proptest! {
        #![proptest_config(config())]

        #[test]
        fn buffer_snapshot_in_a_branch(a in -1.0..2.0f64, b in 0.0..3.0f64) {
            prop_assume!((a - 0.5).abs() > 1e-3 && (b - 1.5).abs() > 1e-3);
            let (ga, gb) = grad!(early_call)(a, b);
            let (fa, fb) = fd2(early_call, a, b);
            check("d/da", ga, fa, FD)?;
            check("d/db", gb, fb, FD)?;
            let (ha, hb) = grad!(d_early_call)(a, b);
            let (fa, fb) = fd2(d_early_call, a, b);
            check("second order d/da", ha, fa, FD2)?;
            check("second order d/db", hb, fb, FD2)?;
        }
    }
}

/// A work list drained with `while let Some(v) = stack.pop()`, pushing new work as it
/// goes; and `stack.pop().unwrap()` in straight-line code.
mod stacks {
    use super::*;

    #[differentiable(order = 2)]
    fn drain(x: &[f64], decay: f64) -> f64 {
        let mut stack = x.to_vec();
        let mut s = 0.0;
        while let Some(v) = stack.pop() {
            s = s * decay + v * v;
            if v > 1.0 {
                stack.push(v * 0.25);
            }
        }
        s
    }

    #[differentiable]
    fn d_drain(x: &[f64], decay: f64) -> f64 {
        grad!(drain)(x, decay).1
    }

    #[differentiable]
    fn last_two(x: &[f64]) -> f64 {
        let mut v: Vec<f64> = x.iter().map(|t| t.exp()).collect();
        let a = v.pop().unwrap();
        let b = v.pop().expect("two elements");
        a * b + v.iter().sum::<f64>() * v.len() as f64
    }

    proptest! {
        #![proptest_config(config())]

        #[test]
        fn pops(x in vec_in(-2.0, 2.0, 2..7), decay in 0.2..0.9f64) {
            prop_assume!(x.iter().all(|v| (v - 1.0).abs() > 1e-3 && (v * 0.25 - 1.0).abs() > 1e-3));
            let (gx, gd) = grad!(drain)(&x, decay);
            check_vec("drain d/dx", &gx, &fd_vec(|v| drain(v, decay), &x), FD)?;
            check("drain d/ddecay", gd, fd(|d| drain(&x, d), decay), FD)?;
            let (hx, hd) = grad!(d_drain)(&x, decay);
            check_vec("second order d/dx", &hx, &fd_vec(|v| d_drain(v, decay), &x), FD2)?;
            check("second order d/ddecay", hd, fd(|d| d_drain(&x, d), decay), FD2)?;
            check_vec("last two", &grad!(last_two)(&x), &fd_vec(last_two, &x), FD)?;
        }
    }
}

/// A sub-slice bound to a name (`let part = &x[a..b];`), read, iterated and passed on.
mod named_sub_slices {
    use super::*;

    #[differentiable(order = 3)]
    fn ends(u: &[f64]) -> f64 {
        u[0] * u[u.len() - 1]
    }

    #[differentiable(order = 2)]
    fn windows_energy(x: &[f64], a: f64) -> f64 {
        let n = x.len();
        let head = &x[..n / 2];
        let tail = &x[n / 2..];
        let mut s = head.iter().map(|v| (v * a).sin()).sum::<f64>();
        for i in 0..tail.len() {
            s += tail[i] * tail[tail.len() - 1 - i] * a;
        }
        let mut local = x.to_vec();
        local[0] *= a;
        let inner = &local[1..];
        s + inner.iter().sum::<f64>() * local[0] + head.len() as f64 + ends(tail) * ends(inner)
    }

    #[differentiable]
    fn d_windows_energy(x: &[f64], a: f64) -> f64 {
        grad!(windows_energy)(x, a).1
    }

    proptest! {
        #![proptest_config(config())]

        #[test]
        fn named_sub_slice(x in vec_in(-1.5, 1.5, 2..7), a in -1.0..1.0f64) {
            let (gx, ga) = grad!(windows_energy)(&x, a);
            check_vec("d/dx", &gx, &fd_vec(|v| windows_energy(v, a), &x), FD)?;
            check("d/da", ga, fd(|t| windows_energy(&x, t), a), FD)?;
            let (hx, ha) = grad!(d_windows_energy)(&x, a);
            check_vec("second order d/dx", &hx, &fd_vec(|v| d_windows_energy(v, a), &x), FD2)?;
            check("second order d/da", ha, fd(|t| d_windows_energy(&x, t), a), FD2)?;
        }
    }
}

// ---- a state `Vec` replaced each step by a call's result (`y = step(&y, …)`)

#[differentiable]
fn oscillator_rhs(y: &[f64], a: f64) -> Vec<f64> {
    vec![y[1], -a * y[0] - 0.1 * y[1]]
}

#[differentiable]
fn euler_step(y: &[f64], a: f64, dt: f64) -> Vec<f64> {
    let f = oscillator_rhs(y, a);
    y.iter().zip(&f).map(|(yi, fi)| yi + dt * fi).collect()
}

#[differentiable]
fn state_after(y0: &[f64], a: f64, steps: usize) -> f64 {
    let mut y = y0.to_vec();
    for _ in 0..steps {
        y = euler_step(&y, a, 0.05);
    }
    y[0] * y[0] + 0.5 * y[1] * y[1]
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn state_replaced_by_a_call(y0 in vec_in(-1.0, 1.0, 2..3), a in 0.5..3.0f64, steps in 0..25usize) {
        let (gy, ga) = grad!(state_after)(&y0, a, steps);
        check_vec("y0", &gy, &fd_vec(|y| state_after(y, a, steps), &y0), FD)?;
        check("a", ga, fd(|a| state_after(&y0, a, steps), a), FD)?;
    }
}

#[differentiable]
fn grown(y: &[f64]) -> Vec<f64> {
    let mut out = y.to_vec();
    out.push(1.0);
    out
}

#[differentiable]
fn state_of_another_length(y0: &[f64]) -> f64 {
    let mut y = y0.to_vec();
    y = grown(&y);
    y[0]
}

/// A buffer keeps its length: assigning it a longer one is a panic naming both.
#[test]
#[should_panic(expected = "a buffer of length 2 is assigned a buffer of length 3")]
fn assigning_a_buffer_of_another_length_panics_with_both_lengths() {
    let _ = grad!(state_of_another_length)(&[1.0, 2.0]);
}
