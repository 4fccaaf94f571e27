//! The soak of the bench binary as a test: real producer and consumer processes, producers
//! killed and replaced, every message checked for tearing, duplication and order.

/// The soak of `shmbus-bench soak` (producer and consumer processes, random consumer stalls,
/// producers killed and replaced), for 3 seconds (`SHMBUS_SOAK_SECS` for longer).
/// `SHMBUS_BENCH_EXE` may name another build of the bench binary.
#[test]
fn short_soak_with_producer_kills_has_no_torn_duplicated_or_reordered_message() {
    let exe = std::env::var("SHMBUS_BENCH_EXE")
        .unwrap_or_else(|_| env!("CARGO_BIN_EXE_shmbus-bench").to_owned());
    let seconds = std::env::var("SHMBUS_SOAK_SECS").unwrap_or_else(|_| "3".into());
    let out = std::process::Command::new(&exe)
        .args(["soak", "--seconds", &seconds, "--kill-every-ms", "250"])
        .args(["--rate", "20000", "--slots", "1024", "--max-stall-ms", "5"])
        .output()
        .expect("run shmbus-bench soak");
    let text = String::from_utf8_lossy(&out.stdout);
    eprintln!("{text}");
    assert!(
        out.status.success(),
        "soak failed: {}\n{text}",
        String::from_utf8_lossy(&out.stderr)
    );
    let total = text
        .lines()
        .find(|l| l.trim_start().starts_with("total:"))
        .expect("soak total line");
    let count = |key: &str| -> u64 {
        let mut words = total.split_whitespace();
        words.find(|w| *w == key);
        words
            .next()
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("no {key} in {total:?}"))
    };
    for zero in ["torn", "duplicated", "reordered"] {
        assert_eq!(count(zero), 0, "{total}");
    }
    assert!(count("received") > 0, "{total}");
}

/// Runs a soak of `args` with `--json` and returns its report, failing on a nonzero exit.
fn soak_json(args: &[&str]) -> serde_json::Value {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_shmbus-bench"))
        .arg("soak")
        .args(args)
        .arg("--json")
        .output()
        .expect("run shmbus-bench soak");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "soak {args:?} failed: {}\n{stdout}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("not JSON ({e}): {stdout}"))
}

/// Producers stopped and continued at random on a multi-producer bus with a short stall bound:
/// consumers pass stopped producers' sequences, and still nothing is torn or duplicated and
/// every consumer's books balance.
#[test]
fn bus_soak_with_producers_stopped_past_the_bound_has_no_torn_or_duplicated_message() {
    let v = soak_json(&[
        "--seconds",
        "2",
        "--producers",
        "3",
        "--consumers",
        "2",
        "--stop-every-ms",
        "50",
        "--max-stop-ms",
        "300",
        "--stall-bound-ms",
        "50",
        "--rate",
        "5000",
        "--slots",
        "4096",
    ]);
    for zero in [
        "torn",
        "duplicated",
        "reordered",
        "dropped_delivered",
        "accounting_errors",
    ] {
        assert_eq!(v[zero], 0, "{zero}: {v}");
    }
    assert!(v["received"].as_u64() > Some(0), "{v}");
    assert!(
        v["producer_freezes"].as_u64() > Some(0),
        "no stop was sent: {v}"
    );
    assert!(v["stall_figures"].is_object(), "{v}");
}

/// Senders and receivers stopped and continued at random on a work queue with a short stall
/// bound: every item a sender was told was sent is received exactly once.
#[test]
fn queue_soak_with_participants_stopped_past_the_bound_delivers_every_item_once() {
    let v = soak_json(&[
        "--kind",
        "queue",
        "--seconds",
        "2",
        "--senders",
        "3",
        "--receivers",
        "2",
        "--stop-every-ms",
        "50",
        "--max-stop-ms",
        "300",
        "--stall-bound-ms",
        "50",
        "--rate",
        "20000",
        "--slots",
        "1024",
    ]);
    for zero in ["torn", "duplicated", "reordered", "unsent_delivered"] {
        assert_eq!(v[zero], 0, "{zero}: {v}");
    }
    assert_eq!(v["missing"], v["totals"]["lost"], "{v}");
    assert!(v["sent"].as_u64() > Some(0), "{v}");
    assert_eq!(v["received"], v["sent"], "{v}");
}

/// `--stop-every-ms` on a single-producer bus is refused: the stall bound applies to
/// multi-producer buses only.
#[test]
fn stops_on_a_single_producer_bus_are_refused() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_shmbus-bench"))
        .args([
            "soak",
            "--producers",
            "1",
            "--stop-every-ms",
            "100",
            "--seconds",
            "1",
        ])
        .output()
        .expect("run shmbus-bench soak");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("multi-producer"), "{err}");
}
