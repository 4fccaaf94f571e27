//! The core of readiness (docs/design.md §14), apart from the operating system so that loom
//! checks the very code that runs: a handle's [`Registration`] (arming and signalling), the
//! [`Registry`] of the registrations one waker thread serves, and the thread's loop ([`run`]).
//! They work over a [`Signal`] (the eventfd), a [`Target`] (what "ready" and "closed" mean for a
//! kind) and a [`Host`] (the futexes and the clock): `thread.rs` supplies the real signal and
//! host, each kind's `readiness.rs` its target, and `loom.rs` models of all three.

#[cfg(loom)]
use ::loom::sync::atomic::AtomicBool;
#[cfg(loom)]
use ::loom::sync::{Mutex, MutexGuard};
#[cfg(not(loom))]
use std::sync::atomic::AtomicBool;
#[cfg(not(loom))]
use std::sync::{Mutex, MutexGuard};

use std::sync::{Arc, PoisonError};

use crate::sync::{AtomicU32, AtomicU64, Ordering};
use crate::wait::{Futex, WakeWords};

#[cfg(all(test, loom))]
mod loom;

/// `closed_at` when no `Closed` has been reported at the current position.
const NOT_CLOSED: u64 = u64::MAX;

/// Where a registration tells its handle that something is there: the eventfd.
pub(crate) trait Signal {
    /// Makes the handle's descriptor readable.
    fn raise(&self);
    /// Makes it not readable (what a raise did before is consumed).
    fn clear(&self);
}

/// The per-kind questions a waker asks about one armed registration, whose handle expects
/// `e` (a sequence, or a position the target need not use).
pub(crate) trait Target {
    /// Whether a receive (or send) would find something now: a load or two, run on every pass
    /// and as the re-check of the sleep handshake, so it must read what the other side stores
    /// before it loads the waiter flag (docs/design.md §7).
    fn ready(&self, e: u64) -> bool;
    /// Looked at every few milliseconds only: whether a position is stuck with a claimant that
    /// may have died, which the handle repairs or skips when told to check.
    fn stalled(&self, e: u64) -> bool;
    /// Looked at every few milliseconds only, at most once a pass and only for a registration not
    /// yet told at its position: whether nobody who could make the target ready is attached (a
    /// bus or records segment without a producer, a queue without a sender). Such a registration
    /// is signalled once per position and its handle reports the closure. May ask the kernel;
    /// a kind that never closes (a queue's senders) says `false`.
    fn closed(&self) -> bool;
}

/// What the waker's loop needs from the world.
pub(crate) trait Host {
    /// Whether the periodic look (stalls, a closed segment) is due; restarts its period if so.
    fn periodic(&mut self) -> bool;
    /// Sleeps while the kick word reads `seen` (nothing is armed).
    fn wait_kick(&self, kick: &AtomicU32, seen: u32);
    /// Sleeps until the other side announces something on `words` or the kick word moves from
    /// `seen`, through the §7 handshake whose re-check is `ready` (or polls, where the mapping
    /// may not raise the waiter flag).
    fn sleep(
        &self,
        words: WakeWords<'_>,
        kick: &AtomicU32,
        seen: u32,
        ready: impl FnOnce() -> bool,
    );
}

/// One handle's registration with its waker.
pub(crate) struct Registration<S> {
    /// The position the handle expects, as of its last arming (written by the handle).
    expected: AtomicU64,
    /// Set by the handle when a receive found nothing; cleared by the waker when it signals.
    armed: AtomicBool,
    /// Set by the waker when it signals for something the slot does not show (a stall, a closed
    /// segment): the next receive then looks at the positions and the producers.
    check: AtomicBool,
    /// The position at which `Closed` was last reported, so that a closed segment signals once,
    /// not every period ([`NOT_CLOSED`]: none).
    closed_at: AtomicU64,
    /// Raised while the handle has something to receive.
    pub(crate) sig: S,
}

impl<S: Signal> Registration<S> {
    pub(crate) fn new(sig: S) -> Self {
        Registration {
            expected: AtomicU64::new(0),
            armed: AtomicBool::new(false),
            check: AtomicBool::new(false),
            closed_at: AtomicU64::new(NOT_CLOSED),
            sig,
        }
    }

    /// Disarms and, if this call disarmed it, raises the signal. `check`: the reason is not in
    /// the slot.
    fn signal(&self, check: bool) {
        if check {
            // ORDERING: Release pairs with the Acquire `swap` in `take_check`; the signal below
            // orders it before the handle's wake-up anyway.
            self.check.store(true, Ordering::Release);
        }
        // ORDERING: AcqRel: Acquire pairs with the Release store in `arm` (this disarms the
        // arming whose `expected` the caller read); Release orders the `check` store above
        // before a later arming that reads this disarm.
        if self.armed.swap(false, Ordering::AcqRel) {
            self.sig.raise();
        }
    }

    /// Whether the waker signalled for something the slot does not show; clears it.
    pub(crate) fn take_check(&self) -> bool {
        // ORDERING: pairs with the Release store in `signal`.
        self.check.swap(false, Ordering::Acquire)
    }

    /// After a receive (or send) found nothing at `next`: has the waker signal once there is
    /// something. Returns whether the waker must be kicked (a new arming). No edge is lost: the
    /// signal is cleared before the arming is published, so a signal for this arming comes
    /// after the clear; and the waker's pass after the kick re-checks the target after raising
    /// the waiter flag (docs/design.md §14).
    #[must_use]
    pub(crate) fn arm(&self, next: u64) -> bool {
        if self.armed.load(Ordering::Relaxed) && self.expected.load(Ordering::Relaxed) == next {
            // Armed for this very position already, and not signalled since (the waker disarms
            // when it signals): the signal is clear and the waker covers it.
            return false;
        }
        // A raise cleared here was for an earlier arming, whose cause the receive that found
        // nothing has already seen.
        self.sig.clear();
        if self.closed_at.load(Ordering::Relaxed) != next {
            self.closed_at.store(NOT_CLOSED, Ordering::Relaxed);
        }
        self.expected.store(next, Ordering::Relaxed);
        // ORDERING: Release pairs with the waker's Acquire loads of `armed`: a waker that sees
        // this arming sees its `expected` (the kick orders both for its next pass anyway).
        self.armed.store(true, Ordering::Release);
        true
    }

    /// A receive reported `Closed` at `next`: the waker signals a closed segment once per
    /// position.
    pub(crate) fn closed(&self, next: u64) {
        self.closed_at.store(next, Ordering::Relaxed);
    }
}

/// The registrations one waker thread serves, its kick word and its stop flag.
pub(crate) struct Registry<S> {
    regs: Mutex<Vec<Arc<Registration<S>>>>,
    /// Bumped (Release) after every arming, registration change and stop; the thread waits on
    /// it (a private futex) besides the segment's wake counter.
    kick: AtomicU32,
    stop: AtomicBool,
}

impl<S: Signal> Registry<S> {
    pub(crate) fn new() -> Self {
        Registry {
            regs: Mutex::new(Vec::new()),
            kick: AtomicU32::new(0),
            stop: AtomicBool::new(false),
        }
    }

    fn regs(&self) -> MutexGuard<'_, Vec<Arc<Registration<S>>>> {
        // The list stays consistent whatever panicked while holding it (pushes and removals only).
        self.regs.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub(crate) fn add(&self, r: &Arc<Registration<S>>) {
        self.regs().push(Arc::clone(r));
    }

    /// Removes `r`; the caller kicks.
    pub(crate) fn remove(&self, r: &Arc<Registration<S>>) {
        self.regs().retain(|x| !Arc::ptr_eq(x, r));
    }

    /// Tells the thread to look again (an arming, a registration change, a stop). `futex` wakes
    /// the private kick word.
    pub(crate) fn kick(&self, futex: &impl Futex) {
        // ORDERING: Release pairs with the Acquire load at the top of `run`: a pass that reads
        // this count sees the arming (or registration, or stop) made before it.
        self.kick.fetch_add(1, Ordering::Release);
        futex.wake_all(&self.kick);
    }

    /// Ends the thread's loop at its next pass.
    pub(crate) fn stop(&self, futex: &impl Futex) {
        self.stop.store(true, Ordering::Relaxed);
        self.kick(futex);
    }
}

/// The waker's loop: signals armed registrations, sleeping on `words` in between, until stopped.
pub(crate) fn run<S: Signal, T: Target, H: Host>(
    reg: &Registry<S>,
    target: &T,
    words: WakeWords<'_>,
    host: &mut H,
) {
    loop {
        // ORDERING: pairs with the Release `fetch_add` in `Registry::kick`: this pass sees every
        // arming, registration and stop made before the count it reads; a later one changes
        // the count, which ends the sleep below (the futex compares it).
        let k = reg.kick.load(Ordering::Acquire);
        if reg.stop.load(Ordering::Relaxed) {
            return;
        }
        let periodic = host.periodic();
        if scan(reg, target, periodic) == 0 {
            // Nothing armed: the waiter flag stays down, the other side pays nothing.
            host.wait_kick(&reg.kick, k);
            continue;
        }
        // ORDERING: Acquire as at the top of the loop.
        let ready = || reg.kick.load(Ordering::Acquire) != k || any_ready(reg, target);
        host.sleep(words, &reg.kick, k, ready);
    }
}

/// Signals every armed registration that has something to receive; returns how many stay armed.
/// `periodic`: also signal stalls and a closed segment, which no publish announces.
fn scan<S: Signal, T: Target>(reg: &Registry<S>, target: &T, periodic: bool) -> usize {
    let regs = reg.regs();
    let mut closed = None;
    let mut armed = 0;
    for r in regs.iter() {
        // ORDERING: pairs with the Release store in `Registration::arm`.
        if !r.armed.load(Ordering::Acquire) {
            continue;
        }
        let e = r.expected.load(Ordering::Relaxed);
        if target.ready(e) {
            r.signal(false);
        } else if periodic
            && needs_check(target, r, e, || {
                *closed.get_or_insert_with(|| target.closed())
            })
        {
            r.signal(true);
        } else {
            armed += 1;
        }
    }
    armed
}

/// Whether the handle should look at the positions and the producers for `e`: a position
/// claimed but not completed (a stall, whose claimant may be dead), or a segment nobody can
/// make ready any more (`closed`: [`Target::closed`], asked once a pass) that has not been
/// reported closed at `e` yet (docs/design.md §6).
fn needs_check<S, T: Target>(
    target: &T,
    r: &Registration<S>,
    e: u64,
    closed: impl FnOnce() -> bool,
) -> bool {
    if target.stalled(e) {
        return true;
    }
    r.closed_at.load(Ordering::Relaxed) != e && closed()
}

/// Whether some armed registration's target is ready (the re-check of the sleep handshake).
fn any_ready<S, T: Target>(reg: &Registry<S>, target: &T) -> bool {
    reg.regs
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .iter()
        .any(|r| {
            // ORDERING: pairs with the Release store in `Registration::arm`.
            r.armed.load(Ordering::Acquire) && target.ready(r.expected.load(Ordering::Relaxed))
        })
}

/// Whether `cursor` is past `e` (positions only grow; a difference over half the range is a
/// cursor behind `e`, which only a forged segment shows).
#[inline]
pub(crate) fn ahead(cursor: u64, e: u64) -> bool {
    let d = cursor.wrapping_sub(e);
    d != 0 && d <= u64::MAX / 2
}
