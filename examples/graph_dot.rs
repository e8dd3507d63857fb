//! The computation graph of a function as Graphviz DOT (SEEDS.md item 3), the way
//! torchviz draws PyTorch's autograd graph:
//!
//! ```text
//! f(a, b, c, d) = ((a + b)·b²) + ((c − d)·d²)
//! ```
//!
//! `graph!(f)` is the graph the macro built at compile time: the parameters are the
//! leaves (blue: differentiated), every operation is a node, and the output is green.
//! The example prints the DOT text, writes it to `graph.dot`, and prints the value and
//! the gradient at one point; the gradient is checked against the derivative by hand.
//! It does the same for the matrix graph of item 11 (`q = ‖w1·(x1 + x2)‖`), written to
//! `norm_graph.dot`.
//!
//! Run with `cargo run --release --example graph_dot`, then, with Graphviz installed,
//! `dot -Tsvg graph.dot -o graph.svg`.

use adjoint::prelude::*;

#[differentiable]
fn f(a: f64, b: f64, c: f64, d: f64) -> f64 {
    let left = (a + b) * b.powi(2);
    let right = (c - d) * d.powi(2);
    left + right
}

type T = Tensor<f64>;

#[differentiable]
fn q(w1: &Param<T>, w2: &Param<T>, #[no_grad] x: &T) -> T {
    let x1 = w1.matmul(x);
    let x2 = x + w2.matmul(&x1);
    let x3 = w1.matmul(&(x1 + x2));
    x3.norm()
}

fn main() -> std::io::Result<()> {
    let graph = graph!(f);
    let dot = graph.to_dot();
    println!("{dot}");
    std::fs::write("graph.dot", &dot)?;
    println!("wrote graph.dot ({} nodes, {} edges)", graph.nodes.len(), graph.edges.len());

    let (a, b, c, d) = (1.0, 2.0, 3.0, 0.5);
    let (value, (ga, gb, gc, gd)) = value_and_grad!(f)(a, b, c, d);
    println!("f({a}, {b}, {c}, {d}) = {value}");
    println!("gradient: df/da = {ga}, df/db = {gb}, df/dc = {gc}, df/dd = {gd}");
    // By hand: ∂/∂a = b², ∂/∂b = b² + 2(a + b)b, ∂/∂c = d², ∂/∂d = −d² + 2(c − d)d.
    let by_hand = (b * b, b * b + 2.0 * (a + b) * b, d * d, -d * d + 2.0 * (c - d) * d);
    let worst =
        [ga - by_hand.0, gb - by_hand.1, gc - by_hand.2, gd - by_hand.3].iter().fold(0.0_f64, |m, e| m.max(e.abs()));
    println!("largest difference from the derivative by hand: {worst:.1e}");
    assert!(worst < 1e-12);
    assert!((value - ((a + b) * b * b + (c - d) * d * d)).abs() < 1e-12);

    let norm = graph!(q);
    std::fs::write("norm_graph.dot", norm.to_dot())?;
    println!("\nwrote norm_graph.dot, the graph of q = ‖w1·(x1 + x2)‖:");
    for (id, node) in norm.nodes.iter().enumerate() {
        // An operand is named by its variable when it has one (`x1`), else by its operation.
        let operands: Vec<&str> =
            norm.operands(id).iter().map(|o| norm.nodes[*o].var.unwrap_or(norm.nodes[*o].label)).collect();
        if operands.is_empty() {
            println!("  {}", node.text());
        } else {
            println!("  {} ← {}", node.text(), operands.join(", "));
        }
    }
    Ok(())
}
