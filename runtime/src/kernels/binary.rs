//! Elementwise maps of two broadcast operands: `out[i] = f(a[i], b[i])`.
//!
//! After the [`Plan`] has merged dimensions, the inner loop has one of four shapes,
//! each its own loop so the compiler vectorises the common ones: both operands
//! contiguous (same shape), one of them constant along the run (a scalar, or the
//! column-broadcast case), or both strided. The row-broadcast case `[n, m] ⊕ [m]`
//! is `n` runs of the first shape.

use core::mem::MaybeUninit;

use super::isa::vectorize;
use super::layout::{for_each_piece, small_contiguous, Plan, View};
use super::params::{Cost, KernelParams};
use super::unary::fill;
use crate::Float;

/// The inner loop of a binary map over one run: `dst[j] = f(a[oa + j·sa], b[ob + j·sb])`.
#[inline(always)]
fn run<E: Float, D, F: Fn(E, E) -> E>(
    dst: &mut [D],
    write: impl Fn(&mut D, E),
    (a, oa, sa): (&[E], usize, usize),
    (b, ob, sb): (&[E], usize, usize),
    f: &F,
) {
    let len = dst.len();
    match (sa, sb) {
        (1, 1) => {
            for ((d, &x), &y) in dst.iter_mut().zip(&a[oa..oa + len]).zip(&b[ob..ob + len]) {
                write(d, f(x, y));
            }
        }
        (1, 0) => {
            let y = b[ob];
            for (d, &x) in dst.iter_mut().zip(&a[oa..oa + len]) {
                write(d, f(x, y));
            }
        }
        (0, 1) => {
            let x = a[oa];
            for (d, &y) in dst.iter_mut().zip(&b[ob..ob + len]) {
                write(d, f(x, y));
            }
        }
        _ => {
            for (j, d) in dst.iter_mut().enumerate() {
                write(d, f(a[oa + j * sa], b[ob + j * sb]));
            }
        }
    }
}

/// `f(a, b)` elementwise over `shape`, as a fresh row-major vector; `a` and `b` carry
/// strides already broadcast to `shape`.
pub(crate) fn zip<E: Float, F: Fn(E, E) -> E + Sync + Send>(
    shape: &[usize],
    a: View<'_, E>,
    b: View<'_, E>,
    f: F,
    cost: Cost,
    params: &KernelParams,
) -> Vec<E> {
    let plan = Plan::new(shape, [(a.strides, a.offset), (b.strides, b.offset)]);
    let n = plan.len();
    let [sa, sb] = plan.inner_strides();
    let isa = params.isa;
    fill(n, params.map_parallel(n, cost), params.task_len(n, 64), |start, piece| {
        plan.for_each_run(start, start + piece.len(), |pos, [oa, ob], len| {
            let dst = &mut piece[pos - start..pos - start + len];
            vectorize(
                isa,
                #[inline(always)]
                || {
                    run(
                        dst,
                        |d: &mut MaybeUninit<E>, v| {
                            d.write(v);
                        },
                        (a.data, oa, sa),
                        (b.data, ob, sb),
                        &f,
                    )
                },
            );
        });
    })
}

/// `dst = f(dst, b)` elementwise, where `dst` is a row-major buffer of `shape` this
/// thread owns and `b` carries strides broadcast to `shape`.
pub(crate) fn zip_in_place<E: Float, F: Fn(E, E) -> E + Sync + Send>(
    dst: &mut [E],
    shape: &[usize],
    b: View<'_, E>,
    f: F,
    cost: Cost,
    params: &KernelParams,
) {
    if let Some(y) = small_contiguous(shape, &b) {
        for (x, &y) in dst.iter_mut().zip(y) {
            *x = f(*x, y);
        }
        return;
    }
    let plan = Plan::new(shape, [(b.strides, b.offset)]);
    let n = plan.len();
    debug_assert_eq!(n, dst.len());
    let [sb] = plan.inner_strides();
    let isa = params.isa;
    for_each_piece(dst, params.map_parallel(n, cost), params.task_len(n, 64), |start, piece| {
        plan.for_each_run(start, start + piece.len(), |pos, [ob], len| {
            let d = &mut piece[pos - start..pos - start + len];
            vectorize(
                isa,
                #[inline(always)]
                || match sb {
                    1 => {
                        for (x, &y) in d.iter_mut().zip(&b.data[ob..ob + len]) {
                            *x = f(*x, y);
                        }
                    }
                    0 => {
                        let y = b.data[ob];
                        for x in d {
                            *x = f(*x, y);
                        }
                    }
                    _ => {
                        for (j, x) in d.iter_mut().enumerate() {
                            *x = f(*x, b.data[ob + j * sb]);
                        }
                    }
                },
            );
        });
    });
}
