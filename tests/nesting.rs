//! Derivatives of derivatives: second derivatives of many kinds of functions (straight
//! line, branches, loops, calls, slices), mixed partials, Hessian-vector products,
//! third derivatives with `order = 3`, and `value_and_grad!`/`vjp!` inside a
//! differentiable body. Each is compared with central differences of the lower
//! derivative (itself computed by the library) and with analytic formulas.

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

// ------------------------------------------------------------------ scalar second derivatives

#[differentiable]
fn poly(x: f64) -> f64 {
    3.0 * x * x * x * x - 2.0 * x * x * x + x * x - 7.0 * x + 1.0
}

#[differentiable]
fn d_poly(x: f64) -> f64 {
    grad!(poly)(x)
}

#[differentiable]
fn exp_sin(x: f64) -> f64 {
    x.sin().exp()
}

#[differentiable]
fn d_exp_sin(x: f64) -> f64 {
    grad!(exp_sin)(x)
}

/// x^x = exp(x ln x), through `powf` with the same value as base and exponent.
#[differentiable]
fn self_power(x: f64) -> f64 {
    x.powf(x)
}

#[differentiable]
fn d_self_power(x: f64) -> f64 {
    grad!(self_power)(x)
}

#[differentiable]
fn rational(x: f64) -> f64 {
    1.0 / (1.0 + x * x)
}

#[differentiable]
fn d_rational(x: f64) -> f64 {
    grad!(rational)(x)
}

#[differentiable]
fn branchy(x: f64) -> f64 {
    if x > 0.5 {
        x.ln() * x
    } else if x > -0.5 {
        x.sin() * x.cos()
    } else {
        x.exp() * x
    }
}

#[differentiable]
fn d_branchy(x: f64) -> f64 {
    grad!(branchy)(x)
}

#[differentiable]
fn looped(x: f64, n: usize) -> f64 {
    let mut y = x;
    for k in 0..n {
        y = (y * 0.8).sin() + x * k as f64 * 0.1;
    }
    y * y
}

#[differentiable]
fn d_looped(x: f64, n: usize) -> f64 {
    grad!(looped)(x, n)
}

#[differentiable]
fn while_loop(x: f64) -> f64 {
    let mut y = x;
    let mut s = 0.0;
    while y > 0.3 {
        s += y * y;
        y = y * 0.6;
    }
    s + y.exp()
}

fn while_loop_margin(x: f64) -> f64 {
    let mut y = x;
    let mut m = (y - 0.3).abs();
    while y > 0.3 {
        y *= 0.6;
        m = m.min((y - 0.3).abs());
    }
    m
}

#[differentiable]
fn d_while_loop(x: f64) -> f64 {
    grad!(while_loop)(x)
}

#[differentiable]
fn inner(a: f64, b: f64) -> f64 {
    (a * b).tanh() + a * a
}

#[differentiable]
fn calls_inner(x: f64) -> f64 {
    inner(x, x.cos()) * inner(2.0, x)
}

#[differentiable]
fn d_calls_inner(x: f64) -> f64 {
    grad!(calls_inner)(x)
}

#[differentiable]
fn single(x: f32) -> f32 {
    x.sin() * x * x
}

#[differentiable]
fn d_single(x: f32) -> f32 {
    grad!(single)(x)
}

// ------------------------------------------------------------------ mixed partials

#[differentiable]
fn two(x: f64, y: f64) -> f64 {
    (x * y).sin() + x * x * y.exp() + (x - y).powi(3)
}

#[differentiable]
fn two_x(x: f64, y: f64) -> f64 {
    let (gx, _gy) = grad!(two)(x, y);
    gx
}

#[differentiable]
fn two_y(x: f64, y: f64) -> f64 {
    let (_gx, gy) = grad!(two)(x, y);
    gy
}

// ------------------------------------------------------------------ vectors: Hessian-vector products

#[differentiable]
fn energy(x: &[f64]) -> f64 {
    let mut s = 0.0;
    for i in 0..x.len() {
        s += x[i].powi(4) * 0.25;
        if i + 1 < x.len() {
            let d = x[i + 1] - x[i] * x[i];
            s += d * d;
        }
    }
    s
}

/// The gradient as a differentiable function: its `vjp!` is a Hessian-vector product.
#[differentiable]
fn grad_energy(x: &[f64]) -> Vec<f64> {
    grad!(energy)(x)
}

#[differentiable]
fn dot(a: &[f64], b: &[f64]) -> f64 {
    let mut s = 0.0;
    for i in 0..a.len() {
        s += a[i] * b[i];
    }
    s
}

/// ∇f(x)·v, whose gradient in x is H v.
#[differentiable]
fn directional(x: &[f64], #[no_grad] v: &[f64]) -> f64 {
    let g = grad!(energy)(x);
    dot(&g, v)
}

struct HvpEntry {
    name: &'static str,
    f: fn(&[f64]) -> f64,
    grad: fn(&[f64]) -> Vec<f64>,
    value_and_grad: fn(&[f64]) -> (f64, Vec<f64>),
    hvp: fn(&[f64], Vec<f64>) -> Vec<f64>,
}

/// Hessian-vector products of functions of a slice: `f` and its gradient `g` as a
/// differentiable function, whose `vjp!` is `H v`.
macro_rules! hvp_functions {
    ($($name:ident($x:ident) $body:block)*) => {
        $(
            mod $name {
                use super::*;

                #[differentiable]
                pub fn f($x: &[f64]) -> f64 $body

                #[differentiable]
                pub fn g($x: &[f64]) -> Vec<f64> {
                    grad!(f)($x)
                }
            }
        )*

        /// Every function of [`hvp_functions!`]: name, f, grad f, value_and_grad f, H v.
        fn hvp_table() -> Vec<HvpEntry> {
            vec![$(HvpEntry {
                name: stringify!($name),
                f: $name::f,
                grad: grad!($name::f),
                value_and_grad: value_and_grad!($name::f),
                hvp: vjp!($name::g),
            }),*]
        }
    };
}

hvp_functions! {
    product(x) {
        let mut p = 1.0;
        for &v in x {
            p = p * v;
        }
        p
    }
    horner(x) {
        let mut acc = 0.0;
        for i in (0..x.len()).rev() {
            acc = acc * x[0] + x[i] * x[i];
        }
        acc
    }
    break_continue(x) {
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
    while_prefix(x) {
        let mut i = 0;
        let mut s = 0.0;
        while i < x.len() && x[i] > -1.0 {
            s = s * x[i] + (x[i] + 1.0).sqrt();
            i += 1;
        }
        s
    }
    early_return(x) {
        let mut s = 0.0;
        for i in 0..x.len() {
            s += x[i] * x[i] * s + x[i];
            if x[i] > 1.2 {
                return s * x[i];
            }
        }
        s * s
    }
    overwrite(x) {
        let n = x.len();
        let mut v = x.to_vec();
        for _ in 0..3 {
            for i in 0..n {
                v[i] = v[i] * v[i] * 0.5 + v[i].sin();
            }
        }
        let mut s = 0.0;
        for i in 0..n {
            s += v[i] * v[(i + 1) % n];
        }
        s
    }
    smooth(x) {
        let n = x.len();
        let mut v = x.to_vec();
        for _ in 0..2 {
            for i in 1..n - 1 {
                v[i] = 0.5 * v[i] + 0.25 * (v[i - 1] * v[i - 1] + v[i + 1]);
            }
        }
        let mut s = 0.0;
        for i in 0..n {
            s += v[i] * v[i] * (i as f64 + 1.0);
        }
        s
    }
    prefix(x) {
        let n = x.len();
        let mut p = vec![0.0; n];
        p[0] = x[0];
        for i in 1..n {
            p[i] = p[i - 1] * (1.0 + 0.1 * x[i]) + x[i] * x[i];
        }
        p[n - 1] * p[0]
    }
    pushes(x) {
        let mut w = Vec::with_capacity(x.len());
        let mut prev = 1.0;
        for &v in x {
            if v > 0.0 {
                w.push(prev * v + 0.5);
                prev = w[w.len() - 1];
            } else {
                prev = prev * v.exp();
            }
        }
        let mut s = prev;
        for &v in &w {
            s += v * v;
        }
        s
    }
    folds(x) {
        let s: f64 = x.iter().sum();
        let p: f64 = x.iter().product();
        s * s + p
    }
    permuted(x) {
        let n = x.len();
        let mut v = x.to_vec();
        let t = v[0];
        v[0] = v[n - 1] * v[0];
        v[n - 1] = t;
        let mut s = 0.0;
        for i in 0..n {
            s += v[(i * 3) % n] * v[i] * (i as f64 + 1.0);
        }
        s
    }
    match_in_loop(x) {
        let mut s = 1.0;
        for i in 0..x.len() {
            match i % 3 {
                0 => s = s * x[i],
                1 => {
                    if x[i] > 1.5 {
                        break;
                    }
                    s += x[i] * x[i];
                }
                _ => {
                    s = s.sin() * x[i];
                }
            }
        }
        s
    }
    logsumexp(x) {
        let mut m = x[0];
        for &v in x {
            m = m.max(v);
        }
        let mut z = 0.0;
        for &v in x {
            z += (v - m).exp();
        }
        m + z.ln()
    }
    triangular(x) {
        let n = x.len();
        let mut total = 0.0;
        for i in 0..n {
            let mut p = 1.0;
            for j in 0..=i {
                p = p * (x[j] * 0.5 + 2.0);
            }
            total += p.ln() * x[i];
        }
        total
    }
    sub_slices(x) {
        let n = x.len();
        dot(&x[1..n], &x[..n - 1]) + dot(&x[..1], &x[n - 1..])
    }
    windows(x) {
        let mut s = 0.0;
        for i in 0..x.len() - 1 {
            let w = dot(&x[i..i + 2], &x[i..=i + 1]);
            if x[i] > 0.0 {
                s += (w + 1.0).ln();
            } else {
                s += w * x[i];
            }
        }
        s
    }
    halves(x) {
        let n = x.len();
        if n <= 2 {
            dot(x, x) * x[0]
        } else {
            f(&x[..n / 2]) * 1.5 + f(&x[n / 2..]).sin()
        }
    }
}

// ------------------------------------------------------------------ third derivatives

#[differentiable(order = 3)]
fn cubic_sin(x: f64) -> f64 {
    x.sin() * x * x
}

#[differentiable(order = 2)]
fn d1_cubic_sin(x: f64) -> f64 {
    grad!(cubic_sin)(x)
}

#[differentiable]
fn d2_cubic_sin(x: f64) -> f64 {
    grad!(d1_cubic_sin)(x)
}

#[differentiable(order = 3)]
fn three(x: f64, y: f64) -> f64 {
    x * x * y.sin() + (x * y).exp()
}

#[differentiable(order = 2)]
fn three_x(x: f64, y: f64) -> f64 {
    let (gx, _gy) = grad!(three)(x, y);
    gx
}

#[differentiable]
fn three_xx(x: f64, y: f64) -> f64 {
    let (gxx, _gxy) = grad!(three_x)(x, y);
    gxx
}

/// Third derivatives through a loop, a branch and a buffer.
#[differentiable(order = 3)]
fn loop3(x: f64, n: usize) -> f64 {
    let mut v = vec![0.0; n];
    let mut p = 1.0;
    for i in 0..n {
        if x > 0.0 {
            p = p * x + 0.5;
        } else {
            p = p * x.exp();
        }
        v[i] = p * p;
    }
    let mut s = 0.0;
    for i in 0..n {
        s += v[i];
    }
    s
}

#[differentiable(order = 2)]
fn d1_loop3(x: f64, n: usize) -> f64 {
    grad!(loop3)(x, n)
}

#[differentiable]
fn d2_loop3(x: f64, n: usize) -> f64 {
    grad!(d1_loop3)(x, n)
}

/// One Newton step for a root of f′: its derivative needs f‴.
#[differentiable(order = 3)]
fn objective(x: f64) -> f64 {
    x.exp() - 3.0 * x * x
}

#[differentiable(order = 2)]
fn d_objective(x: f64) -> f64 {
    grad!(objective)(x)
}

#[differentiable]
fn newton_step(x: f64) -> f64 {
    x - grad!(objective)(x) / grad!(d_objective)(x)
}

// ------------------------------------------------------------------ value_and_grad! and vjp! inside bodies

#[differentiable]
fn inner1(a: f64) -> f64 {
    a.sin() * a * a
}

/// Derivatives taken inside a loop and a branch.
#[differentiable]
fn grads_in_loop(x: &[f64]) -> f64 {
    let mut s = 0.0;
    for i in 0..x.len() {
        s += grad!(inner1)(x[i]) * x[i];
        if x[i] > 0.0 {
            let (v, g) = value_and_grad!(inner1)(x[i] * s * 0.1);
            s += v * g;
        }
    }
    s
}

#[differentiable]
fn value_times_slope(x: f64) -> f64 {
    let (v, g) = value_and_grad!(exp_sin)(x);
    v * g
}

#[differentiable]
fn polar(r: f64, t: f64) -> (f64, f64) {
    (r * t.cos(), r * t.sin())
}

#[differentiable]
fn vjp_inside(r: f64, t: f64) -> f64 {
    let (gr, gt) = vjp!(polar)(r, t, (r, 1.0));
    gr * gt
}

#[differentiable]
fn value_and_grad_vector(x: &[f64]) -> f64 {
    let (v, g) = value_and_grad!(energy)(x);
    v + dot(&g, x)
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn second_derivatives(x in -2.0..2.0f64) {
        let gg: f64 = grad!(d_poly)(x);
        check("poly''", gg, 36.0 * x * x - 12.0 * x + 2.0, EXACT2)?;
        check("poly'' fd", gg, fd(d_poly, x), FD2)?;

        let gg: f64 = grad!(d_exp_sin)(x);
        let want = x.sin().exp() * (x.cos() * x.cos() - x.sin());
        check("exp(sin)''", gg, want, EXACT2)?;
        check("exp(sin)'' fd", gg, fd(d_exp_sin, x), FD2)?;

        let gg: f64 = grad!(d_rational)(x);
        let q = 1.0 + x * x;
        check("(1/(1+x^2))''", gg, (6.0 * x * x - 2.0) / (q * q * q), EXACT2)?;

        let gg: f64 = grad!(d_calls_inner)(x);
        check("through calls''", gg, fd(d_calls_inner, x), FD2)?;
    }

    #[test]
    fn second_derivative_self_power(x in 0.2..3.0f64) {
        let gg: f64 = grad!(d_self_power)(x);
        let l = x.ln() + 1.0;
        check("(x^x)''", gg, x.powf(x) * (l * l + 1.0 / x), Tol { rel: 1e-10, abs: 1e-12 })?;
        check("(x^x)'' fd", gg, fd(d_self_power, x), FD2)?;
    }

    #[test]
    fn second_derivative_control_flow(x in away_from(-2.0, 2.5, &[-0.5, 0.5], 0.01), n in 0usize..6, w in 0.0..5.0f64) {
        let gg: f64 = grad!(d_branchy)(x);
        let want = if x > 0.5 {
            1.0 / x
        } else if x > -0.5 {
            -4.0 * x.sin() * x.cos()
        } else {
            x.exp() * (x + 2.0)
        };
        check(&format!("branchy'' at {x}"), gg, want, EXACT2)?;
        check(&format!("branchy'' at {x} fd"), gg, fd(d_branchy, x), FD2)?;

        let gg: f64 = grad!(d_looped)(x, n);
        check(&format!("looped'' at {x}, n = {n}"), gg, fd(|t| d_looped(t, n), x), FD2)?;

        prop_assume!(while_loop_margin(w) > 0.01);
        let gg: f64 = grad!(d_while_loop)(w);
        check(&format!("while'' at {w}"), gg, fd(d_while_loop, w), FD2)?;
    }

    #[test]
    fn second_derivative_f32(x in -2.0..2.0f64) {
        let xs = x as f32;
        let gg: f32 = grad!(d_single)(xs);
        let t = xs as f64;
        let want = -t.sin() * t * t + 4.0 * t * t.cos() + 2.0 * t.sin();
        check(&format!("f32 second derivative at {xs}"), gg as f64, want, Tol { rel: 1e-4, abs: 1e-5 })?;
    }

    #[test]
    fn mixed_partials(x in -1.5..1.5f64, y in -1.5..1.5f64) {
        let (hxx, hxy) = grad!(two_x)(x, y);
        let (hyx, hyy) = grad!(two_y)(x, y);
        let s = (x * y).sin();
        let c = (x * y).cos();
        let d = x - y;
        check("f_xx", hxx, -y * y * s + 2.0 * y.exp() + 6.0 * d, EXACT2)?;
        check("f_xy", hxy, c - x * y * s + 2.0 * x * y.exp() - 6.0 * d, EXACT2)?;
        check("f_yx", hyx, hxy, EXACT2)?;
        check("f_yy", hyy, -x * x * s + x * x * y.exp() + 6.0 * d, EXACT2)?;
        let (fxx, fxy) = fd2(two_x, x, y);
        check("f_xx fd", hxx, fxx, FD2)?;
        check("f_xy fd", hxy, fxy, FD2)?;
    }

    #[test]
    fn hessian_vector_products(x in vec_in(-1.5, 1.5, 1..6), v in vec_in(-1.0, 1.0, 6..7)) {
        let v = &v[..x.len()];
        // vjp of the gradient.
        let hv = vjp!(grad_energy)(&x, v.to_vec());
        // Central differences of the gradient along v.
        let h = 1e-6;
        let xp: Vec<f64> = x.iter().zip(v).map(|(a, b)| a + h * b).collect();
        let xm: Vec<f64> = x.iter().zip(v).map(|(a, b)| a - h * b).collect();
        let (gp, gm) = (grad!(energy)(&xp), grad!(energy)(&xm));
        let want: Vec<f64> = gp.iter().zip(&gm).map(|(a, b)| (a - b) / (2.0 * h)).collect();
        check_vec("H v by vjp of the gradient", &hv, &want, FD2)?;
        // The gradient of ∇f·v.
        let hv2: Vec<f64> = grad!(directional)(&x, v);
        check_vec("H v by the gradient of a directional derivative", &hv2, &hv, Tol { rel: 1e-10, abs: 1e-10 })?;
        // The first derivative itself.
        check_vec("grad energy", &grad_energy(&x), &fd_vec(energy, &x), FD)?;
    }

    #[test]
    fn hessian_vector_products_of_loops_and_buffers(x in vec_in(-1.4, 1.4, 2..7), v in vec_in(-1.0, 1.0, 7..8)) {
        // Away from the kinks of the functions above (breaks, branches, max).
        prop_assume!(x.iter().all(|e| (e + 1.0).abs() > 0.02 && (e - 1.2).abs() > 0.02 && e.abs() > 0.02));
        prop_assume!(x.iter().enumerate().all(|(i, a)| x.iter().skip(i + 1).all(|b| (a - b).abs() > 0.02)));
        let v = &v[..x.len()];
        let h = 1e-6;
        let xp: Vec<f64> = x.iter().zip(v).map(|(a, b)| a + h * b).collect();
        let xm: Vec<f64> = x.iter().zip(v).map(|(a, b)| a - h * b).collect();
        for e in hvp_table() {
            let name = e.name;
            let g = (e.grad)(&x);
            check_vec(&format!("{name}: gradient"), &g, &fd_vec(e.f, &x), FD)?;
            let (value, g2) = (e.value_and_grad)(&x);
            check(&format!("{name}: value"), value, (e.f)(&x), EXACT)?;
            check_vec(&format!("{name}: value_and_grad gradient"), &g2, &g, EXACT)?;
            let (gp, gm) = ((e.grad)(&xp), (e.grad)(&xm));
            let want: Vec<f64> = gp.iter().zip(&gm).map(|(a, b)| (a - b) / (2.0 * h)).collect();
            check_vec(&format!("{name}: H v at {x:?}, v = {v:?}"), &(e.hvp)(&x, v.to_vec()), &want, FD2)?;
        }
    }

    #[test]
    fn third_derivatives(x in -2.0..2.0f64, y in -1.0..1.0f64) {
        let g3: f64 = grad!(d2_cubic_sin)(x);
        let want = -x.cos() * x * x - 6.0 * x * x.sin() + 6.0 * x.cos();
        check(&format!("(x^2 sin x)''' at {x}"), g3, want, Tol { rel: 1e-9, abs: 1e-10 })?;
        check(&format!("(x^2 sin x)''' at {x} fd"), g3, fd(d2_cubic_sin, x), FD2)?;
        let g2: f64 = grad!(d1_cubic_sin)(x);
        check(&format!("(x^2 sin x)'' at {x}"), g2, -x.sin() * x * x + 4.0 * x * x.cos() + 2.0 * x.sin(), EXACT2)?;

        let (fxxx, fxxy) = grad!(three_xx)(x, y);
        let e = (x * y).exp();
        check("f_xxx", fxxx, y * y * y * e, Tol { rel: 1e-9, abs: 1e-10 })?;
        check("f_xxy", fxxy, 2.0 * y.cos() + (2.0 * y + x * y * y) * e, Tol { rel: 1e-9, abs: 1e-10 })?;
        let (dx, dy) = fd2(three_xx, x, y);
        check("f_xxx fd", fxxx, dx, FD2)?;
        check("f_xxy fd", fxxy, dy, FD2)?;
    }

    #[test]
    fn third_derivative_through_control_flow(x in away_from(-1.5, 1.5, &[0.0], 0.01), n in 0usize..5) {
        let g3: f64 = grad!(d2_loop3)(x, n);
        check(&format!("loop''' at {x}, n = {n}"), g3, fd(|t| d2_loop3(t, n), x), FD2)?;
        let g2: f64 = grad!(d1_loop3)(x, n);
        check(&format!("loop'' at {x}, n = {n}"), g2, fd(|t| d1_loop3(t, n), x), FD2)?;
        let g1: f64 = grad!(loop3)(x, n);
        check(&format!("loop' at {x}, n = {n}"), g1, fd(|t| loop3(t, n), x), FD)?;
    }

    #[test]
    fn newton_step_derivative(x in -1.0..1.0f64) {
        // f = e^x - 3x^2: f' = e^x - 6x, f'' = e^x - 6, f''' = e^x.
        let (f1, f2, f3) = (x.exp() - 6.0 * x, x.exp() - 6.0, x.exp());
        let g: f64 = grad!(newton_step)(x);
        check(&format!("d(newton step)/dx at {x}"), g, f1 * f3 / (f2 * f2), Tol { rel: 1e-9, abs: 1e-10 })?;
        check(&format!("d(newton step)/dx at {x} fd"), g, fd(newton_step, x), FD2)?;
    }

    #[test]
    fn derivative_macros_inside_bodies(x in -2.0..2.0f64, r in 0.5..2.0f64, t in -3.0..3.0f64, v in vec_in(-1.0, 1.0, 0..5)) {
        let g: f64 = grad!(value_times_slope)(x);
        // (e^{sin x})^2 cos x
        let e = x.sin().exp();
        let want = 2.0 * e * e * x.cos() * x.cos() - e * e * x.sin();
        check("value_and_grad! inside", g, want, EXACT2)?;
        check("value_and_grad! inside fd", g, fd(value_times_slope, x), FD2)?;

        let (gr, gt) = grad!(vjp_inside)(r, t);
        let (fr, ft) = fd2(vjp_inside, r, t);
        check("vjp! inside d/dr", gr, fr, FD2)?;
        check("vjp! inside d/dt", gt, ft, FD2)?;

        prop_assume!(v.iter().all(|e| e.abs() > 0.01));
        let g = grad!(grads_in_loop)(&v);
        check_vec("derivatives inside a loop", &g, &fd_vec(grads_in_loop, &v), FD2)?;

        let g = grad!(value_and_grad_vector)(&v);
        check_vec("value_and_grad! of a slice inside", &g, &fd_vec(value_and_grad_vector, &v), FD2)?;
    }
}
