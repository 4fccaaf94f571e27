//! A counting global allocator, for the tests of paths whose docs promise no heap allocation. A
//! test binary installs it (`#[global_allocator] static GLOBAL: Counting = Counting;`) and
//! measures a closure with [`allocations_during`]. Only the measuring thread's allocations
//! count: the test harness's own threads may allocate at any time.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

/// Forwards to the system allocator, counting the allocations of a measuring thread.
pub struct Counting;

thread_local! {
    /// Whether this thread is measuring.
    static COUNTING: Cell<bool> = const { Cell::new(false) };
    /// This thread's allocations while measuring (per thread, so that tests measuring at the
    /// same time on other threads do not count into each other).
    static ALLOCATIONS: Cell<u64> = const { Cell::new(0) };
}

fn count() {
    if COUNTING.with(|c| c.get()) {
        ALLOCATIONS.with(|n| n.set(n.get() + 1));
    }
}

fn allocations() -> u64 {
    ALLOCATIONS.with(|n| n.get())
}

// SAFETY: forwards every call unchanged to the system allocator; only counts allocations.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        count();
        // SAFETY: the caller upholds `alloc`'s contract, which we pass on as is.
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        count();
        // SAFETY: as for `alloc`.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` came from `System` with this layout (see `alloc`).
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        count();
        // SAFETY: as for `dealloc`; the caller upholds `realloc`'s contract.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

/// Stops counting when dropped, also when the measured closure panics.
struct Measuring;

impl Measuring {
    fn start() -> Self {
        COUNTING.with(|c| c.set(true));
        Measuring
    }
}

impl Drop for Measuring {
    fn drop(&mut self) {
        COUNTING.with(|c| c.set(false));
    }
}

/// Runs `f` and returns its result with the number of allocations and reallocations this thread
/// made meanwhile. Panics if [`Counting`] is not the global allocator (a count of zero would
/// then prove nothing).
pub fn allocations_during<R>(f: impl FnOnce() -> R) -> (R, u64) {
    let control = {
        let _m = Measuring::start();
        let before = allocations();
        drop(std::hint::black_box(Box::new(std::hint::black_box(1u64))));
        allocations() - before
    };
    assert!(
        control > 0,
        "the counting allocator is not installed: add \
         `#[global_allocator] static GLOBAL: Counting = Counting;` to the test"
    );
    let _m = Measuring::start();
    let before = allocations();
    let r = f();
    let n = allocations() - before;
    (r, n)
}
