//! Journals: `shmbus record NAME FILE`, `shmbus replay FILE NAME`, and `shmbus tail FILE` /
//! `shmbus info FILE`, which read a journal file as `tail` and `info` read a bus.
//!
//! A `tail` or `info` argument names a journal file when it names an existing file (or other
//! directory entry), or when it is written as a path: starting with '/', './' or '../'.
//! Anything else is a bus name, so `a/b` that does not exist is refused as a bus name (with the
//! character named), as it always was.

use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use clap::{Args, ValueEnum};
use serde::Serialize;
use shmbus::journal::{Entry, Journal, JournalOptions, JournalShape, SyncPolicy};
use shmbus::{Bus, Recv, Start, Wait};

use crate::kinds::StartAt;
use crate::output::{self, install_stop_handler, CmdResult, Failure, Printer};
use crate::text;

/// Whether a `tail` or `info` argument names a journal file rather than a bus.
pub(crate) fn is_journal_path(arg: &str) -> bool {
    ["/", "./", "../"].iter().any(|p| arg.starts_with(p))
        || Path::new(arg).symlink_metadata().is_ok()
}

/// Where `record` starts on the bus.
#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
enum RecordFrom {
    /// Only messages published from now on.
    Newest,
    /// Also the messages still in the ring, from the oldest intact one.
    Oldest,
}

#[derive(Args, Debug)]
pub(crate) struct RecordArgs {
    /// The bus to record.
    name: String,
    /// The journal file to create (an existing file is never overwritten).
    file: PathBuf,
    /// Where to start.
    #[arg(long, value_enum, default_value_t = RecordFrom::Newest)]
    from: RecordFrom,
    /// Stop after N messages.
    #[arg(short = 'n', long = "count", value_name = "N")]
    n: Option<u64>,
    /// Stop after SECS seconds (fractions allowed).
    #[arg(long, value_name = "SECS")]
    duration: Option<f64>,
    /// When entries are synced to the disk, which decides what survives a power loss (a killed
    /// recorder loses nothing committed under any policy; docs/design.md §13).
    #[arg(long, value_enum, default_value_t = SyncArg::Interval)]
    sync: SyncArg,
    /// The period of --sync interval, in seconds (fractions allowed).
    #[arg(long, value_name = "SECS", default_value_t = 1.0, value_parser = parse_interval)]
    sync_interval: f64,
    /// Print the final summary as one JSON object.
    #[arg(long)]
    json: bool,
}

/// `record --sync`.
#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
enum SyncArg {
    /// No sync while recording; one when recording ends.
    None,
    /// A sync at most every --sync-interval seconds while entries come in, and one at the end.
    Interval,
    /// A sync after every entry: slow, as slow as the disk's flush.
    Every,
}

fn parse_interval(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(v) if (0.0..=86_400.0).contains(&v) => Ok(v),
        _ => Err(format!(
            "expected a number of seconds from 0 to 86400, got {s:?}"
        )),
    }
}

impl RecordArgs {
    fn sync_policy(&self) -> SyncPolicy {
        match self.sync {
            SyncArg::None => SyncPolicy::None,
            SyncArg::Interval => SyncPolicy::Interval(Duration::from_secs_f64(self.sync_interval)),
            SyncArg::Every => SyncPolicy::Every,
        }
    }
}

/// Pace of `replay`.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Rate {
    /// The recorded gaps between receive times.
    Original,
    /// As fast as the bus takes them.
    Max,
    /// This many messages per second.
    PerSec(f64),
}

impl FromStr for Rate {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let words = [("original", Rate::Original), ("max", Rate::Max)];
        let per_sec = |s: &str| {
            let r = s.parse::<f64>().ok()?;
            (r.is_finite() && r > 0.0).then_some(Rate::PerSec(r))
        };
        let expected = "original, max or a positive number of messages per second";
        text::word_or(s, &words, per_sec, expected)
    }
}

#[derive(Args, Debug)]
pub(crate) struct ReplayArgs {
    /// The journal to replay.
    file: PathBuf,
    /// The bus to publish into (created with the recorded shape and type if absent).
    name: String,
    /// original (the recorded timing), max, or a number of messages per second.
    #[arg(
        long,
        default_value = "original",
        value_name = "original|max|MSGS_PER_SEC"
    )]
    rate: Rate,
    /// Skip messages recorded with a sequence number below SEQ.
    #[arg(long, value_name = "SEQ")]
    from: Option<u64>,
    /// Print the final summary as one JSON object.
    #[arg(long)]
    json: bool,
}

fn now_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}

#[derive(Serialize, Default)]
struct RecordSummary {
    file: String,
    bus: String,
    messages: u64,
    bytes: u64,
    lost: u64,
    loss_entries: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    first_seq: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    last_seq: Option<u64>,
    /// The sync policy: "none", "interval" or "every".
    sync: &'static str,
    /// Syncs of entries while recording (the one at the end not counted).
    syncs: u64,
}

/// `shmbus record NAME FILE`.
pub(crate) fn record(args: &RecordArgs) -> CmdResult {
    let bus = shmbus::inspect::open_for_inspection(&args.name)?;
    if args.file.exists() {
        return Err(Failure(format!(
            "{} already exists: record into a new file (a journal is never appended to)",
            text::sanitize(&args.file.display().to_string())
        )));
    }
    let options = JournalOptions::new().sync(args.sync_policy());
    let mut writer = Journal::create_with(&args.file, &JournalShape::of(&bus), &options)?;
    install_stop_handler()?;
    let start = match args.from {
        RecordFrom::Newest => Start::Next,
        RecordFrom::Oldest => Start::Oldest,
    };
    let mut sub = bus.subscribe(start).wait_strategy(Wait::Sleep);
    let deadline = args
        .duration
        .map(|s| Instant::now() + Duration::try_from_secs_f64(s.max(0.0)).unwrap_or(Duration::MAX));
    let mut sum = RecordSummary {
        file: args.file.display().to_string(),
        bus: args.name.clone(),
        sync: match args.sync {
            SyncArg::None => "none",
            SyncArg::Interval => "interval",
            SyncArg::Every => "every",
        },
        ..RecordSummary::default()
    };
    while !output::stopped()
        && args.n.is_none_or(|n| sum.messages < n)
        && deadline.is_none_or(|d| Instant::now() < d)
    {
        let first = sub.next_seq();
        match sub.recv_timeout(Duration::from_millis(50)) {
            Recv::Message(m) => {
                writer.append_message(m.seq(), now_ns(), m.bytes())?;
                sum.messages += 1;
                sum.bytes += m.bytes().len() as u64;
                sum.first_seq.get_or_insert(m.seq());
                sum.last_seq = Some(m.seq());
            }
            Recv::Lapped { lost } => {
                writer.append_loss(first, lost)?;
                sum.lost += lost;
                sum.loss_entries += 1;
            }
            // Idle: the last entries are synced within a period, not at the next message.
            Recv::Empty => {
                writer.sync_if_due()?;
            }
            // No producer: a new one may attach and go on; look again shortly.
            Recv::Closed => {
                writer.sync_if_due()?;
                std::thread::sleep(Duration::from_millis(5));
            }
        }
    }
    sum.syncs = writer.syncs();
    writer.finish()?;
    output::print_summary(args.json, &sum, || {
        format!(
            "recorded {} ({}) from bus {} into {}; {}",
            text::count(sum.messages, "message"),
            text::bytes(sum.bytes),
            text::sanitize(&sum.bus),
            text::sanitize(&sum.file),
            if sum.lost == 0 {
                "nothing lost".to_owned()
            } else {
                format!(
                    "lost {} in {}",
                    text::count(sum.lost, "message"),
                    text::count(sum.loss_entries, "gap")
                )
            },
        )
    })
}

#[derive(Serialize, Default)]
struct ReplaySummary {
    file: String,
    bus: String,
    created: bool,
    published: u64,
    bytes: u64,
    skipped: u64,
    recorded_lost: u64,
}

/// Opens bus `name` for publishing, or creates it with the recorded shape.
fn bus_for_replay(name: &str, shape: &JournalShape) -> Result<(Bus, bool), Failure> {
    match Bus::open(name) {
        Ok(bus) => Ok((bus, false)),
        Err(shmbus::Error::NotFound { .. }) => Ok((shape.create_bus(name)?, true)),
        Err(e) => Err(e.into()),
    }
}

/// `shmbus replay FILE NAME`.
pub(crate) fn replay(args: &ReplayArgs) -> CmdResult {
    let mut journal = Journal::open(&args.file)?;
    let (bus, created) = bus_for_replay(&args.name, &journal.info().shape)?;
    // Checked first: a message longer than the bus's slots would stop the replay half done.
    let longest = journal
        .entries()
        .filter_map(|e| match e {
            Ok(Entry::Message { seq, bytes, .. }) if args.from.is_none_or(|f| seq >= f) => {
                Some((bytes.len(), seq))
            }
            _ => None,
        })
        .max();
    if let Some((len, seq)) = longest.filter(|&(len, _)| len > bus.capacity()) {
        return Err(Failure(format!(
            "message seq {seq} of {} is {len} bytes, but bus {} takes at most {}: nothing \
             replayed (replay into a bus with larger slots, or a new name)",
            text::sanitize(&args.file.display().to_string()),
            text::sanitize(&args.name),
            bus.capacity()
        )));
    }
    let mut publisher = bus.publisher()?;
    install_stop_handler()?;
    let mut sum = ReplaySummary {
        file: args.file.display().to_string(),
        bus: args.name.clone(),
        created,
        ..ReplaySummary::default()
    };
    let start = Instant::now();
    let mut first_ts = None;
    for entry in journal.entries() {
        if output::stopped() {
            break;
        }
        // A damaged entry stops the replay before it is published, saying how far it got.
        let entry = entry.map_err(|e| {
            Failure(format!(
                "{e}; stopped there, {} published before it",
                text::count(sum.published, "message")
            ))
        })?;
        let (seq, ts_ns, bytes) = match entry {
            Entry::Message { seq, ts_ns, bytes } => (seq, ts_ns, bytes),
            Entry::Lost { count, .. } => {
                sum.recorded_lost += count;
                continue;
            }
        };
        if args.from.is_some_and(|from| seq < from) {
            sum.skipped += 1;
            continue;
        }
        let due = match args.rate {
            Rate::Max => None,
            Rate::Original => {
                let t0 = *first_ts.get_or_insert(ts_ns);
                Some(start + Duration::from_nanos(ts_ns.saturating_sub(t0)))
            }
            Rate::PerSec(r) => Some(start + Duration::from_secs_f64(sum.published as f64 / r)),
        };
        if let Some(due) = due {
            let wait = due.saturating_duration_since(Instant::now());
            if !wait.is_zero() {
                std::thread::sleep(wait);
            }
        }
        publisher.publish_bytes(&bytes).map_err(|e| {
            Failure(format!(
                "{e} (message seq {seq} of {}; {} published before it)",
                sum.file, sum.published
            ))
        })?;
        sum.published += 1;
        sum.bytes += bytes.len() as u64;
    }
    output::print_summary(args.json, &sum, || {
        format!(
            "replayed {} ({}) from {} into {}bus {}{}{}",
            text::count(sum.published, "message"),
            text::bytes(sum.bytes),
            text::sanitize(&sum.file),
            if created { "new " } else { "" },
            text::sanitize(&sum.bus),
            if sum.skipped > 0 {
                format!("; skipped {} before --from", sum.skipped)
            } else {
                String::new()
            },
            if sum.recorded_lost > 0 {
                format!(
                    "; the recording had lost {}",
                    text::count(sum.recorded_lost, "message")
                )
            } else {
                String::new()
            },
        )
    })
}

/// What `shmbus tail FILE` was asked for: the options of `shmbus tail NAME`.
pub(crate) struct TailFile<'a> {
    pub(crate) file: &'a str,
    pub(crate) from: StartAt,
    pub(crate) n: u64,
    pub(crate) follow: bool,
}

/// `shmbus tail FILE`.
pub(crate) fn tail_file(args: &TailFile<'_>, p: &Printer) -> CmdResult {
    let journal = Journal::open(args.file)?;
    let line = |e: &Entry| match e {
        Entry::Message { seq, bytes, .. } => p.message(*seq, bytes),
        Entry::Lost { first, count } => p.lap(*first, *count),
    };
    let mut out = io::BufWriter::new(io::stdout().lock());
    let mut follower = journal.follow();
    // What is committed now: the last n messages, the first n, or those from a sequence on;
    // like `tail NAME`, n counts messages, and the losses among them are printed too.
    let mut shown = std::collections::VecDeque::new();
    let (mut kept, mut taken) = (0, 0);
    while let Some(e) = follower.poll()? {
        let wanted = match (args.from, &e) {
            (StartAt::Seq(s), Entry::Message { seq, .. }) => *seq >= s,
            (StartAt::Seq(s), Entry::Lost { first, count }) => first + (count - 1) >= s,
            _ => true,
        };
        if !wanted {
            continue;
        }
        match args.from {
            StartAt::Newest => {
                kept += u64::from(matches!(e, Entry::Message { .. }));
                shown.push_back(e);
                while kept > args.n {
                    if let Some(Entry::Message { .. }) = shown.pop_front() {
                        kept -= 1;
                    }
                }
                // Losses before the first message shown belong to messages not shown.
                while let Some(Entry::Lost { .. }) = shown.front() {
                    shown.pop_front();
                }
            }
            _ if !args.follow && taken >= args.n => break,
            _ => {
                writeln!(out, "{}", line(&e))?;
                taken += u64::from(matches!(e, Entry::Message { .. }));
            }
        }
    }
    for e in &shown {
        writeln!(out, "{}", line(e))?;
    }
    if args.follow {
        install_stop_handler()?;
        out.flush()?;
        while !output::stopped() {
            match follower.poll()? {
                Some(e) => writeln!(out, "{}", line(&e))?,
                None => {
                    out.flush()?;
                    std::thread::sleep(Duration::from_millis(10));
                }
            }
        }
    }
    output::quiet_broken_pipe(out.flush())
}

#[derive(Serialize)]
struct InfoOut {
    file: String,
    format_version: u32,
    slots: u64,
    capacity: u64,
    producer_mode: &'static str,
    message_type: String,
    type_size: u32,
    type_align: u32,
    created_unix_ns: u64,
    /// "recording" (a recorder holds it), "finished" (closed by its recorder) or "abandoned"
    /// (its recorder ended without closing it: killed).
    recorder: &'static str,
    messages: u64,
    payload_bytes: u64,
    lost: u64,
    loss_entries: u64,
    first_seq: Option<u64>,
    last_seq: Option<u64>,
    first_unix_ns: Option<u64>,
    last_unix_ns: Option<u64>,
    file_bytes: u64,
    used_bytes: u64,
    torn_tail_bytes: u64,
}

/// `shmbus info FILE`.
pub(crate) fn info_file(file: &str, json: bool) -> CmdResult {
    let mut journal = Journal::open(file)?;
    let s = journal.summary()?;
    let info = journal.info().clone();
    let recorder = if journal.recorder_alive() {
        "recording"
    } else if journal.is_closed() {
        "finished"
    } else {
        "abandoned"
    };
    let ty = &info.shape.message_type;
    let o = InfoOut {
        file: file.to_owned(),
        format_version: info.version,
        slots: info.shape.slots,
        capacity: info.shape.capacity,
        producer_mode: match info.shape.mode {
            shmbus::ProducerMode::Single => "single",
            _ => "multi",
        },
        message_type: ty.name.clone(),
        type_size: ty.size,
        type_align: ty.align,
        created_unix_ns: info.created_ns,
        recorder,
        messages: s.messages,
        payload_bytes: s.payload_bytes,
        lost: s.lost,
        loss_entries: s.loss_entries,
        first_seq: s.first_seq,
        last_seq: s.last_seq,
        first_unix_ns: s.first_ts_ns,
        last_unix_ns: s.last_ts_ns,
        file_bytes: s.file_bytes,
        used_bytes: s.end,
        torn_tail_bytes: s.torn_tail_bytes,
    };
    let mut out = io::stdout().lock();
    if json {
        writeln!(out, "{}", text::json_line(&o))?;
        return Ok(());
    }
    let seqs = match (o.first_seq, o.last_seq) {
        (Some(a), Some(b)) => format!(", seq {a}..{b}"),
        _ => String::new(),
    };
    let span = match (o.first_unix_ns, o.last_unix_ns) {
        (Some(a), Some(b)) => format!(
            "{} .. {} ({})",
            utc(a),
            utc(b),
            text::duration(Duration::from_nanos(b.saturating_sub(a)))
        ),
        _ => "-".into(),
    };
    let recorder_text = match recorder {
        "recording" => "recording (a recorder holds the file and appends to it)",
        "finished" => "finished (closed by its recorder)",
        _ => "abandoned (its recorder ended without closing it; everything committed is intact)",
    };
    let tail = match (o.torn_tail_bytes, recorder) {
        (0, _) => "clean".to_owned(),
        (n, "recording") => format!("an entry of up to {n} bytes is being written"),
        (n, _) => format!(
            "torn: {n} bytes of an entry never committed follow the last complete entry (ignored)"
        ),
    };
    let rows = [
        ("journal", text::sanitize(&o.file)),
        ("format", format!("version {}", o.format_version)),
        (
            "bus",
            format!(
                "{} slots of {} bytes, {} producer",
                o.slots, o.capacity, o.producer_mode
            ),
        ),
        ("type", text::sanitize(&ty.to_string())),
        ("created", utc(o.created_unix_ns)),
        ("recorder", recorder_text.to_owned()),
        (
            "messages",
            format!("{} ({}){seqs}", o.messages, text::bytes(o.payload_bytes)),
        ),
        (
            "lost",
            format!("{} in {}", o.lost, text::count(o.loss_entries, "gap")),
        ),
        ("received", span),
        (
            "size",
            format!(
                "{} used of {}",
                text::bytes(o.used_bytes),
                text::bytes(o.file_bytes)
            ),
        ),
        ("tail", tail),
    ];
    for (k, v) in rows {
        writeln!(out, "{k:<9} {v}")?;
    }
    Ok(())
}

/// `ns` since the Unix epoch as an ISO 8601 UTC time with milliseconds.
fn utc(ns: u64) -> String {
    let secs = ns / 1_000_000_000;
    let ms = ns / 1_000_000 % 1000;
    let (days, rem) = (secs / 86_400, secs % 86_400);
    // Civil date from days since 1970-01-01 (the proleptic Gregorian calendar).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{ms:03}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utc_formats_known_instants() {
        assert_eq!(utc(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(utc(951_782_400_123_000_000), "2000-02-29T00:00:00.123Z");
        assert_eq!(utc(1_700_000_000_000_000_000), "2023-11-14T22:13:20.000Z");
    }

    #[test]
    fn paths_are_journals_and_plain_names_are_buses() {
        assert!(is_journal_path("./prices"));
        assert!(is_journal_path("../prices"));
        assert!(is_journal_path("/tmp/no-such-journal-4711"));
        assert!(is_journal_path("/"), "an existing entry");
        assert!(!is_journal_path("surely-no-such-file-here-4711"));
        assert!(
            !is_journal_path("no-such-dir-4711/x"),
            "a bus name, refused as one"
        );
    }
}
