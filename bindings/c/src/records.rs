//! Records: variable-size broadcast in one byte ring (create, open, publish, subscribe, receive).

use std::ffi::{c_char, c_int};
use std::os::fd::AsRawFd;
use std::time::Instant;

use shmbus::records::{
    RecordPublisher, RecordReadiness, RecordSubscriber, Records, RecordsBuilder,
};
use shmbus::{LapPolicy, RecordRecv, Start};

use crate::args::{self, apply_open_flags, OPEN_FLAGS};
use crate::received::{lap_policy_arg, start_arg, ShmbusEvent, ShmbusReceived};
use crate::status::{guard, Failure, ShmbusStatus};

/// A records segment handle (opaque). Made by `shmbus_records_create` or
/// `shmbus_records_open`, freed by `shmbus_records_free`; its publisher and subscribers outlive
/// it. It may be used by several threads at once.
pub struct ShmbusRecords {
    records: Records,
}

/// The records producer (opaque; one per segment). Made by `shmbus_records_publisher`, freed
/// (detached) by `shmbus_record_publisher_free`. One thread at a time.
pub struct ShmbusRecordPublisher {
    publisher: RecordPublisher,
}

/// A records subscriber (opaque). Made by `shmbus_records_subscribe`, freed by
/// `shmbus_record_subscriber_free`. One thread at a time.
pub struct ShmbusRecordSubscriber {
    /// To make the subscriber again if its readiness registration fails.
    records: Records,
    policy: LapPolicy,
    state: Sub,
}

enum Sub {
    Plain(RecordSubscriber),
    Ready(RecordReadiness),
}

/// A records segment's shape and state, as `shmbus_records_info` reports it.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct ShmbusRecordsInfo {
    /// Size of the byte ring.
    pub ring_bytes: u64,
    /// Largest record payload, in bytes (a quarter of the ring, less the 16-byte record header).
    pub max_record: usize,
    /// Records published since creation (the next record's sequence number).
    pub records_published: u64,
    /// Payload bytes published since creation.
    pub bytes_published: u64,
    /// Whether a live producer is attached.
    pub has_producers: bool,
    /// Whether this handle mapped the segment read-only.
    pub read_only: bool,
}

/// Creates a records segment whose byte ring is `ring_bytes` long (a power of two from 4 KiB
/// to 16 GiB; 0: 1 MiB), with permission bits `mode` (0: `0600`). `flags` must be 0. On success
/// `*out` is the new handle.
///
/// Errors: `NULL_ARGUMENT`, `INVALID_ARGUMENT`, `INVALID_NAME`, `INVALID_CONFIG`,
/// `ALREADY_EXISTS`, `PERMISSION_DENIED`, `NO_SPACE`, `IO`.
///
/// # Safety
/// `name` is NULL or a NUL-terminated string; `out` is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn shmbus_records_create(
    name: *const c_char,
    ring_bytes: u64,
    flags: u32,
    mode: u32,
    out: *mut *mut ShmbusRecords,
) -> ShmbusStatus {
    guard(|| {
        // SAFETY: the caller's contract for `name`.
        let name = unsafe { args::str_arg(name, "name") }?;
        let out = args::out_arg(out, "out")?;
        args::check_flags(flags, 0)?;
        let mode = args::mode_arg(mode)?;
        let mut b = RecordsBuilder::new(name);
        if ring_bytes != 0 {
            b = b.bytes(ring_bytes);
        }
        if let Some(mode) = mode {
            b = b.permissions(mode);
        }
        let records = b.create()?;
        // SAFETY: checked not NULL; the caller promises it writable.
        unsafe { args::put(out, args::into_handle(ShmbusRecords { records })) };
        Ok(())
    })
}

/// Opens an existing records segment. `flags`: `SHMBUS_READ_ONLY`,
/// `SHMBUS_ACCEPT_OTHER_OWNER`, `SHMBUS_ACCEPT_SHARED_WRITE`. On success `*out` is the new
/// handle.
///
/// Errors: `NULL_ARGUMENT`, `INVALID_ARGUMENT`, and those of opening any segment (see
/// `shmbus_bus_open`).
///
/// # Safety
/// `name` is NULL or a NUL-terminated string; `out` is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn shmbus_records_open(
    name: *const c_char,
    flags: u32,
    out: *mut *mut ShmbusRecords,
) -> ShmbusStatus {
    guard(|| {
        // SAFETY: the caller's contract for `name`.
        let name = unsafe { args::str_arg(name, "name") }?;
        let out = args::out_arg(out, "out")?;
        args::check_flags(flags, OPEN_FLAGS)?;
        let records = apply_open_flags!(RecordsBuilder::new(name), flags).open()?;
        // SAFETY: checked not NULL; the caller promises it writable.
        unsafe { args::put(out, args::into_handle(ShmbusRecords { records })) };
        Ok(())
    })
}

/// Frees a records handle. NULL does nothing.
///
/// # Safety
/// `records` is NULL or a records handle not freed before.
#[no_mangle]
pub unsafe extern "C" fn shmbus_records_free(records: *mut ShmbusRecords) {
    // SAFETY: the caller's contract.
    unsafe { args::free_handle(records) }
}

/// Fills `*out` with the segment's shape and state.
///
/// Errors: `NULL_ARGUMENT`.
///
/// # Safety
/// `records` is NULL or a live records handle; `out` is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn shmbus_records_info(
    records: *const ShmbusRecords,
    out: *mut ShmbusRecordsInfo,
) -> ShmbusStatus {
    guard(|| {
        // SAFETY: the caller's contract for `records`.
        let r = &unsafe { args::handle(records, "records") }?.records;
        let out = args::out_arg(out, "out")?;
        let info = ShmbusRecordsInfo {
            ring_bytes: r.ring_bytes(),
            max_record: r.max_record(),
            records_published: r.records_published(),
            bytes_published: r.bytes_published(),
            has_producers: r.has_producers(),
            read_only: r.is_read_only(),
        };
        // SAFETY: checked not NULL; the caller promises it writable.
        unsafe { args::put(out, info) };
        Ok(())
    })
}

/// Attaches the producer. On success `*out` is the new publisher.
///
/// Errors: `NULL_ARGUMENT`, `READ_ONLY`, `PRODUCER_EXISTS`, `CORRUPT`, `IO`.
///
/// # Safety
/// `records` is NULL or a live records handle; `out` is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn shmbus_records_publisher(
    records: *const ShmbusRecords,
    out: *mut *mut ShmbusRecordPublisher,
) -> ShmbusStatus {
    guard(|| {
        // SAFETY: the caller's contract for `records`.
        let r = &unsafe { args::handle(records, "records") }?.records;
        let out = args::out_arg(out, "out")?;
        let publisher = r.publisher()?;
        // SAFETY: checked not NULL; the caller promises it writable.
        unsafe { args::put(out, args::into_handle(ShmbusRecordPublisher { publisher })) };
        Ok(())
    })
}

/// Detaches and frees the records publisher. NULL does nothing.
///
/// # Safety
/// `publisher` is NULL or a records publisher not freed before.
#[no_mangle]
pub unsafe extern "C" fn shmbus_record_publisher_free(publisher: *mut ShmbusRecordPublisher) {
    // SAFETY: the caller's contract.
    unsafe { args::free_handle(publisher) }
}

/// Publishes the `len` bytes at `data` as one record of type `type_id` (a number the
/// application gives meaning to; subscribers see it). If `seq` is not NULL, `*seq` is the
/// record's sequence number.
///
/// Errors: `NULL_ARGUMENT`, `MESSAGE_TOO_LARGE` (longer than `max_record`), `USED_AFTER_FORK`.
///
/// # Safety
/// `publisher` is NULL or a live records publisher used by no other thread now; `data` is NULL
/// or points to `len` readable bytes; `seq` is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn shmbus_record_publish(
    publisher: *mut ShmbusRecordPublisher,
    type_id: u32,
    data: *const u8,
    len: usize,
    seq: *mut u64,
) -> ShmbusStatus {
    guard(|| {
        // SAFETY: the caller's contract for `publisher`.
        let p = &mut unsafe { args::handle_mut(publisher, "publisher") }?.publisher;
        // SAFETY: the caller's contract for `data`.
        let bytes = unsafe { args::bytes_arg(data, len, "data") }?;
        let s = p.publish_record(type_id, bytes)?;
        // SAFETY: the caller promises `seq` NULL or writable.
        unsafe { args::put_opt(seq, s) };
        Ok(())
    })
}

/// Subscribes to a records segment: `start` is a `ShmbusStart` value (`LAST` and `SEQUENCE`
/// start at the oldest intact record and pass over those before their start), `lap_policy` a
/// `ShmbusLapPolicy` value. On success `*out` is the new subscriber.
///
/// Errors: `NULL_ARGUMENT`, `INVALID_ARGUMENT`.
///
/// # Safety
/// `records` is NULL or a live records handle; `out` is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn shmbus_records_subscribe(
    records: *const ShmbusRecords,
    start: u32,
    start_arg: u64,
    lap_policy: u32,
    out: *mut *mut ShmbusRecordSubscriber,
) -> ShmbusStatus {
    guard(|| {
        // SAFETY: the caller's contract for `records`.
        let r = &unsafe { args::handle(records, "records") }?.records;
        let out = args::out_arg(out, "out")?;
        let start = self::start_arg(start, start_arg)?;
        let policy = lap_policy_arg(lap_policy)?;
        let sub = ShmbusRecordSubscriber {
            records: r.clone(),
            policy,
            state: Sub::Plain(r.subscribe(start).lap_policy(policy)),
        };
        // SAFETY: checked not NULL; the caller promises it writable.
        unsafe { args::put(out, args::into_handle(sub)) };
        Ok(())
    })
}

/// Frees a records subscriber. NULL does nothing.
///
/// # Safety
/// `subscriber` is NULL or a records subscriber not freed before.
#[no_mangle]
pub unsafe extern "C" fn shmbus_record_subscriber_free(subscriber: *mut ShmbusRecordSubscriber) {
    // SAFETY: the caller's contract.
    unsafe { args::free_handle(subscriber) }
}

fn received(r: RecordRecv<'_>) -> ShmbusReceived {
    match r {
        RecordRecv::Record(rec) => ShmbusReceived::message(rec.seq(), rec.type_id(), rec.bytes()),
        RecordRecv::Empty => ShmbusReceived::nothing(ShmbusEvent::Empty),
        RecordRecv::Lapped { lost } => ShmbusReceived::lapped(lost, 0),
        RecordRecv::Closed => ShmbusReceived::nothing(ShmbusEvent::Closed),
    }
}

impl ShmbusRecordSubscriber {
    fn subscriber(&self) -> &RecordSubscriber {
        match &self.state {
            Sub::Plain(s) => s,
            Sub::Ready(r) => r.subscriber(),
        }
    }

    fn try_recv(&mut self) -> ShmbusReceived {
        let mut got = match &mut self.state {
            Sub::Plain(s) => received(s.try_recv()),
            Sub::Ready(r) => received(r.try_recv()),
        };
        if got.event == ShmbusEvent::Lapped {
            got.seq = self.subscriber().next_seq();
        }
        got
    }

    fn recv_timeout(&mut self, timeout_ns: u64) -> Result<ShmbusReceived, Failure> {
        let timeout = args::timeout(timeout_ns);
        let mut got = match &mut self.state {
            Sub::Plain(s) => received(s.recv_timeout(timeout)),
            Sub::Ready(ready) => {
                // Through the registration, waiting in poll(2) on its descriptor.
                let fd = ready.as_raw_fd();
                let deadline = Instant::now().checked_add(timeout);
                let found = crate::ready::poll_until(fd, deadline, || {
                    let r = self.try_recv();
                    (r.event != ShmbusEvent::Empty).then_some(r)
                })?;
                return Ok(found.unwrap_or_else(|| ShmbusReceived::nothing(ShmbusEvent::Empty)));
            }
        };
        if got.event == ShmbusEvent::Lapped {
            got.seq = self.subscriber().next_seq();
        }
        Ok(got)
    }
}

/// The common body of the two receives (`None`: without waiting).
///
/// # Safety
/// As the exported receives.
unsafe fn recv(
    subscriber: *mut ShmbusRecordSubscriber,
    timeout_ns: Option<u64>,
    out: *mut ShmbusReceived,
) -> ShmbusStatus {
    guard(|| {
        // SAFETY: the caller's contract for `subscriber`.
        let s = unsafe { args::handle_mut(subscriber, "subscriber") }?;
        let out = args::out_arg(out, "out")?;
        let got = match timeout_ns {
            None => s.try_recv(),
            Some(ns) => s.recv_timeout(ns)?,
        };
        // SAFETY: checked not NULL; the caller promises it writable.
        unsafe { args::put(out, got) };
        Ok(())
    })
}

/// Receives a record without waiting: fills `*out` with `MESSAGE` (`seq`, `type_id`, `data`,
/// `len`; the bytes valid until the next receive on this subscriber), `EMPTY`, `LAPPED` (exactly
/// `lost` records skipped) or `CLOSED`.
///
/// Errors: `NULL_ARGUMENT`.
///
/// # Safety
/// `subscriber` is NULL or a live records subscriber used by no other thread now; `out` is NULL
/// or writable.
#[no_mangle]
pub unsafe extern "C" fn shmbus_record_try_recv(
    subscriber: *mut ShmbusRecordSubscriber,
    out: *mut ShmbusReceived,
) -> ShmbusStatus {
    // SAFETY: the caller's contract, passed on.
    unsafe { recv(subscriber, None, out) }
}

/// Receives a record, waiting at most `timeout_ns` nanoseconds (`UINT64_MAX`: for ever;
/// `EMPTY` when the time ran out); fills `*out` as `shmbus_record_try_recv` does. Sleeps on the
/// segment's futex (or, once the subscriber has a readiness descriptor, in `poll(2)` on it).
///
/// Errors: `NULL_ARGUMENT`, `IO` (`poll` failed).
///
/// # Safety
/// As `shmbus_record_try_recv`.
#[no_mangle]
pub unsafe extern "C" fn shmbus_record_recv_timeout(
    subscriber: *mut ShmbusRecordSubscriber,
    timeout_ns: u64,
    out: *mut ShmbusReceived,
) -> ShmbusStatus {
    // SAFETY: the caller's contract, passed on.
    unsafe { recv(subscriber, Some(timeout_ns), out) }
}

/// A file descriptor that an event loop can wait on: readable when a receive may find
/// something (a record, a lap, or the segment closing). Readiness may be spurious, never lost:
/// after it turns readable, receive with `shmbus_record_try_recv` until it gives `EMPTY`, which
/// re-arms it. The first call registers the subscriber with the records handle's waker thread;
/// later calls give the same descriptor. The descriptor belongs to the subscriber: do not close
/// it; `shmbus_record_subscriber_free` does.
///
/// Errors: `NULL_ARGUMENT`, `IO` (no eventfd, or no waker thread; the subscriber stays usable,
/// at the position it had).
///
/// # Safety
/// `subscriber` is NULL or a live records subscriber used by no other thread now; `fd` is NULL
/// or writable.
#[no_mangle]
pub unsafe extern "C" fn shmbus_record_subscriber_fd(
    subscriber: *mut ShmbusRecordSubscriber,
    fd: *mut c_int,
) -> ShmbusStatus {
    guard(|| {
        // SAFETY: the caller's contract for `subscriber`.
        let s = unsafe { args::handle_mut(subscriber, "subscriber") }?;
        let fd = args::out_arg(fd, "fd")?;
        if let Sub::Plain(_) = s.state {
            // Made anew only to hold the place while the old one is moved into its readiness.
            let placeholder = Sub::Plain(s.records.subscribe(Start::Next));
            let Sub::Plain(plain) = std::mem::replace(&mut s.state, placeholder) else {
                unreachable!("matched Plain above")
            };
            let next = plain.next_seq();
            match plain.into_readiness() {
                Ok(ready) => s.state = Sub::Ready(ready),
                Err(e) => {
                    // The subscriber went with the failed registration: make it again where
                    // it was (its counters start from zero).
                    s.state = Sub::Plain(
                        s.records
                            .subscribe(Start::Sequence(next))
                            .lap_policy(s.policy),
                    );
                    return Err(e.into());
                }
            }
        }
        let Sub::Ready(ready) = &s.state else {
            unreachable!("registered above")
        };
        // SAFETY: checked not NULL; the caller promises it writable.
        unsafe { args::put(fd, ready.as_raw_fd()) };
        Ok(())
    })
}
