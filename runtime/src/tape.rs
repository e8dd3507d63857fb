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
    /// How many values `inline` takes: [`INLINE`], or 0 once a [`Segment`] moved them
    /// into `spill` (later pushes must follow them there).
    inline_cap: usize,
    /// The values pushed once `inline` was full, in order.
    spill: Vec<T>,
}

impl<T> Tape<T> {
    #[inline]
    pub fn new() -> Self {
        Tape { inline: [const { MaybeUninit::uninit() }; INLINE], inline_len: 0, inline_cap: INLINE, spill: Vec::new() }
    }

    #[inline]
    pub fn push(&mut self, value: T) {
        if self.inline_len < self.inline_cap {
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

    /// A writer for the `additional` values a loop of known length pushes, one per
    /// iteration (the caller's count is exact: the length of the loop's range). Its
    /// `push` writes into room set aside here, in the inline part or in `spill`, and
    /// counts, with no check of the tape's state; running past the count is a bug in
    /// adjoint and panics, so the loop holds no call that returns and keeps its values
    /// in registers across the push. The values join the tape when the writer is
    /// dropped (fewer than announced if the loop stopped early).
    #[inline]
    pub fn segment(&mut self, additional: usize) -> Segment<'_, T> {
        if self.spill.is_empty() && self.inline_len + additional <= self.inline_cap {
            let base = self.inline[self.inline_len..].as_mut_ptr().cast::<T>();
            return Segment { tape: self, inline: true, base, written: 0, room: additional };
        }
        if self.spill.is_empty() && self.inline_len > 0 {
            // The values come after the inline ones: those move to `spill` first, and
            // the inline part stays unused, so the order stays that of the pushes.
            self.spill.reserve(self.inline_len + additional);
            for v in &self.inline[..self.inline_len] {
                // SAFETY: values `0..inline_len` are initialised; `inline_len` is reset
                // below, so each is moved out once.
                self.spill.push(unsafe { v.assume_init_read() });
            }
            self.inline_len = 0;
        }
        self.inline_cap = self.inline_len;
        self.spill.reserve(additional);
        let base = self.spill.spare_capacity_mut().as_mut_ptr().cast::<T>();
        Segment { tape: self, inline: false, base, written: 0, room: additional }
    }
}

/// Pushes onto a [`Tape`] from a loop of known length ([`Tape::segment`]).
pub struct Segment<'t, T> {
    tape: &'t mut Tape<T>,
    /// Whether the room is in the inline part (else in the spare capacity of `spill`).
    inline: bool,
    /// The room set aside, as its first place and its length, and how much of it is
    /// written (counts, not an end pointer: a zero-sized `T` has no addresses to tell).
    base: *mut T,
    written: usize,
    room: usize,
}

impl<T> Segment<'_, T> {
    #[inline]
    pub fn push(&mut self, value: T) {
        if self.written == self.room {
            segment_overrun();
        }
        // SAFETY: `base + written` lies in the room `Tape::segment` set aside (written <
        // room), which nothing else touches while the writer borrows the tape; it is
        // written once and counted when the writer is dropped.
        unsafe { self.base.add(self.written).write(value) };
        self.written += 1;
    }
}

impl<T> Drop for Segment<'_, T> {
    #[inline]
    fn drop(&mut self) {
        if self.inline {
            self.tape.inline_len += self.written;
        } else {
            let len = self.tape.spill.len();
            // SAFETY: the `written` values past the length were written by `push`.
            unsafe { self.tape.spill.set_len(len + self.written) };
        }
    }
}

#[cold]
#[inline(never)]
fn segment_overrun() -> ! {
    panic!("adjoint: a loop saved more values than its trip count (this is a bug in adjoint; please report it)")
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
    fn segments_keep_the_order_of_pushes() {
        // Before, inside and after a segment; segments that stop early; starting
        // with the inline part empty, partly or wholly filled.
        for before in [0, 3, INLINE, INLINE + 2] {
            for (announced, pushed) in [(0, 0), (2, 2), (5, 5), (3, 1), (20, 20), (20, 7), (40, 40)] {
                for after in [0, 1, 12] {
                    let mut t = Tape::new();
                    let mut k = 0usize;
                    for _ in 0..before {
                        t.push(k);
                        k += 1;
                    }
                    {
                        let mut s = t.segment(announced);
                        for _ in 0..pushed {
                            s.push(k);
                            k += 1;
                        }
                    }
                    for _ in 0..after {
                        t.push(k);
                        k += 1;
                    }
                    assert_eq!(t.len(), k);
                    let popped: Vec<usize> = (0..k).map(|_| t.pop()).collect();
                    assert_eq!(popped, (0..k).rev().collect::<Vec<_>>(), "{before} {announced} {pushed} {after}");
                }
            }
        }
    }

    #[test]
    fn segments_drop_what_they_wrote_once() {
        let counted = Rc::new(());
        {
            let mut t = Tape::new();
            t.push(Rc::clone(&counted));
            {
                let mut s = t.segment(INLINE + 5);
                for _ in 0..INLINE + 5 {
                    s.push(Rc::clone(&counted));
                }
            }
            drop(t.pop());
            assert_eq!(Rc::strong_count(&counted), 1 + INLINE + 5);
        }
        assert_eq!(Rc::strong_count(&counted), 1);
    }

    #[test]
    fn segments_of_zero_sized_values() {
        for (before, count) in [(0, 3), (2, 20), (INLINE, 5)] {
            let mut t = Tape::new();
            for _ in 0..before {
                t.push(());
            }
            {
                let mut s = t.segment(count);
                for _ in 0..count {
                    s.push(());
                }
            }
            assert_eq!(t.len(), before + count);
            for _ in 0..before + count {
                t.pop();
            }
            assert!(t.is_empty());
        }
    }

    #[test]
    #[should_panic(expected = "more values than its trip count")]
    fn segments_refuse_more_than_announced() {
        let mut t = Tape::new();
        let mut s = t.segment(2);
        for i in 0..3 {
            s.push(i);
        }
    }

    #[test]
    #[should_panic(expected = "read more saved values")]
    fn underflow_panics() {
        Tape::<f64>::new().pop();
    }
}
