//! Loom models of the production ring types (docs/design.md §9): [`Writer`], [`Reader`],
//! [`repair_claim`] and the wake-up handshake of `crate::wait`, over a heap segment of loom
//! atomics laid out like a real one, with producer liveness and the kernel's entry locks
//! modelled by [`ModelLive`] and the futex by [`ModelFutex`].
//!
//! Run with `RUSTFLAGS="--cfg loom" cargo test --release --lib ring::loom` (see `.ci/loom.sh`).
//! Loom explores the interleavings and the weak-memory outcomes of every Relaxed, Acquire and
//! Release access and fence, up to a preemption bound (`LOOM_MAX_PREEMPTIONS` overrides it).
//!
//! A message is a payload of two words, both equal to its tag, so a torn copy (words of two
//! writers, or a half-written slot) shows as unequal words.

use ::loom::sync::atomic::AtomicBool;
use ::loom::sync::Arc;
use ::loom::thread;

use super::*;
use crate::bus::subscriber::Start;
use crate::bus::view::{InPlace, SlotView, Viewed};
use crate::loom_harness::{model, ModelFutex, ModelLive};
use crate::segment::header::{Geometry, W_SLOTS};
use crate::segment::payload::Raw;
use crate::sync::AtomicU32;
use crate::wait::{self, WakeWords};

const LEN: usize = 16;

fn payload(tag: u64) -> [u8; LEN] {
    let mut b = [0u8; LEN];
    for c in b.chunks_exact_mut(8) {
        c.copy_from_slice(&tag.to_ne_bytes());
    }
    b
}

/// The tag of a delivered message, checking that it is whole.
fn untorn(buf: &[u64], len: usize) -> u64 {
    assert_eq!(len, LEN, "length of a message");
    assert_eq!(buf[0], buf[1], "torn message: {:x} / {:x}", buf[0], buf[1]);
    assert_ne!(buf[0], 0, "a never-written payload was delivered");
    buf[0]
}

/// A segment-shaped array of loom atomics: the header words, then 2 slots of 16 bytes.
struct Seg {
    words: Vec<AtomicU64>,
    g: Geometry,
}

impl Seg {
    fn new() -> Arc<Seg> {
        let g = Geometry::new(2, LEN).expect("a valid geometry");
        let words = (0..W_SLOTS + g.slot_count as usize * g.stride_words)
            .map(|_| AtomicU64::new(0))
            .collect();
        Arc::new(Seg { words, g })
    }

    fn ring(&self) -> Ring<'_> {
        Ring::new(&self.words, self.g, 0)
    }
}

/// Publishes `tag` with `w`; the sequence, or `None` if dropped.
fn publish(ring: &Ring<'_>, w: &mut Writer, live: &&ModelLive, tag: u64) -> Option<u64> {
    let seq = w.begin(ring, live)?;
    w.write_bytes(ring, seq, &payload(tag));
    w.commit(ring, seq);
    Some(seq)
}

/// After every writer is done or dead: a reader drains to `Closed` in a bounded number of polls
/// (no hang), delivering only whole messages, and accounts for every sequence.
fn drain(seg: &Seg, live: &ModelLive, mut r: Reader, start: u64, delivered: &mut Vec<u64>) {
    let ring = seg.ring();
    let mut buf = [0u64; 2];
    for _ in 0..16 {
        match r.poll_checked(&ring, &live, &mut buf[..]) {
            Polled::Message { len, .. } => delivered.push(untorn(&buf, len)),
            Polled::Closed => {
                let s = r.stats();
                assert_eq!(
                    s.received + s.lost,
                    ring.cursor() - start,
                    "received + lost == published"
                );
                return;
            }
            Polled::Empty | Polled::Idle | Polled::Lapped { .. } => {}
        }
    }
    panic!("reader did not reach Closed: stuck at {}", r.next_seq());
}

/// One single producer, one concurrent reader: every message whole, in order, and the
/// books balance (docs/design.md §9).
#[test]
fn sp_reader_never_tears_and_counts_every_sequence() {
    model("sp_reader_never_tears_and_counts_every_sequence", 3, || {
        let seg = Seg::new();
        let live = ModelLive::new(1);
        let ring = seg.ring();
        let mut r = Reader::new(&ring, Start::Oldest, None);
        let (s2, l2) = (seg.clone(), live.clone());
        let writer = thread::spawn(move || {
            let ring = s2.ring();
            let mut w = Writer::single(0);
            for tag in 1..=3 {
                publish(&ring, &mut w, &&*l2, tag);
            }
            l2.die(0);
        });
        let mut buf = [0u64; 2];
        let mut got = Vec::new();
        for _ in 0..3 {
            if let Polled::Message { seq, len } = r.poll_checked(&ring, &&*live, &mut buf[..]) {
                assert_eq!(untorn(&buf, len), seq + 1, "message under its own sequence");
                got.push(seq);
            }
        }
        writer.join().unwrap();
        drain(&seg, &live, r, 0, &mut Vec::new());
        assert!(got.windows(2).all(|w| w[0] < w[1]), "in order: {got:?}");
    });
}

/// A single producer laps a reader that receives in place (docs/design.md §6, "Reading in
/// place"): the production `Reader` with the production in-place visitor of
/// `Subscriber::try_recv_with`, whose closure loads the two payload words through the
/// `SlotView` while the writer may be rewriting them (three messages on two slots). Every view
/// the read reports valid is a whole published message under its own sequence; a torn one is
/// reported as a lap, and the books balance.
#[test]
fn a_view_reported_valid_is_a_whole_message() {
    model("a_view_reported_valid_is_a_whole_message", 3, || {
        let seg = Seg::new();
        let live = ModelLive::new(1);
        let ring = seg.ring();
        let mut r = Reader::new(&ring, Start::Oldest, None);
        let (s2, l2) = (seg.clone(), live.clone());
        let writer = thread::spawn(move || {
            let ring = s2.ring();
            let mut w = Writer::single(0);
            for tag in 1..=3 {
                publish(&ring, &mut w, &&*l2, tag);
            }
            l2.die(0);
        });
        let mut scratch = [0u64; 2];
        let mut got = Vec::new();
        for _ in 0..3 {
            let mut visit = InPlace::<Raw, _, _>::new(
                |v: SlotView<'_>| (v.len(), v.load_word(0), v.load_word(1)),
                None,
                &mut scratch,
            );
            let p = r.poll_checked(&ring, &&*live, &mut visit);
            if let Viewed::Message { seq, value } = visit.into_viewed(p) {
                let whole = (LEN, Some(seq + 1), Some(seq + 1));
                assert_eq!(
                    value, whole,
                    "a view reported valid is message {seq}, whole"
                );
                got.push(seq);
            }
        }
        writer.join().unwrap();
        drain(&seg, &live, r, 0, &mut Vec::new());
        assert!(got.windows(2).all(|w| w[0] < w[1]), "in order: {got:?}");
    });
}

/// Two multi producers and a reader on two slots: never a torn message, never a dropped one.
#[test]
fn mp_writers_never_tear_and_dropped_is_never_delivered() {
    model(
        "mp_writers_never_tear_and_dropped_is_never_delivered",
        2,
        || {
            let seg = Seg::new();
            let live = ModelLive::new(2);
            let dropped: Arc<Vec<AtomicBool>> =
                Arc::new((0..4).map(|_| AtomicBool::new(false)).collect());
            let ring = seg.ring();
            let mut r = Reader::new(&ring, Start::Oldest, None);
            let spawn = |i: usize, tags: [u64; 2]| {
                let (seg, live, dropped) = (seg.clone(), live.clone(), dropped.clone());
                thread::spawn(move || {
                    let ring = seg.ring();
                    let mut w = Writer::multi(i);
                    for tag in tags {
                        if publish(&ring, &mut w, &&*live, tag).is_none() {
                            dropped[(tag - 1) as usize].store(true, Ordering::Relaxed);
                        }
                    }
                    live.die(i);
                })
            };
            let a = spawn(0, [1, 2]);
            let b = spawn(1, [3, 4]);
            let mut buf = [0u64; 2];
            let mut got = Vec::new();
            for _ in 0..2 {
                if let Polled::Message { len, .. } = r.poll_checked(&ring, &&*live, &mut buf[..]) {
                    got.push(untorn(&buf, len));
                }
            }
            a.join().unwrap();
            b.join().unwrap();
            drain(&seg, &live, r, 0, &mut got);
            for (i, d) in dropped.iter().enumerate() {
                if d.load(Ordering::Relaxed) {
                    assert!(
                        !got.contains(&(i as u64 + 1)),
                        "dropped message {} delivered",
                        i + 1
                    );
                }
            }
            let mut sorted = got.clone();
            sorted.sort_unstable();
            sorted.dedup();
            assert_eq!(
                sorted.len(),
                got.len(),
                "a message delivered twice: {got:?}"
            );
        },
    );
}

/// Where a multi producer's process dies.
#[derive(Clone, Copy, Debug)]
enum Death {
    AfterAnnounce,
    AfterClaim,
    AfterTake,
    AfterWrite,
}

/// A multi producer dies at each step while another publishes a full lap over its slot and a
/// reader reads: the dead writer's half-message is never delivered, the live writer's slot is
/// never taken from it, and the reader is never stuck (it drains to `Closed`).
#[test]
fn mp_dead_writer_is_skipped_and_repaired_never_torn() {
    for death in [
        Death::AfterAnnounce,
        Death::AfterClaim,
        Death::AfterTake,
        Death::AfterWrite,
    ] {
        model(&format!("mp_dead_writer ({death:?})"), 2, move || {
            let seg = Seg::new();
            let live = ModelLive::new(2);
            let ring = seg.ring();
            let mut r = Reader::new(&ring, Start::Oldest, None);
            let (s2, l2) = (seg.clone(), live.clone());
            let dying = thread::spawn(move || {
                let ring = s2.ring();
                let live = &*l2;
                let w = Writer::multi(0);
                w.announce(&ring);
                if !matches!(death, Death::AfterAnnounce) {
                    let seq = w.claim(&ring);
                    if !matches!(death, Death::AfterClaim) && w.take(&ring, &live, seq).is_ok() {
                        if matches!(death, Death::AfterWrite) {
                            w.write_bytes(&ring, seq, &payload(0xdead));
                        }
                    }
                }
                l2.die(0);
            });
            let (s3, l3) = (seg.clone(), live.clone());
            let other = thread::spawn(move || {
                let ring = s3.ring();
                let mut w = Writer::multi(1);
                for tag in [1, 2] {
                    publish(&ring, &mut w, &&*l3, tag);
                }
                l3.die(1);
            });
            let mut buf = [0u64; 2];
            let mut got = Vec::new();
            for _ in 0..2 {
                if let Polled::Message { len, .. } = r.poll_checked(&ring, &&*live, &mut buf[..]) {
                    got.push(untorn(&buf, len));
                }
            }
            dying.join().unwrap();
            other.join().unwrap();
            drain(&seg, &live, r, 0, &mut got);
            assert!(
                !got.contains(&0xdead),
                "a dead writer's message was delivered"
            );
        });
    }
}

/// A dead writer's slot, repaired at once by a producer that needs the slot and by a new
/// producer attaching on the dead one's entry: the kernel lock lets one of them repair, the
/// new producer's own messages are never blamed on the dead one, nothing tears.
#[test]
fn repair_racing_takeover_and_index_reuse() {
    model("repair_racing_takeover_and_index_reuse", 3, || {
        let seg = Seg::new();
        let live = ModelLive::new(2);
        {
            // Producer 0 took sequence 0, wrote half, and died.
            let ring = seg.ring();
            let w = Writer::multi(0);
            w.announce(&ring);
            let seq = w.claim(&ring);
            assert!(w.take(&ring, &&*live, seq).is_ok());
            w.write_bytes(&ring, seq, &payload(0xdead));
            live.die(0);
        }
        let (s2, l2) = (seg.clone(), live.clone());
        let needs_slot = thread::spawn(move || {
            let ring = s2.ring();
            let mut w = Writer::multi(1);
            let a = publish(&ring, &mut w, &&*l2, 1);
            let b = publish(&ring, &mut w, &&*l2, 2);
            l2.die(1);
            (a, b)
        });
        let (s3, l3) = (seg.clone(), live.clone());
        let reuser = thread::spawn(move || {
            let ring = s3.ring();
            if !l3.reuse(0) {
                return None;
            }
            repair_claim(&ring, 0);
            let mut w = Writer::multi(0);
            let s = publish(&ring, &mut w, &&*l3, 3);
            l3.dead[0].store(true, Ordering::Release);
            l3.locked[0].store(false, Ordering::Release);
            s
        });
        needs_slot.join().unwrap();
        reuser.join().unwrap();
        let ring = seg.ring();
        let mut got = Vec::new();
        drain(
            &seg,
            &live,
            Reader::new(&ring, Start::Sequence(0), None),
            0,
            &mut got,
        );
        assert!(
            !got.contains(&0xdead),
            "the dead writer's half message was delivered"
        );
    });
}

/// What a wake-up handshake model shares: the ring, the producer's liveness, the waiter flag,
/// the wake counter and the modelled futex.
type Handshake = (
    Arc<Seg>,
    Arc<ModelLive>,
    Arc<AtomicU64>,
    Arc<AtomicU32>,
    Arc<ModelFutex>,
);

fn handshake() -> Handshake {
    (
        Seg::new(),
        ModelLive::new(1),
        Arc::new(AtomicU64::new(0)),
        Arc::new(AtomicU32::new(0)),
        Arc::new(ModelFutex::new()),
    )
}

/// The other thread's handles on the same handshake.
fn handshake_clone(
    seg: &Arc<Seg>,
    live: &Arc<ModelLive>,
    flag: &Arc<AtomicU64>,
    counter: &Arc<AtomicU32>,
    futex: &Arc<ModelFutex>,
) -> Handshake {
    (
        seg.clone(),
        live.clone(),
        flag.clone(),
        counter.clone(),
        futex.clone(),
    )
}

/// The wake-up handshake of `crate::wait` between a publisher and a sleeping subscriber: the
/// subscriber sleeps without a timeout and must be woken by the publish that makes its message
/// available (single and multi producer).
#[test]
fn wake_up_is_never_lost() {
    for multi in [false, true] {
        model(
            &format!("wake_up_is_never_lost (multi: {multi})"),
            3,
            move || {
                let (seg, live, flag, counter, futex) = handshake();
                let (s2, l2, f2, c2, fu2) = handshake_clone(&seg, &live, &flag, &counter, &futex);
                let ring = seg.ring();
                let mut r = Reader::new(&ring, Start::Next, None);
                let publisher = thread::spawn(move || {
                    let ring = s2.ring();
                    let mut w = if multi {
                        Writer::multi(0)
                    } else {
                        Writer::single(0)
                    };
                    publish(&ring, &mut w, &&*l2, 7);
                    let words = WakeWords {
                        flag: &f2,
                        counter: &c2,
                    };
                    wait::wake_after_publish(words, &*fu2, false);
                });
                let mut buf = [0u64; 2];
                let words = WakeWords {
                    flag: &flag,
                    counter: &counter,
                };
                loop {
                    match r.poll(&ring, &&*live, &mut buf[..]) {
                        Polled::Message { len, .. } => {
                            assert_eq!(untorn(&buf, len), 7);
                            break;
                        }
                        Polled::Empty | Polled::Idle => {
                            let next = r.next_seq();
                            wait::sleep(words, &*futex, None, || ring.ready(next));
                        }
                        other => panic!("unexpected {other:?}"),
                    }
                }
                publisher.join().unwrap();
            },
        );
    }
}

/// The handshake over two messages: the subscriber sleeps again after the first. A publisher
/// delayed between seeing the waiter flag and clearing it must not clear the flag of the
/// subscriber's next sleep unnoticed (docs/design.md §7: the sleeper reads the wake counter
/// before it raises the flag).
#[test]
fn wake_up_is_never_lost_across_two_sleeps() {
    model("wake_up_is_never_lost_across_two_sleeps", 3, || {
        let (seg, live, flag, counter, futex) = handshake();
        let (s2, l2, f2, c2, fu2) = handshake_clone(&seg, &live, &flag, &counter, &futex);
        let ring = seg.ring();
        let mut r = Reader::new(&ring, Start::Next, None);
        let publisher = thread::spawn(move || {
            let ring = s2.ring();
            let mut w = Writer::single(0);
            let words = WakeWords {
                flag: &f2,
                counter: &c2,
            };
            for tag in [7, 8] {
                publish(&ring, &mut w, &&*l2, tag);
                wait::wake_after_publish(words, &*fu2, false);
            }
        });
        let mut buf = [0u64; 2];
        let words = WakeWords {
            flag: &flag,
            counter: &counter,
        };
        let mut want = 7;
        while want <= 8 {
            match r.poll(&ring, &&*live, &mut buf[..]) {
                Polled::Message { len, .. } => {
                    assert_eq!(untorn(&buf, len), want);
                    want += 1;
                }
                Polled::Empty | Polled::Idle => {
                    let next = r.next_seq();
                    wait::sleep(words, &*futex, None, || ring.ready(next));
                }
                other => panic!("unexpected {other:?}"),
            }
        }
        publisher.join().unwrap();
    });
}

/// A producer stopped (signal, debugger) between taking its slot and writing it, on a 2-slot
/// ring: the other producer routes around the held slot (gives up the sequence that lands on
/// it and publishes at the next), never writing into it; a reader with a stall bound of 0
/// passes the stopped producer's sequence at its first look, delivers only whole messages and
/// never the passed one, and balances its books; once released, the stopped producer
/// publishes its own slot, and a reader that starts at its sequence gets it whole or is told
/// it lost it (docs/design.md §5 "Held slots", §6 "Stalls").
#[test]
fn stopped_writer_is_passed_and_routed_around_never_torn() {
    model(
        "stopped_writer_is_passed_and_routed_around_never_torn",
        2,
        || {
            let seg = Seg::new();
            let live = ModelLive::new(2);
            let ring = seg.ring();
            let mut r = Reader::new(&ring, Start::Oldest, None);
            r.set_stall_bound(Some(0));
            // A claims 0 and takes its slot, then stops until released.
            let mut wa = Writer::multi(0);
            let s0 = wa.begin(&ring, &&*live).expect("slot 0 is free");
            assert_eq!(s0, 0);
            let go = Arc::new(AtomicBool::new(false));
            let a = {
                let (seg, live, go) = (seg.clone(), live.clone(), go.clone());
                thread::spawn(move || {
                    // ORDERING: Acquire pairs with the Release store of `go` below (the model's
                    // SIGCONT: A resumes after the reader has passed its sequence).
                    while !go.load(Ordering::Acquire) {
                        thread::yield_now();
                    }
                    let ring = seg.ring();
                    wa.write_bytes(&ring, s0, &payload(1));
                    wa.commit(&ring, s0);
                    live.die(0);
                })
            };
            // B publishes two messages; its second claim lands on A's held slot and re-claims.
            let b = {
                let (seg, live) = (seg.clone(), live.clone());
                thread::spawn(move || {
                    let ring = seg.ring();
                    let mut w = Writer::multi(1);
                    let seqs = [2, 3].map(|tag| publish(&ring, &mut w, &&*live, tag));
                    live.die(1);
                    seqs
                })
            };
            let mut buf = [0u64; 2];
            let mut got = Vec::new();
            let mut poll = |r: &mut Reader, got: &mut Vec<u64>| {
                if let Polled::Message { len, .. } = r.poll_checked(&ring, &&*live, &mut buf[..]) {
                    got.push(untorn(&buf, len));
                }
            };
            for _ in 0..2 {
                poll(&mut r, &mut got);
            }
            let seqs = b.join().unwrap();
            assert_eq!(seqs, [Some(1), Some(3)], "B routed around A's slot");
            for _ in 0..8 {
                if r.next_seq() >= 4 {
                    break;
                }
                poll(&mut r, &mut got);
            }
            assert!(r.next_seq() >= 4, "reader stuck at {}", r.next_seq());
            assert_eq!(got.last(), Some(&3), "B's last message delivered: {got:?}");
            let st = r.stats();
            // A's sequence is counted lost: passed, or lapped past if B was done before the look.
            assert!(st.stalls_passed + st.laps >= 1, "A's sequence counted lost");
            assert_eq!(
                st.received + st.lost,
                r.next_seq(),
                "received + lost == moved past"
            );
            // Release A; a reader that starts at its sequence reads it whole, or is told it lost it.
            // ORDERING: Release pairs with A's Acquire load of `go`.
            go.store(true, Ordering::Release);
            let mut r2 = Reader::new(&ring, Start::Sequence(0), None);
            r2.set_stall_bound(Some(0));
            let mut got2 = Vec::new();
            for _ in 0..2 {
                poll(&mut r2, &mut got2);
            }
            a.join().unwrap();
            drain(&seg, &live, r2, 0, &mut got2);
            drain(&seg, &live, r, 0, &mut got);
            assert!(
                !got.contains(&1),
                "a passed sequence was delivered: {got:?}"
            );
            assert!(
                got2.iter().filter(|&&t| t == 1).count() <= 1,
                "A's message twice: {got2:?}"
            );
        },
    );
}
