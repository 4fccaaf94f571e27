//! The work queue: create, open, senders and receivers, with and without waiting.

use std::ffi::{c_char, c_int};
use std::os::fd::AsRawFd;
use std::time::Instant;

use shmbus::{Queue, QueueBuilder, QueueReceiver, QueueReceiverReadiness, QueueSender, SendError};

use crate::args::{
    self, apply_open_flags, duration_ns, Waiting, OPEN_FLAGS, SHMBUS_NO_STALL_BOUND,
};
use crate::received::{ShmbusEvent, ShmbusReceived};
use crate::status::{guard, Failure, ShmbusStatus};

/// A queue handle (opaque). Made by `shmbus_queue_create` or `shmbus_queue_open`, freed by
/// `shmbus_queue_free`; senders and receivers made from it outlive it. It may be used by several
/// threads at once.
pub struct ShmbusQueue {
    queue: Queue,
}

/// A queue sender (opaque): one of the 32 entries the queue's senders and receivers share. Made
/// by `shmbus_queue_sender`, freed (detached) by `shmbus_queue_sender_free`. One thread at a
/// time.
pub struct ShmbusQueueSender {
    sender: QueueSender,
}

/// A queue receiver (opaque); each item goes to exactly one receiver. Made by
/// `shmbus_queue_receiver`, freed (detached) by `shmbus_queue_receiver_free`. One thread at a
/// time.
pub struct ShmbusQueueReceiver {
    /// To attach the receiver again if its readiness registration fails.
    queue: Queue,
    state: Rx,
}

enum Rx {
    Plain(QueueReceiver),
    Ready(QueueReceiverReadiness),
    /// The registration failed, and so did attaching a receiver again.
    Lost,
}

/// A queue's shape and state, as `shmbus_queue_info` reports it (a snapshot).
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct ShmbusQueueInfo {
    /// How many items the queue holds.
    pub capacity: u64,
    /// Largest item, in bytes.
    pub item_size: usize,
    /// The item type's size: 0 for raw bytes; else every item is exactly this long.
    pub type_size: u32,
    /// Items in the queue now.
    pub len: u64,
    /// No sender attached and no item left.
    pub closed: bool,
    /// Whether this handle mapped the queue read-only.
    pub read_only: bool,
    /// How long a participant stopped mid-operation is waited for before the others pass it,
    /// in ns; 0: as long as it lives (`SHMBUS_NO_STALL_BOUND`).
    pub stall_bound_ns: u64,
}

/// Creates a queue of `capacity` items (a power of two; 0: 1024) of up to `item_size` bytes
/// (0: 240), with permission bits `mode` (0: `0600`). `flags` may hold `SHMBUS_NO_STALL_BOUND`.
/// On success `*out` is the new handle.
///
/// Errors: `NULL_ARGUMENT`, `INVALID_ARGUMENT`, `INVALID_NAME`, `INVALID_CONFIG`,
/// `ALREADY_EXISTS`, `PERMISSION_DENIED`, `NO_SPACE`, `IO`.
///
/// # Safety
/// `name` is NULL or a NUL-terminated string; `out` is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn shmbus_queue_create(
    name: *const c_char,
    capacity: u64,
    item_size: usize,
    flags: u32,
    mode: u32,
    out: *mut *mut ShmbusQueue,
) -> ShmbusStatus {
    guard(|| {
        // SAFETY: the caller's contract for `name`.
        let name = unsafe { args::str_arg(name, "name") }?;
        let out = args::out_arg(out, "out")?;
        args::check_flags(flags, SHMBUS_NO_STALL_BOUND)?;
        let mode = args::mode_arg(mode)?;
        let mut b = QueueBuilder::new(name);
        if flags & SHMBUS_NO_STALL_BOUND != 0 {
            b = b.stall_bound(None);
        }
        if capacity != 0 {
            b = b.capacity(capacity);
        }
        if item_size != 0 {
            b = b.item_size(item_size);
        }
        if let Some(mode) = mode {
            b = b.permissions(mode);
        }
        let queue = b.create()?;
        // SAFETY: checked not NULL; the caller promises it writable.
        unsafe { args::put(out, args::into_handle(ShmbusQueue { queue })) };
        Ok(())
    })
}

/// Opens an existing queue of any item type. `flags`: `SHMBUS_READ_ONLY` (look only: such a
/// handle can neither send nor receive), `SHMBUS_ACCEPT_OTHER_OWNER`,
/// `SHMBUS_ACCEPT_SHARED_WRITE`. On success `*out` is the new handle.
///
/// Errors: `NULL_ARGUMENT`, `INVALID_ARGUMENT`, and those of opening any segment (see
/// `shmbus_bus_open`), `WRONG_KIND` among them.
///
/// # Safety
/// `name` is NULL or a NUL-terminated string; `out` is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn shmbus_queue_open(
    name: *const c_char,
    flags: u32,
    out: *mut *mut ShmbusQueue,
) -> ShmbusStatus {
    guard(|| {
        // SAFETY: the caller's contract for `name`.
        let name = unsafe { args::str_arg(name, "name") }?;
        let out = args::out_arg(out, "out")?;
        args::check_flags(flags, OPEN_FLAGS)?;
        let queue = apply_open_flags!(QueueBuilder::new(name), flags).open()?;
        // SAFETY: checked not NULL; the caller promises it writable.
        unsafe { args::put(out, args::into_handle(ShmbusQueue { queue })) };
        Ok(())
    })
}

/// Frees a queue handle. NULL does nothing.
///
/// # Safety
/// `queue` is NULL or a queue handle not freed before.
#[no_mangle]
pub unsafe extern "C" fn shmbus_queue_free(queue: *mut ShmbusQueue) {
    // SAFETY: the caller's contract.
    unsafe { args::free_handle(queue) }
}

/// Fills `*out` with the queue's shape and a snapshot of its state.
///
/// Errors: `NULL_ARGUMENT`.
///
/// # Safety
/// `queue` is NULL or a live queue handle; `out` is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn shmbus_queue_info(
    queue: *const ShmbusQueue,
    out: *mut ShmbusQueueInfo,
) -> ShmbusStatus {
    guard(|| {
        // SAFETY: the caller's contract for `queue`.
        let q = &unsafe { args::handle(queue, "queue") }?.queue;
        let out = args::out_arg(out, "out")?;
        let info = ShmbusQueueInfo {
            capacity: q.capacity(),
            item_size: q.item_size(),
            type_size: q.message_type().size,
            len: q.len(),
            closed: q.is_closed(),
            read_only: q.is_read_only(),
            stall_bound_ns: q.stall_bound().map_or(0, duration_ns),
        };
        // SAFETY: checked not NULL; the caller promises it writable.
        unsafe { args::put(out, info) };
        Ok(())
    })
}

/// Attaches a sender of raw bytes (on a typed queue every item must be the type's size). On
/// success `*out` is the new sender.
///
/// Errors: `NULL_ARGUMENT`, `READ_ONLY`, `TOO_MANY_PARTICIPANTS`, `IO`.
///
/// # Safety
/// `queue` is NULL or a live queue handle; `out` is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn shmbus_queue_sender(
    queue: *const ShmbusQueue,
    out: *mut *mut ShmbusQueueSender,
) -> ShmbusStatus {
    guard(|| {
        // SAFETY: the caller's contract for `queue`.
        let q = &unsafe { args::handle(queue, "queue") }?.queue;
        let out = args::out_arg(out, "out")?;
        let sender = q.bytes_sender()?;
        // SAFETY: checked not NULL; the caller promises it writable.
        unsafe { args::put(out, args::into_handle(ShmbusQueueSender { sender })) };
        Ok(())
    })
}

/// Attaches a receiver of raw bytes. On success `*out` is the new receiver.
///
/// Errors: `NULL_ARGUMENT`, `READ_ONLY`, `TOO_MANY_PARTICIPANTS`, `IO`.
///
/// # Safety
/// `queue` is NULL or a live queue handle; `out` is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn shmbus_queue_receiver(
    queue: *const ShmbusQueue,
    out: *mut *mut ShmbusQueueReceiver,
) -> ShmbusStatus {
    guard(|| {
        // SAFETY: the caller's contract for `queue`.
        let q = &unsafe { args::handle(queue, "queue") }?.queue;
        let out = args::out_arg(out, "out")?;
        let rx = ShmbusQueueReceiver {
            queue: q.clone(),
            state: Rx::Plain(q.bytes_receiver()?),
        };
        // SAFETY: checked not NULL; the caller promises it writable.
        unsafe { args::put(out, args::into_handle(rx)) };
        Ok(())
    })
}

/// Detaches and frees a sender. NULL does nothing.
///
/// # Safety
/// `sender` is NULL or a sender handle not freed before.
#[no_mangle]
pub unsafe extern "C" fn shmbus_queue_sender_free(sender: *mut ShmbusQueueSender) {
    // SAFETY: the caller's contract.
    unsafe { args::free_handle(sender) }
}

/// Detaches and frees a receiver. NULL does nothing.
///
/// # Safety
/// `receiver` is NULL or a receiver handle not freed before.
#[no_mangle]
pub unsafe extern "C" fn shmbus_queue_receiver_free(receiver: *mut ShmbusQueueReceiver) {
    // SAFETY: the caller's contract.
    unsafe { args::free_handle(receiver) }
}

fn send_failure(e: SendError<&[u8]>) -> Failure {
    match e {
        SendError::Full(_) => Failure::fixed(
            ShmbusStatus::Full,
            c"the queue is full: the item was not sent",
        ),
        SendError::TooLarge { item, capacity } => Failure::new(
            ShmbusStatus::MessageTooLarge,
            format!("item is {} bytes, at most {capacity} fit", item.len()),
        ),
        SendError::WrongSize { item, size } => Failure::new(
            ShmbusStatus::WrongMessageSize,
            format!(
                "the queue carries a type of exactly {size} bytes, not {}",
                item.len()
            ),
        ),
        SendError::UsedAfterFork(_) => Failure::new(
            ShmbusStatus::UsedAfterFork,
            "this sender was attached by the parent of this process before fork(2); attach a sender in this process",
        ),
    }
}

/// The common body of the three sends.
///
/// # Safety
/// As the exported sends.
unsafe fn send(
    sender: *mut ShmbusQueueSender,
    data: *const u8,
    len: usize,
    wait: Waiting,
) -> ShmbusStatus {
    guard(|| {
        // SAFETY: the caller's contract for `sender`.
        let s = &mut unsafe { args::handle_mut(sender, "sender") }?.sender;
        // SAFETY: the caller's contract for `data`.
        let item = unsafe { args::bytes_arg(data, len, "data") }?;
        match wait {
            Waiting::Not => s.try_send(item),
            Waiting::Until(ns) => s.send_timeout(item, args::timeout(ns)),
            Waiting::Forever => s.send(item),
        }
        .map_err(send_failure)
    })
}

/// Sends the `len` bytes at `data` as one item if the queue has room now.
///
/// Errors: `NULL_ARGUMENT`, `FULL` (nothing sent), `MESSAGE_TOO_LARGE`, `WRONG_MESSAGE_SIZE`
/// (typed queue, another size), `USED_AFTER_FORK`.
///
/// # Safety
/// `sender` is NULL or a live sender used by no other thread now; `data` is NULL or points to
/// `len` readable bytes.
#[no_mangle]
pub unsafe extern "C" fn shmbus_queue_try_send(
    sender: *mut ShmbusQueueSender,
    data: *const u8,
    len: usize,
) -> ShmbusStatus {
    // SAFETY: the caller's contract, passed on.
    unsafe { send(sender, data, len, Waiting::Not) }
}

/// Sends one item, waiting at most `timeout_ns` nanoseconds while the queue is full.
///
/// Errors: as `shmbus_queue_try_send`; `FULL` when the queue stayed full until the timeout.
///
/// # Safety
/// As `shmbus_queue_try_send`.
#[no_mangle]
pub unsafe extern "C" fn shmbus_queue_send_timeout(
    sender: *mut ShmbusQueueSender,
    data: *const u8,
    len: usize,
    timeout_ns: u64,
) -> ShmbusStatus {
    // SAFETY: the caller's contract, passed on.
    unsafe { send(sender, data, len, Waiting::Until(timeout_ns)) }
}

/// Sends one item, waiting as long as the queue is full.
///
/// Errors: as `shmbus_queue_try_send`, but never `FULL`.
///
/// # Safety
/// As `shmbus_queue_try_send`.
#[no_mangle]
pub unsafe extern "C" fn shmbus_queue_send(
    sender: *mut ShmbusQueueSender,
    data: *const u8,
    len: usize,
) -> ShmbusStatus {
    // SAFETY: the caller's contract, passed on.
    unsafe { send(sender, data, len, Waiting::Forever) }
}

fn lost() -> Failure {
    Failure::fixed(
        ShmbusStatus::Io,
        c"this receiver was lost when its readiness registration failed and it could not attach again: free it and attach a new one",
    )
}

fn item(item: Option<&[u8]>) -> ShmbusReceived {
    item.map_or(ShmbusReceived::nothing(ShmbusEvent::Empty), |bytes| {
        ShmbusReceived::message(0, 0, bytes)
    })
}

impl ShmbusQueueReceiver {
    fn receiver(&self) -> Result<&QueueReceiver, Failure> {
        match &self.state {
            Rx::Plain(r) => Ok(r),
            Rx::Ready(r) => Ok(r.receiver()),
            Rx::Lost => Err(lost()),
        }
    }

    /// `EMPTY` becomes `CLOSED` when no sender is attached and no item is left.
    fn closed_if_so(&self, mut got: ShmbusReceived) -> Result<ShmbusReceived, Failure> {
        if got.event == ShmbusEvent::Empty && self.receiver()?.is_closed() {
            got.event = ShmbusEvent::Closed;
        }
        Ok(got)
    }

    fn try_recv(&mut self) -> Result<ShmbusReceived, Failure> {
        let got = match &mut self.state {
            Rx::Plain(r) => item(r.try_recv()),
            Rx::Ready(r) => item(r.try_recv()),
            Rx::Lost => return Err(lost()),
        };
        self.closed_if_so(got)
    }

    fn recv(&mut self, wait: Waiting) -> Result<ShmbusReceived, Failure> {
        let deadline = match wait {
            Waiting::Not => return self.try_recv(),
            Waiting::Until(ns) => Instant::now().checked_add(args::timeout(ns)),
            Waiting::Forever => None,
        };
        let got = match &mut self.state {
            Rx::Plain(r) => match deadline {
                Some(d) => item(r.recv_timeout(d.saturating_duration_since(Instant::now()))),
                None => item(r.recv()),
            },
            Rx::Ready(ready) => {
                // Through the registration, waiting in poll(2) on its descriptor.
                let fd = ready.as_raw_fd();
                let found = crate::ready::poll_until(fd, deadline, || match self.try_recv() {
                    Ok(r) if r.event == ShmbusEvent::Empty => None,
                    other => Some(other),
                })?;
                return found.unwrap_or(Ok(ShmbusReceived::nothing(ShmbusEvent::Empty)));
            }
            Rx::Lost => return Err(lost()),
        };
        self.closed_if_so(got)
    }
}

/// The common body of the three receives.
///
/// # Safety
/// As the exported receives.
unsafe fn recv(
    receiver: *mut ShmbusQueueReceiver,
    wait: Waiting,
    out: *mut ShmbusReceived,
) -> ShmbusStatus {
    guard(|| {
        // SAFETY: the caller's contract for `receiver`.
        let r = unsafe { args::handle_mut(receiver, "receiver") }?;
        let out = args::out_arg(out, "out")?;
        let got = r.recv(wait)?;
        // SAFETY: checked not NULL; the caller promises it writable.
        unsafe { args::put(out, got) };
        Ok(())
    })
}

/// Takes the next item if there is one: fills `*out` with `MESSAGE` (the item in `data`,
/// `len`; valid until the next receive on this receiver), `EMPTY`, or `CLOSED` (no sender
/// attached and no item left).
///
/// Errors: `NULL_ARGUMENT`.
///
/// # Safety
/// `receiver` is NULL or a live receiver used by no other thread now; `out` is NULL or
/// writable.
#[no_mangle]
pub unsafe extern "C" fn shmbus_queue_try_recv(
    receiver: *mut ShmbusQueueReceiver,
    out: *mut ShmbusReceived,
) -> ShmbusStatus {
    // SAFETY: the caller's contract, passed on.
    unsafe { recv(receiver, Waiting::Not, out) }
}

/// Takes the next item, waiting at most `timeout_ns` nanoseconds while the queue is empty:
/// `EMPTY` when the time ran out, `CLOSED` once no sender is attached and no item is left.
///
/// Errors: `NULL_ARGUMENT`.
///
/// # Safety
/// As `shmbus_queue_try_recv`.
#[no_mangle]
pub unsafe extern "C" fn shmbus_queue_recv_timeout(
    receiver: *mut ShmbusQueueReceiver,
    timeout_ns: u64,
    out: *mut ShmbusReceived,
) -> ShmbusStatus {
    // SAFETY: the caller's contract, passed on.
    unsafe { recv(receiver, Waiting::Until(timeout_ns), out) }
}

/// Takes the next item, waiting while the queue is empty; `CLOSED` once no sender is attached
/// and no item is left (noticed within a few milliseconds of the last sender leaving).
///
/// Errors: `NULL_ARGUMENT`.
///
/// # Safety
/// As `shmbus_queue_try_recv`.
#[no_mangle]
pub unsafe extern "C" fn shmbus_queue_recv(
    receiver: *mut ShmbusQueueReceiver,
    out: *mut ShmbusReceived,
) -> ShmbusStatus {
    // SAFETY: the caller's contract, passed on.
    unsafe { recv(receiver, Waiting::Forever, out) }
}

/// A file descriptor that an event loop can wait on: readable when a receive may find an item
/// (or the queue closing). Readiness may be spurious, never lost: after it turns readable,
/// receive with `shmbus_queue_try_recv` until it gives `EMPTY`, which re-arms it. The first call
/// registers the receiver with the queue handle's waker thread; later calls give the same
/// descriptor. The descriptor belongs to the receiver: do not close it;
/// `shmbus_queue_receiver_free` does.
///
/// Errors: `NULL_ARGUMENT`, `IO` (no eventfd, or no waker thread: the receiver is attached
/// again without a descriptor, or, if even that fails, every later receive returns `IO` and
/// the receiver is to be freed).
///
/// # Safety
/// `receiver` is NULL or a live receiver used by no other thread now; `fd` is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn shmbus_queue_receiver_fd(
    receiver: *mut ShmbusQueueReceiver,
    fd: *mut c_int,
) -> ShmbusStatus {
    guard(|| {
        // SAFETY: the caller's contract for `receiver`.
        let r = unsafe { args::handle_mut(receiver, "receiver") }?;
        let fd = args::out_arg(fd, "fd")?;
        match std::mem::replace(&mut r.state, Rx::Lost) {
            Rx::Plain(plain) => match plain.into_readiness() {
                Ok(ready) => r.state = Rx::Ready(ready),
                Err(e) => {
                    // The receiver went with the failed registration (it held no item).
                    if let Ok(again) = r.queue.bytes_receiver() {
                        r.state = Rx::Plain(again);
                    }
                    return Err(e.into());
                }
            },
            other => r.state = other,
        }
        let Rx::Ready(ready) = &r.state else {
            return Err(lost());
        };
        // SAFETY: checked not NULL; the caller promises it writable.
        unsafe { args::put(fd, ready.as_raw_fd()) };
        Ok(())
    })
}
