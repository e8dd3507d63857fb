//! The training workloads of the anchors (`shared/anchors/BASELINES.md`), measured on
//! the same inputs: the linear-regression SGD step (C), one MLP training step (D), the
//! norm graph's value and gradient (F), and a tanh RNN's value and gradient (H).
//! Each has a hand-written gradient beside it, measured in the same run.

use std::hint::black_box;
use std::time::Duration;

use adjoint::nalgebra::{SMatrix, SVector};
use adjoint::prelude::*;
use adjoint::tensor::in_thread_pool;
use criterion::{criterion_group, Criterion};

/// The anchors' deterministic inputs: SplitMix64 uniforms mapped to unit variance.
fn detn(n: usize, seed: u64) -> Vec<f64> {
    (1..=n as u64)
        .map(|k| {
            let mut z = seed.wrapping_add(k.wrapping_mul(0x9E37_79B9_7F4A_7C15));
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            z ^= z >> 31;
            let u = (z >> 11) as f64 * (1.0 / (1u64 << 53) as f64);
            3f64.sqrt() * (2.0 * u - 1.0)
        })
        .collect()
}

fn detn_f32(shape: &[usize], seed: u64, scale: f64) -> Tensor<f32> {
    let n = shape.iter().product();
    Tensor::from_vec(detn(n, seed).into_iter().map(|v| (v * scale) as f32).collect(), shape)
}

// ---- C. Linear regression (seed item 16): ŷ = x·wᵀ + b, mean squared error.

#[differentiable]
fn linreg_loss(w: &Param<Tensor>, b: &Param<Tensor>, x: &Tensor, y: &Tensor) -> Tensor {
    let pred = x.matmul(&w.t()) + b;
    (pred - y).powi(2).mean()
}

fn linreg(c: &mut Criterion) {
    let mut rng = Rng::seed_from_u64(0);
    let x = Tensor::randn(&[1000, 784], &mut rng);
    let y = Tensor::randn(&[1000, 1], &mut rng);
    let w = Param::new(Tensor::randn(&[10, 784], &mut rng) * 1e-3);
    let b = Param::new(Tensor::zeros(&[10]));
    let mut opt = Sgd::new(vec![w.clone(), b.clone()], 0.1);
    let mut group = c.benchmark_group("linreg");
    group.measurement_time(Duration::from_secs(4));
    group.bench_function("sgd_step", |bch| {
        bch.iter(|| {
            opt.zero_grad();
            let loss = backward!(linreg_loss(&w, &b, &x, &y));
            opt.step();
            black_box(loss)
        })
    });
    // The same step written by hand with the same tensor operations: what the runtime
    // costs, apart from the generated code.
    let (wh, bh) = (w.value(), b.value());
    let n = x.shape()[0] as f32;
    group.bench_function("hand_written_step", |bch| {
        bch.iter(|| {
            let pred = x.matmul(&wh.t()) + bh;
            let r = pred - &y;
            let loss = r.powi(2).mean();
            let g = r * (2.0 / n);
            let gw = g.t().matmul(&x);
            let gb = g.sum_dim(0, false);
            wh.update(|v| *v -= gw * 0.1);
            bh.update(|v| *v -= gb * 0.1);
            black_box(loss)
        })
    });
    group.finish();
}

// ---- D. MLP 784-256-256-10, cross-entropy, batch 128, SGD(lr = 0.01).

#[derive(Differentiable)]
struct Mlp {
    fc1: Linear,
    fc2: Linear,
    fc3: Linear,
}

impl Mlp {
    #[differentiable]
    fn loss(&self, x: &Tensor, labels: &[usize]) -> Tensor {
        let h1 = relu(&self.fc1.forward(x));
        let h2 = relu(&self.fc2.forward(&h1));
        cross_entropy(&self.fc3.forward(&h2), labels)
    }
}

fn mlp(c: &mut Criterion) {
    let mut rng = Rng::seed_from_u64(0);
    let net = Mlp {
        fc1: Linear::new(784, 256, &mut rng),
        fc2: Linear::new(256, 256, &mut rng),
        fc3: Linear::new(256, 10, &mut rng),
    };
    let x = Tensor::randn(&[128, 784], &mut rng);
    let labels: Vec<usize> = (0..128).map(|i| (i * 7) % 10).collect();
    let mut opt = Sgd::new(net.parameters(), 0.01);
    let mut group = c.benchmark_group("mlp");
    group.measurement_time(Duration::from_secs(5));
    group.bench_function("train_step_b128", |bch| {
        bch.iter(|| {
            opt.zero_grad();
            let loss = backward!(net.loss(&x, &labels));
            opt.step();
            black_box(loss)
        })
    });
    // The same step run on a worker thread of the pool (`in_thread_pool`), so that each
    // parallel product hands its second half straight to the other worker.
    group.bench_function("train_step_b128_in_pool", |bch| {
        bch.iter(|| {
            in_thread_pool(|| {
                opt.zero_grad();
                let loss = backward!(net.loss(&x, &labels));
                opt.step();
                black_box(loss)
            })
        })
    });
    group.bench_function("forward_b128", |bch| bch.iter(|| black_box(net.loss(&x, &labels))));
    group.finish();
}

// ---- F. The seed's norm graph (item 11): q = ‖w1·(x1 + x2)‖ with x1 = w1·x, x2 = x + w2·x1.

/// As the anchors: the gradient with respect to the weights (`x` is data).
#[differentiable(wrt(w1, w2))]
fn norm_graph(w1: &Tensor<f64>, w2: &Tensor<f64>, x: &Tensor<f64>) -> Tensor<f64> {
    let x1 = w1.matmul(x);
    let x2 = x + &w2.matmul(&x1);
    let x3 = w1.matmul(&(x1 + x2));
    x3.norm()
}

/// The same graph over nalgebra's fixed-size types, as a Rust program with 5×5
/// weights would write it: no allocation at all.
#[differentiable(wrt(w1, w2))]
fn norm_graph_static(w1: &SMatrix<f64, 5, 5>, w2: &SMatrix<f64, 5, 5>, x: &SVector<f64, 5>) -> f64 {
    let x1 = w1 * x;
    let x2 = x + w2 * x1;
    let x3 = w1 * (x1 + x2);
    x3.norm()
}

fn norm(c: &mut Criterion) {
    let t = |shape: &[usize], seed| Tensor::from_vec(detn(shape.iter().product(), seed), shape);
    let (w1, w2, x) = (t(&[5, 5], 11), t(&[5, 5], 12), t(&[5], 13));
    let (sw1, sw2) = (SMatrix::from_row_slice(&detn(25, 11)), SMatrix::from_row_slice(&detn(25, 12)));
    let sx = SVector::from_row_slice(&detn(5, 13));
    // The anchors' q.
    for q in [norm_graph(&w1, &w2, &x).item(), norm_graph_static(&sw1, &sw2, &sx)] {
        assert!((q - 19.349558638336067).abs() < 1e-12, "norm graph value {q}");
    }
    let mut group = c.benchmark_group("norm_graph");
    group.bench_function("tensor_value", |bch| bch.iter(|| black_box(norm_graph(&w1, &w2, &x))));
    group.bench_function("tensor_value_and_grad", |bch| {
        bch.iter(|| black_box(value_and_grad!(norm_graph)(&w1, &w2, &x)))
    });
    group.bench_function("static_value", |bch| {
        bch.iter(|| black_box(norm_graph_static(black_box(&sw1), black_box(&sw2), black_box(&sx))))
    });
    group.bench_function("static_value_and_grad", |bch| {
        bch.iter(|| black_box(value_and_grad!(norm_graph_static)(black_box(&sw1), black_box(&sw2), black_box(&sx))))
    });
    group.finish();
}

// ---- H. tanh RNN, T = 100, hidden 128, input 64: loss = Σ h_T, differentiated with
// respect to the two weight matrices (as the anchors' `grad(argnums=(0, 1))`).

#[differentiable(wrt(w, u))]
fn rnn_loss(w: &Tensor, u: &Tensor, xs: &Tensor, h0: &Tensor, steps: usize) -> Tensor {
    let mut h = h0.clone();
    for t in 0..steps {
        h = (w.matmul(&h) + u.matmul(&xs.select(0, t))).tanh();
    }
    h.sum()
}

/// The hand-written value and gradient (the anchors' NumPy reference, in Rust).
fn rnn_manual(w: &Tensor, u: &Tensor, xs: &Tensor) -> (f32, Tensor, Tensor) {
    let steps = xs.shape()[0];
    let mut hs = vec![Tensor::zeros(&[w.shape()[0]])];
    for t in 0..steps {
        let h = (w.matmul(&hs[t]) + u.matmul(&xs.select(0, t))).tanh();
        hs.push(h);
    }
    let loss = hs[steps].sum().item();
    let mut gw = Tensor::zeros(w.shape());
    let mut gu = Tensor::zeros(u.shape());
    let mut gh = Tensor::ones(&[w.shape()[0]]);
    for t in (0..steps).rev() {
        let ga = &gh * &(1.0 - &hs[t + 1] * &hs[t + 1]);
        gw += ga.unsqueeze(1).matmul(&hs[t].unsqueeze(0));
        gu += ga.unsqueeze(1).matmul(&xs.select(0, t).unsqueeze(0));
        gh = w.t().matmul(&ga);
    }
    (loss, gw, gu)
}

fn rnn(c: &mut Criterion) {
    let (h, d, steps) = (128, 64, 100);
    let w = detn_f32(&[h, h], 31, 0.9 / (h as f64).sqrt());
    let u = detn_f32(&[h, d], 32, 1.0 / (d as f64).sqrt());
    let xs = detn_f32(&[steps, d], 33, 1.0);
    let mut group = c.benchmark_group("rnn");
    group.measurement_time(Duration::from_secs(4));
    let h0 = Tensor::zeros(&[h]);
    group.bench_function("value", |bch| bch.iter(|| black_box(rnn_loss(&w, &u, &xs, &h0, steps))));
    group.bench_function("value_and_grad", |bch| {
        bch.iter(|| black_box(value_and_grad!(rnn_loss)(&w, &u, &xs, &h0, steps)))
    });
    group.bench_function("hand_written", |bch| bch.iter(|| black_box(rnn_manual(&w, &u, &xs))));
    group.finish();
}

criterion_group!(training, linreg, mlp, norm, rnn);
