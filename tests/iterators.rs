//! Iterator chains as users write them (`macros/src/desugar.rs` turns them into index
//! loops): sources (`iter`, `iter_mut`, `&x`, sub-slices, ranges, `windows`, `chunks`),
//! adaptors (`zip`, `enumerate`, `map`, `filter`, `filter_map` over `Option`s, `rev`,
//! `skip`, `take`, `step_by`, `copied`, `cloned`) and consumers (`sum`, `product`, `fold`, `collect`, `max_by`,
//! `min_by`, `count`, `for`), chained with each other and with closures, checked
//! against central finite differences over random inputs, with a second derivative by
//! nesting `grad!`.

#![allow(clippy::needless_range_loop, clippy::manual_memcpy, clippy::unnecessary_fold, clippy::unnecessary_filter_map)]

mod common;

use adjoint::prelude::*;
use common::*;
use proptest::prelude::*;

const TOL: Tol = Tol { rel: 1e-6, abs: 1e-8 };

#[differentiable]
fn dot(xs: &[f64], ys: &[f64]) -> f64 {
    xs.iter().zip(ys).map(|(a, b)| a * b).sum::<f64>()
}

#[differentiable]
fn weighted_positions(x: &[f64]) -> f64 {
    let s: f64 = x.iter().enumerate().map(|(i, &v)| v * (i as f64 + 1.0)).sum();
    let t = (0..x.len()).map(|i| x[i] * x[i]).sum::<f64>();
    s * t
}

#[differentiable]
fn roughness(x: &[f64]) -> f64 {
    // Squared differences of neighbours, and products of blocks of three.
    let smooth = x.windows(2).map(|w| (w[1] - w[0]).powi(2)).sum::<f64>();
    let blocks: f64 = x.chunks(3).map(|c| c.iter().product::<f64>()).sum();
    smooth + 0.1 * blocks
}

#[differentiable]
fn positive_roots(x: &[f64]) -> f64 {
    x.iter().filter(|&&v| v > 0.0).map(|v| v.sqrt()).sum::<f64>() + x.iter().filter(|v| **v < 0.0).count() as f64
}

#[differentiable]
fn horner(coefficients: &[f64], t: f64) -> f64 {
    coefficients.iter().rev().fold(0.0, |acc, &c| acc * t + c)
}

#[differentiable]
fn extremes(x: &[f64]) -> f64 {
    let hi = x.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
    let lo = *x.iter().min_by(|a, b| a.partial_cmp(b).unwrap()).unwrap();
    let top = x.iter().copied().max_by(|a, b| a.partial_cmp(b).unwrap()).unwrap();
    hi * lo + top
}

#[differentiable]
fn log_sum_exp(x: &[f64]) -> f64 {
    let m = x.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
    let exps: Vec<f64> = x.iter().map(|v| (v - m).exp()).collect();
    m + exps.iter().sum::<f64>().ln()
}

#[differentiable]
fn softmax_weighted(x: &[f64], w: &[f64]) -> f64 {
    let m = x.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
    let e: Vec<f64> = x.iter().map(|v| (v - m).exp()).collect();
    let z: f64 = e.iter().sum();
    e.iter().zip(w).map(|(ei, wi)| ei / z * wi).sum()
}

#[differentiable]
fn strided(x: &[f64]) -> f64 {
    let a = x.iter().rev().skip(1).step_by(2).map(|v| v * v).sum::<f64>();
    let b: f64 = x.iter().take(3).sum();
    let c = x.iter().skip(2).zip(x.iter()).map(|(p, q)| p * q).sum::<f64>();
    a + b * c
}

#[differentiable]
fn loops_over_chains(x: &[f64], y: &[f64]) -> f64 {
    let mut s = 0.0;
    for (i, w) in x.windows(3).enumerate() {
        s += w[0] * w[2] * (i as f64 + 0.5);
    }
    for (a, b) in x.iter().zip(y.iter()).rev() {
        s = s * 0.9 + a * b;
    }
    for &v in x.iter().filter(|v| v.abs() > 0.5) {
        s += v.sin();
    }
    s
}

#[differentiable]
fn updated_in_place(x: &[f64], w: f64) -> f64 {
    let mut v = x.to_vec();
    for e in v.iter_mut() {
        *e = (*e * w).tanh();
    }
    for (e, &xi) in v.iter_mut().zip(x) {
        *e += xi * xi;
    }
    v.iter().sum::<f64>()
}

#[differentiable]
fn heat_step(u: &[f64], r: f64) -> f64 {
    // The interior of a stencil through a sub-slice, as in an explicit heat solver.
    let n = u.len();
    let mut next = u.to_vec();
    for (i, &centre) in u[1..n - 1].iter().enumerate() {
        next[i + 1] = centre + r * (u[i] - 2.0 * centre + u[i + 2]);
    }
    next.iter().map(|v| v * v).sum()
}

#[differentiable]
fn ufcs(a: f64, b: f64) -> f64 {
    f64::sqrt(a * a + 1.0) + f64::max(a, b) * f64::exp(b)
}

#[differentiable(wrt(scale))]
fn observed_error(scale: f64, xs: &[f64], obs: &[Option<f64>]) -> f64 {
    // Missing observations are skipped; each present one is compared with the model.
    xs.iter().zip(obs).filter_map(|(&x, y)| y.map(|y| (scale * x - y).powi(2))).sum()
}

#[differentiable]
fn positive_logs(x: &[f64]) -> f64 {
    let logs: f64 = x.iter().filter_map(|&v| if v > 0.0 { Some(v.ln()) } else { None }).sum();
    let all: f64 = x.iter().filter_map(|v| Some(v * v)).sum();
    logs + all
}

#[differentiable(order = 3)]
fn cubic_energy(x: &[f64]) -> f64 {
    x.iter().map(|v| v.powi(3)).sum()
}

/// The gradient of a chain, consumed by another chain: d/dxᵢ Σⱼ 3xⱼ² = 6xᵢ.
#[differentiable]
fn curvature(x: &[f64]) -> f64 {
    let g = grad!(cubic_energy)(x);
    g.iter().sum::<f64>()
}

/// Chains and a closure call as the elements of a `vec![…]` literal.
#[differentiable]
fn summary(x: &[f64], a: f64) -> f64 {
    let scaled = |t: f64| (t * a).tanh();
    let mut stats = vec![
        x.iter().map(|&v| v * v).sum::<f64>(),
        x.iter().fold(f64::NEG_INFINITY, |m: f64, &v| m.max(v * a)),
        scaled(x[0]),
        if x.iter().map(|&v| v * v).sum::<f64>() > 1.0 { a } else { 2.0 * a },
    ];
    stats.push(a);
    stats[4] *= stats[0];
    stats[4] + stats[1] + stats[2] * stats[3]
}

fn xs(len: std::ops::Range<usize>) -> impl Strategy<Value = Vec<f64>> {
    prop::collection::vec(prop_oneof![-2.0..-0.6, 0.6..2.0], len)
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn zip_map_sum((x, y) in (2usize..9).prop_flat_map(|n| (xs(n..n + 1), xs(n..n + 1)))) {
        let (gx, gy) = grad!(dot)(&x, &y);
        check_vec("d/dx", &gx, &y, TOL)?;
        check_vec("d/dy", &gy, &x, TOL)?;
        let (v, _) = value_and_grad!(dot)(&x, &y);
        check("value", v, dot(&x, &y), TOL)?;
    }

    #[test]
    fn enumerate_and_ranges(x in xs(1..9)) {
        check_vec("grad", &grad!(weighted_positions)(&x), &fd_vec(weighted_positions, &x), TOL)?;
    }

    #[test]
    fn chains_inside_vec_literals(x in xs(1..8), a in 0.3f64..1.5) {
        let (gx, ga) = grad!(summary)(&x, a);
        check_vec("d/dx", &gx, &fd_vec(|v| summary(v, a), &x), TOL)?;
        check("d/da", ga, fd(|t| summary(&x, t), a), TOL)?;
    }

    #[test]
    fn windows_and_chunks(x in xs(1..10)) {
        check_vec("grad", &grad!(roughness)(&x), &fd_vec(roughness, &x), TOL)?;
    }

    #[test]
    fn filter_and_count(x in xs(1..9)) {
        check_vec("grad", &grad!(positive_roots)(&x), &fd_vec(positive_roots, &x), TOL)?;
    }

    #[test]
    fn fold_in_reverse(c in xs(1..7), t in -1.5f64..1.5) {
        let (gc, gt) = grad!(horner)(&c, t);
        check_vec("d/dc", &gc, &fd_vec(|c| horner(c, t), &c), TOL)?;
        check("d/dt", gt, fd(|t| horner(&c, t), t), TOL)?;
    }

    #[test]
    fn max_and_min(x in prop::collection::hash_set(-200i32..200, 2..8)) {
        // Distinct values: the maximum and minimum are unique, away from ties.
        let x: Vec<f64> = x.into_iter().map(|v| v as f64 / 100.0).collect();
        check_vec("grad", &grad!(extremes)(&x), &fd_vec(extremes, &x), TOL)?;
    }

    #[test]
    fn collect_then_sum(x in xs(1..9)) {
        check_vec("grad", &grad!(log_sum_exp)(&x), &fd_vec(log_sum_exp, &x), TOL)?;
        // The gradient of log-sum-exp is the softmax: it sums to one.
        check("Σ grad", grad!(log_sum_exp)(&x).iter().sum::<f64>(), 1.0, TOL)?;
    }

    #[test]
    fn softmax_chain((x, w) in (1usize..8).prop_flat_map(|n| (xs(n..n + 1), xs(n..n + 1)))) {
        let (gx, gw) = grad!(softmax_weighted)(&x, &w);
        check_vec("d/dx", &gx, &fd_vec(|x| softmax_weighted(x, &w), &x), TOL)?;
        check_vec("d/dw", &gw, &fd_vec(|w| softmax_weighted(&x, w), &w), TOL)?;
    }

    #[test]
    fn rev_skip_take_step_by(x in xs(0..11)) {
        check_vec("grad", &grad!(strided)(&x), &fd_vec(strided, &x), TOL)?;
    }

    #[test]
    fn for_loops_over_chains((x, y) in (1usize..9).prop_flat_map(|n| (xs(n..n + 1), xs(n..n + 1)))) {
        let (gx, gy) = grad!(loops_over_chains)(&x, &y);
        check_vec("d/dx", &gx, &fd_vec(|x| loops_over_chains(x, &y), &x), TOL)?;
        check_vec("d/dy", &gy, &fd_vec(|y| loops_over_chains(&x, y), &y), TOL)?;
    }

    #[test]
    fn writes_through_iter_mut(x in xs(1..8), w in 0.2f64..1.5) {
        let (gx, gw) = grad!(updated_in_place)(&x, w);
        check_vec("d/dx", &gx, &fd_vec(|x| updated_in_place(x, w), &x), TOL)?;
        check("d/dw", gw, fd(|w| updated_in_place(&x, w), w), TOL)?;
    }

    #[test]
    fn sub_slice_stencil(u in xs(3..10), r in 0.05f64..0.4) {
        let (gu, gr) = grad!(heat_step)(&u, r);
        check_vec("d/du", &gu, &fd_vec(|u| heat_step(u, r), &u), TOL)?;
        check("d/dr", gr, fd(|r| heat_step(&u, r), r), TOL)?;
    }

    #[test]
    fn float_methods_by_path(a in -2.0f64..2.0, b in -2.0f64..2.0) {
        prop_assume!((a - b).abs() > 1e-3);
        let (ga, gb) = grad!(ufcs)(a, b);
        let (fa, fb) = fd2(ufcs, a, b);
        check("d/da", ga, fa, TOL)?;
        check("d/db", gb, fb, TOL)?;
    }

    #[test]
    fn filter_map_of_options(scale in 0.2f64..2.0, xs in xs(1..9), missing in prop::collection::vec(any::<bool>(), 9)) {
        let obs: Vec<Option<f64>> = xs.iter().zip(&missing).map(|(x, &m)| if m { None } else { Some(0.7 * x + 0.1) }).collect();
        let g = grad!(observed_error)(scale, &xs, &obs);
        check("d/dscale", g, fd(|s| observed_error(s, &xs, &obs), scale), TOL)?;
    }

    #[test]
    fn filter_map_of_conditions(x in xs(1..9)) {
        check_vec("grad", &grad!(positive_logs)(&x), &fd_vec(positive_logs, &x), TOL)?;
    }

    #[test]
    fn second_derivative_through_chains(x in xs(1..7)) {
        let want: Vec<f64> = x.iter().map(|v| 6.0 * v).collect();
        check_vec("grad of Σ grad", &grad!(curvature)(&x), &want, TOL)?;
    }
}
