//! Unit tests of the ring protocol on a heap segment: every state a slot can be in, as a reader
//! and as a writer meet it, and the repair of dead writers' claims.

use super::*;
use crate::segment::header::{Geometry, ProducerMode, MAX_PRODUCERS, W_SLOTS};
use proptest::prelude::*;
use std::cell::Cell;

/// A segment-shaped heap array for geometry `g`, cursor at 0.
fn heap(g: &Geometry) -> Vec<AtomicU64> {
    (0..W_SLOTS + g.slot_count as usize * g.stride_words)
        .map(|_| AtomicU64::new(0))
        .collect()
}

/// Liveness set by the test: which entries are alive, and which dead ones may be locked; and
/// the clock.
#[derive(Default)]
struct Script {
    dead: Cell<u64>,
    locked: Cell<u64>,
    live: Cell<u64>,
    now: Cell<u64>,
}

impl Script {
    fn with_live(mask: u64) -> Self {
        let s = Script::default();
        s.live.set(mask);
        s
    }
    fn kill(&self, i: usize) {
        self.live.set(self.live.get() & !(1 << i));
        self.dead.set(self.dead.get() | 1 << i);
    }
}

impl Liveness for Script {
    type Guard = ();
    fn alive(&self, i: usize) -> bool {
        self.live.get() & (1 << i) != 0
    }
    fn any_alive(&self) -> bool {
        self.live.get() != 0
    }
    fn lock_dead(&self, i: usize) -> Option<()> {
        if self.dead.get() & (1 << i) != 0 && self.locked.get() & (1 << i) == 0 {
            self.locked.set(self.locked.get() | 1 << i);
            Some(())
        } else {
            None
        }
    }
    fn now_ns(&self) -> u64 {
        self.now.get()
    }
}

fn publish(ring: &Ring<'_>, w: &mut Writer, live: &Script, bytes: &[u8]) -> Option<u64> {
    let seq = w.begin(ring, live)?;
    w.write_bytes(ring, seq, bytes);
    w.commit(ring, seq);
    Some(seq)
}

#[test]
fn read_sees_not_yet_then_in_progress_then_message_then_overwritten() {
    let g = Geometry::new(4, 24).unwrap();
    let words = heap(&g);
    let ring = Ring::new(&words, g, 0);
    let live = Script::with_live(1);
    let mut buf = vec![0u64; g.payload_words()];
    let mut w = Writer::single(0);
    assert_eq!(ring.read(0, &mut buf), ReadOutcome::NotYet);
    let seq = w.begin(&ring, &live).unwrap();
    assert_eq!(ring.read(0, &mut buf), ReadOutcome::InProgress);
    w.write_bytes(&ring, seq, b"hello, world");
    w.commit(&ring, seq);
    assert_eq!(ring.read(0, &mut buf), ReadOutcome::Message { len: 12 });
    assert_eq!(
        &bytemuck::cast_slice::<u64, u8>(&buf)[..12],
        b"hello, world"
    );
    for s in 1..=4u8 {
        publish(&ring, &mut w, &live, &[s]);
    }
    assert_eq!(ring.read(0, &mut buf), ReadOutcome::Overwritten);
    assert_eq!(ring.read(4, &mut buf), ReadOutcome::Message { len: 1 });
    assert_eq!(ring.cursor(), 5);
}

#[test]
fn forged_length_is_never_copied_past_the_slot() {
    let g = Geometry::new(2, 8).unwrap();
    let words = heap(&g);
    let ring = Ring::new(&words, g, 0);
    let mut buf = vec![0u64; g.payload_words()];
    publish(
        &ring,
        &mut Writer::single(0),
        &Script::with_live(1),
        b"12345678",
    );
    words[g.slot_word(0) + 1].store(0xffff_fff0, Ordering::Relaxed);
    assert_eq!(ring.read(0, &mut buf), ReadOutcome::Abandoned);
}

#[test]
fn abandoned_sequence_reads_as_abandoned_and_laps_older_readers() {
    let g = Geometry::new(2, 8).unwrap();
    let words = heap(&g);
    let ring = Ring::new(&words, g, 0);
    let mut buf = vec![0u64; g.payload_words()];
    let mut w = Writer::single(0);
    let live = Script::with_live(1);
    publish(&ring, &mut w, &live, b"a");
    publish(&ring, &mut w, &live, b"b");
    let seq = w.begin(&ring, &live).unwrap();
    w.abandon(&ring, seq);
    assert_eq!(ring.read(2, &mut buf), ReadOutcome::Abandoned);
    assert_eq!(ring.read(0, &mut buf), ReadOutcome::Overwritten);
    assert_eq!(ring.read(4, &mut buf), ReadOutcome::NotYet);
    assert_eq!(
        ring.cursor(),
        3,
        "an abandoned sequence still advances the cursor"
    );
}

#[test]
fn multi_producer_routes_around_a_live_writers_slot_and_refuses_newer() {
    let g = Geometry::new(2, 8).unwrap();
    let words = heap(&g);
    let ring = Ring::new(&words, g, 0);
    let live = Script::with_live(0b111);
    let (mut a, mut b) = (Writer::multi(0), Writer::multi(1));
    // a claims 0 and holds its slot.
    let s0 = a.begin(&ring, &live).unwrap();
    assert_eq!(s0, 0);
    assert_eq!(ring.claim_word(0).load(Ordering::Relaxed), 1);
    // b claims 1, then 2 (slot of 0, held by live a): it waits a bounded time, gives 2 up
    // without touching the slot, and publishes at 3 instead.
    publish(&ring, &mut b, &live, b"1").unwrap();
    assert_eq!(publish(&ring, &mut b, &live, b"3"), Some(3));
    assert_eq!(ring.cursor(), 4);
    assert_eq!(ring.version(0), busy_version(0), "a's slot untouched");
    // A sequence whose slot a later one owns is refused, and recorded dropped.
    let c = Writer::multi(2);
    assert_eq!(c.take(&ring, &live, 1), Err(writer::TakeFailed::Overtaken));
    assert_eq!(ring.claim_word(2).load(Ordering::Relaxed), 2 | DROPPED);
    // a is untouched and still commits its message.
    a.write_bytes(&ring, s0, b"zero");
    a.commit(&ring, s0);
    let mut buf = vec![0u64; g.payload_words()];
    assert_eq!(ring.read(0, &mut buf), ReadOutcome::Message { len: 4 });
    assert_eq!(ring.read(3, &mut buf), ReadOutcome::Message { len: 1 });
}

#[test]
fn multi_producer_drops_after_every_reclaim_finds_a_held_slot() {
    // One slot, held by live a: every re-claim of b lands on it.
    let g = Geometry::new(1, 8).unwrap();
    let words = heap(&g);
    let ring = Ring::new(&words, g, 0);
    let live = Script::with_live(0b11);
    let (mut a, mut b) = (Writer::multi(0), Writer::multi(1));
    let s0 = a.begin(&ring, &live).unwrap();
    assert_eq!(b.begin(&ring, &live), None);
    let given_up = 1 + MAX_PRODUCERS as u64;
    assert_eq!(
        ring.cursor(),
        1 + given_up,
        "one claim, then one per re-claim"
    );
    assert_eq!(
        ring.claim_word(1).load(Ordering::Relaxed),
        (given_up + 1) | DROPPED
    );
    assert_eq!(ring.version(s0), busy_version(s0), "a's slot untouched");
}

#[test]
fn dead_writers_slot_is_repaired_only_by_its_lock_holder_then_reused() {
    let g = Geometry::new(2, 8).unwrap();
    let words = heap(&g);
    let ring = Ring::new(&words, g, 0);
    let live = Script::with_live(0b11);
    let (mut a, mut b) = (Writer::multi(0), Writer::multi(1));
    let s0 = a.begin(&ring, &live).unwrap();
    a.write_bytes(&ring, s0, b"half");
    live.kill(0);
    publish(&ring, &mut b, &live, b"1").unwrap();
    // b's seq 2 needs slot 0: a is dead, b takes its lock, abandons seq 0, takes the slot.
    assert_eq!(publish(&ring, &mut b, &live, b"2"), Some(2));
    assert_eq!(
        ring.claim_word(0).load(Ordering::Relaxed),
        0,
        "repair clears the claim"
    );
    let mut buf = vec![0u64; g.payload_words()];
    assert_eq!(ring.read(2, &mut buf), ReadOutcome::Message { len: 1 });
    assert_eq!(ring.read(0, &mut buf), ReadOutcome::Overwritten);
}

#[test]
fn repair_abandons_a_claimed_slot_its_dead_claimant_never_took() {
    let g = Geometry::new(4, 8).unwrap();
    let words = heap(&g);
    let ring = Ring::new(&words, g, 0);
    // Entry 3 claimed sequence 0 and died before taking the slot.
    words[W_CURSOR].store(1, Ordering::Relaxed);
    ring.claim_word(3).store(1, Ordering::Relaxed);
    assert_eq!(repair_claim(&ring, 3), Some(0));
    let mut buf = vec![0u64; g.payload_words()];
    assert_eq!(ring.read(0, &mut buf), ReadOutcome::Abandoned);
    // Nothing to repair twice; a dropped claim is never repaired.
    assert_eq!(repair_claim(&ring, 3), None);
    ring.claim_word(2).store(2 | DROPPED, Ordering::Relaxed);
    assert_eq!(repair_claim(&ring, 2), None);
}

#[test]
fn zero_claim_word_never_names_a_writer() {
    // A never-used entry's claim word (0) must not read as "claimant of sequence u64::MAX" or
    // of anything else: only `s + 1` names `s`.
    let g = Geometry::new(2, 8).unwrap();
    let words = heap(&g);
    let ring = Ring::new(&words, g, 0);
    assert_eq!(writer::find_claimant(&ring, 0), None);
    assert_eq!(writer::find_claimant(&ring, u64::MAX), None);
}

#[test]
fn single_producer_repair_abandons_the_odd_slot_and_counts_a_published_sequence() {
    let g = Geometry::new(4, 8).unwrap();
    let words = heap(&g);
    let ring = Ring::new(&words, g, 0);
    let live = Script::with_live(1);
    let mut w = Writer::single(0);
    publish(&ring, &mut w, &live, b"a");
    // Died mid-write of 1.
    w.begin(&ring, &live).unwrap();
    assert_eq!(repair_single(&ring), 1);
    assert_eq!(ring.cursor(), 2);
    let mut buf = vec![0u64; g.payload_words()];
    assert_eq!(ring.read(1, &mut buf), ReadOutcome::Abandoned);
    // Died between the commit and the cursor store: the cursor moves past it.
    let mut w = Writer::single(2);
    let s = w.begin(&ring, &live).unwrap();
    words[g.slot_word(s)].store(done_version(s), Ordering::Release);
    assert_eq!(ring.cursor(), 2);
    assert_eq!(repair_single(&ring), 0);
    assert_eq!(ring.cursor(), 3);
}

/// A reader over the test's script.
fn reader(ring: &Ring<'_>, start: crate::Start) -> Reader {
    Reader::new(ring, start, None)
}

#[test]
fn reader_skips_a_dead_claimants_sequence_but_waits_for_a_live_one() {
    let g = Geometry::new(8, 8).unwrap();
    let words = heap(&g);
    let ring = Ring::new(&words, g, 0);
    let live = Script::with_live(0b11);
    let mut buf = vec![0u64; g.payload_words()];
    let mut r = reader(&ring, crate::Start::Oldest);
    let (mut a, mut b) = (Writer::multi(0), Writer::multi(1));
    let s0 = a.begin(&ring, &live).unwrap();
    publish(&ring, &mut b, &live, b"1").unwrap();
    // a is alive: wait, however often we look.
    for _ in 0..3 {
        assert_eq!(r.poll_checked(&ring, &live, &mut buf[..]), Polled::Empty);
    }
    live.kill(0);
    assert_eq!(
        r.poll_checked(&ring, &live, &mut buf[..]),
        Polled::Lapped { lost: 1 }
    );
    assert_eq!(
        r.poll_checked(&ring, &live, &mut buf[..]),
        Polled::Message { seq: 1, len: 1 }
    );
    let _ = s0;
}

#[test]
fn reader_passes_a_live_claimants_sequence_after_the_stall_bound_only() {
    let g = Geometry::new(8, 8).unwrap();
    let words = heap(&g);
    let ring = Ring::new(&words, g, 0);
    let live = Script::with_live(0b11);
    let mut buf = vec![0u64; g.payload_words()];
    let mut r = reader(&ring, crate::Start::Oldest);
    r.set_stall_bound(Some(100));
    let (mut a, mut b) = (Writer::multi(0), Writer::multi(1));
    live.now.set(1_000);
    let s0 = a.begin(&ring, &live).unwrap();
    publish(&ring, &mut b, &live, b"1").unwrap();
    // The first look starts the clock; waits until the bound has passed since then.
    assert_eq!(r.poll_checked(&ring, &live, &mut buf[..]), Polled::Empty);
    live.now.set(1_099);
    assert_eq!(r.poll_checked(&ring, &live, &mut buf[..]), Polled::Empty);
    assert_eq!(r.stats().lost, 0);
    live.now.set(1_100);
    assert_eq!(
        r.poll_checked(&ring, &live, &mut buf[..]),
        Polled::Lapped { lost: 1 }
    );
    assert_eq!(
        r.poll_checked(&ring, &live, &mut buf[..]),
        Polled::Message { seq: 1, len: 1 }
    );
    // a resumes and publishes 0: the reader, past it, never delivers it; one that had not
    // reached it does.
    a.write_bytes(&ring, s0, b"0");
    a.commit(&ring, s0);
    assert!(!matches!(
        r.poll_checked(&ring, &live, &mut buf[..]),
        Polled::Message { .. }
    ));
    let s = r.stats();
    assert_eq!((s.received, s.lost, s.stalls_passed), (1, 1, 1));
    assert_eq!(s.received + s.lost, r.next_seq());
    let mut behind = reader(&ring, crate::Start::Sequence(0));
    behind.set_stall_bound(Some(100));
    assert_eq!(
        behind.poll_checked(&ring, &live, &mut buf[..]),
        Polled::Message { seq: 0, len: 1 }
    );
}

#[test]
fn reader_skips_a_sequence_its_claimant_dropped() {
    let g = Geometry::new(2, 8).unwrap();
    let words = heap(&g);
    let ring = Ring::new(&words, g, 0);
    let live = Script::with_live(0b11);
    let mut buf = vec![0u64; g.payload_words()];
    let (mut a, mut b) = (Writer::multi(0), Writer::multi(1));
    let s0 = a.begin(&ring, &live).unwrap();
    publish(&ring, &mut b, &live, b"1").unwrap();
    assert_eq!(
        b.begin(&ring, &live),
        Some(3),
        "seq 2 given up (slot held by live a), 3 taken instead"
    );
    a.write_bytes(&ring, s0, b"0");
    a.commit(&ring, s0);
    let mut r = reader(&ring, crate::Start::Sequence(2));
    // Sequence 2 will never be written: skipped, not waited for and not a lap.
    assert_eq!(
        r.poll_checked(&ring, &live, &mut buf[..]),
        Polled::Lapped { lost: 1 }
    );
    assert_eq!(r.next_seq(), 3);
}

#[test]
fn closed_after_a_single_producer_died_between_commit_and_cursor() {
    let g = Geometry::new(4, 8).unwrap();
    let words = heap(&g);
    let ring = Ring::new(&words, g, 0);
    let live = Script::with_live(1);
    let mut buf = vec![0u64; g.payload_words()];
    let mut r = reader(&ring, crate::Start::Next);
    let mut w = Writer::single(0);
    let s = w.begin(&ring, &live).unwrap();
    w.write_bytes(&ring, s, b"x");
    words[g.slot_word(s)].store(done_version(s), Ordering::Release);
    live.kill(0);
    assert_eq!(
        r.poll_checked(&ring, &live, &mut buf[..]),
        Polled::Message { seq: 0, len: 1 }
    );
    assert_eq!(r.poll_checked(&ring, &live, &mut buf[..]), Polled::Closed);
}

#[test]
fn start_sequence_beyond_the_limit_never_aliases_an_old_message() {
    let g = Geometry::new(4, 8).unwrap();
    let words = heap(&g);
    let ring = Ring::new(&words, g, 0);
    let live = Script::with_live(1);
    let mut buf = vec![0u64; g.payload_words()];
    publish(&ring, &mut Writer::single(0), &live, b"zero").unwrap();
    for s in [1u64 << 62, 1 << 63, u64::MAX] {
        let mut r = reader(&ring, crate::Start::Sequence(s));
        assert_eq!(r.poll_checked(&ring, &live, &mut buf[..]), Polled::Empty);
    }
}

#[test]
fn oldest_policy_on_a_quiescent_bus_loses_exactly_the_overwritten_sequences() {
    let g = Geometry::new(8, 8).unwrap();
    let words = heap(&g);
    let ring = Ring::new(&words, g, 0);
    let live = Script::with_live(1);
    let mut buf = vec![0u64; g.payload_words()];
    let mut w = Writer::single(0);
    for i in 0..20u64 {
        publish(&ring, &mut w, &live, &i.to_ne_bytes());
    }
    for s in 0..12 {
        let mut r = reader(&ring, crate::Start::Sequence(s));
        assert_eq!(
            r.poll_checked(&ring, &live, &mut buf[..]),
            Polled::Lapped { lost: 12 - s },
            "from {s}"
        );
        assert_eq!(
            r.poll_checked(&ring, &live, &mut buf[..]),
            Polled::Message { seq: 12, len: 8 }
        );
    }
}

proptest! {
    #[test]
    fn versions_order_sequences(a in 0u64..SEQ_LIMIT, b in 0u64..SEQ_LIMIT) {
        prop_assert_eq!(version_seq(busy_version(a)), a);
        prop_assert_eq!(version_seq(done_version(a)), a);
        prop_assert_eq!(version_seq(abandoned_version(a)), a);
        prop_assert!(busy_version(a) & 1 == 1 && done_version(a) & 1 == 0);
        prop_assert_eq!(a < b, done_version(a) < busy_version(b));
        prop_assert_eq!(a < b, abandoned_version(a) & !ABANDONED < done_version(b));
    }

    #[test]
    fn reader_outcome_matches_slot_history(
        start in prop_oneof![Just(0u64), (1u64 << 60)..(1u64 << 61) - 64],
        published in 0u64..40,
        probe in 0u64..48,
        mode in prop_oneof![Just(ProducerMode::Single), Just(ProducerMode::Multi)],
    ) {
        let g = Geometry::new(8, 16).unwrap();
        let words = heap(&g);
        words[W_CURSOR].store(start, Ordering::Relaxed);
        let ring = Ring::new(&words, g, start);
        let live = Script::with_live(1);
        let mut w = match mode {
            ProducerMode::Single => Writer::single(start),
            ProducerMode::Multi => Writer::multi(0),
        };
        let mut buf = vec![0u64; g.payload_words()];
        for s in start..start + published {
            prop_assert_eq!(publish(&ring, &mut w, &live, &s.to_ne_bytes()), Some(s));
        }
        let seq = start + probe;
        let out = ring.read(seq, &mut buf);
        let end = start + published;
        if seq >= end {
            prop_assert_eq!(out, ReadOutcome::NotYet);
        } else if seq + 8 < end {
            prop_assert_eq!(out, ReadOutcome::Overwritten);
        } else {
            prop_assert_eq!(out, ReadOutcome::Message { len: 8 });
            prop_assert_eq!(buf[0], seq);
        }
    }
}

/// The progress guard (docs/design.md §6, "Laps"): an `Oldest` reader whose resync target is
/// overwritten while it resyncs jumps to the newest instead, and its books balance. Here the
/// reader's cursor read is stale: the producer committed 3 into the slot of 1 (the oldest
/// intact by that cursor) but its cursor store is not visible yet, as happens between a
/// producer's version store and its cursor store.
#[test]
fn lapped_while_resyncing_jumps_to_the_newest() {
    let g = Geometry::new(2, 8).unwrap();
    let words = heap(&g);
    let ring = Ring::new(&words, g, 0);
    let mut buf = vec![0u64; g.payload_words()];
    let live = Script::with_live(1);
    let mut w = Writer::single(0);
    let mut r = Reader::new(&ring, crate::bus::Start::Oldest, None);
    for b in [b"0", b"1", b"2", b"3"] {
        publish(&ring, &mut w, &live, b).unwrap();
    }
    words[W_CURSOR].store(3, Ordering::Relaxed);
    assert_eq!(ring.oldest_intact(3), 1);
    assert_eq!(ring.read(1, &mut buf), ReadOutcome::Overwritten);
    assert_eq!(
        r.poll(&ring, &live, &mut buf[..]),
        Polled::Lapped { lost: 2 }
    );
    assert_eq!(
        r.next_seq(),
        2,
        "the newest by the cursor, not the gone oldest"
    );
    words[W_CURSOR].store(4, Ordering::Relaxed);
    for seq in [2, 3] {
        assert_eq!(
            r.poll(&ring, &live, &mut buf[..]),
            Polled::Message { seq, len: 1 }
        );
    }
    let st = r.stats();
    assert_eq!(st.received + st.lost, 4);
}

// Receiving in place (docs/design.md §6, "Reading in place"): the production visitor of
// `Subscriber::try_recv_with` driven through the production `Reader`.

use crate::bus::view::{InPlace, SlotView, Viewed};
use crate::bus::{LapPolicy, Start};
use crate::segment::payload::Raw;

/// One checked poll of `r` through the in-place visitor running `f`, as `try_recv_with` makes
/// its result.
fn poll_view<R>(
    r: &mut Reader,
    ring: &Ring<'_>,
    live: &Script,
    scratch: &mut [u64],
    f: impl FnOnce(SlotView<'_>) -> R,
) -> Viewed<R> {
    let mut v = InPlace::<Raw, _, _>::new(f, r.exact_len(), scratch);
    let p = r.poll_checked(ring, live, &mut v);
    v.into_viewed(p)
}

/// What a copy-receive's poll result is as a view-receive's, without the value.
fn as_viewed(p: Polled) -> Viewed<()> {
    match p {
        Polled::Message { seq, .. } => Viewed::Message { seq, value: () },
        Polled::Empty | Polled::Idle => Viewed::Empty,
        Polled::Lapped { lost } => Viewed::Lapped { lost },
        Polled::Closed => Viewed::Closed,
    }
}

/// A view-receive's result without its value.
fn shape<R>(v: &Viewed<R>) -> Viewed<()> {
    match *v {
        Viewed::Message { seq, .. } => Viewed::Message { seq, value: () },
        Viewed::Empty => Viewed::Empty,
        Viewed::Lapped { lost } => Viewed::Lapped { lost },
        Viewed::Closed => Viewed::Closed,
    }
}

/// The bytes a view shows, through its atomic word loads.
fn view_bytes(v: SlotView<'_>) -> Vec<u8> {
    let mut b = vec![0u8; v.len()];
    assert_eq!(v.copy_to(&mut b), v.len());
    let from_words: Vec<u8> = v.words().flat_map(u64::to_ne_bytes).collect();
    assert_eq!(&from_words[..v.len()], &b[..], "words() and copy_to agree");
    b
}

/// A 16-byte message of two words, both `tag`.
fn tagged(tag: u64) -> Vec<u8> {
    [tag.to_ne_bytes(), tag.to_ne_bytes()].concat()
}

#[test]
fn view_in_place_sees_what_a_copy_receives_with_the_same_counters() {
    let g = Geometry::new(8, 40).unwrap();
    let words = heap(&g);
    let ring = Ring::new(&words, g, 0);
    let live = Script::with_live(1);
    let mut w = Writer::single(0);
    let (mut copy, mut view) = (reader(&ring, Start::Oldest), reader(&ring, Start::Oldest));
    let mut buf = vec![0u64; g.payload_words()];
    let mut scratch = vec![0u64; g.payload_words()];
    let msgs: [&[u8]; 4] = [
        b"",
        b"x",
        b"exactly8",
        b"thirteen bytes and more, up to forty!",
    ];
    for m in msgs {
        publish(&ring, &mut w, &live, m).unwrap();
    }
    for (seq, m) in msgs.iter().enumerate() {
        let seq = seq as u64;
        let p = copy.poll_checked(&ring, &live, &mut buf[..]);
        assert_eq!(p, Polled::Message { seq, len: m.len() });
        assert_eq!(&bytemuck::cast_slice::<u64, u8>(&buf)[..m.len()], *m);
        let got = poll_view(&mut view, &ring, &live, &mut scratch, view_bytes);
        assert_eq!(
            got,
            Viewed::Message {
                seq,
                value: m.to_vec()
            }
        );
    }
    let ran = std::cell::Cell::new(false);
    let got = poll_view(&mut view, &ring, &live, &mut scratch, |_| ran.set(true));
    assert_eq!(
        (got, ran.get()),
        (Viewed::Empty, false),
        "nothing new: no closure"
    );
    assert_eq!(copy.stats(), view.stats());
}

/// The closure itself laps the reader: it publishes a ring and one more while it holds the view,
/// so the slot it reads is rewritten under it, deterministically (it sees sequence 0's first
/// word and sequence 4's second: a torn view). The view-receive must report the lap that a
/// copy-receive reports after the same publishes, under both policies, and drop the value.
#[test]
fn a_lap_during_the_closure_is_reported_as_a_copy_reports_it_and_its_value_dropped() {
    for policy in [LapPolicy::Oldest, LapPolicy::Newest] {
        let g = Geometry::new(4, 16).unwrap();
        let words = heap(&g);
        let ring = Ring::new(&words, g, 0);
        let live = Script::with_live(1);
        let mut w = Writer::single(0);
        let mut copy = reader(&ring, Start::Oldest);
        let mut view = reader(&ring, Start::Oldest);
        copy.set_policy(policy);
        view.set_policy(policy);
        let mut buf = vec![0u64; g.payload_words()];
        let mut scratch = vec![0u64; g.payload_words()];
        for tag in 1..=2u64 {
            publish(&ring, &mut w, &live, &tagged(tag)).unwrap();
        }
        let seen = std::cell::Cell::new((None, None));
        let got = poll_view(&mut view, &ring, &live, &mut scratch, |v| {
            let first = v.load_word(0);
            // A whole ring and one more: the slot of sequence 0 now holds sequence 4.
            for tag in 3..=7u64 {
                publish(&ring, &mut w, &live, &tagged(tag)).unwrap();
            }
            seen.set((first, v.load_word(1)));
            seen.get()
        });
        assert_eq!(
            seen.get(),
            (Some(1), Some(5)),
            "the closure saw a torn message"
        );
        let lapped = copy.poll_checked(&ring, &live, &mut buf[..]);
        assert!(
            matches!(lapped, Polled::Lapped { .. }),
            "{policy:?}: {lapped:?}"
        );
        assert_eq!(
            shape(&got),
            as_viewed(lapped),
            "{policy:?}: the copy's loss, no value"
        );
        assert_eq!(view.next_seq(), copy.next_seq());
        loop {
            let c = copy.poll_checked(&ring, &live, &mut buf[..]);
            let v = poll_view(&mut view, &ring, &live, &mut scratch, |v| {
                (v.load_word(0), v.load_word(1))
            });
            assert_eq!(shape(&v), as_viewed(c), "{policy:?}");
            match v {
                Viewed::Message { seq, value } => {
                    let want = Some(seq + 1);
                    assert_eq!(value, (want, want), "{policy:?}: whole message {seq}");
                }
                Viewed::Empty => break,
                other => panic!("{policy:?}: unexpected {other:?}"),
            }
        }
        let s = view.stats();
        assert_eq!(s, copy.stats(), "{policy:?}");
        assert_eq!(s.received + s.lost, 7, "{policy:?}: the books balance");
        assert_eq!(s.laps, 1);
    }
}

#[test]
fn the_closure_never_runs_on_an_abandoned_forged_or_mistyped_message() {
    let g = Geometry::new(4, 16).unwrap();
    let words = heap(&g);
    let ring = Ring::new(&words, g, 0);
    let live = Script::with_live(1);
    let mut w = Writer::single(0);
    let mut scratch = vec![0u64; g.payload_words()];
    // 0: abandoned; 1: a forged length past the capacity; 2: 3 bytes on a bus of 8-byte type.
    let seq = w.begin(&ring, &live).unwrap();
    w.abandon(&ring, seq);
    publish(&ring, &mut w, &live, b"forged").unwrap();
    words[g.slot_word(1) + 1].store(17, Ordering::Relaxed);
    publish(&ring, &mut w, &live, b"abc").unwrap();
    publish(&ring, &mut w, &live, b"8 bytes!").unwrap();
    let mut r = Reader::new(&ring, Start::Oldest, Some(8));
    let ran = std::cell::Cell::new(0);
    for _ in 0..3 {
        let got = poll_view(&mut r, &ring, &live, &mut scratch, |_| {
            ran.set(ran.get() + 1)
        });
        assert_eq!(got, Viewed::Lapped { lost: 1 });
    }
    assert_eq!(ran.get(), 0, "the closure never saw them");
    let got = poll_view(&mut r, &ring, &live, &mut scratch, view_bytes);
    assert_eq!(
        got,
        Viewed::Message {
            seq: 3,
            value: b"8 bytes!".to_vec()
        }
    );
    let s = r.stats();
    assert_eq!((s.received, s.lost), (1, 3));
}

#[test]
fn a_view_zeroes_bytes_past_the_length_and_reads_across_words() {
    let g = Geometry::new(2, 24).unwrap();
    let words = heap(&g);
    let ring = Ring::new(&words, g, 0);
    let live = Script::with_live(1);
    let mut w = Writer::single(0);
    publish(&ring, &mut w, &live, b"abcdefghijklm").unwrap();
    // Stale bytes past the length in the last word (what an older, longer message leaves).
    let tail = &words[g.slot_word(0) + 3];
    let mut b = tail.load(Ordering::Relaxed).to_ne_bytes();
    b[5..].fill(0xee);
    tail.store(u64::from_ne_bytes(b), Ordering::Relaxed);
    let mut r = reader(&ring, Start::Oldest);
    let mut scratch = vec![0u64; g.payload_words()];
    let got = poll_view(&mut r, &ring, &live, &mut scratch, |v| {
        assert_eq!((v.len(), v.word_count(), v.is_empty()), (13, 2, false));
        assert_eq!(v.load_word(0), Some(u64::from_ne_bytes(*b"abcdefgh")));
        assert_eq!(v.load_word(1), Some(u64::from_ne_bytes(*b"ijklm\0\0\0")));
        assert_eq!(v.load_word(2), None);
        assert_eq!(v.words().len(), 2);
        assert_eq!(
            v.words().last(),
            v.load_word(1),
            "the iterator masks the tail too"
        );
        assert_eq!(v.read_u64_le(3), Some(u64::from_le_bytes(*b"defghijk")));
        assert_eq!(v.read_u64_le(5), Some(u64::from_le_bytes(*b"fghijklm")));
        assert_eq!(v.read_u64_le(6), None, "past the length");
        assert_eq!(v.read_u64_le(usize::MAX), None, "no overflow");
        assert_eq!(v.read_at::<[u8; 3]>(10), Some(*b"klm"));
        let (mut short, mut long) = ([0u8; 5], [0u8; 20]);
        assert_eq!(v.copy_to(&mut short), 5);
        assert_eq!(v.copy_to(&mut long), 13);
        assert_eq!((&short, &long[..14]), (b"abcde", &b"abcdefghijklm\0"[..]));
    });
    assert_eq!(got, Viewed::Message { seq: 0, value: () });
}

#[test]
fn a_panicking_closure_leaves_the_reader_where_it_was() {
    let g = Geometry::new(2, 8).unwrap();
    let words = heap(&g);
    let ring = Ring::new(&words, g, 0);
    let live = Script::with_live(1);
    publish(&ring, &mut Writer::single(0), &live, b"boom").unwrap();
    let mut r = reader(&ring, Start::Oldest);
    let mut scratch = vec![0u64; g.payload_words()];
    let caught = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        poll_view(&mut r, &ring, &live, &mut scratch, |_| -> () {
            panic!("the caller's bug")
        })
    }));
    assert!(caught.is_err());
    assert_eq!((r.next_seq(), r.stats().received), (0, 0));
    let got = poll_view(&mut r, &ring, &live, &mut scratch, view_bytes);
    assert_eq!(
        got,
        Viewed::Message {
            seq: 0,
            value: b"boom".to_vec()
        }
    );
}
