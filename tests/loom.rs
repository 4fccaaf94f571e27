//! Loom models of the seqlock ring protocol (RELIABILITY "Tests that prove it", row 1).
//!
//! Run with `RUSTFLAGS="--cfg loom" cargo test --release --test loom` (see `.ci/loom.sh`). Each
//! model drives the library's own `ring` functions (through the `loom_api` hook that exists only
//! under `--cfg loom`) over a heap array of loom atomics laid out like a segment: the header
//! words, then the slots. Loom explores the thread interleavings and the weak-memory outcomes
//! of every Relaxed/Acquire/Release access and fence, up to a preemption bound (2, or 1 for the
//! two-writer model; `LOOM_MAX_PREEMPTIONS` overrides).
//!
//! A message for sequence `s` is a payload of `WORDS` words all equal to `tag(s)`, so a torn
//! copy (words of two writers, or a half-written slot) is visible as unequal words, and a
//! message delivered under the wrong sequence number as the wrong value.
#![cfg(loom)]

use loom::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use loom::sync::Arc;
use loom::thread;
use shmbus::loom_api::{busy_version, done_version, Read, Ring, Take};

/// Payload words per message (16 bytes: two words, so a copy can tear between them).
const WORDS: usize = 2;
const LEN: usize = WORDS * 8;

/// The value every payload word of sequence `seq` carries (never 0, the never-written value).
fn tag(seq: u64) -> u64 {
    100 + seq
}

fn payload(seq: u64) -> [u8; LEN] {
    let mut b = [0u8; LEN];
    for c in b.chunks_exact_mut(8) {
        c.copy_from_slice(&tag(seq).to_ne_bytes());
    }
    b
}

/// Runs `f` under loom with preemption bound `bound` (`LOOM_MAX_PREEMPTIONS` overrides it), and
/// reports how many executions it explored. The bounds are chosen so the file runs in minutes.
fn model<F: Fn() + Sync + Send + 'static>(name: &str, bound: usize, f: F) {
    use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
    let mut b = loom::model::Builder::new();
    if b.preemption_bound.is_none() {
        b.preemption_bound = Some(bound);
    }
    let runs = std::sync::Arc::new(AtomicUsize::new(0));
    let counter = runs.clone();
    let start = std::time::Instant::now();
    b.check(move || {
        let n = counter.fetch_add(1, Relaxed) + 1;
        if n % 20_000 == 0 {
            eprintln!("{n} executions...");
        }
        f()
    });
    eprintln!(
        "{name}: {} executions in {:.1?} (preemption bound {:?})",
        runs.load(Relaxed),
        start.elapsed(),
        b.preemption_bound
    );
}

/// A fresh segment-shaped word array for `ring`, with the write cursor at 0.
fn segment(ring: &Ring) -> Arc<Vec<AtomicU64>> {
    Arc::new(
        (0..ring.words_needed())
            .map(|_| AtomicU64::new(0))
            .collect(),
    )
}

/// What one poll of a model subscriber produced.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Polled {
    Message(u64),
    Empty,
    Lapped(u64),
}

/// A subscriber reduced to its protocol: the control flow of `Subscriber::poll`,
/// `check_stall` and `resync` (replicated here, since the subscriber needs a `Segment`), with
/// the arithmetic (`resume_after_lap`, `oldest_intact`) and the read being the library's own.
/// The stall timeout is replaced by an explicit `stalled_is_lost` switch.
struct ModelSub {
    ring: Ring,
    first: u64,
    next: u64,
    to_newest: bool,
    /// Single producer: the cursor counts published messages, so a lap to the oldest intact
    /// message can be checked to skip only overwritten ones. (With several producers it counts
    /// claims, and a sequence a full ring behind the claims is skipped even if still unwritten.)
    single_producer: bool,
    laps_in_row: u32,
    received: u64,
    lost: u64,
    last_delivered: Option<u64>,
    delivered: Vec<u64>,
    buf: Vec<u64>,
}

impl ModelSub {
    fn new(ring: Ring, start: u64, first: u64, to_newest: bool, single_producer: bool) -> Self {
        ModelSub {
            ring,
            first,
            next: start,
            to_newest,
            single_producer,
            laps_in_row: 0,
            received: 0,
            lost: 0,
            last_delivered: None,
            delivered: Vec::new(),
            buf: vec![0; ring.payload_words()],
        }
    }

    /// One `try_recv`. With `stalled_is_lost`, a sequence that is missing while later ones were
    /// claimed is counted lost at once (the subscriber's stall timeout, once every writer is
    /// known to be gone); without it, it is "nothing new yet".
    fn poll(&mut self, w: &[AtomicU64], stalled_is_lost: bool) -> Polled {
        match self.ring.read(w, self.next, &mut self.buf) {
            Read::Message { len } => {
                let seq = self.next;
                assert_eq!(len, LEN, "seq {seq}: length");
                assert!(
                    self.buf[..WORDS].iter().all(|&x| x == tag(seq)),
                    "torn or misnumbered message delivered as seq {seq}: {:?}",
                    &self.buf[..WORDS]
                );
                if let Some(last) = self.last_delivered {
                    assert!(last < seq, "seq {seq} delivered after {last}");
                }
                self.last_delivered = Some(seq);
                self.delivered.push(seq);
                self.next += 1;
                self.received += 1;
                self.laps_in_row = 0;
                Polled::Message(seq)
            }
            Read::Abandoned => {
                self.next += 1;
                self.lost += 1;
                Polled::Lapped(1)
            }
            Read::NotYet | Read::InProgress => {
                let ahead = self.ring.cursor(w).wrapping_sub(self.next);
                if ahead == 0 || ahead > u64::MAX / 2 {
                    Polled::Empty
                } else if ahead > self.ring.slot_count() {
                    self.resync(w)
                } else if stalled_is_lost {
                    self.next += 1;
                    self.lost += 1;
                    Polled::Lapped(1)
                } else {
                    Polled::Empty
                }
            }
            Read::Overwritten => self.resync(w),
        }
    }

    fn resync(&mut self, w: &[AtomicU64]) -> Polled {
        self.laps_in_row += 1;
        let to_newest = self.to_newest || self.laps_in_row > 1;
        let new = self
            .ring
            .resume_after_lap(w, self.next, self.first, to_newest);
        assert!(
            new > self.next,
            "a lap must move forward: {} -> {new}",
            self.next
        );
        if self.single_producer && !to_newest {
            // Resuming at the oldest intact message skips only what is really gone: every
            // skipped slot already holds a later sequence (or is being written with one).
            for s in self.next..new {
                let v = self.ring.version(w, s);
                assert!(
                    v > done_version(s),
                    "seq {s} counted lost but its slot holds version {v}"
                );
            }
        }
        let lost = new - self.next;
        self.lost += lost;
        self.next = new;
        Polled::Lapped(lost)
    }

    /// After every writer has finished: polls until nothing is left, then checks the books.
    fn drain_and_check(&mut self, w: &[AtomicU64], published_end: u64, start: u64) {
        while self.next < published_end {
            assert_ne!(
                self.poll(w, true),
                Polled::Empty,
                "stuck at {} of {published_end}",
                self.next
            );
        }
        assert_eq!(self.next, published_end);
        assert_eq!(
            self.received + self.lost,
            published_end - start,
            "received {} + lost {} over the window {start}..{published_end}",
            self.received,
            self.lost
        );
    }
}

/// Single producer: publishes `seq` exactly as `Publisher` does.
fn publish_single(ring: &Ring, w: &[AtomicU64], seq: u64) {
    ring.begin(w, seq);
    ring.write_bytes(w, seq, 0, &payload(seq));
    ring.commit(w, seq);
}

/// (a) One writer publishing `messages` into two slots (three or more lap the ring), and one
/// reader per entry of `newest` (true: starts at the newest message and resumes there after a
/// lap; false: starts at, and resumes at, the oldest intact one), each polling `polls` times
/// while the writer runs, then draining. Every delivered message is whole and numbered right,
/// sequences increase, nothing intact is counted lost, and received + lost == published.
fn single_writer_model(name: &str, messages: u64, newest: &'static [bool], polls: usize) {
    model(name, 2, move || {
        let ring = Ring::new(2, LEN);
        let w = segment(&ring);

        let writer = {
            let w = w.clone();
            thread::spawn(move || {
                for seq in 0..messages {
                    publish_single(&ring, &w, seq);
                }
            })
        };
        let readers: Vec<_> = newest
            .iter()
            .map(|&to_newest| {
                let w = w.clone();
                thread::spawn(move || {
                    let start = if to_newest {
                        ring.cursor(&w)
                    } else {
                        ring.oldest_intact(&w, ring.cursor(&w), 0)
                    };
                    let mut sub = ModelSub::new(ring, start, 0, to_newest, true);
                    for _ in 0..polls {
                        sub.poll(&w, false);
                    }
                    (sub, start)
                })
            })
            .collect();

        writer.join().unwrap();
        for r in readers {
            let (mut sub, start) = r.join().unwrap();
            sub.drain_and_check(&w, messages, start);
        }
    });
}

/// (a) 1 writer + 2 readers (one per lap policy), 2 slots, 3 messages.
#[test]
fn single_writer_two_readers_untorn_and_exact_loss() {
    single_writer_model("1 writer + 2 readers", 3, &[false, true], 1);
}

/// (a) A reader that keeps polling while it is lapped, resuming at the oldest intact message.
#[test]
fn single_writer_reader_lapped_while_polling_oldest() {
    single_writer_model("1 writer + 1 reader (oldest), 2 polls", 3, &[false], 2);
}

/// (a) As above, resuming at the newest message.
#[test]
fn single_writer_reader_lapped_while_polling_newest() {
    single_writer_model("1 writer + 1 reader (newest), 2 polls", 3, &[true], 2);
}

/// One multi-producer publish as `Publisher::publish_inner` does it: claim, take (retrying a
/// busy slot once, then dropping, like the bounded spin), write, `commit_cas`. Returns the
/// sequence and whether it was published.
fn publish_multi(ring: &Ring, w: &[AtomicU64], writer: u32) -> (u64, bool) {
    let seq = ring.claim(w);
    let mut tries = 0;
    loop {
        match ring.take(w, seq) {
            Take::Taken => break,
            Take::Newer => {
                // Dropped: the slot already holds a later sequence, which must stay.
                assert!(ring.version(w, seq) > busy_version(seq));
                return (seq, false);
            }
            Take::Busy { .. } => {
                tries += 1;
                if tries > 1 {
                    return (seq, false);
                }
                thread::yield_now();
            }
        }
    }
    ring.write_bytes(w, seq, writer, &payload(seq));
    assert!(ring.commit_cas(w, seq), "nobody takes over a live writer");
    (seq, true)
}

/// (b) Two producers, two slots, three claims (sequences 0 and 2 share slot 0), one reader: no
/// torn read, no version moving backwards, and a message more than a lap old is dropped rather
/// than written over the newer one.
#[test]
fn multi_producer_drops_stale_claims_and_never_tears() {
    const POLLS: usize = 3;
    model("2 writers + 1 reader", 1, || {
        let ring = Ring::new(2, LEN);
        let w = segment(&ring);

        let writers: Vec<_> = [(0u32, 2usize), (1, 1)]
            .into_iter()
            .map(|(index, count)| {
                let w = w.clone();
                thread::spawn(move || {
                    (0..count)
                        .map(|_| publish_multi(&ring, &w, index))
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        let reader = {
            let w = w.clone();
            thread::spawn(move || {
                let mut sub = ModelSub::new(ring, 0, 0, false, false);
                let mut seen = [0u64; 2];
                for _ in 0..POLLS {
                    sub.poll(&w, false);
                    for (slot, last) in seen.iter_mut().enumerate() {
                        let v = ring.version(&w, slot as u64);
                        assert!(
                            v >= *last,
                            "slot {slot}: version went back from {last} to {v}"
                        );
                        *last = v;
                    }
                }
                sub
            })
        };

        let outcomes: Vec<(u64, bool)> = writers
            .into_iter()
            .flat_map(|h| h.join().unwrap())
            .collect();
        let mut sub = reader.join().unwrap();
        assert_eq!(ring.cursor(&w), 3);
        let mut seqs: Vec<u64> = outcomes.iter().map(|&(s, _)| s).collect();
        seqs.sort_unstable();
        assert_eq!(seqs, [0, 1, 2], "claims are unique");
        // Each slot ends holding its newest published sequence; a dropped one never replaced it.
        for slot in 0..2u64 {
            let newest = outcomes
                .iter()
                .filter(|&&(s, ok)| ok && s % 2 == slot)
                .map(|&(s, _)| s)
                .max();
            let v = ring.version(&w, slot);
            match newest {
                Some(s) => assert_eq!(v, done_version(s), "slot {slot}"),
                None => assert_eq!(v, 0, "slot {slot}"),
            }
        }
        // Every published message that is still intact is delivered on draining.
        sub.drain_and_check(&w, 3, 0);
        assert!(
            sub.delivered.iter().all(|s| outcomes.contains(&(*s, true))),
            "delivered {:?}, but published only {outcomes:?}",
            sub.delivered
        );
    });
}

/// (c) A writer dies holding a slot (odd version, half its payload written). A new producer
/// attaches: it repairs odd slots of dead writers with `tombstone` (as `Publisher::attach`
/// does) and, finding the dead writer's slot busy a lap later, takes it over. A reader racing
/// with all of it never delivers the half-written message, nor any torn one.
#[test]
fn dead_writer_slot_is_repaired_never_delivered() {
    const POLLS: usize = 3;
    const DEAD: u32 = 1;
    const LIVE: u32 = 0;
    model("dead writer + repairer + reader", 2, || {
        let ring = Ring::new(2, LEN);
        let w = segment(&ring);
        // Set by the dying writer as its last act (Release), read with Acquire by the one who
        // repairs: the kernel releasing a dead process's lock, seen by the next `fcntl`.
        let dead = Arc::new(AtomicBool::new(false));
        let dead_seq = Arc::new(AtomicU64::new(u64::MAX));

        let dying = {
            let (w, dead, dead_seq) = (w.clone(), dead.clone(), dead_seq.clone());
            thread::spawn(move || {
                let seq = ring.claim(&w);
                dead_seq.store(seq, Ordering::Relaxed);
                if ring.take(&w, seq) == Take::Taken {
                    // Half a message: the length and the first word, then death.
                    ring.store_len(&w, seq, DEAD, LEN as u32);
                    ring.store_word(&w, seq, 0, tag(seq));
                }
                dead.store(true, Ordering::Release);
            })
        };
        let live = {
            let (w, dead) = (w.clone(), dead.clone());
            thread::spawn(move || {
                // Attach: repair the odd slots of a writer known to be dead.
                if dead.load(Ordering::Acquire) {
                    for slot in 0..ring.slot_count() {
                        let v = ring.version(&w, slot);
                        if v & 1 == 1 {
                            ring.tombstone(&w, (v - 1) / 2, v);
                        }
                    }
                }
                let mut published = Vec::new();
                for _ in 0..2 {
                    let seq = ring.claim(&w);
                    let mut tries = 0;
                    let ours = loop {
                        match ring.take(&w, seq) {
                            Take::Taken => break true,
                            Take::Newer => break false,
                            Take::Busy { version, writer } => {
                                let gone = writer == Some(DEAD) && dead.load(Ordering::Acquire);
                                if gone && ring.take_over(&w, seq, version) {
                                    break true;
                                }
                                tries += 1;
                                if tries > 1 {
                                    break false;
                                }
                                thread::yield_now();
                            }
                        }
                    };
                    if ours {
                        ring.write_bytes(&w, seq, LIVE, &payload(seq));
                        assert!(ring.commit_cas(&w, seq));
                        published.push(seq);
                    }
                }
                published
            })
        };
        let reader = {
            let w = w.clone();
            thread::spawn(move || {
                let mut sub = ModelSub::new(ring, 0, 0, false, false);
                for _ in 0..POLLS {
                    sub.poll(&w, false);
                }
                sub
            })
        };

        dying.join().unwrap();
        let published = live.join().unwrap();
        let mut sub = reader.join().unwrap();
        let dead_seq = dead_seq.load(Ordering::Relaxed);
        sub.drain_and_check(&w, 3, 0);
        assert!(
            !sub.delivered.contains(&dead_seq),
            "the dead writer's half message was delivered"
        );
        assert!(sub.delivered.iter().all(|s| published.contains(s)));
    });
}
