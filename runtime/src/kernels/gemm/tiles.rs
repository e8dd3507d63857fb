//! The micro-kernels: one register tile of `C` per call, `C[0..rows, 0..NR] (+)= A·B`
//! over `k` steps, from a panel of `A` (`rows` adjacent values per step, broadcast) and
//! one of `B` (`NR` adjacent values per step, two vectors). A panel is packed, or read
//! where it lies when the operand already has that layout; the tile takes the distance
//! between its steps.
//!
//! Each element of the tile is one accumulator: it starts from zero, or from the value
//! `C` holds when `load` is set (a later block of `k`), and adds `a·b` for each step in
//! order. So an element's value is the same sequential sum over `k` however the product
//! is cut into blocks, tiles and threads. With FMA (the AVX2 and AVX-512 tiles) each
//! step is one fused multiply-add, so those two levels give bitwise the same results;
//! the baseline tile rounds the product and the sum separately.
//!
//! | level | f32 tile | f64 tile | accumulators |
//! |---|---|---|---|
//! | AVX-512 | 12 × 32 | 12 × 16 | 24 of 32 zmm |
//! | AVX2 | 6 × 16 | 6 × 8 | 12 of 16 ymm |
//! | baseline | 4 × 8 | 4 × 4 | portable Rust, vectorised by LLVM (SSE2: 8 of 16 xmm) |

use crate::kernels::isa::Isa;
use crate::Float;

/// A micro-kernel for elements `T`.
pub(super) trait Tile<T>: Copy + Send + Sync {
    /// Rows of a full tile (values of `A` broadcast per step).
    const MR: usize;
    /// Columns of a tile (values of `B` loaded per step).
    const NR: usize;
    /// Steps of `k` per block: a packed `A` panel (`MR × KC`) stays in L1 while the tile
    /// sweeps the packed `B` block.
    const KC: usize;
    /// Columns of the packed `B` block one thread sweeps (`KC × NC` stays in L2).
    const NC: usize;
    /// The instruction set of the tiles (the packing is compiled for it too).
    const ISA: Isa;

    /// `C[0..rows, 0..NR] = (load ? C : 0) + Σ_p A[·, p]·B[p, ·]` with `C` row-major at
    /// `c` (row stride `ldc`), step `p` of `A` at `a + p·a_step` (`rows` values) and of
    /// `B` at `b + p·b_step` (`NR` values).
    ///
    /// # Safety
    /// `rows ≤ MR`; the panels hold `k` steps; the tile's `rows × NR` elements of `C`
    /// exist; the CPU has the tile's instruction set.
    #[allow(clippy::too_many_arguments)]
    unsafe fn tile(
        self,
        rows: usize,
        k: usize,
        a: *const T,
        a_step: usize,
        b: *const T,
        b_step: usize,
        c: *mut T,
        ldc: usize,
        load: bool,
    );
}

/// Run `$body` with `$n` (a run-time value in `1..=12`) as the constant `$N`.
macro_rules! with_rows {
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
            9 => {
                const $N: usize = 9;
                $body
            }
            10 => {
                const $N: usize = 10;
                $body
            }
            11 => {
                const $N: usize = 11;
                $body
            }
            12 => {
                const $N: usize = 12;
                $body
            }
            n => unreachable!("adjoint: internal error: tile of {n} rows"),
        }
    };
}

/// The portable tile: `MR × NR` accumulators in arrays, which LLVM keeps in vector
/// registers and vectorises along the columns.
#[derive(Clone, Copy, Debug)]
pub(super) struct Portable;

/// The portable tile's loop, `ROWS` rows of `NR` columns.
///
/// # Safety
/// As [`Tile::tile`].
#[inline(always)]
#[allow(clippy::too_many_arguments)]
unsafe fn portable_tile<T: Float, const ROWS: usize, const NR: usize>(
    k: usize,
    a: *const T,
    a_step: usize,
    b: *const T,
    b_step: usize,
    c: *mut T,
    ldc: usize,
    load: bool,
) {
    unsafe {
        let mut acc = [[T::ZERO; NR]; ROWS];
        if load {
            for (i, row) in acc.iter_mut().enumerate() {
                for (j, x) in row.iter_mut().enumerate() {
                    *x = *c.add(i * ldc + j);
                }
            }
        }
        for p in 0..k {
            let bp = &*(b.add(p * b_step) as *const [T; NR]);
            for (i, row) in acc.iter_mut().enumerate() {
                let ai = *a.add(p * a_step + i);
                for (x, &bj) in row.iter_mut().zip(bp) {
                    *x += ai * bj;
                }
            }
        }
        for (i, row) in acc.iter().enumerate() {
            for (j, &x) in row.iter().enumerate() {
                *c.add(i * ldc + j) = x;
            }
        }
    }
}

macro_rules! portable_tiles {
    ($t:ty, $mr:expr, $nr:expr, $kc:expr, $nc:expr) => {
        impl Tile<$t> for Portable {
            const MR: usize = $mr;
            const NR: usize = $nr;
            const KC: usize = $kc;
            const NC: usize = $nc;
            const ISA: Isa = Isa::Baseline;

            #[inline]
            unsafe fn tile(
                self, rows: usize, k: usize, a: *const $t, a_step: usize, b: *const $t, b_step: usize, c: *mut $t,
                ldc: usize, load: bool,
            ) {
                // SAFETY: forwarded from the caller.
                with_rows!(rows, R => unsafe { portable_tile::<$t, R, $nr>(k, a, a_step, b, b_step, c, ldc, load) })
            }
        }
    };
}

portable_tiles!(f32, 4, 8, 256, 1024);
portable_tiles!(f64, 4, 4, 256, 512);

/// The AVX2 and AVX-512 tiles: `ROWS × 2` vector accumulators, two vectors of `B`
/// loaded and one value of `A` broadcast per row and step, one FMA per accumulator.
#[cfg(target_arch = "x86_64")]
macro_rules! simd_tiles {
    ($kernel:ident, $isa:expr, $module:ident, $features:literal, $t:ty, $lanes:expr, $nv:expr, $mr:expr, $kc:expr, $nc:expr,
     $vec:ty, $zero:ident, $load:ident, $store:ident, $set1:ident, $fmadd:ident) => {
        mod $module {
            use core::arch::x86_64::*;

            pub(super) const LANES: usize = $lanes;
            /// Vectors per row of the tile.
            const NV: usize = $nv;
            pub(super) const NR: usize = NV * LANES;
            pub(super) const MR: usize = $mr;
            /// Steps of `k` between a prefetch of `B` and its use.
            const PREFETCH: usize = 8;

            /// `ROWS` rows of the tile.
            #[target_feature(enable = $features)]
            #[allow(clippy::too_many_arguments)]
            pub(super) unsafe fn tile<const ROWS: usize>(
                k: usize,
                a: *const $t,
                a_step: usize,
                b: *const $t,
                b_step: usize,
                c: *mut $t,
                ldc: usize,
                load: bool,
            ) {
                unsafe {
                    let mut acc = [[$zero(); NV]; ROWS];
                    if load {
                        for i in 0..ROWS {
                            for v in 0..NV {
                                acc[i][v] = $load(c.add(i * ldc + v * LANES));
                            }
                        }
                    }
                    let (mut a, mut b) = (a, b);
                    // One step of `k`: every accumulator gains one product.
                    let mut step = |a: *const $t, b: *const $t| {
                        // The `B` panel streams from L2: ask for it a few steps ahead.
                        for v in 0..NV {
                            _mm_prefetch::<_MM_HINT_T0>(b.wrapping_add(PREFETCH * b_step + v * LANES) as *const i8);
                        }
                        let mut bv = [$zero(); NV];
                        for v in 0..NV {
                            bv[v] = $load(b.add(v * LANES));
                        }
                        for i in 0..ROWS {
                            let ai: $vec = $set1(*a.add(i));
                            for v in 0..NV {
                                acc[i][v] = $fmadd(ai, bv[v], acc[i][v]);
                            }
                        }
                    };
                    for _ in 0..k / 4 {
                        step(a, b);
                        step(a.add(a_step), b.add(b_step));
                        step(a.add(2 * a_step), b.add(2 * b_step));
                        step(a.add(3 * a_step), b.add(3 * b_step));
                        a = a.add(4 * a_step);
                        b = b.add(4 * b_step);
                    }
                    for _ in 0..k % 4 {
                        step(a, b);
                        a = a.add(a_step);
                        b = b.add(b_step);
                    }
                    for i in 0..ROWS {
                        for v in 0..NV {
                            $store(c.add(i * ldc + v * LANES), acc[i][v]);
                        }
                    }
                }
            }
        }

        impl Tile<$t> for $kernel {
            const MR: usize = $module::MR;
            const NR: usize = $module::NR;
            const KC: usize = $kc;
            const NC: usize = $nc;
            const ISA: Isa = $isa;

            #[inline]
            unsafe fn tile(
                self, rows: usize, k: usize, a: *const $t, a_step: usize, b: *const $t, b_step: usize, c: *mut $t,
                ldc: usize, load: bool,
            ) {
                // SAFETY: forwarded from the caller, who checked the CPU's level.
                with_rows!(rows, R => unsafe { $module::tile::<R>(k, a, a_step, b, b_step, c, ldc, load) })
            }
        }
    };
}

/// The AVX-512 tiles (F and FMA).
#[cfg(target_arch = "x86_64")]
#[derive(Clone, Copy, Debug)]
pub(super) struct Avx512;

/// The AVX2 tiles (AVX2 and FMA).
#[cfg(target_arch = "x86_64")]
#[derive(Clone, Copy, Debug)]
pub(super) struct Avx2;

#[cfg(target_arch = "x86_64")]
simd_tiles!(
    Avx512,
    Isa::Avx512,
    avx512_f32,
    "avx512f,fma",
    f32,
    16,
    2,
    12,
    384,
    1024,
    __m512,
    _mm512_setzero_ps,
    _mm512_loadu_ps,
    _mm512_storeu_ps,
    _mm512_set1_ps,
    _mm512_fmadd_ps
);
#[cfg(target_arch = "x86_64")]
simd_tiles!(
    Avx512,
    Isa::Avx512,
    avx512_f64,
    "avx512f,fma",
    f64,
    8,
    2,
    12,
    192,
    512,
    __m512d,
    _mm512_setzero_pd,
    _mm512_loadu_pd,
    _mm512_storeu_pd,
    _mm512_set1_pd,
    _mm512_fmadd_pd
);
#[cfg(target_arch = "x86_64")]
simd_tiles!(
    Avx2,
    Isa::Avx2,
    avx2_f32,
    "avx2,fma",
    f32,
    8,
    2,
    6,
    256,
    1024,
    __m256,
    _mm256_setzero_ps,
    _mm256_loadu_ps,
    _mm256_storeu_ps,
    _mm256_set1_ps,
    _mm256_fmadd_ps
);
#[cfg(target_arch = "x86_64")]
simd_tiles!(
    Avx2,
    Isa::Avx2,
    avx2_f64,
    "avx2,fma",
    f64,
    4,
    2,
    6,
    256,
    512,
    __m256d,
    _mm256_setzero_pd,
    _mm256_loadu_pd,
    _mm256_storeu_pd,
    _mm256_set1_pd,
    _mm256_fmadd_pd
);
