//! `Records`, `RecordPublisher`, `RecordSubscriber`: variable-size broadcast in a byte ring.

use std::os::fd::AsRawFd;

use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::PyBytes;

use crate::buffer::bytes_of;
use crate::bus::{gone, lap_policy_of, poll_readable, trusting};
use crate::errors::{closed, lapped, to_py};
use crate::wait;

/// A records segment handle: opens or creates one, attaches its publisher, makes subscribers.
#[pyclass(module = "shmbus", frozen)]
pub(crate) struct Records {
    inner: shmbus::Records,
}

#[pymethods]
impl Records {
    /// Creates a records segment whose byte ring is `bytes` long (a power of two from 4 KiB to
    /// 16 GiB; the largest record is a quarter of it, less 16 bytes); raises AlreadyExists if
    /// the name is taken. `bytes=None`: the library's default.
    #[staticmethod]
    #[pyo3(signature = (name, *, bytes = None, permissions = 0o600))]
    fn create(name: &str, bytes: Option<u64>, permissions: u32) -> PyResult<Self> {
        let mut b = shmbus::RecordsBuilder::new(name).permissions(permissions);
        if let Some(bytes) = bytes {
            b = b.bytes(bytes);
        }
        Ok(Records {
            inner: b.create().map_err(to_py)?,
        })
    }

    /// Opens an existing records segment; `read_only`: subscribers only.
    #[staticmethod]
    #[pyo3(signature = (name, *, read_only = false, accept_other_owner = false, accept_shared_write = false))]
    fn open(
        name: &str,
        read_only: bool,
        accept_other_owner: bool,
        accept_shared_write: bool,
    ) -> PyResult<Self> {
        let b = trusting!(
            shmbus::RecordsBuilder::new(name),
            read_only,
            accept_other_owner,
            accept_shared_write
        );
        Ok(Records {
            inner: b.open().map_err(to_py)?,
        })
    }

    /// Removes a records segment from /dev/shm.
    #[staticmethod]
    fn remove(name: &str) -> PyResult<()> {
        shmbus::Records::remove(name).map_err(to_py)
    }

    /// Attaches the publisher (one at a time: raises ProducerExists while another lives).
    fn publisher(&self) -> PyResult<RecordPublisher> {
        Ok(RecordPublisher {
            inner: Some(self.inner.publisher().map_err(to_py)?),
        })
    }

    /// A subscriber; `start`, `last`, `sequence` and `lap_policy` as for `Bus.subscriber`.
    #[pyo3(signature = (start = "next", *, last = None, sequence = None, lap_policy = "oldest"))]
    fn subscriber(
        &self,
        start: &str,
        last: Option<u64>,
        sequence: Option<u64>,
        lap_policy: &str,
    ) -> PyResult<RecordSubscriber> {
        let start = crate::bus::start_of(start, last, sequence)?;
        let sub = self
            .inner
            .subscribe(start)
            .lap_policy(lap_policy_of(lap_policy)?);
        Ok(RecordSubscriber {
            name: self.inner.name().to_owned(),
            state: State::Plain(sub),
        })
    }

    /// The segment name.
    #[getter]
    fn name(&self) -> &str {
        self.inner.name()
    }

    /// Size of the byte ring.
    #[getter]
    fn ring_bytes(&self) -> u64 {
        self.inner.ring_bytes()
    }

    /// Largest record, in bytes.
    #[getter]
    fn max_record(&self) -> usize {
        self.inner.max_record()
    }

    /// Records published so far.
    #[getter]
    fn published(&self) -> u64 {
        self.inner.records_published()
    }

    /// Whether the publisher is attached.
    #[getter]
    fn has_producers(&self) -> bool {
        self.inner.has_producers()
    }

    fn __repr__(&self) -> String {
        format!(
            "<shmbus.Records {:?}: {}-byte ring>",
            self.inner.name(),
            self.inner.ring_bytes()
        )
    }
}

/// The publisher of a records segment; detaches on close() or when collected.
#[pyclass(module = "shmbus")]
pub(crate) struct RecordPublisher {
    inner: Option<shmbus::RecordPublisher>,
}

#[pymethods]
impl RecordPublisher {
    /// Publishes `data` (bytes or any buffer) as a record of type `type_id` (a number the
    /// application gives meaning to); returns its sequence number.
    #[pyo3(signature = (data, type_id = 0))]
    fn publish(&mut self, data: &Bound<'_, PyAny>, type_id: u32) -> PyResult<u64> {
        let bytes = bytes_of(data)?;
        let p = self
            .inner
            .as_mut()
            .ok_or_else(|| PyValueError::new_err("publisher is closed"))?;
        p.publish_record(type_id, &bytes).map_err(to_py)
    }

    /// Detaches from the segment.
    fn close(&mut self) {
        self.inner = None;
    }

    fn __enter__(slf: Py<Self>) -> Py<Self> {
        slf
    }

    #[pyo3(signature = (*_args))]
    fn __exit__(&mut self, _args: &Bound<'_, pyo3::types::PyTuple>) {
        self.close();
    }
}

/// A received record, owned.
enum Got {
    Record(u64, u32, Vec<u8>),
    Lapped(u64),
    Closed,
}

fn owned(r: shmbus::RecordRecv<'_>) -> Option<Got> {
    match r {
        shmbus::RecordRecv::Record(r) => {
            Some(Got::Record(r.seq(), r.type_id(), r.bytes().to_vec()))
        }
        shmbus::RecordRecv::Lapped { lost } => Some(Got::Lapped(lost)),
        shmbus::RecordRecv::Closed => Some(Got::Closed),
        _ => None,
    }
}

type Record = (u64, u32, Py<PyBytes>);

/// A records subscriber's handle: plain, or registered with the segment handle's waker thread
/// (made on the first `fileno()`, kept from then on).
enum State {
    Plain(shmbus::RecordSubscriber),
    Ready(shmbus::records::RecordReadiness),
    /// Given up: `into_readiness` failed (no eventfd could be made).
    Gone,
}

/// A records subscriber: each receive returns `(seq, type_id, bytes)`, or raises `Lapped(lost)`
/// or `Closed` as a bus subscriber does.
#[pyclass(module = "shmbus")]
pub(crate) struct RecordSubscriber {
    name: String,
    state: State,
}

impl RecordSubscriber {
    fn outcome(&self, py: Python<'_>, got: Option<Got>) -> PyResult<Option<Record>> {
        match got {
            None => Ok(None),
            Some(Got::Record(seq, ty, bytes)) => {
                Ok(Some((seq, ty, PyBytes::new(py, &bytes).unbind())))
            }
            Some(Got::Lapped(lost)) => Err(lapped(lost)),
            Some(Got::Closed) => Err(closed(&format!("records segment {:?}", self.name))),
        }
    }

    fn try_recv_now(&mut self) -> PyResult<Option<Got>> {
        match &mut self.state {
            State::Plain(s) => Ok(owned(s.try_recv())),
            State::Ready(r) => Ok(owned(r.try_recv())),
            State::Gone => Err(gone()),
        }
    }

    fn stats(&self) -> shmbus::SubscriberStats {
        match &self.state {
            State::Plain(s) => s.stats(),
            State::Ready(r) => r.subscriber().stats(),
            State::Gone => shmbus::SubscriberStats::default(),
        }
    }

    fn recv_blocking(&mut self, py: Python<'_>, timeout: Option<f64>) -> PyResult<Option<Got>> {
        let deadline = wait::deadline(timeout)?;
        // Something there already: no need to release the GIL.
        if let Some(got) = self.try_recv_now()? {
            return Ok(Some(got));
        }
        match &mut self.state {
            State::Plain(s) => wait::until(py, deadline, |slice| owned(s.recv_timeout(slice))),
            State::Ready(r) => wait::until(py, deadline, |slice| {
                let got = owned(r.try_recv());
                if got.is_none() {
                    // The receive that found nothing armed the descriptor.
                    poll_readable(r.as_raw_fd(), slice);
                }
                got
            }),
            State::Gone => Err(gone()),
        }
    }
}

#[pymethods]
impl RecordSubscriber {
    /// Receives without waiting: `(seq, type_id, bytes)`, or None if nothing new.
    fn try_recv(&mut self, py: Python<'_>) -> PyResult<Option<Record>> {
        let got = self.try_recv_now()?;
        self.outcome(py, got)
    }

    /// Receives, waiting at most `timeout` seconds (None: as long as it takes) with the GIL
    /// released: `(seq, type_id, bytes)`, or None when the time is up.
    #[pyo3(signature = (timeout = None))]
    fn recv(&mut self, py: Python<'_>, timeout: Option<f64>) -> PyResult<Option<Record>> {
        let got = self.recv_blocking(py, timeout)?;
        self.outcome(py, got)
    }

    /// `await sub.recv_async()`: like recv() without a timeout, in an asyncio event loop;
    /// cancel-safe, as a bus subscriber's.
    fn recv_async(slf: Bound<'_, Self>) -> PyResult<Bound<'_, PyAny>> {
        let py = slf.py();
        py.import("shmbus._aio")?.call_method1("recv_async", (slf,))
    }

    /// A file descriptor that becomes readable when a receive may find something, as a bus
    /// subscriber's.
    fn fileno(&mut self) -> PyResult<i32> {
        if let State::Plain(_) = self.state {
            let State::Plain(s) = std::mem::replace(&mut self.state, State::Gone) else {
                unreachable!("matched just above");
            };
            self.state = State::Ready(s.into_readiness().map_err(to_py)?);
        }
        match &self.state {
            State::Ready(r) => Ok(r.as_raw_fd()),
            _ => Err(gone()),
        }
    }

    /// The next sequence number this subscriber expects.
    #[getter]
    fn next_seq(&self) -> u64 {
        match &self.state {
            State::Plain(s) => s.next_seq(),
            State::Ready(r) => r.subscriber().next_seq(),
            State::Gone => 0,
        }
    }

    /// Records received so far.
    #[getter]
    fn received(&self) -> u64 {
        self.stats().received
    }

    /// Records skipped so far.
    #[getter]
    fn lost(&self) -> u64 {
        self.stats().lost
    }

    fn __iter__(slf: PyRef<'_, Self>) -> PyRef<'_, Self> {
        slf
    }

    /// Iteration waits for each record; it raises `Lapped` like recv() and stops when the
    /// segment is closed.
    fn __next__(&mut self, py: Python<'_>) -> PyResult<Option<Record>> {
        match self.recv_blocking(py, None)? {
            Some(Got::Closed) => Ok(None),
            got => self.outcome(py, got),
        }
    }
}
