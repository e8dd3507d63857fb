//! Linear regression by plain gradient descent (SEEDS.md item 16):
//!
//! ```text
//! x: 1000×784 ~ N(0, 1),  y: 1000×1 ~ N(0, 1)
//! w: 10×784,  b: 10       ~ N(0, 1e-3)
//! ŷ = x·wᵀ + b            (1000×10; the 1000×1 target broadcasts against it)
//! loss = mean((ŷ − y)²)
//! 100 steps: zero the gradients, backward, w -= 0.1·w.grad, b -= 0.1·b.grad
//! ```
//!
//! The loss is printed every 10 steps.
//!
//! Run with `cargo run --release --example linear_regression`.

use adjoint::prelude::*;

/// The mean squared error of the linear model. The data carry `#[no_grad]`: only the
/// parameters need a gradient (without it, the gradient of `x`, a 1000×784 matrix
/// product, would be computed every step and thrown away).
#[differentiable]
fn loss(w: &Param<Tensor>, b: &Param<Tensor>, #[no_grad] x: &Tensor, #[no_grad] y: &Tensor) -> Tensor {
    let y_hat = x.matmul(&w.t()) + b;
    (y_hat - y).powi(2).mean()
}

fn main() {
    let mut rng = Rng::seed_from_u64(16);
    let x = Tensor::randn(&[1000, 784], &mut rng);
    let y = Tensor::randn(&[1000, 1], &mut rng);
    let w = Param::new(Tensor::randn(&[10, 784], &mut rng) * 1e-3);
    let b = Param::new(Tensor::randn(&[10], &mut rng) * 1e-3);
    let lr = 0.1;

    let start = std::time::Instant::now();
    let first = loss(&w, &b, &x, &y).item();
    let mut last = first;
    for step in 0..100 {
        w.zero_grad();
        b.zero_grad();
        let l = backward!(loss(&w, &b, &x, &y));
        // The update is ordinary code: nothing here is differentiated (`no_grad`).
        w.update(|value, grad| *value -= &(grad.unwrap() * lr));
        b.update(|value, grad| *value -= &(grad.unwrap() * lr));
        last = l.item();
        if step % 10 == 0 {
            println!("step {step:3}: loss = {last:.6}");
        }
    }
    let after = loss(&w, &b, &x, &y).item();
    println!("after 100 steps: loss = {after:.6} ({:.0} ms)", start.elapsed().as_secs_f64() * 1e3);
    // With 784 features for 1000 noise targets the model overfits the noise: the
    // training loss falls well below the variance of y (about 1).
    assert!(after < last && last < first);
    assert!(after < 0.5 * first, "the loss should have fallen: {first} → {after}");
}
