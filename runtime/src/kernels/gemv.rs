//! Matrix products with a unit dimension that are sums of contiguous vectors: the outer
//! product, a transposed matrix times a vector (`Wᵀ·g`, the gradient of a
//! matrix·vector product) and a vector times a matrix. Each element of the matrix is
//! used once, so they are bound by memory, not arithmetic, and a GEMM's packing buys
//! nothing: at the sizes of an RNN step (128×128) the `gemm` crate spends longer
//! dispatching than multiplying. Here they are `axpy` loops, vectorised, in a fixed order
//! (so results do not depend on the thread count).
//!
//! A matrix·vector product over contiguous rows (a dot product per row) is not here: it
//! goes to `kernels::narrow`'s register tiles, or to the packed product below that
//! level, both faster than the lane-accumulator loop that LLVM vectorises from portable
//! code (`kernels::reduce`'s pattern).

use core::mem::MaybeUninit;

use super::gemm::MatRef;
use super::isa::{vectorize, Isa};
use crate::Float;

/// Products up to this many multiply-adds take the loops below; larger ones go to the
/// packed product, which runs them on several threads.
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

/// `dst` (all of it written) as initialised elements.
fn zeroed<E: Float>(dst: &mut [MaybeUninit<E>]) -> &mut [E] {
    for d in dst.iter_mut() {
        d.write(E::ZERO);
    }
    // SAFETY: every element was just written, and `MaybeUninit<E>` has `E`'s layout.
    unsafe { &mut *(dst as *mut [MaybeUninit<E>] as *mut [E]) }
}

/// Columns of `dst` that [`sum_scaled`] sums in registers at once.
const SUM_COLS: usize = 64;

/// `dst = Σ_p x[p]·vector(p)`, each vector contiguous and as long as `dst`.
///
/// `dst` is summed [`SUM_COLS`] elements at a time in a local block that stays in
/// registers across the whole sum: adding each scaled vector into `dst` in memory
/// instead chains every step through a store and a reload (Wᵀ·g of a 128×128 `W`:
/// 1.86 µs that way). Each element still adds its terms in the order of `p`.
#[inline(always)]
fn sum_scaled<'a, E: Float>(dst: &mut [MaybeUninit<E>], x: &[E], vector: impl Fn(usize) -> &'a [E], isa: Isa) {
    let acc = zeroed(dst);
    vectorize(
        isa,
        #[inline(always)]
        || {
            for (c, out) in acc.chunks_mut(SUM_COLS).enumerate() {
                let c0 = c * SUM_COLS;
                if let Ok(out) = <&mut [E; SUM_COLS]>::try_from(&mut *out) {
                    let mut block = [E::ZERO; SUM_COLS];
                    for (p, &s) in x.iter().enumerate() {
                        let v: &[E; SUM_COLS] = vector(p)[c0..c0 + SUM_COLS].try_into().expect("a full block");
                        for (a, &v) in block.iter_mut().zip(v) {
                            *a += s * v;
                        }
                    }
                    *out = block;
                } else {
                    for (p, &s) in x.iter().enumerate() {
                        for (a, &v) in out.iter_mut().zip(&vector(p)[c0..]) {
                            *a += s * v;
                        }
                    }
                }
            }
        },
    );
}

/// `dst = lhs · rhs` (row-major `m × n`) when it is an outer product or a sum of
/// contiguous rows or columns scaled by a vector; returns `false` (writing nothing)
/// otherwise.
pub(crate) fn unit_dim_product<E: Float>(
    dst: &mut [MaybeUninit<E>],
    lhs: MatRef<'_, E>,
    rhs: MatRef<'_, E>,
    isa: Isa,
) -> bool {
    let (m, k, n) = (lhs.rows, lhs.cols, rhs.cols);
    if k == 1 {
        // The outer product: row i is lhs[i]·(rhs's row).
        let Some(r) = rhs.row(0) else { return false };
        vectorize(
            isa,
            #[inline(always)]
            || {
                for (i, row) in dst.chunks_exact_mut(n).enumerate() {
                    let a = lhs.at(i, 0);
                    for (d, &b) in row.iter_mut().zip(r) {
                        d.write(a * b);
                    }
                }
            },
        );
        return true;
    }
    if n == 1 {
        // Matrix · vector, for a transposed matrix: a sum of its contiguous columns.
        let (Some(x), true) = (rhs.col(0), lhs.rs == 1) else { return false };
        sum_scaled(dst, x, |p| lhs.col(p).expect("contiguous columns"), isa);
        return true;
    }
    if m == 1 {
        // Vector · matrix: a sum of the matrix's contiguous rows.
        let (Some(x), true) = (lhs.row(0), rhs.cs == 1) else { return false };
        sum_scaled(dst, x, |p| rhs.row(p).expect("contiguous rows"), isa);
        return true;
    }
    false
}
