//! `shmbus watch NAME`: the live view of a bus or a records segment. This module samples it into a
//! [`WatchState`](crate::watch_view::WatchState); `watch_view` draws it.

use std::io::IsTerminal;
use std::time::{Duration, Instant};

use clap::Args;
use crossterm::event::{self, Event, KeyCode, KeyEventKind, KeyModifiers};
use shmbus::{inspect, LapPolicy};

use crate::activity::Activity;
use crate::kinds::{self, Feed, Step};
use crate::output::{self, CmdResult, Failure};
use crate::stalls::{self, Tracker};
use crate::watch_view::{self, WatchState};

#[derive(Args, Debug)]
pub(crate) struct WatchArgs {
    /// The bus, records segment, lanes or queue name.
    name: String,
    /// Time between rate samples, in milliseconds (50 to 60000).
    #[arg(long, value_name = "MS", default_value_t = 500,
          value_parser = clap::value_parser!(u64).range(50..=60_000))]
    interval_ms: u64,
}

/// Messages the sampler copies per screen refresh at most: enough for a good mean length,
/// little enough that watching a busy bus costs a small fraction of a core.
const SAMPLE_BUDGET: u32 = 2_000;
/// Screen refresh (and key poll) period.
const FRAME: Duration = Duration::from_millis(100);

pub(crate) fn run(args: &WatchArgs) -> CmdResult {
    // A sampler: after a lap it jumps to the newest message rather than replaying a backlog.
    let mut feed = kinds::of_segment(&args.name).feed(&args.name, LapPolicy::Newest, "watch")?;
    if !std::io::stdout().is_terminal() {
        return Err(Failure(
            "watch needs a terminal; in scripts use `shmbus hz NAME --json` for rates, or \
             `shmbus info NAME --json` for the state"
                .into(),
        ));
    }
    let mut state = feed.watch_state();
    let mut holds = Tracker::default();
    refresh(&mut state, feed.as_ref(), &mut holds);
    state.sample(Instant::now(), feed.counts().cursor, 0, 0);
    check_size()?;

    output::install_stop_handler_with_hangup()?;
    let mut terminal = ratatui::try_init()?;
    let result = event_loop(
        &mut terminal,
        feed.as_mut(),
        (&mut state, &mut holds),
        Duration::from_millis(args.interval_ms),
    );
    // Every way out of the loop (a key, a signal, an error) comes back here: leave the
    // alternate screen and show the cursor again before saying anything.
    let shown = terminal.show_cursor();
    let restored = ratatui::try_restore();
    shown?;
    result?;
    Ok(restored?)
}

/// A terminal with no rows or no columns has nowhere to draw: say so rather than show nothing.
fn check_size() -> CmdResult {
    match crossterm::terminal::size() {
        Ok((cols, rows)) if cols == 0 || rows == 0 => Err(Failure(format!(
            "the terminal is {cols}x{rows}: watch has nowhere to draw; resize it, or use \
             `shmbus hz` for rates as lines of text"
        ))),
        _ => Ok(()),
    }
}

fn event_loop(
    terminal: &mut ratatui::DefaultTerminal,
    feed: &mut dyn Feed,
    (state, holds): (&mut WatchState, &mut Tracker),
    interval: Duration,
) -> CmdResult {
    let mut next_sample = Instant::now() + interval;
    let (mut sampled, mut sampled_bytes) = (0u64, 0u64);
    // The write cursor, looked at every frame: when it last moved is when the last publish
    // was, to within a frame (the producers' own stamps are too coarse for that).
    let mut activity = Activity::default();
    while !output::stopped() {
        for _ in 0..SAMPLE_BUDGET {
            match feed.step() {
                Step::Item(len) => {
                    sampled += 1;
                    sampled_bytes += len as u64;
                }
                Step::Lost(lost) => state.sampler_lost += lost,
                Step::Empty => break,
            }
        }
        let now = Instant::now();
        state.last_publish = activity.observe("", feed.counts().cursor, now);
        if now >= next_sample {
            refresh(state, feed, holds);
            state.sample(now, feed.counts().cursor, sampled, sampled_bytes);
            (sampled, sampled_bytes) = (0, 0);
            next_sample = now + interval;
        }
        terminal.draw(|f| watch_view::render(f, state))?;
        if event::poll(FRAME)? {
            if let Event::Key(k) = event::read()? {
                let ctrl_c =
                    k.code == KeyCode::Char('c') && k.modifiers.contains(KeyModifiers::CONTROL);
                if k.kind == KeyEventKind::Press
                    && (matches!(k.code, KeyCode::Char('q') | KeyCode::Esc) || ctrl_c)
                {
                    return Ok(());
                }
            }
        }
    }
    Ok(())
}

/// Everything but the rates: header, producers, liveness, for records the bytes published, and
/// the participants holding a position (aged from the first refresh that saw each).
fn refresh(state: &mut WatchState, feed: &dyn Feed, holds: &mut Tracker) {
    state.stalled = stalls::watch_line(&holds.observe(feed.holds(), Instant::now()));
    let h = feed.header();
    let counts = feed.counts();
    state.published = counts.published;
    state.bytes_published = counts.bytes_published;
    state.creator_pid = h.creator_pid;
    state.creator_alive = inspect::creator_alive(&h);
    state.producers = counts.producers;
}
