//! Matrix products through `Tensor::matmul`: f32 and f64 at 1024³ (also with a
//! transposed, strided left operand, and forced serial as the baseline) and at 4096³.
//!
//! The throughput is in FLOP (`2·m·n·k` per product), so criterion's "elem/s" reads as
//! FLOP/s. References on this machine kind are in `shared/anchors/BASELINES.md`.

use std::hint::black_box;
use std::time::Duration;

use adjoint_runtime::tensor::{with_kernel_params, KernelParams, Tensor};
use adjoint_runtime::{Float, Rng};
use criterion::{criterion_group, BenchmarkId, Criterion, Throughput};

fn flops(n: usize) -> Throughput {
    Throughput::Elements(2 * (n as u64).pow(3))
}

fn square<E: Float>(n: usize, seed: u64) -> (Tensor<E>, Tensor<E>) {
    let mut rng = Rng::seed_from_u64(seed);
    (Tensor::randn(&[n, n], &mut rng), Tensor::randn(&[n, n], &mut rng))
}

fn gemm_1024(c: &mut Criterion) {
    let n = 1024;
    let mut group = c.benchmark_group("gemm");
    group.throughput(flops(n)).sample_size(20).measurement_time(Duration::from_secs(4));
    let (a32, b32) = square::<f32>(n, 1);
    let (a64, b64) = square::<f64>(n, 2);
    group.bench_with_input(BenchmarkId::new("f32", n), &n, |bch, _| bch.iter(|| black_box(a32.matmul(&b32))));
    group.bench_with_input(BenchmarkId::new("f64", n), &n, |bch, _| bch.iter(|| black_box(a64.matmul(&b64))));
    // Aᵀ·B with Aᵀ a strided view: the gradient of a product has this form.
    let a32t = a32.t();
    group.bench_with_input(BenchmarkId::new("f32_lhs_transposed_view", n), &n, |bch, _| {
        bch.iter(|| black_box(a32t.matmul(&b32)))
    });
    // Baseline: the same product on one thread.
    group.bench_with_input(BenchmarkId::new("f32_serial", n), &n, |bch, _| {
        bch.iter(|| with_kernel_params(KernelParams::SERIAL, || black_box(a32.matmul(&b32))))
    });
    group.finish();
}

fn gemm_4096(c: &mut Criterion) {
    let n = 4096;
    let mut group = c.benchmark_group("gemm_4096");
    group
        .throughput(flops(n))
        .sample_size(10)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(8));
    let (a32, b32) = square::<f32>(n, 3);
    group.bench_with_input(BenchmarkId::new("f32", n), &n, |bch, _| bch.iter(|| black_box(a32.matmul(&b32))));
    drop((a32, b32));
    let (a64, b64) = square::<f64>(n, 4);
    group.bench_with_input(BenchmarkId::new("f64", n), &n, |bch, _| bch.iter(|| black_box(a64.matmul(&b64))));
    group.finish();
}

criterion_group!(gemm, gemm_1024);
criterion_group!(gemm_large, gemm_4096);
