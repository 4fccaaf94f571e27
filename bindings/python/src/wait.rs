//! The one blocking loop of every Python receive and send: the library waits (without the GIL)
//! in slices of at most [`SLICE`], and between slices Python runs its signal handlers, so that
//! Ctrl-C interrupts a receive that would otherwise wait forever.

use std::time::{Duration, Instant};

use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;

/// The longest a receive waits without looking at Python's signals.
const SLICE: Duration = Duration::from_millis(50);

/// The deadline of a `timeout=` argument in seconds (`None`: no limit).
pub(crate) fn deadline(timeout: Option<f64>) -> PyResult<Option<Instant>> {
    let Some(t) = timeout else {
        return Ok(None);
    };
    if !t.is_finite() || t < 0.0 {
        return Err(PyValueError::new_err(format!(
            "timeout must be a finite number of seconds >= 0, not {t}"
        )));
    }
    // A timeout too long to represent waits without limit, as the library's own do.
    Ok(Duration::try_from_secs_f64(t)
        .ok()
        .and_then(|d| Instant::now().checked_add(d)))
}

/// Calls `attempt` (without the GIL) with the time it may wait, until it returns something or
/// `deadline` passes (then `None`); Python's signal handlers run between attempts, and their
/// exception (KeyboardInterrupt) ends the wait.
pub(crate) fn until<R: Send>(
    py: Python<'_>,
    deadline: Option<Instant>,
    mut attempt: impl FnMut(Duration) -> Option<R> + Send,
) -> PyResult<Option<R>> {
    loop {
        let slice = match deadline {
            None => SLICE,
            Some(d) => d.saturating_duration_since(Instant::now()).min(SLICE),
        };
        if let Some(r) = py.allow_threads(|| attempt(slice)) {
            return Ok(Some(r));
        }
        if deadline.is_some_and(|d| Instant::now() >= d) {
            return Ok(None);
        }
        py.check_signals()?;
    }
}
