//! Helpers shared by the integration tests: central finite differences, a tolerance
//! check with a readable failure message, and a deterministic proptest configuration.
//!
//! Each test file includes this with `mod common;`; not every file uses every helper.
#![allow(dead_code)]

use proptest::prelude::*;
use proptest::test_runner::{Config, RngAlgorithm, RngSeed, TestCaseError};

// ------------------------------------------------------------------ proptest setup

/// The seed of every property test: the suite draws the same inputs on every run.
pub const SEED: u64 = 0x000A_D501_4715;

/// The number of random inputs per property.
pub const CASES: u32 = 64;

/// A deterministic configuration: fixed seed and algorithm, no failure files written
/// into the source tree, bounded shrinking.
pub fn config() -> Config {
    config_with(CASES)
}

/// [`config`] with another number of cases (for expensive properties).
pub fn config_with(cases: u32) -> Config {
    Config {
        cases,
        failure_persistence: None,
        rng_algorithm: RngAlgorithm::ChaCha,
        rng_seed: RngSeed::Fixed(SEED),
        max_shrink_iters: 512,
        max_local_rejects: 4096,
        max_global_rejects: 4096,
        verbose: 0,
        ..Config::default()
    }
}

// ------------------------------------------------------------------ finite differences

/// The relative step of the central differences.
pub const STEP: f64 = 1e-6;

/// The step used at `x`: [`STEP`] scaled to the magnitude of `x` (at least 1).
pub fn step_at(x: f64) -> f64 {
    STEP * x.abs().max(1.0)
}

/// Central difference `(f(x+h) - f(x-h)) / 2h`.
pub fn fd(f: impl Fn(f64) -> f64, x: f64) -> f64 {
    let h = step_at(x);
    (f(x + h) - f(x - h)) / (2.0 * h)
}

/// Central differences of `f` with respect to each element of `x`.
pub fn fd_vec(f: impl Fn(&[f64]) -> f64, x: &[f64]) -> Vec<f64> {
    let mut a = x.to_vec();
    (0..x.len())
        .map(|i| {
            let h = step_at(x[i]);
            a[i] = x[i] + h;
            let up = f(&a);
            a[i] = x[i] - h;
            let down = f(&a);
            a[i] = x[i];
            (up - down) / (2.0 * h)
        })
        .collect()
}

/// Central differences of a function of a fixed-size array.
pub fn fd_arr<const N: usize>(f: impl Fn([f64; N]) -> f64, x: [f64; N]) -> [f64; N] {
    let g = fd_vec(|v| f(v.try_into().expect("length")), &x);
    g.try_into().expect("length")
}

/// Both partials of a function of two scalars.
pub fn fd2(f: impl Fn(f64, f64) -> f64, x: f64, y: f64) -> (f64, f64) {
    (fd(|t| f(t, y), x), fd(|t| f(x, t), y))
}

/// All three partials of a function of three scalars.
pub fn fd3(f: impl Fn(f64, f64, f64) -> f64, x: f64, y: f64, z: f64) -> (f64, f64, f64) {
    (fd(|t| f(t, y, z), x), fd(|t| f(x, t, z), y), fd(|t| f(x, y, t), z))
}

/// Central difference of an `f32` function, evaluated in `f32` with a step suited to
/// single precision (use with [`F32_FD`]).
pub fn fd_f32(f: impl Fn(f32) -> f32, x: f32) -> f64 {
    let h = 1e-2_f32 * x.abs().max(1.0);
    ((f(x + h) as f64) - (f(x - h) as f64)) / (2.0 * h as f64)
}

// ------------------------------------------------------------------ tolerances

/// `|got - want| <= abs + rel * max(|got|, |want|)`.
#[derive(Clone, Copy, Debug)]
pub struct Tol {
    pub rel: f64,
    pub abs: f64,
}

/// Against an analytic formula evaluated in `f64`: a few ulps of slack.
pub const EXACT: Tol = Tol { rel: 1e-12, abs: 1e-14 };
/// A second derivative obtained by nesting, against an analytic formula in `f64`.
pub const EXACT2: Tol = Tol { rel: 1e-10, abs: 1e-12 };
/// Against central differences of an `f64` function.
pub const FD: Tol = Tol { rel: 2e-5, abs: 2e-6 };
/// Against central differences of a derivative (second derivatives).
pub const FD2: Tol = Tol { rel: 1e-4, abs: 1e-5 };
/// An `f32` gradient against an analytic formula in `f64`.
pub const F32: Tol = Tol { rel: 2e-5, abs: 2e-6 };
/// An `f32` gradient against central differences in `f32`.
pub const F32_FD: Tol = Tol { rel: 3e-2, abs: 3e-3 };

pub fn close(got: f64, want: f64, tol: Tol) -> bool {
    if got == want {
        return true; // also equal infinities
    }
    if !got.is_finite() || !want.is_finite() {
        return false; // NaN never matches
    }
    (got - want).abs() <= tol.abs + tol.rel * got.abs().max(want.abs())
}

fn mismatch(what: &str, got: f64, want: f64, tol: Tol) -> String {
    let allowed = tol.abs + tol.rel * got.abs().max(want.abs());
    format!(
        "{what}: got {got:e}, want {want:e}; |got - want| = {:e} > allowed {allowed:e} (rel {:e}, abs {:e})",
        (got - want).abs(),
        tol.rel,
        tol.abs
    )
}

/// Compare two scalars; an error for proptest when they differ.
pub fn check(what: &str, got: f64, want: f64, tol: Tol) -> Result<(), TestCaseError> {
    if close(got, want, tol) {
        Ok(())
    } else {
        Err(TestCaseError::fail(mismatch(what, got, want, tol)))
    }
}

/// Compare two vectors elementwise (and their lengths).
pub fn check_vec(what: &str, got: &[f64], want: &[f64], tol: Tol) -> Result<(), TestCaseError> {
    if got.len() != want.len() {
        return Err(TestCaseError::fail(format!(
            "{what}: length {} but want length {}\n  got  {got:?}\n  want {want:?}",
            got.len(),
            want.len()
        )));
    }
    let bad: Vec<String> = got
        .iter()
        .zip(want)
        .enumerate()
        .filter(|(_, (g, w))| !close(**g, **w, tol))
        .map(|(i, (g, w))| mismatch(&format!("[{i}]"), *g, *w, tol))
        .collect();
    if bad.is_empty() {
        Ok(())
    } else {
        Err(TestCaseError::fail(format!(
            "{what}: {} of {} elements differ\n  {}\n  got  {got:?}\n  want {want:?}",
            bad.len(),
            got.len(),
            bad.join("\n  ")
        )))
    }
}

/// [`check`], panicking (for plain `#[test]`s).
#[track_caller]
pub fn assert_close(what: &str, got: f64, want: f64, tol: Tol) {
    if let Err(e) = check(what, got, want, tol) {
        panic!("{e}");
    }
}

/// [`check_vec`], panicking (for plain `#[test]`s).
#[track_caller]
pub fn assert_vec_close(what: &str, got: &[f64], want: &[f64], tol: Tol) {
    if let Err(e) = check_vec(what, got, want, tol) {
        panic!("{e}");
    }
}

// ------------------------------------------------------------------ strategies

/// A float in `lo..hi` at least `margin` away from every point of `avoid`.
pub fn away_from(lo: f64, hi: f64, avoid: &'static [f64], margin: f64) -> impl Strategy<Value = f64> {
    (lo..hi).prop_filter("too close to an excluded point", move |x| avoid.iter().all(|a| (x - a).abs() >= margin))
}

/// A float whose magnitude is in `lo..hi`, of either sign.
pub fn magnitude(lo: f64, hi: f64) -> impl Strategy<Value = f64> {
    (lo..hi, any::<bool>()).prop_map(|(m, neg)| if neg { -m } else { m })
}

/// A float in `lo..hi` whose distance to the nearest integer is at least `margin`.
pub fn non_integer(lo: f64, hi: f64, margin: f64) -> impl Strategy<Value = f64> {
    (lo..hi).prop_filter("too close to an integer", move |x| (x - x.round()).abs() >= margin)
}

/// A vector of `len` floats in `lo..hi`.
pub fn vec_in(lo: f64, hi: f64, len: std::ops::Range<usize>) -> impl Strategy<Value = Vec<f64>> {
    proptest::collection::vec(lo..hi, len)
}
