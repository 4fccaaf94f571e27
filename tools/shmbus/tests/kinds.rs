//! The inspector over every segment kind: `list` and `rm --stale` treat buses, queues, boards and
//! records segments alike, each by its own kind.

mod common;

use shmbus_testkit as support;

use common::*;
use serde_json::Value;
use support::TestBus;

/// One segment of each kind, made by `shmbus create` (whose process has exited), named
/// `{prefix}{kind}`.
struct FourKinds {
    bus: TestBus,
    queue: TestBus,
    board: TestBus,
    records: TestBus,
}

impl FourKinds {
    fn create(prefix: &str) -> Self {
        let k = FourKinds {
            bus: TestBus(format!("{prefix}bus")),
            queue: TestBus(format!("{prefix}queue")),
            board: TestBus(format!("{prefix}board")),
            records: TestBus(format!("{prefix}records")),
        };
        ok(&["create", k.bus.name(), "--slots", "8", "--size", "16"]);
        ok_with("create", k.queue.name(), "--kind queue --slots 4 --size 16");
        ok_with("create", k.board.name(), "--kind board --cells 3 --size 32");
        ok_with("create", k.records.name(), "--kind records --bytes 8192");
        k
    }

    fn all(&self) -> [(&'static str, &TestBus); 4] {
        [
            ("bus", &self.bus),
            ("queue", &self.queue),
            ("board", &self.board),
            ("records", &self.records),
        ]
    }
}

#[test]
fn list_shows_every_kind_with_its_own_columns_and_none_as_unreadable() {
    let prefix = format!("test-kinds-list-{}-", std::process::id());
    let k = FourKinds::create(&prefix);
    ok(&["publish", k.bus.name(), "a", "b"]);
    ok(&["push", k.queue.name(), "x"]);
    ok(&["set", k.board.name(), "1", "v"]);
    ok(&["publish", k.records.name(), "one", "three"]);

    let v: Value = serde_json::from_str(&ok(&["list", "--json", "--prefix", &prefix])).unwrap();
    let entries = v.as_array().expect("an array");
    assert_eq!(entries.len(), 4, "{v}");
    for (kind, t) in k.all() {
        let e = entries
            .iter()
            .find(|e| e["name"] == t.name())
            .unwrap_or_else(|| panic!("{kind} listed: {v}"));
        assert_eq!(e["kind"], kind, "{e}");
        assert_eq!(e["error"], Value::Null, "{e}");
        // Each entry carries its own kind's state and no other's.
        for other in ["bus", "queue", "board", "records"] {
            assert_eq!(e[other].is_object(), other == kind, "{other} in {e}");
        }
        assert_eq!(
            e[kind]["stale"], true,
            "creator exited, nothing attached: {e}"
        );
        assert_eq!(e[kind]["creator_alive"], false, "{e}");
    }
    let find = |t: &TestBus| entries.iter().find(|e| e["name"] == t.name()).unwrap();
    assert_eq!(find(&k.bus)["bus"]["published"], 2);
    assert_eq!(find(&k.queue)["queue"]["len"], 1);
    assert_eq!(find(&k.board)["board"]["cells"], 3);
    assert_eq!(find(&k.records)["records"]["records_published"], 2);
    assert_eq!(find(&k.records)["records"]["bytes_published"], 8);

    let table = ok(&["list", "--prefix", &prefix]);
    assert!(!table.contains("NOT A READABLE"), "{table}");
    let lines: Vec<&str> = table.lines().collect();
    for (kind, t) in k.all() {
        let at = lines
            .iter()
            .position(|l| l.starts_with(t.name()))
            .unwrap_or_else(|| panic!("{kind} row: {table}"));
        let header = lines[..at]
            .iter()
            .rev()
            .find(|l| l.starts_with(char::is_uppercase))
            .expect("a header above the row");
        assert!(
            header.starts_with(&kind.to_uppercase()),
            "{kind} under {header:?}:\n{table}"
        );
    }
}

#[test]
fn rm_stale_removes_stale_segments_of_every_kind_and_keeps_those_with_live_participants() {
    let prefix = format!("test-kinds-stale-{}-", std::process::id());
    let stale = FourKinds::create(&format!("{prefix}s-"));
    // Creator gone, but one participant of some role alive in this process: not stale.
    let live = FourKinds::create(&format!("{prefix}l-"));
    let bus = shmbus::Bus::open(live.bus.name()).unwrap();
    let _producer = bus.publisher().unwrap();
    let queue = shmbus::Queue::open(live.queue.name()).unwrap();
    let _receiver = queue.receiver().unwrap();
    let board = shmbus::Board::open(live.board.name()).unwrap();
    let _writer = board.writer().unwrap();
    let records = shmbus::records::Records::open(live.records.name()).unwrap();
    let _publisher = records.publisher().unwrap();

    let dry = ok(&["rm", "--stale", "--dry-run", "--prefix", &prefix]);
    assert_eq!(dry.lines().count(), 4, "{dry}");
    for (kind, t) in stale.all() {
        let said = if kind == "records" {
            "(records segment)"
        } else {
            &format!("({kind})")
        };
        let head = format!("would remove {}: creator pid ", t.name());
        assert!(
            dry.lines()
                .any(|l| l.starts_with(&head) && l.contains(" exited, no ") && l.ends_with(said)),
            "no line for the stale {kind}:\n{dry}"
        );
    }
    for (_, t) in stale.all().iter().chain(live.all().iter()) {
        assert!(t.path().exists(), "the dry run removed {}", t.name());
    }

    let out = ok(&["rm", "--stale", "--prefix", &prefix]);
    assert_eq!(out.lines().count(), 4, "{out}");
    for (kind, t) in stale.all() {
        assert!(!t.path().exists(), "stale {kind} {} kept:\n{out}", t.name());
    }
    for (kind, t) in live.all() {
        assert!(
            t.path().exists(),
            "live {kind} {} removed:\n{out}",
            t.name()
        );
    }
    assert_eq!(
        ok(&["rm", "--stale", "--prefix", &prefix]),
        "no stale segments\n"
    );
}

#[test]
fn info_reports_each_kind_by_its_own_report() {
    let prefix = format!("test-kinds-info-{}-", std::process::id());
    let k = FourKinds::create(&prefix);
    let info = |t: &TestBus| -> Value {
        serde_json::from_str(ok(&["info", t.name(), "--json"]).trim()).expect("JSON")
    };
    assert_eq!(info(&k.bus)["header"]["slot_count"], 8);
    // Every kind's report is an object that says its kind.
    assert_eq!(info(&k.bus)["kind"], "bus");
    assert_eq!(info(&k.queue)["kind"], "queue");
    assert_eq!(info(&k.records)["kind"], "records");
    let board = info(&k.board);
    assert_eq!(board["kind"], "board", "{board}");
    // Every kind's report says who owns it and its mode.
    for (t, what) in [
        (&k.queue, "queue"),
        (&k.records, "records"),
        (&k.board, "board"),
    ] {
        let a = &info(t)["access"];
        assert_eq!(a["owner_is_us"], true, "{what}: {a}");
        assert_eq!(a["mode"], "0600", "{what}: {a}");
        let text = ok(&["info", t.name()]);
        assert!(
            text.contains("uid ") && text.contains("mode 0600"),
            "{what}: {text}"
        );
    }
    assert_eq!(
        board["cells"].as_array().map(Vec::len),
        Some(3),
        "one row per cell: {board}"
    );
}
