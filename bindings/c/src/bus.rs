//! The bus: create, open, publish (copied or written in place), subscribe, receive, and the
//! readiness descriptor.

use std::ffi::{c_char, c_int, c_void, CString};
use std::os::fd::AsRawFd;
use std::time::Instant;

use shmbus::{Bus, BusBuilder, LapPolicy, ProducerMode, Publisher, Readiness, Recv, SlotWriter};

use crate::args::{
    self, apply_open_flags, OPEN_FLAGS, SHMBUS_MULTI_PRODUCER, SHMBUS_NO_STALL_BOUND,
};
use crate::received::{lap_policy_arg, start_arg, ShmbusEvent, ShmbusReceived};
use crate::status::{guard, Failure, ShmbusStatus};

/// A bus handle (opaque). Made by `shmbus_bus_create` or `shmbus_bus_open`, freed by
/// `shmbus_bus_free`. Publishers and subscribers made from it keep the mapping alive on their
/// own, so it may be freed before them. It may be used by several threads at once.
pub struct ShmbusBus {
    bus: Bus,
    type_name: CString,
}

/// A bus's shape and state, as `shmbus_bus_info` reports it.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct ShmbusBusInfo {
    /// Number of slots in the ring.
    pub slots: u64,
    /// Largest message, in bytes.
    pub capacity: usize,
    /// The message type's size: 0 for a bus of raw bytes; else every message is exactly this
    /// long.
    pub type_size: u32,
    /// The message type's alignment (1 for raw bytes).
    pub type_align: u32,
    /// The message type's name as recorded in the segment (`"bytes"` for raw buses). Valid
    /// while the bus handle lives.
    pub type_name: *const c_char,
    /// The next sequence number a producer will claim (messages published so far, plus the
    /// bus's first sequence number).
    pub cursor: u64,
    /// Whether several producers may publish at once.
    pub multi_producer: bool,
    /// Whether this handle mapped the bus read-only.
    pub read_only: bool,
    /// Whether a live producer is attached.
    pub has_producers: bool,
    /// Multi producer: how long a producer stopped mid-publish is waited for before
    /// subscribers pass its message, in ns; 0: as long as it lives (`SHMBUS_NO_STALL_BOUND`,
    /// and every single-producer bus).
    pub stall_bound_ns: u64,
}

/// A publisher (opaque): the producer's place in the bus's producer table. Made by
/// `shmbus_bus_publisher`, freed (detached) by `shmbus_publisher_free`. One thread at a time.
pub struct ShmbusPublisher {
    publisher: Publisher,
}

/// The in-place writer `shmbus_publisher_publish_with` hands to its fill function (opaque);
/// valid only during that call.
pub struct ShmbusSlotWriter<'a, 'b> {
    writer: &'a mut SlotWriter<'b>,
}

/// The fill function of `shmbus_publisher_publish_with`: writes the message with
/// `shmbus_slot_writer_write`. It must return normally (no `longjmp` out of it) and must not use
/// the publisher it was called for.
pub type ShmbusFill = Option<unsafe extern "C" fn(ctx: *mut c_void, writer: *mut ShmbusSlotWriter)>;

/// A subscriber (opaque): its own position in the bus, kept in this process. Made by
/// `shmbus_bus_subscribe`, freed by `shmbus_subscriber_free`. One thread at a time.
pub struct ShmbusSubscriber {
    /// To make the subscriber again if its readiness registration fails.
    bus: Bus,
    policy: LapPolicy,
    state: Sub,
}

enum Sub {
    Plain(shmbus::Subscriber),
    Ready(Readiness),
}

fn wrap_bus(bus: Bus) -> ShmbusBus {
    let type_name = CString::new(bus.message_type().name.replace('\0', "\u{fffd}"))
        .expect("every NUL was just replaced");
    ShmbusBus { bus, type_name }
}

/// Creates a bus of `slots` slots (a power of two; 0: 1024) holding messages of up to
/// `capacity` bytes (0: 240), with permission bits `mode` (0: `0600`). `flags` may hold
/// `SHMBUS_MULTI_PRODUCER`, and with it `SHMBUS_NO_STALL_BOUND`. The bus carries raw bytes. On
/// success `*out` is the new handle.
///
/// Errors: `NULL_ARGUMENT` (`name`, `out`), `INVALID_ARGUMENT` (name not UTF-8, unknown flags,
/// `SHMBUS_NO_STALL_BOUND` without `SHMBUS_MULTI_PRODUCER`, mode beyond 0777), `INVALID_NAME`,
/// `INVALID_CONFIG` (slot count or capacity out of range), `ALREADY_EXISTS`,
/// `PERMISSION_DENIED`, `NO_SPACE`, `IO`.
///
/// # Safety
/// `name` is NULL or a NUL-terminated string; `out` is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn shmbus_bus_create(
    name: *const c_char,
    slots: u64,
    capacity: usize,
    flags: u32,
    mode: u32,
    out: *mut *mut ShmbusBus,
) -> ShmbusStatus {
    guard(|| {
        // SAFETY: the caller's contract for `name`.
        let name = unsafe { args::str_arg(name, "name") }?;
        let out = args::out_arg(out, "out")?;
        args::check_flags(flags, SHMBUS_MULTI_PRODUCER | SHMBUS_NO_STALL_BOUND)?;
        if flags & SHMBUS_NO_STALL_BOUND != 0 && flags & SHMBUS_MULTI_PRODUCER == 0 {
            return Err(Failure::invalid(
                "SHMBUS_NO_STALL_BOUND applies to a multi-producer bus only (a single \
                 producer's claimed sequence is always written)",
            ));
        }
        let mode = args::mode_arg(mode)?;
        let mut b = BusBuilder::new(name);
        if slots != 0 {
            b = b.slots(slots);
        }
        if capacity != 0 {
            b = b.capacity(capacity);
        }
        if flags & SHMBUS_MULTI_PRODUCER != 0 {
            b = b.producer_mode(ProducerMode::Multi);
        }
        if flags & SHMBUS_NO_STALL_BOUND != 0 {
            b = b.stall_bound(None);
        }
        if let Some(mode) = mode {
            b = b.permissions(mode);
        }
        let bus = b.create()?;
        // SAFETY: checked not NULL; the caller promises it writable.
        unsafe { args::put(out, args::into_handle(wrap_bus(bus))) };
        Ok(())
    })
}

/// Opens an existing bus of any message type. `flags`: `SHMBUS_READ_ONLY` (subscribers only;
/// the segment is mapped without write access), `SHMBUS_ACCEPT_OTHER_OWNER`,
/// `SHMBUS_ACCEPT_SHARED_WRITE`. On success `*out` is the new handle.
///
/// Errors: `NULL_ARGUMENT`, `INVALID_ARGUMENT`, and those of opening any segment:
/// `INVALID_NAME`, `NOT_FOUND`, `PERMISSION_DENIED`, `NOT_REGULAR_FILE`, `FOREIGN_OWNER`,
/// `INSECURE_MODE`, `TRUNCATED`, `TOO_LARGE`, `BAD_MAGIC`, `NOT_INITIALISED`, `ABI_MISMATCH`,
/// `WRONG_KIND`, `CORRUPT`, `IO`.
///
/// # Safety
/// `name` is NULL or a NUL-terminated string; `out` is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn shmbus_bus_open(
    name: *const c_char,
    flags: u32,
    out: *mut *mut ShmbusBus,
) -> ShmbusStatus {
    guard(|| {
        // SAFETY: the caller's contract for `name`.
        let name = unsafe { args::str_arg(name, "name") }?;
        let out = args::out_arg(out, "out")?;
        args::check_flags(flags, OPEN_FLAGS)?;
        let bus = apply_open_flags!(BusBuilder::new(name), flags).open()?;
        // SAFETY: checked not NULL; the caller promises it writable.
        unsafe { args::put(out, args::into_handle(wrap_bus(bus))) };
        Ok(())
    })
}

/// Frees a bus handle. NULL does nothing. Publishers and subscribers made from it stay usable.
///
/// # Safety
/// `bus` is NULL or a handle from `shmbus_bus_create`/`_open` not freed before.
#[no_mangle]
pub unsafe extern "C" fn shmbus_bus_free(bus: *mut ShmbusBus) {
    // SAFETY: the caller's contract.
    unsafe { args::free_handle(bus) }
}

/// Fills `*out` with the bus's shape and state.
///
/// Errors: `NULL_ARGUMENT`.
///
/// # Safety
/// `bus` is NULL or a live bus handle; `out` is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn shmbus_bus_info(
    bus: *const ShmbusBus,
    out: *mut ShmbusBusInfo,
) -> ShmbusStatus {
    guard(|| {
        // SAFETY: the caller's contract for `bus`.
        let h = unsafe { args::handle(bus, "bus") }?;
        let out = args::out_arg(out, "out")?;
        let ty = h.bus.message_type();
        let info = ShmbusBusInfo {
            slots: h.bus.slots(),
            capacity: h.bus.capacity(),
            type_size: ty.size,
            type_align: ty.align,
            type_name: h.type_name.as_ptr(),
            cursor: h.bus.cursor(),
            multi_producer: h.bus.producer_mode() == ProducerMode::Multi,
            stall_bound_ns: h.bus.stall_bound().map_or(0, crate::args::duration_ns),
            read_only: h.bus.is_read_only(),
            has_producers: h.bus.has_producers(),
        };
        // SAFETY: checked not NULL; the caller promises it writable.
        unsafe { args::put(out, info) };
        Ok(())
    })
}

/// Attaches a producer of raw bytes (on a typed bus, every message must then be exactly the
/// type's size). On success `*out` is the new publisher.
///
/// Errors: `NULL_ARGUMENT`, `READ_ONLY`, `PRODUCER_EXISTS` (single-producer bus with a live
/// producer), `TOO_MANY_PRODUCERS`, `IO`.
///
/// # Safety
/// `bus` is NULL or a live bus handle; `out` is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn shmbus_bus_publisher(
    bus: *const ShmbusBus,
    out: *mut *mut ShmbusPublisher,
) -> ShmbusStatus {
    guard(|| {
        // SAFETY: the caller's contract for `bus`.
        let h = unsafe { args::handle(bus, "bus") }?;
        let out = args::out_arg(out, "out")?;
        let publisher = h.bus.bytes_publisher()?;
        // SAFETY: checked not NULL; the caller promises it writable.
        unsafe { args::put(out, args::into_handle(ShmbusPublisher { publisher })) };
        Ok(())
    })
}

/// Detaches and frees a publisher. NULL does nothing.
///
/// # Safety
/// `publisher` is NULL or a publisher handle not freed before.
#[no_mangle]
pub unsafe extern "C" fn shmbus_publisher_free(publisher: *mut ShmbusPublisher) {
    // SAFETY: the caller's contract.
    unsafe { args::free_handle(publisher) }
}

/// Publishes the `len` bytes at `data` as one message (`data` may be NULL when `len` is 0).
/// If `seq` is not NULL, `*seq` is the message's sequence number.
///
/// Errors: `NULL_ARGUMENT`, `MESSAGE_TOO_LARGE` (longer than the capacity),
/// `WRONG_MESSAGE_SIZE` (typed bus, another size), `DROPPED` (multi-producer bus: the message
/// was dropped and subscribers count it lost), `USED_AFTER_FORK`.
///
/// # Safety
/// `publisher` is NULL or a live publisher used by no other thread now; `data` is NULL or
/// points to `len` readable bytes; `seq` is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn shmbus_publisher_publish(
    publisher: *mut ShmbusPublisher,
    data: *const u8,
    len: usize,
    seq: *mut u64,
) -> ShmbusStatus {
    guard(|| {
        // SAFETY: the caller's contract for `publisher`.
        let p = unsafe { args::handle_mut(publisher, "publisher") }?;
        // SAFETY: the caller's contract for `data`.
        let bytes = unsafe { args::bytes_arg(data, len, "data") }?;
        match p.publisher.publish_bytes(bytes)? {
            // SAFETY: the caller promises `seq` NULL or writable.
            Some(s) => unsafe { args::put_opt(seq, s) },
            None => return Err(dropped()),
        }
        Ok(())
    })
}

fn dropped() -> Failure {
    Failure::fixed(
        ShmbusStatus::Dropped,
        c"the message was dropped: another producer of this multi-producer bus held its slot (subscribers count it lost)",
    )
}

/// Publishes one message written in place: calls `fill(ctx, writer)` once, and the bytes it
/// writes with `shmbus_slot_writer_write` go straight into the slot (no intermediate copy). The
/// message's length is the furthest byte written; bytes below it that were not written are
/// zero. If `seq` is not NULL, `*seq` is the message's sequence number.
///
/// Errors: `NULL_ARGUMENT` (`publisher`, `fill`), `DROPPED` (multi-producer: dropped before
/// `fill` ran), `USED_AFTER_FORK`.
///
/// # Safety
/// `publisher` is NULL or a live publisher used by no other thread now; `fill` follows the
/// rules of `ShmbusFill`; `seq` is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn shmbus_publisher_publish_with(
    publisher: *mut ShmbusPublisher,
    fill: ShmbusFill,
    ctx: *mut c_void,
    seq: *mut u64,
) -> ShmbusStatus {
    guard(|| {
        // SAFETY: the caller's contract for `publisher`.
        let p = unsafe { args::handle_mut(publisher, "publisher") }?;
        let fill = fill.ok_or_else(|| Failure::null("fill"))?;
        let dropped_before = p.publisher.stats().dropped;
        let published = p.publisher.publish_with(|w| {
            let mut writer = ShmbusSlotWriter { writer: w };
            // SAFETY: `fill` is the caller's function with the caller's context; the writer
            // lives for the call, which is all `ShmbusFill` may use it for.
            unsafe { fill(ctx, &mut writer) }
        });
        match published {
            // SAFETY: the caller promises `seq` NULL or writable.
            Some((s, ())) => unsafe { args::put_opt(seq, s) },
            None if p.publisher.stats().dropped > dropped_before => return Err(dropped()),
            None => {
                return Err(Failure::new(
                    ShmbusStatus::UsedAfterFork,
                    "this publisher was attached by the parent of this process before fork(2); attach a publisher in this process",
                ))
            }
        }
        Ok(())
    })
}

/// Writes `len` bytes from `data` at byte `offset` of the message being published (inside a
/// fill function). Bytes between the previous end of the message and `offset` become zero.
///
/// Errors: `NULL_ARGUMENT`, `MESSAGE_TOO_LARGE` (the write would end past the slot's
/// capacity; nothing is written).
///
/// # Safety
/// `writer` is NULL or the writer passed to the running fill function; `data` is NULL or
/// points to `len` readable bytes.
#[no_mangle]
pub unsafe extern "C" fn shmbus_slot_writer_write(
    writer: *mut ShmbusSlotWriter,
    offset: usize,
    data: *const u8,
    len: usize,
) -> ShmbusStatus {
    guard(|| {
        // SAFETY: the caller's contract for `writer`.
        let w = unsafe { args::handle_mut(writer, "writer") }?;
        // SAFETY: the caller's contract for `data`.
        let bytes = unsafe { args::bytes_arg(data, len, "data") }?;
        w.writer.write_at(offset, bytes)?;
        Ok(())
    })
}

/// The capacity of the slot being written (inside a fill function), in `*capacity`.
///
/// Errors: `NULL_ARGUMENT`.
///
/// # Safety
/// `writer` is NULL or the writer passed to the running fill function; `capacity` is NULL or
/// writable.
#[no_mangle]
pub unsafe extern "C" fn shmbus_slot_writer_capacity(
    writer: *const ShmbusSlotWriter,
    capacity: *mut usize,
) -> ShmbusStatus {
    guard(|| {
        // SAFETY: the caller's contract for `writer`.
        let w = unsafe { args::handle(writer, "writer") }?;
        let out = args::out_arg(capacity, "capacity")?;
        // SAFETY: checked not NULL; the caller promises it writable.
        unsafe { args::put(out, w.writer.capacity()) };
        Ok(())
    })
}

/// Subscribes: `start` is a `ShmbusStart` value (with `start_arg` for `LAST` and `SEQUENCE`),
/// `lap_policy` a `ShmbusLapPolicy` value. Read-only handles can subscribe. On success `*out`
/// is the new subscriber.
///
/// Errors: `NULL_ARGUMENT`, `INVALID_ARGUMENT` (a value outside its enum).
///
/// # Safety
/// `bus` is NULL or a live bus handle; `out` is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn shmbus_bus_subscribe(
    bus: *const ShmbusBus,
    start: u32,
    start_arg: u64,
    lap_policy: u32,
    out: *mut *mut ShmbusSubscriber,
) -> ShmbusStatus {
    guard(|| {
        // SAFETY: the caller's contract for `bus`.
        let h = unsafe { args::handle(bus, "bus") }?;
        let out = args::out_arg(out, "out")?;
        let start = self::start_arg(start, start_arg)?;
        let policy = lap_policy_arg(lap_policy)?;
        let sub = ShmbusSubscriber {
            bus: h.bus.clone(),
            policy,
            state: Sub::Plain(h.bus.subscribe(start).lap_policy(policy)),
        };
        // SAFETY: checked not NULL; the caller promises it writable.
        unsafe { args::put(out, args::into_handle(sub)) };
        Ok(())
    })
}

/// Frees a subscriber (and its readiness descriptor, if it has one). NULL does nothing.
///
/// # Safety
/// `subscriber` is NULL or a subscriber handle not freed before.
#[no_mangle]
pub unsafe extern "C" fn shmbus_subscriber_free(subscriber: *mut ShmbusSubscriber) {
    // SAFETY: the caller's contract.
    unsafe { args::free_handle(subscriber) }
}

/// Converts a receive into its C form; a lap's `seq` is filled by the caller (the subscriber is
/// borrowed by `r` until it is dropped).
fn received(r: Recv<'_>) -> ShmbusReceived {
    match r {
        Recv::Message(m) => ShmbusReceived::message(m.seq(), 0, m.bytes()),
        Recv::Empty => ShmbusReceived::nothing(ShmbusEvent::Empty),
        Recv::Lapped { lost } => ShmbusReceived::lapped(lost, 0),
        Recv::Closed => ShmbusReceived::nothing(ShmbusEvent::Closed),
    }
}

impl ShmbusSubscriber {
    fn subscriber(&self) -> &shmbus::Subscriber {
        match &self.state {
            Sub::Plain(s) => s,
            Sub::Ready(r) => r.subscriber(),
        }
    }

    fn try_recv(&mut self) -> ShmbusReceived {
        let mut r = match &mut self.state {
            Sub::Plain(s) => received(s.try_recv()),
            Sub::Ready(r) => received(r.try_recv()),
        };
        if r.event == ShmbusEvent::Lapped {
            r.seq = self.subscriber().next_seq();
        }
        r
    }

    fn recv_timeout(&mut self, timeout_ns: u64) -> Result<ShmbusReceived, Failure> {
        let timeout = args::timeout(timeout_ns);
        let mut r = match &mut self.state {
            Sub::Plain(s) => received(s.recv_timeout(timeout)),
            Sub::Ready(_) => return self.poll_ready(Instant::now().checked_add(timeout)),
        };
        if r.event == ShmbusEvent::Lapped {
            r.seq = self.subscriber().next_seq();
        }
        Ok(r)
    }

    /// A receive that waits, once the subscriber has a readiness descriptor: the receives go
    /// through the registration (so that the descriptor stays armed) and the waits are
    /// `poll(2)` on it.
    fn poll_ready(&mut self, deadline: Option<Instant>) -> Result<ShmbusReceived, Failure> {
        let Sub::Ready(ready) = &self.state else {
            unreachable!("poll_ready runs only on a registered subscriber")
        };
        let fd = ready.as_raw_fd();
        let found = crate::ready::poll_until(fd, deadline, || {
            let r = self.try_recv();
            (r.event != ShmbusEvent::Empty).then_some(r)
        })?;
        Ok(found.unwrap_or_else(|| ShmbusReceived::nothing(ShmbusEvent::Empty)))
    }
}

/// Receives without waiting: fills `*out` with a message, `EMPTY` (nothing new), `LAPPED` (with
/// the exact count lost) or `CLOSED`. The message's bytes stay valid until the next receive on
/// this subscriber.
///
/// Errors: `NULL_ARGUMENT`.
///
/// # Safety
/// `subscriber` is NULL or a live subscriber used by no other thread now; `out` is NULL or
/// writable.
#[no_mangle]
pub unsafe extern "C" fn shmbus_subscriber_try_recv(
    subscriber: *mut ShmbusSubscriber,
    out: *mut ShmbusReceived,
) -> ShmbusStatus {
    guard(|| {
        // SAFETY: the caller's contract for `subscriber`.
        let s = unsafe { args::handle_mut(subscriber, "subscriber") }?;
        let out = args::out_arg(out, "out")?;
        let r = s.try_recv();
        // SAFETY: checked not NULL; the caller promises it writable.
        unsafe { args::put(out, r) };
        Ok(())
    })
}

/// Receives, waiting at most `timeout_ns` nanoseconds (`UINT64_MAX`: for ever) for a message:
/// fills `*out` as `shmbus_subscriber_try_recv` does; `EMPTY` means the time ran out. Sleeps on
/// the bus's futex (or, once the subscriber has a readiness descriptor, in `poll(2)` on it).
///
/// Errors: `NULL_ARGUMENT`, `IO` (`poll` failed).
///
/// # Safety
/// `subscriber` is NULL or a live subscriber used by no other thread now; `out` is NULL or
/// writable.
#[no_mangle]
pub unsafe extern "C" fn shmbus_subscriber_recv_timeout(
    subscriber: *mut ShmbusSubscriber,
    timeout_ns: u64,
    out: *mut ShmbusReceived,
) -> ShmbusStatus {
    guard(|| {
        // SAFETY: the caller's contract for `subscriber`.
        let s = unsafe { args::handle_mut(subscriber, "subscriber") }?;
        let out = args::out_arg(out, "out")?;
        let r = s.recv_timeout(timeout_ns)?;
        // SAFETY: checked not NULL; the caller promises it writable.
        unsafe { args::put(out, r) };
        Ok(())
    })
}

/// Counters of a subscriber: over any window it observed, `received + lost` is the number of
/// sequence numbers published.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct ShmbusSubscriberStats {
    /// Messages delivered.
    pub received: u64,
    /// Sequence numbers skipped (lapped, or abandoned by a producer that died mid-write).
    pub lost: u64,
    /// Times the subscriber was lapped.
    pub laps: u64,
    /// The sequence number the subscriber expects next.
    pub next_seq: u64,
}

/// Fills `*out` with the subscriber's counters and position.
///
/// Errors: `NULL_ARGUMENT`.
///
/// # Safety
/// `subscriber` is NULL or a live subscriber; `out` is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn shmbus_subscriber_stats(
    subscriber: *const ShmbusSubscriber,
    out: *mut ShmbusSubscriberStats,
) -> ShmbusStatus {
    guard(|| {
        // SAFETY: the caller's contract for `subscriber`.
        let s = unsafe { args::handle(subscriber, "subscriber") }?.subscriber();
        let out = args::out_arg(out, "out")?;
        let st = s.stats();
        let stats = ShmbusSubscriberStats {
            received: st.received,
            lost: st.lost,
            laps: st.laps,
            next_seq: s.next_seq(),
        };
        // SAFETY: checked not NULL; the caller promises it writable.
        unsafe { args::put(out, stats) };
        Ok(())
    })
}

/// A file descriptor that an event loop (`poll`, `epoll`, ...) can wait on: readable when a
/// receive may find something (a message, a lap, or the bus closing). Readiness may be
/// spurious, never lost: after it turns readable, receive with `shmbus_subscriber_try_recv`
/// until it gives `EMPTY`, which re-arms it. The first call registers the subscriber with the
/// bus handle's waker thread (one per bus in a process); later calls give the same descriptor.
/// The descriptor belongs to the subscriber: do not close it; `shmbus_subscriber_free` does.
///
/// Errors: `NULL_ARGUMENT`, `IO` (no eventfd could be made, or the waker thread not started;
/// the subscriber stays usable, at the position it had).
///
/// # Safety
/// `subscriber` is NULL or a live subscriber used by no other thread now; `fd` is NULL or
/// writable.
#[no_mangle]
pub unsafe extern "C" fn shmbus_subscriber_fd(
    subscriber: *mut ShmbusSubscriber,
    fd: *mut c_int,
) -> ShmbusStatus {
    guard(|| {
        // SAFETY: the caller's contract for `subscriber`.
        let s = unsafe { args::handle_mut(subscriber, "subscriber") }?;
        let fd = args::out_arg(fd, "fd")?;
        if let Sub::Plain(_) = s.state {
            // Made anew only to hold the place while the old one is moved into its readiness.
            let placeholder = Sub::Plain(s.bus.subscribe(shmbus::Start::Next));
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
                        s.bus
                            .subscribe(shmbus::Start::Sequence(next))
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
