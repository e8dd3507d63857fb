//! What the expansion emits when it rejects a function: one mistake, one error.
//!
//! Like thiserror, the macro then still emits the user's function unchanged, the
//! errors, and stubs of every generated item the function's callers may name, with
//! their real types: `grad!(f)(x)` elsewhere has the type it would have had, so the
//! caller's code type-checks and adds no error of its own (a stub returning `!` would
//! leave the caller's types to inference, which then fails on the first use, e.g. "the
//! size of `[f64]` cannot be known"). The stubs are never run: the crate does not
//! compile.
//!
//! ```text
//! fn f(x: &[f64]) -> f64 { … }            // as written
//! compile_error!("… at the offending token …");
//! mod f {
//!     pub fn __adjoint_grad(_: &[f64]) -> Vec<f64> { unreachable!() }
//!     pub mod __adjoint_grad { pub fn __adjoint_d1(_: &[f64], _: Vec<f64>) -> (Vec<f64>,) { … } … }
//!     …
//! }
//! ```

use proc_macro2::{Span, TokenStream};
use quote::{format_ident, quote};
use syn::Ident;

use super::*;

/// How far below the user's function the stubs go when the attribute names no
/// `order`: every order a caller may ask for (the bound of `order`).
const STUB_ORDER: u32 = crate::attr::MAX_ORDER;

/// The stubs of a rejected free function (its module's items) or method (sibling
/// methods), with the types of the generated API. `order` is the attribute's, if given.
pub(super) fn typed(
    sig: &Signature,
    wrt: &[bool],
    order: Option<u32>,
    krate: &syn::Path,
    methods: bool,
) -> TokenStream {
    let order = order.unwrap_or(STUB_ORDER);
    let user = entity_sig(sig);
    let vis = &sig.vis;
    let stubs = Stubs { krate, user: &sig.ident, methods, vis: if methods { quote!(#vis) } else { quote!(pub) } };
    let top = if methods { 0 } else { 1 };
    let mut out = TokenStream::new();

    let d1 = derivative_sig(&user, &internal_grads(&user), Seed::Param, false, false, Some(krate));
    out.extend(stubs.tower(&d1, names::D1, order.saturating_sub(1), 1));
    // The companions of callers that are not differentiated again.
    let (split_params, split) = split_signature(&user, &d1);
    out.extend(stubs.function_named(&stubs.name(names::SPLIT), &split_params, top, Some(&split), true));
    out.extend(stubs.function_named(&stubs.name(names::D1_MASKED), &d1, top, None, true));

    let facing: Vec<GradOut> = wrt.iter().map(|w| if *w { GradOut::Yes } else { GradOut::Omit }).collect();
    let scalar = scalar_output(&user);
    let below = order.saturating_sub(1);
    if scalar {
        let g = derivative_sig(&user, &facing, Seed::One, false, true, Some(krate));
        out.extend(stubs.tower(&g, names::GRAD, below, 1));
        let vg = derivative_sig(&user, &facing, Seed::One, true, true, Some(krate));
        out.extend(stubs.tower(&vg, names::VALUE_AND_GRAD, below, 1));
    } else if !methods {
        // `grad!` of a non-scalar output is a mistake of its own; it gets no types.
        out.extend(untyped_named(sig, &[(names::GRAD, 0), (names::VALUE_AND_GRAD, 0)]));
    }
    let v = derivative_sig(&user, &facing, Seed::Param, false, true, Some(krate));
    out.extend(stubs.tower(&v, names::VJP, below, 1));
    let vv = derivative_sig(&user, &facing, Seed::Param, true, true, Some(krate));
    out.extend(stubs.tower(&vv, names::VALUE_AND_VJP, below, 1));
    // What `backward!` calls when some arguments cannot hold parameters.
    let depositing = backward::depositing(sig, wrt);
    if matches!(backward::source(wrt, &depositing), backward::Source::Params) {
        let grads: Vec<GradOut> = depositing.iter().map(|d| if *d { GradOut::Yes } else { GradOut::Omit }).collect();
        if scalar {
            let e = derivative_sig(&user, &grads, Seed::One, true, false, Some(krate));
            out.extend(stubs.tower(&e, names::PARAMS_VALUE_AND_GRAD, 0, 1));
        }
        let e = derivative_sig(&user, &grads, Seed::Param, true, false, Some(krate));
        out.extend(stubs.tower(&e, names::PARAMS_VALUE_AND_VJP, 0, 1));
    }
    let place = if methods { backward::Place::Method } else { backward::Place::Module };
    out.extend(backward::wrappers(sig, wrt, krate, place, scalar));
    out
}

/// The untyped stubs of a function whose signature itself was rejected: each takes any
/// arguments and returns `!`.
pub(super) fn untyped(sig: &Signature) -> TokenStream {
    untyped_named(
        sig,
        &[
            (names::D1, 1),
            (names::D1_MASKED, 2),
            (names::SPLIT, 1),
            (names::GRAD, 0),
            (names::VALUE_AND_GRAD, 0),
            (names::VJP, 1),
            (names::VALUE_AND_VJP, 1),
            (names::BACKWARD, 0),
            (names::BACKWARD_WITH, 1),
        ],
    )
}

/// Untyped stubs of the given entities, each taking its extra arguments.
fn untyped_named(sig: &Signature, entities: &[(&str, usize)]) -> TokenStream {
    let n = sig.params.len();
    let stub = |fname: &str, extra: usize| {
        let f = Ident::new(fname, Span::call_site());
        let tys: Vec<Ident> = (0..n + extra).map(|i| format_ident!("A{}", i)).collect();
        quote! {
            pub fn #f<#(#tys),*>(#(_: #tys),*) -> ! {
                ::core::unreachable!()
            }
        }
    };
    let mut out = TokenStream::new();
    for (name, extra) in entities {
        out.extend(stub(name, *extra));
    }
    out
}

struct Stubs<'a> {
    krate: &'a syn::Path,
    user: &'a Ident,
    /// The companions are sibling methods (of an `impl`), not items of a module.
    methods: bool,
    vis: TokenStream,
}

impl Stubs<'_> {
    /// A stub and, below it, the stubs of its derivatives down to `below` more orders
    /// (in its module, or as sibling methods).
    fn tower(&self, e: &EntitySig, entity: &str, below: u32, depth: usize) -> TokenStream {
        let name = self.name(entity);
        let f = self.function_named(&name, e, if self.methods { 0 } else { depth }, None, false);
        let next = || derivative_sig(e, &internal_grads(e), Seed::Param, false, false, Some(self.krate));
        if self.methods {
            let mut out = f;
            let mut cur = e.clone();
            let mut cur_name = name.to_string();
            for _ in 0..below {
                cur = derivative_sig(&cur, &internal_grads(&cur), Seed::Param, false, false, Some(self.krate));
                cur_name = reverse::derivative_method(&cur_name);
                let id = Ident::new(&cur_name, self.user.span());
                out.extend(self.function_named(&id, &cur, 0, None, false));
            }
            return out;
        }
        let inner = if below >= 1 { self.tower(&next(), names::D1, below - 1, depth + 1) } else { TokenStream::new() };
        quote! {
            #f
            #[doc(hidden)]
            pub mod #name {
                #[allow(unused_imports)]
                use super::*;
                #inner
            }
        }
    }

    fn name(&self, entity: &str) -> Ident {
        match self.methods {
            true => Ident::new(&names::method_companion(entity, &self.user.to_string()), self.user.span()),
            false => Ident::new(entity, Span::call_site()),
        }
    }

    /// `fn name(_: T…) -> U { unreachable!() }` with the entity's types; a split
    /// function takes no cotangent and returns the value and a pullback; `mask` adds
    /// the trailing mask argument of the masked and split companions.
    fn function_named(
        &self,
        name: &Ident,
        e: &EntitySig,
        depth: usize,
        split: Option<&SplitShape>,
        mask: bool,
    ) -> TokenStream {
        let header = header(self.krate, &self.vis, name, e, depth, split, mask, false);
        quote! {
            #[doc(hidden)]
            #[allow(unused_variables, clippy::all)]
            #header {
                ::core::unreachable!()
            }
        }
    }
}

/// `vis fn name<…>(…) -> … where …` of a companion with the entity's types, `depth`
/// modules below the user's: a split function takes no cotangent and returns the value
/// and a pullback; `mask` adds the trailing mask argument of the masked and split
/// companions. With `named`, the arguments are `arg0`, `arg1`, … (and `mask`), else `_`.
#[allow(clippy::too_many_arguments)]
pub(super) fn header(
    krate: &syn::Path,
    vis: &TokenStream,
    name: &Ident,
    e: &EntitySig,
    depth: usize,
    split: Option<&SplitShape>,
    mask: bool,
    named: bool,
) -> TokenStream {
    let mut generics = e.generics.clone();
    if split.is_some() {
        add_split_lifetime(&mut generics);
    }
    let arg = |i: usize| match named {
        true => {
            let a = format_ident!("arg{}", i);
            quote!(#a)
        }
        false => quote!(_),
    };
    let mut params = Vec::new();
    for (i, p) in e.params.iter().enumerate() {
        if let Some(r) = &p.receiver {
            params.push(receiver_param(r, split.is_some()));
            continue;
        }
        let mut ty = crate::emit::rebase_type(&p.ty, depth);
        if split.is_some() {
            ty = with_lifetime(&ty);
        }
        let a = arg(i);
        params.push(quote!(#a: #ty));
    }
    if mask {
        let m = if named { quote!(mask) } else { quote!(_) };
        params.push(quote!(#m: impl #krate::__private::MaskBits));
    }
    let output = match split {
        Some(shape) => split_output(shape, depth),
        None => {
            let t = crate::emit::rebase_type(&e.output, depth);
            quote!(#t)
        }
    };
    let where_clause = &generics.where_clause;
    quote!(#vis fn #name #generics (#(#params),*) -> #output #where_clause)
}
