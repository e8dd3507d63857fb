//! Packing: a block of an operand copied into panels in the order a tile reads them.
//!
//! A panel is `W` values wide (`MR` rows of `A`, or `NR` columns of `B`) and one step of
//! `k` long per `W` values: step `p` of panel `q` holds the operand's values `w = 0..W`
//! at `dst[(q·kb + p)·W + w]`. The operand's element `(w, p)` of the block lies at
//! `src + w·sw + p·sp`: for `A`, `w` runs down its rows (`sw` = its row stride) and `p`
//! along them; for `B`, `w` runs along its rows and `p` down them. Past the operand's
//! last row or column, a panel is padded with zeros, so every tile is full.
//!
//! Any strides are accepted, so a transposed view is packed where it lies; the two
//! common layouts have their own loops: `sw = 1` (the panel's values are adjacent in
//! the source: a copy per step) and `sp = 1` (each source line runs along `k`: read
//! line by line, written into the panel, which stays in L1).

use core::any::TypeId;

use crate::Float;

/// A block of an operand: element `(w, p)`, `w < width`, `p < kb`, at `ptr + w·sw + p·sp`.
#[derive(Clone, Copy)]
pub(super) struct Block<T> {
    pub ptr: *const T,
    pub width: usize,
    pub kb: usize,
    pub sw: usize,
    pub sp: usize,
}

// SAFETY: a block is only read, by the threads of one product, while nothing writes it.
unsafe impl<T: Sync> Send for Block<T> {}
unsafe impl<T: Sync> Sync for Block<T> {}

/// Pack panels `panels` (each `W` wide) of `src` into `dst`, which holds the panels of
/// the whole block: panel `q` at `dst + q·kb·W`.
///
/// # Safety
/// The block's elements exist; `dst` has room for every panel in `panels`, and nothing
/// else accesses those panels meanwhile.
#[inline(always)]
pub(super) unsafe fn pack<T: Float, const W: usize>(dst: *mut T, src: Block<T>, panels: core::ops::Range<usize>) {
    let kb = src.kb;
    for q in panels {
        let w0 = q * W;
        let valid = (src.width - w0).min(W);
        // SAFETY (all loops): `w0 + w < width` and `p < kb` are elements of the block;
        // the panel `q` of `dst` holds `kb·W` elements.
        unsafe {
            let out = dst.add(q * kb * W);
            let first = src.ptr.add(w0 * src.sw);
            if src.sw == 1 && valid == W {
                // A copy of `W` adjacent values per step (inline: a call to `memcpy` per
                // 128 bytes took a third of the packing time).
                for p in 0..kb {
                    *(out.add(p * W) as *mut [T; W]) = *(first.add(p * src.sp) as *const [T; W]);
                }
            } else if src.sp == 1 && valid == W {
                // `W` lines along `k`: a transpose.
                transpose::<T, W>(out, first, src.sw, kb);
            } else {
                for p in 0..kb {
                    let to = out.add(p * W);
                    for w in 0..valid {
                        *to.add(w) = *first.add(w * src.sw + p * src.sp);
                    }
                    for w in valid..W {
                        *to.add(w) = T::ZERO;
                    }
                }
            }
        }
    }
}

/// `out[p·W + w] = line_w[p]` for `w < W`, `p < kb`, line `w` at `first + w·sw`: groups
/// of four lines are transposed four steps at a time in vector registers (SSE, which
/// every x86-64 has; a scalar loop made LLVM emit gathers), the rest one by one.
///
/// # Safety
/// The lines hold `kb` elements each; `out` has room for `kb·W`.
#[inline(always)]
unsafe fn transpose<T: Float, const W: usize>(out: *mut T, first: *const T, sw: usize, kb: usize) {
    let grouped = W - W % 4;
    #[cfg(target_arch = "x86_64")]
    // SAFETY (both): `T` is the type compared with; forwarded from the caller.
    unsafe {
        if TypeId::of::<T>() == TypeId::of::<f32>() {
            transpose_groups_f32::<W>(out as *mut f32, first as *const f32, sw, kb);
        } else if TypeId::of::<T>() == TypeId::of::<f64>() {
            transpose_groups_f64::<W>(out as *mut f64, first as *const f64, sw, kb);
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    let grouped = 0;
    // SAFETY: forwarded from the caller.
    unsafe {
        for w in grouped..W {
            let line = first.add(w * sw);
            for p in 0..kb {
                *out.add(p * W + w) = *line.add(p);
            }
        }
    }
}

/// The groups of four lines of [`transpose`], for `f32`: 4 × 4 blocks.
///
/// # Safety
/// As [`transpose`].
#[cfg(target_arch = "x86_64")]
#[inline(always)]
unsafe fn transpose_groups_f32<const W: usize>(out: *mut f32, first: *const f32, sw: usize, kb: usize) {
    use core::arch::x86_64::*;
    let whole = kb - kb % 4;
    for g in (0..W - W % 4).step_by(4) {
        // SAFETY: lines `g..g + 4` hold `kb` elements; the panel holds `kb·W`.
        unsafe {
            let line = |i: usize| first.add((g + i) * sw);
            for p in (0..whole).step_by(4) {
                let r0 = _mm_loadu_ps(line(0).add(p));
                let r1 = _mm_loadu_ps(line(1).add(p));
                let r2 = _mm_loadu_ps(line(2).add(p));
                let r3 = _mm_loadu_ps(line(3).add(p));
                let (t0, t1) = (_mm_unpacklo_ps(r0, r1), _mm_unpacklo_ps(r2, r3));
                let (t2, t3) = (_mm_unpackhi_ps(r0, r1), _mm_unpackhi_ps(r2, r3));
                _mm_storeu_ps(out.add(p * W + g), _mm_movelh_ps(t0, t1));
                _mm_storeu_ps(out.add((p + 1) * W + g), _mm_movehl_ps(t1, t0));
                _mm_storeu_ps(out.add((p + 2) * W + g), _mm_movelh_ps(t2, t3));
                _mm_storeu_ps(out.add((p + 3) * W + g), _mm_movehl_ps(t3, t2));
            }
            for p in whole..kb {
                for i in 0..4 {
                    *out.add(p * W + g + i) = *line(i).add(p);
                }
            }
        }
    }
}

/// The groups of four lines of [`transpose`], for `f64`: 2 × 2 blocks.
///
/// # Safety
/// As [`transpose`].
#[cfg(target_arch = "x86_64")]
#[inline(always)]
unsafe fn transpose_groups_f64<const W: usize>(out: *mut f64, first: *const f64, sw: usize, kb: usize) {
    use core::arch::x86_64::*;
    let whole = kb - kb % 2;
    for g in (0..W - W % 4).step_by(2) {
        // SAFETY: lines `g..g + 2` hold `kb` elements; the panel holds `kb·W`.
        unsafe {
            let (l0, l1) = (first.add(g * sw), first.add((g + 1) * sw));
            for p in (0..whole).step_by(2) {
                let (r0, r1) = (_mm_loadu_pd(l0.add(p)), _mm_loadu_pd(l1.add(p)));
                _mm_storeu_pd(out.add(p * W + g), _mm_unpacklo_pd(r0, r1));
                _mm_storeu_pd(out.add((p + 1) * W + g), _mm_unpackhi_pd(r0, r1));
            }
            for p in whole..kb {
                *out.add(p * W + g) = *l0.add(p);
                *out.add(p * W + g + 1) = *l1.add(p);
            }
        }
    }
}
