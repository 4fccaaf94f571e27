//! Lanes: a pool of single-producer byte rings for many producers and one consumer
//! (docs/design.md §17). Each producer, in any process, acquires a lane of its own, so producers
//! never contend; the consumer reads every record in place, without copying, and acknowledges
//! it; a full lane drops the record and tells its producer (nothing ever waits for the consumer).
//!
//! ```
//! use shmbus::lanes::{LaneEvent, LanePush, LanesBuilder};
//! # let name = format!("doc-lanes-intro-{}", std::process::id());
//! let lanes = LanesBuilder::new(&name).lanes(4).lane_bytes(4096).create()?;
//! let mut consumer = lanes.consumer()?;
//! let mut a = lanes.acquire()?;
//! let mut b = lanes.acquire()?;
//! assert_eq!(a.publish(b"from a")?, LanePush::Queued);
//! assert_eq!(b.publish(&[7u8; 3000])?, LanePush::Queued);
//! b.close();
//! // Round-robin across lanes; in order within each lane; then b's close.
//! let mut seen = Vec::new();
//! while let Some(event) = consumer.try_recv()? {
//!     match event {
//!         LaneEvent::Record(r) => seen.push((r.lane(), r.len())),
//!         LaneEvent::Closed(c) => seen.push((c.lane, 0)),
//!     }
//! }
//! assert_eq!(seen, [(a.lane(), 6), (1, 3000), (1, 0)]);
//! # drop(a);
//! # drop(consumer);
//! # shmbus::lanes::Lanes::remove(&name)?;
//! # Ok::<(), shmbus::Error>(())
//! ```
//!
//! **How it works.** Each lane is a byte ring with a write position (the producer's cache line)
//! and a read position (the consumer's): the producer writes a record past the write position and
//! publishes the new position with Release; the consumer reads the record where it lies and
//! publishes its new read position when it drops the record. Every process maps each ring twice,
//! back to back, so a record that crosses the ring's end is one slice. A bitmap in the header
//! holds one bit per lane with something unread; the producer raises it when it finds it clear,
//! the consumer clears it when it finds the lane empty, and a fence pair on both sides makes sure
//! no record is left behind a clear bit. A sleeping consumer is woken through the header's futex,
//! or through the readiness fd of [`LaneReadiness`].

mod consumer;
mod handle;
pub(crate) mod lane;
pub(crate) mod layout;
pub(crate) mod mirror;
mod publisher;
#[cfg(not(loom))]
mod readiness;

#[cfg(all(test, loom))]
mod loom;

#[cfg(all(test, not(loom)))]
mod tests;

pub use consumer::{LaneClosed, LaneConsumer, LaneConsumerStats, LaneEvent, LaneItem, LaneRecord};
pub use handle::{LaneInfo, Lanes, LanesBuilder, DEFAULT_LANES, DEFAULT_LANE_BYTES};
pub use layout::{LANE_RECORD_HEADER, MAX_LANES, MAX_LANE_BYTES, MIN_LANE_BYTES};
pub use publisher::{LanePublisher, LanePush};
#[cfg(all(feature = "tokio", not(loom)))]
pub use readiness::LaneOwned;
#[cfg(not(loom))]
pub use readiness::LaneReadiness;

pub(crate) use lane::LaneSet;

/// The lanes' bytes as this build maps them: mirrored, or under miri two heap copies.
#[cfg(not(miri))]
pub(crate) type LaneMem = mirror::Mirror;
#[cfg(miri)]
pub(crate) type LaneMem = mirror::Twin;
