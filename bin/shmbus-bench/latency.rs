//! One-way latency across processes: this process publishes on a `ping` bus from core A; a child
//! pinned to core B answers each message on a `pong` bus. Two passes: ping-pong (the answer
//! echoes the message; one clock read per round trip, as in c2c; one-way = round trip / 2), then
//! stamped (the answer carries the echo's receive stamp: one-way hops A to B and B to A, each
//! receive stamp minus send stamp). The passes are the engine's (`engine::pingpong`); this file
//! sets up the buses (or, for `--kind records`, asks `records` for its segments), plays the bus's
//! echo child, and adds the waited ping-pong and its futex floor.
//!
//! With `--wait sleep|async` both ends wait without spinning (a blocking `recv` on the bus's futex,
//! or `recv_async` in a tokio task), and the ping-pong is reported beside its floor: a raw
//! cross-process futex ping-pong between the same cores in the same run (a process blocked in
//! `FUTEX_WAIT` on a shared word, the other stores and `FUTEX_WAKE`s; one-way = round trip / 2).

use std::path::Path;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use shmbus::{Bus, BusBuilder, Publisher, Recv, Start, Subscriber, Wait};

use crate::c2c::SharedPage;
use crate::clock::ClockKind;
use crate::ctx::Ctx;
use crate::engine::pingpong::{
    self, echo_loop, echo_role, ping_loop, start_echo, EchoArgs, Link, Measured, Poll,
};
use crate::proto::{say, stamp_of};
use crate::report::{Curve, Latency, LatencyRow, PeerRatio, Report};
use crate::stats::{histogram, TickSummary};
use crate::sys::{self, BusGuard, Peer};

/// How both ends of a ping-pong wait for the next message.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum WaitMode {
    /// Spin on `try_recv`.
    #[default]
    Spin,
    /// Block in `recv` with `Wait::Sleep` (on the bus's futex).
    Sleep,
    /// Await `recv_async` on a current-thread tokio runtime (needs the `tokio` feature).
    Async,
}

impl WaitMode {
    pub fn name(self) -> &'static str {
        match self {
            WaitMode::Spin => "spin",
            WaitMode::Sleep => "sleep",
            WaitMode::Async => "async",
        }
    }

    /// Refuses `async` in a build without tokio.
    pub fn check(self) -> Result<(), String> {
        if self == WaitMode::Async && !cfg!(feature = "tokio") {
            return Err(
                "--wait async needs a build with the tokio feature: cargo run --release \
                 --bin shmbus-bench --features tokio"
                    .into(),
            );
        }
        Ok(())
    }
}

/// The receiving half of a shmbus ping-pong end: a subscriber, waiting as `mode` says.
struct BusRx {
    rx: Subscriber,
    mode: WaitMode,
    #[cfg(feature = "tokio")]
    rt: Option<tokio::runtime::Runtime>,
}

/// A shmbus ping-pong end: publishes on one bus, subscribes to the other.
type BusLink = Link<Publisher, BusRx>;

impl BusRx {
    fn link(
        tx: Publisher,
        rx: Subscriber,
        payload: usize,
        mode: WaitMode,
    ) -> Result<BusLink, String> {
        mode.check()?;
        let rx = BusRx {
            rx: rx.wait_strategy(Wait::Sleep),
            mode,
            #[cfg(feature = "tokio")]
            rt: match mode {
                WaitMode::Async => Some(
                    tokio::runtime::Builder::new_current_thread()
                        .enable_io()
                        .build()
                        .map_err(|e| format!("cannot start a tokio runtime: {e}"))?,
                ),
                _ => None,
            },
        };
        Ok(Link::new(tx, rx, payload))
    }

    /// Blocks (sleep, async) for the next word; the peer leaving the bus is an error.
    fn wait_word(&mut self) -> Result<u64, String> {
        #[cfg(feature = "tokio")]
        if let Some(rt) = &self.rt {
            return match rt.block_on(self.rx.recv_async()) {
                Ok(Some(shmbus::Event::Message { value, .. })) => Ok(stamp_of(&value)),
                Ok(Some(shmbus::Event::Lapped { lost })) => Err(lapped(lost)),
                Ok(None) => Err("the peer left the bus".into()),
                Err(e) => Err(format!("recv_async failed: {e}")),
            };
        }
        match self.rx.recv() {
            Recv::Message(m) => Ok(stamp_of(m.bytes())),
            Recv::Lapped { lost } => Err(lapped(lost)),
            Recv::Empty | Recv::Closed => Err("the peer left the bus".into()),
        }
    }
}

fn lapped(lost: u64) -> String {
    format!("lapped ({lost} lost), which one message in flight cannot do")
}

impl Poll for BusRx {
    #[inline]
    fn poll(&mut self) -> Result<Option<u64>, String> {
        if self.mode != WaitMode::Spin {
            return self.wait_word().map(Some);
        }
        match self.rx.try_recv() {
            Recv::Message(m) => Ok(Some(stamp_of(m.bytes()))),
            Recv::Empty | Recv::Closed => Ok(None),
            Recv::Lapped { lost } => Err(lapped(lost)),
        }
    }
}

/// Sets up a ping bus (ours) and a pong bus (the echo's) and starts the echo on core `b`.
fn setup(
    ctx: &Ctx,
    payload: usize,
    b: usize,
    stamp: bool,
    mode: WaitMode,
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
    let mut role = echo_role("echo", &names);
    role.extend(["--wait".into(), mode.name().into()]);
    let link = BusRx::link(tx, rx, payload, mode)?;
    let echo = start_echo(ctx, "the echo process", role, b, stamp)?;
    Ok((link, echo, names))
}

/// Ping-pong, then stamped hops, between this process on core `a` and an echo on core `b`, over
/// `transport`: `shmbus` (buses) or `records` (records segments).
pub fn measure(
    ctx: &Ctx,
    transport: &str,
    payload: usize,
    [a, b]: [usize; 2],
    iters: u64,
) -> Result<Measured, String> {
    let payload = payload.max(8);
    match transport {
        "records" => pingpong::measure(ctx.clock, a, iters, |stamp| {
            crate::records::setup(ctx, payload, b, stamp)
        }),
        _ => pingpong::measure(ctx.clock, a, iters, |stamp| {
            setup(ctx, payload, b, stamp, WaitMode::Spin)
        }),
    }
}

/// The child's side: answer every ping, same length, until STOP.
pub fn child_echo(a: &EchoArgs, mode: WaitMode) -> Result<(), String> {
    let (ping, pong) = (&a.ping, &a.pong);
    // Sleeping needs a read-write handle (it raises the waiter flag); spinning does not.
    let ping = if mode == WaitMode::Spin {
        Bus::open_read_only(ping)
    } else {
        Bus::open(ping)
    }
    .map_err(|e| format!("cannot open {ping}: {e}"))?;
    let rx = ping.subscribe(Start::Oldest);
    let pong = Bus::open(pong).map_err(|e| format!("cannot open {pong}: {e}"))?;
    let tx = pong
        .publisher()
        .map_err(|e| format!("cannot publish on {}: {e}", pong.name()))?;
    let mut link = BusRx::link(tx, rx, pong.capacity(), mode)?;
    sys::pin(a.core)?;
    say("ready");
    echo_loop(a.clock, &mut link, a.stamp)
}

/// Ping-pong with both ends waiting as `mode` says, and its floor: the raw futex ping-pong of
/// the same cores (both in ticks per round trip).
pub struct Waited {
    pub rtt: TickSummary,
    pub futex: TickSummary,
}

pub fn measure_waited(
    ctx: &Ctx,
    payload: usize,
    [a, b]: [usize; 2],
    iters: u64,
    mode: WaitMode,
) -> Result<Waited, String> {
    let payload = payload.max(8);
    let warmup = pingpong::warmup(iters);
    let futex = futex_rtt(ctx.clock, [a, b], warmup, iters)?;
    let (mut link, mut echo, _names) = setup(ctx, payload, b, false, mode)?;
    sys::pin(a)?;
    let rtt = ping_loop(ctx.clock, &mut link, warmup, iters, || !echo.exited())?;
    echo.finish()?;
    Ok(Waited { rtt, futex })
}

/// The rows of a `--wait sleep|async` run: the futex floor and the ping-pong, each one-way
/// (round trip / 2), and the ratio of their p50s.
pub fn rows_waited(
    ctx: &Ctx,
    report: &mut Report,
    payload: usize,
    [a, b]: [usize; 2],
    mode: WaitMode,
    m: &Waited,
) {
    let c2c = report.c2c_for(a, b);
    let futex = m.futex.to_ns(ctx.scale / 2.0);
    let ns = m.rtt.to_ns(ctx.scale / 2.0);
    for (transport, method, pct) in [("futex", "pingpong", futex), ("shmbus", mode.name(), ns)] {
        report.latency.push(LatencyRow {
            transport,
            method,
            payload,
            cores: [a, b],
            latency: Latency::beside(pct, c2c),
        });
    }
    report.curves.push(Curve {
        label: format!("shmbus {payload}B --wait {}", mode.name()),
        points: m.rtt.curve_ns(ctx.scale / 2.0),
    });
    report.peer_comparison.push(PeerRatio {
        workload: format!("ping-pong {payload}B --wait {}", mode.name()),
        metric: "p50 one-way ns",
        shmbus: ns.p50,
        peer: futex.p50,
        peer_name: "raw futex",
        ratio: if futex.p50 > 0.0 {
            ns.p50 / futex.p50
        } else {
            f64::NAN
        },
    });
}

/// Word of the shared page the futex ping-pong runs on, and the one the echo sets when ready.
const FUTEX_WORD: usize = 0;
const FUTEX_READY: usize = 16;
/// Tells the futex echo to stop (the ping-pong values are 1, 2, 3, ... well below it).
const FUTEX_STOP: u32 = u32::MAX;
/// A sleeper's longest sleep: it then checks that its peer is alive.
const FUTEX_SLICE: Duration = Duration::from_millis(100);

/// The low half of a shared word, as the futex word.
fn futex_word(page: &SharedPage) -> &AtomicU32 {
    let w = page.word(FUTEX_WORD);
    // SAFETY: the word is 8-aligned inside the mapping, which outlives the borrow; during the
    // ping-pong both processes access it only as this 32-bit atomic (and the kernel's futex
    // code), the low half on this little-endian target.
    unsafe { AtomicU32::from_ptr(w.as_ptr().cast::<u32>()) }
}

fn futex_wait(word: &AtomicU32, expected: u32) {
    let ts = libc::timespec {
        tv_sec: FUTEX_SLICE.as_secs() as libc::time_t,
        tv_nsec: FUTEX_SLICE.subsec_nanos() as libc::c_long,
    };
    // SAFETY: FUTEX_WAIT reads the aligned 4-byte word, alive for the call, and `ts`, on this
    // stack; any error means "look again".
    unsafe {
        libc::syscall(
            libc::SYS_futex,
            word.as_ptr(),
            libc::FUTEX_WAIT,
            expected,
            &ts as *const libc::timespec,
            0usize,
            0u32,
        );
    }
}

fn futex_wake(word: &AtomicU32) {
    // SAFETY: FUTEX_WAKE uses the address only as a key.
    unsafe {
        libc::syscall(
            libc::SYS_futex,
            word.as_ptr(),
            libc::FUTEX_WAKE,
            i32::MAX,
            0usize,
            0usize,
            0u32,
        );
    }
}

/// Sleeps until `word` holds `want`; `false` if `alive()` turned false meanwhile.
fn futex_await(word: &AtomicU32, want: u32, alive: &mut impl FnMut() -> bool) -> bool {
    loop {
        // ORDERING: Acquire pairs with the peer's Release store of `want`.
        let cur = word.load(Ordering::Acquire);
        if cur == want || cur == FUTEX_STOP {
            return true;
        }
        futex_wait(word, cur);
        if word.load(Ordering::Relaxed) == cur && !alive() {
            return false;
        }
    }
}

/// The floor of a sleeping wait: round trips of a raw futex ping-pong between this process on
/// core `a` and an echo process on core `b`, both asleep in `FUTEX_WAIT` while they wait.
fn futex_rtt(
    clock: ClockKind,
    [a, b]: [usize; 2],
    warmup: u64,
    iters: u64,
) -> Result<TickSummary, String> {
    let page = SharedPage::create()?;
    let mut echo = page.start_echo("the futex echo process", "futex-echo", [a, b], FUTEX_READY)?;
    let word = futex_word(&page);
    let mut alive = || !echo.exited();
    let mut h = histogram();
    let mut t = clock.now();
    let rounds = (warmup + iters).min(u64::from(FUTEX_STOP / 2 - 1));
    for i in 0..rounds {
        let v = 2 * i as u32 + 1;
        // ORDERING: Release pairs with the echo's Acquire load.
        word.store(v, Ordering::Release);
        futex_wake(word);
        if !futex_await(word, v + 1, &mut alive) {
            return Err("the futex echo process exited".into());
        }
        let t2 = clock.now();
        if i >= warmup {
            h.saturating_record(t2.wrapping_sub(t));
        }
        t = t2;
    }
    word.store(FUTEX_STOP, Ordering::Release);
    futex_wake(word);
    echo.finish()?;
    Ok(TickSummary::of(&h))
}

/// The child's side of [`futex_rtt`]: answers each odd value with the next even one.
pub fn child_futex_echo(shm: &Path, core: usize) -> Result<(), String> {
    let page = SharedPage::open(shm)?;
    sys::pin(core)?;
    let word = futex_word(&page);
    page.word(FUTEX_READY).store(1, Ordering::Release);
    let mut expect = 1u32;
    let mut alive = || true;
    loop {
        futex_await(word, expect, &mut alive);
        if word.load(Ordering::Acquire) == FUTEX_STOP {
            return Ok(());
        }
        word.store(expect + 1, Ordering::Release);
        futex_wake(word);
        expect += 2;
    }
}
