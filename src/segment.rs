//! The shared-memory segment: naming, creation, opening (a validation pipeline), mapping,
//! producer locks, process liveness and the futex wake word.
//!
//! The ring code never sees any of this: it gets a `&[AtomicU64]` from [`Segment::words`].

use std::fs::File;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::fs::MetadataExt;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use memmap2::{MmapOptions, MmapRaw};
use nix::errno::Errno;
use nix::fcntl::OFlag;
use nix::sys::stat::Mode;

use crate::error::{Error, Result};
use crate::layout::{
    self, Geometry, HeaderFault, HeaderInit, HeaderSnapshot, ProducerMode, TypeInfo, HEADER_BYTES,
    MAX_PRODUCERS, MAX_SEGMENT_BYTES, PE_LAST_PUBLISH, PE_PID, PE_START, PRODUCER_ENTRY_WORDS,
    W_PRODUCERS, W_WAITERS, W_WAKE,
};
use crate::sync::{AtomicU32, AtomicU64, Ordering};

/// Prefix of every shmbus object name in `/dev/shm`.
pub(crate) const SHM_PREFIX: &str = "shmbus.";
/// Where POSIX shared-memory objects live.
pub(crate) const SHM_DIR: &str = "/dev/shm";
/// Longest bus name.
pub(crate) const NAME_MAX: usize = 200;

/// How long an opener waits for a creator to finish initialising the header.
const INIT_WAIT: Duration = Duration::from_millis(100);

/// Checks a bus name: 1..=200 characters of `[A-Za-z0-9._-]`, not starting with `.`.
pub(crate) fn validate_name(name: &str) -> Result<()> {
    let bad = |reason: String| {
        Err(Error::InvalidName {
            name: name.to_owned(),
            reason,
        })
    };
    if name.is_empty() {
        return bad("the name is empty".into());
    }
    if name.len() > NAME_MAX {
        return bad(format!(
            "{} bytes long, the limit is {NAME_MAX}",
            name.len()
        ));
    }
    if name.starts_with('.') {
        return bad("it starts with '.'".into());
    }
    if let Some((i, c)) = name
        .char_indices()
        .find(|&(_, c)| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')))
    {
        return bad(format!(
            "character {c:?} at byte {i} is not allowed (use letters, digits, '.', '_' and '-')"
        ));
    }
    Ok(())
}

/// The `/dev/shm` path of a bus.
pub(crate) fn segment_path(name: &str) -> std::path::PathBuf {
    std::path::Path::new(SHM_DIR).join(format!("{SHM_PREFIX}{name}"))
}

fn shm_name(name: &str) -> String {
    format!("/{SHM_PREFIX}{name}")
}

/// Read-only or read-write access to a segment.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Access {
    ReadOnly,
    ReadWrite,
}

/// What an opener accepts beyond the safe defaults (RELIABILITY "Opening").
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Trust {
    pub other_owner: bool,
    pub shared_write: bool,
}

/// The memory behind a segment.
enum Memory {
    /// A mapped `/dev/shm` object.
    Mapped { _map: MmapRaw, fd: OwnedFd },
    /// A heap buffer: in-process buses, and the protocol under miri.
    /// A `Vec`, not a `Box`: moving a `Box` asserts unique access to its contents, which would
    /// invalidate `Segment::base` (miri, Stacked Borrows); `Vec::as_ptr` stays valid across moves.
    Heap(#[allow(dead_code)] Vec<AtomicU64>),
}

/// A mapped (or heap) segment with its validated geometry.
pub(crate) struct Segment {
    name: String,
    memory: Memory,
    base: *const AtomicU64,
    len_words: usize,
    access: Access,
    pub(crate) geometry: Geometry,
    pub(crate) mode: ProducerMode,
    pub(crate) ty: TypeInfo,
    pub(crate) first_seq: u64,
}

// SAFETY: `base` points into `memory`, which the segment owns and never moves (a mapping, or a
// boxed slice); everything reached through it is atomics, which are Sync (DESIGN §5).
unsafe impl Send for Segment {}
// SAFETY: as for Send: shared access goes through atomics only.
unsafe impl Sync for Segment {}

impl Segment {
    /// The segment as words. Every access to shared memory goes through this slice of atomics.
    #[inline]
    pub(crate) fn words(&self) -> &[AtomicU64] {
        // SAFETY: `base` is 8-aligned (page-aligned mapping or a boxed `[AtomicU64]`) and valid
        // for `len_words` words for as long as `self` lives (DESIGN §1: we map exactly the
        // validated size and keep the mapping until drop). `AtomicU64` has the size and alignment
        // of `u64`, and all concurrent access by any process is atomic (DESIGN §5).
        unsafe { std::slice::from_raw_parts(self.base, self.len_words) }
    }

    pub(crate) fn name(&self) -> &str {
        &self.name
    }

    pub(crate) fn is_writable(&self) -> bool {
        self.access == Access::ReadWrite
    }

    pub(crate) fn is_shared(&self) -> bool {
        matches!(self.memory, Memory::Mapped { .. })
    }

    pub(crate) fn header(&self) -> HeaderSnapshot {
        layout::read_header(self.words())
    }

    /// An in-process bus on the heap (no `/dev/shm`, no locks).
    pub(crate) fn heap(
        geometry: Geometry,
        mode: ProducerMode,
        ty: TypeInfo,
        first_seq: u64,
    ) -> Segment {
        let words = geometry
            .segment_bytes()
            .expect("Geometry::new checked the size") as usize
            / 8;
        let mem: Vec<AtomicU64> = (0..words).map(|_| AtomicU64::new(0)).collect();
        layout::write_header(&mem, &init(geometry, mode, &ty, first_seq));
        let base = mem.as_ptr();
        Segment {
            name: "(in-process)".into(),
            memory: Memory::Heap(mem),
            base,
            len_words: words,
            access: Access::ReadWrite,
            geometry,
            mode,
            ty,
            first_seq,
        }
    }

    /// Creates a new segment (RELIABILITY "Creating").
    pub(crate) fn create(
        name: &str,
        geometry: Geometry,
        mode: ProducerMode,
        ty: TypeInfo,
        first_seq: u64,
        perm: u32,
    ) -> Result<Segment> {
        validate_name(name)?;
        let size = geometry
            .segment_bytes()
            .expect("Geometry::new checked the size");
        // Created with owner-write only, so that nobody can open it read-only before it is ready;
        // the final mode is set by fchmod at the end, on the fd, regardless of the umask.
        let fd = nix::sys::mman::shm_open(
            shm_name(name).as_str(),
            OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_RDWR | OFlag::O_NOFOLLOW,
            Mode::S_IWUSR,
        )
        .map_err(|e| match e {
            Errno::EEXIST => Error::AlreadyExists {
                name: name.to_owned(),
            },
            Errno::EACCES | Errno::EPERM => Error::PermissionDenied {
                name: name.to_owned(),
                action: "create",
            },
            e => Error::io(name, "shm_open", e),
        })?;
        let cleanup = |e: Error| {
            let _ = nix::sys::mman::shm_unlink(shm_name(name).as_str());
            e
        };
        nix::unistd::ftruncate(&fd, size as i64)
            .map_err(|e| cleanup(Error::io(name, "ftruncate", e)))?;
        // Reserve the pages now: a full /dev/shm becomes an error here, not a SIGBUS later.
        match nix::fcntl::posix_fallocate(fd.as_raw_fd(), 0, size as i64) {
            Ok(()) => {}
            Err(Errno::ENOSPC) => {
                return Err(cleanup(Error::NoSpace {
                    name: name.to_owned(),
                    size,
                }))
            }
            // Some file systems cannot preallocate; ftruncate already sized the object.
            Err(Errno::EOPNOTSUPP | Errno::EINVAL) => {}
            Err(e) => return Err(cleanup(Error::io(name, "posix_fallocate", e))),
        }
        let map = MmapOptions::new()
            .len(size as usize)
            .map_raw(fd.as_raw_fd())
            .map_err(|e| {
                cleanup(Error::Io {
                    name: name.to_owned(),
                    op: "mmap",
                    source: e,
                })
            })?;
        let seg = Segment::from_map(
            name,
            map,
            fd,
            Access::ReadWrite,
            geometry,
            mode,
            ty,
            first_seq,
        );
        layout::write_header(seg.words(), &init(geometry, mode, &seg.ty, first_seq));
        nix::sys::stat::fchmod(
            seg.fd().expect("mapped").as_raw_fd(),
            Mode::from_bits_truncate(perm & 0o777),
        )
        .map_err(|e| cleanup(Error::io(name, "fchmod", e)))?;
        Ok(seg)
    }

    #[allow(clippy::too_many_arguments)]
    fn from_map(
        name: &str,
        map: MmapRaw,
        fd: OwnedFd,
        access: Access,
        geometry: Geometry,
        mode: ProducerMode,
        ty: TypeInfo,
        first_seq: u64,
    ) -> Segment {
        let base = map.as_ptr() as *const AtomicU64;
        let len_words = map.len() / 8;
        Segment {
            name: name.to_owned(),
            memory: Memory::Mapped { _map: map, fd },
            base,
            len_words,
            access,
            geometry,
            mode,
            ty,
            first_seq,
        }
    }

    /// Opens an existing segment: each step of the pipeline has its own error (RELIABILITY
    /// "Opening").
    pub(crate) fn open(name: &str, access: Access, trust: Trust) -> Result<Segment> {
        validate_name(name)?;
        let flags = match access {
            Access::ReadOnly => OFlag::O_RDONLY,
            Access::ReadWrite => OFlag::O_RDWR,
        };
        let action = match access {
            Access::ReadOnly => "open read-only",
            Access::ReadWrite => "open read-write",
        };
        let fd = nix::sys::mman::shm_open(
            shm_name(name).as_str(),
            flags | OFlag::O_NOFOLLOW,
            Mode::empty(),
        )
        .map_err(|e| match e {
            Errno::ENOENT => Error::NotFound {
                name: name.to_owned(),
            },
            Errno::ELOOP => Error::NotRegularFile {
                name: name.to_owned(),
            },
            Errno::EACCES | Errno::EPERM => {
                if creation_in_progress(name) {
                    Error::NotInitialised {
                        name: name.to_owned(),
                    }
                } else {
                    Error::PermissionDenied {
                        name: name.to_owned(),
                        action,
                    }
                }
            }
            e => Error::io(name, "shm_open", e),
        })?;
        let file = File::from(fd);
        let meta = file.metadata().map_err(|e| Error::Io {
            name: name.to_owned(),
            op: "fstat",
            source: e,
        })?;
        if !meta.file_type().is_file() {
            return Err(Error::NotRegularFile {
                name: name.to_owned(),
            });
        }
        let ours = nix::unistd::geteuid().as_raw();
        if meta.uid() != ours && !trust.other_owner {
            return Err(Error::ForeignOwner {
                name: name.to_owned(),
                owner: meta.uid(),
                ours,
            });
        }
        let perm = meta.mode() & 0o7777;
        if perm & 0o022 != 0 && !trust.shared_write {
            return Err(Error::InsecureMode {
                name: name.to_owned(),
                mode: perm,
            });
        }
        let size = meta.len();
        if size < HEADER_BYTES as u64 {
            // A creator that died before sizing the object leaves it empty with mode 0200; an
            // opener that permission bits do not stop (root) gets here instead of EACCES.
            if perm == 0o200 {
                return Err(Error::NotInitialised {
                    name: name.to_owned(),
                });
            }
            return Err(Error::Truncated {
                name: name.to_owned(),
                size,
                expected: HEADER_BYTES as u64,
            });
        }
        if size > MAX_SEGMENT_BYTES {
            return Err(Error::TooLarge {
                name: name.to_owned(),
                size,
                max: MAX_SEGMENT_BYTES,
            });
        }
        let fd = OwnedFd::from(file);
        let mut opts = MmapOptions::new();
        opts.len(size as usize);
        let map = match access {
            Access::ReadOnly => opts.map_raw_read_only(fd.as_raw_fd()),
            Access::ReadWrite => opts.map_raw(fd.as_raw_fd()),
        }
        .map_err(|e| Error::Io {
            name: name.to_owned(),
            op: "mmap",
            source: e,
        })?;
        // Geometry is filled in after validation; until then only the header is read.
        let mut seg = Segment::from_map(
            name,
            map,
            fd,
            access,
            Geometry {
                slot_count: 1,
                stride_words: 8,
                capacity: 1,
            },
            ProducerMode::Single,
            TypeInfo::raw(),
            0,
        );
        let header = seg.wait_initialised()?;
        let (geometry, mode) =
            layout::validate(&header, size).map_err(|f| fault_to_error(name, size, f))?;
        seg.geometry = geometry;
        seg.mode = mode;
        seg.ty = header.ty;
        seg.first_seq = header.first_seq;
        Ok(seg)
    }

    /// Reads the header, waiting a bounded time for a creator still writing it.
    fn wait_initialised(&self) -> Result<HeaderSnapshot> {
        let deadline = Instant::now() + INIT_WAIT;
        loop {
            let h = self.header();
            if h.magic != 0 || Instant::now() >= deadline {
                return Ok(h);
            }
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    fn fd(&self) -> Option<&OwnedFd> {
        match &self.memory {
            Memory::Mapped { fd, .. } => Some(fd),
            Memory::Heap(_) => None,
        }
    }

    /// A new open file description of the same object, for a producer's own locks (OFD locks
    /// belong to a file description, so every producer needs its own).
    pub(crate) fn reopen_for_lock(&self) -> Result<Option<OwnedFd>> {
        let Some(fd) = self.fd() else { return Ok(None) };
        let path = format!("/proc/self/fd/{}", fd.as_raw_fd());
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(path)
            .map_err(|e| Error::Io {
                name: self.name.clone(),
                op: "reopen",
                source: e,
            })?;
        Ok(Some(OwnedFd::from(file)))
    }

    /// Whether any producer holds the bus (its producer lock is held by a live process).
    pub(crate) fn producers_alive(&self) -> bool {
        match self.fd() {
            Some(fd) => lock_held(fd, 0),
            None => (0..MAX_PRODUCERS).any(|i| self.producer_pid(i) != 0),
        }
    }

    /// Whether producer-table entry `i` belongs to a live producer.
    pub(crate) fn producer_alive(&self, i: usize) -> bool {
        match self.fd() {
            Some(fd) => lock_held(fd, 1 + i as i64),
            None => self.producer_pid(i) != 0,
        }
    }

    fn producer_word(&self, i: usize, field: usize) -> &AtomicU64 {
        &self.words()[W_PRODUCERS + i * PRODUCER_ENTRY_WORDS + field]
    }

    /// The pid recorded in producer entry `i` (0 if never used).
    pub(crate) fn producer_pid(&self, i: usize) -> u32 {
        self.producer_word(i, PE_PID).load(Ordering::Relaxed) as u32
    }

    /// `CLOCK_MONOTONIC_COARSE` in ns at producer `i`'s last publish (0: none yet).
    pub(crate) fn producer_last_publish(&self, i: usize) -> u64 {
        self.producer_word(i, PE_LAST_PUBLISH)
            .load(Ordering::Relaxed)
    }

    pub(crate) fn producer_heartbeat(&self, i: usize) -> &AtomicU64 {
        self.producer_word(i, PE_LAST_PUBLISH)
    }

    /// Registers this process in producer entry `i`.
    pub(crate) fn set_producer(&self, i: usize, pid: u32, start: u64) {
        self.producer_word(i, PE_START)
            .store(start, Ordering::Relaxed);
        self.producer_word(i, PE_PID)
            .store(pid as u64, Ordering::Relaxed);
    }

    /// Heap buses: claims a free producer entry by CAS on its pid word.
    pub(crate) fn claim_heap_entry(&self, i: usize, pid: u32) -> bool {
        self.producer_word(i, PE_PID)
            .compare_exchange(0, pid as u64, Ordering::AcqRel, Ordering::Relaxed)
            .is_ok()
    }

    /// Heap buses: frees a producer entry.
    pub(crate) fn release_heap_entry(&self, i: usize) {
        self.producer_word(i, PE_PID).store(0, Ordering::Release);
    }

    /// The words of the wake-up handshake (docs/design.md §7).
    pub(crate) fn wake_words(&self) -> crate::wait::WakeWords<'_> {
        crate::wait::WakeWords {
            flag: &self.words()[W_WAITERS],
            counter: self.wake_word(),
        }
    }

    fn wake_word(&self) -> &AtomicU32 {
        // SAFETY: word W_WAKE is inside the header (layout test), 8-aligned, and is only ever
        // accessed as this `AtomicU32` (its low half) and by the kernel's futex code; the high
        // half is unused.
        unsafe { &*(self.base.add(W_WAKE) as *const AtomicU32) }
    }
}

fn init(geometry: Geometry, mode: ProducerMode, ty: &TypeInfo, first_seq: u64) -> HeaderInit<'_> {
    let pid = std::process::id();
    HeaderInit {
        geometry,
        mode,
        ty,
        first_seq,
        creator_pid: pid,
        creator_start: process_start_ticks(pid).unwrap_or(0),
        created_ns: SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0),
    }
}

fn fault_to_error(name: &str, size: u64, f: HeaderFault) -> Error {
    let name = name.to_owned();
    match f {
        HeaderFault::NotInitialised => Error::NotInitialised { name },
        HeaderFault::BadMagic(found) => Error::BadMagic { name, found },
        HeaderFault::Abi(found) => Error::AbiMismatch {
            name,
            found,
            expected: layout::ABI_VERSION,
        },
        HeaderFault::Corrupt(reason) => Error::Corrupt { name, reason },
        HeaderFault::Truncated { expected } => Error::Truncated {
            name,
            size,
            expected,
        },
    }
}

/// A creator that has not finished yet leaves the object owner-write-only (mode 0200).
fn creation_in_progress(name: &str) -> bool {
    std::fs::symlink_metadata(segment_path(name))
        .map(|m| {
            m.file_type().is_file()
                && m.mode() & 0o777 == 0o200
                && m.uid() == nix::unistd::geteuid().as_raw()
        })
        .unwrap_or(false)
}

/// Removes a bus's segment. Processes that have it mapped keep working on the old memory.
pub(crate) fn remove(name: &str) -> Result<()> {
    validate_name(name)?;
    nix::sys::mman::shm_unlink(shm_name(name).as_str()).map_err(|e| match e {
        Errno::ENOENT => Error::NotFound {
            name: name.to_owned(),
        },
        Errno::EACCES | Errno::EPERM => Error::PermissionDenied {
            name: name.to_owned(),
            action: "remove",
        },
        e => Error::io(name, "shm_unlink", e),
    })
}

/// The kind of an OFD record lock.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum LockKind {
    Shared,
    Exclusive,
}

fn flock_struct(byte: i64, kind: libc::c_short) -> libc::flock {
    // SAFETY: `libc::flock` is a plain C struct for which all-zero bytes are a valid value.
    let mut fl: libc::flock = unsafe { std::mem::zeroed() };
    fl.l_type = kind;
    fl.l_whence = libc::SEEK_SET as libc::c_short;
    fl.l_start = byte;
    fl.l_len = 1;
    fl
}

/// Tries to take an OFD lock on one byte of the object; `Ok(false)` if another holds it. The
/// kernel drops the lock when the last fd of the description closes, including on a crash.
pub(crate) fn try_lock(fd: &OwnedFd, byte: i64, kind: LockKind) -> std::io::Result<bool> {
    let ty = match kind {
        LockKind::Shared => libc::F_RDLCK,
        LockKind::Exclusive => libc::F_WRLCK,
    };
    let fl = flock_struct(byte, ty as libc::c_short);
    // SAFETY: F_OFD_SETLK reads a valid `flock` that outlives the call, on an fd we own.
    let r = unsafe { libc::fcntl(fd.as_fd().as_raw_fd(), libc::F_OFD_SETLK, &fl) };
    if r == 0 {
        return Ok(true);
    }
    match Errno::last() {
        Errno::EAGAIN | Errno::EACCES => Ok(false),
        e => Err(std::io::Error::from_raw_os_error(e as i32)),
    }
}

/// Whether any open file description holds a lock on `byte` (asked without taking it).
fn lock_held(fd: &OwnedFd, byte: i64) -> bool {
    let mut fl = flock_struct(byte, libc::F_WRLCK as libc::c_short);
    // SAFETY: F_OFD_GETLK reads and writes a valid `flock` that outlives the call.
    let r = unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_OFD_GETLK, &mut fl) };
    r == 0 && fl.l_type != libc::F_UNLCK as libc::c_short
}

/// `CLOCK_MONOTONIC_COARSE` in nanoseconds: the same clock in every process, a few ms of
/// resolution, read through the vDSO without a system call.
#[inline]
pub(crate) fn coarse_now_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes one timespec into `ts`, which outlives the call.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC_COARSE, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// The start time of a process in clock ticks after boot (field 22 of `/proc/PID/stat`), which
/// tells a live process from a later one that reused its pid.
pub(crate) fn process_start_ticks(pid: u32) -> Option<u64> {
    if cfg!(miri) {
        // Miri cannot model /proc (its files bypass the abstract machine); "unknown" is the
        // answer every caller already handles.
        return None;
    }
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may hold spaces and parentheses; fields resume after the last ')'.
    let rest = &stat[stat.rfind(')')? + 1..];
    rest.split_whitespace().nth(19)?.parse().ok()
}

/// Whether process `pid`, started at `start` ticks after boot, is still running.
pub(crate) fn process_alive(pid: u32, start: u64) -> bool {
    pid != 0 && process_start_ticks(pid).is_some_and(|s| start == 0 || s == start)
}

/// Releases an OFD lock on one byte of the object.
pub(crate) fn unlock(fd: &OwnedFd, byte: i64) -> std::io::Result<()> {
    let fl = flock_struct(byte, libc::F_UNLCK as libc::c_short);
    // SAFETY: F_OFD_SETLK reads a valid `flock` that outlives the call, on an fd we own.
    let r = unsafe { libc::fcntl(fd.as_fd().as_raw_fd(), libc::F_OFD_SETLK, &fl) };
    if r == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// `FUTEX_WAIT`: sleeps while `*word == expected`, until woken or `timeout` passes. Every
/// outcome (woken, EAGAIN, ETIMEDOUT, EINTR) means "look again" to the caller.
pub(crate) fn futex_wait(word: &AtomicU32, expected: u32, timeout: Option<Duration>, shared: bool) {
    let ts = timeout.map(|t| libc::timespec {
        tv_sec: t.as_secs().min(i64::MAX as u64) as libc::time_t,
        tv_nsec: t.subsec_nanos() as libc::c_long,
    });
    let ts_ptr = ts
        .as_ref()
        .map_or(std::ptr::null(), |t| t as *const libc::timespec);
    let op = if shared {
        libc::FUTEX_WAIT
    } else {
        libc::FUTEX_WAIT | libc::FUTEX_PRIVATE_FLAG
    };
    // SAFETY: FUTEX_WAIT reads the AtomicU32 at this address, which the caller's borrow keeps
    // alive for the call; `ts` (or null: no timeout) outlives the call.
    unsafe {
        libc::syscall(
            libc::SYS_futex,
            (word as *const AtomicU32).cast::<u32>(),
            op,
            expected,
            ts_ptr,
            0usize,
            0u32,
        );
    }
}

/// `FUTEX_WAKE` of every sleeper on `word`.
pub(crate) fn futex_wake(word: &AtomicU32, shared: bool) {
    let op = if shared {
        libc::FUTEX_WAKE
    } else {
        libc::FUTEX_WAKE | libc::FUTEX_PRIVATE_FLAG
    };
    // SAFETY: FUTEX_WAKE on the address of an AtomicU32 the caller's borrow keeps alive; the
    // kernel only reads it.
    unsafe {
        libc::syscall(
            libc::SYS_futex,
            (word as *const AtomicU32).cast::<u32>(),
            op,
            i32::MAX,
            0usize,
            0usize,
            0u32,
        );
    }
}

const MEMBARRIER_CMD_GLOBAL_EXPEDITED: libc::c_int = 1 << 1;
const MEMBARRIER_CMD_REGISTER_GLOBAL_EXPEDITED: libc::c_int = 1 << 2;

/// Registers this process as a target of `MEMBARRIER_CMD_GLOBAL_EXPEDITED`; whether it worked.
pub(crate) fn membarrier_register() -> bool {
    // SAFETY: membarrier takes two integer arguments and touches no memory of ours.
    unsafe {
        libc::syscall(
            libc::SYS_membarrier,
            MEMBARRIER_CMD_REGISTER_GLOBAL_EXPEDITED,
            0,
        ) == 0
    }
}

/// A memory barrier on every running thread of every registered process; whether it ran.
pub(crate) fn membarrier_global_expedited() -> bool {
    // SAFETY: as in `membarrier_register`.
    unsafe { libc::syscall(libc::SYS_membarrier, MEMBARRIER_CMD_GLOBAL_EXPEDITED, 0) == 0 }
}
