//! The producer's side of fan-out, throughput and the idle-subscriber curve: consumer processes
//! started on the other cores, paced stamped messages, a barrier, publishing flat out (timed in
//! batches), the stop message; and the rows these make.

use shmbus::Publisher;

use crate::ctx::Ctx;
use crate::proto::{Consumed, PHASE_BARRIER, PHASE_LATENCY, PHASE_RATE};
use crate::report::{
    ConsumerCount, ConsumerLatency, Curve, FanoutRow, IdleRow, Latency, Report, ThroughputRow,
};
use crate::stats::{histogram, TickSummary};
use crate::sys::{self, Peer};

/// Publishes per timed batch when measuring the cost of one publish.
pub const BATCH: u64 = 64;

/// Workload sizes of a run with one or more producers.
pub struct Load {
    pub payload: usize,
    pub slots: u64,
    /// Paced messages (latency phase; none in a throughput run).
    pub paced: u64,
    /// Gap between paced messages, ns.
    pub gap_ns: u64,
    /// Messages published flat out (rate phase).
    pub flat: u64,
}

/// The cores of `k` consumers: every usable core but the producer's, round robin (all on the
/// producer's core only if it is the only one).
pub fn consumer_cores(ctx: &Ctx, producer: usize, k: usize) -> Vec<usize> {
    let others: Vec<usize> = ctx
        .cores
        .iter()
        .copied()
        .filter(|&c| c != producer)
        .collect();
    let pool = if others.is_empty() {
        vec![producer]
    } else {
        others
    };
    (0..k).map(|i| pool[i % pool.len()]).collect()
}

/// The producer's end of some transport.
pub trait Sink {
    fn publish(&mut self, buf: &[u8]) -> Result<(), String>;
}

/// The bus's producer.
impl Sink for Publisher {
    #[inline]
    fn publish(&mut self, buf: &[u8]) -> Result<(), String> {
        self.publish_bytes(buf)
            .map(|_| ())
            .map_err(|e| format!("publish failed: {e}"))
    }
}

/// What publishing flat out measured.
pub struct Flat {
    /// Ticks per batch of [`BATCH`] publishes.
    pub batches: TickSummary,
    /// Messages sent (`n` rounded up to whole batches).
    pub sent: u64,
    /// Seconds from the first publish to the last.
    pub secs: f64,
}

impl Flat {
    pub fn rate(&self) -> f64 {
        self.sent as f64 / self.secs.max(1e-12)
    }
}

/// Publishes `n` messages as fast as possible, timed in batches.
pub fn publish_flat(ctx: &Ctx, tx: &mut impl Sink, buf: &mut [u8], n: u64) -> Result<Flat, String> {
    let clock = ctx.clock;
    let mut h = histogram();
    if let Some(w) = buf.get_mut(8..16) {
        w.copy_from_slice(&PHASE_RATE.to_ne_bytes());
    }
    let start = clock.now();
    let mut sent = 0;
    while sent < n {
        let t = clock.now();
        // Stamp once per batch: the stamp is not what this phase measures.
        buf[..8].copy_from_slice(&t.max(1).to_ne_bytes());
        for _ in 0..BATCH {
            tx.publish(buf)?;
        }
        h.saturating_record(clock.now().wrapping_sub(t));
        sent += BATCH;
    }
    let ticks = clock.now().wrapping_sub(start);
    Ok(Flat {
        batches: TickSummary::of(&h),
        sent,
        secs: ticks as f64 * ctx.scale / 1e9,
    })
}

/// Publishes `n` stamped messages, one every `gap_ns`.
fn publish_paced(
    ctx: &Ctx,
    tx: &mut impl Sink,
    buf: &mut [u8],
    n: u64,
    gap_ns: u64,
) -> Result<(), String> {
    let clock = ctx.clock;
    let gap = (gap_ns as f64 / ctx.scale) as u64;
    buf[8..16].copy_from_slice(&PHASE_LATENCY.to_ne_bytes());
    for _ in 0..n {
        let t = clock.now();
        buf[..8].copy_from_slice(&t.to_ne_bytes());
        tx.publish(buf)?;
        while clock.now().wrapping_sub(t) < gap {
            std::hint::spin_loop();
        }
    }
    Ok(())
}

/// Waits until every consumer has read everything published so far, so that the next phase
/// cannot lap a slow consumer past messages it is still to measure.
fn barrier(
    ctx: &Ctx,
    tx: &mut impl Sink,
    buf: &mut [u8],
    peers: &mut [Peer],
) -> Result<(), String> {
    buf[..8].copy_from_slice(&ctx.clock.now().max(1).to_ne_bytes());
    buf[8..16].copy_from_slice(&PHASE_BARRIER.to_ne_bytes());
    tx.publish(buf)?;
    for p in peers {
        match p.line()? {
            l if l == "drained" => {}
            l => return Err(format!("expected `drained` from a consumer, got `{l}`")),
        }
    }
    Ok(())
}

/// Starts a consumer role (`role` and its transport's arguments) on each of `cores`.
pub fn start_role(ctx: &Ctx, role: &[String], cores: &[usize]) -> Result<Vec<Peer>, String> {
    let mut peers = Vec::new();
    for (i, &core) in cores.iter().enumerate() {
        let mut args = role.to_vec();
        args.extend([
            "--core".into(),
            core.to_string(),
            "--clock".into(),
            ctx.clock.arg().into(),
        ]);
        peers.push(Peer::spawn(&format!("consumer {i}"), &args)?);
    }
    for p in &mut peers {
        p.ready()?;
    }
    Ok(peers)
}

/// Publishes the stop message, detaches, and collects each consumer's result.
pub fn stop_consumers(
    mut tx: impl Sink,
    buf: &mut [u8],
    peers: &mut [Peer],
) -> Result<Vec<Consumed>, String> {
    let n = buf.len().min(16);
    buf[..n].fill(0);
    let _ = tx.publish(buf);
    drop(tx);
    peers.iter_mut().map(|p| p.result()).collect()
}

/// How a run reaches its consumers.
pub struct Transport<'a> {
    pub name: &'static str,
    /// The consumer role and its arguments (cores and clock are added).
    pub role: &'a [String],
    /// Whether consumers count their losses; if not, lost = published - received.
    pub reports_losses: bool,
}

/// The fan-out phases over any transport: start K consumers, paced messages, a barrier, flat out,
/// stop; then the row.
pub fn drive(
    ctx: &Ctx,
    report: &mut Report,
    t: &Transport,
    k: usize,
    producer: usize,
    load: &Load,
    mut tx: impl Sink,
) -> Result<(), String> {
    let cores = consumer_cores(ctx, producer, k);
    let oversubscribed = k + 1 > ctx.cores.len();
    if oversubscribed {
        report.warn(format!(
            "fan-out K={k} needs {} cores, {} usable: consumers share cores, so they take turns \
             (their latency tails grow to scheduler time slices) and fewer of them read at once \
             (the producer's rate then looks like fewer consumers')",
            k + 1,
            ctx.cores.len()
        ));
    }
    for &c in &cores {
        crate::c2c::ensure_pair(report, producer, c, &ctx.c2c_sizes(), ctx.clock, ctx.scale)?;
    }
    let mut peers = start_role(ctx, t.role, &cores)?;
    sys::pin(producer)?;
    let mut buf = vec![0u8; load.payload];
    publish_paced(ctx, &mut tx, &mut buf, load.paced, load.gap_ns)?;
    barrier(ctx, &mut tx, &mut buf, &mut peers)?;
    let flat = publish_flat(ctx, &mut tx, &mut buf, load.flat)?;
    let results = stop_consumers(tx, &mut buf, &mut peers)?;
    let published = load.paced + flat.sent;
    let mut per_consumer = Vec::new();
    for (i, (r, &core)) in results.iter().zip(&cores).enumerate() {
        let ns = r.latency.to_ns(ctx.scale);
        let c2c = report.c2c_for(producer, core);
        report.curves.push(Curve {
            label: format!("{} fanout K={k} consumer {i}", t.name),
            points: r.latency.curve_ns(ctx.scale),
        });
        per_consumer.push(ConsumerLatency {
            index: i,
            core,
            latency: Latency::beside(ns, c2c),
            received: r.received,
            lost: if t.reports_losses {
                r.lost
            } else {
                published.saturating_sub(r.received)
            },
        });
    }
    report.fanout.push(FanoutRow {
        transport: t.name,
        consumers: k,
        producer_core: producer,
        payload: load.payload,
        publish_msgs_per_s: flat.rate(),
        publish_ns: flat.batches.to_ns(ctx.scale / BATCH as f64),
        oversubscribed,
        per_consumer,
    });
    Ok(())
}

/// One throughput run over any transport: `consumers` consumer processes, this process on core
/// `producer` publishing `load.flat` messages flat out on `tx`. Its row names the ring's size
/// `load.slots`, in the transport's unit.
pub fn throughput(
    ctx: &Ctx,
    t: &Transport,
    consumers: usize,
    producer: usize,
    load: &Load,
    mut tx: impl Sink,
) -> Result<ThroughputRow, String> {
    let cores = consumer_cores(ctx, producer, consumers);
    let mut peers = start_role(ctx, t.role, &cores)?;
    sys::pin(producer)?;
    let mut buf = vec![0u8; load.payload];
    let flat = publish_flat(ctx, &mut tx, &mut buf, load.flat)?;
    let results = stop_consumers(tx, &mut buf, &mut peers)?;
    let (rate, secs) = (flat.rate(), flat.secs.max(1e-12));
    Ok(ThroughputRow {
        transport: t.name,
        payload: load.payload,
        slots: load.slots,
        messages: flat.sent,
        seconds: secs,
        msgs_per_s: rate,
        gb_per_s: rate * load.payload as f64 / 1e9,
        per_consumer: results
            .iter()
            .zip(&cores)
            .map(|(r, &core)| ConsumerCount {
                core,
                received: r.received,
                lost: r.lost,
                msgs_per_s: r.received as f64 / secs,
            })
            .collect(),
    })
}

/// The publish cost of `transport` with idle subscriber processes attached: for each K of `ks`
/// (taken ascending), starts subscribers up to K with `spawn(index, core)` (processes are added
/// as K grows), then publishes `load.flat` messages flat out on `tx`; one row per K. The
/// subscribers stay in `peers`, for the caller to stop.
#[allow(clippy::too_many_arguments)]
pub fn idle_curve(
    ctx: &Ctx,
    report: &mut Report,
    transport: &'static str,
    ks: &[usize],
    producer: usize,
    load: &Load,
    tx: &mut impl Sink,
    peers: &mut Vec<Peer>,
    mut spawn: impl FnMut(usize, usize) -> Result<Peer, String>,
) -> Result<(), String> {
    let mut ks = ks.to_vec();
    ks.sort_unstable();
    ks.dedup();
    let cores = consumer_cores(ctx, producer, ks.last().copied().unwrap_or(0));
    let mut buf = vec![0u8; load.payload];
    let mut base = None;
    for &k in &ks {
        while peers.len() < k {
            let i = peers.len();
            peers.push(spawn(i, cores[i])?);
        }
        for p in peers.iter_mut() {
            // Already-ready peers said so before; only new ones have a line waiting.
            if !p.is_ready() {
                p.ready()?;
            }
        }
        sys::pin(producer)?;
        let flat = publish_flat(ctx, tx, &mut buf, load.flat)?;
        let ns = flat.batches.to_ns(ctx.scale / BATCH as f64);
        let base_p50 = *base.get_or_insert(ns.p50);
        report.idle_subscribers.push(IdleRow {
            transport,
            idle_subscribers: k,
            publish_ns: ns,
            p50_vs_none: ns.p50 / base_p50,
        });
    }
    if ks.first() != Some(&0) {
        report.warn("the idle-subscriber curve did not start at 0, so p50_vs_none compares with its first point".into());
    }
    Ok(())
}
