//! `Queue`, `Sender`, `Receiver`: the exactly-once work queue.

use std::os::fd::AsRawFd;

use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict, PyList};

use crate::buffer::bytes_of;
use crate::bus::{poll_readable, trusting, type_dict, StallBound};
use crate::errors::{closed, send_error, to_py};
use crate::inspect::role_word;
use crate::wait;

/// A queue handle: opens or creates a queue, attaches senders and receivers.
#[pyclass(module = "shmbus", frozen)]
pub(crate) struct Queue {
    inner: shmbus::Queue,
}

#[pymethods]
impl Queue {
    /// Creates a queue of `capacity` items (a power of two) of up to `item_size` bytes; raises
    /// AlreadyExists if the name is taken.
    ///
    /// `stall_bound`: seconds a sender or receiver that is alive but stopped holding a position
    /// (between its claim and its publish or free) is waited for before the others pass it (a
    /// passed sender sends its item again, a passed receiver keeps its item); `None` waits as
    /// long as it lives; left out, the library's default (1 s). 0 is refused.
    #[staticmethod]
    #[pyo3(
        signature = (name, *, capacity = shmbus::DEFAULT_QUEUE_CAPACITY, item_size = shmbus::DEFAULT_ITEM_SIZE, stall_bound = StallBound::Default, permissions = 0o600),
        text_signature = "(name, *, capacity=1024, item_size=240, stall_bound=..., permissions=0o600)"
    )]
    fn create(
        name: &str,
        capacity: u64,
        item_size: usize,
        stall_bound: StallBound,
        permissions: u32,
    ) -> PyResult<Self> {
        let mut b = shmbus::QueueBuilder::new(name)
            .capacity(capacity)
            .item_size(item_size)
            .permissions(permissions);
        if let Some(bound) = stall_bound.bound()? {
            b = b.stall_bound(bound);
        }
        Ok(Queue {
            inner: b.create().map_err(to_py)?,
        })
    }

    /// Opens an existing queue (of any item type: items are bytes here). `read_only`: to look
    /// at its length and totals; such a handle can neither send nor receive.
    #[staticmethod]
    #[pyo3(signature = (name, *, read_only = false, accept_other_owner = false, accept_shared_write = false))]
    fn open(
        name: &str,
        read_only: bool,
        accept_other_owner: bool,
        accept_shared_write: bool,
    ) -> PyResult<Self> {
        let b = trusting!(
            shmbus::QueueBuilder::new(name),
            read_only,
            accept_other_owner,
            accept_shared_write
        );
        Ok(Queue {
            inner: b.open().map_err(to_py)?,
        })
    }

    /// Removes a queue from /dev/shm; processes that have it open keep their mapping.
    #[staticmethod]
    fn remove(name: &str) -> PyResult<()> {
        shmbus::Queue::remove(name).map_err(to_py)
    }

    /// Attaches a sender (on a typed queue every item is exactly one value of the type).
    fn sender(&self) -> PyResult<Sender> {
        Ok(Sender {
            inner: Some(self.inner.bytes_sender().map_err(to_py)?),
        })
    }

    /// Attaches a receiver: each item goes to exactly one receiver.
    fn receiver(&self) -> PyResult<Receiver> {
        Ok(Receiver {
            name: self.inner.name().to_owned(),
            state: RxState::Plain(self.inner.bytes_receiver().map_err(to_py)?),
        })
    }

    /// The queue name.
    #[getter]
    fn name(&self) -> &str {
        self.inner.name()
    }

    /// How many items the queue holds.
    #[getter]
    fn capacity(&self) -> u64 {
        self.inner.capacity()
    }

    /// Largest item, in bytes.
    #[getter]
    fn item_size(&self) -> usize {
        self.inner.item_size()
    }

    /// The item type the queue records: a dict of `name`, `size`, `align` (size 0: bytes).
    #[getter]
    fn item_type<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        type_dict(py, self.inner.message_type())
    }

    /// Whether the queue is closed: no sender attached and no item left.
    #[getter]
    fn closed(&self) -> bool {
        self.inner.is_closed()
    }

    /// Seconds a stopped sender or receiver holding a position is waited for before the others
    /// pass it; `None` when it is waited for as long as it lives.
    #[getter]
    fn stall_bound(&self) -> Option<f64> {
        self.inner.stall_bound().map(|d| d.as_secs_f64())
    }

    /// Queue-wide counts: a dict of `skipped` (positions whose sender died before publishing),
    /// `lost` (items whose receiver died holding them) and `passed` (positions passed because a
    /// live participant held them past the stall bound: nothing lost).
    fn totals<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let t = self.inner.totals();
        let d = PyDict::new(py);
        d.set_item("skipped", t.skipped)?;
        d.set_item("lost", t.lost)?;
        d.set_item("passed", t.passed)?;
        Ok(d)
    }

    /// The live senders and receivers holding a position they have not completed, now: a list
    /// of dicts of `index`, `pid`, `role` ("sender" or "receiver"), `position` and `state`
    /// ("unpublished", "unfreed", or "passed": passed after the stall bound and still holding
    /// its slot). A snapshot: one mid-send shows too; a stall is a hold that persists
    /// (`shmbus info` looks twice).
    fn holds<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyList>> {
        let out = PyList::empty(py);
        for h in self.inner.holds() {
            let d = PyDict::new(py);
            d.set_item("index", h.index)?;
            d.set_item("pid", h.pid)?;
            d.set_item("role", role_word(Some(h.role)))?;
            d.set_item("position", h.position)?;
            d.set_item(
                "state",
                match h.state {
                    shmbus::HoldState::Unpublished => "unpublished",
                    shmbus::HoldState::Unfreed => "unfreed",
                    shmbus::HoldState::Passed => "passed",
                },
            )?;
            out.append(d)?;
        }
        Ok(out)
    }

    /// Items in the queue now.
    fn __len__(&self) -> usize {
        self.inner.len() as usize
    }

    fn __repr__(&self) -> String {
        format!(
            "<shmbus.Queue {:?}: {} of {} items of {} bytes>",
            self.inner.name(),
            self.inner.len(),
            self.inner.capacity(),
            self.inner.item_size()
        )
    }
}

/// A sender attached to a queue; detaches on close() or when collected.
#[pyclass(module = "shmbus")]
pub(crate) struct Sender {
    inner: Option<shmbus::QueueSender>,
}

impl Sender {
    fn attached(&mut self) -> PyResult<&mut shmbus::QueueSender> {
        self.inner
            .as_mut()
            .ok_or_else(|| PyValueError::new_err("sender is closed"))
    }
}

#[pymethods]
impl Sender {
    /// Sends `item` (bytes or any buffer), waiting at most `timeout` seconds (None: as long as
    /// it takes) while the queue is full, with the GIL released. Raises `Full` when the time is
    /// up, `TooLarge` for an item longer than the item size; Ctrl-C interrupts the wait.
    #[pyo3(signature = (item, timeout = None))]
    fn send(
        &mut self,
        py: Python<'_>,
        item: &Bound<'_, PyAny>,
        timeout: Option<f64>,
    ) -> PyResult<()> {
        let bytes = bytes_of(item)?;
        let deadline = wait::deadline(timeout)?;
        let tx = self.attached()?;
        let sent = wait::until(py, deadline, |slice| match tx.send_timeout(&bytes, slice) {
            Ok(()) => Some(Ok(())),
            Err(e) if e.is_full() => None,
            Err(e) => Some(Err(e.map_item())),
        })?;
        match sent {
            Some(Ok(())) => Ok(()),
            Some(Err(e)) => Err(send_error(e)),
            None => Err(send_error(shmbus::SendError::Full(()))),
        }
    }

    /// Sends `item` if the queue has room now; raises `Full` if not.
    fn try_send(&mut self, item: &Bound<'_, PyAny>) -> PyResult<()> {
        let bytes = bytes_of(item)?;
        self.attached()?.try_send(&bytes).map_err(send_error)
    }

    /// Counters: a dict of `sent`, `full` (attempts that found the queue full), `lost` (items
    /// of dead receivers this sender freed), `stalls_passed` (slots of stopped receivers it
    /// routed around) and `resent` (items it sent again after receivers passed it).
    fn stats<'py>(&mut self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let s = self.attached()?.stats();
        let d = PyDict::new(py);
        d.set_item("sent", s.sent)?;
        d.set_item("full", s.full)?;
        d.set_item("lost", s.lost)?;
        d.set_item("stalls_passed", s.stalls_passed)?;
        d.set_item("resent", s.resent)?;
        Ok(d)
    }

    /// Detaches from the queue (receivers see it closed once no sender is left and it is
    /// empty).
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

/// A send error without its item, which stays with the caller.
trait MapItem {
    fn map_item(self) -> shmbus::SendError<()>;
}

impl<T> MapItem for shmbus::SendError<T> {
    fn map_item(self) -> shmbus::SendError<()> {
        match self {
            shmbus::SendError::Full(_) => shmbus::SendError::Full(()),
            shmbus::SendError::TooLarge { capacity, .. } => {
                shmbus::SendError::TooLarge { item: (), capacity }
            }
            shmbus::SendError::WrongSize { size, .. } => {
                shmbus::SendError::WrongSize { item: (), size }
            }
            shmbus::SendError::UsedAfterFork(_) => shmbus::SendError::UsedAfterFork(()),
        }
    }
}

/// A receiver's handle: plain, registered with the queue handle's waker thread (made on the
/// first `fileno()`, kept from then on), or detached.
enum RxState {
    Plain(shmbus::QueueReceiver),
    Ready(shmbus::QueueReceiverReadiness),
    /// Detached by close(), or given up when its descriptor could not be made.
    Detached,
}

/// A receiver attached to a queue; detaches on close() or when collected.
#[pyclass(module = "shmbus")]
pub(crate) struct Receiver {
    name: String,
    state: RxState,
}

impl Receiver {
    /// The next item if there is one now (without waiting).
    fn try_recv_now(&mut self) -> PyResult<Option<Vec<u8>>> {
        match &mut self.state {
            RxState::Plain(rx) => Ok(rx.try_recv().map(<[u8]>::to_vec)),
            RxState::Ready(rx) => Ok(rx.try_recv().map(<[u8]>::to_vec)),
            RxState::Detached => Err(detached()),
        }
    }

    fn is_closed(&self) -> bool {
        match &self.state {
            RxState::Plain(rx) => rx.is_closed(),
            RxState::Ready(rx) => rx.receiver().is_closed(),
            RxState::Detached => false,
        }
    }

    /// An item, `Some(None)` once the queue is closed, `None` when the time is up.
    fn recv_blocking(
        &mut self,
        py: Python<'_>,
        timeout: Option<f64>,
    ) -> PyResult<Option<Option<Py<PyBytes>>>> {
        let deadline = wait::deadline(timeout)?;
        // An item there already: no need to release the GIL.
        if let Some(item) = self.try_recv_now()? {
            return Ok(Some(Some(PyBytes::new(py, &item).unbind())));
        }
        let got = match &mut self.state {
            RxState::Plain(rx) => wait::until(py, deadline, |slice| {
                match rx.recv_timeout(slice).map(<[u8]>::to_vec) {
                    Some(item) => Some(Some(item)),
                    None if rx.is_closed() => Some(None),
                    None => None,
                }
            })?,
            RxState::Ready(rx) => wait::until(py, deadline, |slice| {
                if let Some(item) = rx.try_recv().map(<[u8]>::to_vec) {
                    return Some(Some(item));
                }
                if rx.receiver().is_closed() {
                    return Some(None);
                }
                // The receive that found nothing armed the descriptor.
                poll_readable(rx.as_raw_fd(), slice);
                None
            })?,
            RxState::Detached => return Err(detached()),
        };
        Ok(got.map(|item| item.map(|item| PyBytes::new(py, &item).unbind())))
    }
}

fn detached() -> PyErr {
    PyValueError::new_err("receiver is closed")
}

#[pymethods]
impl Receiver {
    /// Receives the next item, waiting at most `timeout` seconds (None: as long as it takes)
    /// with the GIL released: the item's bytes, or None when the time is up. Raises `Closed`
    /// once no sender is attached and the queue is empty; Ctrl-C interrupts the wait.
    #[pyo3(signature = (timeout = None))]
    fn recv(&mut self, py: Python<'_>, timeout: Option<f64>) -> PyResult<Option<Py<PyBytes>>> {
        match self.recv_blocking(py, timeout)? {
            Some(Some(item)) => Ok(Some(item)),
            Some(None) => Err(closed(&format!("queue {:?}", self.name))),
            None => Ok(None),
        }
    }

    /// Counters: a dict of `received`, `skipped` (positions of dead senders passed over),
    /// `malformed`, `lost` (items of a dead receiver freed on attaching) and `stalls_passed`
    /// (positions of stopped senders this receiver passed; they send again).
    fn stats<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let s = match &self.state {
            RxState::Plain(rx) => rx.stats(),
            RxState::Ready(rx) => rx.receiver().stats(),
            RxState::Detached => return Err(detached()),
        };
        let d = PyDict::new(py);
        d.set_item("received", s.received)?;
        d.set_item("skipped", s.skipped)?;
        d.set_item("malformed", s.malformed)?;
        d.set_item("lost", s.lost)?;
        d.set_item("stalls_passed", s.stalls_passed)?;
        Ok(d)
    }

    /// Receives the next item if there is one now; None if the queue is empty.
    fn try_recv(&mut self, py: Python<'_>) -> PyResult<Option<Py<PyBytes>>> {
        Ok(self
            .try_recv_now()?
            .map(|item| PyBytes::new(py, &item).unbind()))
    }

    /// `await rx.recv_async()`: the next item, in an asyncio event loop (it waits on
    /// fileno() with `loop.add_reader`); raises `Closed` once the queue is closed. Cancelling
    /// it loses nothing: an item is taken only by the receive that returns it.
    fn recv_async(slf: Bound<'_, Self>) -> PyResult<Bound<'_, PyAny>> {
        let py = slf.py();
        py.import("shmbus._aio")?.call_method1("recv_async", (slf,))
    }

    /// The step `recv_async` repeats: an item, None (nothing yet), or `Closed`.
    fn _poll_async(&mut self, py: Python<'_>) -> PyResult<Option<Py<PyBytes>>> {
        match self.try_recv_now()? {
            Some(item) => Ok(Some(PyBytes::new(py, &item).unbind())),
            None if self.is_closed() => Err(closed(&format!("queue {:?}", self.name))),
            None => Ok(None),
        }
    }

    /// A file descriptor that becomes readable when a receive may find an item (or the queue
    /// closes); for select/poll/epoll and event loops. Made on first call.
    fn fileno(&mut self) -> PyResult<i32> {
        if let RxState::Plain(_) = self.state {
            let RxState::Plain(rx) = std::mem::replace(&mut self.state, RxState::Detached) else {
                unreachable!("matched just above");
            };
            self.state = RxState::Ready(rx.into_readiness().map_err(to_py)?);
        }
        match &self.state {
            RxState::Ready(rx) => Ok(rx.as_raw_fd()),
            _ => Err(detached()),
        }
    }

    /// Detaches from the queue.
    fn close(&mut self) {
        self.state = RxState::Detached;
    }

    fn __iter__(slf: PyRef<'_, Self>) -> PyRef<'_, Self> {
        slf
    }

    /// Iteration waits for each item and stops when the queue is closed.
    fn __next__(&mut self, py: Python<'_>) -> PyResult<Option<Py<PyBytes>>> {
        Ok(self.recv_blocking(py, None)?.flatten())
    }

    fn __enter__(slf: Py<Self>) -> Py<Self> {
        slf
    }

    #[pyo3(signature = (*_args))]
    fn __exit__(&mut self, _args: &Bound<'_, pyo3::types::PyTuple>) {
        self.close();
    }
}
