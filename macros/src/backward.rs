//! The entry points of `backward!`: PyTorch's `loss.backward()` for adjoint.
//!
//! `backward!(f(args…))` calls `f::__adjoint_backward(args…)`, generated here beside
//! the other companions. It runs `value_and_grad` (or, for the seeded form
//! `backward!(f(args…), seed)`, `value_and_vjp`), then adds each gradient into the
//! parameters held by the arguments it came from ([`Differentiable::deposit`]), and
//! returns the value. Only arguments passed by shared reference whose type the macro
//! cannot see (`&Param<Tensor>`, `&Model`, `&self`) can hold parameters; the gradients
//! of the others (owned values, float data) are dropped.

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

/// `__adjoint_backward` (when the output is scalar) and `__adjoint_backward_with`.
pub fn wrappers(sig: &Signature, wrt: &[bool], krate: &syn::Path, place: Place, scalar: bool) -> TokenStream {
    let facing: Vec<usize> = (0..sig.params.len()).filter(|&i| wrt[i]).collect();
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
    let deposits: Vec<TokenStream> = facing
        .iter()
        .enumerate()
        .filter(|(_, &i)| holds_params(sig, i))
        .map(|(k, &i)| {
            let grad = match facing.len() {
                1 => quote!(grads),
                _ => {
                    let k = syn::Index::from(k);
                    quote!(grads.#k)
                }
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
    let unseeded = if scalar {
        let vag = call(names::VALUE_AND_GRAD, None);
        quote! {
            #[doc(hidden)]
            #[allow(clippy::too_many_arguments, unused_variables)]
            #vis fn #backward #generics (#(#params),*) -> #output #where_clause {
                let (value, grads) = #vag;
                #(#deposits)*
                value
            }
        }
    } else {
        TokenStream::new()
    };
    let vvjp = call(names::VALUE_AND_VJP, Some(quote!(seed)));
    quote! {
        #unseeded
        #[doc(hidden)]
        #[allow(clippy::too_many_arguments, unused_variables)]
        #vis fn #backward_with #generics (#(#params,)* seed: <#output as #krate::__private::Tangent>::Tangent) -> #output #where_clause {
            let (value, grads) = #vvjp;
            #(#deposits)*
            value
        }
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
        None => matches!(&p.ty, syn::Type::Reference(r) if r.mutability.is_none()),
    }
}
