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
