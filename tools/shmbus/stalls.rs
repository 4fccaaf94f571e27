//! Stalled participants as `info` and `watch` show them: a queue's senders and receivers, a
//! multi-producer bus's producers and a board's writers that hold a position (a cell) they have
//! not completed ([`shmbus::Queue::holds`], [`shmbus::Bus::holds`], [`shmbus::Board::holds`]).
//!
//! The library keeps no clock on claims (the hot path would pay for it), so how long a hold
//! lasted is the inspector's to measure: `info` looks twice, a sample apart, and keeps the holds
//! seen both times ("held for at least the sample"); `watch` remembers when it first saw each
//! hold. A hold seen once is a participant mid-send or mid-receive, which is no stall.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use serde::Serialize;
use shmbus::{CellHold, HoldState, ProducerHold, QueueHold, Role};

use crate::text;

/// One hold, in the words of either kind.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Held {
    pub(crate) index: usize,
    pub(crate) pid: u32,
    /// "sender", "receiver", "producer" or "writer".
    pub(crate) role: &'static str,
    /// The queue position, bus sequence or board cell the participant holds.
    pub(crate) position: u64,
    /// "unpublished", "unfreed", "passed" (queue); "writing", "claimed" (bus); "writing"
    /// (board).
    pub(crate) state: &'static str,
}

impl Held {
    /// The same participant holding the same position (its state may have moved on: a sender
    /// still unpublished after the bound is passed).
    fn same(&self, o: &Held) -> bool {
        (self.index, self.pid, self.role, self.position) == (o.index, o.pid, o.role, o.position)
    }

    /// What the state means, for text.
    fn meaning(&self) -> &'static str {
        match (self.role, self.state) {
            (_, "unpublished") => "claimed, not published",
            (_, "unfreed") => "claimed, slot not freed",
            (_, "passed") => "passed after the stall bound, still holds the slot",
            ("writer", _) => "writing its next value",
            (_, "writing") => "writing its slot",
            _ => "claimed, slot not taken yet",
        }
    }

    /// What its position is called.
    fn noun(&self) -> &'static str {
        match self.role {
            "producer" => "sequence",
            "writer" => "cell",
            _ => "position",
        }
    }
}

impl From<QueueHold> for Held {
    fn from(h: QueueHold) -> Held {
        Held {
            index: h.index as usize,
            pid: h.pid,
            role: match h.role {
                Role::Sender => "sender",
                Role::Receiver => "receiver",
            },
            position: h.position,
            state: match h.state {
                HoldState::Unpublished => "unpublished",
                HoldState::Unfreed => "unfreed",
                HoldState::Passed => "passed",
            },
        }
    }
}

impl From<CellHold> for Held {
    fn from(h: CellHold) -> Held {
        Held {
            index: h.index,
            pid: h.pid,
            role: "writer",
            position: h.cell as u64,
            state: "writing",
        }
    }
}

impl From<ProducerHold> for Held {
    fn from(h: ProducerHold) -> Held {
        Held {
            index: h.index,
            pid: h.pid,
            role: "producer",
            position: h.seq,
            state: if h.writing { "writing" } else { "claimed" },
        }
    }
}

/// A stalled participant as `info --json` reports it.
#[derive(Serialize, Debug, Clone, PartialEq)]
pub(crate) struct StallOut {
    pub(crate) index: usize,
    pub(crate) pid: u32,
    /// "sender", "receiver" (queue), "producer" (bus) or "writer" (board).
    pub(crate) role: &'static str,
    /// The queue position, bus sequence or board cell it holds.
    pub(crate) position: u64,
    /// "unpublished", "unfreed" or "passed" (queue); "writing" or "claimed" (bus); "writing"
    /// (board).
    pub(crate) state: &'static str,
    /// It held the position at two looks this far apart (ms): at least this long.
    pub(crate) held_ms_at_least: f64,
}

impl StallOut {
    /// `pid 12 sender #3 holds position 17 (claimed, not published) for at least 200ms`.
    pub(crate) fn line(&self) -> String {
        let held = Held {
            index: self.index,
            pid: self.pid,
            role: self.role,
            position: self.position,
            state: self.state,
        };
        format!(
            "{} for at least {}",
            describe(&held),
            text::duration(Duration::from_secs_f64(self.held_ms_at_least / 1e3))
        )
    }
}

/// `pid 12 sender #3 holds position 17 (claimed, not published)`.
fn describe(h: &Held) -> String {
    format!(
        "pid {} {} #{} holds {} {} ({})",
        h.pid,
        h.role,
        h.index,
        h.noun(),
        h.position,
        h.meaning()
    )
}

/// The holds of `second` that `first` saw too, `apart` later: held at least that long.
pub(crate) fn persisting(first: &[Held], second: Vec<Held>, apart: Duration) -> Vec<StallOut> {
    second
        .into_iter()
        .filter(|h| first.iter().any(|f| f.same(h)))
        .map(|h| StallOut {
            index: h.index,
            pid: h.pid,
            role: h.role,
            position: h.position,
            state: h.state,
            held_ms_at_least: apart.as_secs_f64() * 1e3,
        })
        .collect()
}

/// Looks at the holds, and if there are any, again `sample` later: the holds seen both times.
/// Returns at once when the first look finds none (no participant is mid-operation).
pub(crate) fn sample(sample: Duration, look: impl Fn() -> Vec<Held>) -> Vec<StallOut> {
    let first = look();
    if first.is_empty() {
        return Vec::new();
    }
    let t0 = Instant::now();
    std::thread::sleep(sample);
    let second = look();
    persisting(&first, second, t0.elapsed())
}

/// `watch`'s memory of holds: when each was first seen.
#[derive(Debug, Default)]
pub(crate) struct Tracker {
    seen: HashMap<(usize, u32, &'static str, u64), Instant>,
}

impl Tracker {
    /// Takes a look at `now`: each hold with how long it has been seen, longest first. A hold
    /// no longer there is forgotten.
    pub(crate) fn observe(&mut self, holds: Vec<Held>, now: Instant) -> Vec<(Held, Duration)> {
        let key = |h: &Held| (h.index, h.pid, h.role, h.position);
        let mut next = HashMap::with_capacity(holds.len());
        let mut out: Vec<(Held, Duration)> = holds
            .into_iter()
            .map(|h| {
                let since = *self.seen.get(&key(&h)).unwrap_or(&now);
                next.insert(key(&h), since);
                (h, now.saturating_duration_since(since))
            })
            .collect();
        self.seen = next;
        out.sort_by_key(|h| std::cmp::Reverse(h.1));
        out
    }
}

/// `watch`'s stall line: the longest hold (and how many others), or `None` when nothing is
/// held for longer than one look.
pub(crate) fn watch_line(holds: &[(Held, Duration)]) -> Option<String> {
    let long: Vec<&(Held, Duration)> = holds.iter().filter(|(_, d)| !d.is_zero()).collect();
    let (h, d) = long.first()?;
    let more = match long.len() - 1 {
        0 => String::new(),
        n => format!(" (+{n} more)"),
    };
    Some(format!("{} for {}{more}", describe(h), text::duration(*d)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn held(index: usize, position: u64, state: &'static str) -> Held {
        Held {
            index,
            pid: 40 + index as u32,
            role: "sender",
            position,
            state,
        }
    }

    #[test]
    fn only_holds_seen_at_both_looks_are_stalls() {
        let first = [held(1, 7, "unpublished"), held(2, 9, "unpublished")];
        let second = vec![
            held(1, 7, "passed"),
            held(2, 10, "unpublished"),
            held(3, 11, "unpublished"),
        ];
        let out = persisting(&first, second, Duration::from_millis(250));
        assert_eq!(out.len(), 1, "{out:?}");
        assert_eq!((out[0].index, out[0].state), (1, "passed"));
        assert_eq!(out[0].held_ms_at_least, 250.0);
        assert_eq!(
            out[0].line(),
            "pid 41 sender #1 holds position 7 (passed after the stall bound, still holds the \
             slot) for at least 250ms"
        );
    }

    #[test]
    fn the_tracker_ages_a_hold_from_its_first_sight_and_forgets_it_when_it_ends() {
        let mut t = Tracker::default();
        let t0 = Instant::now();
        let a = t.observe(vec![held(1, 7, "unpublished")], t0);
        assert_eq!(a[0].1, Duration::ZERO);
        assert_eq!(watch_line(&a), None, "one look is no stall");
        let b = t.observe(
            vec![held(1, 7, "passed"), held(2, 3, "unfreed")],
            t0 + Duration::from_secs(2),
        );
        assert_eq!(b[0].1, Duration::from_secs(2));
        assert_eq!(
            watch_line(&b).as_deref(),
            Some(
                "pid 41 sender #1 holds position 7 (passed after the stall bound, still holds \
                 the slot) for 2.0s"
            )
        );
        t.observe(Vec::new(), t0 + Duration::from_secs(3));
        let c = t.observe(vec![held(1, 7, "passed")], t0 + Duration::from_secs(4));
        assert_eq!(
            c[0].1,
            Duration::ZERO,
            "a hold that ended and came back is new"
        );
    }
}
