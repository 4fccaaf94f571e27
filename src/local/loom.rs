use super::LocalQueue;
use ::loom::sync::atomic::AtomicUsize;
use ::loom::sync::Arc;
use std::sync::atomic::Ordering;

/// Two senders and one receiver on a queue of 2, racing: every item a send accepted is
/// received exactly once and untorn, each sender's items in the order it sent them
/// (docs/design.md §11).
#[test]
fn two_senders_one_receiver_capacity_two() {
    crate::loom_harness::model("local queue 2x1 cap 2", 3, || {
        let q = Arc::new(LocalQueue::<u64>::new(2).unwrap());
        let senders: Vec<_> = (0..2u64)
            .map(|s| {
                let q = q.clone();
                ::loom::thread::spawn(move || {
                    let mut sent = Vec::new();
                    for i in 0..2 {
                        let item = s * 10 + i;
                        if q.try_send(item).is_ok() {
                            sent.push(item);
                        }
                    }
                    sent
                })
            })
            .collect();
        let mut got = Vec::new();
        for _ in 0..2 {
            if let Some(v) = q.try_recv() {
                got.push(v);
            }
        }
        let mut sent: Vec<u64> = senders
            .into_iter()
            .flat_map(|h| h.join().unwrap())
            .collect();
        while let Some(v) = q.try_recv() {
            got.push(v);
        }
        for s in 0..2 {
            let mine: Vec<_> = got.iter().filter(|v| **v / 10 == s).collect();
            assert!(mine.windows(2).all(|w| w[0] < w[1]), "order: {got:?}");
        }
        got.sort_unstable();
        sent.sort_unstable();
        assert_eq!(got, sent, "each sent item received exactly once");
        assert!(q.is_empty());
    });
}

/// Counts its drops.
struct Counted(Arc<AtomicUsize>);

impl Drop for Counted {
    fn drop(&mut self) {
        self.0.fetch_add(1, Ordering::Relaxed);
    }
}

/// Two senders race one receiver on a queue of 2, then the queue is dropped with whatever
/// is left: every item, accepted or handed back, is dropped exactly once.
#[test]
fn items_left_are_dropped_once_with_the_queue() {
    crate::loom_harness::model("local queue drops", 2, || {
        let drops = Arc::new(AtomicUsize::new(0));
        let q = Arc::new(LocalQueue::new(2).unwrap());
        let senders: Vec<_> = (0..2)
            .map(|_| {
                let (q, drops) = (q.clone(), drops.clone());
                ::loom::thread::spawn(move || {
                    for _ in 0..2 {
                        // A refused item comes back and is dropped here.
                        let _ = q.try_send(Counted(drops.clone()));
                    }
                })
            })
            .collect();
        drop(q.try_recv());
        for s in senders {
            s.join().unwrap();
        }
        drop(q);
        assert_eq!(drops.load(Ordering::Relaxed), 4);
    });
}
