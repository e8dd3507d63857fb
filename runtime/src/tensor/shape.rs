//! Layout operations: reshaping and transposing views, slicing, joining, gathering and
//! broadcasting.
//!
//! [`Tensor::t`], [`Tensor::transpose`], [`Tensor::narrow`], [`Tensor::select`],
//! [`Tensor::broadcast_to`] and the [`Tensor::reshape`] of a contiguous tensor are
//! views: they share the storage and copy nothing.

use super::{ShapeFmt, Tensor};
use crate::kernels::layout::{broadcast_strides, contiguous_strides};
use crate::Float;

/// Panics unless `axis < ndim`, naming the operation.
fn check_axis(shape: &[usize], axis: usize, op: &str) {
    if axis >= shape.len() {
        panic!("adjoint: axis {} is out of range for shape {} in `{}`", axis, ShapeFmt(shape), op);
    }
}

impl<E: Float> Tensor<E> {
    /// The same elements (row-major order) with another shape: a view when `self` is
    /// contiguous, else a copy.
    ///
    /// Panics if the numbers of elements differ.
    pub fn reshape(&self, shape: &[usize]) -> Self {
        let n: usize = shape.iter().product();
        if n != self.numel() {
            panic!(
                "adjoint: cannot reshape a tensor of shape {} ({} elements) to {} ({} elements)",
                ShapeFmt(&self.shape),
                self.numel(),
                ShapeFmt(shape),
                n
            );
        }
        let base = self.contiguous();
        base.with_layout(shape.to_vec(), contiguous_strides(shape), base.offset)
    }

    /// The transpose of a 2-D tensor, as a view (a 0-d or 1-d tensor is returned as is).
    /// [`Tensor::matmul`] consumes the view without copying.
    ///
    /// Panics on more than 2 dimensions (use [`Tensor::transpose`]).
    pub fn t(&self) -> Self {
        match self.ndim() {
            0 | 1 => self.clone(),
            2 => self.transpose(0, 1),
            _ => panic!(
                "adjoint: `t` needs a tensor of at most 2 dimensions, got shape {}; use `transpose`",
                ShapeFmt(&self.shape)
            ),
        }
    }

    /// Axes `d0` and `d1` swapped, as a view.
    pub fn transpose(&self, d0: usize, d1: usize) -> Self {
        check_axis(&self.shape, d0, "transpose");
        check_axis(&self.shape, d1, "transpose");
        let (mut shape, mut strides) = (self.shape.clone(), self.strides.clone());
        shape.swap(d0, d1);
        strides.swap(d0, d1);
        self.with_layout(shape, strides, self.offset)
    }

    /// `len` entries of `axis` from `start`, as a view.
    pub fn narrow(&self, axis: usize, start: usize, len: usize) -> Self {
        check_axis(&self.shape, axis, "narrow");
        if start + len > self.shape[axis] {
            panic!(
                "adjoint: `narrow` of {}..{} along axis {} is out of range for shape {}",
                start,
                start + len,
                axis,
                ShapeFmt(&self.shape)
            );
        }
        let mut shape = self.shape.clone();
        shape[axis] = len;
        let offset = if len == 0 { self.offset } else { self.offset + start * self.strides[axis] };
        self.with_layout(shape, self.strides.clone(), offset)
    }

    /// Entry `index` of `axis`, with `axis` removed, as a view.
    pub fn select(&self, axis: usize, index: usize) -> Self {
        check_axis(&self.shape, axis, "select");
        if index >= self.shape[axis] {
            panic!(
                "adjoint: `select` of index {} along axis {} is out of range for shape {}",
                index,
                axis,
                ShapeFmt(&self.shape)
            );
        }
        let (mut shape, mut strides) = (self.shape.clone(), self.strides.clone());
        shape.remove(axis);
        let stride = strides.remove(axis);
        self.with_layout(shape, strides, self.offset + index * stride)
    }

    /// A new axis of length 1 at position `axis` (`0..=ndim`), as a view.
    pub fn unsqueeze(&self, axis: usize) -> Self {
        if axis > self.ndim() {
            panic!("adjoint: axis {} is out of range for `unsqueeze` of shape {}", axis, ShapeFmt(&self.shape));
        }
        let (mut shape, mut strides) = (self.shape.clone(), self.strides.clone());
        shape.insert(axis, 1);
        strides.insert(axis, 0);
        self.with_layout(shape, strides, self.offset)
    }

    /// The tensors joined along an existing `axis`.
    ///
    /// Panics if `tensors` is empty or their shapes differ off `axis`.
    pub fn cat(tensors: &[Self], axis: usize) -> Self {
        let first = tensors.first().unwrap_or_else(|| panic!("adjoint: `cat` of no tensors"));
        check_axis(&first.shape, axis, "cat");
        let mut shape = first.shape.clone();
        shape[axis] = 0;
        for t in tensors {
            let compatible = t.ndim() == first.ndim()
                && t.shape.iter().zip(&first.shape).enumerate().all(|(d, (a, b))| d == axis || a == b);
            if !compatible {
                panic!(
                    "adjoint: cannot `cat` shapes {} and {} along axis {}",
                    ShapeFmt(&first.shape),
                    ShapeFmt(&t.shape),
                    axis
                );
            }
            shape[axis] += t.shape[axis];
        }
        let outer: usize = shape[..axis].iter().product();
        let inner: usize = shape[axis + 1..].iter().product();
        let row = shape[axis] * inner;
        let mut data = vec![E::ZERO; outer * row];
        let mut col = 0;
        for t in tensors {
            let width = t.shape[axis] * inner;
            let src = t.contiguous();
            let src_read = src.read();
            let src = src_read.as_slice().expect("contiguous");
            if width > 0 {
                for (o, chunk) in src.chunks_exact(width).enumerate() {
                    data[o * row + col..o * row + col + width].copy_from_slice(chunk);
                }
            }
            col += width;
        }
        Tensor::from_parts(data, shape)
    }

    /// `Tensor::cat(&[self, other], axis)` as a method: the form `#[differentiable]` code
    /// lowers a two-tensor `cat` to (its rule is [`Cat2`](crate::rules::Cat2)).
    pub fn cat2(&self, other: &Self, axis: usize) -> Self {
        Tensor::cat(&[self.clone(), other.clone()], axis)
    }

    /// `Tensor::cat(&[self, second, third], axis)` as a method (see [`Tensor::cat2`];
    /// its rule is [`Cat3`](crate::rules::Cat3)).
    pub fn cat3(&self, second: &Self, third: &Self, axis: usize) -> Self {
        Tensor::cat(&[self.clone(), second.clone(), third.clone()], axis)
    }

    /// The tensors (all of one shape) stacked along a new `axis` (`0..=ndim`).
    pub fn stack(tensors: &[Self], axis: usize) -> Self {
        let first = tensors.first().unwrap_or_else(|| panic!("adjoint: `stack` of no tensors"));
        for t in tensors {
            if t.shape != first.shape {
                panic!("adjoint: cannot `stack` shapes {} and {}", ShapeFmt(&first.shape), ShapeFmt(&t.shape));
            }
        }
        if axis > first.ndim() {
            panic!("adjoint: axis {} is out of range for `stack` of shape {}", axis, ShapeFmt(&first.shape));
        }
        let views: Vec<Self> = tensors.iter().map(|t| t.unsqueeze(axis)).collect();
        Tensor::cat(&views, axis)
    }

    /// Rows `rows` of a 2-D tensor, in that order (repeats allowed): `[rows.len(), m]`.
    pub fn index_rows(&self, rows: &[usize]) -> Self {
        if self.ndim() != 2 {
            panic!("adjoint: `index_rows` needs a 2-D tensor, got shape {}", ShapeFmt(&self.shape));
        }
        let (n, m) = (self.shape[0], self.shape[1]);
        let (rs, cs) = (self.strides[0], self.strides[1]);
        let mut data = Vec::with_capacity(rows.len() * m);
        let read = self.read();
        let buffer = read.buffer();
        for &r in rows {
            if r >= n {
                panic!("adjoint: row {} is out of range in `index_rows` of shape {}", r, ShapeFmt(&self.shape));
            }
            let base = self.offset + r * rs;
            if cs == 1 {
                data.extend_from_slice(&buffer[base..base + m]);
            } else {
                data.extend((0..m).map(|j| buffer[base + j * cs]));
            }
        }
        Tensor::from_parts(data, vec![rows.len(), m])
    }

    /// This tensor repeated to `shape` by NumPy broadcasting, as a view (stride 0
    /// along the repeated axes).
    pub fn broadcast_to(&self, shape: &[usize]) -> Self {
        match broadcast_strides(&self.shape, &self.strides, shape) {
            Some(strides) => self.with_layout(shape.to_vec(), strides, self.offset),
            None => panic!(
                "adjoint: cannot broadcast shape {} to {} in `broadcast_to`",
                ShapeFmt(&self.shape),
                ShapeFmt(shape)
            ),
        }
    }
}

/// The derivative companions `#[differentiable]` code calls for `Tensor::cat(&parts,
/// axis)` and `Tensor::stack(&parts, axis)` of a run-time list (a `Vec` of tensors built
/// in a loop, say): the gradient of the list is a `Vec` holding each part's slice of the
/// cotangent (a view, nothing copied). A list written out in the call (`&[a, b]`) is
/// lowered to `cat2`/`cat3` instead, each part an operand of its own.
#[doc(hidden)]
impl<E: Float> Tensor<E> {
    pub fn __adjoint_d1_cat(tensors: &[Self], axis: usize, cotangent: Self) -> (Vec<Self>, ()) {
        (cat_adjoint(&part_lengths(tensors, axis), axis, &cotangent), ())
    }

    pub fn __adjoint_d1_masked_cat<M>(tensors: &[Self], axis: usize, cotangent: Self, _: M) -> (Vec<Self>, ()) {
        Self::__adjoint_d1_cat(tensors, axis, cotangent)
    }

    #[allow(clippy::type_complexity)]
    pub fn __adjoint_split_cat<M>(
        tensors: &[Self],
        axis: usize,
        _: M,
    ) -> (Self, Box<dyn FnOnce(Self) -> (Vec<Self>, ())>) {
        // The pullback keeps the parts' lengths, not the parts.
        let lengths = part_lengths(tensors, axis);
        (Tensor::cat(tensors, axis), Box::new(move |cotangent| (cat_adjoint(&lengths, axis, &cotangent), ())))
    }

    pub fn __adjoint_d1_stack(tensors: &[Self], axis: usize, cotangent: Self) -> (Vec<Self>, ()) {
        (stack_adjoint(tensors.len(), axis, &cotangent), ())
    }

    pub fn __adjoint_d1_masked_stack<M>(tensors: &[Self], axis: usize, cotangent: Self, _: M) -> (Vec<Self>, ()) {
        Self::__adjoint_d1_stack(tensors, axis, cotangent)
    }

    #[allow(clippy::type_complexity)]
    pub fn __adjoint_split_stack<M>(
        tensors: &[Self],
        axis: usize,
        _: M,
    ) -> (Self, Box<dyn FnOnce(Self) -> (Vec<Self>, ())>) {
        let count = tensors.len();
        (Tensor::stack(tensors, axis), Box::new(move |cotangent| (stack_adjoint(count, axis, &cotangent), ())))
    }
}

/// The parts' lengths along `axis` (`Tensor::cat` checks that they have one).
fn part_lengths<E: Float>(parts: &[Tensor<E>], axis: usize) -> Vec<usize> {
    parts.iter().map(|p| p.shape()[axis]).collect()
}

/// Each part's slice of the cotangent of `Tensor::cat` of parts of `lengths` along `axis`.
fn cat_adjoint<E: Float>(lengths: &[usize], axis: usize, cotangent: &Tensor<E>) -> Vec<Tensor<E>> {
    let mut start = 0;
    lengths
        .iter()
        .map(|&len| {
            let slice = cotangent.narrow(axis, start, len);
            start += len;
            slice
        })
        .collect()
}

/// Each part's slice of the cotangent of `Tensor::stack` of `count` parts along `axis`.
fn stack_adjoint<E: Float>(count: usize, axis: usize, cotangent: &Tensor<E>) -> Vec<Tensor<E>> {
    (0..count).map(|i| cotangent.select(axis, i)).collect()
}
