//! PyTorch's gradient semantics: `Param` leaves whose gradients accumulate across
//! `backward!` calls until `zero_grad`, shared handles, in-place updates, models with
//! `#[derive(Differentiable)]` (nested structs, `Vec` of layers, float and integer
//! fields), `#[differentiable]` methods, seeded and multi-threaded backward passes, the
//! optimizers against PyTorch's update formulas, and `Linear`'s initialisation.

// `x.matmul(&w)` with `w: &Param<Tensor>` is written with the extra borrow on purpose:
// `x.matmul(w)` does not compile inside `#[differentiable]` (see `f`).
#![allow(clippy::needless_range_loop, clippy::needless_borrow)]

mod common;

use adjoint::prelude::*;
use adjoint::{Adam, Linear, Sgd};
use common::*;

// ------------------------------------------------------------------ helpers

type T = Tensor<f64>;
type P = Param<Tensor<f64>>;

fn t(data: &[f64], shape: &[usize]) -> T {
    Tensor::from_vec(data.to_vec(), shape)
}

fn param(data: &[f64], shape: &[usize]) -> P {
    Param::new(t(data, shape))
}

/// The accumulated gradient of `p` as a vector (panics when there is none).
fn grad_of(p: &P) -> Vec<f64> {
    p.grad().expect("a gradient after backward").to_vec()
}

fn scaled(v: &[f64], k: f64) -> Vec<f64> {
    v.iter().map(|x| x * k).collect()
}

/// Set element `i` of a parameter (for every handle).
fn set_elem(p: &P, i: usize, value: f64) {
    p.update(|v, _| {
        let mut d = v.to_vec();
        d[i] = value;
        *v = Tensor::from_vec(d, v.shape());
    });
}

/// Central differences of `loss` with respect to every element of `p`, perturbing `p`
/// in place (through `Param::update`) and restoring it.
fn fd_param(p: &P, loss: impl Fn() -> f64) -> Vec<f64> {
    let x0 = p.value().to_vec();
    (0..x0.len())
        .map(|i| {
            let h = step_at(x0[i]);
            set_elem(p, i, x0[i] + h);
            let up = loss();
            set_elem(p, i, x0[i] - h);
            let down = loss();
            set_elem(p, i, x0[i]);
            (up - down) / (2.0 * h)
        })
        .collect()
}

// ------------------------------------------------------------------ a function of one parameter

/// `f(x, w) = Σ tanh(x·w)` with `x` of shape `[2, 3]` and `w` of shape `[3, 1]`.
///
/// Written `x.matmul(&w)`: `x.matmul(w)` is fine in plain Rust (deref coercion) but
/// the generated code passes `Clone::clone(&w)` where `&Tensor` is expected, which
/// fails to type-check for a `&Param<Tensor>` ("expected `&&Tensor<f64>`, found
/// `&&Param<Tensor<f64>>`").
#[differentiable]
fn f(x: &Tensor<f64>, w: &Param<Tensor<f64>>) -> Tensor<f64> {
    x.matmul(&w).tanh().sum()
}

/// `df/dw = xᵀ·(1 − tanh²(x·w))`, by hand.
fn f_grad(x: &[f64], w: &[f64]) -> Vec<f64> {
    let mut g = vec![0.0; 3];
    for r in 0..2 {
        let z: f64 = (0..3).map(|k| x[3 * r + k] * w[k]).sum();
        let d = 1.0 - z.tanh().powi(2);
        for k in 0..3 {
            g[k] += x[3 * r + k] * d;
        }
    }
    g
}

const X: [f64; 6] = [0.3, -1.2, 0.7, 1.1, 0.4, -0.5];
const W: [f64; 3] = [0.5, -0.25, 0.8];

fn x() -> T {
    t(&X, &[2, 3])
}

#[test]
fn grad_is_none_before_backward() {
    let w = param(&W, &[3, 1]);
    assert!(w.grad().is_none());
    // Evaluating the function (no backward) leaves the gradient alone.
    let _ = f(&x(), &w);
    assert!(w.grad().is_none());
}

#[test]
fn backward_returns_value_and_deposits_gradient() {
    let (x, w) = (x(), param(&W, &[3, 1]));
    let value = backward!(f(&x, &w));
    assert_close("value", value.item(), f(&x, &w).item(), EXACT);
    let g = w.grad().expect("gradient after backward");
    assert_eq!(g.shape(), &[3, 1], "the gradient has the parameter's shape");
    assert_vec_close("dw analytic", &g.to_vec(), &f_grad(&X, &W), EXACT);
    let fd = fd_param(&w, || f(&x, &w).item());
    assert_vec_close("dw fd", &g.to_vec(), &fd, FD);
    // The finite differences restored the value.
    assert_eq!(w.value().to_vec(), W.to_vec());
}

#[test]
fn backward_agrees_with_grad_and_grad_does_not_deposit() {
    let (x, w) = (x(), param(&W, &[3, 1]));
    let (_gx, gw) = grad!(f)(&x, &w);
    assert!(w.grad().is_none(), "grad! is functional: it must not deposit into the parameter");
    backward!(f(&x, &w));
    assert_eq!(grad_of(&w), gw.to_vec());
}

#[test]
fn backward_twice_doubles_the_gradient() {
    let (x, w) = (x(), param(&W, &[3, 1]));
    backward!(f(&x, &w));
    let once = grad_of(&w);
    backward!(f(&x, &w));
    assert_vec_close("accumulated twice", &grad_of(&w), &scaled(&once, 2.0), EXACT);
    backward!(f(&x, &w));
    assert_vec_close("accumulated thrice", &grad_of(&w), &scaled(&once, 3.0), EXACT);
}

#[test]
fn zero_grad_resets_to_none() {
    let (x, w) = (x(), param(&W, &[3, 1]));
    backward!(f(&x, &w));
    let once = grad_of(&w);
    w.zero_grad();
    assert!(w.grad().is_none());
    // After zero_grad the next backward starts afresh.
    backward!(f(&x, &w));
    assert_eq!(grad_of(&w), once);
    // zero_grad on a parameter without gradient is harmless.
    let fresh = param(&W, &[3, 1]);
    fresh.zero_grad();
    assert!(fresh.grad().is_none());
}

#[test]
fn clones_share_value_and_gradient() {
    let x = x();
    let w = param(&W, &[3, 1]);
    let alias = w.clone();
    assert!(w.ptr_eq(&alias));
    assert!(!w.ptr_eq(&param(&W, &[3, 1])), "equal values are still distinct parameters");

    // A backward pass through one handle is seen through the other.
    backward!(f(&x, &alias));
    assert_eq!(grad_of(&w), grad_of(&alias));
    assert_vec_close("through the alias", &grad_of(&w), &f_grad(&X, &W), EXACT);
    // ... and both accumulate into the same slot.
    backward!(f(&x, &w));
    assert_vec_close("accumulated via both", &grad_of(&alias), &scaled(&f_grad(&X, &W), 2.0), EXACT);

    // zero_grad through one handle clears the other's.
    alias.zero_grad();
    assert!(w.grad().is_none());

    // An update through one handle changes the value for both.
    alias.update(|v, _| *v = &*v * 2.0);
    assert_eq!(w.value().to_vec(), scaled(&W, 2.0));
}

#[test]
fn update_mutates_in_place_for_every_handle() {
    let (x, w) = (x(), param(&W, &[3, 1]));
    let handles = [w.clone(), w.clone()];
    // Before any backward pass the update sees no gradient.
    w.update(|_, g| assert!(g.is_none()));
    backward!(f(&x, &w));
    let lr = 0.1;
    w.update(|value, grad| *value -= &(grad.expect("grad") * lr));
    let want: Vec<f64> = W.iter().zip(f_grad(&X, &W)).map(|(w, g)| w - lr * g).collect();
    for h in &handles {
        assert_vec_close("updated value", &h.value().to_vec(), &want, EXACT);
        assert_eq!(h.value().shape(), &[3, 1]);
    }
    // The update does not touch the gradient.
    assert_vec_close("gradient kept", &grad_of(&w), &f_grad(&X, &W), EXACT);
    // The function now sees the new value.
    assert_close("value after update", f(&x, &handles[0]).item(), f(&x, &param(&want, &[3, 1])).item(), EXACT);
}

#[test]
fn tensor_clones_of_the_value_see_updates_like_torch_data() {
    let w = param(&W, &[3, 1]);
    let data = w.value().clone(); // shares the storage, as `w.data` in PyTorch
    let copy = Tensor::from_vec(w.value().to_vec(), &[3, 1]); // `w.detach().clone()`
    w.update(|v, _| *v = &*v + 1.0);
    assert_eq!(data.to_vec(), W.iter().map(|w| w + 1.0).collect::<Vec<_>>());
    assert_eq!(copy.to_vec(), W.to_vec());
}

#[test]
fn an_update_reading_its_own_tensor_through_another_handle_panics_instead_of_hanging() {
    let t = Tensor::<f64>::from_vec(vec![1.0, 2.0, 3.0], &[3]);
    let alias = t.clone();
    let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| t.update(|v| *v = &*v + &alias)));
    let message = outcome.expect_err("reading `alias` inside the update must panic");
    let message = match message.downcast_ref::<&str>() {
        Some(m) => m.to_string(),
        None => message.downcast_ref::<String>().cloned().unwrap_or_default(),
    };
    assert!(message.contains("read the tensor it updates through another handle"), "{message}");
    // The values are left as they were, and both handles work again.
    assert_eq!(alias.to_vec(), vec![1.0, 2.0, 3.0]);
    t.update(|v| *v = &*v * 2.0);
    assert_eq!(alias.to_vec(), vec![2.0, 4.0, 6.0]);
    // Reading another tensor inside an update is fine.
    let other = Tensor::<f64>::from_vec(vec![1.0, 1.0, 1.0], &[3]);
    t.update(|v| *v = &*v + &other);
    assert_eq!(t.to_vec(), vec![3.0, 5.0, 7.0]);
}

// ------------------------------------------------------------------ sharing

/// `w` used three times: `Σ w² + Σ w`.
#[differentiable]
fn used_twice(w: &Param<Tensor<f64>>) -> Tensor<f64> {
    (w * w).sum() + w.sum()
}

/// Two parameter arguments, called with the same parameter for both.
#[differentiable]
fn two_params(a: &Param<Tensor<f64>>, b: &Param<Tensor<f64>>) -> Tensor<f64> {
    (a * b.sin()).sum()
}

#[test]
fn parameter_used_twice_gets_the_sum() {
    let w = param(&W, &[3]);
    backward!(used_twice(&w));
    let want: Vec<f64> = W.iter().map(|w| 2.0 * w + 1.0).collect();
    assert_vec_close("2w + 1", &grad_of(&w), &want, EXACT);
}

#[test]
fn same_parameter_passed_as_two_arguments_gets_both_contributions() {
    let w = param(&W, &[3]);
    backward!(two_params(&w, &w));
    // d/dw Σ w·sin(w) = sin(w) + w·cos(w)
    let want: Vec<f64> = W.iter().map(|w| w.sin() + w * w.cos()).collect();
    assert_vec_close("sin w + w cos w", &grad_of(&w), &want, EXACT);

    // Two distinct parameters get their own parts.
    let (a, b) = (param(&W, &[3]), param(&[0.1, 0.2, 0.3], &[3]));
    backward!(two_params(&a, &b));
    assert_vec_close("da", &grad_of(&a), &[0.1_f64.sin(), 0.2_f64.sin(), 0.3_f64.sin()], EXACT);
    let want_b: Vec<f64> = W.iter().zip([0.1_f64, 0.2, 0.3]).map(|(a, b)| a * b.cos()).collect();
    assert_vec_close("db", &grad_of(&b), &want_b, EXACT);
}

// ------------------------------------------------------------------ seeded backward

/// A non-scalar output: `y = x·w` (`[2, 1]`).
#[differentiable]
fn linear_map(x: &Tensor<f64>, w: &Param<Tensor<f64>>) -> Tensor<f64> {
    x.matmul(&w)
}

#[test]
fn seeded_backward_for_a_non_scalar_output() {
    let (x, w) = (x(), param(&W, &[3, 1]));
    let seed = t(&[2.0, -3.0], &[2, 1]);
    let y = backward!(linear_map(&x, &w), seed.clone());
    assert_eq!(y.shape(), &[2, 1]);
    assert_vec_close("value", &y.to_vec(), &linear_map(&x, &w).to_vec(), EXACT);
    // xᵀ·seed
    let want: Vec<f64> = (0..3).map(|k| 2.0 * X[k] - 3.0 * X[3 + k]).collect();
    assert_vec_close("x^T seed", &grad_of(&w), &want, EXACT);
    // Seeded calls accumulate like the others.
    backward!(linear_map(&x, &w), seed);
    assert_vec_close("twice", &grad_of(&w), &scaled(&want, 2.0), EXACT);
}

#[test]
fn seeded_backward_of_a_scalar_scales_the_gradient() {
    let (x, w) = (x(), param(&W, &[3, 1]));
    let one = f(&x, &w).ones_like();
    backward!(f(&x, &w), &one * 0.5);
    assert_vec_close("half", &grad_of(&w), &scaled(&f_grad(&X, &W), 0.5), EXACT);
}

#[test]
#[should_panic(expected = "returned a tensor of shape [2, 1]; use `vjp!`")]
fn grad_of_a_non_scalar_output_points_to_vjp() {
    let (x, w) = (x(), param(&W, &[3, 1]));
    let _ = grad!(linear_map)(&x, &w);
}

#[test]
#[should_panic(expected = "use `vjp!` (or `backward!(f(…), seed)`)")]
fn unseeded_backward_of_a_non_scalar_output_points_to_the_seed() {
    let (x, w) = (x(), param(&W, &[3, 1]));
    let _ = backward!(linear_map(&x, &w));
}

// ------------------------------------------------------------------ threads

#[test]
fn backward_from_many_threads_loses_no_update() {
    const THREADS: usize = 8;
    const EACH: usize = 25;
    let (x, w) = (x(), param(&W, &[3, 1]));
    let b = param(&[0.1, 0.2, 0.3], &[3]);
    std::thread::scope(|s| {
        for _ in 0..THREADS {
            s.spawn(|| {
                for _ in 0..EACH {
                    backward!(f(&x, &w));
                    backward!(two_params(&b, &b));
                }
            });
        }
    });
    let n = (THREADS * EACH) as f64;
    assert_vec_close("sum of all threads", &grad_of(&w), &scaled(&f_grad(&X, &W), n), EXACT2);
    let want_b: Vec<f64> = [0.1_f64, 0.2, 0.3].iter().map(|b| b.sin() + b * b.cos()).collect();
    assert_vec_close("shared across arguments and threads", &grad_of(&b), &scaled(&want_b, n), EXACT2);
}

// ------------------------------------------------------------------ models

#[derive(Clone, Debug, Differentiable)]
struct Block {
    fc: Linear<f64>,
    gain: Param<Tensor<f64>>,
}

#[derive(Clone, Debug, Differentiable)]
struct Net {
    fc1: Linear<f64>,
    block: Block,
    /// A run-time number of layers.
    layers: Vec<Linear<f64>>,
    /// A float field: it carries a gradient but holds no parameter.
    temperature: f64,
    /// An integer field: no gradient, no parameter.
    depth: usize,
}

impl Block {
    #[differentiable]
    fn forward(&self, h: &Tensor<f64>) -> Tensor<f64> {
        self.fc.forward(h).tanh() * &self.gain
    }
}

impl Net {
    fn new(layers: usize, depth: usize, seed: u64) -> Net {
        let mut rng = Rng::seed_from_u64(seed);
        Net {
            fc1: Linear::new(3, 4, &mut rng),
            block: Block { fc: Linear::new(4, 4, &mut rng), gain: Param::new(Tensor::randn(&[4], &mut rng)) },
            layers: (0..layers).map(|_| Linear::new(4, 4, &mut rng)).collect(),
            temperature: 0.7,
            depth,
        }
    }

    #[differentiable]
    fn forward(&self, x: &Tensor<f64>) -> Tensor<f64> {
        let mut h = self.block.forward(&self.fc1.forward(x).tanh());
        let layers = &self.layers;
        for i in 0..self.depth {
            h = layers[i].forward(&h).tanh();
        }
        h * self.temperature
    }

    /// `forward`, indexing the field in place.
    #[differentiable]
    fn forward_indexing_the_field(&self, x: &Tensor<f64>) -> Tensor<f64> {
        let mut h = self.block.forward(&self.fc1.forward(x).tanh());
        for i in 0..self.depth {
            h = self.layers[i].forward(&h).tanh();
        }
        h * self.temperature
    }

    /// `forward` over every layer, iterating the field (and reading a shape by index).
    #[differentiable]
    fn forward_iterating_the_field(&self, x: &Tensor<f64>) -> Tensor<f64> {
        let mut h = self.block.forward(&self.fc1.forward(x).tanh());
        for layer in &self.layers {
            h = layer.forward(&h).tanh();
        }
        let rows = x.shape()[0] as f64;
        let shape = h.shape();
        let scale = (shape[0] * shape[1]) as f64 / rows;
        h * (self.temperature * scale / 4.0)
    }

    #[differentiable]
    fn loss(&self, x: &Tensor<f64>, y: &Tensor<f64>) -> Tensor<f64> {
        mse_loss(&self.forward(x), y)
    }
}

#[differentiable(wrt(net))]
fn net_loss(net: &Net, x: &Tensor<f64>, y: &Tensor<f64>) -> Tensor<f64> {
    net.loss(x, y)
}

#[differentiable(wrt(net))]
fn net_forward(net: &Net, x: &Tensor<f64>) -> Tensor<f64> {
    net.forward(x)
}

#[differentiable(wrt(net))]
fn net_forward_indexing(net: &Net, x: &Tensor<f64>) -> Tensor<f64> {
    net.forward_indexing_the_field(x)
}

#[differentiable(wrt(net))]
fn net_forward_iterating(net: &Net, x: &Tensor<f64>) -> Tensor<f64> {
    net.forward_iterating_the_field(x)
}

#[test]
fn fields_indexed_and_iterated_in_place_match_a_bound_field() {
    // Every layer used, so the three forms compute the same function.
    let net = Net::new(3, 3, 17);
    let (x, _) = data();
    let seed = Tensor::from_vec((0..20).map(|k| (k as f64 * 0.37).sin()).collect(), &[5, 4]);
    let want = flatten(&vjp!(net_forward)(&net, &x, seed.clone()));
    assert_eq!(net_forward_indexing(&net, &x).to_vec(), net_forward(&net, &x).to_vec());
    assert_eq!(flatten(&vjp!(net_forward_indexing)(&net, &x, seed.clone())), want);
    let got = flatten(&vjp!(net_forward_iterating)(&net, &x, seed.clone()));
    for (g, w) in got.iter().zip(&want) {
        assert_vec_close("iterating the field", g, w, EXACT);
    }
}

fn data() -> (T, T) {
    let mut rng = Rng::seed_from_u64(99);
    (Tensor::randn(&[5, 3], &mut rng), Tensor::randn(&[5, 4], &mut rng))
}

/// The parameter gradients of a `NetTangent`, in `named_parameters` order.
fn flatten(g: &NetTangent) -> Vec<Vec<f64>> {
    let mut out =
        vec![g.fc1.weight.to_vec(), g.fc1.bias.to_vec(), g.block.fc.weight.to_vec(), g.block.fc.bias.to_vec()];
    out.push(g.block.gain.to_vec());
    for l in &g.layers {
        out.push(l.weight.to_vec());
        out.push(l.bias.to_vec());
    }
    out
}

/// Check a `NetTangent` against central differences of `loss` in every parameter and
/// in the temperature.
fn check_against_fd(net: &Net, g: &NetTangent, loss: impl Fn(&Net) -> f64) {
    let named = net.named_parameters();
    let flat = flatten(g);
    assert_eq!(flat.len(), named.len());
    for ((name, p), got) in named.iter().zip(&flat) {
        assert_eq!(got.len(), p.value().numel(), "{name}: gradient size");
        let want = fd_param(p, || loss(net));
        assert_vec_close(name, got, &want, FD);
    }
    let temp = fd(|tv| loss(&Net { temperature: tv, ..net.clone() }), net.temperature);
    assert_close("temperature", g.temperature, temp, FD);
}

#[test]
fn named_parameters_order_and_paths() {
    let net = Net::new(2, 2, 1);
    let names: Vec<String> = net.named_parameters().into_iter().map(|(n, _)| n).collect();
    assert_eq!(
        names,
        [
            "fc1.weight",
            "fc1.bias",
            "block.fc.weight",
            "block.fc.bias",
            "block.gain",
            "layers.0.weight",
            "layers.0.bias",
            "layers.1.weight",
            "layers.1.bias"
        ]
    );
    // `parameters()` is the same list without the names, as handles to the model's own
    // parameters.
    let params = net.parameters();
    assert_eq!(params.len(), 9);
    assert!(params[0].ptr_eq(&net.fc1.weight));
    assert!(params[4].ptr_eq(&net.block.gain));
    assert!(params[8].ptr_eq(&net.layers[1].bias));
    for ((_, a), b) in net.named_parameters().iter().zip(&params) {
        assert!(a.ptr_eq(b));
    }
    // Shapes follow the layers: weight [out, in], bias [out].
    let shapes: Vec<Vec<usize>> = params.iter().map(|p| p.value().shape().to_vec()).collect();
    assert_eq!(shapes[0], [4, 3]);
    assert_eq!(shapes[1], [4]);
    assert_eq!(shapes[5], [4, 4]);
    // A run-time number of layers.
    for n in [0, 1, 3] {
        let net = Net::new(n, n, 1);
        let names: Vec<String> = net.named_parameters().into_iter().map(|(n, _)| n).collect();
        assert_eq!(names.len(), 5 + 2 * n);
        if n > 0 {
            assert_eq!(names[names.len() - 1], format!("layers.{}.bias", n - 1));
        }
    }
    // A cloned model shares its parameters (clones of `Param` are handles).
    let copy = net.clone();
    assert!(copy.fc1.weight.ptr_eq(&net.fc1.weight));
}

#[test]
fn tangent_struct_has_the_model_shape() {
    let net = Net::new(2, 2, 2);
    let (x, y) = data();
    let g: NetTangent = grad!(net_loss)(&net, &x, &y);
    assert_eq!(g.fc1.weight.shape(), &[4, 3]);
    assert_eq!(g.fc1.bias.shape(), &[4]);
    assert_eq!(g.block.fc.weight.shape(), &[4, 4]);
    assert_eq!(g.block.gain.shape(), &[4]);
    assert_eq!(g.layers.len(), 2);
    assert_eq!(g.layers[1].weight.shape(), &[4, 4]);
    let _: f64 = g.temperature;
    let () = g.depth;
    // grad! does not deposit.
    assert!(net.parameters().iter().all(|p| p.grad().is_none()));
}

#[test]
fn grad_of_a_model_matches_finite_differences() {
    let net = Net::new(2, 2, 3);
    let (x, y) = data();
    let g = grad!(net_loss)(&net, &x, &y);
    // Every parameter takes part: no gradient is trivially zero.
    for (name, v) in net.named_parameters().iter().map(|(n, _)| n).zip(flatten(&g)) {
        assert!(v.iter().any(|&e| e != 0.0), "{name}: all zero");
    }
    assert!(g.temperature != 0.0);
    check_against_fd(&net, &g, |n| net_loss(n, &x, &y).item());
}

#[test]
fn vjp_of_a_model_matches_finite_differences() {
    let net = Net::new(2, 2, 4);
    let (x, _) = data();
    let mut rng = Rng::seed_from_u64(5);
    let seed = Tensor::randn(&[5, 4], &mut rng);
    let g = vjp!(net_forward)(&net, &x, seed.clone());
    check_against_fd(&net, &g, |n| (net_forward(n, &x) * &seed).sum().item());
}

#[test]
fn backward_of_a_method_deposits_into_the_receiver() {
    let net = Net::new(2, 2, 6);
    let (x, y) = data();
    let want = flatten(&grad!(net_loss)(&net, &x, &y));
    let value = backward!(net.loss(&x, &y));
    assert_close("value", value.item(), net.loss(&x, &y).item(), EXACT);
    for ((name, p), w) in net.named_parameters().iter().zip(&want) {
        assert_vec_close(name, &p.grad().unwrap_or_else(|| panic!("{name} has no gradient")).to_vec(), w, EXACT);
    }
    // Through a free function taking `&Net`, the same.
    net.parameters().iter().for_each(|p| p.zero_grad());
    backward!(net_loss(&net, &x, &y));
    for ((name, p), w) in net.named_parameters().iter().zip(&want) {
        assert_vec_close(name, &p.grad().expect("gradient").to_vec(), w, EXACT);
    }
    // Accumulating: method form then free form doubles.
    backward!(net.loss(&x, &y));
    for ((name, p), w) in net.named_parameters().iter().zip(&want) {
        assert_vec_close(name, &p.grad().expect("gradient").to_vec(), &scaled(w, 2.0), EXACT);
    }
}

#[test]
fn layers_beyond_depth_get_no_gradient() {
    // Only the first of three layers is used.
    let net = Net::new(3, 1, 7);
    let (x, y) = data();
    let g = grad!(net_loss)(&net, &x, &y);
    assert!(g.layers[1].weight.to_vec().iter().all(|&v| v == 0.0));
    check_against_fd(&net, &g, |n| net_loss(n, &x, &y).item());
    backward!(net.loss(&x, &y));
    assert!(net.layers[0].weight.grad().is_some());
    // PyTorch leaves the `.grad` of a parameter outside the graph at `None`; adjoint
    // deposits the whole gradient struct, so an unused parameter gets zeros. Either
    // way the accumulated gradient must be zero.
    for p in [&net.layers[1].weight, &net.layers[2].bias] {
        if let Some(g) = p.grad() {
            assert!(g.to_vec().iter().all(|&v| v == 0.0));
        }
    }
}

#[test]
fn unused_parameters_keep_no_gradient_as_in_pytorch() {
    let net = Net::new(2, 1, 8);
    let (x, y) = data();
    backward!(net.loss(&x, &y));
    assert!(net.layers[0].weight.grad().is_some());
    assert!(net.layers[1].weight.grad().is_none(), "got {:?}", net.layers[1].weight.grad());
    // The consequence: weight decay moves the unused layer, which PyTorch would skip.
    let before = net.layers[1].weight.value().to_vec();
    Sgd::new(net.parameters(), 0.1).weight_decay(0.5).step();
    assert_eq!(net.layers[1].weight.value().to_vec(), before);
}

#[test]
fn backward_of_a_model_from_many_threads_loses_no_update() {
    const THREADS: usize = 4;
    const EACH: usize = 5;
    let net = Net::new(2, 2, 9);
    let (x, y) = data();
    let want = flatten(&grad!(net_loss)(&net, &x, &y));
    std::thread::scope(|s| {
        for k in 0..THREADS {
            let (net, x, y) = (&net, &x, &y);
            s.spawn(move || {
                for _ in 0..EACH {
                    // Half the threads through the method, half through the function.
                    if k % 2 == 0 {
                        backward!(net.loss(x, y));
                    } else {
                        backward!(net_loss(net, x, y));
                    }
                }
            });
        }
    });
    let n = (THREADS * EACH) as f64;
    for ((name, p), w) in net.named_parameters().iter().zip(&want) {
        assert_vec_close(name, &grad_of(p), &scaled(w, n), EXACT2);
    }
}

// ------------------------------------------------------------------ optimizers

/// `w0 − lr·g`, elementwise, as the reference of a plain SGD step.
fn sgd_ref(w: &[f64], g: &[f64], lr: f64, wd: f64) -> Vec<f64> {
    w.iter().zip(g).map(|(w, g)| w - lr * (g + wd * w)).collect()
}

#[test]
fn sgd_plain_step_is_exact() {
    let (x, w) = (x(), param(&W, &[3, 1]));
    backward!(f(&x, &w));
    let g = grad_of(&w);
    let mut opt = Sgd::new(vec![w.clone()], 0.1);
    opt.step();
    let want: Vec<f64> = W.iter().zip(&g).map(|(w, g)| w - 0.1 * g).collect();
    assert_eq!(w.value().to_vec(), want);
    assert_eq!(w.value().shape(), &[3, 1]);
    // The gradient is left for the caller to clear, as in PyTorch.
    assert_eq!(grad_of(&w), g);
    assert!(opt.params()[0].ptr_eq(&w));
}

#[test]
fn sgd_updates_the_model_through_its_parameters() {
    let net = Net::new(2, 2, 10);
    let (x, y) = data();
    backward!(net.loss(&x, &y));
    let before: Vec<(Vec<f64>, Vec<f64>)> = net.parameters().iter().map(|p| (p.value().to_vec(), grad_of(p))).collect();
    let mut opt = Sgd::new(net.parameters(), 0.05);
    opt.step();
    for ((name, p), (w, g)) in net.named_parameters().iter().zip(&before) {
        assert_eq!(p.value().to_vec(), sgd_ref(w, g, 0.05, 0.0), "{name}");
    }
    // zero_grad on the optimizer clears the model's gradients.
    opt.zero_grad();
    assert!(net.parameters().iter().all(|p| p.grad().is_none()));
    assert!(net.fc1.weight.grad().is_none() && net.layers[1].bias.grad().is_none());
}

#[test]
fn sgd_weight_decay_adds_lambda_w() {
    let (x, w) = (x(), param(&W, &[3, 1]));
    backward!(f(&x, &w));
    let g = grad_of(&w);
    Sgd::new(vec![w.clone()], 0.1).weight_decay(0.01).step();
    assert_vec_close("w - lr (g + λw)", &w.value().to_vec(), &sgd_ref(&W, &g, 0.1, 0.01), EXACT);
}

/// Two SGD steps with momentum `mu` and weight decay `wd` on `f`, checked against
/// PyTorch's update: `d = g + wd·w`; `v = d` at the first step, `v = mu·v + d` after;
/// `w ← w − lr·v`.
fn check_momentum(mu: f64, wd: f64) {
    let (x, w) = (x(), param(&W, &[3, 1]));
    let lr = 0.1;
    let mut opt = Sgd::new(vec![w.clone()], lr).momentum(mu).weight_decay(wd);
    let mut want = W.to_vec();
    let mut v = [0.0; 3];
    for step in 0..3 {
        opt.zero_grad();
        backward!(f(&x, &w));
        let g = grad_of(&w);
        assert_vec_close("gradient at the current weights", &g, &f_grad(&X, &want), EXACT);
        for k in 0..3 {
            let d = g[k] + wd * want[k];
            v[k] = if step == 0 { d } else { mu * v[k] + d };
            want[k] -= lr * v[k];
        }
        opt.step();
        assert_vec_close(&format!("step {step}"), &w.value().to_vec(), &want, EXACT);
    }
}

#[test]
fn sgd_momentum_matches_pytorch() {
    check_momentum(0.9, 0.0);
}

#[test]
fn sgd_momentum_with_weight_decay_matches_pytorch() {
    check_momentum(0.8, 0.05);
}

/// PyTorch's Adam, one parameter: `(m, v, step)` state and the update as `torch.optim`
/// writes it (`step_size = lr / bc1`, `denom = √v / √bc2 + ε`).
struct AdamRef {
    lr: f64,
    b1: f64,
    b2: f64,
    eps: f64,
    wd: f64,
    m: Vec<f64>,
    v: Vec<f64>,
    step: i32,
}

impl AdamRef {
    fn new(n: usize) -> Self {
        AdamRef { lr: 1e-3, b1: 0.9, b2: 0.999, eps: 1e-8, wd: 0.0, m: vec![0.0; n], v: vec![0.0; n], step: 0 }
    }

    fn step(&mut self, w: &mut [f64], g: &[f64]) {
        self.step += 1;
        let bc1 = 1.0 - self.b1.powi(self.step);
        let bc2 = 1.0 - self.b2.powi(self.step);
        for k in 0..w.len() {
            let g = g[k] + self.wd * w[k];
            self.m[k] = self.b1 * self.m[k] + (1.0 - self.b1) * g;
            self.v[k] = self.b2 * self.v[k] + (1.0 - self.b2) * g * g;
            let denom = self.v[k].sqrt() / bc2.sqrt() + self.eps;
            w[k] -= self.lr / bc1 * self.m[k] / denom;
        }
    }
}

const GRADS: [[f64; 4]; 3] = [[0.5, -2.0, 1e-3, 3.0], [0.4, 1.0, -1e-3, 3.0], [-0.2, 0.5, 2e-3, -1.0]];
const W4: [f64; 4] = [0.1, -0.3, 0.7, 1.5];

#[test]
fn adam_defaults_match_pytorch() {
    let w = param(&W4, &[2, 2]);
    let mut opt = Adam::new(vec![w.clone()]);
    let mut reference = AdamRef::new(4);
    let mut want = W4.to_vec();
    for (step, g) in GRADS.iter().enumerate() {
        opt.zero_grad();
        w.accumulate_grad(t(g, &[2, 2]));
        opt.step();
        reference.step(&mut want, g);
        assert_vec_close(&format!("step {step}"), &w.value().to_vec(), &want, EXACT);
        if step == 0 {
            // Bias correction: the first step moves every element by lr·sign(g)
            // (up to ε), whatever the gradient's magnitude.
            for k in 0..4 {
                let moved = W4[k] - w.value().to_vec()[k];
                assert_close("first step = lr sign(g)", moved, 1e-3 * g[k].signum(), Tol { rel: 1e-4, abs: 0.0 });
            }
        }
    }
}

#[test]
fn adam_options_match_pytorch() {
    let w = param(&W4, &[4]);
    let mut opt = Adam::new(vec![w.clone()]).lr(0.05).betas(0.8, 0.99).eps(1e-6).weight_decay(0.1);
    let mut reference = AdamRef { lr: 0.05, b1: 0.8, b2: 0.99, eps: 1e-6, wd: 0.1, ..AdamRef::new(4) };
    let mut want = W4.to_vec();
    for (step, g) in GRADS.iter().enumerate() {
        opt.zero_grad();
        w.accumulate_grad(t(g, &[4]));
        opt.step();
        reference.step(&mut want, g);
        assert_vec_close(&format!("step {step}"), &w.value().to_vec(), &want, EXACT);
    }
}

#[test]
fn adam_trains_a_model_from_backward() {
    let net = Net::new(1, 1, 11);
    let (x, y) = data();
    let mut opt = Adam::new(net.parameters()).lr(0.01);
    let mut refs: Vec<(AdamRef, Vec<f64>)> = net
        .parameters()
        .iter()
        .map(|p| (AdamRef { lr: 0.01, ..AdamRef::new(p.value().numel()) }, p.value().to_vec()))
        .collect();
    for _ in 0..3 {
        opt.zero_grad();
        backward!(net.loss(&x, &y));
        for (p, (r, w)) in net.parameters().iter().zip(&mut refs) {
            r.step(w, &grad_of(p));
        }
        opt.step();
    }
    for ((name, p), (_, w)) in net.named_parameters().iter().zip(&refs) {
        assert_vec_close(name, &p.value().to_vec(), w, EXACT);
    }
}

#[test]
fn optimizers_skip_parameters_without_gradient() {
    let a = param(&W4, &[4]);
    let b = param(&[1.0, 2.0], &[2]);
    let g = t(&GRADS[0], &[4]);

    // Plain SGD with weight decay: `b` has no gradient and is left alone.
    a.accumulate_grad(g.clone());
    Sgd::new(vec![a.clone(), b.clone()], 0.1).weight_decay(0.5).step();
    assert_eq!(b.value().to_vec(), [1.0, 2.0]);
    assert_vec_close("a", &a.value().to_vec(), &sgd_ref(&W4, &GRADS[0], 0.1, 0.5), EXACT);

    // Adam: the same.
    let (a, b) = (param(&W4, &[4]), param(&[1.0, 2.0], &[2]));
    a.accumulate_grad(g.clone());
    let mut adam = Adam::new(vec![a.clone(), b.clone()]);
    adam.step();
    adam.step();
    assert_eq!(b.value().to_vec(), [1.0, 2.0]);
    assert!(b.grad().is_none());

    // Momentum: a parameter whose first gradient arrives at the second step starts its
    // velocity there (`v = g`), as PyTorch's momentum buffer does.
    let (a, b) = (param(&W4, &[4]), param(&[1.0, 2.0], &[2]));
    let mut opt = Sgd::new(vec![a.clone(), b.clone()], 0.1).momentum(0.9);
    a.accumulate_grad(g.clone());
    opt.step();
    assert_eq!(b.value().to_vec(), [1.0, 2.0]);
    b.accumulate_grad(t(&[10.0, -10.0], &[2]));
    opt.step();
    assert_vec_close("b after its first gradient", &b.value().to_vec(), &[0.0, 3.0], EXACT);
}

#[test]
fn adam_bias_correction_is_per_parameter_as_in_pytorch() {
    let (a, b) = (param(&W4, &[4]), param(&[1.0, 2.0], &[2]));
    let mut adam = Adam::new(vec![a.clone(), b.clone()]);
    a.accumulate_grad(t(&GRADS[0], &[4]));
    adam.step();
    b.accumulate_grad(t(&[10.0, -10.0], &[2]));
    adam.step();
    let mut want = vec![1.0, 2.0];
    AdamRef::new(2).step(&mut want, &[10.0, -10.0]);
    assert_vec_close("b after its first gradient", &b.value().to_vec(), &want, EXACT);
}

#[test]
fn sgd_reduces_the_loss_of_a_model() {
    let net = Net::new(1, 1, 12);
    let (x, y) = data();
    let mut opt = Sgd::new(net.parameters(), 0.1).momentum(0.9);
    let first = net.loss(&x, &y).item();
    for _ in 0..20 {
        opt.zero_grad();
        backward!(net.loss(&x, &y));
        opt.step();
    }
    let last = net.loss(&x, &y).item();
    assert!(last < 0.9 * first, "loss {first} -> {last}");
}

// ------------------------------------------------------------------ Linear

#[test]
fn linear_init_shapes_bounds_and_seeding() {
    for (inputs, outputs) in [(1, 1), (5, 3), (64, 10)] {
        let l = Linear::<f64>::new(inputs, outputs, &mut Rng::seed_from_u64(42));
        assert_eq!(l.weight.value().shape(), &[outputs, inputs]);
        assert_eq!(l.bias.value().shape(), &[outputs]);
        let bound = 1.0 / (inputs as f64).sqrt();
        for v in l.weight.value().to_vec().into_iter().chain(l.bias.value().to_vec()) {
            assert!((-bound..bound).contains(&v), "{v} outside ±{bound}");
        }
        assert!(l.weight.grad().is_none() && l.bias.grad().is_none());
        let names: Vec<String> = l.named_parameters().into_iter().map(|(n, _)| n).collect();
        assert_eq!(names, ["weight", "bias"]);
    }
    let a = Linear::<f64>::new(5, 3, &mut Rng::seed_from_u64(1));
    let b = Linear::<f64>::new(5, 3, &mut Rng::seed_from_u64(1));
    let c = Linear::<f64>::new(5, 3, &mut Rng::seed_from_u64(2));
    assert_eq!(a.weight.value().to_vec(), b.weight.value().to_vec());
    assert_eq!(a.bias.value().to_vec(), b.bias.value().to_vec());
    assert!(!a.weight.ptr_eq(&b.weight), "same numbers, distinct parameters");
    assert_ne!(a.weight.value().to_vec(), c.weight.value().to_vec());
    // Consecutive layers from one generator differ.
    let mut rng = Rng::seed_from_u64(1);
    let (d, e) = (Linear::<f64>::new(5, 3, &mut rng), Linear::<f64>::new(5, 3, &mut rng));
    assert_eq!(d.weight.value().to_vec(), a.weight.value().to_vec());
    assert_ne!(d.weight.value().to_vec(), e.weight.value().to_vec());
    // The default element type is f32, with the same bound.
    let l: Linear = Linear::new(16, 2, &mut Rng::seed_from_u64(3));
    assert!(l.weight.value().to_vec().iter().all(|v| v.abs() <= 0.25));
    // The entries are spread over the interval, not stuck at a point.
    let big = Linear::<f64>::new(4, 256, &mut Rng::seed_from_u64(4)).weight.value().to_vec();
    let (lo, hi) = big.iter().fold((f64::MAX, f64::MIN), |(lo, hi), &v| (lo.min(v), hi.max(v)));
    assert!(lo < -0.45 && hi > 0.45, "range [{lo}, {hi}]");
}

#[differentiable]
fn linear_sum(layer: &Linear<f64>, x: &Tensor<f64>) -> Tensor<f64> {
    layer.forward(x).sum()
}

#[test]
fn linear_forward_and_gradients_are_the_textbook_ones() {
    let l = Linear::from_parts(t(&[1.0, 2.0, 3.0, 4.0, 5.0, 6.0], &[2, 3]), t(&[0.5, -0.5], &[2]));
    let x = x(); // [2, 3]
    let y = l.forward(&x);
    assert_eq!(y.shape(), &[2, 2]);
    let want: Vec<f64> = (0..2)
        .flat_map(|r| (0..2).map(move |o| (0..3).map(|k| X[3 * r + k] * (1 + 3 * o + k) as f64).sum::<f64>()))
        .zip([0.5, -0.5, 0.5, -0.5])
        .map(|(v, b)| v + b)
        .collect();
    assert_vec_close("x W^T + b", &y.to_vec(), &want, EXACT);
    backward!(linear_sum(&l, &x));
    // d/dW Σ (x Wᵀ + b) = 1ᵀ x per output row; d/db = batch size.
    let col: Vec<f64> = (0..3).map(|k| X[k] + X[3 + k]).collect();
    let want_w: Vec<f64> = col.iter().chain(&col).copied().collect();
    assert_vec_close("dW", &grad_of(&l.weight), &want_w, EXACT);
    assert_eq!(grad_of(&l.bias), [2.0, 2.0]);
}
