//! Elementwise maps of one operand: `out[i] = f(x[i])`.

use core::mem::MaybeUninit;

use super::isa::vectorize;
use super::layout::{for_each_piece, Plan, View, SMALL_MAP};
use super::params::{Cost, KernelParams};
use crate::Float;

/// `f` applied to every element of `src`, as a fresh row-major vector.
pub(crate) fn map<E: Float, F: Fn(E) -> E + Sync + Send>(
    src: View<'_, E>,
    f: F,
    cost: Cost,
    params: &KernelParams,
) -> Vec<E> {
    let plan = Plan::new(src.shape, [(src.strides, src.offset)]);
    let n = plan.len();
    let [s] = plan.inner_strides();
    let data = src.data;
    let isa = params.isa;
    fill(n, params.map_parallel(n, cost), params.task_len(n, 64), |start, piece| {
        plan.for_each_run(start, start + piece.len(), |pos, [o], len| {
            let dst = &mut piece[pos - start..pos - start + len];
            vectorize(
                isa,
                #[inline(always)]
                || match s {
                    1 => {
                        for (d, &x) in dst.iter_mut().zip(&data[o..o + len]) {
                            d.write(f(x));
                        }
                    }
                    0 => {
                        let y = f(data[o]);
                        for d in dst {
                            d.write(y);
                        }
                    }
                    _ => {
                        for (j, d) in dst.iter_mut().enumerate() {
                            d.write(f(data[o + j * s]));
                        }
                    }
                },
            );
        });
    })
}

/// `x = f(x)` for every element of a buffer this thread owns.
pub(crate) fn map_in_place<E: Float, F: Fn(E) -> E + Sync + Send>(
    dst: &mut [E],
    f: F,
    cost: Cost,
    params: &KernelParams,
) {
    let n = dst.len();
    if n <= SMALL_MAP {
        dst.iter_mut().for_each(|x| *x = f(*x));
        return;
    }
    let isa = params.isa;
    for_each_piece(dst, params.map_parallel(n, cost), params.task_len(n, 64), |_, piece| {
        vectorize(
            isa,
            #[inline(always)]
            || {
                for x in piece {
                    *x = f(*x);
                }
            },
        )
    });
}

/// A fresh vector of `n` elements, written piece by piece by `body(start, piece)` (in
/// parallel if `parallel`), which must initialise every element of its piece.
///
/// The elements are never zeroed first: the first touch of each page is the write.
pub(crate) fn fill<E: Send>(
    n: usize,
    parallel: bool,
    task: usize,
    body: impl Fn(usize, &mut [MaybeUninit<E>]) + Sync + Send,
) -> Vec<E> {
    let mut out: Vec<E> = Vec::with_capacity(n);
    for_each_piece(&mut out.spare_capacity_mut()[..n], parallel, task, body);
    // SAFETY: every caller's `body` writes every element of the piece it is given, and
    // the pieces cover `0..n`.
    unsafe { out.set_len(n) };
    out
}
