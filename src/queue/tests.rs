//! Unit tests of every slot state and repair of the queue protocol, with participant liveness
//! injected (a participant "dies" when the test says so; the kernel's entry lock is modelled).

use super::protocol::*;
use crate::bus::ring::Liveness;
use crate::segment::header::{Geometry, MAX_PRODUCERS};
use crate::sync::{AtomicU64, Ordering};

/// A heap queue segment of `slots` slots of 16-byte items (also the inspector's tests' own).
pub(super) struct Seg {
    pub(super) words: Vec<AtomicU64>,
    pub(super) g: Geometry,
}

impl Seg {
    pub(super) fn new(slots: u64) -> Seg {
        let g = Geometry::packed(slots, 16).expect("a valid geometry");
        let words = (0..g.segment_bytes().expect("small") / 8)
            .map(|_| AtomicU64::new(0))
            .collect();
        Seg { words, g }
    }

    pub(super) fn q(&self) -> QueueRing<'_> {
        QueueRing::new(&self.words, self.g)
    }
}

fn send(q: &QueueRing<'_>, s: &Sender, tag: u64) -> Option<u64> {
    match s.begin(q) {
        SendBegin::Claimed(pos) => {
            s.write(q, pos, &[tag.to_ne_bytes(), tag.to_ne_bytes()].concat());
            assert!(s.commit(q, pos), "not passed");
            Some(pos)
        }
        SendBegin::Full(_) | SendBegin::Held(..) => None,
    }
}

/// Receives one item's tag, passing skips; `None` when empty.
fn recv(q: &QueueRing<'_>, r: &Receiver) -> Option<u64> {
    let mut buf = [0u64; 2];
    loop {
        match r.begin(q) {
            RecvBegin::Claimed(pos) => {
                assert_eq!(r.read(q, pos, &mut buf), Some(16));
                r.finish(q, pos);
                assert_eq!(buf[0], buf[1], "torn item");
                return Some(buf[0]);
            }
            RecvBegin::Skipped(pos) => r.finish(q, pos),
            RecvBegin::Empty(_) => return None,
        }
    }
}

#[test]
fn items_come_out_in_order_and_full_and_empty_are_reported() {
    let seg = Seg::new(4);
    let q = seg.q();
    let (s, r) = (Sender::new(0), Receiver::new(1));
    assert_eq!(recv(&q, &r), None);
    for tag in 1..=4 {
        assert_eq!(send(&q, &s, tag), Some(tag - 1));
    }
    assert_eq!(s.begin(&q), SendBegin::Full(4));
    assert_eq!(q.len(), 4);
    for tag in 1..=4 {
        assert_eq!(recv(&q, &r), Some(tag));
    }
    assert_eq!(recv(&q, &r), None);
    // The next lap reuses every slot.
    for tag in 5..=8 {
        assert_eq!(send(&q, &s, tag), Some(tag - 1));
    }
    assert_eq!(
        (1..=4).map(|_| recv(&q, &r)).collect::<Vec<_>>(),
        [5, 6, 7, 8].map(Some)
    );
}

#[test]
fn a_queue_of_one_slot_alternates_full_and_empty() {
    let seg = Seg::new(1);
    let q = seg.q();
    let (s, r) = (Sender::new(0), Receiver::new(1));
    for tag in 1..=5 {
        assert_eq!(send(&q, &s, tag), Some(tag - 1));
        assert_eq!(s.begin(&q), SendBegin::Full(tag));
        assert_eq!(recv(&q, &r), Some(tag));
        assert_eq!(recv(&q, &r), None);
    }
}

#[test]
fn a_failed_attempt_withdraws_its_claim() {
    let seg = Seg::new(1);
    let q = seg.q();
    let (s, r) = (Sender::new(0), Receiver::new(1));
    send(&q, &s, 1);
    assert_eq!(s.begin(&q), SendBegin::Full(1));
    assert_eq!(q.claim_word(0).load(Ordering::Relaxed), 0);
    recv(&q, &r);
    assert_eq!(r.begin(&q), RecvBegin::Empty(1));
    assert_eq!(q.claim_word(1).load(Ordering::Relaxed), 0);
}

#[test]
fn dead_sender_after_its_claim_leaves_a_skip_that_receivers_pass() {
    for wrote in [false, true] {
        let seg = Seg::new(4);
        let q = seg.q();
        let live = crate::test_live::ModelLive::plain(MAX_PRODUCERS);
        let (dead, s, r) = (Sender::new(0), Sender::new(1), Receiver::new(2));
        let SendBegin::Claimed(pos) = dead.begin(&q) else {
            panic!("an empty queue has room")
        };
        if wrote {
            dead.write(&q, pos, &[9u8; 16]);
        }
        send(&q, &s, 7);
        assert_eq!(recv(&q, &r), None, "position 0 is claimed, not published");
        assert_eq!(
            repair_stalled_recv(&q, &&live, 0, 2),
            Repair::Held,
            "alive: waited for"
        );
        live.die(0);
        assert_eq!(repair_stalled_recv(&q, &&live, 0, 2), Repair::Skipped);
        assert_eq!(repair_stalled_recv(&q, &&live, 0, 2), Repair::None, "once");
        assert_eq!(q.claim_word(0).load(Ordering::Relaxed), 0, "claim cleared");
        assert_eq!(r.begin(&q), RecvBegin::Skipped(0));
        r.finish(&q, 0);
        assert_eq!(recv(&q, &r), Some(7));
        assert_eq!(q.totals(), (1, 0, 0));
    }
}

#[test]
fn dead_receiver_item_is_counted_lost_once_and_its_slot_freed() {
    let seg = Seg::new(2);
    let q = seg.q();
    let live = crate::test_live::ModelLive::plain(MAX_PRODUCERS);
    let (s, dead, r) = (Sender::new(0), Receiver::new(1), Receiver::new(2));
    send(&q, &s, 1);
    send(&q, &s, 2);
    assert_eq!(dead.begin(&q), RecvBegin::Claimed(0));
    assert_eq!(recv(&q, &r), Some(2));
    assert_eq!(s.begin(&q), SendBegin::Full(2), "slot 0 still holds item 1");
    assert_eq!(
        repair_stalled_send(&q, &&live, 2, 0),
        Repair::Held,
        "alive: waited for"
    );
    live.die(1);
    assert_eq!(repair_stalled_send(&q, &&live, 2, 0), Repair::Lost);
    assert_eq!(repair_stalled_send(&q, &&live, 2, 0), Repair::None, "once");
    assert_eq!(send(&q, &s, 3), Some(2));
    assert_eq!(recv(&q, &r), Some(3), "item 1 is never delivered");
    assert_eq!(q.totals(), (0, 1, 0));
}

#[test]
fn dead_receiver_of_a_skip_frees_it_without_a_loss() {
    let seg = Seg::new(1);
    let q = seg.q();
    let live = crate::test_live::ModelLive::plain(MAX_PRODUCERS);
    let (ds, s, dr) = (Sender::new(0), Sender::new(1), Receiver::new(2));
    assert_eq!(ds.begin(&q), SendBegin::Claimed(0));
    live.die(0);
    assert_eq!(repair_stalled_recv(&q, &&live, 0, 2), Repair::Skipped);
    assert_eq!(dr.begin(&q), RecvBegin::Skipped(0));
    live.die(2);
    assert_eq!(s.begin(&q), SendBegin::Full(1));
    assert_eq!(repair_stalled_send(&q, &&live, 1, 1), Repair::Freed);
    assert_eq!(send(&q, &s, 5), Some(1));
    assert_eq!(q.totals(), (1, 0, 0));
}

#[test]
fn a_live_claimant_of_the_same_position_blocks_the_repair() {
    // A dead loser still names position 0 (it died between naming and its CAS), while the live
    // winner writes it: the position is the winner's and is waited for.
    let seg = Seg::new(4);
    let q = seg.q();
    let live = crate::test_live::ModelLive::plain(MAX_PRODUCERS);
    q.claim_word(0)
        .store(Claim::Send(0).word(), Ordering::Relaxed);
    live.die(0);
    let winner = Sender::new(1);
    assert_eq!(winner.begin(&q), SendBegin::Claimed(0));
    assert_eq!(repair_stalled_recv(&q, &&live, 0, 2), Repair::Held);
    winner.write(&q, 0, &[3u8; 16]);
    assert!(winner.commit(&q, 0));
    assert_eq!(
        recv(&q, &Receiver::new(2)),
        Some(u64::from_ne_bytes([3; 8]))
    );
    assert_eq!(q.totals(), (0, 0, 0));
}

#[test]
fn a_claim_that_was_completed_or_never_taken_is_not_repaired() {
    let seg = Seg::new(4);
    let q = seg.q();
    let live = crate::test_live::ModelLive::plain(MAX_PRODUCERS);
    let s = Sender::new(0);
    send(&q, &s, 1);
    // Died after publishing: its claim still names position 0.
    live.die(0);
    assert_eq!(repair_entry(&q, &&live, 0), Repair::None);
    assert_eq!(recv(&q, &Receiver::new(1)), Some(1));
    // Died after naming position 1 but before its CAS: the tail never passed it.
    q.claim_word(0)
        .store(Claim::Send(1).word(), Ordering::Relaxed);
    assert_eq!(repair_entry(&q, &&live, 0), Repair::None);
    assert_eq!(send(&q, &Sender::new(2), 2), Some(1));
    assert_eq!(q.totals(), (0, 0, 0));
}

#[test]
fn attaching_on_a_dead_entry_repairs_its_claim_first() {
    let seg = Seg::new(2);
    let q = seg.q();
    let live = crate::test_live::ModelLive::plain(MAX_PRODUCERS);
    let dead = Sender::new(3);
    assert_eq!(dead.begin(&q), SendBegin::Claimed(0));
    live.die(3);
    // The new owner holds entry 3's lock, as an attach does.
    let _held = (&live).lock_dead(3).expect("dead and free");
    assert_eq!(repair_entry(&q, &&live, 3), Repair::Skipped);
    assert_eq!(q.claim_word(3).load(Ordering::Relaxed), 0);
    let r = Receiver::new(4);
    assert_eq!(r.begin(&q), RecvBegin::Skipped(0));
}

#[test]
fn corrupt_positions_report_full_and_empty_instead_of_spinning() {
    let seg = Seg::new(4);
    let q = seg.q();
    // A slot a lap ahead of a position the tail never passed reads as a position routed and
    // released (a stall, docs/design.md §11): passed, by senders and then by receivers.
    seg.words[seg.g.slot_word(0)].store(8, Ordering::Relaxed);
    assert_eq!(
        Receiver::new(1).begin(&q),
        RecvBegin::Empty(0),
        "not before the tail"
    );
    assert_eq!(Sender::new(0).begin(&q), SendBegin::Claimed(1));
    assert_eq!(Receiver::new(1).begin(&q), RecvBegin::Empty(1));
    // Every slot forged far ahead: each call passes a bounded number of positions, then
    // reports full, never spins.
    let seg = Seg::new(4);
    let q = seg.q();
    for i in 0..4 {
        seg.words[seg.g.slot_word(i)].store(1 << 40, Ordering::Relaxed);
    }
    assert!(matches!(Sender::new(0).begin(&q), SendBegin::Full(_)));
    let tail = q.tail();
    assert!(tail > 0 && tail < 100, "bounded: {tail}");
    assert!(matches!(Receiver::new(1).begin(&q), RecvBegin::Empty(_)));
    assert!(q.head() <= tail, "receivers never pass the tail");
    // Positions at the limit.
    seg.words[crate::segment::header::W_CURSOR].store(POS_LIMIT, Ordering::Relaxed);
    assert_eq!(Sender::new(0).begin(&q), SendBegin::Full(POS_LIMIT));
    // A forged length is refused, not copied.
    let seg = Seg::new(4);
    let q = seg.q();
    let s = Sender::new(0);
    send(&q, &s, 1);
    seg.words[seg.g.slot_word(0) + 1].store(1 << 40, Ordering::Relaxed);
    let r = Receiver::new(1);
    assert_eq!(r.begin(&q), RecvBegin::Claimed(0));
    assert_eq!(r.read(&q, 0, &mut [0u64; 2]), None);
}

#[test]
fn a_dead_holders_claim_is_kept_while_a_live_loser_names_its_position() {
    // The dead sender took position 0; a live sender named 0 too and lost the CAS (it has not
    // re-named yet). The attach's repair must keep the dead claim, or nothing names 0 once the
    // loser moves on.
    let seg = Seg::new(4);
    let q = seg.q();
    let live = crate::test_live::ModelLive::plain(MAX_PRODUCERS);
    let dead = Sender::new(0);
    assert_eq!(dead.begin(&q), SendBegin::Claimed(0));
    q.claim_word(1)
        .store(Claim::Send(0).word(), Ordering::Relaxed);
    live.die(0);
    assert_eq!(repair_entry(&q, &&live, 0), Repair::Pending);
    assert_eq!(
        q.claim_word(0).load(Ordering::Relaxed),
        Claim::Send(0).word(),
        "kept"
    );
    // The loser re-names position 1 and publishes it; the stall repair then finds 0.
    assert_eq!(send(&q, &Sender::new(1), 7), Some(1));
    assert_eq!(repair_stalled_recv(&q, &&live, 0, 2), Repair::Skipped);
    assert_eq!(
        q.claim_word(0).load(Ordering::Relaxed),
        0,
        "cleared once repaired"
    );
    assert_eq!(recv(&q, &Receiver::new(2)), Some(7));
    assert_eq!(q.totals(), (1, 0, 0));
}

/// The state word of `pos`'s slot.
fn state(seg: &Seg, pos: u64) -> u64 {
    seg.words[seg.g.slot_word(pos)].load(Ordering::Relaxed)
}

/// Receives until empty, running the receivers' stall repair once when it finds nothing, as
/// a receiver's periodic look does (orphans are adopted there).
fn recv_all(q: &QueueRing<'_>, r: &Receiver, live: &crate::test_live::ModelLive) -> Vec<u64> {
    let mut got = Vec::new();
    for _ in 0..16 {
        match recv(q, r) {
            Some(tag) => got.push(tag),
            None => {
                if repair_stalled_recv(q, &live, q.head(), 2) == Repair::None {
                    break;
                }
            }
        }
    }
    got
}

#[test]
fn a_stalled_sender_is_passed_and_sends_its_item_again_exactly_once() {
    let seg = Seg::new(4);
    let q = seg.q();
    let live = crate::test_live::ModelLive::plain(MAX_PRODUCERS);
    let (stalled, s, r) = (Sender::new(0), Sender::new(1), Receiver::new(2));
    assert_eq!(stalled.begin(&q), SendBegin::Claimed(0));
    stalled.write(&q, 0, &[0xee; 16]);
    send(&q, &s, 7);
    assert_eq!(recv(&q, &r), None, "position 0 is claimed, not published");
    assert_eq!(repair_stalled_recv(&q, &&live, 0, 2), Repair::Held);
    assert!(!pass_stalled_send(&q, 1), "position 1 holds an item");
    assert!(pass_stalled_send(&q, 0), "held past the bound: passed");
    assert!(!pass_stalled_send(&q, 0), "once");
    assert!(is_held(state(&seg, 0)));
    assert_eq!(
        recv(&q, &r),
        Some(7),
        "receivers move past the passed position"
    );
    // The sender resumes: its publish is refused, the slot released for the next lap.
    assert!(!stalled.commit(&q, 0));
    assert_eq!(state(&seg, 0), 4, "free for position 4");
    assert_eq!(
        send(&q, &stalled, 5),
        Some(2),
        "sent again at a new position"
    );
    assert_eq!(recv(&q, &r), Some(5));
    for tag in [8, 9] {
        send(&q, &s, tag).expect("room");
    }
    assert_eq!(recv_all(&q, &r, &live), [8, 9]);
    assert_eq!(q.totals(), (0, 0, 1));
}

#[test]
fn a_passed_sender_is_refused_even_before_the_head_moves_past_it() {
    let seg = Seg::new(4);
    let q = seg.q();
    let r = Receiver::new(2);
    let stalled = Sender::new(0);
    assert_eq!(stalled.begin(&q), SendBegin::Claimed(0));
    send(&q, &Sender::new(1), 7);
    assert!(pass_stalled_send(&q, 0));
    stalled.write(&q, 0, &[5u8; 16]);
    assert!(!stalled.commit(&q, 0), "the pass won the state word");
    assert_eq!(recv(&q, &r), Some(7), "position 0 is dead: passed");
    assert_eq!(send(&q, &stalled, 5), Some(2));
    assert_eq!(recv(&q, &r), Some(5));
    assert_eq!(recv(&q, &r), None);
}

#[test]
fn a_passed_sender_whose_slot_was_routed_lap_after_lap_frees_it_for_the_next_lap() {
    let seg = Seg::new(1);
    let q = seg.q();
    let live = crate::test_live::ModelLive::plain(MAX_PRODUCERS);
    let (stalled, s, r) = (Sender::new(0), Sender::new(1), Receiver::new(2));
    assert_eq!(stalled.begin(&q), SendBegin::Claimed(0));
    assert_eq!(recv(&q, &r), None);
    assert!(pass_stalled_send(&q, 0));
    // Every lap of the one slot is routed around while its holder lives.
    for pos in 1..4 {
        let SendBegin::Held(at, st) = s.begin(&q) else {
            panic!("the slot is held")
        };
        assert_eq!(at, pos);
        assert_eq!(route_held(&q, &&live, at, st, 1), Route::Routed);
    }
    assert_eq!(recv(&q, &r), None, "receivers pass the dead positions");
    assert_eq!(q.head(), 3);
    stalled.write(&q, 0, &[9u8; 16]);
    assert!(!stalled.commit(&q, 0));
    assert_eq!(
        state(&seg, 0),
        4,
        "free for the lap after the last routed one"
    );
    assert_eq!(send(&q, &stalled, 9), Some(4));
    assert_eq!(recv_all(&q, &r, &live), [9]);
    assert_eq!(send(&q, &s, 4), Some(5));
    assert_eq!(recv(&q, &r), Some(4));
}

#[test]
fn a_stalled_receiver_is_routed_around_keeps_its_item_and_its_late_free_is_moved_on() {
    let seg = Seg::new(2);
    let q = seg.q();
    let live = crate::test_live::ModelLive::plain(MAX_PRODUCERS);
    let (s, stalled, r) = (Sender::new(0), Receiver::new(1), Receiver::new(2));
    send(&q, &s, 1);
    send(&q, &s, 2);
    assert_eq!(stalled.begin(&q), RecvBegin::Claimed(0));
    assert_eq!(recv(&q, &r), Some(2));
    assert_eq!(s.begin(&q), SendBegin::Full(2), "slot 0 is being read");
    assert_eq!(repair_stalled_send(&q, &&live, 2, 0), Repair::Held);
    assert!(route_stalled_recv(&q, 2), "held past the bound: routed");
    assert!(!route_stalled_recv(&q, 2), "once");
    assert_eq!(send(&q, &s, 3), Some(3), "the senders go on");
    assert_eq!(recv(&q, &r), Some(3));
    // The receiver resumes: the item it claimed is whole; its free names position 2, which
    // the tail has passed: a stale free.
    let mut buf = [0u64; 2];
    assert_eq!(stalled.read(&q, 0, &mut buf), Some(16));
    assert_eq!(buf, [1, 1]);
    stalled.finish(&q, 0);
    assert_eq!(state(&seg, 0), 2);
    assert_eq!(s.begin(&q), SendBegin::Full(4));
    assert_eq!(repair_stalled_send(&q, &&live, 4, 0), Repair::Dead);
    assert_eq!(state(&seg, 0), 4, "moved on to the tail's lap");
    assert_eq!(send(&q, &s, 4), Some(4));
    assert_eq!(recv(&q, &r), Some(4));
    assert_eq!(q.totals(), (0, 0, 1));
}

#[test]
fn a_held_slot_whose_holder_died_is_freed_by_the_next_sender_to_meet_it() {
    for receiver_held in [true, false] {
        let seg = Seg::new(2);
        let q = seg.q();
        let live = crate::test_live::ModelLive::plain(MAX_PRODUCERS);
        let (s, r) = (Sender::new(0), Receiver::new(2));
        if receiver_held {
            send(&q, &s, 1);
            send(&q, &s, 2);
            assert_eq!(Receiver::new(1).begin(&q), RecvBegin::Claimed(0));
            assert_eq!(recv(&q, &r), Some(2));
            assert!(route_stalled_recv(&q, 2));
        } else {
            assert_eq!(Sender::new(1).begin(&q), SendBegin::Claimed(0));
            send(&q, &s, 2);
            assert!(pass_stalled_send(&q, 0));
            assert_eq!(recv(&q, &r), Some(2));
        }
        live.die(1);
        assert_eq!(
            repair_entry(&q, &&live, 1),
            Repair::Pending,
            "the dead holder's claim is kept while its slot is held"
        );
        let (pos, st) = loop {
            match s.begin(&q) {
                SendBegin::Held(pos, st) => break (pos, st),
                SendBegin::Claimed(pos) => {
                    s.write(&q, pos, &[6u8; 16]);
                    assert!(s.commit(&q, pos));
                    assert_eq!(recv(&q, &r), Some(u64::from_ne_bytes([6; 8])));
                }
                SendBegin::Full(pos) => panic!("full at {pos}"),
            }
        };
        assert_eq!(
            route_held(&q, &&live, pos, st, 0),
            Route::Freed {
                lost: receiver_held
            }
        );
        assert_eq!(
            send(&q, &s, 9),
            Some(pos),
            "the slot serves the senders again"
        );
        assert_eq!(recv(&q, &r), Some(9));
        assert_eq!(q.totals(), (0, u64::from(receiver_held), 1));
    }
}

#[test]
fn a_dead_position_nobody_names_is_moved_on_by_the_receivers() {
    // The tail passed position 0 (routed) and its slot was then freed for 0 by a late free:
    // nobody will publish 0.
    let seg = Seg::new(2);
    let q = seg.q();
    let live = crate::test_live::ModelLive::plain(MAX_PRODUCERS);
    seg.words[crate::segment::header::W_CURSOR].store(1, Ordering::Relaxed);
    let r = Receiver::new(2);
    assert_eq!(r.begin(&q), RecvBegin::Empty(0));
    assert_eq!(repair_stalled_recv(&q, &&live, 0, 2), Repair::Dead);
    assert_eq!(r.begin(&q), RecvBegin::Empty(1), "position 0 passed");
    // A position a live sender names is not: it is waited for.
    let s = Sender::new(0);
    assert_eq!(s.begin(&q), SendBegin::Claimed(1));
    assert_eq!(repair_stalled_recv(&q, &&live, 1, 2), Repair::Held);
}

#[test]
fn a_passed_position_is_not_passed_by_receivers_before_the_tail() {
    // A sender routed position 0's slot (state `lap | SKIP`) but has not moved the tail yet:
    // receivers at the head see nothing to do until it does.
    let seg = Seg::new(2);
    let q = seg.q();
    seg.words[seg.g.slot_word(0)].store(SKIP, Ordering::Relaxed);
    let r = Receiver::new(2);
    assert_eq!(r.begin(&q), RecvBegin::Empty(0));
    assert!(!q.has_item());
    assert!(q.has_space(), "a sender moves the tail past it");
    assert_eq!(send(&q, &Sender::new(0), 1), Some(1));
    assert!(q.has_item());
    assert_eq!(recv(&q, &r), Some(1));
}

/// A claim word keeps naming the last position its owner completed, and a drop does not clear
/// it: a dead receiver's claim of an item it *finished* long before must not make the freeing
/// of a dead sender's held slot count a loss. Receiver 3 receives position 0 whole and dies;
/// sender 1 claims position 2 (slot 0), is passed, and dies holding it; the next sender to meet
/// slot 0 frees it, and nothing is counted lost (`route_held` takes the latest claim naming the
/// slot as its holder).
#[test]
fn a_dead_receivers_finished_claim_does_not_make_a_dead_senders_held_slot_count_a_loss() {
    let seg = Seg::new(2);
    let q = seg.q();
    let live = crate::test_live::ModelLive::plain(MAX_PRODUCERS);
    let (s, r, finished) = (Sender::new(0), Receiver::new(2), Receiver::new(3));
    send(&q, &s, 10);
    send(&q, &s, 11);
    assert_eq!(recv(&q, &finished), Some(10), "position 0, received whole");
    assert_eq!(recv(&q, &r), Some(11));
    let stalled = Sender::new(1);
    assert_eq!(stalled.begin(&q), SendBegin::Claimed(2));
    send(&q, &s, 12);
    assert!(pass_stalled_send(&q, 2));
    assert_eq!(recv(&q, &r), Some(12));
    live.die(3);
    live.die(1);
    let SendBegin::Held(4, st) = s.begin(&q) else {
        panic!("slot 0 is held by the dead, passed sender")
    };
    assert_eq!(
        route_held(&q, &&live, 4, st, 0),
        Route::Freed { lost: false }
    );
    assert_eq!(
        q.totals(),
        (0, 0, 1),
        "nothing was lost: 10, 11 and 12 were received"
    );
}

/// An idle live participant's claim of the last position it completed must not keep a dead
/// holder's slot routed lap after lap (on a one-slot queue: no item could be sent). Receiver 2
/// receives position 0 and idles; sender 1 claims position 1, is passed and dies holding the
/// slot: the next sender to meet it frees it at once.
#[test]
fn an_idle_receivers_finished_claim_does_not_keep_a_dead_holders_slot_routed() {
    let seg = Seg::new(1);
    let q = seg.q();
    let live = crate::test_live::ModelLive::plain(MAX_PRODUCERS);
    let (s, idle) = (Sender::new(0), Receiver::new(2));
    send(&q, &s, 10);
    assert_eq!(
        recv(&q, &idle),
        Some(10),
        "position 0; receiver 2 now idles"
    );
    let stalled = Sender::new(1);
    assert_eq!(stalled.begin(&q), SendBegin::Claimed(1));
    assert!(pass_stalled_send(&q, 1));
    live.die(1);
    let mut routed = 0;
    for _ in 0..8 {
        match s.begin(&q) {
            SendBegin::Held(pos, st) => match route_held(&q, &&live, pos, st, 0) {
                Route::Routed => routed += 1,
                Route::Freed { .. } => break,
            },
            SendBegin::Claimed(_) | SendBegin::Full(_) => break,
        }
    }
    assert_eq!(routed, 0, "the dead holder's slot is freed at once");
}

#[test]
fn a_stall_is_timed_from_the_first_look_of_any_participant_of_the_role() {
    use super::participant::{StallClock, Stuck};
    let words = [AtomicU64::new(0), AtomicU64::new(0)];
    let clock = StallClock {
        pos: &words[0],
        at: &words[1],
    };
    let mut first = Stuck::default();
    first.at(5);
    assert!(!first.held_past(100, Some(50), clock), "first look at 100");
    // A receiver that was stopped meanwhile looks first at 160: 60 ns after the first look.
    let mut late = Stuck::default();
    late.at(5);
    assert!(late.held_past(160, Some(50), clock));
    assert!(!first.held_past(140, Some(50), clock));
    assert!(first.held_past(150, Some(50), clock));
    // Another position starts its own clock; no bound never passes.
    let mut other = Stuck::default();
    other.at(6);
    assert!(!other.held_past(170, Some(50), clock));
    assert!(!other.held_past(10_000, None, clock));
    assert!(other.held_past(220, Some(50), clock));
}

/// The sender of the item a stopped receiver holds keeps naming that position after publishing
/// it; when the receiver dies, the sender's idle claim of the same position must not be taken
/// for the holder (a receiver's claim of a position is later than its sender's).
#[test]
fn the_senders_finished_claim_of_a_dead_receivers_item_does_not_keep_its_slot_routed() {
    let seg = Seg::new(1);
    let q = seg.q();
    let live = crate::test_live::ModelLive::plain(MAX_PRODUCERS);
    let (idle, s) = (Sender::new(0), Sender::new(1));
    assert_eq!(
        send(&q, &idle, 1),
        Some(0),
        "sender 0 names position 0, then idles"
    );
    assert_eq!(Receiver::new(2).begin(&q), RecvBegin::Claimed(0));
    assert!(
        route_stalled_recv(&q, 1),
        "the stopped receiver's slot is routed"
    );
    live.die(2);
    let SendBegin::Held(pos, st) = s.begin(&q) else {
        panic!("the slot is held")
    };
    assert_eq!(
        route_held(&q, &&live, pos, st, 1),
        Route::Freed { lost: true },
        "the dead receiver is the holder"
    );
}
