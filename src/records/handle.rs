//! The records handle and its builder: create and open.
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::layout::{RingShape, RECORDS_REVISION};
use super::publisher::RecordPublisher;
use super::subscriber::RecordSubscriber;
use super::RecordRing;
use crate::bus::Start;
use crate::error::{Error, Result};
use crate::segment::header::{HeaderSnapshot, ProducerMode, SegmentKind, TypeInfo, W_KIND};
use crate::segment::{self, Access, Expect, Segment, Shape, Trust};
use crate::sync::{load_acquire, Ordering};

/// How long `open` waits for a new segment's creator to record the layout revision.
pub(super) const REVISION_WAIT: Duration = Duration::from_millis(100);

/// Records the layout revision in the kind word's hi32 of a segment just created
/// (docs/design.md §15, "Layout revision").
pub(super) fn record_revision(seg: &Segment) {
    let kind = SegmentKind::Records.to_word() as u64;
    // ORDERING: Release pairs with the Acquire load in `RecordsBuilder::open`: an opener that
    // sees the revision sees the header the creator wrote (and the zeroed ring).
    seg.words()[W_KIND].store(kind | (RECORDS_REVISION as u64) << 32, Ordering::Release);
}

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
    /// Opens an existing records segment read-write (able to publish and to let subscribers
    /// sleep on the futex).
    ///
    /// # Errors
    ///
    /// Those of [`RecordsBuilder::open`].
    pub fn open(name: &str) -> Result<Self> {
        RecordsBuilder::new(name).open()
    }

    /// Opens an existing records segment read-only: subscribers only.
    ///
    /// # Errors
    ///
    /// Those of [`RecordsBuilder::open`].
    pub fn open_read_only(name: &str) -> Result<Self> {
        RecordsBuilder::new(name).read_only().open()
    }

    /// Removes a records segment from `/dev/shm`. Processes that have it open keep their mapping.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidName`]; [`Error::NotFound`] if there is no such object;
    /// [`Error::PermissionDenied`]; [`Error::Io`] for any other system error.
    pub fn remove(name: &str) -> Result<()> {
        segment::remove(name)
    }

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
    pub(super) name: String,
    pub(super) bytes: u64,
    pub(super) permissions: u32,
    pub(super) access: Access,
    pub(super) trust: Trust,
}

impl RecordsBuilder {
    /// Starts a builder for records segment `name`.
    pub fn new(name: &str) -> Self {
        RecordsBuilder {
            name: name.to_owned(),
            bytes: DEFAULT_RING_BYTES,
            permissions: 0o600,
            access: Access::ReadWrite,
            trust: Trust::default(),
        }
    }

    /// Size of the byte ring: a power of two from 4 KiB to 16 GiB (never rounded). The largest
    /// record payload is a quarter of it, less its 16-byte header.
    pub fn bytes(mut self, bytes: u64) -> Self {
        self.bytes = bytes;
        self
    }

    /// Permission bits of a created segment (default `0o600`), applied exactly.
    pub fn permissions(mut self, mode: u32) -> Self {
        self.permissions = mode;
        self
    }

    /// Open read-only (subscribers only).
    pub fn read_only(mut self) -> Self {
        self.access = Access::ReadOnly;
        self
    }

    /// Accept a segment owned by another user.
    pub fn accept_other_owner(mut self) -> Self {
        self.trust.other_owner = true;
        self
    }

    /// Accept a segment writable by group or others.
    pub fn accept_shared_write(mut self) -> Self {
        self.trust.shared_write = true;
        self
    }

    pub(super) fn shape(&self) -> Result<(Shape, RingShape)> {
        let ring = RingShape::new(self.bytes)?;
        Ok((
            Shape {
                kind: SegmentKind::Records,
                geometry: ring.geometry(),
                mode: ProducerMode::Single,
                ty: TypeInfo::raw(),
                first_seq: 0,
            },
            ring,
        ))
    }

    /// Creates a new records segment; fails with [`Error::AlreadyExists`] if the name is taken.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidConfig`] for a ring size that is not a power of two from 4 KiB to 16 GiB;
    /// [`Error::InvalidName`]; [`Error::AlreadyExists`]; [`Error::PermissionDenied`];
    /// [`Error::NoSpace`] when `/dev/shm` is full; [`Error::Io`] for any other system error.
    pub fn create(self) -> Result<Records> {
        let (shape, ring) = self.shape()?;
        let seg = Segment::create(&self.name, shape, self.permissions)?;
        record_revision(&seg);
        Ok(Records {
            seg: Arc::new(seg),
            shape: ring,
        })
    }

    /// A records segment in this process's heap only (threads of one process, tests).
    ///
    /// # Errors
    ///
    /// [`Error::InvalidConfig`] for a ring size that is not a power of two from 4 KiB to 16 GiB.
    pub fn in_process(self) -> Result<Records> {
        let (shape, ring) = self.shape()?;
        let seg = Segment::heap(shape);
        record_revision(&seg);
        Ok(Records {
            seg: Arc::new(seg),
            shape: ring,
        })
    }

    /// Opens an existing records segment: the open pipeline (a records segment, not a bus), then
    /// the ring's own shape checks.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidName`]; [`Error::NotFound`]; [`Error::PermissionDenied`];
    /// [`Error::NotRegularFile`] (a symlink, FIFO, ... in its place); [`Error::ForeignOwner`] and
    /// [`Error::InsecureMode`] unless accepted; [`Error::Truncated`] or [`Error::TooLarge`];
    /// [`Error::BadMagic`] (not a shmbus segment); [`Error::NotInitialised`] (its creator did not
    /// finish); [`Error::AbiMismatch`]; [`Error::LayoutRevision`] (a records layout of another
    /// revision; a segment made before revisions were recorded has 0); [`Error::WrongKind`] if
    /// another kind of segment has the name; a corrupt header (the variants for which [`Error::is_corrupt`] holds), among them
    /// [`Error::BadProducerMode`] for a multi-producer header and [`Error::BadRing`] for a geometry
    /// that is no byte ring; and [`Error::Io`] for any other system error.
    pub fn open(self) -> Result<Records> {
        let expect = Expect {
            kind: SegmentKind::Records,
            ty: None,
        };
        let seg = Segment::open_expecting(&self.name, self.access, self.trust, &expect)?;
        if seg.mode != ProducerMode::Single {
            return Err(Error::BadProducerMode {
                name: self.name,
                word: seg.mode.to_word(),
            });
        }
        let shape = RingShape::from_geometry(&self.name, &seg.geometry)?;
        // The layout revision (kind word, hi32): 0 while a creator has not recorded it yet, or
        // for good in a segment made before revisions were recorded (another layout: refused).
        let deadline = Instant::now() + REVISION_WAIT;
        let found = loop {
            // ORDERING: pairs with the Release store in `record_revision`.
            let found = (load_acquire(&seg.words()[W_KIND]) >> 32) as u32;
            if found != 0 || Instant::now() >= deadline {
                break found;
            }
            std::thread::sleep(Duration::from_millis(1));
        };
        if found != RECORDS_REVISION {
            return Err(Error::LayoutRevision {
                name: self.name,
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
}
