//! The checks of a header's fields, one per step of the open pipeline (`segment::pipeline`),
//! each failing with the typed error that names the numbers found. All arithmetic is checked:
//! the header may come from a hostile or corrupt segment.

use crate::error::{Error, Result};

use super::header::*;
/// Bus sequence limits (docs/design.md §3, "Sequence limits"): a bus starts at most at
/// [`super::header::FIRST_SEQ_LIMIT`], and its cursor never passes [`super::header::CURSOR_LIMIT`].
/// Other kinds keep their positions below 2^61.
fn cursor_limit(h: &HeaderSnapshot) -> u64 {
    if h.kind() == Some(SegmentKind::Bus) {
        super::header::CURSOR_LIMIT
    } else {
        1 << 61
    }
}

/// The ABI version step.
pub(crate) fn check_abi(name: &str, h: &HeaderSnapshot) -> Result<u32> {
    if h.abi_version != ABI_VERSION {
        return Err(Error::AbiMismatch {
            name: name.to_owned(),
            found: h.abi_version,
            expected: ABI_VERSION,
        });
    }
    Ok(h.abi_version)
}

/// The kind step: a known kind, and the one the caller opens.
pub(crate) fn check_kind(
    name: &str,
    h: &HeaderSnapshot,
    expected: SegmentKind,
) -> Result<SegmentKind> {
    let found = h.kind().ok_or_else(|| Error::UnknownKind {
        name: name.to_owned(),
        word: h.kind_word,
    })?;
    if found != expected {
        return Err(Error::WrongKind {
            name: name.to_owned(),
            found: found.name(),
            expected: expected.name(),
        });
    }
    Ok(found)
}

/// The geometry step: producer mode, sequence numbers, slot count, stride, capacity and the
/// recorded size, in that order. Returns the geometry and mode to use for the mapping's life.
pub(crate) fn check_geometry(name: &str, h: &HeaderSnapshot) -> Result<(Geometry, ProducerMode)> {
    let name = || name.to_owned();
    let mode = ProducerMode::from_word(h.mode_word).ok_or_else(|| Error::BadProducerMode {
        name: name(),
        word: h.mode_word,
    })?;
    if h.first_seq > super::header::FIRST_SEQ_LIMIT
        || h.cursor < h.first_seq
        || h.cursor > cursor_limit(h)
    {
        return Err(Error::SequenceOutOfOrder {
            name: name(),
            first_seq: h.first_seq,
            cursor: h.cursor,
        });
    }
    if h.slot_count == 0 || !h.slot_count.is_power_of_two() || h.slot_count > MAX_SLOTS {
        return Err(Error::BadSlotCount {
            name: name(),
            slots: h.slot_count,
        });
    }
    let packed = h.kind() == Some(SegmentKind::Queue) && h.slot_stride == PACKED_STRIDE;
    if h.slot_stride == 0 || (h.slot_stride % 64 != 0 && !packed) {
        return Err(Error::BadStride {
            name: name(),
            stride: h.slot_stride,
        });
    }
    let capacity = usize::try_from(h.capacity)
        .ok()
        .filter(|&c| c > 0 && c < CAPACITY_LIMIT as usize)
        .ok_or(Error::CapacityOutOfRange {
            name: name(),
            capacity: h.capacity,
        })?;
    let fits_stride = matches!(
        (SLOT_HEADER_BYTES as u64).checked_add(h.capacity),
        Some(need) if need <= h.slot_stride
    );
    if !fits_stride {
        return Err(Error::CapacityExceedsStride {
            name: name(),
            capacity: h.capacity,
            stride: h.slot_stride,
        });
    }
    let too_large = || Error::GeometryTooLarge {
        name: name(),
        slots: h.slot_count,
        stride: h.slot_stride,
    };
    let expected = h
        .slot_count
        .checked_mul(h.slot_stride)
        .and_then(|b| b.checked_add(HEADER_BYTES as u64))
        .filter(|&s| s <= MAX_SEGMENT_BYTES)
        .ok_or_else(too_large)?;
    if h.segment_size != expected {
        return Err(Error::RecordedSizeMismatch {
            name: name(),
            recorded: h.segment_size,
            expected,
        });
    }
    let stride_words = usize::try_from(h.slot_stride / 8).map_err(|_| too_large())?;
    Ok((
        Geometry {
            slot_count: h.slot_count,
            stride_words,
            capacity,
        },
        mode,
    ))
}

/// The size step: the file is exactly as large as the geometry implies.
pub(crate) fn check_file_size(name: &str, g: &Geometry, file_size: u64) -> Result<u64> {
    let expected = g.segment_bytes().unwrap_or(u64::MAX);
    if file_size < expected {
        return Err(Error::Truncated {
            name: name.to_owned(),
            size: file_size,
            expected,
        });
    }
    if file_size > expected {
        return Err(Error::SizeMismatch {
            name: name.to_owned(),
            size: file_size,
            expected,
        });
    }
    Ok(file_size)
}

/// The type step: a typed bus's slots hold its type, and a typed opener finds its own type
/// (`wanted`; `None` or raw bytes accept any).
pub(crate) fn check_type(
    name: &str,
    h: &HeaderSnapshot,
    g: &Geometry,
    wanted: Option<&TypeInfo>,
) -> Result<()> {
    let fits = |ty: &TypeInfo| {
        if !ty.is_raw() && ty.size as usize > g.capacity {
            return Err(Error::CapacityBelowType {
                name: name.to_owned(),
                capacity: g.capacity,
                ty: ty.to_string(),
                size: ty.size,
            });
        }
        Ok(())
    };
    fits(&h.ty)?;
    let Some(wanted) = wanted.filter(|w| !w.is_raw()) else {
        return Ok(());
    };
    if h.ty != *wanted || h.type_hash != wanted.name_hash() {
        return Err(Error::TypeMismatch {
            name: name.to_owned(),
            expected: wanted.to_string(),
            found: h.ty.to_string(),
        });
    }
    fits(wanted)
}

/// Runs the header steps of opening over raw header bytes, as if read from a segment of
/// `file_size` bytes (only the first `file_size` bytes count). Returns the slot count, stride and
/// capacity of an accepted header, or the typed error. For fuzzing only: not part of the API.
///
/// # Errors
///
/// The error of the first opening step the header fails, as [`crate::Bus::open`] reports it.
#[doc(hidden)]
pub fn validate_header_bytes(bytes: &[u8], file_size: u64) -> Result<(u64, u64, usize)> {
    crate::segment::validate_bytes("fuzz", bytes, file_size).map(|s| {
        (
            s.geometry.slot_count,
            s.geometry.stride_bytes(),
            s.geometry.capacity,
        )
    })
}
