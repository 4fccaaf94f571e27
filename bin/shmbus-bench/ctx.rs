//! What every measurement needs: the clock, the usable cores, the run's size, and the progress
//! of its steps.

use std::time::Duration;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::c2c;
use crate::clock::ClockKind;
use crate::report::Report;
use crate::sys;

/// What every measurement needs: the clock, the usable cores, the run size, the progress bar.
pub struct Ctx {
    pub clock: ClockKind,
    /// Nanoseconds per clock tick.
    pub scale: f64,
    pub quick: bool,
    /// Usable cores, read before any pinning.
    pub cores: Vec<usize>,
    bar: ProgressBar,
    /// The machine's runnable tasks, sampled for each step.
    load: sys::LoadWatch,
}

impl Ctx {
    pub fn new(quick: bool) -> Ctx {
        let cores = sys::available_cores();
        let clock = ClockKind::detect();
        let bar = ProgressBar::with_draw_target(Some(0), ProgressDrawTarget::stderr());
        bar.set_style(
            ProgressStyle::with_template("{spinner} [{elapsed}] {bar:30} {pos}/{len} {msg}")
                .expect("constant template is valid"),
        );
        bar.enable_steady_tick(Duration::from_millis(200));
        Ctx {
            scale: clock.ns_per_tick(),
            clock,
            quick,
            cores,
            bar,
            load: sys::LoadWatch::start(),
        }
    }

    /// Round trips for a c2c pair.
    pub fn c2c_sizes(&self) -> c2c::Sizes {
        if self.quick {
            c2c::Sizes {
                warmup: 200,
                iters: 2_000,
            }
        } else {
            c2c::Sizes {
                warmup: 20_000,
                iters: 200_000,
            }
        }
    }

    /// `full` in a normal run, `quick` with `--quick`.
    pub fn size(&self, full: u64, quick: u64) -> u64 {
        if self.quick {
            quick
        } else {
            full
        }
    }

    /// Ends the run's progress bar.
    pub fn finish(&self) {
        self.bar.finish_and_clear();
    }

    pub fn steps(&self, n: u64) {
        self.bar.set_length(n);
    }

    /// Runs one step of the run: shows it on the progress bar, then records the load it ran
    /// under and marks its rows oversubscribed if the machine (or the workload) had more busy
    /// processes than usable cores.
    pub fn step(
        &self,
        report: &mut Report,
        what: &str,
        measure: impl FnOnce(&mut Report) -> Result<(), String>,
    ) -> Result<(), String> {
        self.bar.set_message(what.to_owned());
        self.bar.inc(1);
        let before = report.counts();
        self.load.take();
        measure(report)?;
        report.end_step(what, before, self.load.take(), self.cores.len());
        Ok(())
    }

    /// The first two usable cores, or an error saying the run needs two.
    pub fn pair(&self, asked: &[usize]) -> Result<[usize; 2], String> {
        match asked {
            [a, b] if a != b => {
                sys::check_cores(&[*a, *b])?;
                Ok([*a, *b])
            }
            [] if self.cores.len() >= 2 => Ok([self.cores[0], self.cores[1]]),
            [] => Err(format!(
                "this needs 2 cores and this process may use {}: {:?}",
                self.cores.len(),
                self.cores
            )),
            _ => Err("--cores takes two different cores: producer,consumer".into()),
        }
    }
}
