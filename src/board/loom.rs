//! Loom models of the production board protocol (docs/design.md §12): [`CellWriter`], [`read`],
//! and the repairs, over a segment-shaped array of loom atomics, with producer liveness and the
//! kernel's entry locks modelled by [`ModelLive`].
//!
//! Run with `RUSTFLAGS="--cfg loom" cargo test --release --lib board::loom` (see `.ci/loom.sh`).
//!
//! A value is two words, both equal to its tag, so a torn copy (words of two updates, or a
//! half-written copy) shows as unequal words.

use ::loom::sync::Arc;
use ::loom::thread;

use super::cell::*;
use crate::loom_harness::{model, ModelLive};
use crate::segment::header::W_SLOTS;
use crate::sync::{AtomicU64, Ordering};

const CAP: usize = 16;

/// One cell of 16-byte values, after a header's worth of words (for the producer table).
struct Seg {
    words: Vec<AtomicU64>,
    stride: usize,
}

impl Seg {
    fn new() -> Arc<Seg> {
        let stride = stride_bytes(CAP, false).expect("a valid size") as usize / 8;
        let words = (0..W_SLOTS + stride).map(|_| AtomicU64::new(0)).collect();
        Arc::new(Seg { words, stride })
    }

    fn cells(&self) -> Cells<'_> {
        Cells::new(&self.words, 1, self.stride, CAP, false)
    }
}

/// Sets the cell to `tag` (both words); the new version, or `None` if the cell was held.
fn set(cells: &Cells<'_>, w: &mut CellWriter, live: &&ModelLive, tag: u64) -> Option<u64> {
    let t = w.take(cells, live, 0).ok()?;
    t.write_words(0, &[tag, tag]);
    Some(t.commit(CAP, tag))
}

/// Reads the cell: `(version, tag)` of an untorn value, `None` if never set or busy.
fn get(cells: &Cells<'_>) -> Option<(u64, u64)> {
    let mut buf = [0u64; 2];
    match read(cells, 0, &mut buf) {
        ReadOutcome::Value {
            version,
            len,
            stamp,
        } => {
            assert_eq!(len, CAP);
            assert_eq!(buf[0], buf[1], "torn value: {:x} / {:x}", buf[0], buf[1]);
            assert_eq!(stamp, buf[0], "stamp and value of one update");
            assert_ne!(buf[0], 0, "a value nobody set");
            Some((version, buf[0]))
        }
        ReadOutcome::Empty | ReadOutcome::Busy => None,
        ReadOutcome::Corrupt { len } => panic!("corrupt length {len}"),
    }
}

/// Two writers on one cell, after a first value, and a concurrent reader: the third update
/// rewrites the copy of the first, so a reader still copying the first value races its writer.
/// Every value whole, versions never go back, every update counted in the final version.
#[test]
fn concurrent_writers_and_a_reader_never_tear() {
    model("concurrent_writers_and_a_reader_never_tear", 3, || {
        let seg = Seg::new();
        let live = ModelLive::new(2);
        set(
            &seg.cells(),
            &mut CellWriter::new(0, Writers::Many),
            &&*live,
            1,
        )
        .expect("uncontended");
        let writers: Vec<_> = [(0usize, 10u64), (1, 20)]
            .into_iter()
            .map(|(index, tag)| {
                let (seg, live) = (seg.clone(), live.clone());
                thread::spawn(move || {
                    let cells = seg.cells();
                    let mut w = CellWriter::new(index, Writers::Many);
                    // A live holder may make a take give up; it is retried.
                    while set(&cells, &mut w, &&*live, tag).is_none() {
                        thread::yield_now();
                    }
                })
            })
            .collect();
        let cells = seg.cells();
        let mut last = 0;
        for _ in 0..2 {
            if let Some((version, tag)) = get(&cells) {
                assert!(version >= last, "version went back: {last} -> {version}");
                assert!(version > 1 || tag == 1, "version 1 is the first value");
                last = version;
            }
        }
        for w in writers {
            w.join().unwrap();
        }
        let (version, tag) = get(&cells).expect("set three times");
        assert_eq!(version, 3);
        assert!(tag == 10 || tag == 20);
    });
}

/// A writer dies mid-update (half its value written): readers keep getting the previous
/// value, and another writer repairs the cell (through the dead writer's entry lock) and sets it.
#[test]
fn a_writer_dying_mid_update_leaves_the_previous_value_and_a_repairable_cell() {
    model(
        "a_writer_dying_mid_update_leaves_the_previous_value_and_a_repairable_cell",
        3,
        || {
            let seg = Seg::new();
            let live = ModelLive::new(2);
            {
                let cells = seg.cells();
                let mut a = CellWriter::new(0, Writers::Many);
                set(&cells, &mut a, &&*live, 1).expect("uncontended");
            }
            let (s2, l2) = (seg.clone(), live.clone());
            let dying = thread::spawn(move || {
                let cells = s2.cells();
                let mut a = CellWriter::new(0, Writers::Many);
                // The other writer may hold the cell first; it is alive, so it is waited for.
                let t = loop {
                    if let Ok(t) = a.take(&cells, &&*l2, 0) {
                        break t;
                    }
                    thread::yield_now();
                };
                t.write_words(0, &[2]);
                l2.die(0);
            });
            let (s3, l3) = (seg.clone(), live.clone());
            let other = thread::spawn(move || {
                let cells = s3.cells();
                let mut b = CellWriter::new(1, Writers::Many);
                // Held while the dying writer lives; then repaired and set.
                loop {
                    if let Some(v) = set(&cells, &mut b, &&*l3, 3) {
                        return v;
                    }
                    thread::yield_now();
                }
            });
            let cells = seg.cells();
            if let Some((version, tag)) = get(&cells) {
                assert!(
                    (version, tag) == (1, 1) || (version, tag) == (2, 3),
                    "found ({version}, {tag})"
                );
            }
            dying.join().unwrap();
            let v = other.join().unwrap();
            assert_eq!(v, 2, "the dead update never counts");
            assert_eq!(get(&cells), Some((2, 3)));
        },
    );
}

/// The dead writer's entry is reused by a new writer (which repairs on attach) while another
/// writer waits for the cell: exactly one repair, no cell left held, no torn value.
#[test]
fn repair_on_attach_races_repair_by_a_waiting_writer() {
    model(
        "repair_on_attach_races_repair_by_a_waiting_writer",
        2,
        || {
            let seg = Seg::new();
            let live = ModelLive::new(2);
            {
                let cells = seg.cells();
                let mut a = CellWriter::new(0, Writers::Many);
                set(&cells, &mut a, &&*live, 1).expect("uncontended");
                let t = a.take(&cells, &&*live, 0).expect("uncontended");
                t.write_words(0, &[2]);
                live.die(0);
            }
            let (s2, l2) = (seg.clone(), live.clone());
            let attacher = thread::spawn(move || {
                let cells = s2.cells();
                if !l2.reuse(0) {
                    return None;
                }
                repair_entry(&cells, 0);
                let mut c = CellWriter::new(0, Writers::Many);
                loop {
                    if let Some(v) = set(&cells, &mut c, &&*l2, 4) {
                        return Some(v);
                    }
                    thread::yield_now();
                }
            });
            let cells = seg.cells();
            let mut b = CellWriter::new(1, Writers::Many);
            let vb = loop {
                if let Some(v) = set(&cells, &mut b, &&*live, 3) {
                    break v;
                }
                thread::yield_now();
            };
            let vc = attacher.join().unwrap();
            let total = 1 + 1 + u64::from(vc.is_some());
            let (version, tag) = get(&cells).expect("set");
            assert_eq!(version, total);
            assert!(vb <= total);
            assert!(tag == 3 || tag == 4);
            assert_eq!(
                cells.state(0).load(Ordering::Relaxed) & BUSY,
                0,
                "left held"
            );
        },
    );
}

/// Stores of one update by the sole writer of a one-writer board, in the production order
/// (`take_sole`, the value words as `ValueWriter::push` stores them, `commit`'s stamp, length
/// and publish), each one call of the production code.
const SOLE_STORES: usize = 6;

/// The sole writer makes the first `stores` stores of an update of the cell to `tag`, then
/// stops for good (killed: the rest never happen).
fn sole_update(cells: &Cells<'_>, w: &mut CellWriter, tag: u64, stores: usize) {
    let mut taken = None;
    for store in 0..stores {
        match (store, taken.as_ref()) {
            (0, _) => taken = Some(w.take_sole(cells, 0).expect("below the version limit")),
            (1, Some(t)) => t.write_words(0, &[tag]),
            (2, Some(t)) => t.write_words(1, &[tag]),
            (3, Some(t)) => t.write_stamp(tag),
            (4, Some(t)) => t.write_len(CAP),
            (5, Some(_)) => {
                taken.take().expect("taken").publish();
            }
            _ => unreachable!("{SOLE_STORES} stores, the take first"),
        }
    }
}

/// The sole writer of a one-writer board is killed after `stores` of its stores of an update
/// (none, between any two, all), while a reader copies the cell; then the next sole writer
/// (after the death, as the exclusive gate's kernel lock orders it) updates the cell. The
/// reader never sees a torn value, only versions and values of whole updates; the dead update
/// never counts, and the next writer repairs the cell with its update.
fn sole_writer_killed_after(stores: usize) {
    model(
        &format!("a_sole_writer_killed_after_{stores}_stores"),
        3,
        move || {
            let seg = Seg::new();
            let completed = stores == SOLE_STORES;
            sole_update(
                &seg.cells(),
                &mut CellWriter::new(0, Writers::One),
                1,
                SOLE_STORES,
            );
            let s2 = seg.clone();
            let reader = thread::spawn(move || {
                let cells = s2.cells();
                let mut last = 0;
                for _ in 0..2 {
                    if let Some((version, tag)) = get(&cells) {
                        let expected = match version {
                            1 => 1,
                            2 if completed => 2,
                            2 | 3 => 3,
                            v => panic!("version {v}"),
                        };
                        assert_eq!(tag, expected, "version {version} holds another value");
                        assert!(version >= last, "version went back: {last} -> {version}");
                        last = version;
                    }
                }
            });
            let s3 = seg.clone();
            let dying = thread::spawn(move || {
                sole_update(
                    &s3.cells(),
                    &mut CellWriter::new(0, Writers::One),
                    2,
                    stores,
                );
            });
            // Killed; the kernel drops its lock, and the next writer attaches on the same entry.
            dying.join().unwrap();
            let cells = seg.cells();
            let mut next = CellWriter::new(0, Writers::One);
            sole_update(&cells, &mut next, 3, SOLE_STORES);
            reader.join().unwrap();
            let interrupted = stores > 0 && !completed;
            assert_eq!(
                next.repairs(),
                u64::from(interrupted),
                "repaired iff left busy"
            );
            let want = if completed { (3, 3) } else { (2, 3) };
            assert_eq!(get(&cells), Some(want), "the dead update never counts");
            assert_eq!(
                cells.state(0).load(Ordering::Relaxed) & BUSY,
                0,
                "left busy"
            );
        },
    );
}

macro_rules! sole_writer_killed {
    ($($name:ident: $stores:expr,)*) => {$(
        #[test]
        fn $name() {
            sole_writer_killed_after($stores);
        }
    )*};
}

sole_writer_killed! {
    a_sole_writer_killed_before_its_take_leaves_nothing_to_repair: 0,
    a_sole_writer_killed_after_its_take_is_repaired_and_never_tears: 1,
    a_sole_writer_killed_after_a_value_word_is_repaired_and_never_tears: 2,
    a_sole_writer_killed_after_its_value_is_repaired_and_never_tears: 3,
    a_sole_writer_killed_after_its_stamp_is_repaired_and_never_tears: 4,
    a_sole_writer_killed_before_its_publish_is_repaired_and_never_tears: 5,
    a_sole_writer_that_completes_its_update_leaves_nothing_to_repair: SOLE_STORES,
}

/// Stalls (docs/design.md §12, "Stopped holders"): a live writer holds the cell, its value half
/// written, for as long as the schedule makes it. Another writer's take either gets the cell
/// (the holder committed first) or gives up with `Held` naming the holder's entry (the holder
/// is never taken over while it lives); a reader reads the previous value or the holder's new
/// one, whole. Once the holder commits, the other writer takes the cell.
#[test]
fn a_live_holder_is_reported_by_entry_and_never_taken_over() {
    static HELD: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    model(
        "a_live_holder_is_reported_by_entry_and_never_taken_over",
        3,
        || {
            let seg = Seg::new();
            let live = ModelLive::new(2);
            set(
                &seg.cells(),
                &mut CellWriter::new(0, Writers::Many),
                &&*live,
                1,
            )
            .expect("uncontended");
            let holder = {
                let (seg, live) = (seg.clone(), live.clone());
                thread::spawn(move || {
                    let cells = seg.cells();
                    let mut w = CellWriter::new(0, Writers::Many);
                    // The other writer may hold the cell first; it is not stopped: retried.
                    let t = loop {
                        match w.take(&cells, &&*live, 0) {
                            Ok(t) => break t,
                            Err(_) => thread::yield_now(),
                        }
                    };
                    t.write_words(0, &[2, 0]);
                    thread::yield_now();
                    t.write_words(0, &[2, 2]);
                    t.commit(CAP, 2)
                })
            };
            let cells = seg.cells();
            thread::yield_now();
            if let Some((_, tag)) = get(&cells) {
                assert!(
                    tag == 1 || tag == 2,
                    "the previous value or the new one: {tag}"
                );
            }
            let mut other = CellWriter::new(1, Writers::Many);
            let took = match other.take(&cells, &&*live, 0) {
                Ok(t) => {
                    t.write_words(0, &[3, 3]);
                    t.commit(CAP, 3);
                    true
                }
                Err(TakeError::Held { holder, .. }) => {
                    assert_eq!(holder, Some(0), "the holder's entry is named");
                    HELD.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    false
                }
                Err(e) => panic!("{e:?}"),
            };
            let holders_version = holder.join().unwrap();
            if !took {
                assert!(
                    set(&cells, &mut other, &&*live, 3).is_some(),
                    "free once committed"
                );
            }
            let (version, tag) = get(&cells).expect("set");
            assert_eq!(version, 3, "both updates counted");
            let last = if holders_version == 3 { 2 } else { 3 };
            assert_eq!(tag, last, "the last update's value");
        },
    );
    assert!(
        HELD.load(std::sync::atomic::Ordering::Relaxed) > 0,
        "some schedule reports the holder"
    );
}
