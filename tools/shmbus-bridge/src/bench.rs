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

/// Two zenoh sessions of this process, one listening and one connected to it.
fn session_pair() -> Result<(zenoh::Session, zenoh::Session), BridgeError> {
    let ep = free_endpoint()?;
    let listen = NetArgs {
        listen: vec![ep.clone()],
        ..NetArgs::default()
    };
    let connect = NetArgs {
        connect: vec![ep],
        ..NetArgs::default()
    };
    Ok((listen.open()?, connect.open()?))
}

/// The raw zenoh publishers use the exporter's defaults (reliable, blocking), so the two
/// paths differ only by the bridge.
///
/// Raw zenoh: one-way latency of `n` messages sent one at a time (after `warm` unrecorded).
fn raw_latency(n: u64, warm: u64) -> Result<Histogram<u64>, BridgeError> {
    let (a, b) = session_pair()?;
    let key = "shmbus-bench/raw";
    let sub = b
        .declare_subscriber(key)
        .with(FifoChannel::new(1024))
        .wait()
        .map_err(BridgeError::zenoh("declare the subscriber"))?;
    let publisher = a
        .declare_publisher(key)
        .congestion_control(CongestionControl::Block)
        .reliability(Reliability::Reliable)
        .wait()
        .map_err(BridgeError::zenoh("declare the publisher"))?;
    let mut h = histogram();
    // Until the route is up, puts go nowhere: repeat the first until one arrives.
    let deadline = Instant::now() + LIMIT;
    'route: loop {
        let _ = publisher.put(payload(u64::MAX).to_vec()).wait();
        if let Ok(Some(_)) = sub.recv_timeout(Duration::from_millis(20)) {
            break 'route;
        }
        if Instant::now() > deadline {
            return Err(BridgeError::Usage(
                "raw zenoh: no route between the sessions".into(),
            ));
        }
    }
    while sub.try_recv().ok().flatten().is_some() {}
    for k in 0..warm + n {
        let _ = publisher.put(payload(k).to_vec()).wait();
        loop {
            let s = sub
                .recv_timeout(LIMIT)
                .map_err(BridgeError::zenoh("receive"))?
                .ok_or_else(|| BridgeError::Usage(format!("raw zenoh: message {k} lost")))?;
            let bytes = s.payload().to_bytes();
            if let Some((got, t0)) = parse(&bytes).filter(|(got, _)| *got == k) {
                if got >= warm {
                    h.saturating_record(now_ns().saturating_sub(t0));
                }
                break;
            }
        }
    }
    drop(publisher);
    drop(sub);
    let _ = a.close().wait();
    let _ = b.close().wait();
    Ok(h)
}

/// Raw zenoh: messages per second of `n` puts flat out, counted at the subscriber (the timeouts
/// only end a run that lost messages; they are long so a loaded machine does not look lossy).
fn raw_throughput(n: u64) -> Result<(f64, u64), BridgeError> {
    let (a, b) = session_pair()?;
    let key = "shmbus-bench/raw-tput";
    let sub = b
        .declare_subscriber(key)
        .with(FifoChannel::new(65_536))
        .wait()
        .map_err(BridgeError::zenoh("declare the subscriber"))?;
    let publisher = a
        .declare_publisher(key)
        .congestion_control(CongestionControl::Block)
        .reliability(Reliability::Reliable)
        .wait()
        .map_err(BridgeError::zenoh("declare the publisher"))?;
    let deadline = Instant::now() + LIMIT;
    'route: loop {
        let _ = publisher.put(payload(u64::MAX).to_vec()).wait();
        if let Ok(Some(_)) = sub.recv_timeout(Duration::from_millis(20)) {
            break 'route;
        }
        if Instant::now() > deadline {
            return Err(BridgeError::Usage(
                "raw zenoh: no route between the sessions".into(),
            ));
        }
    }
    while sub.try_recv().ok().flatten().is_some() {}
    let counter = std::thread::spawn(move || {
        let mut got = 0u64;
        let mut first = None;
        let mut last = Instant::now();
        while let Ok(Some(s)) = sub.recv_timeout(Duration::from_secs(10)) {
            first.get_or_insert_with(Instant::now);
            got += 1;
            last = Instant::now();
            let bytes = s.payload().to_bytes();
            if parse(&bytes).is_some_and(|(k, _)| k == n - 1) {
                break;
            }
        }
        (got, first.map(|f| last.duration_since(f)))
    });
    for k in 0..n {
        let _ = publisher.put(payload(k).to_vec()).wait();
    }
    let (got, span) = counter.join().expect("the counting thread does not panic");
    let rate = span.map_or(0.0, |s| got as f64 / s.as_secs_f64().max(1e-9));
    let _ = a.close().wait();
    let _ = b.close().wait();
    Ok((rate, n - got))
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
        let mut export = vec!["export", a, "--connect", &ep, "--wait", "yield"];
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
