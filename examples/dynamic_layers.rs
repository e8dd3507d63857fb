//! Control flow is ordinary code (SEEDS.md item 19): a stack of `num_layers`
//! Linear(10→10) layers chosen at run time, each followed by a ReLU, then a recurrent
//! model (one cell applied once per time step), a recursive one, and a conditional.
//!
//! The layers are a `Vec<Linear>` field of a `#[derive(Differentiable)]` struct, and
//! `forward` loops over them: the loop runs as many times as there are layers, and the
//! gradient flows back through every iteration. `named_parameters()` names them
//! `layers.0.weight`, `layers.1.weight`, …
//!
//! Run with `cargo run --release --example dynamic_layers [num_layers]` (default 4).

use adjoint::prelude::*;
use adjoint::{Adam, Linear};

#[derive(Differentiable)]
struct DynamicNet {
    layers: Vec<Linear>,
    head: Linear,
}

impl DynamicNet {
    fn new(num_layers: usize, rng: &mut Rng) -> Self {
        DynamicNet {
            layers: (0..num_layers).map(|_| Linear::new(10, 10, rng)).collect(),
            head: Linear::new(10, 1, rng),
        }
    }

    /// Every layer in turn. (`for layer in &self.layers` is what one would write, but
    /// `#[differentiable]` accepts only ranges and slices bound to a name as loop
    /// iterators, and indexing only of names: hence the binding and the index loop.)
    #[differentiable]
    #[allow(clippy::needless_range_loop)]
    fn forward(&self, x: &Tensor) -> Tensor {
        let mut h = x.clone();
        let layers = &self.layers;
        for i in 0..layers.len() {
            h = layers[i].forward(&h).relu();
        }
        self.head.forward(&h)
    }

    #[differentiable]
    fn loss(&self, #[no_grad] x: &Tensor, #[no_grad] y: &Tensor) -> Tensor {
        adjoint::mse_loss(&self.forward(x), y)
    }
}

/// A recurrent model (PyTorch's `nn.RNN` cell with a readout):
/// `h ← tanh(W_ih·x_t + b_ih + W_hh·h + b_hh)` once per time step, then a readout of
/// the last state. The same two layers are applied at every step, so their gradients
/// add up over the steps.
#[derive(Differentiable)]
struct Recurrent {
    input: Linear,
    hidden: Linear,
    readout: Linear,
}

impl Recurrent {
    fn new(features: usize, hidden: usize, rng: &mut Rng) -> Self {
        Recurrent {
            input: Linear::new(features, hidden, rng),
            hidden: Linear::new(hidden, hidden, rng),
            readout: Linear::new(hidden, 1, rng),
        }
    }

    /// `xs`: `[batch, steps, features]`, `h0`: `[batch, hidden]`. (The number of steps
    /// is an argument: `xs.shape()[1]` is not accepted inside `#[differentiable]` code.)
    #[differentiable]
    fn forward(&self, xs: &Tensor, h0: &Tensor, steps: usize) -> Tensor {
        let mut h = h0.clone();
        for t in 0..steps {
            let x_t = xs.select(1, t);
            h = (self.input.forward(&x_t) + self.hidden.forward(&h)).tanh();
        }
        self.readout.forward(&h)
    }

    #[differentiable]
    fn loss(&self, #[no_grad] xs: &Tensor, #[no_grad] h0: &Tensor, steps: usize, #[no_grad] y: &Tensor) -> Tensor {
        adjoint::mse_loss(&self.forward(xs, h0, steps), y)
    }
}

/// A recursive model: one layer applied `depth` times, by recursion.
#[differentiable]
fn recursive(layer: &Linear, h: &Tensor, depth: usize) -> Tensor {
    if depth == 0 {
        h.clone()
    } else {
        let inner = recursive(layer, h, depth - 1);
        layer.forward(&inner).tanh()
    }
}

/// The same model with a loop.
#[differentiable]
fn iterated(layer: &Linear, h: &Tensor, depth: usize) -> Tensor {
    let mut h = h.clone();
    for _ in 0..depth {
        h = layer.forward(&h).tanh();
    }
    h
}

#[differentiable]
fn recursive_loss(layer: &Linear, #[no_grad] x: &Tensor, depth: usize) -> Tensor {
    recursive(layer, x, depth).powi(2).mean()
}

#[differentiable]
fn iterated_loss(layer: &Linear, #[no_grad] x: &Tensor, depth: usize) -> Tensor {
    iterated(layer, x, depth).powi(2).mean()
}

/// A conditional: which branch runs depends on the data; the gradient follows it.
#[differentiable]
fn piecewise(x: &Param<Tensor>, #[no_grad] threshold: f32) -> Tensor {
    let s = x.sum();
    if s.item() > threshold {
        s.powi(2)
    } else {
        s * 3.0
    }
}

fn main() {
    let num_layers: usize = std::env::args().nth(1).map(|a| a.parse().expect("num_layers: a number")).unwrap_or(4);
    let mut rng = Rng::seed_from_u64(19);

    // A stack of layers chosen at run time.
    let net = DynamicNet::new(num_layers, &mut rng);
    let names: Vec<String> = net.named_parameters().into_iter().map(|(n, _)| n).collect();
    println!("{num_layers} layers, {} parameters: {}", names.len(), names.join(", "));
    assert_eq!(names.len(), 2 * num_layers + 2);

    let x = Tensor::randn(&[64, 10], &mut rng);
    let y = x.narrow(1, 0, 1).tanh();
    let l0 = backward!(net.loss(&x, &y));
    for (name, p) in net.named_parameters() {
        let g = p.grad().expect("a gradient for every layer");
        println!("  ‖∂loss/∂{name}‖ = {:.3e}", g.norm().item());
    }
    // Check the first layer's gradient G by central differences along G itself:
    // d/dε loss(W + εG) at ε = 0 is ‖G‖².
    let w0 = &net.layers[0].weight;
    // A copy of the values: a `clone()` would share the parameter's storage, see the
    // updates below, and wait forever if read inside `update`.
    let original = Tensor::from_vec(w0.value().to_vec(), w0.value().shape());
    let g = w0.grad().unwrap();
    let loss_at = |eps: f32| {
        w0.update(|v, _| *v = &original + &(&g * eps));
        net.loss(&x, &y).item()
    };
    let exact = g.powi(2).sum().item();
    if exact.sqrt() > 1e-3 {
        let eps = 1e-2 / exact.sqrt(); // a step of norm 0.01
        let fd = (loss_at(eps) - loss_at(-eps)) / (2.0 * eps);
        println!("d/dε loss(layers.0.weight + ε·G): finite differences {fd:.6e}, ‖G‖² = {exact:.6e}");
        assert!((fd - exact).abs() <= 2e-2 * exact, "gradient through {num_layers} layers");
    } else {
        println!("‖G‖ = {:.1e}: the gradient has vanished through {num_layers} layers", exact.sqrt());
    }
    w0.update(|v, _| *v = original.clone());

    let mut opt = Adam::new(net.parameters()).lr(1e-2);
    let mut l = l0.item();
    for step in 0..200 {
        opt.zero_grad();
        l = backward!(net.loss(&x, &y)).item();
        opt.step();
        if step % 50 == 0 {
            println!("step {step:3}: loss {l:.5}");
        }
    }
    println!("{num_layers} layers: loss {:.5} → {l:.5}", l0.item());
    assert!(l < l0.item());

    // A recurrent model: the loop runs once per time step of the input.
    let (features, hidden, steps) = (3, 8, 5);
    let rnn = Recurrent::new(features, hidden, &mut rng);
    let xs = Tensor::randn(&[32, steps, features], &mut rng);
    let h0 = Tensor::zeros(&[32, hidden]);
    let target = xs.sum_dim(1, false).narrow(1, 0, 1) * 0.2; // the running sum of feature 0
    let mut opt = Adam::new(rnn.parameters()).lr(1e-2);
    let first = rnn.loss(&xs, &h0, steps, &target).item();
    for _ in 0..200 {
        opt.zero_grad();
        backward!(rnn.loss(&xs, &h0, steps, &target));
        opt.step();
    }
    let last = rnn.loss(&xs, &h0, steps, &target).item();
    println!("recurrent model over {steps} steps: loss {first:.5} → {last:.5}");
    assert!(last < first);

    // A recursive model gives the same gradient as the loop it unrolls to.
    let layer = Linear::new(10, 10, &mut rng);
    let x = Tensor::randn(&[16, 10], &mut rng);
    let depth = 1 + num_layers;
    let by_recursion = backward!(recursive_loss(&layer, &x, depth));
    let g_recursion = layer.weight.grad().unwrap();
    layer.weight.zero_grad();
    layer.bias.zero_grad();
    let by_loop = backward!(iterated_loss(&layer, &x, depth));
    let g_loop = layer.weight.grad().unwrap();
    let diff = (&g_recursion - &g_loop).norm().item();
    println!(
        "recursion {depth} deep: loss {:.6} (loop: {:.6}), ‖∂/∂weight‖ = {:.4e}, differs from the loop's by {diff:.1e}",
        by_recursion.item(),
        by_loop.item(),
        g_recursion.norm().item()
    );
    assert!(diff <= 1e-6 * (1.0 + g_loop.norm().item()));

    // A conditional.
    for (values, expect) in [([1.0, 2.0], [6.0, 6.0]), ([-1.0, 0.5], [3.0, 3.0])] {
        let x = Param::new(Tensor::from_vec(values.to_vec(), &[2]));
        let v = backward!(piecewise(&x, 0.0));
        let g = x.grad().unwrap().to_vec();
        println!(
            "x = {values:?}: {} branch, value {}, x.grad = {g:?}",
            if x.sum().item() > 0.0 { "s²" } else { "3s" },
            v.item()
        );
        assert_eq!(g, expect);
    }
}
