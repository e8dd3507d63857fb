//! Matrix products with a narrow side: a result at most [`NARROW_MAX`] columns (or rows)
//! wide, as in a linear layer with few outputs (`x·Wᵀ`, 1000×784·784×10) and its weight
//! gradient (`gᵀ·x`). The `gemm` crate's micro-kernels tile 16-64 rows by 4-6 columns
//! and pack the long operand first, so at these shapes most of each tile is wasted and
//! the packing costs as much as the arithmetic: 1000×784·784×10 takes 236 µs on one core
//! there (66 GFLOP/s of a 175 peak). Two AVX-512 kernels cover the two layouts:
//!
//! - `dots`: each result is the dot product of a contiguous row of the long operand with
//!   a contiguous row of the short one (`x·Wᵀ`, or a row-major matrix times a vector).
//!   A tile of up to 8 long rows by 8 short rows (at most 16 accumulators) runs along
//!   `k` in registers, then sums each accumulator's lanes once.
//! - `axpys`: each of up to 16 result rows is a sum of the long operand's contiguous
//!   rows, each scaled by one element of the short one (`gᵀ·x`). A tile of up to 8
//!   result rows by two vectors of columns stays in registers while the sum runs down
//!   the long operand.
//!
//! Every result is computed by one thread in a fixed order, so the results do not
//! depend on the number of threads. Below the AVX-512 level the packed product
//! (`kernels::gemm`) does the work. (The module exists on x86-64 only.)

use core::any::TypeId;
use core::arch::x86_64::*;
use core::mem::MaybeUninit;

use super::gemm::{cast_dst, cast_mat, MatRef};
use super::isa::Isa;
use crate::Float;

/// A result side at most this long is narrow.
pub(crate) const NARROW_MAX: usize = 16;

/// Short rows (of `dots`) or result rows (of `axpys`) held in registers at once; a
/// narrow side longer than this is done in two halves.
const BLOCK: usize = 8;

/// A product is split over threads only when each gets at least this many long rows
/// (`dots`) or result columns (`axpys`).
const PER_THREAD_MIN: usize = 64;

/// `dst = lhs · rhs` (row-major `m × n`, all of it written) with the kernels of this
/// module, when the product is narrow and laid out for them and the CPU has AVX-512;
/// returns `false` (writing nothing) otherwise.
pub(crate) fn narrow_product<E: Float>(
    dst: &mut [MaybeUninit<E>],
    lhs: MatRef<'_, E>,
    rhs: MatRef<'_, E>,
    threads: usize,
    isa: Isa,
) -> bool {
    if isa == Isa::Avx512 {
        // SAFETY (both casts): `E` is the type it is compared with.
        if TypeId::of::<E>() == TypeId::of::<f32>() {
            return unsafe { dispatch::<f32>(cast_dst(dst), cast_mat(lhs), cast_mat(rhs), threads) };
        }
        if TypeId::of::<E>() == TypeId::of::<f64>() {
            return unsafe { dispatch::<f64>(cast_dst(dst), cast_mat(lhs), cast_mat(rhs), threads) };
        }
    }
    false
}

/// Rows of a matrix, each contiguous: row `r` starts at `ptr + r·stride`.
#[derive(Clone, Copy)]
struct Rows<T> {
    ptr: *const T,
    stride: usize,
    count: usize,
}

/// Where results go: element `(i, j)` at `ptr + i·rs + j·cs`.
#[derive(Clone, Copy)]
struct Out<T> {
    ptr: *mut T,
    rs: usize,
    cs: usize,
}

// SAFETY: the pointers are read (`Rows`) or written (`Out`) by the threads of one
// product, which write disjoint results and read memory nobody writes meanwhile.
unsafe impl<T: Sync> Send for Rows<T> {}
unsafe impl<T: Sync> Sync for Rows<T> {}
unsafe impl<T: Send> Send for Out<T> {}
unsafe impl<T: Send> Sync for Out<T> {}

/// Pick the kernel for the operands' layout.
///
/// # Safety
/// `T` is `f32` or `f64` and the CPU has AVX-512F and FMA.
unsafe fn dispatch<T: Tiles>(
    dst: &mut [MaybeUninit<T>],
    lhs: MatRef<'_, T>,
    rhs: MatRef<'_, T>,
    threads: usize,
) -> bool {
    let (m, k, n) = (lhs.rows, lhs.cols, rhs.cols);
    assert!(rhs.rows == k && dst.len() == m * n && k > 0, "adjoint: internal error: narrow product shapes");
    lhs.check();
    rhs.check();
    let out = Out { ptr: dst.as_mut_ptr() as *mut T, rs: n, cs: 1 };
    let lhs_rows = Rows { ptr: unsafe { lhs.data.as_ptr().add(lhs.offset) }, stride: lhs.rs, count: m };
    let rhs_cols = Rows { ptr: unsafe { rhs.data.as_ptr().add(rhs.offset) }, stride: rhs.cs, count: n };
    let k_contiguous = k == 1 || (lhs.cs == 1 && rhs.rs == 1);
    // SAFETY (all three calls): the rows and results lie inside the checked operands and
    // `dst`, whose `m·n` elements are each written once.
    if k_contiguous && n <= NARROW_MAX {
        unsafe { dots(lhs_rows, rhs_cols, k, out, threads) };
    } else if k_contiguous && m <= NARROW_MAX {
        unsafe { dots(rhs_cols, lhs_rows, k, Out { rs: 1, cs: n, ..out }, threads) };
    } else if m <= NARROW_MAX && (rhs.cs == 1 || n == 1) {
        let rhs_rows = Rows { ptr: rhs_cols.ptr, stride: rhs.rs, count: k };
        unsafe { axpys(lhs, rhs_rows, n, out, threads) };
    } else {
        return false;
    }
    true
}

/// `out(i, j) = long row i · short row j`, every row `k` long.
///
/// # Safety
/// As [`dispatch`]; the rows and results lie inside their buffers.
unsafe fn dots<T: Tiles>(long: Rows<T>, short: Rows<T>, k: usize, out: Out<T>, threads: usize) {
    if threads > 1 && long.count >= 2 * PER_THREAD_MIN {
        let top = long.count / 2;
        let first = Rows { count: top, ..long };
        let second = Rows { ptr: long.ptr.wrapping_add(top * long.stride), count: long.count - top, ..long };
        let out_second = Out { ptr: out.ptr.wrapping_add(top * out.rs), ..out };
        let (t_first, t_second) = (threads / 2, threads - threads / 2);
        rayon::join(
            || unsafe { dots(first, short, k, out, t_first) },
            || unsafe { dots(second, short, k, out_second, t_second) },
        );
        return;
    }
    for (j0, width) in halves(short.count) {
        let tall = dots_tile_height(width);
        let mut i = 0;
        while i < long.count {
            let height = if long.count - i >= tall { tall } else { 1 };
            // SAFETY: long rows `i..i + height` and short rows `j0..j0 + width` exist.
            unsafe {
                T::dots_tile(
                    height,
                    width,
                    long.ptr.add(i * long.stride),
                    long.stride,
                    short.ptr.add(j0 * short.stride),
                    short.stride,
                    k,
                    out.ptr.add(i * out.rs + j0 * out.cs),
                    out.rs,
                    out.cs,
                )
            };
            i += height;
        }
    }
}

/// How many long rows a `dots` tile takes against `width` short rows: at most 16
/// accumulators, and at least 8 so that the multiply-adds of both FMA units overlap
/// their latency.
const fn dots_tile_height(width: usize) -> usize {
    let height = 2 * BLOCK / width;
    if height < 2 {
        2
    } else if height > BLOCK {
        BLOCK
    } else {
        height
    }
}

/// The narrow side `0..len` as one block, or two halves when longer than [`BLOCK`].
fn halves(len: usize) -> impl Iterator<Item = (usize, usize)> {
    let first = if len > BLOCK { len.div_ceil(2) } else { len };
    [(0, first), (first, len - first)].into_iter().filter(|&(_, w)| w > 0)
}

/// `out` (`lhs.rows ≤ 16` rows of `cols`) `= lhs · (rows of rhs)`: row `r` is the sum of
/// `rhs` row `i` scaled by `lhs(r, i)`.
///
/// # Safety
/// As [`dispatch`]; the rows and results lie inside their buffers.
unsafe fn axpys<T: Tiles>(lhs: MatRef<'_, T>, rhs: Rows<T>, cols: usize, out: Out<T>, threads: usize) {
    let vector = 2 * T::LANES;
    if threads > 1 && cols >= 2 * PER_THREAD_MIN {
        let left = (cols / 2).next_multiple_of(vector).min(cols);
        let right = Rows { ptr: rhs.ptr.wrapping_add(left), ..rhs };
        let out_right = Out { ptr: out.ptr.wrapping_add(left), ..out };
        let (t_left, t_right) = (threads / 2, threads - threads / 2);
        rayon::join(
            || unsafe { axpys(lhs, rhs, left, out, t_left) },
            || unsafe { axpys(lhs, right, cols - left, out_right, t_right) },
        );
        return;
    }
    let lhs_ptr = unsafe { lhs.data.as_ptr().add(lhs.offset) };
    for c in (0..cols).step_by(vector) {
        let width = (cols - c).min(vector);
        for (r0, height) in halves(lhs.rows) {
            // SAFETY: result rows `r0..r0 + height`, columns `c..c + width` exist, as do
            // the `rhs.count` rows of `rhs` from column `c` on.
            unsafe {
                T::axpys_tile(
                    height,
                    lhs_ptr.add(r0 * lhs.rs),
                    lhs.rs,
                    lhs.cs,
                    rhs.ptr.add(c),
                    rhs.stride,
                    rhs.count,
                    width,
                    out.ptr.add(r0 * out.rs + c),
                    out.rs,
                )
            };
        }
    }
}

/// The register tiles of one float type.
trait Tiles: Copy + Send + Sync + 'static {
    /// Elements in one vector register.
    const LANES: usize;

    /// `out(p, j) = a row p · b row j` for `p < height ≤ 8`, `j < width ≤ 8`,
    /// `height·width ≤ 16` or `height = 1`.
    ///
    /// # Safety
    /// The CPU has AVX-512F and FMA; the rows (`k` elements each) and results exist.
    #[allow(clippy::too_many_arguments)]
    unsafe fn dots_tile(
        height: usize,
        width: usize,
        a: *const Self,
        a_rs: usize,
        b: *const Self,
        b_rs: usize,
        k: usize,
        out: *mut Self,
        out_rs: usize,
        out_cs: usize,
    );

    /// `out(r, 0..cols) = Σ_i lhs(r, i)·rhs row i` for `r < height ≤ 8`, `i < k` and
    /// `cols ≤ 2·LANES`, with `lhs(r, i)` at `lhs + r·l_rs + i·l_cs`.
    ///
    /// # Safety
    /// The CPU has AVX-512F and FMA; the operands and results exist.
    #[allow(clippy::too_many_arguments)]
    unsafe fn axpys_tile(
        height: usize,
        lhs: *const Self,
        l_rs: usize,
        l_cs: usize,
        rhs: *const Self,
        rhs_rs: usize,
        k: usize,
        cols: usize,
        out: *mut Self,
        out_rs: usize,
    );
}

/// Run `$body` with `$n` (a run-time value in `1..=8`) as the constant `$N`.
macro_rules! with_const {
    ($n:expr, $N:ident => $body:expr) => {
        match $n {
            1 => {
                const $N: usize = 1;
                $body
            }
            2 => {
                const $N: usize = 2;
                $body
            }
            3 => {
                const $N: usize = 3;
                $body
            }
            4 => {
                const $N: usize = 4;
                $body
            }
            5 => {
                const $N: usize = 5;
                $body
            }
            6 => {
                const $N: usize = 6;
                $body
            }
            7 => {
                const $N: usize = 7;
                $body
            }
            8 => {
                const $N: usize = 8;
                $body
            }
            n => unreachable!("adjoint: internal error: tile size {n}"),
        }
    };
}

/// The tiles of one float type, from its AVX-512 intrinsics.
macro_rules! tiles {
    ($t:ident, $module:ident, $lanes:expr, $vec:ty, $mask:ty,
     $zero:ident, $load:ident, $maskz_load:ident, $fmadd:ident, $reduce:ident, $set1:ident, $mask_store:ident) => {
        mod $module {
            use super::*;

            pub(super) const LANES: usize = $lanes;

            /// The first `len` lanes (all of them from `LANES` on).
            #[inline(always)]
            fn first_lanes(len: usize) -> $mask {
                if len >= LANES { <$mask>::MAX } else { ((1u32 << len) - 1) as $mask }
            }

            /// See `Tiles::dots_tile`; `P` long rows by `J` short rows.
            #[target_feature(enable = "avx512f,fma")]
            #[allow(clippy::too_many_arguments)]
            pub(super) unsafe fn dots<const P: usize, const J: usize>(
                a: *const $t, a_rs: usize, b: *const $t, b_rs: usize, k: usize,
                out: *mut $t, out_rs: usize, out_cs: usize,
            ) {
                unsafe {
                    let mut acc = [[$zero(); J]; P];
                    let full = k / LANES;
                    for c in 0..full {
                        let mut x = [$zero(); P];
                        for p in 0..P {
                            x[p] = $load(a.add(p * a_rs + c * LANES));
                        }
                        for j in 0..J {
                            let y = $load(b.add(j * b_rs + c * LANES));
                            for p in 0..P {
                                acc[p][j] = $fmadd(x[p], y, acc[p][j]);
                            }
                        }
                    }
                    let rest = k - full * LANES;
                    if rest > 0 {
                        // The masked lanes read nothing (no fault past the end) and are 0.
                        let mask = first_lanes(rest);
                        let mut x = [$zero(); P];
                        for p in 0..P {
                            x[p] = $maskz_load(mask, a.add(p * a_rs + full * LANES));
                        }
                        for j in 0..J {
                            let y = $maskz_load(mask, b.add(j * b_rs + full * LANES));
                            for p in 0..P {
                                acc[p][j] = $fmadd(x[p], y, acc[p][j]);
                            }
                        }
                    }
                    for p in 0..P {
                        for j in 0..J {
                            *out.add(p * out_rs + j * out_cs) = $reduce(acc[p][j]);
                        }
                    }
                }
            }

            /// See `Tiles::axpys_tile`; `R` result rows.
            #[target_feature(enable = "avx512f,fma")]
            #[allow(clippy::too_many_arguments)]
            pub(super) unsafe fn axpys<const R: usize>(
                lhs: *const $t, l_rs: usize, l_cs: usize, rhs: *const $t, rhs_rs: usize, k: usize,
                cols: usize, out: *mut $t, out_rs: usize,
            ) {
                unsafe {
                    let low = first_lanes(cols);
                    if cols > LANES {
                        let high = first_lanes(cols - LANES);
                        let mut acc_low = [$zero(); R];
                        let mut acc_high = [$zero(); R];
                        for i in 0..k {
                            let row = rhs.add(i * rhs_rs);
                            let x_low = $load(row);
                            let x_high = $maskz_load(high, row.add(LANES));
                            for r in 0..R {
                                let s = $set1(*lhs.add(r * l_rs + i * l_cs));
                                acc_low[r] = $fmadd(s, x_low, acc_low[r]);
                                acc_high[r] = $fmadd(s, x_high, acc_high[r]);
                            }
                        }
                        for r in 0..R {
                            $mask_store(out.add(r * out_rs), low, acc_low[r]);
                            $mask_store(out.add(r * out_rs + LANES), high, acc_high[r]);
                        }
                    } else {
                        let mut acc = [$zero(); R];
                        for i in 0..k {
                            let x = $maskz_load(low, rhs.add(i * rhs_rs));
                            for r in 0..R {
                                let s = $set1(*lhs.add(r * l_rs + i * l_cs));
                                acc[r] = $fmadd(s, x, acc[r]);
                            }
                        }
                        for r in 0..R {
                            $mask_store(out.add(r * out_rs), low, acc[r]);
                        }
                    }
                }
            }
        }

        impl Tiles for $t {
            const LANES: usize = $module::LANES;

            unsafe fn dots_tile(
                height: usize, width: usize, a: *const $t, a_rs: usize, b: *const $t, b_rs: usize, k: usize,
                out: *mut $t, out_rs: usize, out_cs: usize,
            ) {
                // SAFETY: forwarded from the caller.
                if height == 1 {
                    with_const!(width, J => unsafe { $module::dots::<1, J>(a, a_rs, b, b_rs, k, out, out_rs, out_cs) })
                } else {
                    debug_assert_eq!(height, dots_tile_height(width));
                    with_const!(width, J => unsafe {
                        $module::dots::<{ dots_tile_height(J) }, J>(a, a_rs, b, b_rs, k, out, out_rs, out_cs)
                    })
                }
            }

            unsafe fn axpys_tile(
                height: usize, lhs: *const $t, l_rs: usize, l_cs: usize, rhs: *const $t, rhs_rs: usize, k: usize,
                cols: usize, out: *mut $t, out_rs: usize,
            ) {
                // SAFETY: forwarded from the caller.
                with_const!(height, R => unsafe { $module::axpys::<R>(lhs, l_rs, l_cs, rhs, rhs_rs, k, cols, out, out_rs) })
            }
        }
    };
}

tiles!(
    f32,
    tiles_f32,
    16,
    __m512,
    __mmask16,
    _mm512_setzero_ps,
    _mm512_loadu_ps,
    _mm512_maskz_loadu_ps,
    _mm512_fmadd_ps,
    _mm512_reduce_add_ps,
    _mm512_set1_ps,
    _mm512_mask_storeu_ps
);
tiles!(
    f64,
    tiles_f64,
    8,
    __m512d,
    __mmask8,
    _mm512_setzero_pd,
    _mm512_loadu_pd,
    _mm512_maskz_loadu_pd,
    _mm512_fmadd_pd,
    _mm512_reduce_add_pd,
    _mm512_set1_pd,
    _mm512_mask_storeu_pd
);
