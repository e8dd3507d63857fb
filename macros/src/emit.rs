//! Emission: IR → Rust tokens.
//!
//! Every IR variable becomes a local with a readable, unique name (`x`, `x_bar`,
//! `prod_2`); its identifier has `mixed_site` hygiene, so it can never capture or
//! shadow a name of the user's, and carries the span of the user tokens it stands for,
//! so type errors in generated code point at the user's expression.
//!
//! Derivative rules are emitted as calls into `__private::rules`; the choice of
//! implementation is rustc's.

use std::cell::RefCell;
use std::collections::{HashMap, HashSet};

use proc_macro2::{Span, TokenStream};
use quote::{format_ident, quote, quote_spanned, ToTokens};

use crate::ir::*;

pub struct Emitter<'a> {
    func: &'a Func,
    krate: &'a syn::Path,
    names: HashMap<Var, syn::Ident>,
    /// How many times each variable is read (a read inside a loop counts as many):
    /// a value of unknown type read once is moved, otherwise cloned.
    uses: HashMap<Var, usize>,
    /// The number of places each variable is read at (loops not weighted).
    reads: HashMap<Var, usize>,
    /// How many modules below the user's module the code is emitted (the companion
    /// module of `f` is 1): paths the user wrote relative to their module are rebased.
    depth: usize,
    /// The adjoints whose contributions inside the loop being emitted are deferred,
    /// each with its `OuterSum` (see [`Emitter::deferred_loop`]).
    deferred: RefCell<HashMap<Var, syn::Ident>>,
    /// Cells declared without a value and assigned inside a loop (see [`late_cells`]):
    /// they hold an `Option`, because rustc cannot see that the loop assigns them
    /// before they are read.
    late: HashSet<Var>,
    /// The zeros of late cells (late too), saved for the reverse sweep as `Option`s.
    late_zeros: HashSet<Var>,
    /// The tapes that the loop being emitted pushes through a segment writer, each
    /// with the writer (see [`Emitter::segmented_loop`]).
    segments: RefCell<HashMap<Var, syn::Ident>>,
}

/// A rule call whose result is only added into an adjoint (`let g = Trait::m(ȳ, …);
/// accumulate(&mut acc, g);`), which can be emitted as one accumulating call.
struct Fusion<'s> {
    trait_name: &'s str,
    method: &'s str,
    args: &'s [Arg],
    span: Span,
    acc: Var,
}

const KEYWORDS: &[&str] = &[
    "as", "break", "const", "continue", "crate", "else", "enum", "extern", "false", "fn", "for", "if", "impl", "in",
    "let", "loop", "match", "mod", "move", "mut", "pub", "ref", "return", "self", "Self", "static", "struct", "super",
    "trait", "true", "type", "unsafe", "use", "where", "while", "async", "await", "dyn", "abstract", "become", "box",
    "do", "final", "macro", "override", "priv", "typeof", "unsized", "virtual", "yield", "try", "gen",
];

impl<'a> Emitter<'a> {
    pub fn new(func: &'a Func, krate: &'a syn::Path, depth: usize) -> Self {
        let mut names = HashMap::new();
        let mut taken: HashSet<String> = HashSet::new();
        for v in func.vars.all() {
            let info = func.vars.info(v);
            let base = sanitize(&info.name);
            let name = if base == "_" {
                "_".to_string()
            } else {
                let mut candidate = base.clone();
                let mut k = 1;
                while taken.contains(&candidate) || KEYWORDS.contains(&candidate.as_str()) {
                    candidate = format!("{base}_{k}");
                    k += 1;
                }
                taken.insert(candidate.clone());
                candidate
            };
            let span = Span::mixed_site().located_at(info.span);
            names.insert(v, syn::Ident::new(&name, span));
        }
        let mut uses = HashMap::new();
        count_uses(&func.body, false, &mut uses);
        let mut reads = HashMap::new();
        count_reads(&func.body, 1, 1, &mut reads);
        for o in func.ret.leaves() {
            if let Some(v) = o.var() {
                *uses.entry(v).or_insert(0) += 1;
            }
        }
        let mut late = HashSet::new();
        late_cells(&func.body, 0, &mut HashMap::new(), &mut late);
        let late_zeros = late_adjoints(&func.body, &mut late);
        Emitter {
            func,
            krate,
            names,
            uses,
            reads,
            depth,
            deferred: RefCell::default(),
            late,
            late_zeros,
            segments: RefCell::default(),
        }
    }

    /// A cell written in place (`+=`, `accumulate(&mut …)`): a late cell through its
    /// `Option`.
    fn place(&self, v: Var) -> TokenStream {
        let id = self.ident(v);
        if self.late.contains(&v) {
            let p = self.private();
            quote!((*#p::late_mut(&mut #id)))
        } else {
            id.to_token_stream()
        }
    }

    fn read_once(&self, v: Var) -> bool {
        self.uses.get(&v).copied().unwrap_or(0) <= 1
    }

    pub fn ident(&self, v: Var) -> &syn::Ident {
        &self.names[&v]
    }

    fn private(&self) -> TokenStream {
        let k = self.krate;
        quote!(#k::__private)
    }

    pub fn pattern(&self, t: &Tree<Var>) -> TokenStream {
        match t {
            Tree::Leaf(v) => self.ident(*v).to_token_stream(),
            Tree::Tuple(items) => {
                let items = items.iter().map(|i| self.pattern(i));
                quote!((#(#items,)*))
            }
        }
    }

    /// A tree of operands with every variable cloned: a value returned while code
    /// after it (a pullback) still reads it.
    pub fn cloned_tree(&self, t: &Tree<Operand>) -> TokenStream {
        match t {
            Tree::Leaf(Operand::Var(v)) => {
                let id = self.ident(*v);
                quote!(::core::clone::Clone::clone(&#id))
            }
            Tree::Leaf(o) => self.operand(o),
            Tree::Tuple(items) => {
                let items = items.iter().map(|i| self.cloned_tree(i));
                quote!((#(#items,)*))
            }
        }
    }

    pub fn operand(&self, o: &Operand) -> TokenStream {
        match o {
            Operand::Var(v) if self.late.contains(v) => {
                let (p, id) = (self.private(), self.ident(*v));
                quote!((*#p::late_ref(&#id)))
            }
            Operand::Var(v) => self.ident(*v).to_token_stream(),
            Operand::Const(c) => match syn::parse2::<syn::Path>(c.tokens.clone()) {
                // A constant named by a path the user wrote relative to their module.
                Ok(p) if self.depth > 0 => rebase(&p, self.depth).to_token_stream(),
                _ => c.tokens.clone(),
            },
        }
    }

    /// An operand used by value where the original code used it by value: values whose
    /// type the macro cannot see are cloned, because the derivative code reads them again.
    fn by_value(&self, o: &Operand) -> TokenStream {
        match o {
            Operand::Var(v) if self.late.contains(v) && self.read_once(*v) => {
                let (p, id) = (self.private(), self.ident(*v));
                quote!(#p::late_value(#id))
            }
            Operand::Var(v)
                if matches!(self.func.vars.kind(*v), Kind::Unknown | Kind::Buffer(_)) && !self.read_once(*v) =>
            {
                let id = self.operand(o);
                quote!(::core::clone::Clone::clone(&#id))
            }
            _ => self.operand(o),
        }
    }

    /// A value saved for the reverse sweep: a late one is saved as it is, an `Option`.
    fn late_or_by_value(&self, o: &Operand) -> TokenStream {
        match o {
            Operand::Var(v) if self.late_zeros.contains(v) => {
                let id = self.ident(*v);
                if self.read_once(*v) {
                    id.to_token_stream()
                } else {
                    quote!(::core::clone::Clone::clone(&#id))
                }
            }
            _ => self.by_value(o),
        }
    }

    /// An operand of an arithmetic operator (values of unknown type are cloned, since
    /// derivative code may read them again).
    fn arith(&self, o: &Operand) -> TokenStream {
        self.by_value(o)
    }

    /// A returned value (the function's result, or a split closure's gradients): the
    /// last read of every variable in it, so a variable it names once is moved, not
    /// cloned.
    pub fn tree(&self, t: &Tree<Operand>) -> TokenStream {
        let mut named = HashMap::new();
        count_vars(t, &mut named);
        self.returned(t, &named)
    }

    fn returned(&self, t: &Tree<Operand>, named: &HashMap<Var, usize>) -> TokenStream {
        match t {
            Tree::Leaf(Operand::Var(v)) if named[v] == 1 => self.ident(*v).to_token_stream(),
            Tree::Leaf(o) => self.by_value(o),
            Tree::Tuple(items) => {
                let items = items.iter().map(|i| self.returned(i, named));
                quote!((#(#items,)*))
            }
        }
    }

    pub fn block(&self, b: &Block) -> TokenStream {
        let mut out = TokenStream::new();
        let mut i = 0;
        while i < b.len() {
            if let Some(fused) = b.get(i + 1).and_then(|next| self.accumulated_rule(&b[i], next)) {
                out.extend(fused);
                i += 2;
            } else if let Some((segmented, taken)) = self.segmented_loop(&b[i..]) {
                out.extend(segmented);
                i += taken;
            } else {
                out.extend(self.stmt(&b[i]));
                i += 1;
            }
        }
        out
    }

    /// The `reserve` statements before a loop and the loop, when some reserved tape is
    /// pushed once in the loop's body and touched nowhere else in it: that tape gets a
    /// segment writer (`let mut t_segment = t.segment(trip count);`), the body pushes
    /// through it, and it is dropped after the loop. The writer's cursor stays in
    /// registers, where each `Tape::push` would check and update the tape in memory.
    /// Returns the code and how many statements it covers.
    fn segmented_loop(&self, stmts: &[Stmt]) -> Option<(TokenStream, usize)> {
        let reserves = stmts.iter().take_while(|s| matches!(s, Stmt::Reserve { .. })).count();
        let Some(Stmt::For { body, .. }) = stmts.get(reserves) else { return None };
        if reserves == 0 {
            return None;
        }
        let mut before = TokenStream::new();
        let mut after = TokenStream::new();
        let mut writers = HashMap::new();
        for s in &stmts[..reserves] {
            let Stmt::Reserve { tape, range } = s else { unreachable!("counted above") };
            if writers.contains_key(tape) {
                // Reserved twice (a derivative of a derivative keeps the first
                // transform's `reserve` and adds its own): one writer.
                continue;
            }
            let (t, r) = (self.ident(*tape), self.range(range));
            let trips = quote!(::core::iter::Iterator::size_hint(&(#r)).0);
            let mut mentions = 0;
            walk_stmts(body, &mut |s| mentions += usize::from(s.touches(*tape)));
            let pushed_at_top = body.iter().any(|s| matches!(s, Stmt::Push { buf, .. } if buf == tape));
            if mentions == 1 && pushed_at_top {
                let w = self.fresh_ident(&format!("{t}_segment"));
                before.extend(quote!(let mut #w = #t.segment(#trips);));
                after.extend(quote!(::core::mem::drop(#w);));
                writers.insert(*tape, w);
            } else {
                before.extend(quote!(#t.reserve(#trips);));
            }
        }
        if writers.is_empty() {
            return None;
        }
        let outer = self.segments.borrow().clone();
        self.segments.borrow_mut().extend(writers);
        let the_loop = self.stmt(&stmts[reserves]);
        *self.segments.borrow_mut() = outer;
        Some((quote!(#before #the_loop #after), reserves + 1))
    }

    /// The local numeric buffers a loop body uses element by element only (reads
    /// `b[i]`, `b.len()`, copies of ranges, stores and additions to elements), each
    /// with whether it writes them. The loop reaches them through a slice bound before
    /// it (`let u = &u[..];`): a `Vec`'s pointer and length then stay in registers,
    /// where a store to any element would make the compiler load them again from the
    /// `Vec`, whose address the function has passed elsewhere.
    fn element_views(&self, body: &Block) -> Vec<(Var, bool)> {
        let vars = &self.func.vars;
        let numeric = |v: Var| {
            matches!(vars.kind(v), Kind::Buffer(_))
                && matches!(vars.kind(v).element(), Kind::Float | Kind::Int)
                && !matches!(vars.role(v), Role::Param | Role::Tape | Role::Slot)
                && !self.late.contains(&v)
        };
        let mut views: Vec<(Var, bool)> = Vec::new();
        let mut refused: HashSet<Var> = HashSet::new();
        walk_stmts(body, &mut |s| {
            // The buffers this statement uses element by element, and whether it writes.
            let element_use: Option<(Var, bool)> = match s {
                Stmt::Let { rv: Rvalue::Index { buf, .. } | Rvalue::Len(buf) | Rvalue::Slice { buf, .. }, .. } => {
                    Some((*buf, false))
                }
                Stmt::Store { buf, .. } => Some((*buf, true)),
                _ => None,
            };
            let mut mentioned: Vec<Var> = s.operands().iter().filter_map(Operand::var).collect();
            mentioned.extend(s.written());
            for v in mentioned {
                if !numeric(v) {
                    continue;
                }
                // The index or value of an element use is a plain mention of its own.
                let own = element_use.filter(|(b, _)| *b == v);
                let plain = match s {
                    Stmt::Let { rv: Rvalue::Index { index, .. }, .. } => index.var() == Some(v),
                    Stmt::Store { index, value, .. } => index.var() == Some(v) || value.var() == Some(v),
                    Stmt::Accumulate { value, .. } => value.var() == Some(v),
                    _ => false,
                };
                match own {
                    Some((_, written)) if !plain => match views.iter_mut().find(|(b, _)| *b == v) {
                        Some(view) => view.1 |= written,
                        None => views.push((v, written)),
                    },
                    _ => {
                        refused.insert(v);
                    }
                }
            }
        });
        views.retain(|(v, _)| !refused.contains(v));
        views
    }

    /// `let g = Trait::m(ȳ, …); accumulate(&mut acc, g);`, where nothing else reads `g`
    /// and the rule has an accumulating form, as the one call `Trait::m_into(&mut acc,
    /// ȳ, …)`: a weight's adjoint summed over a loop then gets each step's product
    /// added where it lies, instead of written out and added. Inside a loop that defers
    /// `acc`, the call is `Trait::m_deferred(&mut acc, &mut pending, ȳ, …)`.
    fn accumulated_rule(&self, s: &Stmt, next: &Stmt) -> Option<TokenStream> {
        let Fusion { trait_name, method, args, span, acc } = self.fusion(s, next)?;
        let pending = self.deferred.borrow().get(&acc).cloned();
        let acc = self.ident(acc);
        let (method, leading) = match pending {
            Some(pending) => (format!("{method}_deferred"), quote!(&mut #acc, &mut #pending)),
            None => (format!("{method}_into"), quote!(&mut #acc)),
        };
        let call = self.rule_call(trait_name, &method, args, span, Some(leading));
        Some(quote_spanned!(span=> #call;))
    }

    fn fusion<'s>(&self, s: &'s Stmt, next: &'s Stmt) -> Option<Fusion<'s>> {
        let Stmt::Let {
            dst: Tree::Leaf(g),
            rv: Rvalue::Call { callee: Callee::Rule { trait_name, method }, args },
            span,
        } = s
        else {
            return None;
        };
        let Stmt::Accumulate { place: Place::Cell(acc), value: Operand::Var(v) } = next else { return None };
        let accumulating = crate::ops::ACCUMULATING_RULES.contains(trait_name);
        let read_only_here =
            self.reads.get(g) == Some(&1) && !self.func.ret.leaves().iter().any(|o| o.var() == Some(*g));
        if v != g
            || !accumulating
            || !read_only_here
            || self.func.vars.kind(*acc) == Kind::Float
            || self.late.contains(acc)
        {
            return None;
        }
        Some(Fusion { trait_name, method, args, span: *span, acc: *acc })
    }

    /// A loop (`emit_loop` emits it) whose accumulating rule calls into adjoints of
    /// values from outside the loop are deferred: an adjoint that nothing else in the
    /// loop reads or assigns gets an `OuterSum` before the loop, its calls in the loop
    /// take the `_deferred` form, and the sum is added into it after the loop. The
    /// reverse sweep of an RNN then adds the weights' per-step outer products as one
    /// matrix product each.
    fn deferred_loop(&self, blocks: &[&Block], emit_loop: impl FnOnce() -> TokenStream) -> TokenStream {
        let mut candidates = Vec::new();
        for b in blocks {
            walk_blocks(b, &mut |block: &Block| {
                for pair in block.windows(2) {
                    if let Some(f) = self.fusion(&pair[0], &pair[1]) {
                        if crate::ops::DEFERRING_RULES.contains(&f.trait_name) && !candidates.contains(&f.acc) {
                            candidates.push(f.acc);
                        }
                    }
                }
            });
        }
        let mut reads = HashMap::new();
        let mut written = HashSet::new();
        for b in blocks {
            count_reads(b, 1, 1, &mut reads);
            walk_stmts(b, &mut |s| match s {
                Stmt::Cell { var, .. } | Stmt::Assign { var, .. } => {
                    written.insert(*var);
                }
                _ => {}
            });
        }
        let outer = self.deferred.borrow().clone();
        let deferred: Vec<(Var, syn::Ident)> = candidates
            .into_iter()
            .filter(|acc| !reads.contains_key(acc) && !written.contains(acc) && !outer.contains_key(acc))
            .map(|acc| (acc, self.fresh_ident(&format!("{}_pending", self.ident(acc)))))
            .collect();
        if deferred.is_empty() {
            return emit_loop();
        }
        self.deferred.borrow_mut().extend(deferred.iter().cloned());
        let the_loop = emit_loop();
        *self.deferred.borrow_mut() = outer;
        let p = self.private();
        let (accs, pendings): (Vec<_>, Vec<_>) =
            deferred.iter().map(|(acc, pending)| (self.ident(*acc), pending)).unzip();
        quote! {
            #(let mut #pendings = #p::rules::OuterSum::new();)*
            #the_loop
            #(#pendings.add_to(&mut #accs);)*
        }
    }

    /// An identifier named `base` (or `base_2`, …) that no variable of the function has.
    fn fresh_ident(&self, base: &str) -> syn::Ident {
        let taken = |n: &str| self.names.values().any(|id| id == n);
        let mut name = base.to_string();
        let mut k = 2;
        while taken(&name) {
            name = format!("{base}_{k}");
            k += 1;
        }
        syn::Ident::new(&name, Span::mixed_site())
    }

    /// `rules::Trait::method(args…)`, with a leading argument if given.
    fn rule_call(
        &self,
        trait_name: &str,
        method: &str,
        call_args: &[Arg],
        span: Span,
        leading: Option<TokenStream>,
    ) -> TokenStream {
        let p = self.private();
        let t = format_ident!("{}", trait_name, span = span);
        let m = format_ident!("{}", method, span = span);
        // The values a rule reads (all but the leading adjoint) are passed through
        // `primal` when the macro cannot see their type: a `Param<Tensor>` field then
        // dispatches to the tensor's rule.
        let args = call_args.iter().enumerate().map(|(i, a)| match a {
            Arg::Ref(o @ Operand::Var(v)) if i > 0 && self.func.vars.kind(*v) == Kind::Unknown => {
                let o = self.operand(o);
                quote!(#p::primal(&#o))
            }
            _ => self.arg(a),
        });
        let leading = leading.into_iter();
        quote_spanned!(span=> #p::rules::#t::#m(#(#leading,)* #(#args),*))
    }

    fn stmt(&self, s: &Stmt) -> TokenStream {
        let p = self.private();
        match s {
            Stmt::Let { dst, rv, span } => {
                let pat = self.pattern(dst);
                let rv = self.rvalue(rv, *span);
                quote_spanned!(*span=> let #pat = #rv;)
            }
            Stmt::Cell { var, init } => {
                let id = self.ident(*var);
                match init {
                    // The adjoint of a late cell starts as the late zero: still an `Option`.
                    Some(o @ Operand::Var(z)) if self.late_zeros.contains(z) => {
                        let o = self.late_or_by_value(o);
                        quote!(let mut #id = #o;)
                    }
                    Some(o) => {
                        let o = self.by_value(o);
                        quote!(let mut #id = #o;)
                    }
                    None if self.late.contains(var) => quote!(let mut #id = ::core::option::Option::None;),
                    None => quote!(let mut #id;),
                }
            }
            Stmt::Assign { var, value } => {
                let id = self.ident(*var);
                let v = self.by_value(value);
                if self.late.contains(var) {
                    quote!(#id = ::core::option::Option::Some(#v);)
                } else {
                    quote!(#id = #v;)
                }
            }
            Stmt::Accumulate { place, value } => {
                let v = self.by_value(value);
                match place {
                    Place::Cell(c) => {
                        let id = self.place(*c);
                        let kind = self.func.vars.kind(*c);
                        if kind == Kind::Float {
                            quote!(#id += #v;)
                        } else if kind.is_buffer() || value.var().is_some_and(|o| self.func.vars.kind(o).is_buffer()) {
                            // Element by element: the two sides may be a `Vec` and an
                            // array (an array buffer's adjoint and a call's gradient).
                            let o = self.operand(value);
                            quote!(#p::accumulate_slice(&mut #id[..], &#o[..]);)
                        } else {
                            quote!(#p::accumulate(&mut #id, #v);)
                        }
                    }
                    Place::Elem(b, i) => {
                        let id = self.ident(*b);
                        let i = self.operand(i);
                        if self.func.vars.kind(*b).element() == Kind::Float {
                            quote!(#id[#i] += #v;)
                        } else {
                            quote!(#p::accumulate(&mut #id[#i], #v);)
                        }
                    }
                    Place::Slice { buf, lo, hi, inclusive } => {
                        let id = self.ident(*buf);
                        let range = self.range_index(lo, hi, *inclusive);
                        quote!(#p::accumulate_slice(&mut #id[#range], &#v);)
                    }
                    Place::Field(acc, m) => {
                        let id = self.place(*acc);
                        quote!(#p::accumulate(&mut #id.#m, #v);)
                    }
                }
            }
            Stmt::Buffer { var, init } => {
                let id = self.ident(*var);
                let init = match init {
                    BufferInit::Repeat { value, len } => {
                        let (v, n) = (self.operand(value), self.operand(len));
                        quote!(::std::vec![#v; #n])
                    }
                    BufferInit::Array { value, len } => {
                        let v = self.operand(value);
                        quote!([#v; #len])
                    }
                    BufferInit::List { items, array } => {
                        let items = items.iter().map(|i| self.by_value(i));
                        if *array {
                            quote!([#(#items),*])
                        } else {
                            quote!(::std::vec![#(#items),*])
                        }
                    }
                    BufferInit::Empty { capacity: None } => quote!(::std::vec::Vec::new()),
                    BufferInit::Empty { capacity: Some(n) } => {
                        let n = self.operand(n);
                        quote!(::std::vec::Vec::with_capacity(#n))
                    }
                    BufferInit::ZerosLike(b) => {
                        let b = self.ident(*b);
                        quote!(#p::zeros_like(&#b))
                    }
                };
                quote!(let mut #id = #init;)
            }
            Stmt::Store { buf, index, value } => {
                let (b, i, v) = (self.ident(*buf), self.operand(index), self.by_value(value));
                quote!(#b[#i] = #v;)
            }
            Stmt::Push { buf, value } => {
                let v = self.late_or_by_value(value);
                let b = match self.segments.borrow().get(buf) {
                    Some(writer) => writer.clone(),
                    None => self.ident(*buf).clone(),
                };
                quote!(#b.push(#v);)
            }
            Stmt::Swap { a, b } => {
                let (a, b) = (self.ident(*a), self.ident(*b));
                quote!(::core::mem::swap(&mut #a, &mut #b);)
            }
            Stmt::Tape { var } => {
                let id = self.ident(*var);
                quote!(let mut #id = #p::Tape::new();)
            }
            Stmt::Slot { var } => {
                let id = self.ident(*var);
                quote!(let mut #id = #p::Slot::new();)
            }
            Stmt::Reserve { tape, range } => {
                let (t, r) = (self.ident(*tape), self.range(range));
                quote!(#t.reserve(::core::iter::Iterator::size_hint(&(#r)).0);)
            }
            Stmt::Save { slot, value } => {
                let (s, v) = (self.ident(*slot), self.late_or_by_value(value));
                quote!(#s.save(#v);)
            }
            Stmt::If { cond, then_, else_ } => {
                let c = self.operand(cond);
                let t = self.block(then_);
                if else_.is_empty() {
                    quote!(if #c { #t })
                } else {
                    let e = self.block(else_);
                    quote!(if #c { #t } else { #e })
                }
            }
            Stmt::For { var, range, body } => self.deferred_loop(&[body], || {
                let id = self.ident(*var);
                let r = self.range(range);
                let b = self.block(body);
                let views = self.element_views(body);
                if views.is_empty() {
                    return quote!(for #id in #r { #b });
                }
                let views = views.iter().map(|(v, written)| {
                    let v = self.ident(*v);
                    if *written {
                        quote!(let #v = &mut #v[..];)
                    } else {
                        quote!(let #v = &#v[..];)
                    }
                });
                quote!({
                    #(#views)*
                    for #id in #r { #b }
                })
            }),
            Stmt::While { header, cond, body } => self.deferred_loop(&[header, body], || {
                let b = self.block(body);
                if header.is_empty() {
                    if let Operand::Const(c) = cond {
                        if c.tokens.to_string() == "true" {
                            return quote!(loop { #b });
                        }
                    }
                }
                let h = self.block(header);
                let c = self.operand(cond);
                quote!(loop {
                    #h
                    if !#c {
                        break;
                    }
                    #b
                })
            }),
        }
    }

    fn range_index(&self, lo: &Option<Operand>, hi: &Option<Operand>, inclusive: bool) -> TokenStream {
        let lo = lo.as_ref().map(|o| self.operand(o));
        let hi = hi.as_ref().map(|o| self.operand(o));
        if inclusive {
            quote!(#lo..=#hi)
        } else {
            quote!(#lo..#hi)
        }
    }

    fn range(&self, r: &Range) -> TokenStream {
        let (lo, hi) = (self.operand(&r.lo), self.operand(&r.hi));
        let stepped = r.adapters.iter().any(|a| matches!(a, Adapter::StepBy(_)));
        let base = match (r.inclusive, stepped) {
            // `(a..=b).step_by(k)` cannot run backwards (`StepBy` needs an exact length,
            // which `RangeInclusive` does not promise); `a..b + 1` is the same space.
            (true, true) => quote!(#lo..#hi + 1),
            (true, false) => quote!(#lo..=#hi),
            (false, _) => quote!(#lo..#hi),
        };
        if r.adapters.is_empty() {
            return base;
        }
        let mut out = quote!((#base));
        for a in &r.adapters {
            out = match a {
                Adapter::Rev => quote!(#out.rev()),
                Adapter::StepBy(k) => {
                    let k = self.operand(k);
                    quote!(#out.step_by(#k))
                }
            };
        }
        out
    }

    fn arg(&self, a: &Arg) -> TokenStream {
        match a {
            Arg::Value(o) => self.by_value(o),
            Arg::Ref(o) => {
                let o = self.operand(o);
                quote!(&#o)
            }
            Arg::Buffer { buf, borrowed: true } => {
                let b = self.ident(*buf);
                quote!(&#b)
            }
            Arg::Buffer { buf, borrowed: false } => {
                let b = self.ident(*buf);
                if self.read_once(*buf) {
                    quote!(#b)
                } else {
                    quote!(::core::clone::Clone::clone(&#b))
                }
            }
            Arg::Slice { buf, lo, hi, inclusive } => {
                let b = self.ident(*buf);
                let r = self.range_index(lo, hi, *inclusive);
                quote!(&#b[#r])
            }
            Arg::Tuple(items) => {
                let items = items.iter().map(|i| self.arg(i));
                quote!((#(#items,)*))
            }
        }
    }

    fn rvalue(&self, rv: &Rvalue, span: Span) -> TokenStream {
        let p = self.private();
        match rv {
            Rvalue::Use(o) => self.by_value(o),
            Rvalue::Binary(op, a, b) => {
                let (a, b) = (self.arith(a), self.arith(b));
                let op = binop_tokens(*op, span);
                quote!(#a #op #b)
            }
            Rvalue::Unary(UnOp::Neg, a) => {
                let a = self.arith(a);
                quote_spanned!(span=> -#a)
            }
            Rvalue::Unary(UnOp::Not, a) => {
                let a = self.operand(a);
                quote_spanned!(span=> !#a)
            }
            Rvalue::Method { recv, method, args, by_ref } => {
                // A method that takes its receiver by value (`m.cholesky()`, `o.expect(…)`)
                // gets a copy when the receiver is read again (by a rule, or later).
                const CONSUMING: &[&str] =
                    &["cholesky", "expect", "unwrap", "lu", "qr", "svd", "symmetric_eigen", "try_inverse"];
                let r = match recv.var() {
                    Some(v) if CONSUMING.contains(&method.to_string().as_str()) && !self.read_once(v) => {
                        let r = self.operand(recv);
                        quote!(::core::clone::Clone::clone(&#r))
                    }
                    _ => self.operand(recv),
                };
                let args = args.iter().zip(by_ref).map(|(a, by_ref)| match by_ref {
                    true => {
                        let a = self.operand(a);
                        quote!(&#a)
                    }
                    false => self.by_value(a),
                });
                quote!(#r.#method(#(#args),*))
            }
            Rvalue::Call { callee, args: call_args } => {
                let args: Vec<TokenStream> = call_args.iter().map(|a| self.arg(a)).collect();
                match callee {
                    Callee::Free { path } => {
                        let path = rebase(path, self.depth);
                        quote_spanned!(span=> #path(#(#args),*))
                    }
                    Callee::Assoc { path } | Callee::Construct { path, .. } | Callee::AssocRule { path, .. } => {
                        let path = rebase(path, self.depth);
                        quote_spanned!(span=> #path(#(#args),*))
                    }
                    Callee::Method { name } => {
                        // The receiver is borrowed by the method call itself, never cloned.
                        let recv = match &call_args[0] {
                            Arg::Value(o) | Arg::Ref(o) => self.operand(o),
                            other => self.arg(other),
                        };
                        let rest = &args[1..];
                        quote_spanned!(span=> #recv.#name(#(#rest),*))
                    }
                    Callee::Tower { path } => {
                        let up: Vec<TokenStream> = match self.depth {
                            0 | 1 => vec![quote!(self)],
                            d => (0..d - 1).map(|_| quote!(super)).collect(),
                        };
                        quote_spanned!(span=> #(#up::)* #path(#(#args),*))
                    }
                    Callee::Rule { trait_name, method } => self.rule_call(trait_name, method, call_args, span, None),
                    Callee::Detach => quote_spanned!(span=> #p::detach(#(#args),*)),
                    Callee::Pullback(pullback) => {
                        let f = self.ident(*pullback);
                        quote_spanned!(span=> #f(#(#args),*))
                    }
                }
            }
            Rvalue::Index { buf, index } => {
                let (b, i) = (self.ident(*buf), self.operand(index));
                if self.func.vars.kind(*buf).element() == Kind::Unknown {
                    quote!(::core::clone::Clone::clone(&#b[#i]))
                } else {
                    quote!(#b[#i])
                }
            }
            Rvalue::Tuple(items) => {
                let items = items.iter().map(|i| self.by_value(i));
                quote!((#(#items,)*))
            }
            Rvalue::Len(b) => {
                let b = self.ident(*b);
                quote!(#b.len())
            }
            Rvalue::SortOrder { buf, direction } => {
                let b = self.ident(*buf);
                let d = format_ident!("{}", format!("{direction:?}"));
                quote!(#p::sort_order(&#b[..], #p::Direction::#d))
            }
            Rvalue::RangeLen(r) => {
                let r = self.range(r);
                quote!(#p::range_len(#r))
            }
            Rvalue::RangeNth(r, position) => {
                let (r, n) = (self.range(r), self.operand(position));
                quote!(#p::range_nth(#r, #n))
            }
            Rvalue::Cast(o, ty) => {
                let o = self.operand(o);
                let ty = rebase_type(ty, self.depth);
                quote!((#o as #ty))
            }
            Rvalue::PatternTest { value, pat } => {
                let v = self.operand(value);
                quote!(::core::matches!(&#v, #pat))
            }
            Rvalue::PatternBind { value, pat, names } => {
                let v = self.operand(value);
                quote!(match &#v {
                    #pat => (#(::core::clone::Clone::clone(#names),)*),
                    _ => ::core::unreachable!(),
                })
            }
            Rvalue::Struct { path, fields, rest } => {
                let path = rebase(path, self.depth);
                let names = fields.iter().map(|(n, _)| n);
                let values = fields.iter().map(|(_, o)| self.by_value(o));
                let rest = rest.as_ref().map(|r| {
                    let r = self.by_value(r);
                    quote!(..#r)
                });
                quote!(#path { #(#names: #values,)* #rest })
            }
            Rvalue::Insert { base, field, value } => {
                let (b, v) = (self.by_value(base), self.by_value(value));
                quote!({
                    let mut tuple = #b;
                    tuple.#field = #v;
                    tuple
                })
            }
            Rvalue::Field(o, m @ syn::Member::Named(_)) => {
                // A field of a borrowed struct (`self.fc1`) is read as a clone: a
                // `Param` or tensor clone is a handle, not a copy of the data.
                let o = self.operand(o);
                quote!(::core::clone::Clone::clone(&#o.#m))
            }
            Rvalue::Field(base, m) => {
                // A field of a tuple read again later (its adjoint's shape, another
                // field) is cloned: moving it out would leave the tuple partly moved.
                let o = self.operand(base);
                match base.var() {
                    Some(v) if !self.read_once(v) => quote!(::core::clone::Clone::clone(&#o.#m)),
                    _ => quote!(#o.#m),
                }
            }
            Rvalue::Pop(t) => {
                let id = self.ident(*t);
                if self.func.vars.role(*t) == Role::Tape {
                    quote!(#id.pop())
                } else {
                    quote!(#p::pop(&mut #id))
                }
            }
            Rvalue::Load(s) => {
                let id = self.ident(*s);
                quote!(#id.load())
            }
            // The zero of a late cell is late too: there is nothing to shape it by
            // until the loop has assigned the cell (see [`late_adjoints`]).
            Rvalue::Zero(Operand::Var(v)) if self.late.contains(v) => {
                let id = self.ident(*v);
                quote!(#p::late_zero(&#id))
            }
            Rvalue::Zero(o) => {
                let o = self.operand(o);
                quote!(#p::zero_like(&#o))
            }
            Rvalue::One(o) => {
                let o = self.operand(o);
                quote!(#p::one_like(&#o))
            }
            Rvalue::Slice { buf, lo, hi, inclusive } => {
                let b = self.ident(*buf);
                let r = self.range_index(lo, hi, *inclusive);
                quote!(#b[#r].to_vec())
            }
        }
    }

    /// Calls of generated items of a function named by a single identifier
    /// (`g::__adjoint_d1`, `g::__adjoint_d1::__adjoint_d1`, `g::__adjoint_grad`), as
    /// (path segments, number of arguments), for the located "not differentiable"
    /// fallback.
    pub fn generated_callees(&self) -> Vec<(Vec<syn::Ident>, usize)> {
        let mut out: Vec<(Vec<syn::Ident>, usize)> = Vec::new();
        walk_stmts(&self.func.body, &mut |s| {
            if let Stmt::Let { rv: Rvalue::Call { callee: Callee::Free { path }, args }, .. } = s {
                let segs: Vec<syn::Ident> = path.segments.iter().map(|s| s.ident.clone()).collect();
                let generated = segs.len() >= 2 && segs[1..].iter().all(|i| i.to_string().starts_with("__adjoint_"));
                if path.leading_colon.is_none() && generated && !out.iter().any(|(p, _)| *p == segs) {
                    out.push((segs, args.len()));
                }
            }
        });
        out
    }
}

fn binop_tokens(op: BinOp, span: Span) -> TokenStream {
    match op {
        BinOp::Add => quote_spanned!(span=> +),
        BinOp::Sub => quote_spanned!(span=> -),
        BinOp::Mul => quote_spanned!(span=> *),
        BinOp::Div => quote_spanned!(span=> /),
        BinOp::Rem => quote_spanned!(span=> %),
        BinOp::Eq => quote_spanned!(span=> ==),
        BinOp::Ne => quote_spanned!(span=> !=),
        BinOp::Lt => quote_spanned!(span=> <),
        BinOp::Le => quote_spanned!(span=> <=),
        BinOp::Gt => quote_spanned!(span=> >),
        BinOp::Ge => quote_spanned!(span=> >=),
        BinOp::BitAnd => quote_spanned!(span=> &),
        BinOp::BitOr => quote_spanned!(span=> |),
        BinOp::BitXor => quote_spanned!(span=> ^),
        BinOp::Shl => quote_spanned!(span=> <<),
        BinOp::Shr => quote_spanned!(span=> >>),
    }
}

/// A valid identifier made from a readable name.
fn sanitize(name: &str) -> String {
    let name = name.trim_start_matches("r#");
    let mut out: String = name.chars().map(|c| if c.is_alphanumeric() || c == '_' { c } else { '_' }).collect();
    if out.is_empty() {
        out = "t".into();
    }
    if out.chars().next().is_some_and(|c| c.is_ascii_digit()) {
        out = format!("t{out}");
    }
    out
}

/// Count the reads of every variable; reads inside a loop body count twice, since the
/// body runs more than once.
fn count_uses(block: &Block, in_loop: bool, uses: &mut HashMap<Var, usize>) {
    count_reads(block, if in_loop { 2 } else { 1 }, 2, uses)
}

/// Add `weight` for every read of a variable in `block`; reads in loop bodies weigh
/// `loop_weight`.
fn count_reads(block: &Block, weight: usize, loop_weight: usize, uses: &mut HashMap<Var, usize>) {
    let add = |o: &Operand, uses: &mut HashMap<Var, usize>| {
        if let Some(v) = o.var() {
            *uses.entry(v).or_insert(0) += weight;
        }
    };
    for s in block {
        match s {
            Stmt::Let { rv, .. } => rv.operands().iter().for_each(|o| add(o, uses)),
            Stmt::Cell { init, .. } => init.iter().for_each(|o| add(o, uses)),
            Stmt::Assign { value, .. } | Stmt::Push { value, .. } | Stmt::Save { value, .. } => add(value, uses),
            Stmt::Accumulate { place, value } => {
                // The target is written, not read: only its index bounds count.
                place.operands().iter().skip(1).for_each(|o| add(o, uses));
                add(value, uses);
            }
            Stmt::Buffer { init, .. } => init.operands().iter().for_each(|o| add(o, uses)),
            Stmt::Store { index, value, .. } => {
                add(index, uses);
                add(value, uses);
            }
            Stmt::Reserve { range, .. } => range.operands().iter().for_each(|o| add(o, uses)),
            // Both buffers are used (neither may be moved away before the swap).
            Stmt::Swap { a, b } => {
                add(&Operand::Var(*a), uses);
                add(&Operand::Var(*b), uses);
            }
            Stmt::Tape { .. } | Stmt::Slot { .. } => {}
            Stmt::If { cond, then_, else_ } => {
                add(cond, uses);
                count_reads(then_, weight, loop_weight, uses);
                count_reads(else_, weight, loop_weight, uses);
            }
            Stmt::For { range, body, .. } => {
                range.operands().iter().for_each(|o| add(o, uses));
                count_reads(body, loop_weight, loop_weight, uses);
            }
            Stmt::While { header, cond, body } => {
                add(cond, uses);
                count_reads(header, loop_weight, loop_weight, uses);
                count_reads(body, loop_weight, loop_weight, uses);
            }
        }
    }
}

/// A path the user wrote relative to their module, as seen from `depth` modules below
/// it: `self::x` becomes `super::x`, `super::x` becomes `super::super::x`, and so on.
pub fn rebase(path: &syn::Path, depth: usize) -> syn::Path {
    let Some(first) = path.segments.first() else { return path.clone() };
    if depth == 0 || path.leading_colon.is_some() || (first.ident != "self" && first.ident != "super") {
        return path.clone();
    }
    let mut out = path.clone();
    let span = first.ident.span();
    let mut segments: syn::punctuated::Punctuated<syn::PathSegment, syn::Token![::]> =
        syn::punctuated::Punctuated::new();
    let ups = if first.ident == "self" { depth } else { depth + 1 };
    for _ in 0..ups {
        segments.push(syn::PathSegment::from(syn::Ident::new("super", span)));
    }
    for s in path.segments.iter().skip(1) {
        segments.push(s.clone());
    }
    out.segments = segments;
    out
}

/// [`rebase`] applied to every path in a type.
pub fn rebase_type(ty: &syn::Type, depth: usize) -> syn::Type {
    struct Rebase(usize);
    impl syn::visit_mut::VisitMut for Rebase {
        fn visit_path_mut(&mut self, p: &mut syn::Path) {
            *p = rebase(p, self.0);
            syn::visit_mut::visit_path_mut(self, p);
        }
    }
    let mut t = ty.clone();
    if depth > 0 {
        syn::visit_mut::VisitMut::visit_type_mut(&mut Rebase(depth), &mut t);
    }
    t
}

/// Cells declared without a value in a block and assigned inside a loop nested in it
/// (the value of `loop { … break v; }`): rustc cannot see that the loop assigns them
/// before they are read after it, so they are emitted as an `Option`.
fn late_cells(block: &Block, depth: usize, declared: &mut HashMap<Var, usize>, out: &mut HashSet<Var>) {
    for s in block {
        match s {
            Stmt::Cell { var, init: None } => {
                declared.insert(*var, depth);
            }
            Stmt::Assign { var, .. } if declared.get(var).is_some_and(|d| *d < depth) => {
                out.insert(*var);
            }
            Stmt::For { .. } | Stmt::While { .. } => {
                for b in s.blocks() {
                    late_cells(b, depth + 1, declared, out);
                }
            }
            _ => {
                for b in s.blocks() {
                    late_cells(b, depth, declared, out);
                }
            }
        }
    }
}

/// The adjoints of late cells, late in turn: the zero of a late cell is built from its
/// value, which may never be assigned (the loop `return`ed first), so it is an
/// `Option` too, and so is the accumulator it starts; the reverse sweep only touches
/// that accumulator on the paths where the loop did assign the cell.
fn late_adjoints(body: &Block, late: &mut HashSet<Var>) -> HashSet<Var> {
    let (mut zeros, mut stores) = (HashSet::new(), HashSet::new());
    loop {
        let before = late.len();
        walk_blocks(body, &mut |block: &Block| {
            for s in block {
                match s {
                    Stmt::Let { dst: Tree::Leaf(z), rv: Rvalue::Zero(Operand::Var(l)), .. } if late.contains(l) => {
                        zeros.insert(*z);
                        late.insert(*z);
                    }
                    Stmt::Cell { var, init: Some(Operand::Var(z)) } if zeros.contains(z) => {
                        late.insert(*var);
                    }
                    // Saved for a loop's reverse sweep (the zero of a loop nested in
                    // another): the tape holds the `Option`, and what it gives back is late.
                    Stmt::Push { buf: store, value: Operand::Var(z) }
                    | Stmt::Save { slot: store, value: Operand::Var(z) }
                        if zeros.contains(z) =>
                    {
                        stores.insert(*store);
                    }
                    Stmt::Let { dst: Tree::Leaf(z), rv: Rvalue::Pop(store) | Rvalue::Load(store), .. }
                        if stores.contains(store) =>
                    {
                        zeros.insert(*z);
                        late.insert(*z);
                    }
                    _ => {}
                }
            }
        });
        if late.len() == before {
            return zeros;
        }
    }
}

/// How many times each variable appears in `t`.
fn count_vars(t: &Tree<Operand>, counts: &mut HashMap<Var, usize>) {
    match t {
        Tree::Leaf(Operand::Var(v)) => *counts.entry(*v).or_default() += 1,
        Tree::Leaf(_) => {}
        Tree::Tuple(items) => items.iter().for_each(|i| count_vars(i, counts)),
    }
}
