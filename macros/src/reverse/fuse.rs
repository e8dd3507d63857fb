//! Fusion of a forward-sweep loop with the reverse loop that mirrors it.
//!
//! When a loop's reverse iterations commute, the reverse loop visits the same range
//! in the same order as the forward loop (see `carry.rs`). If the reverse loop reads
//! nothing the forward loop writes (it recomputes what it needs) and the forward loop
//! reads nothing the reverse loop writes, the two can run as one loop: iteration `i`
//! of the forward body, then iteration `i` of the reverse body. Both bodies read the
//! same inputs at the same index, so the fused loop reads memory once, and a
//! latency-bound forward reduction (`s += …`) overlaps with the gradient arithmetic.
//! A value-and-gradient then costs about what a hand-fused loop does.
//!
//! Statements between the two loops move before the fused loop when they do not
//! depend on the forward loop (the adjoint declarations), or after it when they do
//! (reading the forward loop's result), provided the reverse loop does not touch them.

use std::collections::{HashMap, HashSet};

use crate::ir::*;

/// Fuses mirrored loop pairs in `block` and, recursively, in its nested blocks.
pub fn fuse_loops(block: &mut Block, vars: &Vars) {
    while let Some((a, b, plan)) = find_pair(block, vars) {
        apply(block, a, b, plan);
    }
    for s in block.iter_mut() {
        for b in s.blocks_mut() {
            fuse_loops(b, vars);
        }
    }
}

/// Which of the statements between the loops stay after the fused loop (the others
/// move before it).
struct Plan {
    stays: Vec<bool>,
}

/// The variables a list of statements reads and writes (a definition counts as a
/// write; popping a tape or taking a slot's value too), and the reads that may move
/// the value (all but those the emitter borrows).
#[derive(Default)]
pub(super) struct Effects {
    pub(super) reads: HashSet<Var>,
    pub(super) writes: HashSet<Var>,
    moves: HashSet<Var>,
}

impl Effects {
    pub(super) fn of(stmts: &[Stmt]) -> Effects {
        let mut e = Effects::default();
        for s in stmts {
            e.add(s);
        }
        e
    }

    fn add(&mut self, stmt: &Stmt) {
        walk_stmts(std::slice::from_ref(stmt), &mut |s| {
            self.reads.extend(s.operands().iter().filter_map(Operand::var));
            self.moves.extend(moving_reads(s));
            self.writes.extend(s.written());
        });
    }

    fn reads_any(&self, vars: &HashSet<Var>) -> bool {
        !self.reads.is_disjoint(vars)
    }

    fn writes_any(&self, vars: &HashSet<Var>) -> bool {
        !self.writes.is_disjoint(vars)
    }
}

/// The first forward loop `a` and later loop `b` over the same range that may fuse.
fn find_pair(block: &Block, vars: &Vars) -> Option<(usize, usize, Plan)> {
    for (a, first) in block.iter().enumerate() {
        let Stmt::For { range: ra, .. } = first else { continue };
        let Some(b) =
            (a + 1..block.len()).find(|&b| matches!(&block[b], Stmt::For { range: rb, .. } if same_range(ra, rb)))
        else {
            continue;
        };
        if let Some(plan) = plan(block, a, b, vars) {
            return Some((a, b, plan));
        }
    }
    None
}

fn plan(block: &Block, a: usize, b: usize, vars: &Vars) -> Option<Plan> {
    let (Stmt::For { body: fb, .. }, Stmt::For { body: rb, .. }) = (&block[a], &block[b]) else {
        return None;
    };
    let fwd = Effects::of(fb);
    let rev = Effects::of(rb);
    // Interleaving the iterations is sound when neither loop sees the other's writes.
    if rev.reads_any(&fwd.writes) || fwd.reads_any(&rev.writes) || fwd.writes_any(&rev.writes) {
        return None;
    }
    let mut stays = Vec::new();
    let mut staying = Effects::default();
    for m in &block[a + 1..b] {
        let e = Effects::of(std::slice::from_ref(m));
        let stay = e.reads_any(&fwd.writes)
            || e.reads_any(&staying.writes)
            || e.writes_any(&fwd.reads)
            || e.writes_any(&fwd.writes)
            || e.writes_any(&staying.reads)
            || e.writes_any(&staying.writes);
        if stay {
            staying.add(m);
        } else if !only_copies(e.moves.intersection(&fwd.reads), vars) {
            // Moving a statement before the forward loop must not move a value the
            // loop still reads.
            return None;
        }
        stays.push(stay);
    }
    // The statements that stay now run after the reverse loop.
    if rev.reads_any(&staying.writes)
        || rev.writes_any(&staying.reads)
        || rev.writes_any(&staying.writes)
        || !only_copies(rev.moves.intersection(&staying.reads), vars)
    {
        return None;
    }
    Some(Plan { stays })
}

fn apply(block: &mut Block, a: usize, b: usize, plan: Plan) {
    let tail = block.split_off(b + 1);
    let Some(Stmt::For { var: rvar, body: mut rbody, .. }) = block.pop() else { unreachable!("the reverse loop") };
    let middle = block.split_off(a + 1);
    let Some(Stmt::For { var, range, body: mut fbody }) = block.pop() else { unreachable!("the forward loop") };
    rename_uses(&mut rbody, &HashMap::from([(rvar, var)]));
    fbody.extend(rbody);
    let mut after = Vec::new();
    for (m, stay) in middle.into_iter().zip(plan.stays) {
        if stay {
            after.push(m);
        } else {
            block.push(m);
        }
    }
    block.push(Stmt::For { var, range, body: fbody });
    block.extend(after);
    block.extend(tail);
}

/// The variables a statement reads in a position the emitter does not borrow.
fn moving_reads(s: &Stmt) -> Vec<Var> {
    let borrowed: Vec<Var> = match s {
        Stmt::Let { rv, .. } => match rv {
            Rvalue::Index { buf, .. }
            | Rvalue::Len(buf)
            | Rvalue::SortOrder { buf, .. }
            | Rvalue::Slice { buf, .. } => {
                vec![*buf]
            }
            Rvalue::Zero(o) | Rvalue::One(o) => o.var().into_iter().collect(),
            Rvalue::Method { args, by_ref, .. } => {
                args.iter().zip(by_ref).filter(|(_, r)| **r).filter_map(|(a, _)| a.var()).collect()
            }
            Rvalue::Call { args, .. } => {
                let mut out = Vec::new();
                borrowed_args(args, &mut out);
                out
            }
            _ => Vec::new(),
        },
        Stmt::Buffer { init: BufferInit::ZerosLike(v), .. } => vec![*v],
        Stmt::Accumulate { place, .. } => vec![place.target()],
        _ => Vec::new(),
    };
    s.operands().iter().filter_map(Operand::var).filter(|v| !borrowed.contains(v)).collect()
}

fn borrowed_args(args: &[Arg], out: &mut Vec<Var>) {
    for a in args {
        match a {
            Arg::Ref(Operand::Var(v)) | Arg::Buffer { buf: v, borrowed: true } | Arg::Slice { buf: v, .. } => {
                out.push(*v)
            }
            Arg::Tuple(items) => borrowed_args(items, out),
            _ => {}
        }
    }
}

/// Whether every variable is of a `Copy` kind (reading it moves nothing).
fn only_copies<'v>(mut vs: impl Iterator<Item = &'v Var>, vars: &Vars) -> bool {
    vs.all(|v| matches!(vars.kind(*v), Kind::Float | Kind::Int | Kind::Bool))
}

fn same_range(a: &Range, b: &Range) -> bool {
    same_operand(&a.lo, &b.lo)
        && same_operand(&a.hi, &b.hi)
        && a.inclusive == b.inclusive
        && a.adapters.len() == b.adapters.len()
        && a.adapters.iter().zip(&b.adapters).all(|pair| match pair {
            (Adapter::Rev, Adapter::Rev) => true,
            (Adapter::StepBy(x), Adapter::StepBy(y)) => same_operand(x, y),
            _ => false,
        })
}

fn same_operand(a: &Operand, b: &Operand) -> bool {
    match (a, b) {
        (Operand::Var(x), Operand::Var(y)) => x == y,
        (Operand::Const(x), Operand::Const(y)) => x.tokens.to_string() == y.tokens.to_string(),
        _ => false,
    }
}
