//! The common header of every segment (ABI version 2), and the map of the whole segment. This
//! module defines the common words; the words marked with a kind below are defined by that
//! kind's own module (`board/shape.rs`, `queue/layout.rs`, `records/layout.rs`), written by its
//! `Kind::init` before the magic (docs/design.md, "Architecture").
//!
//! The segment is viewed as an array of 64-bit words (`[AtomicU64]`); every field below is one
//! word or half of one, and every offset is a word index. Nothing in the segment is a pointer, so
//! each process may map it anywhere.
//!
//! ```text
//!  byte  word  header (one 4096-byte page)
//!  ----  ----  ------------------------------------------------------------------------------
//!     0     0  magic "SHMBUS\0\x01"   (stored last, Release: the segment is ready)
//!     8     1  abi version (lo32) | producer mode (hi32: 1 single, 2 multi)
//!    16     2  slot count (power of two)
//!    24     3  slot stride in bytes (multiple of 64; a queue's may be 32: docs/design.md §11)
//!    32     4  payload capacity in bytes
//!    40     5  type fingerprint: FNV-1a hash of the type name
//!    48     6  type size (lo32) | type align (hi32)
//!    56     7  first sequence number
//!    64     8  creator pid (lo32) | type name length (hi32)
//!    72     9  creator start time (clock ticks after boot, from /proc/PID/stat)
//!    80    10  creation time (ns since the Unix epoch)
//!    88    11  segment size in bytes
//!    96    12  segment kind (lo32: 1 bus, 2 queue, 3 records, 4 board) | 0, or for records the
//!                 records layout revision (hi32: `records::RECORDS_REVISION`, docs/design.md §15)
//!   120    15  board: cell count (lo32) | key block bytes per cell (hi32: 0 or 64), written
//!                 before the magic (docs/design.md §12)
//!   128    16  type name, up to 256 bytes of UTF-8
//!  1024   128  write cursor: next sequence to claim            [own cache line, hot]
//!  1088   136  wake word (futex, lo32 only)                    [own cache line]
//!  1096   137  waiter flag: non-zero while a subscriber may sleep (docs/design.md §7)
//!              kind's own words, 144..=255 (`W_KIND_OWN`):
//!              queue (docs/design.md §11): the write cursor above is the tail (the next
//!              position producers claim), the wake word wakes sleeping consumers, and
//!  1152   144  head: the next position consumers claim            [own cache line, hot]
//!  1216   152  space wake word (futex, lo32 only)                  [own cache line]
//!  1224   153  space waiter flag: non-zero while a producer may sleep on a full queue
//!  1280   160  positions skipped (claimed by producers that died before publishing)
//!  1288   161  items lost (claimed by consumers that died before finishing)
//!              records (docs/design.md §15): words 145..=148 are the ring's tail, head,
//!              last record and bytes published (144 is 0), word 152 alone on its line is the
//!              intent (`records::layout`); the ring starts at 4096
//!  2048   256  producer table: 32 entries of 64 bytes (one line each)
//!                +0 pid (lo32) | 0      +8 start time (ticks)    +16 activity stamp (CLOCK_MONOTONIC_COARSE ns,
//!                   on attach and once in 1024 publishes)
//!               +24 claim word (multi producer): 0 none, 2^64-1 claiming, seq+1 holds seq,
//!                   (seq+1) | 2^63 dropped seq (docs/design.md §5)
//!                   queue: pos+1 (producer) or (pos+1) | 2^62 (consumer) names the position
//!                   its participant claims or last claimed (docs/design.md §11)
//!               +32 queue: role of the entry's participant (1 producer, 2 consumer)
//!  4096   512  slot 0, then slot i at 4096 + i * stride
//!
//!  slot:  +0 version (2*seq+1 while writing seq, 2*seq+2 once written, (2*seq+2) | 2^63 when
//!            seq was abandoned, 0 never written)
//!         +8 length in bytes
//!        +16 payload, capacity bytes rounded up to whole words
//! ```

use crate::sync::{load_acquire, AtomicU64, Ordering};

/// The first word of every shmbus segment: `b"SHMBUS\0\x01"` read as a little-endian `u64`.
pub const MAGIC: u64 = u64::from_le_bytes(*b"SHMBUS\0\x01");
/// The layout version this library reads and writes.
pub const ABI_VERSION: u32 = 2;
/// Bytes of header before slot 0.
pub const HEADER_BYTES: usize = 4096;
/// Bytes of slot header before the payload (version word and length word).
pub const SLOT_HEADER_BYTES: usize = 16;
/// The stride of a queue's small slots (two to a cache line; docs/design.md §11).
pub(crate) const PACKED_STRIDE: u64 = 32;
/// Longest type name stored in the header.
pub const TYPE_NAME_MAX: usize = 256;
/// Producer-table entries: the most producers attached at once.
pub const MAX_PRODUCERS: usize = 32;
/// Most slots a bus may have (the slot's writer tag holds 27 bits of sequence number, and must
/// differ between a slot's consecutive occupants).
pub const MAX_SLOTS: u64 = 1 << 26;
/// Largest segment shmbus creates or opens (64 GiB).
pub const MAX_SEGMENT_BYTES: u64 = 64 << 30;
/// Payload capacities stay below this (a length fits 32 bits with room to spare).
pub(crate) const CAPACITY_LIMIT: u32 = u32::MAX;

/// The largest first sequence of a new bus (docs/design.md §3, "Sequence limits"): the builder
/// refuses a larger one, and so does open.
pub(crate) const FIRST_SEQ_LIMIT: u64 = u64::MAX / 8;

/// No bus sequence at or past this is ever published: a writer gives such a sequence up
/// (counted dropped). It leaves 2^61 sequences after the largest first sequence, and keeps
/// every version (`2s+2`, also of the claims below) clear of the abandoned bit.
pub(crate) const SEQ_LIMIT: u64 = (1 << 62) - 1024;

/// The cursor stays at or below this: each multi-producer writer may take one sequence past
/// [`SEQ_LIMIT`] with its `fetch_add` before it learns that the limit is reached; it gives that
/// one up and takes no more. Open refuses a bus cursor beyond it.
pub(crate) const CURSOR_LIMIT: u64 = SEQ_LIMIT + MAX_PRODUCERS as u64;

pub(crate) const W_MAGIC: usize = 0;
pub(crate) const W_ABI_MODE: usize = 1;
pub(crate) const W_SLOT_COUNT: usize = 2;
pub(crate) const W_STRIDE: usize = 3;
pub(crate) const W_CAPACITY: usize = 4;
pub(crate) const W_TYPE_HASH: usize = 5;
pub(crate) const W_TYPE_SIZE_ALIGN: usize = 6;
pub(crate) const W_FIRST_SEQ: usize = 7;
pub(crate) const W_CREATOR: usize = 8;
pub(crate) const W_CREATOR_START: usize = 9;
pub(crate) const W_CREATED_NS: usize = 10;
pub(crate) const W_SEGMENT_SIZE: usize = 11;
pub(crate) const W_KIND: usize = 12;
/// The wake-up choice (docs/design.md §7, "Wake-up choice"): 0 barrier, 1 fence.
pub(crate) const W_WAKEUP: usize = 13;
// Word 15 and words 144..=255 belong to the segment's kind: board/shape.rs, queue/layout.rs,
// records/layout.rs.
pub(crate) const W_TYPE_NAME: usize = 16;
pub(crate) const W_CURSOR: usize = 128;
pub(crate) const W_WAKE: usize = 136;
pub(crate) const W_WAITERS: usize = 137;
/// The first header word a kind may use as its own (up to the participant table).
pub(crate) const W_KIND_OWN: usize = 144;
pub(crate) const W_PRODUCERS: usize = 256;
pub(crate) const PRODUCER_ENTRY_WORDS: usize = 8;
pub(crate) const PE_PID: usize = 0;
pub(crate) const PE_START: usize = 1;
pub(crate) const PE_LAST_PUBLISH: usize = 2;
pub(crate) const PE_CLAIM: usize = 3;
/// The first entry word a kind may use as its own (the queue's role word).
pub(crate) const PE_KIND_OWN: usize = 4;
pub(crate) const W_SLOTS: usize = HEADER_BYTES / 8;

/// Whether one or several producers may publish at once.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ProducerMode {
    /// One producer at a time, enforced by a lock the kernel releases when it dies.
    Single,
    /// Any number of producers (up to 32 at once), claiming sequence numbers with `fetch_add`.
    Multi,
}

impl ProducerMode {
    pub(crate) fn to_word(self) -> u32 {
        match self {
            ProducerMode::Single => 1,
            ProducerMode::Multi => 2,
        }
    }

    pub(crate) fn from_word(w: u32) -> Option<Self> {
        match w {
            1 => Some(ProducerMode::Single),
            2 => Some(ProducerMode::Multi),
            _ => None,
        }
    }
}

/// What a segment holds. Every kind shares the header's first line, the naming, the open
/// pipeline, the permissions and the producer table; what follows the header is the kind's own.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum SegmentKind {
    /// A broadcast bus: a ring of seqlock slots.
    Bus,
    /// A work queue: a bounded MPMC ring whose items each go to one consumer.
    Queue,
    /// Records: variable-size records broadcast through one byte ring (`crate::records`).
    Records,
    /// Reserved: a board of named values.
    Board,
    /// Lanes: a pool of single-producer byte rings read by one consumer (`crate::lanes`).
    Lanes,
}

impl SegmentKind {
    /// The number stored in the header.
    pub fn to_word(self) -> u32 {
        match self {
            SegmentKind::Bus => 1,
            SegmentKind::Queue => 2,
            SegmentKind::Records => 3,
            SegmentKind::Board => 4,
            SegmentKind::Lanes => 5,
        }
    }

    /// The kind a header number stands for, if any.
    pub fn from_word(w: u32) -> Option<Self> {
        match w {
            1 => Some(SegmentKind::Bus),
            2 => Some(SegmentKind::Queue),
            3 => Some(SegmentKind::Records),
            4 => Some(SegmentKind::Board),
            5 => Some(SegmentKind::Lanes),
            _ => None,
        }
    }

    /// Whether the kind's slots may be packed 32 bytes apart (a queue's small items,
    /// docs/design.md §11) rather than a multiple of 64.
    pub(crate) fn packs_slots(self) -> bool {
        self == SegmentKind::Queue
    }

    /// The kind's name, as messages print it ("a queue, not a bus").
    pub fn name(self) -> &'static str {
        match self {
            SegmentKind::Bus => "bus",
            SegmentKind::Queue => "queue",
            SegmentKind::Records => "records segment",
            SegmentKind::Board => "board",
            SegmentKind::Lanes => "lanes segment",
        }
    }
}

impl std::fmt::Display for SegmentKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// The shape of the ring, read once from a validated header and never re-read from shared memory.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Geometry {
    pub slot_count: u64,
    pub stride_words: usize,
    pub capacity: usize,
}

impl Geometry {
    /// Computes the geometry for a new bus, checking every bound.
    pub(crate) fn new(slot_count: u64, capacity: usize) -> Result<Self, String> {
        Self::with_stride(slot_count, capacity, 64)
    }

    /// The geometry of a new queue: like [`Geometry::new`], but slots whose header and payload
    /// fit 32 bytes (items up to 16 bytes) are packed two to a cache line, as a queue's slots are
    /// touched by one sender and one receiver in turn, never read under a concurrent write
    /// (docs/design.md §11, "Layout").
    pub(crate) fn packed(slot_count: u64, capacity: usize) -> Result<Self, String> {
        let small = (SLOT_HEADER_BYTES + capacity) as u64 <= PACKED_STRIDE;
        Self::with_stride(slot_count, capacity, if small { PACKED_STRIDE } else { 64 })
    }

    fn with_stride(slot_count: u64, capacity: usize, unit: u64) -> Result<Self, String> {
        if slot_count == 0 || !slot_count.is_power_of_two() {
            return Err(format!(
                "slot count must be a power of two, got {slot_count}"
            ));
        }
        if slot_count > MAX_SLOTS {
            return Err(format!(
                "slot count {slot_count} exceeds the limit of {MAX_SLOTS}"
            ));
        }
        if capacity == 0 {
            return Err("payload capacity must be at least 1 byte".into());
        }
        if capacity >= CAPACITY_LIMIT as usize {
            return Err(format!("payload capacity {capacity} is too large"));
        }
        let stride = (SLOT_HEADER_BYTES as u64)
            .checked_add(capacity as u64)
            .and_then(|b| b.checked_next_multiple_of(unit))
            .ok_or_else(|| format!("payload capacity {capacity} is too large"))?;
        let g = Geometry {
            slot_count,
            stride_words: (stride / 8) as usize,
            capacity,
        };
        match g.segment_bytes() {
            Some(size) if size <= MAX_SEGMENT_BYTES => Ok(g),
            _ => Err(format!(
                "{slot_count} slots of {stride} bytes exceed the {MAX_SEGMENT_BYTES}-byte segment limit"
            )),
        }
    }

    pub(crate) fn mask(&self) -> u64 {
        self.slot_count - 1
    }

    pub(crate) fn stride_bytes(&self) -> u64 {
        self.stride_words as u64 * 8
    }

    /// Words of payload a slot holds (capacity rounded up to whole words).
    pub(crate) fn payload_words(&self) -> usize {
        self.capacity.div_ceil(8)
    }

    /// Total segment size, or `None` on overflow.
    pub(crate) fn segment_bytes(&self) -> Option<u64> {
        self.slot_count
            .checked_mul(self.stride_bytes())?
            .checked_add(HEADER_BYTES as u64)
    }

    /// Word index of slot `seq`'s version word.
    #[inline]
    pub(crate) fn slot_word(&self, seq: u64) -> usize {
        W_SLOTS + (seq & self.mask()) as usize * self.stride_words
    }
}

/// The message-type fingerprint stored in the header.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TypeInfo {
    /// The type's name (by default `std::any::type_name`, or set by the user).
    pub name: String,
    /// `size_of` the type (0 for raw byte messages).
    pub size: u32,
    /// `align_of` the type.
    pub align: u32,
}

impl TypeInfo {
    /// The type name of raw byte messages.
    pub const RAW_NAME: &'static str = "bytes";

    /// The fingerprint of raw byte messages.
    pub fn raw() -> Self {
        TypeInfo {
            name: Self::RAW_NAME.into(),
            size: 0,
            align: 1,
        }
    }

    /// Whether this is the raw-bytes fingerprint.
    pub fn is_raw(&self) -> bool {
        self.size == 0 && self.name == Self::RAW_NAME
    }

    /// FNV-1a hash of the name: stable across compilers and processes.
    pub fn name_hash(&self) -> u64 {
        fnv1a(self.name.as_bytes())
    }
}

impl std::fmt::Display for TypeInfo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.is_raw() {
            write!(f, "bytes")
        } else {
            write!(
                f,
                "{} (size {}, align {})",
                self.name, self.size, self.align
            )
        }
    }
}

pub(crate) fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, &b| {
        (h ^ b as u64).wrapping_mul(0x0100_0000_01b3)
    })
}

/// Everything needed to initialise a header.
pub(crate) struct HeaderInit<'a> {
    pub kind: SegmentKind,
    pub geometry: Geometry,
    pub mode: ProducerMode,
    pub ty: &'a TypeInfo,
    pub first_seq: u64,
    pub creator_pid: u32,
    pub creator_start: u64,
    pub created_ns: u64,
    pub wakeup: Wakeup,
}

/// Writes a fresh header into `words` (all zero on entry), magic last with Release.
#[cfg(test)]
pub(crate) fn write_header(words: &[AtomicU64], h: &HeaderInit<'_>) {
    write_fields(words, h);
    publish(words);
}

/// Writes every common header word but the magic.
pub(crate) fn write_fields(words: &[AtomicU64], h: &HeaderInit<'_>) {
    let st = |w: usize, v: u64| words[w].store(v, Ordering::Relaxed);
    let name = truncate_utf8(&h.ty.name, TYPE_NAME_MAX);
    st(
        W_ABI_MODE,
        ABI_VERSION as u64 | (h.mode.to_word() as u64) << 32,
    );
    st(W_SLOT_COUNT, h.geometry.slot_count);
    st(W_STRIDE, h.geometry.stride_bytes());
    st(W_CAPACITY, h.geometry.capacity as u64);
    st(W_TYPE_HASH, h.ty.name_hash());
    st(
        W_TYPE_SIZE_ALIGN,
        h.ty.size as u64 | (h.ty.align as u64) << 32,
    );
    st(W_FIRST_SEQ, h.first_seq);
    st(W_CREATOR, h.creator_pid as u64 | (name.len() as u64) << 32);
    st(W_CREATOR_START, h.creator_start);
    st(W_CREATED_NS, h.created_ns);
    st(W_SEGMENT_SIZE, h.geometry.segment_bytes().unwrap_or(0));
    st(W_KIND, h.kind.to_word() as u64);
    st(W_WAKEUP, h.wakeup.to_word());
    for (i, chunk) in name.as_bytes().chunks(8).enumerate() {
        let mut b = [0u8; 8];
        b[..chunk.len()].copy_from_slice(chunk);
        st(W_TYPE_NAME + i, u64::from_le_bytes(b));
    }
    st(W_CURSOR, h.first_seq);
}

/// Publishes a segment whose header words (common and its kind's own) are written.
pub(crate) fn publish(words: &[AtomicU64]) {
    // ORDERING: pairs with the Acquire load of the magic in `read_header` (and the open
    // pipeline's header step): whoever sees the magic sees every word stored before it, the
    // common fields of `write_fields` and the kind's own words (`Kind::init`).
    words[W_MAGIC].store(MAGIC, Ordering::Release);
}

fn truncate_utf8(s: &str, max: usize) -> &str {
    let mut end = s.len().min(max);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// A header as read (once) from a segment, before or after validation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HeaderSnapshot {
    /// The magic word.
    pub magic: u64,
    /// The ABI version.
    pub abi_version: u32,
    /// Raw producer-mode word (1 single, 2 multi).
    pub mode_word: u32,
    /// Slot count.
    pub slot_count: u64,
    /// Slot stride in bytes.
    pub slot_stride: u64,
    /// Payload capacity in bytes.
    pub capacity: u64,
    /// Type name hash stored.
    pub type_hash: u64,
    /// The message type.
    pub ty: TypeInfo,
    /// The first sequence number of the bus.
    pub first_seq: u64,
    /// Pid of the creating process.
    pub creator_pid: u32,
    /// Start time of the creating process (clock ticks after boot).
    pub creator_start: u64,
    /// Creation time, ns since the Unix epoch.
    pub created_ns: u64,
    /// Segment size recorded at creation.
    pub segment_size: u64,
    /// Raw segment-kind word (1 bus).
    pub kind_word: u32,
    /// The write cursor: next sequence to be claimed.
    pub cursor: u64,
    /// Raw wake-up word (0: sleepers run `membarrier`; 1: producers and sleepers fence; any
    /// other value makes producers fence and sleepers run `membarrier`).
    pub wakeup_word: u64,
}

impl HeaderSnapshot {
    /// The producer mode, if the word is valid.
    pub fn producer_mode(&self) -> Option<ProducerMode> {
        ProducerMode::from_word(self.mode_word)
    }

    /// The wake-up choice (docs/design.md §7), if the word is a known one.
    pub fn wakeup(&self) -> Option<Wakeup> {
        Wakeup::from_word(self.wakeup_word)
    }

    /// The segment kind, if the word is a known one.
    pub fn kind(&self) -> Option<SegmentKind> {
        SegmentKind::from_word(self.kind_word)
    }

    /// Messages published (claimed) since creation.
    pub fn published(&self) -> u64 {
        self.cursor.wrapping_sub(self.first_seq)
    }
}

/// Reads every header field once. `words` must hold at least the header; they may be a
/// read-only mapping.
pub(crate) fn read_header(words: &[AtomicU64]) -> HeaderSnapshot {
    // ORDERING: pairs with the Release store of the magic in `write_header`: whoever sees the
    // magic sees every field written before it. A fence-based Acquire: sound on read-only maps.
    let magic = load_acquire(&words[W_MAGIC]);
    header_from(magic, |w| words[w].load(Ordering::Relaxed))
}

/// Decodes a header from a private copy of its bytes (as `read(2)` returns them); words past the
/// end of `bytes` read as zero.
pub(crate) fn header_from_bytes(bytes: &[u8]) -> HeaderSnapshot {
    let ld = |w: usize| {
        let mut b = [0u8; 8];
        let chunk = bytes.get(w * 8..).unwrap_or(&[]);
        let n = chunk.len().min(8);
        b[..n].copy_from_slice(&chunk[..n]);
        u64::from_le_bytes(b)
    };
    header_from(ld(W_MAGIC), ld)
}

fn header_from(magic: u64, ld: impl Fn(usize) -> u64) -> HeaderSnapshot {
    let abi_mode = ld(W_ABI_MODE);
    let size_align = ld(W_TYPE_SIZE_ALIGN);
    let creator = ld(W_CREATOR);
    let name_len = ((creator >> 32) as usize).min(TYPE_NAME_MAX);
    let mut name = Vec::with_capacity(name_len);
    for i in 0..name_len.div_ceil(8) {
        name.extend_from_slice(&ld(W_TYPE_NAME + i).to_le_bytes());
    }
    name.truncate(name_len);
    HeaderSnapshot {
        magic,
        abi_version: abi_mode as u32,
        mode_word: (abi_mode >> 32) as u32,
        slot_count: ld(W_SLOT_COUNT),
        slot_stride: ld(W_STRIDE),
        capacity: ld(W_CAPACITY),
        type_hash: ld(W_TYPE_HASH),
        ty: TypeInfo {
            name: String::from_utf8_lossy(&name).into_owned(),
            size: size_align as u32,
            align: (size_align >> 32) as u32,
        },
        first_seq: ld(W_FIRST_SEQ),
        creator_pid: creator as u32,
        creator_start: ld(W_CREATOR_START),
        created_ns: ld(W_CREATED_NS),
        segment_size: ld(W_SEGMENT_SIZE),
        kind_word: ld(W_KIND) as u32,
        cursor: ld(W_CURSOR),
        wakeup_word: ld(W_WAKEUP),
    }
}

/// How a segment's producers and sleepers agree that no wake-up is lost (docs/design.md §7,
/// "Wake-up choice"). Chosen when the segment is created (`BusBuilder::wakeup`), stored in its
/// header, and followed by every process that attaches.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Wakeup {
    /// Publishing costs a compiler fence and one load of the waiter flag; each sleep runs
    /// `membarrier(MEMBARRIER_CMD_GLOBAL_EXPEDITED)`, which interrupts every CPU that is running
    /// a thread of any producer process on the host at that moment. The default: the fastest
    /// publish, for hosts where sleeps are rare or nothing else is latency-critical.
    #[default]
    Barrier,
    /// Every publish runs a full fence (a locked instruction); sleepers run a fence too and no
    /// system-wide barrier, so a sleeping subscriber never interrupts other processes' CPUs.
    /// For hosts where other latency-critical processes share the CPUs, or subscribers sleep
    /// often.
    Fence,
}

impl Wakeup {
    pub(crate) fn to_word(self) -> u64 {
        match self {
            Wakeup::Barrier => 0,
            Wakeup::Fence => 1,
        }
    }

    /// The choice a header word names, if it is one. Whatever the word, producers fence unless
    /// it is 0 and sleepers skip `membarrier` only if it is 1 (`SysFutex::of`,
    /// `producer_fences`): a forged word can cost speed, never a lost wake-up.
    pub(crate) fn from_word(w: u64) -> Option<Wakeup> {
        match w {
            0 => Some(Wakeup::Barrier),
            1 => Some(Wakeup::Fence),
            _ => None,
        }
    }
}
