//! `shmbus hz NAME`: a bus's (or a records segment's) message, byte and loss rates over fixed
//! windows, printed as lines (or JSON objects), with no screen UI: for scripts, logs and quick
//! looks.

use std::io::Write;
use std::time::{Duration, Instant};

use clap::Args;
use serde::Serialize;
use shmbus::LapPolicy;

use crate::kinds::{self, Feed, Step};
use crate::output::{CmdResult, Failure};
use crate::text;

#[derive(Args, Debug)]
pub(crate) struct HzArgs {
    /// The bus, records segment or lanes segment name (a lanes segment's rates come from its
    /// counters: nothing is consumed).
    name: String,
    /// Length of one window in seconds (0.2 to 3600).
    #[arg(long, value_name = "SECS", default_value_t = 5.0, value_parser = parse_window)]
    window: f64,
    /// Stop after N windows (at least 1); default: until Ctrl-C.
    #[arg(short = 'c', long, value_name = "N",
          value_parser = text::at_least_one)]
    count: Option<u64>,
    /// One JSON object per window instead of a line of text.
    #[arg(long)]
    json: bool,
}

fn parse_window(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(w) if (0.2..=3600.0).contains(&w) => Ok(w),
        _ => Err(format!("expected seconds from 0.2 to 3600, got {s:?}")),
    }
}

/// One rate sample period: short enough for a meaningful min/max, long enough to hold many
/// messages on a busy bus.
const TICK: Duration = Duration::from_millis(100);
/// Messages read between two looks at the clock while draining a busy bus.
const DRAIN_CHUNK: u32 = 4096;

/// Mean, extremes and spread of the per-tick message rates of one window.
#[derive(Serialize, Debug, Clone, Copy, PartialEq)]
pub(crate) struct RateStats {
    /// Messages published in the window divided by its length.
    pub(crate) mean: f64,
    pub(crate) min: f64,
    pub(crate) max: f64,
    /// Population standard deviation of the per-tick rates.
    pub(crate) stddev: f64,
}

impl RateStats {
    /// `mean` is the whole window's rate; the rest describe `ticks`.
    fn of(mean: f64, ticks: &[f64]) -> RateStats {
        if ticks.is_empty() {
            return RateStats {
                mean,
                min: mean,
                max: mean,
                stddev: 0.0,
            };
        }
        let n = ticks.len() as f64;
        let avg = ticks.iter().sum::<f64>() / n;
        let var = ticks.iter().map(|r| (r - avg) * (r - avg)).sum::<f64>() / n;
        RateStats {
            mean,
            min: ticks.iter().copied().fold(f64::INFINITY, f64::min),
            max: ticks.iter().copied().fold(0.0, f64::max),
            stddev: var.sqrt(),
        }
    }
}

/// What `hz --json` prints for one window.
#[derive(Serialize, Debug)]
struct HzOut {
    name: String,
    /// "bus" or "records".
    kind: &'static str,
    /// How text output names an item: "msgs" or "records".
    #[serde(skip)]
    unit: &'static str,
    /// Measured length of the window, in seconds.
    window_s: f64,
    /// Messages (records) published during the window (the write cursor's advance).
    messages: u64,
    /// Messages (records) per second.
    msgs_per_s: RateStats,
    /// Bytes per second: for a records segment the bytes it counted as published; for a bus
    /// the messages published times the mean length read.
    bytes_per_s: f64,
    /// Mean length of the messages read; null if none was read.
    mean_len: Option<f64>,
    /// Messages the read-only subscriber read.
    received: u64,
    /// Messages overwritten before the subscriber could read them.
    lost: u64,
    lost_per_s: f64,
    /// lost / (received + lost); 0 when nothing arrived.
    loss_ratio: f64,
    /// Live producers at the end of the window.
    producers: usize,
    /// The write cursor at the end of the window (records published, for records).
    cursor: u64,
}

pub(crate) fn run(args: &HzArgs) -> CmdResult {
    let kind = kinds::of_segment(&args.name);
    let mut feed = kind.feed(&args.name, LapPolicy::default(), "hz")?;
    let ticks = ((args.window / TICK.as_secs_f64()).round() as u32).max(1);
    let mut out = std::io::stdout().lock();
    let mut done = 0;
    while args.count.is_none_or(|c| done < c) {
        let w = window_of(feed.as_mut(), ticks, &args.name, kind.word());
        let line = if args.json {
            text::json_line(&w)
        } else {
            render(&w)
        };
        writeln!(out, "{line}")?;
        out.flush()?;
        done += 1;
    }
    Ok(())
}

/// One window of `window` on segment `name`, as `hz --json` prints it: what `serve` answers
/// at `/api/segments/NAME/hz`.
pub(crate) fn one_window_json(name: &str, window: Duration) -> Result<String, Failure> {
    let kind = kinds::of_segment(name);
    let mut feed = kind.feed(name, LapPolicy::default(), "hz")?;
    let ticks = ((window.as_secs_f64() / TICK.as_secs_f64()).round() as u32).max(1);
    Ok(text::json_line(&window_of(
        feed.as_mut(),
        ticks,
        name,
        kind.word(),
    )))
}

/// Measures one window of `ticks` ticks.
fn window_of(feed: &mut dyn Feed, ticks: u32, name: &str, kind: &'static str) -> HzOut {
    let start = Instant::now();
    let first = feed.counts();
    let (first_cursor, first_bytes) = (first.cursor, first.bytes_published);
    let (mut received, mut lost, mut bytes) = (0u64, 0u64, 0u64);
    let mut rates = Vec::with_capacity(ticks as usize);
    let (mut tick_start, mut tick_cursor) = (start, first_cursor);
    for i in 1..=ticks {
        let tick_end = start + TICK * i;
        // Read everything published so far, looking at the clock now and then so that a
        // segment faster than this reader cannot hold the window open.
        'drain: while Instant::now() < tick_end {
            for _ in 0..DRAIN_CHUNK {
                match feed.step() {
                    Step::Item(len) => {
                        received += 1;
                        bytes += len as u64;
                    }
                    Step::Lost(n) => lost += n,
                    Step::Empty => break 'drain,
                }
            }
        }
        let now = Instant::now();
        if tick_end > now {
            std::thread::sleep(tick_end - now);
        }
        let now = Instant::now();
        let cursor = feed.counts().cursor;
        let secs = now.duration_since(tick_start).as_secs_f64().max(1e-9);
        rates.push(cursor.saturating_sub(tick_cursor) as f64 / secs);
        (tick_start, tick_cursor) = (now, cursor);
    }
    let secs = tick_start.duration_since(start).as_secs_f64().max(1e-9);
    let messages = tick_cursor.saturating_sub(first_cursor);
    let mean_len = (received > 0).then(|| bytes as f64 / received as f64);
    let seen = received + lost;
    let last = feed.counts();
    let bytes_per_s = match (first_bytes, last.bytes_published) {
        (Some(a), Some(b)) => b.saturating_sub(a) as f64 / secs,
        _ => mean_len.unwrap_or(0.0) * messages as f64 / secs,
    };
    HzOut {
        name: name.to_owned(),
        kind,
        unit: feed.unit(),
        window_s: secs,
        messages,
        msgs_per_s: RateStats::of(messages as f64 / secs, &rates),
        bytes_per_s,
        mean_len,
        received,
        lost,
        lost_per_s: lost as f64 / secs,
        loss_ratio: if seen == 0 {
            0.0
        } else {
            lost as f64 / seen as f64
        },
        producers: last.producers,
        cursor: tick_cursor,
    }
}

fn render(w: &HzOut) -> String {
    let r = &w.msgs_per_s;
    format!(
        "{}: {} {}/s (min {}, max {}, stddev {}) over {:.1}s; {}/s; lost {} ({:.2}%); {}",
        text::sanitize(&w.name),
        text::rate(r.mean),
        w.unit,
        text::rate(r.min),
        text::rate(r.max),
        text::rate(r.stddev),
        w.window_s,
        text::bytes(w.bytes_per_s as u64),
        w.lost,
        100.0 * w.loss_ratio,
        text::count(w.producers as u64, "producer"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rate_stats_describe_the_ticks_and_keep_the_window_mean() {
        let s = RateStats::of(20.0, &[10.0, 30.0, 20.0, 20.0]);
        assert_eq!((s.mean, s.min, s.max), (20.0, 10.0, 30.0));
        assert!((s.stddev - 50f64.sqrt()).abs() < 1e-12, "{s:?}");
        let idle = RateStats::of(0.0, &[]);
        assert_eq!((idle.min, idle.max, idle.stddev), (0.0, 0.0, 0.0));
    }
}
