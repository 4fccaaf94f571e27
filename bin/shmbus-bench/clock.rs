//! Timestamps that mean the same in every process: the TSC when it is invariant, else
//! `CLOCK_MONOTONIC`. Processes exchange raw ticks; only the parent converts them to nanoseconds.

use serde::Serialize;

/// Which counter stamps are read from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ClockKind {
    /// The time-stamp counter (invariant: constant rate, never stops).
    Tsc,
    /// `CLOCK_MONOTONIC` in nanoseconds.
    Mono,
}

impl ClockKind {
    /// The TSC if /proc/cpuinfo says it is invariant (`constant_tsc` and `nonstop_tsc`) on an
    /// x86-64 machine, else `CLOCK_MONOTONIC`.
    pub fn detect() -> ClockKind {
        let invariant = cfg!(target_arch = "x86_64")
            && std::fs::read_to_string("/proc/cpuinfo").is_ok_and(|s| {
                s.lines().find(|l| l.starts_with("flags")).is_some_and(|l| {
                    let has = |f: &str| l.split_whitespace().any(|w| w == f);
                    has("constant_tsc") && has("nonstop_tsc")
                })
            });
        if invariant {
            ClockKind::Tsc
        } else {
            ClockKind::Mono
        }
    }

    pub fn describe(self) -> &'static str {
        match self {
            ClockKind::Tsc => "TSC (invariant: constant_tsc + nonstop_tsc), calibrated by quanta",
            ClockKind::Mono => "CLOCK_MONOTONIC (the TSC is not invariant here)",
        }
    }

    pub fn arg(self) -> &'static str {
        match self {
            ClockKind::Tsc => "tsc",
            ClockKind::Mono => "mono",
        }
    }

    /// A raw stamp; comparable between processes of this machine.
    #[inline(always)]
    pub fn now(self) -> u64 {
        match self {
            ClockKind::Tsc => tsc(),
            ClockKind::Mono => monotonic_ns(),
        }
    }

    /// Nanoseconds per tick (1 for `CLOCK_MONOTONIC`). Calibrating the TSC takes up to 200 ms.
    pub fn ns_per_tick(self) -> f64 {
        match self {
            ClockKind::Tsc => {
                let c = quanta::Clock::new();
                const SPAN: u64 = 1 << 40;
                c.delta_as_nanos(0, SPAN) as f64 / SPAN as f64
            }
            ClockKind::Mono => 1.0,
        }
    }
}

#[cfg(target_arch = "x86_64")]
#[inline(always)]
fn tsc() -> u64 {
    // SAFETY: RDTSC exists on every x86-64 CPU and only reads the time-stamp counter.
    #[allow(unused_unsafe)]
    unsafe {
        core::arch::x86_64::_rdtsc()
    }
}

#[cfg(not(target_arch = "x86_64"))]
#[inline(always)]
fn tsc() -> u64 {
    monotonic_ns()
}

#[inline(always)]
fn monotonic_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec for the duration of the call.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}
