//! Matrix products with a unit dimension: matrix·vector, vector·matrix and the outer
//! product (BLAS level 2). Each element of the matrix is used once, so the products are
//! bound by memory, not arithmetic, and a GEMM's packing buys nothing: at the sizes of
//! an RNN step (128×128·128) the `gemm` crate spends longer dispatching than
//! multiplying. Here they are plain loops over contiguous rows or columns, vectorised,
//! with a fixed summation order (so results do not depend on the thread count).

use core::mem::MaybeUninit;

use super::gemm::MatRef;
use super::simd::vectorize;
use crate::Float;

/// Products up to this many multiply-adds take the loops below; larger ones go to the
/// `gemm` crate, which runs them on several threads.
pub(crate) const LEVEL2_MAX_FLOPS: usize = 1 << 18;

impl<E: Copy> MatRef<'_, E> {
    #[inline(always)]
    fn at(&self, i: usize, j: usize) -> E {
        self.data[self.offset + i * self.rs + j * self.cs]
    }

    /// Row `i` as a slice, if its elements are adjacent.
    #[inline(always)]
    fn row(&self, i: usize) -> Option<&[E]> {
        let start = self.offset + i * self.rs;
        (self.cs == 1 || self.cols <= 1).then(|| &self.data[start..start + self.cols])
    }

    /// Column `j` as a slice, if its elements are adjacent.
    #[inline(always)]
    fn col(&self, j: usize) -> Option<&[E]> {
        let start = self.offset + j * self.cs;
        (self.rs == 1 || self.rows <= 1).then(|| &self.data[start..start + self.rows])
    }
}

/// `Σ a[i]·b[i]` with 16 independent partial sums (so the loop vectorises without
/// reassociating anything), added pairwise at the end.
#[inline(always)]
fn dot<E: Float>(a: &[E], b: &[E]) -> E {
    const LANES: usize = 16;
    let mut acc = [E::ZERO; LANES];
    let (ca, cb) = (a.chunks_exact(LANES), b.chunks_exact(LANES));
    let (ta, tb) = (ca.remainder(), cb.remainder());
    for (x, y) in ca.zip(cb) {
        for l in 0..LANES {
            acc[l] += x[l] * y[l];
        }
    }
    for (l, (&x, &y)) in ta.iter().zip(tb).enumerate() {
        acc[l] += x * y;
    }
    let mut width = LANES;
    while width > 1 {
        width /= 2;
        for l in 0..width {
            acc[l] = acc[l] + acc[l + width];
        }
    }
    acc[0]
}

/// `acc[i] += s·x[i]`.
#[inline(always)]
fn axpy<E: Float>(acc: &mut [E], s: E, x: &[E]) {
    for (a, &v) in acc.iter_mut().zip(x) {
        *a += s * v;
    }
}

/// `dst` (all of it written) as initialised elements.
fn zeroed<E: Float>(dst: &mut [MaybeUninit<E>]) -> &mut [E] {
    for d in dst.iter_mut() {
        d.write(E::ZERO);
    }
    // SAFETY: every element was just written, and `MaybeUninit<E>` has `E`'s layout.
    unsafe { &mut *(dst as *mut [MaybeUninit<E>] as *mut [E]) }
}

/// `dst = lhs · rhs` (row-major `m × n`) when one of `m`, `k`, `n` is 1 and the vector
/// operands run along contiguous memory; returns `false` (writing nothing) otherwise.
pub(crate) fn unit_dim_product<E: Float>(
    dst: &mut [MaybeUninit<E>],
    lhs: MatRef<'_, E>,
    rhs: MatRef<'_, E>,
    simd: bool,
) -> bool {
    let (m, k, n) = (lhs.rows, lhs.cols, rhs.cols);
    if k == 1 {
        // The outer product: row i is lhs[i]·(rhs's row).
        let Some(r) = rhs.row(0) else { return false };
        vectorize(simd, || {
            for (i, row) in dst.chunks_exact_mut(n).enumerate() {
                let a = lhs.at(i, 0);
                for (d, &b) in row.iter_mut().zip(r) {
                    d.write(a * b);
                }
            }
        });
        return true;
    }
    if n == 1 {
        // Matrix · vector.
        let Some(x) = rhs.col(0) else { return false };
        if lhs.cs == 1 {
            vectorize(simd, || {
                for (i, d) in dst.iter_mut().enumerate() {
                    d.write(dot(lhs.row(i).expect("contiguous rows"), x));
                }
            });
            return true;
        }
        if lhs.rs == 1 {
            // A transposed matrix: a sum of its contiguous columns.
            let acc = zeroed(dst);
            vectorize(simd, || {
                for (p, &s) in x.iter().enumerate() {
                    axpy(acc, s, lhs.col(p).expect("contiguous columns"));
                }
            });
            return true;
        }
        return false;
    }
    if m == 1 {
        // Vector · matrix.
        let Some(x) = lhs.row(0) else { return false };
        if rhs.rs == 1 {
            vectorize(simd, || {
                for (j, d) in dst.iter_mut().enumerate() {
                    d.write(dot(x, rhs.col(j).expect("contiguous columns")));
                }
            });
            return true;
        }
        if rhs.cs == 1 {
            let acc = zeroed(dst);
            vectorize(simd, || {
                for (p, &s) in x.iter().enumerate() {
                    axpy(acc, s, rhs.row(p).expect("contiguous rows"));
                }
            });
            return true;
        }
    }
    false
}
