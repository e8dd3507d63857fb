pub mod rosenbrock;
