//! `shmbus-bench queue`: the work queue next to its floors, measured in the same run.
//!
//! * In-process throughput, one sender and one receiver thread (SPSC) and four of each (MPMC),
//!   of the segment queue (on the heap) and of `LocalQueue`, against
//!   `crossbeam_queue::ArrayQueue` doing the same work on the same machine: the figure is the
//!   ratio.
//! * Cross-process handoff: a round trip through two named queues (ping, then pong) between
//!   this process and a child, against the c2c round trip of one cache line between the same
//!   cores (the floor any shared-memory handoff pays).
//! * Cross-process throughput: this process sends 8-byte items as fast as the queue takes them
//!   to 1, 2 and 4 receiver processes (every item to exactly one of them).

use std::process::{Child, Command, Stdio};
use std::time::Instant;

use crossbeam_queue::ArrayQueue;
use serde::Serialize;
use shmbus::{LocalQueue, Queue, QueueBuilder, Wait};

use crate::c2c;
use crate::clock::ClockKind;
use crate::stats::{histogram, TickSummary};
use crate::sys;

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
    /// Receiver process counts of the cross-process throughput run, comma-separated.
    #[arg(long, value_delimiter = ',', default_values_t = [1, 2, 4])]
    consumers: Vec<usize>,
    /// A receiver of the throughput run (internal): drain QUEUE until the end item, then
    /// print the count.
    #[arg(long, hide = true, value_name = "QUEUE")]
    drain: Option<String>,
    /// The echo side of the handoff (internal): answer each item of PING on PONG.
    #[arg(long, hide = true, num_args = 2, value_names = ["PING", "PONG"])]
    echo: Vec<String>,
    /// The echo's core (internal).
    #[arg(long, hide = true)]
    core: Option<usize>,
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
    round_trips: u64,
    queue_rtt_p50_ns: f64,
    c2c_rtt_p50_ns: f64,
    /// Queue round trip over c2c round trip (p50).
    ratio: f64,
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

pub fn run(a: &QueueArgs, json: bool, quick: bool) -> Result<(), String> {
    if let [ping, pong] = a.echo.as_slice() {
        return echo(ping, pong, a.core);
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
    let rounds = a.rounds.unwrap_or(if quick { 1 } else { 7 }).max(1);
    for (what, n) in [("spsc", 1), ("mpmc", 4)] {
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
    if cores.len() >= 2 {
        let pair = [cores[0], cores[1]];
        let scale = clock.ns_per_tick();
        let floor = c2c::process_rtt(pair[0], pair[1], iters / 10, iters, clock)?;
        let floor_p50 = floor.to_ns(scale).p50;
        for &size in &a.sizes {
            if !(8..=48).contains(&size) {
                return Err(format!("handoff sizes are 8 to 48 bytes, not {size}"));
            }
            let rtt = handoff(pair, size, iters, clock)?.to_ns(scale).p50;
            r.handoff.push(HandoffRow {
                size,
                cores: pair,
                round_trips: iters,
                queue_rtt_p50_ns: rtt,
                c2c_rtt_p50_ns: floor_p50,
                ratio: rtt / floor_p50,
            });
        }
    }
    for &k in &a.consumers {
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
        let _ = writeln!(
            t,
            "work queue throughput (ns per item, medians of alternating rounds; (ratio to crossbeam ArrayQueue))"
        );
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
        if let Some(o) = &r.oversubscribed {
            let _ = writeln!(t, "  note: {o}");
        }
        let _ = writeln!(
            t,
            "cross-process handoff (round trip p50, ns; ratio = queue / c2c, same cores, same run)"
        );
        for row in &r.handoff {
            let _ = writeln!(
                t,
                "  {:2} B  cores {}-{}  queue {:8.1}  c2c {:8.1}  ratio {:5.2}",
                row.size,
                row.cores[0],
                row.cores[1],
                row.queue_rtt_p50_ns,
                row.c2c_rtt_p50_ns,
                row.ratio
            );
        }
        if r.handoff.is_empty() {
            let _ = writeln!(t, "  skipped: it needs 2 usable cores");
        }
        let _ = writeln!(
            t,
            "cross-process throughput (one sender process, 8-byte items, every item to one receiver)"
        );
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

/// Round trips of one `size`-byte item: this process pushes on `ping`, the echo on core `b`
/// pops it and pushes it on `pong`, this process pops it.
fn handoff(
    [a, b]: [usize; 2],
    size: usize,
    iters: u64,
    clock: ClockKind,
) -> Result<TickSummary, String> {
    let ping = QueueGuard(sys::unique_name("qping"));
    let pong = QueueGuard(sys::unique_name("qpong"));
    let make = |name: &str| {
        Queue::builder(name)
            .capacity(64)
            .item_size(48)
            .create()
            .map_err(|e| e.to_string())
    };
    let (qi, qo) = (make(&ping.0)?, make(&pong.0)?);
    let exe = std::env::current_exe().map_err(|e| format!("cannot find this program: {e}"))?;
    let child = Command::new(exe)
        .args([
            "queue",
            "--echo",
            &ping.0,
            &pong.0,
            "--core",
            &b.to_string(),
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .spawn()
        .map_err(|e| format!("cannot start the queue echo: {e}"))?;
    let mut child = EchoChild(child);
    let mut tx = qi.sender().map_err(|e| e.to_string())?;
    let mut rx = qo.receiver().map_err(|e| e.to_string())?;
    sys::pin(a)?;
    let item = vec![0x5au8; size];
    let mut h = histogram();
    for i in 0..iters + iters / 10 {
        let t0 = clock.now();
        while tx.try_send(&item).is_err() {
            std::hint::spin_loop();
        }
        let mut polls = 0u32;
        while rx.try_recv().is_none() {
            polls = polls.wrapping_add(1);
            if polls.is_multiple_of(1 << 20) && !matches!(child.0.try_wait(), Ok(None)) {
                return Err("the queue echo exited".into());
            }
            std::hint::spin_loop();
        }
        let t1 = clock.now();
        if i >= iters / 10 {
            let _ = h.record(t1.saturating_sub(t0).max(1));
        }
    }
    drop(tx);
    Ok(TickSummary::of(&h))
}

/// The echo process: pops from `ping`, pushes to `pong`, until the parent goes away.
fn echo(ping: &str, pong: &str, core: Option<usize>) -> Result<(), String> {
    sys::die_with_parent();
    if let Some(c) = core {
        sys::pin(c)?;
    }
    let qi = Queue::open(ping).map_err(|e| e.to_string())?;
    let qo = Queue::open(pong).map_err(|e| e.to_string())?;
    let mut rx = qi.receiver().map_err(|e| e.to_string())?;
    let mut tx = qo.sender().map_err(|e| e.to_string())?;
    let mut buf = [0u8; 48];
    loop {
        let n = match rx.try_recv() {
            Some(item) => {
                buf[..item.len()].copy_from_slice(item);
                item.len()
            }
            None => {
                std::hint::spin_loop();
                continue;
            }
        };
        while tx.try_send(&buf[..n]).is_err() {
            std::hint::spin_loop();
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

/// The median of `v` (not empty).
fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}
