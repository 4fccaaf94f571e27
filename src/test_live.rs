//! Producer liveness as the kernel keeps it, for the loom models and the unit tests of every
//! kind (docs/design.md §9): built only for tests.

#[cfg(loom)]
use ::loom::sync::atomic::AtomicBool;
#[cfg(loom)]
use ::loom::sync::Arc;
#[cfg(not(loom))]
use std::sync::atomic::AtomicBool;
#[cfg(not(loom))]
use std::sync::Arc;

use crate::segment::header::MAX_PRODUCERS;
use crate::segment::producers::Liveness;
use crate::sync::Ordering;

/// Producer liveness as the kernel keeps it: `dead[i]` is stored (Release) when producer `i`'s
/// process ends, which is when the kernel drops its lock; `locked[i]` is its entry lock, which
/// only one party can hold after the death (Acquire: the holder sees everything the dead
/// process wrote).
pub(crate) struct ModelLive {
    pub(crate) dead: Vec<AtomicBool>,
    pub(crate) locked: Vec<AtomicBool>,
}

pub(crate) struct ModelGuard<'a>(&'a AtomicBool);

impl Drop for ModelGuard<'_> {
    fn drop(&mut self) {
        self.0.store(false, Ordering::Release);
    }
}

impl ModelLive {
    /// `n` producers, all alive (entries beyond `n` were never used: dead).
    #[cfg_attr(not(loom), allow(dead_code))]
    pub(crate) fn new(n: usize) -> Arc<ModelLive> {
        Arc::new(ModelLive::plain(n))
    }

    /// The same, not shared.
    pub(crate) fn plain(n: usize) -> ModelLive {
        ModelLive {
            dead: (0..MAX_PRODUCERS)
                .map(|i| AtomicBool::new(i >= n))
                .collect(),
            locked: (0..MAX_PRODUCERS).map(|_| AtomicBool::new(false)).collect(),
        }
    }

    /// Producer `i`'s process ends (or it detaches).
    pub(crate) fn die(&self, i: usize) {
        self.dead[i].store(true, Ordering::Release);
    }

    /// A new producer attaches on dead entry `i`: it takes (and keeps) the entry's lock.
    #[cfg_attr(not(loom), allow(dead_code))]
    pub(crate) fn reuse(&self, i: usize) -> bool {
        self.dead[i].load(Ordering::Acquire)
            && self.locked[i]
                .compare_exchange(false, true, Ordering::Acquire, Ordering::Relaxed)
                .is_ok()
    }
}

impl<'a> Liveness for &'a ModelLive {
    type Guard = ModelGuard<'a>;

    fn alive(&self, i: usize) -> bool {
        !self.dead[i].load(Ordering::Acquire) || self.locked[i].load(Ordering::Acquire)
    }

    fn any_alive(&self) -> bool {
        (0..MAX_PRODUCERS).any(|i| self.alive(i))
    }

    fn lock_dead(&self, i: usize) -> Option<ModelGuard<'a>> {
        if !self.dead[i].load(Ordering::Acquire) {
            return None;
        }
        self.locked[i]
            .compare_exchange(false, true, Ordering::Acquire, Ordering::Relaxed)
            .is_ok()
            .then(|| ModelGuard(&self.locked[i]))
    }

    /// The model's clock stands still: a model that lets readers pass stalls gives them a
    /// stall bound of 0 (pass at the first look), so every interleaving stays deterministic.
    fn now_ns(&self) -> u64 {
        0
    }
}
