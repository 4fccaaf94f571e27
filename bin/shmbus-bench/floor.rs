//! The floor of a cross-process byte ring: a minimal single-producer ring with flow control,
//! moving fixed-size records between two processes on two cores. `lanes` and the records
//! throughput figure measure their transports beside it, in the same run.
//!
//! The writer is a child process (`shmbus-bench lanes --role floor-writer…`); the reader is the
//! calling process. How the writer stores and how the reader takes a record are chosen, so that
//! a figure can be taken apart: the plain floor copies in with `memcpy` and reads in place (what
//! a flow-controlled reader may do: borrow the bytes), the other variants add what a broadcast
//! reader must do (copy out, with atomic loads) or what a broadcast writer does (atomic stores).

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use crate::lanes::{record, say_ready, spawn, touch};
use crate::sys;

/// The floor ring's size unless a caller asks for another (the same as a lane).
pub const FLOOR_BYTES: usize = 1 << 20;

/// How the floor's writer stores a record's bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Write {
    /// `memcpy` into the ring (the ring's bytes are not racing: flow control).
    Plain,
    /// A Relaxed atomic store per word, as a broadcast producer must.
    Atomic,
    /// Atomic stores as [`Write::Atomic`], committed by a sequence word in the record's own
    /// header (stored last, Release) instead of the write position: the reader polls the ring
    /// word where the next record starts, as a records or bus subscriber does (each keeps its
    /// own position; there is no shared cursor to poll). The reader takes the record with
    /// [`Read::AtomicCopy`] whatever it is asked.
    Versioned,
}

impl Write {
    fn role(self) -> &'static str {
        match self {
            Write::Plain => "floor-writer",
            Write::Atomic => "floor-writer-atomic",
            Write::Versioned => "floor-writer-versioned",
        }
    }

    /// The bytes a record of `size` bytes takes in the ring, the same for the writer and the
    /// reader: a length word and the payload in whole words, after a sequence word if
    /// [`Write::Versioned`].
    fn record_bytes(self, size: usize) -> usize {
        let header = if self == Write::Versioned { 16 } else { 8 };
        header + size.next_multiple_of(8)
    }

    /// The writer a child role names.
    pub fn of_role(role: &str) -> Option<Write> {
        [Write::Plain, Write::Atomic, Write::Versioned]
            .into_iter()
            .find(|w| w.role() == role)
    }
}

/// How the floor's reader takes a record.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Read {
    /// Reads every word in place (borrows the bytes, as a flow-controlled reader may).
    InPlace,
    /// Copies the record out with `memcpy`, then reads its first word.
    Copy,
    /// Copies the record out with a Relaxed atomic load per word (as a broadcast reader must),
    /// then reads its first word.
    AtomicCopy,
}

/// The floor's shared ring: a /dev/shm file with the write position on the first line, the
/// read position on the second, and the ring from byte 4096.
struct FloorShm {
    path: std::path::PathBuf,
    map: memmap2::MmapMut,
    /// The ring's size in bytes (the file's, less the first page).
    bytes: usize,
    owner: bool,
}

impl FloorShm {
    fn create(bytes: usize) -> Result<FloorShm, String> {
        let (path, file) = sys::create_shm_file("floor", (4096 + bytes) as u64)?;
        FloorShm::map(path, &file, bytes, true)
    }

    fn open(path: &str) -> Result<FloorShm, String> {
        let file = sys::open_shm_file(std::path::Path::new(path))?;
        let len = file.metadata().map_err(|e| e.to_string())?.len() as usize;
        if len <= 4096 {
            return Err(format!("{path} holds no ring"));
        }
        FloorShm::map(path.into(), &file, len - 4096, false)
    }

    fn map(
        path: std::path::PathBuf,
        file: &std::fs::File,
        bytes: usize,
        owner: bool,
    ) -> Result<FloorShm, String> {
        // SAFETY: a file of this run, sized before mapping and never truncated while mapped; the
        // position words are accessed atomically, the ring's bytes ordered by them.
        let map = unsafe { memmap2::MmapOptions::new().len(4096 + bytes).map_mut(file) }
            .map_err(|e| format!("cannot map {}: {e}", path.display()))?;
        Ok(FloorShm {
            path,
            map,
            bytes,
            owner,
        })
    }

    fn word(&self, i: usize) -> &AtomicU64 {
        // SAFETY: words 0 and 8 of the page-aligned mapping (8-aligned, in bounds), only ever
        // accessed atomically by both processes.
        unsafe { AtomicU64::from_ptr(self.map.as_ptr().add(i * 8).cast::<u64>().cast_mut()) }
    }

    fn ring(&self) -> *mut u8 {
        // SAFETY: byte 4096 of a mapping of 4096 + `self.bytes` bytes.
        unsafe { self.map.as_ptr().add(4096).cast_mut() }
    }

    /// The ring's words from byte `at` (8-aligned), `n` of them, as atomics.
    fn atomics(&self, at: usize, n: usize) -> &[AtomicU64] {
        assert!(at.is_multiple_of(8) && at + 8 * n <= self.bytes);
        // SAFETY: 8-aligned (the ring starts on a page, `at` is a multiple of 8) and inside the
        // ring (asserted); `AtomicU64` has the layout of `u64`, and the mapping lives as long as
        // `self`.
        unsafe { std::slice::from_raw_parts(self.ring().add(at).cast::<AtomicU64>(), n) }
    }
}

impl Drop for FloorShm {
    fn drop(&mut self) {
        if self.owner {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

/// The floor's writer (a child process): fixed-size records that divide the ring (no wrap
/// within a record), each a length word and the payload, then a Release store of the write
/// position (or, [`Write::Versioned`], of the record's sequence number in its first word).
pub fn write(path: &str, core: usize, size: usize, bytes: u64, how: Write) -> Result<(), String> {
    let shm = FloorShm::open(path)?;
    sys::pin(core)?;
    say_ready()?;
    let rec = record(size, 1);
    let need = how.record_bytes(size);
    let (write, read) = (shm.word(0), shm.word(8));
    let mut w = 0u64;
    let mut read_cache = 0u64;
    let mut sent = 0u64;
    let mut seq = 0u64;
    let len = (shm.bytes / need * need) as u64;
    while sent < bytes {
        if w + need as u64 - read_cache > len {
            // ORDERING: Acquire pairs with the reader's Release store of `read`.
            read_cache = read.load(Ordering::Acquire);
            if w + need as u64 - read_cache > len {
                std::hint::spin_loop();
                continue;
            }
        }
        let at = (w % len) as usize;
        match how {
            // SAFETY: `at + need <= len <= shm.bytes`; the reader reads only below the write
            // position, and we write only within a ring of the read position we loaded
            // (Acquire).
            Write::Plain => unsafe {
                let to = shm.ring().add(at);
                std::ptr::copy_nonoverlapping((size as u64).to_le_bytes().as_ptr(), to, 8);
                std::ptr::copy_nonoverlapping(rec.as_ptr(), to.add(8), size);
            },
            Write::Atomic => {
                let words = shm.atomics(at, need / 8);
                words[0].store(size as u64, Ordering::Relaxed);
                store_atomic(&words[1..], &rec);
            }
            Write::Versioned => {
                let words = shm.atomics(at, need / 8);
                words[1].store(size as u64, Ordering::Relaxed);
                store_atomic(&words[2..], &rec);
                seq += 1;
                // ORDERING: Release pairs with the reader's Acquire load of this word: a reader
                // that sees `seq` sees the length and payload stored above.
                words[0].store(seq, Ordering::Release);
            }
        }
        w += need as u64;
        if how != Write::Versioned {
            // ORDERING: Release pairs with the reader's Acquire load of `write`.
            write.store(w, Ordering::Release);
        }
        sent += size as u64;
    }
    Ok(())
}

/// A reader's clock: started at the first record read after `warm` bytes.
#[derive(Default)]
struct Timer {
    start: Option<Instant>,
    from: u64,
}

impl Timer {
    /// Starts the clock if it has not started and `got` bytes are past the warm-up.
    fn mark(&mut self, got: u64, warm: u64) {
        if self.start.is_none() && got >= warm {
            self.start = Some(Instant::now());
            self.from = got;
        }
    }

    /// Bytes per second from the start to `got` bytes.
    fn rate(&self, got: u64) -> f64 {
        let secs = self
            .start
            .map_or(f64::MIN_POSITIVE, |s| s.elapsed().as_secs_f64());
        (got - self.from) as f64 / secs
    }
}

/// Stores `rec` into `words` with one Relaxed atomic store per word (the last word zero-padded).
fn store_atomic(words: &[AtomicU64], rec: &[u8]) {
    let chunks = rec.chunks_exact(8);
    let rest = chunks.remainder();
    for (dst, c) in words.iter().zip(chunks) {
        dst.store(
            u64::from_le_bytes(c.try_into().expect("8 bytes")),
            Ordering::Relaxed,
        );
    }
    if !rest.is_empty() {
        let mut last = [0u8; 8];
        last[..rest.len()].copy_from_slice(rest);
        words[rec.len() / 8].store(u64::from_le_bytes(last), Ordering::Relaxed);
    }
}

/// The floor's reader in this process (pin it first: it stays on the calling thread's core),
/// against a writer child on `core`, through a ring of `ring` bytes: bytes per second moved,
/// from the first record read, or (`warm` > 0) from the first record after `warm` bytes, so
/// that the first laps, which fault the fresh ring's pages in, are not timed.
pub fn throughput(
    core: usize,
    size: usize,
    ring: usize,
    budget: u64,
    warm: u64,
    how_write: Write,
    how_read: Read,
) -> Result<f64, String> {
    let shm = FloorShm::create(ring)?;
    let path = shm.path.display().to_string();
    let extra = [
        "--size".to_string(),
        size.to_string(),
        "--bytes".into(),
        budget.to_string(),
    ];
    let mut child = spawn(how_write.role(), &path, core, &extra)?;
    if how_write == Write::Versioned {
        let out = read_versioned(&shm, &mut child, size, budget, warm);
        let _ = child.wait();
        return out;
    }
    let need = how_write.record_bytes(size);
    let len = (ring / need * need) as u64;
    let (write, read) = (shm.word(0), shm.word(8));
    let (mut r, mut got, mut sum) = (0u64, 0u64, 0u64);
    let mut out = vec![0u64; size.div_ceil(8)];
    let mut timer = Timer::default();
    while got < budget {
        // ORDERING: Acquire pairs with the writer's Release store of `write`.
        let w = write.load(Ordering::Acquire);
        if w == r {
            // A `waitpid` on every empty poll: a system call that also makes this reader back
            // off while the ring is empty, so that it reads in batches and leaves the writer's
            // lines alone meanwhile. The published floor figures are measured so; with a bare
            // spin instead, this floor moves 1 KiB records at 31-38 rather than 51-53 GB/s and
            // 64 B records at 1.9 rather than 3.2-3.4 GB/s (AMD EPYC VM, 2026-12-07).
            if matches!(child.try_wait(), Ok(Some(_))) && write.load(Ordering::Acquire) == r {
                return Err("the floor writer ended early".into());
            }
            std::hint::spin_loop();
            continue;
        }
        timer.mark(got, warm);
        while r < w {
            let at = (r % len) as usize;
            sum = sum.wrapping_add(match how_read {
                Read::InPlace => {
                    // SAFETY: below the write position loaded with Acquire, within the ring;
                    // the writer does not write these bytes before our Release store of the
                    // read position.
                    let rec = unsafe { std::slice::from_raw_parts(shm.ring().add(at + 8), size) };
                    touch(rec)
                }
                Read::Copy => {
                    // SAFETY: as above; `out` holds `size` bytes and does not overlap the ring.
                    unsafe {
                        std::ptr::copy_nonoverlapping(
                            shm.ring().add(at + 8),
                            out.as_mut_ptr().cast::<u8>(),
                            size,
                        );
                    }
                    std::hint::black_box(&mut out)[0]
                }
                Read::AtomicCopy => {
                    let src = shm.atomics(at + 8, out.len());
                    for (d, s) in out.iter_mut().zip(src) {
                        *d = s.load(Ordering::Relaxed);
                    }
                    std::hint::black_box(&mut out)[0]
                }
            });
            got += size as u64;
            r += need as u64;
        }
        // ORDERING: Release pairs with the writer's Acquire load of `read`.
        read.store(r, Ordering::Release);
    }
    std::hint::black_box(sum);
    let _ = child.wait();
    Ok(timer.rate(got))
}

/// The reader of [`Write::Versioned`] records: polls the sequence word where the next record
/// starts, copies the record out with atomic loads, and stores its read position (for the
/// writer's flow control) once per eighth of the ring, not per record.
fn read_versioned(
    shm: &FloorShm,
    child: &mut std::process::Child,
    size: usize,
    budget: u64,
    warm: u64,
) -> Result<f64, String> {
    let need = Write::Versioned.record_bytes(size);
    let len = (shm.bytes / need * need) as u64;
    let read = shm.word(8);
    let (mut r, mut seq, mut got, mut sum, mut polls) = (0u64, 1u64, 0u64, 0u64, 0u32);
    let mut stored = 0u64;
    let mut out = vec![0u64; size.div_ceil(8)];
    let mut timer = Timer::default();
    while got < budget {
        let at = (r % len) as usize;
        let words = shm.atomics(at, need / 8);
        // ORDERING: Acquire pairs with the writer's Release store of the sequence word.
        if words[0].load(Ordering::Acquire) != seq {
            polls = polls.wrapping_add(1);
            if polls.is_multiple_of(1 << 16) && matches!(child.try_wait(), Ok(Some(_))) {
                return Err("the floor writer ended early".into());
            }
            std::hint::spin_loop();
            continue;
        }
        timer.mark(got, warm);
        if words[1].load(Ordering::Relaxed) != size as u64 {
            return Err("the floor writer's record has the wrong length".into());
        }
        for (d, s) in out.iter_mut().zip(&words[2..]) {
            *d = s.load(Ordering::Relaxed);
        }
        sum = sum.wrapping_add(std::hint::black_box(&mut out)[0]);
        got += size as u64;
        r += need as u64;
        seq += 1;
        if r - stored >= len / 8 {
            stored = r;
            // ORDERING: Release pairs with the writer's Acquire load of `read`.
            read.store(r, Ordering::Release);
        }
    }
    std::hint::black_box(sum);
    Ok(timer.rate(got))
}
