//! The loop nest around the tiles (GotoBLAS / BLIS): for each block of at most [`MC`]
//! rows of `A` and each block of `k` (the tiles' `KC`), the `A` block is packed; then
//! for each chunk of at most `NC` columns the `B` block is packed and every tile of the
//! block is computed, `A` panel by `A` panel (the panel stays in L1 while the tile
//! sweeps the packed `B`, which stays in L2). Panel buffers are 64-byte aligned.
//!
//! With several threads, the columns of `C` (or its rows, whichever divides more
//! evenly into whole panels) are split into one part per thread, joined once; each part
//! packs its own panels of its operand and its own copy of the other one, so no packed
//! data crosses between cores (measured: sharing the packed blocks between the threads,
//! with a join per packing, scaled 1.78× on two cores at 1024³ f64, private copies 1.9×).
//! Every element of `C` belongs to one tile and its sum runs in the order of `k` (the
//! tiles' contract), so the result does not depend on the number of threads, the
//! blocking or the split.

use core::ops::Range;

use super::pack::{pack, Block};
use super::tiles::Tile;
use super::MatRef;
use crate::kernels::isa::vectorize;
use crate::Float;

/// An `A` of at most this many elements, split by columns, is packed by the threads
/// together (see [`product`]).
const SHARED_A_MAX: usize = 1 << 18;

/// Rows of `A` packed at once, at most (the packed block is at most `MC × KC`; it is
/// read panel by panel, each staying in L1 while it meets every panel of `B`).
const MC: usize = 4096;

/// Where the result goes: row-major, element `(i, j)` at `ptr + i·ld + j`.
#[derive(Clone, Copy)]
struct Out<T> {
    ptr: *mut T,
    ld: usize,
}

// SAFETY: the threads of one product write disjoint tiles.
unsafe impl<T: Send> Send for Out<T> {}
unsafe impl<T: Send> Sync for Out<T> {}

impl<T> Out<T> {
    /// The result from element `(i, j)` on (a method, so that a closure captures the
    /// whole `Out`, which is `Sync`, not its pointer field).
    fn at(self, i: usize, j: usize) -> Out<T> {
        Out { ptr: self.ptr.wrapping_add(i * self.ld + j), ..self }
    }
}

/// A buffer of packed panels, aligned to a cache line (a vector load of a panel then
/// never straddles two lines), written and read through its pointer by the part of a
/// product that owns it. (A per-thread pool of these buffers was measured: no faster,
/// since glibc keeps freed blocks of this size for the next allocation, and it held
/// about 3 MiB between an MLP's training steps.)
struct Panels<T> {
    lines: Vec<Line>,
    _elements: core::marker::PhantomData<T>,
}

/// One cache line of a panel buffer.
#[derive(Clone, Copy)]
#[repr(C, align(64))]
struct Line([u8; 64]);

impl<T> Panels<T> {
    fn new(len: usize) -> Self {
        let lines = (len * core::mem::size_of::<T>()).div_ceil(64);
        Panels { lines: Vec::with_capacity(lines), _elements: core::marker::PhantomData }
    }

    fn ptr(&mut self) -> SharedPtr<T> {
        SharedPtr(self.lines.as_mut_ptr() as *mut T)
    }
}

#[derive(Clone, Copy)]
struct SharedPtr<T>(*mut T);

// SAFETY: an operand's pointer is only read through; a panel buffer's is used by the
// one part of the split that owns it.
unsafe impl<T: Send> Send for SharedPtr<T> {}
unsafe impl<T: Send> Sync for SharedPtr<T> {}

impl<T> SharedPtr<T> {
    /// The pointer (a method, so that a closure captures the whole `SharedPtr`).
    fn get(self) -> *mut T {
        self.0
    }
}

/// Split `0..count` into `parts` contiguous ranges of nearly equal length and run
/// `f` on each, in parallel when `parts > 1`.
fn for_each_part(parts: usize, count: usize, f: &(impl Fn(Range<usize>) + Sync)) {
    let parts = parts.clamp(1, count.max(1));
    let bound = |i: usize| i * count / parts;
    split(0, parts, &bound, f);
}

/// Run `f` on the ranges of parts `lo..hi`, halving the parts between two threads.
fn split(lo: usize, hi: usize, bound: &(impl Fn(usize) -> usize + Sync), f: &(impl Fn(Range<usize>) + Sync)) {
    if hi - lo <= 1 {
        f(bound(lo)..bound(hi));
        return;
    }
    let mid = (lo + hi) / 2;
    rayon::join(|| split(lo, mid, bound, f), || split(mid, hi, bound, f));
}

/// `dst = lhs · rhs` with the tiles of `kernel`, on up to `threads` threads. `dst` is
/// row-major `m × n` with row stride `n`; its previous contents are never read.
///
/// # Safety
/// The operands were bounds-checked, `m, n, k > 0`, `dst` has room for `m·n` elements
/// and nothing else accesses it meanwhile, and the CPU runs `kernel`'s tiles.
pub(super) unsafe fn product<T: Float, K: Tile<T>>(
    kernel: K,
    dst: *mut T,
    lhs: MatRef<'_, T>,
    rhs: MatRef<'_, T>,
    threads: usize,
) {
    let threads = threads.max(1);
    if threads > 1 && rayon::current_thread_index().is_none() {
        // Called from outside the pool: enter it once, so that the joins of the phases
        // below run between workers instead of each waking one from here.
        let dst = Out { ptr: dst, ld: 0 };
        // SAFETY: forwarded from the caller.
        return rayon::scope(|_| unsafe { product(kernel, { dst }.ptr, lhs, rhs, threads) });
    }
    let (m, k, n) = (lhs.rows, lhs.cols, rhs.cols);
    let (mr, nr) = (K::MR, K::NR);
    // Blocks of nearly equal size: `k = 300` is two blocks of 150, not 256 + 44.
    let kc = k.div_ceil(k.div_ceil(K::KC));
    let mc = m.div_ceil(m.div_ceil(MC)).next_multiple_of(mr);
    let out = Out { ptr: dst, ld: n };
    // SAFETY: the operands were bounds-checked by the caller.
    let (lhs_ptr, rhs_ptr) = unsafe { (lhs.data.as_ptr().add(lhs.offset), rhs.data.as_ptr().add(rhs.offset)) };
    let lhs_ptr = SharedPtr(lhs_ptr as *mut T);
    let rhs_ptr = SharedPtr(rhs_ptr as *mut T);
    // Each part of the split has its own packed blocks: the columns of `C` are split
    // over the parts, so each packs its own panels of `B` and a whole copy of `A`'s
    // block (read only by itself, from its own core's caches).
    // The parts of the split take whole panels of columns or of rows, whichever divides
    // more evenly (200 columns are 7 panels of 32: 4 + 3; 500 rows are 42 panels of
    // 12: 21 + 21). Each part packs its own copy of the other operand.
    let (col_panels, row_panels) = (n.div_ceil(nr), m.div_ceil(mr));
    let largest_share = |panels: usize| panels.div_ceil(threads.min(panels)) as f64 / panels as f64;
    let by_rows = threads > 1 && largest_share(row_panels) < largest_share(col_panels);
    let (split_panels, split_width) = if by_rows { (row_panels, mr) } else { (col_panels, nr) };
    let parts = threads.min(split_panels).max(1);
    // A small `A` split by columns (a batch of activations times a layer's `Wᵀ`) is
    // packed once, every block of `k`, by all the threads together, rather than once
    // by each part: block `pc` at `pc · MR · a_panels` in `shared_a`.
    let a_panels_all = m.div_ceil(mr);
    let share_a = parts > 1 && !by_rows && m <= mc && m * k <= SHARED_A_MAX;
    let mut shared_a = Panels::<T>::new(if share_a { a_panels_all * mr * k } else { 0 });
    let shared_a = shared_a.ptr();
    if share_a {
        for_each_part(parts, a_panels_all, &|panels| {
            for pc in (0..k).step_by(kc) {
                let kb = (k - pc).min(kc);
                let block =
                    Block { ptr: lhs_ptr.get().wrapping_add(pc * lhs.cs), width: m, kb, sw: lhs.rs, sp: lhs.cs };
                let at = SharedPtr(shared_a.get().wrapping_add(pc * mr * a_panels_all));
                // SAFETY: the block lies in the checked operand; each part packs its
                // own panels of each block, inside the buffer.
                unsafe { pack_panels::<T, K>(true, at, block, panels.clone()) };
            }
        });
    }
    for_each_part(parts, split_panels, &|panels| {
        let (lo, hi) = (panels.start * split_width, panels.end * split_width);
        let ((i0, i1), (j0, j1)) = if by_rows { ((lo, hi.min(m)), (0, n)) } else { ((0, m), (lo, hi.min(n))) };
        if i0 < i1 && j0 < j1 {
            let mut a_panels = Panels::<T>::new(if share_a { 0 } else { mc * kc });
            let mut b_panels = Panels::<T>::new(kc * (j1 - j0).min(K::NC).next_multiple_of(nr));
            let (a_buf, b_buf) = (a_panels.ptr(), b_panels.ptr());
            for ic in (i0..i1).step_by(mc) {
                let mb = (i1 - ic).min(mc);
                let a_count = mb.div_ceil(mr);
                for pc in (0..k).step_by(kc) {
                    let kb = (k - pc).min(kc);
                    let a_block = Block {
                        ptr: lhs_ptr.get().wrapping_add(ic * lhs.rs + pc * lhs.cs),
                        width: mb,
                        kb,
                        sw: lhs.rs,
                        sp: lhs.cs,
                    };
                    let a_source = if share_a {
                        Source { ptr: shared_a.get().wrapping_add(pc * mr * a_panels_all), step: mr, panel: kb * mr }
                    } else {
                        // SAFETY: the block lies in the checked operand; the buffer holds its panels.
                        unsafe { pack_panels::<T, K>(true, a_buf, a_block, 0..a_count) };
                        Source { ptr: a_buf.get(), step: mr, panel: kb * mr }
                    };
                    for jc in (j0..j1).step_by(K::NC) {
                        let nb = (j1 - jc).min(K::NC);
                        let b_count = nb.div_ceil(nr);
                        let b_block = Block {
                            ptr: rhs_ptr.get().wrapping_add(pc * rhs.rs + jc * rhs.cs),
                            width: nb,
                            kb,
                            sw: rhs.cs,
                            sp: rhs.rs,
                        };
                        let corner = out.at(ic, jc);
                        // SAFETY: as for `A`; this part alone writes its tiles of `C`.
                        unsafe {
                            pack_panels::<T, K>(false, b_buf, b_block, 0..b_count);
                            let b_source = Source { ptr: b_buf.get(), step: nr, panel: kb * nr };
                            sweep(kernel, a_source, b_source, kb, mb, nb, 0..a_count, 0..b_count, corner, pc > 0);
                        }
                    }
                }
            }
        }
    });
}

/// Where a tile finds the packed panels of an operand: panel `q`'s step `p` at
/// `ptr + q·panel + p·step`.
#[derive(Clone, Copy)]
struct Source<T> {
    ptr: *mut T,
    step: usize,
    panel: usize,
}

/// Pack `panels` of `A` (`is_a`, `MR` wide) or `B` (`NR` wide) into `buf`.
///
/// # Safety
/// As [`pack`].
unsafe fn pack_panels<T: Float, K: Tile<T>>(is_a: bool, buf: SharedPtr<T>, block: Block<T>, panels: Range<usize>) {
    // `W` must be a constant of the packing loop; the tiles' widths are few.
    macro_rules! widths {
        ($w:expr, $($n:literal)*) => {
            match $w {
                $($n => unsafe { pack::<T, $n>(buf.0, block, panels) },)*
                w => unreachable!("adjoint: internal error: panel width {w}"),
            }
        };
    }
    let w = if is_a { K::MR } else { K::NR };
    // SAFETY (the dispatch): the CPU runs `K`'s instruction set, the caller's premise.
    vectorize(
        K::ISA,
        #[inline(always)]
        || widths!(w, 4 6 8 12 16 24 32 48),
    )
}

/// Compute the tiles of row panels `rows` × column panels `cols` of one block.
///
/// # Safety
/// The panels hold the block (`mb × kb` of `A`, `kb × nb` of `B`); the tiles lie
/// inside `C` at `out`; nothing else writes them meanwhile.
#[allow(clippy::too_many_arguments)]
unsafe fn sweep<T: Float, K: Tile<T>>(
    kernel: K,
    a: Source<T>,
    b: Source<T>,
    kb: usize,
    mb: usize,
    nb: usize,
    rows: Range<usize>,
    cols: Range<usize>,
    out: Out<T>,
    load: bool,
) {
    let (mr, nr) = (K::MR, K::NR);
    // A tile whose columns run past `C`'s edge is computed here, then copied.
    let mut edge = [T::ZERO; 16 * 48];
    for q in rows {
        let (i, height) = (q * mr, (mb - q * mr).min(mr));
        // SAFETY (the loop): the panels and tiles exist, as the caller guarantees.
        unsafe {
            let a_panel = a.ptr.add(q * a.panel);
            for r in cols.clone() {
                let (j, width) = (r * nr, (nb - r * nr).min(nr));
                let b_panel = b.ptr.wrapping_add(r * b.panel);
                let c = out.ptr.add(i * out.ld + j);
                // The tile starts by reading its part of `C` (from the second block of
                // `k` on) and ends by writing it: fetch the next tile's rows meanwhile.
                prefetch_rows(c.wrapping_add(nr), height, out.ld, nr);
                if width == nr {
                    kernel.tile(height, kb, a_panel, a.step, b_panel, b.step, c, out.ld, load);
                } else {
                    let tmp = edge.as_mut_ptr();
                    if load {
                        for y in 0..height {
                            core::ptr::copy_nonoverlapping(c.add(y * out.ld), tmp.add(y * nr), width);
                        }
                    }
                    kernel.tile(height, kb, a_panel, a.step, b_panel, b.step, tmp, nr, load);
                    for y in 0..height {
                        core::ptr::copy_nonoverlapping(tmp.add(y * nr), c.add(y * out.ld), width);
                    }
                }
            }
        }
    }
}

/// Ask the CPU to fetch `rows` rows of `width` elements at `c` (row stride `ld`) into
/// its caches; a hint, which never faults.
#[inline(always)]
fn prefetch_rows<T>(c: *const T, rows: usize, ld: usize, width: usize) {
    #[cfg(target_arch = "x86_64")]
    {
        use core::arch::x86_64::{_mm_prefetch, _MM_HINT_T0};
        let line = 64 / core::mem::size_of::<T>().max(1);
        for y in 0..rows {
            let row = c.wrapping_add(y * ld);
            for x in (0..width).step_by(line) {
                // SAFETY: a prefetch is a hint and never faults, whatever the address.
                unsafe { _mm_prefetch::<_MM_HINT_T0>(row.wrapping_add(x) as *const i8) };
            }
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = (c, rows, ld, width);
}
