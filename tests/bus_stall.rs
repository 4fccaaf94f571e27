//! Bounded stalls on a multi-producer bus (docs/design.md §5 "Held slots", §6 "Stalls"): real
//! producer processes (this test binary re-executed, `child_entry`) stopped and continued at
//! random (SIGSTOP/SIGCONT) and one SIGKILLed, while this process subscribes. Every payload
//! carries its producer, counter and checksum, so a torn, duplicated or reordered message
//! cannot go unnoticed; and the subscriber must keep receiving while a producer is stopped.

use shmbus_testkit as support;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use shmbus::{Bus, BusBuilder, Error, Recv, Start};
use support::park::park;
use support::{check_payload, env, make_payload, say, ChildProc, Rng, TestBus};

const CHILD: &str = "child_entry";
const PRODUCERS: u64 = 4;
const LEN: usize = 40;
/// Stops of a producer in one run of the stall test.
const STOPS: u64 = 200;

/// Entry point of child processes; does nothing when run as an ordinary test.
#[test]
fn child_entry() {
    support::run_role(&[("producer", producer)]);
}

/// Publishes checksummed messages (its ID, a counter) for RUN_MS, then exits. Each fill takes
/// about 30 µs inside its claim (a slow fill, so that most SIGSTOPs land mid-publish), and
/// bursts of 64 are paced by a 1 ms pause, so that the subscriber keeps up: a stalled sequence
/// is then passed, not lapped past (producers flat out on 2 cores lap it first).
fn producer() {
    let bus = Bus::open(&env::<String>("BUS")).unwrap();
    let mut tx = bus.publisher().unwrap();
    let id = env::<u64>("ID");
    let run = Duration::from_millis(env::<u64>("RUN_MS"));
    say("ready");
    let mut buf = [0u8; LEN];
    let start = Instant::now();
    let mut c = 0u64;
    while start.elapsed() < run {
        make_payload(&mut buf, id, c);
        let published = tx.publish_with(|w| {
            let t = Instant::now();
            while t.elapsed() < Duration::from_micros(30) {
                std::hint::spin_loop();
            }
            w.write_at(0, &buf).unwrap();
        });
        assert!(
            published.is_some(),
            "a held slot is routed around, not dropped"
        );
        c += 1;
        if c % 64 == 0 {
            // Pacing, not synchronisation: the subscriber should not be lapped.
            std::thread::sleep(Duration::from_millis(1));
        }
    }
    say(&format!("published={}", tx.stats().published));
}

/// Sends `sig` to a child we have not reaped (so its pid is not reused).
fn signal(child: &ChildProc, sig: i32) {
    // SAFETY: kill(2) has no memory effects; the pid is our unreaped child's.
    unsafe { libc::kill(child.pid(), sig) };
}

#[test]
fn stopped_producers_never_stop_the_subscriber_and_nothing_is_torn() {
    let t = TestBus::new("stall-mp");
    let bus = BusBuilder::new(t.name())
        .slots(1 << 16)
        .capacity(LEN)
        .multi_producer()
        .stall_bound(Some(Duration::from_millis(20)))
        .create()
        .unwrap();
    assert_eq!(bus.stall_bound(), Some(Duration::from_millis(20)));
    let mut rx = bus.subscribe(Start::Sequence(0));
    let run_ms = 7_000u64;
    let mut children: Vec<ChildProc> = (0..PRODUCERS)
        .map(|id| {
            ChildProc::spawn(
                CHILD,
                "producer",
                &[
                    ("BUS", t.name().to_owned()),
                    ("ID", id.to_string()),
                    ("RUN_MS", run_ms.to_string()),
                ],
            )
        })
        .collect();
    for c in &mut children {
        c.expect_line("ready");
    }
    // The controller stops a random producer 200 times, for 1 to 100 ms (log-uniform: most
    // stops are short, some pass the 20 ms bound several times over), and kills producer 3
    // halfway; `stopped` says whether one is stopped now.
    let stopped = Arc::new(AtomicBool::new(false));
    let controller = {
        let stopped = stopped.clone();
        std::thread::spawn(move || {
            let mut rng = Rng::new(0x5eed5);
            let start = Instant::now();
            let (mut stops, mut killed) = (0u64, false);
            while stops < STOPS && start.elapsed() < Duration::from_millis(run_ms * 9 / 10) {
                if !killed && stops == STOPS / 2 {
                    children[3].kill9();
                    killed = true;
                }
                let who = rng.below(if killed { 3 } else { 4 }) as usize;
                signal(&children[who], libc::SIGSTOP);
                stopped.store(true, Ordering::Relaxed);
                let us = 1000.0 * 100f64.powf(rng.below(1000) as f64 / 1000.0);
                std::thread::sleep(Duration::from_micros(us as u64));
                stopped.store(false, Ordering::Relaxed);
                signal(&children[who], libc::SIGCONT);
                stops += 1;
                std::thread::sleep(Duration::from_millis(rng.below(5)));
            }
            let published: u64 = children[..3]
                .iter_mut()
                .map(|c| {
                    let line = c.next_line().expect("producer's result line");
                    c.wait_success(Duration::from_secs(60));
                    support::field(&line, "published")
                })
                .sum();
            (stops, published)
        })
    };
    let mut last = [None::<u64>; PRODUCERS as usize];
    let (mut received, mut lost, mut torn, mut disorder) = (0u64, 0u64, 0u64, 0u64);
    let mut while_stopped = 0u64;
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        assert!(
            Instant::now() < deadline,
            "subscriber never saw the bus closed"
        );
        match rx.recv_timeout(Duration::from_millis(100)) {
            Recv::Message(m) => {
                received += 1;
                if stopped.load(Ordering::Relaxed) {
                    while_stopped += 1;
                }
                match check_payload(m.bytes()) {
                    Some((p, c)) if p < PRODUCERS => {
                        // Strictly increasing per producer: no duplicate, no reordering.
                        if last[p as usize].is_some_and(|l| c <= l) {
                            disorder += 1;
                        }
                        last[p as usize] = Some(c);
                    }
                    _ => torn += 1,
                }
            }
            Recv::Lapped { lost: n } => lost += n,
            Recv::Closed => break,
            Recv::Empty => {}
        }
    }
    let (stops, published) = controller.join().unwrap();
    let s = rx.stats();
    println!(
        "stops={stops} published(0..3)={published} received={received} lost={lost} \
         laps={} stalls_passed={} while_stopped={while_stopped} cursor={}",
        s.laps,
        s.stalls_passed,
        bus.cursor()
    );
    assert_eq!(
        (torn, disorder),
        (0, 0),
        "torn or duplicated/reordered messages"
    );
    assert_eq!((s.received, s.lost), (received, lost));
    assert_eq!(
        received + lost,
        bus.cursor(),
        "received + lost == the sequences moved past (all, at Closed)"
    );
    assert!(stops >= STOPS / 2, "{stops} stops");
    assert!(
        while_stopped > 0,
        "the subscriber received nothing while a producer was stopped"
    );
    assert!(
        s.stalls_passed > 0,
        "{stops} stops of producers publishing flat out, none passed after the bound"
    );
}

#[test]
fn stall_bound_is_stored_per_bus_and_refused_where_it_means_nothing() {
    let t = TestBus::new("stall-cfg");
    let mp = BusBuilder::new(t.name()).multi_producer().create().unwrap();
    assert_eq!(mp.stall_bound(), Some(shmbus::bus::DEFAULT_STALL_BOUND));
    assert_eq!(
        Bus::open(t.name()).unwrap().stall_bound(),
        Some(shmbus::bus::DEFAULT_STALL_BOUND),
        "an opener reads the bus's bound"
    );
    drop(mp);
    Bus::remove(t.name()).unwrap();
    let none = BusBuilder::new(t.name())
        .multi_producer()
        .stall_bound(None)
        .create()
        .unwrap();
    assert_eq!(none.stall_bound(), None);
    drop(none);
    Bus::remove(t.name()).unwrap();
    assert!(matches!(
        BusBuilder::new(t.name())
            .multi_producer()
            .stall_bound(Some(Duration::ZERO))
            .create(),
        Err(Error::InvalidConfig(_))
    ));
    assert!(matches!(
        BusBuilder::new(t.name())
            .stall_bound(Some(Duration::from_millis(5)))
            .create(),
        Err(Error::InvalidConfig(_))
    ));
    let sp = BusBuilder::new(t.name()).create().unwrap();
    assert_eq!(
        sp.stall_bound(),
        None,
        "a single producer never stalls a reader"
    );
}

#[test]
fn holds_name_a_producer_mid_publish_and_nothing_once_it_published() {
    let t = TestBus::new("stall-holds");
    let bus = BusBuilder::new(t.name())
        .slots(8)
        .multi_producer()
        .create()
        .unwrap();
    let inspector = Bus::open(t.name()).unwrap();
    let mut idle = bus.publisher().unwrap();
    idle.publish_bytes(b"first").unwrap();
    assert_eq!(inspector.holds(), [], "a published claim is not a hold");
    let mut tx = bus.publisher().unwrap();
    let index = tx.producer_index() as usize;
    // The fill stops inside: the slot is taken meanwhile.
    let writer = park(move |gate| {
        tx.publish_with(|w| {
            w.write_at(0, b"slow").unwrap();
            gate.stop_here();
        })
        .map(|(seq, ())| seq)
    });
    let holds = inspector.holds();
    assert_eq!(
        holds,
        [shmbus::ProducerHold {
            index,
            pid: std::process::id(),
            seq: 1,
            writing: true,
        }],
        "the producer inside its fill holds sequence 1's slot"
    );
    assert_eq!(writer.release(), Some(1));
    assert_eq!(inspector.holds(), []);
}
