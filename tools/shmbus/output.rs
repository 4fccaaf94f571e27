//! What every command prints through: the one failure type and its `shmbus: error:` line, JSON
//! lines, the rendering of payloads (`Printer`), and the stop flag that Ctrl-C and SIGTERM set.

use std::io::{self, Write as _};
use std::sync::atomic::{AtomicBool, Ordering};

use clap::ValueEnum;
use serde::Serialize;

use crate::text;

/// The one failure type of the commands: a message for the single `shmbus: error:` line.
/// An empty message is a quiet exit: the reader of our output went away.
#[derive(Debug)]
pub(crate) struct Failure(pub(crate) String);

impl From<shmbus::Error> for Failure {
    fn from(e: shmbus::Error) -> Self {
        // The library's messages name its builder methods; a CLI user needs the flags.
        match e {
            shmbus::Error::ForeignOwner { name, owner, ours } => Failure(format!(
                "segment {name:?} is owned by uid {owner}, not by us (uid {ours}); pass \
                 --accept-other-owner to trust it"
            )),
            shmbus::Error::InsecureMode { name, mode } => Failure(format!(
                "segment {name:?} has mode {mode:04o}, writable by other users; pass \
                 --accept-shared-write to trust it"
            )),
            shmbus::Error::WrongMessageSize {
                name,
                len,
                size,
                type_name,
            } => Failure(format!(
                "message is {len} bytes, but bus {name:?} carries values of type {type_name}, \
                 exactly {size} bytes each: give each as --hex or --file of exactly {size} bytes"
            )),
            shmbus::Error::TypeMismatch { name, found, .. } => Failure(format!(
                "segment {name:?} is typed: its payloads are of type {found}, and the command \
                 line only reads and writes untyped bytes here"
            )),
            e => Failure(e.to_string()),
        }
    }
}

impl From<io::Error> for Failure {
    fn from(e: io::Error) -> Self {
        // `shmbus list | head -1`: a closed pipe ends the command, it is not an error to report.
        if e.kind() == io::ErrorKind::BrokenPipe {
            return Failure(String::new());
        }
        Failure(e.to_string())
    }
}

pub(crate) type CmdResult = Result<(), Failure>;

/// Prints `value` as one line of ASCII-only JSON on stdout.
pub(crate) fn print_json<T: Serialize + ?Sized>(value: &T) -> CmdResult {
    writeln!(io::stdout(), "{}", text::json_line(value))?;
    Ok(())
}

/// A command's closing summary: `value` as one JSON line with `json`, else the line `text`
/// makes.
pub(crate) fn print_summary<T: Serialize>(
    json: bool,
    value: &T,
    text: impl FnOnce() -> String,
) -> CmdResult {
    if json {
        return print_json(value);
    }
    writeln!(io::stdout(), "{}", text())?;
    Ok(())
}

/// A flushed output whose reader went away (`shmbus tail ... | head`) is not an error.
pub(crate) fn quiet_broken_pipe(r: io::Result<()>) -> CmdResult {
    match r {
        Err(e) if e.kind() == io::ErrorKind::BrokenPipe => Ok(()),
        r => Ok(r?),
    }
}

/// Payload rendering of `tail`, `pop` and `board`.
#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Format {
    /// UTF-8 text, with control characters and invalid bytes escaped.
    Utf8,
    /// Lower-case hexadecimal.
    Hex,
    /// The payload parsed as JSON when it is valid JSON, else hex.
    Json,
}

impl Format {
    /// A payload as one cell of text output.
    pub(crate) fn render(self, bytes: &[u8]) -> String {
        match self {
            Format::Utf8 => text::escape_payload(bytes),
            Format::Hex => text::hex(bytes),
            Format::Json => text::json_payload(bytes).unwrap_or_else(|| text::hex(bytes)),
        }
    }

    /// A payload as one JSON object: `{"seq"?, "len", and "text", "json" or "hex"}`. `text`
    /// with --format utf8 when it is valid UTF-8, `json` with --format json when it is valid
    /// JSON, else `hex`.
    pub(crate) fn json(self, seq: Option<u64>, bytes: &[u8]) -> String {
        let len = bytes.len();
        let seq_key = seq.map_or(String::new(), |s| format!("\"seq\":{s},"));
        let hex = || {
            text::json_line(&Payload {
                seq,
                len,
                text: None,
                hex: Some(text::hex(bytes)),
            })
        };
        match self {
            Format::Utf8 => match std::str::from_utf8(bytes) {
                Ok(s) => text::json_line(&Payload {
                    seq,
                    len,
                    text: Some(s),
                    hex: None,
                }),
                Err(_) => hex(),
            },
            // The payload's own JSON, spliced in as is (it is valid, single-line and ASCII).
            Format::Json => match text::json_payload(bytes) {
                Some(j) => format!("{{{seq_key}\"len\":{len},\"json\":{j}}}"),
                None => hex(),
            },
            Format::Hex => hex(),
        }
    }
}

/// One payload as a JSON line.
#[derive(Serialize)]
struct Payload<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    seq: Option<u64>,
    len: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    text: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    hex: Option<String>,
}

/// A lap as a JSON line.
#[derive(Serialize)]
struct Lost {
    lost: u64,
    first: u64,
    last: u64,
}

/// Formats messages and laps as `tail` prints them.
pub(crate) struct Printer {
    pub(crate) format: Format,
    pub(crate) json: bool,
}

impl Printer {
    pub(crate) fn message(&self, seq: u64, bytes: &[u8]) -> String {
        if self.json {
            return self.format.json(Some(seq), bytes);
        }
        format!("{seq}\t{}\t{}", bytes.len(), self.format.render(bytes))
    }

    /// `lost` sequence numbers from `first` on were skipped.
    pub(crate) fn lap(&self, first: u64, lost: u64) -> String {
        let last = first.saturating_add(lost.saturating_sub(1));
        if self.json {
            text::json_line(&Lost { lost, first, last })
        } else {
            let s = if lost == 1 { "" } else { "s" };
            format!("lost {lost} message{s} (seq {first}..{last})")
        }
    }
}

/// Set by SIGINT and SIGTERM (and SIGHUP under `watch`): a command that runs until interrupted
/// ends cleanly, its output flushed and the terminal restored.
pub(crate) static STOP: AtomicBool = AtomicBool::new(false);

/// Whether a stop signal arrived.
pub(crate) fn stopped() -> bool {
    STOP.load(Ordering::Relaxed)
}

extern "C" fn on_signal(_: libc::c_int) {
    STOP.store(true, Ordering::Relaxed);
}

/// Makes SIGINT and SIGTERM set [`STOP`] instead of ending the process.
pub(crate) fn install_stop_handler() -> io::Result<()> {
    use nix::sys::signal::Signal;
    install_for(&[Signal::SIGINT, Signal::SIGTERM])
}

/// As [`install_stop_handler`], and SIGHUP too (a full-screen view whose terminal closes).
pub(crate) fn install_stop_handler_with_hangup() -> io::Result<()> {
    use nix::sys::signal::Signal;
    install_for(&[Signal::SIGINT, Signal::SIGTERM, Signal::SIGHUP])
}

fn install_for(signals: &[nix::sys::signal::Signal]) -> io::Result<()> {
    use nix::sys::signal::{sigaction, SaFlags, SigAction, SigHandler, SigSet};
    let action = SigAction::new(
        SigHandler::Handler(on_signal),
        SaFlags::SA_RESTART,
        SigSet::empty(),
    );
    for &sig in signals {
        // SAFETY: the handler only stores to a static atomic, which is async-signal-safe, and no
        // other code of this program installs handlers for these signals.
        unsafe { sigaction(sig, &action) }.map_err(io::Error::from)?;
    }
    Ok(())
}
