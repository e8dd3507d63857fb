//! The computation graph of the user's function, for `graph!(f)`: the lowered IR →
//! a constant `adjoint::graph::Graph` built by a companion `f::__adjoint_graph()`.
//!
//! The graph is read off the IR before the reverse transform, so it shows the
//! function as the macro understood it: one node per parameter, per single-operation
//! statement, per constant operand and per output field, and an edge from every
//! operand to the node that reads it. Control flow stays visible instead of being
//! unrolled: a loop or a branch is a cluster holding its statements, with a header
//! node its range or condition flows into, and a mutable local written inside it is
//! one node that every assignment flows into and every read flows out of. Nodes are
//! marked active as the transform's activity analysis sees them.

use std::collections::{HashMap, HashSet};

use proc_macro2::{Span, TokenStream};
use quote::{format_ident, quote};
use syn::visit::Visit;

use crate::activity::{self, Activity};
use crate::ir::*;
use crate::names;
use crate::sig::Signature;

/// The companion that returns the graph of the user's function: `__adjoint_graph` in
/// the function's module, or the sibling method `__adjoint_graph_m` of a method `m`.
pub fn companion(
    sig: &Signature,
    body: &syn::Block,
    func: &Func,
    wrt: &[bool],
    krate: &syn::Path,
    method: bool,
) -> TokenStream {
    let graph = Builder::build(func, wrt, method, bound_names(sig, body));
    let name = sig.ident.to_string();
    let (fname, vis) = if method {
        let vis = &sig.vis;
        (format_ident!("{}", names::method_companion(names::GRAPH, &name)), quote!(#vis))
    } else {
        (format_ident!("{}", names::GRAPH), quote!(pub))
    };
    let doc = format!("The computation graph of `{name}`: what `graph!({name})` returns.");
    let value = graph.tokens(&name);
    let imports = graph.imports();
    quote! {
        #[doc = #doc]
        #[doc(hidden)]
        #[allow(dead_code)]
        #vis fn #fname() -> #krate::graph::Graph {
            use #krate::graph::{#(#imports),*};
            const GRAPH: Graph = #value;
            GRAPH
        }
    }
}

/// What `graph!(f)` calls when `f` has errors: its own use then adds no error.
pub fn error_stub(krate: &syn::Path) -> TokenStream {
    let fname = format_ident!("{}", names::GRAPH);
    quote! {
        pub fn #fname() -> #krate::graph::Graph {
            ::core::unreachable!()
        }
    }
}

/// The names the user binds (parameters, `let`, loop and `match` patterns): a
/// variable of the IR that carries one of them is shown with it; the other names in
/// the IR are invented by the lowering (`sum`, `x_i`, `go_on`, …).
fn bound_names(sig: &Signature, body: &syn::Block) -> HashSet<String> {
    #[derive(Default)]
    struct Names(HashSet<String>);
    impl<'ast> Visit<'ast> for Names {
        fn visit_pat_ident(&mut self, p: &'ast syn::PatIdent) {
            self.0.insert(p.ident.to_string());
            syn::visit::visit_pat_ident(self, p);
        }
    }
    let mut names = Names::default();
    for p in &sig.params {
        names.visit_pat(&p.pat);
    }
    names.visit_block(body);
    names.0
}

enum Shape {
    Input { requires_grad: bool },
    Constant,
    Op,
    Variable,
    Control,
    Output,
}

struct NodeDesc {
    shape: Shape,
    label: String,
    var: Option<String>,
    active: bool,
    cluster: Option<usize>,
}

struct ClusterDesc {
    /// The variant of `ClusterKind`.
    kind: &'static str,
    label: String,
    parent: Option<usize>,
}

/// The graph under construction.
struct Builder<'a> {
    func: &'a Func,
    activity: Activity,
    user_names: HashSet<String>,
    nodes: Vec<NodeDesc>,
    edges: Vec<(usize, usize)>,
    clusters: Vec<ClusterDesc>,
    /// The node holding each variable's value.
    defs: HashMap<Var, usize>,
    /// The cluster new nodes go into.
    region: Option<usize>,
}

impl<'a> Builder<'a> {
    /// The graph of `func`; `method`: its first parameter is the receiver.
    fn build(func: &'a Func, wrt: &[bool], method: bool, user_names: HashSet<String>) -> Builder<'a> {
        // Active as for `grad!`: with respect to the `wrt` parameters, for every output.
        let inputs: Vec<Var> = func
            .params
            .iter()
            .zip(wrt)
            .filter(|(_, w)| **w)
            .flat_map(|(p, _)| p.pat.leaves().into_iter().copied())
            .collect();
        let outputs: Vec<Var> = func.ret.leaves().iter().filter_map(|o| o.var()).collect();
        let activity = activity::analyze(func, &inputs, &outputs);
        let mut b = Builder {
            func,
            activity,
            user_names,
            nodes: Vec::new(),
            edges: Vec::new(),
            clusters: Vec::new(),
            defs: HashMap::new(),
            region: None,
        };
        for (i, (p, w)) in func.params.iter().zip(wrt).enumerate() {
            for v in p.pat.leaves() {
                // The IR calls the receiver `this`; the user wrote `self`.
                let label = if method && i == 0 { "self".to_string() } else { func.vars.info(*v).name.clone() };
                let active = b.is_active(*v);
                let n = b.node(Shape::Input { requires_grad: *w }, label, active);
                b.defs.insert(*v, n);
            }
        }
        b.block(&func.body);
        let leaves = func.ret.leaves();
        let single = matches!(func.ret, Tree::Leaf(_));
        for (i, o) in leaves.into_iter().enumerate() {
            let label = if single { "output".to_string() } else { format!("output.{i}") };
            let active = o.var().is_some_and(|v| b.is_active(v));
            b.reader(Shape::Output, label, active, std::slice::from_ref(o));
        }
        b
    }

    fn is_active(&self, v: Var) -> bool {
        self.activity.is_active(self.func, v)
    }

    fn node(&mut self, shape: Shape, label: String, active: bool) -> usize {
        self.nodes.push(NodeDesc { shape, label, var: None, active, cluster: self.region });
        self.nodes.len() - 1
    }

    fn cluster(&mut self, kind: &'static str, label: String) -> usize {
        self.clusters.push(ClusterDesc { kind, label, parent: self.region });
        self.clusters.len() - 1
    }

    /// Build `block`'s nodes inside a new cluster.
    fn in_cluster(&mut self, kind: &'static str, label: String, f: impl FnOnce(&mut Self)) {
        let c = self.cluster(kind, label);
        let outer = self.region.replace(c);
        f(self);
        self.region = outer;
    }

    /// The node of an operand's value: a variable's defining node, or a new node for a
    /// constant (each use of a constant is its own node, placed next to its reader).
    fn source(&mut self, o: &Operand) -> usize {
        match o {
            Operand::Var(v) => self.var_node(*v),
            Operand::Const(c) => self.node(Shape::Constant, tokens_text(&c.tokens), false),
        }
    }

    fn var_node(&mut self, v: Var) -> usize {
        if let Some(n) = self.defs.get(&v) {
            return *n;
        }
        // Every variable is defined before it is read; should a read come first, the
        // variable still gets a node of its own rather than losing the edge.
        let label = self.func.vars.info(v).name.clone();
        let active = self.is_active(v);
        let n = self.node(Shape::Variable, label, active);
        self.defs.insert(v, n);
        n
    }

    /// A new node reading `operands`. Their nodes come first, so a constant is listed
    /// (and drawn) before the node that reads it.
    fn reader(&mut self, shape: Shape, label: String, active: bool, operands: &[Operand]) -> usize {
        let sources: Vec<usize> = operands.iter().map(|o| self.source(o)).collect();
        let n = self.node(shape, label, active);
        self.edges.extend(sources.into_iter().map(|s| (s, n)));
        n
    }

    /// An edge from `from` into the existing node `to` (a write to a variable).
    fn flow(&mut self, from: &Operand, to: usize) {
        let n = self.source(from);
        self.edges.push((n, to));
    }

    /// A node for a variable written in place (a cell, a buffer, a tape or slot),
    /// reading its initial value.
    fn variable(&mut self, v: Var, init: &[Operand]) {
        let label = self.func.vars.info(v).name.clone();
        let active = self.is_active(v);
        let n = self.reader(Shape::Variable, label, active, init);
        self.defs.insert(v, n);
    }

    fn block(&mut self, block: &Block) {
        for s in block {
            self.stmt(s);
        }
    }

    fn stmt(&mut self, s: &Stmt) {
        match s {
            Stmt::Let { dst, rv: Rvalue::Use(o), .. } => {
                // A copy (reading a cell is one): the value keeps its node.
                let n = self.source(o);
                for v in dst.leaves() {
                    self.defs.insert(*v, n);
                }
            }
            Stmt::Let { dst, rv, .. } => {
                let label = op_label(rv, self.func);
                let leaves = dst.leaves();
                let active = leaves.iter().any(|v| self.is_active(**v));
                let n = self.reader(Shape::Op, label, active, &rv.operands());
                // `let y = a * b;` → `y`; `let (q, r) = g(x);` → `(q, r)`.
                let names: Vec<&String> = leaves.iter().map(|v| &self.func.vars.info(**v).name).collect();
                if !names.is_empty() && names.iter().all(|n| self.user_names.contains(*n)) {
                    let var = match &names[..] {
                        [one] => (**one).clone(),
                        many => format!("({})", many.iter().map(|n| n.as_str()).collect::<Vec<_>>().join(", ")),
                    };
                    if var != self.nodes[n].label {
                        self.nodes[n].var = Some(var);
                    }
                }
                for v in leaves {
                    self.defs.insert(*v, n);
                }
            }
            Stmt::Cell { var, init } => self.variable(*var, init.as_slice()),
            Stmt::Assign { var, value } => {
                let n = self.var_node(*var);
                self.flow(value, n);
            }
            // `Accumulate`, `Tape`, `Slot`, `Save` and `Reserve` are written by the reverse
            // transform: a user's function has none, but they are drawn like the others.
            Stmt::Accumulate { place, value } => {
                let n = self.var_node(place.target());
                self.flow(value, n);
            }
            Stmt::Buffer { var, init } => self.variable(*var, &init.operands()),
            Stmt::Store { buf, index, value } => {
                let active = self.is_active(*buf) && self.activity.operand_active(self.func, value);
                let n = self.reader(Shape::Op, "store".into(), active, &[index.clone(), value.clone()]);
                let b = self.var_node(*buf);
                self.edges.push((n, b));
            }
            Stmt::Push { buf, value } => {
                let active = self.is_active(*buf) && self.activity.operand_active(self.func, value);
                let n = self.reader(Shape::Op, "push".into(), active, std::slice::from_ref(value));
                let b = self.var_node(*buf);
                self.edges.push((n, b));
            }
            Stmt::Tape { var } | Stmt::Slot { var } => self.variable(*var, &[]),
            Stmt::Swap { a, b } => {
                let active = self.is_active(*a) || self.is_active(*b);
                let n = self.reader(Shape::Op, "swap".into(), active, &[Operand::Var(*a), Operand::Var(*b)]);
                let (na, nb) = (self.var_node(*a), self.var_node(*b));
                self.edges.push((n, na));
                self.edges.push((n, nb));
            }
            Stmt::Save { slot, value } => {
                let n = self.var_node(*slot);
                self.flow(value, n);
            }
            Stmt::Reserve { tape, range } => {
                let n = self.var_node(*tape);
                for o in range.operands() {
                    self.flow(&o, n);
                }
            }
            Stmt::If { cond, then_, else_ } => self.in_cluster("If", "if".into(), |b| {
                b.reader(Shape::Control, "if".into(), false, std::slice::from_ref(cond));
                for (kind, arm) in [("Then", then_), ("Else", else_)] {
                    if !arm.is_empty() {
                        b.in_cluster(kind, kind.to_lowercase(), |b| b.block(arm));
                    }
                }
            }),
            Stmt::For { var, range, body } => {
                let index = &self.func.vars.info(*var).name;
                let header = format!("for {index} in {}", range_text(range, self.func));
                self.in_cluster("For", header.clone(), |b| {
                    // The bounds are written in the header; only variables get edges.
                    let bounds: Vec<Operand> = range.operands().into_iter().filter(|o| o.var().is_some()).collect();
                    let n = b.reader(Shape::Control, header, false, &bounds);
                    b.defs.insert(*var, n);
                    b.block(body);
                });
            }
            Stmt::While { header, cond, body } => self.in_cluster("While", "while".into(), |b| {
                b.block(header);
                b.reader(Shape::Control, "while".into(), false, std::slice::from_ref(cond));
                b.block(body);
            }),
        }
    }

    /// The names of `adjoint::graph` the constant uses.
    fn imports(&self) -> Vec<syn::Ident> {
        let mut names = vec!["Graph", "Node"];
        if !self.edges.is_empty() {
            names.push("Edge");
        }
        if !self.clusters.is_empty() {
            names.extend(["Cluster", "ClusterKind"]);
        }
        names.into_iter().map(|n| syn::Ident::new(n, Span::call_site())).collect()
    }

    /// The `Graph { … }` literal.
    fn tokens(&self, name: &str) -> TokenStream {
        let nodes = self.nodes.iter().map(|n| {
            let label = &n.label;
            let mut t = match n.shape {
                Shape::Input { requires_grad } => {
                    let grad = requires_grad.then(|| quote!(.requires_grad()));
                    quote!(Node::input(#label) #grad)
                }
                Shape::Constant => quote!(Node::constant(#label)),
                Shape::Op => quote!(Node::op(#label)),
                Shape::Variable => quote!(Node::variable(#label)),
                Shape::Control => quote!(Node::control(#label)),
                Shape::Output => quote!(Node::output(#label)),
            };
            if let Some(v) = &n.var {
                t.extend(quote!(.var(#v)));
            }
            if n.active {
                t.extend(quote!(.active()));
            }
            if let Some(c) = n.cluster {
                t.extend(quote!(.in_cluster(#c)));
            }
            t
        });
        let edges = self.edges.iter().map(|(from, to)| quote!(Edge::new(#from, #to)));
        let clusters = self.clusters.iter().map(|c| {
            let (kind, label) = (syn::Ident::new(c.kind, Span::call_site()), &c.label);
            let parent = c.parent.map(|p| quote!(.in_cluster(#p)));
            quote!(Cluster::new(ClusterKind::#kind, #label) #parent)
        });
        quote! {
            Graph {
                name: #name,
                nodes: &[#(#nodes),*],
                edges: &[#(#edges),*],
                clusters: &[#(#clusters),*],
            }
        }
    }
}

/// The label of the operation a right-hand side performs.
fn op_label(rv: &Rvalue, func: &Func) -> String {
    match rv {
        Rvalue::Use(_) => "copy".into(),
        Rvalue::Binary(op, ..) => binary_name(*op).into(),
        Rvalue::Unary(UnOp::Neg, _) => "neg".into(),
        Rvalue::Unary(UnOp::Not, _) => "not".into(),
        Rvalue::Method { method, .. } => method.to_string(),
        Rvalue::Call { callee, .. } => match callee {
            Callee::Free { path }
            | Callee::Assoc { path }
            | Callee::Tower { path }
            | Callee::Construct { path, .. }
            | Callee::AssocRule { path, .. } => path_label(path),
            Callee::Rule { trait_name, method } => format!("{trait_name}::{method}"),
            Callee::Method { name } => name.to_string(),
            Callee::Detach => "detach".into(),
            Callee::Pullback(_) => "pullback".into(),
        },
        Rvalue::Index { .. } => "index".into(),
        Rvalue::Len(_) => "len".into(),
        Rvalue::PatternTest { pat, .. } => format!("matches {}", tokens_text(&quote!(#pat))),
        Rvalue::PatternBind { pat, .. } => format!("bind {}", tokens_text(&quote!(#pat))),
        Rvalue::SortOrder { .. } => "sort_order".into(),
        Rvalue::RangeLen(_) => "range_len".into(),
        Rvalue::RangeNth(..) => "range_nth".into(),
        Rvalue::Cast(_, ty) => format!("as {}", tokens_text(&quote!(#ty))),
        Rvalue::Field(_, member) => format!(".{}", tokens_text(&quote!(#member))),
        Rvalue::Insert { field, .. } => format!("insert .{}", tokens_text(&quote!(#field))),
        Rvalue::Struct { path, .. } => tokens_text(&quote!(#path)),
        Rvalue::Pop(t) => format!("pop {}", func.vars.info(*t).name),
        Rvalue::Load(s) => format!("load {}", func.vars.info(*s).name),
        Rvalue::Zero(_) => "zero_like".into(),
        Rvalue::One(_) => "one_like".into(),
        Rvalue::Slice { .. } => "slice".into(),
        Rvalue::Tuple(_) => "tuple".into(),
    }
}

fn binary_name(op: BinOp) -> &'static str {
    match op {
        BinOp::Add => "add",
        BinOp::Sub => "sub",
        BinOp::Mul => "mul",
        BinOp::Div => "div",
        BinOp::Rem => "rem",
        BinOp::Eq => "eq",
        BinOp::Ne => "ne",
        BinOp::Lt => "lt",
        BinOp::Le => "le",
        BinOp::Gt => "gt",
        BinOp::Ge => "ge",
        BinOp::BitAnd => "and",
        BinOp::BitOr => "or",
        BinOp::BitXor => "xor",
        BinOp::Shl => "shl",
        BinOp::Shr => "shr",
    }
}

/// A callee's path as the user wrote it; a nested derivative (`g::__adjoint_grad`,
/// from `grad!(g)`) is shown as the macro call.
fn path_label(path: &syn::Path) -> String {
    let segs: Vec<String> = path.segments.iter().map(|s| s.ident.to_string()).collect();
    match segs.split_last() {
        Some((last, rest)) if !rest.is_empty() && last.starts_with("__adjoint_") => {
            format!("{}!({})", last.trim_start_matches("__adjoint_"), rest.join("::"))
        }
        _ => tokens_text(&quote!(#path)),
    }
}

/// A loop's iteration space as written: `0..n`, `(0..=n).rev()`, `(a..b).step_by(k)`.
fn range_text(range: &Range, func: &Func) -> String {
    let text = |o: &Operand| match o {
        Operand::Var(v) => func.vars.info(*v).name.clone(),
        Operand::Const(c) => tokens_text(&c.tokens),
    };
    let dots = if range.inclusive { "..=" } else { ".." };
    let base = format!("{}{dots}{}", text(&range.lo), text(&range.hi));
    if range.adapters.is_empty() {
        return base;
    }
    let mut out = format!("({base})");
    for a in &range.adapters {
        match a {
            Adapter::Rev => out.push_str(".rev()"),
            Adapter::StepBy(k) => out.push_str(&format!(".step_by({})", text(k))),
        }
    }
    out
}

/// Tokens as source text: `T::ZERO`, `(-1.0)`, `Vec<f64>`, without the spaces
/// `TokenStream::to_string` puts between every two tokens (a space stays only between
/// two words, as in `dyn Trait`).
fn tokens_text(tokens: &TokenStream) -> String {
    let spaced = tokens.to_string();
    let chars: Vec<char> = spaced.chars().collect();
    let word = |c: Option<&char>| c.is_some_and(|c| c.is_alphanumeric() || *c == '_');
    let mut out = String::with_capacity(spaced.len());
    for (i, c) in chars.iter().enumerate() {
        if *c == ' ' && !(word(i.checked_sub(1).and_then(|j| chars.get(j))) && word(chars.get(i + 1))) {
            continue;
        }
        out.push(*c);
    }
    out
}
