//! `shmbus create`, `publish` and `rm`: the commands that change buses.

use std::io::{self, BufRead, Write};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use clap::Args;
use shmbus::inspect;

use crate::kinds::{self, CreateArgs, Producer, Trust};
use crate::output::{self, CmdResult, Failure};
use crate::text;

/// Refuses the options given that the kind does not take, rather than ignoring them.
fn refuse_other_kinds_options(a: &CreateArgs) -> CmdResult {
    let kind = a.kind.kind();
    for (flag, set) in a.given() {
        if set && !kind.create_options().contains(&flag) {
            let takes: Vec<&str> = kinds::ALL
                .iter()
                .filter(|k| k.create_options().contains(&flag))
                .map(|k| k.word())
                .collect();
            return Err(Failure(format!(
                "{flag} does not apply to --kind {} (only to {}); see `shmbus create --help`",
                kind.word(),
                takes.join(" and ")
            )));
        }
    }
    Ok(())
}

pub(crate) fn create(a: &CreateArgs) -> CmdResult {
    refuse_other_kinds_options(a)?;
    a.kind.kind().create(a)
}

#[derive(Args, Debug)]
pub(crate) struct PublishArgs {
    /// The segment: a bus, a records segment, or lanes (a lane is acquired for the command's
    /// life and closed at its end).
    name: String,
    /// Messages to publish, one per argument. Without any (and without --file), each line of
    /// stdin is a message.
    messages: Vec<String>,
    /// The messages (arguments or stdin lines) are bytes in hexadecimal, e.g. 00ff10 or "ca fe";
    /// spaces, ':' and '_' between bytes are ignored.
    #[arg(long, conflicts_with = "file")]
    hex: bool,
    /// Publish the whole content of this file as one message (one record on a records segment).
    #[arg(long, value_name = "PATH", conflicts_with = "messages")]
    file: Option<PathBuf>,
    /// Publish each message N times (at least 1).
    #[arg(long, value_name = "N", default_value_t = 1,
          value_parser = text::at_least_one)]
    repeat: u64,
    /// Publish at most this many messages per second, evenly spaced (0.001 to 10000000);
    /// default: as fast as the bus takes them.
    #[arg(long, value_name = "MSGS_PER_SEC", value_parser = parse_rate)]
    rate: Option<f64>,
    #[command(flatten)]
    trust: Trust,
    /// Print the summary as one JSON object instead of text.
    #[arg(long)]
    json: bool,
}

fn parse_rate(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(r) if (0.001..=10_000_000.0).contains(&r) => Ok(r),
        _ => Err(format!(
            "expected messages per second from 0.001 to 10000000, got {s:?}"
        )),
    }
}

/// Where a message came from, for the error that names it.
#[derive(Clone, Copy, Debug)]
enum Origin {
    Argument(usize),
    Line(u64),
    File,
}

impl std::fmt::Display for Origin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Origin::Argument(i) => write!(f, "message argument {i}"),
            Origin::Line(n) => write!(f, "line {n} of stdin"),
            Origin::File => write!(f, "the file's content"),
        }
    }
}

/// Publishes messages, paced and repeated as asked, and remembers what went out.
struct Sender {
    tx: Box<dyn Producer>,
    repeat: u64,
    /// Time between two messages, with --rate.
    gap: Option<Duration>,
    /// When the next message may go, with --rate.
    next_at: Instant,
    first: Option<u64>,
    last: Option<u64>,
}

impl Sender {
    fn send(&mut self, msg: &[u8], origin: Origin) -> CmdResult {
        for _ in 0..self.repeat {
            if output::stopped() {
                return Ok(());
            }
            if let Some(gap) = self.gap {
                let now = Instant::now();
                if self.next_at > now {
                    std::thread::sleep(self.next_at - now);
                }
                self.next_at += gap;
                if output::stopped() {
                    return Ok(());
                }
            }
            match self.tx.publish(msg) {
                Ok(Some(seq)) => {
                    self.first.get_or_insert(seq);
                    self.last = Some(seq);
                }
                Ok(None) => {}
                Err(e) => return Err(self.refused(origin, e)),
            }
        }
        Ok(())
    }

    /// The error for a refused message: which one, and what was already published.
    fn refused(&self, origin: Origin, e: shmbus::Error) -> Failure {
        let noun = self.tx.noun();
        let n = self.tx.counts().0;
        let before = match (self.first, self.last) {
            (Some(f), Some(l)) => format!(
                "published {} before it ({})",
                text::count(n, noun),
                seq_range(f, l)
            ),
            _ => "nothing was published before it".into(),
        };
        let why = match e {
            shmbus::Error::MessageTooLarge { len, capacity } => {
                format!("{noun} is {len} bytes, at most {capacity} fit")
            }
            e => Failure::from(e).0,
        };
        Failure(format!("{origin}: {why}; {before}"))
    }
}

/// `seq 5` or `seq 5..9`.
fn seq_range(first: u64, last: u64) -> String {
    if first == last {
        format!("seq {first}")
    } else {
        format!("seq {first}..{last}")
    }
}

pub(crate) fn publish(a: &PublishArgs) -> CmdResult {
    // Typed buses too: each message is then one value's bytes, exactly its size.
    let kind = kinds::of_segment(&a.name);
    let kinds::Attached {
        name,
        shared: multi,
        tx,
    } = kind.producer(&a.name, &a.trust)?;
    // Ctrl-C or SIGTERM stops publishing; the summary of what went out is still printed.
    // Not while reading stdin: a blocked read would not notice, so there they end the
    // process as usual.
    if a.file.is_some() || !a.messages.is_empty() {
        output::install_stop_handler()?;
    }
    let gap = a.rate.map(|r| Duration::from_secs_f64(1.0 / r));
    let mut s = Sender {
        tx,
        repeat: a.repeat,
        gap,
        next_at: Instant::now(),
        first: None,
        last: None,
    };
    let decode = |m: &[u8]| -> Result<Vec<u8>, String> {
        if a.hex {
            text::parse_hex(&String::from_utf8_lossy(m))
        } else {
            Ok(m.to_vec())
        }
    };
    let sent = (|| -> CmdResult {
        if let Some(path) = &a.file {
            let msg = std::fs::read(path)
                .map_err(|e| Failure(format!("cannot read {}: {e}", path.display())))?;
            s.send(&msg, Origin::File)?;
        } else if a.messages.is_empty() {
            let mut line = Vec::new();
            let mut stdin = io::stdin().lock();
            let mut n = 0;
            loop {
                line.clear();
                if output::stopped() || stdin.read_until(b'\n', &mut line)? == 0 {
                    break;
                }
                n += 1;
                let msg = line.strip_suffix(b"\n").unwrap_or(&line);
                let msg = msg.strip_suffix(b"\r").unwrap_or(msg);
                let msg = decode(msg).map_err(|e| Failure(format!("line {n} of stdin: {e}")))?;
                s.send(&msg, Origin::Line(n))?;
            }
        } else {
            for (i, m) in a.messages.iter().enumerate() {
                let msg = decode(m.as_bytes())
                    .map_err(|e| Failure(format!("message argument {}: {e}", i + 1)))?;
                s.send(&msg, Origin::Argument(i + 1))?;
            }
        }
        Ok(())
    })();
    sent?;
    let noun = s.tx.noun();
    let n = s.tx.counts().0;
    let interrupted = if output::stopped() {
        " (interrupted)"
    } else {
        ""
    };
    if a.json {
        output::print_json(&serde_json::json!({
            "name": name,
            "kind": kind.word(),
            "published": n,
            "first_seq": s.first,
            "last_seq": s.last,
            "interleaved": multi,
            "interrupted": !interrupted.is_empty(),
        }))?;
    }
    // On a multi-producer bus, other producers' messages may fall between ours.
    let shared = if multi {
        ", interleaved with other producers'"
    } else {
        ""
    };
    match (s.first, s.last) {
        _ if a.json => Ok(()),
        (Some(f), Some(l)) => writeln!(
            io::stdout(),
            "published {} to {name} ({}{shared}){interrupted}",
            text::count(n, noun),
            seq_range(f, l)
        ),
        _ => writeln!(
            io::stdout(),
            "published {} to {name}{shared}{interrupted}",
            text::count(n, noun)
        ),
    }?;
    let dropped = s.tx.counts().1;
    if dropped > 0 {
        return Err(Failure(format!(
            "{} dropped: {}",
            text::count(dropped, s.tx.noun()),
            s.tx.dropped_why()
        )));
    }
    Ok(())
}

#[derive(Args, Debug)]
pub(crate) struct RmArgs {
    /// Segments to remove (of any kind).
    #[arg(required_unless_present = "stale", conflicts_with = "stale")]
    names: Vec<String>,
    /// Remove stale segments of ours, of every kind: no participant attached and the creator
    /// exited. Needs --prefix or --all-idle.
    #[arg(long)]
    stale: bool,
    /// With --stale: every stale segment of ours, including those made by `shmbus create` that
    /// nothing has used yet.
    #[arg(long, requires = "stale", conflicts_with = "prefix")]
    all_idle: bool,
    /// Only print what would be removed (with --stale, why; with names, who still uses it);
    /// remove nothing.
    #[arg(long)]
    dry_run: bool,
    /// With --stale: only segments whose name starts with PREFIX.
    #[arg(long, requires = "stale", value_name = "PREFIX")]
    prefix: Option<String>,
    /// One JSON object per segment ({"name", "removed" or "would_remove", "why" or "live"})
    /// instead of text.
    #[arg(long)]
    json: bool,
}

/// How `rm --stale` picks its segments.
enum Scope<'a> {
    Prefix(&'a str),
    AllIdle,
}

pub(crate) fn rm(a: &RmArgs) -> CmdResult {
    if !a.stale {
        // Names and these options together would silently remove what --dry-run promised to
        // keep: refuse before touching anything.
        let stray = [(a.prefix.is_some(), "--prefix"), (a.all_idle, "--all-idle")];
        if let Some((_, flag)) = stray.iter().find(|(set, _)| *set) {
            return Err(Failure(format!(
                "{flag} only works with --stale; to remove named segments give only their names"
            )));
        }
        if a.dry_run {
            return rm_named_dry_run(&a.names, a.json);
        }
        return rm_named(&a.names, a.json);
    }
    let scope =
        match (&a.prefix, a.all_idle) {
            (Some(p), _) => Scope::Prefix(p),
            (None, true) => Scope::AllIdle,
            (None, false) => return Err(Failure(
                "rm --stale needs a scope: --prefix PREFIX, or --all-idle for every stale segment \
                 of ours (segments made by `shmbus create` that nothing uses count as stale); \
                 add --dry-run to see what would go"
                    .into(),
            )),
        };
    rm_stale(a.dry_run, &scope, a.json)
}

/// Who is attached to segment `name` and alive, in its kind's words ("a live producer (pid
/// 12)"); empty when no one is, or when the segment cannot be read.
fn live_participants(name: &str) -> Vec<String> {
    match inspect::probe(name) {
        Ok(p) => kinds::of(p.kind).live_participants(&p),
        Err(_) => Vec::new(),
    }
}

/// `rm --dry-run NAME...`: what would be removed, and who still uses it; removes nothing.
fn rm_named_dry_run(names: &[String], json: bool) -> CmdResult {
    let mut first_err = None;
    for name in names {
        if let Err(e) = inspect::validate_name(name) {
            first_err.get_or_insert(e);
            continue;
        }
        if std::fs::symlink_metadata(inspect::segment_path(name)).is_err() {
            first_err.get_or_insert(shmbus::Error::NotFound { name: name.clone() });
            continue;
        }
        let live = live_participants(name);
        if json {
            output::print_json(&serde_json::json!({
                "name": name,
                "would_remove": true,
                "live": live,
            }))?;
        } else if live.is_empty() {
            writeln!(io::stdout(), "would remove {}", text::sanitize(name))?;
        } else {
            writeln!(
                io::stdout(),
                "would remove {}, which has {}",
                text::sanitize(name),
                live.join(", ")
            )?;
        }
    }
    first_err.map_or(Ok(()), |e| Err(e.into()))
}

fn rm_named(names: &[String], json: bool) -> CmdResult {
    // Remove every name that can be; report the first failure (one line), after the others ran.
    let mut first_err = None;
    for name in names {
        let live = live_participants(name);
        match inspect::remove(name) {
            Ok(()) => {
                if json {
                    output::print_json(&serde_json::json!({
                        "name": name,
                        "removed": true,
                        "live": live,
                    }))?;
                } else {
                    writeln!(io::stdout(), "removed {}", text::sanitize(name))?;
                }
                if !live.is_empty() {
                    eprintln!(
                        "shmbus: warning: {} had {}: it keeps using the removed segment, which \
                         programs that open the name no longer find",
                        text::sanitize(name),
                        live.join(", ")
                    );
                }
            }
            Err(e) => {
                first_err.get_or_insert(e);
            }
        }
    }
    first_err.map_or(Ok(()), |e| Err(e.into()))
}

/// Why a stale segment is stale, for `--dry-run`.
fn why_stale(p: &inspect::Probe) -> String {
    format!(
        "creator pid {} exited, {} ({})",
        p.header.creator_pid,
        kinds::of(p.kind).stale_detail(p),
        p.kind
    )
}

fn rm_stale(dry_run: bool, scope: &Scope<'_>, json: bool) -> CmdResult {
    let ours = nix::unistd::geteuid().as_raw();
    let entries =
        inspect::list(false).map_err(|e| Failure(format!("cannot read /dev/shm: {e}")))?;
    let prefix = match scope {
        Scope::Prefix(p) => *p,
        Scope::AllIdle => "",
    };
    let mut out = io::stdout().lock();
    let mut count = 0;
    for e in entries {
        // Only our own, readable segments, of any kind: `list` uses lstat and opening refuses
        // symbolic links, so a link never gets here; a segment that cannot be read (or whose
        // participants cannot be) is not known to be stale.
        let (Some(name), Some(Ok(probe))) = (e.name, e.segment) else {
            continue;
        };
        if !name.starts_with(prefix) || e.uid != ours || !probe.is_stale().unwrap_or(false) {
            continue;
        }
        count += 1;
        if dry_run && json {
            output::print_json(&serde_json::json!({
                "name": name,
                "would_remove": true,
                "why": why_stale(&probe),
            }))?;
            continue;
        }
        if dry_run {
            writeln!(
                out,
                "would remove {}: {}",
                text::sanitize(&name),
                why_stale(&probe)
            )?;
            continue;
        }
        match inspect::remove(&name) {
            Ok(()) if json => writeln!(
                out,
                "{}",
                text::json_line(&serde_json::json!({
                    "name": name,
                    "removed": true,
                    "why": why_stale(&probe),
                }))
            )?,
            Ok(()) => writeln!(out, "removed {}", text::sanitize(&name))?,
            // Gone meanwhile (another cleaner): nothing to do.
            Err(shmbus::Error::NotFound { .. }) => {}
            Err(err) => return Err(err.into()),
        }
    }
    if count == 0 && !json {
        writeln!(out, "no stale segments")?;
    }
    Ok(())
}
