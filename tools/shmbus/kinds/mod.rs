//! The segment kinds, one file each, behind one trait: what the inspector does with a bus, a
//! queue, a records segment or a board. A command decides a segment's kind once, with
//! [`of_segment`] (or [`of`] on a probe it already has), and asks the kind; it never matches
//! on kinds itself.

pub(crate) mod board;
pub(crate) mod bus;
pub(crate) mod lanes;
pub(crate) mod queue;
pub(crate) mod records;

use std::str::FromStr;
use std::time::Duration;

use clap::Args;
use serde::Serialize;
use shmbus::inspect::{self, Probe};
use shmbus::layout::SegmentKind;
use shmbus::{HeaderSnapshot, LapPolicy, Start};

use crate::activity::LastPublish;
use crate::metrics::SegmentMetrics;
use crate::output::{CmdResult, Failure, Printer};
use crate::text;
use crate::watch_view::WatchState;

/// What the inspector does with a segment of one kind. The defaults refuse: a command that
/// does not apply to a kind says so, and what to use instead.
pub(crate) trait Kind: Sync {
    /// The kind as `create --kind` and `list --json` spell it: "bus", "queue", "records", "board".
    fn word(&self) -> &'static str;

    /// The options of `create` this kind takes (the others are refused, not ignored).
    fn create_options(&self) -> &'static [&'static str];

    /// `shmbus create NAME --kind WORD`: creates the segment and says what it made.
    fn create(&self, a: &CreateArgs) -> CmdResult;

    /// What `list` shows of a probed segment, opened read-only.
    fn summarize(&self, p: &Probe) -> shmbus::Result<Box<dyn ListRow>>;

    /// `list`'s column headers for this kind, between the name and STALE, SIZE, PERM, as one
    /// line: a header ending in '>' is right-aligned (a number).
    fn list_columns(&self) -> &'static str;

    /// `shmbus info NAME` as text and as JSON (what `info --json` prints and `serve` answers
    /// at `/api/segments/NAME`); `sample_ms` is `--sample-ms` as given. `payloads` says whether
    /// values read from the segment go into the report.
    fn report(
        &self,
        name: &str,
        sample_ms: Option<u64>,
        payloads: Payloads,
    ) -> Result<Report, Failure>;

    /// Who is attached to the segment and alive, in the kind's words ("a live producer (pid
    /// 12)"); empty when no one is, or when the segment cannot be read.
    fn live_participants(&self, p: &Probe) -> Vec<String>;

    /// Why a stale segment of this kind is stale, besides its creator's exit: who is not
    /// attached ("no producer attached"), and what the kind counts of its past.
    fn stale_detail(&self, p: &Probe) -> String;

    /// `shmbus tail NAME`.
    fn tail(&self, name: &str, _plan: &TailPlan, _p: &Printer) -> CmdResult {
        // A kind that tail does not read: the bus's open says what the segment is.
        inspect::open_for_inspection(name)?;
        Err(Failure(format!(
            "tail reads buses and records segments, not {name:?}"
        )))
    }

    /// A read-only subscriber for `hz` and `watch` (`command`), starting at the next item and
    /// resuming after a lap as `policy` says.
    fn feed(&self, name: &str, _: LapPolicy, command: &str) -> Result<Box<dyn Feed>, Failure> {
        let Instead { what, watch, .. } = self.instead(name);
        Err(Failure(format!(
            "{name:?} is {what}; {command} reads buses and records segments (use `{watch}`)"
        )))
    }

    /// The producer that `publish` attaches, trusting what `trust` says.
    fn producer(&self, name: &str, _: &Trust) -> Result<Attached, Failure> {
        let Instead { what, publish, .. } = self.instead(name);
        Err(Failure(format!(
            "{name:?} is {what}; publish writes to buses and records segments (use `{publish}`)"
        )))
    }

    /// For a kind that `hz`, `watch` and `publish` do not take: what to use instead on
    /// segment `name`.
    fn instead(&self, name: &str) -> Instead {
        Instead {
            what: "a segment",
            watch: format!("shmbus info {name}"),
            publish: "shmbus info",
        }
    }
}

/// Whether a report carries the values a segment holds (a board's cells), or only their
/// shape and state: `serve` hides them unless `--show-payloads` is given.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Payloads {
    Shown,
    Hidden,
}

/// One segment's `info` report: the same state as text and as one line of JSON, and the
/// failure `info` exits with (a bus that fails a check is still reported, check by check).
pub(crate) struct Report {
    pub(crate) text: String,
    pub(crate) json: String,
    pub(crate) failure: Option<Failure>,
}

/// What a refusal of `hz`, `watch` or `publish` says.
pub(crate) struct Instead {
    /// What the segment is: "a queue".
    pub(crate) what: &'static str,
    /// The command to use instead of `hz` and `watch`.
    pub(crate) watch: String,
    /// The command to use instead of `publish`.
    pub(crate) publish: &'static str,
}

/// Every kind, in the order `list` prints their tables.
pub(crate) const ALL: [&dyn Kind; 5] = [
    &bus::BusKind,
    &queue::QueueKind,
    &board::BoardKind,
    &records::RecordsKind,
    &lanes::LanesKind,
];

/// The kind of a probed segment.
pub(crate) fn of(kind: SegmentKind) -> &'static dyn Kind {
    match kind {
        SegmentKind::Bus => &bus::BusKind,
        SegmentKind::Queue => &queue::QueueKind,
        SegmentKind::Records => &records::RecordsKind,
        SegmentKind::Board => &board::BoardKind,
        SegmentKind::Lanes => &lanes::LanesKind,
        // A kind newer than this inspector: the bus's open says what it is.
        _ => &bus::BusKind,
    }
}

/// The kind of segment `name`, decided once from its header. A segment that cannot be probed
/// (missing, foreign, damaged) is taken as a bus: the bus's open then says what is wrong, check
/// by check.
pub(crate) fn of_segment(name: &str) -> &'static dyn Kind {
    inspect::probe(name).map_or(&bus::BusKind, |p| of(p.kind))
}

/// The trust flags of the commands that attach to a segment (`publish`, `push`, `pop`, `set`).
#[derive(Args, Debug, Clone, Copy, Default)]
pub(crate) struct Trust {
    /// Open the segment even if it is writable by other users (its mode lets them write).
    #[arg(long)]
    pub(crate) accept_shared_write: bool,
    /// Open the segment even if it belongs to another user.
    #[arg(long)]
    pub(crate) accept_other_owner: bool,
}

/// Applies the trust flags to any kind's builder.
macro_rules! trusting {
    ($builder:expr, $trust:expr) => {{
        let mut b = $builder;
        if $trust.accept_shared_write {
            b = b.accept_shared_write();
        }
        if $trust.accept_other_owner {
            b = b.accept_other_owner();
        }
        b
    }};
}
pub(crate) use trusting;

/// Opens a segment read-only, trusting any owner and mode (an inspector only reads).
macro_rules! for_inspection {
    ($builder:expr) => {
        $builder
            .read_only()
            .accept_other_owner()
            .accept_shared_write()
            .open()
    };
}
pub(crate) use for_inspection;

/// The segment kinds `create` makes.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum KindArg {
    /// A broadcast bus: every subscriber sees every message (--slots, --size,
    /// --multi-producer, --stall-bound-ms).
    Bus,
    /// A work queue: each item goes to one receiver (--slots, --size, --stall-bound-ms).
    Queue,
    /// Records of any size in one byte ring (--bytes).
    Records,
    /// A board: the latest value of each of N cells (--cells, --keys, --size,
    /// --single-writer).
    Board,
    /// Lanes: a pool of per-producer byte rings read by one consumer (--lanes, --bytes).
    Lanes,
}

impl KindArg {
    pub(crate) fn kind(self) -> &'static dyn Kind {
        of(match self {
            KindArg::Bus => SegmentKind::Bus,
            KindArg::Queue => SegmentKind::Queue,
            KindArg::Records => SegmentKind::Records,
            KindArg::Board => SegmentKind::Board,
            KindArg::Lanes => SegmentKind::Lanes,
        })
    }
}

/// `--wakeup` of `create` (docs/design.md §7, "Wake-up choice").
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum WakeupArg {
    /// Sleepers run membarrier; publishing pays nothing.
    Barrier,
    /// Every publish runs a full fence; sleepers interrupt nobody.
    Fence,
}

/// `shmbus create`: the options of every kind; each kind takes its own.
#[derive(Args, Debug)]
pub(crate) struct CreateArgs {
    /// The segment name: 1 to 200 ASCII characters, each a letter (A-Z, a-z), a digit, '.', '_'
    /// or '-', not starting with '.'.
    pub(crate) name: String,
    /// What to create: bus (broadcast: every subscriber sees every message), queue (work
    /// queue: each item goes to one receiver), records (messages of any size up to a quarter
    /// of a byte ring), board (the latest value of each of N cells) or lanes (a pool of
    /// per-producer byte rings that one consumer reads in place).
    #[arg(long, value_enum, default_value_t = KindArg::Bus)]
    pub(crate) kind: KindArg,
    /// Bus: slots in the ring, a power of two (default 1024; a subscriber more than this many
    /// messages behind loses the oldest). Queue: capacity in items (default 1024).
    #[arg(long, value_name = "N")]
    pub(crate) slots: Option<u64>,
    /// Bus: largest message in bytes (default 240). Queue: item size (default 240). Board:
    /// largest value (default 64).
    #[arg(long, value_name = "BYTES")]
    pub(crate) size: Option<usize>,
    /// Bus only: allow several producers to publish at once.
    #[arg(long)]
    pub(crate) multi_producer: bool,
    /// Multi-producer bus (with --multi-producer): how long subscribers wait for a message
    /// whose producer is alive but stopped mid-publish before they pass it, counted lost.
    /// Queue: how long a live sender or receiver stopped holding a position is waited for
    /// before the others pass it (a passed sender sends its item again, a passed receiver
    /// keeps its item). Default 1000; 0: wait as long as that participant lives.
    #[arg(long, value_name = "MS")]
    pub(crate) stall_bound_ms: Option<u64>,
    /// Bus only: how producers and sleeping subscribers agree that no wake-up is lost.
    /// `barrier` (default): publishing pays nothing, each sleep runs membarrier, which
    /// interrupts the CPUs of every producer process on the host. `fence`: every publish runs
    /// a full fence (a few ns), and sleeps interrupt nobody.
    #[arg(long, value_enum, value_name = "CHOICE")]
    pub(crate) wakeup: Option<WakeupArg>,
    /// Records: size of the byte ring, a power of two from 4096 (default 1048576); the
    /// largest record is a quarter of it, less 16 bytes. Lanes: size of each lane, a power of
    /// two from 4096 and a multiple of the page size (default 65536); the largest record is
    /// the lane less 16 bytes.
    #[arg(long, value_name = "SIZE")]
    pub(crate) bytes: Option<u64>,
    /// Lanes only: number of lanes, 1 to 4096 (default 64): the most producers at once.
    #[arg(long, value_name = "N")]
    pub(crate) lanes: Option<u32>,
    /// Board only: number of cells (default: the number of --keys).
    #[arg(long, value_name = "N")]
    pub(crate) cells: Option<usize>,
    /// Board only: names of the first cells, comma-separated (`set` and `board` then take
    /// a name where they take a cell index).
    #[arg(long, value_name = "KEY,...", value_delimiter = ',')]
    pub(crate) keys: Vec<String>,
    /// Board only: one writer at a time (a second is refused while the first lives); each
    /// update is then a seqlock's stores, with no compare-and-swap.
    #[arg(long)]
    pub(crate) single_writer: bool,
    /// Permission bits, in octal (0 to 0777). Writable by group or others (e.g. 0660) means
    /// programs must trust the segment explicitly to open it.
    #[arg(long, default_value = "0600", value_parser = parse_mode)]
    pub(crate) mode: u32,
    /// Print what was created as one JSON object instead of text.
    #[arg(long)]
    pub(crate) json: bool,
}

fn parse_mode(s: &str) -> Result<u32, String> {
    let digits = s.strip_prefix("0o").unwrap_or(s);
    match u32::from_str_radix(digits, 8) {
        Ok(m) if m <= 0o777 => Ok(m),
        _ => Err(format!(
            "expected octal permission bits such as 0600 or 0640, got {s:?}"
        )),
    }
}

impl CreateArgs {
    /// The kind-specific options given, by flag.
    pub(crate) fn given(&self) -> [(&'static str, bool); 10] {
        [
            ("--slots", self.slots.is_some()),
            ("--wakeup", self.wakeup.is_some()),
            ("--size", self.size.is_some()),
            ("--multi-producer", self.multi_producer),
            ("--stall-bound-ms", self.stall_bound_ms.is_some()),
            ("--bytes", self.bytes.is_some()),
            ("--cells", self.cells.is_some()),
            ("--keys", !self.keys.is_empty()),
            ("--single-writer", self.single_writer),
            ("--lanes", self.lanes.is_some()),
        ]
    }

    /// `created ...` as text, or the object as one JSON line, with the mode and path every kind
    /// reports.
    pub(crate) fn say_created(
        &self,
        name: &str,
        mut json: serde_json::Value,
        text: String,
    ) -> CmdResult {
        if self.json {
            json["name"] = name.into();
            json["mode"] = format!("{:04o}", self.mode).into();
            json["path"] = inspect::segment_path(name).display().to_string().into();
            return crate::output::print_json(&json);
        }
        use std::io::Write as _;
        writeln!(
            std::io::stdout(),
            "{text}, mode {:04o}, {}",
            self.mode,
            inspect::segment_path(name).display()
        )?;
        Ok(())
    }
}

/// One segment's entry in `list`: its state as JSON, and its table cells.
pub(crate) trait ListRow: RowJson {
    /// The cells under the kind's [`Kind::list_columns`].
    fn cells(&self) -> Vec<String>;
    /// Its creator, and whether it is stale.
    fn liveness(&self) -> &Liveness;
    /// The publish count, for kinds whose RATE and LAST come from it.
    fn publish_count(&self) -> Option<u64> {
        None
    }
    /// The last publish, as `list` sampled it.
    fn set_last_publish(&mut self, _l: LastPublish) {}
    /// Its samples in `serve`'s `/metrics`, besides those of every kind (size, creator,
    /// staleness, which `serve` adds from [`ListRow::liveness`]).
    fn metrics(&self, m: &mut SegmentMetrics<'_>);
}

/// The help of `shmbus_participants_alive`, which every kind reports by role.
pub(crate) const PARTICIPANTS_HELP: &str = "Live participants attached to the segment, by role \
     (boards and records segments record only whether one is: 0 or 1; lanes count producers \
     holding a lane and the consumer). Read-only subscribers leave no trace and are not \
     counted.";

/// A summary as one line of ASCII JSON, its fields in their declared order, for any
/// serializable summary.
pub(crate) trait RowJson {
    fn json(&self) -> String;
}

impl<T: Serialize> RowJson for T {
    fn json(&self) -> String {
        text::json_line(self)
    }
}

/// Who made a segment and whether anyone still uses it: what every kind's summary ends with.
#[derive(Serialize, Debug, Clone, PartialEq)]
pub(crate) struct Liveness {
    pub(crate) creator_pid: u32,
    pub(crate) creator_alive: bool,
    /// No participant attached and the creator gone.
    pub(crate) stale: bool,
    pub(crate) segment_size: u64,
}

impl Liveness {
    /// Of a segment with header `h`, which has a live participant attached or not.
    pub(crate) fn of(h: &HeaderSnapshot, attached: bool) -> Liveness {
        let creator_alive = inspect::creator_alive(h);
        Liveness {
            creator_pid: h.creator_pid,
            creator_alive,
            stale: !creator_alive && !attached,
            segment_size: h.segment_size,
        }
    }

    /// `1234 alive` or `1234 gone`: `list`'s CREATOR cell.
    pub(crate) fn creator_cell(&self) -> String {
        let alive = if self.creator_alive { "alive" } else { "gone" };
        format!("{} {alive}", self.creator_pid)
    }
}

/// The last lines of a text `info` report: creator, staleness (`stale_why` says why a stale
/// segment is), segment size and access.
pub(crate) fn liveness_lines(
    out: &mut String,
    l: &Liveness,
    stale_why: &str,
    access: Option<&Access>,
) -> std::fmt::Result {
    use std::fmt::Write as _;
    let creator = if l.creator_alive { "alive" } else { "gone" };
    writeln!(
        out,
        "  creator            pid {} ({creator})",
        l.creator_pid
    )?;
    writeln!(
        out,
        "  stale              {}",
        if l.stale { stale_why } else { "no" }
    )?;
    writeln!(out, "  segment size       {} bytes", l.segment_size)?;
    if let Some(a) = access {
        writeln!(out, "  access             {}", a.line())?;
    }
    Ok(())
}

/// Publishes per second over the last sample, `-` before a second sample.
pub(crate) fn rate_cell(l: &LastPublish) -> String {
    l.per_s.map_or("-".into(), text::rate)
}

/// `--sample-ms` given to `info` on a kind that has no publish count to sample.
pub(crate) fn refuse_sample_ms(name: &str, kind: &dyn Kind, sample_ms: Option<u64>) -> CmdResult {
    match sample_ms {
        Some(_) => Err(Failure(format!(
            "--sample-ms applies to buses, queues, boards and records segments; {name:?} is a {}",
            kind.word()
        ))),
        None => Ok(()),
    }
}

/// Where a reader starts: `tail --from`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum StartAt {
    Newest,
    Oldest,
    Seq(u64),
}

impl FromStr for StartAt {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let words = [("newest", StartAt::Newest), ("oldest", StartAt::Oldest)];
        let seq = |s: &str| s.parse().ok().map(StartAt::Seq);
        text::word_or(s, &words, seq, "newest, oldest or a sequence number")
    }
}

/// What `tail` was asked for.
pub(crate) struct TailPlan {
    pub(crate) start: Start,
    /// `--from` as given.
    pub(crate) from: StartAt,
    /// Without `follow`, print at most this many.
    pub(crate) n: u64,
    pub(crate) follow: bool,
}

impl TailPlan {
    /// `--from SEQ` beyond what was published prints nothing: says why on stderr (stdout stays
    /// empty for scripts). `next` is the next sequence number to be published.
    pub(crate) fn say_if_not_published_yet(&self, next: u64) {
        if let (false, StartAt::Seq(seq)) = (self.follow, self.from) {
            if seq >= next {
                eprintln!(
                    "shmbus: nothing to print: seq {seq} is not published yet (the next is \
                     {next}); add --follow to wait for it"
                );
            }
        }
    }
}

/// What one read of a sampling subscriber found.
pub(crate) enum Step {
    /// An item of this many bytes.
    Item(usize),
    /// Items overwritten before they could be read.
    Lost(u64),
    /// Nothing new.
    Empty,
}

/// What `hz` and `watch` measure: a segment with a read-only subscriber that reads every item
/// from now on.
pub(crate) trait Feed {
    /// What one item is called in `hz`'s text: "msgs" or "records".
    fn unit(&self) -> &'static str;
    fn header(&self) -> HeaderSnapshot;
    fn counts(&self) -> Counts;
    /// Reads one item, if there is one.
    fn step(&mut self) -> Step;
    /// The view `watch` starts from.
    fn watch_state(&self) -> WatchState;
    /// The participants holding a position they have not completed now (a queue's, a
    /// multi-producer bus's), for `watch` to age.
    fn holds(&self) -> Vec<crate::stalls::Held> {
        Vec::new()
    }
}

/// What a [`Feed`]'s segment counts now.
pub(crate) struct Counts {
    /// Items published since creation (the write cursor).
    pub(crate) cursor: u64,
    /// Items published, as `watch` shows them.
    pub(crate) published: u64,
    /// Payload bytes published since creation, where the segment counts them.
    pub(crate) bytes_published: Option<u64>,
    /// Live producers.
    pub(crate) producers: usize,
}

/// The producer `publish` attached, with what `publish` says of its segment.
pub(crate) struct Attached {
    pub(crate) name: String,
    /// Whether other producers may publish meanwhile (a multi-producer bus).
    pub(crate) shared: bool,
    pub(crate) tx: Box<dyn Producer>,
}

/// A bus's, records segment's or lane's publisher, as `publish` drives it.
pub(crate) trait Producer {
    /// What one payload is called: "message" or "record".
    fn noun(&self) -> &'static str;
    /// Publishes one payload; the sequence number it got, if the segment reports one.
    fn publish(&mut self, msg: &[u8]) -> shmbus::Result<Option<u64>>;
    /// Payloads published so far, and dropped (older than a full lap of the ring).
    fn counts(&self) -> (u64, u64);
    /// Why a payload counted dropped was dropped.
    fn dropped_why(&self) -> &'static str {
        "older than a full lap of the ring"
    }
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
pub(crate) fn last_publish_line(l: &LastPublish) -> String {
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

/// The last publish from a publish count read twice, `sample` apart.
pub(crate) fn sample_last_publish(sample: Duration, count: impl Fn() -> u64) -> LastPublish {
    let mut activity = crate::activity::Activity::default();
    activity.observe("", count(), std::time::Instant::now());
    std::thread::sleep(sample);
    activity.observe("", count(), std::time::Instant::now())
}
