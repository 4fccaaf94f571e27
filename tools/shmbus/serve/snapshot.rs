//! The scans of `/dev/shm` that `serve` answers from: one scan serves every request for
//! `--refresh-ms`, then the next request scans again. The publish counts of successive scans
//! give each bus's and records segment's rate.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::activity::Activity;
use crate::metrics::{Metrics, Type};
use crate::{kinds, list};

/// One scan, rendered: what `/api/segments` and `/metrics` answer.
pub(crate) struct Snapshot {
    at: Instant,
    /// How long the scan took.
    took: Duration,
    /// `list --json`'s array, or why /dev/shm could not be read.
    list: Result<String, String>,
    /// How many entries of each kind word ("bus", ..., "error", "foreign").
    counts: Vec<(&'static str, usize)>,
    /// The segments' metric families.
    segments: Metrics,
}

impl Snapshot {
    pub(crate) fn list_json(&self) -> Result<&str, &str> {
        self.list.as_deref().map_err(String::as_str)
    }

    /// The exposition text: the scan's own families, then the segments'.
    pub(crate) fn metrics(&self) -> String {
        let mut m = Metrics::default();
        m.add(
            "shmbus_scrape_duration_seconds",
            "How long the scan of /dev/shm that these metrics come from took.",
            Type::Gauge,
            &[],
            self.took.as_secs_f64(),
        );
        m.add(
            "shmbus_scrape_age_seconds",
            "Time since that scan (scans are kept for --refresh-ms).",
            Type::Gauge,
            &[],
            self.at.elapsed().as_secs_f64(),
        );
        m.add(
            "shmbus_scrape_success",
            "1 if /dev/shm could be read by that scan, 0 if not.",
            Type::Gauge,
            &[],
            self.list.is_ok(),
        );
        for (kind, n) in &self.counts {
            m.add(
                "shmbus_segments",
                "Files in /dev/shm seen by that scan, by kind (error: not readable as a \
                 segment; foreign: not a segment, listed with --all).",
                Type::Gauge,
                &[("kind", kind)],
                *n,
            );
        }
        m.render() + &self.segments.render()
    }
}

struct Latest {
    activity: Activity,
    snapshot: Option<Arc<Snapshot>>,
}

/// The latest scan, and what a new one needs.
pub(crate) struct Snapshots {
    all: bool,
    prefix: Option<String>,
    refresh: Duration,
    latest: Arc<Mutex<Latest>>,
}

impl Snapshots {
    pub(crate) fn new(all: bool, prefix: Option<String>, refresh: Duration) -> Snapshots {
        Snapshots {
            all,
            prefix,
            refresh,
            latest: Arc::new(Mutex::new(Latest {
                activity: Activity::default(),
                snapshot: None,
            })),
        }
    }

    /// A scan at most `--refresh-ms` old: the latest, or a new one made now (on a blocking
    /// thread: a scan reads files). Concurrent requests wait for one scan rather than each
    /// making its own.
    pub(crate) async fn fresh(&self) -> Arc<Snapshot> {
        let (latest, all, prefix, refresh) = (
            self.latest.clone(),
            self.all,
            self.prefix.clone(),
            self.refresh,
        );
        let made = tokio::task::spawn_blocking(move || {
            // A scan that panicked leaves the latest scan as it was: still usable.
            let mut l = latest.lock().unwrap_or_else(|p| p.into_inner());
            if let Some(s) = &l.snapshot {
                if s.at.elapsed() < refresh {
                    return s.clone();
                }
            }
            let s = Arc::new(scan(all, prefix.as_deref(), &mut l.activity));
            l.snapshot = Some(s.clone());
            s
        })
        .await;
        made.unwrap_or_else(|e| {
            Arc::new(Snapshot {
                at: Instant::now(),
                took: Duration::ZERO,
                list: Err(format!("the scan of /dev/shm failed: {e}")),
                counts: Vec::new(),
                segments: Metrics::default(),
            })
        })
    }
}

fn scan(all: bool, prefix: Option<&str>, activity: &mut Activity) -> Snapshot {
    let start = Instant::now();
    let entries = list::scan(all, prefix, activity);
    let mut segments = Metrics::default();
    // Every kind, even with no segment: a series that comes and goes reads as missing data.
    let mut counts: Vec<(&'static str, usize)> = kinds::ALL.iter().map(|k| (k.word(), 0)).collect();
    counts.push(("error", 0));
    if all {
        counts.push(("foreign", 0));
    }
    if let Ok(entries) = &entries {
        for e in entries {
            e.metrics(&mut segments);
            match counts.iter_mut().find(|(k, _)| *k == e.kind_word()) {
                Some((_, n)) => *n += 1,
                None => counts.push((e.kind_word(), 1)),
            }
        }
    }
    Snapshot {
        at: Instant::now(),
        took: start.elapsed(),
        list: entries
            .map(|e| list::json_array(&e))
            .map_err(|crate::output::Failure(e)| e),
        counts,
        segments,
    }
}
