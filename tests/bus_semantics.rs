//! Semantics users of tokio's broadcast channel, crossbeam and jonhoo/bus expect, pinned through
//! the public API on in-process buses (docs/design.md §6, §8).

use shmbus_testkit as support;

use std::time::Duration;

use shmbus::{LapPolicy, Recv, Start};
use support::make::in_process_bus;

fn bus(slots: u64) -> shmbus::Bus {
    in_process_bus(slots, 32)
}

/// A start sequence at or past the sequence limit waits forever: it never aliases message 0
/// (its version arithmetic once wrapped to 0's).
#[test]
fn start_sequence_far_in_the_future_never_aliases_an_old_message() {
    let bus = bus(4);
    let mut tx = bus.publisher().unwrap();
    tx.publish_bytes(b"zero").unwrap();
    for s in [1u64 << 61, 1 << 62, 1 << 63, u64::MAX] {
        let mut rx = bus.subscribe(Start::Sequence(s));
        for _ in 0..3000 {
            assert!(matches!(rx.try_recv(), Recv::Empty), "start {s}");
        }
    }
}

/// `Duration::MAX` means "no deadline", as in std and crossbeam, not a panic.
#[test]
fn recv_timeout_with_duration_max_waits_without_limit() {
    let bus = bus(4);
    let mut tx = bus.publisher().unwrap();
    let mut rx = bus.subscribe(Start::Next);
    tx.publish_bytes(b"m").unwrap();
    assert!(matches!(rx.recv_timeout(Duration::MAX), Recv::Message(m) if m.bytes() == b"m"));
    drop(tx);
    assert!(matches!(rx.recv_timeout(Duration::MAX), Recv::Closed));
}

/// `try_recv` reports `Closed` (like tokio's `TryRecvError::Closed`) once everything intact is
/// read and no producer is attached; it asks about producers only at a cursor check (once in 1024
/// empty polls), at most every few milliseconds.
#[test]
fn try_recv_reports_closed_after_draining_a_bus_without_producers() {
    let bus = bus(4);
    let mut tx = bus.publisher().unwrap();
    let mut rx = bus.subscribe(Start::Next);
    tx.publish_bytes(b"last").unwrap();
    drop(tx);
    assert!(matches!(rx.try_recv(), Recv::Message(m) if m.bytes() == b"last"));
    // It asks the kernel about producers at most every few milliseconds, at a cursor check.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let mut closed = false;
    while !closed && std::time::Instant::now() < deadline {
        closed = matches!(rx.try_recv(), Recv::Closed);
    }
    assert!(closed, "Closed while polling");
    // Not final: a new producer continues the sequence.
    let mut tx = bus.publisher().unwrap();
    tx.publish_bytes(b"again").unwrap();
    assert!(matches!(rx.try_recv(), Recv::Message(m) if m.seq() == 1));
}

/// Bytes `publish_with` skipped below the message length read as zero, never as an older
/// message's bytes.
#[test]
fn publish_with_gaps_read_as_zero() {
    let bus = bus(1);
    let mut tx = bus.publisher().unwrap();
    let mut rx = bus.subscribe(Start::Next);
    tx.publish_bytes(&[0xff; 32]).unwrap();
    assert!(matches!(rx.try_recv(), Recv::Message(_)));
    tx.publish_with(|w| {
        w.write_at(0, b"a").unwrap();
        w.write_at(20, b"b").unwrap();
    })
    .unwrap();
    let Recv::Message(m) = rx.try_recv() else {
        panic!("expected the message")
    };
    let mut want = [0u8; 21];
    want[0] = b'a';
    want[20] = b'b';
    assert_eq!(m.bytes(), want);
}

/// `Start::Next` is "from now on"; `LapPolicy::Newest` is "the newest already published": the two
/// meanings the old name `Newest` mixed.
#[test]
fn start_next_waits_for_new_messages_while_lap_policy_newest_resumes_at_the_last_one() {
    let bus = bus(4);
    let mut tx = bus.publisher().unwrap();
    tx.publish_bytes(b"old").unwrap();
    let mut rx = bus.subscribe(Start::Next);
    assert!(matches!(rx.try_recv(), Recv::Empty));
    let mut lagging = bus.subscribe(Start::Oldest).lap_policy(LapPolicy::Newest);
    for i in 0..10u8 {
        tx.publish_bytes(&[i]).unwrap();
    }
    assert!(matches!(lagging.try_recv(), Recv::Lapped { lost: 10 }));
    assert!(matches!(lagging.try_recv(), Recv::Message(m) if m.bytes() == [9]));
    assert!(matches!(rx.try_recv(), Recv::Lapped { lost: 6 }));
}

/// A panicking fill abandons its sequence: subscribers count it lost and receive the next one.
#[test]
fn panicking_fill_is_counted_lost_never_delivered() {
    let bus = bus(4);
    let mut tx = bus.publisher().unwrap();
    let mut rx = bus.subscribe(Start::Next);
    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        tx.publish_with(|w| {
            w.write_at(0, b"half").unwrap();
            panic!("fill failed");
        })
    }));
    assert!(r.is_err());
    tx.publish_bytes(b"next").unwrap();
    assert!(matches!(rx.try_recv(), Recv::Lapped { lost: 1 }));
    assert!(matches!(rx.try_recv(), Recv::Message(m) if m.bytes() == b"next"));
}
