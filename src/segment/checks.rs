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
    let packed = h.kind().is_some_and(SegmentKind::packs_slots) && h.slot_stride == PACKED_STRIDE;
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

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use crate::error::Error;
    use crate::sync::{AtomicU64, Ordering};

    #[test]
    fn layout_offsets_are_the_documented_bytes() {
        assert_eq!(W_MAGIC * 8, 0);
        assert_eq!(W_ABI_MODE * 8, 8);
        assert_eq!(W_SLOT_COUNT * 8, 16);
        assert_eq!(W_STRIDE * 8, 24);
        assert_eq!(W_CAPACITY * 8, 32);
        assert_eq!(W_TYPE_HASH * 8, 40);
        assert_eq!(W_TYPE_SIZE_ALIGN * 8, 48);
        assert_eq!(W_FIRST_SEQ * 8, 56);
        assert_eq!(W_CREATOR * 8, 64);
        assert_eq!(W_CREATOR_START * 8, 72);
        assert_eq!(W_CREATED_NS * 8, 80);
        assert_eq!(W_SEGMENT_SIZE * 8, 88);
        assert_eq!(W_KIND * 8, 96);
        const { assert!(W_KIND < W_TYPE_NAME) };
        assert_eq!(W_TYPE_NAME * 8, 128);
        const { assert!(W_TYPE_NAME * 8 + TYPE_NAME_MAX <= W_CURSOR * 8) };
        assert_eq!(W_CURSOR * 8, 1024);
        assert_eq!(W_WAKE * 8, 1088);
        assert_eq!(W_WAITERS * 8, 1096);
        const { assert!(W_WAITERS < W_KIND_OWN && W_KIND_OWN < W_PRODUCERS) };
        const { assert!(PE_CLAIM < PE_KIND_OWN && PE_KIND_OWN < PRODUCER_ENTRY_WORDS) };
        assert_eq!(W_PRODUCERS * 8, 2048);
        assert_eq!(
            W_PRODUCERS * 8 + MAX_PRODUCERS * PRODUCER_ENTRY_WORDS * 8,
            HEADER_BYTES
        );
        assert_eq!(W_SLOTS * 8, 4096);
        // Hot words each own a cache line.
        assert_eq!((W_CURSOR * 8) % 64, 0);
        assert_eq!((W_WAKE * 8) % 64, 0);
        assert_eq!(MAGIC.to_le_bytes(), *b"SHMBUS\0\x01");
    }

    #[test]
    fn small_payloads_share_the_version_cache_line() {
        let g = Geometry::new(8, 48).unwrap();
        assert_eq!(g.stride_bytes(), 64);
        let g = Geometry::new(8, 49).unwrap();
        assert_eq!(g.stride_bytes(), 128);
        assert_eq!(g.slot_word(9) - g.slot_word(8), g.stride_words);
        assert_eq!(g.slot_word(8), W_SLOTS);
    }

    #[test]
    fn geometry_rejects_bad_slot_counts_without_rounding() {
        assert!(Geometry::new(0, 8).is_err());
        assert!(Geometry::new(3, 8).is_err());
        assert!(Geometry::new(1000, 8).is_err());
        assert!(Geometry::new(1 << 40, 1 << 20).is_err());
        assert!(Geometry::new(8, 0).is_err());
        assert!(Geometry::new(1, 8).is_ok());
    }

    fn sample_header() -> (Vec<AtomicU64>, Geometry, TypeInfo) {
        let g = Geometry::new(16, 100).unwrap();
        let words: Vec<AtomicU64> = (0..g.segment_bytes().unwrap() / 8)
            .map(|_| AtomicU64::new(0))
            .collect();
        let ty = TypeInfo {
            name: "my::Tick".into(),
            size: 24,
            align: 8,
        };
        write_header(
            &words,
            &HeaderInit {
                kind: SegmentKind::Bus,
                geometry: g,
                mode: ProducerMode::Multi,
                ty: &ty,
                first_seq: 7,
                creator_pid: 42,
                creator_start: 99,
                created_ns: 5,
                wakeup: Wakeup::default(),
            },
        );
        (words, g, ty)
    }

    #[test]
    fn header_round_trips_and_passes_every_check() {
        let (words, g, ty) = sample_header();
        let h = read_header(&words);
        assert_eq!(h.ty, ty);
        assert_eq!(h.cursor, 7);
        assert_eq!(h.published(), 0);
        assert_eq!(h.kind(), Some(SegmentKind::Bus));
        let bytes: Vec<u8> = words
            .iter()
            .flat_map(|w| w.load(Ordering::Relaxed).to_le_bytes())
            .collect();
        assert_eq!(header_from_bytes(&bytes[..HEADER_BYTES]), h);
        let size = g.segment_bytes().unwrap();
        assert_eq!(check_abi("t", &h).unwrap(), ABI_VERSION);
        assert_eq!(
            check_kind("t", &h, SegmentKind::Bus).unwrap(),
            SegmentKind::Bus
        );
        assert_eq!(check_geometry("t", &h).unwrap(), (g, ProducerMode::Multi));
        assert_eq!(check_file_size("t", &g, size).unwrap(), size);
        check_type("t", &h, &g, Some(&ty)).unwrap();
        check_type("t", &h, &g, None).unwrap();
    }

    #[test]
    fn each_header_fault_is_its_own_error_with_the_numbers() {
        let (words, g, _) = sample_header();
        let h = read_header(&words);
        let size = g.segment_bytes().unwrap();
        assert!(matches!(
            check_file_size("t", &g, size - 1),
            Err(Error::Truncated { size: s, expected, .. }) if s == size - 1 && expected == size
        ));
        assert!(matches!(
            check_file_size("t", &g, size + 64),
            Err(Error::SizeMismatch { size: s, expected, .. }) if s == size + 64 && expected == size
        ));
        let with = |f: &dyn Fn(&mut HeaderSnapshot)| {
            let mut b = h.clone();
            f(&mut b);
            b
        };
        let bad = with(&|b| b.abi_version = 1);
        assert!(matches!(
            check_abi("t", &bad),
            Err(Error::AbiMismatch {
                found: 1,
                expected: ABI_VERSION,
                ..
            })
        ));
        let bad = with(&|b| b.kind_word = 2);
        assert!(matches!(
            check_kind("t", &bad, SegmentKind::Bus),
            Err(Error::WrongKind {
                found: "queue",
                expected: "bus",
                ..
            })
        ));
        let bad = with(&|b| b.kind_word = 0);
        assert!(matches!(
            check_kind("t", &bad, SegmentKind::Bus),
            Err(Error::UnknownKind { word: 0, .. })
        ));
        let geometry = |f: &dyn Fn(&mut HeaderSnapshot)| check_geometry("t", &with(f)).unwrap_err();
        assert!(matches!(
            geometry(&|b| b.mode_word = 3),
            Error::BadProducerMode { word: 3, .. }
        ));
        assert!(matches!(
            geometry(&|b| b.cursor = 6),
            Error::SequenceOutOfOrder {
                first_seq: 7,
                cursor: 6,
                ..
            }
        ));
        assert!(matches!(
            geometry(&|b| b.slot_count = 12),
            Error::BadSlotCount { slots: 12, .. }
        ));
        assert!(matches!(
            geometry(&|b| b.slot_stride = 100),
            Error::BadStride { stride: 100, .. }
        ));
        assert!(matches!(
            geometry(&|b| b.capacity = 0),
            Error::CapacityOutOfRange { capacity: 0, .. }
        ));
        assert!(matches!(
            geometry(&|b| b.capacity = 113),
            Error::CapacityExceedsStride {
                capacity: 113,
                stride: 128,
                ..
            }
        ));
        assert!(matches!(
            geometry(&|b| b.slot_count = MAX_SLOTS),
            Error::GeometryTooLarge { .. } | Error::RecordedSizeMismatch { .. }
        ));
        assert!(matches!(
            geometry(&|b| b.segment_size += 64),
            Error::RecordedSizeMismatch { .. }
        ));
        let small = Geometry { capacity: 16, ..g };
        assert!(matches!(
            check_type("t", &h, &small, None),
            Err(Error::CapacityBelowType {
                capacity: 16,
                size: 24,
                ..
            })
        ));
        let other = TypeInfo {
            name: "other".into(),
            size: 24,
            align: 8,
        };
        assert!(matches!(
            check_type("t", &h, &g, Some(&other)),
            Err(Error::TypeMismatch { .. })
        ));
    }

    #[test]
    fn packed_stride_is_a_queue_slot_of_at_most_16_bytes_and_only_a_queues() {
        let q = Geometry::packed(8, 16).unwrap();
        assert_eq!(q.stride_bytes(), PACKED_STRIDE);
        assert_eq!(Geometry::packed(8, 17).unwrap().stride_bytes(), 64);
        assert_eq!(Geometry::new(8, 16).unwrap().stride_bytes(), 64);
        let ty = TypeInfo {
            name: "u64".into(),
            size: 8,
            align: 8,
        };
        let header = |kind| {
            let words: Vec<AtomicU64> = (0..q.segment_bytes().unwrap() / 8)
                .map(|_| AtomicU64::new(0))
                .collect();
            let init = HeaderInit {
                kind,
                geometry: q,
                mode: ProducerMode::Multi,
                ty: &ty,
                first_seq: 0,
                creator_pid: 1,
                creator_start: 1,
                created_ns: 1,
                wakeup: Wakeup::default(),
            };
            write_header(&words, &init);
            read_header(&words)
        };
        assert_eq!(
            check_geometry("t", &header(SegmentKind::Queue)).unwrap().0,
            q
        );
        assert!(matches!(
            check_geometry("t", &header(SegmentKind::Bus)),
            Err(Error::BadStride { stride: 32, .. })
        ));
    }
}
