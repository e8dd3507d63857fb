//! The programs the fuzzer writes: a small AST over the subset of Rust that
//! `#[differentiable]` documents as supported, printed as Rust by [`crate::print`].
//!
//! Keeping programs as data (not text) is what makes failures shrinkable: the shrinker
//! ([`crate::shrink`]) removes statements and simplifies expressions, and the checker
//! ([`crate::scope`]) keeps only candidates that are still valid Rust whose indexing
//! cannot go out of bounds.

/// A program: helper functions, then the entry function `f` whose gradient is checked.
#[derive(Clone, Debug, PartialEq)]
pub struct Program {
    pub helpers: Vec<Func>,
    pub entry: Func,
    /// Whether the harness also checks the second derivative (`grad!` of a function
    /// whose body takes `grad!(f)`).
    pub second_order: bool,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Func {
    pub name: String,
    pub params: Vec<Param>,
    pub body: Block,
    pub ret: Expr,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Param {
    pub name: String,
    pub ty: PTy,
}

/// A parameter's type: `f64`, `&[f64]` or `&[Vec<f64>]` (rows; only the entry function
/// has them, square: as many rows as its slices have elements).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PTy {
    Scalar,
    Slice,
    Rows,
}

pub type Block = Vec<Stmt>;

#[derive(Clone, Debug, PartialEq)]
pub enum Stmt {
    /// `let [mut] name = value;`
    Let {
        name: String,
        mutable: bool,
        value: Expr,
    },
    /// `let name: f64 = of.iter().sum();` (or `.product()`).
    LetFold {
        name: String,
        of: String,
        product: bool,
    },
    /// `name = value;`, `name += value;`, …
    Assign {
        name: String,
        op: AOp,
        value: Expr,
    },
    /// A local buffer.
    Buffer {
        name: String,
        mutable: bool,
        init: BufInit,
    },
    /// `buf[index] = value;`, `buf[index] += value;`, …
    Store {
        buf: String,
        index: Idx,
        op: AOp,
        value: Expr,
    },
    If {
        cond: Cond,
        then: Block,
        els: Option<Block>,
    },
    /// `['label:] for head { body }`
    For {
        head: ForHead,
        body: Block,
        label: Option<String>,
    },
    /// `let mut counter = 0; ['label:] while counter < limit [&& extra] { counter += 1;
    /// body }`
    While {
        counter: String,
        limit: usize,
        extra: Option<Cond>,
        body: Block,
        label: Option<String>,
    },
    /// `let mut counter = 0; ['label:] loop { if counter >= limit { break; } counter += 1;
    /// body }`: a `loop` without a value (the exit first, so `continue` cannot skip it).
    PlainLoop {
        counter: String,
        limit: usize,
        body: Block,
        label: Option<String>,
    },
    /// `[let mut counter = 0;] ['label:] while let Some(var) = buf.pop() { [counter += 1;]
    /// body [if counter < limit [&& cond] { buf.push(value); }] }`: drains a local `Vec`
    /// (the counter, present when it pushes, bounds the extra work).
    Drain {
        buf: String,
        var: String,
        counter: String,
        body: Block,
        push: Option<Push>,
        label: Option<String>,
    },
    /// `let name = buf.pop().unwrap();` (or `.expect("…")`) on a `Vec` known non-empty.
    Pop {
        name: String,
        buf: String,
        expect: bool,
    },
    /// `buf.sort_by(…)` / `buf.sort_unstable_by(…)` with one of the usual comparators.
    Sort {
        buf: String,
        how: SortHow,
    },
    /// `buf.swap(i, j);`
    Swap {
        buf: String,
        i: Idx,
        j: Idx,
    },
    /// `let name = &of[lo..hi];`
    SubSlice {
        name: String,
        of: String,
        lo: SubLo,
        hi: SubHi,
    },
    /// `let mut name = vec![vec![0.0; cols]; rows];`, then maybe filled:
    /// `for i in 0..rows { for j in 0..cols { name[i][j] = value; } }`.
    Rows {
        name: String,
        rows: LenExpr,
        cols: LenExpr,
        fill: Option<Fill>,
    },
    /// `buf[row][col] = value;`, `+=`, …
    StoreRow {
        buf: String,
        row: Idx,
        col: Idx,
        op: AOp,
        value: Expr,
    },
    /// `let name = &of[index];`: one row of a buffer of rows.
    RowRef {
        name: String,
        of: String,
        index: Idx,
    },
    /// `let mut counter = 0; let name = loop { counter += 1; body; if counter >= limit
    /// [|| until] { break value; } };`
    Loop {
        name: String,
        counter: String,
        limit: usize,
        body: Block,
        until: Option<Cond>,
        value: Expr,
    },
    /// `if cond { break; }`, or `break 'label;` out of an enclosing labelled loop.
    Break(Cond, Option<String>),
    /// `if cond { continue; }`, or `continue 'label;`.
    Continue(Cond, Option<String>),
    /// `if cond { return value; }`
    Return(Cond, Expr),
    /// `let pat = grad!(callee)(args);` or `value_and_grad!`.
    Nested {
        pat: Pat,
        value: bool,
        callee: String,
        args: Vec<Arg>,
    },
    /// `let pat = from;` (a tuple bound to a name first).
    Unpack {
        pat: Pat,
        from: String,
    },
    /// `let name = |param: f64| body;`
    Closure {
        name: String,
        param: String,
        body: Expr,
    },
    /// `match on { arms…, _ => default }` on an integer variable.
    Match {
        on: String,
        arms: Vec<(MatchPat, Block)>,
        default: Block,
    },
}

/// The bounded extra work a [`Stmt::Drain`] pushes back on its buffer.
#[derive(Clone, Debug, PartialEq)]
pub struct Push {
    pub limit: usize,
    pub cond: Option<Cond>,
    pub value: Expr,
}

/// The loops filling a new buffer of rows, element by element.
#[derive(Clone, Debug, PartialEq)]
pub struct Fill {
    pub i: String,
    pub j: String,
    pub value: Expr,
}

/// The comparator of a sort.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SortHow {
    /// `sort_by(|a, b| a.partial_cmp(b).unwrap())`
    Ascending,
    /// `sort_by(|a, b| b.partial_cmp(a).unwrap())`
    Descending,
    /// `sort_unstable_by(|a, b| a.total_cmp(b))` (needs the element type known to rustc).
    UnstableTotal,
    /// `sort_by(f64::total_cmp)`
    TotalPath,
}

/// The start of a named sub-slice.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SubLo {
    Const(usize),
    /// `of.len() / 2`
    Half,
}

/// The end of a named sub-slice.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SubHi {
    /// `lo..`
    End,
    /// `lo..of.len() - k`
    Cut(usize),
    /// `lo..b`
    Const(usize),
    /// `..of.len() / 2`
    Half,
}

/// The pattern of a `match` arm on an integer.
#[derive(Clone, Debug, PartialEq)]
pub enum MatchPat {
    Lit(usize),
    /// `a | b`
    Or(Vec<usize>),
    /// `lo..=hi`
    Range(usize, usize),
}

/// A `let` pattern of names: `g`, `_`, `(v, (g1, _))`.
#[derive(Clone, Debug, PartialEq)]
pub enum Pat {
    Name(String),
    Wild,
    Tuple(Vec<Pat>),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AOp {
    Set,
    Add,
    Sub,
    Mul,
}

#[derive(Clone, Debug, PartialEq)]
pub enum BufInit {
    /// `vec![0.0; n]`
    Zeros(LenExpr),
    /// `[0.0; n]`
    ArrayZeros(usize),
    /// `[a, b, …]`
    Array(Vec<Expr>),
    /// `vec![a, b, …]`
    VecList(Vec<Expr>),
    /// `of.to_vec()`
    Copy(String),
    /// `Vec::with_capacity(n)` then one `push` per value.
    Pushed(Vec<Expr>),
    /// `Vec::new()` then `for var in 0..len { push(value) }`.
    PushLoop { var: String, len: LenExpr, value: Box<Expr> },
}

/// A length: a constant or `of.len()` (minus a constant).
#[derive(Clone, Debug, PartialEq)]
pub enum LenExpr {
    Const(usize),
    LenOf(String, usize),
}

/// An index into a slice or buffer.
#[derive(Clone, Debug, PartialEq)]
pub enum Idx {
    Const(usize),
    /// A loop index.
    Var(String),
    /// `var - 1`.
    Prev(String),
    /// `var + 1`.
    Next(String),
    /// `of.len() - 1`.
    Last(String),
    /// `(var + offset) % of.len()`.
    Wrap {
        var: String,
        offset: usize,
        of: String,
    },
}

#[derive(Clone, Debug, PartialEq)]
pub enum Expr {
    Lit(f64),
    Var(String),
    /// `name[index]`
    Elem(String, Idx),
    /// `name[row][col]` of a buffer of rows.
    Elem2(String, Idx, Idx),
    Bin(BOp, Box<Expr>, Box<Expr>),
    Neg(Box<Expr>),
    /// `arg.method()`
    Unary(Un, Box<Expr>),
    /// `a.method(b)`
    Binary(Bm, Box<Expr>, Box<Expr>),
    Powi(Box<Expr>, i32),
    MulAdd(Box<Expr>, Box<Expr>, Box<Expr>),
    Clamp(Box<Expr>, f64, f64),
    /// A call of a helper.
    Call(String, Vec<Arg>),
    /// `of.iter().sum::<f64>()`
    Sum(String),
    /// `(of.len() as f64)`
    LenF(String),
    /// `(var as f64)` of an integer variable.
    IntF(String),
    /// `name.index` of a tuple.
    Field(String, usize),
    /// `if cond { a } else { b }`
    IfExpr(Box<Cond>, Box<Expr>, Box<Expr>),
    /// `detach(a)`
    Detach(Box<Expr>),
    /// `over.iter().map(|&elem| body).sum::<f64>()`, or over
    /// `over.iter().zip(other.iter())` with `|(&elem, &elem2)|`.
    MapSum {
        over: String,
        elem: String,
        zip: Option<(String, String)>,
        body: Box<Expr>,
    },
    /// `over.iter().fold(init, |acc: f64, &elem| body)`.
    Fold {
        over: String,
        init: Box<Expr>,
        acc: String,
        elem: String,
        body: Box<Expr>,
    },
    /// `name(arg)` of a closure bound by `let`.
    Apply(String, Box<Expr>),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BOp {
    Add,
    Sub,
    Mul,
    Div,
    Rem,
}

/// Unary float methods.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Un {
    Sqrt,
    Cbrt,
    Exp,
    Exp2,
    ExpM1,
    Ln,
    Ln1p,
    Log10,
    Log2,
    Sin,
    Cos,
    Tan,
    Asin,
    Acos,
    Atan,
    Sinh,
    Cosh,
    Tanh,
    Asinh,
    Acosh,
    Atanh,
    Abs,
    Signum,
    Recip,
    Floor,
    Ceil,
    Round,
    Trunc,
    Fract,
    ToDegrees,
    ToRadians,
}

impl Un {
    pub const ALL: [Un; 31] = [
        Un::Sqrt,
        Un::Cbrt,
        Un::Exp,
        Un::Exp2,
        Un::ExpM1,
        Un::Ln,
        Un::Ln1p,
        Un::Log10,
        Un::Log2,
        Un::Sin,
        Un::Cos,
        Un::Tan,
        Un::Asin,
        Un::Acos,
        Un::Atan,
        Un::Sinh,
        Un::Cosh,
        Un::Tanh,
        Un::Asinh,
        Un::Acosh,
        Un::Atanh,
        Un::Abs,
        Un::Signum,
        Un::Recip,
        Un::Floor,
        Un::Ceil,
        Un::Round,
        Un::Trunc,
        Un::Fract,
        Un::ToDegrees,
        Un::ToRadians,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Un::Sqrt => "sqrt",
            Un::Cbrt => "cbrt",
            Un::Exp => "exp",
            Un::Exp2 => "exp2",
            Un::ExpM1 => "exp_m1",
            Un::Ln => "ln",
            Un::Ln1p => "ln_1p",
            Un::Log10 => "log10",
            Un::Log2 => "log2",
            Un::Sin => "sin",
            Un::Cos => "cos",
            Un::Tan => "tan",
            Un::Asin => "asin",
            Un::Acos => "acos",
            Un::Atan => "atan",
            Un::Sinh => "sinh",
            Un::Cosh => "cosh",
            Un::Tanh => "tanh",
            Un::Asinh => "asinh",
            Un::Acosh => "acosh",
            Un::Atanh => "atanh",
            Un::Abs => "abs",
            Un::Signum => "signum",
            Un::Recip => "recip",
            Un::Floor => "floor",
            Un::Ceil => "ceil",
            Un::Round => "round",
            Un::Trunc => "trunc",
            Un::Fract => "fract",
            Un::ToDegrees => "to_degrees",
            Un::ToRadians => "to_radians",
        }
    }
}

/// Float methods of two operands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Bm {
    Max,
    Min,
    Atan2,
    Hypot,
    Powf,
    Log,
}

impl Bm {
    pub fn name(self) -> &'static str {
        match self {
            Bm::Max => "max",
            Bm::Min => "min",
            Bm::Atan2 => "atan2",
            Bm::Hypot => "hypot",
            Bm::Powf => "powf",
            Bm::Log => "log",
        }
    }
}

/// An argument of a helper call.
#[derive(Clone, Debug, PartialEq)]
pub enum Arg {
    Scalar(Expr),
    /// `&name` (or `name` for a slice parameter).
    Slice(String),
    /// `&of[lo..]`, `&of[lo..of.len() - cut]`.
    Sub {
        of: String,
        lo: usize,
        cut: usize,
    },
}

#[derive(Clone, Debug, PartialEq)]
pub struct Cond {
    pub lhs: Expr,
    pub op: Cmp,
    pub rhs: Expr,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Cmp {
    Lt,
    Gt,
    Le,
    Ge,
}

#[derive(Clone, Debug, PartialEq)]
pub enum ForHead {
    /// `for var in (lo..hi)` with `..=`, `.rev()`, `.step_by(k)` in the given order.
    Range { var: String, lo: usize, hi: LenExpr, inclusive: bool, adapters: Vec<Adapter> },
    /// `for elem in over.iter()` / `&over` / `.iter().copied()`, with `.enumerate()` (an
    /// index name), `.zip(other.iter())` (a second element name), `.rev()`.
    Iter {
        elem: String,
        over: String,
        style: IterStyle,
        index: Option<String>,
        zip: Option<(String, String)>,
        rev: bool,
    },
    /// `for row in &over` / `over.iter()`, with `.enumerate()` (an index name): the rows
    /// of a buffer of rows.
    Rows { row: String, over: String, index: Option<String>, iter: bool },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Adapter {
    Rev,
    StepBy(usize),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IterStyle {
    /// `over.iter()`, elements bound with `&elem`.
    Iter,
    /// `&over`, elements bound with `&elem`.
    Borrow,
    /// `over.iter().copied()`.
    Copied,
}

impl Program {
    /// Every function, helpers first.
    pub fn funcs(&self) -> impl Iterator<Item = &Func> {
        self.helpers.iter().chain(std::iter::once(&self.entry))
    }

    /// A size measure for shrinking: the number of AST nodes.
    pub fn size(&self) -> usize {
        self.funcs().map(|f| f.params.len() + block_size(&f.body) + expr_size(&f.ret)).sum::<usize>()
            + usize::from(self.second_order)
    }

    /// The helpers `f` takes `grad!`/`value_and_grad!` of.
    pub fn nested_callees(&self) -> Vec<String> {
        let mut out = Vec::new();
        for f in self.funcs() {
            walk_block(&f.body, &mut |s| {
                if let Stmt::Nested { callee, .. } = s {
                    if !out.contains(callee) {
                        out.push(callee.clone());
                    }
                }
            });
        }
        out
    }
}

/// Visit every statement, outermost first.
pub fn walk_block(b: &Block, f: &mut impl FnMut(&Stmt)) {
    for s in b {
        f(s);
        for inner in sub_blocks(s) {
            walk_block(inner, f);
        }
    }
}

pub fn sub_blocks(s: &Stmt) -> Vec<&Block> {
    match s {
        Stmt::If { then, els, .. } => {
            let mut v = vec![then];
            v.extend(els.iter());
            v
        }
        Stmt::For { body, .. }
        | Stmt::While { body, .. }
        | Stmt::Loop { body, .. }
        | Stmt::PlainLoop { body, .. }
        | Stmt::Drain { body, .. } => vec![body],
        Stmt::Match { arms, default, .. } => {
            let mut v: Vec<&Block> = arms.iter().map(|(_, b)| b).collect();
            v.push(default);
            v
        }
        _ => Vec::new(),
    }
}

pub fn block_size(b: &Block) -> usize {
    b.iter().map(stmt_size).sum()
}

pub fn stmt_size(s: &Stmt) -> usize {
    1 + match s {
        Stmt::Let { value, .. } | Stmt::Assign { value, .. } | Stmt::Closure { body: value, .. } => expr_size(value),
        Stmt::LetFold { .. } | Stmt::Unpack { .. } | Stmt::Pop { .. } => 0,
        Stmt::Rows { fill, .. } => fill.as_ref().map_or(0, |f| 2 + expr_size(&f.value)),
        Stmt::Sort { how, .. } => usize::from(*how != SortHow::Ascending),
        Stmt::Swap { i, j, .. } => 1 + idx_size(i) + idx_size(j),
        Stmt::RowRef { index, .. } => 1 + idx_size(index),
        Stmt::SubSlice { lo, hi, .. } => usize::from(*lo != SubLo::Const(0)) + usize::from(*hi != SubHi::End),
        Stmt::StoreRow { row, col, value, .. } => 2 + idx_size(row) + idx_size(col) + expr_size(value),
        Stmt::Buffer { init, .. } => match init {
            BufInit::Array(v) | BufInit::VecList(v) | BufInit::Pushed(v) => v.iter().map(expr_size).sum(),
            BufInit::PushLoop { value, .. } => 1 + expr_size(value),
            _ => 0,
        },
        Stmt::Store { index, value, .. } => 1 + idx_size(index) + expr_size(value),
        Stmt::If { cond, then, els } => cond_size(cond) + block_size(then) + els.as_ref().map_or(0, block_size),
        Stmt::For { head, body, label } => {
            let h = match head {
                ForHead::Range { adapters, .. } => adapters.len(),
                ForHead::Iter { index, zip, rev, .. } => {
                    usize::from(index.is_some()) + usize::from(zip.is_some()) + usize::from(*rev)
                }
                ForHead::Rows { index, .. } => usize::from(index.is_some()),
            };
            1 + h + block_size(body) + usize::from(label.is_some())
        }
        Stmt::While { extra, body, label, .. } => {
            1 + extra.as_ref().map_or(0, cond_size) + block_size(body) + usize::from(label.is_some())
        }
        Stmt::PlainLoop { body, label, .. } => 1 + block_size(body) + usize::from(label.is_some()),
        Stmt::Drain { body, push, label, .. } => {
            1 + block_size(body)
                + push.as_ref().map_or(0, |p| 1 + p.cond.as_ref().map_or(0, cond_size) + expr_size(&p.value))
                + usize::from(label.is_some())
        }
        Stmt::Loop { body, until, value, .. } => {
            1 + block_size(body) + until.as_ref().map_or(0, cond_size) + expr_size(value)
        }
        Stmt::Break(c, label) | Stmt::Continue(c, label) => cond_size(c) + usize::from(label.is_some()),
        Stmt::Return(c, e) => cond_size(c) + expr_size(e),
        Stmt::Nested { args, .. } => args.iter().map(arg_size).sum(),
        Stmt::Match { arms, default, .. } => {
            arms.iter().map(|(_, b)| 1 + block_size(b)).sum::<usize>() + block_size(default)
        }
    }
}

/// 0 for a constant index (what the shrinker reduces indices to), 1 otherwise.
pub fn idx_size(i: &Idx) -> usize {
    usize::from(!matches!(i, Idx::Const(_)))
}

pub fn cond_size(c: &Cond) -> usize {
    1 + expr_size(&c.lhs) + expr_size(&c.rhs)
}

pub fn arg_size(a: &Arg) -> usize {
    match a {
        Arg::Scalar(e) => expr_size(e),
        Arg::Slice(_) => 1,
        Arg::Sub { .. } => 2,
    }
}

pub fn expr_size(e: &Expr) -> usize {
    1 + match e {
        Expr::Lit(_) | Expr::Var(_) | Expr::Sum(_) | Expr::LenF(_) | Expr::IntF(_) | Expr::Field(..) => 0,
        Expr::Elem(_, i) => idx_size(i),
        Expr::Elem2(_, i, j) => 1 + idx_size(i) + idx_size(j),
        Expr::Bin(_, a, b) | Expr::Binary(_, a, b) => expr_size(a) + expr_size(b),
        Expr::Neg(a) | Expr::Unary(_, a) | Expr::Powi(a, _) | Expr::Clamp(a, ..) | Expr::Detach(a) => expr_size(a),
        Expr::MulAdd(a, b, c) => expr_size(a) + expr_size(b) + expr_size(c),
        Expr::Call(_, args) => args.iter().map(arg_size).sum(),
        Expr::MapSum { body, .. } | Expr::Apply(_, body) => 1 + expr_size(body),
        Expr::Fold { init, body, .. } => 1 + expr_size(init) + expr_size(body),
        Expr::IfExpr(c, a, b) => cond_size(c) + expr_size(a) + expr_size(b),
    }
}

/// Whether an expression reads no variable (its float type is then unknown to rustc).
pub fn is_constant(e: &Expr) -> bool {
    match e {
        Expr::Lit(_) => true,
        Expr::Bin(_, a, b) => is_constant(a) && is_constant(b),
        Expr::Neg(a) => is_constant(a),
        Expr::IfExpr(c, a, b) => is_constant(&c.lhs) && is_constant(&c.rhs) && is_constant(a) && is_constant(b),
        // A method call's receiver is printed typed, so its result has a type.
        _ => false,
    }
}
