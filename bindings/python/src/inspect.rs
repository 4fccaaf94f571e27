//! `shmbus.list()` and `shmbus.info(name)`: what the inspector's `list --json` and `info --json`
//! report, as dicts, read through the library's inspection API (`shmbus::inspect`). The keys
//! are the inspector's; the sampled `last_publish` (a rate measured over `--sample-ms`) is the
//! inspector's own and is left out.

use std::os::unix::fs::MetadataExt;

use pyo3::exceptions::PyOSError;
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyList};
use shmbus::inspect::{self, CheckStatus, Probe};
use shmbus::layout::SegmentKind;

use crate::errors::to_py;

/// A queue participant's role as the inspector spells it.
pub(crate) fn role_word(role: Option<shmbus::Role>) -> &'static str {
    match role {
        Some(shmbus::Role::Sender) => "sender",
        Some(shmbus::Role::Receiver) => "receiver",
        None => "unknown",
    }
}

/// Every kind's word, in the order `list --json` gives their keys.
const KINDS: [&str; 5] = ["bus", "queue", "board", "records", "lanes"];

fn kind_word(k: SegmentKind) -> &'static str {
    match k {
        SegmentKind::Queue => "queue",
        SegmentKind::Board => "board",
        SegmentKind::Records => "records",
        SegmentKind::Lanes => "lanes",
        _ => "bus",
    }
}

/// Who made the segment and whether anyone uses it: what every summary ends with.
fn liveness(d: &Bound<'_, PyDict>, h: &shmbus::HeaderSnapshot, attached: bool) -> PyResult<()> {
    let creator_alive = inspect::creator_alive(h);
    d.set_item("creator_pid", h.creator_pid)?;
    d.set_item("creator_alive", creator_alive)?;
    d.set_item("stale", !creator_alive && !attached)?;
    d.set_item("segment_size", h.segment_size)?;
    Ok(())
}

/// The summary of a probed segment under its kind, opened read-only (any owner and mode: this
/// only reads).
fn summary<'py>(py: Python<'py>, p: &Probe) -> Result<Bound<'py, PyDict>, Failure> {
    let d = PyDict::new(py);
    let name = p.name.as_str();
    macro_rules! put {
        ($k:expr, $v:expr) => {
            d.set_item($k, $v)?
        };
    }
    match p.kind {
        SegmentKind::Queue => {
            let q = shmbus::QueueBuilder::new(name)
                .read_only()
                .accept_other_owner()
                .accept_shared_write()
                .open()?;
            let (head, tail) = q.positions();
            let totals = q.totals();
            let parts = q.participants();
            let live = |role| {
                parts
                    .iter()
                    .filter(|p| p.alive && p.role == Some(role))
                    .count()
            };
            let (senders, receivers) = (live(shmbus::Role::Sender), live(shmbus::Role::Receiver));
            put!("capacity", q.capacity());
            put!("item_size", q.item_size());
            put!("item_type", q.message_type().to_string());
            put!("len", q.len());
            put!("head", head);
            put!("tail", tail);
            put!("skipped", totals.skipped);
            put!("lost", totals.lost);
            put!("passed", totals.passed);
            put!(
                "stall_bound_ms",
                q.stall_bound().map(|d| d.as_secs_f64() * 1e3)
            );
            put!("senders", senders);
            put!("receivers", receivers);
            liveness(&d, &q.header(), senders + receivers > 0)?;
        }
        SegmentKind::Board => {
            let b = shmbus::BoardBuilder::new(name)
                .read_only()
                .accept_other_owner()
                .accept_shared_write()
                .open()?;
            put!("cells", b.cells());
            put!("value_size", b.value_size());
            put!("value_type", b.value_type().to_string());
            put!("keys", b.has_keys());
            put!("single_writer", b.is_single_writer());
            // A cell's version counts its updates; one that cannot be read counts as none.
            let reader = b.reader();
            let versions: Vec<u64> = (0..b.cells())
                .map(|i| reader.version(i).unwrap_or(0))
                .collect();
            put!("cells_written", versions.iter().filter(|v| **v > 0).count());
            put!("updates", versions.iter().sum::<u64>());
            put!("writers_alive", b.has_writers());
            liveness(&d, &p.header, b.has_writers())?;
        }
        SegmentKind::Records => {
            let r = shmbus::RecordsBuilder::new(name)
                .read_only()
                .accept_other_owner()
                .accept_shared_write()
                .open()?;
            put!("ring_bytes", r.ring_bytes());
            put!("max_record", r.max_record());
            put!("records_published", r.records_published());
            put!("bytes_published", r.bytes_published());
            put!("producer_alive", r.has_producers());
            liveness(&d, &r.header(), r.has_producers())?;
        }
        SegmentKind::Lanes => {
            let l = shmbus::lanes::LanesBuilder::new(name)
                .read_only()
                .accept_other_owner()
                .accept_shared_write()
                .open()?;
            let lanes = l.lane_info();
            let in_use = lanes.iter().filter(|x| x.in_use).count();
            let consumer_alive = l.has_consumer();
            put!("lanes", l.lanes());
            put!("lane_bytes", l.lane_bytes());
            put!("lanes_in_use", in_use);
            put!(
                "pending_bytes",
                lanes.iter().map(|x| x.pending_bytes).sum::<u64>()
            );
            put!("published", lanes.iter().map(|x| x.published).sum::<u64>());
            put!("dropped", lanes.iter().map(|x| x.dropped).sum::<u64>());
            put!("consumer_alive", consumer_alive);
            liveness(&d, &l.header(), consumer_alive || in_use > 0)?;
        }
        _ => {
            let bus = inspect::open_for_inspection(name)?;
            let h = bus.header();
            let producers = bus.producers();
            let stamp = producers
                .iter()
                .filter_map(|p| p.since_last_publish())
                .min()
                .map(|d| d.as_nanos() as u64);
            put!("slots", bus.slots());
            put!("capacity", bus.capacity());
            put!("message_type", bus.message_type().to_string());
            put!(
                "producer_mode",
                match bus.producer_mode() {
                    shmbus::ProducerMode::Single => "single",
                    _ => "multi",
                }
            );
            put!("published", h.published());
            put!("cursor", h.cursor);
            put!("producer_stamp_ns_ago", stamp);
            put!("producers_alive", bus.has_producers());
            put!("producers", producers.len());
            liveness(&d, &h, bus.has_producers())?;
        }
    }
    Ok(d)
}

/// The header as `info --json` prints a bus's (every kind has one; the inspector prints it for
/// buses).
fn header<'py>(py: Python<'py>, h: &shmbus::HeaderSnapshot) -> PyResult<Bound<'py, PyDict>> {
    let d = PyDict::new(py);
    d.set_item("magic", format!("{:#018x}", h.magic))?;
    d.set_item("abi_version", h.abi_version)?;
    let mode = match h.producer_mode() {
        Some(shmbus::ProducerMode::Single) => "single".to_owned(),
        Some(_) => "multi".to_owned(),
        None => format!("invalid ({})", h.mode_word),
    };
    d.set_item("producer_mode", mode)?;
    let wakeup = match h.wakeup() {
        Some(shmbus::Wakeup::Barrier) => "barrier".to_owned(),
        Some(shmbus::Wakeup::Fence) => "fence".to_owned(),
        _ => format!("invalid ({})", h.wakeup_word),
    };
    d.set_item("wakeup", wakeup)?;
    d.set_item("slot_count", h.slot_count)?;
    d.set_item("slot_stride", h.slot_stride)?;
    d.set_item("capacity", h.capacity)?;
    d.set_item("type_name", &h.ty.name)?;
    d.set_item("type_size", h.ty.size)?;
    d.set_item("type_align", h.ty.align)?;
    d.set_item("type_hash", format!("{:#018x}", h.type_hash))?;
    d.set_item("first_seq", h.first_seq)?;
    d.set_item("cursor", h.cursor)?;
    d.set_item("published", h.published())?;
    d.set_item("creator_pid", h.creator_pid)?;
    d.set_item("creator_start_ticks", h.creator_start)?;
    d.set_item("created_unix_ns", h.created_ns)?;
    d.set_item("segment_size", h.segment_size)?;
    Ok(d)
}

/// Why a summary could not be made: the segment could not be opened (a library error, which
/// `list` reports as the entry's `error`), or Python failed.
enum Failure {
    Lib(shmbus::Error),
    Py(PyErr),
}

impl From<shmbus::Error> for Failure {
    fn from(e: shmbus::Error) -> Self {
        Failure::Lib(e)
    }
}

impl From<PyErr> for Failure {
    fn from(e: PyErr) -> Self {
        Failure::Py(e)
    }
}

impl From<Failure> for PyErr {
    fn from(f: Failure) -> Self {
        match f {
            Failure::Lib(e) => to_py(e),
            Failure::Py(e) => e,
        }
    }
}

/// Every segment in /dev/shm, one dict each, as `shmbus list --json` gives them: `file`,
/// `name` (None for a foreign file), `kind` ("bus", "queue", "board", "records", "lanes",
/// "foreign" or "error"), `error` (why a segment could not be read), `size`, `mode` ("0600"), `uid`, and one
/// key per kind: the segment's state under its own kind, None under the others. `all`: also
/// files that are not shmbus segments.
#[pyfunction]
#[pyo3(signature = (all = false))]
pub(crate) fn list(py: Python<'_>, all: bool) -> PyResult<Bound<'_, PyList>> {
    let entries =
        inspect::list(all).map_err(|e| PyOSError::new_err(format!("cannot read /dev/shm: {e}")))?;
    let out = PyList::empty(py);
    for e in entries {
        let d = PyDict::new(py);
        d.set_item("file", &e.file_name)?;
        d.set_item("name", &e.name)?;
        let mut kind = "foreign";
        let mut error = None;
        let mut state = None;
        match e.segment {
            None => {}
            Some(Err(err)) => {
                kind = "error";
                error = Some(err.to_string());
            }
            Some(Ok(p)) => match summary(py, &p) {
                Ok(s) => {
                    kind = kind_word(p.kind);
                    state = Some(s);
                }
                Err(Failure::Lib(err)) => {
                    kind = "error";
                    error = Some(err.to_string());
                }
                Err(Failure::Py(err)) => return Err(err),
            },
        }
        d.set_item("kind", kind)?;
        d.set_item("error", error)?;
        d.set_item("size", e.size)?;
        d.set_item("mode", format!("{:04o}", e.mode))?;
        d.set_item("uid", e.uid)?;
        for k in KINDS {
            match &state {
                Some(s) if k == kind => d.set_item(k, s)?,
                _ => d.set_item(k, py.None())?,
            }
        }
        out.append(d)?;
    }
    Ok(out)
}

/// One segment's report, as `shmbus info NAME --json` gives it: `name`, `kind`, `path`,
/// `access` (owner and mode), `header` (the segment header's words), `summary` (what list() gives under the kind), and for a bus
/// `checks` (each step of the opening pipeline: `check`, `status` "ok"/"FAIL"/"WARN"/
/// "skipped", `detail`) and `producers` (`index`, `pid`, `stamp_ns_ago`), and for a queue
/// `participants` (`index`, `pid`, `role`, `alive`). The inspector's `stalled` (holds seen at
/// two looks over time) is its own and left out: `Queue.holds()` and `Bus.holds()` give a
/// snapshot. Raises the library's error (NotFound, ...) when the segment cannot be read.
#[pyfunction]
pub(crate) fn info<'py>(py: Python<'py>, name: &str) -> PyResult<Bound<'py, PyDict>> {
    let probe = inspect::probe(name).map_err(to_py)?;
    let d = PyDict::new(py);
    let kind = kind_word(probe.kind);
    d.set_item("name", name)?;
    d.set_item("kind", kind)?;
    let path = inspect::segment_path(name);
    d.set_item("path", path.display().to_string())?;
    if let Ok(m) = std::fs::symlink_metadata(&path) {
        let a = PyDict::new(py);
        a.set_item("owner_uid", m.uid())?;
        // SAFETY: geteuid has no preconditions and cannot fail.
        a.set_item("owner_is_us", m.uid() == unsafe { libc::geteuid() })?;
        a.set_item("mode", format!("{:04o}", m.mode() & 0o777))?;
        a.set_item("shared_write", m.mode() & 0o022 != 0)?;
        d.set_item("access", a)?;
    }
    let h = header(py, &probe.header)?;
    if probe.kind == SegmentKind::Bus {
        // As the inspector's header: a multi-producer bus's stall bound in ms, `None` for no
        // bound (docs/design.md §6, "The stall bound").
        let bus = inspect::open_for_inspection(name).map_err(to_py)?;
        h.set_item(
            "stall_bound_ms",
            bus.stall_bound().map(|b| b.as_secs_f64() * 1e3),
        )?;
    }
    d.set_item("header", h)?;
    d.set_item("summary", summary(py, &probe)?)?;
    if probe.kind == SegmentKind::Queue {
        // As the inspector's: every entry ever used, with its role and liveness.
        let q = shmbus::QueueBuilder::new(name)
            .read_only()
            .accept_other_owner()
            .accept_shared_write()
            .open()
            .map_err(to_py)?;
        let parts = PyList::empty(py);
        for p in q.participants() {
            let pd = PyDict::new(py);
            pd.set_item("index", p.index)?;
            pd.set_item("pid", p.pid)?;
            pd.set_item("role", role_word(p.role))?;
            pd.set_item("alive", p.alive)?;
            parts.append(pd)?;
        }
        d.set_item("participants", parts)?;
    }
    if probe.kind == SegmentKind::Bus {
        let checks = PyList::empty(py);
        for c in inspect::checks(name) {
            let cd = PyDict::new(py);
            cd.set_item("check", c.name)?;
            let status = match c.status {
                CheckStatus::Pass => "ok",
                // The two checks a user can override: the bus is readable, so a warning.
                CheckStatus::Fail if matches!(c.name, "owner" | "mode") => "WARN",
                CheckStatus::Fail => "FAIL",
                _ => "skipped",
            };
            cd.set_item("status", status)?;
            cd.set_item("detail", c.detail)?;
            checks.append(cd)?;
        }
        d.set_item("checks", checks)?;
        let bus = inspect::open_for_inspection(name).map_err(to_py)?;
        let producers = PyList::empty(py);
        for p in bus.producers() {
            let pd = PyDict::new(py);
            pd.set_item("index", p.index)?;
            pd.set_item("pid", p.pid)?;
            pd.set_item(
                "stamp_ns_ago",
                p.since_last_publish().map(|d| d.as_nanos() as u64),
            )?;
            producers.append(pd)?;
        }
        d.set_item("producers", producers)?;
    }
    Ok(d)
}
