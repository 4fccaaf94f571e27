//! `shmbus serve`, driven as a user would: the real binary on a free loopback port (it binds
//! port 0 and prints the address), real segments in /dev/shm, plain HTTP requests.

mod common;

use shmbus_testkit as support;

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::*;
use serde_json::Value;
use support::{await_cond, TestBus};

const LIMIT: Duration = Duration::from_secs(20);

/// A running `shmbus serve`, killed when the test ends.
struct Server {
    _child: KillOnDrop,
    /// The copy of the binary another user runs, if any (removed after the child is killed).
    _copy: Option<BinaryCopy>,
    /// `127.0.0.1:PORT`.
    addr: String,
}

impl Server {
    /// `shmbus serve --listen 127.0.0.1:0 --refresh-ms 50 ARGS`, once it prints its address.
    fn start(args: &[&str]) -> Server {
        Server::start_as(None, args)
    }

    /// `start`, run as user and group `uid` if given.
    fn start_as(uid: Option<u32>, args: &[&str]) -> Server {
        let copy = uid.map(|_| BinaryCopy::new());
        let mut cmd = Command::new(
            copy.as_ref()
                .map_or(env!("CARGO_BIN_EXE_shmbus").as_ref(), |c| c.path.as_path()),
        );
        if let Some(uid) = uid {
            use std::os::unix::process::CommandExt;
            cmd.uid(uid).gid(uid);
        }
        let mut child = cmd
            .args(["serve", "--listen", "127.0.0.1:0", "--refresh-ms", "50"])
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run shmbus serve");
        let mut first = String::new();
        BufReader::new(child.stdout.take().expect("piped stdout"))
            .read_line(&mut first)
            .expect("read the address line");
        let addr = first
            .trim()
            .strip_prefix("listening on http://")
            .and_then(|a| a.strip_suffix('/'))
            .unwrap_or_else(|| panic!("no address line: {first:?}"))
            .to_owned();
        Server {
            _child: KillOnDrop(child),
            _copy: copy,
            addr,
        }
    }

    /// `GET path`: the status code and the body.
    fn get(&self, path: &str) -> (u16, String) {
        self.get_as(&self.addr, path)
    }

    /// `GET path` with `Host: host`.
    fn get_as(&self, host: &str, path: &str) -> (u16, String) {
        let mut s = TcpStream::connect(&self.addr).expect("connect to shmbus serve");
        s.set_read_timeout(Some(LIMIT)).unwrap();
        write!(
            s,
            "GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"
        )
        .unwrap();
        let mut raw = Vec::new();
        s.read_to_end(&mut raw).expect("read the response");
        let raw = String::from_utf8(raw).expect("a UTF-8 response");
        let (head, body) = raw.split_once("\r\n\r\n").expect("a header and a body");
        let status = head
            .split_whitespace()
            .nth(1)
            .and_then(|c| c.parse().ok())
            .unwrap_or_else(|| panic!("no status in {head:?}"));
        // Small bodies come whole, not chunked; a chunked one is joined here.
        let body = if head
            .to_ascii_lowercase()
            .contains("transfer-encoding: chunked")
        {
            unchunk(body)
        } else {
            body.to_owned()
        };
        (status, body)
    }

    fn json(&self, path: &str) -> Value {
        let (status, body) = self.get(path);
        assert_eq!(status, 200, "GET {path}: {body}");
        serde_json::from_str(&body).unwrap_or_else(|e| panic!("GET {path}: {e}: {body}"))
    }

    fn metrics(&self) -> Exposition {
        let (status, body) = self.get("/metrics");
        assert_eq!(status, 200, "{body}");
        Exposition::parse(&body)
    }
}

fn unchunk(mut body: &str) -> String {
    let mut out = String::new();
    loop {
        let (size, rest) = body.split_once("\r\n").expect("a chunk size line");
        let n = usize::from_str_radix(size.trim(), 16).expect("a hex chunk size");
        if n == 0 {
            return out;
        }
        out.push_str(&rest[..n]);
        body = &rest[n + 2..];
    }
}

/// `/metrics` parsed as strictly as Prometheus's text format asks: every family has one HELP
/// and one TYPE line before its samples, its samples stand together, counters end in `_total`,
/// label values are quoted and escaped, and a series appears once.
struct Exposition {
    /// `family{labels}` (labels as written) -> value.
    samples: HashMap<String, f64>,
    /// family -> "counter" or "gauge".
    types: HashMap<String, String>,
}

impl Exposition {
    fn parse(text: &str) -> Exposition {
        let mut types = HashMap::new();
        let mut helps = HashMap::new();
        let mut samples = HashMap::new();
        let mut done: Vec<String> = Vec::new();
        let mut current: Option<String> = None;
        for line in text.lines() {
            if let Some(rest) = line.strip_prefix("# HELP ") {
                let (name, help) = rest.split_once(' ').expect("HELP name text");
                assert!(!help.is_empty(), "empty HELP for {name}");
                assert!(
                    helps.insert(name.to_owned(), help.to_owned()).is_none(),
                    "two HELP lines for {name}"
                );
                if let Some(c) = current.replace(name.to_owned()) {
                    done.push(c);
                }
                assert!(!done.contains(&name.to_owned()), "{name} split in two");
                continue;
            }
            if let Some(rest) = line.strip_prefix("# TYPE ") {
                let (name, ty) = rest.split_once(' ').expect("TYPE name type");
                assert_eq!(
                    current.as_deref(),
                    Some(name),
                    "TYPE {name} not after its HELP"
                );
                assert!(matches!(ty, "counter" | "gauge"), "type {ty} of {name}");
                assert_eq!(
                    ty == "counter",
                    name.ends_with("_total"),
                    "{name}: a counter's name, and only a counter's, ends in _total"
                );
                assert!(types.insert(name.to_owned(), ty.to_owned()).is_none());
                continue;
            }
            assert!(!line.starts_with('#'), "unexpected comment {line:?}");
            let (series, value) = line.rsplit_once(' ').expect("series value");
            let name = series.split('{').next().unwrap();
            assert_eq!(
                current.as_deref(),
                Some(name),
                "sample {line:?} outside its family"
            );
            assert!(types.contains_key(name), "sample of {name} before its TYPE");
            assert!(
                name.chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':'),
                "metric name {name:?}"
            );
            if let Some(labels) = series.strip_prefix(name) {
                check_labels(labels);
            }
            let v: f64 = value
                .parse()
                .unwrap_or_else(|e| panic!("value of {line:?}: {e}"));
            assert!(
                samples.insert(series.to_owned(), v).is_none(),
                "series {series} twice"
            );
        }
        Exposition { samples, types }
    }

    /// The value of `family{name="NAME",kind="KIND"[,extra]}`.
    fn of(&self, family: &str, name: &str, kind: &str, extra: &str) -> Option<f64> {
        let series = format!("{family}{{name=\"{name}\",kind=\"{kind}\"{extra}}}");
        self.samples.get(&series).copied()
    }
}

/// `{k="v",...}` or nothing, with the text format's quoting and escapes.
fn check_labels(labels: &str) {
    if labels.is_empty() {
        return;
    }
    let inner = labels
        .strip_prefix('{')
        .and_then(|l| l.strip_suffix('}'))
        .unwrap_or_else(|| panic!("labels {labels:?}"));
    let mut chars = inner.chars().peekable();
    while chars.peek().is_some() {
        let key: String = chars.by_ref().take_while(|c| *c != '=').collect();
        assert!(
            !key.is_empty() && key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'),
            "label name {key:?} in {labels}"
        );
        assert_eq!(chars.next(), Some('"'), "unquoted value in {labels}");
        loop {
            match chars.next() {
                Some('\\') => assert!(
                    matches!(chars.next(), Some('\\' | '"' | 'n')),
                    "bad escape in {labels}"
                ),
                Some('"') => break,
                Some('\n') | None => panic!("unterminated value in {labels}"),
                Some(_) => {}
            }
        }
        match chars.next() {
            Some(',') | None => {}
            Some(c) => panic!("{c:?} after a value in {labels}"),
        }
    }
}

/// `list --json`'s entry without what is sampled (and so differs between two samplings).
fn unsampled(mut v: Value) -> Value {
    for kind in ["bus", "records"] {
        if let Some(o) = v[kind].as_object_mut() {
            o.remove("last_publish");
            o.remove("producer_stamp_ns_ago");
        }
    }
    v
}

#[test]
fn metrics_and_json_give_what_each_kind_counts() {
    let (b, q, bd, r) = (
        TestBus::new("srv-all"),
        TestBus::new("srv-all"),
        TestBus::new("srv-all"),
        TestBus::new("srv-all"),
    );
    let prefix = format!("test-srv-all-{}-", std::process::id());
    ok_with("create", b.name(), "--slots 16 --size 64");
    ok_with("create", q.name(), "--kind queue --slots 8 --size 16");
    ok_with(
        "create",
        bd.name(),
        "--kind board --keys hip,knee,ankle --size 8",
    );
    ok_with("create", r.name(), "--kind records --bytes 4096");
    // 20 messages on a ring of 16: the count is the publish count, not what the ring holds.
    ok_with("publish", b.name(), "m --repeat 20");
    ok(&["push", q.name(), "a", "b", "c"]);
    ok(&["pop", q.name()]);
    ok(&["set", bd.name(), "hip", "one"]);
    ok(&["set", bd.name(), "hip", "two"]);
    ok(&["set", bd.name(), "ankle", "x"]);
    ok(&["publish", r.name(), "rec1", "rec22", "rec333"]);

    let s = Server::start(&["--prefix", &prefix]);
    let m = s.metrics();
    let v = |family: &str, seg: &TestBus, kind: &str| {
        m.of(family, seg.name(), kind, "")
            .unwrap_or_else(|| panic!("no {family} for {}", seg.name()))
    };
    assert_eq!(v("shmbus_bus_published_total", &b, "bus"), 20.0);
    assert_eq!(v("shmbus_bus_cursor", &b, "bus"), 20.0);
    assert_eq!(v("shmbus_bus_slots", &b, "bus"), 16.0);
    assert_eq!(v("shmbus_queue_sent_total", &q, "queue"), 3.0);
    assert_eq!(v("shmbus_queue_received_total", &q, "queue"), 1.0);
    assert_eq!(v("shmbus_queue_depth", &q, "queue"), 2.0);
    assert_eq!(v("shmbus_queue_capacity", &q, "queue"), 8.0);
    assert_eq!(v("shmbus_queue_lost_total", &q, "queue"), 0.0);
    assert_eq!(v("shmbus_board_cells", &bd, "board"), 3.0);
    assert_eq!(v("shmbus_board_cells_written", &bd, "board"), 2.0);
    assert_eq!(v("shmbus_board_updates_total", &bd, "board"), 3.0);
    assert_eq!(v("shmbus_records_published_total", &r, "records"), 3.0);
    assert_eq!(
        v("shmbus_records_published_bytes_total", &r, "records"),
        15.0
    );
    assert_eq!(v("shmbus_records_ring_bytes", &r, "records"), 4096.0);
    // Three records of 4 to 6 bytes, each a 16-byte header and one word of payload.
    assert_eq!(v("shmbus_records_ring_used_bytes", &r, "records"), 72.0);
    for (seg, kind) in [(&b, "bus"), (&q, "queue"), (&bd, "board"), (&r, "records")] {
        assert_eq!(v("shmbus_segment_readable", seg, kind), 1.0);
        // Made by `shmbus create`, which has exited, and nothing attached: stale.
        assert_eq!(v("shmbus_stale", seg, kind), 1.0);
        assert_eq!(v("shmbus_creator_alive", seg, kind), 0.0);
    }
    assert_eq!(
        m.of(
            "shmbus_participants_alive",
            q.name(),
            "queue",
            ",role=\"receiver\""
        ),
        Some(0.0)
    );
    assert_eq!(m.samples["shmbus_segments{kind=\"bus\"}"], 1.0);
    assert_eq!(m.samples["shmbus_segments{kind=\"error\"}"], 0.0);
    assert_eq!(m.samples["shmbus_scrape_success"], 1.0);
    assert!(m.samples["shmbus_scrape_duration_seconds"] > 0.0);
    assert_eq!(m.types["shmbus_queue_depth"], "gauge");
    assert_eq!(m.types["shmbus_bus_published_total"], "counter");

    // /api/segments is `list --json`, entry for entry (less what each samples on its own).
    let served = s.json("/api/segments");
    let listed: Value =
        serde_json::from_str(&ok(&["list", "--json", "--prefix", &prefix])).unwrap();
    let strip = |v: &Value| -> Vec<Value> {
        v.as_array()
            .expect("an array")
            .iter()
            .cloned()
            .map(unsampled)
            .collect()
    };
    assert_eq!(strip(&served), strip(&listed));
    assert_eq!(served.as_array().unwrap().len(), 4);

    // /api/segments/NAME is `info NAME --json`.
    let queue = s.json(&format!("/api/segments/{}", q.name()));
    let info: Value = serde_json::from_str(&ok(&["info", q.name(), "--json"])).unwrap();
    assert_eq!(queue, info);
    assert_eq!(queue["summary"]["len"], 2);
    let bus = s.json(&format!("/api/segments/{}", b.name()));
    assert_eq!(bus["kind"], "bus");
    assert_eq!(bus["summary"]["published"], 20);
    assert_eq!(bus["header"]["slot_count"], 16);
    let records = s.json(&format!("/api/segments/{}", r.name()));
    assert_eq!(records["records_published"], 3);
}

#[test]
fn a_board_s_values_are_served_only_with_show_payloads() {
    let bd = TestBus::new("srv-pay");
    let prefix = format!("test-srv-pay-{}-", std::process::id());
    ok_with("create", bd.name(), "--kind board --keys a,b --size 8");
    ok(&["set", bd.name(), "a", "secret"]);
    let path = format!("/api/segments/{}", bd.name());

    let hidden = Server::start(&["--prefix", &prefix]).json(&path);
    let cell = &hidden["cells"][0];
    assert_eq!(
        (cell["version"].as_u64(), cell["len"].as_u64()),
        (Some(1), Some(6))
    );
    assert!(
        cell["value"].is_null() && cell["value_hex"].is_null(),
        "{cell}"
    );
    assert!(!hidden.to_string().contains("secret"), "{hidden}");

    let shown = Server::start(&["--prefix", &prefix, "--show-payloads"]).json(&path);
    assert_eq!(shown["cells"][0]["value"], "secret");
    assert_eq!(shown["cells"][0]["value_hex"], "736563726574");
    // The command line shows them: the user who runs it reads the segment anyway.
    let info: Value = serde_json::from_str(&ok(&["info", bd.name(), "--json"])).unwrap();
    assert_eq!(info["cells"][0]["value"], "secret");
}

#[test]
fn a_live_producer_its_rate_and_a_removed_segment_are_seen_at_the_next_scan() {
    let b = TestBus::new("srv-live");
    let prefix = format!("test-srv-live-{}-", std::process::id());
    ok_with("create", b.name(), "--slots 64 --size 16");
    let s = Server::start(&["--prefix", &prefix]);
    let publisher = Command::new(env!("CARGO_BIN_EXE_shmbus"))
        .args([
            "publish",
            b.name(),
            "tick",
            "--repeat",
            "1000000",
            "--rate",
            "200",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("run shmbus publish");
    let publisher = KillOnDrop(publisher);
    let producer = ",role=\"producer\"";
    await_cond(LIMIT, "the producer to show", || {
        s.metrics()
            .of("shmbus_participants_alive", b.name(), "bus", producer)
            == Some(1.0)
    });
    let published = || {
        s.metrics()
            .of("shmbus_bus_published_total", b.name(), "bus", "")
            .expect("the bus's count")
    };
    let first = published();
    await_cond(LIMIT, "the count to go up between scrapes", || {
        published() > first
    });
    await_cond(LIMIT, "a rate in /api/segments", || {
        let list = s.json("/api/segments");
        list[0]["bus"]["last_publish"]["per_s"]
            .as_f64()
            .is_some_and(|r| r > 0.0)
    });
    let entry = &s.json("/api/segments")[0];
    assert_eq!(entry["bus"]["stale"], false);
    assert_eq!(entry["bus"]["producers"], 1);
    // One second of `hz`: the rates, and what a reader that reads every message lost.
    let hz = s.json(&format!("/api/segments/{}/hz", b.name()));
    assert_eq!(hz["kind"], "bus");
    assert!(hz["messages"].as_u64().is_some_and(|n| n > 0), "{hz}");
    // What arrives after the last drain of the window is neither read nor lost yet.
    let (received, lost) = (
        hz["received"].as_u64().unwrap(),
        hz["lost"].as_u64().unwrap(),
    );
    assert!(received > 0, "{hz}");
    assert!(received + lost <= hz["messages"].as_u64().unwrap(), "{hz}");
    assert_eq!(hz["producers"], 1);
    drop(publisher);

    ok(&["rm", b.name()]);
    await_cond(LIMIT, "the removed bus to leave the listing", || {
        s.json("/api/segments")
            .as_array()
            .is_some_and(Vec::is_empty)
    });
    let m = s.metrics();
    assert_eq!(m.of("shmbus_segment_readable", b.name(), "bus", ""), None);
    assert_eq!(m.samples["shmbus_segments{kind=\"bus\"}"], 0.0);
    let (status, body) = s.get(&format!("/api/segments/{}", b.name()));
    assert_eq!(status, 404, "{body}");
    assert!(body.contains("not found"), "{body}");
}

#[test]
fn corrupt_foreign_fifo_and_symlink_files_are_rows_with_their_error() {
    let (junk, fifo, link, good) = (
        TestBus::new("srv-bad"),
        TestBus::new("srv-bad"),
        TestBus::new("srv-bad"),
        TestBus::new("srv-bad"),
    );
    let prefix = format!("test-srv-bad-{}-", std::process::id());
    std::fs::write(junk.path(), b"not a segment at all").unwrap();
    nix::unistd::mkfifo(
        &fifo.path(),
        nix::sys::stat::Mode::from_bits_truncate(0o600),
    )
    .expect("mkfifo");
    std::os::unix::fs::symlink("/etc/hostname", link.path()).unwrap();
    ok_with("create", good.name(), "--kind queue --slots 4 --size 8");

    let s = Server::start(&["--prefix", &prefix]);
    let list = s.json("/api/segments");
    let entry = |t: &TestBus| {
        list.as_array()
            .unwrap()
            .iter()
            .find(|e| e["name"] == t.name())
            .unwrap_or_else(|| panic!("{} is not listed: {list}", t.name()))
            .clone()
    };
    for (t, why) in [
        (&junk, "not a shmbus segment"),
        (&fifo, "FIFO"),
        (&link, "symbolic link"),
    ] {
        let e = entry(t);
        assert_eq!(e["kind"], "error", "{e}");
        assert!(e["error"].as_str().unwrap().contains(why), "{e}");
        // Its report is the check-by-check one, which says where it fails.
        let (status, body) = s.get(&format!("/api/segments/{}", t.name()));
        assert_eq!(status, 200, "{body}");
        let report: Value = serde_json::from_str(&body).unwrap();
        assert!(
            report["checks"]
                .as_array()
                .unwrap()
                .iter()
                .any(|c| c["status"] == "FAIL"),
            "{report}"
        );
    }
    assert_eq!(entry(&good)["kind"], "queue");
    let (status, body) = s.get(&format!("/api/segments/{}/hz", good.name()));
    assert_eq!(status, 422, "{body}");
    assert!(
        body.contains("hz reads buses and records segments"),
        "{body}"
    );
    let m = s.metrics();
    assert_eq!(m.samples["shmbus_segments{kind=\"error\"}"], 3.0);
    assert_eq!(
        m.of("shmbus_segment_readable", junk.name(), "error", ""),
        Some(0.0)
    );
    assert_eq!(
        m.of("shmbus_queue_depth", good.name(), "queue", ""),
        Some(0.0)
    );
    // The server is still there, and a bad name is the client's error.
    let (status, body) = s.get("/api/segments/bad%20name");
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("invalid segment name"), "{body}");
    assert_eq!(s.get("/").0, 200);
}

#[test]
fn a_segment_the_server_may_not_read_is_a_row_with_its_error() {
    use std::os::unix::fs::PermissionsExt;
    let (q, other) = (TestBus::new("srv-perm"), TestBus::new("srv-perm"));
    let prefix = format!("test-srv-perm-{}-", std::process::id());
    ok_with(
        "create",
        q.name(),
        "--kind queue --slots 4 --size 8 --mode 0600",
    );
    ok_with("create", other.name(), "--kind board --cells 2 --mode 0644");
    // Root reads any file: then the server runs as nobody, for whom 0600 of root's is closed.
    let root = nix::unistd::geteuid().is_root();
    if !root {
        std::fs::set_permissions(q.path(), std::fs::Permissions::from_mode(0o000)).unwrap();
    }
    let s = Server::start_as(root.then_some(65534), &["--prefix", &prefix]);
    let list = s.json("/api/segments");
    let find = |t: &TestBus| {
        list.as_array()
            .unwrap()
            .iter()
            .find(|e| e["name"] == t.name())
            .unwrap_or_else(|| panic!("{} is not listed: {list}", t.name()))
            .clone()
    };
    let denied = find(&q);
    assert_eq!(denied["kind"], "error", "{denied}");
    assert!(
        denied["error"]
            .as_str()
            .unwrap()
            .to_lowercase()
            .contains("permission denied"),
        "{denied}"
    );
    // A readable one beside it is read as usual: the error is the file's, not the scan's.
    assert_eq!(find(&other)["kind"], "board");
    let m = s.metrics();
    assert_eq!(
        m.of("shmbus_segment_readable", q.name(), "error", ""),
        Some(0.0)
    );
    assert_eq!(m.samples["shmbus_scrape_success"], 1.0);
}

#[test]
fn segments_made_and_removed_during_scans_never_break_an_answer() {
    use std::sync::atomic::{AtomicBool, Ordering};
    let prefix = format!("test-srv-churn-{}-", std::process::id());
    let s = Server::start(&["--prefix", &prefix]);
    let stop = AtomicBool::new(false);
    std::thread::scope(|scope| {
        scope.spawn(|| {
            // Segments appear and vanish as fast as the library makes and removes them,
            // so that some go between the listing of /dev/shm and their opening.
            let mut made = 0u32;
            while !stop.load(Ordering::Relaxed) {
                let t = TestBus::new("srv-churn");
                let made_one = shmbus::QueueBuilder::new(t.name())
                    .capacity(4)
                    .item_size(8)
                    .create()
                    .is_ok();
                assert!(made_one, "could not create {}", t.name());
                made += 1;
                drop(t);
            }
            assert!(made > 0);
        });
        // Until 15 scans were answered (told apart by their durations, which vary in ns).
        let mut scans = Vec::new();
        let deadline = std::time::Instant::now() + LIMIT;
        while scans.len() < 15 {
            assert!(
                std::time::Instant::now() < deadline,
                "only {} scans",
                scans.len()
            );
            let m = s.metrics();
            assert_eq!(m.samples["shmbus_scrape_success"], 1.0);
            let took = m.samples["shmbus_scrape_duration_seconds"];
            if !scans.contains(&took) {
                scans.push(took);
            }
            let list = s.json("/api/segments");
            for e in list.as_array().unwrap() {
                // A segment that went mid-scan is either absent or a row with its error.
                assert!(
                    e["kind"] == "queue" || e["error"].is_string(),
                    "a row with no kind and no error: {e}"
                );
            }
        }
        stop.store(true, Ordering::Relaxed);
    });
}

#[test]
fn the_page_and_its_script_are_served_by_the_binary() {
    let s = Server::start(&["--prefix", "test-srv-page-none-"]);
    let (status, page) = s.get("/");
    assert_eq!(status, 200);
    assert_contains_all(
        "the page",
        &page,
        ["<table id=\"segments\"", "/dashboard.js", "/dashboard.css"],
    );
    assert!(
        !page.contains("https://"),
        "the page loads nothing from elsewhere"
    );
    let (status, js) = s.get("/dashboard.js");
    assert_eq!(status, 200);
    assert!(js.contains("/api/segments"), "{js}");
    assert!(
        !js.contains("innerHTML"),
        "strings from segments are set as text"
    );
    assert_eq!(s.get("/dashboard.css").0, 200);
    assert_eq!(s.get("/no-such-page").0, 404);
    // A page elsewhere whose name resolves to 127.0.0.1 (DNS rebinding) reads nothing.
    let (status, body) = s.get_as("evil.example:9464", "/api/segments");
    assert_eq!(status, 403, "{body}");
    assert!(body.contains("not a loopback name"), "{body}");
    assert_eq!(s.get_as("localhost:9464", "/api/segments").0, 200);
    // No segment with that prefix: an empty array, not an error.
    assert_eq!(s.json("/api/segments"), Value::Array(Vec::new()));
}

#[test]
fn a_non_loopback_address_is_refused_without_allow_remote() {
    let o = shmbus(&["serve", "--listen", "0.0.0.0:0"]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let err = stderr(&o);
    assert!(
        err.starts_with("shmbus: error: refusing to listen on 0.0.0.0:0"),
        "{err}"
    );
    assert!(err.contains("--allow-remote"), "{err}");
    assert!(stdout(&o).is_empty(), "nothing listened: {}", stdout(&o));

    // With --allow-remote it listens, after a warning that says what anyone can read.
    let mut child = Command::new(env!("CARGO_BIN_EXE_shmbus"))
        .args(["serve", "--listen", "0.0.0.0:0", "--allow-remote"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run shmbus serve");
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let mut warning = String::new();
    BufReader::new(child.stderr.take().unwrap())
        .read_line(&mut warning)
        .unwrap();
    let _child = KillOnDrop(child);
    assert!(line.starts_with("listening on http://0.0.0.0:"), "{line}");
    assert!(
        warning.starts_with("shmbus: warning: listening on 0.0.0.0:0"),
        "{warning}"
    );
    assert!(warning.contains("no payloads"), "{warning}");

    let o = shmbus(&["serve", "--listen", "localhost:9464"]);
    assert_eq!(o.status.code(), Some(2), "a host name is a usage error");
}

#[test]
fn serve_help_explains_every_option() {
    let help = ok(&["serve", "--help"]);
    assert_contains_all(
        "serve --help",
        &help,
        [
            "--listen",
            "--allow-remote",
            "--show-payloads",
            "--prefix",
            "--all",
            "--refresh-ms",
            "/metrics",
            "/api/segments/NAME",
        ],
    );
}
