//! The work queue between processes: producer and consumer processes move checksummed items,
//! and are killed with SIGKILL at random instants.
//!
//! Every item is made by `make_payload` (producer incarnation id, counter, a body derived from
//! both, a checksum) and checked by the consumer that receives it. Each consumer appends a
//! 16-byte record (id, counter) per item to its own log file; the parent reads the logs when
//! everyone is done and checks:
//!
//! * torn: every received item passes its checksum;
//! * exactly once: no (id, counter) is in two records, in one log or across logs;
//! * order: in each consumer's log, each producer's counters increase;
//! * accounting: every position the queue handed out is a received item, a position skipped
//!   because its producer was killed before publishing, an item lost because its consumer was
//!   killed holding it, or an item a killed consumer received but did not log before it died;
//!   the last two together are at most one per killed consumer, and skips at most one per
//!   killed producer.
//!
//! `SHMBUS_QUEUE_ITEMS` (default 200 000; 10^6 for the full run) and `SHMBUS_QUEUE_KILLS`
//! (default 200) lengthen the runs; `SHMBUS_TEST_SEED` replays the parent's random choices.

use shmbus_testkit as support;

use std::collections::{HashMap, HashSet};
use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::time::Duration;

use shmbus::Queue;
use support::forge::Forger;
use support::make;
use support::{
    check_payload, env, field, make_payload, payload_len, role, say, ChildProc, Rng, TestBus,
};

const CHILD: &str = "child_entry";
const ITEM_SIZE: usize = 64;
/// Ends a consumer: shorter than any test item (those are at least 24 bytes).
const POISON: &[u8] = b"POISON!!";
/// The id of the parent's own items (the lap that repairs dead consumers' slots at the end).
const FILLER: u64 = u64::MAX;
/// A record of an item that failed its checksum.
const TORN: u64 = u64::MAX - 1;
const LIMIT: Duration = Duration::from_secs(60);

/// Entry point of the child processes; does nothing when run as an ordinary test.
#[test]
fn child_entry() {
    support::run_role(&[
        ("producer", producer),
        ("consumer", consumer),
        ("participant", participant),
    ]);
}

/// Sends `COUNT` items (0: until told "stop" on stdin), then says how many it sent.
fn producer() {
    let name: String = env("QUEUE");
    let id: u64 = env("ID");
    let count: u64 = env("COUNT");
    let stop = support::told_to_stop();
    let q = Queue::open(&name).expect("open the queue");
    let mut tx = q.sender().expect("attach a sender");
    say("ready");
    let mut buf = [0u8; ITEM_SIZE];
    let mut k = 0;
    while (count == 0 || k < count) && !stop.load(Ordering::Relaxed) {
        let len = payload_len(id, k, ITEM_SIZE);
        make_payload(&mut buf[..len], id, k);
        if tx
            .send_timeout(&buf[..len], Duration::from_millis(50))
            .is_ok()
        {
            k += 1;
        }
    }
    say(&format!("sent={k}"));
}

/// Receives until a poison item, logging (id, counter) of each item to `LOG`: buffered, or (in
/// kill trials) one write per item so that a kill loses at most the item in hand.
fn consumer() {
    let name: String = env("QUEUE");
    let log: String = env("LOG");
    let buffered: u64 = env("BUFFERED");
    let q = Queue::open(&name).expect("open the queue");
    let mut rx = q.receiver().expect("attach a receiver");
    let file = OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log)
        .expect("open the log");
    let mut out: Box<dyn Write> = if buffered == 1 {
        Box::new(BufWriter::with_capacity(1 << 16, file))
    } else {
        Box::new(file)
    };
    say("ready");
    loop {
        // Closed for a moment while every sender is killed and not yet restarted: wait on.
        let Some(item) = rx.recv() else { continue };
        if item == POISON {
            break;
        }
        let (id, k) = check_payload(item).unwrap_or((TORN, 0));
        let mut rec = [0u8; 16];
        rec[..8].copy_from_slice(&id.to_le_bytes());
        rec[8..].copy_from_slice(&k.to_le_bytes());
        out.write_all(&rec).expect("log an item");
    }
    out.flush().expect("flush the log");
    let s = rx.stats();
    say(&format!("received={} skipped={}", s.received, s.skipped));
}

fn spawn_producer(queue: &str, id: u64, count: u64) -> ChildProc {
    let env = [
        ("QUEUE", queue.to_owned()),
        ("ID", id.to_string()),
        ("COUNT", count.to_string()),
    ];
    let mut c = ChildProc::spawn(CHILD, "producer", &env);
    c.expect_line("ready");
    c
}

fn spawn_consumer(queue: &str, log: &Path, buffered: bool) -> ChildProc {
    let env = [
        ("QUEUE", queue.to_owned()),
        ("LOG", log.display().to_string()),
        ("BUFFERED", u64::from(buffered).to_string()),
    ];
    let mut c = ChildProc::spawn(CHILD, "consumer", &env);
    c.expect_line("ready");
    c
}

/// A directory for the logs, removed on drop.
struct LogDir(PathBuf);

impl LogDir {
    fn new(tag: &str) -> LogDir {
        let dir = std::env::temp_dir().join(format!("shmbus-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("create the log directory");
        LogDir(dir)
    }

    fn log(&self, n: usize) -> PathBuf {
        self.0.join(format!("consumer-{n}.log"))
    }
}

impl Drop for LogDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// What the logs say, checked for tears, duplicates and per-producer order.
#[derive(Default)]
struct Verdict {
    received: u64,
    torn: u64,
    duplicated: Vec<(u64, u64)>,
    out_of_order: Vec<(u64, u64)>,
    per_producer: HashMap<u64, HashSet<u64>>,
}

fn judge(logs: &[PathBuf]) -> Verdict {
    let mut v = Verdict::default();
    for path in logs {
        let mut bytes = Vec::new();
        File::open(path)
            .and_then(|mut f| f.read_to_end(&mut bytes))
            .expect("read a log");
        let mut last: HashMap<u64, u64> = HashMap::new();
        for rec in bytes.chunks_exact(16) {
            let id = u64::from_le_bytes(rec[..8].try_into().expect("8 bytes"));
            let k = u64::from_le_bytes(rec[8..].try_into().expect("8 bytes"));
            if id == TORN {
                v.torn += 1;
                continue;
            }
            v.received += 1;
            if !v.per_producer.entry(id).or_default().insert(k) {
                v.duplicated.push((id, k));
            }
            if let Some(prev) = last.insert(id, k) {
                if prev >= k {
                    v.out_of_order.push((id, k));
                }
            }
        }
    }
    v
}

fn check_clean(v: &Verdict) {
    assert_eq!(v.torn, 0, "torn items");
    assert!(
        v.duplicated.is_empty(),
        "duplicated: {:?}",
        &v.duplicated[..v.duplicated.len().min(8)]
    );
    assert!(
        v.out_of_order.is_empty(),
        "out of order: {:?}",
        &v.out_of_order[..v.out_of_order.len().min(8)]
    );
}

/// Four producer processes and four consumer processes: every item received exactly once, each
/// producer's items in order at every consumer.
#[test]
fn four_producers_and_four_consumers_move_every_item_exactly_once() {
    if role().is_some() {
        return;
    }
    let items: u64 = support::env_or("SHMBUS_QUEUE_ITEMS", 200_000);
    let per = items / 4;
    let t = TestBus::new("qmp");
    let dir = LogDir::new("qmp");
    let q = make::queue(&t, 256, ITEM_SIZE);
    let mut consumers: Vec<_> = (0..4)
        .map(|n| spawn_consumer(t.name(), &dir.log(n), true))
        .collect();
    let mut producers: Vec<_> = (0..4).map(|p| spawn_producer(t.name(), p, per)).collect();
    for p in &mut producers {
        let line = p.next_line().expect("a producer reports");
        assert_eq!(field(&line, "sent"), per);
        p.wait_success(LIMIT);
    }
    let mut tx = q.sender().unwrap();
    for _ in 0..4 {
        tx.send(POISON).unwrap();
    }
    for c in &mut consumers {
        c.next_line().expect("a consumer reports");
        c.wait_success(LIMIT);
    }
    let v = judge(&(0..4).map(|n| dir.log(n)).collect::<Vec<_>>());
    check_clean(&v);
    assert_eq!(v.received, 4 * per, "every item received");
    for p in 0..4 {
        assert_eq!(
            v.per_producer.get(&p).map_or(0, |s| s.len() as u64),
            per,
            "producer {p}"
        );
    }
    assert_eq!(q.totals(), shmbus::QueueTotals::default());
    assert!(q.is_empty());
}

/// Two producers and two consumers run while the parent kills one of them at a random instant,
/// again and again, and starts a replacement: no tear, no duplicate, and every position
/// accounted for (see the module docs).
#[test]
fn killed_producers_and_consumers_never_duplicate_tear_or_lose_unaccounted_items() {
    if role().is_some() {
        return;
    }
    let trials: u64 = support::env_or("SHMBUS_QUEUE_KILLS", 200);
    let mut rng = Rng::from_env("queue kill trials");
    let t = TestBus::new("qkill");
    let dir = LogDir::new("qkill");
    let capacity = 64;
    let q = make::queue(&t, capacity, ITEM_SIZE);
    let mut next_id = 0u64;
    let mut next_log = 0usize;
    let mut producers: Vec<ChildProc> = (0..2)
        .map(|_| {
            next_id += 1;
            spawn_producer(t.name(), next_id, 0)
        })
        .collect();
    let mut consumers: Vec<ChildProc> = (0..2)
        .map(|_| {
            next_log += 1;
            spawn_consumer(t.name(), &dir.log(next_log), false)
        })
        .collect();
    let (mut killed_producers, mut killed_consumers) = (0u64, 0u64);
    for _ in 0..trials {
        // A random instant: the children run meanwhile (this is not a synchronisation).
        std::thread::sleep(Duration::from_micros(rng.below(3000)));
        let i = rng.below(2) as usize;
        if rng.below(2) == 0 {
            producers[i].kill9();
            killed_producers += 1;
            next_id += 1;
            producers[i] = spawn_producer(t.name(), next_id, 0);
        } else {
            consumers[i].kill9();
            killed_consumers += 1;
            next_log += 1;
            consumers[i] = spawn_consumer(t.name(), &dir.log(next_log), false);
        }
    }
    for p in &mut producers {
        p.tell("stop");
        p.next_line().expect("a producer reports");
        p.wait_success(LIMIT);
    }
    let mut tx = q.sender().unwrap();
    for _ in 0..consumers.len() {
        tx.send(POISON).unwrap();
    }
    for c in &mut consumers {
        c.next_line().expect("a consumer reports");
        c.wait_success(LIMIT);
    }
    // One more lap through every slot: a slot a killed consumer still holds is repaired (its
    // item counted lost) when a sender needs it.
    let mut rx = q.receiver().unwrap();
    let mut buf = [0u8; 24];
    for k in 0..2 * capacity {
        make_payload(&mut buf, FILLER, k);
        tx.send(&buf).unwrap();
        assert_eq!(check_payload(rx.recv().unwrap()), Some((FILLER, k)));
    }
    let v = judge(&(1..=next_log).map(|n| dir.log(n)).collect::<Vec<_>>());
    check_clean(&v);
    let totals = q.totals();
    let (head, tail) = q.positions();
    assert_eq!(head, tail, "the queue drained");
    let handed_out = tail - consumers.len() as u64 - 2 * capacity;
    let unlogged = handed_out
        .checked_sub(v.received + totals.skipped + totals.lost)
        .unwrap_or_else(|| {
            panic!(
                "more accounted than handed out: {handed_out} positions, {} received, {totals:?}",
                v.received
            )
        });
    eprintln!(
        "{trials} kills ({killed_producers} producers, {killed_consumers} consumers): \
         {handed_out} positions, {} received, {} skipped, {} lost, {unlogged} received unlogged",
        v.received, totals.skipped, totals.lost
    );
    assert!(
        totals.skipped <= killed_producers,
        "skips only for killed producers"
    );
    assert!(
        totals.lost + unlogged <= killed_consumers,
        "at most one item in hand per killed consumer"
    );
    assert!(v.received > 0);
}

/// Attaches a sender or a receiver (SIDE), says its entry, then sends or receives one item per
/// "send" / "recv" line on stdin, saying whether it did.
fn participant() {
    let q = Queue::open(&env::<String>("QUEUE")).expect("open the queue");
    let side: String = env("SIDE");
    let (mut tx, mut rx) = (None, None);
    let index = if side == "sender" {
        let s = q.sender().expect("attach a sender");
        let i = s.index();
        tx = Some(s);
        i
    } else {
        let r = q.receiver().expect("attach a receiver");
        let i = r.index();
        rx = Some(r);
        i
    };
    say(&format!("index={index}"));
    for line in std::io::stdin().lines() {
        match line.expect("stdin").as_str() {
            "send" => {
                let ok = tx.as_mut().expect("a sender").try_send(b"L-item!!").is_ok();
                say(&format!("sent={}", u64::from(ok)));
            }
            "recv" => {
                let got = rx.as_mut().expect("a receiver").try_recv().is_some();
                say(&format!("got={}", u64::from(got)));
            }
            _ => {}
        }
    }
}

fn spawn_participant(queue: &str, side: &str) -> (ChildProc, usize) {
    let mut c = ChildProc::spawn(
        CHILD,
        "participant",
        &[("QUEUE", queue.to_owned()), ("SIDE", side.to_owned())],
    );
    let line = c.next_line().expect("the participant's entry");
    let index = field(&line, "index") as usize;
    (c, index)
}

/// The claim word of participant entry `entry`: the producer table at word 256, 8 words an
/// entry, the claim word third.
fn claim(entry: usize) -> usize {
    256 + entry * 8 + 3
}

/// A queue of 4 items of 8 bytes, its forger, and two participant processes on `side`: the
/// victim V and the live loser L of the wedge scenarios below, each with its entry.
fn wedge(
    tag: &str,
    side: &str,
) -> (
    TestBus,
    Queue,
    Forger,
    (ChildProc, usize),
    (ChildProc, usize),
) {
    let name = TestBus::new(tag);
    let q = make::queue(&name, 4, 8);
    let forger = Forger::new(&name);
    let v = spawn_participant(name.name(), side);
    let l = spawn_participant(name.name(), side);
    (name, q, forger, v, l)
}

/// Tail (the write cursor) and head words of a queue (docs/design.md §11).
const W_TAIL: usize = 128;
const W_HEAD: usize = 144;
const CONSUMER_CLAIM: u64 = 1 << 62;

/// repro_kinds_queue_claim_wedge, scenario A: sender V took position 0 (claim and tail stored)
/// and is killed before publishing; live sender L named position 0 too, lost the CAS, and has
/// not re-named yet. A new sender attaches (V's entry is the lowest free one) and repairs V's
/// entry: it must not forget V's claim because L names the position, or nothing names it once
/// L moves on, and the queue wedges for good. Here: L sends position 1; the receiver skips 0
/// and receives L's item. Each word forged is one the protocol itself stores at that instant.
#[test]
fn a_repair_keeps_a_dead_senders_claim_while_a_live_loser_names_the_position() {
    let (_name, q, forger, (mut v, vi), (mut l, li)) = wedge("q-wedge-a", "sender");
    let mut rx = q.receiver().unwrap();
    forger.store(claim(vi), 1);
    forger.store(W_TAIL, 1);
    forger.store(claim(li), 1);
    v.kill9();
    // The new sender attaches and repairs (or leaves) V's entry.
    let mut n = q.sender().unwrap();
    assert_ne!(n.index() as usize, li);
    // L runs again: a real try_send names and publishes position 1.
    l.tell("send");
    assert_eq!(field(&l.next_line().unwrap(), "sent"), 1);
    let got = rx.recv_timeout(Duration::from_secs(5)).map(|b| b.to_vec());
    assert_eq!(
        got.as_deref(),
        Some(&b"L-item!!"[..]),
        "the receiver is wedged at position 0"
    );
    assert_eq!(q.totals().skipped, 1);
    // And the queue goes on.
    n.try_send(b"N-item!!").unwrap();
    let got = rx.recv_timeout(Duration::from_secs(5)).map(|b| b.to_vec());
    assert_eq!(got.as_deref(), Some(&b"N-item!!"[..]));
}

/// Scenario B, the receiver-side twin: receiver V claimed the item at position 0 (claim and
/// head stored) and is killed before freeing its slot; live receiver L named position 0 too.
/// After a new receiver attaches, the sender must still get a lap around: position 4 needs
/// slot 0, freed by a stall repair of V's claim (the item counted lost).
#[test]
fn a_repair_keeps_a_dead_receivers_claim_while_a_live_loser_names_the_position() {
    let (_name, q, forger, (mut v, vi), (mut l, li)) = wedge("q-wedge-b", "receiver");
    let mut tx = q.sender().unwrap();
    tx.try_send(b"item-0!!").unwrap();
    forger.store(claim(vi), 1 | CONSUMER_CLAIM);
    forger.store(W_HEAD, 1);
    forger.store(claim(li), 1 | CONSUMER_CLAIM);
    v.kill9();
    let n = q.receiver().unwrap();
    assert_ne!(n.index() as usize, li);
    // L runs again: a real try_recv (nothing there: it withdraws its claim).
    l.tell("recv");
    assert_eq!(field(&l.next_line().unwrap(), "got"), 0);
    for k in 1..=4u8 {
        let item = [b'i', b't', b'e', b'm', b'-', b'0' + k, b'!', b'!'];
        assert!(
            tx.send_timeout(&item, Duration::from_secs(5)).is_ok(),
            "item {k}: the senders are wedged on slot 0"
        );
    }
    assert_eq!(q.totals().lost, 1);
    drop(n);
}
