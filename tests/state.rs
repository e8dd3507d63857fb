//! Loop state kept in buffers, as users write it: double buffering with
//! `std::mem::swap`, a buffer replaced by another of the same length (`u = next;`),
//! scalars swapped, and patterns: `let [a, b] = …` over buffers and over the arrays
//! helpers return, `let (s, c) = θ.sin_cos();`. Checked against central finite differences.

#![allow(clippy::needless_range_loop, clippy::manual_swap)]

mod common;

use adjoint::prelude::*;
use common::*;
use proptest::prelude::*;

const TOL: Tol = Tol { rel: 1e-6, abs: 1e-8 };

/// An explicit diffusion stencil over two buffers exchanged each step.
#[differentiable]
fn diffuse(u0: &[f64], r: f64, steps: usize) -> f64 {
    let n = u0.len();
    let mut u = u0.to_vec();
    let mut next = u0.to_vec();
    for _ in 0..steps {
        for i in 1..n - 1 {
            next[i] = u[i] + r * (u[i - 1] - 2.0 * u[i] + u[i + 1]);
        }
        std::mem::swap(&mut u, &mut next);
    }
    u.iter().zip(&next).map(|(a, b)| a * a + 0.5 * b).sum()
}

/// The same stencil, the new state copied over the old one.
#[differentiable]
fn diffuse_by_copy(u0: &[f64], r: f64, steps: usize) -> f64 {
    let n = u0.len();
    let mut u = u0.to_vec();
    let mut next = u0.to_vec();
    for _ in 0..steps {
        for i in 1..n - 1 {
            next[i] = u[i] + r * (u[i - 1] - 2.0 * u[i] + u[i + 1]);
        }
        u = next.clone();
    }
    u.iter().map(|v| v * v).sum()
}

/// A two-term recurrence with its scalars swapped.
#[differentiable]
fn fibonacci_like(a0: f64, b0: f64, w: f64) -> f64 {
    let mut a = a0;
    let mut b = b0;
    for _ in 0..5 {
        a = a * w + b;
        std::mem::swap(&mut a, &mut b);
    }
    a * b
}

#[differentiable]
fn rotate(p: [f64; 2], t: f64) -> [f64; 2] {
    let (s, c) = t.sin_cos();
    [c * p[0] - s * p[1], s * p[0] + c * p[1]]
}

#[differentiable]
fn destructured(x: &[f64], t: f64) -> f64 {
    let [a, b, ..] = [x[0], x[1], x[2]];
    let [u, v] = rotate([a, b], t);
    let [.., last] = [x[0], x[x.len() - 1]];
    u * v + last * t
}

/// Bubble sort by `swap`, with `continue` and `break`: the reverse sweep routes each
/// adjoint through the recorded exchanges.
#[differentiable]
fn bubble_sorted_weights(x: &[f64]) -> f64 {
    let mut v = x.to_vec();
    let n = v.len();
    for pass in 0..n {
        let mut swapped = false;
        for i in 0..n - 1 - pass {
            if v[i] <= v[i + 1] {
                continue;
            }
            v.swap(i, i + 1);
            swapped = true;
        }
        if !swapped {
            break;
        }
    }
    // The median-ish weighted sum of the sorted values.
    let mut s = 0.0;
    for (k, value) in v.iter().enumerate() {
        if k == n / 2 {
            s += 3.0 * value;
            continue;
        }
        s += (k as f64 + 1.0) * value;
    }
    s
}

fn profile(len: std::ops::Range<usize>) -> impl Strategy<Value = Vec<f64>> {
    prop::collection::vec(-1.0f64..1.0, len)
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn swapped_buffers(u in profile(3..9), r in 0.05f64..0.4, steps in 0usize..5) {
        let (gu, gr) = grad!(diffuse)(&u, r, steps);
        check_vec("d/du", &gu, &fd_vec(|u| diffuse(u, r, steps), &u), TOL)?;
        check("d/dr", gr, fd(|r| diffuse(&u, r, steps), r), TOL)?;
    }

    #[test]
    fn copied_buffers(u in profile(3..9), r in 0.05f64..0.4, steps in 0usize..5) {
        let (gu, gr) = grad!(diffuse_by_copy)(&u, r, steps);
        check_vec("d/du", &gu, &fd_vec(|u| diffuse_by_copy(u, r, steps), &u), TOL)?;
        check("d/dr", gr, fd(|r| diffuse_by_copy(&u, r, steps), r), TOL)?;
    }

    #[test]
    fn swapped_scalars(a in -1.0f64..1.0, b in -1.0f64..1.0, w in 0.3f64..1.2) {
        let (ga, gb, gw) = grad!(fibonacci_like)(a, b, w);
        let (fa, fb, fw) = fd3(fibonacci_like, a, b, w);
        check("d/da", ga, fa, TOL)?;
        check("d/db", gb, fb, TOL)?;
        check("d/dw", gw, fw, TOL)?;
    }

    #[test]
    fn sorting_by_swaps(x in prop::collection::hash_set(-300i32..300, 1..8)) {
        // Distinct values, so the order is the same at x ± h.
        let x: Vec<f64> = x.into_iter().map(|v| v as f64 / 100.0).collect();
        check_vec("grad", &grad!(bubble_sorted_weights)(&x), &fd_vec(bubble_sorted_weights, &x), TOL)?;
    }

    #[test]
    fn array_patterns(x in profile(3..7), t in -1.5f64..1.5) {
        let (gx, gt) = grad!(destructured)(&x, t);
        check_vec("d/dx", &gx, &fd_vec(|x| destructured(x, t), &x), TOL)?;
        check("d/dt", gt, fd(|t| destructured(&x, t), t), TOL)?;
    }
}

/// `std::mem::swap` exchanges the buffers as a whole, whatever their lengths: so do
/// their adjoints.
#[differentiable]
fn mismatched(x: &[f64], steps: usize) -> f64 {
    let mut u = x.to_vec();
    let mut shorter = Vec::new();
    shorter.push(x[0] * x[1]);
    for k in 0..steps {
        std::mem::swap(&mut u, &mut shorter);
        u.push(u[0].sin() * k as f64);
    }
    u.iter().map(|v| v * v).sum::<f64>() + shorter[0]
}

#[test]
fn swapping_buffers_of_different_lengths() {
    let x = [0.7, -1.3, 0.4];
    for steps in 0..4 {
        let g = grad!(mismatched)(&x, steps);
        assert_vec_close("swap of different lengths", &g, &fd_vec(|v| mismatched(v, steps), &x), TOL);
    }
}

/// Slice patterns with a named rest (`let [a, rest @ .., last] = v;`) and `let … else`
/// on a slice that may be too short.
mod slice_patterns {
    use super::*;

    #[differentiable(order = 2)]
    fn head_and_tail(x: &[f64], t: f64) -> f64 {
        let [first, tail @ ..] = x else {
            return t * t;
        };
        let v = [t, 2.0 * t, *first, 4.0];
        let [a, middle @ .., last] = v;
        a * middle[0] * middle[1] + last * t + first * tail.iter().map(|u| u.sin()).sum::<f64>()
    }

    #[differentiable]
    fn d_head_and_tail(x: &[f64], t: f64) -> f64 {
        grad!(head_and_tail)(x, t).1
    }

    proptest! {
        #![proptest_config(config())]

        #[test]
        fn rest_patterns(x in vec_in(-1.5, 1.5, 0..5), t in -1.0..1.0f64) {
            let (gx, gt) = grad!(head_and_tail)(&x, t);
            check_vec("d/dx", &gx, &fd_vec(|v| head_and_tail(v, t), &x), FD)?;
            check("d/dt", gt, fd(|s| head_and_tail(&x, s), t), FD)?;
            let (hx, ht) = grad!(d_head_and_tail)(&x, t);
            check_vec("second order d/dx", &hx, &fd_vec(|v| d_head_and_tail(v, t), &x), FD2)?;
            check("second order d/dt", ht, fd(|s| d_head_and_tail(&x, s), t), FD2)?;
        }
    }
}
