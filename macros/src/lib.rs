//! The procedural macros of `adjoint`: compile-time reverse-mode automatic
//! differentiation by source transformation.
//!
//! `#[differentiable]` is a small compiler, one stage per module:
//!
//! | stage | module | job |
//! |---|---|---|
//! | parse | [`attr`], [`sig`] | attribute arguments; which parameters are differentiable |
//! | lower | [`lower`] | the body → the IR of [`ir`] (A-normal form, cells, buffers, structured loops) |
//! | analyse | [`activity`] | which values carry derivatives |
//! | transform | [`reverse`] | IR → IR: forward sweep, what to save or recompute, reverse sweep |
//! | emit | [`emit`], [`expand`] | IR → Rust; the tower of derivative companions |
//! | describe | [`graph`] | IR → the computation graph `graph!(f)` returns |
//!
//! The derivative rules themselves live in `adjoint-runtime`; [`ops`] only maps syntax
//! to the rule traits. Errors are collected in [`ctxt`] and reported at the user's tokens.

mod activity;
mod attr;
mod backward;
mod ctxt;
mod derive;
mod desugar;
mod emit;
mod expand;
mod graph;
mod ir;
mod labels;
mod lower;
mod names;
mod ops;
mod reverse;
mod sig;

use proc_macro::TokenStream;
use quote::quote;

/// Make a function differentiable: generates its derivative code at compile time.
///
/// ```ignore
/// #[differentiable]
/// fn f(x: f64, y: f64) -> f64 { (x * y).sin() + x.powi(2) }
/// let (gx, gy) = grad!(f)(1.0, 2.0);
/// ```
///
/// Arguments: `wrt(a, b)` restricts the gradients `grad!`/`vjp!` return; `order = N`
/// sets how many derivatives may be nested through the function (default 2, or 1 when
/// the body itself calls `grad!`, `vjp!` or `value_and_grad!`).
#[proc_macro_attribute]
pub fn differentiable(args: TokenStream, item: TokenStream) -> TokenStream {
    let args = match syn::parse::<attr::Args>(args) {
        Ok(a) => a,
        Err(e) => {
            let item = proc_macro2::TokenStream::from(item);
            let err = e.to_compile_error();
            return quote!(#item #err).into();
        }
    };
    if let Ok(t) = syn::parse::<syn::ItemTrait>(item.clone()) {
        return expand::differentiable_trait(args, t).into();
    }
    if let Ok(i) = syn::parse::<syn::ItemImpl>(item.clone()) {
        return expand::differentiable_impl(args, i).into();
    }
    match syn::parse::<syn::ItemFn>(item.clone()) {
        Ok(f) => expand::differentiable(args, f).into(),
        Err(_) => {
            let item2 = proc_macro2::TokenStream::from(item);
            let err =
                syn::Error::new_spanned(&item2, "`#[differentiable]` applies to functions, traits and `impl` blocks")
                    .to_compile_error();
            quote!(#item2 #err).into()
        }
    }
}

fn entity(input: TokenStream, entity: &str, which: &str) -> TokenStream {
    match syn::parse::<syn::Path>(input) {
        Ok(path) => {
            let p = names::entity_path(&path, entity);
            quote!(#p).into()
        }
        Err(e) => syn::Error::new(
            e.span(),
            format!("`{which}!` takes the path of a `#[differentiable]` function: `{which}!(f)`"),
        )
        .to_compile_error()
        .into(),
    }
}

/// The gradient of a `#[differentiable]` function with a scalar output: `grad!(f)(args…)`
/// returns one gradient per active argument (the gradient itself for a single one).
#[proc_macro]
pub fn grad(input: TokenStream) -> TokenStream {
    entity(input, names::GRAD, "grad")
}

/// `value_and_grad!(f)(args…)` returns `(f(args…), grad!(f)(args…))` from one evaluation.
#[proc_macro]
pub fn value_and_grad(input: TokenStream) -> TokenStream {
    entity(input, names::VALUE_AND_GRAD, "value_and_grad")
}

/// The vector-Jacobian product: `vjp!(f)(args…, cotangent)` for a function with any
/// output; the last argument has the output's type.
#[proc_macro]
pub fn vjp(input: TokenStream) -> TokenStream {
    entity(input, names::VJP, "vjp")
}

/// The computation graph of a `#[differentiable]` function, as the macro sees it:
/// `graph!(f)` returns an `adjoint::graph::Graph` (parameters, operations, constants,
/// the output, and the loops and branches around them) whose `to_dot()` is Graphviz
/// DOT. A method is named through its type: `graph!(Model::loss)`.
///
/// ```ignore
/// #[differentiable]
/// fn f(a: f64, b: f64) -> f64 { (a + b) * b.powi(2) }
/// std::fs::write("f.dot", graph!(f).to_dot())?;
/// ```
#[proc_macro]
pub fn graph(input: TokenStream) -> TokenStream {
    match syn::parse::<syn::Path>(input) {
        Ok(mut path) => {
            // The graph is the same for every instantiation of a generic function: its
            // companion has no generic parameters (a type's arguments stay on the type).
            if !names::is_type_path(&path) {
                if let Some(last) = path.segments.last_mut() {
                    last.arguments = syn::PathArguments::None;
                }
            }
            let p = names::entity_path(&path, names::GRAPH);
            quote!(#p()).into()
        }
        Err(e) => syn::Error::new(e.span(), "`graph!` takes the path of a `#[differentiable]` function: `graph!(f)`")
            .to_compile_error()
            .into(),
    }
}

/// PyTorch's `loss.backward()`: `backward!(f(args…))` evaluates `f`, adds the gradient
/// of its scalar output into every parameter held by the arguments passed by reference
/// (`&Param<_>`, `&model`, the receiver of `backward!(model.loss(…))`), and returns the
/// value. `backward!(f(args…), seed)` does the same for any output, with `seed` its
/// cotangent.
#[proc_macro]
pub fn backward(input: TokenStream) -> TokenStream {
    backward_call(input.into()).unwrap_or_else(|e| e.to_compile_error()).into()
}

fn backward_call(input: proc_macro2::TokenStream) -> syn::Result<proc_macro2::TokenStream> {
    use syn::punctuated::Punctuated;
    let usage = "`backward!` takes a call of a `#[differentiable]` function: `backward!(f(args…))`, \
                 `backward!(model.loss(args…))`, or with a seed `backward!(f(args…), seed)`";
    let parts = syn::parse::Parser::parse2(Punctuated::<syn::Expr, syn::Token![,]>::parse_terminated, input.clone())?;
    let mut parts = parts.into_iter();
    let (Some(call), seed, None) = (parts.next(), parts.next(), parts.next()) else {
        return Err(syn::Error::new_spanned(input, usage));
    };
    let entity = if seed.is_some() { names::BACKWARD_WITH } else { names::BACKWARD };
    let seed = seed.into_iter();
    match call {
        syn::Expr::Call(c) => {
            let syn::Expr::Path(p) = &*c.func else {
                return Err(syn::Error::new_spanned(&c.func, usage));
            };
            let path = names::entity_path(&p.path, entity);
            let args = c.args.iter();
            Ok(quote!(#path(#(#args,)* #(#seed)*)))
        }
        syn::Expr::MethodCall(m) => {
            let recv = &m.receiver;
            let name = syn::Ident::new(&names::method_companion(entity, &m.method.to_string()), m.method.span());
            let args = m.args.iter();
            Ok(quote!(#recv.#name(#(#args,)* #(#seed)*)))
        }
        other => Err(syn::Error::new_spanned(other, usage)),
    }
}

/// Make a struct of parameters, tensors, floats and other such structs differentiable:
/// its gradient is a struct of the same shape (`NameTangent`), and `parameters()` /
/// `named_parameters()` walk its `Param`s in field order with dotted paths.
#[proc_macro_derive(Differentiable, attributes(adjoint))]
pub fn derive_differentiable(input: TokenStream) -> TokenStream {
    match syn::parse::<syn::DeriveInput>(input) {
        Ok(input) => derive::derive(input).unwrap_or_else(|e| e.to_compile_error()).into(),
        Err(e) => e.to_compile_error().into(),
    }
}
