//! Boards: the latest value for each of N keys (docs/design.md §12).
//!
//! A board is a segment of kind `Board`: N cells, each an independently versioned,
//! double-buffered seqlock holding one value of a fixed maximum size. Any number of writers (up
//! to 32 at once) may update any cell; a cell is taken with a CAS on its state word, so writers
//! of one cell serialise and writers of different cells never meet. Readers copy the latest
//! intact value with its version, never torn, and never wait for a writer: a writer fills the
//! copy that is not current. A writer that dies mid-update leaves the previous value current
//! and readable; the next writer of that cell repairs it through the dead writer's entry lock.

mod cell;
mod handle;
#[cfg(all(test, loom))]
mod loom;
mod reader;
mod shape;
mod writer;

pub use cell::KEY_MAX;
pub use handle::{Board, BoardBuilder, CellHold};
pub use reader::{BoardReader, Value, Versioned};
pub use shape::{DEFAULT_BOARD_VALUE_SIZE, MAX_CELLS};
pub use writer::{BoardWriter, ValueWriter};
