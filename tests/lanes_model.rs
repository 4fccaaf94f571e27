//! Model-based property test of a lanes pool in one process: random sequences of acquires,
//! publishes of every size (across the ring's end, up to the largest record and past it),
//! closes, single receives and batches, checked step by step against a plain model of what
//! each lane holds (docs/design.md §17). The model predicts every answer exactly: which lane
//! an acquire gets, whether a publish is queued or dropped (and the drop count), the bytes of
//! every record, which lane a single receive serves next (round-robin from the lane after the
//! last one served), when a closed lane is reported, and that nothing is left unreported.

use std::collections::VecDeque;

use proptest::prelude::*;
use shmbus::lanes::{LaneItem, LANE_RECORD_HEADER};
use shmbus::{Error, LaneEvent, LanePublisher, LanePush, LanesBuilder};

const LANES: u32 = 4;
const LANE_BYTES: u64 = 4096;
/// The largest record a 4096-byte lane takes: its header and the zero header after it.
const MAX_RECORD: usize = LANE_BYTES as usize - 2 * LANE_RECORD_HEADER;

#[derive(Clone, Debug)]
enum Op {
    Acquire,
    /// Publish a record of this many bytes from the `n % live`-th live publisher.
    Publish(usize, usize),
    /// Close the `n % live`-th live publisher.
    Close(usize),
    TryRecv,
    /// A batch of at most this many items.
    Batch(usize),
}

fn op() -> impl Strategy<Value = Op> {
    let len = prop_oneof![
        4 => 0usize..64,
        3 => 64usize..1100,
        1 => (MAX_RECORD - 16)..=(MAX_RECORD + 8),
    ];
    prop_oneof![
        2 => Just(Op::Acquire),
        10 => (any::<usize>(), len).prop_map(|(p, n)| Op::Publish(p, n)),
        1 => any::<usize>().prop_map(Op::Close),
        6 => Just(Op::TryRecv),
        2 => (1usize..40).prop_map(Op::Batch),
    ]
}

/// What the model knows of one lane.
#[derive(Debug, Default)]
struct Lane {
    /// Held by a live publisher.
    held: bool,
    /// Closed by its publisher, not yet reported by the consumer.
    closing: bool,
    /// The producer's write position and the consumer's acknowledged read position.
    write: u64,
    read: u64,
    /// Queued records, oldest first: their bytes and the position after each.
    queued: VecDeque<(Vec<u8>, u64)>,
    /// Records dropped in the current (or the closing) session.
    drops: u64,
}

impl Lane {
    fn has_event(&self) -> bool {
        !self.queued.is_empty() || self.closing
    }
}

/// A record's bytes: its lane, a per-lane sequence and its length, so that any mix-up shows.
fn record(lane: u32, seq: u64, len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| (lane as u64 * 131 + seq * 31 + i as u64 * 7) as u8)
        .collect()
}

fn need(len: usize) -> u64 {
    (LANE_RECORD_HEADER + len.next_multiple_of(8)) as u64
}

struct Model {
    lanes: Vec<Lane>,
    /// The lane a single receive looks at first, unless a batch has moved it unseen.
    cursor: Option<u32>,
    /// Records published per lane, for their bytes.
    seq: Vec<u64>,
}

impl Model {
    /// Checks a received record against the head of its lane and pops it.
    fn take_record(&mut self, lane: u32, bytes: &[u8]) {
        let l = &mut self.lanes[lane as usize];
        let (want, end) = l
            .queued
            .pop_front()
            .unwrap_or_else(|| panic!("lane {lane}: a record the model does not hold"));
        assert_eq!(bytes, &want[..], "lane {lane}: bytes or order differ");
        l.read = end;
    }

    /// Checks a reported close: the lane was closing and has nothing left before it.
    fn take_close(&mut self, lane: u32, dropped: u64, died: bool) {
        let l = &mut self.lanes[lane as usize];
        assert!(l.closing, "lane {lane}: a close the model did not expect");
        assert!(
            l.queued.is_empty(),
            "lane {lane}: closed before its records"
        );
        assert_eq!(dropped, l.drops, "lane {lane}: the session's drop count");
        assert!(!died, "lane {lane}: its producer closed it");
        l.closing = false;
        l.drops = 0;
    }

    /// The lane a single receive must serve: the first with a record or a close, from the
    /// cursor round.
    fn next_lane(&self) -> Option<u32> {
        let from = self.cursor?;
        (0..LANES)
            .map(|k| (from + k) % LANES)
            .find(|&i| self.lanes[i as usize].has_event())
    }

    fn any_event(&self) -> bool {
        self.lanes.iter().any(Lane::has_event)
    }
}

fn run(ops: &[Op]) {
    let pool = LanesBuilder::new("model")
        .lanes(LANES)
        .lane_bytes(LANE_BYTES)
        .in_process()
        .unwrap();
    assert_eq!(pool.max_record(), MAX_RECORD);
    let mut consumer = pool.consumer().unwrap();
    let mut live: Vec<LanePublisher> = Vec::new();
    let mut m = Model {
        lanes: (0..LANES).map(|_| Lane::default()).collect(),
        cursor: Some(0),
        seq: vec![0; LANES as usize],
    };
    for op in ops {
        match *op {
            Op::Acquire => {
                let free = m.lanes.iter().position(|l| !l.held && !l.closing);
                match (pool.acquire(), free) {
                    (Ok(p), Some(i)) => {
                        assert_eq!(p.lane() as usize, i, "the lowest free lane");
                        let l = &mut m.lanes[i];
                        l.held = true;
                        // A free lane is drained: the new session writes from its read position.
                        assert!(l.queued.is_empty());
                        l.write = l.read;
                        assert_eq!(p.free_bytes(), LANE_BYTES - LANE_RECORD_HEADER as u64);
                        live.push(p);
                    }
                    (Err(Error::LanesFull { lanes, .. }), None) => assert_eq!(lanes, LANES),
                    (got, want) => panic!("acquire: {got:?}, the model says lane {want:?}"),
                }
            }
            Op::Publish(k, len) => {
                if live.is_empty() {
                    continue;
                }
                let at = k % live.len();
                let p = &mut live[at];
                let lane = p.lane();
                let l = &mut m.lanes[lane as usize];
                let data = record(lane, m.seq[lane as usize], len);
                let got = p.publish(&data);
                if len > MAX_RECORD {
                    assert!(
                        matches!(got, Err(Error::MessageTooLarge { len: n, capacity }) if n == len && capacity == MAX_RECORD),
                        "{got:?}"
                    );
                    continue;
                }
                let fits = l.write + need(len) + LANE_RECORD_HEADER as u64 - l.read <= LANE_BYTES;
                if fits {
                    assert_eq!(got.unwrap(), LanePush::Queued, "lane {lane}, {len} bytes");
                    l.write += need(len);
                    l.queued.push_back((data, l.write));
                    m.seq[lane as usize] += 1;
                } else {
                    l.drops += 1;
                    assert_eq!(
                        got.unwrap(),
                        LanePush::Full { dropped: l.drops },
                        "lane {lane}, {len} bytes"
                    );
                }
                assert_eq!(p.dropped(), l.drops);
                // What the producer last saw free is never more than is free.
                assert!(
                    p.free_bytes() <= LANE_BYTES - LANE_RECORD_HEADER as u64 - (l.write - l.read)
                );
            }
            Op::Close(k) => {
                if live.is_empty() {
                    continue;
                }
                let p = live.swap_remove(k % live.len());
                let l = &mut m.lanes[p.lane() as usize];
                l.held = false;
                l.closing = true;
                p.close();
            }
            Op::TryRecv => {
                let want = m.next_lane();
                let any = m.any_event();
                let event = consumer.try_recv().unwrap();
                let Some(event) = event else {
                    assert!(!any, "nothing received while the model holds an event");
                    continue;
                };
                let lane = match &event {
                    LaneEvent::Record(r) => r.lane(),
                    LaneEvent::Closed(c) => c.lane,
                };
                if let Some(want) = want {
                    assert_eq!(
                        lane, want,
                        "round-robin from the lane after the last served"
                    );
                }
                match event {
                    LaneEvent::Record(r) => m.take_record(lane, &r),
                    LaneEvent::Closed(c) => m.take_close(c.lane, c.dropped, c.producer_died),
                }
                m.cursor = Some((lane + 1) % LANES);
            }
            Op::Batch(max) => {
                let mut items = 0;
                let n = consumer
                    .recv_batch(max, |item| {
                        items += 1;
                        match item {
                            LaneItem::Record { lane, bytes } => m.take_record(lane, bytes),
                            LaneItem::Closed(c) => m.take_close(c.lane, c.dropped, c.producer_died),
                        }
                    })
                    .unwrap();
                assert_eq!(n, items);
                assert!(n <= max);
                if n < max {
                    assert!(!m.any_event(), "a batch stopped short with events left");
                }
                // Where a batch leaves the cursor is its turn-taking's business.
                m.cursor = None;
            }
        }
    }
    // Everything queued and every close is still delivered, in each lane's order.
    for p in live.drain(..) {
        let l = &mut m.lanes[p.lane() as usize];
        l.held = false;
        l.closing = true;
        // Dropping a publisher closes its lane.
        drop(p);
    }
    while let Some(event) = consumer.try_recv().unwrap() {
        match event {
            LaneEvent::Record(r) => {
                let lane = r.lane();
                m.take_record(lane, &r)
            }
            LaneEvent::Closed(c) => m.take_close(c.lane, c.dropped, c.producer_died),
        }
    }
    assert!(!m.any_event(), "events left unreported: {:?}", m.lanes);
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn a_pool_answers_every_step_as_its_model_does(ops in proptest::collection::vec(op(), 1..160)) {
        run(&ops);
    }
}

/// The same model on sequences that fill a lane with records that straddle its end, lap after
/// lap, while the consumer reads one record at a time.
#[test]
fn records_of_every_size_straddle_the_end_lap_after_lap() {
    let mut ops = vec![Op::Acquire];
    for len in (0..=MAX_RECORD)
        .step_by(97)
        .chain([MAX_RECORD - 1, MAX_RECORD])
    {
        ops.extend([Op::Publish(0, len), Op::Publish(0, len), Op::TryRecv]);
    }
    ops.push(Op::Close(0));
    run(&ops);
}
