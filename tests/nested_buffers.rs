//! Buffers of rows: `&[Vec<f64>]`, `Vec<Vec<f64>>`, `&[[f64; 3]]`, `[[f64; 2]; 4]` and `&[(f64, f64)]`
//! arguments (their gradient has the same nesting), rows read with `x[i][j]`, iterated
//! (`for r in x`, `x.iter().zip(…)`, `r.iter()`), local matrices `vec![vec![0.0; n]; m]`
//! written with `m[i][j] = …` / `+=`, rows pushed or collected from nested iterator
//! chains, and helpers returning `[f64; 2]` destructured by `let [x, y] = …`.

#![allow(clippy::needless_range_loop, clippy::useless_vec)]

mod common;

use adjoint::prelude::*;
use common::*;
use proptest::prelude::*;

/// Sum of squared distances of the rows to a centre, with the centre also differentiated.
#[differentiable(order = 2)]
fn spread(points: &[Vec<f64>], centre: &[f64]) -> f64 {
    let mut total = 0.0;
    for p in points {
        let d2: f64 = p.iter().zip(centre).map(|(a, c)| (a - c) * (a - c)).sum();
        total += d2.sqrt();
    }
    total + points[0][1] * points[points.len() - 1][0]
}

#[differentiable]
fn d_spread(points: &[Vec<f64>], centre: &[f64]) -> f64 {
    let (gp, gc) = grad!(spread)(points, centre);
    gp[0][0] + gc.iter().sum::<f64>()
}

/// A covariance matrix built by nested `collect`s, then the quadratic form wᵀΣw.
#[differentiable]
fn quadratic_form(samples: &[Vec<f64>], w: &[f64]) -> f64 {
    let n = samples.len() as f64;
    let k = w.len();
    let mean: Vec<f64> = (0..k).map(|j| samples.iter().map(|s| s[j]).sum::<f64>() / n).collect();
    let cov: Vec<Vec<f64>> = (0..k)
        .map(|i| (0..k).map(|j| samples.iter().map(|s| (s[i] - mean[i]) * (s[j] - mean[j])).sum::<f64>() / n).collect())
        .collect();
    w.iter().zip(&cov).map(|(wi, row)| wi * row.iter().zip(w).map(|(c, wj)| c * wj).sum::<f64>()).sum()
}

/// A local matrix written element by element, then read by rows.
#[differentiable(order = 2)]
fn kernel_sum(x: &[f64], scale: f64) -> f64 {
    let n = x.len();
    let mut k = vec![vec![0.0; n]; n];
    for i in 0..n {
        for j in 0..n {
            k[i][j] = (-(x[i] - x[j]) * (x[i] - x[j]) / scale).exp();
            k[i][j] += 0.1 * x[i] * x[i];
        }
    }
    let mut s = 0.0;
    for row in &k {
        s += row.iter().map(|v| v.sqrt()).sum::<f64>();
    }
    s + k[0][n - 1] * scale
}

#[differentiable]
fn d_kernel_sum(x: &[f64], scale: f64) -> f64 {
    grad!(kernel_sum)(x, scale).1
}

/// Rows pushed into a `Vec<Vec<f64>>`, then one row overwritten.
#[differentiable]
fn pushed_rows(x: &[f64]) -> f64 {
    let mut rows: Vec<Vec<f64>> = Vec::new();
    for i in 0..x.len() {
        let row: Vec<f64> = x.iter().map(|v| v * x[i]).collect();
        rows.push(row);
    }
    rows[0][0] = x[0].sin();
    rows.iter().map(|r| r.iter().sum::<f64>()).sum::<f64>() + rows[0][x.len() - 1]
}

/// Points as `[f64; 3]` rows: the perimeter of the polygon they make.
#[differentiable]
fn perimeter(pts: &[[f64; 3]]) -> f64 {
    let mut s = 0.0;
    for i in 0..pts.len() {
        let (a, b) = (pts[i], pts[(i + 1) % pts.len()]);
        s += ((a[0] - b[0]).powi(2) + (a[1] - b[1]).powi(2) + (a[2] - b[2]).powi(2)).sqrt();
    }
    s
}

/// The centroid of a quadrilateral `[[f64; 2]; 4]`, destructured by the caller.
#[differentiable]
fn centroid(quad: &[[f64; 2]; 4]) -> [f64; 2] {
    let mut c = [0.0; 2];
    for p in quad {
        c[0] += p[0] / 4.0;
        c[1] += p[1] / 4.0;
    }
    c
}

#[differentiable]
fn radius_sum(quad: &[[f64; 2]; 4]) -> f64 {
    let [cx, cy] = centroid(quad);
    quad.iter().map(|p| (p[0] - cx).hypot(p[1] - cy)).sum()
}

/// Pairs as tuples: `for &(x, y) in pts`, `let (a, b) = pts[0];`.
#[differentiable(order = 2)]
fn pair_products(pts: &[(f64, f64)], w: f64) -> f64 {
    let mut s = 0.0;
    for &(x, y) in pts {
        s += (x * y * w).sin();
    }
    let (a, b) = pts[0];
    s + a * b
}

#[differentiable]
fn d_pair_products(pts: &[(f64, f64)], w: f64) -> f64 {
    grad!(pair_products)(pts, w).1
}

/// Rows iterated the ways users write it: `m.iter().map(|row| …)`, `enumerate`,
/// `iter_mut()` over rows and over a row's entries (`*v /= s`), and `m[i].iter_mut()`.
#[differentiable(order = 2)]
fn row_chains(m: &[Vec<f64>], v: &[f64]) -> f64 {
    let y: Vec<f64> = m.iter().map(|row| row.iter().zip(v).map(|(a, b)| a * b).sum::<f64>()).collect();
    let mut out = m.to_vec();
    for row in out.iter_mut() {
        let s: f64 = row.iter().map(|t| t * t).sum::<f64>() + 1.0;
        for e in row.iter_mut() {
            *e /= s;
        }
    }
    for i in 0..out.len() {
        for e in out[i].iter_mut() {
            *e *= y[i];
        }
    }
    let mut total = 0.0;
    for (i, row) in out.iter().enumerate() {
        total += row[i % row.len()] + row.iter().sum::<f64>() * 0.5;
    }
    total
}

#[differentiable]
fn d_row_chains(m: &[Vec<f64>], v: &[f64]) -> f64 {
    grad!(row_chains)(m, v).1.iter().sum()
}

/// Rows passed to helpers that take `&[f64]` (`let row = &m[i]; h(a, row)`,
/// `for row in m { h(a, row) }`, `h(a, &row[1..])`), and sorts of buffers whose elements
/// come from rows or calls (fuzz campaign 0x2110: E0308 and "only buffers of floats").
#[differentiable(order = 3)]
fn ends(u: f64, v: &[f64]) -> f64 {
    u * v[0] * v[v.len() - 1]
}

#[differentiable(order = 3)]
fn squared(u: f64) -> f64 {
    u * u
}

#[differentiable(order = 2)]
fn rows_to_helpers(m: &[Vec<f64>], a: f64) -> f64 {
    let first = &m[0];
    let mut s = ends(1.0, first);
    for row in m {
        s += ends(a, row);
    }
    for row in m.iter() {
        s += ends(a, &row[1..]);
    }
    let mut picked = vec![squared(m[0][1]), m[1][0], a];
    picked.sort_by(|x, y| x.partial_cmp(y).unwrap());
    let mut copy = m[1].to_vec();
    copy.sort_by(|x, y| y.partial_cmp(x).unwrap());
    s + picked[0] * 3.0 + picked[2] + copy[0] * copy[copy.len() - 1]
}

#[differentiable]
fn d_rows_to_helpers(m: &[Vec<f64>], a: f64) -> f64 {
    grad!(rows_to_helpers)(m, a).1
}

fn rows(n: usize, m: usize) -> impl Strategy<Value = Vec<Vec<f64>>> {
    proptest::collection::vec(proptest::collection::vec(-2.0..2.0f64, m), n)
}

/// Finite differences of `f` in every entry of a matrix.
fn fd_rows(f: impl Fn(&[Vec<f64>]) -> f64, x: &[Vec<f64>]) -> Vec<Vec<f64>> {
    (0..x.len())
        .map(|i| {
            (0..x[i].len())
                .map(|j| {
                    let at = |v: f64| {
                        let mut y = x.to_vec();
                        y[i][j] = v;
                        f(&y)
                    };
                    fd(at, x[i][j])
                })
                .collect()
        })
        .collect()
}

fn check_rows(what: &str, got: &[Vec<f64>], want: &[Vec<f64>], tol: Tol) -> Result<(), TestCaseError> {
    prop_assert_eq!(got.len(), want.len());
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        check_vec(&format!("{what}, row {i}"), g, w, tol)?;
    }
    Ok(())
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn rows_of_vecs(points in rows(3, 2), centre in vec_in(-1.0, 1.0, 2..3)) {
        let (gp, gc): (Vec<Vec<f64>>, Vec<f64>) = grad!(spread)(&points, &centre);
        check_rows("d/dpoints", &gp, &fd_rows(|p| spread(p, &centre), &points), FD)?;
        check_vec("d/dcentre", &gc, &fd_vec(|c| spread(&points, c), &centre), FD)?;
        let (hp, hc) = grad!(d_spread)(&points, &centre);
        check_rows("second order d/dpoints", &hp, &fd_rows(|p| d_spread(p, &centre), &points), FD2)?;
        check_vec("second order d/dcentre", &hc, &fd_vec(|c| d_spread(&points, c), &centre), FD2)?;
    }

    #[test]
    fn rows_through_chains(m in rows(3, 2), v in vec_in(-1.0, 1.0, 2..3)) {
        let (gm, gv) = grad!(row_chains)(&m, &v);
        check_rows("d/dm", &gm, &fd_rows(|x| row_chains(x, &v), &m), FD)?;
        check_vec("d/dv", &gv, &fd_vec(|x| row_chains(&m, x), &v), FD)?;
        let (hm, hv) = grad!(d_row_chains)(&m, &v);
        check_rows("second order d/dm", &hm, &fd_rows(|x| d_row_chains(x, &v), &m), FD2)?;
        check_vec("second order d/dv", &hv, &fd_vec(|x| d_row_chains(&m, x), &v), FD2)?;
    }

    #[test]
    fn rows_passed_on(m in rows(2, 3), a in -1.0..1.0f64) {
        let (gm, ga) = grad!(rows_to_helpers)(&m, a);
        check_rows("d/dm", &gm, &fd_rows(|x| rows_to_helpers(x, a), &m), FD)?;
        check("d/da", ga, fd(|t| rows_to_helpers(&m, t), a), FD)?;
        let (hm, ha) = grad!(d_rows_to_helpers)(&m, a);
        check_rows("second order d/dm", &hm, &fd_rows(|x| d_rows_to_helpers(x, a), &m), FD2)?;
        check("second order d/da", ha, fd(|t| d_rows_to_helpers(&m, t), a), FD2)?;
    }

    #[test]
    fn nested_collect(samples in rows(5, 3), w in vec_in(-1.0, 1.0, 3..4)) {
        let (gs, gw) = grad!(quadratic_form)(&samples, &w);
        check_rows("d/dsamples", &gs, &fd_rows(|s| quadratic_form(s, &w), &samples), FD)?;
        check_vec("d/dw", &gw, &fd_vec(|v| quadratic_form(&samples, v), &w), FD)?;
    }

    #[test]
    fn local_matrix_writes(x in vec_in(-1.0, 1.0, 2..5), scale in 0.5..2.0f64) {
        let (gx, gs) = grad!(kernel_sum)(&x, scale);
        check_vec("d/dx", &gx, &fd_vec(|v| kernel_sum(v, scale), &x), FD)?;
        check("d/dscale", gs, fd(|t| kernel_sum(&x, t), scale), FD)?;
        let (hx, hs) = grad!(d_kernel_sum)(&x, scale);
        check_vec("second order d/dx", &hx, &fd_vec(|v| d_kernel_sum(v, scale), &x), FD2)?;
        check("second order d/dscale", hs, fd(|t| d_kernel_sum(&x, t), scale), FD2)?;
    }

    #[test]
    fn rows_pushed(x in vec_in(-1.5, 1.5, 2..6)) {
        check_vec("pushed rows", &grad!(pushed_rows)(&x), &fd_vec(pushed_rows, &x), FD)?;
    }

    #[test]
    fn array_rows(flat in vec_in(-2.0, 2.0, 12..13)) {
        let pts: Vec<[f64; 3]> = flat.chunks(3).map(|c| [c[0], c[1], c[2]]).collect();
        let g: Vec<[f64; 3]> = grad!(perimeter)(&pts);
        let f = |v: &[f64]| perimeter(&v.chunks(3).map(|c| [c[0], c[1], c[2]]).collect::<Vec<_>>());
        let want = fd_vec(f, &flat);
        check_vec("d/dpts", &g.concat(), &want, FD)?;
    }

    #[test]
    fn array_of_arrays(flat in vec_in(-2.0, 2.0, 8..9)) {
        let to_ctrl = |v: &[f64]| -> [[f64; 2]; 4] { std::array::from_fn(|i| [v[2 * i], v[2 * i + 1]]) };
        let g: [[f64; 2]; 4] = grad!(radius_sum)(&to_ctrl(&flat));
        let want = fd_vec(|v| radius_sum(&to_ctrl(v)), &flat);
        check_vec("d/dquad", &g.concat(), &want, FD)?;
    }
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn tuple_rows(flat in vec_in(-1.5, 1.5, 6..7), w in -1.0..1.0f64) {
        let to_pairs = |v: &[f64]| -> Vec<(f64, f64)> { v.chunks(2).map(|c| (c[0], c[1])).collect() };
        let (g, gw): (Vec<(f64, f64)>, f64) = grad!(pair_products)(&to_pairs(&flat), w);
        let g: Vec<f64> = g.iter().flat_map(|&(a, b)| [a, b]).collect();
        check_vec("d/dpts", &g, &fd_vec(|v| pair_products(&to_pairs(v), w), &flat), FD)?;
        check("d/dw", gw, fd(|t| pair_products(&to_pairs(&flat), t), w), FD)?;
        let (h, hw) = grad!(d_pair_products)(&to_pairs(&flat), w);
        let h: Vec<f64> = h.iter().flat_map(|&(a, b)| [a, b]).collect();
        check_vec("second order d/dpts", &h, &fd_vec(|v| d_pair_products(&to_pairs(v), w), &flat), FD2)?;
        check("second order d/dw", hw, fd(|t| d_pair_products(&to_pairs(&flat), t), w), FD2)?;
    }
}

/// The gradient has the argument's nesting: rows of the same lengths.
#[test]
fn gradient_shapes() {
    let points = vec![vec![1.0, 2.0], vec![0.5, -1.0], vec![3.0, 0.0]];
    let (gp, gc) = grad!(spread)(&points, &[0.1, 0.2]);
    assert_eq!(gp.iter().map(Vec::len).collect::<Vec<_>>(), vec![2, 2, 2]);
    assert_eq!(gc.len(), 2);
}

/// Borrowed rows as data (`#[no_grad]`): read like any rows.
#[differentiable]
fn weighted_rows(#[no_grad] data: &[&[f64]], w: &[f64]) -> f64 {
    data.iter().map(|r| r.iter().zip(w).map(|(a, b)| a * b).sum::<f64>().tanh()).sum()
}

#[test]
fn borrowed_rows_as_data() {
    let (a, b) = ([0.5, -1.0, 2.0], [1.5, 0.25, -0.5]);
    let data: [&[f64]; 2] = [&a, &b];
    let w = [0.3, -0.2, 0.1];
    let g = grad!(weighted_rows)(&data, &w);
    assert_vec_close("d/dw", &g, &fd_vec(|v| weighted_rows(&data, v), &w), FD);
}

/// A matrix of literal zeros that is read but never written (fuzz campaign 0x2200,
/// program 1563: its element type could not be inferred in the derivative code).
#[differentiable]
fn unwritten_matrix(x: &[f64]) -> f64 {
    let mat = vec![vec![0.0; x.len()]; 2];
    if x[0] > 0.0 {
        return -(mat[0][2] * x[2]) + x[0];
    }
    mat[1][0] + x[1] * x[1]
}

#[test]
fn matrix_of_literals_read_only() {
    assert_eq!(grad!(unwritten_matrix)(&[1.0, 2.0, 3.0]), vec![1.0, 0.0, 0.0]);
    assert_eq!(grad!(unwritten_matrix)(&[-1.0, 2.0, 3.0]), vec![0.0, 4.0, 0.0]);
}
