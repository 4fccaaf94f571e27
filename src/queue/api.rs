//! The queue's user API: [`Queue`] and its builder, [`QueueSender`] and [`QueueReceiver`], over
//! the protocol in `protocol.rs` and the shared segment layer.

use std::marker::PhantomData;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::error::{Error, Result};
use crate::payload::{Payload, Raw};
use crate::segment::header::{
    Geometry, HeaderSnapshot, ProducerMode, SegmentKind, TypeInfo, MAX_PRODUCERS, PE_ROLE,
    PRODUCER_ENTRY_WORDS, W_PRODUCERS, W_Q_SPACE_WAITERS, W_Q_SPACE_WAKE,
};
use crate::segment::liveness::SegmentLiveness;
use crate::segment::{self, Access, Expect, LockKind, Segment, Shape, Trust};
use crate::sync::Ordering;
use crate::wait::{self, SysFutex, Wait, WakeWords};

use super::protocol::{self, QueueRing, Receiver, RecvBegin, Repair, SendBegin, Sender, POS_LIMIT};

/// Items a new queue holds unless [`QueueBuilder::capacity`] says otherwise.
pub const DEFAULT_QUEUE_CAPACITY: u64 = 1024;
/// Bytes per item of a new raw queue unless [`QueueBuilder::item_size`] says otherwise.
pub const DEFAULT_ITEM_SIZE: usize = 240;

/// Failed attempts at the same position before a handle asks whether the participant holding
/// it is alive (a system call per suspect): a live one is just writing or reading.
const STALL_POLLS: u32 = 256;
/// Attempts a blocking call spins before it yields or sleeps.
const SPIN_POLLS: u32 = 128;
/// How often a blocking call looks for dead participants: a dead one cannot wake anyone.
const CHECK_PERIOD: Duration = Duration::from_millis(5);

/// The role a participant-table entry records (the inspector shows it).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Role {
    /// A [`QueueSender`].
    Sender,
    /// A [`QueueReceiver`].
    Receiver,
}

impl Role {
    fn to_word(self) -> u64 {
        match self {
            Role::Sender => 1,
            Role::Receiver => 2,
        }
    }

    fn from_word(w: u64) -> Option<Role> {
        match w {
            1 => Some(Role::Sender),
            2 => Some(Role::Receiver),
            _ => None,
        }
    }
}

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
}

/// An item handed back by a send that could not complete.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum SendError<T> {
    /// The queue was full (or stayed full until the deadline).
    Full(T),
    /// The item is longer than a slot holds (raw queues only).
    TooLarge {
        /// The item.
        item: T,
        /// The slot's item size.
        capacity: usize,
    },
    /// A byte sender on a typed queue ([`Queue::bytes_sender`]) was given an item of another
    /// size than the type's.
    WrongSize {
        /// The item.
        item: T,
        /// The type's size.
        size: usize,
    },
    /// The sender was attached by the parent of this process before `fork(2)`: it may not send
    /// under its parent's entry (docs/design.md §10, "Fork"); attach a sender in this process.
    UsedAfterFork(T),
}

impl<T> SendError<T> {
    /// The item that was not sent.
    pub fn into_inner(self) -> T {
        match self {
            SendError::Full(item)
            | SendError::TooLarge { item, .. }
            | SendError::WrongSize { item, .. }
            | SendError::UsedAfterFork(item) => item,
        }
    }

    /// Whether the queue was full.
    pub fn is_full(&self) -> bool {
        matches!(self, SendError::Full(_))
    }
}

impl<T> std::fmt::Debug for SendError<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SendError::Full(_) => f.write_str("Full(..)"),
            SendError::TooLarge { capacity, .. } => {
                write!(f, "TooLarge {{ capacity: {capacity}, .. }}")
            }
            SendError::WrongSize { size, .. } => write!(f, "WrongSize {{ size: {size}, .. }}"),
            SendError::UsedAfterFork(_) => f.write_str("UsedAfterFork(..)"),
        }
    }
}

impl<T> std::fmt::Display for SendError<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SendError::Full(_) => f.write_str("the queue is full"),
            SendError::TooLarge { capacity, .. } => {
                write!(f, "the item is larger than a slot ({capacity} bytes)")
            }
            SendError::WrongSize { size, .. } => write!(
                f,
                "the queue carries items of a type {size} bytes long: an item is exactly that"
            ),
            SendError::UsedAfterFork(_) => f.write_str(
                "this sender was attached by the parent process before fork(); attach a sender \
                 in this process",
            ),
        }
    }
}

impl<T> std::error::Error for SendError<T> {}

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
    seg: Arc<Segment>,
    _type: PhantomData<fn() -> T>,
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

    /// Opens an existing queue of any item type, for raw bytes.
    ///
    /// # Errors
    ///
    /// Those of [`QueueBuilder::open`], except [`Error::TypeMismatch`] (a raw open accepts any item
    /// type).
    pub fn open(name: &str) -> Result<Self> {
        QueueBuilder::new(name).open()
    }

    /// Opens an existing queue read-only, to look at it (its length, positions and
    /// participants): such a handle can neither send nor receive.
    ///
    /// # Errors
    ///
    /// Those of [`QueueBuilder::open`], except [`Error::TypeMismatch`] (a raw open accepts any item
    /// type).
    pub fn open_read_only(name: &str) -> Result<Self> {
        QueueBuilder::new(name).read_only().open()
    }

    /// Removes a queue from `/dev/shm`. Processes that have it open keep their mapping.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidName`]; [`Error::NotFound`] if there is no such object;
    /// [`Error::PermissionDenied`]; [`Error::Io`] for any other system error.
    pub fn remove(name: &str) -> Result<()> {
        segment::remove(name)
    }
}

impl<T: Payload> Queue<T> {
    fn ring(&self) -> QueueRing<'_> {
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

    fn attach_sender(&self) -> Result<QueueSender<T>> {
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

    fn attach_receiver(&self) -> Result<QueueReceiver<T>> {
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

    fn check_type(&self) -> Result<()> {
        let wanted = T::type_info(&self.seg.ty.name);
        if wanted.is_raw() != self.seg.ty.is_raw() {
            return Err(Error::TypeMismatch {
                name: self.seg.name().to_owned(),
                expected: wanted.to_string(),
                found: self.seg.ty.to_string(),
            });
        }
        Ok(())
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

    /// Queue-wide counts of skipped positions and lost items.
    pub fn totals(&self) -> QueueTotals {
        let (skipped, lost) = self.ring().totals();
        QueueTotals { skipped, lost }
    }

    /// Whether the queue is closed: no sender is attached and no item is left (a snapshot;
    /// not final: a sender may attach later, and receivers then get its items). Like a
    /// crossbeam channel whose senders are all dropped, except that items sent before stay for
    /// receivers that come later.
    pub fn is_closed(&self) -> bool {
        closed(&self.seg)
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

fn role_word(seg: &Segment, i: usize) -> &crate::sync::AtomicU64 {
    &seg.words()[W_PRODUCERS + i * PRODUCER_ENTRY_WORDS + PE_ROLE]
}

/// Whether a live sender is attached to the queue in `seg` (docs/design.md §11, "Closed"): an
/// entry whose role word says sender and whose kernel lock is held. Up to 32 lock questions:
/// asked only when the queue is empty, every few milliseconds at most.
pub(crate) fn senders_alive(seg: &Segment) -> bool {
    (0..MAX_PRODUCERS).any(|i| {
        Role::from_word(role_word(seg, i).load(Ordering::Relaxed)) == Some(Role::Sender)
            && seg.producer_alive(i)
    })
}

/// Whether the queue in `seg` is closed: no sender attached, and (looked at after that) no item
/// left, nor a position a sender claimed and has not published or had skipped.
fn closed(seg: &Segment) -> bool {
    !senders_alive(seg) && QueueRing::new(seg.words(), seg.geometry).len() == 0
}

impl Queue<Raw> {
    /// A sender of raw bytes on a queue of any item type, for tools and bindings that do not
    /// have the Rust type (`shmbus push`, other languages): on a raw queue it is
    /// [`Queue::sender`]; on a typed one every item must be exactly the type's size
    /// ([`SendError::WrongSize`] otherwise), and its bytes are taken as one value of the type
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
    name: String,
    capacity: u64,
    item_size: Option<usize>,
    permissions: u32,
    type_name: Option<String>,
    trust: Trust,
    access: Access,
    _type: PhantomData<fn() -> T>,
}

impl<T: Payload> Clone for QueueBuilder<T> {
    fn clone(&self) -> Self {
        QueueBuilder {
            name: self.name.clone(),
            capacity: self.capacity,
            item_size: self.item_size,
            permissions: self.permissions,
            type_name: self.type_name.clone(),
            trust: self.trust,
            access: self.access,
            _type: PhantomData,
        }
    }
}

impl QueueBuilder<Raw> {
    /// A builder for the queue `name`: 1024 items of up to 240 bytes, mode 0600.
    pub fn new(name: &str) -> Self {
        QueueBuilder {
            name: name.to_owned(),
            capacity: DEFAULT_QUEUE_CAPACITY,
            item_size: None,
            permissions: 0o600,
            type_name: None,
            trust: Trust::default(),
            access: Access::ReadWrite,
            _type: PhantomData,
        }
    }
}

impl<T: Payload> QueueBuilder<T> {
    /// Carries items of type `U` (a [`bytemuck::Pod`] type, alignment at most 8): the item size
    /// becomes its size, and opening checks the type.
    pub fn item_type<U: Payload>(self) -> QueueBuilder<U> {
        QueueBuilder {
            name: self.name,
            capacity: self.capacity,
            item_size: self.item_size,
            permissions: self.permissions,
            type_name: self.type_name,
            trust: self.trust,
            access: self.access,
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

    /// The mode of a created queue (default 0600).
    pub fn permissions(mut self, mode: u32) -> Self {
        self.permissions = mode;
        self
    }

    /// The type name recorded and checked (default `std::any::type_name`).
    pub fn type_name(mut self, name: &str) -> Self {
        self.type_name = Some(name.to_owned());
        self
    }

    /// Opens the queue read-only (see [`Queue::open_read_only`]).
    pub fn read_only(mut self) -> Self {
        self.access = Access::ReadOnly;
        self
    }

    /// Opens a queue another user owns.
    pub fn accept_other_owner(mut self) -> Self {
        self.trust.other_owner = true;
        self
    }

    /// Opens a queue that group or others may write.
    pub fn accept_shared_write(mut self) -> Self {
        self.trust.shared_write = true;
        self
    }

    fn type_info(&self) -> TypeInfo {
        T::type_info(
            self.type_name
                .as_deref()
                .unwrap_or_else(|| T::default_name()),
        )
    }

    fn shape(&self) -> Result<Shape> {
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
        Ok(Shape {
            kind: SegmentKind::Queue,
            geometry,
            mode: ProducerMode::Multi,
            ty,
            first_seq: 0,
        })
    }

    /// Creates a new queue; fails with [`Error::AlreadyExists`] if the name is taken.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidConfig`] for a capacity that is not a power of two within the limit, a zero
    /// or too large item size, or an item type whose alignment exceeds 8 bytes;
    /// [`Error::MessageTooLarge`] if the item type does not fit the item size asked for;
    /// [`Error::InvalidName`]; [`Error::AlreadyExists`]; [`Error::PermissionDenied`];
    /// [`Error::NoSpace`] when `/dev/shm` is full; [`Error::Io`] for any other system error.
    pub fn create(self) -> Result<Queue<T>> {
        let seg = Segment::create(&self.name, self.shape()?, self.permissions)?;
        Ok(Queue {
            seg: Arc::new(seg),
            _type: PhantomData,
        })
    }

    /// A queue in this process's heap only (no name, no `/dev/shm`): for threads.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidConfig`] for a capacity that is not a power of two within the limit, a zero
    /// or too large item size, or an item type whose alignment exceeds 8 bytes;
    /// [`Error::MessageTooLarge`] if the item type does not fit the item size asked for.
    pub fn in_process(self) -> Result<Queue<T>> {
        Ok(Queue {
            seg: Arc::new(Segment::heap(self.shape()?)),
            _type: PhantomData,
        })
    }

    /// Opens an existing queue, checking its item type (raw builders accept any type). A bus
    /// (or any other kind) under the name is refused with [`Error::WrongKind`].
    ///
    /// # Errors
    ///
    /// [`Error::InvalidName`]; [`Error::NotFound`]; [`Error::PermissionDenied`];
    /// [`Error::NotRegularFile`] (a symlink, FIFO, ... in its place); [`Error::ForeignOwner`] and
    /// [`Error::InsecureMode`] unless accepted; [`Error::Truncated`] or [`Error::TooLarge`];
    /// [`Error::BadMagic`] (not a shmbus segment); [`Error::NotInitialised`] (its creator did not
    /// finish); [`Error::AbiMismatch`]; [`Error::WrongKind`] if another kind of segment has the
    /// name; a corrupt header (the variants for which [`Error::is_corrupt`] holds);
    /// [`Error::TypeMismatch`] for a typed open; and [`Error::Io`] for any other system error.
    pub fn open(self) -> Result<Queue<T>> {
        let wanted = self.type_info();
        let expect = Expect {
            kind: SegmentKind::Queue,
            ty: (!wanted.is_raw()).then_some(wanted),
        };
        let seg = Segment::open_expecting(&self.name, self.access, self.trust, &expect)?;
        Ok(Queue {
            seg: Arc::new(seg),
            _type: PhantomData,
        })
    }

    /// Opens the queue if it exists with the same capacity, item size and type, else creates it.
    ///
    /// # Errors
    ///
    /// Those of [`QueueBuilder::open`] and [`QueueBuilder::create`] (except `NotFound` and
    /// `AlreadyExists`, which a race between the two turns into another attempt), and
    /// [`Error::GeometryMismatch`] if the existing queue differs from the one asked for.
    pub fn open_or_create(self) -> Result<Queue<T>> {
        let shape = self.shape()?;
        loop {
            match self.clone().open() {
                Ok(q) => {
                    let s = &q.seg;
                    if s.geometry != shape.geometry || (shape.ty.is_raw() && !s.ty.is_raw()) {
                        return Err(Error::GeometryMismatch {
                            name: self.name,
                            found: describe(s.geometry, &s.ty),
                            wanted: describe(shape.geometry, &shape.ty),
                        });
                    }
                    return Ok(q);
                }
                Err(Error::NotFound { .. }) => match self.clone().create() {
                    Err(Error::AlreadyExists { .. }) => continue,
                    other => return other,
                },
                Err(e) => return Err(e),
            }
        }
    }
}

fn describe(g: Geometry, ty: &TypeInfo) -> String {
    format!(
        "a queue of {} items of {} bytes, type {}",
        g.slot_count, g.capacity, ty
    )
}

/// One attached sender or receiver: its table entry, the lock that holds it, and the waking.
struct Participant {
    seg: Arc<Segment>,
    index: usize,
    /// Holds the entry's lock (byte `1 + index`) until drop, or until the kernel drops it when
    /// the process dies. `None` on a heap queue.
    lock: Option<crate::segment::LockFd>,
    futex: SysFutex,
    /// This process could not register for the sleepers' barrier: wake with a real fence.
    strong_fence: bool,
    /// What attaching repaired of the entry's previous (dead) owner.
    repaired: Repair,
}

impl Participant {
    fn attach(seg: Arc<Segment>, role: Role) -> Result<Participant> {
        if !seg.is_writable() {
            return Err(Error::ReadOnly {
                name: seg.name().to_owned(),
            });
        }
        let pid = std::process::id();
        let lock = seg.reopen_for_lock()?;
        let full = || Error::TooManyParticipants {
            name: seg.name().to_owned(),
            max: MAX_PRODUCERS,
        };
        let io = |op, e| Error::Io {
            name: seg.name().to_owned(),
            op,
            source: e,
        };
        let mut attached = None;
        for i in 0..MAX_PRODUCERS {
            let taken = match &lock {
                Some(fd) => segment::try_lock(fd, 1 + i as i64, LockKind::Exclusive)
                    .map_err(|e| io("fcntl(F_OFD_SETLK)", e))?,
                None => seg.claim_heap_entry(i, pid),
            };
            if !taken {
                continue;
            }
            // The entry's previous holder is dead (we hold its lock): repair its claim before
            // our own claims overwrite it (docs/design.md §11, "Claims and repair").
            let repaired = {
                let live = SegmentLiveness::producer(&seg, lock.as_ref(), i);
                protocol::repair_entry(&QueueRing::new(seg.words(), seg.geometry), &live, i)
            };
            if repaired != Repair::Pending {
                attached = Some((i, repaired));
                break;
            }
            // A live participant names the dead one's position too: its claim word must keep
            // naming the position until a stall repair finds it. Let the entry go (a stall
            // repair takes its lock) and use another.
            match &lock {
                Some(fd) => segment::unlock(fd, 1 + i as i64)
                    .map_err(|e| io("fcntl(F_OFD_SETLK, F_UNLCK)", e))?,
                None => seg.release_heap_entry(i),
            }
        }
        let (index, repaired) = attached.ok_or_else(full)?;
        seg.set_producer(index, pid, segment::process_start_ticks(pid).unwrap_or(0));
        role_word(&seg, index).store(role.to_word(), Ordering::Relaxed);
        seg.producer_heartbeat(index)
            .store(segment::coarse_now_ns(), Ordering::Relaxed);
        let part = Participant {
            futex: SysFutex::of(&seg),
            strong_fence: wait::producer_fences(&seg),
            seg,
            index,
            lock,
            repaired,
        };
        part.wake_for(repaired);
        Ok(part)
    }

    #[inline]
    fn ring(&self) -> QueueRing<'_> {
        QueueRing::new(self.seg.words(), self.seg.geometry)
    }

    /// Whether this is a forked child of the process that attached (docs/design.md §10,
    /// "Fork"): it may not claim under its parent's entry.
    #[inline]
    fn forked(&self) -> bool {
        self.lock.as_ref().is_some_and(|l| l.forked())
    }

    fn live(&self) -> SegmentLiveness<'_> {
        SegmentLiveness::producer(&self.seg, self.lock.as_ref(), self.index)
    }

    /// The words sleeping receivers wait on (an item was published).
    fn item_words(&self) -> WakeWords<'_> {
        self.seg.wake_words()
    }

    /// The words sleeping senders wait on (a slot was freed).
    fn space_words(&self) -> WakeWords<'_> {
        self.seg.wake_words_at(W_Q_SPACE_WAKE, W_Q_SPACE_WAITERS)
    }

    /// After a repair, wakes the side it unblocked.
    fn wake_for(&self, r: Repair) {
        match r {
            Repair::None | Repair::Pending => {}
            Repair::Skipped => wait::wake_sleepers(self.item_words(), &self.futex),
            Repair::Lost | Repair::Freed => wait::wake_sleepers(self.space_words(), &self.futex),
        }
    }

    /// One step of a blocking wait after the spin phase.
    fn pause(
        &self,
        how: Wait,
        words: WakeWords<'_>,
        slice: Duration,
        ready: impl FnOnce() -> bool,
    ) {
        match how {
            Wait::Spin => crate::sync::spin_hint(),
            Wait::Yield => std::thread::yield_now(),
            Wait::Sleep => wait::sleep(words, &self.futex, Some(slice), ready),
        }
    }
}

impl Drop for Participant {
    fn drop(&mut self) {
        if !self.seg.is_shared() {
            self.seg.release_heap_entry(self.index);
        }
        // Shared segments: closing the lock fd (after this) releases the entry's lock.
    }
}

/// How a blocking receive ended.
enum Waited {
    /// An item of this length is in the receiver's buffer.
    Item(usize),
    /// The deadline passed.
    TimedOut,
    /// No sender is attached and the queue is empty.
    Closed,
}

/// Consecutive failed attempts at one position.
#[derive(Clone, Copy, Debug, Default)]
struct Stuck {
    pos: u64,
    polls: u32,
}

impl Stuck {
    /// Notes a failed attempt at `pos`; true when it is time to look for a dead holder.
    #[inline]
    fn note(&mut self, pos: u64) -> bool {
        if self.pos != pos {
            *self = Stuck { pos, polls: 0 };
        }
        self.polls += 1;
        if self.polls >= STALL_POLLS {
            self.polls = 0;
            return true;
        }
        false
    }
}

/// Counters of one sender.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SenderStats {
    /// Items sent.
    pub sent: u64,
    /// Attempts that found the queue full.
    pub full: u64,
    /// Items claimed by receivers that died before finishing them, which this handle freed
    /// (counted lost: never delivered again).
    pub lost: u64,
}

/// Counters of one receiver.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ReceiverStats {
    /// Items received.
    pub received: u64,
    /// Positions passed over because their sender died before publishing them.
    pub skipped: u64,
    /// Items of a wrong length for the queue's type (only a foreign writer makes one): passed
    /// over, never delivered.
    pub malformed: u64,
    /// Items claimed by receivers that died before finishing them, which this handle freed when
    /// it attached on the dead one's entry.
    pub lost: u64,
}

/// The sending side of a [`Queue`]. Detaches on drop.
pub struct QueueSender<T: Payload = Raw> {
    part: Participant,
    sender: Sender,
    stats: SenderStats,
    wait: Wait,
    stuck: Stuck,
    /// The registration with the queue's space waker, once readiness or `send_async` is used
    /// (docs/design.md §14).
    #[cfg(not(loom))]
    ready: Option<crate::readiness::Armed>,
    _type: PhantomData<fn(&T)>,
}

impl<T: Payload> std::fmt::Debug for QueueSender<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("QueueSender")
            .field("queue", &self.part.seg.name())
            .field("index", &self.part.index)
            .field("stats", &self.stats)
            .finish()
    }
}

impl<T: Payload> QueueSender<T> {
    /// Sets how `send` and `send_timeout` wait while the queue is full (default
    /// [`Wait::Sleep`]: receivers pay for a wake-up only while a sender sleeps).
    pub fn wait_strategy(mut self, wait: Wait) -> Self {
        self.wait = wait;
        self
    }

    /// Counters so far.
    pub fn stats(&self) -> SenderStats {
        self.stats
    }

    /// The participant-table entry this sender holds.
    pub fn index(&self) -> u32 {
        self.part.index as u32
    }

    /// How many items the queue holds.
    pub fn capacity(&self) -> u64 {
        self.part.seg.geometry.slot_count
    }

    /// Largest item, in bytes.
    pub fn item_size(&self) -> usize {
        self.part.seg.geometry.capacity
    }

    /// Items in the queue (a snapshot).
    pub fn len(&self) -> u64 {
        self.part.ring().len()
    }

    /// Whether the queue holds no item (a snapshot).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whether the queue is full (a snapshot).
    pub fn is_full(&self) -> bool {
        self.len() >= self.capacity()
    }

    /// One attempt: claim, write, publish, wake. `bytes` fits.
    #[inline]
    fn attempt(&mut self, bytes: &[u8]) -> bool {
        let q = self.part.ring();
        match self.sender.begin(&q) {
            SendBegin::Claimed(pos) => {
                self.sender.write(&q, pos, bytes);
                self.sender.commit(&q, pos);
                self.stats.sent += 1;
                wait::wake_after_publish(
                    self.part.item_words(),
                    &self.part.futex,
                    self.part.strong_fence,
                );
                true
            }
            SendBegin::Full(pos) => {
                self.stats.full += 1;
                if self.stuck.note(pos) {
                    self.repair_at(pos);
                }
                false
            }
        }
    }

    /// The queue is full at `pos`: if the receiver holding the item a lap before is dead, free
    /// its slot (the item counts as lost).
    #[cold]
    fn repair_at(&mut self, pos: u64) {
        let r = protocol::repair_stalled_send(
            &self.part.ring(),
            &self.part.live(),
            pos,
            self.part.index,
        );
        if r == Repair::Lost {
            self.stats.lost += 1;
        }
        self.part.wake_for(r);
    }

    /// Tries until `deadline` (`None`: forever), waiting as the strategy says.
    fn send_until(&mut self, bytes: &[u8], deadline: Option<Instant>) -> bool {
        let mut polls = 0u32;
        let mut checked = Instant::now();
        let started = checked;
        loop {
            if self.attempt(bytes) {
                return true;
            }
            polls = polls.saturating_add(1);
            if polls <= SPIN_POLLS {
                crate::sync::spin_hint();
                continue;
            }
            let now = Instant::now();
            if deadline.is_some_and(|d| now >= d) {
                return false;
            }
            if self.wait == Wait::Sleep && now.duration_since(started) < wait::SPIN_BEFORE_SLEEP {
                // docs/design.md §7, "Spin, then sleep".
                crate::sync::spin_hint();
                continue;
            }
            if now.duration_since(checked) >= CHECK_PERIOD {
                checked = now;
                let pos = self.part.ring().tail();
                if pos < POS_LIMIT {
                    self.repair_at(pos);
                }
            }
            let slice = deadline.map_or(CHECK_PERIOD, |d| (d - now).min(CHECK_PERIOD));
            let q = self.part.ring();
            self.part
                .pause(self.wait, self.part.space_words(), slice, || q.has_space());
        }
    }

    fn check_len<I>(&self, item: I, len: usize) -> std::result::Result<I, SendError<I>> {
        let item = self.check_attached(item)?;
        let capacity = self.item_size();
        if len > capacity {
            return Err(SendError::TooLarge { item, capacity });
        }
        let ty = &self.part.seg.ty;
        if !ty.is_raw() && len != ty.size as usize {
            // A byte sender on a typed queue: one value exactly.
            return Err(SendError::WrongSize {
                item,
                size: ty.size as usize,
            });
        }
        Ok(item)
    }

    /// A forked child of the process that attached may not send under its entry.
    #[inline]
    fn check_attached<I>(&self, item: I) -> std::result::Result<I, SendError<I>> {
        if self.part.forked() {
            return Err(SendError::UsedAfterFork(item));
        }
        Ok(item)
    }
}

impl QueueSender<Raw> {
    /// Sends `item` if the queue has room now; hands it back if it is full or too large.
    /// Never blocks, allocates or makes a system call, except to wake a sleeping receiver (and,
    /// after many failed attempts at one position, to ask whether the receiver holding it died).
    ///
    /// # Errors
    ///
    /// [`SendError::TooLarge`] if `item` is longer than the item size; [`SendError::Full`] if the
    /// queue has no room now.
    #[inline]
    pub fn try_send<'b>(&mut self, item: &'b [u8]) -> std::result::Result<(), SendError<&'b [u8]>> {
        let item = self.check_len(item, item.len())?;
        if self.attempt(item) {
            Ok(())
        } else {
            Err(SendError::Full(item))
        }
    }

    /// Sends `item`, waiting while the queue is full.
    ///
    /// # Errors
    ///
    /// [`SendError::TooLarge`] if `item` is longer than the item size.
    pub fn send<'b>(&mut self, item: &'b [u8]) -> std::result::Result<(), SendError<&'b [u8]>> {
        let item = self.check_len(item, item.len())?;
        self.send_until(item, None);
        Ok(())
    }

    /// Sends `item`, waiting at most `timeout` while the queue is full.
    ///
    /// # Errors
    ///
    /// [`SendError::TooLarge`] if `item` is longer than the item size; [`SendError::Full`] if the
    /// queue is still full when `timeout` has passed.
    pub fn send_timeout<'b>(
        &mut self,
        item: &'b [u8],
        timeout: Duration,
    ) -> std::result::Result<(), SendError<&'b [u8]>> {
        let item = self.check_len(item, item.len())?;
        let deadline = Instant::now().checked_add(timeout);
        if self.send_until(item, deadline) {
            Ok(())
        } else {
            Err(SendError::Full(item))
        }
    }
}

impl<T: bytemuck::Pod> QueueSender<T> {
    /// Sends `item` if the queue has room now; hands it back if it is full.
    ///
    /// # Errors
    ///
    /// [`SendError::Full`] if the queue has no room now.
    #[inline]
    pub fn try_send(&mut self, item: T) -> std::result::Result<(), SendError<T>> {
        let item = self.check_attached(item)?;
        if self.attempt(bytemuck::bytes_of(&item)) {
            Ok(())
        } else {
            Err(SendError::Full(item))
        }
    }

    /// Sends `item`, waiting while the queue is full.
    ///
    /// # Errors
    ///
    /// None: it waits until the item is sent (the `Result` matches the raw queue's `send`).
    pub fn send(&mut self, item: T) -> std::result::Result<(), SendError<T>> {
        let item = self.check_attached(item)?;
        self.send_until(bytemuck::bytes_of(&item), None);
        Ok(())
    }

    /// Sends `item`, waiting at most `timeout` while the queue is full.
    ///
    /// # Errors
    ///
    /// [`SendError::Full`] if the queue is still full when `timeout` has passed.
    pub fn send_timeout(
        &mut self,
        item: T,
        timeout: Duration,
    ) -> std::result::Result<(), SendError<T>> {
        let item = self.check_attached(item)?;
        let deadline = Instant::now().checked_add(timeout);
        if self.send_until(bytemuck::bytes_of(&item), deadline) {
            Ok(())
        } else {
            Err(SendError::Full(item))
        }
    }
}

/// The receiving side of a [`Queue`]: each item it receives, no other receiver receives.
/// Detaches on drop.
pub struct QueueReceiver<T: Payload = Raw> {
    part: Participant,
    receiver: Receiver,
    /// Private copy-out buffer, 8-byte aligned, one slot's payload long.
    buf: Box<[u64]>,
    stats: ReceiverStats,
    wait: Wait,
    stuck: Stuck,
    /// The registration with the queue's item waker, once readiness or `recv_async` is used
    /// (docs/design.md §14).
    #[cfg(not(loom))]
    ready: Option<crate::readiness::Armed>,
    _type: PhantomData<fn() -> T>,
}

impl<T: Payload> std::fmt::Debug for QueueReceiver<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("QueueReceiver")
            .field("queue", &self.part.seg.name())
            .field("index", &self.part.index)
            .field("stats", &self.stats)
            .finish()
    }
}

impl<T: Payload> QueueReceiver<T> {
    /// Sets how `recv` and `recv_timeout` wait while the queue is empty (default
    /// [`Wait::Sleep`]: senders pay for a wake-up only while a receiver sleeps).
    pub fn wait_strategy(mut self, wait: Wait) -> Self {
        self.wait = wait;
        self
    }

    /// Counters so far.
    pub fn stats(&self) -> ReceiverStats {
        self.stats
    }

    /// The participant-table entry this receiver holds.
    pub fn index(&self) -> u32 {
        self.part.index as u32
    }

    /// How many items the queue holds.
    pub fn capacity(&self) -> u64 {
        self.part.seg.geometry.slot_count
    }

    /// Items in the queue (a snapshot).
    pub fn len(&self) -> u64 {
        self.part.ring().len()
    }

    /// Whether the queue holds no item (a snapshot).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whether the queue is full (a snapshot).
    pub fn is_full(&self) -> bool {
        self.len() >= self.capacity()
    }

    /// Receives the next item if there is one: claim, copy into this handle's buffer, free the
    /// slot, wake a sleeping sender. Skips (of dead senders) are passed over on the way.
    /// Never blocks, allocates or makes a system call, except to wake a sleeping sender (and,
    /// after many empty attempts at a position a sender claimed, to ask whether it died).
    #[inline]
    pub fn try_recv(&mut self) -> Option<&T::View> {
        let len = self.attempt()?;
        Some(self.view(len))
    }

    /// Receives the next item, waiting while the queue is empty; `None` once the queue is
    /// closed: no sender attached and no item left ([`QueueReceiver::is_closed`]; it looks at
    /// the senders every few milliseconds while it waits, so `None` comes that long after the
    /// last sender left). Also `None` at once in a forked child of the process that attached,
    /// which may not take items under its parent's entry (docs/design.md §10, "Fork").
    pub fn recv(&mut self) -> Option<&T::View> {
        match self.recv_until(None) {
            Waited::Item(len) => Some(self.view(len)),
            Waited::Closed | Waited::TimedOut => None,
        }
    }

    /// Receives the next item, waiting at most `timeout` while the queue is empty; `None` when
    /// the time is up or the queue is closed ([`QueueReceiver::is_closed`] tells which).
    pub fn recv_timeout(&mut self, timeout: Duration) -> Option<&T::View> {
        match self.recv_until(Instant::now().checked_add(timeout)) {
            Waited::Item(len) => Some(self.view(len)),
            Waited::Closed | Waited::TimedOut => None,
        }
    }

    /// Whether the queue is closed: no sender attached and no item left (see
    /// [`Queue::is_closed`]).
    pub fn is_closed(&self) -> bool {
        closed(&self.part.seg)
    }

    /// A blocking iterator over received items (owned copies); it ends when the queue is
    /// closed.
    pub fn iter(&mut self) -> QueueIter<'_, T> {
        QueueIter { rx: self }
    }

    /// A non-blocking iterator: the items in the queue now, then the end.
    pub fn try_iter(&mut self) -> QueueTryIter<'_, T> {
        QueueTryIter { rx: self }
    }

    fn view(&self, len: usize) -> &T::View {
        T::view(&bytemuck::cast_slice(&self.buf)[..len])
            .expect("attempt() returns only lengths this type accepts")
    }

    /// One attempt; the length of the item now in `buf`.
    #[inline]
    fn attempt(&mut self) -> Option<usize> {
        if self.part.forked() {
            return None;
        }
        let q = self.part.ring();
        loop {
            match self.receiver.begin(&q) {
                RecvBegin::Claimed(pos) => {
                    let len = self.receiver.read(&q, pos, &mut self.buf);
                    self.receiver.finish(&q, pos);
                    self.wake_senders();
                    let bytes = &bytemuck::cast_slice::<u64, u8>(&self.buf);
                    match len.filter(|&n| T::view(&bytes[..n]).is_some()) {
                        Some(n) => {
                            self.stats.received += 1;
                            return Some(n);
                        }
                        None => self.stats.malformed += 1,
                    }
                }
                RecvBegin::Skipped(pos) => {
                    self.receiver.finish(&q, pos);
                    self.wake_senders();
                    self.stats.skipped += 1;
                }
                RecvBegin::Empty(pos) => {
                    if self.stuck.note(pos) {
                        self.repair_at(pos);
                    }
                    return None;
                }
            }
        }
    }

    #[inline]
    fn wake_senders(&self) {
        wait::wake_after_publish(
            self.part.space_words(),
            &self.part.futex,
            self.part.strong_fence,
        );
    }

    /// The head `pos` is empty: if the sender that claimed it is dead, it becomes a skip.
    #[cold]
    fn repair_at(&mut self, pos: u64) {
        let r = protocol::repair_stalled_recv(
            &self.part.ring(),
            &self.part.live(),
            pos,
            self.part.index,
        );
        self.part.wake_for(r);
    }

    fn recv_until(&mut self, deadline: Option<Instant>) -> Waited {
        if self.part.forked() {
            // Nothing to wait for: this receiver may not take items here.
            return Waited::Closed;
        }
        let mut polls = 0u32;
        let mut checked = Instant::now();
        let started = checked;
        loop {
            if let Some(len) = self.attempt() {
                return Waited::Item(len);
            }
            polls = polls.saturating_add(1);
            if polls <= SPIN_POLLS {
                crate::sync::spin_hint();
                continue;
            }
            let now = Instant::now();
            if deadline.is_some_and(|d| now >= d) {
                return Waited::TimedOut;
            }
            if self.wait == Wait::Sleep && now.duration_since(started) < wait::SPIN_BEFORE_SLEEP {
                // docs/design.md §7, "Spin, then sleep".
                crate::sync::spin_hint();
                continue;
            }
            // The first look comes one period in, as on a bus, so that a receiver that starts
            // before its senders attach is not told `closed` at once.
            if now.duration_since(checked) >= CHECK_PERIOD {
                checked = now;
                let pos = self.part.ring().head();
                if pos < POS_LIMIT {
                    self.repair_at(pos);
                }
                if self.is_closed() {
                    // Items sent just before the last sender left are taken first.
                    return match self.attempt() {
                        Some(len) => Waited::Item(len),
                        None => Waited::Closed,
                    };
                }
            }
            let slice = deadline.map_or(CHECK_PERIOD, |d| (d - now).min(CHECK_PERIOD));
            let q = self.part.ring();
            self.part
                .pause(self.wait, self.part.item_words(), slice, || q.has_item());
        }
    }
}

/// Blocking iterator made by [`QueueReceiver::iter`].
pub struct QueueIter<'a, T: Payload> {
    rx: &'a mut QueueReceiver<T>,
}

impl<T: Payload> Iterator for QueueIter<'_, T> {
    type Item = T::Owned;

    fn next(&mut self) -> Option<T::Owned> {
        self.rx.recv().map(T::to_owned)
    }
}

/// Non-blocking iterator made by [`QueueReceiver::try_iter`].
pub struct QueueTryIter<'a, T: Payload> {
    rx: &'a mut QueueReceiver<T>,
}

impl<T: Payload> Iterator for QueueTryIter<'_, T> {
    type Item = T::Owned;

    fn next(&mut self) -> Option<T::Owned> {
        self.rx.try_recv().map(T::to_owned)
    }
}

/// Queue receivers' readiness (docs/design.md §14): an item, or a skip to pass, at the head.
/// Every armed receiver of the segment handle is signalled; the one that takes the item
/// receives it, the others find nothing and re-arm.
#[cfg(not(loom))]
#[derive(Clone, Copy)]
pub(crate) struct ItemWatch;

/// The queue as the item waker sees it.
#[cfg(not(loom))]
pub(crate) struct ItemTarget<'a>(QueueRing<'a>);

#[cfg(not(loom))]
impl crate::readiness::Watch for ItemWatch {
    type Target<'a> = ItemTarget<'a>;

    fn target(self, seg: &Segment) -> ItemTarget<'_> {
        ItemTarget(QueueRing::new(seg.words(), seg.geometry))
    }

    /// Senders bump these after every publish (and a repair that makes a skip).
    fn words(seg: &Segment) -> WakeWords<'_> {
        seg.wake_words()
    }
}

#[cfg(not(loom))]
impl crate::readiness::Target for ItemTarget<'_> {
    #[inline]
    fn ready(&self, _: u64) -> bool {
        self.0.has_item()
    }

    /// The tail is past the head (a sender claimed it) but the head holds nothing yet: its
    /// sender may have died, which the receiver's repair turns into a skip.
    fn stalled(&self, _: u64) -> bool {
        self.0.tail() > self.0.head()
    }

    /// An empty queue with no sender attached is reported closed (docs/design.md §11,
    /// "Closed"); the waker asks about the senders (`SysHost::any_alive`).
    fn closes(&self) -> bool {
        true
    }
}

/// Queue senders' readiness (docs/design.md §14): a free slot at the tail, announced by the
/// queue's second wake pair, which receivers bump after freeing a slot.
#[cfg(not(loom))]
#[derive(Clone, Copy)]
pub(crate) struct SpaceWatch;

/// The queue as the space waker sees it, with its capacity.
#[cfg(not(loom))]
pub(crate) struct SpaceTarget<'a>(QueueRing<'a>, u64);

#[cfg(not(loom))]
impl crate::readiness::Watch for SpaceWatch {
    type Target<'a> = SpaceTarget<'a>;

    fn target(self, seg: &Segment) -> SpaceTarget<'_> {
        SpaceTarget(
            QueueRing::new(seg.words(), seg.geometry),
            seg.geometry.slot_count,
        )
    }

    fn words(seg: &Segment) -> WakeWords<'_> {
        seg.wake_words_at(W_Q_SPACE_WAKE, W_Q_SPACE_WAITERS)
    }
}

#[cfg(not(loom))]
impl crate::readiness::Target for SpaceTarget<'_> {
    #[inline]
    fn ready(&self, _: u64) -> bool {
        self.0.has_space()
    }

    /// Full, but a receiver claimed the item a lap before the tail (the head is past it) and
    /// has not freed its slot: it may have died, which the sender's repair counts as lost.
    fn stalled(&self, _: u64) -> bool {
        let (head, tail) = (self.0.head(), self.0.tail());
        head.saturating_add(self.1) > tail && !self.0.has_space()
    }

    fn closes(&self) -> bool {
        false
    }
}

/// Event-loop receive: the readiness registration (docs/design.md §14).
#[cfg(not(loom))]
impl<T: Payload> QueueReceiver<T> {
    /// This receiver with a file descriptor an event loop can wait on: see
    /// [`crate::QueueReceiverReadiness`]. Starts this queue handle's item waker thread if it has
    /// none (one per queue handle in a process, shared by its receivers).
    ///
    /// # Errors
    ///
    /// [`Error::Io`] if the eventfd cannot be made (`op` "eventfd": too many open files) or the
    /// waker thread cannot be started (`op` "start the readiness thread").
    pub fn into_readiness(mut self) -> Result<crate::QueueReceiverReadiness<T>> {
        self.armed()?;
        Ok(crate::readiness::QueueReceiverReadiness::new(self))
    }

    /// The registration, made on first use.
    pub(crate) fn armed(&mut self) -> Result<&mut crate::readiness::Armed> {
        if self.ready.is_none() {
            self.ready = Some(crate::readiness::Armed::watching(
                &self.part.seg,
                ItemWatch,
            )?);
        }
        Ok(self.ready.as_mut().expect("set just above"))
    }

    /// The registration, which callers made.
    pub(crate) fn registration(&self) -> &crate::readiness::Armed {
        self.ready
            .as_ref()
            .expect("callers register the receiver first")
    }

    /// Ends the registration.
    pub(crate) fn disarm(&mut self) {
        self.ready = None;
    }

    /// One attempt; when it finds nothing, arms the registration (which must exist) so that its
    /// eventfd becomes readable once an item is there. After a signal for a stall, first asks
    /// whether the sender holding the head died (and skips its position if so).
    pub(crate) fn try_recv_armed(&mut self) -> Option<usize> {
        if self.registration().take_check() {
            let pos = self.part.ring().head();
            if pos < POS_LIMIT {
                self.repair_at(pos);
            }
        }
        let got = self.attempt();
        if got.is_none() {
            let head = self.part.ring().head();
            if self.is_closed() {
                // Signalled once per closure (docs/design.md §14), and armed for an item.
                self.registration().closed(head);
            } else {
                self.registration().arm(head);
            }
        }
        got
    }

    /// [`QueueReceiver::try_recv`] through the registration.
    pub(crate) fn try_recv_ready(&mut self) -> Option<&T::View> {
        let len = self.try_recv_armed()?;
        Some(self.view(len))
    }
}

/// Event-loop send: the readiness registration (docs/design.md §14).
#[cfg(not(loom))]
impl<T: Payload> QueueSender<T> {
    /// This sender with a file descriptor an event loop can wait on: see
    /// [`crate::QueueSenderReadiness`]. Starts this queue handle's space waker thread if it has
    /// none (one per queue handle in a process, shared by its senders).
    ///
    /// # Errors
    ///
    /// [`Error::Io`] if the eventfd cannot be made (`op` "eventfd": too many open files) or the
    /// waker thread cannot be started (`op` "start the readiness thread").
    pub fn into_readiness(mut self) -> Result<crate::QueueSenderReadiness<T>> {
        self.armed()?;
        Ok(crate::readiness::QueueSenderReadiness::new(self))
    }

    /// The registration, made on first use.
    pub(crate) fn armed(&mut self) -> Result<&mut crate::readiness::Armed> {
        if self.ready.is_none() {
            self.ready = Some(crate::readiness::Armed::watching(
                &self.part.seg,
                SpaceWatch,
            )?);
        }
        Ok(self.ready.as_mut().expect("set just above"))
    }

    /// The registration, which callers made.
    pub(crate) fn registration(&self) -> &crate::readiness::Armed {
        self.ready
            .as_ref()
            .expect("callers register the sender first")
    }

    /// Ends the registration.
    pub(crate) fn disarm(&mut self) {
        self.ready = None;
    }

    /// One attempt to send `bytes` (which fit); when the queue is full, arms the registration
    /// (which must exist) so that its eventfd becomes readable once a slot is free. After a
    /// signal for a stall, first asks whether the receiver holding the slot died.
    pub(crate) fn try_send_armed(&mut self, bytes: &[u8]) -> bool {
        if self.registration().take_check() {
            let pos = self.part.ring().tail();
            if pos < POS_LIMIT {
                self.repair_at(pos);
            }
        }
        if self.attempt(bytes) {
            return true;
        }
        self.registration().arm(self.part.ring().tail());
        false
    }
}

/// Awaiting a queue in a tokio task (feature `tokio`, docs/design.md §14).
#[cfg(all(feature = "tokio", not(loom)))]
impl<T: Payload> QueueReceiver<T> {
    /// Receives the next item, owned, waiting without blocking the thread; `Ok(None)` once the
    /// queue is closed (no sender attached, no item left; see [`QueueReceiver::is_closed`]).
    ///
    /// Cancel-safe: an item is taken only in the poll that returns it, so a future dropped
    /// while waiting (a `select!` branch that lost) takes nothing, and the next receive gets
    /// the item. The first call registers the receiver with this queue handle's item waker
    /// thread and the current runtime's reactor.
    ///
    /// # Errors
    ///
    /// [`Error::Io`] when called outside a tokio runtime, when the eventfd or the waker thread
    /// cannot be made (see [`QueueReceiver::into_readiness`]), or when the reactor fails (it was
    /// shut down).
    ///
    /// # Panics
    ///
    /// Inside a tokio runtime built without I/O (`enable_io`), as tokio's own I/O types do.
    pub async fn recv_async(&mut self) -> Result<Option<T::Owned>> {
        crate::readiness::tokio::register(self.armed()?, "recv_async")?;
        loop {
            if let Some(len) = self.try_recv_armed() {
                return Ok(Some(T::to_owned(self.view(len))));
            }
            if self.is_closed() {
                return Ok(None);
            }
            crate::readiness::tokio::readable(self.registration()).await?;
        }
    }
}

/// Awaiting a queue in a tokio task (feature `tokio`, docs/design.md §14).
#[cfg(all(feature = "tokio", not(loom)))]
impl<T: Payload> QueueSender<T> {
    /// Sends `bytes` (which fit), waiting without blocking the thread while the queue is full.
    async fn send_bytes_async(&mut self, bytes: &[u8]) -> Result<()> {
        crate::readiness::tokio::register(self.armed()?, "send_async")?;
        loop {
            if self.try_send_armed(bytes) {
                return Ok(());
            }
            crate::readiness::tokio::readable(self.registration()).await?;
        }
    }
}

#[cfg(all(feature = "tokio", not(loom)))]
impl QueueSender<Raw> {
    /// Sends `item`, waiting without blocking the thread while the queue is full.
    ///
    /// Cancel-safe: the item is written only in the poll that completes the send, so a future
    /// dropped while waiting sent nothing. The first call registers the sender with this queue
    /// handle's space waker thread and the current runtime's reactor.
    ///
    /// # Errors
    ///
    /// The item back, with [`Error::MessageTooLarge`] if it is longer than the item size, or
    /// [`Error::Io`] when called outside a tokio runtime, when the eventfd or the waker thread
    /// cannot be made, or when the reactor fails.
    ///
    /// # Panics
    ///
    /// Inside a tokio runtime built without I/O (`enable_io`), as tokio's own I/O types do.
    pub async fn send_async<'b>(
        &mut self,
        item: &'b [u8],
    ) -> std::result::Result<(), crate::SendAsyncError<&'b [u8]>> {
        let capacity = self.item_size();
        if item.len() > capacity {
            let error = Error::MessageTooLarge {
                len: item.len(),
                capacity,
            };
            return Err(crate::SendAsyncError { item, error });
        }
        self.send_bytes_async(item)
            .await
            .map_err(|error| crate::SendAsyncError { item, error })
    }
}

#[cfg(all(feature = "tokio", not(loom)))]
impl<T: bytemuck::Pod> QueueSender<T> {
    /// Sends `item`, waiting without blocking the thread while the queue is full.
    ///
    /// Cancel-safe: the item is written only in the poll that completes the send, so a future
    /// dropped while waiting sent nothing. The first call registers the sender with this queue
    /// handle's space waker thread and the current runtime's reactor.
    ///
    /// # Errors
    ///
    /// The item back, with [`Error::Io`] when called outside a tokio runtime, when the eventfd
    /// or the waker thread cannot be made, or when the reactor fails.
    ///
    /// # Panics
    ///
    /// Inside a tokio runtime built without I/O (`enable_io`), as tokio's own I/O types do.
    pub async fn send_async(
        &mut self,
        item: T,
    ) -> std::result::Result<(), crate::SendAsyncError<T>> {
        self.send_bytes_async(bytemuck::bytes_of(&item))
            .await
            .map_err(|error| crate::SendAsyncError { item, error })
    }
}
