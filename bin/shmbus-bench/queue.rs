//! `shmbus-bench queue`: the work queue next to its floors, measured in the same run.
//!
//! * In-process throughput, one sender and one receiver thread (SPSC) and four of each (MPMC),
//!   of the segment queue (on the heap) and of `LocalQueue`, against
//!   `crossbeam_queue::ArrayQueue` doing the same work on the same machine: the figure is the
//!   ratio.
//! * Cross-process handoff: a round trip through two named queues (ping, then pong) between
//!   this process and a child, against two floors measured in the same run, between the same
//!   cores, in alternating rounds: a minimal Vyukov bounded MPMC queue used the same way (one
//!   sequence word and the payload per slot, at the queue's slot stride, in a shared mapping:
//!   the floor for this algorithm), and the c2c round trip of one cache line (the floor any
//!   shared-memory handoff pays, and which placement of the two vCPUs the round saw).
//! * Cross-process throughput: this process sends 8-byte items as fast as the queue takes them
//!   to 1, 2 and 4 receiver processes (every item to exactly one of them).

use std::process::{Child, Command, Stdio};
use std::time::Instant;

use crossbeam_queue::ArrayQueue;
use serde::Serialize;
use shmbus::{LocalQueue, Queue, QueueBuilder, Wait};

use crate::c2c;
use crate::clock::ClockKind;
use crate::stats::{histogram, median, Pct, TickSummary};
use crate::sys;
use vyukov::Floor;

#[derive(clap::Args, Debug)]
pub struct QueueArgs {
    /// Items per throughput run.
    #[arg(long)]
    items: Option<u64>,
    /// Rounds of the in-process throughput comparison (alternating shmbus and crossbeam).
    #[arg(long)]
    rounds: Option<u32>,
    /// Item sizes of the handoff, in bytes (8 to 48), comma-separated.
    #[arg(long, value_delimiter = ',', default_values_t = [8, 48])]
    sizes: Vec<usize>,
    /// Round trips per handoff size.
    #[arg(long)]
    iters: Option<u64>,
    /// Rounds of the handoff comparison (each measures c2c, the queue and the Vyukov floor, in
    /// alternating order).
    #[arg(long)]
    handoff_rounds: Option<u32>,
    /// Run only these parts (throughput, handoff, processes), comma-separated; all by default.
    #[arg(long, value_delimiter = ',')]
    only: Vec<Part>,
    /// Receiver process counts of the cross-process throughput run, comma-separated.
    #[arg(long, value_delimiter = ',', default_values_t = [1, 2, 4])]
    consumers: Vec<usize>,
    /// The stall bound of the queues this bench creates, in ms (0: none; default: the
    /// library's). With a bound, a send's publish is a compare-and-swap (docs/design.md §11,
    /// "Stalls"); without one it is a plain store.
    #[arg(long, value_name = "MS")]
    stall_bound_ms: Option<u64>,
    /// A receiver of the throughput run (internal): drain QUEUE until the end item, then
    /// print the count.
    #[arg(long, hide = true, value_name = "QUEUE")]
    drain: Option<String>,
    /// The echo side of the handoff (internal): answer each item of PING on PONG.
    #[arg(long, hide = true, num_args = 2, value_names = ["PING", "PONG"])]
    echo: Vec<String>,
    /// The echo side of the Vyukov floor (internal): the shared file of its two rings.
    #[arg(long, hide = true, value_name = "FILE")]
    vyukov_echo: Option<std::path::PathBuf>,
    /// Sends and receives this many 8-byte items in turn in this one process, then exits: the
    /// queue's (or with --solo-floor the Vyukov floor's) instructions per item, for counting
    /// under `valgrind --tool=callgrind` (two counts, the difference over the difference).
    #[arg(long, hide = true, value_name = "ITEMS")]
    solo: Option<u64>,
    /// With --solo: the floor instead of the queue.
    #[arg(long, hide = true)]
    solo_floor: bool,
    /// With --solo-floor: the floor with the claim-word store.
    #[arg(long, hide = true)]
    solo_claim: bool,
    /// The echo side of the Vyukov floor with claim words (internal).
    #[arg(long, hide = true, value_name = "FILE")]
    vyukov_claim_echo: Option<std::path::PathBuf>,
    /// The handoff item size of an echo (internal).
    #[arg(long, hide = true)]
    size: Option<usize>,
    /// The echo's core (internal).
    #[arg(long, hide = true)]
    core: Option<usize>,
}

/// The parts of the run.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Part {
    Throughput,
    Handoff,
    Processes,
}

#[derive(Serialize, Debug)]
struct ThroughputRow {
    what: &'static str,
    senders: usize,
    receivers: usize,
    items: u64,
    /// Alternating rounds; the figures are medians over them.
    rounds: u32,
    /// The segment queue (`Queue`, here on the heap), `u64` items.
    shmbus_ns_per_item: f64,
    /// `LocalQueue<u64>`, the in-process queue for any `T: Send`.
    local_ns_per_item: f64,
    crossbeam_ns_per_item: f64,
    /// shmbus over crossbeam (the median of the per-round ratios): 1.0 is as fast.
    ratio: f64,
    /// LocalQueue over crossbeam (the median of the per-round ratios).
    local_ratio: f64,
}

#[derive(Serialize, Debug)]
struct HandoffRow {
    size: usize,
    cores: [usize; 2],
    /// The queue's (and the floor's) slot stride in bytes.
    stride: usize,
    round_trips: u64,
    /// Medians over the rounds of each round's percentile.
    queue_rtt_p50_ns: f64,
    queue_rtt_p90_ns: f64,
    queue_rtt_p99_ns: f64,
    vyukov_rtt_p50_ns: f64,
    vyukov_rtt_p90_ns: f64,
    vyukov_rtt_p99_ns: f64,
    /// The floor with the crash protocol's claim-word store added (p50).
    vyukov_claim_rtt_p50_ns: f64,
    c2c_rtt_p50_ns: f64,
    /// Queue round trip over c2c round trip (p50, of the medians).
    ratio: f64,
    /// Queue round trip over the Vyukov floor's (the median of the per-round p50 ratios).
    vyukov_ratio: f64,
    /// The floor with claim words over the plain floor (the median of the per-round p50
    /// ratios): what the claim-word store costs a round trip.
    claim_ratio: f64,
    rounds: Vec<HandoffRound>,
}

/// One round of the handoff comparison: the three measured back to back.
#[derive(Serialize, Debug)]
struct HandoffRound {
    queue: Pct,
    vyukov: Pct,
    vyukov_claim: Pct,
    c2c: Pct,
    /// Which placement of the two cores the round saw, from its c2c round trip: on the VMs we
    /// measure on, two vCPUs sometimes sit close ("near") and sometimes not ("far"), and the
    /// round trips of everything differ by up to 2x between the two.
    placement: &'static str,
}

#[derive(Serialize, Debug)]
struct ProcessRow {
    receivers: usize,
    items: u64,
    /// Items per second through the queue, from the first send to the last receive.
    items_per_sec: f64,
    ns_per_item: f64,
    /// Items each receiver got (they add up to `items`).
    per_receiver: Vec<u64>,
    /// Set when the sender and receivers outnumber the usable cores.
    oversubscribed: bool,
}

#[derive(Serialize, Debug, Default)]
struct QueueReport {
    cores: usize,
    /// Set when threads outnumber the usable cores: the MPMC figures then measure scheduling.
    oversubscribed: Option<String>,
    throughput: Vec<ThroughputRow>,
    handoff: Vec<HandoffRow>,
    processes: Vec<ProcessRow>,
}

/// The stall bound the bench's queues are created with (`--stall-bound-ms`), set once by `run`.
static STALL_BOUND: std::sync::OnceLock<Option<std::time::Duration>> = std::sync::OnceLock::new();

/// The stall bound for a new queue: `--stall-bound-ms`, or the library's default.
fn stall_bound() -> Option<std::time::Duration> {
    *STALL_BOUND.get_or_init(|| Some(shmbus::DEFAULT_STALL_BOUND))
}

pub fn run(a: &QueueArgs, json: bool, quick: bool) -> Result<(), String> {
    if let Some(ms) = a.stall_bound_ms {
        let _ = STALL_BOUND.set((ms != 0).then(|| std::time::Duration::from_millis(ms)));
    }
    if let [ping, pong] = a.echo.as_slice() {
        return echo(ping, pong, a.size.unwrap_or(8), a.core);
    }
    if let Some(n) = a.solo {
        let size = a.size.unwrap_or(8);
        let floor = if a.solo_claim {
            Floor::Claim
        } else {
            Floor::Plain
        };
        return if a.solo_floor {
            vyukov::solo(n, size, floor)
        } else {
            solo(n, size)
        };
    }
    if let Some(path) = &a.vyukov_echo {
        return vyukov::echo(path, a.size.unwrap_or(8), a.core, Floor::Plain);
    }
    if let Some(path) = &a.vyukov_claim_echo {
        return vyukov::echo(path, a.size.unwrap_or(8), a.core, Floor::Claim);
    }
    if let Some(q) = &a.drain {
        return drain(q, a.core);
    }
    let cores = sys::available_cores();
    let clock = ClockKind::detect();
    let items = a
        .items
        .unwrap_or(if quick { 20_000 } else { 4_000_000 })
        .max(8);
    let iters = a
        .iters
        .unwrap_or(if quick { 2_000 } else { 200_000 })
        .max(1);
    let mut r = QueueReport {
        cores: cores.len(),
        ..QueueReport::default()
    };
    if cores.len() < 8 {
        r.oversubscribed = Some(format!(
            "the 4x4 run has 8 threads on {} usable cores",
            cores.len()
        ));
    }
    let part = |p: Part| a.only.is_empty() || a.only.contains(&p);
    let rounds = a.rounds.unwrap_or(if quick { 1 } else { 7 }).max(1);
    let throughput_parts: &[(&str, usize)] = if part(Part::Throughput) {
        &[("spsc", 1), ("mpmc", 4)]
    } else {
        &[]
    };
    for &(what, n) in throughput_parts {
        // Alternate the two, round after round, so that both see the same machine; report the
        // median of each and the median of the per-round ratios.
        let (mut ours, mut floor, mut ratios) = (Vec::new(), Vec::new(), Vec::new());
        let (mut local, mut local_ratios) = (Vec::new(), Vec::new());
        for round in 0..rounds {
            let (o, l, f) = if round % 2 == 0 {
                let o = shmbus_throughput(n, items)?;
                let l = local_throughput(n, items)?;
                (o, l, crossbeam_throughput(n, items))
            } else {
                let f = crossbeam_throughput(n, items);
                let l = local_throughput(n, items)?;
                (shmbus_throughput(n, items)?, l, f)
            };
            ours.push(o);
            local.push(l);
            floor.push(f);
            ratios.push(o / f);
            local_ratios.push(l / f);
        }
        r.throughput.push(ThroughputRow {
            what,
            senders: n,
            receivers: n,
            items,
            rounds,
            shmbus_ns_per_item: median(&mut ours),
            local_ns_per_item: median(&mut local),
            crossbeam_ns_per_item: median(&mut floor),
            ratio: median(&mut ratios),
            local_ratio: median(&mut local_ratios),
        });
    }
    if cores.len() >= 2 && part(Part::Handoff) {
        let pair = [cores[0], cores[1]];
        let handoff_rounds = a.handoff_rounds.unwrap_or(if quick { 1 } else { 5 }).max(1);
        for &size in &a.sizes {
            if !(8..=48).contains(&size) {
                return Err(format!("handoff sizes are 8 to 48 bytes, not {size}"));
            }
            r.handoff
                .push(handoff_row(pair, size, iters, handoff_rounds, clock)?);
        }
    }
    let consumers: &[usize] = if part(Part::Processes) {
        &a.consumers
    } else {
        &[]
    };
    for &k in consumers {
        if !(1..=16).contains(&k) {
            return Err(format!("receiver counts are 1 to 16, not {k}"));
        }
        r.processes.push(across_processes(k, items, &cores)?);
    }
    print(&r, json)
}

fn print(r: &QueueReport, json: bool) -> Result<(), String> {
    use std::fmt::Write as _;
    let text = if json {
        serde_json::to_string_pretty(r).map_err(|e| e.to_string())? + "\n"
    } else {
        let mut t = String::new();
        if !r.throughput.is_empty() {
            let _ = writeln!(
                t,
                "work queue throughput (ns per item, medians of alternating rounds; (ratio to crossbeam ArrayQueue))"
            );
        }
        for row in &r.throughput {
            let _ = writeln!(
                t,
                "  {} {}x{}  Queue {:8.1} ({:5.2})  LocalQueue {:8.1} ({:5.2})  crossbeam {:8.1}",
                row.what,
                row.senders,
                row.receivers,
                row.shmbus_ns_per_item,
                row.ratio,
                row.local_ns_per_item,
                row.local_ratio,
                row.crossbeam_ns_per_item,
            );
        }
        if let (Some(o), false) = (&r.oversubscribed, r.throughput.is_empty()) {
            let _ = writeln!(t, "  note: {o}");
        }
        if !r.handoff.is_empty() {
            let _ = writeln!(
            t,
            "cross-process handoff (round trip, ns; medians over rounds of each round's figure; \
             ratio = queue / Vyukov floor, median of the per-round p50 ratios; same cores, same run)"
        );
        }
        for row in &r.handoff {
            let _ = writeln!(
                t,
                "  {} B  cores {}-{}  slot stride {} B  {} round trips a measure, {} rounds\n  \
                 {:<14}{:>8}{:>8}{:>8}",
                row.size,
                row.cores[0],
                row.cores[1],
                row.stride,
                row.round_trips,
                row.rounds.len(),
                "",
                "p50",
                "p90",
                "p99"
            );
            for (what, p) in [
                (
                    "queue",
                    [
                        row.queue_rtt_p50_ns,
                        row.queue_rtt_p90_ns,
                        row.queue_rtt_p99_ns,
                    ],
                ),
                (
                    "vyukov",
                    [
                        row.vyukov_rtt_p50_ns,
                        row.vyukov_rtt_p90_ns,
                        row.vyukov_rtt_p99_ns,
                    ],
                ),
            ] {
                let _ = writeln!(t, "  {what:<14}{:>8.1}{:>8.1}{:>8.1}", p[0], p[1], p[2]);
            }
            let _ = writeln!(
                t,
                "  {:<14}{:>8.1}\n  {:<14}{:>8.1}\n  queue/vyukov {:.3}   vyukov+claim/vyukov {:.3}   \
                 queue/c2c {:.2}",
                "vyukov+claim",
                row.vyukov_claim_rtt_p50_ns,
                "c2c",
                row.c2c_rtt_p50_ns,
                row.vyukov_ratio,
                row.claim_ratio,
                row.ratio
            );
            let _ = writeln!(
                t,
                "  rounds (p50):   queue  vyukov  +claim     c2c  placement  queue/vyukov"
            );
            for (i, round) in row.rounds.iter().enumerate() {
                let _ = writeln!(
                    t,
                    "    {i:>2}        {:>8.1}{:>8.1}{:>8.1}{:>8.1}  {:<9}  {:.3}",
                    round.queue.p50,
                    round.vyukov.p50,
                    round.vyukov_claim.p50,
                    round.c2c.p50,
                    round.placement,
                    round.queue.p50 / round.vyukov.p50
                );
            }
        }
        if r.cores < 2 {
            let _ = writeln!(
                t,
                "cross-process handoff: not run (it needs 2 usable cores)"
            );
        }
        if !r.processes.is_empty() {
            let _ = writeln!(
                t,
                "cross-process throughput (one sender process, 8-byte items, every item to one receiver)"
            );
        }
        for row in &r.processes {
            let _ = writeln!(
                t,
                "  1x{}  {:6.1} M items/s  {:6.1} ns/item  per receiver {:?}{}",
                row.receivers,
                row.items_per_sec / 1e6,
                row.ns_per_item,
                row.per_receiver,
                if row.oversubscribed {
                    "  (more processes than cores)"
                } else {
                    ""
                }
            );
        }
        t
    };
    print!("{text}");
    Ok(())
}

/// Nanoseconds per item moving `items` from `n` sender threads to `n` receiver threads through
/// an in-process shmbus queue, everyone spinning.
fn shmbus_throughput(n: usize, items: u64) -> Result<f64, String> {
    let q = QueueBuilder::new("bench")
        .item_type::<u64>()
        .capacity(1024)
        .stall_bound(stall_bound())
        .in_process()
        .map_err(|e| e.to_string())?;
    let per = items / n as u64;
    let mut handles = Vec::new();
    for _ in 0..n {
        let tx = q.sender().map_err(|e| e.to_string())?;
        let rx = q.receiver().map_err(|e| e.to_string())?;
        handles.push((tx.wait_strategy(Wait::Spin), rx.wait_strategy(Wait::Spin)));
    }
    let start = Instant::now();
    std::thread::scope(|s| {
        for (mut tx, mut rx) in handles {
            s.spawn(move || {
                for i in 0..per {
                    let _ = tx.send(i);
                }
            });
            s.spawn(move || {
                for _ in 0..per {
                    std::hint::black_box(*rx.recv().expect("every item is sent"));
                }
            });
        }
    });
    Ok(start.elapsed().as_nanos() as f64 / (per * n as u64) as f64)
}

/// The same work through a [`LocalQueue`] of the same capacity, spinning as crossbeam's run does.
fn local_throughput(n: usize, items: u64) -> Result<f64, String> {
    let q = LocalQueue::<u64>::new(1024).map_err(|e| e.to_string())?;
    Ok(spin_throughput(
        n,
        items,
        |v| q.try_send(v).map_err(|back| back.into_inner()),
        || q.try_recv(),
    ))
}

/// The same work through `crossbeam_queue::ArrayQueue` of the same capacity.
fn crossbeam_throughput(n: usize, items: u64) -> f64 {
    let q = ArrayQueue::<u64>::new(1024);
    spin_throughput(n, items, |v| q.push(v), || q.pop())
}

/// Nanoseconds per item moving `items` from `n` sender threads to `n` receiver threads of an
/// in-process queue given by its `push` (which hands a refused item back) and `pop`, everyone
/// spinning while the queue is full or empty.
fn spin_throughput(
    n: usize,
    items: u64,
    push: impl Fn(u64) -> Result<(), u64> + Sync,
    pop: impl Fn() -> Option<u64> + Sync,
) -> f64 {
    let per = items / n as u64;
    let (push, pop) = (&push, &pop);
    let start = Instant::now();
    std::thread::scope(|s| {
        for _ in 0..n {
            s.spawn(move || {
                for i in 0..per {
                    let mut v = i;
                    while let Err(back) = push(v) {
                        v = back;
                        std::hint::spin_loop();
                    }
                }
            });
            s.spawn(move || {
                for _ in 0..per {
                    loop {
                        if let Some(v) = pop() {
                            std::hint::black_box(v);
                            break;
                        }
                        std::hint::spin_loop();
                    }
                }
            });
        }
    });
    start.elapsed().as_nanos() as f64 / (per * n as u64) as f64
}

/// A named queue removed on drop, also when the run fails.
struct QueueGuard(String);

impl Drop for QueueGuard {
    fn drop(&mut self) {
        let _ = Queue::remove(&self.0);
    }
}

/// Kills the echo if the run ends early.
struct EchoChild(Child);

impl Drop for EchoChild {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Where each round's c2c round trip says the two vCPUs sat: "near" below the first figure
/// (the README's fast placement: c2c round trips of 110-135 ns on the 2-vCPU VM), "far" above
/// the second (its slow placement: 200 ns and more), "unclear" between (a busy machine).
const C2C_RTT_NS_NEAR_FAR: [f64; 2] = [150.0, 200.0];

fn placement(c2c_rtt_p50_ns: f64) -> &'static str {
    match c2c_rtt_p50_ns {
        x if x < C2C_RTT_NS_NEAR_FAR[0] => "near",
        x if x > C2C_RTT_NS_NEAR_FAR[1] => "far",
        _ => "unclear",
    }
}

/// The handoff of `size`-byte items between cores `pair`: `rounds` rounds, each measuring the
/// queue, the Vyukov floor and c2c back to back (their order alternating from round to round,
/// so that all three see the same machine).
fn handoff_row(
    pair: [usize; 2],
    size: usize,
    iters: u64,
    rounds: u32,
    clock: ClockKind,
) -> Result<HandoffRow, String> {
    let scale = clock.ns_per_tick();
    let mut out = Vec::new();
    let mut stride = 0;
    for round in 0..rounds {
        let mut queue = || -> Result<Pct, String> {
            let (s, ticks) = handoff(pair, size, iters, clock)?;
            stride = s;
            Ok(ticks.to_ns(scale))
        };
        let floor = |f| vyukov::handoff(pair, size, iters, clock, f).map(|t| t.to_ns(scale));
        let c2c =
            || c2c::process_rtt(pair[0], pair[1], iters / 10, iters, clock).map(|t| t.to_ns(scale));
        let (q, v, vc, c) = if round % 2 == 0 {
            let c = c2c()?;
            let vc = floor(Floor::Claim)?;
            let q = queue()?;
            (q, floor(Floor::Plain)?, vc, c)
        } else {
            let v = floor(Floor::Plain)?;
            let q = queue()?;
            let vc = floor(Floor::Claim)?;
            (q, v, vc, c2c()?)
        };
        out.push(HandoffRound {
            placement: placement(c.p50),
            queue: q,
            vyukov: v,
            vyukov_claim: vc,
            c2c: c,
        });
    }
    if stride != vyukov::stride(size) {
        return Err(format!(
            "the queue's slots are {stride} bytes apart, the floor's {}: the floor no longer \
             matches the queue's layout",
            vyukov::stride(size)
        ));
    }
    let med = |f: &dyn Fn(&HandoffRound) -> f64| median(&mut out.iter().map(f).collect::<Vec<_>>());
    let (queue_p50, c2c_p50) = (med(&|r| r.queue.p50), med(&|r| r.c2c.p50));
    Ok(HandoffRow {
        size,
        cores: pair,
        stride,
        round_trips: iters,
        queue_rtt_p50_ns: queue_p50,
        queue_rtt_p90_ns: med(&|r| r.queue.p90),
        queue_rtt_p99_ns: med(&|r| r.queue.p99),
        vyukov_rtt_p50_ns: med(&|r| r.vyukov.p50),
        vyukov_rtt_p90_ns: med(&|r| r.vyukov.p90),
        vyukov_rtt_p99_ns: med(&|r| r.vyukov.p99),
        vyukov_claim_rtt_p50_ns: med(&|r| r.vyukov_claim.p50),
        c2c_rtt_p50_ns: c2c_p50,
        ratio: queue_p50 / c2c_p50,
        vyukov_ratio: med(&|r| r.queue.p50 / r.vyukov.p50),
        claim_ratio: med(&|r| r.vyukov_claim.p50 / r.vyukov.p50),
        rounds: out,
    })
}

/// Times `warmup + iters` round trips, the last `iters` one by one: `send` (retried while it
/// returns false), then `recv` retried until it returns true. `alive` is asked now and then
/// while waiting.
fn ping_pong(
    warmup: u64,
    iters: u64,
    clock: ClockKind,
    mut send: impl FnMut() -> bool,
    mut recv: impl FnMut() -> bool,
    mut alive: impl FnMut() -> bool,
) -> Result<TickSummary, String> {
    let mut h = histogram();
    for i in 0..warmup + iters {
        let t0 = clock.now();
        while !send() {
            std::hint::spin_loop();
        }
        let mut polls = 0u32;
        while !recv() {
            polls = polls.wrapping_add(1);
            if polls.is_multiple_of(1 << 20) && !alive() {
                return Err("the echo exited".into());
            }
            std::hint::spin_loop();
        }
        let t1 = clock.now();
        if i >= warmup {
            let _ = h.record(t1.saturating_sub(t0).max(1));
        }
    }
    Ok(TickSummary::of(&h))
}

/// Starts `queue <args> --size SIZE --core CORE`, the echo child of a handoff.
fn spawn_echo(args: &[&str], size: usize, core: usize) -> Result<EchoChild, String> {
    let exe = std::env::current_exe().map_err(|e| format!("cannot find this program: {e}"))?;
    let child = Command::new(exe)
        .arg("queue")
        .args(args)
        .args(["--size", &size.to_string(), "--core", &core.to_string()])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .spawn()
        .map_err(|e| format!("cannot start the queue echo: {e}"))?;
    Ok(EchoChild(child))
}

/// The queue of a handoff of `size`-byte items: a `Queue<u64>` for 8 bytes (its slots packed
/// 32 bytes apart), raw queues of exactly `size` bytes otherwise.
fn handoff_queue(name: &str, size: usize, create: bool) -> Result<HandoffQueue, String> {
    let b = Queue::builder(name)
        .capacity(HANDOFF_CAPACITY)
        .stall_bound(stall_bound());
    let r = if size == 8 {
        let b = b.item_type::<u64>();
        if create { b.create() } else { b.open() }.map(HandoffQueue::U64)
    } else {
        let b = b.item_size(size);
        if create { b.create() } else { b.open() }.map(HandoffQueue::Raw)
    };
    r.map_err(|e| e.to_string())
}

/// Capacity of the handoff's queues (and of the floor's rings).
const HANDOFF_CAPACITY: u64 = 64;

enum HandoffQueue {
    U64(Queue<u64>),
    Raw(Queue),
}

impl HandoffQueue {
    fn stride(&self) -> usize {
        match self {
            HandoffQueue::U64(q) => q.header().slot_stride as usize,
            HandoffQueue::Raw(q) => q.header().slot_stride as usize,
        }
    }
}

/// Round trips of one `size`-byte item: this process pushes on `ping`, the echo on core `b`
/// pops it and pushes it on `pong`, this process pops it. Also the queues' slot stride.
fn handoff(
    [a, b]: [usize; 2],
    size: usize,
    iters: u64,
    clock: ClockKind,
) -> Result<(usize, TickSummary), String> {
    let ping = QueueGuard(sys::unique_name("qping"));
    let pong = QueueGuard(sys::unique_name("qpong"));
    let (qi, qo) = (
        handoff_queue(&ping.0, size, true)?,
        handoff_queue(&pong.0, size, true)?,
    );
    let mut child = spawn_echo(&["--echo", &ping.0, &pong.0], size, b)?;
    let alive = || matches!(child.0.try_wait(), Ok(None));
    let e = |e: shmbus::Error| e.to_string();
    // Each kind of queue monomorphic, as a user's code is: no dynamic calls in the timed loop.
    let t = match (&qi, &qo) {
        (HandoffQueue::U64(qi), HandoffQueue::U64(qo)) => {
            let (mut tx, mut rx) = (qi.sender().map_err(e)?, qo.receiver().map_err(e)?);
            sys::pin(a)?;
            let item = 0x5a5a_5a5a_5a5a_5a5au64;
            ping_pong(
                iters / 10,
                iters,
                clock,
                || tx.try_send(item).is_ok(),
                || rx.try_recv().map(|v| std::hint::black_box(*v)).is_some(),
                alive,
            )?
        }
        (HandoffQueue::Raw(qi), HandoffQueue::Raw(qo)) => {
            let (mut tx, mut rx) = (qi.sender().map_err(e)?, qo.receiver().map_err(e)?);
            sys::pin(a)?;
            let item = [0x5au8; 48];
            ping_pong(
                iters / 10,
                iters,
                clock,
                || tx.try_send(&item[..size]).is_ok(),
                // The receive has copied the item out of the slot (into the handle's buffer,
                // as the floor's pop copies it into the caller's).
                || rx.try_recv().map(std::hint::black_box).is_some(),
                alive,
            )?
        }
        _ => unreachable!("both queues are made by handoff_queue for the same size"),
    };
    Ok((qi.stride(), t))
}

/// The echo process: pops from `ping`, pushes to `pong`, until the parent goes away.
fn echo(ping: &str, pong: &str, size: usize, core: Option<usize>) -> Result<(), String> {
    sys::die_with_parent();
    if let Some(c) = core {
        sys::pin(c)?;
    }
    let (qi, qo) = (
        handoff_queue(ping, size, false)?,
        handoff_queue(pong, size, false)?,
    );
    let e = |e: shmbus::Error| e.to_string();
    match (&qi, &qo) {
        (HandoffQueue::U64(qi), HandoffQueue::U64(qo)) => {
            let (mut rx, mut tx) = (qi.receiver().map_err(e)?, qo.sender().map_err(e)?);
            loop {
                let Some(&v) = rx.try_recv() else {
                    std::hint::spin_loop();
                    continue;
                };
                while tx.try_send(v).is_err() {
                    std::hint::spin_loop();
                }
            }
        }
        (HandoffQueue::Raw(qi), HandoffQueue::Raw(qo)) => {
            let (mut rx, mut tx) = (qi.receiver().map_err(e)?, qo.sender().map_err(e)?);
            loop {
                // Sent on from the receiver's buffer, where the receive copied it (the floor's
                // echo pops into a buffer and pushes from it: one copy each way, as here).
                let Some(item) = rx.try_recv() else {
                    std::hint::spin_loop();
                    continue;
                };
                while tx.try_send(item).is_err() {
                    std::hint::spin_loop();
                }
            }
        }
        _ => Err("the ping and pong queues differ in kind".into()),
    }
}

/// `n` sends and receives in turn of `size`-byte items on a named queue of the handoff's shape.
fn solo(n: u64, size: usize) -> Result<(), String> {
    let name = QueueGuard(sys::unique_name("qsolo"));
    let e = |e: shmbus::Error| e.to_string();
    match handoff_queue(&name.0, size, true)? {
        HandoffQueue::U64(q) => {
            let (mut tx, mut rx) = (q.sender().map_err(e)?, q.receiver().map_err(e)?);
            for i in 0..n {
                if tx.try_send(i).is_err() || rx.try_recv().copied() != Some(i) {
                    return Err(format!("item {i} did not come back"));
                }
            }
        }
        HandoffQueue::Raw(q) => {
            let (mut tx, mut rx) = (q.sender().map_err(e)?, q.receiver().map_err(e)?);
            let mut item = [0u8; 48];
            for i in 0..n {
                item[..8].copy_from_slice(&i.to_ne_bytes());
                if tx.try_send(&item[..size]).is_err()
                    || rx.try_recv().map(|got| got[..8] == item[..8]) != Some(true)
                {
                    return Err(format!("item {i} did not come back"));
                }
            }
        }
    }
    Ok(())
}

/// The floor of the handoff: Dmitry Vyukov's bounded MPMC queue ("Bounded MPMC queue",
/// 1024cores.net) in its minimal form, in a shared file of /dev/shm, with the segment queue's
/// geometry: the enqueue and dequeue positions on lines of their own at the queue's tail and
/// head offsets, and slots at the queue's stride (a sequence word, then the item's words).
/// No claim words, no length word, no counters, no liveness: what the segment queue adds for
/// crashes and types is what the ratio prices. [`Floor::Claim`] adds back one thing, the crash
/// protocol's claim word (docs/design.md §11, "Claims and repair"): each side stores the position
/// it is about to take into a word of its own, on its own line at the queue's participant-table
/// offset, before the CAS, as the segment queue does.
mod vyukov {
    use std::path::{Path, PathBuf};
    use std::sync::atomic::{AtomicU64, Ordering};

    use super::{ping_pong, spawn_echo, ClockKind, TickSummary, HANDOFF_CAPACITY};
    use crate::sys;

    /// Which floor.
    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    pub(super) enum Floor {
        /// Vyukov's queue as published.
        Plain,
        /// With the claim-word store before each CAS.
        Claim,
    }

    /// Words of one ring: a header page and slots, as a segment queue of 64 slots of at most
    /// 64 bytes lays them out.
    const RING_WORDS: usize = 1024;
    /// Word offsets in a ring, the segment queue's: the tail (the enqueue position), the head
    /// (the dequeue position), the participant table's claim words (entry 0: the parent's,
    /// entry 1: the echo's; each entry a line), the first slot.
    const ENQ: usize = 128;
    const DEQ: usize = 144;
    const CLAIM: [usize; 2] = [256 + 3, 256 + 8 + 3];
    const SLOTS: usize = 512;
    /// Word of the file where the echo says it is ready (ring 0's first line, otherwise unused).
    const READY_WORD: usize = 0;
    const BYTES: usize = 2 * RING_WORDS * 8;

    /// The slot stride the segment queue uses for `size`-byte items (docs/design.md §11,
    /// "Layout"): the header words and the item, rounded up to 32 bytes when they fit in 32
    /// (two slots to a line), else to 64.
    pub(super) fn stride(size: usize) -> usize {
        let bytes = 16 + size;
        if bytes <= 32 {
            32
        } else {
            bytes.next_multiple_of(64)
        }
    }

    /// The shared file of the two rings (ping, pong), removed when its creator drops it.
    struct Rings {
        path: PathBuf,
        map: memmap2::MmapMut,
        owner: bool,
    }

    impl Rings {
        fn create() -> Result<Rings, String> {
            let (path, file) = sys::create_shm_file("vyukov", BYTES as u64)?;
            Ok(Rings {
                map: Self::map(&path, &file)?,
                path,
                owner: true,
            })
        }

        fn open(path: &Path) -> Result<Rings, String> {
            let file = sys::open_shm_file(path)?;
            Ok(Rings {
                map: Self::map(path, &file)?,
                path: path.to_owned(),
                owner: false,
            })
        }

        fn map(path: &Path, file: &std::fs::File) -> Result<memmap2::MmapMut, String> {
            let len = file.metadata().map(|m| m.len()).unwrap_or(0);
            if len < BYTES as u64 {
                return Err(format!(
                    "{} is {len} bytes, expected {BYTES}",
                    path.display()
                ));
            }
            // SAFETY: the file is this run's (created 0600 by the parent, opened by its echo
            // child), at least the length mapped (checked above) and never truncated while
            // mapped; all access goes through atomics.
            unsafe { memmap2::MmapOptions::new().len(BYTES).map_mut(file) }
                .map_err(|e| format!("cannot map {}: {e}", path.display()))
        }

        /// The file as words.
        fn words(&self) -> &[AtomicU64] {
            // SAFETY: the mapping is page-aligned and BYTES long, so it holds BYTES / 8 aligned
            // words; it lives as long as `self`; both processes only ever access it atomically.
            unsafe { std::slice::from_raw_parts(self.map.as_ptr().cast::<AtomicU64>(), BYTES / 8) }
        }

        /// Ring `which` (0 ping, 1 pong) for `size`-byte items, used by `side` (0 the parent,
        /// 1 the echo), storing claims or not as `floor` says.
        fn ring(&self, which: usize, size: usize, side: usize, floor: Floor) -> Ring<'_> {
            let w = &self.words()[which * RING_WORDS..][..RING_WORDS];
            let stride = stride(size) / 8;
            Ring {
                enq: &w[ENQ],
                deq: &w[DEQ],
                claim: (floor == Floor::Claim).then(|| &w[CLAIM[side]]),
                slots: &w[SLOTS..][..HANDOFF_CAPACITY as usize * stride],
                stride,
                words: size.div_ceil(8),
            }
        }
    }

    impl Drop for Rings {
        fn drop(&mut self) {
            if self.owner {
                let _ = std::fs::remove_file(&self.path);
            }
        }
    }

    /// One ring of `HANDOFF_CAPACITY` slots, as one side uses it.
    struct Ring<'a> {
        enq: &'a AtomicU64,
        deq: &'a AtomicU64,
        /// This side's claim word, for [`Floor::Claim`].
        claim: Option<&'a AtomicU64>,
        slots: &'a [AtomicU64],
        /// Words per slot.
        stride: usize,
        /// Item words per slot.
        words: usize,
    }

    const MASK: u64 = HANDOFF_CAPACITY - 1;

    impl Ring<'_> {
        /// Position `pos`'s slot: its sequence word, then the item's words.
        #[inline]
        fn slot(&self, pos: u64) -> &[AtomicU64] {
            &self.slots[(pos & MASK) as usize * self.stride..][..self.stride]
        }

        /// Slot `i`'s sequence word starts at `i`: free for position `i`.
        fn init(&self) {
            for i in 0..HANDOFF_CAPACITY {
                self.slot(i)[0].store(i, Ordering::Relaxed);
            }
        }

        /// The segment queue's claim store (as `Sender::begin` and `Receiver::begin` make it).
        #[inline]
        fn name(&self, claim: u64) {
            if let Some(c) = self.claim {
                // ORDERING: Release, as the segment queue's claim stores (nobody reads it here).
                c.store(claim, Ordering::Release);
            }
        }

        /// Vyukov's enqueue: false when full.
        #[inline]
        fn push(&self, item: &[u64]) -> bool {
            let mut pos = self.enq.load(Ordering::Relaxed);
            loop {
                let slot = self.slot(pos);
                // ORDERING: Acquire pairs with the Release store that freed the slot in `pop`.
                let seq = slot[0].load(Ordering::Acquire);
                let dif = seq.wrapping_sub(pos) as i64;
                if dif == 0 {
                    self.name(pos + 1);
                    match self.enq.compare_exchange_weak(
                        pos,
                        pos + 1,
                        Ordering::Relaxed,
                        Ordering::Relaxed,
                    ) {
                        Ok(_) => {
                            for (dst, &w) in slot[1..].iter().zip(&item[..self.words]) {
                                dst.store(w, Ordering::Relaxed);
                            }
                            // ORDERING: Release pairs with the Acquire sequence load in `pop`.
                            slot[0].store(pos + 1, Ordering::Release);
                            return true;
                        }
                        Err(now) => pos = now,
                    }
                } else if dif < 0 {
                    return false;
                } else {
                    pos = self.enq.load(Ordering::Relaxed);
                }
            }
        }

        /// Vyukov's dequeue: false when empty.
        #[inline]
        fn pop(&self, item: &mut [u64]) -> bool {
            let mut pos = self.deq.load(Ordering::Relaxed);
            loop {
                let slot = self.slot(pos);
                // ORDERING: Acquire pairs with the Release publish in `push`.
                let seq = slot[0].load(Ordering::Acquire);
                let dif = seq.wrapping_sub(pos + 1) as i64;
                if dif == 0 {
                    self.name((pos + 1) | 1 << 62);
                    match self.deq.compare_exchange_weak(
                        pos,
                        pos + 1,
                        Ordering::Relaxed,
                        Ordering::Relaxed,
                    ) {
                        Ok(_) => {
                            for (dst, w) in item[..self.words].iter_mut().zip(&slot[1..]) {
                                *dst = w.load(Ordering::Relaxed);
                            }
                            // ORDERING: Release pairs with the Acquire sequence load in `push`.
                            slot[0].store(pos + MASK + 1, Ordering::Release);
                            return true;
                        }
                        Err(now) => pos = now,
                    }
                } else if dif < 0 {
                    return false;
                } else {
                    pos = self.deq.load(Ordering::Relaxed);
                }
            }
        }
    }

    fn floor_arg(floor: Floor) -> &'static str {
        match floor {
            Floor::Plain => "--vyukov-echo",
            Floor::Claim => "--vyukov-claim-echo",
        }
    }

    /// Round trips of one `size`-byte item through the two rings, as [`super::handoff`] does.
    pub(super) fn handoff(
        [a, b]: [usize; 2],
        size: usize,
        iters: u64,
        clock: ClockKind,
        floor: Floor,
    ) -> Result<TickSummary, String> {
        let rings = Rings::create()?;
        let (ping, pong) = (rings.ring(0, size, 0, floor), rings.ring(1, size, 0, floor));
        ping.init();
        pong.init();
        let path = rings.path.display().to_string();
        let mut child = spawn_echo(&[floor_arg(floor), &path], size, b)?;
        sys::pin(a)?;
        sys::spin_until(
            "the Vyukov echo to start",
            || rings.words()[READY_WORD].load(Ordering::Acquire) == 1,
            || matches!(child.0.try_wait(), Ok(None)),
        )?;
        let item = [0x5a5a_5a5a_5a5a_5a5au64; 6];
        let mut buf = [0u64; 6];
        ping_pong(
            iters / 10,
            iters,
            clock,
            || ping.push(&item),
            || pong.pop(&mut buf),
            || matches!(child.0.try_wait(), Ok(None)),
        )
    }

    /// `n` pushes and pops in turn of `size`-byte items on one ring (the floor's side of
    /// [`super::solo`]).
    pub(super) fn solo(n: u64, size: usize, floor: Floor) -> Result<(), String> {
        let rings = Rings::create()?;
        let ring = rings.ring(0, size, 0, floor);
        ring.init();
        let (mut item, mut buf) = ([0u64; 6], [0u64; 6]);
        for i in 0..n {
            item[0] = i;
            if !ring.push(&item) || !ring.pop(&mut buf) || buf[0] != i {
                return Err(format!("item {i} did not come back"));
            }
        }
        Ok(())
    }

    /// The floor's echo: pops from ring 0, pushes to ring 1, until the parent goes away.
    pub(super) fn echo(
        path: &Path,
        size: usize,
        core: Option<usize>,
        floor: Floor,
    ) -> Result<(), String> {
        sys::die_with_parent();
        if let Some(c) = core {
            sys::pin(c)?;
        }
        let rings = Rings::open(path)?;
        let (ping, pong) = (rings.ring(0, size, 1, floor), rings.ring(1, size, 1, floor));
        // ORDERING: Release pairs with the parent's Acquire wait for it (nothing rides on it).
        rings.words()[READY_WORD].store(1, Ordering::Release);
        let mut buf = [0u64; 6];
        loop {
            if !ping.pop(&mut buf) {
                std::hint::spin_loop();
                continue;
            }
            while !pong.push(&buf) {
                std::hint::spin_loop();
            }
        }
    }
}

/// The end item of the throughput run: shorter than every data item.
const END: &[u8] = b"E";

/// One sender (this process) to `k` receiver processes: `items` 8-byte items, then one end
/// item per receiver. Timed from the first send to the last receiver's report.
fn across_processes(k: usize, items: u64, cores: &[usize]) -> Result<ProcessRow, String> {
    let guard = QueueGuard(sys::unique_name("qtput"));
    let q = Queue::builder(&guard.0)
        .capacity(1024)
        .item_size(8)
        .stall_bound(stall_bound())
        .create()
        .map_err(|e| e.to_string())?;
    let exe = std::env::current_exe().map_err(|e| format!("cannot find this program: {e}"))?;
    let mut children = Vec::new();
    for i in 0..k {
        let mut cmd = Command::new(&exe);
        cmd.args(["queue", "--drain", &guard.0]);
        if let Some(c) = cores.get((i + 1) % cores.len().max(1)) {
            cmd.args(["--core", &c.to_string()]);
        }
        let child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .spawn()
            .map_err(|e| format!("cannot start a queue receiver: {e}"))?;
        children.push(EchoChild(child));
    }
    // Start the clock once every receiver has attached, so that start-up is not timed.
    let attached = Instant::now();
    while q
        .participants()
        .iter()
        .filter(|p| p.alive && p.role == Some(shmbus::Role::Receiver))
        .count()
        < k
    {
        if attached.elapsed().as_secs() > 30 {
            return Err("the queue receivers did not attach within 30 s".into());
        }
        std::thread::yield_now();
    }
    if let Some(&c) = cores.first() {
        sys::pin(c)?;
    }
    let mut tx = q
        .sender()
        .map_err(|e| e.to_string())?
        .wait_strategy(Wait::Yield);
    let start = Instant::now();
    for i in 0..items {
        let _ = tx.send(&i.to_le_bytes());
    }
    for _ in 0..k {
        let _ = tx.send(END);
    }
    let mut per_receiver = Vec::new();
    for c in &mut children {
        let mut out = String::new();
        use std::io::Read as _;
        c.0.stdout
            .take()
            .ok_or("a receiver has no output")?
            .read_to_string(&mut out)
            .map_err(|e| format!("cannot read a receiver: {e}"))?;
        per_receiver.push(
            out.trim()
                .parse::<u64>()
                .map_err(|_| format!("a queue receiver failed (it printed {out:?})"))?,
        );
    }
    let elapsed = start.elapsed().as_nanos() as f64;
    let got: u64 = per_receiver.iter().sum();
    if got != items {
        return Err(format!("the receivers got {got} items of {items}"));
    }
    Ok(ProcessRow {
        receivers: k,
        items,
        items_per_sec: items as f64 * 1e9 / elapsed,
        ns_per_item: elapsed / items as f64,
        per_receiver,
        oversubscribed: k + 1 > cores.len(),
    })
}

/// A receiver of the throughput run: counts items until the end item, then prints the count.
fn drain(name: &str, core: Option<usize>) -> Result<(), String> {
    sys::die_with_parent();
    if let Some(c) = core {
        sys::pin(c)?;
    }
    let q = Queue::open(name).map_err(|e| e.to_string())?;
    let mut rx = q
        .receiver()
        .map_err(|e| e.to_string())?
        .wait_strategy(Wait::Yield);
    let mut n = 0u64;
    loop {
        // `None`: no sender attached yet (or for a moment): wait on for the end marker.
        let Some(item) = rx.recv() else { continue };
        if item.len() == END.len() {
            break;
        }
        n += 1;
    }
    println!("{n}");
    Ok(())
}
