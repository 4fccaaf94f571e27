//! Model-based tests of the public API on in-process buses (docs/design.md §6, §9): random
//! interleavings of publishing and receiving by several subscribers, each result compared with a
//! reference model of a ring that keeps the last `N` messages.
//!
//! The model knows only the published range `[first, end)`: a subscriber expecting `next`
//! gets the message `next` if it is among the last `N`, nothing if `next >= end`, and otherwise
//! a lap whose loss follows from its lap policy. Every `try_recv` must match the model exactly,
//! message bytes included, and `received + lost` must equal the sequence numbers it passed.
//!
//! Runs under miri too (`.ci/miri.sh`), with fewer cases.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use proptest::prelude::*;
use shmbus::{Bus, BusBuilder, LapPolicy, Publisher, Recv, Start, Subscriber};

/// Most empty polls before a subscriber reads the write cursor (the subscriber's
/// `CURSOR_CHECK_EVERY`).
const HIDDEN_LAP_POLLS: u32 = 1024;

/// Payload capacity of the model buses: a sequence number plus up to 7 bytes of padding.
const CAPACITY: usize = 16;

/// The bytes published as sequence `seq`: the sequence number, then `seq % 8` bytes that
/// depend on it, so lengths vary and every byte is checked.
fn message(seq: u64) -> Vec<u8> {
    let mut m = seq.to_le_bytes().to_vec();
    m.extend((0..seq % 8).map(|i| (seq as u8).wrapping_mul(31).wrapping_add(i as u8)));
    m
}

fn bus(slots: u64, first: u64) -> Bus {
    BusBuilder::new("model")
        .slots(slots)
        .capacity(CAPACITY)
        .first_sequence(first)
        .in_process()
        .expect("a valid in-process bus")
}

/// What the reference model predicts for one `try_recv`.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Expect {
    Message(u64),
    Empty,
    Lapped(u64),
}

/// The reference: the published range and the ring size, nothing else.
#[derive(Clone, Copy, Debug)]
struct RingModel {
    slots: u64,
    first: u64,
    /// One past the last published sequence (the cursor).
    end: u64,
}

impl RingModel {
    /// The oldest message still in the ring.
    fn oldest(&self) -> u64 {
        self.first.max(self.end.saturating_sub(self.slots))
    }

    /// Whether the slot of `seq` holds any published message.
    fn written(&self, seq: u64) -> bool {
        seq.wrapping_sub(self.first) & (self.slots - 1) < self.end - self.first
    }

    #[allow(deprecated)] // `Start::Newest` is the old name of `Start::Next`.
    fn start(&self, start: Start) -> u64 {
        match start {
            Start::Next | Start::Newest => self.end,
            Start::Oldest => self.oldest(),
            Start::Last(n) => self.end.saturating_sub(n).max(self.oldest()),
            Start::Sequence(s) => s,
        }
    }
}

/// A subscriber of the model: where it is, how it resumes after a lap, and its books.
#[derive(Clone, Debug)]
struct SubModel {
    policy: LapPolicy,
    start: u64,
    next: u64,
    received: u64,
    lost: u64,
    laps: u64,
}

impl SubModel {
    fn new(ring: &RingModel, start: Start, policy: LapPolicy) -> Self {
        let next = ring.start(start);
        SubModel {
            policy,
            start: next,
            next,
            received: 0,
            lost: 0,
            laps: 0,
        }
    }

    /// One `try_recv` against the model ring (no write in progress: publishing is synchronous).
    fn recv(&mut self, ring: &RingModel) -> Expect {
        if self.next >= ring.end {
            return Expect::Empty;
        }
        if self.next >= ring.oldest() {
            self.next += 1;
            self.received += 1;
            return Expect::Message(self.next - 1);
        }
        // Lapped: resume at the oldest intact message, or at the newest if the policy says so
        // (publishing is synchronous here, so nobody laps the subscriber while it resyncs).
        let target = if self.policy == LapPolicy::Newest {
            ring.end.saturating_sub(1).max(ring.first)
        } else {
            ring.oldest()
        };
        let new = if target > self.next {
            target
        } else {
            self.next + 1
        };
        let lost = new - self.next;
        self.next = new;
        self.lost += lost;
        self.laps += 1;
        Expect::Lapped(lost)
    }
}

/// Compares one real receive with the model's prediction.
///
/// A lap the slot does not show (the expected sequence's slot was never written, as for a start
/// below the first sequence) is found from the write cursor, which an empty poll reads only
/// once in a while: such a lap may first read as `Empty`, up to `HIDDEN_LAP_POLLS` times.
fn check_recv(
    sub: &mut Subscriber,
    expect: &Expect,
    hidden_lap: bool,
) -> Result<(), TestCaseError> {
    let mut polls = 1;
    let got = loop {
        match sub.try_recv() {
            Recv::Empty if hidden_lap && polls < HIDDEN_LAP_POLLS => polls += 1,
            got => break got,
        }
    };
    match (got, expect) {
        (Recv::Message(m), Expect::Message(seq)) => {
            prop_assert_eq!(m.seq(), *seq);
            prop_assert_eq!(m.bytes(), &message(*seq)[..]);
        }
        (Recv::Empty, Expect::Empty) => {}
        (Recv::Lapped { lost }, Expect::Lapped(want)) => prop_assert_eq!(lost, *want),
        (got, want) => prop_assert!(false, "got {:?}, model says {:?}", got, want),
    }
    Ok(())
}

#[derive(Clone, Debug)]
enum Op {
    /// Publish this many messages.
    Publish(u64),
    /// Publish exactly this many times the ring size.
    PublishLaps(u64),
    /// `try_recv` on subscriber `i % count` (if any).
    Recv(usize),
    /// Several receives in a row on one subscriber.
    Drain(usize, usize),
    /// A new subscriber.
    Subscribe(StartSpec, LapPolicy),
}

/// A start position, resolved against the bus when the subscriber is made.
#[derive(Clone, Copy, Debug)]
enum StartSpec {
    Newest,
    Oldest,
    Last(u64),
    /// `first + offset` (may be ahead of the cursor).
    After(u64),
    /// Far behind the first sequence (a huge lap on a bus that starts high).
    FarBehind,
}

impl StartSpec {
    fn resolve(self, ring: &RingModel) -> Start {
        match self {
            StartSpec::Newest => Start::Next,
            StartSpec::Oldest => Start::Oldest,
            StartSpec::Last(n) => Start::Last(n),
            StartSpec::After(o) => Start::Sequence(ring.first + o),
            // At least a ring behind the first sequence, so that its slot is certainly "lapped"
            // (with fewer, it would be a sequence that is never written: a stall, not a lap).
            StartSpec::FarBehind if ring.first > ring.slots => {
                Start::Sequence((ring.first - ring.slots - 1) / 2)
            }
            StartSpec::FarBehind => Start::Sequence(ring.first),
        }
    }
}

fn policy() -> impl Strategy<Value = LapPolicy> {
    prop_oneof![Just(LapPolicy::Oldest), Just(LapPolicy::Newest)]
}

fn start_spec() -> impl Strategy<Value = StartSpec> {
    prop_oneof![
        Just(StartSpec::Newest),
        Just(StartSpec::Oldest),
        (0u64..20).prop_map(StartSpec::Last),
        (0u64..40).prop_map(StartSpec::After),
        Just(StartSpec::FarBehind),
    ]
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => (0u64..12).prop_map(Op::Publish),
        1 => (1u64..4).prop_map(Op::PublishLaps),
        4 => any::<usize>().prop_map(Op::Recv),
        1 => (any::<usize>(), 1usize..12).prop_map(|(i, n)| Op::Drain(i, n)),
        1 => (start_spec(), policy()).prop_map(|(s, p)| Op::Subscribe(s, p)),
    ]
}

fn first_seq() -> impl Strategy<Value = u64> {
    // 0; near the largest first sequence the builder accepts (u64::MAX / 8); and in between.
    prop_oneof![Just(0u64), Just(u64::MAX / 8 - 40), 1u64..1 << 40]
}

fn config() -> ProptestConfig {
    if cfg!(miri) {
        // Miri is ~1000x slower; a few cases still run every path through the interpreter.
        ProptestConfig {
            cases: 4,
            failure_persistence: None,
            ..ProptestConfig::default()
        }
    } else {
        ProptestConfig::with_cases(256)
    }
}

struct Harness {
    ring: RingModel,
    publisher: Publisher,
    subs: Vec<(Subscriber, SubModel)>,
}

impl Harness {
    fn new(slots: u64, first: u64) -> (Bus, Self) {
        let bus = bus(slots, first);
        let publisher = bus.publisher().expect("the only publisher");
        let ring = RingModel {
            slots,
            first,
            end: first,
        };
        (
            bus,
            Harness {
                ring,
                publisher,
                subs: Vec::new(),
            },
        )
    }

    fn publish(&mut self, n: u64) -> Result<(), TestCaseError> {
        for _ in 0..n {
            let seq = self
                .publisher
                .publish_bytes(&message(self.ring.end))
                .expect("fits");
            prop_assert_eq!(seq, Some(self.ring.end));
            self.ring.end += 1;
        }
        Ok(())
    }

    fn recv(&mut self, i: usize) -> Result<(), TestCaseError> {
        if self.subs.is_empty() {
            return Ok(());
        }
        let n = self.subs.len();
        let (sub, model) = &mut self.subs[i % n];
        let hidden_lap = model.next < self.ring.oldest() && !self.ring.written(model.next);
        let expect = model.recv(&self.ring);
        check_recv(sub, &expect, hidden_lap)?;
        let stats = sub.stats();
        prop_assert_eq!(
            (stats.received, stats.lost, stats.laps),
            (model.received, model.lost, model.laps)
        );
        prop_assert_eq!(sub.next_seq(), model.next);
        Ok(())
    }

    fn subscribe(
        &mut self,
        bus: &Bus,
        spec: StartSpec,
        policy: LapPolicy,
    ) -> Result<(), TestCaseError> {
        let start = spec.resolve(&self.ring);
        let sub = bus.subscribe(start).lap_policy(policy);
        let model = SubModel::new(&self.ring, start, policy);
        prop_assert_eq!(sub.next_seq(), model.next, "start {:?}", start);
        self.subs.push((sub, model));
        Ok(())
    }

    /// Receives until every subscriber has caught up, then checks the books over each window.
    fn drain_all(&mut self) -> Result<(), TestCaseError> {
        for i in 0..self.subs.len() {
            // Each receive moves a subscriber forward by at least one, or it has caught up.
            let mut budget = self.ring.slots * 4 + 8;
            while self.subs[i].1.next < self.ring.end {
                prop_assert!(budget > 0, "subscriber {} makes no progress", i);
                budget -= 1;
                self.recv(i)?;
            }
            self.recv(i)?; // and now: nothing new
            let (sub, model) = &self.subs[i];
            let stats = sub.stats();
            let window = model.next - model.start;
            if model.start <= self.ring.end {
                prop_assert_eq!(model.next, self.ring.end);
            }
            prop_assert_eq!(
                stats.received + stats.lost,
                window,
                "received + lost == published"
            );
        }
        Ok(())
    }
}

proptest! {
    #![proptest_config(config())]

    /// Every receive of every subscriber equals the last-N model: the message itself, nothing,
    /// or a lap with exactly the model's loss; and received + lost == published per window.
    #[test]
    fn receives_match_the_last_n_model(
        slots in prop_oneof![Just(1u64), Just(2), Just(4), Just(8)],
        first in first_seq(),
        subs in prop::collection::vec((start_spec(), policy()), 1..4),
        ops in prop::collection::vec(op(), 1..60),
    ) {
        let (bus, mut h) = Harness::new(slots, first);
        for (spec, policy) in subs {
            h.subscribe(&bus, spec, policy)?;
        }
        for op in ops {
            match op {
                Op::Publish(n) => h.publish(n)?,
                Op::PublishLaps(m) => h.publish(m * slots)?,
                Op::Recv(i) => h.recv(i)?,
                Op::Drain(i, n) => {
                    for _ in 0..n {
                        h.recv(i)?;
                    }
                }
                Op::Subscribe(spec, policy) => h.subscribe(&bus, spec, policy)?,
            }
        }
        h.drain_all()?;
    }
}

/// A subscriber lapped by exactly `m` times the ring size loses exactly `(m - 1) * N` messages
/// (the oldest intact one is still there), and a huge lap is counted just as exactly.
#[test]
fn laps_by_exact_multiples_of_the_ring_report_exact_loss() {
    for slots in [1u64, 2, 8] {
        for m in 1..=4u64 {
            let bus = bus(slots, 0);
            let mut publisher = bus.publisher().unwrap();
            let mut sub = bus.subscriber();
            for s in 0..m * slots {
                publisher.publish_bytes(&message(s)).unwrap();
            }
            if m > 1 {
                let Recv::Lapped { lost } = sub.try_recv() else {
                    panic!("slots {slots} m {m}: no lap")
                };
                assert_eq!(lost, (m - 1) * slots, "slots {slots}, lapped {m} times");
            }
            let first = (m - 1) * slots;
            for s in first..m * slots {
                let Recv::Message(msg) = sub.try_recv() else {
                    panic!("slots {slots} m {m}: seq {s} missing")
                };
                assert_eq!((msg.seq(), msg.bytes()), (s, &message(s)[..]));
            }
            assert!(matches!(sub.try_recv(), Recv::Empty));
            let st = sub.stats();
            assert_eq!(st.received + st.lost, m * slots);
        }
    }
    // A huge lap: a subscriber that names sequence 0 on a bus starting near u64::MAX / 8.
    let first = u64::MAX / 8 - 2;
    let bus = bus(4, first);
    let mut publisher = bus.publisher().unwrap();
    for _ in 0..6 {
        publisher.publish_bytes(b"x").unwrap();
    }
    let mut sub = bus.subscribe(Start::Sequence(0));
    let Recv::Lapped { lost } = sub.try_recv() else {
        panic!("no lap from sequence 0")
    };
    assert_eq!(
        lost,
        first + 2,
        "resumes at the oldest intact message, {}",
        first + 2
    );
    assert!(matches!(sub.try_recv(), Recv::Message(m) if m.seq() == first + 2));
}

/// Counter wrap row: near the largest first sequence the builder accepts, versions (2s+2) are
/// near 2^63; lap detection is still exact, and a first sequence past the limit is refused.
#[test]
fn lap_detection_is_exact_near_the_largest_first_sequence() {
    assert!(BusBuilder::new("model")
        .first_sequence((u64::MAX / 8) + 1)
        .in_process()
        .is_err());
    let first = u64::MAX / 8;
    let bus = bus(2, first);
    let mut publisher = bus.publisher().unwrap();
    let mut sub = bus.subscribe(Start::Oldest);
    for s in first..first + 5 {
        assert_eq!(publisher.publish_bytes(&message(s)).unwrap(), Some(s));
    }
    assert!(matches!(sub.try_recv(), Recv::Lapped { lost: 3 }));
    for s in first + 3..first + 5 {
        assert!(
            matches!(sub.try_recv(), Recv::Message(m) if m.seq() == s && m.bytes() == message(s))
        );
    }
    assert!(matches!(sub.try_recv(), Recv::Empty));
}

/// Real threads on in-process buses: under miri, these are the concurrency tests that
/// `.ci/miri.sh` runs with `-Zmiri-many-seeds` (filter `threads::`).
mod threads {
    use super::*;

    /// Sustained overload: a publisher that never pauses laps the subscriber again and again, and
    /// the subscriber still delivers messages (no livelock of laps), in order, whole, and with
    /// received + lost == published once the publisher stops.
    #[test]
    fn lapped_subscriber_makes_progress_under_sustained_overload() {
        let total: u64 = if cfg!(miri) { 300 } else { 200_000 };
        for policy in [LapPolicy::Oldest, LapPolicy::Newest] {
            let bus = bus(4, 0);
            let mut publisher = bus.publisher().unwrap();
            let mut sub = bus.subscribe(Start::Oldest).lap_policy(policy);
            let done = Arc::new(AtomicBool::new(false));
            let producer = {
                let done = done.clone();
                std::thread::spawn(move || {
                    for s in 0..total {
                        publisher.publish_bytes(&message(s)).unwrap();
                    }
                    done.store(true, Ordering::Release);
                })
            };
            let mut last = None;
            let mut received_while_running = 0u64;
            loop {
                let finished = done.load(Ordering::Acquire);
                match sub.try_recv() {
                    Recv::Message(m) => {
                        assert_eq!(m.bytes(), &message(m.seq())[..], "torn message {}", m.seq());
                        assert!(
                            last.map_or(true, |l| l < m.seq()),
                            "{} after {last:?}",
                            m.seq()
                        );
                        last = Some(m.seq());
                        if !finished {
                            received_while_running += 1;
                        }
                    }
                    Recv::Lapped { lost } => assert!(lost > 0),
                    Recv::Empty if finished => break,
                    Recv::Empty => std::thread::yield_now(),
                    Recv::Closed => unreachable!("try_recv never reports closed"),
                }
            }
            producer.join().unwrap();
            let st = sub.stats();
            assert_eq!(st.received + st.lost, total, "{policy:?}: {st:?}");
            assert_eq!(sub.next_seq(), total);
            assert!(
                received_while_running > 0 || st.laps == 0,
                "{policy:?}: only laps while overloaded: {st:?}"
            );
        }
    }

    /// Two producers on a multi-producer bus and a subscriber, all at once: every delivered
    /// message is whole (its two words agree), sequences increase, each producer's messages
    /// arrive in the order it sent them, and received + lost == claimed.
    #[test]
    fn multi_producer_messages_arrive_whole_and_in_order() {
        let per_writer: u64 = if cfg!(miri) { 40 } else { 50_000 };
        let bus = BusBuilder::new("model-mp")
            .slots(4)
            .capacity(CAPACITY)
            .multi_producer()
            .in_process()
            .unwrap();
        // A sequence left unwritten (its claim dropped) is skipped after 1 ms, not 50.
        let mut sub = bus.subscribe(Start::Oldest);
        let producers: Vec<_> = (0..2u64)
            .map(|writer| {
                let mut publisher = bus.publisher().unwrap();
                std::thread::spawn(move || {
                    for i in 0..per_writer {
                        let word = writer << 32 | i;
                        let mut m = word.to_le_bytes().to_vec();
                        m.extend((!word).to_le_bytes());
                        publisher.publish_bytes(&m).unwrap();
                    }
                    publisher.stats()
                })
            })
            .collect();
        let mut last_seq = None;
        let mut last_of_writer = [None::<u64>; 2];
        let mut check = |sub: &mut Subscriber| -> bool {
            match sub.try_recv() {
                Recv::Message(m) => {
                    let b = m.bytes();
                    assert_eq!(b.len(), 16, "seq {}", m.seq());
                    let word = u64::from_le_bytes(b[..8].try_into().unwrap());
                    let check = u64::from_le_bytes(b[8..].try_into().unwrap());
                    assert_eq!(check, !word, "torn message at seq {}", m.seq());
                    assert!(
                        last_seq.map_or(true, |l| l < m.seq()),
                        "{} after {last_seq:?}",
                        m.seq()
                    );
                    last_seq = Some(m.seq());
                    let (writer, i) = ((word >> 32) as usize, word & 0xffff_ffff);
                    let prev = &mut last_of_writer[writer];
                    assert!(
                        prev.map_or(true, |p| p < i),
                        "writer {writer}: {i} after {prev:?}"
                    );
                    *prev = Some(i);
                    true
                }
                Recv::Lapped { lost } => {
                    assert!(lost > 0);
                    true
                }
                Recv::Empty => false,
                Recv::Closed => unreachable!("try_recv never reports closed"),
            }
        };
        while producers.iter().any(|p| !p.is_finished()) {
            if !check(&mut sub) {
                std::thread::yield_now();
            }
        }
        let stats: Vec<_> = producers.into_iter().map(|p| p.join().unwrap()).collect();
        // Drain: a dropped claim leaves a sequence that is never written, skipped after the
        // stall timeout.
        let claimed = bus.cursor();
        while sub.next_seq() < claimed {
            if !check(&mut sub) {
                std::thread::yield_now();
            }
        }
        let st = sub.stats();
        assert_eq!(st.received + st.lost, claimed, "{st:?}");
        let published: u64 = stats.iter().map(|s| s.published).sum();
        let dropped: u64 = stats.iter().map(|s| s.dropped).sum();
        assert_eq!(published + dropped, 2 * per_writer, "{stats:?}");
        assert!(st.received <= published);
    }
}

/// Lapped again before any delivery, on a quiet bus: an `Oldest` subscriber resumes at the
/// oldest intact message again and loses exactly the overwritten ones (the jump to the newest
/// is only for a lap while it resyncs).
#[test]
fn second_lap_in_a_row_on_a_quiet_bus_resumes_at_the_oldest() {
    let bus = bus(4, 0);
    let mut publisher = bus.publisher().unwrap();
    let mut sub = bus.subscribe(Start::Oldest);
    let mut next = 0;
    let mut publish = |n: u64| {
        for _ in 0..n {
            publisher.publish_bytes(&message(next)).unwrap();
            next += 1;
        }
    };
    publish(10); // 0..10: oldest intact is 6
    assert!(matches!(sub.try_recv(), Recv::Lapped { lost: 6 }));
    publish(10); // 10..20: 6 is gone again before it was read; oldest intact is 16
    assert!(
        matches!(sub.try_recv(), Recv::Lapped { lost: 10 }),
        "resumes at the oldest intact, 16"
    );
    for seq in 16..20 {
        assert!(matches!(sub.try_recv(), Recv::Message(m) if m.seq() == seq));
    }
    assert_eq!(sub.stats().received + sub.stats().lost, 20);
}

/// Opening with another type of the same size and alignment fails (`u64` vs `i64`).
#[test]
#[cfg_attr(miri, ignore = "needs /dev/shm")]
fn typed_bus_refuses_another_type_of_the_same_size() {
    let name = format!("model-typed-{}", std::process::id());
    let _ = Bus::remove(&name);
    let bus = BusBuilder::new(&name)
        .message_type::<u64>()
        .create()
        .unwrap();
    let err = BusBuilder::new(&name)
        .message_type::<i64>()
        .open()
        .unwrap_err();
    assert!(matches!(err, shmbus::Error::TypeMismatch { .. }), "{err:?}");
    let again = BusBuilder::new(&name).message_type::<u64>().open();
    assert!(again.is_ok(), "the same type opens: {:?}", again.err());
    drop(bus);
    Bus::remove(&name).unwrap();
}
