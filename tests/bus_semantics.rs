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
    let mut rx = read_last_of_a_closed_bus(&bus);
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

/// Polls `try_recv` until it says `Closed` (it asks about producers only every few
/// milliseconds, at a cursor check), failing after 10 s.
/// A subscriber that read the one message of a bus whose producer then left.
fn read_last_of_a_closed_bus(bus: &shmbus::Bus) -> shmbus::Subscriber {
    let mut tx = bus.publisher().unwrap();
    let mut rx = bus.subscribe(Start::Next);
    tx.publish_bytes(b"last").unwrap();
    drop(tx);
    assert!(matches!(rx.try_recv(), Recv::Message(m) if m.bytes() == b"last"));
    rx
}

fn poll_until_closed(rx: &mut shmbus::Subscriber) {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !matches!(rx.try_recv(), Recv::Closed) {
        assert!(
            std::time::Instant::now() < deadline,
            "never reported Closed"
        );
    }
}

/// Once `try_recv` (or `recv`) has said `Closed`, every later `try_recv` says `Closed` too, not
/// `Empty` (as tokio's broadcast and crossbeam's channels do), until a producer attaches; then
/// the sequence continues.
#[test]
fn closed_stays_closed_until_a_producer_attaches() {
    let bus = bus(4);
    let mut rx = read_last_of_a_closed_bus(&bus);
    poll_until_closed(&mut rx);
    for i in 0..5000 {
        let r = rx.try_recv();
        assert!(matches!(r, Recv::Closed), "poll {i} after Closed: {r:?}");
    }
    assert!(matches!(rx.recv(), Recv::Closed), "recv agrees at once");
    assert!(
        matches!(rx.try_recv(), Recv::Closed),
        "and so does the next try_recv"
    );
    // A producer attaches: within the look's period the subscriber sees it and says `Empty`.
    let mut tx = bus.publisher().unwrap();
    support::poll::await_cond(Duration::from_secs(10), "the attach", || {
        match rx.try_recv() {
            Recv::Empty => true,
            Recv::Closed => false,
            other => panic!("nothing was published: {other:?}"),
        }
    });
    tx.publish_bytes(b"again").unwrap();
    assert!(matches!(rx.try_recv(), Recv::Message(m) if m.seq() == 1));
}

/// A message published by a producer that attached and left again ends `Closed` at once: the
/// message is delivered, then `Closed` comes back only after a new look.
#[test]
fn a_message_after_closed_is_delivered_then_closed_again() {
    let bus = bus(4);
    let mut rx = bus.subscribe(Start::Next);
    poll_until_closed(&mut rx);
    let mut tx = bus.publisher().unwrap();
    tx.publish_bytes(b"m").unwrap();
    drop(tx);
    assert!(matches!(rx.try_recv(), Recv::Message(m) if m.bytes() == b"m"));
    poll_until_closed(&mut rx);
    assert!(matches!(rx.try_recv(), Recv::Closed));
}

/// Lapped again before reading the resume point, on a bus that is then quiet: an `Oldest`
/// subscriber resumes at the oldest intact message and loses exactly the overwritten ones,
/// `(P - N) - s` (tokio's `lag_again_before_reading_retained_messages`); the jump to the
/// newest is only for a lap that happens while it resyncs.
#[test]
fn lapped_again_before_reading_resumes_at_the_oldest_on_a_quiet_bus() {
    let bus = bus(2);
    let mut tx = bus.publisher().unwrap();
    let mut rx = bus.subscribe(Start::Oldest);
    for i in 0..3u8 {
        tx.publish_bytes(&[i]).unwrap();
    }
    assert!(matches!(rx.try_recv(), Recv::Lapped { lost: 1 }));
    assert_eq!(rx.next_seq(), 1, "resumes at the oldest intact");
    for i in 3..6u8 {
        tx.publish_bytes(&[i]).unwrap();
    }
    // P = 6 published, N = 2 slots, s = 1: (6 - 2) - 1 = 3 lost.
    let r = rx.try_recv();
    assert!(matches!(r, Recv::Lapped { lost: 3 }), "{r:?}");
    assert!(matches!(rx.try_recv(), Recv::Message(m) if m.seq() == 4 && m.bytes() == [4]));
    assert!(matches!(rx.try_recv(), Recv::Message(m) if m.seq() == 5 && m.bytes() == [5]));
    assert!(matches!(rx.try_recv(), Recv::Empty));
    let st = rx.stats();
    assert_eq!((st.received, st.lost, st.laps), (2, 4, 2));
    assert_eq!(st.received + st.lost, 6);
}
