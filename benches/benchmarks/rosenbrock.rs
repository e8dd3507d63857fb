//! Rosenbrock: primal, generated gradient and value-and-gradient, and hand-written
//! versions of both, for n = 2, 1 000 and 1 000 000; plus the loop-free 2-variable form.

use std::hint::black_box;
use std::time::Duration;

use adjoint::prelude::*;
use criterion::{criterion_group, BenchmarkId, Criterion, Throughput};

/// `f(x) = Σ_{i<n-1} 100 (x[i+1] − x[i]²)² + (1 − x[i])²`, an ordinary loop.
#[differentiable]
pub fn rosenbrock(x: &[f64]) -> f64 {
    let mut s = 0.0;
    for i in 0..x.len() - 1 {
        let a = x[i + 1] - x[i] * x[i];
        let b = 1.0 - x[i];
        s += 100.0 * a * a + b * b;
    }
    s
}

/// The loop-free two-variable Rosenbrock `g(a, b) = 100 (b − a²)² + (1 − a)²`.
#[differentiable]
pub fn rosenbrock2(a: f64, b: f64) -> f64 {
    let t = b - a * a;
    let u = 1.0 - a;
    100.0 * t * t + u * u
}

/// Hand-written gradient, one pass, allocating the output like `grad!` does.
///
/// With `t_i = x[i+1] − x[i]²`: `∂f/∂x[i] += −400 x[i] t_i − 2 (1 − x[i])` and
/// `∂f/∂x[i+1] += 200 t_i`. The `200 t_{i−1}` term is carried in a register so each
/// element of the output is written exactly once.
pub fn rosenbrock_grad_hand(x: &[f64]) -> Vec<f64> {
    let n = x.len();
    let mut g = vec![0.0; n];
    if n < 2 {
        return g;
    }
    let mut carry = 0.0; // 200 t_{i-1}, the contribution of term i-1 to x[i]
    for i in 0..n - 1 {
        let xi = x[i];
        let t = x[i + 1] - xi * xi;
        g[i] = carry - 400.0 * xi * t - 2.0 * (1.0 - xi);
        carry = 200.0 * t;
    }
    g[n - 1] = carry;
    g
}

/// Hand-written value and gradient in the same single pass.
pub fn rosenbrock_value_and_grad_hand(x: &[f64]) -> (f64, Vec<f64>) {
    let n = x.len();
    let mut g = vec![0.0; n];
    if n < 2 {
        return (0.0, g);
    }
    let mut s = 0.0;
    let mut carry = 0.0;
    for i in 0..n - 1 {
        let xi = x[i];
        let t = x[i + 1] - xi * xi;
        let u = 1.0 - xi;
        s += 100.0 * t * t + u * u;
        g[i] = carry - 400.0 * xi * t - 2.0 * u;
        carry = 200.0 * t;
    }
    g[n - 1] = carry;
    (s, g)
}

/// Hand-written gradient of the two-variable form.
pub fn rosenbrock2_grad_hand(a: f64, b: f64) -> (f64, f64) {
    let t = b - a * a;
    (-400.0 * a * t - 2.0 * (1.0 - a), 200.0 * t)
}

/// Deterministic input `x[i] = 1 + 0.1 sin(i)`.
pub fn input(n: usize) -> Vec<f64> {
    (0..n).map(|i| 1.0 + 0.1 * (i as f64).sin()).collect()
}

fn check(n: usize) {
    let x = input(n);
    let gh = rosenbrock_grad_hand(&x);
    let gg = grad!(rosenbrock)(&x);
    let (vg, gvg) = value_and_grad!(rosenbrock)(&x);
    let (vh, gvh) = rosenbrock_value_and_grad_hand(&x);
    let v = rosenbrock(&x);
    let close = |a: f64, b: f64| (a - b).abs() <= 1e-9 * (1.0 + b.abs());
    assert!(close(vg, v) && close(vh, v), "value mismatch at n = {n}");
    for (i, &h) in gh.iter().enumerate() {
        assert!(close(gg[i], h) && close(gvg[i], h) && close(gvh[i], h), "gradient mismatch at n = {n}, i = {i}");
    }
}

pub fn bench_rosenbrock_n(c: &mut Criterion) {
    for &n in &[2usize, 1_000, 1_000_000] {
        check(n);
        let x = input(n);
        let mut group = c.benchmark_group(format!("rosenbrock/n={n}"));
        group.throughput(Throughput::Elements(n as u64));
        group.warm_up_time(Duration::from_millis(500));
        if n >= 1_000_000 {
            group.sample_size(20).measurement_time(Duration::from_secs(3));
        } else {
            group.sample_size(50).measurement_time(Duration::from_secs(2));
        }
        group.bench_with_input(BenchmarkId::new("primal", n), &x, |b, x| b.iter(|| rosenbrock(black_box(x))));
        group.bench_with_input(BenchmarkId::new("grad_generated", n), &x, |b, x| {
            b.iter(|| grad!(rosenbrock)(black_box(x)))
        });
        group.bench_with_input(BenchmarkId::new("grad_hand", n), &x, |b, x| {
            b.iter(|| rosenbrock_grad_hand(black_box(x)))
        });
        group.bench_with_input(BenchmarkId::new("value_and_grad_generated", n), &x, |b, x| {
            b.iter(|| value_and_grad!(rosenbrock)(black_box(x)))
        });
        group.bench_with_input(BenchmarkId::new("value_and_grad_hand", n), &x, |b, x| {
            b.iter(|| rosenbrock_value_and_grad_hand(black_box(x)))
        });
        group.finish();
    }
}

pub fn bench_rosenbrock_2d(c: &mut Criterion) {
    let (a, b0) = (-1.2, 1.0);
    let (ga, gb) = grad!(rosenbrock2)(a, b0);
    let (ha, hb) = rosenbrock2_grad_hand(a, b0);
    assert!((ga - ha).abs() < 1e-9 && (gb - hb).abs() < 1e-9);
    let mut group = c.benchmark_group("rosenbrock2");
    group.warm_up_time(Duration::from_millis(500));
    group.sample_size(50).measurement_time(Duration::from_secs(2));
    group.bench_function("primal", |b| b.iter(|| rosenbrock2(black_box(a), black_box(b0))));
    group.bench_function("grad_generated", |b| b.iter(|| grad!(rosenbrock2)(black_box(a), black_box(b0))));
    group.bench_function("grad_hand", |b| b.iter(|| rosenbrock2_grad_hand(black_box(a), black_box(b0))));
    group.finish();
}

criterion_group!(rosenbrock_n, bench_rosenbrock_n);
criterion_group!(rosenbrock_2d, bench_rosenbrock_2d);
