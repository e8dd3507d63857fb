//! `graph!(f)`: the computation graph the macro builds from a function's IR — its
//! nodes, the edges from each operand to its reader, the regions of loops and
//! branches, which nodes are on the differentiated path — and its DOT text.

#![allow(clippy::needless_range_loop, clippy::assign_op_pattern)]

use std::collections::HashSet;

use adjoint::graph::{ClusterKind, Graph, NodeKind};
use adjoint::prelude::*;

fn labels(g: &Graph) -> Vec<&'static str> {
    g.nodes.iter().map(|n| n.label).collect()
}

/// The only node with this label.
fn only(g: &Graph, label: &str) -> usize {
    let ids: Vec<usize> = (0..g.nodes.len()).filter(|i| g.nodes[*i].label == label).collect();
    assert_eq!(ids.len(), 1, "nodes labelled `{label}` in {:?}", labels(g));
    ids[0]
}

/// The labels of the operands of node `id`, in operand order.
fn operand_labels(g: &Graph, id: usize) -> Vec<&'static str> {
    g.operands(id).iter().map(|o| g.nodes[*o].label).collect()
}

fn is_input(g: &Graph, id: usize, requires_grad: bool) -> bool {
    g.nodes[id].kind == NodeKind::Input { requires_grad }
}

/// The DOT text is a well-formed digraph: one statement per node, every edge between
/// declared nodes, one edge statement per edge, braces balanced and closed at the end.
fn check_dot(g: &Graph) {
    let dot = g.to_dot();
    assert!(dot.starts_with(&format!("digraph \"{}\" {{\n", g.name)), "{dot}");
    assert!(dot.trim_end().ends_with('}'), "{dot}");
    let mut depth = 0i32;
    for c in dot.chars() {
        depth += match c {
            '{' => 1,
            '}' => -1,
            _ => 0,
        };
        assert!(depth >= 0, "{dot}");
    }
    assert_eq!(depth, 0, "{dot}");
    let mut declared = HashSet::new();
    let mut edges = 0;
    for line in dot.lines().map(str::trim) {
        if let Some((from, rest)) = line.split_once(" -> ") {
            let to = rest.split([' ', ';']).next().expect("edge target");
            assert!(declared.contains(from) && declared.contains(to), "undeclared node in `{line}`");
            edges += 1;
        } else if line.starts_with('n') && line.contains(" [label=") {
            let id = line.split(' ').next().expect("node id");
            assert!(declared.insert(id.to_string()), "`{id}` declared twice");
            assert!(line.ends_with("];"), "{line}");
        }
    }
    assert_eq!(declared.len(), g.nodes.len(), "{dot}");
    assert_eq!(edges, g.edges.len(), "{dot}");
    assert_eq!(dot.matches("subgraph cluster_").count(), g.clusters.len(), "{dot}");
}

#[differentiable]
fn straight(x: f64, y: f64) -> f64 {
    let p = x * y;
    p.sin() + x
}

#[test]
fn straight_line() {
    let g = graph!(straight);
    assert_eq!(g.name, "straight");
    assert_eq!(labels(&g), ["x", "y", "mul", "sin", "add", "output"]);
    assert!(is_input(&g, 0, true) && is_input(&g, 1, true));
    let mul = only(&g, "mul");
    assert_eq!(g.nodes[mul].var, Some("p"));
    assert_eq!(g.nodes[mul].text(), "p = mul");
    assert_eq!(g.operands(mul), [0, 1]);
    assert_eq!(operand_labels(&g, only(&g, "sin")), ["mul"]);
    assert_eq!(operand_labels(&g, only(&g, "add")), ["sin", "x"]);
    let out = only(&g, "output");
    assert_eq!(g.nodes[out].kind, NodeKind::Output);
    assert_eq!(operand_labels(&g, out), ["add"]);
    assert!(g.users(out).is_empty());
    assert!(g.nodes.iter().all(|n| n.active && n.cluster.is_none()));
    assert!(g.clusters.is_empty());
    check_dot(&g);
}

/// The seed's graph: `((a + b)·b²) + ((c − d)·d²)`.
#[differentiable]
fn seed(a: f64, b: f64, c: f64, d: f64) -> f64 {
    ((a + b) * b.powi(2)) + ((c - d) * d.powi(2))
}

#[test]
fn seed_expression() {
    let g = graph!(seed);
    // 4 leaves, 2 constant exponents, add, sub, 2 powi, 2 mul, the final add, output.
    assert_eq!(g.nodes.len(), 14);
    assert_eq!(g.edges.len(), 15);
    let count = |label: &str| g.nodes.iter().filter(|n| n.label == label).count();
    assert_eq!((count("add"), count("sub"), count("mul"), count("powi"), count("2")), (2, 1, 2, 2, 2));
    let (a, b, c, d) = (0, 1, 2, 3);
    assert_eq!(labels(&g)[..4], ["a", "b", "c", "d"]);
    let sub = only(&g, "sub");
    assert_eq!(g.operands(sub), [c, d]);
    // Each `powi` reads its base and the constant exponent.
    let powis: Vec<usize> = (0..g.nodes.len()).filter(|i| g.nodes[*i].label == "powi").collect();
    for (p, base) in powis.iter().zip([b, d]) {
        let ops = g.operands(*p);
        assert_eq!(ops[0], base);
        assert_eq!(g.nodes[ops[1]].kind, NodeKind::Constant);
        assert!(!g.nodes[ops[1]].active);
    }
    // `b` feeds the first sum and the first square; `a` only the sum.
    assert_eq!(operand_labels(&g, g.users(a)[0]), ["a", "b"]);
    assert_eq!(g.users(b).len(), 2);
    let out = only(&g, "output");
    let last = g.operands(out);
    assert_eq!(g.nodes[last[0]].label, "add");
    assert_eq!(operand_labels(&g, last[0]), ["mul", "mul"]);
    check_dot(&g);
}

#[differentiable]
fn sum_squares(x: &[f64]) -> f64 {
    let mut acc = 0.0;
    for i in 0..x.len() {
        acc = acc + x[i] * x[i];
    }
    acc
}

#[test]
fn loop_is_a_cluster_with_a_carried_variable() {
    let g = graph!(sum_squares);
    assert_eq!(g.clusters.len(), 1);
    assert_eq!(g.clusters[0].kind, ClusterKind::For);
    assert_eq!(g.clusters[0].label, "for i in 0..len");
    let header = only(&g, "for i in 0..len");
    assert_eq!(g.nodes[header].kind, NodeKind::Control);
    assert_eq!(operand_labels(&g, header), ["len"]);
    assert_eq!(operand_labels(&g, only(&g, "len")), ["x"]);
    // The element is read once and squared; the index comes from the loop header.
    let index = only(&g, "index");
    assert_eq!(g.operands(index), [0, header]);
    assert_eq!(g.operands(only(&g, "mul")), [index, index]);
    // `acc` starts at the constant and is carried around the loop: acc → add → acc.
    let acc = only(&g, "acc");
    let add = only(&g, "add");
    assert_eq!(g.nodes[acc].kind, NodeKind::Variable);
    assert_eq!(operand_labels(&g, acc), ["0.0", "add"]);
    assert_eq!(operand_labels(&g, add), ["acc", "mul"]);
    assert_eq!(operand_labels(&g, only(&g, "output")), ["acc"]);
    // The loop body is inside the cluster; the variable and the output are not.
    for id in [header, index, add, only(&g, "mul")] {
        assert_eq!(g.nodes[id].cluster, Some(0), "{}", g.nodes[id].label);
    }
    assert_eq!(g.nodes[acc].cluster, None);
    assert!(g.nodes[acc].active && g.nodes[add].active && !g.nodes[header].active);
    check_dot(&g);
}

#[differentiable]
fn halve_until_small(x: f64) -> f64 {
    let mut y = x;
    while y > 1.0 {
        y = y * 0.5;
    }
    y
}

#[test]
fn while_loop_has_its_condition_inside() {
    let g = graph!(halve_until_small);
    assert_eq!(g.clusters.len(), 1);
    assert_eq!((g.clusters[0].kind, g.clusters[0].label), (ClusterKind::While, "while"));
    let header = only(&g, "while");
    let gt = only(&g, "gt");
    assert_eq!(g.operands(header), [gt]);
    assert_eq!(operand_labels(&g, gt), ["y", "1.0"]);
    assert_eq!(g.nodes[gt].cluster, Some(0));
    assert!(!g.nodes[gt].active, "a comparison carries no derivative");
    let y = only(&g, "y");
    assert_eq!(operand_labels(&g, y), ["x", "mul"]);
    assert_eq!(operand_labels(&g, only(&g, "mul")), ["y", "0.5"]);
    check_dot(&g);
}

#[differentiable]
fn leaky(x: f64, slope: f64) -> f64 {
    if x > 0.0 {
        x
    } else {
        slope * x
    }
}

#[test]
fn branch_has_both_arms() {
    let g = graph!(leaky);
    let kinds: Vec<ClusterKind> = g.clusters.iter().map(|c| c.kind).collect();
    assert_eq!(kinds, [ClusterKind::If, ClusterKind::Then, ClusterKind::Else]);
    assert_eq!(g.clusters[1].parent, Some(0));
    assert_eq!(g.clusters[2].parent, Some(0));
    let header = only(&g, "if");
    assert_eq!(g.nodes[header].cluster, Some(0));
    assert_eq!(operand_labels(&g, header), ["gt"]);
    assert_eq!(operand_labels(&g, only(&g, "gt")), ["x", "0.0"]);
    // The `else` arm multiplies; both arms write the branch's value, which is the output.
    let mul = only(&g, "mul");
    assert_eq!(g.nodes[mul].cluster, Some(2));
    assert_eq!(operand_labels(&g, mul), ["slope", "x"]);
    let value = g.operands(only(&g, "output"))[0];
    assert_eq!(g.nodes[value].kind, NodeKind::Variable);
    let writers = g.operands(value);
    assert_eq!(writers.len(), 2);
    assert!(writers.contains(&0) && writers.contains(&mul));
    check_dot(&g);
}

#[differentiable(wrt(x))]
fn partly(x: f64, y: f64, n: i32) -> f64 {
    let scale = y.exp();
    x.powi(n) * scale
}

#[test]
fn only_the_differentiated_path_is_active() {
    let g = graph!(partly);
    assert!(is_input(&g, 0, true) && is_input(&g, 1, false) && is_input(&g, 2, false));
    assert!(g.nodes[0].active && !g.nodes[1].active && !g.nodes[2].active);
    let exp = only(&g, "exp");
    assert_eq!(g.nodes[exp].var, Some("scale"));
    assert!(!g.nodes[exp].active, "depends on `y` only");
    assert!(g.nodes[only(&g, "powi")].active && g.nodes[only(&g, "mul")].active);
    assert_eq!(operand_labels(&g, only(&g, "powi")), ["x", "n"]);
    let dot = g.to_dot();
    assert!(dot.contains("n1 -> n3 [color=grey60];"), "y → exp is off the path:\n{dot}");
    check_dot(&g);
}

type T = Tensor<f64>;

/// The seed's matrix graph (item 11).
#[differentiable]
fn norm_graph(w1: &Param<T>, w2: &Param<T>, #[no_grad] x: &T) -> T {
    let x1 = w1.matmul(x);
    let x2 = x + w2.matmul(&x1);
    let x3 = w1.matmul(&(x1 + x2));
    x3.norm()
}

#[test]
fn tensor_function() {
    let g = graph!(norm_graph);
    assert_eq!(labels(&g), ["w1", "w2", "x", "matmul", "matmul", "add", "add", "matmul", "norm", "output"]);
    assert!(is_input(&g, 0, true) && is_input(&g, 1, true) && is_input(&g, 2, false));
    let vars: Vec<Option<&str>> = g.nodes.iter().map(|n| n.var).collect();
    assert_eq!(vars[3..9], [Some("x1"), None, Some("x2"), None, Some("x3"), None]);
    assert_eq!(g.operands(3), [0, 2]); // x1 = w1·x
    assert_eq!(g.operands(4), [1, 3]); // w2·x1
    assert_eq!(g.operands(5), [2, 4]); // x2 = x + w2·x1
    assert_eq!(g.operands(6), [3, 5]); // x1 + x2
    assert_eq!(g.operands(7), [0, 6]); // x3 = w1·(x1 + x2)
    assert_eq!(g.operands(8), [7]);
    assert_eq!(g.operands(9), [8]);
    assert_eq!(g.users(0), [3, 7], "w1 is read twice");
    assert!(g.nodes[3..].iter().all(|n| n.active));
    check_dot(&g);
}

#[differentiable]
fn scaled<F: Float>(x: F) -> F {
    x * x + F::ONE
}

#[differentiable]
fn calls(x: f64) -> f64 {
    straight(x, 3.0) * scaled(x)
}

#[differentiable]
fn pair(x: f64) -> (f64, f64) {
    (x * 2.0, x.sin())
}

#[differentiable]
fn unpair(x: f64) -> f64 {
    let (p, q) = pair(x);
    p * q
}

#[test]
fn generic_functions_and_calls() {
    let g = graph!(scaled);
    assert_eq!(labels(&g), ["x", "mul", "F::ONE", "add", "output"]);
    assert_eq!(graph!(scaled::<f32>), g, "the graph does not depend on the instantiation");

    let g = graph!(calls);
    assert_eq!(labels(&g), ["x", "3.0", "straight", "scaled", "mul", "output"]);
    assert_eq!(operand_labels(&g, only(&g, "straight")), ["x", "3.0"]);
    assert_eq!(operand_labels(&g, only(&g, "mul")), ["straight", "scaled"]);
    check_dot(&g);

    // A tuple result: one output node per field; destructured, one node for the call.
    let g = graph!(pair);
    assert_eq!(labels(&g), ["x", "2.0", "mul", "sin", "output.0", "output.1"]);
    assert_eq!(operand_labels(&g, only(&g, "output.1")), ["sin"]);
    let g = graph!(unpair);
    assert_eq!(labels(&g), ["x", "pair", "mul", "output"]);
    assert_eq!(g.nodes[1].var, Some("(p, q)"));
    assert_eq!(g.operands(2), [1, 1]);
    check_dot(&g);
}

#[derive(Clone, Debug, Differentiable)]
struct Mlp {
    fc1: Linear<f64>,
    fc2: Linear<f64>,
    temperature: f64,
}

impl Mlp {
    #[differentiable]
    fn forward(&self, x: &T) -> T {
        let h = relu(&self.fc1.forward(x));
        self.fc2.forward(&h) * self.temperature
    }
}

#[test]
fn method() {
    let g = graph!(Mlp::forward);
    assert_eq!(g.name, "forward");
    assert_eq!(
        labels(&g),
        // The fields of `self` are read once, first (parameters do not change).
        ["self", "x", ".fc1", ".fc2", ".temperature", "forward", "relu", "forward", "mul", "output"]
    );
    assert!(is_input(&g, 0, true) && is_input(&g, 1, true));
    assert_eq!(g.operands(2), [0]);
    assert_eq!(g.operands(5), [2, 1]); // self.fc1.forward(x)
    assert_eq!(g.nodes[6].var, Some("h"));
    assert_eq!(g.operands(7), [3, 6]); // self.fc2.forward(&h)
    assert_eq!(g.operands(8), [7, 4]);
    check_dot(&g);

    // The method still works as a method.
    let mut rng = Rng::seed_from_u64(3);
    let net = Mlp { fc1: Linear::new(2, 3, &mut rng), fc2: Linear::new(3, 1, &mut rng), temperature: 0.5 };
    let y = net.forward(&T::from_vec(vec![1.0, -1.0], &[1, 2]));
    assert_eq!(y.shape(), [1, 1]);
}
