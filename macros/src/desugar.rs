//! Desugaring: iterator chains and local closures → the loops and blocks they stand for.
//!
//! Runs on the syntax tree of a body before it is lowered, so that activity analysis,
//! recording and the reverse sweep only ever see loops they already handle, and the
//! generated code reads like the loop the user could have written:
//!
//! ```text
//! let w: f64 = xs.iter().zip(ys).map(|(a, b)| a * b).sum::<f64>();
//! // becomes
//! let w: f64 = {
//!     let len = xs.len().min(ys.len());
//!     let mut sum = 0.0;
//!     for i in 0..len {
//!         let (a, b) = (&xs[i], &ys[i]);
//!         sum += a * b;
//!     }
//!     sum
//! };
//! ```
//!
//! - A closure bound by `let f = |…| …;` is inlined at each call `f(a, b)` as the block
//!   `{ let (p, q) = (a, b); body }`; one passed to an adaptor is inlined the same way.
//!   Its captures are then reads of the enclosing locals: a later `let` that would hide
//!   one gets a fresh name (with its reads), so the inlined body still reads what the
//!   closure captured; a capture hidden otherwise (a loop's or an arm's pattern), or a
//!   `return` inside the closure, is reported.
//! - `θ.sin_cos()` is `(θ.sin(), θ.cos())` (bit for bit what `std` returns), and
//!   `v.swap(i, j)` the exchange of two elements.
//! - A chain is a source (`x.iter()`, `x.iter_mut()`, `x.into_iter()`, `&x`, `x[a..b]`,
//!   a range, `x.windows(k)`, `x.chunks(k)`), adaptors that keep the elements addressable
//!   by index (`zip`, `enumerate`, `rev`, `skip`, `take`, `step_by`, `map`, `copied`,
//!   `cloned`), adaptors applied to each element in turn once a `filter` has made
//!   positions unknowable (`filter`, `filter_map` of an `Option` written `o.map(|v| …)`,
//!   `Some(…)` or `if c { Some(…) } else { None }`, `map`, `enumerate`, `skip`, `take`),
//!   and a consumer
//!   (`for`, `sum`, `product`, `fold`, `collect`, `max_by`/`min_by` + `unwrap`, `count`).
//!   It becomes one loop over an index.
//!
//! Closures are assumed to be pure functions of their arguments and captures, as the
//! adaptors' documentation asks: a closure given to `map` runs once per element, in
//! the order the consumer asks for elements, as in `std`.

use std::collections::HashSet;
use std::rc::Rc;

use proc_macro2::{Span, TokenStream};
use quote::ToTokens;
use syn::spanned::Spanned;
use syn::visit::Visit;
use syn::visit_mut::VisitMut;
use syn::{parse_quote, parse_quote_spanned, Expr, Ident, Pat, Stmt};

use crate::ctxt::Ctxt;

/// Rewrite the iterator chains and local closures of `body`.
pub fn desugar(body: &syn::Block, cx: &mut Ctxt) -> syn::Block {
    let mut names = Names::default();
    names.visit_block(body);
    let mut d =
        Desugarer { cx, names, closures: vec![Vec::new()], bindings: vec![Vec::new()], next_binding: 1, depth: 0 };
    let mut body = body.clone();
    crate::labels::unlabel(&mut body, &mut |base, span| d.names.fresh(base, span), d.cx);
    d.visit_block_mut(&mut body);
    body
}

// ------------------------------------------------------------------ names

/// Every identifier of the body, so that generated names collide with none.
#[derive(Default)]
struct Names {
    used: HashSet<String>,
}

impl<'ast> Visit<'ast> for Names {
    fn visit_ident(&mut self, i: &'ast Ident) {
        self.used.insert(i.to_string());
    }
}

impl Names {
    /// `base`, or `base_1`, `base_2`, … : a name used nowhere yet.
    fn fresh(&mut self, base: &str, span: Span) -> Ident {
        let mut name = base.to_string();
        let mut n = 0;
        while self.used.contains(&name) {
            n += 1;
            name = format!("{base}_{n}");
        }
        self.used.insert(name.clone());
        Ident::new(&name, span)
    }
}

// ------------------------------------------------------------------ closures

/// A closure bound by `let name = |…| …;`, and what its free names were bound to where
/// it was defined.
#[derive(Clone)]
struct ClosureDef {
    name: String,
    closure: syn::ExprClosure,
    captures: Vec<(String, u64)>,
}

/// Something a chain or a call applies to each element: a closure, or a function or
/// float method named by its path (`.map(f64::exp)`, `.fold(x, f64::max)`).
#[derive(Clone)]
enum Func {
    Closure(syn::ExprClosure),
    Path(syn::ExprPath),
}

struct Desugarer<'a> {
    cx: &'a mut Ctxt,
    names: Names,
    /// The closures in scope, innermost block last.
    closures: Vec<Vec<ClosureDef>>,
    /// The local bindings in scope (name, id), innermost block last: a closure's
    /// captures must still mean the same bindings where it is called.
    bindings: Vec<Vec<(String, u64)>>,
    next_binding: u64,
    /// Closure inlining depth (a closure that calls itself through another is reported).
    depth: usize,
}

/// Names bound by a pattern.
pub(crate) fn pattern_names(pat: &Pat, out: &mut Vec<Ident>) {
    struct Collect<'o>(&'o mut Vec<Ident>);
    impl<'ast> Visit<'ast> for Collect<'_> {
        fn visit_pat_ident(&mut self, p: &'ast syn::PatIdent) {
            self.0.push(p.ident.clone());
            syn::visit::visit_pat_ident(self, p);
        }
    }
    Collect(out).visit_pat(pat);
}

/// The binding `from` in a pattern renamed `to`.
fn rename_binding(pat: &mut Pat, from: &str, to: &Ident) {
    struct R<'a>(&'a str, &'a Ident);
    impl VisitMut for R<'_> {
        fn visit_pat_ident_mut(&mut self, p: &mut syn::PatIdent) {
            if p.ident == self.0 {
                p.ident = Ident::new(&self.1.to_string(), p.ident.span());
            }
            syn::visit_mut::visit_pat_ident_mut(self, p);
        }
    }
    R(from, to).visit_pat_mut(pat);
}

/// Whether a pattern binds `name`.
fn binds(pat: &Pat, name: &str) -> bool {
    let mut names = Vec::new();
    pattern_names(pat, &mut names);
    names.iter().any(|n| n == name)
}

/// The reads of `from` in `stmts` renamed `to`, up to where a pattern binds `from`
/// again (a later `let`; a closure's, a `for`'s, an `if let`'s or an arm's pattern
/// inside them): from there on the name means that binding.
fn rename_reads(stmts: &mut [Stmt], from: &str, to: &Ident) {
    let mut r = RenameReads { from, to };
    for s in stmts {
        if let Stmt::Local(local) = s {
            if let Some(init) = &mut local.init {
                r.visit_expr_mut(&mut init.expr);
                if let Some((_, diverge)) = &mut init.diverge {
                    r.visit_expr_mut(diverge);
                }
            }
            if binds(&local.pat, from) {
                return;
            }
        } else {
            r.visit_stmt_mut(s);
        }
    }
}

struct RenameReads<'a> {
    from: &'a str,
    to: &'a Ident,
}

impl RenameReads<'_> {
    fn renamed(&self, span: Span) -> Ident {
        Ident::new(&self.to.to_string(), span)
    }

    fn rename_tokens(&self, tokens: TokenStream) -> TokenStream {
        tokens
            .into_iter()
            .map(|tt| match tt {
                proc_macro2::TokenTree::Ident(id) if id == self.from => {
                    proc_macro2::TokenTree::Ident(self.renamed(id.span()))
                }
                proc_macro2::TokenTree::Group(g) => {
                    let mut inner = proc_macro2::Group::new(g.delimiter(), self.rename_tokens(g.stream()));
                    inner.set_span(g.span());
                    proc_macro2::TokenTree::Group(inner)
                }
                other => other,
            })
            .collect()
    }
}

impl RenameReads<'_> {
    /// The condition of an `if` or `while` and the block it guards, which an `if let`
    /// or `while let` pattern binding the name hides from the renaming.
    fn conditional_block(&mut self, cond: &mut Expr, block: &mut syn::Block) {
        if let Expr::Let(l) = cond {
            self.visit_expr_mut(&mut l.expr);
            if binds(&l.pat, self.from) {
                return;
            }
        } else {
            self.visit_expr_mut(cond);
        }
        self.visit_block_mut(block);
    }
}

impl VisitMut for RenameReads<'_> {
    fn visit_expr_path_mut(&mut self, p: &mut syn::ExprPath) {
        if p.qself.is_none() && p.path.get_ident().is_some_and(|i| i == self.from) {
            let span = p.path.segments[0].ident.span();
            p.path.segments[0].ident = self.renamed(span);
        }
    }
    fn visit_block_mut(&mut self, b: &mut syn::Block) {
        rename_reads(&mut b.stmts, self.from, self.to);
    }
    fn visit_expr_closure_mut(&mut self, c: &mut syn::ExprClosure) {
        if !c.inputs.iter().any(|p| binds(p, self.from)) {
            self.visit_expr_mut(&mut c.body);
        }
    }
    fn visit_expr_for_loop_mut(&mut self, f: &mut syn::ExprForLoop) {
        self.visit_expr_mut(&mut f.expr);
        if !binds(&f.pat, self.from) {
            self.visit_block_mut(&mut f.body);
        }
    }
    fn visit_expr_if_mut(&mut self, i: &mut syn::ExprIf) {
        self.conditional_block(&mut i.cond, &mut i.then_branch);
        if let Some((_, e)) = &mut i.else_branch {
            self.visit_expr_mut(e);
        }
    }
    fn visit_expr_while_mut(&mut self, w: &mut syn::ExprWhile) {
        self.conditional_block(&mut w.cond, &mut w.body);
    }
    fn visit_arm_mut(&mut self, a: &mut syn::Arm) {
        if !binds(&a.pat, self.from) {
            if let Some((_, g)) = &mut a.guard {
                self.visit_expr_mut(g);
            }
            self.visit_expr_mut(&mut a.body);
        }
    }
    fn visit_field_value_mut(&mut self, f: &mut syn::FieldValue) {
        // `S { name }`, shorthand for `S { name: name }`.
        if f.colon_token.is_none() {
            if let syn::Member::Named(m) = &f.member {
                if m == self.from {
                    f.colon_token = Some(Default::default());
                    let to = self.renamed(m.span());
                    f.expr = parse_quote!(#to);
                    return;
                }
            }
        }
        syn::visit_mut::visit_field_value_mut(self, f);
    }
    fn visit_macro_mut(&mut self, m: &mut syn::Macro) {
        m.tokens = self.rename_tokens(std::mem::take(&mut m.tokens));
    }
    fn visit_item_mut(&mut self, _: &mut syn::Item) {}
}

/// The single-identifier paths an expression reads, and the names it binds anywhere.
fn free_names(closure: &syn::ExprClosure) -> Vec<String> {
    #[derive(Default)]
    struct Free {
        read: Vec<String>,
        bound: HashSet<String>,
    }
    impl<'ast> Visit<'ast> for Free {
        fn visit_expr_path(&mut self, p: &'ast syn::ExprPath) {
            if let Some(id) = p.path.get_ident() {
                self.read.push(id.to_string());
            }
        }
        fn visit_pat_ident(&mut self, p: &'ast syn::PatIdent) {
            self.bound.insert(p.ident.to_string());
            syn::visit::visit_pat_ident(self, p);
        }
        fn visit_macro(&mut self, m: &'ast syn::Macro) {
            // Names inside macro arguments (`grad!(f)(x)`, `vec![a; n]`) are read too.
            for tt in m.tokens.clone() {
                if let proc_macro2::TokenTree::Ident(id) = tt {
                    self.read.push(id.to_string());
                }
            }
        }
    }
    let mut f = Free::default();
    for p in &closure.inputs {
        f.visit_pat(p);
    }
    f.visit_expr(&closure.body);
    let mut out: Vec<String> = f.read.into_iter().filter(|n| !f.bound.contains(n)).collect();
    out.sort();
    out.dedup();
    out
}

/// Whether an expression contains `return` or `?` outside nested closures.
fn exits_function(e: &Expr) -> Option<TokenStream> {
    struct Find(Option<TokenStream>);
    impl<'ast> Visit<'ast> for Find {
        fn visit_expr_return(&mut self, r: &'ast syn::ExprReturn) {
            self.0.get_or_insert_with(|| r.to_token_stream());
        }
        fn visit_expr_try(&mut self, t: &'ast syn::ExprTry) {
            self.0.get_or_insert_with(|| t.to_token_stream());
        }
        fn visit_expr_closure(&mut self, _: &'ast syn::ExprClosure) {}
    }
    let mut f = Find(None);
    f.visit_expr(e);
    f.0
}

/// A pattern with its reference patterns removed: elements are bound by value here
/// (`|&x|`, `|(i, &x)|`, `for &(a, b) in …`), and the lowering reads `*x` as `x`.
fn by_value(pat: &Pat) -> Pat {
    match pat {
        Pat::Reference(r) => by_value(&r.pat),
        Pat::Tuple(t) => {
            let mut t = t.clone();
            for p in t.elems.iter_mut() {
                *p = by_value(p);
            }
            Pat::Tuple(t)
        }
        Pat::Paren(p) => by_value(&p.pat),
        Pat::Ident(p) if p.by_ref.is_some() => {
            let mut p = p.clone();
            p.by_ref = None;
            Pat::Ident(p)
        }
        other => other.clone(),
    }
}

impl Desugarer<'_> {
    /// `stmts[at]` is a `let` whose pattern would hide a binding that a closure in
    /// scope reads: in Rust the closure keeps reading the old binding, but closures are
    /// inlined at their calls here, where the name would mean the new one. The new
    /// binding gets a fresh name instead, and so do its reads in the statements after
    /// it (up to where the name is bound again).
    fn keep_captures_visible(&mut self, stmts: &mut [Stmt], at: usize) {
        let Stmt::Local(local) = &stmts[at] else { return };
        let mut bound = Vec::new();
        pattern_names(&local.pat, &mut bound);
        for name in bound {
            let n = name.to_string();
            let current = self.binding_of(&n);
            let read_by_closure = self
                .closures
                .iter()
                .flat_map(|scope| scope.iter())
                .any(|c| c.captures.iter().any(|(cn, id)| *cn == n && *id == current));
            if !read_by_closure {
                continue;
            }
            let fresh = self.names.fresh(&n, name.span());
            let Stmt::Local(local) = &mut stmts[at] else { unreachable!("checked above") };
            rename_binding(&mut local.pat, &n, &fresh);
            rename_reads(&mut stmts[at + 1..], &n, &fresh);
        }
    }

    fn bind_names(&mut self, pat: &Pat) {
        let mut names = Vec::new();
        pattern_names(pat, &mut names);
        for n in names {
            let id = self.next_binding;
            self.next_binding += 1;
            self.bindings.last_mut().expect("scope").push((n.to_string(), id));
        }
    }

    fn binding_of(&self, name: &str) -> u64 {
        self.bindings.iter().rev().flat_map(|s| s.iter().rev()).find(|(n, _)| n == name).map_or(0, |(_, id)| *id)
    }

    fn closure_named(&self, name: &str) -> Option<ClosureDef> {
        // A later `let` of the same name hides the closure.
        let closure = self.closures.iter().rev().flat_map(|s| s.iter().rev()).find(|c| c.name == name)?;
        (self.binding_of(name) == 0 || self.closure_binding(name)).then(|| closure.clone())
    }

    /// Whether the innermost binding of `name` is a closure's (closures record a
    /// binding too, with the marker below).
    fn closure_binding(&self, name: &str) -> bool {
        self.bindings
            .iter()
            .rev()
            .flat_map(|s| s.iter().rev())
            .find(|(n, _)| n == name)
            .is_some_and(|(_, id)| *id & CLOSURE_BINDING != 0)
    }

    fn scoped<R>(&mut self, f: impl FnOnce(&mut Self) -> R) -> R {
        self.closures.push(Vec::new());
        self.bindings.push(Vec::new());
        let r = f(self);
        self.bindings.pop();
        self.closures.pop();
        r
    }

    /// `let name = |…| …;`: remembered for inlining.
    fn define_closure(&mut self, name: &Ident, closure: &syn::ExprClosure) {
        let captures = free_names(closure).into_iter().map(|n| (n.clone(), self.binding_of(&n))).collect();
        self.closures.last_mut().expect("scope").push(ClosureDef {
            name: name.to_string(),
            closure: closure.clone(),
            captures,
        });
        let id = self.next_binding | CLOSURE_BINDING;
        self.next_binding += 1;
        self.bindings.last_mut().expect("scope").push((name.to_string(), id));
    }

    /// The closure's body applied to `args`: `{ let (p, q) = (a, b); body }`, or `None`
    /// (reported) when that would not mean what the closure means.
    fn apply(&mut self, func: &Func, args: Vec<Expr>, at: Span, def: Option<&ClosureDef>) -> Option<Expr> {
        match func {
            Func::Path(p) => Some(self.apply_path(p, args, at)),
            Func::Closure(c) => {
                self.check_closure(c, args.len(), at, def)?;
                let body = &c.body;
                let binding: Option<Stmt> = match c.inputs.len() {
                    0 => None,
                    1 => {
                        let pat = by_value(&c.inputs[0]);
                        let arg = &args[0];
                        Some(parse_quote_spanned!(at=> let #pat = #arg;))
                    }
                    _ => {
                        let pats: Vec<Pat> = c
                            .inputs
                            .iter()
                            .map(|p| match by_value(p) {
                                Pat::Type(t) => (*t.pat).clone(),
                                p => p,
                            })
                            .collect();
                        Some(parse_quote_spanned!(at=> let (#(#pats),*) = (#(#args),*);))
                    }
                };
                let out: Expr = match binding {
                    Some(b) => parse_quote_spanned!(at=> { #b #body }),
                    None => parse_quote_spanned!(at=> { #body }),
                };
                Some(out)
            }
        }
    }

    /// Whether inlining closure `c` with `arity` arguments here means what calling it
    /// would; reports why not.
    fn check_closure(&mut self, c: &syn::ExprClosure, arity: usize, at: Span, def: Option<&ClosureDef>) -> Option<()> {
        if c.inputs.len() != arity {
            self.cx.error_at(at, format!("this closure takes {} argument(s) but is given {arity}", c.inputs.len()));
            return None;
        }
        if let Some(exit) = exits_function(&c.body) {
            self.cx.error_spanned_by(
                exit,
                "`return` and `?` inside a closure are not supported in a `#[differentiable]` function; make the value the closure's last expression",
            );
            return None;
        }
        if let Some(def) = def {
            for (name, id) in &def.captures {
                if self.binding_of(name) != *id {
                    self.cx.error_at(
                        at,
                        format!(
                            "the closure `{}` reads `{name}`, which is bound again between the closure and this call; rename one of the two `{name}`s",
                            def.name
                        ),
                    );
                    return None;
                }
            }
        }
        if self.depth > 16 {
            self.cx.error_at(at, "closures call each other too deeply here (more than 16 levels)");
            return None;
        }
        Some(())
    }

    /// A function named by its path, called (`f64::max(acc, x)` stays a path: the
    /// lowering knows float methods called that way).
    fn apply_path(&mut self, p: &syn::ExprPath, args: Vec<Expr>, at: Span) -> Expr {
        parse_quote_spanned!(at=> #p(#(#args),*))
    }

    /// A function value as written: a closure, a closure's name, or a path.
    fn func(&self, e: &Expr) -> Option<(Func, Option<ClosureDef>)> {
        match strip(e) {
            Expr::Closure(c) => Some((Func::Closure(c.clone()), None)),
            Expr::Path(p) => match p.path.get_ident().and_then(|id| self.closure_named(&id.to_string())) {
                Some(def) => Some((Func::Closure(def.closure.clone()), Some(def))),
                None => Some((Func::Path(p.clone()), None)),
            },
            _ => None,
        }
    }

    /// Apply the function value `f` to the elements `args` of a chain, inlining it: a
    /// closure's parameters are bound as a `for` pattern is (a window or a place written
    /// through is substituted into its body); a path is called with the elements.
    fn apply_to(&mut self, f: &Expr, args: Vec<Elem>, at: Span) -> Option<Expr> {
        let Some((func, def)) = self.func(f) else {
            self.cx.error_spanned_by(f, "pass a closure (`|x| …`) or a function's name here");
            return None;
        };
        let c = match func {
            Func::Path(p) => {
                let args = args.iter().map(|e| self.elem_expr(e, at)).collect();
                return Some(self.apply_path(&p, args, at));
            }
            Func::Closure(c) => c,
        };
        self.check_closure(&c, args.len(), at, def.as_ref())?;
        let mut stmts = Vec::new();
        let mut subst = Vec::new();
        for (pat, elem) in c.inputs.iter().zip(&args) {
            if !self.bind(pat, elem, &mut stmts, &mut subst, at) {
                return None;
            }
        }
        let body = &c.body;
        let mut block: syn::Block = parse_quote_spanned!(at=> { #(#stmts)* #body });
        for (name, elem) in &subst {
            if !self.substitute(&mut block, name, elem) {
                return None;
            }
        }
        Some(Expr::Block(syn::ExprBlock { attrs: Vec::new(), label: None, block }))
    }
}

/// The name of the marker that stands for an expression already reported: the lowering
/// reads it as a value that reports nothing more, so one mistake gives one error.
pub const REJECTED: &str = "__adjoint_rejected";

/// [`REJECTED`] at `span`.
pub(crate) fn rejected(span: Span) -> Expr {
    let name = Ident::new(REJECTED, span);
    parse_quote_spanned!(span=> #name!())
}

/// Bindings made by `let f = |…| …;` carry this bit.
const CLOSURE_BINDING: u64 = 1 << 63;

/// `e` as an operand of a larger expression: parenthesised unless it is a name, a
/// literal or a call (interpolated tokens carry no precedence of their own).
fn operand(e: &Expr) -> Expr {
    match e {
        Expr::Path(_) | Expr::Lit(_) | Expr::Paren(_) | Expr::MethodCall(_) | Expr::Call(_) | Expr::Field(_) => {
            e.clone()
        }
        _ => parse_quote!((#e)),
    }
}

fn strip(e: &Expr) -> &Expr {
    match e {
        Expr::Paren(p) => strip(&p.expr),
        Expr::Group(g) => strip(&g.expr),
        _ => e,
    }
}

// ------------------------------------------------------------------ chains

/// An element of a sequence at one index, as syntax. (Built a few times per chain, so
/// the size of a variant does not matter.)
#[derive(Clone)]
#[allow(clippy::large_enum_variant)]
enum Elem {
    /// A place read by reference (`&x[i]`): bound by value under a `&p` pattern.
    Place(Expr),
    /// A place to be written through (`iter_mut`): its name is replaced by the place.
    PlaceMut(Expr),
    /// A value.
    Value(Expr),
    /// A window or chunk: `len` elements of `base` from `start` on.
    View {
        base: Expr,
        start: Expr,
        len: Expr,
    },
    Tuple(Vec<Elem>),
}

type ElemAt = Rc<dyn Fn(&Expr) -> Elem>;

/// What a consumer does with each element that reaches it: the statements, or `None`
/// (reported).
type Step<'d> = Box<dyn Fn(&mut Desugarer<'d>, Expr) -> Option<Vec<Stmt>>>;

/// What happens to each element after the index-level adaptors.
#[derive(Clone)]
enum Stage {
    Map(Expr),
    Filter(Expr),
    /// `filter_map`: the closure's `Option`, kept when it is `Some`.
    FilterMap(Expr),
    /// `enumerate` after a `filter`: a counter of the elements that got through.
    Enumerate,
    Skip(Expr),
    Take(Expr),
}

/// A chain being desugared: statements that set it up, the number of iterations, the
/// element of iteration `i`, and the stages each element then goes through.
struct Seq {
    setup: Vec<Stmt>,
    count: Expr,
    elem: ElemAt,
    /// When the sequence is a plain range with `rev`/`step_by`, the loop runs over it
    /// directly (`for i in (0..n).rev()`), and `elem` is never asked for.
    range: Option<Expr>,
    stages: Vec<Stage>,
    /// `iter_mut()`: elements are places written through.
    mutable: bool,
}

/// The adaptors and consumer of a chain, outermost (the consumer) first.
struct Link<'e> {
    method: &'e Ident,
    args: Vec<&'e Expr>,
    turbofish: Option<&'e syn::AngleBracketedGenericArguments>,
    span: Span,
}

/// `a.b(…).c(…)`: the receiver at the bottom and the calls above it, innermost first.
fn chain_links(e: &Expr) -> (&Expr, Vec<Link<'_>>) {
    let mut calls = Vec::new();
    let mut cur = strip(e);
    while let Expr::MethodCall(m) = cur {
        calls.push(m);
        cur = strip(&m.receiver);
    }
    calls.reverse();
    // `model.logits(x).iter()…`: calls the table does not know before a source method
    // are the value the chain iterates, not adaptors.
    let known = |m: &syn::ExprMethodCall| {
        let n = m.method.to_string();
        SOURCES.contains(&n.as_str()) || INDEXED.contains(&n.as_str()) || CONSUMERS.contains(&n.as_str())
    };
    if let Some(k) = calls.iter().position(|m| SOURCES.contains(&m.method.to_string().as_str())) {
        if k > 0 && !calls[..k].iter().any(|m| known(m)) {
            cur = strip(&calls[k].receiver);
            calls.drain(..k);
        }
    }
    let links = calls
        .into_iter()
        .map(|m| Link {
            method: &m.method,
            args: m.args.iter().collect(),
            turbofish: m.turbofish.as_ref(),
            span: m.span(),
        })
        .collect();
    (cur, links)
}

const SOURCES: &[&str] = &["iter", "iter_mut", "into_iter", "windows", "chunks"];
const INDEXED: &[&str] =
    &["zip", "enumerate", "rev", "skip", "take", "step_by", "map", "copied", "cloned", "filter", "filter_map"];
const CONSUMERS: &[&str] = &["sum", "product", "fold", "collect", "max_by", "min_by", "count"];

impl<'d> Desugarer<'d> {
    /// `x.len()` as an expression, for a source expression `x`.
    fn len_of(&self, base: &Expr, span: Span) -> Expr {
        parse_quote_spanned!(span=> #base.len())
    }

    /// A name for `e` if it is not a plain path (so that it is evaluated once).
    fn name_it(&mut self, e: &Expr, base: &str, setup: &mut Vec<Stmt>, span: Span) -> Expr {
        match strip(e) {
            Expr::Path(_) | Expr::Field(_) | Expr::Lit(_) => strip(e).clone(),
            Expr::Reference(r) if matches!(strip(&r.expr), Expr::Path(_) | Expr::Field(_)) => (*r.expr).clone(),
            _ => {
                let id = self.names.fresh(base, span);
                setup.push(parse_quote_spanned!(span=> let #id = #e;));
                parse_quote_spanned!(span=> #id)
            }
        }
    }

    /// The sequence a source expression iterates: `x.iter()`, `&x`, `x`, `x[a..b]`,
    /// a range, `x.windows(k)`, `x.chunks(k)`. `links` are the calls on top of `base`;
    /// the ones consumed here are removed.
    fn source(&mut self, base: &Expr, links: &mut Vec<Link<'_>>, span: Span) -> Option<Seq> {
        let mut setup = Vec::new();
        // Ranges: `(a..b)`, `(a..=b)`.
        if let Expr::Range(r) = strip(base) {
            let (Some(lo), Some(hi)) = (&r.start, &r.end) else {
                self.cx.error_spanned_by(base, "an open range cannot be iterated here; give both ends (`a..b`)");
                return None;
            };
            let lo = self.name_it(lo, "start", &mut setup, span);
            let hi = self.name_it(hi, "end", &mut setup, span);
            let count: Expr = match r.limits {
                syn::RangeLimits::HalfOpen(_) => parse_quote_spanned!(span=> #hi - #lo),
                syn::RangeLimits::Closed(_) => parse_quote_spanned!(span=> #hi + 1 - #lo),
            };
            let range = parse_quote_spanned!(span=> #base);
            let lo2 = lo.clone();
            return Some(Seq {
                setup,
                count,
                elem: Rc::new(move |i| {
                    let i = operand(i);
                    Elem::Value(parse_quote_spanned!(span=> #lo2 + #i))
                }),
                range: Some(range),
                stages: Vec::new(),
                mutable: false,
            });
        }
        let first = links.first().map(|l| l.method.to_string());
        let (container, mutable, view) = match first.as_deref() {
            Some("iter" | "into_iter") if links[0].args.is_empty() => {
                links.remove(0);
                (base, false, None)
            }
            Some("iter_mut") if links[0].args.is_empty() => {
                links.remove(0);
                (base, true, None)
            }
            Some(w @ ("windows" | "chunks")) if links[0].args.len() == 1 => {
                let k = links[0].args[0].clone();
                links.remove(0);
                (base, false, Some((w == "windows", k)))
            }
            _ => (base, false, None),
        };
        // The container: `x`, `&x`, `x[a..b]`, `&x[a..b]`, or another expression (named).
        let inner = match strip(container) {
            Expr::Reference(r) => strip(&r.expr),
            e => e,
        };
        let (buf, offset, len): (Expr, Option<Expr>, Expr) = match inner {
            Expr::Index(ix) if matches!(strip(&ix.index), Expr::Range(_)) => {
                let Expr::Range(r) = strip(&ix.index) else { unreachable!() };
                let buf = self.name_it(&ix.expr, "slice", &mut setup, span);
                let lo: Expr = match &r.start {
                    Some(lo) => self.name_it(lo, "lo", &mut setup, span),
                    None => parse_quote_spanned!(span=> 0),
                };
                let hi: Expr = match &r.end {
                    Some(hi) => {
                        let hi = self.name_it(hi, "hi", &mut setup, span);
                        match r.limits {
                            syn::RangeLimits::HalfOpen(_) => hi,
                            syn::RangeLimits::Closed(_) => parse_quote_spanned!(span=> #hi + 1),
                        }
                    }
                    None => self.len_of(&buf, span),
                };
                let len = parse_quote_spanned!(span=> #hi - #lo);
                (buf, Some(lo), len)
            }
            Expr::Array(_) | Expr::Macro(_) | Expr::Call(_) | Expr::MethodCall(_) => {
                let buf = self.name_it(inner, "items", &mut setup, span);
                let len = self.len_of(&buf, span);
                (buf, None, len)
            }
            // A row written through (`m[i].iter_mut()`): the place itself, not a copy
            // (its index named, so it is evaluated once).
            Expr::Index(ix) if mutable => {
                let base = self.name_it(&ix.expr, "rows", &mut setup, span);
                let index = self.name_it(&ix.index, "row", &mut setup, span);
                let buf: Expr = parse_quote_spanned!(span=> #base[#index]);
                let len = self.len_of(&buf, span);
                (buf, None, len)
            }
            _ => {
                let buf = self.name_it(inner, "items", &mut setup, span);
                let len = self.len_of(&buf, span);
                (buf, None, len)
            }
        };
        let at = move |buf: &Expr, offset: &Option<Expr>, i: &Expr| -> Expr {
            let i = operand(i);
            match offset {
                Some(lo) => parse_quote_spanned!(span=> #buf[#lo + #i]),
                None => parse_quote_spanned!(span=> #buf[#i]),
            }
        };
        match view {
            None => {
                let len_id = self.names.fresh("len", span);
                setup.push(parse_quote_spanned!(span=> let #len_id = #len;));
                let (b, o) = (buf.clone(), offset.clone());
                let elem: ElemAt = if mutable {
                    Rc::new(move |i| Elem::PlaceMut(at(&b, &o, i)))
                } else {
                    Rc::new(move |i| Elem::Place(at(&b, &o, i)))
                };
                Some(Seq {
                    setup,
                    count: parse_quote_spanned!(span=> #len_id),
                    elem,
                    range: None,
                    stages: Vec::new(),
                    mutable,
                })
            }
            Some((windows, k)) => {
                let k = self.name_it(&k, "size", &mut setup, span);
                let len_id = self.names.fresh("len", span);
                setup.push(parse_quote_spanned!(span=> let #len_id = #len;));
                let count_id = self.names.fresh("count", span);
                if windows {
                    // `len − k + 1` windows, none when `k > len`.
                    setup.push(
                        parse_quote_spanned!(span=> let #count_id = if #len_id >= #k { #len_id + 1 - #k } else { 0 };),
                    );
                } else {
                    setup.push(parse_quote_spanned!(span=> let #count_id = (#len_id + #k - 1) / #k;));
                }
                let (b, o) = (buf.clone(), offset.clone());
                let elem: ElemAt = Rc::new(move |i| {
                    let i = &operand(i);
                    let start: Expr = match (&o, windows) {
                        (Some(lo), true) => parse_quote_spanned!(span=> #lo + #i),
                        (None, true) => i.clone(),
                        (Some(lo), false) => parse_quote_spanned!(span=> #lo + #i * #k),
                        (None, false) => parse_quote_spanned!(span=> #i * #k),
                    };
                    let len: Expr =
                        if windows { k.clone() } else { parse_quote_spanned!(span=> #k.min(#len_id - #i * #k)) };
                    Elem::View { base: b.clone(), start, len }
                });
                Some(Seq {
                    setup,
                    count: parse_quote_spanned!(span=> #count_id),
                    elem,
                    range: None,
                    stages: Vec::new(),
                    mutable: false,
                })
            }
        }
    }

    /// The sequence of `e` when it is a chain of index-level adaptors over a source (for
    /// the argument of `zip`), or `None` (reported).
    fn sequence_of(&mut self, e: &Expr) -> Option<Seq> {
        let (base, mut links) = chain_links(e);
        let span = e.span();
        let mut seq = self.source(base, &mut links, span)?;
        for link in links {
            seq = self.adapt(seq, &link)?;
        }
        if !seq.stages.is_empty() {
            self.cx.error_spanned_by(e, "zipping with a filtered iterator is not supported; filter after the `zip`");
            return None;
        }
        Some(seq)
    }

    /// Leave the direct range loop for an indexed one (for `zip`, `skip`, `take`,
    /// `enumerate` of a range).
    fn indexed(seq: &mut Seq) {
        seq.range = None;
    }

    /// Apply one adaptor.
    fn adapt(&mut self, mut seq: Seq, link: &Link<'_>) -> Option<Seq> {
        let span = link.span;
        let name = link.method.to_string();
        let filtered = !seq.stages.is_empty();
        match (name.as_str(), link.args.len()) {
            ("copied" | "cloned", 0) => {
                let old = seq.elem.clone();
                seq.elem = Rc::new(move |i| match old(i) {
                    Elem::Place(p) => Elem::Value(p),
                    other => other,
                });
            }
            ("map", 1) if filtered => seq.stages.push(Stage::Map(link.args[0].clone())),
            ("map", 1) => {
                // A mapped element is computed in the loop body, as a stage, so that the
                // closure runs once per element.
                seq.stages.push(Stage::Map(link.args[0].clone()));
            }
            ("filter", 1) => seq.stages.push(Stage::Filter(link.args[0].clone())),
            ("filter_map", 1) => seq.stages.push(Stage::FilterMap(link.args[0].clone())),
            ("enumerate", 0) if !seq.stages.is_empty() => seq.stages.push(Stage::Enumerate),
            ("enumerate", 0) => {
                Self::indexed(&mut seq);
                let old = seq.elem.clone();
                seq.elem = Rc::new(move |i| Elem::Tuple(vec![Elem::Value(i.clone()), old(i)]));
            }
            ("skip", 1) if !seq.stages.is_empty() => seq.stages.push(Stage::Skip(link.args[0].clone())),
            ("take", 1) if !seq.stages.is_empty() => seq.stages.push(Stage::Take(link.args[0].clone())),
            ("skip", 1) => {
                Self::indexed(&mut seq);
                let n = self.name_it(link.args[0], "skip", &mut seq.setup, span);
                let count = &seq.count;
                let id = self.names.fresh("count", span);
                seq.setup.push(parse_quote_spanned!(span=> let #id = #count - #count.min(#n);));
                seq.count = parse_quote_spanned!(span=> #id);
                let old = seq.elem.clone();
                seq.elem = Rc::new(move |i| {
                    let i = operand(i);
                    old(&parse_quote_spanned!(span=> #i + #n))
                });
            }
            ("take", 1) => {
                Self::indexed(&mut seq);
                let n = self.name_it(link.args[0], "take", &mut seq.setup, span);
                let count = &seq.count;
                let id = self.names.fresh("count", span);
                seq.setup.push(parse_quote_spanned!(span=> let #id = #count.min(#n);));
                seq.count = parse_quote_spanned!(span=> #id);
            }
            ("rev" | "step_by", _) | ("zip", 1) if !seq.stages.is_empty() => {
                let what = if filtered { "after `filter`" } else { "after `map`" };
                self.cx.error_at(
                    link.method.span(),
                    format!("`{name}` {what} is not supported here; put `{name}` before the `map`/`filter` (they act on each element alone)"),
                );
                return None;
            }
            ("rev", 0) => {
                if let Some(r) = &seq.range {
                    seq.range = Some(parse_quote_spanned!(span=> #r.rev()));
                }
                let count = seq.count.clone();
                let old = seq.elem.clone();
                seq.elem = Rc::new(move |i| {
                    let i = operand(i);
                    old(&parse_quote_spanned!(span=> #count - 1 - #i))
                });
            }
            ("step_by", 1) => {
                let k = self.name_it(link.args[0], "step", &mut seq.setup, span);
                if let Some(r) = &seq.range {
                    seq.range = Some(parse_quote_spanned!(span=> #r.step_by(#k)));
                }
                let count = &seq.count;
                let id = self.names.fresh("count", span);
                seq.setup.push(parse_quote_spanned!(span=> let #id = (#count + #k - 1) / #k;));
                seq.count = parse_quote_spanned!(span=> #id);
                let old = seq.elem.clone();
                seq.elem = Rc::new(move |i| {
                    let i = operand(i);
                    old(&parse_quote_spanned!(span=> #i * #k))
                });
            }
            ("zip", 1) => {
                let other = self.zip_operand(link.args[0])?;
                Self::indexed(&mut seq);
                seq.setup.extend(other.setup);
                let (a, b) = (&seq.count, &other.count);
                let id = self.names.fresh("len", span);
                seq.setup.push(parse_quote_spanned!(span=> let #id = #a.min(#b);));
                seq.count = parse_quote_spanned!(span=> #id);
                let (ea, eb) = (seq.elem.clone(), other.elem.clone());
                seq.elem = Rc::new(move |i| Elem::Tuple(vec![ea(i), eb(i)]));
                seq.mutable |= other.mutable;
            }
            _ => {
                self.cx.error_at(
                    link.method.span(),
                    format!(
                        "the iterator adaptor `{name}` is not supported inside a `#[differentiable]` function; the supported ones are {}",
                        INDEXED.iter().map(|n| format!("`{n}`")).collect::<Vec<_>>().join(", ")
                    ),
                );
                return None;
            }
        }
        Some(seq)
    }

    /// The argument of `zip`: a chain, or a container iterated as by `for`.
    fn zip_operand(&mut self, e: &Expr) -> Option<Seq> {
        self.sequence_of(e)
    }

    /// Statements binding `pat` to `elem` (by value under `&`), plus the places and views
    /// whose names the caller must replace in what follows.
    fn bind(
        &mut self,
        pat: &Pat,
        elem: &Elem,
        out: &mut Vec<Stmt>,
        subst: &mut Vec<(Ident, Elem)>,
        span: Span,
    ) -> bool {
        match (pat, elem) {
            (Pat::Paren(p), _) => self.bind(&p.pat, elem, out, subst, span),
            (Pat::Type(t), _) => self.bind(&t.pat, elem, out, subst, span),
            (Pat::Wild(_), _) => true,
            (Pat::Reference(r), Elem::Place(p)) => {
                let inner = by_value(&r.pat);
                if let Pat::Tuple(_) = &inner {
                    out.push(parse_quote_spanned!(span=> let #inner = #p;));
                    return true;
                }
                self.bind(&inner, &Elem::Value(p.clone()), out, subst, span)
            }
            (Pat::Reference(r), other) => self.bind(&r.pat, other, out, subst, span),
            (Pat::Tuple(t), Elem::Tuple(items)) if t.elems.len() == items.len() => {
                t.elems.iter().zip(items).all(|(p, e)| self.bind(p, e, out, subst, span))
            }
            (Pat::Ident(id), Elem::PlaceMut(_) | Elem::View { .. }) => {
                subst.push((id.ident.clone(), elem.clone()));
                true
            }
            (Pat::Ident(id), Elem::Tuple(_)) => {
                let e = self.elem_expr(elem, span);
                let id = &id.ident;
                out.push(parse_quote_spanned!(span=> let #id = #e;));
                true
            }
            (Pat::Ident(id), Elem::Place(p)) => {
                let id = &id.ident;
                out.push(parse_quote_spanned!(span=> let #id = &#p;));
                true
            }
            (Pat::Ident(id), Elem::Value(v)) => {
                let id = &id.ident;
                out.push(parse_quote_spanned!(span=> let #id = #v;));
                true
            }
            (p @ Pat::Tuple(_), Elem::Place(v)) => {
                // `|(x, label)|` over `data.iter()`: the parts are borrowed, as in the
                // user's code (a row passed on to a call stays a reference).
                let p = by_value(p);
                out.push(parse_quote_spanned!(span=> let #p = &#v;));
                true
            }
            (p, e) => {
                if let Elem::Value(v) | Elem::Place(v) = e {
                    let p = by_value(p);
                    out.push(parse_quote_spanned!(span=> let #p = #v;));
                    return true;
                }
                self.cx.error_spanned_by(
                    pat,
                    "this pattern does not fit the iterator's items here; bind a name or a tuple of names",
                );
                false
            }
        }
    }

    /// An element as an expression (a tuple of its parts).
    fn elem_expr(&mut self, elem: &Elem, span: Span) -> Expr {
        match elem {
            Elem::Place(p) => parse_quote_spanned!(span=> &#p),
            Elem::PlaceMut(p) | Elem::Value(p) => p.clone(),
            Elem::View { base, start, len } => {
                let (start, len) = (operand(start), operand(len));
                parse_quote_spanned!(span=> &#base[#start..#start + #len])
            }
            Elem::Tuple(items) => {
                let parts: Vec<Expr> = items.iter().map(|e| self.elem_expr(e, span)).collect();
                parse_quote_spanned!(span=> (#(#parts),*))
            }
        }
    }

    /// Emit one iteration: bind the element, run the stages, then `consume(element)`
    /// (which returns the statements that use the final element, given as an
    /// expression). Returns the loop body.
    #[allow(clippy::too_many_arguments)]
    fn iteration(
        &mut self,
        seq: &Seq,
        index: &Expr,
        counters: &[(Ident, Ident)],
        span: Span,
        consume: &mut dyn FnMut(&mut Self, Elem, &mut Vec<Stmt>) -> bool,
    ) -> Option<Vec<Stmt>> {
        let elem = if seq.range.is_some() { Elem::Value(index.clone()) } else { (seq.elem)(index) };
        self.stages(&seq.stages, elem, counters, span, consume)
    }

    /// The stages from the first on, applied to `elem`.
    fn stages(
        &mut self,
        stages: &[Stage],
        elem: Elem,
        counters: &[(Ident, Ident)],
        span: Span,
        consume: &mut dyn FnMut(&mut Self, Elem, &mut Vec<Stmt>) -> bool,
    ) -> Option<Vec<Stmt>> {
        let mut out = Vec::new();
        let Some((stage, rest)) = stages.split_first() else {
            return consume(self, elem, &mut out).then_some(out);
        };
        match stage {
            Stage::Map(f) => {
                let value = self.apply_to(f, vec![elem], span)?;
                let id = self.names.fresh("mapped", span);
                out.push(parse_quote_spanned!(span=> let #id = #value;));
                out.extend(self.stages(
                    rest,
                    Elem::Value(parse_quote_spanned!(span=> #id)),
                    counters,
                    span,
                    consume,
                )?);
            }
            Stage::FilterMap(f) => {
                // The closure applied as a block whose value is an `Option`, in one of
                // the forms `o.map(|v| e)`, `Some(e)`, `if c { Some(e) } else { None }`.
                let applied = self.apply_to(f, vec![elem], span)?;
                let Expr::Block(mut block) = applied else { unreachable!("a closure applies as a block") };
                let Some(Stmt::Expr(tail, None)) = block.block.stmts.pop() else {
                    self.cx.error_spanned_by(f, "the closure given to `filter_map` must end with its `Option`");
                    return None;
                };
                let (cond, value) = self.option_parts(&tail, span)?;
                let id = self.names.fresh("kept", span);
                let inner =
                    self.stages(rest, Elem::Value(parse_quote_spanned!(span=> #id)), counters, span, consume)?;
                let prefix = block.block.stmts;
                let (cond_setup, cond) = cond;
                out.extend(prefix);
                out.extend(cond_setup);
                match cond {
                    Some(c) => out.push(parse_quote_spanned!(span=> if #c { let #id = #value; #(#inner)* })),
                    None => {
                        out.push(parse_quote_spanned!(span=> let #id = #value;));
                        out.extend(inner);
                    }
                }
            }
            Stage::Filter(f) => {
                // The predicate sees a reference to the element; under `|&x|` or `|x|`
                // with `*x` the element is read by value either way.
                let cond = self.apply_to(f, vec![elem.clone()], span)?;
                let inner = self.stages(rest, elem, counters, span, consume)?;
                out.push(parse_quote_spanned!(span=> if #cond { #(#inner)* }));
            }
            Stage::Enumerate | Stage::Skip(_) | Stage::Take(_) => {
                let (counter, limit) = counters.first().cloned().expect("a counter per counting stage");
                let counters = &counters[1..];
                let n: Expr = parse_quote_spanned!(span=> #counter);
                match stage {
                    Stage::Enumerate => {
                        let pos = self.names.fresh("position", span);
                        out.push(parse_quote_spanned!(span=> let #pos = #n;));
                        out.push(parse_quote_spanned!(span=> #counter += 1;));
                        let e = Elem::Tuple(vec![Elem::Value(parse_quote_spanned!(span=> #pos)), elem]);
                        out.extend(self.stages(rest, e, counters, span, consume)?);
                    }
                    Stage::Skip(_) => {
                        let inner = self.stages(rest, elem, counters, span, consume)?;
                        out.push(
                            parse_quote_spanned!(span=> if #counter >= #limit { #(#inner)* } else { #counter += 1; }),
                        );
                    }
                    Stage::Take(_) => {
                        let inner = self.stages(rest, elem, counters, span, consume)?;
                        out.push(parse_quote_spanned!(span=> if #counter < #limit { #counter += 1; #(#inner)* }));
                    }
                    _ => unreachable!(),
                }
            }
        }
        Some(out)
    }

    /// An `Option` as (setup, "is it `Some`" (`None`: always), the value inside):
    /// `o.map(|v| e)` (the `Option` named once), `Some(e)`, `if c { Some(e) } else { None }`.
    #[allow(clippy::type_complexity)]
    fn option_parts(&mut self, e: &Expr, span: Span) -> Option<((Vec<Stmt>, Option<Expr>), Expr)> {
        match strip(e) {
            Expr::Call(c)
                if c.args.len() == 1 && matches!(strip(&c.func), Expr::Path(p) if p.path.is_ident("Some")) =>
            {
                Some(((Vec::new(), None), c.args[0].clone()))
            }
            Expr::If(i) => {
                let then_value = match i.then_branch.stmts.as_slice() {
                    [Stmt::Expr(t, None)] => t.clone(),
                    _ => return self.option_form_error(e),
                };
                let none_else = match &i.else_branch {
                    Some((_, els)) => match strip(els) {
                        Expr::Block(b) => {
                            matches!(b.block.stmts.as_slice(), [Stmt::Expr(n, None)] if matches!(strip(n), Expr::Path(p) if p.path.is_ident("None")))
                        }
                        Expr::Path(p) => p.path.is_ident("None"),
                        _ => false,
                    },
                    None => false,
                };
                if !none_else {
                    return self.option_form_error(e);
                }
                let ((setup, inner_cond), value) = self.option_parts(&then_value, span)?;
                let cond = &i.cond;
                let cond = match inner_cond {
                    None => Some(parse_quote_spanned!(span=> #cond)),
                    Some(c) if setup.is_empty() => Some(parse_quote_spanned!(span=> #cond && #c)),
                    Some(_) => return self.option_form_error(e),
                };
                Some(((setup, cond), value))
            }
            Expr::MethodCall(m) if m.method == "map" && m.args.len() == 1 => {
                let mut setup = Vec::new();
                let option = self.name_it(&m.receiver, "option", &mut setup, span);
                let Expr::Closure(c) = strip(&m.args[0]) else { return self.option_form_error(e) };
                if c.inputs.len() != 1 {
                    return self.option_form_error(e);
                }
                let pat = by_value(&c.inputs[0]);
                let body = &c.body;
                let value = parse_quote_spanned!(span=> { let #pat = #option.unwrap(); #body });
                Some(((setup, Some(parse_quote_spanned!(span=> #option.is_some()))), value))
            }
            _ => self.option_form_error(e),
        }
    }

    fn option_form_error<T>(&mut self, e: &Expr) -> Option<T> {
        self.cx.error_spanned_by(
            e,
            "this `Option` is not supported here; end the closure with `o.map(|v| …)`, `Some(…)` or `if c { Some(…) } else { None }`",
        );
        None
    }

    /// The counters the counting stages need, declared in `setup`: (counter, limit).
    fn counters(&mut self, seq: &mut Seq, span: Span) -> Vec<(Ident, Ident)> {
        let mut out = Vec::new();
        for stage in seq.stages.clone() {
            let (base, limit): (&str, Option<Expr>) = match stage {
                Stage::Enumerate => ("position", None),
                Stage::Skip(n) => ("skipped", Some(n)),
                Stage::Take(n) => ("taken", Some(n)),
                _ => continue,
            };
            let counter = self.names.fresh(base, span);
            seq.setup.push(parse_quote_spanned!(span=> let mut #counter = 0usize;));
            let limit_id = self.names.fresh("limit", span);
            if let Some(l) = limit {
                seq.setup.push(parse_quote_spanned!(span=> let #limit_id = #l;));
            }
            out.push((counter, limit_id));
        }
        out
    }

    /// `for index in …` over the sequence, with `body` per iteration.
    fn loop_over(&mut self, seq: &Seq, index: &Ident, body: Vec<Stmt>, label: Option<&syn::Label>, span: Span) -> Stmt {
        let count = &seq.count;
        let iter: Expr = match &seq.range {
            Some(r) => r.clone(),
            None => parse_quote_spanned!(span=> 0..#count),
        };
        parse_quote_spanned!(span=> #label for #index in #iter { #(#body)* })
    }

    fn index_name(&mut self, seq: &Seq, span: Span) -> Ident {
        self.names.fresh(if seq.range.is_some() { "value" } else { "i" }, span)
    }

    /// Desugar a consumer call on top of a chain, or `None` when `e` is not one.
    fn consumer(&mut self, e: &Expr) -> Option<Option<Expr>> {
        let (base, mut links) = chain_links(e);
        let last = links.last()?;
        let consumer = last.method.to_string();
        // `….max_by(…).unwrap()` and `….copied().max_by(…).unwrap()`.
        let unwrap = consumer == "unwrap" && last.args.is_empty() && links.len() >= 2;
        let at = if unwrap { links.len() - 2 } else { links.len() - 1 };
        let consumer = links[at].method.to_string();
        if !CONSUMERS.contains(&consumer.as_str()) {
            return None;
        }
        if (consumer == "max_by" || consumer == "min_by") && !unwrap {
            return None;
        }
        // Only chains that start from something iterable: a source method, a range, or
        // an adaptor the table knows (`x.sum()` on a buffer is the lowering's own).
        let starts = links.first().map(|l| l.method.to_string());
        let is_range = matches!(strip(base), Expr::Range(_));
        let known_start = is_range
            || starts.as_deref().is_some_and(|s| SOURCES.contains(&s))
            || links[..at].iter().any(|l| INDEXED.contains(&l.method.to_string().as_str()));
        if !known_start {
            return None;
        }
        let span = e.span();
        let consumer_link = links.remove(at);
        if unwrap {
            links.truncate(at);
        }
        let Some(mut seq) = self.source(base, &mut links, span) else { return Some(None) };
        for link in links.iter() {
            match self.adapt(seq, link) {
                Some(s) => seq = s,
                None => return Some(None),
            }
        }
        Some(self.consume(seq, &consumer, &consumer_link, span))
    }

    /// The block that runs the loop and yields the consumer's value.
    fn consume(&mut self, mut seq: Seq, consumer: &str, link: &Link<'_>, span: Span) -> Option<Expr> {
        let counters = self.counters(&mut seq, span);
        let index = self.index_name(&seq, span);
        let index_expr: Expr = parse_quote_spanned!(span=> #index);
        let acc = self.names.fresh(
            match consumer {
                "sum" => "sum",
                "product" => "product",
                "collect" => "items",
                "count" => "count",
                "fold" => "acc",
                _ => "best",
            },
            span,
        );
        let (init, step, result): (Vec<Stmt>, Step<'d>, Expr) = match consumer {
            "sum" | "product" => {
                let ty = link.turbofish.and_then(|t| t.args.first()).map(|a| a.to_token_stream().to_string());
                let sum = consumer == "sum";
                let zero: Expr = match ty.as_deref() {
                    Some("f32" | "f64") | None => {
                        let lit = if sum { "0.0" } else { "1.0" };
                        let suffix = ty.clone().unwrap_or_default();
                        syn::parse_str(&format!("{lit}{suffix}")).expect("a float literal")
                    }
                    Some(int) => {
                        syn::parse_str(&format!("{}{int}", if sum { 0 } else { 1 })).expect("an integer literal")
                    }
                };
                let acc2 = acc.clone();
                let step: Step<'d> = if sum {
                    Box::new(move |_, e| Some(vec![parse_quote_spanned!(span=> #acc2 += #e;)]))
                } else {
                    Box::new(move |_, e| Some(vec![parse_quote_spanned!(span=> #acc2 *= #e;)]))
                };
                (vec![parse_quote_spanned!(span=> let mut #acc = #zero;)], step, parse_quote_spanned!(span=> #acc))
            }
            "count" => {
                let acc2 = acc.clone();
                (
                    vec![parse_quote_spanned!(span=> let mut #acc = 0usize;)],
                    Box::new(move |_, _| Some(vec![parse_quote_spanned!(span=> #acc2 += 1;)])),
                    parse_quote_spanned!(span=> #acc),
                )
            }
            "collect" => {
                let count = &seq.count;
                let acc2 = acc.clone();
                (
                    vec![parse_quote_spanned!(span=> let mut #acc = Vec::with_capacity(#count);)],
                    Box::new(move |_, e| Some(vec![parse_quote_spanned!(span=> #acc2.push(#e);)])),
                    parse_quote_spanned!(span=> #acc),
                )
            }
            "fold" if link.args.len() == 2 => {
                let init = link.args[0].clone();
                let f = link.args[1].clone();
                let acc2 = acc.clone();
                (
                    vec![parse_quote_spanned!(span=> let mut #acc = #init;)],
                    Box::new(move |this: &mut Self, e| {
                        let next = this.apply_to(
                            &f,
                            vec![Elem::Value(parse_quote_spanned!(span=> #acc2)), Elem::Value(e)],
                            span,
                        )?;
                        Some(vec![parse_quote_spanned!(span=> #acc2 = #next;)])
                    }),
                    parse_quote_spanned!(span=> #acc),
                )
            }
            "max_by" | "min_by" if link.args.len() == 1 => {
                // `max_by` keeps the last of equal maxima, `min_by` the first, as `std`:
                // a new element wins for `max_by` unless `cmp(best, e)` is Greater, for
                // `min_by` when it is.
                let Some(greater) = comparison(link.args[0]) else {
                    self.cx.error_spanned_by(
                        link.args[0],
                        "this comparison is not supported; write `|a, b| a.partial_cmp(b).unwrap()` (or `b.partial_cmp(a)`, `a.total_cmp(b)`)",
                    );
                    return None;
                };
                let max = consumer == "max_by";
                let acc2 = acc.clone();
                let element = self.names.fresh("element", span);
                let wins = move |e: &Ident| -> Expr {
                    let gt = greater(&parse_quote_spanned!(span=> #acc2), &parse_quote_spanned!(span=> #e));
                    if max {
                        parse_quote_spanned!(span=> !(#gt))
                    } else {
                        gt
                    }
                };
                if seq.stages.is_empty() {
                    // From element 0 (an empty iterator panics, as `unwrap` does), then
                    // the rest.
                    Self::indexed(&mut seq);
                    let first = self.elem_expr(&(seq.elem)(&parse_quote_spanned!(span=> 0)), span);
                    let first = match &(seq.elem)(&parse_quote_spanned!(span=> 0)) {
                        Elem::Place(p) => parse_quote_spanned!(span=> #p),
                        _ => first,
                    };
                    let count = seq.count.clone();
                    let id = self.names.fresh("rest", span);
                    seq.setup.push(parse_quote_spanned!(span=> let #id = #count - 1;));
                    seq.count = parse_quote_spanned!(span=> #id);
                    let old = seq.elem.clone();
                    seq.elem = Rc::new(move |i| {
                        let i = operand(i);
                        old(&parse_quote_spanned!(span=> #i + 1))
                    });
                    let acc3 = acc.clone();
                    let step: Step<'d> = Box::new(move |_, e| {
                        let w = wins(&element);
                        Some(vec![
                            parse_quote_spanned!(span=> let #element = #e;),
                            parse_quote_spanned!(span=> if #w { #acc3 = #element; }),
                        ])
                    });
                    (vec![parse_quote_spanned!(span=> let mut #acc = #first;)], step, parse_quote_spanned!(span=> #acc))
                } else {
                    // After a filter the first element is the first that gets through; an
                    // empty result gives NaN (`0.0 / 0.0`), never a silent value.
                    let first = self.names.fresh("first", span);
                    let first2 = first.clone();
                    let acc3 = acc.clone();
                    let step: Step<'d> = Box::new(move |_, e| {
                        let first = &first2;
                        let w = wins(&element);
                        Some(vec![
                            parse_quote_spanned!(span=> let #element = #e;),
                            parse_quote_spanned!(span=> if #first || #w { #acc3 = #element; #first = false; }),
                        ])
                    });
                    let init = vec![
                        parse_quote_spanned!(span=> let mut #first = true;),
                        parse_quote_spanned!(span=> let mut #acc = 0.0 / 0.0;),
                    ];
                    (init, step, parse_quote_spanned!(span=> #acc))
                }
            }
            _ => {
                self.cx.error_at(span, format!("`{consumer}` with these arguments is not supported here"));
                return None;
            }
        };
        let mut consume = |this: &mut Self, elem: Elem, out: &mut Vec<Stmt>| -> bool {
            let e = match &elem {
                Elem::Place(p) => parse_quote_spanned!(span=> #p),
                other => this.elem_expr(other, span),
            };
            match step(this, e) {
                Some(stmts) => {
                    out.extend(stmts);
                    true
                }
                None => false,
            }
        };
        let body = self.iteration(&seq, &index_expr, &counters, span, &mut consume)?;
        let lp = self.loop_over(&seq, &index, body, None, span);
        let setup = &seq.setup;
        Some(parse_quote_spanned!(span=> { #(#setup)* #(#init)* #lp #result }))
    }

    /// Desugar `for pat in chain { body }`, or `None` when the lowering iterates it itself.
    fn for_loop(&mut self, f: &syn::ExprForLoop) -> Option<Option<Expr>> {
        if natively_iterated(&f.expr) {
            return None;
        }
        let span = f.expr.span();
        let (base, mut links) = chain_links(&f.expr);
        let Some(mut seq) = self.source(base, &mut links, span) else { return Some(None) };
        for link in links.iter() {
            match self.adapt(seq, link) {
                Some(s) => seq = s,
                None => return Some(None),
            }
        }
        let counters = self.counters(&mut seq, span);
        let index = self.index_name(&seq, span);
        let index_expr: Expr = parse_quote_spanned!(span=> #index);
        let pat = (*f.pat).clone();
        let user_body = f.body.clone();
        let mut consume = |this: &mut Self, elem: Elem, out: &mut Vec<Stmt>| -> bool {
            let mut subst = Vec::new();
            if !this.bind(&pat, &elem, out, &mut subst, span) {
                return false;
            }
            let mut body = user_body.clone();
            for (name, elem) in &subst {
                if !this.substitute(&mut body, name, elem) {
                    return false;
                }
            }
            out.push(parse_quote_spanned!(span=> #body));
            true
        };
        let body = self.iteration(&seq, &index_expr, &counters, span, &mut consume)?;
        let lp = self.loop_over(&seq, &index, body, f.label.as_ref(), span);
        let setup = &seq.setup;
        Some(Some(parse_quote_spanned!(span=> { #(#setup)* #lp })))
    }

    /// Replace `name` in `block` by the place or view `elem` stands for; `false`
    /// (reported) where a use of the name cannot be rewritten.
    fn substitute(&mut self, block: &mut syn::Block, name: &Ident, elem: &Elem) -> bool {
        struct Subst<'e> {
            name: &'e Ident,
            elem: &'e Elem,
            bad: Option<TokenStream>,
        }
        impl Subst<'_> {
            fn is_name(&self, e: &Expr) -> bool {
                matches!(strip(e), Expr::Path(p) if p.path.is_ident(self.name))
            }
        }
        impl VisitMut for Subst<'_> {
            fn visit_expr_mut(&mut self, e: &mut Expr) {
                let span = e.span();
                let named = self.is_name(e);
                match (self.elem, &mut *e) {
                    (Elem::PlaceMut(place), Expr::Unary(u))
                        if matches!(u.op, syn::UnOp::Deref(_)) && self.is_name(&u.expr) =>
                    {
                        *e = parse_quote_spanned!(span=> #place);
                    }
                    (Elem::PlaceMut(place), _) if named => {
                        *e = parse_quote_spanned!(span=> #place);
                    }
                    (Elem::View { base, start, .. }, Expr::Index(ix)) if self.is_name(&ix.expr) => {
                        self.visit_expr_mut(&mut ix.index);
                        let (start, i) = (operand(start), operand(&ix.index));
                        *e = parse_quote_spanned!(span=> #base[#start + #i]);
                    }
                    (Elem::View { len, .. }, Expr::MethodCall(m)) if self.is_name(&m.receiver) && m.method == "len" => {
                        *e = parse_quote_spanned!(span=> #len);
                    }
                    (Elem::View { base, start, len }, Expr::MethodCall(m)) if self.is_name(&m.receiver) => {
                        // `w.iter()…`: a sub-slice of the base.
                        *m.receiver = parse_quote_spanned!(span=> #base[#start..#start + #len]);
                        syn::visit_mut::visit_expr_method_call_mut(self, m);
                    }
                    (Elem::View { base, start, len }, Expr::Reference(r)) if self.is_name(&r.expr) => {
                        *e = parse_quote_spanned!(span=> &#base[#start..#start + #len]);
                    }
                    (Elem::View { base, start, len }, _) if named => {
                        *e = parse_quote_spanned!(span=> &#base[#start..#start + #len]);
                    }
                    _ => syn::visit_mut::visit_expr_mut(self, e),
                }
            }
            fn visit_pat_ident_mut(&mut self, p: &mut syn::PatIdent) {
                if p.ident == *self.name && self.bad.is_none() {
                    self.bad = Some(p.to_token_stream());
                }
            }
        }
        let mut s = Subst { name, elem, bad: None };
        s.visit_block_mut(block);
        if let Some(bad) = s.bad {
            self.cx.error_spanned_by(
                bad,
                format!("`{name}` is bound again inside the loop over it; rename the inner `{name}`"),
            );
            return false;
        }
        true
    }
}

/// Ranges with `rev`/`step_by`: the `for` loops the lowering iterates itself (every
/// other `for` is desugared into a loop over an index).
fn natively_iterated(e: &Expr) -> bool {
    let (base, links) = chain_links(e);
    matches!(strip(base), Expr::Range(_)) && links.iter().all(|l| l.method == "rev" || l.method == "step_by")
}

/// How to write "`cmp(x, y)` is Greater" for two expressions.
type Greater = Rc<dyn Fn(&Expr, &Expr) -> Expr>;

/// For a comparator `|a, b| a.partial_cmp(b).unwrap()` (or `b.partial_cmp(a)`,
/// `a.total_cmp(b)`), how to write "`cmp(x, y)` is Greater" for two expressions.
fn comparison(e: &Expr) -> Option<Greater> {
    let Expr::Closure(c) = strip(e) else { return None };
    let [pa, pb] = [c.inputs.first()?, c.inputs.get(1)?];
    let name = |p: &Pat| -> Option<String> {
        match by_value(p) {
            Pat::Ident(i) => Some(i.ident.to_string()),
            Pat::Type(t) => match by_value(&t.pat) {
                Pat::Ident(i) => Some(i.ident.to_string()),
                _ => None,
            },
            _ => None,
        }
    };
    let (a, b) = (name(pa)?, name(pb)?);
    // Peel `.unwrap()`.
    let mut body = strip(&c.body);
    if let Expr::MethodCall(m) = body {
        if m.method == "unwrap" && m.args.is_empty() {
            body = strip(&m.receiver);
        }
    }
    let Expr::MethodCall(m) = body else { return None };
    if !(m.method == "partial_cmp" || m.method == "total_cmp") || m.args.len() != 1 {
        return None;
    }
    let ident = |e: &Expr| -> Option<String> {
        let e = match strip(e) {
            Expr::Reference(r) => strip(&r.expr),
            Expr::Unary(u) if matches!(u.op, syn::UnOp::Deref(_)) => strip(&u.expr),
            e => e,
        };
        match e {
            Expr::Path(p) => p.path.get_ident().map(|i| i.to_string()),
            _ => None,
        }
    };
    let (l, r) = (ident(&m.receiver)?, ident(&m.args[0])?);
    let swapped = if l == a && r == b {
        false
    } else if l == b && r == a {
        true
    } else {
        return None;
    };
    Some(Rc::new(move |x: &Expr, y: &Expr| {
        let (x, y) = if swapped { (y, x) } else { (x, y) };
        parse_quote!(#x > #y)
    }))
}

// ------------------------------------------------------------------ the walk

impl Desugarer<'_> {
    /// `let v = vec![a, { …chain… }, c];`: an element that became a block (a chain or
    /// an inlined closure, with loops inside) is computed by a `let` of its own before
    /// the buffer, which then lists plain values.
    fn hoist_vec_items(&mut self, s: &mut Stmt) -> Vec<Stmt> {
        let Stmt::Local(local) = s else { return Vec::new() };
        let Some(init) = &mut local.init else { return Vec::new() };
        let Expr::Macro(m) = &mut *init.expr else { return Vec::new() };
        if !m.mac.path.is_ident("vec") {
            return Vec::new();
        }
        let Ok(crate::lower::VecMacro::List(mut items)) = crate::lower::parse_vec_macro(&m.mac) else {
            return Vec::new();
        };
        // Loops inside an element (a chain in an `if` condition) are lowered in the
        // element's own statement too.
        struct HasBlock(bool);
        impl<'v> Visit<'v> for HasBlock {
            fn visit_expr(&mut self, e: &'v Expr) {
                match e {
                    Expr::Block(_) | Expr::ForLoop(_) | Expr::While(_) | Expr::Loop(_) => self.0 = true,
                    _ => syn::visit::visit_expr(self, e),
                }
            }
        }
        let mut hoisted = Vec::new();
        for item in &mut items {
            let mut found = HasBlock(false);
            found.visit_expr(item);
            if found.0 {
                let span = item.span();
                let name = self.names.fresh("element", span);
                hoisted.push(parse_quote_spanned!(span=> let #name = #item;));
                *item = parse_quote_spanned!(span=> #name);
            }
        }
        if !hoisted.is_empty() {
            m.mac.tokens = quote::quote!(#(#items),*);
        }
        hoisted
    }
}

impl Desugarer<'_> {
    /// `DMatrix::from_fn(rows, cols, f)` / `DVector::from_fn(rows, f)` as the loops that
    /// fill a `Vec` and `from_vec`, or `None` when `e` is not such a call.
    fn matrix_from_fn(&mut self, e: &Expr) -> Option<Expr> {
        let Expr::Call(c) = e else { return None };
        let Expr::Path(p) = strip(&c.func) else { return None };
        let n = p.path.segments.len();
        if n < 2 || p.path.segments[n - 1].ident != "from_fn" {
            return None;
        }
        let ty = p.path.segments[n - 2].ident.to_string();
        let span = e.span();
        let (rows, cols, f) = match (&*ty, c.args.len()) {
            ("DMatrix", 3) => (c.args[0].clone(), c.args[1].clone(), c.args[2].clone()),
            ("DVector", 2) => (c.args[0].clone(), parse_quote_spanned!(span=> 1usize), c.args[1].clone()),
            _ => return None,
        };
        let mut from_vec = p.path.clone();
        from_vec.segments[n - 1].ident = Ident::new("from_vec", span);
        let [r, k, element, values, i, j] =
            ["rows", "cols", "element", "values", "i", "j"].map(|b| self.names.fresh(b, span));
        let build: Expr = match &*ty {
            "DMatrix" => parse_quote_spanned!(span=> #from_vec(#r, #k, #values)),
            _ => parse_quote_spanned!(span=> #from_vec(#values)),
        };
        Some(parse_quote_spanned!(span=> {
            let #r = #rows;
            let #k = #cols;
            let #element = #f;
            let mut #values = ::std::vec::Vec::with_capacity(#r * #k);
            for #j in 0..#k {
                for #i in 0..#r {
                    #values.push(#element(#i, #j));
                }
            }
            #build
        }))
    }

    /// An `if let` or `match` on an `Option` as an `if` on `is_some()`, or `None` when
    /// `e` is neither (or has guards, or other patterns).
    fn option_branch(&mut self, e: &Expr) -> Option<Expr> {
        /// `Some(p)` → `Some(Some(p))`, `None` or `_` → `Some(None)`.
        fn option_pat(p: &Pat) -> Option<Option<Pat>> {
            match p {
                Pat::TupleStruct(ts) if ts.path.is_ident("Some") && ts.elems.len() == 1 => {
                    Some(Some(ts.elems[0].clone()))
                }
                Pat::Ident(id) if id.ident == "None" && id.subpat.is_none() => Some(None),
                Pat::Path(pp) if pp.path.is_ident("None") => Some(None),
                Pat::Wild(_) => Some(None),
                _ => None,
            }
        }
        let span = e.span();
        let (scrutinee, some_pat, then_, else_): (&Expr, Pat, Expr, Option<Expr>) = match e {
            Expr::If(i) => {
                let Expr::Let(l) = &*i.cond else { return None };
                let Some(Some(p)) = option_pat(&l.pat) else { return None };
                let then_ =
                    Expr::Block(syn::ExprBlock { attrs: Vec::new(), label: None, block: i.then_branch.clone() });
                (&l.expr, p, then_, i.else_branch.as_ref().map(|(_, e)| (**e).clone()))
            }
            Expr::Match(m) if m.arms.len() == 2 && m.arms.iter().all(|a| a.guard.is_none()) => {
                let pats: Vec<Option<Option<Pat>>> = m.arms.iter().map(|a| option_pat(&a.pat)).collect();
                let (some_arm, none_arm) = match (&pats[0], &pats[1]) {
                    (Some(Some(_)), Some(None)) => (0, 1),
                    (Some(None), Some(Some(_))) if !matches!(m.arms[0].pat, Pat::Wild(_)) => (1, 0),
                    _ => return None,
                };
                let Some(Some(p)) = pats[some_arm].clone() else { return None };
                (&m.expr, p, (*m.arms[some_arm].body).clone(), Some((*m.arms[none_arm].body).clone()))
            }
            _ => return None,
        };
        let option = self.names.fresh("option", span);
        let p = by_value(&some_pat);
        let else_ = else_.map(|e| match e {
            Expr::Block(_) | Expr::If(_) => e,
            other => parse_quote_spanned!(span=> { #other }),
        });
        let else_ = else_.map(|e| quote::quote!(else #e));
        Some(parse_quote_spanned!(span=> {
            let #option = #scrutinee;
            if #option.is_some() {
                let #p = #option.clone().unwrap();
                #then_
            } #else_
        }))
    }
}

impl VisitMut for Desugarer<'_> {
    fn visit_block_mut(&mut self, b: &mut syn::Block) {
        self.scoped(|this| {
            let mut out = Vec::with_capacity(b.stmts.len());
            let mut rest = std::mem::take(&mut b.stmts);
            let mut next = 0;
            while next < rest.len() {
                this.keep_captures_visible(&mut rest, next);
                let mut s = rest[next].clone();
                next += 1;
                if let Stmt::Local(local) = &s {
                    if let (Pat::Ident(p), Some(init)) = (&local.pat, &local.init) {
                        if let (Expr::Closure(c), None) = (strip(&init.expr), &init.diverge) {
                            if p.by_ref.is_none() {
                                this.define_closure(&p.ident, c);
                                continue;
                            }
                        }
                    }
                }
                this.visit_stmt_mut(&mut s);
                out.extend(this.hoist_vec_items(&mut s));
                if let Stmt::Local(local) = &s {
                    this.bind_names(&local.pat);
                }
                match this.array_pattern(&s) {
                    Some(stmts) => out.extend(stmts),
                    None => out.push(s),
                }
            }
            b.stmts = out;
        });
    }

    fn visit_expr_mut(&mut self, e: &mut Expr) {
        // `vec![…]`: its elements are expressions too (a chain, a closure call), though
        // a visitor does not look inside a macro's tokens.
        if let Expr::Macro(m) = e {
            if m.mac.path.is_ident("vec") {
                if let Ok(parsed) = crate::lower::parse_vec_macro(&m.mac) {
                    m.mac.tokens = match parsed {
                        crate::lower::VecMacro::Repeat(mut v, mut n) => {
                            self.visit_expr_mut(&mut v);
                            self.visit_expr_mut(&mut n);
                            quote::quote!(#v; #n)
                        }
                        crate::lower::VecMacro::List(mut items) => {
                            items.iter_mut().for_each(|i| self.visit_expr_mut(i));
                            quote::quote!(#(#items),*)
                        }
                    };
                }
                return;
            }
        }
        // `DMatrix::from_fn(r, c, |i, j| …)`: the elements pushed in column-major order by
        // two loops, then `DMatrix::from_vec` (whose rule the runtime has).
        if let Some(mut rewritten) = self.matrix_from_fn(e) {
            self.visit_expr_mut(&mut rewritten);
            *e = rewritten;
            return;
        }
        // `if let Some(v) = o { … }` and `match o { Some(v) => …, None => … }`: a test
        // of `is_some()` and a `let` of the unwrapped value, which the lowering knows.
        if let Some(mut rewritten) = self.option_branch(e) {
            self.visit_expr_mut(&mut rewritten);
            *e = rewritten;
            return;
        }
        // A call of a local closure.
        if let Expr::Call(call) = &*e {
            if let Expr::Path(p) = strip(&call.func) {
                if let Some(def) = p.path.get_ident().and_then(|id| self.closure_named(&id.to_string())) {
                    let args: Vec<Expr> = call.args.iter().cloned().collect();
                    let span = e.span();
                    *e = match self.apply(&Func::Closure(def.closure.clone()), args, span, Some(&def)) {
                        Some(mut inlined) => {
                            self.depth += 1;
                            self.visit_expr_mut(&mut inlined);
                            self.depth -= 1;
                            inlined
                        }
                        None => rejected(span),
                    };
                    return;
                }
            }
        }
        if let Expr::ForLoop(f) = &*e {
            if let Some(result) = self.for_loop(f) {
                *e = match result {
                    Some(mut rewritten) => {
                        self.visit_expr_mut_inner(&mut rewritten);
                        rewritten
                    }
                    None => rejected(e.span()),
                };
                return;
            }
            let f2 = f.clone();
            if let Expr::ForLoop(f) = e {
                self.visit_expr_mut(&mut f.expr);
                self.scoped(|this| {
                    this.bind_names(&f2.pat);
                    this.visit_block_mut(&mut f.body);
                });
            }
            return;
        }
        if let Expr::MethodCall(_) = &*e {
            if let Some(result) = self.consumer(e) {
                *e = match result {
                    Some(mut rewritten) => {
                        self.visit_expr_mut_inner(&mut rewritten);
                        rewritten
                    }
                    None => rejected(e.span()),
                };
                return;
            }
        }
        if let Expr::Path(p) = &*e {
            if let Some(def) = p.path.get_ident().and_then(|id| self.closure_named(&id.to_string())) {
                self.cx.error_spanned_by(
                    &*e,
                    format!(
                        "the closure `{}` is used as a value here; inside a `#[differentiable]` function a local closure can be called (`{0}(x)`) or given to an iterator adaptor (`.map({0})`); for anything else write a `#[differentiable]` function",
                        def.name
                    ),
                );
                *e = rejected(e.span());
                return;
            }
        }
        // `v.swap(i, j)` on a slice exchanges two elements.
        if let Expr::MethodCall(m) = &*e {
            if m.method == "swap" && m.args.len() == 2 && matches!(strip(&m.receiver), Expr::Path(_) | Expr::Field(_)) {
                let span = e.span();
                let v = &m.receiver;
                let (a, b) = (&m.args[0], &m.args[1]);
                let (i, j, t) =
                    (self.names.fresh("i", span), self.names.fresh("j", span), self.names.fresh("swapped", span));
                let mut rewritten: Expr = parse_quote_spanned!(span=> {
                    let (#i, #j) = (#a, #b);
                    let #t = #v[#i];
                    #v[#i] = #v[#j];
                    #v[#j] = #t;
                });
                self.visit_expr_mut_inner(&mut rewritten);
                *e = rewritten;
                return;
            }
        }
        // `θ.sin_cos()` is `(θ.sin(), θ.cos())`, bit for bit (as `std` computes it).
        if let Expr::MethodCall(m) = &*e {
            if m.method == "sin_cos" && m.args.is_empty() {
                let span = e.span();
                let mut setup = Vec::new();
                let angle = self.name_it(&m.receiver, "angle", &mut setup, span);
                let mut rewritten: Expr = parse_quote_spanned!(span=> { #(#setup)* (#angle.sin(), #angle.cos()) });
                self.visit_expr_mut_inner(&mut rewritten);
                *e = rewritten;
                return;
            }
        }
        if let Expr::Closure(c) = e {
            // A closure that stays (passed somewhere else): its parameters are bindings.
            let inputs = c.inputs.clone();
            self.scoped(|this| {
                for p in &inputs {
                    this.bind_names(p);
                }
                this.visit_expr_mut(&mut c.body);
            });
            return;
        }
        syn::visit_mut::visit_expr_mut(self, e);
    }

    fn visit_arm_mut(&mut self, arm: &mut syn::Arm) {
        self.scoped(|this| {
            this.bind_names(&arm.pat);
            syn::visit_mut::visit_arm_mut(this, arm);
        });
    }
}

impl Desugarer<'_> {
    /// `let [a, b, c] = e;` → `let a = e[0]; let b = e[1]; let c = e[2];` (`e` named first
    /// unless it is a plain path, so that it is evaluated once); `_` and `..` skip;
    /// `rest @ ..` binds the sub-slice in between.
    fn array_pattern(&mut self, s: &Stmt) -> Option<Vec<Stmt>> {
        let Stmt::Local(local) = s else { return None };
        let (Pat::Slice(slice), Some(init)) = (&local.pat, &local.init) else { return None };
        let span = slice.span();
        let mut out = Vec::new();
        let value = self.name_it(&init.expr, "array", &mut out, span);
        let is_rest = |p: &Pat| match p {
            Pat::Rest(_) => true,
            Pat::Ident(i) => matches!(i.subpat.as_ref().map(|(_, s)| &**s), Some(Pat::Rest(_))),
            _ => false,
        };
        let rest = slice.elems.iter().position(is_rest);
        let count = slice.elems.len();
        // `let [a, b, ..] = x else { return …; };`: the `else` runs when `x` is too short.
        if let Some((_, diverge)) = &init.diverge {
            let short: Expr = match rest {
                Some(_) => {
                    let fixed = count - 1;
                    parse_quote_spanned!(span=> #value.len() < #fixed)
                }
                None => parse_quote_spanned!(span=> #value.len() != #count),
            };
            out.push(parse_quote_spanned!(span=> if #short #diverge));
        }
        for (k, p) in slice.elems.iter().enumerate() {
            // `rest @ ..`: the elements in between, as a named sub-slice.
            if let Pat::Ident(i) = p {
                if is_rest(p) {
                    let name = &i.ident;
                    let back = count - k - 1;
                    out.push(parse_quote_spanned!(span=> let #name = &#value[#k..#value.len() - #back];));
                    continue;
                }
            }
            if matches!(p, Pat::Rest(_) | Pat::Wild(_)) {
                continue;
            }
            let index: Expr = match rest {
                Some(r) if k > r => {
                    let back = count - k;
                    parse_quote_spanned!(span=> #value.len() - #back)
                }
                _ => parse_quote_spanned!(span=> #k),
            };
            let p = by_value(p);
            out.push(parse_quote_spanned!(span=> let #p = #value[#index];));
        }
        Some(out)
    }

    /// Visit a rewritten expression's parts (its own top is already desugared).
    fn visit_expr_mut_inner(&mut self, e: &mut Expr) {
        syn::visit_mut::visit_expr_mut(self, e);
    }
}
