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
    out: Vec<Block>,
    loops: Vec<LoopFrame>,
    ret: Option<ReturnFrame>,
    /// Names of `let mut` bindings assigned inside nested control flow.
    cell_names: HashSet<String>,
    nests: bool,
}

pub fn lower(sig: &Signature, body: &syn::Block, cx: &mut Ctxt) -> Lowered {
    let mut scan = Scan::default();
    scan.visit_block(body);
    let mut l = Lowerer {
        cx,
        sig,
        vars: Vars::default(),
        scopes: vec![Vec::new()],
        out: vec![Vec::new()],
        loops: Vec::new(),
        ret: None,
        cell_names: scan.assigned_in_control,
        nests: false,
    };
    let mut params = Vec::new();
    for p in &sig.params {
        let (tree, binding) = l.bind_param(&p.pat, &p.class, Some(&p.ty), p.span);
        params.push(Param { pat: tree });
        l.bind_pattern_names(&p.pat, binding);
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
    Lowered { func: Func { vars: l.vars, params, body: block, ret }, nests_derivatives: l.nests }
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

/// A syntactic pre-pass over the body.
#[derive(Default)]
struct Scan {
    has_return: bool,
    /// Names assigned (`x = …`, `x += …`) inside nested control flow.
    assigned_in_control: HashSet<String>,
    control_depth: usize,
}

impl<'ast> Visit<'ast> for Scan {
    fn visit_expr_return(&mut self, e: &'ast syn::ExprReturn) {
        self.has_return = true;
        syn::visit::visit_expr_return(self, e);
    }
    fn visit_expr_assign(&mut self, e: &'ast syn::ExprAssign) {
        if self.control_depth > 0 {
            if let Some(name) = assigned_name(&e.left) {
                self.assigned_in_control.insert(name);
            }
        }
        syn::visit::visit_expr_assign(self, e);
    }
    fn visit_expr_binary(&mut self, e: &'ast syn::ExprBinary) {
        if self.control_depth > 0 && compound_op(&e.op).is_some() {
            if let Some(name) = assigned_name(&e.left) {
                self.assigned_in_control.insert(name);
            }
        }
        syn::visit::visit_expr_binary(self, e);
    }
    fn visit_expr_if(&mut self, e: &'ast syn::ExprIf) {
        self.visit_expr(&e.cond);
        self.control_depth += 1;
        self.visit_block(&e.then_branch);
        if let Some((_, els)) = &e.else_branch {
            self.visit_expr(els);
        }
        self.control_depth -= 1;
    }
    fn visit_expr_match(&mut self, e: &'ast syn::ExprMatch) {
        self.visit_expr(&e.expr);
        self.control_depth += 1;
        for arm in &e.arms {
            self.visit_arm(arm);
        }
        self.control_depth -= 1;
    }
    fn visit_expr_for_loop(&mut self, e: &'ast syn::ExprForLoop) {
        self.visit_expr(&e.expr);
        self.control_depth += 1;
        self.visit_block(&e.body);
        self.control_depth -= 1;
    }
    fn visit_expr_while(&mut self, e: &'ast syn::ExprWhile) {
        self.control_depth += 1;
        self.visit_expr(&e.cond);
        self.visit_block(&e.body);
        self.control_depth -= 1;
    }
    fn visit_expr_loop(&mut self, e: &'ast syn::ExprLoop) {
        self.control_depth += 1;
        self.visit_block(&e.body);
        self.control_depth -= 1;
    }
    fn visit_expr_closure(&mut self, _: &'ast syn::ExprClosure) {}
    fn visit_item(&mut self, _: &'ast syn::Item) {}
}

fn assigned_name(e: &Expr) -> Option<String> {
    match e {
        Expr::Path(p) => p.path.get_ident().map(|i| i.to_string()),
        Expr::Paren(p) => assigned_name(&p.expr),
        _ => None,
    }
}

fn compound_op(op: &syn::BinOp) -> Option<BinOp> {
    Some(match op {
        syn::BinOp::AddAssign(_) => BinOp::Add,
        syn::BinOp::SubAssign(_) => BinOp::Sub,
        syn::BinOp::MulAssign(_) => BinOp::Mul,
        syn::BinOp::DivAssign(_) => BinOp::Div,
        syn::BinOp::RemAssign(_) => BinOp::Rem,
        syn::BinOp::BitAndAssign(_) => BinOp::BitAnd,
        syn::BinOp::BitOrAssign(_) => BinOp::BitOr,
        syn::BinOp::BitXorAssign(_) => BinOp::BitXor,
        syn::BinOp::ShlAssign(_) => BinOp::Shl,
        syn::BinOp::ShrAssign(_) => BinOp::Shr,
        _ => return None,
    })
}

/// What early exits a statement may take (not counting loops nested inside it for
/// `break`/`continue`).
#[derive(Default, Clone, Copy)]
struct Exits {
    ret: bool,
    brk: bool,
    cont: bool,
}

impl Exits {
    fn any(self) -> bool {
        self.ret || self.brk || self.cont
    }
}

#[derive(Default)]
struct ExitScan {
    exits: Exits,
    loop_depth: usize,
}

impl<'ast> Visit<'ast> for ExitScan {
    fn visit_expr_return(&mut self, e: &'ast syn::ExprReturn) {
        self.exits.ret = true;
        syn::visit::visit_expr_return(self, e);
    }
    fn visit_expr_break(&mut self, e: &'ast syn::ExprBreak) {
        if self.loop_depth == 0 {
            self.exits.brk = true;
        }
        syn::visit::visit_expr_break(self, e);
    }
    fn visit_expr_continue(&mut self, _: &'ast syn::ExprContinue) {
        if self.loop_depth == 0 {
            self.exits.cont = true;
        }
    }
    fn visit_expr_for_loop(&mut self, e: &'ast syn::ExprForLoop) {
        self.visit_expr(&e.expr);
        self.loop_depth += 1;
        self.visit_block(&e.body);
        self.loop_depth -= 1;
    }
    fn visit_expr_while(&mut self, e: &'ast syn::ExprWhile) {
        self.loop_depth += 1;
        syn::visit::visit_expr_while(self, e);
        self.loop_depth -= 1;
    }
    fn visit_expr_loop(&mut self, e: &'ast syn::ExprLoop) {
        self.loop_depth += 1;
        syn::visit::visit_expr_loop(self, e);
        self.loop_depth -= 1;
    }
    fn visit_expr_closure(&mut self, _: &'ast syn::ExprClosure) {}
    fn visit_item(&mut self, _: &'ast syn::Item) {}
}

fn exits_of_stmt(s: &syn::Stmt) -> Exits {
    let mut scan = ExitScan::default();
    scan.visit_stmt(s);
    scan.exits
}

fn exits_of_block(b: &syn::Block) -> Exits {
    let mut scan = ExitScan::default();
    scan.visit_block(b);
    scan.exits
}

/// Whether evaluating the expression can have an effect or fail (so `&&`/`||` must not
/// evaluate it eagerly).
fn has_effects(e: &Expr) -> bool {
    struct V(bool);
    impl<'ast> Visit<'ast> for V {
        fn visit_expr(&mut self, e: &'ast Expr) {
            match e {
                Expr::Call(_)
                | Expr::MethodCall(_)
                | Expr::Index(_)
                | Expr::Macro(_)
                | Expr::Assign(_)
                | Expr::Block(_)
                | Expr::If(_)
                | Expr::Match(_)
                | Expr::Loop(_)
                | Expr::While(_)
                | Expr::ForLoop(_) => self.0 = true,
                Expr::Binary(b) if matches!(b.op, syn::BinOp::Div(_) | syn::BinOp::Rem(_)) => self.0 = true,
                _ => syn::visit::visit_expr(self, e),
            }
        }
    }
    let mut v = V(false);
    v.visit_expr(e);
    v.0
}

impl<'a> Lowerer<'a> {
    // ---------------------------------------------------------------- plumbing

    fn emit(&mut self, s: Stmt) {
        self.out.last_mut().expect("open block").push(s);
    }

    fn nested(&mut self, f: impl FnOnce(&mut Self)) -> Block {
        self.out.push(Vec::new());
        self.scopes.push(Vec::new());
        f(self);
        self.scopes.pop();
        self.out.pop().expect("nested block")
    }

    fn temp(&mut self, name: &str, kind: Kind, rv: Rvalue, span: Span) -> Operand {
        let v = self.vars.add(name, kind, Role::Temp, span);
        if kind == Kind::Float {
            self.vars.info_mut(v).scalar_ty = self.scalar_ty_of(&rv);
        }
        self.emit(Stmt::Let { dst: Tree::Leaf(v), rv, span });
        Operand::Var(v)
    }

    /// The generic float type of the result of `rv`, when its operands have one.
    fn scalar_ty_of(&self, rv: &Rvalue) -> Option<Ident> {
        if let Rvalue::Cast(_, ty) = rv {
            return generic_float(ty, &self.sig.float_params);
        }
        rv.operands().iter().filter_map(|o| o.var()).find_map(|v| self.vars.info(v).scalar_ty.clone())
    }

    fn bind(&mut self, name: &Ident, b: Binding) {
        self.scopes.last_mut().expect("scope").push((name.to_string(), b));
    }

    fn lookup(&self, name: &str) -> Option<&Binding> {
        self.scopes.iter().rev().flat_map(|s| s.iter().rev()).find(|(n, _)| n == name).map(|(_, b)| b)
    }

    fn rebind(&mut self, name: &str, b: Binding) {
        for scope in self.scopes.iter_mut().rev() {
            if let Some(slot) = scope.iter_mut().rev().find(|(n, _)| n == name) {
                slot.1 = b;
                return;
            }
        }
    }

    fn kind_of(&self, o: &Operand) -> Kind {
        match o {
            Operand::Var(v) => self.vars.kind(*v),
            Operand::Const(c) => c.kind,
        }
    }

    fn unsupported(&mut self, tokens: impl ToTokens, what: &str, hint: &str) -> Value {
        self.cx
            .error_spanned_by(tokens, format!("{what} is not supported inside a `#[differentiable]` function; {hint}"));
        Value::Poison
    }

    // ---------------------------------------------------------------- parameters

    fn bind_param(&mut self, pat: &Pat, class: &Class, ty: Option<&syn::Type>, span: Span) -> (Tree<Var>, Binding) {
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
                let mut trees = Vec::new();
                let mut bindings = Vec::new();
                let elem_tys: Vec<Option<syn::Type>> = match ty.map(sig::strip_ref) {
                    Some(syn::Type::Tuple(tt)) => tt.elems.iter().cloned().map(Some).collect(),
                    _ => vec![None; items.len()],
                };
                for (i, c) in items.iter().enumerate() {
                    let v = self.vars.add(format!("{name}_{i}"), c.kind(), Role::Param, span);
                    self.vars.info_mut(v).scalar_ty =
                        elem_tys[i].as_ref().and_then(|t| generic_float(t, &self.sig.float_params));
                    trees.push(Tree::Leaf(v));
                    bindings.push(if c.kind().is_buffer() {
                        Binding::Buffer(v)
                    } else {
                        Binding::Value(Operand::Var(v))
                    });
                }
                (Tree::Tuple(trees), Binding::Tuple(bindings))
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

    fn bind_pattern_names(&mut self, pat: &Pat, b: Binding) {
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
    fn result_cells(&mut self, name: &str, class: &Class, ty: Option<&syn::Type>, span: Span) -> Binding {
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

    /// Lower statements; the value of the block is returned (in `FnBody` context with a
    /// return frame, the value has already been assigned to the result cells).
    fn block_in(&mut self, stmts: &[syn::Stmt], ctx: BlockCtx, span: Span) -> Value {
        for (i, stmt) in stmts.iter().enumerate() {
            let last = i + 1 == stmts.len();
            if last {
                if let syn::Stmt::Expr(e, None) = stmt {
                    return self.tail(e, ctx);
                }
            }
            self.stmt(stmt, ctx);
            let exits = exits_of_stmt(stmt);
            if exits.any() && !last {
                if ctx == BlockCtx::Value {
                    self.cx.error_spanned_by(
                        stmt,
                        "an early exit (`return`, `break`, `continue`) inside a block whose value is used is not supported; \
                         move the exit to statement level",
                    );
                    return Value::Poison;
                }
                let go = self.guard(exits, stmt.span());
                let rest = &stmts[i + 1..];
                let mut value = Value::Unit;
                let then_ = self.nested(|l| value = l.block_in(rest, ctx, span));
                self.emit(Stmt::If { cond: go, then_, else_: Vec::new() });
                if !matches!(value, Value::Unit) {
                    self.cx.error_at(
                        span,
                        "a value computed after an early exit must be assigned to a variable declared before it",
                    );
                }
                return Value::Unit;
            }
        }
        if ctx == BlockCtx::FnBody {
            if let Some(frame) = &self.ret {
                // A body ending in a statement: the result is `()`.
                let _ = frame;
            }
        }
        Value::Unit
    }

    /// A condition that is true while none of the given exits has been taken.
    fn guard(&mut self, exits: Exits, span: Span) -> Operand {
        let mut flags = Vec::new();
        if exits.ret {
            if let Some(f) = &self.ret {
                flags.push(f.flag);
            }
        }
        if let Some(frame) = self.loops.last() {
            if exits.brk {
                flags.extend(frame.brk);
            }
            if exits.cont {
                flags.extend(frame.cont);
            }
        }
        let mut acc: Option<Operand> = None;
        for f in flags {
            let read = self.temp("exited", Kind::Bool, Rvalue::Use(Operand::Var(f)), span);
            acc = Some(match acc {
                None => read,
                Some(a) => self.temp("exited", Kind::Bool, Rvalue::Binary(BinOp::BitOr, a, read), span),
            });
        }
        match acc {
            Some(a) => self.temp("go_on", Kind::Bool, Rvalue::Unary(UnOp::Not, a), span),
            None => const_bool(true),
        }
    }

    /// The tail expression of a block.
    fn tail(&mut self, e: &Expr, ctx: BlockCtx) -> Value {
        if ctx == BlockCtx::FnBody && self.ret.is_some() {
            match e {
                Expr::If(i) => return self.if_expr(i, BlockCtx::FnBody),
                Expr::Match(m) => return self.match_expr(m, BlockCtx::FnBody),
                Expr::Block(b) if b.label.is_none() => {
                    let mut v = Value::Unit;
                    let block = self.nested(|l| v = l.block_in(&b.block.stmts, BlockCtx::FnBody, b.span()));
                    self.out.last_mut().expect("block").extend(block);
                    return v;
                }
                Expr::Return(r) => {
                    self.return_expr(r);
                    return Value::Unit;
                }
                _ => {}
            }
            let v = self.expr(e);
            self.assign_result(v, e.span());
            return Value::Unit;
        }
        match ctx {
            BlockCtx::Unit => {
                let v = self.expr_stmt(e);
                let _ = v;
                Value::Unit
            }
            _ => self.expr(e),
        }
    }

    fn assign_result(&mut self, v: Value, span: Span) {
        if let Some(frame) = &self.ret {
            let target = frame.value.clone();
            self.assign_binding(&target, v, span);
        }
    }

    fn stmt(&mut self, s: &syn::Stmt, ctx: BlockCtx) {
        match s {
            syn::Stmt::Local(local) => self.local(local),
            syn::Stmt::Item(item) => {
                self.unsupported(item, "a nested item", "define it outside the function");
            }
            syn::Stmt::Expr(e, _) => {
                let inner_ctx = if ctx == BlockCtx::Value { BlockCtx::Value } else { BlockCtx::Unit };
                let _ = inner_ctx;
                self.expr_stmt(e);
            }
            syn::Stmt::Macro(m) => {
                let e = Expr::Macro(syn::ExprMacro { attrs: m.attrs.clone(), mac: m.mac.clone() });
                self.expr_stmt(&e);
            }
        }
    }

    /// An expression in statement position: control flow lowers its blocks as `Unit`.
    fn expr_stmt(&mut self, e: &Expr) -> Value {
        match e {
            Expr::If(i) => self.if_expr(i, BlockCtx::Unit),
            Expr::Match(m) => self.match_expr(m, BlockCtx::Unit),
            Expr::Block(b) if b.label.is_none() && b.attrs.is_empty() => {
                let block = self.nested(|l| {
                    l.block_in(&b.block.stmts, BlockCtx::Unit, b.span());
                });
                self.out.last_mut().expect("block").extend(block);
                Value::Unit
            }
            Expr::Return(r) => {
                self.return_expr(r);
                Value::Unit
            }
            Expr::Break(b) => {
                self.break_expr(b);
                Value::Unit
            }
            Expr::Continue(c) => {
                self.continue_expr(c);
                Value::Unit
            }
            _ => {
                let v = self.expr(e);
                if let Value::Op(Operand::Var(var)) = &v {
                    // A value computed for nothing: keep it only if it may have an effect.
                    let _ = var;
                }
                v
            }
        }
    }

    // ---------------------------------------------------------------- let

    fn local(&mut self, local: &syn::Local) {
        let span = local.span();
        let Some(init) = &local.init else {
            // `let x;` — a cell assigned later.
            match &local.pat {
                Pat::Ident(p) => {
                    let v = self.vars.add(p.ident.to_string(), Kind::Unknown, Role::Cell, p.ident.span());
                    self.emit(Stmt::Cell { var: v, init: None });
                    self.bind(&p.ident, Binding::Cell(v));
                }
                Pat::Type(pt) => {
                    if let Pat::Ident(p) = &*pt.pat {
                        let kind = kind_of_type(&pt.ty, &self.sig.float_params);
                        let v = self.vars.add(p.ident.to_string(), kind, Role::Cell, p.ident.span());
                        self.emit(Stmt::Cell { var: v, init: default_value(kind) });
                        self.bind(&p.ident, Binding::Cell(v));
                    } else {
                        self.unsupported(&local.pat, "this pattern", "bind a single name");
                    }
                }
                other => {
                    self.unsupported(other, "this pattern", "bind a single name");
                }
            }
            return;
        };
        if let Some((_, diverge)) = &init.diverge {
            self.unsupported(diverge, "`let … else`", "use `if`/`match` on an integer");
            return;
        }
        let (pat, ty) = match &local.pat {
            Pat::Type(pt) => (&*pt.pat, Some(&*pt.ty)),
            p => (p, None),
        };
        // Buffers start from a constructor.
        if let Pat::Ident(p) = pat {
            if let Some(buf) = self.buffer_constructor(&init.expr, &p.ident) {
                self.bind(&p.ident, Binding::Buffer(buf));
                return;
            }
        }
        // A tuple pattern over a call destructures the call's result.
        if let Pat::Tuple(t) = pat {
            if is_call_like(&init.expr) {
                let names: Vec<Option<Ident>> = t
                    .elems
                    .iter()
                    .map(|p| match p {
                        Pat::Ident(pi) => Some(pi.ident.clone()),
                        _ => None,
                    })
                    .collect();
                if t.elems.iter().all(|p| matches!(p, Pat::Ident(_) | Pat::Wild(_))) {
                    if let Some(vars) = self.call_with_tuple_result(&init.expr, &names) {
                        for (p, v) in t.elems.iter().zip(vars) {
                            if let Pat::Ident(pi) = p {
                                let b = self.maybe_cell(pi, Operand::Var(v), span);
                                self.bind(&pi.ident, b);
                            }
                        }
                        return;
                    }
                }
            }
        }
        let mut value = self.expr(&init.expr);
        if let (Some(ty), Value::Op(Operand::Const(c))) = (ty, &value) {
            // `let c: f32 = 2.0;` keeps the literal's type.
            if let syn::Type::Path(tp) = ty {
                if let Some(id) = tp.path.get_ident() {
                    if sig::is_float_name(&id.to_string()) || sig::is_int_name(&id.to_string()) {
                        let toks = &c.tokens;
                        let suffixed: TokenStream = format!("{}{}", toks, id).parse().unwrap_or_else(|_| toks.clone());
                        let kind = kind_of_type(ty, &self.sig.float_params);
                        if toks.to_string().chars().all(|ch| ch.is_ascii_digit() || ch == '.' || ch == '_') {
                            value = Value::Op(Operand::Const(Const { tokens: suffixed, kind, scalar_ty: None }));
                        }
                    }
                }
            }
        }
        self.bind_let(pat, value, ty, span);
    }

    /// A cell for a `let mut` that is assigned inside control flow, a plain value otherwise.
    fn maybe_cell(&mut self, p: &syn::PatIdent, value: Operand, _span: Span) -> Binding {
        if p.mutability.is_some() && self.cell_names.contains(&p.ident.to_string()) {
            let kind = self.kind_of(&value);
            let v = self.vars.add(p.ident.to_string(), kind, Role::Cell, p.ident.span());
            if let Operand::Var(src) = &value {
                self.vars.info_mut(v).scalar_ty = self.vars.info(*src).scalar_ty.clone();
            }
            self.emit(Stmt::Cell { var: v, init: Some(value) });
            Binding::Cell(v)
        } else {
            if let Operand::Var(v) = &value {
                // Name the temporary after the user's binding when it is fresh.
                let info = self.vars.info_mut(*v);
                if info.role == Role::Temp && !info.name.starts_with(char::is_alphabetic)
                    || is_generated_name(&info.name)
                {
                    info.name = p.ident.to_string();
                    info.span = p.ident.span();
                }
            }
            Binding::Value(value)
        }
    }

    fn bind_let(&mut self, pat: &Pat, value: Value, ty: Option<&syn::Type>, span: Span) {
        match (pat, value) {
            (Pat::Wild(_), _) => {}
            (Pat::Ident(p), Value::Poison) => self.bind(&p.ident, Binding::Poison),
            (Pat::Tuple(t), Value::Poison) => {
                for p in &t.elems {
                    self.bind_let(p, Value::Poison, None, span);
                }
            }
            (Pat::Ident(p), Value::Op(o)) => {
                let o = match (ty, &o) {
                    (Some(t), Operand::Var(v)) if self.vars.kind(*v) == Kind::Unknown => {
                        let k = kind_of_type(t, &self.sig.float_params);
                        if k != Kind::Unknown && self.vars.role(*v) == Role::Temp {
                            self.vars.info_mut(*v).kind = k;
                        }
                        o
                    }
                    _ => o,
                };
                let b = self.maybe_cell(p, o, span);
                self.bind(&p.ident, b);
            }
            (Pat::Ident(p), Value::Buffer(b)) => self.bind(&p.ident, Binding::Buffer(b)),
            (Pat::Ident(p), Value::Tuple(items)) => {
                let b = self.tuple_binding(items, p.mutability.is_some(), &p.ident, span);
                self.bind(&p.ident, b);
            }
            (Pat::Tuple(t), Value::Tuple(items)) if t.elems.len() == items.len() => {
                for (p, v) in t.elems.iter().zip(items) {
                    self.bind_let(p, v, None, span);
                }
            }
            (Pat::Ident(p), Value::Unit) => {
                self.bind(&p.ident, Binding::Tuple(Vec::new()));
            }
            (Pat::Ident(_), Value::Slice { .. }) => {
                self.cx.error_at(span, "a sub-slice can only be passed directly to a call: write `g(&x[a..b])`");
            }
            (Pat::Type(pt), v) => self.bind_let(&pt.pat, v, Some(&pt.ty), span),
            (other, _) => {
                self.unsupported(other, "this pattern", "bind a name or a tuple of names");
            }
        }
    }

    fn tuple_binding(&mut self, items: Vec<Value>, mutable: bool, ident: &Ident, span: Span) -> Binding {
        Binding::Tuple(
            items
                .into_iter()
                .enumerate()
                .map(|(i, v)| match v {
                    Value::Op(o) => {
                        if mutable && self.cell_names.contains(&ident.to_string()) {
                            let kind = self.kind_of(&o);
                            let c = self.vars.add(format!("{ident}_{i}"), kind, Role::Cell, span);
                            self.emit(Stmt::Cell { var: c, init: Some(o) });
                            Binding::Cell(c)
                        } else {
                            Binding::Value(o)
                        }
                    }
                    Value::Buffer(b) => Binding::Buffer(b),
                    Value::Tuple(inner) => self.tuple_binding(inner, mutable, ident, span),
                    _ => Binding::Tuple(Vec::new()),
                })
                .collect(),
        )
    }

    /// `vec![…]`, `[…]`, `Vec::new()`, `Vec::with_capacity(n)`, `x.to_vec()`: a new buffer.
    fn buffer_constructor(&mut self, e: &Expr, name: &Ident) -> Option<Var> {
        let span = e.span();
        let init = match e {
            Expr::Macro(m) if m.mac.path.is_ident("vec") => match parse_vec_macro(&m.mac) {
                Ok(VecMacro::Repeat(v, n)) => {
                    let value = self.operand(&v);
                    let len = self.operand(&n);
                    BufferInit::Repeat { value, len }
                }
                Ok(VecMacro::List(items)) => {
                    let items = items.iter().map(|i| self.operand(i)).collect();
                    BufferInit::List { items, array: false }
                }
                Err(err) => {
                    self.cx.syn_error(err);
                    return None;
                }
            },
            Expr::Repeat(r) => {
                let value = self.operand(&r.expr);
                BufferInit::Array { value, len: r.len.to_token_stream() }
            }
            Expr::Array(a) => {
                let items = a.elems.iter().map(|i| self.operand(i)).collect();
                BufferInit::List { items, array: true }
            }
            Expr::Call(c) => {
                let Expr::Path(p) = &*c.func else { return None };
                let segs: Vec<String> = p.path.segments.iter().map(|s| s.ident.to_string()).collect();
                let is_vec = segs.len() >= 2 && segs[segs.len() - 2] == "Vec";
                match (is_vec, segs.last().map(String::as_str)) {
                    (true, Some("new")) if c.args.is_empty() => BufferInit::Empty { capacity: None },
                    (true, Some("with_capacity")) if c.args.len() == 1 => {
                        let n = self.operand(&c.args[0]);
                        BufferInit::Empty { capacity: Some(n) }
                    }
                    _ => return None,
                }
            }
            Expr::MethodCall(m) if (m.method == "to_vec" || m.method == "clone") && m.args.is_empty() => {
                let src = self.buffer_of(&m.receiver)?;
                return Some(self.copy_buffer(src, name, span));
            }
            _ => return None,
        };
        let elem = match &init {
            BufferInit::Repeat { value, .. } | BufferInit::Array { value, .. } => self.kind_of(value),
            BufferInit::List { items, .. } => items.first().map(|i| self.kind_of(i)).unwrap_or(Kind::Float),
            _ => Kind::Float,
        };
        let elem = match elem {
            Kind::Int | Kind::Bool => Elem::Int,
            Kind::Unknown => Elem::Unknown,
            _ => Elem::Float,
        };
        let v = self.vars.add(name.to_string(), Kind::Buffer(elem), Role::Buffer, name.span());
        self.emit(Stmt::Buffer { var: v, init });
        Some(v)
    }

    /// `let v = x.to_vec();` as an explicit loop of pushes (each element keeps its
    /// derivative without a dedicated rule).
    fn copy_buffer(&mut self, src: Var, name: &Ident, span: Span) -> Var {
        let len = self.temp("len", Kind::Int, Rvalue::Len(src), span);
        let kind = self.vars.kind(src);
        let v = self.vars.add(name.to_string(), kind, Role::Buffer, name.span());
        self.emit(Stmt::Buffer { var: v, init: BufferInit::Empty { capacity: Some(len.clone()) } });
        let i = self.vars.add("i", Kind::Int, Role::Index, span);
        let body = self.nested(|l| {
            let x = l.temp("elem", kind.element(), Rvalue::Index { buf: src, index: Operand::Var(i) }, span);
            l.emit(Stmt::Push { buf: v, value: x });
        });
        self.emit(Stmt::For {
            var: i,
            range: Range { lo: const_int(0), hi: len, inclusive: false, adapters: Vec::new() },
            body,
        });
        v
    }

    fn buffer_of(&mut self, e: &Expr) -> Option<Var> {
        match e {
            Expr::Path(p) => match p.path.get_ident().and_then(|i| self.lookup(&i.to_string())) {
                Some(Binding::Buffer(b)) => Some(*b),
                _ => None,
            },
            Expr::Reference(r) if r.mutability.is_none() => self.buffer_of(&r.expr),
            Expr::Paren(p) => self.buffer_of(&p.expr),
            Expr::MethodCall(m) if m.args.is_empty() && (m.method == "iter" || m.method == "as_slice") => {
                self.buffer_of(&m.receiver)
            }
            _ => None,
        }
    }

    // ---------------------------------------------------------------- expressions

    fn operand(&mut self, e: &Expr) -> Operand {
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

    fn expr(&mut self, e: &Expr) -> Value {
        let span = e.span();
        match e {
            Expr::Lit(l) => Value::Op(Operand::Const(literal(&l.lit))),
            Expr::Path(p) => self.path_expr(p),
            Expr::Paren(p) => self.expr(&p.expr),
            Expr::Group(g) => self.expr(&g.expr),
            Expr::Binary(b) => self.binary(b),
            Expr::Unary(u) => match u.op {
                syn::UnOp::Neg(_) => {
                    let a = self.operand(&u.expr);
                    if let Operand::Const(c) = &a {
                        let toks = &c.tokens;
                        return Value::Op(Operand::Const(Const {
                            tokens: quote_spanned!(span=> (-#toks)),
                            kind: c.kind,
                            scalar_ty: None,
                        }));
                    }
                    let kind = self.kind_of(&a);
                    Value::Op(self.temp("neg", kind, Rvalue::Unary(UnOp::Neg, a), span))
                }
                syn::UnOp::Not(_) => {
                    let a = self.operand(&u.expr);
                    let kind = self.kind_of(&a);
                    Value::Op(self.temp("not", kind, Rvalue::Unary(UnOp::Not, a), span))
                }
                syn::UnOp::Deref(_) => self.expr(&u.expr),
                _ => self.unsupported(u, "this unary operator", "use `-`, `!` or `*`"),
            },
            Expr::Reference(r) => {
                if r.mutability.is_some() {
                    return self.unsupported(
                        r,
                        "a `&mut` borrow",
                        "assign the result instead of mutating through a reference",
                    );
                }
                if let Expr::Index(ix) = &*r.expr {
                    if let Expr::Range(range) = &*ix.index {
                        return self.sub_slice(&ix.expr, range);
                    }
                }
                self.expr(&r.expr)
            }
            Expr::MethodCall(m) => self.method_call(m),
            Expr::Call(c) => self.call(c, None).map(|v| Value::Op(Operand::Var(v))).unwrap_or(Value::Poison),
            Expr::Index(ix) => {
                if let Expr::Range(_) = &*ix.index {
                    return self.unsupported(
                        ix,
                        "a sub-slice outside a call argument",
                        "pass it directly: `g(&x[a..b])`",
                    );
                }
                let Some(buf) = self.buffer_of(&ix.expr) else {
                    self.cx.error_spanned_by(
                        &ix.expr,
                        "indexing is supported on slices, vectors and arrays bound to a name (`x[i]`)",
                    );
                    return Value::Poison;
                };
                let index = self.operand(&ix.index);
                let kind = self.vars.kind(buf).element();
                let name = format!("{}_i", self.vars.info(buf).name);
                Value::Op(self.temp(&name, kind, Rvalue::Index { buf, index }, span))
            }
            Expr::Field(f) => {
                let base = self.expr(&f.base);
                match (base, &f.member) {
                    (Value::Tuple(items), syn::Member::Unnamed(idx)) => {
                        items.get(idx.index as usize).cloned().unwrap_or_else(|| {
                            self.cx.error_spanned_by(f, "no such tuple field");
                            Value::Poison
                        })
                    }
                    (Value::Op(o), member) => {
                        Value::Op(self.temp("field", Kind::Unknown, Rvalue::Field(o, member.clone()), span))
                    }
                    _ => self.unsupported(f, "this field access", "bind the value to a name first"),
                }
            }
            Expr::Cast(c) => {
                let a = self.operand(&c.expr);
                let kind = kind_of_type(&c.ty, &self.sig.float_params);
                Value::Op(self.temp("cast", kind, Rvalue::Cast(a, (*c.ty).clone()), span))
            }
            Expr::Tuple(t) => {
                if t.elems.is_empty() {
                    return Value::Unit;
                }
                Value::Tuple(t.elems.iter().map(|e| self.expr(e)).collect())
            }
            Expr::Array(_) | Expr::Repeat(_) => {
                let name = Ident::new("array", span);
                match self.buffer_constructor(e, &name) {
                    Some(b) => Value::Buffer(b),
                    None => Value::Unit,
                }
            }
            Expr::Block(b) => {
                if b.label.is_some() {
                    return self.unsupported(b, "a labeled block", "remove the label");
                }
                if let Some(u) = b.attrs.first() {
                    return self.unsupported(u, "an attribute on a block", "remove it");
                }
                let mut v = Value::Unit;
                let block = self.nested(|l| v = l.block_in(&b.block.stmts, BlockCtx::Value, b.span()));
                self.out.last_mut().expect("block").extend(block);
                v
            }
            Expr::If(i) => self.if_expr(i, BlockCtx::Value),
            Expr::Match(m) => self.match_expr(m, BlockCtx::Value),
            Expr::ForLoop(f) => {
                self.for_loop(f);
                Value::Unit
            }
            Expr::While(w) => {
                self.while_loop(w);
                Value::Unit
            }
            Expr::Loop(lp) => self.loop_expr(lp),
            Expr::Assign(a) => {
                self.assign(&a.left, None, &a.right, span);
                Value::Unit
            }
            Expr::Macro(m) => self.macro_expr(m),
            Expr::Return(r) => {
                self.cx.error_spanned_by(r, "`return` inside an expression is not supported; use it as a statement");
                Value::Poison
            }
            Expr::Break(b) => {
                self.cx.error_spanned_by(b, "`break` inside an expression is not supported; use it as a statement");
                Value::Poison
            }
            Expr::Continue(c) => {
                self.cx.error_spanned_by(c, "`continue` inside an expression is not supported; use it as a statement");
                Value::Poison
            }
            Expr::Closure(c) => {
                self.unsupported(c, "a closure", "write a separate `#[differentiable]` function and call it")
            }
            Expr::Async(a) => self.unsupported(a, "an `async` block", "compute the value synchronously"),
            Expr::Await(a) => self.unsupported(a, "`.await`", "compute the value synchronously"),
            Expr::Unsafe(u) => self.unsupported(
                u,
                "an `unsafe` block",
                "move the unsafe code into a function outside the differentiated code",
            ),
            Expr::Try(t) => {
                self.unsupported(t, "the `?` operator", "handle the error outside the differentiable function")
            }
            Expr::TryBlock(t) => self.unsupported(t, "a `try` block", "handle errors outside"),
            Expr::Let(l) => {
                self.unsupported(l, "`let` in a condition (`if let`/`while let`)", "compare integers with `==` instead")
            }
            Expr::Range(r) => {
                self.unsupported(r, "a range outside a `for` loop or a slice argument", "use it in `for i in a..b`")
            }
            Expr::Struct(s) => {
                self.unsupported(s, "a struct literal", "build the struct outside and pass it as an argument")
            }
            Expr::Yield(y) => self.unsupported(y, "`yield`", "remove it"),
            Expr::Const(c) => self.unsupported(c, "a `const` block", "use a `const` item"),
            Expr::RawAddr(r) => self.unsupported(r, "a raw pointer", "pass slices or values instead of raw pointers"),
            Expr::Infer(i) => self.unsupported(i, "`_` as an expression", "write a value"),
            other => {
                self.unsupported(other, "this expression", "rewrite it with the supported subset (see the README)")
            }
        }
    }

    fn path_expr(&mut self, p: &syn::ExprPath) -> Value {
        if let Some(id) = p.path.get_ident() {
            if let Some(b) = self.lookup(&id.to_string()).cloned() {
                return self.read_binding(&b, id.span());
            }
        }
        // A constant (`PI`, `f64::EPSILON`, a `const` item).
        let segs: Vec<String> = p.path.segments.iter().map(|s| s.ident.to_string()).collect();
        let float_param = segs.len() == 2 && self.sig.float_params.iter().any(|f| *f == segs[0]);
        let kind = if float_param || segs.iter().any(|s| s == "f64" || s == "f32" || s == "consts") {
            Kind::Float
        } else {
            Kind::Unknown
        };
        let scalar_ty = if float_param { Some(p.path.segments[0].ident.clone()) } else { None };
        Value::Op(Operand::Const(Const { tokens: p.to_token_stream(), kind, scalar_ty }))
    }

    fn read_binding(&mut self, b: &Binding, span: Span) -> Value {
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

    fn assign_binding(&mut self, target: &Binding, v: Value, span: Span) {
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

    fn refine_kind(&mut self, cell: Var, o: &Operand) {
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

    fn binary(&mut self, b: &syn::ExprBinary) -> Value {
        let span = b.span();
        if let Some(op) = compound_op(&b.op) {
            self.assign(&b.left, Some(op), &b.right, span);
            return Value::Unit;
        }
        match b.op {
            syn::BinOp::And(_) | syn::BinOp::Or(_) => return self.short_circuit(b),
            _ => {}
        }
        let op = match b.op {
            syn::BinOp::Add(_) => BinOp::Add,
            syn::BinOp::Sub(_) => BinOp::Sub,
            syn::BinOp::Mul(_) => BinOp::Mul,
            syn::BinOp::Div(_) => BinOp::Div,
            syn::BinOp::Rem(_) => BinOp::Rem,
            syn::BinOp::Eq(_) => BinOp::Eq,
            syn::BinOp::Ne(_) => BinOp::Ne,
            syn::BinOp::Lt(_) => BinOp::Lt,
            syn::BinOp::Le(_) => BinOp::Le,
            syn::BinOp::Gt(_) => BinOp::Gt,
            syn::BinOp::Ge(_) => BinOp::Ge,
            syn::BinOp::BitAnd(_) => BinOp::BitAnd,
            syn::BinOp::BitOr(_) => BinOp::BitOr,
            syn::BinOp::BitXor(_) => BinOp::BitXor,
            syn::BinOp::Shl(_) => BinOp::Shl,
            syn::BinOp::Shr(_) => BinOp::Shr,
            _ => return self.unsupported(b.op, "this operator", "use arithmetic or comparison operators"),
        };
        let l = self.operand(&b.left);
        let r = self.operand(&b.right);
        let kind = if op.is_comparison() { Kind::Bool } else { combine_kinds(self.kind_of(&l), self.kind_of(&r)) };
        let name = match op {
            BinOp::Add => "sum",
            BinOp::Sub => "diff",
            BinOp::Mul => "prod",
            BinOp::Div => "quot",
            BinOp::Rem => "rem",
            _ if op.is_comparison() => "cmp",
            _ => "bits",
        };
        Value::Op(self.temp(name, kind, Rvalue::Binary(op, l, r), span))
    }

    /// `a && b` / `a || b`: `b` is evaluated only when needed.
    fn short_circuit(&mut self, b: &syn::ExprBinary) -> Value {
        let span = b.span();
        let is_and = matches!(b.op, syn::BinOp::And(_));
        let l = self.operand(&b.left);
        if !has_effects(&b.right) {
            let r = self.operand(&b.right);
            let op = if is_and { BinOp::BitAnd } else { BinOp::BitOr };
            return Value::Op(self.temp("cond", Kind::Bool, Rvalue::Binary(op, l, r), span));
        }
        let cell = self.vars.add("cond", Kind::Bool, Role::Cell, span);
        self.emit(Stmt::Cell { var: cell, init: Some(l.clone()) });
        let rhs = self.nested(|lw| {
            let r = lw.operand(&b.right);
            lw.emit(Stmt::Assign { var: cell, value: r });
        });
        let (then_, else_) = if is_and { (rhs, Vec::new()) } else { (Vec::new(), rhs) };
        self.emit(Stmt::If { cond: l, then_, else_ });
        Value::Op(self.temp("cond", Kind::Bool, Rvalue::Use(Operand::Var(cell)), span))
    }

    /// `place = value` or `place op= value`.
    fn assign(&mut self, left: &Expr, op: Option<BinOp>, right: &Expr, span: Span) {
        match left {
            Expr::Paren(p) => self.assign(&p.expr, op, right, span),
            Expr::Path(p) if p.path.get_ident().is_some() => {
                let id = p.path.get_ident().expect("ident");
                let name = id.to_string();
                let Some(binding) = self.lookup(&name).cloned() else {
                    self.cx.error_spanned_by(
                        p,
                        format!("cannot assign to `{name}`: only local variables can be assigned"),
                    );
                    return;
                };
                let rhs = self.expr(right);
                let value = match op {
                    None => rhs,
                    Some(op) => {
                        let cur = self.read_binding(&binding, id.span());
                        match (cur, rhs) {
                            (Value::Op(a), Value::Op(b)) => {
                                let kind = combine_kinds(self.kind_of(&a), self.kind_of(&b));
                                Value::Op(self.temp(&name, kind, Rvalue::Binary(op, a, b), span))
                            }
                            _ => {
                                self.cx
                                    .error_spanned_by(left, "compound assignment needs a single value on both sides");
                                return;
                            }
                        }
                    }
                };
                match &binding {
                    Binding::Poison => {}
                    Binding::Cell(_) | Binding::Tuple(_)
                        if matches!(binding, Binding::Cell(_)) || contains_cell(&binding) =>
                    {
                        self.assign_binding(&binding, value, span)
                    }
                    Binding::Value(_) | Binding::Tuple(_) => {
                        // Straight-line reassignment: the name now denotes the new value.
                        let nb = match value {
                            Value::Op(o) => {
                                if let Operand::Var(v) = &o {
                                    let info = self.vars.info_mut(*v);
                                    if info.role == Role::Temp && is_generated_name(&info.name) {
                                        info.name = name.clone();
                                    }
                                }
                                Binding::Value(o)
                            }
                            Value::Tuple(items) => self.tuple_binding(items, false, id, span),
                            Value::Buffer(b) => Binding::Buffer(b),
                            _ => {
                                self.cx.error_spanned_by(right, "this value cannot be assigned here");
                                return;
                            }
                        };
                        self.rebind(&name, nb);
                    }
                    Binding::Buffer(_) => {
                        self.cx.error_spanned_by(
                            left,
                            "reassigning a whole buffer is not supported; write its elements (`v[i] = …`) or use a new name",
                        );
                    }
                    Binding::Cell(_) => unreachable!("handled above"),
                }
            }
            Expr::Index(ix) => {
                let Some(buf) = self.buffer_of(&ix.expr) else {
                    self.cx.error_spanned_by(&ix.expr, "only elements of local buffers (`v[i] = …`) can be assigned");
                    return;
                };
                if self.vars.role(buf) == Role::Param {
                    self.cx.error_spanned_by(
                        &ix.expr,
                        "an argument cannot be modified; copy it into a local buffer first (`let mut v = x.to_vec();`)",
                    );
                    return;
                }
                let index = self.operand(&ix.index);
                let rhs = self.operand(right);
                let value = match op {
                    None => rhs,
                    Some(op) => {
                        let kind = self.vars.kind(buf).element();
                        let old = self.temp("old", kind, Rvalue::Index { buf, index: index.clone() }, span);
                        self.temp(
                            "updated",
                            combine_kinds(kind, self.kind_of(&rhs)),
                            Rvalue::Binary(op, old, rhs),
                            span,
                        )
                    }
                };
                self.emit(Stmt::Store { buf, index, value });
            }
            other => {
                self.unsupported(other, "assignment to this place", "assign to a local variable or a buffer element");
            }
        }
    }

    fn sub_slice(&mut self, base: &Expr, range: &syn::ExprRange) -> Value {
        let Some(buf) = self.buffer_of(base) else {
            self.cx.error_spanned_by(base, "sub-slices are supported on slices, vectors and arrays bound to a name");
            return Value::Poison;
        };
        let lo = range.start.as_ref().map(|e| self.operand(e));
        let hi = range.end.as_ref().map(|e| self.operand(e));
        let inclusive = matches!(range.limits, syn::RangeLimits::Closed(_));
        Value::Slice { buf, lo, hi, inclusive }
    }

    // ---------------------------------------------------------------- calls

    fn method_call(&mut self, m: &syn::ExprMethodCall) -> Value {
        let span = m.span();
        let name = m.method.to_string();
        // Methods of buffers.
        if let Some(buf) = self.buffer_of(&m.receiver) {
            if !matches!(&*m.receiver, Expr::MethodCall(_)) || name == "sum" || name == "product" {
                match name.as_str() {
                    "len" if m.args.is_empty() => {
                        return Value::Op(self.temp("len", Kind::Int, Rvalue::Len(buf), span))
                    }
                    "push" if m.args.len() == 1 => {
                        if self.vars.role(buf) == Role::Param {
                            self.cx.error_spanned_by(
                                &m.receiver,
                                "an argument cannot be modified; copy it into a local buffer first",
                            );
                            return Value::Poison;
                        }
                        let v = self.operand(&m.args[0]);
                        self.emit(Stmt::Push { buf, value: v });
                        return Value::Unit;
                    }
                    "sum" | "product" if m.args.is_empty() => return self.fold_buffer(buf, name == "sum", span),
                    "is_empty" if m.args.is_empty() => {
                        let len = self.temp("len", Kind::Int, Rvalue::Len(buf), span);
                        return Value::Op(self.temp(
                            "empty",
                            Kind::Bool,
                            Rvalue::Binary(BinOp::Eq, len, const_int(0)),
                            span,
                        ));
                    }
                    _ => {}
                }
            }
            if name == "to_vec" || name == "clone" {
                let id = Ident::new("copy", span);
                return Value::Buffer(self.copy_buffer(buf, &id, span));
            }
            if name == "iter" || name == "as_slice" {
                return Value::Buffer(buf);
            }
            self.cx.error_spanned_by(
                &m.method,
                format!("`.{name}()` on a slice is not supported here; use indexing, `.len()`, `.push()`, `.iter().sum()` or a `for` loop"),
            );
            return Value::Poison;
        }
        if m.turbofish.is_some() {
            self.cx.error_spanned_by(&m.turbofish, "turbofish on a method is not supported here");
        }
        let recv = self.expr(&m.receiver);
        let recv = match recv {
            Value::Op(o) => o,
            Value::Poison => return Value::Poison,
            Value::Tuple(_) | Value::Slice { .. } | Value::Buffer(_) | Value::Unit => {
                self.cx.error_spanned_by(&m.receiver, "this value has no supported methods here");
                return Value::Poison;
            }
        };
        if name == "clone" && m.args.is_empty() {
            return Value::Op(recv);
        }
        let args: Vec<Operand> = m.args.iter().map(|a| self.operand(a)).collect();
        let recv_kind = self.kind_of(&recv);
        let kind = match ops::method(&name) {
            Some(p) => match p.output {
                ops::Output::Bool => Kind::Bool,
                _ => recv_kind,
            },
            None if name == "len" || name.starts_with("count") => Kind::Int,
            None if name.starts_with("is_") => Kind::Bool,
            None if recv_kind == Kind::Int => Kind::Int,
            None => Kind::Unknown,
        };
        Value::Op(self.temp(&name, kind, Rvalue::Method { recv, method: m.method.clone(), args }, span))
    }

    /// `x.iter().sum()` / `.product()` as a loop.
    fn fold_buffer(&mut self, buf: Var, sum: bool, span: Span) -> Value {
        let kind = self.vars.kind(buf).element();
        let acc = self.vars.add(if sum { "total" } else { "product" }, kind, Role::Cell, span);
        self.emit(Stmt::Cell { var: acc, init: Some(Operand::float(if sum { "0.0" } else { "1.0" })) });
        let len = self.temp("len", Kind::Int, Rvalue::Len(buf), span);
        let i = self.vars.add("i", Kind::Int, Role::Index, span);
        let body = self.nested(|l| {
            let x = l.temp("elem", kind, Rvalue::Index { buf, index: Operand::Var(i) }, span);
            let cur = l.temp("acc", kind, Rvalue::Use(Operand::Var(acc)), span);
            let op = if sum { BinOp::Add } else { BinOp::Mul };
            let next = l.temp("acc", kind, Rvalue::Binary(op, cur, x), span);
            l.emit(Stmt::Assign { var: acc, value: next });
        });
        self.emit(Stmt::For {
            var: i,
            range: Range { lo: const_int(0), hi: len, inclusive: false, adapters: Vec::new() },
            body,
        });
        Value::Op(self.temp("folded", kind, Rvalue::Use(Operand::Var(acc)), span))
    }

    /// A call expression. Returns the variable holding its result.
    fn call(&mut self, c: &syn::ExprCall, _hint: Option<usize>) -> Option<Var> {
        let span = c.span();
        let (callee, nested) = self.callee(&c.func)?;
        match callee {
            CalleeKind::FloatMethod(method) => {
                if c.args.is_empty() {
                    self.cx.error_spanned_by(c, "this function needs an argument");
                    return None;
                }
                let recv = self.operand(&c.args[0]);
                let args: Vec<Operand> = c.args.iter().skip(1).map(|a| self.operand(a)).collect();
                let kind = match ops::method(&method.to_string()).map(|p| p.output) {
                    Some(ops::Output::Bool) => Kind::Bool,
                    _ => self.kind_of(&recv),
                };
                let v = self.vars.add(method.to_string(), kind, Role::Temp, span);
                self.emit(Stmt::Let { dst: Tree::Leaf(v), rv: Rvalue::Method { recv, method, args }, span });
                Some(v)
            }
            CalleeKind::Detach => {
                if c.args.len() != 1 {
                    self.cx.error_spanned_by(c, "`detach` takes one argument");
                    return None;
                }
                let a = self.operand(&c.args[0]);
                let kind = self.kind_of(&a);
                let v = self.vars.add("detached", kind, Role::Temp, span);
                self.emit(Stmt::Let {
                    dst: Tree::Leaf(v),
                    rv: Rvalue::Call { callee: Callee::Detach, args: vec![Arg::Value(a)] },
                    span,
                });
                Some(v)
            }
            CalleeKind::Free(path) => {
                if nested {
                    self.nests = true;
                }
                let args: Vec<Arg> = c.args.iter().map(|a| self.arg(a)).collect();
                let name = path.segments.last().map(|s| s.ident.to_string()).unwrap_or_default();
                let name = name.trim_start_matches("__adjoint_").to_string();
                let v = self.vars.add(name, Kind::Unknown, Role::Temp, span);
                self.emit(Stmt::Let {
                    dst: Tree::Leaf(v),
                    rv: Rvalue::Call { callee: Callee::Free { path }, args },
                    span,
                });
                Some(v)
            }
        }
    }

    /// `let (a, b) = g(x);`: a call whose result is destructured.
    fn call_with_tuple_result(&mut self, e: &Expr, names: &[Option<Ident>]) -> Option<Vec<Var>> {
        let Expr::Call(c) = strip_parens(e) else {
            return None;
        };
        let span = c.span();
        let (callee, nested) = self.callee(&c.func)?;
        let CalleeKind::Free(path) = callee else {
            return None;
        };
        if nested {
            self.nests = true;
        }
        let args: Vec<Arg> = c.args.iter().map(|a| self.arg(a)).collect();
        let vars: Vec<Var> = names
            .iter()
            .map(|n| {
                let name = n.as_ref().map(|i| i.to_string()).unwrap_or_else(|| "unused".into());
                self.vars.add(name, Kind::Unknown, Role::Temp, n.as_ref().map(|i| i.span()).unwrap_or(span))
            })
            .collect();
        let dst = Tree::Tuple(vars.iter().map(|v| Tree::Leaf(*v)).collect());
        self.emit(Stmt::Let { dst, rv: Rvalue::Call { callee: Callee::Free { path }, args }, span });
        Some(vars)
    }

    fn callee(&mut self, func: &Expr) -> Option<(CalleeKind, bool)> {
        match strip_parens(func) {
            Expr::Path(p) => {
                if p.qself.is_some() {
                    self.cx.error_spanned_by(p, "qualified paths (`<T as Trait>::f`) are not supported here");
                    return None;
                }
                let segs: Vec<String> = p.path.segments.iter().map(|s| s.ident.to_string()).collect();
                let last = segs.last().cloned().unwrap_or_default();
                if last == "detach" {
                    return Some((CalleeKind::Detach, false));
                }
                if segs.len() >= 2 && sig::is_float_name(&segs[segs.len() - 2]) {
                    let method = p.path.segments.last().expect("segment").ident.clone();
                    return Some((CalleeKind::FloatMethod(method), false));
                }
                if let Some(Binding::Poison) = p.path.get_ident().and_then(|i| self.lookup(&i.to_string())) {
                    return None;
                }
                if p.path.get_ident().is_some_and(|i| self.lookup(&i.to_string()).is_some()) {
                    self.cx.error_spanned_by(p, "calling a local value is not supported; call a function by name");
                    return None;
                }
                Some((CalleeKind::Free(p.path.clone()), false))
            }
            Expr::Macro(m) => {
                let which = m.mac.path.get_ident().map(|i| i.to_string()).unwrap_or_default();
                let entity = match which.as_str() {
                    "grad" => names::GRAD,
                    "value_and_grad" => names::VALUE_AND_GRAD,
                    "vjp" => names::VJP,
                    _ => {
                        self.cx.error_spanned_by(
                            &m.mac.path,
                            "only `grad!`, `value_and_grad!` and `vjp!` can be called here",
                        );
                        return None;
                    }
                };
                let path: syn::Path = match m.mac.parse_body() {
                    Ok(p) => p,
                    Err(_) => {
                        self.cx.error_spanned_by(
                            &m.mac.tokens,
                            format!("`{which}!` takes the path of a `#[differentiable]` function"),
                        );
                        return None;
                    }
                };
                Some((CalleeKind::Free(names::entity_path(&path, entity)), true))
            }
            other => {
                self.cx.error_spanned_by(other, "only functions called by name can be differentiated through");
                None
            }
        }
    }

    fn arg(&mut self, a: &Expr) -> Arg {
        match a {
            Expr::Reference(r) if r.mutability.is_none() => {
                if let Expr::Index(ix) = &*r.expr {
                    if let Expr::Range(range) = &*ix.index {
                        if let Value::Slice { buf, lo, hi, inclusive } = self.sub_slice(&ix.expr, range) {
                            return Arg::Slice { buf, lo, hi, inclusive };
                        }
                        return Arg::Value(Operand::Const(Const {
                            tokens: quote!(()),
                            kind: Kind::Unknown,
                            scalar_ty: None,
                        }));
                    }
                }
                match self.expr(&r.expr) {
                    Value::Buffer(b) => Arg::Buffer { buf: b, borrowed: true },
                    Value::Op(o) => Arg::Ref(o),
                    Value::Tuple(items) => Arg::Tuple(items.into_iter().map(value_arg).collect()),
                    Value::Slice { buf, lo, hi, inclusive } => Arg::Slice { buf, lo, hi, inclusive },
                    Value::Unit | Value::Poison => {
                        Arg::Value(Operand::Const(Const { tokens: quote!(()), kind: Kind::Unknown, scalar_ty: None }))
                    }
                }
            }
            Expr::Reference(r) => {
                self.cx.error_spanned_by(r, "`&mut` arguments are not supported; return the result instead");
                Arg::Value(Operand::Const(Const { tokens: quote!(()), kind: Kind::Unknown, scalar_ty: None }))
            }
            _ => value_arg(self.expr(a)),
        }
    }

    fn macro_expr(&mut self, m: &syn::ExprMacro) -> Value {
        let name = m.mac.path.get_ident().map(|i| i.to_string()).unwrap_or_default();
        match name.as_str() {
            "vec" => {
                let id = Ident::new("values", m.span());
                match self.buffer_constructor(&Expr::Macro(m.clone()), &id) {
                    Some(b) => Value::Buffer(b),
                    None => Value::Unit,
                }
            }
            "grad" | "vjp" | "value_and_grad" => {
                self.cx.error_spanned_by(m, format!("`{name}!(f)` must be called: `{name}!(f)(args…)`"));
                Value::Poison
            }
            _ => self.unsupported(
                &m.mac.path,
                &format!("the macro `{name}!`"),
                "only `vec!`, `grad!`, `value_and_grad!` and `vjp!` are understood",
            ),
        }
    }

    // ---------------------------------------------------------------- branches

    fn if_expr(&mut self, i: &syn::ExprIf, ctx: BlockCtx) -> Value {
        let span = i.span();
        if let Expr::Let(l) = &*i.cond {
            return self.unsupported(l, "`if let`", "compare integers with `==` instead");
        }
        let cond = self.operand(&i.cond);
        let branch_ctx = ctx;
        let mut then_value = Value::Unit;
        let mut then_ =
            self.nested(|l| then_value = l.block_in(&i.then_branch.stmts, branch_ctx, i.then_branch.span()));
        let mut else_value = Value::Unit;
        let mut else_ = match &i.else_branch {
            None => Vec::new(),
            Some((_, e)) => self.nested(|l| {
                else_value = match &**e {
                    Expr::Block(b) => l.block_in(&b.block.stmts, branch_ctx, b.span()),
                    Expr::If(inner) => l.if_expr(inner, branch_ctx),
                    other => l.expr(other),
                };
            }),
        };
        if ctx == BlockCtx::Value && !matches!(then_value, Value::Unit) {
            // The branches produce a value: route it through cells.
            let result = self.value_cells(&then_value, span);
            self.out.push(std::mem::take(&mut then_));
            self.assign_binding(&result, then_value, span);
            then_ = self.out.pop().expect("then");
            self.out.push(std::mem::take(&mut else_));
            self.assign_binding(&result, else_value, span);
            else_ = self.out.pop().expect("else");
            self.emit(Stmt::If { cond, then_, else_ });
            return self.read_binding(&result, span);
        }
        self.emit(Stmt::If { cond, then_, else_ });
        Value::Unit
    }

    /// Fresh cells shaped like a value (for the result of an `if`/`match`).
    fn value_cells(&mut self, v: &Value, span: Span) -> Binding {
        match v {
            Value::Tuple(items) => Binding::Tuple(items.iter().map(|i| self.value_cells(i, span)).collect()),
            Value::Op(o) => {
                let kind = self.kind_of(o);
                let c = self.vars.add("branch_value", kind, Role::Cell, span);
                self.vars.info_mut(c).scalar_ty = match o {
                    Operand::Var(v) => self.vars.info(*v).scalar_ty.clone(),
                    Operand::Const(k) => k.scalar_ty.clone(),
                };
                self.emit(Stmt::Cell { var: c, init: None });
                Binding::Cell(c)
            }
            _ => {
                self.cx.error_at(span, "a branch can only produce values and tuples of values");
                Binding::Tuple(Vec::new())
            }
        }
    }

    fn match_expr(&mut self, m: &syn::ExprMatch, ctx: BlockCtx) -> Value {
        let span = m.span();
        let scrutinee = self.operand(&m.expr);
        if self.kind_of(&scrutinee).differentiable() && self.kind_of(&scrutinee) != Kind::Unknown {
            self.cx
                .error_spanned_by(&m.expr, "`match` is supported on integers and booleans; compare floats with `if`");
            return Value::Poison;
        }
        let mut result: Option<Binding> = None;
        let value = self.match_arms(&m.arms, &scrutinee, ctx, &mut result, span);
        let _ = value;
        match result {
            Some(r) => self.read_binding(&r, span),
            None => Value::Unit,
        }
    }

    fn match_arms(
        &mut self,
        arms: &[syn::Arm],
        s: &Operand,
        ctx: BlockCtx,
        result: &mut Option<Binding>,
        span: Span,
    ) -> Value {
        let Some((arm, rest)) = arms.split_first() else {
            return Value::Unit;
        };
        let last = rest.is_empty();
        // The last arm of an exhaustive match needs no test.
        let test = if last && arm.guard.is_none() { None } else { Some(self.arm_test(arm, s)) };
        let mut arm_value = Value::Unit;
        let mut then_ = self.nested(|l| {
            l.bind_arm_pattern(&arm.pat, s);
            arm_value = match &*arm.body {
                Expr::Block(b) if b.label.is_none() => l.block_in(&b.block.stmts, ctx, b.span()),
                e => {
                    if ctx == BlockCtx::FnBody {
                        l.tail(e, ctx)
                    } else if ctx == BlockCtx::Unit {
                        l.expr_stmt(e);
                        Value::Unit
                    } else {
                        l.expr(e)
                    }
                }
            };
        });
        if ctx == BlockCtx::Value && !matches!(arm_value, Value::Unit) {
            if result.is_none() {
                *result = Some(self.value_cells(&arm_value, span));
            }
            let r = result.clone().expect("result cells");
            self.out.push(std::mem::take(&mut then_));
            self.assign_binding(&r, arm_value, span);
            then_ = self.out.pop().expect("arm");
        }
        match test {
            None => {
                self.out.last_mut().expect("block").extend(then_);
            }
            Some(cond) => {
                let else_ = self.nested(|l| {
                    l.match_arms(rest, s, ctx, result, span);
                });
                self.emit(Stmt::If { cond, then_, else_ });
            }
        }
        Value::Unit
    }

    fn bind_arm_pattern(&mut self, pat: &Pat, s: &Operand) {
        match pat {
            Pat::Ident(p) => {
                if let Some((_, sub)) = &p.subpat {
                    self.bind_arm_pattern(sub, s);
                }
                self.bind(&p.ident, Binding::Value(s.clone()));
            }
            Pat::Or(o) => {
                if let Some(first) = o.cases.first() {
                    self.bind_arm_pattern(first, s);
                }
            }
            _ => {}
        }
    }

    /// A boolean that is true when the arm matches (its guard included).
    fn arm_test(&mut self, arm: &syn::Arm, s: &Operand) -> Operand {
        let span = arm.pat.span();
        let pat_test = self.pattern_test(&arm.pat, s);
        let Some((_, guard)) = &arm.guard else {
            return pat_test;
        };
        // Evaluate the guard only when the pattern matched.
        let cell = self.vars.add("arm_matches", Kind::Bool, Role::Cell, span);
        self.emit(Stmt::Cell { var: cell, init: Some(const_bool(false)) });
        let then_ = self.nested(|l| {
            l.bind_arm_pattern(&arm.pat, s);
            let g = l.operand(guard);
            l.emit(Stmt::Assign { var: cell, value: g });
        });
        self.emit(Stmt::If { cond: pat_test, then_, else_: Vec::new() });
        self.temp("arm_matches", Kind::Bool, Rvalue::Use(Operand::Var(cell)), span)
    }

    fn pattern_test(&mut self, pat: &Pat, s: &Operand) -> Operand {
        let span = pat.span();
        match pat {
            Pat::Wild(_) => const_bool(true),
            Pat::Ident(p) => match &p.subpat {
                Some((_, sub)) => self.pattern_test(sub, s),
                None => const_bool(true),
            },
            Pat::Lit(l) => {
                let c = Operand::Const(literal(&l.lit));
                self.temp("is", Kind::Bool, Rvalue::Binary(BinOp::Eq, s.clone(), c), span)
            }
            Pat::Range(r) => {
                let mut acc: Option<Operand> = None;
                if let Some(lo) = &r.start {
                    let lo = self.operand(lo);
                    acc = Some(self.temp("in_range", Kind::Bool, Rvalue::Binary(BinOp::Ge, s.clone(), lo), span));
                }
                if let Some(hi) = &r.end {
                    let hi = self.operand(hi);
                    let op = if matches!(r.limits, syn::RangeLimits::Closed(_)) { BinOp::Le } else { BinOp::Lt };
                    let t = self.temp("in_range", Kind::Bool, Rvalue::Binary(op, s.clone(), hi), span);
                    acc = Some(match acc {
                        Some(a) => self.temp("in_range", Kind::Bool, Rvalue::Binary(BinOp::BitAnd, a, t), span),
                        None => t,
                    });
                }
                acc.unwrap_or_else(|| const_bool(true))
            }
            Pat::Or(o) => {
                let mut acc: Option<Operand> = None;
                for case in &o.cases {
                    let t = self.pattern_test(case, s);
                    acc = Some(match acc {
                        Some(a) => self.temp("is", Kind::Bool, Rvalue::Binary(BinOp::BitOr, a, t), span),
                        None => t,
                    });
                }
                acc.unwrap_or_else(|| const_bool(false))
            }
            Pat::Paren(p) => self.pattern_test(&p.pat, s),
            Pat::Path(p) => {
                // A constant pattern (`N`, `Self::N`).
                let c = Operand::Const(Const { tokens: p.to_token_stream(), kind: Kind::Int, scalar_ty: None });
                self.temp("is", Kind::Bool, Rvalue::Binary(BinOp::Eq, s.clone(), c), span)
            }
            other => {
                self.cx.error_spanned_by(
                    other,
                    "this pattern is not supported; match integers with literals, ranges, `|` and `_`",
                );
                const_bool(false)
            }
        }
    }

    // ---------------------------------------------------------------- loops

    fn loop_frame(&mut self, exits: Exits, span: Span) -> LoopFrame {
        let brk = if exits.brk {
            let v = self.vars.add("broke", Kind::Bool, Role::Cell, span);
            self.emit(Stmt::Cell { var: v, init: Some(const_bool(false)) });
            Some(v)
        } else {
            None
        };
        let cont = if exits.cont {
            let v = self.vars.add("continued", Kind::Bool, Role::Cell, span);
            self.emit(Stmt::Cell { var: v, init: Some(const_bool(false)) });
            Some(v)
        } else {
            None
        };
        LoopFrame { brk, cont, value: None }
    }

    /// The condition for running another iteration: no `break` and no `return` yet.
    fn keep_looping(&mut self, frame_brk: Option<Var>, exits: Exits, span: Span) -> Option<Operand> {
        let mut flags = Vec::new();
        if let (true, Some(frame)) = (exits.ret, &self.ret) {
            flags.push(frame.flag);
        }
        flags.extend(frame_brk);
        if flags.is_empty() {
            return None;
        }
        let mut acc: Option<Operand> = None;
        for f in flags {
            let read = self.temp("exited", Kind::Bool, Rvalue::Use(Operand::Var(f)), span);
            acc = Some(match acc {
                None => read,
                Some(a) => self.temp("exited", Kind::Bool, Rvalue::Binary(BinOp::BitOr, a, read), span),
            });
        }
        Some(self.temp("go_on", Kind::Bool, Rvalue::Unary(UnOp::Not, acc.expect("flag")), span))
    }

    /// The body of a loop: `continue` resets, then the statements.
    fn loop_body(&mut self, body: &syn::Block, frame: LoopFrame, bind: impl FnOnce(&mut Self)) -> (Block, LoopFrame) {
        let cont = frame.cont;
        self.loops.push(frame);
        let block = self.nested(|l| {
            if let Some(c) = cont {
                l.emit(Stmt::Assign { var: c, value: const_bool(false) });
            }
            bind(l);
            l.block_in(&body.stmts, BlockCtx::Unit, body.span());
        });
        let frame = self.loops.pop().expect("loop frame");
        (block, frame)
    }

    fn loop_expr(&mut self, lp: &syn::ExprLoop) -> Value {
        let span = lp.span();
        if let Some(l) = &lp.label {
            return self.unsupported(l, "a loop label", "restructure the loop with flags");
        }
        let mut exits = exits_of_block(&lp.body);
        exits.brk = true;
        let mut frame = self.loop_frame(exits, span);
        // `break value` needs cells for the value.
        if let Some(kind) = break_value_kind(&lp.body) {
            let c = self.vars.add("loop_value", kind, Role::Cell, span);
            self.emit(Stmt::Cell { var: c, init: default_value(kind) });
            frame.value = Some(Binding::Cell(c));
        }
        let brk = frame.brk;
        let header = self.nested(|l| {
            let go = l.keep_looping(brk, exits, span);
            if let Some(Operand::Var(v)) = go {
                l.vars.info_mut(v).name = "go_on".into();
            }
        });
        let mut header = header;
        let cond = match header.last() {
            Some(Stmt::Let { dst: Tree::Leaf(v), .. }) => Operand::Var(*v),
            _ => {
                header.clear();
                const_bool(true)
            }
        };
        let (body, frame) = self.loop_body(&lp.body, frame, |_| {});
        self.emit(Stmt::While { header, cond, body });
        // The value cell's kind is known now that the `break`s are lowered: give it an
        // initial value so rustc sees it initialised after the loop.
        if let Some(Binding::Cell(c)) = &frame.value {
            let init = match self.vars.info(*c).scalar_ty {
                Some(_) => Some(self.vars.zero(*c)),
                None => default_value(self.vars.kind(*c)),
            };
            for s in self.out.last_mut().expect("block").iter_mut().rev() {
                if let Stmt::Cell { var, init: slot } = s {
                    if var == c {
                        if slot.is_none() {
                            *slot = init;
                        }
                        break;
                    }
                }
            }
        }
        match frame.value {
            Some(b) => self.read_binding(&b, span),
            None => Value::Unit,
        }
    }

    fn while_loop(&mut self, w: &syn::ExprWhile) {
        let span = w.span();
        if let Some(l) = &w.label {
            self.unsupported(l, "a loop label", "restructure the loop with flags");
            return;
        }
        if let Expr::Let(l) = &*w.cond {
            self.unsupported(l, "`while let`", "loop with `while` on a boolean condition");
            return;
        }
        let exits = exits_of_block(&w.body);
        let frame = self.loop_frame(exits, span);
        let brk = frame.brk;
        let mut cond_out = None;
        let header = self.nested(|l| {
            let go = l.keep_looping(brk, exits, span);
            let c = match go {
                None => l.operand(&w.cond),
                Some(go) => {
                    // `go && cond`, evaluating `cond` only while going on.
                    let cell = l.vars.add("go_on", Kind::Bool, Role::Cell, span);
                    l.emit(Stmt::Cell { var: cell, init: Some(const_bool(false)) });
                    let then_ = l.nested(|l2| {
                        let c = l2.operand(&w.cond);
                        l2.emit(Stmt::Assign { var: cell, value: c });
                    });
                    l.emit(Stmt::If { cond: go, then_, else_: Vec::new() });
                    l.temp("go_on", Kind::Bool, Rvalue::Use(Operand::Var(cell)), span)
                }
            };
            cond_out = Some(c);
        });
        let cond = cond_out.unwrap_or_else(|| const_bool(false));
        let (body, _) = self.loop_body(&w.body, frame, |_| {});
        self.emit(Stmt::While { header, cond, body });
    }

    fn for_loop(&mut self, f: &syn::ExprForLoop) {
        let span = f.span();
        if let Some(l) = &f.label {
            self.unsupported(l, "a loop label", "restructure the loop with flags");
            return;
        }
        let Some(spec) = self.iteration(&f.expr, &f.pat) else {
            return;
        };
        let exits = exits_of_block(&f.body);
        let frame = self.loop_frame(exits, span);
        let early = exits.brk || (exits.ret && self.ret.is_some());
        let index_name = spec.index_name.clone();
        if !early {
            let i = self.vars.add(index_name, Kind::Int, Role::Index, span);
            let elems = spec.elements.clone();
            let (body, _) = self.loop_body(&f.body, frame, |l| l.bind_elements(&elems, Operand::Var(i), span));
            self.emit(Stmt::For { var: i, range: spec.range, body });
            return;
        }
        // A loop that may stop early walks its index space through a cell.
        if !spec.range.adapters.is_empty() {
            self.unsupported(
                &f.expr,
                "`break`/`return` inside a loop over a reversed or stepped range",
                "use a `while` loop with an explicit index",
            );
            return;
        }
        let idx = self.vars.add(format!("next_{index_name}"), Kind::Int, Role::Cell, span);
        self.emit(Stmt::Cell { var: idx, init: Some(spec.range.lo.clone()) });
        let brk = frame.brk;
        let hi = spec.range.hi.clone();
        let inclusive = spec.range.inclusive;
        let mut cond_out = None;
        let header = self.nested(|l| {
            let cur = l.temp("index", Kind::Int, Rvalue::Use(Operand::Var(idx)), span);
            let op = if inclusive { BinOp::Le } else { BinOp::Lt };
            let in_range = l.temp("in_range", Kind::Bool, Rvalue::Binary(op, cur, hi), span);
            let c = match l.keep_looping(brk, exits, span) {
                Some(go) => l.temp("go_on", Kind::Bool, Rvalue::Binary(BinOp::BitAnd, go, in_range), span),
                None => in_range,
            };
            cond_out = Some(c);
        });
        let cond = cond_out.expect("loop condition");
        let elems = spec.elements.clone();
        let (body, _) = self.loop_body(&f.body, frame, |l| {
            let i = l.temp(&index_name, Kind::Int, Rvalue::Use(Operand::Var(idx)), span);
            let next = l.temp("next", Kind::Int, Rvalue::Binary(BinOp::Add, i.clone(), const_int(1)), span);
            l.emit(Stmt::Assign { var: idx, value: next });
            l.bind_elements(&elems, i, span);
        });
        self.emit(Stmt::While { header, cond, body });
    }

    fn bind_elements(&mut self, elems: &[(Pat, ElementSource)], index: Operand, span: Span) {
        for (pat, src) in elems {
            let value = match src {
                ElementSource::Index => Binding::Value(index.clone()),
                ElementSource::Element(buf) => {
                    let kind = self.vars.kind(*buf).element();
                    let name = match pat {
                        Pat::Ident(p) => p.ident.to_string(),
                        _ => "elem".into(),
                    };
                    Binding::Value(self.temp(&name, kind, Rvalue::Index { buf: *buf, index: index.clone() }, span))
                }
            };
            match pat {
                Pat::Ident(p) => self.bind(&p.ident, value),
                Pat::Wild(_) => {}
                other => {
                    self.cx.error_spanned_by(other, "bind loop elements to names");
                }
            }
        }
    }

    /// Understand the iterator of a `for` loop.
    fn iteration(&mut self, iter: &Expr, pat: &Pat) -> Option<IterSpec> {
        let span = iter.span();
        let mut chain = Vec::new();
        let base = peel_adapters(iter, &mut chain);
        let (range, base_kind) = match strip_parens(base) {
            Expr::Range(r) => {
                let (Some(lo), Some(hi)) = (&r.start, &r.end) else {
                    self.unsupported(r, "an open-ended range", "give both bounds: `a..b`");
                    return None;
                };
                let lo = self.operand(lo);
                let hi = self.operand(hi);
                let inclusive = matches!(r.limits, syn::RangeLimits::Closed(_));
                (Range { lo, hi, inclusive, adapters: Vec::new() }, None)
            }
            other => {
                // Iteration over slices: `x`, `&x`, `x.iter()`, with `zip` inside the chain.
                let Some(buf) = self.buffer_of(other) else {
                    self.unsupported(
                        iter,
                        "this iterator",
                        "loop over a range (`a..b`, `.rev()`, `.step_by(k)`) or over a slice (`x.iter()`, `.enumerate()`, `.zip(…)`)",
                    );
                    return None;
                };
                let len = self.temp("len", Kind::Int, Rvalue::Len(buf), span);
                (Range { lo: const_int(0), hi: len, inclusive: false, adapters: Vec::new() }, Some(buf))
            }
        };
        let mut range = range;
        let mut sources: Vec<Vec<ElementSource>> = vec![match base_kind {
            Some(b) => vec![ElementSource::Element(b)],
            None => vec![ElementSource::Index],
        }];
        let mut enumerated = false;
        for link in chain {
            match link {
                Link::Rev => range.adapters.push(Adapter::Rev),
                Link::StepBy(k) => {
                    if base_kind.is_some() {
                        self.unsupported(iter, "`step_by` on a slice iterator", "loop over a stepped range and index");
                        return None;
                    }
                    let k = self.operand(&k);
                    range.adapters.push(Adapter::StepBy(k));
                }
                Link::Copied => {}
                Link::Enumerate => {
                    if base_kind.is_none() || range.adapters.iter().any(|a| matches!(a, Adapter::Rev)) || enumerated {
                        self.unsupported(iter, "`enumerate` here", "call `.enumerate()` right after `.iter()`");
                        return None;
                    }
                    enumerated = true;
                    let inner = sources.pop().expect("sources");
                    sources.push(vec![ElementSource::Index]);
                    sources.push(inner);
                }
                Link::Zip(other) => {
                    if !range.adapters.is_empty() {
                        self.unsupported(iter, "`zip` after `rev`/`step_by`", "zip first, then reverse");
                        return None;
                    }
                    let Some(b2) = self.buffer_of(&other) else {
                        self.unsupported(
                            &other,
                            "zipping with this iterator",
                            "zip two slices: `x.iter().zip(y.iter())`",
                        );
                        return None;
                    };
                    let len2 = self.temp("len", Kind::Int, Rvalue::Len(b2), span);
                    let min = self.temp(
                        "len",
                        Kind::Int,
                        Rvalue::Method { recv: range.hi.clone(), method: Ident::new("min", span), args: vec![len2] },
                        span,
                    );
                    range.hi = min;
                    let first: Vec<ElementSource> = sources.drain(..).flatten().collect();
                    sources.push(first);
                    sources.push(vec![ElementSource::Element(b2)]);
                }
            }
        }
        // Match the sources with the loop pattern.
        let flat: Vec<ElementSource> = sources.iter().flatten().cloned().collect();
        let pats = loop_pattern(pat, flat.len());
        let Some(pats) = pats else {
            self.unsupported(pat, "this loop pattern", "bind the loop variable to a name, `&name` or a tuple of names");
            return None;
        };
        let index_name = match (&base_kind, pats.first()) {
            (None, Some(Pat::Ident(p))) => p.ident.to_string(),
            _ => "i".to_string(),
        };
        let elements: Vec<(Pat, ElementSource)> = if base_kind.is_none() && flat.len() == 1 {
            // A range loop: the pattern names the index itself.
            Vec::new()
        } else {
            pats.into_iter().zip(flat).collect()
        };
        // Bind the index name for plain range loops through the index variable.
        let elements = if elements.is_empty() {
            match pat {
                Pat::Ident(_) => vec![(pat.clone(), ElementSource::Index)],
                _ => Vec::new(),
            }
        } else {
            elements
        };
        Some(IterSpec { range, elements, index_name })
    }

    // ---------------------------------------------------------------- exits

    fn return_expr(&mut self, r: &syn::ExprReturn) {
        let span = r.span();
        let value = match &r.expr {
            Some(e) => self.expr(e),
            None => Value::Unit,
        };
        let Some(frame) = &self.ret else { return };
        let (flag, target) = (frame.flag, frame.value.clone());
        self.assign_binding(&target, value, span);
        self.emit(Stmt::Assign { var: flag, value: const_bool(true) });
    }

    fn break_expr(&mut self, b: &syn::ExprBreak) {
        if let Some(l) = &b.label {
            self.unsupported(l, "a labeled `break`", "restructure the loops with flags");
            return;
        }
        let value = b.expr.as_ref().map(|e| self.expr(e));
        let Some(frame) = self.loops.last() else {
            self.cx.error_spanned_by(b, "`break` outside a loop");
            return;
        };
        let (brk, target) = (frame.brk, frame.value.clone());
        if let (Some(v), Some(t)) = (value, target) {
            self.assign_binding(&t, v, b.span());
        }
        if let Some(brk) = brk {
            self.emit(Stmt::Assign { var: brk, value: const_bool(true) });
        }
    }

    fn continue_expr(&mut self, c: &syn::ExprContinue) {
        if let Some(l) = &c.label {
            self.unsupported(l, "a labeled `continue`", "restructure the loops with flags");
            return;
        }
        let Some(frame) = self.loops.last() else {
            self.cx.error_spanned_by(c, "`continue` outside a loop");
            return;
        };
        if let Some(cont) = frame.cont {
            self.emit(Stmt::Assign { var: cont, value: const_bool(true) });
        }
    }

    // ---------------------------------------------------------------- results

    fn value_tree(&mut self, v: Value, span: Span) -> Tree<Operand> {
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

#[derive(Clone)]
enum CalleeKind {
    Free(syn::Path),
    FloatMethod(Ident),
    Detach,
}

#[derive(Clone, Debug)]
enum ElementSource {
    Index,
    Element(Var),
}

struct IterSpec {
    range: Range,
    elements: Vec<(Pat, ElementSource)>,
    index_name: String,
}

enum Link {
    Rev,
    StepBy(Expr),
    Copied,
    Enumerate,
    Zip(Expr),
}

/// Split `base.a().b().c()` into the base and the adapters, innermost first.
fn peel_adapters<'e>(e: &'e Expr, chain: &mut Vec<Link>) -> &'e Expr {
    match strip_parens(e) {
        Expr::MethodCall(m) => {
            let name = m.method.to_string();
            let link = match (name.as_str(), m.args.len()) {
                ("rev", 0) => Link::Rev,
                ("step_by", 1) => Link::StepBy(m.args[0].clone()),
                ("copied" | "cloned" | "into_iter", 0) => Link::Copied,
                ("enumerate", 0) => Link::Enumerate,
                ("zip", 1) => Link::Zip(m.args[0].clone()),
                _ => return e,
            };
            let base = peel_adapters(&m.receiver, chain);
            chain.push(link);
            base
        }
        _ => e,
    }
}

/// The names bound by a loop pattern, one per element source.
fn loop_pattern(pat: &Pat, n: usize) -> Option<Vec<Pat>> {
    fn strip(p: &Pat) -> Pat {
        match p {
            Pat::Reference(r) => strip(&r.pat),
            Pat::Paren(p) => strip(&p.pat),
            other => other.clone(),
        }
    }
    let p = strip(pat);
    if n == 1 {
        return match p {
            Pat::Ident(_) | Pat::Wild(_) => Some(vec![p]),
            _ => None,
        };
    }
    match p {
        Pat::Tuple(t) => {
            let mut out = Vec::new();
            for e in &t.elems {
                let e = strip(e);
                match e {
                    Pat::Tuple(inner) => {
                        for x in &inner.elems {
                            out.push(strip(x));
                        }
                    }
                    other => out.push(other),
                }
            }
            (out.len() == n && out.iter().all(|p| matches!(p, Pat::Ident(_) | Pat::Wild(_)))).then_some(out)
        }
        _ => None,
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

fn value_arg(v: Value) -> Arg {
    match v {
        Value::Op(o) => Arg::Value(o),
        Value::Buffer(b) => Arg::Buffer { buf: b, borrowed: false },
        Value::Slice { buf, lo, hi, inclusive } => Arg::Slice { buf, lo, hi, inclusive },
        Value::Tuple(items) => Arg::Tuple(items.into_iter().map(value_arg).collect()),
        Value::Unit | Value::Poison => {
            Arg::Value(Operand::Const(Const { tokens: quote!(()), kind: Kind::Unknown, scalar_ty: None }))
        }
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
        || crate::ops::method(name).is_some()
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

enum VecMacro {
    Repeat(Box<Expr>, Box<Expr>),
    List(Vec<Expr>),
}

fn parse_vec_macro(m: &syn::Macro) -> syn::Result<VecMacro> {
    use syn::parse::Parser;
    let parser = |input: syn::parse::ParseStream| -> syn::Result<VecMacro> {
        if input.is_empty() {
            return Ok(VecMacro::List(Vec::new()));
        }
        let first: Expr = input.parse()?;
        if input.peek(syn::Token![;]) {
            input.parse::<syn::Token![;]>()?;
            let n: Expr = input.parse()?;
            return Ok(VecMacro::Repeat(Box::new(first), Box::new(n)));
        }
        let mut items = vec![first];
        while !input.is_empty() {
            input.parse::<syn::Token![,]>()?;
            if input.is_empty() {
                break;
            }
            items.push(input.parse()?);
        }
        Ok(VecMacro::List(items))
    };
    parser.parse2(m.tokens.clone())
}

/// The kind of the value given to `break value` in a loop body, if any.
fn break_value_kind(body: &syn::Block) -> Option<Kind> {
    struct V(Option<Kind>, usize);
    impl<'ast> Visit<'ast> for V {
        fn visit_expr_break(&mut self, b: &'ast syn::ExprBreak) {
            if self.1 == 0 && b.expr.is_some() && self.0.is_none() {
                self.0 = Some(match b.expr.as_deref() {
                    Some(Expr::Lit(l)) => literal(&l.lit).kind,
                    _ => Kind::Unknown,
                });
            }
        }
        fn visit_expr_loop(&mut self, e: &'ast syn::ExprLoop) {
            self.1 += 1;
            syn::visit::visit_expr_loop(self, e);
            self.1 -= 1;
        }
        fn visit_expr_while(&mut self, e: &'ast syn::ExprWhile) {
            self.1 += 1;
            syn::visit::visit_expr_while(self, e);
            self.1 -= 1;
        }
        fn visit_expr_for_loop(&mut self, e: &'ast syn::ExprForLoop) {
            self.1 += 1;
            syn::visit::visit_expr_for_loop(self, e);
            self.1 -= 1;
        }
        fn visit_expr_closure(&mut self, _: &'ast syn::ExprClosure) {}
    }
    let mut v = V(None, 0);
    v.visit_block(body);
    v.0
}
