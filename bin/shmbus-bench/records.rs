//! Records segments (variable-size records in a byte ring) in the latency and throughput
//! harnesses: the same ping-pong, stamped hops and flat-out publishing as the bus, over
//! `shmbus::records`; beside the throughput, in the same run, the floor of a cross-process
//! transfer (a minimal single-producer byte ring with flow control moving the same sizes between
//! the same cores, `crate::floor`, with variants that add a broadcast reader's atomic copy-out)
//! and, for scale, single-core `memcpy` of the same sizes.

use std::hint::black_box;

use shmbus::records::{RecordPublisher, RecordRecv, RecordSubscriber, Records, RecordsBuilder};
use shmbus::Start;

use crate::ctx::Ctx;
use crate::engine::consume::{serve, ConsumerArgs, Next, Source};
use crate::engine::pingpong::{echo_loop, echo_role, start_echo, EchoArgs, Link, Poll};
use crate::engine::publish::{self, Load, Sink, Transport};
use crate::floor;
use crate::proto::{say, stamp_of};
use crate::report::{Report, ThroughputRow};
use crate::sys::{self, BusGuard, Peer};

/// A ring that holds at least 64 of the largest records of a run, and at least 4 MiB.
fn ring_for(payload: usize) -> u64 {
    (((payload + 16) * 64) as u64)
        .next_power_of_two()
        .max(4 << 20)
}

impl Sink for RecordPublisher {
    #[inline]
    fn publish(&mut self, buf: &[u8]) -> Result<(), String> {
        self.publish_bytes(buf)
            .map(|_| ())
            .map_err(|e| format!("publish failed: {e}"))
    }
}

/// A records ping-pong end: publishes on one records segment, subscribes to the other.
type RecordsLink = Link<RecordPublisher, RecordSubscriber>;

/// A records ping-pong end receives on a records subscriber.
impl Poll for RecordSubscriber {
    #[inline]
    fn poll(&mut self) -> Result<Option<u64>, String> {
        match self.try_recv() {
            RecordRecv::Record(m) => Ok(Some(stamp_of(m.bytes()))),
            RecordRecv::Empty | RecordRecv::Closed => Ok(None),
            RecordRecv::Lapped { lost } => Err(format!(
                "lapped ({lost} lost), which one record in flight cannot do"
            )),
        }
    }
}

fn create(name: &str, payload: usize) -> Result<Records, String> {
    RecordsBuilder::new(name)
        .bytes(ring_for(payload))
        .create()
        .map_err(|e| format!("cannot create records segment {name}: {e}"))
}

/// Sets up a ping segment (ours) and a pong segment (the echo's) and starts the records echo on
/// core `b`.
pub fn setup(
    ctx: &Ctx,
    payload: usize,
    b: usize,
    stamp: bool,
) -> Result<(RecordsLink, Peer, [BusGuard; 2]), String> {
    let names = [BusGuard::new("rping"), BusGuard::new("rpong")];
    let ping = create(names[0].name(), payload)?;
    let pong = create(names[1].name(), payload)?;
    let tx = ping
        .publisher()
        .map_err(|e| format!("cannot publish on {}: {e}", ping.name()))?;
    let rx = pong.subscribe(Start::Oldest);
    let mut role = echo_role("records-echo", &names);
    role.extend(["--payload".into(), payload.to_string()]);
    let echo = start_echo(ctx, "the records echo process", role, b, stamp)?;
    Ok((Link::new(tx, rx, payload), echo, names))
}

/// The echo child: answers every record on `ping` with one of the same length on `pong`.
pub fn child_echo(a: &EchoArgs, payload: usize) -> Result<(), String> {
    let (ping, pong) = (&a.ping, &a.pong);
    let ping = Records::open_read_only(ping).map_err(|e| format!("cannot open {ping}: {e}"))?;
    let rx = ping.subscribe(Start::Oldest);
    let pong = Records::open(pong).map_err(|e| format!("cannot open {pong}: {e}"))?;
    let tx = pong
        .publisher()
        .map_err(|e| format!("cannot publish on {}: {e}", pong.name()))?;
    // Answers as long as the pings: the parent passes the run's payload size.
    let mut link = Link::new(tx, rx, payload.clamp(8, pong.max_record()));
    sys::pin(a.core)?;
    say("ready");
    echo_loop(a.clock, &mut link, a.stamp)
}

struct RecordsSource {
    records: Records,
    rx: RecordSubscriber,
}

impl Source for RecordsSource {
    #[inline]
    fn next(&mut self) -> Next {
        match self.rx.try_recv() {
            RecordRecv::Record(m) => Next::message(m.bytes()),
            RecordRecv::Lapped { lost } => Next::Lost(lost),
            RecordRecv::Empty | RecordRecv::Closed => Next::Empty,
        }
    }

    fn finished(&self) -> bool {
        !self.records.has_producers() && self.rx.next_seq() >= self.records.records_published()
    }
}

/// The throughput consumer child: reads (copies out) every record until the stop record.
pub fn child_consume(a: &ConsumerArgs) -> Result<(), String> {
    let records =
        Records::open_read_only(&a.bus).map_err(|e| format!("cannot open {}: {e}", a.bus))?;
    let rx = records.subscribe(Start::Next);
    serve(&mut RecordsSource { records, rx }, a.core, a.clock)
}

/// One throughput run over a records segment: this process publishes `payload`-byte records
/// flat out to `consumers` consumer processes.
pub fn throughput(
    ctx: &Ctx,
    report: &mut Report,
    payload: usize,
    consumers: usize,
    producer: usize,
    messages: u64,
) -> Result<(), String> {
    let payload = payload.max(16);
    let guard = BusGuard::new("rthroughput");
    let records = create(guard.name(), payload)?;
    let tx = records
        .publisher()
        .map_err(|e| format!("cannot publish on {}: {e}", guard.name()))?;
    let load = Load {
        payload,
        slots: records.ring_bytes(),
        paced: 0,
        gap_ns: 0,
        flat: messages,
    };
    let role = [
        "records-consume".into(),
        "--bus".into(),
        guard.name().into(),
    ];
    let t = Transport {
        name: "records",
        role: &role,
        reports_losses: true,
    };
    let row = publish::throughput(ctx, &t, consumers, producer, &load, tx)?;
    report.throughput.push(row);
    Ok(())
}

/// The floor of a copy-out design: copies of `payload` bytes per second on one core, from a
/// source as large as the records ring (so it streams from memory as a consumer does) into one
/// buffer, in the same run. Reported as a throughput row of transport `memcpy`.
pub fn memcpy_floor(
    ctx: &Ctx,
    report: &mut Report,
    payload: usize,
    core: usize,
    messages: u64,
) -> Result<(), String> {
    let payload = payload.max(16);
    sys::pin(core)?;
    let ring = ring_for(payload) as usize;
    let src = vec![1u8; ring];
    let mut dst = vec![0u8; payload];
    let per_ring = (ring / payload).max(1);
    let clock = ctx.clock;
    let start = clock.now();
    for i in 0..messages as usize {
        let at = (i % per_ring) * payload;
        dst.copy_from_slice(&src[at..at + payload]);
        black_box(&mut dst);
    }
    let secs = (clock.now().wrapping_sub(start) as f64 * ctx.scale / 1e9).max(1e-12);
    let rate = messages as f64 / secs;
    report.throughput.push(ThroughputRow {
        transport: "memcpy",
        payload,
        slots: ring as u64,
        messages,
        seconds: secs,
        msgs_per_s: rate,
        gb_per_s: rate * payload as f64 / 1e9,
        per_consumer: Vec::new(),
    });
    Ok(())
}

/// The floor variants measured beside records, with the transport name of their rows: the plain
/// floor (memcpy in, read in place), then each thing a broadcast ring must do that it need not.
pub const FLOORS: [(&str, floor::Write, floor::Read); 5] = [
    ("floor", floor::Write::Plain, floor::Read::InPlace),
    ("floor-cp", floor::Write::Plain, floor::Read::Copy),
    ("floor-acp", floor::Write::Plain, floor::Read::AtomicCopy),
    ("floor-aa", floor::Write::Atomic, floor::Read::AtomicCopy),
    ("floor-vp", floor::Write::Versioned, floor::Read::AtomicCopy),
];

/// The cross-process floor of `payload`-byte records: a writer child on `producer`, this process
/// reading on `consumer` (the cores a records run uses), through a ring of the size a records
/// run uses (so that both have the same cache footprint). Reported as a throughput row of
/// transport `name`.
#[allow(clippy::too_many_arguments)]
pub fn floor_row(
    ctx: &Ctx,
    report: &mut Report,
    (name, how_write, how_read): (&'static str, floor::Write, floor::Read),
    payload: usize,
    producer: usize,
    consumer: usize,
    messages: u64,
) -> Result<(), String> {
    let payload = payload.max(16);
    sys::pin(consumer)?;
    let budget = (messages.saturating_mul(payload as u64))
        .clamp(ctx.size(256 << 20, 16 << 20), ctx.size(4 << 30, 64 << 20));
    let ring = ring_for(payload);
    let bytes_per_s = floor::throughput(
        producer,
        payload,
        ring as usize,
        budget,
        0,
        how_write,
        how_read,
    )?;
    let rate = bytes_per_s / payload as f64;
    report.throughput.push(ThroughputRow {
        transport: name,
        payload,
        slots: ring,
        messages: budget / payload as u64,
        seconds: budget as f64 / bytes_per_s,
        msgs_per_s: rate,
        gb_per_s: bytes_per_s / 1e9,
        per_consumer: Vec::new(),
    });
    Ok(())
}

/// `n` records of `payload` bytes published in this process, each received at once by a
/// subscriber here (unless `publish_only`): for counting instructions per record under
/// callgrind, not for timing.
#[inline(never)]
pub fn solo(payload: usize, n: u64, publish_only: bool) -> Result<(), String> {
    let guard = BusGuard::new("rsolo");
    let records = create(guard.name(), payload)?;
    let mut tx = records
        .publisher()
        .map_err(|e| format!("cannot publish on {}: {e}", guard.name()))?;
    let mut rx = records.subscribe(Start::Next);
    let buf = vec![0x5au8; payload];
    let mut sum = 0u64;
    for _ in 0..n {
        tx.publish_bytes(black_box(&buf))
            .map_err(|e| format!("publish failed: {e}"))?;
        if !publish_only {
            match rx.try_recv() {
                RecordRecv::Record(m) => sum = sum.wrapping_add(m.bytes()[payload - 1] as u64),
                other => return Err(format!("expected a record, got {other:?}")),
            }
        }
    }
    black_box(sum);
    Ok(())
}
