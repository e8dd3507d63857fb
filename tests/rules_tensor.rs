//! Every tensor derivative rule against central finite differences in `f64`, over
//! random shapes and values (fixed proptest seed), broadcasting included.
//!
//! Most properties check a vector-Jacobian product: `vjp!(f)(x, c)` against central
//! differences of `x ↦ ⟨f(x), c⟩` for a random cotangent `c` (a random `c` rather than
//! ones, so that rules whose sum of outputs is constant, like softmax, are still tested).
//! Elementwise rules are also checked against their analytic derivative. Compositions
//! (an MLP layer, a tanh RNN in a `for` loop, a function called twice, scalars taken out
//! of tensors) go through `grad!`/`value_and_grad!` of scalar-valued functions. A few
//! plain tests check analytic values.
//!
//! `mse_loss`/`cross_entropy` are tested as free functions and as methods, against
//! finite differences and against the same losses written out.

// The functions under test are written the way users write numeric code.
#![allow(
    clippy::needless_range_loop,
    clippy::assign_op_pattern,
    clippy::let_and_return,
    clippy::too_many_arguments,
    clippy::type_complexity,
    clippy::redundant_closure,
    clippy::neg_multiply
)]

mod common;

use adjoint::prelude::*;
use adjoint::Rng;
use common::*;
use proptest::prelude::*;
use proptest::strategy::BoxedStrategy;
use proptest::test_runner::TestCaseError;

type T = Tensor<f64>;
type R = Result<(), TestCaseError>;

/// The largest length of an axis.
const MAX_DIM: usize = 4;

/// Cases of the cheap properties (one primitive).
const CASES_T: u32 = 48;
/// Cases of the compositions.
const CASES_C: u32 = 24;

/// An elementwise rule against its analytic derivative (the rule and the formula may
/// be evaluated differently, e.g. `1 − tanh²` against `1/cosh²`).
const ANALYTIC: Tol = Tol { rel: 1e-12, abs: 1e-13 };

// ------------------------------------------------------------------ helpers

fn tensor(data: Vec<f64>, shape: &[usize]) -> T {
    Tensor::from_vec(data, shape)
}

/// `Σ a ⊙ b` over two tensors of one shape, computed element by element.
fn dot(a: &T, b: &T) -> f64 {
    assert_eq!(a.shape(), b.shape(), "dot of tensors of different shapes");
    a.to_vec().iter().zip(b.to_vec()).map(|(x, y)| x * y).sum()
}

/// A random cotangent of `shape` (entries in −1..1).
fn random_cotangent(shape: &[usize], seed: u64) -> T {
    Tensor::uniform(shape, -1.0, 1.0, &mut Rng::seed_from_u64(seed))
}

/// Central differences of `f` with respect to every element of `x`.
fn fd_t(f: impl Fn(&T) -> f64, x: &T) -> Vec<f64> {
    let shape = x.shape().to_vec();
    fd_vec(|v| f(&tensor(v.to_vec(), &shape)), &x.to_vec())
}

/// A gradient: its shape is `shape`, its elements `want` (within [`FD`]).
fn check_grad(what: &str, got: &T, shape: &[usize], want: &[f64]) -> R {
    if got.shape() != shape {
        return Err(TestCaseError::fail(format!(
            "{what}: gradient of shape {:?}, want {shape:?}\n  got {got:?}",
            got.shape()
        )));
    }
    check_vec(what, &got.to_vec(), want, FD)
}

/// `vjp(x, c)` against central differences of `⟨f(x), c⟩`.
fn vjp1(what: &str, f: impl Fn(&T) -> T, vjp: impl Fn(&T, T) -> T, x: &T, seed: u64) -> R {
    let c = random_cotangent(f(x).shape(), seed);
    let g = vjp(x, c.clone());
    let want = fd_t(|x| dot(&f(x), &c), x);
    check_grad(&format!("{what}: x = {x:?}, cotangent {c:?}"), &g, x.shape(), &want)
}

/// `vjp(a, b, c)` of a function of two tensors against central differences.
fn vjp2(what: &str, f: impl Fn(&T, &T) -> T, vjp: impl Fn(&T, &T, T) -> (T, T), a: &T, b: &T, seed: u64) -> R {
    let c = random_cotangent(f(a, b).shape(), seed);
    let (ga, gb) = vjp(a, b, c.clone());
    let at = format!("{what}: a = {a:?}, b = {b:?}, cotangent {c:?}");
    check_grad(&format!("d/da of {at}"), &ga, a.shape(), &fd_t(|a| dot(&f(a, b), &c), a))?;
    check_grad(&format!("d/db of {at}"), &gb, b.shape(), &fd_t(|b| dot(&f(a, b), &c), b))
}

// ------------------------------------------------------------------ strategies

/// A shape of rank in `ranks`, each axis of length 1..=MAX_DIM.
fn shape(ranks: std::ops::RangeInclusive<usize>) -> impl Strategy<Value = Vec<usize>> {
    ranks.prop_flat_map(|r| proptest::collection::vec(1..=MAX_DIM, r))
}

/// A tensor of `shape` with elements drawn from `values`.
fn tensor_of(shape: Vec<usize>, values: BoxedStrategy<f64>) -> impl Strategy<Value = T> {
    let n: usize = shape.iter().product();
    proptest::collection::vec(values, n).prop_map(move |v| tensor(v, &shape))
}

/// A tensor of random shape (rank in `ranks`) with elements drawn from `values`.
fn any_tensor(ranks: std::ops::RangeInclusive<usize>, values: BoxedStrategy<f64>) -> BoxedStrategy<T> {
    shape(ranks).prop_flat_map(move |s| tensor_of(s, values.clone())).boxed()
}

fn uniform(lo: f64, hi: f64) -> BoxedStrategy<f64> {
    (lo..hi).boxed()
}

/// `lo ≤ |x| < hi`, either sign (away from the kinks of `abs` and `relu`).
fn signed(lo: f64, hi: f64) -> BoxedStrategy<f64> {
    (lo..hi, any::<bool>()).prop_map(|(m, neg)| if neg { -m } else { m }).boxed()
}

/// A tensor of `shape` whose elements are at least 0.25 apart (no ties for `max_dim`).
fn distinct_tensor(shape: Vec<usize>) -> impl Strategy<Value = T> {
    let n: usize = shape.iter().product();
    let levels: Vec<f64> = (0..n).map(|i| (i as f64 - n as f64 / 2.0) * 0.35).collect();
    (Just(levels).prop_shuffle(), proptest::collection::vec(0.0..0.1f64, n))
        .prop_map(move |(v, jitter)| tensor(v.iter().zip(jitter).map(|(a, b)| a + b).collect(), &shape))
}

/// Two shapes in one of the broadcasting patterns (`b`, `n`, `m` random):
/// equal, `[n,m]⊕[m]`, `[m]⊕[n,m]`, `[n,1]⊕[1,m]`, `[b,n,m]⊕[n,1]`, `[n,m]⊕[]`,
/// `[]⊕[n,m]`, `[1,n,1]⊕[b,1,m]`, `[1]⊕[n,m]`.
fn broadcast_shapes() -> impl Strategy<Value = (Vec<usize>, Vec<usize>)> {
    (0usize..9, 1..=MAX_DIM, 1..=MAX_DIM, 1usize..=3).prop_map(|(p, n, m, b)| match p {
        0 => (vec![n, m], vec![n, m]),
        1 => (vec![n, m], vec![m]),
        2 => (vec![m], vec![n, m]),
        3 => (vec![n, 1], vec![1, m]),
        4 => (vec![b, n, m], vec![n, 1]),
        5 => (vec![n, m], vec![]),
        6 => (vec![], vec![n, m]),
        7 => (vec![1, n, 1], vec![b, 1, m]),
        _ => (vec![1], vec![n, m]),
    })
}

/// Operands of a binary operator in a broadcasting pattern; the right one is away
/// from zero (it may be a divisor).
fn broadcast_operands() -> impl Strategy<Value = (T, T)> {
    broadcast_shapes().prop_flat_map(|(sa, sb)| (tensor_of(sa, uniform(-2.0, 2.0)), tensor_of(sb, signed(0.5, 2.0))))
}

/// The shapes of the operands of `matmul` in every supported form.
fn matmul_shapes() -> impl Strategy<Value = (Vec<usize>, Vec<usize>)> {
    (0usize..13, 1..=MAX_DIM, 1..=MAX_DIM, 1..=MAX_DIM, 1usize..=3, 1usize..=2).prop_map(|(p, n, k, m, b, c)| match p {
        0 => (vec![n, k], vec![k, m]),
        1 => (vec![n, k], vec![k]),
        2 => (vec![k], vec![k, m]),
        3 => (vec![k], vec![k]),
        4 => (vec![b, n, k], vec![b, k, m]),
        5 => (vec![b, n, k], vec![k, m]),
        6 => (vec![n, k], vec![b, k, m]),
        7 => (vec![b, n, k], vec![1, k, m]),
        8 => (vec![1, n, k], vec![b, k, m]),
        9 => (vec![b, n, k], vec![k]),
        10 => (vec![k], vec![b, k, m]),
        11 => (vec![c, 1, n, k], vec![b, k, m]),
        _ => (vec![b, 1, n, k], vec![c, k, m]),
    })
}

/// A shape and a shape it broadcasts to (leading axes added, axes of length 1 expanded).
fn broadcastable() -> impl Strategy<Value = (Vec<usize>, Vec<usize>)> {
    shape(1..=3)
        .prop_flat_map(|target| {
            let r = target.len();
            (Just(target), 0..=r, proptest::collection::vec(any::<bool>(), r))
        })
        .prop_map(|(target, keep, ones)| {
            let small: Vec<usize> =
                target[target.len() - keep..].iter().zip(&ones).map(|(&d, &one)| if one { 1 } else { d }).collect();
            (small, target)
        })
}

// ------------------------------------------------------------------ elementwise rules

/// An elementwise method: the vector-Jacobian product against finite differences, and
/// against `c ⊙ d(x)` for the analytic derivative `d`.
macro_rules! elementwise {
    ($m:ident: $x:ident in $values:expr => $body:expr; d = $d:expr $(;)?) => {
        mod $m {
            use super::*;

            #[differentiable]
            pub fn f($x: &Tensor<f64>) -> Tensor<f64> {
                $body
            }

            proptest! {
                #![proptest_config(config_with(CASES_T))]
                #[test]
                fn rule(x in any_tensor(0..=3, $values), seed in any::<u64>()) {
                    vjp1(stringify!($m), f, |x, c| vjp!(f)(x, c), &x, seed)?;
                    let c = random_cotangent(x.shape(), seed);
                    let g = vjp!(f)(&x, c.clone());
                    #[allow(unused_variables)]
                    let want: Vec<f64> = x.to_vec().into_iter().zip(c.to_vec()).map(|($x, c): (f64, f64)| c * $d).collect();
                    check_vec(&format!("{} vs analytic at {x:?}", stringify!($m)), &g.to_vec(), &want, ANALYTIC)?;
                }
            }
        }
    };
}

elementwise!(exp: x in uniform(-3.0, 3.0) => x.exp(); d = x.exp());
elementwise!(ln: x in uniform(0.1, 5.0) => x.ln(); d = 1.0 / x);
elementwise!(sqrt: x in uniform(0.1, 5.0) => x.sqrt(); d = 0.5 / x.sqrt());
elementwise!(abs: x in signed(0.05, 3.0) => x.abs(); d = x.signum());
elementwise!(sin: x in uniform(-4.0, 4.0) => x.sin(); d = x.cos());
elementwise!(cos: x in uniform(-4.0, 4.0) => x.cos(); d = -x.sin());
elementwise!(tanh: x in uniform(-3.0, 3.0) => x.tanh(); d = 1.0 / (x.cosh() * x.cosh()));
elementwise!(sigmoid: x in uniform(-5.0, 5.0) => x.sigmoid();
    d = { let s = 1.0 / (1.0 + (-x).exp()); s * (1.0 - s) });
elementwise!(relu_method: x in signed(0.05, 3.0) => x.relu(); d = if x > 0.0 { 1.0 } else { 0.0 });
// The free function of the prelude (a `#[differentiable]` function calling the method).
elementwise!(relu_function: x in signed(0.05, 3.0) => relu(x); d = if x > 0.0 { 1.0 } else { 0.0 });
elementwise!(neg: x in uniform(-3.0, 3.0) => -x; d = -1.0);
elementwise!(neg_owned: x in uniform(-3.0, 3.0) => -(x * 2.0); d = -2.0);
elementwise!(powi_2: x in uniform(-2.0, 2.0) => x.powi(2); d = 2.0 * x);
elementwise!(powi_3: x in uniform(-2.0, 2.0) => x.powi(3); d = 3.0 * x * x);
elementwise!(powi_0: x in uniform(-2.0, 2.0) => x.powi(0); d = 0.0);
elementwise!(powi_1: x in uniform(-2.0, 2.0) => x.powi(1); d = 1.0);
elementwise!(powi_neg: x in signed(0.3, 2.0) => x.powi(-2); d = -2.0 / (x * x * x));
elementwise!(powf_const: x in uniform(0.1, 4.0) => x.powf(1.7); d = 1.7 * x.powf(0.7));
elementwise!(powf_neg_const: x in uniform(0.1, 4.0) => x.powf(-0.5); d = -0.5 * x.powf(-1.5));
elementwise!(contiguous: x in uniform(-2.0, 2.0) => x.contiguous() * 3.0; d = 3.0);
elementwise!(constants: x in signed(0.3, 3.0) =>
    3.0 * x + 2.0 / x - (1.0 - x) + x / 4.0 - (-x) + x * x - 0.5 + (x - 1.5);
    d = 3.0 - 2.0 / (x * x) + 1.0 + 0.25 + 1.0 + 2.0 * x + 1.0);

/// `powi` with the exponent an argument (not a literal).
mod powi_arg {
    use super::*;

    #[differentiable]
    pub fn f(x: &Tensor<f64>, n: i32) -> Tensor<f64> {
        x.powi(n)
    }

    proptest! {
        #![proptest_config(config_with(CASES_T))]
        #[test]
        fn rule(x in any_tensor(0..=3, signed(0.3, 2.0)), n in -3i32..=4, seed in any::<u64>()) {
            vjp1(&format!("powi({n})"), |x| f(x, n), |x, c| vjp!(f)(x, n, c), &x, seed)?;
        }
    }
}

/// `powf` with an active exponent: the gradient of the exponent is a float.
mod powf_active {
    use super::*;

    #[differentiable]
    pub fn f(x: &Tensor<f64>, p: f64) -> Tensor<f64> {
        x.powf(p)
    }

    proptest! {
        #![proptest_config(config_with(CASES_T))]
        #[test]
        fn rule(x in any_tensor(0..=3, uniform(0.2, 3.0)), p in -2.0..2.5f64, seed in any::<u64>()) {
            let c = random_cotangent(x.shape(), seed);
            let (gx, gp) = vjp!(f)(&x, p, c.clone());
            let at = format!("powf at x = {x:?}, p = {p}");
            check_grad(&format!("d/dx {at}"), &gx, x.shape(), &fd_t(|x| dot(&f(x, p), &c), &x))?;
            check(&format!("d/dp {at}"), gp, fd(|p| dot(&f(&x, p), &c), p), FD)?;
            let want_p: f64 = x.to_vec().iter().zip(c.to_vec()).map(|(x, c)| c * x.powf(p) * x.ln()).sum();
            check(&format!("d/dp {at} vs analytic"), gp, want_p, ANALYTIC)?;
        }
    }
}

// ------------------------------------------------------------------ binary operators

/// One operator between two tensors, borrowed and owned on either side (the owned
/// operands `a * 1.0` are fresh buffers the operator may write into).
macro_rules! tensor_op {
    ($m:ident, $op:tt) => {
        mod $m {
            use super::*;

            #[differentiable]
            pub fn borrowed(a: &Tensor<f64>, b: &Tensor<f64>) -> Tensor<f64> {
                a $op b
            }

            #[differentiable]
            pub fn owned(a: &Tensor<f64>, b: &Tensor<f64>) -> Tensor<f64> {
                (a * 1.0) $op (b * 1.0)
            }

            #[differentiable]
            pub fn owned_lhs(a: &Tensor<f64>, b: &Tensor<f64>) -> Tensor<f64> {
                (a * 1.0) $op b
            }

            #[differentiable]
            pub fn owned_rhs(a: &Tensor<f64>, b: &Tensor<f64>) -> Tensor<f64> {
                a $op (b * 1.0)
            }

            /// Both operands the same tensor.
            #[differentiable]
            pub fn same(a: &Tensor<f64>, b: &Tensor<f64>) -> Tensor<f64> {
                (a $op a) + (b $op b)
            }

            proptest! {
                #![proptest_config(config_with(CASES_T))]
                #[test]
                fn rule((a, b) in broadcast_operands(), seed in any::<u64>()) {
                    let name = stringify!($op);
                    vjp2(&format!("&a {name} &b"), borrowed, |a, b, c| vjp!(borrowed)(a, b, c), &a, &b, seed)?;
                    vjp2(&format!("a {name} b"), owned, |a, b, c| vjp!(owned)(a, b, c), &a, &b, seed)?;
                    vjp2(&format!("a {name} &b"), owned_lhs, |a, b, c| vjp!(owned_lhs)(a, b, c), &a, &b, seed)?;
                    vjp2(&format!("&a {name} b"), owned_rhs, |a, b, c| vjp!(owned_rhs)(a, b, c), &a, &b, seed)?;
                    // `a ⊕ a` needs `b` to broadcast with `a` only through `+`; use `b`'s
                    // values (nonzero) for both.
                    let b2 = b.clone();
                    vjp2(&format!("(a {name} a) + (b {name} b)"), same, |a, b, c| vjp!(same)(a, b, c), &b2, &b, seed)?;
                }
            }
        }
    };
}

tensor_op!(add, +);
tensor_op!(sub, -);
tensor_op!(mul, *);
tensor_op!(div, /);

/// One operator between a tensor and an active `f64`, in both orders, borrowed and
/// owned.
macro_rules! scalar_op {
    ($m:ident, $op:tt) => {
        mod $m {
            use super::*;

            #[differentiable]
            pub fn ts(a: &Tensor<f64>, s: f64) -> Tensor<f64> {
                a $op s
            }

            #[differentiable]
            pub fn ts_owned(a: &Tensor<f64>, s: f64) -> Tensor<f64> {
                (a * 1.0) $op s
            }

            #[differentiable]
            pub fn st(s: f64, a: &Tensor<f64>) -> Tensor<f64> {
                s $op a
            }

            #[differentiable]
            pub fn st_owned(s: f64, a: &Tensor<f64>) -> Tensor<f64> {
                s $op (a * 1.0)
            }

            /// A literal constant on either side.
            #[differentiable]
            pub fn literals(a: &Tensor<f64>) -> Tensor<f64> {
                (2.5 $op a) + (a $op 1.5)
            }

            fn check_ts(what: &str, f: impl Fn(&T, f64) -> T, vjp: impl Fn(&T, f64, T) -> (T, f64), a: &T, s: f64, seed: u64) -> R {
                let c = random_cotangent(f(a, s).shape(), seed);
                let (ga, gs) = vjp(a, s, c.clone());
                let at = format!("{what} at a = {a:?}, s = {s}, cotangent {c:?}");
                check_grad(&format!("d/da {at}"), &ga, a.shape(), &fd_t(|a| dot(&f(a, s), &c), a))?;
                check(&format!("d/ds {at}"), gs, fd(|s| dot(&f(a, s), &c), s), FD)
            }

            proptest! {
                #![proptest_config(config_with(CASES_T))]
                #[test]
                fn rule(a in any_tensor(0..=3, signed(0.5, 2.0)), s in signed(0.5, 2.0), seed in any::<u64>()) {
                    let name = stringify!($op);
                    check_ts(&format!("&a {name} s"), ts, |a, s, c| vjp!(ts)(a, s, c), &a, s, seed)?;
                    check_ts(&format!("a {name} s"), ts_owned, |a, s, c| vjp!(ts_owned)(a, s, c), &a, s, seed)?;
                    check_ts(&format!("s {name} &a"), |a, s| st(s, a), |a, s, c| {
                        let (gs, ga) = vjp!(st)(s, a, c);
                        (ga, gs)
                    }, &a, s, seed)?;
                    check_ts(&format!("s {name} a"), |a, s| st_owned(s, a), |a, s, c| {
                        let (gs, ga) = vjp!(st_owned)(s, a, c);
                        (ga, gs)
                    }, &a, s, seed)?;
                    vjp1(&format!("2.5 {name} a + a {name} 1.5"), literals, |a, c| vjp!(literals)(a, c), &a, seed)?;
                }
            }
        }
    };
}

scalar_op!(add_scalar, +);
scalar_op!(sub_scalar, -);
scalar_op!(mul_scalar, *);
scalar_op!(div_scalar, /);

// ------------------------------------------------------------------ matmul

mod matmul {
    use super::*;

    #[differentiable]
    pub fn f(a: &Tensor<f64>, b: &Tensor<f64>) -> Tensor<f64> {
        a.matmul(b)
    }

    /// Owned operands.
    #[differentiable]
    pub fn owned(a: &Tensor<f64>, b: &Tensor<f64>) -> Tensor<f64> {
        (a * 1.0).matmul(&(b * 1.0))
    }

    /// Transposed views as operands.
    #[differentiable]
    pub fn transposed(a: &Tensor<f64>, b: &Tensor<f64>) -> Tensor<f64> {
        a.t().matmul(&b.t())
    }

    proptest! {
        #![proptest_config(config_with(CASES_T))]
        #[test]
        fn rule((sa, sb) in matmul_shapes(), seed in any::<u64>(), vseed in any::<u64>()) {
            let mut rng = Rng::seed_from_u64(vseed);
            let a = Tensor::uniform(&sa, -1.5, 1.5, &mut rng);
            let b = Tensor::uniform(&sb, -1.5, 1.5, &mut rng);
            vjp2(&format!("{sa:?} matmul {sb:?}"), f, |a, b, c| vjp!(f)(a, b, c), &a, &b, seed)?;
            vjp2(&format!("owned {sa:?} matmul {sb:?}"), owned, |a, b, c| vjp!(owned)(a, b, c), &a, &b, seed)?;
        }

        #[test]
        fn views(n in 1..=MAX_DIM, k in 1..=MAX_DIM, m in 1..=MAX_DIM, seed in any::<u64>(), vseed in any::<u64>()) {
            let mut rng = Rng::seed_from_u64(vseed);
            let a = Tensor::uniform(&[k, n], -1.5, 1.5, &mut rng);
            let b = Tensor::uniform(&[m, k], -1.5, 1.5, &mut rng);
            vjp2("a.t() matmul b.t()", transposed, |a, b, c| vjp!(transposed)(a, b, c), &a, &b, seed)?;
        }
    }
}

// ------------------------------------------------------------------ shapes and views

mod views {
    use super::*;

    #[differentiable]
    pub fn t(x: &Tensor<f64>) -> Tensor<f64> {
        x.t()
    }

    #[differentiable]
    pub fn transpose(x: &Tensor<f64>, d0: usize, d1: usize) -> Tensor<f64> {
        x.transpose(d0, d1)
    }

    #[differentiable]
    pub fn reshape(x: &Tensor<f64>, shape: &[usize]) -> Tensor<f64> {
        x.reshape(shape)
    }

    /// The reshape of a non-contiguous view.
    #[differentiable]
    pub fn reshape_transposed(x: &Tensor<f64>, shape: &[usize]) -> Tensor<f64> {
        x.t().reshape(shape)
    }

    #[differentiable]
    pub fn unsqueeze(x: &Tensor<f64>, axis: usize) -> Tensor<f64> {
        x.unsqueeze(axis)
    }

    #[differentiable]
    pub fn broadcast_to(x: &Tensor<f64>, shape: &[usize]) -> Tensor<f64> {
        x.broadcast_to(shape)
    }

    #[differentiable]
    pub fn sum_to_shape(x: &Tensor<f64>, shape: &[usize]) -> Tensor<f64> {
        x.sum_to_shape(shape)
    }

    /// The narrow rule, called directly (`in_differentiable_code` below checks it
    /// through `vjp!`).
    fn narrow_vjp(x: &T, axis: usize, start: usize, len: usize, c: T) -> T {
        let _ = len;
        <T as adjoint::rules::Narrow>::narrow_adjoint(&c, x, &axis, &start)
    }

    #[differentiable]
    pub fn select(x: &Tensor<f64>, axis: usize, index: usize) -> Tensor<f64> {
        x.select(axis, index)
    }

    #[differentiable]
    pub fn index_rows(x: &Tensor<f64>, rows: &[usize]) -> Tensor<f64> {
        x.index_rows(rows)
    }

    /// A tensor, an axis of it and an index into that axis.
    fn axis_and_index(ranks: std::ops::RangeInclusive<usize>) -> impl Strategy<Value = (T, usize, usize)> {
        any_tensor(ranks, uniform(-2.0, 2.0)).prop_flat_map(|x| {
            let r = x.ndim();
            (Just(x), 0..r).prop_flat_map(|(x, axis)| {
                let n = x.shape()[axis];
                (Just(x), Just(axis), 0..n)
            })
        })
    }

    /// A tensor, an axis, and `start..start + len` within it (possibly empty).
    fn narrowing() -> impl Strategy<Value = (T, usize, usize, usize)> {
        axis_and_index(1..=3).prop_flat_map(|(x, axis, start)| {
            let n = x.shape()[axis];
            (Just(x), Just(axis), Just(start), 0..=n - start)
        })
    }

    /// A tensor and another shape with its number of elements.
    fn reshaping() -> impl Strategy<Value = (T, Vec<usize>)> {
        any_tensor(0..=3, uniform(-2.0, 2.0)).prop_flat_map(|x| {
            let n = x.numel();
            let mut reversed = x.shape().to_vec();
            reversed.reverse();
            let choices = vec![vec![n], vec![1, n], vec![n, 1], reversed, vec![1, n, 1], vec![]];
            let choices: Vec<Vec<usize>> = choices.into_iter().filter(|s| s.iter().product::<usize>() == n).collect();
            (Just(x), proptest::sample::select(choices))
        })
    }

    proptest! {
        #![proptest_config(config_with(CASES_T))]

        #[test]
        fn t_rule(x in any_tensor(0..=2, uniform(-2.0, 2.0)), seed in any::<u64>()) {
            vjp1("t", t, |x, c| vjp!(t)(x, c), &x, seed)?;
        }

        #[test]
        fn transpose_rule((x, d0) in axis_and_index(1..=3).prop_map(|(x, a, _)| (x, a)), d1 in 0usize..3, seed in any::<u64>()) {
            let d1 = d1 % x.ndim();
            vjp1(&format!("transpose({d0}, {d1})"), |x| transpose(x, d0, d1), |x, c| vjp!(transpose)(x, d0, d1, c), &x, seed)?;
        }

        #[test]
        fn reshape_rule((x, s) in reshaping(), seed in any::<u64>()) {
            vjp1(&format!("reshape({s:?})"), |x| reshape(x, &s), |x, c| vjp!(reshape)(x, &s, c), &x, seed)?;
        }

        #[test]
        fn reshape_view_rule(x in any_tensor(2..=2, uniform(-2.0, 2.0)), flat in any::<bool>(), seed in any::<u64>()) {
            let s = if flat { vec![x.numel()] } else { x.shape().to_vec() };
            vjp1(&format!("t().reshape({s:?})"), |x| reshape_transposed(x, &s), |x, c| vjp!(reshape_transposed)(x, &s, c), &x, seed)?;
        }

        #[test]
        fn unsqueeze_rule(x in any_tensor(0..=3, uniform(-2.0, 2.0)), axis in 0usize..4, seed in any::<u64>()) {
            let axis = axis % (x.ndim() + 1);
            vjp1(&format!("unsqueeze({axis})"), |x| unsqueeze(x, axis), |x, c| vjp!(unsqueeze)(x, axis, c), &x, seed)?;
        }

        #[test]
        fn broadcast_to_rule(((small, big), vseed) in (broadcastable(), any::<u64>()), seed in any::<u64>()) {
            let x = Tensor::uniform(&small, -2.0, 2.0, &mut Rng::seed_from_u64(vseed));
            vjp1(&format!("{small:?}.broadcast_to({big:?})"), |x| broadcast_to(x, &big), |x, c| vjp!(broadcast_to)(x, &big, c), &x, seed)?;
        }

        #[test]
        fn sum_to_shape_rule(((small, big), vseed) in (broadcastable(), any::<u64>()), seed in any::<u64>()) {
            let x = Tensor::uniform(&big, -2.0, 2.0, &mut Rng::seed_from_u64(vseed));
            vjp1(&format!("{big:?}.sum_to_shape({small:?})"), |x| sum_to_shape(x, &small), |x, c| vjp!(sum_to_shape)(x, &small, c), &x, seed)?;
        }

        #[test]
        fn narrow_rule((x, axis, start, len) in narrowing(), seed in any::<u64>()) {
            vjp1(&format!("narrow({axis}, {start}, {len}) (rule called directly)"), |x| x.narrow(axis, start, len), |x, c| narrow_vjp(x, axis, start, len, c), &x, seed)?;
        }

        #[test]
        fn select_rule((x, axis, index) in axis_and_index(1..=3), seed in any::<u64>()) {
            vjp1(&format!("select({axis}, {index})"), |x| select(x, axis, index), |x, c| vjp!(select)(x, axis, index, c), &x, seed)?;
        }

        #[test]
        fn index_rows_rule(
            (x, rows) in any_tensor(2..=2, uniform(-2.0, 2.0)).prop_flat_map(|x| {
                let n = x.shape()[0];
                (Just(x), proptest::collection::vec(0..n, 0..=6))
            }),
            seed in any::<u64>(),
        ) {
            vjp1(&format!("index_rows({rows:?})"), |x| index_rows(x, &rows), |x, c| vjp!(index_rows)(x, &rows, c), &x, seed)?;
        }
    }

    /// `Tensor::cat` and `Tensor::stack` of tensors listed in the call (lowered to the
    /// `cat2`/`cat3` primitives, three at a time for longer lists).
    mod joining {
        use super::*;

        #[differentiable]
        pub fn cat2(a: &Tensor<f64>, b: &Tensor<f64>, axis: usize) -> Tensor<f64> {
            Tensor::cat(&[a.clone(), b.clone()], axis)
        }

        /// Five parts (`cat3` twice), each operand used twice, one through `exp`.
        #[differentiable]
        pub fn cat5(a: &Tensor<f64>, b: &Tensor<f64>, axis: usize) -> Tensor<f64> {
            Tensor::cat(&[a.clone(), b.exp(), a * 2.0, b.clone(), a.clone()], axis)
        }

        /// One part: a copy.
        #[differentiable]
        pub fn cat1(a: &Tensor<f64>, b: &Tensor<f64>, axis: usize) -> Tensor<f64> {
            Tensor::cat(&[a * b], axis)
        }

        #[differentiable]
        pub fn stack3(a: &Tensor<f64>, b: &Tensor<f64>, axis: usize) -> Tensor<f64> {
            Tensor::stack(&[a.clone(), b.tanh(), a.clone()], axis)
        }

        /// The states of a small RNN collected in a `Vec` and stacked: a run-time list.
        #[differentiable]
        pub fn stack_of_states(xs: &Tensor<f64>, w: &Tensor<f64>, axis: usize) -> Tensor<f64> {
            let mut h = Tensor::zeros(&[w.shape()[0]]);
            let mut hs = Vec::new();
            for t in 0..xs.shape()[0] {
                h = (w.matmul(&h) + xs.select(0, t)).tanh();
                hs.push(h.clone());
            }
            Tensor::stack(&hs, axis)
        }

        /// A run-time list of parts of growing length along `axis`, each used twice.
        #[differentiable]
        pub fn cat_of_parts(a: &Tensor<f64>, b: &Tensor<f64>, parts: usize, axis: usize) -> Tensor<f64> {
            let mut list = Vec::new();
            let mut part = a.clone();
            for _ in 0..parts {
                part = part.tanh() * b;
                list.push(part.clone());
                list.push(part.exp());
            }
            Tensor::cat(&list, axis) * 1.5
        }

        /// Two tensors whose shapes differ only along `axis` (where `b` may be empty).
        fn catable() -> impl Strategy<Value = (T, T, usize)> {
            (shape(1..=3), any::<u64>()).prop_flat_map(|(sa, vseed)| {
                let r = sa.len();
                (Just(sa), Just(vseed), 0..r, 0..=3usize).prop_map(|(sa, vseed, axis, len)| {
                    let mut sb = sa.clone();
                    sb[axis] = len;
                    let mut rng = Rng::seed_from_u64(vseed);
                    (Tensor::uniform(&sa, -1.5, 1.5, &mut rng), Tensor::uniform(&sb, -1.5, 1.5, &mut rng), axis)
                })
            })
        }

        proptest! {
            #![proptest_config(config_with(CASES_T))]

            #[test]
            fn cat_rules((a, b, axis) in catable(), seed in any::<u64>()) {
                vjp2(&format!("cat of two along {axis}"), |a, b| cat2(a, b, axis), |a, b, c| vjp!(cat2)(a, b, axis, c), &a, &b, seed)?;
                vjp2(&format!("cat of five along {axis}"), |a, b| cat5(a, b, axis), |a, b, c| vjp!(cat5)(a, b, axis, c), &a, &b, seed)?;
            }

            #[test]
            fn stack_and_single_part_rules((a, b, axis) in axis_and_index(1..=3).prop_map(|(a, axis, _)| {
                let b = a.exp() - 1.5;
                (a, b, axis)
            }), stack_axis in 0usize..4, seed in any::<u64>()) {
                let stack_axis = stack_axis % (a.ndim() + 1);
                vjp2(&format!("stack of three along {stack_axis}"), |a, b| stack3(a, b, stack_axis), |a, b, c| vjp!(stack3)(a, b, stack_axis, c), &a, &b, seed)?;
                vjp2(&format!("cat of one along {axis}"), |a, b| cat1(a, b, axis), |a, b, c| vjp!(cat1)(a, b, axis, c), &a, &b, seed)?;
            }
        }

        proptest! {
            #![proptest_config(config_with(CASES_T))]

            /// `Tensor::stack`/`Tensor::cat` of a `Vec` built in a loop.
            #[test]
            fn joins_of_runtime_lists(steps in 1usize..=4, d in 1..=MAX_DIM, parts in 1usize..=3, stack_axis in 0usize..2, vseed in any::<u64>(), seed in any::<u64>()) {
                let mut rng = Rng::seed_from_u64(vseed);
                let xs = Tensor::uniform(&[steps, d], -1.0, 1.0, &mut rng);
                let w = Tensor::uniform(&[d, d], -1.0, 1.0, &mut rng);
                vjp2(&format!("stack of {steps} states along {stack_axis}"), |xs, w| stack_of_states(xs, w, stack_axis), |xs, w, c| vjp!(stack_of_states)(xs, w, stack_axis, c), &xs, &w, seed)?;
                let (a, b) = (Tensor::uniform(&[2, d], -1.0, 1.0, &mut rng), Tensor::uniform(&[2, d], -1.0, 1.0, &mut rng));
                for axis in 0..2 {
                    vjp2(&format!("cat of {} parts along {axis}", 2 * parts), |a, b| cat_of_parts(a, b, parts, axis), |a, b, c| vjp!(cat_of_parts)(a, b, parts, axis, c), &a, &b, seed)?;
                }
            }
        }

        #[test]
        fn cat_gradient_is_each_part_of_the_cotangent() {
            let a = Tensor::from_vec(vec![1.0, 2.0, 3.0, 4.0], &[2, 2]);
            let b = Tensor::from_vec(vec![5.0, 6.0], &[2, 1]);
            let y = cat2(&a, &b, 1);
            assert_eq!(y.to_vec(), vec![1.0, 2.0, 5.0, 3.0, 4.0, 6.0]);
            let c = Tensor::from_vec(vec![10.0, 20.0, 30.0, 40.0, 50.0, 60.0], &[2, 3]);
            let (ga, gb) = vjp!(cat2)(&a, &b, 1, c);
            assert_eq!(ga.to_vec(), vec![10.0, 20.0, 40.0, 50.0]);
            assert_eq!(gb.to_vec(), vec![30.0, 60.0]);
        }
    }

    /// `narrow` (four operands) through `vjp!`.
    mod in_differentiable_code {
        use super::*;

        #[differentiable]
        pub fn narrow(x: &Tensor<f64>, axis: usize, start: usize, len: usize) -> Tensor<f64> {
            x.narrow(axis, start, len)
        }

        proptest! {
            #![proptest_config(config_with(CASES_T))]

            #[test]
            fn narrow_rule((x, axis, start, len) in narrowing(), seed in any::<u64>()) {
                vjp1(&format!("narrow({axis}, {start}, {len})"), |x| narrow(x, axis, start, len), |x, c| vjp!(narrow)(x, axis, start, len, c), &x, seed)?;
            }
        }
    }
}

// ------------------------------------------------------------------ reductions

mod reductions {
    use super::*;

    #[differentiable]
    pub fn sum(x: &Tensor<f64>) -> Tensor<f64> {
        x.sum()
    }

    #[differentiable]
    pub fn mean(x: &Tensor<f64>) -> Tensor<f64> {
        x.mean()
    }

    #[differentiable]
    pub fn norm(x: &Tensor<f64>) -> Tensor<f64> {
        x.norm()
    }

    #[differentiable]
    pub fn sum_dim(x: &Tensor<f64>, axis: usize, keepdim: bool) -> Tensor<f64> {
        x.sum_dim(axis, keepdim)
    }

    #[differentiable]
    pub fn mean_dim(x: &Tensor<f64>, axis: usize, keepdim: bool) -> Tensor<f64> {
        x.mean_dim(axis, keepdim)
    }

    #[differentiable]
    pub fn max_dim(x: &Tensor<f64>, axis: usize, keepdim: bool) -> Tensor<f64> {
        x.max_dim(axis, keepdim)
    }

    /// `item` of a one-element tensor.
    #[differentiable]
    pub fn item(x: &Tensor<f64>) -> f64 {
        x.item() * 3.0
    }

    /// Floats taken out of tensors and used again, with tensors and with each other.
    #[differentiable]
    pub fn items(x: &Tensor<f64>) -> f64 {
        let s = x.sum().item();
        let m = x.mean().item();
        let q = (x * s).powi(2).mean().item();
        s * s + m.sin() + q - s * m
    }

    fn with_axis(ranks: std::ops::RangeInclusive<usize>) -> impl Strategy<Value = (T, usize)> {
        any_tensor(ranks, uniform(-2.0, 2.0)).prop_flat_map(|x| {
            let r = x.ndim();
            (Just(x), 0..r)
        })
    }

    proptest! {
        #![proptest_config(config_with(CASES_T))]

        #[test]
        fn sum_rule(x in any_tensor(0..=3, uniform(-2.0, 2.0)), seed in any::<u64>()) {
            vjp1("sum", sum, |x, c| vjp!(sum)(x, c), &x, seed)?;
        }

        #[test]
        fn mean_rule(x in any_tensor(0..=3, uniform(-2.0, 2.0)), seed in any::<u64>()) {
            vjp1("mean", mean, |x, c| vjp!(mean)(x, c), &x, seed)?;
        }

        #[test]
        fn norm_rule(x in any_tensor(0..=3, signed(0.1, 2.0)), seed in any::<u64>()) {
            vjp1("norm", norm, |x, c| vjp!(norm)(x, c), &x, seed)?;
        }

        #[test]
        fn sum_dim_rule((x, axis) in with_axis(1..=3), keepdim in any::<bool>(), seed in any::<u64>()) {
            vjp1(&format!("sum_dim({axis}, {keepdim})"), |x| sum_dim(x, axis, keepdim), |x, c| vjp!(sum_dim)(x, axis, keepdim, c), &x, seed)?;
        }

        #[test]
        fn mean_dim_rule((x, axis) in with_axis(1..=3), keepdim in any::<bool>(), seed in any::<u64>()) {
            vjp1(&format!("mean_dim({axis}, {keepdim})"), |x| mean_dim(x, axis, keepdim), |x, c| vjp!(mean_dim)(x, axis, keepdim, c), &x, seed)?;
        }

        #[test]
        fn max_dim_rule(
            (x, axis) in shape(1..=3).prop_flat_map(|s| {
                let r = s.len();
                (distinct_tensor(s), 0..r)
            }),
            keepdim in any::<bool>(),
            seed in any::<u64>(),
        ) {
            vjp1(&format!("max_dim({axis}, {keepdim})"), |x| max_dim(x, axis, keepdim), |x, c| vjp!(max_dim)(x, axis, keepdim, c), &x, seed)?;
        }

        #[test]
        fn item_rule(v in -3.0..3.0f64, rank in 0usize..=3) {
            let x = tensor(vec![v], &vec![1; rank]);
            let g = grad!(item)(&x);
            check_grad(&format!("item of {x:?}"), &g, x.shape(), &fd_t(|x| item(x), &x))?;
            check_grad(&format!("item of {x:?} vs analytic"), &g, x.shape(), &[3.0])?;
        }

        #[test]
        fn items_rule(x in any_tensor(0..=3, uniform(-1.0, 1.0))) {
            let g = grad!(items)(&x);
            check_grad(&format!("floats out of tensors at {x:?}"), &g, x.shape(), &fd_t(|x| items(x), &x))?;
        }
    }
}

// ------------------------------------------------------------------ softmax and log-softmax

mod softmax {
    use super::*;

    #[differentiable]
    pub fn softmax(x: &Tensor<f64>, axis: usize) -> Tensor<f64> {
        x.softmax(axis)
    }

    #[differentiable]
    pub fn log_softmax(x: &Tensor<f64>, axis: usize) -> Tensor<f64> {
        x.log_softmax(axis)
    }

    proptest! {
        #![proptest_config(config_with(CASES_T))]

        #[test]
        fn rule(
            (x, axis) in any_tensor(1..=3, uniform(-3.0, 3.0)).prop_flat_map(|x| {
                let r = x.ndim();
                (Just(x), 0..r)
            }),
            seed in any::<u64>(),
        ) {
            vjp1(&format!("softmax({axis})"), |x| softmax(x, axis), |x, c| vjp!(softmax)(x, axis, c), &x, seed)?;
            vjp1(&format!("log_softmax({axis})"), |x| log_softmax(x, axis), |x, c| vjp!(log_softmax)(x, axis, c), &x, seed)?;
        }

        /// Both axes of a matrix, explicitly.
        #[test]
        fn both_axes_of_a_matrix(x in any_tensor(2..=2, uniform(-3.0, 3.0)), seed in any::<u64>()) {
            for axis in 0..2 {
                vjp1(&format!("softmax({axis})"), |x| softmax(x, axis), |x, c| vjp!(softmax)(x, axis, c), &x, seed)?;
                vjp1(&format!("log_softmax({axis})"), |x| log_softmax(x, axis), |x, c| vjp!(log_softmax)(x, axis, c), &x, seed)?;
            }
        }
    }
}

// ------------------------------------------------------------------ losses

mod losses {
    use super::*;

    #[differentiable]
    pub fn mse_free(pred: &Tensor<f64>, target: &Tensor<f64>) -> Tensor<f64> {
        mse_loss(pred, target)
    }

    #[differentiable]
    pub fn mse_method(pred: &Tensor<f64>, target: &Tensor<f64>) -> Tensor<f64> {
        pred.mse_loss(target)
    }

    /// `mse_loss` written out.
    #[differentiable]
    pub fn mse_composed(pred: &Tensor<f64>, target: &Tensor<f64>) -> Tensor<f64> {
        (pred - target).powi(2).mean()
    }

    #[differentiable]
    pub fn ce_free(logits: &Tensor<f64>, targets: &[usize]) -> Tensor<f64> {
        cross_entropy(logits, targets)
    }

    #[differentiable]
    pub fn ce_method(logits: &Tensor<f64>, targets: &[usize]) -> Tensor<f64> {
        logits.cross_entropy(targets)
    }

    /// `cross_entropy` written out (`onehot` is the one-hot encoding of the targets).
    #[differentiable(wrt(logits))]
    pub fn ce_composed(logits: &Tensor<f64>, onehot: &Tensor<f64>) -> Tensor<f64> {
        -(logits.log_softmax(1) * onehot).sum_dim(1, false).mean()
    }

    fn mse_operands() -> impl Strategy<Value = (T, T)> {
        broadcast_shapes()
            .prop_flat_map(|(sa, sb)| (tensor_of(sa, uniform(-2.0, 2.0)), tensor_of(sb, uniform(-2.0, 2.0))))
    }

    fn logits_and_targets() -> impl Strategy<Value = (T, Vec<usize>)> {
        (1..=MAX_DIM, 1..=MAX_DIM + 1)
            .prop_flat_map(|(n, c)| (tensor_of(vec![n, c], uniform(-3.0, 3.0)), proptest::collection::vec(0..c, n)))
    }

    proptest! {
        #![proptest_config(config_with(CASES_T))]

        /// `mse_loss` (free function and method, with broadcasting) against finite
        /// differences and against the loss written out.
        #[test]
        fn mse_loss_rule((p, t) in mse_operands(), seed in any::<u64>()) {
            vjp2("mse_loss(pred, target)", mse_free, |a, b, c| vjp!(mse_free)(a, b, c), &p, &t, seed)?;
            vjp2("pred.mse_loss(target)", mse_method, |a, b, c| vjp!(mse_method)(a, b, c), &p, &t, seed)?;
            check("mse_loss value vs written out", mse_free(&p, &t).item(), mse_composed(&p, &t).item(), EXACT)?;
            let (gp, gt) = grad!(mse_free)(&p, &t);
            let (wp, wt) = grad!(mse_composed)(&p, &t);
            check_vec("mse_loss d/dpred vs written out", &gp.to_vec(), &wp.to_vec(), ANALYTIC)?;
            check_vec("mse_loss d/dtarget vs written out", &gt.to_vec(), &wt.to_vec(), ANALYTIC)?;
        }

        /// `cross_entropy` (free function and method) against finite differences, the
        /// loss written out, and `(softmax − onehot)/n`.
        #[test]
        fn cross_entropy_rule((x, targets) in logits_and_targets(), seed in any::<u64>()) {
            let at = format!("logits {x:?}, targets {targets:?}");
            vjp1(&format!("cross_entropy({at})"), |x| ce_free(x, &targets), |x, c| vjp!(ce_free)(x, &targets, c), &x, seed)?;
            vjp1(&format!("logits.cross_entropy({at})"), |x| ce_method(x, &targets), |x, c| vjp!(ce_method)(x, &targets, c), &x, seed)?;

            let onehot = Tensor::one_hot(&targets, x.shape()[1]);
            check(&format!("cross_entropy value vs written out, {at}"), ce_free(&x, &targets).item(), ce_composed(&x, &onehot).item(), Tol { rel: 1e-12, abs: 1e-12 })?;
            let g = grad!(ce_free)(&x, &targets);
            let composed = grad!(ce_composed)(&x, &onehot);
            check_vec(&format!("cross_entropy gradient vs written out, {at}"), &g.to_vec(), &composed.to_vec(), ANALYTIC)?;
            let n = targets.len() as f64;
            let want: Vec<f64> = x.softmax(1).to_vec().iter().zip(onehot.to_vec()).map(|(s, o)| (s - o) / n).collect();
            check_vec(&format!("cross_entropy gradient vs (softmax - onehot)/n, {at}"), &g.to_vec(), &want, ANALYTIC)?;
        }
    }
}

// ------------------------------------------------------------------ compositions

mod compositions {
    use super::*;

    /// One dense layer with a ReLU, averaged.
    #[differentiable]
    pub fn mlp_layer(x: &Tensor<f64>, w: &Tensor<f64>, b: &Tensor<f64>) -> Tensor<f64> {
        (x.matmul(w) + b).relu().mean()
    }

    /// Two layers and a softmax cross-entropy written out.
    #[differentiable(wrt(w1, b1, w2, b2))]
    pub fn mlp2(
        x: &Tensor<f64>,
        w1: &Tensor<f64>,
        b1: &Tensor<f64>,
        w2: &Tensor<f64>,
        b2: &Tensor<f64>,
        onehot: &Tensor<f64>,
    ) -> Tensor<f64> {
        let h = (x.matmul(w1) + b1).tanh();
        let logits = h.matmul(w2) + b2;
        -(logits.log_softmax(1) * onehot).sum_dim(1, false).mean()
    }

    /// A tanh RNN over the first axis of `xs` (`[steps, n, h]`), in a `for` loop.
    #[differentiable]
    pub fn rnn(xs: &Tensor<f64>, h0: &Tensor<f64>, w: &Tensor<f64>, c: &Tensor<f64>) -> Tensor<f64> {
        let mut h = h0.clone();
        let shape = xs.shape();
        for t in 0..shape[0] {
            h = (h.matmul(w) + xs.select(0, t)).tanh();
        }
        (h * c).sum()
    }

    /// A tanh RNN over vectors (`W·h + U·x_t`, then `h·V` read out at every step): the
    /// weights' adjoints are sums of outer products, which the generated code adds in
    /// place (`Matmul::matmul_*_adjoint_into`).
    #[differentiable]
    pub fn rnn_vector(xs: &Tensor<f64>, w: &Tensor<f64>, u: &Tensor<f64>, v: &Tensor<f64>) -> Tensor<f64> {
        let mut h = Tensor::zeros(&[w.shape()[0]]);
        let mut out = Tensor::zeros(&[v.shape()[1]]);
        for t in 0..xs.shape()[0] {
            h = (w.matmul(&h) + u.matmul(&xs.select(0, t)) + 0.1).tanh();
            out = out + h.matmul(v);
        }
        out.powi(2).sum()
    }

    /// One weight with every kind of contribution inside the loop: as the matrix of a
    /// matrix·vector product and of a vector·matrix product (both deferred to after the
    /// loop), and through `sum` (added at each step).
    #[differentiable]
    pub fn rnn_shared(xs: &Tensor<f64>, w: &Tensor<f64>) -> Tensor<f64> {
        let mut h = Tensor::zeros(&[w.shape()[0]]);
        for t in 0..xs.shape()[0] {
            let x = xs.select(0, t);
            h = (w.matmul(&h) + x.matmul(w)).tanh() + w.sum() * 0.01;
        }
        h.powi(2).sum()
    }

    /// A weight used in a loop nested in a `while` loop: its contributions are deferred
    /// to after the outer loop (the inner loop sees it deferred already).
    #[differentiable]
    pub fn rnn_nested(xs: &Tensor<f64>, w: &Tensor<f64>, layers: usize) -> Tensor<f64> {
        let mut h = Tensor::zeros(&[w.shape()[0]]);
        let mut t = 0;
        while t < xs.shape()[0] {
            for _ in 0..layers {
                h = (w.matmul(&h) + xs.select(0, t)).tanh();
            }
            t += 1;
        }
        h.powi(2).sum()
    }

    #[differentiable]
    pub fn layer(x: &Tensor<f64>, w: &Tensor<f64>) -> Tensor<f64> {
        x.matmul(w).tanh()
    }

    /// `layer` called twice with the same weights: the weight gradient accumulates.
    #[differentiable]
    pub fn twice(x: &Tensor<f64>, w: &Tensor<f64>) -> Tensor<f64> {
        let h = layer(x, w);
        let y = layer(&h, w);
        (y * &h).sum() + layer(x, w).sum()
    }

    /// One tensor used many times.
    #[differentiable]
    pub fn reuse(x: &Tensor<f64>) -> Tensor<f64> {
        (x * x + x.exp() * x - x / (x.abs() + 1.0)).sum() + x.sin().matmul(&x.t()).sum()
    }

    /// A scalar argument mixed with tensors and floats taken out of them.
    #[differentiable]
    pub fn mixed(x: &Tensor<f64>, a: f64) -> f64 {
        let m = x.mean().item();
        ((x - m) * a).powi(2).sum().item() + a.sin() * m
    }

    /// Normalisation: 0-d tensors broadcast against the tensor they came from.
    #[differentiable]
    pub fn normalise(x: &Tensor<f64>, c: &Tensor<f64>) -> Tensor<f64> {
        let z = x - x.mean();
        let s = &z / z.norm();
        (s * c).sum()
    }

    /// A loop accumulating into a tensor, over views of the argument.
    #[differentiable]
    pub fn loop_accumulate(x: &Tensor<f64>) -> Tensor<f64> {
        let shape = x.shape();
        let n = shape[0];
        let mut acc = x.select(0, 0) * 0.0;
        for i in 0..n {
            acc = acc + x.select(0, i).powi(2) * (i as f64 + 1.0);
        }
        acc.sin().sum()
    }

    /// A chain of views and reductions.
    #[differentiable]
    pub fn view_chain(x: &Tensor<f64>) -> Tensor<f64> {
        let shape = x.shape();
        let k = shape[1];
        let y = x.t().matmul(&x.select(1, 0).unsqueeze(1));
        let z = y.unsqueeze(0).broadcast_to(&[2, k, 1]).sum_dim(0, false).reshape(&[k]);
        let w = z.softmax(0) * x.select(0, 0);
        w.sum() + x.max_dim(1, false).sum() * 0.5
    }

    proptest! {
        #![proptest_config(config_with(CASES_C))]

        #[test]
        fn mlp_layer_rule(n in 1..=MAX_DIM, i in 1..=MAX_DIM, o in 1..=MAX_DIM, vseed in any::<u64>()) {
            let mut rng = Rng::seed_from_u64(vseed);
            let x = Tensor::uniform(&[n, i], -1.0, 1.0, &mut rng);
            let w = Tensor::uniform(&[i, o], -1.0, 1.0, &mut rng);
            let b = Tensor::uniform(&[o], -1.0, 1.0, &mut rng);
            // Away from the kink of the ReLU.
            let pre = (x.matmul(&w) + &b).to_vec();
            prop_assume!(pre.iter().all(|p| p.abs() > 1e-3));
            let (gx, gw, gb) = grad!(mlp_layer)(&x, &w, &b);
            check_grad("mlp d/dx", &gx, x.shape(), &fd_t(|x| mlp_layer(x, &w, &b).item(), &x))?;
            check_grad("mlp d/dw", &gw, w.shape(), &fd_t(|w| mlp_layer(&x, w, &b).item(), &w))?;
            check_grad("mlp d/db", &gb, b.shape(), &fd_t(|b| mlp_layer(&x, &w, b).item(), &b))?;
            let (v, (gx2, _, _)) = value_and_grad!(mlp_layer)(&x, &w, &b);
            check("mlp value", v.item(), mlp_layer(&x, &w, &b).item(), EXACT)?;
            prop_assert_eq!(gx2.to_vec(), gx.to_vec());
        }

        /// Non-contiguous views as arguments: the gradients have the views' shapes.
        #[test]
        fn view_arguments(n in 1..=MAX_DIM, i in 1..=MAX_DIM, o in 1..=MAX_DIM, vseed in any::<u64>()) {
            let mut rng = Rng::seed_from_u64(vseed);
            let x = Tensor::uniform(&[i, n], -1.0, 1.0, &mut rng).t();
            let w = Tensor::uniform(&[2, o, i], -1.0, 1.0, &mut rng).select(0, 1).t();
            let b = Tensor::uniform(&[o, 3], -1.0, 1.0, &mut rng).select(1, 2);
            let pre = (x.matmul(&w) + &b).to_vec();
            prop_assume!(pre.iter().all(|p| p.abs() > 1e-3));
            let (gx, gw, gb) = grad!(mlp_layer)(&x, &w, &b);
            let (xc, wc, bc) = (x.contiguous(), w.contiguous(), b.contiguous());
            check_grad("views: mlp d/dx", &gx, x.shape(), &fd_t(|x| mlp_layer(x, &wc, &bc).item(), &xc))?;
            check_grad("views: mlp d/dw", &gw, w.shape(), &fd_t(|w| mlp_layer(&xc, w, &bc).item(), &wc))?;
            check_grad("views: mlp d/db", &gb, b.shape(), &fd_t(|b| mlp_layer(&xc, &wc, b).item(), &bc))?;
        }

        #[test]
        fn mlp2_rule(n in 1..=MAX_DIM, i in 1..=MAX_DIM, h in 1..=MAX_DIM, c in 2..=MAX_DIM, vseed in any::<u64>()) {
            let mut rng = Rng::seed_from_u64(vseed);
            let x = Tensor::uniform(&[n, i], -1.0, 1.0, &mut rng);
            let w1 = Tensor::uniform(&[i, h], -1.0, 1.0, &mut rng);
            let b1 = Tensor::uniform(&[h], -1.0, 1.0, &mut rng);
            let w2 = Tensor::uniform(&[h, c], -1.0, 1.0, &mut rng);
            let b2 = Tensor::uniform(&[1, c], -1.0, 1.0, &mut rng);
            let targets: Vec<usize> = (0..n).map(|k| (k * 7 + vseed as usize) % c).collect();
            let onehot = Tensor::one_hot(&targets, c);
            let (gw1, gb1, gw2, gb2) = grad!(mlp2)(&x, &w1, &b1, &w2, &b2, &onehot);
            check_grad("mlp2 d/dw1", &gw1, w1.shape(), &fd_t(|w1| mlp2(&x, w1, &b1, &w2, &b2, &onehot).item(), &w1))?;
            check_grad("mlp2 d/db1", &gb1, b1.shape(), &fd_t(|b1| mlp2(&x, &w1, b1, &w2, &b2, &onehot).item(), &b1))?;
            check_grad("mlp2 d/dw2", &gw2, w2.shape(), &fd_t(|w2| mlp2(&x, &w1, &b1, w2, &b2, &onehot).item(), &w2))?;
            check_grad("mlp2 d/db2", &gb2, b2.shape(), &fd_t(|b2| mlp2(&x, &w1, &b1, &w2, b2, &onehot).item(), &b2))?;
        }

        #[test]
        fn rnn_rule(steps in 0usize..=3, n in 1..=3usize, h in 1..=MAX_DIM, vseed in any::<u64>()) {
            let mut rng = Rng::seed_from_u64(vseed);
            let xs = Tensor::uniform(&[steps, n, h], -1.0, 1.0, &mut rng);
            let h0 = Tensor::uniform(&[n, h], -1.0, 1.0, &mut rng);
            let w = Tensor::uniform(&[h, h], -1.0, 1.0, &mut rng);
            let c = Tensor::uniform(&[n, h], -1.0, 1.0, &mut rng);
            let (gx, gh, gw, gc) = grad!(rnn)(&xs, &h0, &w, &c);
            check_grad("rnn d/dxs", &gx, xs.shape(), &fd_t(|xs| rnn(xs, &h0, &w, &c).item(), &xs))?;
            check_grad("rnn d/dh0", &gh, h0.shape(), &fd_t(|h0| rnn(&xs, h0, &w, &c).item(), &h0))?;
            check_grad("rnn d/dw", &gw, w.shape(), &fd_t(|w| rnn(&xs, &h0, w, &c).item(), &w))?;
            check_grad("rnn d/dc", &gc, c.shape(), &fd_t(|c| rnn(&xs, &h0, &w, c).item(), &c))?;
        }

        #[test]
        fn rnn_vector_rule(steps in 0usize..=4, h in 1..=MAX_DIM, d in 1..=MAX_DIM, k in 1..=3usize, vseed in any::<u64>()) {
            let mut rng = Rng::seed_from_u64(vseed);
            let xs = Tensor::uniform(&[steps, d], -1.0, 1.0, &mut rng);
            let w = Tensor::uniform(&[h, h], -1.0, 1.0, &mut rng);
            let u = Tensor::uniform(&[h, d], -1.0, 1.0, &mut rng);
            let v = Tensor::uniform(&[h, k], -1.0, 1.0, &mut rng);
            let (gx, gw, gu, gv) = grad!(rnn_vector)(&xs, &w, &u, &v);
            check_grad("rnn_vector d/dxs", &gx, xs.shape(), &fd_t(|xs| rnn_vector(xs, &w, &u, &v).item(), &xs))?;
            check_grad("rnn_vector d/dw", &gw, w.shape(), &fd_t(|w| rnn_vector(&xs, w, &u, &v).item(), &w))?;
            check_grad("rnn_vector d/du", &gu, u.shape(), &fd_t(|u| rnn_vector(&xs, &w, u, &v).item(), &u))?;
            check_grad("rnn_vector d/dv", &gv, v.shape(), &fd_t(|v| rnn_vector(&xs, &w, &u, v).item(), &v))?;
        }

        #[test]
        fn rnn_shared_rule(steps in 0usize..=4, d in 1..=MAX_DIM, vseed in any::<u64>()) {
            let mut rng = Rng::seed_from_u64(vseed);
            let xs = Tensor::uniform(&[steps, d], -1.0, 1.0, &mut rng);
            let w = Tensor::uniform(&[d, d], -1.0, 1.0, &mut rng);
            let (gx, gw) = grad!(rnn_shared)(&xs, &w);
            check_grad("rnn_shared d/dxs", &gx, xs.shape(), &fd_t(|xs| rnn_shared(xs, &w).item(), &xs))?;
            check_grad("rnn_shared d/dw", &gw, w.shape(), &fd_t(|w| rnn_shared(&xs, w).item(), &w))?;
        }

        #[test]
        fn rnn_nested_rule(steps in 0usize..=3, layers in 0usize..=2, d in 1..=MAX_DIM, vseed in any::<u64>()) {
            let mut rng = Rng::seed_from_u64(vseed);
            let xs = Tensor::uniform(&[steps, d], -1.0, 1.0, &mut rng);
            let w = Tensor::uniform(&[d, d], -1.0, 1.0, &mut rng);
            let (gx, gw) = grad!(rnn_nested)(&xs, &w, layers);
            check_grad("rnn_nested d/dxs", &gx, xs.shape(), &fd_t(|xs| rnn_nested(xs, &w, layers).item(), &xs))?;
            check_grad("rnn_nested d/dw", &gw, w.shape(), &fd_t(|w| rnn_nested(&xs, w, layers).item(), &w))?;
        }

        #[test]
        fn twice_rule(n in 1..=MAX_DIM, k in 1..=MAX_DIM, vseed in any::<u64>()) {
            let mut rng = Rng::seed_from_u64(vseed);
            let x = Tensor::uniform(&[n, k], -1.0, 1.0, &mut rng);
            let w = Tensor::uniform(&[k, k], -1.0, 1.0, &mut rng);
            let (gx, gw) = grad!(twice)(&x, &w);
            check_grad("twice d/dx", &gx, x.shape(), &fd_t(|x| twice(x, &w).item(), &x))?;
            check_grad("twice d/dw", &gw, w.shape(), &fd_t(|w| twice(&x, w).item(), &w))?;
        }

        #[test]
        fn reuse_rule(x in any_tensor(2..=2, signed(0.1, 1.5))) {
            let g = grad!(reuse)(&x);
            check_grad("reuse", &g, x.shape(), &fd_t(|x| reuse(x).item(), &x))?;
        }

        #[test]
        fn mixed_rule(x in any_tensor(0..=3, uniform(-1.5, 1.5)), a in -2.0..2.0f64) {
            let (gx, ga) = grad!(mixed)(&x, a);
            check_grad("mixed d/dx", &gx, x.shape(), &fd_t(|x| mixed(x, a), &x))?;
            check("mixed d/da", ga, fd(|a| mixed(&x, a), a), FD)?;
        }

        #[test]
        fn normalise_rule(x in any_tensor(1..=3, uniform(-2.0, 2.0)), seed in any::<u64>()) {
            let z: Vec<f64> = { let m = x.mean().item(); x.to_vec().iter().map(|v| v - m).collect() };
            prop_assume!(z.iter().map(|v| v * v).sum::<f64>().sqrt() > 0.1);
            let c = random_cotangent(x.shape(), seed);
            let (gx, gc) = grad!(normalise)(&x, &c);
            check_grad("normalise d/dx", &gx, x.shape(), &fd_t(|x| normalise(x, &c).item(), &x))?;
            check_grad("normalise d/dc", &gc, c.shape(), &fd_t(|c| normalise(&x, c).item(), &c))?;
        }

        #[test]
        fn loop_accumulate_rule(x in any_tensor(1..=3, uniform(-1.5, 1.5))) {
            let g = grad!(loop_accumulate)(&x);
            check_grad("loop accumulation", &g, x.shape(), &fd_t(|x| loop_accumulate(x).item(), &x))?;
        }

        #[test]
        fn view_chain_rule(x in shape(2..=2).prop_flat_map(distinct_tensor)) {
            let g = grad!(view_chain)(&x);
            check_grad("view chain", &g, x.shape(), &fd_t(|x| view_chain(x).item(), &x))?;
        }
    }
}

// ------------------------------------------------------------------ analytic values

mod analytic {
    use super::*;

    #[differentiable]
    fn sum_of_squares(x: &Tensor<f64>) -> Tensor<f64> {
        (x * x).sum()
    }

    #[differentiable]
    fn mean(x: &Tensor<f64>) -> Tensor<f64> {
        x.mean()
    }

    #[differentiable]
    fn matmul_sum(a: &Tensor<f64>, b: &Tensor<f64>) -> Tensor<f64> {
        a.matmul(b).sum()
    }

    #[differentiable]
    fn max_rows(x: &Tensor<f64>) -> Tensor<f64> {
        x.max_dim(1, false).sum()
    }

    #[differentiable]
    fn max_cols(x: &Tensor<f64>) -> Tensor<f64> {
        x.max_dim(0, true).sum()
    }

    #[differentiable]
    fn gather(x: &Tensor<f64>) -> Tensor<f64> {
        x.index_rows(&[2, 0, 2]).sum()
    }

    #[differentiable]
    fn norm(x: &Tensor<f64>) -> Tensor<f64> {
        x.norm()
    }

    #[differentiable]
    fn first_only(x: &Tensor<f64>, _y: &Tensor<f64>) -> Tensor<f64> {
        x.sum() * 2.0
    }

    #[differentiable]
    fn broadcast_mul(a: &Tensor<f64>, b: &Tensor<f64>) -> Tensor<f64> {
        (a * b).sum()
    }

    #[track_caller]
    fn assert_grad(what: &str, got: &T, shape: &[usize], want: &[f64]) {
        assert_eq!(got.shape(), shape, "{what}: shape");
        assert_vec_close(what, &got.to_vec(), want, EXACT);
    }

    #[test]
    fn sum_of_squares_is_2x() {
        let x = tensor(vec![1.0, -2.0, 0.5, 3.0, 0.0, -1.25], &[2, 3]);
        let (v, g) = value_and_grad!(sum_of_squares)(&x);
        assert_close("value", v.item(), 1.0 + 4.0 + 0.25 + 9.0 + 1.5625, EXACT);
        assert_grad("d/dx sum(x²)", &g, &[2, 3], &[2.0, -4.0, 1.0, 6.0, 0.0, -2.5]);
    }

    #[test]
    fn mean_is_one_over_n() {
        let x = tensor(vec![1.0, 2.0, 3.0, 4.0], &[4]);
        assert_grad("d/dx mean(x)", &grad!(mean)(&x), &[4], &[0.25; 4]);
    }

    #[test]
    fn matmul_of_sums() {
        // d/dA Σ AB = 1 Bᵀ: row sums of B; d/dB Σ AB = Aᵀ 1: column sums of A.
        let a = tensor(vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0], &[2, 3]);
        let b = tensor(vec![1.0, -1.0, 2.0, 0.5, 0.0, 3.0], &[3, 2]);
        let (ga, gb) = grad!(matmul_sum)(&a, &b);
        assert_grad("d/dA", &ga, &[2, 3], &[0.0, 2.5, 3.0, 0.0, 2.5, 3.0]);
        assert_grad("d/dB", &gb, &[3, 2], &[5.0, 5.0, 7.0, 7.0, 9.0, 9.0]);
    }

    #[test]
    fn max_dim_picks_the_maximum() {
        let x = tensor(vec![1.0, 5.0, 2.0, 7.0, 0.0, 3.0], &[2, 3]);
        assert_grad("d/dx Σ max over rows", &grad!(max_rows)(&x), &[2, 3], &[0.0, 1.0, 0.0, 1.0, 0.0, 0.0]);
        assert_grad("d/dx Σ max over columns", &grad!(max_cols)(&x), &[2, 3], &[0.0, 1.0, 0.0, 1.0, 0.0, 1.0]);
    }

    #[test]
    fn index_rows_adds_repeated_rows() {
        let x = tensor(vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0], &[3, 2]);
        assert_grad("d/dx Σ x[[2, 0, 2]]", &grad!(gather)(&x), &[3, 2], &[1.0, 1.0, 0.0, 0.0, 2.0, 2.0]);
    }

    #[test]
    fn norm_is_x_over_norm_and_zero_at_zero() {
        let x = tensor(vec![3.0, 4.0], &[2]);
        assert_grad("d/dx ‖x‖", &grad!(norm)(&x), &[2], &[0.6, 0.8]);
        assert_grad("d/dx ‖x‖ at 0", &grad!(norm)(&T::zeros(&[2, 2])), &[2, 2], &[0.0; 4]);
    }

    #[test]
    fn unused_argument_gets_zeros_of_its_shape() {
        let x = tensor(vec![1.0, 2.0], &[2]);
        let y = T::ones(&[3, 1]);
        let (gx, gy) = grad!(first_only)(&x, &y);
        assert_grad("d/dx", &gx, &[2], &[2.0, 2.0]);
        assert_grad("d/dy", &gy, &[3, 1], &[0.0; 3]);
    }

    #[test]
    fn broadcast_gradient_is_summed_back() {
        // a: [2, 1], b: [3]; Σ a ⊙ b over [2, 3]: d/da = Σ b, d/db = Σ a.
        let a = tensor(vec![1.0, 2.0], &[2, 1]);
        let b = tensor(vec![1.0, 10.0, 100.0], &[3]);
        let (ga, gb) = grad!(broadcast_mul)(&a, &b);
        assert_grad("d/da", &ga, &[2, 1], &[111.0, 111.0]);
        assert_grad("d/db", &gb, &[3], &[3.0, 3.0, 3.0]);
    }

    #[test]
    fn softmax_vjp_formula() {
        // x̄ = s ⊙ (c − ⟨c, s⟩).
        let x = tensor(vec![0.5, -1.0, 2.0], &[3]);
        let c = tensor(vec![1.0, 2.0, -1.0], &[3]);
        let g = vjp!(super::softmax::softmax)(&x, 0, c.clone());
        let s = x.softmax(0).to_vec();
        let cs: f64 = s.iter().zip(c.to_vec()).map(|(s, c)| s * c).sum();
        let want: Vec<f64> = s.iter().zip(c.to_vec()).map(|(s, c)| s * (c - cs)).collect();
        assert_grad("softmax vjp", &g, &[3], &want);
    }
}
