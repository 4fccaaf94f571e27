//! `shmbus create --kind lanes`, `publish` (a lane for the command's life), `pop` (the
//! consumer), `list` and `info`, driven as a user would.

mod common;

use shmbus_testkit as support;

use common::*;
use serde_json::Value;
use support::TestBus;

#[test]
fn lanes_made_fed_inspected_and_drained_from_the_command_line() {
    let l = TestBus::new("cli-lanes");
    let name = l.name();
    let made = ok_with("create", name, "--kind lanes --lanes 4 --bytes 4096 --json");
    let made: Value = serde_json::from_str(made.trim()).unwrap();
    assert_eq!(
        (&made["kind"], &made["lanes"], &made["max_record"]),
        (&Value::from("lanes"), &Value::from(4), &Value::from(4080))
    );
    let said = ok(&["publish", name, "one", "two", "three"]);
    assert!(said.contains("published 3 records"), "{said}");
    assert!(!said.contains("interleaved"), "{said}");
    // The command's lane is closed, its records not yet consumed.
    let info: Value = serde_json::from_str(ok(&["info", name, "--json"]).trim()).unwrap();
    assert_eq!(info["published"], 3);
    assert_eq!(info["consumed"], 0);
    assert_eq!(info["lanes_closing"], 1);
    assert_eq!(info["lane_detail"][0]["state"], "closing");
    let list: Value = serde_json::from_str(ok(&["list", "--json"]).trim()).unwrap();
    let row = list
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["name"] == name)
        .expect("listed");
    assert_eq!(row["kind"], "lanes");
    assert_eq!(row["lanes"]["published"], 3);
    assert_eq!(row["lanes"]["lanes_in_use"], 0);
    // hz reads the counters and consumes nothing.
    let hz: Value =
        serde_json::from_str(ok(&["hz", name, "--window", "0.2", "--count", "1", "--json"]).trim())
            .unwrap();
    assert_eq!(
        (&hz["kind"], &hz["cursor"]),
        (&Value::from("lanes"), &Value::from(3))
    );
    // pop prints each record with its lane.
    let first = ok(&["pop", name, "--json"]);
    let first: Value = serde_json::from_str(first.trim()).unwrap();
    assert_eq!(
        (&first["lane"], &first["text"]),
        (&Value::from(0), &Value::from("one"))
    );
    let rest = ok(&["pop", name, "-n", "10"]);
    assert_eq!(rest, "0\t3\ttwo\n0\t5\tthree\n");
    let info: Value = serde_json::from_str(ok(&["info", name, "--json"]).trim()).unwrap();
    assert_eq!(
        (&info["consumed"], &info["lanes_closing"]),
        (&Value::from(3), &Value::from(0))
    );
}

#[test]
fn lanes_commands_refuse_what_does_not_apply() {
    let l = TestBus::new("cli-lanes-bad");
    let name = l.name();
    fails_with(
        &["create", name, "--kind", "lanes", "--slots", "4"],
        "--slots does not apply to --kind lanes",
    );
    fails_with(
        &["create", name, "--kind", "lanes", "--bytes", "1000"],
        "a lane is a power of two from 4096",
    );
    fails_with(
        &["create", name, "--kind", "lanes", "--lanes", "5000"],
        "1 to 4096 lanes",
    );
    ok_with("create", name, "--kind lanes --lanes 1 --bytes 4096");
    fails_with(
        &["publish", name, &"x".repeat(5000)],
        "record is 5000 bytes, at most 4080 fit; nothing was published before it",
    );
    fails_with(&["tail", name], "is a lanes segment, not a bus");
    fails_with(
        &["info", name, "--sample-ms", "100"],
        "--sample-ms applies to buses",
    );
    let bus = TestBus::new("cli-lanes-bus");
    ok(&["create", bus.name()]);
    fails_with(&["create", bus.name(), "--kind", "lanes"], "already exists");
}
