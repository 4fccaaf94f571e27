//! What a run measured, and the three ways to print it: a human table, JSON, CSV.

use std::fmt::Write;

use serde::Serialize;

use crate::stats::{Pct, PCT_NAMES};

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
    /// Whole latency distributions, for `--plot`.
    #[serde(skip)]
    pub curves: Vec<Curve>,
}

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

/// One-way latency of one transport, payload size and core pair.
#[derive(Debug, Serialize)]
pub struct LatencyRow {
    pub transport: &'static str,
    /// `pingpong` (round trip / 2) or `oneway` (receive stamp minus send stamp).
    pub method: &'static str,
    pub payload: usize,
    pub cores: [usize; 2],
    pub ns: Pct,
    /// The process c2c one-way p50 of the same cores, same run.
    pub c2c_one_way_ns: Option<f64>,
    /// `ns` divided by `c2c_one_way_ns`.
    pub ratio_to_c2c: Option<Pct>,
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
    pub ns: Pct,
    pub c2c_one_way_ns: Option<f64>,
    pub ratio_to_c2c: Option<Pct>,
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
    pub ns: Pct,
    pub c2c_one_way_ns: Option<f64>,
    pub ratio_to_c2c: Option<Pct>,
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

    /// The process c2c one-way p50 measured for cores `a` and `b` in this run.
    pub fn c2c_for(&self, a: usize, b: usize) -> Option<f64> {
        self.c2c
            .iter()
            .find(|r| r.mode == "process" && (r.cores == [a, b] || r.cores == [b, a]))
            .map(|r| r.one_way_ns.p50)
    }
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

/// The human table.
pub fn table(r: &Report) -> String {
    let mut o = String::new();
    let _ = writeln!(
        o,
        "shmbus-bench {}: {} ({} cores usable), clock: {}",
        r.command, r.machine.cpu, r.machine.cores, r.machine.clock
    );
    let _ = writeln!(o, "Latencies in ns unless marked; one-way = round trip / 2 (pingpong) or receive minus send stamp (oneway).");
    if !r.c2c.is_empty() {
        let _ = writeln!(
            o,
            "\nCore-to-core: one cache line bounced between two cores (one-way)"
        );
        let _ = writeln!(o, "{:<10}{:<8}{}", "mode", "cores", pct_header());
        for c in &r.c2c {
            let cores = format!("{}-{}", c.cores[0], c.cores[1]);
            let _ = writeln!(o, "{:<10}{:<8}{}", c.mode, cores, pct_cells(&c.one_way_ns));
        }
        c2c_matrix(&mut o, r);
    }
    if !r.latency.is_empty() {
        let _ = writeln!(
            o,
            "\nOne-way latency, producer and consumer in separate processes"
        );
        let _ = writeln!(
            o,
            "{:<10}{:<10}{:>8}  {:<6}{}  {:>7}",
            "transport",
            "method",
            "payload",
            "cores",
            pct_header(),
            "p50/c2c"
        );
        for l in &r.latency {
            let cores = format!("{}-{}", l.cores[0], l.cores[1]);
            let _ = writeln!(
                o,
                "{:<10}{:<10}{:>7}B  {:<6}{}  {}",
                l.transport,
                l.method,
                l.payload,
                cores,
                pct_cells(&l.ns),
                ratio_cell(&l.ratio_to_c2c)
            );
        }
    }
    if !r.throughput.is_empty() {
        let _ = writeln!(o, "\nThroughput: one producer publishing flat out");
        let _ = writeln!(
            o,
            "{:<10}{:>8}{:>8}{:>12}{:>10}   per consumer: received / lost",
            "transport", "payload", "slots", "msgs/s", "GB/s"
        );
        for t in &r.throughput {
            let per: Vec<String> = t
                .per_consumer
                .iter()
                .map(|c| format!("core {}: {} / {}", c.core, c.received, c.lost))
                .collect();
            let _ = writeln!(
                o,
                "{:<10}{:>7}B{:>8}{:>12}{:>10.3}   {}",
                t.transport,
                t.payload,
                t.slots,
                rate(t.msgs_per_s),
                t.gb_per_s,
                per.join(", ")
            );
        }
    }
    if !r.fanout.is_empty() {
        let _ = writeln!(o, "\nFan-out: one producer, K consumer processes");
        for f in &r.fanout {
            let _ = writeln!(
                o,
                "{} K={} ({}B): publish rate {}, publish cost p50 {} ns, p99 {} ns{}",
                f.transport,
                f.consumers,
                f.payload,
                rate(f.publish_msgs_per_s),
                ns(f.publish_ns.p50),
                ns(f.publish_ns.p99),
                if f.oversubscribed {
                    " [oversubscribed: consumers share cores]"
                } else {
                    ""
                }
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
                    pct_cells(&c.ns),
                    ratio_cell(&c.ratio_to_c2c),
                    c.received,
                    c.lost
                );
            }
        }
    }
    if !r.idle_subscribers.is_empty() {
        let _ = writeln!(
            o,
            "\nPublish cost with idle subscriber processes attached (ns per publish)"
        );
        let _ = writeln!(
            o,
            "{:<10}{:>6}  {}  {:>9}",
            "transport",
            "idle",
            pct_header(),
            "p50/none"
        );
        for i in &r.idle_subscribers {
            let _ = writeln!(
                o,
                "{:<10}{:>6}  {}  {:>8.3}x",
                i.transport,
                i.idle_subscribers,
                pct_cells(&i.publish_ns),
                i.p50_vs_none
            );
        }
    }
    if !r.mp.is_empty() {
        let _ = writeln!(
            o,
            "\nMulti-producer bus: P producer processes, one consumer"
        );
        for m in &r.mp {
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
                "P={} ({}B, {} slots): total {}; {}",
                m.producers,
                m.payload,
                m.slots,
                rate(m.msgs_per_s),
                per.join(", ")
            );
            let _ = writeln!(
                o,
                "    paced latency at core {}: {}  {}  received {} lost {}",
                m.consumer_core,
                pct_cells(&m.ns),
                ratio_cell(&m.ratio_to_c2c),
                m.received,
                m.lost
            );
        }
    }
    if !r.peer_comparison.is_empty() {
        let _ = writeln!(o, "\nshmbus against its peer (ratio = shmbus / peer)");
        for p in &r.peer_comparison {
            let _ = writeln!(
                o,
                "{:<40}{:<18}shmbus {:>10.1}  {} {:>10.1}  ratio {:.3}",
                p.workload, p.metric, p.shmbus, p.peer_name, p.peer, p.ratio
            );
        }
    }
    if !r.warnings.is_empty() {
        let _ = writeln!(o);
        for w in &r.warnings {
            let _ = writeln!(o, "warning: {w}");
        }
    }
    o
}

/// One CSV row per figure: section, transport, what was measured, metric, value.
pub fn csv(r: &Report) -> String {
    let mut o = String::new();
    let _ = writeln!(o, "section,transport,label,metric,value");
    fn pct(o: &mut String, section: &str, transport: &str, label: &str, prefix: &str, p: &Pct) {
        for (n, v) in PCT_NAMES.iter().zip(p.figures()) {
            let _ = writeln!(o, "{section},{transport},{label},{prefix}{n},{v:.3}");
        }
    }
    for c in &r.c2c {
        let label = format!("{} cores {}-{}", c.mode, c.cores[0], c.cores[1]);
        pct(&mut o, "c2c", "cacheline", &label, "ns_", &c.one_way_ns);
    }
    for l in &r.latency {
        let label = format!(
            "{} {}B cores {}-{}",
            l.method, l.payload, l.cores[0], l.cores[1]
        );
        pct(&mut o, "latency", l.transport, &label, "ns_", &l.ns);
        if let Some(ratio) = &l.ratio_to_c2c {
            pct(&mut o, "latency", l.transport, &label, "ratio_", ratio);
        }
    }
    for t in &r.throughput {
        let label = format!("{}B {} slots", t.payload, t.slots);
        let _ = writeln!(
            o,
            "throughput,{},{label},msgs_per_s,{:.1}",
            t.transport, t.msgs_per_s
        );
        let _ = writeln!(
            o,
            "throughput,{},{label},gb_per_s,{:.4}",
            t.transport, t.gb_per_s
        );
        for c in &t.per_consumer {
            let _ = writeln!(
                o,
                "throughput,{},{label} core {},lost,{}",
                t.transport, c.core, c.lost
            );
        }
    }
    for f in &r.fanout {
        let label = format!("K={} {}B", f.consumers, f.payload);
        let _ = writeln!(
            o,
            "fanout,{},{label},publish_msgs_per_s,{:.1}",
            f.transport, f.publish_msgs_per_s
        );
        pct(
            &mut o,
            "fanout",
            f.transport,
            &label,
            "publish_ns_",
            &f.publish_ns,
        );
        for c in &f.per_consumer {
            let l = format!("{label} consumer {} core {}", c.index, c.core);
            pct(&mut o, "fanout", f.transport, &l, "ns_", &c.ns);
        }
    }
    for i in &r.idle_subscribers {
        let label = format!("idle={}", i.idle_subscribers);
        pct(
            &mut o,
            "idle",
            i.transport,
            &label,
            "publish_ns_",
            &i.publish_ns,
        );
        let _ = writeln!(
            o,
            "idle,{},{label},p50_vs_none,{:.4}",
            i.transport, i.p50_vs_none
        );
    }
    for m in &r.mp {
        let label = format!("P={} {}B", m.producers, m.payload);
        let _ = writeln!(o, "mp,shmbus,{label},msgs_per_s,{:.1}", m.msgs_per_s);
        pct(&mut o, "mp", "shmbus", &label, "ns_", &m.ns);
    }
    for p in &r.peer_comparison {
        let _ = writeln!(
            o,
            "peer,{},{} {},ratio,{:.4}",
            p.peer_name, p.workload, p.metric, p.ratio
        );
    }
    o
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
}
