//! `shmbus-bench`: how fast shmbus is on this machine, next to the floor set by the hardware.
//!
//! Producers and consumers run in separate OS processes (this binary re-executes itself with the
//! hidden `__child` command), each pinned to a core. Every latency is reported with its ratio to
//! the core-to-core latency of the same pair of cores, measured in the same run.
//!
//! With no command, a complete run of about half a minute: c2c, latency (8 and 64 bytes),
//! throughput, fan-out with 1 and 3 consumers, and the idle-subscriber curve.
//!
//! The code is layered, each layer using only those below it: `proto` (what parent and children
//! say to each other) and the helpers beside it; `engine` (the timed loops, generic over the
//! transport); the experiments (one file each, setting up their transport and calling the
//! engine); and on top `child` (which experiment plays a child's role) and this file (which
//! experiments a command runs, and how the report is printed).

// The layers, bottom up. Below the engine: the machine, the clock, statistics, the report, the
// child protocol, and c2c (the floor every latency is compared with, measured on demand).
mod c2c;
mod clock;
mod ctx;
mod proto;
mod report;
mod stats;
mod sys;
// The timed loops, generic over the transport.
mod engine;
// The experiments, each over its transport.
mod board;
mod fanout;
mod floor;
mod journal;
mod lanes;
mod latency;
mod mp;
#[cfg(feature = "peers")]
mod peer;
mod queue;
mod records;
mod soak;
mod throughput;
// On top: the roles of child processes, and the plot of a report.
mod child;
mod plot;

use std::io::Write;
use std::path::PathBuf;

use clap::{Parser, Subcommand};

use crate::ctx::Ctx;
use crate::engine::pingpong;
use crate::engine::publish::Load;
use crate::report::{Curve, Machine, Report};

#[derive(Parser, Debug)]
#[command(
    name = "shmbus-bench",
    version,
    about = "Latency, throughput and fan-out of shmbus across processes, next to core-to-core latency",
    long_about = "Latency, throughput and fan-out of shmbus across processes, next to core-to-core \
                  latency. With no command: a complete run (c2c, latency, throughput, fan-out, \
                  idle subscribers) in under a minute."
)]
struct Cli {
    #[command(subcommand)]
    cmd: Option<Cmd>,
    /// Print JSON instead of a table.
    #[arg(long, global = true)]
    json: bool,
    /// Print CSV (one row per figure) instead of a table.
    #[arg(long, global = true, conflicts_with = "json")]
    csv: bool,
    /// Also draw the latency percentile curves into this SVG file.
    #[arg(long, global = true, value_name = "FILE.svg")]
    plot: Option<PathBuf>,
    /// A short run with rough figures, for smoke tests.
    #[arg(long, global = true)]
    quick: bool,
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// Core-to-core latency of one cache line, between threads and between processes.
    C2c(C2cArgs),
    /// One-way latency between two processes for a sweep of payload sizes.
    Latency(LatencyArgs),
    /// One producer, K consumer processes; or the publish cost with idle subscribers attached.
    Fanout(FanoutArgs),
    /// Messages and bytes per second for payload and ring sizes, with each consumer's losses.
    Throughput(ThroughputArgs),
    /// Several producer processes on one multi-producer bus: rate and latency under contention.
    Mp(MpArgs),
    /// Correctness soak: producer and consumer processes (bus) or senders and receivers (queue)
    /// checking every message, with kills and stops past the stall bound on request.
    #[command(long_about = soak::LONG_ABOUT)]
    Soak(soak::SoakArgs),
    /// Work queue: in-process throughput against crossbeam's ArrayQueue, and the cross-process
    /// handoff round trip against c2c, each measured in the same run.
    Queue(queue::QueueArgs),
    /// Board get and set beside a minimal seqlock, and cross-process update-to-observe latency
    /// beside c2c.
    Board(board::BoardArgs),
    /// Journal record throughput (64 B and 4 KiB) next to the file system's write bandwidth.
    Journal(journal::JournalArgs),
    /// Lanes: publish cost, one-way latency, throughput of 1 to 16 producer processes and the
    /// consumer's cost with many idle lanes, each beside its floor in the same run.
    Lanes(lanes::LanesArgs),
    /// A child process's role (internal).
    #[command(name = "__child", hide = true)]
    Child(child::ChildArgs),
}

/// A peer transport to measure in the same harness.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
enum PeerKind {
    Iceoryx2,
}

#[derive(clap::Args, Debug)]
struct C2cArgs {
    /// Cores to measure every pair of, comma-separated (default: all usable, at most 8).
    #[arg(long, value_delimiter = ',')]
    cores: Vec<usize>,
    /// Round trips per pair.
    #[arg(long)]
    iters: Option<u64>,
}

#[derive(clap::Args, Debug)]
struct LatencyArgs {
    /// Producer core and consumer core, comma-separated (default: the first two usable).
    #[arg(long, value_delimiter = ',', num_args = 1)]
    cores: Vec<usize>,
    /// Payload sizes in bytes, comma-separated (at least 8: the timestamp).
    #[arg(long, value_delimiter = ',', default_values_t = [8, 64, 256, 1024, 4096])]
    payloads: Vec<usize>,
    /// Round trips per payload size.
    #[arg(long)]
    iters: Option<u64>,
    /// Also measure this transport on the same workload.
    #[arg(long, value_enum)]
    peer: Option<PeerKind>,
    /// How both ends wait: spin, sleep (blocking recv), or async (recv_async; needs the tokio
    /// feature). Sleep and async are reported beside a raw futex ping-pong of the same run.
    #[arg(long, value_enum, default_value_t)]
    wait: latency::WaitMode,
    /// `records`: also measure records segments (variable-size records in a byte ring) on the
    /// same workload, next to the bus.
    #[arg(long, value_enum, default_value_t)]
    kind: SegmentKindArg,
}

/// Which segment kind a latency or throughput run measures.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
enum SegmentKindArg {
    /// The fixed-slot bus.
    #[default]
    Bus,
    /// Records segments, next to the bus (latency) or to single-core memcpy (throughput).
    Records,
}

#[derive(clap::Args, Debug)]
struct FanoutArgs {
    /// Numbers of consumer processes, comma-separated: one run each.
    #[arg(long, value_delimiter = ',', default_values_t = [1, 2, 3])]
    consumers: Vec<usize>,
    /// Instead: the publish cost with this many idle subscriber processes attached (a list is a
    /// curve; one number K gives the curve 0, K/16, K/4, K). At most 256.
    #[arg(long, value_delimiter = ',', num_args = 1)]
    idle_subscribers: Vec<usize>,
    /// How long an idle subscriber sleeps between polls, in milliseconds.
    #[arg(long, default_value_t = 100)]
    idle_poll_ms: u64,
    /// Payload size in bytes (at least 16).
    #[arg(long, default_value_t = 64)]
    payload: usize,
    /// Messages published flat out per run.
    #[arg(long)]
    messages: Option<u64>,
    /// Also measure this transport on the same workload.
    #[arg(long, value_enum)]
    peer: Option<PeerKind>,
}

#[derive(clap::Args, Debug)]
struct ThroughputArgs {
    /// Payload sizes in bytes, comma-separated.
    #[arg(long, value_delimiter = ',', default_values_t = [8, 64, 256, 1024, 4096])]
    payloads: Vec<usize>,
    /// Ring sizes in slots (powers of two), comma-separated.
    #[arg(long, value_delimiter = ',', default_values_t = [1024, 65536])]
    slots: Vec<u64>,
    /// Consumer processes.
    #[arg(long, default_value_t = 1)]
    consumers: usize,
    /// Messages per run.
    #[arg(long)]
    messages: Option<u64>,
    /// `records`: measure records segments (one ring sized for the payload; --slots is
    /// ignored) next to the floor of a cross-process byte ring (and its variants with a
    /// broadcast reader's atomic copy-out) and single-core memcpy of the same sizes.
    #[arg(long, value_enum, default_value_t)]
    kind: SegmentKindArg,
    /// With `--kind records`: instead, in this one process, publish this many records of each
    /// payload size and receive each (for counting instructions under `valgrind
    /// --tool=callgrind`: two counts, the difference over the difference).
    #[arg(long)]
    solo: Option<u64>,
    /// With --solo: only publish (no subscriber).
    #[arg(long)]
    solo_publish: bool,
}

#[derive(clap::Args, Debug)]
struct MpArgs {
    /// Numbers of producer processes, comma-separated: one run each.
    #[arg(long, value_delimiter = ',', default_values_t = [1, 2, 4])]
    producers: Vec<usize>,
    /// Payload size in bytes (at least 16).
    #[arg(long, default_value_t = 64)]
    payload: usize,
    /// Ring size in slots.
    #[arg(long, default_value_t = 4096)]
    slots: u64,
    /// Messages each producer publishes flat out.
    #[arg(long)]
    messages: Option<u64>,
}

fn main() {
    // Read before anything pins a thread: afterwards this process's mask is one core.
    let _ = sys::available_cores();
    let cli = Cli::parse();
    let result = match &cli.cmd {
        Some(Cmd::Child(args)) => child::run(args),
        Some(Cmd::Soak(args)) => soak::run(args, cli.json),
        Some(Cmd::Queue(args)) => queue::run(args, cli.json, cli.quick),
        Some(Cmd::Board(args)) => board::run(args, cli.json, cli.quick),
        Some(Cmd::Journal(args)) => journal::run(args, cli.quick, cli.json),
        Some(Cmd::Lanes(args)) => lanes::run(args, cli.json, cli.quick),
        _ => measure(&cli),
    };
    if let Err(e) = result {
        eprintln!("shmbus-bench: {e}");
        std::process::exit(1);
    }
}

fn measure(cli: &Cli) -> Result<(), String> {
    let ctx = Ctx::new(cli.quick);
    let mut report = Report {
        command: match &cli.cmd {
            None => "default",
            Some(Cmd::C2c(_)) => "c2c",
            Some(Cmd::Latency(_)) => "latency",
            Some(Cmd::Fanout(_)) => "fanout",
            Some(Cmd::Throughput(_)) => "throughput",
            Some(Cmd::Mp(_)) => "mp",
            Some(
                Cmd::Soak(_)
                | Cmd::Child(_)
                | Cmd::Queue(_)
                | Cmd::Board(_)
                | Cmd::Journal(_)
                | Cmd::Lanes(_),
            ) => {
                unreachable!("handled in main")
            }
        }
        .to_owned(),
        machine: Machine {
            cpu: sys::cpu_model(),
            cores: ctx.cores.len(),
            clock: ctx.clock.describe().to_owned(),
            ns_per_tick: ctx.scale,
        },
        ..Report::default()
    };
    if let Some(p) = &cli.plot {
        if p.extension().is_none_or(|e| e != "svg") {
            return Err(format!(
                "--plot writes SVG: give a file name ending in .svg, not {}",
                p.display()
            ));
        }
    }
    match &cli.cmd {
        None => default_run(&ctx, &mut report)?,
        Some(Cmd::C2c(a)) => cmd_c2c(&ctx, &mut report, a)?,
        Some(Cmd::Latency(a)) => cmd_latency(&ctx, &mut report, a)?,
        Some(Cmd::Fanout(a)) => cmd_fanout(&ctx, &mut report, a)?,
        Some(Cmd::Throughput(a)) => cmd_throughput(&ctx, &mut report, a)?,
        Some(Cmd::Mp(a)) => cmd_mp(&ctx, &mut report, a)?,
        Some(
            Cmd::Soak(_)
            | Cmd::Child(_)
            | Cmd::Queue(_)
            | Cmd::Board(_)
            | Cmd::Journal(_)
            | Cmd::Lanes(_),
        ) => {
            unreachable!("handled in main")
        }
    }
    ctx.finish();
    report.warn_about_load();
    if let Some(p) = &cli.plot {
        plot::write(&report, p)?;
    }
    let text = if cli.json {
        serde_json::to_string_pretty(&report).map_err(|e| e.to_string())? + "\n"
    } else if cli.csv {
        report::csv(&report)
    } else {
        report::table(&report)
    };
    let mut out = std::io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        // A reader that stopped early (`| head`) is not an error.
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => {
            Err(format!("cannot write the report: {e}"))
        }
        _ => Ok(()),
    }
}

fn check_peer(peer: Option<PeerKind>) -> Result<(), String> {
    match peer {
        Some(PeerKind::Iceoryx2) if !cfg!(feature = "peers") => Err(
            "this shmbus-bench was built without peers: rebuild with `--features peers` to \
             measure iceoryx2"
                .into(),
        ),
        _ => Ok(()),
    }
}

fn default_run(ctx: &Ctx, report: &mut Report) -> Result<(), String> {
    let [a, b] = ctx.pair(&[])?;
    ctx.steps(7);
    ctx.step(report, "c2c", |r| c2c_pair(ctx, r, &[a, b]))?;
    for payload in [8, 64] {
        ctx.step(report, &format!("latency {payload} B"), |r| {
            latency_one(ctx, r, payload, [a, b], ctx.size(200_000, 2_000))
        })?;
    }
    ctx.step(report, "throughput", |r| {
        throughput::run_one(ctx, r, 64, 4096, 1, a, ctx.size(4_000_000, 50_000))
    })?;
    let load = fanout_load(ctx, 64, None);
    for k in [1, 3] {
        ctx.step(report, &format!("fan-out K={k}"), |r| {
            fanout_k(ctx, r, "shmbus", k, a, &load)
        })?;
    }
    let ks: &[usize] = if ctx.quick {
        &[0, 4]
    } else {
        &[0, 16, 64, 256]
    };
    ctx.step(report, "idle subscribers", |r| {
        fanout::idle_curve(ctx, r, "shmbus", ks, a, &load, 100)
    })?;
    Ok(())
}

fn cmd_c2c(ctx: &Ctx, report: &mut Report, a: &C2cArgs) -> Result<(), String> {
    let cores = if a.cores.is_empty() {
        ctx.cores.iter().copied().take(8).collect()
    } else {
        sys::check_cores(&a.cores)?;
        a.cores.clone()
    };
    if cores.len() < 2 {
        return Err(format!(
            "c2c needs at least 2 cores; this process may use {:?}",
            ctx.cores
        ));
    }
    let mut sizes = ctx.c2c_sizes();
    if let Some(n) = a.iters {
        sizes.iters = n.max(1);
    }
    let pairs = (cores.len() * (cores.len() - 1) / 2) as u64;
    ctx.steps(pairs);
    for (i, &x) in cores.iter().enumerate() {
        for &y in &cores[i + 1..] {
            ctx.step(report, &format!("c2c cores {x}-{y}"), |r| {
                let before = r.curves.len();
                c2c::measure(r, &[x, y], &sizes, ctx.clock, ctx.scale)?;
                name_curves(r, before, "(round trip / 2)");
                Ok(())
            })?;
        }
    }
    Ok(())
}

/// Latency of one payload size over shmbus (rows and curves into `report`).
fn latency_one(
    ctx: &Ctx,
    report: &mut Report,
    payload: usize,
    [a, b]: [usize; 2],
    iters: u64,
) -> Result<(), String> {
    if payload < 8 {
        return Err(format!(
            "payload {payload} B is too small: latency messages carry an 8-byte timestamp"
        ));
    }
    let before = report.curves.len();
    c2c::ensure_pair(report, a, b, &ctx.c2c_sizes(), ctx.clock, ctx.scale)?;
    name_curves(report, before, "(round trip / 2)");
    let m = latency::measure(ctx, "shmbus", payload, [a, b], iters)?;
    let before = report.curves.len();
    pingpong::rows(ctx, report, "shmbus", payload, [a, b], &m);
    // `rows` draws the ping-pong distribution; the stamped one-way hop is drawn beside it.
    name_curves(report, before, "pingpong (round trip / 2)");
    report.curves.push(Curve {
        label: format!("shmbus {payload}B oneway {a}->{b} (receive - send stamp)"),
        points: m.hops.ab.curve_ns(ctx.scale),
    });
    Ok(())
}

/// c2c of one pair of cores, its curves named for what they measure.
fn c2c_pair(ctx: &Ctx, report: &mut Report, pair: &[usize]) -> Result<(), String> {
    let before = report.curves.len();
    c2c::measure(report, pair, &ctx.c2c_sizes(), ctx.clock, ctx.scale)?;
    name_curves(report, before, "(round trip / 2)");
    Ok(())
}

/// Fan-out with `k` consumers; their latencies are stamped one-way hops.
fn fanout_k(
    ctx: &Ctx,
    report: &mut Report,
    transport: &str,
    k: usize,
    producer: usize,
    load: &Load,
) -> Result<(), String> {
    let before = report.curves.len();
    fanout::run_k(ctx, report, transport, k, producer, load)?;
    name_curves(report, before, "oneway (receive - send stamp)");
    Ok(())
}

/// Appends how the distribution was measured to the label of every curve from `from` on, so
/// that a plot's legend tells ping-pong halves from stamped one-way hops.
fn name_curves(report: &mut Report, from: usize, how: &str) {
    for c in report.curves.iter_mut().skip(from) {
        c.label = format!("{} {how}", c.label);
    }
}

fn cmd_latency(ctx: &Ctx, report: &mut Report, a: &LatencyArgs) -> Result<(), String> {
    check_peer(a.peer)?;
    let pair = ctx.pair(&a.cores)?;
    let iters = a.iters.unwrap_or(ctx.size(200_000, 2_000)).max(1);
    let peer_steps = if a.peer.is_some() { 2 } else { 1 };
    let records_steps =
        u64::from(a.kind == SegmentKindArg::Records && a.wait == latency::WaitMode::Spin);
    ctx.steps(1 + (peer_steps + records_steps) * a.payloads.len() as u64);
    ctx.step(report, "c2c", |r| c2c_pair(ctx, r, &pair))?;
    a.wait.check()?;
    for &payload in &a.payloads {
        if a.wait != latency::WaitMode::Spin {
            ctx.step(
                report,
                &format!("latency {payload} B --wait {}", a.wait.name()),
                |r| {
                    let m = latency::measure_waited(ctx, payload, pair, iters, a.wait)?;
                    latency::rows_waited(ctx, r, payload, pair, a.wait, &m);
                    Ok(())
                },
            )?;
            continue;
        }
        ctx.step(report, &format!("latency {payload} B"), |r| {
            latency_one(ctx, r, payload, pair, iters)
        })?;
        if a.kind == SegmentKindArg::Records {
            ctx.step(report, &format!("records latency {payload} B"), |r| {
                let m = latency::measure(ctx, "records", payload, pair, iters)?;
                pingpong::rows(ctx, r, "records", payload, pair, &m);
                Ok(())
            })?;
        }
        #[cfg(feature = "peers")]
        if a.peer == Some(PeerKind::Iceoryx2) {
            ctx.step(report, &format!("iceoryx2 latency {payload} B"), |r| {
                let before = r.curves.len();
                peer::latency(ctx, r, payload, pair, iters)?;
                name_curves(r, before, "pingpong (round trip / 2)");
                Ok(())
            })?;
        }
    }
    Ok(())
}

fn fanout_load(ctx: &Ctx, payload: usize, messages: Option<u64>) -> Load {
    Load {
        payload,
        slots: 4096,
        paced: ctx.size(50_000, 1_000),
        gap_ns: 2_000,
        flat: messages.unwrap_or(ctx.size(2_000_000, 20_000)).max(1),
    }
}

fn cmd_fanout(ctx: &Ctx, report: &mut Report, a: &FanoutArgs) -> Result<(), String> {
    check_peer(a.peer)?;
    if a.payload < 16 {
        return Err(format!(
            "payload {} B is too small: fan-out messages carry a timestamp and a phase (16 bytes)",
            a.payload
        ));
    }
    let producer = *ctx.cores.first().ok_or("no usable core")?;
    let load = fanout_load(ctx, a.payload, a.messages);
    let transports = transports(a.peer);
    if !a.idle_subscribers.is_empty() {
        let ks = idle_curve_points(&a.idle_subscribers)?;
        ctx.steps(transports.len() as u64);
        for &t in transports {
            ctx.step(report, &step_name(t, "idle subscribers"), |r| {
                fanout::idle_curve(ctx, r, t, &ks, producer, &load, a.idle_poll_ms.max(1))
            })?;
        }
        return Ok(());
    }
    if a.consumers.is_empty() || a.consumers.contains(&0) {
        return Err("--consumers takes numbers of consumers of at least 1".into());
    }
    ctx.steps((transports.len() * a.consumers.len()) as u64);
    for &k in &a.consumers {
        for &t in transports {
            ctx.step(report, &step_name(t, &format!("fan-out K={k}")), |r| {
                fanout_k(ctx, r, t, k, producer, &load)
            })?;
        }
    }
    Ok(())
}

/// The transports a run measures: shmbus, then the peer asked for (refused by [`check_peer`] in
/// a build without peers).
fn transports(peer: Option<PeerKind>) -> &'static [&'static str] {
    match peer {
        Some(PeerKind::Iceoryx2) => &["shmbus", "iceoryx2"],
        None => &["shmbus"],
    }
}

/// A step's name on the progress bar and in the load section: shmbus's steps are named for what
/// they measure, a peer's steps for the peer too.
fn step_name(transport: &str, what: &str) -> String {
    if transport == "shmbus" {
        what.to_owned()
    } else {
        format!("{transport} {what}")
    }
}

/// A list is the curve itself; one number K is the curve 0, K/16, K/4, K.
fn idle_curve_points(asked: &[usize]) -> Result<Vec<usize>, String> {
    if let Some(k) = asked.iter().find(|&&k| k > 256) {
        return Err(format!("--idle-subscribers {k} is more than 256"));
    }
    let mut ks = match asked {
        [k] => vec![0, k / 16, k / 4, *k],
        list => list.to_vec(),
    };
    ks.sort_unstable();
    ks.dedup();
    Ok(ks)
}

fn cmd_throughput(ctx: &Ctx, report: &mut Report, a: &ThroughputArgs) -> Result<(), String> {
    let producer = *ctx.cores.first().ok_or("no usable core")?;
    if a.consumers == 0 {
        return Err("--consumers must be at least 1".into());
    }
    if a.consumers + 1 > ctx.cores.len() {
        report.warn(format!(
            "throughput with {} consumers needs {} cores, {} usable: consumers share cores and \
             fall behind more (more losses)",
            a.consumers,
            a.consumers + 1,
            ctx.cores.len()
        ));
    }
    if let Some(p) = a.payloads.iter().find(|&&p| p < 8) {
        return Err(format!(
            "payload {p} B is too small: messages carry an 8-byte timestamp"
        ));
    }
    let messages = a.messages.unwrap_or(ctx.size(2_000_000, 20_000)).max(1);
    if let (Some(n), SegmentKindArg::Records) = (a.solo, a.kind) {
        for &payload in &a.payloads {
            records::solo(payload, n, a.solo_publish)?;
        }
        return Ok(());
    }
    if a.kind == SegmentKindArg::Records {
        let consumer = engine::publish::consumer_cores(ctx, producer, 1)[0];
        ctx.steps((2 + records::FLOORS.len() as u64) * a.payloads.len() as u64);
        for &payload in &a.payloads {
            ctx.step(report, &format!("memcpy {payload} B"), |r| {
                records::memcpy_floor(ctx, r, payload, producer, messages)
            })?;
            for f in records::FLOORS {
                ctx.step(report, &format!("{} {payload} B", f.0), |r| {
                    records::floor_row(ctx, r, f, payload, producer, consumer, messages)
                })?;
            }
            ctx.step(report, &format!("records throughput {payload} B"), |r| {
                records::throughput(ctx, r, payload, a.consumers, producer, messages)
            })?;
        }
        return Ok(());
    }
    ctx.steps((a.payloads.len() * a.slots.len()) as u64);
    for &slots in &a.slots {
        for &payload in &a.payloads {
            ctx.step(
                report,
                &format!("throughput {payload} B, {slots} slots"),
                |r| throughput::run_one(ctx, r, payload, slots, a.consumers, producer, messages),
            )?;
        }
    }
    Ok(())
}

fn cmd_mp(ctx: &Ctx, report: &mut Report, a: &MpArgs) -> Result<(), String> {
    if a.payload < 16 {
        return Err(format!(
            "payload {} B is too small: messages carry a timestamp and a phase (16 bytes)",
            a.payload
        ));
    }
    if let Some(p) = a.producers.iter().find(|&&p| p == 0 || p > 32) {
        return Err(format!("--producers {p}: a bus takes 1 to 32 producers"));
    }
    let load = Load {
        payload: a.payload,
        slots: a.slots,
        paced: ctx.size(20_000, 500),
        gap_ns: 5_000,
        flat: a.messages.unwrap_or(ctx.size(1_000_000, 10_000)).max(1),
    };
    ctx.steps(a.producers.len() as u64);
    for &p in &a.producers {
        ctx.step(report, &format!("mp P={p}"), |r| {
            let before = r.curves.len();
            mp::run_p(ctx, r, p, &load)?;
            name_curves(r, before, "oneway (receive - send stamp)");
            Ok(())
        })?;
    }
    Ok(())
}
