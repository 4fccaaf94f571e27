//! Loom models of the production records types (docs/design.md §15): [`Writer`] and [`Reader`]
//! over a heap segment of loom atomics laid out like a real one, with a ring of 128 bytes so
//! that a handful of records wraps it, pads at its end and laps a reader.
//!
//! Run with `RUSTFLAGS="--cfg loom" cargo test --release --lib records::loom` (`.ci/loom.sh`).
//!
//! A record's payload words all equal its sequence number plus one, so a torn copy (words of
//! two laps) or a stale one shows.

use ::loom::sync::atomic::AtomicBool;
use ::loom::sync::Arc;
use ::loom::thread;

use super::layout::{RingShape, W_RING};
use super::*;
use crate::loom_harness::model;
use crate::ring::Liveness;
use crate::subscriber::{LapPolicy, Start};

const RING: u64 = 128;

struct Seg {
    words: Vec<AtomicU64>,
    shape: RingShape,
}

impl Seg {
    fn new() -> Arc<Seg> {
        let shape = RingShape::of(RING);
        let words = (0..W_RING + (RING / 8) as usize)
            .map(|_| AtomicU64::new(0))
            .collect();
        Arc::new(Seg { words, shape })
    }

    fn ring(&self) -> RecordRing<'_> {
        RecordRing::new(&self.words, self.shape)
    }
}

/// The one producer's liveness: alive until it says it is done.
struct Live(Arc<AtomicBool>);

impl Liveness for Live {
    type Guard = ();
    fn alive(&self, _: usize) -> bool {
        !self.0.load(Ordering::Acquire)
    }
    fn any_alive(&self) -> bool {
        self.alive(0)
    }
    fn lock_dead(&self, _: usize) -> Option<()> {
        None
    }
}

/// Preemption bound of the records models: their readers poll in a loop, so every further
/// preemption multiplies the schedules; 1 keeps CI in minutes (bound 2 took 42 minutes on a
/// loaded 2-core machine). `LOOM_MAX_PREEMPTIONS=2` runs the deeper check.
const BOUND: usize = 1;

fn publish(w: &mut Writer, ring: &RecordRing<'_>, len: usize) -> u64 {
    let p = w.begin(ring, len, 0);
    let tag = (p.seq + 1).to_ne_bytes();
    let bytes: Vec<u8> = tag.iter().copied().cycle().take(len).collect();
    w.write_bytes(ring, &p, &bytes);
    w.commit(ring, p);
    p.seq
}

/// Reads until every one of `n` records is received or counted lost, checking each copy.
fn read_all(seg: &Seg, live: &Live, policy: LapPolicy, n: u64) -> (u64, u64) {
    let ring = seg.ring();
    let mut r = Reader::new(&ring, Start::Oldest);
    r.set_policy(policy);
    let mut buf = [0u64; 2];
    let mut last = None;
    loop {
        match r.poll_checked(&ring, live, &mut buf) {
            Polled::Record { seq, len, .. } => {
                assert!(
                    last.map_or(true, |l| seq > l),
                    "out of order: {seq} after {last:?}"
                );
                last = Some(seq);
                for w in &buf[..len / 8] {
                    assert_eq!(*w, seq + 1, "torn or stale copy of record {seq}");
                }
            }
            Polled::Lapped { .. } => {}
            Polled::Empty => thread::yield_now(),
            Polled::Closed => break,
        }
        let st = r.stats();
        if st.received + st.lost == n {
            break;
        }
    }
    let st = r.stats();
    assert_eq!(
        st.received + st.lost,
        n,
        "every record received or counted lost"
    );
    (st.received, st.lost)
}

/// One producer writes records that pad at the ring's end and lap it while a reader reads:
/// every delivered copy is whole and in order, and received + lost is exactly what was
/// published.
#[test]
fn records_wrap_pad_and_lap_without_tearing() {
    model("records_wrap_pad_and_lap_without_tearing", BOUND, || {
        let seg = Seg::new();
        let done = Arc::new(AtomicBool::new(false));
        let (s2, d2) = (seg.clone(), done.clone());
        let producer = thread::spawn(move || {
            let ring = s2.ring();
            let mut w = Writer::attach(&ring).expect("a fresh ring");
            // Sizes 24, 32, 24, 32, 24: the fifth pads at the end (120 + 24 > 128) and laps.
            for len in [8, 16, 8, 16, 8] {
                publish(&mut w, &ring, len);
            }
            d2.store(true, Ordering::Release);
        });
        read_all(&seg, &Live(done), LapPolicy::Oldest, 5);
        producer.join().unwrap();
    });
}

/// The same with a reader that resumes at the newest record after a lap.
#[test]
fn records_newest_policy_counts_exactly() {
    model("records_newest_policy_counts_exactly", BOUND, || {
        let seg = Seg::new();
        let done = Arc::new(AtomicBool::new(false));
        let (s2, d2) = (seg.clone(), done.clone());
        let producer = thread::spawn(move || {
            let ring = s2.ring();
            let mut w = Writer::attach(&ring).expect("a fresh ring");
            for len in [16, 16, 16, 16, 16] {
                publish(&mut w, &ring, len);
            }
            d2.store(true, Ordering::Release);
        });
        read_all(&seg, &Live(done), LapPolicy::Newest, 5);
        producer.join().unwrap();
    });
}
