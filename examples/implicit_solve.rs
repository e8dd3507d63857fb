//! A custom derivative for an implicit function: Kepler's equation E − e·sin E = M,
//! solved for the eccentric anomaly E by Newton's method, differentiated by the
//! implicit-function theorem instead of through the solver's iterations.
//!
//! With g(E, M, e) = E − e·sin E − M = 0 at the solution, ∂E/∂M = 1/g′ and
//! ∂E/∂e = sin E/g′, where g′ = 1 − e·cos E. `kepler_vjp` returns the solution and a
//! pullback with those two partials; `#[differentiable(custom_vjp = kepler_vjp)]` makes
//! every differentiable caller use it. The example then fits an orbit's eccentricity
//! to observed positions by gradient descent through the solver, and checks the
//! gradient against central finite differences.
//!
//! Run with `cargo run --release --example implicit_solve`.

use adjoint::prelude::*;

/// The eccentric anomaly E with E − e·sin E = M (0 ≤ e < 1), by Newton's method.
#[differentiable(custom_vjp = kepler_vjp)]
fn kepler(mean_anomaly: f64, eccentricity: f64) -> f64 {
    let mut e_anomaly = mean_anomaly;
    for _ in 0..50 {
        let residual = e_anomaly - eccentricity * e_anomaly.sin() - mean_anomaly;
        let step = residual / (1.0 - eccentricity * e_anomaly.cos());
        e_anomaly -= step;
        if step.abs() < 1e-15 {
            break;
        }
    }
    e_anomaly
}

/// The solution and the implicit-function pullback: one gradient per argument.
fn kepler_vjp(mean_anomaly: f64, eccentricity: f64) -> (f64, impl FnOnce(f64) -> (f64, f64)) {
    let e_anomaly = kepler(mean_anomaly, eccentricity);
    let slope = 1.0 - eccentricity * e_anomaly.cos();
    let sin = e_anomaly.sin();
    (e_anomaly, move |ebar| (ebar / slope, ebar * sin / slope))
}

/// The position on the orbit (semi-major axis 1) at mean anomaly `m`.
#[differentiable(order = 1)]
fn position(m: f64, eccentricity: f64) -> (f64, f64) {
    let e_anomaly = kepler(m, eccentricity);
    let x = e_anomaly.cos() - eccentricity;
    let y = (1.0 - eccentricity * eccentricity).sqrt() * e_anomaly.sin();
    (x, y)
}

/// Squared distance between the predicted and the observed positions. The callers of
/// a custom rule are first order (`order = 1`): the rule has no derivative of its own.
#[differentiable(wrt(eccentricity), order = 1)]
fn misfit(eccentricity: f64, times: &[f64], observed: &[(f64, f64)]) -> f64 {
    let mut total = 0.0;
    for i in 0..times.len() {
        let (x, y) = position(times[i], eccentricity);
        let (ox, oy) = observed[i];
        total += (x - ox) * (x - ox) + (y - oy) * (y - oy);
    }
    total
}

fn main() {
    // The derivative of the solver is the implicit one.
    let (m, e) = (1.2, 0.4);
    let (dm, de) = grad!(kepler)(m, e);
    let h = 1e-6;
    let fd_m = (kepler(m + h, e) - kepler(m - h, e)) / (2.0 * h);
    let fd_e = (kepler(m, e + h) - kepler(m, e - h)) / (2.0 * h);
    println!("∂E/∂M = {dm:.9} (finite differences {fd_m:.9})");
    println!("∂E/∂e = {de:.9} (finite differences {fd_e:.9})");
    assert!((dm - fd_m).abs() < 1e-7 && (de - fd_e).abs() < 1e-7);

    // Observations of an orbit of eccentricity 0.3, fitted from a first guess of 0.05.
    let truth = 0.3;
    let times: Vec<f64> = (0..12).map(|k| 0.5 * k as f64).collect();
    let observed: Vec<(f64, f64)> = times.iter().map(|&t| position(t, truth)).collect();
    let mut ecc = 0.05;
    for step in 0..40 {
        let (loss, g) = value_and_grad!(misfit)(ecc, &times, &observed);
        if step % 8 == 0 {
            println!("step {step:2}: e = {ecc:.6}, misfit = {loss:.3e}");
        }
        ecc -= 0.01 * g;
    }
    println!("fitted eccentricity {ecc:.6} (true {truth})");
    assert!((ecc - truth).abs() < 1e-6, "the fit converges to the true eccentricity");

    let g = grad!(misfit)(0.2, &times, &observed);
    let fd = (misfit(0.2 + h, &times, &observed) - misfit(0.2 - h, &times, &observed)) / (2.0 * h);
    println!("d misfit/de at 0.2: {g:.6} (finite differences {fd:.6})");
    assert!((g - fd).abs() < 1e-6 * fd.abs().max(1.0));
}
