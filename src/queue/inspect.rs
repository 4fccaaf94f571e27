//! What an inspector sees of a queue's stalls (docs/design.md §11, "Claims and repair",
//! "Stalls"): the participants whose claim word names a position they have not completed.
//! Read-only: it loads claim words, the head, the tail and slot state words, and stores nothing.
//!
//! A claim word keeps naming its participant's last position after the participant completed
//! it (a repairer tells the two apart by the slot's state), so a claim alone is not a hold.
//! The slot's state word says:
//!
//! ```text
//!   claim      state of its slot                  the participant ...
//!   Send(p)    lap(p), tail past p                claimed p and has not published it
//!   Recv(p)    lap(p) | FULL (| SKIP), head past  claimed p's item and has not freed its slot
//!   either     lap(k) | SKIP, lap(p) <= lap(k)    was passed and still holds the slot, if its
//!                                                 claim is the latest one naming the slot
//! ```
//!
//! A held slot (`lap | SKIP`) no longer says which position its holder stopped at, and a
//! claim of an earlier, completed position of the same slot may still name it (a sender that
//! published `p` and sent nothing since, whose receiver of `p` was then routed around). While
//! a slot is held no one claims a later position of it (senders and receivers claim only a
//! slot that is free, or full, for their position), and each position is sent before it is
//! received: so of the claims naming the slot, the holder's is the latest, by position and
//! then receiver after sender.

use crate::segment::header::{Geometry, MAX_PRODUCERS};
use crate::sync::{load_acquire, AtomicU64};

use super::participant::Role;
use super::protocol::{is_held, Claim, QueueRing, FULL, SKIP};

/// What a participant holds, as [`Queue::holds`](crate::Queue::holds) reports it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum HoldState {
    /// A sender claimed the position and has not published it: it is writing the item, or it
    /// stopped between its claim and its publish. Receivers wait for it, up to the stall bound.
    Unpublished,
    /// A receiver claimed the item and has not freed its slot: it is reading, or it stopped
    /// between its claim and its free. Senders a lap later wait for it, up to the stall bound.
    Unfreed,
    /// The participant held the position past the stall bound and the others passed it: the
    /// slot is *held* (no one writes it) until the participant runs again and releases it. A
    /// passed sender sends its item again; a passed receiver keeps the item it claimed.
    Passed,
}

/// A live participant holding a position it has not completed: one of [`Queue::holds`].
///
/// [`Queue::holds`]: crate::Queue::holds
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct QueueHold {
    /// Its participant-table entry.
    pub index: u32,
    /// The pid its entry recorded.
    pub pid: u32,
    /// Sender or receiver, as its claim word says.
    pub role: Role,
    /// The position its claim names.
    pub position: u64,
    /// What it holds.
    pub state: HoldState,
}

/// One entry's uncompleted claim, found by [`find_holds`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Found {
    pub(crate) index: usize,
    pub(crate) claim: Claim,
    pub(crate) state: HoldState,
}

/// The claims of the queue in `words` (shaped as `g`) that name a position their participant
/// has not completed, of participants that `alive` says live; by entry. One look, each word
/// read once (a snapshot of words read one after another: a hold found may end as it is
/// read, and a sender between its claim and its tail CAS is seen only if its CAS is done).
pub(crate) fn find_holds(
    words: &[AtomicU64],
    g: Geometry,
    alive: impl Fn(usize) -> bool,
) -> Vec<Found> {
    let q = QueueRing::new(words, g);
    let mask = g.mask();
    let lap = |pos: u64| pos & !mask;
    // ORDERING: Acquire, as every state load of the protocol (pairs with the publishes, frees
    // and passes that made it); the slot index is masked, so any position is in bounds.
    let state = |pos: u64| load_acquire(&words[g.slot_word(pos)]);
    // The head and tail first: their Acquire loads make the claims of the positions below them
    // visible to the claim loads below (as in the repairs).
    let (head, tail) = (q.head(), q.tail());
    let claims: Vec<(usize, Claim)> = (0..MAX_PRODUCERS)
        .filter_map(|i| {
            // ORDERING: Acquire pairs with the Release claim stores (as in the repairs' scans).
            Claim::from_word(load_acquire(q.claim_word(i))).map(|c| (i, c))
        })
        .collect();
    let at = |c: Claim| match c {
        Claim::Send(p) | Claim::Recv(p) => p,
    };
    // Later in a slot's history: a later position, and at one position the receiver.
    let order = |c: Claim| (at(c), matches!(c, Claim::Recv(_)));
    let mut found = Vec::new();
    for &(index, claim) in &claims {
        let pos = at(claim);
        let st = state(pos);
        let held_here = is_held(st) && lap(pos) <= st & !(FULL | SKIP);
        let hold = if held_here {
            // The holder is the latest claim naming this slot (see the module docs).
            let latest = claims
                .iter()
                .filter(|(_, c)| at(*c) & mask == pos & mask && lap(at(*c)) <= st & !(FULL | SKIP))
                .max_by_key(|(_, c)| order(*c))
                .map(|(i, _)| *i);
            (latest == Some(index)).then_some(HoldState::Passed)
        } else {
            match claim {
                Claim::Send(p) => (tail > p && st == lap(p)).then_some(HoldState::Unpublished),
                Claim::Recv(p) => {
                    (head > p && st & !SKIP == lap(p) | FULL).then_some(HoldState::Unfreed)
                }
            }
        };
        if let Some(state) = hold {
            if alive(index) {
                found.push(Found {
                    index,
                    claim,
                    state,
                });
            }
        }
    }
    found
}

impl Found {
    /// The public form, with the entry's pid.
    pub(crate) fn with_pid(self, pid: u32) -> QueueHold {
        let (role, position) = match self.claim {
            Claim::Send(p) => (Role::Sender, p),
            Claim::Recv(p) => (Role::Receiver, p),
        };
        QueueHold {
            index: self.index as u32,
            pid,
            role,
            position,
            state: self.state,
        }
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use crate::queue::protocol::{
        pass_stalled_send, route_stalled_recv, Receiver, RecvBegin, SendBegin, Sender,
    };
    use crate::sync::Ordering;

    use crate::queue::tests::Seg;

    impl Seg {
        /// The holds of participants all alive but those in `dead`, as (entry, claim, state).
        fn holds(&self, dead: &[usize]) -> Vec<(usize, Claim, HoldState)> {
            find_holds(&self.words, self.g, |i| !dead.contains(&i))
                .into_iter()
                .map(|f| (f.index, f.claim, f.state))
                .collect()
        }
    }

    fn claim_send(q: &QueueRing<'_>, s: &Sender) -> u64 {
        match s.begin(q) {
            SendBegin::Claimed(pos) => pos,
            other => panic!("no room: {other:?}"),
        }
    }

    fn send(q: &QueueRing<'_>, s: &Sender) -> u64 {
        let pos = claim_send(q, s);
        s.write(q, pos, &[1; 16]);
        assert!(s.commit(q, pos), "not passed");
        pos
    }

    fn claim_recv(q: &QueueRing<'_>, r: &Receiver) -> u64 {
        match r.begin(q) {
            RecvBegin::Claimed(pos) => pos,
            other => panic!("no item: {other:?}"),
        }
    }

    fn recv(q: &QueueRing<'_>, r: &Receiver) -> u64 {
        let pos = claim_recv(q, r);
        r.finish(q, pos);
        pos
    }

    #[test]
    fn a_claimed_unpublished_position_is_held_until_it_is_published() {
        let seg = Seg::new(4);
        let q = seg.q();
        let (s, r) = (Sender::new(3), Receiver::new(5));
        assert_eq!(seg.holds(&[]), []);
        let pos = claim_send(&q, &s);
        assert_eq!(
            seg.holds(&[]),
            [(3, Claim::Send(0), HoldState::Unpublished)]
        );
        assert_eq!(seg.holds(&[3]), [], "the dead are repaired, not reported");
        s.write(&q, pos, &[1; 16]);
        assert!(s.commit(&q, pos));
        assert_eq!(
            seg.holds(&[]),
            [],
            "a completed claim still names 0: not a hold"
        );
        let pos = claim_recv(&q, &r);
        assert_eq!(seg.holds(&[]), [(5, Claim::Recv(0), HoldState::Unfreed)]);
        r.finish(&q, pos);
        assert_eq!(seg.holds(&[]), []);
    }

    #[test]
    fn a_tentative_claim_the_tail_has_not_passed_is_not_a_hold() {
        let seg = Seg::new(4);
        seg.q()
            .claim_word(2)
            .store(Claim::Send(0).word(), Ordering::Relaxed);
        assert_eq!(seg.holds(&[]), []);
    }

    #[test]
    fn a_passed_sender_holds_its_slot_and_a_stale_claim_on_the_slot_does_not() {
        let seg = Seg::new(2);
        let q = seg.q();
        let (stalled, s, r) = (Sender::new(0), Sender::new(1), Receiver::new(2));
        // Receiver 3's last claim is position 0 (completed), on the slot position 2 uses.
        send(&q, &s);
        assert_eq!(recv(&q, &Receiver::new(3)), 0);
        send(&q, &s);
        assert_eq!(recv(&q, &r), 1);
        assert_eq!(claim_send(&q, &stalled), 2);
        assert_eq!(send(&q, &s), 3);
        assert!(pass_stalled_send(&q, 2));
        assert_eq!(seg.holds(&[]), [(0, Claim::Send(2), HoldState::Passed)]);
        assert_eq!(recv(&q, &r), 3, "receivers go past the held slot");
        // Senders route around the held slot a lap later: still the same holder.
        let SendBegin::Held(4, _) = s.begin(&q) else {
            panic!("slot 0 is held")
        };
        assert_eq!(seg.holds(&[]), [(0, Claim::Send(2), HoldState::Passed)]);
        assert!(!stalled.commit(&q, 2), "passed: its publish is refused");
        assert_eq!(seg.holds(&[]), [], "it released the slot");
    }

    #[test]
    fn a_routed_receiver_holds_its_slot_and_its_items_sender_does_not() {
        let seg = Seg::new(2);
        let q = seg.q();
        let (s, stalled, r) = (Sender::new(0), Receiver::new(1), Receiver::new(2));
        send(&q, &s);
        assert_eq!(send(&q, &s), 1);
        assert_eq!(claim_recv(&q, &stalled), 0);
        assert_eq!(recv(&q, &r), 1);
        assert!(route_stalled_recv(&q, 2));
        // The sender's claim still names position 1, completed; the receiver holds slot 0.
        assert_eq!(seg.holds(&[]), [(1, Claim::Recv(0), HoldState::Passed)]);
        // The sender of position 0 names the held slot too, and is not its holder.
        seg.q()
            .claim_word(4)
            .store(Claim::Send(0).word(), Ordering::Relaxed);
        assert_eq!(seg.holds(&[]), [(1, Claim::Recv(0), HoldState::Passed)]);
        stalled.finish(&q, 0);
        assert_eq!(seg.holds(&[]), []);
    }
}
