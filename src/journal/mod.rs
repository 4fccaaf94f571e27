//! Record/replay journals: a bus's messages kept in an append-only file
//! (docs/design.md §13).
//!
//! A journal is one file that its recorder maps and appends to, growing it in chunks. Its header
//! records the recorded bus's shape and message type; each entry is a message (sequence number,
//! receive time, payload) or a loss (`count` sequence numbers from `first` on), committed by a
//! marker word stored last, so a recorder killed at any instant leaves a journal that reads
//! cleanly up to its last complete entry. Each entry carries a CRC-32C of its contents, so an
//! entry damaged on the disk (a power loss before it was synced) reads as an error, never as a
//! message; when entries are synced is the writer's [`SyncPolicy`].
//!
//! ```
//! use shmbus::journal::{Entry, Journal, JournalShape};
//! # let dir = std::env::temp_dir().join(format!("doc-journal-{}", std::process::id()));
//! # std::fs::create_dir_all(&dir).unwrap();
//! # let path = dir.join("run.journal");
//! let shape = JournalShape {
//!     slots: 1024,
//!     capacity: 64,
//!     mode: shmbus::ProducerMode::Single,
//!     message_type: shmbus::TypeInfo::raw(),
//! };
//! let mut w = Journal::create(&path, &shape)?;
//! w.append_message(0, 1_700_000_000_000_000_000, b"hello")?;
//! w.append_loss(1, 3)?;
//! w.finish()?;
//!
//! let mut j = Journal::open(&path)?;
//! assert_eq!(j.info().shape, shape);
//! let entries: Vec<Entry> = j.entries().collect::<Result<_, _>>()?;
//! assert_eq!(entries[1], Entry::Lost { first: 1, count: 3 });
//! # std::fs::remove_dir_all(&dir).unwrap();
//! # Ok::<(), shmbus::Error>(())
//! ```

mod crc;
mod format;
mod map;
mod reader;
mod writer;

use std::path::Path;

pub use format::{JournalShape, ENTRY_HEADER_BYTES};
pub use reader::{Entries, Follower, Journal, JournalInfo, Summary};
pub use writer::{
    JournalOptions, JournalWriter, SyncPolicy, DEFAULT_CHUNK_BYTES, DEFAULT_SYNC_INTERVAL,
};

use crate::error::{Error, Result};
use crate::segment::header::{Geometry, SegmentKind};
use crate::segment::{Plan, Segment, Shape};
use crate::{Bus, BusBuilder};

/// One journal entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Entry {
    /// A message as it was received.
    Message {
        /// Its sequence number on the recorded bus.
        seq: u64,
        /// When the recorder received it, in ns since the Unix epoch.
        ts_ns: u64,
        /// Its payload.
        bytes: Vec<u8>,
    },
    /// `count` sequence numbers from `first` on were lost by the recorder (it was lapped, or a
    /// producer died mid-message).
    Lost {
        /// The first sequence number lost.
        first: u64,
        /// How many were lost (at least 1).
        count: u64,
    },
}

pub(crate) fn io_error(path: &Path, op: &'static str, source: std::io::Error) -> Error {
    Error::JournalIo {
        path: path.to_path_buf(),
        op,
        source,
    }
}

impl JournalShape {
    /// Creates bus `name` with this shape: slot count, capacity, producer mode and message type
    /// (so typed programs can open the replayed bus). Fails with [`Error::AlreadyExists`] if the
    /// name is taken.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidConfig`] if the slot count or capacity is no valid geometry;
    /// [`Error::InvalidName`]; [`Error::AlreadyExists`]; [`Error::PermissionDenied`];
    /// [`Error::NoSpace`] when `/dev/shm` is full; [`Error::Io`] for any other system error; and
    /// those of [`BusBuilder::open`] if the new bus cannot be opened (removed or replaced
    /// meanwhile).
    pub fn create_bus(&self, name: &str) -> Result<Bus> {
        let capacity = usize::try_from(self.capacity).map_err(|_| {
            Error::InvalidConfig(format!("capacity {} is too large", self.capacity))
        })?;
        let geometry = Geometry::new(self.slots, capacity).map_err(Error::InvalidConfig)?;
        let shape = Shape {
            kind: SegmentKind::Bus,
            geometry,
            mode: self.mode,
            ty: self.message_type.clone(),
            first_seq: 0,
        };
        drop(Segment::create(name, Plan::plain(shape), 0o600)?);
        BusBuilder::new(name).open()
    }
}
