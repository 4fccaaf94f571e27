//! `shmbus-bench soak`: producer and consumer *processes* on one bus for N seconds, checking every
//! message (checksum, per-producer order, sequence order, exact loss accounting, and that no
//! message its publisher was told was dropped is delivered), with random consumer stalls and, if
//! asked, producers killed with SIGKILL and replaced while they publish, or frozen with SIGSTOP
//! (preempted mid-write) and continued with SIGCONT, past the stall bound at times. With
//! `--kind queue`, sender and receiver processes on a work queue instead, checking that every
//! item is received exactly once ([`queue`]).
//!
//! The parent re-executes this binary as its children: `shmbus-bench soak --role producer|consumer
//! |sender|receiver --bus NAME ...` (hidden arguments of the same subcommand), so `main.rs` needs
//! nothing but a `soak` subcommand that flattens [`SoakArgs`] and calls [`run`].
//!
//! Every producer appends each counter whose publish returned `None` (dropped) to its own file in
//! a temporary directory before it publishes again; each consumer reads those files once every
//! producer has gone and checks them against the (producer, counter) pairs it received (one bit
//! per counter: a few megabytes for a 10-minute soak at the default rate).
//!
//! Pass criteria: torn = 0, duplicated = 0, reordered = 0, dropped-then-delivered = 0, and for
//! every consumer `received + lost == sequences it stepped over`. Lost messages are expected
//! (stalled consumers are lapped; killed producers abandon sequences; stopped producers' sequences
//! are passed after the stall bound) and reported.
//!
//! With `--stop-every-ms`, the stall figures of [`stops`] are reported beside them.

mod queue;
mod stops;

use std::collections::HashMap;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use shmbus::{Bus, BusBuilder, Recv, Start, Wait};
use shmbus_testkit::delivered::Delivered;
use shmbus_testkit::payload::{check_payload, make_payload, mix, Rng};

/// The long help of `shmbus-bench soak`: what it runs and what each reported figure means.
pub const LONG_ABOUT: &str = "\
Correctness soak: producer and consumer processes checking every message.

--kind bus (the default): --producers processes publish checksummed messages (producer id, \
counter, body, FNV-1a) on one bus (a multi-producer bus when --producers > 1) and --consumers \
processes read every one from the oldest. --kind queue: --senders processes send checksummed \
items to --receivers processes on one work queue (each item to exactly one receiver).

--stop-every-ms N: about every N ms (uniform in N/2..3N/2) the parent freezes a random \
producer (queue: a random sender or receiver) with SIGSTOP and continues it with SIGCONT after a \
log-uniform 1 ms..=--max-stop-ms (default 2 s: most stops are short, some pass the stall bound), \
never all of one role at once. On a bus it needs --producers 2 or more: the stall bound applies \
to multi-producer buses only. --stall-bound-ms sets the segment's bound (default the library's, \
1 s; 0: none). So that stops land mid-publish, bus producers write one message in four word by \
word with a yield between words, and with stops producers and senders hold about 300 messages \
a second (one in rate/300; one in 256 flat out) mid-write for 1 ms: a bus producer sleeps \
inside publish_with, a queue sender sends the item from a buffer whose last word faults and \
whose fault handler sleeps. The bound only shows when \
the ring does not wrap first: on a bus, a stopped producer's sequence is lost to a lap once the \
others publish --slots messages (4096 at 2 x 100 000/s: 20 ms), so use --slots / --rate to \
make that longer than the bound.

Figures (text, and the same names in --json):
  torn              messages/items whose checksum or body was wrong. Must be 0.
  duplicated        a sequence number, or a (producer, counter) pair, delivered twice (queue: an \
item received twice, by one receiver or two). Must be 0.
  reordered         a producer's counter lower than one it delivered before, per consumer or \
receiver (bus: also a sequence number). Must be 0.
  dropped-delivered (bus) messages whose publisher was told they were dropped. Must be 0.
  received, lost    (bus) per consumer: messages delivered and sequence numbers counted lost \
(lapped, abandoned by a killed producer, given up, or passed after the stall bound); \
accounting error = received + lost - sequences stepped over. Must be 0.
  sent, missing     (queue) items each sender's send returned for, and those no receiver got; \
missing must equal the queue's totals.lost (items a dead receiver took; 0 without kills). \
unsent-delivered: items received that no sender reported sent. Must be 0.
  stops             SIGSTOPs sent, per role.
  stalls passed     (bus) sequences consumers passed because their live producer had not \
committed within the bound (counted in lost); (queue) positions receivers passed because a \
live sender held them past the bound, and slots senders routed around because a live receiver \
held them past the bound (totals.passed: both).
  re-sent           (queue) items a sender sent again at a new position after receivers passed \
the one it held while stopped (each still received exactly once).
  stall per stop    for each stop, the longest time a running party went without progress \
while it had work, if that began during the stop (or up to 5 ms before it: a stop that lands \
in a held write finds its stall begun); p50/p99/max over the stops, and over the \
stops longer than the bound. Bus, producer stops: a consumer whose next sequence was claimed \
(the cursor past it) read or passed nothing. Queue, sender stops: a sender had claimed an item \
(tail > head), a receiver was running, and no receiver took or passed anything (the head did not \
move). Queue, receiver stops: a running sender spent that long in one send while the queue had \
room (tail - head < capacity: waiting on a full queue is no stall). Sampled by the \
parent about every millisecond (the longest gap between its samples is reported), so short \
stalls read as 0 and each figure is within about one sample of the truth. The target is the \
bound + 10 ms; 'over target' counts the stops above it. A stall is charged to every stop it \
began during, so overlapping stops can share one; each queue receiver times a stall from its \
own first look, so a receiver stopped while a sender is can delay the pass. --json adds each \
stop's start, length and figure. The longest stall while nobody was \
stopped shows what the loaded machine alone does.";

/// Which segment kind a soak runs on.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum SoakKind {
    /// Producers and consumers on a bus.
    #[default]
    Bus,
    /// Senders and receivers on a work queue.
    Queue,
}

/// Options of the soak test.
#[derive(clap::Args, Debug, Clone)]
pub struct SoakArgs {
    /// What to soak: a bus, or a work queue.
    #[arg(long, value_enum, default_value_t)]
    pub kind: SoakKind,
    /// How long producers publish, in seconds.
    #[arg(long, default_value_t = 60)]
    pub seconds: u64,
    /// Producer processes (more than one makes a multi-producer bus); queue: sender processes.
    #[arg(long, visible_alias = "senders", default_value_t = 2)]
    pub producers: u32,
    /// Consumer processes; queue: receiver processes.
    #[arg(long, visible_alias = "receivers", default_value_t = 2)]
    pub consumers: u32,
    /// Ring slots (queue: items the queue holds).
    #[arg(long, default_value_t = 4096)]
    pub slots: u64,
    /// Payload capacity in bytes (messages are 24..=capacity bytes).
    #[arg(long, default_value_t = 256)]
    pub capacity: usize,
    /// Messages per second per producer (0: as fast as it can).
    #[arg(long, default_value_t = 100_000)]
    pub rate: u64,
    /// Longest random consumer stall, in milliseconds (0: consumers never stall).
    #[arg(long, default_value_t = 20)]
    pub max_stall_ms: u64,
    /// Kill -9 a random producer and start a new one every this many milliseconds (0: never).
    /// Bus only.
    #[arg(long, default_value_t = 0)]
    pub kill_every_ms: u64,
    /// About every this many milliseconds (jittered), freeze a random producer (queue: sender or
    /// receiver) with SIGSTOP, and continue it with SIGCONT after a log-uniform 1..=--max-stop-ms;
    /// never all of one role at once (0: never). A bus needs --producers 2 or more.
    #[arg(long, default_value_t = 0)]
    pub stop_every_ms: u64,
    /// Longest freeze, in milliseconds.
    #[arg(long, default_value_t = 2000)]
    pub max_stop_ms: u64,
    /// The stall bound of the segment in milliseconds (0: none; default: the library's, 1 s).
    /// A bus needs --producers 2 or more.
    #[arg(long)]
    pub stall_bound_ms: Option<u64>,
    /// Seed of the random stalls and kills (0: from the clock).
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Child role (internal).
    #[arg(long, hide = true)]
    pub role: Option<String>,
    /// Bus name of a child (internal).
    #[arg(long, hide = true)]
    pub bus: Option<String>,
    /// Producer id of a child (internal).
    #[arg(long, hide = true, default_value_t = 0)]
    pub id: u64,
    /// When children stop, in ms since the Unix epoch (internal).
    #[arg(long, hide = true, default_value_t = 0)]
    pub until_ms: u64,
    /// Where producers record the counters of their dropped messages (internal).
    #[arg(long, hide = true)]
    pub drops_dir: Option<PathBuf>,
    /// The progress page, and this child's line on it (internal).
    #[arg(long, hide = true)]
    pub progress: Option<PathBuf>,
    #[arg(long, hide = true, default_value_t = 0)]
    pub line: usize,
}

impl SoakArgs {
    /// The stall bound the segment is created with.
    fn stall_bound(&self) -> Option<Duration> {
        match self.stall_bound_ms {
            None => Some(shmbus::DEFAULT_STALL_BOUND),
            Some(0) => None,
            Some(ms) => Some(Duration::from_millis(ms)),
        }
    }

    /// This child's line of the progress page, if the parent made one.
    fn progress_line(&self) -> Result<Option<stops::ProgressLine>, String> {
        self.progress
            .as_deref()
            .map(|p| stops::ProgressLine::open(p, self.line))
            .transpose()
    }
}

/// Runs the soak (or, with the hidden `--role`, one of its child processes). Returns an error
/// if any message was torn, duplicated or reordered, the loss accounting is off, or a child
/// failed.
pub fn run(args: &SoakArgs, json: bool) -> Result<(), String> {
    match args.role.as_deref() {
        None if args.kind == SoakKind::Queue => queue::parent(args, json),
        None => parent(args, json),
        Some("producer") => producer(args),
        Some("consumer") => consumer(args),
        Some("sender") => queue::sender(args),
        Some("receiver") => queue::receiver(args),
        Some(other) => Err(format!("unknown soak role {other:?}")),
    }
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

fn payload_len(id: u64, k: u64, capacity: usize) -> usize {
    24 + (mix(id.wrapping_mul(31) ^ k) % (capacity as u64 - 23)) as usize
}

/// How long a producer or sender holds one message in [`hold_every`] mid-write when the soak
/// stops participants.
const HOLD: Duration = Duration::from_millis(1);

/// A window between claiming a sequence (a queue position) and committing it lasts nanoseconds,
/// so a random stop almost never lands in it. With stops, producers and senders hold one message
/// in this many for [`HOLD`]: about 300 a second at `rate` (256 flat out), about 30% of their
/// time, so that about a third of the stops land mid-write.
fn hold_every(rate: u64) -> u64 {
    if rate == 0 {
        256
    } else {
        (rate / 300).max(1)
    }
}

fn child_bus(args: &SoakArgs) -> Result<Bus, String> {
    let name = args.bus.as_deref().ok_or("child without --bus")?;
    Bus::open(name).map_err(|e| e.to_string())
}

/// The file in which producer `id` records its dropped counters.
fn drops_file(dir: &Path, id: u64) -> PathBuf {
    dir.join(format!("drops-{id}"))
}

/// Publishes paced, checked messages until `until_ms`, then detaches and prints its counters.
/// Each dropped counter is appended to its drops file before the next publish.
fn producer(args: &SoakArgs) -> Result<(), String> {
    let bus = child_bus(args)?;
    let dir = args
        .drops_dir
        .as_deref()
        .ok_or("child without --drops-dir")?;
    let mut drops = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(drops_file(dir, args.id))
        .map_err(|e| format!("drops file: {e}"))?;
    let mut tx = bus.publisher().map_err(|e| e.to_string())?;
    let cap = bus.capacity();
    let mut buf = vec![0u8; cap];
    let start = Instant::now();
    let mut k = 0u64;
    let hold_every = (args.stop_every_ms > 0).then(|| hold_every(args.rate));
    let mut held = 0u64;
    while now_ms() < args.until_ms {
        for _ in 0..64 {
            let len = payload_len(args.id, k, cap);
            let published = if hold_every.is_some_and(|n| k % n == n - 1) {
                // Holds its claimed sequence mid-write, so that stops land there.
                held += 1;
                make_payload(&mut buf[..len], args.id, k);
                tx.publish_with(|w| {
                    w.write_at(0, &buf[..8]).expect("len >= 24");
                    std::thread::sleep(HOLD);
                    w.write_at(8, &buf[8..len]).expect("len <= capacity");
                })
                .is_some()
            } else if k % 4 == 3 {
                // Word by word with a yield between words: the slot stays odd for long
                // stretches, so that freezes and kills land mid-write.
                make_payload(&mut buf[..len], args.id, k);
                tx.publish_with(|w| {
                    for (i, chunk) in buf[..len].chunks(8).enumerate() {
                        w.write_at(i * 8, chunk).expect("len <= capacity");
                        std::thread::yield_now();
                    }
                })
                .is_some()
            } else if k.is_multiple_of(2) {
                tx.publish_with(|w| {
                    make_payload(&mut buf[..len], args.id, k);
                    w.write_at(0, &buf[..len]).expect("len <= capacity");
                })
                .is_some()
            } else {
                make_payload(&mut buf[..len], args.id, k);
                tx.publish_bytes(&buf[..len])
                    .map_err(|e| e.to_string())?
                    .is_some()
            };
            if !published {
                // One write(2) per drop, so a SIGKILL cannot leave half a line.
                drops
                    .write_all(format!("{k}\n").as_bytes())
                    .map_err(|e| format!("record a drop: {e}"))?;
            }
            k += 1;
        }
        pace(start, k, args.rate);
    }
    let s = tx.stats();
    println!(
        "{}",
        serde_json::json!({
            "role": "producer", "id": args.id, "published": s.published, "dropped": s.dropped,
            "held_mid_write": held,
        })
    );
    Ok(())
}

/// Holds a producer (or sender) to `rate` messages a second (0: flat out): after `k`
/// messages since `start`, sleeps until they are due.
pub(crate) fn pace(start: Instant, k: u64, rate: u64) {
    if rate == 0 {
        return;
    }
    let due = start.elapsed().as_nanos() as u64 * rate / 1_000_000_000;
    if k > due {
        std::thread::sleep(Duration::from_nanos(
            (k - due).saturating_mul(1_000_000_000) / rate,
        ));
    }
}

/// What one consumer saw.
#[derive(Default, Debug, Clone, Copy, serde::Serialize, serde::Deserialize)]
struct Tally {
    received: u64,
    lost: u64,
    laps: u64,
    /// Messages whose checksum or body was wrong.
    torn: u64,
    /// A sequence number, or a (producer, counter) pair, delivered twice.
    duplicated: u64,
    /// A sequence number, or a producer's counter, lower than one delivered before it.
    reordered: u64,
    /// Messages whose publisher was told they were dropped.
    dropped_delivered: u64,
    stalls: u64,
    /// Sequences passed after the stall bound (also counted in `lost`).
    #[serde(default)]
    stalls_passed: u64,
    /// `received + lost` minus the sequences stepped over: must be 0.
    accounting_error: i64,
}

/// How many of the drops recorded in `dir` were delivered, naming the first few.
fn count_dropped(delivered: &Delivered, dir: &Path) -> Result<u64, String> {
    let mut n = 0;
    for id in delivered.producers() {
        let text = match std::fs::read_to_string(drops_file(dir, id)) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(format!("read drops of producer {id}: {e}")),
        };
        for k in text.lines().filter_map(|l| l.parse::<u64>().ok()) {
            if delivered.contains(id, k) {
                n += 1;
                if n <= 8 {
                    eprintln!(
                        "soak consumer: producer {id} was told counter {k} was dropped, and \
                         it was delivered"
                    );
                }
            }
        }
    }
    Ok(n)
}

/// A random consumer stall of `us` microseconds, marked on the progress page so that the parent
/// does not count it as the bus's.
fn pause(line: Option<&stops::ProgressLine>, us: u64) {
    if let Some(l) = line {
        l.paused(true);
    }
    std::thread::sleep(Duration::from_micros(us));
    if let Some(l) = line {
        l.paused(false);
    }
}

/// Reads from the oldest message until every producer is gone after `until_ms`, checking each
/// message and stalling at random; prints its tally.
fn consumer(args: &SoakArgs) -> Result<(), String> {
    let name = args.bus.as_deref().ok_or("child without --bus")?;
    let bus = Bus::open_read_only(name).map_err(|e| e.to_string())?;
    let mut rx = bus.subscribe(Start::Oldest).wait_strategy(Wait::Sleep);
    let first = rx.next_seq();
    let line = args.progress_line()?;
    if let Some(l) = &line {
        l.progress(first);
    }
    let mut rng = Rng(args.seed ^ args.id.wrapping_mul(0x1234_5678_9abc_def1) ^ 0x5eed);
    let mut t = Tally::default();
    let mut last_k: HashMap<u64, u64> = HashMap::new();
    let mut last_seq: Option<u64> = None;
    let mut delivered = Delivered::default();
    loop {
        match rx.recv_timeout(Duration::from_millis(200)) {
            Recv::Message(m) => {
                t.received += 1;
                let seq = m.seq();
                match last_seq {
                    Some(s) if seq == s => t.duplicated += 1,
                    Some(s) if seq < s => t.reordered += 1,
                    _ => {}
                }
                last_seq = Some(seq);
                match check_payload(m.bytes()) {
                    None => {
                        t.torn += 1;
                        eprintln!("soak consumer: torn message at seq {seq}");
                    }
                    Some((id, k)) => {
                        match last_k.insert(id, k) {
                            Some(prev) if prev == k => t.duplicated += 1,
                            Some(prev) if prev > k => {
                                t.reordered += 1;
                                eprintln!(
                                    "soak consumer: producer {id} counter {k} at seq {seq} \
                                     after counter {prev}"
                                );
                            }
                            _ => {}
                        }
                        delivered.insert(id, k);
                    }
                }
                if let Some(l) = &line {
                    l.progress(seq + 1);
                }
                if args.max_stall_ms > 0 && rng.below(20_000) == 0 {
                    t.stalls += 1;
                    pause(line.as_ref(), rng.below(args.max_stall_ms * 1000));
                }
            }
            Recv::Lapped { lost } => {
                t.lost += lost;
                t.laps += 1;
                if let Some(l) = &line {
                    l.progress(rx.next_seq());
                }
            }
            Recv::Closed if now_ms() >= args.until_ms => break,
            Recv::Closed | Recv::Empty => {}
        }
    }
    t.stalls_passed = rx.stats().stalls_passed;
    let stepped = rx.next_seq() - first;
    t.accounting_error = (t.received + t.lost) as i64 - stepped as i64;
    // Closed: every producer has gone, so every drop has been recorded.
    let dir = args
        .drops_dir
        .as_deref()
        .ok_or("child without --drops-dir")?;
    t.dropped_delivered = count_dropped(&delivered, dir)?;
    println!("{}", serde_json::to_string(&t).map_err(|e| e.to_string())?);
    Ok(())
}

fn spawn_child(
    args: &SoakArgs,
    role: &str,
    bus: &str,
    id: u64,
    until_ms: u64,
    line: Option<usize>,
) -> Result<Child, String> {
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let mut cmd = Command::new(exe);
    cmd.arg("soak");
    if let (Some(line), Some(page)) = (line, &args.progress) {
        cmd.args(["--line", &line.to_string()])
            .arg("--progress")
            .arg(page);
    }
    cmd.args(["--role", role, "--bus", bus])
        .args(["--id", &id.to_string(), "--until-ms", &until_ms.to_string()])
        .args(["--rate", &args.rate.to_string()])
        .args(["--max-stall-ms", &args.max_stall_ms.to_string()])
        .args(["--stop-every-ms", &args.stop_every_ms.to_string()])
        .args(["--seed", &args.seed.to_string()])
        .arg("--drops-dir")
        .arg(
            args.drops_dir
                .as_deref()
                .ok_or("soak without a drops directory")?,
        )
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    cmd.spawn().map_err(|e| format!("spawn {role}: {e}"))
}

/// Waits for a child and returns its stdout, or why it failed.
fn finish(mut child: Child, limit: Duration) -> Result<String, String> {
    let deadline = Instant::now() + limit;
    let status = loop {
        if let Some(st) = child.try_wait().map_err(|e| e.to_string())? {
            break st;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            return Err(format!(
                "child {} did not finish within {limit:?}",
                child.id()
            ));
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    let mut out = String::new();
    if let Some(mut so) = child.stdout.take() {
        so.read_to_string(&mut out).map_err(|e| e.to_string())?;
    }
    if !status.success() {
        return Err(format!("child {} ended with {status}: {out}", child.id()));
    }
    Ok(out)
}

/// Removes the soak bus even if the soak fails.
struct RemoveOnDrop(String);

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        let _ = Bus::remove(&self.0);
    }
}

/// Removes the drops directory even if the soak fails.
struct RemoveDirOnDrop(PathBuf);

impl Drop for RemoveDirOnDrop {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Kills the children still running if the soak returns early.
struct Children(Vec<Child>);

impl Drop for Children {
    fn drop(&mut self) {
        for c in &mut self.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// What a parent of either kind sets up before its children: the seed, the drops directory and,
/// with stops, the progress page; the arguments its children are given.
struct Scratch {
    args: SoakArgs,
    page: Option<stops::Page>,
    _dir: RemoveDirOnDrop,
}

impl Scratch {
    fn new(args: &SoakArgs) -> Result<Scratch, String> {
        let dir = std::env::temp_dir().join(format!("shmbus-soak-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).map_err(|e| format!("create {dir:?}: {e}"))?;
        let guard = RemoveDirOnDrop(dir.clone());
        let page = if args.stop_every_ms > 0 {
            Some(stops::Page::create()?)
        } else {
            None
        };
        let seed = if args.seed != 0 {
            args.seed
        } else {
            now_ms() | 1
        };
        Ok(Scratch {
            args: SoakArgs {
                seed,
                drops_dir: Some(dir),
                progress: page.as_ref().map(|p| p.path().to_owned()),
                ..args.clone()
            },
            page,
            _dir: guard,
        })
    }
}

fn parent(args: &SoakArgs, json: bool) -> Result<(), String> {
    if args.producers == 0 || args.consumers == 0 || args.capacity < 24 {
        return Err("soak needs at least one producer, one consumer and a capacity of 24".into());
    }
    if args.producers < 2 && (args.stop_every_ms > 0 || args.stall_bound_ms.is_some()) {
        return Err(
            "--stop-every-ms and --stall-bound-ms need a multi-producer bus (--producers 2 or \
             more): the stall bound applies to multi-producer buses only, and stops never \
             freeze every producer at once"
                .into(),
        );
    }
    if args.consumers as usize > stops::LINES {
        return Err(format!("soak takes at most {} consumers", stops::LINES));
    }
    let name = format!("soak-{}", std::process::id());
    let _ = Bus::remove(&name);
    let mut builder = BusBuilder::new(&name)
        .slots(args.slots)
        .capacity(args.capacity);
    if args.producers > 1 {
        builder = builder.multi_producer().stall_bound(args.stall_bound());
    }
    let bus = builder.create().map_err(|e| e.to_string())?;
    let _guard = RemoveOnDrop(name.clone());
    let scratch = Scratch::new(args)?;
    let args = &scratch.args;
    let seed = args.seed;
    let mut rng = Rng(seed);
    let started = Instant::now();
    let until_ms = now_ms() + args.seconds * 1000;
    let mut producers = Children(Vec::new());
    let mut stopper = stops::Stopper::new(args.stop_every_ms, args.max_stop_ms, seed);
    let mut next_id = 1;
    for _ in 0..args.producers {
        producers.0.push(spawn_child(
            args, "producer", &name, next_id, until_ms, None,
        )?);
        stopper.push(stops::Role::Producer);
        next_id += 1;
    }
    let ready = Instant::now() + Duration::from_secs(20);
    while bus.producers().len() < args.producers as usize {
        if Instant::now() > ready {
            return Err("producers did not attach within 20 s".into());
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    let mut consumers = Children(Vec::new());
    let mut watch = stops::Watch::new();
    for i in 0..args.consumers as usize {
        consumers.0.push(spawn_child(
            args,
            "consumer",
            &name,
            1000 + i as u64,
            until_ms,
            Some(i),
        )?);
        watch.add(stops::Party::Subscriber);
    }
    let (mut kills, mut last_report) = (0u64, Instant::now());
    let mut next_kill = Instant::now() + Duration::from_millis(args.kill_every_ms);
    while now_ms() < until_ms {
        let now = Instant::now();
        stopper.tick(&producers.0)?;
        if args.kill_every_ms > 0 && now >= next_kill && now_ms() + 200 < until_ms {
            let i = rng.below(producers.0.len() as u64) as usize;
            let mut victim = producers.0.swap_remove(i);
            stopper.swap_remove(i);
            let _ = victim.kill(); // SIGKILL, also ends a frozen producer
            let _ = victim.wait();
            kills += 1;
            producers.0.push(spawn_child(
                args, "producer", &name, next_id, until_ms, None,
            )?);
            stopper.push(stops::Role::Producer);
            next_id += 1;
            next_kill = Instant::now() + Duration::from_millis(args.kill_every_ms);
        }
        if let Some(page) = &scratch.page {
            let at = watch.begin_sample();
            for c in 0..consumers.0.len() {
                let line = page.line(c);
                let Some(next) = line.progress else { continue };
                // Read after the consumer's line: a sequence claimed by then was there to read.
                let waiting = !line.paused && bus.cursor() > next;
                watch.observe(c, at, next, waiting);
            }
            watch.end_sample(at.1);
        }
        if !json && last_report.elapsed() >= Duration::from_secs(30) {
            last_report = Instant::now();
            eprintln!(
                "soak: {:>5} s, cursor {}, {kills} kills, {} stops",
                started.elapsed().as_secs(),
                bus.cursor(),
                stopper.events.len()
            );
        }
        let busy = args.kill_every_ms > 0 || args.stop_every_ms > 0;
        std::thread::sleep(Duration::from_millis(if busy { 1 } else { 50 }));
    }
    watch.close();
    // Producers still frozen finish their write and run to `until_ms` like the others.
    stopper.continue_all(&producers.0)?;
    let limit = Duration::from_secs(60);
    let (mut published, mut dropped, mut held) = (0u64, 0u64, 0u64);
    for p in std::mem::take(&mut producers.0) {
        let out = finish(p, limit)?;
        let v: serde_json::Value =
            serde_json::from_str(out.trim()).map_err(|e| format!("producer said {out:?}: {e}"))?;
        published += v["published"].as_u64().unwrap_or(0);
        dropped += v["dropped"].as_u64().unwrap_or(0);
        held += v["held_mid_write"].as_u64().unwrap_or(0);
    }
    let mut tallies = Vec::new();
    for c in std::mem::take(&mut consumers.0) {
        let out = finish(c, limit)?;
        let t: Tally =
            serde_json::from_str(out.trim()).map_err(|e| format!("consumer said {out:?}: {e}"))?;
        tallies.push(t);
    }
    let sum = |f: fn(&Tally) -> u64| tallies.iter().map(f).sum::<u64>();
    let (torn, duplicated, reordered) =
        (sum(|t| t.torn), sum(|t| t.duplicated), sum(|t| t.reordered));
    let dropped_delivered = sum(|t| t.dropped_delivered);
    let accounting_errors = tallies.iter().filter(|t| t.accounting_error != 0).count();
    let elapsed = started.elapsed().as_secs_f64();
    let sequences = bus.cursor() - bus.header().first_seq;
    let bound = bus.stall_bound();
    let stalls = scratch.page.as_ref().map(|_| {
        stops::Summary::new(
            &stopper.events,
            &watch,
            bound,
            &[(
                "producer stops: consumer stall",
                stops::Role::Producer,
                stops::Party::Subscriber,
            )],
        )
    });
    if json {
        let v = serde_json::json!({
            "kind": "bus",
            "seconds": elapsed, "producers": args.producers, "consumers": args.consumers,
            "slots": args.slots, "capacity": args.capacity, "rate": args.rate, "seed": seed,
            "stall_bound_ms": bound.map(|b| b.as_secs_f64() * 1e3),
            "producer_kills": kills, "producer_freezes": stopper.events.len(),
            "stop_every_ms": args.stop_every_ms, "max_stop_ms": args.max_stop_ms,
            "sequences": sequences,
            "published_by_survivors": published, "dropped": dropped,
            "held_mid_write_by_survivors": held,
            "received": sum(|t| t.received), "lost": sum(|t| t.lost), "laps": sum(|t| t.laps),
            "stalls": sum(|t| t.stalls), "stalls_passed": sum(|t| t.stalls_passed),
            "torn": torn, "duplicated": duplicated, "reordered": reordered,
            "dropped_delivered": dropped_delivered, "accounting_errors": accounting_errors,
            "per_consumer": tallies,
            "stall_figures": stalls.as_ref().map(stops::Summary::json),
        });
        println!("{v}");
    } else {
        let stopped = if args.stop_every_ms > 0 {
            format!(
                ", {} stopped for 1..={} ms log-uniform about every {} ms",
                stopper.events.len(),
                args.max_stop_ms,
                args.stop_every_ms
            )
        } else {
            String::new()
        };
        println!(
            "soak: {elapsed:.1} s, {} producers ({kills} killed and replaced{stopped}), {} \
             consumers, {} slots x {} bytes, stall bound {}, seed {seed}",
            args.producers,
            args.consumers,
            args.slots,
            args.capacity,
            stops::bound_text(bound),
        );
        println!(
            "  sequences {sequences}; survivors published {published} ({held} held mid-write for \
             {} ms), dropped {dropped}",
            HOLD.as_millis()
        );
        for (i, t) in tallies.iter().enumerate() {
            println!(
                "  consumer {i}: received {} lost {} laps {} stalls {} stalls-passed {} torn {} \
                 duplicated {} reordered {} dropped-delivered {} accounting error {}",
                t.received,
                t.lost,
                t.laps,
                t.stalls,
                t.stalls_passed,
                t.torn,
                t.duplicated,
                t.reordered,
                t.dropped_delivered,
                t.accounting_error
            );
        }
        println!(
            "  total: received {} lost {} stalls-passed {} torn {torn} duplicated {duplicated} \
             reordered {reordered} dropped-delivered {dropped_delivered} accounting-errors \
             {accounting_errors}",
            sum(|t| t.received),
            sum(|t| t.lost),
            sum(|t| t.stalls_passed),
        );
        if let Some(s) = &stalls {
            s.print();
        }
    }
    if torn + duplicated + reordered + dropped_delivered > 0 || accounting_errors > 0 {
        return Err(format!(
            "soak failed: torn {torn}, duplicated {duplicated}, reordered {reordered}, \
             dropped then delivered {dropped_delivered}, {accounting_errors} consumers with loss \
             accounting off"
        ));
    }
    if sum(|t| t.received) == 0 {
        return Err("soak failed: no consumer received anything".into());
    }
    Ok(())
}
