//! Read-only views of segments for tools: listing `/dev/shm`, the kind of a segment, liveness of
//! creators and participants.

use std::os::unix::fs::MetadataExt;

use crate::board::BoardBuilder;
use crate::bus::{Bus, BusBuilder};
use crate::error::{Error, Result};
use crate::queue::QueueBuilder;
use crate::records::RecordsBuilder;
use crate::segment::header::{HeaderSnapshot, SegmentKind};
use crate::segment::{self, Access, Trust, Verdict, SHM_DIR, SHM_PREFIX};

/// One file in `/dev/shm`, as [`list`] finds it.
#[derive(Debug)]
pub struct Entry {
    /// File name in `/dev/shm`.
    pub file_name: String,
    /// The segment name, if the file is named like a segment (`shmbus.NAME`).
    pub name: Option<String>,
    /// File size in bytes.
    pub size: u64,
    /// Permission bits.
    pub mode: u32,
    /// Owner uid.
    pub uid: u32,
    /// The segment's kind and header, or why they could not be read (foreign or corrupt
    /// segment, permission denied, ...). `None` for files not named like a segment.
    pub segment: Option<Result<Probe>>,
}

/// Lists `/dev/shm`: every `shmbus.*` object (its kind and header read with [`probe`]), and,
/// with `include_foreign`, every other file too.
///
/// # Errors
///
/// The I/O error of reading the `/dev/shm` directory. A segment that cannot be read is not an
/// error of the listing: its [`Entry::segment`] holds why.
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
        let segment = name.as_deref().map(probe);
        out.push(Entry {
            file_name,
            name,
            size: meta.len(),
            mode: meta.mode() & 0o7777,
            uid: meta.uid(),
            segment,
        });
    }
    out.sort_by(|a, b| a.file_name.cmp(&b.file_name));
    Ok(out)
}

/// What a segment's header says, whatever its kind, as [`probe`] reads it.
#[derive(Clone, Debug)]
pub struct Probe {
    /// The segment name (the part after `shmbus.` in `/dev/shm`).
    pub name: String,
    /// The kind recorded in the header.
    pub kind: SegmentKind,
    /// A copy of the header, read once.
    pub header: HeaderSnapshot,
}

impl Probe {
    /// Whether the process that created the segment is still running.
    pub fn creator_alive(&self) -> bool {
        creator_alive(&self.header)
    }

    /// Whether any participant of any role is attached and alive: a bus's or records segment's
    /// producers, a board's writers, a queue's senders and receivers. Read-only subscribers and
    /// readers leave no trace in a segment and are not counted.
    ///
    /// # Errors
    ///
    /// Those of opening the segment read-only with its kind's own open (the segment may have
    /// been removed, replaced or damaged since it was probed).
    pub fn has_live_participants(&self) -> Result<bool> {
        let name = self.name.as_str();
        Ok(match self.kind {
            SegmentKind::Bus => open_for_inspection(name)?.has_producers(),
            SegmentKind::Queue => QueueBuilder::new(name)
                .read_only()
                .accept_other_owner()
                .accept_shared_write()
                .open()?
                .participants()
                .iter()
                .any(|p| p.alive),
            SegmentKind::Board => BoardBuilder::new(name)
                .read_only()
                .accept_other_owner()
                .accept_shared_write()
                .open()?
                .has_writers(),
            SegmentKind::Records => RecordsBuilder::new(name)
                .read_only()
                .accept_other_owner()
                .accept_shared_write()
                .open()?
                .has_producers(),
            SegmentKind::Lanes => {
                let lanes = crate::lanes::LanesBuilder::new(name)
                    .read_only()
                    .accept_other_owner()
                    .accept_shared_write()
                    .open()?;
                lanes.has_consumer() || lanes.lane_info().iter().any(|l| l.in_use)
            }
        })
    }

    /// Whether the segment is stale: no live participant of any role (see
    /// [`Probe::has_live_participants`]) and its creator gone. Nothing will write to a stale
    /// segment unless a new participant attaches.
    ///
    /// # Errors
    ///
    /// Those of [`Probe::has_live_participants`].
    pub fn is_stale(&self) -> Result<bool> {
        Ok(!self.creator_alive() && !self.has_live_participants()?)
    }
}

/// Reads a segment's kind and header, whatever its kind, through the opening pipeline's steps up
/// to the ABI version (a copy read with `read(2)`, never a mapping; any owner and mode trusted,
/// as an inspector only reads). A tool then opens the segment with its kind's own open.
///
/// # Errors
///
/// The pipeline's errors up to the ABI version: [`Error::InvalidName`], [`Error::NotFound`],
/// [`Error::NotRegularFile`], [`Error::PermissionDenied`], [`Error::NotInitialised`],
/// [`Error::BadMagic`], [`Error::Truncated`], [`Error::TooLarge`], [`Error::AbiMismatch`];
/// then [`Error::UnknownKind`] for a kind word this version does not know.
pub fn probe(name: &str) -> Result<Probe> {
    // The kind the pipeline expects plays no part: `identify` stops before the kind step.
    let expect = segment::Expect::bus(None);
    let trust = Trust {
        other_owner: true,
        shared_write: true,
    };
    let mut p = segment::Probe::new(name, Access::ReadOnly, trust, &expect, segment::Via::Copy);
    let (kind, header) = segment::identify(&mut p)?;
    Ok(Probe {
        name: name.to_owned(),
        kind,
        header,
    })
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

/// Whether a bus is stale: no producer attached and its creator gone. For a segment of any
/// kind, see [`Probe::is_stale`].
pub fn is_stale(bus: &Bus) -> bool {
    !bus.has_producers() && !creator_alive(&bus.header())
}

/// Checks a segment name against the naming rule.
///
/// # Errors
///
/// [`crate::Error::InvalidName`], with the offending character where there is one.
pub fn validate_name(name: &str) -> Result<()> {
    segment::validate_name(name)
}

/// The `/dev/shm` path of a segment.
pub fn segment_path(name: &str) -> std::path::PathBuf {
    segment::segment_path(name)
}

/// Removes a segment of any kind (alias of [`Bus::remove`] for tools).
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
