//! `shmbus create --kind board`, `shmbus set` and `shmbus board`, driven as a user would.

mod common;

use shmbus_testkit as support;

use common::*;
use serde_json::Value;
use support::park::park;
use support::TestBus;

#[test]
fn a_board_made_set_and_shown_from_the_command_line() {
    let b = TestBus::new("cli-board");
    let name = b.name();
    let made = ok_with(
        "create",
        name,
        "--kind board --size 16 --keys hip,knee,ankle",
    );
    assert!(made.contains("3 cells of 16 bytes"), "{made}");
    assert!(ok(&["set", name, "knee", "bent"]).contains("version 1"));
    ok(&["set", name, "2", "1b5b33316d", "--hex"]);
    ok(&["set", name, "2", "1b5b33316d00", "--hex"]);
    let table = ok(&["board", name]);
    assert!(table.contains("1\tknee\t1\t"), "{table}");
    assert!(
        !table.contains('\x1b'),
        "an escape sequence from a value reached the terminal: {table:?}"
    );
    let json: Value = serde_json::from_str(ok(&["board", name, "--json"]).trim()).unwrap();
    let cells = json.as_array().unwrap();
    assert_eq!(cells.len(), 3);
    assert_eq!(cells[0]["version"], 0);
    assert_eq!(cells[1]["value"], "bent");
    assert_eq!(cells[2]["version"], 2);
    assert_eq!(cells[2]["len"], 6);
    assert_eq!(cells[2]["key"], "ankle");
}

#[test]
fn board_commands_refuse_bad_cells_values_and_kinds() {
    let b = TestBus::new("cli-board-bad");
    let name = b.name();
    ok_with("create", name, "--kind board --cells 2 --size 4");
    fails_with(&["set", name, "2", "x"], "there is no cell 2");
    fails_with(&["set", name, "elbow", "x"], "no cell named \"elbow\"");
    fails_with(&["set", name, "0", "12345"], "value is 5 bytes");
    fails_with(&["set", name, "0", "abc", "--hex"], "odd number of digits");
    fails_with(
        &["publish", name, "x"],
        "is a board; publish writes to buses and records segments (use `shmbus set`)",
    );
    // --sample-ms is how long info waits to look again at a writer found holding a cell.
    let info: serde_json::Value =
        serde_json::from_str(&ok(&["info", name, "--sample-ms", "10", "--json"])).unwrap();
    assert_eq!(info["stalled"], serde_json::json!([]), "{info}");
    let bus = TestBus::new("cli-board-bus");
    ok(&["create", bus.name()]);
    fails_with(&["board", bus.name()], "is a bus, not a board");
    fails_with(&["set", bus.name(), "0", "x"], "is a bus, not a board");
}

#[test]
fn info_on_a_board_prints_its_cells_instead_of_failing_the_kind_check() {
    let b = TestBus::new("cli-board-info");
    let name = b.name();
    ok_with("create", name, "--kind board --cells 2 --size 8");
    ok(&["set", name, "1", "v"]);
    let shown = ok(&["info", name]);
    assert!(shown.contains("board "), "{shown}");
    assert!(shown.contains("1\t-\t1\t"), "{shown}");
    assert!(!shown.contains("FAIL"), "{shown}");
}

#[test]
fn create_help_explains_every_kind_and_its_options_with_the_library_defaults() {
    let help = ok(&["create", "--help"]);
    let wants = [
        "bus ",
        "queue ",
        "records ",
        "board ",
        "--cells",
        "--keys",
        "--bytes",
        "--multi-producer",
        &format!("default {}", shmbus::DEFAULT_SLOTS),
        &format!("default {}", shmbus::DEFAULT_RAW_CAPACITY),
        &format!("default {}", shmbus::DEFAULT_QUEUE_CAPACITY),
        &format!("default {}", shmbus::DEFAULT_ITEM_SIZE),
        &format!("default {}", shmbus::DEFAULT_BOARD_VALUE_SIZE),
        &format!("default {}", shmbus::records::DEFAULT_RING_BYTES),
        "shmbus create joints --kind board",
    ];
    assert_contains_all("create --help", &help, wants);
    // A wrong kind lists every kind, board included.
    let o = shmbus(&["create", "x", "--kind", "foo"]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(err.contains("bus, queue, records, board"), "{err}");
}

#[test]
fn create_refuses_options_of_other_kinds_and_a_board_without_cells_in_cli_words() {
    let b = TestBus::new("cli-create-opts");
    let name = b.name();
    fails_with(
        &["create", name, "--cells", "4"],
        "--cells does not apply to --kind bus (only to board)",
    );
    fails_with(
        &["create", name, "--bytes", "4096"],
        "--bytes does not apply to --kind bus (only to records and lanes)",
    );
    fails_with(
        &["create", name, "--kind", "queue", "--multi-producer"],
        "--multi-producer does not apply to --kind queue (only to bus)",
    );
    fails_with(
        &["create", name, "--kind", "records", "--size", "64"],
        "--size does not apply to --kind records",
    );
    let o = shmbus(&["create", name, "--kind", "board"]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(err.contains("--cells N, or --keys"), "{err}");
    assert!(
        !err.contains(".cells("),
        "a Rust method name reached the CLI: {err}"
    );
    assert!(
        !b.path().exists(),
        "nothing was created by a refused command"
    );
    let made = ok(&["create", name, "--kind=board", "--cells", "4"]);
    assert!(made.contains("4 cells of 64 bytes"), "{made}");
}

#[test]
fn a_single_writer_board_from_the_command_line_says_so_and_other_kinds_refuse_the_flag() {
    let b = TestBus::new("cli-board-one");
    let name = b.name();
    fails_with(
        &["create", name, "--single-writer"],
        "--single-writer does not apply to --kind bus (only to board)",
    );
    let made: Value = serde_json::from_str(
        ok(&[
            "create",
            name,
            "--kind",
            "board",
            "--cells",
            "2",
            "--single-writer",
            "--json",
        ])
        .trim(),
    )
    .unwrap();
    assert_eq!(made["single_writer"], true, "{made}");
    assert!(ok(&["set", name, "1", "up"]).contains("version 1"));
    let table = ok(&["board", name]);
    assert!(table.contains("one writer at a time"), "{table}");
    let info: Value = serde_json::from_str(ok(&["info", name, "--json"]).trim()).unwrap();
    assert_eq!(info["summary"]["single_writer"], true, "{info}");
}

#[test]
fn info_names_a_writer_stalled_holding_a_cell() {
    let b = TestBus::new("cli-board-stall");
    let board = shmbus::BoardBuilder::new(b.name())
        .cells(2)
        .create()
        .unwrap();
    let mut w = board.writer().unwrap();
    let index = w.producer_index() as u64;
    // The fill stops inside: it holds cell 1 meanwhile, as a writer stopped mid-update does.
    let writer = park(move |gate| {
        w.set_with(1, |v| {
            v.push(b"slow").unwrap();
            gate.stop_here();
        })
        .map(|(version, ())| version)
    });
    let info: serde_json::Value =
        serde_json::from_str(&ok(&["info", b.name(), "--sample-ms", "20", "--json"])).unwrap();
    let pid = u64::from(std::process::id());
    let s = &info["stalled"];
    assert_eq!(s.as_array().map(Vec::len), Some(1), "{info}");
    assert_eq!(
        (
            s[0]["index"].as_u64(),
            s[0]["pid"].as_u64(),
            s[0]["role"].as_str(),
            s[0]["position"].as_u64(),
            s[0]["state"].as_str()
        ),
        (
            Some(index),
            Some(pid),
            Some("writer"),
            Some(1),
            Some("writing")
        ),
        "{info}"
    );
    let text = ok(&["info", b.name(), "--sample-ms", "20"]);
    assert!(
        text.contains(&format!(
            "stalled: pid {pid} writer #{index} holds cell 1 (writing its next value) for at least"
        )),
        "{text}"
    );
    assert_eq!(writer.release().unwrap(), 1);
    let text = ok(&["info", b.name()]);
    assert!(!text.contains("stalled"), "{text}");
}
