//! Matrix products with a narrow side: a result at most [`NARROW_MAX`] columns (or rows)
//! wide, as in a linear layer with few outputs (`x·Wᵀ`, 1000×784·784×10) and its weight
//! gradient (`gᵀ·x`). A packed product's tiles are 16-32 columns wide and pack the long
//! operand first, so at these shapes most of each tile is wasted and the packing costs
//! as much as the arithmetic. Two register kernels cover the two layouts, at the AVX2
//! and AVX-512 levels:
//!
//! - `dots`: each result is the dot product of a contiguous row of the long operand with
//!   a contiguous row of the short one (`x·Wᵀ`, or a row-major matrix times a vector).
//!   A tile of long rows by short rows (at most 16 accumulators with AVX-512's 32
//!   registers, 8 with AVX2's 16) runs along `k` in registers, then sums each
//!   accumulator's lanes once.
//! - `axpys`: each of up to 16 result rows is a sum of the long operand's contiguous
//!   rows, each scaled by one element of the short one (`gᵀ·x`). A tile of result rows
//!   (8 with AVX-512, 6 with AVX2) by two vectors of columns stays in registers while
//!   the sum runs down the long operand.
//!
//! Every result is computed by one thread in a fixed order, so the results do not
//! depend on the number of threads. `axpys` adds in the order of `k` with one FMA per
//! term, as the packed product does; `dots` sums lanes, so its results depend on the
//! vector width (AVX2 or AVX-512) in the last bits. Below the AVX2 level the packed
//! product (`kernels::gemm`) does the work. (The module exists on x86-64 only.)

use core::any::TypeId;
use core::arch::x86_64::*;
use core::mem::MaybeUninit;

use super::gemm::{cast_dst, cast_mat, MatRef};
use super::isa::Isa;
use crate::Float;

/// A result side at most this long is narrow.
pub(crate) const NARROW_MAX: usize = 16;

/// Short rows of a `dots` tile, at most; a narrow side longer than this is done in two
/// blocks.
const BLOCK: usize = 8;

/// A product is split over threads only when each gets at least this many long rows
/// (`dots`) or result columns (`axpys`).
const PER_THREAD_MIN: usize = 64;

/// `dst = lhs · rhs` (row-major `m × n`, all of it written) with the kernels of this
/// module, when the product is narrow and laid out for them and `isa` (at most the
/// CPU's level) is AVX2 or AVX-512; returns `false` (writing nothing) otherwise.
pub(crate) fn narrow_product<E: Float>(
    dst: &mut [MaybeUninit<E>],
    lhs: MatRef<'_, E>,
    rhs: MatRef<'_, E>,
    threads: usize,
    isa: Isa,
) -> bool {
    // SAFETY (every call): `E` is the type it is compared with; `isa` was detected.
    unsafe {
        match isa {
            Isa::Avx512 if TypeId::of::<E>() == TypeId::of::<f32>() => {
                dispatch::<f32, _>(Avx512, cast_dst(dst), cast_mat(lhs), cast_mat(rhs), threads)
            }
            Isa::Avx512 if TypeId::of::<E>() == TypeId::of::<f64>() => {
                dispatch::<f64, _>(Avx512, cast_dst(dst), cast_mat(lhs), cast_mat(rhs), threads)
            }
            Isa::Avx2 if TypeId::of::<E>() == TypeId::of::<f32>() => {
                dispatch::<f32, _>(Avx2, cast_dst(dst), cast_mat(lhs), cast_mat(rhs), threads)
            }
            Isa::Avx2 if TypeId::of::<E>() == TypeId::of::<f64>() => {
                dispatch::<f64, _>(Avx2, cast_dst(dst), cast_mat(lhs), cast_mat(rhs), threads)
            }
            _ => false,
        }
    }
}

/// The AVX-512 (F and FMA) tiles.
#[derive(Clone, Copy)]
struct Avx512;

/// The AVX2 (and FMA) tiles.
#[derive(Clone, Copy)]
struct Avx2;

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
/// The CPU has the instruction set of `kernel`'s tiles.
unsafe fn dispatch<T: Copy + Send + Sync, K: Tiles<T>>(
    kernel: K,
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
        unsafe { dots(kernel, lhs_rows, rhs_cols, k, out, threads) };
    } else if k_contiguous && m <= NARROW_MAX {
        unsafe { dots(kernel, rhs_cols, lhs_rows, k, Out { rs: 1, cs: n, ..out }, threads) };
    } else if m <= NARROW_MAX && (rhs.cs == 1 || n == 1) {
        let rhs_rows = Rows { ptr: rhs_cols.ptr, stride: rhs.rs, count: k };
        unsafe { axpys(kernel, lhs, rhs_rows, n, out, threads) };
    } else {
        return false;
    }
    true
}

/// `out(i, j) = long row i · short row j`, every row `k` long.
///
/// # Safety
/// As [`dispatch`]; the rows and results lie inside their buffers.
unsafe fn dots<T: Copy + Send + Sync, K: Tiles<T>>(
    kernel: K,
    long: Rows<T>,
    short: Rows<T>,
    k: usize,
    out: Out<T>,
    threads: usize,
) {
    if threads > 1 && long.count >= 2 * PER_THREAD_MIN {
        let top = long.count / 2;
        let first = Rows { count: top, ..long };
        let second = Rows { ptr: long.ptr.wrapping_add(top * long.stride), count: long.count - top, ..long };
        let out_second = Out { ptr: out.ptr.wrapping_add(top * out.rs), ..out };
        let (t_first, t_second) = (threads / 2, threads - threads / 2);
        rayon::join(
            || unsafe { dots(kernel, first, short, k, out, t_first) },
            || unsafe { dots(kernel, second, short, k, out_second, t_second) },
        );
        return;
    }
    for (j0, width) in blocks(short.count, BLOCK) {
        let tall = dots_tile_height(width, K::ACCUMULATORS);
        let mut i = 0;
        while i < long.count {
            let height = if long.count - i >= tall { tall } else { 1 };
            // SAFETY: long rows `i..i + height` and short rows `j0..j0 + width` exist.
            unsafe {
                kernel.dots_tile(
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

/// How many long rows a `dots` tile takes against `width` short rows: at most
/// `accumulators` accumulators, at most [`BLOCK`] rows, and at least 2 rows where that
/// fits, so that independent multiply-adds overlap their latency.
const fn dots_tile_height(width: usize, accumulators: usize) -> usize {
    let height = accumulators / width;
    if height < 1 {
        1
    } else if height > BLOCK {
        BLOCK
    } else {
        height
    }
}

/// `0..len` in pieces of at most `block`, of nearly equal lengths.
fn blocks(len: usize, block: usize) -> impl Iterator<Item = (usize, usize)> {
    let pieces = len.div_ceil(block.max(1)).max(1);
    (0..pieces).map(move |p| (p * len / pieces, (p + 1) * len / pieces - p * len / pieces)).filter(|&(_, w)| w > 0)
}

/// `out` (`lhs.rows ≤ 16` rows of `cols`) `= lhs · (rows of rhs)`: row `r` is the sum of
/// `rhs` row `i` scaled by `lhs(r, i)`.
///
/// # Safety
/// As [`dispatch`]; the rows and results lie inside their buffers.
unsafe fn axpys<T: Copy + Send + Sync, K: Tiles<T>>(
    kernel: K,
    lhs: MatRef<'_, T>,
    rhs: Rows<T>,
    cols: usize,
    out: Out<T>,
    threads: usize,
) {
    let vector = 2 * K::LANES;
    if threads > 1 && cols >= 2 * PER_THREAD_MIN {
        let left = (cols / 2).next_multiple_of(vector).min(cols);
        let right = Rows { ptr: rhs.ptr.wrapping_add(left), ..rhs };
        let out_right = Out { ptr: out.ptr.wrapping_add(left), ..out };
        let (t_left, t_right) = (threads / 2, threads - threads / 2);
        rayon::join(
            || unsafe { axpys(kernel, lhs, rhs, left, out, t_left) },
            || unsafe { axpys(kernel, lhs, right, cols - left, out_right, t_right) },
        );
        return;
    }
    let lhs_ptr = unsafe { lhs.data.as_ptr().add(lhs.offset) };
    for c in (0..cols).step_by(vector) {
        let width = (cols - c).min(vector);
        for (r0, height) in blocks(lhs.rows, K::AXPY_ROWS) {
            // SAFETY: result rows `r0..r0 + height`, columns `c..c + width` exist, as do
            // the `rhs.count` rows of `rhs` from column `c` on.
            unsafe {
                kernel.axpys_tile(
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

/// The register tiles of one level, for elements `T`.
trait Tiles<T>: Copy + Send + Sync {
    /// Elements in one vector register.
    const LANES: usize;
    /// Accumulators a `dots` tile may hold (half the vector registers).
    const ACCUMULATORS: usize;
    /// Result rows of an `axpys` tile, at most.
    const AXPY_ROWS: usize;

    /// `out(p, j) = a row p · b row j` for `p < height`, `j < width ≤ 8`, with
    /// `height` = `dots_tile_height(width, ACCUMULATORS)` or 1.
    ///
    /// # Safety
    /// The CPU has the level's instruction set; the rows (`k` elements each) and
    /// results exist.
    #[allow(clippy::too_many_arguments)]
    unsafe fn dots_tile(
        self,
        height: usize,
        width: usize,
        a: *const T,
        a_rs: usize,
        b: *const T,
        b_rs: usize,
        k: usize,
        out: *mut T,
        out_rs: usize,
        out_cs: usize,
    );

    /// `out(r, 0..cols) = Σ_i lhs(r, i)·rhs row i` for `r < height ≤ AXPY_ROWS`,
    /// `i < k` and `cols ≤ 2·LANES`, with `lhs(r, i)` at `lhs + r·l_rs + i·l_cs`.
    ///
    /// # Safety
    /// The CPU has the level's instruction set; the operands and results exist.
    #[allow(clippy::too_many_arguments)]
    unsafe fn axpys_tile(
        self,
        height: usize,
        lhs: *const T,
        l_rs: usize,
        l_cs: usize,
        rhs: *const T,
        rhs_rs: usize,
        k: usize,
        cols: usize,
        out: *mut T,
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

/// The tiles of one level and float type, from its intrinsics. The level's own
/// helpers (masks, masked loads and stores, the sum of a vector's lanes) come from the
/// module `$helpers`.
macro_rules! tiles {
    ($kernel:ident, $t:ident, $module:ident, $features:literal, $lanes:expr, $accumulators:expr, $axpy_rows:expr,
     $helpers:ident, $vec:ty, $zero:ident, $load:ident, $fmadd:ident, $set1:ident) => {
        mod $module {
            use super::*;
            use $helpers::*;

            pub(super) const LANES: usize = $lanes;

            /// See `Tiles::dots_tile`; `P` long rows by `J` short rows.
            #[target_feature(enable = $features)]
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
                        let mask = $t::first_lanes(rest);
                        let mut x = [$zero(); P];
                        for p in 0..P {
                            x[p] = $t::masked_load(mask, a.add(p * a_rs + full * LANES));
                        }
                        for j in 0..J {
                            let y = $t::masked_load(mask, b.add(j * b_rs + full * LANES));
                            for p in 0..P {
                                acc[p][j] = $fmadd(x[p], y, acc[p][j]);
                            }
                        }
                    }
                    // The accumulators' lanes summed eight at a time (a transposing tree,
                    // in the same order per accumulator as `sum_lanes`), then the rest.
                    let flat: [[_; J]; P] = acc;
                    let mut k = 0;
                    while k + 8 <= P * J {
                        let group: [$vec; 8] = core::array::from_fn(|g| flat[(k + g) / J][(k + g) % J]);
                        let sums = $t::sum_lanes_8(group);
                        for (g, sum) in sums.into_iter().enumerate() {
                            let (p, j) = ((k + g) / J, (k + g) % J);
                            *out.add(p * out_rs + j * out_cs) = sum;
                        }
                        k += 8;
                    }
                    while k < P * J {
                        let (p, j) = (k / J, k % J);
                        *out.add(p * out_rs + j * out_cs) = $t::sum_lanes(flat[p][j]);
                        k += 1;
                    }
                }
            }

            /// See `Tiles::axpys_tile`; `R` result rows.
            #[target_feature(enable = $features)]
            #[allow(clippy::too_many_arguments)]
            pub(super) unsafe fn axpys<const R: usize>(
                lhs: *const $t, l_rs: usize, l_cs: usize, rhs: *const $t, rhs_rs: usize, k: usize,
                cols: usize, out: *mut $t, out_rs: usize,
            ) {
                unsafe {
                    let low = $t::first_lanes(cols);
                    if cols > LANES {
                        let high = $t::first_lanes(cols - LANES);
                        let mut acc_low = [$zero(); R];
                        let mut acc_high = [$zero(); R];
                        for i in 0..k {
                            let row = rhs.add(i * rhs_rs);
                            let x_low = $load(row);
                            let x_high = $t::masked_load(high, row.add(LANES));
                            for r in 0..R {
                                let s = $set1(*lhs.add(r * l_rs + i * l_cs));
                                acc_low[r] = $fmadd(s, x_low, acc_low[r]);
                                acc_high[r] = $fmadd(s, x_high, acc_high[r]);
                            }
                        }
                        for r in 0..R {
                            $t::masked_store(out.add(r * out_rs), low, acc_low[r]);
                            $t::masked_store(out.add(r * out_rs + LANES), high, acc_high[r]);
                        }
                    } else {
                        let mut acc = [$zero(); R];
                        for i in 0..k {
                            let x = $t::masked_load(low, rhs.add(i * rhs_rs));
                            for r in 0..R {
                                let s = $set1(*lhs.add(r * l_rs + i * l_cs));
                                acc[r] = $fmadd(s, x, acc[r]);
                            }
                        }
                        for r in 0..R {
                            $t::masked_store(out.add(r * out_rs), low, acc[r]);
                        }
                    }
                }
            }
        }

        impl Tiles<$t> for $kernel {
            const LANES: usize = $module::LANES;
            const ACCUMULATORS: usize = $accumulators;
            const AXPY_ROWS: usize = $axpy_rows;

            unsafe fn dots_tile(
                self, height: usize, width: usize, a: *const $t, a_rs: usize, b: *const $t, b_rs: usize, k: usize,
                out: *mut $t, out_rs: usize, out_cs: usize,
            ) {
                // SAFETY: forwarded from the caller.
                if height == 1 {
                    with_const!(width, J => unsafe { $module::dots::<1, J>(a, a_rs, b, b_rs, k, out, out_rs, out_cs) })
                } else {
                    debug_assert_eq!(height, dots_tile_height(width, $accumulators));
                    with_const!(width, J => unsafe {
                        $module::dots::<{ dots_tile_height(J, $accumulators) }, J>(a, a_rs, b, b_rs, k, out, out_rs, out_cs)
                    })
                }
            }

            unsafe fn axpys_tile(
                self, height: usize, lhs: *const $t, l_rs: usize, l_cs: usize, rhs: *const $t, rhs_rs: usize, k: usize,
                cols: usize, out: *mut $t, out_rs: usize,
            ) {
                // SAFETY: forwarded from the caller.
                with_const!(height, R => unsafe { $module::axpys::<R>(lhs, l_rs, l_cs, rhs, rhs_rs, k, cols, out, out_rs) })
            }
        }
    };
}

/// AVX-512's masks, masked loads and stores, and lane sums.
mod avx512_helpers {
    use core::arch::x86_64::*;

    pub(super) trait Lanes: Sized {
        type Vector: Copy;
        type Mask: Copy;
        /// The first `len` lanes (all of them from the vector's width on).
        fn first_lanes(len: usize) -> Self::Mask;
        /// # Safety
        /// AVX-512F; the selected lanes exist.
        unsafe fn masked_load(mask: Self::Mask, ptr: *const Self) -> Self::Vector;
        /// # Safety
        /// AVX-512F; the selected lanes exist.
        unsafe fn masked_store(ptr: *mut Self, mask: Self::Mask, v: Self::Vector);
        /// # Safety
        /// AVX-512F.
        unsafe fn sum_lanes(v: Self::Vector) -> Self;
        /// The sums of eight vectors' lanes, each in the order of `sum_lanes`.
        /// # Safety
        /// AVX-512F.
        unsafe fn sum_lanes_8(a: [Self::Vector; 8]) -> [Self; 8];
    }

    impl Lanes for f32 {
        type Vector = __m512;
        type Mask = __mmask16;
        #[inline(always)]
        fn first_lanes(len: usize) -> __mmask16 {
            if len >= 16 {
                u16::MAX
            } else {
                ((1u32 << len) - 1) as u16
            }
        }
        #[inline(always)]
        unsafe fn masked_load(mask: __mmask16, ptr: *const f32) -> __m512 {
            unsafe { _mm512_maskz_loadu_ps(mask, ptr) }
        }
        #[inline(always)]
        unsafe fn masked_store(ptr: *mut f32, mask: __mmask16, v: __m512) {
            unsafe { _mm512_mask_storeu_ps(ptr, mask, v) }
        }
        /// The sum of the 16 lanes, as a tree: the 128-bit blocks (b0 + b2) + (b1 + b3),
        /// then within the block (l0 + l2) + (l1 + l3). [`Lanes::sum_lanes_8`] sums
        /// each of its accumulators in this same order.
        #[inline(always)]
        unsafe fn sum_lanes(v: __m512) -> f32 {
            unsafe {
                let blocks = _mm512_add_ps(
                    _mm512_shuffle_f32x4::<0b01_00_01_00>(v, v),
                    _mm512_shuffle_f32x4::<0b11_10_11_10>(v, v),
                );
                let block = _mm512_add_ps(
                    _mm512_shuffle_f32x4::<0b10_00_10_00>(blocks, blocks),
                    _mm512_shuffle_f32x4::<0b11_01_11_01>(blocks, blocks),
                );
                let quad = _mm512_castps512_ps128(block);
                let pair = _mm_add_ps(quad, _mm_movehl_ps(quad, quad));
                _mm_cvtss_f32(_mm_add_ss(pair, _mm_shuffle_ps::<1>(pair, pair)))
            }
        }
        /// Eight sums at once: the blocks of pairs of accumulators are combined by
        /// shuffles across them, so the tree costs a few instructions per sum.
        #[inline(always)]
        unsafe fn sum_lanes_8(a: [__m512; 8]) -> [f32; 8] {
            unsafe {
                // v_i = [A0+A2, A1+A3, B0+B2, B1+B3] for A = a[2i], B = a[2i+1].
                let v: [__m512; 4] = core::array::from_fn(|i| {
                    let (x, y) = (a[2 * i], a[2 * i + 1]);
                    _mm512_add_ps(
                        _mm512_shuffle_f32x4::<0b01_00_01_00>(x, y),
                        _mm512_shuffle_f32x4::<0b11_10_11_10>(x, y),
                    )
                });
                // w_i: block r holds the four partial lanes of accumulator 4i + r.
                let w: [__m512; 2] = core::array::from_fn(|i| {
                    let (x, y) = (v[2 * i], v[2 * i + 1]);
                    _mm512_add_ps(
                        _mm512_shuffle_f32x4::<0b10_00_10_00>(x, y),
                        _mm512_shuffle_f32x4::<0b11_01_11_01>(x, y),
                    )
                });
                // Within each block: (l0 + l2, l1 + l3) of w0 and of w1, then their sums.
                let s = _mm512_add_ps(
                    _mm512_shuffle_ps::<0b01_00_01_00>(w[0], w[1]),
                    _mm512_shuffle_ps::<0b11_10_11_10>(w[0], w[1]),
                );
                let r =
                    _mm512_add_ps(_mm512_shuffle_ps::<0b10_00_10_00>(s, s), _mm512_shuffle_ps::<0b11_01_11_01>(s, s));
                // Block b: lane 0 is accumulator b, lane 1 accumulator 4 + b.
                let mut lanes = [0.0f32; 16];
                _mm512_storeu_ps(lanes.as_mut_ptr(), r);
                [lanes[0], lanes[4], lanes[8], lanes[12], lanes[1], lanes[5], lanes[9], lanes[13]]
            }
        }
    }

    impl Lanes for f64 {
        type Vector = __m512d;
        type Mask = __mmask8;
        #[inline(always)]
        fn first_lanes(len: usize) -> __mmask8 {
            if len >= 8 {
                u8::MAX
            } else {
                ((1u32 << len) - 1) as u8
            }
        }
        #[inline(always)]
        unsafe fn masked_load(mask: __mmask8, ptr: *const f64) -> __m512d {
            unsafe { _mm512_maskz_loadu_pd(mask, ptr) }
        }
        #[inline(always)]
        unsafe fn masked_store(ptr: *mut f64, mask: __mmask8, v: __m512d) {
            unsafe { _mm512_mask_storeu_pd(ptr, mask, v) }
        }
        /// The sum of the 8 lanes, as a tree: the 128-bit blocks (b0 + b2) + (b1 + b3),
        /// then l0 + l1. [`Lanes::sum_lanes_8`] sums each accumulator in this order.
        #[inline(always)]
        unsafe fn sum_lanes(v: __m512d) -> f64 {
            unsafe {
                let blocks = _mm512_add_pd(
                    _mm512_shuffle_f64x2::<0b01_00_01_00>(v, v),
                    _mm512_shuffle_f64x2::<0b11_10_11_10>(v, v),
                );
                let block = _mm512_add_pd(
                    _mm512_shuffle_f64x2::<0b10_00_10_00>(blocks, blocks),
                    _mm512_shuffle_f64x2::<0b11_01_11_01>(blocks, blocks),
                );
                let pair = _mm512_castpd512_pd128(block);
                _mm_cvtsd_f64(_mm_add_sd(pair, _mm_unpackhi_pd(pair, pair)))
            }
        }
        /// Eight sums at once, by shuffles across the accumulators.
        #[inline(always)]
        unsafe fn sum_lanes_8(a: [__m512d; 8]) -> [f64; 8] {
            unsafe {
                let v: [__m512d; 4] = core::array::from_fn(|i| {
                    let (x, y) = (a[2 * i], a[2 * i + 1]);
                    _mm512_add_pd(
                        _mm512_shuffle_f64x2::<0b01_00_01_00>(x, y),
                        _mm512_shuffle_f64x2::<0b11_10_11_10>(x, y),
                    )
                });
                let w: [__m512d; 2] = core::array::from_fn(|i| {
                    let (x, y) = (v[2 * i], v[2 * i + 1]);
                    _mm512_add_pd(
                        _mm512_shuffle_f64x2::<0b10_00_10_00>(x, y),
                        _mm512_shuffle_f64x2::<0b11_01_11_01>(x, y),
                    )
                });
                // Block r of w_i: the two partial lanes of accumulator 4i + r.
                let r = _mm512_add_pd(_mm512_unpacklo_pd(w[0], w[1]), _mm512_unpackhi_pd(w[0], w[1]));
                // Block b: lane 0 is accumulator b, lane 1 accumulator 4 + b.
                let mut lanes = [0.0f64; 8];
                _mm512_storeu_pd(lanes.as_mut_ptr(), r);
                [lanes[0], lanes[2], lanes[4], lanes[6], lanes[1], lanes[3], lanes[5], lanes[7]]
            }
        }
    }
}

/// AVX2's masks (a vector of all-ones or zero lanes), masked loads and stores (which,
/// like AVX-512's, never touch the lanes left out), and lane sums.
mod avx2_helpers {
    use core::arch::x86_64::*;

    pub(super) trait Lanes: Sized {
        type Vector: Copy;
        type Mask: Copy;
        /// The first `len` lanes (all of them from the vector's width on).
        /// # Safety
        /// AVX2.
        unsafe fn first_lanes(len: usize) -> Self::Mask;
        /// # Safety
        /// AVX2; the selected lanes exist.
        unsafe fn masked_load(mask: Self::Mask, ptr: *const Self) -> Self::Vector;
        /// # Safety
        /// AVX2; the selected lanes exist.
        unsafe fn masked_store(ptr: *mut Self, mask: Self::Mask, v: Self::Vector);
        /// # Safety
        /// AVX2.
        unsafe fn sum_lanes(v: Self::Vector) -> Self;
        /// The sums of eight vectors' lanes, one by one.
        /// # Safety
        /// AVX2.
        #[inline(always)]
        unsafe fn sum_lanes_8(a: [Self::Vector; 8]) -> [Self; 8] {
            // SAFETY: forwarded.
            core::array::from_fn(|i| unsafe { Self::sum_lanes(a[i]) })
        }
    }

    impl Lanes for f32 {
        type Vector = __m256;
        type Mask = __m256i;
        #[inline(always)]
        unsafe fn first_lanes(len: usize) -> __m256i {
            let len = len.min(8) as i32;
            unsafe { _mm256_cmpgt_epi32(_mm256_set1_epi32(len), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7)) }
        }
        #[inline(always)]
        unsafe fn masked_load(mask: __m256i, ptr: *const f32) -> __m256 {
            unsafe { _mm256_maskload_ps(ptr, mask) }
        }
        #[inline(always)]
        unsafe fn masked_store(ptr: *mut f32, mask: __m256i, v: __m256) {
            unsafe { _mm256_maskstore_ps(ptr, mask, v) }
        }
        #[inline(always)]
        unsafe fn sum_lanes(v: __m256) -> f32 {
            unsafe {
                let half = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps::<1>(v));
                let quarter = _mm_add_ps(half, _mm_movehl_ps(half, half));
                _mm_cvtss_f32(_mm_add_ss(quarter, _mm_shuffle_ps::<1>(quarter, quarter)))
            }
        }
    }

    impl Lanes for f64 {
        type Vector = __m256d;
        type Mask = __m256i;
        #[inline(always)]
        unsafe fn first_lanes(len: usize) -> __m256i {
            let len = len.min(4) as i64;
            unsafe { _mm256_cmpgt_epi64(_mm256_set1_epi64x(len), _mm256_setr_epi64x(0, 1, 2, 3)) }
        }
        #[inline(always)]
        unsafe fn masked_load(mask: __m256i, ptr: *const f64) -> __m256d {
            unsafe { _mm256_maskload_pd(ptr, mask) }
        }
        #[inline(always)]
        unsafe fn masked_store(ptr: *mut f64, mask: __m256i, v: __m256d) {
            unsafe { _mm256_maskstore_pd(ptr, mask, v) }
        }
        #[inline(always)]
        unsafe fn sum_lanes(v: __m256d) -> f64 {
            unsafe {
                let half = _mm_add_pd(_mm256_castpd256_pd128(v), _mm256_extractf128_pd::<1>(v));
                _mm_cvtsd_f64(_mm_add_sd(half, _mm_unpackhi_pd(half, half)))
            }
        }
    }
}

tiles!(
    Avx512,
    f32,
    avx512_f32,
    "avx512f,fma",
    16,
    16,
    8,
    avx512_helpers,
    __m512,
    _mm512_setzero_ps,
    _mm512_loadu_ps,
    _mm512_fmadd_ps,
    _mm512_set1_ps
);
tiles!(
    Avx512,
    f64,
    avx512_f64,
    "avx512f,fma",
    8,
    16,
    8,
    avx512_helpers,
    __m512d,
    _mm512_setzero_pd,
    _mm512_loadu_pd,
    _mm512_fmadd_pd,
    _mm512_set1_pd
);
tiles!(
    Avx2,
    f32,
    avx2_f32,
    "avx2,fma",
    8,
    8,
    6,
    avx2_helpers,
    __m256,
    _mm256_setzero_ps,
    _mm256_loadu_ps,
    _mm256_fmadd_ps,
    _mm256_set1_ps
);
tiles!(
    Avx2,
    f64,
    avx2_f64,
    "avx2,fma",
    4,
    8,
    6,
    avx2_helpers,
    __m256d,
    _mm256_setzero_pd,
    _mm256_loadu_pd,
    _mm256_fmadd_pd,
    _mm256_set1_pd
);
