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

use crate::queue::SendError;

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
mod channel;

#[cfg(all(test, not(loom)))]
mod tests;

#[cfg(all(test, loom))]
mod loom;
