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
