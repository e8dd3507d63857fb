//! Structs of the user's (`#[derive(Differentiable)]`) as JAX-style pytrees: plain float
//! structs by value and by reference, with `Vec` and array fields and an integer field;
//! struct literals (also `..rest`), field reads and field assignment in the body;
//! functions returning a struct, called in a loop; slices of structs as arguments, read
//! by index loops and iterator chains and updated through `iter_mut().zip(..)`. The
//! gradient has the struct's generated tangent type (`BodyTangent`: the same fields,
//! `()` for integers). Methods on `&self` of such a struct, called from free functions
//! (`model.logits(x).iter()…` over borrowed rows of a data set); nalgebra values built
//! from computed scalars (`Vector3::new`, `Matrix2::new`) inside float code.

#![allow(clippy::needless_range_loop)]

mod common;

use adjoint::nalgebra::{DMatrix, DVector, Matrix2, Rotation2, Vector2, Vector3};
use adjoint::prelude::*;
use common::*;
use proptest::prelude::*;

#[derive(Clone, Copy, Debug, Differentiable)]
struct Point {
    x: f64,
    y: f64,
}

#[derive(Clone, Copy, Debug, Differentiable)]
struct Body {
    x: f64,
    v: f64,
    m: f64,
}

#[derive(Clone, Debug, Differentiable)]
struct Poly {
    coeffs: Vec<f64>,
    shift: [f64; 2],
    degree: usize,
}

#[differentiable]
fn radius(p: &Point) -> f64 {
    (p.x * p.x + p.y * p.y).sqrt()
}

#[differentiable]
fn scaled_radius(p: Point, s: f64) -> f64 {
    s * radius(&p)
}

/// One symplectic step of a unit oscillator: a struct literal, a field assignment.
#[differentiable]
fn step(p: Point, dt: f64) -> Point {
    let mut q = Point { x: p.x + dt * p.y, y: p.y };
    q.y -= dt * q.x;
    q
}

#[differentiable]
fn energy_after(p0: Point, dt: f64, steps: usize) -> f64 {
    let mut p = p0;
    for _ in 0..steps {
        p = step(p, dt);
    }
    0.5 * (p.x * p.x + p.y * p.y)
}

#[differentiable]
fn nudged(p: Point, d: f64) -> Point {
    Point { x: p.x + d, ..p }
}

#[differentiable]
fn horner(p: &Poly, x: f64) -> f64 {
    let mut acc = 0.0;
    for i in 0..p.coeffs.len() {
        acc = acc * x + p.coeffs[i];
    }
    acc + p.shift[0] * x + p.shift[1] * p.degree as f64
}

#[differentiable]
fn horner_fold(p: &Poly, x: f64) -> f64 {
    p.coeffs.iter().fold(0.0, |acc, c| acc * x + c) + p.shift[0] * x + p.shift[1] * p.degree as f64
}

#[differentiable]
fn kinetic(bodies: &[Body]) -> f64 {
    bodies.iter().map(|b| 0.5 * b.m * b.v * b.v).sum()
}

#[differentiable]
fn spring_forces(bodies: &[Body], k: f64) -> Vec<f64> {
    let mut forces = vec![0.0; bodies.len()];
    for (i, pair) in bodies.windows(2).enumerate() {
        let tension = k * (pair[1].x - pair[0].x - 1.0);
        forces[i] += tension;
        forces[i + 1] -= tension;
    }
    forces
}

#[differentiable(wrt(initial, k))]
fn final_energy(initial: &[Body], k: f64, dt: f64, steps: usize) -> f64 {
    let mut bodies = initial.to_vec();
    for _ in 0..steps {
        let forces = spring_forces(&bodies, k);
        for (body, f) in bodies.iter_mut().zip(&forces) {
            body.v += dt * f / body.m;
            body.x += dt * body.v;
        }
    }
    let mut potential = 0.0;
    for i in 1..bodies.len() {
        potential += 0.5 * k * (bodies[i].x - bodies[i - 1].x - 1.0).powi(2);
    }
    kinetic(&bodies) + potential
}

#[derive(Clone, Debug, Differentiable)]
struct Model {
    w: Vec<Vec<f64>>,
    b: Vec<f64>,
}

impl Model {
    #[differentiable]
    fn logits(&self, x: &[f64]) -> Vec<f64> {
        self.w.iter().zip(&self.b).map(|(row, b)| row.iter().zip(x).map(|(w, xi)| w * xi).sum::<f64>() + b).collect()
    }
}

#[differentiable(wrt(model))]
fn picked_logits(model: &Model, data: &[(Vec<f64>, usize)]) -> f64 {
    data.iter().map(|(x, label)| model.logits(x)[*label].powi(2)).sum()
}

/// A rigid body in the plane: an angle and a nalgebra position, applied to points.
#[derive(Clone, Debug, Differentiable)]
struct Rigid {
    angle: f64,
    pos: Vector2<f64>,
}

impl Rigid {
    #[differentiable]
    fn transform(&self, p: &Vector2<f64>) -> Vector2<f64> {
        Rotation2::new(self.angle) * p + self.pos
    }
}

#[differentiable(wrt(body))]
fn misalignment(body: &Rigid, points: &[Vector2<f64>], targets: &[Vector2<f64>]) -> f64 {
    points.iter().zip(targets).map(|(p, q)| (body.transform(p) - q).norm_squared()).sum()
}

/// A kernel matrix built by `from_fn` with a closure capturing active values.
#[differentiable]
fn kernel_quadratic(x: &[f64], ell: f64, s: f64) -> f64 {
    let n = x.len();
    let k = DMatrix::from_fn(n, n, |i, j| {
        let d = x[i] - x[j];
        s * (-0.5 * d * d / (ell * ell)).exp()
    });
    let v = DVector::from_fn(n, |i, _| x[i] * ell);
    v.dot(&(k * &v))
}

/// A struct without the derive whose method is differentiated in its other arguments
/// only: `wrt(x)` leaves `self` out.
struct Frozen {
    w: Vec<f64>,
}

impl Frozen {
    #[differentiable(wrt(x))]
    fn forward(&self, x: &[f64]) -> Vec<f64> {
        x.iter().zip(&self.w).map(|(a, b)| (a * b).tanh()).collect()
    }
}

#[differentiable(wrt(y))]
fn frozen_sum(net: &Frozen, y: &[f64]) -> f64 {
    net.forward(y).iter().map(|v| v * v).sum()
}

/// A trait of the user's, implemented by derived structs, called on a concrete type and
/// through a generic bound.
#[differentiable]
trait Layer {
    fn forward(&self, x: &[f64]) -> Vec<f64>;
}

#[derive(Clone, Debug, Differentiable)]
struct Affine {
    w: Vec<f64>,
    b: f64,
}

#[differentiable]
impl Layer for Affine {
    fn forward(&self, x: &[f64]) -> Vec<f64> {
        x.iter().zip(&self.w).map(|(xi, wi)| (wi * xi + self.b).tanh()).collect()
    }
}

#[differentiable]
fn layer_energy(layer: &Affine, x: &[f64]) -> f64 {
    layer.forward(x).iter().map(|v| v * v).sum()
}

#[differentiable]
fn generic_energy<L: Layer + Differentiable>(layer: &L, x: &[f64]) -> f64 {
    layer.forward(x).iter().map(|v| v * v).sum::<f64>() * 0.5
}

/// Associated functions calling each other through `Self::`, with `#[differentiable]`
/// on the `impl` block (each function gets its companions as siblings).
struct Stats;

#[differentiable]
impl Stats {
    fn mean(xs: &[f64]) -> f64 {
        xs.iter().sum::<f64>() / xs.len() as f64
    }

    fn variance(xs: &[f64]) -> f64 {
        let m = Self::mean(xs);
        xs.iter().map(|x| (x - m).powi(2)).sum::<f64>() / xs.len() as f64
    }
}

/// A configuration struct without the derive: data, marked `#[no_grad]`.
struct Config {
    scale: f64,
    terms: usize,
}

#[differentiable]
fn configured(#[no_grad] c: &Config, x: f64) -> f64 {
    let mut s = 0.0;
    for k in 0..c.terms {
        s += c.scale * x.powi(k as i32 + 1);
    }
    s
}

/// The same without `#[no_grad]`: `wrt(x)` leaves the struct out, so it needs no
/// gradient type either.
#[differentiable(wrt(x))]
fn configured_wrt(c: &Config, x: f64) -> f64 {
    configured(c, x.cos()) * c.scale
}

#[differentiable]
fn configured_slope(#[no_grad] c: &Config, x: f64) -> f64 {
    grad!(configured)(c, x)
}

#[differentiable]
fn configured_caller(#[no_grad] c: &Config, x: f64) -> f64 {
    configured(c, x.sin())
}

#[differentiable]
fn built(a: f64, b: f64, c: f64) -> f64 {
    let v = Vector3::new(a * b, b.sin(), c);
    let m = Matrix2::new(a, b, c, a * c);
    let w = m * Vector2::new(1.0, 2.0);
    v.dot(&v) + w.dot(&w)
}

/// Central differences of `f` in each field of each body, by `set(body, field, value)`.
fn fd_bodies(bodies: &[Body], f: impl Fn(&[Body]) -> f64) -> Vec<[f64; 3]> {
    let get = |b: &Body, k: usize| [b.x, b.v, b.m][k];
    let set = |b: &mut Body, k: usize, v: f64| match k {
        0 => b.x = v,
        1 => b.v = v,
        _ => b.m = v,
    };
    (0..bodies.len())
        .map(|i| {
            std::array::from_fn(|k| {
                fd(
                    |v| {
                        let mut bs = bodies.to_vec();
                        set(&mut bs[i], k, v);
                        f(&bs)
                    },
                    get(&bodies[i], k),
                )
            })
        })
        .collect()
}

fn bodies(n: usize) -> impl Strategy<Value = Vec<Body>> {
    prop::collection::vec((-0.3..0.3f64, -1.0..1.0f64, 0.5..2.0f64), n..n + 1)
        .prop_map(|v| v.into_iter().enumerate().map(|(i, (dx, v, m))| Body { x: 1.1 * i as f64 + dx, v, m }).collect())
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn a_struct_by_reference_and_by_value(x in -3.0..3.0f64, y in 0.5..3.0f64, s in -2.0..2.0f64) {
        let p = Point { x, y };
        let g: PointTangent = grad!(radius)(&p);
        let r = (x * x + y * y).sqrt();
        check("x", g.x, x / r, EXACT)?;
        check("y", g.y, y / r, EXACT)?;
        let (g, gs) = grad!(scaled_radius)(p, s);
        check("x", g.x, fd(|x| scaled_radius(Point { x, y }, s), x), FD)?;
        check("y", g.y, fd(|y| scaled_radius(Point { x, y }, s), y), FD)?;
        check("s", gs, r, EXACT)?;
    }

    #[test]
    fn struct_literals_field_assignment_and_returned_structs(
        x in -2.0..2.0f64, y in -2.0..2.0f64, dt in 0.01..0.3f64, steps in 0..6usize,
    ) {
        let (g, gdt) = grad!(energy_after)(Point { x, y }, dt, steps);
        check("x", g.x, fd(|x| energy_after(Point { x, y }, dt, steps), x), FD)?;
        check("y", g.y, fd(|y| energy_after(Point { x, y }, dt, steps), y), FD)?;
        check("dt", gdt, fd(|dt| energy_after(Point { x, y }, dt, steps), dt), FD)?;
        // The pullback of a struct-valued function takes a cotangent struct.
        let (gp, gd) = vjp!(nudged)(Point { x, y }, dt, PointTangent { x: 3.0, y: -4.0 });
        check("nudged x", gp.x, 3.0, EXACT)?;
        check("nudged y (through ..rest)", gp.y, -4.0, EXACT)?;
        check("nudged d", gd, 3.0, EXACT)?;
        let (gp, _) = vjp!(step)(Point { x, y }, dt, PointTangent { x: 1.0, y: 0.0 });
        check("step x", gp.x, fd(|x| step(Point { x, y }, dt).x, x), FD)?;
        check("step y", gp.y, fd(|y| step(Point { x, y }, dt).x, y), FD)?;
    }

    #[test]
    fn vector_array_and_integer_fields(c in vec_in(-2.0, 2.0, 1..6), s0 in -1.0..1.0f64, s1 in -1.0..1.0f64, x in -1.5..1.5f64) {
        let p = Poly { coeffs: c.clone(), shift: [s0, s1], degree: c.len() - 1 };
        for (name, f) in [("horner", horner as fn(&Poly, f64) -> f64), ("horner_fold", horner_fold)] {
            let (g, gx): (PolyTangent, f64) = match name {
                "horner" => grad!(horner)(&p, x),
                _ => grad!(horner_fold)(&p, x),
            };
            let want: Vec<f64> = (0..c.len()).map(|i| x.powi((c.len() - 1 - i) as i32)).collect();
            check_vec(&format!("{name} coeffs"), &g.coeffs, &want, EXACT2)?;
            check(&format!("{name} shift[0]"), g.shift[0], x, EXACT)?;
            check(&format!("{name} shift[1]"), g.shift[1], p.degree as f64, EXACT)?;
            let with_x = |x: f64| f(&p, x);
            check(&format!("{name} x"), gx, fd(with_x, x), FD)?;
        }
    }

    #[test]
    fn slices_of_structs(bs in bodies(4), k in 0.5..3.0f64, steps in 0..30usize) {
        let g: Vec<BodyTangent> = grad!(kinetic)(&bs);
        for (b, gb) in bs.iter().zip(&g) {
            check("∂/∂x", gb.x, 0.0, EXACT)?;
            check("∂/∂v", gb.v, b.m * b.v, EXACT)?;
            check("∂/∂m", gb.m, 0.5 * b.v * b.v, EXACT)?;
        }
        let (g, gk): (Vec<BodyTangent>, f64) = grad!(final_energy)(&bs, k, 0.01, steps);
        let want = fd_bodies(&bs, |b| final_energy(b, k, 0.01, steps));
        for (i, (gb, w)) in g.iter().zip(&want).enumerate() {
            check(&format!("x[{i}]"), gb.x, w[0], FD)?;
            check(&format!("v[{i}]"), gb.v, w[1], FD)?;
            check(&format!("m[{i}]"), gb.m, w[2], FD)?;
        }
        check("k", gk, fd(|k| final_energy(&bs, k, 0.01, steps), k), FD)?;
    }
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn a_method_on_a_derived_struct(w in vec_in(-1.0, 1.0, 6..7), b in vec_in(-1.0, 1.0, 2..3), x in vec_in(-2.0, 2.0, 3..4)) {
        let model = Model { w: vec![w[..3].to_vec(), w[3..].to_vec()], b };
        let data = vec![(x.clone(), 0usize), (x.iter().map(|v| 0.5 * v).collect(), 1usize)];
        let g: ModelTangent = grad!(picked_logits)(&model, &data);
        for i in 0..2 {
            for j in 0..3 {
                let want = fd(|v| { let mut m = model.clone(); m.w[i][j] = v; picked_logits(&m, &data) }, model.w[i][j]);
                check(&format!("w[{i}][{j}]"), g.w[i][j], want, FD)?;
            }
            let want = fd(|v| { let mut m = model.clone(); m.b[i] = v; picked_logits(&m, &data) }, model.b[i]);
            check(&format!("b[{i}]"), g.b[i], want, FD)?;
        }
    }

    #[test]
    fn a_struct_without_the_derive_is_data(x in -1.5..1.5f64, scale in -2.0..2.0f64, terms in 0..5usize) {
        let c = Config { scale, terms };
        check("x", grad!(configured_caller)(&c, x), fd(|x| configured_caller(&c, x), x), FD)?;
        check("x (wrt)", grad!(configured_wrt)(&c, x), fd(|x| configured_wrt(&c, x), x), FD)?;
        // Second order by nesting, around a data argument.
        let second = grad!(configured_slope)(&c, x);
        check("x (second)", second, fd(|x| configured_slope(&c, x), x), FD)?;
        let want: f64 = (2..=terms).map(|k| scale * (k * (k - 1)) as f64 * x.powi(k as i32 - 2)).sum();
        check("x (second, closed form)", second, want, EXACT2)?;
    }

    #[test]
    fn associated_functions_through_self(xs in vec_in(-2.0, 2.0, 2..7)) {
        let g = grad!(Stats::variance)(&xs);
        let m = xs.iter().sum::<f64>() / xs.len() as f64;
        let want: Vec<f64> = xs.iter().map(|x| 2.0 * (x - m) / xs.len() as f64).collect();
        check_vec("variance", &g, &want, EXACT2)?;
        check_vec("mean", &grad!(Stats::mean)(&xs), &vec![1.0 / xs.len() as f64; xs.len()], EXACT)?;
    }

    #[test]
    fn a_rotation_built_from_an_angle(angle in -3.0..3.0f64, px in -1.0..1.0f64, py in -1.0..1.0f64, seed in 0..1000u64) {
        let body = Rigid { angle, pos: Vector2::new(px, py) };
        let points: Vec<Vector2<f64>> = (0..4).map(|i| Vector2::new((seed + i) as f64 % 3.0 - 1.0, i as f64 * 0.5)).collect();
        let targets: Vec<Vector2<f64>> = points.iter().map(|p| Vector2::new(p.y, -p.x)).collect();
        let g: RigidTangent = grad!(misalignment)(&body, &points, &targets);
        let at = |angle: f64, px: f64, py: f64| misalignment(&Rigid { angle, pos: Vector2::new(px, py) }, &points, &targets);
        check("angle", g.angle, fd(|a| at(a, px, py), angle), FD)?;
        check("pos.x", g.pos.x, fd(|x| at(angle, x, py), px), FD)?;
        check("pos.y", g.pos.y, fd(|y| at(angle, px, y), py), FD)?;
    }

    #[test]
    fn matrices_built_by_from_fn(x in vec_in(-1.5, 1.5, 1..5), ell in 0.5..2.0f64, s in 0.5..2.0f64) {
        let (gx, ge, gs) = grad!(kernel_quadratic)(&x, ell, s);
        check_vec("x", &gx, &fd_vec(|x| kernel_quadratic(x, ell, s), &x), FD)?;
        check("ell", ge, fd(|e| kernel_quadratic(&x, e, s), ell), FD)?;
        check("s", gs, fd(|s| kernel_quadratic(&x, ell, s), s), FD)?;
    }

    #[test]
    fn a_trait_method_concrete_and_generic(w in vec_in(-1.0, 1.0, 3..4), b in -0.5..0.5f64, x in vec_in(-1.5, 1.5, 3..4)) {
        let layer = Affine { w: w.clone(), b };
        let (g, gx): (AffineTangent, Vec<f64>) = grad!(layer_energy)(&layer, &x);
        let with_w = |w: &[f64]| layer_energy(&Affine { w: w.to_vec(), b }, &x);
        check_vec("w", &g.w, &fd_vec(with_w, &w), FD)?;
        check("b", g.b, fd(|b| layer_energy(&Affine { w: w.clone(), b }, &x), b), FD)?;
        check_vec("x", &gx, &fd_vec(|x| layer_energy(&layer, x), &x), FD)?;
        let (g2, gx2): (AffineTangent, Vec<f64>) = grad!(generic_energy)(&layer, &x);
        check_vec("generic w", &g2.w, &g.w.iter().map(|v| 0.5 * v).collect::<Vec<_>>(), EXACT)?;
        check_vec("generic x", &gx2, &gx.iter().map(|v| 0.5 * v).collect::<Vec<_>>(), EXACT)?;
    }

    #[test]
    fn a_method_of_a_struct_without_the_derive(w in vec_in(-1.0, 1.0, 3..4), y in vec_in(-1.5, 1.5, 3..4)) {
        let net = Frozen { w };
        check_vec("y", &grad!(frozen_sum)(&net, &y), &fd_vec(|y| frozen_sum(&net, y), &y), FD)?;
    }

    #[test]
    fn nalgebra_values_built_from_scalars(a in -2.0..2.0f64, b in -2.0..2.0f64, c in -2.0..2.0f64) {
        let (ga, gb, gc) = grad!(built)(a, b, c);
        let (fa, fb, fc) = fd3(built, a, b, c);
        check("a", ga, fa, FD)?;
        check("b", gb, fb, FD)?;
        check("c", gc, fc, FD)?;
    }
}
