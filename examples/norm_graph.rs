//! The matrix example of the autograd tutorials (SEEDS.md item 11):
//!
//! ```text
//! w1, w2: random 5×5 (leaves),  x: random 5-vector
//! x1 = w1·x
//! x2 = x + w2·x1
//! x3 = w1·(x1 + x2)
//! q  = ‖x3‖
//! q.backward()  →  w1.grad, w2.grad
//! ```
//!
//! `w1` is used twice, so its gradient is the sum of two paths. The example checks both
//! gradients against the chain rule written out by hand and against central finite
//! differences.
//!
//! Run with `cargo run --release --example norm_graph`.

use adjoint::prelude::*;

type T = Tensor<f64>;

#[differentiable]
fn q(w1: &Param<T>, w2: &Param<T>, #[no_grad] x: &T) -> T {
    let x1 = w1.matmul(x);
    let x2 = x + w2.matmul(&x1);
    let x3 = w1.matmul(&(x1 + x2));
    x3.norm()
}

/// `a·bᵀ` for two vectors.
fn outer(a: &T, b: &T) -> T {
    a.reshape(&[a.numel(), 1]).matmul(&b.reshape(&[1, b.numel()]))
}

fn print_matrix(name: &str, m: &T) {
    println!("{name} =");
    let n = m.shape()[1];
    for row in m.to_vec().chunks(n) {
        let cells: Vec<String> = row.iter().map(|v| format!("{v:9.5}")).collect();
        println!("  [{}]", cells.join(", "));
    }
}

fn max_abs_diff(a: &T, b: &T) -> f64 {
    a.to_vec().iter().zip(b.to_vec()).map(|(a, b)| (a - b).abs()).fold(0.0, f64::max)
}

fn main() {
    let mut rng = Rng::seed_from_u64(11);
    let w1 = Param::new(T::randn(&[5, 5], &mut rng));
    let w2 = Param::new(T::randn(&[5, 5], &mut rng));
    let x = T::randn(&[5], &mut rng);

    let value = backward!(q(&w1, &w2, &x));
    println!("q = ‖x3‖ = {:.6}", value.item());
    let g1 = w1.grad().expect("w1.grad");
    let g2 = w2.grad().expect("w2.grad");
    print_matrix("w1.grad", &g1);
    print_matrix("w2.grad", &g2);

    // The chain rule by hand: q̄ = 1, x̄3 = x3/q, s = x1 + x2.
    let (w1v, w2v) = (w1.value(), w2.value());
    let x1 = w1v.matmul(&x);
    let x2 = &x + &w2v.matmul(&x1);
    let s = &x1 + &x2;
    let x3 = w1v.matmul(&s);
    let x3_bar = &x3 / value.item();
    let s_bar = w1v.t().matmul(&x3_bar); // = x̄2, and the direct part of x̄1
    let x1_bar = &s_bar + &w2v.t().matmul(&s_bar);
    let w1_by_hand = outer(&x3_bar, &s) + outer(&x1_bar, &x);
    let w2_by_hand = outer(&s_bar, &x1);
    let (d1, d2) = (max_abs_diff(&g1, &w1_by_hand), max_abs_diff(&g2, &w2_by_hand));
    println!("largest difference from the chain rule by hand: w1 {d1:.2e}, w2 {d2:.2e}");
    assert!(d1 < 1e-12 && d2 < 1e-12);

    // Central finite differences, one entry at a time.
    let h = 1e-6;
    let mut worst: f64 = 0.0;
    for (p, g) in [(&w1, &g1), (&w2, &g2)] {
        let base = p.value().to_vec();
        for i in 0..base.len() {
            let at = |delta: f64| {
                let mut v = base.clone();
                v[i] += delta;
                let shifted = Param::new(T::from_vec(v, &[5, 5]));
                if p.ptr_eq(&w1) {
                    q(&shifted, &w2, &x).item()
                } else {
                    q(&w1, &shifted, &x).item()
                }
            };
            let fd = (at(h) - at(-h)) / (2.0 * h);
            worst = worst.max((fd - g.to_vec()[i]).abs() / (1.0 + fd.abs()));
        }
    }
    println!("largest relative difference from finite differences: {worst:.2e}");
    assert!(worst < 1e-6);
}
