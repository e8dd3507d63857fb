//! Adjoint variables: how each is held (a single `let`, a chain, an accumulator), zeros of the right shape, and adding contributions.

use super::*;

impl<'a> Transform<'a> {
    pub(super) fn adj_name(&self, v: Var) -> String {
        format!("{}_bar", self.vars.info(v).name)
    }

    /// The accumulator of `v`, declared at the start of its region's reverse.
    pub(super) fn accumulator(&mut self, v: Var) -> Var {
        if let Some(a) = self.adj.get(&v) {
            return *a;
        }
        let info = self.vars.info(v).clone();
        let region = self.def_region.get(&v).copied().unwrap_or(0);
        let premade = self.acc_vars.get(&v).copied();
        let (acc, decl) = match info.role {
            Role::Buffer | Role::Param if info.kind.is_buffer() => {
                let a = premade.unwrap_or_else(|| self.vars.add_like(v, self.adj_name(v), Role::Buffer));
                let like = if self.available_in_reverse(v) {
                    v
                } else {
                    // A buffer local to a branch or a loop body is out of scope in the
                    // reverse sweep: a zero of its final shape is saved at the end of its
                    // region instead.
                    let shape = self.vars.add_like(v, format!("{}_shape", info.name), Role::Temp);
                    self.def_region.insert(shape, region);
                    self.finals.entry(region).or_default().push((shape, Rvalue::Zero(Operand::Var(v))));
                    shape
                };
                self.needs.push((like, region));
                (a, Stmt::Buffer { var: a, init: BufferInit::ZerosLike(like) })
            }
            Role::Tape => {
                let a = premade.unwrap_or_else(|| self.vars.add_like(v, self.adj_name(v), Role::Tape));
                (a, Stmt::Tape { var: a })
            }
            Role::Slot => {
                let a = premade.unwrap_or_else(|| self.vars.add_like(v, self.adj_name(v), Role::Slot));
                (a, Stmt::Slot { var: a })
            }
            _ => {
                let a = premade.unwrap_or_else(|| self.vars.add_like(v, self.adj_name(v), Role::Cell));
                let (prelude, init) = self.zero_of(v, region);
                self.accumulators.entry(region).or_default().extend(prelude);
                (a, Stmt::Cell { var: a, init: Some(init) })
            }
        };
        self.accumulators.entry(region).or_default().push(decl);
        self.adj.insert(v, acc);
        acc
    }

    /// Whether the reverse sweep can read the variable `v` itself: parameters and values
    /// of the function's top level stay in scope; temporaries of nested regions are made
    /// available by [`Transform::materialize_region`]; a buffer local to a nested region
    /// is not (what the reverse needs of it is saved or snapshotted instead).
    pub(super) fn available_in_reverse(&self, v: Var) -> bool {
        self.vars.role(v) != Role::Buffer || self.def_region.get(&v).copied().unwrap_or(0) == 0
    }

    /// A zero shaped like `v`, usable at the start of `region`'s reverse (with the
    /// statement computing it, if any).
    pub(super) fn zero_of(&mut self, v: Var, region: RegionId) -> (Option<Stmt>, Operand) {
        let kind = self.vars.kind(v);
        if kind == Kind::Float {
            return (None, self.vars.zero(v));
        }
        // An unknown type: zero_like of a value of the same shape. For a cell, that is
        // its initial value (cells keep their shape), or else its final value: the cell
        // itself at the top level, a copy saved at the end of its region elsewhere.
        let like = match self.def_stmt.get(&v) {
            Some(Stmt::Cell { init: Some(o), .. }) => o.clone(),
            Some(Stmt::Cell { init: None, .. }) if region != 0 => {
                // The zero itself is saved (not the final value it is shaped by): the
                // cell of a loop that may `return` may never be assigned.
                let info = self.vars.info(v).clone();
                let zero = self.vars.add_like(v, format!("{}_zero", info.name), Role::Temp);
                self.def_region.insert(zero, region);
                self.finals.entry(region).or_default().push((zero, Rvalue::Zero(Operand::Var(v))));
                self.needs.push((zero, region));
                return (None, Operand::Var(zero));
            }
            _ => Operand::Var(v),
        };
        if let Operand::Const(c) = &like {
            if c.kind == Kind::Float {
                return (None, self.vars.zero(v));
            }
        }
        if let Operand::Var(l) = &like {
            self.needs.push((*l, region));
        }
        let span = self.vars.info(v).span;
        let z = self.vars.add_like(v, format!("{}_zero", self.vars.info(v).name), Role::Temp);
        (Some(Stmt::Let { dst: Tree::Leaf(z), rv: Rvalue::Zero(like), span }), Operand::Var(z))
    }

    /// Add a contribution `c` to the adjoint of `o`, emitting into `out`.
    pub(super) fn contribute(&mut self, o: &Operand, c: Operand, out: &mut Block) {
        let Some(v) = o.var() else { return };
        if !self.active(v) {
            return;
        }
        match self.plan.get(&v).copied().unwrap_or(AdjPlan::Accumulator) {
            AdjPlan::Single => {
                // An immutable value is the adjoint itself (a fresh temporary of the
                // transform also takes the adjoint's name); anything else is copied.
                if let Operand::Var(t) = &c {
                    if matches!(self.vars.role(*t), Role::Temp | Role::Param) {
                        let fresh = t.0 as usize >= self.src.vars.len() && self.vars.role(*t) == Role::Temp;
                        if fresh && !self.adj.values().any(|a| a == t) {
                            self.vars.info_mut(*t).name = self.adj_name(v);
                        }
                        self.adj.insert(v, *t);
                        return;
                    }
                }
                let a = self.vars.add_like(v, self.adj_name(v), Role::Temp);
                out.push(Stmt::Let { dst: Tree::Leaf(a), rv: Rvalue::Use(c), span: self.vars.info(v).span });
                self.adj.insert(v, a);
            }
            AdjPlan::Chain => {
                if let Some(acc) = self.adj.get(&v).copied() {
                    out.push(Stmt::Accumulate { place: Place::Cell(acc), value: c });
                } else {
                    let acc = self.acc_vars[&v];
                    out.push(Stmt::Cell { var: acc, init: Some(c) });
                    self.adj.insert(v, acc);
                }
            }
            AdjPlan::Accumulator => {
                let acc = self.accumulator(v);
                // A buffer's adjoint is a buffer, added to elementwise; a value held in
                // a cell (a returned `Vec` used as a buffer included) is added as a whole.
                let place = if self.vars.kind(v).is_buffer() && self.vars.role(acc) != Role::Cell {
                    Place::Slice { buf: acc, lo: None, hi: None, inclusive: false }
                } else {
                    Place::Cell(acc)
                };
                out.push(Stmt::Accumulate { place, value: c });
            }
        }
    }

    /// The complete adjoint of `v`, read where its definition is reversed.
    pub(super) fn adj_value(&mut self, v: Var, out: &mut Block) -> Option<Operand> {
        let a = *self.adj.get(&v)?;
        match self.vars.role(a) {
            Role::Cell => {
                let t = self.vars.add_like(v, self.adj_name(v), Role::Temp);
                out.push(Stmt::Let {
                    dst: Tree::Leaf(t),
                    rv: Rvalue::Use(Operand::Var(a)),
                    span: self.vars.info(v).span,
                });
                Some(Operand::Var(t))
            }
            _ => Some(Operand::Var(a)),
        }
    }

    pub(super) fn temp(&mut self, name: &str, kind: Kind, rv: Rvalue, span: Span, out: &mut Block) -> Operand {
        let v = self.vars.add(name, kind, Role::Temp, span);
        // A scalar result has the generic type of its scalar operands, if any.
        if kind == Kind::Float {
            let ty = rv.operands().iter().filter_map(|o| o.var()).find_map(|x| self.vars.info(x).scalar_ty.clone());
            self.vars.info_mut(v).scalar_ty = ty;
        }
        out.push(Stmt::Let { dst: Tree::Leaf(v), rv, span });
        Operand::Var(v)
    }

    /// A zero for a cotangent component that received nothing.
    pub(super) fn zero_now(&mut self, v: Var, region: RegionId, out: &mut Block) -> Operand {
        if self.vars.kind(v) == Kind::Float {
            return self.vars.zero(v);
        }
        self.need(&Operand::Var(v), region);
        self.temp("zero", self.vars.kind(v), Rvalue::Zero(Operand::Var(v)), Span::call_site(), out)
    }

    pub(super) fn zero_for_reset(&mut self, v: Var, acc: Var, _region: RegionId, out: &mut Block) -> Operand {
        if self.vars.kind(v) == Kind::Float {
            return self.vars.zero(v);
        }
        let cur = self.temp("bar", self.vars.kind(v), Rvalue::Use(Operand::Var(acc)), Span::call_site(), out);
        self.temp("zero", self.vars.kind(v), Rvalue::Zero(cur), Span::call_site(), out)
    }

    pub(super) fn read_place(&mut self, place: &Place, acc: Var, region: RegionId, out: &mut Block) -> Operand {
        let kind = self.vars.kind(place.target());
        match place {
            Place::Cell(_) => self.temp("bar", kind, Rvalue::Use(Operand::Var(acc)), Span::call_site(), out),
            Place::Elem(_, idx) => {
                self.need(idx, region);
                self.temp("bar", kind.element(), Rvalue::Index { buf: acc, index: idx.clone() }, Span::call_site(), out)
            }
            Place::Slice { lo: None, hi: None, inclusive: false, .. } => Operand::Var(acc),
            Place::Field(_, m) => self.temp(
                "bar",
                Kind::Unknown,
                Rvalue::Field(Operand::Var(acc), syn::Member::Named(m.clone())),
                Span::call_site(),
                out,
            ),
            Place::Slice { lo, hi, inclusive, .. } => {
                for o in lo.iter().chain(hi.iter()) {
                    self.need(o, region);
                }
                let rv = Rvalue::Slice { buf: acc, lo: lo.clone(), hi: hi.clone(), inclusive: *inclusive };
                self.temp("bar", kind, rv, Span::call_site(), out)
            }
        }
    }
}
