//! What every loom model of a segment kind shares (docs/design.md §9): the model runner and the
//! futex (producer liveness as the kernel keeps it is `crate::test_live`, which the unit tests
//! share). Test code, built only under `--cfg loom`.

use ::loom::sync::{Condvar, Mutex};

use crate::sync::{AtomicU32, Ordering};
use crate::wait::Futex;

pub(crate) use crate::test_live::ModelLive;

/// Runs `f` under loom with preemption bound `bound` unless `LOOM_MAX_PREEMPTIONS` is set, and
/// says how many executions it explored.
pub(crate) fn model<F: Fn() + Sync + Send + 'static>(name: &str, bound: usize, f: F) {
    let mut b = ::loom::model::Builder::new();
    if b.preemption_bound.is_none() {
        b.preemption_bound = Some(bound);
    }
    // Loom's default (1,000 scheduling branches in one execution) is too few for the queue's
    // stall models, whose senders route around a held slot lap after lap and whose drains
    // then pass every dead position; each execution is still bounded by the models' loops.
    b.max_branches = b.max_branches.max(20_000);
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
