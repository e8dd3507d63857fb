//! The reverse-mode transform: `Func` → `Func`.
//!
//! Given a function and the parameters whose gradients are wanted, build a function
//! that runs a *forward sweep* (the primal code, pruned to what the reverse sweep needs)
//! and then a *reverse sweep* (adjoint statements in reverse order), and returns the
//! gradients (and optionally the value).
//!
//! What the reverse sweep reads is decided here (Tapenade's model):
//! - values defined at the top level of the function are still in scope: nothing to do;
//! - a value defined inside a loop body or a branch is *recomputed* at the start of the
//!   matching reverse region when it is a cheap pure function of values available there
//!   (loop indices, unchanging inputs, other recomputed values), and *saved* otherwise:
//!   pushed on a tape inside loops, kept in a one-value slot in branches outside loops;
//! - branch decisions and loop bounds are values like any other; `while` loops count
//!   their iterations.
//!
//! Straight-line code therefore needs no tape at all, and a loop whose body only reads
//! unchanging inputs (such as Rosenbrock's) needs none either.
//!
//! The output uses only IR constructs, each of which has a reverse rule here, so the
//! transform can be applied to its own output (higher-order derivatives).

use std::collections::{HashMap, HashSet};

use proc_macro2::Span;
use quote::quote;

use crate::activity::{self, Activity};
use crate::ctxt::Ctxt;
use crate::ir::*;
use crate::ops::{self, Contribution, Need};

/// Which gradient a parameter contributes to the result.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum GradOut {
    /// The gradient is returned.
    Yes,
    /// A `()` placeholder is returned (the parameter is not differentiable).
    Unit,
    /// Nothing is returned for this parameter.
    Omit,
}

/// Where the cotangent of the output comes from.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Seed {
    /// A parameter appended to the signature.
    Param,
    /// One (the gradient of a scalar output).
    One,
}

pub struct Config {
    pub grads: Vec<GradOut>,
    pub keep_value: bool,
    pub seed: Seed,
}

/// The result of the transform. The function's `ret` is the tuple
/// `(value, (grads…))` when the value is kept, `(grads…)` otherwise; `grads` has one
/// entry per parameter that is not `Omit`. The cotangent, with `Seed::Param`, is the
/// last parameter.
pub struct Derivative {
    pub func: Func,
}

type RegionId = usize;

#[derive(Clone, Copy, Debug)]
struct Region {
    /// Inside a loop body (at any depth): saved values go on a tape.
    in_loop: bool,
}

/// How the adjoint of a value is held.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum AdjPlan {
    /// Exactly one contribution, in the defining region: `let v_bar = c;`.
    Single,
    /// Several contributions, all in the defining region: the first initialises the
    /// accumulator (`let mut v_bar = c₁; v_bar += c₂;`), so no zero is ever built.
    Chain,
    /// Accumulated in a cell declared (as zero) at the start of the defining region's
    /// reverse: contributions come from nested regions, or the value is a cell.
    Accumulator,
}

/// How a value needed by the reverse sweep is made available.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Materialize {
    Recompute,
    Save,
}

struct Transform<'a> {
    cx: &'a mut Ctxt,
    src: &'a Func,
    act: Activity,
    vars: Vars,
    regions: Vec<Region>,
    block_region: HashMap<*const Block, RegionId>,
    def_region: HashMap<Var, RegionId>,
    def_stmt: HashMap<Var, &'a Stmt>,
    /// Position of each definition in program order (recomputation replays this order).
    def_order: HashMap<Var, usize>,
    /// Buffers written after their declaration.
    mutated: HashSet<Var>,
    /// Contributions per active value: (count, regions).
    contributions: HashMap<Var, (usize, HashSet<RegionId>)>,
    plan: HashMap<Var, AdjPlan>,
    /// The adjoint variable of each active value (a temp, a cell, a buffer or a tape).
    adj: HashMap<Var, Var>,
    /// Values the reverse sweep reads, by the region reading them.
    needs: Vec<(Var, RegionId)>,
    /// How each value defined outside the top level is made available to the reverse sweep.
    decided: HashMap<Var, Materialize>,
    /// The tape or slot of each saved value.
    store: HashMap<Var, Var>,
    /// Trip counters of `while` loops (per loop body block).
    trips: HashMap<*const Block, (Var, Var)>,
    /// Accumulator declarations per region, emitted at the start of its reverse.
    accumulators: HashMap<RegionId, Vec<Stmt>>,
    /// The accumulator variable of each value with several contributions (made up
    /// front; declared when first needed).
    acc_vars: HashMap<Var, Var>,
    /// Values read from a cell at the end of its region's forward sweep (`final`,
    /// `cell`), saved so the reverse can shape the cell's zero adjoint.
    finals: HashMap<RegionId, Vec<(Var, Var)>>,
}

/// Build the derivative of `src`.
pub fn vjp(src: &Func, cfg: &Config, cx: &mut Ctxt) -> Derivative {
    let inputs: Vec<Var> = src
        .params
        .iter()
        .zip(&cfg.grads)
        .filter(|(_, g)| **g == GradOut::Yes)
        .flat_map(|(p, _)| p.pat.leaves().into_iter().copied().collect::<Vec<_>>())
        .collect();
    let outputs: Vec<Var> = src.ret.leaves().iter().filter_map(|o| o.var()).collect();
    let act = activity::analyze(src, &inputs, &outputs);
    let mut t = Transform {
        cx,
        src,
        act,
        vars: src.vars.clone(),
        regions: vec![Region { in_loop: false }],
        block_region: HashMap::new(),
        def_region: HashMap::new(),
        def_stmt: HashMap::new(),
        def_order: HashMap::new(),
        mutated: HashSet::new(),
        contributions: HashMap::new(),
        plan: HashMap::new(),
        adj: HashMap::new(),
        needs: Vec::new(),
        decided: HashMap::new(),
        store: HashMap::new(),
        trips: HashMap::new(),
        accumulators: HashMap::new(),
        acc_vars: HashMap::new(),
        finals: HashMap::new(),
    };
    for p in &src.params {
        for v in p.pat.leaves() {
            t.def_region.insert(*v, 0);
        }
    }
    t.block_region.insert(&src.body as *const Block, 0);
    t.scan_regions(&src.body, 0);
    t.count_contributions(&src.body, 0);
    t.check_active(&src.body);
    t.plan_adjoints();

    // The cotangent of the result.
    let cotangent = match cfg.seed {
        Seed::Param => Some(src.ret.map(&mut |o| match o {
            Operand::Var(v) => t.vars.add_like(*v, "cotangent", Role::Param),
            Operand::Const(c) => {
                let v = t.vars.add("cotangent", c.kind, Role::Param, Span::call_site());
                t.vars.info_mut(v).scalar_ty = c.scalar_ty.clone();
                v
            }
        })),
        Seed::One => None,
    };

    // Reverse sweep first: it tells what the forward sweep must keep.
    let mut top_rev = Vec::new();
    t.seed(&mut top_rev, &cotangent);
    let body_rev = t.rev_block(&src.body);
    top_rev.extend(body_rev);
    let grads: Vec<Tree<Operand>> = src
        .params
        .iter()
        .zip(&cfg.grads)
        .filter(|(_, g)| **g != GradOut::Omit)
        .map(|(p, g)| match g {
            GradOut::Yes => {
                let pat = p.pat.clone();
                t.grad_tree(&pat, &mut top_rev)
            }
            _ => Tree::Tuple(Vec::new()),
        })
        .collect();

    let forward = t.forward_sweep(cfg.keep_value);

    // Assemble: tapes and slots, forward sweep, top-level accumulators, reverse sweep.
    let mut body = Vec::new();
    let mut stores: Vec<(Var, Var)> = t.store.iter().map(|(a, b)| (*a, *b)).collect();
    stores.sort();
    for (_, s) in stores {
        body.push(match t.vars.role(s) {
            Role::Tape => Stmt::Tape { var: s },
            _ => Stmt::Slot { var: s },
        });
    }
    body.extend(forward);
    let accs = t.accumulators.remove(&0).unwrap_or_default();
    body.extend(accs);
    body.extend(top_rev);

    let grads_tree = Tree::Tuple(grads);
    let ret = if cfg.keep_value { Tree::Tuple(vec![src.ret.clone(), grads_tree]) } else { grads_tree };
    let mut params = src.params.clone();
    if let Some(c) = &cotangent {
        params.push(Param { pat: c.clone() });
    }
    Derivative { func: Func { vars: t.vars, params, body, ret } }
}

impl<'a> Transform<'a> {
    // ------------------------------------------------------------------ analysis

    fn new_region(&mut self, parent: RegionId, in_loop: bool, block: &'a Block) -> RegionId {
        let in_loop = in_loop || self.regions[parent].in_loop;
        self.regions.push(Region { in_loop });
        let id = self.regions.len() - 1;
        self.block_region.insert(block as *const Block, id);
        id
    }

    fn scan_regions(&mut self, block: &'a Block, region: RegionId) {
        for s in block {
            match s {
                Stmt::Let { dst, .. } => {
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
                Stmt::Assign { .. } | Stmt::Save { .. } => {}
            }
        }
    }

    fn region_of(&self, block: &Block) -> RegionId {
        self.block_region[&(block as *const Block)]
    }

    fn active(&self, v: Var) -> bool {
        self.act.is_active(self.src, v)
    }

    fn op_active(&self, o: &Operand) -> bool {
        self.act.operand_active(self.src, o)
    }

    fn kind(&self, o: &Operand) -> Kind {
        match o {
            Operand::Var(v) => self.vars.kind(*v),
            Operand::Const(c) => c.kind,
        }
    }

    fn note(&mut self, v: Var, region: RegionId) {
        if self.active(v) {
            let e = self.contributions.entry(v).or_default();
            e.0 += 1;
            e.1.insert(region);
        }
    }

    fn note_op(&mut self, o: &Operand, region: RegionId) {
        if let Some(v) = o.var() {
            self.note(v, region);
        }
    }

    /// Count, for every active value, how many adjoint contributions it receives and in
    /// which regions (this decides between `let v_bar = c` and an accumulator).
    fn count_contributions(&mut self, block: &'a Block, region: RegionId) {
        for s in block {
            match s {
                Stmt::Let { dst, rv, .. } if dst.leaves().iter().any(|v| self.active(**v)) => {
                    for o in activity::differentiable_operands(rv) {
                        self.note_op(&o, region);
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
    fn check_active(&mut self, block: &'a Block) {
        walk_stmts(block, &mut |s| {
            if let Stmt::Let { dst, rv, span } = s {
                if !dst.leaves().iter().any(|v| self.active(**v)) {
                    return;
                }
                match rv {
                    Rvalue::Method { recv, method, args } if ops::method(&method.to_string()).is_none() => {
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
                    Rvalue::Field(o, _) if self.op_active(o) => {
                        self.cx.error_at(*span, "a field of a value that carries a derivative cannot be read here; destructure the tuple with `let (a, b) = …`");
                    }
                    _ => {}
                }
            }
        });
    }

    fn plan_adjoints(&mut self) {
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
            let p = match (local, *count) {
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

    fn need(&mut self, o: &Operand, region: RegionId) {
        if let Operand::Var(v) = o {
            self.needs.push((*v, region));
        }
    }

    // ------------------------------------------------------------------ adjoints

    fn adj_name(&self, v: Var) -> String {
        format!("{}_bar", self.vars.info(v).name)
    }

    /// The accumulator of `v`, declared at the start of its region's reverse.
    fn accumulator(&mut self, v: Var) -> Var {
        if let Some(a) = self.adj.get(&v) {
            return *a;
        }
        let info = self.vars.info(v).clone();
        let region = self.def_region.get(&v).copied().unwrap_or(0);
        let premade = self.acc_vars.get(&v).copied();
        let (acc, decl) = match info.role {
            Role::Buffer | Role::Param if info.kind.is_buffer() => {
                let a = premade.unwrap_or_else(|| self.vars.add_like(v, self.adj_name(v), Role::Buffer));
                self.needs.push((v, region));
                (a, Stmt::Buffer { var: a, init: BufferInit::ZerosLike(v) })
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

    /// A zero shaped like `v`, usable at the start of `region`'s reverse (with the
    /// statement computing it, if any).
    fn zero_of(&mut self, v: Var, region: RegionId) -> (Option<Stmt>, Operand) {
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
                let info = self.vars.info(v).clone();
                let fin = self.vars.add_like(v, format!("{}_final", info.name), Role::Temp);
                self.def_region.insert(fin, region);
                self.finals.entry(region).or_default().push((fin, v));
                Operand::Var(fin)
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
    fn contribute(&mut self, o: &Operand, c: Operand, out: &mut Block) {
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
                let place = if self.vars.kind(v).is_buffer() {
                    Place::Slice { buf: acc, lo: None, hi: None, inclusive: false }
                } else {
                    Place::Cell(acc)
                };
                out.push(Stmt::Accumulate { place, value: c });
            }
        }
    }

    /// The complete adjoint of `v`, read where its definition is reversed.
    fn adj_value(&mut self, v: Var, out: &mut Block) -> Option<Operand> {
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

    fn temp(&mut self, name: &str, kind: Kind, rv: Rvalue, span: Span, out: &mut Block) -> Operand {
        let v = self.vars.add(name, kind, Role::Temp, span);
        // A scalar result has the generic type of its scalar operands, if any.
        if kind == Kind::Float {
            let ty = rv.operands().iter().filter_map(|o| o.var()).find_map(|x| self.vars.info(x).scalar_ty.clone());
            self.vars.info_mut(v).scalar_ty = ty;
        }
        out.push(Stmt::Let { dst: Tree::Leaf(v), rv, span });
        Operand::Var(v)
    }

    // ------------------------------------------------------------------ reverse sweep

    fn seed(&mut self, out: &mut Block, cotangent: &Option<Tree<Var>>) {
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
    fn rev_block(&mut self, block: &'a Block) -> Block {
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

    fn rev_stmt(&mut self, s: &'a Stmt, region: RegionId, out: &mut Block) {
        match s {
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
                out.push(Stmt::For { var: index, range: range.reversed(), body: rb });
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
            Stmt::Tape { .. } | Stmt::Slot { .. } => {}
        }
    }

    /// A zero for a cotangent component that received nothing.
    fn zero_now(&mut self, v: Var, region: RegionId, out: &mut Block) -> Operand {
        if self.vars.kind(v) == Kind::Float {
            return self.vars.zero(v);
        }
        self.need(&Operand::Var(v), region);
        self.temp("zero", self.vars.kind(v), Rvalue::Zero(Operand::Var(v)), Span::call_site(), out)
    }

    fn zero_for_reset(&mut self, v: Var, acc: Var, _region: RegionId, out: &mut Block) -> Operand {
        if self.vars.kind(v) == Kind::Float {
            return self.vars.zero(v);
        }
        let cur = self.temp("bar", self.vars.kind(v), Rvalue::Use(Operand::Var(acc)), Span::call_site(), out);
        self.temp("zero", self.vars.kind(v), Rvalue::Zero(cur), Span::call_site(), out)
    }

    fn read_place(&mut self, place: &Place, acc: Var, region: RegionId, out: &mut Block) -> Operand {
        let kind = self.vars.kind(place.target());
        match place {
            Place::Cell(_) => self.temp("bar", kind, Rvalue::Use(Operand::Var(acc)), Span::call_site(), out),
            Place::Elem(_, idx) => {
                self.need(idx, region);
                self.temp("bar", kind.element(), Rvalue::Index { buf: acc, index: idx.clone() }, Span::call_site(), out)
            }
            Place::Slice { lo: None, hi: None, inclusive: false, .. } => Operand::Var(acc),
            Place::Slice { lo, hi, inclusive, .. } => {
                for o in lo.iter().chain(hi.iter()) {
                    self.need(o, region);
                }
                let rv = Rvalue::Slice { buf: acc, lo: lo.clone(), hi: hi.clone(), inclusive: *inclusive };
                self.temp("bar", kind, rv, Span::call_site(), out)
            }
        }
    }

    fn rev_rvalue(&mut self, v: Var, rv: &Rvalue, ybar: Operand, span: Span, region: RegionId, out: &mut Block) {
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
            Rvalue::Method { recv, method, args } => {
                let Some(prim) = ops::method(&method.to_string()) else {
                    return;
                };
                if prim.output != ops::Output::Same {
                    return;
                }
                let mut operands = vec![recv.clone()];
                operands.extend(args.iter().cloned());
                self.apply_prim(prim, &operands, v, ybar, span, region, out);
            }
            Rvalue::Call { callee, args } => {
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
                let c = self.temp(
                    &self.adj_name(v),
                    self.kind(o),
                    Rvalue::Call {
                        callee: Callee::Rule { trait_name: "Cast", method: "cast_adjoint".into() },
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
            Rvalue::Field(..) | Rvalue::Len(_) | Rvalue::Zero(_) | Rvalue::One(_) => {}
        }
    }

    /// Apply a primitive's rules: one contribution per active operand.
    #[allow(clippy::too_many_arguments)]
    fn apply_prim(
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
    fn rev_call(
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
        // The companion needs every argument as it was at the call.
        let mut all = Vec::new();
        args.iter().for_each(|a| a.operands(&mut all));
        for o in &all {
            self.need(o, region);
        }
        let grads: Vec<Tree<Var>> = args.iter().map(|a| self.grad_pattern(a, span)).collect();
        let cot_args = match cot {
            Tree::Leaf(o) => vec![Arg::Value(o)],
            tree => vec![tree_arg(&tree)],
        };
        let mut call_args: Vec<Arg> = args.to_vec();
        call_args.extend(cot_args);
        let d1 = match callee {
            Callee::Free { path } => Callee::Free { path: crate::names::entity_path(path, crate::names::D1) },
            Callee::Rule { trait_name, method } => Callee::Rule { trait_name, method: derivative_method(method) },
            Callee::Detach => unreachable!("handled above"),
        };
        out.push(Stmt::Let { dst: Tree::Tuple(grads.clone()), rv: Rvalue::Call { callee: d1, args: call_args }, span });
        for (a, g) in args.iter().zip(&grads) {
            self.accumulate_arg(a, g, out);
        }
    }

    fn arg_active(&self, a: &Arg) -> bool {
        match a {
            Arg::Value(o) | Arg::Ref(o) => self.op_active(o),
            Arg::Buffer { buf: b, .. } | Arg::Slice { buf: b, .. } => self.active(*b),
            Arg::Tuple(items) => items.iter().any(|i| self.arg_active(i)),
        }
    }

    /// The pattern that receives the gradient of one argument (`_` when inactive).
    fn grad_pattern(&mut self, a: &Arg, span: Span) -> Tree<Var> {
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

    fn accumulate_arg(&mut self, a: &Arg, g: &Tree<Var>, out: &mut Block) {
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
    fn grad_tree(&mut self, pat: &Tree<Var>, out: &mut Block) -> Tree<Operand> {
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

    // ------------------------------------------------------------------ materialisation

    /// The start of a region's reverse: every value defined in the region and read by
    /// its reverse is popped from its tape (or slot) or recomputed, in program order,
    /// into a fresh variable (returned in the renaming for the region's reverse body).
    fn materialize_region(&mut self, region: RegionId) -> (Block, HashMap<Var, Var>) {
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
            let how = if self.recomputable(v) { Materialize::Recompute } else { Materialize::Save };
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

    /// A pure, cheap operation on scalars whose inputs never change.
    fn recomputable(&self, v: Var) -> bool {
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
            Rvalue::Method { recv, method, args } => {
                (ops::method(&method.to_string()).is_some() || self.kind(recv) == Kind::Int)
                    && ok(recv)
                    && args.iter().all(ok)
            }
            Rvalue::Index { buf, index } => {
                !self.mutated.contains(buf) && ok(index) && self.vars.kind(*buf).element() != Kind::Unknown
            }
            Rvalue::Len(buf) => !self.mutated.contains(buf),
            _ => false,
        }
    }

    // ------------------------------------------------------------------ forward sweep

    /// The primal code, pruned to what the reverse sweep (and the value) need, with
    /// saves of the values the reverse sweep cannot recompute.
    fn forward_sweep(&mut self, keep_value: bool) -> Block {
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
        for (fin, cell) in self.finals.values().flatten() {
            if self.store.contains_key(fin) {
                needed.insert(*cell);
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

    /// Whether anything inside a block is kept.
    fn block_kept(&self, block: &Block, needed: &HashSet<Var>) -> bool {
        block.iter().any(|s| self.stmt_kept(s, needed))
    }

    fn stmt_kept(&self, s: &Stmt, needed: &HashSet<Var>) -> bool {
        let region_has_finals = |b: &Block| {
            self.finals.get(&self.region_of(b)).is_some_and(|f| f.iter().any(|(fin, _)| self.store.contains_key(fin)))
        };
        match s {
            Stmt::Let { dst, .. } => dst.leaves().iter().any(|v| needed.contains(v) || self.store.contains_key(v)),
            Stmt::Cell { var, .. } | Stmt::Buffer { var, .. } | Stmt::Tape { var } | Stmt::Slot { var } => {
                needed.contains(var)
            }
            Stmt::Assign { var, .. } => needed.contains(var),
            Stmt::Store { buf, .. } | Stmt::Push { buf, .. } => needed.contains(buf),
            Stmt::Accumulate { place, .. } => needed.contains(&place.target()),
            Stmt::Save { slot, .. } => needed.contains(slot),
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

    fn close_needed(&self, block: &Block, needed: &mut HashSet<Var>) {
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
                Stmt::Cell { init: None, .. } | Stmt::Tape { .. } | Stmt::Slot { .. } => {}
            }
        }
    }

    fn emit_forward(&mut self, block: &'a Block, needed: &HashSet<Var>) -> Block {
        let mut out = self.emit_forward_stmts(block, needed);
        let region = self.region_of(block);
        for (fin, cell) in self.finals.get(&region).cloned().unwrap_or_default() {
            if let Some(st) = self.store.get(&fin).copied() {
                let span = self.vars.info(fin).span;
                out.push(Stmt::Let { dst: Tree::Leaf(fin), rv: Rvalue::Use(Operand::Var(cell)), span });
                out.push(save_stmt(&self.vars, st, fin));
            }
        }
        out
    }

    fn emit_forward_stmts(&mut self, block: &'a Block, needed: &HashSet<Var>) -> Block {
        let mut out = Vec::new();
        for s in block {
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
                Stmt::Let { dst, .. } => {
                    out.push(s.clone());
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

fn save_stmt(vars: &Vars, store: Var, v: Var) -> Stmt {
    match vars.role(store) {
        Role::Tape => Stmt::Push { buf: store, value: Operand::Var(v) },
        _ => Stmt::Save { slot: store, value: Operand::Var(v) },
    }
}

fn tree_arg(t: &Tree<Operand>) -> Arg {
    match t {
        Tree::Leaf(o) => Arg::Value(o.clone()),
        Tree::Tuple(items) => Arg::Tuple(items.iter().map(tree_arg).collect()),
    }
}

/// The derivative companion of a rule method: `m` → `__adjoint_d1_m`; a companion's
/// own companion counts up: `__adjoint_d1_m` → `__adjoint_d2_m`.
pub fn derivative_method(method: &str) -> String {
    if let Some(rest) = method.strip_prefix("__adjoint_d") {
        if let Some((n, base)) = rest.split_once('_') {
            if let Ok(k) = n.parse::<u32>() {
                return format!("__adjoint_d{}_{}", k + 1, base);
            }
        }
    }
    format!("__adjoint_d1_{method}")
}
