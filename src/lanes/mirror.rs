//! The lanes' bytes: each lane's ring mapped twice, back to back (docs/design.md §17, "The
//! mirror"), so that a record which crosses the ring's end is still one contiguous slice and
//! needs no padding. [`LaneBytes`] is what the protocol (`lane.rs`) asks of them; the loom
//! model supplies its own, which checks that no byte is written while a view of it lives.

use std::ops::Deref;
use std::os::fd::OwnedFd;
use std::ptr::NonNull;

/// The bytes of every lane, as the protocol reaches them. Positions are lane positions (byte
/// counts since the lane was first used); an implementation masks them into the lane.
pub(crate) trait LaneBytes {
    /// A borrowed run of published bytes.
    type View<'a>: Deref<Target = [u8]>
    where
        Self: 'a;

    /// The `len` bytes at lane `lane`'s position `pos`.
    ///
    /// # Safety
    ///
    /// The caller is the lane's only consumer, `len` is at most the lane size, every byte of
    /// `[pos, pos + len)` is below the write position it loaded (with Acquire) and at or past
    /// the read position it has published, and it publishes no read position past `pos` while
    /// the view lives. The producer then writes none of these bytes while the view lives.
    unsafe fn view(&self, lane: u32, pos: u64, len: usize) -> Self::View<'_>;

    /// Loads the word at lane `lane`'s position `pos` (a record header) with Acquire.
    ///
    /// # Safety
    ///
    /// `pos` is 8-aligned, and the word is accessed only atomically while anyone may store to
    /// it: the producer stores header words only through [`LaneBytes::store_head`], and writes
    /// its record bytes (through [`LaneRing::write`]) only over words nobody loads meanwhile
    /// (docs/design.md §17, "Publishing and reading in place").
    unsafe fn load_head(&self, lane: u32, pos: u64) -> u64;

    /// Stores `value` into the word at lane `lane`'s position `pos` (a record header or the
    /// zero after the last record): with Release if `commit`, else Relaxed.
    ///
    /// # Safety
    ///
    /// As for [`LaneBytes::load_head`], and the caller is the lane's only producer.
    unsafe fn store_head(&self, lane: u32, pos: u64, value: u64, commit: bool);

    /// One lane's bytes, for a producer's publish: where the lane is, worked out once.
    type Ring<'a>: LaneRing
    where
        Self: 'a;

    /// Lane `lane`'s bytes.
    fn ring(&self, lane: u32) -> Self::Ring<'_>;
}

/// A producer's access to its lane's bytes, with the lane worked out once.
pub(crate) trait LaneRing {
    /// Writes `data` at the lane's position `pos`.
    ///
    /// # Safety
    ///
    /// The caller is the lane's only producer, `data.len()` is at most the lane size, and no
    /// byte of `[pos, pos + data.len())` can be read by the consumer: every one of them is past
    /// the lane's last committed header and before the read position the producer loaded
    /// (with Acquire) plus the lane size, and none is the header word the consumer polls.
    unsafe fn write(&self, pos: u64, data: &[u8]);

    /// [`LaneBytes::store_head`] on this lane.
    ///
    /// # Safety
    ///
    /// That of [`LaneBytes::store_head`].
    unsafe fn store_head(&self, pos: u64, value: u64, commit: bool);
}

/// A lane of any [`LaneBytes`], through its per-lane methods (the miri and loom stand-ins).
#[cfg(any(miri, loom))]
pub(crate) struct ByLane<'a, M> {
    pub(crate) mem: &'a M,
    pub(crate) lane: u32,
}

/// A lane of a [`Mirror`]: its first byte and the position mask.
pub(crate) struct MirrorRing<'a> {
    base: *mut u8,
    mask: u64,
    _mirror: std::marker::PhantomData<&'a Mirror>,
}

// SAFETY: a `MirrorRing` is a lane of a `Mirror` (itself `Send` and `Sync`) and writes it only
// through `LaneRing`'s unsafe methods, whose contract (the lane's one producer, bytes nobody
// reads meanwhile) holds whatever thread calls them.
unsafe impl Send for MirrorRing<'_> {}
// SAFETY: as for `Send`: shared, it offers nothing but those methods.
unsafe impl Sync for MirrorRing<'_> {}

impl LaneRing for MirrorRing<'_> {
    #[inline(always)]
    unsafe fn write(&self, pos: u64, data: &[u8]) {
        let at = (pos & self.mask) as usize;
        debug_assert!(data.len() as u64 <= self.mask + 1);
        // SAFETY: `at <= mask` and `data.len() <= lane_bytes`, so the
        // run lies within the lane's two copies; the caller's contract keeps everyone else off
        // these bytes.
        unsafe { std::ptr::copy_nonoverlapping(data.as_ptr(), self.base.add(at), data.len()) }
    }

    #[inline(always)]
    unsafe fn store_head(&self, pos: u64, value: u64, commit: bool) {
        let at = (pos & self.mask) as usize;
        debug_assert!(at % 8 == 0);
        // SAFETY: as in `Mirror::head`: an 8-aligned word of the lane's first copy, accessed
        // atomically while shared (the caller's contract).
        let word = unsafe { &*(self.base.add(at) as *const std::sync::atomic::AtomicU64) };
        // ORDERING: with `commit`, Release pairs with the consumer's Acquire in `load_head`.
        word.store(value, head_order(commit))
    }
}

/// The ordering of a header store.
#[inline]
fn head_order(commit: bool) -> std::sync::atomic::Ordering {
    if commit {
        std::sync::atomic::Ordering::Release
    } else {
        std::sync::atomic::Ordering::Relaxed
    }
}

/// The rings of `count` lanes from `first`, each mapped twice back to back.
pub(crate) struct Mirror {
    base: NonNull<u8>,
    total: usize,
    lane_bytes: u64,
    first: u32,
    count: u32,
    /// An in-process segment's rings live in a memory file of their own, kept open here.
    _file: Option<OwnedFd>,
}

// SAFETY: the mapping is owned by the `Mirror` and lives until it drops; what is written into it
// is ordered by the record headers and read positions (docs/design.md §17), never by the `Mirror` itself.
unsafe impl Send for Mirror {}
// SAFETY: as for Send; `write` and `view` carry the contracts that make shared use sound.
unsafe impl Sync for Mirror {}

impl Mirror {
    /// Maps lanes `first..first + count` of a segment file whose rings start at byte
    /// `rings_offset`.
    pub(crate) fn map(
        fd: &OwnedFd,
        rings_offset: u64,
        lane_bytes: u64,
        first: u32,
        count: u32,
        writable: bool,
    ) -> std::io::Result<Mirror> {
        let offset = rings_offset + first as u64 * lane_bytes;
        let base = crate::sys::map_mirrored(fd, offset, lane_bytes, count as u64, writable)?;
        Ok(Mirror {
            base,
            total: (2 * lane_bytes * count as u64) as usize,
            lane_bytes,
            first,
            count,
            _file: None,
        })
    }

    /// Rings for `count` lanes in a new memory file of this process's own.
    pub(crate) fn anonymous(lane_bytes: u64, count: u32) -> std::io::Result<Mirror> {
        let file = crate::sys::anonymous_file(lane_bytes * count as u64)?;
        let mut m = Mirror::map(&file, 0, lane_bytes, 0, count, true)?;
        m._file = Some(file);
        Ok(m)
    }

    /// The first byte of lane `lane`'s first copy.
    #[inline]
    fn lane_base(&self, lane: u32) -> *mut u8 {
        debug_assert!(lane >= self.first && lane - self.first < self.count);
        let i = (lane - self.first) as usize;
        // SAFETY: `i < count` (the callers pass a lane of this mirror: the consumer maps every
        // lane, a producer only its own), so the offset lies within the reservation.
        unsafe { self.base.as_ptr().add(2 * i * self.lane_bytes as usize) }
    }
}

impl LaneBytes for Mirror {
    type View<'a> = &'a [u8];

    #[inline]
    unsafe fn view(&self, lane: u32, pos: u64, len: usize) -> &[u8] {
        let at = (pos & (self.lane_bytes - 1)) as usize;
        debug_assert!(len as u64 <= self.lane_bytes);
        // SAFETY: in bounds as in `write`; the caller's contract says the producer writes none
        // of these bytes while the view lives, and they were written before the write position
        // the caller loaded with Acquire: a shared borrow of initialised, unchanging bytes.
        unsafe { std::slice::from_raw_parts(self.lane_base(lane).add(at), len) }
    }

    #[inline]
    unsafe fn load_head(&self, lane: u32, pos: u64) -> u64 {
        // ORDERING: Acquire pairs with the producer's Release store of the header in
        // `Writer::publish` (`store_head` with `commit`): the record's bytes are visible.
        self.head(lane, pos)
            .load(std::sync::atomic::Ordering::Acquire)
    }

    #[inline]
    unsafe fn store_head(&self, lane: u32, pos: u64, value: u64, commit: bool) {
        // ORDERING: with `commit`, Release pairs with the consumer's Acquire in `load_head`.
        self.head(lane, pos).store(value, head_order(commit))
    }

    type Ring<'a> = MirrorRing<'a>;

    #[inline(always)]
    fn ring(&self, lane: u32) -> MirrorRing<'_> {
        MirrorRing {
            base: self.lane_base(lane),
            mask: self.lane_bytes - 1,
            _mirror: std::marker::PhantomData,
        }
    }
}

impl Mirror {
    /// The word at lane `lane`'s position `pos`, in its first copy.
    #[inline]
    fn head(&self, lane: u32, pos: u64) -> &std::sync::atomic::AtomicU64 {
        let at = (pos & (self.lane_bytes - 1)) as usize;
        debug_assert!(at % 8 == 0);
        // SAFETY: `at + 8 <= lane_bytes` (8-aligned, below the lane size, itself a multiple of
        // a page) lies in the lane's first copy; the mapping is page-aligned, so the word is
        // 8-aligned; it lives as long as `self`; and the callers' contract (`load_head`,
        // `store_head`) says it is accessed atomically while it is shared.
        unsafe { &*(self.lane_base(lane).add(at) as *const std::sync::atomic::AtomicU64) }
    }
}

impl Drop for Mirror {
    fn drop(&mut self) {
        // SAFETY: the reservation made in `map`; views borrow the `Mirror`, so none outlives it.
        unsafe { crate::sys::unmap(self.base, self.total) }
    }
}

/// Under miri, which cannot map files: a heap buffer of two copies per lane, every write made
/// to both. The protocol's orderings and bounds are what miri checks; the mirror itself is
/// exercised by every other test.
#[cfg(miri)]
pub(crate) struct Twin {
    /// Words, not bytes, so that records are 8-aligned as in a mapping.
    words: Box<[std::cell::UnsafeCell<u64>]>,
    lane_bytes: u64,
}

#[cfg(miri)]
// SAFETY: as for `Mirror`: shared use is ordered by the position words (the contracts of
// `write` and `view`).
unsafe impl Sync for Twin {}
#[cfg(miri)]
// SAFETY: as above.
unsafe impl Send for Twin {}

#[cfg(miri)]
impl Twin {
    pub(crate) fn new(lane_bytes: u64, count: u32) -> Twin {
        let n = (2 * lane_bytes * count as u64 / 8) as usize;
        Twin {
            words: (0..n).map(|_| std::cell::UnsafeCell::new(0)).collect(),
            lane_bytes,
        }
    }

    /// Byte `index` of lane `lane`'s two copies, through a pointer to the whole buffer (so its
    /// provenance covers any run within it).
    fn byte(&self, lane: u32, index: usize) -> *mut u8 {
        let i = 2 * lane as usize * self.lane_bytes as usize + index;
        assert!(i <= self.words.len() * 8);
        // SAFETY: in bounds (asserted; one past the end for an empty run); `UnsafeCell<u64>`
        // has the layout of `u64`, and writes through a shared reference to an `UnsafeCell` are
        // allowed.
        unsafe { (self.words.as_ptr() as *mut u8).add(i) }
    }
}

#[cfg(miri)]
impl LaneBytes for Twin {
    type View<'a> = &'a [u8];

    unsafe fn view(&self, lane: u32, pos: u64, len: usize) -> &[u8] {
        let at = (pos & (self.lane_bytes - 1)) as usize;
        assert!(at + len <= 2 * self.lane_bytes as usize);
        // SAFETY: within the lane's two copies (asserted), which hold the same bytes; the
        // caller's contract (as for `Mirror::view`) keeps the producer off them meanwhile.
        unsafe { std::slice::from_raw_parts(self.byte(lane, at), len) }
    }

    unsafe fn load_head(&self, lane: u32, pos: u64) -> u64 {
        // ORDERING: Acquire pairs with the Release `store_head` of a commit.
        self.head(lane, pos)
            .load(std::sync::atomic::Ordering::Acquire)
    }

    unsafe fn store_head(&self, lane: u32, pos: u64, value: u64, commit: bool) {
        // ORDERING: with `commit`, Release pairs with `load_head`'s Acquire.
        self.head(lane, pos).store(value, head_order(commit))
    }

    type Ring<'a> = ByLane<'a, Twin>;

    fn ring(&self, lane: u32) -> ByLane<'_, Twin> {
        ByLane { mem: self, lane }
    }
}

#[cfg(miri)]
impl Twin {
    /// The word at lane `lane`'s position `pos`, in its first copy (headers are never read
    /// through the second: a view covers payload bytes only).
    fn head(&self, lane: u32, pos: u64) -> &std::sync::atomic::AtomicU64 {
        let at = (pos & (self.lane_bytes - 1)) as usize;
        assert!(at % 8 == 0);
        let i = (2 * lane as usize * self.lane_bytes as usize + at) / 8;
        // SAFETY: an `UnsafeCell<u64>` of the buffer, 8-aligned; `AtomicU64` has the layout of
        // `u64`; the callers' contract says it is accessed atomically while it is shared.
        unsafe { &*(self.words[i].get() as *const std::sync::atomic::AtomicU64) }
    }
}

#[cfg(miri)]
impl LaneRing for ByLane<'_, Twin> {
    unsafe fn write(&self, pos: u64, data: &[u8]) {
        let (twin, lane) = (self.mem, self.lane);
        let b = twin.lane_bytes as usize;
        let at = pos as usize & (b - 1);
        // The run up to the ring's end, then the rest from its start; each into both copies.
        let first = data.len().min(b - at);
        for (offset, run) in [(at, &data[..first]), (0, &data[first..])] {
            for copy in [0, b] {
                let to = twin.byte(lane, offset + copy);
                // SAFETY: `offset + run.len() <= b`, so the run lies within one copy of the
                // lane's two, inside the buffer (`byte` asserts its start); the caller's
                // contract says nobody else touches these bytes now.
                unsafe { std::ptr::copy_nonoverlapping(run.as_ptr(), to, run.len()) };
            }
        }
    }

    unsafe fn store_head(&self, pos: u64, value: u64, commit: bool) {
        // SAFETY: the caller keeps `LaneBytes::store_head`'s contract.
        unsafe { self.mem.store_head(self.lane, pos, value, commit) }
    }
}
