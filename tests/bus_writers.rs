//! Multi-producer writer identity, repair and stalls (docs/design.md §5, §6), through the public
//! API on real `/dev/shm` buses. Each test pins a defect of the first multi-producer protocol:
//! a live writer's slot taken over or tombstoned, a dead writer's slot blamed on the producer
//! that reused its entry, a slow live writer's message counted lost and then delivered.

use shmbus_testkit as support;

use std::time::Duration;

use shmbus::{Bus, BusBuilder, Recv, Start, Wait};
use support::park::{park, Parked};
use support::{say, ChildProc, TestBus};

const ENTRY: &str = "child_entry";

#[test]
fn child_entry() {
    support::run_role(&[("dies-mid-write", dies_mid_write)]);
}

/// Child: attaches as a producer, starts a message, says so, and waits inside the write until it
/// is killed.
fn dies_mid_write() {
    let name: String = support::env("BUS");
    let bus = Bus::open(&name).unwrap();
    let mut tx = bus.publisher().unwrap();
    tx.publish_with(|w| {
        w.write_at(0, &[0xdd; 8]).unwrap();
        say(&format!("writing index={}", 0));
        loop {
            std::thread::park();
        }
    });
}

fn mp_bus(tag: &str, slots: u64) -> (TestBus, Bus) {
    let name = TestBus::new(tag);
    let bus = BusBuilder::new(name.name())
        .slots(slots)
        .capacity(16)
        .multi_producer()
        .create()
        .unwrap();
    (name, bus)
}

/// Runs `publish_with` on another thread, stopped after its first 8 bytes until released;
/// returns once it is stopped there.
fn paused_writer(bus: &Bus, byte: u8) -> Parked<Option<u64>> {
    let mut tx = bus.publisher().unwrap();
    park(move |gate| {
        tx.publish_with(|w| {
            w.write_at(0, &[byte; 8]).unwrap();
            gate.stop_here();
            w.write_at(8, &[byte; 8]).unwrap();
        })
        .map(|(seq, ())| seq)
    })
}

/// The original repro: producer A (entry 0) detaches; H (entry 1) is inside `publish_with` for
/// sequence 0; Z laps the ring. Z must not take H's slot (H is alive), so no subscriber ever
/// sees a message of half H's bytes and half Z's: Z gives up the sequence that lands on H's
/// slot and publishes at the next (docs/design.md §5, "Held slots").
#[test]
fn live_writers_slot_is_never_taken_over_so_no_message_tears() {
    let (_name, bus) = mp_bus("takeover", 8);
    let a = bus.publisher().unwrap(); // entry 0
    let h = paused_writer(&bus, 0xaa); // entry 1
    drop(a); // an unused entry: its claim word (0) must not name anyone
    let mut z = bus.publisher().unwrap();
    let mut dropped = 0;
    for _ in 0..8 {
        if z.publish_bytes(&[0xbb; 16]).unwrap().is_none() {
            dropped += 1;
        }
    }
    assert_eq!(dropped, 0, "Z routes around H's slot: nothing dropped");
    assert_eq!(bus.cursor(), 10, "H's 0, Z's 1..=7, 8 given up, Z's 9");
    assert_eq!(
        h.release(),
        Some(0),
        "H's message is published, not abandoned"
    );
    let mut rx = bus.subscribe(Start::Sequence(0));
    let mut seen = 0;
    loop {
        match rx.try_recv() {
            Recv::Message(m) => {
                let b = m.bytes();
                assert!(
                    b.iter().all(|&x| x == b[0]),
                    "torn message {:x?} at {}",
                    b,
                    m.seq()
                );
                seen += 1;
            }
            Recv::Lapped { .. } => {}
            Recv::Empty | Recv::Closed => break,
        }
    }
    assert_eq!(
        seen, 7,
        "H's message and Z's 2..=7 (Z's 9 took the slot of its 1)"
    );
    // Z's given-up sequence 8 is skipped (nobody names it), not waited for; then Z's 9.
    assert!(matches!(
        rx.recv_timeout(Duration::from_secs(10)),
        Recv::Lapped { lost: 1 }
    ));
    assert!(matches!(
        rx.recv_timeout(Duration::from_secs(10)),
        Recv::Message(m) if m.seq() == 9
    ));
}

/// A producer attaching while a live writer (entry 1) is inside `publish_with` for sequence 0
/// must not abandon that writer's slot.
#[test]
fn attaching_producer_never_abandons_a_live_writers_slot() {
    let (_name, bus) = mp_bus("attach", 8);
    let a = bus.publisher().unwrap();
    let h = paused_writer(&bus, 0x11); // entry 1
    drop(a);
    let mut early = bus.subscribe(Start::Oldest);
    let late = bus.publisher().unwrap();
    assert_eq!(late.stats().repaired, 0);
    assert!(matches!(early.try_recv(), Recv::Empty));
    assert_eq!(h.release(), Some(0));
    match early.recv_timeout(Duration::from_secs(10)) {
        Recv::Message(m) => assert_eq!((m.seq(), m.bytes()), (0, &[0x11; 16][..])),
        other => panic!("expected H's message, got {other:?}"),
    }
}

/// A producer killed mid-write leaves its claim; the producer that reuses its entry repairs that
/// claim first, so the dead writer's slot is abandoned once and the new producer's messages are
/// never dropped on its account, lap after lap.
#[test]
fn reused_entry_repairs_the_dead_writers_claim_and_drops_nothing() {
    let (name, bus) = mp_bus("reuse", 4);
    let mut child = ChildProc::spawn(ENTRY, "dies-mid-write", &[("BUS", name.name().into())]);
    child.expect_line("writing index=0");
    child.kill9();
    let mut rx = bus.subscribe(Start::Oldest);
    let mut tx = bus.publisher().unwrap();
    assert_eq!(
        tx.producer_index(),
        0,
        "the dead producer's entry is reused"
    );
    assert_eq!(
        tx.stats().repaired,
        1,
        "its half-written sequence is abandoned"
    );
    for i in 0..12u8 {
        assert!(tx.publish_bytes(&[i; 16]).unwrap().is_some(), "message {i}");
    }
    assert_eq!(tx.stats().dropped, 0);
    let mut got = Vec::new();
    let mut lost = 0;
    loop {
        match rx.try_recv() {
            Recv::Message(m) => got.push(m.bytes()[0]),
            Recv::Lapped { lost: n } => lost += n,
            Recv::Empty | Recv::Closed => break,
        }
    }
    assert!(
        got.iter().all(|&b| b != 0xdd),
        "the dead writer's bytes were delivered"
    );
    assert_eq!(
        got,
        (8..12).collect::<Vec<u8>>(),
        "the last ring of messages"
    );
    assert_eq!(lost + got.len() as u64, 13, "received + lost == published");
}

/// A claimant proven dead is skipped by a sleeping subscriber (no wake-up comes from a death),
/// and the message after it is delivered.
#[test]
fn sleeping_subscriber_skips_a_dead_claimants_sequence() {
    let (name, bus) = mp_bus("dead-claim", 8);
    let mut rx = bus.subscribe(Start::Next).wait_strategy(Wait::Sleep);
    let mut child = ChildProc::spawn(ENTRY, "dies-mid-write", &[("BUS", name.name().into())]);
    child.expect_line("writing index=0");
    let mut tx = bus.publisher().unwrap();
    assert_eq!(tx.publish_bytes(&[7; 16]).unwrap(), Some(1));
    child.kill9();
    match rx.recv_timeout(Duration::from_secs(10)) {
        Recv::Lapped { lost: 1 } => {}
        other => panic!("expected the dead claimant's sequence skipped, got {other:?}"),
    }
    match rx.recv_timeout(Duration::from_secs(10)) {
        Recv::Message(m) => assert_eq!((m.seq(), m.bytes()), (1, &[7; 16][..])),
        other => panic!("expected message 1, got {other:?}"),
    }
}

/// A live writer descheduled mid-message is waited for under every wait strategy: its message
/// is delivered, never counted lost first.
#[test]
fn slow_live_writer_is_waited_for_not_counted_lost() {
    for wait in [Wait::Spin, Wait::Yield, Wait::Sleep] {
        let (_name, bus) = mp_bus("slow", 8);
        let mut rx = bus.subscribe(Start::Next).wait_strategy(wait);
        let h = paused_writer(&bus, 0x5a);
        let mut other = bus.publisher().unwrap();
        other.publish_bytes(&[1; 16]).unwrap();
        // The subscriber looks at the stalled sequence many times while its writer is paused.
        assert!(matches!(
            rx.recv_timeout(Duration::from_millis(120)),
            Recv::Empty
        ));
        h.release();
        match rx.recv_timeout(Duration::from_secs(10)) {
            Recv::Message(m) => assert_eq!((m.seq(), m.bytes()), (0, &[0x5a; 16][..])),
            other => panic!("{wait:?}: expected the slow writer's message, got {other:?}"),
        }
        assert_eq!(rx.stats().lost, 0, "{wait:?}");
    }
}
