//! The inspector on records segments: create, publish, tail and info, as a user runs them.

use shmbus_testkit as support;

use std::process::{Command, Output};

use support::TestBus;

fn shmbus(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_shmbus"))
        .args(args)
        .output()
        .expect("run shmbus")
}

fn ok(args: &[&str]) -> String {
    let o = shmbus(args);
    assert!(
        o.status.success(),
        "shmbus {args:?} failed: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8(o.stdout).expect("UTF-8")
}

#[test]
fn records_segments_are_created_published_to_tailed_and_shown() {
    let name = TestBus::new("cli-records");
    let n = name.name();
    let out = ok(&["create", n, "--kind", "records", "--bytes", "8192"]);
    assert!(
        out.contains("8192-byte ring, records up to 2032 bytes"),
        "{out}"
    );
    let big = "x".repeat(2000);
    ok(&["publish", n, "first", &big, "last\u{1b}"]);
    let tail = ok(&["tail", n, "--from", "oldest"]);
    let lines: Vec<&str> = tail.lines().collect();
    assert_eq!(lines.len(), 3, "{tail}");
    assert_eq!(lines[0], "0\t5\tfirst");
    assert!(lines[1].starts_with("1\t2000\txxxx"));
    assert!(!lines[2].contains('\u{1b}'), "escape sequences are escaped");
    assert_eq!(ok(&["tail", n, "-n", "1"]).lines().count(), 1);
    let info = ok(&["info", n, "--json"]);
    let v: serde_json::Value = serde_json::from_str(info.trim()).expect("JSON");
    assert_eq!(v["ring_bytes"], 8192);
    assert_eq!(v["records_published"], 3);
    assert_eq!(v["bytes_published"], 2010);
    let o = shmbus(&["create", n, "--kind", "records", "--bytes", "1000"]);
    assert_eq!(o.status.code(), Some(1));
}

#[test]
fn hz_on_records_counts_records_and_the_bytes_the_segment_published() {
    let name = TestBus::new("cli-records-hz");
    let n = name.name();
    ok(&["create", n, "--kind", "records", "--bytes", "8192"]);
    let r = shmbus::records::Records::open(n).expect("open");
    let mut tx = r.publisher().expect("publisher");
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let stop2 = stop.clone();
    // Records of 10 bytes until hz is done: bytes/s is then 10 times records/s.
    let publisher = std::thread::spawn(move || {
        let mut sent = 0u64;
        while !stop2.load(std::sync::atomic::Ordering::Relaxed) {
            tx.publish_bytes(b"0123456789").expect("publish");
            sent += 1;
            std::thread::yield_now();
        }
        sent
    });
    let out = ok(&["hz", n, "--window", "0.5", "--count", "1", "--json"]);
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    assert!(publisher.join().expect("publisher") > 0);
    let w: serde_json::Value = serde_json::from_str(out.trim()).expect("JSON");
    assert_eq!(w["kind"], "records", "{w}");
    let records = w["messages"].as_u64().expect("a count");
    assert!(records > 0, "records were published during the window: {w}");
    let (mean, bytes) = (
        w["msgs_per_s"]["mean"].as_f64().unwrap(),
        w["bytes_per_s"].as_f64().unwrap(),
    );
    // The byte count and the record count are two loads a few instructions apart while the
    // publisher runs, so they may differ by the records published in between: a small fraction.
    assert!((bytes - 10.0 * mean).abs() <= 0.02 * bytes, "{w}");
    assert_eq!(w["producers"], 1, "{w}");
    // What the subscriber read, plus what it lost, is every record of the window that it saw.
    let seen = w["received"].as_u64().unwrap() + w["lost"].as_u64().unwrap();
    assert!(seen > 0, "{w}");
    let text = ok(&["hz", n, "--window", "0.2", "--count", "1"]);
    assert!(text.contains(" records/s ("), "{text}");
}
