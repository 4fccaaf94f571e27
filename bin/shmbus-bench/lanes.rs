//! `shmbus-bench lanes`: what lanes cost, each figure beside its floor from the same run.
//!
//! * publish cost per record (64 B, 1 KiB) beside a minimal single-producer byte ring doing the
//!   same writes (length word, payload, a Release store of the write position) in the same
//!   process; both drained between timed batches;
//! * one-way latency of 64 B between two processes (ping-pong, round trip / 2) beside the bus
//!   doing the same ping-pong, in the same run;
//! * throughput of 1, 4 and 16 producer processes (`publish_wait`: nothing dropped) to one
//!   consumer (this process, reading every byte in place) at 64 B, 1 KiB and 64 KiB, beside a
//!   minimal cross-process single-producer byte ring moving the same records between the same
//!   cores, each clock started after two laps of every ring, and single-core memcpy for scale;
//! * the consumer's cost per record with 10 busy lanes out of 1000, beside 10 out of 10.

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use serde::Serialize;
use shmbus::lanes::{LaneEvent, LanePush, Lanes, LanesBuilder};
use shmbus::{Bus, BusBuilder, Recv};

use crate::clock::ClockKind;
use crate::floor;
use crate::stats::{alternate, histogram, median, Pct, TickSummary};
use crate::sys::{self, spin_until};

#[derive(clap::Args, Debug)]
pub struct LanesArgs {
    /// The consumer's core and the producers' core, comma-separated (default: the first two
    /// usable).
    #[arg(long, value_delimiter = ',', num_args = 1)]
    cores: Vec<usize>,
    /// Producer process counts of the throughput figure, comma-separated.
    #[arg(long, value_delimiter = ',', default_values_t = [1, 4, 16])]
    producers: Vec<usize>,
    /// Record sizes of the throughput figure, comma-separated.
    #[arg(long, value_delimiter = ',', default_values_t = [64, 1024, 65536])]
    sizes: Vec<usize>,
    /// Bytes each throughput round moves, in MiB (default 1024; 64 with --quick). The clock
    /// starts after two laps of every ring, so the rest is steady state; with 16 producers a
    /// longer round also averages over more of the scheduler's turns on the producers' core.
    #[arg(long, value_parser = clap::value_parser!(u64).range(16..=1 << 20))]
    budget_mib: Option<u64>,
    /// A child's role (internal).
    #[arg(long, hide = true)]
    role: Option<String>,
    /// The segment or file a child works on (internal).
    #[arg(long, hide = true)]
    target: Option<String>,
    /// A child's core (internal).
    #[arg(long, hide = true)]
    core: Option<usize>,
    /// A child's record size (internal).
    #[arg(long, hide = true)]
    size: Option<usize>,
    /// A child's byte budget (internal).
    #[arg(long, hide = true)]
    bytes: Option<u64>,
}

const LANE_BYTES: u64 = 1 << 20;

/// Alternating rounds of the publish and consumer figures with their floors.
const ROUNDS: usize = 5;

#[derive(Serialize)]
struct Cost {
    size: usize,
    ns: f64,
    floor_ns: f64,
    ratio: f64,
}

#[derive(Serialize)]
struct Rate {
    producers: usize,
    size: usize,
    msgs_per_s: f64,
    gb_per_s: f64,
    floor_gb_per_s: f64,
    ratio: f64,
}

#[derive(Serialize)]
struct Output {
    /// Alternating rounds behind the publish and consumer figures (each a median).
    rounds: usize,
    /// Bytes each throughput round moved.
    throughput_budget_bytes: u64,
    publish: Vec<Cost>,
    one_way_64_ns: Pct,
    bus_one_way_64_ns: Pct,
    /// p50 of lanes over p50 of the bus.
    latency_ratio: f64,
    throughput: Vec<Rate>,
    memcpy_gb_per_s: f64,
    consumer_ns_10_of_10: f64,
    consumer_ns_10_of_1000: f64,
    consumer_ratio: f64,
}

pub fn run(a: &LanesArgs, json: bool, quick: bool) -> Result<(), String> {
    if let Some(role) = &a.role {
        sys::die_with_parent();
        let target = a.target.as_deref().unwrap_or_default();
        let core = a.core.unwrap_or(0);
        return match role.as_str() {
            "echo" => echo_lanes(target, core),
            "bus-echo" => echo_bus(target, core),
            "producer" => produce(target, core, a.size.unwrap_or(64), a.bytes.unwrap_or(0)),
            role if role.starts_with("floor-writer") => {
                let how = floor::Write::of_role(role).ok_or(format!("unknown role {role}"))?;
                floor::write(
                    target,
                    core,
                    a.size.unwrap_or(64),
                    a.bytes.unwrap_or(0),
                    how,
                )
            }
            other => Err(format!("unknown role {other}")),
        };
    }
    let cores = sys::available_cores();
    let [ca, cb] = match a.cores[..] {
        [x, y] if x != y => [x, y],
        [] if cores.len() >= 2 => [cores[0], cores[1]],
        _ => return Err("lanes needs two different cores: --cores A,B".into()),
    };
    sys::check_cores(&[ca, cb])?;
    sys::pin(ca)?;
    let clock = ClockKind::detect();
    let scale = clock.ns_per_tick();

    // Each figure and its floor in alternating rounds (the machine's speed moves from minute
    // to minute): the medians of the rounds, and the median of the rounds' ratios.
    let rounds = if quick { 1 } else { ROUNDS };
    let iters = if quick { 20_000 } else { 400_000 };
    let publish = [64, 1024]
        .into_iter()
        .map(|size| {
            let p = alternate(
                rounds,
                || publish_cost(size, iters),
                || Ok(floor_publish_cost(size, iters)),
            )?;
            Ok(Cost {
                size,
                ns: p.value,
                floor_ns: p.floor,
                ratio: p.ratio,
            })
        })
        .collect::<Result<Vec<_>, String>>()?;

    let trips = if quick { 2_000 } else { 200_000 };
    let lanes_rtt = lanes_round_trips(cb, trips, clock)?.to_ns(scale / 2.0);
    let bus_rtt = bus_round_trips(cb, trips, clock)?.to_ns(scale / 2.0);

    let budget: u64 = a.budget_mib.unwrap_or(if quick { 64 } else { 1024 }) << 20;
    let mut throughput = Vec::new();
    for &size in &a.sizes {
        if !(8..=LANE_BYTES as usize / 2).contains(&size) {
            return Err(format!(
                "--sizes: {size} is out of range (8 to {})",
                LANE_BYTES / 2
            ));
        }
        for &n in &a.producers {
            let mut msgs = Vec::new();
            let p = alternate(
                rounds.min(3),
                || {
                    let (m, bytes) = lanes_throughput(cb, n, size, budget)?;
                    msgs.push(m);
                    Ok(bytes)
                },
                || {
                    floor::throughput(
                        cb,
                        size,
                        floor::FLOOR_BYTES,
                        budget,
                        warm_up(1, floor::FLOOR_BYTES as u64, budget),
                        floor::Write::Plain,
                        floor::Read::InPlace,
                    )
                },
            )?;
            throughput.push(Rate {
                producers: n,
                size,
                msgs_per_s: median(&mut msgs),
                gb_per_s: p.value / 1e9,
                floor_gb_per_s: p.floor / 1e9,
                ratio: p.ratio,
            });
        }
    }
    let memcpy = memcpy_rate(if quick { 1 << 12 } else { 1 << 15 });

    let per_round = if quick { 2_000 } else { 20_000 };
    // The floor here is the same consumer with 10 lanes of 10.
    let consumer = alternate(
        rounds,
        || consumer_cost(1000, per_round),
        || consumer_cost(10, per_round),
    )?;
    let out = Output {
        rounds,
        throughput_budget_bytes: budget,
        publish,
        latency_ratio: lanes_rtt.p50 / bus_rtt.p50.max(f64::MIN_POSITIVE),
        one_way_64_ns: lanes_rtt,
        bus_one_way_64_ns: bus_rtt,
        throughput,
        memcpy_gb_per_s: memcpy / 1e9,
        consumer_ns_10_of_10: consumer.floor,
        consumer_ns_10_of_1000: consumer.value,
        consumer_ratio: consumer.ratio,
    };
    print(&out, json)
}

fn print(o: &Output, json: bool) -> Result<(), String> {
    let mut s = String::new();
    if json {
        s = serde_json::to_string_pretty(o).map_err(|e| e.to_string())? + "\n";
    } else {
        use std::fmt::Write as _;
        let _ = writeln!(
            s,
            "publish cost, ns per record, median of {} alternating rounds (floor: a minimal SP byte-ring write)",
            o.rounds
        );
        for c in &o.publish {
            let _ = writeln!(
                s,
                "  {:>6} B  {:>8.1}  floor {:>8.1}  ratio {:.2}",
                c.size, c.ns, c.floor_ns, c.ratio
            );
        }
        let _ = writeln!(
            s,
            "one-way 64 B, ns: lanes p50 {:.0} p99 {:.0}; bus p50 {:.0} p99 {:.0}; ratio {:.2}",
            o.one_way_64_ns.p50,
            o.one_way_64_ns.p99,
            o.bus_one_way_64_ns.p50,
            o.bus_one_way_64_ns.p99,
            o.latency_ratio
        );
        let _ = writeln!(
            s,
            "throughput, {} MiB a round, median of {} alternating rounds (floor: a minimal cross-process SP byte ring, same sizes and cores; each clock starts after two laps of every ring)",
            o.throughput_budget_bytes >> 20,
            o.rounds.min(3)
        );
        for r in &o.throughput {
            let _ = writeln!(
                s,
                "  {:>2} producers {:>6} B  {:>8.2} M msgs/s  {:>6.2} GB/s  floor {:>6.2} GB/s  ratio {:.2}",
                r.producers,
                r.size,
                r.msgs_per_s / 1e6,
                r.gb_per_s,
                r.floor_gb_per_s,
                r.ratio
            );
        }
        let _ = writeln!(
            s,
            "single-core memcpy (64 KiB, in cache): {:.1} GB/s",
            o.memcpy_gb_per_s
        );
        let _ = writeln!(
            s,
            "consumer cost per record, 10 busy lanes, median of {} alternating rounds: of 10 {:.1} ns, of 1000 {:.1} ns, ratio {:.2}",
            o.rounds,
            o.consumer_ns_10_of_10, o.consumer_ns_10_of_1000, o.consumer_ratio
        );
    }
    let mut out = std::io::stdout().lock();
    match out.write_all(s.as_bytes()).and_then(|()| out.flush()) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => Err(e.to_string()),
        _ => Ok(()),
    }
}

/// A record of `size` bytes whose first word is `k`.
pub(crate) fn record(size: usize, k: u64) -> Vec<u8> {
    let mut r = vec![0x5a; size];
    r[..8].copy_from_slice(&k.to_le_bytes());
    r
}

/// Sums every word of a record: the consumer touches every byte it receives.
#[inline]
pub(crate) fn touch(bytes: &[u8]) -> u64 {
    bytes
        .chunks_exact(8)
        .map(|w| u64::from_le_bytes(w.try_into().expect("8 bytes")))
        .fold(0, u64::wrapping_add)
}

/// Nanoseconds per publish of `size` bytes into a 1 MiB lane, timed in batches that fill half
/// the lane; the consumer drains it (untimed) between batches.
fn publish_cost(size: usize, iters: u64) -> Result<f64, String> {
    let lanes = LanesBuilder::new("bench")
        .lanes(1)
        .lane_bytes(LANE_BYTES)
        .in_process()
        .map_err(|e| e.to_string())?;
    let mut c = lanes.consumer().map_err(|e| e.to_string())?;
    let mut p = lanes.acquire().map_err(|e| e.to_string())?;
    let rec = record(size, 0);
    // Warm up: every page of the lane (both copies) touched once, untimed.
    while p.publish(&rec).map_err(|e| e.to_string())? == LanePush::Queued {}
    c.recv_batch(usize::MAX, |_| {})
        .map_err(|e| e.to_string())?;
    let batch = (LANE_BYTES as usize / 2 / (size + 8)).max(1) as u64;
    let mut timed = 0u64;
    let mut ns = 0u128;
    while timed < iters {
        let t = Instant::now();
        for _ in 0..batch {
            if p.publish(std::hint::black_box(&rec))
                .map_err(|e| e.to_string())?
                != LanePush::Queued
            {
                return Err("a half-empty lane was full".into());
            }
        }
        ns += t.elapsed().as_nanos();
        timed += batch;
        c.recv_batch(usize::MAX, |_| {})
            .map_err(|e| e.to_string())?;
    }
    Ok(ns as f64 / timed as f64)
}

/// The floor of a publish: the same bytes into a plain ring (length word, payload, a Release
/// store of the write position, the read position loaded only when the ring seems full).
struct FloorRing {
    bytes: Vec<u8>,
    write: AtomicU64,
    read: AtomicU64,
    read_cache: u64,
}

impl FloorRing {
    fn new(len: usize) -> Self {
        FloorRing {
            bytes: vec![0; len * 2],
            write: AtomicU64::new(0),
            read: AtomicU64::new(0),
            read_cache: 0,
        }
    }

    #[inline]
    fn publish(&mut self, data: &[u8]) -> bool {
        let len = self.bytes.len() as u64 / 2;
        let need = 8 + data.len().next_multiple_of(8) as u64;
        let w = self.write.load(Ordering::Relaxed);
        if w + need - self.read_cache > len {
            // ORDERING: Acquire pairs with the drain's Release store of `read`.
            self.read_cache = self.read.load(Ordering::Acquire);
            if w + need - self.read_cache > len {
                return false;
            }
        }
        let at = (w % len) as usize;
        self.bytes[at..at + 8].copy_from_slice(&(data.len() as u64).to_le_bytes());
        self.bytes[at + 8..at + 8 + data.len()].copy_from_slice(data);
        // ORDERING: Release pairs with a reader's Acquire load of `write` (the floor's protocol).
        self.write.store(w + need, Ordering::Release);
        true
    }
}

fn floor_publish_cost(size: usize, iters: u64) -> f64 {
    let mut ring = FloorRing::new(LANE_BYTES as usize);
    let rec = record(size, 0);
    // Warm up as the lane is: the whole ring touched once, untimed.
    while ring.publish(&rec) {}
    let w = ring.write.load(Ordering::Relaxed);
    // ORDERING: Release pairs with the Acquire load in `FloorRing::publish` (a drain).
    ring.read.store(w, Ordering::Release);
    let batch = (LANE_BYTES as usize / 2 / (size + 8)).max(1) as u64;
    let mut timed = 0u64;
    let mut ns = 0u128;
    while timed < iters {
        let t = Instant::now();
        for _ in 0..batch {
            assert!(ring.publish(std::hint::black_box(&rec)));
        }
        // The ring's bytes are observed, so the copies into it cannot be optimised away.
        std::hint::black_box(ring.bytes.as_mut_ptr());
        ns += t.elapsed().as_nanos();
        timed += batch;
        let w = ring.write.load(Ordering::Relaxed);
        // ORDERING: Release pairs with the Acquire load in `FloorRing::publish` (a drain).
        ring.read.store(w, Ordering::Release);
    }
    ns as f64 / timed as f64
}

/// A child process of this program in `role`, printing "ready" once set up.
pub(crate) fn spawn(
    role: &str,
    target: &str,
    core: usize,
    extra: &[String],
) -> Result<Child, String> {
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let mut child = Command::new(exe)
        .args([
            "lanes",
            "--role",
            role,
            "--target",
            target,
            "--core",
            &core.to_string(),
        ])
        .args(extra)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot start the {role}: {e}"))?;
    let mut lines = BufReader::new(child.stdout.take().expect("piped")).lines();
    let ready = lines.next().and_then(|l| l.ok());
    if ready.as_deref() != Some("ready") {
        let _ = child.kill();
        let _ = child.wait();
        return Err(format!("the {role} did not start: {ready:?}"));
    }
    Ok(child)
}

pub(crate) fn say_ready() -> Result<(), String> {
    println!("ready");
    std::io::stdout().flush().map_err(|e| e.to_string())
}

/// Segment names for the ping (this process to the echo) and the pong.
fn pair(guard: &sys::BusGuard) -> (String, String) {
    (
        format!("{}-ping", guard.name()),
        format!("{}-pong", guard.name()),
    )
}

/// Removes the ping and pong segments (whatever their kind) when dropped.
struct PairGuard(String, String);

impl Drop for PairGuard {
    fn drop(&mut self) {
        let _ = Lanes::remove(&self.0);
        let _ = Lanes::remove(&self.1);
    }
}

/// Ping-pong over two lanes segments: this process publishes on the ping segment's lane, the
/// echo consumes it and answers on the pong segment's.
fn lanes_round_trips(core: usize, trips: u64, clock: ClockKind) -> Result<TickSummary, String> {
    let guard = sys::BusGuard::new("lanes-rtt");
    let (ping, pong) = pair(&guard);
    let _pair = PairGuard(ping.clone(), pong.clone());
    let make = |n: &str| {
        LanesBuilder::new(n)
            .lanes(1)
            .lane_bytes(1 << 16)
            .create()
            .map_err(|e| e.to_string())
    };
    let (ping_l, pong_l) = (make(&ping)?, make(&pong)?);
    let mut p = ping_l.acquire().map_err(|e| e.to_string())?;
    let mut c = pong_l.consumer().map_err(|e| e.to_string())?;
    let mut echo = spawn("echo", guard.name(), core, &[])?;
    let mut h = histogram();
    let mut msg = [0u8; 64];
    let mut result = Ok(());
    for k in 0..trips + trips / 10 {
        msg[..8].copy_from_slice(&k.to_le_bytes());
        let t = clock.now();
        if p.publish(&msg).map_err(|e| e.to_string())? != LanePush::Queued {
            result = Err("the ping lane was full".to_string());
            break;
        }
        let r = spin_until(
            "the lanes echo",
            || matches!(c.try_recv(), Ok(Some(LaneEvent::Record(r))) if r[..8] == msg[..8]),
            || matches!(echo.try_wait(), Ok(None)),
        );
        if let Err(e) = r {
            result = Err(e);
            break;
        }
        if k >= trips / 10 {
            h.saturating_record(clock.now().wrapping_sub(t));
        }
    }
    let _ = echo.kill();
    let _ = echo.wait();
    result.map(|()| TickSummary::of(&h))
}

/// The lanes echo: every record of the ping segment is published back on the pong segment.
fn echo_lanes(base: &str, core: usize) -> Result<(), String> {
    let (ping, pong) = (format!("{base}-ping"), format!("{base}-pong"));
    let ping = Lanes::open(&ping).map_err(|e| e.to_string())?;
    let pong = Lanes::open(&pong).map_err(|e| e.to_string())?;
    let mut c = ping.consumer().map_err(|e| e.to_string())?;
    let mut p = pong.acquire().map_err(|e| e.to_string())?;
    sys::pin(core)?;
    say_ready()?;
    let mut buf = [0u8; 64];
    loop {
        let got = match c.try_recv().map_err(|e| e.to_string())? {
            Some(LaneEvent::Record(r)) => {
                buf.copy_from_slice(&r[..64]);
                true
            }
            _ => false,
        };
        if got {
            let _ = p.publish(&buf).map_err(|e| e.to_string())?;
        } else {
            std::hint::spin_loop();
        }
    }
}

/// The same ping-pong over two single-producer buses of 64-byte messages.
fn bus_round_trips(core: usize, trips: u64, clock: ClockKind) -> Result<TickSummary, String> {
    let guard = sys::BusGuard::new("lanes-bus-rtt");
    let (ping, pong) = pair(&guard);
    let _pair = PairGuard(ping.clone(), pong.clone());
    let make = |n: &str| {
        BusBuilder::new(n)
            .slots(1024)
            .capacity(64)
            .create()
            .map_err(|e| e.to_string())
    };
    let (ping_b, pong_b) = (make(&ping)?, make(&pong)?);
    let mut p = ping_b.publisher().map_err(|e| e.to_string())?;
    let mut s = pong_b.subscriber();
    let mut echo = spawn("bus-echo", guard.name(), core, &[])?;
    let mut h = histogram();
    let mut msg = [0u8; 64];
    let mut result = Ok(());
    for k in 0..trips + trips / 10 {
        msg[..8].copy_from_slice(&k.to_le_bytes());
        let t = clock.now();
        p.publish_bytes(&msg).map_err(|e| e.to_string())?;
        let r = spin_until(
            "the bus echo",
            || matches!(s.try_recv(), Recv::Message(m) if m.bytes()[..8] == msg[..8]),
            || matches!(echo.try_wait(), Ok(None)),
        );
        if let Err(e) = r {
            result = Err(e);
            break;
        }
        if k >= trips / 10 {
            h.saturating_record(clock.now().wrapping_sub(t));
        }
    }
    let _ = echo.kill();
    let _ = echo.wait();
    result.map(|()| TickSummary::of(&h))
}

fn echo_bus(base: &str, core: usize) -> Result<(), String> {
    let ping = Bus::open(&format!("{base}-ping")).map_err(|e| e.to_string())?;
    let pong = Bus::open(&format!("{base}-pong")).map_err(|e| e.to_string())?;
    let mut s = ping.subscriber();
    let mut p = pong.publisher().map_err(|e| e.to_string())?;
    sys::pin(core)?;
    say_ready()?;
    let mut buf = [0u8; 64];
    loop {
        let got = match s.try_recv() {
            Recv::Message(m) => {
                buf.copy_from_slice(&m.bytes()[..64]);
                true
            }
            _ => false,
        };
        if got {
            p.publish_bytes(&buf).map_err(|e| e.to_string())?;
        } else {
            std::hint::spin_loop();
        }
    }
}

/// A producer process: publishes records of `size` bytes flat out until it has queued `bytes`
/// bytes, waiting for room on a full lane (`publish_wait`: nothing is dropped), then closes
/// its lane.
fn produce(name: &str, core: usize, size: usize, bytes: u64) -> Result<(), String> {
    let lanes = Lanes::open(name).map_err(|e| e.to_string())?;
    let mut p = lanes.acquire().map_err(|e| e.to_string())?;
    sys::pin(core)?;
    say_ready()?;
    let rec = record(size, 1);
    let mut sent = 0u64;
    while sent < bytes {
        // On a full lane it spins briefly, then sleeps until the consumer's acknowledgements
        // make room, so the other producers on the core run meanwhile (a `yield_now` loop had
        // cost about one context switch per 64 KiB record with 16 producers).
        p.publish_wait(&rec).map_err(|e| e.to_string())?;
        sent += size as u64;
    }
    p.close();
    Ok(())
}

/// Bytes a throughput figure moves before its clock starts: two laps of each of `rings` rings
/// of `ring_bytes` (at most a quarter of `budget`). A fresh ring's first lap pays a page fault
/// per page in each process that maps it (16 lanes of 1 MiB: 4096 pages in the consumer, 256
/// in each producer), a cost of setting the segment up rather than of moving records.
fn warm_up(rings: usize, ring_bytes: u64, budget: u64) -> u64 {
    (2 * rings as u64 * ring_bytes).min(budget / 4)
}

/// `n` producer processes on the producers' core, this process consuming in place: records
/// and bytes per second, from the first record after the warm-up (`warm_up`) to the last close.
fn lanes_throughput(core: usize, n: usize, size: usize, budget: u64) -> Result<(f64, f64), String> {
    let guard = sys::BusGuard::new("lanes-tput");
    let lanes = LanesBuilder::new(guard.name())
        .lanes(n as u32)
        .lane_bytes(LANE_BYTES)
        .create()
        .map_err(|e| e.to_string())?;
    let mut c = lanes.consumer().map_err(|e| e.to_string())?;
    let per = (budget / n as u64).max(size as u64);
    let extra = [
        "--size".to_string(),
        size.to_string(),
        "--bytes".into(),
        per.to_string(),
    ];
    let mut children = Vec::new();
    for _ in 0..n {
        children.push(spawn("producer", guard.name(), core, &extra)?);
    }
    let (mut records, mut bytes, mut closed, mut sum) = (0u64, 0u64, 0usize, 0u64);
    // Bytes received before the clock starts, and the counts when it did.
    let (warm, mut seen, mut at_start) = (warm_up(n, LANE_BYTES, budget), 0u64, (0u64, 0u64));
    let mut start = None;
    let mut idle = 0u32;
    while closed < n {
        let got = c
            .recv_batch(256, |item| match item {
                shmbus::lanes::LaneItem::Record { bytes: b, .. } => {
                    if start.is_none() && seen >= warm {
                        start = Some(Instant::now());
                        at_start = (records, bytes);
                    }
                    seen += b.len() as u64;
                    sum = sum.wrapping_add(touch(b));
                    records += 1;
                    bytes += b.len() as u64;
                }
                shmbus::lanes::LaneItem::Closed(_) => closed += 1,
            })
            .map_err(|e| e.to_string())?;
        // A failed producer would never close its lane: look for one now and then, when the
        // lanes keep coming up empty (one `waitpid` per producer, which with 16 producers after
        // every batch had cost as much as the records of a batch).
        idle = if got == 0 { idle + 1 } else { 0 };
        if got == 0 {
            // As the floor's reader does on an empty ring: a pause before the next look, so
            // that a consumer that keeps up does not take the line the producer is writing
            // back on every poll.
            std::hint::spin_loop();
        }
        if idle == 1 << 16 {
            idle = 0;
            if children
                .iter_mut()
                .any(|ch| matches!(ch.try_wait(), Ok(Some(st)) if !st.success()))
            {
                return Err("a producer failed".into());
            }
        }
    }
    let secs = start.map_or(f64::MIN_POSITIVE, |s| s.elapsed().as_secs_f64());
    std::hint::black_box(sum);
    for mut ch in children {
        let _ = ch.wait();
    }
    Ok((
        (records - at_start.0) as f64 / secs,
        (bytes - at_start.1) as f64 / secs,
    ))
}

/// Single-core memcpy of 64 KiB, in cache, in bytes per second.
fn memcpy_rate(rounds: usize) -> f64 {
    let src = vec![0x5au8; 1 << 16];
    let mut dst = vec![0u8; 1 << 16];
    let t = Instant::now();
    for _ in 0..rounds {
        dst.copy_from_slice(std::hint::black_box(&src));
        std::hint::black_box(&mut dst);
    }
    (rounds * src.len()) as f64 / t.elapsed().as_secs_f64()
}

/// The consumer's nanoseconds per record with 10 busy lanes out of `lanes` (spread evenly),
/// each round one 64-byte record on each busy lane; the publishes are not timed.
fn consumer_cost(lanes: u32, rounds: u64) -> Result<f64, String> {
    let pool = LanesBuilder::new("bench")
        .lanes(lanes)
        .lane_bytes(4096)
        .in_process()
        .map_err(|e| e.to_string())?;
    let mut c = pool.consumer().map_err(|e| e.to_string())?;
    let mut held = Vec::new();
    for _ in 0..lanes {
        held.push(pool.acquire().map_err(|e| e.to_string())?);
    }
    let step = (lanes / 10).max(1);
    let (busy, idle): (Vec<_>, Vec<_>) = held.into_iter().partition(|p| p.lane() % step == 0);
    drop(idle);
    while c.try_recv().map_err(|e| e.to_string())?.is_some() {}
    let mut busy: Vec<_> = busy.into_iter().take(10).collect();
    let rec = [7u8; 64];
    let mut ns = 0u128;
    let mut n = 0u64;
    for _ in 0..rounds {
        for p in &mut busy {
            let _ = p.publish(&rec).map_err(|e| e.to_string())?;
        }
        let t = Instant::now();
        let mut sum = 0u64;
        while let Some(e) = c.try_recv().map_err(|e| e.to_string())? {
            if let LaneEvent::Record(r) = e {
                sum = sum.wrapping_add(touch(&r));
                n += 1;
            }
        }
        ns += t.elapsed().as_nanos();
        std::hint::black_box(sum);
    }
    Ok(ns as f64 / n.max(1) as f64)
}
