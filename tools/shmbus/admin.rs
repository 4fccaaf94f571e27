//! `shmbus create`, `publish` and `rm`: the commands that change buses.

use std::io::{self, BufRead, Write};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use clap::Args;
use shmbus::layout::SegmentKind;
use shmbus::records::{RecordPublisher, RecordsBuilder};
use shmbus::{inspect, BusBuilder, Publisher};

use crate::{text, CmdResult, Failure};

#[derive(Args, Debug)]
pub(crate) struct CreateArgs {
    /// The segment name: 1 to 200 ASCII characters, each a letter (A-Z, a-z), a digit, '.', '_'
    /// or '-', not starting with '.'.
    name: String,
    /// What to create: bus (broadcast: every subscriber sees every message), queue (work
    /// queue: each item goes to one receiver), records (messages of any size up to a quarter
    /// of a byte ring) or board (the latest value of each of N cells).
    #[arg(long, value_enum, default_value_t = Kind::Bus)]
    kind: Kind,
    /// Bus: slots in the ring, a power of two (default 1024; a subscriber more than this many
    /// messages behind loses the oldest). Queue: capacity in items (default 1024).
    #[arg(long, value_name = "N")]
    slots: Option<u64>,
    /// Bus: largest message in bytes (default 240). Queue: item size (default 240). Board:
    /// largest value (default 64).
    #[arg(long, value_name = "BYTES")]
    size: Option<usize>,
    /// Bus only: allow several producers to publish at once.
    #[arg(long)]
    multi_producer: bool,
    /// Bus only: how producers and sleeping subscribers agree that no wake-up is lost.
    /// `barrier` (default): publishing pays nothing, each sleep runs membarrier, which
    /// interrupts the CPUs of every producer process on the host. `fence`: every publish runs
    /// a full fence (a few ns), and sleeps interrupt nobody.
    #[arg(long, value_enum, value_name = "CHOICE")]
    wakeup: Option<WakeupArg>,
    /// Records only: size of the byte ring, a power of two from 4096 (default 1048576); the
    /// largest record is a quarter of it, less 16 bytes.
    #[arg(long, value_name = "SIZE")]
    bytes: Option<u64>,
    /// Board only: number of cells (default: the number of --keys).
    #[arg(long, value_name = "N")]
    cells: Option<usize>,
    /// Board only: names of the first cells, comma-separated (`set` and `board` then take
    /// a name where they take a cell index).
    #[arg(long, value_name = "KEY,...", value_delimiter = ',')]
    keys: Vec<String>,
    /// Permission bits, in octal (0 to 0777). Writable by group or others (e.g. 0660) means
    /// programs must trust the segment explicitly to open it.
    #[arg(long, default_value = "0600", value_parser = parse_mode)]
    mode: u32,
    /// Print what was created as one JSON object instead of text.
    #[arg(long)]
    json: bool,
}

/// `--wakeup` of `create` (docs/design.md §7, "Wake-up choice").
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum WakeupArg {
    /// Sleepers run membarrier; publishing pays nothing.
    Barrier,
    /// Every publish runs a full fence; sleepers interrupt nobody.
    Fence,
}

/// The segment kinds `create` makes.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Kind {
    /// A broadcast bus: every subscriber sees every message (--slots, --size,
    /// --multi-producer).
    Bus,
    /// A work queue: each item goes to one receiver (--slots, --size).
    Queue,
    /// Records of any size in one byte ring (--bytes).
    Records,
    /// A board: the latest value of each of N cells (--cells, --keys, --size).
    Board,
}

impl Kind {
    fn word(self) -> &'static str {
        match self {
            Kind::Bus => "bus",
            Kind::Queue => "queue",
            Kind::Records => "records",
            Kind::Board => "board",
        }
    }
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

/// Refuses the options given that the kind does not take, rather than ignoring them.
fn refuse_other_kinds_options(a: &CreateArgs) -> CmdResult {
    let given: [(&str, bool, &[Kind]); 7] = [
        ("--slots", a.slots.is_some(), &[Kind::Bus, Kind::Queue]),
        ("--wakeup", a.wakeup.is_some(), &[Kind::Bus]),
        (
            "--size",
            a.size.is_some(),
            &[Kind::Bus, Kind::Queue, Kind::Board],
        ),
        ("--multi-producer", a.multi_producer, &[Kind::Bus]),
        ("--bytes", a.bytes.is_some(), &[Kind::Records]),
        ("--cells", a.cells.is_some(), &[Kind::Board]),
        ("--keys", !a.keys.is_empty(), &[Kind::Board]),
    ];
    for (flag, set, kinds) in given {
        if set && !kinds.contains(&a.kind) {
            let takes: Vec<&str> = kinds.iter().map(|k| k.word()).collect();
            return Err(Failure(format!(
                "{flag} does not apply to --kind {} (only to {}); see `shmbus create --help`",
                a.kind.word(),
                takes.join(" and ")
            )));
        }
    }
    Ok(())
}

pub(crate) fn create(a: &CreateArgs) -> CmdResult {
    refuse_other_kinds_options(a)?;
    match a.kind {
        Kind::Queue => {
            return crate::queue::create(
                &a.name,
                a.slots.unwrap_or(shmbus::DEFAULT_QUEUE_CAPACITY),
                a.size.unwrap_or(shmbus::DEFAULT_ITEM_SIZE),
                a.mode,
                a.json,
            )
        }
        Kind::Records => return crate::records::create(&a.name, a.bytes, a.mode, a.json),
        Kind::Board => {
            return crate::board::create(
                &a.name,
                a.cells,
                a.size.unwrap_or(shmbus::DEFAULT_BOARD_VALUE_SIZE),
                &a.keys,
                a.mode,
                a.json,
            )
        }
        Kind::Bus => {}
    }
    let mut b = BusBuilder::new(&a.name)
        .slots(a.slots.unwrap_or(shmbus::DEFAULT_SLOTS))
        .capacity(a.size.unwrap_or(shmbus::DEFAULT_RAW_CAPACITY))
        .permissions(a.mode);
    if a.multi_producer {
        b = b.multi_producer();
    }
    if a.wakeup == Some(WakeupArg::Fence) {
        b = b.wakeup(shmbus::Wakeup::Fence);
    }
    let bus = b.create()?;
    if a.json {
        return crate::print_json(&serde_json::json!({
            "name": bus.name(),
            "kind": "bus",
            "slots": bus.slots(),
            "capacity": bus.capacity(),
            "producer_mode": crate::list::mode_name(bus.producer_mode()),
            "wakeup": crate::info::wakeup_name(&bus.header()),
            "mode": format!("{:04o}", a.mode),
            "path": inspect::segment_path(bus.name()),
        }));
    }
    writeln!(
        io::stdout(),
        "created bus {}: {} of {}, {} producer, mode {:04o}, {}",
        bus.name(),
        text::count(bus.slots(), "slot"),
        text::count(bus.capacity() as u64, "byte"),
        crate::list::mode_name(bus.producer_mode()),
        a.mode,
        inspect::segment_path(bus.name()).display()
    )?;
    Ok(())
}

#[derive(Args, Debug)]
pub(crate) struct PublishArgs {
    /// The bus name.
    name: String,
    /// Messages to publish, one per argument. Without any (and without --file), each line of
    /// stdin is a message.
    messages: Vec<String>,
    /// The messages (arguments or stdin lines) are bytes in hexadecimal, e.g. 00ff10 or "ca fe";
    /// spaces, ':' and '_' between bytes are ignored.
    #[arg(long, conflicts_with = "file")]
    hex: bool,
    /// Publish the whole content of this file as one message (one record on a records segment).
    #[arg(long, value_name = "PATH", conflicts_with = "messages")]
    file: Option<PathBuf>,
    /// Publish each message N times (at least 1).
    #[arg(long, value_name = "N", default_value_t = 1,
          value_parser = crate::at_least_one)]
    repeat: u64,
    /// Publish at most this many messages per second, evenly spaced (0.001 to 10000000);
    /// default: as fast as the bus takes them.
    #[arg(long, value_name = "MSGS_PER_SEC", value_parser = parse_rate)]
    rate: Option<f64>,
    /// Publish even if the bus is writable by other users (its mode lets them write).
    #[arg(long)]
    accept_shared_write: bool,
    /// Publish even if the bus belongs to another user.
    #[arg(long)]
    accept_other_owner: bool,
    /// Print the summary as one JSON object instead of text.
    #[arg(long)]
    json: bool,
}

fn parse_rate(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(r) if (0.001..=10_000_000.0).contains(&r) => Ok(r),
        _ => Err(format!(
            "expected messages per second from 0.001 to 10000000, got {s:?}"
        )),
    }
}

/// Where a message came from, for the error that names it.
#[derive(Clone, Copy, Debug)]
enum Origin {
    Argument(usize),
    Line(u64),
    File,
}

impl std::fmt::Display for Origin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Origin::Argument(i) => write!(f, "message argument {i}"),
            Origin::Line(n) => write!(f, "line {n} of stdin"),
            Origin::File => write!(f, "the file's content"),
        }
    }
}

/// The producer `publish` attached: a bus's publisher or a records segment's.
enum Tx {
    Bus(Publisher),
    Records(RecordPublisher),
}

impl Tx {
    /// Publishes one payload; the sequence number it got, if the segment reports one.
    fn publish(&mut self, msg: &[u8]) -> shmbus::Result<Option<u64>> {
        match self {
            Tx::Bus(tx) => tx.publish_bytes(msg),
            Tx::Records(tx) => tx.publish_bytes(msg).map(Some),
        }
    }

    /// Payloads published so far.
    fn published(&self) -> u64 {
        match self {
            Tx::Bus(tx) => tx.stats().published,
            Tx::Records(tx) => tx.stats().published,
        }
    }

    /// What one payload is called on this kind of segment.
    fn noun(&self) -> &'static str {
        match self {
            Tx::Bus(_) => "message",
            Tx::Records(_) => "record",
        }
    }
}

/// Publishes messages, paced and repeated as asked, and remembers what went out.
struct Sender {
    tx: Tx,
    repeat: u64,
    /// Time between two messages, with --rate.
    gap: Option<Duration>,
    /// When the next message may go, with --rate.
    next_at: Instant,
    first: Option<u64>,
    last: Option<u64>,
}

impl Sender {
    fn send(&mut self, msg: &[u8], origin: Origin) -> CmdResult {
        for _ in 0..self.repeat {
            if crate::tail::STOP.load(std::sync::atomic::Ordering::Relaxed) {
                return Ok(());
            }
            if let Some(gap) = self.gap {
                let now = Instant::now();
                if self.next_at > now {
                    std::thread::sleep(self.next_at - now);
                }
                self.next_at += gap;
                if crate::tail::STOP.load(std::sync::atomic::Ordering::Relaxed) {
                    return Ok(());
                }
            }
            match self.tx.publish(msg) {
                Ok(Some(seq)) => {
                    self.first.get_or_insert(seq);
                    self.last = Some(seq);
                }
                Ok(None) => {}
                Err(e) => return Err(self.refused(origin, e)),
            }
        }
        Ok(())
    }

    /// The error for a refused message: which one, and what was already published.
    fn refused(&self, origin: Origin, e: shmbus::Error) -> Failure {
        let noun = self.tx.noun();
        let n = self.tx.published();
        let before = match (self.first, self.last) {
            (Some(f), Some(l)) => format!(
                "published {} before it ({})",
                text::count(n, noun),
                seq_range(f, l)
            ),
            _ => "nothing was published before it".into(),
        };
        let why = match e {
            shmbus::Error::MessageTooLarge { len, capacity } => {
                format!("{noun} is {len} bytes, at most {capacity} fit")
            }
            e => Failure::from(e).0,
        };
        Failure(format!("{origin}: {why}; {before}"))
    }
}

/// `seq 5` or `seq 5..9`.
fn seq_range(first: u64, last: u64) -> String {
    if first == last {
        format!("seq {first}")
    } else {
        format!("seq {first}..{last}")
    }
}

/// Attaches the producer of bus or records segment `a.name`, trusting what the flags say.
/// Also says whether other producers may publish meanwhile (a multi-producer bus).
fn attach(a: &PublishArgs) -> Result<(Tx, String, bool), Failure> {
    let kind = inspect::probe(&a.name).map(|p| p.kind).ok();
    let instead = match kind {
        Some(SegmentKind::Queue) => Some(("a queue", "push")),
        Some(SegmentKind::Board) => Some(("a board", "set")),
        _ => None,
    };
    if let Some((what, cmd)) = instead {
        return Err(Failure(format!(
            "{:?} is {what}; publish writes to buses and records segments (use `shmbus {cmd}`)",
            a.name
        )));
    }
    let is_records = kind == Some(SegmentKind::Records);
    if is_records {
        let mut b = RecordsBuilder::new(&a.name);
        if a.accept_shared_write {
            b = b.accept_shared_write();
        }
        if a.accept_other_owner {
            b = b.accept_other_owner();
        }
        let r = b.open()?;
        return Ok((Tx::Records(r.publisher()?), r.name().to_owned(), false));
    }
    let mut b = BusBuilder::new(&a.name);
    if a.accept_shared_write {
        b = b.accept_shared_write();
    }
    if a.accept_other_owner {
        b = b.accept_other_owner();
    }
    let bus = b.open()?;
    let multi = bus.producer_mode() == shmbus::ProducerMode::Multi;
    // Typed buses too: each message is then one value's bytes, exactly its size.
    Ok((
        Tx::Bus(bus.bytes_publisher()?),
        bus.name().to_owned(),
        multi,
    ))
}

pub(crate) fn publish(a: &PublishArgs) -> CmdResult {
    let (tx, name, multi) = attach(a)?;
    // Ctrl-C or SIGTERM stops publishing; the summary of what went out is still printed.
    // Not while reading stdin: a blocked read would not notice, so there they end the
    // process as usual.
    if a.file.is_some() || !a.messages.is_empty() {
        crate::tail::install_stop_handler()?;
    }
    let gap = a.rate.map(|r| Duration::from_secs_f64(1.0 / r));
    let mut s = Sender {
        tx,
        repeat: a.repeat,
        gap,
        next_at: Instant::now(),
        first: None,
        last: None,
    };
    let decode = |m: &[u8]| -> Result<Vec<u8>, String> {
        if a.hex {
            text::parse_hex(&String::from_utf8_lossy(m))
        } else {
            Ok(m.to_vec())
        }
    };
    let sent = (|| -> CmdResult {
        if let Some(path) = &a.file {
            let msg = std::fs::read(path)
                .map_err(|e| Failure(format!("cannot read {}: {e}", path.display())))?;
            s.send(&msg, Origin::File)?;
        } else if a.messages.is_empty() {
            let mut line = Vec::new();
            let mut stdin = io::stdin().lock();
            let mut n = 0;
            loop {
                line.clear();
                if crate::tail::STOP.load(std::sync::atomic::Ordering::Relaxed)
                    || stdin.read_until(b'\n', &mut line)? == 0
                {
                    break;
                }
                n += 1;
                let msg = line.strip_suffix(b"\n").unwrap_or(&line);
                let msg = msg.strip_suffix(b"\r").unwrap_or(msg);
                let msg = decode(msg).map_err(|e| Failure(format!("line {n} of stdin: {e}")))?;
                s.send(&msg, Origin::Line(n))?;
            }
        } else {
            for (i, m) in a.messages.iter().enumerate() {
                let msg = decode(m.as_bytes())
                    .map_err(|e| Failure(format!("message argument {}: {e}", i + 1)))?;
                s.send(&msg, Origin::Argument(i + 1))?;
            }
        }
        Ok(())
    })();
    sent?;
    let noun = s.tx.noun();
    let n = s.tx.published();
    let interrupted = if crate::tail::STOP.load(std::sync::atomic::Ordering::Relaxed) {
        " (interrupted)"
    } else {
        ""
    };
    if a.json {
        crate::print_json(&serde_json::json!({
            "name": name,
            "kind": if noun == "record" { "records" } else { "bus" },
            "published": n,
            "first_seq": s.first,
            "last_seq": s.last,
            "interleaved": multi,
            "interrupted": !interrupted.is_empty(),
        }))?;
    }
    // On a multi-producer bus, other producers' messages may fall between ours.
    let shared = if multi {
        ", interleaved with other producers'"
    } else {
        ""
    };
    match (s.first, s.last) {
        _ if a.json => Ok(()),
        (Some(f), Some(l)) => writeln!(
            io::stdout(),
            "published {} to {name} ({}{shared}){interrupted}",
            text::count(n, noun),
            seq_range(f, l)
        ),
        _ => writeln!(io::stdout(), "published 0 {noun}s to {name}{interrupted}"),
    }?;
    let dropped = match &s.tx {
        Tx::Bus(tx) => tx.stats().dropped,
        Tx::Records(_) => 0,
    };
    if dropped > 0 {
        return Err(Failure(format!(
            "{} dropped: older than a full lap of the ring",
            text::count(dropped, "message")
        )));
    }
    Ok(())
}

#[derive(Args, Debug)]
pub(crate) struct RmArgs {
    /// Segments to remove (of any kind).
    #[arg(required_unless_present = "stale", conflicts_with = "stale")]
    names: Vec<String>,
    /// Remove stale segments of ours, of every kind: no participant attached and the creator
    /// exited. Needs --prefix or --all-idle.
    #[arg(long)]
    stale: bool,
    /// With --stale: every stale segment of ours, including those made by `shmbus create` that
    /// nothing has used yet.
    #[arg(long, requires = "stale", conflicts_with = "prefix")]
    all_idle: bool,
    /// Only print what would be removed (with --stale, why; with names, who still uses it);
    /// remove nothing.
    #[arg(long)]
    dry_run: bool,
    /// With --stale: only segments whose name starts with PREFIX.
    #[arg(long, requires = "stale", value_name = "PREFIX")]
    prefix: Option<String>,
    /// One JSON object per segment ({"name", "removed" or "would_remove", "why" or "live"})
    /// instead of text.
    #[arg(long)]
    json: bool,
}

/// How `rm --stale` picks its segments.
enum Scope<'a> {
    Prefix(&'a str),
    AllIdle,
}

pub(crate) fn rm(a: &RmArgs) -> CmdResult {
    if !a.stale {
        // Names and these options together would silently remove what --dry-run promised to
        // keep: refuse before touching anything.
        let stray = [(a.prefix.is_some(), "--prefix"), (a.all_idle, "--all-idle")];
        if let Some((_, flag)) = stray.iter().find(|(set, _)| *set) {
            return Err(Failure(format!(
                "{flag} only works with --stale; to remove named segments give only their names"
            )));
        }
        if a.dry_run {
            return rm_named_dry_run(&a.names, a.json);
        }
        return rm_named(&a.names, a.json);
    }
    let scope =
        match (&a.prefix, a.all_idle) {
            (Some(p), _) => Scope::Prefix(p),
            (None, true) => Scope::AllIdle,
            (None, false) => return Err(Failure(
                "rm --stale needs a scope: --prefix PREFIX, or --all-idle for every stale segment \
                 of ours (segments made by `shmbus create` that nothing uses count as stale); \
                 add --dry-run to see what would go"
                    .into(),
            )),
        };
    rm_stale(a.dry_run, &scope, a.json)
}

/// Who is attached to segment `name` and alive, in its kind's words ("a live producer (pid
/// 12)"); empty when no one is, or when the segment cannot be read.
fn live_participants(name: &str) -> Vec<String> {
    let Ok(p) = inspect::probe(name) else {
        return Vec::new();
    };
    let pids = |what: &str, pids: Vec<u32>| -> Vec<String> {
        pids.into_iter()
            .map(|pid| format!("a live {what} (pid {pid})"))
            .collect()
    };
    match p.kind {
        SegmentKind::Bus => match inspect::open_for_inspection(name) {
            Ok(bus) => pids("producer", bus.producers().iter().map(|p| p.pid).collect()),
            Err(_) => Vec::new(),
        },
        SegmentKind::Queue => match crate::queue::summary(name) {
            Ok((_, parts)) => parts
                .iter()
                .filter(|p| p.alive)
                .map(|p| {
                    let role = match p.role {
                        Some(shmbus::Role::Sender) => "sender",
                        Some(shmbus::Role::Receiver) => "receiver",
                        None => "participant",
                    };
                    format!("a live {role} (pid {})", p.pid)
                })
                .collect(),
            Err(_) => Vec::new(),
        },
        // These kinds say whether someone is attached, not who.
        SegmentKind::Board | SegmentKind::Records => {
            let what = if p.kind == SegmentKind::Board {
                "writer"
            } else {
                "producer"
            };
            if p.has_live_participants().unwrap_or(false) {
                vec![format!("a live {what}")]
            } else {
                Vec::new()
            }
        }
        _ => Vec::new(),
    }
}

/// `rm --dry-run NAME...`: what would be removed, and who still uses it; removes nothing.
fn rm_named_dry_run(names: &[String], json: bool) -> CmdResult {
    let mut first_err = None;
    for name in names {
        if let Err(e) = inspect::validate_name(name) {
            first_err.get_or_insert(e);
            continue;
        }
        if std::fs::symlink_metadata(inspect::segment_path(name)).is_err() {
            first_err.get_or_insert(shmbus::Error::NotFound { name: name.clone() });
            continue;
        }
        let live = live_participants(name);
        if json {
            crate::print_json(&serde_json::json!({
                "name": name,
                "would_remove": true,
                "live": live,
            }))?;
        } else if live.is_empty() {
            writeln!(io::stdout(), "would remove {}", text::sanitize(name))?;
        } else {
            writeln!(
                io::stdout(),
                "would remove {}, which has {}",
                text::sanitize(name),
                live.join(", ")
            )?;
        }
    }
    first_err.map_or(Ok(()), |e| Err(e.into()))
}

fn rm_named(names: &[String], json: bool) -> CmdResult {
    // Remove every name that can be; report the first failure (one line), after the others ran.
    let mut first_err = None;
    for name in names {
        let live = live_participants(name);
        match inspect::remove(name) {
            Ok(()) => {
                if json {
                    crate::print_json(&serde_json::json!({
                        "name": name,
                        "removed": true,
                        "live": live,
                    }))?;
                } else {
                    writeln!(io::stdout(), "removed {}", text::sanitize(name))?;
                }
                if !live.is_empty() {
                    eprintln!(
                        "shmbus: warning: {} had {}: it keeps using the removed segment, which \
                         programs that open the name no longer find",
                        text::sanitize(name),
                        live.join(", ")
                    );
                }
            }
            Err(e) => {
                first_err.get_or_insert(e);
            }
        }
    }
    first_err.map_or(Ok(()), |e| Err(e.into()))
}

/// Why a stale segment is stale, for `--dry-run`: who is not attached, in its kind's words,
/// and for a bus how much was published.
fn why_stale(p: &inspect::Probe) -> String {
    let absent = match p.kind {
        SegmentKind::Bus | SegmentKind::Records => "no producer attached",
        SegmentKind::Queue => "no sender or receiver attached",
        SegmentKind::Board => "no writer attached",
        _ => "no participant attached",
    };
    let published = match (p.kind, p.header.published()) {
        (SegmentKind::Bus, 0) => ", never published to".to_owned(),
        (SegmentKind::Bus, n) => format!(", {} published", text::count(n, "message")),
        _ => String::new(),
    };
    format!(
        "creator pid {} exited, {absent}{published} ({})",
        p.header.creator_pid, p.kind
    )
}

fn rm_stale(dry_run: bool, scope: &Scope<'_>, json: bool) -> CmdResult {
    let ours = nix::unistd::geteuid().as_raw();
    let entries =
        inspect::list(false).map_err(|e| Failure(format!("cannot read /dev/shm: {e}")))?;
    let prefix = match scope {
        Scope::Prefix(p) => *p,
        Scope::AllIdle => "",
    };
    let mut out = io::stdout().lock();
    let mut count = 0;
    for e in entries {
        // Only our own, readable segments, of any kind: `list` uses lstat and opening refuses
        // symbolic links, so a link never gets here; a segment that cannot be read (or whose
        // participants cannot be) is not known to be stale.
        let (Some(name), Some(Ok(probe))) = (e.name, e.segment) else {
            continue;
        };
        if !name.starts_with(prefix) || e.uid != ours || !probe.is_stale().unwrap_or(false) {
            continue;
        }
        count += 1;
        if dry_run && json {
            crate::print_json(&serde_json::json!({
                "name": name,
                "would_remove": true,
                "why": why_stale(&probe),
            }))?;
            continue;
        }
        if dry_run {
            writeln!(
                out,
                "would remove {}: {}",
                text::sanitize(&name),
                why_stale(&probe)
            )?;
            continue;
        }
        match inspect::remove(&name) {
            Ok(()) if json => writeln!(
                out,
                "{}",
                text::json_line(&serde_json::json!({
                    "name": name,
                    "removed": true,
                    "why": why_stale(&probe),
                }))
            )?,
            Ok(()) => writeln!(out, "removed {}", text::sanitize(&name))?,
            // Gone meanwhile (another cleaner): nothing to do.
            Err(shmbus::Error::NotFound { .. }) => {}
            Err(err) => return Err(err.into()),
        }
    }
    if count == 0 && !json {
        writeln!(out, "no stale segments")?;
    }
    Ok(())
}
