//! The inspector on records segments: create, publish, tail and info, as a user runs them.

mod common;

use shmbus_testkit as support;

use common::*;
use support::TestBus;

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

/// The records published so far, as `tail --format hex` prints them: (len, hex).
fn records_hex(name: &str) -> Vec<(usize, String)> {
    ok_with("tail", name, "--from oldest -n 1000 --format hex")
        .lines()
        .map(|l| {
            let f: Vec<&str> = l.split('\t').collect();
            (f[1].parse().unwrap(), f[2].to_owned())
        })
        .collect()
}

#[test]
fn publish_on_records_honours_hex_file_repeat_rate_and_trust_flags() {
    let name = TestBus::new("cli-records-flags");
    let n = name.name();
    ok_with("create", n, "--kind records --bytes 8192 --mode 0660");
    // A group-writable segment is refused unless trusted, as a bus is.
    fails_with(&["publish", n, "x"], "--accept-shared-write");
    let out = ok_with("publish", n, "--accept-shared-write --hex cafe 00ff");
    assert!(out.contains("published 2 records to"), "{out}");
    assert_eq!(
        records_hex(n),
        [(2, "cafe".to_owned()), (2, "00ff".to_owned())]
    );
    fails_with(
        &["publish", n, "--accept-shared-write", "--hex", "zz"],
        "not hexadecimal",
    );
    let dir = std::env::temp_dir().join(format!("shmbus-rec-flags-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let big = dir.join("big.bin");
    std::fs::write(&big, vec![7u8; 3000]).unwrap();
    fails_with(
        &[
            "publish",
            n,
            "--accept-shared-write",
            "--file",
            big.to_str().unwrap(),
        ],
        "the file's content: record is 3000 bytes, at most 2032 fit; nothing was published",
    );
    let mid = dir.join("mid.bin");
    std::fs::write(&mid, vec![1u8; 1500]).unwrap();
    let out = ok(&[
        "publish",
        n,
        "--accept-shared-write",
        "--file",
        mid.to_str().unwrap(),
        "--repeat",
        "3",
    ]);
    assert!(out.contains("published 3 records"), "{out}");
    let out = ok(&["publish", n, "--accept-shared-write", "x", "--repeat", "3"]);
    assert!(out.contains("published 3 records"), "{out}");
    let got = records_hex(n);
    assert_eq!(got.len(), 8, "{got:?}");
    assert!(got[2..5].iter().all(|(len, _)| *len == 1500), "{got:?}");
    assert!(
        got[5..].iter().all(|r| *r == (1, "78".to_owned())),
        "{got:?}"
    );
    // Three records at 20 per second: two gaps of 50 ms at least.
    let t0 = std::time::Instant::now();
    ok_with("publish", n, "--accept-shared-write r1 r2 r3 --rate 20");
    assert!(
        t0.elapsed() >= std::time::Duration::from_millis(95),
        "{:?}",
        t0.elapsed()
    );
    assert_eq!(records_hex(n).len(), 11);
    let _ = std::fs::remove_dir_all(&dir);
}
