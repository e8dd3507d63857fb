//! Dispatch of (batched, broadcast) matrix products onto [`gemm_into`].
//!
//! - One product: one GEMM, parallel inside when it is big enough.
//! - A stack of products against one shared right-hand matrix whose left-hand rows
//!   are evenly spaced (`[b, m, k] × [k, n]` with a contiguous left side): one tall
//!   GEMM of `b·m` rows.
//! - Otherwise one GEMM per batch element: the batch is spread over the threads when
//!   each product is small, else the products run in turn, each parallel inside.

use core::mem::MaybeUninit;

use super::gemm::{gemm_into, MatRef};
use super::layout::Plan;
use super::params::KernelParams;
use super::unary::fill;
use crate::Float;

/// One side of a batched product: the matrices sit at `offset + Σ batch_index·batch_strides`,
/// each with row stride `rs` and column stride `cs`.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Batched<'a, E> {
    pub data: &'a [E],
    pub offset: usize,
    /// Strides along the batch dimensions, already broadcast (0 where repeated).
    pub batch_strides: &'a [usize],
    pub rs: usize,
    pub cs: usize,
}

/// The matrix of `side` at `offset`.
fn mat<'a, E>(side: &Batched<'a, E>, offset: usize, rows: usize, cols: usize) -> MatRef<'a, E> {
    MatRef { data: side.data, offset, rows, cols, rs: side.rs, cs: side.cs }
}

/// If dimensions `dims` with `strides` are evenly spaced (one stride covers them all, as
/// for a merged dimension), that stride.
fn single_stride(dims: &[usize], strides: &[usize]) -> Option<usize> {
    let mut acc: Option<(usize, usize)> = None; // (stride of the innermost kept dim, span)
    for (&n, &s) in dims.iter().zip(strides).rev() {
        if n == 1 {
            continue;
        }
        match acc {
            None => acc = Some((s, s * n)),
            Some((inner, span)) if s == span => acc = Some((inner, span * n)),
            Some(_) => return None,
        }
    }
    Some(acc.map_or(0, |(inner, _)| inner))
}

/// The row-major `[batch…, m, n]` product of `lhs` (`m × k` matrices) and `rhs`
/// (`k × n` matrices) over the broadcast batch shape `batch`.
pub(crate) fn batched_matmul<E: Float>(
    batch: &[usize],
    (m, k, n): (usize, usize, usize),
    lhs: Batched<'_, E>,
    rhs: Batched<'_, E>,
    params: &KernelParams,
) -> Vec<E> {
    let count: usize = batch.iter().product();
    let threads = params.threads();
    // The level goes down explicitly: the products of a batch spread over the pool run
    // on worker threads, which do not see this thread's `KernelParams`.
    let isa = params.isa.effective();
    let flops = m * n * k;
    let big = flops >= params.gemm_par_min;
    // Shared right-hand side, evenly spaced left-hand rows: one tall product.
    if count > 1 && rhs.batch_strides.iter().zip(batch).all(|(&s, &b)| s == 0 || b == 1) {
        let mut dims = batch.to_vec();
        dims.push(m);
        let mut strides = lhs.batch_strides.to_vec();
        strides.push(lhs.rs);
        if let Some(rs) = single_stride(&dims, &strides) {
            let rows = count * m;
            let tall = rows * n * k >= params.gemm_par_min && threads > 1;
            let l = MatRef { rs, ..mat(&lhs, lhs.offset, rows, k) };
            let r = mat(&rhs, rhs.offset, k, n);
            return fill(rows * n, false, usize::MAX, |_, dst| {
                gemm_into(dst, l, r, if tall { threads } else { 1 }, isa)
            });
        }
    }

    // The offsets of every pair, in row-major batch order.
    let mut pairs = Vec::with_capacity(count);
    let plan = Plan::new(batch, [(lhs.batch_strides, lhs.offset), (rhs.batch_strides, rhs.offset)]);
    let [sl, sr] = plan.inner_strides();
    plan.for_each_run(0, count, |_, [ol, or], len| {
        pairs.extend((0..len).map(|j| (ol + j * sl, or + j * sr)));
    });

    let per = m * n;
    let spread = count > 1 && !big && threads > 1 && per > 0;
    let task = per * count.div_ceil(4 * threads).max(1);
    fill(count * per, spread, task.max(1), |start, piece: &mut [MaybeUninit<E>]| {
        if per == 0 {
            return;
        }
        let first = start / per;
        for (i, dst) in piece.chunks_mut(per).enumerate() {
            let (ol, or) = pairs[first + i];
            let inner_threads = if big && !spread { threads } else { 1 };
            gemm_into(dst, mat(&lhs, ol, m, k), mat(&rhs, or, k, n), inner_threads, isa);
        }
    })
}
