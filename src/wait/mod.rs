//! How a blocking receive waits, and the wake-up handshake between producers and sleeping
//! subscribers (docs/design.md §7).
//!
//! A sleeper raises the segment's waiter flag, runs a heavy barrier, reads the wake counter,
//! checks its slot once more, and sleeps on the counter (a futex). A producer, after its commit,
//! runs a light barrier and loads the flag; only if it is raised does it clear it (one swap),
//! bump the counter and wake every sleeper. The barrier pair is asymmetric: `membarrier`
//! (`MEMBARRIER_CMD_GLOBAL_EXPEDITED`) on the sleeper's rare path against a compiler fence on the
//! producer's hot path, which together order "commit, then load flag" against "raise flag, then
//! check slot" as a pair of SeqCst fences would: either the producer sees the flag, or the
//! sleeper sees the commit. No wake-up is lost (loom model `wake_up_is_never_lost`), so a sleep
//! needs no cap; a sleeper killed while asleep leaves the flag raised, which costs the next
//! publish one wake-up, after which the flag is clear again.

pub use crate::segment::header::Wakeup;
use std::time::Duration;

mod block;
#[cfg(all(test, loom))]
mod loom;

pub(crate) use block::{block, sleep_on, Attempt, Reading, Receiving, CHECK_PERIOD};

use crate::segment::header::{W_PRODUCERS, W_WAITERS, W_WAKE};
use crate::sync::{AtomicU32, AtomicU64, Ordering};

/// How long a `Wait::Sleep` wait spins before its first sleep (docs/design.md §7, "Spin, then
/// sleep": about one futex wake-up's latency here, so that waiting costs at most about twice the
/// better choice made in hindsight, and messages in quick succession cost no `membarrier`).
pub(crate) const SPIN_BEFORE_SLEEP: Duration = Duration::from_micros(20);

/// How a blocking call waits: every blocking receive and send of every kind (bus, queue,
/// records, [`crate::LocalQueue`] channels) runs the same loop (docs/design.md §7, "The one
/// blocking loop"). Every strategy first makes 64 attempts back to back; they differ in what
/// they do after. On a segment, all of them look every 5 ms at what nobody wakes a waiter for
/// (a dead producer, sender or receiver; a closed segment); all end at the deadline of a
/// `*_timeout` call.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Wait {
    /// Keep attempting with a spin hint between attempts: lowest latency, one core fully busy.
    Spin,
    /// Attempt, then `sched_yield`, and again: low latency, and other threads on the core run.
    Yield,
    /// Spin for 20 µs, then sleep on the segment's futex until the step that can end the wait
    /// (a publish, a send, a freed slot) wakes it. The other side pays for the wake-up only
    /// while somebody sleeps (one load of the waiter flag otherwise). A read-only handle may
    /// not raise the waiter flag, so it polls every millisecond instead.
    #[default]
    Sleep,
}

/// The two words of the handshake: the waiter flag (non-zero: someone may sleep) and the wake
/// counter the sleepers' futex waits on.
#[derive(Clone, Copy)]
pub(crate) struct WakeWords<'a> {
    pub(crate) flag: &'a AtomicU64,
    pub(crate) counter: &'a AtomicU32,
}

/// The kernel services the handshake needs, so that loom can model them.
pub(crate) trait Futex {
    /// Sleeps while `word == expected`, until woken or `timeout` passes (`None`: no timeout).
    fn wait(&self, word: &AtomicU32, expected: u32, timeout: Option<Duration>);
    /// Wakes every sleeper on `word`.
    fn wake_all(&self, word: &AtomicU32);
    /// The sleeper's side of the asymmetric barrier; `false` if it could not be run.
    fn heavy_barrier(&self) -> bool;
}

/// The producer's side of the asymmetric barrier: a compiler fence against the sleeper's
/// `membarrier`, or a real fence where the process could not register for it (`strong`). Under
/// loom and miri, which model neither `membarrier` nor compiler fences across threads, a SeqCst
/// fence on both sides stands for the pair.
#[inline]
pub(crate) fn light_barrier(strong: bool) {
    if cfg!(any(loom, miri)) || strong {
        crate::sync::fence(Ordering::SeqCst);
    } else {
        std::sync::atomic::compiler_fence(Ordering::SeqCst);
    }
}

/// Producer side, right after a commit: wakes sleepers if any raised the flag.
#[inline]
pub(crate) fn wake_after_publish<F: Futex>(words: WakeWords<'_>, futex: &F, strong: bool) {
    light_barrier(strong);
    if words.flag.load(Ordering::Relaxed) != 0 {
        wake_sleepers(words, futex);
    }
}

/// Clears the flag and wakes everyone who slept on the counter (also used when a producer
/// detaches, so that sleepers notice).
#[cold]
pub(crate) fn wake_sleepers<F: Futex>(words: WakeWords<'_>, futex: &F) {
    // Only the producer that clears the flag wakes: the others' wake-ups would find nobody
    // (every sleeper raised the flag before it slept, and that one producer wakes them all).
    if words.flag.swap(0, Ordering::Relaxed) != 0 {
        // ORDERING: Release pairs with the sleeper's Acquire load of the counter: a sleeper that
        // reads the new count sees the commit made before it, so it does not sleep on it.
        words.counter.fetch_add(1, Ordering::Release);
        futex.wake_all(words.counter);
    }
}

/// Sleeper side: sleeps until a publish wakes it or `timeout` passes, unless `ready` (which
/// re-reads the expected slot) already holds after the flag is raised.
pub(crate) fn sleep<F: Futex>(
    words: WakeWords<'_>,
    futex: &F,
    timeout: Option<Duration>,
    ready: impl FnOnce() -> bool,
) {
    // The count is read BEFORE the flag is raised (docs/design.md §7, "Two sleeps"): a
    // producer that saw the flag of an earlier sleep may clear it only after our store below,
    // wiping out our flag; it then bumps the count after its clear, so after this read, and
    // the futex wait below returns at once instead of sleeping with no flag raised.
    // ORDERING: Acquire pairs with the Release `fetch_add` in `wake_sleepers`: if this reads a
    // count a producer bumped, `ready` sees that producer's commit. It also keeps the flag
    // store below after this load: a count bumped by a producer whose swap read our flag can
    // only be read by a later load.
    let seen = words.counter.load(Ordering::Acquire);
    words.flag.store(1, Ordering::Relaxed);
    let timeout = if futex.heavy_barrier() {
        timeout
    } else {
        // No barrier: a wake-up can be missed, so the sleep is kept short.
        Some(timeout.map_or(FALLBACK_SLEEP, |t| t.min(FALLBACK_SLEEP)))
    };
    if !ready() {
        futex.wait(words.counter, seen, timeout);
    }
}

/// Longest sleep when the heavy barrier is not available.
const FALLBACK_SLEEP: Duration = Duration::from_millis(1);

/// The futex of a segment: shared between processes on a mapped segment, private on a heap one.
pub(crate) struct SysFutex {
    pub(crate) shared: bool,
    /// The segment's producers fence every publish ([`Wakeup::Fence`]), so a sleeper's side of
    /// the barrier pair is a fence too, not `membarrier`.
    pub(crate) fence: bool,
}

impl SysFutex {
    /// Memory private to this process (no `membarrier`: threads of one process pair fences).
    pub(crate) const PRIVATE: SysFutex = SysFutex {
        shared: false,
        fence: false,
    };

    /// The futex of `seg`'s wake words, with its wake-up choice.
    pub(crate) fn of(seg: &crate::segment::Segment) -> SysFutex {
        SysFutex {
            shared: seg.is_shared(),
            fence: seg.wakeup_word() == Wakeup::Fence.to_word(),
        }
    }
}

#[cfg(not(loom))]
impl Futex for SysFutex {
    fn wait(&self, word: &AtomicU32, expected: u32, timeout: Option<Duration>) {
        crate::sys::futex_wait(word, expected, timeout, self.shared);
    }

    fn wake_all(&self, word: &AtomicU32) {
        crate::sys::futex_wake(word, self.shared);
    }

    fn heavy_barrier(&self) -> bool {
        if cfg!(miri) || self.fence {
            // ORDERING: SeqCst against the producers' SeqCst fence after their commit (every
            // producer fences on a `Wakeup::Fence` segment): either one sees the other's store.
            crate::sync::fence(Ordering::SeqCst);
            return true;
        }
        crate::segment::membarrier_global_expedited()
    }
}

// Under loom the crate builds, but only the ring and the handshake run, over a modelled futex
// (ring/loom.rs); a real segment's futex is never reached.
#[cfg(loom)]
impl Futex for SysFutex {
    fn wait(&self, _: &AtomicU32, _: u32, _: Option<Duration>) {
        unreachable!("segments are not used under loom")
    }

    fn wake_all(&self, _: &AtomicU32) {
        unreachable!("segments are not used under loom")
    }

    fn heavy_barrier(&self) -> bool {
        unreachable!("segments are not used under loom")
    }
}

/// Sleeps while `word == expected` (a bus's wake counter; `shared` as for [`SysFutex`]) and
/// `kick == kick_seen` (a word private to this process), until either changes and is woken, or
/// `timeout` passes: `futex_waitv` (Linux 5.16). Where the kernel lacks it, sleeps on `word`
/// alone for at most [`FALLBACK_SLEEP`], so a kick is noticed within that time (docs/design.md
/// §14). Spurious returns are possible; callers re-check.
#[cfg(not(loom))]
pub(crate) fn futex_wait_either(
    word: &AtomicU32,
    expected: u32,
    shared: bool,
    kick: &AtomicU32,
    kick_seen: u32,
    timeout: Option<Duration>,
) {
    use std::sync::atomic::AtomicBool;
    static NO_WAITV: AtomicBool = AtomicBool::new(false);
    if !NO_WAITV.load(Ordering::Relaxed) {
        use nix::errno::Errno;
        let words = [(word, expected, shared), (kick, kick_seen, false)];
        match crate::sys::futex_waitv(words, timeout) {
            Ok(()) | Err(Errno::EAGAIN | Errno::ETIMEDOUT | Errno::EINTR) => return,
            // ENOSYS before Linux 5.16; EPERM or another error where a seccomp filter refuses
            // it: never try again, or every sleep would return at once and the waker spin.
            Err(_) => NO_WAITV.store(true, Ordering::Relaxed),
        }
    }
    let t = timeout.map_or(FALLBACK_SLEEP, |t| t.min(FALLBACK_SLEEP));
    if kick.load(Ordering::Relaxed) == kick_seen {
        crate::sys::futex_wait(word, expected, Some(t), shared);
    }
}

/// Whether a producer of `seg` must run a full fence after each publish: the segment chose
/// [`Wakeup::Fence`], or this process could not register for the sleepers' `membarrier`.
pub(crate) fn producer_fences(seg: &crate::segment::Segment) -> bool {
    seg.wakeup_word() != Wakeup::Barrier.to_word() || !register_producer_process()
}

/// Registers this process for the sleepers' `membarrier` once; `false` if the kernel refused
/// (a producer then uses a real fence on every publish, see [`light_barrier`]).
pub(crate) fn register_producer_process() -> bool {
    static REGISTERED: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *REGISTERED.get_or_init(|| cfg!(any(miri, loom)) || crate::segment::membarrier_register())
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use std::cell::Cell;

    /// Counts wake-ups; its barrier always works; it never sleeps.
    #[derive(Default)]
    struct Counting {
        wakes: Cell<u32>,
        waits: Cell<u32>,
    }

    impl Futex for Counting {
        fn wait(&self, _: &AtomicU32, _: u32, _: Option<Duration>) {
            self.waits.set(self.waits.get() + 1);
        }
        fn wake_all(&self, _: &AtomicU32) {
            self.wakes.set(self.wakes.get() + 1);
        }
        fn heavy_barrier(&self) -> bool {
            true
        }
    }

    #[test]
    fn killed_sleeper_costs_one_wake_up_and_publishes_without_sleepers_make_none() {
        let (flag, counter) = (AtomicU64::new(0), AtomicU32::new(0));
        let words = WakeWords {
            flag: &flag,
            counter: &counter,
        };
        let f = Counting::default();
        for _ in 0..3 {
            wake_after_publish(words, &f, false);
        }
        assert_eq!(f.wakes.get(), 0, "nobody sleeps: no wake-up");
        // A sleeper raises the flag, finds nothing, sleeps, and is killed while asleep.
        sleep(words, &f, None, || false);
        assert_eq!(f.waits.get(), 1);
        for _ in 0..3 {
            wake_after_publish(words, &f, false);
        }
        assert_eq!(
            f.wakes.get(),
            1,
            "one wake-up clears the dead sleeper's flag"
        );
        assert_eq!(counter.load(Ordering::Relaxed), 1);
    }

    /// docs/design.md §7, "Wake-up choice": what each side does for each header word. Only
    /// the fence choice lets sleepers skip `membarrier`; any word but the barrier choice's makes
    /// producers fence, so that a forged word never loses a wake-up.
    #[test]
    #[cfg_attr(miri, ignore)] // a /dev/shm segment
    fn each_side_follows_the_wakeup_word_and_a_forged_one_costs_only_speed() {
        use crate::segment::header::{SegmentKind, TypeInfo, W_WAKEUP};
        use crate::segment::{Segment, Shape};
        let name = format!("unit-wakeup-{}", std::process::id());
        let shape = Shape {
            kind: SegmentKind::Bus,
            geometry: crate::segment::header::Geometry::new(8, 16).unwrap(),
            mode: crate::segment::header::ProducerMode::Single,
            ty: TypeInfo::raw(),
            first_seq: 0,
        };
        let plan = crate::segment::Plan {
            wakeup: Wakeup::Fence,
            ..crate::segment::Plan::plain(shape)
        };
        let seg = Segment::create(&name, plan, 0o600).unwrap();
        let _ = crate::segment::remove(&name);
        assert!(SysFutex::of(&seg).fence && producer_fences(&seg));
        seg.words()[W_WAKEUP].store(0, Ordering::Relaxed);
        assert!(!SysFutex::of(&seg).fence);
        seg.words()[W_WAKEUP].store(2, Ordering::Relaxed);
        assert!(
            !SysFutex::of(&seg).fence && producer_fences(&seg),
            "a forged word: producers fence, sleepers keep membarrier"
        );
    }

    #[test]
    fn sleeper_does_not_sleep_when_its_message_is_already_there() {
        let (flag, counter) = (AtomicU64::new(0), AtomicU32::new(0));
        let words = WakeWords {
            flag: &flag,
            counter: &counter,
        };
        let f = Counting::default();
        sleep(words, &f, Some(Duration::from_secs(1)), || true);
        assert_eq!(f.waits.get(), 0);
    }
}

impl crate::segment::Segment {
    /// The words of the wake-up handshake (docs/design.md §7).
    #[inline]
    pub(crate) fn wake_words(&self) -> WakeWords<'_> {
        WakeWords {
            flag: &self.words()[W_WAITERS],
            counter: self.futex_word(W_WAKE),
        }
    }

    /// A second pair of handshake words, at header words `counter` (a futex in its low half) and
    /// `flag`, for kinds that wake two sides (a queue's producers wait for space).
    #[inline]
    pub(crate) fn wake_words_at(&self, counter: usize, flag: usize) -> WakeWords<'_> {
        assert!(flag < W_PRODUCERS, "handshake words live in the header");
        WakeWords {
            flag: &self.words()[flag],
            counter: self.futex_word(counter),
        }
    }
}
