//! Helpers shared by the tests of every package in the workspace: bus names that clean up after
//! themselves, self-checking payloads (also the bench's soak uses them, so both verify messages
//! the same way), child processes made by re-executing the test binary with a role in the
//! environment, the segment forger of the hostile tests ([`forge`]), waits with a deadline
//! ([`poll`]), threads parked inside an update ([`park`]) and a counting allocator for the allocation-free paths ([`alloc`]). Not published.

use std::io::{BufRead, BufReader, Lines};
use std::process::{Child, ChildStdout, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

/// Environment variable naming the role a re-executed test binary plays.
pub const ROLE_VAR: &str = "SHMBUS_TEST_ROLE";
/// Prefix of the lines a child prints for its parent (libtest prints its own lines too).
pub const LINE_PREFIX: &str = "CHILD:";

/// A unique bus name (`test-TAG-PID-N`), removed from /dev/shm when dropped, also on failure.
pub struct TestBus(pub String);

impl TestBus {
    pub fn new(tag: &str) -> Self {
        static N: AtomicU32 = AtomicU32::new(0);
        let n = N.fetch_add(1, Ordering::Relaxed);
        TestBus(format!("test-{tag}-{}-{n}", std::process::id()))
    }

    pub fn name(&self) -> &str {
        &self.0
    }

    /// The segment's path in /dev/shm.
    pub fn path(&self) -> std::path::PathBuf {
        shmbus::inspect::segment_path(&self.0)
    }
}

impl Drop for TestBus {
    fn drop(&mut self) {
        // The object may be a symlink or a plain file planted by a test: unlink the path itself.
        let _ = std::fs::remove_file(self.path());
    }
}

pub mod alloc;
pub mod delivered;
pub mod forge;
pub mod make;
pub mod park;
pub mod payload;
pub mod poll;
use payload::mix;
pub use payload::{check_payload, make_payload, Rng};
pub use poll::await_cond;

/// Length of message `counter` of `producer` on a bus of `capacity` bytes: 24..=capacity, and not
/// always a multiple of 8, so that partial last words are exercised.
pub fn payload_len(producer: u64, counter: u64, capacity: usize) -> usize {
    24 + (mix(producer ^ counter.rotate_left(17)) % (capacity as u64 - 23)) as usize
}

/// The role this process was started for, if it is a child.
pub fn role() -> Option<String> {
    std::env::var(ROLE_VAR).ok()
}

/// An environment variable of a child, parsed.
pub fn env<T: std::str::FromStr>(key: &str) -> T {
    let v = std::env::var(key).unwrap_or_else(|_| panic!("child needs {key}"));
    v.parse()
        .unwrap_or_else(|_| panic!("child variable {key}={v} does not parse"))
}

/// Runs the function named for this process's role in `roles`, if it is a child; does nothing in
/// an ordinary test run. An unknown role is a panic.
pub fn run_role(roles: &[(&str, fn())]) {
    let Some(role) = role() else { return };
    match roles.iter().find(|(name, _)| *name == role) {
        Some((_, run)) => run(),
        None => panic!("unknown child role {role}"),
    }
}

/// Asserts that `err` is [`shmbus::Error::WrongKind`] naming both kinds (a segment of another
/// kind, never a corrupt one).
pub fn assert_wrong_kind(err: &shmbus::Error, found: &str, expected: &str) {
    assert!(
        matches!(
            err,
            shmbus::Error::WrongKind { found: f, expected: e, .. } if *f == found && *e == expected
        ),
        "{err:?}, expected a {found} opened as a {expected}"
    );
    assert!(!err.is_corrupt(), "{err:?}");
}

/// A setting from the environment (a test's size, say), or `default` when it is not set or does
/// not parse.
pub fn env_or<T: std::str::FromStr>(key: &str, default: T) -> T {
    std::env::var(key)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// In a child: says `ready`, waits for the parent's `go`, runs `act`, says `done`, then keeps
/// its handles until the parent tells it anything or closes its stdin.
pub fn on_go(done: &str, act: impl FnOnce()) {
    say("ready");
    poll::expect_told("go");
    act();
    say(done);
    poll::hold();
}

/// In a child: a flag raised when the parent writes a line to its stdin (or closes it), for a
/// loop that runs until told to stop.
pub fn told_to_stop() -> std::sync::Arc<std::sync::atomic::AtomicBool> {
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let flag = stop.clone();
    std::thread::spawn(move || {
        let mut line = String::new();
        let _ = std::io::stdin().read_line(&mut line);
        flag.store(true, Ordering::Relaxed);
    });
    stop
}

/// Prints a line for the parent and flushes it at once.
pub fn say(line: &str) {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{LINE_PREFIX}{line}");
    let _ = out.flush();
}

/// A child process running test `entry` of this test binary in role `role`. Killed and reaped
/// on drop unless it was waited for.
pub struct ChildProc {
    child: Child,
    lines: Lines<BufReader<ChildStdout>>,
    reaped: bool,
}

impl ChildProc {
    pub fn spawn(entry: &str, role: &str, env: &[(&str, String)]) -> Self {
        let mut cmd = Command::new(std::env::current_exe().expect("current test binary"));
        cmd.args([entry, "--exact", "--nocapture", "--test-threads=1"])
            .env(ROLE_VAR, role)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("spawn child test process");
        let lines = BufReader::new(child.stdout.take().expect("piped stdout")).lines();
        ChildProc {
            child,
            lines,
            reaped: false,
        }
    }

    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    /// The next line the child printed with [`say`] (without the prefix); `None` at EOF.
    pub fn next_line(&mut self) -> Option<String> {
        for line in self.lines.by_ref() {
            let line = line.expect("read child stdout");
            // libtest may print "test NAME ... " on the same line first.
            if let Some(i) = line.find(LINE_PREFIX) {
                return Some(line[i + LINE_PREFIX.len()..].to_owned());
            }
        }
        None
    }

    /// Waits for the child line `want`, panicking if the child ends first.
    pub fn expect_line(&mut self, want: &str) {
        match self.next_line() {
            Some(l) if l == want => {}
            other => panic!("child {} said {other:?}, expected {want:?}", self.pid()),
        }
    }

    /// Sends a line to the child's stdin.
    pub fn tell(&mut self, line: &str) {
        use std::io::Write;
        let stdin = self.child.stdin.as_mut().expect("piped stdin");
        writeln!(stdin, "{line}").expect("write to child");
        stdin.flush().expect("flush child stdin");
    }

    /// `kill -9` the child and reap it; returns the signal that ended it.
    pub fn kill9(&mut self) -> Option<i32> {
        use std::os::unix::process::ExitStatusExt;
        // SAFETY: kill(2) on the pid of a child we have not reaped yet, so the pid cannot have
        // been reused by another process.
        unsafe { libc::kill(self.pid(), libc::SIGKILL) };
        self.wait_status(Duration::from_secs(10)).signal()
    }

    /// Waits for the child to end, at most `limit`; kills it and panics past that.
    pub fn wait_status(&mut self, limit: Duration) -> std::process::ExitStatus {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(st) = self.child.try_wait().expect("try_wait") {
                self.reaped = true;
                return st;
            }
            if Instant::now() >= deadline {
                let _ = self.child.kill();
                let _ = self.child.wait();
                self.reaped = true;
                panic!("child {} did not finish within {limit:?}", self.pid());
            }
            std::thread::sleep(Duration::from_millis(2));
        }
    }

    /// Waits (at most `limit`) for the child to exit successfully.
    pub fn wait_success(&mut self, limit: Duration) {
        let st = self.wait_status(limit);
        assert!(st.success(), "child {} ended with {st:?}", self.pid());
    }
}

impl Drop for ChildProc {
    fn drop(&mut self) {
        if !self.reaped {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Parses `key=value` pairs of a child's result line.
pub fn field(line: &str, key: &str) -> u64 {
    line.split_whitespace()
        .find_map(|kv| kv.strip_prefix(key)?.strip_prefix('='))
        .unwrap_or_else(|| panic!("no {key}= in {line:?}"))
        .parse()
        .unwrap_or_else(|_| panic!("{key} in {line:?} is not a number"))
}

/// Test seeding of the shared PRNG: random kill instants and sizes, replayable.
impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed)
    }

    /// Seeded from SHMBUS_TEST_SEED, or the clock (printed, so a failure can be replayed).
    pub fn from_env(what: &str) -> Self {
        let seed = std::env::var("SHMBUS_TEST_SEED")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| {
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map(|d| d.as_nanos() as u64)
                    .unwrap_or(1)
            });
        eprintln!("{what}: SHMBUS_TEST_SEED={seed}");
        Rng(seed)
    }
}
