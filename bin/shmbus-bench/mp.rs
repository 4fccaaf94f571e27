//! Multi-producer: P producer processes share one multi-producer bus; this process is the one
//! consumer. A small control bus starts each phase in all producers at once: first paced stamped
//! messages (latency under contention), then all publishing flat out (aggregate rate).

use serde::{Deserialize, Serialize};
use shmbus::{Bus, BusBuilder, Recv, Start};

use crate::clock::ClockKind;
use crate::ctx::Ctx;
use crate::engine::publish::{consumer_cores, Load};
use crate::proto::{phase_of, say, say_result, stamp_of, PHASE_LATENCY, PHASE_RATE};
use crate::report::{Curve, Latency, MpRow, ProducerCount, Report};
use crate::stats::{histogram, TickSummary};
use crate::sys::{self, spin_until, BusGuard, Peer};

#[derive(clap::Args, Debug)]
pub struct ProduceArgs {
    #[arg(long)]
    bus: String,
    #[arg(long)]
    ctl: String,
    #[arg(long)]
    core: usize,
    #[arg(long, value_enum)]
    clock: ClockKind,
    #[arg(long)]
    paced: u64,
    #[arg(long)]
    gap_ticks: u64,
    #[arg(long)]
    flat: u64,
}

/// What a producer reports at the end.
#[derive(Debug, Serialize, Deserialize)]
struct Produced {
    published: u64,
    dropped: u64,
    /// Ticks its flat-out phase took.
    ticks: u64,
}

/// Waits for control message `phase` (any later one counts too).
fn wait_phase(rx: &mut shmbus::Subscriber, phase: u64) -> Result<(), String> {
    spin_until(
        &format!("the start of phase {phase}"),
        || match rx.try_recv() {
            Recv::Message(m) => stamp_of(m.bytes()) >= phase,
            _ => false,
        },
        || true,
    )
}

pub fn child_produce(a: &ProduceArgs) -> Result<(), String> {
    let data = Bus::open(&a.bus).map_err(|e| format!("cannot open {}: {e}", a.bus))?;
    let mut tx = data
        .publisher()
        .map_err(|e| format!("cannot publish on {}: {e}", a.bus))?;
    let ctl = Bus::open_read_only(&a.ctl).map_err(|e| format!("cannot open {}: {e}", a.ctl))?;
    let mut ctl_rx = ctl.subscribe(Start::Oldest);
    let mut buf = vec![0u8; data.capacity()];
    sys::pin(a.core)?;
    say("ready");

    wait_phase(&mut ctl_rx, 1)?;
    buf[8..16].copy_from_slice(&PHASE_LATENCY.to_ne_bytes());
    for _ in 0..a.paced {
        let t = a.clock.now();
        buf[..8].copy_from_slice(&t.to_ne_bytes());
        tx.publish_bytes(&buf)
            .map_err(|e| format!("publish failed: {e}"))?;
        while a.clock.now().wrapping_sub(t) < a.gap_ticks {
            std::hint::spin_loop();
        }
    }

    wait_phase(&mut ctl_rx, 2)?;
    buf[8..16].copy_from_slice(&PHASE_RATE.to_ne_bytes());
    let start = a.clock.now();
    buf[..8].copy_from_slice(&start.to_ne_bytes());
    for _ in 0..a.flat {
        tx.publish_bytes(&buf)
            .map_err(|e| format!("publish failed: {e}"))?;
    }
    let ticks = a.clock.now().wrapping_sub(start);
    let s = tx.stats();
    let out = Produced {
        published: s.published,
        dropped: s.dropped,
        ticks,
    };
    drop(tx);
    say_result(&out)
}

/// One run with `p` producers.
pub fn run_p(ctx: &Ctx, report: &mut Report, p: usize, load: &Load) -> Result<(), String> {
    let consumer = ctx.cores[0];
    let cores = consumer_cores(ctx, consumer, p);
    if p + 1 > ctx.cores.len() {
        report.warn(format!(
            "mp P={p} needs {} cores, {} usable: producers share cores and take turns, so the \
             aggregate rate is that of fewer producers and latency tails include time slices",
            p + 1,
            ctx.cores.len()
        ));
    }
    crate::c2c::ensure_pair(
        report,
        consumer,
        cores[0],
        &ctx.c2c_sizes(),
        ctx.clock,
        ctx.scale,
    )?;
    let data_name = BusGuard::new("mp");
    let ctl_name = BusGuard::new("mpctl");
    let data = BusBuilder::new(data_name.name())
        .slots(load.slots)
        .capacity(load.payload.max(16))
        .multi_producer()
        .create()
        .map_err(|e| format!("cannot create bus {}: {e}", data_name.name()))?;
    let ctl = BusBuilder::new(ctl_name.name())
        .slots(16)
        .capacity(8)
        .create()
        .map_err(|e| format!("cannot create bus {}: {e}", ctl_name.name()))?;
    let mut ctl_tx = ctl
        .publisher()
        .map_err(|e| format!("cannot publish on {}: {e}", ctl_name.name()))?;
    let mut rx = data.subscribe(Start::Oldest);
    let gap_ticks = (load.gap_ns as f64 / ctx.scale) as u64;
    let mut peers = Vec::new();
    for (i, &core) in cores.iter().enumerate() {
        peers.push(Peer::spawn(
            &format!("producer {i}"),
            &[
                "produce".into(),
                "--bus".into(),
                data_name.name().into(),
                "--ctl".into(),
                ctl_name.name().into(),
                "--core".into(),
                core.to_string(),
                "--clock".into(),
                ctx.clock.arg().into(),
                "--paced".into(),
                load.paced.to_string(),
                "--gap-ticks".into(),
                gap_ticks.to_string(),
                "--flat".into(),
                load.flat.to_string(),
            ],
        )?);
    }
    for peer in &mut peers {
        peer.ready()?;
    }
    sys::pin(consumer)?;
    let clock = ctx.clock;
    let mut h = histogram();
    let (mut received, mut lost) = (0u64, 0u64);
    let publish_phase = |tx: &mut shmbus::Publisher, phase: u64| {
        tx.publish_bytes(&phase.to_ne_bytes())
            .map(|_| ())
            .map_err(|e| format!("publish failed: {e}"))
    };

    publish_phase(&mut ctl_tx, 1)?;
    let paced_total = load.paced * p as u64;
    let mut paced_seen = 0;
    spin_until(
        "the paced messages",
        || {
            match rx.try_recv() {
                Recv::Message(m) => {
                    let now = clock.now();
                    received += 1;
                    if phase_of(m.bytes()) == PHASE_LATENCY {
                        paced_seen += 1;
                        h.saturating_record(now.saturating_sub(stamp_of(m.bytes())));
                    }
                }
                Recv::Lapped { lost: l } => lost += l,
                Recv::Empty | Recv::Closed => {}
            }
            paced_seen + lost >= paced_total
        },
        || peers.iter_mut().all(|p| !p.exited()),
    )?;

    publish_phase(&mut ctl_tx, 2)?;
    let mut empty: u32 = 0;
    spin_until(
        "the producers to finish",
        || match rx.try_recv() {
            Recv::Message(_) => {
                received += 1;
                false
            }
            Recv::Lapped { lost: l } => {
                lost += l;
                false
            }
            Recv::Empty | Recv::Closed => {
                empty = empty.wrapping_add(1);
                empty.is_multiple_of(1024)
                    && !data.has_producers()
                    && rx.next_seq() == data.cursor()
            }
        },
        || true,
    )?;
    let mut per_producer = Vec::new();
    let mut longest: u64 = 0;
    let mut total = 0;
    for (i, (peer, &core)) in peers.iter_mut().zip(&cores).enumerate() {
        let r: Produced = peer.result()?;
        longest = longest.max(r.ticks);
        total += load.flat;
        per_producer.push(ProducerCount {
            index: i,
            core,
            published: r.published,
            dropped: r.dropped,
            msgs_per_s: load.flat as f64 / (r.ticks as f64 * ctx.scale / 1e9).max(1e-12),
        });
    }
    let latency = TickSummary::of(&h);
    let ns = latency.to_ns(ctx.scale);
    let c2c = report.c2c_for(consumer, cores[0]);
    report.curves.push(Curve {
        label: format!("mp P={p}"),
        points: latency.curve_ns(ctx.scale),
    });
    report.mp.push(MpRow {
        producers: p,
        payload: load.payload.max(16),
        slots: load.slots,
        msgs_per_s: total as f64 / (longest as f64 * ctx.scale / 1e9).max(1e-12),
        per_producer,
        consumer_core: consumer,
        latency: Latency::beside(ns, c2c),
        received,
        lost,
    });
    Ok(())
}
