//! Readiness descriptors and `recv_async` / `send_async` of the work queue (docs/design.md §14):
//! readable after a send from another process and not before, writable after a receive drains a
//! full queue, every item exactly once across two async receivers, and futures dropped mid-wait
//! lose and send nothing.
// Readiness needs real threads and system calls: not built under loom.
#![cfg(not(loom))]

use shmbus_testkit as support;

use std::time::Duration;

use shmbus::{Queue, QueueReceiverReadiness, SendError};
use support::make;
use support::poll::{readable, wait_readable, HANG_GUARD};
use support::{env, on_go, ChildProc, TestBus};

const CHILD: &str = "child_entry";

/// Entry point of child processes; does nothing when run as an ordinary test.
#[test]
fn child_entry() {
    support::run_role(&[("send_on_go", send_on_go)]);
}

/// Attaches a sender to QUEUE, says `ready`, sends one item when told `go`.
fn send_on_go() {
    let q = Queue::open(&env::<String>("QUEUE")).unwrap();
    let mut tx = q.sender().unwrap();
    on_go("sent", || tx.try_send(b"from afar").unwrap());
}

/// A queue of 8 items of 16 bytes, a receiver's descriptor on it, and a child process whose
/// sender is ready to send one item when told `go`.
fn queue_with_a_sender_process(tag: &str) -> (TestBus, Queue, QueueReceiverReadiness, ChildProc) {
    let t = TestBus::new(tag);
    let q = make::queue(&t, 8, 16);
    let rx = q.receiver().unwrap().into_readiness().unwrap();
    let mut child = ChildProc::spawn(CHILD, "send_on_go", &[("QUEUE", t.0.clone())]);
    child.expect_line("ready");
    (t, q, rx, child)
}

#[test]
fn receiver_readiness_is_not_readable_before_a_send_from_another_process_and_is_after() {
    let (_t, _q, mut rx, mut child) = queue_with_a_sender_process("qa-proc");
    assert_eq!(rx.try_recv(), None, "nothing yet: arms");
    assert!(
        !readable(&rx, Duration::ZERO),
        "armed and empty: not readable"
    );
    child.tell("go");
    wait_readable(&rx, "the other process sent");
    assert_eq!(rx.try_recv(), Some(&b"from afar"[..]));
    child.expect_line("sent");
    child.tell("exit");
    child.wait_success(HANG_GUARD);
    assert_eq!(rx.try_recv(), None);
    assert_eq!(rx.receiver().stats().received, 1);
}

#[test]
fn sender_readiness_of_a_full_queue_turns_readable_when_a_receiver_takes_an_item() {
    let t = TestBus::new("qa-space");
    let q = make::queue(&t, 2, 8);
    let mut tx = q.sender().unwrap().into_readiness().unwrap();
    let mut rx = q.receiver().unwrap();
    tx.try_send(b"a").unwrap();
    tx.try_send(b"b").unwrap();
    assert_eq!(tx.try_send(b"c"), Err(SendError::Full(&b"c"[..])), "arms");
    assert!(
        !readable(&tx, Duration::ZERO),
        "armed and full: not readable"
    );
    let taker = std::thread::spawn(move || {
        assert_eq!(rx.try_recv(), Some(&b"a"[..]));
        rx
    });
    wait_readable(&tx, "a receiver freed a slot");
    tx.try_send(b"c").unwrap();
    let mut rx = taker.join().unwrap();
    assert_eq!(rx.try_recv(), Some(&b"b"[..]));
    assert_eq!(rx.try_recv(), Some(&b"c"[..]));
    let err = tx.try_send(b"123456789").unwrap_err();
    assert!(matches!(err, SendError::TooLarge { capacity: 8, .. }));
}

/// A sender thread sends each item as soon as the previous one was received, so each send races
/// the receiver's drain-to-empty and re-arm. A lost edge leaves the receiver waiting on a
/// descriptor that never turns readable.
#[test]
fn draining_a_queue_never_loses_an_edge_to_a_racing_send() {
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::Arc;
    const N: u64 = 5_000;
    let q = Queue::builder("unused")
        .item_type::<u64>()
        .capacity(16)
        .in_process()
        .unwrap();
    let mut rx = q.receiver().unwrap().into_readiness().unwrap();
    let mut tx = q.sender().unwrap();
    let received = Arc::new(AtomicU64::new(0));
    let seen = Arc::clone(&received);
    let sender = std::thread::spawn(move || {
        for i in 0..N {
            tx.send(i).unwrap();
            while seen.load(Ordering::Acquire) <= i {
                std::thread::yield_now();
            }
        }
    });
    let (mut next, mut waits) = (0, 0u64);
    while next < N {
        while let Some(&v) = rx.try_recv() {
            assert_eq!(v, next);
            next += 1;
            received.store(next, Ordering::Release);
        }
        if next < N {
            waits += 1;
            assert!(
                readable(&rx, HANG_GUARD),
                "edge lost: not readable while item {next} was sent"
            );
        }
    }
    sender.join().unwrap();
    assert_eq!(rx.receiver().stats().received, N);
    assert!(waits > 0, "the receiver waited on the descriptor");
}

/// docs/design.md §11, "Closed": a receiver's descriptor turns readable when the last sender
/// (here a process that is killed) leaves an empty queue, once; and again for an item when a
/// sender comes back.
#[test]
fn receiver_readiness_turns_readable_when_the_last_sender_is_gone() {
    let (_t, q, mut rx, mut child) = queue_with_a_sender_process("qr-closed");
    assert_eq!(rx.try_recv(), None);
    assert!(!rx.receiver().is_closed());
    child.kill9();
    wait_readable(&rx, "the only sender was killed");
    assert_eq!(rx.try_recv(), None);
    assert!(rx.receiver().is_closed());
    assert!(
        !readable(&rx, Duration::from_millis(30)),
        "closed once, reported once"
    );
    let mut tx = q.sender().unwrap();
    tx.try_send(b"again").unwrap();
    wait_readable(&rx, "a sender came back and sent");
    assert_eq!(rx.try_recv(), Some(&b"again"[..]));
}

#[cfg(feature = "tokio")]
mod with_tokio {
    use super::*;

    /// `recv_async` returns `Ok(None)` once the queue is closed, after the items sent before.
    #[tokio::test]
    async fn recv_async_returns_none_once_the_queue_is_closed() {
        let t = TestBus::new("qa-closed");
        let q = make::typed_queue::<u64>(&t, 8);
        let mut rx = q.receiver().unwrap();
        let tx = {
            let mut tx = q.sender().unwrap();
            tx.send(7).unwrap();
            tx
        };
        let closer = std::thread::spawn(move || drop(tx));
        let first = tokio::time::timeout(HANG_GUARD, rx.recv_async()).await;
        assert_eq!(first.expect("woken").unwrap(), Some(7));
        closer.join().unwrap();
        let end = tokio::time::timeout(HANG_GUARD, rx.recv_async()).await;
        assert_eq!(end.expect("woken").unwrap(), None);
    }

    use std::future::{poll_fn, Future};
    use std::task::Poll;

    use shmbus::Error;

    /// Polls `fut` once.
    async fn poll_once<F: Future + Unpin>(fut: &mut F) -> Poll<F::Output> {
        poll_fn(|cx| Poll::Ready(std::pin::Pin::new(&mut *fut).poll(cx))).await
    }

    /// A sender thread sends N numbered items through a small queue, then one stop item per
    /// receiver; two receivers in tokio tasks each take items until a stop. Every item must be
    /// received exactly once, and each receiver sees its share in increasing order.
    #[tokio::test]
    async fn two_async_receivers_get_every_item_exactly_once() {
        const N: u64 = 20_000;
        const STOP: u64 = u64::MAX;
        let t = TestBus::new("qa-two");
        let q = make::typed_queue::<u64>(&t, 16);
        let mut tx = q.sender().unwrap();
        let task = |mut rx: shmbus::QueueReceiver<u64>| async move {
            let mut got = Vec::new();
            loop {
                let v = tokio::time::timeout(HANG_GUARD, rx.recv_async())
                    .await
                    .expect("woken")
                    .unwrap()
                    .expect("the sender stays attached until the end");
                if v == STOP {
                    return got;
                }
                assert!(got.last().map_or(true, |&l| l < v), "in order");
                got.push(v);
            }
        };
        let a = tokio::spawn(task(q.receiver().unwrap()));
        let b = tokio::spawn(task(q.receiver().unwrap()));
        let sender = std::thread::spawn(move || {
            for i in 0..N {
                tx.send(i).unwrap();
            }
            tx.send(STOP).unwrap();
            tx.send(STOP).unwrap();
        });
        let (a, b) = (a.await.unwrap(), b.await.unwrap());
        sender.join().unwrap();
        let mut all: Vec<u64> = a.iter().chain(&b).copied().collect();
        all.sort_unstable();
        assert_eq!(all.len() as u64, N, "none lost, none twice");
        assert!(all.iter().copied().eq(0..N), "every item exactly once");
        assert!(q.is_empty());
    }

    #[tokio::test]
    async fn send_async_on_a_full_queue_completes_when_a_receiver_drains() {
        let t = TestBus::new("qa-full");
        let q = make::typed_queue::<u64>(&t, 4);
        let mut tx = q.sender().unwrap();
        for i in 0..4u64 {
            tx.try_send(i).unwrap();
        }
        let mut rx = q.receiver().unwrap();
        let mut send = Box::pin(tx.send_async(4));
        assert!(poll_once(&mut send).await.is_pending(), "full: it waits");
        let drainer = std::thread::spawn(move || {
            let v = *rx.recv().unwrap();
            (v, rx)
        });
        tokio::time::timeout(HANG_GUARD, send)
            .await
            .expect("woken by the drain")
            .unwrap();
        let (first, mut rx) = drainer.join().unwrap();
        assert_eq!(first, 0);
        let rest: Vec<u64> = rx.try_iter().collect();
        assert_eq!(rest, [1, 2, 3, 4]);
    }

    #[tokio::test]
    async fn a_send_async_dropped_while_waiting_sends_nothing() {
        let t = TestBus::new("qa-dropsend");
        let q = make::typed_queue::<u64>(&t, 2);
        let mut tx = q.sender().unwrap();
        tx.try_send(0).unwrap();
        tx.try_send(1).unwrap();
        {
            let mut send = Box::pin(tx.send_async(99));
            assert!(poll_once(&mut send).await.is_pending());
        }
        let mut rx = q.receiver().unwrap();
        assert_eq!(rx.try_recv(), Some(&0));
        tx.send_async(2).await.unwrap();
        assert_eq!(rx.try_recv(), Some(&1));
        assert_eq!(
            rx.try_recv(),
            Some(&2),
            "the dropped send's 99 never went in"
        );
        assert_eq!(rx.try_recv(), None);
        assert_eq!(tx.stats().sent, 3);
    }

    /// A sender thread sends in bursts with pauses; every receive is a `select!` against a
    /// short timer, which drops `recv_async` whenever it waits through a pause. Every item must
    /// still arrive exactly once, in order.
    #[tokio::test]
    async fn a_recv_async_dropped_while_waiting_loses_nothing() {
        const N: u64 = 2_000;
        let t = TestBus::new("qa-cancel");
        let q = make::typed_queue::<u64>(&t, 64);
        let mut tx = q.sender().unwrap();
        let mut rx = q.receiver().unwrap();
        let sender = std::thread::spawn(move || {
            for i in 0..N {
                tx.send(i).unwrap();
                if i % 100 == 99 {
                    // A pause longer than the timer below, so that some receives are dropped.
                    std::thread::sleep(Duration::from_millis(5));
                }
            }
        });
        let (mut next, mut cancelled) = (0u64, 0u64);
        while next < N {
            tokio::select! {
                r = rx.recv_async() => {
                    assert_eq!(r.unwrap(), Some(next), "in order, none lost or repeated");
                    next += 1;
                }
                _ = tokio::time::sleep(Duration::from_millis(1)) => cancelled += 1,
            }
            assert!(cancelled < 100_000, "stuck at {next}");
        }
        sender.join().unwrap();
        assert!(cancelled > 0, "some receives were dropped mid-wait");
        assert_eq!(rx.stats().received, N);
        assert_eq!(rx.try_recv(), None);
    }

    #[tokio::test]
    async fn raw_send_async_hands_back_an_item_too_large_with_the_numbers() {
        let t = TestBus::new("qa-large");
        let q = make::queue(&t, 2, 4);
        let mut tx = q.sender().unwrap();
        let err = tx.send_async(b"12345").await.unwrap_err();
        assert_eq!(err.item, b"12345");
        assert!(
            matches!(
                err.error,
                Error::MessageTooLarge {
                    len: 5,
                    capacity: 4
                }
            ),
            "{}",
            err.error
        );
        tx.send_async(b"1234").await.unwrap();
        assert_eq!(q.len(), 1);
    }

    #[test]
    fn queue_recv_async_outside_a_runtime_is_an_error_not_a_panic() {
        let t = TestBus::new("qa-nort");
        let q = Queue::builder(t.name()).capacity(2).create().unwrap();
        let mut rx = q.receiver().unwrap();
        let err = futures_now(rx.recv_async()).expect("ready at once");
        assert!(matches!(err, Err(Error::Io { .. })));
    }

    /// Polls `fut` once with a no-op waker, outside any runtime.
    fn futures_now<F: Future>(fut: F) -> Option<F::Output> {
        struct Noop;
        impl std::task::Wake for Noop {
            fn wake(self: std::sync::Arc<Self>) {}
        }
        let waker = std::task::Waker::from(std::sync::Arc::new(Noop));
        let mut cx = std::task::Context::from_waker(&waker);
        let mut fut = std::pin::pin!(fut);
        match fut.as_mut().poll(&mut cx) {
            Poll::Ready(v) => Some(v),
            Poll::Pending => None,
        }
    }
}
