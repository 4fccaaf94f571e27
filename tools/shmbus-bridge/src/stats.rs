//! Stopping on SIGINT/SIGTERM, and the periodic statistics lines.

use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use crate::error::BridgeError;

static STOP: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(_: libc::c_int) {
    STOP.store(true, Ordering::Relaxed);
}

/// Makes SIGINT and SIGTERM ask the bridge to stop (it then prints its final statistics).
pub fn install_stop_handler() -> Result<(), BridgeError> {
    use nix::sys::signal::{sigaction, SaFlags, SigAction, SigHandler, SigSet, Signal};
    let action = SigAction::new(
        SigHandler::Handler(on_signal),
        SaFlags::SA_RESTART,
        SigSet::empty(),
    );
    for sig in [Signal::SIGINT, Signal::SIGTERM] {
        // SAFETY: the handler only stores to a static atomic, which is async-signal-safe, and no
        // other code of this program installs handlers for these signals.
        unsafe { sigaction(sig, &action) }
            .map_err(|e| BridgeError::Signals(std::io::Error::from(e)))?;
    }
    Ok(())
}

/// Whether a stop was asked for.
pub fn stopping() -> bool {
    STOP.load(Ordering::Relaxed)
}

/// Where statistics go: a human line on stderr, or with `--json` one JSON object per line on
/// stdout (so that a program can read them apart from the log).
#[derive(Debug)]
pub struct Reporter {
    json: bool,
    every: Option<Duration>,
    next: Instant,
}

impl Reporter {
    /// Reports every `every_secs` seconds (0: only the final report).
    pub fn new(json: bool, every_secs: f64) -> Self {
        let every = (every_secs > 0.0).then(|| Duration::from_secs_f64(every_secs));
        Reporter {
            json,
            every,
            next: Instant::now() + every.unwrap_or(Duration::ZERO),
        }
    }

    /// Whether a periodic report is due now.
    pub fn due(&mut self) -> bool {
        let Some(every) = self.every else {
            return false;
        };
        let now = Instant::now();
        if now < self.next {
            return false;
        }
        self.next = now + every;
        true
    }

    /// Prints one report: `fields` as `key=value` on stderr, or as a JSON object on stdout.
    pub fn report(&self, fields: &serde_json::Map<String, serde_json::Value>) {
        if self.json {
            let mut out = std::io::stdout().lock();
            let _ = writeln!(out, "{}", serde_json::Value::Object(fields.clone()));
            let _ = out.flush();
        } else {
            let line: Vec<String> = fields
                .iter()
                .map(|(k, v)| match v {
                    serde_json::Value::String(s) => format!("{k}={s}"),
                    other => format!("{k}={other}"),
                })
                .collect();
            eprintln!("shmbus-bridge: {}", line.join(" "));
        }
    }
}
