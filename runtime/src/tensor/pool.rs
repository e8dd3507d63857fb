//! Storages of small tensors kept for reuse, per thread.
//!
//! A small model's step creates and drops a few dozen tensors of a few elements; each
//! would otherwise cost an allocation and a free, and a burst of them overflows the
//! allocator's per-thread cache (seven blocks per size in glibc). A dropped tensor whose
//! storage it alone held, with its elements inline, gives the storage back here, and
//! [`Tensor::filled`](super::Tensor::filled) takes one before allocating.

use std::any::{Any, TypeId};
use std::cell::RefCell;
use std::sync::Arc;
use std::thread::LocalKey;

use super::Storage;
use crate::Float;

/// The most storages a thread keeps (each 128 bytes).
const CAPACITY: usize = 64;

type Pool<E> = RefCell<Vec<Arc<Storage<E>>>>;

thread_local! {
    static POOL_F32: Pool<f32> = const { RefCell::new(Vec::new()) };
    static POOL_F64: Pool<f64> = const { RefCell::new(Vec::new()) };
}

/// `f` of this thread's pool for `E`; `None` while the thread is exiting or the pool is
/// in use further up the stack.
fn with_pool<E: Float, R>(f: impl FnOnce(&mut Vec<Arc<Storage<E>>>) -> R) -> Option<R> {
    fn on<T: Float, E: Float, R>(
        key: &'static LocalKey<Pool<T>>,
        f: impl FnOnce(&mut Vec<Arc<Storage<E>>>) -> R,
    ) -> Option<R> {
        key.try_with(|pool| {
            let mut pool = pool.try_borrow_mut().ok()?;
            (&mut *pool as &mut dyn Any).downcast_mut::<Vec<Arc<Storage<E>>>>().map(f)
        })
        .ok()
        .flatten()
    }
    if TypeId::of::<E>() == TypeId::of::<f64>() {
        on(&POOL_F64, f)
    } else {
        on(&POOL_F32, f)
    }
}

/// A storage no tensor holds, with its elements inline, if the pool has one.
pub(super) fn take<E: Float>() -> Option<Arc<Storage<E>>> {
    with_pool(|pool| pool.pop()).flatten()
}

/// Keeps `storage` for reuse if no other handle holds it and its elements are inline;
/// otherwise drops it.
pub(super) fn give<E: Float>(mut storage: Arc<Storage<E>>) {
    // Plain loads first: most storages dropped are shared or on the heap. (With one
    // handle, the one being dropped, nothing can change the heap pointer meanwhile.)
    if Arc::strong_count(&storage) != 1 || !storage.is_inline() || Arc::get_mut(&mut storage).is_none() {
        return;
    }
    let _ = with_pool(move |pool| {
        if pool.len() < CAPACITY {
            pool.push(storage);
        }
    });
}

/// How many storages this thread keeps for `E`.
#[cfg(test)]
pub(super) fn len<E: Float>() -> usize {
    with_pool::<E, _>(|pool| pool.len()).unwrap_or(0)
}
