//! Opening a segment, as data: a list of named steps, each failing with its own typed error.
//!
//! The library's open runs the steps in order and stops at the first failure; the inspector's
//! `checks` runs the very same steps and reports each verdict (docs/design.md §1). The steps
//! never block (the object is opened `O_NONBLOCK`, so a FIFO planted under a bus name cannot hang
//! anyone), refuse anything but a regular file before reading it, judge the magic on whatever
//! bytes a short file holds before judging its size, and check every header field with checked
//! arithmetic before anything is mapped beyond the validated size.

use std::fs::{File, FileType};
use std::os::fd::OwnedFd;
use std::os::unix::fs::{FileExt, FileTypeExt, MetadataExt};
use std::time::{Duration, Instant};

use memmap2::MmapOptions;
use nix::errno::Errno;
use nix::fcntl::OFlag;
use nix::sys::stat::Mode;

use super::checks;
use super::header::{
    self, Geometry, HeaderSnapshot, ProducerMode, SegmentKind, TypeInfo, HEADER_BYTES, MAGIC,
    MAX_SEGMENT_BYTES,
};
use crate::error::{Error, Result};

use super::{segment_path, shm_name, validate_name, Access, Segment, Trust};

/// How long an opener waits for a creator to finish initialising the header.
const INIT_WAIT: Duration = Duration::from_millis(100);

/// The mode a creator gives the object until the header is written (docs/design.md §1).
pub(super) const CREATING_MODE: u32 = 0o200;

/// What the opener expects to find.
#[derive(Clone, Debug)]
pub(crate) struct Expect {
    /// The segment kind.
    pub kind: SegmentKind,
    /// The message type of a typed open; `None` (or raw bytes) accepts any.
    pub ty: Option<TypeInfo>,
}

impl Expect {
    /// A bus carrying `ty` (`None`: any type).
    pub(crate) fn bus(ty: Option<TypeInfo>) -> Self {
        Expect {
            kind: SegmentKind::Bus,
            ty,
        }
    }
}

/// A validated segment's shape, read once from its header and never re-read from shared memory.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Shape {
    pub kind: SegmentKind,
    pub geometry: Geometry,
    pub mode: ProducerMode,
    pub ty: TypeInfo,
    pub first_seq: u64,
}

/// How the header is reached once the file passed the checks before it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Via {
    /// Map the segment (the library: the mapping is what it opens).
    Map,
    /// Read a private copy of the header page with `read(2)` (tools: a segment truncated
    /// meanwhile cannot fault the caller).
    Copy,
}

/// What a failed step means for a caller that reports every step.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum OnFail {
    /// Later steps depend on this one: they are skipped.
    Stop,
    /// A policy the caller may waive (owner, mode): later steps still run.
    Continue,
}

/// One step of the pipeline.
pub(crate) struct Step {
    /// What is checked, as the inspector shows it.
    pub name: &'static str,
    pub on_fail: OnFail,
    /// Runs the check; on success says what was found.
    run: fn(&mut Probe<'_>) -> Result<String>,
}

/// The steps of opening, in order.
pub(crate) const STEPS: &[Step] = &[
    step("name valid", OnFail::Stop, name_valid),
    step("exists", OnFail::Stop, exists),
    step("regular file", OnFail::Stop, regular_file),
    step("readable", OnFail::Stop, readable),
    step("owner", OnFail::Continue, owner),
    step("mode", OnFail::Continue, mode),
    step("magic", OnFail::Stop, magic),
    step("size >= header", OnFail::Stop, size_in_range),
    step("header read", OnFail::Stop, header_read),
    step("ABI version", OnFail::Stop, abi_version),
    step("kind", OnFail::Stop, kind),
    step("geometry", OnFail::Stop, geometry),
    step("size matches", OnFail::Stop, size_matches),
    step("type", OnFail::Stop, message_type),
];

/// The first step that needs no file: the rest judge the header bytes.
const FIRST_CONTENT_STEP: usize = 6;

const fn step(
    name: &'static str,
    on_fail: OnFail,
    run: fn(&mut Probe<'_>) -> Result<String>,
) -> Step {
    Step { name, on_fail, run }
}

/// What the steps have learned so far about one segment.
pub(crate) struct Probe<'a> {
    name: &'a str,
    access: Access,
    trust: Trust,
    expect: &'a Expect,
    via: Via,
    link_type: Option<FileType>,
    file: Option<File>,
    size: u64,
    perm: u32,
    uid: u32,
    /// The first bytes of the object (up to a header page), as `read(2)` returned them.
    head: Vec<u8>,
    header: Option<HeaderSnapshot>,
    kind: Option<SegmentKind>,
    geometry: Option<(Geometry, ProducerMode)>,
    /// Via::Map: the mapped segment, its shape filled in once every step passed.
    pub(super) segment: Option<Segment>,
}

impl<'a> Probe<'a> {
    pub(crate) fn new(
        name: &'a str,
        access: Access,
        trust: Trust,
        expect: &'a Expect,
        via: Via,
    ) -> Self {
        Probe {
            name,
            access,
            trust,
            expect,
            via,
            link_type: None,
            file: None,
            size: 0,
            perm: 0,
            uid: 0,
            head: Vec::new(),
            header: None,
            kind: None,
            geometry: None,
            segment: None,
        }
    }

    fn owned(&self) -> String {
        self.name.to_owned()
    }

    fn header(&self) -> &HeaderSnapshot {
        self.header
            .as_ref()
            .expect("the header-read step ran before")
    }

    fn geometry(&self) -> &(Geometry, ProducerMode) {
        self.geometry
            .as_ref()
            .expect("the geometry step ran before")
    }

    /// The shape of a segment every step accepted.
    fn shape(&self) -> Shape {
        let h = self.header();
        let (geometry, mode) = *self.geometry();
        Shape {
            kind: self.kind.expect("the kind step ran before"),
            geometry,
            mode,
            ty: h.ty.clone(),
            first_seq: h.first_seq,
        }
    }
}

/// Runs every step in order and stops at the first failure: the library's open. Returns the
/// shape of the accepted segment.
pub(crate) fn run(probe: &mut Probe<'_>) -> Result<Shape> {
    for s in STEPS {
        (s.run)(probe)?;
    }
    Ok(probe.shape())
}

/// Runs the steps up to the ABI version, then reads the kind word as it is, whatever the kind
/// `probe` expects: how a tool learns which kind's own open to run (docs/design.md §1). Returns
/// the kind and the header.
pub(crate) fn identify(probe: &mut Probe<'_>) -> Result<(SegmentKind, HeaderSnapshot)> {
    for s in STEPS.iter().take_while(|s| s.name != "kind") {
        (s.run)(probe)?;
    }
    let h = probe.header().clone();
    let kind = h.kind().ok_or_else(|| Error::UnknownKind {
        name: probe.owned(),
        word: h.kind_word,
    })?;
    Ok((kind, h))
}

/// One step's verdict, as [`report`] gives it.
pub(crate) enum Verdict {
    Pass(String),
    Fail(Error),
    Skipped,
}

/// Runs the same steps, reporting every verdict: a failed `Continue` step lets the rest run,
/// any other failure skips them.
pub(crate) fn report(probe: &mut Probe<'_>, mut each: impl FnMut(&'static str, Verdict)) {
    let mut stopped = false;
    for s in STEPS {
        if stopped {
            each(s.name, Verdict::Skipped);
            continue;
        }
        match (s.run)(probe) {
            Ok(detail) => each(s.name, Verdict::Pass(detail)),
            Err(e) => {
                stopped = s.on_fail == OnFail::Stop;
                each(s.name, Verdict::Fail(e));
            }
        }
    }
}

/// The content steps (magic onwards) over raw bytes, as if read from a segment of `file_size`
/// bytes: what `read(2)` would return is the first `file_size` bytes, at most a header page.
pub(crate) fn validate_bytes(name: &str, bytes: &[u8], file_size: u64) -> Result<Shape> {
    let expect = Expect::bus(None);
    let mut probe = Probe::new(name, Access::ReadOnly, Trust::default(), &expect, Via::Copy);
    let n = bytes
        .len()
        .min(HEADER_BYTES)
        .min(usize::try_from(file_size).unwrap_or(usize::MAX));
    probe.head = bytes[..n].to_vec();
    probe.size = file_size;
    probe.perm = 0o600;
    for s in &STEPS[FIRST_CONTENT_STEP..] {
        (s.run)(&mut probe)?;
    }
    Ok(probe.shape())
}

fn name_valid(p: &mut Probe<'_>) -> Result<String> {
    validate_name(p.name)?;
    Ok(format!("{:?}", p.name))
}

fn exists(p: &mut Probe<'_>) -> Result<String> {
    let path = segment_path(p.name);
    let meta = std::fs::symlink_metadata(&path).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => Error::NotFound { name: p.owned() },
        _ => Error::Io {
            name: p.owned(),
            op: "lstat",
            source: e,
        },
    })?;
    p.link_type = Some(meta.file_type());
    Ok(path.display().to_string())
}

/// What a file type is, in words.
fn describe(ft: FileType) -> &'static str {
    if ft.is_file() {
        "a regular file"
    } else if ft.is_symlink() {
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
        "not a regular file"
    }
}

fn regular_file(p: &mut Probe<'_>) -> Result<String> {
    let ft = p.link_type.expect("the exists step ran before");
    if !ft.is_file() {
        return Err(Error::NotRegularFile {
            name: p.owned(),
            found: describe(ft),
        });
    }
    Ok(describe(ft).into())
}

/// A creator that has not finished yet leaves the object owner-write-only.
fn creation_in_progress(name: &str) -> bool {
    std::fs::symlink_metadata(segment_path(name))
        .map(|m| {
            m.file_type().is_file()
                && m.mode() & 0o777 == CREATING_MODE
                && m.uid() == nix::unistd::geteuid().as_raw()
        })
        .unwrap_or(false)
}

fn readable(p: &mut Probe<'_>) -> Result<String> {
    let (flags, action) = match p.access {
        Access::ReadOnly => (OFlag::O_RDONLY, "open read-only"),
        Access::ReadWrite => (OFlag::O_RDWR, "open read-write"),
    };
    // O_NONBLOCK: whatever was swapped in since the check above (a FIFO) cannot block the open;
    // it is refused by the fstat below. O_NOFOLLOW: a planted symlink is never followed.
    let fd = nix::sys::mman::shm_open(
        shm_name(p.name).as_str(),
        flags | OFlag::O_NONBLOCK | OFlag::O_NOFOLLOW,
        Mode::empty(),
    )
    .map_err(|e| match e {
        Errno::ENOENT => Error::NotFound { name: p.owned() },
        Errno::ELOOP => Error::NotRegularFile {
            name: p.owned(),
            found: "a symbolic link",
        },
        Errno::ENXIO => Error::NotRegularFile {
            name: p.owned(),
            found: "a socket or device",
        },
        Errno::EACCES | Errno::EPERM if creation_in_progress(p.name) => {
            Error::NotInitialised { name: p.owned() }
        }
        Errno::EACCES | Errno::EPERM => Error::PermissionDenied {
            name: p.owned(),
            action,
        },
        e => Error::io(p.name, "shm_open", e),
    })?;
    let file = File::from(fd);
    let meta = file.metadata().map_err(|e| Error::Io {
        name: p.owned(),
        op: "fstat",
        source: e,
    })?;
    if !meta.file_type().is_file() {
        return Err(Error::NotRegularFile {
            name: p.owned(),
            found: describe(meta.file_type()),
        });
    }
    p.size = meta.len();
    p.perm = meta.mode() & 0o7777;
    p.uid = meta.uid();
    p.file = Some(file);
    Ok(format!(
        "opened {}",
        match p.access {
            Access::ReadOnly => "read-only",
            Access::ReadWrite => "read-write",
        }
    ))
}

fn owner(p: &mut Probe<'_>) -> Result<String> {
    let ours = nix::unistd::geteuid().as_raw();
    if p.uid == ours {
        return Ok(format!("uid {ours} (us)"));
    }
    if p.trust.other_owner {
        return Ok(format!("uid {} (accepted)", p.uid));
    }
    Err(Error::ForeignOwner {
        name: p.owned(),
        owner: p.uid,
        ours,
    })
}

fn mode(p: &mut Probe<'_>) -> Result<String> {
    if p.perm & 0o022 == 0 {
        return Ok(format!("{:04o}", p.perm));
    }
    if p.trust.shared_write {
        return Ok(format!("{:04o} (accepted)", p.perm));
    }
    Err(Error::InsecureMode {
        name: p.owned(),
        mode: p.perm,
    })
}

/// Reads up to a header page from the start of the object into `p.head` (a short read is a
/// short file, or one truncated since its fstat).
fn read_head(p: &mut Probe<'_>) -> Result<()> {
    let Some(file) = &p.file else { return Ok(()) };
    let mut buf = vec![0u8; HEADER_BYTES];
    let mut n = 0;
    while n < buf.len() {
        match file.read_at(&mut buf[n..], n as u64) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => {
                return Err(Error::Io {
                    name: p.owned(),
                    op: "read",
                    source: e,
                })
            }
        }
    }
    buf.truncate(n);
    p.head = buf;
    Ok(())
}

fn magic_word(head: &[u8]) -> u64 {
    let mut b = [0u8; 8];
    let n = head.len().min(8);
    b[..n].copy_from_slice(&head[..n]);
    u64::from_le_bytes(b)
}

fn magic(p: &mut Probe<'_>) -> Result<String> {
    read_head(p)?;
    let deadline = Instant::now() + INIT_WAIT;
    // A creator sizes the object before writing anything and stores the magic last: only a
    // full-sized object with a zero magic may be one still being initialised.
    while magic_word(&p.head) == 0
        && p.head.len() >= HEADER_BYTES
        && p.file.is_some()
        && Instant::now() < deadline
    {
        std::thread::sleep(Duration::from_millis(1));
        read_head(p)?;
    }
    let n = p.head.len();
    let found = magic_word(&p.head);
    if n == 0 || (found == 0 && n >= HEADER_BYTES) {
        // Empty (a creator that died before sizing it, if still owner-write-only), or full-sized
        // and never finished.
        if n >= HEADER_BYTES || p.perm == CREATING_MODE {
            return Err(Error::NotInitialised { name: p.owned() });
        }
        return Err(Error::Truncated {
            name: p.owned(),
            size: p.size,
            expected: HEADER_BYTES as u64,
        });
    }
    // Judge what there is: a short file whose bytes are not the magic's start is another
    // program's, whatever its size.
    let have = n.min(8);
    if p.head[..have] != MAGIC.to_le_bytes()[..have] {
        return Err(Error::BadMagic {
            name: p.owned(),
            found,
        });
    }
    if have < 8 {
        return Ok(format!("{have} of 8 bytes, matching"));
    }
    Ok(format!("{found:#018x}"))
}

fn size_in_range(p: &mut Probe<'_>) -> Result<String> {
    if p.size < HEADER_BYTES as u64 {
        return Err(Error::Truncated {
            name: p.owned(),
            size: p.size,
            expected: HEADER_BYTES as u64,
        });
    }
    if p.size > MAX_SEGMENT_BYTES {
        return Err(Error::TooLarge {
            name: p.owned(),
            size: p.size,
            max: MAX_SEGMENT_BYTES,
        });
    }
    Ok(format!("{} bytes", p.size))
}

fn header_read(p: &mut Probe<'_>) -> Result<String> {
    match p.via {
        Via::Copy => {
            if p.head.len() < HEADER_BYTES {
                // Shrunk since it was measured.
                return Err(Error::Truncated {
                    name: p.owned(),
                    size: p.head.len() as u64,
                    expected: HEADER_BYTES as u64,
                });
            }
            p.header = Some(header::header_from_bytes(&p.head));
            Ok(format!("a copy of the first {HEADER_BYTES} bytes"))
        }
        Via::Map => {
            let file = p.file.take().expect("the readable step ran before");
            let mut opts = MmapOptions::new();
            // `size_in_range` bounded it by MAX_SEGMENT_BYTES, which fits a 64-bit usize.
            opts.len(usize::try_from(p.size).unwrap_or(usize::MAX));
            let map = match p.access {
                Access::ReadOnly => opts.map_raw_read_only(&file),
                Access::ReadWrite => opts.map_raw(&file),
            }
            .map_err(|e| Error::Io {
                name: p.owned(),
                op: "mmap",
                source: e,
            })?;
            let seg = Segment::from_map(p.name, map, OwnedFd::from(file), p.access);
            let h = seg.header();
            p.segment = Some(seg);
            // The magic was judged on a copy; the mapping must still carry it (the Acquire load
            // of it in `read_header` is what makes the other fields visible).
            if h.magic != MAGIC {
                return Err(Error::BadMagic {
                    name: p.owned(),
                    found: h.magic,
                });
            }
            p.header = Some(h);
            Ok(format!("mapped, {} bytes", p.size))
        }
    }
}

fn abi_version(p: &mut Probe<'_>) -> Result<String> {
    checks::check_abi(p.name, p.header()).map(|v| v.to_string())
}

fn kind(p: &mut Probe<'_>) -> Result<String> {
    let k = checks::check_kind(p.name, p.header(), p.expect.kind)?;
    p.kind = Some(k);
    Ok(k.name().into())
}

fn geometry(p: &mut Probe<'_>) -> Result<String> {
    let (g, mode) = checks::check_geometry(p.name, p.header())?;
    p.geometry = Some((g, mode));
    Ok(format!(
        "{} slots of {} bytes, capacity {}, {} producer",
        g.slot_count,
        g.stride_bytes(),
        g.capacity,
        match mode {
            ProducerMode::Single => "single",
            ProducerMode::Multi => "multi",
        }
    ))
}

fn size_matches(p: &mut Probe<'_>) -> Result<String> {
    let size = checks::check_file_size(p.name, &p.geometry().0, p.size)?;
    Ok(format!("{size} bytes"))
}

fn message_type(p: &mut Probe<'_>) -> Result<String> {
    let g = p.geometry().0;
    checks::check_type(p.name, p.header(), &g, p.expect.ty.as_ref())?;
    Ok(p.header().ty.to_string())
}
