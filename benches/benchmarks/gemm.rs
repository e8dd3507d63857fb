//! Matrix products through `Tensor::matmul`: f32 and f64 at 1024³ (also with a
//! transposed, strided left operand, and forced serial as the baseline), an MLP layer's
//! `x·Wᵀ` (128×784·784×256), and 4096³; beside each, the `gemm` crate on the same
//! operands in the same run (`crate_*`: its own two-thread split, and serial).
//!
//! The throughput is in FLOP (`2·m·n·k` per product), so criterion's "elem/s" reads as
//! FLOP/s. NumPy's OpenBLAS on the same machine: `shared/anchors/baselines.py matmul`.

use std::hint::black_box;
use std::time::Duration;

use adjoint_runtime::tensor::{with_kernel_params, KernelParams, Tensor};
use adjoint_runtime::{Float, Rng};

/// `a · b` by the `gemm` crate (row-major `m × k` and `k × n`, or `b` given as the
/// row-major `n × k` matrix it is the transpose of), on `threads` threads.
fn crate_product<E: Float>(
    a: &[E],
    b: &[E],
    (m, k, n): (usize, usize, usize),
    b_transposed: bool,
    threads: usize,
) -> Vec<E> {
    let mut c = vec![E::ZERO; m * n];
    let par = if threads > 1 { gemm::Parallelism::Rayon(threads) } else { gemm::Parallelism::None };
    let (b_cs, b_rs) = if b_transposed { (k as isize, 1) } else { (1, n as isize) };
    // SAFETY: the slices hold the matrices their shapes and strides describe.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            c.as_mut_ptr(),
            1,
            n as isize,
            false,
            a.as_ptr(),
            1,
            k as isize,
            b.as_ptr(),
            b_cs,
            b_rs,
            E::ZERO,
            E::ONE,
            false,
            false,
            false,
            par,
        );
    }
    c
}
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
    group.bench_with_input(BenchmarkId::new("f64_serial", n), &n, |bch, _| {
        bch.iter(|| with_kernel_params(KernelParams::SERIAL, || black_box(a64.matmul(&b64))))
    });
    // The `gemm` crate on the same operands.
    let (va32, vb32, va64, vb64) = (a32.to_vec(), b32.to_vec(), a64.to_vec(), b64.to_vec());
    let threads = KernelParams::DEFAULT.threads();
    group.bench_with_input(BenchmarkId::new("crate_f32", n), &n, |bch, _| {
        bch.iter(|| black_box(crate_product(&va32, &vb32, (n, n, n), false, threads)))
    });
    group.bench_with_input(BenchmarkId::new("crate_f64", n), &n, |bch, _| {
        bch.iter(|| black_box(crate_product(&va64, &vb64, (n, n, n), false, threads)))
    });
    group.bench_with_input(BenchmarkId::new("crate_f32_serial", n), &n, |bch, _| {
        bch.iter(|| black_box(crate_product(&va32, &vb32, (n, n, n), false, 1)))
    });
    group.bench_with_input(BenchmarkId::new("crate_f64_serial", n), &n, |bch, _| {
        bch.iter(|| black_box(crate_product(&va64, &vb64, (n, n, n), false, 1)))
    });
    group.finish();

    // A linear layer's forward product, x·Wᵀ with W row-major (so Wᵀ is column-major).
    let (m, k, n) = (128, 784, 256);
    let mut group = c.benchmark_group("gemm_layer");
    group.throughput(Throughput::Elements(2 * (m * k * n) as u64)).measurement_time(Duration::from_secs(3));
    let mut rng = Rng::seed_from_u64(5);
    let (x, w) = (Tensor::<f32>::randn(&[m, k], &mut rng), Tensor::<f32>::randn(&[n, k], &mut rng));
    let wt = w.t();
    let (vx, vw) = (x.to_vec(), w.to_vec());
    group.bench_function("x_wt_128x784x256", |bch| bch.iter(|| black_box(x.matmul(&wt))));
    group.bench_function("x_wt_128x784x256_in_pool", |bch| {
        bch.iter(|| adjoint_runtime::tensor::in_thread_pool(|| black_box(x.matmul(&wt))))
    });
    group.bench_function("crate_x_wt_128x784x256", |bch| {
        bch.iter(|| black_box(crate_product(&vx, &vw, (m, k, n), true, threads)))
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
