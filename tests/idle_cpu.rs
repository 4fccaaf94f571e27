//! A receive that waits on a quiet bus sleeps: it does not spin, whatever the slot it waits on
//! holds (docs/design.md §7). Measured as the time the waiting thread wanted a CPU (on CPU plus
//! waiting in the run queue, from `/proc/thread-self/schedstat`), so a loaded machine cannot hide
//! a spin; the bound is a fifth of the wait, far above what sleeping costs (well under 1 %) and
//! far below what spinning costs (the whole wait).
// Real threads, futexes and the scheduler's accounting: not under loom or miri.
#![cfg(not(loom))]

use shmbus_testkit as support;

use std::time::{Duration, Instant};

use shmbus::{Bus, BusBuilder, Publisher, Recv, Start, Wait};
use support::make;
use support::poll::{readable, wait_readable};
use support::TestBus;

const WAIT: Duration = Duration::from_millis(400);

/// Time this thread has been runnable (on CPU or in the run queue) so far.
fn runnable() -> Duration {
    let s = std::fs::read_to_string("/proc/thread-self/schedstat").expect("schedstat");
    let mut it = s
        .split_whitespace()
        .map(|x| x.parse::<u64>().expect("a number"));
    Duration::from_nanos(it.next().expect("on cpu") + it.next().expect("run queue"))
}

/// A bus of 4 slots whose sequence 0 was abandoned (its `publish_with` fill panicked) and whose
/// sequences 1..4 were published: the next sequence, 4, maps onto slot 0, which holds the
/// abandoned version of an older sequence.
fn bus_with_an_older_abandoned_slot(name: &TestBus) -> (Bus, Publisher) {
    let bus = make::bus(name, 4, 16);
    let mut tx = bus.publisher().unwrap();
    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        tx.publish_with(|w| {
            w.write_at(0, &[1; 8]).unwrap();
            panic!("the fill fails");
        })
    }));
    assert!(r.is_err());
    for _ in 1..4 {
        tx.publish_bytes(&[2; 8]).unwrap();
    }
    (bus, tx)
}

/// Runs `recv_timeout(WAIT)` on `rx` and returns how long the thread was runnable meanwhile.
fn cost_of_an_idle_wait(mut rx: shmbus::Subscriber) -> Duration {
    assert_eq!(rx.next_seq(), 4);
    let before = runnable();
    let t0 = Instant::now();
    assert!(matches!(rx.recv_timeout(WAIT), Recv::Empty));
    assert!(t0.elapsed() >= WAIT, "the receive waited its whole timeout");
    runnable() - before
}

#[test]
fn a_sleeping_receive_does_not_spin_on_an_older_abandoned_version() {
    let name = TestBus::new("idle-abandoned");
    let (bus, _tx) = bus_with_an_older_abandoned_slot(&name);
    let rx = bus.subscribe(Start::Next).wait_strategy(Wait::Sleep);
    let cost = cost_of_an_idle_wait(rx);
    assert!(
        cost < WAIT / 5,
        "a {WAIT:?} sleeping receive was runnable for {cost:?}"
    );
    let ro = Bus::open_read_only(name.name()).unwrap();
    let cost = cost_of_an_idle_wait(ro.subscribe(Start::Next).wait_strategy(Wait::Sleep));
    assert!(
        cost < WAIT / 5,
        "a {WAIT:?} read-only sleeping receive was runnable for {cost:?}"
    );
}

#[test]
fn the_default_wait_of_a_read_only_handle_does_not_spin() {
    let name = TestBus::new("idle-ro-default");
    let bus = BusBuilder::new(name.name()).create().unwrap();
    let mut tx = bus.publisher().unwrap();
    for _ in 0..4 {
        tx.publish_bytes(b"x").unwrap();
    }
    let ro = Bus::open_read_only(name.name()).unwrap();
    let cost = cost_of_an_idle_wait(ro.subscribe(Start::Next));
    assert!(
        cost < WAIT / 5,
        "a {WAIT:?} receive with the default wait on a read-only handle was runnable for {cost:?}"
    );
    // And it still receives: its polls see a publish.
    let mut rx = ro.subscribe(Start::Next);
    tx.publish_bytes(b"late").unwrap();
    assert!(matches!(rx.recv(), Recv::Message(m) if m.seq() == 4 && m.bytes() == b"late"));
}

#[test]
fn readiness_does_not_fire_for_an_older_abandoned_version() {
    let name = TestBus::new("idle-ready-abandoned");
    let (bus, mut tx) = bus_with_an_older_abandoned_slot(&name);
    let mut rx = bus.subscribe(Start::Next).into_readiness().unwrap();
    assert!(matches!(rx.try_recv(), Recv::Empty));
    let t0 = Instant::now();
    let mut wakeups = 0;
    while t0.elapsed() < WAIT {
        if readable(&rx, Duration::from_millis(50)) {
            wakeups += 1;
            // Drain as the docs say: until Empty.
            while !matches!(rx.try_recv(), Recv::Empty) {}
        }
    }
    // A spurious signal or two may come (the waker's periodic look); a storm is thousands.
    assert!(
        wakeups < 5,
        "readable {wakeups} times in {WAIT:?} with nothing to receive"
    );
    // Still live: a publish of the expected sequence wakes it.
    tx.publish_bytes(b"now").unwrap();
    wait_readable(&rx, "published the expected sequence");
    assert!(matches!(rx.try_recv(), Recv::Message(m) if m.seq() == 4 && m.bytes() == b"now"));
}

/// Times this thread gave up its CPU to wait (a sleep on a futex, among others).
fn voluntary_switches() -> u64 {
    std::fs::read_to_string("/proc/thread-self/status")
        .expect("status")
        .lines()
        .find_map(|l| l.strip_prefix("voluntary_ctxt_switches:"))
        .and_then(|v| v.trim().parse().ok())
        .expect("voluntary_ctxt_switches")
}

/// docs/design.md §7, "Spin, then sleep": a `Wait::Sleep` receive spins 20 µs before its first
/// sleep (and its `membarrier`), so a wait shorter than that never sleeps.
#[test]
fn a_sleeping_receive_spins_before_its_first_sleep() {
    let name = TestBus::new("idle-spin-first");
    let bus = BusBuilder::new(name.name()).create().unwrap();
    let _tx = bus.publisher().unwrap();
    let mut rx = bus.subscribe(Start::Next).wait_strategy(Wait::Sleep);
    // Warm up (the first receive maps pages, reads the clock's vDSO page, ...).
    assert!(matches!(
        rx.recv_timeout(Duration::from_micros(5)),
        Recv::Empty
    ));
    let before = voluntary_switches();
    for _ in 0..20 {
        assert!(matches!(
            rx.recv_timeout(Duration::from_micros(10)),
            Recv::Empty
        ));
    }
    let slept = voluntary_switches() - before;
    assert_eq!(slept, 0, "10 µs sleeping receives slept {slept} times");
}

/// The same for the other kinds' blocking waits: records subscribers and queue receivers.
#[test]
fn sleeping_waits_of_records_and_queues_spin_before_their_first_sleep() {
    use shmbus::records::{RecordRecv, RecordsBuilder};
    let name = TestBus::new("idle-spin-records");
    let records = RecordsBuilder::new(name.name()).create().unwrap();
    let _tx = records.publisher().unwrap();
    let mut rx = records.subscriber().wait_strategy(Wait::Sleep);
    let qname = TestBus::new("idle-spin-queue");
    let queue = shmbus::Queue::builder(qname.name()).create().unwrap();
    let _qtx = queue.sender().unwrap();
    let mut qrx = queue.receiver().unwrap().wait_strategy(Wait::Sleep);
    // Warm up, as above.
    assert!(matches!(
        rx.recv_timeout(Duration::from_micros(5)),
        RecordRecv::Empty
    ));
    assert!(qrx.recv_timeout(Duration::from_micros(5)).is_none());
    let before = voluntary_switches();
    for _ in 0..20 {
        assert!(matches!(
            rx.recv_timeout(Duration::from_micros(10)),
            RecordRecv::Empty
        ));
        assert!(qrx.recv_timeout(Duration::from_micros(10)).is_none());
    }
    let slept = voluntary_switches() - before;
    assert_eq!(slept, 0, "10 µs sleeping receives slept {slept} times");
}
