//! The board's shape (docs/design.md §12): its limits, and the cell geometry read once at create
//! or open and never re-read from shared memory.

use crate::error::{Error, Result};
use crate::segment::header::{Geometry, ProducerMode, MAX_SLOTS, W_KIND, W_TYPE_NAME};
use crate::segment::Segment;
use crate::sync::AtomicU64;

use super::cell::{self, Cells, Writers};

/// The board word of the header (docs/design.md §12): cell count (lo32) and key block bytes per
/// cell (hi32); written before the magic.
pub(crate) const W_BOARD: usize = 15;
const _: () = assert!(W_BOARD * 8 == 120 && W_KIND < W_BOARD && W_BOARD < W_TYPE_NAME);

/// Most cells a board may have.
pub const MAX_CELLS: usize = MAX_SLOTS as usize;
/// Value size of a new raw board unless [`BoardBuilder::value_size`](super::BoardBuilder::value_size) says otherwise.
pub const DEFAULT_BOARD_VALUE_SIZE: usize = 64;

/// The board's own shape, read once at create or open and never re-read from shared memory.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct BoardShape {
    pub(super) cells: usize,
    pub(super) stride_words: usize,
    pub(super) capacity: usize,
    pub(super) keyed: bool,
    /// Many writers, or one: the header's producer mode (multi or single).
    pub(super) writers: Writers,
}

impl BoardShape {
    /// `Ok` for a cell of this board; else `CellOutOfRange`, naming board `name` (a reader's
    /// and a writer's check alike).
    #[inline]
    pub(super) fn check_index(&self, name: &str, index: usize) -> Result<()> {
        if index < self.cells {
            return Ok(());
        }
        Err(self.out_of_range(name, index))
    }

    #[cold]
    fn out_of_range(&self, name: &str, index: usize) -> Error {
        Error::CellOutOfRange {
            name: name.to_owned(),
            index,
            cells: self.cells,
        }
    }

    #[inline]
    pub(super) fn view<'a>(&self, seg: &'a Segment) -> Cells<'a> {
        self.view_words(seg.words())
    }

    /// The cells over a segment's words (a new segment's, before it is published).
    #[inline]
    pub(super) fn view_words<'a>(&self, words: &'a [AtomicU64]) -> Cells<'a> {
        Cells::new(
            words,
            self.cells,
            self.stride_words,
            self.capacity,
            self.keyed,
        )
    }

    /// The board word of the header: cell count (lo32), key block bytes per cell (hi32).
    pub(super) fn word(&self) -> u64 {
        let keys = if self.keyed {
            cell::KEY_BLOCK_BYTES as u64
        } else {
            0
        };
        self.cells as u64 | keys << 32
    }

    /// The header's producer mode for `writers`.
    pub(super) fn mode(writers: Writers) -> ProducerMode {
        match writers {
            Writers::Many => ProducerMode::Multi,
            Writers::One => ProducerMode::Single,
        }
    }

    /// Checks the board word of a segment whose common header passed the open pipeline (which
    /// checked that its producer mode is single or multi).
    pub(super) fn validate(
        name: &str,
        word: u64,
        g: &Geometry,
        mode: ProducerMode,
    ) -> Result<BoardShape> {
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
            writers: match mode {
                ProducerMode::Single => Writers::One,
                ProducerMode::Multi => Writers::Many,
            },
        })
    }
}
