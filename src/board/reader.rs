//! Reading a board: values, the reader.

use std::marker::PhantomData;
use std::sync::Arc;
use std::time::Duration;

use super::shape::BoardShape;
use crate::error::{Error, Result};
use crate::segment::payload::{Payload, Raw};
use crate::segment::{self, Segment};

use super::cell::{self, ReadOutcome, READ_ATTEMPTS};

/// A value read from a cell, borrowed from the reader's buffer until its next read.
pub struct Value<'a, T: Payload = Raw> {
    pub(super) version: u64,
    pub(super) stamp: u64,
    pub(super) bytes: &'a [u8],
    pub(super) _type: PhantomData<fn() -> T>,
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
    pub(super) seg: Arc<Segment>,
    pub(super) shape: BoardShape,
    pub(super) buf: Vec<u64>,
    pub(super) _type: PhantomData<fn() -> T>,
}

impl<T: Payload> std::fmt::Debug for BoardReader<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BoardReader")
            .field("board", &self.seg.name())
            .finish()
    }
}

impl<T: Payload> BoardReader<T> {
    #[inline]
    pub(super) fn check_index(&self, index: usize) -> Result<()> {
        self.shape.check_index(self.seg.name(), index)
    }

    /// The error for a read that found no value to deliver (busy, corrupt).
    #[cold]
    fn read_error(&self, index: usize, outcome: ReadOutcome) -> Error {
        match outcome {
            ReadOutcome::Corrupt { len } => Error::BoardCorrupt {
                name: self.seg.name().to_owned(),
                what: format!(
                    "cell {index} holds a value of {len} bytes, more than {}",
                    self.shape.capacity
                ),
            },
            _ => Error::CellBusy {
                name: self.seg.name().to_owned(),
                index,
                attempts: READ_ATTEMPTS,
            },
        }
    }

    /// The latest intact value of cell `index` with its version, or `None` if it was never set.
    /// Never torn; never waits for a writer. Copies again when an update lands during the copy,
    /// at most 64 times.
    ///
    /// # Errors
    /// [`Error::CellOutOfRange`]; [`Error::CellBusy`] if updates landed during every copy;
    /// [`Error::BoardCorrupt`] for a length beyond the value size (a damaged segment).
    #[inline(always)]
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
            other => Err(self.read_error(index, other)),
        }
    }

    /// The latest value of cell `index` as an owned `T` (`Vec<u8>` for raw boards), with its
    /// version; `None` if never set.
    ///
    /// # Errors
    /// As [`read`](Self::read), and [`Error::ValueTypeMismatch`] if the value is not `T`'s size.
    #[inline]
    pub fn get(&mut self, index: usize) -> Result<Option<Versioned<T::Owned>>> {
        let Some(v) = self.read(index)? else {
            return Ok(None);
        };
        let Some(view) = v.get() else {
            let len = v.bytes.len();
            return Err(self.type_mismatch(index, len));
        };
        Ok(Some(Versioned {
            version: v.version,
            stamp_ns: v.stamp,
            value: T::to_owned(view),
        }))
    }

    #[cold]
    fn type_mismatch(&self, index: usize, len: usize) -> Error {
        let ty = T::type_info(T::default_name());
        Error::ValueTypeMismatch {
            name: self.seg.name().to_owned(),
            index,
            len,
            ty: ty.name,
            size: ty.size as usize,
        }
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
