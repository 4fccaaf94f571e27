//! Keys for the listings that redraw themselves (`list --watch`, `board --watch`): q (or Esc)
//! quits, as in `watch`. The terminal keeps its line discipline for output; only input stops
//! being line-buffered and echoed, and it is restored on every way out.

use std::io::{self, IsTerminal};
use std::time::{Duration, Instant};

use crate::output;

/// Reads single keys from a terminal on stdin while alive; a no-op when stdin or stdout is not
/// a terminal (then only SIGINT and SIGTERM end the wait).
pub(crate) struct QuitKeys {
    /// The terminal settings to restore, when stdin's were changed.
    saved: Option<libc::termios>,
}

impl QuitKeys {
    /// Takes stdin's keys one at a time without echo, if stdin and stdout are terminals, and
    /// makes SIGINT and SIGTERM end the wait rather than the process (so the settings are
    /// restored).
    pub(crate) fn new() -> io::Result<Self> {
        output::install_stop_handler()?;
        if !(io::stdin().is_terminal() && io::stdout().is_terminal()) {
            return Ok(QuitKeys { saved: None });
        }
        // SAFETY: an all-zero termios is a valid value to be overwritten by tcgetattr.
        let mut saved: libc::termios = unsafe { std::mem::zeroed() };
        // SAFETY: fd 0 is open (a terminal) and `saved` is valid for writes.
        if unsafe { libc::tcgetattr(0, &mut saved) } != 0 {
            return Ok(QuitKeys { saved: None });
        }
        let mut raw = saved;
        raw.c_lflag &= !(libc::ICANON | libc::ECHO);
        raw.c_cc[libc::VMIN] = 0;
        raw.c_cc[libc::VTIME] = 0;
        // SAFETY: fd 0 is a terminal and `raw` is a valid termios.
        if unsafe { libc::tcsetattr(0, libc::TCSANOW, &raw) } != 0 {
            return Ok(QuitKeys { saved: None });
        }
        Ok(QuitKeys { saved: Some(saved) })
    }

    /// Whether keys are read (a hint to show "q quit").
    pub(crate) fn active(&self) -> bool {
        self.saved.is_some()
    }

    /// Waits `d`, or less if q or Esc is pressed or a stop signal arrives: then returns true.
    pub(crate) fn wait(&mut self, d: Duration) -> io::Result<bool> {
        let deadline = Instant::now() + d;
        loop {
            if output::stopped() {
                return Ok(true);
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Ok(false);
            }
            let step = left.min(Duration::from_millis(100));
            if self.saved.is_none() {
                std::thread::sleep(step);
                continue;
            }
            let mut fds = libc::pollfd {
                fd: 0,
                events: libc::POLLIN,
                revents: 0,
            };
            // SAFETY: one valid pollfd for the duration of the call.
            let n = unsafe { libc::poll(&mut fds, 1, step.as_millis() as libc::c_int) };
            if n <= 0 {
                // Timeout, or EINTR from a signal: the loop looks at STOP.
                continue;
            }
            let mut buf = [0u8; 64];
            // SAFETY: reads at most buf.len() bytes into a buffer valid for writes.
            let got = unsafe { libc::read(0, buf.as_mut_ptr().cast(), buf.len()) };
            if got <= 0 {
                continue;
            }
            let keys = &buf[..got as usize];
            // q, Q, or a lone Esc (an arrow key also starts with Esc, followed by more bytes).
            if keys.iter().any(|&b| b == b'q' || b == b'Q') || keys == [0x1b] {
                return Ok(true);
            }
        }
    }
}

impl Drop for QuitKeys {
    fn drop(&mut self) {
        if let Some(saved) = &self.saved {
            // SAFETY: restores the settings read from the same terminal in `new`.
            unsafe { libc::tcsetattr(0, libc::TCSANOW, saved) };
        }
    }
}
