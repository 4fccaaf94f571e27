//! `shmbus tail NAME`: print messages of a bus through a read-only subscriber.

use std::io::{self, Write};
use std::str::FromStr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use clap::Args;
use serde::Serialize;
use shmbus::{inspect, Recv, Start, Subscriber, Wait};

use crate::{text, CmdResult, Format};

#[derive(Args, Debug)]
pub(crate) struct TailArgs {
    /// The bus name.
    name: String,
    /// Where to start: "newest" (the last -n messages), "oldest" (the oldest message still
    /// intact) or a sequence number.
    #[arg(long, default_value = "newest", value_name = "newest|oldest|SEQ")]
    from: StartAt,
    /// Without --follow: print at most N messages. With --from newest: start N messages back
    /// (so `-n 0 --follow` prints only messages published from now on).
    #[arg(short = 'n', long = "lines", default_value_t = 10, value_name = "N",
          allow_hyphen_values = true, value_parser = parse_lines)]
    n: u64,
    /// Keep printing new messages until Ctrl-C.
    #[arg(short, long)]
    follow: bool,
    /// How to print payloads.
    #[arg(long, value_enum, default_value_t = Format::Utf8)]
    format: Format,
    /// One JSON object per line: {"seq","len", and "text", "json" or "hex"}, or
    /// {"lost","first","last"} for a lap.
    #[arg(long)]
    json: bool,
}

/// `-n N`: a count of 0 or more (a negative one gets this error rather than clap's advice to
/// write `-- -1`).
fn parse_lines(s: &str) -> Result<u64, String> {
    s.parse()
        .map_err(|_| format!("expected a number of messages, 0 or more, got {s:?}"))
}

/// Start position of `tail`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum StartAt {
    Newest,
    Oldest,
    Seq(u64),
}

impl FromStr for StartAt {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "newest" => Ok(StartAt::Newest),
            "oldest" => Ok(StartAt::Oldest),
            s => s
                .parse()
                .map(StartAt::Seq)
                .map_err(|_| format!("expected newest, oldest or a sequence number, got {s:?}")),
        }
    }
}

/// Set by SIGINT / SIGTERM: `--follow` ends cleanly, output flushed.
pub(crate) static STOP: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(_: libc::c_int) {
    STOP.store(true, Ordering::Relaxed);
}

pub(crate) fn install_stop_handler() -> io::Result<()> {
    use nix::sys::signal::{sigaction, SaFlags, SigAction, SigHandler, SigSet, Signal};
    let action = SigAction::new(
        SigHandler::Handler(on_signal),
        SaFlags::SA_RESTART,
        SigSet::empty(),
    );
    for sig in [Signal::SIGINT, Signal::SIGTERM] {
        // SAFETY: the handler only stores to a static atomic, which is async-signal-safe, and no
        // other code of this program installs handlers for these signals.
        unsafe { sigaction(sig, &action) }.map_err(io::Error::from)?;
    }
    Ok(())
}

/// One output line of `tail --json`.
#[derive(Serialize)]
#[serde(untagged)]
enum Line<'a> {
    Message {
        seq: u64,
        len: usize,
        #[serde(skip_serializing_if = "Option::is_none")]
        text: Option<&'a str>,
        #[serde(skip_serializing_if = "Option::is_none")]
        hex: Option<String>,
    },
    Lost {
        lost: u64,
        first: u64,
        last: u64,
    },
}

/// Formats messages and laps as `tail` prints them.
pub(crate) struct Printer {
    pub(crate) format: Format,
    pub(crate) json: bool,
}

impl Printer {
    pub(crate) fn message(&self, seq: u64, bytes: &[u8]) -> String {
        let len = bytes.len();
        let hex = || text::hex(bytes);
        if self.json {
            let line = match self.format {
                Format::Utf8 => match std::str::from_utf8(bytes) {
                    Ok(s) => text::json_line(&Line::Message {
                        seq,
                        len,
                        text: Some(s),
                        hex: None,
                    }),
                    Err(_) => text::json_line(&Line::Message {
                        seq,
                        len,
                        text: None,
                        hex: Some(hex()),
                    }),
                },
                // The payload's own JSON, spliced in as is (it is valid, single-line and ASCII).
                Format::Json => match text::json_payload(bytes) {
                    Some(j) => format!("{{\"seq\":{seq},\"len\":{len},\"json\":{j}}}"),
                    None => text::json_line(&Line::Message {
                        seq,
                        len,
                        text: None,
                        hex: Some(hex()),
                    }),
                },
                Format::Hex => text::json_line(&Line::Message {
                    seq,
                    len,
                    text: None,
                    hex: Some(hex()),
                }),
            };
            return line;
        }
        let payload = match self.format {
            Format::Utf8 => text::escape_payload(bytes),
            Format::Hex => hex(),
            Format::Json => text::json_payload(bytes).unwrap_or_else(hex),
        };
        format!("{seq}\t{len}\t{payload}")
    }

    /// `lost` sequence numbers from `first` on were skipped.
    pub(crate) fn lap(&self, first: u64, lost: u64) -> String {
        let last = first.saturating_add(lost.saturating_sub(1));
        if self.json {
            text::json_line(&Line::Lost { lost, first, last })
        } else {
            let s = if lost == 1 { "" } else { "s" };
            format!("lost {lost} message{s} (seq {first}..{last})")
        }
    }
}

/// Which file a path names: device and inode. A bus removed and created again under the same
/// name is another file.
type FileId = (u64, u64);

fn file_id(name: &str) -> Option<FileId> {
    use std::os::unix::fs::MetadataExt;
    let m = std::fs::symlink_metadata(inspect::segment_path(name)).ok()?;
    Some((m.dev(), m.ino()))
}

/// Opens a bus and tells which file was opened: the path is looked at before and after, and
/// an open that raced with a re-creation is retried, so the id is the opened file's.
fn open_with_id(name: &str) -> shmbus::Result<(shmbus::Bus, Option<FileId>)> {
    let mut tries = 0;
    loop {
        let before = file_id(name);
        let bus = inspect::open_for_inspection(name)?;
        let after = file_id(name);
        tries += 1;
        if before == after || tries == 3 {
            return Ok((bus, after));
        }
    }
}

pub(crate) fn run(args: &TailArgs) -> CmdResult {
    let start = match args.from {
        StartAt::Newest => Start::Last(args.n),
        StartAt::Oldest => Start::Oldest,
        StartAt::Seq(s) => Start::Sequence(s),
    };
    let mut start = start;
    if args.follow && file_id(&args.name).is_none() {
        // As `tail -F` waits for a file: say so once, then wait for the segment to appear.
        // Everything in a segment created after we started is new: print it from its oldest.
        inspect::validate_name(&args.name)?;
        install_stop_handler()?;
        eprintln!(
            "shmbus: {} does not exist yet; waiting for it to be created",
            text::sanitize(&args.name)
        );
        if !wait_for_segment(&args.name) {
            return Ok(());
        }
        start = Start::Oldest;
    }
    if let Some(r) = crate::records::open(&args.name) {
        let printer = Printer {
            format: args.format,
            json: args.json,
        };
        if !args.follow {
            say_if_not_published_yet(args.from, r.records_published());
        }
        return crate::records::tail(&r, start, args.n, args.follow, &printer);
    }
    let (bus, id) = open_with_id(&args.name)?;
    if !args.follow {
        say_if_not_published_yet(args.from, bus.cursor());
    }
    // A read-only handle cannot register as a futex sleeper: Sleep polls every millisecond
    // rather than spinning a core, which is right for a tool.
    let mut sub = bus.subscribe(start).wait_strategy(Wait::Sleep);
    let printer = Printer {
        format: args.format,
        json: args.json,
    };
    let mut out = io::BufWriter::new(io::stdout().lock());
    let result = if args.follow {
        install_stop_handler()?;
        let mut followed = Followed {
            name: &args.name,
            id,
            sub,
            removed_said: false,
            last_look: Instant::now(),
        };
        follow(&mut followed, &printer, &mut out)
    } else {
        let end = bus.cursor();
        available(&mut sub, &printer, &mut out, end, args.n)
    };
    match result.and_then(|()| out.flush()) {
        // The reader went away (`shmbus tail ... | head`): not an error.
        Err(e) if e.kind() == io::ErrorKind::BrokenPipe => Ok(()),
        r => Ok(r?),
    }
}

/// `--from SEQ` beyond what was published prints nothing: say why on stderr (stdout stays
/// empty for scripts).
fn say_if_not_published_yet(from: StartAt, next: u64) {
    if let StartAt::Seq(seq) = from {
        if seq >= next {
            eprintln!(
                "shmbus: nothing to print: seq {seq} is not published yet (the next is {next}); \
                 add --follow to wait for it"
            );
        }
    }
}

/// Waits until segment `name` exists and can be opened (as a bus or a records segment), or
/// until SIGINT/SIGTERM; returns whether it is there.
fn wait_for_segment(name: &str) -> bool {
    while !STOP.load(Ordering::Relaxed) {
        // Once its header is complete, whatever its kind: the open that follows reports a
        // kind that tail does not read.
        if inspect::probe(name).is_ok() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    false
}

/// Prints what was published before `end`, at most `limit` messages, and returns.
fn available(
    sub: &mut Subscriber,
    p: &Printer,
    out: &mut impl Write,
    end: u64,
    limit: u64,
) -> io::Result<()> {
    // A slot can be mid-write, or claimed by a producer that died: the subscriber waits its
    // stall timeout, then counts it lost. This bound on time without progress only guards
    // against a stuck bus.
    const STUCK: Duration = Duration::from_secs(2);
    let mut progress = Instant::now();
    let mut printed = 0;
    while printed < limit && sub.next_seq() < end {
        let first = sub.next_seq();
        match sub.recv_timeout(Duration::from_millis(100)) {
            Recv::Message(m) => {
                writeln!(out, "{}", p.message(m.seq(), m.bytes()))?;
                printed += 1;
            }
            Recv::Lapped { lost } => writeln!(out, "{}", p.lap(first, lost))?,
            Recv::Empty if progress.elapsed() < STUCK => continue,
            Recv::Empty | Recv::Closed => break,
        }
        progress = Instant::now();
    }
    Ok(())
}

/// What one receive amounted to.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Step {
    Printed,
    Idle,
    Closed,
}

fn emit(r: Recv<'_>, first: u64, p: &Printer, out: &mut impl Write) -> io::Result<Step> {
    match r {
        Recv::Message(m) => writeln!(out, "{}", p.message(m.seq(), m.bytes()))?,
        Recv::Lapped { lost } => writeln!(out, "{}", p.lap(first, lost))?,
        Recv::Empty => return Ok(Step::Idle),
        Recv::Closed => return Ok(Step::Closed),
    }
    Ok(Step::Printed)
}

/// The bus `tail --follow` reads, followed by name as `tail -F` follows a file.
struct Followed<'a> {
    name: &'a str,
    /// The file the subscriber reads.
    id: Option<FileId>,
    sub: Subscriber,
    /// Whether the removal was reported already (it is said once).
    removed_said: bool,
    last_look: Instant,
}

impl Followed<'_> {
    /// How often an idle follower looks whether its bus was removed or re-created.
    const LOOK_EVERY: Duration = Duration::from_millis(250);

    /// Looks at the name now and then: reports a removal once, and switches to a bus
    /// re-created under the name (from its oldest message). Notes go to stderr, as `tail -F`'s.
    fn look(&mut self, out: &mut impl Write) -> io::Result<()> {
        if self.last_look.elapsed() < Self::LOOK_EVERY {
            return Ok(());
        }
        self.last_look = Instant::now();
        let now = file_id(self.name);
        if now == self.id {
            return Ok(());
        }
        let name = text::sanitize(self.name);
        if now.is_none() {
            if !self.removed_said {
                out.flush()?;
                eprintln!("shmbus: bus {name} was removed; waiting for it to be created again");
                self.removed_said = true;
            }
            return Ok(());
        }
        // Another file under the name. It may still be being initialised: try again later.
        let Ok((bus, id)) = open_with_id(self.name) else {
            return Ok(());
        };
        out.flush()?;
        eprintln!(
            "shmbus: bus {name} was created again; following the new bus from its oldest message"
        );
        self.sub = bus.subscribe(Start::Oldest).wait_strategy(Wait::Sleep);
        self.id = id;
        self.removed_said = false;
        Ok(())
    }
}

/// Prints messages as they come until SIGINT or SIGTERM; output is flushed whenever the
/// subscriber has caught up, so a reader sees each line as soon as nothing else is pending.
/// While idle it watches the bus's name (see [`Followed::look`]).
fn follow(f: &mut Followed<'_>, p: &Printer, out: &mut impl Write) -> io::Result<()> {
    while !STOP.load(Ordering::Relaxed) {
        let first = f.sub.next_seq();
        if emit(f.sub.try_recv(), first, p, out)? == Step::Printed {
            continue;
        }
        out.flush()?;
        let first = f.sub.next_seq();
        let step = emit(
            f.sub.recv_timeout(Duration::from_millis(100)),
            first,
            p,
            out,
        )?;
        if step == Step::Printed {
            continue;
        }
        f.look(out)?;
        if step == Step::Closed {
            // No producer now; one may attach later, so keep looking, at a gentle pace.
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    Ok(())
}
