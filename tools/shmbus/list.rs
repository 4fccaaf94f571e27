//! `shmbus list`: every bus in `/dev/shm`, one line (or one JSON object) each.

use std::io::{IsTerminal, Write};
use std::time::Duration;

use clap::Args;
use comfy_table::{presets, CellAlignment, ContentArrangement, Table};
use serde::Serialize;
use shmbus::{inspect, Bus, ProducerMode};

use crate::{text, CmdResult};

#[derive(Args, Debug)]
pub(crate) struct ListArgs {
    /// Also list files in /dev/shm that are not shmbus buses (as "foreign").
    #[arg(long)]
    all: bool,
    /// Only buses whose name starts with PREFIX (with --all, other files whose name does).
    #[arg(long, value_name = "PREFIX")]
    prefix: Option<String>,
    /// Print one JSON array instead of a table.
    #[arg(long)]
    json: bool,
    /// Keep listing until Ctrl-C: on a terminal the screen is redrawn; otherwise each listing
    /// follows the previous one (with --json, one array per line).
    #[arg(long)]
    watch: bool,
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
    /// Bus name (null for foreign files).
    name: Option<String>,
    /// "bus", "foreign" or "error".
    kind: &'static str,
    /// Why the segment could not be opened (kind "error" only).
    error: Option<String>,
    size: u64,
    /// Permission bits in octal, e.g. "0600".
    mode: String,
    uid: u32,
    /// The bus's state (kind "bus" only).
    bus: Option<BusSummary>,
    /// The queue's state (kind "queue" only).
    queue: Option<crate::queue::QueueSummary>,
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
    /// Nanoseconds since the last publish by a live producer; null if none recorded.
    pub(crate) last_publish_ns_ago: Option<u64>,
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

/// Time since the most recent publish of any live producer, if one was recorded.
pub(crate) fn last_publish_age(bus: &Bus) -> Option<Duration> {
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
        last_publish_ns_ago: last_publish_age(bus).map(|d| d.as_nanos() as u64),
        creator_pid: h.creator_pid,
        creator_alive: inspect::creator_alive(&h),
        producers_alive: bus.has_producers(),
        producers: bus.producers().len(),
        stale: inspect::is_stale(bus),
        segment_size: h.segment_size,
    }
}

/// Reads `/dev/shm` into entries; segments that cannot be opened carry their error.
pub(crate) fn collect(all: bool) -> Result<Vec<ListEntry>, crate::Failure> {
    let entries =
        inspect::list(all).map_err(|e| crate::Failure(format!("cannot read /dev/shm: {e}")))?;
    Ok(entries
        .into_iter()
        .map(|e| {
            let (kind, error, bus) = match &e.bus {
                None => ("foreign", None, None),
                Some(Err(err)) => ("error", Some(err.to_string()), None),
                Some(Ok(bus)) => ("bus", None, Some(summarize(bus))),
            };
            let queue = match (&e.bus, &e.name) {
                (Some(Err(err)), Some(name)) if crate::queue::is_queue_error(err) => {
                    crate::queue::summary(name).ok().map(|(s, _)| s)
                }
                _ => None,
            };
            let (kind, error) = if queue.is_some() {
                ("queue", None)
            } else {
                (kind, error)
            };
            ListEntry {
                file: e.file_name,
                name: e.name,
                kind,
                error,
                size: e.size,
                mode: format!("{:04o}", e.mode),
                uid: e.uid,
                bus,
                queue,
            }
        })
        .collect())
}

pub(crate) fn run(args: &ListArgs) -> CmdResult {
    if !args.watch {
        return print_once(args, &mut std::io::stdout().lock());
    }
    let redraw = !args.json && std::io::stdout().is_terminal();
    loop {
        let mut out = std::io::stdout().lock();
        if redraw {
            // Cursor home, clear the screen: the listing replaces the previous one.
            out.write_all(b"\x1b[H\x1b[2J")?;
        }
        print_once(args, &mut out)?;
        if !redraw && !args.json {
            out.write_all(b"\n")?;
        }
        out.flush()?;
        drop(out);
        std::thread::sleep(Duration::from_millis(args.interval_ms));
    }
}

fn print_once(args: &ListArgs, out: &mut impl Write) -> CmdResult {
    let mut entries = collect(args.all)?;
    if let Some(p) = &args.prefix {
        entries.retain(|e| e.name.as_deref().unwrap_or(&e.file).starts_with(p.as_str()));
    }
    if args.json {
        writeln!(out, "{}", text::json_line(&entries))?;
    } else {
        out.write_all(table(&entries).as_bytes())?;
    }
    Ok(())
}

/// The text tables, columns aligned: one for the buses, then one for the files that could not
/// be read as buses, with why. Every string from the file system or a segment is escaped.
pub(crate) fn table(entries: &[ListEntry]) -> String {
    if entries.is_empty() {
        return "no buses in /dev/shm\n".into();
    }
    let buses: Vec<_> = entries
        .iter()
        .filter(|e| e.bus.is_some() || e.queue.is_some())
        .collect();
    let others: Vec<_> = entries
        .iter()
        .filter(|e| e.bus.is_none() && e.queue.is_none())
        .collect();
    let mut out = String::new();
    if !buses.is_empty() {
        let mut t = plain_table(&[
            ("NAME", false),
            ("SLOTS", true),
            ("CAP", true),
            ("TYPE", false),
            ("MODE", false),
            ("PUBLISHED", true),
            ("LAST", true),
            ("CREATOR", false),
            ("PROD", true),
            ("STALE", false),
            ("SIZE", true),
            ("PERM", false),
        ]);
        for e in buses {
            if let Some(q) = &e.queue {
                let name = text::sanitize(e.name.as_deref().unwrap_or(&e.file));
                t.add_row(crate::queue::list_row(
                    name,
                    q,
                    text::bytes(e.size),
                    e.mode.clone(),
                ));
                continue;
            }
            let Some(b) = &e.bus else { continue };
            t.add_row(vec![
                text::sanitize(e.name.as_deref().unwrap_or(&e.file)),
                b.slots.to_string(),
                b.capacity.to_string(),
                text::sanitize(&b.message_type),
                b.producer_mode.to_string(),
                b.published.to_string(),
                b.last_publish_ns_ago
                    .map_or("-".into(), |ns| text::duration(Duration::from_nanos(ns))),
                format!(
                    "{} {}",
                    b.creator_pid,
                    if b.creator_alive { "alive" } else { "gone" }
                ),
                b.producers.to_string(),
                if b.stale { "yes" } else { "no" }.into(),
                text::bytes(e.size),
                e.mode.clone(),
            ]);
        }
        push_lines(&mut out, &t);
    }
    if !others.is_empty() {
        if !out.is_empty() {
            out.push('\n');
        }
        let mut t = plain_table(&[
            ("NOT A READABLE BUS", false),
            ("SIZE", true),
            ("PERM", false),
            ("WHY", false),
        ]);
        for e in others {
            let why = match &e.error {
                Some(err) => format!("error: {}", text::sanitize(err)),
                None => "foreign (not a shmbus bus)".into(),
            };
            t.add_row(vec![
                text::sanitize(e.name.as_deref().unwrap_or(&e.file)),
                text::bytes(e.size),
                e.mode.clone(),
                why,
            ]);
        }
        push_lines(&mut out, &t);
    }
    out
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
