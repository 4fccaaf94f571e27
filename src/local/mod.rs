//! The in-process flavour of the work queue (docs/design.md §11): a bounded multi-producer,
//! multi-consumer queue of any `T: Send` between the threads of one process, with no shared
//! memory segment, so that code written against [`crate::QueueSender`] and
//! [`crate::QueueReceiver`] also serves threads that pass values which are not `Pod` (boxes,
//! strings, channels).
//!
//! # The algorithm
//!
//! Dmitry Vyukov's bounded MPMC queue, the one the shared-memory queue and crossbeam's
//! `ArrayQueue` use. Two positions only grow: `tail` (the next position a sender takes) and
//! `head` (the next a receiver takes). Position `p` lives in slot `p & (N - 1)`, whose sequence
//! word says whom the slot serves, as twice a position plus a full bit:
//!
//! ```text
//!   seq == 2p         free: the sender of p may write it (slot i starts at 2i)
//!   seq == 2p + 1     holds p's item: the receiver of p may read it
//!   seq == 2(p + N)   read and freed by p's receiver: free for the sender of p + N
//! ```
//!
//! A sender takes `p` with a CAS of the tail when the slot reads `2p`, moves the item in and
//! stores `2p + 1`; a receiver takes `p` with a CAS of the head when the slot reads `2p + 1`,
//! moves the item out and stores `2(p + N)`. (Vyukov's `p`, `p + 1`, `p + N` would confuse
//! "holds p's item" with "free for p + 1" in a queue of one slot; the full bit keeps them apart
//! for every capacity, as crossbeam's lap stamps do.) Unlike the segment queue there is no crash to repair:
//! a thread cannot stop between taking a position and completing it (nothing in between can
//! panic), and a panicking thread drops its handles on the way out.
//!
//! # Handles
//!
//! [`LocalQueue`] is the ring alone (`&self` methods, for an `Arc`), like crossbeam's
//! `ArrayQueue`. [`LocalQueue::channel`] wraps it in cloneable [`LocalSender`] and
//! [`LocalReceiver`] handles that also wait ([`Wait`]: spin, yield, or sleep on a futex with the
//! handshake of docs/design.md §7) and notice when the other side is gone.

use std::mem::MaybeUninit;
#[cfg(not(loom))]
use std::sync::Arc;
#[cfg(not(loom))]
use std::time::{Duration, Instant};

use crate::error::{Error, Result};
use crate::sync::{fence, spin_hint, AtomicU64, Ordering};

#[cfg(not(loom))]
use crate::sync::AtomicU32;
#[cfg(not(loom))]
use crate::wait::{self, SysFutex, Wait, WakeWords};

use super::SendError;

/// The largest capacity of a local queue, in items.
pub const MAX_LOCAL_CAPACITY: u64 = 1 << 32;

/// `UnsafeCell` with loom's closure API, so that the same code runs under loom (which checks
/// every access to the cell against the model's happens-before).
#[cfg(not(loom))]
struct Cell<T>(std::cell::UnsafeCell<T>);

#[cfg(not(loom))]
impl<T> Cell<T> {
    fn new(v: T) -> Self {
        Cell(std::cell::UnsafeCell::new(v))
    }

    fn with_mut<R>(&self, f: impl FnOnce(*mut T) -> R) -> R {
        f(self.0.get())
    }
}

#[cfg(loom)]
use ::loom::cell::UnsafeCell as Cell;

/// Keeps its field on cache lines of its own, so that senders (on the tail) and receivers (on
/// the head) do not invalidate each other's line; 128 bytes because x86-64 prefetches lines in
/// pairs.
#[repr(align(128))]
struct Padded<T>(T);

/// The sequence word of a slot free for the sender of `pos`.
#[inline]
fn free(pos: u64) -> u64 {
    pos << 1
}

/// The sequence word of a slot holding the item of `pos`.
#[inline]
fn full(pos: u64) -> u64 {
    (pos << 1) | 1
}

/// One slot: the sequence word (see the module docs) and room for one item.
struct Slot<T> {
    /// Which position the slot serves and whether it holds that position's item.
    seq: AtomicU64,
    /// The item, initialised exactly while `seq == full(p)` for the slot's current `p` (and while
    /// the sender or receiver that took `p` moves it in or out).
    value: Cell<MaybeUninit<T>>,
}

/// A bounded multi-producer, multi-consumer queue of `T` between threads (the ring alone;
/// share it with an `Arc`). Its capacity is a power of two.
///
/// ```
/// use shmbus::{LocalQueue, SendError};
///
/// let q = LocalQueue::new(2)?;
/// q.try_send(String::from("a")).unwrap();
/// q.try_send(String::from("b")).unwrap();
/// assert!(matches!(q.try_send(String::from("c")), Err(SendError::Full(c)) if c == "c"));
/// assert_eq!(q.try_recv().as_deref(), Some("a"));
/// # Ok::<(), shmbus::Error>(())
/// ```
pub struct LocalQueue<T> {
    /// The next position a receiver takes. Only grows.
    head: Padded<AtomicU64>,
    /// The next position a sender takes. Only grows; never more than `N` ahead of `head`.
    /// Positions stay below 2^63 (at a billion items a second, for 290 years), so that twice a
    /// position fits a sequence word.
    tail: Padded<AtomicU64>,
    /// `N` slots; position `p` lives in slot `p & mask`.
    slots: Box<[Slot<T>]>,
    /// `N - 1`.
    mask: u64,
}

// SAFETY: the queue hands each item from the thread that sends it to the one thread that takes
// its position (docs/design.md §11), so sharing the queue moves `T`s between threads: `T: Send`
// is all it takes. Slot cells are only touched by the holder of their position.
unsafe impl<T: Send> Send for LocalQueue<T> {}
// SAFETY: as for `Send`: `&LocalQueue` only moves whole items in and out, never shares a `&T`.
unsafe impl<T: Send> Sync for LocalQueue<T> {}

impl<T> std::fmt::Debug for LocalQueue<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalQueue")
            .field("capacity", &self.capacity())
            .field("len", &self.len())
            .finish()
    }
}

impl<T> LocalQueue<T> {
    /// A queue of `capacity` items, a power of two from 1 to [`MAX_LOCAL_CAPACITY`].
    ///
    /// # Errors
    ///
    /// [`Error::InvalidConfig`] for any other capacity, or one whose slots would not fit in
    /// memory.
    pub fn new(capacity: u64) -> Result<Self> {
        if capacity == 0 || !capacity.is_power_of_two() || capacity > MAX_LOCAL_CAPACITY {
            return Err(Error::InvalidConfig(format!(
                "a local queue's capacity must be a power of two from 1 to {MAX_LOCAL_CAPACITY}, \
                 got {capacity}"
            )));
        }
        let bytes = usize::try_from(capacity)
            .ok()
            .and_then(|n| n.checked_mul(std::mem::size_of::<Slot<T>>()))
            .filter(|&b| b <= isize::MAX as usize);
        if bytes.is_none() {
            return Err(Error::InvalidConfig(format!(
                "a local queue of {capacity} items of {} bytes does not fit in memory",
                std::mem::size_of::<T>()
            )));
        }
        let slots = (0..capacity)
            .map(|i| Slot {
                seq: AtomicU64::new(free(i)),
                value: Cell::new(MaybeUninit::uninit()),
            })
            .collect();
        Ok(LocalQueue {
            head: Padded(AtomicU64::new(0)),
            tail: Padded(AtomicU64::new(0)),
            slots,
            mask: capacity - 1,
        })
    }

    fn slot(&self, pos: u64) -> &Slot<T> {
        // `mask < slots.len()`, which fits a usize (checked in `new`).
        &self.slots[(pos & self.mask) as usize]
    }

    /// Sends `item` if the queue has room now; hands it back if it is full. Never blocks: it
    /// retries only while another thread is in the middle of a send or receive that decides
    /// whether there is room.
    ///
    /// # Errors
    ///
    /// [`SendError::Full`] with the item if the queue is full.
    pub fn try_send(&self, item: T) -> std::result::Result<(), SendError<T>> {
        let cap = self.capacity();
        let mut tail = self.tail.0.load(Ordering::Relaxed);
        loop {
            let slot = self.slot(tail);
            // ORDERING: Acquire pairs with the Release store of `free(tail)` by the receiver that
            // freed the slot: its move of the previous item out happens before our move in.
            let seq = slot.seq.load(Ordering::Acquire);
            if seq == free(tail) {
                // ORDERING: SeqCst, so that the full check below (a SeqCst fence, then a load of
                // the tail by a receiver's empty check) is ordered against this claim, as in
                // crossbeam's ArrayQueue.
                match self.tail.0.compare_exchange_weak(
                    tail,
                    tail + 1,
                    Ordering::SeqCst,
                    Ordering::Relaxed,
                ) {
                    Ok(_) => {
                        slot.value.with_mut(|p| {
                            // SAFETY: the CAS gave this thread position `tail`, and the slot read
                            // `free(tail)`, so no other thread touches the cell until the store
                            // below publishes it (docs/design.md §11); writing a MaybeUninit
                            // never drops an old value.
                            unsafe { (*p).write(item) };
                        });
                        // ORDERING: Release pairs with the receiver's Acquire load of `seq`:
                        // the item moved in above is visible to whoever reads `full(tail)`.
                        slot.seq.store(full(tail), Ordering::Release);
                        return Ok(());
                    }
                    Err(now) => tail = now,
                }
            } else if tail >= cap && seq == full(tail - cap) {
                // The slot still holds the item of position `tail - N`: full, unless its receiver
                // has already taken the head past it and is moving the item out.
                // ORDERING: the SeqCst fence orders this head load after our tail load in the
                // single total order with the receivers' SeqCst head CASes.
                fence(Ordering::SeqCst);
                let head = self.head.0.load(Ordering::Relaxed);
                if head.wrapping_add(cap) == tail {
                    return Err(SendError::Full(item));
                }
                spin_hint();
                tail = self.tail.0.load(Ordering::Relaxed);
            } else {
                // Another sender took `tail` first.
                spin_hint();
                tail = self.tail.0.load(Ordering::Relaxed);
            }
        }
    }

    /// Receives the oldest item if there is one. Never blocks: it retries only while a sender
    /// that took an earlier position is moving its item in.
    pub fn try_recv(&self) -> Option<T> {
        let cap = self.capacity();
        let mut head = self.head.0.load(Ordering::Relaxed);
        loop {
            let slot = self.slot(head);
            // ORDERING: Acquire pairs with the sender's Release store of `full(head)`: the item
            // it moved in is visible before we move it out.
            let seq = slot.seq.load(Ordering::Acquire);
            if seq == full(head) {
                // ORDERING: SeqCst, for the senders' full check (see `try_send`).
                match self.head.0.compare_exchange_weak(
                    head,
                    head + 1,
                    Ordering::SeqCst,
                    Ordering::Relaxed,
                ) {
                    Ok(_) => {
                        let item = slot.value.with_mut(|p| {
                            // SAFETY: the CAS gave this thread position `head`, whose slot read
                            // `full(head)`: it holds the item a sender moved in, initialised, and
                            // no other thread touches the cell until the store below frees it
                            // (docs/design.md §11). The read moves the item out; the slot is
                            // uninitialised again from here.
                            unsafe { (*p).assume_init_read() }
                        });
                        // ORDERING: Release pairs with the Acquire load of `seq` by the sender
                        // of `head + N`: our move out happens before its move in.
                        slot.seq.store(free(head + cap), Ordering::Release);
                        return Some(item);
                    }
                    Err(now) => head = now,
                }
            } else if seq == free(head) {
                // Not written yet: empty, unless a sender has taken `head` and is moving its
                // item in.
                // ORDERING: as in `try_send`, the fence orders this tail load against the
                // senders' SeqCst tail CASes.
                fence(Ordering::SeqCst);
                let tail = self.tail.0.load(Ordering::Relaxed);
                if tail == head {
                    return None;
                }
                spin_hint();
                head = self.head.0.load(Ordering::Relaxed);
            } else {
                // Another receiver took `head` first.
                spin_hint();
                head = self.head.0.load(Ordering::Relaxed);
            }
        }
    }

    /// How many items the queue holds.
    pub fn capacity(&self) -> u64 {
        self.mask + 1
    }

    /// Items in the queue (a snapshot: other threads may change it at once).
    pub fn len(&self) -> u64 {
        // The head is read first: the tail read after it is at least as far, since the tail
        // never falls behind the head.
        let head = self.head.0.load(Ordering::SeqCst);
        let tail = self.tail.0.load(Ordering::SeqCst);
        tail.saturating_sub(head).min(self.capacity())
    }

    /// Whether the queue holds no item (a snapshot).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whether the queue is full (a snapshot).
    pub fn is_full(&self) -> bool {
        self.len() == self.capacity()
    }
}

impl<T> Drop for LocalQueue<T> {
    fn drop(&mut self) {
        if !std::mem::needs_drop::<T>() {
            return;
        }
        let head = self.head.0.load(Ordering::Relaxed);
        let tail = self.tail.0.load(Ordering::Relaxed);
        for pos in head..tail {
            self.slot(pos).value.with_mut(|p| {
                // SAFETY: `&mut self`: every send and receive has completed, so each position
                // from head to tail holds exactly one initialised item that no receiver took;
                // each is dropped once, here.
                unsafe { (*p).assume_init_drop() };
            });
        }
    }
}

#[cfg(not(loom))]
pub use channel::{LocalIter, LocalReceiver, LocalSender, LocalTryIter};

#[cfg(not(loom))]
mod channel {
    use super::*;

    /// Attempts a blocking call spins before it yields or sleeps.
    const SPIN_POLLS: u32 = 128;

    /// The words one side sleeps on (docs/design.md §7): the waiter flag and the futex counter.
    struct Sleepers {
        flag: AtomicU64,
        counter: AtomicU32,
    }

    impl Sleepers {
        fn new() -> Self {
            Sleepers {
                flag: AtomicU64::new(0),
                counter: AtomicU32::new(0),
            }
        }

        fn words(&self) -> WakeWords<'_> {
            WakeWords {
                flag: &self.flag,
                counter: &self.counter,
            }
        }
    }

    /// What the handles of one channel share.
    struct Chan<T> {
        queue: LocalQueue<T>,
        /// Live `LocalSender`s; at 0, receivers report the queue closed once it is empty.
        senders: AtomicU64,
        /// Live `LocalReceiver`s; at 0, a full queue stays full, so senders stop waiting.
        receivers: AtomicU64,
        /// Receivers sleep here until an item is sent (or the last sender goes).
        items: Sleepers,
        /// Senders sleep here until a slot is freed (or the last receiver goes).
        space: Sleepers,
        /// The process could not register for the sleepers' barrier: wakers use a real fence.
        strong_fence: bool,
    }

    const FUTEX: SysFutex = SysFutex::PRIVATE;

    impl<T> Chan<T> {
        /// After a send, or when the last sender goes: wakes sleeping receivers, if any.
        fn wake_receivers(&self) {
            wait::wake_after_publish(self.items.words(), &FUTEX, self.strong_fence);
        }

        /// After a receive, or when the last receiver goes: wakes sleeping senders, if any.
        fn wake_senders(&self) {
            wait::wake_after_publish(self.space.words(), &FUTEX, self.strong_fence);
        }
    }

    /// One step of a blocking call's wait after a failed attempt: spin at first, then as
    /// `wait` says; a sleep ends at `deadline`, or at once if `ready` holds after the waiter
    /// flag is raised (the handshake of docs/design.md §7, so no wake-up is lost).
    fn pause(
        wait: Wait,
        polls: &mut u32,
        sleepers: &Sleepers,
        deadline: Option<Instant>,
        ready: impl FnOnce() -> bool,
    ) {
        *polls = polls.saturating_add(1);
        if *polls < SPIN_POLLS || wait == Wait::Spin {
            spin_hint();
            return;
        }
        match wait {
            Wait::Yield => std::thread::yield_now(),
            _ => {
                let timeout = deadline.map(|d| d.saturating_duration_since(Instant::now()));
                wait::sleep(sleepers.words(), &FUTEX, timeout, ready);
            }
        }
    }

    fn passed(deadline: Option<Instant>) -> bool {
        deadline.is_some_and(|d| Instant::now() >= d)
    }

    impl<T> LocalQueue<T> {
        /// A queue of `capacity` items (a power of two) behind a sending and a receiving
        /// handle, both cloneable, that can also wait.
        ///
        /// ```
        /// let (tx, rx) = shmbus::LocalQueue::channel(64)?;
        /// let worker = std::thread::spawn(move || rx.iter().map(|s: String| s.len()).sum::<usize>());
        /// for job in ["a", "bb", "ccc"] {
        ///     tx.send(job.to_owned()).unwrap();
        /// }
        /// drop(tx); // the worker's iterator ends once the queue is empty
        /// assert_eq!(worker.join().unwrap(), 6);
        /// # Ok::<(), shmbus::Error>(())
        /// ```
        ///
        /// # Errors
        ///
        /// Those of [`LocalQueue::new`].
        pub fn channel(capacity: u64) -> Result<(LocalSender<T>, LocalReceiver<T>)> {
            let chan = Arc::new(Chan {
                queue: LocalQueue::new(capacity)?,
                senders: AtomicU64::new(1),
                receivers: AtomicU64::new(1),
                items: Sleepers::new(),
                space: Sleepers::new(),
                strong_fence: !wait::register_producer_process(),
            });
            Ok((
                LocalSender {
                    chan: chan.clone(),
                    wait: Wait::default(),
                },
                LocalReceiver {
                    chan,
                    wait: Wait::default(),
                },
            ))
        }
    }

    /// The sending side of a [`LocalQueue::channel`]. Cloneable; when the last clone is dropped,
    /// receivers see the queue closed once they have taken what it holds.
    pub struct LocalSender<T> {
        chan: Arc<Chan<T>>,
        wait: Wait,
    }

    /// The receiving side of a [`LocalQueue::channel`]: each item it receives, no other receiver
    /// receives. Cloneable; when the last clone is dropped, senders stop waiting for room.
    pub struct LocalReceiver<T> {
        chan: Arc<Chan<T>>,
        wait: Wait,
    }

    impl<T> Clone for LocalSender<T> {
        fn clone(&self) -> Self {
            self.chan.senders.fetch_add(1, Ordering::Relaxed);
            LocalSender {
                chan: self.chan.clone(),
                wait: self.wait,
            }
        }
    }

    impl<T> Clone for LocalReceiver<T> {
        fn clone(&self) -> Self {
            self.chan.receivers.fetch_add(1, Ordering::Relaxed);
            LocalReceiver {
                chan: self.chan.clone(),
                wait: self.wait,
            }
        }
    }

    impl<T> Drop for LocalSender<T> {
        fn drop(&mut self) {
            // ORDERING: Release pairs with the receivers' Acquire load of the count: a receiver
            // that sees 0 sees every item this sender sent.
            if self.chan.senders.fetch_sub(1, Ordering::AcqRel) == 1 {
                self.chan.wake_receivers();
            }
        }
    }

    impl<T> Drop for LocalReceiver<T> {
        fn drop(&mut self) {
            // ORDERING: Release pairs with the senders' Acquire load of the count.
            if self.chan.receivers.fetch_sub(1, Ordering::AcqRel) == 1 {
                self.chan.wake_senders();
            }
        }
    }

    impl<T> std::fmt::Debug for LocalSender<T> {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.debug_struct("LocalSender")
                .field("queue", &self.chan.queue)
                .finish()
        }
    }

    impl<T> std::fmt::Debug for LocalReceiver<T> {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.debug_struct("LocalReceiver")
                .field("queue", &self.chan.queue)
                .finish()
        }
    }

    impl<T> LocalSender<T> {
        /// Sets how `send` and `send_timeout` wait while the queue is full (default
        /// [`Wait::Sleep`]: receivers pay for a wake-up only while a sender sleeps).
        #[must_use]
        pub fn wait_strategy(mut self, wait: Wait) -> Self {
            self.wait = wait;
            self
        }

        /// Sends `item` if the queue has room now; hands it back if it is full. Never blocks;
        /// makes a system call only to wake a sleeping receiver.
        ///
        /// # Errors
        ///
        /// [`SendError::Full`] with the item if the queue is full.
        pub fn try_send(&self, item: T) -> std::result::Result<(), SendError<T>> {
            self.chan.queue.try_send(item)?;
            self.chan.wake_receivers();
            Ok(())
        }

        /// Sends `item`, waiting while the queue is full.
        ///
        /// # Errors
        ///
        /// [`SendError::Full`] with the item if the queue is full and every receiver has been
        /// dropped (nothing will ever make room).
        pub fn send(&self, item: T) -> std::result::Result<(), SendError<T>> {
            self.send_until(item, None)
        }

        /// Sends `item`, waiting at most `timeout` while the queue is full.
        ///
        /// # Errors
        ///
        /// [`SendError::Full`] with the item if the queue is still full when `timeout` has
        /// passed, or full with every receiver dropped.
        pub fn send_timeout(
            &self,
            item: T,
            timeout: Duration,
        ) -> std::result::Result<(), SendError<T>> {
            self.send_until(item, Instant::now().checked_add(timeout))
        }

        fn send_until(
            &self,
            mut item: T,
            deadline: Option<Instant>,
        ) -> std::result::Result<(), SendError<T>> {
            let chan = &*self.chan;
            let mut polls = 0;
            loop {
                match self.try_send(item) {
                    Err(SendError::Full(back)) => item = back,
                    done => return done,
                }
                // ORDERING: Acquire pairs with the Release decrement of the last receiver.
                if chan.receivers.load(Ordering::Acquire) == 0 || passed(deadline) {
                    return Err(SendError::Full(item));
                }
                pause(self.wait, &mut polls, &chan.space, deadline, || {
                    !chan.queue.is_full() || chan.receivers.load(Ordering::Acquire) == 0
                });
            }
        }

        /// Whether every receiver has been dropped: nothing will take the items sent from now.
        pub fn is_disconnected(&self) -> bool {
            self.chan.receivers.load(Ordering::Acquire) == 0
        }

        /// How many items the queue holds.
        pub fn capacity(&self) -> u64 {
            self.chan.queue.capacity()
        }

        /// Items in the queue (a snapshot).
        pub fn len(&self) -> u64 {
            self.chan.queue.len()
        }

        /// Whether the queue holds no item (a snapshot).
        pub fn is_empty(&self) -> bool {
            self.chan.queue.is_empty()
        }

        /// Whether the queue is full (a snapshot).
        pub fn is_full(&self) -> bool {
            self.chan.queue.is_full()
        }
    }

    impl<T> LocalReceiver<T> {
        /// Sets how `recv` and `recv_timeout` wait while the queue is empty (default
        /// [`Wait::Sleep`]: senders pay for a wake-up only while a receiver sleeps).
        #[must_use]
        pub fn wait_strategy(mut self, wait: Wait) -> Self {
            self.wait = wait;
            self
        }

        /// Receives the oldest item if there is one now. Never blocks; makes a system call only
        /// to wake a sleeping sender.
        pub fn try_recv(&self) -> Option<T> {
            let item = self.chan.queue.try_recv()?;
            self.chan.wake_senders();
            Some(item)
        }

        /// Receives the oldest item, waiting while the queue is empty. `None` once the queue
        /// is empty and every sender has been dropped (closed).
        pub fn recv(&self) -> Option<T> {
            self.recv_until(None)
        }

        /// Receives the oldest item, waiting at most `timeout` while the queue is empty. `None`
        /// if `timeout` passed, or the queue is closed ([`LocalReceiver::is_closed`] says
        /// which).
        pub fn recv_timeout(&self, timeout: Duration) -> Option<T> {
            self.recv_until(Instant::now().checked_add(timeout))
        }

        fn recv_until(&self, deadline: Option<Instant>) -> Option<T> {
            let chan = &*self.chan;
            let mut polls = 0;
            loop {
                if let Some(item) = self.try_recv() {
                    return Some(item);
                }
                // ORDERING: Acquire pairs with the Release decrement of the last sender: every
                // item sent happens before this load, so the last look below finds any left.
                if chan.senders.load(Ordering::Acquire) == 0 {
                    return self.try_recv();
                }
                if passed(deadline) {
                    return None;
                }
                pause(self.wait, &mut polls, &chan.items, deadline, || {
                    !chan.queue.is_empty() || chan.senders.load(Ordering::Acquire) == 0
                });
            }
        }

        /// Whether the queue is closed: every sender dropped and no item left.
        pub fn is_closed(&self) -> bool {
            // ORDERING: as in `recv_until`: after the count reads 0, emptiness is final.
            self.chan.senders.load(Ordering::Acquire) == 0 && self.chan.queue.is_empty()
        }

        /// A blocking iterator over received items; it ends when the queue is closed.
        pub fn iter(&self) -> LocalIter<'_, T> {
            LocalIter { rx: self }
        }

        /// A non-blocking iterator: the items in the queue now, then the end.
        pub fn try_iter(&self) -> LocalTryIter<'_, T> {
            LocalTryIter { rx: self }
        }

        /// How many items the queue holds.
        pub fn capacity(&self) -> u64 {
            self.chan.queue.capacity()
        }

        /// Items in the queue (a snapshot).
        pub fn len(&self) -> u64 {
            self.chan.queue.len()
        }

        /// Whether the queue holds no item (a snapshot).
        pub fn is_empty(&self) -> bool {
            self.chan.queue.is_empty()
        }

        /// Whether the queue is full (a snapshot).
        pub fn is_full(&self) -> bool {
            self.chan.queue.is_full()
        }
    }

    /// Blocking iterator made by [`LocalReceiver::iter`]: ends when the queue is closed.
    #[derive(Debug)]
    pub struct LocalIter<'a, T> {
        rx: &'a LocalReceiver<T>,
    }

    impl<T> Iterator for LocalIter<'_, T> {
        type Item = T;

        fn next(&mut self) -> Option<T> {
            self.rx.recv()
        }
    }

    /// Non-blocking iterator made by [`LocalReceiver::try_iter`].
    #[derive(Debug)]
    pub struct LocalTryIter<'a, T> {
        rx: &'a LocalReceiver<T>,
    }

    impl<T> Iterator for LocalTryIter<'_, T> {
        type Item = T;

        fn next(&mut self) -> Option<T> {
            self.rx.try_recv()
        }
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;
    use std::sync::{Arc, Barrier};

    /// Fewer rounds under miri, which is slow; the same paths either way.
    const fn scaled(n: usize) -> usize {
        if cfg!(miri) {
            n / 100 + 2
        } else {
            n
        }
    }

    /// Counts its drops in a shared counter, so tests running at once do not mix counts.
    #[derive(Debug)]
    struct Counted(Arc<AtomicUsize>);

    impl Drop for Counted {
        fn drop(&mut self) {
            self.0.fetch_add(1, Ordering::Relaxed);
        }
    }

    #[test]
    fn capacity_must_be_a_power_of_two_within_the_limit() {
        for bad in [0, 3, 6, 1000, MAX_LOCAL_CAPACITY * 2] {
            let e = LocalQueue::<u8>::new(bad).unwrap_err();
            assert!(matches!(e, Error::InvalidConfig(_)), "{bad}: {e}");
            assert!(e.to_string().contains(&bad.to_string()), "{e}");
        }
        for good in [1, 2, 64, 1024] {
            assert_eq!(LocalQueue::<u8>::new(good).unwrap().capacity(), good);
        }
    }

    #[test]
    fn len_empty_and_full_follow_sends_and_receives() {
        let q = LocalQueue::new(4).unwrap();
        assert!(q.is_empty() && !q.is_full());
        for i in 0..4 {
            assert_eq!(q.len(), i);
            q.try_send(i).unwrap();
        }
        assert!(q.is_full() && !q.is_empty());
        assert_eq!(q.len(), 4);
        assert_eq!(q.try_recv(), Some(0));
        assert_eq!(q.len(), 3);
        assert!(!q.is_full());
    }

    #[test]
    fn a_full_queue_hands_the_item_back_and_takes_it_after_a_receive() {
        let q = LocalQueue::new(1).unwrap();
        q.try_send(String::from("first")).unwrap();
        match q.try_send(String::from("second")) {
            Err(SendError::Full(back)) => assert_eq!(back, "second"),
            other => panic!("expected Full, got {other:?}"),
        }
        assert_eq!(q.try_recv().as_deref(), Some("first"));
        q.try_send(String::from("second")).unwrap();
        assert_eq!(q.try_recv().as_deref(), Some("second"));
        assert_eq!(q.try_recv(), None);
    }

    #[test]
    fn items_come_out_in_order_over_many_laps() {
        let q = LocalQueue::new(4).unwrap();
        let mut next_out = 0;
        for i in 0..scaled(1000) {
            if q.try_send(Box::new(i)).is_err() {
                assert_eq!(*q.try_recv().unwrap(), next_out);
                next_out += 1;
                q.try_send(Box::new(i)).unwrap();
            }
        }
        while let Some(v) = q.try_recv() {
            assert_eq!(*v, next_out);
            next_out += 1;
        }
        assert_eq!(next_out, scaled(1000));
    }

    #[test]
    fn zero_sized_items_are_counted_like_any_other() {
        let q = LocalQueue::new(2).unwrap();
        q.try_send(()).unwrap();
        q.try_send(()).unwrap();
        assert!(matches!(q.try_send(()), Err(SendError::Full(()))));
        assert_eq!(q.len(), 2);
        assert_eq!(q.try_recv(), Some(()));
        assert_eq!(q.try_recv(), Some(()));
        assert_eq!(q.try_recv(), None);
    }

    #[test]
    fn dropping_the_queue_drops_each_remaining_item_once() {
        let drops = Arc::new(AtomicUsize::new(0));
        let q = LocalQueue::new(8).unwrap();
        // Wrap the ring once so the remaining items straddle the end of the slots.
        for _ in 0..6 {
            q.try_send(Counted(drops.clone())).unwrap();
        }
        for _ in 0..5 {
            drop(q.try_recv().unwrap());
        }
        for _ in 0..7 {
            q.try_send(Counted(drops.clone())).unwrap();
        }
        assert_eq!(drops.load(Ordering::Relaxed), 5);
        let refused = q.try_send(Counted(drops.clone())).unwrap_err().into_inner();
        drop(refused);
        assert_eq!(
            drops.load(Ordering::Relaxed),
            6,
            "the refused item is handed back"
        );
        drop(q);
        assert_eq!(drops.load(Ordering::Relaxed), 6 + 8);
    }

    #[test]
    fn one_sender_one_receiver_get_every_item_once_in_order() {
        let count = scaled(100_000);
        let q = Arc::new(LocalQueue::new(4).unwrap());
        let tx = q.clone();
        let sender = std::thread::spawn(move || {
            for i in 0..count {
                let mut item = i;
                while let Err(SendError::Full(back)) = tx.try_send(item) {
                    item = back;
                    std::thread::yield_now();
                }
            }
        });
        for i in 0..count {
            loop {
                if let Some(v) = q.try_recv() {
                    assert_eq!(v, i);
                    break;
                }
                std::thread::yield_now();
            }
        }
        sender.join().unwrap();
        assert!(q.is_empty());
    }

    #[test]
    fn many_senders_and_receivers_move_every_item_exactly_once() {
        const THREADS: usize = 4;
        let count = scaled(25_000);
        let q = Arc::new(LocalQueue::new(8).unwrap());
        let seen: Arc<Vec<AtomicUsize>> =
            Arc::new((0..count * THREADS).map(|_| AtomicUsize::new(0)).collect());
        let taken = Arc::new(AtomicUsize::new(0));
        let mut handles = Vec::new();
        for t in 0..THREADS {
            let tx = q.clone();
            handles.push(std::thread::spawn(move || {
                for i in 0..count {
                    let mut item = t * count + i;
                    while let Err(SendError::Full(back)) = tx.try_send(item) {
                        item = back;
                        std::thread::yield_now();
                    }
                }
            }));
            let (q, seen, taken) = (q.clone(), seen.clone(), taken.clone());
            handles.push(std::thread::spawn(move || {
                while taken.load(Ordering::Relaxed) < count * THREADS {
                    match q.try_recv() {
                        Some(v) => {
                            seen[v].fetch_add(1, Ordering::Relaxed);
                            taken.fetch_add(1, Ordering::Relaxed);
                        }
                        None => std::thread::yield_now(),
                    }
                }
            }));
        }
        for h in handles {
            h.join().unwrap();
        }
        assert!(seen.iter().all(|n| n.load(Ordering::Relaxed) == 1));
        assert_eq!(q.try_recv(), None);
    }

    #[test]
    fn items_are_dropped_exactly_once_across_threads_and_at_the_end() {
        let drops = Arc::new(AtomicUsize::new(0));
        let steps = scaled(10_000);
        let q = Arc::new(LocalQueue::new(16).unwrap());
        let rx = q.clone();
        let receiver = std::thread::spawn(move || {
            for _ in 0..steps {
                loop {
                    if let Some(item) = rx.try_recv() {
                        drop(item);
                        break;
                    }
                    std::thread::yield_now();
                }
            }
        });
        for _ in 0..steps {
            let mut item = Counted(drops.clone());
            while let Err(SendError::Full(back)) = q.try_send(item) {
                item = back;
                std::thread::yield_now();
            }
        }
        receiver.join().unwrap();
        for _ in 0..5 {
            q.try_send(Counted(drops.clone())).unwrap();
        }
        assert_eq!(drops.load(Ordering::Relaxed), steps);
        drop(q);
        assert_eq!(drops.load(Ordering::Relaxed), steps + 5);
    }

    #[test]
    fn a_completed_send_is_seen_by_the_next_receive() {
        // Each thread sends, then must find an item: a send that returned is never hidden by
        // another thread's send still in progress (the queue is linearizable).
        const THREADS: usize = 4;
        let q = Arc::new(LocalQueue::new(THREADS as u64).unwrap());
        let go = Arc::new(Barrier::new(THREADS));
        let handles: Vec<_> = (0..THREADS)
            .map(|_| {
                let (q, go) = (q.clone(), go.clone());
                std::thread::spawn(move || {
                    go.wait();
                    for _ in 0..scaled(20_000) {
                        q.try_send(0u8).expect("at most THREADS items are ever in");
                        q.try_recv().expect("our own item, or another one, is in");
                    }
                })
            })
            .collect();
        for h in handles {
            h.join().unwrap();
        }
    }

    #[test]
    fn receivers_see_the_queue_closed_after_the_last_sender_and_the_last_item() {
        let (tx, rx) = LocalQueue::channel(8).unwrap();
        let tx2 = tx.clone();
        for i in 1..=3 {
            tx.send(i).unwrap();
        }
        drop(tx);
        assert!(!rx.is_closed(), "a sender is left");
        tx2.send(4).unwrap();
        drop(tx2);
        assert!(!rx.is_closed(), "items are left");
        assert_eq!(rx.iter().collect::<Vec<_>>(), [1, 2, 3, 4]);
        assert!(rx.is_closed());
        assert_eq!(rx.recv(), None);
        assert_eq!(rx.recv_timeout(Duration::from_secs(60)), None);
    }

    #[test]
    fn a_full_queue_without_receivers_hands_the_item_back_at_once() {
        let (tx, rx) = LocalQueue::channel(1).unwrap();
        tx.send(1).unwrap();
        drop(rx);
        assert!(tx.is_disconnected());
        assert!(matches!(tx.send(2), Err(SendError::Full(2))));
        assert!(matches!(
            tx.send_timeout(3, Duration::from_secs(60)),
            Err(SendError::Full(3))
        ));
    }

    #[test]
    fn the_last_sender_going_wakes_a_waiting_receiver() {
        for wait in [Wait::Spin, Wait::Yield, Wait::Sleep] {
            let (tx, rx) = LocalQueue::<u32>::channel(1).unwrap();
            let rx = rx.wait_strategy(wait);
            let waiting = std::thread::spawn(move || rx.recv());
            drop(tx);
            assert_eq!(waiting.join().unwrap(), None, "{wait:?}");
        }
    }

    #[test]
    fn the_last_receiver_going_wakes_a_waiting_sender() {
        for wait in [Wait::Spin, Wait::Yield, Wait::Sleep] {
            let (tx, rx) = LocalQueue::channel(1).unwrap();
            let tx = tx.wait_strategy(wait);
            tx.send(1).unwrap();
            let waiting = std::thread::spawn(move || tx.send(2));
            drop(rx);
            assert!(
                matches!(waiting.join().unwrap(), Err(SendError::Full(2))),
                "{wait:?}"
            );
        }
    }

    #[test]
    fn timeouts_hand_back_the_item_or_report_nothing() {
        let (tx, rx) = LocalQueue::channel(1).unwrap();
        assert_eq!(rx.recv_timeout(Duration::from_millis(1)), None);
        assert!(!rx.is_closed());
        tx.send(1).unwrap();
        assert!(matches!(
            tx.send_timeout(2, Duration::from_millis(1)),
            Err(SendError::Full(2))
        ));
        assert_eq!(rx.recv_timeout(Duration::from_millis(1)), Some(1));
    }

    #[test]
    fn blocking_calls_with_every_wait_strategy_move_every_item_once_in_order() {
        let count = scaled(20_000) as u64;
        for wait in [Wait::Spin, Wait::Yield, Wait::Sleep] {
            let (tx, rx) = LocalQueue::channel(2).unwrap();
            let (tx, rx) = (tx.wait_strategy(wait), rx.wait_strategy(wait));
            let sender = std::thread::spawn(move || {
                for i in 0..count {
                    tx.send(Box::new(i)).unwrap();
                }
            });
            let got: Vec<u64> = rx.iter().map(|b| *b).collect();
            sender.join().unwrap();
            assert!(got.iter().copied().eq(0..count), "{wait:?}");
        }
    }

    #[test]
    fn cloned_receivers_share_the_items_and_each_gets_distinct_ones() {
        let count = scaled(20_000);
        let (tx, rx) = LocalQueue::channel(4).unwrap();
        let workers: Vec<_> = (0..3)
            .map(|_| {
                let rx = rx.clone();
                std::thread::spawn(move || rx.iter().collect::<Vec<usize>>())
            })
            .collect();
        drop(rx);
        let senders: Vec<_> = (0..2)
            .map(|s| {
                let tx = tx.clone();
                std::thread::spawn(move || {
                    for i in 0..count {
                        tx.send(s * count + i).unwrap();
                    }
                })
            })
            .collect();
        drop(tx);
        for s in senders {
            s.join().unwrap();
        }
        let mut all: Vec<usize> = Vec::new();
        for w in workers {
            let got = w.join().unwrap();
            // Each sender's items reach each receiver in the order they were sent.
            for s in 0..2 {
                let mine: Vec<_> = got.iter().filter(|v| **v / count == s).collect();
                assert!(mine.windows(2).all(|p| p[0] < p[1]));
            }
            all.extend(got);
        }
        all.sort_unstable();
        assert!(all.into_iter().eq(0..2 * count));
    }

    #[test]
    fn try_iter_takes_what_is_there_and_stops() {
        let (tx, rx) = LocalQueue::channel(4).unwrap();
        tx.try_send('a').unwrap();
        tx.try_send('b').unwrap();
        assert_eq!(rx.try_iter().collect::<String>(), "ab");
        assert_eq!(rx.try_recv(), None);
        assert_eq!((tx.len(), tx.capacity(), rx.is_empty()), (0, 4, true));
    }

    #[test]
    fn items_left_in_a_channel_are_dropped_once_when_the_last_handle_goes() {
        let drops = Arc::new(AtomicUsize::new(0));
        let (tx, rx) = LocalQueue::channel(4).unwrap();
        for _ in 0..3 {
            tx.send(Counted(drops.clone())).unwrap();
        }
        drop(rx.recv());
        drop(tx);
        assert_eq!(drops.load(Ordering::Relaxed), 1);
        drop(rx);
        assert_eq!(drops.load(Ordering::Relaxed), 3);
    }
}

#[cfg(all(test, loom))]
mod loom {
    use super::LocalQueue;
    use ::loom::sync::atomic::AtomicUsize;
    use ::loom::sync::Arc;
    use std::sync::atomic::Ordering;

    /// Two senders and one receiver on a queue of 2, racing: every item a send accepted is
    /// received exactly once and untorn, each sender's items in the order it sent them
    /// (docs/design.md §11).
    #[test]
    fn two_senders_one_receiver_capacity_two() {
        crate::loom_harness::model("local queue 2x1 cap 2", 3, || {
            let q = Arc::new(LocalQueue::<u64>::new(2).unwrap());
            let senders: Vec<_> = (0..2u64)
                .map(|s| {
                    let q = q.clone();
                    ::loom::thread::spawn(move || {
                        let mut sent = Vec::new();
                        for i in 0..2 {
                            let item = s * 10 + i;
                            if q.try_send(item).is_ok() {
                                sent.push(item);
                            }
                        }
                        sent
                    })
                })
                .collect();
            let mut got = Vec::new();
            for _ in 0..2 {
                if let Some(v) = q.try_recv() {
                    got.push(v);
                }
            }
            let mut sent: Vec<u64> = senders
                .into_iter()
                .flat_map(|h| h.join().unwrap())
                .collect();
            while let Some(v) = q.try_recv() {
                got.push(v);
            }
            for s in 0..2 {
                let mine: Vec<_> = got.iter().filter(|v| **v / 10 == s).collect();
                assert!(mine.windows(2).all(|w| w[0] < w[1]), "order: {got:?}");
            }
            got.sort_unstable();
            sent.sort_unstable();
            assert_eq!(got, sent, "each sent item received exactly once");
            assert!(q.is_empty());
        });
    }

    /// Counts its drops.
    struct Counted(Arc<AtomicUsize>);

    impl Drop for Counted {
        fn drop(&mut self) {
            self.0.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Two senders race one receiver on a queue of 2, then the queue is dropped with whatever
    /// is left: every item, accepted or handed back, is dropped exactly once.
    #[test]
    fn items_left_are_dropped_once_with_the_queue() {
        crate::loom_harness::model("local queue drops", 2, || {
            let drops = Arc::new(AtomicUsize::new(0));
            let q = Arc::new(LocalQueue::new(2).unwrap());
            let senders: Vec<_> = (0..2)
                .map(|_| {
                    let (q, drops) = (q.clone(), drops.clone());
                    ::loom::thread::spawn(move || {
                        for _ in 0..2 {
                            // A refused item comes back and is dropped here.
                            let _ = q.try_send(Counted(drops.clone()));
                        }
                    })
                })
                .collect();
            drop(q.try_recv());
            for s in senders {
                s.join().unwrap();
            }
            drop(q);
            assert_eq!(drops.load(Ordering::Relaxed), 4);
        });
    }
}
