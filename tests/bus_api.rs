//! The public API against real `/dev/shm` segments, in one process: creation and opening errors,
//! start positions, lap semantics, blocking receives and closing (docs/design.md §6).

use shmbus_testkit as support;

use std::os::unix::fs::PermissionsExt;
use std::time::Duration;

use shmbus::{Bus, BusBuilder, Error, Event, LapPolicy, ProducerMode, Recv, Start, Wait};
use support::forge::Forger;
use support::make;
use support::TestBus;

fn recv_seq(r: Recv<'_>) -> Result<(u64, Vec<u8>), String> {
    match r {
        Recv::Message(m) => Ok((m.seq(), m.bytes().to_vec())),
        other => Err(format!("{other:?}")),
    }
}

#[test]
fn create_open_and_exchange_a_message() {
    let t = TestBus::new("roundtrip");
    let bus = make::bus(&t, 8, 32);
    let mut tx = bus.publisher().unwrap();
    let other = Bus::open(t.name()).unwrap();
    assert_eq!(
        (other.slots(), other.capacity(), other.producer_mode()),
        (8, 32, ProducerMode::Single)
    );
    let mut rx = other.subscriber();
    assert!(matches!(rx.try_recv(), Recv::Empty));
    assert_eq!(tx.publish_bytes(b"abc").unwrap(), Some(0));
    assert_eq!(recv_seq(rx.try_recv()).unwrap(), (0, b"abc".to_vec()));
    assert!(matches!(rx.try_recv(), Recv::Empty));
    assert_eq!(bus.header().published(), 1);
}

#[test]
fn second_create_is_already_exists() {
    let t = TestBus::new("exists");
    let _bus = BusBuilder::new(t.name()).slots(8).create().unwrap();
    assert!(matches!(
        BusBuilder::new(t.name()).slots(8).create(),
        Err(Error::AlreadyExists { .. })
    ));
}

#[test]
fn missing_bus_is_not_found() {
    let t = TestBus::new("missing");
    let err = Bus::open(t.name()).unwrap_err();
    assert!(matches!(err, Error::NotFound { .. }), "{err}");
    assert!(err.to_string().contains(t.name()));
}

#[test]
fn invalid_names_say_which_character() {
    for (name, needle) in [
        ("", "empty"),
        ("a/b", "'/'"),
        ("..", "starts with '.'"),
        ("bad name", "' '"),
        ("nul\0", "'\\0'"),
        ("café", "'é'"),
    ] {
        let err = Bus::open(name).unwrap_err();
        assert!(matches!(err, Error::InvalidName { .. }), "{name:?}: {err}");
        assert!(err.to_string().contains(needle), "{name:?}: {err}");
    }
    let long = "x".repeat(201);
    assert!(matches!(Bus::open(&long), Err(Error::InvalidName { .. })));
}

#[test]
fn slot_count_is_never_rounded() {
    for slots in [0, 3, 1000] {
        let err = BusBuilder::new("unused-name")
            .slots(slots)
            .in_process()
            .unwrap_err();
        assert!(matches!(err, Error::InvalidConfig(_)), "{slots}: {err}");
    }
}

#[test]
fn oversize_message_names_both_sizes() {
    let bus = make::in_process_bus(4, 16);
    let mut tx = bus.publisher().unwrap();
    let err = tx.publish_bytes(&[0; 17]).unwrap_err();
    assert!(matches!(
        err,
        Error::MessageTooLarge {
            len: 17,
            capacity: 16
        }
    ));
    assert_eq!(err.to_string(), "message is 17 bytes, at most 16 fit");
    assert_eq!(tx.stats().published, 0);
}

#[test]
fn single_producer_bus_refuses_a_second_live_producer() {
    let t = TestBus::new("sp");
    let bus = BusBuilder::new(t.name()).slots(8).create().unwrap();
    let first = bus.publisher().unwrap();
    let again = Bus::open(t.name()).unwrap();
    let err = again.publisher().unwrap_err();
    assert!(
        matches!(err, Error::ProducerExists { pid: Some(p), .. } if p == std::process::id()),
        "{err}"
    );
    assert!(bus.has_producers());
    drop(first);
    assert!(!bus.has_producers());
    let mut second = again.publisher().unwrap();
    assert_eq!(second.publish_bytes(b"x").unwrap(), Some(0));
}

#[test]
fn multi_producer_bus_accepts_several_producers() {
    let t = TestBus::new("mp");
    let bus = BusBuilder::new(t.name())
        .slots(8)
        .multi_producer()
        .create()
        .unwrap();
    let mut a = bus.publisher().unwrap();
    let mut b = Bus::open(t.name()).unwrap().publisher().unwrap();
    assert_ne!(a.producer_index(), b.producer_index());
    let mut rx = bus.subscribe(Start::Oldest);
    assert_eq!(a.publish_bytes(b"a").unwrap(), Some(0));
    assert_eq!(b.publish_bytes(b"b").unwrap(), Some(1));
    assert_eq!(recv_seq(rx.try_recv()).unwrap(), (0, b"a".to_vec()));
    assert_eq!(recv_seq(rx.try_recv()).unwrap(), (1, b"b".to_vec()));
    assert_eq!(bus.producers().len(), 2);
}

#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
#[repr(C)]
struct Tick {
    price: f64,
    qty: u64,
}

#[test]
fn typed_bus_refuses_another_type_of_the_same_size() {
    let t = TestBus::new("typed");
    let bus = BusBuilder::new(t.name())
        .message_type::<u64>()
        .create()
        .unwrap();
    assert_eq!(bus.capacity(), 8);
    let err = BusBuilder::new(t.name())
        .message_type::<i64>()
        .open()
        .unwrap_err();
    assert!(matches!(err, Error::TypeMismatch { .. }), "{err}");
    let msg = err.to_string();
    assert!(msg.contains("u64") && msg.contains("i64"), "{msg}");
    // A raw publisher may not write into a typed bus, a raw reader may read it.
    let raw = Bus::open(t.name()).unwrap();
    assert!(matches!(raw.publisher(), Err(Error::TypeMismatch { .. })));
    let mut tx = BusBuilder::new(t.name())
        .message_type::<u64>()
        .open()
        .unwrap()
        .publisher()
        .unwrap();
    let mut rx = raw.subscribe(Start::Oldest);
    tx.publish(&0x0102_0304_0506_0708);
    assert_eq!(
        recv_seq(rx.try_recv()).unwrap().1,
        0x0102_0304_0506_0708u64.to_ne_bytes()
    );
}

#[test]
fn typed_messages_round_trip_by_value() {
    let bus = BusBuilder::new("x")
        .message_type::<Tick>()
        .type_name("Tick")
        .slots(4)
        .in_process()
        .unwrap();
    assert_eq!(bus.message_type().name, "Tick");
    let mut tx = bus.publisher().unwrap();
    let mut rx = bus.subscriber();
    tx.publish(&Tick { price: 2.5, qty: 7 });
    match rx.try_recv() {
        Recv::Message(m) => assert_eq!((m.price, m.qty, m.seq()), (2.5, 7, 0)),
        other => panic!("{other:?}"),
    }
}

#[test]
fn open_or_create_adopts_only_a_matching_bus() {
    let t = TestBus::new("ooc");
    let a = BusBuilder::new(t.name())
        .slots(16)
        .capacity(64)
        .open_or_create()
        .unwrap();
    let b = BusBuilder::new(t.name())
        .slots(16)
        .capacity(64)
        .open_or_create()
        .unwrap();
    assert_eq!(a.header().created_ns, b.header().created_ns);
    let err = BusBuilder::new(t.name())
        .slots(32)
        .capacity(64)
        .open_or_create()
        .unwrap_err();
    assert!(matches!(err, Error::GeometryMismatch { .. }), "{err}");
}

#[test]
fn created_segment_mode_is_exact_whatever_the_umask() {
    let t = TestBus::new("mode");
    let _bus = BusBuilder::new(t.name()).create().unwrap();
    let mode = std::fs::metadata(format!("/dev/shm/shmbus.{}", t.name()))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
    let t2 = TestBus::new("mode640");
    let _bus = BusBuilder::new(t2.name())
        .permissions(0o640)
        .create()
        .unwrap();
    let mode = std::fs::metadata(format!("/dev/shm/shmbus.{}", t2.name()))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o640);
}

#[test]
fn read_only_handle_reads_but_cannot_publish() {
    let t = TestBus::new("ro");
    let bus = BusBuilder::new(t.name()).slots(8).create().unwrap();
    let ro = Bus::open_read_only(t.name()).unwrap();
    assert!(ro.is_read_only());
    assert!(matches!(ro.publisher(), Err(Error::ReadOnly { .. })));
    let mut rx = ro.subscriber();
    bus.publisher().unwrap().publish_bytes(b"hi").unwrap();
    assert_eq!(
        recv_seq(rx.recv_timeout(Duration::from_secs(5))).unwrap(),
        (0, b"hi".to_vec())
    );
}

#[test]
fn new_subscriber_sees_only_future_messages_unless_told() {
    let bus = make::in_process_bus(8, 8);
    let mut tx = bus.publisher().unwrap();
    for i in 0..5u8 {
        tx.publish_bytes(&[i]).unwrap();
    }
    let mut newest = bus.subscriber();
    let mut oldest = bus.subscribe(Start::Oldest);
    let mut last2 = bus.subscribe(Start::Last(2));
    let mut at3 = bus.subscribe(Start::Sequence(3));
    assert!(matches!(newest.try_recv(), Recv::Empty));
    assert_eq!(recv_seq(oldest.try_recv()).unwrap().0, 0);
    assert_eq!(recv_seq(last2.try_recv()).unwrap().0, 3);
    assert_eq!(recv_seq(at3.try_recv()).unwrap().0, 3);
    tx.publish_bytes(&[5]).unwrap();
    assert_eq!(recv_seq(newest.try_recv()).unwrap(), (5, vec![5]));
}

#[test]
fn oldest_after_wrap_is_a_full_ring_back() {
    let bus = make::in_process_bus(8, 8);
    let mut tx = bus.publisher().unwrap();
    for i in 0..20u64 {
        tx.publish_bytes(&i.to_ne_bytes()).unwrap();
    }
    let mut rx = bus.subscribe(Start::Oldest);
    let got: Vec<u64> = std::iter::from_fn(|| recv_seq(rx.try_recv()).ok().map(|m| m.0)).collect();
    assert_eq!(got, (12..20).collect::<Vec<_>>());
}

#[test]
fn lapped_subscriber_reports_exact_loss_and_resumes_at_oldest() {
    for published in [9u64, 16, 24, 1000, 100_003] {
        let bus = make::in_process_bus(8, 8);
        let mut tx = bus.publisher().unwrap();
        let mut rx = bus.subscriber();
        for i in 0..published {
            tx.publish_bytes(&i.to_ne_bytes()).unwrap();
        }
        // The subscriber expected 0; sequences 0..published-8 were overwritten.
        match rx.try_recv() {
            Recv::Lapped { lost } => assert_eq!(lost, published - 8, "published {published}"),
            other => panic!("published {published}: {other:?}"),
        }
        let mut received = 0;
        while let Ok((seq, body)) = recv_seq(rx.try_recv()) {
            assert_eq!(body, seq.to_ne_bytes());
            received += 1;
        }
        assert_eq!(received, 8);
        let s = rx.stats();
        assert_eq!((s.received + s.lost, s.laps), (published, 1));
    }
}

#[test]
fn newest_policy_resumes_at_the_newest_message() {
    let bus = make::in_process_bus(8, 8);
    let mut tx = bus.publisher().unwrap();
    let mut rx = bus.subscriber().lap_policy(LapPolicy::Newest);
    for i in 0..30u64 {
        tx.publish_bytes(&i.to_ne_bytes()).unwrap();
    }
    assert!(matches!(rx.try_recv(), Recv::Lapped { lost: 29 }));
    assert_eq!(recv_seq(rx.try_recv()).unwrap().0, 29);
    assert!(matches!(rx.try_recv(), Recv::Empty));
}

#[test]
fn publish_with_writes_in_place_and_a_panic_is_never_delivered() {
    for multi in [false, true] {
        let b = BusBuilder::new("x").slots(4).capacity(32);
        let bus = if multi { b.multi_producer() } else { b }
            .in_process()
            .unwrap();
        let mut tx = bus.publisher().unwrap();
        let mut rx = bus.subscriber();
        let (seq, ()) = tx
            .publish_with(|w| {
                w.write_at(3, b"def").unwrap();
                w.write_at(0, b"abc").unwrap();
                assert!(w.write_at(30, b"xyz").is_err());
            })
            .unwrap();
        assert_eq!(seq, 0);
        assert_eq!(recv_seq(rx.try_recv()).unwrap().1, b"abcdef");
        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            tx.publish_with(|w| {
                w.push(b"half").unwrap();
                panic!("producer bug");
            })
        }));
        assert!(r.is_err());
        // The half-written sequence 1 is published as abandoned: counted lost, never delivered.
        assert!(
            matches!(rx.try_recv(), Recv::Lapped { lost: 1 }),
            "multi={multi}"
        );
        // Its slot is free again: a whole lap more goes through it, in order.
        for i in 2..10u8 {
            tx.publish_bytes(&[i]).unwrap().unwrap();
            assert_eq!(
                recv_seq(rx.try_recv()).unwrap(),
                (i as u64, vec![i]),
                "multi={multi}"
            );
        }
        assert_eq!(tx.stats().dropped, 0);
    }
}

#[test]
fn recv_timeout_gives_up_with_empty() {
    let bus = BusBuilder::new("x").slots(4).in_process().unwrap();
    let _tx = bus.publisher().unwrap();
    for wait in [Wait::Spin, Wait::Yield, Wait::Sleep] {
        let mut rx = bus.subscriber().wait_strategy(wait);
        assert!(
            matches!(rx.recv_timeout(Duration::from_millis(20)), Recv::Empty),
            "{wait:?}"
        );
    }
}

#[test]
fn blocking_recv_wakes_for_a_message_from_another_thread() {
    let t = TestBus::new("wake");
    let bus = BusBuilder::new(t.name()).slots(64).create().unwrap();
    let mut tx = bus.publisher().unwrap();
    for wait in [Wait::Sleep, Wait::Yield, Wait::Spin] {
        let mut rx = bus.subscriber().wait_strategy(wait);
        let h = std::thread::spawn(move || match rx.recv() {
            Recv::Message(m) => Ok(m.bytes() == b"ping"),
            // The publisher may lap a receiver that was slow to start: still a wake-up.
            Recv::Lapped { .. } => Ok(true),
            other => Err(format!("{other:?}")),
        });
        // Publish until the receiver has taken one message: whenever it starts waiting, it wakes.
        while !h.is_finished() {
            tx.publish_bytes(b"ping").unwrap();
            std::thread::yield_now();
        }
        assert_eq!(h.join().unwrap(), Ok(true), "{wait:?}");
    }
}

#[test]
fn recv_reports_closed_after_draining_and_the_sequence_continues() {
    let t = TestBus::new("closed");
    let bus = BusBuilder::new(t.name()).slots(8).create().unwrap();
    let mut rx = bus.subscriber();
    let mut tx = bus.publisher().unwrap();
    tx.publish_bytes(b"last words").unwrap();
    drop(tx);
    assert_eq!(recv_seq(rx.recv()).unwrap(), (0, b"last words".to_vec()));
    assert!(matches!(rx.recv(), Recv::Closed));
    let mut tx = bus.publisher().unwrap();
    tx.publish_bytes(b"back").unwrap();
    assert_eq!(recv_seq(rx.recv()).unwrap(), (1, b"back".to_vec()));
}

#[test]
fn iterator_reports_laps_and_ends_when_closed() {
    let bus = make::in_process_bus(4, 8);
    let mut rx = bus.subscriber();
    {
        let mut tx = bus.publisher().unwrap();
        for i in 0..10u64 {
            tx.publish_bytes(&i.to_ne_bytes()).unwrap();
        }
    }
    let events: Vec<_> = rx.iter().collect();
    assert_eq!(events[0], Event::Lapped { lost: 6 });
    let seqs: Vec<u64> = events[1..]
        .iter()
        .map(|e| match e {
            Event::Message { seq, value } => {
                assert_eq!(value, &seq.to_ne_bytes());
                *seq
            }
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(seqs, vec![6, 7, 8, 9]);
}

#[test]
fn threads_on_a_multi_producer_bus_deliver_each_message_at_most_once_in_order() {
    const PER: u64 = 20_000;
    let bus = BusBuilder::new("x")
        .slots(1 << 16)
        .capacity(24)
        .multi_producer()
        .in_process()
        .unwrap();
    let mut rx = bus.subscriber();
    // Attached before the receiver waits, so that it never finds the bus without producers.
    let publishers: Vec<_> = (0..2).map(|_| bus.publisher().unwrap()).collect();
    let producers: Vec<_> = (0..2u64)
        .zip(publishers)
        .map(|(p, mut tx)| {
            std::thread::spawn(move || {
                let mut buf = [0u8; 24];
                for c in 0..PER {
                    support::make_payload(&mut buf, p, c);
                    tx.publish_bytes(&buf).unwrap();
                }
            })
        })
        .collect();
    let mut last = [None::<u64>; 2];
    let mut seen = 0;
    let mut lost = 0;
    while seen + lost < 2 * PER {
        match rx.recv_timeout(Duration::from_secs(10)) {
            Recv::Message(m) => {
                let (p, c) = support::check_payload(m.bytes()).expect("torn payload");
                assert!(
                    last[p as usize].is_none_or(|l| c > l),
                    "producer {p}: {c} after {:?}",
                    last[p as usize]
                );
                last[p as usize] = Some(c);
                seen += 1;
            }
            Recv::Lapped { lost: n } => lost += n,
            Recv::Empty | Recv::Closed => break,
        }
    }
    for p in producers {
        p.join().unwrap();
    }
    assert_eq!(seen + lost, 2 * PER);
    assert_eq!(lost, 0, "a 64k ring holds every message");
}

#[test]
fn slot_census_counts_written_slots() {
    let bus = BusBuilder::new("x").slots(8).in_process().unwrap();
    let mut tx = bus.publisher().unwrap();
    for _ in 0..3 {
        tx.publish_bytes(b"x").unwrap();
    }
    let c = bus.slot_census();
    assert_eq!((c.empty, c.written, c.being_written), (5, 3, 0));
}

#[test]
fn a_created_bus_carries_abi_2_the_bus_kind_and_passes_every_open_check() {
    use shmbus::inspect::CheckStatus;
    use shmbus::layout::{SegmentKind, ABI_VERSION};
    let t = TestBus::new("kind");
    let bus = BusBuilder::new(t.name())
        .slots(8)
        .message_type::<[u32; 3]>()
        .create()
        .unwrap();
    let h = Bus::open_read_only(t.name()).unwrap().header();
    assert_eq!((h.abi_version, ABI_VERSION), (2, 2));
    assert_eq!(h.kind(), Some(SegmentKind::Bus));
    let checks = shmbus::inspect::checks(t.name());
    let names: Vec<&str> = checks.iter().map(|c| c.name).collect();
    assert_eq!(
        names,
        [
            "name valid",
            "exists",
            "regular file",
            "readable",
            "owner",
            "mode",
            "magic",
            "size >= header",
            "header read",
            "ABI version",
            "kind",
            "geometry",
            "size matches",
            "type",
        ]
    );
    assert!(
        checks.iter().all(|c| c.status == CheckStatus::Pass),
        "{checks:?}"
    );
    let ty = checks.last().unwrap();
    assert!(ty.detail.contains("size 12"), "{ty:?}");
    drop(bus);
}

/// docs/design.md §3, "Sequence limits": the builder, the writers, open and `Start::Sequence`
/// keep one set of bounds. From the largest first sequence a bus publishes and reopens; at the
/// writers' limit publishes are dropped, the bus still opens, and `Start::Sequence` delivers
/// exactly the sequence asked for.
#[test]
fn publishing_stops_at_the_sequence_limit_and_the_bus_still_opens() {
    // The largest first sequence the builder accepts: publishes go on past 2^61 and the bus
    // reopens; a subscriber named at one of them gets that very one.
    let name = TestBus::new("seq-first-limit");
    let first = u64::MAX / 8;
    let bus = BusBuilder::new(name.name())
        .slots(8)
        .capacity(8)
        .first_sequence(first)
        .create()
        .unwrap();
    let mut tx = bus.publisher().unwrap();
    let seqs: Vec<u64> = (0..4u64)
        .map(|i| tx.publish_bytes(&i.to_ne_bytes()).unwrap().unwrap())
        .collect();
    assert_eq!(seqs, [first, first + 1, first + 2, first + 3]);
    let reopened = Bus::open(name.name()).expect("a bus the library wrote reopens");
    let mut rx = reopened.subscribe(Start::Sequence(seqs[3]));
    assert!(matches!(rx.try_recv(), Recv::Message(m) if m.seq() == seqs[3]));
    assert!(BusBuilder::new("unused")
        .first_sequence(first + 1)
        .in_process()
        .is_err());
    drop((tx, rx, reopened, bus));

    // At the writers' limit: forge a cursor two below it (the words a bus would hold after
    // 2^61 publishes), then publish with each producer mode.
    const SEQ_LIMIT: u64 = (1 << 62) - 1024;
    for multi in [false, true] {
        let name = TestBus::new(if multi {
            "seq-limit-mp"
        } else {
            "seq-limit-sp"
        });
        let bus = BusBuilder::new(name.name())
            .slots(8)
            .capacity(8)
            .producer_mode(if multi {
                ProducerMode::Multi
            } else {
                ProducerMode::Single
            })
            .create()
            .unwrap();
        set_cursor(&name, SEQ_LIMIT - 2);
        let bus = {
            drop(bus);
            Bus::open(name.name()).unwrap()
        };
        let mut rx = bus.subscribe(Start::Next);
        let mut tx = bus.publisher().unwrap();
        let got: Vec<Option<u64>> = (0..4u64)
            .map(|i| tx.publish_bytes(&i.to_ne_bytes()).unwrap())
            .collect();
        assert_eq!(
            got,
            [Some(SEQ_LIMIT - 2), Some(SEQ_LIMIT - 1), None, None],
            "multi {multi}"
        );
        assert_eq!(tx.stats().dropped, 2);
        // A producer attaching past the limit takes nothing either.
        if multi {
            let mut late = bus.publisher().unwrap();
            assert_eq!(late.publish_bytes(b"late").unwrap(), None);
        }
        let again = Bus::open(name.name()).expect("opens at the limit");
        assert!(again.header().cursor <= SEQ_LIMIT + 32);
        for want in [SEQ_LIMIT - 2, SEQ_LIMIT - 1] {
            assert!(matches!(rx.try_recv(), Recv::Message(m) if m.seq() == want));
        }
        let mut exact = again.subscribe(Start::Sequence(SEQ_LIMIT - 1));
        assert!(matches!(exact.try_recv(), Recv::Message(m) if m.seq() == SEQ_LIMIT - 1));
        let mut beyond = again.subscribe(Start::Sequence(u64::MAX));
        assert_eq!(beyond.next_seq(), SEQ_LIMIT, "waits at the limit");
        assert!(matches!(beyond.try_recv(), Recv::Empty));
    }
}

/// Stores `cursor` into a bus's cursor word (docs/design.md §2: byte 1024, word 128).
fn set_cursor(name: &TestBus, cursor: u64) {
    Forger::new(name).store(128, cursor);
}

/// `publish_loss`: the sequences it takes reach every subscriber as counted losses, never as
/// messages, between the messages around them.
#[test]
fn a_published_loss_is_counted_lost_by_every_subscriber() {
    let name = TestBus::new("publish-loss");
    let bus = BusBuilder::new(name.name()).slots(16).create().unwrap();
    let mut tx = bus.publisher().unwrap();
    let mut rx = bus.subscribe(Start::Next);
    assert_eq!(tx.publish_bytes(b"before").unwrap(), Some(0));
    assert_eq!(tx.publish_loss(3), 3);
    assert_eq!(tx.publish_bytes(b"after").unwrap(), Some(4));
    let mut seen = Vec::new();
    let mut lost = 0;
    loop {
        match rx.try_recv() {
            Recv::Message(m) => seen.push((m.seq(), m.bytes().to_vec())),
            Recv::Lapped { lost: n } => lost += n,
            Recv::Empty => break,
            Recv::Closed => panic!("the publisher is attached"),
        }
    }
    assert_eq!(seen, [(0, b"before".to_vec()), (4, b"after".to_vec())]);
    assert_eq!(lost, 3);
    let st = rx.stats();
    assert_eq!((st.received, st.lost), (2, 3));
}

/// docs/design.md §7, "Wake-up choice": the choice made at creation is stored in the bus, and a
/// sleeping subscriber of a `Wakeup::Fence` bus is woken by every publish of a producer in
/// another process (its handshake pairs fences, no `membarrier`).
#[test]
fn a_fence_wakeup_bus_records_its_choice_and_wakes_sleepers() {
    use shmbus::Wakeup;
    let name = TestBus::new("wakeup-fence");
    let bus = BusBuilder::new(name.name())
        .wakeup(Wakeup::Fence)
        .create()
        .unwrap();
    assert_eq!(bus.header().wakeup(), Some(Wakeup::Fence));
    let reopened = Bus::open(name.name()).unwrap();
    assert_eq!(reopened.header().wakeup(), Some(Wakeup::Fence));
    let plain = TestBus::new("wakeup-default");
    let default = BusBuilder::new(plain.name()).create().unwrap();
    assert_eq!(default.header().wakeup(), Some(Wakeup::Barrier));

    // A producer on its own mapping publishes at a pace that lets the subscriber fall asleep
    // before most messages (the pause is not synchronisation: any pace must deliver them all).
    const N: u64 = 200;
    let mut rx = reopened.subscribe(Start::Next).wait_strategy(Wait::Sleep);
    let producer = {
        let name = name.0.clone();
        std::thread::spawn(move || {
            let bus = Bus::open(&name).unwrap();
            let mut tx = bus.publisher().unwrap();
            for i in 0..N {
                // Past the receiver's 20 µs spin, so that it sleeps on most of them.
                std::thread::sleep(Duration::from_micros(100));
                tx.publish_bytes(&i.to_ne_bytes()).unwrap();
            }
        })
    };
    for i in 0..N {
        match rx.recv_timeout(Duration::from_secs(20)) {
            Recv::Message(m) => assert_eq!(m.bytes(), i.to_ne_bytes()),
            other => panic!("message {i}: {other:?}"),
        }
    }
    producer.join().unwrap();
}

/// `Bus::bytes_publisher`: tools and bindings publish a typed bus's values as bytes of exactly
/// the type's size, and subscribers of the type receive them.
#[test]
fn a_bytes_publisher_on_a_typed_bus_takes_exactly_one_value() {
    #[derive(Clone, Copy, Debug, PartialEq, shmbus::bytemuck::Pod, shmbus::bytemuck::Zeroable)]
    #[bytemuck(crate = "shmbus::bytemuck")]
    #[repr(C)]
    struct Pair {
        a: u32,
        b: u32,
    }
    let name = TestBus::new("bytes-publisher");
    let typed = BusBuilder::new(name.name())
        .message_type::<Pair>()
        .create()
        .unwrap();
    let mut rx = typed.subscribe(Start::Next);
    let raw = Bus::open(name.name()).unwrap();
    assert!(
        matches!(raw.publisher(), Err(Error::TypeMismatch { .. })),
        "the ordinary raw publisher still refuses a typed bus"
    );
    let mut tx = raw.bytes_publisher().unwrap();
    let mut value = [0u8; 8];
    value[..4].copy_from_slice(&7u32.to_ne_bytes());
    value[4..].copy_from_slice(&9u32.to_ne_bytes());
    assert_eq!(tx.publish_bytes(&value).unwrap(), Some(0));
    match tx.publish_bytes(&value[..7]) {
        Err(Error::WrongMessageSize {
            len: 7, size: 8, ..
        }) => {}
        other => panic!("a short value must be refused, got {other:?}"),
    }
    assert!(matches!(rx.try_recv(), Recv::Message(m) if *m == Pair { a: 7, b: 9 }));
    assert!(
        matches!(rx.try_recv(), Recv::Empty),
        "nothing else went out"
    );
    drop(tx);
    // On a raw bus it is the ordinary publisher: any length up to the capacity.
    let plain = TestBus::new("bytes-publisher-raw");
    let bus = BusBuilder::new(plain.name()).capacity(16).create().unwrap();
    let mut tx = bus.bytes_publisher().unwrap();
    assert_eq!(tx.publish_bytes(b"abc").unwrap(), Some(0));
}
