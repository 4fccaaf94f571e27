//! The participant table in the header and liveness: who holds a segment, and whether they are
//! still alive (their kernel lock is held), for producers, consumers and the inspector
//! (docs/design.md §5). On a mapped segment the kernel's open-file-description locks say who is
//! alive (a participant holds byte `1 + index` for its lifetime, and the kernel drops it when the
//! process dies); on a heap segment a participant is alive while it holds its table entry.

use crate::segment::header::{
    MAX_PRODUCERS, PE_LAST_PUBLISH, PE_PID, PE_START, PRODUCER_ENTRY_WORDS, W_PRODUCERS,
};
use crate::sync::{AtomicU64, Ordering};

use std::os::fd::OwnedFd;

use crate::segment::{self, LockKind, Segment};
use crate::sys;

/// The lock byte every producer holds (shared on a multi-producer bus, exclusive on a single-
/// producer one) for as long as it is attached.
const ANY_PRODUCER_BYTE: i64 = 0;

/// The lock byte producer-table entry `i` belongs to while its producer lives.
fn entry_byte(i: usize) -> i64 {
    1 + i as i64
}

impl Segment {
    /// Whether any producer holds the bus (its producer lock is held by a live process).
    pub(crate) fn producers_alive(&self) -> bool {
        match self.lock_fd() {
            Some(fd) => sys::lock_held(fd, ANY_PRODUCER_BYTE),
            None => (0..MAX_PRODUCERS).any(|i| self.producer_pid(i) != 0),
        }
    }

    /// Whether producer-table entry `i` belongs to a live producer.
    pub(crate) fn producer_alive(&self, i: usize) -> bool {
        match self.lock_fd() {
            Some(fd) => sys::lock_held(fd, entry_byte(i)),
            None => self.producer_pid(i) != 0,
        }
    }

    fn producer_word(&self, i: usize, field: usize) -> &AtomicU64 {
        &self.words()[W_PRODUCERS + i * PRODUCER_ENTRY_WORDS + field]
    }

    /// The pid recorded in producer entry `i` (0 if never used).
    pub(crate) fn producer_pid(&self, i: usize) -> u32 {
        self.producer_word(i, PE_PID).load(Ordering::Relaxed) as u32
    }

    /// `CLOCK_MONOTONIC_COARSE` in ns at producer `i`'s last publish (0: none yet).
    pub(crate) fn producer_last_publish(&self, i: usize) -> u64 {
        self.producer_word(i, PE_LAST_PUBLISH)
            .load(Ordering::Relaxed)
    }

    pub(crate) fn producer_heartbeat(&self, i: usize) -> &AtomicU64 {
        self.producer_word(i, PE_LAST_PUBLISH)
    }

    /// Registers this process in producer entry `i`.
    pub(crate) fn set_producer(&self, i: usize, pid: u32, start: u64) {
        self.producer_word(i, PE_START)
            .store(start, Ordering::Relaxed);
        self.producer_word(i, PE_PID)
            .store(pid as u64, Ordering::Relaxed);
    }

    /// Heap buses: claims a free producer entry by CAS on its pid word.
    pub(crate) fn claim_heap_entry(&self, i: usize, pid: u32) -> bool {
        // ORDERING: AcqRel pairs with the Release store in `release_heap_entry`: a new owner of
        // the entry sees everything its previous owner wrote before leaving.
        self.producer_word(i, PE_PID)
            .compare_exchange(0, pid as u64, Ordering::AcqRel, Ordering::Relaxed)
            .is_ok()
    }

    /// Heap buses: frees a producer entry.
    pub(crate) fn release_heap_entry(&self, i: usize) {
        // ORDERING: Release pairs with the AcqRel CAS in `claim_heap_entry`.
        self.producer_word(i, PE_PID).store(0, Ordering::Release);
    }
}

/// Liveness of producers, as the kernel (or a model) knows it (docs/design.md §5).
pub(crate) trait Liveness {
    /// Held while repairing a dead producer's claim; releasing it lets the entry be reused.
    type Guard;
    /// Whether producer-table entry `index` belongs to a live producer.
    fn alive(&self, index: usize) -> bool;
    /// Whether any producer is attached.
    fn any_alive(&self) -> bool;
    /// The exclusive right to repair entry `index`: `Some` only if its producer is dead and
    /// nobody else repairs or holds it. Whoever holds it is the only party that may repair that
    /// producer's claim (the kernel's lock makes one holder and orders it after the death).
    fn lock_dead(&self, index: usize) -> Option<Self::Guard>;
    /// A coarse clock (ns), read only on a reader's cold path to time a stall against the bus's
    /// stall bound (docs/design.md §6, "Stalls"); models replace it with their own clock.
    fn now_ns(&self) -> u64 {
        segment::coarse_now_ns()
    }
}

/// Liveness of the producers of a heap (in-process) bus: a producer is alive while it holds
/// its table entry, and never dies mid-write (its `Drop` runs, also when a panic unwinds), so
/// there is never a dead claim to repair.
pub(crate) struct HeapLiveness<'a> {
    pub(crate) words: &'a [AtomicU64],
}

impl Liveness for HeapLiveness<'_> {
    type Guard = std::convert::Infallible;

    fn alive(&self, index: usize) -> bool {
        self.words[W_PRODUCERS + index * PRODUCER_ENTRY_WORDS].load(Ordering::Relaxed) != 0
    }

    fn any_alive(&self) -> bool {
        (0..MAX_PRODUCERS).any(|i| self.alive(i))
    }

    fn lock_dead(&self, _index: usize) -> Option<Self::Guard> {
        None
    }
}

/// Liveness as one handle sees it. A producer passes its own file description and entry index:
/// only a producer can take a dead producer's lock and repair its claim (never its own entry,
/// whose lock its description already holds); a subscriber only asks.
pub(crate) struct SegmentLiveness<'a> {
    seg: &'a Segment,
    producer: Option<(&'a OwnedFd, usize)>,
}

impl<'a> SegmentLiveness<'a> {
    /// A subscriber's view: asks, never repairs.
    pub(crate) fn observer(seg: &'a Segment) -> Self {
        SegmentLiveness {
            seg,
            producer: None,
        }
    }

    /// Producer `index`'s view, repairing through its own description `fd` (none on a heap bus).
    pub(crate) fn producer(
        seg: &'a Segment,
        fd: Option<&'a crate::segment::LockFd>,
        index: usize,
    ) -> Self {
        SegmentLiveness {
            seg,
            producer: fd.map(|fd| (&**fd, index)),
        }
    }

    fn heap(&self) -> HeapLiveness<'a> {
        HeapLiveness {
            words: self.seg.words(),
        }
    }
}

/// A dead producer's entry lock, taken for repair; released on drop so the entry can be reused.
pub(crate) struct EntryLock<'a> {
    fd: &'a OwnedFd,
    byte: i64,
}

impl Drop for EntryLock<'_> {
    fn drop(&mut self) {
        // Failing to unlock leaves the entry unusable until this producer detaches (closing the
        // description drops every lock it holds): a lost entry, never a lost message.
        let _ = segment::unlock(self.fd, self.byte);
    }
}

impl<'a> Liveness for SegmentLiveness<'a> {
    type Guard = EntryLock<'a>;

    fn alive(&self, index: usize) -> bool {
        if self.seg.is_shared() {
            self.seg.producer_alive(index)
        } else {
            self.heap().alive(index)
        }
    }

    fn any_alive(&self) -> bool {
        if self.seg.is_shared() {
            self.seg.producers_alive()
        } else {
            self.heap().any_alive()
        }
    }

    fn lock_dead(&self, index: usize) -> Option<EntryLock<'a>> {
        let (fd, own) = self.producer?;
        if index >= MAX_PRODUCERS || index == own {
            return None;
        }
        let byte = 1 + index as i64;
        match segment::try_lock(fd, byte, LockKind::Exclusive) {
            Ok(true) => Some(EntryLock { fd, byte }),
            _ => None,
        }
    }
}

/// How an attachment holds the segment-wide participant byte (byte 0), beside its entry's.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Gate {
    /// Not at all (queue participants: liveness is per entry and role).
    None,
    /// Shared: any number of participants at once (multi-producer bus, board writers).
    Shared,
    /// Exclusive: the only producer (single-producer bus, records); whoever holds it knows every
    /// earlier producer is dead.
    Exclusive,
}

/// One participant's place in the table, for its life (docs/design.md §5): its entry's kernel
/// lock (or, on a heap segment, its entry's pid word), its pid and start time in the entry, and
/// the activity stamp. Released on drop, or earlier by [`Attachment::detach`]; the kernel drops
/// the locks of a process that dies, and a forked child gives its copy of them up.
pub(crate) struct Attachment {
    lock: Option<segment::LockFd>,
    index: usize,
    heap: Option<std::sync::Arc<Segment>>,
}

/// What a kind's attach step says of an entry it was offered (its lock held).
pub(crate) enum Offer<R> {
    /// Keep the entry; `R` is what the step learned (what it repaired).
    Take(R),
    /// Give it back and try the next one (a queue entry whose dead claim a stall repair still
    /// needs to find).
    Pass,
}

impl Attachment {
    /// Takes the `gate`, then the first entry below `entries` whose lock is free (whose holder is
    /// dead or never was) and which `offer` takes, repairing what its previous holder left;
    /// then registers this process in it. `busy` is the error when the gate is held against
    /// us; `full` when no entry is left.
    pub(crate) fn attach<R>(
        seg: &std::sync::Arc<Segment>,
        gate: Gate,
        entries: usize,
        busy: impl Fn(&Segment) -> crate::Error,
        full: impl Fn(&Segment) -> crate::Error,
        mut offer: impl FnMut(Option<&segment::LockFd>, usize) -> Offer<R>,
    ) -> crate::Result<(Attachment, R)> {
        let pid = std::process::id();
        let lock = seg.reopen_for_lock()?;
        let io = |op, e| crate::Error::Io {
            name: seg.name().to_owned(),
            op,
            source: e,
        };
        if let Some(fd) = &lock {
            let kind = match gate {
                Gate::None => None,
                Gate::Shared => Some(LockKind::Shared),
                Gate::Exclusive => Some(LockKind::Exclusive),
            };
            if let Some(kind) = kind {
                if !segment::try_lock(fd, ANY_PRODUCER_BYTE, kind)
                    .map_err(|e| io("fcntl(F_OFD_SETLK)", e))?
                {
                    return Err(busy(seg));
                }
            }
        }
        for i in 0..entries.min(MAX_PRODUCERS) {
            let taken = match &lock {
                Some(fd) => segment::try_lock(fd, entry_byte(i), LockKind::Exclusive)
                    .map_err(|e| io("fcntl(F_OFD_SETLK)", e))?,
                None => seg.claim_heap_entry(i, pid),
            };
            if !taken {
                continue;
            }
            match offer(lock.as_ref(), i) {
                Offer::Take(r) => {
                    seg.set_producer(i, pid, segment::process_start_ticks(pid).unwrap_or(0));
                    seg.producer_heartbeat(i)
                        .store(segment::coarse_now_ns(), Ordering::Relaxed);
                    let heap = lock.is_none().then(|| seg.clone());
                    return Ok((
                        Attachment {
                            lock,
                            index: i,
                            heap,
                        },
                        r,
                    ));
                }
                Offer::Pass => match &lock {
                    Some(fd) => segment::unlock(fd, entry_byte(i))
                        .map_err(|e| io("fcntl(F_OFD_SETLK, F_UNLCK)", e))?,
                    None => seg.release_heap_entry(i),
                },
            }
        }
        Err(full(seg))
    }

    /// The entry this participant holds.
    #[inline]
    pub(crate) fn index(&self) -> usize {
        self.index
    }

    /// The descriptor that carries the locks (`None` on a heap segment, or once detached).
    #[inline]
    pub(crate) fn lock(&self) -> Option<&segment::LockFd> {
        self.lock.as_ref()
    }

    /// Whether this process is a fork of the one that attached (docs/design.md §10, "Fork"):
    /// it may not act under its parent's entry.
    #[inline]
    pub(crate) fn forked(&self) -> bool {
        self.lock.as_ref().is_some_and(|l| l.forked())
    }

    /// Gives the entry up now: its locks are released (a mapped segment) or its pid word cleared
    /// (a heap one), so that sleepers woken after this see the participant gone. Idempotent.
    pub(crate) fn detach(&mut self) {
        self.lock = None;
        if let Some(seg) = self.heap.take() {
            seg.release_heap_entry(self.index);
        }
    }
}

impl std::fmt::Debug for Attachment {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Attachment")
            .field("index", &self.index)
            .field("lock", &self.lock)
            .finish()
    }
}

impl Drop for Attachment {
    fn drop(&mut self) {
        self.detach();
    }
}
