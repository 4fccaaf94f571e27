//! One-way latency across processes: this process publishes on a `ping` bus from core A; a child
//! pinned to core B answers each message on a `pong` bus. Two passes: ping-pong (the answer
//! echoes the message; one clock read per round trip, as in c2c; one-way = round trip / 2), then
//! stamped (the answer carries the echo's receive stamp: one-way hops A to B and B to A, each
//! receive stamp minus send stamp).

use shmbus::{Bus, BusBuilder, Publisher, Recv, Start, Subscriber};

use crate::clock::ClockKind;
use crate::report::{Curve, LatencyRow, Report};
use crate::stats::{histogram, Pct, TickSummary};
use crate::sys::{self, spin_until, BusGuard, Peer};
use crate::Ctx;

/// A stamp of 0 tells the echo to stop (real stamps are never 0).
const STOP: u64 = 0;

pub fn stamp_of(bytes: &[u8]) -> u64 {
    bytes
        .get(..8)
        .map_or(STOP, |b| u64::from_ne_bytes(b.try_into().expect("8 bytes")))
}

/// One side of a ping-pong over some transport: sends a word (in a message of the run's payload
/// size) and polls for the word of the next message that arrives.
pub trait Link {
    fn send(&mut self, word: u64) -> Result<(), String>;
    fn poll(&mut self) -> Result<Option<u64>, String>;
}

/// Waits for the answer on `link`.
fn answer(link: &mut impl Link, alive: &mut impl FnMut() -> bool) -> Result<u64, String> {
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

/// Round trips with one clock read each (as in c2c): the ping-pong figure.
pub fn ping_loop(
    clock: ClockKind,
    link: &mut impl Link,
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
    link: &mut impl Link,
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
pub fn echo_loop(clock: ClockKind, link: &mut impl Link, stamp: bool) -> Result<(), String> {
    loop {
        match link.poll()? {
            Some(STOP) => return Ok(()),
            Some(word) => link.send(if stamp { clock.now() } else { word })?,
            None => std::hint::spin_loop(),
        }
    }
}

/// A shmbus ping-pong end: publishes on one bus, subscribes to the other.
struct BusLink {
    tx: Publisher,
    rx: Subscriber,
    buf: Vec<u8>,
}

impl Link for BusLink {
    #[inline]
    fn send(&mut self, word: u64) -> Result<(), String> {
        self.buf[..8].copy_from_slice(&word.to_ne_bytes());
        self.tx
            .publish_bytes(&self.buf)
            .map(|_| ())
            .map_err(|e| format!("publish failed: {e}"))
    }

    #[inline]
    fn poll(&mut self) -> Result<Option<u64>, String> {
        match self.rx.try_recv() {
            Recv::Message(m) => Ok(Some(stamp_of(m.bytes()))),
            Recv::Empty | Recv::Closed => Ok(None),
            Recv::Lapped { lost } => Err(format!(
                "lapped ({lost} lost), which one message in flight cannot do"
            )),
        }
    }
}

/// What one payload size measured, in ticks.
pub struct Measured {
    pub rtt: TickSummary,
    pub hops: Hops,
}

/// Sets up a ping bus (ours) and a pong bus (the echo's) and starts the echo on core `b`.
fn setup(
    ctx: &Ctx,
    payload: usize,
    b: usize,
    stamp: bool,
) -> Result<(BusLink, Peer, [BusGuard; 2]), String> {
    let names = [BusGuard::new("ping"), BusGuard::new("pong")];
    let make = |name: &str| {
        BusBuilder::new(name)
            .slots(1024)
            .capacity(payload)
            .create()
            .map_err(|e| format!("cannot create bus {name}: {e}"))
    };
    let ping = make(names[0].name())?;
    let pong = make(names[1].name())?;
    let tx = ping
        .publisher()
        .map_err(|e| format!("cannot publish on {}: {e}", ping.name()))?;
    let rx = pong.subscribe(Start::Oldest);
    let mut args: Vec<String> = vec![
        "echo".into(),
        "--ping".into(),
        names[0].name().into(),
        "--pong".into(),
        names[1].name().into(),
        "--core".into(),
        b.to_string(),
        "--clock".into(),
        ctx.clock.arg().into(),
    ];
    if stamp {
        args.push("--stamp".into());
    }
    let mut echo = Peer::spawn("the echo process", &args)?;
    echo.ready()?;
    let link = BusLink {
        tx,
        rx,
        buf: vec![0u8; payload],
    };
    Ok((link, echo, names))
}

/// Ping-pong, then stamped hops, between this process on core `a` and an echo on core `b`.
pub fn measure(
    ctx: &Ctx,
    payload: usize,
    a: usize,
    b: usize,
    iters: u64,
) -> Result<Measured, String> {
    let payload = payload.max(8);
    let warmup = (iters / 10).max(100);
    let rtt = {
        let (mut link, mut echo, _names) = setup(ctx, payload, b, false)?;
        sys::pin(a)?;
        let r = ping_loop(ctx.clock, &mut link, warmup, iters, || !echo.exited())?;
        echo.finish()?;
        r
    };
    let hops = {
        let (mut link, mut echo, _names) = setup(ctx, payload, b, true)?;
        sys::pin(a)?;
        let r = stamp_loop(ctx.clock, &mut link, warmup, iters, || !echo.exited())?;
        echo.finish()?;
        r
    };
    Ok(Measured { rtt, hops })
}

/// The child's side: answer every ping, same length, until STOP.
pub fn child_echo(
    ping: &str,
    pong: &str,
    core: usize,
    clock: ClockKind,
    stamp: bool,
) -> Result<(), String> {
    let ping = Bus::open_read_only(ping).map_err(|e| format!("cannot open {ping}: {e}"))?;
    let rx = ping.subscribe(Start::Oldest);
    let pong = Bus::open(pong).map_err(|e| format!("cannot open {pong}: {e}"))?;
    let tx = pong
        .publisher()
        .map_err(|e| format!("cannot publish on {}: {e}", pong.name()))?;
    let mut link = BusLink {
        tx,
        rx,
        buf: vec![0u8; pong.capacity()],
    };
    sys::pin(core)?;
    crate::child::say("ready");
    echo_loop(clock, &mut link, stamp)
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
            ns,
            c2c_one_way_ns: c2c,
            ratio_to_c2c: ns.ratio(c2c),
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
