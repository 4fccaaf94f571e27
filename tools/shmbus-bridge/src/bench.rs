//! `shmbus-bridge bench` (hidden): one-way latency through export→zenoh→import beside raw zenoh
//! publish/subscribe of the same payload over the same kind of loopback endpoint, and the
//! throughput of 64-byte messages through the bridge beside raw zenoh puts, all in one run so
//! the figures read as ratios (docs/design.md §16).

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use clap::Args;
use hdrhistogram::Histogram;
use shmbus::{Bus, BusBuilder, Recv, Start};
use zenoh::handlers::FifoChannel;
use zenoh::qos::{CongestionControl, Reliability};
use zenoh::Wait as _;

use crate::error::BridgeError;
use crate::net::NetArgs;

/// Payload of every message: a counter, a send time, and filler up to 64 bytes.
const PAYLOAD: usize = 64;
/// The longest wait for anything in the bench.
const LIMIT: Duration = Duration::from_secs(30);

/// Flags of `bench`.
#[derive(Args, Debug)]
pub struct BenchArgs {
    /// Messages timed one at a time on each path (after 10% more as warm-up)
    #[arg(long, default_value_t = 5_000)]
    pub messages: u64,
    /// Messages sent flat out for the throughput figures
    #[arg(long, default_value_t = 500_000)]
    pub throughput: u64,
    /// The exporter's batch size in the throughput run
    #[arg(long, default_value_t = 64)]
    pub batch: u32,
    /// Internal: be the raw zenoh subscriber, listening on this endpoint
    #[arg(long, hide = true, value_name = "ENDPOINT")]
    pub raw_peer: Option<String>,
    /// Internal: the raw peer's mode (lat or tput)
    #[arg(long, hide = true, default_value = "lat")]
    pub raw_mode: String,
}

/// CLOCK_MONOTONIC in ns: the same clock in every process of the machine.
fn now_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes one timespec into the valid, exclusively borrowed `ts`.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

fn payload(k: u64) -> [u8; PAYLOAD] {
    let mut p = [0xa5u8; PAYLOAD];
    p[..8].copy_from_slice(&k.to_le_bytes());
    p[8..16].copy_from_slice(&now_ns().to_le_bytes());
    p
}

/// `(counter, send time)` of a payload, if it is one.
fn parse(bytes: &[u8]) -> Option<(u64, u64)> {
    let k = u64::from_le_bytes(bytes.get(..8)?.try_into().ok()?);
    let t = u64::from_le_bytes(bytes.get(8..16)?.try_into().ok()?);
    Some((k, t))
}

fn free_endpoint() -> Result<String, BridgeError> {
    let l = std::net::TcpListener::bind("127.0.0.1:0")
        .map_err(|e| BridgeError::Usage(format!("no free loopback port: {e}")))?;
    let port = l
        .local_addr()
        .map_err(|e| BridgeError::Usage(format!("no free loopback port: {e}")))?
        .port();
    Ok(format!("tcp/127.0.0.1:{port}"))
}

fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 60_000_000_000, 3).expect("bounds are valid")
}

/// The raw zenoh subscriber: a process of this same program (`bench --raw-peer`), as the
/// importer is, so that the raw path and the bridge cross the same number of process and
/// session boundaries. The publisher here uses the exporter's defaults (reliable, blocking), so
/// the two paths differ only by the bridge.
struct RawPeer {
    child: Child,
    lines: std::sync::mpsc::Receiver<String>,
}

impl RawPeer {
    /// Starts the peer listening on a free endpoint and a session here connected to it, with a
    /// publisher on the peer's key; returns once a probe has reached the peer.
    fn start(mode: &str) -> Result<(RawPeer, zenoh::Session), BridgeError> {
        let exe = std::env::current_exe()
            .map_err(|e| BridgeError::Usage(format!("cannot find this program: {e}")))?;
        let ep = free_endpoint()?;
        let mut child = Command::new(exe)
            .args(["bench", "--raw-peer", &ep, "--raw-mode", mode])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| BridgeError::Usage(format!("cannot start the raw zenoh peer: {e}")))?;
        let out = child.stdout.take().expect("stdout is piped");
        let (tx, lines) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            use std::io::BufRead as _;
            for line in std::io::BufReader::new(out).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let peer = RawPeer { child, lines };
        let connect = NetArgs {
            connect: vec![ep],
            ..NetArgs::default()
        };
        Ok((peer, connect.open()?))
    }

    /// The peer's next line of output.
    fn line(&self, within: Duration) -> Result<String, BridgeError> {
        self.lines
            .recv_timeout(within)
            .map_err(|_| BridgeError::Usage("the raw zenoh peer did not answer".into()))
    }
}

impl Drop for RawPeer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

const RAW_KEY: &str = "shmbus-bench/raw";
const RAW_ACK: &str = "shmbus-bench/raw-ack";

/// A publisher on the raw key with the exporter's defaults.
fn raw_publisher(s: &zenoh::Session) -> Result<zenoh::pubsub::Publisher<'static>, BridgeError> {
    s.declare_publisher(RAW_KEY)
        .congestion_control(CongestionControl::Block)
        .reliability(Reliability::Reliable)
        .wait()
        .map_err(BridgeError::zenoh("declare the publisher"))
}

/// Puts probes until the peer says it has one (until the route is up, puts go nowhere).
fn raw_route(peer: &RawPeer, publisher: &zenoh::pubsub::Publisher<'_>) -> Result<(), BridgeError> {
    let deadline = Instant::now() + LIMIT;
    loop {
        let _ = publisher.put(payload(u64::MAX).to_vec()).wait();
        if let Ok(line) = peer.lines.recv_timeout(Duration::from_millis(20)) {
            if line == "ready" {
                return Ok(());
            }
        }
        if Instant::now() > deadline {
            return Err(BridgeError::Usage("raw zenoh: no route to the peer".into()));
        }
    }
}

/// Raw zenoh: one-way latency of `n` messages sent one at a time (after `warm` unrecorded),
/// timed by the peer from the send stamp; the peer's acknowledgement paces the sends.
fn raw_latency(n: u64, warm: u64) -> Result<Histogram<u64>, BridgeError> {
    let (peer, session) = RawPeer::start("lat")?;
    let acks = session
        .declare_subscriber(RAW_ACK)
        .with(FifoChannel::new(1024))
        .wait()
        .map_err(BridgeError::zenoh("declare the subscriber"))?;
    let publisher = raw_publisher(&session)?;
    raw_route(&peer, &publisher)?;
    for k in 0..warm + n {
        let _ = publisher.put(payload(k).to_vec()).wait();
        loop {
            let s = acks
                .recv_timeout(LIMIT)
                .map_err(BridgeError::zenoh("receive"))?
                .ok_or_else(|| BridgeError::Usage(format!("raw zenoh: message {k} lost")))?;
            if parse(&s.payload().to_bytes()).is_some_and(|(got, _)| got == k) {
                break;
            }
        }
    }
    let _ = publisher.put(payload(u64::MAX - 1).to_vec()).wait();
    let line = peer.line(LIMIT)?;
    let _ = session.close().wait();
    let mut h = histogram();
    let times = line
        .split_whitespace()
        .filter_map(|w| w.parse::<u64>().ok());
    for v in times.skip(warm as usize) {
        h.saturating_record(v);
    }
    Ok(h)
}

/// Raw zenoh: messages per second of `n` puts flat out, counted at the peer.
fn raw_throughput(n: u64) -> Result<(f64, u64), BridgeError> {
    let (peer, session) = RawPeer::start("tput")?;
    let publisher = raw_publisher(&session)?;
    raw_route(&peer, &publisher)?;
    for k in 0..n {
        let _ = publisher.put(payload(k).to_vec()).wait();
    }
    let _ = publisher.put(payload(u64::MAX - 1).to_vec()).wait();
    let line = peer.line(LIMIT)?;
    let _ = session.close().wait();
    let mut words = line
        .split_whitespace()
        .map(|w| w.parse::<u64>().unwrap_or(0));
    let (got, span_ns) = (words.next().unwrap_or(0), words.next().unwrap_or(0));
    let rate = got as f64 * 1e9 / (span_ns.max(1) as f64);
    Ok((rate, n.saturating_sub(got)))
}

/// The raw peer (`bench --raw-peer ENDPOINT`): listens, subscribes to the raw key, says
/// "ready" on the first probe, then either acknowledges and times each message (`lat`: at the
/// end, prints every one-way latency in ns on one line, warm-up included) or counts them (`tput`: prints the
/// count and the span in ns). The end is a message numbered `u64::MAX - 1`.
pub fn raw_peer(endpoint: &str, mode: &str) -> Result<(), BridgeError> {
    let listen = NetArgs {
        listen: vec![endpoint.to_owned()],
        ..NetArgs::default()
    };
    let session = listen.open()?;
    let sub = session
        .declare_subscriber(RAW_KEY)
        .with(FifoChannel::new(65_536))
        .wait()
        .map_err(BridgeError::zenoh("declare the subscriber"))?;
    let ack = session
        .declare_publisher(RAW_ACK)
        .congestion_control(CongestionControl::Block)
        .reliability(Reliability::Reliable)
        .wait()
        .map_err(BridgeError::zenoh("declare the publisher"))?;
    let mut ready = false;
    let mut times = Vec::new();
    let (mut got, mut first, mut last) = (0u64, None, Instant::now());
    while let Ok(Some(s)) = sub.recv_timeout(LIMIT) {
        let t1 = now_ns();
        let Some((k, t0)) = parse(&s.payload().to_bytes()) else {
            continue;
        };
        match k {
            u64::MAX => {
                if !ready {
                    ready = true;
                    println!("ready");
                }
            }
            k if k == u64::MAX - 1 => break,
            k => {
                if mode == "lat" {
                    times.push(t1.saturating_sub(t0));
                    let _ = ack.put(payload(k).to_vec()).wait();
                } else {
                    first.get_or_insert_with(Instant::now);
                    got += 1;
                    last = Instant::now();
                }
            }
        }
    }
    if mode == "lat" {
        let all: Vec<String> = times.iter().map(u64::to_string).collect();
        println!("{}", all.join(" "));
    } else {
        let span = first.map_or(0, |f: Instant| last.duration_since(f).as_nanos() as u64);
        println!("{got} {span}");
    }
    let _ = session.close().wait();
    Ok(())
}

/// An exporter and an importer of this same program, killed on drop.
struct Pair {
    children: Vec<Child>,
    names: [String; 2],
}

impl Pair {
    fn start(a: &str, b: &str, extra_export: &[&str]) -> Result<Self, BridgeError> {
        let exe = std::env::current_exe()
            .map_err(|e| BridgeError::Usage(format!("cannot find this program: {e}")))?;
        let ep = free_endpoint()?;
        let key = format!("shmbus-bench/{a}");
        let spawn = |args: Vec<&str>| {
            Command::new(&exe)
                .args(args)
                .args(["--key", &key, "--stats-every", "0"])
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .map_err(|e| BridgeError::Usage(format!("cannot start {}: {e}", exe.display())))
        };
        let mut pair = Pair {
            children: Vec::new(),
            names: [a.to_owned(), b.to_owned()],
        };
        pair.children
            .push(spawn(vec!["import", b, "--listen", &ep])?);
        let mut export = vec!["export", a, "--connect", &ep];
        export.extend_from_slice(extra_export);
        pair.children.push(spawn(export)?);
        Ok(pair)
    }

    /// The imported bus, once the importer has created it (on the exporter's first frame).
    fn imported(&self) -> Result<Bus, BridgeError> {
        let deadline = Instant::now() + LIMIT;
        loop {
            match Bus::open(&self.names[1]) {
                Ok(bus) => return Ok(bus),
                Err(_) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(5)),
                Err(e) => return Err(BridgeError::bus(&self.names[1])(e)),
            }
        }
    }
}

impl Drop for Pair {
    fn drop(&mut self) {
        for c in &mut self.children {
            // SAFETY: kill(2) on our own unreaped child, whose pid cannot have been reused.
            unsafe { libc::kill(c.id() as i32, libc::SIGTERM) };
            let _ = c.wait();
        }
        for n in &self.names {
            let _ = Bus::remove(n);
        }
    }
}

fn bench_names(tag: &str) -> (String, String) {
    let pid = std::process::id();
    (
        format!("bridge-bench-{tag}-a-{pid}"),
        format!("bridge-bench-{tag}-b-{pid}"),
    )
}

/// The bridge: one-way latency from a publish on bus A to the receive on bus B.
fn bridge_latency(n: u64, warm: u64) -> Result<Histogram<u64>, BridgeError> {
    let (a, b) = bench_names("lat");
    let src = BusBuilder::new(&a)
        .slots(1024)
        .capacity(PAYLOAD)
        .create()
        .map_err(BridgeError::bus(&a))?;
    let mut p = src.publisher().map_err(BridgeError::bus(&a))?;
    let pair = Pair::start(&a, &b, &["--batch", "1"])?;
    let mut sub = pair.imported()?.subscribe(Start::Next);
    let mut h = histogram();
    for k in 0..warm + n {
        p.publish_bytes(&payload(k)).map_err(BridgeError::bus(&a))?;
        let deadline = Instant::now() + LIMIT;
        loop {
            match sub.recv_timeout(Duration::from_millis(100)) {
                Recv::Message(m) => {
                    if let Some((got, t0)) = parse(m.bytes()).filter(|(got, _)| *got == k) {
                        if got >= warm {
                            h.saturating_record(now_ns().saturating_sub(t0));
                        }
                        break;
                    }
                }
                Recv::Lapped { .. } | Recv::Empty | Recv::Closed => {}
            }
            if Instant::now() > deadline {
                return Err(BridgeError::Usage(format!("bridge: message {k} lost")));
            }
        }
    }
    Ok(h)
}

/// The bridge: messages per second of `n` publishes flat out, counted on bus B.
fn bridge_throughput(n: u64, batch: u32) -> Result<(f64, u64), BridgeError> {
    let (a, b) = bench_names("tput");
    let slots = n.next_power_of_two().clamp(1024, 1 << 20);
    let src = BusBuilder::new(&a)
        .slots(slots)
        .capacity(PAYLOAD)
        .create()
        .map_err(BridgeError::bus(&a))?;
    let mut p = src.publisher().map_err(BridgeError::bus(&a))?;
    let batch = batch.to_string();
    let pair = Pair::start(&a, &b, &["--batch", &batch])?;
    let mut sub = pair.imported()?.subscribe(Start::Next);
    let counter = std::thread::spawn(move || {
        let (mut got, mut lost) = (0u64, 0u64);
        let mut first = None;
        let mut last = Instant::now();
        while got + lost < n {
            match sub.recv_timeout(Duration::from_secs(10)) {
                Recv::Message(_) => {
                    first.get_or_insert_with(Instant::now);
                    got += 1;
                    last = Instant::now();
                }
                Recv::Lapped { lost: l } => lost += l,
                Recv::Empty => break,
                Recv::Closed => {}
            }
        }
        (got, first.map(|f| last.duration_since(f)))
    });
    for k in 0..n {
        p.publish_bytes(&payload(k)).map_err(BridgeError::bus(&a))?;
    }
    let (got, span) = counter.join().expect("the counting thread does not panic");
    drop(pair);
    let rate = span.map_or(0.0, |s| got as f64 / s.as_secs_f64().max(1e-9));
    Ok((rate, n - got))
}

fn us(h: &Histogram<u64>, q: f64) -> f64 {
    h.value_at_quantile(q) as f64 / 1000.0
}

/// Runs the bench and prints its table.
pub fn run(args: &BenchArgs) -> Result<(), BridgeError> {
    if let Some(ep) = &args.raw_peer {
        return raw_peer(ep, &args.raw_mode);
    }
    let warm = args.messages / 10;
    let raw = raw_latency(args.messages, warm)?;
    let bridged = bridge_latency(args.messages, warm)?;
    println!(
        "one-way latency, {PAYLOAD}-byte messages, {} timed one at a time, loopback TCP",
        args.messages
    );
    println!("{:<28}{:>10}{:>10}{:>10}", "", "p50 µs", "p90 µs", "p99 µs");
    for (name, h) in [
        ("raw zenoh pub/sub", &raw),
        ("bus → bridge → bus", &bridged),
    ] {
        println!(
            "{name:<28}{:>10.1}{:>10.1}{:>10.1}",
            us(h, 0.5),
            us(h, 0.9),
            us(h, 0.99)
        );
    }
    println!(
        "{:<28}{:>10.2}{:>10.2}{:>10.2}",
        "ratio (bridge / raw)",
        us(&bridged, 0.5) / us(&raw, 0.5).max(1e-9),
        us(&bridged, 0.9) / us(&raw, 0.9).max(1e-9),
        us(&bridged, 0.99) / us(&raw, 0.99).max(1e-9)
    );
    let (raw_rate, raw_lost) = raw_throughput(args.throughput)?;
    let (rate, lost) = bridge_throughput(args.throughput, args.batch)?;
    println!(
        "throughput, {PAYLOAD}-byte messages, {} sent flat out",
        args.throughput
    );
    println!(
        "{:<28}{:>14.0} msgs/s  ({raw_lost} lost)",
        "raw zenoh puts", raw_rate
    );
    println!(
        "{:<28}{:>14.0} msgs/s  ({lost} lost)",
        format!("bridge, batch {}", args.batch),
        rate
    );
    println!(
        "{:<28}{:>14.2}",
        "ratio (bridge / raw)",
        rate / raw_rate.max(1e-9)
    );
    Ok(())
}
