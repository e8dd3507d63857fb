//! The computation graph of a `#[differentiable]` function, as the macro sees it.
//!
//! PyTorch draws the graph autograd recorded during one run (`grad_fn` chains,
//! torchviz). Here the graph is known at compile time: `graph!(f)` returns the graph
//! the macro lowered `f` to, and [`Graph::to_dot`] writes it in Graphviz's DOT
//! language (`dot -Tsvg graph.dot -o graph.svg`).
//!
//! `graph!(f)` builds the graph with the constructors below, as a constant; by hand:
//!
//! ```
//! use adjoint_runtime::graph::{Edge, Graph, Node};
//!
//! // `fn f(x: f64, #[no_grad] y: f64) -> f64 { x * y }`
//! const G: Graph = Graph {
//!     name: "f",
//!     nodes: &[
//!         Node::input("x").requires_grad().active(),
//!         Node::input("y"),
//!         Node::op("mul").active(),
//!         Node::output("output").active(),
//!     ],
//!     edges: &[Edge::new(0, 2), Edge::new(1, 2), Edge::new(2, 3)],
//!     clusters: &[],
//! };
//! assert_eq!(G.operands(G.find("mul").unwrap()), [0, 1]);
//! assert!(G.to_dot().contains("n0 -> n2;"));
//! ```
//!
//! The graph is the function's *code*, not one execution of it: a loop body appears
//! once, inside a cluster labelled with its iteration range, and a value carried from
//! one iteration to the next (a mutable local) is a [`NodeKind::Variable`] node with
//! edges in from every assignment and out to every read, so the cycle is visible. Both
//! arms of an `if` appear, in clusters `then` and `else` under the `if` cluster.

use std::fmt::{self, Write};

/// A computation graph: nodes, the data-flow edges between them, and the loop and
/// branch regions (clusters) that contain some of them.
///
/// Node and cluster ids are indices into [`nodes`](Graph::nodes) and
/// [`clusters`](Graph::clusters). The data is static: a `Graph` is a few slices, and
/// copying it is free.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Graph {
    /// The function's name.
    pub name: &'static str,
    pub nodes: &'static [Node],
    /// Edges from each operand to the node that reads it, in the order of the operands.
    pub edges: &'static [Edge],
    pub clusters: &'static [Cluster],
}

/// One node of a [`Graph`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Node {
    pub kind: NodeKind,
    /// A parameter's or a variable's name, an operation (`add`, `mul`, `matmul`, `powi`,
    /// the name of a called function or method), a constant's source text, the header
    /// of a loop or branch (`for i in 0..n`, `while`, `if`), or `output`.
    pub label: &'static str,
    /// The user's variable an operation's result is bound to (`y` for `let y = a * b;`).
    pub var: Option<&'static str>,
    /// On the differentiated path: the value depends on an input `grad!` differentiates
    /// and the output depends on it, so a derivative flows through it.
    pub active: bool,
    /// The innermost loop or branch region containing the node.
    pub cluster: Option<usize>,
}

/// What a [`Node`] stands for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NodeKind {
    /// A parameter (a leaf). `requires_grad`: `grad!` differentiates with respect to it.
    Input { requires_grad: bool },
    /// A literal or a named constant.
    Constant,
    /// One primitive operation or call.
    Op,
    /// A mutable local or a buffer, written in a loop or a branch: edges come in from
    /// its initial value and every assignment or store, and go out to every read.
    Variable,
    /// The header of a loop or branch: its iteration range or condition flows in; a
    /// `for` loop's index flows out.
    Control,
    /// The function's result (one node per field of a tuple result).
    Output,
}

/// A data-flow edge: the value of node `from` is an operand of node `to`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Edge {
    pub from: usize,
    pub to: usize,
}

/// A loop or branch region of a [`Graph`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cluster {
    pub kind: ClusterKind,
    /// `for i in 0..n` (the iteration range), `while`, `if`, `then` or `else`.
    pub label: &'static str,
    /// The enclosing region.
    pub parent: Option<usize>,
}

/// What a [`Cluster`] stands for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ClusterKind {
    /// A counted loop: its statements run once per index of the range.
    For,
    /// A loop that runs while a condition holds (also `loop`, and a `for` loop that
    /// may `break` early).
    While,
    /// A branch: holds the `if` header and the `then` and `else` regions.
    If,
    /// The statements that run when the condition holds.
    Then,
    /// The statements that run when it does not.
    Else,
}

impl Node {
    const fn new(kind: NodeKind, label: &'static str) -> Node {
        Node { kind, label, var: None, active: false, cluster: None }
    }

    /// A parameter that `grad!` does not differentiate.
    pub const fn input(label: &'static str) -> Node {
        Node::new(NodeKind::Input { requires_grad: false }, label)
    }

    pub const fn constant(label: &'static str) -> Node {
        Node::new(NodeKind::Constant, label)
    }

    pub const fn op(label: &'static str) -> Node {
        Node::new(NodeKind::Op, label)
    }

    pub const fn variable(label: &'static str) -> Node {
        Node::new(NodeKind::Variable, label)
    }

    pub const fn control(label: &'static str) -> Node {
        Node::new(NodeKind::Control, label)
    }

    pub const fn output(label: &'static str) -> Node {
        Node::new(NodeKind::Output, label)
    }

    /// The same parameter, differentiated by `grad!`.
    pub const fn requires_grad(self) -> Node {
        Node { kind: NodeKind::Input { requires_grad: true }, ..self }
    }

    /// The same node, bound to the user's variable `var`.
    pub const fn var(self, var: &'static str) -> Node {
        Node { var: Some(var), ..self }
    }

    /// The same node, on the differentiated path.
    pub const fn active(self) -> Node {
        Node { active: true, ..self }
    }

    /// The same node, inside region `cluster`.
    pub const fn in_cluster(self, cluster: usize) -> Node {
        Node { cluster: Some(cluster), ..self }
    }

    /// The text shown for the node: the operation, preceded by the variable it is bound to.
    pub fn text(&self) -> String {
        match self.var {
            Some(v) => format!("{v} = {}", self.label),
            None => self.label.to_string(),
        }
    }
}

impl Edge {
    pub const fn new(from: usize, to: usize) -> Edge {
        Edge { from, to }
    }
}

impl Cluster {
    pub const fn new(kind: ClusterKind, label: &'static str) -> Cluster {
        Cluster { kind, label, parent: None }
    }

    /// The same region, nested in region `parent`.
    pub const fn in_cluster(self, parent: usize) -> Cluster {
        Cluster { parent: Some(parent), ..self }
    }
}

impl Graph {
    /// The nodes whose values node `id` reads, in operand order (a node read twice,
    /// as in `x * x`, appears twice).
    pub fn operands(&self, id: usize) -> Vec<usize> {
        self.edges.iter().filter(|e| e.to == id).map(|e| e.from).collect()
    }

    /// The nodes that read the value of node `id`.
    pub fn users(&self, id: usize) -> Vec<usize> {
        self.edges.iter().filter(|e| e.from == id).map(|e| e.to).collect()
    }

    /// The first node with this label.
    pub fn find(&self, label: &str) -> Option<usize> {
        self.nodes.iter().position(|n| n.label == label)
    }

    /// The graph in Graphviz's DOT language. Parameters are boxes (blue when `grad!`
    /// differentiates them, as torchviz draws leaves that require a gradient),
    /// operations ellipses, constants plain text, mutable variables rounded boxes, loop
    /// and branch headers diamonds, the output green; nodes off the differentiated path
    /// are grey. Loops and branches are clusters (dashed and dotted frames).
    pub fn to_dot(&self) -> String {
        let mut out = String::new();
        self.write_dot(&mut out).expect("writing to a String cannot fail");
        out
    }

    fn write_dot(&self, out: &mut String) -> fmt::Result {
        writeln!(out, "digraph {} {{", quoted(self.name))?;
        writeln!(out, "    graph [label={}, labelloc=t, fontname=\"Helvetica\"];", quoted(self.name))?;
        writeln!(out, "    node [fontname=\"Helvetica\", fontsize=11];")?;
        writeln!(out, "    edge [arrowsize=0.7];")?;
        self.write_region(out, None, 1)?;
        for e in self.edges {
            let on_path = self.nodes[e.from].active && self.nodes[e.to].active;
            let style = if on_path { "" } else { " [color=grey60]" };
            writeln!(out, "    n{} -> n{}{style};", e.from, e.to)?;
        }
        writeln!(out, "}}")
    }

    /// The nodes and nested clusters directly inside `region` (`None`: the top level).
    fn write_region(&self, out: &mut String, region: Option<usize>, depth: usize) -> fmt::Result {
        let indent = "    ".repeat(depth);
        for (i, n) in self.nodes.iter().enumerate().filter(|(_, n)| n.cluster == region) {
            writeln!(out, "{indent}n{i} [label={}, {}];", quoted(&n.text()), node_style(n))?;
        }
        for (c, cluster) in self.clusters.iter().enumerate().filter(|(_, c)| c.parent == region) {
            let style = match cluster.kind {
                ClusterKind::For | ClusterKind::While => "dashed",
                ClusterKind::If | ClusterKind::Then | ClusterKind::Else => "dotted",
            };
            writeln!(out, "{indent}subgraph cluster_{c} {{")?;
            writeln!(out, "{indent}    label={}; style={style}; color=grey40;", quoted(cluster.label))?;
            self.write_region(out, Some(c), depth + 1)?;
            writeln!(out, "{indent}}}")?;
        }
        Ok(())
    }
}

/// The DOT attributes that draw a node of this kind.
fn node_style(n: &Node) -> String {
    let (shape, fill) = match n.kind {
        NodeKind::Input { requires_grad: true } => ("box", "lightblue"),
        NodeKind::Input { requires_grad: false } => ("box", "white"),
        NodeKind::Constant => ("plaintext", "white"),
        NodeKind::Op => ("ellipse", "white"),
        NodeKind::Variable => ("box", "lightyellow"),
        NodeKind::Control => ("diamond", "white"),
        NodeKind::Output => ("box", "darkolivegreen1"),
    };
    let rounded = if n.kind == NodeKind::Variable { "rounded," } else { "" };
    // Inputs and the output keep their colours: they are the ends of the graph.
    let grey = !n.active && !matches!(n.kind, NodeKind::Input { .. } | NodeKind::Output);
    let colour = if grey { ", color=grey60, fontcolor=grey45" } else { "" };
    format!("shape={shape}, style=\"{rounded}filled\", fillcolor={fill}{colour}")
}

/// A DOT string literal: quotes and backslashes escaped, line breaks as `\n`.
fn quoted(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => {}
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// The DOT text, as [`Graph::to_dot`].
impl fmt::Display for Graph {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_dot())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BRANCHY: Graph = Graph {
        name: "f \"quoted\"",
        nodes: &[
            Node::input("x").requires_grad().active(),
            Node::constant("0.0"),
            Node::op("gt"),
            Node::control("if").in_cluster(0),
            Node::op("neg").var("y\\z").active().in_cluster(1),
            Node::output("output").active(),
        ],
        edges: &[Edge::new(0, 2), Edge::new(1, 2), Edge::new(2, 3), Edge::new(0, 4), Edge::new(4, 5)],
        clusters: &[Cluster::new(ClusterKind::If, "if"), Cluster::new(ClusterKind::Then, "then").in_cluster(0)],
    };

    #[test]
    fn labels_are_escaped() {
        let dot = BRANCHY.to_dot();
        assert!(dot.starts_with("digraph \"f \\\"quoted\\\"\" {"), "{dot}");
        assert!(dot.contains("n4 [label=\"y\\\\z = neg\""), "{dot}");
    }

    #[test]
    fn clusters_nest() {
        let dot = BRANCHY.to_dot();
        let outer = dot.find("subgraph cluster_0 {").expect("cluster 0");
        let inner = dot.find("subgraph cluster_1 {").expect("cluster 1");
        let node = dot.find("n4 [").expect("node 4");
        assert!(outer < inner && inner < node, "{dot}");
        assert_eq!(dot.matches('{').count(), dot.matches('}').count());
    }

    #[test]
    fn off_path_is_grey() {
        let dot = BRANCHY.to_dot();
        assert!(dot.contains("n0 -> n2 [color=grey60];"), "{dot}");
        assert!(dot.contains("n4 -> n5;"), "{dot}");
        let gt = dot.lines().find(|l| l.contains("n2 [")).expect("gt");
        assert!(gt.contains("fontcolor=grey45"), "{gt}");
    }

    #[test]
    fn operands_in_order() {
        assert_eq!(BRANCHY.operands(2), [0, 1]);
        assert_eq!(BRANCHY.users(0), [2, 4]);
        assert_eq!(BRANCHY.find("neg"), Some(4));
    }
}
