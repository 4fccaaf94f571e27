//! Where a records segment keeps its ring and its control words (docs/design.md §15). The
//! header page is the shared one (`crate::segment::header`); a records segment describes its ring with
//! the shared geometry words, read as "one slot the size of the ring":
//!
//! ```text
//!  byte  word  header fields as a records segment reads them
//!  ----  ----  ------------------------------------------------------------------------------
//!    16     2  slot count: always 1
//!    24     3  slot stride: the ring's size in bytes (a power of two, 4 KiB to 16 GiB)
//!    32     4  capacity: the largest payload, ring / 4 - 16 bytes
//!    96    12  segment kind (lo32: 3) | records layout revision (hi32: RECORDS_REVISION)
//!  1024   128  write cursor: the next record's sequence number (records published)
//!  1152   144  0 (revision 0 kept the intent here)                             [own line]
//!  1160   145  tail: where the next record starts (every byte before it is committed)
//!  1168   146  head: start of the oldest intact record
//!  1176   147  last: start of the newest committed record
//!  1184   148  payload bytes published
//!  1216   152  intent: an upper bound of the end of the bytes the producer has written or is
//!              writing, stored coarsely (once per `slack` bytes or more)   [own line, alone]
//!  4096   512  the ring: byte position p lives at 4096 + (p mod ring)
//!
//!  record at position p (8-aligned; it never straddles the ring's end):
//!         +0 version: 2s free (the next record here will be s); 2s+1 s being written;
//!            2s+2 s written; (2s+2) | 2^63 s abandoned; 2s | 2^62 padding: s starts at the
//!            next multiple of the ring size
//!         +8 length in bytes (lo32) | type id (hi32)
//!        +16 payload, rounded up to whole words
//! ```
//!
//! Positions are byte counts since creation (they never wrap in practice: 2^64 bytes). The
//! position words and the ring are read by untrusted readers of untrusted memory: every index is
//! masked into the ring and every length is checked against the ring's end before use.

use crate::error::{Error, Result};
use crate::segment::header::{Geometry, HEADER_BYTES};

pub(crate) const W_TAIL: usize = 145;
pub(crate) const W_HEAD: usize = 146;
pub(crate) const W_LAST: usize = 147;
pub(crate) const W_BYTES: usize = 148;
/// The intent, alone on its cache line: readers load it for every record they deliver, and the
/// producer stores it once per `slack` bytes, not on every publish (docs/design.md §15).
pub(crate) const W_INTENT: usize = 152;
/// The records layout revision this library reads and writes, in the kind word's hi32
/// (revision 0, the hi32 of segments made before it was recorded, kept the intent at word 144
/// and stored it on every publish). `RecordsBuilder::open` refuses any other revision.
pub const RECORDS_REVISION: u32 = 1;
/// The largest slack of the ring (`RingShape::slack`): for records under 256 bytes the intent's
/// line changes at least once per this many bytes published, and the producer's head walk after
/// an intent store passes at most this many bytes of records. Larger records store a slack of
/// [`SLACK_RECORDS`] of their size (`RingShape::slack_for`).
pub(crate) const MAX_SLACK: u64 = 4096;
/// A write of a record of `size` bytes stores, with its intent, a slack of at least this many
/// such records (up to an eighth of the ring; `RingShape::slack_for`).
pub(crate) const SLACK_RECORDS: u64 = 16;
/// First word of the ring.
pub(crate) const W_RING: usize = HEADER_BYTES / 8;

/// Bytes of record header before the payload (version word, length and type word).
pub const RECORD_HEADER_BYTES: usize = 16;
/// Smallest ring a records segment may have.
pub const MIN_RING_BYTES: u64 = 4096;
/// Largest ring a records segment may have (a length must fit 32 bits).
pub const MAX_RING_BYTES: u64 = 1 << 34;

/// The shape of a byte ring, read once from a validated header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct RingShape {
    /// Ring size in bytes, a power of two.
    pub bytes: u64,
    /// Largest payload: a record of header and payload takes at most a quarter of the ring.
    pub max_payload: usize,
    /// How far past the end of a write the producer stores its intent: ring / 8, at most
    /// [`MAX_SLACK`] (docs/design.md §15, "The coarse intent").
    pub slack: u64,
}

impl RingShape {
    /// The shape of a ring of `bytes` bytes; no lower bound (loom models use tiny rings).
    pub(crate) fn of(bytes: u64) -> Self {
        RingShape {
            bytes,
            max_payload: (bytes / 4) as usize - RECORD_HEADER_BYTES,
            slack: (bytes / 8).min(MAX_SLACK),
        }
    }

    /// The slack of a write of a record of `size` bytes (header included): the ring's slack, or
    /// [`SLACK_RECORDS`] such records if that is more, never more than an eighth of the ring.
    /// Large records then store the intent about once per `SLACK_RECORDS` records rather than
    /// once per few, while the head walk after a store passes at most the slack, i.e. at most
    /// `size` headers of the smallest records, a bounded multiple of the write's own stores
    /// (docs/design.md §15, "The coarse intent").
    #[inline]
    pub(crate) fn slack_for(&self, size: u64) -> u64 {
        self.slack.max((SLACK_RECORDS * size).min(self.bytes / 8))
    }

    /// The same ring with another slack (loom models: a slack larger than a tiny ring's eighth
    /// lets a handful of records fit inside one intent). Soundness needs only that a record,
    /// its terminator and the slack fit the ring; the progress guarantees of docs/design.md §15
    /// assume at most ring / 8.
    #[cfg(all(test, loom))]
    pub(crate) fn with_slack(self, slack: u64) -> Self {
        assert!(slack % 8 == 0 && self.bytes / 4 + 8 + slack <= self.bytes);
        RingShape { slack, ..self }
    }

    /// The shared geometry words that describe this ring (one slot of the ring's size).
    pub(crate) fn geometry(&self) -> Geometry {
        Geometry {
            slot_count: 1,
            stride_words: (self.bytes / 8) as usize,
            capacity: self.max_payload,
        }
    }

    /// Checks a user's ring size.
    pub(crate) fn new(bytes: u64) -> Result<Self> {
        if !(MIN_RING_BYTES..=MAX_RING_BYTES).contains(&bytes) || !bytes.is_power_of_two() {
            return Err(Error::InvalidConfig(format!(
                "a records ring must be a power of two from {MIN_RING_BYTES} to {MAX_RING_BYTES} bytes, got {bytes}"
            )));
        }
        Ok(RingShape::of(bytes))
    }

    /// The ring a validated geometry describes, if it is one a records segment can have.
    pub(crate) fn from_geometry(name: &str, g: &Geometry) -> Result<Self> {
        let bytes = g.stride_bytes();
        let ok = g.slot_count == 1
            && (MIN_RING_BYTES..=MAX_RING_BYTES).contains(&bytes)
            && bytes.is_power_of_two()
            && g.capacity == RingShape::of(bytes).max_payload;
        if !ok {
            return Err(Error::BadRing {
                name: name.to_owned(),
                slots: g.slot_count,
                bytes,
                capacity: g.capacity as u64,
            });
        }
        Ok(RingShape::of(bytes))
    }

    /// Bytes a record of `len` payload bytes takes.
    #[inline]
    pub(crate) fn record_size(len: usize) -> u64 {
        (RECORD_HEADER_BYTES + len.next_multiple_of(8)) as u64
    }

    /// The ring word holding byte position `pos` (masked into the ring, rounded down to a word).
    #[inline]
    pub(crate) fn word(&self, pos: u64) -> usize {
        W_RING + ((pos & (self.bytes - 1)) / 8) as usize
    }

    /// Bytes from `pos` to the ring's end.
    #[inline]
    pub(crate) fn room(&self, pos: u64) -> u64 {
        self.bytes - (pos & (self.bytes - 1))
    }

    /// The next multiple of the ring size after `pos` (where a padded record starts).
    #[inline]
    pub(crate) fn next_lap(&self, pos: u64) -> u64 {
        (pos | (self.bytes - 1)).wrapping_add(1)
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[test]
    fn control_words_share_one_line_and_the_intent_has_the_next_one_alone() {
        assert_eq!(W_TAIL * 8, 1160);
        const { assert!(W_TAIL > crate::segment::header::W_WAITERS) };
        const { assert!(W_TAIL < W_HEAD && W_HEAD < W_LAST && W_LAST < W_BYTES) };
        const { assert!(W_BYTES * 8 < 1152 + 64) };
        assert_eq!(W_INTENT * 8, 1216);
        assert_eq!((W_INTENT * 8) % 64, 0);
        // Nothing else of a records segment lives on the intent's line or the next ones up to
        // the producer table.
        const { assert!(W_BYTES < W_INTENT && W_INTENT < crate::segment::header::W_PRODUCERS) };
        assert_eq!(W_RING * 8, 4096);
    }

    #[test]
    fn the_slack_is_an_eighth_of_the_ring_at_most_4_kib() {
        assert_eq!(RingShape::new(4096).unwrap().slack, 512);
        assert_eq!(RingShape::new(32 * 1024).unwrap().slack, 4096);
        assert_eq!(RingShape::new(1 << 20).unwrap().slack, 4096);
        for bytes in [MIN_RING_BYTES, 1 << 15, MAX_RING_BYTES] {
            let r = RingShape::new(bytes).unwrap();
            // The largest record, its terminator and the slack leave 5/8 of the ring.
            assert!(RingShape::record_size(r.max_payload) + 8 + r.slack <= bytes - bytes / 2);
            assert!(r.slack % 8 == 0 && r.slack * 8 <= bytes);
        }
    }

    #[test]
    fn a_write_stores_a_slack_of_sixteen_of_its_records_up_to_an_eighth_of_the_ring() {
        let r = RingShape::new(4 << 20).unwrap();
        // Small records: the ring's slack.
        assert_eq!(r.slack_for(RingShape::record_size(8)), 4096);
        assert_eq!(r.slack_for(RingShape::record_size(240)), 4096);
        // Larger ones: sixteen of them, at most an eighth of the ring.
        assert_eq!(r.slack_for(RingShape::record_size(1024)), 16 * 1040);
        assert_eq!(
            r.slack_for(RingShape::record_size(r.max_payload)),
            r.bytes / 8
        );
        let small = RingShape::new(4096).unwrap();
        assert_eq!(
            small.slack_for(RingShape::record_size(small.max_payload)),
            512
        );
        for bytes in [MIN_RING_BYTES, 1 << 15, 1 << 22, MAX_RING_BYTES] {
            let r = RingShape::new(bytes).unwrap();
            for len in [0, 8, 100, 1024, r.max_payload] {
                let size = RingShape::record_size(len);
                let slack = r.slack_for(size);
                // What the progress bounds of docs/design.md §15 assume.
                assert!(slack % 8 == 0 && slack >= r.slack && slack * 8 <= bytes);
                assert!(size + 8 + slack <= bytes - bytes / 2);
            }
        }
    }

    #[test]
    fn a_record_takes_at_most_a_quarter_of_the_ring() {
        let r = RingShape::new(4096).unwrap();
        assert_eq!(r.max_payload, 1008);
        assert_eq!(RingShape::record_size(r.max_payload), 1024);
        assert_eq!(RingShape::record_size(1), 24);
        assert_eq!(RingShape::record_size(0), 16);
        assert!(RingShape::new(4095).is_err());
        assert!(RingShape::new(6144).is_err());
        assert!(RingShape::new(MAX_RING_BYTES * 2).is_err());
        assert_eq!(r.next_lap(4096), 8192);
        assert_eq!(r.next_lap(4095), 4096);
        assert_eq!(r.room(4096 + 8), 4088);
        assert_eq!(RingShape::from_geometry("t", &r.geometry()).unwrap(), r);
    }
}
