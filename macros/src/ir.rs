//! The intermediate representation the transform works on.
//!
//! A differentiable body is lowered (see `lower`) into a small imperative language:
//! every expression becomes a chain of single-operation `Let` statements over named
//! temporaries (A-normal form), mutable locals that survive control flow become
//! *cells*, indexable float containers become *buffers*, and control flow is reduced to
//! `If`, counted `For` loops and `While` loops with an explicit header. Early exits
//! (`return`, `break`, `continue`) have already been turned into flags by the lowering.
//!
//! The reverse-mode transform (`reverse`) maps a `Func` to another `Func` in the same
//! language, which is what makes nesting work: the derivative of a derivative is the
//! same transform applied to its own output. Everything the transform emits — adjoint
//! accumulators, tapes of saved values, reversed loops, calls to derivative rules — is
//! therefore an ordinary IR construct with its own reverse rule.

use proc_macro2::{Span, TokenStream};

/// A variable of the IR: a temporary, a cell, a buffer, a tape or a loop index.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Debug)]
pub struct Var(pub u32);

/// What the macro knows about the type of a value without running the type checker.
///
/// The kind never decides *which* derivative rule runs (rustc does that through the
/// rule traits); it only lets the transform skip work that is provably unnecessary,
/// such as saving a scalar operand whose value a linear rule never reads.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Kind {
    /// A scalar float (`f32`, `f64`, or a type parameter bounded by `Float`).
    Float,
    /// An integer (never differentiable).
    Int,
    /// A boolean (never differentiable).
    Bool,
    /// An indexable container (`&[T]`, `Vec<T>`, `[T; N]`) of the given element kind.
    Buffer(Elem),
    /// Anything else: tensors, matrices, call results whose type the macro cannot see.
    Unknown,
}

/// The element kind of a buffer.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Elem {
    Float,
    Int,
    Unknown,
}

impl Kind {
    /// Whether a value of this kind may carry a derivative.
    pub fn differentiable(self) -> bool {
        matches!(self, Kind::Float | Kind::Unknown | Kind::Buffer(Elem::Float) | Kind::Buffer(Elem::Unknown))
    }

    pub fn is_buffer(self) -> bool {
        matches!(self, Kind::Buffer(_))
    }

    /// The kind of one element read from a buffer of this kind.
    pub fn element(self) -> Kind {
        match self {
            Kind::Buffer(Elem::Float) => Kind::Float,
            Kind::Buffer(Elem::Int) => Kind::Int,
            _ => Kind::Unknown,
        }
    }
}

/// The role of a variable, which decides how it is declared and how its adjoint flows.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Role {
    /// Defined once per execution of its region by a `Let`.
    Temp,
    /// A function parameter (immutable).
    Param,
    /// A mutable local (`let mut`) assigned inside nested control flow.
    Cell,
    /// A mutable indexable container.
    Buffer,
    /// A loop index bound by `For`.
    Index,
    /// A stack of saved values (created by the transform).
    Tape,
    /// A one-value save slot for a branch outside loops (created by the transform).
    Slot,
}

#[derive(Clone, Debug)]
pub struct VarInfo {
    /// Readable base name; the emitter makes it unique.
    pub name: String,
    pub kind: Kind,
    pub role: Role,
    /// The user tokens this variable stands for, so errors and `cargo expand` point there.
    pub span: Span,
    /// For a scalar whose type is a generic float parameter (`T: Float`), that parameter
    /// (for a buffer, the element's): zeros are then written `T::ZERO`, not `0.0`.
    pub scalar_ty: Option<syn::Ident>,
}

/// The variable table of one function.
#[derive(Clone, Debug, Default)]
pub struct Vars {
    infos: Vec<VarInfo>,
}

impl Vars {
    pub fn add(&mut self, name: impl Into<String>, kind: Kind, role: Role, span: Span) -> Var {
        self.infos.push(VarInfo { name: name.into(), kind, role, span, scalar_ty: None });
        Var(self.infos.len() as u32 - 1)
    }

    /// A new variable with the kind, type and span of `like`.
    pub fn add_like(&mut self, like: Var, name: impl Into<String>, role: Role) -> Var {
        let info = self.info(like).clone();
        self.infos.push(VarInfo { name: name.into(), role, ..info });
        Var(self.infos.len() as u32 - 1)
    }

    /// `0` of the scalar type of `v` (an element's, for a buffer).
    pub fn zero(&self, v: Var) -> Operand {
        self.scalar_const(v, "ZERO", "0.0")
    }

    /// `1` of the scalar type of `v`.
    pub fn one(&self, v: Var) -> Operand {
        self.scalar_const(v, "ONE", "1.0")
    }

    fn scalar_const(&self, v: Var, assoc: &str, literal: &str) -> Operand {
        match &self.info(v).scalar_ty {
            Some(t) => {
                let c = syn::Ident::new(assoc, t.span());
                Operand::Const(Const { tokens: quote::quote!(#t::#c), kind: Kind::Float, scalar_ty: Some(t.clone()) })
            }
            None => Operand::float(literal),
        }
    }

    pub fn info(&self, v: Var) -> &VarInfo {
        &self.infos[v.0 as usize]
    }

    pub fn info_mut(&mut self, v: Var) -> &mut VarInfo {
        &mut self.infos[v.0 as usize]
    }

    pub fn kind(&self, v: Var) -> Kind {
        self.info(v).kind
    }

    pub fn role(&self, v: Var) -> Role {
        self.info(v).role
    }

    pub fn len(&self) -> usize {
        self.infos.len()
    }

    pub fn all(&self) -> impl Iterator<Item = Var> {
        (0..self.infos.len() as u32).map(Var)
    }
}

/// A constant: a literal or a path to a `const` item. Constants are never active.
#[derive(Clone, Debug)]
pub struct Const {
    pub tokens: TokenStream,
    pub kind: Kind,
    /// The generic float type of the constant, when it is one (`T::ZERO`).
    pub scalar_ty: Option<syn::Ident>,
}

#[derive(Clone, Debug)]
pub enum Operand {
    Var(Var),
    Const(Const),
}

impl Operand {
    pub fn var(&self) -> Option<Var> {
        match self {
            Operand::Var(v) => Some(*v),
            Operand::Const(_) => None,
        }
    }

    pub fn float(text: &str) -> Operand {
        Operand::Const(Const { tokens: text.parse().expect("float literal"), kind: Kind::Float, scalar_ty: None })
    }
}

/// A tuple-shaped value at a function boundary (parameters, results, cotangents).
#[derive(Clone, Debug)]
pub enum Tree<T> {
    Leaf(T),
    Tuple(Vec<Tree<T>>),
}

impl<T> Tree<T> {
    pub fn leaves(&self) -> Vec<&T> {
        let mut out = Vec::new();
        self.collect(&mut out);
        out
    }

    fn collect<'a>(&'a self, out: &mut Vec<&'a T>) {
        match self {
            Tree::Leaf(t) => out.push(t),
            Tree::Tuple(items) => items.iter().for_each(|i| i.collect(out)),
        }
    }

    pub fn map<U>(&self, f: &mut impl FnMut(&T) -> U) -> Tree<U> {
        match self {
            Tree::Leaf(t) => Tree::Leaf(f(t)),
            Tree::Tuple(items) => Tree::Tuple(items.iter().map(|i| i.map(f)).collect()),
        }
    }
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum BinOp {
    Add,
    Sub,
    Mul,
    Div,
    Rem,
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
    BitAnd,
    BitOr,
    BitXor,
    Shl,
    Shr,
}

impl BinOp {
    pub fn is_comparison(self) -> bool {
        matches!(self, BinOp::Eq | BinOp::Ne | BinOp::Lt | BinOp::Le | BinOp::Gt | BinOp::Ge)
    }
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum UnOp {
    Neg,
    Not,
}

/// Who is called by a `Call`.
#[derive(Clone, Debug)]
pub enum Callee {
    /// A pullback closure returned by a callee's `__adjoint_split` companion.
    Pullback(Var),
    /// A free function (possibly generated by adjoint): `path(args)`. Its derivative
    /// companions live in the module of the same name: `path::__adjoint_d1`.
    Free { path: syn::Path },
    /// A derivative rule of the runtime: `rules::Trait::method(&args)`. Its derivative
    /// companions are sibling methods of the trait: `rules::Trait::__adjoint_d1_method`.
    Rule { trait_name: &'static str, method: String },
    /// An associated function, `Type::f(args)` or `Self::f(args)`. Its derivative
    /// companions are sibling associated functions: `Type::__adjoint_d1_f`.
    Assoc { path: syn::Path },
    /// A method, `args[0].name(args[1..])`; the receiver's gradient comes first. Its
    /// derivative companions are sibling methods: `recv.__adjoint_d1_name(…)`.
    Method { name: syn::Ident },
    /// A function of the derivative tower being generated, by a path relative to the
    /// tower's module (`f` for `#[differentiable] fn f`): `__adjoint_d1` is `f`'s
    /// derivative companion wherever the caller is emitted.
    Tower { path: syn::Path },
    /// The identity that cuts the gradient (`detach`).
    Detach,
    /// A fixed-size nalgebra value built from its elements, `Vector3::new(a, b, c)`,
    /// `Matrix2::new(m11, m12, m21, m22)` (row by row): argument `k`'s adjoint is element
    /// `(k / cols, k % cols)` of the result's.
    Construct { path: syn::Path, cols: usize },
    /// An associated function with a rule of the runtime for its reverse,
    /// `Rotation2::new(θ)`: called as written; its one argument's adjoint is
    /// `rules::Trait::method(&ȳ, &arg)`.
    AssocRule { path: syn::Path, trait_name: &'static str, method: &'static str },
}

/// How an argument is passed to a call.
#[derive(Clone, Debug)]
pub enum Arg {
    /// By value.
    Value(Operand),
    /// By shared reference: `&x`.
    Ref(Operand),
    /// A whole buffer: borrowed (`&v`) or passed as it is bound (a slice reference stays
    /// a slice reference; an owned buffer is cloned so later code can still read it).
    Buffer { buf: Var, borrowed: bool },
    /// A sub-slice of a buffer: `&x[lo..hi]` (either bound may be absent).
    Slice { buf: Var, lo: Option<Operand>, hi: Option<Operand>, inclusive: bool },
    /// A tuple of arguments.
    Tuple(Vec<Arg>),
}

impl Arg {
    pub fn operands(&self, out: &mut Vec<Operand>) {
        match self {
            Arg::Value(o) | Arg::Ref(o) => out.push(o.clone()),
            Arg::Buffer { buf, .. } => out.push(Operand::Var(*buf)),
            Arg::Slice { buf, lo, hi, .. } => {
                out.push(Operand::Var(*buf));
                out.extend(lo.iter().cloned());
                out.extend(hi.iter().cloned());
            }
            Arg::Tuple(items) => items.iter().for_each(|a| a.operands(out)),
        }
    }
}

#[derive(Clone, Debug)]
pub enum Rvalue {
    /// A copy of an operand (reading a cell goes through this).
    Use(Operand),
    Binary(BinOp, Operand, Operand),
    Unary(UnOp, Operand),
    /// A method call `recv.method(args)`; `prim` names the primitive of the rule table
    /// when the method is differentiable.
    Method {
        recv: Operand,
        method: syn::Ident,
        args: Vec<Operand>,
        /// Which arguments are passed by shared reference (`x.matmul(&w)`).
        by_ref: Vec<bool>,
    },
    Call {
        callee: Callee,
        args: Vec<Arg>,
    },
    /// `buf[index]`: an element of a buffer, or of a value the macro cannot see (a
    /// matrix's `v[i]`, `m[(i, j)]`).
    Index {
        buf: Var,
        index: Operand,
    },
    /// A tuple of operands: the index `(i, j)` of a matrix element.
    Tuple(Vec<Operand>),
    /// `buf.len()`.
    Len(Var),
    /// The positions of a float buffer's elements in sorted order (`sort_order(&buf,
    /// direction)`): the decision of a `sort_by`, which a gather then applies.
    SortOrder {
        buf: Var,
        direction: SortDirection,
    },
    /// `operand as ty`.
    Cast(Operand, syn::Type),
    /// A field of a value (`value.field`), never differentiated.
    Field(Operand, syn::Member),
    /// A copy of a tuple or struct with one field replaced: `{ let mut t = base;
    /// t.field = value; t }` (a field assignment `s.v += …`, the adjoint of a field
    /// projection, and the reverse of itself).
    Insert {
        base: Operand,
        field: syn::Member,
        value: Operand,
    },
    /// Whether a value of an enum (or struct) of data matches a pattern:
    /// `matches!(&value, Loss::Huber(_))`. Not differentiable.
    PatternTest {
        value: Operand,
        pat: syn::Pat,
    },
    /// The values a pattern binds, as a tuple in the pattern's order:
    /// `match &value { Loss::Huber(delta) => (delta.clone(),), _ => unreachable!() }`.
    /// Not differentiated: the value is data (an enum has no gradient type).
    PatternBind {
        value: Operand,
        pat: syn::Pat,
        names: Vec<syn::Ident>,
    },
    /// A struct literal `Path { a: x, b: y, ..rest }` (the fields in the order written).
    Struct {
        path: syn::Path,
        fields: Vec<(syn::Ident, Operand)>,
        rest: Option<Operand>,
    },
    /// Pop the most recent value from a tape.
    Pop(Var),
    /// Take the value out of a save slot.
    Load(Var),
    /// A zero with the shape of the operand (`zero_like`).
    Zero(Operand),
    /// A one with the shape of the operand (`one_like`): the seed of a scalar output.
    One(Operand),
    /// How many indices a loop's iteration space visits: `(a..b).rev().step_by(k)`'s.
    RangeLen(Range),
    /// The index an iteration space visits at a position (`0` is the first): a loop
    /// over a reversed or stepped range that may stop early walks the positions.
    RangeNth(Range, Operand),
    /// A copy of a range of a buffer, as a vector: `buf[lo..hi].to_vec()`.
    Slice {
        buf: Var,
        lo: Option<Operand>,
        hi: Option<Operand>,
        inclusive: bool,
    },
}

/// How a buffer starts.
#[derive(Clone, Debug)]
pub enum BufferInit {
    /// `vec![value; len]`.
    Repeat { value: Operand, len: Operand },
    /// `[value; len]` with a constant length.
    Array { value: Operand, len: TokenStream },
    /// `vec![a, b, c]` or `[a, b, c]`.
    List { items: Vec<Operand>, array: bool },
    /// `Vec::new()` / `Vec::with_capacity(n)`.
    Empty { capacity: Option<Operand> },
    /// A zero buffer shaped like another buffer (`zeros_like`).
    ZerosLike(Var),
}

/// The order a `sort_by` comparator asks for (`a.partial_cmp(b).unwrap()`: ascending,
/// `b.total_cmp(a)`: descending in the total order, …); the runtime's `Direction`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SortDirection {
    Ascending,
    Descending,
    TotalAscending,
    TotalDescending,
}

/// One loop adapter applied to a range, in order.
#[derive(Clone, Debug)]
pub enum Adapter {
    Rev,
    StepBy(Operand),
}

/// The iteration space of a counted loop: `lo..hi` or `lo..=hi` followed by adapters.
#[derive(Clone, Debug)]
pub struct Range {
    pub lo: Operand,
    pub hi: Operand,
    pub inclusive: bool,
    pub adapters: Vec<Adapter>,
}

impl Range {
    /// The same iteration space visited in the opposite order.
    pub fn reversed(&self) -> Range {
        let mut adapters = self.adapters.clone();
        if matches!(adapters.last(), Some(Adapter::Rev)) {
            adapters.pop();
        } else {
            adapters.push(Adapter::Rev);
        }
        Range { lo: self.lo.clone(), hi: self.hi.clone(), inclusive: self.inclusive, adapters }
    }

    pub fn operands(&self) -> Vec<Operand> {
        let mut out = vec![self.lo.clone(), self.hi.clone()];
        for a in &self.adapters {
            if let Adapter::StepBy(k) = a {
                out.push(k.clone());
            }
        }
        out
    }
}

/// A place an adjoint is accumulated into.
#[derive(Clone, Debug)]
pub enum Place {
    /// A cell: `cell += value`.
    Cell(Var),
    /// One element of a buffer: `buf[index] += value`.
    Elem(Var, Operand),
    /// A range of a buffer, elementwise with a buffer value: `buf[lo..hi] += value`.
    Slice { buf: Var, lo: Option<Operand>, hi: Option<Operand>, inclusive: bool },
    /// A named field of a struct's adjoint: `acc.field += value` (the gradient of a
    /// model read as `self.fc1`).
    Field(Var, syn::Ident),
}

#[derive(Clone, Debug)]
pub enum Stmt {
    /// `let dst = rv;` (a tuple pattern when a call returns a tuple).
    Let {
        dst: Tree<Var>,
        rv: Rvalue,
        span: Span,
    },
    /// `let mut cell = init;` (or `let cell;` without init).
    Cell {
        var: Var,
        init: Option<Operand>,
    },
    /// `cell = value;`
    Assign {
        var: Var,
        value: Operand,
    },
    /// `place += value;` (only produced by the transform).
    Accumulate {
        place: Place,
        value: Operand,
    },
    /// `let mut buf = init;`
    Buffer {
        var: Var,
        init: BufferInit,
    },
    /// `buf[index] = value;`
    Store {
        buf: Var,
        index: Operand,
        value: Operand,
    },
    /// `buf.push(value);`
    Push {
        buf: Var,
        value: Operand,
    },
    /// `std::mem::swap(&mut a, &mut b)` of two buffers: their contents exchanged as a
    /// whole (the reverse sweep exchanges their adjoints).
    Swap {
        a: Var,
        b: Var,
    },
    /// `let mut tape = Tape::new();` (only produced by the transform).
    Tape {
        var: Var,
    },
    /// `let mut slot = Slot::empty();` (only produced by the transform).
    Slot {
        var: Var,
    },
    /// `slot.save(value);`
    Save {
        slot: Var,
        value: Operand,
    },
    /// `tape.reserve(trip count of range)` before a loop that pushes once per iteration.
    Reserve {
        tape: Var,
        range: Range,
    },
    If {
        cond: Operand,
        then_: Block,
        else_: Block,
    },
    For {
        var: Var,
        range: Range,
        body: Block,
    },
    /// `loop { header; if !cond { break } body }`.
    While {
        header: Block,
        cond: Operand,
        body: Block,
    },
}

pub type Block = Vec<Stmt>;

/// A parameter of an IR function.
#[derive(Clone, Debug)]
pub struct Param {
    /// The variables the parameter is bound to (a tuple parameter is destructured).
    pub pat: Tree<Var>,
}

/// A function in the IR.
#[derive(Clone, Debug)]
pub struct Func {
    pub vars: Vars,
    pub params: Vec<Param>,
    pub body: Block,
    pub ret: Tree<Operand>,
}

/// Visit every statement of a block recursively, outermost first.
pub fn walk_stmts<'a>(block: &'a [Stmt], f: &mut impl FnMut(&'a Stmt)) {
    for s in block {
        f(s);
        for b in s.blocks() {
            walk_stmts(b, f);
        }
    }
}

/// Visit a block and every block nested in its statements, outermost first.
pub fn walk_blocks<'a>(block: &'a Block, f: &mut impl FnMut(&'a Block)) {
    f(block);
    for s in block {
        for b in s.blocks() {
            walk_blocks(b, f);
        }
    }
}

impl Rvalue {
    /// The operands this right-hand side reads.
    pub fn operands(&self) -> Vec<Operand> {
        match self {
            Rvalue::Use(o)
            | Rvalue::Unary(_, o)
            | Rvalue::Cast(o, _)
            | Rvalue::Field(o, _)
            | Rvalue::Zero(o)
            | Rvalue::One(o) => {
                vec![o.clone()]
            }
            Rvalue::Binary(_, a, b) | Rvalue::Insert { base: a, value: b, .. } => vec![a.clone(), b.clone()],
            Rvalue::Method { recv, args, .. } => {
                let mut out = vec![recv.clone()];
                out.extend(args.iter().cloned());
                out
            }
            Rvalue::Call { args, .. } => {
                let mut out = Vec::new();
                args.iter().for_each(|a| a.operands(&mut out));
                out
            }
            Rvalue::Index { buf, index } => vec![Operand::Var(*buf), index.clone()],
            Rvalue::Tuple(items) => items.clone(),
            Rvalue::Struct { fields, rest, .. } => fields.iter().map(|(_, o)| o.clone()).chain(rest.clone()).collect(),
            Rvalue::PatternTest { value, .. } | Rvalue::PatternBind { value, .. } => vec![value.clone()],
            Rvalue::Len(b) | Rvalue::Pop(b) | Rvalue::Load(b) | Rvalue::SortOrder { buf: b, .. } => {
                vec![Operand::Var(*b)]
            }
            Rvalue::Slice { buf, lo, hi, .. } => {
                let mut out = vec![Operand::Var(*buf)];
                out.extend(lo.iter().cloned());
                out.extend(hi.iter().cloned());
                out
            }
            Rvalue::RangeLen(range) => range.operands(),
            Rvalue::RangeNth(range, position) => {
                let mut out = range.operands();
                out.push(position.clone());
                out
            }
        }
    }
}

impl BufferInit {
    pub fn operands(&self) -> Vec<Operand> {
        match self {
            BufferInit::Repeat { value, len } => vec![value.clone(), len.clone()],
            BufferInit::Array { value, .. } => vec![value.clone()],
            BufferInit::List { items, .. } => items.clone(),
            BufferInit::Empty { capacity } => capacity.iter().cloned().collect(),
            BufferInit::ZerosLike(v) => vec![Operand::Var(*v)],
        }
    }
}

impl Stmt {
    /// The blocks nested in this statement, in program order (`then`, `else`; a
    /// `while`'s header, then its body).
    pub fn blocks(&self) -> Vec<&Block> {
        match self {
            Stmt::If { then_, else_, .. } => vec![then_, else_],
            Stmt::For { body, .. } => vec![body],
            Stmt::While { header, body, .. } => vec![header, body],
            _ => Vec::new(),
        }
    }

    /// [`Stmt::blocks`], to rewrite them.
    pub fn blocks_mut(&mut self) -> Vec<&mut Block> {
        match self {
            Stmt::If { then_, else_, .. } => vec![then_, else_],
            Stmt::For { body, .. } => vec![body],
            Stmt::While { header, body, .. } => vec![header, body],
            _ => Vec::new(),
        }
    }

    /// The operands this statement reads itself (not those of nested blocks); an
    /// accumulation's target counts as read.
    pub fn operands(&self) -> Vec<Operand> {
        match self {
            Stmt::Let { rv, .. } => rv.operands(),
            Stmt::Cell { init, .. } => init.iter().cloned().collect(),
            Stmt::Assign { value, .. } | Stmt::Push { value, .. } | Stmt::Save { value, .. } => vec![value.clone()],
            Stmt::Accumulate { place, value } => {
                let mut o = place.operands();
                o.push(value.clone());
                o
            }
            Stmt::Store { index, value, .. } => vec![index.clone(), value.clone()],
            Stmt::Buffer { init, .. } => init.operands(),
            Stmt::If { cond, .. } => vec![cond.clone()],
            Stmt::While { cond, .. } => vec![cond.clone()],
            Stmt::For { range, .. } | Stmt::Reserve { range, .. } => range.operands(),
            Stmt::Tape { .. } | Stmt::Slot { .. } => Vec::new(),
            Stmt::Swap { a, b } => vec![Operand::Var(*a), Operand::Var(*b)],
        }
    }
}

impl Stmt {
    /// The variables this statement writes itself (not those of nested blocks): those
    /// it defines, assigns or adds to, the buffers it stores into or pushes onto, and
    /// the tape or slot a value is taken from.
    pub fn written(&self) -> Vec<Var> {
        match self {
            Stmt::Let { dst, rv, .. } => {
                let mut w: Vec<Var> = dst.leaves().into_iter().copied().collect();
                if let Rvalue::Pop(v) | Rvalue::Load(v) = rv {
                    w.push(*v);
                }
                w
            }
            Stmt::Cell { var, .. } | Stmt::Assign { var, .. } | Stmt::Buffer { var, .. } => vec![*var],
            Stmt::Accumulate { place, .. } => vec![place.target()],
            Stmt::Store { buf, .. } | Stmt::Push { buf, .. } => vec![*buf],
            Stmt::Swap { a, b } => vec![*a, *b],
            Stmt::Save { slot, .. } => vec![*slot],
            Stmt::Tape { var } | Stmt::Slot { var } | Stmt::For { var, .. } => vec![*var],
            Stmt::Reserve { tape, .. } => vec![*tape],
            Stmt::If { .. } | Stmt::While { .. } => Vec::new(),
        }
    }

    /// Whether this statement itself (not its nested blocks) reads or writes `v`.
    pub fn touches(&self, v: Var) -> bool {
        self.operands().iter().any(|o| o.var() == Some(v)) || self.written().contains(&v)
    }
}

impl Place {
    pub fn operands(&self) -> Vec<Operand> {
        match self {
            Place::Cell(v) | Place::Field(v, _) => vec![Operand::Var(*v)],
            Place::Elem(b, i) => vec![Operand::Var(*b), i.clone()],
            Place::Slice { buf, lo, hi, .. } => {
                let mut out = vec![Operand::Var(*buf)];
                out.extend(lo.iter().cloned());
                out.extend(hi.iter().cloned());
                out
            }
        }
    }

    pub fn target(&self) -> Var {
        match self {
            Place::Cell(v) | Place::Elem(v, _) | Place::Slice { buf: v, .. } | Place::Field(v, _) => *v,
        }
    }
}

/// Replace the variables *read* by the statements of a block (not the ones they
/// define), recursively. The transform uses it to give values it re-materialises in a
/// reverse region their own variables, so every variable keeps a single definition.
pub fn rename_uses(block: &mut Block, map: &std::collections::HashMap<Var, Var>) {
    if map.is_empty() {
        return;
    }
    let r = |v: &mut Var| {
        if let Some(n) = map.get(v) {
            *v = *n;
        }
    };
    let ro = |o: &mut Operand| {
        if let Operand::Var(v) = o {
            if let Some(n) = map.get(v) {
                *v = *n;
            }
        }
    };
    for s in block {
        match s {
            Stmt::Let { rv, .. } => rename_rvalue(rv, map),
            Stmt::Cell { init, .. } => {
                if let Some(o) = init {
                    ro(o);
                }
            }
            Stmt::Assign { value, .. } => ro(value),
            Stmt::Accumulate { place, value } => {
                rename_place(place, map);
                ro(value);
            }
            Stmt::Buffer { init, .. } => match init {
                BufferInit::Repeat { value, len } => {
                    ro(value);
                    ro(len);
                }
                BufferInit::Array { value, .. } => ro(value),
                BufferInit::List { items, .. } => items.iter_mut().for_each(ro),
                BufferInit::Empty { capacity } => {
                    if let Some(c) = capacity {
                        ro(c);
                    }
                }
                BufferInit::ZerosLike(v) => r(v),
            },
            Stmt::Store { index, value, .. } => {
                ro(index);
                ro(value);
            }
            Stmt::Push { value, .. } | Stmt::Save { value, .. } => ro(value),
            Stmt::Tape { .. } | Stmt::Slot { .. } | Stmt::Swap { .. } => {}
            Stmt::Reserve { range, .. } => {
                ro(&mut range.lo);
                ro(&mut range.hi);
                for a in &mut range.adapters {
                    if let Adapter::StepBy(k) = a {
                        ro(k);
                    }
                }
            }
            Stmt::If { cond, then_, else_ } => {
                ro(cond);
                rename_uses(then_, map);
                rename_uses(else_, map);
            }
            Stmt::For { range, body, .. } => {
                ro(&mut range.lo);
                ro(&mut range.hi);
                for a in &mut range.adapters {
                    if let Adapter::StepBy(k) = a {
                        ro(k);
                    }
                }
                rename_uses(body, map);
            }
            Stmt::While { header, cond, body } => {
                rename_uses(header, map);
                ro(cond);
                rename_uses(body, map);
            }
        }
    }
}

fn rename_place(p: &mut Place, map: &std::collections::HashMap<Var, Var>) {
    let ro = |o: &mut Operand| {
        if let Operand::Var(v) = o {
            if let Some(n) = map.get(v) {
                *v = *n;
            }
        }
    };
    match p {
        Place::Cell(_) | Place::Field(..) => {}
        Place::Elem(_, i) => ro(i),
        Place::Slice { lo, hi, .. } => {
            if let Some(o) = lo {
                ro(o);
            }
            if let Some(o) = hi {
                ro(o);
            }
        }
    }
}

fn rename_rvalue(rv: &mut Rvalue, map: &std::collections::HashMap<Var, Var>) {
    let r = |v: &mut Var| {
        if let Some(n) = map.get(v) {
            *v = *n;
        }
    };
    let ro = |o: &mut Operand| {
        if let Operand::Var(v) = o {
            if let Some(n) = map.get(v) {
                *v = *n;
            }
        }
    };
    match rv {
        Rvalue::Use(o)
        | Rvalue::Unary(_, o)
        | Rvalue::Cast(o, _)
        | Rvalue::Field(o, _)
        | Rvalue::Zero(o)
        | Rvalue::One(o) => ro(o),
        Rvalue::Binary(_, a, b) | Rvalue::Insert { base: a, value: b, .. } => {
            ro(a);
            ro(b);
        }
        Rvalue::Method { recv, args, .. } => {
            ro(recv);
            args.iter_mut().for_each(ro);
        }
        Rvalue::Call { args, .. } => args.iter_mut().for_each(|a| rename_arg(a, map)),
        Rvalue::Index { buf, index } => {
            r(buf);
            ro(index);
        }
        Rvalue::Tuple(items) => items.iter_mut().for_each(ro),
        Rvalue::Struct { fields, rest, .. } => {
            fields.iter_mut().for_each(|(_, o)| ro(o));
            rest.iter_mut().for_each(ro);
        }
        Rvalue::PatternTest { value, .. } | Rvalue::PatternBind { value, .. } => ro(value),
        Rvalue::Len(b) | Rvalue::SortOrder { buf: b, .. } => r(b),
        Rvalue::Slice { buf, lo, hi, .. } => {
            r(buf);
            if let Some(o) = lo {
                ro(o);
            }
            if let Some(o) = hi {
                ro(o);
            }
        }
        Rvalue::RangeLen(range) => rename_range(range, map),
        Rvalue::RangeNth(range, position) => {
            rename_range(range, map);
            ro(position);
        }
        Rvalue::Pop(_) | Rvalue::Load(_) => {}
    }
}

fn rename_range(range: &mut Range, map: &std::collections::HashMap<Var, Var>) {
    let ro = |o: &mut Operand| {
        if let Operand::Var(v) = o {
            if let Some(n) = map.get(v) {
                *v = *n;
            }
        }
    };
    ro(&mut range.lo);
    ro(&mut range.hi);
    for a in &mut range.adapters {
        if let Adapter::StepBy(k) = a {
            ro(k);
        }
    }
}

fn rename_arg(a: &mut Arg, map: &std::collections::HashMap<Var, Var>) {
    let ro = |o: &mut Operand| {
        if let Operand::Var(v) = o {
            if let Some(n) = map.get(v) {
                *v = *n;
            }
        }
    };
    match a {
        Arg::Value(o) | Arg::Ref(o) => ro(o),
        Arg::Buffer { buf, .. } => {
            if let Some(n) = map.get(buf) {
                *buf = *n;
            }
        }
        Arg::Slice { buf, lo, hi, .. } => {
            if let Some(n) = map.get(buf) {
                *buf = *n;
            }
            if let Some(o) = lo {
                ro(o);
            }
            if let Some(o) = hi {
                ro(o);
            }
        }
        Arg::Tuple(items) => items.iter_mut().for_each(|i| rename_arg(i, map)),
    }
}
