//! The receiving side: QueueReceiver, its counters and iterators.
use std::marker::PhantomData;
use std::time::{Duration, Instant};

use crate::segment::payload::{Payload, Raw};
use crate::segment::producers::Liveness;
use crate::wait::{self, Wait};

use super::participant::closed;
use super::participant::{
    participant_debug, snapshots, stats_and_index, Participant, Stuck, Waited,
};
use super::protocol::{self, Receiver, RecvBegin, Repair, POS_LIMIT};

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
    /// Positions this handle passed because the sender that claimed them, alive, had not
    /// published for the stall bound; that sender sends the item again when it runs
    /// (docs/design.md §11, "Stalls").
    pub stalls_passed: u64,
}

/// The receiving side of a [`Queue`](crate::Queue): each item it receives, no other receiver receives.
/// Detaches on drop.
pub struct QueueReceiver<T: Payload = Raw> {
    pub(super) part: Participant,
    pub(super) receiver: Receiver,
    /// Private copy-out buffer, 8-byte aligned, one slot's payload long.
    pub(super) buf: Box<[u64]>,
    pub(super) stats: ReceiverStats,
    pub(super) wait: Wait,
    pub(super) stuck: Stuck,
    /// The registration with the queue's item waker, once readiness or `recv_async` is used
    /// (docs/design.md §14).
    #[cfg(not(loom))]
    pub(super) ready: Option<crate::readiness::Armed>,
    pub(super) _type: PhantomData<fn() -> T>,
}

participant_debug!(QueueReceiver);

impl<T: Payload> QueueReceiver<T> {
    /// Sets how `recv` and `recv_timeout` wait while the queue is empty (default
    /// [`Wait::Sleep`]: senders pay for a wake-up only while a receiver sleeps).
    pub fn wait_strategy(mut self, wait: Wait) -> Self {
        self.wait = wait;
        self
    }

    stats_and_index!(ReceiverStats);

    snapshots!();

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
    /// [`crate::Queue::is_closed`]).
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

    #[inline]
    pub(super) fn view(&self, len: usize) -> &T::View {
        T::view(&bytemuck::cast_slice(&self.buf)[..len])
            .expect("attempt() returns only lengths this type accepts")
    }

    /// One attempt; the length of the item now in `buf`.
    #[inline(always)]
    pub(super) fn attempt(&mut self) -> Option<usize> {
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
    pub(super) fn wake_senders(&self) {
        wait::wake_after_publish(
            self.part.space_words(),
            &self.part.futex,
            self.part.strong_fence,
        );
    }

    /// The head `pos` is empty: if the sender that claimed it is dead, it becomes a skip; if
    /// it lives and has held it for the stall bound, receivers pass it (docs/design.md §11,
    /// "Stalls").
    #[cold]
    pub(super) fn repair_at(&mut self, pos: u64) {
        let (q, live) = (self.part.ring(), self.part.live());
        self.stuck.at(pos);
        let r = protocol::repair_stalled_recv(&q, &live, pos, self.part.index);
        if r == Repair::Held {
            if self.stuck.held_past(
                live.now_ns(),
                self.part.stall_bound_ns,
                self.part.stall_clock(true),
            ) {
                if protocol::pass_stalled_send(&q, pos) {
                    self.stats.stalls_passed += 1;
                    // Other receivers may sleep at `pos`: it is dead now.
                    self.part.wake_for(Repair::Skipped);
                }
                self.stuck.released();
            }
            return;
        }
        self.stuck.released();
        self.part.wake_for(r);
    }

    pub(super) fn recv_until(&mut self, deadline: Option<Instant>) -> Waited {
        if self.part.forked() {
            // Nothing to wait for: this receiver may not take items here.
            return Waited::Closed;
        }
        let wait = self.wait;
        wait::block(&mut Receiving { rx: self }, wait, deadline).unwrap_or(Waited::TimedOut)
    }
}

/// A blocking receive's side of the one blocking loop (docs/design.md §7).
struct Receiving<'a, T: Payload> {
    rx: &'a mut QueueReceiver<T>,
}

impl<T: Payload> wait::Attempt for Receiving<'_, T> {
    type Out = Waited;

    #[inline]
    fn attempt(&mut self) -> Option<Waited> {
        self.rx.attempt().map(Waited::Item)
    }

    /// A sender that died holding the head position leaves it empty: skip it. No sender and
    /// no item: closed.
    fn check(&mut self) -> Option<Waited> {
        let pos = self.rx.part.ring().head();
        if pos < POS_LIMIT {
            self.rx.repair_at(pos);
        }
        if !self.rx.is_closed() {
            return None;
        }
        // Items sent just before the last sender left are taken first.
        Some(self.attempt().unwrap_or(Waited::Closed))
    }

    /// Sleeps on the item words unless an item is there.
    fn sleep(&mut self, timeout: Option<Duration>) {
        let part = &self.rx.part;
        let q = part.ring();
        wait::sleep(part.item_words(), &part.futex, timeout, || q.has_item());
    }
}

/// Blocking iterator made by [`QueueReceiver::iter`].
pub struct QueueIter<'a, T: Payload> {
    pub(super) rx: &'a mut QueueReceiver<T>,
}

impl<T: Payload> Iterator for QueueIter<'_, T> {
    type Item = T::Owned;

    fn next(&mut self) -> Option<T::Owned> {
        self.rx.recv().map(T::to_owned)
    }
}

/// Non-blocking iterator made by [`QueueReceiver::try_iter`].
pub struct QueueTryIter<'a, T: Payload> {
    pub(super) rx: &'a mut QueueReceiver<T>,
}

impl<T: Payload> Iterator for QueueTryIter<'_, T> {
    type Item = T::Owned;

    fn next(&mut self) -> Option<T::Owned> {
        self.rx.try_recv().map(T::to_owned)
    }
}
