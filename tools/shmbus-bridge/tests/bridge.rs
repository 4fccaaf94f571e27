//! The bridge end to end: real `shmbus-bridge` processes over loopback TCP on free ports, buses
//! on both sides, checksummed messages, and the importer's accounting checked against what a
//! subscriber on the imported bus saw.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;
use shmbus::{Bus, BusBuilder, Publisher, Recv, Start};
use shmbus_testkit::{check_payload, make_payload, TestBus};

const BIN: &str = env!("CARGO_BIN_EXE_shmbus-bridge");
/// Generous: a debug build on a loaded 2-core machine.
const LIMIT: Duration = Duration::from_secs(120);

/// A free loopback port: bound, read, released.
fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind a free port");
    l.local_addr().expect("local address").port()
}

/// The key an exporter of `bus` publishes on by default, for an importer into another name.
fn key(bus: &TestBus) -> String {
    format!("shmbus/{}", bus.name())
}

fn endpoint(port: u16) -> String {
    format!("tcp/127.0.0.1:{port}")
}

/// A running `shmbus-bridge` whose `--json` statistics lines are collected as they come.
struct Bridge {
    child: Child,
    lines: Arc<Mutex<Vec<Value>>>,
    reaped: bool,
}

impl Bridge {
    fn start(args: &[&str]) -> Self {
        let mut child = Command::new(BIN)
            .args(args)
            .args(["--json", "--stats-every", "0.05"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn shmbus-bridge");
        let lines = Arc::new(Mutex::new(Vec::new()));
        let out = BufReader::new(child.stdout.take().expect("piped stdout"));
        let sink = lines.clone();
        std::thread::spawn(move || {
            for line in out.lines().map_while(Result::ok) {
                let v: Value = serde_json::from_str(&line)
                    .unwrap_or_else(|e| panic!("stats line {line:?} is not JSON: {e}"));
                sink.lock().unwrap().push(v);
            }
        });
        Bridge {
            child,
            lines,
            reaped: false,
        }
    }

    fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    /// The latest statistics line, if any.
    fn latest(&self) -> Option<Value> {
        self.lines.lock().unwrap().last().cloned()
    }

    /// A counter of the latest statistics line (0 before the first).
    fn stat(&self, key: &str) -> u64 {
        self.latest()
            .and_then(|v| v[key].as_u64())
            .unwrap_or_default()
    }

    /// Waits until `cond` holds for the latest statistics.
    fn await_stats(&mut self, what: &str, mut cond: impl FnMut(&Self) -> bool) {
        let deadline = Instant::now() + LIMIT;
        while !cond(self) {
            if let Some(st) = self.child.try_wait().expect("try_wait") {
                panic!("shmbus-bridge ended ({st}) while waiting for {what}");
            }
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {what}: {:?}",
                self.latest()
            );
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    fn signal(&self, sig: i32) {
        // SAFETY: kill(2) on our own unreaped child, whose pid cannot have been reused.
        unsafe { libc::kill(self.pid(), sig) };
    }

    /// SIGTERM, then the final statistics line it prints on the way out.
    fn stop(mut self) -> Value {
        self.signal(libc::SIGTERM);
        let st = self.wait(LIMIT);
        assert!(st.success(), "shmbus-bridge ended with {st} on SIGTERM");
        let deadline = Instant::now() + LIMIT;
        loop {
            if let Some(v) = self.latest().filter(|v| v["final"] == true) {
                return v;
            }
            assert!(Instant::now() < deadline, "no final statistics line");
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    fn kill9(&mut self) {
        self.signal(libc::SIGKILL);
        self.wait(LIMIT);
    }

    fn wait(&mut self, limit: Duration) -> std::process::ExitStatus {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(st) = self.child.try_wait().expect("try_wait") {
                self.reaped = true;
                return st;
            }
            assert!(Instant::now() < deadline, "shmbus-bridge did not end");
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}

impl Drop for Bridge {
    fn drop(&mut self) {
        if !self.reaped {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Runs `shmbus-bridge` to completion: its exit status and stderr.
fn run_to_end(args: &[&str]) -> (std::process::ExitStatus, String) {
    let out = Command::new(BIN)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("run shmbus-bridge");
    (
        out.status,
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Publishes self-checking message `k` (producer id 1) of `len` bytes.
fn publish(p: &mut Publisher, k: u64, len: usize) {
    let mut buf = vec![0u8; len];
    make_payload(&mut buf, 1, k);
    p.publish_bytes(&buf).expect("fits the slot");
}

/// What a subscriber on the imported bus saw.
#[derive(Debug, Default)]
struct Seen {
    /// Counters of the messages received, in order.
    counters: Vec<u64>,
    torn: u64,
    lapped: u64,
}

impl Seen {
    /// Receives until `done` holds (checked after each message) or the limit passes.
    fn collect(&mut self, sub: &mut shmbus::Subscriber, mut done: impl FnMut(&Seen) -> bool) {
        let deadline = Instant::now() + LIMIT;
        while !done(self) {
            assert!(
                Instant::now() < deadline,
                "timed out receiving: {} so far",
                self.counters.len()
            );
            match sub.recv_timeout(Duration::from_millis(50)) {
                Recv::Message(m) => match check_payload(m.bytes()) {
                    Some((1, k)) => self.counters.push(k),
                    _ => self.torn += 1,
                },
                Recv::Lapped { lost } => self.lapped += lost,
                Recv::Empty | Recv::Closed => {}
            }
        }
    }

    /// No message twice, none out of order.
    fn assert_strictly_increasing(&self) {
        assert!(
            self.counters.windows(2).all(|w| w[0] < w[1]),
            "a message was duplicated or reordered"
        );
    }
}

/// Waits for the importer to have heard from an exporter (its hello frames repeat), which also
/// means it has created or opened its local bus.
fn await_route(importer: &mut Bridge) {
    importer.await_stats("the exporter's first frame", |b| b.stat("sources") >= 1);
}

#[test]
fn every_message_crosses_in_order_and_the_accounting_balances() {
    const N: u64 = 100_000;
    let a = TestBus::new("bridge-a");
    let b = TestBus::new("bridge-b");
    // A ring larger than the run: the exporter cannot be lapped, whatever the pace.
    let src = BusBuilder::new(a.name())
        .slots(1 << 17)
        .capacity(64)
        .create()
        .unwrap();
    let mut p = src.publisher().unwrap();
    let port = free_port();
    let ep = endpoint(port);
    let mut importer = Bridge::start(&["import", b.name(), "--key", &key(&a), "--listen", &ep]);
    let exporter = Bridge::start(&["export", a.name(), "--connect", &ep, "--from", "oldest"]);
    await_route(&mut importer);
    let mut sub = Bus::open(b.name()).unwrap().subscribe(Start::Oldest);
    for k in 0..N {
        publish(&mut p, k, 64);
    }
    let mut seen = Seen::default();
    seen.collect(&mut sub, |s| s.counters.len() as u64 == N);
    assert_eq!(seen.torn, 0);
    assert_eq!(seen.lapped, 0);
    assert_eq!(seen.counters, (0..N).collect::<Vec<_>>());
    let exp = exporter.stop();
    let imp = importer.stop();
    assert_eq!(exp["sent"], N);
    assert_eq!(exp["lost_at_exporter"], 0);
    assert_eq!(imp["published"], N, "{imp}");
    assert_eq!(imp["received"], N, "{imp}");
    assert_eq!(imp["lost"], 0, "{imp}");
    assert_eq!(imp["malformed"], 0, "{imp}");
    assert_eq!(imp["duplicates"], 0, "{imp}");
}

#[test]
fn a_killed_and_restarted_exporter_resumes_and_the_gap_is_counted_exactly() {
    const N: u64 = 30_000;
    let a = TestBus::new("bridge-restart-a");
    let b = TestBus::new("bridge-restart-b");
    let src = BusBuilder::new(a.name())
        .slots(1 << 16)
        .capacity(64)
        .create()
        .unwrap();
    let mut p = src.publisher().unwrap();
    let ep = endpoint(free_port());
    let mut importer = Bridge::start(&["import", b.name(), "--key", &key(&a), "--listen", &ep]);
    let mut first = Bridge::start(&["export", a.name(), "--connect", &ep, "--from", "oldest"]);
    await_route(&mut importer);
    let mut sub = Bus::open(b.name()).unwrap().subscribe(Start::Oldest);
    let mut seen = Seen::default();
    // Mid-stream: half published, some of it through, then the exporter dies.
    for k in 0..N / 2 {
        publish(&mut p, k, 64);
    }
    seen.collect(&mut sub, |s| s.counters.len() >= 1000);
    first.kill9();
    // Published while no exporter runs: the gap.
    for k in N / 2..N / 2 + 500 {
        publish(&mut p, k, 64);
    }
    let second = Bridge::start(&["export", a.name(), "--connect", &ep, "--from", "next"]);
    importer.await_stats("the restart", |b| b.stat("restarts") == 1);
    for k in N / 2 + 500..N {
        publish(&mut p, k, 64);
    }
    seen.collect(&mut sub, |s| s.counters.last() == Some(&(N - 1)));
    second.stop();
    // A third instance re-reads the whole ring: every message is one the importer has seen.
    let third = Bridge::start(&["export", a.name(), "--connect", &ep, "--from", "oldest"]);
    importer.await_stats("the resent messages", |b| b.stat("duplicates") == N);
    third.stop();
    let imp = importer.stop();
    assert!(
        matches!(sub.try_recv(), Recv::Empty | Recv::Closed),
        "a resent message reached the imported bus"
    );
    assert_eq!(seen.torn, 0);
    seen.assert_strictly_increasing();
    let received = seen.counters.len() as u64;
    // End to end: the subscriber of the imported bus counts the gap as lost, exactly (its ring
    // is larger than the run, so nothing else is lost there).
    assert_eq!(
        seen.lapped,
        N - received,
        "the subscriber's losses are the importer's"
    );
    assert_eq!(imp["published"], N, "{imp}");
    assert_eq!(imp["received"], received, "{imp}");
    assert_eq!(imp["lost"], N - received, "{imp}");
    assert_eq!(imp["lost_in_restart"], N - received, "{imp}");
    assert!(
        N - received >= 500,
        "what was published with no exporter cannot have crossed"
    );
    assert_eq!(imp["restarts"], 2, "{imp}");
    assert_eq!(imp["exporters"], 3, "{imp}");
    assert_eq!(imp["duplicates"], N, "{imp}");
}

#[test]
fn losses_on_the_importing_side_are_counted_and_never_torn() {
    // Even counters are 24 bytes, odd ones 64: a local bus of 32-byte slots refuses the odd
    // ones, and its 8 slots lap a subscriber that reads only at the end.
    const N: u64 = 1000;
    let a = TestBus::new("bridge-slow-a");
    let b = TestBus::new("bridge-slow-b");
    let src = BusBuilder::new(a.name())
        .slots(1 << 12)
        .capacity(64)
        .create()
        .unwrap();
    let mut p = src.publisher().unwrap();
    let ep = endpoint(free_port());
    let mut importer = Bridge::start(&[
        "import",
        b.name(),
        "--key",
        &key(&a),
        "--listen",
        &ep,
        "--slots",
        "8",
        "--size",
        "32",
    ]);
    let exporter = Bridge::start(&["export", a.name(), "--connect", &ep, "--from", "oldest"]);
    await_route(&mut importer);
    let local = Bus::open(b.name()).unwrap();
    assert_eq!((local.slots(), local.capacity()), (8, 32));
    let mut sub = local.subscribe(Start::Oldest);
    for k in 0..N {
        publish(&mut p, k, if k % 2 == 0 { 24 } else { 64 });
    }
    importer.await_stats("every message accounted", |b| b.stat("published") == N);
    let mut seen = Seen::default();
    seen.collect(&mut sub, |s| s.counters.last() == Some(&(N - 2)));
    exporter.stop();
    let imp = importer.stop();
    // The last (odd, refused) message is published as a loss after the last even one.
    while let Recv::Lapped { lost } = sub.recv_timeout(Duration::from_millis(50)) {
        seen.lapped += lost;
    }
    assert_eq!(seen.torn, 0);
    seen.assert_strictly_increasing();
    assert!(
        seen.counters.iter().all(|k| k % 2 == 0),
        "a refused message arrived"
    );
    // The local subscriber's own accounting, end to end: every source sequence, received or
    // counted lost (the refused ones, as the importer published them, and its own laps).
    assert_eq!(seen.counters.len() as u64 + seen.lapped, N);
    assert!(
        seen.lapped > 0,
        "an 8-slot ring must lap a subscriber that waits for 500 messages"
    );
    assert_eq!(imp["received"], N / 2, "{imp}");
    assert_eq!(imp["lost_at_importer"], N / 2, "{imp}");
    assert_eq!(imp["lost"], N / 2, "{imp}");
    assert_eq!(imp["published"], N, "{imp}");
}

#[test]
fn two_exported_buses_on_one_key_are_accounted_apart_and_each_keeps_its_order() {
    // The imported bus takes the exported shape (8192 slots): both streams fit, unread.
    const N: u64 = 4_000;
    let a1 = TestBus::new("bridge-two-a1");
    let a2 = TestBus::new("bridge-two-a2");
    let b = TestBus::new("bridge-two-b");
    let key = key(&b);
    let ep = endpoint(free_port());
    let mut importer = Bridge::start(&["import", b.name(), "--listen", &ep]);
    let mut publishers = Vec::new();
    let mut exporters = Vec::new();
    for a in [&a1, &a2] {
        let bus = BusBuilder::new(a.name())
            .slots(1 << 13)
            .capacity(64)
            .create()
            .unwrap();
        publishers.push(bus.publisher().unwrap());
        exporters.push(Bridge::start(&[
            "export",
            a.name(),
            "--key",
            &key,
            "--connect",
            &ep,
            "--from",
            "oldest",
        ]));
    }
    importer.await_stats("both exporters", |b| b.stat("sources") == 2);
    let mut sub = Bus::open(b.name()).unwrap().subscribe(Start::Oldest);
    for k in 0..N {
        for (id, p) in publishers.iter_mut().enumerate() {
            let mut buf = [0u8; 40];
            make_payload(&mut buf, id as u64 + 1, k);
            p.publish_bytes(&buf).unwrap();
        }
    }
    let mut next = [0u64; 2];
    let deadline = Instant::now() + LIMIT;
    while next != [N, N] {
        assert!(Instant::now() < deadline, "timed out: {next:?} of {N} each");
        match sub.recv_timeout(Duration::from_millis(50)) {
            Recv::Message(m) => {
                let (id, k) = check_payload(m.bytes()).expect("an untorn message");
                let i = (id - 1) as usize;
                assert_eq!(k, next[i], "source {id} out of order");
                next[i] += 1;
            }
            Recv::Lapped { lost } => panic!("the imported bus lapped its subscriber by {lost}"),
            Recv::Empty | Recv::Closed => {}
        }
    }
    for e in exporters {
        e.stop();
    }
    let imp = importer.stop();
    assert_eq!(
        (imp["sources"].as_u64(), imp["restarts"].as_u64()),
        (Some(2), Some(0)),
        "{imp}"
    );
    assert_eq!(imp["received"], 2 * N, "{imp}");
    assert_eq!(imp["lost"], 0, "{imp}");
}

#[test]
fn a_best_effort_dropping_export_still_accounts_for_every_message() {
    const N: u64 = 20_000;
    let a = TestBus::new("bridge-drop-a");
    let b = TestBus::new("bridge-drop-b");
    let src = BusBuilder::new(a.name())
        .slots(1 << 15)
        .capacity(64)
        .create()
        .unwrap();
    let mut p = src.publisher().unwrap();
    let ep = endpoint(free_port());
    let mut importer = Bridge::start(&["import", b.name(), "--key", &key(&a), "--listen", &ep]);
    let exporter = Bridge::start(&[
        "export",
        a.name(),
        "--connect",
        &ep,
        "--from",
        "oldest",
        "--best-effort",
        "--congestion",
        "drop",
    ]);
    await_route(&mut importer);
    let mut sub = Bus::open(b.name()).unwrap().subscribe(Start::Oldest);
    for k in 0..N {
        publish(&mut p, k, 64);
    }
    // The exporter's repeated hello carries its next sequence, so even a lost tail is counted.
    importer.await_stats("every message accounted", |b| b.stat("published") == N);
    let imp = importer.stop();
    exporter.stop();
    let mut seen = Seen::default();
    let received = imp["received"].as_u64().unwrap();
    let lost = imp["lost"].as_u64().unwrap();
    assert_eq!(received + lost, N, "{imp}");
    assert_eq!(imp["lost"], imp["lost_in_transit"], "{imp}");
    // The importer publishes the losses it learns of into the bus, where they reach the
    // subscriber as laps: a lost tail, which only the exporter's next hello reveals, comes after
    // the last message. The subscriber's received + lost balances against the source's
    // sequence, as the importer's does (docs/design.md §16).
    seen.collect(&mut sub, |s| s.counters.len() as u64 + s.lapped == N);
    // What else the bus held, described, so that a failure says what it was.
    let rest = match sub.try_recv() {
        Recv::Empty | Recv::Closed => None,
        Recv::Message(m) => Some(format!("a message {:?}", check_payload(m.bytes()))),
        Recv::Lapped { lost } => Some(format!("a lap of {lost}")),
    };
    assert_eq!(
        rest,
        None,
        "after {} messages ({} torn) and {} lost, {imp}",
        seen.counters.len(),
        seen.torn,
        seen.lapped
    );
    assert_eq!(seen.torn, 0);
    seen.assert_strictly_increasing();
    assert_eq!(
        (seen.counters.len() as u64, seen.lapped),
        (received, lost),
        "{imp}"
    );
}

#[test]
fn exporting_a_missing_bus_or_another_kind_fails_with_a_clear_message() {
    let a = TestBus::new("bridge-missing");
    let (st, err) = run_to_end(&["export", a.name(), "--listen", &endpoint(free_port())]);
    assert!(!st.success());
    assert!(err.contains(a.name()) && err.contains("not found"), "{err}");
    assert!(!err.contains("panicked"), "{err}");
    // A segment of another kind under the name.
    let _queue = shmbus::QueueBuilder::new(a.name())
        .capacity(8)
        .item_size(16)
        .create()
        .unwrap();
    let (st, err) = run_to_end(&["export", a.name(), "--listen", &endpoint(free_port())]);
    assert!(!st.success());
    assert!(err.contains(a.name()) && err.contains("queue"), "{err}");
}

#[test]
fn bad_endpoints_and_config_files_fail_with_clear_messages() {
    let a = TestBus::new("bridge-badnet");
    let _bus = BusBuilder::new(a.name())
        .slots(8)
        .capacity(16)
        .create()
        .unwrap();
    let (st, err) = run_to_end(&["export", a.name(), "--connect", "nonsense"]);
    assert!(!st.success());
    assert!(err.contains("bad endpoint \"nonsense\""), "{err}");
    let dir = std::env::temp_dir().join(format!("bridge-config-{}", std::process::id()));
    std::fs::write(&dir, "{ this is: not [ json5").unwrap();
    let cfg = dir.to_str().unwrap();
    let (st, err) = run_to_end(&["export", a.name(), "--config", cfg]);
    let _ = std::fs::remove_file(&dir);
    assert!(!st.success());
    assert!(err.contains("zenoh config file"), "{err}");
    let (st, err) = run_to_end(&["export", a.name(), "--config", "/nonexistent/zenoh.json5"]);
    assert!(!st.success());
    assert!(err.contains("/nonexistent/zenoh.json5"), "{err}");
}

#[test]
fn importing_into_a_segment_of_another_kind_is_refused_before_any_network() {
    let q = TestBus::new("bridge-into-queue");
    let _queue = shmbus::Queue::builder(q.name()).create().unwrap();
    let (st, err) = run_to_end(&["import", q.name()]);
    assert!(!st.success());
    assert!(
        err.contains("is a queue segment: import publishes into a bus"),
        "{err}"
    );
}

#[test]
fn importing_a_bus_into_itself_is_refused() {
    let a = TestBus::new("bridge-self");
    let bus = BusBuilder::new(a.name())
        .slots(64)
        .capacity(16)
        .create()
        .unwrap();
    // Its producer published and left (a live one would keep the importer from attaching).
    bus.publisher().unwrap().publish_bytes(b"once").unwrap();
    let mut sub = bus.subscribe(Start::Oldest);
    let ep = endpoint(free_port());
    let _exporter = Bridge::start(&["export", a.name(), "--listen", &ep, "--from", "oldest"]);
    // The same name on the same host, on the exported key: the exporter's own bus.
    let mut importer = Bridge::start(&["import", a.name(), "--connect", &ep]);
    let st = importer.wait(LIMIT);
    assert_eq!(st.code(), Some(1), "the importer must stop with an error");
    assert!(matches!(sub.try_recv(), Recv::Message(m) if m.bytes() == b"once"));
    assert!(
        matches!(sub.try_recv(), Recv::Empty),
        "nothing was imported back into the exported bus"
    );
}

#[test]
fn importing_into_a_bus_of_another_shape_fails_with_a_clear_message() {
    let a = TestBus::new("bridge-shape-a");
    let b = TestBus::new("bridge-shape-b");
    let _src = BusBuilder::new(a.name())
        .slots(64)
        .capacity(128)
        .create()
        .unwrap();
    let _dst = BusBuilder::new(b.name())
        .slots(64)
        .capacity(16)
        .create()
        .unwrap();
    // Flags that disagree with the existing bus: refused before any network.
    let (st, err) = run_to_end(&["import", b.name(), "--slots", "8", "--size", "64"]);
    assert!(!st.success());
    assert!(
        err.contains("has 64 slots of 16 bytes, not the 8 slots of 64 bytes"),
        "{err}"
    );
    // A shape learned from the stream that the existing bus cannot carry.
    let ep = endpoint(free_port());
    let mut importer = Bridge::start(&["import", b.name(), "--key", &key(&a), "--listen", &ep]);
    let _exporter = Bridge::start(&["export", a.name(), "--connect", &ep]);
    let st = importer.wait(LIMIT);
    assert_eq!(st.code(), Some(1), "the importer must stop with an error");
}

#[test]
fn garbage_samples_on_the_key_are_counted_malformed_and_dropped() {
    use zenoh::Wait;
    let b = TestBus::new("bridge-garbage");
    let ep = endpoint(free_port());
    let key = format!("shmbus/{}", b.name());
    let importer = Bridge::start(&["import", b.name(), "--listen", &ep]);
    let mut config = zenoh::config::Config::default();
    config
        .insert_json5("connect/endpoints", &serde_json::json!([ep]).to_string())
        .unwrap();
    config
        .insert_json5("scouting/multicast/enabled", "false")
        .unwrap();
    let session = zenoh::open(config).wait().expect("test session");
    let publisher = session.declare_publisher(key).wait().unwrap();
    // Once the importer's subscription has reached this session, every put is delivered.
    let deadline = Instant::now() + LIMIT;
    while !publisher.matching_status().wait().unwrap().matching() {
        assert!(
            Instant::now() < deadline,
            "the importer's subscription never arrived"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    // Not a frame; a header cut short; a whole header whose instance id is 0.
    publisher.put(b"not a frame".to_vec()).wait().unwrap();
    publisher.put(b"SB\x01\x01".to_vec()).wait().unwrap();
    let mut hdr = vec![0u8; 70];
    hdr[..4].copy_from_slice(b"SB\x01\x01");
    publisher.put(hdr).wait().unwrap();
    let mut importer = importer;
    importer.await_stats("three malformed", |b| b.stat("malformed") >= 3);
    let imp = importer.stop();
    assert_eq!(imp["malformed"], 3, "{imp}");
    assert_eq!(imp["sources"], 0, "{imp}");
    assert_eq!(imp["received"], 0, "{imp}");
    assert!(!b.path().exists(), "no local bus is created from garbage");
}

#[test]
fn the_bench_runs_and_reports_both_paths() {
    let out = Command::new(BIN)
        .args(["bench", "--messages", "50", "--throughput", "2000"])
        .stdin(Stdio::null())
        .output()
        .expect("run the bench");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for row in [
        "raw zenoh pub/sub",
        "bus → bridge → bus",
        "raw zenoh puts",
        "bridge, batch 64",
    ] {
        assert!(text.contains(row), "no {row:?} row in:\n{text}");
    }
    assert_eq!(text.matches("(0 lost)").count(), 2, "{text}");
}
