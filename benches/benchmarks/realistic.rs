//! Programs written the way users write them, each beside its primal and a gradient
//! written by hand, measured in one run: gradient/primal (the cheap-gradient principle:
//! at most 4×) and generated/hand-written. Two pairings measure what the way of writing
//! costs: a helper function called in a hot loop against the same code inlined by hand
//! (RK4; target within 1.2×), and iterator chains against the equivalent index loops
//! (logistic regression, softmax; target within 1.1×).
//!
//! - `rk4`: a Lotka–Volterra system integrated over 500 RK4 steps, its right-hand side a
//!   `#[differentiable]` helper returning a tuple; gradient w.r.t. the initial state and
//!   both rates.
//! - `newton`: the real root of x³ + 2x − 5 (from x = 1: five iterations) by Newton's
//!   method in a `while` loop, differentiated w.r.t. both coefficients; the
//!   hand-written gradient is the implicit-function one. The `_chained` rows make each
//!   call wait for the previous one (latency); the others let independent calls overlap
//!   (throughput), which flatters a short latency-bound primal more than its gradient.
//! - `logistic`: the negative log-likelihood of a logistic regression over 1 000 samples
//!   of 8 features, as `chunks`/`zip`/`map`/`sum` and as index loops.
//! - `heat`: 100 steps of an explicit diffusion stencil over 64 points, two buffers
//!   exchanged by `std::mem::swap`; gradient w.r.t. the coefficient and the initial
//!   profile.
//! - `softmax`: a softmax-weighted sum over 1 000 values, as iterator chains and as index
//!   loops.

#![allow(clippy::needless_range_loop, clippy::too_many_arguments)]

use std::hint::black_box;
use std::time::Duration;

use adjoint::prelude::*;
use criterion::{criterion_group, Criterion};

// ---- RK4 with a helper, and inlined

const C: f64 = 0.1;
const D: f64 = 0.075;

#[differentiable]
fn lotka_volterra(u: f64, v: f64, a: f64, b: f64) -> (f64, f64) {
    (a * u - C * u * v, -b * v + D * u * v)
}

#[differentiable]
fn rk4(u0: f64, v0: f64, a: f64, b: f64, h: f64, steps: usize) -> f64 {
    let (mut u, mut v) = (u0, v0);
    for _ in 0..steps {
        let (k1u, k1v) = lotka_volterra(u, v, a, b);
        let (k2u, k2v) = lotka_volterra(u + 0.5 * h * k1u, v + 0.5 * h * k1v, a, b);
        let (k3u, k3v) = lotka_volterra(u + 0.5 * h * k2u, v + 0.5 * h * k2v, a, b);
        let (k4u, k4v) = lotka_volterra(u + h * k3u, v + h * k3v, a, b);
        u += h / 6.0 * (k1u + 2.0 * k2u + 2.0 * k3u + k4u);
        v += h / 6.0 * (k1v + 2.0 * k2v + 2.0 * k3v + k4v);
    }
    u * u + v
}

#[differentiable]
fn rk4_inlined(u0: f64, v0: f64, a: f64, b: f64, h: f64, steps: usize) -> f64 {
    let (mut u, mut v) = (u0, v0);
    for _ in 0..steps {
        let (k1u, k1v) = (a * u - C * u * v, -b * v + D * u * v);
        let (u2, v2) = (u + 0.5 * h * k1u, v + 0.5 * h * k1v);
        let (k2u, k2v) = (a * u2 - C * u2 * v2, -b * v2 + D * u2 * v2);
        let (u3, v3) = (u + 0.5 * h * k2u, v + 0.5 * h * k2v);
        let (k3u, k3v) = (a * u3 - C * u3 * v3, -b * v3 + D * u3 * v3);
        let (u4, v4) = (u + h * k3u, v + h * k3v);
        let (k4u, k4v) = (a * u4 - C * u4 * v4, -b * v4 + D * u4 * v4);
        u += h / 6.0 * (k1u + 2.0 * k2u + 2.0 * k3u + k4u);
        v += h / 6.0 * (k1v + 2.0 * k2v + 2.0 * k3v + k4v);
    }
    u * u + v
}

/// The gradient of `rk4` by hand: the states of the forward pass kept, then each step
/// reversed stage by stage through the Jacobian of the right-hand side.
fn rk4_hand(u0: f64, v0: f64, a: f64, b: f64, h: f64, steps: usize) -> (f64, f64, f64, f64) {
    let f = |u: f64, v: f64| (a * u - C * u * v, -b * v + D * u * v);
    // Jᵀ·k̄ at (u, v), and the rates' shares: ∂f₀/∂a = u, ∂f₁/∂b = −v.
    let jt = |u: f64, v: f64, k0: f64, k1: f64| (k0 * (a - C * v) + k1 * D * v, k0 * (-C * u) + k1 * (-b + D * u));
    let mut states = Vec::with_capacity(steps + 1);
    let (mut u, mut v) = (u0, v0);
    states.push((u, v));
    for _ in 0..steps {
        let (k1u, k1v) = f(u, v);
        let (k2u, k2v) = f(u + 0.5 * h * k1u, v + 0.5 * h * k1v);
        let (k3u, k3v) = f(u + 0.5 * h * k2u, v + 0.5 * h * k2v);
        let (k4u, k4v) = f(u + h * k3u, v + h * k3v);
        u += h / 6.0 * (k1u + 2.0 * k2u + 2.0 * k3u + k4u);
        v += h / 6.0 * (k1v + 2.0 * k2v + 2.0 * k3v + k4v);
        states.push((u, v));
    }
    let (mut ub, mut vb) = (2.0 * u, 1.0);
    let (mut ab, mut bb) = (0.0, 0.0);
    for &(u, v) in states[..steps].iter().rev() {
        let (k1u, k1v) = f(u, v);
        let (u2, v2) = (u + 0.5 * h * k1u, v + 0.5 * h * k1v);
        let (k2u, k2v) = f(u2, v2);
        let (u3, v3) = (u + 0.5 * h * k2u, v + 0.5 * h * k2v);
        let (k3u, k3v) = f(u3, v3);
        let (u4, v4) = (u + h * k3u, v + h * k3v);
        let (k1b, k4b) = ((h / 6.0 * ub, h / 6.0 * vb), (h / 6.0 * ub, h / 6.0 * vb));
        let (mut k2b, mut k3b) = ((h / 3.0 * ub, h / 3.0 * vb), (h / 3.0 * ub, h / 3.0 * vb));
        let (mut sb_u, mut sb_v) = (ub, vb);
        // k4 = f(s4), s4 = s + h·k3
        let (s4u, s4v) = jt(u4, v4, k4b.0, k4b.1);
        ab += k4b.0 * u4;
        bb -= k4b.1 * v4;
        sb_u += s4u;
        sb_v += s4v;
        k3b = (k3b.0 + h * s4u, k3b.1 + h * s4v);
        // k3 = f(s3), s3 = s + h/2·k2
        let (s3u, s3v) = jt(u3, v3, k3b.0, k3b.1);
        ab += k3b.0 * u3;
        bb -= k3b.1 * v3;
        sb_u += s3u;
        sb_v += s3v;
        k2b = (k2b.0 + 0.5 * h * s3u, k2b.1 + 0.5 * h * s3v);
        // k2 = f(s2), s2 = s + h/2·k1
        let (s2u, s2v) = jt(u2, v2, k2b.0, k2b.1);
        ab += k2b.0 * u2;
        bb -= k2b.1 * v2;
        sb_u += s2u;
        sb_v += s2v;
        let k1b = (k1b.0 + 0.5 * h * s2u, k1b.1 + 0.5 * h * s2v);
        // k1 = f(s)
        let (s1u, s1v) = jt(u, v, k1b.0, k1b.1);
        ab += k1b.0 * u;
        bb -= k1b.1 * v;
        ub = sb_u + s1u;
        vb = sb_v + s1v;
    }
    (ub, vb, ab, bb)
}

// ---- Newton's method

#[differentiable]
fn newton_root(a: f64, b: f64) -> f64 {
    let mut x = 1.0;
    let mut step = 1.0;
    let mut k = 0;
    while step.abs() > 1e-12 && k < 50 {
        step = (x * x * x + a * x - b) / (3.0 * x * x + a);
        x -= step;
        k += 1;
    }
    x
}

/// The implicit-function gradient at the root: ∂x/∂a = −x/g', ∂x/∂b = 1/g'.
fn newton_hand(a: f64, b: f64) -> (f64, f64) {
    let x = newton_root(a, b);
    let slope = 3.0 * x * x + a;
    (-x / slope, 1.0 / slope)
}

// ---- logistic regression

#[differentiable(wrt(w))]
fn nll_chains(w: &[f64], xs: &[f64], ys: &[f64], d: usize) -> f64 {
    xs.chunks(d)
        .zip(ys)
        .map(|(row, &y)| {
            let z: f64 = row.iter().zip(w).map(|(a, b)| a * b).sum();
            // log(1 + eᶻ) − y·z, without overflow.
            z.max(0.0) + (-z.abs()).exp().ln_1p() - y * z
        })
        .sum()
}

#[differentiable(wrt(w))]
fn nll_loops(w: &[f64], xs: &[f64], ys: &[f64], d: usize) -> f64 {
    let mut s = 0.0;
    for i in 0..ys.len() {
        let mut z = 0.0;
        for j in 0..d {
            z += xs[i * d + j] * w[j];
        }
        s += z.max(0.0) + (-z.abs()).exp().ln_1p() - ys[i] * z;
    }
    s
}

/// ∂/∂w = Σᵢ (σ(zᵢ) − yᵢ)·xᵢ.
fn nll_hand(w: &[f64], xs: &[f64], ys: &[f64], d: usize) -> Vec<f64> {
    let mut g = vec![0.0; d];
    for (row, &y) in xs.chunks(d).zip(ys) {
        let z: f64 = row.iter().zip(w).map(|(a, b)| a * b).sum();
        let r = 1.0 / (1.0 + (-z).exp()) - y;
        for (gj, xj) in g.iter_mut().zip(row) {
            *gj += r * xj;
        }
    }
    g
}

// ---- heat stencil with swapped buffers

#[differentiable(wrt(kappa, u0))]
fn heat(kappa: f64, u0: &[f64], steps: usize) -> f64 {
    let n = u0.len();
    let mut u = u0.to_vec();
    let mut next = u0.to_vec();
    for _ in 0..steps {
        for i in 1..n - 1 {
            next[i] = u[i] + kappa * (u[i - 1] - 2.0 * u[i] + u[i + 1]);
        }
        std::mem::swap(&mut u, &mut next);
    }
    u.iter().map(|v| v * v).sum()
}

/// The adjoint stencil by hand: states kept, then each step's transpose applied
/// backwards (the interior reads its neighbours, the ends are copied).
fn heat_hand(kappa: f64, u0: &[f64], steps: usize) -> (f64, Vec<f64>) {
    let n = u0.len();
    let mut states = vec![u0.to_vec()];
    let mut u = u0.to_vec();
    for _ in 0..steps {
        let mut next = u.clone();
        for i in 1..n - 1 {
            next[i] = u[i] + kappa * (u[i - 1] - 2.0 * u[i] + u[i + 1]);
        }
        states.push(next.clone());
        u = next;
    }
    let mut ub: Vec<f64> = u.iter().map(|v| 2.0 * v).collect();
    let mut kb = 0.0;
    for s in states[..steps].iter().rev() {
        let mut prev = ub.clone(); // the ends, and each point's own share
        for i in 1..n - 1 {
            let lap = s[i - 1] - 2.0 * s[i] + s[i + 1];
            kb += ub[i] * lap;
            prev[i - 1] += kappa * ub[i];
            prev[i] -= 2.0 * kappa * ub[i];
            prev[i + 1] += kappa * ub[i];
        }
        ub = prev;
    }
    (kb, ub)
}

// ---- softmax

#[differentiable]
fn softmax_chains(x: &[f64], w: &[f64]) -> f64 {
    let m = x.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
    let e: Vec<f64> = x.iter().map(|v| (v - m).exp()).collect();
    let z: f64 = e.iter().sum();
    e.iter().zip(w).map(|(ei, wi)| ei / z * wi).sum()
}

#[differentiable]
fn softmax_loops(x: &[f64], w: &[f64]) -> f64 {
    let n = x.len();
    let mut m = f64::NEG_INFINITY;
    for i in 0..n {
        m = m.max(x[i]);
    }
    let mut e = vec![0.0; n];
    let mut z = 0.0;
    for i in 0..n {
        e[i] = (x[i] - m).exp();
        z += e[i];
    }
    let mut s = 0.0;
    for i in 0..n {
        s += e[i] / z * w[i];
    }
    s
}

/// ∂/∂xᵢ = sᵢ(wᵢ − Σⱼ sⱼwⱼ), ∂/∂wᵢ = sᵢ.
fn softmax_hand(x: &[f64], w: &[f64]) -> (Vec<f64>, Vec<f64>) {
    let m = x.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
    let e: Vec<f64> = x.iter().map(|v| (v - m).exp()).collect();
    let z: f64 = e.iter().sum();
    let s: Vec<f64> = e.iter().map(|v| v / z).collect();
    let sw: f64 = s.iter().zip(w).map(|(a, b)| a * b).sum();
    (s.iter().zip(w).map(|(si, wi)| si * (wi - sw)).collect(), s)
}

// ---- the benchmarks

fn inputs(n: usize, seed: u64) -> Vec<f64> {
    let mut rng = Rng::seed_from_u64(seed);
    (0..n).map(|_| rng.normal::<f64>()).collect()
}

fn realistic(c: &mut Criterion) {
    let mut group = c.benchmark_group("realistic");
    group.measurement_time(Duration::from_secs(3)).warm_up_time(Duration::from_millis(500));

    let (u0, v0, a, b, h, steps) = (10.0, 5.0, 1.1, 0.4, 0.01, 500);
    group.bench_function("rk4/primal", |bch| bch.iter(|| rk4(black_box(u0), v0, a, b, h, steps)));
    group.bench_function("rk4/grad", |bch| bch.iter(|| grad!(rk4)(black_box(u0), v0, a, b, h, steps)));
    group.bench_function("rk4/grad_inlined", |bch| bch.iter(|| grad!(rk4_inlined)(black_box(u0), v0, a, b, h, steps)));
    group.bench_function("rk4/hand", |bch| bch.iter(|| rk4_hand(black_box(u0), v0, a, b, h, steps)));

    // Both coefficients through `black_box`, so that no iteration is hoisted.
    let coefficients = || black_box((2.0, 5.0));
    group.bench_function("newton/primal", |bch| {
        bch.iter(|| {
            let (a, b) = coefficients();
            newton_root(a, b)
        })
    });
    group.bench_function("newton/grad", |bch| {
        bch.iter(|| {
            let (a, b) = coefficients();
            grad!(newton_root)(a, b)
        })
    });
    // The same calls, each waiting for the one before (its coefficient reads the last
    // root, at a weight that leaves it unchanged), as in an optimisation loop: the
    // latency of one call, where the rows above let the CPU overlap independent calls.
    group.bench_function("newton/primal_chained", |bch| {
        let mut a = 2.0;
        bch.iter(|| {
            let x = newton_root(black_box(a), 5.0);
            a = 2.0 + 1e-30 * x;
            x
        })
    });
    group.bench_function("newton/grad_chained", |bch| {
        let mut a = 2.0;
        bch.iter(|| {
            let g = grad!(newton_root)(black_box(a), 5.0);
            a = 2.0 + 1e-30 * g.0;
            g
        })
    });
    group.bench_function("newton/hand", |bch| {
        bch.iter(|| {
            let (a, b) = coefficients();
            newton_hand(a, b)
        })
    });

    let (n, d) = (1000, 8);
    let xs = inputs(n * d, 1);
    let ys: Vec<f64> = inputs(n, 2).iter().map(|v| if *v > 0.0 { 1.0 } else { 0.0 }).collect();
    let w: Vec<f64> = inputs(d, 3).iter().map(|v| 0.3 * v).collect();
    group.bench_function("logistic/primal", |bch| bch.iter(|| nll_chains(black_box(&w), &xs, &ys, d)));
    group.bench_function("logistic/grad", |bch| bch.iter(|| grad!(nll_chains)(black_box(&w), &xs, &ys, d)));
    group.bench_function("logistic/grad_index_loops", |bch| bch.iter(|| grad!(nll_loops)(black_box(&w), &xs, &ys, d)));
    group.bench_function("logistic/hand", |bch| bch.iter(|| nll_hand(black_box(&w), &xs, &ys, d)));

    let profile: Vec<f64> = (0..64).map(|i| (i as f64 * 0.1).sin()).collect();
    group.bench_function("heat/primal", |bch| bch.iter(|| heat(black_box(0.2), &profile, 100)));
    group.bench_function("heat/grad", |bch| bch.iter(|| grad!(heat)(black_box(0.2), &profile, 100)));
    group.bench_function("heat/hand", |bch| bch.iter(|| heat_hand(black_box(0.2), &profile, 100)));

    let (x, wt) = (inputs(1000, 4), inputs(1000, 5));
    group.bench_function("softmax/primal", |bch| bch.iter(|| softmax_chains(black_box(&x), &wt)));
    group.bench_function("softmax/grad", |bch| bch.iter(|| grad!(softmax_chains)(black_box(&x), &wt)));
    group.bench_function("softmax/grad_index_loops", |bch| bch.iter(|| grad!(softmax_loops)(black_box(&x), &wt)));
    group.bench_function("softmax/hand", |bch| bch.iter(|| softmax_hand(black_box(&x), &wt)));
    group.finish();
}

criterion_group!(realistic_programs, realistic);

/// The hand-written gradients agree with the generated ones (checked when the
/// benchmarks start, so a wrong reference is never measured).
pub fn check_references() {
    let close = |what: &str, a: f64, b: f64| {
        assert!((a - b).abs() <= 1e-6 * (1.0 + b.abs()), "{what}: generated {a} but hand-written {b}");
    };
    let (g, hg) = (grad!(rk4)(10.0, 5.0, 1.1, 0.4, 0.01, 50), rk4_hand(10.0, 5.0, 1.1, 0.4, 0.01, 50));
    for (what, a, b) in [("rk4 u0", g.0, hg.0), ("rk4 v0", g.1, hg.1), ("rk4 a", g.2, hg.2), ("rk4 b", g.3, hg.3)] {
        close(what, a, b);
    }
    let (g, hg) = (grad!(newton_root)(2.0, 5.0), newton_hand(2.0, 5.0));
    close("newton a", g.0, hg.0);
    close("newton b", g.1, hg.1);
    let (xs, ys, w) = (inputs(40, 1), [1.0, 0.0, 1.0, 1.0, 0.0], inputs(8, 3));
    for (a, b) in grad!(nll_chains)(&w, &xs, &ys, 8).iter().zip(nll_hand(&w, &xs, &ys, 8)) {
        close("logistic", *a, b);
    }
    let profile: Vec<f64> = (0..16).map(|i| (i as f64 * 0.3).sin()).collect();
    let (g, hg) = (grad!(heat)(0.2, &profile, 10), heat_hand(0.2, &profile, 10));
    close("heat kappa", g.0, hg.0);
    for (a, b) in g.1.iter().zip(&hg.1) {
        close("heat u0", *a, *b);
    }
    let (x, wt) = (inputs(20, 4), inputs(20, 5));
    let (g, hg) = (grad!(softmax_chains)(&x, &wt), softmax_hand(&x, &wt));
    for (a, b) in g.0.iter().zip(&hg.0).chain(g.1.iter().zip(&hg.1)) {
        close("softmax", *a, *b);
    }
}
