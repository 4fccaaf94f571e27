//! `shmbus push` and `shmbus pop`: items into and out of a work queue.

use std::io::{self, BufRead, Write};
use std::time::Duration;

use clap::Args;
use shmbus::{Queue, QueueBuilder, SendError};

use crate::kinds::{trusting, Trust};
use crate::output::{CmdResult, Failure, Format};
use crate::text;

#[derive(Args, Debug)]
pub(crate) struct PushArgs {
    /// The queue name.
    name: String,
    /// Items to push, one per argument. Without any, each line of stdin is an item.
    items: Vec<String>,
    /// Each item (argument or stdin line) is hexadecimal bytes, e.g. `0700000009000000`: how
    /// the items of a typed queue are given, exactly the type's size each.
    #[arg(long)]
    hex: bool,
    /// Fail at once when the queue is full instead of waiting for room.
    #[arg(long)]
    no_wait: bool,
    #[command(flatten)]
    trust: Trust,
    /// Print the summary as one JSON object ({"name", "pushed"}) instead of text.
    #[arg(long)]
    json: bool,
}

/// Opens queue `name` for sending or receiving, trusting what the flags say.
fn open(name: &str, trust: &Trust) -> shmbus::Result<Queue> {
    trusting!(QueueBuilder::new(name), trust).open()
}

pub(crate) fn push(a: &PushArgs) -> CmdResult {
    let q = open(&a.name, &a.trust)?;
    // Typed queues too: each item is then one value's bytes, exactly its size.
    let mut tx = q.bytes_sender()?;
    let mut said_full = false;
    let mut pushed = 0u64;
    let mut send = |given: &[u8]| -> CmdResult {
        let decoded;
        let item = if a.hex {
            decoded = hex_item(&String::from_utf8_lossy(given), pushed)?;
            &decoded[..]
        } else {
            given
        };
        let r = match tx.try_send(item) {
            Err(SendError::Full(_)) if !a.no_wait => {
                if !said_full {
                    // Waiting is the promise, but a person should know why nothing happens.
                    eprintln!(
                        "shmbus: queue {} is full ({}); waiting for room (--no-wait fails \
                         instead)",
                        text::sanitize(&a.name),
                        text::count(q.capacity(), "item")
                    );
                    said_full = true;
                }
                tx.send(item)
            }
            r => r,
        };
        match r {
            Ok(()) => {
                pushed += 1;
                Ok(())
            }
            Err(SendError::Full(_)) => Err(Failure(format!(
                "queue {} is full ({}); pushed {pushed} before it",
                a.name,
                text::count(q.capacity(), "item")
            ))),
            Err(e @ SendError::TooLarge { .. }) => Err(Failure(format!(
                "item {} is {} bytes: {e}; pushed {pushed} before it",
                pushed + 1,
                e.into_inner().len()
            ))),
            Err(e @ SendError::WrongSize { .. }) => Err(Failure(format!(
                "item {} is {} bytes, but {e} (give each as --hex); pushed {pushed} before it",
                pushed + 1,
                e.into_inner().len()
            ))),
            // The command attaches its own sender; it never forks.
            Err(e @ SendError::UsedAfterFork(_)) => Err(Failure(e.to_string())),
        }
    };
    if a.items.is_empty() {
        let mut line = Vec::new();
        let mut stdin = io::stdin().lock();
        loop {
            line.clear();
            if stdin.read_until(b'\n', &mut line)? == 0 {
                break;
            }
            let item = line.strip_suffix(b"\n").unwrap_or(&line);
            send(item.strip_suffix(b"\r").unwrap_or(item))?;
        }
    } else {
        for item in &a.items {
            send(item.as_bytes())?;
        }
    }
    if a.json {
        return crate::output::print_json(&serde_json::json!({ "name": a.name, "pushed": pushed }));
    }
    writeln!(
        io::stdout(),
        "pushed {} to queue {}",
        text::count(pushed, "item"),
        a.name
    )?;
    Ok(())
}

/// The bytes of a `--hex` item (`pushed` items went before it).
fn hex_item(text: &str, pushed: u64) -> Result<Vec<u8>, Failure> {
    text::parse_hex(text).map_err(|e| {
        Failure(format!(
            "item {}: {e}; pushed {pushed} before it",
            pushed + 1
        ))
    })
}

#[derive(Args, Debug)]
pub(crate) struct PopArgs {
    /// The queue's name, or a lanes segment's (pop then attaches as its consumer and prints
    /// each record with its lane).
    name: String,
    /// How many items to take: without --follow, at most this many of those in the queue now;
    /// with --follow, stop after this many.
    #[arg(short = 'n', long = "count")]
    count: Option<u64>,
    /// Wait for items (until Ctrl-C, or until -n items were taken).
    #[arg(long)]
    follow: bool,
    /// How to print each item.
    #[arg(long, value_enum, default_value_t = Format::Utf8)]
    format: Format,
    /// One JSON object per item instead of text.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    trust: Trust,
}

pub(crate) fn pop(a: &PopArgs) -> CmdResult {
    if crate::kinds::of_segment(&a.name).word() == "lanes" {
        let limit = a.count.unwrap_or(if a.follow { u64::MAX } else { 1 });
        return crate::kinds::lanes::pop(&a.name, limit, a.follow, a.format, a.json, &a.trust);
    }
    let q = open(&a.name, &a.trust)?;
    let mut rx = q.bytes_receiver()?;
    let limit = a.count.unwrap_or(if a.follow { u64::MAX } else { 1 });
    let mut out = io::stdout().lock();
    let mut taken = 0;
    while taken < limit {
        let item = if a.follow {
            // Short waits, so that a closed output is noticed between items.
            match rx.recv_timeout(Duration::from_millis(200)) {
                Some(item) => item,
                None => {
                    out.flush()?;
                    continue;
                }
            }
        } else {
            match rx.try_recv() {
                Some(item) => item,
                None => break,
            }
        };
        if a.json {
            // The keys `tail --json` uses, without a sequence number.
            writeln!(out, "{}", a.format.json(None, item))?;
        } else {
            writeln!(out, "{}\t{}", item.len(), a.format.render(item))?;
        }
        taken += 1;
        if a.follow {
            out.flush()?;
        }
    }
    if taken == 0 && !a.follow {
        // Nothing on stdout (scripts read items there), but a person sees why.
        out.flush()?;
        eprintln!("shmbus: queue {} is empty", text::sanitize(&a.name));
    }
    Ok(())
}
