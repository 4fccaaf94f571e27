//! Producer liveness of a real segment, for the ring protocol (docs/design.md §5): on a mapped
//! segment the kernel's open-file-description locks say who is alive (a producer holds byte
//! `1 + index` for its lifetime, and the kernel drops it when the process dies); on a heap bus a
//! producer is alive while it holds its table entry.

use std::os::fd::OwnedFd;

use crate::bus::ring::{HeapLiveness, Liveness, Ring};
use crate::segment::header::MAX_PRODUCERS;
use crate::segment::{self, LockKind, Segment};

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
            ring: ring(self.seg),
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

/// The ring view of a segment, with the shape validated when it was created or opened.
pub(crate) fn ring(seg: &Segment) -> Ring<'_> {
    Ring::new(seg.words(), seg.geometry, seg.first_seq)
}
