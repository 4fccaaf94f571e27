//! Records segments under bad input: corrupt headers (fuzzed), forged control words, versions
//! and lengths written by another process, and the other kinds' segments. The promise: a typed
//! error or a usable segment, valid records or counted losses — never a panic, a read outside
//! the ring or an endless wait.

use shmbus_testkit as support;

use std::time::{Duration, Instant};

use shmbus::records::{RecordRecv, Records, RecordsBuilder};
use shmbus::{Bus, BusBuilder, Error, Start};
use support::forge::{get_word, plant, segment_bytes, set_word, Forger};
use support::{assert_wrong_kind, make_payload, Rng, TestBus};

const RING: u64 = 4096;
/// Cursor, tail, head, last, bytes and the intent (docs/design.md §15).
const CONTROL_WORDS: [usize; 6] = [128, 145, 146, 147, 148, 152];
const RING_WORD: usize = 512;

fn published(tag: &str, count: u64) -> (TestBus, Records, shmbus::records::RecordPublisher) {
    let name = TestBus::new(tag);
    let r = RecordsBuilder::new(name.name())
        .bytes(RING)
        .create()
        .expect("create");
    let mut tx = r.publisher().expect("attach");
    let mut buf = [0u8; 300];
    for k in 0..count {
        let len = 24 + (k as usize * 53) % 270;
        make_payload(&mut buf[..len], 1, k);
        tx.publish_bytes(&buf[..len]).expect("fits");
    }
    (name, r, tx)
}

/// Receives a few times from a fresh subscriber, each call bounded, every record within the
/// largest size.
fn exercise(r: &Records, start: Start, what: &str) {
    let mut rx = r.subscribe(start);
    for _ in 0..8 {
        let t = Instant::now();
        match rx.recv_timeout(Duration::from_millis(1)) {
            RecordRecv::Record(m) => assert!(m.bytes().len() <= r.max_record(), "{what}"),
            RecordRecv::Lapped { .. } | RecordRecv::Empty | RecordRecv::Closed => {}
        }
        assert!(
            t.elapsed() < Duration::from_secs(2),
            "{what}: a receive hung"
        );
    }
}

#[test]
fn random_forgeries_never_panic_hang_or_read_outside_the_ring() {
    let (name, r, mut tx) = published("records-forged", 40);
    let forger = Forger::new(&name);
    let reader = Records::open_read_only(name.name()).expect("open");
    let mut rng = Rng::from_env("records_forgeries");
    let words = RING_WORD + (RING / 8) as usize;
    for round in 0..400 {
        for _ in 0..1 + rng.below(6) {
            let w = if rng.below(4) == 0 {
                CONTROL_WORDS[rng.below(CONTROL_WORDS.len() as u64) as usize]
            } else {
                RING_WORD + rng.below((words - RING_WORD) as u64) as usize
            };
            let old = forger.load(w);
            let v = match rng.below(6) {
                0 => rng.next(),
                1 => rng.below(64),
                2 => u64::MAX - rng.below(3),
                3 => rng.below(64) << 3 | rng.below(8),
                4 => old.wrapping_add(RING * rng.below(3)),
                _ => old ^ (1 << rng.below(64)),
            };
            forger.store(w, v);
        }
        let start = match rng.below(4) {
            0 => Start::Oldest,
            1 => Start::Next,
            2 => Start::Last(rng.below(10)),
            _ => Start::Sequence(rng.below(60)),
        };
        exercise(&reader, start, &format!("round {round}"));
        if round % 10 == 0 {
            // The producer keeps its own state: it publishes on a forged ring, bounded.
            tx.publish_bytes(b"still here").expect("fits");
        }
        if round % 50 == 0 {
            // A new producer on forged words: attaches, or refuses them with a typed error.
            drop(tx);
            tx = match r.publisher() {
                Ok(tx) => tx,
                Err(Error::RecordsInconsistent { .. }) => {
                    // Repair by hand, as a fresh segment would have them.
                    for w in CONTROL_WORDS {
                        forger.store(w, 0);
                    }
                    forger.store(RING_WORD, 0);
                    r.publisher().expect("attach to repaired words")
                }
                Err(e) => panic!("round {round}: {e}"),
            };
        }
    }
}

#[test]
fn a_forged_length_is_never_copied() {
    let (name, r, _tx) = published("records-forged-len", 3);
    let forger = Forger::new(&name);
    // Record 0 is at position 0: its length and type word is ring word 1.
    for len in [1009u64, u32::MAX as u64, 4080, 4 << 32 | 2000] {
        forger.store(RING_WORD + 1, len);
        let mut rx = r.subscribe(Start::Oldest);
        let t = Instant::now();
        for _ in 0..4 {
            if let RecordRecv::Record(m) = rx.try_recv() {
                assert_ne!(
                    m.seq(),
                    0,
                    "len {len}: a record with a forged length was delivered"
                );
            }
        }
        assert!(t.elapsed() < Duration::from_secs(2));
    }
}

#[test]
fn kinds_are_not_confused() {
    let bus_name = TestBus::new("records-kind-bus");
    let _bus = BusBuilder::new(bus_name.name()).create().expect("bus");
    assert_wrong_kind(
        &Records::open(bus_name.name()).unwrap_err(),
        "bus",
        "records segment",
    );
    let rec_name = TestBus::new("records-kind-rec");
    let _r = RecordsBuilder::new(rec_name.name())
        .bytes(RING)
        .create()
        .expect("records");
    assert_wrong_kind(
        &Bus::open(rec_name.name()).unwrap_err(),
        "records segment",
        "bus",
    );
    assert!(matches!(
        RecordsBuilder::new(rec_name.name()).create(),
        Err(Error::AlreadyExists { .. })
    ));
}

/// Geometry words of a records header: slot count, stride (ring bytes), capacity, recorded
/// size, and the producer mode's word.
const GEOMETRY_WORDS: [usize; 5] = [1, 2, 3, 4, 11];

#[test]
fn a_records_segment_of_another_layout_revision_is_refused_with_both_numbers() {
    let (name, r, tx) = published("records-revision", 3);
    drop((tx, r));
    let forger = Forger::new(&name);
    let kind = forger.load(12);
    assert_eq!(kind, 3 | u64::from(shmbus::records::RECORDS_REVISION) << 32);
    Records::open(name.name()).expect("the revision this library writes");
    // A segment made before the revision was recorded (hi32 0), and one from a later layout.
    for found in [0u32, shmbus::records::RECORDS_REVISION + 1] {
        forger.store(12, 3 | u64::from(found) << 32);
        match Records::open(name.name()) {
            Err(Error::LayoutRevision {
                found: f,
                expected,
                kind: "records",
                ..
            }) => {
                assert_eq!((f, expected), (found, shmbus::records::RECORDS_REVISION));
            }
            other => panic!("revision {found} opened: {other:?}"),
        }
        assert!(matches!(
            Records::open_read_only(name.name()),
            Err(Error::LayoutRevision { .. })
        ));
    }
}

#[test]
fn corrupt_records_headers_open_with_typed_errors() {
    let tpl = TestBus::new("records-template");
    drop(
        RecordsBuilder::new(tpl.name())
            .bytes(RING)
            .create()
            .expect("template"),
    );
    let good = segment_bytes(&tpl);
    let mut rng = Rng::from_env("records_headers");
    let (mut accepted, mut refused) = (0, 0);
    for case in 0..300 {
        let mut bytes = good.clone();
        for _ in 0..1 + rng.below(3) {
            let w = GEOMETRY_WORDS[rng.below(GEOMETRY_WORDS.len() as u64) as usize];
            let old = get_word(&bytes, w);
            let v = match rng.below(5) {
                0 => rng.next(),
                1 => old.wrapping_mul(2),
                2 => old / 2,
                3 => old ^ (1 << rng.below(64)),
                _ => old.wrapping_add(rng.below(3)).wrapping_sub(1),
            };
            set_word(&mut bytes, w, v);
        }
        let name = TestBus::new("records-corrupt");
        plant(&name, &bytes, bytes.len() as u64);
        match Records::open(name.name()) {
            Ok(r) => {
                accepted += 1;
                assert_eq!(
                    r.ring_bytes(),
                    RING,
                    "case {case}: a changed ring was accepted"
                );
                exercise(&r, Start::Oldest, &format!("case {case}"));
            }
            Err(e) => {
                refused += 1;
                assert!(
                    e.is_corrupt()
                        || matches!(
                            e,
                            Error::AbiMismatch { .. }
                                | Error::LayoutRevision { .. }
                                // A geometry that claims more bytes than the file holds.
                                | Error::Truncated { .. }
                        ),
                    "case {case}: {e}"
                );
            }
        }
    }
    assert!(refused > 250, "{accepted} accepted, {refused} refused");
}
