//! The user-facing API: the shapes of what `grad!`, `value_and_grad!` and `vjp!`
//! return; `wrt(…)`, `#[no_grad]` and `detach`; integer and boolean arguments passed
//! through; `f32`; arrays, vectors and tuples as arguments and outputs; and functions
//! generic over `T: Float`.

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
#![allow(unexpected_cfgs)]

mod common;

use adjoint::prelude::*;
use common::*;
use proptest::prelude::*;

#[differentiable]
fn one(x: f64) -> f64 {
    x.sin() * x
}

#[differentiable]
fn two(x: f64, y: f64) -> f64 {
    (x * y).sin() + x.powi(2)
}

#[differentiable]
fn three(x: f64, y: f64, z: f64) -> f64 {
    x * y * z + z.exp()
}

#[differentiable]
fn slice_and_scalar(x: &[f64], s: f64) -> f64 {
    let mut t = 0.0;
    for &v in x {
        t += v * v * s;
    }
    t
}

#[differentiable]
fn vec_and_array(v: Vec<f64>, a: [f64; 2]) -> f64 {
    let mut t = a[0] * a[1];
    for i in 0..v.len() {
        t += v[i] * a[i % 2];
    }
    t
}

/// Tuples as arguments: the gradient has the same tuple shape. (A nested tuple bound to
/// one name is destructured with `let`: see `nested_tuples`.)
#[differentiable]
fn tuple_args(p: (f64, f64), x: f64, (c, (d, e)): (f64, (f64, f64))) -> f64 {
    let (a, b) = p;
    a * b * x + c * d - e * x
}

/// A tuple holding a slice and a scalar.
#[differentiable]
fn tuple_with_slice(p: (&[f64], f64)) -> f64 {
    let (v, s) = p;
    let mut t = 0.0;
    for i in 0..v.len() {
        t += v[i] * s;
    }
    t * s
}

/// Integers and booleans are passed through and get no gradient.
#[differentiable]
fn pass_through(x: f64, n: i32, k: usize, b: u8, big: i64, flag: bool, idx: &[usize], y: f64) -> f64 {
    let mut s = x * n as f64 + y * k as f64 + (b as f64) * x * y + big as f64;
    for &i in idx {
        s += (i as f64) * x;
    }
    if flag {
        s * y
    } else {
        s
    }
}

#[differentiable(wrt(x))]
fn wrt_first(x: f64, y: f64) -> f64 {
    x * y * y
}

#[differentiable(wrt(c, a))]
fn wrt_two_of_three(a: f64, b: f64, c: f64) -> f64 {
    a * b + b * c * c + a * c
}

#[differentiable(wrt(v))]
fn wrt_slice(s: f64, v: &[f64]) -> f64 {
    let mut t = 0.0;
    for &e in v {
        t += e * s;
    }
    t
}

#[differentiable]
fn no_grad_param(x: f64, #[no_grad] y: f64, z: f64) -> f64 {
    x * y * y + z * y
}

#[differentiable]
fn no_grad_slice(#[no_grad] w: &[f64], x: &[f64]) -> f64 {
    let mut s = 0.0;
    for i in 0..x.len() {
        s += w[i] * x[i] * x[i];
    }
    s
}

#[differentiable]
fn detached(x: f64, y: f64) -> f64 {
    x * detach(x) + detach(x * y) * y + detach(3.0)
}

#[differentiable]
fn detach_in_loop(x: &[f64]) -> f64 {
    let mut s = 0.0;
    for i in 0..x.len() {
        s += x[i] * detach(x[i]);
    }
    s
}

#[differentiable]
fn polar(r: f64, t: f64) -> (f64, f64) {
    (r * t.cos(), r * t.sin())
}

#[differentiable]
fn nested_output(x: f64, y: f64) -> ((f64, f64), f64) {
    ((x * y, x + y), x.sin())
}

#[differentiable]
fn vector_output(x: &[f64], s: f64) -> Vec<f64> {
    let mut out = vec![0.0; x.len()];
    for i in 0..x.len() {
        out[i] = x[i] * s + x[i].sin();
    }
    out
}

// f32 versions of the API.

#[differentiable]
fn f32_two(x: f32, y: f32) -> f32 {
    (x * y).sin() + x * x
}

#[differentiable]
fn f32_slice(x: &[f32]) -> f32 {
    let mut s = 0.0;
    for &v in x {
        s += v.exp();
    }
    s
}

#[differentiable]
fn f32_array(p: [f32; 3]) -> f32 {
    p[0] * p[1] * p[2]
}

#[differentiable]
fn f32_polar(r: f32, t: f32) -> (f32, f32) {
    (r * t.cos(), r * t.sin())
}

/// Generic over `num_traits::Float`, as code written without adjoint in mind is (its
/// operators, constants from `num_traits`), called at `f64` and `f32`.
mod with_num_traits {
    use adjoint::prelude::differentiable;
    use num_traits::Float;

    #[differentiable]
    pub fn residual<T: Float>(slope: T, intercept: T, x: T, y: T) -> T {
        slope * x + intercept - y
    }

    #[differentiable]
    pub fn squared_residual<T: Float>(slope: T, intercept: T, x: T, y: T) -> T {
        let r = residual(slope, intercept, x, y);
        r * r / (T::one() + T::one())
    }
}

#[test]
fn generic_over_num_traits_float() {
    use with_num_traits::*;
    let (ds, di, dx, dy) = grad!(residual)(1.5, -0.5, 2.0, 3.0);
    assert_eq!((ds, di, dx, dy), (2.0, 1.0, 1.5, -1.0));
    let (ds, di, dx, dy): (f32, f32, f32, f32) = grad!(residual)(1.5f32, -0.5, 2.0, 3.0);
    assert_eq!((ds, di, dx, dy), (2.0, 1.0, 1.5, -1.0));
    // r = 1.5·2 − 0.5 − 3 = −0.5; ∂(r²/2)/∂slope = r·x.
    let (ds, ..) = grad!(squared_residual)(1.5, -0.5, 2.0, 3.0);
    assert_close("slope", ds, -0.5 * 2.0, EXACT);
}

/// Generic over the float type.
#[differentiable]
fn generic<T: Float>(x: T, y: T) -> T {
    x * y + x.sin() * T::TWO - y / (x * x + T::ONE)
}

#[differentiable]
fn generic_slice<T: Float>(x: &[T]) -> T {
    let mut s = T::ZERO;
    for i in 0..x.len() {
        s += x[i] * x[i] * T::HALF;
    }
    s
}

#[differentiable]
fn const_generic<const N: usize>(x: [f64; N]) -> f64 {
    let mut s = 0.0;
    for i in 0..N {
        s += x[i] * x[i] * (i as f64 + 1.0);
    }
    s
}

/// A tuple output holding a vector.
#[differentiable]
fn scalar_and_vector(x: &[f64]) -> (f64, Vec<f64>) {
    let mut v = vec![0.0; x.len()];
    let mut s = 0.0;
    for i in 0..x.len() {
        v[i] = x[i] * 2.0;
        s += x[i] * x[i];
    }
    (s, v)
}

/// A generic loop-carried product (saved on a tape).
#[differentiable]
fn generic_product<T: Float>(x: &[T]) -> T {
    let mut p = T::ONE;
    for i in 0..x.len() {
        p = p * x[i];
    }
    p
}

#[differentiable]
fn calls_generic(x: f64) -> f64 {
    generic(x, 2.0) * generic::<f64>(1.0, x)
}

fn generic_dx(x: f64, y: f64) -> f64 {
    y + 2.0 * x.cos() + y * 2.0 * x / ((x * x + 1.0) * (x * x + 1.0))
}

fn generic_dy(x: f64, _y: f64) -> f64 {
    x - 1.0 / (x * x + 1.0)
}

#[test]
fn result_shapes() {
    // One active argument: the gradient itself.
    let g: f64 = grad!(one)(0.5);
    assert_close("one", g, 0.5f64.cos() * 0.5 + 0.5f64.sin(), EXACT);
    // Several: a tuple, in argument order.
    let (gx, gy): (f64, f64) = grad!(two)(1.0, 2.0);
    assert_close("two d/dx", gx, 2.0 * 2.0f64.cos() + 2.0, EXACT);
    assert_close("two d/dy", gy, 2.0f64.cos(), EXACT);
    let (a, b, c): (f64, f64, f64) = grad!(three)(1.0, 2.0, 3.0);
    assert_eq!((a, b), (6.0, 3.0));
    assert_close("three d/dz", c, 2.0 + 3.0f64.exp(), EXACT);
    // value_and_grad!: (value, gradients).
    let (v, g): (f64, f64) = value_and_grad!(one)(0.5);
    assert_eq!(v, one(0.5));
    assert_eq!(g, grad!(one)(0.5));
    let (v, (gx2, gy2)): (f64, (f64, f64)) = value_and_grad!(two)(1.0, 2.0);
    assert_eq!(v, two(1.0, 2.0));
    assert_eq!((gx2, gy2), (gx, gy));
    // Slices and vectors give vectors, arrays give arrays.
    let x = [1.0, -2.0, 0.5];
    let (gv, gs): (Vec<f64>, f64) = grad!(slice_and_scalar)(&x, 3.0);
    assert_eq!(gv, vec![6.0, -12.0, 3.0]);
    assert_close("slice_and_scalar d/ds", gs, 1.0 + 4.0 + 0.25, EXACT);
    let (gv, ga): (Vec<f64>, [f64; 2]) = grad!(vec_and_array)(vec![1.0, 2.0, 3.0], [0.5, -1.0]);
    assert_eq!(gv, vec![0.5, -1.0, 0.5]);
    assert_eq!(ga, [-1.0 + 1.0 + 3.0, 0.5 + 2.0]);
    let (v, (gv, gs)): (f64, (Vec<f64>, f64)) = value_and_grad!(slice_and_scalar)(&x, 3.0);
    assert_close("value_and_grad of a slice", v, slice_and_scalar(&x, 3.0), EXACT);
    assert_eq!(gv, vec![6.0, -12.0, 3.0]);
    assert_close("value_and_grad of a slice d/ds", gs, 5.25, EXACT);
    // A const-generic array.
    let g: [f64; 4] = grad!(const_generic)([1.0, 2.0, 3.0, 4.0]);
    assert_eq!(g, [2.0, 8.0, 18.0, 32.0]);
    // An empty slice.
    let (gv, gs) = grad!(slice_and_scalar)(&[], 3.0);
    assert!(gv.is_empty());
    assert_eq!(gs, 0.0);
}

#[test]
fn tuple_arguments() {
    type G = ((f64, f64), f64, (f64, (f64, f64)));
    let g: G = grad!(tuple_args)((2.0, 3.0), 5.0, (7.0, (11.0, 13.0)));
    let ((ga, gb), gx, (gc, (gd, ge))) = g;
    assert_eq!((ga, gb), (15.0, 10.0));
    assert_eq!(gx, 6.0 - 13.0);
    assert_eq!((gc, gd, ge), (11.0, 7.0, -5.0));
    let v = [1.0, 2.0, 3.0];
    let (gv, gs): (Vec<f64>, f64) = grad!(tuple_with_slice)((&v, 0.5));
    assert_eq!(gv, vec![0.25, 0.25, 0.25]);
    assert_close("tuple with slice d/ds", gs, 2.0 * 6.0 * 0.5, EXACT);
}

#[test]
fn functions_as_values() {
    // The macros name ordinary functions.
    let g: fn(f64) -> f64 = grad!(one);
    let vg: fn(f64) -> (f64, f64) = value_and_grad!(one);
    let xs: Vec<f64> = (0..5).map(|i| i as f64 * 0.3).collect();
    let gs: Vec<f64> = xs.iter().map(|&x| g(x)).collect();
    for (x, gx) in xs.iter().zip(&gs) {
        assert_close("grad! as a fn pointer", *gx, x.cos() * x + x.sin(), EXACT);
        assert_eq!(vg(*x).1, *gx);
    }
    // Usable from several threads.
    let handles: Vec<_> = (0..4).map(|i| std::thread::spawn(move || grad!(two)(i as f64, 1.0))).collect();
    for (i, h) in handles.into_iter().enumerate() {
        assert_eq!(h.join().unwrap(), grad!(two)(i as f64, 1.0));
    }
}

#[test]
fn vjp_shapes() {
    // Scalar output: the cotangent scales the gradient.
    let g: f64 = vjp!(one)(0.5, 2.0);
    assert_close("vjp scalar", g, 2.0 * grad!(one)(0.5), EXACT);
    let (gx, gy) = vjp!(two)(1.0, 2.0, -3.0);
    let (hx, hy) = grad!(two)(1.0, 2.0);
    assert_close("vjp scalar two d/dx", gx, -3.0 * hx, EXACT);
    assert_close("vjp scalar two d/dy", gy, -3.0 * hy, EXACT);
    // Tuple output: a tuple cotangent.
    let (r, t) = (2.0, 0.5);
    let (gr, gt) = vjp!(polar)(r, t, (1.0, 0.0));
    assert_close("polar x d/dr", gr, t.cos(), EXACT);
    assert_close("polar x d/dt", gt, -r * t.sin(), EXACT);
    let (gr, gt) = vjp!(polar)(r, t, (0.0, 1.0));
    assert_close("polar y d/dr", gr, t.sin(), EXACT);
    assert_close("polar y d/dt", gt, r * t.cos(), EXACT);
    // Nested tuple output.
    let (gx, gy) = vjp!(nested_output)(0.3, 0.7, ((1.0, 2.0), 3.0));
    assert_close("nested output d/dx", gx, 0.7 + 2.0 + 3.0 * 0.3f64.cos(), EXACT);
    assert_close("nested output d/dy", gy, 0.3 + 2.0, EXACT);
    // A tuple holding a vector.
    let g: Vec<f64> = vjp!(scalar_and_vector)(&[1.0, -2.0], (1.0, vec![1.0, 0.5]));
    assert_eq!(g, vec![2.0 + 2.0, -4.0 + 1.0]);
    // Vector output: a vector cotangent.
    let x = [0.1, 0.2, 0.3];
    let (gv, gs): (Vec<f64>, f64) = vjp!(vector_output)(&x, 2.0, vec![1.0, 0.0, -1.0]);
    assert_vec_close("vector output d/dx", &gv, &[2.0 + 0.1f64.cos(), 0.0, -(2.0 + 0.3f64.cos())], EXACT);
    assert_close("vector output d/ds", gs, 0.1 - 0.3, EXACT);
}

#[test]
fn f32_api() {
    let (gx, gy): (f32, f32) = grad!(f32_two)(1.0, 2.0);
    assert_close("f32 d/dx", gx as f64, 2.0 * 2.0f64.cos() + 2.0, F32);
    assert_close("f32 d/dy", gy as f64, 2.0f64.cos(), F32);
    let (v, (vx, _)): (f32, (f32, f32)) = value_and_grad!(f32_two)(1.0, 2.0);
    assert_eq!(v, f32_two(1.0, 2.0));
    assert_eq!(vx, gx);
    let x = vec![0.5f32, -1.0, 2.0];
    let g: Vec<f32> = grad!(f32_slice)(&x);
    for (a, b) in g.iter().zip(&x) {
        assert_close("f32 slice", *a as f64, (*b as f64).exp(), F32);
    }
    let g: [f32; 3] = grad!(f32_array)([2.0, 3.0, 4.0]);
    assert_eq!(g, [12.0, 8.0, 6.0]);
    let (gr, gt): (f32, f32) = vjp!(f32_polar)(2.0, 0.5, (0.0, 1.0));
    assert_close("f32 vjp d/dr", gr as f64, 0.5f64.sin(), F32);
    assert_close("f32 vjp d/dt", gt as f64, 2.0 * 0.5f64.cos(), F32);
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn wrt_restricts_the_result(x in -2.0..2.0f64, y in -2.0..2.0f64, z in -2.0..2.0f64, v in vec_in(-2.0, 2.0, 0..5)) {
        let g: f64 = grad!(wrt_first)(x, y);
        check("wrt(x)", g, y * y, EXACT)?;
        let (v1, g1) = value_and_grad!(wrt_first)(x, y);
        check("wrt(x) value", v1, wrt_first(x, y), EXACT)?;
        check("wrt(x) value_and_grad", g1, y * y, EXACT)?;
        let gv: f64 = vjp!(wrt_first)(x, y, 2.0);
        check("wrt(x) vjp", gv, 2.0 * y * y, EXACT)?;

        // Gradients come in argument order, whatever the order in `wrt(…)`.
        let (ga, gc) = grad!(wrt_two_of_three)(x, y, z);
        check("wrt(c, a) d/da", ga, y + z, EXACT)?;
        check("wrt(c, a) d/dc", gc, 2.0 * y * z + x, EXACT)?;

        let g: Vec<f64> = grad!(wrt_slice)(x, &v);
        check_vec("wrt(v)", &g, &vec![x; v.len()], EXACT)?;
    }

    #[test]
    fn no_grad_and_detach(x in -2.0..2.0f64, y in -2.0..2.0f64, z in -2.0..2.0f64, w in vec_in(-2.0, 2.0, 4..5), v in vec_in(-2.0, 2.0, 4..5)) {
        let (gx, gz) = grad!(no_grad_param)(x, y, z);
        check("no_grad d/dx", gx, y * y, EXACT)?;
        check("no_grad d/dz", gz, y, EXACT)?;
        let (val, (vx, vz)) = value_and_grad!(no_grad_param)(x, y, z);
        check("no_grad value", val, no_grad_param(x, y, z), EXACT)?;
        prop_assert_eq!((vx, vz), (gx, gz));

        let g: Vec<f64> = grad!(no_grad_slice)(&w, &v);
        let want: Vec<f64> = w.iter().zip(&v).map(|(a, b)| 2.0 * a * b).collect();
        check_vec("no_grad slice", &g, &want, EXACT)?;

        let (gx, gy) = grad!(detached)(x, y);
        check("detach d/dx", gx, x, EXACT)?;
        check("detach d/dy", gy, x * y, EXACT)?;
        let (val, _) = value_and_grad!(detached)(x, y);
        check("detach value", val, x * x + x * y * y + 3.0, EXACT)?;
        check_vec("detach in a loop", &grad!(detach_in_loop)(&v), &v, EXACT)?;
    }

    #[test]
    fn integers_pass_through(
        x in -2.0..2.0f64, y in -2.0..2.0f64, n in -5i32..5, k in 0usize..5, b in 0u8..4,
        big in -1000i64..1000, flag in any::<bool>(), idx in proptest::collection::vec(0usize..10, 0..4)
    ) {
        let (gx, gy) = grad!(pass_through)(x, n, k, b, big, flag, &idx, y);
        let f = |x: f64, y: f64| pass_through(x, n, k, b, big, flag, &idx, y);
        let (fx, fy) = fd2(f, x, y);
        check("pass_through d/dx", gx, fx, FD)?;
        check("pass_through d/dy", gy, fy, FD)?;
        let isum: f64 = idx.iter().map(|&i| i as f64).sum();
        let s = x * n as f64 + y * k as f64 + b as f64 * x * y + big as f64 + isum * x;
        let ds_dx = n as f64 + b as f64 * y + isum;
        let ds_dy = k as f64 + b as f64 * x;
        let (wx, wy) = if flag { (ds_dx * y, ds_dy * y + s) } else { (ds_dx, ds_dy) };
        check("pass_through d/dx analytic", gx, wx, Tol { rel: 1e-12, abs: 1e-10 })?;
        check("pass_through d/dy analytic", gy, wy, Tol { rel: 1e-12, abs: 1e-10 })?;
    }

    #[test]
    fn vjp_is_linear_in_the_cotangent(r in 0.1..3.0f64, t in -3.0..3.0f64, a in -2.0..2.0f64, b in -2.0..2.0f64) {
        let (gr, gt) = vjp!(polar)(r, t, (a, b));
        let (xr, xt) = vjp!(polar)(r, t, (1.0, 0.0));
        let (yr, yt) = vjp!(polar)(r, t, (0.0, 1.0));
        check("vjp linear d/dr", gr, a * xr + b * yr, EXACT)?;
        check("vjp linear d/dt", gt, a * xt + b * yt, EXACT)?;
        let dot = |r: f64, t: f64| {
            let (x, y) = polar(r, t);
            a * x + b * y
        };
        let (fr, ft) = fd2(dot, r, t);
        check("vjp vs fd d/dr", gr, fr, FD)?;
        check("vjp vs fd d/dt", gt, ft, FD)?;
    }

    #[test]
    fn generic_functions(x in -2.0..2.0f64, y in -2.0..2.0f64, v in vec_in(-2.0, 2.0, 0..5)) {
        let (gx, gy) = grad!(generic)(x, y);
        check("generic f64 d/dx", gx, generic_dx(x, y), EXACT)?;
        check("generic f64 d/dy", gy, generic_dy(x, y), EXACT)?;
        let (fx, fy) = fd2(generic::<f64>, x, y);
        check("generic f64 d/dx fd", gx, fx, FD)?;
        check("generic f64 d/dy fd", gy, fy, FD)?;

        let (xs, ys) = (x as f32, y as f32);
        let (hx, hy): (f32, f32) = grad!(generic::<f32>)(xs, ys);
        check("generic f32 d/dx", hx as f64, generic_dx(xs as f64, ys as f64), F32)?;
        check("generic f32 d/dy", hy as f64, generic_dy(xs as f64, ys as f64), F32)?;

        let g: Vec<f64> = grad!(generic_slice)(&v);
        check_vec("generic slice", &g, &v, EXACT)?;
        let v32: Vec<f32> = v.iter().map(|e| *e as f32).collect();
        let g32: Vec<f32> = grad!(generic_slice::<f32>)(&v32);
        prop_assert_eq!(&g32, &v32);

        let g: Vec<f64> = grad!(generic_product)(&v);
        check_vec("generic product", &g, &fd_vec(generic_product::<f64>, &v), FD)?;
        let g32: Vec<f32> = grad!(generic_product::<f32>)(&v32);
        let g32: Vec<f64> = g32.iter().map(|e| *e as f64).collect();
        check_vec("generic product f32", &g32, &g, Tol { rel: 1e-5, abs: 1e-5 })?;

        let g: f64 = grad!(calls_generic)(x);
        check("generic callee", g, fd(calls_generic, x), FD)?;
    }
}

mod nested_tuples {
    use super::*;

    /// The inner tuple of a tuple parameter cannot be reached: `let (c, (d, e)) = q`
    /// and `let (c, de) = q; let (d, e) = de;` are rejected as unsupported patterns, and
    /// `q.1 .0` is rejected with a hint to destructure with `let`.
    #[differentiable]
    fn nested_tuple_let(q: (f64, (f64, f64))) -> f64 {
        let (c, (d, e)) = q;
        c * d - e
    }

    #[test]
    fn nested_tuple_parameter() {
        let (gc, (gd, ge)) = grad!(nested_tuple_let)((1.0, (2.0, 3.0)));
        assert_eq!((gc, gd, ge), (2.0, 1.0, -1.0));
    }
}
