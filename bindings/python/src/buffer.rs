//! Message bytes from Python: `bytes` and `bytearray` directly, any other object that exposes
//! the buffer protocol (memoryview, array.array, ctypes structures, numpy arrays) through one
//! copy. The stable ABI of Python 3.9 has no buffer API, so the copy is `memoryview(obj)`'s.

use std::borrow::Cow;

use pyo3::prelude::*;
use pyo3::types::{PyByteArray, PyBytes, PyMemoryView};

/// The bytes of `obj`: borrowed from a `bytes` object, copied from anything else that has the
/// buffer protocol; a `TypeError` for an object without it (such as `str` or `int`).
pub(crate) fn bytes_of<'a>(obj: &'a Bound<'_, PyAny>) -> PyResult<Cow<'a, [u8]>> {
    if let Ok(b) = obj.downcast::<PyBytes>() {
        return Ok(Cow::Borrowed(b.as_bytes()));
    }
    if let Ok(b) = obj.downcast::<PyByteArray>() {
        return Ok(Cow::Owned(b.to_vec()));
    }
    // memoryview() refuses what has no buffer protocol with Python's own TypeError.
    let view = PyMemoryView::from(obj)?;
    let copy = view.call_method0("tobytes")?;
    Ok(Cow::Owned(copy.downcast::<PyBytes>()?.as_bytes().to_vec()))
}
