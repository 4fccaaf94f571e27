//! `shmbus-bench ... --kind records`: records segments are measured next to the bus (latency)
//! and next to single-core memcpy (throughput) in the same run, and every record is accounted.

mod common;

use serde_json::Value;

use common::report;

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
fn throughput_of_records_is_measured_beside_memcpy_and_the_byte_ring_floors() {
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
    // The copy floor, the byte-ring floors (read in place, copied out, copied with atomic loads,
    // also written with atomic stores, also committed by a sequence word polled in the ring),
    // then records.
    assert_eq!(
        transports(&r["throughput"]),
        [
            "memcpy",
            "floor",
            "floor-cp",
            "floor-acp",
            "floor-aa",
            "floor-vp",
            "records"
        ]
    );
    for floor in &rows[1..6] {
        assert!(floor["gb_per_s"].as_f64().unwrap() > 0.0, "{floor}");
    }
    let records = &rows[6];
    let c = &records["per_consumer"][0];
    let sent = records["messages"].as_u64().unwrap();
    assert_eq!(
        c["received"].as_u64().unwrap() + c["lost"].as_u64().unwrap(),
        sent,
        "{records}"
    );
    assert!(rows[0]["gb_per_s"].as_f64().unwrap() > 0.0);
}
