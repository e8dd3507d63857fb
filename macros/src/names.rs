//! Names of the generated items.
//!
//! A differentiable free function `f` keeps its name, and everything generated for it
//! lives in a module also named `f` (modules and functions live in different
//! namespaces). Importing `f` with `use` therefore brings its derivative code along,
//! and a path `a::b::f` finds it at `a::b::f::…`. Each generated entity that is itself
//! differentiated (the next order) has a module of its own, so the derivative of the
//! derivative of `f` is `f::__adjoint_d1::__adjoint_d1`.

use proc_macro2::Span;
use syn::{Ident, Path};

/// The derivative companion of an entity: `(args…, cotangent) -> one gradient per argument`.
pub const D1: &str = "__adjoint_d1";
/// `grad!(f)`: gradients of the active arguments for a scalar output.
pub const GRAD: &str = "__adjoint_grad";
/// `value_and_grad!(f)`.
pub const VALUE_AND_GRAD: &str = "__adjoint_value_and_grad";
/// `vjp!(f)`: gradients of the active arguments for a given output cotangent.
pub const VJP: &str = "__adjoint_vjp";

/// `path::entity` for a free function path.
pub fn entity_path(path: &Path, entity: &str) -> Path {
    let mut out = path.clone();
    let span = path.segments.last().map(|s| s.ident.span()).unwrap_or_else(Span::call_site);
    out.segments.push(syn::PathSegment::from(Ident::new(entity, span)));
    // Generic arguments on the function (`f::<T>`) move to the generated function.
    let n = out.segments.len();
    if n >= 2 {
        let args = std::mem::replace(&mut out.segments[n - 2].arguments, syn::PathArguments::None);
        out.segments[n - 1].arguments = args;
    }
    out
}
