//! Publishing and receiving never touch the heap: a counting global allocator proves it.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicU64, Ordering};

use shmbus::{BusBuilder, Recv, Start};

struct Counting;

static ALLOCATIONS: AtomicU64 = AtomicU64::new(0);

thread_local! {
    /// Only allocations made by the measuring thread count: the test harness's own threads may
    /// allocate at any time.
    static COUNTING: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

fn count() {
    if COUNTING.with(|c| c.get()) {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
    }
}

// SAFETY: forwards every call unchanged to the system allocator; only counts allocations.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        count();
        // SAFETY: the caller upholds `alloc`'s contract, which we pass on as is.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` came from `System.alloc` with this layout (see `alloc`).
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        count();
        // SAFETY: as for `dealloc`; the caller upholds `realloc`'s contract.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

#[test]
fn publish_and_receive_paths_do_not_allocate() {
    let name = format!("test-alloc-{}", std::process::id());
    let result = std::panic::catch_unwind(|| {
        for multi in [false, true] {
            let b = BusBuilder::new(&name).slots(64).capacity(512);
            let bus = if multi {
                b.multi_producer().create()
            } else {
                b.create()
            }
            .unwrap();
            let mut tx = bus.publisher().unwrap();
            let mut rx = bus.subscribe(Start::Oldest);
            let payload = [7u8; 512];
            COUNTING.with(|c| c.set(true));
            let before = ALLOCATIONS.load(Ordering::Relaxed);
            let (mut received, mut lost) = (0u64, 0u64);
            for i in 0..10_000usize {
                tx.publish_bytes(&payload[..8 + i % 500]).unwrap();
                tx.publish_with(|w| w.push(&payload[..64]).unwrap());
                for _ in 0..3 {
                    match rx.try_recv() {
                        Recv::Message(m) => {
                            assert_eq!(m.bytes()[0], 7);
                            received += 1;
                        }
                        Recv::Lapped { lost: n } => lost += n,
                        Recv::Empty => {}
                        Recv::Closed => unreachable!("try_recv never reports closed"),
                    }
                }
            }
            let after = ALLOCATIONS.load(Ordering::Relaxed);
            COUNTING.with(|c| c.set(false));
            assert_eq!(
                after - before,
                0,
                "multi={multi}: allocations on the hot paths"
            );
            assert!(received > 0);
            assert_eq!(received + lost, 20_000);
            drop((tx, rx, bus));
            shmbus::Bus::remove(&name).unwrap();
        }
    });
    let _ = shmbus::Bus::remove(&name);
    if let Err(e) = result {
        std::panic::resume_unwind(e);
    }
}
