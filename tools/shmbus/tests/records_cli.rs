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
