//! Strided views, broadcasting, and the iteration plan every elementwise and reduction
//! kernel walks.
//!
//! A [`Plan`] lays `K` strided operands over one row-major index space (the output's).
//! It drops dimensions of length 1 and merges neighbouring dimensions that are
//! contiguous in every operand, so a same-shape contiguous operation becomes one flat
//! run, `[n, m] ⊕ [m]` becomes `n` runs of length `m` against the same row, and
//! only truly strided layouts pay for index arithmetic. Kernels receive the index space
//! as *runs*: pieces of the innermost dimension, each with the starting offset of every
//! operand and the (constant) inner stride.

use rayon::prelude::*;

pub(crate) use super::dims::Dims;

/// A strided, read-only view of tensor data: element `(i0, i1, …)` is at
/// `data[offset + Σ ik·strides[k]]`. Strides are in elements; a stride of 0 repeats
/// (broadcasts) along that dimension.
#[derive(Clone, Copy, Debug)]
pub(crate) struct View<'a, E> {
    pub data: &'a [E],
    pub shape: &'a [usize],
    pub strides: &'a [usize],
    pub offset: usize,
}

impl<'a, E> View<'a, E> {
    /// The number of elements.
    pub fn len(&self) -> usize {
        self.shape.iter().product()
    }

    /// The elements as one row-major slice, if the view is laid out that way.
    pub fn as_contiguous(&self) -> Option<&'a [E]> {
        if is_contiguous(self.shape, self.strides) {
            Some(&self.data[self.offset..self.offset + self.len()])
        } else {
            None
        }
    }
}

/// Up to this many elements, an elementwise kernel over contiguous operands is one
/// plain loop: planning, SIMD dispatch and the parallel decision would cost more than
/// the work (a 5-vector's sum costs ~100 ns through them, ~10 ns without).
pub(crate) const SMALL_MAP: usize = 64;

/// `v`'s elements as one row-major slice of `shape`, if `v` is contiguous and has at
/// most [`SMALL_MAP`] elements.
#[inline]
pub(crate) fn small_contiguous<'a, E>(shape: &[usize], v: &View<'a, E>) -> Option<&'a [E]> {
    let n: usize = shape.iter().product();
    (n <= SMALL_MAP && is_contiguous(shape, v.strides)).then(|| &v.data[v.offset..v.offset + n])
}

/// Row-major strides of `shape`.
#[inline]
pub(crate) fn contiguous_strides(shape: &[usize]) -> Dims {
    // Vectors and matrices directly: every new tensor's strides are computed here.
    match *shape {
        [] => return Dims::new(),
        [_] => return Dims::from_slice(&[1]),
        [_, n] => return Dims::from_slice(&[n, 1]),
        _ => {}
    }
    let mut strides = Dims::from_elem(0, shape.len());
    let mut s = 1;
    for (st, &n) in strides.iter_mut().zip(shape).rev() {
        *st = s;
        s *= n;
    }
    strides
}

/// Whether `strides` lay `shape` out row-major without gaps (dimensions of length 1 may
/// have any stride).
pub(crate) fn is_contiguous(shape: &[usize], strides: &[usize]) -> bool {
    // Scalars, vectors and matrices directly: this is asked of nearly every operand.
    match (shape, strides) {
        ([], _) => return true,
        ([n], [s]) => return *n <= 1 || *s == 1,
        ([m, n], [rs, cs]) => return *m == 0 || *n == 0 || ((*n == 1 || *cs == 1) && (*m == 1 || *rs == *n)),
        _ => {}
    }
    if shape.contains(&0) {
        return true;
    }
    let mut expected = 1;
    for (&n, &s) in shape.iter().zip(strides).rev() {
        if n != 1 && s != expected {
            return false;
        }
        expected *= n;
    }
    true
}

/// The NumPy broadcast of two shapes, or `None` if they are incompatible.
pub(crate) fn broadcast_shapes(a: &[usize], b: &[usize]) -> Option<Dims> {
    let nd = a.len().max(b.len());
    let mut out = Dims::from_elem(0, nd);
    for (i, o) in out.iter_mut().enumerate() {
        let da = if i + a.len() >= nd { a[i + a.len() - nd] } else { 1 };
        let db = if i + b.len() >= nd { b[i + b.len() - nd] } else { 1 };
        *o = match (da, db) {
            (x, y) if x == y => x,
            (1, y) => y,
            (x, 1) => x,
            _ => return None,
        };
    }
    Some(out)
}

/// The strides that read a tensor of `shape`/`strides` broadcast to `target` (stride
/// 0 along new and stretched dimensions), or `None` if it does not broadcast.
pub(crate) fn broadcast_strides(shape: &[usize], strides: &[usize], target: &[usize]) -> Option<Dims> {
    if shape.len() > target.len() {
        return None;
    }
    let lead = target.len() - shape.len();
    let mut out = Dims::from_elem(0, target.len());
    for (i, &t) in target.iter().enumerate().skip(lead) {
        let (n, s) = (shape[i - lead], strides[i - lead]);
        out[i] = if n == t {
            s
        } else if n == 1 {
            0
        } else {
            return None;
        };
    }
    Some(out)
}

/// `K` strided operands over one row-major index space, with trivial dimensions
/// dropped and contiguous neighbours merged.
#[derive(Clone, Debug)]
pub(crate) struct Plan<const K: usize> {
    /// The merged dimensions, outermost first; never empty.
    dims: Dims,
    /// `strides[k][d]`: the stride of operand `k` along merged dimension `d`.
    strides: [Dims; K],
    offsets: [usize; K],
    len: usize,
}

impl<const K: usize> Plan<K> {
    /// A plan over `shape`; each operand is given by its strides (already broadcast to
    /// `shape`) and offset.
    pub fn new(shape: &[usize], operands: [(&[usize], usize); K]) -> Self {
        let len = shape.iter().product();
        // The common case, every operand laid out row-major: one run.
        if len > 0 && operands.iter().all(|(strides, _)| is_contiguous(shape, strides)) {
            return Plan {
                dims: Dims::from_slice(&[len]),
                strides: core::array::from_fn(|_| Dims::from_slice(&[1])),
                offsets: core::array::from_fn(|k| operands[k].1),
                len,
            };
        }
        let mut dims = Dims::new();
        let mut strides: [Dims; K] = core::array::from_fn(|_| Dims::new());
        for (d, &n) in shape.iter().enumerate() {
            if n == 1 {
                continue;
            }
            if let Some(last) = dims.last_mut() {
                if (0..K).all(|k| strides[k].last() == Some(&(operands[k].0[d] * n))) {
                    *last *= n;
                    for (k, st) in strides.iter_mut().enumerate() {
                        *st.last_mut().unwrap() = operands[k].0[d];
                    }
                    continue;
                }
            }
            dims.push(n);
            for (k, st) in strides.iter_mut().enumerate() {
                st.push(operands[k].0[d]);
            }
        }
        if dims.is_empty() {
            dims.push(1);
            for st in strides.iter_mut() {
                st.push(0);
            }
        }
        Plan { dims, strides, offsets: core::array::from_fn(|k| operands[k].1), len }
    }

    /// The number of positions.
    pub fn len(&self) -> usize {
        self.len
    }

    /// The stride of each operand within a run.
    pub fn inner_strides(&self) -> [usize; K] {
        core::array::from_fn(|k| *self.strides[k].last().unwrap())
    }

    /// The length of a full run (the innermost merged dimension).
    pub fn inner_len(&self) -> usize {
        *self.dims.last().unwrap()
    }

    /// Call `f(position, offsets, len)` for each run covering positions
    /// `start..end`, in order: `offsets[k]` is where operand `k` starts, and the run
    /// covers positions `position..position + len`.
    #[inline]
    pub fn for_each_run(&self, start: usize, end: usize, mut f: impl FnMut(usize, [usize; K], usize)) {
        let end = end.min(self.len);
        if start >= end {
            return;
        }
        let nd = self.dims.len();
        let inner = self.dims[nd - 1];
        if nd == 1 {
            // One merged dimension: a single run, no index arithmetic.
            let offs = core::array::from_fn(|k| self.offsets[k] + start * self.strides[k][0]);
            f(start, offs, end - start);
            return;
        }
        let mut idx = vec![0usize; nd];
        let mut rem = start;
        for d in (0..nd).rev() {
            idx[d] = rem % self.dims[d];
            rem /= self.dims[d];
        }
        let mut offs: [usize; K] =
            core::array::from_fn(|k| self.offsets[k] + (0..nd).map(|d| idx[d] * self.strides[k][d]).sum::<usize>());
        let mut pos = start;
        loop {
            let run = (inner - idx[nd - 1]).min(end - pos);
            f(pos, offs, run);
            pos += run;
            if pos >= end {
                return;
            }
            // Back to the start of the row, then carry into the outer dimensions.
            for (k, o) in offs.iter_mut().enumerate() {
                *o -= idx[nd - 1] * self.strides[k][nd - 1];
            }
            idx[nd - 1] = 0;
            for d in (0..nd - 1).rev() {
                idx[d] += 1;
                for (k, o) in offs.iter_mut().enumerate() {
                    *o += self.strides[k][d];
                }
                if idx[d] < self.dims[d] {
                    break;
                }
                for (k, o) in offs.iter_mut().enumerate() {
                    *o -= self.dims[d] * self.strides[k][d];
                }
                idx[d] = 0;
            }
        }
    }
}

/// Run `body(start, piece)` over `dst` cut into pieces of `task` elements, in parallel
/// if `parallel`, else as one piece on this thread.
#[inline]
pub(crate) fn for_each_piece<T: Send>(
    dst: &mut [T],
    parallel: bool,
    task: usize,
    body: impl Fn(usize, &mut [T]) + Sync + Send,
) {
    if parallel && dst.len() > task {
        dst.par_chunks_mut(task).enumerate().for_each(|(i, piece)| body(i * task, piece));
    } else {
        body(0, dst);
    }
}
