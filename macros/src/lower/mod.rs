//! Lowering: the body of a `#[differentiable]` function → the IR.
//!
//! Every expression is flattened into single-operation statements over fresh
//! temporaries. A `let mut` that is only reassigned in straight-line code is renamed
//! (each assignment makes a new value); one that is assigned inside an `if`, a `match`
//! or a loop becomes a cell. Indexable float containers become buffers.
//!
//! Control flow is reduced to `If`, counted `For` loops and `While` loops:
//! `match` on integers becomes an `if` chain; `return`, `break` and `continue` set flags
//! and the statements after them are guarded by those flags; a `for` loop that may exit
//! early becomes a `While` over an index cell; `for` over slice iterators becomes a loop
//! over indices. Anything outside the supported subset is reported with its name.

use std::collections::HashSet;

use proc_macro2::{Span, TokenStream};
use quote::{quote, quote_spanned, ToTokens};
use syn::spanned::Spanned;
use syn::visit::Visit;
use syn::{Expr, Ident, Pat};

use crate::ctxt::Ctxt;
use crate::ir::*;
use crate::names;
use crate::ops;
use crate::sig::{self, Class, Signature};

mod branch;
mod buffers;
pub(crate) use buffers::{parse_vec_macro, VecMacro};
mod call;
mod expr;
mod loops;
mod reads;
mod scan;
mod stmt;

use scan::*;

/// The result of lowering one function body.
pub struct Lowered {
    pub func: Func,
    /// The body takes `grad!`, `vjp!` or `value_and_grad!` of another function.
    pub nests_derivatives: bool,
}

/// How a name in scope is bound.
#[derive(Clone, Debug)]
enum Binding {
    Value(Operand),
    Cell(Var),
    Buffer(Var),
    Tuple(Vec<Binding>),
    /// A name whose initialiser had an error.
    Poison,
}

/// The value of a lowered expression.
#[derive(Clone, Debug)]
enum Value {
    Op(Operand),
    Buffer(Var),
    Slice {
        buf: Var,
        lo: Option<Operand>,
        hi: Option<Operand>,
        inclusive: bool,
    },
    Tuple(Vec<Value>),
    Unit,
    /// The result of an expression already reported as an error: using it reports
    /// nothing more, so one mistake gives one message.
    Poison,
}

/// Where a block sits, which decides what an early exit inside it may do.
#[derive(Clone, Copy, PartialEq, Eq)]
enum BlockCtx {
    /// A statement-level block whose value is `()`: exits are allowed.
    Unit,
    /// A block whose value is used: exits are not supported inside it.
    Value,
    /// The function body (or one of its tail positions): its value is the result.
    FnBody,
}

struct LoopFrame {
    brk: Option<Var>,
    cont: Option<Var>,
    /// Cells receiving the value of `break value`.
    value: Option<Binding>,
}

struct ReturnFrame {
    flag: Var,
    value: Binding,
}

struct Lowerer<'a> {
    cx: &'a mut Ctxt,
    sig: &'a Signature,
    vars: Vars,
    scopes: Vec<Vec<(String, Binding)>>,
    /// Elements already read from argument buffers in the blocks being built (one list
    /// per open block): `x[i]` read twice with the same index is one value, so its
    /// adjoint is summed in a register and added to `x_bar[i]` once.
    element_reads: Vec<Vec<((Var, String), Operand)>>,
    out: Vec<Block>,
    loops: Vec<LoopFrame>,
    ret: Option<ReturnFrame>,
    /// Names of `let mut` bindings assigned inside nested control flow.
    cell_names: HashSet<String>,
    /// Names whose elements the body assigns (see [`Scan`]).
    element_assigned: HashSet<String>,
    /// Buffers bound by `let part = &x[a..b];` (copies standing for slice references).
    views: HashSet<Var>,
    /// Values of unknown type bound by `let row = &m[i];` (and `for row in m`): passed
    /// on to a call by reference, as the user's reference is.
    borrowed: HashSet<Var>,
    /// Fields of parameters read so far (`p.coeffs`, `self.w`), each read once at the
    /// top of the body (parameters do not change): `p.coeffs[i]` in a loop reads one
    /// copy, and its adjoint is added to `p_bar.coeffs` once, not once per iteration.
    param_fields: Vec<((Var, String), Operand)>,
    nests: bool,
}

pub fn lower(sig: &Signature, body: &syn::Block, cx: &mut Ctxt) -> Lowered {
    // Iterator chains and local closures become the loops and blocks they stand for.
    let desugared = crate::desugar::desugar(body, cx);
    let body = &desugared;
    let mut scan = Scan::default();
    scan.visit_block(body);
    let mut l = Lowerer {
        cx,
        sig,
        vars: Vars::default(),
        scopes: vec![Vec::new()],
        element_reads: vec![Vec::new()],
        out: vec![Vec::new()],
        loops: Vec::new(),
        ret: None,
        cell_names: scan.assigned_in_control,
        element_assigned: scan.element_assigned,
        views: HashSet::new(),
        param_fields: Vec::new(),
        borrowed: HashSet::new(),
        nests: false,
    };
    let mut params = Vec::new();
    for p in &sig.params {
        let (tree, binding) = l.bind_param(&p.pat, &p.class, Some(&p.ty), p.span);
        params.push(Param { pat: tree.clone() });
        if p.receiver.is_some() {
            // `self` in the body is the receiver parameter.
            l.bind(&Ident::new("self", p.span), binding);
            continue;
        }
        l.bind_pattern_names(&p.pat, binding);
        // `mut x` reassigned inside control flow lives in a cell, like a `let mut`.
        if let (true, Some(id), Tree::Leaf(v)) = (p.mutable, p.ident(), &tree) {
            if l.cell_names.contains(&id.to_string()) && !l.vars.kind(*v).is_buffer() {
                let cell = l.vars.add_like(*v, id.to_string(), Role::Cell);
                l.emit(Stmt::Cell { var: cell, init: Some(Operand::Var(*v)) });
                l.bind(id, Binding::Cell(cell));
            }
        }
    }
    if scan.has_return {
        let flag = l.vars.add("returned", Kind::Bool, Role::Cell, body.span());
        l.emit(Stmt::Cell { var: flag, init: Some(const_bool(false)) });
        let value = l.result_cells("result", &sig.output_class, sig.output.as_ref(), body.span());
        l.ret = Some(ReturnFrame { flag, value });
    }
    let tail = l.block_in(&body.stmts, BlockCtx::FnBody, body.span());
    let ret_value = match &l.ret {
        Some(frame) => {
            let b = frame.value.clone();
            l.read_binding(&b, body.span())
        }
        None => tail,
    };
    let ret = l.value_tree(ret_value, body.span());
    let block = l.out.pop().expect("function block");
    let mut func = Func { vars: l.vars, params, body: block, ret };
    reads::share_cell_reads(&mut func);
    Lowered { func, nests_derivatives: l.nests }
}

fn const_bool(b: bool) -> Operand {
    Operand::Const(Const { tokens: if b { quote!(true) } else { quote!(false) }, kind: Kind::Bool, scalar_ty: None })
}

fn const_int(n: usize) -> Operand {
    Operand::Const(Const {
        tokens: proc_macro2::Literal::usize_unsuffixed(n).into_token_stream(),
        kind: Kind::Int,
        scalar_ty: None,
    })
}

impl<'a> Lowerer<'a> {
    // ---------------------------------------------------------------- plumbing

    pub(super) fn emit(&mut self, s: Stmt) {
        self.out.last_mut().expect("open block").push(s);
    }

    pub(super) fn nested(&mut self, f: impl FnOnce(&mut Self)) -> Block {
        self.out.push(Vec::new());
        self.scopes.push(Vec::new());
        self.element_reads.push(Vec::new());
        f(self);
        self.element_reads.pop();
        self.scopes.pop();
        self.out.pop().expect("nested block")
    }

    /// `buf[index]`, reusing an earlier read of the same element of an argument (which
    /// never changes) in an enclosing block.
    pub(super) fn element(&mut self, buf: Var, index: Operand, span: Span) -> Operand {
        let key = (
            buf,
            match &index {
                Operand::Var(v) => format!("v{}", v.0),
                Operand::Const(c) => c.tokens.to_string(),
            },
        );
        let reusable = self.vars.role(buf) == Role::Param;
        if reusable {
            if let Some(o) = self.element_reads.iter().rev().flatten().find(|(k, _)| *k == key).map(|(_, o)| o.clone())
            {
                return o;
            }
        }
        let kind = self.vars.kind(buf).element();
        let name = format!("{}_i", self.vars.info(buf).name);
        let o = self.temp(&name, kind, Rvalue::Index { buf, index }, span);
        if reusable {
            self.element_reads.last_mut().expect("open block").push((key, o.clone()));
        }
        o
    }

    pub(super) fn temp(&mut self, name: &str, kind: Kind, rv: Rvalue, span: Span) -> Operand {
        let v = self.vars.add(name, kind, Role::Temp, span);
        if kind == Kind::Float {
            self.vars.info_mut(v).scalar_ty = self.scalar_ty_of(&rv);
        }
        self.emit(Stmt::Let { dst: Tree::Leaf(v), rv, span });
        Operand::Var(v)
    }

    /// The generic float type of the result of `rv`, when its operands have one.
    pub(super) fn scalar_ty_of(&self, rv: &Rvalue) -> Option<Ident> {
        if let Rvalue::Cast(_, ty) = rv {
            return generic_float(ty, &self.sig.float_params);
        }
        rv.operands().iter().filter_map(|o| o.var()).find_map(|v| self.vars.info(v).scalar_ty.clone())
    }

    pub(super) fn bind(&mut self, name: &Ident, b: Binding) {
        self.scopes.last_mut().expect("scope").push((name.to_string(), b));
    }

    pub(super) fn lookup(&self, name: &str) -> Option<&Binding> {
        self.scopes.iter().rev().flat_map(|s| s.iter().rev()).find(|(n, _)| n == name).map(|(_, b)| b)
    }

    pub(super) fn rebind(&mut self, name: &str, b: Binding) {
        for scope in self.scopes.iter_mut().rev() {
            if let Some(slot) = scope.iter_mut().rev().find(|(n, _)| n == name) {
                slot.1 = b;
                return;
            }
        }
    }

    pub(super) fn kind_of(&self, o: &Operand) -> Kind {
        match o {
            Operand::Var(v) => self.vars.kind(*v),
            Operand::Const(c) => c.kind,
        }
    }

    pub(super) fn unsupported(&mut self, tokens: impl ToTokens, what: &str, hint: &str) -> Value {
        self.cx
            .error_spanned_by(tokens, format!("{what} is not supported inside a `#[differentiable]` function; {hint}"));
        Value::Poison
    }

    // ---------------------------------------------------------------- parameters

    /// A tuple parameter bound to one name: one variable per field, recursively.
    fn tuple_param(&mut self, name: &str, items: &[Class], ty: Option<&syn::Type>, span: Span) -> (Tree<Var>, Binding) {
        let elem_tys: Vec<Option<&syn::Type>> = match ty.map(sig::strip_ref) {
            Some(syn::Type::Tuple(tt)) => tt.elems.iter().map(Some).collect(),
            _ => vec![None; items.len()],
        };
        let mut trees = Vec::new();
        let mut bindings = Vec::new();
        for (i, (c, t)) in items.iter().zip(elem_tys).enumerate() {
            let field = format!("{name}_{i}");
            if let Class::Tuple(inner) = c {
                let (tree, binding) = self.tuple_param(&field, inner, t, span);
                trees.push(tree);
                bindings.push(binding);
                continue;
            }
            let v = self.vars.add(field, c.kind(), Role::Param, span);
            self.vars.info_mut(v).scalar_ty = t.and_then(|t| generic_float(t, &self.sig.float_params));
            trees.push(Tree::Leaf(v));
            bindings.push(if c.kind().is_buffer() { Binding::Buffer(v) } else { Binding::Value(Operand::Var(v)) });
        }
        (Tree::Tuple(trees), Binding::Tuple(bindings))
    }

    pub(super) fn bind_param(
        &mut self,
        pat: &Pat,
        class: &Class,
        ty: Option<&syn::Type>,
        span: Span,
    ) -> (Tree<Var>, Binding) {
        match (pat, class) {
            (Pat::Tuple(t), Class::Tuple(items)) if t.elems.len() == items.len() => {
                let elem_tys: Vec<Option<&syn::Type>> = match ty.map(sig::strip_ref) {
                    Some(syn::Type::Tuple(tt)) => tt.elems.iter().map(Some).collect(),
                    _ => vec![None; items.len()],
                };
                let (trees, bindings): (Vec<_>, Vec<_>) =
                    t.elems.iter().zip(items).zip(elem_tys).map(|((p, c), t)| self.bind_param(p, c, t, span)).unzip();
                (Tree::Tuple(trees), Binding::Tuple(bindings))
            }
            (Pat::Ident(_) | Pat::Wild(_), Class::Tuple(items)) => {
                let name = match pat {
                    Pat::Ident(p) => p.ident.to_string(),
                    _ => "arg".to_string(),
                };
                self.tuple_param(&name, items, ty, span)
            }
            _ => {
                let name = match pat {
                    Pat::Ident(p) => p.ident.to_string(),
                    _ => "arg".to_string(),
                };
                let v = self.vars.add(name, class.kind(), Role::Param, pat.span());
                self.vars.info_mut(v).scalar_ty = ty.and_then(|t| generic_float(t, &self.sig.float_params));
                let b = if class.kind().is_buffer() { Binding::Buffer(v) } else { Binding::Value(Operand::Var(v)) };
                (Tree::Leaf(v), b)
            }
        }
    }

    pub(super) fn bind_pattern_names(&mut self, pat: &Pat, b: Binding) {
        match (pat, b) {
            (Pat::Ident(p), b) => self.bind(&p.ident, b),
            (Pat::Tuple(t), Binding::Tuple(items)) => {
                for (p, b) in t.elems.iter().zip(items) {
                    self.bind_pattern_names(p, b);
                }
            }
            _ => {}
        }
    }

    /// Cells that receive a result of the given class (tuples get one cell per field).
    pub(super) fn result_cells(&mut self, name: &str, class: &Class, ty: Option<&syn::Type>, span: Span) -> Binding {
        match class {
            Class::Tuple(items) => {
                let elem_tys: Vec<Option<syn::Type>> = match ty.map(sig::strip_ref) {
                    Some(syn::Type::Tuple(t)) => t.elems.iter().cloned().map(Some).collect(),
                    _ => vec![None; items.len()],
                };
                Binding::Tuple(
                    items
                        .iter()
                        .zip(elem_tys)
                        .enumerate()
                        .map(|(i, (c, t))| self.result_cells(&format!("{name}_{i}"), c, t.as_ref(), span))
                        .collect(),
                )
            }
            _ => {
                let kind = class.kind();
                let v = self.vars.add(name, kind, Role::Cell, span);
                self.vars.info_mut(v).scalar_ty = ty.and_then(|t| generic_float(t, &self.sig.float_params));
                let init = match &self.vars.info(v).scalar_ty {
                    Some(_) => Some(self.vars.zero(v)),
                    None => default_value(kind),
                };
                self.emit(Stmt::Cell { var: v, init });
                Binding::Cell(v)
            }
        }
    }

    // ---------------------------------------------------------------- blocks

    pub(super) fn operand(&mut self, e: &Expr) -> Operand {
        match self.expr(e) {
            Value::Op(o) => o,
            Value::Buffer(b) => Operand::Var(b),
            Value::Unit | Value::Poison => {
                Operand::Const(Const { tokens: quote!(()), kind: Kind::Unknown, scalar_ty: None })
            }
            Value::Tuple(_) | Value::Slice { .. } => {
                self.cx
                    .error_spanned_by(e, "a tuple or a sub-slice cannot be used here; bind its parts to names first");
                Operand::Const(Const { tokens: quote!(()), kind: Kind::Unknown, scalar_ty: None })
            }
        }
    }

    pub(super) fn read_binding(&mut self, b: &Binding, span: Span) -> Value {
        match b {
            Binding::Value(o) => Value::Op(o.clone()),
            Binding::Buffer(v) => Value::Buffer(*v),
            Binding::Cell(c) => {
                let kind = self.vars.kind(*c);
                let name = self.vars.info(*c).name.clone();
                Value::Op(self.temp(&name, kind, Rvalue::Use(Operand::Var(*c)), span))
            }
            Binding::Tuple(items) => Value::Tuple(items.iter().map(|b| self.read_binding(b, span)).collect()),
            Binding::Poison => Value::Poison,
        }
    }

    pub(super) fn assign_binding(&mut self, target: &Binding, v: Value, span: Span) {
        match (target, v) {
            (Binding::Cell(c), Value::Op(o)) => {
                self.refine_kind(*c, &o);
                self.emit(Stmt::Assign { var: *c, value: o });
            }
            (Binding::Cell(c), Value::Buffer(b)) => {
                self.emit(Stmt::Assign { var: *c, value: Operand::Var(b) });
            }
            (Binding::Tuple(ts), Value::Tuple(vs)) if ts.len() == vs.len() => {
                for (t, v) in ts.iter().zip(vs) {
                    self.assign_binding(t, v, span);
                }
            }
            (Binding::Tuple(ts), Value::Op(o)) if !ts.is_empty() => {
                // A tuple produced by a call: take its fields.
                for (i, t) in ts.iter().enumerate() {
                    let member = syn::Member::Unnamed(syn::Index { index: i as u32, span });
                    let f = self.temp("field", Kind::Unknown, Rvalue::Field(o.clone(), member), span);
                    self.assign_binding(t, Value::Op(f), span);
                }
            }
            (Binding::Tuple(ts), Value::Unit) if ts.is_empty() => {}
            _ => self.cx.error_at(span, "this value does not fit the variable it is assigned to"),
        }
    }

    pub(super) fn refine_kind(&mut self, cell: Var, o: &Operand) {
        if self.vars.kind(cell) == Kind::Unknown {
            let k = self.kind_of(o);
            if k != Kind::Unknown {
                self.vars.info_mut(cell).kind = k;
            }
        }
        if self.vars.info(cell).scalar_ty.is_none() {
            let ty = match o {
                Operand::Var(v) => self.vars.info(*v).scalar_ty.clone(),
                Operand::Const(c) => c.scalar_ty.clone(),
            };
            self.vars.info_mut(cell).scalar_ty = ty;
        }
    }

    pub(super) fn value_tree(&mut self, v: Value, span: Span) -> Tree<Operand> {
        match v {
            Value::Op(o) => Tree::Leaf(o),
            Value::Buffer(b) => Tree::Leaf(Operand::Var(b)),
            Value::Tuple(items) => Tree::Tuple(items.into_iter().map(|i| self.value_tree(i, span)).collect()),
            Value::Unit | Value::Poison => Tree::Tuple(Vec::new()),
            Value::Slice { .. } => {
                self.cx.error_at(span, "a sub-slice cannot be returned; return a `Vec` built from it");
                Tree::Tuple(Vec::new())
            }
        }
    }
}

fn strip_parens(e: &Expr) -> &Expr {
    match e {
        Expr::Paren(p) => strip_parens(&p.expr),
        Expr::Group(g) => strip_parens(&g.expr),
        other => other,
    }
}

fn is_call_like(e: &Expr) -> bool {
    matches!(strip_parens(e), Expr::Call(_))
}

fn contains_cell(b: &Binding) -> bool {
    match b {
        Binding::Cell(_) => true,
        Binding::Tuple(items) => items.iter().any(contains_cell),
        _ => false,
    }
}

/// Names the lowering invents for temporaries (renamed after user bindings when bound).
fn is_generated_name(name: &str) -> bool {
    matches!(
        name,
        "sum"
            | "diff"
            | "prod"
            | "quot"
            | "rem"
            | "cmp"
            | "bits"
            | "neg"
            | "not"
            | "cast"
            | "field"
            | "folded"
            | "elem"
    ) || name.ends_with("_i")
        || crate::ops::is_method_name(name)
}

fn combine_kinds(a: Kind, b: Kind) -> Kind {
    match (a, b) {
        (Kind::Unknown, _) | (_, Kind::Unknown) => Kind::Unknown,
        (Kind::Float, _) | (_, Kind::Float) => Kind::Float,
        (Kind::Bool, Kind::Bool) => Kind::Bool,
        (Kind::Int, _) | (_, Kind::Int) => Kind::Int,
        _ => Kind::Unknown,
    }
}

/// A zero of the kind, for cells read before rustc can see them assigned.
fn default_value(kind: Kind) -> Option<Operand> {
    Some(Operand::Const(match kind {
        Kind::Float => Const { tokens: quote!(0.0), kind, scalar_ty: None },
        Kind::Int => Const { tokens: quote!(0), kind, scalar_ty: None },
        Kind::Bool => Const { tokens: quote!(false), kind, scalar_ty: None },
        _ => return None,
    }))
}

/// The generic float parameter a type names (`T`, `&T`, `[T]`, `Vec<T>`), if any.
fn generic_float(ty: &syn::Type, float_params: &[Ident]) -> Option<Ident> {
    let t = match sig::strip_ref(ty) {
        syn::Type::Slice(s) => (*s.elem).clone(),
        syn::Type::Array(a) => (*a.elem).clone(),
        other => other.clone(),
    };
    let t = if let syn::Type::Path(tp) = &t {
        if tp.path.segments.last().is_some_and(|s| s.ident == "Vec") {
            sig::buffer_elem(&t)
        } else {
            t
        }
    } else {
        t
    };
    match t {
        syn::Type::Path(tp) => tp.path.get_ident().filter(|i| float_params.contains(i)).cloned(),
        _ => None,
    }
}

pub fn kind_of_type(ty: &syn::Type, float_params: &[Ident]) -> Kind {
    let mut cx = Ctxt::new();
    sig::classify(ty, float_params, &mut cx).kind()
}

fn literal(lit: &syn::Lit) -> Const {
    let kind = match lit {
        syn::Lit::Float(_) => Kind::Float,
        syn::Lit::Int(i) => match i.suffix() {
            "f32" | "f64" => Kind::Float,
            _ => Kind::Int,
        },
        syn::Lit::Bool(_) => Kind::Bool,
        _ => Kind::Unknown,
    };
    Const { tokens: lit.to_token_stream(), kind, scalar_ty: None }
}
