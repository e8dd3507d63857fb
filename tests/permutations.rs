//! Permutations of active values: `sort_by`/`sort_unstable_by` with the comparators users
//! write (`a.partial_cmp(b).unwrap()`, descending, `total_cmp`, `f64::total_cmp`), a
//! median, a trimmed mean, a top-k, and `swap`. The order is a decision, like a branch:
//! each element's adjoint goes back to where the element came from.

mod common;

use adjoint::prelude::*;
use common::*;
use proptest::prelude::*;

#[differentiable(order = 2)]
fn median(x: &[f64]) -> f64 {
    let mut s: Vec<f64> = x.iter().map(|v| v.sinh()).collect();
    s.sort_by(|a, b| a.partial_cmp(b).unwrap());
    let n = s.len();
    if n % 2 == 1 {
        s[n / 2]
    } else {
        0.5 * (s[n / 2 - 1] + s[n / 2])
    }
}

#[differentiable]
fn d_median(x: &[f64]) -> f64 {
    grad!(median)(x).iter().zip(x).map(|(g, v)| g * v).sum()
}

/// The mean of the values left after dropping the smallest and the largest.
#[differentiable]
fn trimmed_mean(x: &[f64], scale: f64) -> f64 {
    let mut s: Vec<f64> = x.iter().map(|v| v * scale).collect();
    s.sort_unstable_by(|a, b| a.total_cmp(b));
    let kept = &s[1..s.len() - 1];
    kept.iter().sum::<f64>() / kept.len() as f64
}

/// The sum of squares of the `k` largest entries.
#[differentiable]
fn top_k(x: &[f64], k: usize) -> f64 {
    let mut s = x.to_vec();
    s.sort_by(|a, b| b.partial_cmp(a).unwrap());
    s.iter().take(k).map(|v| v * v).sum()
}

/// An ordered weighting: the sorted values weighted by rank (`f64::total_cmp`).
#[differentiable]
fn ranked(x: &[f64]) -> f64 {
    let mut s = x.to_vec();
    s.sort_by(f64::total_cmp);
    s.iter().enumerate().map(|(i, v)| (i as f64 + 1.0) * v.tanh()).sum()
}

/// `swap` of two elements, then a weighted sum.
#[differentiable]
fn swapped(x: &[f64], i: usize, j: usize) -> f64 {
    let mut s = x.to_vec();
    s.swap(i, j);
    s.iter().enumerate().map(|(k, v)| (k as f64 + 1.0) * v * v.abs()).sum()
}

/// Distinct values (the order is only defined up to ties).
fn distinct(lo: f64, hi: f64, len: std::ops::Range<usize>) -> impl Strategy<Value = Vec<f64>> {
    vec_in(lo, hi, len).prop_filter("distinct values", |x| {
        x.iter().enumerate().all(|(i, a)| x[i + 1..].iter().all(|b| (a - b).abs() > 1e-3))
    })
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn sorts(x in distinct(-2.0, 2.0, 3..8), k in 1usize..3, scale in 0.5..2.0f64) {
        check_vec("median", &grad!(median)(&x), &fd_vec(median, &x), FD)?;
        check_vec("median, second order", &grad!(d_median)(&x), &fd_vec(d_median, &x), FD2)?;
        let (gx, gs) = grad!(trimmed_mean)(&x, scale);
        check_vec("trimmed mean d/dx", &gx, &fd_vec(|v| trimmed_mean(v, scale), &x), FD)?;
        check("trimmed mean d/dscale", gs, fd(|t| trimmed_mean(&x, t), scale), FD)?;
        check_vec("top k", &grad!(top_k)(&x, k), &fd_vec(|v| top_k(v, k), &x), FD)?;
        check_vec("ranked", &grad!(ranked)(&x), &fd_vec(ranked, &x), FD)?;
    }

    #[test]
    fn swaps(x in vec_in(-2.0, 2.0, 2..6), i in 0usize..6, j in 0usize..6) {
        let (i, j) = (i % x.len(), j % x.len());
        check_vec("swap", &grad!(swapped)(&x, i, j), &fd_vec(|v| swapped(v, i, j), &x), FD)?;
    }
}

/// The median of an odd count sends the whole adjoint to the middle element, wherever
/// it sat in the input.
#[test]
fn median_routes_to_the_middle_element() {
    let g = grad!(median)(&[3.0, -1.0, 0.5, 2.0, 7.0]);
    let want = [0.0, 0.0, 0.0, 2.0f64.cosh(), 0.0];
    assert_vec_close("median", &g, &want, Tol { rel: 1e-12, abs: 0.0 });
}
