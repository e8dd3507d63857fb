//! Criterion entry point: `cargo bench --bench bench_main`.

use criterion::criterion_main;

mod benchmarks;

criterion_main! {
    benchmarks::rosenbrock::rosenbrock_n,
    benchmarks::rosenbrock::rosenbrock_2d,
    benchmarks::gemm::gemm,
    benchmarks::gemm::gemm_large,
    benchmarks::tensor::tensor,
    benchmarks::training::training,
}
