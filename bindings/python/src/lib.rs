//! `shmbus._shmbus`: the Python extension over the shmbus library. Each kind has its own file
//! (`bus.rs`, `queue.rs`, `records.rs`, `board.rs`,
//! `lanes.rs`), `inspect.rs` gives `list()` and `info()`,
//! `errors.rs` turns library errors into the exceptions of `shmbus/_errors.py`, and `wait.rs`
//! holds the one blocking loop (GIL released, Ctrl-C answered). The package `shmbus`
//! (python/shmbus) re-exports all of it and adds asyncio and typed messages.

#![warn(clippy::undocumented_unsafe_blocks)]

use pyo3::prelude::*;

mod board;
mod buffer;
mod bus;
mod errors;
mod inspect;
mod lanes;
mod queue;
mod records;
mod wait;

#[pymodule]
fn _shmbus(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<bus::Bus>()?;
    m.add_class::<bus::Publisher>()?;
    m.add_class::<bus::Subscriber>()?;
    m.add_class::<queue::Queue>()?;
    m.add_class::<queue::Sender>()?;
    m.add_class::<queue::Receiver>()?;
    m.add_class::<records::Records>()?;
    m.add_class::<records::RecordPublisher>()?;
    m.add_class::<records::RecordSubscriber>()?;
    m.add_class::<board::Board>()?;
    m.add_class::<lanes::Lanes>()?;
    m.add_class::<lanes::LanePublisher>()?;
    m.add_class::<lanes::LaneConsumer>()?;
    m.add_class::<lanes::LaneClosed>()?;
    m.add_class::<lanes::LaneView>()?;
    m.add_function(wrap_pyfunction!(inspect::list, m)?)?;
    m.add_function(wrap_pyfunction!(inspect::info, m)?)?;
    m.add_function(wrap_pyfunction!(remove, m)?)?;
    Ok(())
}

/// Removes a segment of any kind from /dev/shm; processes that have it open keep their mapping.
#[pyfunction]
fn remove(name: &str) -> PyResult<()> {
    shmbus::inspect::remove(name).map_err(errors::to_py)
}
