//! Records segments: sizes across the wrap point (property tests against a model), a slow
//! subscriber's exact losses, and real processes with random-size checksummed records.

use shmbus_testkit as support;

use std::time::Duration;

use proptest::prelude::*;
use shmbus::records::{RecordRecv, Records, RecordsBuilder};
use shmbus::{LapPolicy, Start, Wait};
use support::forge::Forger;
use support::poll::expect_told;
use support::{check_payload, env, field, make_payload, say, ChildProc, Rng, TestBus};

const CHILD: &str = "child_entry";

/// Entry point of child processes; does nothing when run as an ordinary test.
#[test]
fn child_entry() {
    support::run_role(&[
        ("producer", producer),
        ("consumer", consumer),
        ("fifty", fifty),
    ]);
}

/// Record `i` of `len` bytes: a pattern no other record (or length) shares at any offset.
fn body(i: u64, len: usize) -> Vec<u8> {
    (0..len)
        .map(|k| (i.wrapping_mul(0x9e37_79b9) as u8) ^ (k as u8).wrapping_mul(7) ^ len as u8)
        .collect()
}

const RING: u64 = 4096;
const MAX: usize = 1008;

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    /// A record of any size from 1 byte to the largest, written after a prefix that leaves the
    /// tail anywhere before the ring's end, arrives whole with its type and sequence number.
    #[test]
    fn any_size_arrives_whole_across_the_wrap_point(
        prefix in proptest::collection::vec(1usize..=MAX, 0..12),
        len in 1usize..=MAX,
        type_id in any::<u32>(),
    ) {
        let r = RecordsBuilder::new("p").bytes(RING).in_process().unwrap();
        let mut tx = r.publisher().unwrap();
        for (i, &l) in prefix.iter().enumerate() {
            tx.publish_bytes(&body(i as u64, l)).unwrap();
        }
        let mut rx = r.subscribe(Start::Next);
        let seq = tx.publish_record(type_id, &body(99, len)).unwrap();
        prop_assert_eq!(seq, prefix.len() as u64);
        match rx.try_recv() {
            RecordRecv::Record(m) => {
                prop_assert_eq!((m.seq(), m.type_id()), (seq, type_id));
                prop_assert_eq!(m.bytes(), &body(99, len)[..]);
            }
            other => prop_assert!(false, "expected the record, got {:?}", other),
        }
        prop_assert!(matches!(rx.try_recv(), RecordRecv::Empty));
    }

    /// Publishes and polls interleaved at random against a model of what was published: every
    /// delivered record is the model's record of that sequence, sequences only grow, a lap
    /// resumes at a record still intact, and received + lost is exactly what was published.
    #[test]
    fn interleaved_publishes_and_polls_match_the_model(
        ops in proptest::collection::vec((0usize..4, 1usize..=MAX), 1..200),
        newest in any::<bool>(),
    ) {
        let r = RecordsBuilder::new("p").bytes(RING).in_process().unwrap();
        let mut tx = r.publisher().unwrap();
        let policy = if newest { LapPolicy::Newest } else { LapPolicy::Oldest };
        let mut rx = r.subscribe(Start::Oldest).lap_policy(policy);
        let mut lens = Vec::new();
        let mut expected = 0u64;
        let poll = |rx: &mut shmbus::records::RecordSubscriber, lens: &[usize], expected: &mut u64| {
            match rx.try_recv() {
                RecordRecv::Record(m) => {
                    assert_eq!(m.seq(), *expected, "no record skipped without a lap");
                    assert_eq!(m.bytes(), &body(m.seq(), lens[m.seq() as usize])[..]);
                    *expected += 1;
                    true
                }
                RecordRecv::Lapped { lost } => {
                    assert!(lost > 0);
                    *expected += lost;
                    // The ring holds at least three quarters of its bytes of recent records.
                    let behind: u64 = lens[*expected as usize..].iter().map(|&l| 16 + l.next_multiple_of(8) as u64).sum();
                    assert!(behind <= RING, "resumed at a record that cannot be intact");
                    true
                }
                RecordRecv::Empty => false,
                RecordRecv::Closed => unreachable!("the producer is attached"),
            }
        };
        for (op, len) in ops {
            if op == 0 {
                poll(&mut rx, &lens, &mut expected);
            } else {
                lens.push(len);
                tx.publish_bytes(&body(lens.len() as u64 - 1, len)).unwrap();
            }
        }
        while poll(&mut rx, &lens, &mut expected) {}
        prop_assert_eq!(expected, lens.len() as u64);
        let st = rx.stats();
        prop_assert_eq!(st.received + st.lost, lens.len() as u64);
    }
}

/// A subscriber that reads one record in three while the producer keeps publishing loses
/// records; every loss is counted exactly: each record carries its own sequence number, and the
/// gaps between the delivered ones are the losses reported.
#[test]
fn slow_subscriber_counts_every_lost_record_exactly() {
    let name = TestBus::new("records-slow");
    let r = RecordsBuilder::new(name.name())
        .bytes(1 << 14)
        .create()
        .unwrap();
    let mut tx = r.publisher().unwrap();
    let mut rx = Records::open_read_only(name.name())
        .unwrap()
        .subscribe(Start::Oldest);
    let mut rng = Rng::new(7);
    let (total, mut next, mut lost) = (20_000u64, 0u64, 0u64);
    let mut buf = vec![0u8; 4000];
    for k in 0..total {
        let len = 24 + rng.below(3000) as usize;
        make_payload(&mut buf[..len], 1, k);
        tx.publish_bytes(&buf[..len]).unwrap();
        if k % 3 == 0 {
            match rx.try_recv() {
                RecordRecv::Record(m) => {
                    assert_eq!(
                        check_payload(m.bytes()),
                        Some((1, m.seq())),
                        "record {}",
                        m.seq()
                    );
                    assert_eq!(m.seq(), next);
                    next += 1;
                }
                RecordRecv::Lapped { lost: n } => {
                    lost += n;
                    next += n;
                }
                other => panic!("{other:?}"),
            }
        }
    }
    drop(tx);
    loop {
        match rx.recv_timeout(Duration::from_secs(10)) {
            RecordRecv::Record(m) => {
                assert_eq!(check_payload(m.bytes()), Some((1, m.seq())));
                assert_eq!(m.seq(), next);
                next += 1;
            }
            RecordRecv::Lapped { lost: n } => {
                lost += n;
                next += n;
            }
            RecordRecv::Closed => break,
            RecordRecv::Empty => panic!("no progress within 10 s"),
        }
    }
    let st = rx.stats();
    assert_eq!(next, total);
    assert_eq!((st.lost, st.received + st.lost), (lost, total));
    // Lapped again and again, it still receives: each lap resumes at a record still intact.
    assert!(lost > 0 && st.received > total / 10, "{st:?}");
}

/// Publishes COUNT random-size checksummed records, counter = sequence number.
fn producer() {
    let r = Records::open(&std::env::var("BUS").unwrap()).unwrap();
    let mut tx = r.publisher().unwrap();
    let (count, max) = (env::<u64>("COUNT"), env::<usize>("MAX"));
    let mut rng = Rng::new(env::<u64>("SEED"));
    let mut buf = vec![0u8; max];
    say("ready");
    expect_told("go");
    for k in 0..count {
        let len = 24 + rng.below((max - 23) as u64) as usize;
        make_payload(&mut buf[..len], 7, k);
        tx.publish_bytes(&buf[..len]).unwrap();
        if k % 256 == 0 {
            std::thread::yield_now();
        }
    }
    say(&format!("published={}", tx.stats().published));
}

/// Reads from sequence 0 until the segment closes, checking every record; pauses every PAUSE
/// records if asked (a slow consumer). Reports what it saw.
fn consumer() {
    let r = Records::open_read_only(&std::env::var("BUS").unwrap()).unwrap();
    let mut rx = r.subscribe(Start::Sequence(0)).wait_strategy(Wait::Yield);
    let pause = env::<u64>("PAUSE");
    say("ready");
    // Started once the producer is attached: `Closed` then means it has left.
    expect_told("go");
    let (mut next, mut bad, mut gaps_ok) = (0u64, 0u64, true);
    let (mut received, mut lost) = (0u64, 0u64);
    loop {
        match rx.recv_timeout(Duration::from_secs(30)) {
            RecordRecv::Record(m) => {
                match check_payload(m.bytes()) {
                    Some((7, k)) if k == m.seq() => {}
                    _ => bad += 1,
                }
                gaps_ok &= m.seq() == next;
                next = m.seq() + 1;
                received += 1;
                if pause > 0 && received % pause == 0 {
                    // Busy for a while: the producer laps this consumer.
                    let t = std::time::Instant::now();
                    while t.elapsed() < Duration::from_millis(2) {
                        std::hint::spin_loop();
                    }
                }
            }
            RecordRecv::Lapped { lost: n } => {
                lost += n;
                next += n;
            }
            RecordRecv::Closed => break,
            RecordRecv::Empty => panic!("no record within 30 s"),
        }
    }
    say(&format!(
        "received={received} lost={lost} bad={bad} gaps_ok={} next={next}",
        gaps_ok as u64
    ));
}

#[test]
fn processes_exchange_random_size_records_untorn_with_exact_losses() {
    let name = TestBus::new("records-mp");
    let _r = RecordsBuilder::new(name.name())
        .bytes(1 << 16)
        .create()
        .unwrap();
    let count: u64 = 100_000;
    let env_of = |extra: &[(&'static str, String)]| -> Vec<(&'static str, String)> {
        let mut v = vec![("BUS", name.name().to_owned())];
        v.extend(extra.iter().cloned());
        v
    };
    let mut consumers: Vec<ChildProc> = [0u64, 50]
        .iter()
        .map(|pause| {
            let mut c =
                ChildProc::spawn(CHILD, "consumer", &env_of(&[("PAUSE", pause.to_string())]));
            c.expect_line("ready");
            c
        })
        .collect();
    let mut p = ChildProc::spawn(
        CHILD,
        "producer",
        &env_of(&[
            ("COUNT", count.to_string()),
            ("MAX", "8000".into()),
            ("SEED", "11".into()),
        ]),
    );
    p.expect_line("ready");
    for c in &mut consumers {
        c.tell("go");
    }
    p.tell("go");
    let line = p.next_line().expect("producer result");
    assert_eq!(field(&line, "published"), count);
    p.wait_success(Duration::from_secs(60));
    for c in &mut consumers {
        let line = c.next_line().expect("consumer result");
        c.wait_success(Duration::from_secs(60));
        assert_eq!(field(&line, "bad"), 0, "{line}");
        assert_eq!(field(&line, "gaps_ok"), 1, "{line}");
        assert_eq!(
            field(&line, "received") + field(&line, "lost"),
            count,
            "{line}"
        );
        assert_eq!(field(&line, "next"), count, "{line}");
    }
}

/// Publishes records 0..50 (40 bytes each, `body(seq, 40)`), says so, then waits to be killed.
fn fifty() {
    let r = Records::open(&std::env::var("BUS").unwrap()).unwrap();
    let mut tx = r.publisher().unwrap();
    for s in 0..50 {
        tx.publish_bytes(&body(s, 40)).unwrap();
    }
    say("published");
    expect_told("go");
}

/// Words of the control block (docs/design.md §15): the cursor, the tail and the last record.
const W_CURSOR: usize = 128;
const W_TAIL: usize = 145;
const W_LAST: usize = 147;

/// repro_kinds_records_attach_tail: a producer killed between its cursor store and its tail
/// store (1 in ~3,000 random kills) leaves cursor = s + 1 with the tail at the start of record
/// s. A real producer process publishes records 0..50 and is killed; the tail word is set back
/// to the start of record 49, exactly what the kill between the two stores leaves. The next
/// producer must not write record 50 over record 49: a subscriber that read record 49 receives
/// 50 and 51 as published (also when record 50's payload holds the word done(50), which a reader
/// waiting at the end of record 49 would accept in the middle of a record written over it), and
/// a subscriber from the start still finds every record, 49 included.
#[test]
fn a_producer_killed_between_its_cursor_and_tail_stores_has_no_record_written_over() {
    let done50 = 50u64 << 3 | 2;
    for crafted in [false, true] {
        let name = TestBus::new("rec-attach-tail");
        let r = RecordsBuilder::new(name.name())
            .bytes(4096)
            .create()
            .unwrap();
        let forger = Forger::new(&name);
        let mut p1 = ChildProc::spawn(CHILD, "fifty", &[("BUS", name.name().to_owned())]);
        p1.expect_line("published");
        let mut rx = r.subscribe(Start::Oldest);
        for s in 0..50 {
            match rx.try_recv() {
                RecordRecv::Record(m) => assert_eq!((m.seq(), m.bytes()), (s, &body(s, 40)[..])),
                other => panic!("record {s}: {other:?}"),
            }
        }
        p1.kill9();
        assert_eq!(forger.load(W_CURSOR), 50);
        let last = forger.load(W_LAST);
        // Killed after storing the cursor (and last), before storing the tail.
        forger.store(W_TAIL, last);
        let mut tx = r.publisher().expect("a new producer attaches");
        let fifty: Vec<u8> = if crafted {
            std::iter::repeat_n(done50.to_le_bytes(), 25)
                .flatten()
                .collect()
        } else {
            body(50, 200)
        };
        assert_eq!(tx.publish_bytes(&fifty).unwrap(), 50);
        assert_eq!(tx.publish_bytes(b"record fifty-one").unwrap(), 51);
        assert!(
            forger.load(W_TAIL) > last + 56,
            "crafted {crafted}: the new producer wrote at record 49's place"
        );
        let want: [(u64, &[u8]); 2] = [(50, &fifty), (51, b"record fifty-one")];
        for (s, bytes) in want {
            match rx.recv_timeout(Duration::from_secs(5)) {
                RecordRecv::Record(m) => assert_eq!(
                    (m.seq(), m.bytes()),
                    (s, bytes),
                    "crafted {crafted}: a forged record"
                ),
                other => panic!("crafted {crafted}: record {s}: {other:?}"),
            }
        }
        let mut all = r.subscribe(Start::Sequence(0));
        for s in 0..52 {
            match all.try_recv() {
                RecordRecv::Record(m) => assert_eq!(m.seq(), s, "crafted {crafted}"),
                other => panic!("crafted {crafted}: record {s} from the start: {other:?}"),
            }
        }
        assert_eq!(all.stats().lost, 0);
    }
}

/// Once `try_recv` has said `Closed`, every later `try_recv` says `Closed` too, not `Empty`,
/// until a producer attaches (as on a bus); a record from the new producer is delivered.
#[test]
fn closed_stays_closed_until_a_producer_attaches() {
    let r = RecordsBuilder::new("p").bytes(RING).in_process().unwrap();
    let mut tx = r.publisher().unwrap();
    let mut rx = r.subscribe(Start::Next);
    tx.publish_bytes(b"last").unwrap();
    drop(tx);
    assert!(matches!(rx.try_recv(), RecordRecv::Record(m) if m.bytes() == b"last"));
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !matches!(rx.try_recv(), RecordRecv::Closed) {
        assert!(
            std::time::Instant::now() < deadline,
            "never reported Closed"
        );
    }
    for i in 0..5000 {
        let got = rx.try_recv();
        assert!(
            matches!(got, RecordRecv::Closed),
            "poll {i} after Closed: {got:?}"
        );
    }
    assert!(
        matches!(rx.recv(), RecordRecv::Closed),
        "recv agrees at once"
    );
    let mut tx = r.publisher().unwrap();
    support::poll::await_cond(Duration::from_secs(10), "the attach", || {
        match rx.try_recv() {
            RecordRecv::Empty => true,
            RecordRecv::Closed => false,
            other => panic!("nothing was published: {other:?}"),
        }
    });
    tx.publish_bytes(b"again").unwrap();
    assert!(matches!(rx.try_recv(), RecordRecv::Record(m) if m.seq() == 1));
}

/// `open_or_create` creates a records segment that is not there, opens one with the same ring
/// size (its records intact), and refuses one of another size with `GeometryMismatch`.
#[test]
fn open_or_create_creates_then_opens_the_same_ring_and_refuses_another_size() {
    let name = TestBus::new("rec-ooc");
    let first = RecordsBuilder::new(name.name())
        .bytes(8192)
        .open_or_create()
        .unwrap();
    let mut rx = first.subscribe(Start::Oldest);
    first.publisher().unwrap().publish_bytes(b"kept").unwrap();
    let again = RecordsBuilder::new(name.name())
        .bytes(8192)
        .open_or_create()
        .unwrap();
    assert_eq!(again.ring_bytes(), 8192);
    assert!(matches!(rx.try_recv(), RecordRecv::Record(r) if r.bytes() == b"kept"));
    let err = RecordsBuilder::new(name.name())
        .bytes(16384)
        .open_or_create()
        .unwrap_err();
    assert!(
        matches!(err, shmbus::Error::GeometryMismatch { .. }),
        "{err}"
    );
    assert_eq!(Records::open(name.name()).unwrap().ring_bytes(), 8192);
}

#[test]
fn ring_used_grows_with_records_and_stops_at_the_ring_size() {
    let t = shmbus_testkit::TestBus::new("records-used");
    let r = shmbus::records::RecordsBuilder::new(t.name())
        .bytes(4096)
        .create()
        .unwrap();
    assert_eq!(r.ring_used(), 0);
    let mut tx = r.publisher().unwrap();
    tx.publish_bytes(&[1u8; 100]).unwrap();
    // A 16-byte header and 100 bytes rounded up to whole words.
    assert_eq!(r.ring_used(), 16 + 104);
    for _ in 0..100 {
        tx.publish_bytes(&[2u8; 100]).unwrap();
    }
    // Wrapped: the producer keeps up to an eighth of the ring (its slack, design §15) and the
    // record being written clear of the oldest intact record.
    let used = r.ring_used();
    assert!((4096 - 4096 / 8 - 2 * 120..=4096).contains(&used), "{used}");
}
