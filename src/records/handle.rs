//! The records handle and its builder: create and open.
use std::sync::Arc;

use super::layout::{RingShape, RECORDS_REVISION};
use super::publisher::RecordPublisher;
use super::subscriber::RecordSubscriber;
use super::RecordRing;
use crate::bus::Start;
use crate::error::{Error, Result};
use crate::segment::header::{HeaderSnapshot, ProducerMode, SegmentKind, TypeInfo, W_KIND};
use crate::segment::kind::{by_name, constructors, option_setters, Blueprint, Kind, Options};
use crate::segment::{Expect, Segment, Shape};
use crate::sync::{AtomicU64, Ordering};

/// Ring size of a new records segment unless [`RecordsBuilder::bytes`] says otherwise (1 MiB).
pub const DEFAULT_RING_BYTES: u64 = 1 << 20;

/// A handle on a records segment: one byte ring of variable-size records, broadcast to every
/// subscriber. Cheap to clone; publishers and subscribers made from it keep the mapping alive.
///
/// ```
/// use shmbus::records::{RecordRecv, RecordsBuilder};
/// use shmbus::Start;
/// # let name = format!("doc-records-{}", std::process::id());
/// let records = RecordsBuilder::new(&name).bytes(64 * 1024).create()?;
/// let mut tx = records.publisher()?;
/// let mut rx = records.subscribe(Start::Oldest);
/// tx.publish_bytes(b"short")?;
/// tx.publish_record(7, &[1u8; 3000])?;
/// let RecordRecv::Record(r) = rx.try_recv() else { panic!() };
/// assert_eq!((r.seq(), r.bytes()), (0, &b"short"[..]));
/// let RecordRecv::Record(r) = rx.try_recv() else { panic!() };
/// assert_eq!((r.type_id(), r.bytes().len()), (7, 3000));
/// # shmbus::records::Records::remove(&name)?;
/// # Ok::<(), shmbus::Error>(())
/// ```
#[derive(Clone)]
pub struct Records {
    pub(super) seg: Arc<Segment>,
    pub(super) shape: RingShape,
}

impl std::fmt::Debug for Records {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Records")
            .field("name", &self.seg.name())
            .field("ring_bytes", &self.shape.bytes)
            .finish()
    }
}

impl Records {
    by_name!(
        RecordsBuilder,
        "records segment",
        read_write: "able to publish, and to let subscribers sleep on the futex",
        read_only: "subscribers only"
    );

    pub(super) fn ring(&self) -> RecordRing<'_> {
        RecordRing::new(self.seg.words(), self.shape)
    }

    /// Attaches the producer; fails with [`Error::ProducerExists`] while another one lives.
    ///
    /// # Errors
    ///
    /// [`Error::ReadOnly`] on a read-only handle; [`Error::ProducerExists`] while another producer
    /// lives; [`Error::RecordsInconsistent`] if the ring's control words contradict each other;
    /// [`Error::Io`] if the producer lock cannot be taken for another reason.
    pub fn publisher(&self) -> Result<RecordPublisher> {
        RecordPublisher::attach(self.seg.clone(), self.shape)
    }

    /// A subscriber that sees only records published from now on.
    pub fn subscriber(&self) -> RecordSubscriber {
        self.subscribe(Start::Next)
    }

    /// A subscriber starting where `start` says (`Start::Sequence` and `Start::Last` start at
    /// the oldest intact record and pass over the records before their start).
    pub fn subscribe(&self, start: Start) -> RecordSubscriber {
        RecordSubscriber::new(self.seg.clone(), self.shape, start)
    }

    /// The segment name.
    pub fn name(&self) -> &str {
        self.seg.name()
    }

    /// Size of the byte ring.
    pub fn ring_bytes(&self) -> u64 {
        self.shape.bytes
    }

    /// Largest record payload, in bytes: a record with its 16-byte header takes at most a
    /// quarter of the ring (docs/design.md §15).
    pub fn max_record(&self) -> usize {
        self.shape.max_payload
    }

    /// Records published since creation (the next record's sequence number).
    pub fn records_published(&self) -> u64 {
        self.ring().cursor()
    }

    /// Payload bytes published since creation.
    pub fn bytes_published(&self) -> u64 {
        self.ring().bytes_published()
    }

    /// Bytes of the ring that hold records a subscriber starting at the oldest can still read
    /// (from the oldest intact record to the end of the newest; at most the ring's size), as
    /// the control words say now.
    pub fn ring_used(&self) -> u64 {
        let words = self.seg.words();
        let tail = words[super::layout::W_TAIL].load(Ordering::Relaxed);
        let head = words[super::layout::W_HEAD].load(Ordering::Relaxed);
        // A forged head past the tail reads as empty; one far behind as a full ring.
        tail.saturating_sub(head).min(self.shape.bytes)
    }

    /// Whether a producer is attached and alive.
    pub fn has_producers(&self) -> bool {
        self.seg.producers_alive()
    }

    /// Whether this handle mapped the segment read-only.
    pub fn is_read_only(&self) -> bool {
        !self.seg.is_writable()
    }

    /// A fresh read of the whole header.
    pub fn header(&self) -> HeaderSnapshot {
        self.seg.header()
    }
}

/// Creates or opens a records segment:
///
/// ```
/// # let name = format!("doc-records-builder-{}", std::process::id());
/// let r = shmbus::records::RecordsBuilder::new(&name).bytes(1 << 16).create()?;
/// assert_eq!(r.max_record(), (1 << 14) - 16);
/// # shmbus::records::Records::remove(&name)?;
/// # Ok::<(), shmbus::Error>(())
/// ```
#[derive(Clone, Debug)]
#[must_use]
pub struct RecordsBuilder {
    pub(super) opts: Options,
    pub(super) bytes: u64,
}

impl RecordsBuilder {
    /// Starts a builder for records segment `name`.
    pub fn new(name: &str) -> Self {
        RecordsBuilder {
            opts: Options::new(name),
            bytes: DEFAULT_RING_BYTES,
        }
    }

    /// Size of the byte ring: a power of two from 4 KiB to 16 GiB (never rounded). The largest
    /// record payload is a quarter of it, less its 16-byte header.
    pub fn bytes(mut self, bytes: u64) -> Self {
        self.bytes = bytes;
        self
    }

    option_setters!();

    constructors!(
        Records,
        "records segment",
        config: "[`Error::InvalidConfig`] for a ring size that is not a power of two from 4 KiB to 16 GiB.",
        open: "[`Error::LayoutRevision`] (a records layout of another revision; a segment made before revisions were recorded has 0); [`Error::BadProducerMode`] for a multi-producer header and [`Error::BadRing`] for a ring geometry that is not one.",
        same: "ring size"
    );
}

impl Kind for RecordsBuilder {
    type Handle = Records;
    type Own = RingShape;

    fn options(&self) -> &Options {
        &self.opts
    }

    fn blueprint(&self) -> Result<Blueprint<RingShape>> {
        let ring = RingShape::new(self.bytes)?;
        let shape = Shape {
            kind: SegmentKind::Records,
            geometry: ring.geometry(),
            mode: ProducerMode::Single,
            ty: TypeInfo::raw(),
            first_seq: 0,
        };
        Ok(Blueprint::new(shape, ring))
    }

    /// The layout revision goes into the kind word's hi32 (docs/design.md §15, "Layout
    /// revision"), before the magic publishes the segment.
    fn init(&self, _ring: &RingShape, words: &[AtomicU64]) {
        let kind = SegmentKind::Records.to_word() as u64;
        words[W_KIND].store(kind | (RECORDS_REVISION as u64) << 32, Ordering::Relaxed);
    }

    fn expect(&self) -> Expect {
        Expect {
            kind: SegmentKind::Records,
            ty: None,
        }
    }

    fn adopt(&self, seg: Segment) -> Result<Records> {
        let name = &self.opts.name;
        if seg.mode != ProducerMode::Single {
            return Err(Error::BadProducerMode {
                name: name.clone(),
                word: seg.mode.to_word(),
            });
        }
        let shape = RingShape::from_geometry(name, &seg.geometry)?;
        // The layout revision (kind word, hi32), stored before the magic that the open pipeline
        // loaded with Acquire; 0 in a segment made before revisions were recorded (another
        // layout: refused).
        let found = (seg.words()[W_KIND].load(Ordering::Relaxed) >> 32) as u32;
        if found != RECORDS_REVISION {
            return Err(Error::LayoutRevision {
                name: name.clone(),
                kind: "records",
                found,
                expected: RECORDS_REVISION,
            });
        }
        Ok(Records {
            seg: Arc::new(seg),
            shape,
        })
    }

    fn differs(&self, wanted: &Blueprint<RingShape>, r: &Records) -> Option<(String, String)> {
        let (found, wanted) = (r.shape.bytes, wanted.own.bytes);
        (found != wanted).then(|| {
            (
                format!("a records ring of {found} bytes"),
                format!("a records ring of {wanted} bytes"),
            )
        })
    }
}
