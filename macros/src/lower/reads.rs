//! One value per read of a cell between two writes: `x * x * x + a * x` reads the cell
//! `x` four times, and lowering gives each read its own temporary. Left so, each is a
//! value of its own to the transform, and a loop that overwrites `x` saves all four on
//! four tapes. Reads of a cell in one block with no write in between are one value.

use std::collections::{HashMap, HashSet};

use crate::ir::*;

/// Share the reads of each cell between writes, in every block of `func`.
pub fn share_cell_reads(func: &mut Func) {
    let mut renames = HashMap::new();
    share_in_block(&mut func.body, &func.vars, &mut renames);
    if renames.is_empty() {
        return;
    }
    rename_uses(&mut func.body, &renames);
    rename_tree(&mut func.ret, &renames);
}

fn share_in_block(block: &mut Block, vars: &Vars, renames: &mut HashMap<Var, Var>) {
    // The temporary holding each cell's value since its last write.
    let mut current: HashMap<Var, Var> = HashMap::new();
    let stmts = std::mem::take(block);
    for mut s in stmts {
        match &mut s {
            Stmt::Let { dst: Tree::Leaf(t), rv: Rvalue::Use(Operand::Var(c)), .. }
                if vars.role(*c) == Role::Cell && vars.role(*t) == Role::Temp =>
            {
                if let Some(first) = current.get(c) {
                    renames.insert(*t, *first);
                    continue;
                }
                current.insert(*c, *t);
            }
            Stmt::Assign { var, .. } => {
                current.remove(var);
            }
            Stmt::Accumulate { place, .. } => {
                current.remove(&place.target());
            }
            Stmt::If { .. } | Stmt::For { .. } | Stmt::While { .. } => {
                let mut written = HashSet::new();
                for b in s.blocks() {
                    assigned_cells(b, &mut written);
                }
                current.retain(|c, _| !written.contains(c));
                match &mut s {
                    Stmt::If { then_, else_, .. } => {
                        share_in_block(then_, vars, renames);
                        share_in_block(else_, vars, renames);
                    }
                    Stmt::For { body, .. } => share_in_block(body, vars, renames),
                    Stmt::While { header, body, .. } => {
                        share_in_block(header, vars, renames);
                        share_in_block(body, vars, renames);
                    }
                    _ => unreachable!("a compound statement"),
                }
            }
            _ => {}
        }
        block.push(s);
    }
}

/// The cells a block assigns anywhere inside it.
fn assigned_cells(block: &Block, out: &mut HashSet<Var>) {
    walk_stmts(block, &mut |s| match s {
        Stmt::Assign { var, .. } => {
            out.insert(*var);
        }
        Stmt::Accumulate { place, .. } => {
            out.insert(place.target());
        }
        _ => {}
    });
}

fn rename_tree(t: &mut Tree<Operand>, renames: &HashMap<Var, Var>) {
    match t {
        Tree::Leaf(Operand::Var(v)) => {
            if let Some(n) = renames.get(v) {
                *v = *n;
            }
        }
        Tree::Leaf(_) => {}
        Tree::Tuple(items) => items.iter_mut().for_each(|i| rename_tree(i, renames)),
    }
}
