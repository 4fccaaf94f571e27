//! Library errors as Python exceptions. The classes live in `shmbus/_errors.py` (so that they
//! can also derive from `FileNotFoundError`, `ValueError`, ...); the text is the library's own.

use pyo3::prelude::*;
use pyo3::sync::GILOnceCell;
use pyo3::types::PyType;
use shmbus::Error;

static MODULE: GILOnceCell<Py<PyModule>> = GILOnceCell::new();

/// The exception class `name` of `shmbus._errors`.
pub(crate) fn class<'py>(py: Python<'py>, name: &str) -> PyResult<Bound<'py, PyType>> {
    let module = MODULE.get_or_try_init(py, || py.import("shmbus._errors").map(|m| m.unbind()))?;
    Ok(module.bind(py).getattr(name)?.downcast_into::<PyType>()?)
}

/// An exception of class `name` with message `text`.
pub(crate) fn raise(name: &str, text: String) -> PyErr {
    Python::with_gil(|py| match class(py, name) {
        Ok(cls) => PyErr::from_type(cls, text),
        Err(e) => e,
    })
}

/// The exception class a library error maps to.
pub(crate) fn class_name(e: &Error) -> &'static str {
    match e {
        Error::LanesCorrupt { .. } => return "LanesCorrupt",
        Error::LanesFull { .. } => return "LanesFull",
        Error::ConsumerExists { .. } => return "ConsumerExists",
        _ if e.is_corrupt() => return "Corrupt",
        _ => {}
    }
    match e {
        Error::InvalidName { .. } => "InvalidName",
        Error::NotFound { .. } => "NotFound",
        Error::AlreadyExists { .. } => "AlreadyExists",
        Error::PermissionDenied { .. } => "PermissionDenied",
        Error::WrongKind { .. } => "WrongKind",
        Error::TypeMismatch { .. } => "TypeMismatch",
        Error::MessageTooLarge { .. }
        | Error::ValueTooLarge { .. }
        | Error::WrongMessageSize { .. }
        | Error::ValueTypeMismatch { .. } => "TooLarge",
        Error::ProducerExists { .. }
        | Error::TooManyProducers { .. }
        | Error::TooManyParticipants { .. } => "ProducerExists",
        Error::CellHeld { .. } | Error::CellBusy { .. } => "Busy",
        Error::ReadOnly { .. } => "ReadOnly",
        Error::CellOutOfRange { .. } => "OutOfRange",
        Error::InvalidConfig(_) | Error::GeometryMismatch { .. } => "InvalidConfig",
        Error::NoSpace { .. } => "NoSpace",
        Error::UsedAfterFork { .. } => "UsedAfterFork",
        Error::NotRegularFile { .. }
        | Error::ForeignOwner { .. }
        | Error::InsecureMode { .. }
        | Error::Truncated { .. }
        | Error::TooLarge { .. }
        | Error::BadMagic { .. }
        | Error::NotInitialised { .. }
        | Error::AbiMismatch { .. }
        | Error::LayoutRevision { .. } => "Refused",
        _ => "ShmbusError",
    }
}

/// A library error as its Python exception, with the library's text.
pub(crate) fn to_py(e: Error) -> PyErr {
    raise(class_name(&e), e.to_string())
}

/// A queue send's refusal as its Python exception, with the library's text.
pub(crate) fn send_error<T>(e: shmbus::SendError<T>) -> PyErr {
    let name = match &e {
        shmbus::SendError::Full(_) => "Full",
        shmbus::SendError::TooLarge { .. } | shmbus::SendError::WrongSize { .. } => "TooLarge",
        shmbus::SendError::UsedAfterFork(_) => "UsedAfterFork",
    };
    raise(name, e.to_string())
}

/// `Lapped(lost)`: the subscriber skipped exactly `lost` sequence numbers.
pub(crate) fn lapped(lost: u64) -> PyErr {
    Python::with_gil(|py| match class(py, "Lapped") {
        Ok(cls) => PyErr::from_type(cls, (lost,)),
        Err(e) => e,
    })
}

/// `Closed`: no producer is attached and nothing is left to receive.
pub(crate) fn closed(what: &str) -> PyErr {
    raise(
        "Closed",
        format!("{what}: no producer is attached and every message has been received"),
    )
}
