//! Lowering of loops (`for` over ranges and slice iterators, `while`, `loop`) and of early exits.

use super::*;

#[derive(Clone, Debug)]
pub(super) enum ElementSource {
    Index,
    Element(Var),
}

pub(super) struct IterSpec {
    range: Range,
    elements: Vec<(Pat, ElementSource)>,
    index_name: String,
}

pub(super) enum Link {
    Rev,
    StepBy(Expr),
    Copied,
    Enumerate,
    Zip(Expr),
}

/// Split `base.a().b().c()` into the base and the adapters, innermost first.
pub(super) fn peel_adapters<'e>(e: &'e Expr, chain: &mut Vec<Link>) -> &'e Expr {
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
pub(super) fn loop_pattern(pat: &Pat, n: usize) -> Option<Vec<Pat>> {
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

impl<'a> Lowerer<'a> {
    pub(super) fn loop_frame(&mut self, exits: Exits, span: Span) -> LoopFrame {
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
    pub(super) fn keep_looping(&mut self, frame_brk: Option<Var>, exits: Exits, span: Span) -> Option<Operand> {
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
    pub(super) fn loop_body(
        &mut self,
        body: &syn::Block,
        frame: LoopFrame,
        bind: impl FnOnce(&mut Self),
    ) -> (Block, LoopFrame) {
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

    pub(super) fn loop_expr(&mut self, lp: &syn::ExprLoop) -> Value {
        let span = lp.span();
        match self.loop_binding(lp) {
            Ok(Some(b)) => self.read_binding(&b, span),
            Ok(None) => Value::Unit,
            Err(Rejected) => Value::Poison,
        }
    }

    /// A `loop`, and the cells its `break value`s assign (unread: a loop that may
    /// `return` has assigned them only if it ended by a `break`, so they are read where
    /// the value is used, after the guard of that return).
    pub(super) fn loop_binding(&mut self, lp: &syn::ExprLoop) -> Result<Option<Binding>, Rejected> {
        let span = lp.span();
        if let Some(l) = &lp.label {
            self.unsupported(l, "a loop label", "restructure the loop with flags");
            return Err(Rejected);
        }
        let mut exits = exits_of_block(&lp.body);
        exits.brk = true;
        let mut frame = self.loop_frame(exits, span);
        // `break value` needs cells for the value.
        if let Some(shape) = break_value_shape(&lp.body) {
            let mut cells: Vec<Binding> = shape
                .iter()
                .map(|kind| {
                    let c = self.vars.add("loop_value", *kind, Role::Cell, span);
                    self.emit(Stmt::Cell { var: c, init: default_value(*kind) });
                    Binding::Cell(c)
                })
                .collect();
            frame.value = Some(if cells.len() == 1 { cells.pop().expect("one cell") } else { Binding::Tuple(cells) });
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
        // The value cells' kinds are known now that the `break`s are lowered: give them
        // an initial value so rustc sees them initialised after the loop.
        let mut cells = Vec::new();
        match &frame.value {
            Some(Binding::Cell(c)) => cells.push(*c),
            Some(Binding::Tuple(items)) => cells.extend(items.iter().filter_map(|b| match b {
                Binding::Cell(c) => Some(*c),
                _ => None,
            })),
            _ => {}
        }
        for c in cells {
            let init = match self.vars.info(c).scalar_ty {
                Some(_) => Some(self.vars.zero(c)),
                None => default_value(self.vars.kind(c)),
            };
            for s in self.out.last_mut().expect("block").iter_mut().rev() {
                if let Stmt::Cell { var, init: slot } = s {
                    if *var == c {
                        if slot.is_none() {
                            *slot = init.clone();
                        }
                        break;
                    }
                }
            }
        }
        Ok(frame.value)
    }

    pub(super) fn while_loop(&mut self, w: &syn::ExprWhile) {
        let span = w.span();
        if let Some(l) = &w.label {
            self.unsupported(l, "a loop label", "restructure the loop with flags");
            return;
        }
        if let Expr::Let(l) = &*w.cond {
            // `while let Some(v) = stack.pop() { … }` drains a local buffer: the loop
            // `while !stack.is_empty() { let v = stack.pop().unwrap(); … }`.
            if let Some((pat, stack)) = pop_loop(l) {
                let body = &w.body.stmts;
                let drain: syn::ExprWhile = syn::parse_quote_spanned! {span=>
                    while !#stack.is_empty() {
                        let #pat = #stack.pop().unwrap();
                        #(#body)*
                    }
                };
                return self.while_loop(&drain);
            }
            self.unsupported(
                l,
                "this `while let`",
                "drain a local buffer with `while let Some(v) = stack.pop()`, or loop with `while` on a boolean condition",
            );
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

    pub(super) fn for_loop(&mut self, f: &syn::ExprForLoop) {
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
        // A loop that may stop early walks its index space through a cell: the index
        // itself over a plain range, the position in the iteration space over a
        // reversed or stepped one (`(a..b).rev().step_by(k)`'s indices by position).
        let stepped = !spec.range.adapters.is_empty();
        let (start, bound, op) = if stepped {
            let count = self.temp("count", Kind::Int, Rvalue::RangeLen(spec.range.clone()), span);
            (const_int(0), count, BinOp::Lt)
        } else {
            let op = if spec.range.inclusive { BinOp::Le } else { BinOp::Lt };
            (spec.range.lo.clone(), spec.range.hi.clone(), op)
        };
        let cell_name = if stepped { "next_position".to_string() } else { format!("next_{index_name}") };
        let idx = self.vars.add(cell_name, Kind::Int, Role::Cell, span);
        self.emit(Stmt::Cell { var: idx, init: Some(start) });
        let brk = frame.brk;
        let mut cond_out = None;
        let header = self.nested(|l| {
            let cur = l.temp("index", Kind::Int, Rvalue::Use(Operand::Var(idx)), span);
            let in_range = l.temp("in_range", Kind::Bool, Rvalue::Binary(op, cur, bound), span);
            let c = match l.keep_looping(brk, exits, span) {
                Some(go) => l.temp("go_on", Kind::Bool, Rvalue::Binary(BinOp::BitAnd, go, in_range), span),
                None => in_range,
            };
            cond_out = Some(c);
        });
        let cond = cond_out.expect("loop condition");
        let elems = spec.elements.clone();
        let range = spec.range;
        let (body, _) = self.loop_body(&f.body, frame, |l| {
            let cur_name = if stepped { "position" } else { index_name.as_str() };
            let cur = l.temp(cur_name, Kind::Int, Rvalue::Use(Operand::Var(idx)), span);
            let next = l.temp("next", Kind::Int, Rvalue::Binary(BinOp::Add, cur.clone(), const_int(1)), span);
            l.emit(Stmt::Assign { var: idx, value: next });
            let i = match stepped {
                true => l.temp(&index_name, Kind::Int, Rvalue::RangeNth(range, cur), span),
                false => cur,
            };
            l.bind_elements(&elems, i, span);
        });
        self.emit(Stmt::While { header, cond, body });
    }

    pub(super) fn bind_elements(&mut self, elems: &[(Pat, ElementSource)], index: Operand, span: Span) {
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
    pub(super) fn iteration(&mut self, iter: &Expr, pat: &Pat) -> Option<IterSpec> {
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
                // Iteration over slices: `x`, `&x`, `x.iter()`, with `zip` inside the chain;
                // also over a field or a call's result (`&self.layers`).
                let buf = match names_a_field(other) {
                    true => self.field_buffer(other),
                    false => self.slice_like(other),
                };
                let Some(buf) = buf else {
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
                    // The index pairs with everything before it: `(i, (a, b))` after
                    // `.zip(…)`, `(i, a)` right after `.iter()`.
                    let before: Vec<ElementSource> = sources.drain(..).flatten().collect();
                    sources.push(vec![ElementSource::Index]);
                    sources.push(before);
                }
                Link::Zip(other) => {
                    if !range.adapters.is_empty() {
                        self.unsupported(iter, "`zip` after `rev`/`step_by`", "zip first, then reverse");
                        return None;
                    }
                    let Some(b2) = self.slice_like(&other) else {
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
                        Rvalue::Method {
                            recv: range.hi.clone(),
                            method: Ident::new("min", span),
                            args: vec![len2],
                            by_ref: vec![false],
                        },
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

    pub(super) fn return_expr(&mut self, r: &syn::ExprReturn) {
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

    pub(super) fn break_expr(&mut self, b: &syn::ExprBreak) {
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

    pub(super) fn continue_expr(&mut self, c: &syn::ExprContinue) {
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
}

/// `self.layers`, `&self.layers`, `self.layers.iter()`: a field iterated in place.
fn names_a_field(e: &Expr) -> bool {
    match strip_parens(e) {
        Expr::Field(_) => true,
        Expr::Reference(r) => r.mutability.is_none() && names_a_field(&r.expr),
        Expr::MethodCall(m) => m.args.is_empty() && m.method == "iter" && names_a_field(&m.receiver),
        _ => false,
    }
}

/// A construct already reported as an error.
pub(super) struct Rejected;

/// `let Some(p) = stack.pop()` (a local buffer named by a path): the pattern and the buffer.
fn pop_loop(l: &syn::ExprLet) -> Option<(&syn::Pat, &Expr)> {
    let syn::Pat::TupleStruct(ts) = &*l.pat else { return None };
    if !ts.path.is_ident("Some") || ts.elems.len() != 1 {
        return None;
    }
    let Expr::MethodCall(m) = &*l.expr else { return None };
    if m.method != "pop" || !m.args.is_empty() || !matches!(&*m.receiver, Expr::Path(_)) {
        return None;
    }
    Some((&ts.elems[0], &m.receiver))
}
