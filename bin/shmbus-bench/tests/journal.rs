//! `shmbus-bench journal`: in its short mode it prints both payload sizes, each with its ratio
//! to the write-bandwidth floor measured in the same run, and leaves no file behind.

mod common;

use common::report;

#[test]
fn journal_reports_both_sizes_against_the_write_floor_and_cleans_up() {
    let dir = std::env::temp_dir().join(format!("shmbus-bench-journal-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let r = report(&[
        "journal",
        "--mib",
        "2",
        "--dir",
        dir.to_str().expect("a UTF-8 temporary directory"),
    ]);
    let floor = r["floor"]["gb_per_s"].as_f64().expect("floor bandwidth");
    assert!(floor > 0.0);
    let cases = r["cases"].as_array().expect("cases");
    let payloads: Vec<u64> = cases
        .iter()
        .map(|c| c["payload"].as_u64().unwrap())
        .collect();
    assert_eq!(payloads, [64, 4096]);
    for c in cases {
        let entry = shmbus::journal::ENTRY_HEADER_BYTES
            + c["payload"].as_u64().unwrap().next_multiple_of(8);
        assert_eq!(c["messages"].as_u64(), Some((2 << 20) / entry), "{c}");
        let ratio = c["file_gb_per_s"].as_f64().unwrap() / floor;
        let reported = c["ratio_to_floor"].as_f64().unwrap();
        assert!((ratio - reported).abs() <= 1e-9 * ratio.max(1.0), "{c}");
    }
    let left: Vec<_> = std::fs::read_dir(&dir).unwrap().collect();
    assert!(left.is_empty(), "scratch files removed: {left:?}");
    std::fs::remove_dir(&dir).unwrap();
}
