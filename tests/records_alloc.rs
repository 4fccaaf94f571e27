//! Publishing and receiving records never touch the heap, as the docs of `RecordPublisher`
//! promise: a counting global allocator proves it for `publish_bytes`, `publish_record` and
//! `publish_with`, and for `try_recv` through records, empty answers and laps.

use shmbus_testkit as support;

use shmbus::records::{RecordRecv, RecordsBuilder};
use shmbus::Start;
use support::alloc::{allocations_during, Counting};
use support::{check_payload, make_payload, TestBus};

#[global_allocator]
static GLOBAL: Counting = Counting;

const ROUNDS: u64 = 5_000;
/// Every this many rounds the slow subscriber drains: by then the ring has lapped it.
const SLOW_EVERY: u64 = 100;

/// What one subscriber saw.
#[derive(Debug, Default)]
struct Seen {
    received: u64,
    lost: u64,
    empty: u64,
}

/// Receives until `Empty`, checking every record (each one checks itself), and the sequence
/// numbers in order.
fn drain(rx: &mut shmbus::records::RecordSubscriber, seen: &mut Seen) {
    loop {
        match rx.try_recv() {
            RecordRecv::Record(m) => {
                assert_eq!(m.seq(), seen.received + seen.lost, "in order");
                assert_eq!(
                    check_payload(m.bytes()),
                    Some((1, m.seq())),
                    "a torn record"
                );
                seen.received += 1;
            }
            RecordRecv::Lapped { lost } => seen.lost += lost,
            RecordRecv::Empty => {
                seen.empty += 1;
                return;
            }
            RecordRecv::Closed => panic!("closed with a producer attached"),
        }
    }
}

#[test]
fn publish_and_try_recv_do_not_allocate() {
    let name = TestBus::new("rec-alloc");
    let r = RecordsBuilder::new(name.name())
        .bytes(4096)
        .create()
        .unwrap();
    let mut tx = r.publisher().unwrap();
    let mut fast = r.subscribe(Start::Oldest);
    let mut slow = r.subscribe(Start::Oldest);
    let (mut k, mut fast_seen, mut slow_seen) = (0u64, Seen::default(), Seen::default());
    let mut rounds = |n: u64, k: &mut u64, fast_seen: &mut Seen, slow_seen: &mut Seen| {
        let mut buf = [0u8; 400];
        for _ in 0..n {
            // Three ways to publish, sizes 24..=400 (across the wrap point now and then).
            let len = 24 + (*k as usize * 53) % 377;
            make_payload(&mut buf[..len], 1, *k);
            assert_eq!(tx.publish_bytes(&buf[..len]).unwrap(), *k);
            *k += 1;
            let len = 24 + (*k as usize * 31) % 377;
            make_payload(&mut buf[..len], 1, *k);
            assert_eq!(tx.publish_record(7, &buf[..len]).unwrap(), *k);
            *k += 1;
            let len = 24 + (*k as usize * 17) % 377;
            make_payload(&mut buf[..len], 1, *k);
            let (seq, ()) = tx
                .publish_with(len, |w| w.write_at(0, &buf[..len]).unwrap())
                .unwrap();
            assert_eq!(seq, *k);
            *k += 1;
            drain(&mut fast, fast_seen);
            if *k % (3 * SLOW_EVERY) == 0 {
                drain(&mut slow, slow_seen);
            }
        }
    };
    // Warm-up: whatever a handle sets up on first use is not on the paths the docs speak of.
    rounds(SLOW_EVERY, &mut k, &mut fast_seen, &mut slow_seen);
    let warm = k;
    let ((), allocations) =
        allocations_during(|| rounds(ROUNDS, &mut k, &mut fast_seen, &mut slow_seen));
    assert_eq!(
        allocations, 0,
        "allocations on publish / try_recv: fast {fast_seen:?}, slow {slow_seen:?}"
    );
    assert_eq!(k, warm + 3 * ROUNDS);
    assert_eq!(
        (fast_seen.received, fast_seen.lost),
        (k, 0),
        "{fast_seen:?}"
    );
    assert!(fast_seen.empty >= ROUNDS, "{fast_seen:?}");
    assert!(
        slow_seen.lost > 0,
        "the slow subscriber was never lapped: {slow_seen:?}"
    );
    assert!(slow_seen.received > 0, "{slow_seen:?}");
    assert_eq!(slow_seen.received + slow_seen.lost, k, "{slow_seen:?}");
}
