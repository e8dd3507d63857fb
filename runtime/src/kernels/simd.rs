//! Run-time dispatch to the widest vector instructions of the CPU.
//!
//! The crate is compiled for baseline x86-64 (SSE2). [`vectorize`] runs a loop inside a
//! function compiled with AVX-512 or AVX2+FMA enabled, when the CPU has them: LLVM
//! inlines the loop (a closure) into that function and vectorises it 16 or 8 lanes wide
//! instead of 4. The arithmetic is the same IEEE operations in the same order (no
//! contraction into FMA, accumulators are explicit), so the results are bitwise the
//! same at every level.

#[cfg(target_arch = "x86_64")]
use std::sync::atomic::{AtomicU8, Ordering};

#[cfg(target_arch = "x86_64")]
const UNKNOWN: u8 = 0;
#[cfg(target_arch = "x86_64")]
const BASE: u8 = 1;
#[cfg(target_arch = "x86_64")]
const AVX2: u8 = 2;
#[cfg(target_arch = "x86_64")]
const AVX512: u8 = 3;

#[cfg(target_arch = "x86_64")]
static LEVEL: AtomicU8 = AtomicU8::new(UNKNOWN);

#[cfg(target_arch = "x86_64")]
#[cold]
fn detect() -> u8 {
    let level = if is_x86_feature_detected!("avx512f")
        && is_x86_feature_detected!("avx512bw")
        && is_x86_feature_detected!("avx512dq")
        && is_x86_feature_detected!("avx512vl")
        && is_x86_feature_detected!("fma")
    {
        AVX512
    } else if is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma") {
        AVX2
    } else {
        BASE
    };
    LEVEL.store(level, Ordering::Relaxed);
    level
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bw,avx512dq,avx512vl,avx2,fma,bmi1,bmi2,lzcnt,popcnt")]
unsafe fn with_avx512<R>(f: impl FnOnce() -> R) -> R {
    f()
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma,bmi1,bmi2,lzcnt,popcnt")]
unsafe fn with_avx2<R>(f: impl FnOnce() -> R) -> R {
    f()
}

#[cfg(target_arch = "x86_64")]
#[inline(always)]
fn level() -> u8 {
    match LEVEL.load(Ordering::Relaxed) {
        UNKNOWN => detect(),
        l => l,
    }
}

/// Whether the CPU has the AVX-512 subsets (F, BW, DQ, VL) and FMA that the hand-written
/// kernels (`kernels::narrow`) are compiled for.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
pub(crate) fn has_avx512() -> bool {
    level() == AVX512
}

/// Run `f` (a loop) compiled for the widest vector instructions available, if `simd`;
/// else as compiled.
#[inline(always)]
pub(crate) fn vectorize<R>(simd: bool, f: impl FnOnce() -> R) -> R {
    #[cfg(target_arch = "x86_64")]
    if simd {
        // SAFETY: the features each function enables were detected on this CPU.
        match level() {
            AVX512 => return unsafe { with_avx512(f) },
            AVX2 => return unsafe { with_avx2(f) },
            _ => {}
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = simd;
    f()
}
