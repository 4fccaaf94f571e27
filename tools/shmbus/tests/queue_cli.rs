//! The inspector's work-queue commands: `create --kind queue`, `push`, `pop`, and what `list`
//! and `info` show of a queue.

mod common;

use shmbus_testkit as support;

use std::process::{Command, Stdio};

use common::*;
use serde_json::Value;
use support::TestBus;

#[test]
fn pushed_items_are_popped_once_in_order() {
    let t = TestBus::new("cli-queue");
    let out = ok_with("create", t.name(), "--kind queue --slots 4 --size 16");
    assert!(
        out.starts_with(&format!("created queue {}", t.name())),
        "{out}"
    );
    ok(&["push", t.name(), "one", "two"]);
    assert!(with_stdin(&["push", t.name()], b"three\n").status.success());
    assert_eq!(ok(&["pop", t.name()]), "3\tone\n");
    assert_eq!(ok(&["pop", t.name(), "-n", "5"]), "3\ttwo\n5\tthree\n");
    assert_eq!(ok(&["pop", t.name()]), "", "nothing left");
}

#[test]
fn push_without_waiting_fails_on_a_full_queue_saying_how_many_fit() {
    let t = TestBus::new("cli-queue-full");
    ok_with("create", t.name(), "--kind queue --slots 2 --size 8");
    let o = shmbus(&["push", t.name(), "--no-wait", "a", "b", "c"]);
    assert_eq!(o.status.code(), Some(1));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("is full") && err.contains("pushed 2"), "{err}");
    let json = ok(&["pop", t.name(), "-n", "2", "--json", "--format", "hex"]);
    let lines: Vec<Value> = json
        .lines()
        .map(|l| serde_json::from_str(l).expect("JSON line"))
        .collect();
    assert_eq!(lines.len(), 2);
    assert_eq!(lines[0]["len"], 1);
    // The keys tail --json uses: len and hex (or text, or json).
    assert_eq!(lines[0]["hex"], "61");
}

#[test]
fn list_and_info_show_a_queue_with_its_length_and_positions() {
    let t = TestBus::new("cli-queue-info");
    ok_with("create", t.name(), "--kind queue --slots 8 --size 32");
    ok(&["push", t.name(), "a", "b", "c"]);
    ok(&["pop", t.name()]);
    let entry = listed(t.name());
    assert_eq!(entry["kind"], "queue");
    assert_eq!(entry["queue"]["capacity"], 8);
    assert_eq!(entry["queue"]["len"], 2);
    assert_eq!(entry["queue"]["head"], 1);
    assert_eq!(entry["queue"]["tail"], 3);
    let table = ok(&["list"]);
    let lines: Vec<&str> = table.lines().collect();
    let at = lines
        .iter()
        .position(|l| l.starts_with(t.name()))
        .expect("a table row");
    // The row sits in the queues' table, whose header names the columns of a queue.
    let header = lines[..at]
        .iter()
        .rev()
        .find(|l| l.starts_with(char::is_uppercase))
        .expect("a header above the row");
    assert!(
        header.starts_with("QUEUE") && header.contains("LEN"),
        "{table}"
    );
    let cells: Vec<&str> = lines[at].split_whitespace().collect();
    assert_eq!(&cells[1..3], ["8", "32"], "capacity and item size: {table}");
    assert_eq!(&cells[4..7], ["2", "1", "3"], "len, head, tail: {table}");
    let info: Value = serde_json::from_str(&ok(&["info", t.name(), "--json"])).expect("JSON");
    assert_eq!(info["kind"], "queue");
    assert_eq!(info["summary"]["len"], 2);
    let text = ok(&["info", t.name()]);
    assert!(text.contains("head / tail  1 / 3"), "{text}");
    // A queue is not a bus: the bus commands refuse it with the kind in the message.
    let o = shmbus(&["publish", t.name(), "x"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stderr).contains("queue"));
}

#[test]
fn pop_json_uses_the_keys_of_tail_json() {
    let t = TestBus::new("cli-queue-json");
    ok_with("create", t.name(), "--kind queue --slots 4 --size 16");
    ok(&["push", t.name(), "job 1", "{\"a\": 1}"]);
    let lines: Vec<Value> = ok(&["pop", t.name(), "-n", "1", "--json"])
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines, [serde_json::json!({"len": 5, "text": "job 1"})]);
    let line = ok(&["pop", t.name(), "--json", "--format", "json"]);
    let v: Value = serde_json::from_str(line.trim()).unwrap();
    assert_eq!(v["json"]["a"], 1, "{line}");
}

#[test]
fn push_pop_and_set_take_the_trust_flags_their_errors_name() {
    let t = TestBus::new("cli-queue-0660");
    ok_with(
        "create",
        t.name(),
        "--kind queue --slots 4 --size 8 --mode 0660",
    );
    let o = shmbus(&["push", t.name(), "x"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stderr).contains("pass --accept-shared-write"));
    ok(&["push", t.name(), "x", "--accept-shared-write"]);
    assert_eq!(ok(&["pop", t.name(), "--accept-shared-write"]), "1\tx\n");
    let b = TestBus::new("cli-board-0660");
    ok_with("create", b.name(), "--kind board --cells 1 --mode 0660");
    assert!(shmbus(&["set", b.name(), "0", "v"]).status.code() == Some(1));
    ok(&["set", b.name(), "0", "v", "--accept-shared-write"]);
}

#[test]
fn push_on_a_full_queue_says_it_waits_then_pushes_when_room_is_made() {
    use std::io::{BufRead, BufReader};
    let t = TestBus::new("cli-queue-wait");
    ok_with("create", t.name(), "--kind queue --slots 1 --size 8");
    ok(&["push", t.name(), "first"]);
    let mut child = Command::new(env!("CARGO_BIN_EXE_shmbus"))
        .args(["push", t.name(), "second"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut err = BufReader::new(child.stderr.take().unwrap());
    let mut line = String::new();
    // Blocks until the note is written: the push is waiting.
    err.read_line(&mut line).unwrap();
    assert!(
        line.contains("is full (1 item); waiting for room"),
        "{line}"
    );
    assert_eq!(ok(&["pop", t.name()]), "5\tfirst\n");
    let o = child.wait_with_output().unwrap();
    assert!(o.status.success());
    assert_eq!(
        String::from_utf8(o.stdout).unwrap(),
        format!("pushed 1 item to queue {}\n", t.name())
    );
    assert_eq!(ok(&["pop", t.name()]), "6\tsecond\n");
}

#[test]
fn info_names_the_live_participants_stalled_holding_a_position() {
    let t = TestBus::new("cli-queue-stall");
    ok_with(
        "create",
        t.name(),
        "--kind queue --slots 4 --size 16 --stall-bound-ms 0",
    );
    let q = shmbus::Queue::open(t.name()).unwrap();
    let mut tx = q.sender().unwrap();
    tx.try_send(b"item 0").unwrap();
    let rx = q.receiver().unwrap();
    let stalled_tx = q.sender().unwrap();
    let info = || -> Value {
        serde_json::from_str(&ok(&["info", t.name(), "--json", "--sample-ms", "20"])).unwrap()
    };
    assert_eq!(
        info()["stalled"],
        serde_json::json!([]),
        "nobody holds anything"
    );
    // The words a sender stores when it takes position 1 (its claim, then the tail), and a
    // receiver when it takes position 0's item (its claim, then the head); neither goes on
    // to publish or free. Both live: this process holds their entries.
    let f = support::forge::Forger::new(&t);
    queue_words::claim_send(&f, stalled_tx.index(), 1);
    queue_words::claim_recv(&f, rx.index(), 0);
    let pid = u64::from(std::process::id());
    let got = info();
    let stalled = got["stalled"].as_array().expect("a list");
    let seen: Vec<(u64, u64, &str, u64, &str)> = stalled
        .iter()
        .map(|s| {
            assert!(s["held_ms_at_least"].as_f64().unwrap() >= 20.0, "{s}");
            (
                s["index"].as_u64().unwrap(),
                s["pid"].as_u64().unwrap(),
                s["role"].as_str().unwrap(),
                s["position"].as_u64().unwrap(),
                s["state"].as_str().unwrap(),
            )
        })
        .collect();
    let mut want = vec![
        (u64::from(rx.index()), pid, "receiver", 0, "unfreed"),
        (
            u64::from(stalled_tx.index()),
            pid,
            "sender",
            1,
            "unpublished",
        ),
    ];
    want.sort();
    assert_eq!(seen, want, "{got}");
    assert_eq!(got["summary"]["stall_bound_ms"], Value::Null);
    let text = ok(&["info", t.name(), "--sample-ms", "20"]);
    assert!(
        text.contains(&format!(
            "pid {pid} sender #{} holds position 1 (claimed, not published) for at least",
            stalled_tx.index()
        )),
        "{text}"
    );
    assert!(text.contains("stall bound  none"), "{text}");
    // The sender's claim moves on (it completed, or was repaired): no hold is left of it.
    f.store(queue_words::claim(stalled_tx.index()), 0);
    let got = info();
    assert_eq!(got["stalled"].as_array().map(Vec::len), Some(1), "{got}");
    drop(stalled_tx);
    drop(rx);
}

#[test]
fn create_takes_a_stall_bound_that_info_and_list_show_with_the_passed_count() {
    let t = TestBus::new("cli-queue-bound");
    let made: Value = serde_json::from_str(&ok_with(
        "create",
        t.name(),
        "--kind queue --slots 4 --size 16 --stall-bound-ms 250 --json",
    ))
    .unwrap();
    assert_eq!(made["stall_bound_ms"], 250);
    let entry = listed(t.name());
    assert_eq!(entry["queue"]["stall_bound_ms"], 250.0);
    assert_eq!(entry["queue"]["passed"], 0);
    let text = ok(&["info", t.name()]);
    assert!(text.contains("stall bound  250 ms"), "{text}");
    assert!(text.contains("passed       0"), "{text}");
    assert!(text.contains("stalled      none"), "{text}");
    assert_eq!(
        shmbus::Queue::open(t.name()).unwrap().stall_bound(),
        Some(std::time::Duration::from_millis(250))
    );
    let bus = TestBus::new("cli-queue-bound-bus");
    fails_with(
        &["create", bus.name(), "--stall-bound-ms", "10"],
        "--stall-bound-ms applies to queues and multi-producer buses",
    );
    fails_with(
        &[
            "create",
            bus.name(),
            "--kind",
            "board",
            "--cells",
            "1",
            "--stall-bound-ms",
            "10",
        ],
        "--stall-bound-ms does not apply to --kind board (only to bus and queue)",
    );
}
