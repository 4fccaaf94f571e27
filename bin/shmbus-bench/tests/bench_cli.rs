//! `shmbus-bench`: every command, in its short mode, prints JSON with the promised fields and
//! sane values (latencies positive, percentiles ordered, ratios equal to figure / c2c), and bad
//! input gives a one-line error rather than a panic.

mod common;

use serde_json::Value;

use common::{bench, report};

const PCT: [&str; 6] = ["p50", "p90", "p99", "p99.9", "p99.99", "max"];

fn num(v: &Value, key: &str) -> f64 {
    v[key]
        .as_f64()
        .unwrap_or_else(|| panic!("`{key}` is not a number in {v}"))
}

fn rows<'a>(r: &'a Value, section: &str) -> &'a Vec<Value> {
    let rows = r[section]
        .as_array()
        .unwrap_or_else(|| panic!("no `{section}` section in {r}"));
    assert!(!rows.is_empty(), "empty `{section}` section");
    rows
}

/// Percentiles present, positive, ordered.
fn check_pct(p: &Value) {
    assert!(num(p, "samples") > 0.0, "no samples: {p}");
    let v: Vec<f64> = PCT.iter().map(|k| num(p, k)).collect();
    assert!(v[0] > 0.0, "p50 is not positive: {p}");
    assert!(
        v.windows(2).all(|w| w[0] <= w[1]),
        "percentiles out of order: {p}"
    );
}

/// A latency with its c2c base: the base is the process c2c p50 of the same cores, and every
/// ratio is the figure divided by it.
fn check_ratio(r: &Value, row: &Value, ns_key: &str, cores: (u64, u64)) {
    let c2c = num(row, "c2c_one_way_ns");
    let measured = rows(r, "c2c")
        .iter()
        .find(|c| {
            c["mode"] == "process" && {
                let cc = (c["cores"][0].as_u64(), c["cores"][1].as_u64());
                cc == (Some(cores.0), Some(cores.1)) || cc == (Some(cores.1), Some(cores.0))
            }
        })
        .unwrap_or_else(|| panic!("no process c2c for cores {cores:?}"));
    assert_eq!(c2c, num(&measured["one_way_ns"], "p50"));
    for k in PCT {
        let want = num(&row[ns_key], k) / c2c;
        let got = num(&row["ratio_to_c2c"], k);
        assert!(
            (got - want).abs() <= 1e-9 * want.max(1.0),
            "{k}: ratio {got} != {want}"
        );
    }
}

fn check_machine(r: &Value) {
    assert!(r["machine"]["cpu"].as_str().is_some_and(|s| !s.is_empty()));
    assert!(num(&r["machine"], "cores") >= 1.0);
    assert!(num(&r["machine"], "ns_per_tick") > 0.0);
}

#[test]
fn c2c_reports_thread_and_process_latency() {
    let r = report(&["c2c", "--cores", "0,1"]);
    check_machine(&r);
    let c2c = rows(&r, "c2c");
    for mode in ["thread", "process"] {
        let row = c2c
            .iter()
            .find(|c| c["mode"] == mode)
            .unwrap_or_else(|| panic!("no {mode} row"));
        assert_eq!(row["cores"], serde_json::json!([0, 1]));
        check_pct(&row["one_way_ns"]);
    }
}

#[test]
fn latency_reports_both_methods_per_payload_with_c2c_ratios() {
    let r = report(&["latency", "--payloads", "8,64", "--cores", "0,1"]);
    let lat = rows(&r, "latency");
    // Ping-pong for 0-1, and a stamped hop in each direction.
    assert_eq!(lat.len(), 6);
    for payload in [8, 64] {
        let directions: Vec<&Value> = lat
            .iter()
            .filter(|l| l["payload"] == payload && l["method"] == "oneway")
            .map(|l| &l["cores"])
            .collect();
        assert_eq!(
            directions,
            [&serde_json::json!([0, 1]), &serde_json::json!([1, 0])]
        );
        for method in ["pingpong", "oneway"] {
            let row = lat
                .iter()
                .find(|l| l["payload"] == payload && l["method"] == method)
                .unwrap_or_else(|| panic!("no {method} row for {payload} B"));
            assert_eq!(row["transport"], "shmbus");
            check_pct(&row["ns"]);
            check_ratio(&r, row, "ns", (0, 1));
        }
    }
}

#[test]
fn fanout_reports_rate_and_per_consumer_latency() {
    let r = report(&["fanout", "--consumers", "1,2"]);
    let rows = rows(&r, "fanout");
    assert_eq!(rows.len(), 2);
    for (row, k) in rows.iter().zip([1, 2]) {
        assert_eq!(row["consumers"], k);
        assert!(num(row, "publish_msgs_per_s") > 0.0);
        check_pct(&row["publish_ns"]);
        let per = row["per_consumer"].as_array().expect("per_consumer");
        assert_eq!(per.len(), k);
        let producer = row["producer_core"].as_u64().unwrap();
        for c in per {
            check_pct(&c["ns"]);
            check_ratio(&r, c, "ns", (producer, c["core"].as_u64().unwrap()));
            assert!(num(c, "received") > 0.0);
        }
    }
    let oversubscribed = rows[1]["oversubscribed"].as_bool().unwrap();
    if oversubscribed {
        assert!(
            !r["warnings"].as_array().unwrap().is_empty(),
            "an oversubscribed run must warn"
        );
    }
}

#[test]
fn idle_subscriber_curve_compares_with_none() {
    let r = report(&["fanout", "--idle-subscribers", "0,3"]);
    let rows = rows(&r, "idle_subscribers");
    let ks: Vec<u64> = rows
        .iter()
        .map(|i| i["idle_subscribers"].as_u64().unwrap())
        .collect();
    assert_eq!(ks, [0, 3]);
    let base = num(&rows[0]["publish_ns"], "p50");
    for row in rows {
        check_pct(&row["publish_ns"]);
        let want = num(&row["publish_ns"], "p50") / base;
        assert!((num(row, "p50_vs_none") - want).abs() < 1e-9);
    }
}

#[test]
fn throughput_counts_every_message_as_received_or_lost() {
    let r = report(&[
        "throughput",
        "--payloads",
        "8,256",
        "--slots",
        "1024",
        "--messages",
        "5000",
    ]);
    let rows = rows(&r, "throughput");
    assert_eq!(rows.len(), 2);
    for row in rows {
        let rate = num(row, "msgs_per_s");
        assert!(rate > 0.0);
        let gb = rate * num(row, "payload") / 1e9;
        assert!((num(row, "gb_per_s") - gb).abs() <= 1e-9 * gb);
        let sent = num(row, "messages");
        for c in row["per_consumer"].as_array().unwrap() {
            // The stop message may be counted lost when a lap skipped it.
            let seen = num(c, "received") + num(c, "lost");
            assert!(seen == sent || seen == sent + 1.0, "{seen} of {sent}: {c}");
        }
    }
}

#[test]
fn mp_reports_every_producer_and_the_consumer_latency() {
    let r = report(&["mp", "--producers", "1,2", "--messages", "2000"]);
    let rows = rows(&r, "mp");
    assert_eq!(rows.len(), 2);
    for (row, p) in rows.iter().zip([1, 2]) {
        assert_eq!(row["producers"], p);
        assert!(num(row, "msgs_per_s") > 0.0);
        let per = row["per_producer"].as_array().unwrap();
        assert_eq!(per.len(), p);
        for prod in per {
            // Paced messages (quick: 500) plus the flat-out ones.
            assert_eq!(num(prod, "published") + num(prod, "dropped"), 2500.0);
        }
        check_pct(&row["ns"]);
        let consumer = row["consumer_core"].as_u64().unwrap();
        let first = per[0]["core"].as_u64().unwrap();
        check_ratio(&r, row, "ns", (consumer, first));
    }
}

#[test]
fn default_run_covers_every_section_and_plots() {
    let dir = std::env::temp_dir().join(format!("shmbus-bench-plot-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let svg = dir.join("latency.svg");
    let r = report(&["--plot", svg.to_str().unwrap()]);
    for section in ["c2c", "latency", "throughput", "fanout", "idle_subscribers"] {
        rows(&r, section);
    }
    let payloads: Vec<u64> = rows(&r, "latency")
        .iter()
        .map(|l| l["payload"].as_u64().unwrap())
        .collect();
    assert!(payloads.contains(&8) && payloads.contains(&64));
    let ks: Vec<u64> = rows(&r, "fanout")
        .iter()
        .map(|f| f["consumers"].as_u64().unwrap())
        .collect();
    assert_eq!(ks, [1, 3]);
    let text = std::fs::read_to_string(&svg).expect("the plot was written");
    let _ = std::fs::remove_dir_all(&dir);
    assert!(
        text.contains("<svg") && text.contains("shmbus 8B"),
        "not the plot: {text:.200}"
    );
    for want in [
        "shmbus 8B pingpong (round trip / 2)",
        "shmbus 8B oneway",
        "one-way latency (log scale)",
        "percentile",
    ] {
        assert!(text.contains(want), "the plot lacks {want:?}");
    }
    let labels: Vec<&str> = text
        .split("</text>")
        .filter_map(|t| t.rsplit('>').next().map(str::trim))
        .collect();
    assert!(
        labels
            .iter()
            .any(|l| l.ends_with(" ns") || l.ends_with(" µs") || l.ends_with(" ms")),
        "the latency axis carries units: {labels:?}"
    );
    // Every step's load is recorded, and a workload needing more cores than there are is
    // marked oversubscribed wherever it appears.
    let load = rows(&r, "load");
    assert_eq!(load.len(), 7, "one row per step: {load:?}");
    for l in load {
        assert!(
            num(l, "mean_runnable") >= 0.0 && l["oversubscribed"].is_boolean(),
            "{l}"
        );
    }
    let cores = num(&r["machine"], "cores") as u64;
    let marked: Vec<u64> = r["oversubscribed"]["fanout"]
        .as_array()
        .expect("oversubscribed rows listed by section")
        .iter()
        .map(|i| i.as_u64().unwrap())
        .collect();
    for (i, f) in rows(&r, "fanout").iter().enumerate() {
        if f["consumers"].as_u64().unwrap() + 1 > cores {
            assert!(
                marked.contains(&(i as u64)),
                "fan-out row {i} needs more cores: {f}"
            );
        }
    }
}

#[test]
fn table_and_csv_outputs_name_their_figures() {
    let out = bench(&["c2c", "--quick", "--cores", "0,1"]);
    assert!(out.status.success());
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(
        table.contains("Core-to-core") && table.contains("p99.99"),
        "{table}"
    );
    let out = bench(&["c2c", "--quick", "--csv", "--cores", "0,1"]);
    assert!(out.status.success());
    let csv = String::from_utf8_lossy(&out.stdout);
    let mut lines = csv.lines();
    assert_eq!(
        lines.next(),
        Some("section,transport,label,metric,value,oversubscribed")
    );
    assert!(
        lines.all(|l| l.split(',').count() == 6 && (l.ends_with(",true") || l.ends_with(",false"))),
        "{csv}"
    );
}

#[test]
fn bad_input_is_a_one_line_error() {
    for args in [
        &["latency", "--quick", "--payloads", "4"][..],
        &["c2c", "--quick", "--plot", "out.png"][..],
        &["c2c", "--quick", "--cores", "0,4096"][..],
        &["fanout", "--quick", "--idle-subscribers", "300"][..],
    ] {
        let out = bench(args);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {err}");
        assert!(err.starts_with("shmbus-bench: "), "{args:?}: {err}");
        assert_eq!(err.trim_end().lines().count(), 1, "{args:?}: {err}");
        assert!(!err.contains("panicked"), "{args:?}: {err}");
    }
}

#[cfg(not(feature = "peers"))]
#[test]
fn peer_without_the_feature_says_how_to_build_it() {
    let out = bench(&["latency", "--quick", "--peer", "iceoryx2"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("--features peers"), "{err}");
}

#[cfg(feature = "peers")]
#[test]
fn peer_latency_is_compared_with_shmbus() {
    let r = report(&[
        "latency",
        "--payloads",
        "8",
        "--cores",
        "0,1",
        "--peer",
        "iceoryx2",
    ]);
    let lat = rows(&r, "latency");
    for transport in ["shmbus", "iceoryx2"] {
        let row = lat
            .iter()
            .find(|l| l["transport"] == transport && l["method"] == "pingpong")
            .unwrap_or_else(|| panic!("no {transport} ping-pong row"));
        check_pct(&row["ns"]);
        check_ratio(&r, row, "ns", (0, 1));
    }
    let cmp = &rows(&r, "peer_comparison")[0];
    let want = num(cmp, "shmbus") / num(cmp, "peer");
    assert!((num(cmp, "ratio") - want).abs() <= 1e-9 * want);
}

#[test]
fn queue_compares_with_crossbeam_and_c2c_and_every_item_reaches_one_receiver() {
    let r = report(&["queue", "--sizes", "8", "--consumers", "1,2"]);
    for row in rows(&r, "throughput") {
        let (ours, floor) = (
            num(row, "shmbus_ns_per_item"),
            num(row, "crossbeam_ns_per_item"),
        );
        assert!(ours > 0.0 && floor > 0.0, "{row}");
        assert!(num(row, "ratio") > 0.0, "{row}");
        assert!(num(row, "local_ns_per_item") > 0.0, "{row}");
        assert!(num(row, "local_ratio") > 0.0, "{row}");
    }
    let procs = rows(&r, "processes");
    assert_eq!(procs.len(), 2);
    for (row, k) in procs.iter().zip([1usize, 2]) {
        let per = row["per_receiver"].as_array().expect("per_receiver");
        assert_eq!(per.len(), k, "{row}");
        let got: f64 = per.iter().map(|v| v.as_f64().unwrap()).sum();
        assert_eq!(
            got,
            num(row, "items"),
            "each item reaches exactly one receiver: {row}"
        );
        assert!(num(row, "items_per_sec") > 0.0, "{row}");
    }
    if let Some(h) = r["handoff"].as_array().filter(|h| !h.is_empty()) {
        let row = &h[0];
        let ratio = num(row, "queue_rtt_p50_ns") / num(row, "c2c_rtt_p50_ns");
        assert!((num(row, "ratio") - ratio).abs() < 1e-9, "{row}");
        // The Vyukov floor ran beside it, at the queue's slot stride (8-byte items: 32).
        assert!(num(row, "vyukov_rtt_p50_ns") > 0.0, "{row}");
        assert!(num(row, "vyukov_claim_rtt_p50_ns") > 0.0, "{row}");
        assert_eq!(num(row, "stride"), 32.0, "{row}");
        assert!(
            !row["rounds"].as_array().expect("rounds").is_empty(),
            "{row}"
        );
    }
}

#[test]
fn board_sets_and_gets_beside_their_floor_and_a_ping_pong_beside_its_own() {
    let r = report(&["board"]);
    assert_eq!(num(&r, "value_size"), 64.0);
    let costs = rows(&r, "costs");
    let ops: Vec<&str> = costs.iter().map(|c| c["op"].as_str().unwrap()).collect();
    assert_eq!(
        ops,
        [
            "set (many writers)",
            "set (one writer)",
            "set (one, unstamped)",
            "get"
        ]
    );
    for c in costs {
        let (ns, floor) = (num(c, "ns"), num(c, "floor_ns"));
        assert!(ns > 0.0 && floor > 0.0, "{c}");
        assert!(
            (num(c, "ratio") - ns / floor).abs() <= 1e-9 * ns / floor,
            "{c}"
        );
    }
    check_pct(&r["update_to_observe_ns"]);
    check_pct(&r["update_to_observe_floor_ns"]);
    check_pct(&r["c2c_process_ns"]);
    let want =
        num(&r["update_to_observe_ns"], "p50") / num(&r["update_to_observe_floor_ns"], "p50");
    let got = num(&r["ratio_to_floor"], "p50");
    assert!((got - want).abs() <= 1e-9 * want, "{got} against {want}");
}

#[test]
fn board_takes_a_value_size_that_is_not_a_whole_number_of_words() {
    let r = report(&["board", "--size", "20"]);
    assert_eq!(num(&r, "value_size"), 20.0);
    for c in rows(&r, "costs") {
        assert!(num(c, "ns") > 0.0 && num(c, "floor_ns") > 0.0, "{c}");
    }
    check_pct(&r["update_to_observe_floor_ns"]);
}

#[test]
fn board_refuses_a_value_its_floor_cannot_hold() {
    let out = bench(&["board", "--size", "4096"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--size 4096 is out of range"), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "{err}");
}
