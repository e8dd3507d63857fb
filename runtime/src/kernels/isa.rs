//! Instruction-set levels: what the CPU has, what the kernels may use, and the run-time
//! dispatch of loops to them.
//!
//! The crate is compiled for baseline x86-64 (SSE2). A kernel picks its code by the
//! level in force, `min(KernelParams::isa, Isa::detected())`, so a test can force the
//! AVX2 or baseline code on an AVX-512 machine; a level the CPU lacks is never run.
//! [`vectorize`] runs a loop (a closure) inside a function compiled with AVX-512 or
//! AVX2+FMA enabled: LLVM inlines the loop there and vectorises it 16 or 8 lanes wide
//! instead of 4. Those loops do the same IEEE operations in the same order at every
//! level (no contraction into FMA, explicit accumulators), so their results are
//! bitwise the same at every level. The hand-written kernels (`gemm`, `narrow`) use
//! FMA from the AVX2 level on: their results are the same at the AVX2 and AVX-512
//! levels (but for `narrow`'s dot products, which sum a vector's lanes) and may differ
//! in the last bits from the baseline level's.
//!
//! The environment variable `ADJOINT_ISA` (`baseline`, `avx2` or `avx512`, read once)
//! caps the detected level for the whole process, so that a program, a benchmark or a
//! test run behaves as on a machine with less, without changing its code (as
//! `MKL_ENABLE_INSTRUCTIONS` does for MKL).

use std::sync::atomic::{AtomicU8, Ordering};

/// An instruction-set level of the kernels, from the narrowest to the widest.
///
/// On x86-64: [`Isa::Baseline`] is SSE2 (every x86-64 CPU), [`Isa::Avx2`] is AVX2 with
/// FMA (Haswell, Zen and later), [`Isa::Avx512`] is AVX-512 F, BW, DQ and VL with FMA
/// (Skylake-X, Ice Lake, Sapphire Rapids, Zen 4 and later). On other architectures only
/// [`Isa::Baseline`] is ever detected: the kernels are portable Rust there.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Isa {
    /// Portable code compiled for the target's baseline (SSE2 on x86-64).
    Baseline,
    /// AVX2 and FMA: 256-bit vectors.
    Avx2,
    /// AVX-512 (F, BW, DQ, VL) and FMA: 512-bit vectors.
    Avx512,
}

impl Isa {
    /// Every level, narrowest first.
    pub const ALL: [Isa; 3] = [Isa::Baseline, Isa::Avx2, Isa::Avx512];

    /// The widest level this CPU runs (detected once, at the first call), or less if
    /// `ADJOINT_ISA` caps it.
    #[inline(always)]
    pub fn detected() -> Isa {
        match DETECTED.load(Ordering::Relaxed) {
            UNKNOWN => detect(),
            level => from_code(level),
        }
    }

    /// Whether this CPU runs code of this level.
    pub fn is_available(self) -> bool {
        self <= Isa::detected()
    }

    /// The level the kernels run when this one is asked for: this one, or the CPU's
    /// widest if that is narrower.
    #[inline(always)]
    pub fn effective(self) -> Isa {
        self.min(Isa::detected())
    }

    /// The level named `name` (`"baseline"`, `"avx2"`, `"avx512"`, any case).
    pub fn from_name(name: &str) -> Option<Isa> {
        Isa::ALL.into_iter().find(|level| level.name().eq_ignore_ascii_case(name.trim()))
    }

    /// A short name (`"baseline"`, `"avx2"`, `"avx512"`).
    pub fn name(self) -> &'static str {
        match self {
            Isa::Baseline => "baseline",
            Isa::Avx2 => "avx2",
            Isa::Avx512 => "avx512",
        }
    }
}

impl std::fmt::Display for Isa {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

const UNKNOWN: u8 = 0;

fn code(level: Isa) -> u8 {
    level as u8 + 1
}

fn from_code(code: u8) -> Isa {
    Isa::ALL[(code - 1) as usize]
}

static DETECTED: AtomicU8 = AtomicU8::new(UNKNOWN);

/// The widest level of this CPU's instruction set, whatever `ADJOINT_ISA` says.
fn hardware() -> Isa {
    #[cfg(target_arch = "x86_64")]
    let level = if is_x86_feature_detected!("avx512f")
        && is_x86_feature_detected!("avx512bw")
        && is_x86_feature_detected!("avx512dq")
        && is_x86_feature_detected!("avx512vl")
        && is_x86_feature_detected!("avx2")
        && is_x86_feature_detected!("fma")
    {
        Isa::Avx512
    } else if is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma") {
        Isa::Avx2
    } else {
        Isa::Baseline
    };
    #[cfg(not(target_arch = "x86_64"))]
    let level = Isa::Baseline;
    level
}

/// The cap `ADJOINT_ISA` sets, if it names a level.
fn cap() -> Option<Isa> {
    std::env::var("ADJOINT_ISA").ok().as_deref().and_then(Isa::from_name)
}

#[cold]
fn detect() -> Isa {
    let level = match cap() {
        Some(cap) => cap.min(hardware()),
        None => hardware(),
    };
    DETECTED.store(code(level), Ordering::Relaxed);
    level
}

/// What the kernels detected on this CPU and what they run with the parameters in
/// force on this thread, in one line: for a benchmark's header or a bug report.
///
/// ```
/// let line = adjoint_runtime::kernels::describe();
/// assert!(line.contains("kernels run"));
/// ```
pub fn describe() -> String {
    let params = super::KernelParams::current();
    let detected = Isa::detected();
    let running = params.isa.effective();
    let cpu = cpu_name();
    let gemm = super::gemm::describe(running);
    let capped = match cap() {
        Some(cap) if cap < hardware() => format!(" (the CPU has {}; ADJOINT_ISA={cap})", hardware()),
        _ => String::new(),
    };
    format!(
        "{cpu} ({arch}); detected {detected}{capped}; kernels run {running} (asked for {asked}); {gemm}; {threads} thread(s)",
        arch = std::env::consts::ARCH,
        asked = params.isa,
        threads = params.threads(),
    )
}

/// The CPU's model name from `/proc/cpuinfo` (Linux), else `"unknown CPU"`.
fn cpu_name() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|info| {
            info.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|name| name.trim().to_string())
        })
        .unwrap_or_else(|| "unknown CPU".to_string())
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

/// Run `f` (a loop) compiled for the level `isa` asks for, as far as the CPU has it.
#[inline(always)]
pub(crate) fn vectorize<R>(isa: Isa, f: impl FnOnce() -> R) -> R {
    #[cfg(target_arch = "x86_64")]
    match isa.effective() {
        // SAFETY: `effective` never exceeds the detected level.
        Isa::Avx512 => return unsafe { with_avx512(f) },
        Isa::Avx2 => return unsafe { with_avx2(f) },
        Isa::Baseline => {}
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = isa;
    f()
}
