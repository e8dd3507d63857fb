//! Tensor kernels, each with its serial baseline: broadcast add and sum over 1M
//! elements, softmax on `[128, 10]` and `[128, 1000]`, and the pieces of a classifier
//! step (cross-entropy, the bias gradient `sum_dim(0)`).

use std::hint::black_box;
use std::time::Duration;

use adjoint_runtime::tensor::{with_kernel_params, KernelParams, Tensor};
use adjoint_runtime::{cross_entropy, Rng};
use criterion::{criterion_group, BenchmarkId, Criterion, Throughput};

/// The parameter sets every kernel is measured with.
const MODES: [(&str, KernelParams); 2] = [("default", KernelParams::DEFAULT), ("serial", KernelParams::SERIAL)];

fn randn(shape: &[usize], seed: u64) -> Tensor<f32> {
    Tensor::randn(shape, &mut Rng::seed_from_u64(seed))
}

fn elementwise(c: &mut Criterion) {
    let mut group = c.benchmark_group("elementwise");
    group.measurement_time(Duration::from_secs(3));
    let (rows, cols) = (1000, 1000);
    let x = randn(&[rows, cols], 1);
    let y = randn(&[rows, cols], 2);
    let bias = randn(&[cols], 3);
    group.throughput(Throughput::Elements((rows * cols) as u64));
    for (mode, params) in MODES {
        group.bench_with_input(BenchmarkId::new("add_row_broadcast_1M", mode), &params, |b, &p| {
            b.iter(|| with_kernel_params(p, || black_box(&x + &bias)))
        });
        group.bench_with_input(BenchmarkId::new("add_same_shape_1M", mode), &params, |b, &p| {
            b.iter(|| with_kernel_params(p, || black_box(&x + &y)))
        });
        group.bench_with_input(BenchmarkId::new("exp_1M", mode), &params, |b, &p| {
            b.iter(|| with_kernel_params(p, || black_box(x.exp())))
        });
    }
    // Gradient accumulation into an unshared buffer: no allocation.
    let mut acc = Tensor::<f32>::zeros(&[rows, cols]);
    group.bench_function(BenchmarkId::new("add_assign_1M", "default"), |b| b.iter(|| acc += &y));
    group.finish();
}

fn reductions(c: &mut Criterion) {
    let mut group = c.benchmark_group("reduce");
    group.measurement_time(Duration::from_secs(3));
    let x = randn(&[1 << 20], 4);
    group.throughput(Throughput::Elements(1 << 20));
    for (mode, params) in MODES {
        group.bench_with_input(BenchmarkId::new("sum_1M", mode), &params, |b, &p| {
            b.iter(|| with_kernel_params(p, || black_box(x.sum())))
        });
    }
    let g = randn(&[128, 1000], 5);
    group.throughput(Throughput::Elements(128 * 1000));
    for (mode, params) in MODES {
        group.bench_with_input(BenchmarkId::new("sum_dim0_128x1000", mode), &params, |b, &p| {
            b.iter(|| with_kernel_params(p, || black_box(g.sum_dim(0, false))))
        });
    }
    group.finish();
}

fn softmax(c: &mut Criterion) {
    let mut group = c.benchmark_group("softmax");
    group.measurement_time(Duration::from_secs(3));
    for classes in [10, 1000] {
        let x = randn(&[128, classes], 6);
        let targets: Vec<usize> = (0..128).map(|i| i % classes).collect();
        group.throughput(Throughput::Elements((128 * classes) as u64));
        for (mode, params) in MODES {
            let id = format!("128x{classes}");
            group.bench_with_input(BenchmarkId::new(format!("softmax_{mode}"), &id), &params, |b, &p| {
                b.iter(|| with_kernel_params(p, || black_box(x.softmax(1))))
            });
            group.bench_with_input(BenchmarkId::new(format!("cross_entropy_{mode}"), &id), &params, |b, &p| {
                b.iter(|| with_kernel_params(p, || black_box(cross_entropy(&x, &targets))))
            });
        }
    }
    group.finish();
}

criterion_group!(tensor, elementwise, reductions, softmax);
