//! Softmax, log-softmax and the fused cross-entropy, on contiguous data viewed as
//! `[outer, r, inner]` with the normalised axis in the middle.
//!
//! All are numerically stable: the maximum along the axis is subtracted before `exp`.
//! For the last axis (`inner == 1`) a piece of rows goes through three passes, each a
//! separate loop so that each vectorises: the row maxima and `x − max`; `exp` over the
//! whole piece at once (so short rows, such as 10 logits, still fill vector
//! registers); the row sums and the normalisation. For another axis a block
//! `[r, inner]` is handled with `inner`-long running maxima and sums, so every pass
//! streams through memory in order.

use core::mem::MaybeUninit;

use super::isa::vectorize;
use super::params::{Cost, KernelParams};
use super::reduce::{sum_lanes, Max, Reducer};
use super::unary::fill;
use crate::Float;

/// The maximum of a row, or 0 if it is not finite (so that `x − max` stays finite for
/// rows of infinities and the result is NaN only where the input makes it so).
#[inline(always)]
fn row_max<E: Float>(row: &[E]) -> E {
    let m = Max::reduce_run(row, 0, row.len(), 1);
    if m.is_finite() {
        m
    } else {
        E::ZERO
    }
}

/// `x ↦ eˣ` in place.
#[inline(always)]
fn exp_in_place<E: Float>(x: &mut [E]) {
    for v in x {
        *v = v.exp_vectorizable();
    }
}

/// Softmax (or log-softmax if `log`) along the middle axis of contiguous `x` of shape
/// `[outer, r, inner]`, as a fresh vector of the same layout.
pub(crate) fn softmax<E: Float>(
    x: &[E],
    (outer, r, inner): (usize, usize, usize),
    log: bool,
    params: &KernelParams,
) -> Vec<E> {
    let block = r * inner;
    let n = outer * block;
    debug_assert_eq!(x.len(), n);
    let parallel = params.map_parallel(n, Cost::Heavy) && outer > 1;
    let task = params.task_len(n, block.max(1)).max(block.max(1));
    let isa = params.isa;
    fill(n, parallel, task, |start, piece: &mut [MaybeUninit<E>]| {
        if block == 0 {
            return;
        }
        let src = &x[start..start + piece.len()];
        for d in piece.iter_mut() {
            d.write(E::ZERO);
        }
        // SAFETY: every element was just initialised.
        let dst = unsafe { &mut *(piece as *mut [MaybeUninit<E>] as *mut [E]) };
        if inner == 1 {
            let mut exps = if log { vec![E::ZERO; src.len()] } else { Vec::new() };
            vectorize(
                isa,
                #[inline(always)]
                || softmax_rows(src, dst, r, log, &mut exps),
            );
        } else {
            let mut scratch = vec![E::ZERO; 2 * inner];
            vectorize(
                isa,
                #[inline(always)]
                || {
                    let (mx, sum) = scratch.split_at_mut(inner);
                    for (s, d) in src.chunks_exact(block).zip(dst.chunks_exact_mut(block)) {
                        softmax_block(s, d, inner, mx, sum, log);
                    }
                },
            )
        }
    })
}

/// Rows of length `r`: `dst = softmax(src)` or `log_softmax(src)` row by row; `exps`
/// is scratch of `src.len()` for the log case.
#[inline(always)]
fn softmax_rows<E: Float>(src: &[E], dst: &mut [E], r: usize, log: bool, exps: &mut [E]) {
    for (s, d) in src.chunks_exact(r).zip(dst.chunks_exact_mut(r)) {
        let m = row_max(s);
        for (d, &v) in d.iter_mut().zip(s) {
            *d = v - m;
        }
    }
    if log {
        exps.copy_from_slice(dst);
        exp_in_place(exps);
        for (d, e) in dst.chunks_exact_mut(r).zip(exps.chunks_exact(r)) {
            let ls = sum_lanes(e, |v| v).ln();
            for v in d {
                *v -= ls;
            }
        }
    } else {
        exp_in_place(dst);
        for d in dst.chunks_exact_mut(r) {
            let inv = E::ONE / sum_lanes(d, |v| v);
            for v in d {
                *v *= inv;
            }
        }
    }
}

/// One block `[r, inner]`, normalised along `r`; `mx` and `sum` are scratch of length
/// `inner`.
#[inline(always)]
fn softmax_block<E: Float>(src: &[E], dst: &mut [E], inner: usize, mx: &mut [E], sum: &mut [E], log: bool) {
    mx.fill(<Max as Reducer<E>>::identity());
    sum.fill(E::ZERO);
    for row in src.chunks_exact(inner) {
        for (m, &v) in mx.iter_mut().zip(row) {
            *m = Max::combine(*m, v);
        }
    }
    for m in mx.iter_mut() {
        if !m.is_finite() {
            *m = E::ZERO;
        }
    }
    for (row, drow) in src.chunks_exact(inner).zip(dst.chunks_exact_mut(inner)) {
        for (((d, &v), &m), s) in drow.iter_mut().zip(row).zip(mx.iter()).zip(sum.iter_mut()) {
            let e = (v - m).exp_vectorizable();
            *s += e;
            *d = if log { v - m } else { e };
        }
    }
    for s in sum.iter_mut() {
        *s = if log { s.ln() } else { E::ONE / *s };
    }
    for drow in dst.chunks_exact_mut(inner) {
        for (d, &s) in drow.iter_mut().zip(sum.iter()) {
            *d = if log { *d - s } else { *d * s };
        }
    }
}

/// `Σ_i (logsumexp(x_i) − x_i[t_i])` over the rows of contiguous `x` of shape
/// `[n, c]` (the caller divides by `n` and has checked the targets).
pub(crate) fn cross_entropy_sum<E: Float>(x: &[E], c: usize, targets: &[usize], params: &KernelParams) -> E {
    let n = targets.len();
    if n == 0 || c == 0 {
        return E::ZERO;
    }
    // Fixed blocks of rows, block sums added in order: the same result on any number
    // of threads.
    let rows_per_block = params.reduce_block.div_ceil(c).max(1);
    let blocks = n.div_ceil(rows_per_block);
    let isa = params.isa;
    let block = |b: usize| {
        let rows = b * rows_per_block..((b + 1) * rows_per_block).min(n);
        let src = &x[rows.start * c..rows.end * c];
        let mut shifted = vec![E::ZERO; src.len()];
        vectorize(
            isa,
            #[inline(always)]
            || {
                // The same three passes as softmax: x − max, exp of the whole block, sums.
                let mut maxes = Vec::with_capacity(rows.len());
                for (s, d) in src.chunks_exact(c).zip(shifted.chunks_exact_mut(c)) {
                    let m = row_max(s);
                    maxes.push(m);
                    for (d, &v) in d.iter_mut().zip(s) {
                        *d = v - m;
                    }
                }
                exp_in_place(&mut shifted);
                let mut total = E::ZERO;
                for ((i, e), m) in rows.clone().zip(shifted.chunks_exact(c)).zip(maxes) {
                    total += m + sum_lanes(e, |v| v).ln() - x[i * c + targets[i]];
                }
                total
            },
        )
    };
    if params.map_parallel(n * c, Cost::Heavy) && blocks > 1 {
        use rayon::prelude::*;
        let partials: Vec<E> = (0..blocks).into_par_iter().map(block).collect();
        partials.into_iter().fold(E::ZERO, |a, v| a + v)
    } else {
        (0..blocks).map(block).fold(E::ZERO, |a, v| a + v)
    }
}
