//! The bus handle and its builder.

use std::marker::PhantomData;
use std::sync::Arc;
use std::time::Duration;

use crate::bus::Publisher;
use crate::bus::{Start, Subscriber};
use crate::error::{Error, Result};
use crate::segment::header::{
    Geometry, HeaderSnapshot, ProducerMode, SegmentKind, TypeInfo, MAX_PRODUCERS, W_KIND_OWN,
};
use crate::segment::kind::{self, by_name, constructors, option_setters, Blueprint, Kind, Options};
use crate::segment::payload::{Payload, Raw};
use crate::segment::{self, Expect, Segment, Shape};
use crate::sync::{AtomicU64, Ordering};
use crate::wait::Wakeup;

/// Slots of a new bus unless [`BusBuilder::slots`] says otherwise.
pub const DEFAULT_SLOTS: u64 = 1024;
/// Payload capacity of a new raw bus unless [`BusBuilder::capacity`] says otherwise.
pub const DEFAULT_RAW_CAPACITY: usize = 240;
/// Stall bound of a new multi-producer bus unless [`BusBuilder::stall_bound`] says otherwise:
/// about 9 times the longest time a healthy, runnable process was seen off the CPU on a loaded
/// 2-core machine (112 ms; docs/design.md §6, "Stalls").
pub const DEFAULT_STALL_BOUND: Duration = Duration::from_secs(1);

/// Header word of a multi-producer bus holding its stall bound in ns (0: none, wait as long as
/// the claimant lives), written before the magic publishes the segment (docs/design.md §6).
pub(crate) const W_STALL_BOUND: usize = W_KIND_OWN;

/// The stall bound (ns) a bus's header records, `None` if it records none (a single-producer
/// bus, or one created without a bound or before bounds existed).
pub(crate) fn stall_bound_ns(seg: &Segment) -> Option<u64> {
    if seg.mode != ProducerMode::Multi {
        return None;
    }
    // Written before the magic's Release, which the open pipeline's Acquire load pairs with;
    // never written again. Any value a hostile writer stores only makes readers pass stalls
    // sooner or later, which that writer could cause anyway by not writing.
    let ns = seg.words()[W_STALL_BOUND].load(Ordering::Relaxed);
    (ns != 0).then_some(ns)
}

/// A handle on a named bus (or an in-process one). Cheap to clone; publishers and subscribers
/// made from it keep the mapping alive.
pub struct Bus<T: Payload = Raw> {
    seg: Arc<Segment>,
    _type: PhantomData<fn() -> T>,
}

impl<T: Payload> Clone for Bus<T> {
    fn clone(&self) -> Self {
        Bus {
            seg: self.seg.clone(),
            _type: PhantomData,
        }
    }
}

impl<T: Payload> std::fmt::Debug for Bus<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Bus")
            .field("name", &self.seg.name())
            .field("slots", &self.seg.geometry.slot_count)
            .field("capacity", &self.seg.geometry.capacity)
            .field("mode", &self.seg.mode)
            .field("type", &self.seg.ty.name)
            .finish()
    }
}

impl Bus<Raw> {
    by_name!(
        BusBuilder,
        "bus",
        read_write: "able to publish, and to let subscribers sleep on the futex",
        read_only: "subscribers only"
    );
}

impl Bus<Raw> {
    /// Attaches a producer of raw bytes to a bus of any message type, for tools and bindings
    /// that do not have the Rust type (the `shmbus publish` command, other languages). On a raw
    /// bus it is [`Bus::publisher`]; on a typed one every message must be exactly the type's
    /// size, and its bytes are taken as one value of the type (any bytes are one: typed buses
    /// carry `Pod` types). Subscribers of the type receive it as usual.
    ///
    /// # Errors
    ///
    /// Those of [`Bus::publisher`] but [`Error::TypeMismatch`]. Its publishes refuse a message of
    /// another size with [`Error::WrongMessageSize`].
    pub fn bytes_publisher(&self) -> Result<Publisher<Raw>> {
        kind::writable(&self.seg)?;
        Publisher::attach_bytes(self.seg.clone())
    }
}

impl<T: Payload> Bus<T> {
    /// Attaches a producer. On a single-producer bus this fails with
    /// [`Error::ProducerExists`] while another producer lives.
    ///
    /// # Errors
    ///
    /// [`Error::ReadOnly`] on a read-only handle; [`Error::TypeMismatch`] when a raw bus is
    /// published on as typed or the reverse; [`Error::ProducerExists`] (single producer) or
    /// [`Error::TooManyProducers`] (multi producer) while the bus is taken; [`Error::Io`] if the
    /// lock on the producer table cannot be taken for another reason.
    pub fn publisher(&self) -> Result<Publisher<T>> {
        kind::writable(&self.seg)?;
        kind::same_rawness::<T>(&self.seg)?;
        Publisher::attach(self.seg.clone())
    }

    /// A subscriber that sees only messages published from now on.
    pub fn subscriber(&self) -> Subscriber<T> {
        self.subscribe(Start::Next)
    }

    /// A subscriber starting where `start` says.
    pub fn subscribe(&self, start: Start) -> Subscriber<T> {
        Subscriber::new(self.seg.clone(), start)
    }

    /// The bus name.
    pub fn name(&self) -> &str {
        self.seg.name()
    }

    /// Number of slots in the ring.
    pub fn slots(&self) -> u64 {
        self.seg.geometry.slot_count
    }

    /// Largest message, in bytes.
    pub fn capacity(&self) -> usize {
        self.seg.geometry.capacity
    }

    /// Single or multi producer.
    pub fn producer_mode(&self) -> ProducerMode {
        self.seg.mode
    }

    /// How long a subscriber waits for a sequence whose producer is alive but has not written
    /// it (stopped, or descheduled mid-publish) before passing it, counted lost (`None`: as long
    /// as that producer lives). Set at create ([`BusBuilder::stall_bound`]); always `None` on a
    /// single-producer bus, where a claimed sequence is always written.
    pub fn stall_bound(&self) -> Option<Duration> {
        stall_bound_ns(&self.seg).map(Duration::from_nanos)
    }

    /// The message type recorded in the segment.
    pub fn message_type(&self) -> &TypeInfo {
        &self.seg.ty
    }

    /// Whether this handle mapped the segment read-only.
    pub fn is_read_only(&self) -> bool {
        !self.seg.is_writable()
    }

    /// A fresh read of the whole header.
    pub fn header(&self) -> HeaderSnapshot {
        self.seg.header()
    }

    /// The next sequence number to be claimed by a producer.
    pub fn cursor(&self) -> u64 {
        crate::bus::ring::Ring::of(&self.seg).cursor()
    }

    /// Whether any producer is attached and alive. A producer that crashed is not (the kernel
    /// releases its lock).
    pub fn has_producers(&self) -> bool {
        self.seg.producers_alive()
    }

    /// The producers attached now: pid and time of each one's last publish.
    pub fn producers(&self) -> Vec<ProducerInfo> {
        (0..MAX_PRODUCERS)
            .filter(|&i| self.seg.producer_alive(i))
            .map(|i| ProducerInfo {
                index: i,
                pid: self.seg.producer_pid(i),
                last_publish_ns: self.seg.producer_last_publish(i),
            })
            .collect()
    }

    /// The live producers of a multi-producer bus holding a sequence they claimed and have not
    /// published (nor given up): subscribers wait for each, up to the stall bound, then pass its
    /// sequence (docs/design.md §6, "Stalls"). A snapshot: a producer mid-publish shows for as
    /// long as the publish takes, so a hold means a stall only if it persists (the library
    /// keeps no clock on claims; `shmbus info` looks twice). Empty for a single-producer bus,
    /// whose producer names no claim.
    ///
    /// Reads only: a read-only handle may ask. One liveness question (a system call) per hold.
    pub fn holds(&self) -> Vec<ProducerHold> {
        use crate::bus::ring::{
            busy_version, done_version, ABANDONED, CLAIMING, DROPPED, SEQ_LIMIT,
        };
        let ring = crate::bus::ring::Ring::of(&self.seg);
        // The cursor first: its Acquire makes the claims of the sequences below it visible.
        let cursor = ring.cursor();
        (0..MAX_PRODUCERS)
            .filter_map(|i| {
                // ORDERING: Acquire pairs with the Release claim-word stores: a claim stored
                // after its producer committed the sequence before shows that commit below.
                let c = crate::sync::load_acquire(ring.claim_word(i));
                if c == 0 || c == CLAIMING || c & DROPPED != 0 {
                    return None;
                }
                let seq = c - 1;
                if seq >= SEQ_LIMIT || seq >= cursor {
                    return None;
                }
                // A claim keeps naming its last sequence once published: the slot tells.
                let v = ring.version(seq) & !ABANDONED;
                if v >= done_version(seq) || !self.seg.producer_alive(i) {
                    return None;
                }
                Some(ProducerHold {
                    index: i,
                    pid: self.seg.producer_pid(i),
                    seq,
                    writing: v == busy_version(seq),
                })
            })
            .collect()
    }

    /// Counts the slots by state: never written, written, abandoned, being written now.
    pub fn slot_census(&self) -> SlotCensus {
        let ring = crate::bus::ring::Ring::of(&self.seg);
        let mut c = SlotCensus::default();
        for i in 0..ring.geometry().slot_count {
            match ring.version(i) {
                0 => c.empty += 1,
                v if v & 1 == 1 => c.being_written += 1,
                v if v & crate::bus::ring::ABANDONED != 0 => c.abandoned += 1,
                _ => c.written += 1,
            }
        }
        c
    }
}

/// A live producer holding a sequence it claimed and has not published: one of
/// [`Bus::holds`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ProducerHold {
    /// Producer-table entry.
    pub index: usize,
    /// Its process id.
    pub pid: u32,
    /// The sequence its claim word names.
    pub seq: u64,
    /// `true`: it took the sequence's slot and is writing it (or stopped while writing);
    /// `false`: it has not taken the slot yet (a writer a lap behind still holds it).
    pub writing: bool,
}

/// A live producer, as [`Bus::producers`] reports it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ProducerInfo {
    /// Producer-table entry.
    pub index: usize,
    /// Its process id.
    pub pid: u32,
    /// `CLOCK_MONOTONIC_COARSE` (ns) when it attached or last stamped its activity (a producer
    /// stamps once in 1024 publishes, so that publishing reads no clock); 0 if never.
    pub last_publish_ns: u64,
}

impl ProducerInfo {
    /// Time since this producer attached or last stamped its activity (once in 1024 publishes;
    /// a few ms of resolution), `None` if it never did.
    pub fn since_last_publish(&self) -> Option<std::time::Duration> {
        (self.last_publish_ns != 0).then(|| {
            std::time::Duration::from_nanos(
                segment::coarse_now_ns().saturating_sub(self.last_publish_ns),
            )
        })
    }
}

/// Slot states, as [`Bus::slot_census`] counts them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SlotCensus {
    /// Never written.
    pub empty: u64,
    /// Holding a complete message.
    pub written: u64,
    /// Holding a sequence given up by its writer (it died, or its fill panicked).
    pub abandoned: u64,
    /// Being written at the moment of the census (or left so by a dead producer).
    pub being_written: u64,
}

/// Creates or opens a bus; reads like a sentence:
///
/// ```
/// # let name = format!("doc-builder-{}", std::process::id());
/// use shmbus::BusBuilder;
/// let bus = BusBuilder::new(&name).slots(256).capacity(64).multi_producer().create()?;
/// assert_eq!(bus.slots(), 256);
/// # shmbus::Bus::remove(&name)?;
/// # Ok::<(), shmbus::Error>(())
/// ```
#[derive(Debug)]
#[must_use]
pub struct BusBuilder<T: Payload = Raw> {
    opts: Options,
    slots: u64,
    capacity: Option<usize>,
    mode: ProducerMode,
    first_seq: u64,
    wakeup: Wakeup,
    /// `None`: not set (the default for the mode); `Some(b)`: set to `b`.
    stall_bound: Option<Option<Duration>>,
    _type: PhantomData<fn() -> T>,
}

impl<T: Payload> Clone for BusBuilder<T> {
    fn clone(&self) -> Self {
        BusBuilder {
            opts: self.opts.clone(),
            _type: PhantomData,
            ..*self
        }
    }
}

impl BusBuilder<Raw> {
    /// Starts a builder for bus `name`, carrying raw bytes.
    pub fn new(name: &str) -> Self {
        BusBuilder {
            opts: Options::new(name),
            slots: DEFAULT_SLOTS,
            capacity: None,
            mode: ProducerMode::Single,
            first_seq: 0,
            wakeup: Wakeup::default(),
            stall_bound: None,
            _type: PhantomData,
        }
    }
}

impl<T: Payload> BusBuilder<T> {
    /// Makes the bus carry messages of type `U` (checked when opening: another type, even of the
    /// same size, is refused).
    pub fn message_type<U: Payload>(self) -> BusBuilder<U> {
        BusBuilder {
            opts: self.opts,
            slots: self.slots,
            capacity: self.capacity,
            mode: self.mode,
            first_seq: self.first_seq,
            wakeup: self.wakeup,
            stall_bound: self.stall_bound,
            _type: PhantomData,
        }
    }

    /// Number of slots: a power of two (never rounded: anything else is an error).
    pub fn slots(mut self, slots: u64) -> Self {
        self.slots = slots;
        self
    }

    /// Payload capacity of each slot, in bytes. Defaults to the message type's size, or
    /// 240 bytes for raw buses (a 256-byte slot).
    pub fn capacity(mut self, bytes: usize) -> Self {
        self.capacity = Some(bytes);
        self
    }

    /// Single or multi producer (default single).
    pub fn producer_mode(mut self, mode: ProducerMode) -> Self {
        self.mode = mode;
        self
    }

    /// How producers and sleeping subscribers of a created bus agree that no wake-up is lost
    /// (default [`Wakeup::Barrier`]: publishing pays nothing, each sleep runs `membarrier`, which
    /// interrupts the CPUs of every producer process on the host). [`Wakeup::Fence`] makes every
    /// publish run a full fence instead, and sleeps interrupt nobody. Stored in the bus; opening
    /// follows what the bus says. See docs/design.md §7, "Wake-up choice".
    pub fn wakeup(mut self, wakeup: Wakeup) -> Self {
        self.wakeup = wakeup;
        self
    }

    /// Multi producer only: how long a subscriber waits for a sequence whose producer is alive
    /// but has not written it (stopped by a signal or a debugger, or descheduled mid-publish)
    /// before it passes that sequence and counts it lost, so that one frozen producer does not
    /// stop every subscriber. The producer, when it runs again, still publishes it, for
    /// subscribers that had not reached it. `None`: wait as long as that producer lives.
    /// Default [`DEFAULT_STALL_BOUND`]. Stored in the bus; opening follows what the bus says.
    /// See docs/design.md §6, "Stalls".
    pub fn stall_bound(mut self, bound: Option<Duration>) -> Self {
        self.stall_bound = Some(bound);
        self
    }

    /// Shorthand for `producer_mode(ProducerMode::Multi)`.
    pub fn multi_producer(self) -> Self {
        self.producer_mode(ProducerMode::Multi)
    }

    option_setters!(typed);

    /// First sequence number of a new bus (default 0). Exists so tests can start near large
    /// values; applications have no reason to change it.
    #[doc(hidden)]
    pub fn first_sequence(mut self, seq: u64) -> Self {
        self.first_seq = seq;
        self
    }

    fn geometry(&self) -> Result<(Geometry, TypeInfo)> {
        let ty = self.type_info();
        if ty.align > 8 {
            return Err(Error::InvalidConfig(format!(
                "type {} has alignment {}; shmbus payloads are 8-byte aligned",
                ty.name, ty.align
            )));
        }
        let capacity = self.capacity.unwrap_or(if ty.is_raw() {
            DEFAULT_RAW_CAPACITY
        } else {
            ty.size as usize
        });
        if !ty.is_raw() && capacity < ty.size as usize {
            return Err(Error::MessageTooLarge {
                len: ty.size as usize,
                capacity,
            });
        }
        let g = Geometry::new(self.slots, capacity).map_err(Error::InvalidConfig)?;
        if self.first_seq > crate::bus::ring::FIRST_SEQ_LIMIT {
            return Err(Error::InvalidConfig(format!(
                "first sequence {} is too large (the limit is {})",
                self.first_seq,
                crate::bus::ring::FIRST_SEQ_LIMIT
            )));
        }
        Ok((g, ty))
    }

    /// The stall bound to store (ns, 0 = none).
    fn stall_bound_word(&self) -> Result<u64> {
        match (self.mode, self.stall_bound) {
            (ProducerMode::Single, None | Some(None)) => Ok(0),
            (ProducerMode::Single, Some(Some(_))) => Err(Error::InvalidConfig(
                "a stall bound applies to a multi-producer bus only (a single producer's \
                 claimed sequence is always written)"
                    .into(),
            )),
            (ProducerMode::Multi, Some(None)) => Ok(0),
            (ProducerMode::Multi, Some(Some(d))) if d.is_zero() => Err(Error::InvalidConfig(
                "a stall bound of 0 would pass every sequence being written; use None to wait \
                 as long as the producer lives"
                    .into(),
            )),
            (ProducerMode::Multi, b) => Ok(u64::try_from(
                b.flatten().unwrap_or(DEFAULT_STALL_BOUND).as_nanos(),
            )
            .unwrap_or(u64::MAX)),
        }
    }

    constructors!(
        Bus<T>,
        "bus",
        config: "[`Error::InvalidConfig`] for a slot count that is not a power of two within the limits, a zero or too large capacity, a message type whose alignment exceeds 8 bytes, or a stall bound on a single-producer bus or of zero; [`Error::MessageTooLarge`] if the message type does not fit the capacity asked for.",
        open: "[`Error::TypeMismatch`] for a typed open.",
        same: "geometry, producer mode and type"
    );
}

impl<T: Payload> Kind for BusBuilder<T> {
    type Handle = Bus<T>;
    /// The stall bound word (ns, 0 = none).
    type Own = u64;

    fn options(&self) -> &Options {
        &self.opts
    }

    fn blueprint(&self) -> Result<Blueprint<u64>> {
        let (geometry, ty) = self.geometry()?;
        let stall_bound = self.stall_bound_word()?;
        let shape = Shape {
            kind: SegmentKind::Bus,
            geometry,
            mode: self.mode,
            ty,
            first_seq: self.first_seq,
        };
        Ok(Blueprint {
            wakeup: self.wakeup,
            ..Blueprint::new(shape, stall_bound)
        })
    }

    /// The stall bound, before the magic publishes the segment.
    fn init(&self, stall_bound: &u64, words: &[AtomicU64]) {
        words[W_STALL_BOUND].store(*stall_bound, Ordering::Relaxed);
    }

    fn expect(&self) -> Expect {
        let wanted = self.type_info();
        Expect::bus((!wanted.is_raw()).then_some(wanted))
    }

    fn adopt(&self, seg: Segment) -> Result<Bus<T>> {
        Ok(Bus {
            seg: Arc::new(seg),
            _type: PhantomData,
        })
    }

    fn differs(&self, wanted: &Blueprint<u64>, bus: &Bus<T>) -> Option<(String, String)> {
        let (s, w) = (&bus.seg, &wanted.shape);
        (s.geometry != w.geometry || s.mode != w.mode || (w.ty.is_raw() && !s.ty.is_raw())).then(
            || {
                (
                    describe(s.geometry, s.mode, &s.ty),
                    describe(w.geometry, w.mode, &w.ty),
                )
            },
        )
    }
}

fn describe(g: Geometry, mode: ProducerMode, ty: &TypeInfo) -> String {
    format!(
        "{} slots of {} bytes, {:?} producer, type {}",
        g.slot_count, g.capacity, mode, ty
    )
}
