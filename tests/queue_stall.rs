//! Bounded stalls on the work queue between processes (docs/design.md §11, "Stalls"): four
//! sender and four receiver processes (this test binary re-executed, `child_entry`) on a
//! 16-slot queue with a 20 ms stall bound, while two controller threads (one per role) stop and
//! continue groups of one to three of them at random (SIGSTOP/SIGCONT; mostly 1 to 100 ms, one
//! in 20 up to 300 ms; 320 stops per role) and SIGKILL one sender and one receiver once, each
//! while running or while stopped. Items are up to 2 KiB, so that copying an item into or out of
//! its slot (the time a position is held) is a larger share of a participant's running time,
//! and more stops land inside a claim.
//!
//! Every item is made by `make_payload` (sender id, counter, a body derived from both, a
//! checksum). A sender moves on to its next counter only once `send_timeout` returned `Ok`, and
//! writes how many it has sent to its own progress file after each (one `pwrite`, so a kill
//! leaves at most the item in hand unrecorded). A receiver appends a record (id, counter, the
//! head it reads after receiving) per item to its own log file (one `write` per item, so a kill
//! loses at most the item in hand). The parent reads everything when all are done and checks:
//!
//! * torn: every received item passes its checksum;
//! * exactly once: no (id, counter) is in two records, in one log or across logs;
//! * order: in each receiver's log, each sender's counters increase (a sender claims its next
//!   position only after its last item was published, and a receiver claims positions in order);
//! * accounting (the crash table of §11): every item a sender recorded as sent is received,
//!   except at most one in all: the killed receiver's item in hand, counted lost (claimed, not
//!   freed) or received and not logged (freed, not logged), never both; and none at all when
//!   nothing was counted lost and the killed receiver's claim word (read from the segment) names
//!   no position past the head it logged last, so that it held nothing; nothing a sender did not
//!   record is received, except the killed sender's one item in hand (sent, not recorded); at
//!   most one position skipped (the killed sender's claim) and one item lost; and no more
//!   positions received, skipped, lost and passed than the tail handed out;
//! * the stall path ran: `totals.passed > 0`, and the survivors' own counters show passes,
//!   routes or resends;
//! * no wedge: every survivor ends, and the queue drains and closes.
//!
//! Time is printed, not asserted (it is no correctness property on a busy machine): each
//! receiver's gaps, the time from logging one item (or seeing the queue empty, or being
//! continued after a stop of its own) to receiving the next, with p50/p99/p99.9/max and a line on
//! stderr for any gap over three stall bounds; and a queue-wide measure, how long the head stays
//! put while there is work and some receiver runs (sampled every 200 µs by the parent).
//!
//! `SHMBUS_TEST_SEED` replays the controllers' choices (not the timing); `SHMBUS_QUEUE_STOPS`
//! (stops per role), `SHMBUS_QUEUE_STALL_ITEM` (item size) and `SHMBUS_QUEUE_STALL_CAPACITY`
//! change the run.

use shmbus_testkit as support;

use std::collections::{HashMap, HashSet};
use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use shmbus::{Queue, QueueTotals};
use support::forge::Forger;
use support::{check_payload, env, field, make_payload, payload_len, say, ChildProc, Rng, TestBus};

const CHILD: &str = "child_entry";
const SENDERS: u64 = 4;
const RECEIVERS: usize = 4;
/// Small, so that the queue wraps onto a stopped receiver's slot within a stop.
const CAPACITY: u64 = 16;
const STALL_BOUND: Duration = Duration::from_millis(20);
/// A record of an item that failed its checksum.
const TORN: u64 = u64::MAX;
/// A hang guard for a child's end, not a timing assertion.
const LIMIT: Duration = Duration::from_secs(60);

/// Entry point of the child processes; does nothing when run as an ordinary test.
#[test]
fn child_entry() {
    support::run_role(&[("sender", sender), ("receiver", receiver)]);
}

/// Times this process was continued after a stop (SIGCONT), so that a receiver does not count
/// its own stop as a gap of the queue's.
static CONTINUED: AtomicU64 = AtomicU64::new(0);

extern "C" fn on_cont(_: libc::c_int) {
    CONTINUED.fetch_add(1, Ordering::Relaxed);
}

fn count_continues() {
    // SAFETY: a zeroed sigaction is a valid one with an empty mask; the handler only increments
    // an atomic, which is async-signal-safe; SA_RESTART keeps the logging writes uninterrupted.
    unsafe {
        let mut sa: libc::sigaction = std::mem::zeroed();
        sa.sa_sigaction = on_cont as extern "C" fn(libc::c_int) as usize;
        sa.sa_flags = libc::SA_RESTART;
        assert_eq!(
            libc::sigaction(libc::SIGCONT, &sa, std::ptr::null_mut()),
            0,
            "install the SIGCONT handler"
        );
    }
}

/// Sends items (ID, 0, 1, ...) until told "stop" on stdin, recording in PROGRESS how many
/// `send_timeout` accepted after each; then says its counters.
fn sender() {
    let name: String = env("QUEUE");
    let id: u64 = env("ID");
    let item_size: usize = env("ITEM");
    let stop = support::told_to_stop();
    let progress = OpenOptions::new()
        .create(true)
        .truncate(true)
        .write(true)
        .open(env::<String>("PROGRESS"))
        .expect("open the progress file");
    progress.write_at(&0u64.to_le_bytes(), 0).expect("progress");
    let q = Queue::open(&name).expect("open the queue");
    let mut tx = q.sender().expect("attach a sender");
    say("ready");
    let mut buf = vec![0u8; item_size];
    let mut k = 0u64;
    let mut len = payload_len(id, k, item_size);
    make_payload(&mut buf[..len], id, k);
    while !stop.load(Ordering::Relaxed) {
        if tx
            .send_timeout(&buf[..len], Duration::from_millis(50))
            .is_ok()
        {
            k += 1;
            // One write of 8 bytes: a kill leaves the old count or the new one.
            progress
                .write_at(&k.to_le_bytes(), 0)
                .expect("record progress");
            len = payload_len(id, k, item_size);
            make_payload(&mut buf[..len], id, k);
        }
    }
    let s = tx.stats();
    assert_eq!(s.sent, k, "every Ok is counted sent");
    say(&format!(
        "sent={} resent={} stalls_passed={} lost={} full={}",
        s.sent, s.resent, s.stalls_passed, s.lost, s.full
    ));
}

/// Receives until the queue is closed (every sender gone, no item left), logging (id, counter)
/// of each item to LOG with one write each; then writes its gaps (µs, LE u64) to GAPS and says
/// its counters.
fn receiver() {
    count_continues();
    let name: String = env("QUEUE");
    let q = Queue::open(&name).expect("open the queue");
    let mut rx = q.receiver().expect("attach a receiver");
    let mut log = OpenOptions::new()
        .create(true)
        .append(true)
        .open(env::<String>("LOG"))
        .expect("open the log");
    say("ready");
    let mut gaps: Vec<u64> = Vec::with_capacity(1 << 16);
    // The gap now open: since when, how many receive calls it spans, the positions then.
    let mut last = Instant::now();
    let mut calls = 0u64;
    let mut at = q.positions();
    let mut continued = CONTINUED.load(Ordering::Relaxed);
    let mut self_stops = 0u64;
    let index = rx.index();
    loop {
        if q.is_empty() {
            // No work: a gap starts no earlier than now.
            (last, calls, at) = (Instant::now(), 0, q.positions());
        }
        calls += 1;
        let got = rx.recv_timeout(Duration::from_millis(50));
        let now = Instant::now();
        let c = CONTINUED.load(Ordering::Relaxed);
        let stopped_self = c != continued;
        if stopped_self {
            // Our own stop is not the queue's gap.
            continued = c;
            self_stops += 1;
            (last, calls, at) = (now, 0, q.positions());
        }
        let Some(item) = got else {
            if rx.is_closed() {
                break;
            }
            continue;
        };
        let gap = now.duration_since(last);
        if !stopped_self {
            gaps.push(gap.as_micros() as u64);
        }
        if gap > 3 * STALL_BOUND && !stopped_self {
            eprintln!(
                "receiver {}: a gap of {gap:?} over {calls} receive calls, (head, tail) {at:?} \
                 at its start, {:?} at its end",
                index,
                q.positions()
            );
        }
        let (id, k) = check_payload(item).unwrap_or((TORN, 0));
        // The head now is past the item's position: a claim this receiver names later is of
        // a later position (its reads of the head are ordered).
        let head = q.positions().0;
        let mut rec = [0u8; 24];
        rec[..8].copy_from_slice(&id.to_le_bytes());
        rec[8..16].copy_from_slice(&k.to_le_bytes());
        rec[16..].copy_from_slice(&head.to_le_bytes());
        log.write_all(&rec).expect("log an item");
        // The gap to the next item starts once this one is logged (a slow write is ours).
        (last, calls, at) = (Instant::now(), 0, q.positions());
    }
    let bytes: Vec<u8> = gaps.iter().flat_map(|g| g.to_le_bytes()).collect();
    std::fs::write(env::<String>("GAPS"), bytes).expect("write the gaps");
    let s = rx.stats();
    say(&format!(
        "received={} skipped={} stalls_passed={} lost={} self_stops={self_stops}",
        s.received, s.skipped, s.stalls_passed, s.lost
    ));
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

    fn file(&self, what: &str, n: u64) -> PathBuf {
        self.0.join(format!("{what}-{n}"))
    }
}

impl Drop for LogDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn read_words(path: &Path) -> Vec<u64> {
    let mut bytes = Vec::new();
    File::open(path)
        .and_then(|mut f| f.read_to_end(&mut bytes))
        .unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    // A kill mid-write could only leave a short last record: it is not a record.
    bytes
        .chunks_exact(8)
        .map(|w| u64::from_le_bytes(w.try_into().expect("8 bytes")))
        .collect()
}

/// Sends `sig` to a child we have not reaped (so its pid is not reused).
fn signal(child: &ChildProc, sig: i32) {
    // SAFETY: kill(2) has no memory effects; the pid is our unreaped child's.
    unsafe { libc::kill(child.pid(), sig) };
}

/// How long the next stop lasts: mostly short (1 to 40 ms, about 3 in 4 under the 20 ms bound
/// plus its check period), some up to 100 ms, one in 20 up to 300 ms.
fn stop_length(rng: &mut Rng) -> Duration {
    let ms = match rng.below(100) {
        0..=74 => 1 + rng.below(40),
        75..=94 => 40 + rng.below(61),
        _ => 100 + rng.below(201),
    };
    Duration::from_millis(ms)
}

/// What a controller did to its role's children.
#[derive(Default, Debug)]
struct Stops {
    count: u64,
    over_bound: u64,
    longest: Duration,
    /// Which child was killed, and whether it was stopped then.
    killed: Option<(usize, bool)>,
}

/// Stops and continues random groups of one to three children of one role (one SIGSTOP each,
/// `stops` in all; a group makes it likelier that one of them is stopped inside a claim), and
/// SIGKILLs one of them (stopped or running, at random) halfway; every survivor runs when it
/// returns.
/// `all_stopped` says whether every living child of the role is stopped now.
fn control(children: &mut [ChildProc], stops: u64, seed: u64, all_stopped: &AtomicBool) -> Stops {
    let mut rng = Rng::new(seed);
    let mut done = Stops::default();
    let mut alive: Vec<usize> = (0..children.len()).collect();
    while done.count < stops {
        // A random group: the first `size` of a partial shuffle of the living.
        let size = (1 + rng.below(3) as usize).min(alive.len());
        for i in 0..size {
            let j = i + rng.below((alive.len() - i) as u64) as usize;
            alive.swap(i, j);
        }
        let group: Vec<usize> = alive[..size].to_vec();
        let kill_now = done.killed.is_none() && done.count >= stops / 2;
        let kill_stopped = kill_now && rng.below(2) == 0;
        if kill_now && !kill_stopped {
            children[group[0]].kill9();
            alive.retain(|&c| c != group[0]);
            done.killed = Some((group[0], false));
            continue;
        }
        let length = stop_length(&mut rng);
        all_stopped.store(size == alive.len(), Ordering::Relaxed);
        for &who in &group {
            signal(&children[who], libc::SIGSTOP);
        }
        // Pacing the stop, not synchronisation.
        std::thread::sleep(length);
        for (n, &who) in group.iter().enumerate() {
            if kill_stopped && n == 0 {
                children[who].kill9();
                alive.retain(|&c| c != who);
                done.killed = Some((who, true));
            } else {
                signal(&children[who], libc::SIGCONT);
            }
        }
        all_stopped.store(false, Ordering::Relaxed);
        done.count += size as u64;
        done.over_bound += if length > STALL_BOUND { size as u64 } else { 0 };
        done.longest = done.longest.max(length);
        std::thread::sleep(Duration::from_millis(rng.below(10)));
    }
    done
}

/// Samples the queue's head every 200 µs until `done`: the length of each episode in which
/// the head stayed put (µs), with work in the queue (head behind tail) and some living
/// receiver running. Time the sampler itself was off the CPU for long is left out (it cannot
/// tell what happened meanwhile).
fn watch_head(q: &Queue, done: &AtomicBool, receivers_stopped: &AtomicBool) -> Vec<u64> {
    let mut episodes = Vec::new();
    let mut head = q.positions().0;
    let (mut since, mut prev) = (Instant::now(), Instant::now());
    while !done.load(Ordering::Relaxed) {
        // Pacing the sampler, not synchronisation.
        std::thread::sleep(Duration::from_micros(200));
        let (h, tail) = q.positions();
        let now = Instant::now();
        let blind = now.duration_since(prev) > Duration::from_millis(5);
        prev = now;
        if h != head {
            if !blind {
                episodes.push(now.duration_since(since).as_micros() as u64);
            }
            (head, since) = (h, now);
        } else if blind || h == tail || receivers_stopped.load(Ordering::Relaxed) {
            since = now;
        }
    }
    episodes
}

/// Whether the killed receiver may have died with an item in hand (claimed and not freed, or
/// received and not logged): its claim word names a position past the head it read after its
/// last logged item. A claim of 0 (its last attempt found nothing and withdrew), or of a
/// position before that head (the last logged item's), means it held nothing.
fn receiver_may_hold(t: &TestBus, q: &Queue, killed: &ChildProc, v: &Verdict, log: usize) -> bool {
    let entry = q
        .participants()
        .into_iter()
        .find(|p| i64::from(p.pid) == i64::from(killed.pid()))
        .expect("the killed receiver's entry")
        .index as usize;
    // The producer table at word 256, 8 words an entry, the claim word third (docs/design.md
    // §11, "Layout"); a receiver's claim is (position + 1) | 2^62.
    let claim = Forger::new(t).load(256 + entry * 8 + 3);
    const CONSUMER: u64 = 1 << 62;
    claim & CONSUMER != 0 && claim & !CONSUMER > v.last_head[log]
}

/// What the receivers' logs say.
#[derive(Default)]
struct Verdict {
    logged: u64,
    torn: u64,
    duplicated: Vec<(u64, u64)>,
    out_of_order: Vec<(u64, u64)>,
    per_sender: HashMap<u64, HashSet<u64>>,
    /// Per log, the head its receiver read after receiving its last item (0: none).
    last_head: Vec<u64>,
}

fn judge(logs: &[PathBuf]) -> Verdict {
    let mut v = Verdict::default();
    for path in logs {
        let words = read_words(path);
        let mut last: HashMap<u64, u64> = HashMap::new();
        v.last_head
            .push(words.chunks_exact(3).last().map_or(0, |rec| rec[2]));
        for rec in words.chunks_exact(3) {
            let (id, k) = (rec[0], rec[1]);
            if id == TORN {
                v.torn += 1;
                continue;
            }
            v.logged += 1;
            if !v.per_sender.entry(id).or_default().insert(k) {
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

/// `p` (0..=1) of sorted `xs`.
fn quantile(xs: &[u64], p: f64) -> u64 {
    if xs.is_empty() {
        return 0;
    }
    xs[((xs.len() - 1) as f64 * p).round() as usize]
}

fn spawn(role: &str, env: &[(&str, String)]) -> ChildProc {
    let mut c = ChildProc::spawn(CHILD, role, env);
    c.expect_line("ready");
    c
}

/// Four senders and four receivers under random SIGSTOP/SIGCONT, one of each SIGKILLed: no
/// tear, no duplicate, every recorded send received once but for the killed ones' items in
/// hand, and stalls passed (see the module docs).
#[test]
fn stopped_and_killed_senders_and_receivers_never_duplicate_tear_or_wedge_the_queue() {
    if support::role().is_some() {
        return;
    }
    let started = Instant::now();
    let stops: u64 = support::env_or("SHMBUS_QUEUE_STOPS", 320);
    let item_size: usize = support::env_or("SHMBUS_QUEUE_STALL_ITEM", 2048);
    let capacity: u64 = support::env_or("SHMBUS_QUEUE_STALL_CAPACITY", CAPACITY);
    let seed = Rng::from_env("queue stall controllers").next();
    let t = TestBus::new("qstall");
    let dir = LogDir::new("qstall");
    let q = Queue::builder(t.name())
        .capacity(capacity)
        .item_size(item_size)
        .stall_bound(Some(STALL_BOUND))
        .create()
        .expect("create the queue");
    assert_eq!(q.stall_bound(), Some(STALL_BOUND));
    // Senders first, so that the queue is not closed while the receivers start.
    let mut senders: Vec<ChildProc> = (0..SENDERS)
        .map(|id| {
            spawn(
                "sender",
                &[
                    ("QUEUE", t.name().to_owned()),
                    ("ID", id.to_string()),
                    ("ITEM", item_size.to_string()),
                    ("PROGRESS", dir.file("progress", id).display().to_string()),
                ],
            )
        })
        .collect();
    let mut receivers: Vec<ChildProc> = (0..RECEIVERS as u64)
        .map(|n| {
            spawn(
                "receiver",
                &[
                    ("QUEUE", t.name().to_owned()),
                    ("LOG", dir.file("log", n).display().to_string()),
                    ("GAPS", dir.file("gaps", n).display().to_string()),
                ],
            )
        })
        .collect();
    let (senders_stopped, receivers_stopped) = (AtomicBool::new(false), AtomicBool::new(false));
    let watched = AtomicBool::new(false);
    let (sender_stops, receiver_stops, mut episodes) = std::thread::scope(|s| {
        let a = s.spawn(|| control(&mut senders, stops, seed, &senders_stopped));
        let b = s.spawn(|| control(&mut receivers, stops, seed ^ 0x5eed, &receivers_stopped));
        let w = s.spawn(|| watch_head(&q, &watched, &receivers_stopped));
        let (a, b) = (a.join().unwrap(), b.join().unwrap());
        watched.store(true, Ordering::Relaxed);
        (a, b, w.join().unwrap())
    });
    let (killed_sender, _) = sender_stops.killed.expect("a sender was killed");
    let (killed_receiver, _) = receiver_stops.killed.expect("a receiver was killed");

    // The survivors stop sending and report; then the queue closes and the receivers drain it.
    let mut sent: HashMap<u64, u64> = HashMap::new();
    let (mut resent, mut routed) = (0u64, 0u64);
    for (id, c) in senders.iter_mut().enumerate() {
        if id != killed_sender {
            c.tell("stop");
        }
    }
    for (id, c) in senders.iter_mut().enumerate() {
        if id == killed_sender {
            continue;
        }
        let line = c.next_line().expect("a sender reports");
        c.wait_success(LIMIT);
        println!("sender {id}: {line}");
        sent.insert(id as u64, field(&line, "sent"));
        resent += field(&line, "resent");
        routed += field(&line, "stalls_passed");
    }
    // A wedge shows here, as a failure with the queue's state, rather than as a hang on the
    // receivers' reports.
    let deadline = Instant::now() + LIMIT;
    while !q.is_closed() {
        assert!(
            Instant::now() < deadline,
            "the queue did not drain and close within {LIMIT:?} of the last send: (head, tail) \
             {:?}, {:?}, participants {:?}",
            q.positions(),
            q.totals(),
            q.participants()
        );
        std::thread::sleep(Duration::from_millis(1));
    }
    let mut passed_by_receivers = 0u64;
    for (n, c) in receivers.iter_mut().enumerate() {
        if n == killed_receiver {
            continue;
        }
        let line = c.next_line().expect("a receiver reports");
        c.wait_success(LIMIT);
        println!("receiver {n}: {line}");
        passed_by_receivers += field(&line, "stalls_passed");
    }

    // What each sender recorded as sent: the survivors' counts agree with their files.
    let mut recorded: HashMap<u64, u64> = HashMap::new();
    for id in 0..SENDERS {
        let words = read_words(&dir.file("progress", id));
        let n = words.first().copied().unwrap_or(0);
        if let Some(&k) = sent.get(&id) {
            assert_eq!(n, k, "sender {id}'s progress file and its report");
        }
        recorded.insert(id, n);
    }
    let v = judge(
        &(0..RECEIVERS as u64)
            .map(|n| dir.file("log", n))
            .collect::<Vec<_>>(),
    );
    assert_eq!(v.torn, 0, "torn items");
    assert!(
        v.duplicated.is_empty(),
        "duplicated: {:?}",
        &v.duplicated[..v.duplicated.len().min(8)]
    );
    assert!(
        v.out_of_order.is_empty(),
        "out of order per sender at one receiver: {:?}",
        &v.out_of_order[..v.out_of_order.len().min(8)]
    );
    let mut missing: Vec<(u64, u64)> = Vec::new();
    let mut unrecorded: Vec<(u64, u64)> = Vec::new();
    for id in 0..SENDERS {
        let n = recorded[&id];
        let got = v.per_sender.get(&id).cloned().unwrap_or_default();
        missing.extend((0..n).filter(|k| !got.contains(k)).map(|k| (id, k)));
        unrecorded.extend(got.iter().filter(|&&k| k >= n).map(|&k| (id, k)));
    }
    let killed = killed_sender as u64;
    assert!(
        v.per_sender.keys().all(|id| *id < SENDERS),
        "items of unknown senders"
    );
    let totals: QueueTotals = q.totals();
    let (head, tail) = q.positions();
    assert!(
        unrecorded
            .iter()
            .all(|&(id, k)| id == killed && k == recorded[&id]),
        "received items no sender recorded as sent, beyond the killed sender's item in hand \
         ({} recorded): {unrecorded:?}",
        recorded[&killed]
    );
    let receiver_held = receiver_may_hold(&t, &q, &receivers[killed_receiver], &v, killed_receiver);
    assert!(
        missing.is_empty() || receiver_held || totals.lost > 0,
        "items recorded as sent and never received, and the killed receiver held none: \
         {missing:?}, {totals:?}"
    );
    assert!(
        missing.len() <= 1,
        "items recorded as sent and never received (at most the killed receiver's one item in \
         hand): {missing:?}, {totals:?}"
    );
    assert!(
        totals.lost <= 1,
        "only the killed receiver loses, at most one item"
    );
    // A lost item is one a sender sent: recorded (then it is missing), or the killed sender's
    // item in hand (then it was never logged).
    let sender_in_hand = recorded[&killed];
    let in_hand_unseen = !unrecorded.contains(&(killed, sender_in_hand));
    assert!(
        totals.lost <= missing.len() as u64 + u64::from(in_hand_unseen),
        "an item counted lost was received: {totals:?}, missing {missing:?}"
    );
    assert!(
        totals.skipped <= 1,
        "only the killed sender's claim is skipped, at most one"
    );
    assert_eq!(head, tail, "the queue drained");
    assert!(q.is_closed());
    let dead = tail
        .checked_sub(v.logged + totals.skipped + totals.lost + totals.passed)
        .unwrap_or_else(|| {
            panic!(
                "more accounted than handed out: {tail} positions, {} logged, {totals:?}",
                v.logged
            )
        });
    assert!(totals.passed > 0, "no stall was passed: {totals:?}");
    assert!(
        resent + routed + passed_by_receivers > 0,
        "the survivors' counters show no pass, route or resend"
    );
    assert!(resent <= totals.passed && routed + passed_by_receivers <= totals.passed);

    let mut all: Vec<u64> = Vec::new();
    let mut maxima = Vec::new();
    for n in 0..RECEIVERS as u64 {
        if n as usize == killed_receiver {
            continue;
        }
        let mut g = read_words(&dir.file("gaps", n));
        g.sort_unstable();
        maxima.push((n, quantile(&g, 0.99), g.last().copied().unwrap_or(0)));
        all.extend(g);
    }
    all.sort_unstable();
    episodes.sort_unstable();
    println!(
        "queue-wide head stuck with work and a receiver running (µs, {} episodes): p99 {} \
         p99.9 {} max {}",
        episodes.len(),
        quantile(&episodes, 0.99),
        quantile(&episodes, 0.999),
        episodes.last().copied().unwrap_or(0)
    );
    println!(
        "stops: senders {:?}, receivers {:?}",
        sender_stops, receiver_stops
    );
    println!(
        "positions {tail}: {} logged, {totals:?}, {dead} other dead positions (routed laps of \
         held slots, an item received unlogged); resent {resent}, routed {routed}, passed by \
         receivers {passed_by_receivers}; missing {missing:?}, unrecorded {unrecorded:?}, killed \
         receiver may have held an item: {receiver_held}",
        v.logged
    );
    println!(
        "receiver gaps (µs, {} items): p50 {} p99 {} p99.9 {} max {}; (receiver, p99, max) {maxima:?}; \
         wall {:?}",
        all.len(),
        quantile(&all, 0.5),
        quantile(&all, 0.99),
        quantile(&all, 0.999),
        all.last().copied().unwrap_or(0),
        started.elapsed()
    );
}
