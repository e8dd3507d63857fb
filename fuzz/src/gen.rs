//! The generator: a seeded random program over the supported subset.
//!
//! Programs are built statement by statement against an [`Env`] of what is in scope,
//! so names exist, mutability and types agree, `break`/`continue` sit in loops and
//! every index is in bounds. Functions with a partial domain get arguments that keep
//! them defined (`(e·e + c).ln()`, `(0.9·e.tanh()).asin()`), so almost every program
//! is smooth at almost every input; where it is not (a kink of `abs`, a branch), the
//! harness's two step sizes disagree and the point is not judged.
//!
//! The generator grows with the language: each construct the transform accepts is one
//! arm of [`Gen::stmt`] or [`Gen::expr`] with a weight, so a new construct is fuzzed
//! together with every older one.

use crate::ast::*;
use crate::rng::Rng;
use crate::scope::{self, Env, Kind, Len, LoopKind, Sig};

/// Size knobs.
#[derive(Clone, Debug)]
pub struct Config {
    /// Statements in the entry function's top-level block.
    pub entry_stmts: (usize, usize),
    /// Statements in a nested block.
    pub inner_stmts: (usize, usize),
    /// How deeply blocks nest.
    pub max_depth: usize,
    /// How deeply expressions nest.
    pub expr_depth: usize,
    /// Helper functions (callees of the entry function).
    pub helpers: (usize, usize),
    /// Probability that the harness also checks second derivatives.
    pub second_order: f64,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            entry_stmts: (3, 8),
            inner_stmts: (1, 3),
            max_depth: 2,
            expr_depth: 3,
            helpers: (0, 2),
            second_order: 0.5,
        }
    }
}

/// The program of a seed.
pub fn program(seed: u64, cfg: &Config) -> Program {
    // A handful of attempts: a program the checker rejects is a bug of the generator,
    // which the tests catch; here the next attempt is taken.
    let mut rng = Rng::new(seed);
    loop {
        let mut g = Gen { rng: rng.fork(), cfg: cfg.clone(), fresh: 0, entry: false, in_cond: false };
        let p = g.program();
        match scope::check(&p) {
            Ok(()) => return p,
            Err(e) => {
                if cfg!(debug_assertions) {
                    panic!("the generator wrote an invalid program (seed {seed}): {e}\n{p:#?}");
                }
            }
        }
    }
}

struct Gen {
    rng: Rng,
    cfg: Config,
    fresh: usize,
    /// Generating the entry function (which may nest `grad!`).
    entry: bool,
    /// Generating a branch condition: the only place `detach(…)` is written, because
    /// finite differences of the plain function cannot see a detached value (they
    /// perturb it with everything else), while a decision has no gradient either way.
    in_cond: bool,
}

const LITERALS: &[f64] = &[0.5, 1.0, 2.0, -0.75, 1.5, 0.25, 3.0, -1.25, 0.1];

impl Gen {
    fn name(&mut self, prefix: &str) -> String {
        self.fresh += 1;
        format!("{prefix}{}", self.fresh)
    }

    fn program(&mut self) -> Program {
        let n_helpers = self.rng.range(self.cfg.helpers.0, self.cfg.helpers.1);
        let mut helpers: Vec<Func> = Vec::new();
        for i in 0..n_helpers {
            let callable = sigs(&helpers);
            let h = self.helper(&format!("h{i}"), callable);
            helpers.push(h);
        }
        self.entry = true;
        let entry = self.entry_func(sigs(&helpers));
        let second_order = self.rng.chance(self.cfg.second_order);
        Program { helpers, entry, second_order }
    }

    fn helper(&mut self, name: &str, callable: Vec<Sig>) -> Func {
        let n = self.rng.range(1, 2);
        let names = ["u", "v"];
        let params: Vec<Param> = (0..n)
            .map(|i| Param {
                name: names[i].to_string(),
                ty: if self.rng.chance(0.4) { PTy::Slice } else { PTy::Scalar },
            })
            .collect();
        let mut f = Func { name: name.to_string(), params, body: Vec::new(), ret: Expr::Lit(0.0) };
        let mut env = Env::for_func(&f, callable, true);
        let count = self.rng.range(0, 3);
        f.body = self.block(&mut env, count, 1);
        f.ret = self.expr(&env, self.cfg.expr_depth);
        f
    }

    fn entry_func(&mut self, callable: Vec<Sig>) -> Func {
        let scalars = self.rng.range(1, 3);
        let slices = self.rng.range(0, 2);
        let rows = usize::from(self.rng.chance(0.15));
        let mut params: Vec<Param> = ["a", "b", "c"]
            .iter()
            .take(scalars)
            .map(|n| Param { name: n.to_string(), ty: PTy::Scalar })
            .chain(["x", "y"].iter().take(slices).map(|n| Param { name: n.to_string(), ty: PTy::Slice }))
            .chain(["m"].iter().take(rows).map(|n| Param { name: n.to_string(), ty: PTy::Rows }))
            .collect();
        // A random order of the parameters.
        for i in (1..params.len()).rev() {
            let j = self.rng.below(i + 1);
            params.swap(i, j);
        }
        let mut f = Func { name: "f".into(), params, body: Vec::new(), ret: Expr::Lit(0.0) };
        let mut env = Env::for_func(&f, callable, false);
        let count = self.rng.range(self.cfg.entry_stmts.0, self.cfg.entry_stmts.1);
        f.body = self.block(&mut env, count, 0);
        // The result mixes a few scalars in scope, so most statements matter.
        let mut ret = self.expr(&env, 2);
        for _ in 0..self.rng.range(0, 2) {
            let scalars = env.scalars();
            if scalars.is_empty() {
                break;
            }
            let v = self.rng.pick(&scalars).clone();
            ret = Expr::Bin(BOp::Add, Box::new(ret), Box::new(Expr::Var(v)));
        }
        f.ret = ret;
        f
    }

    /// `count` statements at nesting `depth`, defined in `env` (the caller scopes it).
    fn block(&mut self, env: &mut Env, count: usize, depth: usize) -> Block {
        self.block_with(env, count, depth, &Special::None)
    }

    /// `count` statements, and `special` (if any) at a random place among them.
    fn block_with(&mut self, env: &mut Env, count: usize, depth: usize, special: &Special) -> Block {
        let mut out = Vec::new();
        let at = match special {
            Special::None => None,
            _ => Some(self.rng.range(0, count)),
        };
        for k in 0..=count {
            if at == Some(k) {
                self.add(env, &mut out, |g, env| g.special(env, depth, special));
            }
            if k < count {
                self.add(env, &mut out, |g, env| g.stmt(env, depth));
            }
        }
        out
    }

    /// Generate a statement and bring what it defines into scope.
    fn add(&mut self, env: &mut Env, out: &mut Block, generate: impl FnOnce(&mut Self, &mut Env) -> Option<Stmt>) {
        // Generating a statement may change what is in scope (a tuple whose vector an
        // inner block moved); the checker then replays it from the state before.
        let before = env.clone();
        let generated = generate(self, env);
        *env = before;
        if let Some(s) = generated {
            scope::check_stmt(env, &s).unwrap_or_else(|e| panic!("generated an invalid statement: {e}\n{s:#?}"));
            out.push(s);
        }
    }

    fn special(&mut self, env: &mut Env, depth: usize, special: &Special) -> Option<Stmt> {
        match special {
            Special::None => self.stmt(env, depth),
            Special::Exit(label) => {
                let cond = self.cond(env);
                Some(match self.rng.chance(0.5) {
                    true => Stmt::Continue(cond, Some(label.clone())),
                    false => Stmt::Break(cond, Some(label.clone())),
                })
            }
            Special::InnerLoop(label) => {
                let exit = Special::Exit(label.clone());
                let kind = match self.rng.weighted(&[12, 3, 3, 2]) {
                    2 if !env.drainable().is_empty() => LoopChoice::Drain,
                    1 => LoopChoice::While,
                    3 => LoopChoice::Plain,
                    _ => LoopChoice::For,
                };
                self.a_loop(env, depth, kind, &exit)
            }
        }
    }

    fn inner_block(&mut self, env: &mut Env, depth: usize, lk: Option<LoopKind>, binds: Vec<(String, Kind)>) -> Block {
        self.loop_body(env, depth, lk, None, binds, &Special::None)
    }

    /// A nested block (a loop body when `lk` is given, with the loop's label).
    fn loop_body(
        &mut self,
        env: &mut Env,
        depth: usize,
        lk: Option<LoopKind>,
        label: Option<&String>,
        binds: Vec<(String, Kind)>,
        special: &Special,
    ) -> Block {
        let saved = (env.innermost, env.loop_depth, env.labels.len());
        if let Some(k) = lk {
            env.innermost = k;
            env.loop_depth += 1;
        }
        env.labels.extend(label.cloned());
        env.push();
        for (n, k) in binds {
            env.define(&n, k);
        }
        let count = self.rng.range(self.cfg.inner_stmts.0, self.cfg.inner_stmts.1);
        let b = self.block_with(env, count, depth + 1, special);
        env.pop();
        (env.innermost, env.loop_depth) = (saved.0, saved.1);
        env.labels.truncate(saved.2);
        b
    }

    /// A loop without a value. Given `special`, its body holds it (an exit to an outer
    /// label); otherwise, where an inner loop fits in its body, it is sometimes labelled
    /// and its body given an inner loop that leaves it by `break 'label`/`continue
    /// 'label`.
    fn a_loop(&mut self, env: &mut Env, depth: usize, kind: LoopChoice, special: &Special) -> Option<Stmt> {
        let mut label = None;
        let mut inner = special.clone();
        if matches!(special, Special::None) && depth + 1 < self.cfg.max_depth && self.rng.chance(0.3) {
            let l = self.name("outer");
            inner = Special::InnerLoop(l.clone());
            label = Some(l);
        }
        let plain = Some(LoopKind::Plain);
        let mut s = match kind {
            LoopChoice::For => {
                let head = self.for_head(env)?;
                let binds = scope::head_bindings(env, &head).ok()?;
                let body = self.loop_body(env, depth, plain, label.as_ref(), binds, &inner);
                Stmt::For { head, body, label: label.clone() }
            }
            LoopChoice::While => {
                let counter = self.name("k");
                let limit = self.rng.range(1, 4);
                env.define(&counter, Kind::Counter);
                let extra = self.rng.chance(0.4).then(|| self.cond(env));
                let body = self.loop_body(env, depth, plain, label.as_ref(), Vec::new(), &inner);
                Stmt::While { counter, limit, extra, body, label: label.clone() }
            }
            LoopChoice::Plain => {
                let counter = self.name("k");
                let limit = self.rng.range(1, 4);
                env.define(&counter, Kind::Counter);
                let body = self.loop_body(env, depth, plain, label.as_ref(), Vec::new(), &inner);
                Stmt::PlainLoop { counter, limit, body, label: label.clone() }
            }
            LoopChoice::Drain => {
                let buf = self.rng.pick(&env.drainable()).clone();
                let (var, counter) = (self.name("v"), self.name("k"));
                let pushes = self.rng.chance(0.5);
                let mut binds = vec![(buf.clone(), Kind::Moved), (var.clone(), Kind::Scalar { mutable: false })];
                if pushes {
                    binds.push((counter.clone(), Kind::Counter));
                }
                let body = self.loop_body(env, depth, plain, label.as_ref(), binds.clone(), &inner);
                let push = pushes.then(|| {
                    let mut e = env.clone();
                    e.push();
                    for (n, k) in binds {
                        e.define(&n, k);
                    }
                    let cond = self.rng.chance(0.5).then(|| self.cond(&e));
                    let value = self.expr(&e, 2);
                    Push { limit: self.rng.range(2, 4), cond, value }
                });
                Stmt::Drain { buf, var, counter, body, push, label: label.clone() }
            }
        };
        // A label no exit names is dropped.
        if let Some(l) = &label {
            if !exits_to(&s, l) {
                set_label(&mut s, None);
            }
        }
        Some(s)
    }

    fn stmt(&mut self, env: &mut Env, depth: usize) -> Option<Stmt> {
        let nest = depth < self.cfg.max_depth;
        let muts = env.mutable_scalars();
        let bufs = env.mutable_buffers();
        let slices = env.slices();
        let tuples = env.tuples();
        let nested_ok = self.entry && !env.callable.is_empty();
        let drainable = env.drainable();
        let poppable = env.poppable();
        let rows = env.rows();
        let has_mut_rows = rows.iter().any(|r| r.3);
        let can_exit = env.innermost == LoopKind::Plain || !env.labels.is_empty();
        let weights = [
            20,                                                     // let
            if muts.is_empty() { 0 } else { 16 },                   // assign
            8,                                                      // buffer
            if bufs.is_empty() { 0 } else { 9 },                    // store
            if nest { 9 } else { 0 },                               // if
            if nest { 10 } else { 0 },                              // for
            if nest { 3 } else { 0 },                               // while
            if nest { 3 } else { 0 },                               // loop with a value
            if can_exit { 5 } else { 0 },                           // break / continue
            3,                                                      // return
            if nested_ok { 7 } else { 0 },                          // grad! / value_and_grad!
            if tuples.is_empty() { 0 } else { 5 },                  // unpack
            if slices.is_empty() { 0 } else { 3 },                  // fold
            if nest && !env.integers().is_empty() { 3 } else { 0 }, // match
            3,                                                      // let closure
            if nest && !drainable.is_empty() { 6 } else { 0 },      // while let Some(v) = buf.pop()
            if poppable.is_empty() { 0 } else { 5 },                // let v = buf.pop().unwrap();
            if bufs.is_empty() { 0 } else { 4 },                    // sort
            if bufs.is_empty() { 0 } else { 2 },                    // swap
            if slices.is_empty() { 0 } else { 2 },                  // let part = &x[a..b];
            2,                                                      // vec![vec![0.0; n]; k]
            if has_mut_rows { 7 } else { 0 },                       // m[i][j] = …
            if rows.is_empty() { 0 } else { 2 },                    // let row = &m[i];
            if nest { 2 } else { 0 },                               // loop { … } without a value
        ];
        let d = self.cfg.expr_depth;
        Some(match self.rng.weighted(&weights) {
            0 => {
                let mutable = self.rng.chance(0.5);
                let value = self.expr(env, d);
                // Sometimes shadow an immutable scalar instead of a fresh name.
                let immut: Vec<String> = env
                    .visible()
                    .into_iter()
                    .filter(|(n, k)| matches!(k, Kind::Scalar { mutable: false }) && n.starts_with('s'))
                    .map(|(n, _)| n)
                    .collect();
                let name = if !immut.is_empty() && self.rng.chance(0.15) {
                    self.rng.pick(&immut).clone()
                } else {
                    self.name("s")
                };
                Stmt::Let { name, mutable, value }
            }
            1 => {
                let name = self.rng.pick(&muts).clone();
                let op = *self.rng.pick(&[AOp::Set, AOp::Add, AOp::Add, AOp::Sub, AOp::Mul]);
                let value = self.expr(env, d);
                Stmt::Assign { name, op, value }
            }
            2 => self.buffer(env),
            3 => {
                let (buf, len) = self.rng.pick(&bufs).clone();
                let Some(index) = self.write_index(env, &buf, &len) else {
                    return Some(self.buffer(env));
                };
                let op = *self.rng.pick(&[AOp::Set, AOp::Set, AOp::Add, AOp::Sub, AOp::Mul]);
                let value = self.expr(env, d);
                Stmt::Store { buf, index, op, value }
            }
            4 => {
                let cond = self.cond(env);
                let then = self.inner_block(env, depth, None, Vec::new());
                let els = self.rng.chance(0.5).then(|| self.inner_block(env, depth, None, Vec::new()));
                Stmt::If { cond, then, els }
            }
            5 => self.a_loop(env, depth, LoopChoice::For, &Special::None)?,
            6 => self.a_loop(env, depth, LoopChoice::While, &Special::None)?,
            7 => {
                let counter = self.name("k");
                let name = self.name("r");
                let limit = self.rng.range(1, 4);
                env.define(&counter, Kind::Counter);
                let saved = (env.innermost, env.loop_depth);
                env.innermost = LoopKind::Valued;
                env.loop_depth += 1;
                env.push();
                let count = self.rng.range(self.cfg.inner_stmts.0, self.cfg.inner_stmts.1);
                let body = self.block(env, count, depth + 1);
                let until = self.rng.chance(0.4).then(|| self.cond(env));
                let value = self.expr(env, d);
                env.pop();
                (env.innermost, env.loop_depth) = saved;
                Stmt::Loop { name, counter, limit, body, until, value }
            }
            8 => {
                let cond = self.cond(env);
                let plain = env.innermost == LoopKind::Plain;
                let label = (!env.labels.is_empty() && (!plain || self.rng.chance(0.5)))
                    .then(|| self.rng.pick(&env.labels).clone());
                if self.rng.chance(0.5) {
                    Stmt::Break(cond, label)
                } else {
                    Stmt::Continue(cond, label)
                }
            }
            9 => {
                let cond = self.cond(env);
                let value = self.expr(env, d);
                Stmt::Return(cond, value)
            }
            10 => self.nested(env)?,
            11 => {
                let (from, kinds) = self.rng.pick(&tuples).clone();
                let pat = self.pattern(&Kind::Tuple(kinds), true);
                if !env.unpack_ok(&pat, &from) {
                    return None;
                }
                Stmt::Unpack { pat, from }
            }
            12 => {
                let (of, _) = self.rng.pick(&slices).clone();
                Stmt::LetFold { name: self.name("s"), of, product: self.rng.chance(0.2) }
            }
            14 => {
                let (name, param) = (self.name("cl"), self.name("t"));
                let body = self.expr(&env.closure_body(&param), d);
                Stmt::Closure { name, param, body }
            }
            15 => self.a_loop(env, depth, LoopChoice::Drain, &Special::None)?,
            16 => {
                Stmt::Pop { name: self.name("s"), buf: self.rng.pick(&poppable).clone(), expect: self.rng.chance(0.25) }
            }
            17 => {
                let (buf, _) = self.rng.pick(&bufs).clone();
                let typed = matches!(env.lookup(&buf), Some(Kind::Slice { typed: true, .. }));
                let hows: &[SortHow] = if typed {
                    &[SortHow::Ascending, SortHow::Descending, SortHow::UnstableTotal, SortHow::TotalPath]
                } else {
                    &[SortHow::Ascending, SortHow::Descending, SortHow::TotalPath]
                };
                Stmt::Sort { buf, how: *self.rng.pick(hows) }
            }
            18 => {
                let (buf, len) = self.rng.pick(&bufs).clone();
                let (i, j) = (self.write_index(env, &buf, &len)?, self.write_index(env, &buf, &len)?);
                Stmt::Swap { buf, i, j }
            }
            19 => {
                let (of, len) = self.rng.pick(&slices).clone();
                let options: Vec<(SubLo, SubHi)> = [
                    (SubLo::Const(1), SubHi::End),
                    (SubLo::Const(0), SubHi::Cut(1)),
                    (SubLo::Const(1), SubHi::Cut(1)),
                    (SubLo::Const(0), SubHi::Half),
                    (SubLo::Half, SubHi::End),
                    (SubLo::Const(0), SubHi::Const(2)),
                    (SubLo::Const(1), SubHi::Const(3)),
                ]
                .into_iter()
                .filter(|(lo, hi)| scope::sub_len(&len, *lo, *hi).is_some())
                .collect();
                if options.is_empty() {
                    return None;
                }
                let (lo, hi) = *self.rng.pick(&options);
                Stmt::SubSlice { name: self.name("part"), of, lo, hi }
            }
            20 => {
                let dim = |g: &mut Self| {
                    if !slices.is_empty() && g.rng.chance(0.5) {
                        LenExpr::LenOf(g.rng.pick(&slices).0.clone(), 0)
                    } else {
                        LenExpr::Const(g.rng.range(2, 3))
                    }
                };
                let (rows, cols) = (dim(self), dim(self));
                let name = self.name("mat");
                let fill = self.rng.chance(0.6).then(|| {
                    let (i, j) = (self.name("i"), self.name("j"));
                    let mut inner = env.clone();
                    inner.push();
                    let bound = |l: &LenExpr| scope::len_expr(env, l).expect("a valid length");
                    inner.define(&i, Kind::Index { bound: bound(&rows), lo: 0 });
                    inner.define(&j, Kind::Index { bound: bound(&cols), lo: 0 });
                    Fill { i, j, value: self.expr(&inner, d - 1) }
                });
                Stmt::Rows { name, rows, cols, fill }
            }
            21 => {
                let writable: Vec<_> = rows.iter().filter(|r| r.3).cloned().collect();
                let (buf, nrows, cols, _) = self.rng.pick(&writable).clone();
                let row = self.write_index(env, &buf, &nrows)?;
                let col = self.column(env, &cols);
                let op = *self.rng.pick(&[AOp::Set, AOp::Set, AOp::Add, AOp::Add, AOp::Sub, AOp::Mul]);
                let value = self.expr(env, d);
                Stmt::StoreRow { buf, row, col, op, value }
            }
            22 => {
                let (of, nrows, _, _) = self.rng.pick(&rows).clone();
                let index = self.index(env, &of, &nrows);
                Stmt::RowRef { name: self.name("row"), of, index }
            }
            23 => self.a_loop(env, depth, LoopChoice::Plain, &Special::None)?,
            _ => {
                let ints = env.integers();
                let on = self.rng.pick(&ints).clone();
                let mut arms = Vec::new();
                let pats = [MatchPat::Lit(0), MatchPat::Or(vec![1, 2]), MatchPat::Range(2, 4), MatchPat::Lit(1)];
                for p in pats.iter().take(self.rng.range(1, 3)) {
                    let b = self.inner_block(env, depth, None, Vec::new());
                    arms.push((p.clone(), b));
                }
                let default = self.inner_block(env, depth, None, Vec::new());
                Stmt::Match { on, arms, default }
            }
        })
    }

    fn buffer(&mut self, env: &Env) -> Stmt {
        let name = self.name("buf");
        let slices = env.slices();
        let d = self.cfg.expr_depth - 1;
        let choice = self.rng.weighted(&[4, 2, 3, 2, if slices.is_empty() { 0 } else { 4 }, 2, 2]);
        let init = match choice {
            0 => {
                if !slices.is_empty() && self.rng.chance(0.6) {
                    let (of, _) = self.rng.pick(&slices).clone();
                    BufInit::Zeros(LenExpr::LenOf(of, 0))
                } else {
                    BufInit::Zeros(LenExpr::Const(self.rng.range(2, 4)))
                }
            }
            1 => BufInit::ArrayZeros(self.rng.range(2, 4)),
            2 => BufInit::Array((0..self.rng.range(2, 4)).map(|_| self.expr(env, d)).collect()),
            3 => BufInit::VecList((0..self.rng.range(1, 3)).map(|_| self.expr(env, d)).collect()),
            4 => BufInit::Copy(self.rng.pick(&slices).0.clone()),
            5 => BufInit::Pushed((0..self.rng.range(1, 3)).map(|_| self.expr(env, d)).collect()),
            _ => {
                let var = self.name("i");
                let len = if !slices.is_empty() && self.rng.chance(0.6) {
                    LenExpr::LenOf(self.rng.pick(&slices).0.clone(), 0)
                } else {
                    LenExpr::Const(self.rng.range(1, 4))
                };
                let mut inner = env.clone();
                inner.push();
                let bound = scope::len_expr(env, &len).expect("valid length");
                inner.define(&var, Kind::Index { bound, lo: 0 });
                let value = Box::new(self.expr(&inner, d));
                BufInit::PushLoop { var, len, value }
            }
        };
        let mutable = !matches!(init, BufInit::Array(_)) || self.rng.chance(0.5);
        Stmt::Buffer { name, mutable, init }
    }

    fn for_head(&mut self, env: &Env) -> Option<ForHead> {
        let rows = env.rows();
        if !rows.is_empty() && self.rng.chance(0.45) {
            let over = self.rng.pick(&rows).0.clone();
            let row = self.name("row");
            let index = self.rng.chance(0.3).then(|| self.name("i"));
            return Some(ForHead::Rows { row, over, index, iter: self.rng.chance(0.3) });
        }
        let slices = env.slices();
        if !slices.is_empty() && self.rng.chance(0.45) {
            let (over, _) = self.rng.pick(&slices).clone();
            let elem = self.name("e");
            let style = *self.rng.pick(&[IterStyle::Iter, IterStyle::Borrow, IterStyle::Copied]);
            let index = self.rng.chance(0.35).then(|| self.name("i"));
            let zip = self.rng.chance(0.3).then(|| (self.rng.pick(&slices).0.clone(), self.name("e")));
            let rev = self.rng.chance(0.25);
            return Some(ForHead::Iter { elem, over, style, index, zip, rev });
        }
        let var = self.name("i");
        let (hi, inclusive) = if !slices.is_empty() && self.rng.chance(0.7) {
            let (of, len) = self.rng.pick(&slices).clone();
            let k = self.rng.range(0, 1.min(len.min()));
            let inclusive = k == 1 && self.rng.chance(0.3);
            (LenExpr::LenOf(of, k), inclusive)
        } else {
            (LenExpr::Const(self.rng.range(1, 4)), self.rng.chance(0.2))
        };
        let lo = if self.rng.chance(0.25) { 1 } else { 0 };
        let mut adapters = Vec::new();
        match self.rng.weighted(&[10, 3, 3, 2, 2]) {
            1 => adapters.push(Adapter::Rev),
            2 => adapters.push(Adapter::StepBy(self.rng.range(2, 3))),
            3 => {
                adapters.push(Adapter::Rev);
                adapters.push(Adapter::StepBy(self.rng.range(2, 3)));
            }
            // `(a..=b).step_by(k).rev()` is not an exact-size iterator.
            4 if !inclusive => {
                adapters.push(Adapter::StepBy(self.rng.range(2, 3)));
                adapters.push(Adapter::Rev);
            }
            _ => {}
        }
        Some(ForHead::Range { var, lo, hi, inclusive, adapters })
    }

    fn nested(&mut self, env: &mut Env) -> Option<Stmt> {
        let sig = self.rng.pick(&env.callable).clone();
        let args = self.args(env, &sig)?;
        let value = self.rng.chance(0.3);
        let grads = env.gradient_kinds(&sig.name, &args)?;
        let kind = scope::nested_result(grads, value);
        let pat = self.pattern(&kind, false);
        Some(Stmt::Nested { pat, value, callee: sig.name, args })
    }

    /// A pattern for a value of this kind: a name for the whole, or (a tuple) its
    /// parts, some of them `_`.
    fn pattern(&mut self, kind: &Kind, destructure: bool) -> Pat {
        match kind {
            Kind::Tuple(items) if destructure || self.rng.chance(0.6) => Pat::Tuple(
                items.iter().map(|k| if self.rng.chance(0.15) { Pat::Wild } else { self.pattern(k, false) }).collect(),
            ),
            Kind::Tuple(_) => Pat::Name(self.name("gt")),
            _ => Pat::Name(self.name("g")),
        }
    }

    fn args(&mut self, env: &Env, sig: &Sig) -> Option<Vec<Arg>> {
        let slices = env.slices();
        let mut out = Vec::new();
        for p in &sig.params {
            out.push(match p {
                PTy::Scalar => Arg::Scalar(self.expr(env, 2)),
                PTy::Rows => return None,
                PTy::Slice => {
                    if slices.is_empty() {
                        return None;
                    }
                    let (of, len) = self.rng.pick(&slices).clone();
                    if len.min() >= 2 && self.rng.chance(0.3) {
                        let lo = self.rng.range(0, 1);
                        let cut = if lo == 0 { 1 } else { self.rng.range(0, 1.min(len.min() - 2)) };
                        Arg::Sub { of, lo, cut }
                    } else {
                        Arg::Slice(of)
                    }
                }
            });
        }
        Some(out)
    }

    fn cond(&mut self, env: &Env) -> Cond {
        let outer = std::mem::replace(&mut self.in_cond, true);
        let lhs = self.expr(env, 2);
        let rhs = if self.rng.chance(0.6) { Expr::Lit(*self.rng.pick(LITERALS)) } else { self.expr(env, 1) };
        self.in_cond = outer;
        let op = *self.rng.pick(&[Cmp::Lt, Cmp::Gt, Cmp::Le, Cmp::Ge]);
        Cond { lhs, op, rhs }
    }

    fn index(&mut self, env: &Env, of: &str, len: &Len) -> Idx {
        let mut options: Vec<Idx> = Vec::new();
        for c in 0..len.min().min(3) {
            options.push(Idx::Const(c));
        }
        if len.min() >= 1 {
            options.push(Idx::Last(of.to_string()));
            for i in env.integers() {
                options.push(Idx::Wrap { var: i, offset: self.rng.range(0, 2), of: of.to_string() });
            }
        }
        for (i, _, _) in env.indices() {
            for idx in [
                Idx::Var(i.clone()),
                Idx::Var(i.clone()),
                Idx::Var(i.clone()),
                Idx::Prev(i.clone()),
                Idx::Next(i.clone()),
            ] {
                if env.index_ok(of, len, &idx) {
                    options.push(idx);
                }
            }
        }
        self.rng.pick(&options).clone()
    }

    /// An index to write `buf` through: `buf[buf.len() - 1] = …` borrows a `Vec` twice
    /// (E0502), so not one that reads the buffer's length.
    fn write_index(&mut self, env: &Env, buf: &str, len: &Len) -> Option<Idx> {
        for _ in 0..8 {
            let index = self.index(env, buf, len);
            if !reads_len(&index) {
                return Some(index);
            }
        }
        None
    }

    /// A column index of rows of length `cols`.
    fn column(&mut self, env: &Env, cols: &Len) -> Idx {
        let mut options: Vec<Idx> = (0..cols.min().min(3)).map(Idx::Const).collect();
        for (i, _, _) in env.indices() {
            for idx in [Idx::Var(i.clone()), Idx::Var(i.clone()), Idx::Prev(i.clone()), Idx::Next(i.clone())] {
                if env.column_ok(cols, &idx) {
                    options.push(idx);
                }
            }
        }
        self.rng.pick(&options).clone()
    }

    fn leaf(&mut self, env: &Env) -> Expr {
        let scalars = env.scalars();
        let slices = env.slices();
        let ints = env.integers();
        let tuples: Vec<(String, usize)> = env
            .tuples()
            .into_iter()
            .flat_map(|(n, items)| {
                items
                    .iter()
                    .enumerate()
                    .filter(|(_, k)| matches!(k, Kind::Scalar { .. }))
                    .map(|(i, _)| (n.clone(), i))
                    .collect::<Vec<_>>()
            })
            .collect();
        let rows = env.rows();
        let weights = [
            3,
            if scalars.is_empty() { 0 } else { 12 },
            if slices.is_empty() { 0 } else { 8 },
            if slices.is_empty() { 0 } else { 1 },
            if slices.is_empty() { 0 } else { 1 },
            if ints.is_empty() { 0 } else { 2 },
            if tuples.is_empty() { 0 } else { 3 },
            if rows.is_empty() { 0 } else { 7 },
        ];
        match self.rng.weighted(&weights) {
            0 => Expr::Lit(*self.rng.pick(LITERALS)),
            1 => Expr::Var(self.rng.pick(&scalars).clone()),
            2 => {
                let (of, len) = self.rng.pick(&slices).clone();
                let idx = self.index(env, &of, &len);
                Expr::Elem(of, idx)
            }
            3 => Expr::Sum(self.rng.pick(&slices).0.clone()),
            4 => Expr::LenF(self.rng.pick(&slices).0.clone()),
            5 => Expr::IntF(self.rng.pick(&ints).clone()),
            6 => {
                let (n, i) = self.rng.pick(&tuples).clone();
                Expr::Field(n, i)
            }
            _ => {
                let (m, nrows, cols, _) = self.rng.pick(&rows).clone();
                let i = self.index(env, &m, &nrows);
                let j = self.column(env, &cols);
                Expr::Elem2(m, i, j)
            }
        }
    }

    fn expr(&mut self, env: &Env, depth: usize) -> Expr {
        if depth == 0 || self.rng.chance(0.25) {
            return self.leaf(env);
        }
        let d = depth - 1;
        let calls_ok =
            env.callable.iter().any(|s| s.params.iter().all(|p| *p == PTy::Scalar) || !env.slices().is_empty());
        let has_slices = !env.slices().is_empty();
        let weights = [
            16,
            4,
            10,
            5,
            2,
            2,
            1,
            if calls_ok { 4 } else { 0 },
            2,
            if self.in_cond { 3 } else { 0 },
            if has_slices { 2 } else { 0 },
            if has_slices { 1 } else { 0 },
            if env.closures().is_empty() { 0 } else { 3 },
        ];
        match self.rng.weighted(&weights) {
            0 => {
                let op = *self.rng.pick(&[BOp::Add, BOp::Add, BOp::Sub, BOp::Mul, BOp::Mul, BOp::Div, BOp::Rem]);
                let a = self.expr(env, d);
                let b = match op {
                    BOp::Div => self.nonzero(env, d),
                    BOp::Rem => Expr::Lit(*self.rng.pick(&[0.7, 1.3, 2.0])),
                    _ => self.expr(env, d),
                };
                Expr::Bin(op, Box::new(a), Box::new(b))
            }
            1 => Expr::Neg(Box::new(self.expr(env, d))),
            2 => self.unary(env, d),
            3 => self.binary_method(env, d),
            4 => {
                let k = *self.rng.pick(&[0, 1, 2, 2, 3, -1, -2]);
                let base = if k < 0 { self.positive(env, d) } else { self.expr(env, d) };
                Expr::Powi(Box::new(base), k)
            }
            5 => Expr::MulAdd(Box::new(self.expr(env, d)), Box::new(self.expr(env, d)), Box::new(self.expr(env, d))),
            6 => {
                let lo = *self.rng.pick(&[-1.0, -0.5, 0.0]);
                Expr::Clamp(Box::new(self.expr(env, d)), lo, lo + *self.rng.pick(&[0.5, 1.0, 2.0]))
            }
            7 => {
                let candidates: Vec<Sig> = env.callable.clone();
                let sig = self.rng.pick(&candidates).clone();
                match self.args(env, &sig) {
                    Some(args) => Expr::Call(sig.name, args),
                    None => self.leaf(env),
                }
            }
            8 => Expr::IfExpr(Box::new(self.cond(env)), Box::new(self.expr(env, d)), Box::new(self.expr(env, d))),
            9 => Expr::Detach(Box::new(self.expr(env, d))),
            10 => {
                let slices = env.slices();
                let over = self.rng.pick(&slices).0.clone();
                let elem = self.name("e");
                let zip = match self.rng.chance(0.35) {
                    true => Some((self.rng.pick(&slices).0.clone(), self.name("e"))),
                    false => None,
                };
                let mut names = vec![elem.clone()];
                names.extend(zip.iter().map(|(_, e)| e.clone()));
                let body = self.expr(&env.with_scalars(&names), d.min(2));
                Expr::MapSum { over, elem, zip, body: Box::new(body) }
            }
            11 => {
                let slices = env.slices();
                let over = self.rng.pick(&slices).0.clone();
                let init = self.expr(env, 1);
                let (acc, elem) = (self.name("acc"), self.name("e"));
                // Bounded, so that a long slice cannot make the fold overflow.
                let inner = self.expr(&env.with_scalars(&[acc.clone(), elem.clone()]), 1);
                let body = match self.rng.chance(0.5) {
                    true => Expr::Binary(Bm::Max, Box::new(Expr::Var(acc.clone())), Box::new(inner)),
                    false => Expr::Bin(
                        BOp::Add,
                        Box::new(Expr::Bin(BOp::Mul, Box::new(Expr::Lit(0.5)), Box::new(Expr::Var(acc.clone())))),
                        Box::new(Expr::Unary(Un::Tanh, Box::new(inner))),
                    ),
                };
                Expr::Fold { over, init: Box::new(init), acc, elem, body: Box::new(body) }
            }
            12 => {
                let closures = env.closures();
                let f = self.rng.pick(&closures).clone();
                Expr::Apply(f, Box::new(self.expr(env, d)))
            }
            _ => unreachable!("a weight without an arm"),
        }
    }

    /// `e·e + c`: positive everywhere.
    fn positive(&mut self, env: &Env, d: usize) -> Expr {
        let e = self.expr(env, d.min(1));
        let c = *self.rng.pick(&[0.25, 0.5, 1.0, 2.0]);
        Expr::Bin(BOp::Add, Box::new(Expr::Bin(BOp::Mul, Box::new(e.clone()), Box::new(e))), Box::new(Expr::Lit(c)))
    }

    /// A value in (−1, 1): `c·e.tanh()` or `c·e.sin()`.
    fn bounded(&mut self, env: &Env, d: usize, c: f64) -> Expr {
        let squash = if self.rng.chance(0.5) { Un::Tanh } else { Un::Sin };
        let e = self.expr(env, d.min(1));
        Expr::Bin(BOp::Mul, Box::new(Expr::Lit(c)), Box::new(Expr::Unary(squash, Box::new(e))))
    }

    fn nonzero(&mut self, env: &Env, d: usize) -> Expr {
        if self.rng.chance(0.4) {
            Expr::Lit(*self.rng.pick(&[0.5, 2.0, -1.5, 3.0]))
        } else {
            self.positive(env, d)
        }
    }

    fn unary(&mut self, env: &Env, d: usize) -> Expr {
        let u = *self.rng.pick(&Un::ALL);
        let arg = match u {
            Un::Sqrt | Un::Ln | Un::Log10 | Un::Log2 | Un::Recip | Un::Cbrt | Un::Ln1p => self.positive(env, d),
            Un::Acosh => Expr::Bin(BOp::Add, Box::new(self.positive(env, d)), Box::new(Expr::Lit(1.0))),
            Un::Exp | Un::Exp2 | Un::ExpM1 | Un::Sinh | Un::Cosh => self.bounded(env, d, 2.0),
            Un::Tan | Un::Asin | Un::Acos | Un::Atanh => self.bounded(env, d, 0.9),
            _ => self.expr(env, d),
        };
        Expr::Unary(u, Box::new(arg))
    }

    fn binary_method(&mut self, env: &Env, d: usize) -> Expr {
        let m = *self.rng.pick(&[Bm::Max, Bm::Min, Bm::Atan2, Bm::Hypot, Bm::Powf, Bm::Log]);
        let (a, b) = match m {
            Bm::Powf => {
                let base = self.positive(env, d);
                let p = if self.rng.chance(0.5) {
                    Expr::Lit(*self.rng.pick(&[0.0, 0.5, 1.0, 1.5, 2.0, 3.0]))
                } else {
                    self.bounded(env, d, 1.5)
                };
                (base, p)
            }
            Bm::Log => {
                let x = self.positive(env, d);
                let base = if self.rng.chance(0.6) {
                    Expr::Lit(*self.rng.pick(&[2.0, 10.0, 0.5, 3.0]))
                } else {
                    Expr::Bin(BOp::Add, Box::new(self.positive(env, d)), Box::new(Expr::Lit(1.5)))
                };
                (x, base)
            }
            _ => (self.expr(env, d), self.expr(env, d)),
        };
        Expr::Binary(m, Box::new(a), Box::new(b))
    }
}

/// A statement generated at a chosen place in a block.
#[derive(Clone, Debug)]
enum Special {
    None,
    /// `if … { break 'label; }` or `continue 'label;`.
    Exit(String),
    /// A loop whose body holds an `Exit` to the label.
    InnerLoop(String),
}

#[derive(Clone, Copy, Debug)]
enum LoopChoice {
    For,
    While,
    Plain,
    Drain,
}

/// Whether some `break`/`continue` in `s` names `label`.
fn exits_to(s: &Stmt, label: &str) -> bool {
    let mut found = false;
    walk_block(&vec![s.clone()], &mut |t| {
        if let Stmt::Break(_, Some(l)) | Stmt::Continue(_, Some(l)) = t {
            found |= l == label;
        }
    });
    found
}

/// Set the label of a loop statement.
pub(crate) fn set_label(s: &mut Stmt, to: Option<String>) {
    if let Stmt::For { label, .. }
    | Stmt::While { label, .. }
    | Stmt::PlainLoop { label, .. }
    | Stmt::Drain { label, .. } = s
    {
        *label = to;
    }
}

fn sigs(funcs: &[Func]) -> Vec<Sig> {
    funcs.iter().map(|f| Sig { name: f.name.clone(), params: f.params.iter().map(|p| p.ty).collect() }).collect()
}

/// Whether an index reads a length (`b.len() - 1`, `(i + 1) % b.len()`).
pub(crate) fn reads_len(index: &Idx) -> bool {
    matches!(index, Idx::Last(_) | Idx::Wrap { .. })
}
