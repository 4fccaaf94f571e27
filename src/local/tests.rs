use super::*;
use std::sync::atomic::AtomicUsize;
use std::sync::{Arc, Barrier};

/// Fewer rounds under miri, which is slow; the same paths either way.
const fn scaled(n: usize) -> usize {
    if cfg!(miri) {
        n / 100 + 2
    } else {
        n
    }
}

/// Counts its drops in a shared counter, so tests running at once do not mix counts.
#[derive(Debug)]
struct Counted(Arc<AtomicUsize>);

impl Drop for Counted {
    fn drop(&mut self) {
        self.0.fetch_add(1, Ordering::Relaxed);
    }
}

#[test]
fn capacity_must_be_a_power_of_two_within_the_limit() {
    for bad in [0, 3, 6, 1000, MAX_LOCAL_CAPACITY * 2] {
        let e = LocalQueue::<u8>::new(bad).unwrap_err();
        assert!(matches!(e, Error::InvalidConfig(_)), "{bad}: {e}");
        assert!(e.to_string().contains(&bad.to_string()), "{e}");
    }
    for good in [1, 2, 64, 1024] {
        assert_eq!(LocalQueue::<u8>::new(good).unwrap().capacity(), good);
    }
}

#[test]
fn len_empty_and_full_follow_sends_and_receives() {
    let q = LocalQueue::new(4).unwrap();
    assert!(q.is_empty() && !q.is_full());
    for i in 0..4 {
        assert_eq!(q.len(), i);
        q.try_send(i).unwrap();
    }
    assert!(q.is_full() && !q.is_empty());
    assert_eq!(q.len(), 4);
    assert_eq!(q.try_recv(), Some(0));
    assert_eq!(q.len(), 3);
    assert!(!q.is_full());
}

#[test]
fn a_full_queue_hands_the_item_back_and_takes_it_after_a_receive() {
    let q = LocalQueue::new(1).unwrap();
    q.try_send(String::from("first")).unwrap();
    match q.try_send(String::from("second")) {
        Err(SendError::Full(back)) => assert_eq!(back, "second"),
        other => panic!("expected Full, got {other:?}"),
    }
    assert_eq!(q.try_recv().as_deref(), Some("first"));
    q.try_send(String::from("second")).unwrap();
    assert_eq!(q.try_recv().as_deref(), Some("second"));
    assert_eq!(q.try_recv(), None);
}

#[test]
fn items_come_out_in_order_over_many_laps() {
    let q = LocalQueue::new(4).unwrap();
    let mut next_out = 0;
    for i in 0..scaled(1000) {
        if q.try_send(Box::new(i)).is_err() {
            assert_eq!(*q.try_recv().unwrap(), next_out);
            next_out += 1;
            q.try_send(Box::new(i)).unwrap();
        }
    }
    while let Some(v) = q.try_recv() {
        assert_eq!(*v, next_out);
        next_out += 1;
    }
    assert_eq!(next_out, scaled(1000));
}

#[test]
fn zero_sized_items_are_counted_like_any_other() {
    let q = LocalQueue::new(2).unwrap();
    q.try_send(()).unwrap();
    q.try_send(()).unwrap();
    assert!(matches!(q.try_send(()), Err(SendError::Full(()))));
    assert_eq!(q.len(), 2);
    assert_eq!(q.try_recv(), Some(()));
    assert_eq!(q.try_recv(), Some(()));
    assert_eq!(q.try_recv(), None);
}

#[test]
fn dropping_the_queue_drops_each_remaining_item_once() {
    let drops = Arc::new(AtomicUsize::new(0));
    let q = LocalQueue::new(8).unwrap();
    // Wrap the ring once so the remaining items straddle the end of the slots.
    for _ in 0..6 {
        q.try_send(Counted(drops.clone())).unwrap();
    }
    for _ in 0..5 {
        drop(q.try_recv().unwrap());
    }
    for _ in 0..7 {
        q.try_send(Counted(drops.clone())).unwrap();
    }
    assert_eq!(drops.load(Ordering::Relaxed), 5);
    let refused = q.try_send(Counted(drops.clone())).unwrap_err().into_inner();
    drop(refused);
    assert_eq!(
        drops.load(Ordering::Relaxed),
        6,
        "the refused item is handed back"
    );
    drop(q);
    assert_eq!(drops.load(Ordering::Relaxed), 6 + 8);
}

#[test]
fn one_sender_one_receiver_get_every_item_once_in_order() {
    let count = scaled(100_000);
    let q = Arc::new(LocalQueue::new(4).unwrap());
    let tx = q.clone();
    let sender = std::thread::spawn(move || {
        for i in 0..count {
            let mut item = i;
            while let Err(SendError::Full(back)) = tx.try_send(item) {
                item = back;
                std::thread::yield_now();
            }
        }
    });
    for i in 0..count {
        loop {
            if let Some(v) = q.try_recv() {
                assert_eq!(v, i);
                break;
            }
            std::thread::yield_now();
        }
    }
    sender.join().unwrap();
    assert!(q.is_empty());
}

#[test]
fn many_senders_and_receivers_move_every_item_exactly_once() {
    const THREADS: usize = 4;
    let count = scaled(25_000);
    let q = Arc::new(LocalQueue::new(8).unwrap());
    let seen: Arc<Vec<AtomicUsize>> =
        Arc::new((0..count * THREADS).map(|_| AtomicUsize::new(0)).collect());
    let taken = Arc::new(AtomicUsize::new(0));
    let mut handles = Vec::new();
    for t in 0..THREADS {
        let tx = q.clone();
        handles.push(std::thread::spawn(move || {
            for i in 0..count {
                let mut item = t * count + i;
                while let Err(SendError::Full(back)) = tx.try_send(item) {
                    item = back;
                    std::thread::yield_now();
                }
            }
        }));
        let (q, seen, taken) = (q.clone(), seen.clone(), taken.clone());
        handles.push(std::thread::spawn(move || {
            while taken.load(Ordering::Relaxed) < count * THREADS {
                match q.try_recv() {
                    Some(v) => {
                        seen[v].fetch_add(1, Ordering::Relaxed);
                        taken.fetch_add(1, Ordering::Relaxed);
                    }
                    None => std::thread::yield_now(),
                }
            }
        }));
    }
    for h in handles {
        h.join().unwrap();
    }
    assert!(seen.iter().all(|n| n.load(Ordering::Relaxed) == 1));
    assert_eq!(q.try_recv(), None);
}

#[test]
fn items_are_dropped_exactly_once_across_threads_and_at_the_end() {
    let drops = Arc::new(AtomicUsize::new(0));
    let steps = scaled(10_000);
    let q = Arc::new(LocalQueue::new(16).unwrap());
    let rx = q.clone();
    let receiver = std::thread::spawn(move || {
        for _ in 0..steps {
            loop {
                if let Some(item) = rx.try_recv() {
                    drop(item);
                    break;
                }
                std::thread::yield_now();
            }
        }
    });
    for _ in 0..steps {
        let mut item = Counted(drops.clone());
        while let Err(SendError::Full(back)) = q.try_send(item) {
            item = back;
            std::thread::yield_now();
        }
    }
    receiver.join().unwrap();
    for _ in 0..5 {
        q.try_send(Counted(drops.clone())).unwrap();
    }
    assert_eq!(drops.load(Ordering::Relaxed), steps);
    drop(q);
    assert_eq!(drops.load(Ordering::Relaxed), steps + 5);
}

#[test]
fn a_completed_send_is_seen_by_the_next_receive() {
    // Each thread sends, then must find an item: a send that returned is never hidden by
    // another thread's send still in progress (the queue is linearizable).
    const THREADS: usize = 4;
    let q = Arc::new(LocalQueue::new(THREADS as u64).unwrap());
    let go = Arc::new(Barrier::new(THREADS));
    let handles: Vec<_> = (0..THREADS)
        .map(|_| {
            let (q, go) = (q.clone(), go.clone());
            std::thread::spawn(move || {
                go.wait();
                for _ in 0..scaled(20_000) {
                    q.try_send(0u8).expect("at most THREADS items are ever in");
                    q.try_recv().expect("our own item, or another one, is in");
                }
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
}

#[test]
fn receivers_see_the_queue_closed_after_the_last_sender_and_the_last_item() {
    let (tx, rx) = LocalQueue::channel(8).unwrap();
    let tx2 = tx.clone();
    for i in 1..=3 {
        tx.send(i).unwrap();
    }
    drop(tx);
    assert!(!rx.is_closed(), "a sender is left");
    tx2.send(4).unwrap();
    drop(tx2);
    assert!(!rx.is_closed(), "items are left");
    assert_eq!(rx.iter().collect::<Vec<_>>(), [1, 2, 3, 4]);
    assert!(rx.is_closed());
    assert_eq!(rx.recv(), None);
    assert_eq!(rx.recv_timeout(Duration::from_secs(60)), None);
}

#[test]
fn a_full_queue_without_receivers_hands_the_item_back_at_once() {
    let (tx, rx) = LocalQueue::channel(1).unwrap();
    tx.send(1).unwrap();
    drop(rx);
    assert!(tx.is_disconnected());
    assert!(matches!(tx.send(2), Err(SendError::Full(2))));
    assert!(matches!(
        tx.send_timeout(3, Duration::from_secs(60)),
        Err(SendError::Full(3))
    ));
}

#[test]
fn the_last_sender_going_wakes_a_waiting_receiver() {
    for wait in [Wait::Spin, Wait::Yield, Wait::Sleep] {
        let (tx, rx) = LocalQueue::<u32>::channel(1).unwrap();
        let rx = rx.wait_strategy(wait);
        let waiting = std::thread::spawn(move || rx.recv());
        drop(tx);
        assert_eq!(waiting.join().unwrap(), None, "{wait:?}");
    }
}

#[test]
fn the_last_receiver_going_wakes_a_waiting_sender() {
    for wait in [Wait::Spin, Wait::Yield, Wait::Sleep] {
        let (tx, rx) = LocalQueue::channel(1).unwrap();
        let tx = tx.wait_strategy(wait);
        tx.send(1).unwrap();
        let waiting = std::thread::spawn(move || tx.send(2));
        drop(rx);
        assert!(
            matches!(waiting.join().unwrap(), Err(SendError::Full(2))),
            "{wait:?}"
        );
    }
}

#[test]
fn timeouts_hand_back_the_item_or_report_nothing() {
    let (tx, rx) = LocalQueue::channel(1).unwrap();
    assert_eq!(rx.recv_timeout(Duration::from_millis(1)), None);
    assert!(!rx.is_closed());
    tx.send(1).unwrap();
    assert!(matches!(
        tx.send_timeout(2, Duration::from_millis(1)),
        Err(SendError::Full(2))
    ));
    assert_eq!(rx.recv_timeout(Duration::from_millis(1)), Some(1));
}

#[test]
fn blocking_calls_with_every_wait_strategy_move_every_item_once_in_order() {
    let count = scaled(20_000) as u64;
    for wait in [Wait::Spin, Wait::Yield, Wait::Sleep] {
        let (tx, rx) = LocalQueue::channel(2).unwrap();
        let (tx, rx) = (tx.wait_strategy(wait), rx.wait_strategy(wait));
        let sender = std::thread::spawn(move || {
            for i in 0..count {
                tx.send(Box::new(i)).unwrap();
            }
        });
        let got: Vec<u64> = rx.iter().map(|b| *b).collect();
        sender.join().unwrap();
        assert!(got.iter().copied().eq(0..count), "{wait:?}");
    }
}

#[test]
fn cloned_receivers_share_the_items_and_each_gets_distinct_ones() {
    let count = scaled(20_000);
    let (tx, rx) = LocalQueue::channel(4).unwrap();
    let workers: Vec<_> = (0..3)
        .map(|_| {
            let rx = rx.clone();
            std::thread::spawn(move || rx.iter().collect::<Vec<usize>>())
        })
        .collect();
    drop(rx);
    let senders: Vec<_> = (0..2)
        .map(|s| {
            let tx = tx.clone();
            std::thread::spawn(move || {
                for i in 0..count {
                    tx.send(s * count + i).unwrap();
                }
            })
        })
        .collect();
    drop(tx);
    for s in senders {
        s.join().unwrap();
    }
    let mut all: Vec<usize> = Vec::new();
    for w in workers {
        let got = w.join().unwrap();
        // Each sender's items reach each receiver in the order they were sent.
        for s in 0..2 {
            let mine: Vec<_> = got.iter().filter(|v| **v / count == s).collect();
            assert!(mine.windows(2).all(|p| p[0] < p[1]));
        }
        all.extend(got);
    }
    all.sort_unstable();
    assert!(all.into_iter().eq(0..2 * count));
}

#[test]
fn try_iter_takes_what_is_there_and_stops() {
    let (tx, rx) = LocalQueue::channel(4).unwrap();
    tx.try_send('a').unwrap();
    tx.try_send('b').unwrap();
    assert_eq!(rx.try_iter().collect::<String>(), "ab");
    assert_eq!(rx.try_recv(), None);
    assert_eq!((tx.len(), tx.capacity(), rx.is_empty()), (0, 4, true));
}

#[test]
fn items_left_in_a_channel_are_dropped_once_when_the_last_handle_goes() {
    let drops = Arc::new(AtomicUsize::new(0));
    let (tx, rx) = LocalQueue::channel(4).unwrap();
    for _ in 0..3 {
        tx.send(Counted(drops.clone())).unwrap();
    }
    drop(rx.recv());
    drop(tx);
    assert_eq!(drops.load(Ordering::Relaxed), 1);
    drop(rx);
    assert_eq!(drops.load(Ordering::Relaxed), 3);
}
