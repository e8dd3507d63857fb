//! Every differentiable float method, operator and cast: the gradient against central
//! finite differences and against the analytic derivative, the second derivative by
//! nesting (`grad!` of a function returning `grad!(f)(x)`) against finite differences of
//! the first derivative and the analytic formula, and the `f32` version.
//!
//! Each primitive gets a module holding `f` (the primitive alone), `d` (its derivative,
//! itself differentiable), `single` (the `f32` version) and one property test.

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

mod common;

use adjoint::prelude::*;
use common::*;
use proptest::prelude::*;

/// A unary primitive: `f(x) = body`, with its first and second derivatives.
macro_rules! unary {
    ($m:ident: $x:ident in $dom:expr => $body:expr; d1 = $d1:expr; d2 = $d2:expr $(;)?) => {
        mod $m {
            use super::*;

            #[differentiable]
            pub fn f($x: f64) -> f64 {
                $body
            }

            #[differentiable]
            pub fn d($x: f64) -> f64 {
                grad!(f)($x)
            }

            #[differentiable]
            pub fn single($x: f32) -> f32 {
                $body
            }

            proptest! {
                #![proptest_config(config())]
                #[test]
                fn rule($x in $dom) {
                    let x0: f64 = $x;
                    let want1: f64 = $d1;
                    let want2: f64 = $d2;

                    let g: f64 = grad!(f)(x0);
                    check(&format!("{}'({x0}) vs finite differences", stringify!($m)), g, fd(f, x0), FD)?;
                    check(&format!("{}'({x0}) vs analytic", stringify!($m)), g, want1, EXACT)?;
                    let (v, g2) = value_and_grad!(f)(x0);
                    check(&format!("value of {}({x0})", stringify!($m)), v, f(x0), EXACT)?;
                    prop_assert_eq!(g2, g);
                    check(&format!("vjp of {}({x0})", stringify!($m)), vjp!(f)(x0, -2.5), -2.5 * g, EXACT)?;

                    let gg: f64 = grad!(d)(x0);
                    check(&format!("{}''({x0}) vs finite differences of the first derivative", stringify!($m)), gg, fd(d, x0), FD2)?;
                    check(&format!("{}''({x0}) vs analytic", stringify!($m)), gg, want2, EXACT2)?;

                    let xs = x0 as f32;
                    let g32: f32 = grad!(single)(xs);
                    let want32 = {
                        #[allow(unused_variables)]
                        let $x: f64 = xs as f64;
                        $d1
                    };
                    check(&format!("f32 {}'({xs}) vs analytic", stringify!($m)), g32 as f64, want32, F32)?;
                }
            }
        }
    };
}

/// A binary primitive `f(x, y) = body` with both partials; the Hessian comes from
/// nesting and is compared with finite differences (and checked to be symmetric).
macro_rules! binary {
    ($m:ident: ($x:ident, $y:ident) in $dom:expr => $body:expr; dx = $dx:expr; dy = $dy:expr $(;)?) => {
        mod $m {
            use super::*;

            #[differentiable]
            pub fn f($x: f64, $y: f64) -> f64 {
                $body
            }

            #[differentiable]
            pub fn dx($x: f64, $y: f64) -> f64 {
                let (gx, _gy) = grad!(f)($x, $y);
                gx
            }

            #[differentiable]
            pub fn dy($x: f64, $y: f64) -> f64 {
                let (_gx, gy) = grad!(f)($x, $y);
                gy
            }

            #[differentiable]
            pub fn single($x: f32, $y: f32) -> f32 {
                $body
            }

            proptest! {
                #![proptest_config(config())]
                #[test]
                fn rule(($x, $y) in $dom) {
                    let (x0, y0): (f64, f64) = ($x, $y);
                    let want_x: f64 = $dx;
                    let want_y: f64 = $dy;
                    let at = format!("{}({x0}, {y0})", stringify!($m));

                    let (gx, gy): (f64, f64) = grad!(f)(x0, y0);
                    let (fx, fy) = fd2(f, x0, y0);
                    check(&format!("d/dx {at} vs finite differences"), gx, fx, FD)?;
                    check(&format!("d/dy {at} vs finite differences"), gy, fy, FD)?;
                    check(&format!("d/dx {at} vs analytic"), gx, want_x, EXACT)?;
                    check(&format!("d/dy {at} vs analytic"), gy, want_y, EXACT)?;

                    let (hxx, hxy) = grad!(dx)(x0, y0);
                    let (hyx, hyy) = grad!(dy)(x0, y0);
                    let (fxx, fxy) = fd2(dx, x0, y0);
                    let (fyx, fyy) = fd2(dy, x0, y0);
                    check(&format!("d2/dx2 {at}"), hxx, fxx, FD2)?;
                    check(&format!("d2/dxdy {at}"), hxy, fxy, FD2)?;
                    check(&format!("d2/dydx {at}"), hyx, fyx, FD2)?;
                    check(&format!("d2/dy2 {at}"), hyy, fyy, FD2)?;
                    check(&format!("Hessian symmetry {at}"), hxy, hyx, EXACT2)?;

                    let (xs, ys) = (x0 as f32, y0 as f32);
                    let (g32x, g32y): (f32, f32) = grad!(single)(xs, ys);
                    let (want32x, want32y) = {
                        #[allow(unused_variables)]
                        let ($x, $y): (f64, f64) = (xs as f64, ys as f64);
                        ($dx, $dy)
                    };
                    check(&format!("f32 d/dx {at}"), g32x as f64, want32x, F32)?;
                    check(&format!("f32 d/dy {at}"), g32y as f64, want32y, F32)?;
                }
            }
        }
    };
}

// ------------------------------------------------------------------ unary methods

unary!(sqrt: x in 0.01..50.0 => x.sqrt(); d1 = 0.5 / x.sqrt(); d2 = -0.25 / (x * x.sqrt()));
unary!(cbrt: x in magnitude(0.01, 50.0) => x.cbrt();
    d1 = 1.0 / (3.0 * x.cbrt() * x.cbrt());
    d2 = -2.0 / (9.0 * x * x.cbrt() * x.cbrt()));
unary!(exp: x in -5.0..5.0 => x.exp(); d1 = x.exp(); d2 = x.exp());
unary!(exp2: x in -5.0..5.0 => x.exp2();
    d1 = x.exp2() * std::f64::consts::LN_2;
    d2 = x.exp2() * std::f64::consts::LN_2 * std::f64::consts::LN_2);
unary!(exp_m1: x in -5.0..5.0 => x.exp_m1(); d1 = x.exp(); d2 = x.exp());
unary!(ln: x in 0.01..50.0 => x.ln(); d1 = 1.0 / x; d2 = -1.0 / (x * x));
unary!(ln_1p: x in -0.9..50.0 => x.ln_1p(); d1 = 1.0 / (1.0 + x); d2 = -1.0 / ((1.0 + x) * (1.0 + x)));
unary!(log10: x in 0.01..50.0 => x.log10();
    d1 = 1.0 / (x * std::f64::consts::LN_10);
    d2 = -1.0 / (x * x * std::f64::consts::LN_10));
unary!(log2: x in 0.01..50.0 => x.log2();
    d1 = 1.0 / (x * std::f64::consts::LN_2);
    d2 = -1.0 / (x * x * std::f64::consts::LN_2));
unary!(sin: x in -10.0..10.0 => x.sin(); d1 = x.cos(); d2 = -x.sin());
unary!(cos: x in -10.0..10.0 => x.cos(); d1 = -x.sin(); d2 = -x.cos());
unary!(tan: x in -1.4..1.4 => x.tan();
    d1 = 1.0 / (x.cos() * x.cos());
    d2 = 2.0 * x.tan() / (x.cos() * x.cos()));
unary!(asin: x in -0.95..0.95 => x.asin();
    d1 = 1.0 / (1.0 - x * x).sqrt();
    d2 = x / (1.0 - x * x).powf(1.5));
unary!(acos: x in -0.95..0.95 => x.acos();
    d1 = -1.0 / (1.0 - x * x).sqrt();
    d2 = -x / (1.0 - x * x).powf(1.5));
unary!(atan: x in -20.0..20.0 => x.atan();
    d1 = 1.0 / (1.0 + x * x);
    d2 = -2.0 * x / ((1.0 + x * x) * (1.0 + x * x)));
unary!(sinh: x in -5.0..5.0 => x.sinh(); d1 = x.cosh(); d2 = x.sinh());
unary!(cosh: x in -5.0..5.0 => x.cosh(); d1 = x.sinh(); d2 = x.cosh());
unary!(tanh: x in -5.0..5.0 => x.tanh();
    d1 = 1.0 / (x.cosh() * x.cosh());
    d2 = -2.0 * x.tanh() / (x.cosh() * x.cosh()));
unary!(asinh: x in -20.0..20.0 => x.asinh();
    d1 = 1.0 / (x * x + 1.0).sqrt();
    d2 = -x / (x * x + 1.0).powf(1.5));
unary!(acosh: x in 1.05..50.0 => x.acosh();
    d1 = 1.0 / (x * x - 1.0).sqrt();
    d2 = -x / (x * x - 1.0).powf(1.5));
unary!(atanh: x in -0.95..0.95 => x.atanh();
    d1 = 1.0 / (1.0 - x * x);
    d2 = 2.0 * x / ((1.0 - x * x) * (1.0 - x * x)));
unary!(abs: x in magnitude(0.01, 10.0) => x.abs(); d1 = x.signum(); d2 = 0.0);
unary!(recip: x in magnitude(0.1, 10.0) => x.recip(); d1 = -1.0 / (x * x); d2 = 2.0 / (x * x * x));
unary!(to_degrees: x in -10.0..10.0 => x.to_degrees(); d1 = 180.0 / std::f64::consts::PI; d2 = 0.0);
unary!(to_radians: x in -500.0..500.0 => x.to_radians(); d1 = std::f64::consts::PI / 180.0; d2 = 0.0);
unary!(fract: x in non_integer(-10.0, 10.0, 0.01) => x.fract(); d1 = 1.0; d2 = 0.0);

// Operators as unary primitives.
unary!(neg: x in -10.0..10.0 => -x; d1 = -1.0; d2 = 0.0);
unary!(double_neg: x in -10.0..10.0 => -(-x) * -x; d1 = -2.0 * x; d2 = -2.0);
unary!(operators_with_constants: x in magnitude(0.2, 5.0) =>
    3.0 * x + 2.0 / x - (1.0 - x) + x / 4.0 - (-x) + x * x - 0.5 + (x - 1.5);
    d1 = 3.0 - 2.0 / (x * x) + 1.0 + 0.25 + 1.0 + 2.0 * x + 1.0;
    d2 = 4.0 / (x * x * x) + 2.0);
unary!(rem_constant: x in (-10.0..10.0f64).prop_filter("x / 2.5 near an integer", |x| {
        let q = x / 2.5;
        (q - q.round()).abs() > 0.01
    }) => (x % 2.5) * 2.0 + x;
    d1 = 3.0;
    d2 = 0.0);
unary!(rem_constant_lhs: x in (0.5..5.0f64).prop_filter("7.5 / x near an integer", |x| {
        let q = 7.5 / x;
        (q - q.round()).abs() > 0.01
    }) => 7.5 % x;
    d1 = -(7.5 / x).trunc();
    d2 = 0.0);

// ------------------------------------------------------------------ powi (integer exponent)

mod powi {
    use super::*;

    #[differentiable]
    pub fn f(x: f64, n: i32) -> f64 {
        x.powi(n)
    }

    #[differentiable]
    pub fn d(x: f64, n: i32) -> f64 {
        grad!(f)(x, n)
    }

    #[differentiable]
    pub fn single(x: f32, n: i32) -> f32 {
        x.powi(n)
    }

    /// Literal exponents, as usually written.
    #[differentiable]
    pub fn literals(x: f64) -> f64 {
        x.powi(2) + x.powi(3) - x.powi(-1) + x.powi(0) + x.powi(1)
    }

    proptest! {
        #![proptest_config(config())]
        #[test]
        fn rule(x in magnitude(0.1, 3.0), n in -3i32..=5) {
            let nf = n as f64;
            let g: f64 = grad!(f)(x, n);
            check(&format!("powi'({x}, {n}) vs finite differences"), g, fd(|t| f(t, n), x), FD)?;
            let want = if n == 0 { 0.0 } else { nf * x.powi(n - 1) };
            check(&format!("powi'({x}, {n}) vs analytic"), g, want, EXACT)?;

            let gg: f64 = grad!(d)(x, n);
            check(&format!("powi''({x}, {n}) vs finite differences"), gg, fd(|t| d(t, n), x), FD2)?;
            let want2 = if n == 0 || n == 1 { 0.0 } else { nf * (nf - 1.0) * x.powi(n - 2) };
            check(&format!("powi''({x}, {n}) vs analytic"), gg, want2, EXACT2)?;

            let xs = x as f32;
            let g32: f32 = grad!(single)(xs, n);
            let want32 = if n == 0 { 0.0 } else { nf * (xs as f64).powi(n - 1) };
            check(&format!("f32 powi'({xs}, {n})"), g32 as f64, want32, F32)?;

            let gl: f64 = grad!(literals)(x);
            let want_l = 2.0 * x + 3.0 * x * x + 1.0 / (x * x) + 1.0;
            check(&format!("literal exponents at {x}"), gl, want_l, EXACT)?;
            check(&format!("literal exponents at {x} vs finite differences"), gl, fd(literals, x), FD)?;
        }
    }
}

// ------------------------------------------------------------------ binary methods and operators

fn atan2_domain() -> impl Strategy<Value = (f64, f64)> {
    // Away from the origin and from the branch cut (a = 0, b < 0).
    (-5.0..5.0f64, -5.0..5.0f64)
        .prop_filter("near the origin or the branch cut", |(a, b)| a.hypot(*b) > 0.2 && !(*b < 0.0 && a.abs() < 0.1))
}

binary!(powf: (x, p) in (0.1..5.0f64, -3.0..3.0f64) => x.powf(p);
    dx = p * x.powf(p - 1.0);
    dy = x.powf(p) * x.ln());
binary!(atan2: (a, b) in atan2_domain() => a.atan2(b);
    dx = b / (a * a + b * b);
    dy = -a / (a * a + b * b));
binary!(hypot: (a, b) in (-5.0..5.0f64, -5.0..5.0f64).prop_filter("near the origin", |(a, b)| a.hypot(*b) > 0.2)
    => a.hypot(b);
    dx = a / a.hypot(b);
    dy = b / a.hypot(b));
binary!(max: (a, b) in (-5.0..5.0f64, -5.0..5.0f64).prop_filter("a tie", |(a, b)| (a - b).abs() > 0.01)
    => a.max(b);
    dx = if a > b { 1.0 } else { 0.0 };
    dy = if b > a { 1.0 } else { 0.0 });
binary!(min: (a, b) in (-5.0..5.0f64, -5.0..5.0f64).prop_filter("a tie", |(a, b)| (a - b).abs() > 0.01)
    => a.min(b);
    dx = if a < b { 1.0 } else { 0.0 };
    dy = if b < a { 1.0 } else { 0.0 });
binary!(add: (a, b) in (-10.0..10.0f64, -10.0..10.0f64) => a + b; dx = 1.0; dy = 1.0);
binary!(sub: (a, b) in (-10.0..10.0f64, -10.0..10.0f64) => a - b; dx = 1.0; dy = -1.0);
binary!(mul: (a, b) in (-10.0..10.0f64, -10.0..10.0f64) => a * b; dx = b; dy = a);
binary!(div: (a, b) in (-10.0..10.0f64, magnitude(0.2, 10.0)) => a / b; dx = 1.0 / b; dy = -a / (b * b));
binary!(rem: (a, b) in (-10.0..10.0f64, magnitude(0.5, 5.0)).prop_filter("a / b near an integer", |(a, b)| {
        let q = a / b;
        (q - q.round()).abs() > 0.01 && q.abs() > 0.01
    }) => a % b;
    dx = 1.0;
    dy = -(a / b).trunc());
// Operators mixed, so that the second derivatives are not all zero.
binary!(mixed_ops: (a, b) in (-3.0..3.0f64, magnitude(0.3, 3.0)) => (a * b - a / b) * (a + b) - (-a) * b;
    dx = (b - 1.0 / b) * (a + b) + (a * b - a / b) + b;
    dy = (a + a / (b * b)) * (a + b) + (a * b - a / b) + a);

// ------------------------------------------------------------------ ternary methods

mod mul_add {
    use super::*;

    #[differentiable]
    pub fn f(x: f64, a: f64, b: f64) -> f64 {
        x.mul_add(a, b)
    }

    /// ∂f/∂x = a, whose gradient is (0, 1, 0).
    #[differentiable]
    pub fn dx(x: f64, a: f64, b: f64) -> f64 {
        let (gx, _ga, _gb) = grad!(f)(x, a, b);
        gx
    }

    /// A nonlinear use, so the second derivative is not trivial.
    #[differentiable]
    pub fn squared(x: f64, a: f64, b: f64) -> f64 {
        let y = x.mul_add(a, b);
        y * y
    }

    #[differentiable]
    pub fn squared_dx(x: f64, a: f64, b: f64) -> f64 {
        let (gx, _ga, _gb) = grad!(squared)(x, a, b);
        gx
    }

    #[differentiable]
    pub fn single(x: f32, a: f32, b: f32) -> f32 {
        x.mul_add(a, b)
    }

    proptest! {
        #![proptest_config(config())]
        #[test]
        fn rule(x in -5.0..5.0f64, a in -5.0..5.0f64, b in -5.0..5.0f64) {
            let (gx, ga, gb) = grad!(f)(x, a, b);
            let (fx, fa, fb) = fd3(f, x, a, b);
            check("mul_add d/dx", gx, fx, FD)?;
            check("mul_add d/da", ga, fa, FD)?;
            check("mul_add d/db", gb, fb, FD)?;
            check("mul_add d/dx analytic", gx, a, EXACT)?;
            check("mul_add d/da analytic", ga, x, EXACT)?;
            check("mul_add d/db analytic", gb, 1.0, EXACT)?;

            let (hxx, hxa, hxb) = grad!(dx)(x, a, b);
            check("mul_add d2/dx2", hxx, 0.0, EXACT)?;
            check("mul_add d2/dxda", hxa, 1.0, EXACT)?;
            check("mul_add d2/dxdb", hxb, 0.0, EXACT)?;

            let y = x.mul_add(a, b);
            let (sx, sa, sb) = grad!(squared)(x, a, b);
            check("(x*a+b)^2 d/dx", sx, 2.0 * y * a, EXACT)?;
            check("(x*a+b)^2 d/da", sa, 2.0 * y * x, EXACT)?;
            check("(x*a+b)^2 d/db", sb, 2.0 * y, EXACT)?;
            let (qxx, qxa, qxb) = grad!(squared_dx)(x, a, b);
            let (fxx, fxa, fxb) = fd3(squared_dx, x, a, b);
            check("(x*a+b)^2 d2/dx2", qxx, fxx, FD2)?;
            check("(x*a+b)^2 d2/dxda", qxa, fxa, FD2)?;
            check("(x*a+b)^2 d2/dxdb", qxb, fxb, FD2)?;
            check("(x*a+b)^2 d2/dx2 analytic", qxx, 2.0 * a * a, EXACT2)?;
            check("(x*a+b)^2 d2/dxda analytic", qxa, 2.0 * y + 2.0 * a * x, EXACT2)?;
            check("(x*a+b)^2 d2/dxdb analytic", qxb, 2.0 * a, EXACT2)?;

            let (g32x, g32a, g32b) = grad!(single)(x as f32, a as f32, b as f32);
            check("f32 mul_add d/dx", g32x as f64, (a as f32) as f64, F32)?;
            check("f32 mul_add d/da", g32a as f64, (x as f32) as f64, F32)?;
            check("f32 mul_add d/db", g32b as f64, 1.0, F32)?;
        }
    }
}

mod clamp {
    use super::*;

    #[differentiable]
    pub fn f(x: f64, lo: f64, hi: f64) -> f64 {
        x.clamp(lo, hi)
    }

    /// Nonlinear around the clamp, so the second derivative is not trivial.
    #[differentiable]
    pub fn g(x: f64, lo: f64, hi: f64) -> f64 {
        let c = (x * x).clamp(lo, hi);
        c * c.sin()
    }

    #[differentiable]
    pub fn dg(x: f64, lo: f64, hi: f64) -> f64 {
        let (gx, _glo, _ghi) = grad!(g)(x, lo, hi);
        gx
    }

    #[differentiable]
    pub fn single(x: f32, lo: f32, hi: f32) -> f32 {
        x.clamp(lo, hi)
    }

    fn domain() -> impl Strategy<Value = (f64, f64, f64)> {
        (-5.0..5.0f64, -3.0..3.0f64, 0.2..3.0f64)
            .prop_map(|(x, lo, width)| (x, lo, lo + width))
            .prop_filter("x at a bound", |(x, lo, hi)| (x - lo).abs() > 0.01 && (x - hi).abs() > 0.01)
    }

    proptest! {
        #![proptest_config(config())]
        #[test]
        fn rule((x, lo, hi) in domain()) {
            let at = format!("clamp({x}, {lo}, {hi})");
            let (gx, glo, ghi) = grad!(f)(x, lo, hi);
            let (fx, flo, fhi) = fd3(f, x, lo, hi);
            check(&format!("{at} d/dx"), gx, fx, FD)?;
            check(&format!("{at} d/dlo"), glo, flo, FD)?;
            check(&format!("{at} d/dhi"), ghi, fhi, FD)?;
            let inside = lo < x && x < hi;
            check(&format!("{at} d/dx analytic"), gx, if inside { 1.0 } else { 0.0 }, EXACT)?;
            check(&format!("{at} d/dlo analytic"), glo, if x < lo { 1.0 } else { 0.0 }, EXACT)?;
            check(&format!("{at} d/dhi analytic"), ghi, if x > hi { 1.0 } else { 0.0 }, EXACT)?;

            let (g32x, g32lo, g32hi) = grad!(single)(x as f32, lo as f32, hi as f32);
            check(&format!("f32 {at}"), (g32x + g32lo + g32hi) as f64, 1.0, F32)?;
        }

        #[test]
        fn nested(x in -2.0..2.0f64, lo in 0.1..1.0f64, width in 0.5..2.0f64) {
            let hi = lo + width;
            let s = x * x;
            prop_assume!((s - lo).abs() > 0.01 && (s - hi).abs() > 0.01);
            let at = format!("clamp(x^2)*sin at ({x}, {lo}, {hi})");
            let (gx, glo, ghi) = grad!(g)(x, lo, hi);
            let (fx, flo, fhi) = fd3(g, x, lo, hi);
            check(&format!("{at} d/dx"), gx, fx, FD)?;
            check(&format!("{at} d/dlo"), glo, flo, FD)?;
            check(&format!("{at} d/dhi"), ghi, fhi, FD)?;
            let (hxx, hxlo, hxhi) = grad!(dg)(x, lo, hi);
            let (fxx, fxlo, fxhi) = fd3(dg, x, lo, hi);
            check(&format!("{at} d2/dx2"), hxx, fxx, FD2)?;
            check(&format!("{at} d2/dxdlo"), hxlo, fxlo, FD2)?;
            check(&format!("{at} d2/dxdhi"), hxhi, fxhi, FD2)?;
        }
    }
}

// ------------------------------------------------------------------ casts between f32 and f64

mod casts {
    use super::*;

    /// f32 → f64.
    #[differentiable]
    pub fn up(x: f32) -> f64 {
        let y = x as f64;
        y.sin() * y
    }

    /// f64 → f32.
    #[differentiable]
    pub fn down(x: f64) -> f32 {
        let y = x as f32;
        y * y.cos()
    }

    /// f64 → f32 → f64, mixed with the original.
    #[differentiable]
    pub fn round_trip(x: f64) -> f64 {
        let y = (x as f32) as f64;
        y * x + (x as f64).exp()
    }

    /// f32 → f32 and an integer cast to a float (inactive).
    #[differentiable]
    pub fn same_type(x: f32, n: i32) -> f32 {
        (x as f32) * (n as f32) + x * x
    }

    #[differentiable]
    pub fn d_up(x: f32) -> f64 {
        grad!(up)(x) as f64
    }

    #[differentiable]
    pub fn d_round_trip(x: f64) -> f64 {
        grad!(round_trip)(x)
    }

    proptest! {
        #![proptest_config(config())]
        #[test]
        fn rule(x in -3.0..3.0f64, n in -5i32..5) {
            let xs = x as f32;
            let y = xs as f64;
            let g_up: f32 = grad!(up)(xs);
            check(&format!("f32 -> f64 at {xs}"), g_up as f64, y.cos() * y + y.sin(), F32)?;
            check(&format!("f32 -> f64 at {xs} vs finite differences"), g_up as f64,
                fd_f32(|t| up(t) as f32, xs), F32_FD)?;

            let g_down: f64 = grad!(down)(x);
            let y = (x as f32) as f64;
            check(&format!("f64 -> f32 at {x}"), g_down, y.cos() - y * y.sin(), F32)?;

            let g_rt: f64 = grad!(round_trip)(x);
            check(&format!("f64 -> f32 -> f64 at {x}"), g_rt, (x as f32) as f64 + x + x.exp(), Tol { rel: 1e-6, abs: 1e-6 })?;

            let g_same: f32 = grad!(same_type)(xs, n);
            check(&format!("f32 as f32 at {xs}, n = {n}"), g_same as f64, n as f64 + 2.0 * xs as f64, F32)?;

            let gg_up: f32 = grad!(d_up)(xs);
            let y = xs as f64;
            check(&format!("second derivative through casts at {xs}"), gg_up as f64,
                2.0 * y.cos() - y * y.sin(), Tol { rel: 1e-4, abs: 1e-5 })?;
            let gg_rt: f64 = grad!(d_round_trip)(x);
            check(&format!("second derivative f64 -> f32 -> f64 at {x}"), gg_rt, 2.0 + x.exp(),
                Tol { rel: 1e-6, abs: 1e-6 })?;
        }
    }
}

// ------------------------------------------------------------------ piecewise-constant operations

mod piecewise_constant {
    use super::*;

    /// Only piecewise-constant operations: the gradient is zero.
    #[differentiable]
    pub fn steps(x: f64) -> f64 {
        x.floor() + x.ceil() + x.round() + x.trunc() + x.signum()
    }

    /// Piecewise-constant factors times smooth terms: only the smooth terms differentiate.
    #[differentiable]
    pub fn mixed(x: f64) -> f64 {
        x * x.floor() + x.sin() * x.round() + x.signum() * x.trunc() + x.ceil() * x * x
    }

    /// Casting to an integer is piecewise constant too.
    #[differentiable]
    pub fn int_cast(x: f64) -> f64 {
        let k = (x * 2.0) as i64;
        x * (k as f64)
    }

    #[differentiable]
    pub fn d_mixed(x: f64) -> f64 {
        grad!(mixed)(x)
    }

    #[differentiable]
    pub fn single(x: f32) -> f32 {
        x * x.floor() + x.round() + x.signum()
    }

    proptest! {
        #![proptest_config(config())]
        #[test]
        fn zero_gradient_away_from_jumps(x in non_integer(-10.0, 10.0, 0.01)) {
            // Also away from the jumps of `round` (half-integers) and `(2x) as i64`.
            prop_assume!(((x * 2.0) - (x * 2.0).round()).abs() > 0.02);
            let g: f64 = grad!(steps)(x);
            check(&format!("floor+ceil+round+trunc+signum at {x}"), g, 0.0, EXACT)?;
            check(&format!("floor+ceil+round+trunc+signum at {x} vs finite differences"), g, fd(steps, x), FD)?;

            let g: f64 = grad!(mixed)(x);
            let want = x.floor() + x.cos() * x.round() + x.signum() * 0.0 + x.ceil() * 2.0 * x;
            check(&format!("mixed at {x}"), g, want, EXACT)?;
            check(&format!("mixed at {x} vs finite differences"), g, fd(mixed, x), FD)?;
            let gg: f64 = grad!(d_mixed)(x);
            check(&format!("mixed'' at {x}"), gg, -x.sin() * x.round() + 2.0 * x.ceil(), EXACT2)?;

            let g: f64 = grad!(int_cast)(x);
            check(&format!("x * ((2x) as i64) at {x}"), g, ((x * 2.0) as i64) as f64, EXACT)?;

            let xs = x as f32;
            let g32: f32 = grad!(single)(xs);
            check(&format!("f32 at {xs}"), g32 as f64, xs.floor() as f64, F32)?;
        }
    }
}

// ------------------------------------------------------------------ edge cases of the rules

#[differentiable]
fn ties(x: f64) -> f64 {
    x.max(x) + x.min(x) * 3.0
}

#[differentiable]
fn power_at_zero(x: f64, p: f64) -> f64 {
    x.powf(p)
}

#[differentiable]
fn powi_zero_exponent(x: f64) -> f64 {
    x.powi(0) + x.powi(1)
}

#[differentiable]
fn abs_at_zero(x: f64) -> f64 {
    x.abs() + x.signum() + x
}

#[test]
fn edge_cases() {
    // A tie splits the gradient evenly between the operands of max/min.
    for x in [-1.0, 0.0, 2.5] {
        assert_close("max(x, x) + 3 min(x, x)", grad!(ties)(x), 4.0, EXACT);
    }
    // 0^p with p > 0: the base gradient is p 0^(p-1) and the exponent gradient is 0, not NaN.
    let (gx, gp) = grad!(power_at_zero)(0.0, 2.0);
    assert_eq!((gx, gp), (0.0, 0.0));
    let (gx, gp) = grad!(power_at_zero)(0.0, 3.5);
    assert_eq!((gx, gp), (0.0, 0.0));
    // x^0 has a zero derivative, also at 0.
    assert_eq!(grad!(powi_zero_exponent)(0.0), 1.0);
    assert_eq!(grad!(powi_zero_exponent)(2.0), 1.0);
    // |x| at 0 takes the zero subgradient; signum contributes nothing.
    assert_eq!(grad!(abs_at_zero)(0.0), 1.0);
    assert_eq!(grad!(abs_at_zero)(-2.0), 0.0);
    assert_eq!(grad!(abs_at_zero)(2.0), 2.0);
}
