//! The consumer's state machine (docs/design.md §6): poll the expected sequence, resync after a
//! lap, skip a sequence whose claimant is dead or gave it up, and tell when the bus is closed.
//!
//! A reader keeps only its own expected sequence number; nothing about it is in the segment.

use super::{Liveness, ReadOutcome, Ring, Visit, CLAIMING, DROPPED, SEQ_LIMIT};
use crate::bus::subscriber::{LapPolicy, Start, SubscriberStats};
use crate::segment::header::MAX_PRODUCERS;
use crate::sync::{fence, Ordering};

/// An empty poll looks at the write cursor (to find a stalled sequence, a lap the slot does not
/// show yet, or a closed bus) once in this many polls: the cursor's line is written on every
/// publish, and reading it on each poll would pull it across cores on the latency-critical path.
pub(crate) const CHECK_EVERY: u32 = 1024;

/// One poll's result; borrows nothing, so loops can return it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Polled {
    /// Sequence `seq`, `len` bytes, was read whole: copied into the reader's buffer, or, for
    /// a view-receive, the closure's view of it is valid.
    Message { seq: u64, len: usize },
    /// Nothing new.
    Empty,
    /// `lost` sequence numbers were skipped.
    Lapped { lost: u64 },
    /// No producer is attached and nothing intact is left unread.
    Closed,
    /// Nothing new, and nothing claimed beyond the reader: [`Reader::poll`]'s answer at a cursor
    /// check, where it does not ask the kernel about producers (so that a spinning poll makes no
    /// system call); the caller may ask with [`Reader::poll_checked`], which can say `Closed`.
    Idle,
}

/// What to do about an expected sequence that later ones have overtaken.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Stall {
    /// Its claimant is alive and writing (or about to): wait for it.
    Wait,
    /// Nobody will ever write it (claimant dead, or gave it up): count it lost.
    Skip,
    /// Its claimant is alive but has not written it for at least the stall bound: count it
    /// lost and go on (the claimant may still publish it, for readers behind it).
    Pass,
    /// The slot changed meanwhile: read it again.
    Retry,
}

/// One subscriber's protocol state.
#[derive(Clone, Debug)]
pub(crate) struct Reader {
    /// The next sequence number this reader expects: its whole shared-nothing state.
    next: u64,
    policy: LapPolicy,
    /// `Some(n)`: only messages of exactly `n` bytes are valid (a typed bus).
    exact_len: Option<usize>,
    /// The last look found the bus closed, and nothing was read or claimed since: an empty
    /// poll says `Closed` again, not `Empty`, until a message comes or a look finds a producer
    /// (docs/design.md §6, "Closed").
    closed: bool,
    /// Empty polls so far (wrapping); paces the cursor checks of `poll`.
    empty_polls: u32,
    /// How long a live claimant may leave the expected sequence unwritten before it is passed
    /// (ns; `None`: waited for as long as it lives). docs/design.md §6, "Stalls".
    stall_bound: Option<u64>,
    /// The stalled sequence this reader is timing, and when (`Liveness::now_ns`) it first saw
    /// it stalled.
    stalled_since: Option<(u64, u64)>,
    stats: SubscriberStats,
}

impl Reader {
    /// A reader starting at `start` on `ring`.
    pub(crate) fn new(ring: &Ring<'_>, start: Start, exact_len: Option<usize>) -> Self {
        let c = ring.cursor();
        let oldest = ring.oldest_intact(c);
        #[allow(deprecated)]
        let next = match start {
            Start::Next | Start::Newest => c,
            Start::Oldest => oldest,
            Start::Last(n) => c.saturating_sub(n).max(oldest),
            // No sequence at or past the limit is ever published: wait at the limit.
            Start::Sequence(s) => s.min(SEQ_LIMIT),
        };
        Reader {
            next,
            policy: LapPolicy::default(),
            exact_len,
            closed: false,
            empty_polls: 0,
            stall_bound: None,
            stalled_since: None,
            stats: SubscriberStats::default(),
        }
    }

    pub(crate) fn set_policy(&mut self, policy: LapPolicy) {
        self.policy = policy;
    }

    /// Passes a sequence whose live claimant has not written it after `bound_ns` (`None`:
    /// waits for it as long as the claimant lives).
    pub(crate) fn set_stall_bound(&mut self, bound_ns: Option<u64>) {
        self.stall_bound = bound_ns;
    }

    pub(crate) fn next_seq(&self) -> u64 {
        self.next
    }

    /// `Some(n)`: only messages of exactly `n` bytes are delivered (a typed bus).
    pub(crate) fn exact_len(&self) -> Option<usize> {
        self.exact_len
    }

    pub(crate) fn stats(&self) -> SubscriberStats {
        self.stats
    }

    /// Whether the last look found the bus closed, with nothing read since.
    pub(crate) fn is_closed(&self) -> bool {
        self.closed
    }

    /// Polls without waiting: one version load when nothing is new, and a look at the cursor
    /// (stall, lap) once in [`CHECK_EVERY`] empty polls; asks about producers' liveness only for a
    /// stalled sequence's claimant, and answers [`Polled::Idle`] when nothing is pending.
    #[inline]
    pub(crate) fn poll<L: Liveness, V: Visit + ?Sized>(
        &mut self,
        ring: &Ring<'_>,
        live: &L,
        buf: &mut V,
    ) -> Polled {
        match self.read(ring, buf) {
            Some(p) => p,
            None => {
                self.empty_polls = self.empty_polls.wrapping_add(1);
                if self.empty_polls % CHECK_EVERY != 0 {
                    return if self.closed {
                        Polled::Closed
                    } else {
                        Polled::Empty
                    };
                }
                self.check(*ring, live, buf, false)
            }
        }
    }

    /// Polls and always looks at the cursor when nothing is new (blocking receives call this
    /// before they sleep and after they wake).
    pub(crate) fn poll_checked<L: Liveness, V: Visit + ?Sized>(
        &mut self,
        ring: &Ring<'_>,
        live: &L,
        buf: &mut V,
    ) -> Polled {
        match self.read(ring, buf) {
            Some(p) => p,
            None => self.check(*ring, live, buf, true),
        }
    }

    /// Reads the expected sequence through `buf` (a copy, or a view in place); `None` if it is
    /// not there (yet).
    #[inline]
    fn read<V: Visit + ?Sized>(&mut self, ring: &Ring<'_>, buf: &mut V) -> Option<Polled> {
        match ring.read_with(self.next, buf) {
            ReadOutcome::Message { len } if self.exact_len.unwrap_or(len) == len => {
                let seq = self.next;
                self.next = seq.wrapping_add(1);
                self.stats.received += 1;
                self.closed = false;
                Some(Polled::Message { seq, len })
            }
            // A length that cannot be this type (only a hostile writer makes one) or an
            // abandoned sequence: one sequence lost, nothing delivered.
            ReadOutcome::Message { .. } | ReadOutcome::Abandoned => Some(self.skip_one()),
            ReadOutcome::Overwritten => Some(self.resync(*ring, buf)),
            ReadOutcome::NotYet | ReadOutcome::InProgress => None,
        }
    }

    fn skip_one(&mut self) -> Polled {
        self.closed = false;
        self.next = self.next.wrapping_add(1);
        self.stats.lost = self.stats.lost.saturating_add(1);
        Polled::Lapped { lost: 1 }
    }

    /// The expected sequence is not there. Nothing new, unless later sequences were claimed:
    /// then we were lapped, or its claimant is slow, dead or gave it up. With nothing claimed
    /// beyond us and no producer attached, the bus is closed.
    #[cold]
    fn check<L: Liveness, V: Visit + ?Sized>(
        &mut self,
        ring: Ring<'_>,
        live: &L,
        buf: &mut V,
        closed_check: bool,
    ) -> Polled {
        let ahead = ring.cursor().wrapping_sub(self.next);
        // `ahead` "negative": a single producer died between publishing and moving the cursor
        // (the reader already has that message), or a forged cursor.
        if ahead == 0 || ahead > u64::MAX / 2 {
            if !closed_check {
                return Polled::Idle;
            }
            if live.any_alive() {
                self.closed = false;
                return Polled::Empty;
            }
            // No producer: whatever a dying one published is visible now (the kernel orders its
            // death before our lock query); read once more before calling it closed.
            if let Some(p) = self.read(&ring, buf) {
                return p;
            }
            let ahead = ring.cursor().wrapping_sub(self.next);
            self.closed = ahead == 0 || ahead > u64::MAX / 2;
            return if self.closed {
                Polled::Closed
            } else {
                Polled::Empty
            };
        }
        // Claimed beyond us: a producer was attached after the last look.
        self.closed = false;
        if ahead > ring.g.slot_count {
            return self.resync(ring, buf);
        }
        match self.stall(&ring, live) {
            Stall::Wait | Stall::Retry => Polled::Empty,
            Stall::Skip => self.skip_one(),
            Stall::Pass => {
                self.stats.stalls_passed += 1;
                self.skip_one()
            }
        }
    }

    /// Decides about the expected sequence `s`, claimed (the cursor is past it) but not in its
    /// slot (docs/design.md §6, "Stalls"). A live claimant is waited for, up to the stall bound
    /// from the first look that found `s` stalled, then `s` is passed; a claimant that is dead
    /// or recorded that it dropped `s` never writes it, so it is skipped at once.
    #[cold]
    fn stall<L: Liveness>(&mut self, ring: &Ring<'_>, live: &L) -> Stall {
        let s = self.next;
        let want = s.wrapping_add(1);
        let mut claimant = None;
        let mut someone_claiming = false;
        for i in 0..MAX_PRODUCERS {
            let c = ring.claim_word(i).load(Ordering::Relaxed);
            if c == CLAIMING {
                someone_claiming |= live.alive(i);
            } else if c != 0 && c & !DROPPED == want {
                claimant = Some((i, c & DROPPED != 0));
                break;
            }
        }
        let verdict = match claimant {
            Some((_, true)) => Stall::Skip,
            Some((i, false)) if live.alive(i) => Stall::Wait,
            Some((_, false)) => Stall::Skip,
            // Nobody names `s`: a live producer between its `fetch_add` and its claim store may
            // hold it; otherwise its claimant has moved on without writing it, or died before
            // naming it, or was repaired (which abandons the slot first).
            None if someone_claiming => Stall::Wait,
            None => Stall::Skip,
        };
        let verdict = match verdict {
            Stall::Wait => self.waited_long(s, live),
            v => v,
        };
        if matches!(verdict, Stall::Skip | Stall::Pass) {
            // ORDERING: pairs with the Release claim-word stores (a claimant that moved on had
            // committed `s` before its next claim store) and with the kernel ordering a death
            // before our lock query: the slot read below sees what they wrote.
            fence(Ordering::Acquire);
            if ring.version(s) & !super::ABANDONED >= super::done_version(s) {
                return Stall::Retry;
            }
        }
        verdict
    }

    /// `s` waits on a live producer: `Pass` once it has waited at least the stall bound since
    /// this reader first found it stalled, else `Wait`. The clock is read here only, on the
    /// cold path (a look at the cursor that found a stall).
    #[cold]
    fn waited_long<L: Liveness>(&mut self, s: u64, live: &L) -> Stall {
        let Some(bound) = self.stall_bound else {
            return Stall::Wait;
        };
        let now = live.now_ns();
        let since = match self.stalled_since {
            Some((seq, since)) if seq == s => since,
            _ => {
                self.stalled_since = Some((s, now));
                now
            }
        };
        if now.saturating_sub(since) >= bound {
            Stall::Pass
        } else {
            Stall::Wait
        }
    }

    /// Lapped: jump to where the policy says and count exactly what was skipped. With
    /// [`LapPolicy::Oldest`], the reader reads the oldest intact message at once, in this call;
    /// only if a producer overwrote it meanwhile (it lapped the reader while it resynced) does
    /// the reader jump to the newest instead, rather than resume at a message already gone. A
    /// reader lapped again later, on a quiet bus, resumes at the oldest intact message again
    /// and loses exactly the sequences overwritten (docs/design.md §6, "Laps").
    #[cold]
    fn resync<V: Visit + ?Sized>(&mut self, ring: Ring<'_>, buf: &mut V) -> Polled {
        let c = ring.cursor();
        let newest = || {
            // Saturating: the cursor may be read stale (even 0 on a fresh bus) by a reader that
            // saw a slot overwritten, because a writer stores the cursor after the version.
            c.saturating_sub(1).max(ring.first)
        };
        let target = match self.policy {
            LapPolicy::Newest => newest(),
            LapPolicy::Oldest => {
                let oldest = ring.oldest_intact(c);
                // The read is only a probe, a copy into scratch space (never a caller's view):
                // the message is read again, and delivered, by the next poll.
                if oldest > self.next
                    && ring.read(oldest, buf.scratch()) == ReadOutcome::Overwritten
                {
                    // Lapped while resyncing: its target is gone already. ORDERING: the cursor
                    // is re-read (Acquire, as in `Ring::cursor`) after the read that saw the
                    // target's slot overwritten; it may still be stale (a writer stores it
                    // after the version), so the newest by it can be gone too: then the next
                    // poll resyncs again, and the jump is still past `next`.
                    ring.cursor().saturating_sub(1).max(ring.first)
                } else {
                    oldest
                }
            }
        };
        // Always past `next`, so that exactly `new - next` sequences are skipped and the lost one
        // is never reread.
        let new = if target > self.next {
            target
        } else {
            self.next.wrapping_add(1)
        };
        let lost = new.wrapping_sub(self.next);
        self.next = new;
        self.closed = false;
        // Saturating: a forged cursor can make single jumps of nearly 2^64.
        self.stats.lost = self.stats.lost.saturating_add(lost);
        self.stats.laps += 1;
        Polled::Lapped { lost }
    }
}
