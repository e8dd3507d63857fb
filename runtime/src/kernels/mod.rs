//! Compute kernels of the tensors.
//!
//! Kernels know nothing about differentiation, and nothing about [`Tensor`]: they take
//! strided views of slices ([`layout::View`]), an explicit [`KernelParams`] (the
//! parallelism policy and every size threshold), and write fresh row-major buffers.
//!
//! - [`params`]: [`Par`], [`KernelParams`] and how the ones in force are chosen.
//! - [`layout`]: views, broadcasting, and the [`layout::Plan`] that walks strided
//!   operands as contiguous runs.
//! - [`unary`], [`binary`]: elementwise maps (fresh and in place).
//! - [`reduce`]: full and axis reductions, argmax.
//! - [`softmax`]: softmax, log-softmax and the fused cross-entropy.
//! - [`isa`]: instruction-set levels, their detection, and the dispatch of loops to
//!   AVX-512 / AVX2; [`describe`] says what was detected and what runs.
//! - [`gemm`] (the contract, and the packed product: tiles, packing, blocking),
//!   [`gemv`] and [`narrow`] (products with a unit or a narrow side) and [`matmul`]
//!   (batch dispatch).
//!
//! [`Tensor`]: crate::tensor::Tensor

pub(crate) mod binary;
pub(crate) mod dims;
pub(crate) mod gemm;
pub(crate) mod gemv;
pub(crate) mod isa;
pub(crate) mod layout;
pub(crate) mod matmul;
#[cfg(target_arch = "x86_64")]
pub(crate) mod narrow;
pub(crate) mod params;
pub(crate) mod reduce;
pub(crate) mod softmax;
pub(crate) mod unary;

pub use isa::{describe, Isa};
pub use params::{in_thread_pool, set_kernel_params, with_kernel_params, Cost, KernelParams, Par};
