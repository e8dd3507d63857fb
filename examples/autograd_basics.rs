//! Autograd basics: the tensor examples of the autograd tutorials, in adjoint.
//!
//! Each section mirrors one behaviour of the user's reference material (SEEDS.md item
//! numbers in brackets) and asserts the numbers it prints:
//! - [1]  what is tracked: `Param` leaves, and `wrt(…)` / `#[no_grad]`;
//! - [2]  only floats have gradients: integer arguments are passed through;
//! - [3]  leaves receive gradients, intermediate values do not;
//! - [4]  `y = x²`, `y.sum().backward()` → `x.grad = [4, 6]`;
//! - [5]  `b = a³`, `b.sum().backward()` → `a.grad = [12, 75]`;
//! - [6]  `y = w·x + b` → grads `x: 3, w: 2, b: 1`;
//! - [7]  `y = x²`, `z = y + 3` → `x.grad = 2`;
//! - [8]  the functional `grad!`: one gradient per input, and the gradient of a sum of
//!   several outputs;
//! - [9]  a non-scalar output needs a seed (a vector-Jacobian product);
//! - [12] `backward!` accumulates into `.grad()` until `zero_grad()`;
//! - [13] no tracking outside differentiable code: updates and inference;
//! - [14] `detach` cuts the gradient.
//!
//! Run with `cargo run --release --example autograd_basics`.

use adjoint::prelude::*;

fn vec1(data: &[f32]) -> Tensor {
    Tensor::from_vec(data.to_vec(), &[data.len()])
}

/// The gradient accumulated into `p`, as a vector (panics if there is none).
fn grad_of(p: &Param<Tensor>) -> Vec<f32> {
    p.grad().expect("a gradient after backward!").to_vec()
}

// ---------------------------------------------------------------------------------
// [1] Tracking. A `Param` is PyTorch's leaf with `requires_grad=True`: `backward!` adds
// gradients into the parameters among the arguments. A plain `Tensor` is untracked by
// `backward!` (there is nowhere to put its gradient); for the functional `grad!`, every
// float argument is an input unless the signature says otherwise (`wrt(…)` or
// `#[no_grad]`). Whether an intermediate value carries a derivative is decided at
// compile time: it does exactly when it depends on an active input.
// ---------------------------------------------------------------------------------

/// `Σ (w·x)`: `w` is a parameter, `x` plain data.
#[differentiable]
fn weighted_sum(w: &Param<Tensor>, x: &Tensor) -> Tensor {
    (w * x).sum()
}

/// `#[no_grad]` takes `scale` out of the gradient: `grad!` returns one gradient only.
#[differentiable]
fn scaled_sum(x: &Tensor, #[no_grad] scale: &Tensor) -> Tensor {
    (x * scale).sum()
}

/// `wrt(x)` names the inputs of the gradient, like `requires_grad` on `x` only.
#[differentiable(wrt(x))]
fn product_sum(x: &Tensor, y: &Tensor) -> Tensor {
    (x * y).sum()
}

// ---------------------------------------------------------------------------------
// [2] Only floats have gradients. An integer argument is passed through untouched and
// gets no gradient. Asking for one is a compile error:
//
//     #[differentiable(wrt(x, n))]
//     fn scaled(x: f64, n: usize) -> f64 { x * n as f64 }
//
//     error: cannot differentiate with respect to `n`: its type `usize` is not a float type
//
// (tests/ui/wrt/integer_argument.rs checks that message.)
// ---------------------------------------------------------------------------------

#[differentiable]
fn repeat(x: f64, n: i32) -> f64 {
    x.powi(n)
}

// [4] y = x², y.sum().backward().
#[differentiable]
fn sum_of_squares(x: &Param<Tensor>) -> Tensor {
    let y = x.powi(2);
    y.sum()
}

// [5] b = a³, b.sum().backward().
#[differentiable]
fn sum_of_cubes(a: &Param<Tensor>) -> Tensor {
    let b = a.powi(3);
    b.sum()
}

// [6] y = w·x + b on 0-d tensors: x, w and b are all leaves.
#[differentiable]
fn linear_unit(x: &Param<Tensor>, w: &Param<Tensor>, b: &Param<Tensor>) -> Tensor {
    w * x + b
}

// [7] y = x², z = y + 3: y is an intermediate value, x the leaf.
#[differentiable]
fn chain(x: &Param<Tensor>) -> Tensor {
    let y = x.powi(2);
    y + 3.0
}

// [8] a = Σt² + Σ ln u: `grad!` returns (∂a/∂t, ∂a/∂u) = (2t, 1/u).
#[differentiable]
fn sum_sq_plus_sum_ln(t: &Tensor, u: &Tensor) -> Tensor {
    t.powi(2).sum() + u.ln().sum()
}

// [8] With one input, `grad!` returns the gradient itself (PyTorch returns a 1-tuple).
#[differentiable]
fn sum_sq(t: &Tensor) -> Tensor {
    t.powi(2).sum()
}

// [8] Several outputs: (Σt², Σ ln u). A seed of ones for both gives the gradient of
// their sum, as `torch.autograd.grad([o1, o2], inputs)` does.
#[differentiable]
fn two_outputs(t: &Tensor, u: &Tensor) -> (Tensor, Tensor) {
    (t.powi(2).sum(), u.ln().sum())
}

// [9] A non-scalar output: y = x² elementwise.
#[differentiable]
fn squares(x: &Param<Tensor>) -> Tensor {
    x.powi(2)
}

// [9] The same as a function of plain data, for `vjp!`.
#[differentiable]
fn squares_of(x: &Tensor) -> Tensor {
    x.powi(2)
}

// [12] A loss summed over a batch: Σ (w·x − y)².
#[differentiable]
fn batch_loss(w: &Param<Tensor>, x: &Tensor, y: &Tensor) -> Tensor {
    (x.matmul(w.value()) - y).powi(2).sum()
}

// [14] x·detach(x): the detached factor is a constant, so the gradient is x, not 2x.
#[differentiable]
fn half_detached(x: &Param<Tensor>) -> Tensor {
    (x * detach(x)).sum()
}

// [14] y = x², z = detach(y)·x: the gradient is y, with nothing flowing back through y.
#[differentiable]
fn detached_intermediate(x: &Param<Tensor>) -> Tensor {
    let y = x.powi(2);
    let z = detach(&y) * x;
    z.sum()
}

fn main() {
    // [1] Tracking.
    let w = Param::new(vec1(&[1.0, 2.0, 3.0]));
    let x = vec1(&[4.0, 5.0, 6.0]);
    let v = backward!(weighted_sum(&w, &x));
    println!("[1]  Σ w·x = {}: w.grad = {:?} (a Param is tracked; x is plain data)", v.item(), grad_of(&w));
    assert_eq!(v.item(), 32.0);
    assert_eq!(grad_of(&w), vec![4.0, 5.0, 6.0]);
    let fresh = Param::new(vec1(&[1.0, 2.0, 3.0]));
    println!("[1]  a parameter no backward pass has reached: grad = {:?}", fresh.grad());
    assert!(fresh.grad().is_none());
    let g = grad!(scaled_sum)(&x, &vec1(&[2.0, 2.0, 2.0]));
    println!("[1]  #[no_grad] scale: grad! returns d/dx only = {:?}", g.to_vec());
    assert_eq!(g.to_vec(), vec![2.0, 2.0, 2.0]);
    let g = grad!(product_sum)(&x, &vec1(&[7.0, 8.0, 9.0]));
    println!("[1]  wrt(x): grad! returns d/dx only = {:?}", g.to_vec());
    assert_eq!(g.to_vec(), vec![7.0, 8.0, 9.0]);

    // [2] Integers have no gradient.
    let g = grad!(repeat)(2.0, 3);
    println!("[2]  d/dx x^n at x = 2, n = 3: {g} (n is an integer: no gradient)");
    assert_eq!(g, 12.0);

    // [3] Leaves receive gradients. The intermediate values of a function (`y` in
    // `chain`) are locals of the generated derivative code: they exist only while it
    // runs, and only the leaves (`Param`s) are left holding a gradient.
    let x3 = Param::new(Tensor::scalar(1.0));
    backward!(chain(&x3));
    println!("[3]  the leaf x holds a gradient after backward: {:?}", x3.grad().map(|g| g.item()));
    assert!(x3.grad().is_some());

    // [4] x = [2, 3], y = x², y.sum().backward() → x.grad = [4, 6].
    let x = Param::new(vec1(&[2.0, 3.0]));
    let s = backward!(sum_of_squares(&x));
    println!("[4]  x = [2, 3], Σx² = {}: x.grad = {:?}", s.item(), grad_of(&x));
    assert_eq!(s.item(), 13.0);
    assert_eq!(grad_of(&x), vec![4.0, 6.0]);

    // [5] a = [2, 5], b = a³, b.sum().backward() → a.grad = [12, 75].
    let a = Param::new(vec1(&[2.0, 5.0]));
    let s = backward!(sum_of_cubes(&a));
    println!("[5]  a = [2, 5], Σa³ = {}: a.grad = {:?}", s.item(), grad_of(&a));
    assert_eq!(s.item(), 133.0);
    assert_eq!(grad_of(&a), vec![12.0, 75.0]);

    // [6] x = 2, w = 3, b = 1, y = w·x + b → x.grad = 3, w.grad = 2, b.grad = 1.
    let (x, w, b) = (Param::new(Tensor::scalar(2.0)), Param::new(Tensor::scalar(3.0)), Param::new(Tensor::scalar(1.0)));
    let y = backward!(linear_unit(&x, &w, &b));
    let grads = [&x, &w, &b].map(|p| p.grad().unwrap().item());
    println!("[6]  y = w·x + b = {}: x.grad = {}, w.grad = {}, b.grad = {}", y.item(), grads[0], grads[1], grads[2]);
    assert_eq!(y.item(), 7.0);
    assert_eq!(grads, [3.0, 2.0, 1.0]);

    // [7] x = 1, y = x², z = y + 3, z.backward() → x.grad = 2.
    let x = Param::new(Tensor::scalar(1.0));
    let z = backward!(chain(&x));
    let gx = x.grad().unwrap().item();
    println!("[7]  x = 1, z = x² + 3 = {}: x.grad = {gx}", z.item());
    assert_eq!((z.item(), gx), (4.0, 2.0));

    // [8] The functional API: gradients returned, not accumulated.
    let t = vec1(&[1.0, 2.0, 4.0]);
    let u = vec1(&[10.0, 20.0]);
    let (gt, gu) = grad!(sum_sq_plus_sum_ln)(&t, &u);
    println!("[8]  a = Σt² + Σ ln u: grad!(a)(t, u) = ({:?}, {:?}) = (2t, 1/u)", gt.to_vec(), gu.to_vec());
    assert_eq!(gt.to_vec(), vec![2.0, 4.0, 8.0]);
    assert_eq!(gu.to_vec(), vec![0.1, 0.05]);
    let gt = grad!(sum_sq)(&t);
    println!("[8]  one input: grad!(Σt²)(t) = {:?} (the gradient itself, not a 1-tuple)", gt.to_vec());
    assert_eq!(gt.to_vec(), vec![2.0, 4.0, 8.0]);
    let (gt, gu) = vjp!(two_outputs)(&t, &u, (Tensor::scalar(1.0), Tensor::scalar(1.0)));
    println!("[8]  two outputs (Σt², Σ ln u), seeded with ones: ({:?}, {:?})", gt.to_vec(), gu.to_vec());
    assert_eq!(gt.to_vec(), vec![2.0, 4.0, 8.0]);
    assert_eq!(gu.to_vec(), vec![0.1, 0.05]);

    // [9] A non-scalar output needs a seed of its shape: y = x², seed v, x.grad = v·2x.
    let x = Param::new(vec1(&[2.0, 3.0]));
    let y = backward!(squares(&x), vec1(&[1.0, 1.0]));
    println!("[9]  y = x² = {:?}, seed [1, 1]: x.grad = {:?}", y.to_vec(), grad_of(&x));
    assert_eq!(grad_of(&x), vec![4.0, 6.0]);
    x.zero_grad();
    backward!(squares(&x), vec1(&[1.0, 0.1]));
    println!("[9]  seed [1, 0.1]: x.grad = {:?}", grad_of(&x));
    assert_eq!(grad_of(&x), vec![4.0, 0.6]);
    let g = vjp!(squares_of)(&vec1(&[2.0, 3.0]), vec1(&[1.0, 0.1]));
    println!("[9]  the functional form, vjp!(y)(x, [1, 0.1]) = {:?}", g.to_vec());
    assert_eq!(g.to_vec(), vec![4.0, 0.6]);
    // Without a seed, the gradient of a non-scalar is an error. For a function whose
    // output type is not a scalar (`Vec<f64>`, a tuple) it is a compile error; a
    // tensor's shape is known only at run time, so there it is a panic.
    let previous_hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(|_| {}));
    let unseeded = std::panic::catch_unwind(|| {
        let x = Param::new(vec1(&[2.0, 3.0]));
        backward!(squares(&x))
    });
    std::panic::set_hook(previous_hook);
    let message = unseeded.expect_err("an unseeded backward of a non-scalar must fail");
    let message = message
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| message.downcast_ref::<&str>().map(|s| s.to_string()))
        .unwrap_or_default();
    println!("[9]  without a seed: error \"{message}\"");
    assert!(message.contains("scalar"));

    // [12] backward! accumulates: twice without resetting doubles the gradient.
    let x = Param::new(vec1(&[2.0, 3.0]));
    backward!(sum_of_squares(&x));
    println!("[12] after one backward:  x.grad = {:?}", grad_of(&x));
    backward!(sum_of_squares(&x));
    println!("[12] after two backwards: x.grad = {:?}", grad_of(&x));
    assert_eq!(grad_of(&x), vec![8.0, 12.0]);
    x.zero_grad();
    println!("[12] after zero_grad:     x.grad = {:?}", x.grad());
    assert!(x.grad().is_none());
    backward!(sum_of_squares(&x));
    println!("[12] one more backward:   x.grad = {:?}", grad_of(&x));
    assert_eq!(grad_of(&x), vec![4.0, 6.0]);

    // [12] Accumulation over mini-batches gives the gradient of the whole batch.
    let mut rng = Rng::seed_from_u64(12);
    let xs = Tensor::randn(&[8, 3], &mut rng);
    let ys = Tensor::randn(&[8], &mut rng);
    let w = Param::new(Tensor::randn(&[3], &mut rng));
    backward!(batch_loss(&w, &xs, &ys));
    let full = grad_of(&w);
    w.zero_grad();
    for half in 0..2 {
        let (xb, yb) = (xs.narrow(0, 4 * half, 4), ys.narrow(0, 4 * half, 4));
        backward!(batch_loss(&w, &xb, &yb));
    }
    let accumulated = grad_of(&w);
    println!("[12] gradient of the full batch:        {full:?}");
    println!("[12] accumulated over two half-batches: {accumulated:?}");
    for (a, b) in full.iter().zip(&accumulated) {
        assert!((a - b).abs() <= 1e-5 * (1.0 + a.abs()));
    }

    // [13] No tracking outside differentiable code. Only `#[differentiable]` functions
    // have derivative code; everything else, like PyTorch under `torch.no_grad()`, just
    // computes values. A parameter update `w -= lr·w.grad` is written with `update`:
    let x = Param::new(vec1(&[2.0, 3.0]));
    backward!(sum_of_squares(&x));
    x.update(|value, grad| *value -= &(grad.unwrap() * 0.1));
    println!("[13] x -= 0.1·x.grad: x = {:?}, and x.grad is still {:?}", x.value().to_vec(), grad_of(&x));
    assert_eq!(x.value().to_vec(), vec![1.6, 2.4]);
    assert_eq!(grad_of(&x), vec![4.0, 6.0]);
    // Inference: calling the function is a plain evaluation, and no gradient moves.
    let y = sum_of_squares(&x);
    println!("[13] inference: Σx² = {} and x.grad is unchanged: {:?}", y.item(), grad_of(&x));
    assert_eq!(grad_of(&x), vec![4.0, 6.0]);

    // [14] detach: the value is used, the gradient does not flow back through it.
    let x = Param::new(vec1(&[2.0, 3.0]));
    backward!(half_detached(&x));
    println!("[14] Σ x·detach(x): x.grad = {:?} (x, not 2x)", grad_of(&x));
    assert_eq!(grad_of(&x), vec![2.0, 3.0]);
    let x = Param::new(vec1(&[2.0, 3.0]));
    backward!(detached_intermediate(&x));
    println!("[14] y = x², Σ detach(y)·x: x.grad = {:?} (y = x², not 3x²)", grad_of(&x));
    assert_eq!(grad_of(&x), vec![4.0, 9.0]);
    // A detached value shares the data of the original (a tensor clone shares storage).
    let data = vec1(&[1.0, 2.0]);
    let detached = detach(data.clone());
    println!("[14] detach(x) == x: {}", detached == data);
    assert_eq!(detached, data);

    println!("all assertions passed");
}
