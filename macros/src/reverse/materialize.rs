//! Making the values the reverse sweep reads available in nested regions: recomputed when cheap and pure, popped from a tape (or slot) otherwise.

use super::*;

impl<'a> Transform<'a> {
    /// The start of a region's reverse: every value defined in the region and read by
    /// its reverse is popped from its tape (or slot) or recomputed, in program order,
    /// into a fresh variable (returned in the renaming for the region's reverse body).
    pub(super) fn materialize_region(&mut self, region: RegionId) -> (Block, HashMap<Var, Var>) {
        let mut here: Vec<Var> = Vec::new();
        let mut i = 0;
        while i < self.needs.len() {
            let (v, _) = self.needs[i];
            i += 1;
            if self.def_region.get(&v).copied().unwrap_or(0) != region
                || self.decided.contains_key(&v)
                || !matches!(self.vars.role(v), Role::Temp)
            {
                continue;
            }
            // Recomputed when that saves no more than the value itself would: `κ·(u[i−1] −
            // 2u[i] + u[i+1])` of an overwritten `u` saves its one sum, not three elements.
            let cheap = self.recomputable(v) && self.saves_to_recompute(v, region, &mut HashSet::new()) <= 1;
            let how = if cheap { Materialize::Recompute } else { Materialize::Save };
            self.decided.insert(v, how);
            here.push(v);
            if how == Materialize::Recompute {
                // Its inputs must be available too: those of this region are decided
                // here (the loop picks them up), the others by their own regions.
                if let Some(Stmt::Let { rv, .. }) = self.def_stmt.get(&v).copied() {
                    for o in rv.operands() {
                        if let Some(x) = o.var() {
                            self.needs.push((x, region));
                        }
                    }
                }
            } else {
                let role = if self.regions[region].in_loop { Role::Tape } else { Role::Slot };
                let kind = self.vars.kind(v);
                let suffix = if role == Role::Tape { "tape" } else { "slot" };
                let name = format!("{}_{suffix}", self.vars.info(v).name);
                let _ = kind;
                let st = self.vars.add_like(v, name, role);
                self.store.insert(v, st);
            }
        }
        here.sort_by_key(|v| self.def_order.get(v).copied().unwrap_or(usize::MAX));
        let mut renames = HashMap::new();
        for v in &here {
            let name = self.vars.info(*v).name.clone();
            renames.insert(*v, self.vars.add_like(*v, name, Role::Temp));
        }
        let mut out = Vec::new();
        for v in &here {
            if self.decided[v] == Materialize::Save {
                let st = self.store[v];
                let rv = if self.vars.role(st) == Role::Tape { Rvalue::Pop(st) } else { Rvalue::Load(st) };
                out.push(Stmt::Let { dst: Tree::Leaf(renames[v]), rv, span: self.vars.info(*v).span });
            }
        }
        let mut recomputed = Vec::new();
        for v in &here {
            if self.decided[v] == Materialize::Recompute {
                if let Stmt::Let { rv, span, .. } = self.def_stmt[v] {
                    recomputed.push(Stmt::Let { dst: Tree::Leaf(renames[v]), rv: rv.clone(), span: *span });
                }
            }
        }
        rename_uses(&mut recomputed, &renames);
        out.extend(recomputed);
        (out, renames)
    }

    /// How many values of `region` recomputing `v` would save on tapes (the inputs of
    /// its recomputation chain that cannot be recomputed and are not saved already).
    fn saves_to_recompute(&self, v: Var, region: RegionId, seen: &mut HashSet<Var>) -> usize {
        let Some(Stmt::Let { rv, .. }) = self.def_stmt.get(&v).copied() else { return 0 };
        let mut saves = 0;
        for x in rv.operands().iter().filter_map(Operand::var) {
            if !seen.insert(x)
                || self.def_region.get(&x).copied().unwrap_or(0) != region
                || self.vars.role(x) != Role::Temp
                || self.decided.contains_key(&x)
            {
                continue;
            }
            saves += match self.recomputable(x) {
                true => self.saves_to_recompute(x, region, seen),
                false => 1,
            };
        }
        saves
    }

    /// A pure, cheap operation on scalars whose inputs never change.
    pub(super) fn recomputable(&self, v: Var) -> bool {
        let Some(Stmt::Let { dst: Tree::Leaf(_), rv, .. }) = self.def_stmt.get(&v).copied() else {
            return false;
        };
        let scalar = |o: &Operand| !matches!(self.kind(o), Kind::Unknown | Kind::Buffer(_));
        let stable = |o: &Operand| match o {
            Operand::Const(_) => true,
            Operand::Var(x) => !matches!(self.vars.role(*x), Role::Cell | Role::Tape | Role::Slot),
        };
        let ok = |o: &Operand| scalar(o) && stable(o);
        match rv {
            Rvalue::Use(o) | Rvalue::Unary(_, o) | Rvalue::Cast(o, _) => ok(o),
            Rvalue::Binary(_, a, b) => ok(a) && ok(b),
            Rvalue::Tuple(items) => items.iter().all(ok),
            Rvalue::Method { recv, method, args, .. } => {
                (ops::method(&method.to_string(), 1 + args.len()).is_some() || self.kind(recv) == Kind::Int)
                    && ok(recv)
                    && args.iter().all(ok)
            }
            Rvalue::Index { buf, index } => {
                !self.mutated.contains(buf)
                    && self.available_in_reverse(*buf)
                    && ok(index)
                    && self.vars.kind(*buf).element() != Kind::Unknown
            }
            Rvalue::Len(buf) => !self.mutated.contains(buf) && self.available_in_reverse(*buf),
            Rvalue::RangeLen(_) | Rvalue::RangeNth(..) => rv.operands().iter().all(ok),
            _ => false,
        }
    }
}
