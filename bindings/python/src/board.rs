//! `Board`: the latest value of each of N cells, by index or by key.

use pyo3::exceptions::{PyKeyError, PyTypeError};
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict};

use crate::buffer::bytes_of;
use crate::bus::{trusting, type_dict};
use crate::errors::to_py;

/// A board handle. Reads never wait for a writer; the first `set` attaches this handle as a
/// writer (any number of writers may share a board).
#[pyclass(module = "shmbus")]
pub(crate) struct Board {
    board: shmbus::Board,
    reader: shmbus::BoardReader,
    writer: Option<shmbus::BoardWriter>,
}

impl Board {
    fn of(board: shmbus::Board) -> Self {
        Board {
            reader: board.reader(),
            board,
            writer: None,
        }
    }

    /// The cell a Python index or key names.
    fn index(&self, cell: &Bound<'_, PyAny>) -> PyResult<usize> {
        if let Ok(key) = cell.downcast::<pyo3::types::PyString>() {
            let key = key.to_cow()?;
            return self.board.index_of(&key).ok_or_else(|| {
                PyKeyError::new_err(format!("board {:?} has no key {key:?}", self.board.name()))
            });
        }
        match cell.extract::<i64>() {
            // A negative index is out of range, as the library says in its own words.
            Ok(i) => Ok(usize::try_from(i).unwrap_or(usize::MAX)),
            Err(_) => Err(PyTypeError::new_err(format!(
                "a board cell is named by an int index or a str key, not {}",
                cell.get_type().name()?
            ))),
        }
    }
}

#[pymethods]
impl Board {
    /// Creates a board of `cells` cells holding up to `value_size` bytes each; `keys` names
    /// the first cells (the cell count defaults to the number of keys). Raises AlreadyExists
    /// if the name is taken.
    #[staticmethod]
    #[pyo3(signature = (name, *, cells = None, value_size = shmbus::DEFAULT_BOARD_VALUE_SIZE, keys = None, permissions = 0o600))]
    fn create(
        name: &str,
        cells: Option<usize>,
        value_size: usize,
        keys: Option<Vec<String>>,
        permissions: u32,
    ) -> PyResult<Self> {
        let mut b = shmbus::BoardBuilder::new(name)
            .value_size(value_size)
            .permissions(permissions);
        if let Some(keys) = &keys {
            b = b.keys(keys);
        }
        if let Some(cells) = cells {
            b = b.cells(cells);
        }
        Ok(Board::of(b.create().map_err(to_py)?))
    }

    /// Opens an existing board; `read_only`: get only.
    #[staticmethod]
    #[pyo3(signature = (name, *, read_only = false, accept_other_owner = false, accept_shared_write = false))]
    fn open(
        name: &str,
        read_only: bool,
        accept_other_owner: bool,
        accept_shared_write: bool,
    ) -> PyResult<Self> {
        let b = trusting!(
            shmbus::BoardBuilder::new(name),
            read_only,
            accept_other_owner,
            accept_shared_write
        );
        Ok(Board::of(b.open().map_err(to_py)?))
    }

    /// Removes a board from /dev/shm.
    #[staticmethod]
    fn remove(name: &str) -> PyResult<()> {
        shmbus::Board::remove(name).map_err(to_py)
    }

    /// The latest value of a cell (an int index or a str key), or None if it was never set.
    fn get(&mut self, py: Python<'_>, cell: &Bound<'_, PyAny>) -> PyResult<Option<Py<PyBytes>>> {
        let index = self.index(cell)?;
        let value = self.reader.read(index).map_err(to_py)?;
        Ok(value.map(|v| PyBytes::new(py, v.bytes()).unbind()))
    }

    /// The latest value of a cell with its version (how many updates it has had): a tuple
    /// `(version, bytes)`, or None if it was never set.
    fn get_versioned(
        &mut self,
        py: Python<'_>,
        cell: &Bound<'_, PyAny>,
    ) -> PyResult<Option<(u64, Py<PyBytes>)>> {
        let index = self.index(cell)?;
        let value = self.reader.read(index).map_err(to_py)?;
        Ok(value.map(|v| (v.version(), PyBytes::new(py, v.bytes()).unbind())))
    }

    /// Sets a cell (an int index or a str key) to `value` (bytes or any buffer, up to the
    /// value size); returns the cell's new version.
    fn set(&mut self, cell: &Bound<'_, PyAny>, value: &Bound<'_, PyAny>) -> PyResult<u64> {
        let index = self.index(cell)?;
        let bytes = bytes_of(value)?;
        if self.writer.is_none() {
            self.writer = Some(self.board.writer().map_err(to_py)?);
        }
        let w = self.writer.as_mut().expect("attached just above");
        w.set_bytes(index, &bytes).map_err(to_py)
    }

    /// `board[cell]`: the value, or None if never set.
    fn __getitem__(
        &mut self,
        py: Python<'_>,
        cell: &Bound<'_, PyAny>,
    ) -> PyResult<Option<Py<PyBytes>>> {
        self.get(py, cell)
    }

    /// `board[cell] = value`.
    fn __setitem__(&mut self, cell: &Bound<'_, PyAny>, value: &Bound<'_, PyAny>) -> PyResult<()> {
        self.set(cell, value).map(|_| ())
    }

    /// Number of cells.
    fn __len__(&self) -> usize {
        self.board.cells()
    }

    /// The key of every cell (None where a cell has none), in index order.
    fn keys(&self) -> Vec<Option<String>> {
        (0..self.board.cells()).map(|i| self.board.key(i)).collect()
    }

    /// The cells a live writer has taken and not committed, now: a list of dicts of `index`
    /// (the writer's entry), `pid`, `role` ("writer"), `position` (the cell) and `state`
    /// ("writing"), as `Queue.holds()` gives them. A snapshot: a writer mid-update shows too; a
    /// stall is a hold that persists.
    fn holds<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, pyo3::types::PyList>> {
        let out = pyo3::types::PyList::empty(py);
        for h in self.board.holds() {
            let d = PyDict::new(py);
            d.set_item("index", h.index)?;
            d.set_item("pid", h.pid)?;
            d.set_item("role", "writer")?;
            d.set_item("position", h.cell)?;
            d.set_item("state", "writing")?;
            out.append(d)?;
        }
        Ok(out)
    }

    /// The board name.
    #[getter]
    fn name(&self) -> &str {
        self.board.name()
    }

    /// Largest value, in bytes.
    #[getter]
    fn value_size(&self) -> usize {
        self.board.value_size()
    }

    /// The value type the board records: a dict of `name`, `size`, `align` (size 0: bytes).
    #[getter]
    fn value_type<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        type_dict(py, self.board.value_type())
    }

    fn __repr__(&self) -> String {
        format!(
            "<shmbus.Board {:?}: {} cells of {} bytes>",
            self.board.name(),
            self.board.cells(),
            self.board.value_size()
        )
    }
}
