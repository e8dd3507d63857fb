//! Reductions: over everything (`sum`, `norm`, fused losses), over chosen axes
//! (`sum_dim`, `max_dim`, `sum_to_shape`), and `argmax` along an axis.
//!
//! Full reductions add fixed blocks of [`KernelParams::reduce_block`] elements and then
//! the block sums in order, so the result does not depend on the number of threads.
//! Contiguous runs are added in [`LANES`] independent accumulators, which the compiler
//! keeps in vector registers (and which is also more accurate than one running sum).

use core::mem::MaybeUninit;

use rayon::prelude::*;

use super::isa::vectorize;
use super::layout::{small_contiguous, Plan, View};
use super::params::KernelParams;
use super::unary::fill;
use crate::Float;

/// Independent accumulators of a contiguous reduction (two AVX-512 registers of f32).
const LANES: usize = 32;

/// How values are combined along the reduced axes.
pub(crate) trait Reducer<E: Float>: Copy + Send + Sync {
    /// The value of an empty reduction.
    fn identity() -> E;
    /// One step: `acc ⊕ x`.
    fn combine(acc: E, x: E) -> E;

    /// `⊕` over `data[o + j·s]` for `j < len`.
    #[inline(always)]
    fn reduce_run(data: &[E], o: usize, len: usize, s: usize) -> E {
        if s == 1 {
            lanes::<E, Self>(&data[o..o + len], |x| x)
        } else {
            (0..len).fold(Self::identity(), |acc, j| Self::combine(acc, data[o + j * s]))
        }
    }
}

/// Addition.
#[derive(Clone, Copy)]
pub(crate) struct Sum;

impl<E: Float> Reducer<E> for Sum {
    #[inline(always)]
    fn identity() -> E {
        E::ZERO
    }
    #[inline(always)]
    fn combine(acc: E, x: E) -> E {
        acc + x
    }
}

/// The maximum; NaN wins (as in NumPy and PyTorch).
#[derive(Clone, Copy)]
pub(crate) struct Max;

impl<E: Float> Reducer<E> for Max {
    #[inline(always)]
    fn identity() -> E {
        E::from_f64(f64::NEG_INFINITY)
    }
    #[inline(always)]
    #[allow(clippy::eq_op)]
    fn combine(acc: E, x: E) -> E {
        // `x != x` is the NaN test, written so the comparison vectorises.
        if x > acc || x != x {
            x
        } else {
            acc
        }
    }
}

/// `Σ g(x)` over a contiguous slice, in [`LANES`] accumulators (vectorised when `g`
/// is branch-free).
#[inline(always)]
pub(crate) fn sum_lanes<E: Float>(x: &[E], g: impl Fn(E) -> E) -> E {
    lanes::<E, Sum>(x, g)
}

/// `⊕ g(x)` over a contiguous slice, in [`LANES`] accumulators.
#[inline(always)]
fn lanes<E: Float, R: Reducer<E>>(x: &[E], g: impl Fn(E) -> E) -> E {
    if x.len() < LANES {
        // Short runs (a row of 10 logits): setting up and folding the lanes would cost
        // more than the loop.
        return x.iter().fold(R::identity(), |acc, &v| R::combine(acc, g(v)));
    }
    let mut acc = [R::identity(); LANES];
    let chunks = x.chunks_exact(LANES);
    let rest = chunks.remainder();
    for c in chunks {
        for i in 0..LANES {
            acc[i] = R::combine(acc[i], g(c[i]));
        }
    }
    for (i, &v) in rest.iter().enumerate() {
        acc[i] = R::combine(acc[i], g(v));
    }
    let mut w = LANES;
    while w > 1 {
        w /= 2;
        for i in 0..w {
            acc[i] = R::combine(acc[i], acc[i + w]);
        }
    }
    acc[0]
}

/// Sum of the block sums, computed per block by `block(b)` for `b < blocks`, in
/// parallel if `parallel`.
fn sum_blocks<E: Float>(blocks: usize, parallel: bool, block: impl Fn(usize) -> E + Sync + Send) -> E {
    match blocks {
        0 => E::ZERO,
        1 => block(0),
        _ => {
            let partials: Vec<E> = if parallel {
                (0..blocks).into_par_iter().map(&block).collect()
            } else {
                (0..blocks).map(&block).collect()
            };
            lanes::<E, Sum>(&partials, |x| x)
        }
    }
}

/// `Σ g(x)` over every element of `src`.
pub(crate) fn sum_map<E: Float, G: Fn(E) -> E + Sync + Send>(src: View<'_, E>, g: G, params: &KernelParams) -> E {
    let bl = params.reduce_block.max(1);
    if let Some(x) = small_contiguous(src.shape, &src).filter(|x| x.len() <= bl) {
        // One block, as below, without the plan and the dispatch.
        return E::ZERO + lanes::<E, Sum>(x, &g);
    }
    let plan = Plan::new(src.shape, [(src.strides, src.offset)]);
    let n = plan.len();
    let [s] = plan.inner_strides();
    let data = src.data;
    let isa = params.isa;
    sum_blocks(n.div_ceil(bl), params.reduce_parallel(n), |b| {
        let mut total = E::ZERO;
        plan.for_each_run(b * bl, (b + 1) * bl, |_, [o], len| {
            total += vectorize(
                isa,
                #[inline(always)]
                || {
                    if s == 1 {
                        lanes::<E, Sum>(&data[o..o + len], &g)
                    } else {
                        (0..len).fold(E::ZERO, |acc, j| acc + g(data[o + j * s]))
                    }
                },
            );
        });
        total
    })
}

/// `Σ f(a, b)` over `shape`, with `a` and `b` broadcast to it (a fused loss: no
/// intermediate tensor).
pub(crate) fn zip_sum<E: Float, F: Fn(E, E) -> E + Sync + Send>(
    shape: &[usize],
    a: View<'_, E>,
    b: View<'_, E>,
    f: F,
    params: &KernelParams,
) -> E {
    let plan = Plan::new(shape, [(a.strides, a.offset), (b.strides, b.offset)]);
    let n = plan.len();
    let [sa, sb] = plan.inner_strides();
    let bl = params.reduce_block.max(1);
    let isa = params.isa;
    sum_blocks(n.div_ceil(bl), params.reduce_parallel(n), |blk| {
        let mut total = E::ZERO;
        plan.for_each_run(blk * bl, (blk + 1) * bl, |_, [oa, ob], len| {
            total += vectorize(
                isa,
                #[inline(always)]
                || {
                    if sa == 1 && sb == 1 {
                        let (x, y) = (&a.data[oa..oa + len], &b.data[ob..ob + len]);
                        let mut acc = [E::ZERO; LANES];
                        let (cx, cy) = (x.chunks_exact(LANES), y.chunks_exact(LANES));
                        let (rx, ry) = (cx.remainder(), cy.remainder());
                        for (cx, cy) in cx.zip(cy) {
                            for i in 0..LANES {
                                acc[i] += f(cx[i], cy[i]);
                            }
                        }
                        for (&u, &v) in rx.iter().zip(ry) {
                            acc[0] += f(u, v);
                        }
                        lanes::<E, Sum>(&acc, |v| v)
                    } else {
                        (0..len).fold(E::ZERO, |acc, j| acc + f(a.data[oa + j * sa], b.data[ob + j * sb]))
                    }
                },
            );
        });
        total
    })
}

/// Reduce `src` over the axes where `reduce[d]` is true, giving the remaining axes in
/// row-major order.
///
/// Two loop orders, chosen by the strides: when the reduced axes are the more
/// contiguous ones (row sums), each output is a [`Reducer::reduce_run`] over its
/// inputs; otherwise (column sums, the bias gradient) whole runs of outputs are
/// combined with one input run at a time, which vectorises along the outputs.
pub(crate) fn reduce_axes<E: Float, R: Reducer<E>>(src: View<'_, E>, reduce: &[bool], params: &KernelParams) -> Vec<E> {
    let (mut kept, mut kept_st, mut red, mut red_st) = (vec![], vec![], vec![], vec![]);
    for (d, &r) in reduce.iter().enumerate() {
        if r {
            red.push(src.shape[d]);
            red_st.push(src.strides[d]);
        } else {
            kept.push(src.shape[d]);
            kept_st.push(src.strides[d]);
        }
    }
    let kplan = Plan::new(&kept, [(&kept_st, src.offset)]);
    let rplan = Plan::new(&red, [(&red_st, 0)]);
    let (out_len, red_len) = (kplan.len(), rplan.len());
    let ([sk], [sr]) = (kplan.inner_strides(), rplan.inner_strides());
    let dot = kplan.inner_len() == 1 || (sk != 1 && (sr == 1 || sr < sk));
    let threads = params.threads();
    let parallel = params.reduce_parallel(out_len * red_len) && out_len > 1;
    let task = out_len.div_ceil(4 * threads).max(params.task_min.div_ceil(red_len.max(1))).max(1);
    let data = src.data;
    let isa = params.isa;
    fill(out_len, parallel, task, |start, piece: &mut [MaybeUninit<E>]| {
        kplan.for_each_run(start, start + piece.len(), |pos, [o], len| {
            let dst = &mut piece[pos - start..pos - start + len];
            if dot {
                for (j, d) in dst.iter_mut().enumerate() {
                    let base = o + j * sk;
                    let mut acc = R::identity();
                    rplan.for_each_run(0, red_len, |_, [ro], rlen| {
                        let part = vectorize(
                            isa,
                            #[inline(always)]
                            || R::reduce_run(data, base + ro, rlen, sr),
                        );
                        acc = R::combine(acc, part);
                    });
                    d.write(acc);
                }
            } else {
                for d in dst.iter_mut() {
                    d.write(R::identity());
                }
                // SAFETY: every element was just initialised.
                let dst = unsafe { &mut *(dst as *mut [MaybeUninit<E>] as *mut [E]) };
                rplan.for_each_run(0, red_len, |_, [ro], rlen| {
                    for t in 0..rlen {
                        let base = o + ro + t * sr;
                        vectorize(
                            isa,
                            #[inline(always)]
                            || {
                                if sk == 1 {
                                    for (acc, &x) in dst.iter_mut().zip(&data[base..base + len]) {
                                        *acc = R::combine(*acc, x);
                                    }
                                } else {
                                    for (j, acc) in dst.iter_mut().enumerate() {
                                        *acc = R::combine(*acc, data[base + j * sk]);
                                    }
                                }
                            },
                        );
                    }
                });
            }
        });
    })
}

/// For each position of `src` without `axis` (row-major), the row-major flat index into
/// `src` of the largest element along `axis` (the first one on ties; a NaN wins).
pub(crate) fn argmax_axis<E: Float>(src: View<'_, E>, axis: usize, params: &KernelParams) -> Vec<usize> {
    let r = src.shape[axis];
    let sa = src.strides[axis];
    let inner: usize = src.shape[axis + 1..].iter().product();
    let mut kept = src.shape.to_vec();
    kept[axis] = 1;
    let kplan = Plan::new(&kept, [(src.strides, src.offset)]);
    let [sk] = kplan.inner_strides();
    let out_len = kplan.len();
    let parallel = params.reduce_parallel(out_len * r) && out_len > 1;
    let task = out_len.div_ceil(4 * params.threads()).max(params.task_min.div_ceil(r.max(1))).max(1);
    let data = src.data;
    fill(out_len, parallel, task, |start, piece: &mut [MaybeUninit<usize>]| {
        kplan.for_each_run(start, start + piece.len(), |pos, [o], len| {
            for (j, d) in piece[pos - start..pos - start + len].iter_mut().enumerate() {
                let base = o + j * sk;
                let (mut best, mut arg) = (data[base], 0);
                for k in 1..r {
                    let x = data[base + k * sa];
                    if best.is_nan() {
                        break;
                    }
                    if x > best || x.is_nan() {
                        best = x;
                        arg = k;
                    }
                }
                let q = pos + j;
                d.write((q / inner) * r * inner + arg * inner + q % inner);
            }
        });
    })
}
