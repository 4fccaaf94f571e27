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
use crate::bus::ring::Liveness;
use crate::bus::{LapPolicy, Start};
use crate::loom_harness::{model, ModelFutex};
use crate::segment::header::W_WAITERS;
use crate::sync::AtomicU32;
use crate::wait::{self, WakeWords};

const RING: u64 = 128;

struct Seg {
    words: Vec<AtomicU64>,
    shape: RingShape,
}

impl Seg {
    fn new() -> Arc<Seg> {
        Seg::with_shape(RingShape::of(RING))
    }

    fn with_shape(shape: RingShape) -> Arc<Seg> {
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
    w.write_bytes(ring, &p, &content(p.seq, len));
    w.commit(ring, p);
    p.seq
}

/// The bytes `publish` writes for record `seq` of `len` bytes.
fn content(seq: u64, len: usize) -> Vec<u8> {
    (seq + 1)
        .to_ne_bytes()
        .iter()
        .copied()
        .cycle()
        .take(len)
        .collect()
}

/// Reads from the oldest intact record until every later one (of lengths `lens`, by sequence)
/// is received or counted lost, checking each copy's length and every byte.
fn read_all(seg: &Seg, live: &Live, policy: LapPolicy, lens: &[usize]) -> (u64, u64) {
    read_all_from(seg, live, policy, Start::Oldest, lens)
}

/// As [`read_all`], from `start`.
fn read_all_from(
    seg: &Seg,
    live: &Live,
    policy: LapPolicy,
    start: Start,
    lens: &[usize],
) -> (u64, u64) {
    let ring = seg.ring();
    let mut r = Reader::new(&ring, start);
    r.set_policy(policy);
    let n = lens.len() as u64 - r.next_seq();
    let mut buf = [0u64; 4];
    let mut last = None;
    let mut seen = Vec::new();
    loop {
        let p = r.poll_checked(&ring, live, &mut buf);
        seen.push(p);
        match p {
            Polled::Record { seq, len, .. } => {
                assert!(
                    last.map_or(true, |l| seq > l),
                    "out of order: {seq} after {last:?}"
                );
                last = Some(seq);
                let want = lens[seq as usize];
                assert_eq!(len, want, "torn length of record {seq}");
                let got: Vec<u8> = buf.iter().flat_map(|w| w.to_ne_bytes()).take(len).collect();
                assert_eq!(
                    got,
                    content(seq, want),
                    "torn or stale copy of record {seq}"
                );
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
        "every record received or counted lost; polls: {seen:?}"
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
        read_all(&seg, &Live(done), LapPolicy::Oldest, &[8, 16, 8, 16, 8]);
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
        read_all(&seg, &Live(done), LapPolicy::Newest, &[16; 5]);
        producer.join().unwrap();
    });
}

/// A ring filled by `before` (published before the reader starts), then lapped by `during`
/// (published while it reads, from another thread): every copy the reader delivers is whole.
/// Small enough to run at preemption bound 2 in seconds.
fn lapped_while_reading(name: &str, before: &'static [usize], during: &'static [usize]) {
    lapped_while_reading_in(name, RingShape::of(RING), before, during);
}

fn lapped_while_reading_in(
    name: &str,
    shape: RingShape,
    before: &'static [usize],
    during: &'static [usize],
) {
    model(name, 2, move || {
        let seg = Seg::with_shape(shape);
        {
            let ring = seg.ring();
            let mut w = Writer::attach(&ring).expect("a fresh ring");
            for &len in before {
                publish(&mut w, &ring, len);
            }
        }
        let done = Arc::new(AtomicBool::new(false));
        let (s2, d2) = (seg.clone(), done.clone());
        let producer = thread::spawn(move || {
            let ring = s2.ring();
            let mut w = Writer::attach(&ring).expect("the ring the first producer left");
            for &len in during {
                publish(&mut w, &ring, len);
            }
            d2.store(true, Ordering::Release);
        });
        let lens: Vec<usize> = before.iter().chain(during).copied().collect();
        read_all(&seg, &Live(done), LapPolicy::Oldest, &lens);
        producer.join().unwrap();
    });
}

/// Four records of 32 bytes fill the ring (the last one's terminator overwrites record 0's
/// version: the reader starts at record 1); then records of 24 bytes lap it, so that record 5
/// starts inside record 0's payload (ring byte 24) and its header and payload land on record 1's
/// version and length words while the reader may be copying record 1.
#[test]
fn records_lapped_by_records_starting_inside_their_payload_are_refused() {
    lapped_while_reading(
        "records_lapped_by_records_starting_inside_their_payload_are_refused",
        &[16, 16, 16, 16],
        &[8, 8],
    );
}

/// As above, but record 5 is 10 bytes long: its length word, 10 with type 0, lands on record 1's
/// version word and equals `Done(1)` (1 << 3 | 2). A version word alone cannot tell that record
/// 1 was overwritten: a later record's bytes can hold any value, this one included.
#[test]
fn a_later_length_word_equal_to_an_overwritten_version_does_not_validate_a_torn_copy() {
    assert_eq!(State::Done(1).word(), 10);
    lapped_while_reading(
        "a_later_length_word_equal_to_an_overwritten_version_does_not_validate_a_torn_copy",
        &[16, 16, 16, 16],
        &[8, 10],
    );
}

/// The coarse intent (docs/design.md §15): with a slack of 32 bytes, record 0's publish stores
/// intent 72 and record 1 (ending at 72) stores none; record 2 stores 136 and record 3 (ending at
/// 136) none. While the reader copies record 1 (bytes 32..64), record 4 stores intent 192 and
/// record 5 is written entirely inside it, without an intent store of its own: its header and
/// payload land on record 1's version, length and payload words. The reader can only refuse
/// record 1 because of an intent stored one record earlier.
#[test]
fn a_record_written_inside_the_slack_is_refused_through_an_intent_stored_before_it() {
    let shape = RingShape::of(RING).with_slack(32);
    lapped_while_reading_in(
        "a_record_written_inside_the_slack_is_refused_through_an_intent_stored_before_it",
        shape,
        &[16, 16, 16, 16],
        &[8, 8],
    );
}

/// A reader that keeps up with the producer validates each record against an intent stored a
/// few records before it (slack 32: records of 24 bytes store the intent every other publish
/// or less often), while the producer writes the next records inside that intent; the ring
/// wraps, pads and laps the reader too.
#[test]
fn records_read_against_an_intent_stored_records_earlier_are_whole() {
    model(
        "records_read_against_an_intent_stored_records_earlier_are_whole",
        BOUND,
        || {
            let seg = Seg::with_shape(RingShape::of(RING).with_slack(32));
            let done = Arc::new(AtomicBool::new(false));
            let (s2, d2) = (seg.clone(), done.clone());
            let producer = thread::spawn(move || {
                let ring = s2.ring();
                let mut w = Writer::attach(&ring).expect("a fresh ring");
                for len in [8, 8, 16, 8, 16, 8] {
                    publish(&mut w, &ring, len);
                }
                d2.store(true, Ordering::Release);
            });
            read_all(&seg, &Live(done), LapPolicy::Oldest, &[8, 8, 16, 8, 16, 8]);
            producer.join().unwrap();
        },
    );
}

/// A producer killed between any two of its stores (docs/design.md §15, "Crashes";
/// repro_kinds_records_attach_tail.rs): the production [`Writer`] publishes record `s` and
/// stops after `k` shared stores, for every `k` from none to all of them; then a new producer
/// (another thread, started after the first one ended, as the producer lock orders processes)
/// attaches and publishes up to record `s + 1`, while a reader that started at record `s`
/// reads. Whatever `k`, no committed record is written over: the reader receives `s` and
/// `s + 1`, whole, and loses nothing (nothing laps it). Twice: a record that fits before the
/// ring's end, and one that pads to the next lap (the tail left at the padding word).
///
/// Before the attach reconciled the tail with the cursor, `k` between the cursor store and the
/// tail store (the last two) left the tail at record `s`, and the new producer wrote `s + 1`
/// over it: the reader lost a record, or followed the new record's terminator.
#[test]
fn a_producer_dying_between_any_two_stores_leaves_no_committed_record_written_over() {
    let started = std::time::Instant::now();
    for before in [&[8usize][..], &[8, 8, 8, 8, 8][..]] {
        let s = before.len() as u64;
        for k in 0.. {
            let died = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
            let died2 = died.clone();
            model(
                &format!("producer_dies_after_{k}_stores (record {s})"),
                BOUND,
                move || {
                    let seg = Seg::new();
                    {
                        let ring = seg.ring();
                        let mut w = Writer::attach(&ring).expect("a fresh ring");
                        for &len in before {
                            publish(&mut w, &ring, len);
                        }
                    }
                    let done = Arc::new(AtomicBool::new(false));
                    let (s2, d2, died3) = (seg.clone(), done.clone(), died2.clone());
                    let producers = thread::spawn(move || {
                        {
                            let ring = s2.ring();
                            let mut w = Writer::attach(&ring).expect("the ring left");
                            w.die_after(k);
                            publish(&mut w, &ring, 8);
                            died3.store(w.died(), std::sync::atomic::Ordering::Relaxed);
                        }
                        // The next producer: another process, after the first one's death.
                        let s3 = s2.clone();
                        thread::spawn(move || {
                            let ring = s3.ring();
                            let mut w = Writer::attach(&ring).expect("a dead producer's ring");
                            assert!(w.next_seq() == s || w.next_seq() == s + 1);
                            while w.next_seq() <= s + 1 {
                                publish(&mut w, &ring, 8);
                            }
                        })
                        .join()
                        .unwrap();
                        d2.store(true, Ordering::Release);
                    });
                    let lens = vec![8; s as usize + 2];
                    let (received, lost) = read_all_from(
                        &seg,
                        &Live(done),
                        LapPolicy::Oldest,
                        Start::Sequence(s),
                        &lens,
                    );
                    assert_eq!(
                        (received, lost),
                        (2, 0),
                        "dead after {k} stores: a committed record was written over"
                    );
                    producers.join().unwrap();
                },
            );
            if !died.load(std::sync::atomic::Ordering::Relaxed) {
                break;
            }
        }
    }
    eprintln!(
        "a_producer_dying_between_any_two_stores: every stop point in {:.1?}",
        started.elapsed()
    );
}

/// A records subscriber blocking in the production loop (`wait::block`, `Wait::Sleep`) over its
/// production [`Reader`], sleeping through the handshake of docs/design.md §7 with
/// [`Reader::ready`] as its re-check.
struct Blocking<'a> {
    reader: &'a mut Reader,
    ring: RecordRing<'a>,
    live: &'a Live,
    buf: &'a mut [u64],
    words: WakeWords<'a>,
    futex: &'a ModelFutex,
}

impl wait::Attempt for Blocking<'_> {
    type Out = Polled;
    // The modelled futex has no timeouts: only a wake-up ends a sleep.
    const CHECK_PERIOD: Option<std::time::Duration> = None;

    fn attempt(&mut self) -> Option<Polled> {
        match self.reader.poll(&self.ring, self.live, self.buf) {
            Polled::Empty => None,
            p => Some(p),
        }
    }

    fn sleep(&mut self, timeout: Option<std::time::Duration>) {
        let (reader, ring) = (&*self.reader, &self.ring);
        wait::sleep(self.words, self.futex, timeout, || reader.ready(ring));
    }
}

/// A records subscriber sleeps (twice) while a producer publishes two records and wakes after
/// each commit with the production `wake_after_publish`: both receives end with the record,
/// whole (a lost wake-up is a deadlock loom reports).
#[test]
fn sleeping_records_subscriber_is_always_woken() {
    model("sleeping_records_subscriber_is_always_woken", 3, || {
        let seg = Seg::new();
        let done = Arc::new(AtomicBool::new(false));
        let counter = Arc::new(AtomicU32::new(0));
        let futex = Arc::new(ModelFutex::new());
        let ring = seg.ring();
        let mut reader = Reader::new(&ring, Start::Next);
        let producer = {
            let (seg, counter, futex) = (seg.clone(), counter.clone(), futex.clone());
            thread::spawn(move || {
                let ring = seg.ring();
                let mut w = Writer::attach(&ring).expect("a fresh ring");
                let words = WakeWords {
                    flag: &seg.words[W_WAITERS],
                    counter: &counter,
                };
                for len in [8, 16] {
                    publish(&mut w, &ring, len);
                    wait::wake_after_publish(words, &*futex, false);
                }
            })
        };
        let live = Live(done);
        let mut buf = [0u64; 4];
        for (seq, len) in [(0u64, 8usize), (1, 16)] {
            let mut b = Blocking {
                reader: &mut reader,
                ring: seg.ring(),
                live: &live,
                buf: &mut buf,
                words: WakeWords {
                    flag: &seg.words[W_WAITERS],
                    counter: &counter,
                },
                futex: &futex,
            };
            let got = wait::block(&mut b, wait::Wait::Sleep, None);
            assert_eq!(
                got,
                Some(Polled::Record {
                    seq,
                    len,
                    type_id: 0
                })
            );
            let bytes: Vec<u8> = buf.iter().flat_map(|w| w.to_ne_bytes()).take(len).collect();
            assert_eq!(
                bytes,
                content(seq, len),
                "torn or stale copy of record {seq}"
            );
        }
        producer.join().unwrap();
    });
}
