//! Waiting with a deadline: for a condition to hold, for a descriptor to turn readable, and (in
//! a child) for the parent's word on stdin. A deadline here is a hang guard, not a timing
//! assertion: reaching it means a lost wake-up or a wedge.

use std::os::fd::{AsFd, AsRawFd};
use std::time::{Duration, Instant};

/// Long enough that only a lost wake-up reaches it.
pub const HANG_GUARD: Duration = Duration::from_secs(20);

/// Polls `cond` until it holds, panicking after `limit` with `what`.
pub fn await_cond(limit: Duration, what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_micros(200));
    }
}

/// Whether `fd` is readable within `timeout` (`poll(2)` for `POLLIN`).
pub fn readable(fd: &impl AsFd, timeout: Duration) -> bool {
    let ms = i32::try_from(timeout.as_millis()).unwrap_or(i32::MAX);
    let mut pfd = libc::pollfd {
        fd: fd.as_fd().as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: one pollfd of ours, for a descriptor borrowed for the call.
    let n = unsafe { libc::poll(&mut pfd, 1, ms) };
    assert!(n >= 0, "poll: {}", std::io::Error::last_os_error());
    n == 1
}

/// Waits until `fd` is readable, failing the test if it is not within [`HANG_GUARD`].
pub fn wait_readable(fd: &impl AsFd, what: &str) {
    assert!(readable(fd, HANG_GUARD), "never readable: {what}");
}

/// In a child: blocks until the parent tells it a line, which must be `want`.
pub fn expect_told(want: &str) {
    let mut line = String::new();
    std::io::stdin().read_line(&mut line).expect("read stdin");
    assert_eq!(line.trim(), want, "the parent's word");
}

/// In a child: blocks until the parent tells it anything or closes its stdin (keeps a handle
/// alive for as long as the parent wants it).
pub fn hold() {
    let mut line = String::new();
    let _ = std::io::stdin().read_line(&mut line);
}
