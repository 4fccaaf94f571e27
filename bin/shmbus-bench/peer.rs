//! iceoryx2 in the same harness (feature `peers`): the latency ping-pong, fan-out and the
//! idle-subscriber curve over iceoryx2 publish-subscribe (IPC services), with the settings of iceoryx2's own
//! latency benchmark: history 0, a subscriber buffer of 1 sample with safe overflow, a publisher
//! sized for the payload, subscribers polling `receive()`.
//!
//! iceoryx2 receives without copying (a sample borrows shared memory); the harness reads only
//! the first word of each sample, while shmbus copies every message out. The comparison rows say
//! shmbus / iceoryx2.

use iceoryx2::port::publisher::Publisher;
use iceoryx2::port::subscriber::Subscriber;
use iceoryx2::prelude::*;

use crate::clock::ClockKind;
use crate::ctx::Ctx;
use crate::engine::consume::{serve, Next, Source};
use crate::engine::pingpong::{self, echo_loop, start_echo, Link, Poll};
use crate::engine::publish::{self, drive, Load, Sink, Transport};
use crate::proto::{say, stamp_of};
use crate::report::{FanoutRow, IdleRow, LatencyRow, PeerRatio, Report};
use crate::sys::{self, BusGuard, Peer};

type Pub = Publisher<ipc::Service, [u8], ()>;
type Sub = Subscriber<ipc::Service, [u8], ()>;

/// The transport's name in the report.
pub const NAME: &str = "iceoryx2";

fn err(what: &str) -> impl Fn(&dyn std::fmt::Display) -> String + '_ {
    move |e| format!("iceoryx2: {what}: {e}")
}

fn node() -> Result<Node<ipc::Service>, String> {
    set_log_level(LogLevel::Error);
    NodeBuilder::new()
        .create::<ipc::Service>()
        .map_err(|e| err("cannot create a node")(&e))
}

/// Opens (or creates) service `name` with the benchmark's settings and makes the ports asked for.
fn ports(
    node: &Node<ipc::Service>,
    name: &str,
    subscribers: usize,
    payload: Option<usize>,
    subscribe: bool,
) -> Result<(Option<Pub>, Option<Sub>), String> {
    let service_name = ServiceName::new(name).map_err(|e| err("bad service name")(&e))?;
    let service = node
        .service_builder(&service_name)
        .publish_subscribe::<[u8]>()
        .max_publishers(1)
        .max_subscribers(subscribers)
        .max_nodes(subscribers + 2)
        .history_size(0)
        .subscriber_max_buffer_size(1)
        .enable_safe_overflow(true)
        .open_or_create()
        .map_err(|e| err("cannot open the service")(&e))?;
    let tx = match payload {
        Some(len) => Some(
            service
                .publisher_builder()
                .initial_max_slice_len(len)
                .create()
                .map_err(|e| err("cannot create a publisher")(&e))?,
        ),
        None => None,
    };
    let rx = if subscribe {
        Some(
            service
                .subscriber_builder()
                .create()
                .map_err(|e| err("cannot create a subscriber")(&e))?,
        )
    } else {
        None
    };
    Ok((tx, rx))
}

#[inline]
fn send(tx: &Pub, buf: &[u8]) -> Result<(), String> {
    let sample = tx
        .loan_slice_uninit(buf.len())
        .map_err(|e| err("loan failed")(&e))?;
    sample
        .write_from_slice(buf)
        .send()
        .map(|_| ())
        .map_err(|e| err("send failed")(&e))
}

/// An iceoryx2 ping-pong end receives on a subscriber.
impl Poll for Sub {
    #[inline]
    fn poll(&mut self) -> Result<Option<u64>, String> {
        match self.receive() {
            Ok(Some(s)) => Ok(Some(stamp_of(s.payload()))),
            Ok(None) => Ok(None),
            Err(e) => Err(err("receive failed")(&e)),
        }
    }
}

#[derive(clap::Args, Debug)]
pub struct EchoArgs {
    #[arg(long)]
    service: String,
    #[arg(long)]
    core: usize,
    #[arg(long, value_enum)]
    clock: ClockKind,
    #[arg(long)]
    payload: usize,
    #[arg(long)]
    stamp: bool,
}

/// The echo process: subscribes to `<service>.a2b`, answers on `<service>.b2a`.
pub fn child_echo(a: &EchoArgs) -> Result<(), String> {
    let node = node()?;
    let (_, rx) = ports(&node, &format!("{}.a2b", a.service), 1, None, true)?;
    let (tx, _) = ports(
        &node,
        &format!("{}.b2a", a.service),
        1,
        Some(a.payload),
        false,
    )?;
    let mut link = Link::new(
        tx.expect("asked for a publisher"),
        rx.expect("asked for a subscriber"),
        a.payload,
    );
    sys::pin(a.core)?;
    say("ready");
    echo_loop(a.clock, &mut link, a.stamp)
}

/// Sets up the two services of a ping-pong and starts the iceoryx2 echo on core `b`.
fn setup(
    ctx: &Ctx,
    node: &Node<ipc::Service>,
    payload: usize,
    b: usize,
    stamp: bool,
) -> Result<(Link<Pub, Sub>, Peer, ()), String> {
    let service = sys::unique_name("iox");
    let (tx, _) = ports(node, &format!("{service}.a2b"), 1, Some(payload), false)?;
    let (_, rx) = ports(node, &format!("{service}.b2a"), 1, None, true)?;
    let role = vec![
        "iox-echo".into(),
        "--service".into(),
        service,
        "--payload".into(),
        payload.to_string(),
    ];
    let echo = start_echo(ctx, "the iceoryx2 echo process", role, b, stamp)?;
    let link = Link::new(
        tx.expect("asked for a publisher"),
        rx.expect("asked for a subscriber"),
        payload,
    );
    Ok((link, echo, ()))
}

/// Adds the comparison of shmbus's figure with iceoryx2's, when both were measured;
/// `figure(report, transport)` finds one in the report.
fn compare(
    report: &mut Report,
    workload: String,
    metric: &'static str,
    figure: impl Fn(&Report, &str) -> Option<f64>,
) {
    if let (Some(ours), Some(theirs)) = (figure(report, "shmbus"), figure(report, NAME)) {
        report.peer_comparison.push(PeerRatio {
            workload,
            metric,
            shmbus: ours,
            peer: theirs,
            peer_name: NAME,
            ratio: ours / theirs,
        });
    }
}

/// The ping-pong p50 of `transport` for `payload` bytes between cores `a` and `b`, if measured.
fn pingpong_p50(r: &Report, transport: &str, payload: usize, cores: [usize; 2]) -> Option<f64> {
    let row = |l: &&LatencyRow| {
        l.transport == transport
            && l.method == "pingpong"
            && l.payload == payload
            && l.cores == cores
    };
    r.latency.iter().find(row).map(|l| l.latency.ns.p50)
}

/// The publish cost p50 of `transport` with `k` fan-out consumers, if measured.
fn fanout_cost(r: &Report, transport: &str, k: usize) -> Option<f64> {
    let row = |f: &&FanoutRow| f.transport == transport && f.consumers == k;
    r.fanout.iter().find(row).map(|f| f.publish_ns.p50)
}

/// The publish cost p50 of `transport` with `k` idle subscribers, if measured.
fn idle_cost(r: &Report, transport: &str, k: usize) -> Option<f64> {
    let row = |i: &&IdleRow| i.transport == transport && i.idle_subscribers == k;
    r.idle_subscribers
        .iter()
        .find(row)
        .map(|i| i.publish_ns.p50)
}

/// The latency rows of iceoryx2 for one payload size, and its comparison with shmbus's.
pub fn latency(
    ctx: &Ctx,
    report: &mut Report,
    payload: usize,
    [a, b]: [usize; 2],
    iters: u64,
) -> Result<(), String> {
    let payload = payload.max(8);
    let node = node()?;
    let m = pingpong::measure(ctx.clock, a, iters, |stamp| {
        setup(ctx, &node, payload, b, stamp)
    })?;
    pingpong::rows(ctx, report, NAME, payload, [a, b], &m);
    compare(
        report,
        format!("latency {payload}B ping-pong cores {a}-{b}"),
        "p50 ns",
        |r, transport| pingpong_p50(r, transport, payload, [a, b]),
    );
    Ok(())
}

impl Sink for Pub {
    #[inline]
    fn publish(&mut self, buf: &[u8]) -> Result<(), String> {
        send(self, buf)
    }
}

#[derive(clap::Args, Debug)]
pub struct ConsumeArgs {
    #[arg(long)]
    service: String,
    #[arg(long)]
    subscribers: usize,
    #[arg(long)]
    core: usize,
    #[arg(long, value_enum)]
    clock: ClockKind,
}

struct IoxSource(Sub);

impl Source for IoxSource {
    #[inline]
    fn next(&mut self) -> Next {
        match self.0.receive() {
            Ok(Some(s)) => Next::message(s.payload()),
            _ => Next::Empty,
        }
    }

    /// Only the stop message ends an iceoryx2 consumer (the last sample stays in its buffer).
    fn finished(&self) -> bool {
        false
    }
}

/// An iceoryx2 fan-out consumer (see `fanout`).
pub fn child_consume(a: &ConsumeArgs) -> Result<(), String> {
    let node = node()?;
    let (_, rx) = ports(&node, &a.service, a.subscribers, None, true)?;
    let mut src = IoxSource(rx.expect("asked for a subscriber"));
    serve(&mut src, a.core, a.clock)
}

/// Fan-out with `k` iceoryx2 consumer processes, and the publish-rate comparison with shmbus.
pub fn fanout(
    ctx: &Ctx,
    report: &mut Report,
    k: usize,
    producer: usize,
    load: &Load,
) -> Result<(), String> {
    let service = sys::unique_name("iox-fanout");
    let node = node()?;
    let (tx, _) = ports(&node, &service, k, Some(load.payload), false)?;
    let role = [
        "iox-consume".into(),
        "--service".into(),
        service,
        "--subscribers".into(),
        k.to_string(),
    ];
    let t = Transport {
        name: NAME,
        role: &role,
        reports_losses: false,
    };
    drive(
        ctx,
        report,
        &t,
        k,
        producer,
        load,
        tx.expect("asked for a publisher"),
    )?;
    compare(
        report,
        format!("fan-out K={k}, publish flat out"),
        "p50 ns/publish",
        |r, transport| fanout_cost(r, transport, k),
    );
    Ok(())
}

#[derive(clap::Args, Debug)]
pub struct IdleArgs {
    #[arg(long)]
    service: String,
    /// A shmbus bus whose producer's departure tells us to leave.
    #[arg(long)]
    ctl: String,
    #[arg(long)]
    subscribers: usize,
    #[arg(long)]
    core: usize,
    #[arg(long)]
    poll_ms: u64,
}

/// An idle iceoryx2 subscriber: polls rarely until the parent's control bus loses its producer.
pub fn child_idle(a: &IdleArgs) -> Result<(), String> {
    let ctl =
        shmbus::Bus::open_read_only(&a.ctl).map_err(|e| format!("cannot open {}: {e}", a.ctl))?;
    let node = node()?;
    let (_, rx) = ports(&node, &a.service, a.subscribers, None, true)?;
    let rx = rx.expect("asked for a subscriber");
    sys::pin(a.core)?;
    say("ready");
    while ctl.has_producers() {
        std::thread::sleep(std::time::Duration::from_millis(a.poll_ms));
        while let Ok(Some(_)) = rx.receive() {}
    }
    Ok(())
}

/// The publish cost of iceoryx2 with `ks` idle subscriber processes attached, and its
/// comparison with shmbus's at each K.
pub fn idle_curve(
    ctx: &Ctx,
    report: &mut Report,
    ks: &[usize],
    producer: usize,
    load: &Load,
    poll_ms: u64,
) -> Result<(), String> {
    let max = ks.iter().copied().max().unwrap_or(0);
    let service = sys::unique_name("iox-idle");
    let node = node()?;
    let (tx, _) = ports(&node, &service, max.max(1), Some(load.payload), false)?;
    let mut tx = tx.expect("asked for a publisher");
    let ctl_name = BusGuard::new("ioxctl");
    let ctl = shmbus::BusBuilder::new(ctl_name.name())
        .slots(2)
        .capacity(8)
        .create()
        .map_err(|e| format!("cannot create bus {}: {e}", ctl_name.name()))?;
    let ctl_tx = ctl
        .publisher()
        .map_err(|e| format!("cannot publish on {}: {e}", ctl_name.name()))?;
    let mut peers: Vec<Peer> = Vec::new();
    let result = publish::idle_curve(
        ctx,
        report,
        NAME,
        ks,
        producer,
        load,
        &mut tx,
        &mut peers,
        |i, core| {
            Peer::spawn(
                &format!("iceoryx2 idle subscriber {i}"),
                &[
                    "iox-idle".into(),
                    "--service".into(),
                    service.clone(),
                    "--ctl".into(),
                    ctl_name.name().into(),
                    "--subscribers".into(),
                    max.max(1).to_string(),
                    "--core".into(),
                    core.to_string(),
                    "--poll-ms".into(),
                    poll_ms.to_string(),
                ],
            )
        },
    );
    // Let the subscribers leave on their own (their iceoryx2 resources cleaned up), then wait.
    drop(ctl_tx);
    for p in peers {
        p.finish()?;
    }
    result?;
    for &k in ks {
        compare(
            report,
            format!("publish with {k} idle subscribers"),
            "p50 ns/publish",
            |r, transport| idle_cost(r, transport, k),
        );
    }
    Ok(())
}
