//! The producer table in the header and producer liveness: who holds the bus, and whether they
//! are still alive (their kernel lock is held), for publishers, subscribers and the inspector.

use crate::segment::header::{
    MAX_PRODUCERS, PE_LAST_PUBLISH, PE_PID, PE_START, PRODUCER_ENTRY_WORDS, W_PRODUCERS,
};
use crate::sync::{AtomicU64, Ordering};

use super::Segment;
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
