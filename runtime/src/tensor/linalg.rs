//! Matrix products.

use super::ops::broadcast_or_panic;
use super::{ShapeFmt, Tensor};
use crate::kernels::isa::vectorize;
use crate::kernels::layout::{broadcast_strides, Dims, SMALL_MAP};
use crate::kernels::matmul::{batched_matmul, Batched};
use crate::kernels::KernelParams;
use crate::Float;
use core::mem::MaybeUninit;

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
        if let (Some(a_mat), Some(b_mat)) = (MatrixView::lhs(a), MatrixView::rhs(b)) {
            if a_mat.cols == b_mat.rows && a_mat.rows * a_mat.cols * b_mat.cols <= TINY_PRODUCT {
                let shape = product_shape(Dims::new(), (a_mat.rows, b_mat.cols), (a.ndim() == 1, b.ndim() == 1));
                return tiny_product(a, a_mat, b, b_mat, shape);
            }
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

    /// `op(self) · op(rhs)`, where `op` transposes a 2-D operand when its flag is set:
    /// the products of the matmul adjoints, which build no transposed view when the
    /// product is small.
    pub(crate) fn matmul_t(&self, transpose_self: bool, rhs: &Self, transpose_rhs: bool) -> Self {
        let op = |t: &Self, view: Option<MatrixView>, transpose: bool| match transpose && t.ndim() == 2 {
            true => view.map(MatrixView::t),
            false => view,
        };
        let (a_mat, b_mat) =
            (op(self, MatrixView::lhs(self), transpose_self), op(rhs, MatrixView::rhs(rhs), transpose_rhs));
        if let (Some(a_mat), Some(b_mat)) = (a_mat, b_mat) {
            if a_mat.cols == b_mat.rows && a_mat.rows * a_mat.cols * b_mat.cols <= TINY_PRODUCT {
                let shape = product_shape(Dims::new(), (a_mat.rows, b_mat.cols), (self.ndim() == 1, rhs.ndim() == 1));
                return tiny_product(self, a_mat, rhs, b_mat, shape);
            }
        }
        let view = |t: &Self, transpose: bool| if transpose { t.t() } else { t.clone() };
        view(self, transpose_self).matmul(&view(rhs, transpose_rhs))
    }

    /// The outer product `self ⊗ v` of two vectors, a matrix.
    pub(crate) fn outer(&self, v: &Self) -> Self {
        if let ([m], [su], [n], [sv]) = (&self.shape[..], &self.strides[..], &v.shape[..], &v.strides[..]) {
            if m * n <= TINY_PRODUCT {
                let (u_read, v_read) = (self.read(), v.read());
                if let (Some(us), Some(vs)) = (u_read.as_slice(), v_read.as_slice()) {
                    return Tensor::filled(Dims::from_slice(&[*m, *n]), |out| {
                        for (row, &a) in out.chunks_exact_mut((*n).max(1)).zip(us) {
                            for (d, &b) in row.iter_mut().zip(vs) {
                                // `0 + a·b`, as every element of a product is a sum from zero.
                                d.write(E::ZERO + a * b);
                            }
                        }
                    });
                }
                let column = MatrixView { rows: *m, cols: 1, rs: *su, cs: 0 };
                let row = MatrixView { rows: 1, cols: *n, rs: 0, cs: *sv };
                return tiny_product(self, column, v, row, Dims::from_slice(&[*m, *n]));
            }
        }
        self.unsqueeze(1).matmul(&v.unsqueeze(0))
    }

    /// `self += u ⊗ v` in place, for a matrix this tensor alone holds (the adjoint of
    /// a weight being summed over the steps of a loop); returns `false`, changing
    /// nothing, if `self` is not such a matrix or the shapes do not fit.
    pub(crate) fn add_outer(&mut self, u: &Self, v: &Self) -> bool {
        if self.untouched_zero || u.ndim() != 1 || v.ndim() != 1 || self.shape[..] != [u.shape[0], v.shape[0]] {
            return false;
        }
        let isa = KernelParams::current().isa;
        let Some(acc) = self.unique_slice_mut() else { return false };
        // (Strided vectors, which are rare, are made contiguous first.)
        let (u_copy, v_copy);
        let u = if u.is_contiguous() {
            u
        } else {
            u_copy = u.contiguous();
            &u_copy
        };
        let v = if v.is_contiguous() {
            v
        } else {
            v_copy = v.contiguous();
            &v_copy
        };
        let (u_read, v_read) = (u.read(), v.read());
        let (us, vs) = (u_read.as_slice().expect("contiguous"), v_read.as_slice().expect("contiguous"));
        if vs.is_empty() {
            return true;
        }
        let small = acc.len() <= SMALL_MAP;
        let mut add = || {
            for (row, &a) in acc.chunks_exact_mut(vs.len()).zip(us) {
                for (d, &b) in row.iter_mut().zip(vs) {
                    *d += a * b;
                }
            }
        };
        match small {
            // A small matrix: the SIMD dispatch would cost more than the loop.
            true => add(),
            false => vectorize(isa, add),
        }
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
#[inline]
fn product_shape(batch: Dims, (m, n): (usize, usize), (a_vec, b_vec): (bool, bool)) -> Dims {
    if batch.is_empty() {
        // Written whole: a shape built by pushes is read back wider than it was written.
        return match (a_vec, b_vec) {
            (false, false) => Dims::from_slice(&[m, n]),
            (false, true) => Dims::from_slice(&[m]),
            (true, false) => Dims::from_slice(&[n]),
            (true, true) => Dims::new(),
        };
    }
    let mut shape = batch;
    if !a_vec {
        shape.push(m);
    }
    if !b_vec {
        shape.push(n);
    }
    shape
}

/// A 1-D or 2-D operand of an unbatched product, as a matrix: a vector is a row on
/// the left and a column on the right, as in [`Tensor::matmul`].
#[derive(Clone, Copy)]
struct MatrixView {
    rows: usize,
    cols: usize,
    /// The strides between rows and between columns.
    rs: usize,
    cs: usize,
}

impl MatrixView {
    fn lhs<E: Float>(t: &Tensor<E>) -> Option<Self> {
        match (&t.shape[..], &t.strides[..]) {
            ([k], [s]) => Some(MatrixView { rows: 1, cols: *k, rs: 0, cs: *s }),
            ([m, k], [rs, cs]) => Some(MatrixView { rows: *m, cols: *k, rs: *rs, cs: *cs }),
            _ => None,
        }
    }

    fn rhs<E: Float>(t: &Tensor<E>) -> Option<Self> {
        match &t.strides[..] {
            [s] => Some(MatrixView { rows: t.shape[0], cols: 1, rs: *s, cs: 0 }),
            _ => MatrixView::lhs(t),
        }
    }

    fn t(self) -> Self {
        MatrixView { rows: self.cols, cols: self.rows, rs: self.cs, cs: self.rs }
    }

    /// Whether every element lies inside a buffer of `len` elements from `offset`.
    fn fits(&self, offset: usize, len: usize) -> bool {
        let last = |n: usize, stride: usize| n.saturating_sub(1).checked_mul(stride);
        match (last(self.rows, self.rs), last(self.cols, self.cs)) {
            (Some(r), Some(c)) => self.rows == 0 || self.cols == 0 || offset.saturating_add(r).saturating_add(c) < len,
            _ => false,
        }
    }
}

/// `a · b` of `shape` for an unbatched product of at most [`TINY_PRODUCT`]
/// multiply-adds, each element summed over `k` in order.
fn tiny_product<E: Float>(
    a: &Tensor<E>,
    a_mat: MatrixView,
    b: &Tensor<E>,
    b_mat: MatrixView,
    shape: Dims,
) -> Tensor<E> {
    let (a_read, b_read) = (a.read(), b.read());
    let (ad, bd) = (a_read.buffer(), b_read.buffer());
    assert!(
        a_mat.fits(a.offset, ad.len()) && b_mat.fits(b.offset, bd.len()),
        "adjoint: internal error: a matmul operand's layout exceeds its buffer"
    );
    let (k, n) = (a_mat.cols, b_mat.cols);
    debug_assert_eq!(shape.iter().product::<usize>(), a_mat.rows * n);
    // Four elements at a time, each summed over `k` in order: four independent chains
    // of additions instead of one (a 5×5 matrix times a vector is latency-bound).
    const GROUP: usize = 4;
    if n == 1 && k > 0 {
        let (out, b_col) = (a_mat.rows, &bd[b.offset..]);
        if a_mat.cs == 1 && b_mat.rs == 1 {
            // A matrix (rows contiguous) times a contiguous vector: dot products.
            return Tensor::filled(shape, |data| {
                for (i, d) in data.iter_mut().enumerate() {
                    let row = &ad[a.offset + i * a_mat.rs..][..k];
                    d.write(row.iter().zip(&b_col[..k]).fold(E::ZERO, |sum, (&x, &y)| sum + x * y));
                }
            });
        }
        if a_mat.rs == 1 {
            // A transposed matrix (`Wᵀ·g`: columns contiguous) times a vector: the
            // columns scaled and summed, each element still summed over `k` in order.
            return Tensor::filled(shape, |data| {
                data.iter_mut().for_each(|d| _ = d.write(E::ZERO));
                // SAFETY: every element was just initialised.
                let sums = unsafe { &mut *(data as *mut [MaybeUninit<E>] as *mut [E]) };
                for p in 0..k {
                    let (column, y) = (&ad[a.offset + p * a_mat.cs..][..out], b_col[p * b_mat.rs]);
                    for (sum, &x) in sums.iter_mut().zip(column) {
                        *sum += x * y;
                    }
                }
            });
        }
    }
    Tensor::filled(shape, |data| {
        // The row and column of the group's first element.
        let (mut i, mut j) = (0, 0);
        for out in data.chunks_mut(GROUP) {
            let group = out.len();
            // The start of each element's row of `a` and column of `b` (the last one repeated
            // to fill the group).
            let (mut rows, mut cols) = ([0; GROUP], [0; GROUP]);
            for g in 0..GROUP {
                (rows[g], cols[g]) = (a.offset + i * a_mat.rs, b.offset + j * b_mat.cs);
                if g + 1 < group {
                    (i, j) = if j + 1 == n { (i + 1, 0) } else { (i, j + 1) };
                }
            }
            (i, j) = if j + 1 == n { (i + 1, 0) } else { (i, j + 1) };
            let mut sums = [E::ZERO; GROUP];
            for p in 0..k {
                for g in 0..GROUP {
                    // SAFETY: `fits` checked the last element of each operand, and every
                    // index here is at most that.
                    unsafe {
                        sums[g] += *ad.get_unchecked(rows[g] + p * a_mat.cs) * *bd.get_unchecked(cols[g] + p * b_mat.rs)
                    };
                }
            }
            // Element by element: a copy of a run of variable length is a call to `memcpy`.
            for (d, s) in out.iter_mut().zip(sums) {
                d.write(s);
            }
        }
    })
}
