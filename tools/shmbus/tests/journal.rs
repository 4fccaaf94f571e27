//! `shmbus record`, `replay`, and `tail`/`info` of journal files, driven as a user would.

mod common;

use shmbus_testkit as support;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::*;
use serde_json::Value;
use shmbus::journal::{Entry, Journal, JournalShape};
use support::{check_payload, make_payload, TestBus};

fn json(s: &str) -> Value {
    serde_json::from_str(s.trim()).unwrap_or_else(|e| panic!("bad JSON {s:?}: {e}"))
}

/// The shape of an untyped single-producer bus of 64 slots of `capacity` bytes.
fn raw_shape(capacity: u64) -> JournalShape {
    JournalShape {
        slots: 64,
        capacity,
        mode: shmbus::ProducerMode::Single,
        message_type: shmbus::TypeInfo::raw(),
    }
}

/// A directory in /dev/shm removed when the test ends.
struct Dir(PathBuf);

impl Dir {
    fn new(tag: &str) -> Self {
        let d = PathBuf::from(format!("/dev/shm/journal-cli-{tag}-{}", std::process::id()));
        std::fs::create_dir_all(&d).unwrap();
        Dir(d)
    }

    fn file(&self, name: &str) -> String {
        self.0.join(name).display().to_string()
    }
}

impl Drop for Dir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn payloads(path: &str) -> Vec<Vec<u8>> {
    let mut j = Journal::open(path).unwrap();
    j.entries()
        .map(|e| match e.expect("entry reads") {
            Entry::Message { bytes, .. } => bytes,
            Entry::Lost { first, count } => panic!("unexpected loss of {count} from {first}"),
        })
        .collect()
}

#[test]
fn record_replay_record_round_trip_keeps_every_payload_in_order() {
    const N: u64 = 700;
    let dir = Dir::new("round");
    let (a, b) = (TestBus::new("jrn-a"), TestBus::new("jrn-b"));
    let bus = shmbus::BusBuilder::new(a.name())
        .slots(1024)
        .capacity(120)
        .multi_producer()
        .create()
        .unwrap();
    let mut tx = bus.publisher().unwrap();
    for k in 0..N {
        let mut m = vec![0; support::payload_len(7, k, 120)];
        make_payload(&mut m, 7, k);
        tx.publish_bytes(&m).unwrap();
    }
    let (f1, f2) = (dir.file("one.journal"), dir.file("two.journal"));
    let n = N.to_string();
    let rec = json(&ok(&[
        "record",
        a.name(),
        &f1,
        "--from",
        "oldest",
        "-n",
        &n,
        "--json",
    ]));
    assert_eq!(
        (rec["messages"].as_u64(), rec["lost"].as_u64()),
        (Some(N), Some(0))
    );

    let rep = json(&ok(&["replay", &f1, b.name(), "--rate", "max", "--json"]));
    assert_eq!(rep["created"], true, "{rep}");
    assert_eq!(rep["published"].as_u64(), Some(N));
    let replayed = shmbus::Bus::open_read_only(b.name()).unwrap();
    assert_eq!(
        JournalShape::of(&replayed),
        JournalShape::of(&bus),
        "recorded shape"
    );

    ok(&["record", b.name(), &f2, "--from", "oldest", "-n", &n]);
    let (one, two) = (payloads(&f1), payloads(&f2));
    assert_eq!(one.len() as u64, N);
    for (k, p) in one.iter().enumerate() {
        assert_eq!(
            check_payload(p),
            Some((7, k as u64)),
            "message {k} intact, in order"
        );
    }
    assert_eq!(
        one, two,
        "the second recording holds the same payloads in the same order"
    );

    let info = json(&ok(&["info", &f2, "--json"]));
    assert_eq!(info["messages"].as_u64(), Some(N));
    assert_eq!(info["recorder"], "finished");
    assert_eq!(info["torn_tail_bytes"].as_u64(), Some(0));
    assert_eq!(info["slots"].as_u64(), Some(1024));
    assert_eq!(info["producer_mode"], "multi");
}

/// A journal of `n` messages "m0".. received `gap_ns` apart, from sequence 10 on, with a loss of
/// three sequence numbers (12..=14) after the second.
fn small_journal(path: &str, n: u64, gap_ns: u64) {
    let shape = raw_shape(32);
    let mut w = Journal::create(path, &shape).unwrap();
    for k in 0..n {
        let seq = if k < 2 { 10 + k } else { 13 + k };
        w.append_message(seq, 1_000_000_000 + k * gap_ns, format!("m{k}").as_bytes())
            .unwrap();
        if k == 1 {
            w.append_loss(12, 3).unwrap();
        }
    }
    w.finish().unwrap();
}

#[test]
fn tail_of_a_file_prints_entries_and_losses_like_tail_of_a_bus() {
    let dir = Dir::new("tail");
    let f = dir.file("t.journal");
    small_journal(&f, 5, 1000);
    assert_eq!(
        ok(&["tail", &f, "--from", "oldest", "-n", "3"]),
        "10\t2\tm0\n11\t2\tm1\nlost 3 messages (seq 12..14)\n15\t2\tm2\n"
    );
    assert_eq!(ok(&["tail", &f, "-n", "2"]), "16\t2\tm3\n17\t2\tm4\n");
    // As with a bus, the last n messages start with a message: the gap before it is not shown.
    assert_eq!(
        ok(&["tail", &f, "-n", "3"]),
        "15\t2\tm2\n16\t2\tm3\n17\t2\tm4\n"
    );
    assert_eq!(
        ok(&["tail", &f, "-n", "4"]),
        "11\t2\tm1\nlost 3 messages (seq 12..14)\n15\t2\tm2\n16\t2\tm3\n17\t2\tm4\n"
    );
    assert_eq!(ok(&["tail", &f, "--from", "16"]), "16\t2\tm3\n17\t2\tm4\n");
    assert_eq!(
        ok(&["tail", &f, "--from", "14", "-n", "1"]),
        "lost 3 messages (seq 12..14)\n15\t2\tm2\n"
    );
    let lines: Vec<Value> = ok(&["tail", &f, "--json", "--from", "oldest"])
        .lines()
        .map(json)
        .collect();
    assert_eq!(lines.len(), 6);
    assert_eq!(lines[2]["lost"].as_u64(), Some(3));
    assert_eq!(lines[0]["text"], "m0");
    assert_eq!(
        ok(&["tail", &f, "--format", "hex", "-n", "1"]),
        "17\t2\t6d34\n"
    );
}

#[test]
fn an_existing_file_name_is_a_journal_and_anything_else_a_bus() {
    let dir = Dir::new("rule");
    small_journal(&dir.file("plain"), 2, 1);
    let o = shmbus_in(&dir.0, &["info", "plain", "--json"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(
        json(&String::from_utf8(o.stdout).unwrap())["messages"].as_u64(),
        Some(2)
    );
    let o = shmbus_in(&dir.0, &["info", "no-such-bus-or-file-4711"]);
    let all = format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(!o.status.success());
    assert!(all.contains("not found"), "read as a bus name: {all}");
    // Written as a path, a missing file is a missing file, not a bad bus name.
    let o = shmbus_in(&dir.0, &["info", "./missing.journal"]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("./missing.journal: open failed: No such file"),
        "{err}"
    );
    let o = shmbus_in(&dir.0, &["tail", "no-such-dir/x"]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("invalid segment name"), "{err}");
}

#[test]
fn tail_follow_of_a_file_prints_entries_as_the_recorder_commits_them() {
    let dir = Dir::new("follow");
    let f = dir.file("live.journal");
    let shape = raw_shape(32);
    let mut w = Journal::create_with_chunk(&f, &shape, 4096).unwrap();
    w.append_message(0, 0, b"before").unwrap();
    let mut child = KillOnDrop(
        Command::new(env!("CARGO_BIN_EXE_shmbus"))
            .args(["tail", &f, "--follow", "--from", "oldest"])
            .stdout(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let out = child.0.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(out).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let deadline = Instant::now() + Duration::from_secs(30);
    let next = || {
        rx.recv_timeout(deadline.saturating_duration_since(Instant::now()))
            .expect("a line from tail --follow before the deadline")
    };
    assert_eq!(next(), "0\t6\tbefore");
    // Enough entries to grow the file past its first chunk while tail follows it.
    for k in 1..300u64 {
        w.append_message(k, k, format!("live {k}").as_bytes())
            .unwrap();
    }
    w.append_loss(300, 2).unwrap();
    for k in 1..300u64 {
        assert_eq!(
            next(),
            format!("{k}\t{}\tlive {k}", format!("live {k}").len())
        );
    }
    assert_eq!(next(), "lost 2 messages (seq 300..301)");
}

#[test]
fn replay_at_the_original_rate_keeps_the_recorded_gaps() {
    let dir = Dir::new("pace");
    let f = dir.file("p.journal");
    // Five messages 50 ms apart: 200 ms from the first to the last.
    small_journal(&f, 5, 50_000_000);
    let b = TestBus::new("jrn-pace");
    let started = Instant::now();
    let rep = json(&ok(&["replay", &f, b.name(), "--json"]));
    // A lower bound only: replay waits for each message's due time, so it cannot be faster.
    assert!(
        started.elapsed() >= Duration::from_millis(200),
        "replay kept the recorded span"
    );
    assert_eq!(rep["published"].as_u64(), Some(5));
    assert_eq!(rep["recorded_lost"].as_u64(), Some(3));
    let mut sub = shmbus::Bus::open_read_only(b.name())
        .unwrap()
        .subscribe(shmbus::Start::Oldest);
    let got: Vec<Vec<u8>> = std::iter::from_fn(|| match sub.try_recv() {
        shmbus::Recv::Message(m) => Some(m.bytes().to_vec()),
        _ => None,
    })
    .collect();
    assert_eq!(
        got,
        ["m0", "m1", "m2", "m3", "m4"].map(|s| s.as_bytes().to_vec())
    );
    let skipped = json(&ok(&[
        "replay",
        &f,
        b.name(),
        "--rate",
        "max",
        "--from",
        "16",
        "--json",
    ]));
    assert_eq!(
        (skipped["published"].as_u64(), skipped["skipped"].as_u64()),
        (Some(2), Some(3))
    );
    assert_eq!(skipped["created"], false);
}

#[test]
fn damaged_or_foreign_files_give_one_clear_error_line() {
    let dir = Dir::new("bad");
    let f = dir.file("d.journal");
    small_journal(&f, 2, 1);
    let mut bytes = std::fs::read(&f).unwrap();
    bytes[4096 + 6] = 0x77; // the first entry's marker tag
    std::fs::write(&f, &bytes).unwrap();
    fails_with(&["info", &f], "corrupt journal at byte 4096");
    fails_with(&["tail", &f], "corrupt journal at byte 4096");
    let r = TestBus::new("jrn-bad");
    fails_with(&["replay", &f, r.name()], "corrupt journal at byte 4096");
    let g = dir.file("g");
    std::fs::write(&g, vec![b'x'; 5000]).unwrap();
    fails_with(&["info", &g], "not a shmbus journal");
    fails_with(&["info", &dir.file("missing")], "No such file");
    small_journal(&dir.file("taken"), 1, 1);
    let a = TestBus::new("jrn-taken");
    shmbus::BusBuilder::new(a.name()).create().unwrap();
    fails_with(
        &["record", a.name(), &dir.file("taken")],
        "already exists: record into a new file",
    );
    fails_with(&["record", "no-such-bus-4711", &dir.file("x")], "not found");
    fails_with(
        &["replay", &dir.file("taken"), "bad/name"],
        "invalid segment name",
    );
}

/// A bus holding `n` self-checking messages; returns it with its guard.
fn bus_with(tag: &str, n: u64) -> (TestBus, shmbus::Bus) {
    let t = TestBus::new(tag);
    let bus = shmbus::BusBuilder::new(t.name())
        .slots(256)
        .capacity(64)
        .create()
        .unwrap();
    let mut tx = bus.publisher().unwrap();
    for k in 0..n {
        let mut m = vec![0; support::payload_len(3, k, 64)];
        make_payload(&mut m, 3, k);
        tx.publish_bytes(&m).unwrap();
    }
    (t, bus)
}

#[test]
fn record_sync_flag_chooses_the_policy_and_defaults_to_interval() {
    let dir = Dir::new("sync");
    let (a, _bus) = bus_with("jrn-sync", 30);
    let rec = |file: &str, extra: &[&str]| {
        let f = dir.file(file);
        let mut args = vec![
            "record",
            a.name(),
            &f,
            "--from",
            "oldest",
            "-n",
            "30",
            "--json",
        ];
        args.extend_from_slice(extra);
        let out = json(&ok(&args));
        assert_eq!(out["messages"].as_u64(), Some(30), "{out}");
        assert_eq!(payloads(&f).len(), 30);
        out
    };
    let every = rec("every.journal", &["--sync", "every"]);
    assert_eq!(every["sync"], "every");
    assert_eq!(
        every["syncs"].as_u64(),
        Some(30),
        "one sync per entry: {every}"
    );
    let none = rec("none.journal", &["--sync", "none"]);
    assert_eq!(
        (none["sync"].as_str(), none["syncs"].as_u64()),
        (Some("none"), Some(0))
    );
    // A period that cannot pass while 30 messages are recorded: no sync before the end.
    let long = rec(
        "long.journal",
        &["--sync", "interval", "--sync-interval", "3600"],
    );
    assert_eq!(long["syncs"].as_u64(), Some(0), "{long}");
    // A zero period syncs with each entry, as every does.
    let zero = rec("zero.journal", &["--sync-interval", "0"]);
    assert_eq!(zero["sync"], "interval", "the default policy");
    assert_eq!(zero["syncs"].as_u64(), Some(30), "{zero}");

    let help = ok(&["record", "--help"]);
    assert!(
        help.contains("--sync <SYNC>") && help.contains("[default: interval]"),
        "{help}"
    );
    assert!(
        help.contains("--sync-interval") && help.contains("[default: 1]"),
        "{help}"
    );
    let bad = shmbus(&["record", a.name(), &dir.file("x"), "--sync", "always"]);
    let err = String::from_utf8_lossy(&bad.stderr);
    assert!(!bad.status.success());
    assert!(err.contains("none, interval, every"), "{err}");
    let bad = shmbus(&["record", a.name(), &dir.file("x"), "--sync-interval=-1"]);
    let err = String::from_utf8_lossy(&bad.stderr);
    assert!(
        !bad.status.success() && err.contains("seconds from 0"),
        "{err}"
    );
    assert!(
        !Path::new(&dir.file("x")).exists(),
        "refused before creating"
    );
}

#[test]
fn a_damaged_payload_stops_replay_tail_and_info_with_a_checksum_error() {
    let dir = Dir::new("crc");
    let f = dir.file("c.journal");
    small_journal(&f, 3, 1);
    // The second message's payload ("m1"): entries are 32 bytes and the payload in words.
    let mut bytes = std::fs::read(&f).unwrap();
    let at = 4096 + (32 + 8) + 32;
    assert_eq!(&bytes[at..at + 2], b"m1");
    bytes[at + 1] = b'7';
    std::fs::write(&f, &bytes).unwrap();
    let r = TestBus::new("jrn-crc");
    fails_with(
        &["replay", &f, r.name(), "--rate", "max"],
        "checksum mismatch",
    );
    let o = shmbus(&["replay", &f, r.name(), "--rate", "max"]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("1 message published before it"), "{err}");
    // The message before the damage was published (once by each run), the damaged one never.
    let bus = shmbus::Bus::open_read_only(r.name()).unwrap();
    let mut sub = bus.subscribe(shmbus::Start::Oldest);
    let mut got = Vec::new();
    while let shmbus::Recv::Message(m) = sub.try_recv() {
        got.push(m.bytes().to_vec());
    }
    assert_eq!(got, vec![b"m0".to_vec(), b"m0".to_vec()]);
    fails_with(
        &["tail", &f, "--from", "oldest"],
        "corrupt journal at byte 4136",
    );
    fails_with(&["info", &f], "checksum mismatch");
}

#[test]
fn replay_into_a_bus_whose_slots_are_too_small_refuses_before_publishing_anything() {
    let dir = Dir::new("small-slots");
    let f = dir.file("big.journal");
    let shape = raw_shape(64);
    let mut w = Journal::create(&f, &shape).unwrap();
    for (seq, len) in [(0u64, 8usize), (1, 8), (2, 40), (3, 8)] {
        w.append_message(seq, seq, &vec![b'x'; len]).unwrap();
    }
    w.finish().unwrap();
    let t = TestBus::new("jrn-small-slots");
    let bus = shmbus::BusBuilder::new(t.name())
        .capacity(16)
        .create()
        .unwrap();
    fails_with(&["replay", &f, t.name()], "message seq 2 of");
    assert_eq!(bus.header().cursor, 0, "nothing was published");
    // From past the long one, it fits.
    ok(&["replay", &f, t.name(), "--from", "3"]);
    assert_eq!(bus.header().cursor, 1);
}
