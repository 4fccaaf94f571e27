//! The board handle and its builder: create and open.

use std::marker::PhantomData;
use std::sync::Arc;

use super::reader::BoardReader;
use super::shape::{BoardShape, DEFAULT_BOARD_VALUE_SIZE, MAX_CELLS, W_BOARD};
use super::writer::BoardWriter;
use crate::error::{Error, Result};
use crate::segment::header::{
    Geometry, SegmentKind, TypeInfo, CAPACITY_LIMIT, MAX_PRODUCERS, MAX_SEGMENT_BYTES,
};
use crate::segment::kind::{self, by_name, constructors, option_setters, Blueprint, Kind, Options};
use crate::segment::payload::{Payload, Raw};
use crate::segment::{Expect, Segment, Shape};
use crate::sync::{AtomicU64, Ordering};

use super::cell::{self, Writers, KEY_MAX};

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
    pub(super) seg: Arc<Segment>,
    pub(super) shape: BoardShape,
    pub(super) _type: PhantomData<fn() -> T>,
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
    by_name!(
        BoardBuilder,
        "board",
        read_write: "able to write",
        read_only: "readers only"
    );
}

impl<T: Payload> Board<T> {
    /// Attaches a writer (one of at most 32 live at once, across processes; the only one on a
    /// board made with [`BoardBuilder::single_writer`]). It repairs a cell that the previous,
    /// dead owner of its producer entry left held.
    ///
    /// # Errors
    /// [`Error::ReadOnly`] on a read-only handle; [`Error::TooManyProducers`] when 32 writers
    /// live; [`Error::ProducerExists`] on a single-writer board whose writer lives;
    /// [`Error::TypeMismatch`] for a raw handle on a typed board or the reverse.
    pub fn writer(&self) -> Result<BoardWriter<T>> {
        kind::writable(&self.seg)?;
        kind::same_rawness::<T>(&self.seg)?;
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

    /// Whether the board was created for one writer at a time
    /// ([`BoardBuilder::single_writer`]).
    pub fn is_single_writer(&self) -> bool {
        self.shape.writers == Writers::One
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

    /// The cells a live writer holds now (took, and has not committed or given back): other
    /// writers of such a cell wait for it, up to their hold bound (docs/design.md §12). A
    /// snapshot: a writer mid-update shows for as long as the update takes, so a hold means a
    /// stall only if it persists (`shmbus info` looks twice). Reads only: a read-only handle
    /// may ask. One look at each cell's state word, and a liveness question (a system call) per
    /// busy cell.
    pub fn holds(&self) -> Vec<CellHold> {
        let cells = self.shape.view(&self.seg);
        (0..self.shape.cells)
            .filter_map(|i| {
                // ORDERING: Acquire, as every state load (pairs with the take's CAS).
                let w = crate::sync::load_acquire(cells.state(i));
                let holder = cell::holder_of(w).filter(|h| *h < MAX_PRODUCERS)?;
                (w & cell::BUSY != 0 && self.seg.producer_alive(holder)).then(|| CellHold {
                    cell: i,
                    index: holder,
                    pid: self.seg.producer_pid(holder),
                    version: cell::seq_of(w),
                })
            })
            .collect()
    }
}

/// A cell a live writer holds: one of [`Board::holds`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct CellHold {
    /// The cell.
    pub cell: usize,
    /// The holder's producer-table entry.
    pub index: usize,
    /// The holder's process id.
    pub pid: u32,
    /// The cell's version (committed updates); the holder is writing the next.
    pub version: u64,
}

/// Builds or opens a board: `BoardBuilder::new("quotes").cells(100).value_type::<Quote>()`.
pub struct BoardBuilder<T: Payload = Raw> {
    pub(super) opts: Options,
    pub(super) cells: Option<usize>,
    pub(super) value_size: Option<usize>,
    pub(super) keys: Vec<String>,
    pub(super) writers: Writers,
    pub(super) _type: PhantomData<fn() -> T>,
}

impl<T: Payload> std::fmt::Debug for BoardBuilder<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BoardBuilder")
            .field("name", &self.opts.name)
            .field("cells", &self.cells)
            .field("value_size", &self.value_size)
            .field("keys", &self.keys)
            .field("writers", &self.writers)
            .finish()
    }
}

impl BoardBuilder<Raw> {
    /// Starts a builder for board `name`, holding raw bytes.
    pub fn new(name: &str) -> Self {
        BoardBuilder {
            opts: Options::new(name),
            cells: None,
            value_size: None,
            keys: Vec::new(),
            writers: Writers::Many,
            _type: PhantomData,
        }
    }
}

impl<T: Payload> BoardBuilder<T> {
    /// Makes the board hold values of type `U` (checked when opening: another type, even of the
    /// same size, is refused). The value size defaults to `U`'s size.
    pub fn value_type<U: Payload>(self) -> BoardBuilder<U> {
        BoardBuilder {
            opts: self.opts,
            cells: self.cells,
            value_size: self.value_size,
            keys: self.keys,
            writers: self.writers,
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

    /// Makes the board take one writer at a time: a second [`Board::writer`] is refused with
    /// [`Error::ProducerExists`] while the first lives, and an update needs no CAS, only the
    /// stores of a seqlock (docs/design.md §12, "One writer"). A new writer may attach once
    /// the previous one is dropped or dead; it takes over a cell its predecessor died
    /// updating. Recorded in the board (its producer mode, "single"); opening does not ask for it.
    pub fn single_writer(mut self) -> Self {
        self.writers = Writers::One;
        self
    }

    option_setters!(typed);

    constructors!(
        Board<T>,
        "board",
        config: "[`Error::InvalidConfig`] for a cell count outside 1 to [`MAX_CELLS`] (or none given), more keys than cells, an empty, too long or repeated key, a zero or too large value size, cells too large for a segment, or a value type whose alignment exceeds 8 bytes; [`Error::ValueTooLarge`] if the value type does not fit the value size asked for.",
        open: "[`Error::BoardCorrupt`] for an inconsistent board word; [`Error::TypeMismatch`] for a typed open.",
        same: "cells, value size, keys, type and writers (one or many)"
    );
}

impl<T: Payload> Kind for BoardBuilder<T> {
    type Handle = Board<T>;
    type Own = BoardShape;

    fn options(&self) -> &Options {
        &self.opts
    }

    fn blueprint(&self) -> Result<Blueprint<BoardShape>> {
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
                name: self.opts.name.clone(),
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
            mode: BoardShape::mode(self.writers),
            ty,
            first_seq: 0,
        };
        let board = BoardShape {
            cells,
            stride_words: geometry.stride_words,
            capacity,
            keyed,
            writers: self.writers,
        };
        Ok(Blueprint::new(shape, board))
    }

    /// The keys and the board word (docs/design.md §12), before the magic publishes the board.
    fn init(&self, board: &BoardShape, words: &[AtomicU64]) {
        let cells = board.view_words(words);
        for (i, k) in self.keys.iter().enumerate() {
            cells.set_key(i, k.as_bytes());
        }
        words[W_BOARD].store(board.word(), Ordering::Relaxed);
    }

    fn expect(&self) -> Expect {
        let wanted = self.type_info();
        Expect {
            kind: SegmentKind::Board,
            ty: (!wanted.is_raw()).then_some(wanted),
        }
    }

    fn adopt(&self, seg: Segment) -> Result<Board<T>> {
        // Stored before the magic, which the open pipeline loaded with Acquire.
        let word = seg.words()[W_BOARD].load(Ordering::Relaxed);
        let shape = BoardShape::validate(&self.opts.name, word, &seg.geometry, seg.mode)?;
        Ok(Board {
            seg: Arc::new(seg),
            shape,
            _type: PhantomData,
        })
    }

    fn differs(&self, wanted: &Blueprint<BoardShape>, b: &Board<T>) -> Option<(String, String)> {
        let (w, f) = (&wanted.own, &b.shape);
        let keys_differ = self
            .keys
            .iter()
            .enumerate()
            .any(|(i, k)| b.key(i).as_deref() != Some(k.as_str()));
        let type_differs = wanted.shape.ty.is_raw() && !b.seg.ty.is_raw();
        let writers_differ = w.writers != f.writers;
        (w.cells != f.cells
            || w.capacity != f.capacity
            || keys_differ
            || type_differs
            || writers_differ)
            .then(|| {
                let describe = |s: &BoardShape, ty: &TypeInfo| {
                    format!(
                        "a board of {} cells of {} bytes{}, type {ty}, {}",
                        s.cells,
                        s.capacity,
                        if s.keyed { " with keys" } else { "" },
                        match s.writers {
                            Writers::Many => "many writers",
                            Writers::One => "one writer",
                        }
                    )
                };
                (describe(f, &b.seg.ty), describe(w, &wanted.shape.ty))
            })
    }
}
