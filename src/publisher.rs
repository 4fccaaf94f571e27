//! The producer side (DESIGN §4): claim a sequence, write its slot, publish it, wake sleepers.
//!
//! Publishing never blocks, never allocates and makes no system call unless a subscriber sleeps
//! on the wake word.

use std::marker::PhantomData;
use std::os::fd::OwnedFd;
use std::sync::Arc;

use crate::error::{Error, Result};
use crate::layout::{Geometry, ProducerMode, MAX_PRODUCERS};
use crate::payload::{Payload, Raw};
use crate::ring::{self, Take};
use crate::segment::{self, LockKind, Segment};
use crate::sync::AtomicU64;

/// How many times a multi-producer writer re-reads a slot still held by a writer a lap behind
/// before giving up on it.
const BUSY_SPINS: u32 = 1024;

/// Counters of one publisher.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PublisherStats {
    /// Messages published.
    pub published: u64,
    /// Multi-producer only: messages dropped because their slot already held a newer message, or
    /// was still held by a writer a full lap behind.
    pub dropped: u64,
}

/// A producer attached to a bus. Made by [`crate::Bus::publisher`]; detaches on drop.
pub struct Publisher<T: Payload = Raw> {
    seg: Arc<Segment>,
    geometry: Geometry,
    mode: ProducerMode,
    /// Single producer: the next sequence to publish (the producer owns the cursor).
    next: u64,
    /// This producer's entry in the header's producer table.
    index: u32,
    /// Holds this producer's OFD locks (byte 0: producer presence; byte 1+index: the entry)
    /// until drop, or until the kernel drops them when the process dies.
    _lock: Option<OwnedFd>,
    stats: PublisherStats,
    _type: PhantomData<fn(&T)>,
}

impl<T: Payload> std::fmt::Debug for Publisher<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Publisher")
            .field("bus", &self.seg.name())
            .field("index", &self.index)
            .field("stats", &self.stats)
            .finish()
    }
}

impl<T: Payload> Publisher<T> {
    pub(crate) fn attach(seg: Arc<Segment>) -> Result<Self> {
        let pid = std::process::id();
        let busy = |seg: &Segment| {
            let pid = (0..MAX_PRODUCERS)
                .find(|&i| seg.producer_alive(i))
                .map(|i| seg.producer_pid(i));
            Error::ProducerExists {
                name: seg.name().to_owned(),
                pid,
            }
        };
        let lock = seg.reopen_for_lock()?;
        let index = match &lock {
            Some(fd) => {
                let kind = match seg.mode {
                    ProducerMode::Single => LockKind::Exclusive,
                    ProducerMode::Multi => LockKind::Shared,
                };
                let io = |e| Error::Io {
                    name: seg.name().to_owned(),
                    op: "fcntl(F_OFD_SETLK)",
                    source: e,
                };
                if !segment::try_lock(fd, 0, kind).map_err(io)? {
                    return Err(busy(&seg));
                }
                // Repair before taking an entry, so that a dead writer's entry is still dead.
                repair_abandoned_slots(&seg);
                let mut found = None;
                for i in 0..MAX_PRODUCERS {
                    if segment::try_lock(fd, 1 + i as i64, LockKind::Exclusive).map_err(io)? {
                        found = Some(i);
                        break;
                    }
                }
                found.ok_or(Error::TooManyProducers {
                    name: seg.name().to_owned(),
                    max: MAX_PRODUCERS,
                })?
            }
            None => {
                let candidates = match seg.mode {
                    ProducerMode::Single => 0..1,
                    ProducerMode::Multi => 0..MAX_PRODUCERS,
                };
                let found = candidates.clone().find(|&i| seg.claim_heap_entry(i, pid));
                match (found, seg.mode) {
                    (Some(i), _) => i,
                    (None, ProducerMode::Single) => return Err(busy(&seg)),
                    (None, ProducerMode::Multi) => {
                        return Err(Error::TooManyProducers {
                            name: seg.name().to_owned(),
                            max: MAX_PRODUCERS,
                        })
                    }
                }
            }
        };
        seg.set_producer(index, pid, segment::process_start_ticks(pid).unwrap_or(0));
        let next = ring::cursor(seg.words());
        Ok(Publisher {
            geometry: seg.geometry,
            mode: seg.mode,
            next,
            index: index as u32,
            seg,
            _lock: lock,
            stats: PublisherStats::default(),
            _type: PhantomData,
        })
    }

    /// Largest message this publisher can send, in bytes.
    pub fn capacity(&self) -> usize {
        self.geometry.capacity
    }

    /// Counters so far.
    pub fn stats(&self) -> PublisherStats {
        self.stats
    }

    /// The producer-table index this publisher holds.
    pub fn producer_index(&self) -> u32 {
        self.index
    }

    /// The protocol around one write: claim, `fill`, publish, wake. Returns the sequence number,
    /// or `None` if a multi-producer message had to be dropped.
    #[inline]
    fn publish_inner(
        &mut self,
        fill: impl FnOnce(&[AtomicU64], &Geometry, u64, u32),
    ) -> Option<u64> {
        let seg = &*self.seg;
        let words = seg.words();
        let g = &self.geometry;
        let seq = match self.mode {
            ProducerMode::Single => {
                let seq = self.next;
                ring::begin(words, g, seq);
                fill(words, g, seq, self.index);
                ring::commit(words, g, seq);
                self.next = seq.wrapping_add(1);
                seq
            }
            ProducerMode::Multi => {
                let seq = ring::claim(words);
                // Recorded before taking the slot, so that if this process dies before storing
                // its length word, the next writer of the slot can still tell whose it was.
                seg.producer_claim(self.index as usize)
                    .store(seq.wrapping_add(1), crate::sync::Ordering::Relaxed);
                if !self.take_slot(words, seq) {
                    self.stats.dropped += 1;
                    return None;
                }
                fill(words, g, seq, self.index);
                if !ring::commit_cas(words, g, seq) {
                    self.stats.dropped += 1;
                    return None;
                }
                seq
            }
        };
        // A coarse clock (a vDSO read of CLOCK_MONOTONIC_COARSE, ~4 ns; no system call) on this
        // producer's own cache line, for "time since last publish" in the inspector. The
        // precise TSC clock costs ~8-11 ns here, most of a publish.
        seg.producer_heartbeat(self.index as usize)
            .store(segment::coarse_now_ns(), crate::sync::Ordering::Relaxed);
        seg.wake_sleepers();
        self.stats.published += 1;
        Some(seq)
    }

    /// Multi producer: gets the slot of `seq`, waiting a bounded time for a writer a lap behind,
    /// and taking the slot over only from a writer proven dead.
    fn take_slot(&self, words: &[AtomicU64], seq: u64) -> bool {
        let g = &self.geometry;
        let mut spins = 0;
        loop {
            match ring::take(words, g, seq) {
                Take::Taken => return true,
                Take::Newer => return false,
                Take::Busy { version, writer } => {
                    if spins < BUSY_SPINS {
                        spins += 1;
                        crate::sync::spin_hint();
                        continue;
                    }
                    // Rare path: a slot held for a whole lap. Only a writer whose lock the
                    // kernel has released (it died) is taken over; a live one keeps its slot.
                    let writer = writer.or_else(|| claimant(&self.seg, version));
                    let dead = writer
                        .is_some_and(|w| w != self.index && !self.seg.producer_alive(w as usize));
                    return dead && ring::take_over(words, g, seq, version);
                }
            }
        }
    }

    /// Publishes the bytes of `msg`; returns its sequence number (`None`: a multi-producer
    /// message dropped, see [`PublisherStats::dropped`]).
    #[inline]
    fn publish_slice(&mut self, bytes: &[u8]) -> Result<Option<u64>> {
        if bytes.len() > self.geometry.capacity {
            return Err(Error::MessageTooLarge {
                len: bytes.len(),
                capacity: self.geometry.capacity,
            });
        }
        Ok(self.publish_inner(|w, g, seq, idx| ring::write_bytes(w, g, seq, idx, bytes)))
    }

    /// Writes a message in place: `fill` gets a [`SlotWriter`] whose writes go straight into the
    /// slot as atomic stores (no intermediate buffer); the message length is the furthest byte
    /// written. Returns the sequence number and what `fill` returned, or `None` if a
    /// multi-producer message was dropped before `fill` ran. If `fill` panics, the slot is marked
    /// abandoned, so no subscriber ever receives the half-written message.
    pub fn publish_with<R>(
        &mut self,
        fill: impl FnOnce(&mut SlotWriter<'_>) -> R,
    ) -> Option<(u64, R)> {
        let mut out = None;
        let mut panicked = None;
        let seq = self.publish_inner(|words, g, seq, writer| {
            let mut w = SlotWriter {
                words,
                geometry: g,
                seq,
                len: 0,
            };
            // A panic in `fill` must not leave the slot odd: that would stall subscribers and, on
            // a multi-producer bus, keep later writers out of the slot while we live. The
            // sequence is published as abandoned (a tombstone length) and the panic resumes.
            let len = match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| fill(&mut w)))
            {
                Ok(o) => {
                    out = Some(o);
                    w.len as u32
                }
                Err(payload) => {
                    panicked = Some(payload);
                    crate::layout::TOMBSTONE
                }
            };
            ring::store_len(words, g, seq, writer, len);
        });
        if let Some(payload) = panicked {
            std::panic::resume_unwind(payload);
        }
        let seq = seq?;
        out.map(|o| (seq, o))
    }
}

impl Publisher<Raw> {
    /// Publishes a byte message; fails only if it is longer than the slot capacity.
    ///
    /// Returns the message's sequence number, or `None` on a multi-producer bus when the message
    /// was dropped (it would have overwritten a newer message; see [`PublisherStats::dropped`]).
    #[inline]
    pub fn publish_bytes(&mut self, bytes: &[u8]) -> Result<Option<u64>> {
        self.publish_slice(bytes)
    }
}

impl<T: bytemuck::Pod> Publisher<T> {
    /// Publishes one typed message (the bus was created or opened for this type, so it fits).
    #[inline]
    pub fn publish(&mut self, msg: &T) -> Option<u64> {
        let bytes = bytemuck::bytes_of(msg);
        // The capacity was checked against size_of::<T>() when the bus was built or opened.
        self.publish_inner(|w, g, seq, idx| ring::write_bytes(w, g, seq, idx, bytes))
    }
}

impl<T: Payload> Drop for Publisher<T> {
    fn drop(&mut self) {
        if !self.seg.is_shared() {
            self.seg.release_heap_entry(self.index as usize);
        }
        // Shared segments: closing the lock fd releases the OFD locks. Sleepers are woken so
        // they can notice that producers are gone.
        self.seg.wake_sleepers();
    }
}

/// Writes one message directly into its slot with atomic word stores (never a `&mut [u8]` into
/// shared memory, which readers race on; DESIGN §6). The message length is the furthest byte
/// written.
pub struct SlotWriter<'a> {
    words: &'a [AtomicU64],
    geometry: &'a Geometry,
    seq: u64,
    len: usize,
}

impl SlotWriter<'_> {
    /// Bytes available in the slot.
    pub fn capacity(&self) -> usize {
        self.geometry.capacity
    }

    /// Bytes written so far (the message length).
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether nothing was written yet.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Writes `bytes` at byte `offset` of the payload.
    pub fn write_at(&mut self, offset: usize, bytes: &[u8]) -> Result<()> {
        let end = offset
            .checked_add(bytes.len())
            .filter(|&e| e <= self.geometry.capacity);
        let Some(end) = end else {
            return Err(Error::MessageTooLarge {
                len: offset.saturating_add(bytes.len()),
                capacity: self.geometry.capacity,
            });
        };
        let mut pos = offset;
        let mut rest = bytes;
        while !rest.is_empty() {
            let word = pos / 8;
            let skip = pos % 8;
            let take = rest.len().min(8 - skip);
            // Bytes of this word that were written before keep their value; bytes never written
            // read as whatever the slot held, which the length excludes or this write covers.
            let mut b = if skip == 0 && take == 8 {
                [0u8; 8]
            } else {
                ring::load_word(self.words, self.geometry, self.seq, word).to_ne_bytes()
            };
            b[skip..skip + take].copy_from_slice(&rest[..take]);
            ring::store_word(
                self.words,
                self.geometry,
                self.seq,
                word,
                u64::from_ne_bytes(b),
            );
            pos += take;
            rest = &rest[take..];
        }
        self.len = self.len.max(end);
        Ok(())
    }

    /// Appends `bytes` after the furthest byte written.
    pub fn push(&mut self, bytes: &[u8]) -> Result<()> {
        self.write_at(self.len, bytes)
    }
}

/// The producer whose recorded claim is the sequence of the odd `version`: the writer of a slot
/// that has not named itself in the length word yet (or died before it could).
fn claimant(seg: &Segment, version: u64) -> Option<u32> {
    // ORDERING: pairs with the Release CAS in `ring::take`: having seen its odd version, we see
    // the claim its writer stored before it.
    crate::sync::fence(crate::sync::Ordering::Acquire);
    let want = ring::version_seq(version).wrapping_add(1);
    (0..MAX_PRODUCERS)
        .find(|&i| seg.producer_claim(i).load(crate::sync::Ordering::Relaxed) == want)
        .map(|i| i as u32)
}

/// Tombstones slots left odd by producers that died mid-write (RELIABILITY "Producers"), and, on
/// a single-producer bus, moves the cursor past a sequence its dead producer finished or left
/// half-written. Called with the producer-presence lock held, before taking an entry.
fn repair_abandoned_slots(seg: &Segment) {
    let words = seg.words();
    let g = &seg.geometry;
    // With the exclusive lock (single producer) every odd slot is a dead writer's; with several
    // producers, only a slot whose recorded writer is dead, or any slot if nobody else is alive.
    let others_alive =
        seg.mode == ProducerMode::Multi && (0..MAX_PRODUCERS).any(|i| seg.producer_alive(i));
    for i in 0..g.slot_count {
        let v = ring::version(words, g, i);
        if v & 1 == 0 {
            continue;
        }
        let seq = ring::version_seq(v);
        let meta = words[g.slot_word(seq) + 1].load(crate::sync::Ordering::Relaxed);
        let dead = match ring::meta_writer(meta, seq).or_else(|| claimant(seg, v)) {
            Some(w) => !seg.producer_alive(w as usize),
            None => !others_alive,
        };
        if dead {
            ring::tombstone(words, g, seq, v);
        }
    }
    if seg.mode == ProducerMode::Single {
        let c = ring::cursor(words);
        if ring::version(words, g, c) == ring::done_version(c) {
            // The dead producer published `c` (or we tombstoned it) but never advanced the cursor.
            words[crate::layout::W_CURSOR].store(c.wrapping_add(1), crate::sync::Ordering::Release);
        }
    }
}
