//! The work queue through its public API: items, types, full and empty, kinds, and a
//! model-based property test against a `VecDeque`.

use shmbus_testkit as support;

use std::collections::{HashSet, VecDeque};
use std::time::Duration;

use proptest::prelude::*;
use shmbus::bytemuck::{Pod, Zeroable};
use shmbus::{BusBuilder, Error, Queue, QueueBuilder, SendError, Wait};
use support::make;
use support::{assert_wrong_kind, TestBus};

#[derive(Clone, Copy, Debug, PartialEq, Pod, Zeroable)]
#[bytemuck(crate = "shmbus::bytemuck")]
#[repr(C)]
struct Job {
    id: u64,
    cost: f64,
}

#[test]
fn raw_items_of_any_length_up_to_the_item_size_come_out_in_order() {
    let t = TestBus::new("q-raw");
    let q = make::queue(&t, 8, 20);
    let (mut tx, mut rx) = (q.sender().unwrap(), q.receiver().unwrap());
    let items: Vec<Vec<u8>> = (0..=20u8).map(|n| (0..n).collect()).collect();
    for chunk in items.chunks(8) {
        for item in chunk {
            tx.try_send(item).unwrap();
        }
        for item in chunk {
            assert_eq!(rx.try_recv(), Some(&item[..]));
        }
    }
    assert_eq!(rx.try_recv(), None);
    assert_eq!(tx.stats().sent, 21);
    assert_eq!(rx.stats().received, 21);
}

#[test]
fn a_full_queue_hands_the_item_back_and_a_too_large_one_is_refused() {
    let t = TestBus::new("q-full");
    let q = make::queue(&t, 2, 8);
    let mut tx = q.sender().unwrap();
    tx.try_send(b"a").unwrap();
    tx.try_send(b"b").unwrap();
    assert!(q.is_full());
    assert_eq!(q.len(), 2);
    assert_eq!(tx.try_send(b"c"), Err(SendError::Full(&b"c"[..])));
    assert_eq!(tx.stats().full, 1);
    let err = tx.try_send(b"123456789").unwrap_err();
    assert!(matches!(err, SendError::TooLarge { capacity: 8, .. }));
    assert_eq!(err.into_inner(), b"123456789");
    assert_eq!(
        tx.send_timeout(b"c", Duration::from_millis(1)),
        Err(SendError::Full(&b"c"[..]))
    );
    let mut rx = q.receiver().unwrap();
    assert_eq!(rx.try_recv(), Some(&b"a"[..]));
    tx.try_send(b"c").unwrap();
    assert_eq!(
        rx.try_iter().collect::<Vec<_>>(),
        [b"b".to_vec(), b"c".to_vec()]
    );
    assert!(q.is_empty());
    assert_eq!(rx.recv_timeout(Duration::from_millis(1)), None);
}

#[test]
fn typed_items_round_trip_and_another_type_is_refused() {
    let t = TestBus::new("q-typed");
    let q = QueueBuilder::new(t.name())
        .item_type::<Job>()
        .type_name("Job")
        .capacity(4)
        .create()
        .unwrap();
    assert_eq!(q.item_size(), 16);
    let (mut tx, mut rx) = (q.sender().unwrap(), q.receiver().unwrap());
    tx.send(Job { id: 1, cost: 2.5 }).unwrap();
    assert_eq!(*rx.recv().unwrap(), Job { id: 1, cost: 2.5 });
    let err = QueueBuilder::new(t.name())
        .item_type::<[u64; 2]>()
        .open()
        .unwrap_err();
    assert!(matches!(err, Error::TypeMismatch { .. }), "{err}");
    // A raw handle on a typed queue cannot send or receive raw bytes.
    let raw = Queue::open(t.name()).unwrap();
    assert!(matches!(raw.sender(), Err(Error::TypeMismatch { .. })));
}

#[test]
fn a_bus_opened_as_a_queue_and_a_queue_opened_as_a_bus_are_wrong_kinds() {
    let bus = TestBus::new("q-kind-bus");
    BusBuilder::new(bus.name()).create().unwrap();
    let err = Queue::open(bus.name()).unwrap_err();
    assert_wrong_kind(&err, "bus", "queue");
    let queue = TestBus::new("q-kind-queue");
    Queue::builder(queue.name()).create().unwrap();
    let err = shmbus::Bus::open(queue.name()).unwrap_err();
    assert_wrong_kind(&err, "queue", "bus");
    assert!(err.to_string().contains("queue"), "{err}");
}

#[test]
fn bad_names_and_missing_queues_are_clear_errors() {
    assert!(matches!(
        Queue::open("no/such"),
        Err(Error::InvalidName { .. })
    ));
    let t = TestBus::new("q-missing");
    assert!(matches!(Queue::open(t.name()), Err(Error::NotFound { .. })));
    assert!(matches!(
        Queue::builder(t.name()).capacity(3).create(),
        Err(Error::InvalidConfig(_))
    ));
}

#[test]
fn open_or_create_adopts_the_same_shape_and_refuses_another() {
    let t = TestBus::new("q-ooc");
    let a = Queue::builder(t.name())
        .capacity(16)
        .open_or_create()
        .unwrap();
    let b = Queue::builder(t.name())
        .capacity(16)
        .open_or_create()
        .unwrap();
    a.sender().unwrap().try_send(b"x").unwrap();
    assert_eq!(b.len(), 1);
    assert!(matches!(
        Queue::builder(t.name()).capacity(32).open_or_create(),
        Err(Error::GeometryMismatch { .. })
    ));
}

#[test]
fn the_participant_table_holds_32_senders_and_receivers_together() {
    let q = Queue::builder("unused").in_process().unwrap();
    let senders: Vec<_> = (0..16).map(|_| q.sender().unwrap()).collect();
    let receivers: Vec<_> = (0..16).map(|_| q.receiver().unwrap()).collect();
    assert!(matches!(
        q.sender(),
        Err(Error::TooManyParticipants { max: 32, .. })
    ));
    drop(senders);
    drop(receivers);
    q.receiver().unwrap();
}

#[test]
fn named_queue_lists_its_participants_with_their_roles() {
    let t = TestBus::new("q-parts");
    let q = Queue::builder(t.name()).create().unwrap();
    let _tx = q.sender().unwrap();
    let _rx = q.receiver().unwrap();
    let parts = q.participants();
    assert_eq!(parts.len(), 2);
    assert!(parts.iter().all(|p| p.alive && p.pid == std::process::id()));
    assert_eq!(parts[0].role, Some(shmbus::Role::Sender));
    assert_eq!(parts[1].role, Some(shmbus::Role::Receiver));
}

/// Threads of one process on an in-process queue: four senders, four receivers, each item
/// received exactly once, each sender's items in order for each receiver.
#[test]
fn in_process_threads_receive_each_item_exactly_once_in_sender_order() {
    const PER: u64 = 20_000;
    let q = QueueBuilder::new("threads")
        .item_type::<[u64; 2]>()
        .capacity(64)
        .in_process()
        .unwrap();
    let received: Vec<Vec<[u64; 2]>> = std::thread::scope(|s| {
        for p in 0..4u64 {
            let mut tx = q.sender().unwrap().wait_strategy(Wait::Yield);
            s.spawn(move || {
                for c in 0..PER {
                    tx.send([p, c]).unwrap();
                }
            });
        }
        let handles: Vec<_> = (0..4)
            .map(|_| {
                let mut rx = q.receiver().unwrap();
                s.spawn(move || {
                    let mut got = Vec::new();
                    while let Some(&item) = rx.recv_timeout(Duration::from_secs(2)) {
                        got.push(item);
                        if item[0] == u64::MAX {
                            break;
                        }
                    }
                    got
                })
            })
            .collect();
        // Ends each receiver once the senders are done: one marker each, after every item.
        let mut tx = q.sender().unwrap();
        while !q.is_empty() || q.positions().1 < 4 * PER {
            std::thread::yield_now();
        }
        for _ in 0..4 {
            tx.send([u64::MAX, 0]).unwrap();
        }
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let mut seen = HashSet::new();
    for got in &received {
        assert_eq!(
            got.last().map(|i| i[0]),
            Some(u64::MAX),
            "each receiver got a marker"
        );
        let mut last = [None; 4];
        for &[p, c] in &got[..got.len() - 1] {
            assert!(seen.insert((p, c)), "item {p}/{c} received twice");
            let l = &mut last[p as usize];
            assert!(l.map_or(true, |l| l < c), "sender {p} out of order");
            *l = Some(c);
        }
    }
    assert_eq!(seen.len() as u64, 4 * PER);
}

/// The operations a property test applies to both the queue and the model.
#[derive(Clone, Debug)]
enum Op {
    Send(Vec<u8>),
    Recv,
}

fn op(size: usize) -> impl Strategy<Value = Op> {
    prop_oneof![
        prop::collection::vec(any::<u8>(), 0..=size).prop_map(Op::Send),
        Just(Op::Recv),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    /// Any sequence of sends and receives, by any of two senders and two receivers, behaves as
    /// a bounded `VecDeque`: the same items out, `Full` exactly when the model is at capacity.
    #[test]
    fn queue_behaves_as_a_bounded_vecdeque(
        slots_log2 in 0u32..4,
        ops in prop::collection::vec((op(24), 0usize..2), 1..200),
    ) {
        let cap = 1u64 << slots_log2;
        let q = Queue::builder("model").capacity(cap).item_size(24).in_process().unwrap();
        let mut txs = [q.sender().unwrap(), q.sender().unwrap()];
        let mut rxs = [q.receiver().unwrap(), q.receiver().unwrap()];
        let mut model = VecDeque::new();
        for (op, who) in ops {
            match op {
                Op::Send(item) => {
                    let r = txs[who].try_send(&item);
                    if model.len() as u64 == cap {
                        prop_assert_eq!(r, Err(SendError::Full(&item[..])));
                    } else {
                        prop_assert_eq!(r, Ok(()));
                        model.push_back(item);
                    }
                }
                Op::Recv => {
                    let got = rxs[who].try_recv().map(<[u8]>::to_vec);
                    prop_assert_eq!(got, model.pop_front());
                }
            }
            prop_assert_eq!(q.len(), model.len() as u64);
            prop_assert_eq!(q.is_full(), model.len() as u64 == cap);
        }
    }
}

/// docs/design.md §11, "Closed": with no sender attached and no item left, a receiver is told
/// the queue is closed (as a crossbeam channel whose senders are gone); items sent before stay
/// for a receiver that attaches later, and a sender attaching again reopens it.
#[test]
fn a_queue_with_no_sender_and_no_item_is_closed_until_a_sender_comes_back() {
    let name = TestBus::new("queue-closed");
    let q = make::queue(&name, 8, 16);
    assert!(q.is_closed(), "nobody ever sent: closed");
    let mut tx = q.sender().unwrap();
    assert!(!q.is_closed(), "a sender is attached");
    tx.send(b"one").unwrap();
    tx.send(b"two").unwrap();
    drop(tx);
    assert!(!q.is_closed(), "items are left");
    // A receiver that attaches after the sender left still gets them, then is told closed.
    let mut rx = q.receiver().unwrap();
    assert_eq!(rx.recv(), Some(&b"one"[..]));
    assert_eq!(
        rx.iter().collect::<Vec<_>>(),
        [b"two".to_vec()],
        "iter ends at closed"
    );
    assert!(rx.is_closed());
    assert_eq!(rx.recv(), None);
    assert_eq!(rx.recv_timeout(Duration::from_secs(20)), None);
    // Not final: a sender comes back.
    let mut tx = q.sender().unwrap();
    assert!(!rx.is_closed());
    tx.send(b"three").unwrap();
    assert_eq!(rx.recv(), Some(&b"three"[..]));
    // A receiver blocked while the last sender leaves is woken with `None`.
    let waiter = {
        let name = name.0.clone();
        std::thread::spawn(move || {
            let q = Queue::open(&name).unwrap();
            let mut rx = q.receiver().unwrap();
            rx.recv().map(<[u8]>::to_vec)
        })
    };
    drop(tx);
    assert_eq!(waiter.join().unwrap(), None);
}

/// `Queue::bytes_sender` and `bytes_receiver`: tools and bindings move a typed queue's items as
/// bytes of exactly the type's size; typed participants see the values.
#[test]
fn byte_participants_on_a_typed_queue_move_exactly_one_value_per_item() {
    let name = TestBus::new("queue-bytes");
    let typed = QueueBuilder::new(name.name())
        .item_type::<[u32; 2]>()
        .capacity(8)
        .create()
        .unwrap();
    let raw = Queue::open(name.name()).unwrap();
    assert!(matches!(raw.sender(), Err(Error::TypeMismatch { .. })));
    let mut tx = raw.bytes_sender().unwrap();
    let mut value = [0u8; 8];
    value[..4].copy_from_slice(&7u32.to_ne_bytes());
    value[4..].copy_from_slice(&9u32.to_ne_bytes());
    tx.try_send(&value).unwrap();
    match tx.try_send(&value[..5]) {
        Err(SendError::WrongSize { size: 8, .. }) => {}
        other => panic!("a short item must be refused, got {other:?}"),
    }
    let mut rx = typed.receiver().unwrap();
    assert_eq!(rx.try_recv(), Some(&[7u32, 9]));
    // And the other way: a typed sender, a byte receiver.
    typed.sender().unwrap().try_send([1, 2]).unwrap();
    let mut brx = raw.bytes_receiver().unwrap();
    let got = brx.try_recv().expect("the item").to_vec();
    assert_eq!(got.len(), 8);
    assert_eq!(got[..4], 1u32.to_ne_bytes());
    assert_eq!(rx.try_recv(), None);
}
