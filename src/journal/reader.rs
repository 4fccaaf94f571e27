//! Reading a journal: the header checks, the entry iterator and the follower
//! (docs/design.md §13). Every offset is checked against the mapping before it is read, and the
//! mapping never extends past the file size seen just before mapping.

use std::fs::{File, OpenOptions};
use std::os::unix::fs::{FileExt, FileTypeExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use memmap2::{MmapOptions, MmapRaw};
use nix::fcntl::{Flock, FlockArg};

use super::format::{
    checksum, entry_bytes, halves, JournalShape, Marker, ENTRY_CHECKSUM, ENTRY_HEADER_BYTES,
    HEADER_BYTES, MAGIC, OFF_ALIGN_NAMELEN, OFF_CAPACITY, OFF_CREATED, OFF_MAGIC, OFF_MODE_SIZE,
    OFF_SLOTS, OFF_STATE, OFF_TYPE_NAME, OFF_VERSION, STATE_CLOSED, STATE_RECORDING, VERSION,
};
use super::map::Words;
use super::{io_error, Entry};
use crate::error::{Error, Result};
use crate::segment::header::{ProducerMode, TypeInfo, TYPE_NAME_MAX};

/// What a journal's header says.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct JournalInfo {
    /// The journal format version.
    pub version: u32,
    /// The recorded bus's shape and message type.
    pub shape: JournalShape,
    /// When the journal was created, in ns since the Unix epoch.
    pub created_ns: u64,
}

/// A journal file opened for reading: its header checked, its entries read on demand.
///
/// A journal that its recorder is still writing can be read too: [`Journal::entries`] reads what
/// is committed when it gets there, and [`Journal::follow`] waits for more, like `tail -f`.
pub struct Journal {
    path: PathBuf,
    file: File,
    map: MmapRaw,
    info: JournalInfo,
}

impl std::fmt::Debug for Journal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Journal")
            .field("path", &self.path)
            .field("info", &self.info)
            .finish()
    }
}

/// What a whole pass over a journal found (see [`Journal::summary`]).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Summary {
    /// Message entries.
    pub messages: u64,
    /// Loss entries.
    pub loss_entries: u64,
    /// Sequence numbers the loss entries cover.
    pub lost: u64,
    /// Payload bytes of all messages.
    pub payload_bytes: u64,
    /// Sequence number of the first message, if any.
    pub first_seq: Option<u64>,
    /// Sequence number of the last message, if any.
    pub last_seq: Option<u64>,
    /// Receive time of the first message (ns since the Unix epoch), if any.
    pub first_ts_ns: Option<u64>,
    /// Receive time of the last message (ns since the Unix epoch), if any.
    pub last_ts_ns: Option<u64>,
    /// Byte offset just past the last complete entry.
    pub end: u64,
    /// Size of the file.
    pub file_bytes: u64,
    /// Bytes after the last complete entry that an entry's writer had started but not committed:
    /// 0 for a journal closed cleanly; non-zero after a recorder died mid-entry (or while one is
    /// writing). They are never read as an entry.
    pub torn_tail_bytes: u64,
}

fn corrupt(path: &Path, offset: u64, reason: impl Into<String>) -> Error {
    Error::CorruptJournal {
        path: path.to_path_buf(),
        offset,
        reason: reason.into(),
    }
}

fn not_a_journal(path: &Path, reason: impl Into<String>) -> Error {
    Error::NotAJournal {
        path: path.to_path_buf(),
        reason: reason.into(),
    }
}

fn file_kind(t: std::fs::FileType) -> &'static str {
    if t.is_dir() {
        "a directory"
    } else if t.is_fifo() {
        "a FIFO"
    } else if t.is_socket() {
        "a socket"
    } else if t.is_char_device() || t.is_block_device() {
        "a device"
    } else {
        "not a regular file"
    }
}

impl Journal {
    /// Opens a journal for reading and checks its header. A file that is not a journal, a
    /// journal of another format version and a damaged one are each their own error.
    ///
    /// # Errors
    ///
    /// [`Error::JournalIo`] if the file cannot be opened, `fstat`ed or mapped (a missing file among
    /// them); [`Error::NotAJournal`] for anything but a regular file, or a file without the journal
    /// magic; [`Error::JournalVersion`] for another format version; [`Error::CorruptJournal`] for a
    /// truncated, incomplete or inconsistent header.
    pub fn open(path: impl AsRef<Path>) -> Result<Journal> {
        let path = path.as_ref().to_path_buf();
        // Non-blocking: opening a FIFO planted at the path must not wait for a writer.
        let file = OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NONBLOCK | libc::O_CLOEXEC)
            .open(&path)
            .map_err(|e| io_error(&path, "open", e))?;
        let meta = file.metadata().map_err(|e| io_error(&path, "fstat", e))?;
        if !meta.file_type().is_file() {
            return Err(not_a_journal(
                &path,
                format!("it is {}", file_kind(meta.file_type())),
            ));
        }
        let size = meta.len();
        if size < HEADER_BYTES {
            let mut first = [0u8; 8];
            let got = file.read_at(&mut first, 0).unwrap_or(0);
            return Err(if got == 8 && u64::from_le_bytes(first) == MAGIC {
                corrupt(
                    &path,
                    size,
                    format!(
                        "the file is {size} bytes, shorter than its {HEADER_BYTES}-byte header"
                    ),
                )
            } else {
                not_a_journal(
                    &path,
                    format!("it is {size} bytes, shorter than a journal header"),
                )
            });
        }
        let map = map_read_only(&path, &file, size)?;
        let info = read_header(&path, Words::new(&map))?;
        Ok(Journal {
            path,
            file,
            map,
            info,
        })
    }

    /// The journal's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// What the header says.
    pub fn info(&self) -> &JournalInfo {
        &self.info
    }

    /// Whether the recorder finished and closed the journal (no more entries will come).
    pub fn is_closed(&self) -> bool {
        // ORDERING: Acquire, paired with the writer's Release store of the state on drop: having
        // seen "closed", a reader sees every entry committed before it (docs/design.md §13).
        self.words().load_acquire(OFF_STATE) == Some(STATE_CLOSED)
    }

    /// Whether a process holds the journal open for appending (the writer's `flock`): `false`
    /// after its recorder finished or died.
    pub fn recorder_alive(&self) -> bool {
        let Ok(dup) = self.file.try_clone() else {
            return false;
        };
        match Flock::lock(dup, FlockArg::LockSharedNonblock) {
            // Dropping the probe's lock releases it: this reader held none before.
            Ok(_probe) => false,
            Err((_, errno)) => errno == nix::errno::Errno::EWOULDBLOCK,
        }
    }

    /// Size of the file as last seen by this reader.
    pub fn file_bytes(&self) -> u64 {
        self.map.len() as u64
    }

    /// The committed entries from the first on. Ends at the first entry not (yet) committed; an
    /// inconsistent entry, or one whose checksum does not match its contents (damaged, e.g. by
    /// a power loss before it was synced), is an [`Error::CorruptJournal`] item, after which the
    /// iterator ends: a damaged entry is never returned.
    pub fn entries(&mut self) -> Entries<'_> {
        Entries {
            journal: self,
            off: HEADER_BYTES,
            done: false,
        }
    }

    /// A follower that reads the committed entries from the first on and then waits for new
    /// ones, like `tail -f`.
    pub fn follow(self) -> Follower {
        Follower {
            journal: self,
            off: HEADER_BYTES,
        }
    }

    /// Reads every committed entry and what follows the last one.
    ///
    /// # Errors
    ///
    /// [`Error::CorruptJournal`] at an inconsistent or damaged entry (checksum mismatch);
    /// [`Error::JournalIo`] if re-mapping the grown file fails.
    pub fn summary(&mut self) -> Result<Summary> {
        let mut s = Summary::default();
        let mut off = HEADER_BYTES;
        while let Some((entry, next)) = self.read_entry(off)? {
            match entry {
                Entry::Message { seq, ts_ns, bytes } => {
                    s.messages += 1;
                    s.payload_bytes += bytes.len() as u64;
                    s.first_seq.get_or_insert(seq);
                    s.first_ts_ns.get_or_insert(ts_ns);
                    s.last_seq = Some(seq);
                    s.last_ts_ns = Some(ts_ns);
                }
                Entry::Lost { count, .. } => {
                    s.loss_entries += 1;
                    s.lost = s.lost.saturating_add(count);
                }
            }
            off = next;
        }
        s.end = off;
        s.file_bytes = self.file_bytes();
        s.torn_tail_bytes = self.torn_tail(off);
        Ok(s)
    }

    /// Bytes after `end` (the end of the committed entries) up to the last non-zero word within
    /// one largest entry: what a writer stored before it could commit.
    fn torn_tail(&self, end: u64) -> u64 {
        let w = self.words();
        let window = entry_bytes(self.info.shape.capacity);
        let limit = end.saturating_add(window).min(w.len());
        let mut torn = 0;
        let mut off = end;
        while off + 8 <= limit {
            if w.load(off).is_some_and(|v| v != 0) {
                torn = off + 8 - end;
            }
            off += 8;
        }
        torn
    }

    fn words(&self) -> Words<'_> {
        Words::new(&self.map)
    }

    /// Maps the file again if it grew since it was mapped; says whether it did.
    fn refresh(&mut self) -> Result<bool> {
        let size = self
            .file
            .metadata()
            .map_err(|e| io_error(&self.path, "fstat", e))?
            .len();
        if size <= self.map.len() as u64 {
            return Ok(false);
        }
        self.map = map_read_only(&self.path, &self.file, size)?;
        Ok(true)
    }

    /// Reads the entry at `off`: `None` at the end of the committed entries, else the entry and
    /// the offset of the next one.
    fn read_entry(&mut self, off: u64) -> Result<Option<(Entry, u64)>> {
        if self.words().word(off).is_none()
            && !(self.refresh()? && self.words().word(off).is_some())
        {
            return Ok(None);
        }
        // ORDERING: Acquire, paired with the writer's Release store of this marker (its commit):
        // the entry's words stored before the marker are visible below (docs/design.md §13).
        let word = self.words().load_acquire(off).unwrap_or(0);
        if word == 0 {
            return Ok(None);
        }
        let capacity = self.info.shape.capacity;
        let marker = Marker::decode(word, capacity).map_err(|r| corrupt(&self.path, off, r))?;
        let next = off + marker.entry_bytes();
        if next > self.words().len() && !(self.refresh()? && next <= self.words().len()) {
            return Err(corrupt(
                &self.path,
                off,
                format!(
                    "an entry of {} bytes runs past the end of the file ({} bytes)",
                    marker.entry_bytes(),
                    self.words().len()
                ),
            ));
        }
        let w = self.words();
        let missing = || corrupt(&self.path, off, "entry words outside the mapping");
        let a = w.load(off + 8).ok_or_else(missing)?;
        let b = w.load(off + 16).ok_or_else(missing)?;
        let stored = w.load(off + ENTRY_CHECKSUM).ok_or_else(missing)?;
        let mut bytes = Vec::new();
        if let Marker::Message { len } = marker {
            w.copy(off + ENTRY_HEADER_BYTES, len as usize, &mut bytes)
                .ok_or_else(missing)?;
        }
        let computed = checksum(word, a, b, &bytes);
        if stored != computed {
            return Err(corrupt(
                &self.path,
                off,
                format!(
                    "checksum mismatch: the entry's checksum word is {stored:#010x}, its \
                     contents sum to {computed:#010x} (damaged, e.g. pages lost in a power \
                     failure; see docs/design.md §13)"
                ),
            ));
        }
        let entry = match marker {
            Marker::Message { .. } => Entry::Message {
                seq: a,
                ts_ns: b,
                bytes,
            },
            Marker::Lost => {
                if b == 0 || a.checked_add(b).is_none() {
                    return Err(corrupt(
                        &self.path,
                        off,
                        format!("a loss of {b} messages from sequence {a} is impossible"),
                    ));
                }
                Entry::Lost { first: a, count: b }
            }
        };
        Ok(Some((entry, next)))
    }
}

/// Maps `size` bytes of `file` read-only; `size` was just read from the file itself, so every
/// mapped page is backed unless another process truncates the file (docs/design.md §13).
fn map_read_only(path: &Path, file: &File, size: u64) -> Result<MmapRaw> {
    let len = usize::try_from(size).map_err(|_| {
        corrupt(
            path,
            0,
            format!("the file is {size} bytes, too large to map"),
        )
    })?;
    MmapOptions::new()
        .len(len)
        .map_raw_read_only(file)
        .map_err(|e| io_error(path, "mmap", e))
}

fn read_header(path: &Path, w: Words<'_>) -> Result<JournalInfo> {
    let word = |off: u64| {
        w.load(off)
            .ok_or_else(|| corrupt(path, off, "header word outside the file"))
    };
    // ORDERING: Acquire, paired with the creator's Release store of the magic, stored after
    // every other header field (docs/design.md §13).
    let magic = w
        .load_acquire(OFF_MAGIC)
        .ok_or_else(|| corrupt(path, 0, "no header"))?;
    if magic == 0 {
        return Err(corrupt(
            path,
            0,
            "the header is incomplete (its creator stopped before writing the magic)",
        ));
    }
    if magic != MAGIC {
        return Err(not_a_journal(
            path,
            format!(
                "its first 8 bytes are {:#018x}, not the journal magic",
                magic
            ),
        ));
    }
    let (version, header_bytes) = halves(word(OFF_VERSION)?);
    if version != VERSION {
        return Err(Error::JournalVersion {
            path: path.to_path_buf(),
            found: version,
            expected: VERSION,
        });
    }
    if header_bytes as u64 != HEADER_BYTES {
        return Err(corrupt(
            path,
            OFF_VERSION + 4,
            format!("header size {header_bytes}, expected {HEADER_BYTES}"),
        ));
    }
    let slots = word(OFF_SLOTS)?;
    let capacity = word(OFF_CAPACITY)?;
    let (mode_word, size) = halves(word(OFF_MODE_SIZE)?);
    let (align, name_len) = halves(word(OFF_ALIGN_NAMELEN)?);
    let created_ns = word(OFF_CREATED)?;
    let state = word(OFF_STATE)?;
    let mode = ProducerMode::from_word(mode_word).ok_or_else(|| {
        corrupt(
            path,
            OFF_MODE_SIZE,
            format!("producer mode {mode_word} is neither 1 (single) nor 2 (multi)"),
        )
    })?;
    if state != STATE_RECORDING && state != STATE_CLOSED {
        return Err(corrupt(
            path,
            OFF_STATE,
            format!("state {state} is neither 1 (recording) nor 2 (closed)"),
        ));
    }
    if name_len as usize > TYPE_NAME_MAX {
        return Err(corrupt(
            path,
            OFF_ALIGN_NAMELEN + 4,
            format!("type name length {name_len} exceeds {TYPE_NAME_MAX}"),
        ));
    }
    let mut name = Vec::new();
    w.copy(OFF_TYPE_NAME, name_len as usize, &mut name)
        .ok_or_else(|| corrupt(path, OFF_TYPE_NAME, "type name outside the file"))?;
    let name = String::from_utf8(name)
        .map_err(|_| corrupt(path, OFF_TYPE_NAME, "the type name is not UTF-8"))?;
    let shape = JournalShape {
        slots,
        capacity,
        mode,
        message_type: TypeInfo { name, size, align },
    };
    shape
        .check()
        .map_err(|reason| corrupt(path, OFF_SLOTS, reason))?;
    Ok(JournalInfo {
        version,
        shape,
        created_ns,
    })
}

/// The committed entries of a journal, in order (see [`Journal::entries`]).
pub struct Entries<'a> {
    journal: &'a mut Journal,
    off: u64,
    done: bool,
}

impl Entries<'_> {
    /// Byte offset of the next entry to read.
    pub fn offset(&self) -> u64 {
        self.off
    }
}

impl Iterator for Entries<'_> {
    type Item = Result<Entry>;

    fn next(&mut self) -> Option<Result<Entry>> {
        if self.done {
            return None;
        }
        match self.journal.read_entry(self.off) {
            Ok(Some((entry, next))) => {
                self.off = next;
                Some(Ok(entry))
            }
            Ok(None) => {
                self.done = true;
                None
            }
            Err(e) => {
                self.done = true;
                Some(Err(e))
            }
        }
    }
}

/// Reads a journal's entries as its recorder commits them (see [`Journal::follow`]).
#[derive(Debug)]
pub struct Follower {
    journal: Journal,
    off: u64,
}

impl Follower {
    /// The next committed entry, or `None` if there is none yet (poll again later). An
    /// inconsistent or damaged entry is an error, and stays one.
    ///
    /// # Errors
    ///
    /// [`Error::CorruptJournal`] at an inconsistent entry or one whose checksum does not match; [`Error::JournalIo`] if re-mapping the
    /// grown file fails.
    pub fn poll(&mut self) -> Result<Option<Entry>> {
        match self.journal.read_entry(self.off)? {
            Some((entry, next)) => {
                self.off = next;
                Ok(Some(entry))
            }
            None => Ok(None),
        }
    }

    /// The journal being followed (its header, whether its recorder is alive or closed it).
    pub fn journal(&self) -> &Journal {
        &self.journal
    }
}
