//! `shmbus list`: every segment in `/dev/shm` (buses, queues, boards, records segments), one
//! line (or one JSON object) each, one table per kind.

use std::io::{IsTerminal, Write};
use std::time::Duration;

use clap::Args;
use comfy_table::{presets, CellAlignment, ContentArrangement, Table};
use serde::Serialize;
use shmbus::inspect;

use crate::activity::Activity;
use crate::keys::QuitKeys;
use crate::kinds::{self, Kind, ListRow};
use crate::metrics::Metrics;
use crate::output::{CmdResult, Failure};
use crate::text;

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

/// One file of `/dev/shm` as `list --json` prints it: `file`, `name` (null for foreign files),
/// `kind` ("bus", "queue", "board", "records", "foreign" or "error"), `error` (why the segment
/// could not be read, kind "error" only), `size`, `mode` (octal, e.g. "0600"), `uid`, and one
/// key per kind, the segment's state under its own kind's key and null under the others.
pub(crate) struct ListEntry {
    file: String,
    name: Option<String>,
    /// The segment's kind and its state; `None` for a foreign file or an unreadable segment.
    kind: Option<(&'static dyn Kind, Box<dyn ListRow>)>,
    error: Option<String>,
    size: u64,
    mode: String,
    uid: u32,
}

impl ListEntry {
    /// The entry's samples in `serve`'s `/metrics`: those every segment has, then its kind's.
    /// A file that cannot be read as a segment is there with kind "error" (or "foreign") and
    /// `shmbus_segment_readable` 0.
    pub(crate) fn metrics(&self, m: &mut Metrics) {
        let name = self.name.as_deref().unwrap_or(&self.file);
        let mut m = m.segment(name, self.kind_word());
        m.gauge(
            "shmbus_segment_readable",
            "1 if the segment could be read as its kind, 0 if not (see /api/segments for why).",
            self.kind.is_some(),
        );
        m.gauge(
            "shmbus_segment_size_bytes",
            "Size of the segment's file in /dev/shm.",
            self.size,
        );
        let Some((_, row)) = &self.kind else { return };
        let live = row.liveness();
        m.gauge(
            "shmbus_creator_alive",
            "1 if the process that created the segment is still running.",
            live.creator_alive,
        );
        m.gauge(
            "shmbus_stale",
            "1 if the segment is stale: no participant attached and its creator gone.",
            live.stale,
        );
        row.metrics(&mut m);
    }

    /// "bus", "queue", "board", "records", "error" (not readable as a segment) or "foreign".
    pub(crate) fn kind_word(&self) -> &'static str {
        match (&self.kind, &self.error) {
            (Some((k, _)), _) => k.word(),
            (None, Some(_)) => "error",
            (None, None) => "foreign",
        }
    }
}

impl ListEntry {
    /// The entry as one JSON object, in the order of the keys above.
    fn json(&self) -> String {
        #[derive(Serialize)]
        struct Head<'a> {
            file: &'a str,
            name: Option<&'a str>,
            kind: &'static str,
            error: Option<&'a str>,
            size: u64,
            mode: &'a str,
            uid: u32,
        }
        let head = text::json_line(&Head {
            file: &self.file,
            name: self.name.as_deref(),
            kind: self.kind_word(),
            error: self.error.as_deref(),
            size: self.size,
            mode: &self.mode,
            uid: self.uid,
        });
        let mut out = head.strip_suffix('}').unwrap_or(&head).to_owned();
        for k in kinds::ALL {
            let state = match &self.kind {
                Some((kind, row)) if kind.word() == k.word() => row.json(),
                _ => "null".into(),
            };
            out.push_str(&format!(",\"{}\":{state}", k.word()));
        }
        out.push('}');
        out
    }
}

/// Reads `/dev/shm` into entries; segments that cannot be read carry their error.
pub(crate) fn collect(all: bool) -> Result<Vec<ListEntry>, Failure> {
    let entries = inspect::list(all).map_err(|e| Failure(format!("cannot read /dev/shm: {e}")))?;
    Ok(entries
        .into_iter()
        .map(|e| {
            let mut out = ListEntry {
                file: e.file_name,
                name: e.name,
                kind: None,
                error: None,
                size: e.size,
                mode: format!("{:04o}", e.mode),
                uid: e.uid,
            };
            let read = e.segment.map(|p| {
                p.and_then(|p| {
                    let kind = kinds::of(p.kind);
                    Ok((kind, kind.summarize(&p)?))
                })
            });
            match read {
                None => {}
                Some(Err(err)) => out.error = Some(err.to_string()),
                Some(Ok(k)) => out.kind = Some(k),
            }
            out
        })
        .collect())
}

/// The entries of /dev/shm (those matching --prefix), each bus's and records segment's last
/// publish from `activity`, which this sample joins.
fn gather(args: &ListArgs, activity: &mut Activity) -> Result<Vec<ListEntry>, Failure> {
    scan(args.all, args.prefix.as_deref(), activity)
}

/// The entries of /dev/shm (with `all`, other files too; with a `prefix`, those whose name
/// starts with it), each bus's and records segment's last publish from `activity`, which this
/// sample joins. `list` and `serve` both read /dev/shm here.
pub(crate) fn scan(
    all: bool,
    prefix: Option<&str>,
    activity: &mut Activity,
) -> Result<Vec<ListEntry>, Failure> {
    let mut entries = collect(all)?;
    if let Some(p) = prefix {
        entries.retain(|e| e.name.as_deref().unwrap_or(&e.file).starts_with(p));
    }
    let now = std::time::Instant::now();
    for e in &mut entries {
        let Some((_, row)) = &mut e.kind else {
            continue;
        };
        // Keyed by creator too: a segment removed and made again under the name starts over.
        if let Some(count) = row.publish_count() {
            let key = format!("{}/{}", e.file, row.liveness().creator_pid);
            row.set_last_publish(activity.observe(&key, count, now));
        }
    }
    Ok(entries)
}

/// A first sample, then the entries after --sample-ms.
fn sampled(args: &ListArgs, activity: &mut Activity) -> Result<Vec<ListEntry>, Failure> {
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
    let mut keys = QuitKeys::new()?;
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

/// The entries as `list --json` prints them: one JSON array, on one line.
pub(crate) fn json_array(entries: &[ListEntry]) -> String {
    let objects: Vec<String> = entries.iter().map(ListEntry::json).collect();
    format!("[{}]", objects.join(","))
}

fn print_once(args: &ListArgs, entries: &[ListEntry], out: &mut impl Write) -> CmdResult {
    if args.json {
        writeln!(out, "{}", json_array(entries))?;
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
    let mut tables = Vec::new();
    for kind in kinds::ALL {
        let heading = kind.word().to_uppercase();
        let mut columns = vec![(heading.as_str(), false)];
        let words = kind
            .list_columns()
            .split(' ')
            .chain(["STALE", "SIZE>", "PERM"]);
        columns.extend(words.map(|w| match w.strip_suffix('>') {
            Some(header) => (header, true),
            None => (w, false),
        }));
        let mut t = plain_table(&columns);
        for e in entries {
            let Some((k, row)) = &e.kind else { continue };
            if k.word() != kind.word() {
                continue;
            }
            let mut cells = vec![name(e)];
            cells.extend(row.cells());
            cells.push(if row.liveness().stale { "yes" } else { "no" }.into());
            cells.push(text::bytes(e.size));
            cells.push(e.mode.clone());
            t.add_row(cells);
        }
        tables.push(t);
    }

    let mut t = plain_table(&[
        ("NOT A READABLE SEGMENT", false),
        ("SIZE", true),
        ("PERM", false),
        ("WHY", false),
    ]);
    for e in entries.iter().filter(|e| e.kind.is_none()) {
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
