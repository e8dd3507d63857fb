//! Tensors: n-dimensional arrays of `f32` or `f64` with shared, copy-on-write storage.
//!
//! A [`Tensor`] is a strided view (shape, strides, offset) of a reference-counted buffer,
//! so `clone`, [`Tensor::t`], [`Tensor::transpose`], [`Tensor::narrow`],
//! [`Tensor::select`], [`Tensor::broadcast_to`] and the [`Tensor::reshape`] of a
//! contiguous tensor copy no data. Every other operation returns a fresh, contiguous
//! tensor, except the in-place operators (`+=` …) and the owning binary operators,
//! which write into the left operand's buffer when nothing else shares it.
//!
//! The operations are grouped by family: [`shape`](self::shape) (views, joining,
//! gathering), `ops` (operators and elementwise maps), `reduce`, `linalg` (matmul),
//! `nn` (softmax and losses) and `convert` (nalgebra). The numeric work is done by the
//! crate's kernels, whose parallelism is set by [`KernelParams`].
//!
//! ```
//! use adjoint_runtime::tensor::Tensor;
//! let x = Tensor::from_vec(vec![1.0_f32, 2.0, 3.0, 4.0, 5.0, 6.0], &[2, 3]);
//! let b = Tensor::from_vec(vec![10.0, 20.0, 30.0], &[3]);
//! let y = &x + &b; // broadcast over the rows
//! assert_eq!(y.to_vec(), vec![11.0, 22.0, 33.0, 14.0, 25.0, 36.0]);
//! assert_eq!(y.sum().item(), 141.0);
//! assert_eq!(x.matmul(&x.t()).shape(), &[2, 2]);
//! ```

mod convert;
mod linalg;
mod nn;
pub(crate) mod ops;
mod pool;
mod reduce;
pub mod shape;

use std::cell::UnsafeCell;
use std::fmt;
use std::marker::PhantomData;
use std::mem::{ManuallyDrop, MaybeUninit};
use std::sync::atomic::{AtomicPtr, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, TryLockError};

use crate::kernels::layout::{contiguous_strides, is_contiguous, Dims, View};
use crate::kernels::unary;
use crate::kernels::Cost;
pub use crate::kernels::{in_thread_pool, set_kernel_params, with_kernel_params, KernelParams, Par};
use crate::random::Rng;
use crate::support::{Adjoint, Seed, Tangent, ZeroTangent};
use crate::Float;

/// An n-dimensional array of `E` (`f32` by default).
///
/// Cloning is cheap (the storage is shared); the tensor is `Send + Sync`. Shape errors
/// panic with a message that names the operation and the shapes.
pub struct Tensor<E: Float = f32> {
    /// Given back to the [`pool`] when the tensor drops (hence `ManuallyDrop`).
    storage: ManuallyDrop<Arc<Storage<E>>>,
    shape: Dims,
    strides: Dims,
    offset: usize,
    /// A gradient nothing has been added to yet: every element is zero and the
    /// storage holds a single zero broadcast to the shape (see [`Adjoint::zero_like`]),
    /// so starting an adjoint costs no buffer of the full size and a parameter the
    /// output does not depend on receives no gradient at all (PyTorch's `None`).
    untouched_zero: bool,
}

/// The buffer behind a tensor and its views.
///
/// A read (one kernel call: [`Tensor::read`]) counts itself in `state` and borrows the
/// buffer directly, so it costs two atomic additions and no allocation. [`Tensor::update`]
/// changes the buffer for every handle that shares it: in place when no read is in
/// progress, otherwise into a copy that replaces the buffer, the old one being kept
/// alive (retired) until no read can still hold it. This is what lets a
/// [`Param`](crate::Param) hand out `&Tensor` while an optimizer updates it. Reads wait
/// only for an update that is running, never for one another, so a kernel may read the
/// same storage twice (`a + a`).
///
/// A small tensor's elements live in the storage itself (`inline`), so creating it
/// allocates once, not twice: the 5×5 products of a small model are dominated by such
/// bookkeeping.
pub(crate) struct Storage<E: Copy> {
    /// The reads in progress, plus [`UPDATE_RUNNING`] while an update runs.
    state: AtomicUsize,
    /// The buffer on the heap: `len` elements allocated as a `Vec` of capacity
    /// `Updates::capacity`; null while the elements are in `inline`.
    heap: AtomicPtr<E>,
    len: usize,
    /// Held for the whole of an update.
    updates: Mutex<Updates<E>>,
    /// The elements of a small tensor (at most [`inline_capacity`]), until an update
    /// moves them to the heap.
    inline: UnsafeCell<[MaybeUninit<u64>; INLINE_WORDS]>,
    /// The storage owns the buffer's elements.
    _owns: PhantomData<Vec<E>>,
}

// SAFETY: `inline` is only written by the storage's unique owner (`&mut`) or by an
// update with no read in progress, and read under the protocol of `state`, like the
// heap buffer; everything else is atomic or behind the mutex.
unsafe impl<E: Copy + Send + Sync> Sync for Storage<E> {}
// SAFETY: the storage owns its elements (as a `Vec<E>` would).
unsafe impl<E: Copy + Send> Send for Storage<E> {}
// A panic never leaves a buffer torn: an update installs a whole one before unwinding.
impl<E: Copy> std::panic::RefUnwindSafe for Storage<E> {}

/// What only an update (or the storage's owner) touches.
struct Updates<E> {
    /// The capacity of the heap buffer, to free it as the `Vec` it was.
    capacity: usize,
    /// Buffers replaced while a read of them was in progress (boxed: almost every
    /// storage has none, and a small one fits in 128 bytes with its elements).
    #[allow(clippy::box_collection)]
    retired: Option<Box<Vec<Vec<E>>>>,
}

/// The bit of [`Storage::state`] set while an update runs.
const UPDATE_RUNNING: usize = 1 << (usize::BITS - 1);

/// The size of a storage's inline buffer, in 8-byte words: 7 `f64` or 14 `f32`, which
/// keeps a small tensor's one allocation within 128 bytes (the allocator's fastest
/// size classes; the test `a_small_storage_fits_128_bytes` checks it).
const INLINE_WORDS: usize = 7;

/// How many elements of `E` fit in a storage's inline buffer.
const fn inline_capacity<E>() -> usize {
    assert!(std::mem::align_of::<E>() <= std::mem::align_of::<u64>());
    INLINE_WORDS * std::mem::size_of::<u64>() / std::mem::size_of::<E>()
}

impl<E: Copy> Storage<E> {
    /// A storage owning `data` on the heap.
    fn new(data: Vec<E>) -> Self {
        let mut data = std::mem::ManuallyDrop::new(data);
        Storage {
            state: AtomicUsize::new(0),
            heap: AtomicPtr::new(data.as_mut_ptr()),
            len: data.len(),
            updates: Mutex::new(Updates { capacity: data.capacity(), retired: None }),
            inline: UnsafeCell::new([MaybeUninit::uninit(); INLINE_WORDS]),
            _owns: PhantomData,
        }
    }

    /// A storage of `len` elements written by `fill`: inline if they fit.
    fn filled(len: usize, fill: impl FnOnce(&mut [MaybeUninit<E>])) -> Arc<Self> {
        if len > inline_capacity::<E>() {
            let mut data = Vec::with_capacity(len);
            fill(&mut data.spare_capacity_mut()[..len]);
            // SAFETY: `fill` wrote the first `len` elements.
            unsafe { data.set_len(len) };
            return Arc::new(Storage::new(data));
        }
        let mut inline = [MaybeUninit::<u64>::uninit(); INLINE_WORDS];
        // SAFETY: the buffer holds `inline_capacity::<E>() >= len` elements of `E`,
        // suitably aligned (checked by `inline_capacity`).
        fill(unsafe { std::slice::from_raw_parts_mut(inline.as_mut_ptr().cast::<MaybeUninit<E>>(), len) });
        Arc::new(Storage {
            state: AtomicUsize::new(0),
            heap: AtomicPtr::new(std::ptr::null_mut()),
            len,
            updates: Mutex::new(Updates { capacity: 0, retired: None }),
            inline: UnsafeCell::new(inline),
            _owns: PhantomData,
        })
    }

    /// Whether the elements are in the inline buffer.
    fn is_inline(&self) -> bool {
        self.heap.load(Ordering::Relaxed).is_null()
    }

    /// Writes `len` elements with `fill` into the inline buffer of a storage no one
    /// else holds (one taken from the [`pool`]), which must be inline and large enough.
    fn refill(&mut self, len: usize, fill: impl FnOnce(&mut [MaybeUninit<E>])) {
        assert!(self.is_inline() && len <= inline_capacity::<E>(), "adjoint: internal error: refill of a heap storage");
        self.len = len;
        // SAFETY: as in `filled`: the inline buffer holds `len` elements of `E`.
        fill(unsafe {
            std::slice::from_raw_parts_mut(self.inline.get_mut().as_mut_ptr().cast::<MaybeUninit<E>>(), len)
        });
    }

    /// Where the elements are, given the current heap pointer.
    fn elements(&self, heap: *mut E) -> *mut E {
        if heap.is_null() {
            self.inline.get().cast::<E>()
        } else {
            heap
        }
    }

    fn address(&self) -> usize {
        self as *const Self as *const () as usize
    }

    /// Start a read: wait for a running update, then borrow the buffer until
    /// [`Storage::end_read`].
    fn begin_read(&self) -> *const E {
        loop {
            let before = self.state.fetch_add(1, Ordering::Acquire);
            if before & UPDATE_RUNNING == 0 {
                return self.elements(self.heap.load(Ordering::Acquire));
            }
            self.state.fetch_sub(1, Ordering::Relaxed);
            // Running: on another thread (wait for it), or further up this thread's
            // stack, which would never return.
            if UPDATING.with(|u| u.borrow().contains(&self.address())) {
                panic!(
                    "adjoint: the function given to `update` read the tensor it updates through another handle; \
                     read the tensor it receives instead"
                );
            }
            drop(self.lock_updates());
        }
    }

    fn end_read(&self) {
        self.state.fetch_sub(1, Ordering::Release);
    }

    fn lock_updates(&self) -> MutexGuard<'_, Updates<E>> {
        // The buffer is replaced whole, so a panic elsewhere never leaves it torn.
        self.updates.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The buffer, for the storage's only owner.
    fn as_mut_slice(&mut self) -> &mut [E] {
        let heap = *self.heap.get_mut();
        let data = self.elements(heap);
        // SAFETY: `&mut self` excludes reads and updates; `data` holds `len` elements.
        unsafe { std::slice::from_raw_parts_mut(data, self.len) }
    }

    /// The heap buffer as the `Vec` it was, leaving none (for the storage's owner).
    fn take_heap(&mut self) -> Option<Vec<E>> {
        let heap = std::mem::replace(self.heap.get_mut(), std::ptr::null_mut());
        let capacity = std::mem::take(&mut self.updates.get_mut().unwrap_or_else(|e| e.into_inner()).capacity);
        let len = std::mem::take(&mut self.len);
        // SAFETY: `heap`, `len` and `capacity` are the parts of the `Vec` the storage was
        // built from (or an update installed), which nothing else owns.
        (!heap.is_null()).then(|| unsafe { Vec::from_raw_parts(heap, len, capacity) })
    }

    /// The storage's contents as a `Vec`: moved out if `storage` is its only handle and
    /// holds them on the heap, else copied.
    fn into_vec(storage: Arc<Self>) -> Vec<E> {
        match Arc::try_unwrap(storage) {
            Ok(mut storage) => match storage.heap.get_mut().is_null() {
                true => storage.as_mut_slice().to_vec(),
                false => storage.take_heap().expect("a heap buffer"),
            },
            Err(shared) => {
                let data = shared.begin_read();
                // SAFETY: a read of `len` elements is in progress until `end_read`.
                let copy = unsafe { std::slice::from_raw_parts(data, shared.len) }.to_vec();
                shared.end_read();
                copy
            }
        }
    }
}

impl<E: Copy> Drop for Storage<E> {
    fn drop(&mut self) {
        // (Inline elements are `Copy`: nothing to drop.)
        drop(self.take_heap());
    }
}

thread_local! {
    /// The storages this thread is inside an [`Tensor::update`] of.
    static UPDATING: std::cell::RefCell<Vec<usize>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// A read of a tensor's buffer, alive for one operation.
pub(crate) struct Read<'t, E: Float> {
    data: &'t [E],
    tensor: &'t Tensor<E>,
}

impl<E: Float> Read<'_, E> {
    /// The kernel view of the tensor.
    pub(crate) fn view(&self) -> View<'_, E> {
        View { data: self.data, shape: &self.tensor.shape, strides: &self.tensor.strides, offset: self.tensor.offset }
    }

    /// The elements as a row-major slice, if the tensor is contiguous.
    pub(crate) fn as_slice(&self) -> Option<&[E]> {
        self.view().as_contiguous()
    }

    /// The whole buffer (indexed with the tensor's offset and strides).
    pub(crate) fn buffer(&self) -> &[E] {
        self.data
    }
}

impl<E: Float> Drop for Read<'_, E> {
    fn drop(&mut self) {
        self.tensor.storage.end_read();
    }
}

impl<E: Float> Drop for Tensor<E> {
    fn drop(&mut self) {
        // SAFETY: the field is not used again.
        pool::give(unsafe { ManuallyDrop::take(&mut self.storage) });
    }
}

impl<E: Float> Clone for Tensor<E> {
    fn clone(&self) -> Self {
        Tensor {
            storage: ManuallyDrop::new(Arc::clone(&self.storage)),
            shape: self.shape.clone(),
            strides: self.strides.clone(),
            offset: self.offset,
            untouched_zero: self.untouched_zero,
        }
    }
}

/// `[a, b, c]` for messages.
pub(crate) struct ShapeFmt<'a>(pub &'a [usize]);

impl fmt::Display for ShapeFmt<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.0)
    }
}

impl<E: Float> Tensor<E> {
    /// A contiguous tensor owning `data` (row-major) with `shape`.
    #[inline]
    pub(crate) fn from_parts(data: Vec<E>, shape: impl Into<Dims>) -> Self {
        let shape = shape.into();
        debug_assert_eq!(data.len(), shape.iter().product::<usize>());
        let strides = contiguous_strides(&shape);
        Tensor {
            storage: ManuallyDrop::new(Arc::new(Storage::new(data))),
            shape,
            strides,
            offset: 0,
            untouched_zero: false,
        }
    }

    /// A contiguous tensor of `shape` whose elements `fill` writes (all of them, in
    /// row-major order); a small one is held inside its storage, allocating once.
    #[inline]
    pub(crate) fn filled(shape: impl Into<Dims>, fill: impl FnOnce(&mut [MaybeUninit<E>])) -> Self {
        let shape = shape.into();
        let strides = contiguous_strides(&shape);
        let len = shape.iter().product();
        let pooled = if len <= inline_capacity::<E>() { pool::take::<E>() } else { None };
        let storage = match pooled {
            Some(mut storage) => {
                Arc::get_mut(&mut storage).expect("a pooled storage has no other handle").refill(len, fill);
                storage
            }
            None => Storage::filled(len, fill),
        };
        Tensor { storage: ManuallyDrop::new(storage), shape, strides, offset: 0, untouched_zero: false }
    }

    /// A view of this tensor's storage with another layout.
    pub(crate) fn with_layout(&self, shape: impl Into<Dims>, strides: impl Into<Dims>, offset: usize) -> Self {
        let (shape, strides) = (shape.into(), strides.into());
        let storage = ManuallyDrop::new(Arc::clone(&self.storage));
        Tensor { storage, shape, strides, offset, untouched_zero: self.untouched_zero }
    }

    /// A snapshot of this tensor's data for one operation: `t.read().view()`.
    pub(crate) fn read(&self) -> Read<'_, E> {
        let data = self.storage.begin_read();
        // SAFETY: the read in progress keeps the buffer's `len` elements alive and
        // unchanged until `Read::drop` ends it.
        Read { data: unsafe { std::slice::from_raw_parts(data, self.storage.len) }, tensor: self }
    }

    /// Whether this is the transpose of a row-major matrix (a 2-D view with unit row
    /// stride, such as `w.t()`).
    pub(crate) fn is_column_major(&self) -> bool {
        self.shape.len() == 2 && self.strides[0] == 1 && self.shape[1] > 1 && self.strides[1] == self.shape[0]
    }

    /// Whether the elements are laid out row-major without gaps.
    pub fn is_contiguous(&self) -> bool {
        is_contiguous(&self.shape, &self.strides)
    }

    /// The elements as a mutable row-major slice, if the tensor is contiguous, spans its
    /// whole buffer and shares it with no other tensor.
    pub(crate) fn unique_slice_mut(&mut self) -> Option<&mut [E]> {
        let n = self.numel();
        if self.offset != 0 || !self.is_contiguous() {
            return None;
        }
        // A shared storage is the common refusal: a plain load says so, where
        // `Arc::get_mut` would spend a compare-and-swap.
        if Arc::strong_count(&self.storage) != 1 {
            return None;
        }
        let storage = Arc::get_mut(&mut self.storage)?;
        if storage.len != n {
            return None;
        }
        // The caller is about to write: this is no longer a zero nothing was added to.
        self.untouched_zero = false;
        Some(storage.as_mut_slice())
    }

    /// Change the elements of this tensor *for every handle that shares its storage*
    /// (clones, views, the `Param` that holds it): `f` gets the tensor to modify and
    /// must keep its shape. This is how optimizers update parameters in place: the
    /// buffer is written where it is, unless a computation still reads it, in which
    /// case that computation keeps the old values and the handles get a new buffer.
    ///
    /// Panics if the tensor is a view of part of a larger buffer, or if `f` changes the
    /// shape, and if `f` reads this tensor through another handle (a read would wait
    /// for the update to finish; `f` should read the tensor it receives).
    pub fn update(&self, f: impl FnOnce(&mut Tensor<E>)) {
        let n = self.numel();
        let storage = &*self.storage;
        if self.offset != 0 || !self.is_contiguous() || storage.len != n {
            panic!(
                "adjoint: `update` needs a tensor that owns its whole buffer, got a view of shape {}",
                ShapeFmt(&self.shape)
            );
        }
        let mut updates = match storage.updates.try_lock() {
            Ok(guard) => guard,
            Err(TryLockError::Poisoned(e)) => e.into_inner(),
            Err(TryLockError::WouldBlock) => {
                if UPDATING.with(|u| u.borrow().contains(&storage.address())) {
                    panic!("adjoint: the function given to `update` updated the tensor it updates through another handle; write into the tensor it receives instead");
                }
                storage.lock_updates()
            }
        };
        // From here on new reads wait; those in progress keep the buffer they hold.
        let reads_in_progress = storage.state.fetch_or(UPDATE_RUNNING, Ordering::AcqRel) != 0;
        if !reads_in_progress {
            // No read can still hold a retired buffer.
            updates.retired = None;
        }
        let heap = storage.heap.load(Ordering::Acquire);
        let data = if reads_in_progress || heap.is_null() {
            // SAFETY: reads only are in progress, over the `n` elements.
            unsafe { std::slice::from_raw_parts(storage.elements(heap), n) }.to_vec()
        } else {
            // SAFETY: no read is in progress and new ones wait, so the heap buffer (the
            // parts of a `Vec`) is this update's until it installs one.
            unsafe { Vec::from_raw_parts(heap, n, updates.capacity) }
        };
        let mut value = Tensor::from_parts(data, self.shape.clone());
        let address = storage.address();
        UPDATING.with(|u| u.borrow_mut().push(address));
        let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| f(&mut value)));
        UPDATING.with(|u| u.borrow_mut().retain(|a| *a != address));
        let (new_shape, aliased) = (value.shape.clone(), Arc::ptr_eq(&value.storage, &self.storage));
        // The new buffer: what `f` left (also when it panicked or changed the shape but
        // not the length), else NaNs, which no later computation mistakes for values.
        let installed = match value.numel() == n && !aliased {
            true => value.into_contiguous_vec(),
            false => vec![E::from_f64(f64::NAN); n],
        };
        let mut installed = std::mem::ManuallyDrop::new(installed);
        // The elements move to (or stay on) the heap: the inline buffer is never written
        // again, so reads in progress of it need nothing retired.
        let replaced = storage.heap.swap(installed.as_mut_ptr(), Ordering::AcqRel);
        let replaced_capacity = std::mem::replace(&mut updates.capacity, installed.capacity());
        if reads_in_progress && !replaced.is_null() {
            // SAFETY: the heap buffer the storage held (untouched: `f` had a copy), freed
            // once no read can hold it.
            let buffer = unsafe { Vec::from_raw_parts(replaced, n, replaced_capacity) };
            updates.retired.get_or_insert_with(Default::default).push(buffer);
        }
        // (Otherwise the replaced heap buffer went to `value`, which installed or freed it.)
        storage.state.fetch_and(!UPDATE_RUNNING, Ordering::Release);
        drop(updates);
        if let Err(panic) = outcome {
            std::panic::resume_unwind(panic);
        }
        if aliased {
            panic!("adjoint: the function given to `update` replaced the tensor by a view of the tensor it updates; write into the tensor it receives instead");
        }
        if new_shape != self.shape {
            panic!(
                "adjoint: `update` changed the shape {} to {}; an update must keep the shape",
                ShapeFmt(&self.shape),
                ShapeFmt(&new_shape)
            );
        }
    }

    /// The elements in row-major order as an owned `Vec`: this tensor's buffer itself
    /// when it is the buffer's only handle and spans all of it, else a copy.
    fn into_contiguous_vec(self) -> Vec<E> {
        if self.offset == 0 && self.is_contiguous() && self.storage.len == self.numel() {
            let storage = Arc::clone(&self.storage);
            drop(self);
            Storage::into_vec(storage)
        } else {
            self.to_vec()
        }
    }

    /// A zero gradient of `shape` that owns no buffer of that size: one zero, broadcast.
    fn untouched_zero(shape: &[usize]) -> Self {
        Tensor {
            storage: ManuallyDrop::new(Arc::new(Storage::new(vec![E::ZERO]))),
            shape: shape.into(),
            strides: Dims::from_elem(0, shape.len()),
            offset: 0,
            untouched_zero: true,
        }
    }

    /// This tensor, contiguous (itself if it already is, else a copy).
    pub fn contiguous(&self) -> Self {
        if self.is_contiguous() {
            self.clone()
        } else {
            Tensor::from_parts(self.to_vec(), self.shape.clone())
        }
    }

    /// A tensor of `shape` holding `data` in row-major order.
    ///
    /// Panics if `data.len()` is not the product of `shape`.
    pub fn from_vec(data: Vec<E>, shape: &[usize]) -> Self {
        let n: usize = shape.iter().product();
        if data.len() != n {
            panic!("adjoint: `from_vec` got {} values for shape {} ({} elements)", data.len(), ShapeFmt(shape), n);
        }
        Tensor::from_parts(data, shape.to_vec())
    }

    /// A tensor of `shape` with every element `value`.
    pub fn full(shape: &[usize], value: E) -> Self {
        // Written element by element (not calloc'd): an adjoint buffer is read before it
        // is written, and fresh zero pages would then fault twice.
        Tensor::filled(shape, |out| out.iter_mut().for_each(|x| _ = x.write(value)))
    }

    /// Zeros of `shape`.
    pub fn zeros(shape: &[usize]) -> Self {
        Tensor::full(shape, E::ZERO)
    }

    /// Ones of `shape`.
    pub fn ones(shape: &[usize]) -> Self {
        Tensor::full(shape, E::ONE)
    }

    /// A 0-d tensor holding `value`.
    pub fn scalar(value: E) -> Self {
        Tensor::filled(Dims::new(), |out| _ = out[0].write(value))
    }

    /// Standard normal samples of `shape`.
    pub fn randn(shape: &[usize], rng: &mut Rng) -> Self {
        let mut data = vec![E::ZERO; shape.iter().product()];
        rng.fill_normal(&mut data);
        Tensor::from_parts(data, shape.to_vec())
    }

    /// Uniform samples in `[0, 1)` of `shape`.
    pub fn rand(shape: &[usize], rng: &mut Rng) -> Self {
        Tensor::uniform(shape, E::ZERO, E::ONE, rng)
    }

    /// Uniform samples in `[lo, hi)` of `shape`.
    pub fn uniform(shape: &[usize], lo: E, hi: E, rng: &mut Rng) -> Self {
        let mut data = vec![E::ZERO; shape.iter().product()];
        rng.fill_uniform(&mut data, lo, hi);
        Tensor::from_parts(data, shape.to_vec())
    }

    /// The length of each dimension.
    pub fn shape(&self) -> &[usize] {
        &self.shape
    }

    /// The number of dimensions.
    pub fn ndim(&self) -> usize {
        self.shape.len()
    }

    /// The number of elements.
    pub fn numel(&self) -> usize {
        self.shape.iter().product()
    }

    /// The elements in row-major order.
    pub fn to_vec(&self) -> Vec<E> {
        let read = self.read();
        match read.as_slice() {
            Some(s) => s.to_vec(),
            None => unary::map(read.view(), |x| x, Cost::Cheap, &KernelParams::current()),
        }
    }

    /// The single element of a tensor with one element (of any shape).
    ///
    /// Panics unless `numel() == 1`.
    pub fn item(&self) -> E {
        if self.numel() != 1 {
            panic!("adjoint: `item` needs a tensor with one element, got shape {}", ShapeFmt(&self.shape));
        }
        self.read().buffer()[self.offset]
    }

    /// Zeros of this tensor's shape.
    pub fn zeros_like(&self) -> Self {
        Tensor::zeros(&self.shape)
    }

    /// Ones of this tensor's shape.
    pub fn ones_like(&self) -> Self {
        Tensor::ones(&self.shape)
    }
}

impl<E: Float> fmt::Debug for Tensor<E> {
    /// `Tensor([2, 3], [[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]])`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fn nested<E: Float>(f: &mut fmt::Formatter<'_>, shape: &[usize], data: &[E]) -> fmt::Result {
            match shape {
                [] => write!(f, "{:?}", data[0]),
                [n, rest @ ..] => {
                    let step: usize = rest.iter().product();
                    write!(f, "[")?;
                    for i in 0..*n {
                        if i > 0 {
                            write!(f, ", ")?;
                        }
                        nested(f, rest, &data[i * step..(i + 1) * step])?;
                    }
                    write!(f, "]")
                }
            }
        }
        write!(f, "Tensor({:?}, ", self.shape)?;
        nested(f, &self.shape, &self.to_vec())?;
        write!(f, ")")
    }
}

impl<E: Float> PartialEq for Tensor<E> {
    /// Same shape and the same elements (so NaN ≠ NaN).
    fn eq(&self, other: &Self) -> bool {
        if self.shape != other.shape {
            return false;
        }
        match (self.read().as_slice(), other.read().as_slice()) {
            (Some(a), Some(b)) => a == b,
            _ => self.to_vec() == other.to_vec(),
        }
    }
}

impl<E: Float> Tangent for Tensor<E> {
    type Tangent = Tensor<E>;
}

impl<E: Float> Adjoint for Tensor<E> {
    /// A zero that allocates nothing of the full size: the first gradient added to it
    /// replaces it.
    fn zero_like(&self) -> Self {
        Tensor::untouched_zero(&self.shape)
    }

    fn is_untouched_zero(&self) -> bool {
        self.untouched_zero
    }

    /// `self += other`, in place when `self`'s storage is not shared (else into
    /// `other`'s, or a fresh buffer). Panics with both shapes if they differ: gradients
    /// are never broadcast silently.
    fn accumulate(&mut self, other: Self) {
        if self.shape != other.shape {
            panic!(
                "adjoint: cannot accumulate a gradient of shape {} into one of shape {}",
                ShapeFmt(&other.shape),
                ShapeFmt(&self.shape)
            );
        }
        if other.untouched_zero {
            return;
        }
        if self.untouched_zero {
            *self = other;
            return;
        }
        ops::add_assign_owned(self, other);
    }
}

impl<E: Float> ZeroTangent for Tensor<E> {
    fn zero_tangent(&self) -> Self {
        Tensor::untouched_zero(&self.shape)
    }
}

impl<E: Float> Seed for Tensor<E> {
    /// The seed of `grad!` for a tensor output: 1, for a one-element tensor only.
    fn one_like(&self) -> Self {
        if self.numel() != 1 {
            panic!(
                "adjoint: `grad!` needs a scalar output, but the function returned a tensor of shape {}; \
                 use `vjp!` (or `backward!(f(…), seed)`) with a cotangent of that shape",
                ShapeFmt(&self.shape)
            );
        }
        self.ones_like()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(panic: Box<dyn std::any::Any + Send>) -> String {
        match panic.downcast_ref::<&str>() {
            Some(m) => m.to_string(),
            None => panic.downcast_ref::<String>().cloned().unwrap_or_default(),
        }
    }

    #[test]
    fn a_small_storage_fits_128_bytes() {
        // The `Arc`'s two counts, the storage, and glibc's 8-byte chunk header.
        assert!(2 * 8 + std::mem::size_of::<Storage<f64>>() + 8 <= 128);
        assert_eq!((inline_capacity::<f64>(), inline_capacity::<f32>()), (7, 14));
        // Small tensors are inline; their views, updates and reads work as on the heap.
        let t = Tensor::<f32>::full(&[2, 7], 1.5);
        assert!(t.storage.heap.load(Ordering::Relaxed).is_null());
        assert!(!Tensor::<f32>::full(&[15], 1.5).storage.heap.load(Ordering::Relaxed).is_null());
        let row = t.select(0, 1);
        t.update(|v| *v = &*v * 2.0);
        assert_eq!(row.to_vec(), vec![3.0; 7]);
    }

    #[test]
    fn outer_products_of_empty_vectors() {
        let (u, empty) = (Tensor::<f64>::ones(&[3]), Tensor::<f64>::zeros(&[0]));
        assert_eq!(u.outer(&empty).shape(), &[3, 0]);
        assert_eq!(empty.outer(&u).shape(), &[0, 3]);
        assert_eq!(u.outer(&u).to_vec(), vec![1.0; 9]);
    }

    #[test]
    fn small_storages_are_reused_once_no_tensor_holds_them() {
        let a = Tensor::<f64>::full(&[3], 1.0);
        let address = Arc::as_ptr(&a.storage);
        let view = a.narrow(0, 1, 2);
        drop(a);
        // The view still holds the storage: it is not given back.
        let b = Tensor::<f64>::full(&[3], 2.0);
        assert_ne!(Arc::as_ptr(&b.storage), address);
        assert_eq!(view.to_vec(), vec![1.0, 1.0]);
        drop(view);
        // Released, it is the next small tensor's storage, of that tensor's length.
        let c = Tensor::<f64>::full(&[2], 3.0);
        assert_eq!(Arc::as_ptr(&c.storage), address);
        assert_eq!((c.to_vec(), b.to_vec()), (vec![3.0, 3.0], vec![2.0; 3]));
        // Other element types and heap storages have their own (or none).
        let d = Tensor::<f32>::full(&[2], 4.0);
        assert_ne!(Arc::as_ptr(&d.storage) as usize, address as usize);
        let kept = pool::len::<f64>();
        drop(Tensor::<f64>::full(&[100], 5.0));
        assert_eq!(pool::len::<f64>(), kept);
        drop(b);
        assert_eq!(pool::len::<f64>(), kept + 1);
    }

    #[test]
    fn an_update_during_a_read_leaves_the_read_its_values() {
        let t = Tensor::<f64>::from_vec(vec![1.0, 2.0, 3.0], &[3]);
        let alias = t.clone();
        let read = alias.read();
        t.update(|v| *v = &*v + 10.0);
        // The read in progress keeps the old buffer; every handle sees the new one.
        assert_eq!(read.buffer(), &[1.0, 2.0, 3.0]);
        assert_eq!(alias.to_vec(), vec![11.0, 12.0, 13.0]);
        assert_eq!(t.storage.lock_updates().retired.as_ref().map(|r| r.len()), Some(1));
        drop(read);
        // The next update finds no read in progress: it writes in place and frees the
        // retired buffer.
        let before = t.storage.heap.load(Ordering::Relaxed);
        t.update(|v| *v *= 2.0);
        assert_eq!(t.storage.heap.load(Ordering::Relaxed), before);
        assert!(t.storage.lock_updates().retired.is_none());
        assert_eq!(alias.to_vec(), vec![22.0, 24.0, 26.0]);
    }

    #[test]
    fn a_failed_update_leaves_a_whole_buffer() {
        let t = Tensor::<f64>::from_vec(vec![1.0, 2.0, 3.0, 4.0], &[2, 2]);
        // A panic keeps what was written before it.
        let panic = std::panic::catch_unwind(|| {
            t.update(|v| {
                *v = &*v + 1.0;
                panic!("inside");
            })
        });
        assert_eq!(message(panic.expect_err("the panic propagates")), "inside");
        assert_eq!(t.to_vec(), vec![2.0, 3.0, 4.0, 5.0]);
        // A changed shape panics after keeping the values, when their number is right.
        let panic = std::panic::catch_unwind(|| t.update(|v| *v = v.reshape(&[4])));
        let text = message(panic.expect_err("a reshape must panic"));
        assert!(text.contains("changed the shape [2, 2] to [4]"), "{text}");
        assert_eq!((t.shape(), t.to_vec()), (&[2, 2][..], vec![2.0, 3.0, 4.0, 5.0]));
        // Otherwise the buffer holds NaNs, never freed or short memory.
        let panic = std::panic::catch_unwind(|| t.update(|v| *v = Tensor::zeros(&[3])));
        assert!(message(panic.expect_err("a new length must panic")).contains("changed the shape"));
        assert!(t.to_vec().iter().all(|x| x.is_nan()) && t.numel() == 4);
        // A view of the updated tensor itself is refused.
        let alias = t.clone();
        let panic = std::panic::catch_unwind(|| t.update(|v| *v = alias.t().t()));
        assert!(message(panic.expect_err("aliasing must panic")).contains("view of the tensor it updates"));
        t.update(|v| *v = Tensor::ones(&[2, 2]));
        assert_eq!(alias.to_vec(), vec![1.0; 4]);
    }

    #[test]
    fn reads_racing_updates_see_whole_buffers() {
        // One thread sets every element to k, for k = 1, 2, …; two others read. A read
        // must see a single k, never a mix or freed memory. Inline and heap buffers.
        for n in [7, 256] {
            let t = Tensor::<f64>::zeros(&[n]);
            let done = std::sync::atomic::AtomicBool::new(false);
            std::thread::scope(|scope| {
                scope.spawn(|| {
                    for k in 1..=2000 {
                        t.update(|v| {
                            let slice = v.unique_slice_mut().expect("the update's own buffer");
                            slice.iter_mut().for_each(|x| *x = k as f64);
                        });
                    }
                    done.store(true, Ordering::Release);
                });
                for _ in 0..2 {
                    scope.spawn(|| {
                        let mut last = 0.0;
                        while !done.load(Ordering::Acquire) {
                            let values = t.to_vec();
                            assert!(values.iter().all(|x| *x == values[0]), "a torn read");
                            assert!(values[0] >= last, "a read went back in time");
                            last = values[0];
                        }
                    });
                }
            });
            assert_eq!(t.to_vec(), vec![2000.0; n]);
        }
    }
}
