//! Conversions with `Vec` and nalgebra's matrices and vectors (dynamic and static).
//!
//! ```
//! use adjoint_runtime::tensor::Tensor;
//! use nalgebra::DMatrix;
//! let m = DMatrix::from_row_slice(2, 3, &[1.0_f64, 2.0, 3.0, 4.0, 5.0, 6.0]);
//! let t = Tensor::from(&m);
//! assert_eq!(t.shape(), &[2, 3]);
//! assert_eq!(t.to_vec(), vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0]);
//! assert_eq!(t.t().to_dmatrix(), m.transpose());
//! ```

use nalgebra::{DMatrix, DVector, Dim, Matrix, RawStorage, SMatrix, SVector};

use super::{ShapeFmt, Tensor};
use crate::Float;

impl<E: Float> From<Vec<E>> for Tensor<E> {
    /// A 1-D tensor.
    fn from(data: Vec<E>) -> Self {
        let n = data.len();
        Tensor::from_parts(data, vec![n])
    }
}

/// A 2-D `[nrows, ncols]` tensor with the elements of `m` (copied to row-major order).
fn from_matrix<E: Float, R: Dim, C: Dim, S: RawStorage<E, R, C>>(m: &Matrix<E, R, C, S>) -> Tensor<E> {
    let (r, c) = m.shape();
    let mut data = Vec::with_capacity(r * c);
    for i in 0..r {
        data.extend((0..c).map(|j| m[(i, j)]));
    }
    Tensor::from_parts(data, vec![r, c])
}

impl<E: Float> From<&DMatrix<E>> for Tensor<E> {
    /// A 2-D `[nrows, ncols]` tensor (copied to row-major order).
    fn from(m: &DMatrix<E>) -> Self {
        from_matrix(m)
    }
}

impl<E: Float, const R: usize, const C: usize> From<&SMatrix<E, R, C>> for Tensor<E> {
    /// A 2-D `[R, C]` tensor (copied to row-major order). An `SVector<E, D>` is a
    /// `[D, 1]` column; `Tensor::from(v.as_slice().to_vec())` gives a 1-D tensor.
    fn from(m: &SMatrix<E, R, C>) -> Self {
        from_matrix(m)
    }
}

impl<E: Float> From<&DVector<E>> for Tensor<E> {
    /// A 1-D tensor.
    fn from(v: &DVector<E>) -> Self {
        Tensor::from_parts(v.as_slice().to_vec(), vec![v.len()])
    }
}

impl<E: Float> Tensor<E> {
    /// The 2-D tensor as a matrix. Panics unless `ndim() == 2`.
    pub fn to_dmatrix(&self) -> DMatrix<E> {
        if self.ndim() != 2 {
            panic!("adjoint: `to_dmatrix` needs a 2-D tensor, got shape {}", ShapeFmt(&self.shape));
        }
        let (r, c) = (self.shape[0], self.shape[1]);
        // A transposed contiguous tensor is already column-major.
        let t = self.t();
        let read = t.read();
        match read.as_slice() {
            Some(col_major) => DMatrix::from_column_slice(r, c, col_major),
            None => DMatrix::from_row_slice(r, c, &self.to_vec()),
        }
    }

    /// The 1-D tensor as a vector. Panics unless `ndim() == 1`.
    pub fn to_dvector(&self) -> DVector<E> {
        if self.ndim() != 1 {
            panic!("adjoint: `to_dvector` needs a 1-D tensor, got shape {}", ShapeFmt(&self.shape));
        }
        DVector::from_vec(self.to_vec())
    }

    /// The `[R, C]` tensor as a static matrix. Panics unless the shape is `[R, C]`.
    pub fn to_smatrix<const R: usize, const C: usize>(&self) -> SMatrix<E, R, C> {
        if self.shape[..] != [R, C] {
            panic!(
                "adjoint: `to_smatrix::<{R}, {C}>` needs a tensor of shape [{R}, {C}], got shape {}",
                ShapeFmt(&self.shape)
            );
        }
        SMatrix::from_row_slice(&self.to_vec())
    }

    /// The `[D]` tensor as a static vector. Panics unless the shape is `[D]`.
    pub fn to_svector<const D: usize>(&self) -> SVector<E, D> {
        if self.shape[..] != [D] {
            panic!("adjoint: `to_svector::<{D}>` needs a tensor of shape [{D}], got shape {}", ShapeFmt(&self.shape));
        }
        SVector::from_column_slice(&self.to_vec())
    }
}
