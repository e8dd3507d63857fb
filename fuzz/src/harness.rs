//! The checker compiled into every generated crate (the fuzzer writes this file there
//! as `harness.rs`; it is also a module of the fuzzer itself, so it is built and tested
//! with it).
//!
//! For one program and one input point it compares `grad!(f)` with central finite
//! differences of the plain `f`, coordinate by coordinate, with two step sizes: a
//! coordinate is judged only where the two differences agree (a kink or a branch switch
//! between the two evaluations of a difference makes them disagree), and then the
//! gradient must match them. It also checks that `value_and_grad!` agrees with `f` and
//! `grad!`, and, when the program has one, the gradient of `d_f` (a function of
//! `grad!(f)`): second derivatives through a nested `grad!`.

#![allow(dead_code)]

use std::cell::RefCell;
use std::fmt;
use std::panic::{self, AssertUnwindSafe};

/// A parameter of the entry function: `f64`, `&[f64]` or `&[Vec<f64>]` (square: as many
/// rows as the slices have elements, each of that length; its gradient is a
/// `Vec<Vec<f64>>` of the same shape, flattened row by row).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum P {
    Scalar,
    Slice,
    Rows,
}

/// What the check found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    Passed,
    /// A gradient differs from the finite differences (or `value_and_grad!` from `f`).
    Wrong,
    /// A gradient is NaN or infinite where the finite differences are finite and agree.
    Nan,
    /// The derivative code panicked.
    Panic,
    /// No input point where the plain function is finite (or the plain function panicked:
    /// the generator's mistake, not the macro's).
    Skipped,
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Outcome::Passed => "passed",
            Outcome::Wrong => "wrong",
            Outcome::Nan => "nan",
            Outcome::Panic => "panic",
            Outcome::Skipped => "skipped",
        })
    }
}

pub struct Report {
    pub outcome: Outcome,
    pub detail: String,
}

impl Report {
    fn new(outcome: Outcome, detail: impl Into<String>) -> Report {
        Report { outcome, detail: detail.into() }
    }
}

/// The scalars, the slices and the buffers of rows of an input point, in order.
type Value<'a> = &'a dyn Fn(&[f64], &[Vec<f64>], &[Vec<Vec<f64>>]) -> f64;
type Gradient<'a> = &'a dyn Fn(&[f64], &[Vec<f64>], &[Vec<Vec<f64>>]) -> Vec<f64>;
type Both<'a> = &'a dyn Fn(&[f64], &[Vec<f64>], &[Vec<Vec<f64>>]) -> (f64, Vec<f64>);

thread_local! {
    static LAST_PANIC: RefCell<String> = const { RefCell::new(String::new()) };
}

/// Keep panic messages for the report instead of printing them.
pub fn install_hook() {
    panic::set_hook(Box::new(|info| {
        let msg = match info.payload().downcast_ref::<&str>() {
            Some(s) => s.to_string(),
            None => match info.payload().downcast_ref::<String>() {
                Some(s) => s.clone(),
                None => "a panic".to_string(),
            },
        };
        let at = info.location().map(|l| format!(" at {}:{}", l.file(), l.line())).unwrap_or_default();
        LAST_PANIC.with(|l| *l.borrow_mut() = format!("{msg}{at}"));
    }));
}

fn guarded<T>(f: impl FnOnce() -> T) -> Result<T, String> {
    panic::catch_unwind(AssertUnwindSafe(f)).map_err(|_| LAST_PANIC.with(|l| l.borrow().clone()))
}

/// SplitMix64, as in the fuzzer.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn float(&mut self, lo: f64, hi: f64) -> f64 {
        lo + (hi - lo) * ((self.next() >> 11) as f64 / (1u64 << 53) as f64)
    }
}

/// An input point: the scalars, the slices and the buffers of rows of the entry
/// function, each in order. Coordinates are numbered scalars first, then the slices'
/// elements, then the rows' elements row by row.
struct Point {
    s: Vec<f64>,
    v: Vec<Vec<f64>>,
    m: Vec<Vec<Vec<f64>>>,
}

impl Point {
    fn draw(layout: &[P], rng: &mut Rng) -> Point {
        let len = 3 + (rng.next() % 3) as usize;
        let mut s = Vec::new();
        let mut v = Vec::new();
        let mut m = Vec::new();
        for p in layout {
            match p {
                P::Scalar => s.push(rng.float(-1.5, 1.5)),
                P::Slice => v.push((0..len).map(|_| rng.float(-1.5, 1.5)).collect()),
                P::Rows => m.push((0..len).map(|_| (0..len).map(|_| rng.float(-1.5, 1.5)).collect()).collect()),
            }
        }
        Point { s, v, m }
    }

    /// The vectors holding the coordinates after the scalars, in order.
    fn vectors(&self) -> impl Iterator<Item = &Vec<f64>> {
        self.v.iter().chain(self.m.iter().flatten())
    }

    /// The number of float coordinates.
    fn dim(&self) -> usize {
        self.s.len() + self.vectors().map(Vec::len).sum::<usize>()
    }

    fn get(&self, k: usize) -> f64 {
        if k < self.s.len() {
            return self.s[k];
        }
        let mut k = k - self.s.len();
        for v in self.vectors() {
            if k < v.len() {
                return v[k];
            }
            k -= v.len();
        }
        unreachable!("coordinate out of range")
    }

    fn with(&self, k: usize, x: f64) -> Point {
        let mut p = Point { s: self.s.clone(), v: self.v.clone(), m: self.m.clone() };
        if k < p.s.len() {
            p.s[k] = x;
            return p;
        }
        let mut k = k - p.s.len();
        for v in p.v.iter_mut().chain(p.m.iter_mut().flatten()) {
            if k < v.len() {
                v[k] = x;
                return p;
            }
            k -= v.len();
        }
        unreachable!("coordinate out of range")
    }

    /// The coordinates in the order the flattened gradient lists them: by parameter.
    fn order(&self, layout: &[P]) -> Vec<usize> {
        let (mut si, mut vi, mut mi) = (0, 0, 0);
        let mut out = Vec::new();
        let mut offsets = Vec::new();
        let mut at = self.s.len();
        for v in &self.v {
            offsets.push(at);
            at += v.len();
        }
        let mut row_offsets = Vec::new();
        for m in &self.m {
            row_offsets.push(at);
            at += m.iter().map(Vec::len).sum::<usize>();
        }
        for p in layout {
            match p {
                P::Scalar => {
                    out.push(si);
                    si += 1;
                }
                P::Slice => {
                    out.extend(offsets[vi]..offsets[vi] + self.v[vi].len());
                    vi += 1;
                }
                P::Rows => {
                    let n = self.m[mi].iter().map(Vec::len).sum::<usize>();
                    out.extend(row_offsets[mi]..row_offsets[mi] + n);
                    mi += 1;
                }
            }
        }
        out
    }
}

/// The small and the large step (relative to the coordinate's magnitude).
const STEPS: (f64, f64) = (1e-5, 1e-3);

/// A central difference of `f` along coordinate `k` with step `h`, and the magnitude
/// of the values it subtracted.
/// `None` also when the point itself is on another branch than both neighbours (their
/// mean is far from the value at the point): two step sizes can then agree on the
/// slope of the neighbours' branch, which is not the derivative at the point.
fn difference(f: Value, p: &Point, k: usize, h: f64, at: f64) -> Option<(f64, f64)> {
    let x = p.get(k);
    let up = p.with(k, x + h);
    let down = p.with(k, x - h);
    let (fu, fd) = guarded(|| (f(&up.s, &up.v, &up.m), f(&down.s, &down.v, &down.m))).ok()?;
    let magnitude = fu.abs().max(fd.abs());
    let continuous = ((fu + fd) / 2.0 - at).abs() <= 1e-3 * magnitude.max(at.abs()).max(1.0);
    // Whole numbers at the point and at both neighbours, not all the same: a step
    // function (`ceil`, `floor`, `round` of a value that moves by more than 1 over the
    // step), whose derivative is 0 wherever it exists while the differences measure the
    // slope of what it rounds.
    let steps = [fu, fd, at].iter().all(|v| v.fract() == 0.0) && (fu != fd || fu != at);
    (fu.is_finite() && fd.is_finite() && continuous && !steps).then(|| ((fu - fd) / (2.0 * h), magnitude))
}

/// Compare a gradient with the differences of `f`; `None` if it matches.
fn compare(what: &str, f: Value, grad: &[f64], p: &Point, layout: &[P]) -> Option<Report> {
    let order = p.order(layout);
    if grad.len() != order.len() {
        return Some(Report::new(
            Outcome::Wrong,
            format!("{what}: {} gradient entries for {} coordinates", grad.len(), order.len()),
        ));
    }
    let Ok(at) = guarded(|| f(&p.s, &p.v, &p.m)) else { return None };
    for (g, &k) in grad.iter().zip(&order) {
        let scale = p.get(k).abs().max(1.0);
        let (h1, h2) = (STEPS.0 * scale, STEPS.1 * scale);
        let (Some((d1, m1)), Some((d2, _))) = (difference(f, p, k, h1, at), difference(f, p, k, h2, at)) else {
            continue;
        };
        // The differences agree (to their own truncation and rounding): the function is
        // smooth here, and `d1` is its derivative to about 1e-9.
        let noise = 1e-13 * m1 / h1;
        if (d1 - d2).abs() > 1e-4 * d1.abs().max(1.0) + 100.0 * noise {
            continue;
        }
        if !g.is_finite() {
            return Some(Report::new(
                Outcome::Nan,
                format!("{what}: coordinate {k}: gradient {g:e}, finite differences {d1:e} and {d2:e}"),
            ));
        }
        if (g - d1).abs() > 1e-5 * d1.abs().max(g.abs()).max(1.0) + 1000.0 * noise {
            return Some(Report::new(
                Outcome::Wrong,
                format!("{what}: coordinate {k}: gradient {g:e}, finite differences {d1:e} and {d2:e}"),
            ));
        }
    }
    None
}

fn same(a: f64, b: f64) -> bool {
    a == b || (a.is_nan() && b.is_nan()) || (a - b).abs() <= 1e-9 * a.abs().max(b.abs()).max(1e-300)
}

/// Check one program at one input point (`case` seeds the point).
pub fn check(
    layout: &[P],
    case: u64,
    value: Value,
    gradient: Gradient,
    both: Both,
    second: Option<(Value, Gradient)>,
) -> Report {
    let mut rng = Rng(case);
    // A point where the function is finite (a few tries).
    let mut point = None;
    for _ in 0..4 {
        let p = Point::draw(layout, &mut rng);
        match guarded(|| value(&p.s, &p.v, &p.m)) {
            Err(msg) => return Report::new(Outcome::Skipped, format!("the plain function panicked: {msg}")),
            Ok(y) if y.is_finite() => {
                point = Some((p, y));
                break;
            }
            Ok(_) => {}
        }
    }
    let Some((p, y)) = point else {
        return Report::new(Outcome::Skipped, "no input point with a finite value");
    };
    let g = match guarded(|| gradient(&p.s, &p.v, &p.m)) {
        Ok(g) => g,
        Err(msg) => return Report::new(Outcome::Panic, format!("grad! panicked: {msg}")),
    };
    let (v2, g2) = match guarded(|| both(&p.s, &p.v, &p.m)) {
        Ok(r) => r,
        Err(msg) => return Report::new(Outcome::Panic, format!("value_and_grad! panicked: {msg}")),
    };
    if !same(v2, y) {
        return Report::new(Outcome::Wrong, format!("value_and_grad! value {v2:e}, f {y:e}"));
    }
    if g2.len() != g.len() || g.iter().zip(&g2).any(|(a, b)| !same(*a, *b)) {
        return Report::new(Outcome::Wrong, format!("value_and_grad! gradient {g2:?}, grad! {g:?}"));
    }
    if let Some(r) = compare("grad!(f)", value, &g, &p, layout) {
        return r;
    }
    if let Some((d, dg)) = second {
        match guarded(|| d(&p.s, &p.v, &p.m)) {
            Ok(v) if v.is_finite() => {}
            Ok(_) => return Report::new(Outcome::Passed, "second order not judged: d_f is not finite"),
            Err(msg) => return Report::new(Outcome::Panic, format!("d_f (grad! inside) panicked: {msg}")),
        }
        let h = match guarded(|| dg(&p.s, &p.v, &p.m)) {
            Ok(h) => h,
            Err(msg) => return Report::new(Outcome::Panic, format!("grad!(d_f) panicked: {msg}")),
        };
        if let Some(r) = compare("grad!(d_f)", d, &h, &p, layout) {
            return r;
        }
    }
    Report::new(Outcome::Passed, "")
}

/// Run one program's check, turning a panic of the check itself into a report.
pub fn run(f: impl FnOnce() -> Report) -> Report {
    guarded(f).unwrap_or_else(|msg| Report::new(Outcome::Panic, format!("the check panicked: {msg}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn f(s: &[f64], v: &[Vec<f64>], _: &[Vec<Vec<f64>>]) -> f64 {
        s[0] * s[0] + v[0].iter().map(|x| x.sin()).sum::<f64>()
    }

    fn grad_f(s: &[f64], v: &[Vec<f64>], _: &[Vec<Vec<f64>>]) -> Vec<f64> {
        let mut g = vec![2.0 * s[0]];
        g.extend(v[0].iter().map(|x| x.cos()));
        g
    }

    const LAYOUT: [P; 2] = [P::Scalar, P::Slice];

    type Gf = fn(&[f64], &[Vec<f64>], &[Vec<Vec<f64>>]) -> Vec<f64>;

    #[allow(clippy::type_complexity)]
    fn both_from(g: Gf) -> impl Fn(&[f64], &[Vec<f64>], &[Vec<Vec<f64>>]) -> (f64, Vec<f64>) {
        move |s, v, m| (f(s, v, m), g(s, v, m))
    }

    #[test]
    fn a_right_gradient_passes() {
        let r = check(&LAYOUT, 1, &f, &grad_f, &both_from(grad_f), Some((&f, &grad_f)));
        assert_eq!(r.outcome, Outcome::Passed, "{}", r.detail);
    }

    #[test]
    fn a_wrong_gradient_is_reported() {
        let wrong = |s: &[f64], v: &[Vec<f64>], m: &[Vec<Vec<f64>>]| {
            let mut g = grad_f(s, v, m);
            g[2] += 0.01;
            g
        };
        let r = check(
            &LAYOUT,
            1,
            &f,
            &wrong,
            &move |s: &[f64], v: &[Vec<f64>], m: &[Vec<Vec<f64>>]| (f(s, v, m), wrong(s, v, m)),
            None,
        );
        assert_eq!(r.outcome, Outcome::Wrong, "{}", r.detail);
    }

    #[test]
    fn nan_where_differences_are_finite_is_reported() {
        let nan = |s: &[f64], v: &[Vec<f64>], m: &[Vec<Vec<f64>>]| {
            let mut g = grad_f(s, v, m);
            g[0] = f64::NAN;
            g
        };
        let r = check(
            &LAYOUT,
            2,
            &f,
            &nan,
            &move |s: &[f64], v: &[Vec<f64>], m: &[Vec<Vec<f64>>]| (f(s, v, m), nan(s, v, m)),
            None,
        );
        assert_eq!(r.outcome, Outcome::Nan, "{}", r.detail);
    }

    #[test]
    fn a_panic_is_reported() {
        install_hook();
        let boom = |_: &[f64], _: &[Vec<f64>], _: &[Vec<Vec<f64>>]| -> Vec<f64> { panic!("tape underflow") };
        let r = check(&LAYOUT, 3, &f, &boom, &both_from(grad_f), None);
        assert_eq!(r.outcome, Outcome::Panic);
        assert!(r.detail.contains("tape underflow"), "{}", r.detail);
    }

    /// A jump within the large step of the point: the two step sizes disagree, so the
    /// coordinate is not judged; a kink within the small step likewise.
    #[test]
    fn kinks_and_branch_switches_are_not_judged() {
        let layout = [P::Scalar];
        let step = |s: &[f64], _: &[Vec<f64>], _: &[Vec<Vec<f64>>]| if s[0] > 0.3 { 1.0 } else { 0.0 };
        let p = Point { s: vec![0.3 - 5e-4], v: vec![], m: vec![] };
        assert!(compare("step", &step, &[0.0], &p, &layout).is_none());
        let kink = |s: &[f64], _: &[Vec<f64>], _: &[Vec<Vec<f64>>]| (s[0] - 0.3).abs();
        let p = Point { s: vec![0.3 + 3e-6], v: vec![], m: vec![] };
        assert!(compare("kink", &kink, &[1.0], &p, &layout).is_none());
        // Away from the kink the gradient is judged.
        let p = Point { s: vec![0.5], v: vec![], m: vec![] };
        assert!(compare("kink", &kink, &[-1.0], &p, &layout).is_some());
        assert!(compare("kink", &kink, &[1.0], &p, &layout).is_none());
    }

    /// The point alone on another branch (a condition that flips at every scale, as
    /// `sin` of a huge argument): both step sizes see the neighbours' branch and agree
    /// on its slope, which is not the derivative at the point (fuzz campaign 0x2000,
    /// program 1737).
    #[test]
    fn a_point_alone_on_its_branch_is_not_judged() {
        let layout = [P::Scalar];
        let isolated = |s: &[f64], _: &[Vec<f64>], _: &[Vec<Vec<f64>>]| if s[0] == 0.25 { 0.3 } else { 200.0 * s[0] };
        let p = Point { s: vec![0.25], v: vec![], m: vec![] };
        assert!(compare("isolated", &isolated, &[0.0], &p, &layout).is_none());
        let p = Point { s: vec![0.5], v: vec![], m: vec![] };
        assert!(compare("isolated", &isolated, &[0.0], &p, &layout).is_some());
    }

    /// A step function of a fast-moving value (`ceil` of a number near 10⁹, which
    /// moves by thousands over a step): its gradient 0 is right almost everywhere, and
    /// the differences, which see the slope of what it rounds, do not judge it (fuzz
    /// campaign 0x2700, program 265). A smooth function still is judged.
    #[test]
    fn a_step_function_of_a_fast_value_is_not_judged() {
        let layout = [P::Scalar];
        let steps = |s: &[f64], _: &[Vec<f64>], _: &[Vec<Vec<f64>>]| (1.7531e9 * s[0] + 0.3).ceil();
        let p = Point { s: vec![0.7], v: vec![], m: vec![] };
        assert!(compare("steps", &steps, &[0.0], &p, &layout).is_none());
        let smooth = |s: &[f64], _: &[Vec<f64>], _: &[Vec<Vec<f64>>]| 1.7531e9 * s[0] + 0.3;
        assert!(compare("smooth", &smooth, &[0.0], &p, &layout).is_some());
    }

    #[test]
    fn value_and_grad_must_agree() {
        let off = |s: &[f64], v: &[Vec<f64>], m: &[Vec<Vec<f64>>]| (f(s, v, m) + 1e-3, grad_f(s, v, m));
        let r = check(&LAYOUT, 4, &f, &grad_f, &off, None);
        assert_eq!(r.outcome, Outcome::Wrong, "{}", r.detail);
    }

    /// A buffer of rows between a scalar and a slice: its coordinates come after the
    /// slices', and the gradient lists them where the parameter stands, row by row.
    #[test]
    fn rows_are_checked_in_parameter_order() {
        let layout = [P::Scalar, P::Rows, P::Slice];
        let value = |s: &[f64], v: &[Vec<f64>], m: &[Vec<Vec<f64>>]| {
            s[0] * m[0][0][1] + m[0].iter().flatten().map(|e| e * e).sum::<f64>() + v[0][2].sin()
        };
        let gradient = |s: &[f64], v: &[Vec<f64>], m: &[Vec<Vec<f64>>]| {
            let mut g = vec![m[0][0][1]];
            let mut rows: Vec<Vec<f64>> = m[0].iter().map(|r| r.iter().map(|e| 2.0 * e).collect()).collect();
            rows[0][1] += s[0];
            g.extend(rows.into_iter().flatten());
            g.extend((0..v[0].len()).map(|i| if i == 2 { v[0][2].cos() } else { 0.0 }));
            g
        };
        let both = |s: &[f64], v: &[Vec<f64>], m: &[Vec<Vec<f64>>]| (value(s, v, m), gradient(s, v, m));
        for case in 0..4 {
            let r = check(&layout, case, &value, &gradient, &both, None);
            assert_eq!(r.outcome, Outcome::Passed, "{}", r.detail);
        }
        let off = |s: &[f64], v: &[Vec<f64>], m: &[Vec<Vec<f64>>]| {
            let mut g = gradient(s, v, m);
            g[2] += 0.5;
            g
        };
        let both = |s: &[f64], v: &[Vec<f64>], m: &[Vec<Vec<f64>>]| (value(s, v, m), off(s, v, m));
        assert_eq!(check(&layout, 1, &value, &off, &both, None).outcome, Outcome::Wrong);
    }
}
