//! Receiving in place (docs/design.md §6, "Reading in place"): `Subscriber::recv_with` and its
//! siblings run the caller's closure over the live slot and report a lap, exactly as
//! `try_recv` would, when a writer overwrote the slot during the closure, so that a torn view is
//! never taken for a message. Laps are forced deterministically (the closure publishes a ring
//! and one more), and across processes by a producer racing a slow checksumming closure.

use shmbus_testkit as support;

use std::cell::Cell;
use std::mem::offset_of;
use std::time::{Duration, Instant};

use shmbus::bus::{SlotView, Viewed};
use shmbus::{Bus, BusBuilder, LapPolicy, Recv, Start, Wait};
use support::alloc::{allocations_during, Counting};
use support::{check_payload, env, field, make, make_payload, say, ChildProc, TestBus};

#[global_allocator]
static GLOBAL: Counting = Counting;

const CHILD: &str = "child_entry";

/// Entry point of child processes; does nothing when run as an ordinary test.
#[test]
fn child_entry() {
    support::run_role(&[("producer", producer), ("viewer", viewer)]);
}

/// A 16-byte message of two words, both `tag`.
fn tagged(tag: u64) -> [u8; 16] {
    let mut b = [0u8; 16];
    b[..8].copy_from_slice(&tag.to_ne_bytes());
    b[8..].copy_from_slice(&tag.to_ne_bytes());
    b
}

/// What a copy-receive returned, as a view-receive's result without its value.
fn shape_of_recv(r: &Recv<'_>) -> Viewed<()> {
    match r {
        Recv::Message(m) => Viewed::Message {
            seq: m.seq(),
            value: (),
        },
        Recv::Empty => Viewed::Empty,
        Recv::Lapped { lost } => Viewed::Lapped { lost: *lost },
        Recv::Closed => Viewed::Closed,
    }
}

/// A view-receive's result without its value.
fn shape<R>(v: &Viewed<R>) -> Viewed<()> {
    match v {
        Viewed::Message { seq, .. } => Viewed::Message {
            seq: *seq,
            value: (),
        },
        Viewed::Empty => Viewed::Empty,
        Viewed::Lapped { lost } => Viewed::Lapped { lost: *lost },
        Viewed::Closed => Viewed::Closed,
    }
}

/// The closure publishes a whole ring and one more through a publisher of the same bus while it
/// holds the view: the slot it reads is rewritten under it. The view-receive must say `Lapped`
/// with the loss that a copy-receive of a twin subscriber reports after the same publishes,
/// under both lap policies, with both the non-blocking and the blocking receive; afterwards both
/// subscribers receive the same messages and their counters agree and balance.
#[test]
fn a_closure_that_laps_its_own_subscriber_is_told_lapped_with_the_copys_loss() {
    const SLOTS: u64 = 8;
    for policy in [LapPolicy::Oldest, LapPolicy::Newest] {
        for blocking in [false, true] {
            let t = TestBus::new("view-lap");
            let bus = make::bus(&t, SLOTS, 16);
            let mut tx = bus.publisher().unwrap();
            let mut copy = bus.subscribe(Start::Oldest).lap_policy(policy);
            let mut view = bus.subscribe(Start::Oldest).lap_policy(policy);
            for tag in 1..=3 {
                tx.publish_bytes(&tagged(tag)).unwrap();
            }
            let seen = Cell::new((None, None));
            let lap = |v: SlotView<'_>| {
                let first = v.load_word(0);
                for tag in 4..=3 + SLOTS + 1 {
                    tx.publish_bytes(&tagged(tag)).unwrap();
                }
                seen.set((first, v.load_word(1)));
                seen.get()
            };
            let got = if blocking {
                view.recv_with(lap)
            } else {
                view.try_recv_with(lap)
            };
            let case = format!("{policy:?}, blocking {blocking}");
            assert_eq!(
                seen.get(),
                (Some(1), Some(1 + SLOTS)),
                "{case}: the closure saw a torn message"
            );
            assert!(matches!(got, Viewed::Lapped { .. }), "{case}: {got:?}");
            assert_eq!(shape(&got), shape_of_recv(&copy.try_recv()), "{case}");
            assert_eq!(view.next_seq(), copy.next_seq(), "{case}");
            loop {
                let c = shape_of_recv(&copy.try_recv());
                let v = view.try_recv_with(|v| (v.load_word(0), v.load_word(1)));
                assert_eq!(shape(&v), c, "{case}");
                match v {
                    Viewed::Message { seq, value } => {
                        let tag = Some(seq + 1);
                        assert_eq!(value, (tag, tag), "{case}: message {seq} whole");
                    }
                    Viewed::Empty => break,
                    other => panic!("{case}: {other:?}"),
                }
            }
            let s = view.stats();
            assert_eq!(s, copy.stats(), "{case}");
            assert_eq!(s.received + s.lost, tx.stats().published, "{case}: balance");
            assert_eq!(s.laps, 1, "{case}");
        }
    }
}

#[test]
fn recv_with_waits_for_a_message_then_times_out_and_reports_closed() {
    let bus = make::in_process_bus(16, 64);
    let mut rx = bus.subscriber().wait_strategy(Wait::Sleep);
    // Attached before the first wait, so that it is not told "closed".
    let mut tx = bus.publisher().unwrap();
    let ran = Cell::new(0);
    let got = rx.recv_timeout_with(Duration::from_millis(5), |_| ran.set(ran.get() + 1));
    assert_eq!(
        (got, ran.get()),
        (Viewed::Empty, 0),
        "nothing yet: no closure"
    );
    std::thread::scope(|s| {
        s.spawn(move || {
            tx.publish_bytes(b"from another thread").unwrap();
            // The publisher goes with the thread: the bus is then closed.
        });
        let got = rx.recv_with(|v| {
            let mut b = vec![0u8; v.len()];
            v.copy_to(&mut b);
            b
        });
        assert_eq!(
            got,
            Viewed::Message {
                seq: 0,
                value: b"from another thread".to_vec()
            }
        );
    });
    let got = rx.recv_with(|_| ran.set(ran.get() + 1));
    assert_eq!((got, ran.get()), (Viewed::Closed, 0));
}

/// Receiving in place never touches the heap, laps included (a counting global allocator).
#[test]
fn receiving_in_place_does_not_allocate() {
    let t = TestBus::new("view-alloc");
    let bus = make::bus(&t, 16, 256);
    let mut tx = bus.publisher().unwrap();
    let mut rx = bus.subscribe(Start::Oldest);
    let payload = [7u8; 256];
    let ((received, lost), allocations) = allocations_during(|| {
        let (mut received, mut lost) = (0u64, 0u64);
        for i in 0..5_000usize {
            // Bursts of up to 40 messages on 16 slots: laps as well as messages.
            for _ in 0..i % 41 {
                tx.publish_bytes(&payload[..8 + i % 240]).unwrap();
            }
            for blocking in [false, true] {
                let sum = |v: SlotView<'_>| v.words().fold(0u64, u64::wrapping_add);
                let got = if blocking {
                    rx.recv_timeout_with(Duration::ZERO, sum)
                } else {
                    rx.try_recv_with(sum)
                };
                match got {
                    Viewed::Message { value, .. } => {
                        assert_ne!(value, 0);
                        received += 1;
                    }
                    Viewed::Lapped { lost: n } => lost += n,
                    Viewed::Empty | Viewed::Closed => {}
                }
            }
        }
        (received, lost)
    });
    assert_eq!(allocations, 0, "allocations on the in-place receive");
    assert!(received > 0 && lost > 0, "received {received}, lost {lost}");
    assert!(received + lost <= tx.stats().published);
}

#[derive(Clone, Copy, Debug, PartialEq, shmbus::bytemuck::Pod, shmbus::bytemuck::Zeroable)]
#[bytemuck(crate = "shmbus::bytemuck")]
#[repr(C)]
struct Quote {
    bid: u64,
    ask: u64,
    size: u32,
    venue: u32,
}

/// On a typed bus the closure gets a typed view: the whole value by atomic loads (`load`), or
/// one field at its offset (`read_at`), without the subscriber's copy.
#[test]
fn a_typed_view_loads_the_value_or_one_field() {
    let bus = BusBuilder::new("in-process")
        .message_type::<Quote>()
        .slots(8)
        .in_process()
        .unwrap();
    let mut tx = bus.publisher().unwrap();
    let mut rx = bus.subscriber();
    let q = Quote {
        bid: 100,
        ask: 101,
        size: 7,
        venue: 3,
    };
    tx.publish(&q).unwrap();
    tx.publish(&Quote { ask: 250, ..q }).unwrap();
    let got = rx.try_recv_with(|v: SlotView<'_, Quote>| (v.len(), v.load()));
    assert_eq!(
        got,
        Viewed::Message {
            seq: 0,
            value: (std::mem::size_of::<Quote>(), q)
        }
    );
    let got = rx.try_recv_with(|v| v.read_at::<u64>(offset_of!(Quote, ask)));
    assert_eq!(
        got,
        Viewed::Message {
            seq: 1,
            value: Some(250)
        }
    );
    assert_eq!(rx.stats().received, 2);
}

// Across processes: a producer process publishes checksummed 1 KiB messages as fast as it can
// on a small ring; a subscriber process receives in place on a read-only mapping with a closure
// that checksums every byte it sees, slowly enough to be lapped mid-closure again and again.
// A view reported valid whose checksum fails would be a torn message delivered.

const MP_LEN: usize = 1024;

fn bus_name() -> String {
    std::env::var("BUS").expect("BUS")
}

/// Publishes COUNT checksummed messages of MP_LEN bytes.
fn producer() {
    let bus = Bus::open(&bus_name()).unwrap();
    let mut tx = bus.publisher().unwrap();
    let count = env::<u64>("COUNT");
    let mut buf = vec![0u8; MP_LEN];
    for c in 0..count {
        make_payload(&mut buf, 0, c);
        tx.publish_bytes(&buf).unwrap();
    }
    say(&format!("published={}", tx.stats().published));
}

/// Receives in place from sequence 0 until COUNT sequences are accounted for, checking in the
/// closure every byte of what it sees.
fn viewer() {
    let bus = Bus::open_read_only(&bus_name()).unwrap();
    let mut rx = bus.subscribe(Start::Sequence(0)).wait_strategy(Wait::Yield);
    let count = env::<u64>("COUNT");
    let (mut received, mut lost, mut torn_delivered, mut disorder) = (0u64, 0u64, 0u64, 0u64);
    // Closures that saw a bad checksum (a torn view) and were reported lapped, as they must be.
    let torn_caught = Cell::new(0u64);
    let mut last = None::<u64>;
    let deadline = Instant::now() + Duration::from_secs(60);
    while received + lost < count && Instant::now() < deadline {
        let got = rx.recv_timeout_with(Duration::from_millis(100), |v| {
            let mut b = [0u8; MP_LEN];
            let n = v.copy_to(&mut b);
            let whole = check_payload(&b[..n]);
            if whole.is_none() {
                torn_caught.set(torn_caught.get() + 1);
            }
            whole
        });
        match got {
            Viewed::Message { seq, value } => {
                received += 1;
                match value {
                    // The counter is the sequence number: one producer from sequence 0.
                    Some((0, c)) if c == seq => {}
                    _ => torn_delivered += 1,
                }
                if last.is_some_and(|l| seq <= l) {
                    disorder += 1;
                }
                last = Some(seq);
            }
            Viewed::Lapped { lost: n } => lost += n,
            Viewed::Empty | Viewed::Closed => {}
        }
    }
    let s = rx.stats();
    assert_eq!((s.received, s.lost), (received, lost), "counters agree");
    // A torn view that was reported lapped was counted once as caught; it cannot also have been
    // delivered, so it shows only here.
    say(&format!(
        "received={received} lost={lost} torn_delivered={torn_delivered} torn_caught={} \
         disorder={disorder} laps={}",
        torn_caught.get(),
        s.laps
    ));
}

#[test]
fn a_producer_process_lapping_slow_views_never_gets_a_torn_view_delivered() {
    let t = TestBus::new("view-mp");
    let count = 200_000u64;
    let _bus = make::bus(&t, 8, MP_LEN);
    let env = [("BUS", t.name().to_owned()), ("COUNT", count.to_string())];
    let mut viewer = ChildProc::spawn(CHILD, "viewer", &env);
    let mut producer = ChildProc::spawn(CHILD, "producer", &env);
    let p = producer.next_line().expect("producer's result line");
    producer.wait_success(Duration::from_secs(120));
    let v = viewer.next_line().expect("viewer's result line");
    viewer.wait_success(Duration::from_secs(120));
    eprintln!("{p}\n{v}");
    assert_eq!(field(&p, "published"), count);
    assert_eq!(
        (field(&v, "torn_delivered"), field(&v, "disorder")),
        (0, 0),
        "{v}"
    );
    assert_eq!(field(&v, "received") + field(&v, "lost"), count, "{v}");
    assert!(field(&v, "received") > 0, "{v}");
}
