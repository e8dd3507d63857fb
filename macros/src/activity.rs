//! Activity analysis.
//!
//! A value is *active* when it depends on an active input (it is *varied*) and the
//! output depends on it (it is *useful*). Only active values get adjoints; everything
//! else keeps its primal code and no derivative code is emitted for it. Both halves are
//! fixpoints over the whole function, so loops and cells are handled without special
//! cases: a cell is varied if any value written to it is, and useful if any read of it is.

use std::collections::HashSet;

use crate::ir::*;
use crate::ops;

pub struct Activity {
    varied: HashSet<Var>,
    useful: HashSet<Var>,
}

impl Activity {
    pub fn is_active(&self, func: &Func, v: Var) -> bool {
        self.varied.contains(&v) && self.useful.contains(&v) && func.vars.kind(v).differentiable()
    }

    pub fn operand_active(&self, func: &Func, o: &Operand) -> bool {
        o.var().is_some_and(|v| self.is_active(func, v))
    }
}

/// Compute activity from the active inputs and the outputs whose derivative is wanted.
pub fn analyze(func: &Func, inputs: &[Var], outputs: &[Var]) -> Activity {
    let mut varied: HashSet<Var> = inputs.iter().copied().filter(|v| func.vars.kind(*v).differentiable()).collect();
    loop {
        let before = varied.len();
        walk_stmts(&func.body, &mut |s| forward(func, s, &mut varied));
        if varied.len() == before {
            break;
        }
    }
    let mut useful: HashSet<Var> = outputs.iter().copied().collect();
    loop {
        let before = useful.len();
        walk_stmts(&func.body, &mut |s| backward(func, s, &mut useful));
        if useful.len() == before {
            break;
        }
    }
    Activity { varied, useful }
}

/// The operands through which a derivative flows into the result of `rv`.
pub fn differentiable_operands(rv: &Rvalue) -> Vec<Operand> {
    match rv {
        Rvalue::Use(o) | Rvalue::Field(o, _) => vec![o.clone()],
        Rvalue::Insert { base, value, .. } => vec![base.clone(), value.clone()],
        Rvalue::Tuple(items) => items.clone(),
        Rvalue::Struct { fields, rest, .. } => fields.iter().map(|(_, o)| o.clone()).chain(rest.clone()).collect(),
        Rvalue::Unary(UnOp::Neg, o) => vec![o.clone()],
        Rvalue::Unary(UnOp::Not, _) => Vec::new(),
        Rvalue::Binary(op, a, b) => match ops::binary(*op) {
            Some(_) => vec![a.clone(), b.clone()],
            None => Vec::new(),
        },
        Rvalue::Method { recv, method, args, .. } => match ops::method(&method.to_string(), 1 + args.len()) {
            Some(prim) if prim.output.differentiable() => {
                let mut all = vec![recv.clone()];
                all.extend(args.iter().cloned());
                all.into_iter()
                    .zip(prim.inputs())
                    .filter(|(_, r)| r.scalar != ops::Contribution::None || r.general != ops::Contribution::None)
                    .map(|(o, _)| o)
                    .collect()
            }
            Some(_) => Vec::new(),
            // An unknown method: conservatively flows (the check stage rejects it if active).
            None => {
                let mut all = vec![recv.clone()];
                all.extend(args.iter().cloned());
                all
            }
        },
        Rvalue::Call { callee: Callee::Detach, .. } => Vec::new(),
        Rvalue::Call { args, .. } => {
            let mut out = Vec::new();
            args.iter().for_each(|a| a.operands(&mut out));
            out
        }
        Rvalue::Index { buf, .. } | Rvalue::Slice { buf, .. } => vec![Operand::Var(*buf)],
        Rvalue::Cast(o, ty) => {
            if crate::lower::kind_of_type(ty, &[]) == Kind::Int {
                Vec::new()
            } else {
                vec![o.clone()]
            }
        }
        Rvalue::Pop(t) | Rvalue::Load(t) => vec![Operand::Var(*t)],
        Rvalue::Len(_)
        | Rvalue::PatternTest { .. }
        | Rvalue::PatternBind { .. }
        | Rvalue::SortOrder { .. }
        | Rvalue::RangeLen(_)
        | Rvalue::RangeNth(..)
        | Rvalue::Zero(_)
        | Rvalue::One(_) => Vec::new(),
    }
}

fn any_in(ops: &[Operand], set: &HashSet<Var>) -> bool {
    ops.iter().any(|o| o.var().is_some_and(|v| set.contains(&v)))
}

fn forward(func: &Func, s: &Stmt, varied: &mut HashSet<Var>) {
    let mark = |v: Var, varied: &mut HashSet<Var>| {
        if func.vars.kind(v).differentiable() {
            varied.insert(v);
        }
    };
    match s {
        Stmt::Let { dst, rv, .. } if any_in(&differentiable_operands(rv), varied) => {
            for v in dst.leaves() {
                mark(*v, varied);
            }
        }
        Stmt::Cell { var, init: Some(o) } | Stmt::Assign { var, value: o } | Stmt::Save { slot: var, value: o }
            if any_in(std::slice::from_ref(o), varied) =>
        {
            mark(*var, varied);
        }
        Stmt::Accumulate { place, value } if any_in(std::slice::from_ref(value), varied) => {
            mark(place.target(), varied);
        }
        Stmt::Buffer { var, init } => {
            let flows = match init {
                BufferInit::Repeat { value, .. } | BufferInit::Array { value, .. } => {
                    vec![value.clone()]
                }
                BufferInit::List { items, .. } => items.clone(),
                BufferInit::Empty { .. } | BufferInit::ZerosLike(_) => Vec::new(),
            };
            if any_in(&flows, varied) {
                mark(*var, varied);
            }
        }
        Stmt::Store { buf, value, .. } | Stmt::Push { buf, value } if any_in(std::slice::from_ref(value), varied) => {
            mark(*buf, varied);
        }
        Stmt::Swap { a, b } if varied.contains(a) || varied.contains(b) => {
            mark(*a, varied);
            mark(*b, varied);
        }
        _ => {}
    }
}

fn backward(func: &Func, s: &Stmt, useful: &mut HashSet<Var>) {
    let _ = func;
    let add = |ops: Vec<Operand>, useful: &mut HashSet<Var>| {
        for o in ops {
            if let Some(v) = o.var() {
                useful.insert(v);
            }
        }
    };
    match s {
        Stmt::Let { dst, rv, .. } if dst.leaves().iter().any(|v| useful.contains(v)) => {
            add(differentiable_operands(rv), useful);
        }
        Stmt::Cell { var, init: Some(o) } | Stmt::Assign { var, value: o } | Stmt::Save { slot: var, value: o }
            if useful.contains(var) =>
        {
            add(vec![o.clone()], useful);
        }
        Stmt::Accumulate { place, value } if useful.contains(&place.target()) => {
            add(vec![value.clone()], useful);
        }
        Stmt::Buffer { var, init } if useful.contains(var) => {
            let flows = match init {
                BufferInit::Repeat { value, .. } | BufferInit::Array { value, .. } => {
                    vec![value.clone()]
                }
                BufferInit::List { items, .. } => items.clone(),
                BufferInit::Empty { .. } | BufferInit::ZerosLike(_) => Vec::new(),
            };
            add(flows, useful);
        }
        Stmt::Store { buf, value, .. } | Stmt::Push { buf, value } if useful.contains(buf) => {
            add(vec![value.clone()], useful);
        }
        Stmt::Swap { a, b } if useful.contains(a) || useful.contains(b) => {
            add(vec![Operand::Var(*a), Operand::Var(*b)], useful);
        }
        _ => {}
    }
}
