//! The forward sweep: the primal code pruned to what the reverse sweep and the result need, with saves of the values it cannot recompute.

use super::*;

pub(super) fn save_stmt(vars: &Vars, store: Var, v: Var) -> Stmt {
    match vars.role(store) {
        Role::Tape => Stmt::Push { buf: store, value: Operand::Var(v) },
        _ => Stmt::Save { slot: store, value: Operand::Var(v) },
    }
}

impl<'a> Transform<'a> {
    /// The primal code, pruned to what the reverse sweep (and the value) need, with
    /// saves of the values the reverse sweep cannot recompute.
    pub(super) fn forward_sweep(&mut self, keep_value: bool) -> Block {
        let mut needed: HashSet<Var> = HashSet::new();
        for (v, _) in &self.needs {
            let region = self.def_region.get(v).copied().unwrap_or(0);
            if region == 0 {
                needed.insert(*v);
            }
        }
        for (v, how) in &self.decided {
            match how {
                Materialize::Save => {
                    needed.insert(*v);
                }
                Materialize::Recompute => {
                    if let Some(Stmt::Let { rv, .. }) = self.def_stmt.get(v).copied() {
                        for o in rv.operands() {
                            if let Some(x) = o.var() {
                                if self.def_region.get(&x).copied().unwrap_or(0) == 0 {
                                    needed.insert(x);
                                }
                            }
                        }
                    }
                }
            }
        }
        if keep_value {
            for o in self.src.ret.leaves() {
                if let Some(v) = o.var() {
                    needed.insert(v);
                }
            }
        }
        for (fin, rv) in self.finals.values().flatten() {
            if self.store.contains_key(fin) {
                needed.extend(rv.operands().iter().filter_map(|o| o.var()));
            }
        }
        for (snap, rv) in self.snapshots.values().flatten() {
            if needed.contains(snap) || self.store.contains_key(snap) {
                needed.insert(*snap);
                needed.extend(rv.operands().iter().filter_map(|o| o.var()));
            }
        }
        // Close over data and control dependencies.
        loop {
            let before = needed.len();
            let src = self.src;
            self.close_needed(&src.body, &mut needed);
            if needed.len() == before {
                break;
            }
        }
        let src = self.src;
        self.emit_forward(&src.body, &needed)
    }

    /// Whether anything inside a block is kept: a statement, or a snapshot taken before
    /// one (a buffer passed to a call in a branch whose value is otherwise unused).
    pub(super) fn block_kept(&self, block: &Block, needed: &HashSet<Var>) -> bool {
        block.iter().any(|s| {
            self.stmt_kept(s, needed)
                || self
                    .snapshots
                    .get(&(s as *const Stmt))
                    .is_some_and(|snaps| snaps.iter().any(|(snap, _)| needed.contains(snap)))
        })
    }

    pub(super) fn stmt_kept(&self, s: &Stmt, needed: &HashSet<Var>) -> bool {
        let region_has_finals = |b: &Block| {
            self.finals.get(&self.region_of(b)).is_some_and(|f| f.iter().any(|(fin, _)| self.store.contains_key(fin)))
        };
        match s {
            // A pop shortens its buffer or tape: kept while anything later reads that
            // buffer (its length, a later pop's value), whether or not the value is used.
            Stmt::Let { rv: Rvalue::Pop(b), .. } if needed.contains(b) => true,
            // A check that returns nothing (`rules::Lengths::assert_same`) runs wherever
            // the primal would have.
            Stmt::Let { dst: Tree::Tuple(items), rv: Rvalue::Call { callee: Callee::Rule { .. }, .. }, .. }
                if items.is_empty() =>
            {
                true
            }
            Stmt::Let { dst, .. } => dst.leaves().iter().any(|v| needed.contains(v) || self.store.contains_key(v)),
            Stmt::Cell { var, .. } | Stmt::Buffer { var, .. } | Stmt::Tape { var } | Stmt::Slot { var } => {
                needed.contains(var)
            }
            Stmt::Assign { var, .. } => needed.contains(var),
            Stmt::Store { buf, .. } | Stmt::Push { buf, .. } => needed.contains(buf),
            Stmt::Swap { a, b } => needed.contains(a) || needed.contains(b),
            Stmt::Accumulate { place, .. } => needed.contains(&place.target()),
            Stmt::Save { slot, .. } => needed.contains(slot),
            Stmt::Reserve { tape, .. } => needed.contains(tape) || self.store.values().any(|t| t == tape),
            Stmt::If { then_, else_, .. } => {
                self.block_kept(then_, needed)
                    || self.block_kept(else_, needed)
                    || region_has_finals(then_)
                    || region_has_finals(else_)
            }
            Stmt::For { body, .. } => self.block_kept(body, needed) || region_has_finals(body),
            Stmt::While { body, .. } => {
                self.block_kept(body, needed)
                    || self.trips.contains_key(&(body as *const Block))
                    || region_has_finals(body)
            }
        }
    }

    pub(super) fn close_needed(&self, block: &Block, needed: &mut HashSet<Var>) {
        let add = |ops: Vec<Operand>, needed: &mut HashSet<Var>| {
            for o in ops {
                if let Some(v) = o.var() {
                    needed.insert(v);
                }
            }
        };
        for s in block {
            if !self.stmt_kept(s, needed) {
                continue;
            }
            match s {
                Stmt::Let { rv, .. } => {
                    add(rv.operands(), needed);
                    if let Rvalue::Use(Operand::Var(c)) = rv {
                        needed.insert(*c);
                    }
                }
                Stmt::Cell { init: Some(o), .. } | Stmt::Assign { value: o, .. } | Stmt::Save { value: o, .. } => {
                    add(vec![o.clone()], needed)
                }
                Stmt::Buffer { init, .. } => add(init.operands(), needed),
                Stmt::Store { index, value, .. } => add(vec![index.clone(), value.clone()], needed),
                Stmt::Push { value, .. } => add(vec![value.clone()], needed),
                Stmt::Swap { a, b } => add(vec![Operand::Var(*a), Operand::Var(*b)], needed),
                Stmt::Accumulate { place, value } => {
                    let mut ops = place.operands();
                    ops.push(value.clone());
                    add(ops, needed);
                }
                Stmt::If { cond, then_, else_ } => {
                    add(vec![cond.clone()], needed);
                    self.close_needed(then_, needed);
                    self.close_needed(else_, needed);
                }
                Stmt::For { range, body, .. } => {
                    add(range.operands(), needed);
                    self.close_needed(body, needed);
                }
                Stmt::While { header, cond, body } => {
                    add(vec![cond.clone()], needed);
                    self.close_needed(header, needed);
                    self.close_needed(body, needed);
                }
                Stmt::Reserve { range, .. } => add(range.operands(), needed),
                Stmt::Cell { init: None, .. } | Stmt::Tape { .. } | Stmt::Slot { .. } => {}
            }
        }
    }

    pub(super) fn emit_forward(&mut self, block: &'a Block, needed: &HashSet<Var>) -> Block {
        let mut out = self.emit_forward_stmts(block, needed);
        let region = self.region_of(block);
        for (fin, rv) in self.finals.get(&region).cloned().unwrap_or_default() {
            if let Some(st) = self.store.get(&fin).copied() {
                let span = self.vars.info(fin).span;
                out.push(Stmt::Let { dst: Tree::Leaf(fin), rv, span });
                out.push(save_stmt(&self.vars, st, fin));
            }
        }
        out
    }

    pub(super) fn emit_forward_stmts(&mut self, block: &'a Block, needed: &HashSet<Var>) -> Block {
        let mut out = Vec::new();
        for s in block {
            for (snap, rv) in self.snapshots.get(&(s as *const Stmt)).cloned().unwrap_or_default() {
                if needed.contains(&snap) {
                    let span = self.vars.info(snap).span;
                    out.push(Stmt::Let { dst: Tree::Leaf(snap), rv, span });
                    if let Some(st) = self.store.get(&snap).copied() {
                        out.push(save_stmt(&self.vars, st, snap));
                    }
                }
            }
            if !self.stmt_kept(s, needed) {
                continue;
            }
            match s {
                Stmt::If { cond, then_, else_ } => {
                    let t = self.emit_forward(then_, needed);
                    let e = self.emit_forward(else_, needed);
                    out.push(Stmt::If { cond: cond.clone(), then_: t, else_: e });
                }
                Stmt::For { var, range, body } => {
                    let b = self.emit_forward(body, needed);
                    // A tape pushed once per iteration gets its capacity up front: one
                    // allocation per loop instead of one per doubling.
                    let mut reserved = Vec::new();
                    for s in &b {
                        if let Stmt::Push { buf, .. } = s {
                            if self.vars.role(*buf) == Role::Tape && !reserved.contains(buf) {
                                reserved.push(*buf);
                                out.push(Stmt::Reserve { tape: *buf, range: range.clone() });
                            }
                        }
                    }
                    out.push(Stmt::For { var: *var, range: range.clone(), body: b });
                }
                Stmt::While { header, cond, body } => {
                    let h = self.emit_forward(header, needed);
                    let mut b = self.emit_forward(body, needed);
                    if let Some((counter, trips)) = self.trips.get(&(body as *const Block)).copied() {
                        out.push(Stmt::Cell {
                            var: counter,
                            init: Some(Operand::Const(Const {
                                tokens: quote!(0usize),
                                kind: Kind::Int,
                                scalar_ty: None,
                            })),
                        });
                        let span = Span::call_site();
                        let cur = self.vars.add("trip", Kind::Int, Role::Temp, span);
                        let next = self.vars.add("trip", Kind::Int, Role::Temp, span);
                        let mut counted = vec![
                            Stmt::Let { dst: Tree::Leaf(cur), rv: Rvalue::Use(Operand::Var(counter)), span },
                            Stmt::Let {
                                dst: Tree::Leaf(next),
                                rv: Rvalue::Binary(
                                    BinOp::Add,
                                    Operand::Var(cur),
                                    Operand::Const(Const { tokens: quote!(1), kind: Kind::Int, scalar_ty: None }),
                                ),
                                span,
                            },
                            Stmt::Assign { var: counter, value: Operand::Var(next) },
                        ];
                        counted.append(&mut b);
                        b = counted;
                        out.push(Stmt::While { header: h, cond: cond.clone(), body: b });
                        out.push(Stmt::Let { dst: Tree::Leaf(trips), rv: Rvalue::Use(Operand::Var(counter)), span });
                        if let Some(s) = self.store.get(&trips).copied() {
                            out.push(save_stmt(&self.vars, s, trips));
                        }
                    } else {
                        out.push(Stmt::While { header: h, cond: cond.clone(), body: b });
                    }
                }
                Stmt::Let { dst, span, .. } => {
                    match self.split.get(&(s as *const Stmt)) {
                        Some(call) => out.push(Stmt::Let {
                            dst: Tree::Tuple(vec![dst.clone(), Tree::Leaf(call.pullback)]),
                            rv: Rvalue::Call { callee: call.callee.clone(), args: call.args.clone() },
                            span: *span,
                        }),
                        None => out.push(s.clone()),
                    }
                    for v in dst.leaves() {
                        if let Some(st) = self.store.get(v).copied() {
                            out.push(save_stmt(&self.vars, st, *v));
                        }
                    }
                }
                other => out.push(other.clone()),
            }
        }
        out
    }
}
