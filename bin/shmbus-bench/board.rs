//! `shmbus-bench board`: what a board costs, each figure beside its floor from the same run.
//!
//! * `set` and `get` of one cell, beside a minimal seqlock writing and reading the same number of
//!   words on a private cache line (the least any seqlock does); `set` on a board of many
//!   writers (a CAS per update) and on a single-writer board (a seqlock's stores), stamped (the
//!   default: a coarse clock read per update) and unstamped;
//! * cross-process update → observe, as a ping-pong between this process and an echo process
//!   pinned to the other core: this process sets cell 0 of a single-writer board, the echo
//!   spins on `read` of it until it sees the new version, then sets cell 0 of a second board, on
//!   which this process spins the same way. One-way = round trip / 2. Beside it, the same
//!   ping-pong over two minimal seqlock cells in a shared /dev/shm page (the floor), in
//!   alternating rounds, and the process core-to-core latency of the same two cores.

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{fence, AtomicU64, Ordering};
use std::time::Instant;

use hdrhistogram::Histogram;
use serde::Serialize;
use shmbus::{Board, BoardBuilder, BoardReader, BoardWriter};

use crate::c2c::SharedPage;
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
    /// Run as the echo from board NAME to board --pong (internal).
    #[arg(long, hide = true)]
    echo: Option<String>,
    /// The board the echo answers on (internal).
    #[arg(long, hide = true)]
    pong: Option<String>,
    /// Run as the floor's echo over the shared page at PATH (internal).
    #[arg(long, hide = true)]
    floor_echo: Option<std::path::PathBuf>,
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

/// Words of a floor cell (a version and up to 63 value words). In the floor's shared page the
/// ping cell is at word 0, the pong cell right after it.
const FLOOR_WORDS: usize = 64;

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
    /// This process's core, then the echo's.
    cores: [usize; 2],
    costs: Vec<Cost>,
    /// Single-writer boards, one-way (round trip / 2).
    update_to_observe_ns: Pct,
    /// Two minimal seqlock cells in a shared page, the same ping-pong, one-way.
    update_to_observe_floor_ns: Pct,
    /// `update_to_observe_ns` over `update_to_observe_floor_ns`, quantile by quantile.
    ratio_to_floor: Pct,
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

/// The floor of a set on `cell` (a version word, then value words): odd version, Release
/// fence, the value's bytes copied into the value words (the last one zero-padded), even
/// version (Release). It copies from the caller's bytes, as a board's `set_bytes` does.
fn floor_set(cell: &[AtomicU64], value: &[u8]) {
    let version = &cell[0];
    let s = version.load(Ordering::Relaxed);
    version.store(s + 1, Ordering::Relaxed);
    // ORDERING: pairs with the reader's Acquire fence in `floor_read`: a reader that saw a
    // value word of ours sees the odd version.
    fence(Ordering::Release);
    // The default 64-byte value as eight straight-line stores: a loop's speed here moved
    // between 3 and 5.5 ns from one build to the next with nothing changed but code placement.
    if let Ok(v) = <&[u8; 64]>::try_from(value) {
        for (i, w) in cell[1..=8].iter().enumerate() {
            let word = u64::from_ne_bytes(v[8 * i..8 * i + 8].try_into().expect("8 bytes"));
            w.store(word, Ordering::Relaxed);
        }
    } else {
        let mut chunks = value.chunks_exact(8);
        for (w, chunk) in cell[1..].iter().zip(&mut chunks) {
            let word = u64::from_ne_bytes(chunk.try_into().expect("8 bytes"));
            w.store(word, Ordering::Relaxed);
        }
        let tail = chunks.remainder();
        if !tail.is_empty() {
            let mut last = [0u8; 8];
            last[..tail.len()].copy_from_slice(tail);
            cell[value.len() / 8 + 1].store(u64::from_ne_bytes(last), Ordering::Relaxed);
        }
    }
    // ORDERING: Release pairs with the Acquire load of `v1` in `floor_read`.
    version.store(s + 2, Ordering::Release);
}

/// The floor of a get: version (Acquire), the value words, Acquire fence, version again. The
/// (even) version of an untorn copy, or `None`.
#[inline]
fn floor_read(cell: &[AtomicU64], buf: &mut [u64]) -> Option<u64> {
    // ORDERING: Acquire pairs with the Release store of the even version in `floor_set`.
    let v1 = cell[0].load(Ordering::Acquire);
    for (d, w) in buf.iter_mut().zip(&cell[1..]) {
        *d = w.load(Ordering::Relaxed);
    }
    // ORDERING: pairs with the writer's Release fence after its odd version.
    fence(Ordering::Acquire);
    (v1 & 1 == 0 && cell[0].load(Ordering::Relaxed) == v1).then_some(v1)
}

/// The floor's cells on the shared page: the ping cell, then the pong cell.
fn floor_cells(page: &SharedPage) -> (&[AtomicU64], &[AtomicU64]) {
    let all: &[AtomicU64] = {
        let first: *const AtomicU64 = page.word(0);
        // SAFETY: the shared page holds 4096 bytes = 512 words from word 0 (page-aligned, so
        // every word is aligned), mapped as long as `page` lives; both processes only access
        // them atomically; 2 * FLOOR_WORDS = 128 of them are taken.
        unsafe { std::slice::from_raw_parts(first, 2 * FLOOR_WORDS) }
    };
    all.split_at(FLOOR_WORDS)
}

pub fn run(a: &BoardArgs, json: bool, quick: bool) -> Result<(), String> {
    if let Some(ping) = &a.echo {
        let pong = a.pong.as_deref().ok_or("--echo needs --pong")?;
        return echo(ping, pong, a.core.unwrap_or(0), a.size);
    }
    if let Some(path) = &a.floor_echo {
        return floor_echo(path, a.core.unwrap_or(0), a.size.div_ceil(8));
    }
    let cores = sys::available_cores();
    let [ca, cb] = match a.cores[..] {
        [x, y] if x != y => [x, y],
        [] if cores.len() >= 2 => [cores[0], cores[1]],
        _ => return Err("board needs two different cores: --cores A,B".into()),
    };
    sys::check_cores(&[ca, cb])?;
    let words = a.size.div_ceil(8);
    if a.size == 0 || words >= FLOOR_WORDS {
        return Err(format!(
            "--size {} is out of range (1 to {})",
            a.size,
            8 * (FLOOR_WORDS - 1)
        ));
    }
    let iters = a.iters.unwrap_or(if quick { 20_000 } else { 2_000_000 });
    let err = |e: shmbus::Error| e.to_string();
    let many_guard = sys::BusGuard::new("board");
    let many = BoardBuilder::new(many_guard.name())
        .cells(2)
        .value_size(a.size)
        .create()
        .map_err(err)?;
    let ping_guard = sys::BusGuard::new("board-ping");
    let ping = BoardBuilder::new(ping_guard.name())
        .cells(1)
        .value_size(a.size)
        .single_writer()
        .create()
        .map_err(err)?;
    let pong_guard = sys::BusGuard::new("board-pong");
    let pong = BoardBuilder::new(pong_guard.name())
        .cells(1)
        .value_size(a.size)
        .single_writer()
        .create()
        .map_err(err)?;
    let bare_guard = sys::BusGuard::new("board-unstamped");
    let bare = BoardBuilder::new(bare_guard.name())
        .cells(1)
        .value_size(a.size)
        .single_writer()
        .create()
        .map_err(err)?;
    let mut wb = bare.writer().map_err(err)?.unstamped();
    let mut wm = many.writer().map_err(err)?;
    let mut w1 = ping.writer().map_err(err)?;
    let mut r = ping.reader();
    sys::pin(ca)?;

    let value = vec![0x5au8; a.size];
    let floor = FloorCell {
        words: std::array::from_fn(|_| AtomicU64::new(0)),
    };
    let set_many = per_op(iters, |_| {
        std::hint::black_box(wm.set_bytes(0, &value).expect("a valid cell and size"));
    });
    let set_one = per_op(iters, |_| {
        std::hint::black_box(w1.set_bytes(0, &value).expect("a valid cell and size"));
    });
    let set_bare = per_op(iters, |_| {
        std::hint::black_box(wb.set_bytes(0, &value).expect("a valid cell and size"));
    });
    let set_floor = per_op(iters, |_| {
        floor_set(&floor.words, std::hint::black_box(&value))
    });
    let get = per_op(iters, |_| {
        let v = r.read(0).expect("a valid cell").expect("set above");
        std::hint::black_box(v.bytes());
    });
    let mut buf = vec![0u64; words];
    let get_floor = per_op(iters, |_| {
        std::hint::black_box(floor_read(&floor.words, &mut buf));
        // The copy is observed, as the board's is (its reader's buffer lives on).
        std::hint::black_box(&mut buf);
    });
    let cost = |op, ns: f64, floor_ns: f64| Cost {
        op,
        ns,
        floor_ns,
        ratio: ns / floor_ns,
    };
    let costs = vec![
        cost("set (many writers)", set_many, set_floor),
        cost("set (one writer)", set_one, set_floor),
        cost("set (one, unstamped)", set_bare, set_floor),
        cost("get", get, get_floor),
    ];

    let clock = ClockKind::detect();
    let scale = clock.ns_per_tick();
    let trips = if quick { 2_000 } else { 200_000 };
    // Alternating rounds of the board and of its floor, so that a noisy stretch of the machine
    // falls on both.
    let (mut hb, mut hf) = (histogram(), histogram());
    for _ in 0..2 {
        let b = board_round_trips(&ping, &pong, &mut w1, [ca, cb], trips / 2, a.size, clock)?;
        hb.add(&b).map_err(|e| e.to_string())?;
        let f = floor_round_trips([ca, cb], trips / 2, words, clock)?;
        hf.add(&f).map_err(|e| e.to_string())?;
    }
    let c2c = crate::c2c::process_rtt(ca, cb, trips / 10, trips, clock)?;
    // Round trips in ticks to one-way nanoseconds.
    let update = TickSummary::of(&hb).to_ns(scale / 2.0);
    let floor_update = TickSummary::of(&hf).to_ns(scale / 2.0);
    let c2c = c2c.to_ns(scale / 2.0);
    let out = Output {
        value_size: a.size,
        cores: [ca, cb],
        costs,
        ratio_to_floor: quantile_ratio(&update, &floor_update),
        ratio_to_c2c: update.map(|v| v / c2c.p50.max(f64::MIN_POSITIVE)),
        update_to_observe_ns: update,
        update_to_observe_floor_ns: floor_update,
        c2c_process_ns: c2c,
    };
    print(&out, json)
}

/// `a / b` quantile by quantile.
fn quantile_ratio(a: &Pct, b: &Pct) -> Pct {
    let r = |x: f64, y: f64| x / y.max(f64::MIN_POSITIVE);
    Pct {
        samples: a.samples,
        p50: r(a.p50, b.p50),
        p90: r(a.p90, b.p90),
        p99: r(a.p99, b.p99),
        p999: r(a.p999, b.p999),
        p9999: r(a.p9999, b.p9999),
        max: r(a.max, b.max),
    }
}

fn print(out: &Output, json: bool) -> Result<(), String> {
    let mut s = String::new();
    if json {
        s = serde_json::to_string_pretty(out).map_err(|e| e.to_string())? + "\n";
    } else {
        use std::fmt::Write as _;
        let _ = writeln!(s, "board, {}-byte values", out.value_size);
        let _ = writeln!(
            s,
            "{:<22}{:>10}{:>12}{:>8}",
            "op", "ns", "floor ns", "ratio"
        );
        for c in &out.costs {
            let _ = writeln!(
                s,
                "{:<22}{:>10.1}{:>12.1}{:>8.2}",
                c.op, c.ns, c.floor_ns, c.ratio
            );
        }
        let [ca, cb] = out.cores;
        let _ = writeln!(
            s,
            "update -> observe (ping-pong: this process on core {ca}, the echo on core {cb}), one-way ns:"
        );
        let row = |s: &mut String, what: &str, p: &Pct, digits: usize| {
            let _ = writeln!(
                s,
                "  {what:<26} p50 {:.d$}  p90 {:.d$}  p99 {:.d$}  max {:.d$}",
                p.p50,
                p.p90,
                p.p99,
                p.max,
                d = digits
            );
        };
        row(&mut s, "single-writer board", &out.update_to_observe_ns, 0);
        row(
            &mut s,
            "floor (seqlock cells)",
            &out.update_to_observe_floor_ns,
            0,
        );
        row(&mut s, "ratio to the floor", &out.ratio_to_floor, 2);
        row(&mut s, "c2c process, same cores", &out.c2c_process_ns, 0);
        row(&mut s, "ratio to c2c p50", &out.ratio_to_c2c, 2);
    }
    let mut o = std::io::stdout().lock();
    match o.write_all(s.as_bytes()).and_then(|()| o.flush()) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => Err(e.to_string()),
        _ => Ok(()),
    }
}

/// Starts this program with `args`, waits for its "ready" line.
fn start(what: &str, args: &[&str]) -> Result<Child, String> {
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let mut child = Command::new(exe)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot start {what}: {e}"))?;
    let mut lines = BufReader::new(child.stdout.take().expect("piped")).lines();
    let ready = lines.next().and_then(|l| l.ok());
    if ready.as_deref() != Some("ready") {
        let _ = child.kill();
        let _ = child.wait();
        return Err(format!("{what} did not start: {ready:?}"));
    }
    Ok(child)
}

/// Times `trips` round trips (after a tenth as many to warm up): `trip(k)` sends the `k`-th
/// ping and returns once its answer is seen, or an error.
fn time_trips(
    child: &mut Child,
    trips: u64,
    clock: ClockKind,
    mut trip: impl FnMut(u64, &mut dyn FnMut() -> bool) -> Result<(), String>,
) -> Result<Histogram<u64>, String> {
    let warmup = trips / 10;
    let mut h = histogram();
    let mut result = Ok(());
    for k in 1..=warmup + trips {
        let t = clock.now();
        if let Err(e) = trip(k, &mut || matches!(child.try_wait(), Ok(None))) {
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
    result.map(|()| h)
}

/// Board round trips: set `ping`'s cell 0 (a `size`-byte value carrying `k`), spin on `read`
/// of `pong`'s cell 0 until the echo's answer to `k` is there.
fn board_round_trips(
    ping: &Board,
    pong: &Board,
    w: &mut BoardWriter,
    [_, cb]: [usize; 2],
    trips: u64,
    size: usize,
    clock: ClockKind,
) -> Result<Histogram<u64>, String> {
    let mut child = start(
        "the board echo",
        &[
            "board",
            "--echo",
            ping.name(),
            "--pong",
            pong.name(),
            "--core",
            &cb.to_string(),
            "--size",
            &size.to_string(),
        ],
    )?;
    let mut r = pong.reader();
    let base = r.version(0).map_err(|e| e.to_string())?;
    let mut value = vec![0u8; size];
    time_trips(&mut child, trips, clock, |k, alive| {
        stamp(&mut value, k);
        w.set_bytes(0, &value).map_err(|e| e.to_string())?;
        spin_until("the board echo", || seen_version(&mut r) >= base + k, alive)
    })
}

/// The version `read` finds in cell 0 (0 while never set, busy or unreadable).
#[inline]
fn seen_version(r: &mut BoardReader) -> u64 {
    match r.read(0) {
        Ok(Some(v)) => std::hint::black_box(v).version(),
        _ => 0,
    }
}

/// `k` in a value's first bytes (as many as fit).
fn stamp(value: &mut [u8], k: u64) {
    let n = value.len().min(8);
    value[..n].copy_from_slice(&k.to_le_bytes()[..n]);
}

/// The board echo: spins on `read` of `ping`'s cell 0; every new version is answered with a
/// set of `pong`'s cell 0.
fn echo(ping: &str, pong: &str, core: usize, size: usize) -> Result<(), String> {
    sys::die_with_parent();
    let err = |e: shmbus::Error| e.to_string();
    let mut r = Board::open(ping).map_err(err)?.reader();
    let pong = Board::open(pong).map_err(err)?;
    let mut w = pong.writer().map_err(err)?;
    sys::pin(core)?;
    let mut seen = r.version(0).map_err(err)?;
    let mut value = vec![0u8; size];
    println!("ready");
    std::io::stdout().flush().map_err(|e| e.to_string())?;
    loop {
        let v = loop {
            let v = seen_version(&mut r);
            if v > seen {
                break v;
            }
            std::hint::spin_loop();
        };
        seen = v;
        stamp(&mut value, v);
        w.set_bytes(0, &value).map_err(err)?;
    }
}

/// The floor's round trips: the same ping-pong over two seqlock cells of a shared page.
fn floor_round_trips(
    [_, cb]: [usize; 2],
    trips: u64,
    words: usize,
    clock: ClockKind,
) -> Result<Histogram<u64>, String> {
    let page = SharedPage::create()?;
    let (ping, pong) = floor_cells(&page);
    let path = page.path().display().to_string();
    let mut child = start(
        "the floor echo",
        &[
            "board",
            "--floor-echo",
            &path,
            "--core",
            &cb.to_string(),
            "--size",
            &(8 * words).to_string(),
        ],
    )?;
    let mut buf = vec![0u64; words];
    let mut value = vec![0u8; 8 * words];
    time_trips(&mut child, trips, clock, |k, alive| {
        stamp(&mut value, k);
        floor_set(ping, &value);
        // The echo's k-th answer makes the pong cell's version 2k.
        spin_until(
            "the floor echo",
            || floor_read(pong, &mut buf).is_some_and(|v| v >= 2 * k),
            alive,
        )
    })
}

/// The floor's echo: spins on `floor_read` of the ping cell; every new version is answered
/// with a `floor_set` of the pong cell.
fn floor_echo(path: &Path, core: usize, words: usize) -> Result<(), String> {
    sys::die_with_parent();
    let page = SharedPage::open(path)?;
    let (ping, pong) = floor_cells(&page);
    sys::pin(core)?;
    let mut buf = vec![0u64; words];
    let mut value = vec![0u8; 8 * words];
    let mut seen = 0;
    println!("ready");
    std::io::stdout().flush().map_err(|e| e.to_string())?;
    loop {
        let v = loop {
            match floor_read(ping, &mut buf) {
                Some(v) if v > seen => break v,
                _ => std::hint::spin_loop(),
            }
        };
        seen = v;
        stamp(&mut value, buf[0]);
        floor_set(pong, &value);
    }
}
