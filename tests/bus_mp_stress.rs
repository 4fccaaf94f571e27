//! Multi-producer stress with real processes: four producer processes on one multi-producer bus,
//! killed with SIGKILL (and replaced) and frozen with SIGSTOP/SIGCONT (preempted mid-write for
//! 1-50 ms) at random instants, while two subscribers check every message they receive.
//!
//! The run is a series of rounds, each on a fresh bus (64 slots of 64 bytes, so producers lap one
//! another within microseconds and a frozen writer is lapped many times):
//!
//! 1. Opening, on slots that still hold their initial zeros: one random producer starts alone and
//!    stops itself (SIGSTOP) halfway through writing sequence 0, to be continued 1-50 ms later
//!    like any frozen producer; a random producer is killed and replaced; the others start and
//!    lap the frozen writer.
//! 2. Kill trials at random instants (a random pause of 0-4 ms, the test's load, before each),
//!    each either a SIGKILL of a random producer, frozen or not, with a replacement (which may
//!    take the dead one's producer index), or a SIGSTOP of a random running producer for 1-50 ms
//!    (wherever it is: a quarter of its messages are written in place word by word with a yield
//!    between words, so many freezes land mid-write).
//! 3. End: the running producers exit first; producers still frozen are continued only then, so
//!    that a writer preempted mid-write finishes into a quiet ring, where the subscribers' last
//!    reads see whatever it left.
//!
//! Payloads carry (producer id, producer-local counter) and check themselves. Every producer
//! appends each counter whose publish returned `None` (dropped) to its own file, before it
//! publishes the next message. The subscribers (threads of this process) check:
//!
//! * torn: every delivered message passes its checksum and body check;
//! * duplicated: no sequence number, and no (producer, counter) pair, is delivered twice;
//! * order: sequence numbers, and each producer's counters, strictly increase;
//! * dropped: no message its publisher was told was dropped is ever delivered;
//! * accounting: `received + lost == next_seq - start` for every subscription, its own counts
//!   agree with `Subscriber::stats`, and after every producer has exited the follower drains to
//!   `Recv::Closed` with `next_seq == cursor`.
//!
//! One subscriber follows the bus from sequence 0 with blocking receives and random short pauses
//! (so it lags and reads slots a lap old); the other keeps subscribing afresh at
//! `Start::Oldest` and sweeps the ring (a late joiner reads every slot, including those a frozen
//! writer may still touch).
//!
//! Default: 75 rounds of 4 kills (300 kill trials) plus about as many freezes, a few seconds on an
//! idle 2-core machine. `SHMBUS_SOAK_SECS=N` keeps starting rounds for N seconds;
//! `SHMBUS_TEST_SEED` replays the parent's random choices (the processes' timing is not
//! replayable). The run stops after the first round with a failure, and prints the first failures
//! of each check, each naming the check, the sequence number and the producer.

use shmbus_testkit as support;

use std::collections::HashMap;
use std::fs::OpenOptions;
use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use support::delivered::Delivered;

use shmbus::{Bus, BusBuilder, Recv, Start, Subscriber, SubscriberStats, Wait};
use support::{
    check_payload, env, field, make_payload, payload_len, role, say, ChildProc, Rng, TestBus,
};

/// The test that child processes run.
const CHILD: &str = "child_entry";
const SLOTS: u64 = 64;
const CAPACITY: usize = 64;
const PRODUCERS: usize = 4;
const ROUNDS: u64 = 75;
const KILLS_PER_ROUND: u64 = 4;
/// How long a subscriber may take to reach `Closed` once every producer has exited.
const DRAIN_LIMIT: Duration = Duration::from_secs(20);
/// Failures kept per check, so that a broken build prints the first few, not millions.
const KEEP_FAILURES: usize = 8;

/// Entry point of the producer processes; does nothing when run as an ordinary test.
#[test]
fn child_entry() {
    support::run_role(&[("producer", producer)]);
}

// ---------------------------------------------------------------------------------------------
// Producer process
// ---------------------------------------------------------------------------------------------

const WAIT: u8 = 0;
const RUN: u8 = 1;
const EXIT: u8 = 2;

/// Reads "go" and "exit" from stdin into a state; the end of stdin (parent gone) is "exit".
fn commands(initial: u8) -> Arc<AtomicU8> {
    let state = Arc::new(AtomicU8::new(initial));
    let s = state.clone();
    std::thread::spawn(move || {
        for line in std::io::stdin().lock().lines() {
            match line.as_deref() {
                Ok("go") => s.store(RUN, Ordering::SeqCst),
                Ok("exit") | Err(_) => break,
                Ok(_) => {}
            }
        }
        s.store(EXIT, Ordering::SeqCst);
    });
    state
}

/// How one message is written: the copy path, the in-place path in one write, or the in-place
/// path word by word with a yield between words (a producer that computes its message in the
/// slot, which leaves the slot odd for long stretches: the preemption this test is about).
#[derive(Clone, Copy)]
enum WritePath {
    Copy,
    InPlace,
    SlowInPlace,
}

fn publish_one(tx: &mut shmbus::Publisher, msg: &[u8], how: WritePath) -> bool {
    match how {
        WritePath::Copy => tx.publish_bytes(msg).expect("fits").is_some(),
        WritePath::InPlace => tx
            .publish_with(|w| w.write_at(0, msg).expect("fits"))
            .is_some(),
        WritePath::SlowInPlace => tx
            .publish_with(|w| {
                for (i, chunk) in msg.chunks(8).enumerate() {
                    w.write_at(i * 8, chunk).expect("fits");
                    std::thread::yield_now();
                }
            })
            .is_some(),
    }
}

/// Writes the first half of `msg` into its slot, stops this process (SIGSTOP: the parent
/// continues it), then writes the rest: a writer preempted mid-write at a known point.
fn publish_stopping_halfway(tx: &mut shmbus::Publisher, msg: &[u8]) -> bool {
    let half = msg.len() / 2;
    tx.publish_with(|w| {
        w.write_at(0, &msg[..half]).expect("fits");
        nix::sys::signal::raise(nix::sys::signal::Signal::SIGSTOP).expect("stop myself");
        w.write_at(half, &msg[half..]).expect("fits");
    })
    .is_some()
}

/// Attaches, says `attached index=I`, waits for "go" (GO=0) or starts at once (GO=1), publishes
/// as fast as it can until "exit", recording each dropped counter in DROPS before going on.
/// With STOP_FIRST=1 it stops itself halfway through writing its first message.
fn producer() {
    let bus = Bus::open(&env::<String>("BUS")).expect("open bus");
    let id: u64 = env("ID");
    let drops_path: String = env("DROPS");
    let mut drops = OpenOptions::new()
        .create(true)
        .append(true)
        .open(&drops_path)
        .expect("open drops file");
    let mut tx = match bus.publisher() {
        Ok(p) => p,
        Err(e) => {
            say(&format!("error {e}"));
            std::process::exit(2);
        }
    };
    let state = commands(if env::<u8>("GO") == 1 { RUN } else { WAIT });
    say(&format!("attached index={}", tx.producer_index()));
    while state.load(Ordering::SeqCst) == WAIT {
        std::thread::sleep(Duration::from_micros(100));
    }
    let cap = bus.capacity();
    let mut buf = vec![0u8; cap];
    let mut rng = Rng::new(id);
    let mut k = 0u64;
    let mut stop_first = env::<u8>("STOP_FIRST") == 1;
    while state.load(Ordering::SeqCst) == RUN {
        let len = payload_len(id, k, cap);
        make_payload(&mut buf[..len], id, k);
        if std::mem::take(&mut stop_first) {
            if !publish_stopping_halfway(&mut tx, &buf[..len]) {
                drops
                    .write_all(format!("{k}\n").as_bytes())
                    .expect("record a drop");
            }
            k += 1;
            continue;
        }
        let how = match rng.below(4) {
            0 | 1 => WritePath::Copy,
            2 => WritePath::InPlace,
            _ => WritePath::SlowInPlace,
        };
        if !publish_one(&mut tx, &buf[..len], how) {
            // One write(2) per drop: a SIGKILL cannot leave half a line.
            drops
                .write_all(format!("{k}\n").as_bytes())
                .expect("record a drop");
        }
        k += 1;
    }
    let s = tx.stats();
    say(&format!(
        "done published={} dropped={} attempts={k}",
        s.published, s.dropped
    ));
}

// ---------------------------------------------------------------------------------------------
// Subscriber checks
// ---------------------------------------------------------------------------------------------

/// Counters of one subscriber (summed over its subscriptions) and the first failures of each
/// check, each naming the check, the sequence number and the producer.
#[derive(Default)]
struct Tally {
    received: u64,
    lost: u64,
    subscriptions: u64,
    torn: u64,
    duplicated: u64,
    reordered: u64,
    accounting: u64,
    failures: Vec<String>,
}

impl Tally {
    /// Records a failure, once (a sweeper may read the same bad slot in several sweeps).
    fn fail(&mut self, what: String) {
        if self.failures.len() < KEEP_FAILURES && !self.failures.contains(&what) {
            self.failures.push(what);
        }
    }

    fn bad(&self) -> u64 {
        self.torn + self.duplicated + self.reordered + self.accounting
    }
}

/// The checks of one subscription (one `Subscriber`, from its start position on).
struct Checker<'a> {
    who: &'a str,
    tally: &'a mut Tally,
    delivered: &'a mut Delivered,
    start: u64,
    last_seq: Option<u64>,
    /// Per producer id: the last counter received.
    last_k: HashMap<u64, u64>,
    received: u64,
    lost: u64,
}

impl<'a> Checker<'a> {
    fn new(who: &'a str, tally: &'a mut Tally, delivered: &'a mut Delivered, start: u64) -> Self {
        tally.subscriptions += 1;
        Checker {
            who,
            tally,
            delivered,
            start,
            last_seq: None,
            last_k: HashMap::new(),
            received: 0,
            lost: 0,
        }
    }

    fn message(&mut self, seq: u64, bytes: &[u8]) {
        self.received += 1;
        let who = self.who;
        if let Some(last) = self.last_seq {
            if seq == last {
                self.tally.duplicated += 1;
                self.tally
                    .fail(format!("{who}: duplicated: seq {seq} delivered twice"));
            } else if seq < last {
                self.tally.reordered += 1;
                self.tally.fail(format!(
                    "{who}: reordered: seq {seq} delivered after {last}"
                ));
            }
        }
        self.last_seq = Some(seq);
        let Some((id, k)) = check_payload(bytes) else {
            self.tally.torn += 1;
            let word = |i: usize| {
                bytes
                    .get(i * 8..i * 8 + 8)
                    .map(|b| u64::from_le_bytes(b.try_into().expect("8 bytes")))
            };
            self.tally.fail(format!(
                "{who}: torn: seq {seq} (slot {}), {} bytes, starts as producer {:?} counter {:?}",
                seq % SLOTS,
                bytes.len(),
                word(0),
                word(1)
            ));
            return;
        };
        match self.last_k.insert(id, k) {
            Some(prev) if prev == k => {
                self.tally.duplicated += 1;
                self.tally.fail(format!(
                    "{who}: duplicated: producer {id} counter {k} delivered twice (again at seq {seq})"
                ));
            }
            Some(prev) if prev > k => {
                self.tally.reordered += 1;
                self.tally.fail(format!(
                    "{who}: reordered: producer {id} counter {k} at seq {seq} after counter {prev}"
                ));
            }
            _ => {}
        }
        self.delivered.insert(id, k);
    }

    fn lapped(&mut self, lost: u64) {
        self.lost += lost;
    }

    /// The accounting identity of this subscription, against its own counts and the library's.
    fn finish(self, stats: SubscriberStats, next: u64) {
        let who = self.who;
        let stepped = next.wrapping_sub(self.start);
        if self.received + self.lost != stepped
            || (stats.received, stats.lost) != (self.received, self.lost)
        {
            self.tally.accounting += 1;
            self.tally.fail(format!(
                "{who}: accounting: from seq {} to {next} ({stepped} sequences) it counted \
                 received {} + lost {}, and the subscriber's stats say received {} + lost {}",
                self.start, self.received, self.lost, stats.received, stats.lost
            ));
        }
        self.tally.received += self.received;
        self.tally.lost += self.lost;
    }
}

/// Follows the bus from `rx`'s start with blocking receives, pausing now and then so that it
/// lags; once `done` is set (every producer exited) it drains to `Closed`, then checks that it
/// stepped over every claimed sequence.
fn follow(bus: &Bus, mut rx: Subscriber, done: &AtomicBool, seed: u64) -> (Tally, Delivered) {
    let (mut tally, mut delivered) = (Tally::default(), Delivered::default());
    let mut rng = Rng::new(seed);
    let start = rx.next_seq();
    let mut check = Checker::new("follower", &mut tally, &mut delivered, start);
    let mut drain_started: Option<Instant> = None;
    loop {
        match rx.recv_timeout(Duration::from_millis(20)) {
            Recv::Message(m) => {
                check.message(m.seq(), m.bytes());
                if rng.below(2000) == 0 {
                    // Load, not synchronisation: fall behind by up to a few laps.
                    std::thread::sleep(Duration::from_micros(rng.below(2000)));
                }
            }
            Recv::Lapped { lost } => check.lapped(lost),
            Recv::Closed if done.load(Ordering::SeqCst) => break,
            Recv::Closed | Recv::Empty => {}
        }
        if done.load(Ordering::SeqCst) {
            let since = *drain_started.get_or_insert_with(Instant::now);
            if since.elapsed() > DRAIN_LIMIT {
                check.tally.accounting += 1;
                check.tally.fail(format!(
                    "follower: accounting: no Closed within {DRAIN_LIMIT:?} after every producer \
                     exited (next seq {}, cursor {})",
                    rx.next_seq(),
                    bus.cursor()
                ));
                break;
            }
        }
    }
    let (stats, next, cursor) = (rx.stats(), rx.next_seq(), bus.cursor());
    check.finish(stats, next);
    if next != cursor {
        tally.accounting += 1;
        tally.fail(format!(
            "follower: accounting: closed at seq {next} but {cursor} sequences were claimed"
        ));
    }
    (tally, delivered)
}

/// Subscribes afresh at `Start::Oldest` again and again, reading what is there with `try_recv`
/// (a late joiner reads every slot of the ring); a last sweep once every producer has exited.
fn sweep(bus: &Bus, done: &AtomicBool, seed: u64) -> (Tally, Delivered) {
    let (mut tally, mut delivered) = (Tally::default(), Delivered::default());
    let mut rng = Rng::new(seed);
    loop {
        let last = done.load(Ordering::SeqCst);
        let mut rx = bus.subscribe(Start::Oldest).wait_strategy(Wait::Yield);
        let mut check = Checker::new("sweeper", &mut tally, &mut delivered, rx.next_seq());
        // A few laps at most: producers keep writing while we read.
        for _ in 0..4 * SLOTS {
            match rx.try_recv() {
                Recv::Message(m) => check.message(m.seq(), m.bytes()),
                Recv::Lapped { lost } => check.lapped(lost),
                Recv::Empty | Recv::Closed => break,
            }
        }
        check.finish(rx.stats(), rx.next_seq());
        if last {
            return (tally, delivered);
        }
        // Load, not synchronisation: let the ring turn over between sweeps.
        std::thread::sleep(Duration::from_micros(rng.below(500)));
    }
}

// ---------------------------------------------------------------------------------------------
// Parent: rounds of kills and freezes
// ---------------------------------------------------------------------------------------------

/// A live producer process.
struct Producer {
    proc: ChildProc,
    id: u64,
    /// While frozen (SIGSTOP): when it is to be continued.
    frozen_until: Option<Instant>,
}

impl Producer {
    fn signal(&self, sig: i32) {
        // SAFETY: kill(2) on the pid of a child we hold and have not reaped (a `ChildProc` reaps
        // only in `kill9`, `wait_*` or drop), so the pid cannot name another process.
        let rc = unsafe { libc::kill(self.proc.pid(), sig) };
        assert_eq!(rc, 0, "signal {sig} to producer {}", self.id);
    }
}

/// Temporary directory of the drop files, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new() -> Self {
        let p = std::env::temp_dir().join(format!("shmbus-mp-stress-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).expect("create temp dir");
        TempDir(p)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn drops_file(dir: &Path, id: u64) -> PathBuf {
    dir.join(format!("drops-{id}"))
}

/// The counters producer `id` was told were dropped.
fn read_drops(dir: &Path, id: u64) -> Vec<u64> {
    let Ok(text) = std::fs::read_to_string(drops_file(dir, id)) else {
        return Vec::new();
    };
    text.lines()
        .map(|l| l.parse().expect("a counter per line"))
        .collect()
}

/// What a whole run saw.
#[derive(Default)]
struct Totals {
    rounds: u64,
    kills: u64,
    freezes: u64,
    drops: u64,
    dropped_delivered: u64,
    sequences: u64,
    follower: Tally,
    sweeper: Tally,
}

fn merge(into: &mut Tally, t: Tally, round: u64) {
    into.received += t.received;
    into.lost += t.lost;
    into.subscriptions += t.subscriptions;
    into.torn += t.torn;
    into.duplicated += t.duplicated;
    into.reordered += t.reordered;
    into.accounting += t.accounting;
    for f in t.failures {
        into.fail(format!("round {round}: {f}"));
    }
}

struct Round<'a> {
    bus: &'a Bus,
    dir: &'a Path,
    rng: &'a mut Rng,
    next_id: u64,
    producers: Vec<Producer>,
    all_ids: Vec<u64>,
    kills: u64,
    freezes: u64,
}

/// Whether process `pid` is stopped (state `T` in /proc/PID/stat).
fn is_stopped(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| {
            // The state follows the command name, which is in parentheses.
            let rest = &s[s.rfind(')')? + 1..];
            rest.split_whitespace().next().map(|st| st == "T")
        })
        .unwrap_or(false)
}

/// How a new producer begins.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Begin {
    /// Waits for "go".
    OnGo,
    /// Waits for "go", then stops itself halfway through writing its first message.
    OnGoStoppingHalfway,
    /// Publishes at once (a replacement).
    AtOnce,
}

impl Round<'_> {
    /// Starts a producer and waits until it has attached.
    fn spawn(&mut self, begin: Begin) {
        let id = self.next_id;
        self.next_id += 1;
        let env = [
            ("BUS", self.bus.name().to_owned()),
            ("ID", id.to_string()),
            ("DROPS", drops_file(self.dir, id).display().to_string()),
            ("GO", u8::from(begin == Begin::AtOnce).to_string()),
            (
                "STOP_FIRST",
                u8::from(begin == Begin::OnGoStoppingHalfway).to_string(),
            ),
        ];
        let mut proc = ChildProc::spawn(CHILD, "producer", &env);
        match proc.next_line() {
            Some(l) if l.starts_with("attached") => {}
            other => panic!("producer {id} did not attach: it said {other:?}"),
        }
        self.all_ids.push(id);
        self.producers.push(Producer {
            proc,
            id,
            frozen_until: None,
        });
    }

    fn thaw_due(&mut self, now: Instant) {
        for p in &mut self.producers {
            if p.frozen_until.is_some_and(|t| t <= now) {
                p.signal(libc::SIGCONT);
                p.frozen_until = None;
            }
        }
    }

    /// SIGKILL a random producer (frozen or not) and start its replacement, which may take the
    /// dead one's producer index.
    fn kill_one(&mut self) {
        let i = self.rng.below(self.producers.len() as u64) as usize;
        let mut victim = self.producers.swap_remove(i);
        assert_eq!(
            victim.proc.kill9(),
            Some(libc::SIGKILL),
            "producer {} ended before it was killed",
            victim.id
        );
        self.kills += 1;
        self.spawn(Begin::AtOnce);
    }

    /// A random 1-50 ms.
    fn freeze_time(&mut self) -> Duration {
        Duration::from_micros(1000 + self.rng.below(49_000))
    }

    /// SIGSTOP a random running producer for 1-50 ms: preempted wherever it is, mid-write or not.
    fn freeze_one(&mut self) {
        let running: Vec<usize> = (0..self.producers.len())
            .filter(|&i| self.producers[i].frozen_until.is_none())
            .collect();
        if running.is_empty() {
            return;
        }
        let i = running[self.rng.below(running.len() as u64) as usize];
        self.producers[i].signal(libc::SIGSTOP);
        let t = self.freeze_time();
        self.producers[i].frozen_until = Some(Instant::now() + t);
        self.freezes += 1;
    }

    /// Tells every producer to exit and waits for them: the running ones first, then the frozen
    /// ones, continued only now, so that a writer preempted mid-write finishes into a quiet ring
    /// where the subscribers' last reads see whatever it left.
    fn stop_all(&mut self) {
        let mut all = std::mem::take(&mut self.producers);
        all.sort_by_key(|p| p.frozen_until.is_some());
        for mut p in all {
            if p.frozen_until.is_some() {
                p.signal(libc::SIGCONT);
            }
            p.proc.tell("exit");
            let line = p.proc.next_line().unwrap_or_default();
            assert!(
                line.starts_with("done"),
                "producer {} said {line:?} at exit",
                p.id
            );
            let dropped = field(&line, "dropped");
            assert_eq!(
                field(&line, "published") + dropped,
                field(&line, "attempts"),
                "producer {}: every publish is either published or dropped: {line}",
                p.id
            );
            assert_eq!(
                read_drops(self.dir, p.id).len() as u64,
                dropped,
                "producer {}: its drop file lists every drop it counted",
                p.id
            );
            p.proc.wait_success(Duration::from_secs(20));
        }
    }
}

/// One round on a fresh bus: four producers start together, then `kills` kill trials with as
/// many freezes between them, then every producer exits and the subscribers drain.
fn round(n: u64, kills: u64, rng: &mut Rng, dir: &Path, totals: &mut Totals) {
    let name = TestBus::new("mp-stress");
    let bus = BusBuilder::new(name.name())
        .slots(SLOTS)
        .capacity(CAPACITY)
        .multi_producer()
        .create()
        .expect("create bus");
    let done = AtomicBool::new(false);
    let follower_rx = bus.subscribe(Start::Oldest).wait_strategy(Wait::Yield);
    let (seed_f, seed_s) = (rng.next(), rng.next());
    let mut r = Round {
        bus: &bus,
        dir,
        rng,
        next_id: (n + 1) << 20,
        producers: Vec::new(),
        all_ids: Vec::new(),
        kills: 0,
        freezes: 0,
    };
    // The opener writes first, and stops itself halfway through sequence 0.
    let opener = r.rng.below(PRODUCERS as u64) as usize;
    for i in 0..PRODUCERS {
        r.spawn(if i == opener {
            Begin::OnGoStoppingHalfway
        } else {
            Begin::OnGo
        });
    }
    let ((follower, f_delivered), (sweeper, s_delivered)) = std::thread::scope(|s| {
        let follower = s.spawn(|| follow(&bus, follower_rx, &done, seed_f));
        let sweeper = s.spawn(|| sweep(&bus, &done, seed_s));
        // The opening, on slots that still hold their initial zeros: the opener is preempted
        // halfway through writing sequence 0 (for 1-50 ms, like any freeze), a random producer
        // is killed, and the others lap the opener.
        r.producers[opener].proc.tell("go");
        let pid = r.producers[opener].proc.pid();
        support::await_cond(Duration::from_secs(20), "the opener to stop", || {
            is_stopped(pid)
        });
        let t = r.freeze_time();
        r.producers[opener].frozen_until = Some(Instant::now() + t);
        r.freezes += 1;
        for (i, p) in r.producers.iter_mut().enumerate() {
            if i != opener {
                p.proc.tell("go");
            }
        }
        r.kill_one();
        while r.kills < kills {
            r.thaw_due(Instant::now());
            // A random pause: the test's load, not synchronisation.
            std::thread::sleep(Duration::from_micros(r.rng.below(4000)));
            if r.rng.below(2) == 0 {
                r.freeze_one();
            } else {
                r.kill_one();
            }
        }
        r.stop_all();
        done.store(true, Ordering::SeqCst);
        (
            follower.join().expect("follower thread"),
            sweeper.join().expect("sweeper thread"),
        )
    });
    totals.rounds += 1;
    totals.kills += r.kills;
    totals.freezes += r.freezes;
    totals.sequences += bus.cursor();
    for &id in &r.all_ids {
        for k in read_drops(dir, id) {
            totals.drops += 1;
            for (who, d, t) in [
                ("follower", &f_delivered, &mut totals.follower),
                ("sweeper", &s_delivered, &mut totals.sweeper),
            ] {
                if d.contains(id, k) {
                    totals.dropped_delivered += 1;
                    t.fail(format!(
                        "round {n}: {who}: dropped then delivered: producer {id} was told \
                         counter {k} was dropped"
                    ));
                }
            }
        }
    }
    merge(&mut totals.follower, follower, n);
    merge(&mut totals.sweeper, sweeper, n);
}

#[test]
fn multi_producer_bus_never_tears_duplicates_or_delivers_a_drop_under_kills_and_preemption() {
    if role().is_some() {
        return;
    }
    let mut rng = Rng::from_env("mp_stress");
    let soak = std::env::var("SHMBUS_SOAK_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .map(Duration::from_secs);
    let dir = TempDir::new();
    let mut totals = Totals::default();
    let started = Instant::now();
    while totals.rounds < ROUNDS || soak.is_some_and(|d| started.elapsed() < d) {
        round(
            totals.rounds,
            KILLS_PER_ROUND,
            &mut rng,
            &dir.0,
            &mut totals,
        );
        let bad = totals.follower.bad() + totals.sweeper.bad() + totals.dropped_delivered;
        if bad > 0 {
            break;
        }
    }
    let (f, s) = (&totals.follower, &totals.sweeper);
    eprintln!(
        "mp_stress: {} rounds in {:.1?}: {} kills, {} freezes, {} sequences, {} drops; \
         follower received {} lost {}; sweeper {} subscriptions received {} lost {}",
        totals.rounds,
        started.elapsed(),
        totals.kills,
        totals.freezes,
        totals.sequences,
        totals.drops,
        f.received,
        f.lost,
        s.subscriptions,
        s.received,
        s.lost
    );
    let report = |t: &Tally| {
        format!(
            "torn {} duplicated {} reordered {} accounting {}",
            t.torn, t.duplicated, t.reordered, t.accounting
        )
    };
    let failures: Vec<&String> = f.failures.iter().chain(&s.failures).collect();
    assert!(
        failures.is_empty() && totals.dropped_delivered == 0,
        "follower: {}; sweeper: {}; dropped then delivered {}; first failures:\n  {}",
        report(f),
        report(s),
        totals.dropped_delivered,
        failures
            .iter()
            .take(2 * KEEP_FAILURES)
            .map(|s| s.as_str())
            .collect::<Vec<_>>()
            .join("\n  ")
    );
    assert!(
        totals.kills >= ROUNDS * KILLS_PER_ROUND,
        "only {} kill trials",
        totals.kills
    );
    assert!(
        f.received > 0 && s.received > 0,
        "a subscriber received nothing: the test proves nothing"
    );
}
