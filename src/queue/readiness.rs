//! Queue readiness (docs/design.md §14): what the item and space wakers watch, the event-loop registration of senders and receivers, and tokio.

#[cfg(all(feature = "tokio", not(loom)))]
use crate::error::Error;
use crate::error::Result;
use crate::payload::Payload;
#[cfg(all(feature = "tokio", not(loom)))]
use crate::payload::Raw;
use crate::segment::header::{W_Q_SPACE_WAITERS, W_Q_SPACE_WAKE};
use crate::segment::Segment;
use crate::wait::WakeWords;

use super::protocol::{QueueRing, POS_LIMIT};
use super::receiver::QueueReceiver;
use super::sender::QueueSender;

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
