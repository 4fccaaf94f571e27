//! Lanes: create, open, a producer's lane (acquire, publish, close), and the consumer, whose
//! records C reads in place, in the lane, until it acknowledges them.
//!
//! The library's `LaneRecord` borrows its consumer, and its drop is the acknowledgement. The
//! consumer handle keeps the record C is reading across calls: the consumer lives in a heap
//! allocation of its own that the handle owns through a raw pointer (so it never moves and no
//! `Box` or `&mut` claims it while the record lives), and the record, its lifetime erased, sits
//! beside it. Every call on the handle drops the record before it touches the consumer again,
//! and the handle's drop drops the record before the consumer. That is the whole contract the
//! borrow would otherwise enforce: the consumer outlives the record and is not used while it
//! lives.

use std::ffi::{c_char, c_int};
use std::os::fd::AsRawFd;
use std::ptr::NonNull;
use std::time::Instant;

use shmbus::lanes::{
    LaneConsumer, LaneEvent, LanePublisher, LanePush, LaneReadiness, LaneRecord, Lanes,
    LanesBuilder,
};

use crate::args::{self, apply_open_flags, Waiting, OPEN_FLAGS};
use crate::status::{guard, Failure, ShmbusStatus};

/// A lanes handle (opaque): a pool of single-producer byte rings ("lanes") that producers in any
/// process each acquire for themselves, read in place by one consumer. Made by
/// `shmbus_lanes_create` or `shmbus_lanes_open`, freed by `shmbus_lanes_free`; publishers and
/// the consumer made from it outlive it. It may be used by several threads at once.
pub struct ShmbusLanes {
    lanes: Lanes,
}

/// A producer's lane (opaque): records published here reach the consumer in order. Made by
/// `shmbus_lanes_acquire`, closed and freed by `shmbus_lane_publisher_close` (the consumer
/// reads what is queued, then sees the lane closed, and the lane returns to the pool). One
/// thread at a time.
pub struct ShmbusLanePublisher {
    publisher: LanePublisher,
}

/// The consumer of a lanes segment (opaque; one per segment at a time, in any process). Made by
/// `shmbus_lanes_consumer`, detached and freed by `shmbus_lane_consumer_free`. One thread at a
/// time.
pub struct ShmbusLaneConsumer {
    /// The consumer, from `Box::into_raw`: owned by this handle, freed in its drop, never moved.
    cx: NonNull<Cx>,
    /// The record the last receive gave C, borrowing `*cx` (its true lifetime ends before any
    /// other use of `*cx`: see the module's documentation). Dropping it acknowledges it.
    held: Option<LaneRecord<'static>>,
    /// To attach the consumer again if its readiness registration fails.
    lanes: Lanes,
}

enum Cx {
    Plain(LaneConsumer),
    Ready(LaneReadiness),
    /// The registration failed, and so did attaching a consumer again.
    Lost,
}

// SAFETY: the handle owns `*cx` as a `Box<Cx>` would, and `Cx` is `Send` (its variants are, as
// `assert_send` below checks); the held record is `Send` too and refers only to `*cx` and to
// the segment's mapping, which move with the handle. The handle is used by one thread at a
// time, as the header says.
unsafe impl Send for ShmbusLaneConsumer {}

/// Checked at compile time: what the `Send` claim above relies on.
const _: () = {
    const fn assert_send<T: Send>() {}
    assert_send::<LaneConsumer>();
    assert_send::<LaneReadiness>();
    assert_send::<LaneRecord<'static>>();
};

/// A lanes segment's shape and state, as `shmbus_lanes_info` reports it (a snapshot).
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct ShmbusLanesInfo {
    /// Number of lanes: the most producers attached at once.
    pub lanes: u32,
    /// Bytes per lane.
    pub lane_bytes: u64,
    /// Largest record, in bytes (a record and its 8-byte header take a whole lane at most).
    pub max_record: usize,
    /// Whether a consumer is attached (and alive).
    pub has_consumer: bool,
    /// Whether this handle mapped the segment read-only.
    pub read_only: bool,
}

/// What a lanes receive found.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ShmbusLaneEvent {
    /// A record of lane `lane`: `data` and `len`, in place in the lane.
    Record = 0,
    /// Nothing now (`try_recv`), or nothing within the timeout (`recv_timeout`).
    Empty = 1,
    /// Lane `lane`'s producer closed it (or died, `producer_died`) and every record it published
    /// was received: the lane is back in the pool. Reported once per producer session.
    Closed = 2,
}

/// The result of a lanes receive.
///
/// For a `RECORD`, `data` points INTO the lane, in shared memory (no copy): the producer
/// writes none of those bytes until the record is acknowledged, which happens at
/// `shmbus_lane_consumer_ack`, at the consumer's next receive or readiness call, or at
/// `shmbus_lane_consumer_free`, whichever comes first. Read the bytes before then; do not write
/// them. Until it is acknowledged the record holds its room in the lane, so acknowledge soon.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct ShmbusLaneReceived {
    /// What was found; the other fields are meaningful as its documentation says.
    pub event: ShmbusLaneEvent,
    /// `RECORD`, `CLOSED`: the lane. 0 otherwise.
    pub lane: u32,
    /// `RECORD`: the record's bytes, in the lane (never NULL, even for an empty record); NULL
    /// otherwise.
    pub data: *const u8,
    /// `RECORD`: the record's length in bytes; 0 otherwise.
    pub len: usize,
    /// `CLOSED`: records the lane's producer dropped because the lane was full, in the session
    /// that ended; 0 otherwise.
    pub dropped: u64,
    /// `CLOSED`: the producer died rather than closing its lane; false otherwise.
    pub producer_died: bool,
}

impl ShmbusLaneReceived {
    fn nothing() -> Self {
        ShmbusLaneReceived {
            event: ShmbusLaneEvent::Empty,
            lane: 0,
            data: std::ptr::null(),
            len: 0,
            dropped: 0,
            producer_died: false,
        }
    }
}

/// Creates a lanes segment of `lanes` lanes (1 to 4096; 0: 64) of `lane_bytes` bytes each (a
/// power of two from 4096 to 1 GiB and a multiple of the page size; 0: 65536), with permission
/// bits `mode` (0: `0600`). On success `*out` is the new handle. Each process that maps a lane
/// maps it twice (a record that crosses the ring's end is still one run of bytes).
///
/// Errors: `NULL_ARGUMENT`, `INVALID_ARGUMENT`, `INVALID_NAME`, `INVALID_CONFIG`,
/// `ALREADY_EXISTS`, `PERMISSION_DENIED`, `NO_SPACE`, `IO`.
///
/// # Safety
/// `name` is NULL or a NUL-terminated string; `out` is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn shmbus_lanes_create(
    name: *const c_char,
    lanes: u32,
    lane_bytes: u64,
    mode: u32,
    out: *mut *mut ShmbusLanes,
) -> ShmbusStatus {
    guard(|| {
        // SAFETY: the caller's contract for `name`.
        let name = unsafe { args::str_arg(name, "name") }?;
        let out = args::out_arg(out, "out")?;
        let mode = args::mode_arg(mode)?;
        let mut b = LanesBuilder::new(name);
        if lanes != 0 {
            b = b.lanes(lanes);
        }
        if lane_bytes != 0 {
            b = b.lane_bytes(lane_bytes);
        }
        if let Some(mode) = mode {
            b = b.permissions(mode);
        }
        let lanes = b.create()?;
        // SAFETY: checked not NULL; the caller promises it writable.
        unsafe { args::put(out, args::into_handle(ShmbusLanes { lanes })) };
        Ok(())
    })
}

/// Opens an existing lanes segment. `flags`: `SHMBUS_READ_ONLY` (look only: such a handle can
/// neither acquire a lane nor consume), `SHMBUS_ACCEPT_OTHER_OWNER`,
/// `SHMBUS_ACCEPT_SHARED_WRITE`. On success `*out` is the new handle.
///
/// Errors: `NULL_ARGUMENT`, `INVALID_ARGUMENT`, and those of opening any segment (see
/// `shmbus_bus_open`), `WRONG_KIND` among them.
///
/// # Safety
/// `name` is NULL or a NUL-terminated string; `out` is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn shmbus_lanes_open(
    name: *const c_char,
    flags: u32,
    out: *mut *mut ShmbusLanes,
) -> ShmbusStatus {
    guard(|| {
        // SAFETY: the caller's contract for `name`.
        let name = unsafe { args::str_arg(name, "name") }?;
        let out = args::out_arg(out, "out")?;
        args::check_flags(flags, OPEN_FLAGS)?;
        let lanes = apply_open_flags!(LanesBuilder::new(name), flags).open()?;
        // SAFETY: checked not NULL; the caller promises it writable.
        unsafe { args::put(out, args::into_handle(ShmbusLanes { lanes })) };
        Ok(())
    })
}

/// Frees a lanes handle. NULL does nothing.
///
/// # Safety
/// `lanes` is NULL or a lanes handle not freed before.
#[no_mangle]
pub unsafe extern "C" fn shmbus_lanes_free(lanes: *mut ShmbusLanes) {
    // SAFETY: the caller's contract.
    unsafe { args::free_handle(lanes) }
}

/// Fills `*out` with the segment's shape and a snapshot of its state.
///
/// Errors: `NULL_ARGUMENT`.
///
/// # Safety
/// `lanes` is NULL or a live lanes handle; `out` is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn shmbus_lanes_info(
    lanes: *const ShmbusLanes,
    out: *mut ShmbusLanesInfo,
) -> ShmbusStatus {
    guard(|| {
        // SAFETY: the caller's contract for `lanes`.
        let l = &unsafe { args::handle(lanes, "lanes") }?.lanes;
        let out = args::out_arg(out, "out")?;
        let info = ShmbusLanesInfo {
            lanes: l.lanes(),
            lane_bytes: l.lane_bytes(),
            max_record: l.max_record(),
            has_consumer: l.has_consumer(),
            read_only: l.is_read_only(),
        };
        // SAFETY: checked not NULL; the caller promises it writable.
        unsafe { args::put(out, info) };
        Ok(())
    })
}

/// Acquires a free lane for a producer in this process: the lane is this publisher's until
/// `shmbus_lane_publisher_close`, or until the process dies (the consumer then closes it on
/// the producer's behalf). On success `*out` is the new publisher.
///
/// Errors: `NULL_ARGUMENT`, `READ_ONLY`, `LANES_FULL` (every lane is held, or still being
/// drained by the consumer), `CORRUPT`, `IO`.
///
/// # Safety
/// `lanes` is NULL or a live lanes handle; `out` is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn shmbus_lanes_acquire(
    lanes: *const ShmbusLanes,
    out: *mut *mut ShmbusLanePublisher,
) -> ShmbusStatus {
    guard(|| {
        // SAFETY: the caller's contract for `lanes`.
        let l = &unsafe { args::handle(lanes, "lanes") }?.lanes;
        let out = args::out_arg(out, "out")?;
        let publisher = l.acquire()?;
        // SAFETY: checked not NULL; the caller promises it writable.
        unsafe { args::put(out, args::into_handle(ShmbusLanePublisher { publisher })) };
        Ok(())
    })
}

/// Publishes the `len` bytes at `data` as one record. A full lane is not an error: the record
/// is dropped and counted (`shmbus_lane_publisher_dropped`, and the consumer's `CLOSED` event
/// reports the count), and `*out_queued` says which happened (`true`: queued for the
/// consumer). `out_queued` may be NULL. This publish never waits for the consumer (see
/// `shmbus_lane_publisher_publish_wait` and `_publish_timeout`).
///
/// Errors: `NULL_ARGUMENT`, `INVALID_ARGUMENT`, `MESSAGE_TOO_LARGE` (longer than `max_record`:
/// nothing written or counted), `USED_AFTER_FORK`.
///
/// # Safety
/// `publisher` is NULL or a live publisher used by no other thread now; `data` is NULL or points
/// to `len` readable bytes; `out_queued` is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn shmbus_lane_publisher_publish(
    publisher: *mut ShmbusLanePublisher,
    data: *const u8,
    len: usize,
    out_queued: *mut bool,
) -> ShmbusStatus {
    // SAFETY: the caller's contract, passed on.
    unsafe { publish(publisher, data, len, Waiting::Not, out_queued) }
}

/// The three publishes: the arguments checked, then `publish`, `publish_timeout`
/// or `publish_wait`, and whether the record was queued in `*out_queued`.
///
/// # Safety
/// As `shmbus_lane_publisher_publish`.
unsafe fn publish(
    publisher: *mut ShmbusLanePublisher,
    data: *const u8,
    len: usize,
    waiting: Waiting,
    out_queued: *mut bool,
) -> ShmbusStatus {
    guard(|| {
        // SAFETY: the caller's contract for `publisher`.
        let p = &mut unsafe { args::handle_mut(publisher, "publisher") }?.publisher;
        // SAFETY: the caller's contract for `data`.
        let record = unsafe { args::bytes_arg(data, len, "data") }?;
        let pushed = match waiting {
            Waiting::Not => p.publish(record)?,
            Waiting::Until(ns) => p.publish_timeout(record, args::timeout(ns))?,
            Waiting::Forever => p.publish_wait(record).map(|()| LanePush::Queued)?,
        };
        let queued = match pushed {
            LanePush::Queued => true,
            LanePush::Full { .. } => false,
        };
        // SAFETY: NULL or writable, as the caller promises.
        unsafe { args::put_opt(out_queued, queued) };
        Ok(())
    })
}

/// Publishes the `len` bytes at `data` as one record, waiting while the lane is full until the
/// consumer's acknowledgements make room: nothing is dropped. With no consumer attached it waits
/// until one attaches and reads; `shmbus_lane_publisher_publish_timeout` bounds the wait.
///
/// Errors: `NULL_ARGUMENT`, `INVALID_ARGUMENT`, `MESSAGE_TOO_LARGE` (longer than `max_record`:
/// nothing written or counted, no wait), `USED_AFTER_FORK`.
///
/// # Safety
/// As `shmbus_lane_publisher_publish`.
#[no_mangle]
pub unsafe extern "C" fn shmbus_lane_publisher_publish_wait(
    publisher: *mut ShmbusLanePublisher,
    data: *const u8,
    len: usize,
) -> ShmbusStatus {
    // SAFETY: the caller's contract, passed on.
    unsafe { publish(publisher, data, len, Waiting::Forever, std::ptr::null_mut()) }
}

/// Publishes the `len` bytes at `data` as one record, waiting at most `timeout_ns` nanoseconds
/// while the lane is full; if it is still full then, the record is dropped and counted as
/// `shmbus_lane_publisher_publish` does. `*out_queued` says which happened (`true`: queued);
/// `out_queued` may be NULL. `UINT64_MAX` nanoseconds (584 years) is as good as no limit.
///
/// Errors: as `shmbus_lane_publisher_publish_wait`.
///
/// # Safety
/// As `shmbus_lane_publisher_publish`.
#[no_mangle]
pub unsafe extern "C" fn shmbus_lane_publisher_publish_timeout(
    publisher: *mut ShmbusLanePublisher,
    data: *const u8,
    len: usize,
    timeout_ns: u64,
    out_queued: *mut bool,
) -> ShmbusStatus {
    // SAFETY: the caller's contract, passed on.
    unsafe { publish(publisher, data, len, Waiting::Until(timeout_ns), out_queued) }
}

/// The lane this publisher holds, in `*out`.
///
/// Errors: `NULL_ARGUMENT`.
///
/// # Safety
/// `publisher` is NULL or a live publisher used by no other thread now; `out` is NULL or
/// writable.
#[no_mangle]
pub unsafe extern "C" fn shmbus_lane_publisher_lane(
    publisher: *const ShmbusLanePublisher,
    out: *mut u32,
) -> ShmbusStatus {
    guard(|| {
        // SAFETY: the caller's contract for `publisher`.
        let p = &unsafe { args::handle(publisher, "publisher") }?.publisher;
        let out = args::out_arg(out, "out")?;
        // SAFETY: checked not NULL; the caller promises it writable.
        unsafe { args::put(out, p.lane()) };
        Ok(())
    })
}

/// How many records this publisher dropped because its lane was full, in `*out`.
///
/// Errors: `NULL_ARGUMENT`.
///
/// # Safety
/// `publisher` is NULL or a live publisher used by no other thread now; `out` is NULL or
/// writable.
#[no_mangle]
pub unsafe extern "C" fn shmbus_lane_publisher_dropped(
    publisher: *const ShmbusLanePublisher,
    out: *mut u64,
) -> ShmbusStatus {
    guard(|| {
        // SAFETY: the caller's contract for `publisher`.
        let p = &unsafe { args::handle(publisher, "publisher") }?.publisher;
        let out = args::out_arg(out, "out")?;
        // SAFETY: checked not NULL; the caller promises it writable.
        unsafe { args::put(out, p.dropped()) };
        Ok(())
    })
}

/// Closes the publisher's lane and frees the publisher: the consumer reads what is queued, then
/// sees the lane closed, and the lane returns to the pool. NULL does nothing.
///
/// # Safety
/// `publisher` is NULL or a publisher handle not closed before.
#[no_mangle]
pub unsafe extern "C" fn shmbus_lane_publisher_close(publisher: *mut ShmbusLanePublisher) {
    // SAFETY: the caller's contract.
    unsafe { args::free_handle(publisher) }
}

/// Attaches the consumer. It goes on from the positions its predecessor acknowledged, and
/// receives the lanes in round-robin order, each lane's records in the order they were
/// published. On success `*out` is the new consumer.
///
/// Errors: `NULL_ARGUMENT`, `READ_ONLY`, `CONSUMER_EXISTS` (another consumer lives, in this
/// process or another), `IO`.
///
/// # Safety
/// `lanes` is NULL or a live lanes handle; `out` is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn shmbus_lanes_consumer(
    lanes: *const ShmbusLanes,
    out: *mut *mut ShmbusLaneConsumer,
) -> ShmbusStatus {
    guard(|| {
        // SAFETY: the caller's contract for `lanes`.
        let l = &unsafe { args::handle(lanes, "lanes") }?.lanes;
        let out = args::out_arg(out, "out")?;
        let consumer = l.consumer()?;
        let c = ShmbusLaneConsumer {
            cx: NonNull::from(Box::leak(Box::new(Cx::Plain(consumer)))),
            held: None,
            lanes: l.clone(),
        };
        // SAFETY: checked not NULL; the caller promises it writable.
        unsafe { args::put(out, args::into_handle(c)) };
        Ok(())
    })
}

/// Detaches and frees the consumer, acknowledging the record it holds. NULL does nothing.
///
/// # Safety
/// `consumer` is NULL or a consumer handle not freed before.
#[no_mangle]
pub unsafe extern "C" fn shmbus_lane_consumer_free(consumer: *mut ShmbusLaneConsumer) {
    // SAFETY: the caller's contract.
    unsafe { args::free_handle(consumer) }
}

impl Drop for ShmbusLaneConsumer {
    fn drop(&mut self) {
        // The record first: it borrows the consumer.
        self.held = None;
        // SAFETY: `cx` came from `Box::leak` and is freed only here, once; nothing borrows it
        // any more (the record just went).
        drop(unsafe { Box::from_raw(self.cx.as_ptr()) });
    }
}

fn lost() -> Failure {
    Failure::fixed(
        ShmbusStatus::Io,
        c"this consumer was lost when its readiness registration failed and it could not attach again: free it and attach a new one",
    )
}

/// Receives once, without waiting, through whichever form the consumer has.
///
/// # Safety
/// `cx` points to the live `Cx` of a consumer handle, which nothing borrows now and which the
/// caller does not use again, nor free, while the returned event lives.
unsafe fn try_take(cx: NonNull<Cx>) -> Result<Option<LaneEvent<'static>>, Failure> {
    // SAFETY: the caller's contract: live, unborrowed, and (the lifetime is the caller's to keep)
    // left alone while the event lives.
    let cx: &'static mut Cx = unsafe { &mut *cx.as_ptr() };
    Ok(match cx {
        Cx::Plain(c) => c.try_recv()?,
        Cx::Ready(r) => r.try_recv()?,
        Cx::Lost => return Err(lost()),
    })
}

impl ShmbusLaneConsumer {
    /// Acknowledges the record C holds, if any, waking at once a producer that waits for room
    /// (a record merely dropped leaves that to the consumer's next call).
    fn ack(&mut self) {
        if let Some(r) = self.held.take() {
            r.ack();
        }
    }

    /// The consumer, for a use that ends with the call. The held record goes first.
    fn cx(&mut self) -> &mut Cx {
        self.ack();
        // SAFETY: `cx` is live (freed only in drop) and owned by this handle; the record that
        // borrowed it was just dropped, and the returned borrow ends with `&mut self`'s.
        unsafe { self.cx.as_mut() }
    }

    /// Fills the C result from an event, keeping a record as the held one.
    fn give(&mut self, event: Option<LaneEvent<'static>>) -> ShmbusLaneReceived {
        match event {
            None => ShmbusLaneReceived::nothing(),
            Some(LaneEvent::Closed(c)) => ShmbusLaneReceived {
                event: ShmbusLaneEvent::Closed,
                lane: c.lane,
                dropped: c.dropped,
                producer_died: c.producer_died,
                ..ShmbusLaneReceived::nothing()
            },
            Some(LaneEvent::Record(r)) => {
                // The bytes lie in the lane's mapping, not in `r`: the pointer stays good when
                // `r` moves into `held`.
                let got = ShmbusLaneReceived {
                    event: ShmbusLaneEvent::Record,
                    lane: r.lane(),
                    data: r.bytes().as_ptr(),
                    len: r.len(),
                    ..ShmbusLaneReceived::nothing()
                };
                self.held = Some(r);
                got
            }
        }
    }

    fn recv(&mut self, timeout_ns: Option<u64>) -> Result<ShmbusLaneReceived, Failure> {
        self.ack();
        let ptr = self.cx;
        let event = match timeout_ns {
            // SAFETY: the held record was dropped, so nothing borrows `*ptr`; the event goes
            // into `held`, and every later use of `*ptr` drops `held` first.
            None => unsafe { try_take(ptr) }?,
            Some(ns) => {
                let deadline = Instant::now().checked_add(args::timeout(ns));
                // SAFETY: as above. In the readiness arm this borrow ends once the descriptor
                // is read, before the attempts make theirs.
                let cx: &'static mut Cx = unsafe { &mut *ptr.as_ptr() };
                match cx {
                    Cx::Plain(c) => match deadline {
                        Some(d) => c.recv_timeout(d.saturating_duration_since(Instant::now()))?,
                        None => Some(c.recv()?),
                    },
                    Cx::Ready(ready) => {
                        // Through the registration, waiting in poll(2) on its descriptor.
                        let fd = ready.as_raw_fd();
                        let found = crate::ready::poll_until(fd, deadline, || {
                            // SAFETY: as above; an attempt that finds nothing leaves no borrow,
                            // so each attempt's is the only one.
                            match unsafe { try_take(ptr) } {
                                Ok(None) => None,
                                other => Some(other),
                            }
                        })?;
                        found.unwrap_or(Ok(None))?
                    }
                    Cx::Lost => return Err(lost()),
                }
            }
        };
        Ok(self.give(event))
    }
}

/// The common body of the two receives.
///
/// # Safety
/// As the exported receives.
unsafe fn recv(
    consumer: *mut ShmbusLaneConsumer,
    timeout_ns: Option<u64>,
    out: *mut ShmbusLaneReceived,
) -> ShmbusStatus {
    guard(|| {
        // SAFETY: the caller's contract for `consumer`.
        let c = unsafe { args::handle_mut(consumer, "consumer") }?;
        let out = args::out_arg(out, "out")?;
        let got = c.recv(timeout_ns)?;
        // SAFETY: checked not NULL; the caller promises it writable.
        unsafe { args::put(out, got) };
        Ok(())
    })
}

/// Acknowledges the record the last receive gave (if it has not been acknowledged yet), then
/// takes the next event if there is one: fills `*out` with `RECORD` (`lane`, and `data`, `len`
/// in place in the lane: see `ShmbusLaneReceived`), `CLOSED` (`lane`, `dropped`,
/// `producer_died`) or `EMPTY`.
///
/// Errors: `NULL_ARGUMENT`, `CORRUPT` (a lane's positions or a record's length contradict each
/// other: that lane is skipped until its next turn, the others go on), `USED_AFTER_FORK`.
///
/// # Safety
/// `consumer` is NULL or a live consumer used by no other thread now; `out` is NULL or
/// writable.
#[no_mangle]
pub unsafe extern "C" fn shmbus_lane_consumer_try_recv(
    consumer: *mut ShmbusLaneConsumer,
    out: *mut ShmbusLaneReceived,
) -> ShmbusStatus {
    // SAFETY: the caller's contract, passed on.
    unsafe { recv(consumer, None, out) }
}

/// As `shmbus_lane_consumer_try_recv`, waiting at most `timeout_ns` nanoseconds while nothing
/// is there: `EMPTY` when the time ran out. Producers that died holding a lane are noticed
/// while it waits (their lanes close with `producer_died`).
///
/// Errors: as `shmbus_lane_consumer_try_recv`; `IO` if waiting on the readiness descriptor
/// fails.
///
/// # Safety
/// As `shmbus_lane_consumer_try_recv`.
#[no_mangle]
pub unsafe extern "C" fn shmbus_lane_consumer_recv_timeout(
    consumer: *mut ShmbusLaneConsumer,
    timeout_ns: u64,
    out: *mut ShmbusLaneReceived,
) -> ShmbusStatus {
    // SAFETY: the caller's contract, passed on.
    unsafe { recv(consumer, Some(timeout_ns), out) }
}

/// Acknowledges the record the last receive gave: its bytes go back to the producer (one
/// waiting for room in that lane is woken now), and the `data` pointer is no longer to be
/// read. Nothing held (an `EMPTY` or `CLOSED` receive, or an
/// acknowledgement already made) is no error.
///
/// Errors: `NULL_ARGUMENT`.
///
/// # Safety
/// `consumer` is NULL or a live consumer used by no other thread now.
#[no_mangle]
pub unsafe extern "C" fn shmbus_lane_consumer_ack(
    consumer: *mut ShmbusLaneConsumer,
) -> ShmbusStatus {
    guard(|| {
        // SAFETY: the caller's contract for `consumer`.
        unsafe { args::handle_mut(consumer, "consumer") }?.ack();
        Ok(())
    })
}

/// A file descriptor that an event loop can wait on: readable when a receive may find a record
/// or a closed lane. Readiness may be spurious, never lost: after it turns readable, receive
/// with `shmbus_lane_consumer_try_recv` until it gives `EMPTY`, which re-arms it. The first call
/// registers the consumer with the lanes handle's waker thread (acknowledging the record it
/// holds); later calls give the same descriptor. The descriptor belongs to the consumer: do not
/// close it; `shmbus_lane_consumer_free` does. A producer that dies is noticed at the next
/// receive after the descriptor turns readable.
///
/// Errors: `NULL_ARGUMENT`, `IO` (no eventfd, or no waker thread: the consumer is attached
/// again without a descriptor, or, if even that fails, every later receive returns `IO` and
/// the consumer is to be freed).
///
/// # Safety
/// `consumer` is NULL or a live consumer used by no other thread now; `fd` is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn shmbus_lane_consumer_fd(
    consumer: *mut ShmbusLaneConsumer,
    fd: *mut c_int,
) -> ShmbusStatus {
    guard(|| {
        // SAFETY: the caller's contract for `consumer`.
        let c = unsafe { args::handle_mut(consumer, "consumer") }?;
        let fd = args::out_arg(fd, "fd")?;
        let lanes = c.lanes.clone();
        let cx = c.cx();
        match std::mem::replace(cx, Cx::Lost) {
            Cx::Plain(plain) => match plain.into_readiness() {
                Ok(ready) => *cx = Cx::Ready(ready),
                Err(e) => {
                    // The consumer went with the failed registration (it held no record), and
                    // with it the attachment: attach again.
                    if let Ok(again) = lanes.consumer() {
                        *cx = Cx::Plain(again);
                    }
                    return Err(e.into());
                }
            },
            other => *cx = other,
        }
        let Cx::Ready(ready) = cx else {
            return Err(lost());
        };
        // SAFETY: checked not NULL; the caller promises it writable.
        unsafe { args::put(fd, ready.as_raw_fd()) };
        Ok(())
    })
}
