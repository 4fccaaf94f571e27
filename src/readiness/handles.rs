//! Readiness as a file descriptor, for event loops (docs/design.md §14): of a bus subscriber, a
//! records subscriber, and a work queue's receivers (an item to take) and senders (a slot free).
//!
//! One **waker thread** per segment handle and [`Watch`] in this process sleeps on the segment's
//! futex through the same handshake as a blocking receive ([`crate::wait::sleep`]: raise the
//! waiter flag, heavy barrier, re-check, futex wait), and writes to the eventfd of every
//! registered handle whose receive (or send) would now find something. A handle **arms** its
//! registration when a receive finds nothing: it clears its eventfd, stores the position it
//! expects, marks itself armed and kicks the thread (a private futex word the thread also waits
//! on). The thread raises the waiter flag only while some registration is armed, so the other
//! side of a segment nobody waits on pays nothing. Every 5 ms, while any registration is armed,
//! it also looks for what no publish announces: a stalled position (its claimant may have died)
//! and a closed segment.
//!
//! What "would find something" means is the one thing that differs between kinds: the
//! [`Watch`] and [`Target`] traits, implemented where each kind lives; registration, arming and
//! the thread are shared.

use std::any::TypeId;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, RawFd};
use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use nix::sys::eventfd::{EfdFlags, EventFd};

use crate::bus::ring::{Liveness, Ring};
use crate::bus::{Recv, Subscriber};
use crate::error::{Error, Result};
use crate::payload::{Payload, Raw};
use crate::queue::{QueueReceiver, QueueSender, SendError};
use crate::readiness::waker::{self, Host, Registration, Registry, Signal};
pub(crate) use crate::readiness::waker::{ahead, Target};
use crate::records::{RecordRecv, RecordSubscriber};
use crate::segment::producers::SegmentLiveness;
use crate::segment::{self, futex_wait, Segment};
use crate::sync::AtomicU32;
use crate::wait::{self, Futex, SysFutex, WakeWords};

/// How often the waker looks at the cursor and the producers' liveness while a registration is
/// armed: the period of blocking receives (docs/design.md §6, "Cadence").
const CHECK_PERIOD: Duration = Duration::from_millis(5);
/// How often the waker polls a read-only segment, whose waiter flag it may not raise.
const READ_ONLY_POLL: Duration = Duration::from_millis(1);
/// The futex of the private kick words (process-local).
const PRIVATE: SysFutex = SysFutex::PRIVATE;

/// What a waker thread watches on its segment, implemented once per kind (and direction) where
/// the kind lives: which wake pair the thread sleeps on, and the [`Target`] it asks about each
/// armed registration (docs/design.md §14). One thread serves each segment handle and watch.
pub(crate) trait Watch: Copy + Send + 'static {
    /// The view of the segment the thread keeps for its life.
    type Target<'a>: Target;
    /// Makes the view (once, when the thread starts).
    fn target(self, seg: &Segment) -> Self::Target<'_>;
    /// The waiter flag and wake counter the other side bumps when it makes a target ready.
    fn words(seg: &Segment) -> WakeWords<'_>;
}

/// Bus subscribers: the slot of the sequence each expects.
#[derive(Clone, Copy)]
pub(crate) struct BusWatch;

/// The bus: the slot of `e` has moved past "being written": written, abandoned or reused (a
/// lap).
pub(crate) struct BusTarget<'a>(Ring<'a>);

impl Watch for BusWatch {
    type Target<'a> = BusTarget<'a>;

    fn target(self, seg: &Segment) -> BusTarget<'_> {
        BusTarget(Ring::of(seg))
    }

    fn words(seg: &Segment) -> WakeWords<'_> {
        seg.wake_words()
    }
}

impl Target for BusTarget<'_> {
    #[inline]
    fn ready(&self, e: u64) -> bool {
        self.0.ready(e)
    }

    fn stalled(&self, e: u64) -> bool {
        ahead(self.0.cursor(), e)
    }

    fn closes(&self) -> bool {
        true
    }
}

/// The eventfd: readable while its counter is not zero; non-blocking, close-on-exec.
impl Signal for EventFd {
    fn raise(&self) {
        // Fails only if the counter would overflow 2^64 - 2, which one write per arming cannot
        // reach.
        let _ = self.write(1);
    }

    fn clear(&self) {
        // EAGAIN (nothing to clear) is the usual result.
        let _ = self.read();
    }
}

/// What the waker thread and the handles of one segment handle and watch share.
struct Shared {
    seg: Arc<Segment>,
    /// The watch's type: one thread per segment handle and watch.
    watch: TypeId,
    reg: Registry<EventFd>,
}

/// The waker thread of one segment handle and watch; stopped and joined when the last
/// registration goes.
pub(crate) struct Waker {
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
    /// `segment::fork_generation()` when the thread started: a forked child has no such thread.
    generation: u64,
}

impl Drop for Waker {
    fn drop(&mut self) {
        self.shared.reg.stop(&PRIVATE);
        if let Some(t) = self.thread.take() {
            if segment::fork_generation() == self.generation {
                let _ = t.join();
            } else {
                // A forked child: the thread lives only in the parent, and joining it would fail
                // (the standard library panics). Its handle is let go.
                std::mem::forget(t);
            }
        }
    }
}

/// The waker threads of this process, one per segment handle and watch with registrations.
static WAKERS: Mutex<Vec<Weak<Waker>>> = Mutex::new(Vec::new());

/// The waker of `seg` for `watch`, started if it has none.
fn waker_for<W: Watch>(seg: &Arc<Segment>, watch: W) -> Result<Arc<Waker>> {
    let key = TypeId::of::<W>();
    let mut all = WAKERS.lock().unwrap_or_else(PoisonError::into_inner);
    all.retain(|w| w.strong_count() > 0);
    // A waker inherited across fork has no thread in this process: a child starts its own.
    segment::install_fork_hook();
    let generation = segment::fork_generation();
    if let Some(w) = all.iter().filter_map(Weak::upgrade).find(|w| {
        Arc::ptr_eq(&w.shared.seg, seg) && w.shared.watch == key && w.generation == generation
    }) {
        return Ok(w);
    }
    let shared = Arc::new(Shared {
        seg: Arc::clone(seg),
        watch: key,
        reg: Registry::new(),
    });
    let for_thread = Arc::clone(&shared);
    let thread = std::thread::Builder::new()
        .name("shmbus-waker".into())
        .spawn(move || run(&for_thread, watch))
        .map_err(|source| Error::Io {
            name: seg.name().to_owned(),
            op: "start the readiness thread",
            source,
        })?;
    let w = Arc::new(Waker {
        shared,
        thread: Some(thread),
        generation,
    });
    all.push(Arc::downgrade(&w));
    Ok(w)
}

/// A handle's side of its registration (kept in the subscriber, receiver or sender).
pub(crate) struct Armed {
    /// The tokio registration of the eventfd; dropped (deregistered) before the eventfd closes.
    #[cfg(feature = "tokio")]
    pub(crate) async_fd: Option<tokio::io::unix::AsyncFd<RawFd>>,
    reg: Arc<Registration<EventFd>>,
    waker: Arc<Waker>,
}

impl Drop for Armed {
    fn drop(&mut self) {
        if segment::fork_generation() != self.waker.generation {
            // A forked child: the registry is its parent's waker's, whose lock the parent may
            // have held at the fork; the child leaves it alone.
            return;
        }
        let shared = &self.waker.shared;
        shared.reg.remove(&self.reg);
        shared.reg.kick(&PRIVATE);
    }
}

impl Armed {
    /// Registers a bus subscriber with the waker of `seg` (starting it if needed).
    pub(crate) fn new(seg: &Arc<Segment>) -> Result<Armed> {
        Armed::watching(seg, BusWatch)
    }

    /// Registers a handle with the waker of `seg` for `watch` (starting it if needed).
    pub(crate) fn watching<W: Watch>(seg: &Arc<Segment>, watch: W) -> Result<Armed> {
        let efd = EventFd::from_flags(EfdFlags::EFD_NONBLOCK | EfdFlags::EFD_CLOEXEC)
            .map_err(|e| Error::io(seg.name(), "eventfd", e))?;
        let reg = Arc::new(Registration::new(efd));
        let waker = waker_for(seg, watch)?;
        waker.shared.reg.add(&reg);
        Ok(Armed {
            #[cfg(feature = "tokio")]
            async_fd: None,
            reg,
            waker,
        })
    }

    pub(crate) fn fd(&self) -> BorrowedFd<'_> {
        self.reg.sig.as_fd()
    }

    /// The name of the watched segment.
    #[cfg_attr(not(feature = "tokio"), allow(dead_code))]
    pub(crate) fn name(&self) -> &str {
        self.waker.shared.seg.name()
    }

    /// Whether the waker signalled for something the slot does not show; clears it.
    pub(crate) fn take_check(&self) -> bool {
        self.reg.take_check()
    }

    /// After a receive (or send) found nothing at `next`: have the waker signal once there is
    /// something (docs/design.md §14; see [`Registration::arm`]).
    pub(crate) fn arm(&self, next: u64) {
        if self.reg.arm(next) {
            self.waker.shared.reg.kick(&PRIVATE);
        }
    }

    /// A receive reported `Closed` at `next`: the waker signals a closed segment once per
    /// position, and the registration stays armed at `next`, so that a loop that stops draining
    /// at `Closed` is woken when a producer attaches again and publishes.
    pub(crate) fn closed(&self, next: u64) {
        self.reg.closed(next);
        self.arm(next);
    }
}

/// The waker thread: makes its watch's target, then runs the loop.
fn run<W: Watch>(shared: &Shared, watch: W) {
    let seg = &*shared.seg;
    let now = Instant::now();
    let mut host = SysHost {
        seg,
        futex: SysFutex::of(seg),
        last_check: now,
        now,
    };
    waker::run(&shared.reg, &watch.target(seg), W::words(seg), &mut host);
}

/// The kernel's side of the waker's loop, for one segment.
struct SysHost<'a> {
    seg: &'a Segment,
    futex: SysFutex,
    /// When the periodic look last ran.
    last_check: Instant,
    /// The time of the current pass.
    now: Instant,
}

impl Host for SysHost<'_> {
    fn periodic(&mut self) -> bool {
        self.now = Instant::now();
        if self.now.duration_since(self.last_check) >= CHECK_PERIOD {
            self.last_check = self.now;
            return true;
        }
        false
    }

    fn any_alive(&self) -> bool {
        // A queue's "producers" are its senders, which hold no segment-wide lock.
        if self.seg.kind == crate::segment::header::SegmentKind::Queue {
            return crate::queue::senders_alive(self.seg);
        }
        SegmentLiveness::observer(self.seg).any_alive()
    }

    fn wait_kick(&self, kick: &AtomicU32, seen: u32) {
        futex_wait(kick, seen, None, false);
    }

    fn sleep(
        &self,
        words: WakeWords<'_>,
        kick: &AtomicU32,
        seen: u32,
        ready: impl FnOnce() -> bool,
    ) {
        let slice = CHECK_PERIOD.saturating_sub(self.now.duration_since(self.last_check));
        if self.seg.is_writable() {
            let either = SegOrKick {
                sys: &self.futex,
                kick,
                kick_seen: seen,
            };
            wait::sleep(words, &either, Some(slice), ready);
        } else if !ready() {
            // A read-only handle may not raise the waiter flag: poll (docs/design.md §14).
            futex_wait(kick, seen, Some(slice.min(READ_ONLY_POLL)), false);
        }
    }
}

/// The segment's futex, whose sleep also ends on a kick.
struct SegOrKick<'a> {
    sys: &'a SysFutex,
    kick: &'a AtomicU32,
    kick_seen: u32,
}

impl Futex for SegOrKick<'_> {
    fn wait(&self, word: &AtomicU32, expected: u32, timeout: Option<Duration>) {
        wait::futex_wait_either(
            word,
            expected,
            self.sys.shared,
            self.kick,
            self.kick_seen,
            timeout,
        );
    }

    fn wake_all(&self, word: &AtomicU32) {
        self.sys.wake_all(word);
    }

    fn heavy_barrier(&self) -> bool {
        self.sys.heavy_barrier()
    }
}

/// A subscriber with a file descriptor that an event loop (epoll, mio, io_uring...) can wait
/// on: readable when [`Readiness::try_recv`] has something to return (a message, a lap, or a
/// closed bus). Made by [`Subscriber::into_readiness`].
///
/// Drain it with [`Readiness::try_recv`] until [`Recv::Empty`]: the receive that finds nothing
/// clears the descriptor and re-arms it, so no publish is missed between the two
/// (docs/design.md §14). Readiness may be spurious (a receive then finds nothing); it is never
/// lost. A closed bus makes it readable once per sequence: a receive that gets
/// [`Recv::Closed`] is not woken again for the same closure.
///
/// ```
/// use std::os::fd::AsFd;
/// use shmbus::{BusBuilder, Recv};
/// # let name = format!("doc-readiness-{}", std::process::id());
/// let bus = BusBuilder::new(&name).create()?;
/// let mut tx = bus.publisher()?;
/// let mut rx = bus.subscriber().into_readiness()?;
/// assert!(matches!(rx.try_recv(), Recv::Empty)); // armed
/// tx.publish_bytes(b"hi")?;
/// // Wait for the descriptor as an event loop would.
/// let mut fds = [nix::poll::PollFd::new(rx.as_fd(), nix::poll::PollFlags::POLLIN)];
/// nix::poll::poll(&mut fds, nix::poll::PollTimeout::NONE).unwrap();
/// assert!(matches!(rx.try_recv(), Recv::Message(m) if m.bytes() == b"hi"));
/// # shmbus::Bus::remove(&name)?;
/// # Ok::<(), shmbus::Error>(())
/// ```
pub struct Readiness<T: Payload = Raw> {
    sub: Subscriber<T>,
}

impl<T: Payload> std::fmt::Debug for Readiness<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Readiness")
            .field("subscriber", &self.sub)
            .field("fd", &self.as_raw_fd())
            .finish()
    }
}

impl<T: Payload> Readiness<T> {
    pub(crate) fn new(mut sub: Subscriber<T>) -> Result<Self> {
        // Armed from the start, so that an event loop may wait before its first receive.
        let next = sub.next_seq();
        sub.armed()?.arm(next);
        Ok(Readiness { sub })
    }

    /// Receives without waiting, like [`Subscriber::try_recv`]; when it finds nothing it re-arms
    /// the descriptor, which becomes readable again once there is something to receive.
    pub fn try_recv(&mut self) -> Recv<'_, T> {
        self.sub.try_recv_armed()
    }

    /// The subscriber (its sequence and counters).
    pub fn subscriber(&self) -> &Subscriber<T> {
        &self.sub
    }

    /// The subscriber back, without its descriptor.
    pub fn into_inner(mut self) -> Subscriber<T> {
        self.sub.disarm();
        self.sub
    }
}

impl<T: Payload> AsFd for Readiness<T> {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.sub.ready_fd()
    }
}

impl<T: Payload> AsRawFd for Readiness<T> {
    fn as_raw_fd(&self) -> RawFd {
        self.as_fd().as_raw_fd()
    }
}

/// The position a queue handle's first arming names: a queue's targets look at the head and
/// the tail themselves and ignore it, and a later arming at any position re-arms.
const QUEUE_POSITION: u64 = 0;

/// A queue receiver with a file descriptor that an event loop can wait on: readable when
/// [`QueueReceiverReadiness::try_recv`] may have an item to return, and once when the queue
/// closes (no sender attached, no item left: [`QueueReceiver::is_closed`] tells). Made by
/// [`QueueReceiver::into_readiness`]; armed from the start.
///
/// Drain it with [`QueueReceiverReadiness::try_recv`] until `None`: the receive that finds
/// nothing clears the descriptor and re-arms it, so no send is missed between the two
/// (docs/design.md §14). Readiness may be spurious (another receiver may take the item first),
/// never lost. Senders pay for the wake-up only while some receiver is armed.
///
/// ```
/// use std::os::fd::AsFd;
/// # let name = format!("doc-queue-readiness-{}", std::process::id());
/// let queue = shmbus::Queue::builder(&name).capacity(8).item_size(16).create()?;
/// let mut tx = queue.sender()?;
/// let mut rx = queue.receiver()?.into_readiness()?;
/// assert_eq!(rx.try_recv(), None); // armed
/// tx.try_send(b"job").unwrap();
/// let mut fds = [nix::poll::PollFd::new(rx.as_fd(), nix::poll::PollFlags::POLLIN)];
/// nix::poll::poll(&mut fds, nix::poll::PollTimeout::NONE).unwrap();
/// assert_eq!(rx.try_recv(), Some(&b"job"[..]));
/// # shmbus::Queue::remove(&name)?;
/// # Ok::<(), shmbus::Error>(())
/// ```
pub struct QueueReceiverReadiness<T: Payload = Raw> {
    rx: QueueReceiver<T>,
}

impl<T: Payload> std::fmt::Debug for QueueReceiverReadiness<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("QueueReceiverReadiness")
            .field("receiver", &self.rx)
            .field("fd", &self.as_raw_fd())
            .finish()
    }
}

impl<T: Payload> QueueReceiverReadiness<T> {
    /// `rx` is registered.
    pub(crate) fn new(rx: QueueReceiver<T>) -> Self {
        // Armed from the start, so that an event loop may wait before its first receive.
        rx.registration().arm(QUEUE_POSITION);
        QueueReceiverReadiness { rx }
    }

    /// Receives without waiting, like [`QueueReceiver::try_recv`]; when it finds nothing it
    /// re-arms the descriptor, which becomes readable again once an item is there.
    pub fn try_recv(&mut self) -> Option<&T::View> {
        self.rx.try_recv_ready()
    }

    /// The receiver (its counters).
    pub fn receiver(&self) -> &QueueReceiver<T> {
        &self.rx
    }

    /// The receiver back, without its descriptor.
    pub fn into_inner(mut self) -> QueueReceiver<T> {
        self.rx.disarm();
        self.rx
    }
}

impl<T: Payload> AsFd for QueueReceiverReadiness<T> {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.rx.registration().fd()
    }
}

impl<T: Payload> AsRawFd for QueueReceiverReadiness<T> {
    fn as_raw_fd(&self) -> RawFd {
        self.as_fd().as_raw_fd()
    }
}

/// A queue sender with a file descriptor that an event loop can wait on: readable when
/// [`QueueSenderReadiness::try_send`] may find a free slot. Made by
/// [`QueueSender::into_readiness`].
///
/// Send with [`QueueSenderReadiness::try_send`] until it hands the item back as
/// [`SendError::Full`]: that attempt clears the descriptor and re-arms it, so no freed slot is
/// missed between the two (docs/design.md §14). Readiness may be spurious (another sender may
/// take the slot first), never lost. Receivers pay for the wake-up only while some sender is
/// armed.
pub struct QueueSenderReadiness<T: Payload = Raw> {
    tx: QueueSender<T>,
}

impl<T: Payload> std::fmt::Debug for QueueSenderReadiness<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("QueueSenderReadiness")
            .field("sender", &self.tx)
            .field("fd", &self.as_raw_fd())
            .finish()
    }
}

impl<T: Payload> QueueSenderReadiness<T> {
    /// `tx` is registered.
    pub(crate) fn new(tx: QueueSender<T>) -> Self {
        // Armed from the start, so that an event loop may wait before its first send.
        tx.registration().arm(QUEUE_POSITION);
        QueueSenderReadiness { tx }
    }

    /// The sender (its counters).
    pub fn sender(&self) -> &QueueSender<T> {
        &self.tx
    }

    /// The sender back, without its descriptor.
    pub fn into_inner(mut self) -> QueueSender<T> {
        self.tx.disarm();
        self.tx
    }
}

impl QueueSenderReadiness<Raw> {
    /// Sends `item` if the queue has room now, like [`QueueSender::try_send`]; when it is full,
    /// hands the item back and re-arms the descriptor, which becomes readable again once a slot
    /// is free.
    ///
    /// # Errors
    ///
    /// [`SendError::TooLarge`] if `item` is longer than the item size (the descriptor is not
    /// armed then); [`SendError::Full`] if the queue has no room now.
    pub fn try_send<'b>(&mut self, item: &'b [u8]) -> std::result::Result<(), SendError<&'b [u8]>> {
        let capacity = self.tx.item_size();
        if item.len() > capacity {
            return Err(SendError::TooLarge { item, capacity });
        }
        if self.tx.try_send_armed(item) {
            Ok(())
        } else {
            Err(SendError::Full(item))
        }
    }
}

impl<T: bytemuck::Pod> QueueSenderReadiness<T> {
    /// Sends `item` if the queue has room now, like [`QueueSender::try_send`]; when it is full,
    /// hands the item back and re-arms the descriptor, which becomes readable again once a slot
    /// is free.
    ///
    /// # Errors
    ///
    /// [`SendError::Full`] if the queue has no room now.
    pub fn try_send(&mut self, item: T) -> std::result::Result<(), SendError<T>> {
        if self.tx.try_send_armed(bytemuck::bytes_of(&item)) {
            Ok(())
        } else {
            Err(SendError::Full(item))
        }
    }
}

impl<T: Payload> AsFd for QueueSenderReadiness<T> {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.tx.registration().fd()
    }
}

impl<T: Payload> AsRawFd for QueueSenderReadiness<T> {
    fn as_raw_fd(&self) -> RawFd {
        self.as_fd().as_raw_fd()
    }
}

/// A records subscriber with a file descriptor that an event loop can wait on: readable when
/// [`RecordReadiness::try_recv`] has something to return (a record, a lap, or a closed
/// segment). Made by [`RecordSubscriber::into_readiness`].
///
/// Drain it with [`RecordReadiness::try_recv`] until [`RecordRecv::Empty`], as a bus
/// [`Readiness`]: readiness may be spurious, never lost, and a closed segment makes it readable
/// once per sequence (docs/design.md §14).
pub struct RecordReadiness {
    sub: RecordSubscriber,
}

impl std::fmt::Debug for RecordReadiness {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RecordReadiness")
            .field("subscriber", &self.sub)
            .field("fd", &self.as_raw_fd())
            .finish()
    }
}

impl RecordReadiness {
    /// `sub` is registered.
    pub(crate) fn new(sub: RecordSubscriber) -> Self {
        // Armed from the start, so that an event loop may wait before its first receive.
        sub.registration().arm(sub.next_seq());
        RecordReadiness { sub }
    }

    /// Receives without waiting, like [`RecordSubscriber::try_recv`]; when it finds nothing it
    /// re-arms the descriptor, which becomes readable again once there is something to receive.
    pub fn try_recv(&mut self) -> RecordRecv<'_> {
        self.sub.try_recv_armed()
    }

    /// The subscriber (its sequence and counters).
    pub fn subscriber(&self) -> &RecordSubscriber {
        &self.sub
    }

    /// The subscriber back, without its descriptor.
    pub fn into_inner(mut self) -> RecordSubscriber {
        self.sub.disarm();
        self.sub
    }
}

impl AsFd for RecordReadiness {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.sub.registration().fd()
    }
}

impl AsRawFd for RecordReadiness {
    fn as_raw_fd(&self) -> RawFd {
        self.as_fd().as_raw_fd()
    }
}
