//! Helpers that write into `&mut` buffers (`fn forces(x: &[f64], out: &mut [f64])`, the
//! C style): differentiated through their pure form, which takes the buffers' old
//! contents and returns their new ones after the value,
//!
//! ```text
//! fn __pure(x: &[f64], out: &[f64]) -> (R, Vec<f64>) {
//!     let mut out = out.to_vec();
//!     …the body…                      // `return e` becomes `return (e, out)`
//!     (tail, out)                     // `((), out)` for a unit function
//! }
//! ```
//!
//! A call `forces(&x, &mut buf)` in a `#[differentiable]` body is lowered to
//! `forces::__pure(&x, &buf)` followed by copying the new contents into `buf`.

use proc_macro2::TokenStream;
use quote::{format_ident, quote_spanned};
use syn::visit_mut::VisitMut;
use syn::{parse_quote_spanned, spanned::Spanned, FnArg, Ident, ItemFn, Pat, Type};

/// The pure form of `item`, if it has `&mut` slice or `Vec` parameters.
pub fn pure_item(item: &ItemFn) -> Option<ItemFn> {
    let mut outputs: Vec<(Ident, Type)> = Vec::new();
    let mut f = item.clone();
    for input in &mut f.sig.inputs {
        let FnArg::Typed(pt) = input else { continue };
        let Type::Reference(r) = &*pt.ty else { continue };
        if r.mutability.is_none() {
            continue;
        }
        let Some(elem) = buffer_elem(&r.elem) else { continue };
        let Pat::Ident(name) = &*pt.pat else { continue };
        let span = pt.ty.span();
        outputs.push((name.ident.clone(), elem.clone()));
        *pt.ty = parse_quote_spanned!(span=> &[#elem]);
    }
    if outputs.is_empty() {
        return None;
    }
    let span = item.sig.ident.span();
    let names: Vec<&Ident> = outputs.iter().map(|(n, _)| n).collect();
    let value_ty: Type = match &item.sig.output {
        syn::ReturnType::Default => parse_quote_spanned!(span=> ()),
        syn::ReturnType::Type(_, t) => (**t).clone(),
    };
    let elems = outputs.iter().map(|(_, e)| e);
    f.sig.output = parse_quote_spanned!(span=> -> (#value_ty, #(::std::vec::Vec<#elems>,)*));
    f.sig.ident = Ident::new("__pure", span);
    f.vis = parse_quote_spanned!(span=> pub);
    f.attrs.retain(|a| !a.path().is_ident("differentiable"));
    let mut body = (*item.block).clone();
    ReturnWithOutputs { names: &names }.visit_block_mut(&mut body);
    // The tail value, if any, goes out with the buffers; a unit function's tail is a
    // statement.
    let unit = matches!(item.sig.output, syn::ReturnType::Default);
    let tail: syn::Expr = match body.stmts.pop() {
        Some(syn::Stmt::Expr(e, None)) if !unit => e,
        Some(syn::Stmt::Expr(e, None)) => {
            body.stmts.push(syn::Stmt::Expr(e, Some(Default::default())));
            parse_quote_spanned!(span=> ())
        }
        Some(other) => {
            body.stmts.push(other);
            parse_quote_spanned!(span=> ())
        }
        None => parse_quote_spanned!(span=> ()),
    };
    let stmts = &body.stmts;
    f.block = Box::new(parse_quote_spanned! {span=>
        {
            #(let mut #names = #names.to_vec();)*
            #(#stmts)*
            (#tail, #(#names,)*)
        }
    });
    Some(f)
}

/// `T` of `[T]` or `Vec<T>`.
fn buffer_elem(ty: &Type) -> Option<&Type> {
    match ty {
        Type::Slice(s) => Some(&s.elem),
        Type::Path(p) => {
            let last = p.path.segments.last()?;
            if last.ident != "Vec" {
                return None;
            }
            match &last.arguments {
                syn::PathArguments::AngleBracketed(a) => match a.args.first()? {
                    syn::GenericArgument::Type(t) => Some(t),
                    _ => None,
                },
                _ => None,
            }
        }
        _ => None,
    }
}

/// `return e` → `return (e, out…)` (closures and nested items keep their own returns),
/// and `&mut` parameters passed on become `&mut` borrows of the local buffers.
struct ReturnWithOutputs<'a> {
    names: &'a [&'a Ident],
}

impl VisitMut for ReturnWithOutputs<'_> {
    fn visit_expr_mut(&mut self, e: &mut syn::Expr) {
        if let syn::Expr::Return(r) = e {
            let span = r.span();
            let names = self.names;
            let mut value: syn::Expr = match r.expr.take() {
                Some(v) => *v,
                None => parse_quote_spanned!(span=> ()),
            };
            self.visit_expr_mut(&mut value);
            *e = parse_quote_spanned!(span=> return (#value, #(#names,)*));
            return;
        }
        syn::visit_mut::visit_expr_mut(self, e);
    }
    /// `forces(x, out)` passing a `&mut` parameter on (an implicit reborrow): `out` is a
    /// local buffer in the pure form, so it is passed as `&mut out`.
    fn visit_expr_call_mut(&mut self, c: &mut syn::ExprCall) {
        for a in &mut c.args {
            if let syn::Expr::Path(p) = a {
                if p.path.get_ident().is_some_and(|i| self.names.contains(&i)) {
                    let span = p.span();
                    *a = parse_quote_spanned!(span=> &mut #p);
                }
            }
        }
        syn::visit_mut::visit_expr_call_mut(self, c);
    }
    fn visit_expr_closure_mut(&mut self, _: &mut syn::ExprClosure) {}
    fn visit_item_mut(&mut self, _: &mut syn::Item) {}
}

/// The pure form of a function that writes into no argument: a compile error at the
/// call. A helper writing into `&mut` buffers that passes one of them on by name
/// (`total(out)`) is taken to let the callee write into it, since the macro cannot see
/// the callee's signature; when the callee only reads it, this says how to write that.
pub fn reads_only(item: &ItemFn) -> TokenStream {
    let span = item.sig.ident.span();
    let name = item.sig.ident.to_string();
    let message = format!("`{name}` does not write into its arguments, but is passed an output buffer to write into");
    let note = format!(
        "a `&mut` parameter passed on by name (`{name}(out)`) is taken as one the callee writes into; to let `{name}` read it, pass `&out[..]`"
    );
    let trait_name = format_ident!("ReadsOnly", span = span);
    let refusal = super::refusal_trait(&trait_name, &message, "reads its arguments only", &note);
    let pure = super::refusing_fn(&Ident::new("__pure", span), item.sig.inputs.len(), &trait_name, true);
    quote_spanned! {span=>
        #refusal
        #pure
    }
}

/// `grad!`, `value_and_grad!`, `vjp!` and `graph!` of a helper writing into `&mut`
/// buffers: a compile error at the call that says what to do instead.
pub fn entry_points(item: &ItemFn) -> TokenStream {
    let span = item.sig.ident.span();
    let name = item.sig.ident.to_string();
    let message = format!(
        "`{name}` writes into `&mut` arguments: its derivative is taken where a `#[differentiable]` function calls it"
    );
    let note = format!(
        "call `{name}(…, &mut buf)` from a `#[differentiable]` function and take `grad!` of that one, or return the buffer from `{name}` instead of writing into it"
    );
    let n = item.sig.inputs.len();
    let trait_name = format_ident!("WritesIntoArguments", span = span);
    let refusal = super::refusal_trait(&trait_name, &message, "not differentiable on its own", &note);
    let entries = [
        (crate::names::GRAD, n),
        (crate::names::VALUE_AND_GRAD, n),
        (crate::names::VJP, n + 1),
        (crate::names::GRAPH, 0),
    ]
    .map(|(f, arity)| super::refusing_fn(&format_ident!("{}", f, span = span), arity, &trait_name, false));
    quote_spanned! {span=>
        #refusal
        #(#entries)*
    }
}
