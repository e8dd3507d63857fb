//! Shrinking a failing program to a minimal one that fails the same way.
//!
//! Greedy and batched: every one-step reduction of the program (remove a statement,
//! replace a compound statement by its body, replace an expression by one of its
//! operands or by a literal, drop a helper, a parameter, an `else`, a loop adapter, the
//! second-order check) that still passes the scope checker is a candidate; a batch of
//! the smallest candidates is compiled and run together (one build for all), and the
//! smallest that fails the same way becomes the new program. It stops when no
//! candidate does.

use std::time::{Duration, Instant};

use crate::ast::*;
use crate::batch::{Class, Job, Timing, Workspace};
use crate::scope;

/// How many candidates one round compiles.
const ROUND: usize = 48;

/// Shrink `p` (which fails as `class` at input `case`); returns the smallest program
/// found and its class.
pub fn shrink(
    ws: &Workspace,
    p: &Program,
    class: &Class,
    case: u64,
    budget: Duration,
    timing: &mut Timing,
) -> (Program, Class) {
    let started = Instant::now();
    let mut best = p.clone();
    let mut best_class = class.clone();
    while started.elapsed() < budget {
        let mut cands = candidates(&best);
        cands.truncate(ROUND);
        if cands.is_empty() {
            break;
        }
        let jobs: Vec<Job> = cands.iter().map(|c| Job { program: c, case }).collect();
        let classes = ws.evaluate(&jobs, timing);
        let found = cands.iter().zip(classes).find(|(_, c)| c.same_failure(class));
        match found {
            Some((c, cl)) => {
                best = c.clone();
                best_class = cl;
            }
            None => break,
        }
    }
    (best, best_class)
}

/// The valid one-step reductions of `p`, smallest first.
pub fn candidates(p: &Program) -> Vec<Program> {
    let mut out: Vec<Program> = Vec::new();
    if p.second_order {
        out.push(Program { second_order: false, ..p.clone() });
    }
    for i in 0..p.helpers.len() {
        let mut q = p.clone();
        q.helpers.remove(i);
        out.push(q);
    }
    for (fi, f) in p.funcs().enumerate() {
        for g in func_variants(f) {
            let mut q = p.clone();
            if fi < p.helpers.len() {
                q.helpers[fi] = g;
            } else {
                q.entry = g;
            }
            out.push(q);
        }
    }
    let size = p.size();
    let mut valid: Vec<Program> = out.into_iter().filter(|q| q.size() < size && scope::check(q).is_ok()).collect();
    valid.sort_by_key(Program::size);
    valid.dedup();
    valid
}

fn func_variants(f: &Func) -> Vec<Func> {
    let mut out = Vec::new();
    for b in block_variants(&f.body) {
        out.push(Func { body: b, ..f.clone() });
    }
    for e in expr_variants(&f.ret) {
        out.push(Func { ret: e, ..f.clone() });
    }
    // An unused parameter (the checker rejects the candidate if it is used).
    if f.params.len() > 1 {
        for i in 0..f.params.len() {
            let mut g = f.clone();
            g.params.remove(i);
            out.push(g);
        }
    }
    out
}

fn block_variants(b: &Block) -> Vec<Block> {
    let mut out = Vec::new();
    for i in 0..b.len() {
        let mut c = b.clone();
        c.remove(i);
        out.push(c);
        for inner in inline_options(&b[i]) {
            let mut c = b.clone();
            c.splice(i..=i, inner);
            out.push(c);
        }
        for s in stmt_variants(&b[i]) {
            let mut c = b.clone();
            c[i] = s;
            out.push(c);
        }
    }
    out
}

/// Statements that can replace a compound statement: its bodies.
fn inline_options(s: &Stmt) -> Vec<Block> {
    match s {
        Stmt::If { then, els, .. } => {
            let mut v = vec![then.clone()];
            v.extend(els.iter().cloned());
            v
        }
        Stmt::For { body, .. } | Stmt::While { body, .. } | Stmt::PlainLoop { body, .. } | Stmt::Drain { body, .. } => {
            vec![body.clone()]
        }
        Stmt::Match { arms, default, .. } => {
            let mut v: Vec<Block> = arms.iter().map(|(_, b)| b.clone()).collect();
            v.push(default.clone());
            v
        }
        _ => Vec::new(),
    }
}

fn stmt_variants(s: &Stmt) -> Vec<Stmt> {
    let mut out = Vec::new();
    match s {
        Stmt::Let { name, mutable, value } => {
            for e in expr_variants(value) {
                out.push(Stmt::Let { name: name.clone(), mutable: *mutable, value: e });
            }
        }
        Stmt::Assign { name, op, value } => {
            for e in expr_variants(value) {
                out.push(Stmt::Assign { name: name.clone(), op: *op, value: e });
            }
            if *op != AOp::Set {
                out.push(Stmt::Assign { name: name.clone(), op: AOp::Set, value: value.clone() });
            }
        }
        Stmt::Store { buf, index, op, value } => {
            for e in expr_variants(value) {
                out.push(Stmt::Store { buf: buf.clone(), index: index.clone(), op: *op, value: e });
            }
            if !matches!(index, Idx::Const(0)) {
                out.push(Stmt::Store { buf: buf.clone(), index: Idx::Const(0), op: *op, value: value.clone() });
            }
        }
        Stmt::Buffer { name, mutable, init } => {
            let items = match init {
                BufInit::Array(v) | BufInit::VecList(v) | BufInit::Pushed(v) => Some(v),
                _ => None,
            };
            if let Some(items) = items {
                for (k, it) in items.iter().enumerate() {
                    for e in expr_variants(it) {
                        let mut v = items.clone();
                        v[k] = e;
                        let init = match init {
                            BufInit::Array(_) => BufInit::Array(v),
                            BufInit::VecList(_) => BufInit::VecList(v),
                            _ => BufInit::Pushed(v),
                        };
                        out.push(Stmt::Buffer { name: name.clone(), mutable: *mutable, init });
                    }
                }
            }
        }
        Stmt::If { cond, then, els } => {
            for b in block_variants(then) {
                out.push(Stmt::If { cond: cond.clone(), then: b, els: els.clone() });
            }
            if let Some(e) = els {
                out.push(Stmt::If { cond: cond.clone(), then: then.clone(), els: None });
                for b in block_variants(e) {
                    out.push(Stmt::If { cond: cond.clone(), then: then.clone(), els: Some(b) });
                }
            }
            for c in cond_variants(cond) {
                out.push(Stmt::If { cond: c, then: then.clone(), els: els.clone() });
            }
        }
        Stmt::For { head, body, label } => {
            for b in block_variants(body) {
                out.push(Stmt::For { head: head.clone(), body: b, label: label.clone() });
            }
            for h in head_variants(head) {
                out.push(Stmt::For { head: h, body: body.clone(), label: label.clone() });
            }
        }
        Stmt::While { counter, limit, extra, body, label } => {
            let mk = |limit: usize, extra: Option<Cond>, body: Block| Stmt::While {
                counter: counter.clone(),
                limit,
                extra,
                body,
                label: label.clone(),
            };
            for b in block_variants(body) {
                out.push(mk(*limit, extra.clone(), b));
            }
            if extra.is_some() {
                out.push(mk(*limit, None, body.clone()));
            }
            if *limit > 1 {
                out.push(mk(1, extra.clone(), body.clone()));
            }
        }
        Stmt::PlainLoop { counter, limit, body, label } => {
            let mk = |limit: usize, body: Block| Stmt::PlainLoop {
                counter: counter.clone(),
                limit,
                body,
                label: label.clone(),
            };
            for b in block_variants(body) {
                out.push(mk(*limit, b));
            }
            if *limit > 1 {
                out.push(mk(1, body.clone()));
            }
        }
        Stmt::Drain { buf, var, counter, body, push, label } => {
            let mk = |body: Block, push: Option<Push>| Stmt::Drain {
                buf: buf.clone(),
                var: var.clone(),
                counter: counter.clone(),
                body,
                push,
                label: label.clone(),
            };
            for b in block_variants(body) {
                out.push(mk(b, push.clone()));
            }
            if let Some(p) = push {
                out.push(mk(body.clone(), None));
                if p.cond.is_some() {
                    out.push(mk(body.clone(), Some(Push { cond: None, ..p.clone() })));
                }
                if p.limit > 2 {
                    out.push(mk(body.clone(), Some(Push { limit: 2, ..p.clone() })));
                }
                for v in expr_variants(&p.value) {
                    out.push(mk(body.clone(), Some(Push { value: v, ..p.clone() })));
                }
                if let Some(c) = &p.cond {
                    for v in cond_variants(c) {
                        out.push(mk(body.clone(), Some(Push { cond: Some(v), ..p.clone() })));
                    }
                }
            }
        }
        Stmt::StoreRow { buf, row, col, op, value } => {
            let mk = |row: &Idx, col: &Idx, op: AOp, value: Expr| Stmt::StoreRow {
                buf: buf.clone(),
                row: row.clone(),
                col: col.clone(),
                op,
                value,
            };
            for e in expr_variants(value) {
                out.push(mk(row, col, *op, e));
            }
            if *op != AOp::Set {
                out.push(mk(row, col, AOp::Set, value.clone()));
            }
            if !matches!(row, Idx::Const(0)) {
                out.push(mk(&Idx::Const(0), col, *op, value.clone()));
            }
            if !matches!(col, Idx::Const(0)) {
                out.push(mk(row, &Idx::Const(0), *op, value.clone()));
            }
        }
        Stmt::Swap { buf, i, j } => {
            for (a, b) in [(Idx::Const(0), j.clone()), (i.clone(), Idx::Const(0))] {
                if (&a, &b) != (i, j) {
                    out.push(Stmt::Swap { buf: buf.clone(), i: a, j: b });
                }
            }
        }
        Stmt::Sort { buf, how } if *how != SortHow::Ascending => {
            out.push(Stmt::Sort { buf: buf.clone(), how: SortHow::Ascending });
        }
        Stmt::SubSlice { name, of, lo, hi } => {
            for (l, h) in [(SubLo::Const(0), *hi), (*lo, SubHi::End)] {
                if (l, h) != (*lo, *hi) {
                    out.push(Stmt::SubSlice { name: name.clone(), of: of.clone(), lo: l, hi: h });
                }
            }
        }
        Stmt::Rows { name, rows, cols, fill: Some(f) } => {
            let mk =
                |fill: Option<Fill>| Stmt::Rows { name: name.clone(), rows: rows.clone(), cols: cols.clone(), fill };
            out.push(mk(None));
            for v in expr_variants(&f.value) {
                out.push(mk(Some(Fill { value: v, ..f.clone() })));
            }
        }
        Stmt::RowRef { name, of, index } if !matches!(index, Idx::Const(0)) => {
            out.push(Stmt::RowRef { name: name.clone(), of: of.clone(), index: Idx::Const(0) });
        }
        Stmt::Loop { name, counter, limit, body, until, value } => {
            let mk = |limit: usize, body: Block, until: Option<Cond>, value: Expr| Stmt::Loop {
                name: name.clone(),
                counter: counter.clone(),
                limit,
                body,
                until,
                value,
            };
            for b in block_variants(body) {
                out.push(mk(*limit, b, until.clone(), value.clone()));
            }
            if until.is_some() {
                out.push(mk(*limit, body.clone(), None, value.clone()));
            }
            if *limit > 1 {
                out.push(mk(1, body.clone(), until.clone(), value.clone()));
            }
            for e in expr_variants(value) {
                out.push(mk(*limit, body.clone(), until.clone(), e));
            }
        }
        Stmt::Return(c, e) => {
            for v in expr_variants(e) {
                out.push(Stmt::Return(c.clone(), v));
            }
            for v in cond_variants(c) {
                out.push(Stmt::Return(v, e.clone()));
            }
        }
        Stmt::Break(c, label) => {
            if label.is_some() {
                out.push(Stmt::Break(c.clone(), None));
            }
            out.extend(cond_variants(c).into_iter().map(|v| Stmt::Break(v, label.clone())));
        }
        Stmt::Continue(c, label) => {
            if label.is_some() {
                out.push(Stmt::Continue(c.clone(), None));
            }
            out.extend(cond_variants(c).into_iter().map(|v| Stmt::Continue(v, label.clone())));
        }
        Stmt::Nested { pat, value, callee, args } => {
            for (k, a) in args.iter().enumerate() {
                if let Arg::Scalar(e) = a {
                    for v in expr_variants(e) {
                        let mut args = args.clone();
                        args[k] = Arg::Scalar(v);
                        out.push(Stmt::Nested { pat: pat.clone(), value: *value, callee: callee.clone(), args });
                    }
                }
            }
        }
        Stmt::Match { on, arms, default } => {
            for k in 0..arms.len() {
                let mut a = arms.clone();
                a.remove(k);
                out.push(Stmt::Match { on: on.clone(), arms: a, default: default.clone() });
                for b in block_variants(&arms[k].1) {
                    let mut a = arms.clone();
                    a[k].1 = b;
                    out.push(Stmt::Match { on: on.clone(), arms: a, default: default.clone() });
                }
            }
            for b in block_variants(default) {
                out.push(Stmt::Match { on: on.clone(), arms: arms.clone(), default: b });
            }
        }
        Stmt::Closure { name, param, body } => {
            for v in expr_variants(body) {
                out.push(Stmt::Closure { name: name.clone(), param: param.clone(), body: v });
            }
        }
        Stmt::LetFold { .. }
        | Stmt::Unpack { .. }
        | Stmt::Pop { .. }
        | Stmt::Sort { .. }
        | Stmt::Rows { .. }
        | Stmt::RowRef { .. } => {}
    }
    // A loop's label, once no exit names it.
    let mut unlabelled = s.clone();
    crate::gen::set_label(&mut unlabelled, None);
    if unlabelled != *s {
        out.push(unlabelled);
    }
    out
}

fn head_variants(h: &ForHead) -> Vec<ForHead> {
    let mut out = Vec::new();
    match h {
        ForHead::Range { var, lo, hi, inclusive, adapters } => {
            for k in 0..adapters.len() {
                let mut a = adapters.clone();
                a.remove(k);
                out.push(ForHead::Range {
                    var: var.clone(),
                    lo: *lo,
                    hi: hi.clone(),
                    inclusive: *inclusive,
                    adapters: a,
                });
            }
            if *inclusive {
                out.push(ForHead::Range {
                    var: var.clone(),
                    lo: *lo,
                    hi: hi.clone(),
                    inclusive: false,
                    adapters: adapters.clone(),
                });
            }
        }
        ForHead::Rows { row, over, index, iter } => {
            if index.is_some() || *iter {
                out.push(ForHead::Rows { row: row.clone(), over: over.clone(), index: None, iter: false });
            }
        }
        ForHead::Iter { elem, over, style, index, zip, rev } => {
            let base = ForHead::Iter {
                elem: elem.clone(),
                over: over.clone(),
                style: *style,
                index: index.clone(),
                zip: zip.clone(),
                rev: *rev,
            };
            if *rev {
                if let ForHead::Iter { rev, .. } = &mut out.pushed(base.clone()) {
                    *rev = false;
                }
            }
            if index.is_some() {
                if let ForHead::Iter { index, .. } = &mut out.pushed(base.clone()) {
                    *index = None;
                }
            }
            if zip.is_some() {
                if let ForHead::Iter { zip, .. } = &mut out.pushed(base.clone()) {
                    *zip = None;
                }
            }
            if *style != IterStyle::Iter {
                if let ForHead::Iter { style, .. } = &mut out.pushed(base) {
                    *style = IterStyle::Iter;
                }
            }
        }
    }
    out
}

trait PushedExt<T> {
    /// Push and return the pushed item, to edit it in place.
    fn pushed(&mut self, t: T) -> &mut T;
}

impl<T> PushedExt<T> for Vec<T> {
    fn pushed(&mut self, t: T) -> &mut T {
        self.push(t);
        self.last_mut().expect("pushed")
    }
}

fn cond_variants(c: &Cond) -> Vec<Cond> {
    let mut out = Vec::new();
    for e in expr_variants(&c.lhs) {
        out.push(Cond { lhs: e, ..c.clone() });
    }
    for e in expr_variants(&c.rhs) {
        out.push(Cond { rhs: e, ..c.clone() });
    }
    out
}

/// Smaller expressions: a literal, each operand, and each operand shrunk in place.
fn expr_variants(e: &Expr) -> Vec<Expr> {
    let mut out = Vec::new();
    if !matches!(e, Expr::Lit(_)) {
        out.push(Expr::Lit(1.0));
    }
    let b = |x: &Expr| Box::new(x.clone());
    match e {
        Expr::Lit(v) if *v != 1.0 => out.push(Expr::Lit(1.0)),
        Expr::Lit(_) | Expr::Var(_) | Expr::Sum(_) | Expr::LenF(_) | Expr::IntF(_) | Expr::Field(..) => {}
        Expr::Elem(n, i) => {
            if !matches!(i, Idx::Const(0)) {
                out.push(Expr::Elem(n.clone(), Idx::Const(0)));
            }
        }
        Expr::Elem2(n, i, j) => {
            if !matches!(i, Idx::Const(0)) {
                out.push(Expr::Elem2(n.clone(), Idx::Const(0), j.clone()));
            }
            if !matches!(j, Idx::Const(0)) {
                out.push(Expr::Elem2(n.clone(), i.clone(), Idx::Const(0)));
            }
        }
        Expr::Bin(op, x, y) => {
            out.push((**x).clone());
            out.push((**y).clone());
            for v in expr_variants(x) {
                out.push(Expr::Bin(*op, Box::new(v), b(y)));
            }
            for v in expr_variants(y) {
                out.push(Expr::Bin(*op, b(x), Box::new(v)));
            }
        }
        Expr::Binary(m, x, y) => {
            out.push((**x).clone());
            out.push((**y).clone());
            for v in expr_variants(x) {
                out.push(Expr::Binary(*m, Box::new(v), b(y)));
            }
            for v in expr_variants(y) {
                out.push(Expr::Binary(*m, b(x), Box::new(v)));
            }
        }
        Expr::MapSum { over, elem, zip, body } => {
            out.push(Expr::Sum(over.clone()));
            if zip.is_some() {
                out.push(Expr::MapSum {
                    over: over.clone(),
                    elem: elem.clone(),
                    zip: None,
                    body: Expr::Lit(1.0).into(),
                });
            }
            for v in expr_variants(body) {
                out.push(Expr::MapSum { over: over.clone(), elem: elem.clone(), zip: zip.clone(), body: Box::new(v) });
            }
        }
        Expr::Fold { over, init, acc, elem, body } => {
            out.push((**init).clone());
            out.push(Expr::Sum(over.clone()));
            for v in expr_variants(body) {
                out.push(Expr::Fold {
                    over: over.clone(),
                    init: init.clone(),
                    acc: acc.clone(),
                    elem: elem.clone(),
                    body: Box::new(v),
                });
            }
        }
        Expr::Apply(f, x) => {
            out.push((**x).clone());
            out.extend(expr_variants(x).into_iter().map(|v| Expr::Apply(f.clone(), Box::new(v))));
        }
        Expr::Detach(x) => {
            out.push((**x).clone());
            out.extend(expr_variants(x).into_iter().map(|v| Expr::Detach(Box::new(v))));
        }
        Expr::Neg(x) => {
            out.push((**x).clone());
            out.extend(expr_variants(x).into_iter().map(|v| Expr::Neg(Box::new(v))));
        }
        Expr::Unary(u, x) => {
            out.push((**x).clone());
            out.extend(expr_variants(x).into_iter().map(|v| Expr::Unary(*u, Box::new(v))));
        }
        Expr::Powi(x, k) => {
            out.push((**x).clone());
            out.extend(expr_variants(x).into_iter().map(|v| Expr::Powi(Box::new(v), *k)));
        }
        Expr::Clamp(x, lo, hi) => {
            out.push((**x).clone());
            out.extend(expr_variants(x).into_iter().map(|v| Expr::Clamp(Box::new(v), *lo, *hi)));
        }
        Expr::MulAdd(x, y, z) => {
            out.push((**x).clone());
            out.push((**y).clone());
            out.push((**z).clone());
            for v in expr_variants(x) {
                out.push(Expr::MulAdd(Box::new(v), b(y), b(z)));
            }
            for v in expr_variants(y) {
                out.push(Expr::MulAdd(b(x), Box::new(v), b(z)));
            }
            for v in expr_variants(z) {
                out.push(Expr::MulAdd(b(x), b(y), Box::new(v)));
            }
        }
        Expr::Call(f, args) => {
            for (k, a) in args.iter().enumerate() {
                if let Arg::Scalar(x) = a {
                    out.push(x.clone());
                    for v in expr_variants(x) {
                        let mut args = args.clone();
                        args[k] = Arg::Scalar(v);
                        out.push(Expr::Call(f.clone(), args));
                    }
                }
            }
        }
        Expr::IfExpr(c, x, y) => {
            out.push((**x).clone());
            out.push((**y).clone());
            for v in expr_variants(x) {
                out.push(Expr::IfExpr(c.clone(), Box::new(v), b(y)));
            }
            for v in expr_variants(y) {
                out.push(Expr::IfExpr(c.clone(), b(x), Box::new(v)));
            }
            for v in cond_variants(c) {
                out.push(Expr::IfExpr(Box::new(v), b(x), b(y)));
            }
        }
    }
    out
}
