//! Records segments: records of any size in one byte ring. What `create`, `list`, `info`,
//! `tail`, `hz`, `watch`, `publish` and `rm` do with one.

use std::io::{self, Write};
use std::time::Duration;

use serde::Serialize;
use shmbus::inspect::{self, Probe};
use shmbus::records::{RecordPublisher, RecordRecv, RecordSubscriber, Records, RecordsBuilder};
use shmbus::{HeaderSnapshot, LapPolicy, Start, Wait};

use super::{
    Access, Attached, Counts, CreateArgs, Feed, Kind, ListRow, Liveness, Payloads, Producer,
    Report, Step, TailPlan, Trust,
};
use crate::activity::LastPublish;
use crate::metrics::SegmentMetrics;
use crate::output::{self, CmdResult, Failure, Printer};
use crate::text;
use crate::watch_view::WatchState;

/// The records kind.
pub(crate) struct RecordsKind;

/// Opens records segment `name` read-only, trusting any owner and mode (an inspector only
/// reads).
fn open_for_inspection(name: &str) -> shmbus::Result<Records> {
    super::for_inspection!(RecordsBuilder::new(name))
}

impl Kind for RecordsKind {
    fn word(&self) -> &'static str {
        "records"
    }

    fn create_options(&self) -> &'static [&'static str] {
        &["--bytes"]
    }

    fn create(&self, a: &CreateArgs) -> CmdResult {
        let r = RecordsBuilder::new(&a.name)
            .bytes(a.bytes.unwrap_or(shmbus::records::DEFAULT_RING_BYTES))
            .permissions(a.mode)
            .create()?;
        a.say_created(
            r.name(),
            serde_json::json!({
                "kind": "records",
                "ring_bytes": r.ring_bytes(),
                "max_record": r.max_record(),
            }),
            format!(
                "created records segment {}: a {}-byte ring, records up to {} bytes",
                r.name(),
                r.ring_bytes(),
                r.max_record()
            ),
        )
    }

    fn summarize(&self, p: &Probe) -> shmbus::Result<Box<dyn ListRow>> {
        let r = open_for_inspection(&p.name)?;
        let producer_alive = r.has_producers();
        Ok(Box::new(RecordsSummary {
            ring_bytes: r.ring_bytes(),
            max_record: r.max_record(),
            records_published: r.records_published(),
            bytes_published: r.bytes_published(),
            producer_alive,
            ring_used: r.ring_used(),
            last_publish: Default::default(),
            liveness: Liveness::of(&p.header, producer_alive),
        }))
    }

    fn list_columns(&self) -> &'static str {
        "RING> MAX> PUBLISHED> BYTES> RATE> LAST> PRODUCER CREATOR"
    }

    fn report(&self, name: &str, sample_ms: Option<u64>, _: Payloads) -> Result<Report, Failure> {
        // A records report holds no payloads.
        let r = open_for_inspection(name)?;
        Ok(report(&r, Duration::from_millis(sample_ms.unwrap_or(200))))
    }

    fn live_participants(&self, p: &Probe) -> Vec<String> {
        // A records segment says whether its producer is attached, not who.
        if p.has_live_participants().unwrap_or(false) {
            vec!["a live producer".into()]
        } else {
            Vec::new()
        }
    }

    fn stale_detail(&self, _: &Probe) -> String {
        "no producer attached".into()
    }

    fn tail(&self, name: &str, plan: &TailPlan, p: &Printer) -> CmdResult {
        let r = open_for_inspection(name)?;
        plan.say_if_not_published_yet(r.records_published());
        tail(&r, plan, p)
    }

    fn feed(
        &self,
        name: &str,
        policy: LapPolicy,
        _command: &str,
    ) -> Result<Box<dyn Feed>, Failure> {
        let r = open_for_inspection(name)?;
        let sub = r.subscribe(Start::Next).lap_policy(policy);
        Ok(Box::new(RecordsFeed(r, sub)))
    }

    fn producer(&self, name: &str, trust: &Trust) -> Result<Attached, Failure> {
        let r = super::trusting!(RecordsBuilder::new(name), trust).open()?;
        Ok(Attached {
            name: r.name().to_owned(),
            shared: false,
            tx: Box::new(r.publisher()?),
        })
    }
}

impl Producer for RecordPublisher {
    fn noun(&self) -> &'static str {
        "record"
    }
    fn publish(&mut self, msg: &[u8]) -> shmbus::Result<Option<u64>> {
        self.publish_bytes(msg).map(Some)
    }
    fn counts(&self) -> (u64, u64) {
        (self.stats().published, 0)
    }
}

/// `hz` and `watch` on a records segment.
struct RecordsFeed(Records, RecordSubscriber);

impl Feed for RecordsFeed {
    fn unit(&self) -> &'static str {
        "records"
    }
    fn header(&self) -> HeaderSnapshot {
        self.0.header()
    }
    fn counts(&self) -> Counts {
        let r = &self.0;
        let records = r.records_published();
        Counts {
            cursor: records,
            published: records,
            bytes_published: Some(r.bytes_published()),
            producers: usize::from(r.has_producers()),
        }
    }
    fn step(&mut self) -> Step {
        match self.1.try_recv() {
            RecordRecv::Record(m) => Step::Item(m.bytes().len()),
            RecordRecv::Lapped { lost } => Step::Lost(lost),
            RecordRecv::Empty | RecordRecv::Closed => Step::Empty,
        }
    }
    fn watch_state(&self) -> WatchState {
        WatchState::for_records(self.0.name(), self.0.ring_bytes(), self.0.max_record())
    }
}

impl ListRow for RecordsSummary {
    fn cells(&self) -> Vec<String> {
        let r = self;
        vec![
            text::bytes(r.ring_bytes),
            r.max_record.to_string(),
            r.records_published.to_string(),
            text::bytes(r.bytes_published),
            super::rate_cell(&r.last_publish),
            r.last_publish.display(),
            if r.producer_alive { "alive" } else { "none" }.into(),
            r.liveness.creator_cell(),
        ]
    }
    fn liveness(&self) -> &Liveness {
        &self.liveness
    }
    fn publish_count(&self) -> Option<u64> {
        Some(self.records_published)
    }
    fn set_last_publish(&mut self, l: LastPublish) {
        self.last_publish = l;
    }
    fn metrics(&self, m: &mut SegmentMetrics<'_>) {
        m.counter(
            "shmbus_records_published_total",
            "Records published to the records segment since it was created.",
            self.records_published,
        );
        m.counter(
            "shmbus_records_published_bytes_total",
            "Payload bytes published to the records segment since it was created.",
            self.bytes_published,
        );
        m.gauge(
            "shmbus_records_ring_bytes",
            "Size of the records segment's byte ring.",
            self.ring_bytes,
        );
        m.gauge(
            "shmbus_records_ring_used_bytes",
            "Bytes of the records segment's ring holding records a subscriber can still read \
             (from the oldest intact record to the newest; at most the ring's size).",
            self.ring_used,
        );
        m.gauge_by(
            "shmbus_participants_alive",
            super::PARTICIPANTS_HELP,
            ("role", "producer"),
            self.producer_alive,
        );
    }
}

/// `shmbus tail` on a records segment: the records available (at most `n`), or with `follow`
/// every new one until the process is interrupted.
fn tail(r: &Records, plan: &TailPlan, p: &Printer) -> CmdResult {
    let (start, n, follow) = (plan.start, plan.n, plan.follow);
    let mut sub = r.subscribe(start).wait_strategy(Wait::Sleep);
    let end = r.records_published();
    let mut out = io::BufWriter::new(io::stdout().lock());
    let mut printed = 0;
    let result = (|| -> io::Result<()> {
        loop {
            if output::stopped() {
                return Ok(());
            }
            if !follow && (printed >= n || sub.next_seq() >= end) {
                return Ok(());
            }
            let first = sub.next_seq();
            match sub.recv_timeout(Duration::from_millis(100)) {
                RecordRecv::Record(m) => {
                    writeln!(out, "{}", p.message(m.seq(), m.bytes()))?;
                    printed += 1;
                }
                RecordRecv::Lapped { lost } => writeln!(out, "{}", p.lap(first, lost))?,
                RecordRecv::Empty | RecordRecv::Closed if !follow => return Ok(()),
                RecordRecv::Empty | RecordRecv::Closed => {}
            }
            if follow {
                out.flush()?;
            }
        }
    })();
    output::quiet_broken_pipe(result.and_then(|()| out.flush()))
}

/// What `list` reports about a records segment.
#[derive(Serialize, Debug, Clone, PartialEq)]
pub(crate) struct RecordsSummary {
    pub(crate) ring_bytes: u64,
    /// Largest record in bytes.
    pub(crate) max_record: usize,
    pub(crate) records_published: u64,
    pub(crate) bytes_published: u64,
    pub(crate) producer_alive: bool,
    /// Bytes of the ring holding readable records (for `/metrics`; not in `list --json`).
    #[serde(skip)]
    pub(crate) ring_used: u64,
    /// When the last record was published, from the sampled record count.
    pub(crate) last_publish: LastPublish,
    #[serde(flatten)]
    pub(crate) liveness: Liveness,
}

#[derive(Serialize, Debug)]
struct InfoOut {
    name: String,
    path: String,
    kind: &'static str,
    ring_bytes: u64,
    max_record: usize,
    records_published: u64,
    bytes_published: u64,
    producer_alive: bool,
    /// When the last record was published, from the record count sampled twice.
    last_publish: crate::activity::LastPublish,
    #[serde(flatten)]
    liveness: Liveness,
    access: Option<Access>,
}

/// `shmbus info` on a records segment: its ring, what was published, its producer.
fn report(r: &Records, sample: Duration) -> Report {
    let last_publish = super::sample_last_publish(sample, || r.records_published());
    let h = r.header();
    let o = InfoOut {
        name: r.name().to_owned(),
        path: inspect::segment_path(r.name()).display().to_string(),
        kind: "records",
        ring_bytes: r.ring_bytes(),
        max_record: r.max_record(),
        records_published: r.records_published(),
        bytes_published: r.bytes_published(),
        producer_alive: r.has_producers(),
        last_publish,
        liveness: Liveness::of(&h, r.has_producers()),
        access: Access::of(r.name()),
    };
    let mut out = String::new();
    text_report(&mut out, &o).expect("writing to a String cannot fail");
    Report {
        json: text::json_line(&o),
        text: out,
        failure: None,
    }
}

fn text_report(out: &mut String, o: &InfoOut) -> std::fmt::Result {
    use std::fmt::Write as _;
    writeln!(out, "records segment {}", text::sanitize(&o.name))?;
    writeln!(out, "  path               {}", o.path)?;
    writeln!(out, "  ring               {} bytes", o.ring_bytes)?;
    writeln!(out, "  largest record     {} bytes", o.max_record)?;
    writeln!(out, "  records published  {}", o.records_published)?;
    writeln!(out, "  bytes published    {}", o.bytes_published)?;
    writeln!(
        out,
        "  producer           {}",
        if o.producer_alive { "alive" } else { "none" }
    )?;
    writeln!(
        out,
        "  last publish       {}",
        super::last_publish_line(&o.last_publish)
    )?;
    super::liveness_lines(
        out,
        &o.liveness,
        "yes: no live producer and creator gone",
        o.access.as_ref(),
    )?;
    Ok(())
}
