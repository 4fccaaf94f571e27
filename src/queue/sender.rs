//! The sending side: QueueSender and its errors and counters.
use std::marker::PhantomData;
use std::time::{Duration, Instant};

use crate::segment::payload::{Payload, Raw};
use crate::segment::producers::Liveness;
use crate::wait::{self, Wait};

use super::participant::{participant_debug, snapshots, stats_and_index, Participant, Stuck};
use super::protocol::{self, Repair, Route, SendBegin, Sender, POS_LIMIT};

/// Attempts one send makes at most when its positions keep being passed or routed (each is
/// one dead position): beyond it, the send reports full and is tried again as any full send.
const ROUTES: u32 = 64;

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
    /// A byte sender on a typed queue ([`crate::Queue::bytes_sender`]) was given an item of another
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
    /// Slots this handle routed around because the receiver holding them, alive, had not
    /// finished for the stall bound (docs/design.md §11, "Stalls").
    pub stalls_passed: u64,
    /// Items this handle sent again at a new position because receivers had passed the one it
    /// had claimed while it stalled past the bound (each is still delivered once).
    pub resent: u64,
}

/// The sending side of a [`Queue`](crate::Queue). Detaches on drop.
pub struct QueueSender<T: Payload = Raw> {
    pub(super) part: Participant,
    pub(super) sender: Sender,
    pub(super) stats: SenderStats,
    pub(super) wait: Wait,
    pub(super) stuck: Stuck,
    /// The registration with the queue's space waker, once readiness or `send_async` is used
    /// (docs/design.md §14).
    #[cfg(not(loom))]
    pub(super) ready: Option<crate::readiness::Armed>,
    pub(super) _type: PhantomData<fn(&T)>,
}

participant_debug!(QueueSender);

impl<T: Payload> QueueSender<T> {
    /// Sets how `send` and `send_timeout` wait while the queue is full (default
    /// [`Wait::Sleep`]: receivers pay for a wake-up only while a sender sleeps).
    pub fn wait_strategy(mut self, wait: Wait) -> Self {
        self.wait = wait;
        self
    }

    stats_and_index!(SenderStats);

    /// Largest item, in bytes.
    pub fn item_size(&self) -> usize {
        self.part.seg.geometry.capacity
    }

    snapshots!();

    /// One attempt: claim, write, publish, wake. `bytes` fits.
    #[inline(always)]
    pub(super) fn attempt(&mut self, bytes: &[u8]) -> bool {
        let q = self.part.ring();
        for _ in 0..ROUTES {
            match self.sender.begin(&q) {
                SendBegin::Claimed(pos) => {
                    self.sender.write(&q, pos, bytes);
                    if self.part.stall_bound_ns.is_none() {
                        // No position of this queue is ever passed: Vyukov's plain publish.
                        self.sender.publish(&q, pos);
                    } else if !self.sender.commit(&q, pos) {
                        // Receivers passed `pos` while we stalled: the slot is released, the
                        // item was never delivered from it. Send it again.
                        self.stats.resent += 1;
                        continue;
                    }
                    self.stats.sent += 1;
                    wait::wake_after_publish(
                        self.part.item_words(),
                        &self.part.futex,
                        self.part.strong_fence,
                    );
                    return true;
                }
                SendBegin::Full(pos) => {
                    self.stats.full += 1;
                    if self.stuck.note(pos) {
                        self.repair_at(pos);
                    }
                    return false;
                }
                SendBegin::Held(pos, st) => {
                    if let Route::Freed { lost } = route(&self.part, &q, pos, st) {
                        self.stats.lost += u64::from(lost);
                    }
                }
            }
        }
        self.stats.full += 1;
        false
    }

    /// The queue is full at `pos`: if the receiver holding the item a lap before is dead, free
    /// its slot (the item counts as lost); if it lives and has held it for the stall bound,
    /// route around its slot (docs/design.md §11, "Stalls").
    #[cold]
    pub(super) fn repair_at(&mut self, pos: u64) {
        let (q, live) = (self.part.ring(), self.part.live());
        self.stuck.at(pos);
        let r = protocol::repair_stalled_send(&q, &live, pos, self.part.index);
        match r {
            Repair::Lost => self.stats.lost += 1,
            Repair::Held => {
                if self.stuck.held_past(
                    live.now_ns(),
                    self.part.stall_bound_ns,
                    self.part.stall_clock(false),
                ) {
                    if protocol::route_stalled_recv(&q, pos) {
                        self.stats.stalls_passed += 1;
                    }
                    self.stuck.released();
                }
                return;
            }
            _ => {}
        }
        self.stuck.released();
        self.part.wake_for(r);
    }

    /// Tries until `deadline` (`None`: forever), waiting as the strategy says.
    pub(super) fn send_until(&mut self, bytes: &[u8], deadline: Option<Instant>) -> bool {
        let wait = self.wait;
        wait::block(&mut Sending { tx: self, bytes }, wait, deadline).is_some()
    }

    pub(super) fn check_len<I>(&self, item: I, len: usize) -> std::result::Result<I, SendError<I>> {
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
    pub(super) fn check_attached<I>(&self, item: I) -> std::result::Result<I, SendError<I>> {
        if self.part.forked() {
            return Err(SendError::UsedAfterFork(item));
        }
        Ok(item)
    }
}

/// The slot of tail position `pos` is held (state `st`) by a participant of an earlier lap that
/// was passed: route around it, or free it if its holder died.
#[cold]
fn route(part: &Participant, q: &protocol::QueueRing<'_>, pos: u64, st: u64) -> Route {
    let r = protocol::route_held(q, &part.live(), pos, st, part.index);
    if let Route::Freed { .. } = r {
        part.wake_for(Repair::Freed);
    }
    r
}

/// A blocking send's side of the one blocking loop (docs/design.md §7).
struct Sending<'a, 'b, T: Payload> {
    tx: &'a mut QueueSender<T>,
    bytes: &'b [u8],
}

impl<T: Payload> wait::Attempt for Sending<'_, '_, T> {
    type Out = ();

    #[inline]
    fn attempt(&mut self) -> Option<()> {
        self.tx.attempt(self.bytes).then_some(())
    }

    /// A full queue whose receiver died holding the slot a lap before stays full: free it.
    fn check(&mut self) -> Option<()> {
        let pos = self.tx.part.ring().tail();
        if pos < POS_LIMIT {
            self.tx.repair_at(pos);
        }
        None
    }

    /// Sleeps on the space words unless a slot is free.
    fn sleep(&mut self, timeout: Option<Duration>) {
        let part = &self.tx.part;
        let q = part.ring();
        wait::sleep(part.space_words(), &part.futex, timeout, || q.has_space());
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
