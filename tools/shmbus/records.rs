//! The inspector's commands on records segments (variable-size records in a byte ring):
//! `create --kind records`, `publish`, `tail` and `info`. The other commands' modules call in
//! here when the name they are given is a records segment.

use std::io::{self, Write};
use std::time::Duration;

use serde::Serialize;
use shmbus::records::{RecordRecv, Records, RecordsBuilder};
use shmbus::{inspect, Start, Wait};

use crate::tail::Printer;
use crate::{text, CmdResult};

/// Opens `name` read-only for inspection if it is a records segment (any owner and mode, as
/// the inspector trusts them for reading); `None` for anything else, which the bus commands
/// then open and report on.
pub(crate) fn open(name: &str) -> Option<Records> {
    open_for_inspection(name).ok()
}

/// Opens records segment `name` read-only, trusting any owner and mode (an inspector only
/// reads).
pub(crate) fn open_for_inspection(name: &str) -> shmbus::Result<Records> {
    RecordsBuilder::new(name)
        .read_only()
        .accept_other_owner()
        .accept_shared_write()
        .open()
}

/// `shmbus create NAME --kind records --bytes SIZE`.
pub(crate) fn create(name: &str, bytes: Option<u64>, mode: u32, json: bool) -> CmdResult {
    let r = RecordsBuilder::new(name)
        .bytes(bytes.unwrap_or(shmbus::records::DEFAULT_RING_BYTES))
        .permissions(mode)
        .create()?;
    if json {
        return crate::print_json(&serde_json::json!({
            "name": r.name(),
            "kind": "records",
            "ring_bytes": r.ring_bytes(),
            "max_record": r.max_record(),
            "mode": format!("{mode:04o}"),
            "path": inspect::segment_path(r.name()),
        }));
    }
    writeln!(
        io::stdout(),
        "created records segment {}: a {}-byte ring, records up to {} bytes, mode {mode:04o}, {}",
        r.name(),
        r.ring_bytes(),
        r.max_record(),
        inspect::segment_path(r.name()).display()
    )?;
    Ok(())
}

/// `shmbus tail` on a records segment: the records available (at most `n`), or with `follow`
/// every new one until the process is interrupted.
pub(crate) fn tail(r: &Records, start: Start, n: u64, follow: bool, p: &Printer) -> CmdResult {
    let mut sub = r.subscribe(start).wait_strategy(Wait::Sleep);
    let end = r.records_published();
    let mut out = io::BufWriter::new(io::stdout().lock());
    let mut printed = 0;
    let result = (|| -> io::Result<()> {
        loop {
            if crate::tail::STOP.load(std::sync::atomic::Ordering::Relaxed) {
                return Ok(());
            }
            if !follow && (printed >= n || sub.next_seq() >= end) {
                return Ok(());
            }
            let first = sub.next_seq();
            match sub.recv_timeout(Duration::from_millis(100)) {
                RecordRecv::Record(m) => {
                    writeln!(out, "{}", p.message(m.seq(), m.bytes()))?;
                    printed += 1;
                }
                RecordRecv::Lapped { lost } => writeln!(out, "{}", p.lap(first, lost))?,
                RecordRecv::Empty | RecordRecv::Closed if !follow => return Ok(()),
                RecordRecv::Empty | RecordRecv::Closed => {}
            }
            if follow {
                out.flush()?;
            }
        }
    })();
    match result.and_then(|()| out.flush()) {
        Err(e) if e.kind() == io::ErrorKind::BrokenPipe => Ok(()),
        r => Ok(r?),
    }
}

/// What `list` reports about a records segment.
#[derive(Serialize, Debug, Clone, PartialEq)]
pub(crate) struct RecordsSummary {
    pub(crate) ring_bytes: u64,
    /// Largest record in bytes.
    pub(crate) max_record: usize,
    pub(crate) records_published: u64,
    pub(crate) bytes_published: u64,
    pub(crate) producer_alive: bool,
    /// When the last record was published, from the sampled record count.
    pub(crate) last_publish: crate::activity::LastPublish,
    pub(crate) creator_pid: u32,
    pub(crate) creator_alive: bool,
    /// No live producer and the creator gone.
    pub(crate) stale: bool,
    pub(crate) segment_size: u64,
}

/// The summary of a probed records segment, opened read-only.
pub(crate) fn summary(p: &inspect::Probe) -> shmbus::Result<RecordsSummary> {
    let r = RecordsBuilder::new(&p.name)
        .read_only()
        .accept_other_owner()
        .accept_shared_write()
        .open()?;
    let producer_alive = r.has_producers();
    let creator_alive = p.creator_alive();
    Ok(RecordsSummary {
        ring_bytes: r.ring_bytes(),
        max_record: r.max_record(),
        records_published: r.records_published(),
        bytes_published: r.bytes_published(),
        producer_alive,
        last_publish: Default::default(),
        creator_pid: p.header.creator_pid,
        creator_alive,
        stale: !producer_alive && !creator_alive,
        segment_size: p.header.segment_size,
    })
}

#[derive(Serialize, Debug)]
struct InfoOut {
    name: String,
    path: String,
    kind: &'static str,
    ring_bytes: u64,
    max_record: usize,
    records_published: u64,
    bytes_published: u64,
    producer_alive: bool,
    /// When the last record was published, from the record count sampled twice.
    last_publish: crate::activity::LastPublish,
    creator_pid: u32,
    creator_alive: bool,
    /// No live producer and the creator gone.
    stale: bool,
    segment_size: u64,
    access: Option<crate::info::Access>,
}

/// `shmbus info` on a records segment: its ring, what was published, its producer.
pub(crate) fn info(r: &Records, json: bool, sample: Duration) -> CmdResult {
    let mut activity = crate::activity::Activity::default();
    activity.observe("", r.records_published(), std::time::Instant::now());
    std::thread::sleep(sample);
    let last_publish = activity.observe("", r.records_published(), std::time::Instant::now());
    let h = r.header();
    let creator_alive = inspect::creator_alive(&h);
    let o = InfoOut {
        name: r.name().to_owned(),
        path: inspect::segment_path(r.name()).display().to_string(),
        kind: "records",
        ring_bytes: r.ring_bytes(),
        max_record: r.max_record(),
        records_published: r.records_published(),
        bytes_published: r.bytes_published(),
        producer_alive: r.has_producers(),
        last_publish,
        creator_pid: h.creator_pid,
        creator_alive,
        stale: !creator_alive && !r.has_producers(),
        segment_size: h.segment_size,
        access: crate::info::Access::of(r.name()),
    };
    let mut out = io::stdout().lock();
    if json {
        writeln!(out, "{}", text::json_line(&o))?;
        return Ok(());
    }
    writeln!(out, "records segment {}", text::sanitize(&o.name))?;
    writeln!(out, "  path               {}", o.path)?;
    writeln!(out, "  ring               {} bytes", o.ring_bytes)?;
    writeln!(out, "  largest record     {} bytes", o.max_record)?;
    writeln!(out, "  records published  {}", o.records_published)?;
    writeln!(out, "  bytes published    {}", o.bytes_published)?;
    writeln!(
        out,
        "  producer           {}",
        if o.producer_alive { "alive" } else { "none" }
    )?;
    writeln!(
        out,
        "  last publish       {}",
        crate::info::last_publish_line(&o.last_publish)
    )?;
    writeln!(
        out,
        "  creator            pid {} ({})",
        o.creator_pid,
        if o.creator_alive { "alive" } else { "gone" }
    )?;
    writeln!(
        out,
        "  stale              {}",
        if o.stale {
            "yes: no live producer and creator gone"
        } else {
            "no"
        }
    )?;
    writeln!(out, "  segment size       {} bytes", o.segment_size)?;
    if let Some(a) = &o.access {
        writeln!(out, "  access             {}", a.line())?;
    }
    Ok(())
}
