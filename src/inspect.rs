//! Read-only views of buses for tools: listing `/dev/shm`, liveness of creators and producers.

use std::os::unix::fs::MetadataExt;

use crate::bus::{Bus, BusBuilder};
use crate::error::{Error, Result};
use crate::layout::HeaderSnapshot;
use crate::segment::{self, SHM_DIR, SHM_PREFIX};

/// One file in `/dev/shm`, as [`list`] finds it.
#[derive(Debug)]
pub struct Entry {
    /// File name in `/dev/shm`.
    pub file_name: String,
    /// The bus name, if the file is named like a bus (`shmbus.NAME`).
    pub name: Option<String>,
    /// File size in bytes.
    pub size: u64,
    /// Permission bits.
    pub mode: u32,
    /// Owner uid.
    pub uid: u32,
    /// The bus opened read-only, or why it could not be (foreign or corrupt segment, permission
    /// denied, ...). `None` for files not named like a bus.
    pub bus: Option<Result<Bus>>,
}

/// Lists `/dev/shm`: every `shmbus.*` object (opened read-only, trusting any owner and mode, as
/// an inspector does), and, with `include_foreign`, every other file too.
pub fn list(include_foreign: bool) -> std::io::Result<Vec<Entry>> {
    let mut out = Vec::new();
    for ent in std::fs::read_dir(SHM_DIR)? {
        let ent = ent?;
        let file_name = ent.file_name().to_string_lossy().into_owned();
        let Ok(meta) = ent.path().symlink_metadata() else {
            continue;
        };
        let name = file_name.strip_prefix(SHM_PREFIX).map(str::to_owned);
        if name.is_none() && !include_foreign {
            continue;
        }
        let bus = name.as_deref().map(open_for_inspection);
        out.push(Entry {
            file_name,
            name,
            size: meta.len(),
            mode: meta.mode() & 0o7777,
            uid: meta.uid(),
            bus,
        });
    }
    out.sort_by(|a, b| a.file_name.cmp(&b.file_name));
    Ok(out)
}

/// Opens a bus read-only for inspection, trusting any owner and mode (an inspector only reads).
pub fn open_for_inspection(name: &str) -> Result<Bus> {
    BusBuilder::new(name)
        .read_only()
        .accept_other_owner()
        .accept_shared_write()
        .open()
}

/// Whether the process that created the bus is still running (pid and start time both match).
pub fn creator_alive(h: &HeaderSnapshot) -> bool {
    segment::process_alive(h.creator_pid, h.creator_start)
}

/// Whether a bus is stale: no producer attached and its creator gone.
pub fn is_stale(bus: &Bus) -> bool {
    !bus.has_producers() && !creator_alive(&bus.header())
}

/// Checks a bus name against the naming rule.
pub fn validate_name(name: &str) -> Result<()> {
    segment::validate_name(name)
}

/// The `/dev/shm` path of a bus.
pub fn segment_path(name: &str) -> std::path::PathBuf {
    segment::segment_path(name)
}

/// Removes a bus (alias of [`Bus::remove`] for tools).
pub fn remove(name: &str) -> Result<()> {
    segment::remove(name)
}

#[allow(dead_code)]
fn _assert_error_is_send_sync() {
    fn f<T: Send + Sync>() {}
    f::<Error>();
}

/// How one step of [`checks`] went.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CheckStatus {
    /// The step passed.
    Pass,
    /// The step failed; `detail` says why.
    Fail,
    /// Not checked, because an earlier step it depends on failed.
    Skipped,
}

/// One step of the opening pipeline, as [`checks`] reports it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Check {
    /// What is checked ("name valid", "magic", ...).
    pub name: &'static str,
    /// How it went.
    pub status: CheckStatus,
    /// What was found: the value on success, the error on failure.
    pub detail: String,
}

/// Runs the opening pipeline one step at a time and reports every step, so that a tool can show
/// exactly which check a segment passes and which it fails: name valid, exists, regular file,
/// readable, owner, mode, size, magic, ABI version, geometry, size matches.
///
/// The owner and mode steps fail where a default [`Bus::open`] would refuse the segment; the
/// steps after them still run, since an inspector reads such segments anyway. Any other failure
/// skips the steps that depend on it. The header is read with `read(2)` (a copy, never a
/// mapping), so a segment truncated meanwhile cannot fault the caller.
pub fn checks(name: &str) -> Vec<Check> {
    let mut out = Vec::new();
    let mut step = |name: &'static str, r: std::result::Result<String, String>| {
        let ok = r.is_ok();
        let (status, detail) = match r {
            Ok(d) => (CheckStatus::Pass, d),
            Err(d) => (CheckStatus::Fail, d),
        };
        out.push(Check {
            name,
            status,
            detail,
        });
        ok
    };
    let _all_ran = run_checks(name, &mut step);
    const ALL: [&str; 11] = [
        "name valid",
        "exists",
        "regular file",
        "readable",
        "owner",
        "mode",
        "size >= header",
        "magic",
        "ABI version",
        "geometry",
        "size matches",
    ];
    for n in ALL.iter().skip(out.len()) {
        out.push(Check {
            name: n,
            status: CheckStatus::Skipped,
            detail: "an earlier check failed".into(),
        });
    }
    out
}

/// The steps of [`checks`] in order; stops at the first failure that later steps depend on.
fn run_checks(
    name: &str,
    step: &mut impl FnMut(&'static str, std::result::Result<String, String>) -> bool,
) -> Option<()> {
    use std::io::Read;
    use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};

    use crate::layout::{self, HeaderFault, HEADER_BYTES, MAX_SEGMENT_BYTES};

    let owned = || name.to_owned();
    step(
        "name valid",
        validate_name(name)
            .map(|()| format!("{name:?}"))
            .map_err(|e| e.to_string()),
    )
    .then_some(())?;
    let path = segment_path(name);
    let link = std::fs::symlink_metadata(&path).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => Error::NotFound { name: owned() }.to_string(),
        _ => Error::Io {
            name: owned(),
            op: "lstat",
            source: e,
        }
        .to_string(),
    });
    step(
        "exists",
        link.as_ref()
            .map(|_| path.display().to_string())
            .map_err(Clone::clone),
    )
    .then_some(())?;
    let ft = link.expect("checked just above").file_type();
    let kind = if ft.is_symlink() {
        "a symbolic link"
    } else if ft.is_dir() {
        "a directory"
    } else if ft.is_fifo() {
        "a FIFO"
    } else if ft.is_socket() {
        "a socket"
    } else if ft.is_block_device() || ft.is_char_device() {
        "a device"
    } else {
        "a regular file"
    };
    let regular = if ft.is_file() {
        Ok(kind.to_owned())
    } else {
        Err(format!(
            "{} ({kind})",
            Error::NotRegularFile { name: owned() }
        ))
    };
    step("regular file", regular).then_some(())?;
    // As shm_open(O_RDONLY) does, but never following a link planted after the check above.
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(&path)
        .map_err(|e| match e.raw_os_error() {
            Some(libc::EACCES | libc::EPERM) => Error::PermissionDenied {
                name: owned(),
                action: "open read-only",
            },
            Some(libc::ELOOP) => Error::NotRegularFile { name: owned() },
            Some(libc::ENOENT) => Error::NotFound { name: owned() },
            _ => Error::Io {
                name: owned(),
                op: "open",
                source: e,
            },
        });
    let mut file = match file {
        Ok(f) => {
            step("readable", Ok("opened read-only".into()));
            f
        }
        Err(e) => {
            step("readable", Err(e.to_string()));
            return None;
        }
    };
    let meta = match file.metadata() {
        Ok(m) if m.file_type().is_file() => m,
        Ok(_) => {
            step(
                "owner",
                Err(Error::NotRegularFile { name: owned() }.to_string()),
            );
            return None;
        }
        Err(e) => {
            step(
                "owner",
                Err(Error::Io {
                    name: owned(),
                    op: "fstat",
                    source: e,
                }
                .to_string()),
            );
            return None;
        }
    };
    let ours = nix::unistd::geteuid().as_raw();
    step(
        "owner",
        if meta.uid() == ours {
            Ok(format!("uid {ours} (us)"))
        } else {
            Err(Error::ForeignOwner {
                name: owned(),
                owner: meta.uid(),
                ours,
            }
            .to_string())
        },
    );
    let perm = meta.mode() & 0o7777;
    step(
        "mode",
        if perm & 0o022 == 0 {
            Ok(format!("{perm:04o}"))
        } else {
            Err(Error::InsecureMode {
                name: owned(),
                mode: perm,
            }
            .to_string())
        },
    );
    let size = meta.len();
    let size_ok = if size < HEADER_BYTES as u64 {
        Err(Error::Truncated {
            name: owned(),
            size,
            expected: HEADER_BYTES as u64,
        }
        .to_string())
    } else if size > MAX_SEGMENT_BYTES {
        Err(Error::TooLarge {
            name: owned(),
            size,
            max: MAX_SEGMENT_BYTES,
        }
        .to_string())
    } else {
        Ok(format!("{size} bytes"))
    };
    step("size >= header", size_ok).then_some(())?;
    let mut page = vec![0u8; HEADER_BYTES];
    if let Err(e) = file.read_exact(&mut page) {
        // Shrunk since fstat: report it where the header is needed.
        step(
            "magic",
            Err(Error::Io {
                name: owned(),
                op: "read",
                source: e,
            }
            .to_string()),
        );
        return None;
    }
    let words: Vec<crate::sync::AtomicU64> = page
        .chunks_exact(8)
        .map(|c| {
            crate::sync::AtomicU64::new(u64::from_le_bytes(c.try_into().expect("chunks of 8")))
        })
        .collect();
    let h = layout::read_header(&words);
    // `validate` checks in pipeline order; run it once against the size the header records (all
    // but the last step) and once against the real size, and attribute each fault to its step.
    let fault = |f: HeaderFault, size: u64| {
        match f {
            HeaderFault::NotInitialised => Error::NotInitialised { name: owned() },
            HeaderFault::BadMagic(found) => Error::BadMagic {
                name: owned(),
                found,
            },
            HeaderFault::Abi(found) => Error::AbiMismatch {
                name: owned(),
                found,
                expected: layout::ABI_VERSION,
            },
            HeaderFault::Corrupt(reason) => Error::Corrupt {
                name: owned(),
                reason,
            },
            HeaderFault::Truncated { expected } => Error::Truncated {
                name: owned(),
                size,
                expected,
            },
        }
        .to_string()
    };
    match layout::validate(&h, h.segment_size) {
        Err(f @ (HeaderFault::NotInitialised | HeaderFault::BadMagic(_))) => {
            step("magic", Err(fault(f, size)));
            return None;
        }
        Err(f @ HeaderFault::Abi(_)) => {
            step("magic", Ok(format!("{:#018x}", h.magic)));
            step("ABI version", Err(fault(f, size)));
            return None;
        }
        Err(f) => {
            step("magic", Ok(format!("{:#018x}", h.magic)));
            step("ABI version", Ok(h.abi_version.to_string()));
            step("geometry", Err(fault(f, h.segment_size)));
            return None;
        }
        Ok(_) => {
            step("magic", Ok(format!("{:#018x}", h.magic)));
            step("ABI version", Ok(h.abi_version.to_string()));
            step(
                "geometry",
                Ok(format!(
                    "{} slots of {} bytes, capacity {}",
                    h.slot_count, h.slot_stride, h.capacity
                )),
            );
        }
    }
    step(
        "size matches",
        layout::validate(&h, size)
            .map(|_| format!("{size} bytes"))
            .map_err(|f| fault(f, size)),
    )
    .then_some(())
}
