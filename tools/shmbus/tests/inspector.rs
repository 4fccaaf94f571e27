//! The `shmbus` inspector binary, driven as a user would: real processes, real `/dev/shm`.

mod common;

use shmbus_testkit as support;

use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::PermissionsExt;
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::*;
use serde_json::Value;
use support::park::park;
use support::TestBus;

/// A file in /dev/shm removed when the test ends (for files that are not buses).
struct ShmFile(std::path::PathBuf);

impl Drop for ShmFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// Reads a child's stdout lines on a thread, so the test can wait for each with a deadline.
fn line_reader(child: &mut Child) -> mpsc::Receiver<String> {
    lines_on_a_thread(child.stdout.take().expect("piped stdout"))
}

/// Reads a child's stderr lines on a thread.
fn stderr_reader(child: &mut Child) -> mpsc::Receiver<String> {
    lines_on_a_thread(child.stderr.take().expect("piped stderr"))
}

fn lines_on_a_thread(from: impl std::io::Read + Send + 'static) -> mpsc::Receiver<String> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(from).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    rx
}

fn next_line(rx: &mpsc::Receiver<String>, deadline: Instant) -> String {
    let left = deadline.saturating_duration_since(Instant::now());
    rx.recv_timeout(left)
        .unwrap_or_else(|e| panic!("no line from tail before the deadline: {e}"))
}

#[test]
fn create_publish_then_list_info_and_tail_report_the_promised_fields() {
    let t = TestBus::new("insp-fields");
    let out = ok_with(
        "create",
        t.name(),
        "--slots 16 --size 100 --multi-producer --mode 0640",
    );
    assert!(out.contains(&format!("created bus {}", t.name())), "{out}");
    ok(&["publish", t.name(), "one", "two"]);
    let o = with_stdin(&["publish", t.name()], b"three\r\n{\"k\":[1,2]}\n");
    assert!(o.status.success(), "{}", stderr(&o));

    let entry = listed(t.name());
    assert_eq!(entry["kind"], "bus");
    assert_eq!(entry["mode"], "0640");
    let b = &entry["bus"];
    assert_eq!(
        (b["slots"].as_u64(), b["capacity"].as_u64()),
        (Some(16), Some(100))
    );
    assert_eq!(b["producer_mode"], "multi");
    assert_eq!(b["message_type"], "bytes");
    assert_eq!(b["published"], 4);
    assert_eq!(b["producers_alive"], false);
    assert_eq!(
        b["creator_alive"], false,
        "the creating `shmbus create` has exited"
    );
    assert_eq!(b["stale"], true);
    assert_eq!(
        b["segment_size"].as_u64(),
        Some(entry["size"].as_u64().unwrap())
    );
    for key in [
        "last_publish",
        "producer_stamp_ns_ago",
        "creator_pid",
        "producers",
        "cursor",
    ] {
        assert!(b.get(key).is_some(), "list entry lacks {key}: {b}");
    }
    let table = ok(&["list"]);
    let row = table
        .lines()
        .find(|l| l.starts_with(t.name()))
        .expect("row in the table");
    assert!(
        row.contains("multi") && row.contains(" 16 ") && row.contains("0640"),
        "{row}"
    );

    let info: Value = serde_json::from_str(&ok(&["info", t.name(), "--json"])).unwrap();
    let checks = info["checks"].as_array().unwrap();
    assert_eq!(checks.len(), 14);
    assert!(checks.iter().all(|c| c["status"] == "ok"), "{checks:?}");
    assert_eq!(info["header"]["slot_count"], 16);
    assert_eq!(info["header"]["published"], 4);
    assert_eq!(info["header"]["producer_mode"], "multi");
    assert_eq!(info["census"]["written"], 4);
    assert_eq!(info["census"]["empty"], 12);
    assert_eq!(info["error"], Value::Null);
    let text = ok(&["info", t.name()]);
    for want in [
        "checks",
        "magic",
        "ABI version",
        "geometry",
        "size matches",
        "header",
        "slots",
        "empty 12, written 4",
    ] {
        assert!(text.contains(want), "info lacks {want:?}:\n{text}");
    }

    let lines = json_lines(&ok_with(
        "tail",
        t.name(),
        "--json --format json --from oldest",
    ));
    assert_eq!(lines.len(), 4);
    assert_eq!(
        lines[0],
        serde_json::json!({"seq": 0, "len": 3, "hex": "6f6e65"}),
        "not JSON, so hex"
    );
    assert_eq!(
        lines[3],
        serde_json::json!({"seq": 3, "len": 11, "json": {"k": [1, 2]}})
    );
    let lines = json_lines(&ok(&["tail", t.name(), "--json", "-n", "2"]));
    assert_eq!(
        lines,
        [
            serde_json::json!({"seq": 2, "len": 5, "text": "three"}),
            serde_json::json!({"seq": 3, "len": 11, "text": "{\"k\":[1,2]}"})
        ]
    );
    assert_eq!(
        ok(&["tail", t.name(), "--from", "1", "-n", "1"]),
        "1\t3\ttwo\n"
    );
    assert_eq!(
        ok(&[
            "tail",
            t.name(),
            "--from",
            "2",
            "--format",
            "hex",
            "-n",
            "1"
        ]),
        "2\t5\t7468726565\n"
    );
}

#[test]
fn tail_follow_prints_exactly_what_another_process_publishes_in_order() {
    let t = TestBus::new("insp-follow");
    ok(&["create", t.name(), "--slots", "64", "--size", "64"]);
    let mut tail = KillOnDrop(
        Command::new(env!("CARGO_BIN_EXE_shmbus"))
            .args(["tail", t.name(), "--follow", "--json"])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let rx = line_reader(&mut tail.0);
    let deadline = Instant::now() + Duration::from_secs(20);
    // Tail starts 10 messages back, so these arrive whether or not it attached before them.
    let first: Vec<String> = (0..5).map(|i| format!("m{i}")).collect();
    let args: Vec<&str> = ["publish", t.name()]
        .into_iter()
        .chain(first.iter().map(String::as_str))
        .collect();
    ok(&args);
    for (i, m) in first.iter().enumerate() {
        let v: Value = serde_json::from_str(&next_line(&rx, deadline)).unwrap();
        assert_eq!(v, serde_json::json!({"seq": i, "len": m.len(), "text": m}));
    }
    // Tail has caught up; what comes now it can only see by following.
    ok(&["publish", t.name(), "later", "last one"]);
    let v: Value = serde_json::from_str(&next_line(&rx, deadline)).unwrap();
    assert_eq!(v, serde_json::json!({"seq": 5, "len": 5, "text": "later"}));
    let v: Value = serde_json::from_str(&next_line(&rx, deadline)).unwrap();
    assert_eq!(
        v,
        serde_json::json!({"seq": 6, "len": 8, "text": "last one"})
    );
    assert!(
        tail.0.try_wait().unwrap().is_none(),
        "tail --follow must keep running"
    );
    // Ctrl-C ends it cleanly.
    let pid = nix::unistd::Pid::from_raw(tail.0.id() as i32);
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGINT).unwrap();
    let status = loop {
        if let Some(status) = tail.0.try_wait().unwrap() {
            break status;
        }
        assert!(Instant::now() < deadline, "tail --follow ignored SIGINT");
        std::thread::sleep(Duration::from_millis(2));
    };
    assert!(status.success(), "{status:?}");
}

#[test]
fn tail_reports_a_lap_as_its_own_line_with_the_exact_range() {
    let t = TestBus::new("insp-lap");
    ok(&["create", t.name(), "--slots", "4", "--size", "16"]);
    let msgs: Vec<String> = (0..10).map(|i| format!("x{i}")).collect();
    let args: Vec<&str> = ["publish", t.name()]
        .into_iter()
        .chain(msgs.iter().map(String::as_str))
        .collect();
    ok(&args);
    let out = ok(&["tail", t.name(), "--from", "0"]);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(
        lines,
        [
            "lost 6 messages (seq 0..5)",
            "6\t2\tx6",
            "7\t2\tx7",
            "8\t2\tx8",
            "9\t2\tx9"
        ]
    );
    let lines = json_lines(&ok(&["tail", t.name(), "--from", "0", "--json", "-n", "1"]));
    assert_eq!(
        lines[0],
        serde_json::json!({"lost": 6, "first": 0, "last": 5})
    );
    assert_eq!(lines[1]["seq"], 6);
    assert_eq!(lines.len(), 2);
}

#[test]
fn strings_from_a_hostile_segment_never_reach_the_terminal_raw() {
    let t = TestBus::new("insp-hostile");
    let bus = shmbus::BusBuilder::new(t.name())
        .message_type::<u64>()
        .type_name("evil\u{1b}]0;pwned\u{7}\u{202e}")
        .slots(8)
        .create()
        .unwrap();
    let mut tx = bus.publisher().unwrap();
    tx.publish(&u64::from_le_bytes(*b"\x1b[2J\x9b\xff\x00\\"));
    drop(tx);
    for args in [
        vec!["list"],
        vec!["list", "--json"],
        vec!["info", t.name()],
        vec!["info", t.name(), "--json"],
        vec!["tail", t.name()],
        vec!["tail", t.name(), "--json"],
        vec!["tail", t.name(), "--format", "json"],
    ] {
        let out = ok(&args);
        let bad = out
            .chars()
            .find(|&c| (c.is_control() && !matches!(c, '\n' | '\t')) || c == '\u{202e}');
        assert_eq!(
            bad, None,
            "shmbus {args:?} printed a raw control character:\n{out:?}"
        );
    }
    assert_eq!(
        ok(&["tail", t.name()]),
        "0\t8\t\\x1b[2J\\x9b\\xff\\x00\\\\\n"
    );
    assert!(ok(&["info", t.name()]).contains("evil\\x1b]0;pwned\\x07\\u{202e}"));
}

#[test]
fn missing_bus_fails_with_one_line_for_every_command() {
    let t = TestBus::new("insp-missing");
    for cmd in ["info", "tail", "watch", "publish", "rm"] {
        fails_with(&[cmd, t.name()], "not found");
    }
}

#[test]
fn invalid_name_fails_with_one_line_naming_the_character() {
    for cmd in ["info", "tail", "create", "publish", "rm"] {
        fails_with(&[cmd, "a/b"], "invalid segment name \"a/b\": character '/'");
    }
}

#[test]
fn foreign_file_is_refused_by_commands_and_listed_with_its_error() {
    let t = TestBus::new("insp-foreign");
    let path = shmbus::inspect::segment_path(t.name());
    let _guard = ShmFile(path.clone());
    // Pseudo-random bytes (xorshift), a header's worth and more, with a non-shmbus magic.
    let mut x = 0x2545_f491_4f6c_dd1du64 ^ std::process::id() as u64;
    let junk: Vec<u8> = (0..8192)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect();
    std::fs::write(&path, &junk).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
    for cmd in ["tail", "publish"] {
        fails_with(&[cmd, t.name()], "not a shmbus segment");
    }
    let o = fails_with(&["info", t.name()], "not a shmbus segment");
    let report = stdout(&o);
    assert!(
        report
            .lines()
            .any(|l| l.contains("FAIL") && l.contains("magic")),
        "{report}"
    );
    assert!(
        report
            .lines()
            .any(|l| l.contains("ok") && l.contains("mode")),
        "{report}"
    );
    assert!(
        report
            .lines()
            .any(|l| l.contains("skipped") && l.contains("geometry")),
        "{report}"
    );

    let entry = listed(t.name());
    assert_eq!(entry["kind"], "error");
    assert!(
        entry["error"]
            .as_str()
            .unwrap()
            .contains("not a shmbus segment"),
        "{entry}"
    );
    // Files of other programs only with --all, as "foreign".
    let other = ShmFile(std::path::PathBuf::from(format!(
        "/dev/shm/not-a-bus-{}",
        t.name()
    )));
    std::fs::write(&other.0, b"x").unwrap();
    let file = other.0.file_name().unwrap().to_str().unwrap();
    let find = |args: &[&str]| -> Option<Value> {
        let v: Value = serde_json::from_str(&ok(args)).unwrap();
        v.as_array()
            .unwrap()
            .iter()
            .find(|e| e["file"] == file)
            .cloned()
    };
    assert_eq!(find(&["list", "--json"]), None);
    let foreign = find(&["list", "--all", "--json"]).expect("listed with --all");
    assert_eq!(
        (&foreign["kind"], &foreign["name"]),
        (&Value::from("foreign"), &Value::Null)
    );
    let table = ok(&["list"]);
    assert!(
        table
            .lines()
            .any(|l| l.starts_with(t.name()) && l.contains("error: ")),
        "{table}"
    );
}

#[test]
fn truncated_segments_are_refused_with_their_sizes() {
    let t = TestBus::new("insp-trunc");
    ok(&["create", t.name(), "--slots", "8", "--size", "48"]);
    let path = shmbus::inspect::segment_path(t.name());
    let file = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
    // 4096-byte header + 8 slots of 64 bytes = 4608; cut into the slots.
    file.set_len(4200).unwrap();
    fails_with(&["tail", t.name()], "truncated: 4200 bytes, expected 4608");
    let o = fails_with(&["info", t.name(), "--json"], "truncated");
    let info: Value = serde_json::from_str(&stdout(&o)).unwrap();
    let failed: Vec<&Value> = info["checks"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["status"] == "FAIL")
        .collect();
    assert_eq!(failed.len(), 1, "{failed:?}");
    assert_eq!(failed[0]["check"], "size matches");
    // Shorter than the header itself.
    file.set_len(100).unwrap();
    fails_with(&["tail", t.name()], "truncated: 100 bytes, expected 4096");
    let entry = listed(t.name());
    assert_eq!(entry["kind"], "error");
}

/// A directory removed with everything in it when dropped.
#[test]
fn unreadable_segment_is_permission_denied() {
    use std::os::unix::process::CommandExt;
    let t = TestBus::new("insp-perm");
    ok(&["create", t.name(), "--slots", "8", "--size", "48"]);
    // Root reads any file, whatever its mode: ask as an unprivileged user instead, who may not
    // open a 0600 segment of root's. That user may not reach the build directory (a checkout in
    // a 0700 directory), so it runs a copy of the binary from a directory anyone can read.
    let copy = nix::unistd::geteuid().is_root().then(BinaryCopy::new);
    let mut cmd = match &copy {
        Some(c) => Command::new(&c.path),
        None => Command::new(env!("CARGO_BIN_EXE_shmbus")),
    };
    cmd.args(["tail", t.name()]);
    if copy.is_some() {
        cmd.uid(65534).gid(65534);
    } else {
        let path = shmbus::inspect::segment_path(t.name());
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o000)).unwrap();
    }
    let o = cmd.output().unwrap();
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.starts_with("shmbus: error: permission denied: cannot open read-only"),
        "{err}"
    );
}

#[test]
fn rm_stale_removes_only_stale_buses_of_ours_and_no_symlink_targets() {
    let prefix = format!("test-insp-stale-{}-", std::process::id());
    let stale = TestBus(format!("{prefix}a"));
    let live_creator = TestBus(format!("{prefix}b"));
    let live_producer = TestBus(format!("{prefix}c"));
    let link = ShmFile(shmbus::inspect::segment_path(&format!("{prefix}d")));
    ok(&["create", stale.name(), "--slots", "8", "--size", "8"]);
    // Created by this (live) process: not stale.
    let _held = shmbus::BusBuilder::new(live_creator.name())
        .slots(8)
        .create()
        .unwrap();
    // Creator gone, but a producer attached: not stale.
    ok_with("create", live_producer.name(), "--slots 8 --size 8");
    let p = shmbus::Bus::open(live_producer.name()).unwrap();
    let _producer = p.publisher().unwrap();
    // A symbolic link named like a bus, pointing to the stale one: never followed.
    std::os::unix::fs::symlink(shmbus::inspect::segment_path(stale.name()), &link.0).unwrap();

    let dry = ok(&["rm", "--stale", "--dry-run", "--prefix", &prefix]);
    assert!(
        dry.starts_with(&format!("would remove {}: creator pid ", stale.name()))
            && dry.contains("exited, no producer attached, never published to")
            && dry.lines().count() == 1,
        "{dry}"
    );
    assert!(
        shmbus::inspect::segment_path(stale.name()).exists(),
        "dry run removed something"
    );

    let out = ok(&["rm", "--stale", "--prefix", &prefix]);
    assert_eq!(out, format!("removed {}\n", stale.name()));
    assert!(!shmbus::inspect::segment_path(stale.name()).exists());
    assert!(shmbus::inspect::segment_path(live_creator.name()).exists());
    assert!(shmbus::inspect::segment_path(live_producer.name()).exists());
    assert!(
        link.0.symlink_metadata().is_ok(),
        "the link itself must stay"
    );
    assert_eq!(
        ok(&["rm", "--stale", "--prefix", &prefix]),
        "no stale segments\n"
    );
}

#[test]
fn rm_removes_named_buses_and_reports_the_first_failure() {
    let a = TestBus::new("insp-rm");
    let b = TestBus::new("insp-rm");
    ok(&["create", a.name(), "--slots", "8", "--size", "8"]);
    let o = fails_with(&["rm", a.name(), b.name()], "not found");
    assert_eq!(stdout(&o), format!("removed {}\n", a.name()));
    assert!(!shmbus::inspect::segment_path(a.name()).exists());
}

#[test]
fn create_and_publish_errors_are_one_line() {
    let t = TestBus::new("insp-create");
    fails_with(
        &["create", t.name(), "--slots", "1000", "--size", "8"],
        "power of two",
    );
    ok(&["create", t.name(), "--slots", "8", "--size", "4"]);
    fails_with(
        &["create", t.name(), "--slots", "8", "--size", "4"],
        "already exists",
    );
    fails_with(
        &["publish", t.name(), "toolong"],
        "message is 7 bytes, at most 4 fit",
    );
    let bus = shmbus::Bus::open(t.name()).unwrap();
    let _p = bus.publisher().unwrap();
    fails_with(&["publish", t.name(), "x"], "already has a live producer");
}

#[test]
fn usage_errors_print_the_whole_explanation_with_status_2_and_help_has_examples() {
    let o = shmbus(&["tail"]);
    assert_eq!(o.status.code(), Some(2));
    let err = stderr(&o);
    assert!(err.starts_with("shmbus: error: "), "{err}");
    for want in ["required arguments were not provided", "<NAME>", "Usage:"] {
        assert!(err.contains(want), "usage error lacks {want:?}: {err}");
    }
    let o = shmbus(&["tail", "x", "--format", "xml"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).contains("utf8, hex, json"),
        "the valid values are listed: {}",
        stderr(&o)
    );
    for cmd in [
        "list", "info", "tail", "watch", "hz", "create", "publish", "rm",
    ] {
        let help = ok(&[cmd, "--help"]);
        assert!(
            help.contains("Example"),
            "`shmbus {cmd} --help` has no example:\n{help}"
        );
    }
    let main_help = ok(&["--help"]);
    assert!(main_help.contains("Examples:"));
    assert!(main_help.contains("stale"), "help says what stale means");
    assert!(ok(&["create", "--help"]).contains("ASCII"));
    assert!(ok(&["watch", "--help"]).contains("50 to 60000"));
    assert!(ok(&["hz", "--help"]).contains("0.2 to 3600"));
}

#[test]
fn watch_refuses_to_run_without_a_terminal() {
    let t = TestBus::new("insp-watch");
    ok(&["create", t.name(), "--slots", "8", "--size", "8"]);
    fails_with(&["watch", t.name()], "watch needs a terminal");
}

#[test]
fn checks_report_every_step_and_go_on_past_owner_and_mode() {
    use shmbus::inspect::{checks, CheckStatus};
    let statuses = |name: &str| {
        checks(name)
            .into_iter()
            .map(|c| (c.name, c.status))
            .collect::<Vec<_>>()
    };

    let bad = statuses("no/slash");
    assert_eq!(bad.len(), 14);
    assert_eq!(bad[0], ("name valid", CheckStatus::Fail));
    assert!(
        bad[1..].iter().all(|&(_, s)| s == CheckStatus::Skipped),
        "{bad:?}"
    );

    let t = TestBus::new("insp-checks");
    let missing = statuses(t.name());
    assert_eq!(missing[1], ("exists", CheckStatus::Fail));

    // Writable by others: a default open refuses it, the inspector reads on.
    let _bus = shmbus::BusBuilder::new(t.name())
        .slots(8)
        .capacity(8)
        .permissions(0o666)
        .create()
        .unwrap();
    let all = checks(t.name());
    let mode = all.iter().find(|c| c.name == "mode").unwrap();
    assert_eq!(mode.status, CheckStatus::Fail);
    assert!(mode.detail.contains("0666"), "{mode:?}");
    let rest: Vec<_> = all.iter().filter(|c| c.name != "mode").collect();
    assert!(
        rest.iter().all(|c| c.status == CheckStatus::Pass),
        "{rest:?}"
    );
}

/// Runs a command that must end by `deadline`; a hang is killed and fails the test.
fn shmbus_within(args: &[&str], deadline: Duration) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_shmbus"))
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run shmbus");
    let end = Instant::now() + deadline;
    loop {
        if child.try_wait().expect("wait for shmbus").is_some() {
            return child.wait_with_output().expect("collect output");
        }
        if Instant::now() > end {
            let _ = child.kill();
            let _ = child.wait();
            panic!("shmbus {args:?} still ran after {deadline:?}: it hangs");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn fifo_named_like_a_bus_gets_a_clear_error_from_every_command_instead_of_a_hang() {
    let t = TestBus::new("insp-fifo");
    nix::unistd::mkfifo(&t.path(), nix::sys::stat::Mode::from_bits_truncate(0o600))
        .expect("mkfifo in /dev/shm");
    let name = t.name();
    let deadline = Duration::from_secs(5);
    for args in [
        &["info", name][..],
        &["tail", name],
        &["tail", name, "--follow"],
        &["hz", name, "--window", "0.2", "--count", "1"],
        &["publish", name, "x"],
    ] {
        let o = shmbus_within(args, deadline);
        assert_eq!(o.status.code(), Some(1), "shmbus {args:?}");
        assert!(
            stderr(&o).contains("not a regular file"),
            "shmbus {args:?}: {}",
            stderr(&o)
        );
    }
    for args in [&["list"][..], &["list", "--json"], &["list", "--all"]] {
        let o = shmbus_within(args, deadline);
        assert!(o.status.success(), "shmbus {args:?}: {}", stderr(&o));
        let out = stdout(&o);
        let row = out.lines().find(|l| l.contains(name)).expect("listed");
        assert!(row.contains("not a regular file"), "{row}");
    }
    let o = shmbus_within(
        &["rm", "--stale", "--dry-run", "--prefix", "nomatch"],
        deadline,
    );
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        t.path().symlink_metadata().is_ok(),
        "the FIFO is left alone"
    );
}

#[test]
fn text_file_named_like_a_bus_is_not_a_shmbus_segment() {
    let t = TestBus::new("insp-text");
    std::fs::write(t.path(), b"hello, I am a text file\n").unwrap();
    std::fs::set_permissions(t.path(), std::fs::Permissions::from_mode(0o600)).unwrap();
    for cmd in ["info", "tail", "publish"] {
        fails_with(&[cmd, t.name()], "not a shmbus segment");
    }
}

#[test]
fn rm_with_names_dry_runs_and_refuses_the_stale_only_options_removing_nothing() {
    let t = TestBus::new("insp-rm-dry");
    ok(&["create", t.name(), "--slots", "8", "--size", "8"]);
    // --dry-run with names says what would go and removes nothing.
    assert_eq!(
        ok(&["rm", "--dry-run", t.name()]),
        format!("would remove {}\n", t.name())
    );
    fails_with(&["rm", "--dry-run", "test-insp-rm-dry-never"], "not found");
    fails_with(
        &["rm", "--prefix", "test-", t.name()],
        "--prefix only works with --stale",
    );
    assert!(t.path().exists(), "the bus must still be there");
}

#[test]
fn rm_stale_without_a_scope_is_refused_and_all_idle_removes_idle_created_buses() {
    let prefix = format!("test-insp-scope-{}-", std::process::id());
    let idle = TestBus(format!("{prefix}a"));
    ok(&["create", idle.name(), "--slots", "8", "--size", "8"]);
    fails_with(&["rm", "--stale"], "needs a scope");
    fails_with(&["rm", "--stale", "--dry-run"], "needs a scope");
    assert!(idle.path().exists());
    let dry = ok(&["rm", "--stale", "--all-idle", "--dry-run"]);
    let line = dry
        .lines()
        .find(|l| l.starts_with(&format!("would remove {}:", idle.name())))
        .unwrap_or_else(|| panic!("the idle bus is named in the dry run: {dry}"));
    assert!(line.contains("never published to"), "{line}");
    assert!(idle.path().exists(), "a dry run removes nothing");
}

#[test]
fn publish_to_a_group_writable_bus_names_the_flag_that_trusts_it() {
    let t = TestBus::new("insp-0660");
    ok_with("create", t.name(), "--slots 8 --size 8 --mode 0660");
    let o = fails_with(&["publish", t.name(), "x"], "--accept-shared-write");
    assert!(!stderr(&o).contains("()"), "no Rust method: {}", stderr(&o));
    let out = ok(&["publish", t.name(), "--accept-shared-write", "x"]);
    assert_eq!(
        out,
        format!("published 1 message to {} (seq 0)\n", t.name())
    );
}

#[test]
fn info_warns_about_a_world_writable_bus_and_exits_0() {
    let t = TestBus::new("insp-0666");
    ok_with("create", t.name(), "--slots 8 --size 8 --mode 0666");
    let o = shmbus(&["info", t.name()]);
    assert!(
        o.status.success(),
        "a readable bus is no failure: {}",
        stderr(&o)
    );
    let text = stdout(&o);
    let mode = text
        .lines()
        .find(|l| l.contains(" mode ") && l.contains("0666"))
        .unwrap_or_else(|| panic!("mode check shown: {text}"));
    assert!(mode.trim_start().starts_with("WARN"), "{mode}");
    assert!(mode.contains("--accept-shared-write"), "{mode}");
    assert!(!text.contains("FAIL"), "{text}");
    let info: Value = serde_json::from_str(&ok(&["info", t.name(), "--json"])).unwrap();
    let check = info["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["check"] == "mode")
        .unwrap()
        .clone();
    assert_eq!(check["status"], "WARN");
}

#[test]
fn stdin_publish_refusing_a_line_names_it_and_what_was_published_before() {
    let t = TestBus::new("insp-oversize");
    ok(&["create", t.name(), "--slots", "8", "--size", "4"]);
    let o = with_stdin(&["publish", t.name()], b"a\nbb\ntoolong\nnever\n");
    assert_eq!(o.status.code(), Some(1));
    let err = stderr(&o);
    assert!(
        err.contains("line 3 of stdin: message is 7 bytes, at most 4 fit")
            && err.contains("published 2 messages before it (seq 0..1)"),
        "{err}"
    );
    let lines = json_lines(&ok(&["tail", t.name(), "--json", "--from", "oldest"]));
    assert_eq!(lines.len(), 2, "nothing after the refused line: {lines:?}");
}

#[test]
fn publish_hex_file_repeat_and_rate_send_the_promised_bytes() {
    let t = TestBus::new("insp-pubflags");
    ok(&["create", t.name(), "--slots", "64", "--size", "16"]);
    ok(&["publish", t.name(), "--hex", "00ff10", "CA:FE"]);
    let file = std::env::temp_dir().join(format!("{}.bin", t.name()));
    std::fs::write(&file, b"\x01\x02line\nbreak").unwrap();
    ok(&["publish", t.name(), "--file", file.to_str().unwrap()]);
    let _ = std::fs::remove_file(&file);
    let out = ok(&["publish", t.name(), "r", "--repeat", "3", "--rate", "1000"]);
    assert_eq!(
        out,
        format!("published 3 messages to {} (seq 3..5)\n", t.name())
    );
    let hex: Vec<String> = json_lines(&ok_with(
        "tail",
        t.name(),
        "--json --format hex --from oldest -n 100",
    ))
    .iter()
    .map(|l| l["hex"].as_str().unwrap().to_owned())
    .collect();
    assert_eq!(
        hex,
        [
            "00ff10",
            "cafe",
            "01026c696e650a627265616b",
            "72",
            "72",
            "72"
        ]
    );
    fails_with(
        &["publish", t.name(), "--hex", "abc"],
        "odd number of hex digits",
    );
    let o = shmbus(&["publish", t.name(), "--rate", "0", "x"]);
    assert_eq!(o.status.code(), Some(2), "a rate of 0 is a usage error");
}

#[test]
fn create_says_1_slot_not_1_slots() {
    let t = TestBus::new("insp-one");
    let out = ok(&["create", t.name(), "--slots", "1", "--size", "1"]);
    assert!(out.contains(": 1 slot of 1 byte,"), "{out}");
}

#[test]
fn list_columns_stay_aligned_with_long_names_and_error_rows_apart() {
    let long = TestBus(format!(
        "test-insp-{}-{}",
        std::process::id(),
        "a-very-long-bus-name-that-is-wider-than-any-column".repeat(2)
    ));
    let short = TestBus::new("insp-l");
    let broken = TestBus::new("insp-lbad");
    ok(&["create", long.name(), "--slots", "8", "--size", "8"]);
    ok(&["create", short.name(), "--slots", "1024", "--size", "8"]);
    std::fs::write(broken.path(), [0u8; 16]).unwrap();
    let table = ok(&["list"]);
    let header = table.lines().next().unwrap();
    let col = |line: &str, word: &str| line.find(word);
    let bus_rows: Vec<&str> = table
        .lines()
        .filter(|l| l.starts_with(long.name()) || l.starts_with(short.name()))
        .collect();
    assert_eq!(bus_rows.len(), 2, "{table}");
    // The SLOTS column is right-aligned: every figure ends where its header ends.
    let slots_end = col(header, "SLOTS").unwrap() + "SLOTS".len();
    for row in &bus_rows {
        let cells: Vec<&str> = row.split_whitespace().collect();
        let end = row.find(&format!(" {} ", cells[1])).unwrap() + 1 + cells[1].len();
        assert_eq!(end, slots_end, "misaligned:\n{table}");
    }
    // The damaged segment is listed in its own table, with its error, not in a broken row.
    let bad = table
        .lines()
        .find(|l| l.starts_with(broken.name()))
        .unwrap_or_else(|| panic!("damaged segment listed: {table}"));
    assert!(bad.contains("error: "), "{bad}");
    assert!(table.contains("NOT A READABLE SEGMENT"), "{table}");
}

#[test]
fn list_prefix_shows_only_matching_buses() {
    let prefix = format!("test-insp-pfx-{}-", std::process::id());
    let a = TestBus(format!("{prefix}a"));
    let other = TestBus::new("insp-nopfx");
    ok(&["create", a.name(), "--slots", "8", "--size", "8"]);
    ok(&["create", other.name(), "--slots", "8", "--size", "8"]);
    let v: Value = serde_json::from_str(&ok(&["list", "--json", "--prefix", &prefix])).unwrap();
    let names: Vec<&str> = v
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, [a.name()]);
    let table = ok(&["list", "--prefix", &prefix]);
    assert!(
        table.contains(a.name()) && !table.contains(other.name()),
        "{table}"
    );
}

#[test]
fn hz_json_reports_a_known_publish_rate_within_a_wide_band() {
    let t = TestBus::new("insp-hz");
    let bus = shmbus::BusBuilder::new(t.name())
        .slots(1024)
        .capacity(32)
        .create()
        .unwrap();
    let mut tx = bus.publisher().unwrap();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let stop2 = stop.clone();
    // 200 messages of 20 bytes a second, on an absolute schedule.
    let publisher = std::thread::spawn(move || {
        let start = Instant::now();
        let mut i = 0u32;
        while !stop2.load(std::sync::atomic::Ordering::Relaxed) {
            tx.publish_bytes(&[7u8; 20]).unwrap();
            i += 1;
            let next = start + Duration::from_millis(5) * i;
            std::thread::sleep(next.saturating_duration_since(Instant::now()));
        }
    });
    let out = ok(&["hz", t.name(), "--window", "2", "--count", "1", "--json"]);
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    publisher.join().unwrap();
    let w = json_lines(&out);
    assert_eq!(w.len(), 1, "{out}");
    let w = &w[0];
    let f = |v: &Value, k: &str| {
        v[k].as_f64()
            .unwrap_or_else(|| panic!("`{k}` is not a number: {v}"))
    };
    let r = &w["msgs_per_s"];
    let mean = f(r, "mean");
    // A loaded machine slows the publisher; only gross errors (a wrong unit, a count of zero)
    // fall outside this band.
    assert!((40.0..=400.0).contains(&mean), "mean {mean}: {w}");
    assert!(
        f(r, "min") <= mean && mean <= f(r, "max") && f(r, "stddev") >= 0.0,
        "{w}"
    );
    assert!((1.5..=3.5).contains(&f(w, "window_s")), "{w}");
    assert_eq!(f(w, "mean_len"), 20.0);
    let bytes = f(w, "bytes_per_s");
    assert!((bytes - 20.0 * mean).abs() < 1e-6 * bytes, "{w}");
    assert_eq!(f(w, "lost"), 0.0);
    assert_eq!(f(w, "loss_ratio"), 0.0);
    assert_eq!(w["producers"], 1);
    let messages = f(w, "messages");
    assert!(messages > 0.0 && f(w, "received") <= messages, "{w}");
    assert_eq!(w["name"], t.name());
}

#[test]
fn tail_follow_notices_a_bus_removed_and_created_again() {
    let t = TestBus::new("insp-refollow");
    ok(&["create", t.name(), "--slots", "8", "--size", "16"]);
    ok(&["publish", t.name(), "old"]);
    let mut child = KillOnDrop(
        Command::new(env!("CARGO_BIN_EXE_shmbus"))
            .args(["tail", t.name(), "--follow", "--from", "oldest"])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let rx = line_reader(&mut child.0);
    let err = child.0.stderr.take().unwrap();
    let (etx, erx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(err).lines() {
            let Ok(line) = line else { break };
            if etx.send(line).is_err() {
                break;
            }
        }
    });
    let deadline = Instant::now() + Duration::from_secs(20);
    assert_eq!(next_line(&rx, deadline), "0\t3\told");
    ok(&["rm", t.name()]);
    let removed = erx
        .recv_timeout(deadline - Instant::now())
        .expect("removal noticed");
    assert!(removed.contains("was removed"), "{removed}");
    ok(&["create", t.name(), "--slots", "8", "--size", "16"]);
    ok(&["publish", t.name(), "new"]);
    let again = erx
        .recv_timeout(deadline - Instant::now())
        .expect("re-creation noticed");
    assert!(again.contains("created again"), "{again}");
    assert_eq!(next_line(&rx, deadline), "0\t3\tnew");
}

#[test]
fn readme_says_how_to_put_shmbus_on_path() {
    // The workspace root (where Cargo.lock is) holds the README, wherever this test lives.
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .ancestors()
        .find(|d| d.join("Cargo.lock").exists())
        .expect("a workspace root");
    let readme = std::fs::read_to_string(root.join("README.md")).unwrap();
    assert!(
        readme.contains("cargo install --path"),
        "the README tells how to install the inspector"
    );
}

/// A pseudo-terminal of `cols` x `rows`: (controller, terminal) ends.
fn pty(cols: u16, rows: u16) -> (std::os::fd::OwnedFd, std::os::fd::OwnedFd) {
    use std::os::fd::FromRawFd;
    let (mut controller, mut terminal) = (-1, -1);
    let size = libc::winsize {
        ws_row: rows,
        ws_col: cols,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: both out-pointers are valid for writes; a null name and termios are allowed, and
    // `size` lives across the call.
    let r = unsafe {
        libc::openpty(
            &mut controller,
            &mut terminal,
            std::ptr::null_mut(),
            std::ptr::null(),
            &size,
        )
    };
    assert_eq!(r, 0, "openpty: {}", std::io::Error::last_os_error());
    // SAFETY: openpty succeeded, so both are open descriptors that nothing else owns.
    unsafe {
        (
            std::os::fd::OwnedFd::from_raw_fd(controller),
            std::os::fd::OwnedFd::from_raw_fd(terminal),
        )
    }
}

/// `shmbus args` with stdin and stdout on `terminal` (its controlling terminal, in a session
/// of its own) and stderr piped.
fn spawn_on_pty(args: &[&str], terminal: &std::os::fd::OwnedFd) -> Child {
    use std::os::unix::process::CommandExt;
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_shmbus"));
    cmd.args(args)
        .stdin(Stdio::from(terminal.try_clone().unwrap()))
        .stdout(Stdio::from(terminal.try_clone().unwrap()))
        .stderr(Stdio::piped());
    // SAFETY: between fork and exec the closure only makes async-signal-safe system calls.
    unsafe {
        cmd.pre_exec(|| {
            if libc::setsid() < 0 || libc::ioctl(0, libc::TIOCSCTTY, 0) < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    cmd.spawn().expect("spawn shmbus on a pty")
}

/// Collects everything written to the terminal, on a thread, until it closes.
fn pty_output(controller: std::os::fd::OwnedFd) -> std::sync::Arc<std::sync::Mutex<Vec<u8>>> {
    use std::io::Read;
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let sink = seen.clone();
    std::thread::spawn(move || {
        let mut f = std::fs::File::from(controller);
        let mut buf = [0u8; 4096];
        // EIO once the last process holding the terminal end exits.
        while let Ok(n) = f.read(&mut buf) {
            if n == 0 {
                break;
            }
            sink.lock().unwrap().extend_from_slice(&buf[..n]);
        }
    });
    seen
}

fn wait_for(what: &str, deadline: Instant, mut done: impl FnMut() -> bool) {
    while !done() {
        assert!(Instant::now() < deadline, "gave up waiting for {what}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

#[test]
fn watch_killed_by_sigterm_or_sighup_restores_the_terminal() {
    const ENTER_ALT: &[u8] = b"\x1b[?1049h";
    const LEAVE_ALT: &[u8] = b"\x1b[?1049l";
    const SHOW_CURSOR: &[u8] = b"\x1b[?25h";
    let t = TestBus::new("insp-watch-sig");
    ok(&["create", t.name(), "--slots", "8", "--size", "8"]);
    for sig in [libc::SIGTERM, libc::SIGHUP] {
        let (controller, terminal) = pty(80, 24);
        let mut child = KillOnDrop(spawn_on_pty(&["watch", t.name()], &terminal));
        drop(terminal);
        let seen = pty_output(controller);
        let deadline = Instant::now() + Duration::from_secs(20);
        wait_for("the alternate screen", deadline, || {
            contains(&seen.lock().unwrap(), ENTER_ALT)
        });
        // SAFETY: kill(2) with the pid of our own live child and a valid signal.
        assert_eq!(unsafe { libc::kill(child.0.id() as i32, sig) }, 0);
        wait_for("watch to exit", deadline, || {
            child.0.try_wait().unwrap().is_some()
        });
        wait_for("the terminal restored", deadline, || {
            let out = seen.lock().unwrap();
            let after = out
                .windows(ENTER_ALT.len())
                .rposition(|w| w == ENTER_ALT)
                .map_or(&out[..0], |i| &out[i..]);
            contains(after, LEAVE_ALT) && contains(after, SHOW_CURSOR)
        });
    }
}

#[test]
fn watch_on_a_records_segment_shows_its_ring_and_counts_and_exits_cleanly() {
    let t = TestBus::new("insp-watch-rec");
    ok(&["create", t.name(), "--kind", "records", "--bytes", "8192"]);
    ok(&["publish", t.name(), "abc", "defgh"]);
    let (controller, terminal) = pty(100, 30);
    let mut child = KillOnDrop(spawn_on_pty(&["watch", t.name()], &terminal));
    drop(terminal);
    let seen = pty_output(controller);
    let deadline = Instant::now() + Duration::from_secs(20);
    // The screen is drawn in pieces with cursor moves between them: look for single words.
    for want in [&b"records/s"[..], b"8192", b"2032", b"sampler"] {
        wait_for(&String::from_utf8_lossy(want), deadline, || {
            contains(&seen.lock().unwrap(), want)
        });
    }
    assert!(!contains(&seen.lock().unwrap(), b"messages/s"));
    // SIGTERM ends the loop as `q` does: the terminal is restored and the status is 0.
    // SAFETY: kill(2) with the pid of our own live child and a valid signal.
    assert_eq!(unsafe { libc::kill(child.0.id() as i32, libc::SIGTERM) }, 0);
    wait_for("watch to exit", deadline, || {
        child.0.try_wait().unwrap().is_some()
    });
    assert_eq!(child.0.wait().unwrap().code(), Some(0));
}

#[test]
fn watch_in_a_zero_sized_terminal_says_so() {
    let t = TestBus::new("insp-watch-0x0");
    ok(&["create", t.name(), "--slots", "8", "--size", "8"]);
    let (controller, terminal) = pty(0, 0);
    let mut child = KillOnDrop(spawn_on_pty(&["watch", t.name()], &terminal));
    drop(terminal);
    let _seen = pty_output(controller);
    // Drawing nothing forever was the bug: a deadline turns that into a failure.
    let deadline = Instant::now() + Duration::from_secs(20);
    wait_for("watch to exit", deadline, || {
        child.0.try_wait().unwrap().is_some()
    });
    let mut err = String::new();
    std::io::Read::read_to_string(&mut child.0.stderr.take().unwrap(), &mut err).unwrap();
    assert_eq!(child.0.wait().unwrap().code(), Some(1));
    assert!(
        err.contains("the terminal is 0x0: watch has nowhere to draw"),
        "{err}"
    );
}

#[test]
fn list_watch_keeps_listing_and_shows_a_bus_created_meanwhile() {
    let prefix = format!("test-insp-lw-{}-", std::process::id());
    let bus = TestBus(format!("{prefix}a"));
    let mut child = KillOnDrop(
        Command::new(env!("CARGO_BIN_EXE_shmbus"))
            .args([
                "list",
                "--watch",
                "--json",
                "--interval-ms",
                "100",
                "--prefix",
                &prefix,
            ])
            .stdout(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let rx = line_reader(&mut child.0);
    let deadline = Instant::now() + Duration::from_secs(20);
    assert_eq!(next_line(&rx, deadline), "[]");
    ok(&["create", bus.name(), "--slots", "8", "--size", "8"]);
    loop {
        let v: Value = serde_json::from_str(&next_line(&rx, deadline)).unwrap();
        if let Some(e) = v.as_array().unwrap().first() {
            assert_eq!(e["name"], bus.name());
            break;
        }
    }
}

#[test]
fn tail_follow_waits_for_a_segment_that_does_not_exist_yet_like_tail_capital_f() {
    for kind in ["bus", "records"] {
        let t = TestBus::new("insp-notyet");
        let mut child = KillOnDrop(
            Command::new(env!("CARGO_BIN_EXE_shmbus"))
                .args(["tail", t.name(), "--follow"])
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap(),
        );
        let rx = line_reader(&mut child.0);
        let erx = stderr_reader(&mut child.0);
        let deadline = Instant::now() + Duration::from_secs(20);
        let said = erx
            .recv_timeout(deadline - Instant::now())
            .expect("a note that it waits");
        assert!(said.contains("does not exist yet; waiting"), "{said}");
        assert!(
            child.0.try_wait().unwrap().is_none(),
            "{kind}: tail --follow exited instead of waiting"
        );
        ok(&["create", t.name(), "--kind", kind]);
        ok(&["publish", t.name(), "first", "second"]);
        // Everything in a segment made after tail started is new: printed from the oldest.
        assert_eq!(next_line(&rx, deadline), "0\t5\tfirst", "{kind}");
        assert_eq!(next_line(&rx, deadline), "1\t6\tsecond", "{kind}");
        // SAFETY: kill(2) with the pid of our own live child and a valid signal.
        assert_eq!(unsafe { libc::kill(child.0.id() as i32, libc::SIGTERM) }, 0);
        wait_for("tail to exit", deadline, || {
            child.0.try_wait().unwrap().is_some()
        });
        assert_eq!(child.0.wait().unwrap().code(), Some(0), "{kind}");
    }
    // Without --follow a missing segment is still an error at once.
    fails_with(&["tail", "test-insp-never-made"], "not found");
}

#[test]
fn list_prefix_without_a_match_says_so_rather_than_that_dev_shm_is_empty() {
    let other = TestBus::new("insp-nomatch");
    ok(&["create", other.name(), "--slots", "8", "--size", "8"]);
    let prefix = format!("test-insp-none-{}-", std::process::id());
    let out = ok(&["list", "--prefix", &prefix]);
    assert_eq!(
        out,
        format!("no segment name starts with {prefix:?} in /dev/shm\n")
    );
}

#[test]
fn rm_of_a_segment_in_use_removes_it_and_warns_naming_who_uses_it() {
    let bus = TestBus::new("insp-rm-live");
    ok(&["create", bus.name(), "--slots", "8", "--size", "8"]);
    let b = shmbus::Bus::open(bus.name()).unwrap();
    let _tx = b.publisher().unwrap();
    let rec = TestBus::new("insp-rm-live-rec");
    ok(&["create", rec.name(), "--kind", "records", "--bytes", "4096"]);
    let r = shmbus::records::Records::open(rec.name()).unwrap();
    let _rtx = r.publisher().unwrap();
    let idle = TestBus::new("insp-rm-idle");
    ok(&["create", idle.name(), "--slots", "8", "--size", "8"]);

    let o = shmbus(&["rm", bus.name(), rec.name(), idle.name()]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(
        stdout(&o),
        format!(
            "removed {}\nremoved {}\nremoved {}\n",
            bus.name(),
            rec.name(),
            idle.name()
        )
    );
    let err = stderr(&o);
    let lines: Vec<&str> = err.lines().collect();
    assert_eq!(lines.len(), 2, "one warning per segment in use: {err}");
    assert!(
        lines[0].starts_with("shmbus: warning: ")
            && lines[0].contains(bus.name())
            && lines[0].contains(&format!("a live producer (pid {})", std::process::id())),
        "{err}"
    );
    assert!(
        lines[1].contains(rec.name()) && lines[1].contains("a live producer"),
        "{err}"
    );
    assert!(!err.contains(idle.name()), "{err}");
    for t in [&bus, &rec, &idle] {
        assert!(!t.path().exists(), "{} was removed", t.name());
    }
}

/// Whether the terminal `fd` is in canonical mode with echo (as a shell leaves it).
fn canonical_with_echo(fd: &std::os::fd::OwnedFd) -> bool {
    use std::os::fd::AsRawFd;
    // SAFETY: an all-zero termios is valid to be overwritten; fd is an open terminal.
    let mut t: libc::termios = unsafe { std::mem::zeroed() };
    assert_eq!(unsafe { libc::tcgetattr(fd.as_raw_fd(), &mut t) }, 0);
    t.c_lflag & libc::ICANON != 0 && t.c_lflag & libc::ECHO != 0
}

#[test]
fn q_quits_list_watch_and_board_watch_and_leaves_the_terminal_as_it_was() {
    let board = TestBus::new("insp-q-board");
    ok(&["create", board.name(), "--kind", "board", "--cells", "2"]);
    let list_args = ["list", "--watch", "--prefix", board.name()];
    let board_args = ["board", board.name(), "--watch"];
    for args in [&list_args[..], &board_args[..]] {
        let (controller, terminal) = pty(100, 30);
        let mut keyboard = std::fs::File::from(controller.try_clone().unwrap());
        let mut child = KillOnDrop(spawn_on_pty(args, &terminal));
        let seen = pty_output(controller);
        let deadline = Instant::now() + Duration::from_secs(20);
        wait_for("the first listing", deadline, || {
            contains(&seen.lock().unwrap(), b"(q to quit)")
        });
        keyboard.write_all(b"q").unwrap();
        wait_for("q to end it", deadline, || {
            child.0.try_wait().unwrap().is_some()
        });
        assert_eq!(child.0.wait().unwrap().code(), Some(0), "{args:?}");
        assert!(
            canonical_with_echo(&terminal),
            "{args:?} left the terminal without line editing or echo"
        );
    }
}

#[test]
fn cli_words_counts_and_pointers_speak_to_users() {
    let t = TestBus::new("insp-words");
    ok(&["create", t.name(), "--slots", "8", "--size", "8"]);
    for (args, want) in [
        (
            vec!["publish", t.name(), "x", "--repeat", "0"],
            "at least 1, got 0",
        ),
        (vec!["tail", t.name(), "-n", "-1"], "0 or more, got \"-1\""),
    ] {
        let o = shmbus(&args);
        let err = stderr(&o);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {err}");
        assert!(err.contains(want), "{args:?}: {err}");
        assert!(!err.contains("tip:"), "{args:?}: {err}");
    }
    let q = TestBus::new("insp-words-q");
    ok_with("create", q.name(), "--kind queue --slots 4 --size 8");
    assert_eq!(
        ok(&["push", q.name(), "one"]),
        format!("pushed 1 item to queue {}\n", q.name())
    );
    assert_eq!(ok(&["pop", q.name()]), "3\tone\n");
    let o = shmbus(&["pop", q.name()]);
    assert!(o.status.success());
    assert_eq!(stdout(&o), "");
    assert!(stderr(&o).contains("is empty"), "{}", stderr(&o));
    let b = TestBus::new("insp-words-b");
    ok(&["create", b.name(), "--kind", "board", "--cells", "1"]);
    for cmd in ["watch", "hz"] {
        fails_with(
            &[cmd, b.name()],
            &format!("is a board; {cmd} reads buses and records segments (use `shmbus board"),
        );
    }
    fails_with(&["watch", t.name()], "shmbus hz NAME --json");
}

#[test]
fn last_publish_of_a_slow_steady_producer_is_recent_in_list_and_info() {
    for kind in ["bus", "records"] {
        let t = TestBus::new("insp-last");
        ok(&["create", t.name(), "--kind", kind]);
        // 20 per second: far fewer than the 1024 publishes between two activity stamps.
        let mut producer = KillOnDrop(
            Command::new(env!("CARGO_BIN_EXE_shmbus"))
                .args([
                    "publish",
                    t.name(),
                    "tick",
                    "--repeat",
                    "100000",
                    "--rate",
                    "20",
                ])
                .stdout(Stdio::null())
                .spawn()
                .unwrap(),
        );
        let deadline = Instant::now() + Duration::from_secs(20);
        let entry = |json: &str| -> Value {
            let v: Value = serde_json::from_str(json).unwrap();
            v[0][kind].clone()
        };
        // Let the producer's attach stamp age well past the sampling period.
        std::thread::sleep(Duration::from_millis(1500));
        let e = entry(&ok(&["list", "--json", "--prefix", t.name()]));
        let last = &e["last_publish"];
        assert_eq!(last["min_ns_ago"], 0, "{kind}: moved while sampled: {e}");
        let max = last["max_ns_ago"].as_u64().expect("an upper bound");
        assert!(max < 1_000_000_000, "{kind}: {e}");
        let rate = last["per_s"].as_f64().unwrap();
        assert!((5.0..=60.0).contains(&rate), "{kind}: {e}");
        let table = ok(&["list", "--prefix", t.name()]);
        let row = table.lines().find(|l| l.starts_with(t.name())).unwrap();
        assert!(
            row.contains(" <2"),
            "{kind}: LAST is '<200ms' or so: {table}"
        );
        let info = ok(&["info", t.name()]);
        assert!(info.contains("ms ago, "), "{kind}: {info}");
        // Stopped: not seen moving while sampled.
        producer.0.kill().unwrap();
        producer.0.wait().unwrap();
        wait_for("the producer's slot to be free", deadline, || {
            let e = entry(&ok(&["list", "--json", "--prefix", t.name()]));
            e["last_publish"]["max_ns_ago"].is_null()
        });
        let table = ok(&["list", "--prefix", t.name()]);
        let row = table.lines().find(|l| l.starts_with(t.name())).unwrap();
        assert!(row.contains(" >2"), "{kind}: {table}");
        assert!(
            ok(&["info", t.name()]).contains("none in the last 2"),
            "{kind}"
        );
    }
}

#[test]
fn the_readme_records_example_publishes_a_5000_byte_record() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .ancestors()
        .find(|d| d.join("Cargo.lock").exists())
        .expect("a workspace root");
    let readme = std::fs::read_to_string(root.join("README.md")).unwrap();
    let line = readme
        .lines()
        .find(|l| l.starts_with("shmbus publish log "))
        .expect("the README's records example");
    let t = TestBus::new("insp-readme-log");
    ok(&["create", t.name(), "--kind", "records"]);
    // The README's line as a shell runs it, on our segment and binary.
    let script = line.replacen("shmbus publish log", "\"$SHMBUS\" publish \"$NAME\"", 1);
    let o = Command::new("bash")
        .args(["-c", &script])
        .env("SHMBUS", env!("CARGO_BIN_EXE_shmbus"))
        .env("NAME", t.name())
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        stderr(&o).is_empty(),
        "the shell complained: {}",
        stderr(&o)
    );
    let lens: Vec<String> = ok(&["tail", t.name(), "--from", "oldest"])
        .lines()
        .map(|l| l.split('\t').nth(1).unwrap().to_owned())
        .collect();
    assert_eq!(lens, ["14", "5000"]);
}

#[test]
fn completions_and_man_pages_cover_every_command_and_option() {
    let bash = ok(&["completions", "bash"]);
    let wants = "_shmbus create --cells --keys --sample-ms completions";
    assert_contains_all("bash completions", &bash, wants.split(' '));
    for shell in ["zsh", "fish", "elvish", "powershell"] {
        assert!(ok(&["completions", shell]).contains("shmbus"), "{shell}");
    }
    let o = shmbus(&["completions", "tcsh"]);
    assert_eq!(
        o.status.code(),
        Some(2),
        "an unknown shell is a usage error"
    );
    let man = ok(&["man"]);
    assert!(man.starts_with(".ie") || man.starts_with(".TH"), "{man}");
    assert!(man.contains(".TH shmbus 1"), "{man}");
    assert!(man.contains("records"), "{man}");
    let dir = std::env::temp_dir().join(format!("shmbus-man-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let said = ok(&["man", "--dir", dir.to_str().unwrap()]);
    assert!(said.starts_with("wrote "), "{said}");
    let create = std::fs::read_to_string(dir.join("shmbus-create.1")).unwrap();
    assert!(
        create.contains(r"\-\-cells") && create.contains("board"),
        "{create}"
    );
    assert!(dir.join("shmbus.1").exists() && dir.join("shmbus-tail.1").exists());
    let _ = std::fs::remove_dir_all(&dir);
    fails_with(
        &["man", "--dir", "/nonexistent-shmbus-dir"],
        "cannot write /nonexistent-shmbus-dir/",
    );
}

#[test]
fn every_command_that_prints_data_prints_json_with_json() {
    let one = |cmd: &str, name: &str, rest: &str| -> Value {
        let out = ok_with(cmd, name, rest);
        let lines = json_lines(&out);
        assert_eq!(lines.len(), 1, "{cmd} {name} {rest}: {out}");
        lines.into_iter().next().unwrap()
    };
    let bus = TestBus::new("insp-json-bus");
    let v = one("create", bus.name(), "--slots 8 --size 16 --json");
    assert_eq!(
        (v["kind"].as_str(), v["slots"].as_u64()),
        (Some("bus"), Some(8))
    );
    let v = one("publish", bus.name(), "a b --json");
    assert_eq!(
        (v["published"].as_u64(), v["last_seq"].as_u64()),
        (Some(2), Some(1))
    );
    let rec = TestBus::new("insp-json-rec");
    let v = one("create", rec.name(), "--kind records --bytes 4096 --json");
    assert_eq!(v["max_record"], 1008);
    let v = one("publish", rec.name(), "--hex cafe --json");
    assert_eq!(
        (v["kind"].as_str(), v["published"].as_u64()),
        (Some("records"), Some(1))
    );
    let q = TestBus::new("insp-json-q");
    let v = one("create", q.name(), "--kind queue --slots 4 --size 8 --json");
    assert_eq!(v["capacity"], 4);
    assert_eq!(one("push", q.name(), "x y --json")["pushed"], 2);
    let b = TestBus::new("insp-json-board");
    let v = one("create", b.name(), "--kind board --keys k --json");
    assert_eq!(v["cells"], 1);
    let v = one("set", b.name(), "k v --json");
    assert_eq!(
        (v["cell"].as_u64(), v["version"].as_u64()),
        (Some(0), Some(1))
    );
    let out = ok(&["rm", bus.name(), rec.name(), q.name(), b.name(), "--json"]);
    let removed: Vec<Value> = json_lines(&out);
    assert_eq!(removed.len(), 4, "{out}");
    assert!(removed.iter().all(|v| v["removed"] == true), "{out}");
}

#[test]
fn publish_interrupted_says_what_it_published_and_a_shared_bus_says_ranges_interleave() {
    let t = TestBus::new("insp-pub-int");
    ok(&["create", t.name(), "--slots", "1024", "--size", "16"]);
    let child = Command::new(env!("CARGO_BIN_EXE_shmbus"))
        .args([
            "publish",
            t.name(),
            "tick",
            "--repeat",
            "1000",
            "--rate",
            "100",
        ])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let bus = shmbus::inspect::open_for_inspection(t.name()).unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    wait_for("a few publishes", deadline, || bus.cursor() >= 3);
    // SAFETY: kill(2) with the pid of our own live child and a valid signal.
    assert_eq!(unsafe { libc::kill(child.id() as i32, libc::SIGINT) }, 0);
    let o = child.wait_with_output().unwrap();
    assert_eq!(o.status.code(), Some(0));
    let out = stdout(&o);
    let n = bus.cursor();
    assert!(n < 1000, "stopped early");
    assert_eq!(
        out,
        format!(
            "published {n} messages to {} (seq 0..{}) (interrupted)\n",
            t.name(),
            n - 1
        )
    );
    let mp = TestBus::new("insp-pub-mp");
    ok_with("create", mp.name(), "--slots 8 --size 8 --multi-producer");
    let out = ok(&["publish", mp.name(), "a", "b"]);
    assert!(
        out.contains("(seq 0..1, interleaved with other producers')"),
        "{out}"
    );
}

#[test]
fn tail_from_a_sequence_not_published_yet_says_so_on_stderr() {
    for kind in ["bus", "records"] {
        let t = TestBus::new("insp-tail-ahead");
        ok(&["create", t.name(), "--kind", kind]);
        ok(&["publish", t.name(), "a", "b"]);
        let o = shmbus(&["tail", t.name(), "--from", "100"]);
        assert!(o.status.success(), "{kind}");
        assert_eq!(stdout(&o), "", "{kind}");
        assert!(
            stderr(&o).contains("seq 100 is not published yet (the next is 2)"),
            "{kind}: {}",
            stderr(&o)
        );
        let o = shmbus(&["tail", t.name(), "--from", "1"]);
        assert_eq!(
            (stdout(&o).as_str(), stderr(&o).as_str()),
            ("1\t1\tb\n", "")
        );
    }
}

#[test]
fn ctrl_c_ends_a_publish_that_waits_for_stdin() {
    let t = TestBus::new("insp-pub-stdin-int");
    ok(&["create", t.name(), "--slots", "8", "--size", "8"]);
    let mut child = KillOnDrop(
        Command::new(env!("CARGO_BIN_EXE_shmbus"))
            .args(["publish", t.name()])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let bus = shmbus::inspect::open_for_inspection(t.name()).unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    wait_for("the producer to attach", deadline, || bus.has_producers());
    // stdin stays open and silent: the interrupt alone must end the command.
    // SAFETY: kill(2) with the pid of our own live child and a valid signal.
    assert_eq!(unsafe { libc::kill(child.0.id() as i32, libc::SIGINT) }, 0);
    wait_for("publish to end", deadline, || {
        child.0.try_wait().unwrap().is_some()
    });
}

#[test]
fn create_wakeup_fence_is_stored_and_shown_and_refused_on_other_kinds() {
    let b = TestBus::new("cli-wakeup");
    let created: Value =
        serde_json::from_str(&ok(&["create", b.name(), "--wakeup", "fence", "--json"])).unwrap();
    assert_eq!(created["wakeup"], "fence", "{created}");
    let info: Value = serde_json::from_str(&ok(&["info", b.name(), "--json"])).unwrap();
    assert_eq!(info["header"]["wakeup"], "fence", "{info}");
    assert!(ok(&["info", b.name()]).contains("wake-up"));
    let d = TestBus::new("cli-wakeup-default");
    ok(&["create", d.name()]);
    let info: Value = serde_json::from_str(&ok(&["info", d.name(), "--json"])).unwrap();
    assert_eq!(info["header"]["wakeup"], "barrier", "{info}");
    let q = TestBus::new("cli-wakeup-queue");
    fails_with(
        &["create", q.name(), "--kind", "queue", "--wakeup", "fence"],
        "--wakeup does not apply to --kind queue (only to bus)",
    );
}

#[test]
fn publish_to_a_typed_bus_takes_values_of_exactly_its_size() {
    let b = TestBus::new("cli-typed-publish");
    let bus = shmbus::BusBuilder::new(b.name())
        .message_type::<[u32; 2]>()
        .type_name("Pair")
        .create()
        .unwrap();
    let mut rx = bus.subscribe(shmbus::Start::Next);
    ok(&["publish", b.name(), "--hex", "0700000009000000"]);
    match rx.try_recv() {
        shmbus::Recv::Message(m) => assert_eq!(*m, [7, 9]),
        other => panic!("expected the value, got {other:?}"),
    }
    fails_with(
        &["publish", b.name(), "--hex", "07000000"],
        "carries values of type Pair, exactly 8 bytes each",
    );
    assert!(matches!(rx.try_recv(), shmbus::Recv::Empty));
}

#[test]
fn push_and_pop_on_a_typed_queue_take_values_of_exactly_its_size() {
    let q = TestBus::new("cli-typed-queue");
    let queue = shmbus::QueueBuilder::new(q.name())
        .item_type::<[u32; 2]>()
        .capacity(8)
        .create()
        .unwrap();
    ok(&["push", q.name(), "--hex", "0700000009000000"]);
    fails_with(
        &["push", q.name(), "--hex", "070000"],
        "item 1 is 3 bytes, but the queue carries items of a type 8 bytes long",
    );
    let mut rx = queue.receiver().unwrap();
    assert_eq!(rx.try_recv(), Some(&[7u32, 9]));
    queue.sender().unwrap().try_send([1, 2]).unwrap();
    let out = ok(&["pop", q.name(), "--format", "hex"]);
    assert!(out.contains("0100000002000000"), "{out}");
}

#[test]
fn info_names_a_producer_stalled_mid_publish_on_a_multi_producer_bus() {
    let t = TestBus::new("cli-bus-stall");
    let bus = shmbus::BusBuilder::new(t.name())
        .slots(8)
        .multi_producer()
        .create()
        .unwrap();
    let info = || -> Value {
        serde_json::from_str(&ok(&["info", t.name(), "--json", "--sample-ms", "20"])).unwrap()
    };
    assert_eq!(info()["stalled"], serde_json::json!([]));
    let mut tx = bus.publisher().unwrap();
    let index = u64::from(tx.producer_index());
    // The fill stops inside: it holds sequence 0's slot, as a producer stopped mid-publish does.
    let writer = park(move |gate| {
        tx.publish_with(|w| {
            w.write_at(0, b"slow").unwrap();
            gate.stop_here();
        })
        .map(|(seq, ())| seq)
    });
    let got = info();
    let pid = u64::from(std::process::id());
    let stalled = &got["stalled"];
    assert_eq!(stalled.as_array().map(Vec::len), Some(1), "{got}");
    assert_eq!(
        (
            stalled[0]["index"].as_u64(),
            stalled[0]["pid"].as_u64(),
            stalled[0]["role"].as_str(),
            stalled[0]["position"].as_u64(),
            stalled[0]["state"].as_str(),
        ),
        (
            Some(index),
            Some(pid),
            Some("producer"),
            Some(0),
            Some("writing")
        ),
        "{got}"
    );
    assert!(stalled[0]["held_ms_at_least"].as_f64().unwrap() >= 20.0);
    let text = ok(&["info", t.name(), "--sample-ms", "20"]);
    assert!(
        text.contains(&format!(
            "pid {pid} producer #{index} holds sequence 0 (writing its slot) for at least"
        )),
        "{text}"
    );
    assert_eq!(writer.release(), Some(0));
    assert_eq!(info()["stalled"], serde_json::json!([]));
}

#[test]
fn watch_on_a_queue_shows_a_stalled_sender_and_its_age() {
    let t = TestBus::new("insp-watch-queue");
    ok(&[
        "create",
        t.name(),
        "--kind",
        "queue",
        "--slots",
        "4",
        "--size",
        "16",
    ]);
    let q = shmbus::Queue::open(t.name()).unwrap();
    let stalled = q.sender().unwrap();
    // A live sender (this process holds its entry) that took position 0 and stopped.
    let f = support::forge::Forger::new(&t);
    queue_words::claim_send(&f, stalled.index(), 0);
    let (controller, terminal) = pty(160, 30);
    let mut child = KillOnDrop(spawn_on_pty(
        &["watch", t.name(), "--interval-ms", "50"],
        &terminal,
    ));
    drop(terminal);
    let seen = pty_output(controller);
    let deadline = Instant::now() + Duration::from_secs(20);
    // The screen is drawn in pieces with cursor moves between them: look for single words.
    // "stalled ... holds position 0 (claimed, not published) for ..." once seen twice.
    for want in [&b"queue"[..], b"stalled", b"published)"] {
        wait_for(&String::from_utf8_lossy(want), deadline, || {
            contains(&seen.lock().unwrap(), want)
        });
    }
    // SAFETY: kill(2) with the pid of our own live child and a valid signal.
    assert_eq!(unsafe { libc::kill(child.0.id() as i32, libc::SIGTERM) }, 0);
    wait_for("watch to exit", deadline, || {
        child.0.try_wait().unwrap().is_some()
    });
    assert_eq!(child.0.wait().unwrap().code(), Some(0));
    fails_with(
        &["hz", t.name()],
        "is a queue; hz reads buses and records segments",
    );
    drop(stalled);
}
