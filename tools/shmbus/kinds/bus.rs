//! Buses: broadcast rings of fixed-size slots. What `create`, `list`, `info`, `tail`, `hz`,
//! `watch`, `publish` and `rm` do with a bus; `info` also gives its check-by-check report to a
//! segment whose kind cannot be read, which shows where it fails.

use std::fmt::Write as _;
use std::io::{self, Write};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde::Serialize;
use shmbus::inspect::{self, CheckStatus, Probe};
use shmbus::{
    BusBuilder, HeaderSnapshot, LapPolicy, ProducerMode, Publisher, Recv, Start, Subscriber, Wait,
};

use super::{
    Attached, Counts, CreateArgs, Feed, Kind, ListRow, Liveness, Payloads, Producer, Report, Step,
    TailPlan, Trust,
};
use crate::activity::LastPublish;
use crate::metrics::SegmentMetrics;
use crate::output::{self, CmdResult, Failure, Printer};
use crate::stalls::{self, Held, StallOut};
use crate::text;
use crate::watch_view::WatchState;

/// The bus kind.
pub(crate) struct BusKind;

impl Kind for BusKind {
    fn word(&self) -> &'static str {
        "bus"
    }

    fn create_options(&self) -> &'static [&'static str] {
        &[
            "--slots",
            "--size",
            "--multi-producer",
            "--stall-bound-ms",
            "--wakeup",
        ]
    }

    fn create(&self, a: &CreateArgs) -> CmdResult {
        let mut b = BusBuilder::new(&a.name)
            .slots(a.slots.unwrap_or(shmbus::DEFAULT_SLOTS))
            .capacity(a.size.unwrap_or(shmbus::DEFAULT_RAW_CAPACITY))
            .permissions(a.mode);
        if a.multi_producer {
            b = b.multi_producer();
        }
        if let Some(ms) = a.stall_bound_ms {
            if !a.multi_producer {
                return Err(Failure(
                    "--stall-bound-ms applies to queues and multi-producer buses (add \
                     --multi-producer): a single producer's claimed message is always written, \
                     so its subscribers never wait on a stall"
                        .into(),
                ));
            }
            b = b.stall_bound((ms != 0).then(|| Duration::from_millis(ms)));
        }
        if a.wakeup == Some(super::WakeupArg::Fence) {
            b = b.wakeup(shmbus::Wakeup::Fence);
        }
        let bus = b.create()?;
        a.say_created(
            bus.name(),
            serde_json::json!({
                "kind": "bus",
                "slots": bus.slots(),
                "capacity": bus.capacity(),
                "producer_mode": mode_name(bus.producer_mode()),
                "wakeup": wakeup_name(&bus.header()),
                "stall_bound_ms": bus.stall_bound().map(|d| d.as_millis() as u64),
            }),
            format!(
                "created bus {}: {} of {}, {} producer",
                bus.name(),
                text::count(bus.slots(), "slot"),
                text::count(bus.capacity() as u64, "byte"),
                mode_name(bus.producer_mode()),
            ),
        )
    }

    fn summarize(&self, p: &Probe) -> shmbus::Result<Box<dyn ListRow>> {
        Ok(Box::new(summarize(&inspect::open_for_inspection(&p.name)?)))
    }

    fn list_columns(&self) -> &'static str {
        "SLOTS> CAP> TYPE MODE PUBLISHED> RATE> LAST> CREATOR PROD>"
    }

    /// The whole header, each validity check, the producers and a slot census. A segment
    /// whose kind cannot be read gets this report too: its checks show where it fails.
    fn report(&self, name: &str, sample_ms: Option<u64>, _: Payloads) -> Result<Report, Failure> {
        // A bus report holds no payloads.
        Ok(report(
            name,
            Duration::from_millis(sample_ms.unwrap_or(200)),
        ))
    }

    fn live_participants(&self, p: &Probe) -> Vec<String> {
        match inspect::open_for_inspection(&p.name) {
            Ok(bus) => bus
                .producers()
                .iter()
                .map(|p| format!("a live producer (pid {})", p.pid))
                .collect(),
            Err(_) => Vec::new(),
        }
    }

    fn stale_detail(&self, p: &Probe) -> String {
        match p.header.published() {
            0 => "no producer attached, never published to".to_owned(),
            n => format!(
                "no producer attached, {} published",
                text::count(n, "message")
            ),
        }
    }

    fn tail(&self, name: &str, plan: &TailPlan, p: &Printer) -> CmdResult {
        let (bus, id) = open_with_id(name)?;
        plan.say_if_not_published_yet(bus.cursor());
        // A read-only handle cannot register as a futex sleeper: Sleep polls every millisecond
        // rather than spinning a core, which is right for a tool.
        let mut sub = bus.subscribe(plan.start).wait_strategy(Wait::Sleep);
        let mut out = io::BufWriter::new(io::stdout().lock());
        let result = if plan.follow {
            output::install_stop_handler()?;
            let mut followed = Followed {
                name,
                id,
                sub,
                removed_said: false,
                last_look: Instant::now(),
            };
            follow(&mut followed, p, &mut out)
        } else {
            let end = bus.cursor();
            available(&mut sub, p, &mut out, end, plan.n)
        };
        output::quiet_broken_pipe(result.and_then(|()| out.flush()))
    }

    fn feed(
        &self,
        name: &str,
        policy: LapPolicy,
        _command: &str,
    ) -> Result<Box<dyn Feed>, Failure> {
        let bus = inspect::open_for_inspection(name)?;
        let sub = bus.subscribe(Start::Next).lap_policy(policy);
        Ok(Box::new(BusFeed(bus, sub)))
    }

    fn producer(&self, name: &str, trust: &Trust) -> Result<Attached, Failure> {
        let bus = super::trusting!(BusBuilder::new(name), trust).open()?;
        Ok(Attached {
            name: bus.name().to_owned(),
            shared: bus.producer_mode() == ProducerMode::Multi,
            // Typed buses too: each message is then one value's bytes, exactly its size.
            tx: Box::new(bus.bytes_publisher()?),
        })
    }
}

/// `shmbus info` of a bus, its publish count sampled `sample` apart.
fn report(name: &str, sample: Duration) -> Report {
    let path = inspect::segment_path(name);
    let checks: Vec<CheckOut> = inspect::checks(name)
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
    let opened = inspect::open_for_inspection(name);
    let mut out = InfoOut {
        name: name.to_owned(),
        kind: "bus",
        path: path.display().to_string(),
        checks,
        error: None,
        header: None,
        summary: None,
        producers: Vec::new(),
        stalled: Vec::new(),
        census: None,
    };
    let failed_check = out
        .checks
        .iter()
        .find(|c| c.status == "FAIL")
        .map(|c| format!("bus {:?}: check {:?} failed: {}", name, c.check, c.detail));
    let failure = match &opened {
        Ok(bus) => {
            // Holds looked at before and after the sample: those at both looks are stalls.
            let holds = || bus.holds().into_iter().map(Held::from).collect::<Vec<_>>();
            let (first, t0) = (holds(), Instant::now());
            let last_publish = super::sample_last_publish(sample, || bus.cursor());
            out.stalled = stalls::persisting(&first, holds(), t0.elapsed());
            fill(&mut out, bus);
            if let Some(sum) = &mut out.summary {
                sum.last_publish = last_publish;
            }
            failed_check.map(Failure)
        }
        Err(e) => {
            out.error = Some(e.to_string());
            Some(Failure(e.to_string()))
        }
    };
    Report {
        text: render(&out),
        json: text::json_line(&out),
        failure,
    }
}

impl Producer for Publisher {
    fn noun(&self) -> &'static str {
        "message"
    }
    fn publish(&mut self, msg: &[u8]) -> shmbus::Result<Option<u64>> {
        self.publish_bytes(msg)
    }
    fn counts(&self) -> (u64, u64) {
        let s = self.stats();
        (s.published, s.dropped)
    }
}

/// `hz` and `watch` on a bus.
struct BusFeed(shmbus::Bus, Subscriber);

impl Feed for BusFeed {
    fn unit(&self) -> &'static str {
        "msgs"
    }
    fn header(&self) -> HeaderSnapshot {
        self.0.header()
    }
    fn counts(&self) -> Counts {
        let h = self.0.header();
        Counts {
            cursor: h.cursor,
            published: h.published(),
            bytes_published: None,
            producers: self.0.producers().len(),
        }
    }
    fn step(&mut self) -> Step {
        match self.1.try_recv() {
            Recv::Message(m) => Step::Item(m.bytes().len()),
            Recv::Lapped { lost } => Step::Lost(lost),
            Recv::Empty | Recv::Closed => Step::Empty,
        }
    }
    fn holds(&self) -> Vec<Held> {
        self.0.holds().into_iter().map(Held::from).collect()
    }
    fn watch_state(&self) -> WatchState {
        let bus = &self.0;
        WatchState::new(
            bus.name(),
            bus.slots(),
            bus.capacity(),
            &bus.message_type().to_string(),
            mode_name(bus.producer_mode()),
        )
    }
}

impl ListRow for BusSummary {
    fn cells(&self) -> Vec<String> {
        let b = self;
        vec![
            b.slots.to_string(),
            b.capacity.to_string(),
            text::sanitize(&b.message_type),
            b.producer_mode.to_string(),
            b.published.to_string(),
            super::rate_cell(&b.last_publish),
            b.last_publish.display(),
            b.liveness.creator_cell(),
            b.producers.to_string(),
        ]
    }
    fn liveness(&self) -> &Liveness {
        &self.liveness
    }
    fn publish_count(&self) -> Option<u64> {
        Some(self.published)
    }
    fn set_last_publish(&mut self, l: LastPublish) {
        self.last_publish = l;
    }
    fn metrics(&self, m: &mut SegmentMetrics<'_>) {
        m.counter(
            "shmbus_bus_published_total",
            "Messages published to the bus since it was created.",
            self.published,
        );
        m.gauge(
            "shmbus_bus_cursor",
            "The bus's write cursor: the sequence number the next message gets.",
            self.cursor,
        );
        m.gauge("shmbus_bus_slots", "Slots in the bus's ring.", self.slots);
        m.gauge(
            "shmbus_bus_slot_capacity_bytes",
            "Largest message a slot holds, in bytes.",
            self.capacity,
        );
        m.gauge_by(
            "shmbus_participants_alive",
            super::PARTICIPANTS_HELP,
            ("role", "producer"),
            self.producers,
        );
    }
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
    pub(crate) producers_alive: bool,
    /// Live producers attached now.
    pub(crate) producers: usize,
    #[serde(flatten)]
    pub(crate) liveness: Liveness,
}

pub(crate) fn mode_name(m: ProducerMode) -> &'static str {
    match m {
        ProducerMode::Single => "single",
        ProducerMode::Multi => "multi",
    }
}

/// Time since a live producer last attached or stamped its activity (once in 1024 publishes),
/// if one did: an upper bound of nothing, only a sign of life. See [`crate::activity`].
pub(crate) fn producer_stamp_age(bus: &shmbus::Bus) -> Option<Duration> {
    bus.producers()
        .iter()
        .filter_map(|p| p.since_last_publish())
        .min()
}

pub(crate) fn summarize(bus: &shmbus::Bus) -> BusSummary {
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
        producers_alive: bus.has_producers(),
        producers: bus.producers().len(),
        liveness: Liveness::of(&h, bus.has_producers()),
    }
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
    /// Multi producer: how long subscribers wait for a stopped producer's message before
    /// passing it (ms); `None`: as long as it lives (docs/design.md §6, "Stalls").
    stall_bound_ms: Option<f64>,
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
    /// Live producers of a multi-producer bus that held a claimed, unpublished sequence at
    /// two looks `held_ms_at_least` apart (before and after the publish count's sample).
    stalled: Vec<StallOut>,
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

fn header_out(h: &HeaderSnapshot, stall_bound: Option<Duration>) -> HeaderOut {
    HeaderOut {
        wakeup: wakeup_name(h),
        stall_bound_ms: stall_bound.map(|d| d.as_secs_f64() * 1e3),
        magic: format!("{:#018x}", h.magic),
        abi_version: h.abi_version,
        producer_mode: h.producer_mode().map_or_else(
            || format!("invalid ({})", h.mode_word),
            |m| mode_name(m).into(),
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

fn fill(out: &mut InfoOut, bus: &shmbus::Bus) {
    let h = bus.header();
    out.header = Some(header_out(&h, bus.stall_bound()));
    out.summary = Some(summarize(bus));
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
            (
                "stall bound",
                match (h.stall_bound_ms, h.producer_mode.as_str()) {
                    (Some(ms), _) => format!("{ms} ms (a stopped producer's message is passed)"),
                    (None, "multi") => "none (a stopped producer is waited for)".into(),
                    (None, _) => "- (single producer)".into(),
                },
            ),
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
                sum.map_or("-".into(), |x| super::last_publish_line(&x.last_publish)),
            ),
            (
                "creator",
                format!(
                    "pid {} ({}), start {} ticks",
                    h.creator_pid,
                    alive(sum.is_some_and(|x| x.liveness.creator_alive)),
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
                if sum.is_some_and(|x| x.liveness.stale) {
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
        if h.producer_mode == "multi" {
            let _ = writeln!(s, "\nstalled producers ({})", o.stalled.len());
            for st in &o.stalled {
                let _ = writeln!(s, "  {}", st.line());
            }
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
/// Which file a path names: device and inode. A bus removed and created again under the same
/// name is another file.
type FileId = (u64, u64);

fn file_id(name: &str) -> Option<FileId> {
    use std::os::unix::fs::MetadataExt;
    let m = std::fs::symlink_metadata(inspect::segment_path(name)).ok()?;
    Some((m.dev(), m.ino()))
}

/// Opens a bus and tells which file was opened: the path is looked at before and after, and
/// an open that raced with a re-creation is retried, so the id is the opened file's.
fn open_with_id(name: &str) -> shmbus::Result<(shmbus::Bus, Option<FileId>)> {
    let mut tries = 0;
    loop {
        let before = file_id(name);
        let bus = inspect::open_for_inspection(name)?;
        let after = file_id(name);
        tries += 1;
        if before == after || tries == 3 {
            return Ok((bus, after));
        }
    }
}

/// Prints what was published before `end`, at most `limit` messages, and returns.
fn available(
    sub: &mut Subscriber,
    p: &Printer,
    out: &mut impl Write,
    end: u64,
    limit: u64,
) -> io::Result<()> {
    // A slot can be mid-write, or claimed by a producer that died: the subscriber waits its
    // stall timeout, then counts it lost. This bound on time without progress only guards
    // against a stuck bus.
    const STUCK: Duration = Duration::from_secs(2);
    let mut progress = Instant::now();
    let mut printed = 0;
    while printed < limit && sub.next_seq() < end {
        let first = sub.next_seq();
        match sub.recv_timeout(Duration::from_millis(100)) {
            Recv::Message(m) => {
                writeln!(out, "{}", p.message(m.seq(), m.bytes()))?;
                printed += 1;
            }
            Recv::Lapped { lost } => writeln!(out, "{}", p.lap(first, lost))?,
            Recv::Empty if progress.elapsed() < STUCK => continue,
            Recv::Empty | Recv::Closed => break,
        }
        progress = Instant::now();
    }
    Ok(())
}

/// What one receive amounted to.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Emitted {
    Printed,
    Idle,
    Closed,
}

fn emit(r: Recv<'_>, first: u64, p: &Printer, out: &mut impl Write) -> io::Result<Emitted> {
    match r {
        Recv::Message(m) => writeln!(out, "{}", p.message(m.seq(), m.bytes()))?,
        Recv::Lapped { lost } => writeln!(out, "{}", p.lap(first, lost))?,
        Recv::Empty => return Ok(Emitted::Idle),
        Recv::Closed => return Ok(Emitted::Closed),
    }
    Ok(Emitted::Printed)
}

/// The bus `tail --follow` reads, followed by name as `tail -F` follows a file.
struct Followed<'a> {
    name: &'a str,
    /// The file the subscriber reads.
    id: Option<FileId>,
    sub: Subscriber,
    /// Whether the removal was reported already (it is said once).
    removed_said: bool,
    last_look: Instant,
}

impl Followed<'_> {
    /// How often an idle follower looks whether its bus was removed or re-created.
    const LOOK_EVERY: Duration = Duration::from_millis(250);

    /// Looks at the name now and then: reports a removal once, and switches to a bus
    /// re-created under the name (from its oldest message). Notes go to stderr, as `tail -F`'s.
    fn look(&mut self, out: &mut impl Write) -> io::Result<()> {
        if self.last_look.elapsed() < Self::LOOK_EVERY {
            return Ok(());
        }
        self.last_look = Instant::now();
        let now = file_id(self.name);
        if now == self.id {
            return Ok(());
        }
        let name = text::sanitize(self.name);
        if now.is_none() {
            if !self.removed_said {
                out.flush()?;
                eprintln!("shmbus: bus {name} was removed; waiting for it to be created again");
                self.removed_said = true;
            }
            return Ok(());
        }
        // Another file under the name. It may still be being initialised: try again later.
        let Ok((bus, id)) = open_with_id(self.name) else {
            return Ok(());
        };
        out.flush()?;
        eprintln!(
            "shmbus: bus {name} was created again; following the new bus from its oldest message"
        );
        self.sub = bus.subscribe(Start::Oldest).wait_strategy(Wait::Sleep);
        self.id = id;
        self.removed_said = false;
        Ok(())
    }
}

/// Prints messages as they come until SIGINT or SIGTERM; output is flushed whenever the
/// subscriber has caught up, so a reader sees each line as soon as nothing else is pending.
/// While idle it watches the bus's name (see [`Followed::look`]).
fn follow(f: &mut Followed<'_>, p: &Printer, out: &mut impl Write) -> io::Result<()> {
    while !output::stopped() {
        let first = f.sub.next_seq();
        if emit(f.sub.try_recv(), first, p, out)? == Emitted::Printed {
            continue;
        }
        out.flush()?;
        let first = f.sub.next_seq();
        let step = emit(
            f.sub.recv_timeout(Duration::from_millis(100)),
            first,
            p,
            out,
        )?;
        if step == Emitted::Printed {
            continue;
        }
        f.look(out)?;
        if step == Emitted::Closed {
            // No producer now; one may attach later, so keep looking, at a gentle pace.
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    Ok(())
}
