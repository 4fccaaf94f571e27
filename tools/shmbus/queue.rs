//! Work queues: `shmbus create --kind queue`, `push`, `pop`, and what `list` and `info` show of
//! a queue.

use std::io::{self, BufRead, Write};
use std::time::Duration;

use clap::Args;
use serde::Serialize;
use shmbus::{inspect, Queue, Role, SendError};

use crate::{text, CmdResult, Failure, Format};

/// `shmbus create --kind queue`.
pub(crate) fn create(name: &str, items: u64, size: usize, mode: u32, json: bool) -> CmdResult {
    let q = Queue::builder(name)
        .capacity(items)
        .item_size(size)
        .permissions(mode)
        .create()?;
    if json {
        return crate::print_json(&serde_json::json!({
            "name": q.name(),
            "kind": "queue",
            "capacity": q.capacity(),
            "item_size": q.item_size(),
            "mode": format!("{mode:04o}"),
            "path": inspect::segment_path(q.name()),
        }));
    }
    writeln!(
        io::stdout(),
        "created queue {}: {} items of {} bytes, mode {:04o}, {}",
        q.name(),
        q.capacity(),
        q.item_size(),
        mode,
        inspect::segment_path(q.name()).display()
    )?;
    Ok(())
}

#[derive(Args, Debug)]
pub(crate) struct PushArgs {
    /// The queue name.
    name: String,
    /// Items to push, one per argument. Without any, each line of stdin is an item.
    items: Vec<String>,
    /// Each item (argument or stdin line) is hexadecimal bytes, e.g. `0700000009000000`: how
    /// the items of a typed queue are given, exactly the type's size each.
    #[arg(long)]
    hex: bool,
    /// Fail at once when the queue is full instead of waiting for room.
    #[arg(long)]
    no_wait: bool,
    /// Open the queue even if it is writable by other users (its mode lets them write).
    #[arg(long)]
    accept_shared_write: bool,
    /// Open the queue even if it belongs to another user.
    #[arg(long)]
    accept_other_owner: bool,
    /// Print the summary as one JSON object ({"name", "pushed"}) instead of text.
    #[arg(long)]
    json: bool,
}

/// Opens queue `name` for sending or receiving, trusting what the flags say.
fn open(name: &str, shared_write: bool, other_owner: bool) -> shmbus::Result<Queue> {
    let mut b = shmbus::QueueBuilder::new(name);
    if shared_write {
        b = b.accept_shared_write();
    }
    if other_owner {
        b = b.accept_other_owner();
    }
    b.open()
}

pub(crate) fn push(a: &PushArgs) -> CmdResult {
    let q = open(&a.name, a.accept_shared_write, a.accept_other_owner)?;
    // Typed queues too: each item is then one value's bytes, exactly its size.
    let mut tx = q.bytes_sender()?;
    let mut said_full = false;
    let mut pushed = 0u64;
    let mut send = |given: &[u8]| -> CmdResult {
        let decoded;
        let item = if a.hex {
            decoded = hex_item(&String::from_utf8_lossy(given), pushed)?;
            &decoded[..]
        } else {
            given
        };
        let r = match tx.try_send(item) {
            Err(SendError::Full(_)) if !a.no_wait => {
                if !said_full {
                    // Waiting is the promise, but a person should know why nothing happens.
                    eprintln!(
                        "shmbus: queue {} is full ({}); waiting for room (--no-wait fails \
                         instead)",
                        text::sanitize(&a.name),
                        text::count(q.capacity(), "item")
                    );
                    said_full = true;
                }
                tx.send(item)
            }
            r => r,
        };
        match r {
            Ok(()) => {
                pushed += 1;
                Ok(())
            }
            Err(SendError::Full(_)) => Err(Failure(format!(
                "queue {} is full ({}); pushed {pushed} before it",
                a.name,
                text::count(q.capacity(), "item")
            ))),
            Err(e @ SendError::TooLarge { .. }) => Err(Failure(format!(
                "item {} is {} bytes: {e}; pushed {pushed} before it",
                pushed + 1,
                e.into_inner().len()
            ))),
            Err(e @ SendError::WrongSize { .. }) => Err(Failure(format!(
                "item {} is {} bytes, but {e} (give each as --hex); pushed {pushed} before it",
                pushed + 1,
                e.into_inner().len()
            ))),
            // The command attaches its own sender; it never forks.
            Err(e @ SendError::UsedAfterFork(_)) => Err(Failure(e.to_string())),
        }
    };
    if a.items.is_empty() {
        let mut line = Vec::new();
        let mut stdin = io::stdin().lock();
        loop {
            line.clear();
            if stdin.read_until(b'\n', &mut line)? == 0 {
                break;
            }
            let item = line.strip_suffix(b"\n").unwrap_or(&line);
            send(item.strip_suffix(b"\r").unwrap_or(item))?;
        }
    } else {
        for item in &a.items {
            send(item.as_bytes())?;
        }
    }
    if a.json {
        return crate::print_json(&serde_json::json!({ "name": a.name, "pushed": pushed }));
    }
    writeln!(
        io::stdout(),
        "pushed {} to queue {}",
        text::count(pushed, "item"),
        a.name
    )?;
    Ok(())
}

/// The bytes of a `--hex` item (`pushed` items went before it).
fn hex_item(text: &str, pushed: u64) -> Result<Vec<u8>, Failure> {
    text::parse_hex(text).map_err(|e| {
        Failure(format!(
            "item {}: {e}; pushed {pushed} before it",
            pushed + 1
        ))
    })
}

#[derive(Args, Debug)]
pub(crate) struct PopArgs {
    /// The queue name.
    name: String,
    /// How many items to take: without --follow, at most this many of those in the queue now;
    /// with --follow, stop after this many.
    #[arg(short = 'n', long = "count")]
    count: Option<u64>,
    /// Wait for items (until Ctrl-C, or until -n items were taken).
    #[arg(long)]
    follow: bool,
    /// How to print each item.
    #[arg(long, value_enum, default_value_t = Format::Utf8)]
    format: Format,
    /// One JSON object per item instead of text.
    #[arg(long)]
    json: bool,
    /// Open the queue even if it is writable by other users (its mode lets them write).
    #[arg(long)]
    accept_shared_write: bool,
    /// Open the queue even if it belongs to another user.
    #[arg(long)]
    accept_other_owner: bool,
}

/// One item as `pop --json` prints it, with the keys `tail --json` uses: `len` and one of
/// `text` (valid UTF-8, with --format utf8), `json` (a valid JSON payload, with --format json)
/// or `hex`.
fn json_item(format: Format, bytes: &[u8]) -> String {
    let len = bytes.len();
    let hex = || text::json_line(&serde_json::json!({ "len": len, "hex": text::hex(bytes) }));
    match format {
        Format::Utf8 => match std::str::from_utf8(bytes) {
            Ok(s) => text::json_line(&serde_json::json!({ "len": len, "text": s })),
            Err(_) => hex(),
        },
        // The payload's own JSON, spliced in as is (valid, single-line, ASCII).
        Format::Json => match text::json_payload(bytes) {
            Some(j) => format!("{{\"len\":{len},\"json\":{j}}}"),
            None => hex(),
        },
        Format::Hex => hex(),
    }
}

fn render(format: Format, bytes: &[u8]) -> String {
    match format {
        Format::Utf8 => text::escape_payload(bytes),
        Format::Hex => text::hex(bytes),
        Format::Json => text::json_payload(bytes).unwrap_or_else(|| text::hex(bytes)),
    }
}

pub(crate) fn pop(a: &PopArgs) -> CmdResult {
    let q = open(&a.name, a.accept_shared_write, a.accept_other_owner)?;
    let mut rx = q.bytes_receiver()?;
    let limit = a.count.unwrap_or(if a.follow { u64::MAX } else { 1 });
    let mut out = io::stdout().lock();
    let mut taken = 0;
    while taken < limit {
        let item = if a.follow {
            // Short waits, so that a closed output is noticed between items.
            match rx.recv_timeout(Duration::from_millis(200)) {
                Some(item) => item,
                None => {
                    out.flush()?;
                    continue;
                }
            }
        } else {
            match rx.try_recv() {
                Some(item) => item,
                None => break,
            }
        };
        if a.json {
            writeln!(out, "{}", json_item(a.format, item))?;
        } else {
            writeln!(out, "{}\t{}", item.len(), render(a.format, item))?;
        }
        taken += 1;
        if a.follow {
            out.flush()?;
        }
    }
    if taken == 0 && !a.follow {
        // Nothing on stdout (scripts read items there), but a person sees why.
        out.flush()?;
        eprintln!("shmbus: queue {} is empty", text::sanitize(&a.name));
    }
    Ok(())
}

/// What `list` and `info` report about a queue.
#[derive(Serialize, Debug, Clone, PartialEq)]
pub(crate) struct QueueSummary {
    /// Items the queue holds.
    pub(crate) capacity: u64,
    /// Largest item in bytes.
    pub(crate) item_size: usize,
    pub(crate) item_type: String,
    /// Items in the queue now.
    pub(crate) len: u64,
    /// Next position receivers take.
    pub(crate) head: u64,
    /// Next position senders take (every position below it was handed out).
    pub(crate) tail: u64,
    /// Positions skipped because their sender died before publishing.
    pub(crate) skipped: u64,
    /// Items lost because their receiver died holding them.
    pub(crate) lost: u64,
    pub(crate) senders: usize,
    pub(crate) receivers: usize,
    pub(crate) creator_pid: u32,
    pub(crate) creator_alive: bool,
    /// No live participant and the creator gone.
    pub(crate) stale: bool,
    pub(crate) segment_size: u64,
}

/// The summary of queue `name`, opened read-only (any owner and mode: an inspector only reads).
pub(crate) fn summary(name: &str) -> shmbus::Result<(QueueSummary, Vec<shmbus::ParticipantInfo>)> {
    let q = shmbus::QueueBuilder::new(name)
        .read_only()
        .accept_other_owner()
        .accept_shared_write()
        .open()?;
    let h = q.header();
    let (head, tail) = q.positions();
    let totals = q.totals();
    let parts = q.participants();
    let live = |role| {
        parts
            .iter()
            .filter(|p| p.alive && p.role == Some(role))
            .count()
    };
    let creator_alive = inspect::creator_alive(&h);
    let (senders, receivers) = (live(Role::Sender), live(Role::Receiver));
    Ok((
        QueueSummary {
            capacity: q.capacity(),
            item_size: q.item_size(),
            item_type: q.message_type().to_string(),
            len: q.len(),
            head,
            tail,
            skipped: totals.skipped,
            lost: totals.lost,
            senders,
            receivers,
            creator_pid: h.creator_pid,
            creator_alive,
            stale: !creator_alive && senders + receivers == 0,
            segment_size: h.segment_size,
        },
        parts,
    ))
}

#[derive(Serialize)]
struct ParticipantOut {
    index: u32,
    pid: u32,
    role: &'static str,
    alive: bool,
}

#[derive(Serialize)]
struct QueueInfoOut<'a> {
    name: &'a str,
    kind: &'static str,
    path: String,
    summary: QueueSummary,
    access: Option<crate::info::Access>,
    participants: Vec<ParticipantOut>,
}

/// `shmbus info` of a queue.
pub(crate) fn info(name: &str, json: bool) -> CmdResult {
    let (s, parts) = summary(name)?;
    let parts: Vec<ParticipantOut> = parts
        .iter()
        .map(|p| ParticipantOut {
            index: p.index,
            pid: p.pid,
            role: match p.role {
                Some(Role::Sender) => "sender",
                Some(Role::Receiver) => "receiver",
                None => "unknown",
            },
            alive: p.alive,
        })
        .collect();
    let mut out = io::stdout().lock();
    let path = inspect::segment_path(name).display().to_string();
    if json {
        let o = QueueInfoOut {
            name,
            kind: "queue",
            path,
            summary: s,
            access: crate::info::Access::of(name),
            participants: parts,
        };
        writeln!(out, "{}", text::json_line(&o))?;
        return Ok(());
    }
    let mut t = String::new();
    use std::fmt::Write as _;
    let _ = writeln!(
        t,
        "queue {}  ({})",
        text::sanitize(name),
        text::sanitize(&path)
    );
    let _ = writeln!(
        t,
        "  capacity     {} items of {} bytes",
        s.capacity, s.item_size
    );
    let _ = writeln!(t, "  item type    {}", text::sanitize(&s.item_type));
    let _ = writeln!(t, "  length       {}", s.len);
    let _ = writeln!(t, "  head / tail  {} / {}", s.head, s.tail);
    let _ = writeln!(
        t,
        "  skipped      {} (senders that died before publishing)",
        s.skipped
    );
    let _ = writeln!(
        t,
        "  lost         {} (receivers that died holding an item)",
        s.lost
    );
    let _ = writeln!(
        t,
        "  creator      pid {} ({})",
        s.creator_pid,
        if s.creator_alive { "alive" } else { "gone" }
    );
    let _ = writeln!(
        t,
        "  participants {} live senders, {} live receivers",
        s.senders, s.receivers
    );
    for p in &parts {
        let _ = writeln!(
            t,
            "    #{:<2} pid {:<8} {:<8} {}",
            p.index,
            p.pid,
            p.role,
            if p.alive { "alive" } else { "dead" }
        );
    }
    let _ = writeln!(t, "  size         {}", text::bytes(s.segment_size));
    if let Some(a) = crate::info::Access::of(name) {
        let _ = writeln!(t, "  access       {}", a.line());
    }
    out.write_all(t.as_bytes())?;
    Ok(())
}
