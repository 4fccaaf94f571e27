//! The bus (docs/design.md §2–§10): seqlock broadcast over a power-of-two ring of slots, no
//! shared read cursor, exact lap counts. The handle and its builder (`handle`), the ring
//! protocol (`ring`), the publisher, the subscriber, its in-place receive (`view`), and the
//! subscriber's readiness descriptor and tokio receive (`readiness`).

mod handle;
mod publisher;
#[cfg(not(loom))]
mod readiness;
pub(crate) mod ring;
mod subscriber;
mod view;

pub use handle::{
    Bus, BusBuilder, ProducerHold, ProducerInfo, SlotCensus, DEFAULT_RAW_CAPACITY, DEFAULT_SLOTS,
    DEFAULT_STALL_BOUND,
};
pub use publisher::{Publisher, PublisherStats, SlotWriter};
#[cfg(all(feature = "tokio", not(loom)))]
pub use readiness::EventStream;
#[cfg(not(loom))]
pub use readiness::Readiness;
#[allow(deprecated)]
pub use subscriber::DEFAULT_STALL_TIMEOUT;
pub use subscriber::{Event, Iter, LapPolicy, Message, Recv, Start, Subscriber, SubscriberStats};
pub use view::{SlotView, Viewed, Words};
