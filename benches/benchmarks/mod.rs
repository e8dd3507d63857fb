pub mod gemm;
pub mod rosenbrock;
pub mod tensor;
pub mod training;
