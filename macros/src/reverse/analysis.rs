//! What the transform knows before emitting anything: regions, where each value is defined, which values are active, how many adjoint contributions each receives.

use super::*;

impl<'a> Transform<'a> {
    pub(super) fn new_region(&mut self, parent: RegionId, in_loop: bool, block: &'a Block) -> RegionId {
        let in_loop = in_loop || self.regions[parent].in_loop;
        self.regions.push(Region { parent: Some(parent), in_loop });
        let id = self.regions.len() - 1;
        self.block_region.insert(block as *const Block, id);
        id
    }

    pub(super) fn scan_regions(&mut self, block: &'a Block, region: RegionId) {
        for s in block {
            match s {
                Stmt::Let { dst, rv, .. } => {
                    // A pop shortens its buffer: a write, as a push is.
                    if let Rvalue::Pop(b) = rv {
                        self.mutated.insert(*b);
                    }
                    for v in dst.leaves() {
                        self.def_region.insert(*v, region);
                        self.def_stmt.insert(*v, s);
                        self.def_order.insert(*v, self.def_order.len());
                    }
                }
                Stmt::Cell { var, .. } | Stmt::Buffer { var, .. } | Stmt::Tape { var } | Stmt::Slot { var } => {
                    self.def_region.insert(*var, region);
                    self.def_stmt.insert(*var, s);
                    self.def_order.insert(*var, self.def_order.len());
                }
                Stmt::Store { buf, .. } | Stmt::Push { buf, .. } => {
                    self.mutated.insert(*buf);
                }
                Stmt::Swap { a, b } => {
                    self.mutated.insert(*a);
                    self.mutated.insert(*b);
                }
                Stmt::Accumulate { place, .. } => {
                    self.mutated.insert(place.target());
                }
                Stmt::If { then_, else_, .. } => {
                    let r = self.new_region(region, false, then_);
                    self.scan_regions(then_, r);
                    let r = self.new_region(region, false, else_);
                    self.scan_regions(else_, r);
                }
                Stmt::For { var, body, .. } => {
                    let r = self.new_region(region, true, body);
                    self.def_region.insert(*var, r);
                    self.scan_regions(body, r);
                }
                Stmt::While { header, body, .. } => {
                    let r = self.new_region(region, true, header);
                    self.scan_regions(header, r);
                    let r = self.new_region(region, true, body);
                    self.scan_regions(body, r);
                }
                Stmt::Assign { .. } | Stmt::Save { .. } | Stmt::Reserve { .. } => {}
            }
        }
    }

    /// Whether `inner` is `outer` or nested inside it.
    pub(super) fn within(&self, mut inner: RegionId, outer: RegionId) -> bool {
        loop {
            if inner == outer {
                return true;
            }
            match self.regions[inner].parent {
                Some(p) => inner = p,
                None => return false,
            }
        }
    }

    pub(super) fn region_of(&self, block: &Block) -> RegionId {
        self.block_region[&(block as *const Block)]
    }

    pub(super) fn active(&self, v: Var) -> bool {
        self.act.is_active(self.src, v)
    }

    pub(super) fn op_active(&self, o: &Operand) -> bool {
        self.act.operand_active(self.src, o)
    }

    pub(super) fn kind(&self, o: &Operand) -> Kind {
        match o {
            Operand::Var(v) => self.vars.kind(*v),
            Operand::Const(c) => c.kind,
        }
    }

    pub(super) fn note(&mut self, v: Var, region: RegionId) {
        if self.active(v) {
            let e = self.contributions.entry(v).or_default();
            e.0 += 1;
            e.1.insert(region);
        }
    }

    pub(super) fn note_op(&mut self, o: &Operand, region: RegionId) {
        if let Some(v) = o.var() {
            self.note(v, region);
        }
    }

    /// Count, for every active value, how many adjoint contributions it receives and in
    /// which regions (this decides between `let v_bar = c` and an accumulator).
    pub(super) fn count_contributions(&mut self, block: &'a Block, region: RegionId) {
        for s in block {
            match s {
                Stmt::Let { dst, rv, .. } if dst.leaves().iter().any(|v| self.active(**v)) => {
                    for o in activity::differentiable_operands(rv) {
                        self.note_op(&o, region);
                    }
                    // The adjoint of a struct whose fields are read is built field by
                    // field, so it is always an accumulator.
                    if let Rvalue::Field(Operand::Var(base), syn::Member::Named(_)) = rv {
                        self.field_bases.insert(*base);
                    }
                }
                Stmt::Cell { var, init: Some(o) } if self.active(*var) => self.note_op(o, region),
                Stmt::Assign { var, value } if self.active(*var) => self.note_op(value, region),
                Stmt::Save { slot, value } if self.active(*slot) => self.note_op(value, region),
                Stmt::Accumulate { place, value } if self.active(place.target()) => self.note_op(value, region),
                Stmt::Store { buf, value, .. } | Stmt::Push { buf, value } if self.active(*buf) => {
                    self.note_op(value, region)
                }
                Stmt::Buffer { var, init } if self.active(*var) => {
                    for o in init.operands() {
                        self.note_op(&o, region);
                    }
                }
                Stmt::If { then_, else_, .. } => {
                    let (a, b) = (self.region_of(then_), self.region_of(else_));
                    self.count_contributions(then_, a);
                    self.count_contributions(else_, b);
                }
                Stmt::For { body, .. } => {
                    let r = self.region_of(body);
                    self.count_contributions(body, r);
                }
                Stmt::While { body, .. } => {
                    let r = self.region_of(body);
                    self.count_contributions(body, r);
                }
                _ => {}
            }
        }
        // The result's seed contributes at the top.
        if region == 0 && std::ptr::eq(block, &self.src.body) {
            for o in self.src.ret.leaves() {
                if let Some(v) = o.var() {
                    self.note(v, 0);
                }
            }
        }
    }

    /// Report active values that reach an operation without a derivative rule.
    pub(super) fn check_active(&mut self, block: &'a Block) {
        walk_stmts(block, &mut |s| {
            if let Stmt::Let { dst, rv, span } = s {
                // A pattern binds values without a derivative: its value must be data.
                if let Rvalue::PatternBind { value, pat, .. } | Rvalue::PatternTest { value, pat } = rv {
                    if self.op_active(value) {
                        self.cx.error_spanned_by(
                            pat,
                            "matching a value that carries a derivative against this pattern is not supported\n\
                             help: enums and destructured structs are data here (an enum has no gradient type); \
                             read a differentiable struct's fields instead (`p.x`)",
                        );
                    }
                    return;
                }
                if !dst.leaves().iter().any(|v| self.active(**v)) {
                    return;
                }
                match rv {
                    // `Some(x)`, `Ok(x)`: an enum holding a derivative has no adjoint here.
                    Rvalue::Call { callee: Callee::Free { path }, args }
                        if path.get_ident().is_some_and(|i| i == "Some" || i == "Ok" || i == "Err") =>
                    {
                        let mut operands = Vec::new();
                        args.iter().for_each(|a| a.operands(&mut operands));
                        if operands.iter().any(|o| self.op_active(o)) {
                            self.cx.error_at(
                                *span,
                                format!(
                                    "an `Option` or `Result` holding a value that carries a derivative is not supported \
                                     (`{}(…)` here)\nhelp: keep the value itself and a `bool` that says whether it is there, \
                                     and branch on the `bool`; `Option`s of data (`&[Option<f64>]`) are supported",
                                    path.get_ident().expect("an ident")
                                ),
                            );
                        }
                    }
                    Rvalue::Method { recv, method, args, .. }
                        if ops::method(&method.to_string(), 1 + args.len()).is_none() =>
                    {
                        let active_operand = std::iter::once(recv).chain(args).any(|o| self.op_active(o));
                        if active_operand {
                            self.cx.error_spanned_by(
                                method,
                                format!(
                                    "`{method}` is not a differentiable method: no derivative rule is known for it\n\
                                     help: the differentiable float methods are {}; wrap the value in `detach(…)` \
                                     if no gradient should flow through this call",
                                    ops::method_names()
                                ),
                            );
                        }
                    }
                    _ => {}
                }
            }
        });
    }

    pub(super) fn plan_adjoints(&mut self) {
        let mut plan = HashMap::new();
        let mut vars: Vec<Var> = self.contributions.keys().copied().collect();
        vars.sort();
        for v in vars {
            let (count, regions) = &self.contributions[&v];
            let def = self.def_region.get(&v).copied().unwrap_or(0);
            let local = regions.len() == 1
                && regions.contains(&def)
                && matches!(self.vars.role(v), Role::Temp | Role::Param)
                && !self.vars.kind(v).is_buffer();
            let p = match (local && !self.field_bases.contains(&v), *count) {
                (true, 1) => AdjPlan::Single,
                (true, _) => AdjPlan::Chain,
                _ => AdjPlan::Accumulator,
            };
            if p != AdjPlan::Single {
                // Accumulators are named before any contribution, so they get the plain
                // `x_bar` name and contributions the numbered ones.
                let role = match self.vars.role(v) {
                    Role::Tape => Role::Tape,
                    Role::Slot => Role::Slot,
                    _ if self.vars.kind(v).is_buffer() && matches!(self.vars.role(v), Role::Buffer | Role::Param) => {
                        Role::Buffer
                    }
                    _ => Role::Cell,
                };
                let a = self.vars.add_like(v, self.adj_name(v), role);
                self.acc_vars.insert(v, a);
            }
            plan.insert(v, p);
        }
        self.plan = plan;
    }

    pub(super) fn need(&mut self, o: &Operand, region: RegionId) {
        if let Operand::Var(v) = o {
            self.needs.push((*v, region));
        }
    }
}

impl<'a> Transform<'a> {
    /// Number statements in program order, recording buffer writes and loop extents.
    pub(super) fn number_statements(&mut self, block: &'a Block, next: &mut usize) {
        for s in block {
            let at = *next;
            *next += 1;
            match s {
                Stmt::Store { buf, .. } | Stmt::Push { buf, .. } | Stmt::Let { rv: Rvalue::Pop(buf), .. } => {
                    self.writes.entry(*buf).or_default().push(at)
                }
                Stmt::Accumulate { place, .. } => self.writes.entry(place.target()).or_default().push(at),
                Stmt::Swap { a, b } => {
                    self.writes.entry(*a).or_default().push(at);
                    self.writes.entry(*b).or_default().push(at);
                }
                _ => {}
            }
            for b in s.blocks() {
                self.number_statements(b, next);
            }
            let last = *next - 1;
            self.positions.insert(s as *const Stmt, (at, last));
            if matches!(s, Stmt::For { .. } | Stmt::While { .. }) {
                self.loop_spans.push((at, last));
            }
        }
    }
}
