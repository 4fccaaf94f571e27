//! The lanes handle and its builder: create and open.
use std::sync::Arc;

use super::layout::{LanesShape, OPEN, STATE_MASK, W_LANE_BYTES, W_LANE_COUNT};
use super::mirror::Mirror;
use super::{LaneConsumer, LaneMem, LanePublisher, LaneSet};
use crate::error::{Error, Result};
use crate::segment::header::{HeaderSnapshot, ProducerMode, SegmentKind, TypeInfo};
use crate::segment::kind::{by_name, constructors, option_setters, Blueprint, Kind, Options};
use crate::segment::{Expect, Segment, Shape};
use crate::sync::{AtomicU64, Ordering};

/// Lanes of a new segment unless [`LanesBuilder::lanes`] says otherwise.
pub const DEFAULT_LANES: u32 = 64;
/// Bytes per lane of a new segment unless [`LanesBuilder::lane_bytes`] says otherwise (64 KiB).
pub const DEFAULT_LANE_BYTES: u64 = 64 * 1024;

/// A handle on a lanes segment: a pool of single-producer byte rings ("lanes") that any number
/// of producers, in any process, each acquire for themselves, and that one consumer reads in
/// place (docs/design.md §17). Cheap to clone.
///
/// ```
/// use shmbus::lanes::{LaneEvent, LanesBuilder};
/// # let name = format!("doc-lanes-{}", std::process::id());
/// let lanes = LanesBuilder::new(&name).lanes(16).lane_bytes(1 << 16).create()?;
/// let mut consumer = lanes.consumer()?;
/// let mut producer = lanes.acquire()?;
/// producer.publish(b"hello")?;
/// match consumer.try_recv()? {
///     Some(LaneEvent::Record(r)) => assert_eq!((r.lane(), &r[..]), (producer.lane(), &b"hello"[..])),
///     other => panic!("expected a record, got {other:?}"),
/// }
/// # drop(producer);
/// # drop(consumer);
/// # shmbus::lanes::Lanes::remove(&name)?;
/// # Ok::<(), shmbus::Error>(())
/// ```
#[derive(Clone)]
pub struct Lanes {
    pub(super) seg: Arc<Segment>,
    pub(super) shape: LanesShape,
    /// The rings of an in-process segment, shared by its producers and consumer (a mapped
    /// segment's handles each map the rings they need from the segment's file).
    pub(super) heap_rings: Option<Arc<LaneMem>>,
}

impl std::fmt::Debug for Lanes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Lanes")
            .field("name", &self.seg.name())
            .field("lanes", &self.shape.lanes)
            .field("lane_bytes", &self.shape.lane_bytes)
            .finish()
    }
}

/// One lane as the inspector sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LaneInfo {
    /// The lane's number.
    pub lane: u32,
    /// Whether a producer holds it (and, on a shared segment, is alive).
    pub in_use: bool,
    /// The producer closed it (or died) and the consumer has not drained it yet.
    pub closing: bool,
    /// The pid of the lane's last producer (0: never used).
    pub pid: u32,
    /// Bytes written and not yet acknowledged.
    pub pending_bytes: u64,
    /// Bytes written to the lane since it was first used (records with their 8-byte headers
    /// and padding to whole words): its write position.
    pub written_bytes: u64,
    /// Records published on the lane since it was first used.
    pub published: u64,
    /// Records the consumer acknowledged.
    pub consumed: u64,
    /// Records the current (or last) session dropped because the lane was full.
    pub dropped: u64,
}

impl Lanes {
    by_name!(
        LanesBuilder,
        "lanes segment",
        read_write: "able to acquire lanes and consume",
        read_only: "for inspection only"
    );

    pub(super) fn set<'a>(&'a self, mem: &'a LaneMem) -> LaneSet<'a, LaneMem> {
        LaneSet {
            words: self.seg.words(),
            shape: self.shape,
            mem,
        }
    }

    /// Acquires a free lane for a producer in this process: the lane is this producer's until
    /// it is released, closed or dropped, or the process dies.
    ///
    /// # Errors
    ///
    /// [`Error::ReadOnly`] on a read-only handle; [`Error::LanesFull`] when every lane is held or
    /// still being drained; [`Error::LanesCorrupt`] if a free lane's positions contradict each
    /// other; [`Error::Io`] if a lock or the lane's mapping fails.
    pub fn acquire(&self) -> Result<LanePublisher> {
        LanePublisher::acquire(self)
    }

    /// Attaches the consumer (one at a time, in any process). It goes on from the positions its
    /// predecessor acknowledged.
    ///
    /// # Errors
    ///
    /// [`Error::ReadOnly`] on a read-only handle; [`Error::ConsumerExists`] while another
    /// consumer lives; [`Error::Io`] if the lock or the mapping of the rings fails.
    pub fn consumer(&self) -> Result<LaneConsumer> {
        LaneConsumer::attach(self)
    }

    /// The segment name.
    pub fn name(&self) -> &str {
        self.seg.name()
    }

    /// Number of lanes.
    pub fn lanes(&self) -> u32 {
        self.shape.lanes
    }

    /// Bytes per lane.
    pub fn lane_bytes(&self) -> u64 {
        self.shape.lane_bytes
    }

    /// Largest record payload: a record and its 8-byte header take the whole lane at most.
    pub fn max_record(&self) -> usize {
        self.shape.max_record()
    }

    /// Whether a consumer is attached (and alive).
    pub fn has_consumer(&self) -> bool {
        self.seg.producer_alive(0)
    }

    /// The pid the consumer registered, if one is attached.
    pub fn consumer_pid(&self) -> Option<u32> {
        self.has_consumer().then(|| self.seg.producer_pid(0))
    }

    /// Whether this handle mapped the segment read-only.
    pub fn is_read_only(&self) -> bool {
        !self.seg.is_writable()
    }

    /// A fresh read of the whole header.
    pub fn header(&self) -> HeaderSnapshot {
        self.seg.header()
    }

    /// Every lane's state, positions and counters, as stored (a consistent view of each word,
    /// not of the whole). Lanes whose producer died read as closing.
    pub fn lane_info(&self) -> Vec<LaneInfo> {
        let words = self.seg.words();
        let w = |i: u32, f: usize| words[self.shape.word(i, f)].load(Ordering::Relaxed);
        use super::layout::{L_CONSUMED, L_DROPS, L_PID, L_PUBLISHED, L_READ, L_STATE, L_WRITE};
        (0..self.shape.lanes)
            .map(|lane| {
                let state = w(lane, L_STATE) & STATE_MASK;
                let alive = state == OPEN && self.producer_alive(lane);
                LaneInfo {
                    lane,
                    in_use: alive,
                    closing: state != super::layout::FREE && !alive,
                    pid: w(lane, L_PID) as u32,
                    pending_bytes: w(lane, L_WRITE).saturating_sub(w(lane, L_READ)),
                    written_bytes: w(lane, L_WRITE),
                    published: w(lane, L_PUBLISHED),
                    consumed: w(lane, L_CONSUMED),
                    dropped: w(lane, L_DROPS),
                }
            })
            .collect()
    }

    /// Whether lane `lane`'s producer lives: its lock is held (a shared segment), or it is
    /// open (an in-process one, whose producers never die without closing).
    pub(super) fn producer_alive(&self, lane: u32) -> bool {
        match self.seg.lock_fd() {
            Some(fd) => crate::segment::lock_held(fd, super::layout::lane_lock_byte(lane)),
            None => true,
        }
    }

    /// The rings of lanes `first..first + count`, for a handle of this process.
    pub(super) fn map_rings(&self, first: u32, count: u32) -> Result<Arc<LaneMem>> {
        if let Some(rings) = &self.heap_rings {
            return Ok(rings.clone());
        }
        let fd = self
            .seg
            .lock_fd()
            .expect("a segment without rings of its own is mapped");
        let io = |source| Error::Io {
            name: self.seg.name().to_owned(),
            op: "mmap (mirrored lanes)",
            source,
        };
        #[cfg(miri)]
        {
            let _ = (fd, first, count, io);
            unreachable!("miri runs in-process segments only");
        }
        #[cfg(not(miri))]
        Mirror::map(
            fd,
            self.shape.rings_offset(),
            self.shape.lane_bytes,
            first,
            count,
            self.seg.is_writable(),
        )
        .map(Arc::new)
        .map_err(io)
    }
}

/// Creates or opens a lanes segment:
///
/// ```
/// # let name = format!("doc-lanes-builder-{}", std::process::id());
/// let lanes = shmbus::lanes::LanesBuilder::new(&name).lanes(8).lane_bytes(1 << 16).create()?;
/// assert_eq!((lanes.lanes(), lanes.max_record()), (8, (1 << 16) - 16));
/// # shmbus::lanes::Lanes::remove(&name)?;
/// # Ok::<(), shmbus::Error>(())
/// ```
#[derive(Clone, Debug)]
#[must_use]
pub struct LanesBuilder {
    pub(super) opts: Options,
    pub(super) lanes: u32,
    pub(super) lane_bytes: u64,
}

impl LanesBuilder {
    /// Starts a builder for lanes segment `name`.
    pub fn new(name: &str) -> Self {
        LanesBuilder {
            opts: Options::new(name),
            lanes: DEFAULT_LANES,
            lane_bytes: DEFAULT_LANE_BYTES,
        }
    }

    /// Number of lanes, 1 to 4096 (default 64): the most producers attached at once.
    pub fn lanes(mut self, lanes: u32) -> Self {
        self.lanes = lanes;
        self
    }

    /// Bytes per lane: a power of two from 4 KiB to 1 GiB and a multiple of the page size
    /// (default 64 KiB). Each process that maps a lane maps it twice (docs/design.md §17).
    pub fn lane_bytes(mut self, bytes: u64) -> Self {
        self.lane_bytes = bytes;
        self
    }

    option_setters!();

    constructors!(
        Lanes,
        "lanes segment",
        config: "[`Error::InvalidConfig`] for a lane count outside 1..=4096, or a lane size that is not a power of two from 4 KiB to 1 GiB and a multiple of the page size.",
        open: "[`Error::LanesCorrupt`] if its lane words or geometry are not those of a lanes segment, and [`Error::InvalidConfig`] if this host's page size cannot map its lanes twice.",
        same: "lane count and lane size"
    );
}

impl Kind for LanesBuilder {
    type Handle = Lanes;
    type Own = LanesShape;

    fn options(&self) -> &Options {
        &self.opts
    }

    fn blueprint(&self) -> Result<Blueprint<LanesShape>> {
        let lanes = LanesShape::new(self.lanes, self.lane_bytes)?;
        let shape = Shape {
            kind: SegmentKind::Lanes,
            geometry: lanes.geometry(),
            mode: ProducerMode::Multi,
            ty: TypeInfo::raw(),
            first_seq: 0,
        };
        Ok(Blueprint::new(shape, lanes))
    }

    /// The lane count and size, before the magic publishes the segment.
    fn init(&self, shape: &LanesShape, words: &[AtomicU64]) {
        words[W_LANE_COUNT].store(shape.lanes as u64, Ordering::Relaxed);
        words[W_LANE_BYTES].store(shape.lane_bytes, Ordering::Relaxed);
    }

    fn expect(&self) -> Expect {
        Expect {
            kind: SegmentKind::Lanes,
            ty: None,
        }
    }

    fn adopt(&self, seg: Segment) -> Result<Lanes> {
        let name = &self.opts.name;
        // Stored before the magic, which the open pipeline loaded with Acquire.
        let lanes = seg.words()[W_LANE_COUNT].load(Ordering::Relaxed);
        let lane_bytes = seg.words()[W_LANE_BYTES].load(Ordering::Relaxed);
        let shape = LanesShape::from_words(name, &seg.geometry, lanes, lane_bytes)?;
        if seg.mode != ProducerMode::Multi {
            return Err(Error::BadProducerMode {
                name: name.clone(),
                word: seg.mode.to_word(),
            });
        }
        let heap_rings = if seg.is_shared() {
            None
        } else {
            Some(Arc::new(heap_rings(name, shape)?))
        };
        Ok(Lanes {
            seg: Arc::new(seg),
            shape,
            heap_rings,
        })
    }

    fn differs(&self, wanted: &Blueprint<LanesShape>, l: &Lanes) -> Option<(String, String)> {
        let (found, wanted) = (l.shape, wanted.own);
        (found != wanted).then(|| {
            let say = |s: LanesShape| format!("{} lanes of {} bytes", s.lanes, s.lane_bytes);
            (say(found), say(wanted))
        })
    }
}

/// The rings of an in-process segment: a memory file of this process's, mirrored (or, under
/// miri, which cannot map files, two heap copies per lane).
fn heap_rings(name: &str, shape: LanesShape) -> Result<LaneMem> {
    #[cfg(miri)]
    {
        let _ = name;
        Ok(super::mirror::Twin::new(shape.lane_bytes, shape.lanes))
    }
    #[cfg(not(miri))]
    Mirror::anonymous(shape.lane_bytes, shape.lanes).map_err(|source| Error::Io {
        name: name.to_owned(),
        op: "memfd_create and mmap (mirrored lanes)",
        source,
    })
}
