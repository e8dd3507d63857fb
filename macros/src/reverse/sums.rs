//! Sums of adjoint contributions.
//!
//! The reverse sweep adds each contribution to its adjoint where the contribution is
//! made: `x̄ += a; …; x̄ += b; …; x̄ += c;`. Each `+=` waits for the one before it, so
//! the adjoint of a value read k times costs k dependent additions, and the adjoint of
//! a buffer element read twice in a loop body (`u[i]` in a stencil) costs two
//! read-modify-writes of memory, the second waiting for the first. Within a
//! straight-line block, this pass gathers the contributions to one scalar adjoint (or
//! to one element `ū[i]`) that nothing reads between them into one balanced sum,
//! added where the last one was: `let x̄_sum = (a + b) + c; x̄ += x̄_sum;`. An adjoint
//! zeroed in the same block before its first contribution (`x̄ = 0; … x̄ += s;`) is
//! assigned instead (`x̄ = s;`), and the zeroing goes.
//!
//! The contributions commute, so the sum is the same one in another order (the
//! rounding may differ in the last place, as between any two orders of summation).

use std::collections::HashMap;

use super::fuse::Effects;
use crate::ir::*;

/// Gathers the contributions in `block` and, recursively, in its nested blocks.
pub fn gather_sums(block: &mut Block, vars: &mut Vars) {
    for s in block.iter_mut() {
        for b in s.blocks_mut() {
            gather_sums(b, vars);
        }
    }
    let mut groups = Groups::default();
    for (at, s) in block.iter().enumerate() {
        groups.visit(at, s, vars);
    }
    let closed = groups.finish();
    rewrite(block, closed, vars);
}

/// What one accumulation adds to: a float cell, or one element of a float buffer at an
/// index variable.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
enum Target {
    Cell(Var),
    Elem(Var, Var),
}

impl Target {
    fn of(place: &Place, vars: &Vars) -> Option<Target> {
        match place {
            Place::Cell(c) if vars.kind(*c) == Kind::Float => Some(Target::Cell(*c)),
            Place::Elem(b, Operand::Var(i)) if vars.kind(*b).element() == Kind::Float => Some(Target::Elem(*b, *i)),
            _ => None,
        }
    }

    fn var(self) -> Var {
        match self {
            Target::Cell(v) | Target::Elem(v, _) => v,
        }
    }
}

/// The accumulations into one target since nothing read it.
#[derive(Debug)]
struct Group {
    target: Target,
    /// Statement positions of the accumulations, and what each adds.
    parts: Vec<(usize, Operand)>,
    /// The position of `cell = 0` before the first accumulation, when the cell was
    /// zeroed there and not read since.
    zeroed: Option<usize>,
}

#[derive(Default)]
struct Groups {
    open: Vec<Group>,
    closed: Vec<Group>,
    /// Float cells set to zero, and where, not read since.
    zeroed: HashMap<Var, usize>,
}

impl Groups {
    fn visit(&mut self, at: usize, s: &Stmt, vars: &Vars) {
        if let Stmt::Accumulate { place, value } = s {
            if let Some(target) = Target::of(place, vars) {
                // Its value and index are read; the target itself is only added to,
                // which commutes with the other additions to the same buffer.
                let reads: Vec<Var> = value.var().into_iter().chain(index_of(target)).collect();
                self.close_where(|g| reads.contains(&g.target.var()));
                match self.open.iter_mut().find(|g| g.target == target) {
                    Some(g) => g.parts.push((at, value.clone())),
                    None => {
                        let zeroed = match target {
                            Target::Cell(c) => self.zeroed.remove(&c),
                            Target::Elem(..) => None,
                        };
                        self.open.push(Group { target, parts: vec![(at, value.clone())], zeroed });
                    }
                }
                self.zeroed.remove(&target.var());
                return;
            }
        }
        let effects = Effects::of(std::slice::from_ref(s));
        self.close_where(|g| {
            let t = g.target.var();
            effects.reads.contains(&t)
                || effects.writes.contains(&t)
                || index_of(g.target).is_some_and(|i| effects.writes.contains(&i))
                || g.parts.iter().any(|(_, v)| v.var().is_some_and(|v| effects.writes.contains(&v)))
        });
        self.zeroed.retain(|c, _| !effects.reads.contains(c) && !effects.writes.contains(c));
        if let Stmt::Assign { var, value: Operand::Const(c) } = s {
            if vars.kind(*var) == Kind::Float && is_zero(c, *var, vars) {
                self.zeroed.insert(*var, at);
            }
        }
    }

    fn close_where(&mut self, mut conflicts: impl FnMut(&Group) -> bool) {
        let mut i = 0;
        while i < self.open.len() {
            if conflicts(&self.open[i]) {
                let g = self.open.remove(i);
                self.closed.push(g);
            } else {
                i += 1;
            }
        }
    }

    fn finish(mut self) -> Vec<Group> {
        self.closed.append(&mut self.open);
        self.closed.retain(|g| g.parts.len() > 1 || g.zeroed.is_some());
        self.closed
    }
}

fn index_of(t: Target) -> Option<Var> {
    match t {
        Target::Elem(_, i) => Some(i),
        Target::Cell(_) => None,
    }
}

fn is_zero(c: &Const, var: Var, vars: &Vars) -> bool {
    let Operand::Const(zero) = vars.zero(var) else { return false };
    c.tokens.to_string() == zero.tokens.to_string()
}

/// Each group's accumulations become one, at the last one's place, of the balanced
/// sum of their values (computed just before it).
fn rewrite(block: &mut Block, groups: Vec<Group>, vars: &mut Vars) {
    if groups.is_empty() {
        return;
    }
    let mut removed = vec![false; block.len()];
    let mut before: HashMap<usize, Vec<Stmt>> = HashMap::new();
    for g in groups {
        let (last, _) = *g.parts.last().expect("a group has an accumulation");
        let values: Vec<Operand> = g.parts.iter().map(|(_, v)| v.clone()).collect();
        let (sum, lets) = balanced_sum(values, g.target, vars);
        for (at, _) in &g.parts[..g.parts.len() - 1] {
            removed[*at] = true;
        }
        before.entry(last).or_default().extend(lets);
        block[last] = match (g.zeroed, g.target) {
            (Some(z), Target::Cell(c)) => {
                removed[z] = true;
                Stmt::Assign { var: c, value: sum }
            }
            (_, Target::Cell(c)) => Stmt::Accumulate { place: Place::Cell(c), value: sum },
            (_, Target::Elem(b, i)) => Stmt::Accumulate { place: Place::Elem(b, Operand::Var(i)), value: sum },
        };
    }
    let old = std::mem::take(block);
    for (at, s) in old.into_iter().enumerate() {
        if let Some(lets) = before.remove(&at) {
            block.extend(lets);
        }
        if !removed[at] {
            block.push(s);
        }
    }
}

/// `((v₁ + v₂) + (v₃ + v₄)) + …` as `let` statements, and the operand holding it.
fn balanced_sum(mut level: Vec<Operand>, target: Target, vars: &mut Vars) -> (Operand, Vec<Stmt>) {
    let mut lets = Vec::new();
    let base = target.var();
    let name = format!("{}_sum", vars.info(base).name);
    let span = vars.info(base).span;
    let scalar_ty = vars.info(base).scalar_ty.clone();
    while level.len() > 1 {
        let mut next = Vec::with_capacity(level.len().div_ceil(2));
        let mut items = level.into_iter();
        while let Some(a) = items.next() {
            match items.next() {
                Some(b) => {
                    let s = vars.add(name.clone(), Kind::Float, Role::Temp, span);
                    vars.info_mut(s).scalar_ty = scalar_ty.clone();
                    lets.push(Stmt::Let { dst: Tree::Leaf(s), rv: Rvalue::Binary(BinOp::Add, a, b), span });
                    next.push(Operand::Var(s));
                }
                None => next.push(a),
            }
        }
        level = next;
    }
    (level.pop().expect("at least one value"), lets)
}
