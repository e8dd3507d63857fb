//! The reverse sweep: the adjoint statements of every construct, in reverse order.

use super::*;

pub(super) fn tree_arg(t: &Tree<Operand>) -> Arg {
    match t {
        Tree::Leaf(o) => Arg::Value(o.clone()),
        Tree::Tuple(items) => Arg::Tuple(items.iter().map(tree_arg).collect()),
    }
}

impl<'a> Transform<'a> {
    pub(super) fn seed(&mut self, out: &mut Block, cotangent: &Option<Tree<Var>>) {
        let leaves: Vec<Operand> = self.src.ret.leaves().into_iter().cloned().collect();
        let cots: Vec<Option<Var>> = match cotangent {
            Some(c) => c.leaves().into_iter().map(|v| Some(*v)).collect(),
            None => vec![None; leaves.len()],
        };
        for (leaf, cot) in leaves.iter().zip(cots) {
            let Some(v) = leaf.var() else { continue };
            if !self.active(v) {
                continue;
            }
            let seed = match cot {
                Some(c) => Operand::Var(c),
                None => {
                    if self.vars.kind(v) == Kind::Float {
                        self.vars.one(v)
                    } else {
                        self.need(leaf, 0);
                        self.temp("seed", self.vars.kind(v), Rvalue::One(leaf.clone()), self.vars.info(v).span, out)
                    }
                }
            };
            self.contribute(leaf, seed, out);
        }
    }

    /// The reverse of a block. For a nested region, the result starts with the values
    /// its statements read (popped or recomputed) and its accumulators: once the body is
    /// built, every use of a value defined in this region has been seen.
    pub(super) fn rev_block(&mut self, block: &'a Block) -> Block {
        let region = self.region_of(block);
        let mut body = Vec::new();
        for s in block.iter().rev() {
            self.rev_stmt(s, region, &mut body);
        }
        if region == 0 {
            return body;
        }
        let accumulators = self.accumulators.remove(&region).unwrap_or_default();
        if body.is_empty() && accumulators.is_empty() {
            return body;
        }
        let (mut out, renames) = self.materialize_region(region);
        let mut rest = accumulators;
        rest.extend(body);
        rename_uses(&mut rest, &renames);
        out.extend(rest);
        out
    }

    pub(super) fn rev_stmt(&mut self, s: &'a Stmt, region: RegionId, out: &mut Block) {
        self.current = s;
        match s {
            Stmt::Let { dst: Tree::Leaf(v), rv: rv @ Rvalue::Pop(b), span } if self.active(*b) => {
                // The adjoint buffer gets back one element per pop, a zero if the popped
                // value received nothing, so that its length stays the buffer's.
                let ybar = match self.active(*v) {
                    true => self.adj_value(*v, out),
                    false => None,
                };
                let ybar = match ybar {
                    Some(c) => c,
                    None => self.zero_now(*v, region, out),
                };
                self.rev_rvalue(*v, rv, ybar, *span, region, out);
            }
            Stmt::Let { dst: Tree::Leaf(v), rv, span } => {
                if !self.active(*v) {
                    return;
                }
                let Some(ybar) = self.adj_value(*v, out) else {
                    return;
                };
                self.rev_rvalue(*v, rv, ybar, *span, region, out);
            }
            Stmt::Let { dst, rv, span } => {
                // A call returning a tuple.
                if !dst.leaves().iter().any(|v| self.active(**v)) {
                    return;
                }
                let mut cot_leaves = Vec::new();
                for v in dst.leaves() {
                    let c = match self.adj_value(*v, out) {
                        Some(c) => c,
                        None => self.zero_now(*v, region, out),
                    };
                    cot_leaves.push(c);
                }
                let mut it = cot_leaves.into_iter();
                let cot = dst.map(&mut |_| it.next().expect("cotangent leaf"));
                if let Rvalue::Call { callee, args } = rv {
                    self.rev_call(callee, args, cot, *span, region, out);
                }
            }
            Stmt::Cell { var, init } => {
                if !self.active(*var) {
                    return;
                }
                if let Some(o) = init {
                    if self.op_active(o) {
                        let acc = self.accumulator(*var);
                        let c = self.temp(
                            &self.adj_name(*var),
                            self.vars.kind(*var),
                            Rvalue::Use(Operand::Var(acc)),
                            Span::call_site(),
                            out,
                        );
                        self.contribute(o, c, out);
                    }
                }
            }
            Stmt::Assign { var, value } => {
                if !self.active(*var) {
                    return;
                }
                let acc = self.accumulator(*var);
                if self.op_active(value) {
                    let c = self.temp(
                        &self.adj_name(*var),
                        self.vars.kind(*var),
                        Rvalue::Use(Operand::Var(acc)),
                        Span::call_site(),
                        out,
                    );
                    self.contribute(value, c, out);
                }
                // The value the cell held before this write receives nothing from here on.
                let zero = self.zero_for_reset(*var, acc, region, out);
                out.push(Stmt::Assign { var: acc, value: zero });
            }
            Stmt::Accumulate { place, value } => {
                let target = place.target();
                if !self.active(target) || !self.op_active(value) {
                    return;
                }
                let acc = self.accumulator(target);
                let c = self.read_place(place, acc, region, out);
                self.contribute(value, c, out);
            }
            Stmt::Store { buf, index, value } => {
                if !self.active(*buf) {
                    return;
                }
                let acc = self.accumulator(*buf);
                self.need(index, region);
                let elem = self.vars.kind(*buf).element();
                if self.op_active(value) {
                    let c = self.temp(
                        &self.adj_name(*buf),
                        elem,
                        Rvalue::Index { buf: acc, index: index.clone() },
                        Span::call_site(),
                        out,
                    );
                    self.contribute(value, c, out);
                }
                let zero = if elem == Kind::Float {
                    self.vars.zero(*buf)
                } else {
                    let cur = self.temp(
                        "old_bar",
                        elem,
                        Rvalue::Index { buf: acc, index: index.clone() },
                        Span::call_site(),
                        out,
                    );
                    self.temp("zero", elem, Rvalue::Zero(cur), Span::call_site(), out)
                };
                out.push(Stmt::Store { buf: acc, index: index.clone(), value: zero });
            }
            Stmt::Push { buf, value } => {
                if !self.active(*buf) {
                    return;
                }
                let acc = self.accumulator(*buf);
                let elem = self.vars.kind(*buf).element();
                let c = self.temp(&self.adj_name(*buf), elem, Rvalue::Pop(acc), Span::call_site(), out);
                if self.op_active(value) {
                    self.contribute(value, c, out);
                }
            }
            Stmt::Save { slot, value } => {
                if !self.active(*slot) || !self.op_active(value) {
                    return;
                }
                let acc = self.accumulator(*slot);
                let c = self.temp(&self.adj_name(*slot), self.kind(value), Rvalue::Load(acc), Span::call_site(), out);
                self.contribute(value, c, out);
            }
            Stmt::Buffer { var, init } => {
                if !self.active(*var) {
                    return;
                }
                let acc = self.accumulator(*var);
                match init {
                    BufferInit::List { items, .. } => {
                        for (k, item) in items.iter().enumerate() {
                            if self.op_active(item) {
                                let idx = Operand::Const(Const {
                                    tokens: quote::ToTokens::to_token_stream(&proc_macro2::Literal::usize_unsuffixed(
                                        k,
                                    )),
                                    kind: Kind::Int,
                                    scalar_ty: None,
                                });
                                let c = self.temp(
                                    &self.adj_name(*var),
                                    self.kind(item),
                                    Rvalue::Index { buf: acc, index: idx },
                                    Span::call_site(),
                                    out,
                                );
                                self.contribute(item, c, out);
                            }
                        }
                    }
                    BufferInit::Repeat { value, .. } | BufferInit::Array { value, .. } if self.op_active(value) => {
                        self.cx.error_at(self.vars.info(*var).span, "a buffer filled with a value that carries a derivative is not supported: fill it with a constant and write the value in a loop");
                    }
                    _ => {}
                }
            }
            Stmt::If { cond, then_, else_ } => {
                let rt = self.rev_block(then_);
                let re = self.rev_block(else_);
                if rt.is_empty() && re.is_empty() {
                    return;
                }
                self.need(cond, region);
                out.push(Stmt::If { cond: cond.clone(), then_: rt, else_: re });
            }
            Stmt::For { var, range, body } => {
                let rb = self.rev_block(body);
                if rb.is_empty() {
                    return;
                }
                for o in range.operands() {
                    self.need(&o, region);
                }
                // The reverse loop binds its own index variable (one definition per variable).
                let info = self.vars.info(*var).clone();
                let index = self.vars.add(info.name, info.kind, Role::Index, info.span);
                let mut rb = rb;
                rename_uses(&mut rb, &HashMap::from([(*var, index)]));
                // When the reverse iterations commute, run them in the forward order: it is
                // the order memory prefers, and it keeps neighbouring iterations'
                // accumulations into one buffer from forming a dependency chain.
                if self.iterations_commute(body) {
                    let (before, after) = self.carry_neighbour_adjoints(index, range, &mut rb);
                    out.extend(before);
                    out.push(Stmt::For { var: index, range: range.clone(), body: rb });
                    out.extend(after);
                } else {
                    out.push(Stmt::For { var: index, range: range.reversed(), body: rb });
                }
            }
            Stmt::While { header, body, .. } => {
                if header
                    .iter()
                    .any(|h| matches!(h, Stmt::Let { dst, .. } if dst.leaves().iter().any(|v| self.active(**v))))
                {
                    self.cx.error_at(Span::call_site(), "a loop condition that computes a value carrying a derivative is not supported; compute it in the loop body");
                }
                let rb = self.rev_block(body);
                if rb.is_empty() {
                    return;
                }
                let counter = self.vars.add("trip", Kind::Int, Role::Cell, Span::call_site());
                let trips = self.vars.add("trips", Kind::Int, Role::Temp, Span::call_site());
                self.def_region.insert(trips, region);
                self.trips.insert(body as *const Block, (counter, trips));
                self.need(&Operand::Var(trips), region);
                let i = self.vars.add("_iteration", Kind::Int, Role::Index, Span::call_site());
                let range = Range {
                    lo: Operand::Const(Const { tokens: quote!(0), kind: Kind::Int, scalar_ty: None }),
                    hi: Operand::Var(trips),
                    inclusive: false,
                    adapters: Vec::new(),
                };
                out.push(Stmt::For { var: i, range, body: rb });
            }
            Stmt::Tape { .. } | Stmt::Slot { .. } | Stmt::Reserve { .. } => {}
            // The adjoints travel with the contents.
            Stmt::Swap { a, b } => {
                if self.active(*a) || self.active(*b) {
                    let (abar, bbar) = (self.accumulator(*a), self.accumulator(*b));
                    out.push(Stmt::Swap { a: abar, b: bbar });
                }
            }
        }
    }

    pub(super) fn rev_rvalue(
        &mut self,
        v: Var,
        rv: &Rvalue,
        ybar: Operand,
        span: Span,
        region: RegionId,
        out: &mut Block,
    ) {
        match rv {
            Rvalue::Use(o) => {
                if let Some(src) = o.var() {
                    if self.vars.role(src) == Role::Cell && self.active(src) {
                        let acc = self.accumulator(src);
                        out.push(Stmt::Accumulate { place: Place::Cell(acc), value: ybar });
                        return;
                    }
                }
                self.contribute(o, ybar, out);
            }
            Rvalue::Binary(op, a, b) => {
                let Some(prim) = ops::binary(*op) else { return };
                let operands = [a.clone(), b.clone()];
                self.apply_prim(prim, &operands, v, ybar, span, region, out);
            }
            Rvalue::Unary(UnOp::Neg, a) => {
                self.apply_prim(ops::neg(), std::slice::from_ref(a), v, ybar, span, region, out);
            }
            Rvalue::Unary(UnOp::Not, _) => {}
            Rvalue::Method { recv, method, args, .. } => {
                let Some(prim) = ops::method(&method.to_string(), 1 + args.len()) else {
                    return;
                };
                if !prim.output.differentiable() {
                    return;
                }
                let mut operands = vec![recv.clone()];
                operands.extend(args.iter().cloned());
                self.apply_prim(prim, &operands, v, ybar, span, region, out);
            }
            Rvalue::Call { callee, args } => {
                if region == 0 && self.split_call(v, callee, args, ybar.clone(), span, out) {
                    return;
                }
                self.rev_call(callee, args, Tree::Leaf(ybar), span, region, out);
            }
            Rvalue::Index { buf, index } => {
                if !self.active(*buf) {
                    return;
                }
                let acc = self.accumulator(*buf);
                self.need(index, region);
                out.push(Stmt::Accumulate { place: Place::Elem(acc, index.clone()), value: ybar });
            }
            Rvalue::Slice { buf, lo, hi, inclusive } => {
                if !self.active(*buf) {
                    return;
                }
                let acc = self.accumulator(*buf);
                for o in lo.iter().chain(hi.iter()) {
                    self.need(o, region);
                }
                out.push(Stmt::Accumulate {
                    place: Place::Slice { buf: acc, lo: lo.clone(), hi: hi.clone(), inclusive: *inclusive },
                    value: ybar,
                });
            }
            Rvalue::Cast(o, _) => {
                if !self.op_active(o) {
                    return;
                }
                self.need(o, region);
                // A value the macro cannot see into may be an integer field (no adjoint).
                let (trait_name, method) = match self.kind(o) {
                    Kind::Unknown => ("CastField", "cast_field_adjoint"),
                    _ => ("Cast", "cast_adjoint"),
                };
                let c = self.temp(
                    &self.adj_name(v),
                    self.kind(o),
                    Rvalue::Call {
                        callee: Callee::Rule { trait_name, method: method.into() },
                        args: vec![Arg::Ref(ybar), Arg::Ref(o.clone())],
                    },
                    span,
                    out,
                );
                self.contribute(o, c, out);
            }
            Rvalue::Pop(tape) => {
                if !self.active(*tape) {
                    return;
                }
                let acc = self.accumulator(*tape);
                out.push(Stmt::Push { buf: acc, value: ybar });
            }
            Rvalue::Load(slot) => {
                if !self.active(*slot) {
                    return;
                }
                let acc = self.accumulator(*slot);
                out.push(Stmt::Save { slot: acc, value: ybar });
            }
            Rvalue::Field(Operand::Var(base), syn::Member::Named(m)) => {
                if !self.active(*base) {
                    return;
                }
                let acc = self.accumulator(*base);
                out.push(Stmt::Accumulate { place: Place::Field(acc, m.clone()), value: ybar });
            }
            Rvalue::Field(o, syn::Member::Unnamed(i)) => {
                // The tuple's adjoint: zero everywhere but the projected field.
                if !self.op_active(o) {
                    return;
                }
                self.need(o, region);
                let kind = self.kind(o);
                let zero = self.temp("zero", kind, Rvalue::Zero(o.clone()), span, out);
                let c = self.temp(
                    "tuple_bar",
                    kind,
                    Rvalue::Insert { base: zero, field: syn::Member::Unnamed(i.clone()), value: ybar },
                    span,
                    out,
                );
                self.contribute(o, c, out);
            }
            Rvalue::Insert { base, field, value } => {
                if self.op_active(value) {
                    let c =
                        self.temp("field_bar", self.kind(value), Rvalue::Field(ybar.clone(), field.clone()), span, out);
                    self.contribute(value, c, out);
                }
                if self.op_active(base) {
                    self.need(value, region);
                    let zero = self.temp("zero", self.kind(value), Rvalue::Zero(value.clone()), span, out);
                    let c = self.temp(
                        "tuple_bar",
                        self.kind(base),
                        Rvalue::Insert { base: ybar, field: field.clone(), value: zero },
                        span,
                        out,
                    );
                    self.contribute(base, c, out);
                }
            }
            Rvalue::Struct { fields, rest, .. } => {
                // Each field's adjoint is that field of the struct's adjoint (the
                // gradient struct has the same field names); the rest's is the adjoint
                // with the written fields zeroed.
                for (name, item) in fields {
                    if !self.op_active(item) {
                        continue;
                    }
                    let field = syn::Member::Named(name.clone());
                    let c = self.temp("field_bar", self.kind(item), Rvalue::Field(ybar.clone(), field), span, out);
                    self.contribute(item, c, out);
                }
                if let Some(rest) = rest.as_ref().filter(|r| self.op_active(r)) {
                    let mut c = ybar;
                    for (name, item) in fields {
                        self.need(item, region);
                        let zero = self.temp("zero", self.kind(item), Rvalue::Zero(item.clone()), span, out);
                        let field = syn::Member::Named(name.clone());
                        c = self.temp(
                            "rest_bar",
                            self.kind(rest),
                            Rvalue::Insert { base: c, field, value: zero },
                            span,
                            out,
                        );
                    }
                    self.contribute(rest, c, out);
                }
            }
            Rvalue::Tuple(items) => {
                // Each item's adjoint is its field of the tuple's adjoint.
                for (k, item) in items.iter().enumerate() {
                    if !self.op_active(item) {
                        continue;
                    }
                    let field = syn::Member::Unnamed(syn::Index { index: k as u32, span });
                    let c = self.temp("field_bar", self.kind(item), Rvalue::Field(ybar.clone(), field), span, out);
                    self.contribute(item, c, out);
                }
            }
            Rvalue::Field(..)
            | Rvalue::Len(_)
            | Rvalue::PatternTest { .. }
            | Rvalue::PatternBind { .. }
            | Rvalue::SortOrder { .. }
            | Rvalue::RangeLen(_)
            | Rvalue::RangeNth(..)
            | Rvalue::Zero(_)
            | Rvalue::One(_) => {}
        }
    }

    /// Apply a primitive's rules: one contribution per active operand.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn apply_prim(
        &mut self,
        prim: &ops::Prim,
        operands: &[Operand],
        result: Var,
        ybar: Operand,
        span: Span,
        region: RegionId,
        out: &mut Block,
    ) {
        let scalar = operands.iter().all(|o| self.kind(o) != Kind::Unknown) && self.vars.kind(result) == Kind::Float;
        for (i, o) in operands.iter().enumerate() {
            if !self.op_active(o) {
                continue;
            }
            let rule = prim.inputs()[i];
            let form = if scalar { rule.scalar } else { rule.general };
            let kind = self.kind(o);
            let name = self.adj_name(o.var().expect("active operand"));
            let c = match form {
                Contribution::None => continue,
                Contribution::Identity => ybar.clone(),
                Contribution::Negate => self.temp(&name, kind, Rvalue::Unary(UnOp::Neg, ybar.clone()), span, out),
                Contribution::Rule { trait_name, method, needs } => {
                    let mut args = vec![Arg::Ref(ybar.clone())];
                    for n in needs {
                        let val = match n {
                            Need::Operand(k) => operands[*k].clone(),
                            Need::Output => Operand::Var(result),
                        };
                        self.need(&val, region);
                        args.push(Arg::Ref(val));
                    }
                    self.temp(
                        &name,
                        kind,
                        Rvalue::Call { callee: Callee::Rule { trait_name, method: method.into() }, args },
                        span,
                        out,
                    )
                }
            };
            self.contribute(o, c, out);
        }
    }

    /// The reverse of a call: the callee's derivative companion gives one gradient per
    /// argument, each added to the argument's adjoint.
    pub(super) fn rev_call(
        &mut self,
        callee: &Callee,
        args: &[Arg],
        cot: Tree<Operand>,
        span: Span,
        region: RegionId,
        out: &mut Block,
    ) {
        if matches!(callee, Callee::Detach) {
            return;
        }
        if !args.iter().any(|a| self.arg_active(a)) {
            return;
        }
        if let Callee::Construct { cols, .. } = callee {
            return self.rev_construct(*cols, args, cot, span, out);
        }
        // The companion needs every argument as it was at the call: a buffer written
        // after the call is passed as a copy taken at the call.
        let args_then: Vec<Arg> = args.iter().map(|a| self.as_at_call(a, region)).collect();
        let mut all = Vec::new();
        args_then.iter().for_each(|a| a.operands(&mut all));
        // The bounds of a sub-slice also place its gradient in the buffer's adjoint.
        slice_bounds(args, &mut all);
        for o in &all {
            self.need(o, region);
        }
        if let (Callee::AssocRule { trait_name, method, .. }, Tree::Leaf(ybar)) = (callee, &cot) {
            // `rules::Trait::method(&ȳ, &args…)` gives one gradient per argument.
            let mut call_args = vec![Arg::Ref(ybar.clone())];
            call_args.extend(args_then.into_iter().map(|a| match a {
                Arg::Value(o) => Arg::Ref(o),
                Arg::Buffer { buf, .. } => Arg::Buffer { buf, borrowed: true },
                other => other,
            }));
            let rule = Callee::Rule { trait_name, method: method.to_string() };
            return self.call_for_gradients(args, rule, call_args, span, out);
        }
        let cot_args = match cot {
            Tree::Leaf(o) => vec![Arg::Value(o)],
            tree => vec![tree_arg(&tree)],
        };
        let mut call_args: Vec<Arg> = args_then;
        call_args.extend(cot_args);
        if let Some(masked) = self.masked_call(callee, args, &mut call_args) {
            return self.call_for_gradients(args, masked, call_args, span, out);
        }
        let d1 = match callee {
            Callee::Free { path } => Callee::Free { path: crate::names::entity_path(path, crate::names::D1) },
            Callee::Tower { path } => Callee::Tower { path: crate::names::entity_path(path, crate::names::D1) },
            Callee::Assoc { path } => Callee::Assoc { path: crate::names::entity_path(path, crate::names::D1) },
            Callee::Method { name } => {
                Callee::Method { name: syn::Ident::new(&derivative_method(&name.to_string()), name.span()) }
            }
            Callee::Rule { trait_name, method } => Callee::Rule { trait_name, method: derivative_method(method) },
            Callee::Detach | Callee::Construct { .. } | Callee::AssocRule { .. } => unreachable!("handled above"),
            Callee::Pullback(_) => unreachable!("pullbacks are called only by code that is not differentiated"),
        };
        self.call_for_gradients(args, d1, call_args, span, out);
    }

    /// The reverse of `Vector3::new(a, b, c)`: each element's adjoint is its entry of the
    /// result's adjoint.
    fn rev_construct(&mut self, cols: usize, args: &[Arg], cot: Tree<Operand>, span: Span, out: &mut Block) {
        let Tree::Leaf(ybar) = cot else { unreachable!("a matrix's cotangent is one value") };
        let ybar = match ybar {
            Operand::Var(v) => v,
            o => {
                let kind = self.kind(&o);
                let Operand::Var(v) = self.temp("value_bar", kind, Rvalue::Use(o), span, out) else {
                    unreachable!("a temporary is a variable")
                };
                v
            }
        };
        for (k, a) in args.iter().enumerate() {
            let Arg::Value(o) = a else { continue };
            if !self.op_active(o) {
                continue;
            }
            let (row, col) = (k / cols, k % cols);
            let index =
                Operand::Const(Const { tokens: quote::quote!((#row, #col)), kind: Kind::Unknown, scalar_ty: None });
            let c = self.temp("elem_bar", self.kind(o), Rvalue::Index { buf: ybar, index }, span, out);
            self.contribute(o, c, out);
        }
    }

    /// `let (ā₁, ā₂, …) = callee(call_args…);` (one gradient per argument of the
    /// reversed call), each added to its argument's adjoint.
    fn call_for_gradients(&mut self, args: &[Arg], callee: Callee, call_args: Vec<Arg>, span: Span, out: &mut Block) {
        let grads: Vec<Tree<Var>> = args.iter().map(|a| self.grad_pattern(a, span)).collect();
        out.push(Stmt::Let { dst: Tree::Tuple(grads.clone()), rv: Rvalue::Call { callee, args: call_args }, span });
        for (a, g) in args.iter().zip(&grads) {
            self.accumulate_arg(a, g, out);
        }
    }

    /// The reverse of `v = f(args…)` at the top level of a derivative that is not
    /// differentiated again, through `f`'s split derivative: the forward sweep calls
    /// `f::__adjoint_split` (value and pullback) in place of `f`, and the reverse applies
    /// the pullback, so `f`'s forward computation runs once and its arguments need not be
    /// kept. Returns whether it applied.
    fn split_call(
        &mut self,
        v: Var,
        callee: &Callee,
        args: &[Arg],
        ybar: Operand,
        span: Span,
        out: &mut Block,
    ) -> bool {
        let Some(krate) = self.masked_calls.clone() else { return false };
        if !self.split_calls || args.len() >= 64 || !args.iter().any(|a| self.arg_active(a)) {
            return false;
        }
        // The pullback borrows what the call borrows until the reverse sweep: only
        // parameters and values defined once and never written (a buffer written after
        // the call would be borrowed mutably while the pullback holds it).
        let mut operands = Vec::new();
        args.iter().for_each(|a| a.operands(&mut operands));
        let unchanging = |o: &Operand| match o.var() {
            Some(x) => matches!(self.vars.role(x), Role::Param | Role::Temp) && !self.mutated.contains(&x),
            None => true,
        };
        if !operands.iter().all(unchanging) {
            return false;
        }
        let Some(split) = user_companion(callee, crate::names::SPLIT) else { return false };
        let mut call_args = args.to_vec();
        call_args.push(self.mask(&krate, args));
        let name = format!("{}_pullback", self.vars.info(v).name);
        let pullback = self.vars.add(name, Kind::Unknown, Role::Temp, span);
        self.split.insert(self.current, SplitCall { pullback, callee: split, args: call_args });
        // The forward sweep keeps the call (its value and its pullback).
        self.need(&Operand::Var(v), 0);
        self.need(&Operand::Var(pullback), 0);
        self.call_for_gradients(args, Callee::Pullback(pullback), vec![Arg::Value(ybar)], span, out);
        true
    }

    /// The masked companion of a call's callee when some arguments need no gradient
    /// (appending the mask to `call_args`), if this derivative may call one.
    fn masked_call(&self, callee: &Callee, args: &[Arg], call_args: &mut Vec<Arg>) -> Option<Callee> {
        let krate = self.masked_calls.as_ref()?;
        if args.len() >= 64 || args.iter().all(|a| self.arg_active(a)) {
            return None;
        }
        let masked = user_companion(callee, crate::names::D1_MASKED)?;
        call_args.push(self.mask(krate, args));
        Some(masked)
    }

    /// `Mask::<BITS>` with the bits of the active arguments.
    fn mask(&self, krate: &syn::Path, args: &[Arg]) -> Arg {
        let bits: u64 = args.iter().enumerate().filter(|(_, a)| self.arg_active(a)).map(|(i, _)| 1u64 << i).sum();
        let mask = Const { tokens: quote!(#krate::__private::Mask::<#bits>), kind: Kind::Unknown, scalar_ty: None };
        Arg::Value(Operand::Const(mask))
    }

    pub(super) fn arg_active(&self, a: &Arg) -> bool {
        match a {
            Arg::Value(o) | Arg::Ref(o) => self.op_active(o),
            Arg::Buffer { buf: b, .. } | Arg::Slice { buf: b, .. } => self.active(*b),
            Arg::Tuple(items) => items.iter().any(|i| self.arg_active(i)),
        }
    }

    /// The pattern that receives the gradient of one argument (`_` when inactive).
    pub(super) fn grad_pattern(&mut self, a: &Arg, span: Span) -> Tree<Var> {
        match a {
            Arg::Tuple(items) => Tree::Tuple(items.iter().map(|i| self.grad_pattern(i, span)).collect()),
            _ if !self.arg_active(a) => Tree::Leaf(self.vars.add("_unused_grad", Kind::Unknown, Role::Temp, span)),
            Arg::Value(o) | Arg::Ref(o) => {
                let v = o.var().expect("active operand");
                let kind = self.vars.kind(v);
                let _ = kind;
                Tree::Leaf(self.vars.add_like(v, format!("{}_grad", self.vars.info(v).name), Role::Temp))
            }
            Arg::Buffer { buf: b, .. } | Arg::Slice { buf: b, .. } => {
                let kind = self.vars.kind(*b);
                let _ = kind;
                Tree::Leaf(self.vars.add_like(*b, format!("{}_grad", self.vars.info(*b).name), Role::Temp))
            }
        }
    }

    pub(super) fn accumulate_arg(&mut self, a: &Arg, g: &Tree<Var>, out: &mut Block) {
        match (a, g) {
            (Arg::Tuple(items), Tree::Tuple(gs)) => {
                for (i, g) in items.iter().zip(gs) {
                    self.accumulate_arg(i, g, out);
                }
            }
            (Arg::Value(o) | Arg::Ref(o), Tree::Leaf(g)) if self.op_active(o) => {
                self.contribute(o, Operand::Var(*g), out);
            }
            (Arg::Buffer { buf: b, .. }, Tree::Leaf(g)) if self.active(*b) => {
                let acc = self.accumulator(*b);
                out.push(Stmt::Accumulate {
                    place: Place::Slice { buf: acc, lo: None, hi: None, inclusive: false },
                    value: Operand::Var(*g),
                });
            }
            (Arg::Slice { buf, lo, hi, inclusive }, Tree::Leaf(g)) if self.active(*buf) => {
                let acc = self.accumulator(*buf);
                out.push(Stmt::Accumulate {
                    place: Place::Slice { buf: acc, lo: lo.clone(), hi: hi.clone(), inclusive: *inclusive },
                    value: Operand::Var(*g),
                });
            }
            _ => {}
        }
    }

    /// The gradient returned for a parameter.
    pub(super) fn grad_tree(&mut self, pat: &Tree<Var>, out: &mut Block) -> Tree<Operand> {
        match pat {
            Tree::Tuple(items) => Tree::Tuple(items.iter().map(|i| self.grad_tree(i, out)).collect()),
            Tree::Leaf(v) => {
                let v = *v;
                if let Some(a) = self.adj.get(&v).copied() {
                    // Nothing runs after the gradients are read: return the adjoint itself.
                    return Tree::Leaf(Operand::Var(a));
                }
                // No gradient reached this parameter: a zero of its shape.
                let kind = self.vars.kind(v);
                let span = self.vars.info(v).span;
                Tree::Leaf(match kind {
                    Kind::Float => self.vars.zero(v),
                    Kind::Buffer(_) => {
                        self.needs.push((v, 0));
                        let z = self.vars.add_like(v, self.adj_name(v), Role::Buffer);
                        out.push(Stmt::Buffer { var: z, init: BufferInit::ZerosLike(v) });
                        Operand::Var(z)
                    }
                    _ => {
                        self.needs.push((v, 0));
                        self.temp(&self.adj_name(v), kind, Rvalue::Zero(Operand::Var(v)), span, out)
                    }
                })
            }
        }
    }
}

impl<'a> Transform<'a> {
    /// Whether the reverse of a loop's iterations may run in any order: nothing the loop
    /// computes is saved (so nothing is popped in reverse order), it writes no buffer
    /// that carries a derivative, and every active cell it assigns is only ever
    /// increased, `c = c ± e`, so the cell's adjoint is the same in every iteration.
    /// The reverse iterations then only add into accumulators, which commutes (up to
    /// rounding).
    pub(super) fn iterations_commute(&self, body: &'a Block) -> bool {
        let region = self.region_of(body);
        let saves_inside = self.decided.iter().any(|(v, how)| {
            *how == Materialize::Save && self.within(self.def_region.get(v).copied().unwrap_or(0), region)
        });
        if saves_inside {
            return false;
        }
        // How often each value is read in the body (an increment's read of the cell must
        // feed nothing but the sum).
        let mut read_count: HashMap<Var, usize> = HashMap::new();
        walk_stmts(body, &mut |s| {
            let ops = s.operands();
            for o in ops {
                if let Some(v) = o.var() {
                    *read_count.entry(v).or_insert(0) += 1;
                }
            }
        });
        let mut ok = true;
        let mut increments: HashMap<Var, usize> = HashMap::new();
        let mut reads: HashMap<Var, usize> = HashMap::new();
        walk_stmts(body, &mut |s| match s {
            Stmt::Store { buf, .. } | Stmt::Push { buf, .. } if self.active(*buf) => ok = false,
            Stmt::Swap { .. } => ok = false,
            Stmt::Accumulate { place, .. } if self.active(place.target()) => ok = false,
            Stmt::Save { slot, .. } if self.active(*slot) => ok = false,
            Stmt::Assign { var, value } if self.active(*var) => {
                if self.is_increment(*var, value, &read_count) {
                    *increments.entry(*var).or_insert(0) += 1;
                } else {
                    ok = false;
                }
            }
            Stmt::Let { rv: Rvalue::Use(Operand::Var(c)), .. }
                if self.vars.role(*c) == Role::Cell && self.active(*c) =>
            {
                *reads.entry(*c).or_insert(0) += 1;
            }
            Stmt::Let { rv: Rvalue::Pop(_) | Rvalue::Load(_), dst, .. }
                if dst.leaves().iter().any(|v| self.active(**v)) =>
            {
                ok = false
            }
            _ => {}
        });
        // An incremented cell may be read only by its increments.
        ok && reads.iter().all(|(c, n)| increments.get(c) == Some(n))
    }

    /// `value` is `c + e`, `e + c` or `c − e` where the read of `c` feeds only this sum
    /// (and, so, `e` does not depend on that read).
    fn is_increment(&self, cell: Var, value: &Operand, read_count: &HashMap<Var, usize>) -> bool {
        let Some(Stmt::Let { rv: Rvalue::Binary(op, a, b), .. }) =
            value.var().and_then(|t| self.def_stmt.get(&t).copied())
        else {
            return false;
        };
        let reads_cell = |o: &Operand| {
            o.var().is_some_and(|r| {
                read_count.get(&r) == Some(&1)
                    && matches!(self.def_stmt.get(&r).copied(),
                        Some(Stmt::Let { rv: Rvalue::Use(Operand::Var(c)), .. }) if *c == cell)
            })
        };
        match op {
            BinOp::Add => reads_cell(a) != reads_cell(b),
            BinOp::Sub => reads_cell(a) && !reads_cell(b),
            _ => false,
        }
    }
}

impl<'a> Transform<'a> {
    /// An argument as the callee saw it: a buffer that the function writes later, or
    /// that is local to a branch or a loop body (out of scope in the reverse sweep), is
    /// copied in the forward sweep just before the call (the copy is a value like any
    /// other: saved on a tape inside loops).
    fn as_at_call(&mut self, a: &Arg, region: RegionId) -> Arg {
        match a {
            Arg::Tuple(items) => Arg::Tuple(items.iter().map(|i| self.as_at_call(i, region)).collect()),
            Arg::Buffer { buf, borrowed } if self.written_after_current(*buf) || !self.available_in_reverse(*buf) => {
                let rv = Rvalue::Slice { buf: *buf, lo: None, hi: None, inclusive: false };
                Arg::Buffer { buf: self.snapshot(*buf, rv, region), borrowed: *borrowed }
            }
            Arg::Slice { buf, lo, hi, inclusive }
                if self.written_after_current(*buf) || !self.available_in_reverse(*buf) =>
            {
                let rv = Rvalue::Slice { buf: *buf, lo: lo.clone(), hi: hi.clone(), inclusive: *inclusive };
                Arg::Buffer { buf: self.snapshot(*buf, rv, region), borrowed: true }
            }
            other => other.clone(),
        }
    }

    /// Whether `buf` is written after the statement being reversed: later in program
    /// order, or anywhere in a loop that contains that statement (a later iteration).
    fn written_after_current(&self, buf: Var) -> bool {
        let Some(&(at, _)) = self.positions.get(&self.current) else { return true };
        self.writes.get(&buf).is_some_and(|ws| {
            ws.iter()
                .any(|&w| w > at || self.loop_spans.iter().any(|&(lo, hi)| lo <= at && at <= hi && lo <= w && w <= hi))
        })
    }

    fn snapshot(&mut self, buf: Var, rv: Rvalue, region: RegionId) -> Var {
        let name = format!("{}_at_call", self.vars.info(buf).name);
        let snap = self.vars.add_like(buf, name, Role::Temp);
        self.def_region.insert(snap, region);
        self.snapshots.entry(self.current).or_default().push((snap, rv));
        snap
    }
}

/// The bounds of the sub-slices among call arguments.
fn slice_bounds(args: &[Arg], out: &mut Vec<Operand>) {
    for a in args {
        match a {
            Arg::Slice { lo, hi, .. } => out.extend(lo.iter().chain(hi.iter()).cloned()),
            Arg::Tuple(items) => slice_bounds(items, out),
            _ => {}
        }
    }
}

/// The companion `entity` of a user's function (`f::entity`, `Type::entity_f`,
/// `x.entity_f(…)`). Only the user's functions have these, not their derivatives (whose
/// calls a derivative of a derivative reverses), and rules and the tower's own entities
/// are called otherwise.
fn user_companion(callee: &Callee, entity: &str) -> Option<Callee> {
    let generated = |id: &syn::Ident| id.to_string().starts_with("__adjoint_");
    match callee {
        Callee::Free { path } | Callee::Assoc { path } if path.segments.last().is_some_and(|s| generated(&s.ident)) => {
            None
        }
        Callee::Method { name } if generated(name) => None,
        Callee::Free { path } => Some(Callee::Free { path: crate::names::entity_path(path, entity) }),
        Callee::Assoc { path } => Some(Callee::Assoc { path: crate::names::entity_path(path, entity) }),
        Callee::Method { name } => Some(Callee::Method {
            name: syn::Ident::new(&crate::names::method_companion(entity, &name.to_string()), name.span()),
        }),
        Callee::Tower { .. }
        | Callee::Rule { .. }
        | Callee::Detach
        | Callee::Pullback(_)
        | Callee::Construct { .. }
        | Callee::AssocRule { .. } => None,
    }
}
