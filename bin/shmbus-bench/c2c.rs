//! Core-to-core latency: the floor under any shared-memory transport. One 64-byte line is bounced
//! between two pinned cores: the pinger stores an odd number, the echo answers with the next even
//! one. One-way = round trip / 2. Between two threads of this process, and between two processes
//! mapping the same page of /dev/shm.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use crate::clock::ClockKind;
use crate::report::{C2cRow, Curve, Report};
use crate::stats::{histogram, TickSummary};
use crate::sys::{self, spin_until, Peer};

/// The value that tells an echo to stop (no run sends that many pings).
const STOP: u64 = u64::MAX;
/// Word of the shared page where a child echo says it is ready (its own cache line).
const READY_WORD: usize = 16;

/// A cache line alone on its 64 bytes.
#[repr(align(64))]
struct Line(AtomicU64);

/// The pinger: `warmup + iters` round trips, the last `iters` timed one by one.
fn ping(
    line: &AtomicU64,
    warmup: u64,
    iters: u64,
    clock: ClockKind,
    mut alive: impl FnMut() -> bool,
) -> Result<TickSummary, String> {
    let mut h = histogram();
    let mut t = clock.now();
    for i in 0..warmup + iters {
        let v = 2 * i + 1;
        // ORDERING: Release/Acquire pairs with the echo's; the value is the whole message.
        line.store(v, Ordering::Release);
        spin_until(
            "the c2c echo",
            || line.load(Ordering::Acquire) == v + 1,
            &mut alive,
        )?;
        let t2 = clock.now();
        if i >= warmup {
            h.saturating_record(t2.wrapping_sub(t));
        }
        t = t2;
    }
    Ok(TickSummary::of(&h))
}

/// The echo: answers every odd value with the next one, until [`STOP`].
fn echo(line: &AtomicU64) {
    let mut expect = 1;
    loop {
        let v = line.load(Ordering::Acquire);
        if v == STOP {
            return;
        }
        if v == expect {
            line.store(v + 1, Ordering::Release);
            expect += 2;
        } else {
            std::hint::spin_loop();
        }
    }
}

/// Round trips between two threads pinned to `a` (pinger, the calling thread) and `b`.
pub fn thread_rtt(
    a: usize,
    b: usize,
    warmup: u64,
    iters: u64,
    clock: ClockKind,
) -> Result<TickSummary, String> {
    let line = Line(AtomicU64::new(0));
    std::thread::scope(|s| {
        let echo_thread = s.spawn(|| {
            if sys::pin(b).is_ok() {
                echo(&line.0);
            }
        });
        let out = sys::pin(a)
            .and_then(|()| ping(&line.0, warmup, iters, clock, || !echo_thread.is_finished()));
        line.0.store(STOP, Ordering::Release);
        out
    })
}

/// A page of /dev/shm shared with a child process, removed when dropped.
pub struct SharedPage {
    path: PathBuf,
    map: memmap2::MmapMut,
    owner: bool,
}

impl SharedPage {
    const BYTES: usize = 4096;

    pub fn create() -> Result<SharedPage, String> {
        let (path, file) = sys::create_shm_file("c2c", Self::BYTES as u64)?;
        SharedPage::map(path, &file, true)
    }

    pub fn open(path: &Path) -> Result<SharedPage, String> {
        let file = sys::open_shm_file(path)?;
        let len = file.metadata().map(|m| m.len()).unwrap_or(0);
        if len < Self::BYTES as u64 {
            return Err(format!("{} is {len} bytes, expected 4096", path.display()));
        }
        SharedPage::map(path.to_owned(), &file, false)
    }

    fn map(path: PathBuf, file: &std::fs::File, owner: bool) -> Result<SharedPage, String> {
        // SAFETY: the file is ours (created 0600 by this run, or handed to a child of it), sized
        // to BYTES before mapping (checked by `open`) and never truncated while mapped; all access goes through atomics.
        let map = unsafe { memmap2::MmapOptions::new().len(Self::BYTES).map_mut(file) }
            .map_err(|e| format!("cannot map {}: {e}", path.display()))?;
        Ok(SharedPage { path, map, owner })
    }

    /// The page's file, for a child process that maps it too.
    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn word(&self, i: usize) -> &AtomicU64 {
        assert!(i < Self::BYTES / 8, "word {i} is outside the shared page");
        // SAFETY: the mapping is page-aligned, so word `i` (checked in bounds above) is 8-byte
        // aligned; it lives as long as `self`; both processes only ever access it atomically.
        unsafe { AtomicU64::from_ptr(self.map.as_ptr().add(i * 8).cast::<u64>().cast_mut()) }
    }

    /// Starts an echo child playing `role` on this page, pinned to core `b`; pins this process
    /// to core `a`; returns once the echo has set word `ready` to 1.
    pub fn start_echo(
        &self,
        what: &str,
        role: &str,
        [a, b]: [usize; 2],
        ready: usize,
    ) -> Result<Peer, String> {
        let mut echo = Peer::spawn(
            what,
            &[
                role.into(),
                "--shm".into(),
                self.path.display().to_string(),
                "--core".into(),
                b.to_string(),
            ],
        )?;
        sys::pin(a)?;
        spin_until(
            &format!("{what} to start"),
            || self.word(ready).load(Ordering::Acquire) == 1,
            || !echo.exited(),
        )?;
        Ok(echo)
    }
}

impl Drop for SharedPage {
    fn drop(&mut self) {
        if self.owner {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

/// Round trips between this process (pinger, pinned to `a`) and a child process pinned to `b`.
pub fn process_rtt(
    a: usize,
    b: usize,
    warmup: u64,
    iters: u64,
    clock: ClockKind,
) -> Result<TickSummary, String> {
    let page = SharedPage::create()?;
    let mut child = page.start_echo("the c2c echo process", "c2c", [a, b], READY_WORD)?;
    let out = ping(page.word(0), warmup, iters, clock, || !child.exited());
    page.word(0).store(STOP, Ordering::Release);
    out
}

/// The child's side of [`process_rtt`].
pub fn child(shm: &Path, core: usize) -> Result<(), String> {
    let page = SharedPage::open(shm)?;
    sys::pin(core)?;
    page.word(READY_WORD).store(1, Ordering::Release);
    echo(page.word(0));
    Ok(())
}

/// Round trips for one pair of cores.
pub struct Sizes {
    pub warmup: u64,
    pub iters: u64,
}

/// Measures thread and process c2c for every pair of `cores` into `report` (skipping pairs
/// already measured), with their curves.
pub fn measure(
    report: &mut Report,
    cores: &[usize],
    sizes: &Sizes,
    clock: ClockKind,
    scale: f64,
) -> Result<(), String> {
    for (i, &a) in cores.iter().enumerate() {
        for &b in &cores[i + 1..] {
            if report.c2c_for(a, b).is_some() {
                continue;
            }
            let t = thread_rtt(a, b, sizes.warmup, sizes.iters, clock)?;
            let p = process_rtt(a, b, sizes.warmup, sizes.iters, clock)?;
            // Round trips in ticks to one-way nanoseconds.
            let one_way = scale / 2.0;
            for (mode, s) in [("thread", t), ("process", p)] {
                report.c2c.push(C2cRow {
                    mode,
                    cores: [a, b],
                    one_way_ns: s.to_ns(one_way),
                });
                report.curves.push(Curve {
                    label: format!("c2c {mode} {a}-{b}"),
                    points: s.curve_ns(one_way),
                });
            }
        }
    }
    Ok(())
}

/// Ensures the process c2c of `a`-`b` is in `report` (for ratios); nothing for `a == b`.
pub fn ensure_pair(
    report: &mut Report,
    a: usize,
    b: usize,
    sizes: &Sizes,
    clock: ClockKind,
    scale: f64,
) -> Result<(), String> {
    if a == b {
        return Ok(());
    }
    measure(report, &[a, b], sizes, clock, scale)
}
