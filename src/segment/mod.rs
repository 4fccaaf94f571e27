//! The segment layer every kind shares: naming, creation, opening (a validation pipeline, in
//! `pipeline`), mapping, the producer table and liveness (`producers`), and the system calls
//! (`sys`, where all the layer's FFI lives).
//!
//! The ring code never sees any of this: it gets a `&[AtomicU64]` from [`Segment::words`].

pub(crate) mod checks;
pub(crate) mod header;
pub(crate) mod kind;
pub(crate) mod payload;
mod pipeline;
pub(crate) mod producers;

use std::os::fd::{AsRawFd, OwnedFd};

use std::time::{SystemTime, UNIX_EPOCH};

use memmap2::{MmapOptions, MmapRaw};
use nix::errno::Errno;
use nix::fcntl::OFlag;
use nix::sys::stat::Mode;

use crate::error::{Error, Result};
use crate::segment::header::Wakeup;
use crate::segment::header::{
    Geometry, HeaderInit, HeaderSnapshot, ProducerMode, SegmentKind, TypeInfo,
};
use crate::sync::{AtomicU32, AtomicU64};
use crate::sys;

#[allow(unused_imports)]
// `unlock` and the membarrier calls serve the ring's wake-up handshake.
pub(crate) use crate::sys::{
    coarse_now_ns, fork_generation, futex_wait, futex_wake, install_fork_hook, lock_held,
    membarrier_global_expedited, membarrier_register, process_alive, process_start_ticks, try_lock,
    unlock, LockKind,
};
pub(crate) use pipeline::{identify, report, validate_bytes, Expect, Probe, Shape, Verdict, Via};

/// Prefix of every shmbus object name in `/dev/shm`.
pub(crate) const SHM_PREFIX: &str = "shmbus.";
/// Where POSIX shared-memory objects live.
pub(crate) const SHM_DIR: &str = "/dev/shm";
/// Longest bus name.
pub(crate) const NAME_MAX: usize = 200;

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

pub(crate) fn shm_name(name: &str) -> String {
    format!("/{SHM_PREFIX}{name}")
}

/// Read-only or read-write access to a segment.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Access {
    ReadOnly,
    ReadWrite,
}

/// What an opener accepts beyond the safe defaults (docs/design.md §1).
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Trust {
    pub other_owner: bool,
    pub shared_write: bool,
}

/// What `create` and `heap` write into a new segment: the common shape, the wake-up choice, and
/// the kind's own words, written before the magic publishes the segment (docs/design.md §1).
pub(crate) struct Plan<'a> {
    pub shape: Shape,
    pub wakeup: Wakeup,
    pub init: &'a dyn Fn(&[AtomicU64]),
}

impl Plan<'static> {
    /// A segment with no words of its kind's own and the default wake-up choice.
    pub(crate) fn plain(shape: Shape) -> Self {
        Plan {
            shape,
            wakeup: Wakeup::default(),
            init: &|_| {},
        }
    }
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
    pub(crate) kind: SegmentKind,
}

// SAFETY: `base` points into `memory`, which the segment owns and never moves (a mapping, or a
// boxed slice); everything reached through it is atomics, which are Sync (docs/design.md §3).
unsafe impl Send for Segment {}
// SAFETY: as for Send: shared access goes through atomics only.
unsafe impl Sync for Segment {}

impl Segment {
    /// The segment as words. Every access to shared memory goes through this slice of atomics.
    #[inline]
    pub(crate) fn words(&self) -> &[AtomicU64] {
        // SAFETY: `base` is 8-aligned (page-aligned mapping or a boxed `[AtomicU64]`) and valid
        // for `len_words` words for as long as `self` lives (docs/design.md §1: we map exactly the
        // validated size and keep the mapping until drop). `AtomicU64` has the size and alignment
        // of `u64`, and all concurrent access by any process is atomic (docs/design.md §3).
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
        header::read_header(self.words())
    }

    /// An in-process segment of `plan` on the heap (no `/dev/shm`, no locks).
    pub(crate) fn heap(plan: Plan<'_>) -> Segment {
        let Shape {
            kind,
            geometry,
            mode,
            ty,
            first_seq,
        } = plan.shape;
        let words = geometry
            .segment_bytes()
            .expect("Geometry::new checked the size") as usize
            / 8;
        let mem: Vec<AtomicU64> = (0..words).map(|_| AtomicU64::new(0)).collect();
        let fields = init(kind, geometry, mode, &ty, first_seq, plan.wakeup);
        header::write_fields(&mem, &fields);
        (plan.init)(&mem);
        header::publish(&mem);
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
            kind,
        }
    }

    /// Creates a new segment of `plan` (docs/design.md §1): the common header words, then the
    /// kind's own (`plan.init`), then the magic (Release), then the final mode.
    pub(crate) fn create(name: &str, plan: Plan<'_>, perm: u32) -> Result<Segment> {
        validate_name(name)?;
        let Shape {
            kind,
            geometry,
            mode,
            ty,
            first_seq,
        } = plan.shape;
        let size = geometry
            .segment_bytes()
            .expect("Geometry::new checked the size");
        // Created with owner-write only, so that nobody can open it read-only before it is ready;
        // the final mode is set by fchmod at the end, on the fd, regardless of the umask.
        let fd = nix::sys::mman::shm_open(
            shm_name(name).as_str(),
            OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_RDWR | OFlag::O_NOFOLLOW,
            Mode::from_bits_truncate(pipeline::CREATING_MODE),
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
        let mut seg = Segment::from_map(name, map, fd, Access::ReadWrite);
        seg.set_shape(Shape {
            kind,
            geometry,
            mode,
            ty,
            first_seq,
        });
        let fields = init(kind, geometry, mode, &seg.ty, first_seq, plan.wakeup);
        header::write_fields(seg.words(), &fields);
        (plan.init)(seg.words());
        header::publish(seg.words());
        nix::sys::stat::fchmod(
            seg.lock_fd().expect("mapped").as_raw_fd(),
            Mode::from_bits_truncate(perm & 0o777),
        )
        .map_err(|e| cleanup(Error::io(name, "fchmod", e)))?;
        Ok(seg)
    }

    /// A mapped segment whose shape is not known yet: until `set_shape`, only its header may be
    /// read (the mapping holds at least a header page; the open pipeline checked the size).
    fn from_map(name: &str, map: MmapRaw, fd: OwnedFd, access: Access) -> Segment {
        let base = map.as_ptr() as *const AtomicU64;
        let len_words = map.len() / 8;
        Segment {
            name: name.to_owned(),
            memory: Memory::Mapped { _map: map, fd },
            base,
            len_words,
            access,
            geometry: Geometry {
                slot_count: 1,
                stride_words: 8,
                capacity: 1,
            },
            mode: ProducerMode::Single,
            ty: TypeInfo::raw(),
            first_seq: 0,
            kind: SegmentKind::Bus,
        }
    }

    fn set_shape(&mut self, shape: Shape) {
        self.kind = shape.kind;
        self.geometry = shape.geometry;
        self.mode = shape.mode;
        self.ty = shape.ty;
        self.first_seq = shape.first_seq;
    }

    /// Opens an existing segment of the kind (and, for a typed open, the message type) that
    /// `expect` names.
    pub(crate) fn open_expecting(
        name: &str,
        access: Access,
        trust: Trust,
        expect: &Expect,
    ) -> Result<Segment> {
        let mut probe = Probe::new(name, access, trust, expect, Via::Map);
        let shape = pipeline::run(&mut probe)?;
        let mut seg = probe
            .segment
            .take()
            .expect("the header-read step maps the segment");
        seg.set_shape(shape);
        Ok(seg)
    }

    /// The mapping's own file descriptor (`None` for a heap segment): for `F_OFD_GETLK` queries
    /// of producer locks, which it never takes itself.
    pub(crate) fn lock_fd(&self) -> Option<&OwnedFd> {
        match &self.memory {
            Memory::Mapped { fd, .. } => Some(fd),
            Memory::Heap(_) => None,
        }
    }

    /// A new open file description of the same object, for a producer's own locks (OFD locks
    /// belong to a file description, so every producer needs its own). A forked child gives
    /// its copy of the descriptor up (docs/design.md §10, "Fork").
    pub(crate) fn reopen_for_lock(&self) -> Result<Option<LockFd>> {
        let Some(fd) = self.lock_fd() else {
            return Ok(None);
        };
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
        Ok(Some(LockFd::new(OwnedFd::from(file))))
    }

    /// The header's wake-up word (docs/design.md §7, "Wake-up choice"), as stored: callers
    /// decide what a value other than 0 or 1 (a forged header) means for their side.
    pub(crate) fn wakeup_word(&self) -> u64 {
        self.words()[header::W_WAKEUP].load(crate::sync::Ordering::Relaxed)
    }

    /// The low half of header word `index` as a futex word (docs/design.md §7).
    #[inline]
    pub(crate) fn futex_word(&self, index: usize) -> &AtomicU32 {
        assert!(
            index < header::W_PRODUCERS,
            "futex words live in the header"
        );
        // The high half is unused (docs/design.md §7).
        crate::sync::futex_half(&self.words()[index])
    }
}

fn init(
    kind: SegmentKind,
    geometry: Geometry,
    mode: ProducerMode,
    ty: &TypeInfo,
    first_seq: u64,
    wakeup: Wakeup,
) -> HeaderInit<'_> {
    let pid = std::process::id();
    HeaderInit {
        kind,
        geometry,
        mode,
        ty,
        first_seq,
        wakeup,
        creator_pid: pid,
        creator_start: process_start_ticks(pid).unwrap_or(0),
        created_ns: SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0),
    }
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

/// The descriptor that carries an attachment's OFD locks. While it lives, a forked child of this
/// process replaces its copy with `/dev/null` (`sys::after_fork_in_child`), so that the locks —
/// the kernel's word that this participant is alive — never outlive the process that took them.
#[derive(Debug)]
pub(crate) struct LockFd {
    fd: OwnedFd,
    /// Its slot in the fork table (`None`: the table was full).
    slot: Option<usize>,
    /// [`sys::fork_generation`] when the attachment was made.
    generation: u64,
}

impl LockFd {
    fn new(fd: OwnedFd) -> Self {
        let slot = sys::track_lock_fd(fd.as_raw_fd());
        LockFd {
            fd,
            slot,
            generation: sys::fork_generation(),
        }
    }

    /// Whether this process is a fork of the one that made the attachment.
    #[inline]
    pub(crate) fn forked(&self) -> bool {
        sys::fork_generation() != self.generation
    }
}

impl std::ops::Deref for LockFd {
    type Target = OwnedFd;
    fn deref(&self) -> &OwnedFd {
        &self.fd
    }
}

impl Drop for LockFd {
    fn drop(&mut self) {
        // Untracked before the descriptor closes: its number may be reused at once.
        if let Some(slot) = self.slot {
            sys::untrack_lock_fd(slot);
        }
    }
}
