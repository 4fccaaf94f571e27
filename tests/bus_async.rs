//! `recv_async` and the event stream (feature `tokio`, docs/design.md §14): messages from another
//! thread's publisher, cancel-safety under `select!`, laps in the stream, closed buses.

use shmbus_testkit as support;

use std::future::poll_fn;
use std::pin::Pin;
use std::time::Duration;

use futures_core::Stream;
use shmbus::{BusBuilder, Event, Start};
use support::TestBus;

/// Long enough that only a lost wake-up reaches it: a hang guard, not a timing assertion.
const HANG_GUARD: Duration = Duration::from_secs(20);

/// The stream's next item (`StreamExt::next` without the futures crate).
async fn next<S: Stream + Unpin>(s: &mut S) -> Option<S::Item> {
    poll_fn(|cx| Pin::new(&mut *s).poll_next(cx)).await
}

#[tokio::test]
async fn recv_async_returns_a_message_published_from_another_thread() {
    let name = TestBus::new("as-msg");
    let bus = BusBuilder::new(name.name()).create().unwrap();
    let mut tx = bus.publisher().unwrap();
    let mut rx = bus.subscribe(Start::Next);
    let publisher = std::thread::spawn(move || {
        tx.publish_bytes(b"hello").unwrap();
        tx
    });
    let got = tokio::time::timeout(HANG_GUARD, rx.recv_async())
        .await
        .expect("woken")
        .unwrap();
    assert_eq!(
        got,
        Some(Event::Message {
            seq: 0,
            value: b"hello".to_vec()
        })
    );
    drop(publisher.join().unwrap());
}

/// A publisher thread publishes in bursts with pauses; every receive is a `select!` against a
/// short timer, which cancels `recv_async` whenever it waits through a pause. Every message must
/// still arrive exactly once, in order.
#[tokio::test]
async fn cancelled_recv_async_loses_nothing() {
    const N: u64 = 2_000;
    let name = TestBus::new("as-cancel");
    let bus = BusBuilder::new(name.name()).slots(4096).create().unwrap();
    let mut tx = bus.publisher().unwrap();
    let mut rx = bus.subscribe(Start::Next);
    let publisher = std::thread::spawn(move || {
        for i in 0..N {
            tx.publish_bytes(&i.to_ne_bytes()).unwrap();
            if i % 100 == 99 {
                // A pause longer than the timer below, so that some receives are cancelled.
                std::thread::sleep(Duration::from_millis(5));
            }
        }
        tx
    });
    let (mut next, mut cancelled) = (0u64, 0u64);
    while next < N {
        tokio::select! {
            r = rx.recv_async() => match r.unwrap() {
                Some(Event::Message { seq, value }) => {
                    assert_eq!(seq, next, "in order, none lost or repeated");
                    assert_eq!(value, next.to_ne_bytes());
                    next += 1;
                }
                other => panic!("unexpected {other:?} at {next}"),
            },
            _ = tokio::time::sleep(Duration::from_millis(1)) => cancelled += 1,
        }
        assert!(cancelled < 100_000, "stuck at {next}");
    }
    drop(publisher.join().unwrap());
    assert!(cancelled > 0, "some receives were cancelled mid-wait");
    assert_eq!(rx.stats().received, N);
    assert_eq!(rx.stats().lost, 0);
}

#[tokio::test]
async fn stream_yields_laps_then_messages() {
    let name = TestBus::new("as-lap");
    let bus = BusBuilder::new(name.name()).slots(8).create().unwrap();
    let mut tx = bus.publisher().unwrap();
    let mut rx = bus.subscribe(Start::Next);
    for i in 0..20u64 {
        tx.publish_bytes(&i.to_ne_bytes()).unwrap();
    }
    let mut stream = rx.stream().unwrap();
    let first = next(&mut stream).await.expect("an event").unwrap();
    assert_eq!(first, Event::Lapped { lost: 12 });
    for seq in 12..20u64 {
        let ev = next(&mut stream).await.expect("an event").unwrap();
        assert_eq!(
            ev,
            Event::Message {
                seq,
                value: seq.to_ne_bytes().to_vec()
            }
        );
    }
    // Then a message published while the stream waits.
    let publisher = std::thread::spawn(move || {
        tx.publish_bytes(b"late").unwrap();
        tx
    });
    let ev = tokio::time::timeout(HANG_GUARD, next(&mut stream))
        .await
        .expect("woken");
    assert!(matches!(ev, Some(Ok(Event::Message { seq: 20, .. }))));
    drop(publisher.join().unwrap());
}

#[tokio::test]
async fn recv_async_reports_a_closed_bus_and_the_stream_ends() {
    let name = TestBus::new("as-closed");
    let bus = BusBuilder::new(name.name()).create().unwrap();
    let mut tx = bus.publisher().unwrap();
    let mut rx = bus.subscribe(Start::Next);
    tx.publish_bytes(b"last").unwrap();
    drop(tx);
    let got = rx.recv_async().await.unwrap();
    assert!(matches!(got, Some(Event::Message { seq: 0, .. })));
    let closed = tokio::time::timeout(HANG_GUARD, rx.recv_async())
        .await
        .expect("closed is reported");
    assert_eq!(closed.unwrap(), None);
    let mut stream = rx.stream().unwrap();
    let mut tx = bus.publisher().unwrap();
    tx.publish_bytes(b"back").unwrap();
    drop(tx);
    let ev = next(&mut stream).await;
    assert!(matches!(ev, Some(Ok(Event::Message { seq: 1, .. }))));
    let end = tokio::time::timeout(HANG_GUARD, next(&mut stream))
        .await
        .expect("the stream ends");
    assert!(end.is_none());
}

#[test]
fn recv_async_outside_a_runtime_is_an_error_not_a_panic() {
    let name = TestBus::new("as-nort");
    let bus = BusBuilder::new(name.name()).create().unwrap();
    let mut rx = bus.subscribe(Start::Next);
    let err = rx.stream().unwrap_err();
    assert!(matches!(err, shmbus::Error::Io { .. }), "{err}");
}
