pub mod gemm;
pub mod realistic;
pub mod rosenbrock;
pub mod tensor;
pub mod training;
