//! Matrix products.

use super::ops::broadcast_or_panic;
use super::{ShapeFmt, Tensor};
use crate::kernels::layout::{broadcast_strides, Dims};
use crate::kernels::matmul::{batched_matmul, Batched};
use crate::kernels::simd::vectorize;
use crate::kernels::KernelParams;
use crate::Float;

impl<E: Float> Tensor<E> {
    /// The matrix product, with NumPy's `matmul` rules:
    ///
    /// - `[m, k] × [k, n] → [m, n]`;
    /// - `[m, k] × [k] → [m]` and `[k] × [k, n] → [n]` (a 1-D operand is a column
    ///   or row vector whose unit axis is then dropped); `[k] × [k] → []`;
    /// - `[…, m, k] × […, k, n] → […, m, n]` with the batch axes broadcast, so
    ///   `[b, m, k] × [k, n]` multiplies every matrix of the batch by one matrix.
    ///
    /// Strided operands (such as [`Tensor::t`]) are multiplied in place, without a copy.
    ///
    /// Panics if an operand is 0-d, the inner dimensions differ or the batch axes do not
    /// broadcast.
    pub fn matmul(&self, rhs: &Self) -> Self {
        let (a, b) = (self, rhs);
        if a.ndim() == 0 || b.ndim() == 0 {
            panic!(
                "adjoint: matmul of {} and {}: both operands need at least one dimension",
                ShapeFmt(&a.shape),
                ShapeFmt(&b.shape)
            );
        }
        // A 1-D left operand is a row [1, k]; a 1-D right operand is a column [k, 1].
        let (a_vec, b_vec) = (a.ndim() == 1, b.ndim() == 1);
        let (a_shape, a_strides) = if a_vec {
            (Dims::from_slice(&[1, a.shape[0]]), Dims::from_slice(&[a.shape[0] * a.strides[0], a.strides[0]]))
        } else {
            (a.shape.clone(), a.strides.clone())
        };
        let (b_shape, b_strides) = if b_vec {
            (Dims::from_slice(&[b.shape[0], 1]), Dims::from_slice(&[b.strides[0], 1]))
        } else {
            (b.shape.clone(), b.strides.clone())
        };
        let (na, nb) = (a_shape.len(), b_shape.len());
        let (m, k) = (a_shape[na - 2], a_shape[na - 1]);
        let (k2, n) = (b_shape[nb - 2], b_shape[nb - 1]);
        if k != k2 {
            panic!(
                "adjoint: matmul of {} and {}: inner dimensions {} and {} differ",
                ShapeFmt(&a.shape),
                ShapeFmt(&b.shape),
                k,
                k2
            );
        }
        if na == 2 && nb == 2 && m * n * k <= TINY_PRODUCT {
            let data = tiny_product(a, b, (m, k, n), (&a_strides, &b_strides));
            return Tensor::from_parts(data, product_shape(Dims::new(), (m, n), (a_vec, b_vec)));
        }
        let (batch, a_bs, b_bs) = if na == 2 && nb == 2 {
            (Dims::new(), Dims::new(), Dims::new())
        } else {
            let batch = broadcast_or_panic(&a_shape[..na - 2], &b_shape[..nb - 2], "matmul");
            let a_bs = broadcast_strides(&a_shape[..na - 2], &a_strides[..na - 2], &batch).expect("broadcast");
            let b_bs = broadcast_strides(&b_shape[..nb - 2], &b_strides[..nb - 2], &batch).expect("broadcast");
            (batch, a_bs, b_bs)
        };
        let (a_read, b_read) = (a.read(), b.read());
        let data = batched_matmul(
            &batch,
            (m, k, n),
            Batched {
                data: a_read.buffer(),
                offset: a.offset,
                batch_strides: &a_bs,
                rs: a_strides[na - 2],
                cs: a_strides[na - 1],
            },
            Batched {
                data: b_read.buffer(),
                offset: b.offset,
                batch_strides: &b_bs,
                rs: b_strides[nb - 2],
                cs: b_strides[nb - 1],
            },
            &KernelParams::current(),
        );
        Tensor::from_parts(data, product_shape(batch, (m, n), (a_vec, b_vec)))
    }

    /// `self += u ⊗ v` in place, for a matrix this tensor alone holds (the adjoint of
    /// a weight being summed over the steps of a loop); returns `false`, changing
    /// nothing, if `self` is not such a matrix or the shapes do not fit.
    pub(crate) fn add_outer(&mut self, u: &Self, v: &Self) -> bool {
        if self.untouched_zero || u.ndim() != 1 || v.ndim() != 1 || self.shape[..] != [u.shape[0], v.shape[0]] {
            return false;
        }
        let (u, v) = (u.contiguous(), v.contiguous());
        let (u_read, v_read) = (u.read(), v.read());
        let (us, vs) = (u_read.as_slice().expect("contiguous"), v_read.as_slice().expect("contiguous"));
        let simd = KernelParams::current().simd;
        let Some(acc) = self.unique_slice_mut() else { return false };
        if vs.is_empty() {
            return true;
        }
        vectorize(
            simd,
            #[inline(always)]
            || {
                for (row, &a) in acc.chunks_exact_mut(vs.len()).zip(us) {
                    for (d, &b) in row.iter_mut().zip(vs) {
                        *d += a * b;
                    }
                }
            },
        );
        true
    }
}

/// Products up to this many multiply-adds (`m·k·n`) are computed directly in
/// [`Tensor::matmul`]: the 5×5 products of a small model are a few dozen multiply-adds,
/// and the batch, dispatch and kernel-selection bookkeeping of the general path cost
/// several times as much.
const TINY_PRODUCT: usize = 256;

/// The shape of a product: the batch axes, then `m` unless the left operand was a
/// vector and `n` unless the right one was.
fn product_shape(batch: Dims, (m, n): (usize, usize), (a_vec, b_vec): (bool, bool)) -> Dims {
    let mut shape = batch;
    if !a_vec {
        shape.push(m);
    }
    if !b_vec {
        shape.push(n);
    }
    shape
}

/// The row-major elements of `a · b` for an unbatched product (`a` promoted to
/// `[m, k]`, `b` to `[k, n]` with the given strides), each summed over `k` in order.
fn tiny_product<E: Float>(
    a: &Tensor<E>,
    b: &Tensor<E>,
    (m, k, n): (usize, usize, usize),
    (a_strides, b_strides): (&[usize], &[usize]),
) -> Vec<E> {
    let (a_read, b_read) = (a.read(), b.read());
    let (ad, bd) = (a_read.buffer(), b_read.buffer());
    let (ars, acs, brs, bcs) = (a_strides[0], a_strides[1], b_strides[0], b_strides[1]);
    let mut data = Vec::with_capacity(m * n);
    for i in 0..m {
        let row = a.offset + i * ars;
        for j in 0..n {
            let col = b.offset + j * bcs;
            let mut sum = E::ZERO;
            for p in 0..k {
                sum += ad[row + p * acs] * bd[col + p * brs];
            }
            data.push(sum);
        }
    }
    data
}
