//! Forging segments as a hostile or crashed process would: a writable shared mapping of a
//! segment's words, whole segment files planted under a name, and word edits of header bytes.
//! Word `i` is bytes `8 * i .. 8 * i + 8` of the segment (docs/design.md §2).

use std::fs::OpenOptions;
use std::io::Write;
use std::os::fd::AsRawFd;
use std::os::unix::fs::OpenOptionsExt;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::TestBus;

/// The words of a segment, mapped shared and writable: the view of a process with write access
/// that stores whatever it likes. Unmapped on drop.
pub struct Forger {
    base: *mut libc::c_void,
    bytes: usize,
}

impl Forger {
    /// Maps the whole segment file of `name` as it is now.
    pub fn new(name: &TestBus) -> Self {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .open(name.path())
            .expect("open segment file");
        let bytes = file.metadata().expect("stat segment file").len() as usize;
        assert!(
            bytes >= 8,
            "a segment of {bytes} bytes has no word to forge"
        );
        // SAFETY: a new shared mapping of a file we hold open, at an address the kernel picks;
        // nothing aliases it yet. The library maps the same file, and every access either side
        // makes to it goes through atomics (docs/design.md §3), so sharing it is no data race.
        let base = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                bytes,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                file.as_raw_fd(),
                0,
            )
        };
        assert_ne!(
            base,
            libc::MAP_FAILED,
            "mmap: {}",
            std::io::Error::last_os_error()
        );
        Forger { base, bytes }
    }

    /// Every whole word of the segment.
    pub fn words(&self) -> &[AtomicU64] {
        // SAFETY: `base` is the page-aligned start of a mapping of `bytes` bytes that lives as
        // long as `self`; AtomicU64 has the size and alignment of u64.
        unsafe { std::slice::from_raw_parts(self.base as *const AtomicU64, self.bytes / 8) }
    }

    /// Word `i` (panics past the end of the segment).
    pub fn word(&self, i: usize) -> &AtomicU64 {
        &self.words()[i]
    }

    pub fn load(&self, i: usize) -> u64 {
        self.word(i).load(Ordering::SeqCst)
    }

    pub fn store(&self, i: usize, v: u64) {
        self.word(i).store(v, Ordering::SeqCst);
    }
}

impl Drop for Forger {
    fn drop(&mut self) {
        // SAFETY: the mapping made in `new`; no reference into it outlives `self`.
        unsafe { libc::munmap(self.base, self.bytes) };
    }
}

/// Writes a segment file for `name` holding `bytes` (cut to `size`, or zero-padded up to it),
/// mode 0600, replacing whatever file was there.
pub fn plant(name: &TestBus, bytes: &[u8], size: u64) {
    let _ = std::fs::remove_file(name.path());
    let mut f = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(name.path())
        .expect("create segment file");
    let n = bytes.len().min(size as usize);
    f.write_all(&bytes[..n]).expect("write segment file");
    f.set_len(size).expect("size segment file");
}

/// The whole segment file of `name`, as it is now.
pub fn segment_bytes(name: &TestBus) -> Vec<u8> {
    std::fs::read(name.path()).expect("read segment file")
}

/// Word `w` of segment bytes.
pub fn get_word(bytes: &[u8], w: usize) -> u64 {
    u64::from_le_bytes(bytes[w * 8..w * 8 + 8].try_into().expect("8 bytes"))
}

/// Sets word `w` of segment bytes to `v`.
pub fn set_word(bytes: &mut [u8], w: usize, v: u64) {
    bytes[w * 8..w * 8 + 8].copy_from_slice(&v.to_le_bytes());
}
