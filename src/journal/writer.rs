//! The appender: creates a journal file and appends committed entries to it
//! (docs/design.md §13).

use std::fs::{File, OpenOptions};
use std::os::fd::AsRawFd;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use memmap2::{MmapOptions, MmapRaw};
use nix::fcntl::{Flock, FlockArg};

use super::format::{
    entry_bytes, join, JournalShape, Marker, ENTRY_HEADER_BYTES, HEADER_BYTES, MAGIC,
    OFF_ALIGN_NAMELEN, OFF_CAPACITY, OFF_CREATED, OFF_MAGIC, OFF_MODE_SIZE, OFF_SLOTS, OFF_STATE,
    OFF_TYPE_NAME, OFF_VERSION, STATE_CLOSED, STATE_RECORDING, VERSION,
};
use super::map::Words;
use super::{io_error, Journal};
use crate::error::{Error, Result};

/// Default growth step of a journal file: the first chunk, and the least it grows by.
pub const DEFAULT_CHUNK_BYTES: u64 = 1 << 20;

/// The most a journal grows by at once: growth doubles the file up to this step.
const MAX_GROWTH_STEP: u64 = 64 << 20;

/// Appends entries to a journal it created; the only writer of that file (it holds an exclusive
/// `flock` on it for its lifetime, which also tells readers that a recorder is alive).
///
/// Each entry is committed by its marker word, stored last with Release: a process killed at any
/// instant leaves a journal that reads cleanly up to its last committed entry.
pub struct JournalWriter {
    path: PathBuf,
    file: Flock<File>,
    map: MmapRaw,
    /// Where the next entry goes; the marker word there is still 0.
    end: u64,
    capacity: u64,
    chunk: u64,
    entries: u64,
}

impl std::fmt::Debug for JournalWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JournalWriter")
            .field("path", &self.path)
            .field("end", &self.end)
            .field("entries", &self.entries)
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
    /// [`Error::InvalidConfig`] if `shape` is inconsistent; [`Error::JournalIo`] if the file cannot
    /// be created (one exists at `path`, or a symbolic link; a missing directory; no permission),
    /// locked, sized (`posix_fallocate` when the file system is full) or mapped.
    pub fn create_with_chunk(
        path: impl AsRef<Path>,
        shape: &JournalShape,
        chunk_bytes: u64,
    ) -> Result<JournalWriter> {
        let path = path.as_ref().to_path_buf();
        shape
            .check()
            .map_err(|reason| Error::InvalidConfig(format!("journal shape: {reason}")))?;
        let chunk = chunk_bytes
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
        };
        w.write_header(shape);
        Ok(w)
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

    /// Appends message `seq`, received at `ts_ns`, with payload `bytes` (at most the recorded
    /// bus's capacity).
    ///
    /// # Errors
    ///
    /// [`Error::MessageTooLarge`] if `bytes` is longer than the bus's capacity;
    /// [`Error::JournalIo`] if growing the file fails (`ftruncate`, `posix_fallocate` when the file
    /// system is full, `mmap`).
    pub fn append_message(&mut self, seq: u64, ts_ns: u64, bytes: &[u8]) -> Result<()> {
        if bytes.len() as u64 > self.capacity {
            return Err(Error::MessageTooLarge {
                len: bytes.len(),
                capacity: self.capacity as usize,
            });
        }
        let at = self.reserve(entry_bytes(bytes.len() as u64))?;
        self.store(at + 8, seq);
        self.store(at + 16, ts_ns);
        for (i, chunk) in bytes.chunks(8).enumerate() {
            self.store(at + ENTRY_HEADER_BYTES + 8 * i as u64, word_of(chunk));
        }
        self.commit(
            at,
            Marker::Message {
                len: bytes.len() as u32,
            },
        );
        Ok(())
    }

    /// Appends a loss: `count` sequence numbers from `first` on were never received.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidConfig`] if `count` is 0 or `first + count` overflows; [`Error::JournalIo`]
    /// if growing the file fails (`ftruncate`, `posix_fallocate` when the file system is full,
    /// `mmap`).
    pub fn append_loss(&mut self, first: u64, count: u64) -> Result<()> {
        if count == 0 || first.checked_add(count).is_none() {
            return Err(Error::InvalidConfig(format!(
                "a loss of {count} messages from sequence {first} cannot be recorded"
            )));
        }
        let at = self.reserve(ENTRY_HEADER_BYTES)?;
        self.store(at + 8, first);
        self.store(at + 16, count);
        self.commit(at, Marker::Lost);
        Ok(())
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

    /// Writes the mapped pages to the file system (`msync`): the entries appended so far survive
    /// a crash of the machine, not only of this process.
    ///
    /// # Errors
    ///
    /// [`Error::JournalIo`] if `msync` fails.
    pub fn flush(&self) -> Result<()> {
        self.map
            .flush()
            .map_err(|e| io_error(&self.path, "msync", e))
    }

    /// Marks the journal closed by its recorder and flushes it.
    ///
    /// # Errors
    ///
    /// [`Error::JournalIo`] if `msync` fails.
    pub fn finish(self) -> Result<()> {
        self.flush()
        // Drop marks the journal closed.
    }
}

impl Drop for JournalWriter {
    fn drop(&mut self) {
        // ORDERING: Release, paired with the reader's Acquire load of the state: a reader that
        // sees "closed" sees every committed entry (docs/design.md §13).
        let _ = self.words().store_release(OFF_STATE, STATE_CLOSED);
    }
}

/// Up to 8 bytes as a little-endian word, zero padded.
fn word_of(chunk: &[u8]) -> u64 {
    let mut b = [0u8; 8];
    b[..chunk.len()].copy_from_slice(chunk);
    u64::from_le_bytes(b)
}
