//! `shmbus-bench soak --kind queue`: sender and receiver processes on one work queue, checking
//! exactly-once delivery.
//!
//! Sender `s` sends the checksummed items (s, 0), (s, 1), ... (the bus soak's payloads, 24..=item
//! size bytes) with blocking `send`, so the items it was told were sent are exactly `0..n`, `n`
//! its count at the end. Each receiver checks every item (checksum, body, per-sender order) and
//! keeps one bit per (sender, counter); at the end it writes its bits to a file, and the parent
//! merges them: a bit two receivers set is an item delivered twice, a bit at or past a sender's
//! `n` an item it never reported sent, and a clear bit below `n` a missing item, which only a
//! receiver that died holding it may explain (`QueueTotals::lost`; this soak kills no one).

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use shmbus::{Queue, Wait};
use shmbus_testkit::payload::{check_payload, make_payload, Rng};

use super::stops::{self, Party, Role};
use super::{
    finish, hold_every, now_ms, pace, pause, payload_len, spawn_child, Children, Scratch, SoakArgs,
    HOLD,
};

/// Removes the soak queue even if the soak fails.
struct RemoveOnDrop(String);

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        let _ = Queue::remove(&self.0);
    }
}

fn child_queue(args: &SoakArgs) -> Result<Queue, String> {
    let name = args.bus.as_deref().ok_or("child without --bus")?;
    Queue::open(name).map_err(|e| e.to_string())
}

/// The file receiver `id` writes its bits to.
fn bits_file(dir: &Path, id: u64) -> PathBuf {
    dir.join(format!("received-{id}"))
}

/// How long a tripped send holds its claimed position: [`HOLD`].
const TRIP_HOLD: libc::timespec = libc::timespec {
    tv_sec: HOLD.as_secs() as libc::time_t,
    tv_nsec: HOLD.subsec_nanos() as libc::c_long,
};

/// The guarded page of this process's [`Tripwire`] (0: none), for the SIGSEGV handler.
static GUARD: AtomicUsize = AtomicUsize::new(0);
/// Faults the handler served: sends held mid-write.
static TRIPS: AtomicU64 = AtomicU64::new(0);

/// How a sender holds one item in [`hold_every`] mid-write (the send's window, between claiming
/// its position and publishing it, lasts nanoseconds, and the queue has no closure to sleep in
/// as the bus's `publish_with`): the item is copied to end on a second page, which is then made
/// inaccessible; the send claims its position, faults while copying the item's last word into
/// the slot, and the handler sleeps [`HOLD`] before it opens the page again and the copy
/// resumes.
struct Tripwire {
    map: memmap2::MmapMut,
    page: usize,
}

extern "C" fn on_fault(_sig: libc::c_int, info: *mut libc::siginfo_t, _ctx: *mut libc::c_void) {
    // ORDERING: Relaxed: the guard address was stored by this thread before it faulted.
    let guard = GUARD.load(Ordering::Relaxed);
    // SAFETY: the kernel hands a SIGSEGV handler installed with SA_SIGINFO a valid siginfo.
    let addr = unsafe { (*info).si_addr() } as usize;
    let page = page_size();
    if guard == 0 || addr < guard || addr >= guard + page {
        // Not our page: a real fault. Fall back to the default action, which the faulting
        // instruction, run again on return, then meets.
        // SAFETY: signal(2) is async-signal-safe; SIG_DFL is a valid disposition.
        unsafe { libc::signal(libc::SIGSEGV, libc::SIG_DFL) };
        return;
    }
    TRIPS.fetch_add(1, Ordering::Relaxed);
    // SAFETY: nanosleep and mprotect are async-signal-safe system calls; `guard` is the
    // page-aligned second page of the live Tripwire mapping (it outlives every send from it).
    unsafe {
        libc::nanosleep(&TRIP_HOLD, std::ptr::null_mut());
        libc::mprotect(
            guard as *mut libc::c_void,
            page,
            libc::PROT_READ | libc::PROT_WRITE,
        );
    }
}

fn page_size() -> usize {
    // SAFETY: sysconf has no preconditions.
    unsafe { libc::sysconf(libc::_SC_PAGESIZE) as usize }
}

impl Tripwire {
    fn new() -> Result<Tripwire, String> {
        let page = page_size();
        let map = memmap2::MmapMut::map_anon(2 * page).map_err(|e| format!("tripwire: {e}"))?;
        GUARD.store(map.as_ptr() as usize + page, Ordering::Relaxed);
        let action = nix::sys::signal::SigAction::new(
            nix::sys::signal::SigHandler::SigAction(on_fault),
            nix::sys::signal::SaFlags::SA_SIGINFO,
            nix::sys::signal::SigSet::empty(),
        );
        // SAFETY: the handler only makes async-signal-safe system calls and atomic accesses.
        unsafe { nix::sys::signal::sigaction(nix::sys::signal::SIGSEGV, &action) }
            .map_err(|e| format!("tripwire handler: {e}"))?;
        Ok(Tripwire { map, page })
    }

    /// `item` copied to end 8 bytes into the guarded page, which is then made inaccessible.
    fn arm(&mut self, item: &[u8]) -> &[u8] {
        let start = self.page + 8 - item.len();
        self.map[start..start + item.len()].copy_from_slice(item);
        let guard = GUARD.load(Ordering::Relaxed);
        // SAFETY: `guard` is our mapping's second page, page-aligned; nothing else of this
        // process touches it until the send reads it (and the handler opens it).
        unsafe { libc::mprotect(guard as *mut libc::c_void, self.page, libc::PROT_NONE) };
        &self.map[start..start + item.len()]
    }
}

/// Sends paced, checked items until `until_ms` with blocking sends, then detaches and prints how
/// many it sent and its counters.
pub fn sender(args: &SoakArgs) -> Result<(), String> {
    let queue = child_queue(args)?;
    let line = args.progress_line()?;
    // With stops, stretch some sends' windows so that stops land in them.
    let mut trip = (args.stop_every_ms > 0).then(Tripwire::new).transpose()?;
    let every = hold_every(args.rate);
    let mut tx = queue
        .sender()
        .map_err(|e| e.to_string())?
        .wait_strategy(Wait::Sleep);
    let cap = queue.item_size();
    let mut buf = vec![0u8; cap];
    let start = Instant::now();
    let mut k = 0u64;
    if let Some(l) = &line {
        l.progress(0);
    }
    while now_ms() < args.until_ms {
        for _ in 0..64 {
            let len = payload_len(args.id, k, cap);
            make_payload(&mut buf[..len], args.id, k);
            if let Some(l) = &line {
                l.busy(true);
            }
            let item = match &mut trip {
                Some(t) if k % every == every - 1 => t.arm(&buf[..len]),
                _ => &buf[..len],
            };
            tx.send(item).map_err(|e| format!("send: {e}"))?;
            k += 1;
            if let Some(l) = &line {
                l.progress(k);
                l.busy(false);
            }
        }
        pace(start, k, args.rate);
    }
    let s = tx.stats();
    println!(
        "{}",
        serde_json::json!({
            "role": "sender", "id": args.id, "sent": k, "stats_sent": s.sent, "full": s.full,
            "lost": s.lost, "stalls_passed": s.stalls_passed, "resent": s.resent,
            "held_mid_send": TRIPS.load(Ordering::Relaxed),
        })
    );
    Ok(())
}

/// What one receiver saw.
#[derive(Default, Debug, Clone, Copy, serde::Serialize, serde::Deserialize)]
struct Tally {
    received: u64,
    /// Items whose checksum or body was wrong.
    torn: u64,
    /// A (sender, counter) pair this receiver received twice.
    duplicated: u64,
    /// A sender's counter lower than one this receiver received before.
    reordered: u64,
    /// Random pauses of this receiver.
    stalls: u64,
    /// Positions passed after the stall bound (their senders sent the items again).
    stalls_passed: u64,
    /// Positions of dead senders passed over (0: nobody dies here).
    skipped: u64,
    malformed: u64,
}

/// Receives until the queue is closed after `until_ms`, checking each item and pausing at
/// random; writes its bits and prints its tally.
pub fn receiver(args: &SoakArgs) -> Result<(), String> {
    let queue = child_queue(args)?;
    let dir = args
        .drops_dir
        .as_deref()
        .ok_or("child without --drops-dir")?;
    let line = args.progress_line()?;
    let mut rx = queue
        .receiver()
        .map_err(|e| e.to_string())?
        .wait_strategy(Wait::Sleep);
    let mut rng = Rng(args.seed ^ args.id.wrapping_mul(0x1234_5678_9abc_def1) ^ 0x5eed);
    let mut t = Tally::default();
    let mut last_k: HashMap<u64, u64> = HashMap::new();
    let mut bits: HashMap<u64, Vec<u64>> = HashMap::new();
    loop {
        let Some(item) = rx.recv_timeout(Duration::from_millis(200)) else {
            if rx.is_closed() && now_ms() >= args.until_ms {
                break;
            }
            continue;
        };
        t.received += 1;
        match check_payload(item) {
            None => {
                t.torn += 1;
                eprintln!(
                    "soak receiver {}: torn item of {} bytes",
                    args.id,
                    item.len()
                );
            }
            Some((id, k)) => {
                if let Some(prev) = last_k.insert(id, k) {
                    if prev >= k {
                        t.reordered += u64::from(prev > k);
                        eprintln!(
                            "soak receiver {}: sender {id} counter {k} after counter {prev}",
                            args.id
                        );
                    }
                }
                let words = bits.entry(id).or_default();
                let w = (k / 64) as usize;
                if words.len() <= w {
                    words.resize(w + 1, 0);
                }
                if words[w] & (1 << (k % 64)) != 0 {
                    t.duplicated += 1;
                    eprintln!("soak receiver {}: sender {id} counter {k} twice", args.id);
                }
                words[w] |= 1 << (k % 64);
            }
        }
        if args.max_stall_ms > 0 && rng.below(20_000) == 0 {
            t.stalls += 1;
            pause(line.as_ref(), rng.below(args.max_stall_ms * 1000));
        }
    }
    let s = rx.stats();
    (t.stalls_passed, t.skipped, t.malformed) = (s.stalls_passed, s.skipped, s.malformed);
    write_bits(&bits_file(dir, args.id), &bits)?;
    println!("{}", serde_json::to_string(&t).map_err(|e| e.to_string())?);
    Ok(())
}

/// Writes `bits` as (sender id, word count, words...) little-endian u64s.
fn write_bits(path: &Path, bits: &HashMap<u64, Vec<u64>>) -> Result<(), String> {
    let mut out = Vec::new();
    for (id, words) in bits {
        out.extend_from_slice(&id.to_le_bytes());
        out.extend_from_slice(&(words.len() as u64).to_le_bytes());
        for w in words {
            out.extend_from_slice(&w.to_le_bytes());
        }
    }
    let mut f = std::fs::File::create(path).map_err(|e| format!("create {path:?}: {e}"))?;
    f.write_all(&out)
        .map_err(|e| format!("write {path:?}: {e}"))
}

/// Reads what [`write_bits`] wrote.
fn read_bits(path: &Path) -> Result<HashMap<u64, Vec<u64>>, String> {
    let bytes = std::fs::read(path).map_err(|e| format!("read {path:?}: {e}"))?;
    let mut words = bytes
        .chunks_exact(8)
        .map(|c| u64::from_le_bytes(c.try_into().expect("chunks of 8")));
    let mut bits = HashMap::new();
    while let Some(id) = words.next() {
        let n = words.next().ok_or(format!("{path:?} is cut short"))?;
        let v: Vec<u64> = words.by_ref().take(n as usize).collect();
        if v.len() as u64 != n {
            return Err(format!("{path:?} is cut short"));
        }
        bits.insert(id, v);
    }
    Ok(bits)
}

/// Every receiver's bits against what every sender reported sent.
#[derive(Default, Debug, serde::Serialize)]
struct Books {
    /// Items two receivers both received.
    duplicated_across: u64,
    /// Items a sender reported sent that no receiver received.
    missing: u64,
    /// Items received that no sender reported sent.
    unsent_delivered: u64,
}

fn books(dir: &Path, receivers: &[u64], sent: &HashMap<u64, u64>) -> Result<Books, String> {
    let mut union: HashMap<u64, Vec<u64>> = HashMap::new();
    let mut b = Books::default();
    for &r in receivers {
        for (id, words) in read_bits(&bits_file(dir, r))? {
            let u = union.entry(id).or_default();
            if u.len() < words.len() {
                u.resize(words.len(), 0);
            }
            for (x, w) in u.iter_mut().zip(&words) {
                b.duplicated_across += u64::from((*x & w).count_ones());
                *x |= w;
            }
        }
    }
    for (id, words) in &union {
        let n = sent.get(id).copied().unwrap_or(0);
        let received_below_n: u64 = (0..n)
            .filter(|&k| {
                words
                    .get((k / 64) as usize)
                    .is_some_and(|w| w & (1 << (k % 64)) != 0)
            })
            .count() as u64;
        let all: u64 = words.iter().map(|w| u64::from(w.count_ones())).sum();
        b.unsent_delivered += all - received_below_n;
    }
    for (id, &n) in sent {
        let words = union.get(id).map(Vec::as_slice).unwrap_or_default();
        let got = (0..n)
            .filter(|&k| {
                words
                    .get((k / 64) as usize)
                    .is_some_and(|w| w & (1 << (k % 64)) != 0)
            })
            .count() as u64;
        b.missing += n - got;
    }
    Ok(b)
}

pub fn parent(args: &SoakArgs, json: bool) -> Result<(), String> {
    if args.producers == 0 || args.consumers == 0 || args.capacity < 24 {
        return Err("soak needs at least one sender, one receiver and a capacity of 24".into());
    }
    if args.producers + args.consumers > 32 {
        return Err("a queue takes at most 32 senders and receivers together".into());
    }
    if args.kill_every_ms > 0 {
        return Err("--kill-every-ms is for --kind bus only".into());
    }
    if args.stop_every_ms > 0 && args.producers < 2 && args.consumers < 2 {
        return Err(
            "--stop-every-ms on a queue needs 2 or more senders or receivers: stops never \
             freeze every participant of a role at once"
                .into(),
        );
    }
    let name = format!("soak-queue-{}", std::process::id());
    let _ = Queue::remove(&name);
    let queue = Queue::builder(&name)
        .capacity(args.slots)
        .item_size(args.capacity)
        .stall_bound(args.stall_bound())
        .create()
        .map_err(|e| e.to_string())?;
    let _guard = RemoveOnDrop(name.clone());
    let scratch = Scratch::new(args)?;
    let args = &scratch.args;
    let started = Instant::now();
    let until_ms = now_ms() + args.seconds * 1000;
    // Senders then receivers, index for index beside the stopper's roles.
    let mut kids = Children(Vec::new());
    let mut stopper = stops::Stopper::new(args.stop_every_ms, args.max_stop_ms, args.seed);
    let mut watch = stops::Watch::new();
    let senders = args.producers as usize;
    for i in 0..senders {
        kids.0.push(spawn_child(
            args,
            "sender",
            &name,
            1 + i as u64,
            until_ms,
            Some(i),
        )?);
        stopper.push(Role::Sender);
        watch.add(Party::Sender);
    }
    let ready = Instant::now() + Duration::from_secs(20);
    let attached = |q: &Queue| {
        q.participants()
            .iter()
            .filter(|p| p.alive && p.role == Some(shmbus::Role::Sender))
            .count()
    };
    while attached(&queue) < senders {
        if Instant::now() > ready {
            return Err("senders did not attach within 20 s".into());
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    for i in 0..args.consumers as usize {
        let id = 1000 + i as u64;
        kids.0.push(spawn_child(
            args,
            "receiver",
            &name,
            id,
            until_ms,
            Some(senders + i),
        )?);
        stopper.push(Role::Receiver);
    }
    let head = watch.add(Party::Head);
    let mut last_report = Instant::now();
    while now_ms() < until_ms {
        stopper.tick(&kids.0)?;
        if let Some(page) = &scratch.page {
            let at = watch.begin_sample();
            let (h, t) = queue.positions();
            // Senders wait on a full queue as they should: only a wait with room (a slot held
            // past the tail's lap, or nothing at all) is a stall.
            let room = t.saturating_sub(h) < args.slots;
            for i in 0..senders {
                let line = page.line(i);
                let Some(sent) = line.progress else { continue };
                watch.observe(i, at, sent, room && line.busy && !stopper.is_stopped(i));
            }
            let receiving =
                (senders..kids.0.len()).any(|i| !stopper.is_stopped(i) && !page.line(i).paused);
            watch.observe(head, at, h, receiving && t > h);
            watch.end_sample(at.1);
        }
        if !json && last_report.elapsed() >= Duration::from_secs(30) {
            last_report = Instant::now();
            let (h, t) = queue.positions();
            eprintln!(
                "soak: {:>5} s, head {h} tail {t}, {} stops",
                started.elapsed().as_secs(),
                stopper.events.len()
            );
        }
        let busy = args.stop_every_ms > 0;
        std::thread::sleep(Duration::from_millis(if busy { 1 } else { 50 }));
    }
    watch.close();
    stopper.continue_all(&kids.0)?;
    let limit = Duration::from_secs(60);
    let mut all = std::mem::take(&mut kids.0).into_iter();
    let mut sent = HashMap::new();
    let (mut resent, mut sender_passed, mut sender_lost, mut held) = (0, 0, 0, 0);
    for i in 0..senders {
        let out = finish(all.next().expect("one child per sender"), limit)?;
        let v: serde_json::Value =
            serde_json::from_str(out.trim()).map_err(|e| format!("sender said {out:?}: {e}"))?;
        sent.insert(1 + i as u64, v["sent"].as_u64().unwrap_or(0));
        resent += v["resent"].as_u64().unwrap_or(0);
        sender_passed += v["stalls_passed"].as_u64().unwrap_or(0);
        sender_lost += v["lost"].as_u64().unwrap_or(0);
        held += v["held_mid_send"].as_u64().unwrap_or(0);
    }
    let mut tallies = Vec::new();
    for c in all {
        let out = finish(c, limit)?;
        let t: Tally =
            serde_json::from_str(out.trim()).map_err(|e| format!("receiver said {out:?}: {e}"))?;
        tallies.push(t);
    }
    let dir = args.drops_dir.as_deref().ok_or("no scratch directory")?;
    let ids: Vec<u64> = (0..args.consumers as u64).map(|i| 1000 + i).collect();
    let b = books(dir, &ids, &sent)?;
    let totals = queue.totals();
    let sum = |f: fn(&Tally) -> u64| tallies.iter().map(f).sum::<u64>();
    let (torn, reordered) = (sum(|t| t.torn), sum(|t| t.reordered));
    let duplicated = sum(|t| t.duplicated) + b.duplicated_across;
    let sent_total: u64 = sent.values().sum();
    let elapsed = started.elapsed().as_secs_f64();
    let bound = queue.stall_bound();
    let stop_count = |r: Role| stopper.events.iter().filter(|e| e.role == r).count();
    let stalls = scratch.page.as_ref().map(|_| {
        stops::Summary::new(
            &stopper.events,
            &watch,
            bound,
            &[
                (
                    "sender stops: receivers' head stall",
                    Role::Sender,
                    Party::Head,
                ),
                (
                    "receiver stops: sender stall",
                    Role::Receiver,
                    Party::Sender,
                ),
            ],
        )
    });
    if json {
        let v = serde_json::json!({
            "kind": "queue",
            "seconds": elapsed, "senders": args.producers, "receivers": args.consumers,
            "capacity_items": args.slots, "item_size": args.capacity, "rate": args.rate,
            "seed": args.seed, "stall_bound_ms": bound.map(|b| b.as_secs_f64() * 1e3),
            "stop_every_ms": args.stop_every_ms, "max_stop_ms": args.max_stop_ms,
            "sender_stops": stop_count(Role::Sender), "receiver_stops": stop_count(Role::Receiver),
            "sent": sent_total, "received": sum(|t| t.received), "torn": torn,
            "duplicated": duplicated, "reordered": reordered, "missing": b.missing,
            "unsent_delivered": b.unsent_delivered,
            "resent": resent, "stalls_passed_by_senders": sender_passed,
            "stalls_passed_by_receivers": sum(|t| t.stalls_passed),
            "lost_freed_by_senders": sender_lost, "stalls": sum(|t| t.stalls),
            "sends_held_mid_write": held,
            "totals": {"skipped": totals.skipped, "lost": totals.lost, "passed": totals.passed},
            "per_receiver": tallies,
            "stall_figures": stalls.as_ref().map(stops::Summary::json),
        });
        println!("{v}");
    } else {
        println!(
            "soak queue: {elapsed:.1} s, {} senders and {} receivers ({} and {} stops of 1..={} \
             ms log-uniform, every ~{} ms), {} items x {} bytes, stall bound {}, seed {}",
            args.producers,
            args.consumers,
            stop_count(Role::Sender),
            stop_count(Role::Receiver),
            args.max_stop_ms,
            args.stop_every_ms,
            args.slots,
            args.capacity,
            stops::bound_text(bound),
            args.seed,
        );
        println!(
            "  sent {sent_total} ({held} held mid-write for {} ms), re-sent {resent}, senders \
             routed around {sender_passed} held slots; totals: skipped {} lost {} passed {}",
            TRIP_HOLD.tv_nsec / 1_000_000,
            totals.skipped,
            totals.lost,
            totals.passed
        );
        for (i, t) in tallies.iter().enumerate() {
            println!(
                "  receiver {i}: received {} stalls-passed {} stalls {} torn {} duplicated {} \
                 reordered {}",
                t.received, t.stalls_passed, t.stalls, t.torn, t.duplicated, t.reordered
            );
        }
        println!(
            "  total: received {} torn {torn} duplicated {duplicated} reordered {reordered} \
             missing {} unsent-delivered {}",
            sum(|t| t.received),
            b.missing,
            b.unsent_delivered
        );
        if let Some(s) = &stalls {
            s.print();
        }
    }
    if torn + duplicated + reordered + b.unsent_delivered > 0 || b.missing != totals.lost {
        return Err(format!(
            "soak failed: torn {torn}, duplicated {duplicated}, reordered {reordered}, \
             received but never sent {}, missing {} (the queue counts {} lost)",
            b.unsent_delivered, b.missing, totals.lost
        ));
    }
    if sum(|t| t.received) == 0 {
        return Err("soak failed: no receiver received anything".into());
    }
    Ok(())
}
