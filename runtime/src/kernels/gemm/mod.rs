//! The GEMM contract: `dst = lhs · rhs` for one strided matrix pair, and which kernel
//! computes it.
//!
//! - Products with a unit dimension are sums of vectors (`super::gemv`).
//! - Products with a side of at most 16 run on the register tiles of `super::narrow`
//!   (AVX2 or AVX-512).
//! - Everything else is packed and computed by the tiles of this module: [`tiles`] (the
//!   micro-kernels, one per instruction-set level and element type), [`pack`] (the
//!   operands copied into panels in the order the tiles read them) and [`blocking`] (the
//!   loop nest and the split over threads), as in GotoBLAS and BLIS.
//!
//! Any strides are accepted, so a transposed view is multiplied where it lies.
//!
//! Every element of a result is one sum over `k` in order, whatever the split over
//! threads and blocks; so a product does not depend on the thread count or the
//! parallel thresholds. The level decides the arithmetic: the AVX2 and AVX-512 tiles
//! add each term with a fused multiply-add (bitwise the same results at both levels),
//! the baseline tile rounds the product first.

mod blocking;
mod pack;
mod tiles;

use core::any::TypeId;
use core::mem::MaybeUninit;

use super::gemv::{unit_dim_product, LEVEL2_MAX_FLOPS};
use super::isa::Isa;
use crate::Float;

/// A strided `rows × cols` matrix inside `data`: element `(i, j)` is at
/// `data[offset + i·rs + j·cs]`.
#[derive(Clone, Copy, Debug)]
pub(crate) struct MatRef<'a, E> {
    pub data: &'a [E],
    pub offset: usize,
    pub rows: usize,
    pub cols: usize,
    pub rs: usize,
    pub cs: usize,
}

impl<E> MatRef<'_, E> {
    /// Panics unless every element lies inside `data` (keeps the raw-pointer call sound).
    pub(super) fn check(&self) {
        if self.rows > 0 && self.cols > 0 {
            let last = self.offset + (self.rows - 1) * self.rs + (self.cols - 1) * self.cs;
            assert!(last < self.data.len(), "adjoint: internal error: matrix view out of bounds");
        }
    }
}

/// Write `lhs · rhs` into `dst`, a row-major `lhs.rows × rhs.cols` buffer (its previous
/// contents are never read), with up to `threads` rayon threads, at level `isa` (or the
/// CPU's widest, if narrower).
pub(crate) fn gemm_into<'a, E: Float>(
    dst: &mut [MaybeUninit<E>],
    lhs: MatRef<'a, E>,
    rhs: MatRef<'a, E>,
    threads: usize,
    isa: Isa,
) {
    let (m, k, n) = (lhs.rows, lhs.cols, rhs.cols);
    assert!(rhs.rows == k && dst.len() == m * n, "adjoint: internal error: gemm shapes");
    if m == 0 || n == 0 {
        return;
    }
    if k == 0 {
        for d in dst {
            d.write(E::ZERO);
        }
        return;
    }
    lhs.check();
    rhs.check();
    let isa = isa.effective();
    if m * n * k <= LEVEL2_MAX_FLOPS && unit_dim_product(dst, lhs, rhs, isa) {
        return;
    }
    #[cfg(target_arch = "x86_64")]
    if super::narrow::narrow_product(dst, lhs, rhs, threads, isa) {
        return;
    }
    // SAFETY: `E` is the type it is compared with (the casts); the operands were
    // checked, `dst` holds the `m × n` result and only this call writes it; `isa` is
    // at most the CPU's level.
    unsafe {
        if TypeId::of::<E>() == TypeId::of::<f32>() {
            packed::<f32>(cast_dst(dst), cast_mat(lhs), cast_mat(rhs), threads, isa);
        } else if TypeId::of::<E>() == TypeId::of::<f64>() {
            packed::<f64>(cast_dst(dst), cast_mat(lhs), cast_mat(rhs), threads, isa);
        } else {
            unreachable!("adjoint: internal error: a Float that is neither f32 nor f64");
        }
    }
}

/// The packed product with the tiles of level `isa`.
///
/// # Safety
/// As [`blocking::product`]; `isa` is at most the CPU's level.
#[cfg(target_arch = "x86_64")]
unsafe fn packed<T: Float>(dst: &mut [MaybeUninit<T>], lhs: MatRef<'_, T>, rhs: MatRef<'_, T>, threads: usize, isa: Isa)
where
    tiles::Avx512: tiles::Tile<T>,
    tiles::Avx2: tiles::Tile<T>,
    tiles::Portable: tiles::Tile<T>,
{
    let dst = dst.as_mut_ptr() as *mut T;
    // SAFETY: forwarded from the caller.
    unsafe {
        match isa {
            Isa::Avx512 => blocking::product(tiles::Avx512, dst, lhs, rhs, threads),
            Isa::Avx2 => blocking::product(tiles::Avx2, dst, lhs, rhs, threads),
            Isa::Baseline => blocking::product(tiles::Portable, dst, lhs, rhs, threads),
        }
    }
}

/// The packed product with the portable tiles (the only ones off x86-64).
///
/// # Safety
/// As [`blocking::product`].
#[cfg(not(target_arch = "x86_64"))]
unsafe fn packed<T: Float>(
    dst: &mut [MaybeUninit<T>],
    lhs: MatRef<'_, T>,
    rhs: MatRef<'_, T>,
    threads: usize,
    _isa: Isa,
) where
    tiles::Portable: tiles::Tile<T>,
{
    // SAFETY: forwarded from the caller.
    unsafe { blocking::product(tiles::Portable, dst.as_mut_ptr() as *mut T, lhs, rhs, threads) }
}

/// The tile shapes of level `isa`, for [`super::describe`].
pub(crate) fn describe(isa: Isa) -> String {
    use tiles::Tile;
    fn shapes<K: Tile<f32> + Tile<f64>>(name: &str) -> String {
        format!(
            "GEMM tiles {name} f32 {}x{}, f64 {}x{}",
            <K as Tile<f32>>::MR,
            <K as Tile<f32>>::NR,
            <K as Tile<f64>>::MR,
            <K as Tile<f64>>::NR
        )
    }
    match isa {
        #[cfg(target_arch = "x86_64")]
        Isa::Avx512 => shapes::<tiles::Avx512>("avx512"),
        #[cfg(target_arch = "x86_64")]
        Isa::Avx2 => shapes::<tiles::Avx2>("avx2"),
        _ => shapes::<tiles::Portable>("portable"),
    }
}

/// # Safety
/// `E` and `T` must be the same type.
pub(super) unsafe fn cast_dst<E, T>(dst: &mut [MaybeUninit<E>]) -> &mut [MaybeUninit<T>] {
    unsafe { &mut *(dst as *mut [MaybeUninit<E>] as *mut [MaybeUninit<T>]) }
}

/// # Safety
/// `E` and `T` must be the same type.
pub(super) unsafe fn cast_mat<E, T>(m: MatRef<'_, E>) -> MatRef<'_, T> {
    let data = unsafe { &*(m.data as *const [E] as *const [T]) };
    MatRef { data, offset: m.offset, rows: m.rows, cols: m.cols, rs: m.rs, cs: m.cs }
}
