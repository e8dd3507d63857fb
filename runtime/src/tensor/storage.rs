//! [`Storage`]: the buffer behind a tensor and its views, and [`Read`], one operation's
//! access to it.

use std::cell::UnsafeCell;
use std::marker::PhantomData;
use std::mem::MaybeUninit;
use std::sync::atomic::{AtomicPtr, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, TryLockError};

use super::Tensor;
use crate::kernels::layout::View;
use crate::Float;

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
    pub(super) len: usize,
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
pub(super) const fn inline_capacity<E>() -> usize {
    assert!(std::mem::align_of::<E>() <= std::mem::align_of::<u64>());
    INLINE_WORDS * std::mem::size_of::<u64>() / std::mem::size_of::<E>()
}

/// The first `len` elements of `E` of an inline buffer.
#[inline]
fn inline_elements<E>(inline: &mut [MaybeUninit<u64>; INLINE_WORDS], len: usize) -> &mut [MaybeUninit<E>] {
    assert!(len <= inline_capacity::<E>(), "adjoint: internal error: {len} elements do not fit inline");
    // SAFETY: the buffer holds `inline_capacity::<E>() >= len` elements of `E`, suitably
    // aligned (checked by `inline_capacity`), and any bytes are valid `MaybeUninit`s.
    unsafe { std::slice::from_raw_parts_mut(inline.as_mut_ptr().cast::<MaybeUninit<E>>(), len) }
}

impl<E: Copy> Storage<E> {
    /// A storage owning `data` on the heap.
    pub(super) fn new(data: Vec<E>) -> Self {
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
    pub(super) fn filled(len: usize, fill: impl FnOnce(&mut [MaybeUninit<E>])) -> Arc<Self> {
        if len > inline_capacity::<E>() {
            let mut data = Vec::with_capacity(len);
            fill(&mut data.spare_capacity_mut()[..len]);
            // SAFETY: `fill` wrote the first `len` elements.
            unsafe { data.set_len(len) };
            return Arc::new(Storage::new(data));
        }
        let mut inline = [MaybeUninit::<u64>::uninit(); INLINE_WORDS];
        fill(inline_elements(&mut inline, len));
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
    pub(super) fn is_inline(&self) -> bool {
        self.heap.load(Ordering::Relaxed).is_null()
    }

    /// Writes `len` elements with `fill` into the inline buffer of a storage no one
    /// else holds (one taken from the [`pool`]), which must be inline and large enough.
    pub(super) fn refill(&mut self, len: usize, fill: impl FnOnce(&mut [MaybeUninit<E>])) {
        assert!(self.is_inline(), "adjoint: internal error: refill of a heap storage");
        self.len = len;
        fill(inline_elements(self.inline.get_mut(), len));
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
    pub(super) fn begin_read(&self) -> *const E {
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

    pub(super) fn end_read(&self) {
        self.state.fetch_sub(1, Ordering::Release);
    }

    fn lock_updates(&self) -> MutexGuard<'_, Updates<E>> {
        // The buffer is replaced whole, so a panic elsewhere never leaves it torn.
        self.updates.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The buffer, for the storage's only owner.
    pub(super) fn as_mut_slice(&mut self) -> &mut [E] {
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
    pub(super) fn into_vec(storage: Arc<Self>) -> Vec<E> {
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

impl<E: Copy> Storage<E> {
    /// Replaces the `len` elements for every handle that shares the storage: `f` gets
    /// them (moved when no read is in progress, else a copy the reads do not see) and
    /// returns the elements to install, `len` of them, and a result for the caller.
    ///
    /// New reads wait until `f` returns; reads in progress keep the buffer they hold,
    /// which is retired rather than freed. `f` must not unwind (the caller catches a
    /// panic of user code inside it), and a read of this storage inside `f` panics
    /// instead of waiting forever.
    pub(super) fn update<R>(&self, f: impl FnOnce(Vec<E>) -> (Vec<E>, R)) -> R {
        let n = self.len;
        let mut updates = match self.updates.try_lock() {
            Ok(guard) => guard,
            Err(TryLockError::Poisoned(e)) => e.into_inner(),
            Err(TryLockError::WouldBlock) => {
                if UPDATING.with(|u| u.borrow().contains(&self.address())) {
                    panic!("adjoint: the function given to `update` updated the tensor it updates through another handle; write into the tensor it receives instead");
                }
                self.lock_updates()
            }
        };
        // From here on new reads wait; those in progress keep the buffer they hold.
        let reads_in_progress = self.state.fetch_or(UPDATE_RUNNING, Ordering::AcqRel) != 0;
        if !reads_in_progress {
            // No read can still hold a retired buffer.
            updates.retired = None;
        }
        let heap = self.heap.load(Ordering::Acquire);
        let data = if reads_in_progress || heap.is_null() {
            // SAFETY: reads only are in progress, over the `n` elements.
            unsafe { std::slice::from_raw_parts(self.elements(heap), n) }.to_vec()
        } else {
            // SAFETY: no read is in progress and new ones wait, so the heap buffer (the
            // parts of a `Vec`) is this update's until it installs one.
            unsafe { Vec::from_raw_parts(heap, n, updates.capacity) }
        };
        let address = self.address();
        UPDATING.with(|u| u.borrow_mut().push(address));
        let (installed, result) = f(data);
        UPDATING.with(|u| u.borrow_mut().retain(|a| *a != address));
        assert_eq!(
            installed.len(),
            n,
            "adjoint: internal error: an update installs {} elements for {}",
            installed.len(),
            n
        );
        // The elements move to (or stay on) the heap: the inline buffer is never written
        // again, so reads in progress of it need nothing retired.
        let mut installed = std::mem::ManuallyDrop::new(installed);
        let replaced = self.heap.swap(installed.as_mut_ptr(), Ordering::AcqRel);
        let replaced_capacity = std::mem::replace(&mut updates.capacity, installed.capacity());
        if reads_in_progress && !replaced.is_null() {
            // SAFETY: the heap buffer the storage held (untouched: `f` had a copy), freed
            // once no read can hold it.
            let buffer = unsafe { Vec::from_raw_parts(replaced, n, replaced_capacity) };
            updates.retired.get_or_insert_with(Default::default).push(buffer);
        }
        // (Otherwise the replaced heap buffer went to `f`, which installed or freed it.)
        self.state.fetch_and(!UPDATE_RUNNING, Ordering::Release);
        result
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
    pub(super) data: &'t [E],
    pub(super) tensor: &'t Tensor<E>,
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

#[cfg(test)]
mod tests {
    use super::super::pool;
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
