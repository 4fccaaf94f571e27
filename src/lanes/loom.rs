//! Loom models of the production lanes types (docs/design.md §17): [`LaneSet`] and [`Writer`]
//! over a heap segment of loom atomics laid out like a real one, with lanes of 64 bytes, and
//! lane bytes in loom cells, so that a producer's write to a byte while the consumer holds a
//! view of it is a causality violation loom reports: the in-place read is what is checked.
//! Each 8-byte word of a lane is also a loom atomic, the header word the consumer polls: a
//! payload write stores its bytes there too (Relaxed), so a consumer that could load a header
//! where a payload is (a missing zero header, a record written over the position it polls)
//! finds a word that is not a record's and the model fails.
//!
//! Run with `RUSTFLAGS="--cfg loom" cargo test --release --lib lanes::loom` (`.ci/loom.sh`).
//!
//! Every byte of record `k` (counting from 0 on its lane) is `k + 1`, so a torn or stale view
//! shows.

use std::marker::PhantomData;
use std::ops::Deref;

use ::loom::cell::{ConstPtr, UnsafeCell};
use ::loom::sync::atomic::AtomicBool;
use ::loom::sync::Arc;
use ::loom::thread;

use super::lane::{LaneSet, Pushed, Settled, Step, Writer};
use super::layout::{LanesShape, OPEN, W_CONTROL};
use super::mirror::{ByLane, LaneBytes, LaneRing};
use crate::loom_harness::{model, ModelFutex};
use crate::segment::header::{W_WAITERS, W_WAKE};
use crate::sync::{AtomicU64, Ordering};
use crate::wait::{self, WakeWords};

const LANE: u64 = 64;

/// The lanes' bytes, one loom cell per byte, and their words as atomics (the headers).
struct Cells {
    lanes: Vec<Vec<UnsafeCell<u8>>>,
    heads: Vec<Vec<AtomicU64>>,
}

impl Cells {
    fn head(&self, lane: u32, pos: u64) -> &AtomicU64 {
        assert_eq!(pos % 8, 0);
        &self.heads[lane as usize][((pos % LANE) / 8) as usize]
    }
}

/// A view: the cells' read guards (held while it lives, so that a write meanwhile is reported)
/// and the bytes they held.
struct View<'a> {
    _guards: Vec<ConstPtr<u8>>,
    bytes: Vec<u8>,
    _cells: PhantomData<&'a Cells>,
}

impl Deref for View<'_> {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        &self.bytes
    }
}

impl LaneBytes for Cells {
    type View<'a> = View<'a>;

    unsafe fn view(&self, lane: u32, pos: u64, len: usize) -> View<'_> {
        let mut guards = Vec::with_capacity(len);
        let mut bytes = Vec::with_capacity(len);
        for k in 0..len as u64 {
            let g = self.lanes[lane as usize][((pos + k) % LANE) as usize].get();
            // SAFETY: loom checks the access; the guard is kept while the view lives.
            bytes.push(unsafe { *g.deref() });
            guards.push(g);
        }
        View {
            _guards: guards,
            bytes,
            _cells: PhantomData,
        }
    }

    unsafe fn load_head(&self, lane: u32, pos: u64) -> u64 {
        // ORDERING: Acquire pairs with the Release commit in `store_head`, as in `Mirror`.
        self.head(lane, pos).load(Ordering::Acquire)
    }

    unsafe fn store_head(&self, lane: u32, pos: u64, value: u64, commit: bool) {
        // The header's bytes are written too: a view of them meanwhile is reported.
        for (k, v) in value.to_le_bytes().iter().enumerate() {
            self.lanes[lane as usize][((pos + k as u64) % LANE) as usize].with_mut(|p| {
                // SAFETY: loom checks that no view of this byte lives concurrently.
                unsafe { *p = *v }
            });
        }
        // ORDERING: a commit is Release, pairing with `load_head`'s Acquire, as in `Mirror`.
        let order = if commit {
            Ordering::Release
        } else {
            Ordering::Relaxed
        };
        self.head(lane, pos).store(value, order);
    }

    type Ring<'a> = ByLane<'a, Cells>;

    fn ring(&self, lane: u32) -> ByLane<'_, Cells> {
        ByLane { mem: self, lane }
    }
}

struct Seg {
    words: Vec<AtomicU64>,
    cells: Cells,
    shape: LanesShape,
    futex: ModelFutex,
}

impl Seg {
    fn new(lanes: u32) -> Arc<Seg> {
        let shape = LanesShape::of(lanes, LANE);
        let words = (0..W_CONTROL + lanes as usize * super::layout::BLOCK_WORDS)
            .map(|_| AtomicU64::new(0))
            .collect();
        let cells = Cells {
            lanes: (0..lanes)
                .map(|_| (0..LANE).map(|_| UnsafeCell::new(0)).collect())
                .collect(),
            heads: (0..lanes)
                .map(|_| (0..LANE / 8).map(|_| AtomicU64::new(0)).collect())
                .collect(),
        };
        Arc::new(Seg {
            words,
            cells,
            shape,
            futex: ModelFutex::new(),
        })
    }

    fn set(&self) -> LaneSet<'_, Cells> {
        LaneSet {
            words: &self.words,
            shape: self.shape,
            mem: &self.cells,
        }
    }

    fn wake_words(&self) -> WakeWords<'_> {
        WakeWords {
            flag: &self.words[W_WAITERS],
            counter: crate::sync::futex_half(&self.words[W_WAKE]),
        }
    }

    /// Opens lane `lane` as a producer that holds it.
    fn open(&self, lane: u32) -> Writer {
        let set = self.set();
        set.open(lane, set.state(lane), false)
            .expect("a fresh lane")
    }
}

/// Record `k`'s bytes.
fn record(k: u8, len: usize) -> Vec<u8> {
    vec![k + 1; len]
}

/// Checks a delivered record: the next one expected on its lane, whole.
fn check(view: &[u8], k: u8) {
    assert!(
        view.iter().all(|&b| b == k + 1),
        "record {k} torn or stale: {view:?}"
    );
}

/// The consumer's receive of one lane: the next record's index and length, or how the lane
/// settled.
fn receive(
    set: &LaneSet<'_, Cells>,
    futex: &ModelFutex,
    lane: u32,
    next: &mut u8,
) -> Option<Settled> {
    match set.peek(lane).expect("consistent") {
        Some(p) => {
            // SAFETY: `p` is from `peek`; the read position moves after the view drops.
            let view = unsafe { set.payload(lane, &p) };
            // Hold the view across a preemption point: the producer may run meanwhile.
            thread::yield_now();
            check(&view, *next);
            drop(view);
            set.ack(lane, p.end, 1, futex, false);
            *next += 1;
            None
        }
        None => Some(set.settle(lane)),
    }
}

/// A producer fills its lane past full while the consumer reads records in place: no byte of a
/// record is written while the consumer views it, every delivered record is whole and in order,
/// and every attempt is either delivered or counted dropped.
#[test]
fn a_record_is_never_written_while_the_consumer_reads_it() {
    model("lanes_in_place_read", 3, || {
        let seg = Seg::new(1);
        let done = Arc::new(AtomicBool::new(false));
        let producer = {
            let (seg, done) = (seg.clone(), done.clone());
            thread::spawn(move || {
                let set = seg.set();
                let mut w = seg.open(0);
                // Records of 16 bytes (8 of payload) in a 64-byte lane, each with the zero
                // header after it: three fit; the fourth, whose zero header falls on the
                // first's header, fits once that record is acknowledged, and is tried again
                // after a yield when the lane is full (so that the consumer runs between).
                let mut published = 0u8;
                let mut attempts = 0u64;
                let mut dropped = 0u64;
                for _ in 0..4 {
                    for _ in 0..2 {
                        attempts += 1;
                        match w.publish(&set.own(w.lane), &record(published, 8)) {
                            Pushed::Queued { .. } => {
                                published += 1;
                                break;
                            }
                            Pushed::Full { drops } => {
                                dropped = drops;
                                thread::yield_now();
                            }
                        }
                    }
                }
                done.store(true, Ordering::Release);
                (published, attempts - dropped)
            })
        };
        let set = seg.set();
        let mut next = 0u8;
        loop {
            let finished = done.load(Ordering::Acquire);
            match receive(&set, &seg.futex, 0, &mut next) {
                None => {}
                Some(Settled::Again) => {}
                Some(Settled::Empty) if finished => break,
                Some(Settled::Empty) => thread::yield_now(),
                Some(Settled::Closed { .. }) => unreachable!("never closed"),
            }
        }
        let (published, queued) = producer.join().unwrap();
        assert_eq!(
            next, published,
            "every queued record delivered once, in order"
        );
        assert_eq!(published as u64, queued, "a record is queued or dropped");
        assert!(published >= 3);
    });
}

/// Two producers each publish a record and close their lane while the consumer serves the lanes
/// whose ready bits are set, clears the bit of a lane it finds empty (`LaneSet::clear`: the
/// heavy barrier, a second look), and sleeps (the §7 handshake) when no bit is set: it must see
/// both records and both closes. A record left behind a clear bit, or a lost wake-up, is a
/// deadlock loom reports.
#[test]
fn no_record_or_close_is_left_behind_a_clear_ready_bit() {
    model("lanes_ready_bits", 2, || {
        let seg = Seg::new(2);
        let producers: Vec<_> = (0..2u32)
            .map(|lane| {
                let seg = seg.clone();
                thread::spawn(move || {
                    let set = seg.set();
                    let mut w = seg.open(lane);
                    if let Pushed::Queued { raised: true } =
                        w.publish(&set.own(w.lane), &record(0, 8))
                    {
                        wait::wake_after_publish(seg.wake_words(), &seg.futex, false);
                    }
                    set.close(&w);
                    wait::wake_after_publish(seg.wake_words(), &seg.futex, false);
                })
            })
            .collect();
        let set = seg.set();
        let mut next = [0u8; 2];
        let mut closed = 0;
        let mut cursor = 0;
        while closed < 2 {
            let Some(lane) = set.next_ready(cursor) else {
                wait::sleep(seg.wake_words(), &seg.futex, None, || set.any_ready());
                continue;
            };
            cursor = lane + 1;
            match receive(&set, &seg.futex, lane, &mut next[lane as usize]) {
                Some(Settled::Closed { drops, died }) => {
                    assert_eq!((drops, died), (0, false));
                    closed += 1;
                }
                // An empty lane's bit is cleared (the consumer's batch of one), with the heavy
                // barrier, before anything relies on it.
                Some(Settled::Empty) => {
                    set.clear(&[lane], || wait::Futex::heavy_barrier(&seg.futex));
                }
                None | Some(Settled::Again) => {}
            }
        }
        assert_eq!(next, [1, 1]);
        for p in producers {
            p.join().unwrap();
        }
    });
}

/// A producer dies between two stores of its second publish (after writing the bytes, or after
/// storing the header): the sweep closes its lane on its behalf, and the consumer gets the
/// first record, the second exactly when its header was stored, then the close. A producer of
/// the lane's next session then publishes a record the consumer gets whole.
#[test]
fn a_producer_that_dies_mid_publish_leaves_nothing_torn() {
    for stop in [Step::Written, Step::Committed] {
        model("lanes_producer_dies", 2, move || {
            let seg = Seg::new(1);
            let producer = {
                let seg = seg.clone();
                thread::spawn(move || {
                    let set = seg.set();
                    let mut w = seg.open(0);
                    assert!(matches!(
                        w.publish(&set.own(w.lane), &record(0, 8)),
                        Pushed::Queued { .. }
                    ));
                    let r = w.publish_steps(&set.own(w.lane), &record(1, 16), |s| s != stop);
                    assert_eq!(r, None, "it dies");
                })
            };
            let consumer = {
                let seg = seg.clone();
                thread::spawn(move || {
                    let set = seg.set();
                    let mut next = 0u8;
                    loop {
                        match receive(&set, &seg.futex, 0, &mut next) {
                            Some(Settled::Closed { died, .. }) => {
                                assert!(died);
                                return next;
                            }
                            Some(Settled::Empty) => thread::yield_now(),
                            None | Some(Settled::Again) => {}
                        }
                    }
                })
            };
            producer.join().unwrap();
            // The kernel has dropped its lock: the sweep closes the lane on its behalf.
            let set = seg.set();
            let state = set.state(0);
            assert_eq!(state & 0xff, OPEN);
            assert!(set.close_dead(0, state));
            let mut got = consumer.join().unwrap();
            let want = if stop == Step::Committed { 2 } else { 1 };
            assert_eq!(got, want);
            // The lane is free again: the next session goes on from where the consumer is.
            let mut w = seg.open(0);
            assert!(matches!(
                w.publish(&set.own(w.lane), &record(got, 8)),
                Pushed::Queued { .. }
            ));
            assert_eq!(receive(&set, &seg.futex, 0, &mut got), None);
            assert_eq!(got, want + 1);
        });
    }
}

/// A producer whose lane is full waits for room as `LanePublisher::publish_wait` does: it tries
/// again, and sleeps on the lane's room words (the §7 handshake, re-checking the read position
/// after raising the flag) until the consumer's acknowledgement, which loads the flag after
/// storing the read position, wakes it. A lost wake-up is a deadlock loom reports; the record it
/// waited to write arrives after the others, whole.
#[test]
fn a_producer_waiting_for_room_is_woken_by_an_acknowledgement() {
    model("lanes_room_wait", 3, || {
        let seg = Seg::new(1);
        let mut w = seg.open(0);
        {
            let set = seg.set();
            // Three records of 8 bytes fill the 64-byte lane (each with the zero header after).
            for k in 0..3 {
                assert!(matches!(
                    w.publish(&set.own(w.lane), &record(k, 8)),
                    Pushed::Queued { .. }
                ));
            }
        }
        let producer = {
            let seg = seg.clone();
            thread::spawn(move || {
                let set = seg.set();
                let own = set.own(w.lane);
                let rec = record(3, 8);
                loop {
                    if let Some(pushed) = w.try_publish(&own, &rec) {
                        assert!(matches!(pushed, Pushed::Queued { .. }));
                        return;
                    }
                    wait::sleep(own.room_words(), &seg.futex, None, || w.fits(&own, 8));
                }
            })
        };
        let set = seg.set();
        let mut next = 0u8;
        // One record read and acknowledged: room for the fourth.
        assert_eq!(receive(&set, &seg.futex, 0, &mut next), None);
        producer.join().unwrap();
        while next < 4 {
            assert_eq!(receive(&set, &seg.futex, 0, &mut next), None);
        }
        assert_eq!(
            receive(&set, &seg.futex, 0, &mut next),
            Some(Settled::Empty)
        );
    });
}

impl LaneRing for ByLane<'_, Cells> {
    unsafe fn write(&self, pos: u64, data: &[u8]) {
        let (cells, lane) = (self.mem, self.lane);
        for (k, v) in data.iter().enumerate() {
            let cell = &cells.lanes[lane as usize][((pos + k as u64) % LANE) as usize];
            cell.with_mut(|p| {
                // SAFETY: loom checks that no view of this byte lives concurrently.
                unsafe { *p = *v }
            });
        }
        // The words the payload covers hold payload bytes now (never a record's header: every
        // byte written is nonzero and no word of them has the commit bit alone above its low
        // half).
        let mut word = pos & !7;
        while word < pos + data.len() as u64 {
            let from = word.max(pos);
            let to = (word + 8).min(pos + data.len() as u64);
            let mut bytes = [0u8; 8];
            for at in from..to {
                bytes[(at - word) as usize] = data[(at - pos) as usize];
            }
            cells
                .head(lane, word)
                .store(u64::from_le_bytes(bytes), Ordering::Relaxed);
            word += 8;
        }
    }

    unsafe fn store_head(&self, pos: u64, value: u64, commit: bool) {
        // SAFETY: the caller keeps `LaneBytes::store_head`'s contract.
        unsafe { self.mem.store_head(self.lane, pos, value, commit) }
    }
}
