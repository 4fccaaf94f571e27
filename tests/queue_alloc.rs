//! Sending and receiving on a work queue never touch the heap, as the docs of `try_send` and
//! `try_recv` promise: a counting global allocator proves it, on raw and typed queues, through
//! the full and empty answers as well as the items that go through.

use shmbus_testkit as support;

use shmbus::{Queue, SendError};
use support::alloc::{allocations_during, Counting};
use support::TestBus;

#[global_allocator]
static GLOBAL: Counting = Counting;

const CAPACITY: usize = 16;
const ITEM: usize = 64;
/// Items offered per block: more than fit, so that some sends find the queue full and some
/// receives find it empty.
const PER_BLOCK: u64 = CAPACITY as u64 + 4;
const BLOCKS: u64 = 500;

/// What a run of blocks did.
#[derive(Debug, Default, PartialEq)]
struct Tally {
    sent: u64,
    full: u64,
    received: u64,
    empty: u64,
}

/// Item `k`: its counter in the first 8 bytes, then `k` as bytes, 8..=ITEM bytes long.
fn item(k: u64, buf: &mut [u8; ITEM]) -> &[u8] {
    let len = 8 + (k as usize * 7) % (ITEM - 7);
    buf[..8].copy_from_slice(&k.to_le_bytes());
    buf[8..len].fill(k as u8);
    &buf[..len]
}

#[test]
fn raw_try_send_and_try_recv_do_not_allocate() {
    let name = TestBus::new("q-alloc-raw");
    let q = Queue::builder(name.name())
        .capacity(CAPACITY as u64)
        .item_size(ITEM)
        .create()
        .unwrap();
    let mut tx = q.sender().unwrap();
    let mut rx = q.receiver().unwrap();
    let (mut next_send, mut next_recv) = (0u64, 0u64);
    let mut blocks = |n: u64, t: &mut Tally| {
        let mut buf = [0u8; ITEM];
        for _ in 0..n {
            for _ in 0..PER_BLOCK {
                match tx.try_send(item(next_send, &mut buf)) {
                    Ok(()) => {
                        t.sent += 1;
                        next_send += 1;
                    }
                    Err(SendError::Full(_)) => t.full += 1,
                    Err(e) => panic!("item {next_send}: {e:?}"),
                }
            }
            for _ in 0..PER_BLOCK {
                match rx.try_recv() {
                    Some(got) => {
                        let want = item(next_recv, &mut buf);
                        assert_eq!(got, want, "item {next_recv}");
                        t.received += 1;
                        next_recv += 1;
                    }
                    None => t.empty += 1,
                }
            }
        }
    };
    // Warm-up: whatever a handle sets up on first use is not on the paths the docs speak of.
    blocks(1, &mut Tally::default());
    let mut t = Tally::default();
    let ((), allocations) = allocations_during(|| blocks(BLOCKS, &mut t));
    assert_eq!(allocations, 0, "allocations on try_send / try_recv: {t:?}");
    assert_eq!(t.sent, BLOCKS * CAPACITY as u64, "{t:?}");
    assert_eq!(t.received, t.sent, "{t:?}");
    assert_eq!((t.full, t.empty), (BLOCKS * 4, BLOCKS * 4), "{t:?}");
}

#[test]
fn typed_try_send_and_try_recv_do_not_allocate() {
    let name = TestBus::new("q-alloc-typed");
    let q = Queue::builder(name.name())
        .item_type::<[u64; 4]>()
        .capacity(CAPACITY as u64)
        .create()
        .unwrap();
    let mut tx = q.sender().unwrap();
    let mut rx = q.receiver().unwrap();
    let (mut next_send, mut next_recv) = (0u64, 0u64);
    let value = |k: u64| [k, !k, k.rotate_left(17), k ^ 0x5a5a];
    let mut blocks = |n: u64, t: &mut Tally| {
        for _ in 0..n {
            for _ in 0..PER_BLOCK {
                match tx.try_send(value(next_send)) {
                    Ok(()) => {
                        t.sent += 1;
                        next_send += 1;
                    }
                    Err(SendError::Full(_)) => t.full += 1,
                    Err(e) => panic!("item {next_send}: {e:?}"),
                }
            }
            for _ in 0..PER_BLOCK {
                match rx.try_recv() {
                    Some(got) => {
                        assert_eq!(*got, value(next_recv), "item {next_recv}");
                        t.received += 1;
                        next_recv += 1;
                    }
                    None => t.empty += 1,
                }
            }
        }
    };
    blocks(1, &mut Tally::default());
    let mut t = Tally::default();
    let ((), allocations) = allocations_during(|| blocks(BLOCKS, &mut t));
    assert_eq!(allocations, 0, "allocations on try_send / try_recv: {t:?}");
    assert_eq!(t.sent, BLOCKS * CAPACITY as u64, "{t:?}");
    assert_eq!(t.received, t.sent, "{t:?}");
    assert_eq!((t.full, t.empty), (BLOCKS * 4, BLOCKS * 4), "{t:?}");
}
