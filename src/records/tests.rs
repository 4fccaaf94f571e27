//! Unit tests of the records protocol over heap segments.

use crate::bus::Start;
use crate::records::{RecordRecv, RecordsBuilder};

#[test]
fn records_round_trip_with_types_and_sizes() {
    let r = RecordsBuilder::new("t").bytes(4096).in_process().unwrap();
    let mut tx = r.publisher().unwrap();
    let mut rx = r.subscribe(Start::Oldest);
    for len in [0usize, 1, 7, 8, 9, 100, 1008] {
        let bytes: Vec<u8> = (0..len).map(|i| i as u8 ^ len as u8).collect();
        let seq = tx.publish_record(len as u32, &bytes).unwrap();
        match rx.try_recv() {
            RecordRecv::Record(m) => {
                assert_eq!(
                    (m.seq(), m.type_id(), m.bytes()),
                    (seq, len as u32, &bytes[..])
                );
            }
            other => panic!("expected record {seq}, got {other:?}"),
        }
    }
    assert!(matches!(rx.try_recv(), RecordRecv::Empty));
}

#[test]
fn every_length_round_trips_through_the_unrolled_word_copies() {
    // The producer stores and the reader copies in groups of four words, then single words,
    // then the last bytes: every remainder of both, at positions all around the ring.
    let r = RecordsBuilder::new("t").bytes(4096).in_process().unwrap();
    let mut tx = r.publisher().unwrap();
    let mut rx = r.subscribe(Start::Oldest);
    for len in (0usize..=80).chain([255, 256, 257, 1000, 1008]) {
        let bytes: Vec<u8> = (0..len)
            .map(|i| (i as u8).wrapping_mul(31) ^ 0xa5)
            .collect();
        let seq = tx.publish_bytes(&bytes).unwrap();
        match rx.try_recv() {
            RecordRecv::Record(m) => assert_eq!((m.seq(), m.bytes()), (seq, &bytes[..])),
            other => panic!("expected record {seq} of {len} bytes, got {other:?}"),
        }
    }
}

use crate::bus::LapPolicy;
use crate::error::Error;

fn record(i: u64, len: usize) -> Vec<u8> {
    (0..len)
        .map(|k| (i as u8).wrapping_mul(31) ^ k as u8)
        .collect()
}

/// Publishes `n` records of `len` bytes, the i-th made by `record(i, len)`.
fn publish_n(tx: &mut crate::records::RecordPublisher, from: u64, n: u64, len: usize) {
    for i in from..from + n {
        assert_eq!(tx.publish_bytes(&record(i, len)).unwrap(), i);
    }
}

#[test]
fn lapped_subscriber_loses_exactly_the_overwritten_records_and_resumes_at_the_oldest() {
    let r = RecordsBuilder::new("t").bytes(4096).in_process().unwrap();
    let mut tx = r.publisher().unwrap();
    let mut rx = r.subscribe(Start::Oldest);
    // 100-byte records take 120 bytes: 34 fit in 4096 bytes; publish 100 of them.
    publish_n(&mut tx, 0, 100, 100);
    let RecordRecv::Lapped { lost } = rx.try_recv() else {
        panic!("the oldest records were overwritten")
    };
    let mut next = lost;
    loop {
        match rx.try_recv() {
            RecordRecv::Record(m) => {
                assert_eq!(m.seq(), next);
                assert_eq!(m.bytes(), &record(next, 100)[..]);
                next += 1;
            }
            RecordRecv::Empty => break,
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(next, 100);
    let st = rx.stats();
    assert_eq!((st.received + st.lost, st.laps), (100, 1));
    // Every record still in the ring was delivered: the loss is only what was overwritten.
    assert!(st.received >= 4096 / 120 - 2, "received {}", st.received);
}

#[test]
fn newest_policy_resumes_at_the_last_record() {
    let r = RecordsBuilder::new("t").bytes(4096).in_process().unwrap();
    let mut tx = r.publisher().unwrap();
    let mut rx = r.subscribe(Start::Oldest).lap_policy(LapPolicy::Newest);
    publish_n(&mut tx, 0, 100, 100);
    assert!(matches!(rx.try_recv(), RecordRecv::Lapped { lost: 99 }));
    let RecordRecv::Record(m) = rx.try_recv() else {
        panic!()
    };
    assert_eq!(m.seq(), 99);
}

#[test]
fn records_across_the_end_of_the_ring_are_padded_and_intact() {
    let r = RecordsBuilder::new("t").bytes(4096).in_process().unwrap();
    let mut tx = r.publisher().unwrap();
    let mut rx = r.subscribe(Start::Next);
    for i in 0..500u64 {
        let len = 1 + (i as usize * 37) % 1008;
        tx.publish_record(i as u32, &record(i, len)).unwrap();
        let RecordRecv::Record(m) = rx.try_recv() else {
            panic!("record {i} not delivered")
        };
        assert_eq!(
            (m.seq(), m.type_id(), m.bytes()),
            (i, i as u32, &record(i, len)[..])
        );
    }
    assert!(r.bytes_published() > 4 * 4096);
}

#[test]
fn start_positions_mirror_the_bus() {
    let r = RecordsBuilder::new("t").bytes(4096).in_process().unwrap();
    let mut tx = r.publisher().unwrap();
    publish_n(&mut tx, 0, 10, 40);
    let first = |start| {
        let mut rx = r.subscribe(start);
        match rx.try_recv() {
            RecordRecv::Record(m) => Some(m.seq()),
            RecordRecv::Lapped { lost } => Some(1000 + lost),
            _ => None,
        }
    };
    assert_eq!(first(Start::Oldest), Some(0));
    assert_eq!(first(Start::Last(3)), Some(7));
    assert_eq!(first(Start::Sequence(4)), Some(4));
    assert_eq!(first(Start::Next), None);
    publish_n(&mut tx, 10, 200, 40);
    // Sequence 4 was overwritten: the first receive reports what is gone.
    let oldest = first(Start::Oldest).unwrap();
    assert_eq!(first(Start::Sequence(4)), Some(1000 + oldest - 4));
}

#[test]
fn publish_with_zero_fills_and_a_panicking_fill_is_counted_lost() {
    let r = RecordsBuilder::new("t").bytes(4096).in_process().unwrap();
    let mut tx = r.publisher().unwrap();
    let mut rx = r.subscribe(Start::Next);
    // Dirty the ring first, so that zero-filling shows.
    publish_n(&mut tx, 0, 40, 200);
    while !matches!(rx.try_recv(), RecordRecv::Empty) {}
    let lost_before = rx.stats().lost;
    let (seq, ()) = tx
        .publish_with(20, |w| {
            w.set_type_id(9);
            w.write_at(4, b"abc").unwrap();
            assert!(w.write_at(18, b"xyz").is_err());
        })
        .unwrap();
    let RecordRecv::Record(m) = rx.try_recv() else {
        panic!()
    };
    assert_eq!((m.seq(), m.type_id()), (seq, 9));
    assert_eq!(m.bytes(), b"\0\0\0\0abc\0\0\0\0\0\0\0\0\0\0\0\0\0");
    let caught = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let _ = tx.publish_with(30, |w| {
            w.push(b"half").unwrap();
            panic!("fill fails");
        });
    }));
    assert!(caught.is_err());
    tx.publish_bytes(b"after").unwrap();
    assert!(matches!(rx.try_recv(), RecordRecv::Lapped { lost: 1 }));
    let RecordRecv::Record(m) = rx.try_recv() else {
        panic!()
    };
    assert_eq!(m.bytes(), b"after");
    assert_eq!(rx.stats().lost, lost_before + 1);
}

#[test]
fn a_record_larger_than_a_quarter_of_the_ring_is_refused() {
    let r = RecordsBuilder::new("t").bytes(4096).in_process().unwrap();
    let mut tx = r.publisher().unwrap();
    assert_eq!(tx.max_record(), 1008);
    assert!(tx.publish_bytes(&[0; 1008]).is_ok());
    assert!(matches!(
        tx.publish_bytes(&[0; 1009]),
        Err(Error::MessageTooLarge {
            len: 1009,
            capacity: 1008
        })
    ));
    assert!(tx.publish_with(5000, |_| ()).is_err());
    assert!(matches!(
        RecordsBuilder::new("t").bytes(5000).in_process(),
        Err(Error::InvalidConfig(_))
    ));
}

#[test]
fn one_producer_at_a_time_and_closed_once_it_leaves() {
    let r = RecordsBuilder::new("t").bytes(4096).in_process().unwrap();
    let mut tx = r.publisher().unwrap();
    assert!(matches!(r.publisher(), Err(Error::ProducerExists { .. })));
    let mut rx = r.subscribe(Start::Next);
    tx.publish_bytes(b"x").unwrap();
    drop(tx);
    assert!(matches!(rx.recv(), RecordRecv::Record(_)));
    assert!(matches!(rx.recv(), RecordRecv::Closed));
    // A new producer continues the sequence where the last one stopped.
    let mut tx = r.publisher().unwrap();
    assert_eq!(tx.publish_bytes(b"y").unwrap(), 1);
    let RecordRecv::Record(m) = rx.recv() else {
        panic!()
    };
    assert_eq!((m.seq(), m.bytes()), (1, &b"y"[..]));
}

#[test]
fn a_blocking_receive_is_woken_by_a_publish_from_another_thread() {
    let r = RecordsBuilder::new("t")
        .bytes(1 << 16)
        .in_process()
        .unwrap();
    let mut tx = r.publisher().unwrap();
    let mut rx = r.subscribe(Start::Next);
    let t = std::thread::spawn(move || {
        let RecordRecv::Record(m) = rx.recv() else {
            panic!()
        };
        m.bytes().to_vec()
    });
    tx.publish_bytes(b"wake").unwrap();
    assert_eq!(t.join().unwrap(), b"wake");
}

#[test]
fn overwritten_padding_before_an_intact_record_costs_no_loss() {
    let r = RecordsBuilder::new("t").bytes(4096).in_process().unwrap();
    let mut tx = r.publisher().unwrap();
    // Three records of 1016 bytes and one of 944: the tail is at 3992, 104 bytes before the end.
    for len in [1000, 1000, 1000, 928] {
        tx.publish_bytes(&record(0, len)).unwrap();
    }
    let mut rx = r.subscribe(Start::Next);
    // 120 bytes do not fit: padding at 3992, record 4 at 4096. Then records of 616, 696, 1024
    // and 1024 bytes: the last one's write ends at 7584 and stores the intent 7584 + 512 (the
    // slack of a 4 KiB ring, docs/design.md §15), which passes the padding (3992 + 4096) but
    // not record 4 (4096 + 4096): the padding counts as overwritten, record 4 as intact.
    for (i, len) in [104, 600, 680, 1008, 1008].into_iter().enumerate() {
        tx.publish_bytes(&record(4 + i as u64, len)).unwrap();
    }
    for seq in 4..9 {
        match rx.try_recv() {
            RecordRecv::Record(m) => assert_eq!(m.seq(), seq),
            other => panic!("expected record {seq}, got {other:?}"),
        }
    }
    assert!(matches!(rx.try_recv(), RecordRecv::Empty));
    assert_eq!(rx.stats().lost, 0);
}

mod crashes {
    //! A producer that dies at each step of a publish, driven through the production `Writer`
    //! on a heap segment: the next producer goes on, and readers lose nothing that was committed.
    use super::record;
    use crate::bus::Start;
    use crate::records::layout::{RingShape, W_TAIL};
    use crate::records::{Polled, Reader, RecordRing, Writer};
    use crate::segment::header::{ProducerMode, SegmentKind, TypeInfo, W_CURSOR};
    use crate::segment::producers::SegmentLiveness;
    use crate::segment::{Segment, Shape};
    use crate::sync::Ordering;

    fn segment() -> Segment {
        let shape = RingShape::of(4096);
        Segment::heap(crate::segment::Plan::plain(Shape {
            kind: SegmentKind::Records,
            geometry: shape.geometry(),
            mode: ProducerMode::Single,
            ty: TypeInfo::raw(),
            first_seq: 0,
        }))
    }

    fn drain(seg: &Segment, reader: &mut Reader) -> Vec<u64> {
        let ring = RecordRing::new(seg.words(), RingShape::of(4096));
        let live = SegmentLiveness::observer(seg);
        let mut buf = vec![0u64; 128];
        let mut got = Vec::new();
        loop {
            match reader.poll_checked(&ring, &live, &mut buf) {
                Polled::Record { seq, .. } => got.push(seq),
                Polled::Lapped { lost } => panic!("lost {lost}"),
                Polled::Empty | Polled::Closed => return got,
            }
        }
    }

    #[test]
    fn a_producer_dead_mid_write_leaves_its_sequence_to_the_next_one() {
        let seg = segment();
        let ring = RecordRing::new(seg.words(), RingShape::of(4096));
        let mut reader = Reader::new(&ring, Start::Oldest);
        let mut w = Writer::attach(&ring).unwrap();
        for len in [100, 200] {
            let p = w.begin(&ring, len, 0);
            w.write_bytes(&ring, &p, &record(p.seq, len));
            w.commit(&ring, p);
        }
        // Dies after begin, half-way through its payload: the record stays busy.
        let p = w.begin(&ring, 300, 0);
        w.write_bytes(&ring, &p, &record(99, 300));
        // (The producer's state is all it had in its process: it is gone with it.)
        assert_eq!(drain(&seg, &mut reader), [0, 1]);
        let mut w = Writer::attach(&ring).unwrap();
        assert_eq!(w.next_seq(), 2);
        let p = w.begin(&ring, 50, 0);
        w.write_bytes(&ring, &p, &record(2, 50));
        w.commit(&ring, p);
        assert_eq!(drain(&seg, &mut reader), [2]);
    }

    #[test]
    fn a_record_committed_but_not_counted_is_kept_by_the_next_producer() {
        let seg = segment();
        let ring = RecordRing::new(seg.words(), RingShape::of(4096));
        let mut reader = Reader::new(&ring, Start::Oldest);
        let mut w = Writer::attach(&ring).unwrap();
        let p = w.begin(&ring, 100, 0);
        w.write_bytes(&ring, &p, &record(0, 100));
        w.commit(&ring, p);
        // As if it died after its commit, before moving the cursor and the tail.
        seg.words()[W_CURSOR].store(0, Ordering::Relaxed);
        seg.words()[W_TAIL].store(0, Ordering::Relaxed);
        let mut w = Writer::attach(&ring).unwrap();
        assert_eq!(w.next_seq(), 1, "the committed record is counted");
        let p = w.begin(&ring, 10, 0);
        w.commit(&ring, p);
        assert_eq!(drain(&seg, &mut reader), [0, 1]);
    }

    #[test]
    fn padding_left_by_a_dead_producer_is_followed() {
        let seg = segment();
        let ring = RecordRing::new(seg.words(), RingShape::of(4096));
        let mut w = Writer::attach(&ring).unwrap();
        for _ in 0..4 {
            let p = w.begin(&ring, 1000, 0);
            w.commit(&ring, p);
        }
        let mut reader = Reader::new(&ring, Start::Next);
        // 4064 bytes written: the next 1016-byte record pads. It dies after padding.
        let p = w.begin(&ring, 1000, 0);
        assert_eq!(p.pos, 4096);
        let mut w = Writer::attach(&ring).unwrap();
        let p = w.begin(&ring, 8, 0);
        assert_eq!(
            (p.seq, p.pos),
            (4, 4096),
            "the padding is kept: readers may follow it"
        );
        w.commit(&ring, p);
        assert_eq!(drain(&seg, &mut reader), [4]);
    }
}
