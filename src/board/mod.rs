//! Boards: the latest value for each of N keys (docs/design.md §12).
//!
//! A board is a segment of kind [`SegmentKind::Board`]: N cells, each an independently versioned,
//! double-buffered seqlock holding one value of a fixed maximum size. Any number of writers (up
//! to 32 at once) may update any cell; a cell is taken with a CAS on its state word, so writers
//! of one cell serialise and writers of different cells never meet. Readers copy the latest
//! intact value with its version, never torn, and never wait for a writer: a writer fills the
//! copy that is not current. A writer that dies mid-update leaves the previous value current
//! and readable; the next writer of that cell repairs it through the dead writer's entry lock.

mod cell;
#[cfg(all(test, loom))]
mod loom;

use std::marker::PhantomData;
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::time::{Duration, Instant};

use nix::sys::stat::Mode;

use crate::error::{Error, Result};
use crate::payload::{Payload, Raw};
use crate::segment::header::{
    Geometry, ProducerMode, SegmentKind, TypeInfo, CAPACITY_LIMIT, MAX_PRODUCERS,
    MAX_SEGMENT_BYTES, MAX_SLOTS, W_BOARD,
};
use crate::segment::liveness::SegmentLiveness;
use crate::segment::{self, Access, Expect, LockKind, Segment, Shape, Trust};
use crate::sync::{load_acquire, Ordering};

pub use cell::KEY_MAX;
use cell::{CellWriter, Cells, ReadOutcome, TakeError, Taken, READ_ATTEMPTS};

/// Most cells a board may have.
pub const MAX_CELLS: usize = MAX_SLOTS as usize;
/// Value size of a new raw board unless [`BoardBuilder::value_size`] says otherwise.
pub const DEFAULT_BOARD_VALUE_SIZE: usize = 64;

/// How long an opener waits for a creator to store the board's cell count.
const INIT_WAIT: Duration = Duration::from_millis(100);

/// The board's own shape, read once at create or open and never re-read from shared memory.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct BoardShape {
    cells: usize,
    stride_words: usize,
    capacity: usize,
    keyed: bool,
}

impl BoardShape {
    fn view<'a>(&self, seg: &'a Segment) -> Cells<'a> {
        Cells::new(
            seg.words(),
            self.cells,
            self.stride_words,
            self.capacity,
            self.keyed,
        )
    }

    /// The board word of the header: cell count (lo32), key block bytes per cell (hi32).
    fn word(&self) -> u64 {
        let keys = if self.keyed {
            cell::KEY_BLOCK_BYTES as u64
        } else {
            0
        };
        self.cells as u64 | keys << 32
    }

    /// Checks the board word of a segment whose common header passed the open pipeline.
    fn validate(name: &str, word: u64, g: &Geometry) -> Result<BoardShape> {
        let corrupt = |what: String| Error::BoardCorrupt {
            name: name.to_owned(),
            what,
        };
        let cells = (word as u32) as usize;
        let keyed = match word >> 32 {
            0 => false,
            k if k == cell::KEY_BLOCK_BYTES as u64 => true,
            k => return Err(corrupt(format!("key block of {k} bytes (0 or 64)"))),
        };
        if cells == 0 || cells as u64 > g.slot_count || (cells as u64) * 2 <= g.slot_count {
            return Err(corrupt(format!(
                "{cells} cells do not match room for {} (the next power of two)",
                g.slot_count
            )));
        }
        let stride = cell::stride_bytes(g.capacity, keyed);
        if stride != Some(g.stride_bytes()) {
            return Err(corrupt(format!(
                "cells of {} bytes, values of {} bytes{} need {}",
                g.stride_bytes(),
                g.capacity,
                if keyed { " with keys" } else { "" },
                stride.map_or("more".into(), |s| s.to_string())
            )));
        }
        Ok(BoardShape {
            cells,
            stride_words: g.stride_words,
            capacity: g.capacity,
            keyed,
        })
    }
}

/// A handle on a named board (or an in-process one). Cheap to clone; writers and readers made
/// from it keep the mapping alive.
///
/// ```
/// use shmbus::{Board, BoardBuilder};
/// # let name = format!("doc-board-{}", std::process::id());
///
/// let board = BoardBuilder::new(&name).keys(&["x", "y"]).value_size(16).create()?;
/// let mut writer = board.writer()?;
/// writer.set_bytes(1, b"hello")?;
///
/// // Another process: open the board by name and read a cell.
/// let mut reader = Board::open_read_only(&name)?.reader();
/// let y = board.index_of("y").unwrap();
/// let v = reader.read(y)?.expect("set above");
/// assert_eq!((v.version(), v.bytes()), (1, &b"hello"[..]));
/// assert!(reader.read(0)?.is_none(), "never set");
/// assert!(!reader.changed_since(y, 1)?);
/// # Board::remove(&name)?;
/// # Ok::<(), shmbus::Error>(())
/// ```
pub struct Board<T: Payload = Raw> {
    seg: Arc<Segment>,
    shape: BoardShape,
    _type: PhantomData<fn() -> T>,
}

impl<T: Payload> Clone for Board<T> {
    fn clone(&self) -> Self {
        Board {
            seg: self.seg.clone(),
            shape: self.shape,
            _type: PhantomData,
        }
    }
}

impl<T: Payload> std::fmt::Debug for Board<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Board")
            .field("name", &self.seg.name())
            .field("cells", &self.shape.cells)
            .field("value_size", &self.shape.capacity)
            .field("keys", &self.shape.keyed)
            .field("type", &self.seg.ty.name)
            .finish()
    }
}

impl Board<Raw> {
    /// Opens an existing board read-write, accepting any value type for reading.
    ///
    /// # Errors
    ///
    /// Those of [`BoardBuilder::open`], except [`Error::TypeMismatch`] (a raw open accepts any
    /// value type).
    pub fn open(name: &str) -> Result<Self> {
        BoardBuilder::new(name).open()
    }

    /// Opens an existing board read-only: readers only, the segment mapped without write access.
    ///
    /// # Errors
    ///
    /// Those of [`BoardBuilder::open`], except [`Error::TypeMismatch`] (a raw open accepts any
    /// value type).
    pub fn open_read_only(name: &str) -> Result<Self> {
        BoardBuilder::new(name).read_only().open()
    }

    /// Removes a board from `/dev/shm`. Processes that have it open keep their mapping.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidName`]; [`Error::NotFound`] if there is no such object;
    /// [`Error::PermissionDenied`]; [`Error::Io`] for any other system error.
    pub fn remove(name: &str) -> Result<()> {
        segment::remove(name)
    }
}

impl<T: Payload> Board<T> {
    /// Attaches a writer (one of at most 32 live at once, across processes). It repairs a cell
    /// that the previous, dead owner of its producer entry left held.
    ///
    /// # Errors
    /// [`Error::ReadOnly`] on a read-only handle; [`Error::TooManyProducers`] when 32 writers
    /// live; [`Error::TypeMismatch`] for a raw handle on a typed board or the reverse.
    pub fn writer(&self) -> Result<BoardWriter<T>> {
        if !self.seg.is_writable() {
            return Err(Error::ReadOnly {
                name: self.seg.name().to_owned(),
            });
        }
        let wanted = T::type_info(&self.seg.ty.name);
        if wanted.is_raw() != self.seg.ty.is_raw() {
            return Err(Error::TypeMismatch {
                name: self.seg.name().to_owned(),
                expected: wanted.to_string(),
                found: self.seg.ty.to_string(),
            });
        }
        BoardWriter::attach(self.seg.clone(), self.shape)
    }

    /// A reader, with its own copy buffer.
    pub fn reader(&self) -> BoardReader<T> {
        BoardReader {
            seg: self.seg.clone(),
            shape: self.shape,
            buf: vec![0; self.shape.view(&self.seg).value_words()],
            _type: PhantomData,
        }
    }

    /// The board name.
    pub fn name(&self) -> &str {
        self.seg.name()
    }

    /// Number of cells.
    pub fn cells(&self) -> usize {
        self.shape.cells
    }

    /// Largest value a cell holds, in bytes.
    pub fn value_size(&self) -> usize {
        self.shape.capacity
    }

    /// The value type recorded at creation ([`TypeInfo::raw`] for raw boards).
    pub fn value_type(&self) -> &TypeInfo {
        &self.seg.ty
    }

    /// Whether the board was created with key names.
    pub fn has_keys(&self) -> bool {
        self.shape.keyed
    }

    /// Cell `index`'s key name as stored (invalid UTF-8 replaced); `None` without one.
    pub fn key(&self, index: usize) -> Option<String> {
        if index >= self.shape.cells {
            return None;
        }
        let key = self.shape.view(&self.seg).key(index);
        (!key.is_empty()).then(|| String::from_utf8_lossy(&key).into_owned())
    }

    /// The index of the first cell named `key`.
    pub fn index_of(&self, key: &str) -> Option<usize> {
        let cells = self.shape.view(&self.seg);
        (0..self.shape.cells).find(|&i| cells.key(i) == key.as_bytes())
    }

    /// Whether this handle was opened read-only.
    pub fn is_read_only(&self) -> bool {
        !self.seg.is_writable()
    }

    /// Whether any writer is attached (its producer lock is held by a live process).
    pub fn has_writers(&self) -> bool {
        self.seg.producers_alive()
    }
}

/// Builds or opens a board: `BoardBuilder::new("quotes").cells(100).value_type::<Quote>()`.
pub struct BoardBuilder<T: Payload = Raw> {
    name: String,
    cells: Option<usize>,
    value_size: Option<usize>,
    keys: Vec<String>,
    permissions: u32,
    type_name: Option<String>,
    access: Access,
    trust: Trust,
    _type: PhantomData<fn() -> T>,
}

impl<T: Payload> std::fmt::Debug for BoardBuilder<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BoardBuilder")
            .field("name", &self.name)
            .field("cells", &self.cells)
            .field("value_size", &self.value_size)
            .field("keys", &self.keys)
            .finish()
    }
}

impl BoardBuilder<Raw> {
    /// Starts a builder for board `name`, holding raw bytes.
    pub fn new(name: &str) -> Self {
        BoardBuilder {
            name: name.to_owned(),
            cells: None,
            value_size: None,
            keys: Vec::new(),
            permissions: 0o600,
            type_name: None,
            access: Access::ReadWrite,
            trust: Trust::default(),
            _type: PhantomData,
        }
    }
}

impl<T: Payload> BoardBuilder<T> {
    /// Makes the board hold values of type `U` (checked when opening: another type, even of the
    /// same size, is refused). The value size defaults to `U`'s size.
    pub fn value_type<U: Payload>(self) -> BoardBuilder<U> {
        BoardBuilder {
            name: self.name,
            cells: self.cells,
            value_size: self.value_size,
            keys: self.keys,
            permissions: self.permissions,
            type_name: self.type_name,
            access: self.access,
            trust: self.trust,
            _type: PhantomData,
        }
    }

    /// Number of cells (1 to [`MAX_CELLS`]); defaults to the number of keys.
    pub fn cells(mut self, cells: usize) -> Self {
        self.cells = Some(cells);
        self
    }

    /// Largest value in bytes. Defaults to the value type's size, or 64 bytes for raw boards.
    pub fn value_size(mut self, bytes: usize) -> Self {
        self.value_size = Some(bytes);
        self
    }

    /// Key names of the first cells, stored in the board for lookups ([`Board::index_of`]) and
    /// the inspector: each 1 to [`KEY_MAX`] bytes, no two alike.
    pub fn keys<S: AsRef<str>>(mut self, keys: &[S]) -> Self {
        self.keys = keys.iter().map(|k| k.as_ref().to_owned()).collect();
        self
    }

    /// Permission bits of a created segment (default `0o600`), applied exactly.
    pub fn permissions(mut self, mode: u32) -> Self {
        self.permissions = mode;
        self
    }

    /// The type name recorded and checked for typed boards (default `std::any::type_name`).
    pub fn type_name(mut self, name: &str) -> Self {
        self.type_name = Some(name.to_owned());
        self
    }

    /// Open read-only (readers only; the segment is mapped without write access).
    pub fn read_only(mut self) -> Self {
        self.access = Access::ReadOnly;
        self
    }

    /// Accept a segment owned by another user.
    pub fn accept_other_owner(mut self) -> Self {
        self.trust.other_owner = true;
        self
    }

    /// Accept a segment writable by group or others.
    pub fn accept_shared_write(mut self) -> Self {
        self.trust.shared_write = true;
        self
    }

    fn type_info(&self) -> TypeInfo {
        T::type_info(
            self.type_name
                .as_deref()
                .unwrap_or_else(|| T::default_name()),
        )
    }

    /// The segment shape and board shape to create, every bound checked.
    fn plan(&self) -> Result<(Shape, BoardShape)> {
        let bad = |s: String| Err(Error::InvalidConfig(s));
        let ty = self.type_info();
        if ty.align > 8 {
            return bad(format!(
                "type {} has alignment {}; board values are 8-byte aligned",
                ty.name, ty.align
            ));
        }
        let capacity = self.value_size.unwrap_or(if ty.is_raw() {
            DEFAULT_BOARD_VALUE_SIZE
        } else {
            ty.size as usize
        });
        if capacity == 0 || capacity >= CAPACITY_LIMIT as usize {
            return bad(format!("value size {capacity} is out of range"));
        }
        if !ty.is_raw() && capacity < ty.size as usize {
            return Err(Error::ValueTooLarge {
                name: self.name.clone(),
                len: ty.size as usize,
                size: capacity,
            });
        }
        let cells = match (self.cells, self.keys.len()) {
            (Some(n), _) => n,
            (None, 0) => return bad("a board needs a cell count: .cells(n) or .keys(..)".into()),
            (None, k) => k,
        };
        if cells == 0 || cells > MAX_CELLS {
            return bad(format!("{cells} cells: a board has 1 to {MAX_CELLS}"));
        }
        if self.keys.len() > cells {
            return bad(format!("{} keys for {cells} cells", self.keys.len()));
        }
        for (i, k) in self.keys.iter().enumerate() {
            if k.is_empty() || k.len() > KEY_MAX {
                return bad(format!(
                    "key {k:?} is {} bytes; a key has 1 to {KEY_MAX}",
                    k.len()
                ));
            }
            if self.keys[..i].contains(k) {
                return bad(format!("key {k:?} is given twice"));
            }
        }
        let keyed = !self.keys.is_empty();
        let too_large =
            || Error::InvalidConfig(format!("values of {capacity} bytes are too large"));
        let stride = cell::stride_bytes(capacity, keyed).ok_or_else(too_large)?;
        let geometry = Geometry {
            slot_count: (cells as u64).next_power_of_two(),
            stride_words: usize::try_from(stride / 8).map_err(|_| too_large())?,
            capacity,
        };
        match geometry.segment_bytes() {
            Some(size) if size <= MAX_SEGMENT_BYTES => {}
            _ => {
                return bad(format!(
                    "{cells} cells of {stride} bytes exceed the {MAX_SEGMENT_BYTES}-byte limit"
                ))
            }
        }
        let shape = Shape {
            kind: SegmentKind::Board,
            geometry,
            mode: ProducerMode::Multi,
            ty,
            first_seq: 0,
        };
        let board = BoardShape {
            cells,
            stride_words: geometry.stride_words,
            capacity,
            keyed,
        };
        Ok((shape, board))
    }

    /// Writes the keys and the board word (Release, last) into a new segment.
    fn publish_shape(&self, seg: &Segment, board: BoardShape) {
        let cells = board.view(seg);
        for (i, k) in self.keys.iter().enumerate() {
            cells.set_key(i, k.as_bytes());
        }
        // ORDERING: pairs with the Acquire load in `open`: an opener that sees the cell count
        // sees the keys. (Other users cannot open the object before its final mode is set
        // below; this keeps a root opener, whom the mode does not stop, correct too.)
        seg.words()[W_BOARD].store(board.word(), Ordering::Release);
    }

    /// Creates a new board; fails with [`Error::AlreadyExists`] if the name is taken.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidConfig`] for a cell count outside 1 to [`MAX_CELLS`] (or none given), more
    /// keys than cells, an empty, too long or repeated key, a zero or too large value size, cells
    /// too large for a segment, or a value type whose alignment exceeds 8 bytes;
    /// [`Error::ValueTooLarge`] if the value type does not fit the value size asked for;
    /// [`Error::InvalidName`]; [`Error::AlreadyExists`]; [`Error::PermissionDenied`];
    /// [`Error::NoSpace`] when `/dev/shm` is full; [`Error::Io`] for any other system error.
    pub fn create(self) -> Result<Board<T>> {
        let (shape, board) = self.plan()?;
        // Created owner-write-only (as if still being initialised) until the board word is
        // stored, then given its mode (docs/design.md §12).
        let seg = Segment::create(&self.name, shape, 0o200)?;
        self.publish_shape(&seg, board);
        let fd = seg.lock_fd().expect("a created segment is mapped");
        if let Err(e) = nix::sys::stat::fchmod(
            fd.as_raw_fd(),
            Mode::from_bits_truncate(self.permissions & 0o777),
        ) {
            let _ = segment::remove(&self.name);
            return Err(Error::io(&self.name, "fchmod", e));
        }
        Ok(Board {
            seg: Arc::new(seg),
            shape: board,
            _type: PhantomData,
        })
    }

    /// Creates a board that lives in this process's heap only: no name, no `/dev/shm`.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidConfig`] for a cell count outside 1 to [`MAX_CELLS`] (or none given), more
    /// keys than cells, an empty, too long or repeated key, a zero or too large value size, cells
    /// too large for a segment, or a value type whose alignment exceeds 8 bytes;
    /// [`Error::ValueTooLarge`] if the value type does not fit the value size asked for.
    pub fn in_process(self) -> Result<Board<T>> {
        let (shape, board) = self.plan()?;
        let seg = Segment::heap(shape);
        self.publish_shape(&seg, board);
        Ok(Board {
            seg: Arc::new(seg),
            shape: board,
            _type: PhantomData,
        })
    }

    /// Opens an existing board, checking its value type (raw builders accept any type).
    ///
    /// # Errors
    ///
    /// [`Error::InvalidName`]; [`Error::NotFound`]; [`Error::PermissionDenied`];
    /// [`Error::NotRegularFile`] (a symlink, FIFO, ... in its place); [`Error::ForeignOwner`] and
    /// [`Error::InsecureMode`] unless accepted; [`Error::Truncated`] or [`Error::TooLarge`];
    /// [`Error::BadMagic`] (not a shmbus segment); [`Error::NotInitialised`] (its creator did not
    /// finish); [`Error::AbiMismatch`]; [`Error::WrongKind`] if another kind of segment has the
    /// name; a corrupt header (the variants for which [`Error::is_corrupt`] holds), among them
    /// [`Error::BoardCorrupt`] for an inconsistent board word; [`Error::NotInitialised`] also if
    /// its creator has not stored the cell count within 100 ms; [`Error::TypeMismatch`] for a typed
    /// open; and [`Error::Io`] for any other system error.
    pub fn open(self) -> Result<Board<T>> {
        let wanted = self.type_info();
        let expect = Expect {
            kind: SegmentKind::Board,
            ty: (!wanted.is_raw()).then_some(wanted),
        };
        let seg = Segment::open_expecting(&self.name, self.access, self.trust, &expect)?;
        let deadline = Instant::now() + INIT_WAIT;
        let word = loop {
            // ORDERING: pairs with the Release store in `publish_shape`.
            let word = load_acquire(&seg.words()[W_BOARD]);
            if word != 0 {
                break word;
            }
            if Instant::now() >= deadline {
                return Err(Error::NotInitialised { name: self.name });
            }
            std::thread::sleep(Duration::from_millis(1));
        };
        let shape = BoardShape::validate(&self.name, word, &seg.geometry)?;
        Ok(Board {
            seg: Arc::new(seg),
            shape,
            _type: PhantomData,
        })
    }
}

/// A value read from a cell, borrowed from the reader's buffer until its next read.
pub struct Value<'a, T: Payload = Raw> {
    version: u64,
    stamp: u64,
    bytes: &'a [u8],
    _type: PhantomData<fn() -> T>,
}

impl<T: Payload> std::fmt::Debug for Value<'_, T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Value")
            .field("version", &self.version)
            .field("stamp", &self.stamp)
            .field("bytes", &self.bytes)
            .finish()
    }
}

impl<T: Payload> Value<'_, T> {
    /// The cell's version: how many updates it has had (1 for the first value).
    pub fn version(&self) -> u64 {
        self.version
    }

    /// The value's bytes.
    pub fn bytes(&self) -> &[u8] {
        self.bytes
    }

    /// When it was set: `CLOCK_MONOTONIC_COARSE` in nanoseconds (the same clock in every
    /// process of the machine; a few milliseconds' resolution).
    pub fn stamp_ns(&self) -> u64 {
        self.stamp
    }

    /// Time since it was set, by the coarse clock.
    pub fn age(&self) -> Duration {
        Duration::from_nanos(segment::coarse_now_ns().saturating_sub(self.stamp))
    }

    /// The value as `T` (`[u8]` for raw boards); `None` if its length is not `T`'s size.
    pub fn get(&self) -> Option<&T::View> {
        T::view(self.bytes)
    }
}

/// Reads a board's cells: `read(i)`, `get(i)`, `changed_since(i, version)`, `scan`.
pub struct BoardReader<T: Payload = Raw> {
    seg: Arc<Segment>,
    shape: BoardShape,
    buf: Vec<u64>,
    _type: PhantomData<fn() -> T>,
}

impl<T: Payload> std::fmt::Debug for BoardReader<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BoardReader")
            .field("board", &self.seg.name())
            .finish()
    }
}

impl<T: Payload> BoardReader<T> {
    fn check_index(&self, index: usize) -> Result<()> {
        if index >= self.shape.cells {
            return Err(Error::CellOutOfRange {
                name: self.seg.name().to_owned(),
                index,
                cells: self.shape.cells,
            });
        }
        Ok(())
    }

    /// The latest intact value of cell `index` with its version, or `None` if it was never set.
    /// Never torn; never waits for a writer. Copies again when an update lands during the copy,
    /// at most 64 times.
    ///
    /// # Errors
    /// [`Error::CellOutOfRange`]; [`Error::CellBusy`] if updates landed during every copy;
    /// [`Error::BoardCorrupt`] for a length beyond the value size (a damaged segment).
    pub fn read(&mut self, index: usize) -> Result<Option<Value<'_, T>>> {
        self.check_index(index)?;
        let cells = self.shape.view(&self.seg);
        match cell::read(&cells, index, &mut self.buf) {
            ReadOutcome::Value {
                version,
                len,
                stamp,
            } => Ok(Some(Value {
                version,
                stamp,
                bytes: &bytemuck::cast_slice(&self.buf)[..len],
                _type: PhantomData,
            })),
            ReadOutcome::Empty => Ok(None),
            ReadOutcome::Busy => Err(Error::CellBusy {
                name: self.seg.name().to_owned(),
                index,
                attempts: READ_ATTEMPTS,
            }),
            ReadOutcome::Corrupt { len } => Err(Error::BoardCorrupt {
                name: self.seg.name().to_owned(),
                what: format!(
                    "cell {index} holds a value of {len} bytes, more than {}",
                    self.shape.capacity
                ),
            }),
        }
    }

    /// The latest value of cell `index` as an owned `T` (`Vec<u8>` for raw boards), with its
    /// version; `None` if never set.
    ///
    /// # Errors
    /// As [`read`](Self::read), and [`Error::ValueTypeMismatch`] if the value is not `T`'s size.
    pub fn get(&mut self, index: usize) -> Result<Option<Versioned<T::Owned>>> {
        let name = self.seg.name().to_owned();
        let Some(v) = self.read(index)? else {
            return Ok(None);
        };
        let Some(view) = v.get() else {
            let ty = T::type_info(T::default_name());
            return Err(Error::ValueTypeMismatch {
                name,
                index,
                len: v.bytes.len(),
                ty: ty.name,
                size: ty.size as usize,
            });
        };
        Ok(Some(Versioned {
            version: v.version,
            stamp_ns: v.stamp,
            value: T::to_owned(view),
        }))
    }

    /// Cell `index`'s version: the number of updates it has had (0: never set). One load.
    ///
    /// # Errors
    ///
    /// [`Error::CellOutOfRange`] if the board has no cell `index`.
    pub fn version(&self, index: usize) -> Result<u64> {
        self.check_index(index)?;
        Ok(self.shape.view(&self.seg).version(index))
    }

    /// Whether cell `index` was updated since `version` (as [`Value::version`] reported it).
    /// One load: cheap enough to poll.
    ///
    /// # Errors
    ///
    /// [`Error::CellOutOfRange`] if the board has no cell `index`.
    pub fn changed_since(&self, index: usize, version: u64) -> Result<bool> {
        Ok(self.version(index)? != version)
    }

    /// Reads every cell in index order, handing each result to `f` (`None`: never set).
    pub fn scan(&mut self, mut f: impl FnMut(usize, Result<Option<Value<'_, T>>>)) {
        for i in 0..self.shape.cells {
            f(i, self.read(i));
        }
    }

    /// Number of cells.
    pub fn cells(&self) -> usize {
        self.shape.cells
    }
}

/// An owned value with its version.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Versioned<V> {
    /// How many updates the cell has had (1 for the first value).
    pub version: u64,
    /// When it was set (`CLOCK_MONOTONIC_COARSE` ns, see [`Value::stamp_ns`]).
    pub stamp_ns: u64,
    /// The value.
    pub value: V,
}

/// Updates a board's cells. Any number of writers (32 live at once) may update any cell; each
/// update takes the cell with a CAS, so writers of one cell take turns (docs/design.md §12).
pub struct BoardWriter<T: Payload = Raw> {
    seg: Arc<Segment>,
    shape: BoardShape,
    writer: CellWriter,
    index: usize,
    /// Holds this writer's OFD locks (byte 0 shared: a writer is attached; byte 1+index: the
    /// entry); `None` for an in-process board.
    lock: Option<crate::segment::LockFd>,
    repaired: u64,
    _type: PhantomData<fn() -> T>,
}

impl<T: Payload> std::fmt::Debug for BoardWriter<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BoardWriter")
            .field("board", &self.seg.name())
            .field("index", &self.index)
            .finish()
    }
}

impl<T: Payload> BoardWriter<T> {
    fn attach(seg: Arc<Segment>, shape: BoardShape) -> Result<Self> {
        let pid = std::process::id();
        let too_many = || Error::TooManyProducers {
            name: seg.name().to_owned(),
            max: MAX_PRODUCERS,
        };
        let lock = seg.reopen_for_lock()?;
        let index = match &lock {
            Some(fd) => {
                let io = |e| Error::Io {
                    name: seg.name().to_owned(),
                    op: "fcntl(F_OFD_SETLK)",
                    source: e,
                };
                if !segment::try_lock(fd, 0, LockKind::Shared).map_err(io)? {
                    return Err(too_many());
                }
                let mut found = None;
                for i in 0..MAX_PRODUCERS {
                    if segment::try_lock(fd, 1 + i as i64, LockKind::Exclusive).map_err(io)? {
                        found = Some(i);
                        break;
                    }
                }
                found.ok_or_else(too_many)?
            }
            None => (0..MAX_PRODUCERS)
                .find(|&i| seg.claim_heap_entry(i, pid))
                .ok_or_else(too_many)?,
        };
        // The entry's previous owner is dead (we hold its lock): give back the cell it held,
        // before our own claims overwrite its claim word (docs/design.md §12, "Repair").
        let repaired = u64::from(cell::repair_entry(&shape.view(&seg), index));
        seg.set_producer(index, pid, segment::process_start_ticks(pid).unwrap_or(0));
        seg.producer_heartbeat(index)
            .store(segment::coarse_now_ns(), Ordering::Relaxed);
        Ok(BoardWriter {
            seg,
            shape,
            writer: CellWriter::new(index),
            index,
            lock,
            repaired,
            _type: PhantomData,
        })
    }

    /// Largest value in bytes.
    pub fn value_size(&self) -> usize {
        self.shape.capacity
    }

    /// Cells this writer repaired (given back after their writer died mid-update).
    pub fn repaired(&self) -> u64 {
        self.repaired
    }

    /// This writer's producer-table entry.
    pub fn producer_index(&self) -> usize {
        self.index
    }

    /// Sets cell `index` to `value`. Returns the cell's new version.
    ///
    /// # Errors
    /// [`Error::CellOutOfRange`], [`Error::ValueTooLarge`] (raw values longer than the value
    /// size), [`Error::CellHeld`] if another live writer kept the cell past the bound,
    /// [`Error::BoardCorrupt`] if the cell's version is at its limit (a forged state word).
    pub fn set(&mut self, index: usize, value: &T::View) -> Result<u64> {
        self.set_bytes(index, T::bytes(value))
    }

    /// Sets cell `index` to `bytes` (up to the value size). Returns the cell's new version.
    ///
    /// # Errors
    /// As [`set`](Self::set).
    pub fn set_bytes(&mut self, index: usize, bytes: &[u8]) -> Result<u64> {
        if bytes.len() > self.shape.capacity {
            return Err(Error::ValueTooLarge {
                name: self.seg.name().to_owned(),
                len: bytes.len(),
                size: self.shape.capacity,
            });
        }
        let (version, pushed) = self.set_with(index, |w| w.push(bytes))?;
        pushed.map(|()| version)
    }

    /// Builds cell `index`'s new value in place: `fill` appends bytes with
    /// [`ValueWriter::push`] (atomic stores into the copy readers are not reading); the value
    /// is committed, as far as it was pushed, when `fill` returns (also when a push failed).
    /// If `fill` panics, the cell is given back unchanged.
    /// Returns the new version and what `fill` returned.
    ///
    /// # Errors
    /// [`Error::CellOutOfRange`], [`Error::CellHeld`], [`Error::BoardCorrupt`];
    /// [`Error::UsedAfterFork`] in a forked child of the process that attached.
    pub fn set_with<R>(
        &mut self,
        index: usize,
        fill: impl FnOnce(&mut ValueWriter<'_>) -> R,
    ) -> Result<(u64, R)> {
        if self.lock.as_ref().is_some_and(|l| l.forked()) {
            // A forked child may not write under its parent's entry (docs/design.md §10).
            return Err(Error::UsedAfterFork {
                name: self.seg.name().to_owned(),
            });
        }
        if index >= self.shape.cells {
            return Err(Error::CellOutOfRange {
                name: self.seg.name().to_owned(),
                index,
                cells: self.shape.cells,
            });
        }
        let cells = self.shape.view(&self.seg);
        let live = SegmentLiveness::producer(&self.seg, self.lock.as_ref(), self.index);
        let taken = match self.writer.take(&cells, &live, index) {
            Ok(t) => t,
            Err(TakeError::Held { holder }) => {
                return Err(Error::CellHeld {
                    name: self.seg.name().to_owned(),
                    index,
                    pid: holder
                        .filter(|&h| h < MAX_PRODUCERS)
                        .map(|h| self.seg.producer_pid(h))
                        .filter(|&p| p != 0),
                })
            }
            Err(TakeError::VersionLimit) => {
                return Err(Error::BoardCorrupt {
                    name: self.seg.name().to_owned(),
                    what: format!(
                        "cell {index} is at version {}, the limit: a forged or corrupt state word",
                        cell::SEQ_MAX
                    ),
                })
            }
        };
        let mut w = ValueWriter {
            writer: &self.writer,
            cells,
            taken: Some(taken),
            len: 0,
            pending: [0; 8],
            name: self.seg.name(),
        };
        let r = fill(&mut w);
        let len = w.len;
        w.flush();
        let taken = w.taken.take().expect("taken until committed");
        let version = self
            .writer
            .commit(&cells, taken, len, segment::coarse_now_ns());
        Ok((version, r))
    }
}

impl<T: Payload> Drop for BoardWriter<T> {
    fn drop(&mut self) {
        if !self.seg.is_shared() {
            self.seg.release_heap_entry(self.index);
        }
        // Shared segments: closing the lock fd releases the OFD locks.
    }
}

/// Appends a value's bytes into the copy of a cell that readers are not reading, as atomic
/// word stores (docs/design.md §12). Dropped without a commit (the fill panicked), it gives the
/// cell back unchanged.
pub struct ValueWriter<'a> {
    writer: &'a CellWriter,
    cells: Cells<'a>,
    taken: Option<Taken>,
    len: usize,
    /// The bytes of the word being assembled (`len % 8` of them are valid).
    pending: [u8; 8],
    name: &'a str,
}

impl std::fmt::Debug for ValueWriter<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ValueWriter")
            .field("len", &self.len)
            .finish()
    }
}

impl ValueWriter<'_> {
    /// Bytes a value may hold.
    pub fn capacity(&self) -> usize {
        self.cells.capacity()
    }

    /// Bytes written so far (the value's length).
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether nothing was written yet.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Appends `bytes` to the value.
    ///
    /// # Errors
    /// [`Error::ValueTooLarge`] if the value would exceed the value size; nothing is appended.
    pub fn push(&mut self, bytes: &[u8]) -> Result<()> {
        let end = self.len.saturating_add(bytes.len());
        if end > self.capacity() {
            return Err(Error::ValueTooLarge {
                name: self.name.to_owned(),
                len: end,
                size: self.capacity(),
            });
        }
        let taken = self.taken.as_ref().expect("taken until committed");
        let mut rest = bytes;
        while !rest.is_empty() {
            let off = self.len % 8;
            if off == 0 && rest.len() >= 8 {
                let whole = rest.len() / 8 * 8;
                for (k, chunk) in rest[..whole].chunks_exact(8).enumerate() {
                    let word = u64::from_ne_bytes(chunk.try_into().expect("8 bytes"));
                    self.writer
                        .write_words(&self.cells, taken, self.len / 8 + k, &[word]);
                }
                self.len += whole;
                rest = &rest[whole..];
                continue;
            }
            let n = rest.len().min(8 - off);
            self.pending[off..off + n].copy_from_slice(&rest[..n]);
            self.len += n;
            rest = &rest[n..];
            if self.len % 8 == 0 {
                let word = u64::from_ne_bytes(self.pending);
                self.writer
                    .write_words(&self.cells, taken, self.len / 8 - 1, &[word]);
            }
        }
        Ok(())
    }

    /// Stores the last, partial word (its unused bytes zero).
    fn flush(&mut self) {
        let rem = self.len % 8;
        if rem != 0 {
            self.pending[rem..].fill(0);
            let word = u64::from_ne_bytes(self.pending);
            let taken = self.taken.as_ref().expect("taken until committed");
            self.writer
                .write_words(&self.cells, taken, self.len / 8, &[word]);
        }
    }
}

impl Drop for ValueWriter<'_> {
    fn drop(&mut self) {
        if let Some(t) = self.taken.take() {
            self.writer.give_back(&self.cells, t);
        }
    }
}
