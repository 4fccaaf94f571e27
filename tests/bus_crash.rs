//! Crash tests: producers and consumers killed with SIGKILL at random instants, a creator that
//! dies before its segment is initialised, and buses whose every producer is gone.
//!
//! Every process here is a real OS process: this test binary re-executes itself (`child_entry`)
//! in the role named by `SHMBUS_REL_ROLE`. Payloads check themselves (producer id, counter, a body
//! derived from both, FNV-1a), so a torn or partial message cannot go unnoticed.
//!
//! `SHMBUS_CRASH_TRIALS` sets the number of kills per producer mode (default 200);
//! `SHMBUS_TEST_SEED` replays the random kill instants of a failed run.

use shmbus_testkit as support;

use std::collections::HashMap;
use std::io::{BufRead, Read};
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use shmbus::{Bus, BusBuilder, Error, ProducerMode, Recv, Start, Wait};
use support::make;
use support::{check_payload, env, field, make_payload, payload_len, say, ChildProc, Rng, TestBus};

/// The test that child processes run.
const CHILD: &str = "child_entry";
/// Producer id of the message that tells a checking consumer to report and exit.
const END_ID: u64 = u64::MAX;
/// Producer id of the steady (never killed) producer of the multi-producer trials.
const STEADY_ID: u64 = 1 << 40;
/// Producer id of the producer that attaches after the last kill.
const FINAL_ID: u64 = 1 << 41;
/// How long a checking consumer may see nothing while newer messages exist before it calls it a
/// hang (the stall timeout it uses is 10 ms).
const HANG_LIMIT: Duration = Duration::from_secs(5);

/// Entry point of child processes; does nothing when run as an ordinary test.
#[test]
fn child_entry() {
    support::run_role(&[
        ("crashy", crashy_producer),
        ("steady", steady_producer),
        ("paced", paced_producer),
        ("burst", burst_producer),
        ("checker", checking_consumer),
        ("creator", creator),
        ("half-create", half_create),
    ]);
}

fn bus_name() -> String {
    env("BUS")
}

fn attach_or_report(bus: &Bus) -> shmbus::Publisher {
    match bus.publisher() {
        Ok(p) => p,
        Err(e) => {
            say(&format!("error {e}"));
            std::process::exit(2);
        }
    }
}

/// Publishes as fast as it can until killed, alternating the in-place path (the whole message is
/// generated while the slot is held, so most kills land mid-write) and the copy path.
fn crashy_producer() {
    let bus = Bus::open(&bus_name()).expect("open bus");
    let mut tx = attach_or_report(&bus);
    say("attached");
    let id: u64 = env("ID");
    let cap = bus.capacity();
    let mut buf = vec![0u8; cap];
    for k in 0.. {
        let len = payload_len(id, k, cap);
        if k % 2 == 0 {
            tx.publish_with(|w| {
                make_payload(&mut buf[..len], id, k);
                w.write_at(0, &buf[..len]).expect("fits");
            });
        } else {
            make_payload(&mut buf[..len], id, k);
            tx.publish_bytes(&buf[..len]).expect("fits");
        }
    }
}

/// Reads commands ("stop", "exit") from stdin into a shared state: 0 run, 1 stop, 2 exit.
fn command_reader() -> Arc<AtomicU8> {
    let state = Arc::new(AtomicU8::new(0));
    let s = state.clone();
    std::thread::spawn(move || {
        for line in std::io::stdin().lock().lines() {
            match line.as_deref() {
                Ok("stop") => s.store(1, Ordering::SeqCst),
                Ok("exit") | Err(_) => break,
                Ok(_) => {}
            }
        }
        s.store(2, Ordering::SeqCst);
    });
    state
}

/// Publishes a paced stream until told to stop, then stays attached (alive) until told to exit.
fn steady_producer() {
    let bus = Bus::open(&bus_name()).expect("open bus");
    let mut tx = attach_or_report(&bus);
    let state = command_reader();
    say("attached");
    let cap = bus.capacity();
    let mut buf = vec![0u8; cap];
    let mut k = 0;
    while state.load(Ordering::SeqCst) == 0 {
        let len = payload_len(STEADY_ID, k, cap);
        make_payload(&mut buf[..len], STEADY_ID, k);
        tx.publish_bytes(&buf[..len]).expect("fits");
        k += 1;
        // Pacing, not synchronisation: leave the two cores to the other processes.
        std::thread::sleep(Duration::from_micros(50));
    }
    let s = tx.stats();
    say(&format!(
        "stopped published={} dropped={}",
        s.published, s.dropped
    ));
    while state.load(Ordering::SeqCst) != 2 {
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// Publishes FIRST messages, says "half", waits for "go", publishes SECOND more and the end
/// marker.
fn paced_producer() {
    let bus = Bus::open(&bus_name()).expect("open bus");
    let mut tx = attach_or_report(&bus);
    let (first, second): (u64, u64) = (env("FIRST"), env("SECOND"));
    let cap = bus.capacity();
    let mut buf = vec![0u8; cap];
    let mut publish = |tx: &mut shmbus::Publisher, id: u64, k: u64| {
        let len = payload_len(id, k, cap);
        make_payload(&mut buf[..len], id, k);
        tx.publish_bytes(&buf[..len]).expect("fits");
        if k % 64 == 0 {
            std::thread::yield_now();
        }
    };
    for k in 0..first {
        publish(&mut tx, 1, k);
    }
    say("half");
    let mut line = String::new();
    std::io::stdin().read_line(&mut line).expect("stdin");
    assert_eq!(line.trim(), "go");
    for k in first..first + second {
        publish(&mut tx, 1, k);
    }
    publish(&mut tx, END_ID, 0);
    let s = tx.stats();
    say(&format!(
        "done published={} dropped={}",
        s.published, s.dropped
    ));
}

/// Publishes COUNT messages starting at counter FROM, says "published", then either detaches
/// (HOLD=0) or stays attached until killed (HOLD=1).
fn burst_producer() {
    let bus = Bus::open(&bus_name()).expect("open bus");
    let mut tx = attach_or_report(&bus);
    let (from, count, hold): (u64, u64, u64) = (env("FROM"), env("COUNT"), env("HOLD"));
    let mut buf = vec![0u8; bus.capacity()];
    for k in from..from + count {
        let len = payload_len(7, k, buf.len());
        make_payload(&mut buf[..len], 7, k);
        tx.publish_bytes(&buf[..len]).expect("fits");
    }
    say("published");
    if hold == 1 {
        std::io::stdin()
            .read_to_end(&mut Vec::new())
            .expect("stdin");
    }
}

/// Creates bus BUS, attaches a producer, publishes 3 messages, then waits to be killed.
fn creator() {
    let bus = BusBuilder::new(&bus_name()).create().expect("create");
    let mut tx = bus.publisher().expect("attach");
    for k in 0..3 {
        let mut buf = [0u8; 40];
        make_payload(&mut buf, 3, k);
        tx.publish_bytes(&buf).expect("fits");
    }
    say("ready");
    std::io::stdin()
        .read_to_end(&mut Vec::new())
        .expect("stdin");
}

/// Creates the segment the way shmbus does (O_EXCL, mode 0200) and dies with SIGKILL after STEP:
/// 0 right after `shm_open`, 1 after `ftruncate`, 2 after writing every header field but the
/// magic.
fn half_create() {
    use nix::fcntl::OFlag;
    use nix::sys::stat::Mode;
    let step: u32 = env("STEP");
    let fd = nix::sys::mman::shm_open(
        format!("/shmbus.{}", bus_name()).as_str(),
        OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_RDWR,
        Mode::from_bits_truncate(0o200),
    )
    .expect("shm_open");
    let size = 4096 + 64 * 128;
    if step >= 1 {
        nix::unistd::ftruncate(&fd, size).expect("ftruncate");
    }
    if step >= 2 {
        let file = std::fs::File::from(fd);
        // SAFETY: this process just created the object and is the only one that maps it.
        let mut map = unsafe { memmap2::MmapMut::map_mut(&file) }.expect("mmap");
        let words: [(usize, u64); 5] = [
            (1, 1 | 1 << 32),
            (2, 64),
            (3, 128),
            (4, 112),
            (11, size as u64),
        ];
        for (w, v) in words {
            map[w * 8..w * 8 + 8].copy_from_slice(&v.to_le_bytes());
        }
        map.flush().expect("msync");
    }
    // SAFETY: raise(3) with a valid signal number; SIGKILL ends the process here.
    unsafe { libc::raise(libc::SIGKILL) };
    unreachable!("SIGKILL is not caught");
}

/// Reads the bus from its first sequence until the end marker, checking every message, then
/// prints its tallies.
fn checking_consumer() {
    let bus = Bus::open_read_only(&bus_name()).expect("open bus");
    let mut rx = bus.subscribe(Start::Oldest).wait_strategy(Wait::Sleep);
    say("ready");
    let (mut received, mut lost, mut torn, mut dup, mut reorder, mut hangs, mut closed) =
        (0u64, 0u64, 0u64, 0u64, 0u64, 0u64, 0u64);
    let mut last: HashMap<u64, u64> = HashMap::new();
    let mut last_seq = None;
    loop {
        match rx.recv_timeout(HANG_LIMIT) {
            Recv::Message(m) => {
                received += 1;
                if last_seq.is_some_and(|s| m.seq() <= s) {
                    reorder += 1;
                }
                last_seq = Some(m.seq());
                let Some((id, k)) = check_payload(m.bytes()) else {
                    torn += 1;
                    eprintln!("torn message at seq {}: {} bytes", m.seq(), m.bytes().len());
                    continue;
                };
                if id == END_ID {
                    break;
                }
                match last.insert(id, k) {
                    Some(prev) if prev == k => dup += 1,
                    Some(prev) if prev > k => reorder += 1,
                    _ => {}
                }
            }
            Recv::Lapped { lost: n } => lost += n,
            Recv::Empty => {
                if bus.cursor() != rx.next_seq() {
                    hangs += 1;
                    eprintln!(
                        "no progress for {HANG_LIMIT:?} at seq {} with cursor {}",
                        rx.next_seq(),
                        bus.cursor()
                    );
                }
            }
            Recv::Closed => closed += 1,
        }
    }
    say(&format!(
        "stats received={received} lost={lost} torn={torn} dup={dup} reorder={reorder} \
         hangs={hangs} closed={closed} next={}",
        rx.next_seq()
    ));
}

fn trials() -> u64 {
    support::env_or("SHMBUS_CRASH_TRIALS", 200)
}

fn publish_checked(tx: &mut shmbus::Publisher, id: u64, k: u64, cap: usize) -> Option<u64> {
    let mut buf = vec![0u8; cap];
    let len = payload_len(id, k, cap);
    make_payload(&mut buf[..len], id, k);
    tx.publish_bytes(&buf[..len]).expect("fits")
}

/// The kill -9 trials for one producer mode: returns the consumer's tally line.
fn kill_producers_at_random_instants(mode: ProducerMode) -> String {
    let name = TestBus::new(match mode {
        ProducerMode::Single => "kill-single",
        ProducerMode::Multi => "kill-multi",
    });
    let bus = BusBuilder::new(name.name())
        .slots(1024)
        .capacity(512)
        .producer_mode(mode)
        .create()
        .expect("create bus");
    let bus_env = [("BUS", name.name().to_owned())];
    let mut consumer = ChildProc::spawn(CHILD, "checker", &bus_env);
    consumer.expect_line("ready");
    let mut steady = (mode == ProducerMode::Multi).then(|| {
        let mut s = ChildProc::spawn(CHILD, "steady", &bus_env);
        s.expect_line("attached");
        s
    });
    let mut rng = Rng::from_env(&format!("kill_producers {mode:?}"));
    let trials = trials();
    let (mut mid_write, mut early) = (0u64, 0u64);
    let started = Instant::now();
    for t in 0..trials {
        let env = [bus_env[0].clone(), ("ID", (t + 1).to_string())];
        let mut p = ChildProc::spawn(CHILD, "crashy", &env);
        // One kill in five lands anywhere from process start (even mid-attach or mid-repair);
        // the others while it publishes.
        if rng.below(5) == 0 {
            early += 1;
        } else {
            let first = p.next_line();
            assert_eq!(
                first.as_deref(),
                Some("attached"),
                "trial {t}: the new producer could not attach after the previous one was killed"
            );
        }
        // The random instant itself, not synchronisation.
        std::thread::sleep(Duration::from_micros(rng.below(3000)));
        assert_eq!(
            p.kill9(),
            Some(libc::SIGKILL),
            "trial {t}: producer ended early"
        );
        while let Some(line) = p.next_line() {
            assert_eq!(line, "attached", "trial {t}: producer failed");
        }
        if mode == ProducerMode::Single && bus.slot_census().being_written > 0 {
            mid_write += 1;
        }
    }
    let trial_time = started.elapsed();
    if let Some(s) = &mut steady {
        s.tell("stop");
        let line = s.next_line().expect("steady producer stats");
        assert!(line.starts_with("stopped"), "steady producer said {line}");
    }
    // A producer attaches after the last kill, and can write every slot of the ring: none stays
    // stuck behind a killed writer.
    let mut tx = bus
        .publisher()
        .expect("a new producer attaches after the kills");
    for k in 0..2 * bus.slots() {
        publish_checked(&mut tx, FINAL_ID, k, bus.capacity());
    }
    assert_eq!(
        tx.stats().dropped,
        0,
        "a slot abandoned by a killed producer stayed stuck ({mode:?})"
    );
    let end = publish_checked(&mut tx, END_ID, 0, bus.capacity()).expect("end marker published");
    consumer.wait_success(Duration::from_secs(60));
    let stats = consumer.next_line().expect("consumer tally");
    if let Some(s) = &mut steady {
        s.tell("exit");
        s.wait_success(Duration::from_secs(10));
    }
    let mid_note = match mode {
        ProducerMode::Single => format!(", {mid_write} left a slot mid-write"),
        ProducerMode::Multi => String::new(),
    };
    eprintln!(
        "{mode:?}: {trials} kills in {trial_time:?} ({early} from process start{mid_note}); \
         consumer {stats}; end seq {end}"
    );
    for bad in ["torn", "dup", "reorder", "hangs"] {
        assert_eq!(field(&stats, bad), 0, "{mode:?}: {bad} in {stats}");
    }
    assert_eq!(
        field(&stats, "received") + field(&stats, "lost"),
        end + 1,
        "{mode:?}: received + lost must account for every sequence: {stats}"
    );
    assert_eq!(field(&stats, "next"), end + 1);
    if mode == ProducerMode::Single && trials >= 50 {
        assert!(
            mid_write > 0,
            "no kill landed mid-write: the test proves nothing"
        );
    }
    stats
}

#[test]
fn killed_single_producer_never_tears_a_message_and_a_new_one_takes_over() {
    kill_producers_at_random_instants(ProducerMode::Single);
}

#[test]
fn killed_multi_producers_never_tear_a_message_and_stuck_slots_are_skipped() {
    let stats = kill_producers_at_random_instants(ProducerMode::Multi);
    // Killed writers leave claimed sequences that are never published: they must have been
    // counted lost (after the stall timeout), since the consumer reached the end marker.
    assert!(
        field(&stats, "lost") > 0,
        "no abandoned sequence seen: {stats}"
    );
}

#[test]
fn killed_consumer_harms_neither_the_producer_nor_other_consumers() {
    let name = TestBus::new("kill-consumer");
    let bus = make::bus(&name, 1 << 16, 64);
    let (first, second) = (10_000u64, 20_000u64);
    let bus_env = [("BUS", name.name().to_owned())];
    let mut victim = ChildProc::spawn(CHILD, "checker", &bus_env);
    let mut survivor = ChildProc::spawn(CHILD, "checker", &bus_env);
    victim.expect_line("ready");
    survivor.expect_line("ready");
    let mut producer = ChildProc::spawn(
        CHILD,
        "paced",
        &[
            bus_env[0].clone(),
            ("FIRST", first.to_string()),
            ("SECOND", second.to_string()),
        ],
    );
    producer.expect_line("half");
    assert_eq!(victim.kill9(), Some(libc::SIGKILL));
    producer.tell("go");
    let done = producer.next_line().expect("producer result");
    producer.wait_success(Duration::from_secs(60));
    assert_eq!(field(&done, "published"), first + second + 1, "{done}");
    assert_eq!(bus.cursor(), first + second + 1);
    survivor.wait_success(Duration::from_secs(60));
    let stats = survivor.next_line().expect("survivor tally");
    eprintln!("survivor: {stats}");
    assert_eq!(field(&stats, "received"), first + second + 1, "{stats}");
    for zero in ["lost", "torn", "dup", "reorder", "hangs"] {
        assert_eq!(field(&stats, zero), 0, "{zero} in {stats}");
    }
}

/// Receives `count` checked messages with counters `from..` and then `Recv::Closed`.
fn drain_then_closed(rx: &mut shmbus::Subscriber, from: u64, count: u64) {
    for k in from..from + count {
        match rx.recv_timeout(Duration::from_secs(10)) {
            Recv::Message(m) => {
                assert_eq!(m.seq(), k);
                assert_eq!(check_payload(m.bytes()), Some((7, k)));
            }
            other => panic!("expected message {k}, got {other:?}"),
        }
    }
    match rx.recv_timeout(Duration::from_secs(10)) {
        Recv::Closed => {}
        other => panic!("expected Closed after draining, got {other:?}"),
    }
}

#[test]
fn bus_closes_when_every_producer_is_gone_and_reopens_for_a_new_one() {
    for mode in [ProducerMode::Single, ProducerMode::Multi] {
        let name = TestBus::new("closed");
        let bus = BusBuilder::new(name.name())
            .producer_mode(mode)
            .slots(256)
            .capacity(64)
            .create()
            .expect("create bus");
        let mut rx = bus.subscribe(Start::Oldest);
        let burst = |from: u64, hold: u64| {
            ChildProc::spawn(
                CHILD,
                "burst",
                &[
                    ("BUS", name.name().to_owned()),
                    ("FROM", from.to_string()),
                    ("COUNT", "50".into()),
                    ("HOLD", hold.to_string()),
                ],
            )
        };
        // The producer detaches normally.
        let mut p = burst(0, 0);
        p.expect_line("published");
        p.wait_success(Duration::from_secs(30));
        drain_then_closed(&mut rx, 0, 50);
        // The producer dies.
        let mut p = burst(50, 1);
        p.expect_line("published");
        assert_eq!(p.kill9(), Some(libc::SIGKILL));
        drain_then_closed(&mut rx, 50, 50);
        assert!(!bus.has_producers());
        // Closed is not final: a new producer continues the sequence.
        let mut tx = bus.publisher().expect("attach after close");
        assert_eq!(tx.publish_bytes(b"again").expect("fits"), Some(100));
        match rx.recv_timeout(Duration::from_secs(10)) {
            Recv::Message(m) => assert_eq!((m.seq(), m.bytes()), (100, &b"again"[..])),
            other => panic!("{mode:?}: expected message 100, got {other:?}"),
        }
    }
}

#[test]
fn bus_is_stale_once_its_creator_and_producers_are_dead() {
    let name = TestBus::new("stale");
    let mut creator = ChildProc::spawn(CHILD, "creator", &[("BUS", name.name().to_owned())]);
    creator.expect_line("ready");
    let bus = Bus::open_read_only(name.name()).expect("open");
    assert!(bus.has_producers());
    assert!(
        !shmbus::inspect::is_stale(&bus),
        "live creator and producer"
    );
    assert_eq!(bus.producers().len(), 1);
    assert_eq!(bus.producers()[0].pid, creator.pid() as u32);
    assert_eq!(creator.kill9(), Some(libc::SIGKILL));
    assert!(
        !bus.has_producers(),
        "the kernel released the dead producer's lock"
    );
    assert!(bus.producers().is_empty());
    assert!(shmbus::inspect::is_stale(&bus), "creator and producer dead");
    // Its data stays readable until it is removed.
    let mut rx = bus.subscribe(Start::Oldest);
    for k in 0..3 {
        let Recv::Message(m) = rx.try_recv() else {
            panic!("message {k}")
        };
        assert_eq!(check_payload(m.bytes()), Some((3, k)));
    }
    // A bus whose creator lives (this process) is not stale, producers or not.
    let live = TestBus::new("not-stale");
    let own = BusBuilder::new(live.name()).create().expect("create");
    assert!(!shmbus::inspect::is_stale(&own));
}

#[test]
fn creator_killed_before_the_magic_leaves_a_not_initialised_removable_segment() {
    for step in 0..3 {
        let name = TestBus::new("half-created");
        let mut child = ChildProc::spawn(
            CHILD,
            "half-create",
            &[("BUS", name.name().to_owned()), ("STEP", step.to_string())],
        );
        let status = child.wait_status(Duration::from_secs(30));
        use std::os::unix::process::ExitStatusExt;
        assert_eq!(
            status.signal(),
            Some(libc::SIGKILL),
            "step {step}: {status:?}"
        );
        let n = name.name();
        let t = Instant::now();
        for (what, res) in [
            ("open", Bus::open(n).map(drop)),
            ("open read-only", Bus::open_read_only(n).map(drop)),
            ("inspect", shmbus::inspect::open_for_inspection(n).map(drop)),
        ] {
            assert!(
                matches!(res, Err(Error::NotInitialised { .. })),
                "step {step}: {what} gave {res:?}"
            );
        }
        assert!(
            t.elapsed() < Duration::from_secs(5),
            "openers waited too long"
        );
        assert!(matches!(
            BusBuilder::new(n).create(),
            Err(Error::AlreadyExists { .. })
        ));
        Bus::remove(n).expect("a half-created segment is removable");
        BusBuilder::new(n).create().expect("the name is free again");
    }
}
