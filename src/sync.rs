//! The atomics the protocol is written against: `core`'s normally, loom's under `--cfg loom`, so
//! the very same ring code is model-checked.

#[cfg(loom)]
pub(crate) use loom::sync::atomic::{fence, AtomicU32, AtomicU64};

#[cfg(not(loom))]
pub(crate) use core::sync::atomic::{fence, AtomicU32, AtomicU64};

pub(crate) use core::sync::atomic::Ordering;

/// Spin-wait hint; under loom it yields to the model scheduler so spin loops terminate.
#[inline]
pub(crate) fn spin_hint() {
    #[cfg(loom)]
    loom::thread::yield_now();
    #[cfg(not(loom))]
    core::hint::spin_loop();
}

/// An Acquire load that is sound on read-only mappings: std guarantees only `Relaxed` atomic
/// loads there, so the Acquire is a fence after a Relaxed load (same codegen on x86-64).
#[inline]
pub(crate) fn load_acquire(word: &AtomicU64) -> u64 {
    let v = word.load(Ordering::Relaxed);
    fence(Ordering::Acquire);
    v
}
