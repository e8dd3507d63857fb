//! Lowering of buffers: `vec![…]`, arrays, `Vec::with_capacity` + `push`, copies, sub-slices and folds.

use super::*;

pub(crate) enum VecMacro {
    Repeat(Box<Expr>, Box<Expr>),
    List(Vec<Expr>),
}

pub(crate) fn parse_vec_macro(m: &syn::Macro) -> syn::Result<VecMacro> {
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

impl<'a> Lowerer<'a> {
    /// `vec![…]`, `[…]`, `Vec::new()`, `Vec::with_capacity(n)`, `x.to_vec()`: a new buffer.
    pub(super) fn buffer_constructor(&mut self, e: &Expr, name: &Ident) -> Option<Var> {
        let span = e.span();
        let init = match e {
            Expr::Macro(m) if m.mac.path.is_ident("vec") => match parse_vec_macro(&m.mac) {
                Ok(VecMacro::Repeat(v, n)) => {
                    let value = self.operand(&v);
                    if let Operand::Var(row) = &value {
                        self.type_row_literal(*row);
                    }
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
                let src = match m.method == "to_vec" {
                    true => self.slice_like(&m.receiver)?,
                    false => self.buffer_of(&m.receiver)?,
                };
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
            // Rows (`vec![vec![0.0; n]; m]`, `[[0.0; 2]; 4]`) are elements the macro does
            // not look into, as any value of unknown type.
            Kind::Unknown | Kind::Buffer(_) => Elem::Unknown,
            Kind::Float => Elem::Float,
        };
        let v = self.vars.add(name.to_string(), Kind::Buffer(elem), Role::Buffer, name.span());
        self.emit(Stmt::Buffer { var: v, init });
        Some(v)
    }

    /// `let v = x.to_vec();` as an explicit loop of pushes (each element keeps its
    /// derivative without a dedicated rule).
    pub(super) fn copy_buffer(&mut self, src: Var, name: &Ident, span: Span) -> Var {
        let len = self.temp("len", Kind::Int, Rvalue::Len(src), span);
        let kind = self.vars.kind(src);
        let v = self.vars.add(name.to_string(), kind, Role::Buffer, name.span());
        self.emit(Stmt::Buffer { var: v, init: BufferInit::Empty { capacity: Some(len.clone()) } });
        self.each_index(len, span, |l, i| {
            let x = l.temp("elem", kind.element(), Rvalue::Index { buf: src, index: i }, span);
            l.emit(Stmt::Push { buf: v, value: x });
        });
        v
    }

    /// `for i in 0..len { body(i) }`.
    pub(super) fn each_index(&mut self, len: Operand, span: Span, body: impl FnOnce(&mut Self, Operand)) {
        let i = self.vars.add("i", Kind::Int, Role::Index, span);
        let body = self.nested(|l| body(l, Operand::Var(i)));
        self.emit(Stmt::For {
            var: i,
            range: Range { lo: const_int(0), hi: len, inclusive: false, adapters: Vec::new() },
            body,
        });
    }

    /// The buffer a `for` loop over a field iterates (`&self.layers`,
    /// `self.layers.iter()`): the field bound to a temporary, as if the user had written
    /// `let layers = &self.layers;`, and used as a buffer whose elements' type the macro
    /// cannot see.
    pub(super) fn field_buffer(&mut self, e: &Expr) -> Option<Var> {
        match strip_parens(e) {
            Expr::Reference(r) => self.field_buffer(&r.expr),
            Expr::MethodCall(m) => self.field_buffer(&m.receiver),
            e @ Expr::Field(_) => match self.expr(e) {
                Value::Op(Operand::Var(v)) if self.vars.role(v) == Role::Temp && self.vars.kind(v) == Kind::Unknown => {
                    self.vars.info_mut(v).kind = Kind::Buffer(Elem::Unknown);
                    Some(v)
                }
                _ => None,
            },
            _ => None,
        }
    }

    pub(super) fn buffer_of(&mut self, e: &Expr) -> Option<Var> {
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

    /// [`Lowerer::buffer_of`], also accepting a value whose type the macro cannot see
    /// (the `Vec` a nested `grad!` or another call returned) where the syntax says it
    /// is a slice: iterated, zipped, sub-sliced, `.iter().sum()`, `.to_vec()`. From then
    /// on it is a buffer like any other, of elements the macro cannot see.
    pub(super) fn slice_like(&mut self, e: &Expr) -> Option<Var> {
        if let Some(b) = self.buffer_of(e) {
            return Some(b);
        }
        let named = match strip_parens(e) {
            Expr::Reference(r) if r.mutability.is_none() => return self.slice_like(&r.expr),
            Expr::MethodCall(m) if m.args.is_empty() && (m.method == "iter" || m.method == "as_slice") => {
                return self.slice_like(&m.receiver)
            }
            // A row of a buffer of rows: `m[i].to_vec()`, `m[i].iter()`.
            Expr::Index(ix) if !matches!(strip_parens(&ix.index), Expr::Range(_)) => {
                let rows = self.buffer_of(&ix.expr)?;
                if self.vars.kind(rows) != Kind::Buffer(Elem::Unknown) {
                    return None;
                }
                let index = self.operand(&ix.index);
                let span = ix.span();
                let row = self.temp("row", Kind::Buffer(Elem::Unknown), Rvalue::Index { buf: rows, index }, span);
                return row.var();
            }
            Expr::Path(p) => p.path.get_ident()?,
            _ => return None,
        };
        let Some(Binding::Value(Operand::Var(v))) = self.lookup(&named.to_string()).cloned() else {
            return None;
        };
        if self.vars.kind(v) != Kind::Unknown || self.vars.role(v) != Role::Temp {
            return None;
        }
        self.vars.info_mut(v).kind = Kind::Buffer(Elem::Unknown);
        self.rebind(&named.to_string(), Binding::Buffer(v));
        Some(v)
    }

    pub(super) fn sub_slice(&mut self, base: &Expr, range: &syn::ExprRange) -> Value {
        let Some(buf) = self.slice_like(base) else {
            self.cx.error_spanned_by(base, "sub-slices are supported on slices, vectors and arrays bound to a name");
            return Value::Poison;
        };
        let lo = range.start.as_ref().map(|e| self.operand(e));
        let hi = range.end.as_ref().map(|e| self.operand(e));
        let inclusive = matches!(range.limits, syn::RangeLimits::Closed(_));
        Value::Slice { buf, lo, hi, inclusive }
    }

    // ---------------------------------------------------------------- calls

    /// `x.iter().sum()` / `.product()` as a loop.
    pub(super) fn fold_buffer(&mut self, buf: Var, sum: bool, span: Span) -> Value {
        let kind = self.vars.kind(buf).element();
        let acc = self.vars.add(if sum { "total" } else { "product" }, kind, Role::Cell, span);
        self.emit(Stmt::Cell { var: acc, init: Some(Operand::float(if sum { "0.0" } else { "1.0" })) });
        let len = self.temp("len", Kind::Int, Rvalue::Len(buf), span);
        self.each_index(len, span, |l, i| {
            let x = l.temp("elem", kind, Rvalue::Index { buf, index: i }, span);
            let cur = l.temp("acc", kind, Rvalue::Use(Operand::Var(acc)), span);
            let op = if sum { BinOp::Add } else { BinOp::Mul };
            let next = l.temp("acc", kind, Rvalue::Binary(op, cur, x), span);
            l.emit(Stmt::Assign { var: acc, value: next });
        });
        Value::Op(self.temp("folded", kind, Rvalue::Use(Operand::Var(acc)), span))
    }

    // ---------------------------------------------------------------- whole buffers

    /// `dst = src;` for two buffers: an element-wise copy, so that the values `dst`
    /// held are saved for the reverse sweep like any overwritten element. The lengths
    /// must agree (double buffering): a store one past `dst`'s end, made only when they
    /// differ, panics there rather than leave a stale tail.
    pub(super) fn copy_into(&mut self, dst: Var, src: Var, span: Span) {
        self.same_length(dst, src, span);
        let len = self.temp("len", Kind::Int, Rvalue::Len(src), span);
        let kind = self.vars.kind(src).element();
        self.each_index(len, span, |l, i| {
            let x = l.temp("elem", kind, Rvalue::Index { buf: src, index: i.clone() }, span);
            l.emit(Stmt::Store { buf: dst, index: i, value: x });
        });
    }

    /// `std::mem::swap(&mut a, &mut b)` of two buffers: the contents exchanged as a whole
    /// (and, in the reverse sweep, their adjoints), whatever their lengths.
    pub(super) fn swap_buffers(&mut self, a: Var, b: Var) {
        self.emit(Stmt::Swap { a, b });
    }

    /// `rules::Lengths::assert_same(&len(a), &len(b))`: a panic naming both lengths where
    /// two buffers that must be as long as each other (`u = next;`) are not.
    fn same_length(&mut self, a: Var, b: Var, span: Span) {
        let la = self.temp("len", Kind::Int, Rvalue::Len(a), span);
        let lb = self.temp("len", Kind::Int, Rvalue::Len(b), span);
        let check = Callee::Rule { trait_name: "Lengths", method: "assert_same".into() };
        let rv = Rvalue::Call { callee: check, args: vec![Arg::Ref(la), Arg::Ref(lb)] };
        self.emit(Stmt::Let { dst: Tree::Tuple(Vec::new()), rv, span });
    }
}

impl Lowerer<'_> {
    /// `v.sort_by(cmp)`: the order the comparator asks for (a decision, like a branch),
    /// then the elements gathered in it from a copy, so each adjoint goes back to where
    /// its element came from.
    pub(super) fn sort_buffer(&mut self, buf: Var, cmp: &Expr, span: Span) {
        let Some(direction) = comparator(cmp) else {
            self.cx.error_spanned_by(
                cmp,
                "this comparator is not supported: compare the two elements, `|a, b| a.partial_cmp(b).unwrap()` (`b.partial_cmp(a)` for descending, or `total_cmp`)",
            );
            return;
        };
        // Elements the macro cannot see are floats too: the comparator compares them as such.
        if !matches!(self.vars.kind(buf), Kind::Buffer(Elem::Float | Elem::Unknown)) {
            self.cx.error_spanned_by(cmp, "only buffers of floats can be sorted here");
            return;
        }
        let order = self.temp("order", Kind::Buffer(Elem::Int), Rvalue::SortOrder { buf, direction }, span);
        let Operand::Var(order) = order else { return };
        let unsorted = self.copy_buffer(buf, &Ident::new("unsorted", span), span);
        let len = self.temp("len", Kind::Int, Rvalue::Len(buf), span);
        self.each_index(len, span, |l, i| {
            let from = l.temp("from", Kind::Int, Rvalue::Index { buf: order, index: i.clone() }, span);
            let kind = l.vars.kind(unsorted).element();
            let x = l.temp("sorted", kind, Rvalue::Index { buf: unsorted, index: from }, span);
            l.emit(Stmt::Store { buf, index: i, value: x });
        });
    }
}

/// The direction a comparator sorts in: `|a, b| a.partial_cmp(b).unwrap()` (or
/// `.expect(…)`), `|a, b| a.total_cmp(b)`, either with the operands swapped, with
/// `&`/`*` on either side or `|&a, &b|` patterns; and `f64::total_cmp`.
fn comparator(e: &Expr) -> Option<SortDirection> {
    let e = strip_parens(e);
    if let Expr::Path(p) = e {
        let last = p.path.segments.last()?;
        return (last.ident == "total_cmp").then_some(SortDirection::TotalAscending);
    }
    let Expr::Closure(c) = e else { return None };
    if c.inputs.len() != 2 {
        return None;
    }
    let names: Vec<String> = c.inputs.iter().map(param_name).collect::<Option<_>>()?;
    let mut body = strip_parens(&c.body);
    while let Expr::Block(b) = body {
        match b.block.stmts.as_slice() {
            [syn::Stmt::Expr(inner, None)] => body = strip_parens(inner),
            _ => return None,
        }
    }
    let Expr::MethodCall(call) = body else { return None };
    let (total, cmp) = match call.method.to_string().as_str() {
        "total_cmp" => (true, call),
        "unwrap" | "expect" => match strip_parens(&call.receiver) {
            Expr::MethodCall(inner) if inner.method == "partial_cmp" => (false, inner),
            _ => return None,
        },
        _ => return None,
    };
    if cmp.args.len() != 1 {
        return None;
    }
    let (lhs, rhs) = (operand_name(&cmp.receiver)?, operand_name(&cmp.args[0])?);
    let ascending = if lhs == names[0] && rhs == names[1] {
        true
    } else if lhs == names[1] && rhs == names[0] {
        false
    } else {
        return None;
    };
    Some(match (total, ascending) {
        (false, true) => SortDirection::Ascending,
        (false, false) => SortDirection::Descending,
        (true, true) => SortDirection::TotalAscending,
        (true, false) => SortDirection::TotalDescending,
    })
}

/// `a`, `&a`, `a: &f64`: the name a comparator's parameter binds.
fn param_name(p: &syn::Pat) -> Option<String> {
    match p {
        syn::Pat::Ident(i) => Some(i.ident.to_string()),
        syn::Pat::Reference(r) => param_name(&r.pat),
        syn::Pat::Type(t) => param_name(&t.pat),
        _ => None,
    }
}

/// `a`, `&a`, `*a`, `(a)`: the name compared.
fn operand_name(e: &Expr) -> Option<String> {
    match strip_parens(e) {
        Expr::Path(p) => p.path.get_ident().map(|i| i.to_string()),
        Expr::Reference(r) => operand_name(&r.expr),
        Expr::Unary(u) if matches!(u.op, syn::UnOp::Deref(_)) => operand_name(&u.expr),
        _ => None,
    }
}

impl Lowerer<'_> {
    /// `vec![vec![0.0; n]; m]`: the row's untyped literal gets the function's float type
    /// (when its float arguments all have one, `f64` or `f32`). In the user's code the
    /// first arithmetic on an element fixes it; in derivative code that arithmetic may be
    /// pruned (a matrix read but never written), and a generic rule cannot infer it.
    fn type_row_literal(&mut self, row: Var) {
        let mut types = self.sig.params.iter().filter_map(|p| float_name(&p.ty));
        let Some(ty) = types.next() else { return };
        if types.any(|t| t != ty) || !self.sig.float_params.is_empty() {
            return;
        }
        let Some(block) = self.out.last_mut() else { return };
        for s in block.iter_mut().rev() {
            if let Stmt::Buffer { var, init: BufferInit::Repeat { value: Operand::Const(c), .. } } = s {
                if *var != row {
                    continue;
                }
                if let Ok(syn::Lit::Float(f)) = syn::parse2::<syn::Lit>(c.tokens.clone()) {
                    if f.suffix().is_empty() {
                        c.tokens = format!("{}{ty}", f.base10_digits()).parse().unwrap_or_else(|_| c.tokens.clone());
                    }
                }
                return;
            }
        }
    }
}

/// `f64` or `f32` of a parameter type (`f64`, `&[f64]`, `Vec<f32>`, …).
fn float_name(ty: &syn::Type) -> Option<String> {
    match sig::strip_ref(ty) {
        syn::Type::Path(p) => {
            let last = p.path.segments.last()?;
            let name = last.ident.to_string();
            if name == "f64" || name == "f32" {
                return Some(name);
            }
            match &last.arguments {
                syn::PathArguments::AngleBracketed(a) => match a.args.first()? {
                    syn::GenericArgument::Type(t) => float_name(t),
                    _ => None,
                },
                _ => None,
            }
        }
        syn::Type::Slice(s) => float_name(&s.elem),
        syn::Type::Array(a) => float_name(&a.elem),
        _ => None,
    }
}
