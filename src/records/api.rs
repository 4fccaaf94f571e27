//! The user API of records segments: a handle and its builder, the publisher, the subscriber.
//! Mirrors the bus's (`crate::bus`, `crate::bus::publisher`, `crate::bus`).

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::layout::{RingShape, RECORDS_REVISION};
use super::writer::Pending;
use super::{Polled, Reader, RecordRing, Writer};
use crate::bus::{LapPolicy, Start, SubscriberStats};
use crate::error::{Error, Result};
use crate::segment::header::{HeaderSnapshot, ProducerMode, SegmentKind, TypeInfo, W_KIND};
use crate::segment::liveness::SegmentLiveness;
use crate::segment::{self, Access, Expect, LockKind, Segment, Shape, Trust};
use crate::sync::{load_acquire, Ordering};
use crate::wait::{self, SysFutex, Wait};

/// How long `open` waits for a new segment's creator to record the layout revision.
const REVISION_WAIT: Duration = Duration::from_millis(100);

/// Records the layout revision in the kind word's hi32 of a segment just created
/// (docs/design.md §15, "Layout revision").
fn record_revision(seg: &Segment) {
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
    seg: Arc<Segment>,
    shape: RingShape,
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

    fn ring(&self) -> RecordRing<'_> {
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
    name: String,
    bytes: u64,
    permissions: u32,
    access: Access,
    trust: Trust,
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

    fn shape(&self) -> Result<(Shape, RingShape)> {
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

/// Counters of a record publisher.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RecordPublisherStats {
    /// Records published.
    pub published: u64,
    /// Payload bytes published.
    pub bytes: u64,
}

/// The producer of a records segment (one at a time). Publishing never waits, allocates or
/// makes a system call unless a subscriber sleeps. Detaches on drop.
pub struct RecordPublisher {
    seg: Arc<Segment>,
    shape: RingShape,
    writer: Writer,
    /// Holds the producer locks until drop (or until the kernel drops them at death).
    lock: Option<crate::segment::LockFd>,
    futex: SysFutex,
    strong_fence: bool,
    stats: RecordPublisherStats,
}

impl std::fmt::Debug for RecordPublisher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RecordPublisher")
            .field("records", &self.seg.name())
            .field("stats", &self.stats)
            .finish()
    }
}

/// A producer stamps its activity once in this many publishes (docs/design.md §4).
const HEARTBEAT_EVERY: u64 = 1024;

impl RecordPublisher {
    fn attach(seg: Arc<Segment>, shape: RingShape) -> Result<Self> {
        if !seg.is_writable() {
            return Err(Error::ReadOnly {
                name: seg.name().to_owned(),
            });
        }
        let pid = std::process::id();
        let busy = |seg: &Segment| Error::ProducerExists {
            name: seg.name().to_owned(),
            pid: seg.producer_alive(0).then(|| seg.producer_pid(0)),
        };
        let lock = seg.reopen_for_lock()?;
        match &lock {
            Some(fd) => {
                let io = |e| Error::Io {
                    name: seg.name().to_owned(),
                    op: "fcntl(F_OFD_SETLK)",
                    source: e,
                };
                // One producer: the exclusive lock on byte 0, and entry 0's byte, which every
                // earlier producer (all dead now) released with its life.
                if !segment::try_lock(fd, 0, LockKind::Exclusive).map_err(io)?
                    || !segment::try_lock(fd, 1, LockKind::Exclusive).map_err(io)?
                {
                    return Err(busy(&seg));
                }
            }
            None => {
                if !seg.claim_heap_entry(0, pid) {
                    return Err(busy(&seg));
                }
            }
        }
        let ring = RecordRing::new(seg.words(), shape);
        let writer = match Writer::attach(&ring) {
            Ok(w) => w,
            Err(e) => {
                if lock.is_none() {
                    seg.release_heap_entry(0);
                }
                return Err(Error::RecordsInconsistent {
                    name: seg.name().to_owned(),
                    tail: e.tail,
                    intent: e.intent,
                    head: e.head,
                    cursor: e.cursor,
                });
            }
        };
        seg.set_producer(0, pid, segment::process_start_ticks(pid).unwrap_or(0));
        seg.producer_heartbeat(0)
            .store(segment::coarse_now_ns(), crate::sync::Ordering::Relaxed);
        Ok(RecordPublisher {
            futex: SysFutex::of(&seg),
            strong_fence: wait::producer_fences(&seg),
            seg,
            shape,
            writer,
            lock,
            stats: RecordPublisherStats::default(),
        })
    }

    #[doc(hidden)]
    pub fn writer_dbg(&self) -> String {
        format!("{:?}", self.writer)
    }

    /// Largest record payload, in bytes.
    pub fn max_record(&self) -> usize {
        self.shape.max_payload
    }

    /// Counters so far.
    pub fn stats(&self) -> RecordPublisherStats {
        self.stats
    }

    /// The sequence number the next record gets.
    pub fn next_seq(&self) -> u64 {
        self.writer.next_seq()
    }

    /// Every publish's first check: the length, and that this process made the attachment (a
    /// forked child may not write under its parent's producer lock, docs/design.md §10).
    fn check_len(&self, len: usize) -> Result<()> {
        if self.lock.as_ref().is_some_and(|l| l.forked()) {
            return Err(Error::UsedAfterFork {
                name: self.seg.name().to_owned(),
            });
        }
        if len > self.shape.max_payload {
            return Err(Error::MessageTooLarge {
                len,
                capacity: self.shape.max_payload,
            });
        }
        Ok(())
    }

    /// Begin, fill (returns whether to commit or abandon), finish, wake.
    #[inline]
    fn publish_inner(
        &mut self,
        len: usize,
        type_id: u32,
        fill: impl FnOnce(&Writer, &RecordRing<'_>, &Pending) -> bool,
    ) -> u64 {
        let ring = RecordRing::new(self.seg.words(), self.shape);
        let p = self.writer.begin(&ring, len, type_id);
        if fill(&self.writer, &ring, &p) {
            self.writer.commit(&ring, p);
            self.stats.published += 1;
            self.stats.bytes += len as u64;
        } else {
            self.writer.abandon(&ring, p);
        }
        wait::wake_after_publish(self.seg.wake_words(), &self.futex, self.strong_fence);
        if self.stats.published % HEARTBEAT_EVERY == 0 {
            self.heartbeat();
        }
        p.seq
    }

    #[cold]
    fn heartbeat(&self) {
        self.seg
            .producer_heartbeat(0)
            .store(segment::coarse_now_ns(), crate::sync::Ordering::Relaxed);
    }

    /// Publishes `bytes` as a record of type 0; returns its sequence number.
    ///
    /// # Errors
    /// [`Error::MessageTooLarge`] if `bytes` is longer than [`RecordPublisher::max_record`].
    #[inline]
    pub fn publish_bytes(&mut self, bytes: &[u8]) -> Result<u64> {
        self.publish_record(0, bytes)
    }

    /// Publishes `bytes` as a record of type `type_id` (any number the application gives
    /// meaning to; subscribers see it with the record).
    ///
    /// # Errors
    /// [`Error::MessageTooLarge`] if `bytes` is longer than [`RecordPublisher::max_record`];
    /// [`Error::UsedAfterFork`] in a forked child of the process that attached.
    #[inline]
    pub fn publish_record(&mut self, type_id: u32, bytes: &[u8]) -> Result<u64> {
        self.check_len(bytes.len())?;
        Ok(self.publish_inner(bytes.len(), type_id, |w, ring, p| {
            w.write_bytes(ring, p, bytes);
            true
        }))
    }

    /// Writes a record of exactly `len` bytes in place: `fill` gets a [`RecordWriter`] whose
    /// writes are atomic stores straight into the ring; bytes it does not write read as zero.
    /// Returns the sequence number and what `fill` returned. If `fill` panics, the record is
    /// published as abandoned (subscribers count it lost and never see it) and the panic resumes.
    ///
    /// # Errors
    /// [`Error::MessageTooLarge`] if `len` exceeds [`RecordPublisher::max_record`]; `fill` does
    /// not run then.
    pub fn publish_with<R>(
        &mut self,
        len: usize,
        fill: impl FnOnce(&mut RecordWriter<'_>) -> R,
    ) -> Result<(u64, R)> {
        self.check_len(len)?;
        let mut out = None;
        let mut panicked = None;
        let seq = self.publish_inner(len, 0, |writer, ring, p| {
            let mut w = RecordWriter {
                writer,
                ring: *ring,
                pending: *p,
                written: 0,
            };
            match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| fill(&mut w))) {
                Ok(o) => {
                    w.zero_rest();
                    out = Some(o);
                    true
                }
                Err(payload) => {
                    panicked = Some(payload);
                    false
                }
            }
        });
        if let Some(payload) = panicked {
            std::panic::resume_unwind(payload);
        }
        let out = out.expect("fill returned: the record is committed");
        Ok((seq, out))
    }
}

impl Drop for RecordPublisher {
    fn drop(&mut self) {
        if !self.seg.is_shared() {
            self.seg.release_heap_entry(0);
        }
        // Shared segments: closing the lock descriptor releases the locks. Sleepers are woken
        // so they notice that the producer is gone.
        wait::wake_sleepers(self.seg.wake_words(), &self.futex);
    }
}

/// Writes one record in place with atomic word stores (never a `&mut [u8]` into shared memory,
/// which readers race on; docs/design.md §8). Its length is fixed when it is begun.
pub struct RecordWriter<'a> {
    writer: &'a Writer,
    ring: RecordRing<'a>,
    pending: Pending,
    /// The furthest byte written; bytes from here to the length are zeroed at the end.
    written: usize,
}

impl RecordWriter<'_> {
    /// The record's length in bytes.
    pub fn len(&self) -> usize {
        self.pending.len
    }

    /// Whether the record is empty (zero bytes long).
    pub fn is_empty(&self) -> bool {
        self.pending.len == 0
    }

    /// Sets the record's type id (0 unless set).
    pub fn set_type_id(&mut self, type_id: u32) {
        self.writer.set_type(&self.ring, &self.pending, type_id);
    }

    /// Writes `bytes` at byte `offset` of the record. Bytes between the furthest byte written
    /// so far and `offset` become zero.
    ///
    /// # Errors
    /// [`Error::MessageTooLarge`] if the write would end past the record's length; nothing is
    /// written then.
    pub fn write_at(&mut self, offset: usize, bytes: &[u8]) -> Result<()> {
        let len = self.pending.len;
        let Some(end) = offset.checked_add(bytes.len()).filter(|&e| e <= len) else {
            return Err(Error::MessageTooLarge {
                len: offset.saturating_add(bytes.len()),
                capacity: len,
            });
        };
        if offset > self.written {
            self.zero(self.written, offset);
        }
        self.store(offset, bytes);
        self.written = self.written.max(end);
        Ok(())
    }

    /// Appends `bytes` after the furthest byte written.
    ///
    /// # Errors
    /// [`Error::MessageTooLarge`] if the record would exceed its length.
    pub fn push(&mut self, bytes: &[u8]) -> Result<()> {
        self.write_at(self.written, bytes)
    }

    fn zero_rest(&mut self) {
        if self.written < self.pending.len {
            self.zero(self.written, self.pending.len);
        }
    }

    fn zero(&mut self, from: usize, to: usize) {
        // Unwritten bytes would otherwise show what the ring held a lap ago.
        const ZEROS: [u8; 64] = [0; 64];
        let mut pos = from;
        while pos < to {
            let n = (to - pos).min(ZEROS.len());
            self.store(pos, &ZEROS[..n]);
            pos += n;
        }
    }

    /// Stores `bytes` at `offset` (within the length) word by word.
    fn store(&mut self, offset: usize, bytes: &[u8]) {
        let (mut pos, mut rest) = (offset, bytes);
        while !rest.is_empty() {
            let word = self.writer.payload_word(&self.ring, &self.pending, pos / 8);
            let skip = pos % 8;
            let take = rest.len().min(8 - skip);
            // Bytes of this word outside the write keep what this record holds there.
            let mut b = if skip == 0 && take == 8 {
                [0u8; 8]
            } else {
                word.load(crate::sync::Ordering::Relaxed).to_ne_bytes()
            };
            b[skip..skip + take].copy_from_slice(&rest[..take]);
            word.store(u64::from_ne_bytes(b), crate::sync::Ordering::Relaxed);
            pos += take;
            rest = &rest[take..];
        }
    }
}

/// One result of receiving a record.
#[derive(Debug)]
pub enum RecordRecv<'a> {
    /// A whole record, copied out of the ring.
    Record(Record<'a>),
    /// Nothing new.
    Empty,
    /// The subscriber fell behind (or a fill panicked): exactly `lost` records were skipped.
    Lapped {
        /// How many records were skipped.
        lost: u64,
    },
    /// No producer is attached and nothing is left to read. Not final.
    Closed,
}

/// A received record: a borrow of the subscriber's own buffer, valid until the next receive.
#[derive(Debug)]
pub struct Record<'a> {
    seq: u64,
    type_id: u32,
    bytes: &'a [u8],
}

impl<'a> Record<'a> {
    /// The record's sequence number.
    pub fn seq(&self) -> u64 {
        self.seq
    }

    /// The record's type id, as its publisher set it.
    pub fn type_id(&self) -> u32 {
        self.type_id
    }

    /// The record's bytes.
    pub fn bytes(&self) -> &'a [u8] {
        self.bytes
    }
}

/// Spins of a blocking receive before it yields or sleeps.
const SPINS: u32 = 64;
/// How often a waiting subscriber looks at the intent, the cursor and the producers.
const CHECK_PERIOD: Duration = Duration::from_millis(5);
/// How often a read-only subscriber polls while it "sleeps".
const READ_ONLY_POLL: Duration = Duration::from_millis(1);

/// A consumer of a records segment. Keeps its position in its own process.
pub struct RecordSubscriber {
    seg: Arc<Segment>,
    shape: RingShape,
    reader: Reader,
    /// Private copy-out buffer, one largest record long.
    buf: Box<[u64]>,
    wait: Wait,
    futex: SysFutex,
    /// The registration with the segment's waker thread, once readiness or `recv_async` is used
    /// (docs/design.md §14).
    #[cfg(not(loom))]
    ready: Option<crate::readiness::Armed>,
}

impl std::fmt::Debug for RecordSubscriber {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RecordSubscriber")
            .field("records", &self.seg.name())
            .field("next", &self.reader.next_seq())
            .field("stats", &self.reader.stats())
            .finish()
    }
}

impl RecordSubscriber {
    fn new(seg: Arc<Segment>, shape: RingShape, start: Start) -> Self {
        let reader = Reader::new(&RecordRing::new(seg.words(), shape), start);
        RecordSubscriber {
            reader,
            buf: vec![0u64; shape.max_payload.div_ceil(8)].into_boxed_slice(),
            // Read-only handles too: their sleep polls every millisecond (docs/design.md §7).
            wait: Wait::Sleep,
            futex: SysFutex::of(&seg),
            seg,
            shape,
            #[cfg(not(loom))]
            ready: None,
        }
    }

    /// Sets where this subscriber resumes after a lap.
    pub fn lap_policy(mut self, policy: LapPolicy) -> Self {
        self.reader.set_policy(policy);
        self
    }

    /// Sets how blocking receives wait (default [`Wait::Sleep`]: on a read-only handle, which
    /// may not raise the waiter flag, it polls every millisecond after its spin).
    pub fn wait_strategy(mut self, wait: Wait) -> Self {
        self.wait = wait;
        self
    }

    /// The next sequence number this subscriber expects.
    pub fn next_seq(&self) -> u64 {
        self.reader.next_seq()
    }

    /// Counters so far: `received + lost` is the number of records published from the start on
    /// that this subscriber moved past.
    pub fn stats(&self) -> SubscriberStats {
        self.reader.stats()
    }

    #[doc(hidden)]
    pub fn reader_dbg(&self) -> String {
        format!("{:?}", self.reader)
    }

    /// Receives without waiting.
    #[inline]
    pub fn try_recv(&mut self) -> RecordRecv<'_> {
        let live = SegmentLiveness::observer(&self.seg);
        let ring = RecordRing::new(self.seg.words(), self.shape);
        let p = self.reader.poll(&ring, &live, &mut self.buf);
        self.finish(p)
    }

    /// Receives, waiting as long as it takes with the subscriber's [`Wait`] strategy.
    pub fn recv(&mut self) -> RecordRecv<'_> {
        let p = self.wait_for(None);
        self.finish(p)
    }

    /// Like [`RecordSubscriber::recv`], giving up with [`RecordRecv::Empty`] after `timeout`.
    pub fn recv_timeout(&mut self, timeout: Duration) -> RecordRecv<'_> {
        let p = self.wait_for(Instant::now().checked_add(timeout));
        self.finish(p)
    }

    fn wait_for(&mut self, deadline: Option<Instant>) -> Polled {
        let seg = &*self.seg;
        let ring = RecordRing::new(seg.words(), self.shape);
        let live = SegmentLiveness::observer(seg);
        for _ in 0..SPINS {
            match self.reader.poll(&ring, &live, &mut self.buf) {
                Polled::Empty => crate::sync::spin_hint(),
                p => return p,
            }
        }
        let mut last_check = Instant::now();
        let started = last_check;
        let mut first = true;
        loop {
            if !first {
                match self.reader.poll_checked(&ring, &live, &mut self.buf) {
                    Polled::Empty => {}
                    p => return p,
                }
            }
            first = false;
            loop {
                let now = Instant::now();
                if deadline.is_some_and(|d| now >= d) {
                    return Polled::Empty;
                }
                if now.duration_since(last_check) >= CHECK_PERIOD {
                    last_check = now;
                    break;
                }
                match self.wait {
                    Wait::Spin | Wait::Yield => {
                        for _ in 0..SPINS {
                            match self.reader.poll(&ring, &live, &mut self.buf) {
                                Polled::Empty => {}
                                p => return p,
                            }
                            if self.wait == Wait::Spin {
                                crate::sync::spin_hint();
                            } else {
                                std::thread::yield_now();
                            }
                        }
                    }
                    Wait::Sleep if now.duration_since(started) < wait::SPIN_BEFORE_SLEEP => {
                        // docs/design.md §7, "Spin, then sleep".
                        for _ in 0..SPINS {
                            match self.reader.poll(&ring, &live, &mut self.buf) {
                                Polled::Empty => crate::sync::spin_hint(),
                                p => return p,
                            }
                        }
                    }
                    Wait::Sleep => {
                        let slice = deadline.map_or(CHECK_PERIOD, |d| {
                            d.saturating_duration_since(now).min(CHECK_PERIOD)
                        });
                        let ready = || self.reader.ready(&ring);
                        if seg.is_writable() {
                            wait::sleep(seg.wake_words(), &self.futex, Some(slice), ready);
                        } else if !ready() {
                            std::thread::sleep(slice.min(READ_ONLY_POLL));
                        }
                        match self.reader.poll(&ring, &live, &mut self.buf) {
                            Polled::Empty => {}
                            p => return p,
                        }
                    }
                }
            }
        }
    }

    fn finish(&self, p: Polled) -> RecordRecv<'_> {
        match p {
            Polled::Record { seq, len, type_id } => RecordRecv::Record(Record {
                seq,
                type_id,
                bytes: &bytemuck::cast_slice(&self.buf)[..len],
            }),
            Polled::Empty => RecordRecv::Empty,
            Polled::Lapped { lost } => RecordRecv::Lapped { lost },
            Polled::Closed => RecordRecv::Closed,
        }
    }
}

/// What `RecordSubscriber::recv_async` (feature `tokio`) gives: an owned record, or a loss.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RecordEvent {
    /// A whole record, copied out.
    Record {
        /// Its sequence number.
        seq: u64,
        /// Its type id, as its publisher set it.
        type_id: u32,
        /// Its bytes.
        bytes: Vec<u8>,
    },
    /// The subscriber fell behind (or a fill panicked): exactly `lost` records were skipped.
    Lapped {
        /// How many records were skipped.
        lost: u64,
    },
}

/// Records subscribers' readiness (docs/design.md §14): the cursor (records committed or
/// abandoned, stored with Release after the record's version word) is past the sequence the
/// subscriber expects, so its next receive finds that record, or finds it overwritten (a lap).
/// Padding needs no case: the receive follows it to the record after.
#[cfg(not(loom))]
#[derive(Clone, Copy)]
pub(crate) struct RecordsWatch(RingShape);

/// The ring as the records waker sees it.
#[cfg(not(loom))]
pub(crate) struct RecordsTarget<'a>(RecordRing<'a>);

#[cfg(not(loom))]
impl crate::readiness::Watch for RecordsWatch {
    type Target<'a> = RecordsTarget<'a>;

    fn target(self, seg: &Segment) -> RecordsTarget<'_> {
        RecordsTarget(RecordRing::new(seg.words(), self.0))
    }

    /// The publisher bumps these after every commit or abandon.
    fn words(seg: &Segment) -> wait::WakeWords<'_> {
        seg.wake_words()
    }
}

#[cfg(not(loom))]
impl crate::readiness::Target for RecordsTarget<'_> {
    #[inline]
    fn ready(&self, e: u64) -> bool {
        crate::readiness::ahead(self.0.cursor(), e)
    }

    /// A publisher that died mid-write leaves the cursor at `e`; the liveness look reports the
    /// segment closed, and a new publisher's first record moves the cursor on.
    fn stalled(&self, _: u64) -> bool {
        false
    }

    fn closes(&self) -> bool {
        true
    }
}

/// Event-loop receive: the readiness registration (docs/design.md §14).
#[cfg(not(loom))]
impl RecordSubscriber {
    /// This subscriber with a file descriptor an event loop can wait on: see
    /// [`crate::records::RecordReadiness`]. Starts this segment handle's waker thread if it has
    /// none (one per handle in a process, shared by its subscribers). Read-only handles work
    /// too: their waker polls every millisecond while armed.
    ///
    /// # Errors
    ///
    /// [`Error::Io`] if the eventfd cannot be made (`op` "eventfd": too many open files) or the
    /// waker thread cannot be started (`op` "start the readiness thread").
    pub fn into_readiness(mut self) -> Result<crate::readiness::RecordReadiness> {
        self.armed()?;
        Ok(crate::readiness::RecordReadiness::new(self))
    }

    /// The registration, made on first use.
    pub(crate) fn armed(&mut self) -> Result<&mut crate::readiness::Armed> {
        if self.ready.is_none() {
            let watch = RecordsWatch(self.shape);
            self.ready = Some(crate::readiness::Armed::watching(&self.seg, watch)?);
        }
        Ok(self.ready.as_mut().expect("set just above"))
    }

    /// The registration, which callers made.
    pub(crate) fn registration(&self) -> &crate::readiness::Armed {
        self.ready
            .as_ref()
            .expect("callers register the subscriber first")
    }

    /// Ends the registration.
    pub(crate) fn disarm(&mut self) {
        self.ready = None;
    }

    /// Receives without waiting; when nothing is there, arms the registration (which must
    /// exist) so that its eventfd becomes readable once something is. After a signal for a
    /// closed segment, looks at the intent, the cursor and the producer at once.
    pub(crate) fn try_recv_armed(&mut self) -> RecordRecv<'_> {
        let armed = self
            .ready
            .as_ref()
            .expect("callers register the subscriber first");
        let live = SegmentLiveness::observer(&self.seg);
        let ring = RecordRing::new(self.seg.words(), self.shape);
        let p = if armed.take_check() {
            self.reader.poll_checked(&ring, &live, &mut self.buf)
        } else {
            self.reader.poll(&ring, &live, &mut self.buf)
        };
        match p {
            Polled::Empty => armed.arm(self.reader.next_seq()),
            Polled::Closed => armed.closed(self.reader.next_seq()),
            Polled::Record { .. } | Polled::Lapped { .. } => {}
        }
        self.finish(p)
    }
}

/// Awaiting a records subscriber in a tokio task (feature `tokio`, docs/design.md §14).
#[cfg(all(feature = "tokio", not(loom)))]
impl RecordSubscriber {
    /// Receives, waiting without blocking the thread: the next record, owned, or a lap with
    /// its exact loss, or `Ok(None)` when no publisher is attached and everything intact has
    /// been received (as [`RecordRecv::Closed`]; reported once per closure, then this waits for
    /// the next record).
    ///
    /// Cancel-safe: nothing is consumed unless this returns it, so it can be a `select!`
    /// branch. The first call registers the subscriber with this handle's waker thread and the
    /// current runtime's reactor.
    ///
    /// # Errors
    ///
    /// [`Error::Io`] when called outside a tokio runtime, when the eventfd or the waker thread
    /// cannot be made (see [`RecordSubscriber::into_readiness`]), or when the reactor fails.
    ///
    /// # Panics
    ///
    /// Inside a tokio runtime built without I/O (`enable_io`), as tokio's own I/O types do.
    pub async fn recv_async(&mut self) -> Result<Option<RecordEvent>> {
        crate::readiness::tokio::register(self.armed()?, "recv_async")?;
        loop {
            match self.try_recv_armed() {
                RecordRecv::Record(r) => {
                    return Ok(Some(RecordEvent::Record {
                        seq: r.seq(),
                        type_id: r.type_id(),
                        bytes: r.bytes().to_vec(),
                    }))
                }
                RecordRecv::Lapped { lost } => return Ok(Some(RecordEvent::Lapped { lost })),
                RecordRecv::Closed => return Ok(None),
                RecordRecv::Empty => {}
            }
            crate::readiness::tokio::readable(self.registration()).await?;
        }
    }
}
