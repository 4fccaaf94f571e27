//! Work queues: each item goes to one receiver. What `create`, `list`, `info` and `rm` do with
//! a queue (`push` and `pop` are its own commands).

use serde::Serialize;
use shmbus::inspect::{self, Probe};
use shmbus::{QueueBuilder, Role};

use super::{Access, CreateArgs, Instead, Kind, ListRow, Liveness, Payloads, Report};
use crate::metrics::SegmentMetrics;
use crate::output::{CmdResult, Failure};
use crate::text;

/// The queue kind.
pub(crate) struct QueueKind;

impl Kind for QueueKind {
    fn word(&self) -> &'static str {
        "queue"
    }

    fn create_options(&self) -> &'static [&'static str] {
        &["--slots", "--size"]
    }

    fn create(&self, a: &CreateArgs) -> CmdResult {
        let q = QueueBuilder::new(&a.name)
            .capacity(a.slots.unwrap_or(shmbus::DEFAULT_QUEUE_CAPACITY))
            .item_size(a.size.unwrap_or(shmbus::DEFAULT_ITEM_SIZE))
            .permissions(a.mode)
            .create()?;
        a.say_created(
            q.name(),
            serde_json::json!({
                "kind": "queue",
                "capacity": q.capacity(),
                "item_size": q.item_size(),
            }),
            format!(
                "created queue {}: {} items of {} bytes",
                q.name(),
                q.capacity(),
                q.item_size()
            ),
        )
    }

    fn summarize(&self, p: &Probe) -> shmbus::Result<Box<dyn ListRow>> {
        Ok(Box::new(summary(&p.name)?.0))
    }

    fn list_columns(&self) -> &'static str {
        "CAPACITY> ITEM> TYPE LEN> HEAD> TAIL> SENDERS> RECEIVERS> CREATOR"
    }

    fn report(&self, name: &str, sample_ms: Option<u64>, _: Payloads) -> Result<Report, Failure> {
        // A queue report holds no payloads.
        super::refuse_sample_ms(name, self, sample_ms)?;
        report(name)
    }

    fn live_participants(&self, p: &Probe) -> Vec<String> {
        match summary(&p.name) {
            Ok((_, parts)) => parts
                .iter()
                .filter(|p| p.alive)
                .map(|p| {
                    let role = role_word(p.role).unwrap_or("participant");
                    format!("a live {role} (pid {})", p.pid)
                })
                .collect(),
            Err(_) => Vec::new(),
        }
    }

    fn stale_detail(&self, _: &Probe) -> String {
        "no sender or receiver attached".into()
    }

    fn instead(&self, name: &str) -> Instead {
        Instead {
            what: "a queue",
            watch: format!("shmbus info {name}"),
            publish: "shmbus push",
        }
    }
}

/// "sender" or "receiver".
fn role_word(role: Option<Role>) -> Option<&'static str> {
    match role {
        Some(Role::Sender) => Some("sender"),
        Some(Role::Receiver) => Some("receiver"),
        None => None,
    }
}

impl ListRow for QueueSummary {
    fn cells(&self) -> Vec<String> {
        let q = self;
        vec![
            q.capacity.to_string(),
            q.item_size.to_string(),
            text::sanitize(&q.item_type),
            q.len.to_string(),
            q.head.to_string(),
            q.tail.to_string(),
            q.senders.to_string(),
            q.receivers.to_string(),
            q.liveness.creator_cell(),
        ]
    }
    fn liveness(&self) -> &Liveness {
        &self.liveness
    }
    fn metrics(&self, m: &mut SegmentMetrics<'_>) {
        m.counter(
            "shmbus_queue_sent_total",
            "Positions taken by senders since the queue was created (its tail), skipped ones \
             included.",
            self.tail,
        );
        m.counter(
            "shmbus_queue_received_total",
            "Positions taken by receivers since the queue was created (its head).",
            self.head,
        );
        m.gauge("shmbus_queue_depth", "Items in the queue now.", self.len);
        m.gauge(
            "shmbus_queue_capacity",
            "Items the queue holds.",
            self.capacity,
        );
        m.counter(
            "shmbus_queue_skipped_total",
            "Positions skipped because their sender died before publishing.",
            self.skipped,
        );
        m.counter(
            "shmbus_queue_lost_total",
            "Items lost because their receiver died holding them.",
            self.lost,
        );
        for (role, n) in [("sender", self.senders), ("receiver", self.receivers)] {
            m.gauge_by(
                "shmbus_participants_alive",
                super::PARTICIPANTS_HELP,
                ("role", role),
                n,
            );
        }
    }
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
    #[serde(flatten)]
    pub(crate) liveness: Liveness,
}

/// The summary of queue `name`, opened read-only (any owner and mode: an inspector only reads).
fn summary(name: &str) -> shmbus::Result<(QueueSummary, Vec<shmbus::ParticipantInfo>)> {
    let q = super::for_inspection!(QueueBuilder::new(name))?;
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
            liveness: Liveness::of(&h, senders + receivers > 0),
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
    access: Option<Access>,
    participants: Vec<ParticipantOut>,
}

/// `shmbus info` of a queue.
fn report(name: &str) -> Result<Report, Failure> {
    let (s, parts) = summary(name)?;
    let parts: Vec<ParticipantOut> = parts
        .iter()
        .map(|p| ParticipantOut {
            index: p.index,
            pid: p.pid,
            role: role_word(p.role).unwrap_or("unknown"),
            alive: p.alive,
        })
        .collect();
    let path = inspect::segment_path(name).display().to_string();
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
        s.liveness.creator_pid,
        if s.liveness.creator_alive {
            "alive"
        } else {
            "gone"
        }
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
    let _ = writeln!(t, "  size         {}", text::bytes(s.liveness.segment_size));
    let access = Access::of(name);
    if let Some(a) = &access {
        let _ = writeln!(t, "  access       {}", a.line());
    }
    let o = QueueInfoOut {
        name,
        kind: "queue",
        path,
        summary: s,
        access,
        participants: parts,
    };
    Ok(Report {
        text: t,
        json: text::json_line(&o),
        failure: None,
    })
}
