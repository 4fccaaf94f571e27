//! The consumer side: each subscriber keeps only its own expected sequence number, in its own
//! process; nothing about it is stored in the segment (docs/design.md §6).

use std::marker::PhantomData;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::bus::ring::{Polled, Reader, Ring, Visit};
use crate::bus::view::{InPlace, SlotView, Viewed};
use crate::segment::payload::{Payload, Raw};
use crate::segment::producers::SegmentLiveness;
use crate::segment::Segment;
use crate::wait::{self, SysFutex, Wait};

/// Where a new subscriber starts reading.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Start {
    /// Only messages published from now on (the default).
    #[default]
    Next,
    /// The old name of [`Start::Next`]: messages published from now on. (It read like
    /// [`LapPolicy::Newest`], which resumes at the newest message already published.)
    #[deprecated(note = "renamed to Start::Next")]
    Newest,
    /// The oldest message still intact in the ring.
    Oldest,
    /// The last `n` messages (or as many as are intact), then what follows.
    Last(u64),
    /// A given sequence number (if it was overwritten already, the first receive reports a lap).
    Sequence(u64),
}

/// Where a lapped subscriber resumes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum LapPolicy {
    /// At the oldest message still intact (the default). If a producer laps it again before it
    /// reads that message, it resumes at the newest instead, so it always makes progress.
    #[default]
    Oldest,
    /// At the newest message already published.
    Newest,
}

/// Counters of one subscriber. Over any window it observed, `received + lost` equals the number
/// of sequence numbers published.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SubscriberStats {
    /// Messages delivered.
    pub received: u64,
    /// Sequence numbers skipped: overwritten before being read (laps), abandoned by a writer
    /// that died mid-write, given up by their producer, or passed after the stall bound.
    pub lost: u64,
    /// Times the subscriber was lapped.
    pub laps: u64,
    /// Sequences passed because their producer, alive, had not written them within the bus's
    /// stall bound ([`crate::BusBuilder::stall_bound`]); each is also counted in `lost`.
    pub stalls_passed: u64,
}

/// One result of receiving.
pub enum Recv<'a, T: Payload = Raw> {
    /// A whole message, copied out of the ring.
    Message(Message<'a, T>),
    /// Nothing new (only from [`Subscriber::try_recv`] and an expired [`Subscriber::recv_timeout`]).
    Empty,
    /// The subscriber fell behind (or a writer died mid-message): exactly `lost` sequence numbers
    /// were skipped. The subscriber stays usable.
    Lapped {
        /// How many sequence numbers were skipped.
        lost: u64,
    },
    /// No producer is attached and everything intact has been received. Not final: a producer
    /// may attach later and the sequence continues.
    Closed,
}

impl<T: Payload> std::fmt::Debug for Recv<'_, T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Recv::Message(m) => f.debug_tuple("Message").field(m).finish(),
            Recv::Empty => f.write_str("Empty"),
            Recv::Lapped { lost } => f.debug_struct("Lapped").field("lost", lost).finish(),
            Recv::Closed => f.write_str("Closed"),
        }
    }
}

impl<T: Payload> Recv<'_, T> {
    /// The message, if this is one.
    pub fn message(&self) -> Option<&Message<'_, T>> {
        match self {
            Recv::Message(m) => Some(m),
            _ => None,
        }
    }
}

/// A received message: a borrow of the subscriber's own buffer (never of the live slot), valid
/// until the next receive.
pub struct Message<'a, T: Payload = Raw> {
    seq: u64,
    value: &'a T::View,
}

impl<T: Payload> Message<'_, T> {
    /// The message's sequence number.
    pub fn seq(&self) -> u64 {
        self.seq
    }

    /// The message's bytes.
    pub fn bytes(&self) -> &[u8] {
        T::bytes(self.value)
    }

    /// The message as its type (`[u8]` for raw buses).
    pub fn get(&self) -> &T::View {
        self.value
    }
}

impl<T: Payload> std::ops::Deref for Message<'_, T> {
    type Target = T::View;
    fn deref(&self) -> &T::View {
        self.value
    }
}

impl<T: Payload> std::fmt::Debug for Message<'_, T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Message")
            .field("seq", &self.seq)
            .field("len", &self.bytes().len())
            .finish()
    }
}

/// What the iterator yields: owned copies, since an iterator cannot lend its buffer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event<V> {
    /// A message with its sequence number.
    Message {
        /// Sequence number.
        seq: u64,
        /// The message.
        value: V,
    },
    /// `lost` sequence numbers skipped.
    Lapped {
        /// How many.
        lost: u64,
    },
}

/// Deprecated: a stall is bounded per bus now, by [`crate::BusBuilder::stall_bound`] (stored in
/// the bus, so that every subscriber passes a stalled sequence after the same time), and a dead
/// or dropping claimant's sequence is skipped at once. Kept for source compatibility.
#[deprecated(note = "set the bus's stall bound instead: `BusBuilder::stall_bound`")]
pub const DEFAULT_STALL_TIMEOUT: Duration = Duration::from_millis(50);

/// How often `try_recv` asks the kernel whether producers are attached, at most.
const CHECK_PERIOD: Duration = wait::CHECK_PERIOD;

/// A consumer. Made by [`crate::Bus::subscriber`] or [`crate::Bus::subscribe`].
pub struct Subscriber<T: Payload = Raw> {
    pub(super) seg: Arc<Segment>,
    pub(super) reader: Reader,
    /// Private copy-out buffer, 8-byte aligned, one slot's payload long.
    pub(super) buf: Box<[u64]>,
    wait: Wait,
    futex: SysFutex,
    /// When `try_recv` last asked the kernel whether producers are attached.
    last_liveness: Instant,
    /// The registration with the bus's waker thread, once readiness or `recv_async` is used
    /// (docs/design.md §14).
    #[cfg(not(loom))]
    pub(super) ready: Option<crate::readiness::Armed>,
    _type: PhantomData<fn() -> T>,
}

impl<T: Payload> std::fmt::Debug for Subscriber<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Subscriber")
            .field("bus", &self.seg.name())
            .field("next", &self.reader.next_seq())
            .field("stats", &self.reader.stats())
            .finish()
    }
}

impl<T: Payload> Subscriber<T> {
    pub(crate) fn new(seg: Arc<Segment>, start: Start) -> Self {
        let size = T::type_info("").size as usize;
        let mut reader = Reader::new(&Ring::of(&seg), start, (size != 0).then_some(size));
        reader.set_stall_bound(crate::bus::handle::stall_bound_ns(&seg));
        Subscriber {
            reader,
            buf: vec![0u64; seg.geometry.payload_words()].into_boxed_slice(),
            wait: Wait::Sleep,
            futex: SysFutex::of(&seg),
            last_liveness: Instant::now(),
            seg,
            #[cfg(not(loom))]
            ready: None,
            _type: PhantomData,
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

    /// Deprecated and without effect: a sequence whose writer is alive is waited for, one whose
    /// claimant died or dropped it is skipped at once (docs/design.md, "Stalls").
    #[deprecated(note = "stalls no longer time out: see docs/design.md, \"Stalls\"")]
    pub fn stall_timeout(self, _timeout: Duration) -> Self {
        self
    }

    /// The next sequence number this subscriber expects.
    pub fn next_seq(&self) -> u64 {
        self.reader.next_seq()
    }

    /// Counters so far.
    pub fn stats(&self) -> SubscriberStats {
        self.reader.stats()
    }

    /// Receives without waiting: a message, nothing new, a lap with its exact loss, or
    /// [`Recv::Closed`]. Never allocates or locks. An empty poll is one load; once in 1024 empty
    /// polls it also looks at the write cursor (a lap, or a sequence whose claimant died or gave
    /// it up), and if nothing is pending and 5 ms have passed since it last asked, it asks the
    /// kernel whether a producer is attached: so `Closed` shows after at least 1024 empty polls.
    /// Once reported, `Closed` is the answer of every empty poll until a message arrives or a
    /// look (as above) finds a producer attached.
    #[inline]
    pub fn try_recv(&mut self) -> Recv<'_, T> {
        let seg = &*self.seg;
        let mut p = self.reader.poll(
            &Ring::of(seg),
            &SegmentLiveness::observer(seg),
            &mut *self.buf,
        );
        if matches!(p, Polled::Idle) {
            p = self.idle();
        }
        self.finish(p)
    }

    /// [`idle`] for `try_recv`: a method of no arguments, so that `try_recv` passes none (its
    /// empty poll then compiles exactly as it did before the in-place receive existed).
    #[cold]
    #[inline(never)]
    fn idle(&mut self) -> Polled {
        idle(
            &self.seg,
            &mut self.reader,
            &mut self.last_liveness,
            &mut *self.buf,
        )
    }

    /// Receives, waiting as long as it takes with the subscriber's [`Wait`] strategy. Returns a
    /// message, a lap, or [`Recv::Closed`] once no producer is attached and nothing intact is
    /// left unread.
    pub fn recv(&mut self) -> Recv<'_, T> {
        let p = self.wait_for(None);
        self.finish(p)
    }

    /// Like [`Subscriber::recv`], giving up with [`Recv::Empty`] after `timeout` (a timeout too
    /// large to represent, such as `Duration::MAX`, waits without limit).
    pub fn recv_timeout(&mut self, timeout: Duration) -> Recv<'_, T> {
        let p = self.wait_for(Instant::now().checked_add(timeout));
        self.finish(p)
    }

    /// A blocking iterator over owned messages and laps; it ends when the bus is closed (see
    /// [`Recv::Closed`]).
    pub fn iter(&mut self) -> Iter<'_, T> {
        Iter { sub: self }
    }

    fn wait_for(&mut self, deadline: Option<Instant>) -> Polled {
        let seg = &*self.seg;
        let mut receiving = wait::Receiving {
            reader: Polling {
                reader: &mut self.reader,
                ring: Ring::of(seg),
                live: SegmentLiveness::observer(seg),
                buf: &mut *self.buf,
            },
            seg,
            futex: &self.futex,
        };
        wait::block(&mut receiving, self.wait, deadline).unwrap_or(Polled::Empty)
    }

    /// Receives without waiting, as [`Subscriber::try_recv`], but runs `f` over the message in
    /// place instead of copying it out (docs/design.md §6, "Reading in place"): `f` gets a
    /// [`SlotView`] of the live slot, whose every read is an atomic load. After `f` returns,
    /// the slot's version is checked again: if a writer overwrote the slot meanwhile (a lap),
    /// what `f` saw may be torn, so its value is dropped and the result is
    /// [`Viewed::Lapped`], with exactly the loss, lap policy and counters [`Subscriber::try_recv`]
    /// would have reported; otherwise it is [`Viewed::Message`] with `f`'s value.
    ///
    /// `f` runs at most once, and only on a message this subscriber would deliver (never on a
    /// sequence being written, abandoned, or of another length than a typed bus's type). Keep
    /// `f` short: the longer it runs, the likelier a lap (the slot is reused after one ring of
    /// publishes). Anything `f` does besides returning a value (writing into the caller's
    /// state) must be undone by the caller on [`Viewed::Lapped`]. If `f` panics, the
    /// subscriber has not moved: the next receive reads the same sequence again.
    ///
    /// ```
    /// use shmbus::bus::Viewed;
    /// use shmbus::BusBuilder;
    ///
    /// let bus = BusBuilder::new("doc-try-recv-with").in_process().unwrap();
    /// let mut tx = bus.publisher().unwrap();
    /// let mut rx = bus.subscriber();
    /// tx.publish_bytes(&[1, 2, 3, 4, 5, 6, 7, 8, 9]).unwrap();
    /// // Sum the message's words where they lie, without copying it out.
    /// let sum = rx.try_recv_with(|view| view.words().fold(0u64, u64::wrapping_add));
    /// // Words are native-endian; bytes past the length read as zero.
    /// let want = u64::from_ne_bytes([1, 2, 3, 4, 5, 6, 7, 8])
    ///     + u64::from_ne_bytes([9, 0, 0, 0, 0, 0, 0, 0]);
    /// assert_eq!(sum, Viewed::Message { seq: 0, value: want });
    /// ```
    #[inline]
    pub fn try_recv_with<R>(&mut self, f: impl FnOnce(SlotView<'_, T>) -> R) -> Viewed<R> {
        let seg = &*self.seg;
        let mut visit = InPlace::new(f, self.reader.exact_len(), &mut self.buf);
        // As `try_recv`, with the closure in place of the copy.
        let mut p = self
            .reader
            .poll(&Ring::of(seg), &SegmentLiveness::observer(seg), &mut visit);
        if matches!(p, Polled::Idle) {
            p = idle(seg, &mut self.reader, &mut self.last_liveness, &mut visit);
        }
        visit.into_viewed(p)
    }

    /// Receives in place as [`Subscriber::try_recv_with`], waiting as [`Subscriber::recv`]
    /// does: returns a message (`f`'s value), a lap, or [`Viewed::Closed`]. `f` runs at most
    /// once, when the message has arrived.
    pub fn recv_with<R>(&mut self, f: impl FnOnce(SlotView<'_, T>) -> R) -> Viewed<R> {
        self.recv_deadline_with(None, f)
    }

    /// Like [`Subscriber::recv_with`], giving up with [`Viewed::Empty`] after `timeout` (then
    /// `f` did not run; a timeout too large to represent waits without limit).
    pub fn recv_timeout_with<R>(
        &mut self,
        timeout: Duration,
        f: impl FnOnce(SlotView<'_, T>) -> R,
    ) -> Viewed<R> {
        self.recv_deadline_with(Instant::now().checked_add(timeout), f)
    }

    fn recv_deadline_with<R>(
        &mut self,
        deadline: Option<Instant>,
        f: impl FnOnce(SlotView<'_, T>) -> R,
    ) -> Viewed<R> {
        let seg = &*self.seg;
        let mut visit = InPlace::new(f, self.reader.exact_len(), &mut self.buf);
        // As `wait_for` (kept apart, so that `recv` compiles as it did before), with the
        // closure in place of the copy.
        let mut receiving = wait::Receiving {
            reader: Polling {
                reader: &mut self.reader,
                ring: Ring::of(seg),
                live: SegmentLiveness::observer(seg),
                buf: &mut visit,
            },
            seg,
            futex: &self.futex,
        };
        let p = wait::block(&mut receiving, self.wait, deadline).unwrap_or(Polled::Empty);
        visit.into_viewed(p)
    }

    #[inline]
    pub(super) fn finish(&self, p: Polled) -> Recv<'_, T> {
        match p {
            Polled::Message { seq, len } => {
                let value = T::view(&bytemuck::cast_slice(&self.buf)[..len])
                    .expect("the reader delivers only lengths this type accepts");
                Recv::Message(Message { seq, value })
            }
            Polled::Empty | Polled::Idle => Recv::Empty,
            Polled::Lapped { lost } => Recv::Lapped { lost },
            Polled::Closed => Recv::Closed,
        }
    }
}

/// Nothing is pending: ask about producers (a system call) at most every [`CHECK_PERIOD`].
/// Out of line, so that the one-load empty poll stays small.
#[cold]
#[inline(never)]
fn idle<V: Visit + ?Sized>(
    seg: &Segment,
    reader: &mut Reader,
    last_liveness: &mut Instant,
    buf: &mut V,
) -> Polled {
    let now = Instant::now();
    if now.duration_since(*last_liveness) < CHECK_PERIOD {
        // A bus found closed stays closed until a look finds a producer.
        return if reader.is_closed() {
            Polled::Closed
        } else {
            Polled::Empty
        };
    }
    *last_liveness = now;
    reader.poll_checked(&Ring::of(seg), &SegmentLiveness::observer(seg), buf)
}

/// A blocking receive's reader side of the one blocking loop (docs/design.md §7).
struct Polling<'a, V: ?Sized> {
    reader: &'a mut Reader,
    ring: Ring<'a>,
    live: SegmentLiveness<'a>,
    buf: &'a mut V,
}

impl<V: Visit + ?Sized> wait::Reading for Polling<'_, V> {
    type Out = Polled;

    #[inline]
    fn poll(&mut self, checked: bool) -> Option<Polled> {
        let p = if checked {
            self.reader.poll_checked(&self.ring, &self.live, self.buf)
        } else {
            self.reader.poll(&self.ring, &self.live, self.buf)
        };
        match p {
            Polled::Empty | Polled::Idle => None,
            p => Some(p),
        }
    }

    fn ready(&self) -> bool {
        self.ring.ready(self.reader.next_seq())
    }
}

/// Blocking iterator made by [`Subscriber::iter`].
pub struct Iter<'a, T: Payload> {
    sub: &'a mut Subscriber<T>,
}

impl<T: Payload> Iterator for Iter<'_, T> {
    type Item = Event<T::Owned>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            match self.sub.recv() {
                Recv::Message(m) => {
                    return Some(Event::Message {
                        seq: m.seq,
                        value: T::to_owned(m.value),
                    })
                }
                Recv::Lapped { lost } => return Some(Event::Lapped { lost }),
                Recv::Closed => return None,
                Recv::Empty => continue,
            }
        }
    }
}
