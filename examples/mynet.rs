//! A network module and one optimizer step (SEEDS.md item 18):
//!
//! ```text
//! MyNet: Linear(5→3) → ReLU → Linear(3→1)
//! loss = MSE(net(x), target),  optimizer = SGD(lr = 0.01)
//! zero_grad → backward → print each named parameter's gradient → step
//! → print the updated parameters → the output has changed
//! ```
//!
//! The rows of the first layer's weight gradient are zero where the ReLU was inactive
//! (its input was negative), and so are those entries of its bias gradient.
//!
//! Run with `cargo run --release --example mynet`.

use adjoint::prelude::*;
use adjoint::{Adam, Linear, Sgd};

#[derive(Differentiable)]
struct MyNet {
    fc1: Linear,
    fc2: Linear,
}

impl MyNet {
    fn new(rng: &mut Rng) -> Self {
        MyNet { fc1: Linear::new(5, 3, rng), fc2: Linear::new(3, 1, rng) }
    }

    /// The hidden layer before the ReLU (not differentiated: only for the printout).
    fn hidden_pre_activation(&self, x: &Tensor) -> Tensor {
        self.fc1.forward(x)
    }

    #[differentiable]
    fn forward(&self, x: &Tensor) -> Tensor {
        let h = adjoint::relu(&self.fc1.forward(x));
        self.fc2.forward(&h)
    }

    #[differentiable]
    fn loss(&self, #[no_grad] x: &Tensor, #[no_grad] target: &Tensor) -> Tensor {
        adjoint::mse_loss(&self.forward(x), target)
    }
}

/// A vector on one line, a matrix one row per line.
fn show(t: &Tensor) -> String {
    let width = *t.shape().last().unwrap_or(&1);
    let rows: Vec<String> = t
        .to_vec()
        .chunks(width)
        .map(|row| {
            let cells: Vec<String> = row.iter().map(|v| format!("{v:8.4}")).collect();
            format!("[{}]", cells.join(", "))
        })
        .collect();
    format!("{:8} {}", format!("{:?}", t.shape()), rows.join(&format!("\n{:22}", "")))
}

fn main() {
    let mut rng = Rng::seed_from_u64(18);
    let net = MyNet::new(&mut rng);
    let x = Tensor::randn(&[1, 5], &mut rng);
    let target = Tensor::randn(&[1, 1], &mut rng);
    let mut opt = Sgd::new(net.parameters(), 0.01);

    println!("parameters:");
    for (name, p) in net.named_parameters() {
        println!("  {name:10} {}", show(p.value()));
    }
    let before = net.forward(&x);
    println!("output before the step: {:.6} (target {:.6})", before.item(), target.item());

    opt.zero_grad();
    let loss = backward!(net.loss(&x, &target));
    println!("loss: {:.6}", loss.item());

    let pre = net.hidden_pre_activation(&x).to_vec();
    let inactive: Vec<usize> = (0..pre.len()).filter(|&j| pre[j] <= 0.0).collect();
    println!("hidden pre-activations: {pre:?} (ReLU inactive at units {inactive:?})");

    println!("gradients:");
    for (name, p) in net.named_parameters() {
        let g = p.grad().expect("every parameter has a gradient after backward");
        println!("  {name:10} {}", show(&g));
    }
    let w_grad = net.fc1.weight.grad().unwrap().to_vec();
    let b_grad = net.fc1.bias.grad().unwrap().to_vec();
    for j in 0..3 {
        let row_is_zero = w_grad[j * 5..(j + 1) * 5].iter().all(|&g| g == 0.0) && b_grad[j] == 0.0;
        assert_eq!(row_is_zero, inactive.contains(&j), "row {j} of fc1.weight.grad");
    }
    println!("rows {inactive:?} of fc1.weight.grad (and those entries of fc1.bias.grad) are zero");

    let old: Vec<Vec<f32>> = net.parameters().iter().map(|p| p.value().to_vec()).collect();
    opt.step();
    println!("parameters after the step (p ← p − 0.01·∇p):");
    for ((name, p), old) in net.named_parameters().into_iter().zip(&old) {
        println!("  {name:10} {}", show(p.value()));
        let g = p.grad().unwrap().to_vec();
        for ((new, old), g) in p.value().to_vec().iter().zip(old).zip(&g) {
            assert!((new - (old - 0.01 * g)).abs() <= 1e-6);
        }
    }

    let after = net.forward(&x);
    println!("output after the step:  {:.6} (target {:.6})", after.item(), target.item());
    assert_ne!(before.item(), after.item());
    let new_loss = net.loss(&x, &target).item();
    println!("loss after the step: {new_loss:.6} (was {:.6})", loss.item());
    assert!(new_loss < loss.item());

    // Adam is the other common optimizer: the same loop with `Adam::new(…).lr(…)`.
    let mut adam = Adam::new(net.parameters()).lr(0.01);
    for _ in 0..50 {
        adam.zero_grad();
        backward!(net.loss(&x, &target));
        adam.step();
    }
    let adam_loss = net.loss(&x, &target).item();
    println!("after 50 more steps with Adam(lr = 0.01): loss {adam_loss:.2e}");
    assert!(adam_loss < new_loss);
}
