//! Local closures as users write them: bound by `let` and called, capturing active
//! and inactive locals, returning buffers, calling each other, mutating a captured
//! accumulator, and given to iterator adaptors; each inlined where it is called
//! (`macros/src/desugar.rs`). Checked against central finite differences over random
//! inputs, with a second derivative by nesting `grad!`.

#![allow(clippy::needless_range_loop)]

mod common;

use adjoint::prelude::*;
use common::*;
use proptest::prelude::*;

const TOL: Tol = Tol { rel: 1e-6, abs: 1e-8 };

#[differentiable]
fn scaled_squares(x: &[f64], w: f64) -> f64 {
    let sq = |t: f64| t * t * w;
    let mut s = sq(w);
    for i in 0..x.len() {
        s += sq(x[i]);
    }
    s
}

#[differentiable(wrt(raw))]
fn normalised_score(raw: &[f64], weights: &[f64]) -> f64 {
    let normalise = |v: &[f64]| -> Vec<f64> {
        let total: f64 = v.iter().sum();
        v.iter().map(|x| x / total).collect()
    };
    let w = normalise(raw);
    w.iter().zip(weights).map(|(a, b)| a * b).sum()
}

#[differentiable]
fn composed(x: f64, y: f64) -> f64 {
    let f = |t: f64| t.sin() * y;
    let g = |t: f64| f(t) * f(2.0 * t) + t;
    g(x) + g(y)
}

#[differentiable(wrt(rate, capacity))]
fn logistic_fit(rate: f64, capacity: f64, p0: f64, times: &[f64], obs: &[f64]) -> f64 {
    let logistic = |t: f64| capacity / (1.0 + (capacity - p0) / p0 * (-rate * t).exp());
    times.iter().zip(obs).map(|(&t, y)| (logistic(t) - y).powi(2)).sum()
}

#[differentiable]
fn accumulated(x: &[f64], w: f64) -> f64 {
    let mut total = 0.0;
    let mut add = |v: f64| total += (v * w).tanh();
    for &v in x {
        add(v);
    }
    add(w);
    total
}

#[differentiable]
fn pairs(a: f64, b: f64) -> f64 {
    let area = |(w, h): (f64, f64)| w * h;
    let dist = |p: f64, q: f64| p.hypot(q);
    area((a, b)) + dist(a, 2.0 * b) * area((b, b))
}

#[differentiable(order = 3, wrt(x))]
fn smooth_energy(x: &[f64], k: f64) -> f64 {
    let spring = |d: f64| 0.5 * k * d * d;
    x.windows(2).map(|w| spring(w[1] - w[0])).sum()
}

/// The squared forces of a closure-based energy: a second derivative through the
/// closure and the chain.
#[differentiable]
fn net_force(x: &[f64], k: f64) -> f64 {
    let g = grad!(smooth_energy)(x, k);
    g.iter().map(|f| f * f).sum()
}

/// A closure keeps reading the bindings it captured when a later `let` reuses their
/// names: a scalar (`w`), a buffer (`x`), a name shadowed inside the loop that calls
/// the closure, and one bound by a later loop's pattern.
#[differentiable]
fn shadowed_captures(x: &[f64], w: f64) -> f64 {
    let scale = |v: f64| v * w;
    let spread = |k: f64| k * x.iter().map(|v| v * v).sum::<f64>();
    let w = w * w + 1.0;
    let mut s = 0.0;
    for &v in x {
        let w = 0.5 * w;
        s += scale(v) + w * v;
    }
    for &w in x.iter().take(1) {
        s += 0.25 * w * w;
    }
    let x = [s, w];
    spread(x[0]) + x[1]
}

#[differentiable]
fn d_shadowed_captures(x: &[f64], w: f64) -> f64 {
    grad!(shadowed_captures)(x, w).1
}

fn xs(len: std::ops::Range<usize>) -> impl Strategy<Value = Vec<f64>> {
    prop::collection::vec(prop_oneof![-2.0..-0.3, 0.3..2.0], len)
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn called_with_captures(x in xs(0..7), w in -1.5f64..1.5) {
        let (gx, gw) = grad!(scaled_squares)(&x, w);
        check_vec("d/dx", &gx, &fd_vec(|x| scaled_squares(x, w), &x), TOL)?;
        check("d/dw", gw, fd(|w| scaled_squares(&x, w), w), TOL)?;
    }

    #[test]
    fn returning_a_vec((raw, weights) in (1usize..7).prop_flat_map(|n| (prop::collection::vec(0.2f64..2.0, n), xs(n..n + 1)))) {
        let g = grad!(normalised_score)(&raw, &weights);
        check_vec("d/draw", &g, &fd_vec(|r| normalised_score(r, &weights), &raw), TOL)?;
        // The score does not change when every raw weight is scaled: g ⟂ raw.
        check("raw · g", raw.iter().zip(&g).map(|(a, b)| a * b).sum::<f64>(), 0.0, TOL)?;
    }

    #[test]
    fn calling_each_other(x in -2.0f64..2.0, y in -2.0f64..2.0) {
        let (gx, gy) = grad!(composed)(x, y);
        let (fx, fy) = fd2(composed, x, y);
        check("d/dx", gx, fx, TOL)?;
        check("d/dy", gy, fy, TOL)?;
    }

    #[test]
    fn given_to_an_adaptor(rate in 0.3f64..1.2, capacity in 5.0f64..15.0, obs in prop::collection::vec(0.5f64..10.0, 1..10)) {
        let times: Vec<f64> = (0..obs.len()).map(|i| 0.5 * i as f64).collect();
        let (gr, gk) = grad!(logistic_fit)(rate, capacity, 1.0, &times, &obs);
        check("d/drate", gr, fd(|r| logistic_fit(r, capacity, 1.0, &times, &obs), rate), TOL)?;
        check("d/dcapacity", gk, fd(|k| logistic_fit(rate, k, 1.0, &times, &obs), capacity), TOL)?;
    }

    #[test]
    fn mutating_a_captured_accumulator(x in xs(0..7), w in 0.2f64..1.5) {
        let (gx, gw) = grad!(accumulated)(&x, w);
        check_vec("d/dx", &gx, &fd_vec(|x| accumulated(x, w), &x), TOL)?;
        check("d/dw", gw, fd(|w| accumulated(&x, w), w), TOL)?;
    }

    #[test]
    fn tuple_and_two_parameters(a in 0.3f64..2.0, b in 0.3f64..2.0) {
        let (ga, gb) = grad!(pairs)(a, b);
        let (fa, fb) = fd2(pairs, a, b);
        check("d/da", ga, fa, TOL)?;
        check("d/db", gb, fb, TOL)?;
    }

    #[test]
    fn captures_outlive_a_shadowing_let(x in xs(1..6), w in -1.5f64..1.5) {
        let (gx, gw) = grad!(shadowed_captures)(&x, w);
        check_vec("d/dx", &gx, &fd_vec(|x| shadowed_captures(x, w), &x), TOL)?;
        check("d/dw", gw, fd(|w| shadowed_captures(&x, w), w), TOL)?;
        let (_, gww) = grad!(d_shadowed_captures)(&x, w);
        check("d²/dw²", gww, fd(|w| d_shadowed_captures(&x, w), w), TOL)?;
    }

    #[test]
    fn second_derivative_through_a_closure(x in xs(2..7), k in 0.5f64..2.0) {
        let (gx, gk) = grad!(net_force)(&x, k);
        check_vec("d/dx", &gx, &fd_vec(|x| net_force(x, k), &x), TOL)?;
        check("d/dk", gk, fd(|k| net_force(&x, k), k), TOL)?;
        // A translation stretches no spring: the forces sum to zero.
        let g = grad!(smooth_energy)(&x, k);
        check("Σ ∂E/∂x", g.iter().sum::<f64>(), 0.0, TOL)?;
    }
}
