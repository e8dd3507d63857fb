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

mod adjoints;
mod analysis;
mod carry;
mod forward;
mod fuse;
mod materialize;
mod sums;
mod sweep;

pub use fuse::fuse_loops;
pub use sums::gather_sums;

/// Which gradient a parameter contributes to the result.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum GradOut {
    /// The gradient is returned.
    Yes,
    /// A zero of the parameter's gradient type is returned: the parameter is
    /// differentiable but excluded (`#[no_grad]`), so no gradient flows through it.
    Zero,
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
    /// The runtime crate's path, when the derivative is not differentiated again: its
    /// calls then go to the callees' `__adjoint_d1_masked` companions, passing which
    /// arguments need a gradient.
    pub masked_calls: Option<syn::Path>,
    /// Whether top-level calls may go through their callees' split derivatives (not in
    /// a split derivative itself: its pullback cannot own a value and a borrow of it).
    pub split_calls: bool,
}

/// The result of the transform. The function's `ret` is the tuple
/// `(value, (grads…))` when the value is kept, `(grads…)` otherwise; `grads` has one
/// entry per parameter that is not `Omit`. The cotangent, with `Seed::Param`, is the
/// last parameter.
pub struct Derivative {
    pub func: Func,
    /// Where the reverse sweep starts in `func.body` (after the forward sweep).
    pub reverse_start: usize,
}

/// A call whose callee's split derivative runs in the forward sweep (see
/// [`crate::names::SPLIT`]): its reverse applies the pullback.
#[derive(Clone)]
struct SplitCall {
    pullback: Var,
    callee: Callee,
    args: Vec<Arg>,
}

type RegionId = usize;

#[derive(Clone, Copy, Debug)]
struct Region {
    parent: Option<RegionId>,
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
    /// Values whose named fields are read (their adjoints are accumulators).
    field_bases: HashSet<Var>,
    /// Values computed at the end of a region's forward sweep and saved so the reverse
    /// of the region can shape a zero adjoint: a cell's final value (`Use(cell)`), or a
    /// zero shaped like a buffer local to the region (`Zero(buf)`), which is out of scope
    /// in the reverse sweep.
    finals: HashMap<RegionId, Vec<(Var, Rvalue)>>,
    /// Copies of buffers taken in the forward sweep just before a call (keyed by the
    /// call statement): the buffer is written later, and the callee's derivative must
    /// see it as it was at the call.
    snapshots: HashMap<*const Stmt, Vec<(Var, Rvalue)>>,
    /// The statement being reversed.
    current: *const Stmt,
    /// Program-order position of every statement (and the last position inside it).
    positions: HashMap<*const Stmt, (usize, usize)>,
    /// Positions of the statements writing each buffer.
    writes: HashMap<Var, Vec<usize>>,
    /// The position ranges of loop statements.
    loop_spans: Vec<(usize, usize)>,
    /// See [`Config::masked_calls`].
    masked_calls: Option<syn::Path>,
    /// See [`Config::split_calls`].
    split_calls: bool,
    /// Calls made through their callee's split derivative, by statement.
    split: HashMap<*const Stmt, SplitCall>,
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
        regions: vec![Region { parent: None, in_loop: false }],
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
        field_bases: HashSet::new(),
        finals: HashMap::new(),
        snapshots: HashMap::new(),
        current: std::ptr::null(),
        positions: HashMap::new(),
        writes: HashMap::new(),
        loop_spans: Vec::new(),
        masked_calls: cfg.masked_calls.clone(),
        split_calls: cfg.split_calls,
        split: HashMap::new(),
    };
    for p in &src.params {
        for v in p.pat.leaves() {
            t.def_region.insert(*v, 0);
        }
    }
    t.block_region.insert(&src.body as *const Block, 0);
    t.scan_regions(&src.body, 0);
    let mut next = 0;
    t.number_statements(&src.body, &mut next);
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
            GradOut::Yes | GradOut::Zero => {
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
    let reverse_start = body.len();
    let accs = t.accumulators.remove(&0).unwrap_or_default();
    body.extend(accs);
    body.extend(top_rev);

    let grads_tree = Tree::Tuple(grads);
    let ret = if cfg.keep_value { Tree::Tuple(vec![src.ret.clone(), grads_tree]) } else { grads_tree };
    let mut params = src.params.clone();
    if let Some(c) = &cotangent {
        params.push(Param { pat: c.clone() });
    }
    Derivative { func: Func { vars: t.vars, params, body, ret }, reverse_start }
}

impl<'a> Transform<'a> {}

/// The derivative companion of a rule method: `m` → `__adjoint_d1_m`; a companion's
/// own companion counts up: `__adjoint_d1_m` → `__adjoint_d2_m`.
pub fn derivative_method(method: &str) -> String {
    crate::names::method_companion(crate::names::D1, method)
}
