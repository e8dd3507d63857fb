//! The derivative rules: one trait per primitive.
//!
//! Generated code calls `rules::Trait::method(&ybar, &needed…)`, where `ybar` is the
//! adjoint of the primitive's result, and gets the contribution to one operand's
//! adjoint. Which implementation runs is decided by rustc from the argument types, so
//! the same generated code serves `f32`, `f64`, tensors and nalgebra matrices.
//!
//! Each method's documentation states the derivative it applies. A rule reads only the
//! values it needs; the macro's table (`adjoint-macros/src/ops.rs`) lists them so the
//! reverse sweep keeps nothing else.

mod binary;
mod nalgebra;
mod special;
mod tensor;
mod unary;

pub use binary::*;
pub use nalgebra::*;
pub use special::*;
pub use tensor::*;
pub use unary::*;
