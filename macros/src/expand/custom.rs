//! `#[differentiable(custom_vjp = f_vjp)]`: a function whose derivative the user gives.
//!
//! The body of `f` is not transformed at all (it may call C, BLAS, or run a solver whose
//! iterations should not be differentiated). `f_vjp` takes the same arguments and
//! returns the value and a pullback, JAX's `custom_vjp` and Swift's `@derivative(of:)`
//! in one function:
//!
//! ```text
//! fn f_vjp(x: f64, y: &[f64]) -> (f64, impl FnOnce(f64) -> (f64, Vec<f64>) + '_)
//! ```
//!
//! The pullback maps the output's cotangent to one gradient per differentiable argument,
//! in order (the gradient itself when there is one), which is what `vjp!(f)` returns.
//! The expansion is the module `f` every caller expects (see [`crate::names`]): the
//! internal derivative, the split and masked forms, and the user-facing entities, each
//! a call of `f_vjp`. A custom derivative is first order: the companions one level
//! further down are compile errors that say so.

use proc_macro2::{Span, TokenStream};
use quote::{format_ident, quote, quote_spanned};
use syn::Ident;

use super::stubs::header;
use super::*;

/// The module's adapter around the user's `f_vjp` (see [`Custom::adapter`]).
const ADAPTER: &str = "__adjoint_custom";

pub(super) fn expand(args: &Args, item: &syn::ItemFn, vjp: &syn::Path) -> TokenStream {
    let mut cx = Ctxt::new();
    let krate: syn::Path = args.krate.clone().unwrap_or_else(|| syn::parse_quote!(::adjoint));
    let sig = Signature::parse(&item.sig, &item.vis, &mut cx);
    let primal = primal_item(item);
    if let Some((_, lit)) = &args.order {
        if lit.base10_parse::<u32>().ok() != Some(1) {
            cx.error_spanned_by(
                lit,
                "a custom derivative is first order: remove `order`, or differentiate a function written without `custom_vjp`",
            );
        }
    }
    if let Some(p) = sig.params.first().filter(|p| p.receiver.is_some()) {
        cx.error_spanned_by(
            p.receiver.as_ref().expect("a receiver"),
            "`custom_vjp` applies to free functions; call a free function with the custom derivative from the method",
        );
    }
    let wrt = if cx.has_errors() { Vec::new() } else { check_wrt(args, &sig, &mut cx) };
    if cx.has_errors() {
        let stubs = stubs::untyped(&sig);
        return with_errors(primal, &sig, &krate, cx, stubs);
    }
    let custom = Custom { krate: &krate, sig: &sig, user: entity_sig(&sig), vjp: crate::emit::rebase(vjp, 1) };
    with_module(&primal, &sig, custom.companions(&wrt))
}

struct Custom<'a> {
    krate: &'a syn::Path,
    sig: &'a Signature,
    user: EntitySig,
    vjp: syn::Path,
}

/// Which gradients an entity returns, and how.
enum Grads<'w> {
    /// One per argument: the user's for the active ones, zeros for the other
    /// differentiable ones, `()` for the rest (what callers destructure).
    Internal,
    /// The arguments of `wrt` only, a single one as itself (`grad!`, `vjp!`).
    Facing(&'w [bool]),
}

impl Custom<'_> {
    fn companions(&self, wrt: &[bool]) -> TokenStream {
        let krate = self.krate;
        let pubv = quote!(pub);
        let name = |s: &str| Ident::new(s, Span::call_site());
        let mut out = self.adapter();

        let internal = internal_grads(&self.user);
        let d1 = derivative_sig(&self.user, &internal, Seed::Param, false, false, Some(krate));
        out.extend(self.entity(&name(names::D1), &d1, Grads::Internal, Seed::Param, false, false));
        out.extend(self.below(names::D1, &d1));
        out.extend(self.entity(&name(names::D1_MASKED), &d1, Grads::Internal, Seed::Param, false, true));
        // The split form: the value now, the pullback boxed for the caller's reverse sweep.
        let (split, shape) = split_signature(&self.user, &d1);
        let header = header(krate, &pubv, &name(names::SPLIT), &split, 1, Some(&shape), true, true);
        let (call, spread) = (self.call(), self.spread(&Grads::Internal, quote!(cotangent)));
        out.extend(quote! {
            #[doc(hidden)]
            #[allow(unused_variables, clippy::all)]
            #header {
                let (value, pullback) = #call;
                (value, ::std::boxed::Box::new(move |cotangent| #spread))
            }
        });

        let facing: Vec<GradOut> = wrt.iter().map(|w| if *w { GradOut::Yes } else { GradOut::Omit }).collect();
        let scalar = scalar_output(&self.user);
        let mut entities = vec![(names::VJP, Seed::Param, false), (names::VALUE_AND_VJP, Seed::Param, true)];
        if scalar {
            entities.extend([(names::GRAD, Seed::One, false), (names::VALUE_AND_GRAD, Seed::One, true)]);
        } else {
            out.extend(self.non_scalar(&name(names::GRAD), "grad"));
            out.extend(self.non_scalar(&name(names::VALUE_AND_GRAD), "value_and_grad"));
        }
        for (entity, seed, keep) in entities {
            let e = derivative_sig(&self.user, &facing, seed, keep, true, Some(krate));
            out.extend(self.entity(&name(entity), &e, Grads::Facing(wrt), seed, keep, false));
            out.extend(self.below(entity, &e));
        }
        // What `backward!` calls when some arguments cannot hold parameters.
        let depositing = backward::depositing(self.sig, wrt);
        if matches!(backward::source(wrt, &depositing), backward::Source::Params) {
            let grads: Vec<GradOut> =
                depositing.iter().map(|d| if *d { GradOut::Yes } else { GradOut::Omit }).collect();
            let mut params = vec![(names::PARAMS_VALUE_AND_VJP, Seed::Param)];
            if scalar {
                params.push((names::PARAMS_VALUE_AND_GRAD, Seed::One));
            }
            for (entity, seed) in params {
                let e = derivative_sig(&self.user, &grads, seed, true, false, Some(krate));
                out.extend(self.entity(&name(entity), &e, Grads::Facing(&depositing), seed, true, false));
            }
        }
        out.extend(backward::wrappers(self.sig, wrt, krate, backward::Place::Module, scalar));
        out.extend(self.refusal(
            &name(names::GRAPH),
            0,
            "CustomDerivativeHasNoGraph",
            &format!("`{}` has a custom derivative: its body is not traced, so it has no graph", self.sig.ident),
            "custom derivative",
            "`graph!` shows the functions adjoint differentiates itself",
            true,
        ));
        out
    }

    /// `__adjoint_custom(arg0, arg1, …)`.
    fn call(&self) -> TokenStream {
        let args = (0..self.user.params.len()).map(|i| format_ident!("arg{}", i));
        let adapter = Ident::new(ADAPTER, Span::call_site());
        quote!(#adapter(#(#args),*))
    }

    /// The one place that calls the user's `f_vjp`: it states the types the pullback
    /// must have, so a mismatch is one error at `custom_vjp = …` that names them,
    /// instead of one per companion.
    fn adapter(&self) -> TokenStream {
        let krate = self.krate;
        let mut e = self.user.clone();
        let active: Vec<usize> = (0..e.params.len()).filter(|&i| e.params[i].active).collect();
        let grad_tys: Vec<syn::Type> = active
            .iter()
            .map(|&i| {
                let p = &self.user.params[i];
                crate::emit::rebase_type(&sig::grad_type(&p.ty, &p.class, Some(krate)), 1)
            })
            .collect();
        let grads: syn::Type = match grad_tys.as_slice() {
            [one] => one.clone(),
            many => syn::parse_quote!((#(#many,)*)),
        };
        let value = crate::emit::rebase_type(&self.user.output, 1);
        let user = &self.sig.ident;
        let vjp = &self.vjp;
        let vjp_name = vjp.segments.last().map(|s| s.ident.to_string()).unwrap_or_default();
        let names: Vec<String> =
            active.iter().filter_map(|&i| self.sig.params[i].ident().map(|n| format!("`{n}`"))).collect();
        let message = format!(
            "the pullback `{vjp_name}` returns must map the cotangent `{}` to `{}`: one gradient per differentiable argument of `{user}` ({})",
            sig::type_string(&value),
            sig::type_string(&grads),
            names.join(", "),
        );
        let note = format!(
            "`{vjp_name}` takes `{user}`'s arguments and returns `(value, pullback)`; the pullback returns what `vjp!({user})` returns \
             (a single gradient as itself, several as a tuple in argument order)"
        );
        // The adapter's value type is the user's; its pullback is the user's, checked.
        e.output = syn::parse_quote!((#value, impl ::core::ops::FnOnce(#value) -> #grads + '__adjoint));
        let mut generics = e.generics.clone();
        add_split_lifetime(&mut generics);
        let params = e.params.iter().enumerate().map(|(i, p)| {
            let a = format_ident!("arg{}", i);
            let ty = with_lifetime(&crate::emit::rebase_type(&p.ty, 1));
            quote!(#a: #ty)
        });
        let args = (0..e.params.len()).map(|i| format_ident!("arg{}", i));
        let where_clause = &generics.where_clause;
        let output = &e.output;
        let span = vjp.segments.last().map(|s| s.ident.span()).unwrap_or_else(Span::call_site);
        let call = quote_spanned!(span=> #vjp(#(#args),*));
        let check = quote_spanned!(span=> CustomPullback::<#value, #grads>::pull(pullback, cotangent));
        let adapter = Ident::new(ADAPTER, Span::call_site());
        quote! {
            #[diagnostic::on_unimplemented(message = #message, label = "pullback with other types", note = #note)]
            #[doc(hidden)]
            pub trait CustomPullback<V, G> {
                fn pull(self, cotangent: V) -> G;
            }
            impl<P: ::core::ops::FnOnce(V) -> G, V, G> CustomPullback<V, G> for P {
                #[inline]
                fn pull(self, cotangent: V) -> G {
                    self(cotangent)
                }
            }
            #[doc(hidden)]
            #[inline]
            pub fn #adapter #generics (#(#params),*) -> #output #where_clause {
                let (value, pullback) = #call;
                (value, move |cotangent: #value| #check)
            }
        }
    }

    /// The gradients an entity returns, from `pullback(cotangent)`.
    fn spread(&self, grads: &Grads, cotangent: TokenStream) -> TokenStream {
        let krate = self.krate;
        let active: Vec<usize> = (0..self.user.params.len()).filter(|&i| self.user.params[i].active).collect();
        let g = |i: usize| format_ident!("grad{}", i);
        let names: Vec<Ident> = active.iter().map(|&i| g(i)).collect();
        let pattern = match names.as_slice() {
            [one] => quote!(#one),
            many => quote!((#(#many,)*)),
        };
        let items: Vec<TokenStream> = match grads {
            Grads::Internal => internal_grads(&self.user)
                .iter()
                .enumerate()
                .map(|(i, out)| match out {
                    GradOut::Yes => {
                        let gi = g(i);
                        quote!(#gi)
                    }
                    GradOut::Zero => {
                        let a = format_ident!("arg{}", i);
                        quote!(#krate::__private::zero_like(&#a))
                    }
                    _ => quote!(()),
                })
                .collect(),
            Grads::Facing(wrt) => (0..wrt.len())
                .filter(|&i| wrt[i])
                .map(|i| {
                    let gi = g(i);
                    quote!(#gi)
                })
                .collect(),
        };
        let result = match (grads, items.as_slice()) {
            (Grads::Facing(_), [one]) => one.clone(),
            (_, many) => quote!((#(#many,)*)),
        };
        quote! {{
            let #pattern = pullback(#cotangent);
            #result
        }}
    }

    /// One companion: the user's derivative called, the seed given, the gradients
    /// arranged as the entity returns them.
    fn entity(
        &self,
        name: &Ident,
        e: &EntitySig,
        grads: Grads,
        seed: Seed,
        keep_value: bool,
        mask: bool,
    ) -> TokenStream {
        let krate = self.krate;
        let header = header(krate, &quote!(pub), name, e, 1, None, mask, true);
        let call = self.call();
        let cotangent = match seed {
            Seed::Param => {
                let c = format_ident!("arg{}", self.user.params.len());
                quote!(#c)
            }
            Seed::One => quote!(#krate::__private::one_like(&value)),
        };
        let spread = self.spread(&grads, cotangent);
        let ret = if keep_value { quote!((value, #spread)) } else { spread };
        quote! {
            #[doc(hidden)]
            #[allow(unused_variables, clippy::all)]
            #header {
                let (value, pullback) = #call;
                #ret
            }
        }
    }

    /// The module below an entity: its derivative, which a custom rule does not have.
    fn below(&self, entity: &str, e: &EntitySig) -> TokenStream {
        let module = Ident::new(entity, Span::call_site());
        let user = &self.sig.ident;
        let refusal = self.refusal(
            &Ident::new(names::D1, Span::call_site()),
            e.params.len() + 1,
            "CustomDerivativeIsFirstOrder",
            &format!(
                "`{user}` has a custom derivative, which is first order, and this needs a second derivative through it"
            ),
            "second derivative through a custom derivative",
            "a `#[differentiable]` function is differentiable to order 2 unless it says otherwise: write \
             `#[differentiable(order = 1)]` on the function that calls this one (and on its callers in turn)",
            false,
        );
        quote! {
            #[doc(hidden)]
            pub mod #module {
                #[allow(unused_imports)]
                use super::*;
                #refusal
            }
        }
    }

    /// `grad!` of a custom derivative whose output is not a scalar.
    fn non_scalar(&self, name: &Ident, which: &str) -> TokenStream {
        let user = &self.sig.ident;
        let ty = self.sig.output.as_ref().map(sig::type_string).unwrap_or_else(|| "()".into());
        self.refusal(
            name,
            self.user.params.len(),
            &format!("{}NeedsScalarOutput", if which == "grad" { "Grad" } else { "ValueAndGrad" }),
            &format!("`{which}!` needs a function with a scalar float output, but `{user}` returns `{ty}`"),
            "not a scalar output",
            &format!("for a non-scalar output use `vjp!({user})(args…, cotangent)`: its last argument is the output's cotangent"),
            true,
        )
    }

    /// A function that is a compile error to call, with its message.
    #[allow(clippy::too_many_arguments)]
    fn refusal(
        &self,
        name: &Ident,
        arity: usize,
        trait_name: &str,
        message: &str,
        label: &str,
        note: &str,
        diverges: bool,
    ) -> TokenStream {
        let trait_name = Ident::new(trait_name, Span::call_site());
        let t = refusal_trait(&trait_name, message, label, note);
        let f = refusing_fn(name, arity, &trait_name, diverges);
        quote!(#t #f)
    }
}
