//! The entry points of `backward!`: PyTorch's `loss.backward()` for adjoint.
//!
//! `backward!(f(args…))` calls `f::__adjoint_backward(args…)`, generated here beside
//! the other companions. It runs `value_and_grad` (or, for the seeded form
//! `backward!(f(args…), seed)`, `value_and_vjp`), then adds each gradient into the
//! parameters held by the arguments it came from ([`Differentiable::deposit`]), and
//! returns the value. Only arguments passed by shared reference whose type the macro
//! cannot see (`&Param<Tensor>`, `&Model`, `&self`) can hold parameters. The gradients
//! of the others (owned values, float data, `&Tensor` inputs) would be dropped, so when
//! there are such arguments the wrappers call a derivative that does not compute them
//! (`__adjoint_params_value_and_grad`): a network's input batch costs no gradient.

use proc_macro2::{Span, TokenStream};
use quote::{format_ident, quote};
use syn::Ident;

use crate::emit::rebase_type;
use crate::names;
use crate::sig::{Class, Signature};

/// How the wrappers reach the functions they call.
pub enum Place {
    /// Free functions in the module named after the user's function (depth 1).
    Module,
    /// Sibling methods in the user's `impl` block.
    Method,
}

/// Which arguments `backward!` deposits gradients into: those of `wrt` that can hold
/// parameters.
pub fn depositing(sig: &Signature, wrt: &[bool]) -> Vec<bool> {
    (0..sig.params.len()).map(|i| wrt[i] && holds_params(sig, i)).collect()
}

/// Which derivatives the wrappers call.
pub enum Source {
    /// `__adjoint_value_and_grad` / `__adjoint_value_and_vjp`: every gradient they
    /// compute is deposited.
    Facing,
    /// `__adjoint_params_value_and_*`: gradients of the depositing arguments only.
    Params,
}

/// `__adjoint_backward` (when the output is scalar) and `__adjoint_backward_with`.
pub fn wrappers(sig: &Signature, wrt: &[bool], krate: &syn::Path, place: Place, scalar: bool) -> TokenStream {
    let depositing = depositing(sig, wrt);
    let source = source(wrt, &depositing);
    // The arguments whose gradients the called derivative returns, in order.
    let returned: Vec<usize> = match source {
        Source::Facing => (0..sig.params.len()).filter(|&i| wrt[i]).collect(),
        Source::Params => (0..sig.params.len()).filter(|&i| depositing[i]).collect(),
    };
    // User-facing derivatives return a single gradient as itself, internal ones a tuple.
    let bare_single = matches!(source, Source::Facing) && returned.len() == 1;
    let depth = match place {
        Place::Module => 1,
        Place::Method => 0,
    };
    let mut params = Vec::new();
    let mut args = Vec::new();
    for (i, p) in sig.params.iter().enumerate() {
        match &p.receiver {
            Some(r) => {
                let (and, lifetime, mutability) = (&r.reference.as_ref().map(|(a, _)| a), &r.reference, &r.mutability);
                let lifetime = lifetime.as_ref().and_then(|(_, l)| l.as_ref());
                params.push(quote!(#and #lifetime #mutability self));
                args.push(quote!(self));
            }
            None => {
                let a = format_ident!("arg{}", i);
                let ty = rebase_type(&p.ty, depth);
                params.push(quote!(#a: #ty));
                args.push(quote!(#a));
            }
        }
    }
    let deposits: Vec<TokenStream> = returned
        .iter()
        .enumerate()
        .filter(|(_, &i)| depositing[i])
        .map(|(k, &i)| {
            let grad = if bare_single {
                quote!(grads)
            } else {
                let k = syn::Index::from(k);
                quote!(grads.#k)
            };
            let arg = &args[i];
            quote!(#krate::Differentiable::deposit(&#arg, &#grad);)
        })
        .collect();
    let generics = &sig.generics;
    let where_clause = &generics.where_clause;
    let output = rebase_type(&sig.output_type(), depth);
    let vis = match place {
        Place::Module => quote!(pub),
        Place::Method => {
            let v = &sig.vis;
            quote!(#v)
        }
    };
    let name = |entity: &str| match place {
        Place::Module => Ident::new(entity, Span::call_site()),
        Place::Method => Ident::new(&names::method_companion(entity, &sig.ident.to_string()), sig.ident.span()),
    };
    let call = |entity: &str, extra: Option<TokenStream>| match place {
        Place::Module => {
            let f = name(entity);
            let extra = extra.into_iter();
            quote!(self::#f(#(#args,)* #(#extra)*))
        }
        Place::Method => {
            let f = name(entity);
            let extra: Vec<TokenStream> = extra.into_iter().collect();
            if sig.params.first().is_some_and(|p| p.receiver.is_some()) {
                let rest = &args[1..];
                quote!(self.#f(#(#rest,)* #(#extra)*))
            } else {
                quote!(Self::#f(#(#args,)* #(#extra)*))
            }
        }
    };
    let backward = name(names::BACKWARD);
    let backward_with = name(names::BACKWARD_WITH);
    // `let (value, grads) = …;` and the deposits.
    let body = |entity: &str, extra: Option<TokenStream>| {
        let derivative = call(entity, extra);
        quote! {
            let (value, grads) = #derivative;
            #(#deposits)*
        }
    };
    let (vag, vvjp) = match source {
        Source::Params => (names::PARAMS_VALUE_AND_GRAD, names::PARAMS_VALUE_AND_VJP),
        Source::Facing => (names::VALUE_AND_GRAD, names::VALUE_AND_VJP),
    };
    let unseeded = if scalar {
        let body = body(vag, None);
        quote! {
            #[doc(hidden)]
            #[allow(clippy::too_many_arguments, unused_variables)]
            #vis fn #backward #generics (#(#params),*) -> #output #where_clause {
                #body
                value
            }
        }
    } else {
        TokenStream::new()
    };
    let body = body(vvjp, Some(quote!(seed)));
    quote! {
        #unseeded
        #[doc(hidden)]
        #[allow(clippy::too_many_arguments, unused_variables)]
        #vis fn #backward_with #generics (#(#params,)* seed: <#output as #krate::__private::Tangent>::Tangent) -> #output #where_clause {
            #body
            value
        }
    }
}

/// Which derivative the wrappers call, given the arguments they deposit into. When
/// nothing holds parameters, `backward!` is only a value: the facing derivative serves.
pub fn source(wrt: &[bool], depositing: &[bool]) -> Source {
    if depositing == wrt || !depositing.iter().any(|d| *d) {
        Source::Facing
    } else {
        Source::Params
    }
}

/// Whether argument `i` can hold parameters: a shared borrow of a type the macro
/// cannot see, or the `&self` receiver.
fn holds_params(sig: &Signature, i: usize) -> bool {
    let p = &sig.params[i];
    if p.class != Class::Opaque {
        return false;
    }
    match &p.receiver {
        Some(r) => r.reference.is_some() && r.mutability.is_none(),
        None => matches!(&p.ty, syn::Type::Reference(r) if r.mutability.is_none() && !is_plain_data(&r.elem)),
    }
}

/// Tensors and matrices: differentiable values that hold no parameter (their gradient
/// is the caller's to ask for with `grad!`, never deposited).
fn is_plain_data(ty: &syn::Type) -> bool {
    const DATA: &[&str] = &["Tensor", "DMatrix", "DVector", "SMatrix", "SVector", "Matrix"];
    match ty {
        syn::Type::Path(p) if p.qself.is_none() => {
            p.path.segments.last().is_some_and(|s| DATA.contains(&s.ident.to_string().as_str()))
        }
        _ => false,
    }
}
