//! Neighbouring adjoint contributions carried in locals.
//!
//! A loop that reads `x[i]` and `x[i + 1]` adds to `x_bar[i]` and `x_bar[i + 1]` in
//! every reverse iteration, so each element of `x_bar` is read, added to and written
//! by two consecutive iterations. Besides the doubled memory traffic, LLVM's SLP
//! vectorizer pairs the two updates into one 16-byte read-modify-write that overlaps
//! the previous iteration's store, and store forwarding stalls on it.
//!
//! When the reverse loop runs in the forward order, one index at a time, the share of
//! `x_bar[i + k]` computed in iteration `i` is kept in a local ("carry") instead, until
//! iteration `i + k` adds its own share and writes the element once; after the loop,
//! the carries go to the elements past the last iteration. This is what a
//! hand-written stencil gradient does.

use std::collections::BTreeMap;

use proc_macro2::Span;
use quote::quote;

use super::Transform;
use crate::ir::*;

/// The widest stencil carried (offsets from `i + lo` to `i + lo + MAX_SPAN`).
const MAX_SPAN: i64 = 8;

/// One buffer's contributions in a loop body, by offset from the loop index.
struct Stencil {
    acc: Var,
    /// Offset → (position in the body, index operand, value) of each contribution.
    shares: BTreeMap<i64, Vec<(usize, Operand, Operand)>>,
}

impl<'a> Transform<'a> {
    /// Rewrites the reverse loop body `body` (index `index`, visiting `range` in
    /// increasing order) so that its accumulations into neighbouring elements of a
    /// buffer's adjoint are carried between iterations. Returns the statements to put
    /// before the loop (the carries' declarations) and after it (the last carries'
    /// accumulations).
    pub(super) fn carry_neighbour_adjoints(&mut self, index: Var, range: &Range, body: &mut Block) -> (Block, Block) {
        let stencils = if range.adapters.is_empty() { self.stencils(index, body) } else { Vec::new() };
        if stencils.is_empty() {
            return (Vec::new(), Vec::new());
        }
        // `if lo < hi { let last = hi - 1; …flush }` (or `lo <= hi`, `last = hi`).
        let ran = self.vars.add("ran", Kind::Bool, Role::Temp, Span::call_site());
        let cmp = if range.inclusive { BinOp::Le } else { BinOp::Lt };
        let ran_def = Stmt::Let {
            dst: Tree::Leaf(ran),
            rv: Rvalue::Binary(cmp, range.lo.clone(), range.hi.clone()),
            span: Span::call_site(),
        };
        let last = self.vars.add("last", Kind::Int, Role::Temp, Span::call_site());
        let rv = match range.inclusive {
            true => Rvalue::Use(range.hi.clone()),
            false => Rvalue::Binary(BinOp::Sub, range.hi.clone(), int(quote!(1))),
        };
        let mut flush = vec![Stmt::Let { dst: Tree::Leaf(last), rv, span: Span::call_site() }];
        let mut before = Vec::new();
        // Each stencil's accumulations are replaced by its update at the place of the
        // last one; positions refer to the body as it was, so it is rebuilt once.
        let mut updates: BTreeMap<usize, Block> = BTreeMap::new();
        let mut removed: Vec<usize> = Vec::new();
        for stencil in stencils {
            removed.extend(stencil.shares.values().flatten().map(|(pos, ..)| *pos));
            let (at, update) = self.carry(stencil, last, &mut before, &mut flush);
            updates.insert(at, update);
        }
        let mut rewritten = Vec::with_capacity(body.len());
        for (pos, s) in std::mem::take(body).into_iter().enumerate() {
            if let Some(update) = updates.remove(&pos) {
                rewritten.extend(update);
            } else if !removed.contains(&pos) {
                rewritten.push(s);
            }
        }
        *body = rewritten;
        (before, vec![ran_def, Stmt::If { cond: Operand::Var(ran), then_: flush, else_: Vec::new() }])
    }

    /// The buffers whose only uses in `body` are top-level accumulations at constant
    /// offsets from `index`, at two or more offsets.
    fn stencils(&self, index: Var, body: &Block) -> Vec<Stencil> {
        let mut offsets: BTreeMap<Var, i64> = BTreeMap::from([(index, 0)]);
        let mut by_acc: BTreeMap<Var, Stencil> = BTreeMap::new();
        for (pos, s) in body.iter().enumerate() {
            match s {
                Stmt::Let { dst: Tree::Leaf(t), rv: Rvalue::Binary(op, a, b), .. } => {
                    let offset = match (op, a, b) {
                        (BinOp::Add, Operand::Var(i), Operand::Const(c))
                        | (BinOp::Add, Operand::Const(c), Operand::Var(i))
                            if *i == index =>
                        {
                            int_literal(c)
                        }
                        (BinOp::Sub, Operand::Var(i), Operand::Const(c)) if *i == index => int_literal(c).map(|c| -c),
                        _ => None,
                    };
                    if let Some(k) = offset {
                        offsets.insert(*t, k);
                    }
                }
                Stmt::Accumulate { place: Place::Elem(acc, idx), value }
                    if self.vars.kind(*acc) == Kind::Buffer(Elem::Float) && self.kind(value) == Kind::Float =>
                {
                    if let Some(&k) = idx.var().and_then(|v| offsets.get(&v)) {
                        let stencil =
                            by_acc.entry(*acc).or_insert_with(|| Stencil { acc: *acc, shares: BTreeMap::new() });
                        stencil.shares.entry(k).or_default().push((pos, idx.clone(), value.clone()));
                    }
                }
                _ => {}
            }
        }
        let mut uses: BTreeMap<Var, usize> = BTreeMap::new();
        walk_stmts(body, &mut |s| {
            for v in s.operands().iter().filter_map(Operand::var) {
                *uses.entry(v).or_insert(0) += 1;
            }
        });
        by_acc
            .into_values()
            .filter(|s| {
                let count: usize = s.shares.values().map(Vec::len).sum();
                let (lo, hi) = (s.shares.keys().next(), s.shares.keys().last());
                s.shares.len() >= 2
                    && uses.get(&s.acc) == Some(&count)
                    && matches!((lo, hi), (Some(lo), Some(hi)) if hi - lo <= MAX_SPAN)
            })
            .collect()
    }

    /// Carries one buffer's shares: declarations go to `before`, the accumulations of
    /// the last carries (into elements past `last_index`) to `flush`. Returns the
    /// statements that replace the shares' accumulations in the body, and the position
    /// of the last of those accumulations, where they go.
    fn carry(&mut self, stencil: Stencil, last_index: Var, before: &mut Block, flush: &mut Block) -> (usize, Block) {
        let lo = *stencil.shares.keys().next().expect("two offsets");
        let span = stencil.shares.keys().last().expect("two offsets") - lo;
        let like = stencil.shares[&lo][0].2.var();
        let acc_name = self.vars.info(stencil.acc).name.clone();
        let name = format!("{acc_name}_carry");
        // carries[k - 1]: the share of element `i + lo + k` computed so far.
        let carries: Vec<Var> = (1..=span)
            .map(|_| {
                let v = match like {
                    Some(l) => self.vars.add_like(l, name.clone(), Role::Cell),
                    None => self.vars.add(name.clone(), Kind::Float, Role::Cell, Span::call_site()),
                };
                before.push(Stmt::Cell { var: v, init: Some(self.vars.zero(v)) });
                v
            })
            .collect();

        // In the body: the element `i + lo` gets its last share, every carry moves one
        // element down and takes this iteration's share.
        let last = stencil.shares.values().flatten().map(|(pos, ..)| *pos).max().expect("shares");
        let mut update = Vec::new();
        let low_index = stencil.shares[&lo][0].1.clone();
        let own = self.sum_of_shares(&stencil, lo, &acc_name, &mut update).expect("the lowest offset has a share");
        let total = self.add_temp(&format!("{acc_name}_total"), own, Operand::Var(carries[0]), &mut update);
        update.push(Stmt::Accumulate { place: Place::Elem(stencil.acc, low_index), value: total });
        for k in 1..=span {
            let share = self.sum_of_shares(&stencil, lo + k, &acc_name, &mut update);
            let next = carries.get(k as usize).map(|c| Operand::Var(*c));
            let value = match (share, next) {
                (Some(s), Some(n)) => self.add_temp(&name, n, s, &mut update),
                (Some(s), None) => s,
                (None, Some(n)) => n,
                (None, None) => self.vars.zero(carries[k as usize - 1]),
            };
            update.push(Stmt::Assign { var: carries[k as usize - 1], value });
        }
        // After the loop: the carries belong to the elements just past the last
        // iteration's `i + lo`.
        for (k, carry) in (1..=span).zip(&carries) {
            let offset = lo + k;
            let at = if offset == 0 {
                Operand::Var(last_index)
            } else {
                let v = self.vars.add("past", Kind::Int, Role::Temp, Span::call_site());
                let (op, magnitude) = if offset > 0 { (BinOp::Add, offset) } else { (BinOp::Sub, -offset) };
                let magnitude = proc_macro2::Literal::i64_unsuffixed(magnitude);
                flush.push(Stmt::Let {
                    dst: Tree::Leaf(v),
                    rv: Rvalue::Binary(op, Operand::Var(last_index), int(quote!(#magnitude))),
                    span: Span::call_site(),
                });
                Operand::Var(v)
            };
            flush.push(Stmt::Accumulate { place: Place::Elem(stencil.acc, at), value: Operand::Var(*carry) });
        }
        (last, update)
    }

    /// The sum of this iteration's shares at `offset` (`None` when it has none).
    fn sum_of_shares(&mut self, stencil: &Stencil, offset: i64, acc_name: &str, out: &mut Block) -> Option<Operand> {
        let mut shares = stencil.shares.get(&offset)?.iter().map(|(_, _, v)| v.clone());
        let first = shares.next()?;
        let name = format!("{acc_name}_share");
        Some(shares.fold(first, |sum, s| self.add_temp(&name, sum, s, out)))
    }

    fn add_temp(&mut self, name: &str, a: Operand, b: Operand, out: &mut Block) -> Operand {
        let kind = self.kind(&a);
        self.temp(name, kind, Rvalue::Binary(BinOp::Add, a, b), Span::call_site(), out)
    }
}

fn int(tokens: proc_macro2::TokenStream) -> Operand {
    Operand::Const(Const { tokens, kind: Kind::Int, scalar_ty: None })
}

/// The value of an integer literal operand (`1`, `2usize`).
fn int_literal(c: &Const) -> Option<i64> {
    if c.kind != Kind::Int {
        return None;
    }
    syn::parse2::<syn::LitInt>(c.tokens.clone()).ok()?.base10_parse().ok()
}
