//! Unit tests of the lanes protocol on in-process segments (mirrored memory files; under miri,
//! heap twins).

use super::layout::{L_READ, L_ROOM_WAITERS, L_ROOM_WAKE, L_WRITE};
use super::mirror::LaneBytes;
use super::*;
use crate::error::Error;
use crate::sync::Ordering;
use crate::wait::Wait;

fn pool(lanes: u32) -> Lanes {
    LanesBuilder::new("t")
        .lanes(lanes)
        .lane_bytes(4096)
        .in_process()
        .unwrap()
}

/// Receives and acknowledges up to `n` events; how many there were.
fn drain_n(c: &mut LaneConsumer, n: usize) -> usize {
    (0..n)
        .take_while(|_| c.try_recv().unwrap().is_some())
        .count()
}

/// Publishes `rec` `n` times, each of which must be queued (records of 1000 bytes take 1008 in
/// the lane: four fill a 4096-byte one).
fn queue_all(p: &mut LanePublisher, rec: &[u8], n: usize) {
    for _ in 0..n {
        assert_eq!(p.publish(rec).unwrap(), LanePush::Queued);
    }
}

/// Every event the consumer has now, as (lane, bytes) with `None` bytes for a close.
fn drain(c: &mut LaneConsumer) -> Vec<(u32, Option<Vec<u8>>)> {
    let mut out = Vec::new();
    while let Some(e) = c.try_recv().unwrap() {
        match e {
            LaneEvent::Record(r) => out.push((r.lane(), Some(r.to_vec()))),
            LaneEvent::Closed(c) => out.push((c.lane, None)),
        }
    }
    out
}

#[test]
fn records_arrive_in_order_per_lane_and_round_robin_across_lanes() {
    let lanes = pool(4);
    let mut c = lanes.consumer().unwrap();
    let mut a = lanes.acquire().unwrap();
    let mut b = lanes.acquire().unwrap();
    assert_ne!(a.lane(), b.lane());
    for i in 0..3u8 {
        assert_eq!(a.publish(&[b'a', i]).unwrap(), LanePush::Queued);
        assert_eq!(b.publish(&[b'b', i, i]).unwrap(), LanePush::Queued);
    }
    let got = drain(&mut c);
    let want: Vec<_> = (0..3u8)
        .flat_map(|i| {
            [
                (a.lane(), Some(vec![b'a', i])),
                (b.lane(), Some(vec![b'b', i, i])),
            ]
        })
        .collect();
    assert_eq!(got, want);
    assert_eq!(c.stats().records, 6);
}

#[test]
fn a_closed_lane_is_reported_after_its_records_and_returns_to_the_pool() {
    let lanes = pool(1);
    let mut c = lanes.consumer().unwrap();
    let mut p = lanes.acquire().unwrap();
    assert_eq!(p.publish(b"last words").unwrap(), LanePush::Queued);
    p.close();
    // Closed, not drained yet: the lane is not free.
    assert!(matches!(
        lanes.acquire(),
        Err(Error::LanesFull { lanes: 1, .. })
    ));
    assert_eq!(
        drain(&mut c),
        [(0, Some(b"last words".to_vec())), (0, None)]
    );
    let mut again = lanes.acquire().unwrap();
    assert_eq!(again.publish(b"new session").unwrap(), LanePush::Queued);
    assert_eq!(drain(&mut c), [(0, Some(b"new session".to_vec()))]);
}

#[test]
fn every_record_size_crosses_the_ring_end_as_one_slice() {
    let lanes = pool(1);
    let mut c = lanes.consumer().unwrap();
    let mut p = lanes.acquire().unwrap();
    // Sizes that make records start at every 8-byte offset of the ring over time.
    // Under miri (heap twins, byte by byte) fewer rounds: still past the ring's end many times.
    let rounds = if cfg!(miri) { 60 } else { 600 };
    for round in 0..rounds {
        let len = (round * 37) % 700;
        let rec: Vec<u8> = (0..len).map(|k| (k + round) as u8).collect();
        assert_eq!(p.publish(&rec).unwrap(), LanePush::Queued);
        match c.try_recv().unwrap() {
            Some(LaneEvent::Record(r)) => assert_eq!(&r[..], &rec[..], "round {round}"),
            other => panic!("round {round}: {other:?}"),
        }
    }
    assert_eq!(c.try_recv().unwrap().map(|_| ()), None);
}

#[test]
fn a_full_lane_drops_counts_and_never_overwrites_unread_bytes() {
    let lanes = pool(1);
    let mut c = lanes.consumer().unwrap();
    let mut p = lanes.acquire().unwrap();
    let rec = [9u8; 1000];
    queue_all(&mut p, &rec, 4);
    assert_eq!(p.publish(&rec).unwrap(), LanePush::Full { dropped: 1 });
    assert_eq!(p.publish(&rec).unwrap(), LanePush::Full { dropped: 2 });
    // One acknowledged: room for one more.
    match c.try_recv().unwrap() {
        Some(LaneEvent::Record(r)) => assert_eq!(r.len(), 1000),
        other => panic!("{other:?}"),
    }
    assert_eq!(p.publish(&[1u8; 1000]).unwrap(), LanePush::Queued);
    assert_eq!(p.dropped(), 2);
    p.close();
    let got = drain(&mut c);
    assert_eq!(got.len(), 5);
    assert!(got[..3].iter().all(|(_, b)| b.as_deref() == Some(&rec[..])));
    assert_eq!(got[3].1.as_deref(), Some(&[1u8; 1000][..]));
    // The close says how many the session dropped.
    let lanes2 = lanes.clone();
    let mut p = lanes2.acquire().unwrap();
    for _ in 0..5 {
        let _ = p.publish(&rec).unwrap();
    }
    p.close();
    let mut closed = None;
    while let Some(e) = c.try_recv().unwrap() {
        if let LaneEvent::Closed(x) = e {
            closed = Some(x);
        }
    }
    assert_eq!(
        closed,
        Some(LaneClosed {
            lane: 0,
            dropped: 1,
            producer_died: false
        })
    );
}

#[test]
fn a_record_larger_than_the_lane_is_refused_and_nothing_is_counted() {
    let lanes = pool(1);
    let mut p = lanes.acquire().unwrap();
    assert_eq!(p.max_record(), 4080);
    assert!(matches!(
        p.publish(&[0u8; 4081]),
        Err(Error::MessageTooLarge {
            len: 4081,
            capacity: 4080
        })
    ));
    // The largest record fits an empty lane, and is delivered whole.
    let mut c = lanes.consumer().unwrap();
    assert_eq!(p.publish(&[7u8; 4080]).unwrap(), LanePush::Queued);
    match c.try_recv().unwrap() {
        Some(LaneEvent::Record(r)) => assert!(r.len() == 4080 && r.iter().all(|&b| b == 7)),
        other => panic!("{other:?}"),
    }
    assert_eq!(p.publish(&[8u8; 4080]).unwrap(), LanePush::Queued);
    assert_eq!(p.dropped(), 0);
}

#[test]
fn one_consumer_at_a_time_and_every_lane_once() {
    let lanes = pool(3);
    let c = lanes.consumer().unwrap();
    assert!(matches!(
        lanes.consumer(),
        Err(Error::ConsumerExists { .. })
    ));
    drop(c);
    let _c = lanes.consumer().unwrap();
    let held: Vec<_> = (0..3).map(|_| lanes.acquire().unwrap()).collect();
    let mut seen: Vec<u32> = held.iter().map(|p| p.lane()).collect();
    seen.sort();
    assert_eq!(seen, [0, 1, 2]);
    let err = lanes.acquire().unwrap_err();
    assert!(matches!(err, Error::LanesFull { lanes: 3, .. }), "{err}");
    assert!(err.to_string().contains("no free lane"), "{err}");
}

#[test]
fn a_new_consumer_goes_on_from_the_acknowledged_position() {
    let lanes = pool(1);
    let mut p = lanes.acquire().unwrap();
    for i in 0..4u8 {
        assert_eq!(p.publish(&[i]).unwrap(), LanePush::Queued);
    }
    {
        let mut c = lanes.consumer().unwrap();
        // Two acknowledged...
        for i in 0..2u8 {
            match c.try_recv().unwrap() {
                Some(LaneEvent::Record(r)) => assert_eq!(&r[..], [i]),
                other => panic!("{other:?}"),
            }
        }
        // ...and a batch whose records are seen but whose acknowledgement is its end: the
        // consumer goes before the batch ends (a panic in the callback).
        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            c.recv_batch(10, |_| panic!("the consumer fails mid-batch"))
                .unwrap();
        }));
        assert!(r.is_err());
    }
    let mut c = lanes.consumer().unwrap();
    assert_eq!(
        drain(&mut c),
        [(0, Some(vec![2])), (0, Some(vec![3]))],
        "nothing acknowledged is seen again, nothing unacknowledged is lost"
    );
}

#[test]
fn batches_serve_lanes_round_robin_and_acknowledge_together() {
    let lanes = pool(2);
    let mut c = lanes.consumer().unwrap();
    let mut a = lanes.acquire().unwrap();
    let mut b = lanes.acquire().unwrap();
    for i in 0..40u8 {
        assert_eq!(a.publish(&[i]).unwrap(), LanePush::Queued);
    }
    assert_eq!(b.publish(b"b").unwrap(), LanePush::Queued);
    let b_lane = b.lane();
    b.close();
    let mut got = Vec::new();
    let n = c
        .recv_batch(100, |item| match item {
            LaneItem::Record { lane, bytes } => got.push((lane, bytes.to_vec())),
            LaneItem::Closed(x) => got.push((x.lane, b"closed".to_vec())),
        })
        .unwrap();
    assert_eq!(n, 42);
    // 32 of lane a, then lane b (record and close), then the rest of a.
    assert_eq!(got[31], (a.lane(), vec![31]));
    assert_eq!(got[32], (b_lane, b"b".to_vec()));
    assert_eq!(got[33], (b_lane, b"closed".to_vec()));
    assert_eq!(got[41], (a.lane(), vec![39]));
    // Batches on one lane.
    assert_eq!(a.publish(b"x").unwrap(), LanePush::Queued);
    let mut one = Vec::new();
    c.recv_lane_batch(a.lane(), 10, |item| {
        if let LaneItem::Record { bytes, .. } = item {
            one.push(bytes.to_vec())
        }
    })
    .unwrap();
    assert_eq!(one, [b"x".to_vec()]);
    assert!(matches!(
        c.recv_lane_batch(7, 1, |_| {}),
        Err(Error::InvalidConfig(_))
    ));
}

#[test]
fn forged_positions_and_lengths_are_refused_and_other_lanes_go_on() {
    let lanes = pool(2);
    let mut c = lanes.consumer().unwrap();
    let mut a = lanes.acquire().unwrap();
    let mut b = lanes.acquire().unwrap();
    assert_eq!(a.publish(b"ok").unwrap(), LanePush::Queued);
    assert_eq!(b.publish(b"ok").unwrap(), LanePush::Queued);
    let words = lanes.seg.words();
    let w = |lane: u32, f| &words[lanes.shape.word(lane, f)];
    // A write position far past the read position changes nothing: the consumer reads the
    // headers, and the write position is the producer's own.
    w(a.lane(), L_WRITE).store(1 << 20, Ordering::Relaxed);
    // Lane a: a read position that is not 8-aligned.
    let read_a = w(a.lane(), L_READ).load(Ordering::Relaxed);
    w(a.lane(), L_READ).store(read_a + 3, Ordering::Relaxed);
    let err = c.try_recv().unwrap_err();
    assert!(matches!(err, Error::LanesCorrupt { .. }), "{err}");
    // The next turn serves lane b.
    match c.try_recv().unwrap() {
        Some(LaneEvent::Record(r)) => assert_eq!(r.lane(), b.lane()),
        other => panic!("{other:?}"),
    }
    // Lane b: a header that claims more than a lane, then one without the commit bit.
    assert_eq!(b.publish(b"abc").unwrap(), LanePush::Queued);
    assert_eq!(b.publish(b"def").unwrap(), LanePush::Queued);
    let read = w(b.lane(), L_READ).load(Ordering::Relaxed);
    let rings = lanes.heap_rings.as_ref().unwrap();
    // SAFETY: test only: forges the header words of published, unread records (the consumer
    // holds no view of them), atomically as the contract asks.
    unsafe {
        rings.store_head(b.lane(), read, (1 << 32) | 4090, true);
        rings.store_head(b.lane(), read + 16, 0xdead_beef_0000_0003, true);
    };
    // Lane a stays corrupt and reports at each of its turns; lane b's forged record is refused
    // at each of its own.
    let mut errors = Vec::new();
    for _ in 0..4 {
        match c.try_recv() {
            Err(e) => errors.push(e.to_string()),
            Ok(Some(LaneEvent::Record(r))) => panic!("forged record delivered: {r:?}"),
            Ok(other) => panic!("{other:?}"),
        }
    }
    let err = errors
        .iter()
        .find(|e| e.contains("lane 1"))
        .expect("lane b refused");
    assert!(
        err.contains("claims 4090 bytes, more than a lane holds"),
        "{err}"
    );
    assert!(
        errors
            .iter()
            .any(|e| e.contains("lane 0: read position") && e.contains("not 8-aligned")),
        "{errors:?}"
    );
    // Lane b's first header mended, its second is refused in turn.
    // SAFETY: as above.
    unsafe { rings.store_head(b.lane(), read, (1 << 32) | 3, true) };
    let mut seen = Vec::new();
    for _ in 0..4 {
        match c.try_recv() {
            Ok(Some(LaneEvent::Record(r))) => seen.push(r.to_vec()),
            Err(e) => seen.push(e.to_string().into_bytes()),
            Ok(None) => {}
            Ok(Some(other)) => panic!("{other:?}"),
        }
    }
    assert!(seen.contains(&b"abc".to_vec()), "{seen:?}");
    assert!(
        seen.iter()
            .any(|e| String::from_utf8_lossy(e).contains("0xdeadbeef00000003")),
        "{seen:?}"
    );
}

#[test]
fn typed_records_are_viewed_in_place() {
    #[derive(Clone, Copy, Debug, PartialEq, bytemuck::Pod, bytemuck::Zeroable)]
    #[repr(C)]
    struct Tick {
        at: u64,
        price: f64,
    }
    let lanes = pool(1);
    let mut c = lanes.consumer().unwrap();
    let mut p = lanes.acquire().unwrap();
    let t = Tick { at: 7, price: 1.5 };
    assert_eq!(p.publish_pod(&t).unwrap(), LanePush::Queued);
    assert_eq!(p.publish(b"short").unwrap(), LanePush::Queued);
    match c.try_recv().unwrap() {
        Some(LaneEvent::Record(r)) => assert_eq!(r.as_pod::<Tick>(), Some(&t)),
        other => panic!("{other:?}"),
    }
    match c.try_recv().unwrap() {
        Some(LaneEvent::Record(r)) => assert_eq!(r.as_pod::<Tick>(), None),
        other => panic!("{other:?}"),
    };
}

#[test]
fn builder_refuses_bad_shapes() {
    for (lanes, bytes) in [(0, 4096), (4097, 4096), (1, 1000), (1, 6144), (1, 2048)] {
        let err = LanesBuilder::new("t")
            .lanes(lanes)
            .lane_bytes(bytes)
            .in_process()
            .unwrap_err();
        assert!(
            matches!(err, Error::InvalidConfig(_)),
            "{lanes} x {bytes}: {err}"
        );
    }
}

#[cfg(not(miri))]
#[test]
fn a_blocking_receive_sleeps_until_a_producer_in_another_thread_publishes() {
    let lanes = pool(2);
    let mut c = lanes.consumer().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    let l2 = lanes.clone();
    let t = std::thread::spawn(move || {
        let mut p = l2.acquire().unwrap();
        // Publish only once the consumer is (about to be) waiting.
        rx.recv().unwrap();
        assert_eq!(p.publish(b"wake").unwrap(), LanePush::Queued);
        p
    });
    tx.send(()).unwrap();
    match c.recv_timeout(std::time::Duration::from_secs(10)).unwrap() {
        Some(LaneEvent::Record(r)) => assert_eq!(&r[..], b"wake"),
        other => panic!("{other:?}"),
    }
    drop(t.join().unwrap());
    assert!(matches!(
        c.recv_timeout(std::time::Duration::from_secs(10)).unwrap(),
        Some(LaneEvent::Closed(_))
    ));
    assert!(c
        .recv_timeout(std::time::Duration::from_millis(20))
        .unwrap()
        .is_none());
}

/// `next_ready` finds the first set bit at or after `from`, wrapping around, for every shape of
/// bitmap (one word, a partial last word, many words), and never a bit past the last lane (which
/// only a forged segment sets).
#[test]
fn next_ready_is_the_first_ready_lane_from_the_cursor_round_the_bitmap() {
    use super::layout::W_READY;
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    let mut rand = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    let shapes: &[u32] = if cfg!(miri) {
        &[1, 65]
    } else {
        &[1, 5, 64, 65, 130, 1000]
    };
    for &n in shapes {
        let lanes = pool(n);
        let set = lanes.set(lanes.heap_rings.as_ref().unwrap());
        let words = lanes.seg.words();
        let nwords = (n as usize).div_ceil(64);
        for round in 0..if cfg!(miri) { 8 } else { 64 } {
            // Sparse to dense, and now and then a forged bit past the last lane.
            let mut bitmap = vec![0u64; nwords];
            for _ in 0..round % 9 {
                let lane = (rand() % (nwords as u64 * 64)) as usize;
                if lane < n as usize || round % 4 == 0 {
                    bitmap[lane / 64] |= 1 << (lane % 64);
                }
            }
            for (i, b) in bitmap.iter().enumerate() {
                words[W_READY + i].store(*b, Ordering::Relaxed);
            }
            let set_bit = |lane: u32| bitmap[lane as usize / 64] >> (lane % 64) & 1 == 1;
            for from in (0..n + 2).step_by(if n > 130 { 7 } else { 1 }) {
                let start = if from >= n { 0 } else { from };
                let want = (0..n).map(|k| (start + k) % n).find(|&l| set_bit(l));
                assert_eq!(
                    set.next_ready(from),
                    want,
                    "{n} lanes, from {from}, {bitmap:x?}"
                );
            }
        }
    }
}

/// A batch acknowledges as soon as a quarter of the lane has been read (so that a producer
/// writing meanwhile finds room), never a record `f` has not returned from, and the rest at
/// the end.
#[test]
fn a_batch_acknowledges_each_quarter_lane_as_it_goes() {
    let lanes = pool(1);
    let mut c = lanes.consumer().unwrap();
    let mut p = lanes.acquire().unwrap();
    // 248-byte records take 256 bytes: four make a quarter of a 4096-byte lane.
    for i in 0..10u8 {
        assert_eq!(p.publish(&[i; 248]).unwrap(), LanePush::Queued);
    }
    let words = lanes.seg.words();
    let read = || words[lanes.shape.word(p.lane(), L_READ)].load(Ordering::Relaxed);
    let start = read();
    let mut seen = Vec::new();
    c.recv_lane_batch(p.lane(), 10, |item| {
        if let LaneItem::Record { bytes, .. } = item {
            // The read position while `f` holds record k: past the whole quarters before it.
            seen.push((bytes[0], read() - start));
        }
    })
    .unwrap();
    let want: Vec<_> = (0..10u8).map(|k| (k, u64::from(k / 4) * 1024)).collect();
    assert_eq!(seen, want);
    assert_eq!(read() - start, 10 * 256);
}

/// A publish that waits for room sleeps while the lane is full and is woken by the consumer:
/// at once by an explicit `ack`, and by the consumer's next call after a record is dropped. The
/// record is queued after the others, nothing is dropped.
#[test]
fn a_waiting_publish_sleeps_until_an_acknowledgement_makes_room() {
    let lanes = pool(1);
    let mut c = lanes.consumer().unwrap();
    let mut p = lanes.acquire().unwrap();
    let lane = p.lane();
    let words = lanes.seg.words();
    let flag = &words[lanes.shape.word(lane, L_ROOM_WAITERS)];
    // The wake word is a futex: only ever accessed as its low 32 bits.
    let wakes = crate::sync::futex_half(&words[lanes.shape.word(lane, L_ROOM_WAKE)]);
    let rec = [7u8; 1000];
    queue_all(&mut p, &rec, 4);
    for (k, explicit) in [(8u8, true), (9u8, false)] {
        let t = std::thread::spawn(move || {
            p.publish_wait(&[k; 1000]).unwrap();
            p
        });
        // The producer is asleep (or about to be) once it has raised its lane's room flag.
        while flag.load(Ordering::Relaxed) == 0 {
            assert!(!t.is_finished(), "a full lane let the publish through");
            std::thread::yield_now();
        }
        let before = wakes.load(Ordering::Relaxed);
        match c.try_recv().unwrap() {
            Some(LaneEvent::Record(r)) if explicit => r.ack(),
            Some(LaneEvent::Record(r)) => drop(r),
            other => panic!("{other:?}"),
        }
        if !explicit {
            // The next call of the consumer wakes the producer the drop found waiting.
            assert!(c.try_recv().unwrap().is_some());
        }
        // The consumer cleared the flag it saw and bumped the wake word: it woke the producer
        // (which may raise the flag again if a periodic look had it try once more meanwhile).
        assert_eq!(
            wakes.load(Ordering::Relaxed),
            before + 1,
            "the consumer woke it"
        );
        p = t.join().unwrap();
        assert_eq!(p.dropped(), 0);
    }
    drop(p);
    let got = drain(&mut c);
    let bytes: Vec<_> = got.iter().map(|(_, b)| b.as_ref().map(|b| b[0])).collect();
    assert_eq!(bytes, [Some(7), Some(8), Some(9), None]);
}

/// A publish with a timeout on a lane that stays full gives up at the deadline and counts the
/// drop, as `publish` does; a record too large is refused before any wait.
#[test]
fn a_publish_timeout_on_a_full_lane_drops_and_counts_at_the_deadline() {
    let lanes = pool(1);
    let _c = lanes.consumer().unwrap();
    let mut p = lanes.acquire().unwrap();
    let rec = [7u8; 1000];
    queue_all(&mut p, &rec, 4);
    let wait = std::time::Duration::from_millis(30);
    let t = std::time::Instant::now();
    assert_eq!(
        p.publish_timeout(&rec, wait).unwrap(),
        LanePush::Full { dropped: 1 }
    );
    assert!(t.elapsed() >= wait, "it gave up early: {:?}", t.elapsed());
    for w in [Wait::Spin, Wait::Yield] {
        p = p.wait_strategy(w);
        assert!(matches!(
            p.publish_timeout(&rec, std::time::Duration::from_millis(1))
                .unwrap(),
            LanePush::Full { .. }
        ));
    }
    assert_eq!(p.dropped(), 3);
    assert!(matches!(
        p.publish_timeout(&[0u8; 4096], std::time::Duration::from_secs(3600)),
        Err(Error::MessageTooLarge { .. })
    ));
    assert_eq!(p.dropped(), 3, "a refused record is not a drop");
}

/// A producer that publishes one record and closes, over and over on a one-lane pool, while the
/// consumer receives (one at a time and in batches): the close often lands between the
/// consumer's look at the lane's next header and its look at the lane's state. Every record
/// and every close is delivered exactly once, and the lane comes back each time.
#[test]
fn a_close_racing_the_consumer_s_look_is_delivered_once() {
    let sessions: u32 = if cfg!(miri) { 8 } else { 100_000 };
    let lanes = pool(1);
    let mut c = lanes.consumer().unwrap();
    let l2 = lanes.clone();
    let t = std::thread::spawn(move || {
        for k in 0..sessions {
            let mut p = loop {
                match l2.acquire() {
                    Ok(p) => break p,
                    Err(Error::LanesFull { .. }) => std::thread::yield_now(),
                    Err(e) => panic!("{e}"),
                }
            };
            assert_eq!(p.publish(&k.to_le_bytes()).unwrap(), LanePush::Queued);
            p.close();
        }
    });
    let (records, closes) = (std::cell::Cell::new(0u32), std::cell::Cell::new(0u32));
    let mut event = |item: LaneItem<'_>| match item {
        LaneItem::Record { bytes, .. } => {
            assert_eq!(
                closes.get(),
                records.get(),
                "a record before its session's close"
            );
            assert_eq!(bytes, records.get().to_le_bytes(), "in order, once");
            records.set(records.get() + 1);
        }
        LaneItem::Closed(closed) => {
            assert_eq!(closes.get() + 1, records.get(), "a close after its record");
            assert_eq!(closed.dropped, 0);
            closes.set(closes.get() + 1);
        }
    };
    let mut turn = 0u64;
    while closes.get() < sessions {
        turn += 1;
        if turn % 2 == 0 {
            c.recv_batch(usize::MAX, &mut event).unwrap();
        } else if let Some(e) = c.try_recv().unwrap() {
            match e {
                LaneEvent::Record(r) => event(LaneItem::Record {
                    lane: r.lane(),
                    bytes: &r,
                }),
                LaneEvent::Closed(closed) => event(LaneItem::Closed(closed)),
            }
        }
    }
    t.join().unwrap();
    assert_eq!((records.get(), closes.get()), (sessions, sessions));
    assert_eq!(c.try_recv().unwrap().map(|_| ()), None);
}

/// A batch's turn on a lane ends after 32 records only if another lane is ready: a single busy
/// lane is read on, and acknowledged at the end (or each quarter lane), not every 32 records;
/// a lane that becomes ready during the turn is served after its 32nd record.
#[test]
fn a_batch_turn_goes_on_while_no_other_lane_is_ready() {
    let lanes = pool(2);
    let mut c = lanes.consumer().unwrap();
    let mut a = lanes.acquire().unwrap();
    let mut b = lanes.acquire().unwrap();
    // 16 bytes a record: 60 take 960 bytes, less than a quarter of the 4096-byte lane.
    for i in 0..60u8 {
        assert_eq!(a.publish(&[i; 8]).unwrap(), LanePush::Queued);
    }
    let words = lanes.seg.words();
    let a_lane = a.lane();
    let read = || words[lanes.shape.word(a_lane, L_READ)].load(Ordering::Relaxed);
    let start = read();
    let mut seen = Vec::new();
    let n = c
        .recv_batch(60, |item| {
            if let LaneItem::Record { lane, bytes } = item {
                seen.push((lane, bytes[0], read() - start));
            }
        })
        .unwrap();
    assert_eq!(n, 60);
    let want: Vec<_> = (0..60u8).map(|k| (a.lane(), k, 0)).collect();
    assert_eq!(seen, want, "one turn, acknowledged at its end");
    assert_eq!(read() - start, 960);

    for i in 0..40u8 {
        assert_eq!(a.publish(&[i; 8]).unwrap(), LanePush::Queued);
    }
    let mut order = Vec::new();
    c.recv_batch(41, |item| {
        if let LaneItem::Record { lane, bytes } = item {
            order.push((lane, bytes[0]));
            if lane == a.lane() && bytes[0] == 10 {
                // Lane b turns ready in the middle of lane a's turn.
                assert_eq!(b.publish(&[99; 8]).unwrap(), LanePush::Queued);
            }
        }
    })
    .unwrap();
    assert_eq!(order[31], (a.lane(), 31));
    assert_eq!(
        order[32],
        (b.lane(), 99),
        "b is served after a's 32nd record"
    );
    assert_eq!(order[40], (a.lane(), 39));

    // Lane b drained and noted empty: its ready bit stays set until the consumer clears such
    // bits together, but it is not a lane with something to read, so a's turn goes on.
    assert!(c.try_recv().unwrap().is_none());
    for i in 0..60u8 {
        assert_eq!(a.publish(&[i; 8]).unwrap(), LanePush::Queued);
    }
    let start = read();
    let mut acks = Vec::new();
    c.recv_batch(60, |_| acks.push(read() - start)).unwrap();
    assert_eq!(acks, vec![0; 60], "one turn past b's stale bit");
    // A stale lane that has a record again ends the turn after 32.
    assert!(c.try_recv().unwrap().is_none());
    for i in 0..40u8 {
        assert_eq!(a.publish(&[i; 8]).unwrap(), LanePush::Queued);
    }
    let mut order = Vec::new();
    c.recv_batch(41, |item| {
        if let LaneItem::Record { lane, bytes } = item {
            order.push((lane, bytes[0]));
            if lane == a_lane && bytes[0] == 10 {
                assert_eq!(b.publish(&[98; 8]).unwrap(), LanePush::Queued);
            }
        }
    })
    .unwrap();
    assert_eq!(order[0], (a_lane, 0));
    assert_eq!(
        order[32],
        (b.lane(), 98),
        "the stale lane's new record ends a's turn"
    );
}

/// A timeout too long to represent waits without limit (no overflow panic), and
/// `wait_for_room` waits for room without publishing or counting a drop.
#[test]
fn endless_timeouts_and_waiting_for_room_without_publishing() {
    use std::time::Duration;
    let lanes = pool(1);
    let mut c = lanes.consumer().unwrap();
    let mut p = lanes.acquire().unwrap();
    assert_eq!(
        p.publish_timeout(b"x", Duration::MAX).unwrap(),
        LanePush::Queued
    );
    match c.recv_timeout(Duration::MAX).unwrap() {
        Some(LaneEvent::Record(r)) => assert_eq!(&r[..], b"x"),
        other => panic!("{other:?}"),
    }
    let rec = [7u8; 1000];
    queue_all(&mut p, &rec, 4);
    // No room for another 1000 bytes; room for 8 (the lane has 56 bytes free).
    assert!(!p
        .wait_for_room(1000, Some(Duration::from_millis(5)))
        .unwrap());
    assert!(p.wait_for_room(8, Some(Duration::ZERO)).unwrap());
    assert_eq!(p.dropped(), 0, "waiting drops nothing");
    assert!(matches!(
        p.wait_for_room(4096, None),
        Err(Error::MessageTooLarge { .. })
    ));
    let t = std::thread::spawn(move || {
        assert!(p.wait_for_room(1000, None).unwrap());
        assert_eq!(p.publish(&rec).unwrap(), LanePush::Queued);
        p
    });
    // Whenever the waiter gets there, the acknowledgement makes room for it.
    match c.recv_timeout(Duration::MAX).unwrap() {
        Some(LaneEvent::Record(r)) => assert_eq!(r.len(), 1000),
        other => panic!("{other:?}"),
    }
    let p = t.join().unwrap();
    assert_eq!(p.dropped(), 0);
}

/// A read position the consumer could not have stored (past the write position, or behind the
/// producer's last look) would keep a lane full for ever: a waiting publish reports it as
/// corrupt at its periodic look instead of waiting without end.
#[test]
fn a_forged_read_position_ends_a_waiting_publish_as_corrupt() {
    let lanes = pool(1);
    let mut c = lanes.consumer().unwrap();
    let mut p = lanes.acquire().unwrap();
    let rec = [7u8; 1000];
    queue_all(&mut p, &rec, 4);
    // Two records read: the producer's next publishes load the read position (2016).
    assert_eq!(drain_n(&mut c, 2), 2);
    queue_all(&mut p, &rec, 2);
    let words = lanes.seg.words();
    let read = &words[lanes.shape.word(p.lane(), L_READ)];
    assert_eq!(read.load(Ordering::Relaxed), 2016);
    // Past the write position, and behind what the producer saw.
    for forged in [1 << 20, 1008] {
        read.store(forged, Ordering::Relaxed);
        assert!(matches!(
            p.publish_wait(&rec),
            Err(Error::LanesCorrupt { .. })
        ));
        assert!(matches!(
            p.wait_for_room(1000, None),
            Err(Error::LanesCorrupt { .. })
        ));
        assert!(matches!(
            p.publish_timeout(&rec, std::time::Duration::from_secs(3600)),
            Err(Error::LanesCorrupt { .. })
        ));
    }
    assert_eq!(p.dropped(), 0);
}

#[test]
fn a_publisher_moved_to_another_thread_publishes_and_closes_there() {
    fn send_sync<T: Send + Sync>() {}
    send_sync::<LanePublisher>();
    let lanes = pool(2);
    let mut c = lanes.consumer().unwrap();
    let mut p = lanes.acquire().unwrap();
    let lane = p.lane();
    std::thread::spawn(move || {
        assert_eq!(p.publish(b"moved").unwrap(), LanePush::Queued);
    })
    .join()
    .unwrap();
    assert_eq!(
        drain(&mut c),
        vec![(lane, Some(b"moved".to_vec())), (lane, None)]
    );
}
