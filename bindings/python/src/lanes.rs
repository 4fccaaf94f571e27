//! `Lanes`, `LanePublisher`, `LaneConsumer`, `LaneClosed`: a pool of per-producer byte rings
//! read by one consumer (docs/design.md §17).
//!
//! A received record is `(lane, bytes)`: the bytes are copied out of the lane and the record is
//! acknowledged before the call returns, so no Python object ever refers to lane memory that
//! the producer may write again (see the README, "Lanes", for why there is no memoryview).

use std::os::fd::AsRawFd;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use pyo3::exceptions::{PyBufferError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict, PyList, PyTuple};
use shmbus::lanes::{LaneEvent, LaneItem, LanePush, LaneReadiness};

use crate::buffer::bytes_of;
use crate::bus::{poll_readable, trusting};
use crate::errors::to_py;
use crate::wait;

/// A lanes handle: creates or opens a lanes segment, acquires lanes, attaches the consumer.
#[pyclass(module = "shmbus", frozen)]
pub(crate) struct Lanes {
    inner: shmbus::lanes::Lanes,
}

#[pymethods]
impl Lanes {
    /// Creates a lanes segment of `lanes` lanes (1 to 4096: the most producers attached at
    /// once) of `lane_bytes` bytes each (a power of two from 4 KiB to 1 GiB and a multiple of
    /// the page size); raises AlreadyExists if the name is taken.
    #[staticmethod]
    #[pyo3(signature = (name, *, lanes = shmbus::lanes::DEFAULT_LANES, lane_bytes = shmbus::lanes::DEFAULT_LANE_BYTES, permissions = 0o600))]
    fn create(name: &str, lanes: u32, lane_bytes: u64, permissions: u32) -> PyResult<Self> {
        let l = shmbus::lanes::LanesBuilder::new(name)
            .lanes(lanes)
            .lane_bytes(lane_bytes)
            .permissions(permissions)
            .create()
            .map_err(to_py)?;
        Ok(Lanes { inner: l })
    }

    /// Opens an existing lanes segment. `read_only`: to look at its lanes (`lane_info()`);
    /// such a handle can neither acquire a lane nor consume.
    #[staticmethod]
    #[pyo3(signature = (name, *, read_only = false, accept_other_owner = false, accept_shared_write = false))]
    fn open(
        name: &str,
        read_only: bool,
        accept_other_owner: bool,
        accept_shared_write: bool,
    ) -> PyResult<Self> {
        let b = trusting!(
            shmbus::lanes::LanesBuilder::new(name),
            read_only,
            accept_other_owner,
            accept_shared_write
        );
        Ok(Lanes {
            inner: b.open().map_err(to_py)?,
        })
    }

    /// Removes a lanes segment from /dev/shm; processes that have it open keep their mapping.
    #[staticmethod]
    fn remove(name: &str) -> PyResult<()> {
        shmbus::lanes::Lanes::remove(name).map_err(to_py)
    }

    /// Acquires a free lane for a producer: raises LanesFull when every lane is held (or still
    /// being drained after its producer closed it).
    fn acquire(&self) -> PyResult<LanePublisher> {
        let p = self.inner.acquire().map_err(to_py)?;
        Ok(LanePublisher {
            lane: p.lane(),
            dropped: 0,
            inner: Some(p),
        })
    }

    /// Attaches the consumer (one at a time, in any process): raises ConsumerExists while
    /// another one lives.
    fn consumer(&self) -> PyResult<LaneConsumer> {
        Ok(LaneConsumer {
            held: None,
            name: self.inner.name().to_owned(),
            lanes: self.inner.lanes(),
            state: State::Plain(self.inner.consumer().map_err(to_py)?),
        })
    }

    /// The segment name.
    #[getter]
    fn name(&self) -> &str {
        self.inner.name()
    }

    /// Number of lanes.
    #[getter]
    fn lanes(&self) -> u32 {
        self.inner.lanes()
    }

    /// Bytes per lane.
    #[getter]
    fn lane_bytes(&self) -> u64 {
        self.inner.lane_bytes()
    }

    /// Largest record, in bytes (a record and its 8-byte header take a whole lane at most).
    #[getter]
    fn max_record(&self) -> usize {
        self.inner.max_record()
    }

    /// Whether a consumer is attached (and alive).
    #[getter]
    fn has_consumer(&self) -> bool {
        self.inner.has_consumer()
    }

    /// The pid of the attached consumer, or None.
    #[getter]
    fn consumer_pid(&self) -> Option<u32> {
        self.inner.consumer_pid()
    }

    /// Whether this handle was opened read-only.
    #[getter]
    fn read_only(&self) -> bool {
        self.inner.is_read_only()
    }

    /// Every lane's state, one dict per lane: `lane`, `in_use` (a live producer holds it),
    /// `closing` (closed or its producer died, not drained yet), `pid` (its last producer, 0:
    /// never used), `pending_bytes`, `published`, `consumed`, `dropped` (in the current or last
    /// session).
    fn lane_info<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyList>> {
        let list = PyList::empty(py);
        for l in self.inner.lane_info() {
            let d = PyDict::new(py);
            d.set_item("lane", l.lane)?;
            d.set_item("in_use", l.in_use)?;
            d.set_item("closing", l.closing)?;
            d.set_item("pid", l.pid)?;
            d.set_item("pending_bytes", l.pending_bytes)?;
            d.set_item("published", l.published)?;
            d.set_item("consumed", l.consumed)?;
            d.set_item("dropped", l.dropped)?;
            list.append(d)?;
        }
        Ok(list)
    }

    fn __repr__(&self) -> String {
        format!(
            "<shmbus.Lanes {:?}: {} lanes of {} bytes>",
            self.inner.name(),
            self.inner.lanes(),
            self.inner.lane_bytes()
        )
    }
}

/// A producer's lane; closes on close(), at the end of a `with` block, or when collected.
#[pyclass(module = "shmbus")]
pub(crate) struct LanePublisher {
    inner: Option<shmbus::lanes::LanePublisher>,
    /// The lane, and the drops counted when it closed (both readable after close()).
    lane: u32,
    dropped: u64,
}

impl LanePublisher {
    fn attached(&mut self) -> PyResult<&mut shmbus::lanes::LanePublisher> {
        self.inner
            .as_mut()
            .ok_or_else(|| PyValueError::new_err("lane publisher is closed"))
    }
}

#[pymethods]
impl LanePublisher {
    /// Publishes one record (bytes or any buffer): True if it was queued, False if the lane was
    /// full (the consumer has not taken enough of the records before it), in which case the
    /// record was dropped and counted in `dropped`. By default it does not wait; with `timeout`
    /// (seconds; None: as long as it takes) a full lane is waited on, with the GIL released,
    /// until the consumer makes room or the time is up (then dropped and counted); Ctrl-C
    /// interrupts the wait. Raises TooLarge for a record longer than `max_record`.
    #[pyo3(signature = (data, timeout = 0.0))]
    fn publish(
        &mut self,
        py: Python<'_>,
        data: &Bound<'_, PyAny>,
        timeout: Option<f64>,
    ) -> PyResult<bool> {
        let bytes = bytes_of(data)?;
        if timeout != Some(0.0) {
            let deadline = wait::deadline(timeout)?;
            let p = self.attached()?;
            // Wait in slices for room (nothing is counted while waiting), then publish: only
            // the consumer moves the read position, so the room stays. At the deadline the
            // publish below drops and counts the record, as a publish without waiting does.
            let len = bytes.len();
            wait::until(py, deadline, |slice| {
                match p.wait_for_room(len, Some(slice)) {
                    Ok(true) => Some(Ok(())),
                    Ok(false) => None,
                    Err(e) => Some(Err(e)),
                }
            })?
            .transpose()
            .map_err(to_py)?;
        }
        match self.attached()?.publish(&bytes).map_err(to_py)? {
            LanePush::Queued => Ok(true),
            LanePush::Full { dropped } => {
                self.dropped = dropped;
                Ok(false)
            }
        }
    }

    /// The lane this producer holds (or held, once closed).
    #[getter]
    fn lane(&self) -> u32 {
        self.lane
    }

    /// Records dropped because the lane was full, since the lane was acquired.
    #[getter]
    fn dropped(&self) -> u64 {
        self.inner.as_ref().map_or(self.dropped, |p| p.dropped())
    }

    /// Largest record, in bytes.
    #[getter]
    fn max_record(&mut self) -> PyResult<usize> {
        Ok(self.attached()?.max_record())
    }

    /// Bytes free in the lane as this producer last saw it (at least this many are free now).
    #[getter]
    fn free_bytes(&mut self) -> PyResult<u64> {
        Ok(self.attached()?.free_bytes())
    }

    /// Whether close() was called.
    #[getter]
    fn closed(&self) -> bool {
        self.inner.is_none()
    }

    /// Closes the lane: the consumer receives what is queued, then a `LaneClosed` event, and
    /// the lane returns to the pool. Closing twice does nothing.
    fn close(&mut self) {
        if let Some(p) = self.inner.take() {
            self.dropped = p.dropped();
            p.close();
        }
    }

    fn __enter__(slf: Py<Self>) -> Py<Self> {
        slf
    }

    #[pyo3(signature = (*_args))]
    fn __exit__(&mut self, _args: &Bound<'_, PyTuple>) {
        self.close();
    }

    fn __repr__(&self) -> String {
        let state = if self.inner.is_some() { "" } else { ", closed" };
        format!(
            "<shmbus.LanePublisher lane {}, {} dropped{state}>",
            self.lane,
            self.dropped()
        )
    }
}

/// A lane whose producer closed it (or died), reported once, after its last record: the lane
/// is back in the pool.
#[pyclass(module = "shmbus", frozen, eq, get_all)]
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) struct LaneClosed {
    /// The lane.
    lane: u32,
    /// Records its producer dropped because the lane was full, in the session that ended.
    dropped: u64,
    /// The producer died rather than closing the lane.
    producer_died: bool,
}

#[pymethods]
impl LaneClosed {
    #[new]
    #[pyo3(signature = (lane, dropped = 0, producer_died = false))]
    fn new(lane: u32, dropped: u64, producer_died: bool) -> Self {
        LaneClosed {
            lane,
            dropped,
            producer_died,
        }
    }

    /// For `match`: `case shmbus.LaneClosed(lane, dropped, died):`.
    #[classattr]
    fn __match_args__() -> (&'static str, &'static str, &'static str) {
        ("lane", "dropped", "producer_died")
    }

    fn __hash__(&self) -> u64 {
        (self.lane as u64) ^ (self.dropped << 13) ^ (self.producer_died as u64) << 12
    }

    fn __repr__(&self) -> String {
        format!(
            "LaneClosed(lane={}, dropped={}, producer_died={})",
            self.lane,
            self.dropped,
            if self.producer_died { "True" } else { "False" }
        )
    }
}

impl From<shmbus::lanes::LaneClosed> for LaneClosed {
    fn from(c: shmbus::lanes::LaneClosed) -> Self {
        LaneClosed {
            lane: c.lane,
            dropped: c.dropped,
            producer_died: c.producer_died,
        }
    }
}

/// An event copied out of the lane (while the GIL is released).
enum Owned {
    Record(u32, Vec<u8>),
    Closed(LaneClosed),
}

impl Owned {
    fn of(e: LaneEvent<'_>) -> Owned {
        match e {
            // The copy is made here; the record is acknowledged as `r` drops.
            LaneEvent::Record(r) => Owned::Record(r.lane(), r.to_vec()),
            LaneEvent::Closed(c) => Owned::Closed(c.into()),
        }
    }

    fn into_py(self, py: Python<'_>) -> PyResult<PyObject> {
        match self {
            Owned::Record(lane, bytes) => record(py, lane, &bytes),
            Owned::Closed(c) => Ok(Py::new(py, c)?.into_any()),
        }
    }
}

/// A record as Python gets it: `(lane, bytes)`.
fn record(py: Python<'_>, lane: u32, bytes: &[u8]) -> PyResult<PyObject> {
    Ok((lane, PyBytes::new(py, bytes))
        .into_pyobject(py)?
        .into_any()
        .unbind())
}

/// An event as Python gets it, copied (one copy, into the `bytes`) and acknowledged.
fn event(py: Python<'_>, e: LaneEvent<'_>) -> PyResult<PyObject> {
    match e {
        LaneEvent::Record(r) => record(py, r.lane(), &r),
        LaneEvent::Closed(c) => Ok(Py::new(py, LaneClosed::from(c))?.into_any()),
    }
}

/// A batch item as Python gets it.
fn item(py: Python<'_>, i: LaneItem<'_>) -> PyResult<PyObject> {
    match i {
        LaneItem::Record { lane, bytes } => record(py, lane, bytes),
        LaneItem::Closed(c) => Ok(Py::new(py, LaneClosed::from(c))?.into_any()),
    }
}

/// The consumer's handle: plain, registered with the segment handle's waker thread (made on
/// the first `fileno()`, kept from then on), or detached.
enum State {
    Plain(shmbus::lanes::LaneConsumer),
    Ready(LaneReadiness),
    /// Detached by close(), or given up when its descriptor could not be made.
    Detached,
}

/// The consumer of a lanes segment; detaches on close(), at the end of a `with` block, or when
/// collected (a new consumer goes on from the records this one received).
#[pyclass(module = "shmbus")]
pub(crate) struct LaneConsumer {
    /// The record `recv_view()` handed out, not yet acknowledged. Declared before `state`: it
    /// refers to the mapping that `state`'s consumer owns, so it is dropped (acknowledged)
    /// first.
    held: Option<Held>,
    name: String,
    lanes: u32,
    state: State,
}

/// A record lent to Python as a memoryview (`recv_view`).
struct Held {
    /// The record; dropping it acknowledges it. Its true lifetime is that of the consumer in
    /// the same `LaneConsumer`, which refuses to receive, move or detach while it is held.
    _record: Lent,
    /// The ctypes array the views are made over: while a view of the record exists anywhere,
    /// something besides this field refers to it. None if making the views failed (then no
    /// view exists).
    array: Option<Py<PyAny>>,
    /// Our views of it, released before the record is acknowledged.
    views: Py<PyAny>,
    /// Its `LaneView` is still open (inside its `with` block, or not yet released).
    open: Arc<AtomicBool>,
}

/// A record borrowed from the consumer, its lifetime erased (see `Held`).
struct Lent(LaneEvent<'static>);

// SAFETY: the event refers to the segment's words (atomics) and the consumer's mapping, both of
// which may be used from any thread (`LaneConsumer` itself is `Send`); it is only ever touched
// (dropped) under the GIL through the `LaneConsumer` that holds it, never from two threads.
unsafe impl Send for Lent {}

/// `e` with its borrow of the consumer extended.
///
/// # Safety
///
/// The event must be dropped before the consumer it came from, and the consumer must not
/// receive again while it lives (the protocol allows one unacknowledged record at a time).
unsafe fn lend(e: LaneEvent<'_>) -> LaneEvent<'static> {
    // SAFETY: same type but for the lifetime; the caller keeps the borrow's promises.
    unsafe { std::mem::transmute::<LaneEvent<'_>, LaneEvent<'static>>(e) }
}

fn buffer_error(text: &str) -> PyErr {
    PyBufferError::new_err(text.to_owned())
}

fn detached() -> PyErr {
    PyValueError::new_err("lane consumer is closed")
}

impl LaneConsumer {
    /// Acknowledges the record `recv_view()` lent, if there is one and no view of it is left;
    /// a `BufferError` (and the record kept) while its `LaneView` is open or a view of it
    /// lives on. Every call that receives, moves or detaches the consumer comes here first.
    fn try_ack(&mut self, py: Python<'_>) -> PyResult<()> {
        let Some(h) = &self.held else {
            return Ok(());
        };
        if h.open.load(Ordering::Relaxed) {
            return Err(buffer_error(
                "the record recv_view() returned is still open: leave its with block (or call \
                 its release()) before receiving again",
            ));
        }
        let released = py
            .import("shmbus._view")?
            .call_method1("release", (h.views.bind(py),));
        if let Err(e) = released {
            if e.is_instance_of::<PyBufferError>(py) {
                return Err(buffer_error(
                    "an object still uses the memoryview recv_view() returned (it exported \
                     its buffer): the record is acknowledged, and the consumer receives again, \
                     once that object is gone",
                ));
            }
            return Err(e);
        }
        // Our views are released: any other reference is a view derived from them (a slice, a
        // cast), or the array itself, and the bytes are still readable through it.
        if h.array.as_ref().is_some_and(|a| a.get_refcnt(py) > 1) {
            return Err(buffer_error(
                "a memoryview of the record recv_view() returned (a slice, a cast, or its .obj) \
                 outlives its with block: the record is acknowledged, and the consumer receives \
                 again, once every view of it is released or collected",
            ));
        }
        // Nothing refers to the bytes any more: acknowledge.
        self.held = None;
        Ok(())
    }

    fn consumer(&mut self) -> PyResult<&mut shmbus::lanes::LaneConsumer> {
        match &mut self.state {
            State::Plain(c) => Ok(c),
            State::Ready(r) => Ok(r.consumer_mut()),
            State::Detached => Err(detached()),
        }
    }

    /// The next event if there is one now (a ready consumer re-arms its descriptor when it
    /// finds nothing).
    fn take(&mut self, py: Python<'_>) -> PyResult<Option<PyObject>> {
        self.try_ack(py)?;
        let e = match &mut self.state {
            State::Plain(c) => c.try_recv(),
            State::Ready(r) => r.try_recv(),
            State::Detached => return Err(detached()),
        };
        match e.map_err(to_py)? {
            Some(e) => event(py, e).map(Some),
            None => Ok(None),
        }
    }

    /// An event in place, waiting until `deadline`, its borrow of the consumer erased: the
    /// caller keeps it in `held` (or drops it at once).
    fn recv_lent(
        &mut self,
        py: Python<'_>,
        deadline: Option<std::time::Instant>,
    ) -> PyResult<Option<Lent>> {
        self.try_ack(py)?;
        // Each `lend` below: the caller puts the event into `self.held` before the consumer is
        // used again, `held` is dropped before the consumer (field order, `close`, `Drop`), and
        // `try_ack` refuses every receive, move and detach while it is held.
        let now = match &mut self.state {
            State::Plain(c) => c.try_recv(),
            State::Ready(r) => r.try_recv(),
            State::Detached => return Err(detached()),
        };
        if let Some(e) = now.map_err(to_py)? {
            // SAFETY: see above.
            return Ok(Some(Lent(unsafe { lend(e) })));
        }
        let got = match &mut self.state {
            State::Plain(c) => wait::until(py, deadline, |slice| match c.recv_timeout(slice) {
                // SAFETY: see above.
                Ok(Some(e)) => Some(Ok(Lent(unsafe { lend(e) }))),
                Ok(None) => None,
                Err(e) => Some(Err(e)),
            })?,
            State::Ready(r) => wait::until(py, deadline, |slice| {
                match r.try_recv() {
                    // SAFETY: see above.
                    Ok(Some(e)) => return Some(Ok(Lent(unsafe { lend(e) }))),
                    Err(e) => return Some(Err(e)),
                    Ok(None) => {}
                }
                poll_readable(r.as_raw_fd(), slice);
                None
            })?,
            State::Detached => return Err(detached()),
        };
        got.transpose().map_err(to_py)
    }

    /// An event, waiting until `timeout` (None: as long as it takes); None when the time is up.
    fn recv_blocking(
        &mut self,
        py: Python<'_>,
        timeout: Option<f64>,
    ) -> PyResult<Option<PyObject>> {
        let deadline = wait::deadline(timeout)?;
        // An event there already: no need to release the GIL.
        if let Some(e) = self.take(py)? {
            return Ok(Some(e));
        }
        let got = match &mut self.state {
            State::Plain(c) => wait::until(py, deadline, |slice| {
                c.recv_timeout(slice).map(|e| e.map(Owned::of)).transpose()
            })?,
            State::Ready(r) => wait::until(py, deadline, |slice| {
                match r.try_recv() {
                    Ok(Some(e)) => return Some(Ok(Owned::of(e))),
                    Err(e) => return Some(Err(e)),
                    Ok(None) => {}
                }
                // The receive that found nothing armed the descriptor.
                poll_readable(r.as_raw_fd(), slice);
                None
            })?,
            State::Detached => return Err(detached()),
        };
        match got {
            Some(Ok(e)) => e.into_py(py).map(Some),
            Some(Err(e)) => Err(to_py(e)),
            None => Ok(None),
        }
    }
}

#[pymethods]
impl LaneConsumer {
    /// Receives the next event, waiting at most `timeout` seconds (None: as long as it takes)
    /// with the GIL released: `(lane, bytes)` for a record, a `LaneClosed` for a lane whose
    /// producer closed it or died, None when the time is up. Ctrl-C interrupts the wait.
    #[pyo3(signature = (timeout = None))]
    fn recv(&mut self, py: Python<'_>, timeout: Option<f64>) -> PyResult<Option<PyObject>> {
        self.recv_blocking(py, timeout)
    }

    /// Receives the next event in place, waiting at most `timeout` seconds (None: as long as
    /// it takes): a `LaneView`, to use in a `with` block, whose value is `(lane, memoryview)`
    /// for a record (read-only, the record's bytes where they lie in the lane, no copy), a
    /// `LaneClosed`, or None when the time is up. The record is acknowledged when the block
    /// ends, once the memoryview and every view derived from it are released; until then the
    /// consumer receives nothing else (a `BufferError` says why).
    #[pyo3(signature = (timeout = None))]
    fn recv_view(slf: &Bound<'_, Self>, timeout: Option<f64>) -> PyResult<LaneView> {
        let py = slf.py();
        let deadline = wait::deadline(timeout)?;
        let mut me = slf.borrow_mut();
        let open = Arc::new(AtomicBool::new(false));
        let value = match me.recv_lent(py, deadline)? {
            None => py.None(),
            Some(Lent(LaneEvent::Closed(c))) => Py::new(py, LaneClosed::from(c))?.into_any(),
            Some(Lent(LaneEvent::Record(r))) => {
                let (lane, at, len) = (r.lane(), r.as_ptr() as usize, r.len());
                // Held before anything can fail: an error below leaves it for the next call to
                // acknowledge rather than losing it.
                me.held = Some(Held {
                    _record: Lent(LaneEvent::Record(r)),
                    array: None,
                    views: PyList::empty(py).into_any().unbind(),
                    open: open.clone(),
                });
                let made = py
                    .import("shmbus._view")?
                    .call_method1("export", (at, len))?;
                let (array, views): (PyObject, Bound<'_, PyList>) = made.extract()?;
                let view = views.get_item(0)?;
                let h = me.held.as_mut().expect("held just above");
                h.array = Some(array);
                h.views = views.into_any().unbind();
                open.store(true, Ordering::Relaxed);
                (lane, view).into_pyobject(py)?.into_any().unbind()
            }
        };
        drop(me);
        Ok(LaneView {
            consumer: slf.clone().unbind(),
            value,
            open,
        })
    }

    /// Receives the next event if there is one now; None if not.
    fn try_recv(&mut self, py: Python<'_>) -> PyResult<Option<PyObject>> {
        self.take(py)
    }

    /// Receives up to `max` events at once, as a list: lanes in turn, up to 32 records of a
    /// lane per turn, each lane's records acknowledged together. With `timeout` (seconds, None:
    /// as long as it takes) it waits that long for the first event when there is none;
    /// by default it returns what is there now, which may be nothing.
    #[pyo3(signature = (max = 256, timeout = 0.0))]
    fn recv_batch<'py>(
        &mut self,
        py: Python<'py>,
        max: usize,
        timeout: Option<f64>,
    ) -> PyResult<Bound<'py, PyList>> {
        let list = PyList::empty(py);
        if max == 0 {
            return Ok(list);
        }
        self.batch_into(py, &list, max)?;
        if list.is_empty() && timeout != Some(0.0) {
            if let Some(first) = self.recv_blocking(py, timeout)? {
                list.append(first)?;
                self.batch_into(py, &list, max - 1)?;
            }
        }
        Ok(list)
    }

    /// Receives up to `max` events of lane `lane` alone (its records, and its close if it comes
    /// after them), without waiting, as a list. Raises InvalidConfig for a lane the segment does
    /// not have.
    #[pyo3(signature = (lane, max = 256))]
    fn recv_lane_batch<'py>(
        &mut self,
        py: Python<'py>,
        lane: u32,
        max: usize,
    ) -> PyResult<Bound<'py, PyList>> {
        self.try_ack(py)?;
        let list = PyList::empty(py);
        let mut failed = None;
        let r = self.consumer()?.recv_lane_batch(lane, max, |i| {
            if failed.is_none() {
                if let Err(e) = item(py, i).and_then(|o| list.append(o)) {
                    failed = Some(e);
                }
            }
        });
        if let Some(e) = failed {
            return Err(e);
        }
        r.map_err(to_py)?;
        Ok(list)
    }

    /// Looks for producers that died holding a lane now (receives do it every 10 ms or so by
    /// themselves) and closes their lanes; their records are still delivered, then a
    /// `LaneClosed` with `producer_died`. Returns the number of lanes found dead.
    fn sweep(&mut self, py: Python<'_>) -> PyResult<usize> {
        self.try_ack(py)?;
        Ok(self.consumer()?.sweep())
    }

    /// Counters: a dict of `records`, `bytes` (payload received) and `closed` (lanes seen
    /// closed).
    fn stats<'py>(&mut self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let s = self.consumer()?.stats();
        let d = PyDict::new(py);
        d.set_item("records", s.records)?;
        d.set_item("bytes", s.bytes)?;
        d.set_item("closed", s.closed)?;
        Ok(d)
    }

    /// `await consumer.recv_async()`: the next event, in an asyncio event loop (it waits on
    /// fileno() with `loop.add_reader`). Cancelling it loses nothing: a record is taken only by
    /// the receive that returns it.
    fn recv_async(slf: Bound<'_, Self>) -> PyResult<Bound<'_, PyAny>> {
        let py = slf.py();
        py.import("shmbus._aio")?.call_method1("recv_async", (slf,))
    }

    /// A file descriptor that becomes readable when a receive may find an event; for
    /// select/poll/epoll and event loops. Made on first call. Drain with `try_recv()` (or
    /// `recv(timeout=0)`) until None before waiting on it again: `recv_batch` does not re-arm
    /// it.
    fn fileno(&mut self, py: Python<'_>) -> PyResult<i32> {
        if let State::Plain(_) = self.state {
            // The consumer moves into its readiness: not while it lends a record.
            self.try_ack(py)?;
            let State::Plain(c) = std::mem::replace(&mut self.state, State::Detached) else {
                unreachable!("matched just above");
            };
            self.state = State::Ready(c.into_readiness().map_err(to_py)?);
        }
        match &self.state {
            State::Ready(r) => Ok(r.as_raw_fd()),
            _ => Err(detached()),
        }
    }

    /// Number of lanes of the segment.
    #[getter]
    fn lanes(&self) -> u32 {
        self.lanes
    }

    /// Whether close() was called.
    #[getter]
    fn closed(&self) -> bool {
        matches!(self.state, State::Detached)
    }

    /// Detaches the consumer: another one may attach, and goes on from the records this one
    /// received. Raises BufferError (and stays attached) while a view of a `recv_view()`
    /// record lives on.
    fn close(&mut self, py: Python<'_>) -> PyResult<()> {
        self.try_ack(py)?;
        self.state = State::Detached;
        Ok(())
    }

    fn __iter__(slf: PyRef<'_, Self>) -> PyRef<'_, Self> {
        slf
    }

    /// Iteration waits for each event (lanes never close as a whole, so it does not end by
    /// itself: break out of it, or interrupt it with Ctrl-C).
    fn __next__(&mut self, py: Python<'_>) -> PyResult<Option<PyObject>> {
        self.recv_blocking(py, None)
    }

    fn __enter__(slf: Py<Self>) -> Py<Self> {
        slf
    }

    #[pyo3(signature = (*_args))]
    fn __exit__(&mut self, py: Python<'_>, _args: &Bound<'_, PyTuple>) -> PyResult<()> {
        self.close(py)
    }

    fn __repr__(&self) -> String {
        let state = match self.state {
            State::Detached => ", closed",
            _ => "",
        };
        format!("<shmbus.LaneConsumer of {:?}{state}>", self.name)
    }
}

impl LaneConsumer {
    /// Appends up to `max` events received at once to `list`.
    fn batch_into(&mut self, py: Python<'_>, list: &Bound<'_, PyList>, max: usize) -> PyResult<()> {
        self.try_ack(py)?;
        let mut failed = None;
        let r = self.consumer()?.recv_batch(max, |i| {
            if failed.is_none() {
                if let Err(e) = item(py, i).and_then(|o| list.append(o)) {
                    failed = Some(e);
                }
            }
        });
        if let Some(e) = failed {
            return Err(e);
        }
        r.map_err(to_py).map(|_| ())
    }
}

impl Drop for LaneConsumer {
    fn drop(&mut self) {
        if self.held.is_none() {
            return;
        }
        let acked = Python::with_gil(|py| {
            if let Some(h) = &self.held {
                // Collected with the consumer: its view is no longer open as far as we know.
                h.open.store(false, Ordering::Relaxed);
            }
            self.try_ack(py).is_ok()
        });
        if !acked {
            // A view of the lent record lives on and reads the consumer's mapping: keep the
            // mapping (and with it the consumer, attached until the process ends) rather than
            // unmap memory Python can still read.
            std::mem::forget(self.held.take());
            std::mem::forget(std::mem::replace(&mut self.state, State::Detached));
        }
    }
}

/// What `LaneConsumer.recv_view()` returns: a context manager whose value (`with ... as v`) is
/// `(lane, memoryview)`, a `LaneClosed`, or None. The record is acknowledged at the end of the
/// block (or by `release()`), once no view of it is left.
#[pyclass(module = "shmbus")]
pub(crate) struct LaneView {
    consumer: Py<LaneConsumer>,
    value: PyObject,
    /// Shared with the consumer's `Held`: false once released (or collected).
    open: Arc<AtomicBool>,
}

#[pymethods]
impl LaneView {
    /// The event: `(lane, memoryview)`, a `LaneClosed`, or None.
    #[getter]
    fn value(&self, py: Python<'_>) -> PyObject {
        self.value.clone_ref(py)
    }

    /// Ends the loan: releases the memoryview and acknowledges the record. Raises BufferError
    /// if a view of it lives on (then the record is acknowledged once that view is gone, and
    /// the consumer receives nothing else until then).
    fn release(&self, py: Python<'_>) -> PyResult<()> {
        if !self.open.swap(false, Ordering::Relaxed) {
            return Ok(());
        }
        self.consumer.bind(py).borrow_mut().try_ack(py)
    }

    fn __enter__(&self, py: Python<'_>) -> PyObject {
        self.value.clone_ref(py)
    }

    #[pyo3(signature = (*_args))]
    fn __exit__(&self, py: Python<'_>, _args: &Bound<'_, PyTuple>) -> PyResult<()> {
        self.release(py)
    }
}

impl Drop for LaneView {
    fn drop(&mut self) {
        // Not released: the consumer acknowledges the record at its next call, if no view of
        // it is left by then.
        self.open.store(false, Ordering::Relaxed);
    }
}
