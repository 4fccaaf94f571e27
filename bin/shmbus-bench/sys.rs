//! The machine and its processes: cores and pinning, unique names that clean up after themselves,
//! child processes (this same binary, re-executed), and bounded spin-waits.

use std::io::{BufRead, BufReader, Read};
use std::os::fd::AsRawFd;
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
