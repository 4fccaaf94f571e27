//! Lanes segments: a pool of per-producer byte rings read by one consumer. What `create`,
//! `list`, `info`, `publish`, `pop` and `rm` do with one.

use std::io::{self, Write};
use std::time::Duration;

use serde::Serialize;
use shmbus::inspect::{self, Probe};
use shmbus::lanes::{LaneEvent, LaneInfo, LanePublisher, LanePush, Lanes, LanesBuilder};

use super::{
    Access, Attached, Counts, CreateArgs, Feed, Instead, Kind, ListRow, Liveness, Payloads,
    Producer, Report, Step, Trust,
};
use crate::metrics::SegmentMetrics;
use crate::output::{self, CmdResult, Failure, Format};
use crate::text;
use crate::watch_view::WatchState;
use shmbus::{HeaderSnapshot, LapPolicy};

/// The lanes kind.
pub(crate) struct LanesKind;

fn open_for_inspection(name: &str) -> shmbus::Result<Lanes> {
    super::for_inspection!(LanesBuilder::new(name))
}

/// What the lanes hold together.
struct Totals {
    in_use: u32,
    closing: u32,
    pending_bytes: u64,
    published: u64,
    consumed: u64,
    dropped: u64,
}

fn totals(lanes: &[LaneInfo]) -> Totals {
    Totals {
        in_use: lanes.iter().filter(|l| l.in_use).count() as u32,
        closing: lanes.iter().filter(|l| l.closing).count() as u32,
        pending_bytes: lanes.iter().map(|l| l.pending_bytes).sum(),
        published: lanes.iter().map(|l| l.published).sum(),
        consumed: lanes.iter().map(|l| l.consumed).sum(),
        dropped: lanes.iter().map(|l| l.dropped).sum(),
    }
}

impl Kind for LanesKind {
    fn word(&self) -> &'static str {
        "lanes"
    }

    fn create_options(&self) -> &'static [&'static str] {
        &["--lanes", "--bytes"]
    }

    fn create(&self, a: &CreateArgs) -> CmdResult {
        let l = LanesBuilder::new(&a.name)
            .lanes(a.lanes.unwrap_or(shmbus::lanes::DEFAULT_LANES))
            .lane_bytes(a.bytes.unwrap_or(shmbus::lanes::DEFAULT_LANE_BYTES))
            .permissions(a.mode)
            .create()?;
        a.say_created(
            l.name(),
            serde_json::json!({
                "kind": "lanes",
                "lanes": l.lanes(),
                "lane_bytes": l.lane_bytes(),
                "max_record": l.max_record(),
            }),
            format!(
                "created lanes segment {}: {} of {} bytes, records up to {} bytes",
                l.name(),
                text::count(l.lanes() as u64, "lane"),
                l.lane_bytes(),
                l.max_record()
            ),
        )
    }

    fn summarize(&self, p: &Probe) -> shmbus::Result<Box<dyn ListRow>> {
        let l = open_for_inspection(&p.name)?;
        let lanes = l.lane_info();
        let t = totals(&lanes);
        let consumer_alive = l.has_consumer();
        Ok(Box::new(LanesSummary {
            lanes: l.lanes(),
            lane_bytes: l.lane_bytes(),
            lanes_in_use: t.in_use,
            pending_bytes: t.pending_bytes,
            published: t.published,
            dropped: t.dropped,
            consumer_alive,
            liveness: Liveness::of(&p.header, consumer_alive || t.in_use > 0),
        }))
    }

    fn list_columns(&self) -> &'static str {
        "COUNT> LANE> ACTIVE> PENDING> PUBLISHED> DROPPED> CONSUMER CREATOR"
    }

    fn report(&self, name: &str, sample_ms: Option<u64>, _: Payloads) -> Result<Report, Failure> {
        // A lanes report holds no payloads.
        super::refuse_sample_ms(name, self, sample_ms)?;
        Ok(report(&open_for_inspection(name)?))
    }

    fn live_participants(&self, p: &Probe) -> Vec<String> {
        let Ok(l) = open_for_inspection(&p.name) else {
            return Vec::new();
        };
        let mut who = Vec::new();
        if let Some(pid) = l.consumer_pid() {
            who.push(format!("a live consumer (pid {pid})"));
        }
        let producers = l.lane_info().iter().filter(|x| x.in_use).count() as u64;
        if producers > 0 {
            who.push(text::count(producers, "live producer"));
        }
        who
    }

    fn stale_detail(&self, _: &Probe) -> String {
        "no consumer and no producer attached".into()
    }

    /// `hz` and `watch` read the lanes' counters: they never consume (the consumer does).
    fn feed(&self, name: &str, _: LapPolicy, _command: &str) -> Result<Box<dyn Feed>, Failure> {
        Ok(Box::new(LanesFeed(open_for_inspection(name)?)))
    }

    fn producer(&self, name: &str, trust: &Trust) -> Result<Attached, Failure> {
        let l = super::trusting!(LanesBuilder::new(name), trust).open()?;
        let tx = l.acquire()?;
        Ok(Attached {
            name: l.name().to_owned(),
            // A lane is this producer's alone: nothing interleaves with its records.
            shared: false,
            tx: Box::new(LaneProducer { tx, published: 0 }),
        })
    }

    fn instead(&self, name: &str) -> Instead {
        Instead {
            what: "a lanes segment",
            watch: format!("shmbus info {name}"),
            publish: "shmbus publish",
        }
    }
}

/// `hz` and `watch` on a lanes segment: rates from the lanes' counters (records published, the
/// write positions' advance as bytes), without consuming anything.
struct LanesFeed(Lanes);

impl Feed for LanesFeed {
    fn unit(&self) -> &'static str {
        "records"
    }
    fn header(&self) -> HeaderSnapshot {
        self.0.header()
    }
    fn counts(&self) -> Counts {
        let lanes = self.0.lane_info();
        let published = lanes.iter().map(|l| l.published).sum();
        Counts {
            cursor: published,
            published,
            bytes_published: Some(lanes.iter().map(|l| l.written_bytes).sum()),
            producers: lanes.iter().filter(|l| l.in_use).count(),
        }
    }
    /// Nothing is read: only the consumer takes records.
    fn step(&mut self) -> Step {
        Step::Empty
    }
    fn watch_state(&self) -> WatchState {
        WatchState::for_lanes(
            self.0.name(),
            self.0.lanes(),
            self.0.lane_bytes(),
            self.0.max_record(),
        )
    }
}

/// `publish` on a lanes segment: a lane acquired for the command's life.
struct LaneProducer {
    tx: LanePublisher,
    published: u64,
}

impl Producer for LaneProducer {
    fn noun(&self) -> &'static str {
        "record"
    }
    fn publish(&mut self, msg: &[u8]) -> shmbus::Result<Option<u64>> {
        match self.tx.publish(msg)? {
            LanePush::Queued => self.published += 1,
            LanePush::Full { .. } => {}
        }
        Ok(None)
    }
    fn counts(&self) -> (u64, u64) {
        (self.published, self.tx.dropped())
    }
    fn dropped_why(&self) -> &'static str {
        "the lane was full (the consumer had not taken enough of the records before them)"
    }
}

/// What `list` reports about a lanes segment.
#[derive(Serialize, Debug, Clone, PartialEq)]
pub(crate) struct LanesSummary {
    pub(crate) lanes: u32,
    pub(crate) lane_bytes: u64,
    /// Lanes held by a live producer.
    pub(crate) lanes_in_use: u32,
    /// Bytes published and not yet acknowledged, over every lane.
    pub(crate) pending_bytes: u64,
    /// Records published, over every lane.
    pub(crate) published: u64,
    /// Records dropped on full lanes, in the lanes' current or last sessions.
    pub(crate) dropped: u64,
    pub(crate) consumer_alive: bool,
    #[serde(flatten)]
    pub(crate) liveness: Liveness,
}

impl ListRow for LanesSummary {
    fn cells(&self) -> Vec<String> {
        vec![
            self.lanes.to_string(),
            text::bytes(self.lane_bytes),
            self.lanes_in_use.to_string(),
            text::bytes(self.pending_bytes),
            self.published.to_string(),
            self.dropped.to_string(),
            if self.consumer_alive { "alive" } else { "none" }.into(),
            self.liveness.creator_cell(),
        ]
    }
    fn liveness(&self) -> &Liveness {
        &self.liveness
    }
    fn metrics(&self, m: &mut SegmentMetrics<'_>) {
        m.counter(
            "shmbus_lanes_published_total",
            "Records queued on the lanes segment's lanes since each lane was first used.",
            self.published,
        );
        m.gauge(
            "shmbus_lanes_dropped",
            "Records dropped on full lanes in the lanes' current or last sessions (a lane's \
             count restarts when a new producer acquires it).",
            self.dropped,
        );
        m.gauge(
            "shmbus_lanes_pending_bytes",
            "Bytes published on the lanes and not yet acknowledged by the consumer.",
            self.pending_bytes,
        );
        m.gauge(
            "shmbus_lanes",
            "Lanes of the lanes segment.",
            u64::from(self.lanes),
        );
        m.gauge(
            "shmbus_lane_bytes",
            "Size of each lane of the lanes segment.",
            self.lane_bytes,
        );
        m.gauge_by(
            "shmbus_participants_alive",
            super::PARTICIPANTS_HELP,
            ("role", "producer"),
            u64::from(self.lanes_in_use),
        );
        m.gauge_by(
            "shmbus_participants_alive",
            super::PARTICIPANTS_HELP,
            ("role", "consumer"),
            self.consumer_alive,
        );
    }
}

#[derive(Serialize, Debug)]
struct LaneOut {
    lane: u32,
    state: &'static str,
    pid: u32,
    pending_bytes: u64,
    published: u64,
    consumed: u64,
    dropped: u64,
}

#[derive(Serialize, Debug)]
struct InfoOut {
    name: String,
    path: String,
    kind: &'static str,
    lanes: u32,
    lane_bytes: u64,
    max_record: usize,
    lanes_in_use: u32,
    lanes_closing: u32,
    pending_bytes: u64,
    published: u64,
    consumed: u64,
    dropped: u64,
    consumer_alive: bool,
    consumer_pid: Option<u32>,
    /// Every lane that is in use, closing, or was ever used.
    lane_detail: Vec<LaneOut>,
    #[serde(flatten)]
    liveness: Liveness,
    access: Option<Access>,
}

/// `shmbus info` on a lanes segment: its shape, its lanes, its consumer.
fn report(l: &Lanes) -> Report {
    let lanes = l.lane_info();
    let t = totals(&lanes);
    let h = l.header();
    let lane_detail: Vec<LaneOut> = lanes
        .iter()
        .filter(|x| x.in_use || x.closing || x.published > 0)
        .map(|x| LaneOut {
            lane: x.lane,
            state: if x.in_use {
                "in use"
            } else if x.closing {
                "closing"
            } else {
                "free"
            },
            pid: x.pid,
            pending_bytes: x.pending_bytes,
            published: x.published,
            consumed: x.consumed,
            dropped: x.dropped,
        })
        .collect();
    let o = InfoOut {
        name: l.name().to_owned(),
        path: inspect::segment_path(l.name()).display().to_string(),
        kind: "lanes",
        lanes: l.lanes(),
        lane_bytes: l.lane_bytes(),
        max_record: l.max_record(),
        lanes_in_use: t.in_use,
        lanes_closing: t.closing,
        pending_bytes: t.pending_bytes,
        published: t.published,
        consumed: t.consumed,
        dropped: t.dropped,
        consumer_alive: l.has_consumer(),
        consumer_pid: l.consumer_pid(),
        lane_detail,
        liveness: Liveness::of(&h, l.has_consumer() || t.in_use > 0),
        access: Access::of(l.name()),
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
    writeln!(out, "lanes segment {}", text::sanitize(&o.name))?;
    writeln!(out, "  path               {}", o.path)?;
    writeln!(
        out,
        "  lanes              {} of {} bytes",
        o.lanes, o.lane_bytes
    )?;
    writeln!(out, "  largest record     {} bytes", o.max_record)?;
    writeln!(
        out,
        "  in use             {} (closing: {})",
        o.lanes_in_use, o.lanes_closing
    )?;
    writeln!(out, "  pending            {} bytes", o.pending_bytes)?;
    writeln!(
        out,
        "  records            {} published, {} consumed, {} dropped",
        o.published, o.consumed, o.dropped
    )?;
    writeln!(
        out,
        "  consumer           {}",
        o.consumer_pid
            .map_or("none".into(), |p| format!("alive (pid {p})"))
    )?;
    super::liveness_lines(
        out,
        &o.liveness,
        "yes: no consumer, no producer and creator gone",
        o.access.as_ref(),
    )?;
    if !o.lane_detail.is_empty() {
        writeln!(
            out,
            "  LANE  STATE    PID      PENDING  PUBLISHED  CONSUMED  DROPPED"
        )?;
        for x in &o.lane_detail {
            writeln!(
                out,
                "  {:>4}  {:<7}  {:>7}  {:>7}  {:>9}  {:>8}  {:>7}",
                x.lane, x.state, x.pid, x.pending_bytes, x.published, x.consumed, x.dropped
            )?;
        }
    }
    Ok(())
}

/// `shmbus pop` on a lanes segment: attaches as its consumer and takes records (at most `limit`;
/// with `follow`, waiting for more), each printed with its lane.
pub(crate) fn pop(
    name: &str,
    limit: u64,
    follow: bool,
    format: Format,
    json: bool,
    trust: &Trust,
) -> CmdResult {
    let l = super::trusting!(LanesBuilder::new(name), trust).open()?;
    let mut c = l.consumer()?;
    let mut out = io::stdout().lock();
    let mut taken = 0;
    while taken < limit {
        if output::stopped() {
            break;
        }
        let event = if follow {
            // Short waits, so that Ctrl-C and a closed output are noticed between records.
            c.recv_timeout(Duration::from_millis(200))?
        } else {
            c.try_recv()?
        };
        match event {
            Some(LaneEvent::Record(r)) => {
                if json {
                    let item = format.json(None, &r);
                    // `{"lane":N,` then the keys `tail --json` uses, without a sequence number.
                    writeln!(out, "{{\"lane\":{},{}", r.lane(), &item[1..])?;
                } else {
                    writeln!(out, "{}\t{}\t{}", r.lane(), r.len(), format.render(&r))?;
                }
                taken += 1;
            }
            Some(LaneEvent::Closed(x)) => {
                // Not a record: said on stderr, so that stdout holds records only.
                eprintln!(
                    "shmbus: lane {} closed{}{}",
                    x.lane,
                    if x.producer_died {
                        " (its producer died)"
                    } else {
                        ""
                    },
                    if x.dropped > 0 {
                        format!(
                            "; its producer dropped {} on a full lane",
                            text::count(x.dropped, "record")
                        )
                    } else {
                        String::new()
                    }
                );
            }
            None if follow => out.flush()?,
            None => break,
        }
        if follow {
            out.flush()?;
        }
    }
    if taken == 0 && !follow {
        out.flush()?;
        eprintln!(
            "shmbus: lanes segment {} has no record",
            text::sanitize(name)
        );
    }
    Ok(())
}
