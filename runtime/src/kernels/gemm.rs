//! The GEMM contract: `dst = lhs · rhs` for one strided matrix pair, through the `gemm`
//! crate (its packing and AVX-512/AVX2/FMA micro-kernels are the loop nest; its rayon
//! backend is the parallelism).
//!
//! Any strides are accepted, so a transposed view is multiplied where it lies: the crate
//! packs panels from either layout, and nothing is copied here.

use core::mem::MaybeUninit;

use super::gemv::{unit_dim_product, LEVEL2_MAX_FLOPS};
use super::params::KernelParams;
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

/// A product is split by rows over threads only when each gets at least this many.
const ROWS_PER_THREAD_MIN: usize = 32;

/// Write `lhs · rhs` into `dst`, a row-major `lhs.rows × rhs.cols` buffer (its previous
/// contents are never read), with up to `threads` rayon threads.
pub(crate) fn gemm_into<'a, E: Float>(
    dst: &mut [MaybeUninit<E>],
    lhs: MatRef<'a, E>,
    rhs: MatRef<'a, E>,
    threads: usize,
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
    let simd = KernelParams::current().simd;
    if m * n * k <= LEVEL2_MAX_FLOPS && unit_dim_product(dst, lhs, rhs, simd) {
        return;
    }
    #[cfg(target_arch = "x86_64")]
    if super::narrow::narrow_product(dst, lhs, rhs, threads, simd) {
        return;
    }
    // SAFETY: `dst` holds the row-major `m × n` result, and only this call writes it.
    unsafe { crate_product(Dst { ptr: dst.as_mut_ptr() as *mut E, rs: n }, lhs, rhs, threads) }
}

/// Where a product's row-major result goes: element `(i, j)` at `ptr + i·rs + j`.
#[derive(Clone, Copy)]
struct Dst<E> {
    ptr: *mut E,
    rs: usize,
}

// SAFETY: the threads of one product write disjoint blocks of the result.
unsafe impl<E: Send> Send for Dst<E> {}
unsafe impl<E: Send> Sync for Dst<E> {}

/// `dst = lhs · rhs` through the crate, in blocks on separate threads.
///
/// # Safety
/// `dst` has room for `lhs.rows × rhs.cols` elements at its row stride, which nothing
/// else reads or writes meanwhile; the operands were bounds-checked.
unsafe fn crate_product<'a, E: Float>(dst: Dst<E>, lhs: MatRef<'a, E>, rhs: MatRef<'a, E>, threads: usize) {
    let (m, k, n) = (lhs.rows, lhs.cols, rhs.cols);
    // Blocks of the result on separate threads, each a serial product: the crate's own
    // rayon split scaled by only 1.15-1.25× on two cores for the products of an MLP
    // step (128×784×256 and the like). The crate packs an operand that is not in its
    // preferred layout in every block that reads it, and `W` of `x·Wᵀ` (a column-major
    // `rhs`) is such an operand: that product is split by result columns (rows of `W`),
    // so each thread packs its half of `W` rather than all of it (MLP step
    // 1.22-1.31 → 1.11-1.14 ms); other products are split by result rows.
    let (t_first, t_second) = (threads / 2, threads - threads / 2);
    if threads > 1 && rhs.rs == 1 && rhs.cs != 1 && n >= ROWS_PER_THREAD_MIN * threads {
        let left = (n / 2).next_multiple_of(16).min(n);
        let rhs_left = MatRef { cols: left, ..rhs };
        let rhs_right = MatRef { cols: n - left, offset: rhs.offset + left * rhs.cs, ..rhs };
        let dst_right = Dst { ptr: dst.ptr.wrapping_add(left), ..dst };
        rayon::join(
            || unsafe { crate_product(dst, lhs, rhs_left, t_first) },
            || unsafe { crate_product(dst_right, lhs, rhs_right, t_second) },
        );
        return;
    }
    if threads > 1 && m >= ROWS_PER_THREAD_MIN * threads {
        let top = (m / 2).next_multiple_of(16).min(m);
        let lhs_top = MatRef { rows: top, ..lhs };
        let lhs_bottom = MatRef { rows: m - top, offset: lhs.offset + top * lhs.rs, ..lhs };
        let dst_bottom = Dst { ptr: dst.ptr.wrapping_add(top * dst.rs), ..dst };
        rayon::join(
            || unsafe { crate_product(dst, lhs_top, rhs, t_first) },
            || unsafe { crate_product(dst_bottom, lhs_bottom, rhs, t_second) },
        );
        return;
    }
    let par = if threads > 1 { gemm::Parallelism::Rayon(threads) } else { gemm::Parallelism::None };
    // The crate is fastest when all three matrices share one layout, and slowest when a
    // row-major `dst` meets a column-major `rhs` (`x·Wᵀ`, a linear layer). The same
    // memory computed as the transposed product `dstᵀ = rhsᵀ·lhsᵀ` is 10-15 % faster
    // there (measured on this machine kind, two threads: 128×784×256 459 → 414 µs);
    // no layout of the same operands matches the 309 µs of an all-row-major product
    // without copying one of them. (Narrow products such as 1000×784×10 no longer get
    // here: `kernels::narrow` takes them.)
    let (m, n, dst_cs, dst_rs, lhs, rhs) = if rhs.rs == 1 && rhs.cs != 1 {
        let t = |a: MatRef<'a, E>| MatRef { rows: a.cols, cols: a.rows, rs: a.cs, cs: a.rs, ..a };
        (n, m, dst.rs, 1, t(rhs), t(lhs))
    } else {
        (m, n, 1, dst.rs, lhs, rhs)
    };
    // SAFETY: the operands were bounds-checked above and `dst` holds exactly `m·n`
    // elements, addressed through `dst_rs`/`dst_cs` as a row-major `m × n` matrix or
    // its transpose. With `read_dst = false` the crate treats `alpha` as zero and only
    // writes `dst` (its contract is `dst := alpha·dst + beta·lhs·rhs`). `E` is f32 or
    // f64, which the crate dispatches on by `TypeId`.
    unsafe {
        gemm::gemm::<E>(
            m,
            n,
            k,
            dst.ptr,
            dst_cs as isize,
            dst_rs as isize,
            false,
            lhs.data.as_ptr().add(lhs.offset),
            lhs.cs as isize,
            lhs.rs as isize,
            rhs.data.as_ptr().add(rhs.offset),
            rhs.cs as isize,
            rhs.rs as isize,
            E::ZERO,
            E::ONE,
            false,
            false,
            false,
            par,
        );
    }
}
