//! Loom model of the readiness handshake (docs/design.md §14) on the production
//! [`Registration`], [`Registry`] and waker loop [`run`], with the kernel modelled: the eventfd
//! as a counter under a lock, the futexes as one condition variable (a wait checks its words
//! under the lock, so a wake after the words changed is never missed), and no timeouts, so a lost
//! edge is a deadlock, which loom reports.
//!
//! Three threads: the other side publishes an item (a store, then the §7 wake); the waker runs
//! the production loop; the handle attempts, arms when it finds nothing, and blocks on the
//! signal until it has the item.

use std::sync::Arc;

use ::loom::sync::{Condvar, Mutex};
use ::loom::thread;

use super::{run, Host, Registration, Registry, Signal, Target};
use crate::loom_harness::model;
use crate::sync::{AtomicU32, AtomicU64, Ordering};
use crate::wait::{self, Futex, WakeWords};

/// The eventfd: a counter; `wait` blocks while it is zero.
struct ModelSignal {
    count: Mutex<u64>,
    cv: Condvar,
}

impl ModelSignal {
    fn new() -> Self {
        ModelSignal {
            count: Mutex::new(0),
            cv: Condvar::new(),
        }
    }

    /// The event loop's wait for readability.
    fn wait(&self) {
        let mut c = self.count.lock().unwrap();
        while *c == 0 {
            c = self.cv.wait(c).unwrap();
        }
    }
}

impl Signal for ModelSignal {
    fn raise(&self) {
        *self.count.lock().unwrap() += 1;
        self.cv.notify_all();
    }

    fn clear(&self) {
        *self.count.lock().unwrap() = 0;
    }
}

/// Every futex word of the model (the segment's wake counter and the private kick) behind one
/// condition variable. `wait_either` sleeps only while both words hold what the caller saw.
struct ModelFutexes {
    lock: Mutex<()>,
    cv: Condvar,
}

impl ModelFutexes {
    fn wait_either(&self, a: &AtomicU32, a_seen: u32, b: &AtomicU32, b_seen: u32) {
        let g = self.lock.lock().unwrap();
        if a.load(Ordering::Relaxed) == a_seen && b.load(Ordering::Relaxed) == b_seen {
            drop(self.cv.wait(g).unwrap());
        }
    }
}

impl Futex for ModelFutexes {
    fn wait(&self, word: &AtomicU32, expected: u32, _: Option<std::time::Duration>) {
        self.wait_either(word, expected, word, expected);
    }

    fn wake_all(&self, _: &AtomicU32) {
        let _g = self.lock.lock().unwrap();
        self.cv.notify_all();
    }

    fn heavy_barrier(&self) -> bool {
        crate::sync::fence(Ordering::SeqCst);
        true
    }
}

/// The segment's wake counter or the kick word, as `wait::sleep` sees it.
struct Either<'a> {
    f: &'a ModelFutexes,
    kick: &'a AtomicU32,
    kick_seen: u32,
}

impl Futex for Either<'_> {
    fn wait(&self, word: &AtomicU32, expected: u32, _: Option<std::time::Duration>) {
        self.f
            .wait_either(word, expected, self.kick, self.kick_seen);
    }

    fn wake_all(&self, word: &AtomicU32) {
        self.f.wake_all(word);
    }

    fn heavy_barrier(&self) -> bool {
        self.f.heavy_barrier()
    }
}

/// No clock (the periodic look never runs: it covers stalls and closures, which this model does
/// not have), and the futexes above.
struct ModelHost(Arc<ModelFutexes>);

impl Host for ModelHost {
    fn periodic(&mut self) -> bool {
        false
    }

    fn wait_kick(&self, kick: &AtomicU32, seen: u32) {
        self.0.wait(kick, seen, None);
    }

    fn sleep(
        &self,
        words: WakeWords<'_>,
        kick: &AtomicU32,
        seen: u32,
        ready: impl FnOnce() -> bool,
    ) {
        let either = Either {
            f: &self.0,
            kick,
            kick_seen: seen,
        };
        wait::sleep(words, &either, None, ready);
    }
}

/// Items published so far; the handle expecting item `e` is ready when more than `e` are.
struct Published<'a>(&'a AtomicU64);

impl Target for Published<'_> {
    fn ready(&self, e: u64) -> bool {
        // ORDERING: Acquire pairs with the publisher's Release store.
        self.0.load(Ordering::Acquire) > e
    }

    fn stalled(&self, _: u64) -> bool {
        false
    }

    /// A producer always attached.
    fn closed(&self) -> bool {
        false
    }
}

/// The other side publishes `items` items, each followed by the §7 wake; the handle receives
/// them all through arm-and-wait. A lost edge leaves the handle waiting on a signal nobody
/// raises while the waker sleeps: a deadlock.
fn handshake(items: u64) {
    let published = Arc::new(AtomicU64::new(0));
    let flag = Arc::new(AtomicU64::new(0));
    let counter = Arc::new(AtomicU32::new(0));
    let futexes = Arc::new(ModelFutexes {
        lock: Mutex::new(()),
        cv: Condvar::new(),
    });
    let registry = Arc::new(Registry::<ModelSignal>::new());
    let reg = Arc::new(Registration::new(ModelSignal::new()));
    registry.add(&reg);

    let waker = {
        let (published, flag, counter) = (published.clone(), flag.clone(), counter.clone());
        let (registry, futexes) = (registry.clone(), futexes.clone());
        thread::spawn(move || {
            let words = WakeWords {
                flag: &flag,
                counter: &counter,
            };
            run(
                &*registry,
                &Published(&published),
                words,
                &mut ModelHost(futexes),
            );
        })
    };
    let publisher = {
        let (published, flag, counter) = (published.clone(), flag.clone(), counter.clone());
        let futexes = futexes.clone();
        thread::spawn(move || {
            let words = WakeWords {
                flag: &flag,
                counter: &counter,
            };
            for i in 1..=items {
                // ORDERING: Release pairs with the Acquire loads of the target and the handle.
                published.store(i, Ordering::Release);
                wait::wake_after_publish(words, &*futexes, false);
            }
        })
    };

    let mut got = 0;
    while got < items {
        // The handle's attempt: take what is there.
        // ORDERING: Acquire pairs with the publisher's Release store.
        let now = published.load(Ordering::Acquire);
        if now > got {
            got = now;
            continue;
        }
        if reg.arm(got) {
            registry.kick(&*futexes);
        }
        reg.sig.wait();
    }
    registry.stop(&*futexes);
    waker.join().unwrap();
    publisher.join().unwrap();
}

#[test]
fn readiness_arming_never_loses_an_edge() {
    model("readiness_arming_never_loses_an_edge (1 item)", 3, || {
        handshake(1)
    });
}

/// Two items: the handle re-arms after the first signal and the waker sleeps a second time, so
/// the model also covers a publisher clearing the flag of an earlier sleep (docs/design.md §7,
/// "Two sleeps").
#[test]
fn readiness_rearming_never_loses_an_edge() {
    model(
        "readiness_rearming_never_loses_an_edge (2 items)",
        2,
        || handshake(2),
    );
}
