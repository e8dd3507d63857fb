//! The tensor runtime against naive reference implementations.
//!
//! Every property draws random shapes and values (fixed proptest seed, values from the
//! crate's own seeded `Rng`), builds the operands in several layouts (contiguous,
//! transposed views, narrowed views with an offset), and compares the result with a
//! plain index-by-index computation in `f64`. Each comparison runs at every
//! instruction-set level this CPU has (`kernels::Isa`), three times each: with the
//! default kernel parameters, forced serial, and forced parallel in tiny pieces (so the
//! parallel code paths run on small inputs too). Shape errors are checked by their
//! panic messages. `tests/kernel_levels.rs` checks that results are bitwise the same
//! for every thread count and threshold, level by level, and names the levels this CPU
//! cannot run as skipped.

mod common;

use adjoint_runtime::kernels::Isa;
use adjoint_runtime::nalgebra::{DMatrix, DVector};
use adjoint_runtime::tensor::{in_thread_pool, with_kernel_params, KernelParams, Par, Tensor};
use adjoint_runtime::{cross_entropy, mse_loss, Adjoint, Rng, Seed};
use common::{check, check_vec, config_with, Tol};
use proptest::prelude::*;
use proptest::test_runner::{TestCaseError, TestRunner};
use std::io::Write;

type R = Result<(), TestCaseError>;

/// Sums and products in a different order than the reference.
const SUM: Tol = Tol { rel: 1e-11, abs: 1e-11 };
/// Transcendental functions and divisions.
const FN: Tol = Tol { rel: 1e-12, abs: 1e-13 };
/// f32 results against the f64 reference.
const F32: Tol = Tol { rel: 2e-5, abs: 2e-5 };

const ALL_PARAMS: [KernelParams; 3] = [KernelParams::DEFAULT, KernelParams::SERIAL, KernelParams::ALWAYS_PARALLEL];

/// The instruction-set levels this CPU runs.
fn levels() -> impl Iterator<Item = Isa> {
    Isa::ALL.into_iter().filter(|level| level.is_available())
}

/// Run `f` under each of [`ALL_PARAMS`] at each level this CPU runs.
fn each_params(f: impl Fn() -> R) -> R {
    for isa in levels() {
        for p in ALL_PARAMS {
            let p = KernelParams { isa, ..p };
            with_kernel_params(p, &f).map_err(|e| TestCaseError::fail(format!("with {p:?}: {e}")))?;
        }
    }
    Ok(())
}

// ------------------------------------------------------------------ reference model

fn numel(shape: &[usize]) -> usize {
    shape.iter().product()
}

/// The multi-index of row-major position `i`.
fn unravel(mut i: usize, shape: &[usize]) -> Vec<usize> {
    let mut idx = vec![0; shape.len()];
    for d in (0..shape.len()).rev() {
        idx[d] = i % shape[d];
        i /= shape[d];
    }
    idx
}

/// The row-major position of `idx`.
fn ravel(idx: &[usize], shape: &[usize]) -> usize {
    idx.iter().zip(shape).fold(0, |acc, (&i, &n)| acc * n + i)
}

/// The NumPy broadcast of two shapes.
fn ref_broadcast(a: &[usize], b: &[usize]) -> Option<Vec<usize>> {
    let nd = a.len().max(b.len());
    (0..nd)
        .map(|i| {
            let da = if i + a.len() >= nd { a[i + a.len() - nd] } else { 1 };
            let db = if i + b.len() >= nd { b[i + b.len() - nd] } else { 1 };
            match (da, db) {
                (x, y) if x == y => Some(x),
                (1, y) => Some(y),
                (x, 1) => Some(x),
                _ => None,
            }
        })
        .collect()
}

/// The element of `data` (row-major, `shape`) read at output index `out_idx` of a
/// broadcast.
fn ref_at(data: &[f64], shape: &[usize], out_idx: &[usize]) -> f64 {
    let lead = out_idx.len() - shape.len();
    let idx: Vec<usize> = shape.iter().enumerate().map(|(d, &n)| if n == 1 { 0 } else { out_idx[d + lead] }).collect();
    data[ravel(&idx, shape)]
}

fn ref_zip(a: &[f64], sa: &[usize], b: &[f64], sb: &[usize], f: impl Fn(f64, f64) -> f64) -> (Vec<f64>, Vec<usize>) {
    let shape = ref_broadcast(sa, sb).expect("broadcastable");
    let out = (0..numel(&shape))
        .map(|i| {
            let idx = unravel(i, &shape);
            f(ref_at(a, sa, &idx), ref_at(b, sb, &idx))
        })
        .collect();
    (out, shape)
}

/// Reduce `axis` with `f` from `init`.
fn ref_reduce(data: &[f64], shape: &[usize], axis: usize, init: f64, f: impl Fn(f64, f64) -> f64) -> Vec<f64> {
    let mut out_shape = shape.to_vec();
    out_shape.remove(axis);
    (0..numel(&out_shape))
        .map(|i| {
            let mut idx = unravel(i, &out_shape);
            idx.insert(axis, 0);
            (0..shape[axis]).fold(init, |acc, k| {
                idx[axis] = k;
                f(acc, data[ravel(&idx, shape)])
            })
        })
        .collect()
}

fn ref_matmul(a: &[f64], b: &[f64], m: usize, k: usize, n: usize) -> Vec<f64> {
    let mut c = vec![0.0; m * n];
    for i in 0..m {
        for j in 0..n {
            c[i * n + j] = (0..k).map(|p| a[i * k + p] * b[p * n + j]).sum();
        }
    }
    c
}

// ------------------------------------------------------------------ building operands

fn values(seed: u64, n: usize) -> Vec<f64> {
    let mut rng = Rng::seed_from_u64(seed);
    (0..n).map(|_| rng.normal::<f64>()).collect()
}

/// A tensor holding `data` (row-major for `shape`) in one of several layouts:
/// 0 contiguous, 1 a transposed view (last two axes), 2 a narrowed view with an offset,
/// 3 a transposed view of a narrowed one.
fn build<E: adjoint_runtime::Float>(data: &[f64], shape: &[usize], layout: u8) -> Tensor<E> {
    let conv: Vec<E> = data.iter().map(|&x| E::from_f64(x)).collect();
    let nd = shape.len();
    match layout {
        1 if nd >= 2 => {
            let mut sw = shape.to_vec();
            sw.swap(nd - 2, nd - 1);
            let mut buf = vec![E::ZERO; conv.len()];
            for (i, &v) in conv.iter().enumerate() {
                let mut idx = unravel(i, shape);
                idx.swap(nd - 2, nd - 1);
                buf[ravel(&idx, &sw)] = v;
            }
            let t = Tensor::from_vec(buf, &sw).transpose(nd - 2, nd - 1);
            assert_eq!(t.shape(), shape);
            t
        }
        2 if nd >= 1 => {
            // Pad axis 0 with a row before and after, then narrow back.
            let mut big_shape = shape.to_vec();
            big_shape[0] += 2;
            let row: usize = shape[1..].iter().product();
            let mut buf = vec![E::from_f64(f64::NAN); numel(&big_shape)];
            buf[row..row + conv.len()].copy_from_slice(&conv);
            Tensor::from_vec(buf, &big_shape).narrow(0, 1, shape[0])
        }
        3 if nd >= 2 => {
            let mut sw = shape.to_vec();
            sw.swap(nd - 2, nd - 1);
            let mut swapped = vec![0.0; data.len()];
            for (i, &v) in data.iter().enumerate() {
                let mut idx = unravel(i, shape);
                idx.swap(nd - 2, nd - 1);
                swapped[ravel(&idx, &sw)] = v;
            }
            build::<E>(&swapped, &sw, 2).transpose(nd - 2, nd - 1)
        }
        _ => Tensor::from_vec(conv, shape),
    }
}

fn to_f64<E: adjoint_runtime::Float>(t: &Tensor<E>) -> Vec<f64> {
    t.to_vec().iter().map(|x| x.to_f64()).collect()
}

/// A shape of 0 to 4 axes of length 1 to 5.
fn shape_strategy() -> impl Strategy<Value = Vec<usize>> {
    prop::collection::vec(1usize..6, 0..5)
}

/// A shape and another that broadcasts with it (some axes set to 1, some leading axes
/// dropped), in either order.
fn broadcast_pair() -> impl Strategy<Value = (Vec<usize>, Vec<usize>)> {
    (shape_strategy(), prop::collection::vec(any::<bool>(), 5), 0usize..5, any::<bool>()).prop_map(
        |(a, ones, drop, swap)| {
            let mut b: Vec<usize> = a.iter().zip(&ones).map(|(&n, &one)| if one { 1 } else { n }).collect();
            let drop = drop.min(b.len());
            b.drain(..drop);
            if swap {
                (b, a)
            } else {
                (a, b)
            }
        },
    )
}

// ------------------------------------------------------------------ elementwise

type BinOp = (&'static str, fn(&Tensor<f64>, &Tensor<f64>) -> Tensor<f64>, fn(f64, f64) -> f64, Tol);

fn binary_ops() -> Vec<BinOp> {
    vec![
        ("add", |a, b| a + b, |x, y| x + y, FN),
        ("sub", |a, b| a - b, |x, y| x - y, FN),
        ("mul", |a, b| a * b, |x, y| x * y, FN),
        ("div", |a, b| a / b, |x, y| x / y, FN),
        ("owned add", |a, b| a.clone() + b.clone(), |x, y| x + y, FN),
        ("owned-left sub", |a, b| a.clone() - b, |x, y| x - y, FN),
        ("owned-right div", |a, b| a / b.clone(), |x, y| x / y, FN),
        ("fresh owned mul", |a, b| (a * 1.0) * (b * 1.0), |x, y| x * y, FN),
        ("fresh owned-right sub", |a, b| a - (b * 1.0), |x, y| x - y, FN),
        ("zip_map", |a, b| a.zip_map(b, |x, y| x.atan2(y)), f64::atan2, FN),
        ("gt", |a, b| a.gt(b), |x, y| (x > y) as u8 as f64, FN),
        ("lt", |a, b| a.lt(b), |x, y| (x < y) as u8 as f64, FN),
        ("ge", |a, b| a.ge(b), |x, y| (x >= y) as u8 as f64, FN),
        ("le", |a, b| a.le(b), |x, y| (x <= y) as u8 as f64, FN),
    ]
}

proptest! {
    #![proptest_config(config_with(48))]

    #[test]
    fn binary_operators_broadcast((sa, sb) in broadcast_pair(), seed in any::<u64>(), la in 0u8..4, lb in 0u8..4) {
        let (da, db) = (values(seed, numel(&sa)), values(seed ^ 1, numel(&sb)));
        let (a, b) = (build::<f64>(&da, &sa, la), build::<f64>(&db, &sb, lb));
        each_params(|| {
            for (name, op, f, tol) in binary_ops() {
                let (want, shape) = ref_zip(&da, &sa, &db, &sb, f);
                let got = op(&a, &b);
                prop_assert_eq!(got.shape(), &shape[..], "{}", name);
                check_vec(name, &to_f64(&got), &want, tol)?;
                // The operands are untouched (the owning forms share storage with them).
                check_vec("lhs kept", &to_f64(&a), &da, Tol { rel: 0.0, abs: 0.0 })?;
                check_vec("rhs kept", &to_f64(&b), &db, Tol { rel: 0.0, abs: 0.0 })?;
            }
            Ok(())
        })?;
    }

    #[test]
    fn binary_operators_f32((sa, sb) in broadcast_pair(), seed in any::<u64>(), la in 0u8..4) {
        let (da, db) = (values(seed, numel(&sa)), values(seed ^ 1, numel(&sb)));
        let (a, b) = (build::<f32>(&da, &sa, la), build::<f32>(&db, &sb, 0));
        let r32 = |v: &[f64]| -> Vec<f64> { v.iter().map(|&x| x as f32 as f64).collect() };
        each_params(|| {
            let (want, _) = ref_zip(&r32(&da), &sa, &r32(&db), &sb, |x, y| x * y + x);
            check_vec("a * b + a", &to_f64(&(&(&a * &b) + &a)), &want, F32)?;
            let (want, _) = ref_zip(&r32(&da), &sa, &r32(&db), &sb, |x, y| 2.0 * x - y / 4.0);
            check_vec("2a - b/4", &to_f64(&(2.0_f32 * &a - b.clone() / 4.0)), &want, F32)?;
            Ok(())
        })?;
    }

    #[test]
    fn compound_assignment((sa, sb) in broadcast_pair(), seed in any::<u64>(), la in 0u8..4, lb in 0u8..4, shared in any::<bool>()) {
        // `+=` keeps the left shape, so only right sides that broadcast into it.
        prop_assume!(ref_broadcast(&sa, &sb).as_deref() == Some(&sa[..]));
        let (da, db) = (values(seed, numel(&sa)), values(seed ^ 1, numel(&sb)));
        let b = build::<f64>(&db, &sb, lb);
        each_params(|| {
            type Assign = (&'static str, fn(&mut Tensor<f64>, &Tensor<f64>), fn(f64, f64) -> f64);
            let ops: [Assign; 5] = [
                ("+= &", |x, y| *x += y, |p, q| p + q),
                ("+= owned", |x, y| *x += y.clone(), |p, q| p + q),
                ("-=", |x, y| *x -= y, |p, q| p - q),
                ("*=", |x, y| *x *= y.clone(), |p, q| p * q),
                ("/=", |x, y| *x /= y, |p, q| p / q),
            ];
            for (name, op, f) in ops {
                let mut a = build::<f64>(&da, &sa, la);
                // With a clone alive the storage is shared and must not be written.
                let keep = if shared { Some(a.clone()) } else { None };
                op(&mut a, &b);
                let (want, _) = ref_zip(&da, &sa, &db, &sb, f);
                prop_assert_eq!(a.shape(), &sa[..]);
                check_vec(name, &to_f64(&a), &want, FN)?;
                if let Some(keep) = keep {
                    check_vec("clone kept", &to_f64(&keep), &da, Tol { rel: 0.0, abs: 0.0 })?;
                }
            }
            let mut a = build::<f64>(&da, &sa, la);
            a += 1.5;
            a *= 2.0;
            a -= 0.5;
            a /= 4.0;
            let want: Vec<f64> = da.iter().map(|x| ((x + 1.5) * 2.0 - 0.5) / 4.0).collect();
            check_vec("scalar assign", &to_f64(&a), &want, FN)
        })?;
    }

    #[test]
    fn scalar_operands(shape in shape_strategy(), seed in any::<u64>(), layout in 0u8..4, s in -3.0f64..3.0) {
        let d = values(seed, numel(&shape));
        let t = build::<f64>(&d, &shape, layout);
        each_params(|| {
            type Case = (&'static str, Tensor<f64>, fn(f64, f64) -> f64);
            let cases: Vec<Case> = vec![
                ("t + s", &t + s, |x, s| x + s),
                ("t - s", t.clone() - s, |x, s| x - s),
                ("t * s", &t * s, |x, s| x * s),
                ("t / s", t.clone() / s, |x, s| x / s),
                ("s + t", s + &t, |x, s| s + x),
                ("s - t", s - t.clone(), |x, s| s - x),
                ("s * t", s * &t, |x, s| s * x),
                ("s / t", s / t.clone(), |x, s| s / x),
                ("-t", -&t, |x, _| -x),
                ("-owned", -(t.clone()), |x, _| -x),
                ("t + 0-d", &t + &Tensor::scalar(s), |x, s| x + s),
                ("0-d * t", &Tensor::scalar(s) * &t, |x, s| s * x),
            ];
            for (name, got, f) in cases {
                let want: Vec<f64> = d.iter().map(|&x| f(x, s)).collect();
                prop_assert_eq!(got.shape(), &shape[..]);
                check_vec(name, &to_f64(&got), &want, FN)?;
            }
            check_vec("kept", &to_f64(&t), &d, Tol { rel: 0.0, abs: 0.0 })
        })?;
    }

    #[test]
    fn unary_functions(shape in shape_strategy(), seed in any::<u64>(), layout in 0u8..4) {
        let d: Vec<f64> = values(seed, numel(&shape)).iter().map(|x| x * 3.0).collect();
        let pos: Vec<f64> = d.iter().map(|x| x.abs() + 0.1).collect();
        let t = build::<f64>(&d, &shape, layout);
        let p = build::<f64>(&pos, &shape, layout);
        type Un = (&'static str, Tensor<f64>, bool, fn(f64) -> f64);
        each_params(|| {
            let sig = |x: f64| 1.0 / (1.0 + (-x).exp());
            let cases: Vec<Un> = vec![
                ("exp", t.exp(), false, f64::exp),
                ("sin", t.sin(), false, f64::sin),
                ("cos", t.cos(), false, f64::cos),
                ("tanh", t.tanh(), false, f64::tanh),
                ("abs", t.abs(), false, f64::abs),
                ("relu", t.relu(), false, |x| x.max(0.0)),
                ("signum", t.signum(), false, f64::signum),
                ("powi 3", t.powi(3), false, |x| x.powi(3)),
                ("powi 2", t.powi(2), false, |x| x * x),
                ("powi -1", t.powi(-1), false, |x| 1.0 / x),
                ("ln", p.ln(), true, f64::ln),
                ("sqrt", p.sqrt(), true, f64::sqrt),
                ("powf", p.powf(1.7), true, |x| x.powf(1.7)),
                ("map", t.map(|x| x * x + 1.0), false, |x| x * x + 1.0),
            ];
            for (name, got, on_pos, f) in cases {
                let src = if on_pos { &pos } else { &d };
                let want: Vec<f64> = src.iter().map(|&x| f(x)).collect();
                prop_assert_eq!(got.shape(), &shape[..]);
                check_vec(name, &to_f64(&got), &want, FN)?;
            }
            let want: Vec<f64> = d.iter().map(|&x| sig(x)).collect();
            check_vec("sigmoid", &to_f64(&t.sigmoid()), &want, Tol { rel: 1e-12, abs: 1e-15 })
        })?;
    }

    // -------------------------------------------------------------- reductions

    #[test]
    fn full_reductions(shape in shape_strategy(), seed in any::<u64>(), layout in 0u8..4) {
        let d = values(seed, numel(&shape));
        let t = build::<f64>(&d, &shape, layout);
        each_params(|| {
            let s: f64 = d.iter().sum();
            let sum = t.sum();
            prop_assert_eq!(sum.shape(), &[] as &[usize]);
            check("sum", sum.item(), s, SUM)?;
            check("mean", t.mean().item(), s / d.len() as f64, SUM)?;
            check("norm", t.norm().item(), d.iter().map(|x| x * x).sum::<f64>().sqrt(), SUM)?;
            let t32 = build::<f32>(&d, &shape, layout);
            check("sum f32", t32.sum().item() as f64, d.iter().map(|&x| x as f32 as f64).sum(), Tol { rel: 1e-5, abs: 1e-5 })
        })?;
    }

    #[test]
    fn axis_reductions(shape in prop::collection::vec(1usize..6, 1..5), seed in any::<u64>(), layout in 0u8..4, axis in 0usize..4, keepdim in any::<bool>()) {
        let axis = axis % shape.len();
        let d = values(seed, numel(&shape));
        let t = build::<f64>(&d, &shape, layout);
        let mut kept = shape.clone();
        if keepdim { kept[axis] = 1 } else { kept.remove(axis); }
        each_params(|| {
            let sums = ref_reduce(&d, &shape, axis, 0.0, |a, x| a + x);
            let got = t.sum_dim(axis, keepdim);
            prop_assert_eq!(got.shape(), &kept[..]);
            check_vec("sum_dim", &to_f64(&got), &sums, SUM)?;
            let means: Vec<f64> = sums.iter().map(|s| s / shape[axis] as f64).collect();
            check_vec("mean_dim", &to_f64(&t.mean_dim(axis, keepdim)), &means, SUM)?;
            let maxes = ref_reduce(&d, &shape, axis, f64::NEG_INFINITY, f64::max);
            let got = t.max_dim(axis, keepdim);
            prop_assert_eq!(got.shape(), &kept[..]);
            check_vec("max_dim", &to_f64(&got), &maxes, Tol { rel: 0.0, abs: 0.0 })?;
            // argmax: flat row-major indices into `t`, holding the maxima.
            let arg = t.argmax_dim(axis);
            prop_assert_eq!(arg.len(), maxes.len());
            for (i, &flat) in arg.iter().enumerate() {
                prop_assert_eq!(d[flat], maxes[i]);
                let mut out_shape = shape.clone();
                out_shape.remove(axis);
                let mut idx = unravel(i, &out_shape);
                let at = unravel(flat, &shape);
                idx.insert(axis, at[axis]);
                prop_assert_eq!(&idx, &at, "argmax {} lies on the wrong line", flat);
            }
            Ok(())
        })?;
    }

    #[test]
    fn sum_to_shape_inverts_broadcast((sa, sb) in broadcast_pair(), seed in any::<u64>(), layout in 0u8..4) {
        // `small` broadcasts to `big`.
        let big = ref_broadcast(&sa, &sb).unwrap();
        let small = if sa != big { sa } else { sb };
        let d = values(seed, numel(&big));
        let t = build::<f64>(&d, &big, layout);
        each_params(|| {
            let got = t.sum_to_shape(&small);
            prop_assert_eq!(got.shape(), &small[..]);
            // Reference: add every element of `big` into the cell it broadcasts from.
            let mut want = vec![0.0; numel(&small)];
            for (i, &x) in d.iter().enumerate() {
                let idx = unravel(i, &big);
                let lead = big.len() - small.len();
                let sidx: Vec<usize> = small.iter().enumerate().map(|(k, &n)| if n == 1 { 0 } else { idx[k + lead] }).collect();
                want[ravel(&sidx, &small)] += x;
            }
            check_vec("sum_to_shape", &to_f64(&got), &want, SUM)?;
            // broadcast_to is its adjoint partner: a view repeating the small tensor.
            let ds = values(seed ^ 7, numel(&small));
            let s = build::<f64>(&ds, &small, 0);
            let view = s.broadcast_to(&big);
            prop_assert_eq!(view.shape(), &big[..]);
            let want: Vec<f64> = (0..numel(&big)).map(|i| ref_at(&ds, &small, &unravel(i, &big))).collect();
            check_vec("broadcast_to", &to_f64(&view), &want, Tol { rel: 0.0, abs: 0.0 })?;
            let times = (numel(&big) / numel(&small)) as f64;
            check_vec("sum_to_shape of a broadcast view", &to_f64(&view.sum_to_shape(&small)), &to_f64(&(&s * times)), SUM)
        })?;
    }

    // -------------------------------------------------------------- matmul

    #[test]
    fn matmul_2d(m in 1usize..9, k in 1usize..9, n in 1usize..9, seed in any::<u64>(), la in 0u8..4, lb in 0u8..4) {
        let (da, db) = (values(seed, m * k), values(seed ^ 3, k * n));
        let (a, b) = (build::<f64>(&da, &[m, k], la), build::<f64>(&db, &[k, n], lb));
        each_params(|| {
            let want = ref_matmul(&da, &db, m, k, n);
            let got = a.matmul(&b);
            prop_assert_eq!(got.shape(), &[m, n]);
            check_vec("matmul", &to_f64(&got), &want, SUM)?;
            // Transposed views, as the gradient of a product uses them: (Bᵀ Aᵀ)ᵀ = A B.
            let via_t = b.t().matmul(&a.t()).t();
            check_vec("transposed views", &to_f64(&via_t), &want, SUM)?;
            // Matrix-vector and vector-matrix.
            let col = b.select(1, 0);
            let want_mv: Vec<f64> = (0..m).map(|i| want[i * n]).collect();
            check_vec("[m,k]x[k]", &to_f64(&a.matmul(&col)), &want_mv, SUM)?;
            let row = a.select(0, 0);
            check_vec("[k]x[k,n]", &to_f64(&row.matmul(&b)), &want[..n], SUM)?;
            let dot = row.matmul(&col);
            prop_assert_eq!(dot.shape(), &[] as &[usize]);
            check("[k]x[k]", dot.item(), want[0], SUM)?;
            let a32 = build::<f32>(&da, &[m, k], la);
            let b32 = build::<f32>(&db, &[k, n], lb);
            check_vec("matmul f32", &to_f64(&a32.matmul(&b32)), &want, Tol { rel: 1e-4, abs: 1e-4 })
        })?;
    }

    /// Products with a unit dimension (matrix·vector, vector·matrix, outer product)
    /// long enough to use the vectorised loops' full blocks and their tails, in every
    /// layout of the operands.
    #[test]
    fn matmul_unit_dims(which in 0u8..3, p in 1usize..70, q in 1usize..70, seed in any::<u64>(), la in 0u8..4, lb in 0u8..4) {
        let (m, k, n) = match which { 0 => (p, q, 1), 1 => (1, p, q), _ => (p, 1, q) };
        let (da, db) = (values(seed, m * k), values(seed ^ 3, k * n));
        let (a, b) = (build::<f64>(&da, &[m, k], la), build::<f64>(&db, &[k, n], lb));
        each_params(|| {
            let want = ref_matmul(&da, &db, m, k, n);
            check_vec("matmul", &to_f64(&a.matmul(&b)), &want, SUM)?;
            check_vec("transposed views", &to_f64(&b.t().matmul(&a.t()).t()), &want, SUM)?;
            let (a32, b32) = (build::<f32>(&da, &[m, k], la), build::<f32>(&db, &[k, n], lb));
            check_vec("matmul f32", &to_f64(&a32.matmul(&b32)), &want, Tol { rel: 1e-4, abs: 1e-4 })
        })?;
    }

    /// Products big enough to be split over threads (under the parallel parameters):
    /// by rows, or by columns when the right operand is column-major (`x·Wᵀ`), with
    /// odd counts, in every layout.
    #[test]
    fn matmul_split_by_rows(long in 60usize..200, k in 1usize..40, short in 17usize..40, wide in any::<bool>(), seed in any::<u64>(), la in 0u8..4, lb in 0u8..4) {
        let (m, n) = if wide { (short, long) } else { (long, short) };
        let (da, db) = (values(seed, m * k), values(seed ^ 3, k * n));
        let (a, b) = (build::<f64>(&da, &[m, k], la), build::<f64>(&db, &[k, n], lb));
        each_params(|| {
            let want = ref_matmul(&da, &db, m, k, n);
            check_vec("matmul", &to_f64(&a.matmul(&b)), &want, SUM)
        })?;
    }

    /// Products with a narrow side (at most 16 rows or columns of result), which go to
    /// the register tiles of `kernels::narrow` when the layout allows: every layout,
    /// narrow widths on both sides of the 8-row block, `k` on both sides of a vector's
    /// width. At every level, results must not depend on the thread count (bitwise).
    #[test]
    fn matmul_narrow(narrow in 1usize..17, long in 1usize..150, k in 1usize..70, rows_narrow in any::<bool>(), seed in any::<u64>(), la in 0u8..4, lb in 0u8..4) {
        let (m, n) = if rows_narrow { (narrow, long) } else { (long, narrow) };
        let (da, db) = (values(seed, m * k), values(seed ^ 3, k * n));
        let want = ref_matmul(&da, &db, m, k, n);
        let (a, b) = (build::<f64>(&da, &[m, k], la), build::<f64>(&db, &[k, n], lb));
        let (a32, b32) = (build::<f32>(&da, &[m, k], la), build::<f32>(&db, &[k, n], lb));
        for isa in levels() {
            let serial = with_kernel_params(KernelParams { isa, ..KernelParams::SERIAL }, || (a.matmul(&b).to_vec(), a32.matmul(&b32).to_vec()));
            check_vec("matmul", &serial.0, &want, SUM)?;
            check_vec("matmul f32", &to_f64(&Tensor::from_vec(serial.1.clone(), &[m, n])), &want, Tol { rel: 1e-4, abs: 1e-4 })?;
            let parallel = with_kernel_params(KernelParams { isa, ..KernelParams::ALWAYS_PARALLEL }, || (a.matmul(&b).to_vec(), a32.matmul(&b32).to_vec()));
            prop_assert!(parallel == serial, "at {}: the result depends on the thread count", isa);
        }
    }

    #[test]
    fn matmul_batched(batch in 1usize..5, m in 1usize..6, k in 1usize..6, n in 1usize..6, seed in any::<u64>(), la in 0u8..4, lb in 0u8..4) {
        let (da, db) = (values(seed, batch * m * k), values(seed ^ 5, batch * k * n));
        let (a, b) = (build::<f64>(&da, &[batch, m, k], la), build::<f64>(&db, &[batch, k, n], lb));
        each_params(|| {
            let got = a.matmul(&b);
            prop_assert_eq!(got.shape(), &[batch, m, n]);
            let mut want = vec![];
            for i in 0..batch {
                want.extend(ref_matmul(&da[i * m * k..(i + 1) * m * k], &db[i * k * n..(i + 1) * k * n], m, k, n));
            }
            check_vec("[b,m,k]x[b,k,n]", &to_f64(&got), &want, SUM)?;
            // A shared right side, broadcast over the batch.
            let w = build::<f64>(&db[..k * n], &[k, n], lb);
            let got = a.matmul(&w);
            prop_assert_eq!(got.shape(), &[batch, m, n]);
            let mut want = vec![];
            for i in 0..batch {
                want.extend(ref_matmul(&da[i * m * k..(i + 1) * m * k], &db[..k * n], m, k, n));
            }
            check_vec("[b,m,k]x[k,n]", &to_f64(&got), &want, SUM)?;
            // A shared left side.
            let l = build::<f64>(&da[..m * k], &[m, k], la);
            let mut want = vec![];
            for i in 0..batch {
                want.extend(ref_matmul(&da[..m * k], &db[i * k * n..(i + 1) * k * n], m, k, n));
            }
            check_vec("[m,k]x[b,k,n]", &to_f64(&l.matmul(&b)), &want, SUM)
        })?;
    }

    // -------------------------------------------------------------- nn

    #[test]
    fn softmax_and_log_softmax(shape in prop::collection::vec(1usize..6, 1..4), seed in any::<u64>(), layout in 0u8..4, axis in 0usize..3, scale in prop_oneof![Just(1.0), Just(1000.0)]) {
        let axis = axis % shape.len();
        let d: Vec<f64> = values(seed, numel(&shape)).iter().map(|x| x * scale).collect();
        let t = build::<f64>(&d, &shape, layout);
        each_params(|| {
            let maxes = ref_reduce(&d, &shape, axis, f64::NEG_INFINITY, f64::max);
            let mut out_shape = shape.clone();
            out_shape.remove(axis);
            let mut lse = vec![0.0; maxes.len()];
            for (i, &x) in d.iter().enumerate() {
                let mut idx = unravel(i, &shape);
                idx.remove(axis);
                let j = ravel(&idx, &out_shape);
                lse[j] += (x - maxes[j]).exp();
            }
            let lse: Vec<f64> = lse.iter().zip(&maxes).map(|(s, m)| m + s.ln()).collect();
            let line = |i: usize| {
                let mut idx = unravel(i, &shape);
                idx.remove(axis);
                ravel(&idx, &out_shape)
            };
            let want_log: Vec<f64> = d.iter().enumerate().map(|(i, x)| x - lse[line(i)]).collect();
            let want: Vec<f64> = want_log.iter().map(|x| x.exp()).collect();
            let tol = Tol { rel: 1e-12, abs: 1e-12 * scale };
            check_vec("softmax", &to_f64(&t.softmax(axis)), &want, tol)?;
            check_vec("log_softmax", &to_f64(&t.log_softmax(axis)), &want_log, tol)?;
            let sums = t.softmax(axis).sum_dim(axis, false);
            check_vec("softmax sums to 1", &to_f64(&sums), &vec![1.0; maxes.len()], SUM)
        })?;
    }

    #[test]
    fn losses(n in 1usize..7, c in 1usize..7, seed in any::<u64>(), layout in 0u8..4, targets in prop::collection::vec(0usize..64, 6)) {
        let d = values(seed, n * c);
        let logits = build::<f64>(&d, &[n, c], layout);
        let targets: Vec<usize> = targets[..n].iter().map(|t| t % c).collect();
        each_params(|| {
            let mut want = 0.0;
            for i in 0..n {
                let row = &d[i * c..(i + 1) * c];
                let m = row.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
                want += m + row.iter().map(|x| (x - m).exp()).sum::<f64>().ln() - row[targets[i]];
            }
            let ce = cross_entropy(&logits, &targets);
            prop_assert_eq!(ce.shape(), &[] as &[usize]);
            check("cross_entropy", ce.item(), want / n as f64, SUM)?;
            // The same through the public pieces.
            let picked = (logits.log_softmax(1) * Tensor::<f64>::one_hot(&targets, c)).sum();
            check("cross_entropy = -mean(one_hot · log_softmax)", ce.item(), -picked.item() / n as f64, SUM)?;
            // MSE, same shape and broadcast against a row.
            let dt = values(seed ^ 9, n * c);
            let target = build::<f64>(&dt, &[n, c], 0);
            let mse: f64 = d.iter().zip(&dt).map(|(a, b)| (a - b) * (a - b)).sum::<f64>() / (n * c) as f64;
            check("mse_loss", mse_loss(&logits, &target).item(), mse, SUM)?;
            let row = build::<f64>(&dt[..c], &[c], 0);
            let mse_row: f64 = (0..n * c).map(|i| (d[i] - dt[i % c]).powi(2)).sum::<f64>() / (n * c) as f64;
            check("mse_loss broadcast", mse_loss(&logits, &row).item(), mse_row, SUM)
        })?;
    }

    // -------------------------------------------------------------- layout operations

    #[test]
    fn views_and_joins(shape in prop::collection::vec(1usize..5, 1..4), seed in any::<u64>(), layout in 0u8..4, axis in 0usize..3, start in 0usize..4, count in 1usize..4) {
        let axis = axis % shape.len();
        let d = values(seed, numel(&shape));
        let t = build::<f64>(&d, &shape, layout);
        each_params(|| {
            // reshape: row-major order is kept.
            let flat = t.reshape(&[numel(&shape)]);
            check_vec("reshape", &to_f64(&flat), &d, Tol { rel: 0.0, abs: 0.0 })?;
            let back = flat.reshape(&shape);
            prop_assert_eq!(&back, &t);
            // narrow and select.
            let start = start % shape[axis];
            let len = (shape[axis] - start).min(count);
            let nar = t.narrow(axis, start, len);
            let mut ns = shape.clone();
            ns[axis] = len;
            let want: Vec<f64> = (0..numel(&ns)).map(|i| {
                let mut idx = unravel(i, &ns);
                idx[axis] += start;
                d[ravel(&idx, &shape)]
            }).collect();
            check_vec("narrow", &to_f64(&nar), &want, Tol { rel: 0.0, abs: 0.0 })?;
            let sel = t.select(axis, start);
            let mut ss = shape.clone();
            ss.remove(axis);
            prop_assert_eq!(sel.shape(), &ss[..]);
            let want: Vec<f64> = (0..numel(&ss)).map(|i| {
                let mut idx = unravel(i, &ss);
                idx.insert(axis, start);
                d[ravel(&idx, &shape)]
            }).collect();
            check_vec("select", &to_f64(&sel), &want, Tol { rel: 0.0, abs: 0.0 })?;
            // cat of the pieces before and from `start` gives the tensor back.
            let pieces = [t.narrow(axis, 0, start), t.narrow(axis, start, shape[axis] - start)];
            prop_assert_eq!(&Tensor::cat(&pieces, axis), &t);
            // stack of selects along an axis gives the tensor back.
            let sels: Vec<Tensor<f64>> = (0..shape[axis]).map(|i| t.select(axis, i)).collect();
            prop_assert_eq!(&Tensor::stack(&sels, axis), &t);
            // transpose twice is the identity; transpose moves elements.
            let last = shape.len() - 1;
            let tr = t.transpose(axis, last);
            prop_assert_eq!(&tr.transpose(axis, last), &t);
            let mut ts = shape.clone();
            ts.swap(axis, last);
            let want: Vec<f64> = (0..numel(&ts)).map(|i| {
                let mut idx = unravel(i, &ts);
                idx.swap(axis, last);
                d[ravel(&idx, &shape)]
            }).collect();
            check_vec("transpose", &to_f64(&tr), &want, Tol { rel: 0.0, abs: 0.0 })?;
            // index_rows of the 2-D view.
            let m2 = t.reshape(&[shape[0], numel(&shape) / shape[0]]);
            let rows: Vec<usize> = (0..count + 1).map(|i| (start + 3 * i) % shape[0]).collect();
            let w = numel(&shape) / shape[0];
            let want: Vec<f64> = rows.iter().flat_map(|&r| d[r * w..(r + 1) * w].to_vec()).collect();
            check_vec("index_rows", &to_f64(&m2.index_rows(&rows)), &want, Tol { rel: 0.0, abs: 0.0 })?;
            check_vec("index_rows of t()", &to_f64(&m2.t().index_rows(&[0])), &(0..shape[0]).map(|r| d[r * w]).collect::<Vec<_>>(), Tol { rel: 0.0, abs: 0.0 })
        })?;
    }
}

// ------------------------------------------------------------------ plain tests

#[test]
fn constructors_and_accessors() {
    let t = Tensor::<f32>::from_vec(vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0], &[2, 3]);
    assert_eq!((t.shape(), t.ndim(), t.numel()), (&[2usize, 3][..], 2, 6));
    assert_eq!(Tensor::<f64>::zeros(&[2, 2]).to_vec(), vec![0.0; 4]);
    assert_eq!(Tensor::<f64>::ones(&[3]).to_vec(), vec![1.0; 3]);
    assert_eq!(Tensor::<f64>::full(&[2], 7.5).to_vec(), vec![7.5; 2]);
    let s = Tensor::scalar(3.0_f64);
    assert_eq!((s.ndim(), s.numel(), s.item()), (0, 1, 3.0));
    assert_eq!(t.zeros_like().shape(), t.shape());
    assert_eq!(t.ones_like().sum().item(), 6.0);
    assert_eq!(Tensor::from_vec(vec![5.0_f32], &[1, 1]).item(), 5.0);
    assert_eq!(Tensor::from(vec![1.0_f64, 2.0]).shape(), &[2]);
    assert_eq!(format!("{t:?}"), "Tensor([2, 3], [[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]])");
    assert_eq!(format!("{s:?}"), "Tensor([], 3.0)");
    assert_eq!(format!("{:?}", t.t()), "Tensor([3, 2], [[1.0, 4.0], [2.0, 5.0], [3.0, 6.0]])");
    // Default element type.
    let d: Tensor = Tensor::zeros(&[1]);
    assert_eq!(d.item(), 0.0_f32);
    fn send_sync<T: Send + Sync + Clone>() {}
    send_sync::<Tensor<f32>>();
    send_sync::<Tensor<f64>>();
}

#[test]
fn empty_tensors() {
    let e = Tensor::<f64>::zeros(&[0, 3]);
    assert_eq!(e.numel(), 0);
    assert_eq!((&e + &Tensor::ones(&[3])).shape(), &[0, 3]);
    assert_eq!(e.sum().item(), 0.0);
    assert!(e.mean().item().is_nan());
    assert_eq!(e.sum_dim(0, false).to_vec(), vec![0.0; 3]);
    assert_eq!(e.sum_dim(1, false).shape(), &[0]);
    assert_eq!(e.t().matmul(&e).to_vec(), vec![0.0; 9], "k = 0 gives zeros");
    assert_eq!(e.matmul(&Tensor::ones(&[3, 2])).shape(), &[0, 2]);
    assert_eq!(e.exp().shape(), &[0, 3]);
    assert_eq!(e.softmax(1).shape(), &[0, 3]);
}

#[test]
fn random_tensors() {
    let mut rng = Rng::seed_from_u64(7);
    let u = Tensor::<f64>::rand(&[10_000], &mut rng);
    assert!(u.to_vec().iter().all(|&x| (0.0..1.0).contains(&x)));
    assert!((u.mean().item() - 0.5).abs() < 0.01);
    let v = Tensor::<f32>::uniform(&[10_000], -2.0, 3.0, &mut rng);
    assert!(v.to_vec().iter().all(|&x| (-2.0..3.0).contains(&x)));
    let z = Tensor::<f64>::randn(&[20_001], &mut rng);
    let mean = z.mean().item();
    let var = (&z - mean).powi(2).mean().item();
    assert!(mean.abs() < 0.03 && (var - 1.0).abs() < 0.03, "mean {mean}, var {var}");
    // Same seed, same stream; f32 uniforms never round up to 1.
    let a = Tensor::<f32>::randn(&[5], &mut Rng::seed_from_u64(1));
    let b = Tensor::<f32>::randn(&[5], &mut Rng::seed_from_u64(1));
    assert_eq!(a, b);
    let mut r = Rng::seed_from_u64(3);
    assert!((0..100_000).all(|_| r.uniform::<f32>() < 1.0));
}

#[test]
fn special_values() {
    let t = Tensor::from_vec(vec![-0.0, 0.0, -2.0, 3.0, f64::NAN], &[5]);
    let s = t.signum().to_vec();
    assert_eq!(&s[..4], &[0.0, 0.0, -1.0, 1.0]);
    assert!(s[4].is_nan());
    let big = Tensor::from_vec(vec![-1000.0_f32, 1000.0, 0.0], &[3]);
    assert_eq!(big.sigmoid().to_vec(), vec![0.0, 1.0, 0.5]);
    let sm = Tensor::from_vec(vec![1000.0_f32, 1000.0, -1000.0], &[1, 3]).softmax(1).to_vec();
    assert_eq!(sm, vec![0.5, 0.5, 0.0]);
    let nan_max = Tensor::from_vec(vec![1.0, f64::NAN, 3.0], &[1, 3]);
    assert!(nan_max.max_dim(1, false).item().is_nan());
    assert_eq!(nan_max.argmax_dim(1), vec![1]);
    // Ties: the first maximum.
    assert_eq!(Tensor::from_vec(vec![2.0, 5.0, 5.0, 1.0], &[2, 2]).argmax_dim(1), vec![1, 2]);
    assert_eq!(Tensor::from_vec(vec![2.0, 5.0, 5.0, 1.0], &[2, 2]).argmax_dim(0), vec![2, 1]);
}

#[test]
fn large_inputs_match_serial() {
    // Above the default thresholds, so the default parameters take the parallel paths.
    let mut rng = Rng::seed_from_u64(11);
    let a = Tensor::<f32>::randn(&[700, 1024], &mut rng);
    let b = Tensor::<f32>::randn(&[1024], &mut rng);
    let run = || {
        (
            (&a + &b).to_vec(),
            a.exp().to_vec(),
            a.sum().item(),
            a.sum_dim(0, false).to_vec(),
            a.sum_dim(1, false).to_vec(),
            a.max_dim(0, false).to_vec(),
            a.softmax(1).to_vec(),
            a.t().softmax(1).to_vec(),
            cross_entropy(&a, &(0..700).map(|i| i % 1024).collect::<Vec<_>>()).item(),
            a.narrow(1, 0, 100).matmul(&a.narrow(0, 0, 100)).to_vec(),
        )
    };
    let serial = with_kernel_params(KernelParams::SERIAL, run);
    let parallel = with_kernel_params(KernelParams::DEFAULT, run);
    // Bitwise: the reductions add fixed blocks in a fixed order.
    assert!(serial.0 == parallel.0 && serial.1 == parallel.1 && serial.2 == parallel.2);
    assert!(serial.3 == parallel.3 && serial.4 == parallel.4 && serial.5 == parallel.5);
    assert!(serial.6 == parallel.6 && serial.7 == parallel.7 && serial.8 == parallel.8);
    let close = serial.9.iter().zip(&parallel.9).all(|(x, y)| (x - y).abs() <= 1e-3 * (1.0 + x.abs()));
    assert!(close, "matmul serial vs parallel");
    // The sum against f64.
    let s64: f64 = a.to_vec().iter().map(|&x| x as f64).sum();
    assert!((a.sum().item() as f64 - s64).abs() < 1e-3 * (1.0 + s64.abs()));
}

#[test]
fn matmul_large_transposed_views() {
    // Big enough for the parallel GEMM; the transposed operands are strided views.
    let mut rng = Rng::seed_from_u64(5);
    let (m, k, n) = (130, 257, 129);
    let a = Tensor::<f64>::randn(&[k, m], &mut rng);
    let b = Tensor::<f64>::randn(&[n, k], &mut rng);
    let (at, bt) = (a.t(), b.t());
    assert!(!at.is_contiguous() && !bt.is_contiguous());
    let got = at.matmul(&bt);
    let want = ref_matmul(&at.to_vec(), &bt.to_vec(), m, k, n);
    common::assert_vec_close("Aᵀ Bᵀ", &got.to_vec(), &want, SUM);
    // A tall batched product with a shared right side folds into one GEMM.
    let x = Tensor::<f64>::randn(&[3, 40, k], &mut rng);
    let got = x.matmul(&bt);
    for i in 0..3 {
        let want = ref_matmul(&x.select(0, i).to_vec(), &bt.to_vec(), 40, k, n);
        common::assert_vec_close("batch", &got.select(0, i).to_vec(), &want, SUM);
    }
}

#[test]
fn nalgebra_round_trip() {
    let m = DMatrix::from_row_slice(2, 3, &[1.0_f64, 2.0, 3.0, 4.0, 5.0, 6.0]);
    let t = Tensor::from(&m);
    assert_eq!(t.to_vec(), vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0]);
    assert_eq!(t.to_dmatrix(), m);
    assert_eq!(t.t().to_dmatrix(), m.transpose());
    assert_eq!(t.narrow(1, 1, 2).to_dmatrix(), m.columns(1, 2).into_owned());
    let v = DVector::from_vec(vec![1.0_f32, -2.0]);
    let tv = Tensor::from(&v);
    assert_eq!(tv.shape(), &[2]);
    assert_eq!(tv.to_dvector(), v);
    assert_eq!(Tensor::<f64>::from(&m).matmul(&Tensor::from(&m.transpose())).to_dmatrix(), &m * m.transpose());
}

#[test]
fn adjoint_traits() {
    let x = Tensor::<f64>::from_vec(vec![1.0, 2.0, 3.0, 4.0], &[2, 2]);
    let z = x.zero_like();
    assert_eq!(z, Tensor::zeros(&[2, 2]));
    assert_eq!(Seed::one_like(&Tensor::scalar(2.0_f64)), Tensor::scalar(1.0));
    // Accumulate in place when unshared ...
    let mut acc = x.zero_like();
    acc.accumulate(x.clone());
    acc.accumulate(x.t());
    assert_eq!(acc.to_vec(), vec![2.0, 5.0, 5.0, 8.0]);
    // ... and never into a buffer someone else holds.
    let mut shared = x.clone();
    shared.accumulate(Tensor::ones(&[2, 2]));
    assert_eq!(x.to_vec(), vec![1.0, 2.0, 3.0, 4.0]);
    assert_eq!(shared.to_vec(), vec![2.0, 3.0, 4.0, 5.0]);
    let mut v = vec![x.clone(), x.clone()];
    v.accumulate(vec![x.clone(), Tensor::ones(&[2, 2])]);
    assert_eq!(v[1].to_vec(), vec![2.0, 3.0, 4.0, 5.0]);
}

// ------------------------------------------------------------------ shape errors

#[test]
#[should_panic(expected = "adjoint: cannot broadcast shapes [2, 3] and [4] in `add`")]
fn add_shape_error() {
    let _ = Tensor::<f32>::zeros(&[2, 3]) + Tensor::zeros(&[4]);
}

#[test]
#[should_panic(expected = "adjoint: cannot broadcast shapes [3] and [2] in `mul`")]
fn scalar_mul_shape_error() {
    let _ = &Tensor::<f64>::zeros(&[3]) * &Tensor::zeros(&[2]);
}

#[test]
#[should_panic(expected = "adjoint: matmul of [2, 3] and [4, 5]: inner dimensions 3 and 4 differ")]
fn matmul_inner_dimension_error() {
    let _ = Tensor::<f32>::zeros(&[2, 3]).matmul(&Tensor::zeros(&[4, 5]));
}

#[test]
#[should_panic(expected = "adjoint: cannot broadcast shapes [2] and [3] in `matmul`")]
fn matmul_batch_error() {
    let _ = Tensor::<f32>::zeros(&[2, 1, 1]).matmul(&Tensor::zeros(&[3, 1, 1]));
}

#[test]
#[should_panic(expected = "adjoint: `from_vec` got 5 values for shape [2, 3] (6 elements)")]
fn from_vec_error() {
    let _ = Tensor::<f32>::from_vec(vec![0.0; 5], &[2, 3]);
}

#[test]
#[should_panic(expected = "adjoint: cannot reshape a tensor of shape [2, 3] (6 elements) to [4] (4 elements)")]
fn reshape_error() {
    let _ = Tensor::<f32>::zeros(&[2, 3]).reshape(&[4]);
}

#[test]
#[should_panic(expected = "adjoint: `item` needs a tensor with one element, got shape [2]")]
fn item_error() {
    let _ = Tensor::<f32>::zeros(&[2]).item();
}

#[test]
#[should_panic(expected = "adjoint: cannot accumulate a gradient of shape [3] into one of shape [2, 3]")]
fn accumulate_error() {
    let mut g = Tensor::<f32>::zeros(&[2, 3]);
    g.accumulate(Tensor::zeros(&[3]));
}

#[test]
#[should_panic(expected = "adjoint: cannot broadcast shape [2, 3] into the shape [3] of the left side of `add_assign`")]
fn add_assign_error() {
    let mut g = Tensor::<f32>::zeros(&[3]);
    g += &Tensor::zeros(&[2, 3]);
}

#[test]
#[should_panic(expected = "adjoint: cannot sum shape [2, 3] to [2] in `sum_to_shape`")]
fn sum_to_shape_error() {
    let _ = Tensor::<f32>::zeros(&[2, 3]).sum_to_shape(&[2]);
}

#[test]
#[should_panic(expected = "adjoint: cannot broadcast shape [2, 3] to [3, 3] in `broadcast_to`")]
fn broadcast_to_error() {
    let _ = Tensor::<f32>::zeros(&[2, 3]).broadcast_to(&[3, 3]);
}

#[test]
#[should_panic(expected = "adjoint: axis 2 is out of range for shape [2, 3] in `sum_dim`")]
fn axis_error() {
    let _ = Tensor::<f32>::zeros(&[2, 3]).sum_dim(2, false);
}

#[test]
#[should_panic(expected = "adjoint: `narrow` of 2..4 along axis 1 is out of range for shape [2, 3]")]
fn narrow_error() {
    let _ = Tensor::<f32>::zeros(&[2, 3]).narrow(1, 2, 2);
}

#[test]
#[should_panic(expected = "adjoint: cannot `cat` shapes [2, 3] and [3, 3] along axis 1")]
fn cat_error() {
    let _ = Tensor::cat(&[Tensor::<f32>::zeros(&[2, 3]), Tensor::zeros(&[3, 3])], 1);
}

#[test]
#[should_panic(expected = "adjoint: cannot `stack` shapes [2] and [3]")]
fn stack_error() {
    let _ = Tensor::stack(&[Tensor::<f32>::zeros(&[2]), Tensor::zeros(&[3])], 0);
}

#[test]
#[should_panic(expected = "adjoint: row 5 is out of range in `index_rows` of shape [2, 3]")]
fn index_rows_error() {
    let _ = Tensor::<f32>::zeros(&[2, 3]).index_rows(&[0, 5]);
}

#[test]
#[should_panic(expected = "adjoint: `t` needs a tensor of at most 2 dimensions, got shape [1, 2, 3]")]
fn t_error() {
    let _ = Tensor::<f32>::zeros(&[1, 2, 3]).t();
}

#[test]
#[should_panic(expected = "adjoint: target 3 is out of range for logits of shape [2, 3] in `cross_entropy`")]
fn cross_entropy_target_error() {
    let _ = cross_entropy(&Tensor::<f32>::zeros(&[2, 3]), &[0, 3]);
}

#[test]
#[should_panic(expected = "adjoint: `cross_entropy` needs logits of shape [n, classes] with n = 1 targets, got [2, 3]")]
fn cross_entropy_shape_error() {
    let _ = cross_entropy(&Tensor::<f32>::zeros(&[2, 3]), &[0]);
}

#[test]
#[should_panic(expected = "adjoint: cannot broadcast shapes [2, 3] and [2] in `mse_loss`")]
fn mse_shape_error() {
    let _ = mse_loss(&Tensor::<f32>::zeros(&[2, 3]), &Tensor::zeros(&[2]));
}

#[test]
#[should_panic(expected = "adjoint: target 4 is out of range for 4 classes in `one_hot`")]
fn one_hot_error() {
    let _ = Tensor::<f32>::one_hot(&[1, 4], 4);
}

#[test]
#[should_panic(expected = "adjoint: `max_dim` along axis 1 of length 0 (shape [2, 0])")]
fn max_of_empty_axis_error() {
    let _ = Tensor::<f32>::zeros(&[2, 0]).max_dim(1, false);
}

#[test]
fn exp_accuracy_and_special_values() {
    // The kernels' vectorisable `exp` against the library one, over the whole range
    // including overflow, subnormal results and underflow.
    let xs32: Vec<f32> = (0..200_000).map(|i| -110.0 + i as f32 * 0.001).chain([0.0, -0.0, 88.72, 88.73]).collect();
    let got = Tensor::from(xs32.clone()).exp().to_vec();
    for (&x, &g) in xs32.iter().zip(&got) {
        let w = x.exp();
        let ok = if w == 0.0 || w.is_infinite() {
            g == w
        } else {
            ((g - w) / w).abs() <= 2.5e-7 || w < 1.2e-38 && (g - w).abs() <= 2e-45
        };
        assert!(ok, "exp({x}) = {g}, want {w}");
    }
    let xs64: Vec<f64> = (0..200_000).map(|i| -750.0 + i as f64 * 0.00731).chain([0.0, 709.78, 709.79]).collect();
    let got = Tensor::from(xs64.clone()).exp().to_vec();
    for (&x, &g) in xs64.iter().zip(&got) {
        let w = x.exp();
        let ok = if w == 0.0 || w.is_infinite() {
            g == w
        } else {
            ((g - w) / w).abs() <= 4.5e-16 || w < 2.3e-308 && (g - w).abs() <= 1e-323
        };
        assert!(ok, "exp({x}) = {g}, want {w}");
    }
    let special = Tensor::from(vec![f64::INFINITY, f64::NEG_INFINITY, f64::NAN]).exp().to_vec();
    assert_eq!(&special[..2], &[f64::INFINITY, 0.0]);
    assert!(special[2].is_nan());
    let special = Tensor::from(vec![f32::INFINITY, f32::NEG_INFINITY, f32::NAN]).sigmoid().to_vec();
    assert_eq!(&special[..2], &[1.0, 0.0]);
    assert!(special[2].is_nan());
}

/// The f32 tensor `tanh` (vectorisable, through f64 `exp`) against the correctly
/// rounded value, over a dense sweep, tiny values and the special values.
#[test]
fn f32_tanh_is_within_one_ulp() {
    let mut xs: Vec<f32> = (-250_000..=250_000).map(|i| i as f32 * 1e-4).collect();
    xs.extend((0..200).flat_map(|k| {
        let x = 2f32.powi(-k / 2) * 1.37;
        [x, -x]
    }));
    xs.extend([0.0, -0.0, f32::INFINITY, f32::NEG_INFINITY, 1e30, -1e30, f32::MIN_POSITIVE, 1e-40]);
    let got = Tensor::from_vec(xs.clone(), &[xs.len()]).tanh().to_vec();
    let ulps = |a: f32, b: f32| (a.to_bits() as i64 - b.to_bits() as i64).abs();
    for (&x, &y) in xs.iter().zip(&got) {
        let want = (x as f64).tanh() as f32;
        assert!(ulps(y, want) <= 1, "tanh({x:e}) = {y:e}, want {want:e}");
        assert_eq!(y.is_sign_negative(), want.is_sign_negative(), "sign of tanh({x:e})");
    }
    let nan = Tensor::from_vec(vec![f32::NAN], &[1]).tanh().to_vec();
    assert!(nan[0].is_nan());
}

/// `in_thread_pool` runs its function on a worker of the pool, with the caller's kernel
/// parameters, and returns its result.
#[test]
fn in_thread_pool_keeps_the_kernel_parameters() {
    let here = std::thread::current().id();
    let (params, elsewhere) = with_kernel_params(KernelParams::SERIAL, || {
        in_thread_pool(|| (KernelParams::current(), std::thread::current().id() != here))
    });
    assert_eq!(params, KernelParams::SERIAL);
    assert!(elsewhere);
    let x = Tensor::from_vec(vec![1.0_f64, 2.0, 3.0, 4.0], &[2, 2]);
    let y = in_thread_pool(|| x.matmul(&x));
    assert_eq!(y.to_vec(), vec![7.0, 10.0, 15.0, 22.0]);
}

// -------------------------------------------------------------- levels and determinism

/// Kernel parameters that must give bitwise the same results at one level: serial,
/// parallel in tiny pieces, parallel with middling thresholds over two threads, and the
/// defaults. Their full reductions all add blocks of the same length: `reduce_block`
/// fixes the order of a sum (documented on `KernelParams`), the thresholds and the
/// thread count must not change anything.
fn equivalent_params(isa: Isa) -> [KernelParams; 4] {
    let reduce_block = KernelParams::ALWAYS_PARALLEL.reduce_block;
    [
        KernelParams { isa, reduce_block, ..KernelParams::SERIAL },
        KernelParams { isa, ..KernelParams::ALWAYS_PARALLEL },
        KernelParams {
            isa,
            par: Par::Rayon(2),
            cheap_par_min: 64,
            heavy_par_min: 16,
            reduce_par_min: 32,
            task_min: 17,
            reduce_block,
            gemm_par_min: 4096,
        },
        KernelParams { isa, reduce_block, ..KernelParams::DEFAULT },
    ]
}

/// Every tensor kernel on one random case: `x` is `r × c`, `w` is `c × n`, both in the
/// given layouts. The results as bits, by name.
fn every_kernel<E: adjoint_runtime::Float>(
    r: usize,
    c: usize,
    n: usize,
    seed: u64,
    lx: u8,
    lw: u8,
) -> Vec<(&'static str, Vec<u64>)> {
    let x: Tensor<E> = build(&values(seed, r * c), &[r, c], lx);
    let w: Tensor<E> = build(&values(seed ^ 1, c * n), &[c, n], lw);
    let y: Tensor<E> = build(&values(seed ^ 2, c), &[c], 0);
    let x2: Tensor<E> = build(&values(seed ^ 4, r * c), &[r, c], lw);
    let stack: Tensor<E> = build(&values(seed ^ 5, 3 * r * c), &[3, r, c], lx);
    let targets: Vec<usize> = (0..r).map(|i| (i * 7 + seed as usize) % c).collect();
    let bits = |t: Tensor<E>| to_f64(&t).iter().map(|v| v.to_bits()).collect::<Vec<u64>>();
    vec![
        ("exp", bits(x.exp())),
        ("tanh", bits(x.tanh())),
        ("sigmoid", bits(x.sigmoid())),
        ("relu", bits(x.relu())),
        ("sqrt|x|", bits(x.abs().sqrt())),
        ("powi 3", bits(x.powi(3))),
        ("sin", bits(x.sin())),
        ("x + y", bits(&x + &y)),
        ("x * y", bits(&x * &y)),
        ("x / y", bits(&x / &y)),
        ("x - x2", bits(&x - &x2)),
        ("sum", bits(x.sum())),
        ("mean", bits(x.mean())),
        ("norm", bits(x.norm())),
        ("sum_dim 0", bits(x.sum_dim(0, false))),
        ("sum_dim 1", bits(x.sum_dim(1, true))),
        ("max_dim 1", bits(x.max_dim(1, false))),
        ("softmax 1", bits(x.softmax(1))),
        ("log_softmax 0", bits(x.log_softmax(0))),
        ("cross_entropy", bits(x.cross_entropy(&targets))),
        ("mse_loss", bits(x.mse_loss(&x2))),
        ("x·w", bits(x.matmul(&w))),
        ("xᵀ·x2", bits(x.t().matmul(&x2))),
        ("x·x2ᵀ", bits(x.matmul(&x2.t()))),
        ("x·y", bits(x.matmul(&y))),
        ("y·xᵀ", bits(y.matmul(&x.t()))),
        ("stack·w", bits(stack.matmul(&w))),
    ]
}

/// Run [`every_kernel`] on random cases under each of [`equivalent_params`] at `isa`,
/// and require bitwise equal results; or, when this CPU cannot run `isa` (a build on
/// another machine), say so on the test's output and return.
fn deterministic_at(isa: Isa) {
    if !isa.is_available() {
        // Straight to the standard error, which the test harness does not capture.
        let _ = writeln!(
            std::io::stderr(),
            "skipped: this CPU cannot run the {isa} kernels ({})",
            adjoint_runtime::kernels::describe()
        );
        return;
    }
    let shapes = (1usize..40, 1usize..90, 1usize..40, any::<u64>(), 0u8..4, 0u8..4);
    let mut runner = TestRunner::new(config_with(24));
    runner
        .run(&shapes, |(r, c, n, seed, lx, lw)| {
            for (ty, results) in [
                (
                    "f64",
                    equivalent_params(isa)
                        .map(|p| with_kernel_params(p, || every_kernel::<f64>(r, c, n, seed, lx, lw))),
                ),
                (
                    "f32",
                    equivalent_params(isa)
                        .map(|p| with_kernel_params(p, || every_kernel::<f32>(r, c, n, seed, lx, lw))),
                ),
            ] {
                for (p, other) in equivalent_params(isa).iter().zip(&results).skip(1) {
                    for ((name, want), (_, got)) in results[0].iter().zip(other) {
                        prop_assert!(got == want, "{ty} {name} at {isa}: {p:?} differs from the serial result");
                    }
                }
            }
            Ok(())
        })
        .unwrap();
}

#[test]
fn every_kernel_is_deterministic_at_baseline() {
    deterministic_at(Isa::Baseline);
}

#[test]
#[cfg_attr(not(adjoint_cpu_avx2), ignore = "this CPU has no AVX2+FMA: the avx2 kernels cannot run here")]
fn every_kernel_is_deterministic_at_avx2() {
    deterministic_at(Isa::Avx2);
}

#[test]
#[cfg_attr(not(adjoint_cpu_avx512), ignore = "this CPU has no AVX-512: the avx512 kernels cannot run here")]
fn every_kernel_is_deterministic_at_avx512() {
    deterministic_at(Isa::Avx512);
}

/// `dst = a · b` by the `gemm` crate, row-major, for comparison.
fn crate_product<E: adjoint_runtime::Float>(a: &[E], b: &[E], m: usize, k: usize, n: usize) -> Vec<E> {
    let mut c = vec![E::ZERO; m * n];
    // SAFETY: the slices hold the row-major `m × k`, `k × n` and `m × n` matrices.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            c.as_mut_ptr(),
            1,
            n as isize,
            false,
            a.as_ptr(),
            1,
            k as isize,
            b.as_ptr(),
            1,
            n as isize,
            E::ZERO,
            E::ONE,
            false,
            false,
            false,
            gemm::Parallelism::None,
        );
    }
    c
}

/// Sizes around the edges of the tiles and blocks: 1, the tile heights (4, 6, 12) and
/// widths (8, 16, 32) and their neighbours, and past a block of `k`.
fn edge_size(max: usize) -> impl Strategy<Value = usize> {
    prop_oneof![
        prop::sample::select(vec![1usize, 3, 4, 5, 6, 7, 11, 12, 13, 15, 16, 17, 23, 24, 25, 31, 32, 33, 47, 48, 49]),
        1usize..max,
    ]
}

proptest! {
    #![proptest_config(config_with(40))]

    /// The packed products against the `gemm` crate, at every level: random sizes
    /// around the tiles' edges, every layout of both operands, `k` past a block (so the
    /// tiles resume from what `C` holds). Results within rounding of the crate's, and
    /// bitwise the same serial and parallel.
    #[test]
    fn packed_products_match_the_gemm_crate(m in edge_size(90), k in prop_oneof![edge_size(60), 190usize..420], n in edge_size(90), seed in any::<u64>(), la in 0u8..4, lb in 0u8..4) {
        let (da, db) = (values(seed, m * k), values(seed ^ 3, k * n));
        let crate64 = crate_product(&da, &db, m, k, n);
        let (fa, fb): (Vec<f32>, Vec<f32>) = (da.iter().map(|&x| x as f32).collect(), db.iter().map(|&x| x as f32).collect());
        let crate32: Vec<f64> = crate_product(&fa, &fb, m, k, n).iter().map(|&x| x as f64).collect();
        let (a, b) = (build::<f64>(&da, &[m, k], la), build::<f64>(&db, &[k, n], lb));
        let (a32, b32) = (build::<f32>(&da, &[m, k], la), build::<f32>(&db, &[k, n], lb));
        let scale = (k as f64).sqrt();
        for isa in levels() {
            let serial = KernelParams { isa, ..KernelParams::SERIAL };
            let got = with_kernel_params(serial, || a.matmul(&b));
            check_vec("f64 against the crate", &to_f64(&got), &crate64, Tol { rel: 1e-12, abs: 1e-13 * scale })?;
            let got32 = with_kernel_params(serial, || a32.matmul(&b32));
            check_vec("f32 against the crate", &to_f64(&got32), &crate32, Tol { rel: 2e-5, abs: 1e-5 * scale })?;
            let parallel = KernelParams { isa, ..KernelParams::ALWAYS_PARALLEL };
            prop_assert!(with_kernel_params(parallel, || a.matmul(&b)).to_vec() == got.to_vec(), "f64 at {}: serial and parallel differ", isa);
            prop_assert!(with_kernel_params(parallel, || a32.matmul(&b32)).to_vec() == got32.to_vec(), "f32 at {}: serial and parallel differ", isa);
        }
    }

    /// The AVX2 and AVX-512 tiles both add each product with one fused multiply-add, in
    /// the order of `k`: a packed product (both sides wider than the narrow tiles) is
    /// bitwise the same at both levels.
    #[test]
    fn avx2_and_avx512_products_agree_bitwise(m in 17usize..70, k in 1usize..450, n in 17usize..70, seed in any::<u64>(), la in 0u8..4, lb in 0u8..4) {
        if !Isa::Avx512.is_available() {
            return Ok(());
        }
        let (a, b) = (build::<f64>(&values(seed, m * k), &[m, k], la), build::<f64>(&values(seed ^ 3, k * n), &[k, n], lb));
        let (a32, b32) = (build::<f32>(&values(seed, m * k), &[m, k], la), build::<f32>(&values(seed ^ 3, k * n), &[k, n], lb));
        let at = |isa| with_kernel_params(KernelParams { isa, ..KernelParams::DEFAULT }, || (a.matmul(&b).to_vec(), a32.matmul(&b32).to_vec()));
        prop_assert!(at(Isa::Avx2) == at(Isa::Avx512));
    }
}

#[test]
fn describe_names_what_runs() {
    let line = adjoint_runtime::kernels::describe();
    let detected = Isa::detected();
    assert!(line.contains(&format!("detected {detected}")), "{line}");
    let forced = with_kernel_params(
        KernelParams { isa: Isa::Baseline, ..KernelParams::DEFAULT },
        adjoint_runtime::kernels::describe,
    );
    assert!(forced.contains("kernels run baseline (asked for baseline)") && forced.contains("portable"), "{forced}");
}

/// `ADJOINT_ISA` caps the level for a whole process: this test runs itself again with
/// `ADJOINT_ISA=baseline`, where the detected level must be the baseline and the
/// description must say why.
#[test]
fn adjoint_isa_caps_the_level() {
    if let Ok(cap) = std::env::var("ADJOINT_ISA") {
        let cap = Isa::from_name(&cap).expect("a level's name");
        assert!(Isa::detected() <= cap, "detected {} above ADJOINT_ISA={cap}", Isa::detected());
        let line = adjoint_runtime::kernels::describe();
        assert!(line.contains(&format!("detected {}", Isa::detected())), "{line}");
        return;
    }
    let out = std::process::Command::new(std::env::current_exe().expect("the test binary"))
        .args(["--exact", "adjoint_isa_caps_the_level", "--nocapture"])
        .env("ADJOINT_ISA", "baseline")
        .output()
        .expect("the test binary runs");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stdout));
    assert!(String::from_utf8_lossy(&out.stdout).contains("1 passed"), "{}", String::from_utf8_lossy(&out.stdout));
}
