//! The queue handle and its builder: create, open, the participant table as users see it.
use std::marker::PhantomData;
use std::sync::Arc;
use std::time::Duration;

use crate::error::{Error, Result};
use crate::segment::header::{
    Geometry, HeaderSnapshot, ProducerMode, SegmentKind, TypeInfo, MAX_PRODUCERS,
};
use crate::segment::kind::{self, by_name, constructors, option_setters, Blueprint, Kind, Options};
use crate::segment::payload::{Payload, Raw};
use crate::segment::{Expect, Segment, Shape};
use crate::sync::{AtomicU64, Ordering};
use crate::wait::Wait;

use super::inspect::{find_holds, QueueHold};
use super::layout::W_Q_STALL_BOUND;
use super::participant::{closed, role_word, stall_bound_ns, Participant, Role, Stuck};
use super::protocol::{QueueRing, Receiver, Repair, Sender};
use super::receiver::{QueueReceiver, ReceiverStats};
use super::sender::{QueueSender, SenderStats};

/// Items a new queue holds unless [`QueueBuilder::capacity`] says otherwise.
pub const DEFAULT_QUEUE_CAPACITY: u64 = 1024;
/// Bytes per item of a new raw queue unless [`QueueBuilder::item_size`] says otherwise.
pub const DEFAULT_ITEM_SIZE: usize = 240;

/// One entry of a queue's participant table, as [`Queue::participants`] reports it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ParticipantInfo {
    /// The table entry.
    pub index: u32,
    /// The pid it recorded.
    pub pid: u32,
    /// Sender or receiver (`None`: an entry a bus producer or an unknown writer left).
    pub role: Option<Role>,
    /// Whether its process still holds the entry.
    pub alive: bool,
}

/// Queue-wide repair counters, kept in the segment.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct QueueTotals {
    /// Positions claimed by senders that died before publishing: receivers passed over them.
    pub skipped: u64,
    /// Items claimed by receivers that died before finishing them: counted lost, never
    /// delivered again.
    pub lost: u64,
    /// Positions passed because a live participant held them past the stall bound: a sender's
    /// (its item is sent again when it runs) or a receiver's slot routed around (it keeps its
    /// item). Nothing is lost or delivered twice by a pass (docs/design.md §11, "Stalls").
    pub passed: u64,
}

/// A handle on a named work queue (or an in-process one): a bounded multi-producer,
/// multi-consumer queue in which each item goes to exactly one receiver. Cheap to clone;
/// senders and receivers made from it keep the mapping alive.
///
/// ```
/// # let name = format!("doc-queue-{}", std::process::id());
/// use shmbus::Queue;
///
/// let queue = Queue::builder(&name).capacity(64).item_size(32).create()?;
/// let mut tx = queue.sender()?;
/// // Another process: Queue::open(&name)?.receiver()?
/// let mut rx = queue.receiver()?;
/// tx.try_send(b"job 1").unwrap();
/// assert_eq!(rx.try_recv(), Some(&b"job 1"[..]));
/// assert_eq!(rx.try_recv(), None);
/// # Queue::remove(&name)?;
/// # Ok::<(), shmbus::Error>(())
/// ```
pub struct Queue<T: Payload = Raw> {
    pub(super) seg: Arc<Segment>,
    pub(super) _type: PhantomData<fn() -> T>,
}

impl<T: Payload> Clone for Queue<T> {
    fn clone(&self) -> Self {
        Queue {
            seg: self.seg.clone(),
            _type: PhantomData,
        }
    }
}

impl<T: Payload> std::fmt::Debug for Queue<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Queue")
            .field("name", &self.seg.name())
            .field("capacity", &self.seg.geometry.slot_count)
            .field("item_size", &self.seg.geometry.capacity)
            .field("type", &self.seg.ty.name)
            .finish()
    }
}

impl Queue<Raw> {
    /// A builder for the queue `name`.
    pub fn builder(name: &str) -> QueueBuilder<Raw> {
        QueueBuilder::new(name)
    }

    by_name!(
        QueueBuilder,
        "queue",
        read_write: "able to send and receive",
        read_only: "to look at its length, positions and participants; such a handle can neither send nor receive"
    );
}

impl<T: Payload> Queue<T> {
    pub(super) fn ring(&self) -> QueueRing<'_> {
        QueueRing::new(self.seg.words(), self.seg.geometry)
    }

    /// Attaches a sender (one entry of the 32 the queue's senders and receivers share).
    ///
    /// # Errors
    ///
    /// [`Error::TypeMismatch`] for a raw handle on a typed queue or the reverse;
    /// [`Error::ReadOnly`] on a read-only handle; [`Error::TooManyParticipants`] when 32 senders
    /// and receivers live; [`Error::Io`] if the entry's lock cannot be taken for another reason.
    pub fn sender(&self) -> Result<QueueSender<T>> {
        self.check_type()?;
        self.attach_sender()
    }

    pub(super) fn attach_sender(&self) -> Result<QueueSender<T>> {
        let part = Participant::attach(self.seg.clone(), Role::Sender)?;
        Ok(QueueSender {
            sender: Sender::new(part.index),
            stats: SenderStats {
                lost: u64::from(part.repaired == Repair::Lost),
                ..SenderStats::default()
            },
            part,
            wait: Wait::Sleep,
            stuck: Stuck::default(),
            #[cfg(not(loom))]
            ready: None,
            _type: PhantomData,
        })
    }

    /// Attaches a receiver (one entry of the 32 the queue's senders and receivers share).
    ///
    /// # Errors
    ///
    /// [`Error::TypeMismatch`] for a raw handle on a typed queue or the reverse;
    /// [`Error::ReadOnly`] on a read-only handle; [`Error::TooManyParticipants`] when 32 senders
    /// and receivers live; [`Error::Io`] if the entry's lock cannot be taken for another reason.
    pub fn receiver(&self) -> Result<QueueReceiver<T>> {
        self.check_type()?;
        self.attach_receiver()
    }

    pub(super) fn attach_receiver(&self) -> Result<QueueReceiver<T>> {
        let part = Participant::attach(self.seg.clone(), Role::Receiver)?;
        Ok(QueueReceiver {
            receiver: Receiver::new(part.index),
            buf: vec![0u64; self.seg.geometry.payload_words()].into_boxed_slice(),
            stats: ReceiverStats {
                lost: u64::from(part.repaired == Repair::Lost),
                ..ReceiverStats::default()
            },
            part,
            wait: Wait::Sleep,
            stuck: Stuck::default(),
            #[cfg(not(loom))]
            ready: None,
            _type: PhantomData,
        })
    }

    pub(super) fn check_type(&self) -> Result<()> {
        kind::same_rawness::<T>(&self.seg)
    }

    /// The queue name.
    pub fn name(&self) -> &str {
        self.seg.name()
    }

    /// The segment header as it is now (the tail is its cursor).
    pub fn header(&self) -> HeaderSnapshot {
        self.seg.header()
    }

    /// Whether this handle mapped the segment read-only.
    pub fn is_read_only(&self) -> bool {
        !self.seg.is_writable()
    }

    /// How many items the queue holds.
    pub fn capacity(&self) -> u64 {
        self.seg.geometry.slot_count
    }

    /// Largest item, in bytes.
    pub fn item_size(&self) -> usize {
        self.seg.geometry.capacity
    }

    /// The item type recorded in the segment.
    pub fn message_type(&self) -> &TypeInfo {
        &self.seg.ty
    }

    /// Items in the queue (claimed by senders, not yet by receivers): a snapshot.
    pub fn len(&self) -> u64 {
        self.ring().len()
    }

    /// Whether the queue holds no item (a snapshot).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whether the queue is full (a snapshot).
    pub fn is_full(&self) -> bool {
        self.len() >= self.capacity()
    }

    /// The head (next position receivers claim) and tail (next position senders claim).
    pub fn positions(&self) -> (u64, u64) {
        let q = self.ring();
        (q.head(), q.tail())
    }

    /// Queue-wide counts of skipped positions, lost items and passed stalls.
    pub fn totals(&self) -> QueueTotals {
        let (skipped, lost, passed) = self.ring().totals();
        QueueTotals {
            skipped,
            lost,
            passed,
        }
    }

    /// How long a participant that lives but has stopped holding a position (a sender between
    /// claiming and publishing, a receiver between claiming and freeing) is waited for before
    /// the others pass it; `None`: as long as it lives. Set at create
    /// ([`QueueBuilder::stall_bound`]).
    pub fn stall_bound(&self) -> Option<Duration> {
        stall_bound_ns(&self.seg).map(Duration::from_nanos)
    }

    /// Whether the queue is closed: no sender is attached and no item is left (a snapshot;
    /// not final: a sender may attach later, and receivers then get its items). Like a
    /// crossbeam channel whose senders are all dropped, except that items sent before stay for
    /// receivers that come later.
    pub fn is_closed(&self) -> bool {
        closed(&self.seg)
    }

    /// The live participants holding a position they have not completed: a sender that
    /// claimed a position and has not published it, a receiver that claimed an item and has
    /// not freed its slot, and one that was passed after the stall bound and still holds its
    /// slot (docs/design.md §11, "Stalls"). A snapshot, by entry: a participant mid-send or
    /// mid-receive shows for as long as that takes, so a hold means a stall only if it
    /// persists (the library keeps no clock on claims; `shmbus info` looks twice).
    ///
    /// Reads only: any handle may ask, read-only ones included. Costs a look at the 32 claim
    /// words and one liveness question (a system call) per hold found.
    pub fn holds(&self) -> Vec<QueueHold> {
        find_holds(self.seg.words(), self.seg.geometry, |i| {
            self.seg.producer_alive(i)
        })
        .into_iter()
        .map(|f| f.with_pid(self.seg.producer_pid(f.index)))
        .collect()
    }

    /// The participant-table entries that were ever used.
    pub fn participants(&self) -> Vec<ParticipantInfo> {
        (0..MAX_PRODUCERS)
            .filter_map(|i| {
                let pid = self.seg.producer_pid(i);
                (pid != 0).then(|| ParticipantInfo {
                    index: i as u32,
                    pid,
                    role: Role::from_word(role_word(&self.seg, i).load(Ordering::Relaxed)),
                    alive: self.seg.producer_alive(i),
                })
            })
            .collect()
    }
}

impl Queue<Raw> {
    /// A sender of raw bytes on a queue of any item type, for tools and bindings that do not
    /// have the Rust type (`shmbus push`, other languages): on a raw queue it is
    /// [`Queue::sender`]; on a typed one every item must be exactly the type's size
    /// ([`crate::SendError::WrongSize`] otherwise), and its bytes are taken as one value of the type
    /// (any bytes are one: typed queues carry `Pod` types).
    ///
    /// # Errors
    ///
    /// Those of [`Queue::sender`] but [`Error::TypeMismatch`].
    pub fn bytes_sender(&self) -> Result<QueueSender<Raw>> {
        self.attach_sender()
    }

    /// A receiver of raw bytes on a queue of any item type (`shmbus pop`, other languages):
    /// each item comes out as its bytes.
    ///
    /// # Errors
    ///
    /// Those of [`Queue::receiver`] but [`Error::TypeMismatch`].
    pub fn bytes_receiver(&self) -> Result<QueueReceiver<Raw>> {
        self.attach_receiver()
    }
}

/// Builds, creates or opens a queue.
///
/// ```
/// # let name = format!("doc-queue-typed-{}", std::process::id());
/// use shmbus::bytemuck::{Pod, Zeroable};
///
/// #[derive(Clone, Copy, Debug, PartialEq, Pod, Zeroable)]
/// #[bytemuck(crate = "shmbus::bytemuck")]
/// #[repr(C)]
/// struct Job { id: u64, cost: f64 }
///
/// let queue = shmbus::Queue::builder(&name).item_type::<Job>().capacity(8).create()?;
/// let (mut tx, mut rx) = (queue.sender()?, queue.receiver()?);
/// tx.send(Job { id: 7, cost: 0.5 }).unwrap();
/// assert_eq!(rx.recv().unwrap().id, 7);
/// # shmbus::Queue::remove(&name)?;
/// # Ok::<(), shmbus::Error>(())
/// ```
pub struct QueueBuilder<T: Payload = Raw> {
    pub(super) opts: Options,
    pub(super) capacity: u64,
    pub(super) item_size: Option<usize>,
    pub(super) stall_bound: Option<Duration>,
    pub(super) _type: PhantomData<fn() -> T>,
}

impl<T: Payload> Clone for QueueBuilder<T> {
    fn clone(&self) -> Self {
        QueueBuilder {
            opts: self.opts.clone(),
            capacity: self.capacity,
            item_size: self.item_size,
            stall_bound: self.stall_bound,
            _type: PhantomData,
        }
    }
}

impl QueueBuilder<Raw> {
    /// A builder for the queue `name`: 1024 items of up to 240 bytes, mode 0600, a stall
    /// bound of [`DEFAULT_STALL_BOUND`](crate::DEFAULT_STALL_BOUND).
    pub fn new(name: &str) -> Self {
        QueueBuilder {
            opts: Options::new(name),
            capacity: DEFAULT_QUEUE_CAPACITY,
            item_size: None,
            stall_bound: Some(crate::DEFAULT_STALL_BOUND),
            _type: PhantomData,
        }
    }
}

impl<T: Payload> QueueBuilder<T> {
    /// Carries items of type `U` (a [`bytemuck::Pod`] type, alignment at most 8): the item size
    /// becomes its size, and opening checks the type.
    pub fn item_type<U: Payload>(self) -> QueueBuilder<U> {
        QueueBuilder {
            opts: self.opts,
            capacity: self.capacity,
            item_size: self.item_size,
            stall_bound: self.stall_bound,
            _type: PhantomData,
        }
    }

    /// How many items the queue holds: a power of two (not rounded).
    pub fn capacity(mut self, items: u64) -> Self {
        self.capacity = items;
        self
    }

    /// Largest item in bytes (raw queues; a typed queue's item size is its type's size).
    pub fn item_size(mut self, bytes: usize) -> Self {
        self.item_size = Some(bytes);
        self
    }

    /// How long a participant that lives but has stopped while holding a position (stopped by
    /// a signal or a debugger, or descheduled) is waited for before the others pass it, so
    /// that one frozen process does not stop the queue: receivers pass a stopped sender's
    /// position (the sender, when it runs again, sends its item at a new position), and
    /// senders route around a stopped receiver's slot (the receiver keeps the item it
    /// claimed). `None`: wait as long as it lives. Default
    /// [`DEFAULT_STALL_BOUND`](crate::DEFAULT_STALL_BOUND). Stored in the queue; opening
    /// follows what the queue says. See docs/design.md §11, "Stalls".
    pub fn stall_bound(mut self, bound: Option<Duration>) -> Self {
        self.stall_bound = bound;
        self
    }

    option_setters!(typed);

    constructors!(
        Queue<T>,
        "queue",
        config: "[`Error::InvalidConfig`] for a capacity that is not a power of two within the limit, a zero or too large item size, an item type whose alignment exceeds 8 bytes, or a stall bound of zero; [`Error::MessageTooLarge`] if the item type does not fit the item size asked for.",
        open: "[`Error::TypeMismatch`] for a typed open.",
        same: "capacity, item size and type"
    );
}

impl<T: Payload> Kind for QueueBuilder<T> {
    type Handle = Queue<T>;
    /// The stall bound word (ns, 0 = none).
    type Own = u64;

    fn options(&self) -> &Options {
        &self.opts
    }

    fn blueprint(&self) -> Result<Blueprint<u64>> {
        let ty = self.type_info();
        if ty.align > 8 {
            return Err(Error::InvalidConfig(format!(
                "type {} has alignment {}; shmbus items are 8-byte aligned",
                ty.name, ty.align
            )));
        }
        let size = match (ty.is_raw(), self.item_size) {
            (true, size) => size.unwrap_or(DEFAULT_ITEM_SIZE),
            (false, None) => ty.size as usize,
            (false, Some(size)) if size >= ty.size as usize => size,
            (false, Some(size)) => {
                return Err(Error::MessageTooLarge {
                    len: ty.size as usize,
                    capacity: size,
                })
            }
        };
        let geometry = Geometry::packed(self.capacity, size).map_err(Error::InvalidConfig)?;
        let shape = Shape {
            kind: SegmentKind::Queue,
            geometry,
            mode: ProducerMode::Multi,
            ty,
            first_seq: 0,
        };
        let stall_bound = match self.stall_bound {
            None => 0,
            Some(d) if d.is_zero() => {
                return Err(Error::InvalidConfig(
                    "a stall bound of 0 would pass every position being written or read; use \
                     None to wait as long as the participant lives"
                        .into(),
                ))
            }
            Some(d) => u64::try_from(d.as_nanos()).unwrap_or(u64::MAX),
        };
        Ok(Blueprint::new(shape, stall_bound))
    }

    /// The stall bound, before the magic publishes the segment.
    fn init(&self, stall_bound: &u64, words: &[AtomicU64]) {
        words[W_Q_STALL_BOUND].store(*stall_bound, Ordering::Relaxed);
    }

    fn expect(&self) -> Expect {
        let wanted = self.type_info();
        Expect {
            kind: SegmentKind::Queue,
            ty: (!wanted.is_raw()).then_some(wanted),
        }
    }

    fn adopt(&self, seg: Segment) -> Result<Queue<T>> {
        Ok(Queue {
            seg: Arc::new(seg),
            _type: PhantomData,
        })
    }

    fn differs(&self, wanted: &Blueprint<u64>, q: &Queue<T>) -> Option<(String, String)> {
        let (s, w) = (&q.seg, &wanted.shape);
        (s.geometry != w.geometry || (w.ty.is_raw() && !s.ty.is_raw()))
            .then(|| (describe(s.geometry, &s.ty), describe(w.geometry, &w.ty)))
    }
}

pub(super) fn describe(g: Geometry, ty: &TypeInfo) -> String {
    format!(
        "a queue of {} items of {} bytes, type {}",
        g.slot_count, g.capacity, ty
    )
}
