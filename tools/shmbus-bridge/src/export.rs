//! `shmbus-bridge export`: a read-only subscriber on the local bus whose messages, and laps,
//! go out as frames on a zenoh key (docs/design.md §16).

use std::hash::{BuildHasher, Hasher};
use std::time::{Duration, Instant};

use clap::{Args, ValueEnum};
use serde_json::json;
use shmbus::{Bus, BusBuilder, Recv, Start, Wait};
use zenoh::Wait as _;

use crate::error::BridgeError;
use crate::net::{CongestionArg, NetArgs, ReliabilityArg};
use crate::stats::{self, Reporter};
use crate::wire::{Encoder, Origin, Shape};

/// How often the exporter repeats its hello frame (shape and next sequence).
pub const HELLO_EVERY: Duration = Duration::from_millis(500);
/// The longest wait for the bus between looks at the stop flag and the timers.
const TICK: Duration = Duration::from_millis(100);

/// `--from`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, ValueEnum)]
pub enum StartArg {
    /// The oldest message still in the ring, then what follows.
    Oldest,
    /// Only messages published from now on.
    #[default]
    Next,
}

/// `--wait`: how the exporter waits for the bus when it is idle.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, ValueEnum)]
pub enum WaitArg {
    /// Sleep until a publish wakes it (if the bus could be opened read-write; a read-only
    /// subscriber cannot be woken and looks again every millisecond).
    #[default]
    Sleep,
    /// Yield the CPU between looks: lower latency, a busy core.
    Yield,
    /// Spin: the lowest latency, a whole core.
    Spin,
}

/// Flags of `export`.
#[derive(Args, Debug)]
pub struct ExportArgs {
    /// The local bus to export (read, never written to; opened read-write when allowed, only
    /// to be woken by publishes)
    pub name: String,
    #[command(flatten)]
    pub net: NetArgs,
    /// Where to start reading the bus
    #[arg(long, value_enum, default_value_t = StartArg::Next)]
    pub from: StartArg,
    /// Reliable delivery (the default): zenoh retransmits, so nothing is lost in transit while
    /// the link holds
    #[arg(long, conflicts_with = "best_effort")]
    pub reliable: bool,
    /// Best-effort delivery: cheaper; samples lost in transit show as counted gaps
    #[arg(long)]
    pub best_effort: bool,
    /// When zenoh's queue is full: block (the default: the exporter slows down and, if its bus
    /// laps it, sends a loss marker) or drop (the importer counts the gap as lost in transit)
    #[arg(long, value_enum, default_value_t = CongestionArg::Block)]
    pub congestion: CongestionArg,
    /// Most messages per zenoh sample. A batch goes out as soon as the bus has nothing more to
    /// read (unless --linger-us), so batching costs no latency when the bus is quiet
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u32).range(1..=65536))]
    pub batch: u32,
    /// Wait up to this many microseconds for more messages before sending a batch that is not
    /// full
    #[arg(long, default_value_t = 0)]
    pub linger_us: u64,
    /// How the exporter waits for an idle bus
    #[arg(long, value_enum, default_value_t = WaitArg::Sleep)]
    pub wait: WaitArg,
    /// Seconds between statistics lines (0: only the final one)
    #[arg(long, default_value_t = 10.0)]
    pub stats_every: f64,
    /// Statistics as JSON, one object per line on stdout
    #[arg(long)]
    pub json: bool,
}

impl ExportArgs {
    fn reliability(&self) -> ReliabilityArg {
        if self.best_effort {
            ReliabilityArg::BestEffort
        } else {
            ReliabilityArg::Reliable
        }
    }
}

/// A random instance id, never 0: std's hasher keys come from the operating system's random
/// source, mixed here with the pid and the time.
pub fn instance_id() -> u64 {
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u32(std::process::id());
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    h.write_u128(now);
    h.finish().max(1)
}

/// The identity of a bus: FNV-1a of its name, creation time and creator, so that a bus removed
/// and created again under the same name is another source (its sequence starts again).
pub fn source_id(bus: &Bus) -> u64 {
    let h = bus.header();
    let mut bytes = bus.name().as_bytes().to_vec();
    for w in [h.created_ns, u64::from(h.creator_pid), h.creator_start] {
        bytes.extend_from_slice(&w.to_le_bytes());
    }
    bytes.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// The shape a frame carries for `bus`.
pub fn shape_of(bus: &Bus) -> Shape {
    let ty = bus.message_type();
    Shape {
        slots: bus.slots(),
        // Capacities are checked against the layout's limit when a bus is opened, far below 4 GiB.
        capacity: u32::try_from(bus.capacity()).unwrap_or(u32::MAX),
        type_size: ty.size,
        type_align: ty.align,
        type_name: ty.name.clone(),
        mode: match bus.producer_mode() {
            shmbus::ProducerMode::Single => 1,
            shmbus::ProducerMode::Multi => 2,
        },
    }
}

/// The exporter's counters.
#[derive(Debug, Default)]
struct Counters {
    sent: u64,
    samples: u64,
    lost_at_exporter: u64,
    laps: u64,
    send_errors: u64,
}

/// Runs an exporter until SIGINT or SIGTERM.
pub fn run(args: &ExportArgs) -> Result<(), BridgeError> {
    let key = args.net.key(&args.name)?;
    // Read-write only so that `--wait sleep` can raise the waiter flag and be woken by each
    // publish (the exporter never publishes); where only reading is allowed, read-only, and
    // an idle bus is looked at every millisecond instead.
    let bus = match BusBuilder::new(&args.name).open() {
        Ok(bus) => bus,
        Err(_) => BusBuilder::new(&args.name)
            .read_only()
            .open()
            .map_err(BridgeError::bus(&args.name))?,
    };
    stats::install_stop_handler()?;
    let session = args.net.open()?;
    let publisher = session
        .declare_publisher(key.clone())
        .congestion_control(args.congestion.into())
        .reliability(args.reliability().into())
        .wait()
        .map_err(BridgeError::zenoh("declare the publisher"))?;
    let origin = Origin {
        instance: instance_id(),
        source: source_id(&bus),
    };
    let mut enc = Encoder::new(origin, shape_of(&bus));
    let start = match args.from {
        StartArg::Oldest => Start::Oldest,
        StartArg::Next => Start::Next,
    };
    let wait = match args.wait {
        WaitArg::Sleep => Wait::Sleep,
        WaitArg::Yield => Wait::Yield,
        WaitArg::Spin => Wait::Spin,
    };
    let mut sub = bus.subscribe(start).wait_strategy(wait);
    let mut c = Counters::default();
    let send = |frame: Vec<u8>, c: &mut Counters| {
        c.samples += 1;
        if publisher.put(frame).wait().is_err() {
            c.send_errors += 1;
        }
    };
    let mut reporter = Reporter::new(args.json, args.stats_every);
    let report = |c: &Counters, last: bool| {
        let mut m = serde_json::Map::new();
        m.insert("role".into(), json!("export"));
        m.insert("bus".into(), json!(args.name));
        m.insert("key".into(), json!(key.as_str()));
        m.insert(
            "instance".into(),
            json!(format!("{:016x}", origin.instance)),
        );
        m.insert("sent".into(), json!(c.sent));
        m.insert("samples".into(), json!(c.samples));
        m.insert("lost_at_exporter".into(), json!(c.lost_at_exporter));
        m.insert("laps".into(), json!(c.laps));
        m.insert("send_errors".into(), json!(c.send_errors));
        m.insert("final".into(), json!(last));
        m
    };
    let linger = Duration::from_micros(args.linger_us);
    let mut batch_due: Option<Instant> = None;
    let mut next_hello = Instant::now();
    while !stats::stopping() {
        let now = Instant::now();
        if enc.pending() == 0 && now >= next_hello {
            send(enc.hello(sub.next_seq()), &mut c);
            next_hello = now + HELLO_EVERY;
        }
        if reporter.due() {
            reporter.report(&report(&c, false));
        }
        let ev = match batch_due {
            Some(due) if linger.is_zero() || now >= due => sub.try_recv(),
            Some(due) => sub.recv_timeout(due - now),
            None => sub.recv_timeout(TICK.min(next_hello.saturating_duration_since(now))),
        };
        match ev {
            Recv::Message(m) => {
                if enc.next_seq().is_some_and(|n| n != m.seq()) {
                    // Unreachable by the subscriber's contract (a skipped sequence is reported as
                    // a lap first), but a gap must never be hidden: flush and mark it.
                    let gap_from = enc.next_seq().unwrap_or(m.seq());
                    if let Some(frame) = enc.take_data() {
                        send(frame, &mut c);
                    }
                    let lost = m.seq().saturating_sub(gap_from);
                    if lost > 0 {
                        send(enc.loss(gap_from, lost), &mut c);
                        c.lost_at_exporter += lost;
                    }
                }
                enc.push(m.seq(), m.bytes());
                c.sent += 1;
                if enc.pending() == 1 {
                    batch_due = Some(Instant::now() + linger);
                }
                if enc.pending() >= args.batch {
                    if let Some(frame) = enc.take_data() {
                        send(frame, &mut c);
                    }
                    batch_due = None;
                }
            }
            Recv::Lapped { lost } => {
                if let Some(frame) = enc.take_data() {
                    send(frame, &mut c);
                }
                batch_due = None;
                // The subscriber resumed at its new next sequence, right after the lost range.
                let first = sub.next_seq().saturating_sub(lost);
                send(enc.loss(first, lost), &mut c);
                c.lost_at_exporter += lost;
                c.laps += 1;
            }
            Recv::Empty | Recv::Closed => {
                if batch_due.is_some_and(|due| linger.is_zero() || Instant::now() >= due) {
                    if let Some(frame) = enc.take_data() {
                        send(frame, &mut c);
                    }
                    batch_due = None;
                }
            }
        }
    }
    if let Some(frame) = enc.take_data() {
        send(frame, &mut c);
    }
    send(enc.hello(sub.next_seq()), &mut c);
    reporter.report(&report(&c, true));
    drop(publisher);
    let _ = session.close().wait();
    Ok(())
}
