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

// A contribution `ȳ·∂y/∂x` whose partial is not finite (the `√x` of a negative
// number, `1/0`) where `ȳ` is exactly zero is 0, not 0·NaN = NaN: the value of `y` went
// unused (a skipped sample, an untaken branch, the NaN side of `max`). The rules that
// can meet such a partial compute it first, reading no `ȳ`, and test a detached copy:
// `ȳ·∂` where `∂` is finite, 0 where `ȳ == 0`, and the exact formula otherwise (∞ or
// NaN, or a finite value where only `∂` overflows: `1/x` of a subnormal). The test
// reads only primal values, so the chain of adjoints waits for one multiplication and
// never for the test (testing the contribution itself cost the Newton benchmark a
// third of its gradient time); the attribute that differentiates the rules does not
// expand macros, so each writes the test out. Derivatives of a rule are unaffected:
// the zero is taken only where the partial does not exist, a finite partial keeps its
// formula at ȳ = 0, and the untaken formula is not differentiated (its NaN would come
// back through the unguarded `*` of the second-order code). `*` and the rules whose
// partial is finite wherever their value is (`exp`, `sin`, …) go without: on
// Rosenbrock's gradient a check in `ScalarMul` and `powi` cost 2.2× (0.73 → 1.66 µs at
// n = 1000, Xeon model 167).

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
