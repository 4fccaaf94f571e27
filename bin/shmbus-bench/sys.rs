//! The machine and its processes: cores and pinning, unique names that clean up after themselves,
//! child processes (this same binary, re-executed), and bounded spin-waits.

use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Read};
use std::os::fd::AsRawFd;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStderr, ChildStdout, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// How long any wait on another process may take before the run gives up with an error.
pub const PEER_TIMEOUT: Duration = Duration::from_secs(30);

/// The cores this process may run on, in order, as they were at the first call (pinning a
/// thread narrows the process's own mask afterwards).
pub fn available_cores() -> Vec<usize> {
    static CORES: OnceLock<Vec<usize>> = OnceLock::new();
    CORES
        .get_or_init(|| {
            let mut ids: Vec<usize> = core_affinity::get_core_ids()
                .unwrap_or_default()
                .into_iter()
                .map(|c| c.id)
                .collect();
            ids.sort_unstable();
            ids
        })
        .clone()
}

/// Pins the calling thread to `core`.
pub fn pin(core: usize) -> Result<(), String> {
    if core_affinity::set_for_current(core_affinity::CoreId { id: core }) {
        Ok(())
    } else {
        Err(format!(
            "cannot pin to core {core}; this process may use cores {:?}",
            available_cores()
        ))
    }
}

/// Checks that every core asked for is one this process may use.
pub fn check_cores(cores: &[usize]) -> Result<(), String> {
    let avail = available_cores();
    match cores.iter().find(|c| !avail.contains(c)) {
        Some(c) => Err(format!(
            "core {c} is not available; this process may use cores {avail:?}"
        )),
        None => Ok(()),
    }
}

/// The CPU model from /proc/cpuinfo.
pub fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, v)| v.trim().to_owned())
        })
        .unwrap_or_else(|| "unknown CPU".to_owned())
}

/// A name no other run or test uses: tag, pid and a per-process counter.
/// Creates a new `/dev/shm` file of `len` bytes for the bench's own shared memory (c2c's page,
/// the floors' rings), mode 0600, named after `tag`; its creator removes it when done.
pub fn create_shm_file(tag: &str, len: u64) -> Result<(PathBuf, File), String> {
    let path = PathBuf::from(format!("/dev/shm/shmbus-bench.{}", unique_name(tag)));
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&path)
        .map_err(|e| format!("cannot create {}: {e}", path.display()))?;
    file.set_len(len)
        .map_err(|e| format!("cannot size {}: {e}", path.display()))?;
    Ok((path, file))
}

/// Opens, read-write, a file [`create_shm_file`] made (a child's side).
pub fn open_shm_file(path: &Path) -> Result<File, String> {
    OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .map_err(|e| format!("cannot open {}: {e}", path.display()))
}

pub fn unique_name(tag: &str) -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    format!(
        "bench-{tag}-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

/// Removes its bus from /dev/shm when dropped, also when the run fails.
pub struct BusGuard(pub String);

impl BusGuard {
    /// A fresh unique name, removed on drop.
    pub fn new(tag: &str) -> Self {
        BusGuard(unique_name(tag))
    }

    pub fn name(&self) -> &str {
        &self.0
    }
}

impl Drop for BusGuard {
    fn drop(&mut self) {
        let _ = shmbus::Bus::remove(&self.0);
    }
}

/// One child process running a role of this binary (`shmbus-bench __child ...`). It talks on its
/// stdout, one line at a time; dropping the handle kills the child if it still runs.
pub struct Peer {
    label: String,
    child: Child,
    stdout: BufReader<ChildStdout>,
    stderr: Option<ChildStderr>,
    said_ready: bool,
}

impl Peer {
    /// Starts `shmbus-bench __child <args>`.
    pub fn spawn(label: &str, args: &[String]) -> Result<Peer, String> {
        let exe = std::env::current_exe()
            .map_err(|e| format!("cannot find this program to start {label}: {e}"))?;
        let mut child = Command::new(exe)
            .arg("__child")
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| format!("cannot start {label}: {e}"))?;
        let stdout = child.stdout.take().expect("stdout was piped above");
        let stderr = child.stderr.take();
        Ok(Peer {
            label: label.to_owned(),
            child,
            stdout: BufReader::new(stdout),
            stderr,
            said_ready: false,
        })
    }

    /// The next line the child writes; an error saying why if it exits instead, or if it says
    /// nothing for [`PEER_TIMEOUT`].
    pub fn line(&mut self) -> Result<String, String> {
        self.wait_readable()?;
        let mut s = String::new();
        match self.stdout.read_line(&mut s) {
            Ok(n) if n > 0 => Ok(s.trim_end().to_owned()),
            Ok(_) => Err(self.failure()),
            Err(e) => Err(format!("{}: cannot read its output: {e}", self.label)),
        }
    }

    /// Waits until the child's output has something to read (children write whole lines).
    fn wait_readable(&mut self) -> Result<(), String> {
        if !self.stdout.buffer().is_empty() {
            return Ok(());
        }
        let mut p = libc::pollfd {
            fd: self.stdout.get_ref().as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        let deadline = Instant::now() + PEER_TIMEOUT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(format!(
                    "{} said nothing for {} s",
                    self.label,
                    PEER_TIMEOUT.as_secs()
                ));
            }
            // SAFETY: `p` is one valid pollfd for the duration of the call, and the count says 1.
            let n = unsafe { libc::poll(&mut p, 1, left.as_millis().min(60_000) as libc::c_int) };
            match n {
                n if n > 0 => return Ok(()),
                0 => continue,
                _ if std::io::Error::last_os_error().kind() == std::io::ErrorKind::Interrupted => {
                    continue
                }
                _ => {
                    return Err(format!(
                        "{}: cannot wait for its output: {}",
                        self.label,
                        std::io::Error::last_os_error()
                    ))
                }
            }
        }
    }

    /// Waits for the child's `ready` line.
    pub fn ready(&mut self) -> Result<(), String> {
        match self.line()? {
            l if l == "ready" => {
                self.said_ready = true;
                Ok(())
            }
            l => Err(format!("{}: expected `ready`, got `{l}`", self.label)),
        }
    }

    /// Whether [`Peer::ready`] has seen the child's `ready` line.
    pub fn is_ready(&self) -> bool {
        self.said_ready
    }

    /// Reads the child's result line as JSON of type `T`.
    pub fn result<T: serde::de::DeserializeOwned>(&mut self) -> Result<T, String> {
        let l = self.line()?;
        serde_json::from_str(&l).map_err(|e| format!("{}: bad result `{l}`: {e}", self.label))
    }

    /// Waits for the child to exit by itself; an error if it failed.
    pub fn finish(mut self) -> Result<(), String> {
        match self.child.wait() {
            Ok(s) if s.success() => Ok(()),
            Ok(_) => Err(self.failure()),
            Err(e) => Err(format!("{} vanished: {e}", self.label)),
        }
    }

    /// Whether the child has exited (without waiting).
    pub fn exited(&mut self) -> bool {
        !matches!(self.child.try_wait(), Ok(None))
    }

    /// The child ended its output: collect its error message and exit status.
    fn failure(&mut self) -> String {
        let status = self.child.wait();
        let mut err = String::new();
        if let Some(mut e) = self.stderr.take() {
            let _ = e.read_to_string(&mut err);
        }
        let err = err.trim();
        match status {
            Ok(s) if !err.is_empty() => format!("{} failed ({s}): {err}", self.label),
            Ok(s) => format!("{} exited early ({s})", self.label),
            Err(e) => format!("{} vanished: {e}", self.label),
        }
    }
}

impl Drop for Peer {
    fn drop(&mut self) {
        if !self.exited() {
            let _ = self.child.kill();
        }
        let _ = self.child.wait();
    }
}

/// In a child: ask the kernel to kill us when the parent dies, so no spinning child outlives an
/// interrupted run.
pub fn die_with_parent() {
    // SAFETY: PR_SET_PDEATHSIG takes a signal number and touches no memory of ours.
    unsafe {
        libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL as libc::c_ulong);
    }
}

/// Spins until `done()` holds, checking every few thousand rounds that neither `deadline` has
/// passed nor `alive()` turned false. `what` names the wait in the error.
#[inline]
pub fn spin_until(
    what: &str,
    mut done: impl FnMut() -> bool,
    mut alive: impl FnMut() -> bool,
) -> Result<(), String> {
    let deadline = Instant::now() + PEER_TIMEOUT;
    let mut n: u32 = 0;
    while !done() {
        n = n.wrapping_add(1);
        if n.is_multiple_of(4096) {
            if !alive() {
                return Err(format!("gave up waiting for {what}: the peer exited"));
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "gave up waiting for {what} after {} s",
                    PEER_TIMEOUT.as_secs()
                ));
            }
            if n.is_multiple_of(1 << 16) {
                // Long waits (an oversubscribed core) let the peer we wait for run.
                std::thread::yield_now();
            }
        }
        std::hint::spin_loop();
    }
    Ok(())
}

/// How busy the machine was during one step of a run.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct LoadSummary {
    /// Mean number of runnable tasks on the machine (ours included, the sampler excluded).
    pub mean_runnable: f64,
    /// Most runnable tasks seen at once.
    pub max_runnable: u64,
    /// The kernel's one-minute load average at the end of the step.
    pub load_avg_1m: f64,
    pub samples: u64,
}

/// The one-minute load average and the number of runnable tasks, from /proc/loadavg
/// (`0.52 0.58 0.59 3/467 12345`: the fourth field is runnable/total).
pub fn read_loadavg() -> Option<(f64, u64)> {
    let s = std::fs::read_to_string("/proc/loadavg").ok()?;
    parse_loadavg(&s)
}

fn parse_loadavg(s: &str) -> Option<(f64, u64)> {
    let mut fields = s.split_whitespace();
    let one_minute: f64 = fields.next()?.parse().ok()?;
    let running: u64 = fields.nth(2)?.split_once('/')?.0.parse().ok()?;
    Some((one_minute, running))
}

#[derive(Default)]
struct LoadAcc {
    samples: u64,
    sum: u64,
    max: u64,
}

impl LoadAcc {
    fn add(&mut self, runnable: u64) {
        self.samples += 1;
        self.sum += runnable;
        self.max = self.max.max(runnable);
    }
}

/// Counts the machine's runnable tasks every 100 ms on a thread of its own, so that a step can
/// tell whether it ran with more runnable tasks than usable cores (its figures then measure the
/// scheduler). The one-minute load average lags a step by tens of seconds, so the instantaneous
/// count is what decides; the average is reported beside it.
pub struct LoadWatch {
    acc: std::sync::Arc<std::sync::Mutex<LoadAcc>>,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl LoadWatch {
    const PERIOD: Duration = Duration::from_millis(100);

    pub fn start() -> LoadWatch {
        let acc = std::sync::Arc::new(std::sync::Mutex::new(LoadAcc::default()));
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (a, s) = (acc.clone(), stop.clone());
        let thread = std::thread::Builder::new()
            .name("load-watch".into())
            .spawn(move || {
                while !s.load(Ordering::Relaxed) {
                    if let Some((_, running)) = read_loadavg() {
                        // The sampler is running while it reads: not load on the measurement.
                        a.lock()
                            .expect("the sampler never panics holding the lock")
                            .add(running.saturating_sub(1));
                    }
                    std::thread::sleep(Self::PERIOD);
                }
            })
            .ok();
        LoadWatch { acc, stop, thread }
    }

    /// What was seen since the previous call (with one sample taken now, so even a step
    /// shorter than the period has one), and starts afresh.
    pub fn take(&self) -> LoadSummary {
        let now = read_loadavg();
        let mut acc = self
            .acc
            .lock()
            .expect("the sampler never panics holding the lock");
        if let Some((_, running)) = now {
            // This thread is running while it reads.
            acc.add(running.saturating_sub(1));
        }
        let taken = std::mem::take(&mut *acc);
        LoadSummary {
            mean_runnable: taken.sum as f64 / taken.samples.max(1) as f64,
            max_runnable: taken.max,
            load_avg_1m: now.map_or(0.0, |(avg, _)| avg),
            samples: taken.samples,
        }
    }
}

impl Drop for LoadWatch {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loadavg_gives_the_one_minute_average_and_the_runnable_count() {
        assert_eq!(
            parse_loadavg("0.52 0.58 0.59 3/467 12345\n"),
            Some((0.52, 3))
        );
        assert_eq!(parse_loadavg("garbage"), None);
    }
}
