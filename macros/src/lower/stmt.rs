//! Lowering of blocks, statements and `let` bindings (cells, renamed values, tuples).

use super::*;

impl<'a> Lowerer<'a> {
    /// Lower statements; the value of the block is returned (in `FnBody` context with a
    /// return frame, the value has already been assigned to the result cells).
    pub(super) fn block_in(&mut self, stmts: &[syn::Stmt], ctx: BlockCtx, span: Span) -> Value {
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
    pub(super) fn guard(&mut self, exits: Exits, span: Span) -> Operand {
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
    pub(super) fn tail(&mut self, e: &Expr, ctx: BlockCtx) -> Value {
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

    pub(super) fn assign_result(&mut self, v: Value, span: Span) {
        if let Some(frame) = &self.ret {
            let target = frame.value.clone();
            self.assign_binding(&target, v, span);
        }
    }

    pub(super) fn stmt(&mut self, s: &syn::Stmt, ctx: BlockCtx) {
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
    pub(super) fn expr_stmt(&mut self, e: &Expr) -> Value {
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

    pub(super) fn local(&mut self, local: &syn::Local) {
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
                        self.poison_pattern(&local.pat);
                    }
                }
                other => {
                    self.unsupported(other, "this pattern", "bind a single name");
                    self.poison_pattern(other);
                }
            }
            return;
        };
        if let Some((_, diverge)) = &init.diverge {
            self.unsupported(
                diverge,
                "this `let … else`",
                "destructure a slice (`let [a, rest @ ..] = x else { … };`) or test with `if`",
            );
            self.poison_pattern(&local.pat);
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
        if let Pat::Tuple(_) = pat {
            if is_call_like(&init.expr) && is_names_pattern(pat) {
                if let Some(tree) = self.call_with_tuple_result(&init.expr, pat) {
                    self.bind_pattern_tree(pat, &tree, span);
                    return;
                }
            }
        }
        // `let v = loop { … return …; … break value; };`: `v` names the loop's value
        // cell, read where `v` is used (after the return's guard), not right after the
        // loop, where a return leaves it unassigned.
        if let (Pat::Ident(p), Expr::Loop(lp)) = (pat, &*init.expr) {
            if p.by_ref.is_none() && self.ret.is_some() && exits_of_block(&lp.body).ret {
                match self.loop_binding(lp) {
                    Ok(Some(b @ Binding::Cell(_))) => self.bind(&p.ident, b),
                    Ok(Some(b)) => {
                        let value = self.read_binding(&b, span);
                        self.bind_let(pat, value, ty, span);
                    }
                    Ok(None) => self.bind_let(pat, Value::Unit, ty, span),
                    Err(loops::Rejected) => self.bind_let(pat, Value::Poison, ty, span),
                }
                return;
            }
        }
        let mut value = self.expr(&init.expr);
        if let (Expr::Reference(r), Value::Op(Operand::Var(v))) = (strip_parens(&init.expr), &value) {
            if r.mutability.is_none() && self.vars.kind(*v) == Kind::Unknown {
                self.borrowed.insert(*v);
            }
        }
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
        let borrowed_parts = matches!(strip_parens(&init.expr), Expr::Reference(r) if r.mutability.is_none())
            && matches!(pat, Pat::Tuple(_));
        self.bind_let(pat, value, ty, span);
        if borrowed_parts {
            // `let (x, label) = &pair;`: parts the macro cannot see into are references
            // in the user's code, passed on to calls as such.
            let mut names = Vec::new();
            crate::desugar::pattern_names(pat, &mut names);
            for n in names {
                if let Some(Binding::Value(Operand::Var(v))) = self.lookup(&n.to_string()).cloned() {
                    if self.vars.kind(v) == Kind::Unknown {
                        self.borrowed.insert(v);
                    }
                }
            }
        }
    }

    /// Bind the names of a pattern of names (see [`is_names_pattern`]) to the variables
    /// of a destructured call result.
    pub(super) fn bind_pattern_tree(&mut self, pat: &Pat, tree: &Tree<Var>, span: Span) {
        match (pat, tree) {
            (Pat::Paren(p), t) => self.bind_pattern_tree(&p.pat, t, span),
            (Pat::Ident(pi), Tree::Leaf(v)) => {
                let b = self.maybe_cell(pi, Operand::Var(*v), span);
                self.bind(&pi.ident, b);
            }
            (Pat::Tuple(t), Tree::Tuple(items)) => {
                for (p, item) in t.elems.iter().zip(items) {
                    self.bind_pattern_tree(p, item, span);
                }
            }
            _ => {}
        }
    }

    /// A cell for a `let mut` that is assigned inside control flow, a plain value otherwise.
    pub(super) fn maybe_cell(&mut self, p: &syn::PatIdent, value: Operand, _span: Span) -> Binding {
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

    pub(super) fn bind_let(&mut self, pat: &Pat, value: Value, ty: Option<&syn::Type>, span: Span) {
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
                // `let mut h = dense(…);` then `h[k] = …`: the returned `Vec` becomes a
                // local buffer (a copy, made once here).
                if let Operand::Var(v) = o {
                    let name = p.ident.to_string();
                    let kind = self.vars.kind(v);
                    if p.mutability.is_some()
                        && self.element_assigned.contains(&name)
                        && self.vars.role(v) == Role::Temp
                        && (kind == Kind::Unknown || kind.is_buffer())
                    {
                        if kind == Kind::Unknown {
                            self.vars.info_mut(v).kind = Kind::Buffer(Elem::Unknown);
                        }
                        let local = self.copy_buffer(v, &p.ident, span);
                        self.bind(&p.ident, Binding::Buffer(local));
                        return;
                    }
                }
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
            (Pat::Tuple(t), Value::Op(o)) if is_names_pattern(pat) => {
                // A tuple held in one value (a call's result bound to a name first):
                // its fields, as `let (a, b) = (t.0, t.1);` would take them.
                for (i, p) in t.elems.iter().enumerate() {
                    if matches!(p, Pat::Wild(_)) {
                        continue;
                    }
                    let member = syn::Member::Unnamed(syn::Index { index: i as u32, span });
                    let field = self.temp("field", Kind::Unknown, Rvalue::Field(o.clone(), member), span);
                    self.bind_let(p, Value::Op(field), None, span);
                }
            }
            (Pat::Paren(p), v) => self.bind_let(&p.pat, v, ty, span),
            (Pat::Ident(p), Value::Unit) => {
                self.bind(&p.ident, Binding::Tuple(Vec::new()));
            }
            // `let part = &x[a..b];`: a copy of the elements (rustc's borrow rules keep `x`
            // unchanged while `part` is used, so the copy reads the same values).
            (Pat::Ident(p), Value::Slice { buf, lo, hi, inclusive }) => {
                let kind = self.vars.kind(buf);
                let part = self.temp(&p.ident.to_string(), kind, Rvalue::Slice { buf, lo, hi, inclusive }, span);
                match part {
                    Operand::Var(v) => {
                        self.views.insert(v);
                        self.bind(&p.ident, Binding::Buffer(v));
                    }
                    _ => self.bind(&p.ident, Binding::Poison),
                }
            }
            (Pat::Type(pt), v) => self.bind_let(&pt.pat, v, Some(&pt.ty), span),
            (other, _) => {
                self.unsupported(other, "this pattern", "bind a name or a tuple of names");
                self.poison_pattern(other);
            }
        }
    }

    /// Bind every name of a rejected pattern to a poisoned value, so that its uses add
    /// no errors of their own (one mistake, one error).
    pub(super) fn poison_pattern(&mut self, pat: &Pat) {
        struct Names(Vec<Ident>);
        impl<'ast> syn::visit::Visit<'ast> for Names {
            fn visit_pat_ident(&mut self, p: &'ast syn::PatIdent) {
                self.0.push(p.ident.clone());
                syn::visit::visit_pat_ident(self, p);
            }
        }
        let mut names = Names(Vec::new());
        syn::visit::Visit::visit_pat(&mut names, pat);
        for n in names.0 {
            self.bind(&n, Binding::Poison);
        }
    }

    pub(super) fn tuple_binding(&mut self, items: Vec<Value>, mutable: bool, ident: &Ident, span: Span) -> Binding {
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
}

/// A pattern made of names, `_` and tuples of them (`(v, (g1, _))`): what a tuple
/// result can be destructured with.
pub(super) fn is_names_pattern(p: &Pat) -> bool {
    match p {
        Pat::Ident(pi) => pi.by_ref.is_none() && pi.subpat.is_none(),
        Pat::Wild(_) => true,
        Pat::Paren(p) => is_names_pattern(&p.pat),
        Pat::Tuple(t) => t.elems.iter().all(is_names_pattern),
        _ => false,
    }
}
