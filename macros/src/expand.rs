//! Expansion of `#[differentiable]`: assemble the generated items.
//!
//! For `fn f` of order `N` the output is the user's function, unchanged, and a module
//! `f` holding:
//! - `__adjoint_d1`: the derivative companion used when another function calls `f`
//!   (arguments, output cotangent → one gradient per argument, `()` for arguments that
//!   are not differentiable);
//! - `__adjoint_grad`, `__adjoint_value_and_grad`, `__adjoint_vjp`: what `grad!`,
//!   `value_and_grad!` and `vjp!` call (gradients of the active arguments only).
//!
//! Each of them has its own module holding *its* derivative, down to order `N`. At the
//! bottom, a stub makes asking for one order more a located compile error.

use proc_macro2::{Span, TokenStream};
use quote::{format_ident, quote, quote_spanned};
use syn::{Ident, Type};

use crate::attr::Args;
use crate::backward;
use crate::ctxt::Ctxt;
use crate::emit::Emitter;
use crate::graph;
use crate::ir::{Arg, Callee, Const, Func, Kind, Operand, Param, Role, Rvalue, Stmt, Tree, Var};
use crate::lower;
use crate::names;
use crate::reverse::{self, Config, GradOut, Seed};
use crate::sig::{self, Class, Signature};

mod custom;
mod outputs;
mod stubs;

/// The default number of derivative levels: second derivatives by nesting work out
/// of the box; a function whose body already takes a derivative uses one of them.
const DEFAULT_ORDER: u32 = 2;

/// The signature of a generated (or the user's) function, as types.
#[derive(Clone)]
struct EntitySig {
    generics: syn::Generics,
    params: Vec<EntityParam>,
    output: Type,
    output_class: Class,
}

#[derive(Clone)]
struct EntityParam {
    ty: Type,
    class: Class,
    /// Differentiated when the entity itself is differentiated.
    active: bool,
    /// The method receiver (`&self`), bound to `this` in generated bodies.
    receiver: Option<syn::Receiver>,
}

/// The signature of the user's function as the tower sees it.
fn entity_sig(sig: &Signature) -> EntitySig {
    EntitySig {
        generics: sig.generics.clone(),
        params: sig
            .params
            .iter()
            .map(|p| EntityParam {
                ty: p.ty.clone(),
                class: p.class.clone(),
                active: p.active(),
                receiver: p.receiver.clone(),
            })
            .collect(),
        output: sig.output_type(),
        output_class: sig.output_class.clone(),
    }
}

/// A function in the derivative tower.
struct Entity {
    sig: EntitySig,
    func: Func,
    /// How many more derivative levels to generate below this one.
    order: u32,
    /// How many derivatives of the user's function this entity already is.
    depth: u32,
    /// How many modules below the user's module this entity is emitted.
    module_depth: usize,
}

/// The context shared by the whole expansion.
struct Tower<'a> {
    krate: &'a syn::Path,
    /// The user's function name, for messages.
    user: &'a Ident,
    /// The order the user's function was given.
    order: u32,
    cx: &'a mut Ctxt,
    /// Generated paths of single-identifier callees used by any entity of the tower,
    /// for the shared "not differentiable" fallback.
    callees: Vec<(Vec<Ident>, usize)>,
    /// How gradient types of values the macro cannot see are written: through their
    /// `Tangent` implementation (user code), or as the type itself (the runtime's rules).
    tangent: Option<syn::Path>,
    /// The companions are sibling methods (of an `impl`), not items of a module.
    methods: bool,
}

/// The derivative order generated when `order = N` is not written: second derivatives
/// of float code (one less when the body itself calls `grad!`); first derivatives only
/// when a value the macro cannot see (a tensor, a matrix, a model) is differentiated,
/// because the rules of those types are first-order.
fn default_order(sig: &Signature, func: &Func, nests_derivatives: bool) -> u32 {
    let opaque = sig.params.iter().any(|p| p.active() && p.class == sig::Class::Opaque)
        || sig.output_class == sig::Class::Opaque
        || builds_matrices(func);
    match (opaque, nests_derivatives) {
        (true, _) => 1,
        (false, true) => DEFAULT_ORDER - 1,
        (false, false) => DEFAULT_ORDER,
    }
}

/// Whether the body builds nalgebra values from its scalars (`Vector3::new(a, b, c)`):
/// their rules are first order, like those of a matrix argument's.
fn builds_matrices(func: &Func) -> bool {
    let mut found = false;
    crate::ir::walk_stmts(&func.body, &mut |s| {
        if let Stmt::Let {
            rv: Rvalue::Call { callee: Callee::Construct { .. } | Callee::AssocRule { .. }, .. }, ..
        } = s
        {
            found = true;
        }
    });
    found
}

pub fn differentiable(args: Args, item: syn::ItemFn) -> TokenStream {
    if let Some(vjp) = &args.custom_vjp {
        return custom::expand(&args, &item, vjp);
    }
    if let Some(pure) = outputs::pure_item(&item) {
        // A helper writing into `&mut` buffers: the function as written, and its pure
        // form (the buffers' new contents returned) with the derivative code, which
        // callers use in its place.
        let primal = primal_item(&item);
        let pure = differentiable(args, pure);
        let entry_points = outputs::entry_points(&item);
        let (vis, name) = (&item.vis, &item.sig.ident);
        return quote! {
            #primal
            #[doc(hidden)]
            #[allow(non_snake_case, dead_code, clippy::all, clippy::pedantic)]
            #vis mod #name {
                #[allow(unused_imports)]
                use super::*;
                #pure
                #entry_points
            }
        };
    }
    let mut cx = Ctxt::new();
    let krate: syn::Path = args.krate.clone().unwrap_or_else(|| syn::parse_quote!(::adjoint));
    let mut sig = Signature::parse(&item.sig, &item.vis, &mut cx);
    let primal = primal_item(&item);
    let sig_ok = !cx.has_errors();
    let wrt_before = cx.has_errors();
    let mut wrt = check_wrt(&args, &sig, &mut cx);
    bound_by_our_float(&args, &mut sig, &krate);
    leave_out_user_types(&args, &mut sig, &wrt);
    leave_out_enums(&args, &mut sig, &mut wrt, &item.block);
    // On error the stubs use the gradients `wrt` asks for when it is valid.
    let stub_wrt = match cx.has_errors() && !wrt_before {
        true => sig.params.iter().map(|p| p.active()).collect(),
        false => wrt.clone(),
    };
    let order_arg = args.order.as_ref().map(|(n, _)| *n);
    let on_error = |cx: Ctxt| {
        let stubs = match sig_ok {
            true => stubs::typed(
                &sig,
                &stub_wrt,
                order_arg,
                &krate,
                sig.params.first().is_some_and(|p| p.receiver.is_some()),
            ),
            false => stubs::untyped(&sig),
        };
        with_errors(primal.clone(), &sig, &krate, cx, stubs)
    };
    if cx.has_errors() {
        return on_error(cx);
    }
    let lowered = lower::lower(&sig, &item.block, &mut cx);
    if cx.has_errors() {
        return on_error(cx);
    }
    let order = args
        .order
        .as_ref()
        .map(|(n, _)| *n)
        .unwrap_or_else(|| default_order(&sig, &lowered.func, lowered.nests_derivatives));
    let user = Entity { sig: entity_sig(&sig), func: lowered.func, order, depth: 0, module_depth: 0 };
    let methods = sig.params.first().is_some_and(|p| p.receiver.is_some());
    let graph = graph::companion(&sig, &item.block, &user.func, &wrt, &krate, methods);
    let mut tower = Tower {
        krate: &krate,
        user: &sig.ident,
        order,
        cx: &mut cx,
        callees: Vec::new(),
        tangent: Some(krate.clone()),
        methods,
    };
    if methods {
        // A method: the companions are sibling methods in the same `impl`.
        let companions = tower.method_companions(&user, &sig, &wrt);
        if cx.has_errors() {
            return on_error(cx);
        }
        return quote!(#primal #companions #graph);
    }
    let mut companions = tower.user_companions(&user, &sig, &wrt);
    companions.extend(outputs::reads_only(&item));
    companions.extend(fallback_module(&tower.callees, &krate));
    companions.extend(graph);
    if cx.has_errors() {
        return on_error(cx);
    }
    with_module(&primal, &sig, companions)
}

/// The user's function and the module of its companions, named after it.
fn with_module(primal: &syn::ItemFn, sig: &Signature, companions: TokenStream) -> TokenStream {
    let (vis, name) = (&sig.vis, &sig.ident);
    quote! {
        #primal
        #[doc(hidden)]
        #[allow(non_snake_case, dead_code, clippy::all, clippy::pedantic)]
        #vis mod #name {
            #[allow(unused_imports)]
            use super::*;
            #companions
        }
    }
}

/// The user's function as written, minus the attributes the macro consumed. It is
/// marked `allow(dead_code)`: calling only `grad!(f)` is a use of `f`.
fn primal_item(item: &syn::ItemFn) -> syn::ItemFn {
    let mut f = item.clone();
    f.attrs.push(syn::parse_quote!(#[allow(dead_code)]));
    for input in &mut f.sig.inputs {
        if let syn::FnArg::Typed(pt) = input {
            pt.attrs.retain(|a| !a.path().is_ident(sig::NO_GRAD));
        }
    }
    f
}

/// A value of the user's type that `wrt(…)` leaves out (a config, a set of constants,
/// a model taken as fixed) is data, as under `#[no_grad]`: it needs no gradient type, so
/// a struct without `#[derive(Differentiable)]` can be passed. (Other values left out
/// of `wrt` keep their gradients for callers that differentiate through them.)
fn leave_out_user_types(args: &Args, sig: &mut Signature, wrt: &[bool]) {
    if args.wrt.is_none() || args.in_runtime() || wrt.len() != sig.params.len() {
        return;
    }
    let generics = sig.generics.clone();
    for (p, wanted) in sig.params.iter_mut().zip(wrt) {
        // A method's `self` left out of `wrt` too: `#[differentiable(wrt(x))] fn
        // forward(&self, x: &[f64])` on a struct without the derive.
        let user_type = p.receiver.is_some() || sig::names_user_type(&p.ty, &generics);
        if !wanted && p.class == Class::Opaque && user_type {
            p.no_grad = true;
        }
    }
}

/// A type parameter bounded by a `Float` (adjoint's, or `num_traits::Float`, which users
/// import under the same name) is also bounded by adjoint's in the generated code, whose
/// rules are implemented for adjoint's `Float`.
fn bound_by_our_float(args: &Args, sig: &mut Signature, krate: &syn::Path) {
    if args.in_runtime() {
        return;
    }
    let floats = sig.float_params.clone();
    for p in sig.generics.type_params_mut() {
        if floats.contains(&p.ident) {
            p.bounds.push(syn::parse_quote!(#krate::Float));
        }
    }
}

/// A parameter the body matches against enum variants (`match *self { Loss::Huber(d)
/// => … }`) is an enum, and an enum has no gradient type (`#[derive(Differentiable)]`
/// takes structs): it is data, as under `#[no_grad]`, with no annotation.
fn leave_out_enums(args: &Args, sig: &mut Signature, wrt: &mut [bool], body: &syn::Block) {
    use syn::visit::Visit;
    struct Matched(Vec<String>);
    impl<'ast> Visit<'ast> for Matched {
        fn visit_expr_match(&mut self, m: &'ast syn::ExprMatch) {
            let mut e = &*m.expr;
            while let syn::Expr::Unary(syn::ExprUnary { op: syn::UnOp::Deref(_), expr, .. })
            | syn::Expr::Paren(syn::ExprParen { expr, .. }) = e
            {
                e = expr;
            }
            let variant = |p: &syn::Pat| match p {
                syn::Pat::TupleStruct(ts) => ts.path.segments.len() >= 2,
                syn::Pat::Struct(s) => s.path.segments.len() >= 2,
                syn::Pat::Path(p) => p.path.segments.len() >= 2,
                _ => false,
            };
            if let syn::Expr::Path(p) = e {
                if let Some(id) = p.path.get_ident() {
                    if m.arms.iter().any(|a| variant(&a.pat)) {
                        self.0.push(id.to_string());
                    }
                }
            }
            syn::visit::visit_expr_match(self, m);
        }
    }
    if args.in_runtime() {
        return;
    }
    let mut matched = Matched(Vec::new());
    matched.visit_block(body);
    for (i, p) in sig.params.iter_mut().enumerate() {
        let name = match &p.receiver {
            Some(_) => "self".to_string(),
            None => p.ident().map(|i| i.to_string()).unwrap_or_default(),
        };
        if p.class == Class::Opaque && matched.0.contains(&name) {
            p.no_grad = true;
            if let Some(w) = wrt.get_mut(i) {
                *w = false;
            }
        }
    }
}

/// Which parameters the user-facing gradient is taken with respect to.
fn check_wrt(args: &Args, sig: &Signature, cx: &mut Ctxt) -> Vec<bool> {
    let Some(names) = &args.wrt else {
        return sig.params.iter().map(|p| p.active()).collect();
    };
    let mut wanted = vec![false; sig.params.len()];
    for n in names {
        let Some(i) = sig.params.iter().position(|p| p.ident() == Some(n)) else {
            let known: Vec<String> = sig.params.iter().filter_map(|p| p.ident().map(|i| format!("`{i}`"))).collect();
            cx.error_spanned_by(
                n,
                format!("`{n}` is not an argument of this function (its arguments are {})", known.join(", ")),
            );
            continue;
        };
        let p = &sig.params[i];
        if p.no_grad {
            cx.error_spanned_by(
                n,
                format!("`{n}` is marked `#[no_grad]`; remove it from `wrt(…)` or remove `#[no_grad]`"),
            );
        } else if p.class.is_integer_like() {
            cx.error_spanned_by(
                n,
                format!(
                    "cannot differentiate with respect to `{n}`: its type `{}` is not a float type\n\
                     help: only `f32`/`f64` values, slices, vectors and arrays of them, and differentiable types have gradients; \
                     remove `{n}` from `wrt(…)`",
                    sig::type_string(&p.ty)
                ),
            );
        } else if !p.class.differentiable() {
            cx.error_spanned_by(
                n,
                format!(
                    "cannot differentiate with respect to `{n}`: its type `{}` has no derivative",
                    sig::type_string(&p.ty)
                ),
            );
        }
        wanted[i] = true;
    }
    wanted
}

/// On error: the user's function, the errors, and stubs of the generated items (see
/// [`stubs`]) so that uses of `grad!(f)` elsewhere do not add errors of their own.
fn with_errors(primal: syn::ItemFn, sig: &Signature, krate: &syn::Path, cx: Ctxt, stubs: TokenStream) -> TokenStream {
    let err = cx.check().err().map(|e| e.to_compile_error());
    if sig.params.first().is_some_and(|p| p.receiver.is_some()) {
        // A method: its companions are sibling methods in the same `impl`.
        return quote!(#primal #err #stubs);
    }
    let vis = &sig.vis;
    let name = &sig.ident;
    let graph = graph::error_stub(krate);
    quote! {
        #primal
        #err
        #[doc(hidden)]
        #[allow(non_snake_case, dead_code, clippy::all)]
        #vis mod #name {
            #[allow(unused_imports)]
            use super::*;
            #stubs
            #graph
        }
    }
}

impl<'a> Tower<'a> {
    /// The companions of the user's function.
    fn user_companions(&mut self, user: &Entity, sig: &Signature, wrt: &[bool]) -> TokenStream {
        let mut out = TokenStream::new();
        if user.order == 0 {
            return out;
        }
        // The internal derivative (used by callers).
        let d1 = self.derivative(user, &internal_grads(&user.sig), Seed::Param, false, false);
        out.extend(self.entity(&d1, &Ident::new(names::D1, Span::call_site())));
        out.extend(self.split_companions(user, &d1, &quote!(pub)));

        // The user-facing entities.
        let facing: Vec<GradOut> = wrt.iter().map(|w| if *w { GradOut::Yes } else { GradOut::Omit }).collect();
        let scalar = scalar_output(&user.sig);
        // Without `wrt`, `grad!` and `vjp!` ask for exactly what `__adjoint_d1` computes:
        // they call it (a thin wrapper) instead of carrying a copy of the derivative.
        let all = wrt.iter().zip(&user.sig.params).all(|(w, p)| *w == p.active);
        let grad_name = Ident::new(names::GRAD, Span::call_site());
        let vag_name = Ident::new(names::VALUE_AND_GRAD, Span::call_site());
        if scalar {
            let g = if all && user.sig.output_class == Class::Float {
                self.thin_wrapper(user, Seed::One, &facing)
            } else {
                self.derivative(user, &facing, Seed::One, false, true)
            };
            out.extend(self.entity(&g, &grad_name));
            let vg = self.derivative(user, &facing, Seed::One, true, true);
            out.extend(self.entity(&vg, &vag_name));
        } else {
            out.extend(self.non_scalar_stub(&grad_name, "grad", sig));
            out.extend(self.non_scalar_stub(&vag_name, "value_and_grad", sig));
        }
        let v = if all {
            self.thin_wrapper(user, Seed::Param, &facing)
        } else {
            self.derivative(user, &facing, Seed::Param, false, true)
        };
        out.extend(self.entity(&v, &Ident::new(names::VJP, Span::call_site())));
        let vv = self.derivative(user, &facing, Seed::Param, true, true);
        out.extend(self.entity(&vv, &Ident::new(names::VALUE_AND_VJP, Span::call_site())));
        for (e, name) in self.params_derivatives(user, sig, wrt, scalar) {
            out.extend(self.entity(&e, &Ident::new(name, Span::call_site())));
        }
        out.extend(backward::wrappers(sig, wrt, self.krate, backward::Place::Module, scalar));
        out
    }

    /// The companions of a method, as sibling methods: `__adjoint_d1_m` (and its tower),
    /// `__adjoint_grad_m`, `__adjoint_value_and_grad_m`, `__adjoint_vjp_m`.
    fn method_companions(&mut self, user: &Entity, sig: &Signature, wrt: &[bool]) -> TokenStream {
        let mut out = TokenStream::new();
        if user.order == 0 {
            return out;
        }
        let vis = &sig.vis;
        let vis = quote!(#vis);
        let name = sig.ident.to_string();
        let id = |entity: &str| Ident::new(&names::method_companion(entity, &name), sig.ident.span());
        let mut d1 = self.derivative(user, &internal_grads(&user.sig), Seed::Param, false, false);
        d1.module_depth = 0;
        out.extend(self.method_tower(&d1, &id(names::D1), &vis));
        out.extend(self.split_companions(user, &d1, &vis));
        let facing: Vec<GradOut> = wrt.iter().map(|w| if *w { GradOut::Yes } else { GradOut::Omit }).collect();
        let all = wrt.iter().zip(&user.sig.params).all(|(w, p)| *w == p.active);
        let scalar = scalar_output(&user.sig);
        if scalar {
            let mut g = if all && user.sig.output_class == Class::Float {
                self.thin_wrapper(user, Seed::One, &facing)
            } else {
                self.derivative(user, &facing, Seed::One, false, true)
            };
            g.module_depth = 0;
            out.extend(self.method_tower(&g, &id(names::GRAD), &vis));
            let mut vg = self.derivative(user, &facing, Seed::One, true, true);
            vg.module_depth = 0;
            out.extend(self.method_tower(&vg, &id(names::VALUE_AND_GRAD), &vis));
        } else {
            out.extend(self.non_scalar_stub(&id(names::GRAD), "grad", sig));
            out.extend(self.non_scalar_stub(&id(names::VALUE_AND_GRAD), "value_and_grad", sig));
        }
        let mut v = if all {
            self.thin_wrapper(user, Seed::Param, &facing)
        } else {
            self.derivative(user, &facing, Seed::Param, false, true)
        };
        v.module_depth = 0;
        out.extend(self.method_tower(&v, &id(names::VJP), &vis));
        let mut vv = self.derivative(user, &facing, Seed::Param, true, true);
        vv.module_depth = 0;
        out.extend(self.method_tower(&vv, &id(names::VALUE_AND_VJP), &vis));
        for (mut e, name) in self.params_derivatives(user, sig, wrt, scalar) {
            e.module_depth = 0;
            out.extend(self.method_tower(&e, &id(name), &vis));
        }
        out.extend(backward::wrappers(sig, wrt, self.krate, backward::Place::Method, scalar));
        out
    }

    /// The split derivatives and the masked companions (see [`names::SPLIT`] and
    /// [`names::D1_MASKED`]): `__adjoint_split_all`, and for a function of order 1 with
    /// two or three active arguments one `__adjoint_split_only_BITS` per proper subset of
    /// them; `__adjoint_split` and `__adjoint_d1_masked` pick the one a caller's mask asks
    /// for. None of these is differentiated again.
    fn split_companions(&mut self, user: &Entity, d1: &Entity, vis: &TokenStream) -> TokenStream {
        const MAX_VARIANT_ARGS: usize = 3;
        let methods = self.methods;
        let name = |entity: &str| match methods {
            true => Ident::new(&names::method_companion(entity, &self.user.to_string()), self.user.span()),
            false => Ident::new(entity, Span::call_site()),
        };
        let active: Vec<usize> = (0..user.sig.params.len()).filter(|&i| user.sig.params[i].active).collect();
        let all: u64 = active.iter().map(|i| 1u64 << i).sum();
        let base = internal_grads(&user.sig);
        let mut out = TokenStream::new();
        let (split_all, shape) = self.split_derivative(user, &base, d1);
        out.extend(self.function(&split_all, &name(names::SPLIT_ALL), vis, Some(&shape)));
        let mut arms = Vec::new();
        if user.order == 1 && (2..=MAX_VARIANT_ARGS).contains(&active.len()) && user.sig.params.len() < 64 {
            for subset in 1..(1u64 << active.len()) - 1 {
                let bits: u64 =
                    active.iter().enumerate().filter(|(k, _)| subset >> k & 1 == 1).map(|(_, i)| 1 << i).sum();
                let grads: Vec<GradOut> = base
                    .iter()
                    .enumerate()
                    .map(|(i, g)| match g {
                        GradOut::Yes if bits >> i & 1 == 0 => GradOut::Zero,
                        g => *g,
                    })
                    .collect();
                let (variant, shape) = self.split_derivative(user, &grads, d1);
                let variant_name = name(&names::split_only(bits));
                out.extend(self.function(&variant, &variant_name, vis, Some(&shape)));
                arms.push((bits, variant_name));
            }
        }
        let split = Dispatch { active: all, arms: &arms, full: &name(names::SPLIT_ALL) };
        out.extend(self.dispatcher(d1, &user.sig.output, &name(names::SPLIT), vis, &split, true));
        let masked = Dispatch { active: all, arms: &arms, full: &name(names::D1) };
        out.extend(self.dispatcher(d1, &user.sig.output, &name(names::D1_MASKED), vis, &masked, false));
        out
    }

    /// The derivative of `user` with these gradients, value kept, as a split function
    /// beside `d1`.
    fn split_derivative(&mut self, user: &Entity, grads: &[GradOut], d1: &Entity) -> (Entity, SplitShape) {
        let cfg = Config {
            grads: grads.to_vec(),
            keep_value: true,
            seed: Seed::Param,
            masked_calls: Some(self.krate.clone()),
            split_calls: false,
        };
        let mut d = reverse::vjp(&user.func, &cfg, self.cx);
        // The sums gather within the reverse sweep only, which the split returns as
        // its pullback.
        let mut reverse_sweep = d.func.body.split_off(d.reverse_start);
        reverse::gather_sums(&mut reverse_sweep, &mut d.func.vars);
        d.func.body.extend(reverse_sweep);
        let sig = derivative_sig(&user.sig, grads, Seed::Param, true, false, self.tangent.as_ref());
        let shape = SplitShape::of(&user.sig.output, &d1.sig, d.reverse_start);
        (Entity { sig, func: d.func, order: 0, depth: user.depth + 1, module_depth: d1.module_depth }, shape)
    }

    /// A companion that calls the variant a caller's mask (its trailing argument) asks
    /// for, restricted to the active arguments, else the full one: `__adjoint_split`
    /// (`split`: the arguments without the cotangent, returning value and pullback) or
    /// `__adjoint_d1_masked` (with the cotangent, applying the variant's pullback).
    #[allow(clippy::too_many_arguments)]
    fn dispatcher(
        &self,
        d1: &Entity,
        value: &Type,
        name: &Ident,
        vis: &TokenStream,
        dispatch: &Dispatch,
        split: bool,
    ) -> TokenStream {
        let krate = self.krate;
        let mut receiver = None;
        let mut params = Vec::new();
        let mut args = Vec::new();
        let n = d1.sig.params.len();
        // d1's parameters are the user's and the cotangent (last).
        for (i, p) in d1.sig.params.iter().enumerate() {
            if let Some(r) = &p.receiver {
                receiver = Some(receiver_param(r, split));
                continue;
            }
            if split && i == n - 1 {
                continue;
            }
            let arg = format_ident!("arg{}", i);
            let mut ty = crate::emit::rebase_type(&p.ty, d1.module_depth);
            if split {
                ty = with_lifetime(&ty);
            }
            params.push(quote!(#arg: #ty));
            args.push(arg);
        }
        let mut generics = d1.sig.generics.clone();
        if split {
            add_split_lifetime(&mut generics);
        }
        let where_clause = &generics.where_clause;
        let output = match split {
            true => split_output(&SplitShape::of(value, &d1.sig, 0), d1.module_depth),
            false => {
                let t = crate::emit::rebase_type(&d1.sig.output, d1.module_depth);
                quote!(#t)
            }
        };
        let has_receiver = receiver.is_some();
        let call = |f: &Ident, args: &[Ident]| match (has_receiver, self.methods) {
            (true, _) => quote!(self.#f(#(#args),*)),
            (false, true) => quote!(Self::#f(#(#args),*)),
            (false, false) => quote!(#f(#(#args),*)),
        };
        let arms: Vec<TokenStream> = dispatch
            .arms
            .iter()
            .map(|(bits, f)| {
                let body = if split {
                    call(f, &args)
                } else {
                    // `__adjoint_d1_masked`: the variant's pullback applied at once.
                    let (cot, rest) = args.split_last().expect("a cotangent");
                    let c = call(f, rest);
                    quote!({ let (_, pullback) = #c; pullback(#cot) })
                };
                quote!(#bits => #body,)
            })
            .collect();
        let full = call(dispatch.full, &args);
        let active = dispatch.active;
        let body = if arms.is_empty() {
            full
        } else {
            quote! {
                match #krate::__private::mask_bits(&__adjoint_mask) & #active {
                    #(#arms)*
                    _ => #full,
                }
            }
        };
        let params = receiver.into_iter().chain(params);
        quote! {
            #[doc(hidden)]
            #[allow(unused_variables, clippy::all)]
            #vis fn #name #generics (#(#params,)* __adjoint_mask: impl #krate::__private::MaskBits) -> #output #where_clause {
                #body
            }
        }
    }

    /// The derivatives `backward!` calls when some requested arguments cannot hold
    /// parameters: value and gradients of the others only (none otherwise).
    fn params_derivatives(
        &mut self,
        user: &Entity,
        sig: &Signature,
        wrt: &[bool],
        scalar: bool,
    ) -> Vec<(Entity, &'static str)> {
        let depositing = backward::depositing(sig, wrt);
        if !matches!(backward::source(wrt, &depositing), backward::Source::Params) {
            return Vec::new();
        }
        let grads: Vec<GradOut> = depositing.iter().map(|d| if *d { GradOut::Yes } else { GradOut::Omit }).collect();
        let mut out = Vec::new();
        if scalar {
            out.push((self.derivative(user, &grads, Seed::One, true, false), names::PARAMS_VALUE_AND_GRAD));
        }
        out.push((self.derivative(user, &grads, Seed::Param, true, false), names::PARAMS_VALUE_AND_VJP));
        out
    }

    /// `grad!`/`vjp!` as a call of the user function's `__adjoint_d1` (with a unit seed
    /// for `grad!`), keeping the requested gradients.
    fn thin_wrapper(&mut self, user: &Entity, seed: Seed, grads: &[GradOut]) -> Entity {
        let sig = derivative_sig(&user.sig, grads, seed, false, true, self.tangent.as_ref());
        let mut vars = user.func.vars.clone();
        let mut params = user.func.params.clone();
        let span = self.user.span();
        let mut args: Vec<Arg> = params.iter().map(|p| param_arg(&p.pat, &vars)).collect();
        match seed {
            Seed::Param => {
                let cot = user.func.ret.map(&mut |o| match o {
                    Operand::Var(v) => vars.add_like(*v, "cotangent", Role::Param),
                    Operand::Const(c) => {
                        let v = vars.add("cotangent", c.kind, Role::Param, span);
                        vars.info_mut(v).scalar_ty = c.scalar_ty.clone();
                        v
                    }
                });
                args.push(tree_arg(&cot.map(&mut |v| Operand::Var(*v))));
                params.push(Param { pat: cot });
            }
            Seed::One => {
                let one = match user.func.ret.leaves().first() {
                    Some(Operand::Var(v)) if vars.info(*v).scalar_ty.is_some() => vars.one(*v),
                    Some(Operand::Const(Const { scalar_ty: Some(t), .. })) => {
                        Operand::Const(Const { tokens: quote!(#t::ONE), kind: Kind::Float, scalar_ty: Some(t.clone()) })
                    }
                    // A generic float output (`-> T`) whose value's type the IR did not
                    // record: the one of the output's type.
                    _ if !matches!(&user.sig.output, Type::Path(p) if p.path.is_ident("f64") || p.path.is_ident("f32")) =>
                    {
                        let (t, krate) = (&user.sig.output, self.krate);
                        Operand::Const(Const {
                            tokens: quote!(<#t as #krate::Float>::ONE),
                            kind: Kind::Float,
                            scalar_ty: None,
                        })
                    }
                    Some(Operand::Var(v)) => vars.one(*v),
                    _ => Operand::float("1.0"),
                };
                args.push(Arg::Value(one));
            }
        }
        let mut requested = Vec::new();
        let dst = Tree::Tuple(
            params
                .iter()
                .take(user.sig.params.len())
                .zip(&user.sig.params)
                .zip(grads)
                .map(|((p, ep), g)| {
                    if ep.active {
                        let t = p.pat.map(&mut |v| {
                            let name = format!("{}_grad", vars.info(*v).name);
                            vars.add_like(*v, name, Role::Temp)
                        });
                        if *g == GradOut::Yes {
                            requested.push(t.map(&mut |v| Operand::Var(*v)));
                        }
                        t
                    } else {
                        Tree::Leaf(vars.add("_unused_grad", Kind::Unknown, Role::Temp, span))
                    }
                })
                .collect(),
        );
        let callee = if self.methods {
            let name = Ident::new(&names::method_companion(names::D1, &self.user.to_string()), self.user.span());
            Callee::Assoc { path: syn::parse_quote!(Self::#name) }
        } else {
            Callee::Tower { path: syn::parse_quote!(__adjoint_d1) }
        };
        let call = Rvalue::Call { callee, args };
        let ret = if requested.len() == 1 { requested.pop().expect("one gradient") } else { Tree::Tuple(requested) };
        Entity {
            sig,
            func: Func { vars, params, body: vec![Stmt::Let { dst, rv: call, span }], ret },
            order: user.order - 1,
            depth: user.depth + 1,
            module_depth: 1,
        }
    }

    /// The derivative of an entity under a configuration, as an entity one order lower.
    /// `facing`: a user-facing entity returns one requested gradient as itself rather
    /// than as a 1-tuple (the internal companions always return one entry per argument).
    fn derivative(&mut self, e: &Entity, grads: &[GradOut], seed: Seed, keep_value: bool, facing: bool) -> Entity {
        // The derivatives of a user's function of order 1 are not differentiated again:
        // they may call the split and masked companions. (Not the lower levels of a
        // higher-order tower: a callee that is not differentiable is then reported
        // through one companion name, `__adjoint_d1`, wherever it is called.)
        let masked_calls = (e.order == 1 && e.depth == 0).then(|| self.krate.clone());
        let split_calls = masked_calls.is_some();
        let cfg = Config { grads: grads.to_vec(), keep_value, seed, masked_calls, split_calls };
        let mut d = reverse::vjp(&e.func, &cfg, self.cx);
        // (Not in a split derivative: its forward and reverse sweeps stay apart.)
        reverse::fuse_loops(&mut d.func.body, &d.func.vars);
        reverse::gather_sums(&mut d.func.body, &mut d.func.vars);
        let sig = derivative_sig(&e.sig, grads, seed, keep_value, facing, self.tangent.as_ref());
        if facing && grads.iter().filter(|g| **g != GradOut::Omit).count() == 1 {
            d.func.ret = match std::mem::replace(&mut d.func.ret, Tree::Tuple(Vec::new())) {
                Tree::Tuple(mut items) if keep_value => {
                    let grads = match items.pop().expect("grads") {
                        Tree::Tuple(mut g) if g.len() == 1 => g.pop().expect("grad"),
                        other => other,
                    };
                    items.push(grads);
                    Tree::Tuple(items)
                }
                Tree::Tuple(mut g) if g.len() == 1 => g.pop().expect("grad"),
                other => other,
            };
        }
        Entity { sig, func: d.func, order: e.order - 1, depth: e.depth + 1, module_depth: e.module_depth + 1 }
    }

    /// A generated function and the module of its own derivative.
    fn entity(&mut self, e: &Entity, name: &Ident) -> TokenStream {
        let f = self.function(e, name, &quote!(pub), None);
        let below = if e.order >= 1 {
            let d1 = self.derivative(e, &internal_grads(&e.sig), Seed::Param, false, false);
            self.entity(&d1, &Ident::new(names::D1, Span::call_site()))
        } else {
            self.order_stub(e)
        };
        quote! {
            #f
            #[doc(hidden)]
            pub mod #name {
                #[allow(unused_imports)]
                use super::*;
                #below
            }
        }
    }

    /// A method and, as sibling methods, its derivative companions down to its order:
    /// `m`, `__adjoint_d1_m`, `__adjoint_d2_m`, …
    fn method_tower(&mut self, e: &Entity, name: &Ident, vis: &TokenStream) -> TokenStream {
        let mut out = self.function(e, name, vis, None);
        if e.order >= 1 {
            let mut d1 = self.derivative(e, &internal_grads(&e.sig), Seed::Param, false, false);
            // Sibling methods stay in the `impl`'s module.
            d1.module_depth = e.module_depth;
            let d1_name = Ident::new(&reverse::derivative_method(&name.to_string()), name.span());
            out.extend(self.method_tower(&d1, &d1_name, vis));
        }
        out
    }

    fn function(&mut self, e: &Entity, name: &Ident, vis: &TokenStream, split: Option<&SplitShape>) -> TokenStream {
        let emitter = Emitter::new(&e.func, self.krate, e.module_depth);
        // Each parameter as written in the signature, and its binding pattern (`x`, or
        // `&x` for a scalar taken by reference, which is bound by value).
        let mut receiver = None;
        let mut bound: Vec<(TokenStream, TokenStream)> = Vec::new();
        for (p, ep) in e.func.params.iter().zip(&e.sig.params) {
            if let Some(r) = &ep.receiver {
                receiver = Some(receiver_param(r, split.is_some()));
                continue;
            }
            let pat = emitter.pattern(&p.pat);
            let mut ty = crate::emit::rebase_type(&ep.ty, e.module_depth);
            if split.is_some() {
                ty = with_lifetime(&ty);
            }
            if matches!(ep.class, Class::Float | Class::Int | Class::Bool) && matches!(ty, Type::Reference(_)) {
                bound.push((quote!(&#pat), quote!(#ty)));
            } else {
                bound.push((pat, quote!(#ty)));
            }
        }
        let mut generics = e.sig.generics.clone();
        let (output, mut body, ret) = match split {
            None => {
                let output = crate::emit::rebase_type(&e.sig.output, e.module_depth);
                (quote!(#output), emitter.block(&e.func.body), emitter.tree(&e.func.ret))
            }
            Some(shape) => {
                // The forward sweep returns the value and a closure holding the
                // reverse sweep, which takes the cotangent (the last parameter).
                add_split_lifetime(&mut generics);
                let (cot_pat, cot_ty) = bound.pop().expect("a cotangent parameter");
                let (fwd, rev) = e.func.body.split_at(shape.reverse_start);
                let (fwd, rev) = (emitter.block(&fwd.to_vec()), emitter.block(&rev.to_vec()));
                let Tree::Tuple(items) = &e.func.ret else { unreachable!("(value, gradients)") };
                let value = emitter.cloned_tree(&items[0]);
                let grads = emitter.tree(&items[1]);
                let body = quote! {
                    #fwd
                    let __adjoint_value = #value;
                    (__adjoint_value, ::std::boxed::Box::new(move |#cot_pat: #cot_ty| { #rev #grads }))
                };
                (split_output(shape, e.module_depth), body, TokenStream::new())
            }
        };
        let where_clause = &generics.where_clause;
        if let (Some(_), Some(p)) = (e.sig.params.first().and_then(|p| p.receiver.as_ref()), e.func.params.first()) {
            // The receiver is used under the name the IR gave it.
            let this = emitter.pattern(&p.pat);
            body = quote!(let #this = self; #body);
        }
        // The tower's own companions always exist: no fallback for them.
        let callees: Vec<(Vec<Ident>, usize)> =
            emitter.generated_callees().into_iter().filter(|(p, _)| p[0] != *self.user).collect();
        // Methods have no module for the fallback (an `impl` cannot hold one): their
        // callees' companions are reached directly.
        let (params, body) = if callees.is_empty() || self.methods {
            let params = bound.iter().map(|(pat, ty)| quote!(#pat: #ty));
            (receiver.into_iter().chain(params).collect::<Vec<_>>(), quote!(#body #ret))
        } else {
            for c in callees {
                if !self.callees.iter().any(|(p, _)| *p == c.0) {
                    self.callees.push(c);
                }
            }
            // The companion of a callee is found through the inner `use self::*`, which
            // shadows the outer block; the fallback is only reached when it is missing.
            // The glob also shadows names bound outside the block, so the parameters
            // are bound inside it: a user's `fn x` or `const x` in scope never stands
            // in for the parameter `x`.
            let args: Vec<Ident> = (0..bound.len()).map(|i| format_ident!("__adjoint_arg{}", i)).collect();
            let params = args.iter().zip(&bound).map(|(a, (_, ty))| quote!(#a: #ty));
            let pats = bound.iter().map(|(pat, _)| pat);
            let body = quote! {
                #[allow(unused_imports)]
                use __adjoint_not_differentiable::*;
                {
                    #[allow(unused_imports)]
                    use self::*;
                    #(let #pats = #args;)*
                    #body
                    #ret
                }
            };
            (receiver.into_iter().chain(params).collect::<Vec<_>>(), body)
        };
        quote! {
            #[doc(hidden)]
            #[allow(unused_variables, unused_mut, unused_parens, unused_assignments, unreachable_code, non_snake_case, clippy::all, clippy::pedantic)]
            #vis fn #name #generics (#(#params),*) -> #output #where_clause {
                #body
            }
        }
    }

    /// The derivative companion of an entity that has used up its order: calling it is a
    /// compile error that says which `order` to write.
    fn order_stub(&mut self, e: &Entity) -> TokenStream {
        let user = self.user;
        let needed = e.depth + 1;
        let msg = format!(
            "`{user}` is differentiable up to order {} only, and this needs derivative order {needed}",
            self.order
        );
        let note = format!(
            "write `#[differentiable(order = {needed})]` on `{user}` (the order counts every derivative taken through it, \
             including `grad!` calls in its body), or give the calling function a lower `order`"
        );
        let name = format_ident!("__adjoint_d1");
        let trait_name = format_ident!("OrderExceeded");
        let refusal = refusal_trait(&trait_name, &msg, "derivative order exceeded", &note);
        let stub = refusing_fn(&name, e.sig.params.len() + 1, &trait_name, false);
        quote!(#refusal #stub)
    }

    /// `grad!`/`value_and_grad!` of a function whose output is not a scalar: a located
    /// compile error that points to `vjp!`.
    fn non_scalar_stub(&mut self, name: &Ident, which: &str, sig: &Signature) -> TokenStream {
        let user = self.user;
        let ty = sig.output.as_ref().map(sig::type_string).unwrap_or_else(|| "()".into());
        let msg = format!("`{which}!` needs a function with a scalar float output, but `{user}` returns `{ty}`");
        let note = format!(
            "for a non-scalar output use `vjp!({user})(args…, cotangent)`: its last argument is the output's cotangent"
        );
        let trait_name = format_ident!("{}NeedsScalarOutput", if which == "grad" { "Grad" } else { "ValueAndGrad" });
        if self.methods {
            // An `impl` holds no trait: the runtime's, which names the output type.
            let krate = self.krate;
            let out = sig.output_type();
            let bound = quote!(#krate::__private::#trait_name<#out>);
            return refusing_fn_with(name, sig.params.len() - 1, &bound, true, true);
        }
        let refusal = refusal_trait(&trait_name, &msg, "not a scalar output", &note);
        let stub = refusing_fn(name, sig.params.len(), &trait_name, true);
        quote!(#refusal #stub)
    }
}

/// A trait with no implementation, whose `on_unimplemented` message explains a misuse
/// (see [`refusing_fn`]).
pub(crate) fn refusal_trait(trait_name: &Ident, message: &str, label: &str, note: &str) -> TokenStream {
    quote_spanned! {trait_name.span()=>
        #[diagnostic::on_unimplemented(message = #message, label = #label, note = #note)]
        #[doc(hidden)]
        pub trait #trait_name {}
    }
}

/// A function of `arity` arguments of any type that is a compile error to call: it
/// requires `&(): Trait` of a [`refusal_trait`], so the error is that trait's message,
/// at the call. It returns `!` where `diverges`, or else any `R` the caller expects.
pub(crate) fn refusing_fn(name: &Ident, arity: usize, trait_name: &Ident, diverges: bool) -> TokenStream {
    refusing_fn_with(name, arity, &quote!(#trait_name), diverges, false)
}

/// [`refusing_fn`] with any bound, and with a `&self` receiver before the `arity`
/// arguments for a method's companion (called as `x.m(…)` or `Type::m(&x, …)`).
pub(crate) fn refusing_fn_with(
    name: &Ident,
    arity: usize,
    bound: &TokenStream,
    diverges: bool,
    receiver: bool,
) -> TokenStream {
    let tys: Vec<Ident> = (0..arity).map(|i| format_ident!("A{}", i, span = name.span())).collect();
    let (out_param, output) = match diverges {
        true => (None, quote!(!)),
        false => (Some(quote!(R)), quote!(R)),
    };
    let this = receiver.then(|| quote!(&self,));
    quote! {
        #[doc(hidden)]
        #[allow(clippy::all)]
        pub fn #name<'__adjoint, #(#tys,)* #out_param>(#this #(_: #tys),*) -> #output
        where
            &'__adjoint (): #bound,
        {
            ::core::unreachable!()
        }
    }
}

/// The signature of the derivative of a function with signature `sig`.
fn derivative_sig(
    sig: &EntitySig,
    grads: &[GradOut],
    seed: Seed,
    keep_value: bool,
    facing: bool,
    tangent: Option<&syn::Path>,
) -> EntitySig {
    let requested: Vec<usize> = (0..grads.len()).filter(|i| grads[*i] != GradOut::Omit).collect();
    let grad_tys: Vec<Type> = requested
        .iter()
        .map(|i| match grads[*i] {
            GradOut::Yes | GradOut::Zero => sig::grad_type(&sig.params[*i].ty, &sig.params[*i].class, tangent),
            _ => syn::parse_quote!(()),
        })
        .collect();
    let grad_classes: Vec<Class> = requested
        .iter()
        .map(|i| match grads[*i] {
            GradOut::Yes | GradOut::Zero => grad_class(&sig.params[*i].class),
            _ => Class::Inactive,
        })
        .collect();
    let (grads_ty, grads_class) = if facing && requested.len() == 1 {
        (grad_tys[0].clone(), grad_classes[0].clone())
    } else {
        (syn::parse_quote!((#(#grad_tys,)*)), Class::Tuple(grad_classes))
    };
    let (output, output_class) = if keep_value {
        let out = &sig.output;
        (syn::parse_quote!((#out, #grads_ty)), Class::Tuple(vec![sig.output_class.clone(), grads_class]))
    } else {
        (grads_ty, grads_class)
    };
    let mut params = sig.params.clone();
    if seed == Seed::Param {
        params.push(EntityParam {
            ty: cotangent_type(&sig.output, &sig.output_class, tangent),
            class: sig.output_class.clone(),
            active: true,
            receiver: None,
        });
    }
    EntitySig { generics: sig.generics.clone(), params, output, output_class }
}

/// The internal derivative of an entity: one gradient per parameter.
/// Whether `grad!` applies: a float, or a value that may be a scalar (a tensor, a type
/// parameter); a struct of the user's is not (its `vjp!` takes a cotangent struct).
fn scalar_output(sig: &EntitySig) -> bool {
    match sig.output_class {
        Class::Float => true,
        Class::Opaque => !sig::names_user_type(&sig.output, &sig.generics),
        _ => false,
    }
}

/// The type of an output's cotangent: the output's own type, except where it holds a
/// value the macro cannot see, whose cotangent is its `Tangent` (a struct's gradient
/// struct). Other parts keep their type (an integer in a tuple output is ignored).
fn cotangent_type(ty: &Type, class: &Class, tangent: Option<&syn::Path>) -> Type {
    match (class, ty) {
        (Class::Opaque, _) => sig::grad_type(ty, class, tangent),
        (Class::Tuple(items), Type::Tuple(t)) if items.contains(&Class::Opaque) => {
            let elems = t.elems.iter().zip(items).map(|(e, c)| cotangent_type(e, c, tangent));
            syn::parse_quote!((#(#elems,)*))
        }
        (_, Type::Paren(p)) => cotangent_type(&p.elem, class, tangent),
        _ => ty.clone(),
    }
}

fn internal_grads(sig: &EntitySig) -> Vec<GradOut> {
    sig.params
        .iter()
        .map(|p| match (p.active, p.class.differentiable()) {
            (true, _) => GradOut::Yes,
            // A `#[no_grad]` value of the user's type may have no gradient type at all
            // (a config struct without the derive): its slot is `()`.
            (false, true)
                if p.class == Class::Opaque && (p.receiver.is_some() || sig::names_user_type(&p.ty, &sig.generics)) =>
            {
                GradOut::Unit
            }
            (false, true) => GradOut::Zero,
            (false, false) => GradOut::Unit,
        })
        .collect()
}

/// A parameter passed on as it was received.
fn param_arg(pat: &Tree<Var>, vars: &crate::ir::Vars) -> Arg {
    match pat {
        Tree::Tuple(items) => Arg::Tuple(items.iter().map(|t| param_arg(t, vars)).collect()),
        Tree::Leaf(v) if vars.kind(*v).is_buffer() => Arg::Buffer { buf: *v, borrowed: false },
        Tree::Leaf(v) => Arg::Value(Operand::Var(*v)),
    }
}

fn tree_arg(t: &Tree<Operand>) -> Arg {
    match t {
        Tree::Leaf(o) => Arg::Value(o.clone()),
        Tree::Tuple(items) => Arg::Tuple(items.iter().map(tree_arg).collect()),
    }
}

/// The class of a gradient of a value of this class.
fn grad_class(c: &Class) -> Class {
    match c {
        Class::Tuple(items) => Class::Tuple(items.iter().map(grad_class).collect()),
        Class::Float | Class::FloatBuffer | Class::NestedBuffer | Class::Opaque => c.clone(),
        _ => Class::Inactive,
    }
}

/// The module that makes calling the derivative of a function that is not
/// differentiable a located error with a hint, instead of an unresolved name.
///
/// It sits in the companion module, so every generated function of the tower (reached
/// through the `use super::*` chain) resolves a missing `g::__adjoint_d1` to the same
/// fallback item: rustc reports the failing bound once, at the user's call of `g`.
fn fallback_module(callees: &[(Vec<Ident>, usize)], krate: &syn::Path) -> TokenStream {
    if callees.is_empty() {
        return TokenStream::new();
    }
    let mut roots: Vec<Ident> = Vec::new();
    for (path, _) in callees {
        if !roots.contains(&path[0]) {
            roots.push(path[0].clone());
        }
    }
    let modules = roots.iter().map(|g| {
        let span = g.span();
        let trait_name = format_ident!("{}IsNotDifferentiable", camel(&g.to_string()));
        let msg = format!("`{g}` is not differentiable, but a value that carries a derivative is passed to it");
        let label = format!("`{g}` has no derivative code");
        let note = format!(
            "mark `{g}` with `#[differentiable]`, give it a derivative of your own with `#[differentiable(custom_vjp = {g}_vjp)]`, \
             or wrap the argument in `detach(…)` if no gradient should flow through this call"
        );
        let paths: Vec<(&[Ident], usize)> =
            callees.iter().filter(|(p, _)| p[0] == *g).map(|(p, n)| (&p[1..], *n)).collect();
        // One path reports: a shortest one (a deeper one is the derivative of a shorter
        // one, whose error already says everything). `__adjoint_split` first among them:
        // the silent stand-ins of the others have fully determined types, and the code
        // calling the reporting one stops at its error.
        let shortest = paths.iter().map(|(p, _)| p.len()).min().unwrap_or(1);
        let rank = |leaf: &Ident| [names::SPLIT, names::D1, names::D1_MASKED].iter().position(|n| leaf == n);
        let reporter = paths
            .iter()
            .filter(|(p, _)| p.len() == shortest)
            .map(|(p, _)| p[shortest - 1].clone())
            .min_by_key(|leaf| rank(leaf).unwrap_or(usize::MAX))
            .expect("a path");
        let tree = fallback_tree(&paths, 1, &trait_name, (shortest, &reporter), krate);
        let g_local = Ident::new(&g.to_string(), span);
        quote_spanned! {span=>
            #[diagnostic::on_unimplemented(message = #msg, label = #label, note = #note)]
            pub trait #trait_name {}
            pub mod #g_local {
                #tree
            }
        }
    });
    quote! {
        #[doc(hidden)]
        #[allow(non_snake_case, non_camel_case_types, dead_code, unreachable_code)]
        pub mod __adjoint_not_differentiable {
            #(#modules)*
        }
    }
}

/// The fallback items for the paths below one module, `depth` modules under the
/// fallback root (where the marker trait is).
fn fallback_tree(
    paths: &[(&[Ident], usize)],
    depth: usize,
    marker: &Ident,
    reporting: (usize, &Ident),
    krate: &syn::Path,
) -> TokenStream {
    let mut out = TokenStream::new();
    let mut done: Vec<String> = Vec::new();
    for (p, n) in paths {
        let head = &p[0];
        if p.len() == 1 {
            let tys: Vec<Ident> = (0..*n).map(|i| format_ident!("A{}", i)).collect();
            if (depth, head) == reporting {
                let supers = std::iter::repeat_n(quote!(super::), depth);
                out.extend(quote! {
                    pub fn #head<'__adjoint, #(#tys,)* R>(#(_: #tys),*) -> R
                    where
                        &'__adjoint (): #(#supers)* #marker,
                    {
                        ::core::unreachable!()
                    }
                });
            } else {
                // (A split derivative is only ever called from a user function's first
                // derivative: its path is a shortest one, and it reports.)
                // Silent, with the result type a derivative companion would have (one
                // gradient per argument but the cotangent and the mask), so nothing
                // else fails.
                let mask = usize::from(head == names::D1_MASKED);
                let grads = tys.iter().take(tys.len().saturating_sub(1 + mask));
                let bounded = tys.iter().take(tys.len() - mask);
                let rest = tys.iter().skip(tys.len() - mask);
                out.extend(quote! {
                    pub fn #head<#(#bounded: #krate::__private::Tangent,)* #(#rest),*>(#(_: #tys),*)
                        -> (#(<#grads as #krate::__private::Tangent>::Tangent,)*)
                    {
                        ::core::unreachable!()
                    }
                });
            }
        }
        let name = head.to_string();
        if done.contains(&name) {
            continue;
        }
        let below: Vec<(&[Ident], usize)> =
            paths.iter().filter(|(q, _)| q.len() > 1 && q[0] == *head).map(|(q, k)| (&q[1..], *k)).collect();
        if !below.is_empty() {
            done.push(name);
            let inner = fallback_tree(&below, depth + 1, marker, reporting, krate);
            out.extend(quote! {
                pub mod #head {
                    #inner
                }
            });
        }
    }
    out
}

fn camel(s: &str) -> String {
    s.split('_')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let mut c = p.chars();
            c.next().map(|f| f.to_uppercase().collect::<String>() + c.as_str()).unwrap_or_default()
        })
        .collect()
}

/// `#[differentiable]` on a trait: every method gets the declarations of its
/// derivative companions (`__adjoint_d1_m`, …), which implementations provide.
pub fn differentiable_trait(args: Args, mut item: syn::ItemTrait) -> TokenStream {
    let mut cx = Ctxt::new();
    // A trait of the user's (not one of the runtime's rule traits, which name their
    // crate): its implementing types' gradients are their `Tangent`s, and a method on
    // `self` is first order by default, as a method of a struct is.
    let user_trait = !args.in_runtime();
    let krate: syn::Path = syn::parse_quote!(::adjoint);
    let tangent = user_trait.then_some(&krate);
    let on_self = item.items.iter().any(|ti| matches!(ti, syn::TraitItem::Fn(f) if f.sig.receiver().is_some()));
    let default = if user_trait && on_self { 1 } else { DEFAULT_ORDER };
    let order = args.order.as_ref().map(|(n, _)| *n).unwrap_or(default);
    let float_params = sig::float_type_params(&item.generics);
    let mut added = Vec::new();
    for ti in &item.items {
        let syn::TraitItem::Fn(f) = ti else { continue };
        let sig = Signature::parse_in(&f.sig, &syn::Visibility::Inherited, &float_params, true, &mut cx);
        let mut cur = entity_sig(&sig);
        let mut name = f.sig.ident.to_string();
        if user_trait && order >= 1 && f.sig.receiver().is_some() {
            added.push(trait_call_companions(&krate, &f.sig.ident, &cur));
        }
        for _ in 0..order {
            cur = derivative_sig(&cur, &internal_grads(&cur), Seed::Param, false, false, tangent);
            name = reverse::derivative_method(&name);
            let id = Ident::new(&name, f.sig.ident.span());
            let params = cur.params.iter().enumerate().map(|(i, p)| match &p.receiver {
                Some(r) => receiver_param(r, false),
                None => {
                    let arg = format_ident!("arg{}", i);
                    let ty = &p.ty;
                    quote!(#arg: #ty)
                }
            });
            let (generics, output) = (&cur.generics, &cur.output);
            let mut where_clause = cur.generics.where_clause.clone();
            if user_trait {
                // The companions name `Self`'s gradient type: they exist for types that have one.
                let wc = where_clause.get_or_insert_with(|| syn::parse_quote!(where));
                wc.predicates.push(syn::parse_quote!(Self: ::core::marker::Sized + #krate::__private::Tangent));
            }
            let where_clause = &where_clause;
            added.push(match &args.higher_order {
                None => quote! {
                    #[doc(hidden)]
                    fn #id #generics (#(#params),*) -> #output #where_clause;
                },
                Some(bound) => {
                    let mut where_clause = where_clause.clone().unwrap_or_else(|| syn::parse_quote!(where));
                    where_clause.predicates.push(syn::parse_quote!(Self: #bound));
                    quote! {
                        #[doc(hidden)]
                        #[allow(unused_variables)]
                        fn #id #generics (#(#params),*) -> #output #where_clause {
                            // Every type that satisfies the bound implements this method.
                            ::core::unreachable!()
                        }
                    }
                }
            });
        }
    }
    for a in added {
        item.items.push(syn::TraitItem::Verbatim(a));
    }
    let err = cx.check().err().map(|e| e.to_compile_error());
    quote!(#item #err)
}

/// The split and masked companions a caller of a user trait's method asks for
/// (`__adjoint_split_m`, `__adjoint_d1_masked_m`), provided by the trait itself on top
/// of `__adjoint_d1_m`, which each implementation generates: the split form runs the
/// method, and its pullback the derivative (which runs the method's forward again).
fn trait_call_companions(krate: &syn::Path, method: &Ident, user: &EntitySig) -> TokenStream {
    let bound: syn::WherePredicate = syn::parse_quote!(Self: ::core::marker::Sized + #krate::__private::Tangent);
    let d1 = derivative_sig(user, &internal_grads(user), Seed::Param, false, false, Some(krate));
    let name = |entity: &str| Ident::new(&names::method_companion(entity, &method.to_string()), method.span());
    let d1_name = Ident::new(&reverse::derivative_method(&method.to_string()), method.span());
    let args: Vec<Ident> = (1..user.params.len()).map(|i| format_ident!("arg{}", i)).collect();
    let cot = format_ident!("arg{}", user.params.len());
    // Split: the user's arguments, the d1's gradients, the value and a boxed pullback.
    let (mut split, shape) = split_signature(user, &d1);
    split.generics.make_where_clause().predicates.push(bound.clone());
    let split_header =
        stubs::header(krate, &TokenStream::new(), &name(names::SPLIT), &split, 0, Some(&shape), true, true);
    let mut masked = d1.clone();
    masked.generics.make_where_clause().predicates.push(bound);
    let masked_header =
        stubs::header(krate, &TokenStream::new(), &name(names::D1_MASKED), &masked, 0, None, true, true);
    quote! {
        #[doc(hidden)]
        #[allow(unused_variables, clippy::all)]
        #split_header {
            let value = self.#method(#(::core::clone::Clone::clone(&#args)),*);
            (value, ::std::boxed::Box::new(move |cotangent| self.#d1_name(#(#args,)* cotangent)))
        }
        #[doc(hidden)]
        #[allow(unused_variables, clippy::all)]
        #masked_header {
            self.#d1_name(#(#args,)* #cot)
        }
    }
}

/// `#[differentiable]` on an `impl` block: every method gets its derivative companions
/// as sibling methods (for a trait implementation, the ones the trait declares).
pub fn differentiable_impl(args: Args, mut item: syn::ItemImpl) -> TokenStream {
    let mut cx = Ctxt::new();
    let krate: syn::Path = args.krate.clone().unwrap_or_else(|| syn::parse_quote!(::adjoint));
    let float_params = sig::float_type_params(&item.generics);
    let in_trait = item.trait_.is_some();
    let mut added = Vec::new();
    for ii in &item.items {
        let syn::ImplItem::Fn(f) = ii else { continue };
        // Each method is checked on its own: one rejected method leaves the others'
        // companions in place.
        let before = cx.error_count();
        let sig = Signature::parse_in(&f.sig, &f.vis, &float_params, true, &mut cx);
        if cx.error_count() > before {
            continue;
        }
        let lowered = lower::lower(&sig, &f.block, &mut cx);
        if cx.error_count() > before {
            if !in_trait {
                // Callers of the rejected method type-check against stubs of its
                // companions (a trait's are declared by the trait).
                let wrt: Vec<bool> = sig.params.iter().map(|p| p.active()).collect();
                added.push(stubs::typed(&sig, &wrt, args.order.as_ref().map(|(n, _)| *n), &krate, true));
            }
            continue;
        }
        let order = args
            .order
            .as_ref()
            .map(|(n, _)| *n)
            .unwrap_or_else(|| default_order(&sig, &lowered.func, lowered.nests_derivatives));
        let entity = Entity { sig: entity_sig(&sig), func: lowered.func, order, depth: 0, module_depth: 0 };
        let mut tower = Tower {
            krate: &krate,
            user: &f.sig.ident,
            order,
            cx: &mut cx,
            callees: Vec::new(),
            // The runtime's rule traits declare their companions with the types
            // themselves as gradient types (see `differentiable_trait`); user code uses
            // `Tangent`.
            tangent: if in_trait && args.in_runtime() { None } else { Some(krate.clone()) },
            methods: true,
        };
        if order >= 1 && !in_trait {
            // The companions of `#[differentiable]` on the method itself: the derivative
            // tower, the split and masked forms, and what `grad!(Type::f)` calls.
            let wrt: Vec<bool> = sig.params.iter().map(|p| p.active()).collect();
            added.push(tower.method_companions(&entity, &sig, &wrt));
        } else if order >= 1 {
            let mut d1 = tower.derivative(&entity, &internal_grads(&entity.sig), Seed::Param, false, false);
            d1.module_depth = 0;
            let name = Ident::new(&reverse::derivative_method(&f.sig.ident.to_string()), f.sig.ident.span());
            added.push(tower.method_tower(&d1, &name, &TokenStream::new()));
        }
    }
    for ii in &mut item.items {
        if let (syn::ImplItem::Fn(f), false) = (ii, in_trait) {
            // Calling only `grad!(Type::f)` is a use of `f`.
            f.attrs.push(syn::parse_quote!(#[allow(dead_code)]));
        }
    }
    for a in added {
        item.items.push(syn::ImplItem::Verbatim(a));
    }
    let err = cx.check().err().map(|e| e.to_compile_error());
    quote!(#item #err)
}

/// What a split function returns: the value's type, and the gradients' (`__adjoint_d1`'s
/// result); `reverse_start` is where its body's reverse sweep starts.
struct SplitShape {
    reverse_start: usize,
    value: Type,
    /// The value's cotangent (the value's type, or its `Tangent` where the macro cannot
    /// see into it).
    cotangent: Type,
    grads: Type,
}

impl SplitShape {
    /// The shape of the split form of a function whose value has type `value` and whose
    /// derivative companion is `d1` (its last parameter is the cotangent).
    fn of(value: &Type, d1: &EntitySig, reverse_start: usize) -> SplitShape {
        SplitShape {
            reverse_start,
            value: value.clone(),
            cotangent: d1.params.last().expect("a cotangent").ty.clone(),
            grads: d1.output.clone(),
        }
    }
}

/// The signature of a split companion (the user's arguments, `d1`'s gradients) and its
/// shape, for the companions written without a body of their own (stubs, custom rules,
/// a trait's defaults).
fn split_signature(user: &EntitySig, d1: &EntitySig) -> (EntitySig, SplitShape) {
    let mut split = user.clone();
    split.output = d1.output.clone();
    (split, SplitShape::of(&user.output, d1, 0))
}

/// How a dispatching companion picks its callee.
struct Dispatch<'d> {
    /// The bits of the active arguments.
    active: u64,
    /// A callee per mask.
    arms: &'d [(u64, Ident)],
    /// The callee for other masks.
    full: &'d Ident,
}

/// `(value, Box<dyn FnOnce(cotangent) -> gradients + '__adjoint>)`.
fn split_output(shape: &SplitShape, depth: usize) -> TokenStream {
    let value = with_lifetime(&crate::emit::rebase_type(&shape.value, depth));
    let cotangent = with_lifetime(&crate::emit::rebase_type(&shape.cotangent, depth));
    let grads = with_lifetime(&crate::emit::rebase_type(&shape.grads, depth));
    quote!((#value, ::std::boxed::Box<dyn ::core::ops::FnOnce(#cotangent) -> #grads + '__adjoint>))
}

/// `ty` with its elided borrows (`&T`, `'_`) given the lifetime `'__adjoint`, which the
/// pullback of a split function may capture.
fn with_lifetime(ty: &Type) -> Type {
    struct Name;
    impl syn::visit_mut::VisitMut for Name {
        fn visit_type_reference_mut(&mut self, r: &mut syn::TypeReference) {
            if r.lifetime.is_none() {
                r.lifetime = Some(syn::parse_quote!('__adjoint));
            }
            syn::visit_mut::visit_type_reference_mut(self, r);
        }
        fn visit_lifetime_mut(&mut self, l: &mut syn::Lifetime) {
            if l.ident == "_" {
                *l = syn::parse_quote!('__adjoint);
            }
        }
    }
    let mut t = ty.clone();
    syn::visit_mut::VisitMut::visit_type_mut(&mut Name, &mut t);
    t
}

/// The generics of a split function: the user's, the lifetime `'__adjoint` of what the
/// pullback borrows, and every other generic outliving it.
fn add_split_lifetime(generics: &mut syn::Generics) {
    let outliving: Vec<syn::WherePredicate> = generics
        .params
        .iter()
        .filter_map(|g| match g {
            syn::GenericParam::Type(t) => {
                let id = &t.ident;
                Some(syn::parse_quote!(#id: '__adjoint))
            }
            syn::GenericParam::Lifetime(l) => {
                let lt = &l.lifetime;
                Some(syn::parse_quote!(#lt: '__adjoint))
            }
            syn::GenericParam::Const(_) => None,
        })
        .collect();
    generics.params.insert(0, syn::parse_quote!('__adjoint));
    generics.make_where_clause().predicates.extend(outliving);
}

/// The receiver of a generated method (`self`, `&self`); a split function's borrowed
/// receiver gets the lifetime its pullback may capture.
fn receiver_param(r: &syn::Receiver, split: bool) -> TokenStream {
    let and = r.reference.as_ref().map(|(a, _)| a);
    let lifetime = r.reference.as_ref().and_then(|(_, l)| l.as_ref());
    match (split, and) {
        (true, Some(and)) => quote!(#and '__adjoint self),
        _ => quote!(#and #lifetime self),
    }
}
