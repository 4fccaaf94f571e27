//! What a run measured, and the three ways to print it: a human table, JSON, CSV.

use std::fmt::Write;

use serde::Serialize;

use crate::stats::{Pct, PCT_NAMES};
use crate::sys::LoadSummary;

/// Everything one run measured. Sections a command did not measure are left out of the JSON.
#[derive(Debug, Default, Serialize)]
pub struct Report {
    pub command: String,
    pub machine: Machine,
    pub warnings: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub c2c: Vec<C2cRow>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub latency: Vec<LatencyRow>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub throughput: Vec<ThroughputRow>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub fanout: Vec<FanoutRow>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub idle_subscribers: Vec<IdleRow>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub mp: Vec<MpRow>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub peer_comparison: Vec<PeerRatio>,
    /// How busy the machine was during each step of the run.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub load: Vec<LoadRow>,
    /// Rows measured oversubscribed, by section (indexes into that section).
    pub oversubscribed: Oversubscribed,
    /// Whole latency distributions, for `--plot`.
    #[serde(skip)]
    pub curves: Vec<Curve>,
}

/// The machine's load during one step.
#[derive(Debug, Serialize)]
pub struct LoadRow {
    pub step: String,
    /// Mean runnable tasks on the machine during the step (ours included).
    pub mean_runnable: f64,
    pub max_runnable: u64,
    /// The kernel's one-minute load average at the end of the step.
    pub load_avg_1m: f64,
    pub usable_cores: usize,
    /// More runnable tasks than usable cores, on average: the figures include scheduler time.
    pub oversubscribed: bool,
}

/// One value per section of the report, and one for its curves.
#[derive(Clone, Copy, Debug, Default, Serialize, PartialEq)]
pub struct Sections<T> {
    pub c2c: T,
    pub latency: T,
    pub throughput: T,
    pub fanout: T,
    pub idle_subscribers: T,
    pub mp: T,
    pub curves: T,
}

/// Which rows were measured with more busy processes than usable cores: either the workload
/// itself needs more cores than there are (fan-out K+1, P producers + 1 consumer, consumers + 1)
/// or the machine was busy with other work (see [`Report::load`]). Their figures include
/// scheduler time slices. Indexes into the sections of the same name; `curves` into
/// [`Report::curves`].
pub type Oversubscribed = Sections<Vec<usize>>;

/// The length of every section, taken before a step so that its rows can be found after it.
pub type Counts = Sections<usize>;

#[derive(Debug, Default, Serialize)]
pub struct Machine {
    pub cpu: String,
    /// Cores this process may use.
    pub cores: usize,
    pub clock: String,
    pub ns_per_tick: f64,
}

/// Core-to-core latency of one cache line bounced between two cores.
#[derive(Debug, Serialize)]
pub struct C2cRow {
    /// `thread` (two threads of one process) or `process` (two processes, shared memory).
    pub mode: &'static str,
    pub cores: [usize; 2],
    /// Round trip / 2.
    pub one_way_ns: Pct,
}

/// A one-way latency distribution beside the process c2c latency of the same cores.
#[derive(Clone, Copy, Debug, Serialize)]
pub struct Latency {
    pub ns: Pct,
    /// The process c2c one-way p50 of the same cores, same run.
    pub c2c_one_way_ns: Option<f64>,
    /// `ns` divided by `c2c_one_way_ns`.
    pub ratio_to_c2c: Option<Pct>,
}

impl Latency {
    /// `ns` beside `c2c`, the process c2c one-way p50 of the same cores if it was measured.
    pub fn beside(ns: Pct, c2c: Option<f64>) -> Latency {
        Latency {
            ns,
            c2c_one_way_ns: c2c,
            ratio_to_c2c: ns.ratio(c2c),
        }
    }
}

/// One-way latency of one transport, payload size and core pair.
#[derive(Debug, Serialize)]
pub struct LatencyRow {
    pub transport: &'static str,
    /// `pingpong` (round trip / 2) or `oneway` (receive stamp minus send stamp).
    pub method: &'static str,
    pub payload: usize,
    pub cores: [usize; 2],
    #[serde(flatten)]
    pub latency: Latency,
}

#[derive(Debug, Serialize)]
pub struct ThroughputRow {
    pub transport: &'static str,
    pub payload: usize,
    pub slots: u64,
    pub messages: u64,
    pub seconds: f64,
    pub msgs_per_s: f64,
    pub gb_per_s: f64,
    pub per_consumer: Vec<ConsumerCount>,
}

#[derive(Debug, Serialize)]
pub struct ConsumerCount {
    pub core: usize,
    pub received: u64,
    pub lost: u64,
    pub msgs_per_s: f64,
}

#[derive(Debug, Serialize)]
pub struct FanoutRow {
    pub transport: &'static str,
    pub consumers: usize,
    pub producer_core: usize,
    pub payload: usize,
    /// Publishing flat out with all consumers reading.
    pub publish_msgs_per_s: f64,
    /// Cost of one publish, measured over batches.
    pub publish_ns: Pct,
    /// More processes than cores: consumers take turns on a core.
    pub oversubscribed: bool,
    pub per_consumer: Vec<ConsumerLatency>,
}

#[derive(Debug, Serialize)]
pub struct ConsumerLatency {
    pub index: usize,
    pub core: usize,
    #[serde(flatten)]
    pub latency: Latency,
    pub received: u64,
    pub lost: u64,
}

#[derive(Debug, Serialize)]
pub struct IdleRow {
    pub transport: &'static str,
    pub idle_subscribers: usize,
    /// Cost of one publish, measured over batches.
    pub publish_ns: Pct,
    /// p50 divided by the p50 with no subscriber.
    pub p50_vs_none: f64,
}

#[derive(Debug, Serialize)]
pub struct MpRow {
    pub producers: usize,
    pub payload: usize,
    pub slots: u64,
    /// All producers together, publishing flat out at the same time.
    pub msgs_per_s: f64,
    pub per_producer: Vec<ProducerCount>,
    pub consumer_core: usize,
    /// Latency of paced messages from all producers at once, seen by one consumer.
    #[serde(flatten)]
    pub latency: Latency,
    pub received: u64,
    pub lost: u64,
}

#[derive(Debug, Serialize)]
pub struct ProducerCount {
    pub index: usize,
    pub core: usize,
    pub published: u64,
    pub dropped: u64,
    pub msgs_per_s: f64,
}

/// shmbus against a peer transport on the same workload.
#[derive(Debug, Serialize)]
pub struct PeerRatio {
    pub workload: String,
    pub metric: &'static str,
    pub shmbus: f64,
    pub peer: f64,
    pub peer_name: &'static str,
    /// shmbus / peer: below 1 means shmbus is faster (for times) or slower (for rates).
    pub ratio: f64,
}

/// A latency distribution to plot: (quantile, ns) points.
#[derive(Debug)]
pub struct Curve {
    pub label: String,
    pub points: Vec<(f64, f64)>,
}

impl Report {
    pub fn warn(&mut self, w: String) {
        if !self.warnings.contains(&w) {
            self.warnings.push(w);
        }
    }

    pub fn counts(&self) -> Counts {
        Counts {
            c2c: self.c2c.len(),
            latency: self.latency.len(),
            throughput: self.throughput.len(),
            fanout: self.fanout.len(),
            idle_subscribers: self.idle_subscribers.len(),
            mp: self.mp.len(),
            curves: self.curves.len(),
        }
    }

    /// Ends step `step`, which began when the sections had the lengths `before`: records the
    /// load it ran under, and marks its rows and curves oversubscribed if the machine had more
    /// runnable tasks than `cores` on average, or if the workload itself needed more cores.
    pub fn end_step(&mut self, step: &str, before: Counts, load: LoadSummary, cores: usize) {
        let busy = load.mean_runnable > cores as f64;
        self.load.push(LoadRow {
            step: step.to_owned(),
            mean_runnable: load.mean_runnable,
            max_runnable: load.max_runnable,
            load_avg_1m: load.load_avg_1m,
            usable_cores: cores,
            oversubscribed: busy,
        });
        let needs_more = |processes: usize| processes > cores;
        let o = &mut self.oversubscribed;
        let marked = [
            mark_rows(&mut o.c2c, before.c2c, &self.c2c, busy, |_| false),
            mark_rows(&mut o.latency, before.latency, &self.latency, busy, |_| {
                false
            }),
            mark_rows(
                &mut o.throughput,
                before.throughput,
                &self.throughput,
                busy,
                |t| needs_more(t.per_consumer.len() + 1),
            ),
            mark_rows(&mut o.fanout, before.fanout, &self.fanout, busy, |f| {
                f.oversubscribed
            }),
            mark_rows(
                &mut o.idle_subscribers,
                before.idle_subscribers,
                &self.idle_subscribers,
                busy,
                |_| false,
            ),
            mark_rows(&mut o.mp, before.mp, &self.mp, busy, |m| {
                needs_more(m.producers + 1)
            }),
        ];
        let any = busy || marked.contains(&true);
        // A step's curves come from its rows: oversubscribed if any of them is.
        if any {
            o.curves.extend(before.curves..self.curves.len());
        }
    }

    /// One warning naming every step that ran with more runnable tasks than usable cores.
    pub fn warn_about_load(&mut self) {
        let busy: Vec<String> = self
            .load
            .iter()
            .filter(|l| l.oversubscribed)
            .map(|l| format!("{} {:.1}", l.step, l.mean_runnable))
            .collect();
        let Some(last) = self.load.last() else {
            return;
        };
        if busy.is_empty() {
            return;
        }
        let w = format!(
            "the machine had more runnable tasks than its {} usable cores during {} of {} steps \
             (mean runnable tasks: {}; load average {:.2} at the end): their figures measure the \
             scheduler as much as shmbus and are marked [oversubscribed]; quote figures from a \
             run on an otherwise idle machine",
            last.usable_cores,
            busy.len(),
            self.load.len(),
            busy.join(", "),
            last.load_avg_1m
        );
        self.warn(w);
    }

    /// Whether curve `i` was measured oversubscribed.
    pub fn curve_oversubscribed(&self, i: usize) -> bool {
        self.oversubscribed.curves.contains(&i)
    }

    /// The process c2c one-way p50 measured for cores `a` and `b` in this run.
    pub fn c2c_for(&self, a: usize, b: usize) -> Option<f64> {
        self.c2c
            .iter()
            .find(|r| r.mode == "process" && (r.cores == [a, b] || r.cores == [b, a]))
            .map(|r| r.one_way_ns.p50)
    }
}

/// Adds to `set` the index of every row from `from` on that was measured oversubscribed: all of
/// them if the machine was `busy`, else those whose workload `needs_more_cores`. Whether it
/// added any.
fn mark_rows<T>(
    set: &mut Vec<usize>,
    from: usize,
    rows: &[T],
    busy: bool,
    needs_more_cores: impl Fn(&T) -> bool,
) -> bool {
    let mut any = false;
    for (i, row) in rows.iter().enumerate().skip(from) {
        if busy || needs_more_cores(row) {
            set.push(i);
            any = true;
        }
    }
    any
}

fn ns(v: f64) -> String {
    if v >= 100_000.0 {
        format!("{:.0}us", v / 1000.0)
    } else if v >= 10_000.0 {
        format!("{:.1}us", v / 1000.0)
    } else if v >= 100.0 {
        format!("{v:.0}")
    } else {
        format!("{v:.1}")
    }
}

fn rate(v: f64) -> String {
    if v >= 1e6 {
        format!("{:.2} M/s", v / 1e6)
    } else {
        format!("{:.1} k/s", v / 1e3)
    }
}

fn pct_cells(p: &Pct) -> String {
    p.figures()
        .iter()
        .map(|&v| format!("{:>8}", ns(v)))
        .collect::<Vec<_>>()
        .join("")
}

fn pct_header() -> String {
    PCT_NAMES
        .iter()
        .map(|n| format!("{n:>8}"))
        .collect::<Vec<_>>()
        .join("")
}

fn ratio_cell(r: &Option<Pct>) -> String {
    r.map_or("     -".to_owned(), |r| format!("{:>6.2}x", r.p50))
}

/// With more than one pair of cores: the process c2c p50 as a matrix.
fn c2c_matrix(o: &mut String, r: &Report) {
    let mut cores: Vec<usize> = r.c2c.iter().flat_map(|c| c.cores).collect();
    cores.sort_unstable();
    cores.dedup();
    if cores.len() < 3 {
        return;
    }
    let _ = writeln!(o, "\nprocess c2c one-way p50 (ns), core by core");
    let _ = write!(o, "{:>6}", "");
    for c in &cores {
        let _ = write!(o, "{c:>8}");
    }
    let _ = writeln!(o);
    for &a in &cores {
        let _ = write!(o, "{a:>6}");
        for &b in &cores {
            let cell = r.c2c_for(a, b).map_or("-".to_owned(), ns);
            let _ = write!(o, "{cell:>8}");
        }
        let _ = writeln!(o);
    }
}

/// The tag of an oversubscribed row in the table.
const MARK: &str = "  [oversubscribed]";

fn mark(set: &[usize], i: usize) -> &'static str {
    if set.contains(&i) {
        MARK
    } else {
        ""
    }
}

/// The human table: a heading, then one section per kind of figure the run measured, then the
/// notes.
pub fn table(r: &Report) -> String {
    let mut o = String::new();
    heading(&mut o, r);
    let sections: [fn(&mut String, &Report); 8] = [
        c2c_section,
        latency_section,
        throughput_section,
        records_floor_section,
        fanout_section,
        idle_section,
        mp_section,
        peer_section,
    ];
    for section in sections {
        section(&mut o, r);
    }
    notes(&mut o, r);
    o
}

/// The machine and how to read the figures.
fn heading(o: &mut String, r: &Report) {
    let _ = writeln!(
        o,
        "shmbus-bench {}: {} ({} cores usable), clock: {}",
        r.command, r.machine.cpu, r.machine.cores, r.machine.clock
    );
    let _ = writeln!(o, "Latencies in ns unless marked; one-way = round trip / 2 (pingpong) or receive minus send stamp (oneway).");
}

/// A section of one line per row: its title, its column header, then each row as `line` writes
/// it, followed by the oversubscribed mark if its index is in `over`. Nothing for no rows.
fn rows_section<T>(
    o: &mut String,
    title: &str,
    header: &str,
    rows: &[T],
    over: &[usize],
    line: impl Fn(&T) -> String,
) {
    if rows.is_empty() {
        return;
    }
    let _ = writeln!(o, "\n{title}");
    let _ = writeln!(o, "{header}");
    for (i, row) in rows.iter().enumerate() {
        let _ = writeln!(o, "{}{}", line(row), mark(over, i));
    }
}

/// Core-to-core latency per pair, and the matrix of them for three cores or more.
fn c2c_section(o: &mut String, r: &Report) {
    rows_section(
        o,
        "Core-to-core: one cache line bounced between two cores (one-way)",
        &format!("{:<10}{:<8}{}", "mode", "cores", pct_header()),
        &r.c2c,
        &r.oversubscribed.c2c,
        |c| {
            let cores = format!("{}-{}", c.cores[0], c.cores[1]);
            format!("{:<10}{:<8}{}", c.mode, cores, pct_cells(&c.one_way_ns))
        },
    );
    c2c_matrix(o, r);
}

/// One-way latency per transport, method, payload and cores, with its ratio to c2c.
fn latency_section(o: &mut String, r: &Report) {
    rows_section(
        o,
        "One-way latency, producer and consumer in separate processes",
        &format!(
            "{:<10}{:<10}{:>8}  {:<6}{}  {:>7}",
            "transport",
            "method",
            "payload",
            "cores",
            pct_header(),
            "p50/c2c"
        ),
        &r.latency,
        &r.oversubscribed.latency,
        |l| {
            let cores = format!("{}-{}", l.cores[0], l.cores[1]);
            format!(
                "{:<10}{:<10}{:>7}B  {:<6}{}  {}",
                l.transport,
                l.method,
                l.payload,
                cores,
                pct_cells(&l.latency.ns),
                ratio_cell(&l.latency.ratio_to_c2c)
            )
        },
    );
}

/// Rates per transport, payload and ring size, with what each consumer received and lost.
fn throughput_section(o: &mut String, r: &Report) {
    rows_section(
        o,
        "Throughput: one producer publishing flat out",
        &format!(
            "{:<10}{:>8}{:>8}{:>12}{:>10}   per consumer: received / lost",
            "transport", "payload", "slots", "msgs/s", "GB/s"
        ),
        &r.throughput,
        &r.oversubscribed.throughput,
        |t| {
            let per: Vec<String> = t
                .per_consumer
                .iter()
                .map(|c| format!("core {}: {} / {}", c.core, c.received, c.lost))
                .collect();
            format!(
                "{:<10}{:>7}B{:>8}{:>12}{:>10.3}   {}",
                t.transport,
                t.payload,
                t.slots,
                rate(t.msgs_per_s),
                t.gb_per_s,
                per.join(", ")
            )
        },
    );
}

/// Records throughput beside the floors measured in the same run (rows of the throughput
/// section): the rate the producer published at and the rate the subscriber received at, each
/// over the plain floor; then the floor variants and memcpy, in GB/s.
fn records_floor_section(o: &mut String, r: &Report) {
    let find = |name: &str, payload: usize| {
        r.throughput
            .iter()
            .find(|t| t.transport == name && t.payload == payload)
            .map(|t| t.gb_per_s)
    };
    let rows: Vec<String> = r
        .throughput
        .iter()
        .filter(|t| t.transport == "records")
        .filter_map(|t| {
            let floor = find("floor", t.payload)?;
            let got: f64 = t.per_consumer.iter().map(|c| c.msgs_per_s).sum::<f64>()
                / t.per_consumer.len().max(1) as f64
                * t.payload as f64
                / 1e9;
            let cell = |name: &str| find(name, t.payload).map_or("-".into(), |v| format!("{v:.2}"));
            Some(format!(
                "{:>7}B{:>9.2}{:>7.2}{:>10.2}{:>7.2}{:>8.2}{:>10}{:>10}{:>10}{:>10}{:>8}",
                t.payload,
                t.gb_per_s,
                t.gb_per_s / floor,
                got,
                got / floor,
                floor,
                cell("floor-cp"),
                cell("floor-acp"),
                cell("floor-aa"),
                cell("floor-vp"),
                cell("memcpy"),
            ))
        })
        .collect();
    if rows.is_empty() {
        return;
    }
    let _ = writeln!(
        o,
        "\nRecords beside the floor (GB/s; floor: minimal cross-process SP byte ring, same sizes, \
         ring size and cores, read in place; -cp: copied out; -acp: copied out with atomic loads; -aa: \
         also written with atomic stores; -vp: also committed by a sequence word in each record, which \
         the reader polls in the ring, as a records subscriber does)"
    );
    let _ = writeln!(
        o,
        "{:>8}{:>9}{:>7}{:>10}{:>7}{:>8}{:>10}{:>10}{:>10}{:>10}{:>8}",
        "payload",
        "records",
        "/floor",
        "received",
        "/floor",
        "floor",
        "floor-cp",
        "floor-acp",
        "floor-aa",
        "floor-vp",
        "memcpy"
    );
    for row in rows {
        let _ = writeln!(o, "{row}");
    }
}

/// Per fan-out run: the producer's rate and publish cost, then each consumer's latency.
fn fanout_section(o: &mut String, r: &Report) {
    if r.fanout.is_empty() {
        return;
    }
    let _ = writeln!(o, "\nFan-out: one producer, K consumer processes");
    for (i, f) in r.fanout.iter().enumerate() {
        let _ = writeln!(
            o,
            "{} K={} ({}B): publish rate {}, publish cost p50 {} ns, p99 {} ns{}{}",
            f.transport,
            f.consumers,
            f.payload,
            rate(f.publish_msgs_per_s),
            ns(f.publish_ns.p50),
            ns(f.publish_ns.p99),
            if f.oversubscribed {
                " (consumers share cores)"
            } else {
                ""
            },
            mark(&r.oversubscribed.fanout, i)
        );
        let _ = writeln!(
            o,
            "    {:<10}{:<6}{}  {:>7}{:>10}{:>8}",
            "consumer",
            "core",
            pct_header(),
            "p50/c2c",
            "received",
            "lost"
        );
        for c in &f.per_consumer {
            let _ = writeln!(
                o,
                "    {:<10}{:<6}{}  {}{:>10}{:>8}",
                c.index,
                c.core,
                pct_cells(&c.latency.ns),
                ratio_cell(&c.latency.ratio_to_c2c),
                c.received,
                c.lost
            );
        }
    }
}

/// The publish cost per number of idle subscribers, against none.
fn idle_section(o: &mut String, r: &Report) {
    rows_section(
        o,
        "Publish cost with idle subscriber processes attached (ns per publish)",
        &format!(
            "{:<10}{:>6}  {}  {:>9}",
            "transport",
            "idle",
            pct_header(),
            "p50/none"
        ),
        &r.idle_subscribers,
        &r.oversubscribed.idle_subscribers,
        |i| {
            format!(
                "{:<10}{:>6}  {}  {:>8.3}x",
                i.transport,
                i.idle_subscribers,
                pct_cells(&i.publish_ns),
                i.p50_vs_none
            )
        },
    );
}

/// Per multi-producer run: the total and per-producer rates, then the consumer's latency.
fn mp_section(o: &mut String, r: &Report) {
    if r.mp.is_empty() {
        return;
    }
    let _ = writeln!(
        o,
        "\nMulti-producer bus: P producer processes, one consumer"
    );
    for (i, m) in r.mp.iter().enumerate() {
        let per: Vec<String> = m
            .per_producer
            .iter()
            .map(|p| {
                format!(
                    "#{} core {}: {} (dropped {})",
                    p.index,
                    p.core,
                    rate(p.msgs_per_s),
                    p.dropped
                )
            })
            .collect();
        let _ = writeln!(
            o,
            "P={} ({}B, {} slots): total {}; {}{}",
            m.producers,
            m.payload,
            m.slots,
            rate(m.msgs_per_s),
            per.join(", "),
            mark(&r.oversubscribed.mp, i)
        );
        let _ = writeln!(
            o,
            "    paced latency at core {}: {}  {}  received {} lost {}",
            m.consumer_core,
            pct_cells(&m.latency.ns),
            ratio_cell(&m.latency.ratio_to_c2c),
            m.received,
            m.lost
        );
    }
}

/// shmbus against its peer, workload by workload.
fn peer_section(o: &mut String, r: &Report) {
    if r.peer_comparison.is_empty() {
        return;
    }
    let _ = writeln!(o, "\nshmbus against its peer (ratio = shmbus / peer)");
    for p in &r.peer_comparison {
        let _ = writeln!(
            o,
            "{:<40}{:<18}shmbus {:>10.1}  {} {:>10.1}  ratio {:.3}",
            p.workload, p.metric, p.shmbus, p.peer_name, p.peer, p.ratio
        );
    }
}

/// What the oversubscribed mark means, if any row bears it, and the run's warnings.
fn notes(o: &mut String, r: &Report) {
    if r.oversubscribed != Oversubscribed::default() {
        let _ = writeln!(
            o,
            "\n{}: measured with more busy processes than the {} usable cores (the workload \
             needs more, or the machine was busy); such figures include scheduler time slices",
            MARK.trim(),
            r.machine.cores
        );
    }
    if !r.warnings.is_empty() {
        let _ = writeln!(o);
        for w in &r.warnings {
            let _ = writeln!(o, "warning: {w}");
        }
    }
}

/// One CSV row per figure: section, transport, what was measured, metric, value, and whether
/// it was measured oversubscribed. Fields are quoted where they need it.
pub fn csv(r: &Report) -> String {
    let mut rows = CsvRows::default();
    let o = &r.oversubscribed;
    for (i, c) in r.c2c.iter().enumerate() {
        let label = format!("{} cores {}-{}", c.mode, c.cores[0], c.cores[1]);
        let over = o.c2c.contains(&i);
        rows.pct("c2c", "cacheline", &label, "ns_", &c.one_way_ns, over);
    }
    for (i, l) in r.latency.iter().enumerate() {
        let label = format!(
            "{} {}B cores {}-{}",
            l.method, l.payload, l.cores[0], l.cores[1]
        );
        let over = o.latency.contains(&i);
        rows.pct("latency", l.transport, &label, "ns_", &l.latency.ns, over);
        if let Some(ratio) = &l.latency.ratio_to_c2c {
            rows.pct("latency", l.transport, &label, "ratio_", ratio, over);
        }
    }
    for (i, t) in r.throughput.iter().enumerate() {
        let label = format!("{}B {} slots", t.payload, t.slots);
        let over = o.throughput.contains(&i);
        let row = |rows: &mut CsvRows, label: &str, metric: &str, v: String| {
            rows.push("throughput", t.transport, label, metric, v, over)
        };
        row(
            &mut rows,
            &label,
            "msgs_per_s",
            format!("{:.1}", t.msgs_per_s),
        );
        row(&mut rows, &label, "gb_per_s", format!("{:.4}", t.gb_per_s));
        for c in &t.per_consumer {
            row(
                &mut rows,
                &format!("{label} core {}", c.core),
                "lost",
                c.lost.to_string(),
            );
        }
    }
    for (i, f) in r.fanout.iter().enumerate() {
        let label = format!("K={} {}B", f.consumers, f.payload);
        let over = o.fanout.contains(&i);
        rows.push(
            "fanout",
            f.transport,
            &label,
            "publish_msgs_per_s",
            format!("{:.1}", f.publish_msgs_per_s),
            over,
        );
        rows.pct(
            "fanout",
            f.transport,
            &label,
            "publish_ns_",
            &f.publish_ns,
            over,
        );
        for c in &f.per_consumer {
            let l = format!("{label} consumer {} core {}", c.index, c.core);
            rows.pct("fanout", f.transport, &l, "ns_", &c.latency.ns, over);
        }
    }
    for (n, i) in r.idle_subscribers.iter().enumerate() {
        let label = format!("idle={}", i.idle_subscribers);
        let over = o.idle_subscribers.contains(&n);
        rows.pct(
            "idle",
            i.transport,
            &label,
            "publish_ns_",
            &i.publish_ns,
            over,
        );
        rows.push(
            "idle",
            i.transport,
            &label,
            "p50_vs_none",
            format!("{:.4}", i.p50_vs_none),
            over,
        );
    }
    for (i, m) in r.mp.iter().enumerate() {
        let label = format!("P={} {}B", m.producers, m.payload);
        let over = o.mp.contains(&i);
        rows.push(
            "mp",
            "shmbus",
            &label,
            "msgs_per_s",
            format!("{:.1}", m.msgs_per_s),
            over,
        );
        rows.pct("mp", "shmbus", &label, "ns_", &m.latency.ns, over);
    }
    for p in &r.peer_comparison {
        rows.push(
            "peer",
            p.peer_name,
            &format!("{} {}", p.workload, p.metric),
            "ratio",
            format!("{:.4}", p.ratio),
            false,
        );
    }
    rows.finish()
}

/// The records of [`csv()`], written by the csv crate (which quotes commas, quotes and line
/// breaks in labels).
struct CsvRows(csv::Writer<Vec<u8>>);

impl Default for CsvRows {
    fn default() -> Self {
        let mut w = csv::Writer::from_writer(Vec::new());
        w.write_record([
            "section",
            "transport",
            "label",
            "metric",
            "value",
            "oversubscribed",
        ])
        .expect("writing to a Vec cannot fail");
        CsvRows(w)
    }
}

impl CsvRows {
    fn push(
        &mut self,
        section: &str,
        transport: &str,
        label: &str,
        metric: &str,
        value: String,
        over: bool,
    ) {
        let over = if over { "true" } else { "false" };
        self.0
            .write_record([section, transport, label, metric, &value, over])
            .expect("writing to a Vec cannot fail");
    }

    fn pct(
        &mut self,
        section: &str,
        transport: &str,
        label: &str,
        prefix: &str,
        p: &Pct,
        over: bool,
    ) {
        for (n, v) in PCT_NAMES.iter().zip(p.figures()) {
            let metric = format!("{prefix}{n}");
            self.push(section, transport, label, &metric, format!("{v:.3}"), over);
        }
    }

    fn finish(self) -> String {
        let bytes = self.0.into_inner().expect("flushing to a Vec cannot fail");
        String::from_utf8(bytes).expect("every field is UTF-8")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(a: usize, b: usize, p50: f64) -> C2cRow {
        C2cRow {
            mode: "process",
            cores: [a, b],
            one_way_ns: Pct {
                samples: 1,
                p50,
                ..Pct::default()
            },
        }
    }

    #[test]
    fn three_cores_get_a_c2c_matrix_with_both_orders_of_each_pair() {
        let r = Report {
            c2c: vec![row(0, 1, 50.0), row(0, 2, 70.0), row(1, 2, 90.0)],
            ..Report::default()
        };
        assert_eq!(r.c2c_for(2, 0), Some(70.0));
        let t = table(&r);
        let matrix: Vec<&str> = t
            .lines()
            .skip_while(|l| !l.contains("core by core"))
            .skip(2)
            .collect();
        let cells = |l: &str| l.split_whitespace().map(str::to_owned).collect::<Vec<_>>();
        assert_eq!(cells(matrix[0]), ["0", "-", "50.0", "70.0"]);
        assert_eq!(cells(matrix[2]), ["2", "70.0", "90.0", "-"]);
    }

    #[test]
    fn two_cores_get_no_matrix() {
        let r = Report {
            c2c: vec![row(0, 1, 50.0)],
            ..Report::default()
        };
        assert!(!table(&r).contains("core by core"));
    }

    fn fanout_row(consumers: usize, oversubscribed: bool) -> FanoutRow {
        FanoutRow {
            transport: "shmbus",
            consumers,
            producer_core: 0,
            payload: 64,
            publish_msgs_per_s: 1e6,
            publish_ns: Pct::default(),
            oversubscribed,
            per_consumer: Vec::new(),
        }
    }

    fn load(mean_runnable: f64) -> LoadSummary {
        LoadSummary {
            mean_runnable,
            max_runnable: mean_runnable as u64,
            load_avg_1m: mean_runnable,
            samples: 3,
        }
    }

    #[test]
    fn a_workload_needing_more_cores_marks_its_rows_and_curves_only() {
        let mut r = Report::default();
        let before = r.counts();
        r.fanout.push(fanout_row(1, false));
        r.end_step("fan-out K=1", before, load(1.0), 2);
        let before = r.counts();
        r.fanout.push(fanout_row(3, true));
        r.curves.push(Curve {
            label: "shmbus fanout K=3 consumer 0".into(),
            points: vec![(0.5, 100.0)],
        });
        r.end_step("fan-out K=3", before, load(2.0), 2);
        assert_eq!(r.oversubscribed.fanout, [1]);
        assert!(r.curve_oversubscribed(0));
        r.warn_about_load();
        assert!(
            r.warnings.is_empty(),
            "the machine was not busy: {:?}",
            r.warnings
        );
        let t = table(&r);
        let marked: Vec<&str> = t
            .lines()
            .filter(|l| l.ends_with("[oversubscribed]"))
            .collect();
        assert_eq!(marked.len(), 1, "{t}");
        assert!(marked[0].contains("K=3"), "{t}");
    }

    #[test]
    fn a_busy_machine_marks_every_row_of_the_step_and_warns_once() {
        let mut r = Report::default();
        let before = r.counts();
        r.c2c.push(row(0, 1, 50.0));
        r.end_step("c2c", before, load(5.0), 2);
        let before = r.counts();
        r.c2c.push(row(0, 2, 60.0));
        r.end_step("c2c again", before, load(1.5), 2);
        assert_eq!(r.oversubscribed.c2c, [0]);
        assert_eq!(r.load.len(), 2);
        assert!(r.load[0].oversubscribed && !r.load[1].oversubscribed);
        r.warn_about_load();
        assert_eq!(r.warnings.len(), 1, "{:?}", r.warnings);
        assert!(r.warnings[0].contains("1 of 2 steps"), "{}", r.warnings[0]);
        assert!(r.warnings[0].contains("c2c 5.0"), "{}", r.warnings[0]);
        let csv = csv(&r);
        let mut lines = csv.lines();
        assert_eq!(
            lines.next(),
            Some("section,transport,label,metric,value,oversubscribed")
        );
        let flags: Vec<&str> = lines.map(|l| l.rsplit(',').next().unwrap()).collect();
        assert_eq!(flags.iter().filter(|f| **f == "true").count(), 6, "{csv}");
        assert_eq!(flags.iter().filter(|f| **f == "false").count(), 6, "{csv}");
    }

    #[test]
    fn csv_quotes_labels_with_commas() {
        let r = Report {
            peer_comparison: vec![PeerRatio {
                workload: "fan-out K=3, 64B".into(),
                metric: "p50",
                shmbus: 1.0,
                peer: 2.0,
                peer_name: "iceoryx2",
                ratio: 0.5,
            }],
            ..Report::default()
        };
        let csv = csv(&r);
        let line = csv.lines().nth(1).unwrap();
        assert_eq!(
            line,
            "peer,iceoryx2,\"fan-out K=3, 64B p50\",ratio,0.5000,false"
        );
    }
}
