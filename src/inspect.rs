//! Read-only views of buses for tools: listing `/dev/shm`, liveness of creators and producers.

use std::os::unix::fs::MetadataExt;

use crate::bus::{Bus, BusBuilder};
use crate::error::{Error, Result};
use crate::layout::HeaderSnapshot;
use crate::segment::{self, Access, Trust, Verdict, SHM_DIR, SHM_PREFIX};

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
///
/// # Errors
///
/// The I/O error of reading the `/dev/shm` directory. A bus that cannot be opened is not an
/// error of the listing: its [`Entry::bus`] holds why.
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
///
/// # Errors
///
/// Those of [`crate::Bus::open_read_only`], except that another owner and group/other write
/// bits are accepted.
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
///
/// # Errors
///
/// [`crate::Error::InvalidName`], with the offending character where there is one.
pub fn validate_name(name: &str) -> Result<()> {
    segment::validate_name(name)
}

/// The `/dev/shm` path of a bus.
pub fn segment_path(name: &str) -> std::path::PathBuf {
    segment::segment_path(name)
}

/// Removes a bus (alias of [`Bus::remove`] for tools).
///
/// # Errors
///
/// As [`crate::Bus::remove`].
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
/// readable, owner, mode, magic, size >= header, header read, ABI version, kind, geometry, size
/// matches, type. These are the very steps [`Bus::open`] runs.
///
/// The owner and mode steps fail where a default [`Bus::open`] would refuse the segment; the
/// steps after them still run, since an inspector reads such segments anyway. Any other failure
/// skips the steps that depend on it. The header is read with `read(2)` (a copy, never a
/// mapping), so a segment truncated meanwhile cannot fault the caller; the object is opened
/// non-blocking, so a FIFO planted under a bus name cannot hang it.
pub fn checks(name: &str) -> Vec<Check> {
    let expect = segment::Expect::bus(None);
    let mut probe = segment::Probe::new(
        name,
        Access::ReadOnly,
        Trust::default(),
        &expect,
        segment::Via::Copy,
    );
    let mut out = Vec::new();
    segment::report(&mut probe, |step, verdict| {
        let (status, detail) = match verdict {
            Verdict::Pass(d) => (CheckStatus::Pass, d),
            Verdict::Fail(e) => (CheckStatus::Fail, e.to_string()),
            Verdict::Skipped => (CheckStatus::Skipped, "an earlier check failed".into()),
        };
        out.push(Check {
            name: step,
            status,
            detail,
        });
    });
    out
}
