//! The consumer's state machine (docs/design.md §15): read the record at its position, follow
//! padding, detect laps with the producer's intent, resync to the oldest (or newest) intact
//! record and count the loss from sequence numbers, and tell when the segment is closed.
//!
//! A reader keeps only its position and the sequence it expects there, in its own process.

use super::layout::RingShape;
use super::{RecordRing, State};
use crate::bus::ring::Liveness;
use crate::bus::{LapPolicy, Start, SubscriberStats};
use crate::sync::{fence, load_acquire, AtomicU64, Ordering};

/// `Reader::closed_at` when the last look did not find the segment closed (no sequence is
/// ever this large: §15's limits).
const NOT_CLOSED: u64 = u64::MAX;

/// An empty poll looks at the intent, the cursor and the producers once in this many polls
/// (an empty poll is one load of a version word; the intent is only needed to validate a copy
/// or to tell a lap the version word did not show).
pub(crate) const CHECK_EVERY: u32 = 1024;

/// Records a poll steps over without delivering (before the start, or padding) before it
/// returns, so that one poll's work is bounded.
const STEPS_PER_POLL: u32 = 64;

/// One poll's result; borrows nothing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Polled {
    /// Record `seq` of `len` bytes and type `type_id` is in the reader's buffer.
    Record { seq: u64, len: usize, type_id: u32 },
    /// Nothing new.
    Empty,
    /// `lost` records were skipped (overwritten before being read, or abandoned).
    Lapped { lost: u64 },
    /// No producer is attached and nothing is left to read.
    Closed,
}

/// What reading the record at the reader's position found.
enum Step {
    Deliver(Polled),
    /// A record before the start, or padding: look again at the new position.
    Again,
    /// Nothing there yet.
    Nothing,
    /// The ring moved past the position (or the words there are not a record): resync.
    Lapped,
}

/// What a resync did.
enum Resync {
    /// Skipped this many records.
    Lost(u64),
    /// Moved on without losing a record.
    Moved,
    /// Found no position ahead: try again later.
    Stuck,
}

/// One subscriber's protocol state.
#[derive(Clone, Debug)]
pub(crate) struct Reader {
    /// Where the next record starts (or padding before it).
    pos: u64,
    /// The sequence number expected at `pos`.
    next: u64,
    /// Records below this sequence were published before the subscriber's start: passed over,
    /// neither delivered nor counted.
    start: u64,
    /// A loss to report on the next poll (a start before the oldest intact record).
    pending_lost: u64,
    policy: LapPolicy,
    /// Where the last resync jumped to, while nothing was received since (progress guard).
    resynced_to: Option<u64>,
    empty_polls: u32,
    /// The sequence expected when the last look found no producer and nothing to read
    /// ([`NOT_CLOSED`] otherwise): while nothing was read since (the expected sequence is still
    /// this one), an empty poll says `Closed` again, not `Empty`, until a record comes or a look
    /// finds a producer (docs/design.md §15). Keyed on the sequence so that a delivery needs no
    /// store to end it.
    closed_at: u64,
    stats: SubscriberStats,
}

impl Reader {
    /// A reader starting at `start`.
    pub(crate) fn new(ring: &RecordRing<'_>, start: Start) -> Self {
        // Fallback for a ring whose words keep changing or are inconsistent: the raw tail and
        // cursor (a corrupt segment only; the reader then resyncs or waits).
        let at_tail = || {
            ring.locate_next()
                .unwrap_or_else(|| (ring.tail() & !7, ring.cursor()))
        };
        let oldest = || ring.locate_oldest().unwrap_or_else(at_tail);
        #[allow(deprecated)]
        let ((pos, next), from, pending_lost) = match start {
            Start::Next | Start::Newest => {
                let (p, s) = at_tail();
                ((p, s), s, 0)
            }
            Start::Oldest => {
                let (p, s) = oldest();
                ((p, s), s, 0)
            }
            Start::Last(n) => {
                let (p, s) = oldest();
                ((p, s), ring.cursor().saturating_sub(n).max(s), 0)
            }
            Start::Sequence(want) => {
                let (p, s) = oldest();
                if want < s {
                    ((p, s), s, s - want)
                } else {
                    ((p, s), want, 0)
                }
            }
        };
        Reader {
            pos,
            next,
            start: from,
            pending_lost,
            policy: LapPolicy::default(),
            resynced_to: None,
            empty_polls: 0,
            closed_at: NOT_CLOSED,
            stats: SubscriberStats::default(),
        }
    }

    pub(crate) fn set_policy(&mut self, policy: LapPolicy) {
        self.policy = policy;
    }

    pub(crate) fn next_seq(&self) -> u64 {
        self.next.max(self.start)
    }

    pub(crate) fn stats(&self) -> SubscriberStats {
        self.stats
    }

    /// Whether the word at the reader's position says more than "nothing yet" (the sleeper's
    /// last look before it sleeps).
    pub(crate) fn ready(&self, ring: &RecordRing<'_>) -> bool {
        // ORDERING: as the first load in `step`; with the wake handshake (docs/design.md §7)
        // either this sees the producer's commit or the producer sees the waiter flag.
        !matches!(State::of(load_acquire(ring.at(self.pos))),
            State::Free(s) | State::Busy(s) if s == self.next)
    }

    /// Polls without waiting: one version load when nothing is new, and a look at the intent,
    /// the cursor and the producers once in [`CHECK_EVERY`] empty polls.
    #[inline]
    pub(crate) fn poll<L: Liveness>(
        &mut self,
        ring: &RecordRing<'_>,
        live: &L,
        buf: &mut [u64],
    ) -> Polled {
        match self.advance(ring, buf) {
            Some(p) => p,
            None => {
                self.empty_polls = self.empty_polls.wrapping_add(1);
                if self.empty_polls % CHECK_EVERY != 0 {
                    return if self.closed_at == self.next {
                        Polled::Closed
                    } else {
                        Polled::Empty
                    };
                }
                self.check(ring, live, buf)
            }
        }
    }

    /// Polls and always looks at the intent, the cursor and the producers when nothing is new
    /// (blocking receives call this before they sleep and after they wake).
    pub(crate) fn poll_checked<L: Liveness>(
        &mut self,
        ring: &RecordRing<'_>,
        live: &L,
        buf: &mut [u64],
    ) -> Polled {
        match self.advance(ring, buf) {
            Some(p) => p,
            None => self.check(ring, live, buf),
        }
    }

    /// Reads on from the position, a bounded number of steps; `None` if nothing is there yet.
    #[inline]
    fn advance(&mut self, ring: &RecordRing<'_>, buf: &mut [u64]) -> Option<Polled> {
        if self.pending_lost > 0 {
            let lost = std::mem::take(&mut self.pending_lost);
            self.stats.lost = self.stats.lost.saturating_add(lost);
            self.stats.laps += 1;
            return Some(Polled::Lapped { lost });
        }
        for _ in 0..STEPS_PER_POLL {
            match self.step(ring, buf) {
                Step::Deliver(p) => return Some(p),
                Step::Again => continue,
                Step::Nothing => return None,
                Step::Lapped => match self.resync(ring) {
                    Resync::Lost(lost) => return Some(Polled::Lapped { lost }),
                    Resync::Moved => continue,
                    Resync::Stuck => return Some(Polled::Empty),
                },
            }
        }
        // Still passing over records published before the start: more on the next poll.
        Some(Polled::Empty)
    }

    /// Reads the record at the position (docs/design.md §15, "Reading").
    #[inline]
    fn step(&mut self, ring: &RecordRing<'_>, buf: &mut [u64]) -> Step {
        let shape = ring.shape();
        let here = ring.at(self.pos);
        // ORDERING: Acquire pairs with the producer's Release store of the version in
        // `Writer::finish` (and of the padding word in `Writer::begin`): the length, payload and
        // terminator stored before it are visible.
        let v1 = load_acquire(here);
        let state = State::of(v1);
        match state {
            State::Free(s) | State::Busy(s) if s == self.next => {
                // Not written yet, or overwritten by a later lap whose bytes read as this state
                // (a record's length word `8 * next` reads as `Free(next)`): only the intent
                // tells them apart. Its line changes once per slack bytes, and the Acquire load
                // above orders this load after it (docs/design.md §15, "Reading").
                return if ring.intact(self.pos, ring.intent()) {
                    Step::Nothing
                } else {
                    Step::Lapped
                };
            }
            State::Done(s) | State::Abandoned(s) if s == self.next => {}
            State::Pad(s) if s == self.next => {
                // ORDERING: as below: the padding word must belong to this lap.
                fence(Ordering::Acquire);
                if !ring.intact(self.pos, ring.intent()) {
                    return Step::Lapped;
                }
                self.pos = shape.next_lap(self.pos);
                return Step::Again;
            }
            // Not a state this position can hold in its lap: overwritten by a later lap (or a
            // corrupt segment). Resync either way.
            _ => return Step::Lapped,
        }
        // The length is read once and checked before use: a forged one cannot make the copy
        // leave the record's room before the ring's end.
        let w1 = ring.at(self.pos.wrapping_add(8)).load(Ordering::Relaxed);
        let (len, type_id) = ((w1 as u32) as usize, (w1 >> 32) as u32);
        let size = RingShape::record_size(len);
        let fits = len <= shape.max_payload && size <= shape.room(self.pos);
        if fits && matches!(state, State::Done(_)) {
            let n = len.div_ceil(8);
            copy_out(ring.span(self.pos.wrapping_add(16), n), &mut buf[..n]);
        }
        // ORDERING: pairs with the producer's fence(Release) after its intent store in
        // `Writer::begin`: if the copy saw any store of a later write, the intent load below sees
        // that write's intent (or a later one). Only the intent proves the copy whole: the
        // version may have been overwritten by a later record's bytes that happen to equal `v1`
        // (docs/design.md §15); comparing it is a cheap early refusal, on a line already here.
        fence(Ordering::Acquire);
        let v2 = here.load(Ordering::Relaxed);
        if v2 != v1 || !ring.intact(self.pos, ring.intent()) || !fits {
            return Step::Lapped;
        }
        let seq = self.next;
        // Wrapping: the position and sequence may come from forged words.
        self.pos = self.pos.wrapping_add(size);
        self.next = seq.wrapping_add(1);
        if seq < self.start {
            return Step::Again;
        }
        self.resynced_to = None;
        if matches!(state, State::Abandoned(_)) {
            self.stats.lost = self.stats.lost.saturating_add(1);
            return Step::Deliver(Polled::Lapped { lost: 1 });
        }
        self.stats.received += 1;
        Step::Deliver(Polled::Record { seq, len, type_id })
    }

    /// Nothing at the position. Lapped if the intent has passed it; closed if no producer is
    /// attached and a last read finds nothing.
    #[cold]
    fn check<L: Liveness>(&mut self, ring: &RecordRing<'_>, live: &L, buf: &mut [u64]) -> Polled {
        // ORDERING: pairs with the producer's fence(Release) after its intent store: the
        // intent is at least the one of the lap whose words we found.
        fence(Ordering::Acquire);
        if !ring.intact(self.pos, ring.intent()) {
            return match self.resync(ring) {
                Resync::Lost(lost) => Polled::Lapped { lost },
                Resync::Moved => self.advance(ring, buf).unwrap_or(Polled::Empty),
                Resync::Stuck => Polled::Empty,
            };
        }
        if live.any_alive() {
            self.closed_at = NOT_CLOSED;
            return Polled::Empty;
        }
        // No producer: whatever a dying one committed is visible now (the kernel orders its
        // death before our lock query); read once more before calling it closed.
        match self.advance(ring, buf) {
            Some(p) => p,
            None => {
                self.closed_at = self.next;
                Polled::Closed
            }
        }
    }

    /// Lapped: jump to the oldest intact record (or the newest, by policy or when lapped again
    /// before reading the previous target) and count exactly the records skipped, from the
    /// sequence numbers. Only padding may have been overwritten (the record after it is intact):
    /// then the reader moves on without a loss. A target that is not ahead (a stale head, or a
    /// corrupt segment) is not taken: the next poll tries again.
    #[cold]
    fn resync(&mut self, ring: &RecordRing<'_>) -> Resync {
        let lapped_again = self.resynced_to == Some(self.next);
        let target = if self.policy == LapPolicy::Newest || lapped_again {
            ring.locate_newest()
        } else {
            ring.locate_oldest()
        };
        let ahead =
            |&(pos, seq): &(u64, u64)| seq > self.next || (seq == self.next && pos > self.pos);
        let Some((pos, seq)) = target.filter(ahead) else {
            return Resync::Stuck;
        };
        let lost = seq - self.next.max(self.start).min(seq);
        self.pos = pos;
        self.next = seq;
        self.resynced_to = Some(seq);
        if lost == 0 {
            // Only padding, or records before the start, were overwritten.
            return Resync::Moved;
        }
        self.stats.lost = self.stats.lost.saturating_add(lost);
        self.stats.laps += 1;
        Resync::Lost(lost)
    }
}

/// Copies `src` into `dst` (as many words as both hold) with one Relaxed atomic load per word:
/// the ring's words race with the producer, so they are never read as plain memory (no
/// `&[u8]` into the ring, no `copy_nonoverlapping` from it; docs/design.md §15). Unrolled by
/// four over slices whose bounds are checked once, so that each word costs a load and a store
/// (plain 8-byte moves on x86-64 and aarch64), not an index computation and a bounds check.
#[inline]
pub(crate) fn copy_out(src: &[AtomicU64], dst: &mut [u64]) {
    let n = src.len().min(dst.len());
    let (src, dst) = (&src[..n], &mut dst[..n]);
    let mut s4 = src.chunks_exact(4);
    let mut d4 = dst.chunks_exact_mut(4);
    for (s, d) in (&mut s4).zip(&mut d4) {
        d[0] = s[0].load(Ordering::Relaxed);
        d[1] = s[1].load(Ordering::Relaxed);
        d[2] = s[2].load(Ordering::Relaxed);
        d[3] = s[3].load(Ordering::Relaxed);
    }
    for (s, d) in s4.remainder().iter().zip(d4.into_remainder()) {
        *d = s.load(Ordering::Relaxed);
    }
}
