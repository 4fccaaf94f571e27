//! Loom model of the one blocking loop (docs/design.md §7, "The one blocking loop"): a waiter
//! in the production [`block`] with `Wait::Sleep`, sleeping through the production handshake
//! ([`super::sleep`] / [`super::wake_after_publish`]) over the modelled futex, which has no
//! timeouts, so a lost wake-up is a deadlock loom reports.
//!
//! Run with `RUSTFLAGS="--cfg loom" cargo test --release --lib wait::loom` (`.ci/loom.sh`).
//! The kinds' own models drive the loop over their production attempts (records::loom,
//! queue::loom).

use std::time::Duration;

use ::loom::sync::Arc;
use ::loom::thread;

use super::{block, wake_after_publish, Attempt, Wait, WakeWords};
use crate::loom_harness::{model, ModelFutex};
use crate::sync::{AtomicU32, AtomicU64, Ordering};

/// A one-word mailbox and the two words of its handshake.
struct Mailbox {
    /// The last value published (0: none yet).
    value: AtomicU64,
    flag: AtomicU64,
    counter: AtomicU32,
    futex: ModelFutex,
}

impl Mailbox {
    fn words(&self) -> WakeWords<'_> {
        WakeWords {
            flag: &self.flag,
            counter: &self.counter,
        }
    }

    /// Publishes `v`, then wakes sleepers as every producer does after its commit.
    fn publish(&self, v: u64) {
        // ORDERING: Release pairs with the waiter's Acquire load in `attempt`.
        self.value.store(v, Ordering::Release);
        wake_after_publish(self.words(), &self.futex, false);
    }
}

/// Waits for a value of at least `want`.
struct Waiting<'a> {
    mb: &'a Mailbox,
    want: u64,
}

impl Attempt for Waiting<'_> {
    type Out = u64;
    // No timeouts in the model: the wait ends only through a wake-up.
    const CHECK_PERIOD: Option<Duration> = None;

    fn attempt(&mut self) -> Option<u64> {
        // ORDERING: Acquire pairs with the Release store in `publish`.
        let v = self.mb.value.load(Ordering::Acquire);
        (v >= self.want).then_some(v)
    }

    fn sleep(&mut self, timeout: Option<Duration>) {
        let (mb, want) = (self.mb, self.want);
        // The re-check after the flag is raised: the handshake orders it against the
        // producer's load of the flag after its store (docs/design.md §7).
        super::sleep(mb.words(), &mb.futex, timeout, || {
            mb.value.load(Ordering::Relaxed) >= want
        });
    }
}

/// A waiter blocks twice (for 1, then for 2) while a producer publishes 1 and 2: both waits
/// end, so no wake-up is lost, including a late producer clearing the flag of the second
/// sleep (docs/design.md §7, "Two sleeps").
#[test]
fn blocked_waiter_is_always_woken() {
    model("blocked_waiter_is_always_woken", 3, || {
        let mb = Arc::new(Mailbox {
            value: AtomicU64::new(0),
            flag: AtomicU64::new(0),
            counter: AtomicU32::new(0),
            futex: ModelFutex::new(),
        });
        let producer = {
            let mb = mb.clone();
            thread::spawn(move || {
                mb.publish(1);
                mb.publish(2);
            })
        };
        let first = block(&mut Waiting { mb: &mb, want: 1 }, Wait::Sleep, None);
        assert!(
            first.is_some_and(|v| v >= 1),
            "no deadline: only a value ends it"
        );
        let second = block(&mut Waiting { mb: &mb, want: 2 }, Wait::Sleep, None);
        assert_eq!(second, Some(2));
        producer.join().unwrap();
    });
}
