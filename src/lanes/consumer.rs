//! The consumer of a lanes segment: in-place receive, acknowledgement, batches, waiting.
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::handle::Lanes;
use super::lane::{Acker, Flagged, LaneSet, Peeked, Settled};
use super::layout::{OPEN, STATE_MASK};
use super::LaneMem;
use crate::error::{Error, Result};
use crate::segment::producers::{Attachment, Gate, Offer};
use crate::segment::Segment;
use crate::wait::{self, Attempt, SysFutex, Wait};

/// How often a consumer, busy or idle, looks for producers that died holding a lane (one lock
/// query per open lane; docs/design.md §17, "The pool: acquire, close, death").
pub(crate) const SWEEP_PERIOD: Duration = Duration::from_millis(10);

/// A busy consumer looks at the clock for its sweep once in this many receives.
const SWEEP_CHECK_EVERY: u64 = 256;

/// Lanes found empty whose ready bits a consumer leaves set until it clears them together (one
/// heavy barrier for all): also cleared before every sleep and every arming of readiness.
const STALE_LIMIT: usize = 16;

/// Records a consumer visits in one lane before it moves to the next in a batch, if another lane
/// is ready: lanes are served round-robin, so that no busy lane starves another. While no other
/// lane is ready the turn goes on (and its records are acknowledged at its end, or each quarter
/// lane), so that a single busy lane is not acknowledged every few records: each acknowledgement
/// is a store to a line its producer polls while the lane is full.
const BATCH_PER_LANE: usize = 32;

/// Counters of a lane consumer.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LaneConsumerStats {
    /// Records received.
    pub records: u64,
    /// Payload bytes received.
    pub bytes: u64,
    /// Lanes seen closed (by their producer, or because it died).
    pub closed: u64,
}

/// What [`LaneConsumer::find`] found at the cursor.
#[derive(Clone, Copy, Debug)]
enum Found {
    Record(Peeked),
    Closed(LaneClosed),
}

/// A lane whose producer closed it (or died), reported once, after its last record: the lane
/// is back in the pool.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LaneClosed {
    /// The lane.
    pub lane: u32,
    /// Records its producer dropped because the lane was full, in the session that ended.
    pub dropped: u64,
    /// The producer died rather than closing the lane.
    pub producer_died: bool,
}

/// What [`LaneConsumer::try_recv`] found.
#[derive(Debug)]
pub enum LaneEvent<'a> {
    /// A record, read in place.
    Record(LaneRecord<'a>),
    /// A lane closed and drained.
    Closed(LaneClosed),
}

/// One record, borrowed in place from its lane: the producer writes none of its bytes until it
/// is acknowledged, which dropping it does (docs/design.md §17, "Publishing and reading in
/// place").
pub struct LaneRecord<'a> {
    acker: Acker<'a>,
    /// The consumer's note that a producer waits for room (`Acker::ack_flagging`).
    flagged: &'a Flagged,
    futex: &'a SysFutex,
    lane: u32,
    end: u64,
    bytes: &'a [u8],
}

impl<'a> LaneRecord<'a> {
    /// The lane it came from.
    pub fn lane(&self) -> u32 {
        self.lane
    }

    /// Its bytes.
    pub fn bytes(&self) -> &[u8] {
        self.bytes
    }

    /// Its bytes as one `T`, if it is exactly that size (records are 8-aligned in the lane, so
    /// any `T` aligned to at most 8 can be viewed in place).
    pub fn as_pod<T: bytemuck::Pod>(&self) -> Option<&T> {
        bytemuck::try_from_bytes(self.bytes).ok()
    }

    /// Acknowledges it: its bytes go back to the producer, and a producer waiting for room in
    /// this lane (`LanePublisher::publish_wait`) is woken now. Dropping the record acknowledges
    /// it too, but leaves that wake-up to the consumer's next call (any receive, or dropping
    /// the consumer), which keeps the drop as cheap as a store; a consumer that makes no call
    /// for a while after a drop leaves such a producer to find the room at its own next look,
    /// within 5 ms.
    pub fn ack(self) {
        let this = std::mem::ManuallyDrop::new(self);
        this.acker.ack_flagging(this.end, 1, this.flagged);
        this.acker.wake_flagged(this.flagged, this.futex);
    }
}

impl std::ops::Deref for LaneRecord<'_> {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        self.bytes
    }
}

impl std::fmt::Debug for LaneRecord<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LaneRecord")
            .field("lane", &self.lane)
            .field("len", &self.bytes.len())
            .finish()
    }
}

impl Drop for LaneRecord<'_> {
    #[inline]
    fn drop(&mut self) {
        // The view ends here: the bytes may be the producer's again.
        self.acker.ack_flagging(self.end, 1, self.flagged);
    }
}

/// One item of a batch: a record (borrowed for the callback) or a closed lane.
#[derive(Debug)]
pub enum LaneItem<'a> {
    /// A record of lane `lane`.
    Record {
        /// The lane.
        lane: u32,
        /// The record's bytes, in place.
        bytes: &'a [u8],
    },
    /// A lane closed and drained.
    Closed(LaneClosed),
}

/// The consumer of a lanes segment (one at a time): receives the records of every lane in
/// place, lane by lane in round-robin order, each lane's in the order they were published.
/// Detaches on drop; a new consumer goes on from the acknowledged positions.
pub struct LaneConsumer {
    pub(super) lanes: Lanes,
    mem: Arc<LaneMem>,
    att: Attachment,
    /// The lane the next receive looks at first.
    cursor: u32,
    /// The coarse clock's time of the next sweep for dead producers.
    next_sweep: u64,
    /// Receives so far (for the busy consumer's sweep).
    polls: u64,
    /// Lanes found empty with their ready bits still set (at most `STALE_LIMIT`), and the same
    /// as a bitmap, so that each is listed once.
    stale: Vec<u32>,
    stale_bits: Vec<u64>,
    /// What `find` found at the cursor, which `take` (or a batch) delivers: a record, without
    /// loading its header again, or a close `find` already settled (the lane is free again, so
    /// the close exists nowhere else).
    found: Option<Found>,
    futex: SysFutex,
    /// A real fence before the look at a lane's room waiter flag (`wait::producer_fences`).
    strong: bool,
    /// Non-zero: the last record handed out (of lane `taken`) was acknowledged with its
    /// producer waiting for room; the consumer's next call wakes it (`wake_flagged`).
    flagged: Flagged,
    taken: u32,
    stats: LaneConsumerStats,
    #[cfg(not(loom))]
    pub(super) ready: Option<crate::readiness::Armed>,
}

impl std::fmt::Debug for LaneConsumer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LaneConsumer")
            .field("lanes", &self.lanes.name())
            .field("stats", &self.stats)
            .finish()
    }
}

impl LaneConsumer {
    pub(super) fn attach(lanes: &Lanes) -> Result<Self> {
        let seg = &lanes.seg;
        crate::segment::kind::writable(seg)?;
        let busy = |seg: &Segment| Error::ConsumerExists {
            name: seg.name().to_owned(),
            pid: seg.producer_alive(0).then(|| seg.producer_pid(0)),
        };
        // One consumer: the exclusive gate, and entry 0, which every earlier consumer (all dead
        // now) released with its life.
        let (att, ()) =
            Attachment::attach(seg, Gate::Exclusive, 1, busy, busy, |_, _| Offer::Take(()))?;
        let mem = lanes.map_rings(0, lanes.shape.lanes)?;
        let mut c = LaneConsumer {
            lanes: lanes.clone(),
            mem,
            att,
            cursor: 0,
            next_sweep: 0,
            polls: 0,
            stale: Vec::with_capacity(STALE_LIMIT),
            stale_bits: vec![0; (lanes.shape.lanes as usize).div_ceil(64)],
            found: None,
            futex: SysFutex::of(seg),
            strong: wait::producer_fences(seg),
            flagged: Flagged::new(0),
            taken: 0,
            stats: LaneConsumerStats::default(),
            #[cfg(not(loom))]
            ready: None,
        };
        // A predecessor that died between clearing a lane's bit and its next look at the lane
        // (or before freeing a closed one) left it behind a clear bit: raise them all.
        c.set().raise_all_busy();
        c.sweep();
        Ok(c)
    }

    fn set(&self) -> LaneSet<'_, LaneMem> {
        self.lanes.set(&self.mem)
    }

    fn corrupt(&self, detail: String) -> Error {
        Error::LanesCorrupt {
            name: self.lanes.name().to_owned(),
            detail,
        }
    }

    #[inline]
    fn check_fork(&self) -> Result<()> {
        if self.att.forked() {
            return Err(self.forked_error());
        }
        Ok(())
    }

    #[cold]
    fn forked_error(&self) -> Error {
        Error::UsedAfterFork {
            name: self.lanes.name().to_owned(),
        }
    }

    /// Counters.
    pub fn stats(&self) -> LaneConsumerStats {
        self.stats
    }

    /// The segment handle.
    pub fn lanes(&self) -> &Lanes {
        &self.lanes
    }

    /// Looks for producers that died holding a lane and closes their lanes on their behalf
    /// (their queued records are still delivered, then [`LaneEvent::Closed`] with
    /// `producer_died`). Receives do this by themselves about every 10 ms, busy or idle; an
    /// event loop that waits on [`LaneReadiness`](super::LaneReadiness) learns of a death at its
    /// next receive. Returns the number of lanes found dead.
    pub fn sweep(&mut self) -> usize {
        if self.lanes.seg.lock_fd().is_none() {
            // In-process producers never die without closing their lane.
            return 0;
        }
        self.next_sweep = crate::segment::coarse_now_ns() + SWEEP_PERIOD.as_nanos() as u64;
        let set = self.set();
        let mut dead = 0;
        for lane in 0..self.lanes.shape.lanes {
            let state = set.state(lane);
            if state & STATE_MASK == OPEN
                && !self.lanes.producer_alive(lane)
                && set.close_dead(lane, state)
            {
                dead += 1;
            }
        }
        dead
    }

    /// Wakes the producer that the last record's acknowledgement found waiting for room.
    #[inline]
    pub(super) fn wake_flagged(&self) {
        if self.flagged.load(std::sync::atomic::Ordering::Relaxed) != 0 {
            self.wake_flagged_now();
        }
    }

    #[cold]
    fn wake_flagged_now(&self) {
        self.lanes
            .set(&self.mem)
            .acker(self.taken, self.strong)
            .wake_flagged(&self.flagged, &self.futex);
    }

    /// Whether the idle sweep is due (the coarse clock: no system call).
    fn sweep_due(&self) -> bool {
        self.lanes.seg.lock_fd().is_some() && crate::segment::coarse_now_ns() >= self.next_sweep
    }

    /// Moves the cursor to the first lane with a record or a close to report, noting each empty
    /// lane on the way as stale (its bit is cleared later, with others). `Ok(false)`: none.
    #[inline]
    pub(super) fn find(&mut self) -> Result<bool> {
        if self.scan()? {
            return Ok(true);
        }
        // Enough empty lanes noted: clear their bits (one heavy barrier for all), and look again
        // if one of them was raised meanwhile.
        if self.stale.len() >= STALE_LIMIT && self.clear_stale() {
            return self.scan();
        }
        Ok(false)
    }

    /// One pass over the lanes whose ready bits are set, from the cursor, each at most once.
    #[inline]
    fn scan(&mut self) -> Result<bool> {
        let set = self.lanes.set(&self.mem);
        let mut from = self.cursor;
        let mut first = None;
        while let Some(lane) = set.next_ready(from) {
            if first == Some(lane) {
                break;
            }
            first.get_or_insert(lane);
            loop {
                match set.peek(lane) {
                    Ok(Some(p)) => {
                        self.cursor = lane;
                        self.found = Some(Found::Record(p));
                        return Ok(true);
                    }
                    Ok(None) => {}
                    Err(detail) => {
                        // The next receive starts past it, so the other lanes go on.
                        self.cursor = lane + 1;
                        return Err(Error::LanesCorrupt {
                            name: self.lanes.name().to_owned(),
                            detail: detail.to_string(),
                        });
                    }
                }
                // Nothing to read: a closed lane is drained now and freed here (its producer may
                // also close between our look at the header and `settle`'s at the state).
                match set.settle(lane) {
                    Settled::Again => continue,
                    Settled::Empty => {
                        let (w, b) = (lane as usize / 64, 1u64 << (lane % 64));
                        if self.stale_bits[w] & b == 0 && self.stale.len() < self.stale.capacity() {
                            self.stale_bits[w] |= b;
                            self.stale.push(lane);
                        }
                        break;
                    }
                    Settled::Closed { drops, died } => {
                        self.cursor = lane;
                        self.found = Some(Found::Closed(LaneClosed {
                            lane,
                            dropped: drops,
                            producer_died: died,
                        }));
                        return Ok(true);
                    }
                }
            }
            from = lane + 1;
        }
        Ok(false)
    }

    /// Clears the ready bits of the lanes noted empty (docs/design.md §17, "The ready bitmap");
    /// true if one was raised again because something arrived meanwhile.
    pub(super) fn clear_stale(&mut self) -> bool {
        if self.stale.is_empty() {
            return false;
        }
        let set = self.lanes.set(&self.mem);
        let (futex, seg) = (&self.futex, &self.lanes.seg);
        let again = set.clear(&self.stale, || {
            // Where `membarrier` is unavailable, every producer fences (it could not register
            // for it either, `wait::producer_fences`), so a fence here completes the pair.
            wait::Futex::heavy_barrier(futex)
                || (wait::producer_fences(seg) && {
                    crate::sync::fence(crate::sync::Ordering::SeqCst);
                    true
                })
        });
        for &lane in &self.stale {
            self.stale_bits[lane as usize / 64] = 0;
        }
        self.stale.clear();
        again
    }

    /// [`Self::find`], and if it finds nothing and the idle sweep is due, the sweep and another
    /// look if it found a dead producer.
    #[inline]
    fn find_or_sweep(&mut self) -> Result<bool> {
        self.wake_flagged();
        // A busy consumer sweeps too (else a dead producer's lane would wait for a lull): the
        // coarse clock is read once in `SWEEP_CHECK_EVERY` receives.
        self.polls = self.polls.wrapping_add(1);
        if self.polls % SWEEP_CHECK_EVERY == 0 && self.sweep_due() {
            self.sweep();
        }
        if self.find()? {
            return Ok(true);
        }
        if self.sweep_due() && self.sweep() > 0 {
            return self.find();
        }
        Ok(false)
    }

    /// Receives without waiting: the next record in place, a lane that closed, or `None`.
    ///
    /// # Errors
    ///
    /// [`Error::LanesCorrupt`] if a lane's positions or a record's length word contradict each
    /// other (a corrupt segment; that lane is skipped until the next turn and the others go
    /// on); [`Error::UsedAfterFork`] in a child of the process that attached.
    #[inline]
    pub fn try_recv(&mut self) -> Result<Option<LaneEvent<'_>>> {
        self.check_fork()?;
        if !self.find_or_sweep()? {
            return Ok(None);
        }
        Ok(Some(self.take()))
    }

    /// The event at the cursor, which [`Self::find`] just found (it returned true).
    #[inline]
    pub(super) fn take(&mut self) -> LaneEvent<'_> {
        let lane = self.cursor;
        self.cursor = lane + 1;
        let found = self
            .found
            .take()
            .expect("`find` returned true, so it left what it found");
        match found {
            Found::Record(p) => {
                self.stats.records += 1;
                self.stats.bytes += p.len as u64;
                let set = self.lanes.set(&self.mem);
                // SAFETY: `p` is this lane's next record, from `peek`; the read position moves
                // past it only when the record (which holds the view) drops.
                let bytes = unsafe { set.payload(lane, &p) };
                self.taken = lane;
                LaneEvent::Record(LaneRecord {
                    acker: set.acker(lane, self.strong),
                    flagged: &self.flagged,
                    futex: &self.futex,
                    lane,
                    end: p.end,
                    bytes,
                })
            }
            Found::Closed(closed) => {
                self.stats.closed += 1;
                LaneEvent::Closed(closed)
            }
        }
    }

    /// Receives up to `max` records and closes, calling `f` for each: lanes in round-robin
    /// order, up to 32 records of a lane per turn while another lane is ready (the turn goes on
    /// while none is), each lane's records acknowledged together after `f` has seen them (at the
    /// end of the turn, or each time a quarter of the lane has been read). Returns how many
    /// items `f` was given.
    ///
    /// # Errors
    ///
    /// Those of [`Self::try_recv`] (the items before the error were delivered and acknowledged).
    pub fn recv_batch(&mut self, max: usize, mut f: impl FnMut(LaneItem<'_>)) -> Result<usize> {
        self.check_fork()?;
        let mut n = 0;
        while n < max {
            if !self.find_or_sweep()? {
                break;
            }
            let lane = self.cursor;
            if let Some(Found::Closed(closed)) = self.found.take() {
                // `find` drained and freed the lane already: its close exists only here.
                self.cursor = lane + 1;
                self.stats.closed += 1;
                f(LaneItem::Closed(closed));
                n += 1;
                continue;
            }
            n += self.drain_lane(lane, max - n, BATCH_PER_LANE, &mut f)?;
        }
        Ok(n)
    }

    /// Receives up to `max` records of lane `lane` alone (and its close, if it comes after
    /// them), calling `f` for each, acknowledged together (at the end, or each time a quarter of
    /// the lane has been read). Returns how many items `f` was given.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidConfig`] for a lane the segment does not have; otherwise those of
    /// [`Self::try_recv`].
    pub fn recv_lane_batch(
        &mut self,
        lane: u32,
        max: usize,
        mut f: impl FnMut(LaneItem<'_>),
    ) -> Result<usize> {
        self.check_fork()?;
        if lane >= self.lanes.shape.lanes {
            return Err(Error::InvalidConfig(format!(
                "lanes segment {:?} has {} lanes; there is no lane {lane}",
                self.lanes.name(),
                self.lanes.shape.lanes
            )));
        }
        self.wake_flagged();
        self.drain_lane(lane, max, usize::MAX, &mut f)
    }

    /// Whether a lane other than `lane` has something to read: a ready bit that is not a lane
    /// noted empty (stale bits stay set until they are cleared together), or a stale lane whose
    /// next header is there after all. Looks at most at `STALE_LIMIT + 1` set bits; beyond
    /// that it says yes, which ends the turn.
    fn other_lane_ready(&self, set: &LaneSet<'_, LaneMem>, lane: u32) -> bool {
        let mut from = lane + 1;
        for _ in 0..=STALE_LIMIT {
            let Some(next) = set.next_ready(from) else {
                return false;
            };
            if next == lane {
                return false;
            }
            let stale = self.stale_bits[next as usize / 64] & 1 << (next % 64) != 0;
            if !stale || !matches!(set.peek(next), Ok(None)) {
                return true;
            }
            from = next + 1;
        }
        true
    }

    /// Up to `max` items of one lane, in turns of `turn` records that end when another lane is
    /// ready; the cursor moves past it.
    fn drain_lane(
        &mut self,
        lane: u32,
        max: usize,
        turn: usize,
        f: &mut impl FnMut(LaneItem<'_>),
    ) -> Result<usize> {
        self.cursor = lane + 1;
        let set = self.lanes.set(&self.mem);
        // Records read up to `end`, acknowledged up to `acked`: together at the end, or as soon
        // as a quarter of the lane is read, so that a producer that keeps writing while we read
        // finds room before the batch ends rather than a full lane.
        let quarter = self.lanes.shape.lane_bytes / 4;
        let mut end = set.read_position(lane);
        let mut acked = end;
        let mut n = 0;
        let mut records = 0;
        let mut turn_ends = turn;
        let result = loop {
            if n >= max {
                break Ok(());
            }
            if n >= turn_ends {
                if self.other_lane_ready(&set, lane) {
                    break Ok(());
                }
                turn_ends = n.saturating_add(turn);
            }
            match set.peek_at(lane, end) {
                Ok(Some(p)) => {
                    // SAFETY: `p` is the lane's next record after those of this batch, its
                    // header loaded with Acquire; the read position moves past it only after
                    // `f` has returned, and `f` holds the view only while it runs.
                    let bytes = unsafe { set.payload(lane, &p) };
                    f(LaneItem::Record { lane, bytes });
                    self.stats.records += 1;
                    self.stats.bytes += p.len as u64;
                    end = p.end;
                    records += 1;
                    n += 1;
                    if end - acked >= quarter {
                        set.ack(lane, end, records, &self.futex, self.strong);
                        (acked, records) = (end, 0);
                    }
                }
                Ok(None) => {
                    if end != acked {
                        set.ack(lane, end, records, &self.futex, self.strong);
                        (acked, records) = (end, 0);
                    }
                    match set.settle(lane) {
                        Settled::Again => continue,
                        Settled::Empty => break Ok(()),
                        Settled::Closed { drops, died } => {
                            self.stats.closed += 1;
                            f(LaneItem::Closed(LaneClosed {
                                lane,
                                dropped: drops,
                                producer_died: died,
                            }));
                            n += 1;
                            break Ok(());
                        }
                    }
                }
                Err(detail) => break Err(self.corrupt(detail.to_string())),
            }
        };
        if end != acked {
            set.ack(lane, end, records, &self.futex, self.strong);
        }
        result.map(|()| n)
    }

    /// Receives, waiting up to `timeout` (with [`Wait::Sleep`]): `Ok(None)` when it passes.
    ///
    /// # Errors
    ///
    /// Those of [`Self::try_recv`].
    pub fn recv_timeout(&mut self, timeout: Duration) -> Result<Option<LaneEvent<'_>>> {
        // A timeout too long to represent waits without limit, as the other kinds' do.
        self.recv_until(Wait::Sleep, Instant::now().checked_add(timeout))
    }

    /// Receives, waiting as long as it takes (with [`Wait::Sleep`]).
    ///
    /// # Errors
    ///
    /// Those of [`Self::try_recv`].
    pub fn recv(&mut self) -> Result<LaneEvent<'_>> {
        Ok(self
            .recv_until(Wait::Sleep, None)?
            .expect("no deadline: the wait ends with an event"))
    }

    /// Receives, waiting with `wait` until `deadline` (`None`: no deadline).
    ///
    /// # Errors
    ///
    /// Those of [`Self::try_recv`].
    pub fn recv_with(
        &mut self,
        wait: Wait,
        deadline: Option<Instant>,
    ) -> Result<Option<LaneEvent<'_>>> {
        self.recv_until(wait, deadline)
    }

    fn recv_until(
        &mut self,
        wait: Wait,
        deadline: Option<Instant>,
    ) -> Result<Option<LaneEvent<'_>>> {
        self.check_fork()?;
        let found = {
            let mut a = Finding { c: self };
            wait::block(&mut a, wait, deadline)
        };
        match found {
            Some(Err(e)) => Err(e),
            Some(Ok(())) => Ok(Some(self.take())),
            None => Ok(None),
        }
    }
}

impl Drop for LaneConsumer {
    fn drop(&mut self) {
        // A producer the last acknowledgement found waiting would otherwise wait for its
        // next periodic look.
        self.wake_flagged();
    }
}

/// The consumer's blocking receive as an [`Attempt`]: find an event, sweep for dead producers
/// now and then, sleep until a producer raises a ready bit.
struct Finding<'a> {
    c: &'a mut LaneConsumer,
}

impl Attempt for Finding<'_> {
    type Out = Result<()>;

    fn attempt(&mut self) -> Option<Result<()>> {
        match self.c.find_or_sweep() {
            Ok(true) => Some(Ok(())),
            Ok(false) => None,
            Err(e) => Some(Err(e)),
        }
    }

    fn check(&mut self) -> Option<Result<()>> {
        if self.c.sweep() > 0 {
            return self.attempt();
        }
        None
    }

    fn sleep(&mut self, timeout: Option<Duration>) {
        // Nothing found: the bits of the empty lanes are cleared first, so that the sleep's
        // re-check (any bit set) means something arrived.
        if self.c.clear_stale() {
            return;
        }
        let seg = &self.c.lanes.seg;
        let set = self.c.lanes.set(&self.c.mem);
        wait::sleep_on(seg.wake_words(), &self.c.futex, true, timeout, || {
            set.any_ready()
        });
    }
}
