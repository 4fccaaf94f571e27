//! A producer's lane: acquire, publish, close.
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::handle::Lanes;
use super::lane::{OwnLane, Pushed, Writer};
use super::layout::{lane_lock_byte, FREE, L_PID, L_START, L_STATE, STATE_MASK};
use super::mirror::LaneBytes;
use super::LaneMem;
use crate::error::{Error, Result};
use crate::segment::{self, LockFd, LockKind};
use crate::sync::Ordering;
use crate::wait::{self, Attempt, SysFutex, Wait};

/// A lane's bytes, as a producer writes them.
type Ring = <LaneMem as LaneBytes>::Ring<'static>;

/// What a publish did with the record.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[must_use = "a full lane drops the record"]
pub enum LanePush {
    /// Queued for the consumer.
    Queued,
    /// The lane had no room (the consumer has not acknowledged enough): the record was dropped
    /// and counted. `dropped` is this session's count, which the consumer sees too.
    Full {
        /// Records dropped on this lane since it was acquired.
        dropped: u64,
    },
}

/// A producer's lane (docs/design.md §17): records published here go to the consumer in order.
/// [`publish`](Self::publish) never waits, allocates or makes a system call unless the consumer
/// sleeps; a full lane drops the record and says so. [`publish_wait`](Self::publish_wait) and
/// [`publish_timeout`](Self::publish_timeout) wait for room instead, as a bounded channel's
/// `send` does. Dropping the publisher closes the lane: the consumer
/// reads what is queued, sees the lane closed, and the lane returns to the pool. A producer that
/// dies is noticed by the consumer's next sweep, with the same effect.
pub struct LanePublisher {
    lanes: Lanes,
    mem: Arc<LaneMem>,
    writer: Writer,
    /// The lane's words and bytes (`LaneSet::own`), worked out at acquire. Its borrows, of the
    /// segment's words and of the lane's mapping, are erased to `'static`: `lanes` and `mem`
    /// keep both alive and in place for as long as the publisher lives, and `own` is only ever
    /// lent out for a borrow of the publisher (see `acquire`).
    own: OwnLane<'static, Ring>,
    /// The lane's lock (a shared segment) for as long as the lane is ours.
    lock: Option<LockFd>,
    futex: SysFutex,
    strong_fence: bool,
    /// How `publish_wait` and `publish_timeout` wait for room.
    wait: Wait,
    closed: bool,
}

impl std::fmt::Debug for LanePublisher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LanePublisher")
            .field("lanes", &self.lanes.name())
            .field("lane", &self.writer.lane)
            .field("dropped", &self.writer.drops())
            .finish()
    }
}

impl LanePublisher {
    pub(super) fn acquire(lanes: &Lanes) -> Result<Self> {
        let seg = &lanes.seg;
        segment::kind::writable(seg)?;
        let lock = seg.reopen_for_lock()?;
        let io = |op, source| Error::Io {
            name: seg.name().to_owned(),
            op,
            source,
        };
        let corrupt = |detail| Error::LanesCorrupt {
            name: seg.name().to_owned(),
            detail,
        };
        // ORDERING: Acquire pairs with the consumer's Release store of FREE (`LaneSet::settle`):
        // a lane seen free is drained, its read position and cleared bit visible.
        let state_of =
            |lane| crate::sync::load_acquire(&seg.words()[lanes.shape.word(lane, L_STATE)]);
        // Look at the state first (one load), and take the lock of a lane that reads free only.
        let heap = lanes.heap_rings.clone();
        for lane in 0..lanes.shape.lanes {
            if state_of(lane) & STATE_MASK != FREE {
                continue;
            }
            let (state, mem) = match (&lock, &heap) {
                (Some(fd), _) => {
                    let byte = lane_lock_byte(lane);
                    if !segment::try_lock(fd, byte, LockKind::Exclusive)
                        .map_err(|e| io("fcntl(F_OFD_SETLK)", e))?
                    {
                        continue;
                    }
                    // Ours now; free still? (The consumer frees a lane only once it is drained.)
                    let state = state_of(lane);
                    if state & STATE_MASK != FREE {
                        segment::unlock(fd, byte)
                            .map_err(|e| io("fcntl(F_OFD_SETLK, F_UNLCK)", e))?;
                        continue;
                    }
                    let mem = match lanes.map_rings(lane, 1) {
                        Ok(m) => m,
                        Err(e) => {
                            let _ = segment::unlock(fd, byte);
                            return Err(e);
                        }
                    };
                    (state, mem)
                }
                (None, Some(rings)) => {
                    let set = lanes.set(rings);
                    match set.try_claim(lane) {
                        Some(state) => (state, rings.clone()),
                        None => continue,
                    }
                }
                (None, None) => unreachable!("a heap segment has its rings"),
            };
            let set = lanes.set(&mem);
            let pid = std::process::id();
            let words = seg.words();
            words[lanes.shape.word(lane, L_PID)].store(pid as u64, Ordering::Relaxed);
            words[lanes.shape.word(lane, L_START)].store(
                segment::process_start_ticks(pid).unwrap_or(0),
                Ordering::Relaxed,
            );
            let strong_fence = wait::producer_fences(seg);
            let writer = match set.open(lane, state, strong_fence) {
                Ok(w) => w,
                Err(detail) => {
                    if let Some(fd) = &lock {
                        let _ = segment::unlock(fd, lane_lock_byte(lane));
                    } else {
                        // Give an in-process claim back.
                        // ORDERING: Release pairs with the Acquire of the next `try_claim`.
                        set.state_word(lane).store(state, Ordering::Release);
                    }
                    return Err(corrupt(detail));
                }
            };
            // SAFETY: only the lifetime changes. `own` borrows the segment's words (mapped, or
            // boxed, by the `Segment` that `lanes.seg` holds in an `Arc`) and the lane's
            // mapping (held by `mem`, an `Arc`): both move into the publisher, which keeps
            // them, and neither allocation moves or is unmapped while an `Arc` lives. The
            // publisher lends `own` out only for a borrow of itself, and drops nothing it
            // borrows before itself.
            let own = unsafe {
                std::mem::transmute::<
                    OwnLane<'_, <LaneMem as LaneBytes>::Ring<'_>>,
                    OwnLane<'static, Ring>,
                >(set.own(lane))
            };
            return Ok(LanePublisher {
                own,
                lanes: lanes.clone(),
                futex: SysFutex::of(seg),
                strong_fence,
                mem,
                writer,
                lock,
                wait: Wait::default(),
                closed: false,
            });
        }
        Err(Error::LanesFull {
            name: seg.name().to_owned(),
            lanes: lanes.shape.lanes,
        })
    }

    /// The lane this producer holds.
    pub fn lane(&self) -> u32 {
        self.writer.lane
    }

    /// Records this producer dropped because its lane was full.
    pub fn dropped(&self) -> u64 {
        self.writer.drops()
    }

    /// Largest record payload.
    pub fn max_record(&self) -> usize {
        self.lanes.max_record()
    }

    /// Bytes free for records in the lane as this producer last saw the consumer's position (at
    /// least this many are free now). A record takes 8 bytes of header and its payload rounded
    /// up to 8: it fits if that is at most this.
    pub fn free_bytes(&self) -> u64 {
        self.writer.free_bytes(self.lanes.shape.lane_bytes)
    }

    /// Publishes one record: queued, or dropped and counted if the lane is full.
    ///
    /// # Errors
    ///
    /// [`Error::MessageTooLarge`] for a record larger than [`Self::max_record`] (nothing is
    /// written or counted); [`Error::UsedAfterFork`] in a child of the process that acquired
    /// the lane.
    #[inline(always)]
    pub fn publish(&mut self, record: &[u8]) -> Result<LanePush> {
        if record.len() > self.own.max_record() || self.forked() {
            return Err(self.refusal(record.len()));
        }
        match self.writer.publish(&self.own, record) {
            Pushed::Queued { raised } => {
                if raised {
                    self.wake();
                }
                Ok(LanePush::Queued)
            }
            Pushed::Full { drops } => Ok(LanePush::Full { dropped: drops }),
        }
    }

    /// Whether this is a child of the process that acquired the lane.
    #[inline]
    fn forked(&self) -> bool {
        self.lock.as_ref().is_some_and(|l| l.forked())
    }

    /// Why [`Self::publish`] refused a record of `len` bytes: out of line, so that the publish
    /// itself stays small enough to inline into its caller.
    #[cold]
    #[inline(never)]
    fn refusal(&self, len: usize) -> Error {
        if len > self.lanes.shape.max_record() {
            Error::MessageTooLarge {
                len,
                capacity: self.lanes.shape.max_record(),
            }
        } else {
            Error::UsedAfterFork {
                name: self.lanes.name().to_owned(),
            }
        }
    }

    /// Sets how [`Self::publish_wait`] and [`Self::publish_timeout`] wait while the lane is full
    /// (default [`Wait::Sleep`]: the producer sleeps on a futex of its lane after 20 µs, and the
    /// consumer's acknowledgements wake it; the consumer pays one load of a flag on its own
    /// cache line per acknowledgement while nobody sleeps).
    pub fn wait_strategy(mut self, wait: Wait) -> Self {
        self.wait = wait;
        self
    }

    /// Publishes one record, waiting while the lane has no room for it: the consumer's
    /// acknowledgements make room. Nothing is dropped. With no consumer attached it waits until
    /// one attaches and reads; use [`Self::publish_timeout`] to bound the wait.
    ///
    /// # Errors
    ///
    /// Those of [`Self::publish`]; [`Error::LanesCorrupt`] if, while it waits, the lane's read
    /// position is found to be one the consumer could not have stored (looked at every 5 ms).
    #[inline]
    pub fn publish_wait(&mut self, record: &[u8]) -> Result<()> {
        match self.publish_until(record, None)? {
            LanePush::Queued => Ok(()),
            LanePush::Full { .. } => {
                unreachable!("no deadline: the wait ends with the record queued")
            }
        }
    }

    /// Publishes one record, waiting up to `timeout` while the lane has no room for it; if it
    /// still has none then, the record is dropped and counted, as [`Self::publish`] does.
    ///
    /// # Errors
    ///
    /// Those of [`Self::publish_wait`].
    #[inline]
    pub fn publish_timeout(&mut self, record: &[u8], timeout: Duration) -> Result<LanePush> {
        // A timeout too long to represent waits without limit.
        let deadline = Instant::now().checked_add(timeout);
        self.publish_until(record, deadline)
    }

    #[inline(always)]
    fn publish_until(&mut self, record: &[u8], deadline: Option<Instant>) -> Result<LanePush> {
        if record.len() > self.own.max_record() || self.forked() {
            return Err(self.refusal(record.len()));
        }
        // The common case, room now, as `publish` does it: no wait machinery inlined here.
        if let Some(pushed) = self.writer.try_publish(&self.own, record) {
            if let Pushed::Queued { raised: true } = pushed {
                self.wake();
            }
            return Ok(LanePush::Queued);
        }
        self.publish_waiting(record, deadline)
    }

    /// Waits up to `timeout` (`None`: as long as it takes) until a record of `len` bytes fits in
    /// the lane, without publishing or counting anything: `true` if it fits now (and will until
    /// this producer publishes, as only the consumer moves the read position), `false` if the
    /// time passed. For callers that wait in slices of their own, such as a binding that
    /// returns to its interpreter between them; [`Self::publish_timeout`] is the one-call form.
    ///
    /// # Errors
    ///
    /// [`Error::MessageTooLarge`] if `len` is larger than [`Self::max_record`];
    /// [`Error::UsedAfterFork`] in a child of the process that acquired the lane;
    /// [`Error::LanesCorrupt`] as for [`Self::publish_wait`].
    pub fn wait_for_room(&mut self, len: usize, timeout: Option<Duration>) -> Result<bool> {
        if len > self.lanes.shape.max_record() || self.forked() {
            return Err(self.refusal(len));
        }
        // A timeout too long to represent waits without limit.
        let deadline = timeout.and_then(|t| Instant::now().checked_add(t));
        let wait = self.wait;
        wait::block(&mut Room { p: self, len }, wait, deadline)
            .map_or(Ok(false), |r| r.map(|()| true))
    }

    /// [`Self::publish_until`] once the lane was found full: the one blocking loop.
    #[cold]
    #[inline(never)]
    fn publish_waiting(&mut self, record: &[u8], deadline: Option<Instant>) -> Result<LanePush> {
        let wait = self.wait;
        let raised = wait::block(&mut Making { p: self, record }, wait, deadline);
        match raised {
            Some(Err(e)) => Err(e),
            Some(Ok(raised)) => {
                if raised {
                    self.wake();
                }
                Ok(LanePush::Queued)
            }
            None => match self.writer.drop_one(&self.own) {
                Pushed::Full { drops } => Ok(LanePush::Full { dropped: drops }),
                Pushed::Queued { .. } => unreachable!("a drop is not queued"),
            },
        }
    }

    /// Sleeps on the lane's room words until an acknowledgement wakes it or `timeout` passes,
    /// unless a record of `len` bytes fits once the flag is raised: that re-check loads the
    /// read position afresh, so an acknowledgement stored before the consumer's look at the flag
    /// is seen here, or the consumer sees the flag and wakes us (docs/design.md §7).
    fn sleep_for_room(&mut self, len: usize, timeout: Option<Duration>) {
        let own = &self.own;
        let writer = &mut self.writer;
        wait::sleep(own.room_words(), &self.futex, timeout, || {
            writer.fits(own, len)
        });
    }

    /// A waiting publish's periodic look at its lane: a read position the consumer could not
    /// have stored would keep the lane full for ever, so it ends the wait as corrupt.
    fn forged_read(&self) -> Option<Error> {
        let read = self.writer.forged_read(&self.own)?;
        Some(Error::LanesCorrupt {
            name: self.lanes.name().to_owned(),
            detail: format!(
                "lane {}: read position {read} is not between the producer's last look and its write position",
                self.writer.lane
            ),
        })
    }

    /// Publishes one value as a record of its bytes.
    ///
    /// # Errors
    ///
    /// Those of [`Self::publish`].
    pub fn publish_pod<T: bytemuck::Pod>(&mut self, value: &T) -> Result<LanePush> {
        self.publish(bytemuck::bytes_of(value))
    }

    /// The consumer may sleep: wake it (one load of its flag when it does not).
    #[inline]
    fn wake(&self) {
        wait::wake_after_publish(self.lanes.seg.wake_words(), &self.futex, self.strong_fence);
    }

    /// Says "no more from me": the consumer reads what is queued, then sees the lane closed,
    /// and the lane returns to the pool. Dropping the publisher does the same.
    pub fn close(mut self) {
        self.shut();
    }

    fn shut(&mut self) {
        if std::mem::replace(&mut self.closed, true) {
            return;
        }
        if self.lock.as_ref().is_some_and(|l| l.forked()) {
            // The parent's lane: leave it to the parent.
            return;
        }
        let set = self.lanes.set(&self.mem);
        set.close(&self.writer);
        // Always wake: a close is rare, and the consumer must see it even if its bit was set.
        self.wake();
        // The lock goes after the close is stored: the sweep never takes a live, closing
        // producer for a dead one.
        self.lock = None;
    }
}

/// A publish that waits for room, as an [`Attempt`] of the one blocking loop: try to write the
/// record; sleep on the lane's room words until an acknowledgement wakes it.
struct Making<'p, 'r> {
    p: &'p mut LanePublisher,
    record: &'r [u8],
}

impl Attempt for Making<'_, '_> {
    /// Whether the publish raised the lane's ready bit, or why the wait cannot end.
    type Out = Result<bool>;

    #[inline]
    fn attempt(&mut self) -> Option<Result<bool>> {
        match self.p.writer.try_publish(&self.p.own, self.record)? {
            Pushed::Queued { raised } => Some(Ok(raised)),
            Pushed::Full { .. } => unreachable!("`try_publish` drops nothing"),
        }
    }

    fn check(&mut self) -> Option<Result<bool>> {
        self.p.forged_read().map(Err)
    }

    fn sleep(&mut self, timeout: Option<Duration>) {
        self.p.sleep_for_room(self.record.len(), timeout);
    }
}

/// [`LanePublisher::wait_for_room`] as an [`Attempt`]: room for `len` bytes, or sleep as
/// [`Making`] does.
struct Room<'p> {
    p: &'p mut LanePublisher,
    len: usize,
}

impl Attempt for Room<'_> {
    type Out = Result<()>;

    fn attempt(&mut self) -> Option<Result<()>> {
        self.p.writer.fits(&self.p.own, self.len).then_some(Ok(()))
    }

    fn check(&mut self) -> Option<Result<()>> {
        self.p.forged_read().map(Err)
    }

    fn sleep(&mut self, timeout: Option<Duration>) {
        self.p.sleep_for_room(self.len, timeout);
    }
}

impl Drop for LanePublisher {
    fn drop(&mut self) {
        self.shut();
    }
}
