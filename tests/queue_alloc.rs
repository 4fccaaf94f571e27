//! Sending and receiving on a work queue never touch the heap, as the docs of `try_send` and
//! `try_recv` promise: a counting global allocator proves it, on raw and typed queues, through
//! the full and empty answers as well as the items that go through.

use shmbus_testkit as support;

use shmbus::SendError;
use support::alloc::{allocations_during, Counting};
use support::make;
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

/// Offers items `0, 1, ...` in blocks: `PER_BLOCK` sends (`send(k)` says whether item `k` went
/// in or the queue was full), then `PER_BLOCK` receives (`recv(k)` checks item `k` if one came
/// and says whether it did). One block warms up; then `BLOCKS` blocks must not allocate.
fn blocks_do_not_allocate(mut send: impl FnMut(u64) -> bool, mut recv: impl FnMut(u64) -> bool) {
    let mut t = Tally::default();
    let mut blocks = |n: u64, t: &mut Tally| {
        for _ in 0..n {
            for _ in 0..PER_BLOCK {
                if send(t.sent) {
                    t.sent += 1;
                } else {
                    t.full += 1;
                }
            }
            for _ in 0..PER_BLOCK {
                if recv(t.received) {
                    t.received += 1;
                } else {
                    t.empty += 1;
                }
            }
        }
    };
    // Warm-up: whatever a handle sets up on first use is not on the paths the docs speak of.
    blocks(1, &mut t);
    let warm = std::mem::take(&mut t);
    let ((), allocations) = allocations_during(|| blocks(BLOCKS, &mut t));
    assert_eq!(allocations, 0, "allocations on try_send / try_recv: {t:?}");
    assert_eq!(warm.sent + t.sent, (1 + BLOCKS) * CAPACITY as u64, "{t:?}");
    assert_eq!(t.received, t.sent, "{t:?}");
    assert_eq!((t.full, t.empty), (BLOCKS * 4, BLOCKS * 4), "{t:?}");
}

/// `Ok` → sent, `Full` → full; any other answer fails the test.
fn sent<T>(k: u64, r: Result<(), SendError<T>>) -> bool {
    match r {
        Ok(()) => true,
        Err(SendError::Full(_)) => false,
        Err(e) => panic!("item {k}: {e}"),
    }
}

#[test]
fn raw_try_send_and_try_recv_do_not_allocate() {
    let name = TestBus::new("q-alloc-raw");
    let q = make::queue(&name, CAPACITY as u64, ITEM);
    let (mut tx, mut rx) = (q.sender().unwrap(), q.receiver().unwrap());
    let (mut out, mut want) = ([0u8; ITEM], [0u8; ITEM]);
    blocks_do_not_allocate(
        |k| sent(k, tx.try_send(item(k, &mut out))),
        |k| match rx.try_recv() {
            Some(got) => {
                assert_eq!(got, item(k, &mut want), "item {k}");
                true
            }
            None => false,
        },
    );
}

#[test]
fn typed_try_send_and_try_recv_do_not_allocate() {
    let name = TestBus::new("q-alloc-typed");
    let q = make::typed_queue::<[u64; 4]>(&name, CAPACITY as u64);
    let (mut tx, mut rx) = (q.sender().unwrap(), q.receiver().unwrap());
    let value = |k: u64| [k, !k, k.rotate_left(17), k ^ 0x5a5a];
    blocks_do_not_allocate(
        |k| sent(k, tx.try_send(value(k))),
        |k| match rx.try_recv() {
            Some(got) => {
                assert_eq!(*got, value(k), "item {k}");
                true
            }
            None => false,
        },
    );
}
