//! The one error type of shmbus: every way creating, opening or using a segment (bus, queue,
//! board, records) can fail. Messages shared by every kind say "segment"; the kind, where it
//! matters, is in the variant (`WrongKind`) or in the name the caller gave.

use std::io;

/// Result alias used throughout shmbus.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong with a segment of any kind. Each variant carries the numbers and
/// names a user needs to act on it; none of them is ever a panic.
///
/// # Creating a segment
///
/// Every kind's `create` (and `open_or_create`) can fail, beyond its builder's own
/// configuration errors, with: [`Error::InvalidName`]; [`Error::AlreadyExists`];
/// [`Error::PermissionDenied`]; [`Error::NoSpace`] when `/dev/shm` is full; and [`Error::Io`] for
/// any other system error.
///
/// # Opening a segment
///
/// Every kind's `open` (and `open_or_create`) runs the same pipeline (docs/design.md §1) and can
/// fail with: [`Error::InvalidName`]; [`Error::NotFound`]; [`Error::PermissionDenied`];
/// [`Error::NotRegularFile`] (a symlink, FIFO, ... in its place); [`Error::ForeignOwner`] and
/// [`Error::InsecureMode`] unless accepted; [`Error::Truncated`] or [`Error::TooLarge`];
/// [`Error::BadMagic`] (not a shmbus segment); [`Error::NotInitialised`] (its creator did not
/// finish); [`Error::AbiMismatch`]; [`Error::WrongKind`] if another kind of segment has the name;
/// a corrupt header (the variants for which [`Error::is_corrupt`] holds); and [`Error::Io`] for
/// any other system error.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The segment name breaks the naming rule (1..=200 characters of `[A-Za-z0-9._-]`, not
    /// starting with `.`).
    #[error("invalid segment name {name:?}: {reason}")]
    InvalidName {
        /// The name as given.
        name: String,
        /// What is wrong with it, naming the offending character where there is one.
        reason: String,
    },

    /// No segment of that name exists.
    #[error("segment {name:?} not found (no /dev/shm/shmbus.{name})")]
    NotFound {
        /// The segment name.
        name: String,
    },

    /// A segment (or some other object) of that name exists already.
    #[error("segment {name:?} already exists (/dev/shm/shmbus.{name})")]
    AlreadyExists {
        /// The segment name.
        name: String,
    },

    /// The operating system refused access to the segment.
    #[error("permission denied: cannot {action} segment {name:?}")]
    PermissionDenied {
        /// The segment name.
        name: String,
        /// What was attempted ("open read-write", "create", ...).
        action: &'static str,
    },

    /// The segment's path is not a regular file (a symlink, a directory, a FIFO, a device...);
    /// shmbus refuses it before reading from it.
    #[error("segment {name:?}: /dev/shm/shmbus.{name} is {found}, not a regular file")]
    NotRegularFile {
        /// The segment name.
        name: String,
        /// What was found instead ("a FIFO", "a symbolic link", ...).
        found: &'static str,
    },

    /// The segment belongs to another user and the caller did not accept that.
    #[error("segment {name:?} is owned by uid {owner}, not by us (uid {ours}); use accept_other_owner() to trust it")]
    ForeignOwner {
        /// The segment name.
        name: String,
        /// Owner uid of the segment.
        owner: u32,
        /// Our effective uid.
        ours: u32,
    },

    /// The segment is writable by group or others and the caller did not accept that.
    #[error("segment {name:?} has mode {mode:04o}, writable by other users; use accept_shared_write() to trust it")]
    InsecureMode {
        /// The segment name.
        name: String,
        /// The permission bits found.
        mode: u32,
    },

    /// The segment is smaller than its header, or than the size its header implies.
    #[error("segment {name:?} is truncated: {size} bytes, expected {expected}")]
    Truncated {
        /// The segment name.
        name: String,
        /// Size found on disk.
        size: u64,
        /// Size the header (or the minimum header) requires.
        expected: u64,
    },

    /// The segment is larger than shmbus ever creates.
    #[error("segment {name:?} is {size} bytes, more than the {max}-byte limit")]
    TooLarge {
        /// The segment name.
        name: String,
        /// Size found.
        size: u64,
        /// The limit.
        max: u64,
    },

    /// The segment does not start with the shmbus magic: it belongs to another program.
    #[error("{name:?}: not a shmbus segment (magic {found:#018x})")]
    BadMagic {
        /// The segment name.
        name: String,
        /// The first eight bytes found, as a little-endian number (a shorter file's bytes padded
        /// with zeros).
        found: u64,
    },

    /// The segment was created but its creator never finished (or crashed before) initialising it.
    #[error("segment {name:?} is not initialised (its creator did not finish; remove it with `shmbus rm {name}`)")]
    NotInitialised {
        /// The segment name.
        name: String,
    },

    /// The segment was made by another version of shmbus with an incompatible layout.
    #[error("segment {name:?} has ABI version {found}, this shmbus speaks version {expected}")]
    AbiMismatch {
        /// The segment name.
        name: String,
        /// Version in the segment.
        found: u32,
        /// Version this library writes.
        expected: u32,
    },

    /// A segment of the right ABI and kind whose kind-specific layout is another revision
    /// (made by another version of shmbus).
    #[error("{kind} segment {name:?} has layout revision {found}, this shmbus reads revision {expected} (it was made by another version of shmbus: remove it and create it again)")]
    LayoutRevision {
        /// The segment name.
        name: String,
        /// The segment's kind ("records").
        kind: &'static str,
        /// Revision in the segment (0: made before revisions were recorded).
        found: u32,
        /// Revision this library reads and writes.
        expected: u32,
    },

    /// The segment holds another kind of shmbus object than the caller opens.
    #[error("{name:?} is a {found}, not a {expected}")]
    WrongKind {
        /// The segment name.
        name: String,
        /// The kind found in the segment.
        found: &'static str,
        /// The kind the caller opens.
        expected: &'static str,
    },

    /// The header's kind word is no kind this shmbus knows (corrupt, or from a newer shmbus).
    #[error("segment {name:?} is corrupt: kind word {word} is unknown (1 bus, 2 queue, 3 records, 4 board)")]
    UnknownKind {
        /// The segment name.
        name: String,
        /// The kind word found.
        word: u32,
    },

    /// The header's producer-mode word is neither single nor multi (corrupt segment).
    #[error(
        "segment {name:?} is corrupt: producer mode word {word} is neither 1 (single) nor 2 (multi)"
    )]
    BadProducerMode {
        /// The segment name.
        name: String,
        /// The mode word found.
        word: u32,
    },

    /// The write cursor is behind the first sequence, or either is past 2^61 (corrupt segment).
    #[error("segment {name:?} is corrupt: write cursor {cursor} is not between first sequence {first_seq} and 2^61")]
    SequenceOutOfOrder {
        /// The segment name.
        name: String,
        /// The first sequence number found.
        first_seq: u64,
        /// The write cursor found.
        cursor: u64,
    },

    /// The slot count is not a power of two within the limit (corrupt segment).
    #[error(
        "segment {name:?} is corrupt: slot count {slots} is not a power of two from 1 to {}",
        crate::segment::header::MAX_SLOTS
    )]
    BadSlotCount {
        /// The segment name.
        name: String,
        /// The slot count found.
        slots: u64,
    },

    /// The slot stride is not a positive multiple of 64 bytes (corrupt segment).
    #[error(
        "segment {name:?} is corrupt: slot stride {stride} is not a positive multiple of 64 bytes"
    )]
    BadStride {
        /// The segment name.
        name: String,
        /// The stride found, in bytes.
        stride: u64,
    },

    /// The payload capacity is zero or beyond what a length word can say (corrupt segment).
    #[error("segment {name:?} is corrupt: payload capacity {capacity} is out of range (1 to {})", u32::MAX - 1)]
    CapacityOutOfRange {
        /// The segment name.
        name: String,
        /// The capacity found, in bytes.
        capacity: u64,
    },

    /// The payload capacity does not fit the slot stride (corrupt segment).
    #[error("segment {name:?} is corrupt: payload capacity {capacity} plus the 16-byte slot header does not fit a {stride}-byte slot")]
    CapacityExceedsStride {
        /// The segment name.
        name: String,
        /// The capacity found, in bytes.
        capacity: u64,
        /// The slot stride found, in bytes.
        stride: u64,
    },

    /// The slots the header describes exceed the largest segment (corrupt segment).
    #[error(
        "segment {name:?} is corrupt: {slots} slots of {stride} bytes exceed the {}-byte segment limit",
        crate::segment::header::MAX_SEGMENT_BYTES
    )]
    GeometryTooLarge {
        /// The segment name.
        name: String,
        /// The slot count found.
        slots: u64,
        /// The slot stride found, in bytes.
        stride: u64,
    },

    /// The size recorded in the header disagrees with its own geometry (corrupt segment).
    #[error("segment {name:?} is corrupt: the header records {recorded} bytes, its geometry implies {expected}")]
    RecordedSizeMismatch {
        /// The segment name.
        name: String,
        /// The size recorded in the header.
        recorded: u64,
        /// The size the slot count and stride imply.
        expected: u64,
    },

    /// The segment is larger than its header implies (corrupt segment).
    #[error("segment {name:?} is corrupt: it is {size} bytes, its header implies {expected}")]
    SizeMismatch {
        /// The segment name.
        name: String,
        /// Size found on disk.
        size: u64,
        /// Size the header implies.
        expected: u64,
    },

    /// The slots are smaller than the message type the header (or the opener) names: no message
    /// could ever be published.
    #[error("segment {name:?} has {capacity}-byte slots, too small for its item type {ty} ({size} bytes)")]
    CapacityBelowType {
        /// The segment name.
        name: String,
        /// The payload capacity, in bytes.
        capacity: usize,
        /// The message type (name, size, alignment).
        ty: String,
        /// The type's size, in bytes.
        size: u32,
    },

    /// `open_or_create` found a segment whose geometry differs from the one asked for.
    #[error("segment {name:?} exists with {found}, but {wanted} was asked for")]
    GeometryMismatch {
        /// The segment name.
        name: String,
        /// What the existing segment has.
        found: String,
        /// What the caller asked for.
        wanted: String,
    },

    /// The segment carries another item type than the caller's.
    #[error("segment {name:?} carries items of type {found}, not {expected}")]
    TypeMismatch {
        /// The segment name.
        name: String,
        /// The caller's type (name, size, alignment).
        expected: String,
        /// The segment's type (name, size, alignment).
        found: String,
    },

    /// A message (or record, or queue item) is larger than the segment takes.
    #[error("message is {len} bytes, at most {capacity} fit")]
    MessageTooLarge {
        /// The message length.
        len: usize,
        /// The slot's payload capacity.
        capacity: usize,
    },

    /// A message of the wrong size for a typed bus published as bytes
    /// ([`crate::Bus::bytes_publisher`]): each must be exactly one value of the bus's type.
    #[error("segment {name:?} carries messages of type {type_name}, exactly {size} bytes each, not {len}")]
    WrongMessageSize {
        /// The segment name.
        name: String,
        /// The message length.
        len: usize,
        /// The type's size.
        size: usize,
        /// The type's name, as the bus records it.
        type_name: String,
    },

    /// A single-producer segment (bus, records, a single-writer board) already has a live producer.
    #[error("segment {name:?} is single-producer and already has a live producer{}", pid.map(|p| format!(" (pid {p})")).unwrap_or_default())]
    ProducerExists {
        /// The segment name.
        name: String,
        /// The pid the live producer registered, if known.
        pid: Option<u32>,
    },

    /// Every producer entry of a multi-producer bus is held by a live producer.
    #[error("segment {name:?} already has {max} live producers, the most it supports")]
    TooManyProducers {
        /// The segment name.
        name: String,
        /// The limit.
        max: usize,
    },

    /// Every entry of a queue's participant table is held by a live sender or receiver.
    #[error("queue {name:?} already has {max} live senders and receivers, the most it supports")]
    TooManyParticipants {
        /// The queue name.
        name: String,
        /// The limit (senders and receivers together).
        max: usize,
    },

    /// The segment was opened read-only: the handle cannot publish, send, receive or write.
    #[error("segment {name:?} was opened read-only and cannot be written")]
    ReadOnly {
        /// The segment name.
        name: String,
    },

    /// A board has no cell of that index.
    #[error("board {name:?} has {cells} cells; there is no cell {index}")]
    CellOutOfRange {
        /// The board name.
        name: String,
        /// The index asked for.
        index: usize,
        /// How many cells the board has.
        cells: usize,
    },

    /// A value is larger than the board's cells hold.
    #[error("value is {len} bytes, a cell of board {name:?} holds {size}")]
    ValueTooLarge {
        /// The board name.
        name: String,
        /// The value's length.
        len: usize,
        /// The board's value size.
        size: usize,
    },

    /// A typed read found a value of another length (written as raw bytes by another handle).
    #[error("board {name:?} cell {index} holds {len} bytes, not a {ty} ({size} bytes)")]
    ValueTypeMismatch {
        /// The board name.
        name: String,
        /// The cell.
        index: usize,
        /// The value's length.
        len: usize,
        /// The type asked for.
        ty: String,
        /// Its size.
        size: usize,
    },

    /// Another live writer held the cell for longer than a writer waits (a few milliseconds of
    /// spinning and yielding): it is stopped or descheduled mid-update. `held_for` is a lower
    /// bound: the time since this writer first saw the cell held by that writer at that
    /// version, counted across its calls, so a caller that retries sees it grow and can decide
    /// when a holder is stuck (docs/design.md §12, "Stopped holders").
    #[error(
        "board {name:?} cell {index} is held for at least {:.1} ms by {}, a live writer mid-update; try again",
        held_for.as_secs_f64() * 1e3,
        pid.map(|p| format!("pid {p}")).unwrap_or_else(|| "a writer of unknown pid".into())
    )]
    CellHeld {
        /// The board name.
        name: String,
        /// The cell.
        index: usize,
        /// The holder's pid, if its producer entry names one.
        pid: Option<u32>,
        /// At least how long the holder has held the cell.
        held_for: std::time::Duration,
    },

    /// The cell changed during each of the reader's bounded attempts to copy it.
    #[error("board {name:?} cell {index} changed during each of {attempts} reads; try again")]
    CellBusy {
        /// The board name.
        name: String,
        /// The cell.
        index: usize,
        /// Copies attempted.
        attempts: u32,
    },

    /// A board's own fields (cell count, key block, cell size, a value length) are inconsistent.
    #[error("board {name:?} is corrupt: {what}")]
    BoardCorrupt {
        /// The board name.
        name: String,
        /// What is inconsistent, with the numbers found.
        what: String,
    },

    /// A builder setting is out of range.
    #[error("invalid configuration: {0}")]
    InvalidConfig(String),

    /// `/dev/shm` has no room for the segment.
    #[error("no space in /dev/shm for segment {name:?} ({size} bytes)")]
    NoSpace {
        /// The segment name.
        name: String,
        /// Bytes that were asked for.
        size: u64,
    },

    /// A file is not a shmbus journal (another kind of file, or another program's data).
    #[error("{}: not a shmbus journal: {reason}", path.display())]
    NotAJournal {
        /// The file.
        path: std::path::PathBuf,
        /// What was found instead.
        reason: String,
    },

    /// A journal written in another format version.
    #[error("{}: journal format version {found}, this shmbus reads version {expected}", path.display())]
    JournalVersion {
        /// The file.
        path: std::path::PathBuf,
        /// The version in the file.
        found: u32,
        /// The version this library reads and writes.
        expected: u32,
    },

    /// A journal's header or one of its entries is inconsistent (a damaged or truncated file).
    #[error("{}: corrupt journal at byte {offset}: {reason}", path.display())]
    CorruptJournal {
        /// The file.
        path: std::path::PathBuf,
        /// Byte offset of the inconsistent field or entry.
        offset: u64,
        /// What is wrong.
        reason: String,
    },

    /// An operating-system error on a journal file, with the step that failed.
    #[error("{}: {op} failed: {source}", path.display())]
    JournalIo {
        /// The file.
        path: std::path::PathBuf,
        /// The operation that failed (`open`, `mmap`, `posix_fallocate`, ...).
        op: &'static str,
        /// The OS error.
        #[source]
        source: io::Error,
    },

    /// A records segment's geometry words do not describe a byte ring this shmbus makes
    /// (corrupt segment).
    #[error("records segment {name:?} is corrupt: {slots} slot(s) of {bytes} bytes with capacity {capacity} is not a power-of-two ring from 4096 bytes to 16 GiB whose largest record is a quarter of it")]
    BadRing {
        /// The segment name.
        name: String,
        /// The slot count found (a records segment has 1).
        slots: u64,
        /// The ring size found, in bytes.
        bytes: u64,
        /// The largest payload found, in bytes.
        capacity: u64,
    },

    /// A records segment's control words contradict each other, so that no producer can go on
    /// from them (corrupt segment; readers still read it safely).
    #[error("records segment {name:?} is corrupt: tail {tail}, intent {intent}, head {head} and cursor {cursor} are inconsistent")]
    RecordsInconsistent {
        /// The segment name.
        name: String,
        /// Where the next record would start.
        tail: u64,
        /// The end of the bytes last written.
        intent: u64,
        /// The oldest intact record.
        head: u64,
        /// The next sequence number.
        cursor: u64,
    },

    /// Every lane of a lanes segment is held by a live producer or still being drained by the
    /// consumer after its producer closed it.
    #[error("lanes segment {name:?} has no free lane: all {lanes} are held by producers or still being drained")]
    LanesFull {
        /// The segment name.
        name: String,
        /// The number of lanes.
        lanes: u32,
    },

    /// A lanes segment already has a live consumer (one at a time).
    #[error("lanes segment {name:?} already has a live consumer{}", pid.map(|p| format!(" (pid {p})")).unwrap_or_default())]
    ConsumerExists {
        /// The segment name.
        name: String,
        /// The pid the live consumer registered, if known.
        pid: Option<u32>,
    },

    /// A lanes segment's words contradict each other or the lanes' shape (a corrupt or forged
    /// segment): nothing out of bounds was read, and the lane named is skipped.
    #[error("lanes segment {name:?} is corrupt: {detail}")]
    LanesCorrupt {
        /// The segment name.
        name: String,
        /// What was found.
        detail: String,
    },

    /// A handle that attached before `fork(2)` was used in the child: the attachment (its
    /// producer entry and kernel locks) belongs to the parent. Attach anew in the child
    /// (docs/design.md §10, "Fork").
    #[error(
        "segment {name:?}: this handle was attached by the parent process before fork(); \
         open the segment and attach again in this process"
    )]
    UsedAfterFork {
        /// The segment name.
        name: String,
    },

    /// Any other operating-system error, with the step that failed.
    #[error("segment {name:?}: {op} failed: {source}")]
    Io {
        /// The segment name.
        name: String,
        /// The operation that failed (`shm_open`, `mmap`, ...).
        op: &'static str,
        /// The OS error.
        #[source]
        source: io::Error,
    },
}

impl Error {
    /// Whether this error says the segment's header is inconsistent: a damaged segment, or one a
    /// hostile process wrote (as opposed to a missing, foreign, unfinished or refused one).
    pub fn is_corrupt(&self) -> bool {
        matches!(
            self,
            Error::UnknownKind { .. }
                | Error::BadProducerMode { .. }
                | Error::SequenceOutOfOrder { .. }
                | Error::BadSlotCount { .. }
                | Error::BadStride { .. }
                | Error::CapacityOutOfRange { .. }
                | Error::CapacityExceedsStride { .. }
                | Error::GeometryTooLarge { .. }
                | Error::RecordedSizeMismatch { .. }
                | Error::SizeMismatch { .. }
                | Error::CapacityBelowType { .. }
                | Error::BoardCorrupt { .. }
                | Error::BadRing { .. }
                | Error::RecordsInconsistent { .. }
                | Error::LanesCorrupt { .. }
        )
    }

    pub(crate) fn io(name: &str, op: &'static str, errno: nix::errno::Errno) -> Self {
        Error::Io {
            name: name.to_owned(),
            op,
            source: io::Error::from_raw_os_error(errno as i32),
        }
    }
}
