//! `shmbus list`: every segment in `/dev/shm` (buses, queues, boards, records segments), one
//! line (or one JSON object) each, one table per kind.

use std::io::{IsTerminal, Write};
use std::time::Duration;

use clap::Args;
use comfy_table::{presets, CellAlignment, ContentArrangement, Table};
use serde::Serialize;
use shmbus::layout::SegmentKind;
use shmbus::{inspect, Bus, ProducerMode};

use crate::activity::{Activity, LastPublish};
use crate::{text, CmdResult};

#[derive(Args, Debug)]
pub(crate) struct ListArgs {
    /// Also list files in /dev/shm that are not shmbus segments (as "foreign").
    #[arg(long)]
    all: bool,
    /// Only segments whose name starts with PREFIX (with --all, other files whose name does).
    #[arg(long, value_name = "PREFIX")]
    prefix: Option<String>,
    /// Print one JSON array instead of a table.
    #[arg(long)]
    json: bool,
    /// Keep listing until q (on a terminal) or Ctrl-C: on a terminal the screen is redrawn;
    /// otherwise each listing follows the previous one (with --json, one array per line).
    #[arg(long)]
    watch: bool,
    /// How long to watch each bus's and records segment's publish count before printing, in
    /// milliseconds (10 to 10000): LAST and RATE come from its advance. With --watch, each
    /// interval is a further sample.
    #[arg(long, value_name = "MS", default_value_t = 200,
          value_parser = clap::value_parser!(u64).range(10..=10_000))]
    sample_ms: u64,
    /// With --watch: time between listings, in milliseconds (100 to 60000).
    #[arg(long, value_name = "MS", default_value_t = 1000, requires = "watch",
          value_parser = clap::value_parser!(u64).range(100..=60_000))]
    interval_ms: u64,
}

/// One file of `/dev/shm` as `list --json` prints it.
#[derive(Serialize, Debug)]
pub(crate) struct ListEntry {
    /// File name in /dev/shm.
    file: String,
    /// Segment name (null for foreign files).
    name: Option<String>,
    /// "bus", "queue", "board", "records", "foreign" or "error".
    kind: &'static str,
    /// Why the segment could not be read (kind "error" only).
    error: Option<String>,
    size: u64,
    /// Permission bits in octal, e.g. "0600".
    mode: String,
    uid: u32,
    /// The bus's state (kind "bus" only).
    bus: Option<BusSummary>,
    /// The queue's state (kind "queue" only).
    queue: Option<crate::queue::QueueSummary>,
    /// The board's state (kind "board" only).
    board: Option<crate::board::BoardSummary>,
    /// The records segment's state (kind "records" only).
    records: Option<crate::records::RecordsSummary>,
}

/// What one readable segment is, with its kind's summary.
enum Summary {
    Bus(BusSummary),
    Queue(crate::queue::QueueSummary),
    Board(crate::board::BoardSummary),
    Records(crate::records::RecordsSummary),
}

/// The summary of a probed segment, opened read-only with its kind's own open.
fn summarize_kind(p: &inspect::Probe) -> shmbus::Result<Summary> {
    Ok(match p.kind {
        SegmentKind::Bus => Summary::Bus(summarize(&inspect::open_for_inspection(&p.name)?)),
        SegmentKind::Queue => Summary::Queue(crate::queue::summary(&p.name)?.0),
        SegmentKind::Board => Summary::Board(crate::board::summary(p)?),
        SegmentKind::Records => Summary::Records(crate::records::summary(p)?),
        _ => {
            return Err(shmbus::Error::UnknownKind {
                name: p.name.clone(),
                word: p.header.kind_word,
            })
        }
    })
}

/// What `list` and `info` report about an open bus.
#[derive(Serialize, Debug, Clone, PartialEq)]
pub(crate) struct BusSummary {
    pub(crate) slots: u64,
    pub(crate) capacity: usize,
    pub(crate) message_type: String,
    /// "single" or "multi".
    pub(crate) producer_mode: &'static str,
    pub(crate) published: u64,
    pub(crate) cursor: u64,
    /// When the last publish was, from the sampled write cursor (see `shmbus list --help`).
    pub(crate) last_publish: LastPublish,
    /// Nanoseconds since a live producer attached or last stamped its activity (a producer
    /// stamps once in 1024 publishes): not the time of the last publish. Null without one.
    pub(crate) producer_stamp_ns_ago: Option<u64>,
    pub(crate) creator_pid: u32,
    pub(crate) creator_alive: bool,
    pub(crate) producers_alive: bool,
    /// Live producers attached now.
    pub(crate) producers: usize,
    pub(crate) stale: bool,
    pub(crate) segment_size: u64,
}

pub(crate) fn mode_name(m: ProducerMode) -> &'static str {
    match m {
        ProducerMode::Single => "single",
        ProducerMode::Multi => "multi",
    }
}

/// Time since a live producer last attached or stamped its activity (once in 1024 publishes),
/// if one did: an upper bound of nothing, only a sign of life. See [`crate::activity`].
pub(crate) fn producer_stamp_age(bus: &Bus) -> Option<Duration> {
    bus.producers()
        .iter()
        .filter_map(|p| p.since_last_publish())
        .min()
}

pub(crate) fn summarize(bus: &Bus) -> BusSummary {
    let h = bus.header();
    BusSummary {
        slots: bus.slots(),
        capacity: bus.capacity(),
        message_type: bus.message_type().to_string(),
        producer_mode: mode_name(bus.producer_mode()),
        published: h.published(),
        cursor: h.cursor,
        last_publish: LastPublish::default(),
        producer_stamp_ns_ago: producer_stamp_age(bus).map(|d| d.as_nanos() as u64),
        creator_pid: h.creator_pid,
        creator_alive: inspect::creator_alive(&h),
        producers_alive: bus.has_producers(),
        producers: bus.producers().len(),
        stale: inspect::is_stale(bus),
        segment_size: h.segment_size,
    }
}

/// Reads `/dev/shm` into entries; segments that cannot be read carry their error.
pub(crate) fn collect(all: bool) -> Result<Vec<ListEntry>, crate::Failure> {
    let entries =
        inspect::list(all).map_err(|e| crate::Failure(format!("cannot read /dev/shm: {e}")))?;
    Ok(entries
        .into_iter()
        .map(|e| {
            let mut out = ListEntry {
                file: e.file_name,
                name: e.name,
                kind: "foreign",
                error: None,
                size: e.size,
                mode: format!("{:04o}", e.mode),
                uid: e.uid,
                bus: None,
                queue: None,
                board: None,
                records: None,
            };
            match e.segment.map(|p| p.and_then(|p| summarize_kind(&p))) {
                None => {}
                Some(Err(err)) => {
                    out.kind = "error";
                    out.error = Some(err.to_string());
                }
                Some(Ok(Summary::Bus(s))) => (out.kind, out.bus) = ("bus", Some(s)),
                Some(Ok(Summary::Queue(s))) => (out.kind, out.queue) = ("queue", Some(s)),
                Some(Ok(Summary::Board(s))) => (out.kind, out.board) = ("board", Some(s)),
                Some(Ok(Summary::Records(s))) => (out.kind, out.records) = ("records", Some(s)),
            }
            out
        })
        .collect())
}

/// The entries of /dev/shm (those matching --prefix), each bus's and records segment's last
/// publish from `activity`, which this sample joins.
fn gather(args: &ListArgs, activity: &mut Activity) -> Result<Vec<ListEntry>, crate::Failure> {
    let mut entries = collect(args.all)?;
    if let Some(p) = &args.prefix {
        entries.retain(|e| e.name.as_deref().unwrap_or(&e.file).starts_with(p.as_str()));
    }
    let now = std::time::Instant::now();
    for e in &mut entries {
        // Keyed by creator too: a segment removed and made again under the name starts over.
        if let Some(b) = &mut e.bus {
            let key = format!("{}/{}", e.file, b.creator_pid);
            b.last_publish = activity.observe(&key, b.published, now);
        }
        if let Some(r) = &mut e.records {
            let key = format!("{}/{}", e.file, r.creator_pid);
            r.last_publish = activity.observe(&key, r.records_published, now);
        }
    }
    Ok(entries)
}

/// A first sample, then the entries after --sample-ms.
fn sampled(args: &ListArgs, activity: &mut Activity) -> Result<Vec<ListEntry>, crate::Failure> {
    gather(args, activity)?;
    std::thread::sleep(Duration::from_millis(args.sample_ms));
    gather(args, activity)
}

pub(crate) fn run(args: &ListArgs) -> CmdResult {
    let mut activity = Activity::default();
    if !args.watch {
        let entries = sampled(args, &mut activity)?;
        return print_once(args, &entries, &mut std::io::stdout().lock());
    }
    let mut first = true;
    let redraw = !args.json && std::io::stdout().is_terminal();
    let mut keys = crate::keys::QuitKeys::new()?;
    loop {
        let mut out = std::io::stdout().lock();
        if redraw {
            // Cursor home, clear the screen: the listing replaces the previous one.
            out.write_all(b"\x1b[H\x1b[2J")?;
        }
        let entries = if first {
            first = false;
            sampled(args, &mut activity)?
        } else {
            gather(args, &mut activity)?
        };
        print_once(args, &entries, &mut out)?;
        if redraw && keys.active() {
            out.write_all(b"\n(q to quit)\n")?;
        }
        if !redraw && !args.json {
            out.write_all(b"\n")?;
        }
        out.flush()?;
        drop(out);
        if keys.wait(Duration::from_millis(args.interval_ms))? {
            return Ok(());
        }
    }
}

fn print_once(args: &ListArgs, entries: &[ListEntry], out: &mut impl Write) -> CmdResult {
    if args.json {
        writeln!(out, "{}", text::json_line(&entries))?;
    } else if entries.is_empty() {
        match &args.prefix {
            Some(p) => writeln!(
                out,
                "no segment name starts with {:?} in /dev/shm",
                text::sanitize(p)
            )?,
            None => writeln!(out, "no segments in /dev/shm")?,
        }
    } else {
        out.write_all(table(entries).as_bytes())?;
    }
    Ok(())
}

/// The text tables, columns aligned: one per kind (buses, queues, boards, records segments),
/// each with the columns that make sense for it, then one for the files that could not be read
/// as segments, with why. Every string from the file system or a segment is escaped.
pub(crate) fn table(entries: &[ListEntry]) -> String {
    if entries.is_empty() {
        return "no segments in /dev/shm\n".into();
    }
    let name = |e: &ListEntry| text::sanitize(e.name.as_deref().unwrap_or(&e.file));
    let creator = |pid: u32, alive: bool| format!("{pid} {}", if alive { "alive" } else { "gone" });
    let yes_no = |b: bool| if b { "yes" } else { "no" }.to_owned();
    let mut tables = Vec::new();

    let mut t = plain_table(&[
        ("BUS", false),
        ("SLOTS", true),
        ("CAP", true),
        ("TYPE", false),
        ("MODE", false),
        ("PUBLISHED", true),
        ("RATE", true),
        ("LAST", true),
        ("CREATOR", false),
        ("PROD", true),
        ("STALE", false),
        ("SIZE", true),
        ("PERM", false),
    ]);
    for e in entries {
        let Some(b) = &e.bus else { continue };
        t.add_row(vec![
            name(e),
            b.slots.to_string(),
            b.capacity.to_string(),
            text::sanitize(&b.message_type),
            b.producer_mode.to_string(),
            b.published.to_string(),
            rate_cell(&b.last_publish),
            b.last_publish.display(),
            creator(b.creator_pid, b.creator_alive),
            b.producers.to_string(),
            yes_no(b.stale),
            text::bytes(e.size),
            e.mode.clone(),
        ]);
    }
    tables.push(t);

    let mut t = plain_table(&[
        ("QUEUE", false),
        ("CAPACITY", true),
        ("ITEM", true),
        ("TYPE", false),
        ("LEN", true),
        ("HEAD", true),
        ("TAIL", true),
        ("SENDERS", true),
        ("RECEIVERS", true),
        ("CREATOR", false),
        ("STALE", false),
        ("SIZE", true),
        ("PERM", false),
    ]);
    for e in entries {
        let Some(q) = &e.queue else { continue };
        t.add_row(vec![
            name(e),
            q.capacity.to_string(),
            q.item_size.to_string(),
            text::sanitize(&q.item_type),
            q.len.to_string(),
            q.head.to_string(),
            q.tail.to_string(),
            q.senders.to_string(),
            q.receivers.to_string(),
            creator(q.creator_pid, q.creator_alive),
            yes_no(q.stale),
            text::bytes(e.size),
            e.mode.clone(),
        ]);
    }
    tables.push(t);

    let mut t = plain_table(&[
        ("BOARD", false),
        ("CELLS", true),
        ("VALUE", true),
        ("TYPE", false),
        ("KEYS", false),
        ("WRITERS", false),
        ("CREATOR", false),
        ("STALE", false),
        ("SIZE", true),
        ("PERM", false),
    ]);
    for e in entries {
        let Some(b) = &e.board else { continue };
        t.add_row(vec![
            name(e),
            b.cells.to_string(),
            b.value_size.to_string(),
            text::sanitize(&b.value_type),
            yes_no(b.keys),
            if b.writers_alive { "alive" } else { "none" }.into(),
            creator(b.creator_pid, b.creator_alive),
            yes_no(b.stale),
            text::bytes(e.size),
            e.mode.clone(),
        ]);
    }
    tables.push(t);

    let mut t = plain_table(&[
        ("RECORDS", false),
        ("RING", true),
        ("MAX", true),
        ("PUBLISHED", true),
        ("BYTES", true),
        ("RATE", true),
        ("LAST", true),
        ("PRODUCER", false),
        ("CREATOR", false),
        ("STALE", false),
        ("SIZE", true),
        ("PERM", false),
    ]);
    for e in entries {
        let Some(r) = &e.records else { continue };
        t.add_row(vec![
            name(e),
            text::bytes(r.ring_bytes),
            r.max_record.to_string(),
            r.records_published.to_string(),
            text::bytes(r.bytes_published),
            rate_cell(&r.last_publish),
            r.last_publish.display(),
            if r.producer_alive { "alive" } else { "none" }.into(),
            creator(r.creator_pid, r.creator_alive),
            yes_no(r.stale),
            text::bytes(e.size),
            e.mode.clone(),
        ]);
    }
    tables.push(t);

    let mut t = plain_table(&[
        ("NOT A READABLE SEGMENT", false),
        ("SIZE", true),
        ("PERM", false),
        ("WHY", false),
    ]);
    for e in entries
        .iter()
        .filter(|e| e.kind == "error" || e.kind == "foreign")
    {
        let why = match &e.error {
            Some(err) => format!("error: {}", text::sanitize(err)),
            None => "foreign (not a shmbus segment)".into(),
        };
        t.add_row(vec![name(e), text::bytes(e.size), e.mode.clone(), why]);
    }
    tables.push(t);

    let mut out = String::new();
    for t in tables.iter().filter(|t| t.row_count() > 0) {
        if !out.is_empty() {
            out.push('\n');
        }
        push_lines(&mut out, t);
    }
    out
}

/// Publishes per second over the last sample, `-` before a second sample.
fn rate_cell(l: &LastPublish) -> String {
    l.per_s.map_or("-".into(), text::rate)
}

/// A borderless table whose columns are two spaces apart and never wrap: a long name widens
/// its column rather than breaking the row. `(header, right-aligned)` per column.
fn plain_table(columns: &[(&str, bool)]) -> Table {
    let mut t = Table::new();
    t.load_preset(presets::NOTHING)
        .set_content_arrangement(ContentArrangement::Disabled)
        .set_header(columns.iter().map(|(h, _)| *h));
    for (i, (_, right)) in columns.iter().enumerate() {
        if let Some(c) = t.column_mut(i) {
            c.set_padding((0, 2));
            if *right {
                c.set_cell_alignment(CellAlignment::Right);
            }
        }
    }
    t
}

fn push_lines(out: &mut String, t: &Table) {
    for line in t.lines() {
        out.push_str(line.trim_end());
        out.push('\n');
    }
}
