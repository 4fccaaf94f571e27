//! Readiness descriptors and `recv_async` of records subscribers (docs/design.md §14): readable
//! after a publish and not before, every record in order, laps with the exact loss, a closed
//! segment reported, and futures dropped mid-wait lose nothing.
// Readiness needs real threads and system calls: not built under loom.
#![cfg(not(loom))]

use shmbus_testkit as support;

use std::time::Duration;

use shmbus::records::{RecordRecv, RecordsBuilder};
use shmbus::Start;
use support::poll::{readable, wait_readable};
use support::TestBus;

#[test]
fn record_readiness_is_not_readable_before_a_publish_and_is_after() {
    let t = TestBus::new("ra-ready");
    let rec = RecordsBuilder::new(t.name())
        .bytes(64 * 1024)
        .create()
        .unwrap();
    let mut tx = rec.publisher().unwrap();
    let mut rx = rec.subscribe(Start::Next).into_readiness().unwrap();
    assert!(matches!(rx.try_recv(), RecordRecv::Empty), "arms");
    assert!(
        !readable(&rx, Duration::ZERO),
        "armed and empty: not readable"
    );
    let publisher = std::thread::spawn(move || {
        tx.publish_record(3, b"news").unwrap();
        tx
    });
    wait_readable(&rx, "after a publish");
    match rx.try_recv() {
        RecordRecv::Record(r) => {
            assert_eq!((r.seq(), r.type_id(), r.bytes()), (0, 3, &b"news"[..]))
        }
        other => panic!("expected the record, got {other:?}"),
    }
    assert!(matches!(rx.try_recv(), RecordRecv::Empty));
    let tx = publisher.join().unwrap();
    drop(tx);
    wait_readable(&rx, "when closed");
    assert!(matches!(rx.try_recv(), RecordRecv::Closed));
}

#[cfg(feature = "tokio")]
mod with_tokio {
    use super::*;

    use shmbus::records::RecordEvent;
    use support::poll::HANG_GUARD;

    /// Record `i`'s bytes: a length that varies with `i` (0 to 300), each byte derived from `i`.
    fn record(i: u64) -> Vec<u8> {
        let len = (i * 37 % 301) as usize;
        (0..len).map(|k| (i as usize + k) as u8).collect()
    }

    /// A publisher thread publishes records of varied sizes, waiting (without sleeping as a
    /// signal) for the subscriber to keep up so that nothing is lapped; `recv_async` must get
    /// each of them, whole and in order.
    #[tokio::test]
    async fn recv_async_gets_every_record_in_order() {
        use std::sync::atomic::{AtomicU64, Ordering};
        use std::sync::Arc;
        const N: u64 = 5_000;
        let t = TestBus::new("ra-order");
        let rec = RecordsBuilder::new(t.name())
            .bytes(64 * 1024)
            .create()
            .unwrap();
        let mut tx = rec.publisher().unwrap();
        let mut rx = rec.subscribe(Start::Next);
        let received = Arc::new(AtomicU64::new(0));
        let seen = Arc::clone(&received);
        let publisher = std::thread::spawn(move || {
            for i in 0..N {
                tx.publish_record(i as u32, &record(i)).unwrap();
                // At most 32 records ahead: far from a lap of this ring.
                while seen.load(Ordering::Acquire) + 32 < i {
                    std::thread::yield_now();
                }
            }
            tx
        });
        for i in 0..N {
            let ev = tokio::time::timeout(HANG_GUARD, rx.recv_async())
                .await
                .expect("woken")
                .unwrap();
            assert_eq!(
                ev,
                Some(RecordEvent::Record {
                    seq: i,
                    type_id: i as u32,
                    bytes: record(i)
                })
            );
            received.store(i + 1, Ordering::Release);
        }
        drop(publisher.join().unwrap());
        assert_eq!(rx.stats().received, N);
        assert_eq!(rx.stats().lost, 0);
        let closed = tokio::time::timeout(HANG_GUARD, rx.recv_async())
            .await
            .expect("closed is reported");
        assert_eq!(closed.unwrap(), None);
    }

    /// The subscriber waits, then the publisher laps it; `recv_async` reports exactly as many
    /// lost records as precede the oldest intact one (which a fresh subscriber from the oldest
    /// finds), then delivers the rest in order.
    #[tokio::test]
    async fn recv_async_reports_a_lap_with_the_exact_count_then_the_rest() {
        const N: u64 = 2_000;
        let t = TestBus::new("ra-lap");
        let rec = RecordsBuilder::new(t.name()).bytes(4096).create().unwrap();
        let mut tx = rec.publisher().unwrap();
        let mut rx = rec.subscribe(Start::Next);
        let mut early = Box::pin(rx.recv_async());
        assert!(
            std::future::poll_fn(|cx| std::task::Poll::Ready(early.as_mut().poll(cx)))
                .await
                .is_pending(),
            "nothing yet: it waits"
        );
        for i in 0..N {
            tx.publish_record(0, &i.to_ne_bytes()).unwrap();
        }
        let ev = tokio::time::timeout(HANG_GUARD, early)
            .await
            .expect("woken")
            .unwrap();
        let mut oldest = rec.subscribe(Start::Oldest);
        let RecordRecv::Record(first) = oldest.try_recv() else {
            panic!("a record is intact");
        };
        let first = first.seq();
        assert!(first > 0, "the ring was lapped");
        assert_eq!(ev, Some(RecordEvent::Lapped { lost: first }));
        for seq in first..N {
            let ev = rx.recv_async().await.unwrap();
            assert_eq!(
                ev,
                Some(RecordEvent::Record {
                    seq,
                    type_id: 0,
                    bytes: seq.to_ne_bytes().to_vec()
                })
            );
        }
        assert_eq!(rx.stats().received + rx.stats().lost, N);
    }

    use std::future::Future;

    /// A publisher thread publishes in bursts with pauses; every receive is a `select!` against
    /// a short timer, which drops `recv_async` whenever it waits through a pause. Every record
    /// must still arrive exactly once, in order.
    #[tokio::test]
    async fn a_recv_async_dropped_while_waiting_loses_nothing() {
        const N: u64 = 2_000;
        let t = TestBus::new("ra-cancel");
        let rec = RecordsBuilder::new(t.name())
            .bytes(1 << 20)
            .create()
            .unwrap();
        let mut tx = rec.publisher().unwrap();
        let mut rx = rec.subscribe(Start::Next);
        let publisher = std::thread::spawn(move || {
            for i in 0..N {
                tx.publish_bytes(&record(i)).unwrap();
                if i % 100 == 99 {
                    // A pause longer than the timer below, so that some receives are dropped.
                    std::thread::sleep(Duration::from_millis(5));
                }
            }
            tx
        });
        let (mut next, mut cancelled) = (0u64, 0u64);
        while next < N {
            tokio::select! {
                r = rx.recv_async() => match r.unwrap() {
                    Some(RecordEvent::Record { seq, bytes, .. }) => {
                        assert_eq!(seq, next, "in order, none lost or repeated");
                        assert_eq!(bytes, record(next));
                        next += 1;
                    }
                    other => panic!("unexpected {other:?} at {next}"),
                },
                _ = tokio::time::sleep(Duration::from_millis(1)) => cancelled += 1,
            }
            assert!(cancelled < 100_000, "stuck at {next}");
        }
        drop(publisher.join().unwrap());
        assert!(cancelled > 0, "some receives were dropped mid-wait");
        assert_eq!(rx.stats().received, N);
        assert_eq!(rx.stats().lost, 0);
    }
}
