//! One attached sender or receiver (its table entry, lock and waking), and how a blocking call waits.
use std::sync::Arc;

use crate::error::{Error, Result};

use crate::segment::header::{MAX_PRODUCERS, PRODUCER_ENTRY_WORDS, W_PRODUCERS};

use super::layout::{
    PE_ROLE, W_Q_HEAD_STALL, W_Q_SPACE_WAITERS, W_Q_SPACE_WAKE, W_Q_STALL_BOUND, W_Q_TAIL_STALL,
};
use crate::segment::producers::{Attachment, Gate, Offer, SegmentLiveness};
use crate::segment::Segment;
use crate::sync::{AtomicU64, Ordering};
use crate::wait::{self, SysFutex, WakeWords};

use super::protocol::{self, QueueRing, Repair};

/// Failed attempts at the same position before a handle asks whether the participant holding
/// it is alive (a system call per suspect): a live one is just writing or reading.
pub(super) const STALL_POLLS: u32 = 256;

/// The role a participant-table entry records (the inspector shows it).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Role {
    /// A [`QueueSender`](crate::QueueSender).
    Sender,
    /// A [`QueueReceiver`](crate::QueueReceiver).
    Receiver,
}

impl Role {
    pub(super) fn to_word(self) -> u64 {
        match self {
            Role::Sender => 1,
            Role::Receiver => 2,
        }
    }

    pub(super) fn from_word(w: u64) -> Option<Role> {
        match w {
            1 => Some(Role::Sender),
            2 => Some(Role::Receiver),
            _ => None,
        }
    }
}

pub(super) fn role_word(seg: &Segment, i: usize) -> &crate::sync::AtomicU64 {
    &seg.words()[W_PRODUCERS + i * PRODUCER_ENTRY_WORDS + PE_ROLE]
}

/// Whether a live sender is attached to the queue in `seg` (docs/design.md §11, "Closed"): an
/// entry whose role word says sender and whose kernel lock is held. Up to 32 lock questions:
/// asked only when the queue is empty, every few milliseconds at most.
pub(crate) fn senders_alive(seg: &Segment) -> bool {
    (0..MAX_PRODUCERS).any(|i| {
        Role::from_word(role_word(seg, i).load(Ordering::Relaxed)) == Some(Role::Sender)
            && seg.producer_alive(i)
    })
}

/// Whether the queue in `seg` is closed: no sender attached, and (looked at after that) no item
/// left, nor a position a sender claimed and has not published or had skipped.
pub(super) fn closed(seg: &Segment) -> bool {
    !senders_alive(seg) && QueueRing::new(seg.words(), seg.geometry).len() == 0
}

/// One attached sender or receiver: its table entry, the lock that holds it, and the waking.
pub(super) struct Participant {
    pub(super) seg: Arc<Segment>,
    pub(super) index: usize,
    /// The entry (its lock, byte `1 + index`) until drop, or until the kernel drops it when
    /// the process dies.
    pub(super) att: Attachment,
    pub(super) futex: SysFutex,
    /// This process could not register for the sleepers' barrier: wake with a real fence.
    pub(super) strong_fence: bool,
    /// What attaching repaired of the entry's previous (dead) owner.
    pub(super) repaired: Repair,
    /// The queue's stall bound in ns (`None`: wait as long as a holder lives).
    pub(super) stall_bound_ns: Option<u64>,
}

impl Participant {
    pub(super) fn attach(seg: Arc<Segment>, role: Role) -> Result<Participant> {
        crate::segment::kind::writable(&seg)?;
        let full = |seg: &Segment| Error::TooManyParticipants {
            name: seg.name().to_owned(),
            max: MAX_PRODUCERS,
        };
        let (att, repaired) =
            Attachment::attach(&seg, Gate::None, MAX_PRODUCERS, full, full, |lock, i| {
                // The entry's previous holder is dead (we hold its lock): repair its claim before
                // our own claims overwrite it (docs/design.md §11, "Claims and repair").
                let live = SegmentLiveness::producer(&seg, lock, i);
                match protocol::repair_entry(&QueueRing::new(seg.words(), seg.geometry), &live, i) {
                    // A live participant names the dead one's position too: its claim word must keep
                    // naming the position until a stall repair finds it. Let the entry go (a stall
                    // repair takes its lock) and use another.
                    Repair::Pending => Offer::Pass,
                    repaired => Offer::Take(repaired),
                }
            })?;
        let index = att.index();
        role_word(&seg, index).store(role.to_word(), Ordering::Relaxed);
        let part = Participant {
            futex: SysFutex::of(&seg),
            strong_fence: wait::producer_fences(&seg),
            stall_bound_ns: stall_bound_ns(&seg),
            seg,
            index,
            att,
            repaired,
        };
        part.wake_for(repaired);
        Ok(part)
    }

    #[inline]
    pub(super) fn ring(&self) -> QueueRing<'_> {
        QueueRing::new(self.seg.words(), self.seg.geometry)
    }

    /// Whether this is a forked child of the process that attached (docs/design.md §10,
    /// "Fork"): it may not claim under its parent's entry.
    #[inline]
    pub(super) fn forked(&self) -> bool {
        self.att.forked()
    }

    pub(super) fn live(&self) -> SegmentLiveness<'_> {
        SegmentLiveness::producer(&self.seg, self.att.lock(), self.index)
    }

    /// The shared clock of stalls at the head (receivers) or the tail (senders).
    pub(super) fn stall_clock(&self, head: bool) -> StallClock<'_> {
        let w = if head { W_Q_HEAD_STALL } else { W_Q_TAIL_STALL };
        let words = self.seg.words();
        StallClock {
            pos: &words[w],
            at: &words[w + 1],
        }
    }

    /// The words sleeping receivers wait on (an item was published).
    #[inline]
    pub(super) fn item_words(&self) -> WakeWords<'_> {
        self.seg.wake_words()
    }

    /// The words sleeping senders wait on (a slot was freed).
    #[inline]
    pub(super) fn space_words(&self) -> WakeWords<'_> {
        self.seg.wake_words_at(W_Q_SPACE_WAKE, W_Q_SPACE_WAITERS)
    }

    /// After a repair, wakes the side it unblocked.
    pub(super) fn wake_for(&self, r: Repair) {
        match r {
            Repair::None | Repair::Pending | Repair::Held => {}
            Repair::Skipped => wait::wake_sleepers(self.item_words(), &self.futex),
            Repair::Dead => {
                wait::wake_sleepers(self.item_words(), &self.futex);
                wait::wake_sleepers(self.space_words(), &self.futex);
            }
            Repair::Lost | Repair::Freed => wait::wake_sleepers(self.space_words(), &self.futex),
        }
    }
}

/// How a blocking receive ended.
pub(super) enum Waited {
    /// An item of this length is in the receiver's buffer.
    Item(usize),
    /// The deadline passed.
    TimedOut,
    /// No sender is attached and the queue is empty.
    Closed,
}

/// Consecutive failed attempts at one position, and since when a live participant holds it.
#[derive(Clone, Copy, Debug, Default)]
pub(super) struct Stuck {
    pub(super) pos: u64,
    pub(super) polls: u32,
    /// When a stall repair first found `pos` held by a live participant (the liveness clock,
    /// ns); 0: it has not.
    pub(super) since_ns: u64,
}

impl Stuck {
    /// Notes a failed attempt at `pos`; true when it is time to look for a dead holder.
    #[inline]
    pub(super) fn note(&mut self, pos: u64) -> bool {
        self.at(pos);
        self.polls += 1;
        if self.polls >= STALL_POLLS {
            self.polls = 0;
            return true;
        }
        false
    }

    /// Starts over if `pos` is another position than the one noted.
    #[inline]
    pub(super) fn at(&mut self, pos: u64) {
        if self.pos != pos {
            *self = Stuck {
                pos,
                ..Stuck::default()
            };
        }
    }

    /// A stall repair found `pos` (noted with `at`) held by a live participant, at `now_ns`:
    /// whether it has been held for `bound_ns` since the first such look, this participant's
    /// or (through `clock`) any other's of its role. Never with no bound.
    pub(super) fn held_past(
        &mut self,
        now_ns: u64,
        bound_ns: Option<u64>,
        clock: StallClock<'_>,
    ) -> bool {
        let Some(bound) = bound_ns else {
            return false;
        };
        if self.since_ns == 0 {
            self.since_ns = clock.since(self.pos, now_ns).max(1);
        }
        now_ns.saturating_sub(self.since_ns) >= bound
    }

    /// The position is no longer held (or was passed): the next hold is timed afresh.
    pub(super) fn released(&mut self) {
        self.since_ns = 0;
    }
}

/// The shared clock of the stall at the head (or the tail): two header words, the position
/// plus one and the time the first participant to look found it held (docs/design.md §11,
/// "Stalls"). Written only on the stall path. Racing writers can leave a time a little later
/// than the first look, which only delays a pass; a pass is never unsafe, only early or late.
#[derive(Clone, Copy)]
pub(super) struct StallClock<'a> {
    pub(super) pos: &'a AtomicU64,
    pub(super) at: &'a AtomicU64,
}

impl StallClock<'_> {
    /// When the stall at `pos` was first seen: the shared time if the clock names `pos`, else
    /// `now_ns`, recorded for the others.
    fn since(&self, pos: u64, now_ns: u64) -> u64 {
        // ORDERING: Acquire pairs with the Release CAS below: the time stored before it is
        // seen with the position.
        let named = self.pos.load(Ordering::Acquire);
        if named == pos + 1 {
            let at = self.at.load(Ordering::Relaxed);
            if at != 0 && at <= now_ns {
                return at;
            }
        }
        self.at.store(now_ns, Ordering::Relaxed);
        // ORDERING: Release pairs with the Acquire load above in other participants.
        let _ = self
            .pos
            .compare_exchange(named, pos + 1, Ordering::Release, Ordering::Relaxed);
        now_ns
    }
}

/// The stall bound (ns) a queue's header records, `None` for none (a queue created without a
/// bound, or before bounds existed).
pub(super) fn stall_bound_ns(seg: &Segment) -> Option<u64> {
    // Written before the magic's Release, which the open pipeline's Acquire load pairs with;
    // never written again. Any value a hostile writer stores only makes participants pass
    // stalls sooner or later, which that writer could cause anyway by not writing.
    let ns = seg.words()[W_Q_STALL_BOUND].load(Ordering::Relaxed);
    (ns != 0).then_some(ns)
}

/// `Debug` of a sender or receiver: its queue, entry and counters.
macro_rules! participant_debug {
    ($handle:ident) => {
        impl<T: Payload> std::fmt::Debug for $handle<T> {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.debug_struct(stringify!($handle))
                    .field("queue", &self.part.seg.name())
                    .field("index", &self.part.index)
                    .field("stats", &self.stats)
                    .finish()
            }
        }
    };
}
pub(super) use participant_debug;

/// The counters and the entry of a sender or receiver.
macro_rules! stats_and_index {
    ($stats:ty) => {
        /// Counters so far.
        pub fn stats(&self) -> $stats {
            self.stats
        }

        /// The participant-table entry this handle holds.
        pub fn index(&self) -> u32 {
            self.part.index as u32
        }
    };
}
pub(super) use stats_and_index;

/// The queue's shape and fill as a sender or receiver sees them (snapshots).
macro_rules! snapshots {
    () => {
        /// How many items the queue holds.
        pub fn capacity(&self) -> u64 {
            self.part.seg.geometry.slot_count
        }

        /// Items in the queue (a snapshot).
        pub fn len(&self) -> u64 {
            self.part.ring().len()
        }

        /// Whether the queue holds no item (a snapshot).
        pub fn is_empty(&self) -> bool {
            self.len() == 0
        }

        /// Whether the queue is full (a snapshot).
        pub fn is_full(&self) -> bool {
            self.len() >= self.capacity()
        }
    };
}
pub(super) use snapshots;
