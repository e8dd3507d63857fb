//! The examples of the README's "What you can write" section, exactly as printed there,
//! each checked against central finite differences.

mod common;

use adjoint::prelude::*;
use common::*;

const TOL: Tol = Tol { rel: 1e-6, abs: 1e-8 };

#[differentiable]
fn softmax_weighted(x: &[f64], w: &[f64]) -> f64 {
    let m = x.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
    let e: Vec<f64> = x.iter().map(|v| (v - m).exp()).collect();
    let z: f64 = e.iter().sum();
    e.iter().zip(w).map(|(ei, wi)| ei / z * wi).sum()
}

#[differentiable]
fn roughness(x: &[f64]) -> f64 {
    x.windows(2).map(|w| (w[1] - w[0]).powi(2)).sum::<f64>()
        + x.iter().filter(|&&v| v > 0.0).map(|v| v.sqrt()).sum::<f64>()
}

#[differentiable(wrt(rate, capacity))]
fn sse(rate: f64, capacity: f64, p0: f64, times: &[f64], obs: &[f64]) -> f64 {
    let logistic = |t: f64| capacity / (1.0 + (capacity - p0) / p0 * (-rate * t).exp());
    times.iter().zip(obs).map(|(&t, y)| (logistic(t) - y).powi(2)).sum()
}

#[differentiable(wrt(kappa, u0))]
fn heat(kappa: f64, u0: &[f64], dt: f64, steps: usize) -> f64 {
    let n = u0.len();
    let (mut u, mut next) = (u0.to_vec(), u0.to_vec());
    for _ in 0..steps {
        for (i, &centre) in u[1..n - 1].iter().enumerate() {
            next[i + 1] = centre + kappa * dt * (u[i] - 2.0 * centre + u[i + 2]);
        }
        std::mem::swap(&mut u, &mut next);
    }
    u.iter().map(|v| v * v).sum()
}

/// The helper of the README's `chord` example.
#[differentiable]
fn bezier(t: f64, ctrl: &[[f64; 2]; 4]) -> [f64; 2] {
    let s = 1.0 - t;
    let basis = [s * s * s, 3.0 * s * s * t, 3.0 * s * t * t, t * t * t];
    let mut p = [0.0; 2];
    for (b, c) in basis.iter().zip(ctrl) {
        p[0] += b * c[0];
        p[1] += b * c[1];
    }
    p
}

#[differentiable]
fn chord(ctrl: &[[f64; 2]; 4]) -> f64 {
    let [x0, y0] = bezier(0.25, ctrl); // a #[differentiable] helper returning [f64; 2]
    let [x1, y1] = bezier(0.75, ctrl);
    (x1 - x0).hypot(y1 - y0)
}

#[differentiable(custom_vjp = kepler_vjp)]
fn kepler(m: f64, e: f64) -> f64 {
    let mut big_e = m; // Newton's method on g = E − e·sin E − M = 0
    for _ in 0..30 {
        big_e -= (big_e - e * big_e.sin() - m) / (1.0 - e * big_e.cos());
    }
    big_e
}

fn kepler_vjp(m: f64, e: f64) -> (f64, impl FnOnce(f64) -> (f64, f64)) {
    let big_e = kepler(m, e);
    let slope = 1.0 - e * big_e.cos(); // ∂g/∂E at the solution
    (big_e, move |ebar| (ebar / slope, ebar * big_e.sin() / slope))
}

#[test]
fn readme_examples() {
    let (x, w) = ([0.3, -1.2, 2.5, 0.7], [1.1, 0.4, -0.6, 2.0]);
    let (gx, gw) = grad!(softmax_weighted)(&x, &w);
    assert_vec_close("softmax d/dx", &gx, &fd_vec(|x| softmax_weighted(x, &w), &x), TOL);
    assert_vec_close("softmax d/dw", &gw, &fd_vec(|w| softmax_weighted(&x, w), &w), TOL);
    assert_vec_close("roughness", &grad!(roughness)(&x), &fd_vec(roughness, &x), TOL);
    let (times, obs) = ([0.0, 0.5, 1.0, 1.5, 2.0], [1.0, 1.6, 2.4, 3.5, 4.7]);
    let (gr, gk) = grad!(sse)(0.8, 10.0, 1.0, &times, &obs);
    assert_close("sse d/drate", gr, fd(|r| sse(r, 10.0, 1.0, &times, &obs), 0.8), TOL);
    assert_close("sse d/dcapacity", gk, fd(|k| sse(0.8, k, 1.0, &times, &obs), 10.0), TOL);
    let u0 = [0.2, 0.5, 0.9, 0.4, 0.1];
    let (gk, gu) = grad!(heat)(0.8, &u0, 0.1, 6);
    assert_close("heat d/dkappa", gk, fd(|k| heat(k, &u0, 0.1, 6), 0.8), TOL);
    assert_vec_close("heat d/du0", &gu, &fd_vec(|u| heat(0.8, u, 0.1, 6), &u0), TOL);
    let ctrl = [[0.0, 0.0], [1.0, 2.0], [3.0, -1.0], [4.0, 1.5]];
    let g: [[f64; 2]; 4] = grad!(chord)(&ctrl);
    let flat = ctrl.concat();
    let to_ctrl = |v: &[f64]| -> [[f64; 2]; 4] { std::array::from_fn(|i| [v[2 * i], v[2 * i + 1]]) };
    assert_vec_close("chord d/dctrl", &g.concat(), &fd_vec(|v| chord(&to_ctrl(v)), &flat), TOL);
    let (gm, ge) = grad!(kepler)(1.2, 0.4);
    assert_close("kepler d/dm", gm, fd(|m| kepler(m, 0.4), 1.2), TOL);
    assert_close("kepler d/de", ge, fd(|e| kepler(1.2, e), 0.4), TOL);
}
