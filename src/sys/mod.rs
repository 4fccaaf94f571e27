#![cfg_attr(loom, allow(dead_code))]
//! The system calls of the segment layer: OFD record locks, futexes, `membarrier`, the coarse
//! clock and `/proc`. Every FFI `unsafe` of the segment layer lives here; nix's safe wrappers are
//! used wherever nix has one, raw `libc` only for what it lacks (futex, membarrier).

use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::atomic::{AtomicI32, AtomicU32, AtomicU64, Ordering};
use std::time::Duration;

use nix::errno::Errno;
use nix::fcntl::{fcntl, FcntlArg};
use nix::time::{clock_gettime, ClockId};

/// The kind of an OFD record lock.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum LockKind {
    Shared,
    Exclusive,
}

/// A `flock` describing one byte at offset `byte`.
fn one_byte(byte: i64, ty: libc::c_int) -> libc::flock {
    // SAFETY: `libc::flock` is a plain C struct of integers (plus, on some targets, private
    // padding) for which all-zero bytes are a valid value; the fields that matter are set below.
    let mut fl: libc::flock = unsafe { std::mem::zeroed() };
    fl.l_type = ty as libc::c_short;
    fl.l_whence = libc::SEEK_SET as libc::c_short;
    fl.l_start = byte;
    fl.l_len = 1;
    fl
}

/// Tries to take an OFD lock on one byte of the object; `Ok(false)` if another open file
/// description holds a conflicting lock. The kernel drops the lock when the last fd of the
/// description closes, including when the process dies.
pub(crate) fn try_lock(fd: &OwnedFd, byte: i64, kind: LockKind) -> std::io::Result<bool> {
    let ty = match kind {
        LockKind::Shared => libc::F_RDLCK,
        LockKind::Exclusive => libc::F_WRLCK,
    };
    match fcntl(fd.as_raw_fd(), FcntlArg::F_OFD_SETLK(&one_byte(byte, ty))) {
        Ok(_) => Ok(true),
        Err(Errno::EAGAIN | Errno::EACCES) => Ok(false),
        Err(e) => Err(e.into()),
    }
}

/// Releases this description's lock on one byte (a no-op if it holds none).
// Producers release their locks when they detach; the segment layer itself never does.
pub(crate) fn unlock(fd: &OwnedFd, byte: i64) -> std::io::Result<()> {
    fcntl(
        fd.as_raw_fd(),
        FcntlArg::F_OFD_SETLK(&one_byte(byte, libc::F_UNLCK)),
    )
    .map(drop)
    .map_err(Into::into)
}

/// Whether another open file description holds a lock on `byte` (asked without taking it;
/// `F_OFD_GETLK` works on read-only descriptors too). Locks held through `fd`'s own description
/// do not count. An interrupted call is retried; any other error reads as "held": a participant
/// whose liveness cannot be asked is taken to be alive, so that its positions are waited for
/// and never skipped or repaired on a guess, and a segment is never reported closed on one
/// (docs/design.md §5).
pub(crate) fn lock_held(fd: &OwnedFd, byte: i64) -> bool {
    loop {
        let mut fl = one_byte(byte, libc::F_WRLCK);
        match fcntl(fd.as_raw_fd(), FcntlArg::F_OFD_GETLK(&mut fl)) {
            Ok(_) => return fl.l_type != libc::F_UNLCK as libc::c_short,
            Err(Errno::EINTR) => continue,
            Err(_) => return true,
        }
    }
}

fn futex_op(op: libc::c_int, shared: bool) -> libc::c_int {
    if shared {
        op
    } else {
        op | libc::FUTEX_PRIVATE_FLAG
    }
}

/// Sleeps while `word` holds `expected`, until woken or `timeout` passes (`None`: no timeout).
/// Returns at once if the word already differs. Spurious returns are possible (a signal, a wake
/// meant for an earlier value): callers re-check their condition. `shared` is false only for
/// memory private to this process (the cheaper private futex).
pub(crate) fn futex_wait(word: &AtomicU32, expected: u32, timeout: Option<Duration>, shared: bool) {
    let ts = timeout.map(|d| libc::timespec {
        tv_sec: libc::time_t::try_from(d.as_secs()).unwrap_or(libc::time_t::MAX),
        tv_nsec: d.subsec_nanos() as libc::c_long,
    });
    let ts_ptr = ts
        .as_ref()
        .map_or(std::ptr::null(), |t| t as *const libc::timespec);
    // SAFETY: FUTEX_WAIT only reads the 4-byte word at this address, which `word` keeps alive and
    // aligned for the whole call; `ts_ptr` is null or points at `ts`, which outlives the call.
    // Every error (EAGAIN: the value differs, ETIMEDOUT, EINTR) means "re-check", so the result
    // is ignored.
    unsafe {
        libc::syscall(
            libc::SYS_futex,
            word.as_ptr(),
            futex_op(libc::FUTEX_WAIT, shared),
            expected,
            ts_ptr,
            0usize,
            0u32,
        );
    }
}

/// Wakes every thread (in any process, for `shared`) sleeping in [`futex_wait`] on `word`.
pub(crate) fn futex_wake(word: &AtomicU32, shared: bool) {
    // SAFETY: FUTEX_WAKE uses the address only as a key (it neither reads nor writes memory
    // there); `word` is alive and aligned for the call.
    unsafe {
        libc::syscall(
            libc::SYS_futex,
            word.as_ptr(),
            futex_op(libc::FUTEX_WAKE, shared),
            i32::MAX,
            0usize,
            0usize,
            0u32,
        );
    }
}

/// `MEMBARRIER_CMD_GLOBAL_EXPEDITED` and its registration, from `<linux/membarrier.h>` (libc
/// does not export them).
const MEMBARRIER_CMD_GLOBAL_EXPEDITED: libc::c_int = 1 << 1;
const MEMBARRIER_CMD_REGISTER_GLOBAL_EXPEDITED: libc::c_int = 1 << 2;

fn membarrier(cmd: libc::c_int) -> bool {
    // SAFETY: membarrier takes integers only (command, flags, cpu id) and touches no memory of
    // ours; an unsupported command fails with EINVAL or ENOSYS, reported as `false`.
    unsafe { libc::syscall(libc::SYS_membarrier, cmd, 0u32, 0i32) == 0 }
}

/// How many times this process was forked off its parent since it started (counted by a
/// `pthread_atfork` child handler, installed by [`install_fork_hook`]). A handle stores the value
/// when it attaches; a different value means it is used in a child of the process that made it
/// (docs/design.md §10, "Fork").
static FORKS: AtomicU64 = AtomicU64::new(0);

/// The lock descriptors of this process's attachments (−1: free), replaced in a forked child.
static LOCK_FDS: [AtomicI32; LOCK_FD_SLOTS] = [const { AtomicI32::new(-1) }; LOCK_FD_SLOTS];
/// Attachments whose locks a forked child gives up; more are not tracked (their locks stay
/// shared with the child, as without this table).
const LOCK_FD_SLOTS: usize = 1024;
/// `/dev/null`, opened once, put in place of each lock descriptor in a forked child.
static DEV_NULL: AtomicI32 = AtomicI32::new(-1);

/// Runs in the child right after `fork`: counts the fork, and puts `/dev/null` in place of every
/// attachment's lock descriptor, so that the child holds no reference to the open file
/// descriptions whose OFD locks say "this participant lives": when the parent dies, its locks go
/// with it, whatever its children do. Only async-signal-safe calls (atomics, `dup3`).
extern "C" fn after_fork_in_child() {
    FORKS.fetch_add(1, Ordering::Relaxed);
    let null = DEV_NULL.load(Ordering::Relaxed);
    if null < 0 {
        return;
    }
    for slot in &LOCK_FDS {
        let fd = slot.load(Ordering::Relaxed);
        if fd >= 0 {
            // SAFETY: `dup3` is async-signal-safe and only replaces descriptor `fd` of this
            // (child) process by a duplicate of `/dev/null`; `fd` is a lock descriptor that an
            // attachment owns (registered until just before it is closed), so no other object
            // of this process is affected, and the attachment's later `close` closes the copy.
            unsafe { libc::dup3(null, fd, libc::O_CLOEXEC) };
        }
    }
}

/// Installs the fork handler once per process (at the first attachment, before any fork that
/// matters to it).
pub(crate) fn install_fork_hook() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        if let Ok(f) = std::fs::File::open("/dev/null") {
            DEV_NULL.store(std::os::fd::IntoRawFd::into_raw_fd(f), Ordering::Relaxed);
        }
        // SAFETY: registers a plain `extern "C"` function with no captured state; it runs in
        // the child after every later `fork` and does only async-signal-safe work.
        unsafe { libc::pthread_atfork(None, None, Some(after_fork_in_child)) };
    });
}

/// The number of forks between this process's start and now (see [`FORKS`]).
#[inline]
pub(crate) fn fork_generation() -> u64 {
    FORKS.load(Ordering::Relaxed)
}

/// Tracks `fd` as a lock descriptor to give up in forked children; returns its slot, or `None`
/// when the table is full.
pub(crate) fn track_lock_fd(fd: i32) -> Option<usize> {
    install_fork_hook();
    LOCK_FDS.iter().position(|slot| {
        slot.compare_exchange(-1, fd, Ordering::Relaxed, Ordering::Relaxed)
            .is_ok()
    })
}

/// Stops tracking the lock descriptor in `slot` (before it is closed).
pub(crate) fn untrack_lock_fd(slot: usize) {
    LOCK_FDS[slot].store(-1, Ordering::Relaxed);
}

/// Registers this process for `MEMBARRIER_CMD_GLOBAL_EXPEDITED`: afterwards, another process's
/// [`membarrier_global_expedited`] interrupts this one's running threads with a full barrier.
/// Returns whether the kernel supports it (Linux 4.16+).
// The ring's wake-up handshake calls this; it is not used by the segment layer itself.
pub(crate) fn membarrier_register() -> bool {
    membarrier(MEMBARRIER_CMD_REGISTER_GLOBAL_EXPEDITED)
}

/// Executes a full memory barrier on every running thread of every registered process, then
/// returns; `false` if the kernel refused (unsupported), in which case no barrier was issued.
// The ring's wake-up handshake calls this; it is not used by the segment layer itself.
pub(crate) fn membarrier_global_expedited() -> bool {
    membarrier(MEMBARRIER_CMD_GLOBAL_EXPEDITED)
}

/// `CLOCK_MONOTONIC_COARSE` in nanoseconds: the same clock in every process, a few ms of
/// resolution, read through the vDSO without a system call. 0 if the clock is unavailable.
#[inline]
pub(crate) fn coarse_now_ns() -> u64 {
    clock_gettime(ClockId::CLOCK_MONOTONIC_COARSE).map_or(0, |ts| {
        (ts.tv_sec() as u64)
            .wrapping_mul(1_000_000_000)
            .wrapping_add(ts.tv_nsec() as u64)
    })
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

#[cfg(all(test, not(loom), not(miri)))]
mod tests {
    use super::*;
    use std::sync::atomic::Ordering;
    use std::sync::Arc;

    /// Two open file descriptions of one fresh file.
    fn two_descriptions(tag: &str) -> (OwnedFd, OwnedFd, std::path::PathBuf) {
        let path = std::env::temp_dir().join(format!("shmbus-sys-{tag}-{}", std::process::id()));
        let open = || {
            OwnedFd::from(
                std::fs::OpenOptions::new()
                    .read(true)
                    .write(true)
                    .create(true)
                    .truncate(false)
                    .open(&path)
                    .expect("open temp file"),
            )
        };
        let (a, b) = (open(), open());
        (a, b, path)
    }

    #[test]
    fn ofd_locks_exclude_other_descriptions_until_unlocked() {
        let (a, b, path) = two_descriptions("lock");
        assert!(!lock_held(&b, 3));
        assert!(try_lock(&a, 3, LockKind::Exclusive).expect("lock"));
        assert!(lock_held(&b, 3), "b sees a's lock");
        assert!(!lock_held(&a, 3), "a's own lock does not conflict with a");
        assert!(!try_lock(&b, 3, LockKind::Shared).expect("try"));
        assert!(try_lock(&b, 4, LockKind::Exclusive).expect("another byte is free"));
        unlock(&a, 3).expect("unlock");
        assert!(!lock_held(&b, 3));
        assert!(try_lock(&b, 3, LockKind::Exclusive).expect("free again"));
        let _ = std::fs::remove_file(path);
    }

    #[test]
    fn a_liveness_question_that_fails_reads_as_alive() {
        let (_a, _b, path) = two_descriptions("getlk-error");
        // An `O_PATH` descriptor refuses every lock operation (EBADF): the kernel cannot say.
        let fd: OwnedFd = std::os::unix::fs::OpenOptionsExt::custom_flags(
            std::fs::OpenOptions::new().read(true),
            libc::O_PATH,
        )
        .open(&path)
        .expect("open O_PATH")
        .into();
        let mut fl = one_byte(3, libc::F_WRLCK);
        assert!(
            fcntl(fd.as_raw_fd(), FcntlArg::F_OFD_GETLK(&mut fl)).is_err(),
            "the question itself fails"
        );
        assert!(lock_held(&fd, 3), "unknown liveness must not read as dead");
        let _ = std::fs::remove_file(path);
    }

    #[test]
    fn futex_wait_returns_at_once_when_the_word_differs() {
        let w = AtomicU32::new(5);
        // No timeout: a regression (sleeping although the value differs) hangs the test.
        futex_wait(&w, 4, None, false);
    }

    #[test]
    fn futex_wake_releases_a_waiter() {
        let w = Arc::new(AtomicU32::new(0));
        let waiter = {
            let w = w.clone();
            std::thread::spawn(move || {
                while w.load(Ordering::Acquire) == 0 {
                    futex_wait(&w, 0, None, false);
                }
            })
        };
        w.store(1, Ordering::Release);
        futex_wake(&w, false);
        waiter.join().expect("waiter woke and finished");
    }

    #[test]
    fn global_expedited_membarrier_works_once_registered() {
        if membarrier_register() {
            assert!(membarrier_global_expedited());
        } else {
            eprintln!("kernel lacks MEMBARRIER_CMD_REGISTER_GLOBAL_EXPEDITED");
        }
    }

    #[test]
    fn process_start_ticks_identifies_this_process() {
        let me = std::process::id();
        let start = process_start_ticks(me).expect("own /proc entry");
        assert!(process_alive(me, start));
        assert!(
            !process_alive(me, start + 1),
            "another start time is another process"
        );
        assert!(!process_alive(0, 0));
        assert!(coarse_now_ns() > 0);
    }
}

/// `struct futex_waitv` of `<linux/futex.h>` (libc does not export it).
#[repr(C)]
struct FutexWaitv {
    val: u64,
    uaddr: u64,
    flags: u32,
    reserved: u32,
}

/// `FUTEX2_SIZE_U32` and `FUTEX2_PRIVATE` of `<linux/futex.h>`.
const FUTEX2_SIZE_U32: u32 = 0x02;
const FUTEX2_PRIVATE: u32 = 128;

/// `futex_waitv` on two 32-bit words, each `(word, expected, shared)`. `Ok` when woken; an
/// error otherwise (`EAGAIN`: a word differs, `ETIMEDOUT`, `EINTR`, `ENOSYS`: no such call).
pub(crate) fn futex_waitv(
    words: [(&AtomicU32, u32, bool); 2],
    timeout: Option<Duration>,
) -> Result<(), nix::errno::Errno> {
    let waiters = words.map(|(word, val, shared)| FutexWaitv {
        val: u64::from(val),
        uaddr: word.as_ptr() as u64,
        flags: FUTEX2_SIZE_U32 | if shared { 0 } else { FUTEX2_PRIVATE },
        reserved: 0,
    });
    // futex_waitv takes an absolute CLOCK_MONOTONIC deadline.
    let deadline = timeout.and_then(|t| {
        let now = nix::time::clock_gettime(nix::time::ClockId::CLOCK_MONOTONIC).ok()?;
        let end = std::time::Duration::from(now).checked_add(t)?;
        Some(libc::timespec {
            tv_sec: libc::time_t::try_from(end.as_secs()).ok()?,
            tv_nsec: end.subsec_nanos() as libc::c_long,
        })
    });
    let ts_ptr = deadline
        .as_ref()
        .map_or(std::ptr::null(), |t| t as *const libc::timespec);
    // SAFETY: the kernel reads the two `futex_waitv` entries (which live on this stack for the
    // call) and the 4-byte words they point at, which the borrowed atomics keep alive and
    // aligned; `ts_ptr` is null or points at `deadline`, alive for the call. Nothing is written.
    let r = unsafe {
        libc::syscall(
            libc::SYS_futex_waitv,
            waiters.as_ptr(),
            2u32,
            0u32,
            ts_ptr,
            libc::CLOCK_MONOTONIC,
        )
    };
    nix::errno::Errno::result(r).map(drop)
}

/// The host's page size in bytes (4096 if it cannot be asked).
pub(crate) fn page_size() -> u64 {
    nix::unistd::sysconf(nix::unistd::SysconfVar::PAGE_SIZE)
        .ok()
        .flatten()
        .map_or(4096, |p| p as u64)
}

/// Maps `count` runs of `len` bytes of `fd` (run `i` from file offset `offset + i * len`), each
/// twice back to back, into one new reservation of `2 * count * len` bytes: byte `k` of run `i`
/// is at `base + 2 * i * len + k` and again at `base + (2 * i + 1) * len + k`
/// (docs/design.md §17, "The mirror"). `len` and `offset` must be multiples of the page size.
/// Returns the base; unmap it with [`unmap`] and the same total length.
pub(crate) fn map_mirrored(
    fd: &OwnedFd,
    offset: u64,
    len: u64,
    count: u64,
    writable: bool,
) -> std::io::Result<std::ptr::NonNull<u8>> {
    use nix::sys::mman::{mmap, mmap_anonymous, munmap, MapFlags, ProtFlags};
    use std::num::NonZeroUsize;
    let total = len
        .checked_mul(2)
        .and_then(|b| b.checked_mul(count))
        .and_then(|b| usize::try_from(b).ok())
        .and_then(NonZeroUsize::new)
        .ok_or_else(|| std::io::Error::from(std::io::ErrorKind::InvalidInput))?;
    let len_nz = usize::try_from(len)
        .ok()
        .and_then(NonZeroUsize::new)
        .ok_or_else(|| std::io::Error::from(std::io::ErrorKind::InvalidInput))?;
    // SAFETY: a fresh anonymous reservation that nothing else refers to: no existing memory is
    // affected; PROT_NONE until the file is mapped over it below.
    let base = unsafe {
        mmap_anonymous(
            None,
            total,
            ProtFlags::PROT_NONE,
            MapFlags::MAP_PRIVATE | MapFlags::MAP_NORESERVE,
        )
    }?
    .cast::<u8>();
    let prot = if writable {
        ProtFlags::PROT_READ | ProtFlags::PROT_WRITE
    } else {
        ProtFlags::PROT_READ
    };
    for i in 0..count {
        for copy in 0..2 {
            let at = (2 * i + copy) * len;
            // SAFETY: `at + len <= total`, so the fixed address lies inside the reservation made
            // above, which this function owns: MAP_FIXED replaces only our own PROT_NONE pages.
            let mapped = unsafe {
                let addr = base.as_ptr().add(at as usize);
                mmap(
                    NonZeroUsize::new(addr as usize),
                    len_nz,
                    prot,
                    MapFlags::MAP_SHARED | MapFlags::MAP_FIXED,
                    fd,
                    (offset + i * len) as libc::off_t,
                )
            };
            if let Err(e) = mapped {
                // SAFETY: the whole reservation is ours and nothing refers into it yet.
                let _ = unsafe { munmap(base.cast(), total.get()) };
                return Err(e.into());
            }
        }
    }
    Ok(base)
}

/// Unmaps a reservation made by [`map_mirrored`].
///
/// # Safety
///
/// `base` and `total` are those of one [`map_mirrored`] reservation, and nothing refers into it
/// any more.
pub(crate) unsafe fn unmap(base: std::ptr::NonNull<u8>, total: usize) {
    // SAFETY: the caller's contract.
    let _ = unsafe { nix::sys::mman::munmap(base.cast(), total) };
}

/// A new anonymous memory file of `len` bytes (`memfd_create`), for an in-process segment's
/// mirrored rings.
pub(crate) fn anonymous_file(len: u64) -> std::io::Result<OwnedFd> {
    let fd = nix::sys::memfd::memfd_create(
        c"shmbus-lanes",
        nix::sys::memfd::MemFdCreateFlag::MFD_CLOEXEC,
    )?;
    nix::unistd::ftruncate(&fd, len as i64)?;
    Ok(fd)
}
