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
/// `__adjoint_d1` for a caller that needs the gradients of some arguments only: it
/// takes a trailing `Mask<BITS>` (bit `i` for argument `i`) and calls a variant of the
/// derivative that does not compute the others (they come back as zeros).
pub const D1_MASKED: &str = "__adjoint_d1_masked";
/// The forward sweep of the derivative, split from its reverse sweep: `(args…,
/// Mask<BITS>)` → `(value, pullback)`, where the boxed pullback maps the output's
/// cotangent to one gradient per argument (zeros outside the mask). A caller that
/// needs no higher derivative calls it in its own forward sweep and the pullback in its
/// reverse sweep, so the callee's forward computation is not run twice.
pub const SPLIT: &str = "__adjoint_split";
/// The split derivative computing the gradients of the arguments in a mask only:
/// `__adjoint_split_only_5` (arguments 0 and 2).
pub fn split_only(bits: u64) -> String {
    format!("__adjoint_split_only_{bits}")
}
/// The split derivative computing every gradient.
pub const SPLIT_ALL: &str = "__adjoint_split_all";
/// `grad!(f)`: gradients of the active arguments for a scalar output.
pub const GRAD: &str = "__adjoint_grad";
/// `value_and_grad!(f)`.
pub const VALUE_AND_GRAD: &str = "__adjoint_value_and_grad";
/// `value_and_vjp`: the value and the gradients for a given cotangent (the seeded `backward!`).
pub const VALUE_AND_VJP: &str = "__adjoint_value_and_vjp";
/// What `backward!` runs when some differentiable arguments cannot hold parameters
/// (`&Tensor` data): the value and the gradients of the others only.
pub const PARAMS_VALUE_AND_GRAD: &str = "__adjoint_params_value_and_grad";
/// The seeded form of [`PARAMS_VALUE_AND_GRAD`].
pub const PARAMS_VALUE_AND_VJP: &str = "__adjoint_params_value_and_vjp";
/// `backward!(f(args…))`: value and gradients deposited into the parameters.
pub const BACKWARD: &str = "__adjoint_backward";
/// `backward!(f(args…), seed)`.
pub const BACKWARD_WITH: &str = "__adjoint_backward_with";
/// `vjp!(f)`: gradients of the active arguments for a given output cotangent.
pub const VJP: &str = "__adjoint_vjp";
/// `graph!(f)`: the computation graph of the function.
pub const GRAPH: &str = "__adjoint_graph";

/// Whether a path names an associated function of a type (`Type::f`, `Self::f`,
/// `m::Type::f`): its second-to-last segment is `Self` or starts with an upper-case letter.
pub fn is_type_path(path: &Path) -> bool {
    let n = path.segments.len();
    n >= 2 && {
        let s = path.segments[n - 2].ident.to_string();
        s == "Self" || s.starts_with(|c: char| c.is_ascii_uppercase())
    }
}

/// The name of a method-style companion: `forward` → `__adjoint_grad_forward`; the
/// derivative companion of a companion counts up (`__adjoint_d1_f` → `__adjoint_d2_f`).
pub fn method_companion(entity: &str, name: &str) -> String {
    if entity == D1 {
        if let Some(rest) = name.strip_prefix("__adjoint_d") {
            if let Some((n, base)) = rest.split_once('_') {
                if let Ok(k) = n.parse::<u32>() {
                    return format!("__adjoint_d{}_{}", k + 1, base);
                }
            }
        }
    }
    format!("{entity}_{name}")
}

/// The companion `entity` of the function `path` names: `path::entity` for a free
/// function (its companions live in the module of the same name), `Type::entity_f` for
/// an associated function.
pub fn entity_path(path: &Path, entity: &str) -> Path {
    if is_type_path(path) {
        let mut out = path.clone();
        let last = out.segments.last_mut().expect("non-empty path");
        last.ident = Ident::new(&method_companion(entity, &last.ident.to_string()), last.ident.span());
        return out;
    }
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
