//! The appender: creates a journal file and appends committed entries to it
//! (docs/design.md §13).

use std::fs::{File, OpenOptions};
use std::os::fd::AsRawFd;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use memmap2::{MmapOptions, MmapRaw};
use nix::fcntl::{Flock, FlockArg};

use super::format::{
    checksum, entry_bytes, join, JournalShape, Marker, ENTRY_CHECKSUM, ENTRY_HEADER_BYTES,
    HEADER_BYTES, MAGIC, OFF_ALIGN_NAMELEN, OFF_CAPACITY, OFF_CREATED, OFF_MAGIC, OFF_MODE_SIZE,
    OFF_SLOTS, OFF_STATE, OFF_TYPE_NAME, OFF_VERSION, STATE_CLOSED, STATE_RECORDING, VERSION,
};
use super::map::Words;
use super::{io_error, Journal};
use crate::error::{Error, Result};

/// Default growth step of a journal file: the first chunk, and the least it grows by.
pub const DEFAULT_CHUNK_BYTES: u64 = 1 << 20;

/// The most a journal grows by at once: growth doubles the file up to this step.
const MAX_GROWTH_STEP: u64 = 64 << 20;

/// The period of [`SyncPolicy::Interval`] when none is given: `shmbus record`'s default.
pub const DEFAULT_SYNC_INTERVAL: Duration = Duration::from_secs(1);

/// When a [`JournalWriter`] writes its committed entries to the disk (`msync`), which decides
/// what survives a power loss or a kernel crash (docs/design.md §13). A killed recorder process
/// loses nothing committed under any policy: the entries are in the page cache, which the
/// kernel writes back on its own.
///
/// Whatever the policy, creating a journal syncs its header and its directory entry, and
/// [`JournalWriter::finish`] syncs everything (after it marks the journal closed).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum SyncPolicy {
    /// No sync while appending: entries reach the disk when the kernel writes the pages back
    /// (on Linux typically within `vm.dirty_expire_centisecs`, 30 s), or at
    /// [`JournalWriter::finish`]. The fastest; a power loss can lose any unsynced entry, and
    /// leave one damaged entry that reads as a checksum error. The library's default.
    #[default]
    None,
    /// A sync when an entry is appended (or [`JournalWriter::sync_if_due`] is called) at least
    /// this long after the previous sync: a power loss loses at most about one period of
    /// entries, provided the writer's owner calls one of them that often. `shmbus record`'s
    /// default, with [`DEFAULT_SYNC_INTERVAL`].
    Interval(Duration),
    /// A sync after every entry, before `append_*` returns: an entry whose append returned `Ok`
    /// survives a power loss. One `msync` per entry: as slow as the disk's flush.
    Every,
}

impl FromStr for SyncPolicy {
    type Err = String;

    /// `none`, `every`, or `interval` ([`DEFAULT_SYNC_INTERVAL`]).
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s {
            "none" => Ok(SyncPolicy::None),
            "interval" => Ok(SyncPolicy::Interval(DEFAULT_SYNC_INTERVAL)),
            "every" => Ok(SyncPolicy::Every),
            s => Err(format!("expected none, interval or every, got {s:?}")),
        }
    }
}

impl std::fmt::Display for SyncPolicy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SyncPolicy::None => f.write_str("none"),
            SyncPolicy::Interval(p) => write!(f, "interval ({p:?})"),
            SyncPolicy::Every => f.write_str("every"),
        }
    }
}

/// How [`Journal::create_with`] creates a journal: its growth step and its [`SyncPolicy`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct JournalOptions {
    chunk_bytes: u64,
    sync: SyncPolicy,
}

impl Default for JournalOptions {
    fn default() -> Self {
        JournalOptions::new()
    }
}

impl JournalOptions {
    /// Growth in steps of [`DEFAULT_CHUNK_BYTES`] and more; [`SyncPolicy::None`].
    pub const fn new() -> Self {
        JournalOptions {
            chunk_bytes: DEFAULT_CHUNK_BYTES,
            sync: SyncPolicy::None,
        }
    }

    /// The first chunk and smallest growth step (rounded up to 4096 bytes, at most 64 MiB).
    pub const fn chunk_bytes(mut self, bytes: u64) -> Self {
        self.chunk_bytes = bytes;
        self
    }

    /// When committed entries are synced to the disk.
    pub const fn sync(mut self, policy: SyncPolicy) -> Self {
        self.sync = policy;
        self
    }
}

/// Appends entries to a journal it created; the only writer of that file (it holds an exclusive
/// `flock` on it for its lifetime, which also tells readers that a recorder is alive).
///
/// Each entry is committed by its marker word, stored last with Release: a process killed at any
/// instant leaves a journal that reads cleanly up to its last committed entry. What survives a
/// power loss is set by its [`SyncPolicy`]; each entry's checksum makes an entry damaged by one
/// a typed error on reading, never a message with wrong bytes.
pub struct JournalWriter {
    path: PathBuf,
    file: Flock<File>,
    map: MmapRaw,
    /// Where the next entry goes; the marker word there is still 0.
    end: u64,
    capacity: u64,
    chunk: u64,
    entries: u64,
    sync: SyncPolicy,
    /// Every entry before this offset has been synced.
    synced: u64,
    /// When the last sync (or the creation) was.
    last_sync: Instant,
    /// Syncs of entries so far (not the creation's).
    syncs: u64,
    /// `finish` ran: `Drop` has nothing left to do.
    finished: bool,
}

impl std::fmt::Debug for JournalWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JournalWriter")
            .field("path", &self.path)
            .field("end", &self.end)
            .field("entries", &self.entries)
            .field("sync", &self.sync)
            .field("synced", &self.synced)
            .finish()
    }
}

impl Journal {
    /// Creates a new journal file at `path` (mode 0600; an existing file or symbolic link there
    /// is an error, never overwritten) for messages of a bus of `shape`, growing in steps of
    /// [`DEFAULT_CHUNK_BYTES`] and more.
    ///
    /// # Errors
    ///
    /// Those of [`Journal::create_with_chunk`].
    pub fn create(path: impl AsRef<Path>, shape: &JournalShape) -> Result<JournalWriter> {
        Journal::create_with_chunk(path, shape, DEFAULT_CHUNK_BYTES)
    }

    /// [`Journal::create`] with the first chunk and smallest growth step `chunk_bytes` (rounded
    /// up to 4096 bytes).
    ///
    /// # Errors
    ///
    /// Those of [`Journal::create_with`].
    pub fn create_with_chunk(
        path: impl AsRef<Path>,
        shape: &JournalShape,
        chunk_bytes: u64,
    ) -> Result<JournalWriter> {
        Journal::create_with(path, shape, &JournalOptions::new().chunk_bytes(chunk_bytes))
    }

    /// [`Journal::create`] with `options`: the growth step and the [`SyncPolicy`]. Before it
    /// returns, the header and the file's directory entry are synced (`fsync` of the file, then
    /// of its directory), so a journal that was created exists, with its header, after a crash.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidConfig`] if `shape` is inconsistent; [`Error::JournalIo`] if the file cannot
    /// be created (one exists at `path`, or a symbolic link; a missing directory; no permission),
    /// locked, sized (`posix_fallocate` when the file system is full), mapped or synced (`fsync`
    /// of the file or of its directory).
    pub fn create_with(
        path: impl AsRef<Path>,
        shape: &JournalShape,
        options: &JournalOptions,
    ) -> Result<JournalWriter> {
        let path = path.as_ref().to_path_buf();
        shape
            .check()
            .map_err(|reason| Error::InvalidConfig(format!("journal shape: {reason}")))?;
        let chunk = options
            .chunk_bytes
            .clamp(4096, MAX_GROWTH_STEP)
            .next_multiple_of(4096);
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .mode(0o600)
            .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
            .open(&path)
            .map_err(|e| io_error(&path, "create", e))?;
        let file = Flock::lock(file, FlockArg::LockExclusiveNonblock)
            .map_err(|(_, errno)| io_error(&path, "flock", errno.into()))?;
        let initial = HEADER_BYTES + chunk;
        let map = grow_file(&path, &file, 0, initial)?;
        let mut w = JournalWriter {
            path,
            file,
            map,
            end: HEADER_BYTES,
            capacity: shape.capacity,
            chunk,
            entries: 0,
            sync: options.sync,
            synced: HEADER_BYTES,
            last_sync: Instant::now(),
            syncs: 0,
            finished: false,
        };
        w.write_header(shape);
        // The header (written through the mapping) and the size, then the name in the directory:
        // without the second, a power loss can leave no file at all (docs/design.md §13).
        w.file
            .sync_all()
            .map_err(|e| io_error(&w.path, "fsync", e))?;
        sync_directory_of(&w.path)?;
        w.last_sync = Instant::now();
        Ok(w)
    }
}

/// `fsync`s the directory holding `path`, so that the entry naming the file is on the disk.
fn sync_directory_of(path: &Path) -> Result<()> {
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let d = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_DIRECTORY | libc::O_CLOEXEC)
        .open(dir)
        .map_err(|e| io_error(dir, "open directory", e))?;
    match d.sync_all() {
        // A file system that cannot sync directories (EINVAL) has nothing to sync there.
        Err(e) if e.raw_os_error() == Some(libc::EINVAL) => Ok(()),
        r => r.map_err(|e| io_error(dir, "fsync directory", e)),
    }
}

/// Extends `file` from `old` to `new` bytes (zero-filled: every marker past the end is 0), with
/// its blocks allocated now, so a full file system is an error here rather than a SIGBUS on a
/// later store; then maps all of it.
fn grow_file(path: &Path, file: &File, old: u64, new: u64) -> Result<MmapRaw> {
    file.set_len(new)
        .map_err(|e| io_error(path, "ftruncate", e))?;
    let (start, len) = (old as libc::off_t, (new - old) as libc::off_t);
    nix::fcntl::posix_fallocate(file.as_raw_fd(), start, len)
        .map_err(|errno| io_error(path, "posix_fallocate", errno.into()))?;
    MmapOptions::new()
        .len(new as usize)
        .map_raw(file)
        .map_err(|e| io_error(path, "mmap", e))
}

impl JournalWriter {
    fn words(&self) -> Words<'_> {
        Words::new(&self.map)
    }

    fn store(&self, off: u64, v: u64) {
        self.words().store(off, v).expect(
            "the writer stores only inside its mapping: every offset is checked by reserve",
        );
    }

    fn write_header(&mut self, shape: &JournalShape) {
        let ty = &shape.message_type;
        let name = ty.name.as_bytes();
        let created = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
        self.store(OFF_VERSION, join(VERSION, HEADER_BYTES as u32));
        self.store(OFF_SLOTS, shape.slots);
        self.store(OFF_CAPACITY, shape.capacity);
        self.store(OFF_MODE_SIZE, join(shape.mode.to_word(), ty.size));
        self.store(OFF_ALIGN_NAMELEN, join(ty.align, name.len() as u32));
        self.store(OFF_CREATED, created);
        self.store(OFF_STATE, STATE_RECORDING);
        for (i, chunk) in name.chunks(8).enumerate() {
            self.store(OFF_TYPE_NAME + 8 * i as u64, word_of(chunk));
        }
        // ORDERING: Release, paired with the reader's Acquire load of the magic (`Journal::open`):
        // a reader that sees the magic sees every header field above (docs/design.md §13).
        self.words()
            .store_release(OFF_MAGIC, MAGIC)
            .expect("the header is inside the first mapping");
    }

    /// The file being written.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Entries appended so far by this writer.
    pub fn entries(&self) -> u64 {
        self.entries
    }

    /// Bytes of the file in use (header and committed entries).
    pub fn len(&self) -> u64 {
        self.end
    }

    /// Whether no entry has been appended yet.
    pub fn is_empty(&self) -> bool {
        self.entries == 0
    }

    /// The sync policy.
    pub fn sync_policy(&self) -> SyncPolicy {
        self.sync
    }

    /// Bytes of the file known to be on the disk: every entry before this offset was synced.
    pub fn synced_len(&self) -> u64 {
        self.synced
    }

    /// How many times this writer has synced entries (by its policy, [`JournalWriter::flush`] or
    /// [`JournalWriter::sync_if_due`]; not the creation's sync).
    pub fn syncs(&self) -> u64 {
        self.syncs
    }

    /// Appends message `seq`, received at `ts_ns`, with payload `bytes` (at most the recorded
    /// bus's capacity), then syncs if the [`SyncPolicy`] says so.
    ///
    /// # Errors
    ///
    /// [`Error::MessageTooLarge`] if `bytes` is longer than the bus's capacity;
    /// [`Error::JournalIo`] if growing the file fails (`ftruncate`, `posix_fallocate` when the file
    /// system is full, `mmap`), or the policy's sync fails (`msync`): the entry is then committed
    /// (readers see it) but not known to be on the disk.
    pub fn append_message(&mut self, seq: u64, ts_ns: u64, bytes: &[u8]) -> Result<()> {
        if bytes.len() as u64 > self.capacity {
            return Err(Error::MessageTooLarge {
                len: bytes.len(),
                capacity: self.capacity as usize,
            });
        }
        let at = self.reserve(entry_bytes(bytes.len() as u64))?;
        let marker = Marker::Message {
            len: bytes.len() as u32,
        };
        self.store(at + 8, seq);
        self.store(at + 16, ts_ns);
        self.store(
            at + ENTRY_CHECKSUM,
            checksum(marker.encode(), seq, ts_ns, bytes),
        );
        for (i, chunk) in bytes.chunks(8).enumerate() {
            self.store(at + ENTRY_HEADER_BYTES + 8 * i as u64, word_of(chunk));
        }
        self.commit(at, marker);
        self.sync_by_policy()
    }

    /// Appends a loss: `count` sequence numbers from `first` on were never received.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidConfig`] if `count` is 0 or `first + count` overflows; [`Error::JournalIo`]
    /// if growing the file fails (`ftruncate`, `posix_fallocate` when the file system is full,
    /// `mmap`), or the policy's sync fails (the entry is committed, as for `append_message`).
    pub fn append_loss(&mut self, first: u64, count: u64) -> Result<()> {
        if count == 0 || first.checked_add(count).is_none() {
            return Err(Error::InvalidConfig(format!(
                "a loss of {count} messages from sequence {first} cannot be recorded"
            )));
        }
        let at = self.reserve(ENTRY_HEADER_BYTES)?;
        self.store(at + 8, first);
        self.store(at + 16, count);
        self.store(
            at + ENTRY_CHECKSUM,
            checksum(Marker::Lost.encode(), first, count, &[]),
        );
        self.commit(at, Marker::Lost);
        self.sync_by_policy()
    }

    /// Makes room for an entry of `bytes` at the end, growing the file if needed; returns its
    /// offset.
    fn reserve(&mut self, bytes: u64) -> Result<u64> {
        let at = self.end;
        let need = at + bytes;
        let len = self.map.len() as u64;
        if need > len {
            let step = len.clamp(self.chunk, MAX_GROWTH_STEP);
            let new = (len + step).max(need.next_multiple_of(4096));
            // The old mapping stays valid until the new one replaces it; entries already written
            // are in the file, not in the mapping.
            self.map = grow_file(&self.path, &self.file, len, new)?;
        }
        Ok(at)
    }

    /// Stores the marker of the entry at `at`, last: the commit.
    fn commit(&mut self, at: u64, marker: Marker) {
        // ORDERING: Release, paired with the reader's Acquire load of this marker
        // (`Words::load_acquire` in the reader): a reader that sees the marker sees the entry's
        // words stored above (docs/design.md §13).
        self.words()
            .store_release(at, marker.encode())
            .expect("reserve made room for the whole entry");
        self.end = at + marker.entry_bytes();
        self.entries += 1;
    }

    /// Syncs after a commit if the policy says so.
    fn sync_by_policy(&mut self) -> Result<()> {
        match self.sync {
            SyncPolicy::None => Ok(()),
            SyncPolicy::Every => self.flush(),
            SyncPolicy::Interval(period) => self.sync_if_due_after(period).map(drop),
        }
    }

    fn sync_if_due_after(&mut self, period: Duration) -> Result<bool> {
        if self.synced == self.end || self.last_sync.elapsed() < period {
            return Ok(false);
        }
        self.flush()?;
        Ok(true)
    }

    /// Under [`SyncPolicy::Interval`], syncs if entries were appended since the last sync and
    /// the period has passed since it; says whether it synced. A writer that may go a while
    /// without appending calls this at least once a period (`shmbus record` does every 50 ms),
    /// so that its last entries do not wait for the next append. Does nothing under the other
    /// policies.
    ///
    /// # Errors
    ///
    /// [`Error::JournalIo`] if `msync` fails.
    pub fn sync_if_due(&mut self) -> Result<bool> {
        match self.sync {
            SyncPolicy::Interval(period) => self.sync_if_due_after(period),
            _ => Ok(false),
        }
    }

    /// Writes the entries appended since the last sync to the disk (`msync(MS_SYNC)` of their
    /// pages, which on Linux is an `fdatasync` of that range, the file's size included): they
    /// survive a power loss or a kernel crash, not only the death of this process.
    ///
    /// # Errors
    ///
    /// [`Error::JournalIo`] if `msync` fails.
    pub fn flush(&mut self) -> Result<()> {
        if self.synced < self.end {
            // `flush_range` rounds the start down to a page.
            self.map
                .flush_range(self.synced as usize, (self.end - self.synced) as usize)
                .map_err(|e| io_error(&self.path, "msync", e))?;
            self.synced = self.end;
            self.syncs += 1;
        }
        self.last_sync = Instant::now();
        Ok(())
    }

    /// Syncs the entries not yet synced, marks the journal closed by its recorder, then syncs
    /// the header, whatever the policy: when it returns `Ok`, every entry and the "closed" state
    /// are on the disk, and "closed" never reaches the disk before the entries it closes.
    ///
    /// # Errors
    ///
    /// [`Error::JournalIo`] if `msync` fails (the journal is marked closed all the same, unless
    /// the first sync failed: then the state stays "recording" and `Drop` closes it).
    pub fn finish(mut self) -> Result<()> {
        self.flush()?;
        self.finished = true;
        self.close()
    }

    /// Stores "closed" and syncs the header page.
    fn close(&self) -> Result<()> {
        // ORDERING: Release, paired with the reader's Acquire load of the state: a reader that
        // sees "closed" sees every committed entry (docs/design.md §13).
        let _ = self.words().store_release(OFF_STATE, STATE_CLOSED);
        self.map
            .flush_range(0, HEADER_BYTES as usize)
            .map_err(|e| io_error(&self.path, "msync", e))
    }
}

impl Drop for JournalWriter {
    /// A writer dropped without [`JournalWriter::finish`] marks the journal closed too; unless
    /// its policy is [`SyncPolicy::None`] it syncs as `finish` does (errors ignored).
    fn drop(&mut self) {
        if self.finished {
            return;
        }
        if self.sync == SyncPolicy::None {
            // ORDERING: as in `close`.
            let _ = self.words().store_release(OFF_STATE, STATE_CLOSED);
        } else {
            let _ = self.flush();
            let _ = self.close();
        }
    }
}

/// Up to 8 bytes as a little-endian word, zero padded.
fn word_of(chunk: &[u8]) -> u64 {
    let mut b = [0u8; 8];
    b[..chunk.len()].copy_from_slice(chunk);
    u64::from_le_bytes(b)
}
