//! The journal file format: header fields, entry markers and their validation
//! (docs/design.md §13). Every word is little-endian and 8-byte aligned.
//!
//! ```text
//!  byte  header (HEADER_BYTES = 4096)
//!  ----  -----------------------------------------------------------------------------
//!     0  magic "SHMBJRNL"          (stored last, Release: the header is complete)
//!     8  format version (lo32) | header bytes (hi32, 4096)
//!    16  bus slots
//!    24  bus payload capacity (bytes): no message entry is longer
//!    32  producer mode (lo32: 1 single, 2 multi) | type size (hi32)
//!    40  type align (lo32) | type name length (hi32, at most 256)
//!    48  created, ns since the Unix epoch
//!    56  state: 1 recording, 2 closed by its recorder (stored Release on close)
//!   128  type name, UTF-8, zero padded
//!  4096  first entry
//!
//!  entry (8-byte aligned, ENTRY_HEADER_BYTES + payload rounded up to whole words)
//!    +0  marker: TAG (hi16) | kind (bits 32..48: 1 message, 2 lost) | length (lo32)
//!        written LAST (Release); 0 = nothing here yet (the end of the journal)
//!    +8  message: sequence number      lost: first lost sequence number
//!   +16  message: receive time, ns     lost: how many were lost (at least 1)
//!   +24  checksum: CRC-32C (lo32) of the marker, the words at +8 and +16 and the payload's
//!        `length` bytes, all little-endian; hi32 is 0
//!   +32  message: payload, zero padded to whole words
//! ```
//!
//! Version 1 had no checksum word (payload at +24); it is refused with `JournalVersion`.

use super::crc::Crc32c;
use crate::segment::header::{ProducerMode, TypeInfo, MAX_SLOTS, TYPE_NAME_MAX};

/// "SHMBJRNL" read as a little-endian word.
pub(crate) const MAGIC: u64 = u64::from_le_bytes(*b"SHMBJRNL");
/// The format version this library writes and reads (2: entries carry a checksum).
pub(crate) const VERSION: u32 = 2;
/// Size of the header; the first entry starts here.
pub(crate) const HEADER_BYTES: u64 = 4096;

pub(crate) const OFF_MAGIC: u64 = 0;
pub(crate) const OFF_VERSION: u64 = 8;
pub(crate) const OFF_SLOTS: u64 = 16;
pub(crate) const OFF_CAPACITY: u64 = 24;
pub(crate) const OFF_MODE_SIZE: u64 = 32;
pub(crate) const OFF_ALIGN_NAMELEN: u64 = 40;
pub(crate) const OFF_CREATED: u64 = 48;
pub(crate) const OFF_STATE: u64 = 56;
pub(crate) const OFF_TYPE_NAME: u64 = 128;

pub(crate) const STATE_RECORDING: u64 = 1;
pub(crate) const STATE_CLOSED: u64 = 2;

/// Marker tag in the high 16 bits: a marker is never a plausible zero or small number.
const TAG: u64 = 0x4A45 << 48;
const TAG_MASK: u64 = 0xFFFF << 48;
const KIND_MESSAGE: u64 = 1;
const KIND_LOST: u64 = 2;

/// Bytes of an entry before its payload: marker, two words, checksum (docs/design.md §13). An
/// entry of `n` payload bytes takes `ENTRY_HEADER_BYTES + n` rounded up to whole 8-byte words.
pub const ENTRY_HEADER_BYTES: u64 = 32;
/// Offset of the checksum word in an entry.
pub(crate) const ENTRY_CHECKSUM: u64 = 24;

/// The largest payload capacity a journal header may record (a bus's limit).
pub(crate) const MAX_CAPACITY: u64 = u32::MAX as u64 - 1;

/// What a committed marker says.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Marker {
    Message { len: u32 },
    Lost,
}

impl Marker {
    pub(crate) fn encode(self) -> u64 {
        match self {
            Marker::Message { len } => TAG | KIND_MESSAGE << 32 | len as u64,
            Marker::Lost => TAG | KIND_LOST << 32,
        }
    }

    /// Decodes a non-zero marker word, or says what is wrong with it.
    pub(crate) fn decode(word: u64, capacity: u64) -> Result<Marker, String> {
        if word & TAG_MASK != TAG {
            return Err(format!("entry marker {word:#018x} has no entry tag"));
        }
        let len = word & 0xFFFF_FFFF;
        match (word >> 32) & 0xFFFF {
            KIND_MESSAGE if len <= capacity => Ok(Marker::Message { len: len as u32 }),
            KIND_MESSAGE => Err(format!(
                "message entry of {len} bytes exceeds the recorded capacity of {capacity} bytes"
            )),
            KIND_LOST if len == 0 => Ok(Marker::Lost),
            KIND_LOST => Err(format!("loss entry has a length word of {len}")),
            kind => Err(format!("entry kind {kind} is unknown (1 message, 2 lost)")),
        }
    }

    /// The whole entry's size in bytes, a multiple of 8.
    pub(crate) fn entry_bytes(self) -> u64 {
        match self {
            Marker::Message { len } => entry_bytes(len as u64),
            Marker::Lost => ENTRY_HEADER_BYTES,
        }
    }
}

/// The checksum word of an entry whose marker word is `marker`, whose words at +8 and +16 are
/// `a` and `b`, and whose payload is `payload` (empty for a loss).
pub(crate) fn checksum(marker: u64, a: u64, b: u64, payload: &[u8]) -> u64 {
    Crc32c::new().words_then(&[marker, a, b], payload).finish() as u64
}

/// Size of a message entry with a `len`-byte payload.
pub(crate) fn entry_bytes(len: u64) -> u64 {
    ENTRY_HEADER_BYTES + len.div_ceil(8) * 8
}

/// The bus a journal was recorded from: enough to create a bus of the same shape on replay.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct JournalShape {
    /// Slot count of the recorded bus (a power of two).
    pub slots: u64,
    /// Payload capacity of the recorded bus, in bytes: no recorded message is longer.
    pub capacity: u64,
    /// Producer mode of the recorded bus.
    pub mode: ProducerMode,
    /// Message type of the recorded bus.
    pub message_type: TypeInfo,
}

impl JournalShape {
    /// The shape of an existing bus.
    pub fn of<T: crate::Payload>(bus: &crate::Bus<T>) -> Self {
        JournalShape {
            slots: bus.slots(),
            capacity: bus.capacity() as u64,
            mode: bus.producer_mode(),
            message_type: bus.message_type().clone(),
        }
    }

    /// Says what is wrong with a shape, if anything; used both before writing a header and after
    /// reading one.
    pub(crate) fn check(&self) -> Result<(), String> {
        if self.slots == 0 || !self.slots.is_power_of_two() || self.slots > MAX_SLOTS {
            return Err(format!(
                "slot count {} is not a power of two from 1 to {MAX_SLOTS}",
                self.slots
            ));
        }
        if self.capacity == 0 || self.capacity > MAX_CAPACITY {
            return Err(format!(
                "payload capacity {} is out of range (1 to {MAX_CAPACITY})",
                self.capacity
            ));
        }
        let ty = &self.message_type;
        if ty.name.len() > TYPE_NAME_MAX {
            return Err(format!(
                "type name is {} bytes, more than {TYPE_NAME_MAX}",
                ty.name.len()
            ));
        }
        if !ty.align.is_power_of_two() || ty.align > 8 {
            return Err(format!(
                "type alignment {} is not a power of two up to 8",
                ty.align
            ));
        }
        Ok(())
    }
}

/// Splits a word into its low and high halves.
pub(crate) fn halves(w: u64) -> (u32, u32) {
    (w as u32, (w >> 32) as u32)
}

/// Joins low and high halves into a word.
pub(crate) fn join(lo: u32, hi: u32) -> u64 {
    lo as u64 | (hi as u64) << 32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_offsets_match_the_diagram() {
        assert_eq!(MAGIC.to_le_bytes(), *b"SHMBJRNL");
        let fields = [
            OFF_MAGIC,
            OFF_VERSION,
            OFF_SLOTS,
            OFF_CAPACITY,
            OFF_MODE_SIZE,
            OFF_ALIGN_NAMELEN,
            OFF_CREATED,
            OFF_STATE,
        ];
        assert_eq!(fields, [0, 8, 16, 24, 32, 40, 48, 56]);
        assert_eq!(OFF_TYPE_NAME, 128);
        assert!(OFF_TYPE_NAME + TYPE_NAME_MAX as u64 <= HEADER_BYTES);
        assert_eq!(HEADER_BYTES % 8, 0);
    }

    #[test]
    fn markers_round_trip_and_reject_what_they_did_not_encode() {
        for m in [
            Marker::Message { len: 0 },
            Marker::Message { len: 240 },
            Marker::Lost,
        ] {
            assert_eq!(Marker::decode(m.encode(), 240), Ok(m));
        }
        assert!(Marker::decode(Marker::Message { len: 241 }.encode(), 240).is_err());
        assert!(Marker::decode(1, 240).is_err());
        assert!(Marker::decode(TAG | 3 << 32, 240).is_err());
        assert!(Marker::decode(TAG | KIND_LOST << 32 | 5, 240).is_err());
        assert_eq!(Marker::Message { len: 0 }.entry_bytes(), 32);
        assert_eq!(Marker::Message { len: 1 }.entry_bytes(), 40);
        assert_eq!(Marker::Message { len: 8 }.entry_bytes(), 40);
        assert_eq!(Marker::Message { len: 9 }.entry_bytes(), 48);
        assert_eq!(Marker::Lost.entry_bytes(), 32);
        assert_eq!(ENTRY_CHECKSUM + 8, ENTRY_HEADER_BYTES);
    }

    #[test]
    fn the_checksum_covers_every_field_and_leaves_the_high_half_zero() {
        let m = Marker::Message { len: 3 }.encode();
        let c = checksum(m, 7, 9, b"abc");
        assert_eq!(c >> 32, 0);
        assert_ne!(
            c,
            checksum(Marker::Message { len: 2 }.encode(), 7, 9, b"ab")
        );
        assert_ne!(c, checksum(m, 6, 9, b"abc"));
        assert_ne!(c, checksum(m, 7, 8, b"abc"));
        assert_ne!(c, checksum(m, 7, 9, b"abd"));
        assert_ne!(c, checksum(m, 7, 9, b"\0\0\0"));
    }
}
