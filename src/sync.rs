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

/// The first four bytes of `word` (its low half: shmbus runs on little-endian Linux targets) as
/// a futex word, for handshake words that live among a kind's own words (docs/design.md §7).
#[inline]
pub(crate) fn futex_half(word: &AtomicU64) -> &AtomicU32 {
    // SAFETY: an `AtomicU64` is 8-aligned and 8 bytes, so its first four bytes are a valid,
    // aligned `AtomicU32` for as long as the word is borrowed. A word used as a futex is only
    // ever accessed through this `AtomicU32` (and by the kernel's futex code), never as a
    // 64-bit atomic, so no access mixes the two sizes. Under loom the atomics are the model's
    // own objects of one layout, and only their address is reinterpreted.
    unsafe { &*(word as *const AtomicU64 as *const AtomicU32) }
}
