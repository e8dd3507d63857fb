//! What is in scope where, and the checker that keeps programs valid.
//!
//! The generator consults an [`Env`] to pick names that exist and indices that are in
//! bounds; [`check`] re-walks a whole program with the same model. Every program the
//! generator writes passes it, and the shrinker keeps only candidates that pass it: a
//! program that passes is valid Rust (types, borrows, `break` placement) whose slice
//! indexing is in bounds for every input the harness draws (slices of at least
//! [`MIN_LEN`] elements).

use crate::ast::*;

/// The shortest slice the harness passes to the entry function.
pub const MIN_LEN: usize = 3;

/// The length of a slice, as far as the program knows it.
#[derive(Clone, Debug, PartialEq)]
pub enum Len {
    /// The length of the entry function's slice arguments (all equal, at least
    /// [`MIN_LEN`]) minus a constant.
    L(usize),
    /// A constant length.
    C(usize),
    /// Exactly the length of that (helper's) slice parameter.
    Of(String),
    /// Unknown, at least this.
    Opaque(usize),
}

impl Len {
    /// The least length a slice of this class has.
    pub fn min(&self) -> usize {
        match self {
            Len::L(k) => MIN_LEN.saturating_sub(*k),
            Len::C(n) => *n,
            Len::Of(_) => 1,
            Len::Opaque(m) => *m,
        }
    }

    /// This length minus `k` (`k` at most [`Len::min`]).
    pub fn minus(&self, k: usize) -> Len {
        if k == 0 {
            return self.clone();
        }
        match self {
            Len::L(j) => Len::L(j + k),
            Len::C(n) => Len::C(n - k),
            Len::Of(_) => Len::Opaque(self.min().saturating_sub(k)),
            Len::Opaque(m) => Len::Opaque(m.saturating_sub(k)),
        }
    }

    /// Whether every index below `self` is a valid index of a slice of length `of`.
    pub fn within(&self, of: &Len) -> bool {
        match (self, of) {
            // Two unknown lengths are never known to be equal.
            (a, b) if a == b => !matches!(a, Len::Opaque(_)),
            (Len::C(n), b) => *n <= b.min(),
            (Len::L(k), Len::L(j)) => k >= j,
            _ => false,
        }
    }
}

/// What a name denotes.
#[derive(Clone, Debug, PartialEq)]
pub enum Kind {
    Scalar {
        mutable: bool,
    },
    /// A slice parameter (`&[f64]`) or a local buffer (`Vec<f64>`, `[f64; N]`), or a
    /// gradient vector, a named sub-slice, a row.
    Slice {
        len: Len,
        mutable: bool,
        param: bool,
        /// A `Vec` (it has `pop` and `push`).
        vec: bool,
        /// Its element type is known to rustc where it is declared (`x.to_vec()`,
        /// `vec![a, 1.0]`; not `vec![0.0; n]`): `|a, b| a.total_cmp(b)` needs that.
        typed: bool,
    },
    /// A buffer of rows: the `&[Vec<f64>]` parameter (square) or a local
    /// `vec![vec![0.0; cols]; rows]`.
    Rows {
        rows: Len,
        cols: Len,
        mutable: bool,
    },
    /// A loop index `lo <= i < bound`.
    Index {
        bound: Len,
        lo: usize,
    },
    /// An integer counter of a `while`/`loop`.
    Counter,
    /// A tuple of gradients.
    Tuple(Vec<Kind>),
    /// A vector moved out of a tuple by a destructuring `let`, or a buffer drained by
    /// `while let Some(v) = buf.pop()` (empty from then on: no slice of length 0 is ever
    /// passed on, since a helper's slice parameter is assumed non-empty).
    Moved,
    /// A closure `|t: f64| …` bound by `let`.
    Closure,
}

/// The signature of a function, for calls.
#[derive(Clone, Debug)]
pub struct Sig {
    pub name: String,
    pub params: Vec<PTy>,
}

/// Where the statement being generated or checked sits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LoopKind {
    /// Not in a loop.
    None,
    /// In a `for`, `while`, `while let` or `loop` without a value: `break;` and
    /// `continue;` are allowed.
    Plain,
    /// Directly in a `loop` whose value is used: `break;` without a value is not.
    Valued,
}

#[derive(Clone, Debug)]
pub struct Env {
    scopes: Vec<Vec<(String, Kind)>>,
    /// The loop depth of each scope (a value defined outside a loop cannot be moved
    /// inside it: the second iteration would use it moved).
    scope_depths: Vec<usize>,
    pub innermost: LoopKind,
    pub loop_depth: usize,
    /// The labels of the enclosing labelled loops (all of them without a value:
    /// `break 'label value` is not generated), outermost first.
    pub labels: Vec<String>,
    /// The functions this one may call.
    pub callable: Vec<Sig>,
    /// Whether this is a helper (its slices have lengths of their own).
    pub helper: bool,
}

impl Env {
    /// An environment with nothing in scope, outside any loop.
    fn empty(callable: Vec<Sig>, helper: bool) -> Env {
        Env {
            scopes: vec![Vec::new()],
            scope_depths: vec![0],
            innermost: LoopKind::None,
            loop_depth: 0,
            labels: Vec::new(),
            callable,
            helper,
        }
    }

    /// The environment at the start of a function's body.
    pub fn for_func(f: &Func, callable: Vec<Sig>, helper: bool) -> Env {
        let mut env = Env::empty(callable, helper);
        for p in &f.params {
            let kind = match p.ty {
                PTy::Scalar => Kind::Scalar { mutable: false },
                PTy::Slice => Kind::Slice {
                    len: if helper { Len::Of(p.name.clone()) } else { Len::L(0) },
                    mutable: false,
                    param: true,
                    vec: false,
                    typed: true,
                },
                PTy::Rows => Kind::Rows { rows: Len::L(0), cols: Len::L(0), mutable: false },
            };
            env.define(&p.name, kind);
        }
        env
    }

    pub fn define(&mut self, name: &str, kind: Kind) {
        self.scopes.last_mut().expect("scope").push((name.to_string(), kind));
    }

    pub fn lookup(&self, name: &str) -> Option<&Kind> {
        self.scopes.iter().rev().flat_map(|s| s.iter().rev()).find(|(n, _)| n == name).map(|(_, k)| k)
    }

    pub fn push(&mut self) {
        self.scopes.push(Vec::new());
        self.scope_depths.push(self.loop_depth);
    }

    pub fn pop(&mut self) {
        self.scopes.pop();
        self.scope_depths.pop();
    }

    /// The scope of an iterator adaptor's closure body: everything visible, and the
    /// closure's own scalar parameters.
    pub fn with_scalars(&self, names: &[String]) -> Env {
        let mut env = self.clone();
        env.push();
        for n in names {
            env.define(n, Kind::Scalar { mutable: false });
        }
        env
    }

    /// The scope of a `let` closure's body: its parameter, and what it may capture for
    /// as long as it lives without a borrow conflict: values nothing writes (immutable
    /// scalars, slices and indices, other closures), not counters, mutable scalars,
    /// buffers being written, or tuples a later `let` may move out of.
    pub fn closure_body(&self, param: &str) -> Env {
        let mut env = Env::empty(self.callable.clone(), self.helper);
        for (n, k) in self.visible() {
            let keep = matches!(
                k,
                Kind::Scalar { mutable: false }
                    | Kind::Slice { mutable: false, .. }
                    | Kind::Rows { mutable: false, .. }
                    | Kind::Index { .. }
                    | Kind::Closure
            );
            if keep {
                env.define(&n, k);
            }
        }
        env.define(param, Kind::Scalar { mutable: false });
        env
    }

    /// Closures bound by `let`.
    pub fn closures(&self) -> Vec<String> {
        self.visible().into_iter().filter(|(_, k)| matches!(k, Kind::Closure)).map(|(n, _)| n).collect()
    }

    /// The loop depth at which the visible `name` was defined.
    fn depth_of(&self, name: &str) -> Option<usize> {
        let i = self.scopes.iter().rposition(|s| s.iter().any(|(n, _)| n == name))?;
        Some(self.scope_depths[i])
    }

    /// Whether the visible `name` was defined in the innermost scope.
    fn defined_here(&self, name: &str) -> bool {
        self.scopes.last().is_some_and(|s| s.iter().any(|(n, _)| n == name))
    }

    /// Whether `buf` is a local `Vec` this statement may shorten (`pop`, drain): a
    /// mutable one defined at the current loop depth, so that a loop around the
    /// statement never sees it shorter than the model says on its next iteration.
    pub fn shortenable(&self, buf: &str) -> bool {
        matches!(self.lookup(buf), Some(Kind::Slice { mutable: true, vec: true, param: false, .. }))
            && self.depth_of(buf) == Some(self.loop_depth)
    }

    /// Local `Vec`s that may be drained here.
    pub fn drainable(&self) -> Vec<String> {
        self.mutable_buffers().into_iter().map(|(n, _)| n).filter(|n| self.shortenable(n)).collect()
    }

    /// Local `Vec`s that `pop().unwrap()` may shorten here (they keep an element).
    pub fn poppable(&self) -> Vec<String> {
        self.mutable_buffers()
            .into_iter()
            .filter(|(n, len)| len.min() >= 2 && self.shortenable(n))
            .map(|(n, _)| n)
            .collect()
    }

    /// Buffers of rows with their numbers of rows and columns.
    pub fn rows(&self) -> Vec<(String, Len, Len, bool)> {
        self.visible()
            .into_iter()
            .filter_map(|(n, k)| match k {
                Kind::Rows { rows, cols, mutable } => Some((n, rows, cols, mutable)),
                _ => None,
            })
            .collect()
    }

    /// Make a mutable buffer read-only in the current scope (a borrow of it lives there:
    /// a named sub-slice, a row, a loop over it).
    fn freeze(&mut self, name: &str) {
        match self.lookup(name).cloned() {
            Some(Kind::Slice { len, mutable: true, param, vec, typed }) => {
                self.define(name, Kind::Slice { len, mutable: false, param, vec, typed })
            }
            Some(Kind::Rows { rows, cols, mutable: true }) => {
                self.define(name, Kind::Rows { rows, cols, mutable: false })
            }
            _ => {}
        }
    }

    /// Change the kind of the visible `name` where it was defined.
    fn replace(&mut self, name: &str, kind: Kind) {
        let slot = self.scopes.iter_mut().rev().flat_map(|s| s.iter_mut().rev()).find(|(n, _)| n == name);
        if let Some((_, k)) = slot {
            *k = kind;
        }
    }

    /// Whether `let pat = from;` is valid Rust here: it may move a vector out of the
    /// tuple only once, and not inside a loop the tuple was defined outside of.
    pub fn unpack_ok(&self, pat: &Pat, from: &str) -> bool {
        let Some(kind) = self.lookup(from) else { return false };
        let mut probe =
            Env { innermost: self.innermost, loop_depth: self.loop_depth, ..Env::empty(Vec::new(), self.helper) };
        matches!(kind, Kind::Tuple(_))
            && bind_pat(&mut probe, pat, kind)
            && (!moves(pat, kind) || self.depth_of(from) == Some(self.loop_depth))
    }

    /// Every visible name (the newest binding of each) with its kind.
    pub fn visible(&self) -> Vec<(String, Kind)> {
        let mut out: Vec<(String, Kind)> = Vec::new();
        for s in self.scopes.iter().rev() {
            for (n, k) in s.iter().rev() {
                if !out.iter().any(|(m, _)| m == n) {
                    out.push((n.clone(), k.clone()));
                }
            }
        }
        out.reverse();
        out
    }

    pub fn scalars(&self) -> Vec<String> {
        self.visible().into_iter().filter(|(_, k)| matches!(k, Kind::Scalar { .. })).map(|(n, _)| n).collect()
    }

    pub fn mutable_scalars(&self) -> Vec<String> {
        self.visible()
            .into_iter()
            .filter(|(_, k)| matches!(k, Kind::Scalar { mutable: true }))
            .map(|(n, _)| n)
            .collect()
    }

    /// Slices with their lengths.
    pub fn slices(&self) -> Vec<(String, Len)> {
        self.visible()
            .into_iter()
            .filter_map(|(n, k)| match k {
                Kind::Slice { len, .. } => Some((n, len)),
                _ => None,
            })
            .collect()
    }

    pub fn mutable_buffers(&self) -> Vec<(String, Len)> {
        self.visible()
            .into_iter()
            .filter_map(|(n, k)| match k {
                Kind::Slice { len, mutable: true, .. } => Some((n, len)),
                _ => None,
            })
            .collect()
    }

    /// Loop indices with their bounds.
    pub fn indices(&self) -> Vec<(String, Len, usize)> {
        self.visible()
            .into_iter()
            .filter_map(|(n, k)| match k {
                Kind::Index { bound, lo } => Some((n, bound, lo)),
                _ => None,
            })
            .collect()
    }

    /// Integer variables (indices and counters).
    pub fn integers(&self) -> Vec<String> {
        self.visible()
            .into_iter()
            .filter(|(_, k)| matches!(k, Kind::Index { .. } | Kind::Counter))
            .map(|(n, _)| n)
            .collect()
    }

    /// Tuples of gradients (with the position of their scalar fields).
    pub fn tuples(&self) -> Vec<(String, Vec<Kind>)> {
        self.visible()
            .into_iter()
            .filter_map(|(n, k)| match k {
                Kind::Tuple(items) => Some((n, items)),
                _ => None,
            })
            .collect()
    }

    pub fn sig(&self, name: &str) -> Option<&Sig> {
        self.callable.iter().find(|s| s.name == name)
    }

    /// The length of a slice argument, if it is valid.
    pub fn arg_len(&self, a: &Arg) -> Option<Len> {
        match a {
            Arg::Scalar(_) => None,
            Arg::Slice(n) => match self.lookup(n)? {
                Kind::Slice { len, .. } => Some(len.clone()),
                _ => None,
            },
            Arg::Sub { of, lo, cut } => match self.lookup(of)? {
                Kind::Slice { len, .. } if lo + cut < len.min() => Some(len.minus(lo + cut)),
                _ => None,
            },
        }
    }

    /// Whether `idx` is a valid column index of rows of length `cols` (`Last` and
    /// `Wrap` name the buffer whose length they read: not a row).
    pub fn column_ok(&self, cols: &Len, idx: &Idx) -> bool {
        !crate::gen::reads_len(idx) && self.index_ok("", cols, idx)
    }

    /// Whether `idx` is a valid index of the slice `of` (of length `len`).
    pub fn index_ok(&self, of: &str, len: &Len, idx: &Idx) -> bool {
        match idx {
            Idx::Const(c) => *c < len.min(),
            Idx::Last(s) => s == of && len.min() >= 1,
            Idx::Wrap { var, of: o, .. } => {
                o == of && len.min() >= 1 && matches!(self.lookup(var), Some(Kind::Index { .. } | Kind::Counter))
            }
            Idx::Var(i) => matches!(self.lookup(i), Some(Kind::Index { bound, .. }) if bound.within(len)),
            Idx::Prev(i) => matches!(self.lookup(i), Some(Kind::Index { bound, lo }) if *lo >= 1 && bound.within(len)),
            // i + 1 < len when i < bound ≤ len − 1.
            Idx::Next(i) => {
                len.min() >= 1
                    && matches!(self.lookup(i), Some(Kind::Index { bound, .. }) if bound.within(&len.minus(1)))
            }
        }
    }

    /// The kinds of the gradients `grad!(callee)(args)` returns (one per parameter), if
    /// the call is valid.
    pub fn gradient_kinds(&self, callee: &str, args: &[Arg]) -> Option<Vec<Kind>> {
        let sig = self.sig(callee)?;
        if sig.params.len() != args.len() {
            return None;
        }
        let mut out = Vec::new();
        for (p, a) in sig.params.iter().zip(args) {
            match (p, a) {
                (PTy::Scalar, Arg::Scalar(_)) => out.push(Kind::Scalar { mutable: false }),
                (PTy::Slice, a @ (Arg::Slice(_) | Arg::Sub { .. })) => {
                    let len = self.arg_len(a)?;
                    out.push(Kind::Slice { len, mutable: false, param: false, vec: true, typed: true });
                }
                _ => return None,
            }
        }
        Some(out)
    }
}

/// The shape a nested call returns: one gradient as itself, several as a tuple; with
/// the value first for `value_and_grad!`.
pub fn nested_result(grads: Vec<Kind>, value: bool) -> Kind {
    let g = if grads.len() == 1 { grads.into_iter().next().expect("one") } else { Kind::Tuple(grads) };
    if value {
        Kind::Tuple(vec![Kind::Scalar { mutable: false }, g])
    } else {
        g
    }
}

/// Bind a pattern to a value of the given kind (false if the shapes differ).
pub fn bind_pat(env: &mut Env, pat: &Pat, kind: &Kind) -> bool {
    match (pat, kind) {
        (Pat::Wild, _) => true,
        // A moved vector, or a tuple with one (E0382: use of a partially moved value).
        (Pat::Name(_), k) if has_moved(k) => false,
        (Pat::Name(n), k) => {
            env.define(n, k.clone());
            true
        }
        (Pat::Tuple(ps), Kind::Tuple(ks)) if ps.len() == ks.len() => {
            ps.iter().zip(ks).all(|(p, k)| bind_pat(env, p, k))
        }
        _ => false,
    }
}

/// Whether a value of this kind is, or holds, a moved vector.
fn has_moved(kind: &Kind) -> bool {
    match kind {
        Kind::Moved => true,
        Kind::Tuple(ks) => ks.iter().any(has_moved),
        _ => false,
    }
}

/// Whether binding `pat` to a value of `kind` moves a vector out of it.
fn moves(pat: &Pat, kind: &Kind) -> bool {
    match (pat, kind) {
        (Pat::Wild, _) => false,
        (Pat::Name(_), k) => !is_copy(k),
        (Pat::Tuple(ps), Kind::Tuple(ks)) => ps.iter().zip(ks).any(|(p, k)| moves(p, k)),
        _ => false,
    }
}

fn is_copy(kind: &Kind) -> bool {
    match kind {
        Kind::Slice { .. } => false,
        Kind::Tuple(ks) => ks.iter().all(is_copy),
        _ => true,
    }
}

/// What is left of a value of `kind` after `pat` took its parts.
fn after_move(pat: &Pat, kind: &Kind) -> Kind {
    match (pat, kind) {
        (Pat::Name(_), k) if !is_copy(k) => Kind::Moved,
        (Pat::Tuple(ps), Kind::Tuple(ks)) => Kind::Tuple(ps.iter().zip(ks).map(|(p, k)| after_move(p, k)).collect()),
        (_, k) => k.clone(),
    }
}

/// Check a whole program; the error says what is wrong (for the generator's own tests).
pub fn check(p: &Program) -> Result<(), String> {
    let mut callable: Vec<Sig> = Vec::new();
    let mut names: Vec<&str> = Vec::new();
    for (i, f) in p.funcs().enumerate() {
        let helper = i < p.helpers.len();
        if names.contains(&f.name.as_str()) {
            return Err(format!("function `{}` defined twice", f.name));
        }
        names.push(&f.name);
        let mut env = Env::for_func(f, callable.clone(), helper);
        check_block(&mut env, &f.body).map_err(|e| format!("in `{}`: {e}", f.name))?;
        check_expr(&env, &f.ret).map_err(|e| format!("in `{}`'s result: {e}", f.name))?;
        callable.push(Sig { name: f.name.clone(), params: f.params.iter().map(|p| p.ty).collect() });
    }
    Ok(())
}

pub fn check_block(env: &mut Env, b: &Block) -> Result<(), String> {
    for s in b {
        check_stmt(env, s)?;
    }
    Ok(())
}

fn in_block(env: &mut Env, b: &Block, innermost: Option<LoopKind>, setup: impl FnOnce(&mut Env)) -> Result<(), String> {
    in_loop(env, b, innermost, None, setup)
}

/// Check a block (a loop body when `innermost` is given, with its label).
fn in_loop(
    env: &mut Env,
    b: &Block,
    innermost: Option<LoopKind>,
    label: Option<&String>,
    setup: impl FnOnce(&mut Env),
) -> Result<(), String> {
    if let Some(l) = label.filter(|l| env.labels.contains(l)) {
        return Err(format!("label `'{l}` shadows an enclosing one"));
    }
    let saved = (env.innermost, env.loop_depth, env.labels.len());
    if let Some(k) = innermost {
        env.innermost = k;
        env.loop_depth += 1;
    }
    env.labels.extend(label.cloned());
    env.push();
    setup(env);
    let r = check_block(env, b);
    env.pop();
    (env.innermost, env.loop_depth) = (saved.0, saved.1);
    env.labels.truncate(saved.2);
    r
}

/// The kind of a local buffer made by `init` (of length `len`).
pub fn buffer_kind(init: &BufInit, len: Len, mutable: bool) -> Kind {
    let vec = !matches!(init, BufInit::Array(_) | BufInit::ArrayZeros(_));
    let typed = match init {
        BufInit::Zeros(_) | BufInit::ArrayZeros(_) => false,
        BufInit::Array(items) | BufInit::VecList(items) | BufInit::Pushed(items) => {
            items.iter().any(|e| !is_constant(e))
        }
        BufInit::Copy(_) => true,
        BufInit::PushLoop { value, .. } => !is_constant(value),
    };
    Kind::Slice { len, mutable, param: false, vec, typed }
}

/// The length of `&of[lo..hi]` for a slice of length `len`, if the range is valid and
/// not empty.
pub fn sub_len(len: &Len, lo: SubLo, hi: SubHi) -> Option<Len> {
    let min = len.min();
    match (lo, hi) {
        (SubLo::Const(a), SubHi::End) if a < min => Some(len.minus(a)),
        (SubLo::Const(a), SubHi::Cut(k)) if a + k < min => Some(len.minus(a + k)),
        (SubLo::Const(a), SubHi::Const(b)) if a < b && b <= min => Some(Len::C(b - a)),
        (SubLo::Const(0), SubHi::Half) if min >= 2 => Some(match len {
            Len::C(n) => Len::C(n / 2),
            _ => Len::Opaque(min / 2),
        }),
        (SubLo::Half, SubHi::End) if min >= 1 => Some(match len {
            Len::C(n) => Len::C(n - n / 2),
            _ => Len::Opaque(min - min / 2),
        }),
        _ => None,
    }
}

/// Check a statement and bring what it defines into scope.
pub fn check_stmt(env: &mut Env, s: &Stmt) -> Result<(), String> {
    match s {
        Stmt::Let { name, mutable, value } => {
            check_expr(env, value)?;
            env.define(name, Kind::Scalar { mutable: *mutable });
        }
        Stmt::LetFold { name, of, .. } => {
            slice_len(env, of)?;
            env.define(name, Kind::Scalar { mutable: false });
        }
        Stmt::Assign { name, value, .. } => {
            check_expr(env, value)?;
            match env.lookup(name) {
                Some(Kind::Scalar { mutable: true }) => {}
                _ => return Err(format!("`{name}` is not a mutable scalar")),
            }
        }
        Stmt::Buffer { name, mutable, init } => {
            let len = match init {
                BufInit::Zeros(l) => len_expr(env, l)?,
                BufInit::ArrayZeros(n) => Len::C(*n),
                BufInit::Array(items) | BufInit::VecList(items) | BufInit::Pushed(items) => {
                    for e in items {
                        check_expr(env, e)?;
                    }
                    Len::C(items.len())
                }
                BufInit::Copy(of) => slice_len(env, of)?,
                BufInit::PushLoop { var, len, value } => {
                    let l = len_expr(env, len)?;
                    env.push();
                    env.define(var, Kind::Index { bound: l.clone(), lo: 0 });
                    let r = check_expr(env, value);
                    env.pop();
                    r?;
                    l
                }
            };
            env.define(name, buffer_kind(init, len, *mutable));
        }
        Stmt::Store { buf, index, value, .. } => {
            check_expr(env, value)?;
            match env.lookup(buf) {
                Some(Kind::Slice { len, mutable: true, .. }) => {
                    if crate::gen::reads_len(index) {
                        return Err(format!("`{buf}[{index:?}] = …` borrows `{buf}` twice (E0502)"));
                    }
                    let len = len.clone();
                    if !env.index_ok(buf, &len, index) {
                        return Err(format!("index {index:?} of `{buf}` may be out of bounds"));
                    }
                }
                _ => return Err(format!("`{buf}` is not a mutable buffer")),
            }
        }
        Stmt::If { cond, then, els } => {
            check_cond(env, cond)?;
            in_block(env, then, None, |_| {})?;
            if let Some(e) = els {
                in_block(env, e, None, |_| {})?;
            }
        }
        Stmt::For { head, body, label } => {
            let binds = head_bindings(env, head)?;
            in_loop(env, body, Some(LoopKind::Plain), label.as_ref(), |env| {
                for (n, k) in binds {
                    env.define(&n, k);
                }
            })?;
        }
        Stmt::While { counter, extra, body, label, .. } => {
            env.define(counter, Kind::Counter);
            if let Some(c) = extra {
                check_cond(env, c)?;
            }
            in_loop(env, body, Some(LoopKind::Plain), label.as_ref(), |_| {})?;
        }
        Stmt::PlainLoop { counter, body, label, .. } => {
            env.define(counter, Kind::Counter);
            in_loop(env, body, Some(LoopKind::Plain), label.as_ref(), |_| {})?;
        }
        Stmt::Drain { buf, var, counter, body, push, label } => {
            if !env.shortenable(buf) {
                return Err(format!("`{buf}` is not a local `Vec` that may be drained here"));
            }
            // In the body the buffer is being drained: only the push below touches it.
            let bind = |env: &mut Env| {
                env.define(buf, Kind::Moved);
                env.define(var, Kind::Scalar { mutable: false });
                if push.is_some() {
                    env.define(counter, Kind::Counter);
                }
            };
            in_loop(env, body, Some(LoopKind::Plain), label.as_ref(), bind)?;
            if let Some(p) = push {
                let mut inner = env.clone();
                inner.loop_depth += 1;
                inner.push();
                bind(&mut inner);
                if let Some(c) = &p.cond {
                    check_cond(&inner, c)?;
                }
                check_expr(&inner, &p.value)?;
            }
            env.replace(buf, Kind::Moved);
        }
        Stmt::Pop { name, buf, .. } => {
            let Some(Kind::Slice { len, mutable, param, vec, typed }) = env.lookup(buf).cloned() else {
                return Err(format!("`{buf}` is not a buffer"));
            };
            if len.min() < 2 || !env.shortenable(buf) {
                return Err(format!("`{buf}.pop().unwrap()` may empty it or is not allowed here"));
            }
            // In a nested block, the length after the block is one of two.
            let len = if env.defined_here(buf) { len.minus(1) } else { Len::Opaque(len.min() - 1) };
            env.replace(buf, Kind::Slice { len, mutable, param, vec, typed });
            env.define(name, Kind::Scalar { mutable: false });
        }
        Stmt::Sort { buf, how } => match env.lookup(buf) {
            Some(Kind::Slice { mutable: true, typed, .. }) if *typed || *how != SortHow::UnstableTotal => {}
            _ => return Err(format!("`{buf}` cannot be sorted that way")),
        },
        Stmt::Swap { buf, i, j } => {
            let Some(Kind::Slice { len, mutable: true, .. }) = env.lookup(buf) else {
                return Err(format!("`{buf}` is not a mutable buffer"));
            };
            for idx in [i, j] {
                if crate::gen::reads_len(idx) || !env.index_ok(buf, len, idx) {
                    return Err(format!("`{buf}.swap` index {idx:?} is out of bounds or borrows twice"));
                }
            }
        }
        Stmt::SubSlice { name, of, lo, hi } => {
            let len = slice_len(env, of)?;
            let sub = sub_len(&len, *lo, *hi).ok_or_else(|| format!("bad range {lo:?}..{hi:?} of `{of}`"))?;
            env.freeze(of);
            env.define(name, Kind::Slice { len: sub, mutable: false, param: false, vec: false, typed: true });
        }
        Stmt::Rows { name, rows, cols, fill } => {
            let (r, c) = (len_expr(env, rows)?, len_expr(env, cols)?);
            if r.min() == 0 || c.min() == 0 {
                return Err("a buffer of rows with no row or no column".into());
            }
            if let Some(f) = fill {
                let mut inner = env.clone();
                inner.loop_depth += 2;
                inner.push();
                inner.define(&f.i, Kind::Index { bound: r.clone(), lo: 0 });
                inner.define(&f.j, Kind::Index { bound: c.clone(), lo: 0 });
                check_expr(&inner, &f.value)?;
            }
            env.define(name, Kind::Rows { rows: r, cols: c, mutable: true });
        }
        Stmt::StoreRow { buf, row, col, value, .. } => {
            check_expr(env, value)?;
            let Some(Kind::Rows { rows, cols, mutable: true }) = env.lookup(buf) else {
                return Err(format!("`{buf}` is not a mutable buffer of rows"));
            };
            if crate::gen::reads_len(row) || !env.index_ok(buf, rows, row) || !env.column_ok(cols, col) {
                return Err(format!("`{buf}[{row:?}][{col:?}] = …` is out of bounds or borrows twice"));
            }
        }
        Stmt::RowRef { name, of, index } => {
            let Some(Kind::Rows { rows, cols, .. }) = env.lookup(of).cloned() else {
                return Err(format!("`{of}` is not a buffer of rows"));
            };
            if !env.index_ok(of, &rows, index) {
                return Err(format!("row {index:?} of `{of}` may be out of bounds"));
            }
            env.freeze(of);
            env.define(name, Kind::Slice { len: cols, mutable: false, param: false, vec: false, typed: true });
        }
        Stmt::Loop { name, counter, body, until, value, .. } => {
            env.define(counter, Kind::Counter);
            let saved = (env.innermost, env.loop_depth);
            env.innermost = LoopKind::Valued;
            env.loop_depth += 1;
            env.push();
            let r = (|| {
                check_block(env, body)?;
                if let Some(c) = until {
                    check_cond(env, c)?;
                }
                check_expr(env, value)
            })();
            env.pop();
            (env.innermost, env.loop_depth) = saved;
            r?;
            env.define(name, Kind::Scalar { mutable: false });
        }
        Stmt::Break(c, Some(label)) | Stmt::Continue(c, Some(label)) => {
            check_cond(env, c)?;
            if !env.labels.contains(label) {
                return Err(format!("no enclosing loop labelled `'{label}`"));
            }
        }
        Stmt::Break(c, None) | Stmt::Continue(c, None) => {
            check_cond(env, c)?;
            match env.innermost {
                LoopKind::None => return Err("`break`/`continue` outside a loop".into()),
                // `break;` has no value; `continue` would skip the check that ends the
                // loop (it may never end).
                LoopKind::Valued => return Err("`break;`/`continue` directly in a loop with a value".into()),
                LoopKind::Plain => {}
            }
        }
        Stmt::Return(c, e) => {
            check_cond(env, c)?;
            check_expr(env, e)?;
        }
        Stmt::Nested { pat, value, callee, args } => {
            for a in args {
                check_arg(env, a)?;
            }
            let grads = env.gradient_kinds(callee, args).ok_or_else(|| format!("bad nested call of `{callee}`"))?;
            let kind = nested_result(grads, *value);
            if !bind_pat(env, pat, &kind) {
                return Err(format!("pattern {pat:?} does not fit {kind:?}"));
            }
        }
        Stmt::Match { on, arms, default } => {
            if !matches!(env.lookup(on), Some(Kind::Index { .. } | Kind::Counter)) {
                return Err(format!("`{on}` is not an integer"));
            }
            for (_, b) in arms {
                in_block(env, b, None, |_| {})?;
            }
            in_block(env, default, None, |_| {})?;
        }
        Stmt::Closure { name, param, body } => {
            check_expr(&env.closure_body(param), body)?;
            env.define(name, Kind::Closure);
        }
        Stmt::Unpack { pat, from } => {
            let kind = env.lookup(from).cloned().ok_or_else(|| format!("`{from}` is not defined"))?;
            if !env.unpack_ok(pat, from) || !bind_pat(env, pat, &kind) {
                return Err(format!("cannot unpack `{from}` (not a tuple, or a vector in it moved twice)"));
            }
            env.replace(from, after_move(pat, &kind));
        }
    }
    Ok(())
}

/// The names a loop head binds in the body.
pub fn head_bindings(env: &Env, head: &ForHead) -> Result<Vec<(String, Kind)>, String> {
    match head {
        ForHead::Range { var, lo, hi, inclusive, adapters } => {
            let bound = len_expr(env, hi)?;
            if adapters.iter().any(|a| matches!(a, Adapter::StepBy(0))) {
                return Err("step_by(0)".into());
            }
            let bound = if *inclusive {
                match bound {
                    Len::C(n) => Len::C(n + 1),
                    Len::L(k) if k >= 1 => Len::L(k - 1),
                    _ => Len::Opaque(0),
                }
            } else {
                bound
            };
            Ok(vec![(var.clone(), Kind::Index { bound, lo: *lo })])
        }
        ForHead::Iter { elem, over, index, zip, .. } => {
            let len = slice_len(env, over)?;
            let mut out = vec![(elem.clone(), Kind::Scalar { mutable: false })];
            if let Some((other, e2)) = zip {
                slice_len(env, other)?;
                out.push((e2.clone(), Kind::Scalar { mutable: false }));
            }
            // A buffer the loop iterates is borrowed for the whole loop: read-only in
            // the body (modelled by shadowing it immutable there).
            for name in std::iter::once(over).chain(zip.as_ref().map(|(o, _)| o)) {
                if let Some(Kind::Slice { len, mutable: true, param, vec, typed }) = env.lookup(name) {
                    let k = Kind::Slice { len: len.clone(), mutable: false, param: *param, vec: *vec, typed: *typed };
                    out.push((name.clone(), k));
                }
            }
            if let Some(i) = index {
                out.push((i.clone(), Kind::Index { bound: len, lo: 0 }));
            }
            Ok(out)
        }
        ForHead::Rows { row, over, index, .. } => {
            let Some(Kind::Rows { rows, cols, mutable }) = env.lookup(over).cloned() else {
                return Err(format!("`{over}` is not a buffer of rows"));
            };
            let mut out = Vec::new();
            if mutable {
                out.push((over.clone(), Kind::Rows { rows: rows.clone(), cols: cols.clone(), mutable: false }));
            }
            out.push((row.clone(), Kind::Slice { len: cols, mutable: false, param: false, vec: false, typed: true }));
            if let Some(i) = index {
                out.push((i.clone(), Kind::Index { bound: rows, lo: 0 }));
            }
            Ok(out)
        }
    }
}

pub fn len_expr(env: &Env, l: &LenExpr) -> Result<Len, String> {
    match l {
        LenExpr::Const(n) => Ok(Len::C(*n)),
        LenExpr::LenOf(of, k) => {
            let len = slice_len(env, of)?;
            if *k > len.min() {
                return Err(format!("`{of}.len() - {k}` may underflow"));
            }
            Ok(len.minus(*k))
        }
    }
}

pub fn slice_len(env: &Env, name: &str) -> Result<Len, String> {
    match env.lookup(name) {
        Some(Kind::Slice { len, .. }) => Ok(len.clone()),
        _ => Err(format!("`{name}` is not a slice")),
    }
}

pub fn check_cond(env: &Env, c: &Cond) -> Result<(), String> {
    check_expr(env, &c.lhs)?;
    check_expr(env, &c.rhs)
}

pub fn check_arg(env: &Env, a: &Arg) -> Result<(), String> {
    match a {
        Arg::Scalar(e) => check_expr(env, e),
        _ => env.arg_len(a).map(|_| ()).ok_or_else(|| format!("bad slice argument {a:?}")),
    }
}

pub fn check_expr(env: &Env, e: &Expr) -> Result<(), String> {
    match e {
        Expr::Lit(_) => Ok(()),
        Expr::Var(n) => match env.lookup(n) {
            Some(Kind::Scalar { .. }) => Ok(()),
            _ => Err(format!("`{n}` is not a scalar")),
        },
        Expr::Elem(n, idx) => {
            let len = slice_len(env, n)?;
            if env.index_ok(n, &len, idx) {
                Ok(())
            } else {
                Err(format!("index {idx:?} of `{n}` may be out of bounds"))
            }
        }
        Expr::Elem2(n, i, j) => match env.lookup(n) {
            Some(Kind::Rows { rows, cols, .. }) if env.index_ok(n, rows, i) && env.column_ok(cols, j) => Ok(()),
            _ => Err(format!("`{n}[{i:?}][{j:?}]` is not an element of a buffer of rows in bounds")),
        },
        Expr::Bin(_, a, b) | Expr::Binary(_, a, b) => {
            check_expr(env, a)?;
            check_expr(env, b)
        }
        Expr::Neg(a) | Expr::Unary(_, a) | Expr::Powi(a, _) | Expr::Clamp(a, ..) | Expr::Detach(a) => {
            check_expr(env, a)
        }
        Expr::MapSum { over, elem, zip, body } => {
            slice_len(env, over)?;
            let mut names = vec![elem.clone()];
            if let Some((other, elem2)) = zip {
                slice_len(env, other)?;
                names.push(elem2.clone());
            }
            check_expr(&env.with_scalars(&names), body)
        }
        Expr::Fold { over, init, acc, elem, body } => {
            slice_len(env, over)?;
            check_expr(env, init)?;
            check_expr(&env.with_scalars(&[acc.clone(), elem.clone()]), body)
        }
        Expr::Apply(f, a) => match env.lookup(f) {
            Some(Kind::Closure) => check_expr(env, a),
            _ => Err(format!("`{f}` is not a closure")),
        },
        Expr::MulAdd(a, b, c) => {
            check_expr(env, a)?;
            check_expr(env, b)?;
            check_expr(env, c)
        }
        Expr::Call(name, args) => {
            let sig = env.sig(name).ok_or_else(|| format!("`{name}` is not callable here"))?;
            if sig.params.len() != args.len() {
                return Err(format!("`{name}` takes {} arguments", sig.params.len()));
            }
            for (p, a) in sig.params.iter().zip(args) {
                match (p, a) {
                    (PTy::Scalar, Arg::Scalar(e)) => check_expr(env, e)?,
                    (PTy::Slice, Arg::Slice(_) | Arg::Sub { .. }) => check_arg(env, a)?,
                    _ => return Err(format!("argument {a:?} of `{name}` has the wrong type")),
                }
            }
            Ok(())
        }
        Expr::Sum(n) | Expr::LenF(n) => slice_len(env, n).map(|_| ()),
        Expr::IntF(n) => match env.lookup(n) {
            Some(Kind::Index { .. } | Kind::Counter) => Ok(()),
            _ => Err(format!("`{n}` is not an integer")),
        },
        Expr::Field(n, i) => match env.lookup(n) {
            Some(Kind::Tuple(items)) if matches!(items.get(*i), Some(Kind::Scalar { .. })) => Ok(()),
            _ => Err(format!("`{n}.{i}` is not a scalar field")),
        },
        Expr::IfExpr(c, a, b) => {
            check_cond(env, c)?;
            check_expr(env, a)?;
            check_expr(env, b)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lit() -> Expr {
        Expr::Lit(1.0)
    }

    fn cond() -> Cond {
        Cond { lhs: lit(), op: Cmp::Lt, rhs: lit() }
    }

    /// The entry function `f(x: &[f64])` with `body`.
    fn entry(body: Block) -> Result<(), String> {
        let f = Func { name: "f".into(), params: vec![Param { name: "x".into(), ty: PTy::Slice }], body, ret: lit() };
        check(&Program { helpers: Vec::new(), entry: f, second_order: false })
    }

    fn copy(name: &str) -> Stmt {
        Stmt::Buffer { name: name.into(), mutable: true, init: BufInit::Copy("x".into()) }
    }

    fn range(var: &str, body: Block, label: Option<&str>) -> Stmt {
        let head =
            ForHead::Range { var: var.into(), lo: 0, hi: LenExpr::Const(2), inclusive: false, adapters: Vec::new() };
        Stmt::For { head, body, label: label.map(str::to_string) }
    }

    fn read(buf: &str, i: Idx) -> Stmt {
        Stmt::Let { name: "s".into(), mutable: false, value: Expr::Elem(buf.into(), i) }
    }

    #[test]
    fn labelled_exits_need_an_enclosing_label() {
        let exit = Stmt::Continue(cond(), Some("outer".into()));
        assert!(entry(vec![range("i", vec![range("j", vec![exit.clone()], None)], Some("outer"))]).is_ok());
        assert!(entry(vec![range("i", vec![range("j", vec![exit.clone()], None)], None)]).is_err());
        assert!(entry(vec![range("i", vec![], Some("outer")), exit]).is_err());
    }

    #[test]
    fn pops_keep_buffers_in_bounds() {
        let pop = Stmt::Pop { name: "v".into(), buf: "b".into(), expect: false };
        // x has at least 3 elements: after one pop, b[1] is still there, b[2] may not be.
        assert!(entry(vec![copy("b"), pop.clone(), read("b", Idx::Const(1))]).is_ok());
        assert!(entry(vec![copy("b"), pop.clone(), read("b", Idx::Const(2))]).is_err());
        // Not in a loop the buffer lives outside of (the next iteration would pop again).
        assert!(entry(vec![copy("b"), range("i", vec![pop.clone()], None)]).is_err());
        assert!(entry(vec![range("i", vec![copy("b"), pop.clone()], None)]).is_ok());
        // Never down to an empty buffer.
        assert!(entry(vec![copy("b"), pop.clone(), pop.clone(), pop]).is_err());
    }

    #[test]
    fn a_drained_buffer_is_gone() {
        let drain = Stmt::Drain {
            buf: "b".into(),
            var: "v".into(),
            counter: "k".into(),
            body: vec![Stmt::Let { name: "t".into(), mutable: false, value: Expr::Var("v".into()) }],
            push: Some(Push { limit: 3, cond: None, value: Expr::Var("v".into()) }),
            label: None,
        };
        assert!(entry(vec![copy("b"), drain.clone()]).is_ok());
        assert!(entry(vec![copy("b"), drain.clone(), read("b", Idx::Const(0))]).is_err());
        let Stmt::Drain { buf, var, counter, push, label, .. } = drain.clone() else { unreachable!() };
        let reads_itself = Stmt::Drain { buf, var, counter, body: vec![read("b", Idx::Const(0))], push, label };
        assert!(entry(vec![copy("b"), reads_itself]).is_err());
        // Not an argument, and not from inside a loop around the buffer.
        let Stmt::Drain { var, counter, body, push, label, .. } = drain.clone() else { unreachable!() };
        assert!(entry(vec![Stmt::Drain { buf: "x".into(), var, counter, body, push, label }]).is_err());
        assert!(entry(vec![copy("b"), range("i", vec![drain], None)]).is_err());
    }

    #[test]
    fn a_borrowed_buffer_is_read_only_while_the_borrow_lives() {
        let part = Stmt::SubSlice { name: "p".into(), of: "b".into(), lo: SubLo::Const(1), hi: SubHi::End };
        let write = Stmt::Store { buf: "b".into(), index: Idx::Const(0), op: AOp::Set, value: lit() };
        let sort = Stmt::Sort { buf: "b".into(), how: SortHow::Ascending };
        assert!(entry(vec![copy("b"), part.clone(), read("p", Idx::Const(1))]).is_ok());
        assert!(entry(vec![copy("b"), part.clone(), read("p", Idx::Const(2))]).is_err());
        assert!(entry(vec![copy("b"), part.clone(), write.clone()]).is_err());
        assert!(entry(vec![copy("b"), part.clone(), sort.clone()]).is_err());
        // The borrow ends with its block.
        let borrowed = Stmt::If { cond: cond(), then: vec![part], els: None };
        assert!(entry(vec![copy("b"), borrowed, write, sort]).is_ok());
    }

    #[test]
    fn rows_are_indexed_in_bounds() {
        let mat =
            Stmt::Rows { name: "m".into(), rows: LenExpr::Const(2), cols: LenExpr::LenOf("x".into(), 0), fill: None };
        let store = |row: Idx, col: Idx| Stmt::StoreRow { buf: "m".into(), row, col, op: AOp::Add, value: lit() };
        assert!(entry(vec![mat.clone(), store(Idx::Const(1), Idx::Const(2))]).is_ok());
        assert!(entry(vec![mat.clone(), store(Idx::Const(2), Idx::Const(0))]).is_err());
        assert!(entry(vec![mat.clone(), store(Idx::Last("m".into()), Idx::Const(0))]).is_err());
        let row = Stmt::RowRef { name: "r".into(), of: "m".into(), index: Idx::Last("m".into()) };
        assert!(entry(vec![mat.clone(), row.clone(), read("r", Idx::Const(2))]).is_ok());
        assert!(entry(vec![mat, row, store(Idx::Const(0), Idx::Const(0))]).is_err());
    }

    /// `let (v, (g1, g2)) = gt;` moves both vectors out: `gt.0` may still be read, but
    /// `gt.1` may not be bound again (E0382, fuzz campaign 0x2110, program 263).
    #[test]
    fn a_partly_moved_tuple_is_not_bound_whole() {
        let slice = |n: &str| Param { name: n.into(), ty: PTy::Slice };
        let h = Func { name: "h0".into(), params: vec![slice("u"), slice("v")], body: Vec::new(), ret: lit() };
        let name = |n: &str| Pat::Name(n.into());
        let body = |last: Pat| {
            vec![
                Stmt::Nested {
                    pat: name("gt"),
                    value: true,
                    callee: "h0".into(),
                    args: vec![Arg::Slice("x".into()), Arg::Slice("x".into())],
                },
                Stmt::Unpack {
                    pat: Pat::Tuple(vec![name("v"), Pat::Tuple(vec![name("g1"), name("g2")])]),
                    from: "gt".into(),
                },
                Stmt::Unpack { pat: last, from: "gt".into() },
            ]
        };
        let program = |last: Pat| {
            let f =
                Func { name: "f".into(), params: vec![slice("x")], body: body(last), ret: Expr::Field("gt".into(), 0) };
            check(&Program { helpers: vec![h.clone()], entry: f, second_order: false })
        };
        assert!(program(Pat::Tuple(vec![name("w"), Pat::Wild])).is_ok());
        assert!(program(Pat::Tuple(vec![name("w"), name("t")])).is_err());
    }
}
