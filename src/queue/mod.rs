//! The work queue (docs/design.md §11): a bounded multi-producer, multi-consumer queue in a
//! segment of kind `Queue`, in which each item goes to exactly one receiver.
//!
//! # The algorithm
//!
//! Dmitry Vyukov's bounded MPMC queue ("Bounded MPMC queue", 1024cores.net), the algorithm of
//! crossbeam's `ArrayQueue` and of its array channel flavour. Two positions only grow: the
//! **tail** (the next position a producer claims) and the **head** (the next a consumer claims).
//! Position `p` lives in slot `p mod N` (`N` a power of two), and each slot has a **state word**
//! saying which position it serves and whether it holds an item:
//!
//! ```text
//!   state word   = lap | FULL? | SKIP?       lap = p with the slot-index bits cleared
//!   lap(p)              free: the producer of p may write it        (zeroed memory: lap 0)
//!   lap(p) | FULL       holds p's item: the consumer of p may read it
//!   lap(p) | FULL|SKIP  p was skipped: its producer died before publishing
//!   lap(p) + N          freed by p's consumer: now free for p + N
//! ```
//!
//! A producer loads the tail `p`, checks that `p`'s slot reads `lap(p)`, takes `p` with a CAS of
//! the tail to `p + 1`, writes the item (atomic word stores) and publishes `lap(p) | FULL`. A
//! consumer loads the head `p`, checks for `lap(p) | FULL`, takes `p` with a CAS of the head,
//! copies the item out (atomic word loads) and frees the slot with `lap(p) + N`. A slot of the
//! previous lap that still holds an item means full; one still free for `p` means empty.
//!
//! # Crashes
//!
//! In Vyukov's queue a thread that takes a position and stops wedges everyone a lap later. Here
//! every participant (sender or receiver) holds an entry of the segment's participant table and
//! its kernel lock for its life, and names the position it is about to take in its entry's
//! claim word *before* the CAS that takes it. Whoever finds a position stuck (a consumer: the
//! tail is past the head but the head's slot is still free; a producer: the head is past the
//! item a lap before but its slot is still full) looks up the position's claimant: a live one is
//! waited for; a dead one's entry lock is taken, and the holder of that lock alone turns a
//! producer's position into a skip, or frees a consumer's slot and counts its item lost. So a
//! kill at any step costs at most that one item, never a duplicate or a torn item.

mod handle;
mod inspect;
pub(crate) mod layout;
mod participant;
mod protocol;
#[cfg(not(loom))]
mod readiness;
mod receiver;
mod sender;

#[cfg(all(test, loom))]
mod loom;
#[cfg(all(test, not(loom)))]
mod tests;

pub use handle::{
    ParticipantInfo, Queue, QueueBuilder, QueueTotals, DEFAULT_ITEM_SIZE, DEFAULT_QUEUE_CAPACITY,
};
pub use inspect::{HoldState, QueueHold};
pub use participant::Role;
#[cfg(all(feature = "tokio", not(loom)))]
pub use readiness::SendAsyncError;
#[cfg(not(loom))]
pub use readiness::{QueueReceiverReadiness, QueueSenderReadiness};
pub use receiver::{QueueIter, QueueReceiver, QueueTryIter, ReceiverStats};
pub use sender::{QueueSender, SendError, SenderStats};
