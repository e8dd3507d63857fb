//! # adjoint
//!
//! Compile-time reverse-mode automatic differentiation for Rust. Mark a function
//! `#[differentiable]` and call `grad!`, `value_and_grad!` or `vjp!` on it:
//!
//! ```
//! use adjoint::prelude::*;
//!
//! #[differentiable]
//! fn f(x: f64, y: f64) -> f64 {
//!     (x * y).sin() + x.powi(2)
//! }
//!
//! let (gx, gy) = grad!(f)(1.0, 2.0);
//! assert!((gx - (2.0 * 2.0_f64.cos() + 2.0)).abs() < 1e-12);
//! assert!((gy - 2.0_f64.cos()).abs() < 1e-12);
//! ```
//!
//! The derivative code is generated at compile time as ordinary Rust: no tape for
//! straight-line code, and only the values a loop overwrites are recorded at run time.

pub use adjoint_macros::{backward, differentiable, grad, graph, value_and_grad, vjp};
pub use adjoint_runtime::kernels;
pub use adjoint_runtime::{
    cross_entropy, detach, graph, join_path, mse_loss, nalgebra, nn, optim, relu, rules, tensor, Adam, Adjoint,
    Differentiable, Float, Linear, Param, Primal, Rng, Seed, Sgd, Tangent, Tape, Tensor, UpdateInPlace, ZeroTangent,
};

/// Everything needed to write and differentiate functions.
pub mod prelude {
    pub use crate::{
        backward, cross_entropy, detach, differentiable, grad, graph, mse_loss, relu, value_and_grad, vjp, Adam,
        Differentiable, Float, Linear, Param, Rng, Sgd, Tensor,
    };
}

#[doc(hidden)]
pub use adjoint_runtime::__private;
