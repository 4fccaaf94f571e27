//! Fan-out over a bus: one producer (this process), K consumer processes. Two phases per K:
//! paced stamped messages for per-consumer latency, then publishing flat out for the producer's
//! rate and per-publish cost (timed in batches). And the idle-subscriber curve: the publish cost
//! with K attached processes that sleep and poll rarely. The phases are the engine's; this file
//! sets up the bus and plays the bus's consumer and idle-subscriber children.

use std::time::Duration;

use shmbus::{Bus, BusBuilder, Publisher, Recv, Start};

use crate::ctx::Ctx;
use crate::engine::consume::{serve, ConsumerArgs, Next, Source};
use crate::engine::publish::{self, drive, Load, Transport};
use crate::proto::say;
use crate::report::Report;
use crate::sys::{self, BusGuard, Peer};

/// Creates bus `guard` for a run of `load` and attaches its producer.
pub fn create(guard: &BusGuard, load: &Load) -> Result<(Bus, Publisher), String> {
    let bus = BusBuilder::new(guard.name())
        .slots(load.slots)
        .capacity(load.payload)
        .create()
        .map_err(|e| format!("cannot create bus {}: {e}", guard.name()))?;
    let tx = bus
        .publisher()
        .map_err(|e| format!("cannot publish on {}: {e}", guard.name()))?;
    Ok((bus, tx))
}

/// One fan-out run with `k` consumers over `transport`: `shmbus`, or `iceoryx2` in a build with
/// peers.
pub fn run_k(
    ctx: &Ctx,
    report: &mut Report,
    transport: &str,
    k: usize,
    producer: usize,
    load: &Load,
) -> Result<(), String> {
    match transport {
        #[cfg(feature = "peers")]
        crate::peer::NAME => return crate::peer::fanout(ctx, report, k, producer, load),
        _ => {}
    }
    let guard = BusGuard::new("fanout");
    let (_bus, tx) = create(&guard, load)?;
    let role = ["consume".into(), "--bus".into(), guard.name().into()];
    let run = Transport {
        name: "shmbus",
        role: &role,
        reports_losses: true,
    };
    drive(ctx, report, &run, k, producer, load, tx)
}

/// The publish cost over `transport` (as [`run_k`]) with `ks` idle subscriber processes
/// attached (ascending; processes are added as K grows), each sleeping `poll_ms` between polls.
pub fn idle_curve(
    ctx: &Ctx,
    report: &mut Report,
    transport: &str,
    ks: &[usize],
    producer: usize,
    load: &Load,
    poll_ms: u64,
) -> Result<(), String> {
    match transport {
        #[cfg(feature = "peers")]
        crate::peer::NAME => {
            return crate::peer::idle_curve(ctx, report, ks, producer, load, poll_ms)
        }
        _ => {}
    }
    let guard = BusGuard::new("idle");
    let (_bus, mut tx) = create(&guard, load)?;
    let mut peers: Vec<Peer> = Vec::new();
    publish::idle_curve(
        ctx,
        report,
        "shmbus",
        ks,
        producer,
        load,
        &mut tx,
        &mut peers,
        |i, core| {
            Peer::spawn(
                &format!("idle subscriber {i}"),
                &[
                    "idle".into(),
                    "--bus".into(),
                    guard.name().into(),
                    "--core".into(),
                    core.to_string(),
                    "--poll-ms".into(),
                    poll_ms.to_string(),
                ],
            )
        },
    )?;
    drop(tx);
    Ok(())
}

/// A bus consumer's end.
struct BusSource {
    bus: Bus,
    rx: shmbus::Subscriber,
}

impl Source for BusSource {
    #[inline]
    fn next(&mut self) -> Next {
        match self.rx.try_recv() {
            Recv::Message(m) => Next::message(m.bytes()),
            Recv::Lapped { lost } => Next::Lost(lost),
            Recv::Empty | Recv::Closed => Next::Empty,
        }
    }

    fn finished(&self) -> bool {
        !self.bus.has_producers() && self.rx.next_seq() == self.bus.cursor()
    }
}

/// The consumer child: reads everything, recording latencies of phase-1 messages, until the
/// stop message.
pub fn child_consume(a: &ConsumerArgs) -> Result<(), String> {
    let bus = Bus::open_read_only(&a.bus).map_err(|e| format!("cannot open {}: {e}", a.bus))?;
    let rx = bus.subscribe(Start::Next);
    serve(&mut BusSource { bus, rx }, a.core, a.clock)
}

/// The idle subscriber child: stays attached, polling every `poll_ms`, until the producer leaves.
pub fn child_idle(name: &str, core: usize, poll_ms: u64) -> Result<(), String> {
    let bus = Bus::open_read_only(name).map_err(|e| format!("cannot open {name}: {e}"))?;
    let mut rx = bus.subscribe(Start::Next);
    sys::pin(core)?;
    say("ready");
    let slots = bus.slots();
    loop {
        std::thread::sleep(Duration::from_millis(poll_ms));
        for _ in 0..=slots {
            if matches!(rx.try_recv(), Recv::Empty) {
                break;
            }
        }
        if !bus.has_producers() {
            return Ok(());
        }
    }
}
