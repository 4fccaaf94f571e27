//! Updating a board: the writer and its in-place value writer.

use std::marker::PhantomData;
use std::sync::Arc;

use super::cell::{self, CellWriter, Cells, TakeError, Taken, Writers};
use super::shape::BoardShape;
use crate::error::{Error, Result};
use crate::segment::header::MAX_PRODUCERS;
use crate::segment::payload::{Payload, Raw};
use crate::segment::producers::SegmentLiveness;
use crate::segment::producers::{Attachment, Gate, Offer};
use crate::segment::{self, Segment};

/// Updates a board's cells. Any number of writers (32 live at once) may update any cell; each
/// update takes the cell with a CAS, so writers of one cell take turns (docs/design.md §12). On
/// a board made with [`BoardBuilder::single_writer`](super::BoardBuilder::single_writer), this
/// is the only writer, and an update is a seqlock's stores, without the CAS.
pub struct BoardWriter<T: Payload = Raw> {
    pub(super) seg: Arc<Segment>,
    pub(super) shape: BoardShape,
    pub(super) writer: CellWriter,
    pub(super) index: usize,
    /// This writer's place (byte 0 shared: a writer is attached; byte 1+index: the entry).
    pub(super) att: Attachment,
    pub(super) repaired: u64,
    pub(super) stamps: Stamps,
    pub(super) _type: PhantomData<fn() -> T>,
}

/// Whether a writer stamps its values with the time (see [`BoardWriter::unstamped`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Stamps {
    /// `CLOCK_MONOTONIC_COARSE`, read at every update.
    Coarse,
    /// 0 ("not stamped"): no clock read.
    None,
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
    pub(super) fn attach(seg: Arc<Segment>, shape: BoardShape) -> Result<Self> {
        let (att, repaired) = match shape.writers {
            Writers::Many => Self::attach_many(&seg, shape)?,
            Writers::One => Self::attach_one(&seg)?,
        };
        let index = att.index();
        Ok(BoardWriter {
            seg,
            shape,
            writer: CellWriter::new(index, shape.writers),
            index,
            att,
            repaired,
            stamps: Stamps::Coarse,
            _type: PhantomData,
        })
    }

    /// The only writer: the exclusive gate (every earlier writer is dead or gone) and entry 0.
    /// A cell a dead predecessor left busy is taken over by the first update of that cell
    /// (docs/design.md §12, "One writer").
    fn attach_one(seg: &Arc<Segment>) -> Result<(Attachment, u64)> {
        let exists = |seg: &Segment| Error::ProducerExists {
            name: seg.name().to_owned(),
            pid: seg.producer_alive(0).then(|| seg.producer_pid(0)),
        };
        Attachment::attach(seg, Gate::Exclusive, 1, exists, exists, |_, _| {
            Offer::Take(0)
        })
    }

    /// One of many writers: the shared gate and a free entry, whose dead previous owner's
    /// held cell is given back first.
    fn attach_many(seg: &Arc<Segment>, shape: BoardShape) -> Result<(Attachment, u64)> {
        let too_many = |seg: &Segment| Error::TooManyProducers {
            name: seg.name().to_owned(),
            max: MAX_PRODUCERS,
        };
        Attachment::attach(
            seg,
            Gate::Shared,
            MAX_PRODUCERS,
            too_many,
            too_many,
            |_, i| {
                // The entry's previous owner is dead (we hold its lock): give back the cell it
                // held, before our own claims overwrite its claim word (docs/design.md §12,
                // "Repair").
                Offer::Take(u64::from(cell::repair_entry(&shape.view(seg), i)))
            },
        )
    }

    /// Makes this writer leave its values unstamped ([`Value::stamp_ns`](super::Value::stamp_ns)
    /// 0), saving the clock read of every update: about half of what an update of a small
    /// value costs on a single-writer board (docs/design.md §12, "One writer").
    pub fn unstamped(mut self) -> Self {
        self.stamps = Stamps::None;
        self
    }

    /// The stamp of an update now.
    #[inline(always)]
    fn stamp(&self) -> u64 {
        match self.stamps {
            Stamps::Coarse => segment::coarse_now_ns(),
            Stamps::None => 0,
        }
    }

    /// Largest value in bytes.
    pub fn value_size(&self) -> usize {
        self.shape.capacity
    }

    /// Cells this writer repaired (given back, or on a single-writer board taken over, after
    /// their writer died mid-update).
    pub fn repaired(&self) -> u64 {
        self.repaired + self.writer.repairs()
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
    #[inline(always)]
    pub fn set_bytes(&mut self, index: usize, bytes: &[u8]) -> Result<u64> {
        if bytes.len() > self.shape.capacity {
            return Err(self.too_large(bytes.len()));
        }
        self.check(index)?;
        match self.shape.writers {
            Writers::One => {
                // The sole writer's take is a store: no liveness to consult (docs/design.md
                // §12, "One writer").
                let cells = self.shape.view(&self.seg);
                let taken = match self.writer.take_sole(&cells, index) {
                    Ok(t) => t,
                    Err(e) => return Err(take_error(&self.seg, index, e)),
                };
                taken.write_bytes(bytes);
                Ok(taken.commit(bytes.len(), self.stamp()))
            }
            Writers::Many => self.set_shared(index, bytes),
        }
    }

    /// `set_bytes` on a board of many writers.
    fn set_shared(&mut self, index: usize, bytes: &[u8]) -> Result<u64> {
        let cells = self.shape.view(&self.seg);
        let taken = take(&mut self.writer, &self.seg, &self.att, &cells, index)?;
        taken.write_bytes(bytes);
        Ok(taken.commit(bytes.len(), self.stamp()))
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
        self.check(index)?;
        let cells = self.shape.view(&self.seg);
        let taken = take(&mut self.writer, &self.seg, &self.att, &cells, index)?;
        let mut w = ValueWriter {
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
        let stamp = self.stamp();
        let version = taken.commit(len, stamp);
        Ok((version, r))
    }
}

impl<T: Payload> BoardWriter<T> {
    /// The checks before an update: not a forked child, a cell of the board.
    #[inline(always)]
    fn check(&self, index: usize) -> Result<()> {
        if self.att.forked() {
            return Err(self.forked());
        }
        self.shape.check_index(self.seg.name(), index)
    }

    #[cold]
    fn forked(&self) -> Error {
        // A forked child may not write under its parent's entry (docs/design.md §10).
        Error::UsedAfterFork {
            name: self.seg.name().to_owned(),
        }
    }

    #[cold]
    fn too_large(&self, len: usize) -> Error {
        Error::ValueTooLarge {
            name: self.seg.name().to_owned(),
            len,
            size: self.shape.capacity,
        }
    }
}

/// Takes cell `index` for `writer`, whose attachment is `att` (docs/design.md §12).
#[inline]
fn take<'a>(
    writer: &mut CellWriter,
    seg: &Segment,
    att: &Attachment,
    cells: &Cells<'a>,
    index: usize,
) -> Result<Taken<'a>> {
    let live = SegmentLiveness::producer(seg, att.lock(), att.index());
    writer
        .take(cells, &live, index)
        .map_err(|e| take_error(seg, index, e))
}

#[cold]
fn take_error(seg: &Segment, index: usize, e: TakeError) -> Error {
    match e {
        TakeError::Held { holder, held_for } => Error::CellHeld {
            name: seg.name().to_owned(),
            index,
            pid: holder
                .filter(|&h| h < MAX_PRODUCERS)
                .map(|h| seg.producer_pid(h))
                .filter(|&p| p != 0),
            held_for,
        },
        TakeError::VersionLimit => Error::BoardCorrupt {
            name: seg.name().to_owned(),
            what: format!(
                "cell {index} is at version {}, the limit: a forged or corrupt state word",
                cell::SEQ_MAX
            ),
        },
    }
}

/// Appends a value's bytes into the copy of a cell that readers are not reading, as atomic
/// word stores (docs/design.md §12). Dropped without a commit (the fill panicked), it gives the
/// cell back unchanged.
pub struct ValueWriter<'a> {
    pub(super) cells: Cells<'a>,
    pub(super) taken: Option<Taken<'a>>,
    pub(super) len: usize,
    /// The bytes of the word being assembled (`len % 8` of them are valid).
    pub(super) pending: [u8; 8],
    pub(super) name: &'a str,
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
                    taken.write_words(self.len / 8 + k, &[word]);
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
                taken.write_words(self.len / 8 - 1, &[word]);
            }
        }
        Ok(())
    }

    /// Stores the last, partial word (its unused bytes zero).
    pub(super) fn flush(&mut self) {
        let rem = self.len % 8;
        if rem != 0 {
            self.pending[rem..].fill(0);
            let word = u64::from_ne_bytes(self.pending);
            let taken = self.taken.as_ref().expect("taken until committed");
            taken.write_words(self.len / 8, &[word]);
        }
    }
}

impl Drop for ValueWriter<'_> {
    fn drop(&mut self) {
        if let Some(t) = self.taken.take() {
            t.give_back();
        }
    }
}
