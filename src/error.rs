//! The one error type of shmbus: every way creating, opening or using a bus can fail.

use std::io;

/// Result alias used throughout shmbus.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong with a bus. Each variant carries the numbers and names a user needs
/// to act on it; none of them is ever a panic.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The bus name breaks the naming rule (1..=200 characters of `[A-Za-z0-9._-]`, not starting
    /// with `.`).
    #[error("invalid bus name {name:?}: {reason}")]
    InvalidName {
        /// The name as given.
        name: String,
        /// What is wrong with it, naming the offending character where there is one.
        reason: String,
    },

    /// No bus of that name exists.
    #[error("bus {name:?} not found (no /dev/shm/shmbus.{name})")]
    NotFound {
        /// The bus name.
        name: String,
    },

    /// A bus (or some other object) of that name exists already.
    #[error("bus {name:?} already exists (/dev/shm/shmbus.{name})")]
    AlreadyExists {
        /// The bus name.
        name: String,
    },

    /// The operating system refused access to the segment.
    #[error("permission denied: cannot {action} bus {name:?}")]
    PermissionDenied {
        /// The bus name.
        name: String,
        /// What was attempted ("open read-write", "create", ...).
        action: &'static str,
    },

    /// The segment's path is not a regular file (a symlink, a directory, a device...).
    #[error("bus {name:?}: /dev/shm/shmbus.{name} is not a regular file")]
    NotRegularFile {
        /// The bus name.
        name: String,
    },

    /// The segment belongs to another user and the caller did not accept that.
    #[error("bus {name:?} is owned by uid {owner}, not by us (uid {ours}); use accept_other_owner() to trust it")]
    ForeignOwner {
        /// The bus name.
        name: String,
        /// Owner uid of the segment.
        owner: u32,
        /// Our effective uid.
        ours: u32,
    },

    /// The segment is writable by group or others and the caller did not accept that.
    #[error("bus {name:?} has mode {mode:04o}, writable by other users; use accept_shared_write() to trust it")]
    InsecureMode {
        /// The bus name.
        name: String,
        /// The permission bits found.
        mode: u32,
    },

    /// The segment is smaller than its header, or than the size its header implies.
    #[error("bus {name:?} is truncated: {size} bytes, expected {expected}")]
    Truncated {
        /// The bus name.
        name: String,
        /// Size found on disk.
        size: u64,
        /// Size the header (or the minimum header) requires.
        expected: u64,
    },

    /// The segment is larger than shmbus ever creates.
    #[error("bus {name:?} is {size} bytes, more than the {max}-byte limit")]
    TooLarge {
        /// The bus name.
        name: String,
        /// Size found.
        size: u64,
        /// The limit.
        max: u64,
    },

    /// The segment does not start with the shmbus magic: it belongs to another program.
    #[error("bus {name:?}: not a shmbus segment (magic {found:#018x})")]
    BadMagic {
        /// The bus name.
        name: String,
        /// The first eight bytes found.
        found: u64,
    },

    /// The segment was created but its creator never finished (or crashed before) initialising it.
    #[error("bus {name:?} is not initialised (its creator did not finish; remove it with `shmbus rm {name}`)")]
    NotInitialised {
        /// The bus name.
        name: String,
    },

    /// The segment was made by another version of shmbus with an incompatible layout.
    #[error("bus {name:?} has ABI version {found}, this shmbus speaks version {expected}")]
    AbiMismatch {
        /// The bus name.
        name: String,
        /// Version in the segment.
        found: u32,
        /// Version this library writes.
        expected: u32,
    },

    /// The header's geometry is inconsistent (corrupt segment).
    #[error("bus {name:?} is corrupt: {reason}")]
    Corrupt {
        /// The bus name.
        name: String,
        /// Which check failed, with the numbers.
        reason: String,
    },

    /// `open_or_create` found a bus whose geometry differs from the one asked for.
    #[error("bus {name:?} exists with {found}, but {wanted} was asked for")]
    GeometryMismatch {
        /// The bus name.
        name: String,
        /// What the existing bus has.
        found: String,
        /// What the caller asked for.
        wanted: String,
    },

    /// The bus carries another message type than the caller's.
    #[error("bus {name:?} carries messages of type {found}, not {expected}")]
    TypeMismatch {
        /// The bus name.
        name: String,
        /// The caller's type (name, size, alignment).
        expected: String,
        /// The bus's type (name, size, alignment).
        found: String,
    },

    /// A message does not fit in a slot.
    #[error("message is {len} bytes, a slot holds {capacity}")]
    MessageTooLarge {
        /// The message length.
        len: usize,
        /// The slot's payload capacity.
        capacity: usize,
    },

    /// A single-producer bus already has a live producer.
    #[error("bus {name:?} is single-producer and already has a live producer{}", pid.map(|p| format!(" (pid {p})")).unwrap_or_default())]
    ProducerExists {
        /// The bus name.
        name: String,
        /// The pid the live producer registered, if known.
        pid: Option<u32>,
    },

    /// Every producer slot of a multi-producer bus is held by a live producer.
    #[error("bus {name:?} already has {max} live producers, the most it supports")]
    TooManyProducers {
        /// The bus name.
        name: String,
        /// The limit.
        max: usize,
    },

    /// The bus was opened read-only, which cannot publish.
    #[error("bus {name:?} was opened read-only and cannot publish")]
    ReadOnly {
        /// The bus name.
        name: String,
    },

    /// A builder setting is out of range.
    #[error("invalid configuration: {0}")]
    InvalidConfig(String),

    /// `/dev/shm` has no room for the segment.
    #[error("no space in /dev/shm for bus {name:?} ({size} bytes)")]
    NoSpace {
        /// The bus name.
        name: String,
        /// Bytes that were asked for.
        size: u64,
    },

    /// Any other operating-system error, with the step that failed.
    #[error("bus {name:?}: {op} failed: {source}")]
    Io {
        /// The bus name.
        name: String,
        /// The operation that failed (`shm_open`, `mmap`, ...).
        op: &'static str,
        /// The OS error.
        #[source]
        source: io::Error,
    },
}

impl Error {
    pub(crate) fn io(name: &str, op: &'static str, errno: nix::errno::Errno) -> Self {
        Error::Io {
            name: name.to_owned(),
            op,
            source: io::Error::from_raw_os_error(errno as i32),
        }
    }
}
