//! Lanes through the public API on shared segments: the readiness descriptor (readable after a
//! publish and not before, and when a producer dies), `recv_async`, opening the wrong kind, and
//! forged lane words.
// Readiness needs real threads and system calls: not built under loom.
#![cfg(not(loom))]

use shmbus_testkit as support;

use std::time::Duration;

use shmbus::lanes::{LaneEvent, LanePush, Lanes, LanesBuilder};
use shmbus::{BusBuilder, Error};
use support::forge::Forger;
use support::poll::{readable, wait_readable};
use support::{assert_wrong_kind, role, ChildProc, TestBus};

const CHILD: &str = "child_entry";

#[test]
fn child_entry() {
    support::run_role(&[("producer", || {
        let name: String = support::env("LANES");
        let lanes = Lanes::open(&name).expect("open");
        let mut p = lanes.acquire().expect("acquire");
        assert_eq!(p.publish(b"before I go").unwrap(), LanePush::Queued);
        support::say("ready");
        // Held until the parent kills us.
        support::poll::hold();
    })]);
}

#[test]
fn lane_readiness_is_readable_after_a_publish_and_not_before() {
    let t = TestBus::new("lanes-ready");
    let lanes = LanesBuilder::new(t.name())
        .lanes(8)
        .lane_bytes(4096)
        .create()
        .unwrap();
    let mut rx = lanes.consumer().unwrap().into_readiness().unwrap();
    assert!(rx.try_recv().unwrap().is_none(), "arms");
    assert!(!readable(&rx, Duration::ZERO), "armed and empty");
    let l2 = lanes.clone();
    let producer = std::thread::spawn(move || {
        let mut p = l2.acquire().unwrap();
        assert_eq!(p.publish(b"news").unwrap(), LanePush::Queued);
        p
    });
    wait_readable(&rx, "after a publish");
    match rx.try_recv().unwrap() {
        Some(LaneEvent::Record(r)) => assert_eq!(&r[..], b"news"),
        other => panic!("{other:?}"),
    }
    let p = producer.join().unwrap();
    let lane = p.lane();
    drop(p);
    wait_readable(&rx, "after a close");
    let mut closed = None;
    while let Some(e) = rx.try_recv().unwrap() {
        if let LaneEvent::Closed(c) = e {
            closed = Some(c);
        }
    }
    let c = closed.expect("the close");
    assert_eq!((c.lane, c.producer_died), (lane, false));
}

#[test]
fn a_producer_killed_mid_session_is_seen_through_the_descriptor_and_its_lane_recycled() {
    if role().is_some() {
        return;
    }
    let t = TestBus::new("lanes-death");
    let lanes = LanesBuilder::new(t.name())
        .lanes(1)
        .lane_bytes(4096)
        .create()
        .unwrap();
    let mut rx = lanes.consumer().unwrap().into_readiness().unwrap();
    let mut child = ChildProc::spawn(CHILD, "producer", &[("LANES", t.name().to_owned())]);
    child.expect_line("ready");
    assert!(matches!(lanes.acquire(), Err(Error::LanesFull { .. })));
    // Take its record, so that only its death is left to see.
    wait_readable(&rx, "the child's record");
    match rx.try_recv().unwrap() {
        Some(LaneEvent::Record(r)) => assert_eq!(&r[..], b"before I go"),
        other => panic!("{other:?}"),
    }
    assert!(rx.try_recv().unwrap().is_none());
    child.kill9();
    // Nobody wakes us for a death: the waker's periodic look does.
    let mut died = None;
    while died.is_none() {
        wait_readable(&rx, "the producer's death");
        while let Some(e) = rx.try_recv().unwrap() {
            if let LaneEvent::Closed(c) = e {
                died = Some(c);
            }
        }
    }
    assert!(died.unwrap().producer_died);
    // The lane is back in the pool.
    let mut p = lanes.acquire().unwrap();
    assert_eq!(p.publish(b"next").unwrap(), LanePush::Queued);
}

#[test]
fn other_kinds_are_refused_and_forged_lane_words_are_corrupt() {
    let bus = TestBus::new("lanes-wrong");
    BusBuilder::new(bus.name()).create().unwrap();
    let err = LanesBuilder::new(bus.name()).open().unwrap_err();
    assert_wrong_kind(&err, "bus", "lanes segment");
    let t = TestBus::new("lanes-forged");
    LanesBuilder::new(t.name())
        .lanes(4)
        .lane_bytes(4096)
        .create()
        .unwrap();
    let forger = Forger::new(&t);
    for (word, value, says) in [
        (144, 0, "lane count 0"),
        (144, 5000, "lane count 5000"),
        (144, 8, "is not that of 8 lanes"),
        (145, 1000, "lane size 1000"),
        (145, 8192, "is not that of 4 lanes of 8192"),
    ] {
        let old = forger.load(word);
        forger.store(word, value);
        let err = Lanes::open(t.name()).unwrap_err();
        assert!(matches!(err, Error::LanesCorrupt { .. }), "{err:?}");
        assert!(err.is_corrupt());
        assert!(err.to_string().contains(says), "{err}");
        forger.store(word, old);
    }
    Lanes::open(t.name()).expect("whole again");
    // A second consumer is refused with the first one's pid.
    let lanes = Lanes::open(t.name()).unwrap();
    let _c = lanes.consumer().unwrap();
    let err = Lanes::open(t.name()).unwrap().consumer().unwrap_err();
    assert!(
        err.to_string().contains(&format!(
            "already has a live consumer (pid {})",
            std::process::id()
        )),
        "{err}"
    );
    let ro = Lanes::open_read_only(t.name()).unwrap();
    assert!(matches!(ro.acquire(), Err(Error::ReadOnly { .. })));
    assert!(matches!(ro.consumer(), Err(Error::ReadOnly { .. })));
}

#[cfg(feature = "tokio")]
#[test]
fn recv_async_gets_records_and_closes() {
    use shmbus::lanes::LaneOwned;
    let t = TestBus::new("lanes-async");
    let lanes = LanesBuilder::new(t.name())
        .lanes(2)
        .lane_bytes(4096)
        .create()
        .unwrap();
    let mut c = lanes.consumer().unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let l2 = lanes.clone();
        let feeder = std::thread::spawn(move || {
            let mut p = l2.acquire().unwrap();
            for i in 0..100u32 {
                while p.publish(&i.to_le_bytes()).unwrap() != LanePush::Queued {
                    std::thread::yield_now();
                }
            }
        });
        let mut next = 0u32;
        loop {
            match tokio::time::timeout(Duration::from_secs(10), c.recv_async())
                .await
                .expect("no hang")
                .unwrap()
            {
                LaneOwned::Record { bytes, .. } => {
                    assert_eq!(bytes, next.to_le_bytes());
                    next += 1;
                }
                LaneOwned::Closed(x) => {
                    assert!(!x.producer_died);
                    break;
                }
            }
        }
        assert_eq!(next, 100);
        feeder.join().unwrap();
    });
}
