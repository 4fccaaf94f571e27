//! `shmbus-bench board`: what a board costs, each figure beside its floor from the same run.
//!
//! * `set` and `get` of one cell, beside a minimal seqlock writing and reading the same number of
//!   words on a private cache line (the least any seqlock does);
//! * cross-process update → observe: this process sets cell 0, an echo process pinned to the
//!   other core polls `changed_since` and answers in cell 1; one-way = round trip / 2, beside the
//!   process core-to-core latency of the same two cores, measured in the same run.

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::sync::atomic::{fence, AtomicU64, Ordering};
use std::time::Instant;

use serde::Serialize;
use shmbus::{Board, BoardBuilder};

use crate::clock::ClockKind;
use crate::stats::{histogram, Pct, TickSummary};
use crate::sys::{self, spin_until};

#[derive(clap::Args, Debug)]
pub struct BoardArgs {
    /// This process's core and the echo's core, comma-separated (default: the first two usable).
    #[arg(long, value_delimiter = ',', num_args = 1)]
    cores: Vec<usize>,
    /// Value size in bytes.
    #[arg(long, default_value_t = 64)]
    size: usize,
    /// Operations per cost figure, and round trips for the latency.
    #[arg(long)]
    iters: Option<u64>,
    /// Run as the echo of board NAME (internal).
    #[arg(long, hide = true)]
    echo: Option<String>,
    /// The echo's core (internal).
    #[arg(long, hide = true)]
    core: Option<usize>,
}

/// A cache line of the floor's seqlock: a version and up to 7 words of value on one line, more
/// on the next ones.
#[repr(align(64))]
struct FloorCell {
    words: [AtomicU64; 64],
}

#[derive(Serialize)]
struct Cost {
    op: &'static str,
    ns: f64,
    floor_ns: f64,
    ratio: f64,
}

#[derive(Serialize)]
struct Output {
    value_size: usize,
    costs: Vec<Cost>,
    update_to_observe_ns: Pct,
    c2c_process_ns: Pct,
    /// `update_to_observe_ns` divided by the c2c p50.
    ratio_to_c2c: Pct,
}

/// Nanoseconds per call of `op`, timed over `iters` calls (after a tenth as many to warm up).
fn per_op(iters: u64, mut op: impl FnMut(u64)) -> f64 {
    for i in 0..iters / 10 {
        op(i);
    }
    let t = Instant::now();
    for i in 0..iters {
        op(i);
    }
    t.elapsed().as_nanos() as f64 / iters as f64
}

/// The floor of a set: odd version, Release fence, the value words, even version (Release).
fn floor_set(cell: &FloorCell, words: usize, v: u64) {
    let version = &cell.words[0];
    let s = version.load(Ordering::Relaxed);
    version.store(s + 1, Ordering::Relaxed);
    fence(Ordering::Release);
    for w in &cell.words[1..=words] {
        w.store(v, Ordering::Relaxed);
    }
    version.store(s + 2, Ordering::Release);
}

/// The floor of a get: version (Acquire), the value words, Acquire fence, version again.
fn floor_get(cell: &FloorCell, buf: &mut [u64]) -> bool {
    let v1 = cell.words[0].load(Ordering::Acquire);
    for (d, w) in buf.iter_mut().zip(&cell.words[1..]) {
        *d = w.load(Ordering::Relaxed);
    }
    fence(Ordering::Acquire);
    v1 & 1 == 0 && cell.words[0].load(Ordering::Relaxed) == v1
}

pub fn run(a: &BoardArgs, json: bool, quick: bool) -> Result<(), String> {
    if let Some(name) = &a.echo {
        return echo(name, a.core.unwrap_or(0));
    }
    let cores = sys::available_cores();
    let [ca, cb] = match a.cores[..] {
        [x, y] if x != y => [x, y],
        [] if cores.len() >= 2 => [cores[0], cores[1]],
        _ => return Err("board needs two different cores: --cores A,B".into()),
    };
    sys::check_cores(&[ca, cb])?;
    let words = a.size.div_ceil(8);
    if a.size == 0 || words > 63 {
        return Err(format!("--size {} is out of range (1 to 504)", a.size));
    }
    let iters = a.iters.unwrap_or(if quick { 20_000 } else { 2_000_000 });
    let guard = sys::BusGuard::new("board");
    let board = BoardBuilder::new(guard.name())
        .cells(2)
        .value_size(a.size)
        .create()
        .map_err(|e| e.to_string())?;
    let mut w = board.writer().map_err(|e| e.to_string())?;
    let mut r = board.reader();
    sys::pin(ca)?;

    let value = vec![0x5au8; a.size];
    let floor = FloorCell {
        words: std::array::from_fn(|_| AtomicU64::new(0)),
    };
    let set = per_op(iters, |_| {
        std::hint::black_box(w.set_bytes(0, &value).expect("a valid cell and size"));
    });
    let set_floor = per_op(iters, |i| floor_set(&floor, words, i));
    let get = per_op(iters, |_| {
        let v = r.read(0).expect("a valid cell").expect("set above");
        std::hint::black_box(v.bytes());
    });
    let mut buf = vec![0u64; words];
    let get_floor = per_op(iters, |_| {
        std::hint::black_box(floor_get(&floor, &mut buf));
    });
    let costs = vec![
        Cost {
            op: "set",
            ns: set,
            floor_ns: set_floor,
            ratio: set / set_floor,
        },
        Cost {
            op: "get",
            ns: get,
            floor_ns: get_floor,
            ratio: get / get_floor,
        },
    ];

    let clock = ClockKind::detect();
    let scale = clock.ns_per_tick();
    let trips = if quick { 2_000 } else { 200_000 };
    let latency = round_trips(&board, &mut w, cb, trips, clock)?;
    let c2c = crate::c2c::process_rtt(ca, cb, trips / 10, trips, clock)?;
    // Round trips in ticks to one-way nanoseconds.
    let update = latency.to_ns(scale / 2.0);
    let c2c = c2c.to_ns(scale / 2.0);
    let out = Output {
        value_size: a.size,
        costs,
        ratio_to_c2c: update.map(|v| v / c2c.p50.max(f64::MIN_POSITIVE)),
        update_to_observe_ns: update,
        c2c_process_ns: c2c,
    };
    print(&out, json)
}

fn print(out: &Output, json: bool) -> Result<(), String> {
    let mut s = String::new();
    if json {
        s = serde_json::to_string_pretty(out).map_err(|e| e.to_string())? + "\n";
    } else {
        use std::fmt::Write as _;
        let _ = writeln!(s, "board, {}-byte values", out.value_size);
        let _ = writeln!(s, "{:<6}{:>10}{:>12}{:>8}", "op", "ns", "floor ns", "ratio");
        for c in &out.costs {
            let _ = writeln!(
                s,
                "{:<6}{:>10.1}{:>12.1}{:>8.2}",
                c.op, c.ns, c.floor_ns, c.ratio
            );
        }
        let _ = writeln!(
            s,
            "update -> observe, one-way ns: p50 {:.0}  p99 {:.0}  max {:.0}",
            out.update_to_observe_ns.p50,
            out.update_to_observe_ns.p99,
            out.update_to_observe_ns.max
        );
        let _ = writeln!(
            s,
            "c2c process, one-way ns:       p50 {:.0}  p99 {:.0}  max {:.0}",
            out.c2c_process_ns.p50, out.c2c_process_ns.p99, out.c2c_process_ns.max
        );
        let _ = writeln!(
            s,
            "ratio to c2c p50:              p50 {:.2}  p99 {:.2}",
            out.ratio_to_c2c.p50, out.ratio_to_c2c.p99
        );
    }
    let mut o = std::io::stdout().lock();
    match o.write_all(s.as_bytes()).and_then(|()| o.flush()) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => Err(e.to_string()),
        _ => Ok(()),
    }
}

/// `trips` round trips: set cell 0 to `k`, wait for the echo's cell 1 to reach version `k`.
fn round_trips(
    board: &Board,
    w: &mut shmbus::BoardWriter,
    core: usize,
    trips: u64,
    clock: ClockKind,
) -> Result<TickSummary, String> {
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let mut child = Command::new(exe)
        .args(["board", "--echo", board.name(), "--core", &core.to_string()])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot start the board echo: {e}"))?;
    let mut lines = BufReader::new(child.stdout.take().expect("piped")).lines();
    let ready = lines.next().and_then(|l| l.ok());
    if ready.as_deref() != Some("ready") {
        let _ = child.kill();
        let _ = child.wait();
        return Err(format!("the board echo did not start: {ready:?}"));
    }
    let r = board.reader();
    let warmup = trips / 10;
    let mut h = histogram();
    let mut result = Ok(());
    let base1 = r.version(1).map_err(|e| e.to_string())?;
    for k in 1..=warmup + trips {
        let t = clock.now();
        if let Err(e) = w.set_bytes(0, &k.to_le_bytes()) {
            result = Err(e.to_string());
            break;
        }
        let answered = spin_until(
            "the board echo",
            || r.version(1).unwrap_or(0) >= base1 + k,
            || matches!(child.try_wait(), Ok(None)),
        );
        if let Err(e) = answered {
            result = Err(e);
            break;
        }
        if k > warmup {
            h.saturating_record(clock.now().wrapping_sub(t));
        }
    }
    // The echo spins until killed; it has nothing to clean up.
    let _ = child.kill();
    let _ = child.wait();
    result.map(|()| TickSummary::of(&h))
}

/// The echo: every new version of cell 0 is answered by a set of cell 1.
fn echo(name: &str, core: usize) -> Result<(), String> {
    sys::die_with_parent();
    let board = Board::open(name).map_err(|e| e.to_string())?;
    let mut w = board.writer().map_err(|e| e.to_string())?;
    let r = board.reader();
    sys::pin(core)?;
    let mut seen = r.version(0).map_err(|e| e.to_string())?;
    println!("ready");
    std::io::stdout().flush().map_err(|e| e.to_string())?;
    loop {
        while !r.changed_since(0, seen).unwrap_or(false) {
            std::hint::spin_loop();
        }
        seen = r.version(0).map_err(|e| e.to_string())?;
        w.set_bytes(1, &seen.to_le_bytes())
            .map_err(|e| e.to_string())?;
    }
}
