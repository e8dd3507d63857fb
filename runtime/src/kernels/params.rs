//! Parallelism policy and tuning knobs of the kernels, in one place (faer-style).
//!
//! Every kernel takes its [`KernelParams`] as an argument; the tensor methods read the
//! parameters in force once per operation with [`KernelParams::current`]. The defaults
//! were measured on a 2-core AVX-512 machine (see `benches/benchmarks/tensor.rs`): below
//! the thresholds, waking a second thread costs more than it saves.

use std::cell::Cell;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::RwLock;

use super::isa::Isa;

/// Whether kernels may use more than one thread.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Par {
    /// Everything on the calling thread.
    Seq,
    /// Rayon's global pool, with at most this many threads (`0`: all of the pool's).
    Rayon(usize),
}

/// How expensive one element of an elementwise map is, which decides how early the map
/// goes parallel.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Cost {
    /// An add, a multiply, a comparison: bound by memory bandwidth.
    Cheap,
    /// A transcendental function or an unknown closure: bound by arithmetic.
    Heavy,
}

/// The tuning knobs of the kernels.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KernelParams {
    /// Whether kernels may use more than one thread.
    pub par: Par,
    /// The widest instruction set the kernels may use (the CPU's widest when that is
    /// narrower): [`Isa::Avx512`] by default, lower to force the AVX2 or baseline code
    /// (for tests, or to compare). See [`Isa`] for which results depend on it.
    pub isa: Isa,
    /// Elementwise maps of [`Cost::Cheap`] elements go parallel from this many outputs.
    pub cheap_par_min: usize,
    /// Elementwise maps of [`Cost::Heavy`] elements go parallel from this many outputs
    /// (also softmax and the row-wise losses).
    pub heavy_par_min: usize,
    /// Reductions go parallel from this many inputs.
    pub reduce_par_min: usize,
    /// The smallest piece of work handed to one rayon task, in elements.
    pub task_min: usize,
    /// Full reductions add up fixed blocks of this many elements, then add the block
    /// sums in order, so the result is the same whatever the number of threads.
    pub reduce_block: usize,
    /// A matrix product runs in parallel from this many multiply-adds (`m·n·k`).
    pub gemm_par_min: usize,
}

impl KernelParams {
    /// The measured defaults, parallel over all of rayon's threads.
    pub const DEFAULT: KernelParams = KernelParams {
        par: Par::Rayon(0),
        isa: Isa::Avx512,
        cheap_par_min: 1 << 17,
        heavy_par_min: 1 << 14,
        reduce_par_min: 1 << 17,
        task_min: 1 << 13,
        reduce_block: 1 << 13,
        gemm_par_min: 48 * 48 * 256,
    };

    /// The defaults, but everything on the calling thread.
    pub const SERIAL: KernelParams = KernelParams { par: Par::Seq, ..KernelParams::DEFAULT };

    /// Parallel at every size, in tiny tasks: for testing the parallel code paths on
    /// small inputs (slow in real use).
    pub const ALWAYS_PARALLEL: KernelParams = KernelParams {
        par: Par::Rayon(0),
        isa: Isa::Avx512,
        cheap_par_min: 1,
        heavy_par_min: 1,
        reduce_par_min: 1,
        task_min: 3,
        reduce_block: 5,
        gemm_par_min: 1,
    };

    /// The parameters in force on this thread: those of the innermost
    /// [`with_kernel_params`], else the global ones ([`set_kernel_params`]).
    pub fn current() -> KernelParams {
        match LOCAL.with(Cell::get) {
            Some(p) => p,
            // Until a program sets global parameters, every tensor operation would
            // otherwise take the lock only to read the defaults.
            None if !GLOBAL_SET.load(Ordering::Acquire) => KernelParams::DEFAULT,
            None => *GLOBAL.read().unwrap_or_else(|e| e.into_inner()),
        }
    }

    /// The number of threads a parallel kernel may use (1 when serial).
    pub fn threads(&self) -> usize {
        match self.par {
            Par::Seq => 1,
            Par::Rayon(0) => rayon::current_num_threads(),
            Par::Rayon(n) => n.min(rayon::current_num_threads()).max(1),
        }
    }

    /// Whether an elementwise map of `len` outputs goes parallel.
    pub(crate) fn map_parallel(&self, len: usize, cost: Cost) -> bool {
        let min = match cost {
            Cost::Cheap => self.cheap_par_min,
            Cost::Heavy => self.heavy_par_min,
        };
        len >= min && len >= 2 * self.task_min.max(1) && self.threads() > 1
    }

    /// Whether a reduction over `len` inputs goes parallel.
    pub(crate) fn reduce_parallel(&self, len: usize) -> bool {
        len >= self.reduce_par_min && self.threads() > 1
    }

    /// The length of the pieces `len` elements are cut into for the threads: about four
    /// per thread (for balance when another process takes a core), never below
    /// `task_min`, a multiple of `align`.
    pub(crate) fn task_len(&self, len: usize, align: usize) -> usize {
        let align = align.max(1);
        let pieces = 4 * self.threads();
        let per = len.div_ceil(pieces).max(self.task_min.max(1));
        per.div_ceil(align) * align
    }
}

impl Default for KernelParams {
    fn default() -> Self {
        KernelParams::DEFAULT
    }
}

static GLOBAL: RwLock<KernelParams> = RwLock::new(KernelParams::DEFAULT);
/// Whether [`set_kernel_params`] was ever called.
static GLOBAL_SET: AtomicBool = AtomicBool::new(false);

thread_local! {
    static LOCAL: Cell<Option<KernelParams>> = const { Cell::new(None) };
}

/// Set the kernel parameters of the whole process (threads inside
/// [`with_kernel_params`] keep theirs).
pub fn set_kernel_params(params: KernelParams) {
    *GLOBAL.write().unwrap_or_else(|e| e.into_inner()) = params;
    GLOBAL_SET.store(true, Ordering::Release);
}

/// Run `f` with `params` in force on this thread (for example
/// [`KernelParams::SERIAL`] to force serial kernels in a test), then restore the
/// previous ones, also if `f` panics.
pub fn with_kernel_params<R>(params: KernelParams, f: impl FnOnce() -> R) -> R {
    struct Restore(Option<KernelParams>);
    impl Drop for Restore {
        fn drop(&mut self) {
            LOCAL.with(|c| c.set(self.0));
        }
    }
    let _restore = Restore(LOCAL.with(|c| c.replace(Some(params))));
    f()
}

/// Run `f` on one of the kernels' worker threads (rayon's global pool), with the kernel
/// parameters in force here, and return its result: a training step run this way hands
/// each parallel product's second half straight to the other worker, instead of
/// injecting the product into the pool from outside and waking a worker and then the
/// caller (the MLP step of `benches/`: 3-6 % faster). On a worker thread already, `f`
/// just runs.
pub fn in_thread_pool<R: Send>(f: impl FnOnce() -> R + Send) -> R {
    if rayon::current_thread_index().is_some() {
        return f();
    }
    let params = LOCAL.with(Cell::get);
    rayon::scope(|_| match params {
        Some(p) => with_kernel_params(p, f),
        None => f(),
    })
}
