//! Lowering of expressions: literals, paths, operators, assignments.

use super::*;

impl<'a> Lowerer<'a> {
    pub(super) fn expr(&mut self, e: &Expr) -> Value {
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
            Expr::Call(c) if is_mem_swap(&c.func) => self.swap_call(c),
            Expr::Call(c) => self.call(c, None).map(|v| Value::Op(Operand::Var(v))).unwrap_or(Value::Poison),
            Expr::Index(ix) => {
                if let Expr::Range(_) = &*ix.index {
                    return self.unsupported(
                        ix,
                        "a sub-slice outside a call argument",
                        "pass it directly: `g(&x[a..b])`",
                    );
                }
                if let Some(buf) = self.buffer_of(&ix.expr) {
                    let index = self.operand(&ix.index);
                    return Value::Op(self.element(buf, index, span));
                }
                // An element of a value the macro cannot see: a matrix's `m[(i, j)]`, a
                // vector's `v[i]`, a `Vec` returned by a call.
                match self.expr(&ix.expr) {
                    // (A row already used as a slice elsewhere is a buffer by now.)
                    Value::Op(Operand::Var(v)) if matches!(self.vars.kind(v), Kind::Unknown | Kind::Buffer(_)) => {
                        let index = self.index_operand(&ix.index);
                        Value::Op(self.element(v, index, span))
                    }
                    Value::Poison => Value::Poison,
                    _ => {
                        self.cx.error_spanned_by(
                            &ix.expr,
                            "indexing is supported on slices, vectors, arrays and matrices (`x[i]`, `m[(i, j)]`)",
                        );
                        Value::Poison
                    }
                }
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
                    (Value::Op(Operand::Var(p)), syn::Member::Named(m)) if self.vars.role(p) == Role::Param => {
                        Value::Op(self.param_field(p, m, span))
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
            Expr::Struct(s) => self.struct_literal(s),
            Expr::Yield(y) => self.unsupported(y, "`yield`", "remove it"),
            Expr::Const(c) => self.unsupported(c, "a `const` block", "use a `const` item"),
            Expr::RawAddr(r) => self.unsupported(r, "a raw pointer", "pass slices or values instead of raw pointers"),
            Expr::Infer(i) => self.unsupported(i, "`_` as an expression", "write a value"),
            other => {
                self.unsupported(other, "this expression", "rewrite it with the supported subset (see the README)")
            }
        }
    }

    /// The index of an element: an integer, or a pair `(i, j)` for a matrix.
    fn index_operand(&mut self, index: &Expr) -> Operand {
        match strip_parens(index) {
            Expr::Tuple(t) if !t.elems.is_empty() => {
                let items = t.elems.iter().map(|e| self.operand(e)).collect();
                self.temp("index", Kind::Unknown, Rvalue::Tuple(items), index.span())
            }
            _ => self.operand(index),
        }
    }

    pub(super) fn path_expr(&mut self, p: &syn::ExprPath) -> Value {
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

    pub(super) fn binary(&mut self, b: &syn::ExprBinary) -> Value {
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
    pub(super) fn short_circuit(&mut self, b: &syn::ExprBinary) -> Value {
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
    pub(super) fn assign(&mut self, left: &Expr, op: Option<BinOp>, right: &Expr, span: Span) {
        match left {
            Expr::Paren(p) => self.assign(&p.expr, op, right, span),
            Expr::Path(p) if p.path.get_ident().is_some() => {
                let id = p.path.get_ident().expect("ident");
                let name = id.to_string();
                let Some(binding) =
                    self.local_binding(p, |n| format!("cannot assign to `{n}`: only local variables can be assigned"))
                else {
                    return;
                };
                // `u = next.clone();` (or `.to_vec()`) into a buffer copies `next` itself:
                // the clone would only be copied again.
                let right = match (&binding, strip_parens(right)) {
                    (Binding::Buffer(_), Expr::MethodCall(m))
                        if m.args.is_empty() && (m.method == "clone" || m.method == "to_vec") && op.is_none() =>
                    {
                        &*m.receiver
                    }
                    _ => right,
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
                self.assign_name(id, &binding, value, op, right, span);
            }
            Expr::Field(f) if matches!(strip_parens(&f.base), Expr::Path(p) if p.path.get_ident().is_some()) => {
                // `s.v = x` / `s.v += x`: the struct with that field replaced is assigned
                // back to `s` (values, not places, as everywhere in the IR).
                let Expr::Path(p) = strip_parens(&f.base) else { unreachable!("matched above") };
                let id = p.path.get_ident().expect("ident");
                let name = id.to_string();
                let Some(binding) = self.local_binding(p, |n| {
                    format!("cannot assign to a field of `{n}`: only fields of local variables can be assigned")
                }) else {
                    return;
                };
                let base = self.operand(&f.base);
                let value = self.field_value(&base, &f.member, op, right, span);
                let insert = Rvalue::Insert { base, field: f.member.clone(), value };
                let new = self.temp(&name, Kind::Unknown, insert, span);
                self.assign_name(id, &binding, Value::Op(new), None, right, span);
            }
            Expr::Field(f) if matches!(strip_parens(&f.base), Expr::Index(_)) => {
                // `v[i].x += …` (also what `for b in v.iter_mut() { b.x += … }` becomes):
                // the element is copied out, its field replaced, and stored back.
                let Expr::Index(ix) = strip_parens(&f.base) else { unreachable!("matched above") };
                let Some(buf) = self.writable_buffer(&ix.expr) else { return };
                let i = self.operand(&ix.index);
                let elem = self.temp("elem", Kind::Unknown, Rvalue::Index { buf, index: i.clone() }, span);
                let value = self.field_value(&elem, &f.member, op, right, span);
                let insert = Rvalue::Insert { base: elem, field: f.member.clone(), value };
                let new = self.temp("elem", Kind::Unknown, insert, span);
                self.emit(Stmt::Store { buf, index: i, value: new });
            }
            Expr::Index(ix) => {
                // `m[i][j] = …` in a buffer of rows: the row is copied out, written, and
                // stored back (values, not places, as everywhere in the IR).
                if let Expr::Index(outer) = strip_parens(&ix.expr) {
                    let Some(rows) = self.writable_buffer(&outer.expr) else { return };
                    let i = self.operand(&outer.index);
                    let row = self.temp(
                        "row",
                        Kind::Buffer(Elem::Unknown),
                        Rvalue::Index { buf: rows, index: i.clone() },
                        span,
                    );
                    let Operand::Var(row) = row else { return };
                    let copy = self.copy_buffer(row, &Ident::new("row", span), span);
                    self.store_element(copy, &ix.index, op, right, span);
                    self.emit(Stmt::Store { buf: rows, index: i, value: Operand::Var(copy) });
                    return;
                }
                let Some(buf) = self.writable_buffer(&ix.expr) else { return };
                self.store_element(buf, &ix.index, op, right, span);
            }
            other => {
                self.unsupported(other, "assignment to this place", "assign to a local variable or a buffer element");
            }
        }
    }

    /// `p.m` for a parameter `p`: read once, before the body (see `param_fields`).
    fn param_field(&mut self, p: Var, m: &Ident, span: Span) -> Operand {
        let key = (p, m.to_string());
        if let Some((_, o)) = self.param_fields.iter().find(|(k, _)| *k == key) {
            return o.clone();
        }
        let v = self.vars.add(m.to_string(), Kind::Unknown, Role::Temp, span);
        let rv = Rvalue::Field(Operand::Var(p), syn::Member::Named(m.clone()));
        let at = self.param_fields.len();
        self.out[0].insert(at, Stmt::Let { dst: Tree::Leaf(v), rv, span });
        self.param_fields.push((key, Operand::Var(v)));
        Operand::Var(v)
    }

    /// `Path { a: x, b, ..rest }`: a value built from its fields (each field's adjoint
    /// is that field of the struct's adjoint).
    fn struct_literal(&mut self, s: &syn::ExprStruct) -> Value {
        let span = s.span();
        if s.qself.is_some() {
            return self.unsupported(s, "a struct literal with a qualified path", "name the struct by its path");
        }
        let mut fields = Vec::new();
        for f in &s.fields {
            let syn::Member::Named(name) = &f.member else {
                return self.unsupported(&f.member, "a tuple struct literal", "call the tuple struct's constructor");
            };
            let value = self.operand(&f.expr);
            fields.push((name.clone(), value));
        }
        let rest = s.rest.as_ref().map(|r| self.operand(r));
        let rv = Rvalue::Struct { path: s.path.clone(), fields, rest };
        Value::Op(self.temp("value", Kind::Unknown, rv, span))
    }

    /// The binding of the local a single-name path assigns to, or the error `message`
    /// gives for that name.
    fn local_binding(&mut self, p: &syn::ExprPath, message: impl FnOnce(&str) -> String) -> Option<Binding> {
        let name = p.path.get_ident().map(|i| i.to_string()).unwrap_or_default();
        let binding = self.lookup(&name).cloned();
        if binding.is_none() {
            self.cx.error_spanned_by(p, message(&name));
        }
        binding
    }

    /// The new value of field `member` of `base` in `base.member = right` (or `op=`).
    fn field_value(
        &mut self,
        base: &Operand,
        member: &syn::Member,
        op: Option<BinOp>,
        right: &Expr,
        span: Span,
    ) -> Operand {
        let rhs = self.operand(right);
        match op {
            None => rhs,
            Some(op) => {
                let cur = self.temp("field", Kind::Unknown, Rvalue::Field(base.clone(), member.clone()), span);
                let kind = combine_kinds(Kind::Unknown, self.kind_of(&rhs));
                self.temp("field", kind, Rvalue::Binary(op, cur, rhs), span)
            }
        }
    }

    /// `name = value` for a local bound as `binding` (`op` for a compound assignment's
    /// errors; `right` is the assigned expression, for error spans).
    fn assign_name(
        &mut self,
        id: &Ident,
        binding: &Binding,
        value: Value,
        op: Option<BinOp>,
        right: &Expr,
        span: Span,
    ) {
        let name = id.to_string();
        match binding {
            Binding::Poison => {}
            Binding::Cell(_) | Binding::Tuple(_) if matches!(binding, Binding::Cell(_)) || contains_cell(binding) => {
                self.assign_binding(binding, value, span)
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
            Binding::Buffer(dst) => match value {
                Value::Buffer(src) if op.is_none() => self.copy_into(*dst, src, span),
                // `y = step(&y, dt);`: a `Vec` returned by a call, copied in as a buffer
                // of the same length (the state of a time loop replaced each step).
                Value::Op(Operand::Var(v))
                    if op.is_none()
                        && self.vars.role(v) == Role::Temp
                        && matches!(self.vars.kind(v), Kind::Unknown)
                        && matches!(strip_parens(right), Expr::Call(_) | Expr::MethodCall(_)) =>
                {
                    self.vars.info_mut(v).kind = self.vars.kind(*dst);
                    self.copy_into(*dst, v, span)
                }
                Value::Poison => {}
                _ => {
                    self.cx.error_spanned_by(
                                right,
                                "a buffer can be assigned another buffer of the same length (`u = next;`); write its elements (`v[i] = …`) otherwise",
                            );
                }
            },
            Binding::Cell(_) => unreachable!("handled above"),
        }
    }

    /// The local buffer an element assignment writes into (an error otherwise).
    fn writable_buffer(&mut self, e: &Expr) -> Option<Var> {
        let Some(buf) = self.buffer_of(e) else {
            self.cx.error_spanned_by(e, "only elements of local buffers (`v[i] = …`, `m[i][j] = …`) can be assigned");
            return None;
        };
        self.modifiable(buf, e).then_some(buf)
    }

    /// Whether `buf` may be modified in place: an argument may not (one error, spanned at
    /// `at`, with the fix).
    pub(super) fn modifiable(&mut self, buf: Var, at: impl quote::ToTokens) -> bool {
        if self.vars.role(buf) != Role::Param {
            return true;
        }
        self.cx.error_spanned_by(
            at,
            "an argument cannot be modified; copy it into a local buffer first (`let mut v = x.to_vec();`)",
        );
        false
    }

    /// `buf[index] = right` or `buf[index] op= right`.
    fn store_element(&mut self, buf: Var, index: &Expr, op: Option<BinOp>, right: &Expr, span: Span) {
        let index = self.operand(index);
        let rhs = self.operand(right);
        let value = match op {
            None => rhs,
            Some(op) => {
                let kind = self.vars.kind(buf).element();
                let old = self.temp("old", kind, Rvalue::Index { buf, index: index.clone() }, span);
                self.temp("updated", combine_kinds(kind, self.kind_of(&rhs)), Rvalue::Binary(op, old, rhs), span)
            }
        };
        self.emit(Stmt::Store { buf, index, value });
    }
}

/// `std::mem::swap`, `core::mem::swap`, `mem::swap`.
pub(super) fn is_mem_swap(func: &Expr) -> bool {
    let Expr::Path(p) = strip_parens(func) else { return false };
    let segs: Vec<String> = p.path.segments.iter().map(|s| s.ident.to_string()).collect();
    matches!(segs.iter().map(String::as_str).collect::<Vec<_>>().as_slice(), [.., "mem", "swap"])
}

impl Lowerer<'_> {
    /// `std::mem::swap(&mut a, &mut b)`: two buffers exchange their contents, two
    /// mutable scalars their values.
    fn swap_call(&mut self, c: &syn::ExprCall) -> Value {
        let span = c.span();
        let operand_of = |e: &Expr| match strip_parens(e) {
            Expr::Reference(r) if r.mutability.is_some() => Some((*r.expr).clone()),
            _ => None,
        };
        let (Some(a), Some(b)) = (c.args.first().and_then(operand_of), c.args.get(1).and_then(operand_of)) else {
            self.cx
                .error_spanned_by(c, "`std::mem::swap` takes two `&mut` locals here: `std::mem::swap(&mut a, &mut b)`");
            return Value::Poison;
        };
        match (self.buffer_of(&a), self.buffer_of(&b)) {
            (Some(x), Some(y)) if self.vars.role(x) != Role::Param && self.vars.role(y) != Role::Param => {
                self.swap_buffers(x, y);
                Value::Unit
            }
            (None, None) => {
                // Two scalars: through a temporary, as the user would write it.
                let t = self.expr(&a);
                self.assign(&a, None, &b, span);
                let Value::Op(t) = t else {
                    self.cx.error_spanned_by(&a, "only mutable locals (scalars or buffers) can be swapped here");
                    return Value::Poison;
                };
                // `a`'s old value is bound to a name the user cannot write, as `let t = a;`.
                let tmp_name = Ident::new("__adjoint_swap", span);
                self.scopes.push(vec![(tmp_name.to_string(), Binding::Value(t))]);
                let tmp_expr: Expr = syn::parse_quote_spanned!(span=> #tmp_name);
                self.assign(&b, None, &tmp_expr, span);
                self.scopes.pop();
                Value::Unit
            }
            _ => {
                self.cx.error_spanned_by(c, "`std::mem::swap` exchanges two local buffers (`Vec`s of the same length) or two mutable scalars here");
                Value::Poison
            }
        }
    }
}
