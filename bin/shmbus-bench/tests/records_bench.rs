//! `shmbus-bench ... --kind records`: records segments are measured next to the bus (latency)
//! and next to single-core memcpy (throughput) in the same run, and every record is accounted.

use std::process::Command;

use serde_json::Value;

fn report(args: &[&str]) -> Value {
    let mut all = args.to_vec();
    all.extend(["--quick", "--json"]);
    let out = Command::new(env!("CARGO_BIN_EXE_shmbus-bench"))
        .args(&all)
        .output()
        .expect("shmbus-bench runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "shmbus-bench {args:?} failed: {}\n{stdout}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("not JSON ({e}): {stdout}"))
}

fn transports(rows: &Value) -> Vec<String> {
    rows.as_array()
        .expect("rows")
        .iter()
        .map(|r| r["transport"].as_str().expect("transport").to_owned())
        .collect()
}

#[test]
fn latency_of_records_is_measured_beside_the_bus() {
    let r = report(&[
        "latency",
        "--kind",
        "records",
        "--payloads",
        "64",
        "--iters",
        "200",
    ]);
    let t = transports(&r["latency"]);
    assert!(t.iter().any(|t| t == "shmbus"), "{t:?}");
    assert_eq!(t.iter().filter(|t| *t == "records").count(), 3, "{t:?}");
    for row in r["latency"].as_array().unwrap() {
        assert!(row["ns"]["p50"].as_f64().unwrap() > 0.0, "{row}");
    }
}

#[test]
fn throughput_of_records_is_measured_beside_memcpy() {
    let r = report(&[
        "throughput",
        "--kind",
        "records",
        "--payloads",
        "4096",
        "--messages",
        "2000",
    ]);
    let rows = r["throughput"].as_array().expect("throughput rows");
    assert_eq!(transports(&r["throughput"]), ["memcpy", "records"]);
    let records = &rows[1];
    let c = &records["per_consumer"][0];
    let sent = records["messages"].as_u64().unwrap();
    assert_eq!(
        c["received"].as_u64().unwrap() + c["lost"].as_u64().unwrap(),
        sent,
        "{records}"
    );
    assert!(rows[0]["gb_per_s"].as_f64().unwrap() > 0.0);
}
