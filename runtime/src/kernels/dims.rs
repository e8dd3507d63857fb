//! [`Dims`]: a tensor's shape or strides, stored inline up to rank [`INLINE`].

use core::fmt;
use core::ops::{Deref, DerefMut};

/// The rank up to which a shape is stored without allocating. Four keeps a `Dims` at 40
/// bytes and a tensor at 104: at rank 5 (48 and 120 bytes) the norm graph's gradient
/// measured 12 % slower, every tensor being moved and copied a few times.
const INLINE: usize = 4;

/// A shape or strides. Tensors are created, cloned and viewed constantly, and most have
/// rank ≤ 4, so their layout lives inline (a clone is a copy); a higher rank spills to
/// the heap.
#[derive(Clone)]
pub(crate) enum Dims {
    Inline { len: u8, dims: [usize; INLINE] },
    Heap(Vec<usize>),
}

impl Dims {
    #[inline]
    pub fn new() -> Self {
        Dims::Inline { len: 0, dims: [0; INLINE] }
    }

    #[inline]
    pub fn from_elem(value: usize, len: usize) -> Self {
        if len <= INLINE {
            Dims::Inline { len: len as u8, dims: [value; INLINE] }
        } else {
            Dims::Heap(vec![value; len])
        }
    }

    #[inline]
    pub fn from_slice(values: &[usize]) -> Self {
        if values.len() <= INLINE {
            let mut dims = [0; INLINE];
            dims[..values.len()].copy_from_slice(values);
            Dims::Inline { len: values.len() as u8, dims }
        } else {
            Dims::Heap(values.to_vec())
        }
    }

    #[inline]
    pub fn push(&mut self, value: usize) {
        match self {
            Dims::Inline { len, dims } if (*len as usize) < INLINE => {
                dims[*len as usize] = value;
                *len += 1;
            }
            Dims::Inline { .. } => {
                let mut v = self.to_vec();
                v.push(value);
                *self = Dims::Heap(v);
            }
            Dims::Heap(v) => v.push(value),
        }
    }

    #[inline]
    pub fn extend(&mut self, values: impl IntoIterator<Item = usize>) {
        for v in values {
            self.push(v);
        }
    }

    #[inline]
    pub fn as_slice(&self) -> &[usize] {
        self
    }

    #[inline]
    pub fn insert(&mut self, index: usize, value: usize) {
        match self {
            Dims::Inline { len, dims } if (*len as usize) < INLINE => {
                let n = *len as usize;
                assert!(index <= n, "adjoint: internal error: insert past the end of a shape");
                dims.copy_within(index..n, index + 1);
                dims[index] = value;
                *len += 1;
            }
            _ => {
                let mut v = self.to_vec();
                v.insert(index, value);
                *self = Dims::from(v);
            }
        }
    }

    #[inline]
    pub fn remove(&mut self, index: usize) -> usize {
        match self {
            Dims::Inline { len, dims } => {
                let n = *len as usize;
                assert!(index < n, "adjoint: internal error: remove past the end of a shape");
                let removed = dims[index];
                dims.copy_within(index + 1..n, index);
                *len -= 1;
                removed
            }
            Dims::Heap(v) => {
                let removed = v.remove(index);
                if v.len() <= INLINE {
                    *self = Dims::from_slice(v);
                }
                removed
            }
        }
    }
}

impl Default for Dims {
    #[inline]
    fn default() -> Self {
        Dims::new()
    }
}

impl Deref for Dims {
    type Target = [usize];
    #[inline]
    fn deref(&self) -> &[usize] {
        match self {
            Dims::Inline { len, dims } => &dims[..*len as usize],
            Dims::Heap(v) => v,
        }
    }
}

impl DerefMut for Dims {
    #[inline]
    fn deref_mut(&mut self) -> &mut [usize] {
        match self {
            Dims::Inline { len, dims } => &mut dims[..*len as usize],
            Dims::Heap(v) => v,
        }
    }
}

impl From<&[usize]> for Dims {
    #[inline]
    fn from(values: &[usize]) -> Self {
        Dims::from_slice(values)
    }
}

impl<const N: usize> From<[usize; N]> for Dims {
    #[inline]
    fn from(values: [usize; N]) -> Self {
        Dims::from_slice(&values)
    }
}

impl From<Vec<usize>> for Dims {
    #[inline]
    fn from(values: Vec<usize>) -> Self {
        if values.len() <= INLINE {
            Dims::from_slice(&values)
        } else {
            Dims::Heap(values)
        }
    }
}

impl FromIterator<usize> for Dims {
    #[inline]
    fn from_iter<I: IntoIterator<Item = usize>>(iter: I) -> Self {
        let mut d = Dims::new();
        for v in iter {
            d.push(v);
        }
        d
    }
}

impl<'a> IntoIterator for &'a Dims {
    type Item = &'a usize;
    type IntoIter = core::slice::Iter<'a, usize>;
    #[inline]
    fn into_iter(self) -> Self::IntoIter {
        self.iter()
    }
}

impl PartialEq for Dims {
    #[inline]
    fn eq(&self, other: &Self) -> bool {
        same_dims(self, other)
    }
}

/// Whether two shapes (or stride lists) are equal, compared inline: slice equality
/// calls `memcmp`, which costs more than the handful of elements a shape has (it was
/// 5 % of the norm graph's value and gradient).
#[inline]
pub(crate) fn same_dims(a: &[usize], b: &[usize]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    for i in 0..a.len() {
        if a[i] != b[i] {
            return false;
        }
    }
    true
}

impl Eq for Dims {}

impl fmt::Debug for Dims {
    #[inline]
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&**self, f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spills_past_the_inline_rank_and_comes_back() {
        let mut d = Dims::from_slice(&[1, 2, 3, 4]);
        assert!(matches!(d, Dims::Inline { .. }));
        d.push(5);
        assert!(matches!(d, Dims::Heap(_)));
        assert_eq!(&*d, &[1, 2, 3, 4, 5]);
        d.remove(0);
        assert!(matches!(d, Dims::Inline { .. }));
        d.insert(1, 9);
        assert_eq!(&*d, &[2, 9, 3, 4, 5]);
        assert_eq!(std::mem::size_of::<Dims>(), 40);
        assert_eq!(Dims::from(vec![7; 8]).len(), 8);
        assert_eq!(Dims::from_elem(0, 2), Dims::from([0, 0]));
    }
}
