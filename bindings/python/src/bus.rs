//! `Bus`, `Publisher`, `Subscriber`: the seqlock broadcast bus.

use std::os::fd::{AsRawFd, RawFd};
use std::time::Duration;

use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict};

use crate::buffer::bytes_of;
use crate::errors::{closed, lapped, to_py};
use crate::wait;

/// A bus handle: opens or creates a bus, attaches publishers, makes subscribers.
#[pyclass(module = "shmbus", frozen)]
pub(crate) struct Bus {
    inner: shmbus::Bus,
}

/// The trust options every open takes.
macro_rules! trusting {
    ($b:expr, $read_only:expr, $other_owner:expr, $shared_write:expr) => {{
        let mut b = $b;
        if $read_only {
            b = b.read_only();
        }
        if $other_owner {
            b = b.accept_other_owner();
        }
        if $shared_write {
            b = b.accept_shared_write();
        }
        b
    }};
}
pub(crate) use trusting;

/// The message type a segment records, as a dict: `name`, `size`, `align` (size 0: raw bytes).
pub(crate) fn type_dict<'py>(
    py: Python<'py>,
    ty: &shmbus::TypeInfo,
) -> PyResult<Bound<'py, PyDict>> {
    let d = PyDict::new(py);
    d.set_item("name", &ty.name)?;
    d.set_item("size", ty.size)?;
    d.set_item("align", ty.align)?;
    Ok(d)
}

/// `Bus.create`'s and `Queue.create`'s `stall_bound`: left out (the library's default), `None`
/// (no bound), or seconds.
pub(crate) enum StallBound {
    Default,
    Forever,
    Secs(f64),
}

impl StallBound {
    /// What to give the builder's `stall_bound`: `None` to leave the default.
    pub(crate) fn bound(self) -> PyResult<Option<Option<Duration>>> {
        match self {
            StallBound::Default => Ok(None),
            StallBound::Forever => Ok(Some(None)),
            StallBound::Secs(s) => Duration::try_from_secs_f64(s)
                .map(|d| Some(Some(d)))
                .map_err(|_| {
                    PyValueError::new_err(format!(
                        "stall_bound must be a finite number of seconds >= 0 or None, not {s}"
                    ))
                }),
        }
    }
}

impl<'py> FromPyObject<'py> for StallBound {
    fn extract_bound(ob: &Bound<'py, PyAny>) -> PyResult<Self> {
        if ob.is_none() {
            Ok(StallBound::Forever)
        } else {
            Ok(StallBound::Secs(ob.extract()?))
        }
    }
}

#[pymethods]
impl Bus {
    /// Creates a bus of `slots` slots (a power of two) of `capacity` bytes each; raises
    /// AlreadyExists if the name is taken.
    ///
    /// `stall_bound` (multi producer only): seconds a subscriber waits for a message whose
    /// producer is alive but stopped mid-publish before it passes it and counts it lost; `None`
    /// waits as long as that producer lives; left out, the library's default (1 s).
    #[staticmethod]
    #[pyo3(
        signature = (name, *, slots = shmbus::DEFAULT_SLOTS, capacity = shmbus::DEFAULT_RAW_CAPACITY, multi_producer = false, stall_bound = StallBound::Default, permissions = 0o600),
        text_signature = "(name, *, slots=1024, capacity=..., multi_producer=False, stall_bound=..., permissions=0o600)"
    )]
    fn create(
        name: &str,
        slots: u64,
        capacity: usize,
        multi_producer: bool,
        stall_bound: StallBound,
        permissions: u32,
    ) -> PyResult<Self> {
        let mut b = shmbus::BusBuilder::new(name)
            .slots(slots)
            .capacity(capacity)
            .permissions(permissions);
        if multi_producer {
            b = b.multi_producer();
        }
        if let Some(bound) = stall_bound.bound()? {
            b = b.stall_bound(bound);
        }
        Ok(Bus {
            inner: b.create().map_err(to_py)?,
        })
    }

    /// Opens an existing bus (of any message type: messages are bytes here). `read_only`:
    /// subscribers only, the segment mapped without write access.
    #[staticmethod]
    #[pyo3(signature = (name, *, read_only = false, accept_other_owner = false, accept_shared_write = false))]
    fn open(
        name: &str,
        read_only: bool,
        accept_other_owner: bool,
        accept_shared_write: bool,
    ) -> PyResult<Self> {
        let b = trusting!(
            shmbus::BusBuilder::new(name),
            read_only,
            accept_other_owner,
            accept_shared_write
        );
        Ok(Bus {
            inner: b.open().map_err(to_py)?,
        })
    }

    /// Removes a bus from /dev/shm; processes that have it open keep their mapping.
    #[staticmethod]
    fn remove(name: &str) -> PyResult<()> {
        shmbus::Bus::remove(name).map_err(to_py)
    }

    /// Attaches a publisher (raises ProducerExists while another lives on a single-producer
    /// bus). On a typed bus every message must be exactly one value of the type.
    fn publisher(&self) -> PyResult<Publisher> {
        Ok(Publisher {
            inner: Some(self.inner.bytes_publisher().map_err(to_py)?),
        })
    }

    /// A subscriber. `start`: "next" (messages published from now on) or "oldest" (the
    /// oldest intact message); or give `last=N` (the last N messages) or `sequence=S`.
    /// `lap_policy`: where a lapped subscriber resumes, "oldest" or "newest".
    #[pyo3(signature = (start = "next", *, last = None, sequence = None, lap_policy = "oldest"))]
    fn subscriber(
        &self,
        start: &str,
        last: Option<u64>,
        sequence: Option<u64>,
        lap_policy: &str,
    ) -> PyResult<Subscriber> {
        let start = start_of(start, last, sequence)?;
        let sub = self
            .inner
            .subscribe(start)
            .lap_policy(lap_policy_of(lap_policy)?);
        Ok(Subscriber {
            name: self.inner.name().to_owned(),
            state: State::Plain(sub),
        })
    }

    /// The bus name.
    #[getter]
    fn name(&self) -> &str {
        self.inner.name()
    }

    /// Number of slots in the ring.
    #[getter]
    fn slots(&self) -> u64 {
        self.inner.slots()
    }

    /// Largest message, in bytes.
    #[getter]
    fn capacity(&self) -> usize {
        self.inner.capacity()
    }

    /// The message type the bus records: a dict of `name`, `size`, `align` (size 0: bytes).
    #[getter]
    fn message_type<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        type_dict(py, self.inner.message_type())
    }

    /// "single" or "multi".
    #[getter]
    fn producer_mode(&self) -> &'static str {
        match self.inner.producer_mode() {
            shmbus::ProducerMode::Single => "single",
            _ => "multi",
        }
    }

    /// Multi producer: seconds a subscriber waits for a stopped producer's message before
    /// passing it; `None` when it waits as long as that producer lives (and on a
    /// single-producer bus).
    #[getter]
    fn stall_bound(&self) -> Option<f64> {
        self.inner.stall_bound().map(|d| d.as_secs_f64())
    }

    /// Whether this handle was opened read-only.
    #[getter]
    fn read_only(&self) -> bool {
        self.inner.is_read_only()
    }

    /// Multi producer: the live producers holding a sequence they claimed and have not
    /// published, now: a list of dicts of `index`, `pid`, `role` ("producer"), `position` (the
    /// sequence) and `state` ("writing": it took the slot; "claimed": not yet). A snapshot: a
    /// producer mid-publish shows too; a stall is a hold that persists.
    fn holds<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, pyo3::types::PyList>> {
        let out = pyo3::types::PyList::empty(py);
        for h in self.inner.holds() {
            let d = PyDict::new(py);
            d.set_item("index", h.index)?;
            d.set_item("pid", h.pid)?;
            d.set_item("role", "producer")?;
            d.set_item("position", h.seq)?;
            d.set_item("state", if h.writing { "writing" } else { "claimed" })?;
            out.append(d)?;
        }
        Ok(out)
    }

    /// The next sequence number a publisher will use.
    #[getter]
    fn cursor(&self) -> u64 {
        self.inner.cursor()
    }

    /// Whether a live publisher is attached.
    #[getter]
    fn has_producers(&self) -> bool {
        self.inner.has_producers()
    }

    fn __repr__(&self) -> String {
        format!(
            "<shmbus.Bus {:?}: {} slots of {} bytes, {}>",
            self.inner.name(),
            self.inner.slots(),
            self.inner.capacity(),
            self.inner.message_type()
        )
    }
}

pub(crate) fn start_of(
    start: &str,
    last: Option<u64>,
    sequence: Option<u64>,
) -> PyResult<shmbus::Start> {
    match (start, last, sequence) {
        ("next", None, None) => Ok(shmbus::Start::Next),
        ("oldest", None, None) => Ok(shmbus::Start::Oldest),
        ("next", Some(n), None) => Ok(shmbus::Start::Last(n)),
        ("next", None, Some(s)) => Ok(shmbus::Start::Sequence(s)),
        (_, Some(_), Some(_)) => Err(PyValueError::new_err(
            "give one of last= and sequence=, not both",
        )),
        ("oldest", _, _) => Err(PyValueError::new_err(
            "last= and sequence= replace start=; leave start at \"next\"",
        )),
        (other, _, _) => Err(PyValueError::new_err(format!(
            "start must be \"next\" or \"oldest\" (or give last= or sequence=), not {other:?}"
        ))),
    }
}

pub(crate) fn lap_policy_of(p: &str) -> PyResult<shmbus::LapPolicy> {
    match p {
        "oldest" => Ok(shmbus::LapPolicy::Oldest),
        "newest" => Ok(shmbus::LapPolicy::Newest),
        other => Err(PyValueError::new_err(format!(
            "lap_policy must be \"oldest\" or \"newest\", not {other:?}"
        ))),
    }
}

/// A producer attached to a bus; detaches on close() or when collected.
#[pyclass(module = "shmbus")]
pub(crate) struct Publisher {
    inner: Option<shmbus::Publisher>,
}

impl Publisher {
    fn attached(&mut self) -> PyResult<&mut shmbus::Publisher> {
        self.inner
            .as_mut()
            .ok_or_else(|| PyValueError::new_err("publisher is closed"))
    }
}

#[pymethods]
impl Publisher {
    /// Publishes `data` (bytes or any buffer). Returns its sequence number, or None when a
    /// multi-producer bus dropped it (see `dropped`).
    fn publish(&mut self, data: &Bound<'_, PyAny>) -> PyResult<Option<u64>> {
        let bytes = bytes_of(data)?;
        self.attached()?.publish_bytes(&bytes).map_err(to_py)
    }

    /// Messages published by this publisher.
    #[getter]
    fn published(&mut self) -> PyResult<u64> {
        Ok(self.attached()?.stats().published)
    }

    /// Multi-producer buses: messages dropped (never delivered).
    #[getter]
    fn dropped(&mut self) -> PyResult<u64> {
        Ok(self.attached()?.stats().dropped)
    }

    /// Largest message, in bytes.
    #[getter]
    fn capacity(&mut self) -> PyResult<usize> {
        Ok(self.attached()?.capacity())
    }

    /// Detaches from the bus (subscribers then see it closed once they have read everything).
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

/// A subscriber's handle: plain, or registered with the bus's waker thread for an event loop
/// (made on the first `fileno()`, kept from then on).
enum State {
    Plain(shmbus::Subscriber),
    Ready(shmbus::Readiness),
    /// Given up: `into_readiness` failed (no eventfd could be made).
    Gone,
}

/// What a receive got, owned, so that it can cross from the GIL-free wait.
pub(crate) enum Got {
    Message(u64, Vec<u8>),
    Lapped(u64),
    Closed,
}

/// A bus subscriber: keeps its own position; every receive returns a message `(seq, bytes)`,
/// raises `Lapped(lost)` when it fell behind (exactly `lost` messages skipped; it stays
/// usable), or `Closed` when no publisher is attached and everything has been read.
#[pyclass(module = "shmbus")]
pub(crate) struct Subscriber {
    name: String,
    state: State,
}

/// A receive's outcome as Python sees it: `(seq, bytes)`, `None` (nothing yet), or an exception.
fn outcome(py: Python<'_>, name: &str, got: Option<Got>) -> PyResult<Option<(u64, Py<PyBytes>)>> {
    match got {
        None => Ok(None),
        Some(Got::Message(seq, bytes)) => Ok(Some((seq, PyBytes::new(py, &bytes).unbind()))),
        Some(Got::Lapped(lost)) => Err(lapped(lost)),
        Some(Got::Closed) => Err(closed(&format!("bus {name:?}"))),
    }
}

/// A receive's outcome made with the GIL held: a message goes straight into a `bytes` object
/// (one copy).
enum Taken {
    Message(u64, Py<PyBytes>),
    Lapped(u64),
    Closed,
    Empty,
}

fn taken(py: Python<'_>, r: shmbus::Recv<'_>) -> Taken {
    match r {
        shmbus::Recv::Message(m) => Taken::Message(m.seq(), PyBytes::new(py, m.bytes()).unbind()),
        shmbus::Recv::Lapped { lost } => Taken::Lapped(lost),
        shmbus::Recv::Closed => Taken::Closed,
        _ => Taken::Empty,
    }
}

/// `Taken` as Python sees it: `(seq, bytes)`, `None`, or an exception.
fn finish(name: &str, t: Taken) -> PyResult<Option<(u64, Py<PyBytes>)>> {
    match t {
        Taken::Message(seq, bytes) => Ok(Some((seq, bytes))),
        Taken::Lapped(lost) => Err(lapped(lost)),
        Taken::Closed => Err(closed(&format!("bus {name:?}"))),
        Taken::Empty => Ok(None),
    }
}

fn owned(r: shmbus::Recv<'_>) -> Option<Got> {
    match r {
        shmbus::Recv::Message(m) => Some(Got::Message(m.seq(), m.bytes().to_vec())),
        shmbus::Recv::Lapped { lost } => Some(Got::Lapped(lost)),
        shmbus::Recv::Closed => Some(Got::Closed),
        _ => None,
    }
}

/// Waits up to `limit` for `fd` to become readable (without the GIL).
pub(crate) fn poll_readable(fd: RawFd, limit: Duration) {
    let mut pfd = libc::pollfd {
        fd,
        events: libc::POLLIN,
        revents: 0,
    };
    let ms = limit.as_millis().clamp(1, i32::MAX as u128) as i32;
    // SAFETY: `pfd` is one valid pollfd for the duration of the call and `nfds` is 1. The
    // result is ignored: readiness, a timeout, EINTR or an error all lead to another receive
    // attempt, which finds out what there is.
    unsafe { libc::poll(&mut pfd, 1, ms) };
}

impl Subscriber {
    /// Receives without waiting, into Python objects.
    fn take(&mut self, py: Python<'_>) -> PyResult<Taken> {
        match &mut self.state {
            State::Plain(s) => Ok(taken(py, s.try_recv())),
            State::Ready(r) => Ok(taken(py, r.try_recv())),
            State::Gone => Err(gone()),
        }
    }

    fn counters(&self) -> shmbus::SubscriberStats {
        match &self.state {
            State::Plain(s) => s.stats(),
            State::Ready(r) => r.subscriber().stats(),
            State::Gone => shmbus::SubscriberStats::default(),
        }
    }

    fn position(&self) -> u64 {
        match &self.state {
            State::Plain(s) => s.next_seq(),
            State::Ready(r) => r.subscriber().next_seq(),
            State::Gone => 0,
        }
    }

    /// Waits (without the GIL) for what a receive gets; `None` when the time is up. Call
    /// after a `take` found nothing: no need to release the GIL when something is
    /// there already (releasing costs more than the receive).
    fn wait_recv(&mut self, py: Python<'_>, timeout: Option<f64>) -> PyResult<Option<Got>> {
        let deadline = wait::deadline(timeout)?;
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
impl Subscriber {
    /// Receives without waiting: `(seq, bytes)`, or None if nothing new. Raises `Lapped` or
    /// `Closed` (see the class).
    fn try_recv(&mut self, py: Python<'_>) -> PyResult<Option<(u64, Py<PyBytes>)>> {
        let t = self.take(py)?;
        finish(&self.name, t)
    }

    /// Receives, waiting at most `timeout` seconds (None: as long as it takes) with the GIL
    /// released: `(seq, bytes)`, or None when the time is up. Raises `Lapped` or `Closed`
    /// (see the class); Ctrl-C interrupts the wait.
    #[pyo3(signature = (timeout = None))]
    fn recv(
        &mut self,
        py: Python<'_>,
        timeout: Option<f64>,
    ) -> PyResult<Option<(u64, Py<PyBytes>)>> {
        match self.take(py)? {
            Taken::Empty => {}
            t => return finish(&self.name, t),
        }
        let got = self.wait_recv(py, timeout)?;
        outcome(py, &self.name, got)
    }

    /// `await sub.recv_async()`: like recv() without a timeout, in an asyncio event loop (it
    /// waits on fileno() with `loop.add_reader`). Cancelling it loses nothing: a message is
    /// taken only by the receive that returns it.
    fn recv_async(slf: Bound<'_, Self>) -> PyResult<Bound<'_, PyAny>> {
        let py = slf.py();
        py.import("shmbus._aio")?.call_method1("recv_async", (slf,))
    }

    /// A file descriptor that becomes readable when a receive may find something (a message,
    /// a lap, a closed bus); for select/poll/epoll and event loops. A receive that finds
    /// nothing re-arms it. Made on first call (it starts the bus handle's waker thread).
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
        self.position()
    }

    /// Messages received so far.
    #[getter]
    fn received(&self) -> u64 {
        self.counters().received
    }

    /// Sequence numbers skipped so far (laps, or messages abandoned by a dead writer).
    #[getter]
    fn lost(&self) -> u64 {
        self.counters().lost
    }

    /// Times this subscriber was lapped.
    #[getter]
    fn laps(&self) -> u64 {
        self.counters().laps
    }

    fn __iter__(slf: PyRef<'_, Self>) -> PyRef<'_, Self> {
        slf
    }

    /// Iteration waits for each message; it raises `Lapped` like recv() (iterate again to go
    /// on) and stops when the bus is closed.
    fn __next__(&mut self, py: Python<'_>) -> PyResult<Option<(u64, Py<PyBytes>)>> {
        let got = match self.take(py)? {
            Taken::Closed => return Ok(None),
            Taken::Empty => self.wait_recv(py, None)?,
            t => return finish(&self.name, t),
        };
        match got {
            Some(Got::Closed) => Ok(None),
            got => outcome(py, &self.name, got),
        }
    }

    fn __repr__(&self) -> String {
        format!(
            "<shmbus.Subscriber of bus {:?}, next {}>",
            self.name,
            self.position()
        )
    }
}

/// The error of a subscriber (or receiver) whose descriptor could not be made.
pub(crate) fn gone() -> PyErr {
    PyValueError::new_err(
        "this handle was given up when its descriptor could not be made; make another",
    )
}
