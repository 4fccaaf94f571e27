//! `shmbus-bench soak`: producer and consumer *processes* on one bus for N seconds, checking every
//! message (checksum, per-producer order, sequence order, exact loss accounting, and that no
//! message its publisher was told was dropped is delivered), with random consumer stalls and, if
//! asked, producers killed with SIGKILL and replaced while they publish, or frozen with SIGSTOP
//! for a moment (preempted mid-write) and continued with SIGCONT.
//!
//! The parent re-executes this binary as its children: `shmbus-bench soak --role producer|consumer
//! --bus NAME ...` (hidden arguments of the same subcommand), so `main.rs` needs nothing but a
//! `soak` subcommand that flattens [`SoakArgs`] and calls [`run`].
//!
//! Every producer appends each counter whose publish returned `None` (dropped) to its own file in
//! a temporary directory before it publishes again; each consumer reads those files once every
//! producer has gone and checks them against the (producer, counter) pairs it received (one bit
//! per counter: a few megabytes for a 10-minute soak at the default rate).
//!
//! Pass criteria: torn = 0, duplicated = 0, reordered = 0, dropped-then-delivered = 0, and for
//! every consumer `received + lost == sequences it stepped over`. Lost messages are expected
//! (stalled consumers are lapped; killed producers abandon sequences) and reported.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use shmbus::{Bus, BusBuilder, ProducerMode, Recv, Start, Wait};
use shmbus_testkit::delivered::Delivered;
use shmbus_testkit::payload::{check_payload, make_payload, mix, Rng};

/// Options of the soak test.
#[derive(clap::Args, Debug, Clone)]
pub struct SoakArgs {
    /// How long producers publish, in seconds.
    #[arg(long, default_value_t = 60)]
    pub seconds: u64,
    /// Producer processes (more than one makes a multi-producer bus).
    #[arg(long, default_value_t = 2)]
    pub producers: u32,
    /// Consumer processes.
    #[arg(long, default_value_t = 2)]
    pub consumers: u32,
    /// Ring slots.
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
    #[arg(long, default_value_t = 0)]
    pub kill_every_ms: u64,
    /// Freeze a random producer (SIGSTOP, then SIGCONT after 1..=--max-stop-ms) every this many
    /// milliseconds, so that writers are preempted mid-write (0: never).
    #[arg(long, default_value_t = 0)]
    pub stop_every_ms: u64,
    /// Longest producer freeze, in milliseconds.
    #[arg(long, default_value_t = 50)]
    pub max_stop_ms: u64,
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
}

/// Runs the soak (or, with the hidden `--role`, one of its child processes). Returns an error
/// if any message was torn, duplicated or reordered, the loss accounting is off, or a child
/// failed.
pub fn run(args: &SoakArgs, json: bool) -> Result<(), String> {
    match args.role.as_deref() {
        None => parent(args, json),
        Some("producer") => producer(args),
        Some("consumer") => consumer(args),
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
    while now_ms() < args.until_ms {
        for _ in 0..64 {
            let len = payload_len(args.id, k, cap);
            let published = if k % 4 == 3 {
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
        if args.rate > 0 {
            let due = start.elapsed().as_nanos() as u64 * args.rate / 1_000_000_000;
            if k > due {
                std::thread::sleep(Duration::from_nanos(
                    (k - due).saturating_mul(1_000_000_000) / args.rate,
                ));
            }
        }
    }
    let s = tx.stats();
    println!(
        "{}",
        serde_json::json!({"role": "producer", "id": args.id, "published": s.published, "dropped": s.dropped})
    );
    Ok(())
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

/// Reads from the oldest message until every producer is gone after `until_ms`, checking each
/// message and stalling at random; prints its tally.
fn consumer(args: &SoakArgs) -> Result<(), String> {
    let name = args.bus.as_deref().ok_or("child without --bus")?;
    let bus = Bus::open_read_only(name).map_err(|e| e.to_string())?;
    let mut rx = bus.subscribe(Start::Oldest).wait_strategy(Wait::Sleep);
    let first = rx.next_seq();
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
                if args.max_stall_ms > 0 && rng.below(20_000) == 0 {
                    t.stalls += 1;
                    std::thread::sleep(Duration::from_micros(rng.below(args.max_stall_ms * 1000)));
                }
            }
            Recv::Lapped { lost } => {
                t.lost += lost;
                t.laps += 1;
            }
            Recv::Closed if now_ms() >= args.until_ms => break,
            Recv::Closed | Recv::Empty => {}
        }
    }
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
) -> Result<Child, String> {
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let mut cmd = Command::new(exe);
    cmd.arg("soak")
        .args(["--role", role, "--bus", bus])
        .args(["--id", &id.to_string(), "--until-ms", &until_ms.to_string()])
        .args(["--rate", &args.rate.to_string()])
        .args(["--max-stall-ms", &args.max_stall_ms.to_string()])
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

/// Sends `sig` to a child we have not reaped (so its pid names no other process).
fn signal(child: &Child, sig: nix::sys::signal::Signal) -> Result<(), String> {
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(child.id() as i32), sig)
        .map_err(|e| format!("{sig} to producer {}: {e}", child.id()))
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

fn parent(args: &SoakArgs, json: bool) -> Result<(), String> {
    if args.producers == 0 || args.consumers == 0 || args.capacity < 24 {
        return Err("soak needs at least one producer, one consumer and a capacity of 24".into());
    }
    let name = format!("soak-{}", std::process::id());
    let _ = Bus::remove(&name);
    let mode = if args.producers > 1 {
        ProducerMode::Multi
    } else {
        ProducerMode::Single
    };
    let bus = BusBuilder::new(&name)
        .slots(args.slots)
        .capacity(args.capacity)
        .producer_mode(mode)
        .create()
        .map_err(|e| e.to_string())?;
    let _guard = RemoveOnDrop(name.clone());
    let drops_dir = std::env::temp_dir().join(format!("shmbus-soak-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&drops_dir);
    std::fs::create_dir_all(&drops_dir).map_err(|e| format!("create {drops_dir:?}: {e}"))?;
    let _dir_guard = RemoveDirOnDrop(drops_dir.clone());
    let seed = if args.seed != 0 {
        args.seed
    } else {
        now_ms() | 1
    };
    let args = &SoakArgs {
        seed,
        drops_dir: Some(drops_dir),
        ..args.clone()
    };
    let mut rng = Rng(seed);
    let started = Instant::now();
    let until_ms = now_ms() + args.seconds * 1000;
    let mut producers = Children(Vec::new());
    // Beside `producers`, index for index: until when each one is frozen (SIGSTOP).
    let mut frozen: Vec<Option<Instant>> = Vec::new();
    let mut next_id = 1;
    for _ in 0..args.producers {
        producers
            .0
            .push(spawn_child(args, "producer", &name, next_id, until_ms)?);
        frozen.push(None);
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
    for i in 0..args.consumers {
        consumers.0.push(spawn_child(
            args,
            "consumer",
            &name,
            1000 + i as u64,
            until_ms,
        )?);
    }
    let (mut kills, mut freezes, mut last_report) = (0u64, 0u64, Instant::now());
    let mut next_kill = Instant::now() + Duration::from_millis(args.kill_every_ms);
    let mut next_stop = Instant::now() + Duration::from_millis(args.stop_every_ms);
    use nix::sys::signal::Signal::{SIGCONT, SIGSTOP};
    while now_ms() < until_ms {
        let now = Instant::now();
        for (p, f) in producers.0.iter().zip(frozen.iter_mut()) {
            if f.is_some_and(|t| t <= now) {
                signal(p, SIGCONT)?;
                *f = None;
            }
        }
        if args.kill_every_ms > 0 && now >= next_kill && now_ms() + 200 < until_ms {
            let i = rng.below(producers.0.len() as u64) as usize;
            let mut victim = producers.0.swap_remove(i);
            frozen.swap_remove(i);
            let _ = victim.kill(); // SIGKILL, also ends a frozen producer
            let _ = victim.wait();
            kills += 1;
            producers
                .0
                .push(spawn_child(args, "producer", &name, next_id, until_ms)?);
            frozen.push(None);
            next_id += 1;
            next_kill = Instant::now() + Duration::from_millis(args.kill_every_ms);
        }
        if args.stop_every_ms > 0 && now >= next_stop {
            let running: Vec<usize> = (0..frozen.len()).filter(|&i| frozen[i].is_none()).collect();
            if !running.is_empty() {
                let i = running[rng.below(running.len() as u64) as usize];
                signal(&producers.0[i], SIGSTOP)?;
                let ms = 1 + rng.below(args.max_stop_ms.max(1));
                frozen[i] = Some(Instant::now() + Duration::from_millis(ms));
                freezes += 1;
            }
            next_stop = Instant::now() + Duration::from_millis(args.stop_every_ms);
        }
        if !json && last_report.elapsed() >= Duration::from_secs(30) {
            last_report = Instant::now();
            eprintln!(
                "soak: {:>5} s, cursor {}, {kills} kills, {freezes} freezes",
                started.elapsed().as_secs(),
                bus.cursor(),
            );
        }
        let busy = args.kill_every_ms > 0 || args.stop_every_ms > 0;
        std::thread::sleep(Duration::from_millis(if busy { 1 } else { 50 }));
    }
    // Producers still frozen finish their write and run to `until_ms` like the others.
    for (p, f) in producers.0.iter().zip(&frozen) {
        if f.is_some() {
            signal(p, SIGCONT)?;
        }
    }
    let limit = Duration::from_secs(60);
    let (mut published, mut dropped) = (0u64, 0u64);
    for p in std::mem::take(&mut producers.0) {
        let out = finish(p, limit)?;
        let v: serde_json::Value =
            serde_json::from_str(out.trim()).map_err(|e| format!("producer said {out:?}: {e}"))?;
        published += v["published"].as_u64().unwrap_or(0);
        dropped += v["dropped"].as_u64().unwrap_or(0);
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
    if json {
        let v = serde_json::json!({
            "seconds": elapsed, "producers": args.producers, "consumers": args.consumers,
            "slots": args.slots, "capacity": args.capacity, "rate": args.rate, "seed": seed,
            "producer_kills": kills, "producer_freezes": freezes,
            "max_stop_ms": args.max_stop_ms, "sequences": sequences,
            "published_by_survivors": published, "dropped": dropped,
            "received": sum(|t| t.received), "lost": sum(|t| t.lost), "laps": sum(|t| t.laps),
            "stalls": sum(|t| t.stalls),
            "torn": torn, "duplicated": duplicated, "reordered": reordered,
            "dropped_delivered": dropped_delivered, "accounting_errors": accounting_errors, "per_consumer": tallies,
        });
        println!("{v}");
    } else {
        println!(
            "soak: {elapsed:.1} s, {} producers ({kills} killed and replaced, {freezes} frozen \
             for up to {} ms), {} consumers, {} slots x {} bytes, seed {seed}",
            args.producers, args.max_stop_ms, args.consumers, args.slots, args.capacity
        );
        println!("  sequences {sequences}; survivors published {published}, dropped {dropped}");
        for (i, t) in tallies.iter().enumerate() {
            println!(
                "  consumer {i}: received {} lost {} laps {} stalls {} torn {} duplicated {} \
                 reordered {} dropped-delivered {} accounting error {}",
                t.received,
                t.lost,
                t.laps,
                t.stalls,
                t.torn,
                t.duplicated,
                t.reordered,
                t.dropped_delivered,
                t.accounting_error
            );
        }
        println!(
            "  total: received {} lost {} torn {torn} duplicated {duplicated} reordered \
             {reordered} dropped-delivered {dropped_delivered} accounting-errors \
             {accounting_errors}",
            sum(|t| t.received),
            sum(|t| t.lost)
        );
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
