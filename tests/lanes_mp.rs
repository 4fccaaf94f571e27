//! Lanes between processes: producer processes feed checksummed records of random sizes to one
//! consumer, and are killed with SIGKILL at random instants, as is the consumer.
//!
//! Every record is made by `make_payload` (producer incarnation id, counter, a body derived from
//! both, a checksum) and checked where it is received, in place. The consumer appends a 16-byte
//! entry (id, counter) per record to its own log before it drops (acknowledges) the record; the
//! parent reads the logs and checks:
//!
//! * torn: every record passes its checksum;
//! * order and uniqueness: each producer's counters increase across the logs, except that a
//!   killed consumer's last logged record may be delivered again to its successor (logged, not
//!   yet acknowledged): at most one repeat per killed consumer, and only of the record before;
//! * accounting: a producer that finished saw every record it published either delivered or
//!   counted dropped (`delivered + dropped == published`).
//!
//! `SHMBUS_LANES_RECORDS` (default 2 000 per producer) and `SHMBUS_LANES_KILLS` (default 100)
//! lengthen the runs; `SHMBUS_TEST_SEED` replays the parent's random choices.

use shmbus_testkit as support;

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::time::Duration;

use shmbus::lanes::{LaneEvent, LanePush, Lanes, LanesBuilder};
use support::{
    await_cond, check_payload, env, field, make_payload, payload_len, role, say, ChildProc, Rng,
    TestBus,
};

const CHILD: &str = "child_entry";
/// Largest record the producers publish.
const MAX_RECORD: usize = 1500;
const TORN: u64 = u64::MAX;
const LIMIT: Duration = Duration::from_secs(60);

#[test]
fn child_entry() {
    support::run_role(&[("producer", producer), ("consumer", consumer)]);
}

/// Publishes `COUNT` records (0: until told to stop), then closes its lane and reports how
/// many it published and how many the full lane dropped.
fn producer() {
    let name: String = env("LANES");
    let id: u64 = env("ID");
    let count: u64 = env("COUNT");
    let stop = support::told_to_stop();
    let lanes = Lanes::open(&name).expect("open the lanes");
    // Lanes of killed producers return to the pool once the consumer has drained them.
    let mut p = None;
    await_cond(LIMIT, "a free lane", || match lanes.acquire() {
        Ok(got) => {
            p = Some(got);
            true
        }
        Err(shmbus::Error::LanesFull { .. }) => false,
        Err(e) => panic!("acquire a lane: {e}"),
    });
    let mut p = p.expect("acquired");
    say("ready");
    let mut buf = vec![0u8; MAX_RECORD];
    let mut k = 0;
    while (count == 0 || k < count) && !stop.load(Ordering::Relaxed) {
        let len = payload_len(id, k, MAX_RECORD);
        make_payload(&mut buf[..len], id, k);
        match p.publish(&buf[..len]).expect("publish") {
            LanePush::Queued => {}
            // Dropped and counted; give the consumer a moment now and then.
            LanePush::Full { .. } => std::thread::yield_now(),
        }
        k += 1;
    }
    let dropped = p.dropped();
    p.close();
    say(&format!("published={k} dropped={dropped}"));
}

/// Receives until told to stop, logging (id, counter) of each record before acknowledging it.
fn consumer() {
    let name: String = env("LANES");
    let log: String = env("LOG");
    let stop = support::told_to_stop();
    let lanes = Lanes::open(&name).expect("open the lanes");
    let mut c = lanes.consumer().expect("attach the consumer");
    let mut out = OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log)
        .expect("open the log");
    say("ready");
    while !stop.load(Ordering::Relaxed) {
        match c.recv_timeout(Duration::from_millis(20)).expect("receive") {
            Some(LaneEvent::Record(r)) => {
                let (id, k) = check_payload(&r).unwrap_or((TORN, 0));
                let mut entry = [0u8; 16];
                entry[..8].copy_from_slice(&id.to_le_bytes());
                entry[8..].copy_from_slice(&k.to_le_bytes());
                out.write_all(&entry).expect("log a record");
                r.ack();
            }
            Some(LaneEvent::Closed(_)) | None => {}
        }
    }
    say(&format!("records={}", c.stats().records));
}

fn spawn_producer(lanes: &str, id: u64, count: u64) -> ChildProc {
    let env = [
        ("LANES", lanes.to_owned()),
        ("ID", id.to_string()),
        ("COUNT", count.to_string()),
    ];
    let mut c = ChildProc::spawn(CHILD, "producer", &env);
    c.expect_line("ready");
    c
}

fn spawn_consumer(lanes: &str, log: &Path) -> ChildProc {
    let env = [
        ("LANES", lanes.to_owned()),
        ("LOG", log.display().to_string()),
    ];
    let mut c = ChildProc::spawn(CHILD, "consumer", &env);
    c.expect_line("ready");
    c
}

fn log_path(tag: &str, n: usize) -> PathBuf {
    std::env::temp_dir().join(format!("shmbus-{tag}-{}-{n}.log", std::process::id()))
}

/// Per producer id, the counters delivered in log order (logs in consumer order).
fn read_logs(logs: &[PathBuf]) -> (u64, HashMap<u64, Vec<u64>>) {
    let mut torn = 0;
    let mut per: HashMap<u64, Vec<u64>> = HashMap::new();
    for path in logs {
        let mut bytes = Vec::new();
        if let Ok(mut f) = File::open(path) {
            f.read_to_end(&mut bytes).expect("read a log");
        }
        for e in bytes.chunks_exact(16) {
            let id = u64::from_le_bytes(e[..8].try_into().expect("8 bytes"));
            let k = u64::from_le_bytes(e[8..].try_into().expect("8 bytes"));
            if id == TORN {
                torn += 1;
            } else {
                per.entry(id).or_default().push(k);
            }
        }
        let _ = std::fs::remove_file(path);
    }
    (torn, per)
}

/// Waits until every lane is free (drained and recycled) or held by a live producer with
/// nothing pending: the consumer has everything that was published.
fn await_drained(lanes: &Lanes) {
    await_cond(LIMIT, "every lane drained", || {
        lanes
            .lane_info()
            .iter()
            .all(|l| !l.closing && l.pending_bytes == 0)
    });
}

/// Sixteen producer processes, one consumer process: each producer's records arrive whole, in
/// order, once, and each producer's published count is what was delivered plus what it was
/// told was dropped.
#[test]
fn sixteen_producer_processes_feed_one_consumer_exactly_once_in_order() {
    if role().is_some() {
        return;
    }
    let per: u64 = support::env_or("SHMBUS_LANES_RECORDS", 2_000);
    let t = TestBus::new("lmp");
    let lanes = LanesBuilder::new(t.name())
        .lanes(32)
        .lane_bytes(16 * 1024)
        .create()
        .unwrap();
    let log = log_path("lmp", 0);
    let mut consumer = spawn_consumer(t.name(), &log);
    let mut producers: Vec<_> = (0..16).map(|p| spawn_producer(t.name(), p, per)).collect();
    let mut dropped = HashMap::new();
    for (id, p) in producers.iter_mut().enumerate() {
        let line = p.next_line().expect("a producer reports");
        assert_eq!(field(&line, "published"), per);
        dropped.insert(id as u64, field(&line, "dropped"));
        p.wait_success(LIMIT);
    }
    await_drained(&lanes);
    consumer.tell("stop");
    consumer.next_line().expect("the consumer reports");
    consumer.wait_success(LIMIT);
    let (torn, per_producer) = read_logs(&[log]);
    assert_eq!(torn, 0, "torn records");
    for id in 0..16u64 {
        let got = per_producer.get(&id).cloned().unwrap_or_default();
        assert!(
            got.windows(2).all(|w| w[0] < w[1]),
            "producer {id}: order or a duplicate"
        );
        assert!(got.iter().all(|&k| k < per));
        assert_eq!(
            got.len() as u64 + dropped[&id],
            per,
            "producer {id}: delivered + dropped"
        );
    }
    // Every lane went back to the pool.
    assert!(lanes.lane_info().iter().all(|l| !l.in_use && !l.closing));
}

/// Producers and the consumer are killed at random instants, again and again, and replaced: no
/// tear, per-producer order, and repeats only of a killed consumer's last record.
#[test]
fn killed_producers_and_consumers_never_tear_reorder_or_lose_acknowledged_order() {
    if role().is_some() {
        return;
    }
    let trials: u64 = support::env_or("SHMBUS_LANES_KILLS", 100);
    let mut rng = Rng::from_env("lanes kill trials");
    let t = TestBus::new("lkill");
    let lanes = LanesBuilder::new(t.name())
        .lanes(16)
        .lane_bytes(8 * 1024)
        .create()
        .unwrap();
    let mut logs = vec![log_path("lkill", 0)];
    let mut consumer = spawn_consumer(t.name(), &logs[0]);
    let mut next_id = 0u64;
    let mut producers: Vec<(u64, ChildProc)> = (0..4)
        .map(|_| {
            next_id += 1;
            (next_id, spawn_producer(t.name(), next_id, 0))
        })
        .collect();
    let mut killed_consumers = 0u64;
    let mut killed_producers = std::collections::HashSet::new();
    for _ in 0..trials {
        // A random instant: the children run meanwhile (this is not a synchronisation).
        std::thread::sleep(Duration::from_micros(rng.below(5000)));
        if rng.below(4) == 0 {
            consumer.kill9();
            killed_consumers += 1;
            logs.push(log_path("lkill", logs.len()));
            consumer = spawn_consumer(t.name(), logs.last().unwrap());
        } else {
            let i = rng.below(producers.len() as u64) as usize;
            producers[i].1.kill9();
            killed_producers.insert(producers[i].0);
            next_id += 1;
            // A lane of a killed producer is free again once the consumer has drained it;
            // there are four times as many lanes as producers.
            producers[i] = (next_id, spawn_producer(t.name(), next_id, 0));
        }
    }
    let mut finished = HashMap::new();
    for (id, p) in &mut producers {
        p.tell("stop");
        let line = p.next_line().expect("a producer reports");
        finished.insert(*id, (field(&line, "published"), field(&line, "dropped")));
        p.wait_success(LIMIT);
    }
    await_drained(&lanes);
    consumer.tell("stop");
    consumer.next_line().expect("the consumer reports");
    consumer.wait_success(LIMIT);
    let (torn, per_producer) = read_logs(&logs);
    assert_eq!(torn, 0, "torn records");
    let mut repeats = 0;
    for (id, got) in &per_producer {
        for w in got.windows(2) {
            if w[0] == w[1] {
                repeats += 1;
            } else {
                assert!(w[0] < w[1], "producer {id}: {} after {}", w[1], w[0]);
            }
        }
        if let Some(&(published, dropped)) = finished.get(id) {
            let mut distinct = got.clone();
            distinct.dedup();
            assert_eq!(
                distinct.len() as u64 + dropped,
                published,
                "producer {id}: delivered + dropped"
            );
        }
    }
    assert!(
        repeats <= killed_consumers,
        "{repeats} repeats for {killed_consumers} killed consumers"
    );
    assert!(!killed_producers.is_empty() || trials < 8);
    assert!(lanes.lane_info().iter().all(|l| !l.in_use && !l.closing));
}
