//! Criterion entry point: `cargo bench --bench bench_main`. The first line printed
//! names the CPU and what the kernels run on it (`adjoint::kernels::describe`); run
//! with `ADJOINT_ISA=avx2` (or `baseline`) to measure the narrower kernels on the same
//! machine.

mod benchmarks;

fn main() {
    println!("kernels: {}", adjoint::kernels::describe());
    benchmarks::realistic::check_references();
    benchmarks::rosenbrock::rosenbrock_n();
    benchmarks::rosenbrock::rosenbrock_2d();
    benchmarks::gemm::gemm();
    benchmarks::gemm::gemm_large();
    benchmarks::tensor::tensor();
    benchmarks::training::training();
    benchmarks::realistic::realistic_programs();
    criterion::Criterion::default().configure_from_args().final_summary();
}
