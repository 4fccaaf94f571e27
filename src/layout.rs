//! The segment layout (ABI version 2): where every common header word lives, the public
//! constants and the header snapshot. The full map is in the segment layer's header module;
//! each kind's own words are described in its folder (docs/design.md §3, §11, §12, §15).

pub use crate::segment::checks::validate_header_bytes;
pub use crate::segment::header::{
    HeaderSnapshot, ProducerMode, SegmentKind, TypeInfo, ABI_VERSION, HEADER_BYTES, MAGIC,
    MAX_PRODUCERS, MAX_SEGMENT_BYTES, MAX_SLOTS, SLOT_HEADER_BYTES, TYPE_NAME_MAX,
};
