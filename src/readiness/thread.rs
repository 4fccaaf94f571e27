//! The operating system's side of readiness (docs/design.md §14): the eventfd, the waker
//! threads of this process, and a handle's registration with one of them ([`Armed`]).
//!
//! One **waker thread** per segment handle and [`Watch`] in this process sleeps on the segment's
//! futex through the same handshake as a blocking receive ([`crate::wait::sleep`]: raise the
//! waiter flag, heavy barrier, re-check, futex wait), and writes to the eventfd of every
//! registered handle whose receive (or send) would now find something. A handle **arms** its
//! registration when a receive finds nothing: it clears its eventfd, stores the position it
//! expects, marks itself armed and kicks the thread (a private futex word the thread also waits
//! on). The thread raises the waiter flag only while some registration is armed, so the other
//! side of a segment nobody waits on pays nothing. Every 5 ms, while any registration is armed,
//! it also looks for what no publish announces: a stalled position (its claimant may have died)
//! and a closed segment.
//!
//! What "would find something" means is the one thing that differs between kinds: the
//! [`Watch`] and [`Target`] traits, implemented in each kind's `readiness.rs`; registration,
//! arming and the thread are shared, and know no kind.

use std::any::TypeId;
use std::os::fd::{AsFd, BorrowedFd};
use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use nix::sys::eventfd::{EfdFlags, EventFd};

use crate::error::{Error, Result};
use crate::segment::{self, futex_wait, Segment};
use crate::sync::AtomicU32;
use crate::wait::{self, Futex, SysFutex, WakeWords};

use super::waker::{self, Host, Registration, Registry, Signal, Target};

/// How often the waker looks at the cursor and the producers' liveness while a registration is
/// armed: the period of blocking receives (docs/design.md §6, "Cadence").
const CHECK_PERIOD: Duration = Duration::from_millis(5);
/// How often the waker polls a read-only segment, whose waiter flag it may not raise.
const READ_ONLY_POLL: Duration = Duration::from_millis(1);
/// The futex of the private kick words (process-local).
const PRIVATE: SysFutex = SysFutex::PRIVATE;

/// What a waker thread watches on its segment, implemented once per kind (and direction) where
/// the kind lives: which wake pair the thread sleeps on, and the [`Target`] it asks about each
/// armed registration (docs/design.md §14). One thread serves each segment handle and watch.
pub(crate) trait Watch: Copy + Send + 'static {
    /// The view of the segment the thread keeps for its life.
    type Target<'a>: Target;
    /// Makes the view (once, when the thread starts).
    fn target(self, seg: &Segment) -> Self::Target<'_>;
    /// The waiter flag and wake counter the other side bumps when it makes a target ready.
    fn words(seg: &Segment) -> WakeWords<'_>;
}

/// The eventfd: readable while its counter is not zero; non-blocking, close-on-exec.
impl Signal for EventFd {
    fn raise(&self) {
        // Fails only if the counter would overflow 2^64 - 2, which one write per arming cannot
        // reach.
        let _ = self.write(1);
    }

    fn clear(&self) {
        // EAGAIN (nothing to clear) is the usual result.
        let _ = self.read();
    }
}

/// What the waker thread and the handles of one segment handle and watch share.
struct Shared {
    seg: Arc<Segment>,
    /// The watch's type: one thread per segment handle and watch.
    watch: TypeId,
    reg: Registry<EventFd>,
}

/// The waker thread of one segment handle and watch; stopped and joined when the last
/// registration goes.
pub(crate) struct Waker {
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
    /// `segment::fork_generation()` when the thread started: a forked child has no such thread.
    generation: u64,
}

impl Drop for Waker {
    fn drop(&mut self) {
        self.shared.reg.stop(&PRIVATE);
        if let Some(t) = self.thread.take() {
            if segment::fork_generation() == self.generation {
                let _ = t.join();
            } else {
                // A forked child: the thread lives only in the parent, and joining it would fail
                // (the standard library panics). Its handle is let go.
                std::mem::forget(t);
            }
        }
    }
}

/// The waker threads of this process, one per segment handle and watch with registrations.
static WAKERS: Mutex<Vec<Weak<Waker>>> = Mutex::new(Vec::new());

/// The waker of `seg` for `watch`, started if it has none.
fn waker_for<W: Watch>(seg: &Arc<Segment>, watch: W) -> Result<Arc<Waker>> {
    let key = TypeId::of::<W>();
    let mut all = WAKERS.lock().unwrap_or_else(PoisonError::into_inner);
    all.retain(|w| w.strong_count() > 0);
    // A waker inherited across fork has no thread in this process: a child starts its own.
    segment::install_fork_hook();
    let generation = segment::fork_generation();
    if let Some(w) = all.iter().filter_map(Weak::upgrade).find(|w| {
        Arc::ptr_eq(&w.shared.seg, seg) && w.shared.watch == key && w.generation == generation
    }) {
        return Ok(w);
    }
    let shared = Arc::new(Shared {
        seg: Arc::clone(seg),
        watch: key,
        reg: Registry::new(),
    });
    let for_thread = Arc::clone(&shared);
    let thread = std::thread::Builder::new()
        .name("shmbus-waker".into())
        .spawn(move || run(&for_thread, watch))
        .map_err(|source| Error::Io {
            name: seg.name().to_owned(),
            op: "start the readiness thread",
            source,
        })?;
    let w = Arc::new(Waker {
        shared,
        thread: Some(thread),
        generation,
    });
    all.push(Arc::downgrade(&w));
    Ok(w)
}

/// A handle's side of its registration (kept in the subscriber, receiver or sender, as an
/// `Option` made on first use: see [`crate::readiness::Registered`]).
///
/// `pub` only because [`crate::readiness::Registered`] names it; outside the crate it cannot be
/// named.
pub struct Armed {
    /// The tokio registration of the eventfd; dropped (deregistered) before the eventfd closes.
    #[cfg(feature = "tokio")]
    pub(crate) async_fd: Option<tokio::io::unix::AsyncFd<std::os::fd::RawFd>>,
    reg: Arc<Registration<EventFd>>,
    waker: Arc<Waker>,
}

impl Drop for Armed {
    fn drop(&mut self) {
        if segment::fork_generation() != self.waker.generation {
            // A forked child: the registry is its parent's waker's, whose lock the parent may
            // have held at the fork; the child leaves it alone.
            return;
        }
        let shared = &self.waker.shared;
        shared.reg.remove(&self.reg);
        shared.reg.kick(&PRIVATE);
    }
}

impl Armed {
    /// Registers a handle with the waker of `seg` for `watch` (starting it if needed).
    pub(crate) fn watching<W: Watch>(seg: &Arc<Segment>, watch: W) -> Result<Armed> {
        let efd = EventFd::from_flags(EfdFlags::EFD_NONBLOCK | EfdFlags::EFD_CLOEXEC)
            .map_err(|e| Error::io(seg.name(), "eventfd", e))?;
        let reg = Arc::new(Registration::new(efd));
        let waker = waker_for(seg, watch)?;
        waker.shared.reg.add(&reg);
        Ok(Armed {
            #[cfg(feature = "tokio")]
            async_fd: None,
            reg,
            waker,
        })
    }

    pub(crate) fn fd(&self) -> BorrowedFd<'_> {
        self.reg.sig.as_fd()
    }

    /// The name of the watched segment.
    #[cfg_attr(not(feature = "tokio"), allow(dead_code))]
    pub(crate) fn name(&self) -> &str {
        self.waker.shared.seg.name()
    }

    /// Whether the waker signalled for something the slot does not show; clears it.
    pub(crate) fn take_check(&self) -> bool {
        self.reg.take_check()
    }

    /// After a receive (or send) found nothing at `next`: have the waker signal once there is
    /// something (docs/design.md §14; see [`Registration::arm`]).
    pub(crate) fn arm(&self, next: u64) {
        if self.reg.arm(next) {
            self.waker.shared.reg.kick(&PRIVATE);
        }
    }

    /// A receive reported `Closed` at `next`: the waker signals a closed segment once per
    /// position, and the registration stays armed at `next`, so that a loop that stops draining
    /// at `Closed` is woken when a producer attaches again and publishes.
    pub(crate) fn closed(&self, next: u64) {
        self.reg.closed(next);
        self.arm(next);
    }
}

/// The waker thread: makes its watch's target, then runs the loop.
fn run<W: Watch>(shared: &Shared, watch: W) {
    let seg = &*shared.seg;
    let now = Instant::now();
    let mut host = SysHost {
        seg,
        futex: SysFutex::of(seg),
        last_check: now,
        now,
    };
    waker::run(&shared.reg, &watch.target(seg), W::words(seg), &mut host);
}

/// The kernel's side of the waker's loop, for one segment.
struct SysHost<'a> {
    seg: &'a Segment,
    futex: SysFutex,
    /// When the periodic look last ran.
    last_check: Instant,
    /// The time of the current pass.
    now: Instant,
}

impl Host for SysHost<'_> {
    fn periodic(&mut self) -> bool {
        self.now = Instant::now();
        if self.now.duration_since(self.last_check) >= CHECK_PERIOD {
            self.last_check = self.now;
            return true;
        }
        false
    }

    fn wait_kick(&self, kick: &AtomicU32, seen: u32) {
        futex_wait(kick, seen, None, false);
    }

    fn sleep(
        &self,
        words: WakeWords<'_>,
        kick: &AtomicU32,
        seen: u32,
        ready: impl FnOnce() -> bool,
    ) {
        let slice = CHECK_PERIOD.saturating_sub(self.now.duration_since(self.last_check));
        if self.seg.is_writable() {
            let either = SegOrKick {
                sys: &self.futex,
                kick,
                kick_seen: seen,
            };
            wait::sleep(words, &either, Some(slice), ready);
        } else if !ready() {
            // A read-only handle may not raise the waiter flag: poll (docs/design.md §14).
            futex_wait(kick, seen, Some(slice.min(READ_ONLY_POLL)), false);
        }
    }
}

/// The segment's futex, whose sleep also ends on a kick.
struct SegOrKick<'a> {
    sys: &'a SysFutex,
    kick: &'a AtomicU32,
    kick_seen: u32,
}

impl Futex for SegOrKick<'_> {
    fn wait(&self, word: &AtomicU32, expected: u32, timeout: Option<Duration>) {
        wait::futex_wait_either(
            word,
            expected,
            self.sys.shared,
            self.kick,
            self.kick_seen,
            timeout,
        );
    }

    fn wake_all(&self, word: &AtomicU32) {
        self.sys.wake_all(word);
    }

    fn heavy_barrier(&self) -> bool {
        self.sys.heavy_barrier()
    }
}
