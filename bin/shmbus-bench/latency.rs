//! One-way latency across processes: this process publishes a stamped message on a `ping` bus
//! from core A; a child pinned to core B answers each on a `pong` bus with its own stamp. Each
//! round trip gives the ping-pong one-way figure (round trip / 2) and two stamped one-way hops
//! (receive stamp minus send stamp, A to B and B to A).

use shmbus::{Bus, BusBuilder, Recv, Start};

use crate::clock::ClockKind;
use crate::report::{Curve, LatencyRow};
use crate::stats::{histogram, TickSummary};
use crate::sys::{self, spin_until, BusGuard, Peer};
use crate::Ctx;

/// A stamp of 0 tells the echo to stop (real stamps are never 0).
const STOP: u64 = 0;

pub fn stamp_of(bytes: &[u8]) -> u64 {
    bytes
        .get(..8)
        .map_or(STOP, |b| u64::from_ne_bytes(b.try_into().expect("8 bytes")))
}

/// What one payload size measured, in ticks: round trips and single hops.
pub struct Measured {
    pub rtt: TickSummary,
    pub hop: TickSummary,
}

/// Runs the ping-pong between this process on core `a` and an echo process on core `b`.
pub fn measure(
    ctx: &Ctx,
    payload: usize,
    a: usize,
    b: usize,
    iters: u64,
) -> Result<Measured, String> {
    let payload = payload.max(8);
    let ping_name = BusGuard::new("ping");
    let pong_name = BusGuard::new("pong");
    let make = |name: &str| {
        BusBuilder::new(name)
            .slots(1024)
            .capacity(payload)
            .create()
            .map_err(|e| format!("cannot create bus {name}: {e}"))
    };
    let ping = make(ping_name.name())?;
    let pong = make(pong_name.name())?;
    let mut tx = ping
        .publisher()
        .map_err(|e| format!("cannot publish on {}: {e}", ping_name.name()))?;
    let mut rx = pong.subscribe(Start::Oldest);
    let mut echo = Peer::spawn(
        "the echo process",
        &[
            "echo".into(),
            "--ping".into(),
            ping_name.name().into(),
            "--pong".into(),
            pong_name.name().into(),
            "--core".into(),
            b.to_string(),
            "--clock".into(),
            ctx.clock.arg().into(),
        ],
    )?;
    echo.ready()?;
    sys::pin(a)?;

    let clock = ctx.clock;
    let mut buf = vec![0u8; payload];
    let (mut rtt, mut hop) = (histogram(), histogram());
    let warmup = (iters / 10).max(100);
    let mut skew = 0u64;
    for i in 0..warmup + iters {
        let t0 = clock.now();
        buf[..8].copy_from_slice(&t0.to_ne_bytes());
        tx.publish_bytes(&buf)
            .map_err(|e| format!("publish failed: {e}"))?;
        let mut t1 = 0;
        let mut lapped = false;
        spin_until(
            "the echo's answer",
            || match rx.try_recv() {
                Recv::Message(m) => {
                    t1 = stamp_of(m.bytes());
                    true
                }
                Recv::Lapped { .. } => {
                    lapped = true;
                    true
                }
                _ => false,
            },
            || !echo.exited(),
        )?;
        let t2 = clock.now();
        if lapped {
            return Err("the answer bus was lapped, which one message in flight cannot do".into());
        }
        if i < warmup {
            continue;
        }
        rtt.saturating_record(t2.wrapping_sub(t0));
        if t1 < t0 || t2 < t1 {
            skew += 1;
            continue;
        }
        hop.saturating_record(t1 - t0);
        hop.saturating_record(t2 - t1);
    }
    buf[..8].copy_from_slice(&STOP.to_ne_bytes());
    let _ = tx.publish_bytes(&buf);
    drop(echo);
    if skew > 0 {
        eprintln!("warning: {skew} stamps went backwards between cores {a} and {b}; their one-way hops were left out");
    }
    Ok(Measured {
        rtt: TickSummary::of(&rtt),
        hop: TickSummary::of(&hop),
    })
}

/// The child's side: answer every ping with a stamp of our own, same length, until STOP.
pub fn child_echo(ping: &str, pong: &str, core: usize, clock: ClockKind) -> Result<(), String> {
    let ping = Bus::open_read_only(ping).map_err(|e| format!("cannot open {ping}: {e}"))?;
    let mut rx = ping.subscribe(Start::Oldest);
    let pong = Bus::open(pong).map_err(|e| format!("cannot open {pong}: {e}"))?;
    let mut tx = pong
        .publisher()
        .map_err(|e| format!("cannot publish on {}: {e}", pong.name()))?;
    let mut buf = vec![0u8; pong.capacity()];
    sys::pin(core)?;
    crate::child::say("ready");
    loop {
        let len = match rx.try_recv() {
            Recv::Message(m) if stamp_of(m.bytes()) == STOP => return Ok(()),
            Recv::Message(m) => m.bytes().len().min(buf.len()),
            Recv::Lapped { lost } => return Err(format!("the echo was lapped ({lost} lost)")),
            Recv::Empty | Recv::Closed => {
                std::hint::spin_loop();
                continue;
            }
        };
        let t1 = clock.now();
        buf[..8].copy_from_slice(&t1.to_ne_bytes());
        tx.publish_bytes(&buf[..len])
            .map_err(|e| format!("publish failed: {e}"))?;
    }
}

/// The rows and curves of one payload size.
pub fn rows(
    ctx: &Ctx,
    transport: &'static str,
    payload: usize,
    cores: [usize; 2],
    m: &Measured,
    c2c: Option<f64>,
) -> (Vec<LatencyRow>, Vec<Curve>) {
    let mut rows = Vec::new();
    let mut curves = Vec::new();
    for (method, s, scale) in [
        ("pingpong", &m.rtt, ctx.scale / 2.0),
        ("oneway", &m.hop, ctx.scale),
    ] {
        let ns = s.to_ns(scale);
        rows.push(LatencyRow {
            transport,
            method,
            payload,
            cores,
            ns,
            c2c_one_way_ns: c2c,
            ratio_to_c2c: ns.ratio(c2c),
        });
        if method == "oneway" {
            curves.push(Curve {
                label: format!("{transport} {payload}B"),
                points: s.curve_ns(scale),
            });
        }
    }
    (rows, curves)
}
