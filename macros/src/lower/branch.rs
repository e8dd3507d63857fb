//! Lowering of `if` and of `match` on integers (an `if` chain).

use super::*;

impl<'a> Lowerer<'a> {
    pub(super) fn if_expr(&mut self, i: &syn::ExprIf, ctx: BlockCtx) -> Value {
        let span = i.span();
        if let Expr::Let(l) = &*i.cond {
            return self.unsupported(
                l,
                "`if let` with this pattern",
                "`if let` takes `Some(v)` on an `Option`; compare integers with `==` otherwise",
            );
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
    pub(super) fn value_cells(&mut self, v: &Value, span: Span) -> Binding {
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

    pub(super) fn match_expr(&mut self, m: &syn::ExprMatch, ctx: BlockCtx) -> Value {
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

    pub(super) fn match_arms(
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

    pub(super) fn bind_arm_pattern(&mut self, pat: &Pat, s: &Operand) {
        match pat {
            Pat::Ident(p) if is_constant_name(&p.ident) && p.subpat.is_none() => {}
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
            Pat::TupleStruct(_) | Pat::Struct(_) => {
                // `Loss::Huber(delta)`: the payloads of an enum of data, bound by value.
                let mut names = Vec::new();
                crate::desugar::pattern_names(pat, &mut names);
                names.retain(|n| !is_constant_name(n));
                if names.is_empty() {
                    return;
                }
                let span = pat.span();
                let vars: Vec<Var> =
                    names.iter().map(|n| self.vars.add(n.to_string(), Kind::Unknown, Role::Temp, span)).collect();
                let rv = Rvalue::PatternBind { value: s.clone(), pat: pat.clone(), names: names.clone() };
                self.emit(Stmt::Let { dst: Tree::Tuple(vars.iter().map(|v| Tree::Leaf(*v)).collect()), rv, span });
                for (n, v) in names.iter().zip(vars) {
                    self.bind(n, Binding::Value(Operand::Var(v)));
                }
            }
            _ => {}
        }
    }

    /// A boolean that is true when the arm matches (its guard included).
    pub(super) fn arm_test(&mut self, arm: &syn::Arm, s: &Operand) -> Operand {
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

    pub(super) fn pattern_test(&mut self, pat: &Pat, s: &Operand) -> Operand {
        let span = pat.span();
        match pat {
            Pat::Wild(_) => const_bool(true),
            // A bare upper-case name is a constant (as rustc resolves it, by convention).
            Pat::Ident(p) if is_constant_name(&p.ident) && p.subpat.is_none() => {
                let c = Operand::Const(Const { tokens: p.ident.to_token_stream(), kind: Kind::Int, scalar_ty: None });
                self.temp("is", Kind::Bool, Rvalue::Binary(BinOp::Eq, s.clone(), c), span)
            }
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
            Pat::TupleStruct(_) | Pat::Struct(_) => {
                self.temp("is", Kind::Bool, Rvalue::PatternTest { value: s.clone(), pat: pat.clone() }, span)
            }
            Pat::Path(p) if is_variant_path(&p.path) => {
                self.temp("is", Kind::Bool, Rvalue::PatternTest { value: s.clone(), pat: pat.clone() }, span)
            }
            Pat::Path(p) => {
                // A constant pattern (`N`, `Self::N`).
                let c = Operand::Const(Const { tokens: p.to_token_stream(), kind: Kind::Int, scalar_ty: None });
                self.temp("is", Kind::Bool, Rvalue::Binary(BinOp::Eq, s.clone(), c), span)
            }
            other => {
                self.cx.error_spanned_by(
                    other,
                    "this pattern is not supported; match integers with literals, ranges, `|` and `_`, or an `Option` with `Some(v)` and `None`",
                );
                const_bool(false)
            }
        }
    }

    // ---------------------------------------------------------------- loops
}

/// `LIMIT`, `N`, `MAX_2`: a name written in upper case, which in a pattern names a
/// constant rather than binding a variable.
fn is_constant_name(id: &Ident) -> bool {
    let s = id.to_string();
    s.chars().any(|c| c.is_ascii_uppercase())
        && s.chars().all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_')
}

/// `Loss::Squared`, `Self::Empty`: a path to an enum variant (its last segment in
/// CamelCase), not a constant (`N`, `Self::MAX_LEN`).
fn is_variant_path(path: &syn::Path) -> bool {
    path.segments.len() >= 2
        && path.segments.last().is_some_and(|s| {
            let name = s.ident.to_string();
            name.starts_with(|c: char| c.is_ascii_uppercase()) && name.chars().any(|c| c.is_ascii_lowercase())
        })
}
