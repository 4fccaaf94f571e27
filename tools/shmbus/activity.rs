//! When a segment was last published to, as the inspector sees it.
//!
//! The library stamps a producer's activity only when it attaches and once in 1024 publishes
//! (so that publishing reads no clock): a healthy producer at 20 messages per second would look
//! stalled for 50 s. The write cursor (records: the record count) advances with every publish,
//! so the inspector samples it: it knows the last publish to within one sampling period.
//! `list` and `info` take two samples `--sample-ms` apart; `list --watch` and `watch` keep
//! sampling and remember when the count last moved.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use serde::Serialize;

/// What the samples say about the last publish. Both bounds are `None` when nothing was ever
/// published.
#[derive(Serialize, Debug, Clone, Copy, PartialEq, Default)]
pub(crate) struct LastPublish {
    /// The last publish was at least this long ago (ns).
    pub(crate) min_ns_ago: Option<u64>,
    /// ... and at most this long ago (ns); `None` when the count was not seen moving while
    /// sampled (the last publish came before sampling began).
    pub(crate) max_ns_ago: Option<u64>,
    /// Publishes per second over the last sampling period; `None` after a single sample.
    pub(crate) per_s: Option<f64>,
}

impl LastPublish {
    /// `-` (never published), `<200ms` (during the last sampling period), `3.2s` (at least
    /// that long ago, to within one sampling period) or `>8.0s` (not seen since sampling
    /// began that long ago).
    pub(crate) fn display(&self) -> String {
        let d = |ns: u64| crate::text::duration(Duration::from_nanos(ns));
        match (self.min_ns_ago, self.max_ns_ago) {
            (None, _) => "-".into(),
            (Some(0), Some(max)) => format!("<{}", d(max)),
            (Some(min), Some(_)) => d(min),
            (Some(min), None) => format!(">{}", d(min)),
        }
    }
}

#[derive(Clone, Copy, Debug)]
struct Seen {
    count: u64,
    /// When sampling of this segment began.
    first: Instant,
    /// The previous sample.
    last: Instant,
    /// The count last moved between these two samples.
    moved: Option<(Instant, Instant)>,
    per_s: Option<f64>,
}

/// Remembers, per segment, the count (messages or records published) at each sample.
#[derive(Default, Debug)]
pub(crate) struct Activity {
    seen: HashMap<String, Seen>,
}

impl Activity {
    /// Records segment `key`'s publish count `count` sampled at `now`, and returns what is
    /// known of its last publish.
    pub(crate) fn observe(&mut self, key: &str, count: u64, now: Instant) -> LastPublish {
        let s = match self.seen.get_mut(key) {
            Some(s) => {
                let dt = now.saturating_duration_since(s.last).as_secs_f64();
                if count != s.count {
                    s.moved = Some((s.last, now));
                }
                if dt > 0.0 {
                    s.per_s = Some(count.saturating_sub(s.count) as f64 / dt);
                }
                s.count = count;
                s.last = now;
                *s
            }
            None => *self.seen.entry(key.to_owned()).or_insert(Seen {
                count,
                first: now,
                last: now,
                moved: None,
                per_s: None,
            }),
        };
        Self::report(&s, now)
    }

    fn report(s: &Seen, now: Instant) -> LastPublish {
        let ns = |d: Duration| d.as_nanos() as u64;
        if s.count == 0 {
            return LastPublish {
                min_ns_ago: None,
                max_ns_ago: None,
                per_s: s.per_s,
            };
        }
        match s.moved {
            Some((before, at)) => LastPublish {
                min_ns_ago: Some(ns(now.saturating_duration_since(at))),
                max_ns_ago: Some(ns(now.saturating_duration_since(before))),
                per_s: s.per_s,
            },
            None => LastPublish {
                min_ns_ago: Some(ns(now.saturating_duration_since(s.first))),
                max_ns_ago: None,
                per_s: s.per_s,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_last_publish_is_bounded_by_the_samples_around_the_last_move() {
        let mut a = Activity::default();
        let t0 = Instant::now();
        let ms = |n: u64| t0 + Duration::from_millis(n);
        // One sample knows nothing yet but that there were publishes.
        let first = a.observe("b", 5, t0);
        assert_eq!((first.min_ns_ago, first.max_ns_ago), (Some(0), None));
        // Moved during the sampling period: less than that period ago.
        let l = a.observe("b", 9, ms(200));
        assert_eq!(l.display(), "<200ms");
        assert_eq!(l.per_s, Some(20.0));
        // Idle since: at least the time since the sample that saw it move.
        let l = a.observe("b", 9, ms(3200));
        assert_eq!(
            (l.min_ns_ago, l.max_ns_ago),
            (Some(3_000_000_000), Some(3_200_000_000))
        );
        assert_eq!(l.display(), "3.0s");
        assert_eq!(l.per_s, Some(0.0));
        // Never seen moving: before sampling began.
        a.observe("idle", 7, t0);
        assert_eq!(a.observe("idle", 7, ms(250)).display(), ">250ms");
        // Never published.
        a.observe("new", 0, t0);
        assert_eq!(a.observe("new", 0, ms(250)).display(), "-");
    }
}
