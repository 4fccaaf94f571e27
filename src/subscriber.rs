//! The consumer side: each subscriber keeps only its own expected sequence number, in its own
//! process; nothing about it is stored in the segment (DESIGN §3, §7).

use std::marker::PhantomData;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::layout::Geometry;
use crate::payload::{Payload, Raw};
use crate::ring::{self, ReadOutcome};
use crate::segment::Segment;
use crate::wait::Wait;

/// Where a new subscriber starts reading.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Start {
    /// Only messages published from now on (the default).
    #[default]
    Newest,
    /// The oldest message still intact in the ring.
    Oldest,
    /// The last `n` messages (or as many as are intact), then what follows.
    Last(u64),
    /// A given sequence number (if it was overwritten already, the first receive reports a lap).
    Sequence(u64),
}

/// Where a lapped subscriber resumes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum LapPolicy {
    /// At the oldest message still intact (the default). If it is lapped again before it receives
    /// anything, it resumes at the newest instead, so it always makes progress.
    #[default]
    Oldest,
    /// At the newest message.
    Newest,
}

/// Counters of one subscriber. Over any window it observed, `received + lost` equals the number
/// of sequence numbers published.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SubscriberStats {
    /// Messages delivered.
    pub received: u64,
    /// Sequence numbers skipped: overwritten before being read (laps), or abandoned by a writer
    /// that died mid-write.
    pub lost: u64,
    /// Times the subscriber was lapped.
    pub laps: u64,
}

/// One result of receiving.
pub enum Recv<'a, T: Payload = Raw> {
    /// A whole message, copied out of the ring.
    Message(Message<'a, T>),
    /// Nothing new (only from [`Subscriber::try_recv`] and an expired [`Subscriber::recv_timeout`]).
    Empty,
    /// The subscriber fell behind (or a writer died mid-message): exactly `lost` sequence numbers
    /// were skipped. The subscriber stays usable.
    Lapped {
        /// How many sequence numbers were skipped.
        lost: u64,
    },
    /// No producer is attached and everything intact has been received (blocking calls only).
    /// Not final: a producer may attach later and the sequence continues.
    Closed,
}

impl<T: Payload> std::fmt::Debug for Recv<'_, T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Recv::Message(m) => f.debug_tuple("Message").field(m).finish(),
            Recv::Empty => f.write_str("Empty"),
            Recv::Lapped { lost } => f.debug_struct("Lapped").field("lost", lost).finish(),
            Recv::Closed => f.write_str("Closed"),
        }
    }
}

impl<T: Payload> Recv<'_, T> {
    /// The message, if this is one.
    pub fn message(&self) -> Option<&Message<'_, T>> {
        match self {
            Recv::Message(m) => Some(m),
            _ => None,
        }
    }
}

/// A received message: a borrow of the subscriber's own buffer (never of the live slot), valid
/// until the next receive.
pub struct Message<'a, T: Payload = Raw> {
    seq: u64,
    value: &'a T::View,
}

impl<T: Payload> Message<'_, T> {
    /// The message's sequence number.
    pub fn seq(&self) -> u64 {
        self.seq
    }

    /// The message's bytes.
    pub fn bytes(&self) -> &[u8] {
        T::bytes(self.value)
    }

    /// The message as its type (`[u8]` for raw buses).
    pub fn get(&self) -> &T::View {
        self.value
    }
}

impl<T: Payload> std::ops::Deref for Message<'_, T> {
    type Target = T::View;
    fn deref(&self) -> &T::View {
        self.value
    }
}

impl<T: Payload> std::fmt::Debug for Message<'_, T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Message")
            .field("seq", &self.seq)
            .field("len", &self.bytes().len())
            .finish()
    }
}

/// What the iterator yields: owned copies, since an iterator cannot lend its buffer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event<V> {
    /// A message with its sequence number.
    Message {
        /// Sequence number.
        seq: u64,
        /// The message.
        value: V,
    },
    /// `lost` sequence numbers skipped.
    Lapped {
        /// How many.
        lost: u64,
    },
}

/// A poll result that borrows nothing, so loops can return it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Polled {
    Message { seq: u64, len: usize },
    Empty,
    Lapped { lost: u64 },
    Closed,
}

/// How long a subscriber waits on a sequence that stays unwritten while later ones exist before
/// counting it lost (a producer that died between claiming and publishing it).
pub const DEFAULT_STALL_TIMEOUT: Duration = Duration::from_millis(50);
/// An empty poll looks at the write cursor (to detect a stalled sequence or a lap the slot does
/// not show yet) once in this many polls.
const CURSOR_CHECK_EVERY: u32 = 1024;
/// How often a waiting subscriber checks whether any producer is still alive.
const LIVENESS_PERIOD: Duration = Duration::from_millis(10);

/// A consumer. Made by [`crate::Bus::subscriber`] or [`crate::Bus::subscribe`].
pub struct Subscriber<T: Payload = Raw> {
    seg: Arc<Segment>,
    geometry: Geometry,
    /// The next sequence number this subscriber expects: its whole shared-nothing state.
    next: u64,
    /// Private copy-out buffer, 8-byte aligned, one slot's payload long.
    buf: Box<[u64]>,
    policy: LapPolicy,
    wait: Wait,
    stall_timeout: Duration,
    /// Since when the expected sequence has been missing while later ones exist.
    stall_since: Option<Instant>,
    /// Empty polls so far (wrapping); paces the cursor checks of `poll`.
    empty_polls: u32,
    /// Laps in a row without a delivery in between (progress guard for `LapPolicy::Oldest`).
    laps_in_row: u32,
    stats: SubscriberStats,
    _type: PhantomData<fn() -> T>,
}

impl<T: Payload> std::fmt::Debug for Subscriber<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Subscriber")
            .field("bus", &self.seg.name())
            .field("next", &self.next)
            .field("stats", &self.stats)
            .finish()
    }
}

impl<T: Payload> Subscriber<T> {
    pub(crate) fn new(seg: Arc<Segment>, start: Start) -> Self {
        let geometry = seg.geometry;
        let words = seg.words();
        let c = ring::cursor(words);
        let oldest = ring::oldest_intact(words, &geometry, c, seg.first_seq);
        let next = match start {
            Start::Newest => c,
            Start::Oldest => oldest,
            Start::Last(n) => c.saturating_sub(n).max(oldest),
            Start::Sequence(s) => s,
        };
        let wait = if seg.is_writable() {
            Wait::Sleep
        } else {
            Wait::Yield
        };
        Subscriber {
            geometry,
            next,
            buf: vec![0u64; geometry.payload_words()].into_boxed_slice(),
            policy: LapPolicy::default(),
            wait,
            stall_timeout: DEFAULT_STALL_TIMEOUT,
            stall_since: None,
            empty_polls: 0,
            laps_in_row: 0,
            stats: SubscriberStats::default(),
            seg,
            _type: PhantomData,
        }
    }

    /// Sets where this subscriber resumes after a lap.
    pub fn lap_policy(mut self, policy: LapPolicy) -> Self {
        self.policy = policy;
        self
    }

    /// Sets how blocking receives wait (default [`Wait::Sleep`] on read-write handles,
    /// [`Wait::Yield`] on read-only ones).
    pub fn wait_strategy(mut self, wait: Wait) -> Self {
        self.wait = wait;
        self
    }

    /// Sets how long a sequence may stay unwritten while later ones exist before it is counted
    /// lost (default 50 ms): the bound on how long a producer that died mid-message delays us.
    pub fn stall_timeout(mut self, timeout: Duration) -> Self {
        self.stall_timeout = timeout;
        self
    }

    /// The next sequence number this subscriber expects.
    pub fn next_seq(&self) -> u64 {
        self.next
    }

    /// Counters so far.
    pub fn stats(&self) -> SubscriberStats {
        self.stats
    }

    /// Receives without waiting: a message, nothing new, or a lap with its exact loss.
    /// Never allocates, locks, or makes a system call.
    #[inline]
    pub fn try_recv(&mut self) -> Recv<'_, T> {
        let p = self.poll();
        self.finish(p)
    }

    /// Receives, waiting as long as it takes with the subscriber's [`Wait`] strategy. Returns a
    /// message, a lap, or [`Recv::Closed`] once no producer is attached and nothing intact is
    /// left unread.
    pub fn recv(&mut self) -> Recv<'_, T> {
        let p = self.wait_for(None);
        self.finish(p)
    }

    /// Like [`Subscriber::recv`], giving up with [`Recv::Empty`] after `timeout`.
    pub fn recv_timeout(&mut self, timeout: Duration) -> Recv<'_, T> {
        let p = self.wait_for(Some(Instant::now() + timeout));
        self.finish(p)
    }

    /// A blocking iterator over owned messages and laps; it ends when the bus is closed (see
    /// [`Recv::Closed`]).
    pub fn iter(&mut self) -> Iter<'_, T> {
        Iter { sub: self }
    }

    #[inline]
    fn poll(&mut self) -> Polled {
        let outcome = ring::read(self.seg.words(), &self.geometry, self.next, &mut self.buf);
        match outcome {
            ReadOutcome::Message { len }
                if T::view(&bytemuck::cast_slice(&self.buf)[..len]).is_some() =>
            {
                let seq = self.next;
                self.next = seq.wrapping_add(1);
                self.stats.received += 1;
                self.laps_in_row = 0;
                self.stall_since = None;
                Polled::Message { seq, len }
            }
            // A length that cannot be this type (only a hostile writer makes one) or an abandoned
            // slot: one sequence lost, nothing delivered.
            ReadOutcome::Message { .. } | ReadOutcome::Abandoned => self.skip_one(),
            ReadOutcome::NotYet | ReadOutcome::InProgress => {
                // The cursor tells a stalled sequence (a writer that died between claim and
                // publish, or a forged slot) and a lap the slot does not show yet. Its cache line
                // is written on every publish, so reading it on each empty poll would pull it
                // across cores on the latency-critical path (measured: 8-byte ping-pong p50
                // 155 ns with a read per poll, 103 ns without). It is read once every
                // CURSOR_CHECK_EVERY empty polls, and on every poll while a stall is timed.
                self.empty_polls = self.empty_polls.wrapping_add(1);
                if self.stall_since.is_none() && self.empty_polls % CURSOR_CHECK_EVERY != 0 {
                    return Polled::Empty;
                }
                self.check_stall()
            }
            ReadOutcome::Overwritten => self.resync(),
        }
    }

    fn skip_one(&mut self) -> Polled {
        self.next = self.next.wrapping_add(1);
        self.stats.lost = self.stats.lost.saturating_add(1);
        self.stall_since = None;
        Polled::Lapped { lost: 1 }
    }

    /// The expected sequence is not there. Nothing new, unless later sequences were claimed: then
    /// either we were lapped, or its writer is slow or dead, and after the stall timeout we count
    /// it lost rather than wait forever.
    #[inline]
    fn check_stall(&mut self) -> Polled {
        let ahead = ring::cursor(self.seg.words()).wrapping_sub(self.next);
        if ahead == 0 || ahead > u64::MAX / 2 {
            self.stall_since = None;
            return Polled::Empty;
        }
        if ahead > self.geometry.slot_count {
            return self.resync();
        }
        self.stalled()
    }

    #[cold]
    fn stalled(&mut self) -> Polled {
        let now = Instant::now();
        match self.stall_since {
            None => {
                self.stall_since = Some(now);
                Polled::Empty
            }
            Some(t) if now.duration_since(t) >= self.stall_timeout => self.skip_one(),
            Some(_) => Polled::Empty,
        }
    }

    /// Lapped: jump to where the policy says and count exactly what was skipped.
    #[cold]
    fn resync(&mut self) -> Polled {
        self.laps_in_row += 1;
        let to_newest = self.policy == LapPolicy::Newest || self.laps_in_row > 1;
        let new = ring::resume_after_lap(
            self.seg.words(),
            &self.geometry,
            self.next,
            self.seg.first_seq,
            to_newest,
        );
        let lost = new.wrapping_sub(self.next);
        self.next = new;
        // Saturating: a forged cursor can make single jumps of nearly 2^64.
        self.stats.lost = self.stats.lost.saturating_add(lost);
        self.stats.laps += 1;
        self.stall_since = None;
        Polled::Lapped { lost }
    }

    fn wait_for(&mut self, deadline: Option<Instant>) -> Polled {
        const SPINS: u32 = 64;
        const SLEEP_SLICE: Duration = Duration::from_millis(1);
        let mut idle: u32 = 0;
        let mut last_liveness = Instant::now();
        loop {
            match self.poll() {
                Polled::Empty => {}
                p => return p,
            }
            idle = idle.wrapping_add(1);
            if idle < SPINS {
                crate::sync::spin_hint();
                continue;
            }
            if idle % SPINS == 0 {
                let now = Instant::now();
                if deadline.is_some_and(|d| now >= d) {
                    return Polled::Empty;
                }
                if now.duration_since(last_liveness) >= LIVENESS_PERIOD {
                    last_liveness = now;
                    if let Some(p) = self.closed_check() {
                        return p;
                    }
                }
            }
            match self.wait {
                Wait::Spin => crate::sync::spin_hint(),
                Wait::Yield => std::thread::yield_now(),
                Wait::Sleep => {
                    let slice = deadline.map_or(SLEEP_SLICE, |d| {
                        d.saturating_duration_since(Instant::now()).min(SLEEP_SLICE)
                    });
                    let (words, g, next) = (self.seg.words(), &self.geometry, self.next);
                    // Sleep unless the expected slot already moved past "being written" (a commit wakes us).
                    self.seg.sleep(slice, || {
                        ring::version(words, g, next) > ring::busy_version(next)
                    });
                    // Each sleep is one liveness tick's worth of waiting.
                    idle = idle.wrapping_add(SPINS - 1);
                }
            }
        }
    }

    /// With no producer alive: one more poll drains what a dying producer published; then, if
    /// nothing is left, the bus is closed.
    #[cold]
    fn closed_check(&mut self) -> Option<Polled> {
        if self.seg.producers_alive() {
            return None;
        }
        match self.poll() {
            Polled::Empty if ring::cursor(self.seg.words()) == self.next => Some(Polled::Closed),
            Polled::Empty => None,
            p => Some(p),
        }
    }

    #[inline]
    fn finish(&self, p: Polled) -> Recv<'_, T> {
        match p {
            Polled::Message { seq, len } => {
                match T::view(&bytemuck::cast_slice(&self.buf)[..len]) {
                    Some(value) => Recv::Message(Message { seq, value }),
                    None => Recv::Lapped { lost: 1 },
                }
            }
            Polled::Empty => Recv::Empty,
            Polled::Lapped { lost } => Recv::Lapped { lost },
            Polled::Closed => Recv::Closed,
        }
    }
}

/// Blocking iterator made by [`Subscriber::iter`].
pub struct Iter<'a, T: Payload> {
    sub: &'a mut Subscriber<T>,
}

impl<T: Payload> Iterator for Iter<'_, T> {
    type Item = Event<T::Owned>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            match self.sub.recv() {
                Recv::Message(m) => {
                    return Some(Event::Message {
                        seq: m.seq,
                        value: T::to_owned(m.value),
                    })
                }
                Recv::Lapped { lost } => return Some(Event::Lapped { lost }),
                Recv::Closed => return None,
                Recv::Empty => continue,
            }
        }
    }
}
