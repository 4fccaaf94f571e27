//! Where a lanes segment keeps its lanes (docs/design.md §17). The header page is the shared one
//! (`crate::segment::header`); a lanes segment describes everything after it with the shared
//! geometry words as one slot, and keeps its lane count and lane size in words of its own:
//!
//! ```text
//!  byte  word  header fields as a lanes segment reads them
//!  ----  ----  ------------------------------------------------------------------------------
//!    16     2  slot count: always 1
//!    24     3  slot stride: every byte after the header page (control blocks and rings)
//!    32     4  capacity: the largest record payload, lane bytes - 16
//!  1088   136  wake word (futex): bumped when a producer raises a lane's ready bit while the
//!  1096   137  waiter flag         consumer may sleep (docs/design.md §7)
//!  1152   144  lane count L (1..=4096)
//!  1160   145  lane bytes B (a power of two, a multiple of the page size)
//!  1280   160  ready bitmap: bit i of word 160 + i/64 set while lane i may hold unread
//!              records or a close the consumer has not seen (L/64 words, up to 223)
//!  2048   256  participant table: entry 0 is the consumer's
//!  4096   512  lane control blocks, 192 bytes each, three cache lines:
//!                +0 write position   +8 drops   +16 records published   (the producer's, on
//!                                                                        every publish)
//!               +64 state           +72 producer pid (lo32)   +80 producer start time
//!                                                           (written at acquire and close)
//!              +128 read position   +136 records consumed   (the consumer's, on every ack)
//!              +144 room wake word (futex)   +152 room waiter flag   (a producer waiting for
//!                                                                     room raises the flag)
//!  4096 + C    the rings: lane i's B bytes at 4096 + C + i * B, C = L * 192 rounded up to
//!              whole pages
//!
//!  record at position p (8-aligned): +0 header: length in bytes (lo32) | 1 (hi32), +8
//!  payload, rounded up to whole words; the word after the last record is 0 (where the next
//!  header will be). Lane i's byte at position p lives at ring byte p mod B; every process
//!  maps each ring twice, back to back, so a record that crosses the ring's end is one slice.
//! ```
//!
//! Positions are byte counts since the lane was first used and never wrap in practice (2^64
//! bytes). Everything here is read by a consumer of untrusted memory: every position is checked
//! against the lane size and every length against the bytes the producer published before it
//! indexes anything.

use crate::error::{Error, Result};
use crate::segment::header::{Geometry, HEADER_BYTES, MAX_SEGMENT_BYTES};

/// Most lanes a segment may have.
pub const MAX_LANES: u32 = 4096;
/// Smallest lane (one page).
pub const MIN_LANE_BYTES: u64 = 4096;
/// Largest lane (1 GiB; a record length must fit 32 bits).
pub const MAX_LANE_BYTES: u64 = 1 << 30;
/// Bytes of record header before the payload (the length word, with its commit bit).
pub const LANE_RECORD_HEADER: usize = 8;
/// A published record's header: its length, and this bit above it. A zero header is where the
/// next record will be; anything else is not a lane's (docs/design.md §17).
pub(crate) const HEAD_COMMIT: u64 = 1 << 32;

pub(crate) const W_LANE_COUNT: usize = 144;
pub(crate) const W_LANE_BYTES: usize = 145;
/// First word of the ready bitmap.
pub(crate) const W_READY: usize = 160;
/// First word of the control blocks.
pub(crate) const W_CONTROL: usize = HEADER_BYTES / 8;
/// Words per control block (three cache lines).
pub(crate) const BLOCK_WORDS: usize = 24;

// The producer's line of a control block, stored on every publish: the consumer reads none of
// it while it waits for a record.
pub(crate) const L_WRITE: usize = 0;
pub(crate) const L_DROPS: usize = 1;
pub(crate) const L_PUBLISHED: usize = 2;
// The lane's state and owner, stored at acquire and close: the consumer loads the state on each
// empty poll, so it must not share a line with what the producer stores on every publish.
pub(crate) const L_STATE: usize = 8;
pub(crate) const L_PID: usize = 9;
pub(crate) const L_START: usize = 10;
// The consumer's line.
pub(crate) const L_READ: usize = 16;
pub(crate) const L_CONSUMED: usize = 17;
// A producer waiting for room (`LanePublisher::publish_wait`) sleeps on the wake word (its low
// half a futex) after raising the flag; the consumer, after each acknowledgement, loads the
// flag (the line is its own) and wakes it (docs/design.md §17, "Waiting for room").
pub(crate) const L_ROOM_WAKE: usize = 18;
pub(crate) const L_ROOM_WAITERS: usize = 19;

/// Lane states (the state word's low byte; the bytes above count the lane's sessions).
pub(crate) const FREE: u64 = 0;
/// A producer holds the lane.
pub(crate) const OPEN: u64 = 1;
/// The producer closed or released the lane; the consumer drains it, then frees it.
pub(crate) const CLOSED: u64 = 2;
/// Closed on behalf of a producer that died (the consumer's sweep), beside `CLOSED`.
pub(crate) const DIED: u64 = 4;
pub(crate) const STATE_MASK: u64 = 0xff;
/// One session in the state word's count.
pub(crate) const SESSION: u64 = 0x100;

/// The lock byte lane `i`'s producer holds while it lives (beyond the participant table's).
pub(crate) fn lane_lock_byte(i: u32) -> i64 {
    (1 << 20) + i as i64
}

/// The shape of a lanes segment, read once from a validated header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct LanesShape {
    pub lanes: u32,
    pub lane_bytes: u64,
    /// Bytes of control blocks, rounded up to whole pages.
    pub control_bytes: u64,
}

impl LanesShape {
    /// The shape of `lanes` lanes of `lane_bytes` bytes, unchecked (loom models use tiny lanes).
    pub(crate) fn of(lanes: u32, lane_bytes: u64) -> Self {
        let control_bytes = (lanes as u64 * BLOCK_WORDS as u64 * 8).next_multiple_of(4096);
        LanesShape {
            lanes,
            lane_bytes,
            control_bytes,
        }
    }

    /// Checks a user's lane count and size.
    pub(crate) fn new(lanes: u32, lane_bytes: u64) -> Result<Self> {
        if !(1..=MAX_LANES).contains(&lanes) {
            return Err(Error::InvalidConfig(format!(
                "a lanes segment has 1 to {MAX_LANES} lanes, got {lanes}"
            )));
        }
        let page = crate::sys::page_size();
        if !(MIN_LANE_BYTES..=MAX_LANE_BYTES).contains(&lane_bytes)
            || !lane_bytes.is_power_of_two()
            || lane_bytes % page != 0
        {
            return Err(Error::InvalidConfig(format!(
                "a lane is a power of two from {MIN_LANE_BYTES} to {MAX_LANE_BYTES} bytes and a \
                 multiple of the page size ({page} bytes here), got {lane_bytes}"
            )));
        }
        let shape = LanesShape::of(lanes, lane_bytes);
        if shape.segment_bytes() > MAX_SEGMENT_BYTES {
            return Err(Error::InvalidConfig(format!(
                "{lanes} lanes of {lane_bytes} bytes exceed the {MAX_SEGMENT_BYTES}-byte segment limit"
            )));
        }
        Ok(shape)
    }

    /// The largest record payload ([`max_record`]).
    pub(crate) fn max_record(&self) -> usize {
        max_record(self.lane_bytes)
    }

    /// Byte offset of the rings in the segment (a whole number of pages).
    pub(crate) fn rings_offset(&self) -> u64 {
        HEADER_BYTES as u64 + self.control_bytes
    }

    pub(crate) fn segment_bytes(&self) -> u64 {
        self.rings_offset() + self.lanes as u64 * self.lane_bytes
    }

    /// Words of the ready bitmap.
    pub(crate) fn ready_words(&self) -> usize {
        (self.lanes as usize).div_ceil(64)
    }

    /// The shared geometry words that describe the segment (one slot: everything after the
    /// header page).
    pub(crate) fn geometry(&self) -> Geometry {
        Geometry {
            slot_count: 1,
            stride_words: ((self.segment_bytes() - HEADER_BYTES as u64) / 8) as usize,
            capacity: self.max_record(),
        }
    }

    /// The shape a validated geometry and the lane words describe, if it is one a lanes
    /// segment can have, mirrored with this host's page size.
    pub(crate) fn from_words(
        name: &str,
        g: &Geometry,
        lanes: u64,
        lane_bytes: u64,
    ) -> Result<Self> {
        let bad = |why: String| Error::LanesCorrupt {
            name: name.to_owned(),
            detail: why,
        };
        let lanes = u32::try_from(lanes)
            .ok()
            .filter(|l| (1..=MAX_LANES).contains(l))
            .ok_or_else(|| bad(format!("lane count {lanes} is not 1 to {MAX_LANES}")))?;
        if !(MIN_LANE_BYTES..=MAX_LANE_BYTES).contains(&lane_bytes) || !lane_bytes.is_power_of_two()
        {
            return Err(bad(format!(
                "lane size {lane_bytes} is not a power of two from {MIN_LANE_BYTES} to {MAX_LANE_BYTES}"
            )));
        }
        let shape = LanesShape::of(lanes, lane_bytes);
        if g.slot_count != 1 || *g != shape.geometry() {
            return Err(bad(format!(
                "its geometry ({} slot(s) of {} bytes, capacity {}) is not that of {lanes} lanes of {lane_bytes} bytes",
                g.slot_count,
                g.stride_bytes(),
                g.capacity
            )));
        }
        let page = crate::sys::page_size();
        if lane_bytes % page != 0 || shape.rings_offset() % page != 0 {
            return Err(Error::InvalidConfig(format!(
                "segment {name:?} has lanes of {lane_bytes} bytes at offset {}, which this host \
                 cannot map twice: its page size is {page} bytes",
                shape.rings_offset()
            )));
        }
        Ok(shape)
    }

    /// Word index of lane `i`'s control word `field`.
    #[inline]
    pub(crate) fn word(&self, i: u32, field: usize) -> usize {
        W_CONTROL + i as usize * BLOCK_WORDS + field
    }
}

/// The largest record payload of a lane of `lane_bytes`: a record and the zero header after
/// it take the whole lane at most.
#[inline]
pub(crate) fn max_record(lane_bytes: u64) -> usize {
    lane_bytes as usize - 2 * LANE_RECORD_HEADER
}

/// Bytes a record of `len` payload bytes takes in a lane.
#[inline]
pub(crate) fn record_bytes(len: usize) -> u64 {
    // `len` is at most a lane's size (a publish) or 32 bits (a header): no overflow.
    (LANE_RECORD_HEADER + ((len + 7) & !7)) as u64
}
