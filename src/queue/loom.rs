//! Loom models of the production queue types (docs/design.md §11): [`Sender`], [`Receiver`],
//! the stall repairs, [`repair_entry`] and the wake-up handshake, over a heap segment of loom
//! atomics laid out like a real one, with participant liveness and the kernel's entry locks
//! modelled by [`ModelLive`].
//!
//! Run with `RUSTFLAGS="--cfg loom" cargo test --release --lib queue::loom` (see
//! `.ci/loom.sh`). An item is two words, both equal to its tag, so a torn copy shows as unequal
//! words; every model checks that each tag is delivered at most once, and that every tag is
//! accounted for as delivered, skipped or lost once everyone is done or dead.

use ::loom::sync::Arc;
use ::loom::thread;

use super::layout::W_Q_SPACE_WAITERS;
use super::protocol::*;
use crate::bus::ring::Liveness;
use crate::loom_harness::{model, ModelFutex, ModelLive};
use crate::segment::header::{Geometry, MAX_PRODUCERS};
use crate::sync::{AtomicU32, AtomicU64};
use crate::wait::{self, WakeWords};

const LEN: usize = 16;

/// A queue segment of loom atomics: the header words, then 2 slots of 16 bytes.
struct Seg {
    words: Vec<AtomicU64>,
    g: Geometry,
}

impl Seg {
    fn new() -> Arc<Seg> {
        Seg::with(2)
    }

    fn with(slots: u64) -> Arc<Seg> {
        let g = Geometry::packed(slots, LEN).expect("a valid geometry");
        let words = (0..g.segment_bytes().expect("small") / 8)
            .map(|_| AtomicU64::new(0))
            .collect();
        Arc::new(Seg { words, g })
    }

    fn q(&self) -> QueueRing<'_> {
        QueueRing::new(&self.words, self.g)
    }
}

fn item(tag: u64) -> [u8; LEN] {
    let mut b = [0u8; LEN];
    for c in b.chunks_exact_mut(8) {
        c.copy_from_slice(&tag.to_ne_bytes());
    }
    b
}

/// One send attempt with the production steps of a queue with a stall bound
/// (`QueueSender::attempt`): a refused publish (its position was passed) sends again, a held
/// slot is routed around or freed, and a stall is repaired as a sender does (a dead receiver's
/// item counted lost, a stale free moved on); with `pass`, a live receiver holding the slot is
/// taken to have held it past the stall bound and is routed around (the bound is time, which a
/// model does not have: every interleaving of the pass is explored instead).
fn send_with(
    q: &QueueRing<'_>,
    s: &Sender,
    live: &ModelLive,
    own: usize,
    tag: u64,
    pass: bool,
) -> bool {
    for _ in 0..4 {
        match s.begin(q) {
            SendBegin::Claimed(pos) => {
                s.write(q, pos, &item(tag));
                if s.commit(q, pos) {
                    return true;
                }
            }
            SendBegin::Full(pos) => {
                if repair_stalled_send(q, &live, pos, own) == Repair::Held && pass {
                    route_stalled_recv(q, pos);
                }
                return false;
            }
            SendBegin::Held(pos, st) => {
                route_held(q, &live, pos, st, own);
            }
        }
    }
    false
}

fn try_send(q: &QueueRing<'_>, s: &Sender, live: &ModelLive, own: usize, tag: u64) -> bool {
    send_with(q, s, live, own, tag, false)
}

/// One receive attempt, passing skips and repairing a stall as a receiver does
/// (`QueueReceiver::attempt`); with `pass`, a live sender holding the head is taken to have
/// held it past the stall bound and is passed. Returns the tag received, checking the item is
/// whole.
fn recv_with(
    q: &QueueRing<'_>,
    r: &Receiver,
    live: &ModelLive,
    own: usize,
    pass: bool,
) -> Option<u64> {
    let mut buf = [0u64; 2];
    loop {
        match r.begin(q) {
            RecvBegin::Claimed(pos) => {
                assert_eq!(r.read(q, pos, &mut buf), Some(LEN), "length of an item");
                r.finish(q, pos);
                assert_eq!(buf[0], buf[1], "torn item: {:x} / {:x}", buf[0], buf[1]);
                assert_ne!(buf[0], 0, "a never-written item was delivered");
                return Some(buf[0]);
            }
            RecvBegin::Skipped(pos) => r.finish(q, pos),
            RecvBegin::Empty(pos) => {
                if repair_stalled_recv(q, &live, pos, own) == Repair::Held && pass {
                    pass_stalled_send(q, pos);
                }
                return None;
            }
        }
    }
}

fn try_recv(q: &QueueRing<'_>, r: &Receiver, live: &ModelLive, own: usize) -> Option<u64> {
    recv_with(q, r, live, own, false)
}

/// Drains after everyone is done or dead: bounded, so a wedged queue fails the model.
fn drain(q: &QueueRing<'_>, live: &ModelLive, own: usize, got: &mut Vec<u64>) {
    let r = Receiver::new(own);
    // Each attempt that finds nothing runs one stall repair, as a receiver's periodic look
    // does: a dead position left by a stall takes one.
    for _ in 0..24 {
        if let Some(tag) = try_recv(q, &r, live, own) {
            got.push(tag);
        }
    }
    assert_eq!(q.len(), 0, "the queue drains: nothing is wedged");
}

fn assert_once(got: &[u64]) {
    let mut sorted = got.to_vec();
    sorted.sort_unstable();
    sorted.dedup();
    assert_eq!(
        sorted.len(),
        got.len(),
        "an item was delivered twice: {got:?}"
    );
}

/// Two senders and a receiver at once: every item whole, delivered once.
#[test]
fn two_senders_and_a_receiver_deliver_each_item_once() {
    model(
        "two_senders_and_a_receiver_deliver_each_item_once",
        3,
        || {
            let seg = Seg::new();
            let live = ModelLive::new(MAX_PRODUCERS);
            let senders: Vec<_> = [1u64, 2]
                .into_iter()
                .map(|tag| {
                    let (seg, live) = (seg.clone(), live.clone());
                    thread::spawn(move || {
                        let q = seg.q();
                        let own = tag as usize - 1;
                        assert!(
                            try_send(&q, &Sender::new(own), &live, own, tag),
                            "room for 2"
                        );
                    })
                })
                .collect();
            let q = seg.q();
            let r = Receiver::new(2);
            let mut got = Vec::new();
            got.extend(try_recv(&q, &r, &live, 2));
            for t in senders {
                t.join().unwrap();
            }
            drain(&q, &live, 2, &mut got);
            assert_once(&got);
            got.sort_unstable();
            assert_eq!(got, [1, 2]);
        },
    );
}

/// One sender and two receivers at once over a full lap: each item to exactly one receiver.
#[test]
fn two_receivers_never_receive_the_same_item() {
    model("two_receivers_never_receive_the_same_item", 3, || {
        let seg = Seg::new();
        let live = ModelLive::new(MAX_PRODUCERS);
        let q = seg.q();
        let s = Sender::new(0);
        assert!(try_send(&q, &s, &live, 0, 1));
        let other = {
            let (seg, live) = (seg.clone(), live.clone());
            thread::spawn(move || {
                let q = seg.q();
                let r = Receiver::new(2);
                let a = try_recv(&q, &r, &live, 2);
                let b = try_recv(&q, &r, &live, 2);
                a.into_iter().chain(b).collect::<Vec<_>>()
            })
        };
        let r = Receiver::new(1);
        let mut got: Vec<u64> = try_recv(&q, &r, &live, 1).into_iter().collect();
        // The second item goes into the slot of the first lap's neighbour; the third reuses
        // slot 0 once a receiver freed it.
        assert!(try_send(&q, &s, &live, 0, 2));
        let third = try_send(&q, &s, &live, 0, 3);
        got.extend(other.join().unwrap());
        drain(&q, &live, 1, &mut got);
        assert_once(&got);
        got.sort_unstable();
        let want: &[u64] = if third { &[1, 2, 3] } else { &[1, 2] };
        assert_eq!(got, want);
    });
}

/// A sender dies after each step of a send (claimed; written; published) while another sender
/// and a receiver run: its position is delivered whole (published) or skipped, never torn, and
/// the queue never wedges.
#[test]
fn dead_sender_at_each_step_is_skipped_or_delivered_never_torn() {
    for step in 0..3 {
        model(
            &format!("dead_sender_at_each_step (step {step})"),
            3,
            move || {
                let seg = Seg::new();
                let live = ModelLive::new(MAX_PRODUCERS);
                let dying = {
                    let (seg, live) = (seg.clone(), live.clone());
                    thread::spawn(move || {
                        let q = seg.q();
                        let s = Sender::new(0);
                        if let SendBegin::Claimed(pos) = s.begin(&q) {
                            if step >= 1 {
                                s.write(&q, pos, &item(1));
                            }
                            if step >= 2 {
                                assert!(s.commit(&q, pos), "nothing passes in this model");
                            }
                        }
                        live.die(0);
                    })
                };
                let other = {
                    let (seg, live) = (seg.clone(), live.clone());
                    thread::spawn(move || {
                        let q = seg.q();
                        assert!(try_send(&q, &Sender::new(1), &live, 1, 2), "room for 2");
                    })
                };
                let q = seg.q();
                let r = Receiver::new(2);
                let mut got: Vec<u64> = try_recv(&q, &r, &live, 2).into_iter().collect();
                dying.join().unwrap();
                other.join().unwrap();
                drain(&q, &live, 2, &mut got);
                assert_once(&got);
                got.sort_unstable();
                let (skipped, lost, _) = q.totals();
                assert_eq!(lost, 0);
                if step == 2 {
                    assert_eq!((got.as_slice(), skipped), (&[1, 2][..], 0));
                } else {
                    assert_eq!((got.as_slice(), skipped), (&[2][..], 1));
                }
            },
        );
    }
}

/// A receiver dies after each step of a receive (claimed; read; freed) while a sender waits for
/// room and another receiver runs: its item is never delivered to anyone else, counted lost
/// unless it was freed, and the sender gets through.
#[test]
fn dead_receiver_at_each_step_loses_at_most_its_item() {
    for step in 0..3 {
        model(
            &format!("dead_receiver_at_each_step (step {step})"),
            3,
            move || {
                let seg = Seg::new();
                let live = ModelLive::new(MAX_PRODUCERS);
                let q = seg.q();
                let s = Sender::new(0);
                assert!(try_send(&q, &s, &live, 0, 1));
                assert!(try_send(&q, &s, &live, 0, 2));
                let dying = {
                    let (seg, live) = (seg.clone(), live.clone());
                    thread::spawn(move || {
                        let q = seg.q();
                        let r = Receiver::new(1);
                        let mut held = None;
                        if let RecvBegin::Claimed(pos) = r.begin(&q) {
                            let mut buf = [0u64; 2];
                            held = Some(pos);
                            if step >= 1 {
                                assert_eq!(r.read(&q, pos, &mut buf), Some(LEN));
                                assert_eq!(buf[0], buf[1], "torn item");
                            }
                            if step >= 2 {
                                r.finish(&q, pos);
                            }
                        }
                        live.die(1);
                        held
                    })
                };
                let r = Receiver::new(2);
                let mut got: Vec<u64> = try_recv(&q, &r, &live, 2).into_iter().collect();
                // While the receiver may still live: a send (and its repair attempt) races it.
                let early = try_send(&q, &s, &live, 0, 3);
                let held = dying.join().unwrap();
                // The sender fills both slots again: a dead receiver's slot is repaired on the
                // way, whichever it was.
                let rest: &[u64] = if early { &[4] } else { &[3, 4] };
                for &tag in rest {
                    let sent = (0..3).any(|_| try_send(&q, &s, &live, 0, tag));
                    assert!(sent, "a dead receiver's slot is freed for the sender");
                    got.extend(try_recv(&q, &r, &live, 2));
                }
                drain(&q, &live, 2, &mut got);
                assert_once(&got);
                let (skipped, lost, _) = q.totals();
                assert_eq!(skipped, 0);
                let held_tag = held.map(|pos| pos + 1);
                assert!(
                    held_tag.map_or(true, |t| !got.contains(&t)),
                    "a claimed item is never delivered to another receiver"
                );
                let expect_lost = u64::from(held.is_some() && step < 2);
                assert_eq!(lost, expect_lost);
                let accounted = got.len() as u64 + u64::from(held.is_some());
                assert_eq!(accounted, 4, "delivered {got:?}, held {held:?}");
            },
        );
    }
}

/// A receiver's stall repair races a new participant attaching on the dead sender's entry:
/// exactly one of them turns the position into a skip, and the new owner's own item goes
/// through.
#[test]
fn repair_races_an_attach_on_the_dead_entry_and_skips_once() {
    model("repair_races_an_attach_on_the_dead_entry", 3, || {
        let seg = Seg::new();
        let live = ModelLive::new(MAX_PRODUCERS);
        let q = seg.q();
        assert_eq!(Sender::new(0).begin(&q), SendBegin::Claimed(0));
        live.die(0);
        let attach = {
            let (seg, live) = (seg.clone(), live.clone());
            thread::spawn(move || {
                let q = seg.q();
                // As an attach does: the dead entry if its lock can be taken (the repairer may
                // hold it right now), else the next free one.
                let entry = if live.reuse(0) {
                    repair_entry(&q, &&*live, 0);
                    0
                } else {
                    3
                };
                assert!(try_send(&q, &Sender::new(entry), &live, entry, 5));
            })
        };
        let r = Receiver::new(1);
        let mut got: Vec<u64> = try_recv(&q, &r, &live, 1).into_iter().collect();
        attach.join().unwrap();
        drain(&q, &live, 1, &mut got);
        assert_eq!(got, [5]);
        assert_eq!(q.totals(), (1, 0, 0), "skipped exactly once");
    });
}

/// A sender dies holding a position it never published while a live sender names the same
/// position: the holder or, in the schedules this model is for, a loser of the CAS that has not
/// re-named yet (repro_kinds_queue_claim_wedge.rs). A new participant attaches on the dead
/// entry meanwhile, as an attach does (production `repair_entry`; on `Pending` it lets the entry
/// go and takes another). Whatever the schedule, the dead sender's position is skipped once and
/// every item goes through: nothing is wedged.
///
/// Before the repair kept the dead holder's claim, the attach cleared it whenever the live
/// namer was there; once the loser re-named, nothing named the position: the drain found the
/// queue wedged.
#[test]
fn a_live_loser_naming_a_dead_senders_position_does_not_make_the_repair_forget_it() {
    model("a_live_loser_naming_a_dead_senders_position", 3, || {
        let seg = Seg::new();
        let live = ModelLive::new(MAX_PRODUCERS);
        let dying = {
            let (seg, live) = (seg.clone(), live.clone());
            thread::spawn(move || {
                let q = seg.q();
                // Takes position 0 or 1 (if the other sender won 0) and dies holding it.
                assert!(matches!(Sender::new(0).begin(&q), SendBegin::Claimed(_)));
                live.die(0);
            })
        };
        let loser = {
            let (seg, live) = (seg.clone(), live.clone());
            thread::spawn(move || {
                let q = seg.q();
                assert!(try_send(&q, &Sender::new(1), &live, 1, 2), "room for 2");
            })
        };
        dying.join().unwrap();
        let q = seg.q();
        // The new participant, while the live sender may still name the dead one's position.
        let entry = match (&*live).lock_dead(0) {
            Some(guard) => match repair_entry(&q, &&*live, 0) {
                Repair::Pending => {
                    drop(guard);
                    3
                }
                _ => {
                    std::mem::forget(guard);
                    0
                }
            },
            None => 3,
        };
        loser.join().unwrap();
        let mut got = Vec::new();
        drain(&q, &live, 2, &mut got);
        assert!(try_send(&q, &Sender::new(entry), &live, entry, 5));
        drain(&q, &live, 2, &mut got);
        assert_once(&got);
        got.sort_unstable();
        assert_eq!(got, [2, 5]);
        assert_eq!(
            q.totals(),
            (1, 0, 0),
            "the dead sender's position skipped once"
        );
    });
}

/// A receiver sleeps on an empty queue without a timeout: the send that makes an item available
/// must wake it (a lost wake-up is a deadlock loom reports). The sender's side is the
/// production `wake_after_publish` on the queue's item words.
#[test]
fn sleeping_receiver_is_always_woken_by_the_send() {
    model("sleeping_receiver_is_always_woken_by_the_send", 3, || {
        let seg = Seg::new();
        let live = ModelLive::new(MAX_PRODUCERS);
        let counter = Arc::new(AtomicU32::new(0));
        let futex = Arc::new(ModelFutex::new());
        let sender = {
            let (seg, live, counter, futex) =
                (seg.clone(), live.clone(), counter.clone(), futex.clone());
            thread::spawn(move || {
                let q = seg.q();
                assert!(try_send(&q, &Sender::new(0), &live, 0, 7));
                let words = WakeWords {
                    flag: &seg.words[crate::segment::header::W_WAITERS],
                    counter: &counter,
                };
                wait::wake_after_publish(words, &*futex, false);
            })
        };
        let q = seg.q();
        let r = Receiver::new(1);
        let words = WakeWords {
            flag: &seg.words[crate::segment::header::W_WAITERS],
            counter: &counter,
        };
        loop {
            if let Some(tag) = try_recv(&q, &r, &live, 1) {
                assert_eq!(tag, 7);
                break;
            }
            wait::sleep(words, &*futex, None, || q.has_item());
        }
        sender.join().unwrap();
    });
}

/// A sender blocking in the production loop (`wait::block`, `Wait::Sleep`) over the production
/// [`Sender`] steps, sleeping on the queue's space words with `has_space` as its re-check.
struct BlockingSend<'a> {
    q: QueueRing<'a>,
    s: &'a Sender,
    live: &'a ModelLive,
    words: WakeWords<'a>,
    futex: &'a ModelFutex,
    tag: u64,
}

impl wait::Attempt for BlockingSend<'_> {
    type Out = ();
    // The modelled futex has no timeouts: only a wake-up ends a sleep.
    const CHECK_PERIOD: Option<std::time::Duration> = None;

    fn attempt(&mut self) -> Option<()> {
        try_send(&self.q, self.s, self.live, 0, self.tag).then_some(())
    }

    fn sleep(&mut self, timeout: Option<std::time::Duration>) {
        let q = &self.q;
        wait::sleep(self.words, self.futex, timeout, || q.has_space());
    }
}

/// A sender sleeps on a full queue without a timeout: the receive that frees a slot must wake
/// it (the receiver's side is the production `wake_after_publish` on the space words, as
/// `QueueReceiver` runs it after `finish`). Every item is then delivered once.
#[test]
fn sender_sleeping_on_a_full_queue_is_always_woken_by_the_receive() {
    model(
        "sender_sleeping_on_a_full_queue_is_always_woken_by_the_receive",
        3,
        || {
            let seg = Seg::new();
            let live = ModelLive::new(MAX_PRODUCERS);
            let counter = Arc::new(AtomicU32::new(0));
            let futex = Arc::new(ModelFutex::new());
            let s = Sender::new(0);
            {
                let q = seg.q();
                assert!(try_send(&q, &s, &live, 0, 1) && try_send(&q, &s, &live, 0, 2));
                assert!(!q.has_space(), "two slots, two items: full");
            }
            let receiver = {
                let (seg, live, counter, futex) =
                    (seg.clone(), live.clone(), counter.clone(), futex.clone());
                thread::spawn(move || {
                    let q = seg.q();
                    let got = try_recv(&q, &Receiver::new(1), &live, 1);
                    assert_eq!(got, Some(1), "the oldest item");
                    let words = WakeWords {
                        flag: &seg.words[W_Q_SPACE_WAITERS],
                        counter: &counter,
                    };
                    wait::wake_after_publish(words, &*futex, false);
                })
            };
            let mut b = BlockingSend {
                q: seg.q(),
                s: &s,
                live: &live,
                words: WakeWords {
                    flag: &seg.words[W_Q_SPACE_WAITERS],
                    counter: &counter,
                },
                futex: &futex,
                tag: 3,
            };
            assert_eq!(wait::block(&mut b, wait::Wait::Sleep, None), Some(()));
            receiver.join().unwrap();
            let mut got = Vec::new();
            drain(&seg.q(), &live, 1, &mut got);
            assert_eq!(got, [2, 3], "each item once, in order");
        },
    );
}

/// Stalls (docs/design.md §11, "Stalls"): a sender that stops between its claim and its
/// publish is passed by a receiver (taken to have waited the stall bound, at any point of the
/// interleaving) while another sender runs; when the stopped sender runs again its publish is
/// refused, it releases the slot and sends its item again. Every item is delivered exactly
/// once and whole, and nothing is written into a slot its holder may still write.
#[test]
fn stalled_sender_is_passed_and_sends_again_exactly_once() {
    static PASSED: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    model(
        "stalled_sender_is_passed_and_sends_again_exactly_once",
        3,
        || {
            let seg = Seg::new();
            let live = ModelLive::new(MAX_PRODUCERS);
            let senders: Vec<_> = [1u64, 2]
                .into_iter()
                .map(|tag| {
                    let (seg, live) = (seg.clone(), live.clone());
                    thread::spawn(move || {
                        let q = seg.q();
                        let own = tag as usize - 1;
                        send_with(&q, &Sender::new(own), &live, own, tag, false)
                    })
                })
                .collect();
            let q = seg.q();
            let r = Receiver::new(2);
            let mut got = Vec::new();
            // Three looks: one may pass a stalled sender's position and the next move the head
            // past it before that sender tries to publish.
            for _ in 0..3 {
                // A yield lets the senders run first in some schedules without spending a
                // preemption (loom's scheduler otherwise runs this thread on).
                thread::yield_now();
                got.extend(recv_with(&q, &r, &live, 2, true));
            }
            let sent: Vec<bool> = senders.into_iter().map(|t| t.join().unwrap()).collect();
            if q.totals().2 > 0 {
                PASSED.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            }
            drain(&q, &live, 2, &mut got);
            assert_once(&got);
            got.sort_unstable();
            let want: Vec<u64> = [1, 2]
                .into_iter()
                .filter(|t| sent[*t as usize - 1])
                .collect();
            assert_eq!(got, want, "each item sent is delivered once");
            assert!(sent[0] || sent[1], "two slots: a send goes through");
        },
    );
    assert!(
        PASSED.load(std::sync::atomic::Ordering::Relaxed) > 0,
        "some schedule passes a sender"
    );
}

/// Stalls: a receiver that stops between its claim and its free is routed around by a sender
/// (taken to have waited the bound); the receiver still gets the item it claimed, whole, and
/// its late free (a stale free) is moved on by the next participant to meet it; a second
/// receiver gets the rest.
#[test]
fn stalled_receiver_is_routed_around_and_keeps_its_item() {
    static ROUTED: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    model(
        "stalled_receiver_is_routed_around_and_keeps_its_item",
        2,
        || {
            let seg = Seg::new();
            let live = ModelLive::new(MAX_PRODUCERS);
            let q = seg.q();
            let s = Sender::new(0);
            assert!(try_send(&q, &s, &live, 0, 1) && try_send(&q, &s, &live, 0, 2));
            let stalled = {
                let (seg, live) = (seg.clone(), live.clone());
                thread::spawn(move || try_recv(&seg.q(), &Receiver::new(1), &live, 1))
            };
            let sender = {
                let (seg, live) = (seg.clone(), live.clone());
                thread::spawn(move || {
                    let q = seg.q();
                    (3..5)
                        .filter(|&tag| (0..2).any(|_| send_with(&q, &s, &live, 0, tag, true)))
                        .collect::<Vec<u64>>()
                })
            };
            let r = Receiver::new(2);
            // A yield lets the spawned threads run first in some schedules without spending a
            // preemption (loom's scheduler otherwise runs this thread on).
            thread::yield_now();
            let mut got: Vec<u64> = try_recv(&q, &r, &live, 2).into_iter().collect();
            got.extend(stalled.join().unwrap());
            let sent = sender.join().unwrap();
            if q.totals().2 > 0 {
                ROUTED.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            }
            drain(&q, &live, 2, &mut got);
            assert_once(&got);
            got.sort_unstable();
            let mut want = vec![1, 2];
            want.extend(sent);
            assert_eq!(got, want, "each item sent is delivered once");
        },
    );
    assert!(
        ROUTED.load(std::sync::atomic::Ordering::Relaxed) > 0,
        "some schedule routes around the receiver"
    );
}

/// Stalls, a lap later: one slot, a sender stopped holding it is passed, and the other sender
/// routes around the held slot lap after lap while the stopped one resumes at any point (its
/// release must free the slot for the lap after the last routed one, never for a position the
/// tail has already passed). A sender that dies instead of resuming has its slot freed by the
/// next sender that meets it.
#[test]
fn passed_holder_resumes_after_its_slot_was_routed() {
    static ROUTED: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    for dies in [false, true] {
        ROUTED.store(0, std::sync::atomic::Ordering::Relaxed);
        model(
            &format!("passed_holder_resumes_after_its_slot_was_routed (dies: {dies})"),
            2,
            move || {
                let seg = Seg::with(1);
                let live = ModelLive::new(MAX_PRODUCERS);
                let stalled = {
                    let (seg, live) = (seg.clone(), live.clone());
                    thread::spawn(move || {
                        let q = seg.q();
                        let s = Sender::new(0);
                        if dies {
                            if let SendBegin::Claimed(pos) = s.begin(&q) {
                                s.write(&q, pos, &item(1));
                            }
                            live.die(0);
                            false
                        } else {
                            send_with(&q, &s, &live, 0, 1, false)
                        }
                    })
                };
                let q = seg.q();
                let (s, r) = (Sender::new(1), Receiver::new(2));
                let mut got = Vec::new();
                let mut sent = Vec::new();
                // A yield lets the stalled sender claim first in some schedules without
                // spending a preemption (loom's scheduler otherwise runs this thread on).
                thread::yield_now();
                for tag in [2, 3] {
                    if send_with(&q, &s, &live, 1, tag, false) {
                        sent.push(tag);
                    }
                    got.extend(recv_with(&q, &r, &live, 2, true));
                }
                if stalled.join().unwrap() {
                    sent.push(1);
                }
                // Passed, and routed a lap later: two positions at least carry no item.
                if q.tail() >= sent.len() as u64 + 2 {
                    ROUTED.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                }
                for _ in 0..3 {
                    got.extend(recv_with(&q, &r, &live, 2, true));
                }
                // The queue still works: a send after everything goes through.
                assert!((0..4).any(|_| send_with(&q, &s, &live, 1, 9, false)));
                sent.push(9);
                drain(&q, &live, 2, &mut got);
                assert_once(&got);
                got.sort_unstable();
                sent.sort_unstable();
                assert_eq!(got, sent, "each item sent is delivered once");
            },
        );
        assert!(
            ROUTED.load(std::sync::atomic::Ordering::Relaxed) > 0,
            "some schedule passes the holder and routes around its slot (dies: {dies})"
        );
    }
}
