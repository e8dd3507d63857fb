//! Heap allocations of the generated derivative code, counted by a global allocator
//! (per thread, so tests running in parallel do not disturb each other).
//!
//! Straight-line and loop-free branchy functions of scalars must not allocate at all,
//! and neither must straight-line functions of static-size nalgebra matrices; a loop
//! may record values on a tape, but the number of allocations must not grow with the
//! trip count beyond the amortised growth of a `Vec`.

// The functions under test are written the way users write numeric code (index loops,
// `x = x + …`), since those are the constructs the transform must handle.
#![allow(
    clippy::needless_range_loop,
    clippy::assign_op_pattern,
    clippy::manual_swap,
    clippy::useless_vec,
    clippy::let_and_return,
    clippy::neg_cmp_op_on_partial_ord,
    clippy::unusual_byte_groupings,
    clippy::eq_op,
    clippy::too_many_arguments,
    clippy::unnecessary_cast,
    clippy::needless_late_init
)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::hint::black_box;

use adjoint::nalgebra::{DMatrix, DVector, SMatrix, SVector};
use adjoint::prelude::*;

struct Counting;

thread_local! {
    static ALLOCATIONS: Cell<usize> = const { Cell::new(0) };
}

fn bump() {
    // `try_with`: the allocator may run while the thread-local is being torn down.
    let _ = ALLOCATIONS.try_with(|c| c.set(c.get() + 1));
}

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        bump();
        unsafe { System.alloc(layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        bump();
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        bump();
        unsafe { System.realloc(ptr, layout, new_size) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// The number of allocations (including reallocations) `f` makes on this thread.
fn allocations<R>(f: impl FnOnce() -> R) -> (R, usize) {
    let before = ALLOCATIONS.with(Cell::get);
    let r = f();
    let after = ALLOCATIONS.with(Cell::get);
    (r, after - before)
}

#[track_caller]
fn assert_no_allocation<R>(what: &str, f: impl FnOnce() -> R) -> R {
    let (r, n) = allocations(f);
    assert_eq!(n, 0, "{what}: {n} heap allocation(s), want none");
    r
}

// ------------------------------------------------------------------ functions under test

#[differentiable]
fn straight(x: f64, y: f64) -> f64 {
    let a = x * y;
    let b = a.sin() + x.exp() / (1.0 + y * y);
    let mut c = b * a;
    c += x.powi(3) - y.sqrt().ln_1p();
    c = c * c.tanh();
    c.hypot(a) + x.atan2(y)
}

#[differentiable]
fn straight32(x: f32, y: f32) -> f32 {
    let a = x * y;
    (a.sin() + x.exp()) * a.cosh()
}

#[differentiable]
fn branchy(x: f64, y: f64) -> f64 {
    let mut r = x * y;
    if x > y {
        r = r.sin() * x;
    } else if x > 0.0 {
        let t = r.exp();
        r = t * t;
    } else {
        r = r - y * y;
    }
    let s = if r > 1.0 { r.ln() } else { r * 0.5 };
    s * r + x
}

#[differentiable]
fn matcher(x: f64, k: u32) -> f64 {
    let y = match k {
        0 => x.sin(),
        1 | 2 => x * x,
        3..=6 => {
            let t = x.cos();
            t * t * x
        }
        n if n > 100 => x.exp(),
        _ => x,
    };
    y * x
}

#[differentiable]
fn early(x: f64) -> f64 {
    if x > 2.0 {
        return x * x;
    }
    let y = x.exp();
    y + 1.0
}

#[differentiable]
fn d_straight(x: f64, y: f64) -> f64 {
    let (gx, _gy) = grad!(straight)(x, y);
    gx
}

#[differentiable]
fn product(x: &[f64]) -> f64 {
    let mut p = 1.0;
    for &v in x {
        p = p * v;
    }
    p
}

#[differentiable]
fn scalar_loop(x: f64, n: usize) -> f64 {
    let mut y = x;
    for _ in 0..n {
        y = (y * y * 0.5 + 0.1).sin();
    }
    y
}

#[differentiable]
fn while_loop(x: f64, n: usize) -> f64 {
    let mut y = x;
    let mut k = 0;
    while k < n {
        if y > 0.0 {
            y = y * y * 0.9;
        } else {
            y = y.cos();
        }
        k += 1;
    }
    y
}

#[differentiable]
fn buffers(x: &[f64]) -> f64 {
    let n = x.len();
    let mut v = vec![0.0; n];
    for i in 0..n {
        v[i] = x[i] * x[i];
    }
    for i in 0..n {
        v[i] = v[i].sin() * v[i];
    }
    let mut s = 0.0;
    for i in 0..n {
        s += v[i];
    }
    s
}

/// A layer of static sizes through every matrix rule: products (matrix·vector,
/// transposed), `+ - /`, scaling, `component_mul`, `abs`, `dot`, `norm`,
/// `norm_squared`, `sum`, `mean` and element reads.
#[differentiable]
fn static_matrices(w: &SMatrix<f64, 3, 2>, b: &SVector<f64, 3>, x: &SVector<f64, 2>) -> f64 {
    let h = w * x + b;
    let a = h.component_mul(&h);
    let y = w.transpose() * a - x * 0.5;
    let z = (-h).abs() / 2.0;
    y.norm() + h.dot(b) * y[0] + w[(2, 1)] * z.sum() + (h - b).norm_squared() * z.mean()
}

/// The same function over `DMatrix`/`DVector`, whose gradients live on the heap.
#[differentiable]
fn dynamic_matrices(w: &DMatrix<f64>, b: &DVector<f64>, x: &DVector<f64>) -> f64 {
    let h = w * x + b;
    let a = h.component_mul(&h);
    let y = w.transpose() * a - x * 0.5;
    let z = (-&h).abs() / 2.0;
    y.norm() + h.dot(b) * y[0] + w[(2, 1)] * z.sum() + (&h - b).norm_squared() * z.mean()
}

// ------------------------------------------------------------------ tests

#[test]
fn straight_line_does_not_allocate() {
    for (x, y) in [(0.3, 1.2), (-0.7, 2.5), (1.5, 0.4)] {
        let (x, y) = (black_box(x), black_box(y));
        let g = assert_no_allocation("grad!(straight)", || grad!(straight)(x, y));
        let vg = assert_no_allocation("value_and_grad!(straight)", || value_and_grad!(straight)(x, y));
        assert_eq!(vg.1, g);
        assert_no_allocation("vjp!(straight)", || vjp!(straight)(x, y, 2.0));
        assert_no_allocation("grad!(straight32)", || grad!(straight32)(x as f32, y as f32));
        assert_no_allocation("value_and_grad!(straight32)", || value_and_grad!(straight32)(x as f32, y as f32));
    }
}

#[test]
fn branches_do_not_allocate() {
    for (x, y) in [(0.3, 0.2), (0.5, 2.5), (-1.5, 0.4), (3.0, -1.0)] {
        let (x, y) = (black_box(x), black_box(y));
        assert_no_allocation("grad!(branchy)", || grad!(branchy)(x, y));
        assert_no_allocation("value_and_grad!(branchy)", || value_and_grad!(branchy)(x, y));
        assert_no_allocation("grad!(early)", || grad!(early)(x));
        assert_no_allocation("value_and_grad!(early)", || value_and_grad!(early)(x));
    }
    for k in 0..8 {
        let k = black_box(k);
        assert_no_allocation("grad!(matcher)", || grad!(matcher)(0.7, k));
        assert_no_allocation("value_and_grad!(matcher)", || value_and_grad!(matcher)(0.7, k));
    }
    assert_no_allocation("grad!(matcher) with a guard", || grad!(matcher)(0.7, black_box(200)));
}

#[test]
fn static_matrices_do_not_allocate() {
    let w = black_box(SMatrix::<f64, 3, 2>::new(0.5, -1.0, 0.25, 2.0, -0.75, 1.5));
    let b = black_box(SVector::<f64, 3>::new(0.1, -0.2, 0.3));
    let x = black_box(SVector::<f64, 2>::new(1.5, -0.5));
    let g = assert_no_allocation("grad!(static_matrices)", || grad!(static_matrices)(&w, &b, &x));
    let vg = assert_no_allocation("value_and_grad!(static_matrices)", || value_and_grad!(static_matrices)(&w, &b, &x));
    assert_eq!(vg.1, g);
    assert_no_allocation("vjp!(static_matrices)", || vjp!(static_matrices)(&w, &b, &x, 2.0));

    // The same computation over dynamic sizes allocates (so the counter sees matrix
    // storage), and agrees.
    let (wd, bd, xd) = (
        DMatrix::from_column_slice(3, 2, w.as_slice()),
        DVector::from_column_slice(b.as_slice()),
        DVector::from_column_slice(x.as_slice()),
    );
    let (gd, n) = allocations(|| grad!(dynamic_matrices)(&wd, &bd, &xd));
    assert!(n > 0, "dynamic matrices allocate their gradients");
    for (name, dynamic, fixed) in [
        ("w", gd.0.as_slice(), g.0.as_slice()),
        ("b", gd.1.as_slice(), g.1.as_slice()),
        ("x", gd.2.as_slice(), g.2.as_slice()),
    ] {
        for (d, s) in dynamic.iter().zip(fixed) {
            assert!((d - s).abs() <= 1e-12 * s.abs().max(1.0), "d/d{name}: dynamic {dynamic:?}, static {fixed:?}");
        }
    }
}

#[test]
fn second_derivative_of_straight_line_does_not_allocate() {
    let (x, y) = (black_box(0.3), black_box(1.2));
    assert_no_allocation("grad!(d_straight)", || grad!(d_straight)(x, y));
    assert_no_allocation("value_and_grad!(d_straight)", || value_and_grad!(d_straight)(x, y));
}

/// Allocations for trip counts 10 and 1000: the second may exceed the first only by
/// the amortised growth of the tape (about log2(1000) ≈ 10 reallocations per tape).
fn assert_bounded_growth(what: &str, small: usize, large: usize) {
    assert!(
        large <= small + 40,
        "{what}: {large} allocations for n = 1000 but {small} for n = 10; \
         allocations must not grow with the trip count beyond amortised Vec growth"
    );
    assert!(large < 100, "{what}: {large} allocations for n = 1000, want well below n");
}

#[test]
fn loops_allocate_amortised() {
    let x10: Vec<f64> = (0..10).map(|i| 1.0 + 0.001 * i as f64).collect();
    let x1000: Vec<f64> = (0..1000).map(|i| 1.0 + 0.0001 * (i % 7) as f64).collect();

    let (g, small) = allocations(|| grad!(product)(black_box(&x10)));
    assert_eq!(g.len(), 10);
    let (g, large) = allocations(|| grad!(product)(black_box(&x1000)));
    assert_eq!(g.len(), 1000);
    assert!(small >= 1, "the returned gradient is a Vec");
    assert_bounded_growth("grad!(product)", small, large);

    let (_, small) = allocations(|| value_and_grad!(product)(black_box(&x10)));
    let (_, large) = allocations(|| value_and_grad!(product)(black_box(&x1000)));
    assert_bounded_growth("value_and_grad!(product)", small, large);

    let (_, small) = allocations(|| grad!(buffers)(black_box(&x10)));
    let (_, large) = allocations(|| grad!(buffers)(black_box(&x1000)));
    assert_bounded_growth("grad!(buffers)", small, large);

    let (_, small) = allocations(|| grad!(scalar_loop)(black_box(0.3), black_box(10)));
    let (_, large) = allocations(|| grad!(scalar_loop)(black_box(0.3), black_box(1000)));
    assert_bounded_growth("grad!(scalar_loop)", small, large);

    let (_, small) = allocations(|| grad!(while_loop)(black_box(0.3), black_box(10)));
    let (_, large) = allocations(|| grad!(while_loop)(black_box(0.3), black_box(1000)));
    assert_bounded_growth("grad!(while_loop)", small, large);
}

#[test]
fn counter_sees_allocations() {
    // The harness itself: a Vec of 1000 pushes reallocates a handful of times.
    let (_, n) = allocations(|| {
        let mut v = Vec::new();
        for i in 0..1000 {
            v.push(black_box(i));
        }
        v
    });
    assert!((1..=20).contains(&n), "{n}");
    let (_, n) = allocations(|| black_box(1.0f64).sin());
    assert_eq!(n, 0);
}
