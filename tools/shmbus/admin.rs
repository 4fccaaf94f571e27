//! `shmbus create`, `publish` and `rm`: the commands that change buses.

use std::io::{self, BufRead, Write};

use clap::Args;
use shmbus::{inspect, Bus, BusBuilder};

use crate::{text, CmdResult, Failure};

#[derive(Args, Debug)]
pub(crate) struct CreateArgs {
    /// The bus name: 1 to 200 characters of letters, digits, '.', '_' and '-'.
    name: String,
    /// Number of slots in the ring (a power of two).
    #[arg(long, default_value_t = shmbus::DEFAULT_SLOTS)]
    slots: u64,
    /// Largest message in bytes (payload capacity of each slot).
    #[arg(long, value_name = "BYTES", default_value_t = shmbus::DEFAULT_RAW_CAPACITY)]
    size: usize,
    /// Allow several producers to publish at once.
    #[arg(long)]
    multi_producer: bool,
    /// Permission bits, in octal.
    #[arg(long, default_value = "0600", value_parser = parse_mode)]
    mode: u32,
}

fn parse_mode(s: &str) -> Result<u32, String> {
    let digits = s.strip_prefix("0o").unwrap_or(s);
    match u32::from_str_radix(digits, 8) {
        Ok(m) if m <= 0o777 => Ok(m),
        _ => Err(format!(
            "expected octal permission bits such as 0600 or 0640, got {s:?}"
        )),
    }
}

pub(crate) fn create(a: &CreateArgs) -> CmdResult {
    let mut b = BusBuilder::new(&a.name)
        .slots(a.slots)
        .capacity(a.size)
        .permissions(a.mode);
    if a.multi_producer {
        b = b.multi_producer();
    }
    let bus = b.create()?;
    writeln!(
        io::stdout(),
        "created bus {}: {} slots of {} bytes, {} producer, mode {:04o}, {}",
        bus.name(),
        bus.slots(),
        bus.capacity(),
        crate::list::mode_name(bus.producer_mode()),
        a.mode,
        inspect::segment_path(bus.name()).display()
    )?;
    Ok(())
}

#[derive(Args, Debug)]
pub(crate) struct PublishArgs {
    /// The bus name.
    name: String,
    /// Messages to publish, one per argument. Without any, each line of stdin is a message.
    messages: Vec<String>,
}

pub(crate) fn publish(a: &PublishArgs) -> CmdResult {
    let bus = Bus::open(&a.name)?;
    let mut tx = bus.publisher()?;
    let mut first = None;
    let mut last = None;
    let mut send = |msg: &[u8]| -> CmdResult {
        if let Some(seq) = tx.publish_bytes(msg)? {
            first.get_or_insert(seq);
            last = Some(seq);
        }
        Ok(())
    };
    if a.messages.is_empty() {
        let mut line = Vec::new();
        let mut stdin = io::stdin().lock();
        loop {
            line.clear();
            if stdin.read_until(b'\n', &mut line)? == 0 {
                break;
            }
            let msg = line.strip_suffix(b"\n").unwrap_or(&line);
            send(msg.strip_suffix(b"\r").unwrap_or(msg))?;
        }
    } else {
        for m in &a.messages {
            send(m.as_bytes())?;
        }
    }
    let n = tx.stats().published;
    let dropped = tx.stats().dropped;
    match (first, last) {
        (Some(f), Some(l)) => writeln!(
            io::stdout(),
            "published {n} message{} to {} (seq {f}..{l})",
            plural(n),
            bus.name()
        ),
        _ => writeln!(io::stdout(), "published 0 messages to {}", bus.name()),
    }?;
    if dropped > 0 {
        return Err(Failure(format!(
            "{dropped} message{} dropped: older than a full lap of the ring",
            plural(dropped)
        )));
    }
    Ok(())
}

fn plural(n: u64) -> &'static str {
    if n == 1 {
        ""
    } else {
        "s"
    }
}

#[derive(Args, Debug)]
pub(crate) struct RmArgs {
    /// Buses to remove.
    #[arg(required_unless_present = "stale", conflicts_with = "stale")]
    names: Vec<String>,
    /// Remove every bus of ours whose creator and producers are all gone.
    #[arg(long)]
    stale: bool,
    /// With --stale: only print what would be removed.
    #[arg(long, requires = "stale")]
    dry_run: bool,
    /// With --stale: only buses whose name starts with PREFIX.
    #[arg(long, requires = "stale", value_name = "PREFIX")]
    prefix: Option<String>,
}

pub(crate) fn rm(a: &RmArgs) -> CmdResult {
    if a.stale {
        return rm_stale(a.dry_run, a.prefix.as_deref().unwrap_or(""));
    }
    // Remove every name that can be; report the first failure (one line), after the others ran.
    let mut first_err = None;
    for name in &a.names {
        match inspect::remove(name) {
            Ok(()) => writeln!(io::stdout(), "removed {name}")?,
            Err(e) => {
                first_err.get_or_insert(e);
            }
        }
    }
    first_err.map_or(Ok(()), |e| Err(e.into()))
}

fn rm_stale(dry_run: bool, prefix: &str) -> CmdResult {
    let ours = nix::unistd::geteuid().as_raw();
    let entries =
        inspect::list(false).map_err(|e| Failure(format!("cannot read /dev/shm: {e}")))?;
    let mut out = io::stdout().lock();
    let mut count = 0;
    for e in entries {
        // Only our own, readable buses: `list` uses lstat and opening refuses symbolic links, so
        // a link never gets here; a segment that cannot be read is not known to be stale.
        let (Some(name), Some(Ok(bus))) = (e.name, e.bus) else {
            continue;
        };
        if !name.starts_with(prefix) || e.uid != ours || !inspect::is_stale(&bus) {
            continue;
        }
        drop(bus);
        count += 1;
        if dry_run {
            writeln!(out, "would remove {}", text::sanitize(&name))?;
            continue;
        }
        match inspect::remove(&name) {
            Ok(()) => writeln!(out, "removed {name}")?,
            // Gone meanwhile (another cleaner): nothing to do.
            Err(shmbus::Error::NotFound { .. }) => {}
            Err(err) => return Err(err.into()),
        }
    }
    if count == 0 {
        writeln!(out, "no stale buses")?;
    }
    Ok(())
}
