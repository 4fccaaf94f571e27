//! Receiving through a readiness descriptor: once a handle has one, its receives go through the
//! library's readiness wrapper (which re-arms the descriptor when it finds nothing), and a
//! receive that waits sleeps in `poll(2)` on the descriptor.

use std::ffi::c_int;
use std::os::fd::RawFd;
use std::time::Instant;

use crate::status::{Failure, ShmbusStatus};

/// Calls `attempt` until it finds something, sleeping in `poll(2)` on `fd` between attempts,
/// until `deadline` (`None`: for ever); `Ok(None)` when the deadline passed. Readiness may be
/// spurious but is never lost (the wrapper re-arms before reporting nothing), so a wake-up that
/// finds nothing waits again.
pub(crate) fn poll_until<R>(
    fd: RawFd,
    deadline: Option<Instant>,
    mut attempt: impl FnMut() -> Option<R>,
) -> Result<Option<R>, Failure> {
    loop {
        if let Some(found) = attempt() {
            return Ok(Some(found));
        }
        let wait_ms = match deadline {
            None => -1,
            Some(d) => {
                let left = d.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    return Ok(None);
                }
                // Rounded up, so that the last wait does not end just short of the deadline and
                // spin.
                c_int::try_from(left.as_nanos().div_ceil(1_000_000)).unwrap_or(c_int::MAX)
            }
        };
        let mut pfd = libc::pollfd {
            fd,
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one valid pollfd, counted as one; the descriptor belongs to the handle the
        // caller holds for the whole call.
        let n = unsafe { libc::poll(&mut pfd, 1, wait_ms) };
        if n < 0 {
            let e = std::io::Error::last_os_error();
            if e.kind() != std::io::ErrorKind::Interrupted {
                return Err(Failure::new(
                    ShmbusStatus::Io,
                    format!("poll on the readiness descriptor failed: {e}"),
                ));
            }
        }
    }
}
