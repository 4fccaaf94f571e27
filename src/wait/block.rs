//! The one blocking loop (docs/design.md §7, "The one blocking loop"): every blocking receive
//! and send of every kind waits here, over its kind's [`Attempt`].
//!
//! A wait is: [`SPINS`] attempts back to back; then rounds of [`SPINS`] attempts, with one
//! clock read per round (the deadline, the kind's periodic [`Attempt::check`]), each attempt
//! followed by what the [`Wait`] strategy says: a spin hint (`Spin`, and `Sleep` during its
//! first [`SPIN_BEFORE_SLEEP`](super::SPIN_BEFORE_SLEEP)), a `sched_yield` (`Yield`), or, once
//! per round, a sleep through the handshake of §7 (`Sleep`).
//!
//! The loop is generic over the attempt, so each kind gets its own copy with the attempt
//! inlined: no `dyn`, no allocation, no system call that the kind's own loop did not make.

use std::time::{Duration, Instant};

use super::{Futex, Wait, WakeWords};

/// Attempts of a blocking call before it first reads the clock, and between its clock reads.
/// Under loom, one: the models explore each attempt's interleavings, not a spin.
pub(crate) const SPINS: u32 = if cfg!(loom) { 1 } else { 64 };

/// How often a blocking call runs its kind's [`Attempt::check`] (a dead participant cannot
/// wake anyone; a closed segment is noticed here): a dead claimant is skipped, and a closed
/// segment reported, within about this time under every strategy.
pub(crate) const CHECK_PERIOD: Duration = Duration::from_millis(5);

/// How long a handle that may not raise the waiter flag (a read-only mapping) sleeps at most
/// in place of the handshake: nobody would wake it.
pub(crate) const READ_ONLY_POLL: Duration = Duration::from_millis(1);

/// One kind's side of a blocking call.
pub(crate) trait Attempt {
    /// What ends the wait (a message, a lap, "closed", a sent item).
    type Out;

    /// How often [`Attempt::check`] runs; `None`: never, and a sleep lasts until a wake-up or
    /// the deadline (an in-process kind, whose every party wakes the other side when it goes).
    const CHECK_PERIOD: Option<Duration> = Some(CHECK_PERIOD);

    /// One non-blocking try: the kind's `try_recv` / `try_send` step. `Some` ends the wait.
    fn attempt(&mut self) -> Option<Self::Out>;

    /// The periodic look at what nobody wakes us for: dead participants, a closed segment.
    /// `Some` ends the wait. The first comes one period into the wait, so that a call that
    /// starts before its peers attach is not told "closed" at once.
    fn check(&mut self) -> Option<Self::Out> {
        None
    }

    /// Sleeps until woken or `timeout` passes (`None`: no limit), through [`super::sleep`]
    /// with the re-check predicate of what [`Attempt::attempt`] waits for.
    fn sleep(&mut self, timeout: Option<Duration>);
}

/// Waits with `wait` until `a` succeeds (its output) or `deadline` passes (`None`).
#[inline]
pub(crate) fn block<A: Attempt>(
    a: &mut A,
    wait: Wait,
    deadline: Option<Instant>,
) -> Option<A::Out> {
    // The fast case, a success within a few attempts, reads no clock.
    if let Some(out) = a.attempt() {
        return Some(out);
    }
    // The hint before each later attempt, not after each one: under loom (one attempt, where
    // the hint is a yield to the model's scheduler) a waiter then goes to sleep without first
    // handing every other thread the turn, so the models reach the sleep with the producer
    // anywhere in its steps.
    let mut left = SPINS;
    while left > 1 {
        left -= 1;
        crate::sync::spin_hint();
        if let Some(out) = a.attempt() {
            return Some(out);
        }
    }
    block_slow(a, wait, deadline)
}

/// [`block`] after its first spin.
#[inline(never)]
fn block_slow<A: Attempt>(a: &mut A, wait: Wait, deadline: Option<Instant>) -> Option<A::Out> {
    let started = Instant::now();
    // Wait::Sleep spins a while before its first sleep (docs/design.md §7, "Spin, then
    // sleep"): an answer that comes within it costs no barrier, sleep or wake-up. Under loom
    // (no time) it sleeps at once, so that a model's schedule does not depend on the clock.
    let spin_until = if cfg!(loom) {
        started
    } else {
        started + super::SPIN_BEFORE_SLEEP
    };
    let mut checked = started;
    loop {
        let now = Instant::now();
        if deadline.is_some_and(|d| now >= d) {
            return None;
        }
        if let Some(period) = A::CHECK_PERIOD {
            if now.duration_since(checked) >= period {
                checked = now;
                if let Some(out) = a.check() {
                    return Some(out);
                }
            }
        }
        match wait {
            Wait::Yield => {
                for _ in 0..SPINS {
                    if let Some(out) = a.attempt() {
                        return Some(out);
                    }
                    std::thread::yield_now();
                }
            }
            Wait::Sleep if now >= spin_until => {
                let to_check = A::CHECK_PERIOD.map(|p| p.saturating_sub(now - checked));
                let to_deadline = deadline.map(|d| d.saturating_duration_since(now));
                let timeout = match (to_check, to_deadline) {
                    (Some(c), Some(d)) => Some(c.min(d)),
                    (c, d) => c.or(d),
                };
                a.sleep(timeout);
                if let Some(out) = a.attempt() {
                    return Some(out);
                }
            }
            Wait::Spin | Wait::Sleep => {
                for _ in 0..SPINS {
                    if let Some(out) = a.attempt() {
                        return Some(out);
                    }
                    crate::sync::spin_hint();
                }
            }
        }
    }
}

/// A broadcast reader's blocking receive (bus and records subscribers): one poll, the full
/// look, and the re-check of its sleep. [`Receiving`] makes it an [`Attempt`] over its
/// segment's wake words.
pub(crate) trait Reading {
    type Out;

    /// One poll; `checked`: the full look at the cursor (a stall, a lap) and the producers
    /// (closed). `None`: nothing yet.
    fn poll(&mut self, checked: bool) -> Option<Self::Out>;

    /// The sleep's re-check: the slot the reader expects has moved past "being written".
    fn ready(&self) -> bool;
}

/// The [`Attempt`] of a [`Reading`] on segment `seg`.
pub(crate) struct Receiving<'a, R> {
    pub(crate) reader: R,
    pub(crate) seg: &'a crate::segment::Segment,
    pub(crate) futex: &'a super::SysFutex,
}

impl<R: Reading> Attempt for Receiving<'_, R> {
    type Out = R::Out;

    #[inline]
    fn attempt(&mut self) -> Option<R::Out> {
        self.reader.poll(false)
    }

    fn check(&mut self) -> Option<R::Out> {
        self.reader.poll(true)
    }

    fn sleep(&mut self, timeout: Option<Duration>) {
        let (words, writable) = (self.seg.wake_words(), self.seg.is_writable());
        let reader = &self.reader;
        sleep_on(words, self.futex, writable, timeout, || reader.ready());
    }
}

/// The [`Attempt::sleep`] of a segment kind: the handshake on `words`, or, on a handle that may
/// not raise the waiter flag (`writable` false), a plain sleep of at most [`READ_ONLY_POLL`]
/// unless `ready` already holds.
pub(crate) fn sleep_on<F: Futex>(
    words: WakeWords<'_>,
    futex: &F,
    writable: bool,
    timeout: Option<Duration>,
    ready: impl FnOnce() -> bool,
) {
    if writable {
        super::sleep(words, futex, timeout, ready);
    } else if !ready() {
        std::thread::sleep(timeout.map_or(READ_ONLY_POLL, |t| t.min(READ_ONLY_POLL)));
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    /// Succeeds at attempt `at`; counts attempts, checks and sleeps.
    struct Counting {
        at: u32,
        attempts: u32,
        checks: u32,
        sleeps: u32,
    }

    impl Attempt for Counting {
        type Out = u32;
        const CHECK_PERIOD: Option<Duration> = Some(Duration::ZERO);

        fn attempt(&mut self) -> Option<u32> {
            self.attempts += 1;
            (self.attempts >= self.at).then_some(self.attempts)
        }

        fn check(&mut self) -> Option<u32> {
            self.checks += 1;
            None
        }

        fn sleep(&mut self, timeout: Option<Duration>) {
            assert!(timeout.is_some(), "a check period bounds every sleep");
            self.sleeps += 1;
        }
    }

    fn counting(at: u32) -> Counting {
        Counting {
            at,
            attempts: 0,
            checks: 0,
            sleeps: 0,
        }
    }

    #[test]
    fn a_quick_success_neither_checks_nor_sleeps_under_any_strategy() {
        for wait in [Wait::Spin, Wait::Yield, Wait::Sleep] {
            let mut a = counting(SPINS);
            assert_eq!(block(&mut a, wait, None), Some(SPINS));
            assert_eq!((a.checks, a.sleeps), (0, 0), "{wait:?}");
        }
    }

    #[test]
    fn only_sleep_sleeps_and_every_strategy_checks_after_its_spin() {
        for wait in [Wait::Spin, Wait::Yield, Wait::Sleep] {
            let mut a = counting(SPINS * 40);
            assert_eq!(block(&mut a, wait, None), Some(SPINS * 40));
            assert!(a.checks > 0, "{wait:?}: the periodic look ran");
            assert_eq!(a.sleeps > 0, wait == Wait::Sleep, "{wait:?}");
        }
    }

    #[test]
    fn a_passed_deadline_ends_the_wait_after_the_first_spin() {
        for wait in [Wait::Spin, Wait::Yield, Wait::Sleep] {
            let mut a = counting(u32::MAX);
            assert_eq!(block(&mut a, wait, Some(Instant::now())), None);
            assert_eq!(a.attempts, SPINS, "{wait:?}");
        }
    }

    #[test]
    fn a_check_that_answers_ends_the_wait() {
        struct Closed(u32);
        impl Attempt for Closed {
            type Out = &'static str;
            const CHECK_PERIOD: Option<Duration> = Some(Duration::ZERO);
            fn attempt(&mut self) -> Option<&'static str> {
                self.0 += 1;
                None
            }
            fn check(&mut self) -> Option<&'static str> {
                Some("closed")
            }
            fn sleep(&mut self, _: Option<Duration>) {}
        }
        let mut a = Closed(0);
        assert_eq!(block(&mut a, Wait::Sleep, None), Some("closed"));
        assert_eq!(a.0, SPINS, "the check comes right after the first spin");
    }
}
