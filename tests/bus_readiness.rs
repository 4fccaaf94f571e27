//! The readiness descriptor of a subscriber (docs/design.md §14): readable on a publish from
//! another process, on a lap, on a closed bus, on read-only handles; never a lost edge when a
//! drain races a publish; and a publisher pays nothing while nobody is armed.
// Readiness needs real threads and system calls: not built under loom.
#![cfg(not(loom))]

use shmbus_testkit as support;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use shmbus::{Bus, BusBuilder, Publisher, Readiness, Recv, Start};
use support::forge::Forger;
use support::poll::{readable, wait_readable, HANG_GUARD};
use support::{await_cond, env, on_go, ChildProc, TestBus};

const CHILD: &str = "child_entry";

/// Entry point of child processes; does nothing when run as an ordinary test.
#[test]
fn child_entry() {
    support::run_role(&[("publish_on_go", publish_on_go)]);
}

/// Attaches as the producer of BUS, says `ready`, publishes one message when told `go`.
fn publish_on_go() {
    let bus = Bus::open(&env::<String>("BUS")).unwrap();
    let mut tx = bus.publisher().unwrap();
    on_go("published", || {
        tx.publish_bytes(b"from afar").unwrap();
    });
}

/// A bus of the default shape, its producer, and a subscriber's readiness handle from the next
/// message on.
fn bus_with_readiness(tag: &str) -> (TestBus, Bus, Publisher, Readiness) {
    let name = TestBus::new(tag);
    let bus = BusBuilder::new(name.name()).create().unwrap();
    let tx = bus.publisher().unwrap();
    let rx = bus.subscribe(Start::Next).into_readiness().unwrap();
    (name, bus, tx, rx)
}

/// The waiter flag of a bus, read from its segment (docs/design.md §2: byte 1096, word 137).
fn waiter_flag(bus: &TestBus) -> u64 {
    Forger::new(bus).load(137)
}

#[test]
fn readiness_becomes_readable_on_a_publish_from_another_process() {
    let name = TestBus::new("rd-proc");
    let bus = BusBuilder::new(name.name()).create().unwrap();
    let mut rx = bus.subscribe(Start::Next).into_readiness().unwrap();
    let mut child = ChildProc::spawn(CHILD, "publish_on_go", &[("BUS", name.0.clone())]);
    child.expect_line("ready");
    assert!(matches!(rx.try_recv(), Recv::Empty), "nothing yet: arms");
    assert!(
        !readable(&rx, Duration::ZERO),
        "armed and empty: not readable"
    );
    child.tell("go");
    wait_readable(&rx, "the other process published");
    match rx.try_recv() {
        Recv::Message(m) => assert_eq!(m.bytes(), b"from afar"),
        other => panic!("expected the message, got {other:?}"),
    }
    child.expect_line("published");
    child.tell("exit");
    child.wait_success(HANG_GUARD);
}

#[test]
fn readiness_becomes_readable_on_a_lap_with_the_exact_loss() {
    let name = TestBus::new("rd-lap");
    let bus = BusBuilder::new(name.name()).slots(8).create().unwrap();
    let mut tx = bus.publisher().unwrap();
    let mut rx = bus.subscribe(Start::Next).into_readiness().unwrap();
    assert!(matches!(rx.try_recv(), Recv::Empty));
    for i in 0..20u64 {
        tx.publish_bytes(&i.to_ne_bytes()).unwrap();
    }
    wait_readable(&rx, "lapped");
    match rx.try_recv() {
        Recv::Lapped { lost } => assert_eq!(lost, 12, "20 published, the last 8 intact"),
        other => panic!("expected a lap, got {other:?}"),
    }
    let mut next = 12;
    while let Recv::Message(m) = rx.try_recv() {
        assert_eq!(m.seq(), next);
        next += 1;
    }
    assert_eq!(next, 20);
}

#[test]
fn readiness_becomes_readable_once_when_the_bus_closes() {
    let (_name, bus, tx, mut rx) = bus_with_readiness("rd-closed");
    assert!(matches!(rx.try_recv(), Recv::Empty));
    drop(tx);
    wait_readable(&rx, "the only producer left");
    assert!(matches!(rx.try_recv(), Recv::Closed));
    // Reported: the next receive says `Closed` again (docs/design.md §6, "Closed") and stays
    // armed, and a new publish still wakes it.
    assert!(matches!(rx.try_recv(), Recv::Closed));
    assert!(
        !readable(&rx, Duration::from_millis(20)),
        "the closure is signalled once, not again for the repeated Closed"
    );
    a_returning_producer_wakes_it(&bus, &mut rx);
}

#[test]
fn readiness_is_armed_from_creation() {
    let (_name, _bus, mut tx, mut rx) = bus_with_readiness("rd-created");
    assert!(
        !readable(&rx, Duration::ZERO),
        "nothing published: not readable"
    );
    // No receive before the first wait, as an event loop that registers the descriptor first.
    tx.publish_bytes(b"first").unwrap();
    wait_readable(&rx, "published before any receive");
    assert!(matches!(rx.try_recv(), Recv::Message(m) if m.bytes() == b"first"));
}

#[test]
fn readiness_stays_armed_after_it_reports_closed() {
    let (_name, bus, tx, mut rx) = bus_with_readiness("rd-closed-rearm");
    drop(tx);
    wait_readable(&rx, "the only producer left");
    assert!(matches!(rx.try_recv(), Recv::Closed));
    // A loop that stops draining at `Closed` (no receive after it) is woken by a new producer.
    assert!(
        !readable(&rx, Duration::from_millis(30)),
        "closed once, reported once"
    );
    a_returning_producer_wakes_it(&bus, &mut rx);
}

#[test]
fn read_only_readiness_becomes_readable_on_publish() {
    let name = TestBus::new("rd-ro");
    let bus = BusBuilder::new(name.name()).create().unwrap();
    let mut tx = bus.publisher().unwrap();
    let ro = Bus::open_read_only(name.name()).unwrap();
    let mut rx = ro.subscribe(Start::Next).into_readiness().unwrap();
    assert!(matches!(rx.try_recv(), Recv::Empty));
    tx.publish_bytes(b"ro").unwrap();
    wait_readable(&rx, "published, seen by polling");
    assert!(matches!(rx.try_recv(), Recv::Message(m) if m.bytes() == b"ro"));
    assert_eq!(
        waiter_flag(&name),
        0,
        "a read-only handle never raises the flag"
    );
}

#[test]
fn publisher_pays_nothing_while_no_registration_is_armed() {
    // A readiness handle is armed from the start (its waker may raise the flag at once), and
    // armed again by a receive that finds nothing.
    let (name, _bus, mut tx, mut rx) = bus_with_readiness("rd-flag");
    assert!(matches!(rx.try_recv(), Recv::Empty));
    await_cond(HANG_GUARD, "the waker raises the flag", || {
        waiter_flag(&name) != 0
    });
    tx.publish_bytes(b"one").unwrap();
    assert_eq!(waiter_flag(&name), 0, "the publish that wakes clears it");
    wait_readable(&rx, "published");
    // Not drained to Empty, so not re-armed: the waker leaves the flag down.
    assert!(matches!(rx.try_recv(), Recv::Message(_)));
    for _ in 0..100 {
        tx.publish_bytes(b"more").unwrap();
        assert_eq!(waiter_flag(&name), 0);
    }
}

/// A publisher thread publishes each message as soon as the previous one was received, so each
/// publish races the receiver's drain-to-empty and re-arm. A lost edge leaves the receiver
/// waiting on a descriptor that never turns readable.
#[test]
fn draining_never_loses_an_edge_to_a_racing_publish() {
    const N: u64 = 10_000;
    let name = TestBus::new("rd-race");
    let bus = BusBuilder::new(name.name()).slots(64).create().unwrap();
    let mut rx: Readiness = bus.subscribe(Start::Next).into_readiness().unwrap();
    let mut tx = bus.publisher().unwrap();
    let received = Arc::new(AtomicU64::new(0));
    let seen = Arc::clone(&received);
    let publisher = std::thread::spawn(move || {
        for i in 0..N {
            tx.publish_bytes(&i.to_ne_bytes()).unwrap();
            while seen.load(Ordering::Acquire) <= i {
                std::thread::yield_now();
            }
        }
    });
    let (mut next, mut waits) = (0, 0u64);
    while next < N {
        loop {
            match rx.try_recv() {
                Recv::Message(m) => {
                    assert_eq!(m.seq(), next);
                    next += 1;
                    received.store(next, Ordering::Release);
                }
                Recv::Empty => break,
                other => panic!("unexpected {other:?} at {next}"),
            }
        }
        if next < N {
            waits += 1;
            assert!(
                readable(&rx, HANG_GUARD),
                "edge lost: not readable while message {next} was published"
            );
        }
    }
    publisher.join().unwrap();
    assert_eq!(rx.subscriber().stats().received, N);
    assert!(waits > 0, "the receiver waited on the descriptor");
}

#[test]
fn in_process_readiness_becomes_readable_on_publish() {
    let bus = BusBuilder::new("unused").in_process().unwrap();
    let mut tx = bus.publisher().unwrap();
    let mut rx = bus.subscribe(Start::Next).into_readiness().unwrap();
    assert!(matches!(rx.try_recv(), Recv::Empty));
    let publisher = std::thread::spawn(move || {
        tx.publish_bytes(b"heap").unwrap();
        tx
    });
    wait_readable(&rx, "published on the heap bus");
    assert!(matches!(rx.try_recv(), Recv::Message(m) if m.bytes() == b"heap"));
    drop(publisher.join().unwrap());
}

/// Two subscribers of one bus handle share its waker; arming the second while the waker sleeps
/// for the first still wakes the second.
#[test]
fn two_registrations_on_one_handle_are_both_signalled() {
    let name = TestBus::new("rd-two");
    let bus = BusBuilder::new(name.name()).create().unwrap();
    let mut tx = bus.publisher().unwrap();
    let mut a = bus.subscribe(Start::Next).into_readiness().unwrap();
    assert!(matches!(a.try_recv(), Recv::Empty));
    await_cond(
        HANG_GUARD,
        "the waker sleeps on the bus for the first",
        || waiter_flag(&name) != 0,
    );
    let mut b = bus.subscribe(Start::Next).into_readiness().unwrap();
    assert!(matches!(b.try_recv(), Recv::Empty));
    tx.publish_bytes(b"both").unwrap();
    wait_readable(&a, "first subscriber");
    wait_readable(&b, "second subscriber");
    assert!(matches!(a.try_recv(), Recv::Message(_)));
    assert!(matches!(b.try_recv(), Recv::Message(_)));
}

/// A producer attaches again and publishes: the descriptor becomes readable and the receive
/// gets the message.
fn a_returning_producer_wakes_it(bus: &shmbus::Bus, rx: &mut Readiness) {
    let mut tx = bus.publisher().unwrap();
    tx.publish_bytes(b"again").unwrap();
    wait_readable(&*rx, "a producer came back and published");
    assert!(matches!(rx.try_recv(), Recv::Message(m) if m.bytes() == b"again"));
}
