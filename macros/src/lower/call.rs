//! Lowering of calls: float methods, buffer methods, differentiable functions, nested `grad!`.

use super::*;

#[derive(Clone)]
pub(super) enum CalleeKind {
    Free(syn::Path),
    Assoc(syn::Path),
    FloatMethod(Ident),
    Detach,
}

pub(super) fn value_arg(v: Value) -> Arg {
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

impl<'a> Lowerer<'a> {
    pub(super) fn method_call(&mut self, m: &syn::ExprMethodCall) -> Value {
        let span = m.span();
        let name = m.method.to_string();
        // Methods of buffers; a value the macro cannot see becomes one where the syntax
        // says it is a slice (`g.iter().sum()` of a returned gradient).
        let slice_syntax = m.args.is_empty()
            && match name.as_str() {
                "to_vec" => true,
                "sum" | "product" => matches!(strip_parens(&m.receiver), Expr::MethodCall(r) if r.method == "iter"),
                _ => false,
            };
        let buf = if slice_syntax { self.slice_like(&m.receiver) } else { self.buffer_of(&m.receiver) };
        if let Some(buf) = buf {
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
                        // Rows pushed into a `Vec` (a nested `collect`, `rows.push(row)`):
                        // a buffer of buffers, whose elements the macro does not look into.
                        if self.kind_of(&v).is_buffer() && self.vars.kind(buf) == Kind::Buffer(Elem::Float) {
                            self.vars.info_mut(buf).kind = Kind::Buffer(Elem::Unknown);
                        }
                        self.emit(Stmt::Push { buf, value: v });
                        return Value::Unit;
                    }
                    "sort_by" | "sort_unstable_by" | "swap" if !self.modifiable(buf, &m.receiver) => {
                        return Value::Poison
                    }
                    "sort_by" | "sort_unstable_by" if m.args.len() == 1 => {
                        self.sort_buffer(buf, &m.args[0], span);
                        return Value::Unit;
                    }
                    "swap" if m.args.len() == 2 => {
                        let (i, j) = (self.operand(&m.args[0]), self.operand(&m.args[1]));
                        let kind = self.vars.kind(buf).element();
                        let a = self.temp("first", kind, Rvalue::Index { buf, index: i.clone() }, span);
                        let b = self.temp("second", kind, Rvalue::Index { buf, index: j.clone() }, span);
                        self.emit(Stmt::Store { buf, index: i, value: b });
                        self.emit(Stmt::Store { buf, index: j, value: a });
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
                format!("`.{name}()` on a slice is not supported here; use indexing, `.len()`, `.push()`, `.pop()`, `.swap(i, j)`, `.sort_by(…)`, `.iter().sum()` or a `for` loop"),
            );
            return Value::Poison;
        }
        // `stack.pop().unwrap()` (or `.expect(…)`) on a local buffer: the last element,
        // removed (its adjoint goes back onto the buffer's adjoint in the reverse sweep).
        if name == "unwrap" || name == "expect" {
            if let Expr::MethodCall(pop) = strip_parens(&m.receiver) {
                if pop.method == "pop" && pop.args.is_empty() {
                    if let Some(buf) = self.buffer_of(&pop.receiver) {
                        if !self.modifiable(buf, &pop.receiver) {
                            return Value::Poison;
                        }
                        let kind = self.vars.kind(buf).element();
                        return Value::Op(self.temp("popped", kind, Rvalue::Pop(buf), span));
                    }
                }
            }
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
        let recv_kind = self.kind_of(&recv);
        if name == "len" && m.args.is_empty() {
            // The length of a value the macro cannot see (a returned `Vec`, a matrix).
            if let Operand::Var(v) = recv {
                return Value::Op(self.temp("len", Kind::Int, Rvalue::Len(v), span));
            }
        }
        // A float or buffer clone is the value itself; a clone of a borrowed tensor or
        // model is an owned value, so it stays a call (`clone` is in the table).
        if name == "clone" && m.args.is_empty() && recv_kind != Kind::Unknown {
            return Value::Op(recv);
        }
        if recv_kind == Kind::Unknown && ops::method(&name, 1 + m.args.len()).is_none() {
            // A method of a value the macro cannot see (a layer's `forward`, a tensor
            // method): differentiated through its `__adjoint_d1_…` companion when a
            // derivative flows through it.
            let mut args = vec![Arg::Value(recv)];
            args.extend(m.args.iter().map(|a| self.arg(a)));
            let v = self.vars.add(name, Kind::Unknown, Role::Temp, span);
            self.emit(Stmt::Let {
                dst: Tree::Leaf(v),
                rv: Rvalue::Call { callee: Callee::Method { name: m.method.clone() }, args },
                span,
            });
            return Value::Op(Operand::Var(v));
        }
        // `x.matmul(&w)`: a shared borrow of an operand is kept as a borrow.
        let by_ref: Vec<bool> =
            m.args.iter().map(|a| matches!(a, syn::Expr::Reference(r) if r.mutability.is_none())).collect();
        let args: Vec<Operand> = m
            .args
            .iter()
            .map(|a| match a {
                syn::Expr::Reference(r) if r.mutability.is_none() => self.operand(&r.expr),
                a => self.operand(a),
            })
            .collect();
        let kind = match ops::method(&name, 1 + args.len()) {
            Some(p) => output_kind(p.output, recv_kind),
            None if name == "len" || name.starts_with("count") => Kind::Int,
            None if name.starts_with("is_") => Kind::Bool,
            None if recv_kind == Kind::Int => Kind::Int,
            None => Kind::Unknown,
        };
        Value::Op(self.temp(&name, kind, Rvalue::Method { recv, method: m.method.clone(), args, by_ref }, span))
    }

    /// A call expression. Returns the variable holding its result.
    pub(super) fn call(&mut self, c: &syn::ExprCall, _hint: Option<usize>) -> Option<Var> {
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
                let recv_kind = self.kind_of(&recv);
                let kind = match ops::method(&method.to_string(), 1 + args.len()) {
                    Some(p) => output_kind(p.output, recv_kind),
                    None => recv_kind,
                };
                let by_ref = vec![false; args.len()];
                let v = self.vars.add(method.to_string(), kind, Role::Temp, span);
                self.emit(Stmt::Let { dst: Tree::Leaf(v), rv: Rvalue::Method { recv, method, args, by_ref }, span });
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
            CalleeKind::Assoc(path) if is_join(&path, c) => self.join(&path, c),
            CalleeKind::Free(path) if c.args.iter().any(is_mut_borrow) => self.call_with_outputs(path, c),
            CalleeKind::Free(path) | CalleeKind::Assoc(path) => {
                if nested {
                    self.nests = true;
                }
                let name = path.segments.last().map(|s| s.ident.to_string()).unwrap_or_default();
                let name = name.trim_start_matches("__adjoint_").to_string();
                let callee = match nalgebra_constructor(&path) {
                    // The elements are values (`Vector3::new(a, b, c)` takes them so).
                    Some(Built::Elements(rows, cols)) if rows * cols == c.args.len() => {
                        Callee::Construct { path, cols }
                    }
                    Some(Built::Rule(trait_name, method, arity)) if c.args.len() == arity => {
                        Callee::AssocRule { path, trait_name, method }
                    }
                    _ if names::is_type_path(&path) => Callee::Assoc { path },
                    _ => Callee::Free { path },
                };
                let args: Vec<Arg> = match callee {
                    Callee::Construct { .. } => c.args.iter().map(|a| Arg::Value(self.operand(a))).collect(),
                    _ => c.args.iter().map(|a| self.arg(a)).collect(),
                };
                let v = self.vars.add(name, Kind::Unknown, Role::Temp, span);
                self.emit(Stmt::Let { dst: Tree::Leaf(v), rv: Rvalue::Call { callee, args }, span });
                Some(v)
            }
        }
    }

    /// `forces(&x, &mut out)`: a helper writing into `&mut` buffers is differentiated as
    /// its pure form, `forces::__pure(&x, &out)`, which returns `(value, out′, …)` (one
    /// new buffer per `&mut` argument, in order); each buffer then takes its new
    /// contents, as after the call.
    fn call_with_outputs(&mut self, path: syn::Path, c: &syn::ExprCall) -> Option<Var> {
        let span = c.span();
        let mut args = Vec::new();
        let mut outputs = Vec::new();
        for a in &c.args {
            if !is_mut_borrow(a) {
                args.push(self.arg(a));
                continue;
            }
            let Expr::Reference(r) = strip_parens(a) else { unreachable!("a `&mut` borrow") };
            let Some(buf) = self.buffer_of(&r.expr) else {
                self.cx.error_spanned_by(
                    a,
                    "a `&mut` argument must be a local buffer (`&mut out` with `let mut out = vec![0.0; n];`)",
                );
                return None;
            };
            if !self.modifiable(buf, a) {
                return None;
            }
            args.push(Arg::Buffer { buf, borrowed: true });
            outputs.push(buf);
        }
        let mut pure = path.clone();
        pure.segments.push(syn::PathSegment::from(Ident::new("__pure", span)));
        let name = path.segments.last().map(|s| s.ident.to_string()).unwrap_or_default();
        let value = self.vars.add(name, Kind::Unknown, Role::Temp, span);
        let written: Vec<Var> = outputs
            .iter()
            .map(|b| {
                let name = format!("{}_written", self.vars.info(*b).name);
                let kind = self.vars.kind(*b);
                self.vars.add(name, kind, Role::Temp, span)
            })
            .collect();
        let mut leaves = vec![Tree::Leaf(value)];
        leaves.extend(written.iter().map(|w| Tree::Leaf(*w)));
        self.emit(Stmt::Let {
            dst: Tree::Tuple(leaves),
            rv: Rvalue::Call { callee: Callee::Free { path: pure }, args },
            span,
        });
        for (buf, w) in outputs.into_iter().zip(written) {
            self.copy_into(buf, w, span);
        }
        Some(value)
    }

    /// `Tensor::cat(&[a, b, …], axis)` and `Tensor::stack(&[a, b, …], axis)` with the
    /// tensors listed in the call, lowered to the method primitives `a.cat2(&b, axis)`
    /// and `a.cat3(&b, &c, axis)` (longer lists are joined three at a time; `stack`
    /// joins `unsqueeze(axis)` views), so each tensor's adjoint is its part of the
    /// result's. A run-time list (`Tensor::cat(&parts, 0)`) stays an opaque call, whose
    /// derivative companions the runtime provides (`Tensor::__adjoint_split_cat`).
    fn join(&mut self, path: &syn::Path, c: &syn::ExprCall) -> Option<Var> {
        let span = c.span();
        let stack = path.segments.last().is_some_and(|s| s.ident == "stack");
        let Some(elems) = listed_tensors(&c.args[0]) else { unreachable!("checked by is_join") };
        let axis = self.operand(&c.args[1]);
        let method = |name: &str| Ident::new(name, span);
        let mut parts: Vec<Operand> = Vec::with_capacity(elems.len());
        for e in elems {
            let part = self.operand(e);
            let part = if stack {
                let kind = self.kind_of(&part);
                let rv = Rvalue::Method {
                    recv: part,
                    method: method("unsqueeze"),
                    args: vec![axis.clone()],
                    by_ref: vec![false],
                };
                self.temp("unsqueezed", kind, rv, span)
            } else {
                part
            };
            parts.push(part);
        }
        let mut parts = parts.into_iter();
        let mut joined = parts.next().expect("a listed tensor");
        let kind = self.kind_of(&joined);
        let rest: Vec<Operand> = parts.collect();
        if rest.is_empty() {
            // One tensor: `cat` copies it; `stack` is its `unsqueeze` view.
            let rv = Rvalue::Method { recv: joined, method: method("contiguous"), args: vec![], by_ref: vec![] };
            return self.temp("joined", kind, rv, span).var();
        }
        for chunk in rest.chunks(2) {
            let name = if chunk.len() == 2 { "cat3" } else { "cat2" };
            let mut args = chunk.to_vec();
            args.push(axis.clone());
            let mut by_ref = vec![true; chunk.len()];
            by_ref.push(false);
            let rv = Rvalue::Method { recv: joined, method: method(name), args, by_ref };
            joined = self.temp("joined", kind, rv, span);
        }
        joined.var()
    }

    /// `let (a, (b, _)) = g(x);`: a call whose result is destructured (the pattern is
    /// made of names, see [`super::stmt::is_names_pattern`]). Returns the variables,
    /// shaped like the pattern.
    pub(super) fn call_with_tuple_result(&mut self, e: &Expr, pat: &Pat) -> Option<Tree<Var>> {
        let Expr::Call(c) = strip_parens(e) else {
            return None;
        };
        let span = c.span();
        let (callee, nested) = self.callee(&c.func)?;
        let (CalleeKind::Free(path) | CalleeKind::Assoc(path)) = callee else {
            return None;
        };
        if nested {
            self.nests = true;
        }
        let args: Vec<Arg> = c.args.iter().map(|a| self.arg(a)).collect();
        let dst = self.pattern_vars(pat, span);
        self.emit(Stmt::Let {
            dst: dst.clone(),
            rv: Rvalue::Call {
                callee: if names::is_type_path(&path) { Callee::Assoc { path } } else { Callee::Free { path } },
                args,
            },
            span,
        });
        Some(dst)
    }

    /// One fresh variable per name of a pattern of names (`_` gets an unused one).
    fn pattern_vars(&mut self, pat: &Pat, span: Span) -> Tree<Var> {
        match pat {
            Pat::Paren(p) => self.pattern_vars(&p.pat, span),
            Pat::Tuple(t) => Tree::Tuple(t.elems.iter().map(|p| self.pattern_vars(p, span)).collect()),
            Pat::Ident(pi) => {
                Tree::Leaf(self.vars.add(pi.ident.to_string(), Kind::Unknown, Role::Temp, pi.ident.span()))
            }
            _ => Tree::Leaf(self.vars.add("unused", Kind::Unknown, Role::Temp, span)),
        }
    }

    pub(super) fn callee(&mut self, func: &Expr) -> Option<(CalleeKind, bool)> {
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
                if names::is_type_path(&p.path) {
                    return Some((CalleeKind::Assoc(p.path.clone()), false));
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

    pub(super) fn arg(&mut self, a: &Expr) -> Arg {
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
            // A named sub-slice passed on as the slice reference it stands for.
            _ => match self.expr(a) {
                Value::Buffer(b) if self.views.contains(&b) => {
                    Arg::Slice { buf: b, lo: None, hi: None, inclusive: false }
                }
                // A row bound by reference (`let row = &m[i];`, `for row in m`).
                Value::Op(Operand::Var(v)) if self.borrowed.contains(&v) => Arg::Ref(Operand::Var(v)),
                Value::Buffer(b) if self.borrowed.contains(&b) => Arg::Buffer { buf: b, borrowed: true },
                v => value_arg(v),
            },
        }
    }

    pub(super) fn macro_expr(&mut self, m: &syn::ExprMacro) -> Value {
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
            // Already reported by `desugar`.
            crate::desugar::REJECTED => Value::Poison,
            _ => self.unsupported(
                &m.mac.path,
                &format!("the macro `{name}!`"),
                "only `vec!`, `grad!`, `value_and_grad!` and `vjp!` are understood",
            ),
        }
    }

    // ---------------------------------------------------------------- branches
}

/// Whether `c` is `Tensor::cat`/`Tensor::stack` of tensors listed in the call.
fn is_join(path: &syn::Path, c: &syn::ExprCall) -> bool {
    let segs: Vec<String> = path.segments.iter().map(|s| s.ident.to_string()).collect();
    let [.., ty, f] = segs.as_slice() else { return false };
    ty == "Tensor" && (f == "cat" || f == "stack") && c.args.len() == 2 && listed_tensors(&c.args[0]).is_some()
}

/// The elements of `&[a, b, …]` (at least one).
fn listed_tensors(e: &Expr) -> Option<Vec<&Expr>> {
    let Expr::Reference(r) = strip_parens(e) else { return None };
    let Expr::Array(a) = strip_parens(&r.expr) else { return None };
    (!a.elems.is_empty() && r.mutability.is_none()).then(|| a.elems.iter().collect())
}

/// The kind of a primitive method's result, given its receiver's kind.
fn output_kind(output: ops::Output, recv: Kind) -> Kind {
    match output {
        ops::Output::Bool => Kind::Bool,
        ops::Output::Int => Kind::Int,
        // `t.item()` of a tensor: the macro does not know the element type; the
        // value is a float, but an opaque one.
        ops::Output::Scalar => Kind::Unknown,
        ops::Output::Same | ops::Output::Constant => recv,
    }
}

/// `&mut x` (an argument a helper writes into).
fn is_mut_borrow(a: &Expr) -> bool {
    matches!(strip_parens(a), Expr::Reference(r) if r.mutability.is_some())
}

/// What a nalgebra constructor builds from its scalar arguments.
enum Built {
    /// `Vector3::new`, `RowVector2::new`, `Matrix2::new`, `Matrix2x3::new`: a value of
    /// these rows and columns from its elements (given row by row).
    Elements(usize, usize),
    /// `Rotation2::new(θ)`, `DMatrix::from_vec(r, c, v)`: the rule (trait, method) that
    /// gives its arguments' adjoints, and its number of arguments.
    Rule(&'static str, &'static str, usize),
}

fn nalgebra_constructor(path: &syn::Path) -> Option<Built> {
    let n = path.segments.len();
    if n < 2 {
        return None;
    }
    let ty = path.segments[n - 2].ident.to_string();
    match (&*ty, &*path.segments[n - 1].ident.to_string()) {
        ("Rotation2", "new") => return Some(Built::Rule("Rotation2New", "rotation2_new_adjoint", 1)),
        ("DMatrix", "from_vec") => return Some(Built::Rule("FromVec", "matrix_from_vec_adjoint", 3)),
        ("DVector", "from_vec") => return Some(Built::Rule("FromVec", "vector_from_vec_adjoint", 1)),
        _ => {}
    }
    if path.segments[n - 1].ident != "new" {
        return None;
    }
    let dim = |s: &str| s.parse::<usize>().ok().filter(|d| (1..=6).contains(d));
    if let Some(d) = ty.strip_prefix("Vector").and_then(dim) {
        return Some(Built::Elements(d, 1));
    }
    if let Some(d) = ty.strip_prefix("RowVector").and_then(dim) {
        return Some(Built::Elements(1, d));
    }
    let rest = ty.strip_prefix("Matrix")?;
    match rest.split_once('x') {
        Some((r, c)) => Some(Built::Elements(dim(r)?, dim(c)?)),
        None => dim(rest).map(|d| Built::Elements(d, d)),
    }
}
