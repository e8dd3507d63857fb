//! The tape: a stack of values saved by the forward sweep of a loop and read back, in
//! reverse order, by the reverse sweep.
//!
//! Its first [`INLINE`] values live inside it, the rest in a `Vec`: a short
//! data-dependent loop (a Newton solve's five iterations) then saves and restores its
//! values without allocating. Before this, each tape was a `Vec`, whose first push
//! allocated and whose growth reallocated; with several tapes per loop that was most of
//! the gradient's time for such loops (a five-iteration Newton solve: 357 ns, against
//! 17 ns for the function).

use core::mem::MaybeUninit;

/// Values a tape holds inside itself before it allocates.
pub const INLINE: usize = 8;

/// A stack of values saved by the forward sweep of a loop and read back, in reverse
/// order, by the reverse sweep.
pub struct Tape<T> {
    /// Values `0..inline_len` (the first ones pushed, at most [`INLINE`]).
    inline: [MaybeUninit<T>; INLINE],
    inline_len: usize,
    /// The values pushed once `inline` was full, in order.
    spill: Vec<T>,
}

impl<T> Tape<T> {
    #[inline]
    pub fn new() -> Self {
        Tape { inline: [const { MaybeUninit::uninit() }; INLINE], inline_len: 0, spill: Vec::new() }
    }

    #[inline]
    pub fn push(&mut self, value: T) {
        if self.inline_len < INLINE {
            self.inline[self.inline_len].write(value);
            self.inline_len += 1;
        } else {
            self.spill.push(value);
        }
    }

    /// Make room for `additional` more values (called before a loop of known length).
    #[inline]
    pub fn reserve(&mut self, additional: usize) {
        let beyond = (self.len() + additional).saturating_sub(INLINE);
        if beyond > self.spill.len() {
            self.spill.reserve(beyond - self.spill.len());
        }
    }

    /// The value pushed last.
    #[inline]
    pub fn pop(&mut self) -> T {
        if let Some(v) = self.spill.pop() {
            return v;
        }
        if self.inline_len == 0 {
            tape_underflow();
        }
        self.inline_len -= 1;
        // SAFETY: values `0..inline_len` were written by `push` and not yet taken; this
        // one is no longer counted, so it is read once.
        unsafe { self.inline[self.inline_len].assume_init_read() }
    }

    pub fn len(&self) -> usize {
        self.inline_len + self.spill.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl<T> Drop for Tape<T> {
    fn drop(&mut self) {
        for v in &mut self.inline[..self.inline_len] {
            // SAFETY: the first `inline_len` values are initialised and owned here.
            unsafe { v.assume_init_drop() };
        }
    }
}

impl<T> Default for Tape<T> {
    fn default() -> Self {
        Tape::new()
    }
}

impl<T: core::fmt::Debug> core::fmt::Debug for Tape<T> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        // SAFETY: the first `inline_len` values are initialised.
        let inline = self.inline[..self.inline_len].iter().map(|v| unsafe { v.assume_init_ref() });
        f.debug_list().entries(inline.chain(self.spill.iter())).finish()
    }
}

#[cold]
#[inline(never)]
pub(crate) fn tape_underflow() -> ! {
    panic!("adjoint: the reverse sweep read more saved values than the forward sweep stored (this is a bug in adjoint; please report it)")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::rc::Rc;

    #[test]
    fn last_in_first_out_across_the_inline_part() {
        for n in [0, 1, INLINE - 1, INLINE, INLINE + 1, 3 * INLINE + 5] {
            let mut t = Tape::new();
            t.reserve(n / 2);
            for i in 0..n {
                t.push(i);
            }
            assert_eq!(t.len(), n);
            let popped: Vec<usize> = (0..n).map(|_| t.pop()).collect();
            assert_eq!(popped, (0..n).rev().collect::<Vec<_>>(), "n = {n}");
            assert!(t.is_empty());
        }
    }

    #[test]
    fn drops_what_it_still_holds_once() {
        let counted = Rc::new(());
        {
            let mut t = Tape::new();
            for _ in 0..INLINE + 3 {
                t.push(Rc::clone(&counted));
            }
            drop(t.pop());
            drop(t.pop());
            drop(t.pop());
            drop(t.pop());
            assert_eq!(Rc::strong_count(&counted), 1 + INLINE - 1);
        }
        assert_eq!(Rc::strong_count(&counted), 1);
    }

    #[test]
    #[should_panic(expected = "read more saved values")]
    fn underflow_panics() {
        Tape::<f64>::new().pop();
    }
}
