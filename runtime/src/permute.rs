//! The order in which a sort would put a slice, for generated code.
//!
//! `v.sort_by(|a, b| a.partial_cmp(b).unwrap())` inside a `#[differentiable]` function
//! becomes "compute the order, then gather the elements in it": the order is a
//! decision, like a branch taken, and the gather's adjoint routes each element's adjoint
//! back to where the element came from. The sort is stable, as `sort_by` is; for
//! `sort_unstable_by` any order of equal elements is a correct one.

use core::cmp::Ordering;

/// How a comparator orders two elements.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Direction {
    /// `a.partial_cmp(b).unwrap()`: ascending; a NaN panics, as that `unwrap` does.
    Ascending,
    /// `b.partial_cmp(a).unwrap()`: descending; a NaN panics.
    Descending,
    /// `a.total_cmp(b)`: ascending in the IEEE total order (NaNs last).
    TotalAscending,
    /// `b.total_cmp(a)`: descending in the IEEE total order.
    TotalDescending,
}

/// The positions of `v`'s elements in sorted order: `sorted[k] = v[order[k]]`.
///
/// ```
/// use adjoint_runtime::permute::{sort_order, Direction};
/// assert_eq!(sort_order(&[3.0, 1.0, 2.0], Direction::Ascending), vec![1, 2, 0]);
/// ```
pub fn sort_order<T: Copy + PartialOrd + Into<f64>>(v: &[T], direction: Direction) -> Vec<usize> {
    let mut order: Vec<usize> = (0..v.len()).collect();
    let partial = |a: usize, b: usize| -> Ordering {
        v[a].partial_cmp(&v[b]).expect("adjoint: a NaN in a slice sorted with `partial_cmp(…).unwrap()`")
    };
    let total = |a: usize, b: usize| -> Ordering { v[a].into().total_cmp(&v[b].into()) };
    match direction {
        Direction::Ascending => order.sort_by(|&a, &b| partial(a, b)),
        Direction::Descending => order.sort_by(|&a, &b| partial(b, a)),
        Direction::TotalAscending => order.sort_by(|&a, &b| total(a, b)),
        Direction::TotalDescending => order.sort_by(|&a, &b| total(b, a)),
    }
    order
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn orders_like_the_sorts_they_stand_for() {
        let v = [2.5f64, -1.0, 2.5, 0.0, 7.0];
        for (direction, sort) in [
            (Direction::Ascending, (|a: &f64, b: &f64| a.partial_cmp(b).unwrap()) as fn(&f64, &f64) -> Ordering),
            (Direction::Descending, |a: &f64, b: &f64| b.partial_cmp(a).unwrap()),
            (Direction::TotalAscending, |a: &f64, b: &f64| a.total_cmp(b)),
            (Direction::TotalDescending, |a: &f64, b: &f64| b.total_cmp(a)),
        ] {
            let mut sorted = v.to_vec();
            sorted.sort_by(sort);
            let gathered: Vec<f64> = sort_order(&v, direction).iter().map(|&i| v[i]).collect();
            assert_eq!(gathered, sorted, "{direction:?}");
        }
        // Stable: equal elements keep their order.
        assert_eq!(sort_order(&v, Direction::Ascending), vec![1, 3, 0, 2, 4]);
    }

    #[test]
    #[should_panic(expected = "a NaN")]
    fn nan_panics_as_unwrap_does() {
        sort_order(&[1.0, f64::NAN], Direction::Ascending);
    }
}
