//! `--stop-every-ms`: the parent freezes a random participant with SIGSTOP and continues it with
//! SIGCONT after a log-uniform 1 ms ..= `--max-stop-ms` (most stops short, some past the stall
//! bound), never all of one role at once; and it watches how long the participants left running
//! go without progress while they have work (docs/design.md §6 "The stall bound", §11).
//!
//! Each child owns one line of a shared page ([`ProgressLine`]) and stores there a progress
//! counter, whether it is pausing on purpose (the soak's random consumer stalls) and whether it
//! is inside a send. The parent samples the lines about every millisecond ([`Watch`]); a *stall*
//! is a run of samples in which a watched party could have moved and did not. Each stall is then
//! charged to the stops during which it began ([`StallFigures`]).

use std::process::Child;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use shmbus_testkit::payload::Rng;

use crate::c2c::SharedPage;

/// Sends `sig` to a child we have not reaped (so its pid names no other process).
pub fn signal(child: &Child, sig: Signal) -> Result<(), String> {
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(child.id() as i32), sig)
        .map_err(|e| format!("{sig} to child {}: {e}", child.id()))
}

/// What a stopped child is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// A bus producer.
    Producer,
    /// A queue sender.
    Sender,
    /// A queue receiver.
    Receiver,
}

/// One SIGSTOP and its SIGCONT.
#[derive(Clone, Copy, Debug)]
pub struct StopEvent {
    pub role: Role,
    pub start: Instant,
    /// When it was continued (or killed); `None` while stopped.
    pub end: Option<Instant>,
}

/// The stop schedule: which children are stopped, until when.
pub struct Stopper {
    /// Zero: never stop anybody.
    every: Duration,
    max_stop_ms: u64,
    rng: Rng,
    next: Instant,
    /// Beside the caller's children, index for index: the role of each.
    roles: Vec<Role>,
    /// Beside the caller's children: until when each is stopped, and its event.
    stopped: Vec<Option<(Instant, usize)>>,
    pub events: Vec<StopEvent>,
}

impl Stopper {
    pub fn new(every_ms: u64, max_stop_ms: u64, seed: u64) -> Stopper {
        let mut s = Stopper {
            every: Duration::from_millis(every_ms),
            max_stop_ms: max_stop_ms.max(1),
            rng: Rng(seed ^ 0x5709_5709),
            next: Instant::now(),
            roles: Vec::new(),
            stopped: Vec::new(),
            events: Vec::new(),
        };
        s.next = Instant::now() + s.jittered();
        s
    }

    /// The next gap between stops: uniform in [every/2, 3·every/2).
    fn jittered(&mut self) -> Duration {
        let ms = self.every.as_millis() as u64;
        Duration::from_micros(ms * 500 + self.rng.below(ms * 1000 + 1))
    }

    /// A stop length, log-uniform between 1 ms and `max_stop_ms`: as many stops between 1 and
    /// 10 ms as between 100 ms and 1 s.
    fn stop_length(&mut self) -> Duration {
        let u = (self.rng.next() >> 11) as f64 / (1u64 << 53) as f64;
        Duration::from_micros((1000.0 * (self.max_stop_ms as f64).powf(u)) as u64)
    }

    /// A child was added at the end of the caller's list.
    pub fn push(&mut self, role: Role) {
        self.roles.push(role);
        self.stopped.push(None);
    }

    /// The caller swap-removes child `i` (killed): its stop, if any, ends now.
    pub fn swap_remove(&mut self, i: usize) {
        self.roles.swap_remove(i);
        if let Some((_, e)) = self.stopped.swap_remove(i) {
            self.events[e].end = Some(Instant::now());
        }
    }

    pub fn is_stopped(&self, i: usize) -> bool {
        self.stopped.get(i).is_some_and(|s| s.is_some())
    }

    /// Continues each child whose stop has run out; then, when due, stops a random running child
    /// whose role keeps another running one.
    pub fn tick(&mut self, kids: &[Child]) -> Result<(), String> {
        let now = Instant::now();
        for (i, kid) in kids.iter().enumerate() {
            if let Some((until, e)) = self.stopped[i] {
                if until <= now {
                    signal(kid, Signal::SIGCONT)?;
                    self.events[e].end = Some(Instant::now());
                    self.stopped[i] = None;
                }
            }
        }
        if self.every.is_zero() || now < self.next {
            return Ok(());
        }
        self.next = now + self.jittered();
        let running = |r: Role, s: &Stopper| {
            (0..s.roles.len())
                .filter(|&j| s.roles[j] == r && s.stopped[j].is_none())
                .count()
        };
        let candidates: Vec<usize> = (0..self.roles.len())
            .filter(|&i| self.stopped[i].is_none() && running(self.roles[i], self) >= 2)
            .collect();
        if candidates.is_empty() {
            return Ok(());
        }
        let i = candidates[self.rng.below(candidates.len() as u64) as usize];
        let length = self.stop_length();
        signal(&kids[i], Signal::SIGSTOP)?;
        let start = Instant::now();
        self.events.push(StopEvent {
            role: self.roles[i],
            start,
            end: None,
        });
        self.stopped[i] = Some((start + length, self.events.len() - 1));
        Ok(())
    }

    /// Continues every stopped child (the end of the soak).
    pub fn continue_all(&mut self, kids: &[Child]) -> Result<(), String> {
        for (i, kid) in kids.iter().enumerate() {
            if let Some((_, e)) = self.stopped[i].take() {
                signal(kid, Signal::SIGCONT)?;
                self.events[e].end = Some(Instant::now());
            }
        }
        Ok(())
    }
}

/// Words of a child's line on the progress page (8 words, one cache line each).
const LINE_WORDS: usize = 8;
/// Progress counter + 1 (0: not started).
const W_PROGRESS: usize = 0;
/// 1 while the child pauses on purpose (a random consumer stall).
const W_PAUSED: usize = 1;
/// 1 while a sender is inside `send`.
const W_BUSY: usize = 2;
/// Lines on the page.
pub const LINES: usize = 4096 / 8 / LINE_WORDS;

/// A child's line of the progress page. The words carry no data for anyone to read after them,
/// so every access is Relaxed: the parent only needs each store to become visible eventually,
/// and a late one makes a stall look at most one sample longer.
pub struct ProgressLine {
    page: SharedPage,
    line: usize,
}

impl ProgressLine {
    pub fn open(path: &std::path::Path, line: usize) -> Result<ProgressLine, String> {
        if line >= LINES {
            return Err(format!("progress line {line} is beyond the page's {LINES}"));
        }
        Ok(ProgressLine {
            page: SharedPage::open(path)?,
            line,
        })
    }

    fn word(&self, w: usize) -> &AtomicU64 {
        self.page.word(self.line * LINE_WORDS + w)
    }

    /// The child has made progress up to `count` (a subscriber's next sequence, a sender's
    /// sends).
    #[inline]
    pub fn progress(&self, count: u64) {
        self.word(W_PROGRESS).store(count + 1, Ordering::Relaxed);
    }

    pub fn paused(&self, on: bool) {
        self.word(W_PAUSED).store(on as u64, Ordering::Relaxed);
    }

    #[inline]
    pub fn busy(&self, on: bool) {
        self.word(W_BUSY).store(on as u64, Ordering::Relaxed);
    }
}

/// The parent's view of the progress page.
pub struct Page(pub SharedPage);

/// What one line says now.
pub struct LineState {
    /// The progress counter, `None` before the child started.
    pub progress: Option<u64>,
    pub paused: bool,
    pub busy: bool,
}

impl Page {
    pub fn create() -> Result<Page, String> {
        Ok(Page(SharedPage::create()?))
    }

    pub fn path(&self) -> &std::path::Path {
        self.0.path()
    }

    pub fn line(&self, line: usize) -> LineState {
        // ORDERING: Relaxed, see `ProgressLine`.
        let w = |i| self.0.word(line * LINE_WORDS + i).load(Ordering::Relaxed);
        LineState {
            progress: w(W_PROGRESS).checked_sub(1),
            paused: w(W_PAUSED) != 0,
            busy: w(W_BUSY) != 0,
        }
    }
}

/// Whose stall a [`Stall`] is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Party {
    /// A bus subscriber: a sequence it had not read was claimed (the cursor was past it).
    Subscriber,
    /// The queue's receivers: an item was claimed by a sender (tail > head), a receiver was
    /// running, and the head did not move.
    Head,
    /// A queue sender, running and inside one `send` that did not return while the queue had
    /// room.
    Sender,
}

/// A run of samples in which a party could have moved and did not.
#[derive(Clone, Copy, Debug)]
pub struct Stall {
    pub party: Party,
    /// The sample before the first that saw it stuck (where it had last moved).
    pub earliest: Instant,
    /// The first sample that saw it stuck.
    pub seen: Instant,
    /// The first sample that saw it move again (or stop being able to).
    pub end: Instant,
}

impl Stall {
    /// Its length, from the sample before it was seen stuck to the first that saw it move:
    /// within one sample period of the stall's.
    pub fn length(&self) -> Duration {
        self.end - self.earliest
    }
}

/// One watched party.
struct Track {
    party: Party,
    last: Option<u64>,
    stuck: Option<(Instant, Instant)>,
}

/// The parent's samples of every watched party, and the stalls found.
pub struct Watch {
    tracks: Vec<Track>,
    prev: Instant,
    pub stalls: Vec<Stall>,
    /// The longest time between two samples (how coarse the figures can be).
    pub longest_gap: Duration,
}

impl Watch {
    pub fn new() -> Watch {
        Watch {
            tracks: Vec::new(),
            prev: Instant::now(),
            stalls: Vec::new(),
            longest_gap: Duration::ZERO,
        }
    }

    /// Adds a party; returns its track number.
    pub fn add(&mut self, party: Party) -> usize {
        self.tracks.push(Track {
            party,
            last: None,
            stuck: None,
        });
        self.tracks.len() - 1
    }

    /// Starts a sample taken at `now`; call [`Watch::observe`] for each track, then
    /// [`Watch::end_sample`].
    pub fn begin_sample(&mut self) -> (Instant, Instant) {
        let now = Instant::now();
        self.longest_gap = self.longest_gap.max(now - self.prev);
        (self.prev, now)
    }

    pub fn end_sample(&mut self, now: Instant) {
        self.prev = now;
    }

    /// Track `t` is at `progress` and, if `waiting`, could move (running, with work).
    pub fn observe(
        &mut self,
        t: usize,
        (prev, now): (Instant, Instant),
        progress: u64,
        waiting: bool,
    ) {
        let tr = &mut self.tracks[t];
        let moved = tr.last != Some(progress);
        tr.last = Some(progress);
        let stuck = !moved && waiting;
        match tr.stuck {
            Some(_) if stuck => {}
            Some((earliest, seen)) => {
                tr.stuck = None;
                self.stalls.push(Stall {
                    party: tr.party,
                    earliest,
                    seen,
                    end: now,
                });
            }
            // It did not move since the previous sample, where it last had: the stall began
            // then at the earliest (its last move was at most one sample before).
            None if stuck => tr.stuck = Some((prev, now)),
            None => {}
        }
    }

    /// Closes the stalls still open (the end of the soak), so that a wedge shows.
    pub fn close(&mut self) {
        let now = Instant::now();
        for tr in &mut self.tracks {
            if let Some((earliest, seen)) = tr.stuck.take() {
                self.stalls.push(Stall {
                    party: tr.party,
                    earliest,
                    seen,
                    end: now,
                });
            }
        }
    }
}

/// Percentiles of a list of milliseconds.
#[derive(Clone, Copy, Debug, Default, serde::Serialize)]
pub struct Dist {
    pub n: usize,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
}

impl Dist {
    fn of(mut v: Vec<f64>) -> Dist {
        if v.is_empty() {
            return Dist::default();
        }
        v.sort_by(f64::total_cmp);
        let at = |q: f64| v[((v.len() - 1) as f64 * q).round() as usize];
        Dist {
            n: v.len(),
            p50_ms: at(0.5),
            p99_ms: at(0.99),
            max_ms: at(1.0),
        }
    }
}

/// The stall figures of the stops of one role.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct StallFigures {
    /// Stops of that role.
    pub stops: usize,
    /// Stops that stalled a watched party (for at least one sample).
    pub stalling_stops: usize,
    /// Per stop, the longest stall of a watched party that began during it (0 for none): over
    /// every stop.
    pub per_stop: Dist,
    /// The same, over the stops that lasted longer than the stall bound.
    pub per_stop_past_bound: Dist,
    /// Stops whose figure exceeds the target (bound + 10 ms).
    pub over_target: usize,
    /// Each stop's start (since the first stop of any role), length and figure, in ms.
    pub each: Vec<[f64; 3]>,
}

/// How long before a stop a stall it is charged with may have been seen: a stop that lands in a
/// write held mid-way (`soak::HOLD`, 1 ms) finds its stall already begun.
const EARLY: Duration = Duration::from_millis(5);

/// The longest stall of `party` that began during each stop of `role` (or at most [`EARLY`]
/// before it).
pub fn figures(
    events: &[StopEvent],
    stalls: &[Stall],
    role: Role,
    party: Party,
    bound: Option<Duration>,
) -> StallFigures {
    let target = bound.map(|b| b + Duration::from_millis(10));
    let mut all = Vec::new();
    let mut past = Vec::new();
    let mut f = StallFigures::default();
    let end_of_run = Instant::now();
    let origin = events.first().map_or(end_of_run, |e| e.start);
    for e in events.iter().filter(|e| e.role == role) {
        let end = e.end.unwrap_or(end_of_run);
        let worst = stalls
            .iter()
            .filter(|s| s.party == party && s.seen + EARLY >= e.start && s.earliest <= end)
            .map(Stall::length)
            .max()
            .unwrap_or_default();
        f.stops += 1;
        f.stalling_stops += usize::from(!worst.is_zero());
        if target.is_some_and(|t| worst > t) {
            f.over_target += 1;
        }
        let ms = worst.as_nanos() as f64 / 1e6;
        all.push(ms);
        f.each.push([
            (e.start - origin).as_nanos() as f64 / 1e6,
            (end - e.start).as_nanos() as f64 / 1e6,
            ms,
        ]);
        if bound.is_some_and(|b| end - e.start > b) {
            past.push(ms);
        }
    }
    f.per_stop = Dist::of(all);
    f.per_stop_past_bound = Dist::of(past);
    f
}

/// The longest stall of `party` during which nobody was stopped: what the machine alone did.
pub fn longest_unstopped(events: &[StopEvent], stalls: &[Stall], party: Party) -> f64 {
    let end_of_run = Instant::now();
    stalls
        .iter()
        .filter(|s| s.party == party)
        .filter(|s| {
            !events
                .iter()
                .any(|e| e.start <= s.end && e.end.unwrap_or(end_of_run) >= s.earliest)
        })
        .map(|s| s.length().as_nanos() as f64 / 1e6)
        .fold(0.0, f64::max)
}

/// A stall bound as text: "1000 ms", or "none".
pub fn bound_text(bound: Option<Duration>) -> String {
    bound.map_or("none".into(), |b| format!("{} ms", b.as_millis()))
}

/// The stall figures of a soak: per stopped role, against the bound.
pub struct Summary {
    bound: Option<Duration>,
    /// (what, stops of that role, that role's figures).
    parts: Vec<(&'static str, usize, StallFigures)>,
    /// (what, the longest stall of that party while nobody was stopped, ms).
    unstopped: Vec<(&'static str, f64)>,
    sample_gap: Duration,
}

impl Summary {
    /// `parts`: (label, the role stopped, the party whose stalls are charged to its stops).
    pub fn new(
        events: &[StopEvent],
        watch: &Watch,
        bound: Option<Duration>,
        parts: &[(&'static str, Role, Party)],
    ) -> Summary {
        Summary {
            bound,
            parts: parts
                .iter()
                .map(|&(what, role, party)| {
                    let f = figures(events, &watch.stalls, role, party, bound);
                    (what, f.stops, f)
                })
                .collect(),
            unstopped: parts
                .iter()
                .map(|&(what, _, party)| (what, longest_unstopped(events, &watch.stalls, party)))
                .collect(),
            sample_gap: watch.longest_gap,
        }
    }

    pub fn json(&self) -> serde_json::Value {
        let ms = |d: Duration| d.as_secs_f64() * 1e3;
        serde_json::json!({
            "stall_bound_ms": self.bound.map(ms),
            "target_ms": self.bound.map(|b| ms(b) + 10.0),
            "longest_sample_gap_ms": ms(self.sample_gap),
            "roles": self.parts.iter().zip(&self.unstopped).map(|((what, _, f), (_, u))| {
                serde_json::json!({"what": what, "figures": f, "longest_while_none_stopped_ms": u})
            }).collect::<Vec<_>>(),
        })
    }

    pub fn print(&self) {
        println!(
            "  stall per stop (the longest time a running party had work and made no \
             progress, begun during the stop), bound {}, target bound + 10 ms, sampled every \
             ~1 ms (longest gap {:.1} ms):",
            bound_text(self.bound),
            self.sample_gap.as_secs_f64() * 1e3
        );
        let d = |d: &Dist| {
            format!(
                "p50 {:.1} p99 {:.1} max {:.1} ms over {}",
                d.p50_ms, d.p99_ms, d.max_ms, d.n
            )
        };
        for ((what, stops, f), (_, u)) in self.parts.iter().zip(&self.unstopped) {
            println!(
                "    {what}: {stops} stops, {} stalled someone; all stops {}; stops past the \
                 bound {}; over target {}; longest while nobody was stopped {u:.1} ms",
                f.stalling_stops,
                d(&f.per_stop),
                d(&f.per_stop_past_bound),
                f.over_target
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stall_is_charged_to_the_stop_it_began_in() {
        let t0 = Instant::now();
        let ms = |n| t0 + Duration::from_millis(n);
        let events = [
            StopEvent {
                role: Role::Producer,
                start: ms(10),
                end: Some(ms(2010)),
            },
            StopEvent {
                role: Role::Producer,
                start: ms(3000),
                end: Some(ms(3005)),
            },
        ];
        let stalls = [
            Stall {
                party: Party::Subscriber,
                earliest: ms(11),
                seen: ms(12),
                end: ms(1016),
            },
            // Before the second stop: charged to none.
            Stall {
                party: Party::Subscriber,
                earliest: ms(2500),
                seen: ms(2501),
                end: ms(2600),
            },
        ];
        let f = figures(
            &events,
            &stalls,
            Role::Producer,
            Party::Subscriber,
            Some(Duration::from_secs(1)),
        );
        assert_eq!((f.stops, f.stalling_stops, f.over_target), (2, 1, 0));
        assert_eq!(f.per_stop.max_ms, 1005.0);
        assert_eq!(
            (f.per_stop_past_bound.n, f.per_stop_past_bound.max_ms),
            (1, 1005.0)
        );
        assert_eq!(
            longest_unstopped(&events, &stalls, Party::Subscriber),
            100.0
        );
    }

    #[test]
    fn a_track_that_moves_or_cannot_move_ends_its_stall() {
        let mut w = Watch::new();
        let t = w.add(Party::Sender);
        let t0 = Instant::now();
        let ms = |n| t0 + Duration::from_millis(n);
        w.observe(t, (ms(0), ms(1)), 5, true);
        w.observe(t, (ms(1), ms(2)), 5, true);
        w.observe(t, (ms(2), ms(3)), 6, false);
        assert_eq!(w.stalls.len(), 1);
        assert_eq!(w.stalls[0].length(), Duration::from_millis(2));
        w.observe(t, (ms(3), ms(4)), 6, true);
        w.close();
        assert_eq!(w.stalls.len(), 2);
    }
}
