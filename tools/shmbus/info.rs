//! `shmbus info NAME`: the whole header, each validity check, producers and a slot census.

use std::fmt::Write as _;
use std::io::Write;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use clap::Args;
use serde::Serialize;
use shmbus::inspect::{self, CheckStatus};
use shmbus::layout::SegmentKind;
use shmbus::{Bus, HeaderSnapshot};

use crate::list::{self, BusSummary};
use crate::{text, CmdResult, Failure};

#[derive(Args, Debug)]
pub(crate) struct InfoArgs {
    /// The segment name (the part after "shmbus." in /dev/shm): a bus, queue, board or records
    /// segment.
    name: String,
    /// Print one JSON object instead of text.
    #[arg(long)]
    json: bool,
    /// Buses and records segments: how long to watch the publish count, in milliseconds (10
    /// to 10000; default 200): the last publish and the rate come from its advance.
    #[arg(long, value_name = "MS",
          value_parser = clap::value_parser!(u64).range(10..=10_000))]
    sample_ms: Option<u64>,
}

#[derive(Serialize, Debug)]
struct CheckOut {
    check: &'static str,
    /// "ok", "FAIL", "WARN" or "skipped". WARN: an owner or mode that a default open refuses
    /// but that can be trusted explicitly; the bus is still readable.
    status: &'static str,
    detail: String,
}

#[derive(Serialize, Debug)]
struct HeaderOut {
    magic: String,
    abi_version: u32,
    producer_mode: String,
    /// `barrier` or `fence` (docs/design.md §7, "Wake-up choice").
    wakeup: String,
    slot_count: u64,
    slot_stride: u64,
    capacity: u64,
    type_name: String,
    type_size: u32,
    type_align: u32,
    type_hash: String,
    first_seq: u64,
    cursor: u64,
    published: u64,
    creator_pid: u32,
    creator_start_ticks: u64,
    created_unix_ns: u64,
    segment_size: u64,
}

#[derive(Serialize, Debug)]
struct ProducerOut {
    index: usize,
    pid: u32,
    /// Nanoseconds since it attached or last stamped its activity (once in 1024 publishes).
    stamp_ns_ago: Option<u64>,
}

#[derive(Serialize, Debug)]
struct CensusOut {
    empty: u64,
    written: u64,
    being_written: u64,
}

/// What `info --json` prints. `error` is set, and `header`, `summary`, `census` are null, when
/// the bus cannot be opened.
#[derive(Serialize, Debug)]
struct InfoOut {
    name: String,
    /// "bus" (queues, boards and records segments have their own reports).
    kind: &'static str,
    path: String,
    checks: Vec<CheckOut>,
    error: Option<String>,
    header: Option<HeaderOut>,
    summary: Option<BusSummary>,
    producers: Vec<ProducerOut>,
    census: Option<CensusOut>,
}

/// The checks whose failure a user can override (`publish --accept-other-owner`,
/// `--accept-shared-write`): the bus is readable, so they are warnings, not failures.
const TRUSTABLE: [&str; 2] = ["owner", "mode"];

fn status_word(check: &str, s: CheckStatus) -> &'static str {
    match s {
        CheckStatus::Pass => "ok",
        CheckStatus::Fail if TRUSTABLE.contains(&check) => "WARN",
        CheckStatus::Fail => "FAIL",
        CheckStatus::Skipped => "skipped",
    }
}

/// What a warning means for the user, by check.
fn remedy(check: &str) -> &'static str {
    match check {
        "owner" => "programs refuse this bus unless they trust its owner (shmbus publish --accept-other-owner)",
        _ => "programs refuse this bus unless they trust its mode (shmbus publish --accept-shared-write)",
    }
}

/// The wake-up choice of a header, as `create --wakeup` spells it.
pub(crate) fn wakeup_name(h: &HeaderSnapshot) -> String {
    match h.wakeup() {
        Some(shmbus::Wakeup::Barrier) => "barrier".into(),
        Some(shmbus::Wakeup::Fence) => "fence".into(),
        _ => format!("invalid ({})", h.wakeup_word),
    }
}

fn header_out(h: &HeaderSnapshot) -> HeaderOut {
    HeaderOut {
        wakeup: wakeup_name(h),
        magic: format!("{:#018x}", h.magic),
        abi_version: h.abi_version,
        producer_mode: h.producer_mode().map_or_else(
            || format!("invalid ({})", h.mode_word),
            |m| list::mode_name(m).into(),
        ),
        slot_count: h.slot_count,
        slot_stride: h.slot_stride,
        capacity: h.capacity,
        type_name: h.ty.name.clone(),
        type_size: h.ty.size,
        type_align: h.ty.align,
        type_hash: format!("{:#018x}", h.type_hash),
        first_seq: h.first_seq,
        cursor: h.cursor,
        published: h.published(),
        creator_pid: h.creator_pid,
        creator_start_ticks: h.creator_start,
        created_unix_ns: h.created_ns,
        segment_size: h.segment_size,
    }
}

pub(crate) fn run(args: &InfoArgs) -> CmdResult {
    // An invalid name or a missing segment is the whole story: one error line, no report.
    inspect::validate_name(&args.name)?;
    let path = inspect::segment_path(&args.name);
    if std::fs::symlink_metadata(&path).is_err() {
        return Err(shmbus::Error::NotFound {
            name: args.name.clone(),
        }
        .into());
    }
    // Every kind but the bus has its own report; a segment whose kind cannot be read gets the
    // bus's check-by-check report, which shows where it fails.
    let sample_ms = args.sample_ms.unwrap_or(200);
    if let Ok(p) = inspect::probe(&args.name) {
        if matches!(p.kind, SegmentKind::Queue | SegmentKind::Board) && args.sample_ms.is_some() {
            return Err(Failure(format!(
                "--sample-ms applies to buses and records segments; {:?} is a {}",
                args.name, p.kind
            )));
        }
        match p.kind {
            SegmentKind::Queue => return crate::queue::info(&args.name, args.json),
            SegmentKind::Board => return crate::board::info(&args.name, args.json),
            SegmentKind::Records => {
                let r = crate::records::open_for_inspection(&args.name)?;
                let sample = Duration::from_millis(sample_ms);
                return crate::records::info(&r, args.json, sample);
            }
            // A bus, or a kind this inspector does not know: the checks show it.
            _ => {}
        }
    }
    let checks: Vec<CheckOut> = inspect::checks(&args.name)
        .into_iter()
        .map(|c| CheckOut {
            check: c.name,
            status: status_word(c.name, c.status),
            detail: if status_word(c.name, c.status) == "WARN" {
                // The library's text names its builder methods; keep the finding, name the flag.
                let finding = c.detail.split("; use ").next().unwrap_or(&c.detail);
                format!("{finding}: {}", remedy(c.name))
            } else {
                c.detail
            },
        })
        .collect();
    let opened = inspect::open_for_inspection(&args.name);
    let mut out = InfoOut {
        name: args.name.clone(),
        kind: "bus",
        path: path.display().to_string(),
        checks,
        error: None,
        header: None,
        summary: None,
        producers: Vec::new(),
        census: None,
    };
    let failed_check = out.checks.iter().find(|c| c.status == "FAIL").map(|c| {
        format!(
            "bus {:?}: check {:?} failed: {}",
            args.name, c.check, c.detail
        )
    });
    let failure = match &opened {
        Ok(bus) => {
            let mut activity = crate::activity::Activity::default();
            activity.observe("", bus.cursor(), std::time::Instant::now());
            std::thread::sleep(Duration::from_millis(sample_ms));
            fill(&mut out, bus);
            if let Some(sum) = &mut out.summary {
                sum.last_publish = activity.observe("", sum.cursor, std::time::Instant::now());
            }
            failed_check.map(Failure)
        }
        Err(e) => {
            out.error = Some(e.to_string());
            Some(Failure(e.to_string()))
        }
    };
    let mut stdout = std::io::stdout().lock();
    if args.json {
        writeln!(stdout, "{}", text::json_line(&out))?;
    } else {
        stdout.write_all(render(&out).as_bytes())?;
    }
    failure.map_or(Ok(()), Err)
}

fn fill(out: &mut InfoOut, bus: &Bus) {
    let h = bus.header();
    out.header = Some(header_out(&h));
    out.summary = Some(list::summarize(bus));
    out.producers = bus
        .producers()
        .iter()
        .map(|p| ProducerOut {
            index: p.index,
            pid: p.pid,
            stamp_ns_ago: p.since_last_publish().map(|d| d.as_nanos() as u64),
        })
        .collect();
    let c = bus.slot_census();
    out.census = Some(CensusOut {
        empty: c.empty,
        written: c.written,
        being_written: c.being_written,
    });
}

/// Who owns segment `name` and its permission bits, as `info` reports them for every kind.
#[derive(Serialize, Debug, Clone)]
pub(crate) struct Access {
    pub(crate) owner_uid: u32,
    /// Owned by the user running the inspector.
    pub(crate) owner_is_us: bool,
    /// Permission bits in octal, e.g. "0600".
    pub(crate) mode: String,
    /// Writable by group or others: programs refuse it unless they trust it explicitly.
    pub(crate) shared_write: bool,
}

impl Access {
    pub(crate) fn of(name: &str) -> Option<Access> {
        use std::os::unix::fs::MetadataExt;
        let m = std::fs::symlink_metadata(inspect::segment_path(name)).ok()?;
        Some(Access {
            owner_uid: m.uid(),
            owner_is_us: m.uid() == nix::unistd::geteuid().as_raw(),
            mode: format!("{:04o}", m.mode() & 0o777),
            shared_write: m.mode() & 0o022 != 0,
        })
    }

    /// `uid 1000 (us), mode 0600` with what a foreign owner or shared write means.
    pub(crate) fn line(&self) -> String {
        let mut s = format!(
            "uid {}{}, mode {}",
            self.owner_uid,
            if self.owner_is_us {
                " (us)"
            } else {
                " (not us)"
            },
            self.mode
        );
        if !self.owner_is_us {
            s.push_str("; programs must trust its owner (--accept-other-owner)");
        }
        if self.shared_write {
            s.push_str("; writable by others: programs must trust it (--accept-shared-write)");
        }
        s
    }
}

/// The last publish and the rate, as `info` prints them: `<200ms ago, 20/s`, `3.0s ago`,
/// `none in the last 200ms`, `never`.
pub(crate) fn last_publish_line(l: &crate::activity::LastPublish) -> String {
    let rate = l
        .per_s
        .filter(|r| *r > 0.0)
        .map_or(String::new(), |r| format!(", {}/s", text::rate(r)));
    match (l.min_ns_ago, l.max_ns_ago) {
        (None, _) => "never".into(),
        (Some(_), None) => format!(
            "none in the last {} (sampled)",
            text::duration(Duration::from_nanos(l.min_ns_ago.unwrap_or(0)))
        ),
        _ => format!("{} ago{rate} (sampled)", l.display()),
    }
}

/// The text report; every string from the segment escaped.
fn render(o: &InfoOut) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "bus      {}", text::sanitize(&o.name));
    let _ = writeln!(s, "path     {}", text::sanitize(&o.path));
    let _ = writeln!(s, "\nchecks");
    let w = o.checks.iter().map(|c| c.check.len()).max().unwrap_or(0);
    for c in &o.checks {
        let _ = writeln!(
            s,
            "  {:<7} {:<w$}  {}",
            c.status,
            c.check,
            text::sanitize(&c.detail)
        );
    }
    if let Some(h) = &o.header {
        let created = UNIX_EPOCH + Duration::from_nanos(h.created_unix_ns);
        let age = SystemTime::now()
            .duration_since(created)
            .map_or("in the future".into(), |d| {
                format!("{} ago", text::duration(d))
            });
        let sum = o.summary.as_ref();
        let alive = |b: bool| if b { "alive" } else { "gone" };
        let _ = writeln!(s, "\nheader");
        let rows: Vec<(&str, String)> = vec![
            ("magic", h.magic.clone()),
            ("abi version", h.abi_version.to_string()),
            ("producer mode", h.producer_mode.clone()),
            ("wake-up", h.wakeup.clone()),
            ("slots", h.slot_count.to_string()),
            ("slot stride", format!("{} bytes", h.slot_stride)),
            ("capacity", format!("{} bytes per message", h.capacity)),
            (
                "message type",
                format!(
                    "{} (size {}, align {}, hash {})",
                    h.type_name, h.type_size, h.type_align, h.type_hash
                ),
            ),
            ("first seq", h.first_seq.to_string()),
            (
                "cursor",
                format!("{} ({} published)", h.cursor, h.published),
            ),
            (
                "last publish",
                sum.map_or("-".into(), |x| last_publish_line(&x.last_publish)),
            ),
            (
                "creator",
                format!(
                    "pid {} ({}), start {} ticks",
                    h.creator_pid,
                    alive(sum.is_some_and(|x| x.creator_alive)),
                    h.creator_start_ticks
                ),
            ),
            ("created", format!("{age} (unix ns {})", h.created_unix_ns)),
            (
                "segment size",
                format!("{} bytes ({})", h.segment_size, text::bytes(h.segment_size)),
            ),
            (
                "stale",
                if sum.is_some_and(|x| x.stale) {
                    "yes: no live producer and creator gone"
                } else {
                    "no"
                }
                .into(),
            ),
        ];
        for (k, v) in rows {
            let _ = writeln!(s, "  {k:<14} {}", text::sanitize(&v));
        }
        let _ = writeln!(s, "\nproducers ({} live)", o.producers.len());
        for p in &o.producers {
            let last = p.stamp_ns_ago.map_or("no activity stamp".into(), |ns| {
                format!(
                    "attached or stamped {} ago (stamped once in 1024 publishes)",
                    text::duration(Duration::from_nanos(ns))
                )
            });
            let _ = writeln!(s, "  #{:<3} pid {:<8} {last}", p.index, p.pid);
        }
    }
    if let Some(c) = &o.census {
        let _ = writeln!(s, "\nslots");
        let _ = writeln!(
            s,
            "  empty {}, written {}, being written {}",
            c.empty, c.written, c.being_written
        );
    }
    s
}
