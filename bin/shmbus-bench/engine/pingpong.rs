//! Ping-pong between this process and an echo process: round trips with one clock read each (as
//! in c2c), stamped one-way hops, and the echo's side.

use crate::clock::ClockKind;
use crate::ctx::Ctx;
use crate::engine::publish::Sink;
use crate::proto::STOP;
use crate::report::{Curve, Latency, LatencyRow, Report};
use crate::stats::{histogram, Pct, TickSummary};
use crate::sys::{self, spin_until, BusGuard, Peer};

/// The receiving half of a ping-pong end over some transport: the word of the next message, if
/// one has arrived (or when it arrives, for a transport that waits).
pub trait Poll {
    fn poll(&mut self) -> Result<Option<u64>, String>;
}

/// One side of a ping-pong over some transport: sends a word in a message of `buf`'s length
/// (the run's payload size) on `tx`, and polls `rx` for the word of the next message.
pub struct Link<Tx, Rx> {
    pub tx: Tx,
    pub rx: Rx,
    pub buf: Vec<u8>,
}

impl<Tx: Sink, Rx: Poll> Link<Tx, Rx> {
    /// A link sending messages of `payload` bytes.
    pub fn new(tx: Tx, rx: Rx, payload: usize) -> Self {
        Link {
            tx,
            rx,
            buf: vec![0u8; payload],
        }
    }

    #[inline]
    fn send(&mut self, word: u64) -> Result<(), String> {
        self.buf[..8].copy_from_slice(&word.to_ne_bytes());
        self.tx.publish(&self.buf)
    }

    #[inline]
    fn poll(&mut self) -> Result<Option<u64>, String> {
        self.rx.poll()
    }
}

/// The arguments of an echo child over a pair of named segments: it reads `ping` and answers
/// on `pong`.
#[derive(clap::Args, Debug)]
pub struct EchoArgs {
    #[arg(long)]
    pub ping: String,
    #[arg(long)]
    pub pong: String,
    #[arg(long)]
    pub core: usize,
    #[arg(long, value_enum)]
    pub clock: ClockKind,
    /// Answer with our receive stamp instead of the message's own word.
    #[arg(long)]
    pub stamp: bool,
}

/// Waits for the answer on `link`.
fn answer(
    link: &mut Link<impl Sink, impl Poll>,
    alive: &mut impl FnMut() -> bool,
) -> Result<u64, String> {
    let mut got = None;
    spin_until(
        "the echo's answer",
        || match link.poll() {
            Ok(None) => false,
            other => {
                got = Some(other);
                true
            }
        },
        alive,
    )?;
    got.expect("spin_until returned Ok, so the answer arrived")?
        .ok_or_else(|| "no answer".into())
}

/// Round trips not recorded before a run of `iters`: a tenth, at least 100.
pub fn warmup(iters: u64) -> u64 {
    (iters / 10).max(100)
}

/// Round trips with one clock read each (as in c2c): the ping-pong figure.
pub fn ping_loop(
    clock: ClockKind,
    link: &mut Link<impl Sink, impl Poll>,
    warmup: u64,
    iters: u64,
    mut alive: impl FnMut() -> bool,
) -> Result<TickSummary, String> {
    let mut h = histogram();
    let mut t = clock.now();
    for i in 0..warmup + iters {
        let word = i + 1;
        link.send(word)?;
        let got = answer(link, &mut alive)?;
        if got != word {
            return Err(format!("the echo answered {got} to {word}"));
        }
        let t2 = clock.now();
        if i >= warmup {
            h.saturating_record(t2.wrapping_sub(t));
        }
        t = t2;
    }
    link.send(STOP)?;
    Ok(TickSummary::of(&h))
}

/// Stamped hops: A to B is the echo's receive stamp minus our send stamp, B to A our receive
/// stamp minus the echo's. Hops whose stamps run backwards (TSCs not in step) are counted, not
/// recorded.
pub struct Hops {
    pub ab: TickSummary,
    pub ba: TickSummary,
    pub backwards: u64,
}

pub fn stamp_loop(
    clock: ClockKind,
    link: &mut Link<impl Sink, impl Poll>,
    warmup: u64,
    iters: u64,
    mut alive: impl FnMut() -> bool,
) -> Result<Hops, String> {
    let (mut ab, mut ba) = (histogram(), histogram());
    let mut backwards = 0;
    for i in 0..warmup + iters {
        let t0 = clock.now();
        link.send(t0)?;
        let t1 = answer(link, &mut alive)?;
        let t2 = clock.now();
        if i < warmup {
            continue;
        }
        if t1 < t0 || t2 < t1 {
            backwards += 1;
            continue;
        }
        ab.saturating_record(t1 - t0);
        ba.saturating_record(t2 - t1);
    }
    link.send(STOP)?;
    Ok(Hops {
        ab: TickSummary::of(&ab),
        ba: TickSummary::of(&ba),
        backwards,
    })
}

/// The echo: answers each word with itself, or with its own receive stamp, until [`STOP`].
pub fn echo_loop(
    clock: ClockKind,
    link: &mut Link<impl Sink, impl Poll>,
    stamp: bool,
) -> Result<(), String> {
    loop {
        match link.poll()? {
            Some(STOP) => return Ok(()),
            Some(word) => link.send(if stamp { clock.now() } else { word })?,
            None => std::hint::spin_loop(),
        }
    }
}

/// The role of an echo child over the segments `names` (ping, then pong).
pub fn echo_role(role: &str, names: &[BusGuard; 2]) -> Vec<String> {
    vec![
        role.into(),
        "--ping".into(),
        names[0].name().into(),
        "--pong".into(),
        names[1].name().into(),
    ]
}

/// Starts an echo child: `role` and its transport's arguments, then its core and clock, and
/// `--stamp` when it answers with its receive stamp; returns once it said `ready`.
pub fn start_echo(
    ctx: &Ctx,
    what: &str,
    role: Vec<String>,
    core: usize,
    stamp: bool,
) -> Result<Peer, String> {
    let mut args = role;
    args.extend([
        "--core".into(),
        core.to_string(),
        "--clock".into(),
        ctx.clock.arg().into(),
    ]);
    if stamp {
        args.push("--stamp".into());
    }
    let mut echo = Peer::spawn(what, &args)?;
    echo.ready()?;
    Ok(echo)
}

/// What one payload size measured, in ticks.
pub struct Measured {
    pub rtt: TickSummary,
    pub hops: Hops,
}

/// Ping-pong, then stamped hops, between this process on core `a` and a fresh echo for each
/// pass. `start(stamp)` sets up a link and its echo (answering with its receive stamp if
/// `stamp`), and whatever must outlive the pass (the segments' names).
pub fn measure<Tx: Sink, Rx: Poll, Keep>(
    clock: ClockKind,
    a: usize,
    iters: u64,
    mut start: impl FnMut(bool) -> Result<(Link<Tx, Rx>, Peer, Keep), String>,
) -> Result<Measured, String> {
    let warmup = warmup(iters);
    let rtt = {
        let (mut link, mut echo, _keep) = start(false)?;
        sys::pin(a)?;
        let r = ping_loop(clock, &mut link, warmup, iters, || !echo.exited())?;
        echo.finish()?;
        r
    };
    let hops = {
        let (mut link, mut echo, _keep) = start(true)?;
        sys::pin(a)?;
        let r = stamp_loop(clock, &mut link, warmup, iters, || !echo.exited())?;
        echo.finish()?;
        r
    };
    Ok(Measured { rtt, hops })
}

/// The rows and curves of one payload size: ping-pong (round trip / 2) for cores a-b, and the
/// stamped hop of each direction.
pub fn rows(
    ctx: &Ctx,
    report: &mut Report,
    transport: &'static str,
    payload: usize,
    [a, b]: [usize; 2],
    m: &Measured,
) {
    let c2c = report.c2c_for(a, b);
    let mut row = |method, cores, ns: Pct| {
        report.latency.push(LatencyRow {
            transport,
            method,
            payload,
            cores,
            latency: Latency::beside(ns, c2c),
        })
    };
    row("pingpong", [a, b], m.rtt.to_ns(ctx.scale / 2.0));
    row("oneway", [a, b], m.hops.ab.to_ns(ctx.scale));
    row("oneway", [b, a], m.hops.ba.to_ns(ctx.scale));
    report.curves.push(Curve {
        label: format!("{transport} {payload}B"),
        points: m.rtt.curve_ns(ctx.scale / 2.0),
    });
    if m.hops.backwards > 0 {
        report.warn(format!(
            "{transport} {payload}B: {} stamped round trips between cores {a} and {b} had a \
             stamp earlier than the one before it (clocks of the two cores not in step); their \
             hops were left out",
            m.hops.backwards
        ));
    }
}
