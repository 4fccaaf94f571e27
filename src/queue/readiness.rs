//! Queue readiness (docs/design.md §14): what the item and space wakers watch, the event-loop
//! registration of receivers and senders and their armed attempts, [`QueueReceiverReadiness`]
//! and [`QueueSenderReadiness`], and tokio (`recv_async`, `send_async`).

use super::layout::{W_Q_SPACE_WAITERS, W_Q_SPACE_WAKE};
#[cfg(feature = "tokio")]
use crate::error::Error;
use crate::error::Result;
#[cfg(feature = "tokio")]
use crate::readiness::tokio::poll_ready;
use crate::readiness::{registered, Armed, Ready, Registered, Target, Watch};
use crate::segment::payload::{Payload, Raw};
use crate::segment::Segment;
use crate::wait::WakeWords;

use super::participant::senders_alive;
use super::protocol::{QueueRing, POS_LIMIT};
use super::receiver::QueueReceiver;
use super::sender::{QueueSender, SendError};

/// Queue receivers' readiness (docs/design.md §14): an item, or a skip to pass, at the head.
/// Every armed receiver of the segment handle is signalled; the one that takes the item
/// receives it, the others find nothing and re-arm.
#[derive(Clone, Copy)]
pub(crate) struct ItemWatch;

/// The queue as the item waker sees it.
pub(crate) struct ItemTarget<'a> {
    ring: QueueRing<'a>,
    seg: &'a Segment,
}

impl Watch for ItemWatch {
    type Target<'a> = ItemTarget<'a>;

    fn target(self, seg: &Segment) -> ItemTarget<'_> {
        ItemTarget {
            ring: QueueRing::new(seg.words(), seg.geometry),
            seg,
        }
    }

    /// Senders bump these after every publish (and a repair that makes a skip).
    fn words(seg: &Segment) -> WakeWords<'_> {
        seg.wake_words()
    }
}

impl Target for ItemTarget<'_> {
    #[inline]
    fn ready(&self, _: u64) -> bool {
        self.ring.has_item()
    }

    /// The tail is past the head (a sender claimed it) but the head holds nothing yet: its
    /// sender may have died, which the receiver's repair turns into a skip. Or the head's slot
    /// holds something of an earlier lap: an item published after its position was passed,
    /// which the receiver's repair adopts (docs/design.md §11, "Stalls").
    fn stalled(&self, _: u64) -> bool {
        self.ring.tail() > self.ring.head() || self.ring.earlier_lap_at_head()
    }

    /// No sender attached (a queue's senders hold no segment-wide lock: their table entries
    /// say): an empty queue is then reported closed (docs/design.md §11, "Closed").
    fn closed(&self) -> bool {
        !senders_alive(self.seg)
    }
}

/// Queue senders' readiness (docs/design.md §14): a free slot at the tail, announced by the
/// queue's second wake pair, which receivers bump after freeing a slot.
#[derive(Clone, Copy)]
pub(crate) struct SpaceWatch;

/// The queue as the space waker sees it, with its capacity.
pub(crate) struct SpaceTarget<'a>(QueueRing<'a>, u64);

impl Watch for SpaceWatch {
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

impl Target for SpaceTarget<'_> {
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

    /// Receivers come and go; a sender waits for the next one.
    fn closed(&self) -> bool {
        false
    }
}

/// The position a queue handle's first arming names: a queue's targets look at the head and
/// the tail themselves and ignore it, and a later arming at any position re-arms.
const QUEUE_POSITION: u64 = 0;

/// The registration of a queue handle, a receiver or a sender: the two differ only in the watch
/// and in their names.
macro_rules! registered_queue_handle {
    ($handle:ident, $watch:expr, $readiness:literal, $role:literal) => {
        impl<T: Payload> Registered for $handle<T> {
            const READINESS: &'static str = $readiness;
            const ROLE: &'static str = $role;

            fn register(&self) -> Result<Armed> {
                Armed::watching(&self.part.seg, $watch)
            }

            fn registration_slot(&mut self) -> &mut Option<Armed> {
                &mut self.ready
            }

            fn registration(&self) -> Option<&Armed> {
                self.ready.as_ref()
            }

            fn first_position(&self) -> u64 {
                QUEUE_POSITION
            }
        }
    };
}

registered_queue_handle!(
    QueueReceiver,
    ItemWatch,
    "QueueReceiverReadiness",
    "receiver"
);
registered_queue_handle!(QueueSender, SpaceWatch, "QueueSenderReadiness", "sender");

/// Event-loop receive: the readiness registration (docs/design.md §14).
impl<T: Payload> QueueReceiver<T> {
    /// This receiver with a file descriptor an event loop can wait on: see
    /// [`QueueReceiverReadiness`]. Starts this queue handle's item waker thread if it has none
    /// (one per queue handle in a process, shared by its receivers).
    ///
    /// # Errors
    ///
    /// [`crate::Error::Io`] if the eventfd cannot be made (`op` "eventfd": too many open files)
    /// or the waker thread cannot be started (`op` "start the readiness thread").
    pub fn into_readiness(self) -> Result<QueueReceiverReadiness<T>> {
        Ready::new(self)
    }

    /// One attempt; when it finds nothing, arms the registration (which must exist) so that its
    /// eventfd becomes readable once an item is there. After a signal for a stall, first asks
    /// whether the sender holding the head died (and skips its position if so).
    pub(crate) fn try_recv_armed(&mut self) -> Option<usize> {
        if registered(self.ready.as_ref()).take_check() {
            let pos = self.part.ring().head();
            if pos < POS_LIMIT {
                self.repair_at(pos);
            }
        }
        let got = self.attempt();
        if got.is_none() {
            let head = self.part.ring().head();
            let armed = registered(self.ready.as_ref());
            if self.is_closed() {
                // Signalled once per closure (docs/design.md §14), and armed for an item.
                armed.closed(head);
            } else {
                armed.arm(head);
            }
        }
        got
    }
}

/// Event-loop send: the readiness registration (docs/design.md §14).
impl<T: Payload> QueueSender<T> {
    /// This sender with a file descriptor an event loop can wait on: see
    /// [`QueueSenderReadiness`]. Starts this queue handle's space waker thread if it has none
    /// (one per queue handle in a process, shared by its senders).
    ///
    /// # Errors
    ///
    /// [`crate::Error::Io`] if the eventfd cannot be made (`op` "eventfd": too many open files)
    /// or the waker thread cannot be started (`op` "start the readiness thread").
    pub fn into_readiness(self) -> Result<QueueSenderReadiness<T>> {
        Ready::new(self)
    }

    /// One attempt to send `bytes` (which fit); when the queue is full, arms the registration
    /// (which must exist) so that its eventfd becomes readable once a slot is free. After a
    /// signal for a stall, first asks whether the receiver holding the slot died.
    pub(crate) fn try_send_armed(&mut self, bytes: &[u8]) -> bool {
        if registered(self.ready.as_ref()).take_check() {
            let pos = self.part.ring().tail();
            if pos < POS_LIMIT {
                self.repair_at(pos);
            }
        }
        if self.attempt(bytes) {
            return true;
        }
        registered(self.ready.as_ref()).arm(self.part.ring().tail());
        false
    }
}

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
pub type QueueReceiverReadiness<T = Raw> = Ready<QueueReceiver<T>>;

impl<T: Payload> Ready<QueueReceiver<T>> {
    /// Receives without waiting, like [`QueueReceiver::try_recv`]; when it finds nothing it
    /// re-arms the descriptor, which becomes readable again once an item is there.
    pub fn try_recv(&mut self) -> Option<&T::View> {
        let len = self.handle_mut().try_recv_armed()?;
        Some(self.handle().view(len))
    }

    /// The receiver (its counters).
    pub fn receiver(&self) -> &QueueReceiver<T> {
        self.handle()
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
pub type QueueSenderReadiness<T = Raw> = Ready<QueueSender<T>>;

impl<T: Payload> Ready<QueueSender<T>> {
    /// The sender (its counters).
    pub fn sender(&self) -> &QueueSender<T> {
        self.handle()
    }
}

impl Ready<QueueSender<Raw>> {
    /// Sends `item` if the queue has room now, like [`QueueSender::try_send`]; when it is full,
    /// hands the item back and re-arms the descriptor, which becomes readable again once a slot
    /// is free.
    ///
    /// # Errors
    ///
    /// [`SendError::TooLarge`] if `item` is longer than the item size (the descriptor is not
    /// armed then); [`SendError::Full`] if the queue has no room now.
    pub fn try_send<'b>(&mut self, item: &'b [u8]) -> std::result::Result<(), SendError<&'b [u8]>> {
        let capacity = self.handle().item_size();
        if item.len() > capacity {
            return Err(SendError::TooLarge { item, capacity });
        }
        if self.handle_mut().try_send_armed(item) {
            Ok(())
        } else {
            Err(SendError::Full(item))
        }
    }
}

impl<T: bytemuck::Pod> Ready<QueueSender<T>> {
    /// Sends `item` if the queue has room now, like [`QueueSender::try_send`]; when it is full,
    /// hands the item back and re-arms the descriptor, which becomes readable again once a slot
    /// is free.
    ///
    /// # Errors
    ///
    /// [`SendError::Full`] if the queue has no room now.
    pub fn try_send(&mut self, item: T) -> std::result::Result<(), SendError<T>> {
        if self.handle_mut().try_send_armed(bytemuck::bytes_of(&item)) {
            Ok(())
        } else {
            Err(SendError::Full(item))
        }
    }
}

/// An item handed back by a [`QueueSender::send_async`] that could not complete, with the
/// reason.
#[cfg(feature = "tokio")]
pub struct SendAsyncError<T> {
    /// The item that was not sent.
    pub item: T,
    /// Why: [`Error::MessageTooLarge`] (a raw item longer than the item size) or [`Error::Io`]
    /// (outside a tokio runtime, no eventfd or waker thread, or the reactor failed).
    pub error: Error,
}

#[cfg(feature = "tokio")]
impl<T> SendAsyncError<T> {
    /// The item that was not sent.
    pub fn into_inner(self) -> T {
        self.item
    }
}

#[cfg(feature = "tokio")]
impl<T> std::fmt::Debug for SendAsyncError<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SendAsyncError")
            .field("error", &self.error)
            .finish_non_exhaustive()
    }
}

#[cfg(feature = "tokio")]
impl<T> std::fmt::Display for SendAsyncError<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "the item was not sent: {}", self.error)
    }
}

#[cfg(feature = "tokio")]
impl<T> std::error::Error for SendAsyncError<T> {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.error)
    }
}

/// Awaiting a queue in a tokio task (feature `tokio`, docs/design.md §14).
#[cfg(feature = "tokio")]
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
        // An item, owned; `Some(None)` for a closed queue; `None` for nothing yet.
        let owned = |rx: &mut Self| match rx.try_recv_armed() {
            Some(len) => Some(Some(T::to_owned(rx.view(len)))),
            None if rx.is_closed() => Some(None),
            None => None,
        };
        std::future::poll_fn(|cx| poll_ready(self, cx, "recv_async", owned)).await
    }
}

/// Awaiting a queue in a tokio task (feature `tokio`, docs/design.md §14).
#[cfg(feature = "tokio")]
impl<T: Payload> QueueSender<T> {
    /// Sends `bytes` (which fit), waiting without blocking the thread while the queue is full.
    async fn send_bytes_async(&mut self, bytes: &[u8]) -> Result<()> {
        std::future::poll_fn(|cx| {
            poll_ready(self, cx, "send_async", |tx| {
                tx.try_send_armed(bytes).then_some(())
            })
        })
        .await
    }
}

#[cfg(feature = "tokio")]
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
    ) -> std::result::Result<(), SendAsyncError<&'b [u8]>> {
        let capacity = self.item_size();
        if item.len() > capacity {
            let error = Error::MessageTooLarge {
                len: item.len(),
                capacity,
            };
            return Err(SendAsyncError { item, error });
        }
        self.send_bytes_async(item)
            .await
            .map_err(|error| SendAsyncError { item, error })
    }
}

#[cfg(feature = "tokio")]
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
    pub async fn send_async(&mut self, item: T) -> std::result::Result<(), SendAsyncError<T>> {
        self.send_bytes_async(bytemuck::bytes_of(&item))
            .await
            .map_err(|error| SendAsyncError { item, error })
    }
}
