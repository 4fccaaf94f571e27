//! Running the bench binary from the integration tests.

use std::process::{Command, Output};

use serde_json::Value;

/// Runs `shmbus-bench args` and returns what it printed.
pub fn bench(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_shmbus-bench"))
        .args(args)
        .output()
        .expect("shmbus-bench runs")
}

/// Runs `args` with `--quick --json` and parses the report.
pub fn report(args: &[&str]) -> Value {
    let mut all = args.to_vec();
    all.extend(["--quick", "--json"]);
    let out = bench(&all);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "shmbus-bench {args:?} failed: {}\n{stdout}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("not JSON ({e}): {stdout}"))
}
