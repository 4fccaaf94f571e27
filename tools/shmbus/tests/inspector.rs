//! The `shmbus` inspector binary, driven as a user would: real processes, real `/dev/shm`.

use shmbus_testkit as support;

use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::PermissionsExt;
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::Value;
use support::TestBus;

fn shmbus(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_shmbus"))
        .args(args)
        .output()
        .expect("run shmbus")
}

fn stdout(o: &Output) -> String {
    String::from_utf8(o.stdout.clone()).expect("stdout is UTF-8")
}

fn stderr(o: &Output) -> String {
    String::from_utf8(o.stderr.clone()).expect("stderr is UTF-8")
}

/// Runs a command that must succeed and returns its stdout.
fn ok(args: &[&str]) -> String {
    let o = shmbus(args);
    assert!(o.status.success(), "shmbus {args:?} failed: {}", stderr(&o));
    stdout(&o)
}

/// Runs a command that must fail with status 1 and exactly one stderr line containing `want`.
fn fails_with(args: &[&str], want: &str) -> Output {
    let o = shmbus(args);
    let err = stderr(&o);
    assert_eq!(
        o.status.code(),
        Some(1),
        "shmbus {args:?}: status {:?}, stderr {err}",
        o.status
    );
    assert_eq!(
        err.lines().count(),
        1,
        "shmbus {args:?}: want one stderr line, got {err:?}"
    );
    assert!(
        err.starts_with("shmbus: error: "),
        "shmbus {args:?}: {err:?}"
    );
    assert!(
        err.contains(want),
        "shmbus {args:?}: {err:?} lacks {want:?}"
    );
    o
}

fn json_lines(s: &str) -> Vec<Value> {
    s.lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("bad JSON line {l:?}: {e}")))
        .collect()
}

/// A child process killed when the test ends, pass or fail.
struct KillOnDrop(Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A file in /dev/shm removed when the test ends (for files that are not buses).
struct ShmFile(std::path::PathBuf);

impl Drop for ShmFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// Reads a child's stdout lines on a thread, so the test can wait for each with a deadline.
fn line_reader(child: &mut Child) -> mpsc::Receiver<String> {
    let out = child.stdout.take().expect("piped stdout");
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(out).lines() {
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
    let out = ok(&[
        "create",
        t.name(),
        "--slots",
        "16",
        "--size",
        "100",
        "--multi-producer",
        "--mode",
        "0640",
    ]);
    assert!(out.contains(&format!("created bus {}", t.name())), "{out}");
    ok(&["publish", t.name(), "one", "two"]);
    let mut p = Command::new(env!("CARGO_BIN_EXE_shmbus"))
        .args(["publish", t.name()])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    p.stdin
        .take()
        .unwrap()
        .write_all(b"three\r\n{\"k\":[1,2]}\n")
        .unwrap();
    assert!(p.wait_with_output().unwrap().status.success());

    let list: Value = serde_json::from_str(&ok(&["list", "--json"])).unwrap();
    let entry = list
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["name"] == t.name())
        .expect("bus listed");
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
    for key in ["last_publish_ns_ago", "creator_pid", "producers", "cursor"] {
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

    let lines = json_lines(&ok(&[
        "tail",
        t.name(),
        "--json",
        "--format",
        "json",
        "--from",
        "oldest",
    ]));
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
        fails_with(&[cmd, "a/b"], "invalid bus name \"a/b\": character '/'");
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

    let list: Value = serde_json::from_str(&ok(&["list", "--json"])).unwrap();
    let entry = list
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["name"] == t.name())
        .expect("listed");
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
    let list: Value = serde_json::from_str(&ok(&["list", "--json"])).unwrap();
    let entry = list
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["name"] == t.name())
        .expect("listed");
    assert_eq!(entry["kind"], "error");
}

/// A directory removed with everything in it when dropped.
struct TempDir(std::path::PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[test]
fn unreadable_segment_is_permission_denied() {
    use std::os::unix::process::CommandExt;
    let t = TestBus::new("insp-perm");
    ok(&["create", t.name(), "--slots", "8", "--size", "48"]);
    // Root reads any file, whatever its mode: ask as an unprivileged user instead, who may not
    // open a 0600 segment of root's. That user may not reach the build directory (a checkout in
    // a 0700 directory), so it runs a copy of the binary from a directory anyone can read.
    let copy = nix::unistd::geteuid().is_root().then(|| {
        let dir = std::env::temp_dir().join(format!("shmbus-insp-perm-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
        let exe = dir.join("shmbus");
        std::fs::copy(env!("CARGO_BIN_EXE_shmbus"), &exe).unwrap();
        std::fs::set_permissions(&exe, std::fs::Permissions::from_mode(0o755)).unwrap();
        TempDir(dir)
    });
    let mut cmd = match &copy {
        Some(dir) => Command::new(dir.0.join("shmbus")),
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
    ok(&[
        "create",
        live_producer.name(),
        "--slots",
        "8",
        "--size",
        "8",
    ]);
    let p = shmbus::Bus::open(live_producer.name()).unwrap();
    let _producer = p.publisher().unwrap();
    // A symbolic link named like a bus, pointing to the stale one: never followed.
    std::os::unix::fs::symlink(shmbus::inspect::segment_path(stale.name()), &link.0).unwrap();

    let dry = ok(&["rm", "--stale", "--dry-run", "--prefix", &prefix]);
    assert_eq!(dry, format!("would remove {}\n", stale.name()));
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
        "no stale buses\n"
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
        "message is 7 bytes, a slot holds 4",
    );
    let bus = shmbus::Bus::open(t.name()).unwrap();
    let _p = bus.publisher().unwrap();
    fails_with(&["publish", t.name(), "x"], "already has a live producer");
}

#[test]
fn usage_errors_are_one_line_with_status_2_and_help_has_examples() {
    let o = shmbus(&["tail"]);
    assert_eq!(o.status.code(), Some(2));
    let err = stderr(&o);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.starts_with("shmbus: error: "), "{err}");
    for cmd in ["list", "info", "tail", "watch", "create", "publish", "rm"] {
        let help = ok(&[cmd, "--help"]);
        assert!(
            help.contains("Example"),
            "`shmbus {cmd} --help` has no example:\n{help}"
        );
    }
    assert!(ok(&["--help"]).contains("Examples:"));
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
