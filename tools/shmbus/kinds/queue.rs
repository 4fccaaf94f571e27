//! Work queues: each item goes to one receiver. What `create`, `list`, `info` and `rm` do with
//! a queue (`push` and `pop` are its own commands).

use std::time::Duration;

use serde::Serialize;
use shmbus::inspect::{self, Probe};
use shmbus::{HeaderSnapshot, LapPolicy, QueueBuilder, Role};

use super::{
    Access, Counts, CreateArgs, Feed, Instead, Kind, ListRow, Liveness, Payloads, Report, Step,
};
use crate::metrics::SegmentMetrics;
use crate::output::{CmdResult, Failure};
use crate::stalls::{self, Held, StallOut};
use crate::text;
use crate::watch_view::WatchState;

/// The queue kind.
pub(crate) struct QueueKind;

impl Kind for QueueKind {
    fn word(&self) -> &'static str {
        "queue"
    }

    fn create_options(&self) -> &'static [&'static str] {
        &["--slots", "--size", "--stall-bound-ms"]
    }

    fn create(&self, a: &CreateArgs) -> CmdResult {
        let mut b = QueueBuilder::new(&a.name)
            .capacity(a.slots.unwrap_or(shmbus::DEFAULT_QUEUE_CAPACITY))
            .item_size(a.size.unwrap_or(shmbus::DEFAULT_ITEM_SIZE))
            .permissions(a.mode);
        if let Some(ms) = a.stall_bound_ms {
            b = b.stall_bound((ms != 0).then(|| Duration::from_millis(ms)));
        }
        let q = b.create()?;
        a.say_created(
            q.name(),
            serde_json::json!({
                "kind": "queue",
                "capacity": q.capacity(),
                "item_size": q.item_size(),
                "stall_bound_ms": q.stall_bound().map(|d| d.as_millis() as u64),
            }),
            format!(
                "created queue {}: {} items of {} bytes, {}",
                q.name(),
                q.capacity(),
                q.item_size(),
                bound_words(q.stall_bound().map(|d| d.as_secs_f64() * 1e3)),
            ),
        )
    }

    fn summarize(&self, p: &Probe) -> shmbus::Result<Box<dyn ListRow>> {
        Ok(Box::new(summary(&p.name)?.0))
    }

    fn list_columns(&self) -> &'static str {
        "CAPACITY> ITEM> TYPE LEN> HEAD> TAIL> SENDERS> RECEIVERS> BOUND> PASSED> CREATOR"
    }

    fn report(&self, name: &str, sample_ms: Option<u64>, _: Payloads) -> Result<Report, Failure> {
        // A queue report holds no payloads. A second look, `sample_ms` later, only if the
        // first found a participant holding a position: a stall is a hold that persists.
        report(name, Duration::from_millis(sample_ms.unwrap_or(200)))
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

    /// `watch` reads the queue's positions and holds: it never receives (receivers take
    /// items). `hz` measures what a subscriber reads, which a queue has not.
    fn feed(&self, name: &str, _: LapPolicy, command: &str) -> Result<Box<dyn Feed>, Failure> {
        if command != "watch" {
            return Err(Failure(format!(
                "{name:?} is a queue; {command} reads buses and records segments (use `shmbus \
                 watch {name}` or `shmbus info {name}`)"
            )));
        }
        Ok(Box::new(QueueFeed(super::for_inspection!(
            QueueBuilder::new(name)
        )?)))
    }

    fn instead(&self, name: &str) -> Instead {
        Instead {
            what: "a queue",
            watch: format!("shmbus info {name}"),
            publish: "shmbus push",
        }
    }
}

/// `stall bound` as `create` and `info` say it.
fn bound_words(ms: Option<f64>) -> String {
    match ms {
        Some(ms) => format!("stall bound {ms} ms"),
        None => "no stall bound".into(),
    }
}

/// `watch` on a queue: the send rate from the tail's advance, the live senders, and who holds
/// a position; nothing is received.
struct QueueFeed(shmbus::Queue);

impl Feed for QueueFeed {
    fn unit(&self) -> &'static str {
        "items"
    }
    fn header(&self) -> HeaderSnapshot {
        self.0.header()
    }
    fn counts(&self) -> Counts {
        let tail = self.0.positions().1;
        let senders = self
            .0
            .participants()
            .iter()
            .filter(|p| p.alive && p.role == Some(Role::Sender))
            .count();
        Counts {
            cursor: tail,
            published: tail,
            bytes_published: None,
            producers: senders,
        }
    }
    fn step(&mut self) -> Step {
        Step::Empty
    }
    fn watch_state(&self) -> WatchState {
        let q = &self.0;
        let mut s = WatchState::new(
            q.name(),
            q.capacity(),
            q.item_size(),
            &q.message_type().to_string(),
            "queue",
        );
        s.shape_text = Some(format!(
            "queue of {} items x {} B, type {}, {}",
            q.capacity(),
            q.item_size(),
            text::sanitize(&q.message_type().to_string()),
            bound_words(q.stall_bound().map(|d| d.as_secs_f64() * 1e3)),
        ));
        s
    }
    fn holds(&self) -> Vec<Held> {
        self.0.holds().into_iter().map(Held::from).collect()
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
            q.stall_bound_ms.map_or("none".into(), |ms| {
                text::duration(Duration::from_secs_f64(ms / 1e3))
            }),
            q.passed.to_string(),
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
        m.counter(
            "shmbus_queue_passed_total",
            "Positions passed because a live sender or receiver held them past the stall \
             bound (nothing lost: a passed sender sends again, a passed receiver keeps its item).",
            self.passed,
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
    /// Positions passed because a live participant held them past the stall bound.
    pub(crate) passed: u64,
    /// How long a live participant holding a position is waited for before the others pass
    /// it (ms); `None`: as long as it lives (docs/design.md §11, "Stalls").
    pub(crate) stall_bound_ms: Option<f64>,
    pub(crate) senders: usize,
    pub(crate) receivers: usize,
    #[serde(flatten)]
    pub(crate) liveness: Liveness,
}

/// The summary of queue `name`, opened read-only (any owner and mode: an inspector only reads).
fn summary(name: &str) -> shmbus::Result<(QueueSummary, Vec<shmbus::ParticipantInfo>)> {
    summary_of(&super::for_inspection!(QueueBuilder::new(name))?)
}

fn summary_of(q: &shmbus::Queue) -> shmbus::Result<(QueueSummary, Vec<shmbus::ParticipantInfo>)> {
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
            passed: totals.passed,
            stall_bound_ms: q.stall_bound().map(|d| d.as_secs_f64() * 1e3),
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
    /// Live participants that held a position at two looks `held_ms_at_least` apart.
    stalled: Vec<StallOut>,
}

/// `shmbus info` of a queue; holds are looked at again `sample` later.
fn report(name: &str, sample: Duration) -> Result<Report, Failure> {
    let q = super::for_inspection!(QueueBuilder::new(name))?;
    let stalled = stalls::sample(sample, || q.holds().into_iter().map(Held::from).collect());
    let (s, parts) = summary_of(&q)?;
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
        "  passed       {} (held past the stall bound by a live participant; nothing lost)",
        s.passed
    );
    let _ = writeln!(
        t,
        "  stall bound  {}",
        match s.stall_bound_ms {
            Some(ms) => format!("{ms} ms (a stopped sender or receiver is passed)"),
            None => "none (a stopped sender or receiver is waited for as long as it lives)".into(),
        }
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
    match stalled.len() {
        0 => {
            let _ = writeln!(t, "  stalled      none");
        }
        n => {
            let _ = writeln!(t, "  stalled      {n}");
            for st in &stalled {
                let _ = writeln!(t, "    {}", st.line());
            }
        }
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
        stalled,
    };
    Ok(Report {
        text: t,
        json: text::json_line(&o),
        failure: None,
    })
}
