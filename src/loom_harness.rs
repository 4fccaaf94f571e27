//! What every loom model of a segment kind shares (docs/design.md §9): the model runner, producer
//! liveness as the kernel keeps it, and the futex. Test code, built only under `--cfg loom`.

use ::loom::sync::atomic::AtomicBool;
use ::loom::sync::{Arc, Condvar, Mutex};

use crate::bus::ring::Liveness;
use crate::segment::header::MAX_PRODUCERS;
use crate::sync::{AtomicU32, Ordering};
use crate::wait::Futex;

/// Runs `f` under loom with preemption bound `bound` unless `LOOM_MAX_PREEMPTIONS` is set, and
/// says how many executions it explored.
pub(crate) fn model<F: Fn() + Sync + Send + 'static>(name: &str, bound: usize, f: F) {
    let mut b = ::loom::model::Builder::new();
    if b.preemption_bound.is_none() {
        b.preemption_bound = Some(bound);
    }
    let runs = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counter = runs.clone();
    let start = std::time::Instant::now();
    b.check(move || {
        counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        f()
    });
    eprintln!(
        "{name}: {} executions in {:.1?} (preemption bound {:?})",
        runs.load(std::sync::atomic::Ordering::Relaxed),
        start.elapsed(),
        b.preemption_bound
    );
}

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
    pub(crate) fn new(n: usize) -> Arc<ModelLive> {
        Arc::new(ModelLive {
            dead: (0..MAX_PRODUCERS)
                .map(|i| AtomicBool::new(i >= n))
                .collect(),
            locked: (0..MAX_PRODUCERS).map(|_| AtomicBool::new(false)).collect(),
        })
    }

    /// Producer `i`'s process ends (or it detaches).
    pub(crate) fn die(&self, i: usize) {
        self.dead[i].store(true, Ordering::Release);
    }

    /// A new producer attaches on dead entry `i`: it takes (and keeps) the entry's lock.
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
}

/// The futex: `wait` blocks while the word holds `expected`, until `wake_all`. Without timeouts,
/// a lost wake-up is a deadlock, which loom reports.
pub(crate) struct ModelFutex {
    lock: Mutex<()>,
    cv: Condvar,
}

impl ModelFutex {
    pub(crate) fn new() -> Self {
        ModelFutex {
            lock: Mutex::new(()),
            cv: Condvar::new(),
        }
    }
}

impl Futex for ModelFutex {
    fn wait(&self, word: &AtomicU32, expected: u32, _timeout: Option<std::time::Duration>) {
        let g = self.lock.lock().unwrap();
        if word.load(Ordering::Relaxed) == expected {
            drop(self.cv.wait(g).unwrap());
        }
    }

    fn wake_all(&self, _word: &AtomicU32) {
        let _g = self.lock.lock().unwrap();
        self.cv.notify_all();
    }

    fn heavy_barrier(&self) -> bool {
        crate::sync::fence(Ordering::SeqCst);
        true
    }
}
