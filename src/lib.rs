//! # shmbus
//!
//! Shared-memory messaging for Linux. Independent processes attach to **named segments** in
//! `/dev/shm`; every kind lives in one segment, survives any participant dying at any step, and
//! refuses a corrupt or foreign segment with a typed error. The kinds, one module each (their
//! handles are also re-exported here):
//!
//! - [`bus`]: seqlock broadcast over a ring of fixed-size slots; no shared read cursor, exact
//!   lap counts, one or many producers.
//! - [`queue`]: a bounded work queue; each item goes to exactly one receiver, crash-repaired.
//! - [`records`]: variable-size broadcast in a byte ring.
//! - [`board`]: the latest value of each of N cells (keys), any number of writers.
//! - [`lanes`]: many producers to one consumer, each producer with a byte ring of its own that
//!   the consumer reads in place.
//! - [`local`]: the work queue's algorithm for any `T: Send` between threads of one process.
//! - [`journal`]: a bus recorded to a file and replayed.
//!
//! Blocking receives sleep on a futex; every handle can also give an eventfd for an event loop
//! and, with the `tokio` feature, `recv_async`. The layers under the kinds (system calls →
//! segment layer → waiting and readiness → kinds) are described in docs/design.md,
//! "Architecture".
//!
//! A bus: producers never wait for, or even know about, consumers; each consumer keeps its own
//! expected sequence number in its own process and learns, on every receive, whether it got a
//! message, found nothing new, or was lapped and lost exactly `N` messages.
//!
//! ```
//! use shmbus::{BusBuilder, Recv, Start};
//! # let name = format!("doc-quickstart-{}", std::process::id());
//!
//! // Producer process: create the bus and publish.
//! let bus = BusBuilder::new(&name).slots(1024).capacity(64).create()?;
//! let mut publisher = bus.publisher()?;
//!
//! // Consumer process: open the bus by name and subscribe.
//! let mut subscriber = shmbus::Bus::open_read_only(&name)?.subscribe(Start::Oldest);
//!
//! publisher.publish_bytes(b"hello")?;
//! match subscriber.try_recv() {
//!     Recv::Message(m) => assert_eq!((m.seq(), m.bytes()), (0, &b"hello"[..])),
//!     other => panic!("expected a message, got {other:?}"),
//! }
//! assert!(matches!(subscriber.try_recv(), Recv::Empty));
//! # shmbus::Bus::remove(&name)?;
//! # Ok::<(), shmbus::Error>(())
//! ```
//!
//! Typed buses carry any [`bytemuck::Pod`] type and refuse to open with another type. The
//! `bytemuck` crate is re-exported, derives included, so a crate that depends on `shmbus` alone
//! derives `Pod` through it (the `#[bytemuck(crate = ...)]` attribute tells the derive where to
//! find it):
//!
//! ```
//! # let name = format!("doc-typed-{}", std::process::id());
//! use shmbus::bytemuck::{Pod, Zeroable};
//!
//! #[derive(Clone, Copy, Pod, Zeroable)]
//! #[bytemuck(crate = "shmbus::bytemuck")]
//! #[repr(C)]
//! struct Tick { price: f64, qty: u64 }
//!
//! let bus = shmbus::BusBuilder::new(&name).message_type::<Tick>().type_name("Tick").create()?;
//! let mut tx = bus.publisher()?;
//! let mut rx = bus.subscriber();
//! tx.publish(&Tick { price: 1.5, qty: 3 });
//! let shmbus::Recv::Message(m) = rx.try_recv() else { panic!() };
//! assert_eq!(m.qty, 3);
//! let err = shmbus::BusBuilder::new(&name).message_type::<[u64; 2]>().open().unwrap_err();
//! assert!(matches!(err, shmbus::Error::TypeMismatch { .. }));
//! # shmbus::Bus::remove(&name)?;
//! # Ok::<(), shmbus::Error>(())
//! ```
//!
#![cfg_attr(not(loom), warn(missing_docs))]
// On docs.rs (and `.ci/docs.sh`): show which feature each item needs.
#![cfg_attr(docsrs, feature(doc_cfg))]
#![deny(unsafe_op_in_unsafe_fn)]
#![warn(unreachable_pub, clippy::undocumented_unsafe_blocks)]

// The layers, bottom up (docs/design.md, "Architecture"): `sys` (the only FFI) → `segment`
// (create, open, header, participant table, the `Kind` trait) → `wait` (the sleep handshake and
// the one blocking loop) and `readiness` (eventfds, the waker thread, tokio) → one folder per
// kind: `bus`, `queue`, `records`, `board`, `lanes`, `local`, `journal`.
//
// Under `--cfg loom` the whole crate (and so its binaries) still builds, with loom's atomics;
// the loom models beside each protocol (`*/loom.rs`) drive the production types there.
mod sync;
mod sys;

mod segment;
mod wait;

mod readiness;

pub mod board;
pub mod bus;
pub mod journal;
pub mod lanes;
pub mod local;
pub mod queue;
pub mod records;

mod error;
pub mod inspect;
pub mod layout;
#[cfg(all(test, loom))]
mod loom_harness;

#[cfg(test)]
mod test_live;

// Every kind is a public module (`shmbus::bus`, `shmbus::queue`, ...) and its handles are also
// re-exported here, one line per kind (docs/design.md, "Architecture").
pub use crate::board::{
    Board, BoardBuilder, BoardReader, BoardWriter, CellHold, Value, ValueWriter, Versioned,
    DEFAULT_BOARD_VALUE_SIZE, KEY_MAX, MAX_CELLS,
};
#[cfg(all(feature = "tokio", not(loom)))]
pub use crate::bus::EventStream;
#[cfg(not(loom))]
pub use crate::bus::Readiness;
pub use crate::bus::DEFAULT_STALL_BOUND;
#[allow(deprecated)]
pub use crate::bus::DEFAULT_STALL_TIMEOUT;
pub use crate::bus::{
    Bus, BusBuilder, Event, Iter, LapPolicy, Message, ProducerHold, ProducerInfo, Publisher,
    PublisherStats, Recv, SlotCensus, SlotView, SlotWriter, Start, Subscriber, SubscriberStats,
    Viewed, Words, DEFAULT_RAW_CAPACITY, DEFAULT_SLOTS,
};
pub use crate::error::{Error, Result};
pub use crate::journal::{Journal, JournalOptions, JournalWriter};
pub use crate::lanes::{
    LaneConsumer, LaneEvent, LanePublisher, LanePush, LaneRecord, Lanes, LanesBuilder,
};
#[cfg(not(loom))]
pub use crate::local::{LocalIter, LocalReceiver, LocalSender, LocalTryIter};
pub use crate::local::{LocalQueue, MAX_LOCAL_CAPACITY};
#[cfg(all(feature = "tokio", not(loom)))]
pub use crate::queue::SendAsyncError;
pub use crate::queue::{
    HoldState, ParticipantInfo, Queue, QueueBuilder, QueueHold, QueueIter, QueueReceiver,
    QueueSender, QueueTotals, QueueTryIter, ReceiverStats, Role, SendError, SenderStats,
    DEFAULT_ITEM_SIZE, DEFAULT_QUEUE_CAPACITY,
};
#[cfg(not(loom))]
pub use crate::queue::{QueueReceiverReadiness, QueueSenderReadiness};
#[cfg(not(loom))]
pub use crate::readiness::Ready;
pub use crate::records::{
    RecordEvent, RecordPublisher, RecordRecv, RecordSubscriber, Records, RecordsBuilder,
};
pub use crate::segment::header::{HeaderSnapshot, ProducerMode, TypeInfo};
pub use crate::segment::payload::{Payload, Raw};
pub use crate::wait::{Wait, Wakeup};
/// The `bytemuck` crate, with its derives: `#[derive(shmbus::bytemuck::Pod)]` together with
/// `#[bytemuck(crate = "shmbus::bytemuck")]` needs no `bytemuck` dependency of your own.
pub use bytemuck;

/// The README's examples, compiled and run as doctests.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;
