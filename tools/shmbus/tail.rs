//! `shmbus tail NAME`: print a bus's or records segment's messages through a read-only
//! subscriber, following the name as `tail -F` does; `shmbus tail FILE`: a journal's.

use std::time::Duration;

use clap::Args;
use shmbus::{inspect, Start};

use crate::kinds::{self, StartAt, TailPlan};
use crate::output::{self, CmdResult, Format, Printer};
use crate::{journal, text};

#[derive(Args, Debug)]
pub(crate) struct TailArgs {
    /// The bus or records segment name; or a journal file (see `shmbus --help`).
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

pub(crate) fn run(args: &TailArgs) -> CmdResult {
    let printer = Printer {
        format: args.format,
        json: args.json,
    };
    if journal::is_journal_path(&args.name) {
        let file = journal::TailFile {
            file: &args.name,
            from: args.from,
            n: args.n,
            follow: args.follow,
        };
        return journal::tail_file(&file, &printer);
    }
    let mut plan = TailPlan {
        start: match args.from {
            StartAt::Newest => Start::Last(args.n),
            StartAt::Oldest => Start::Oldest,
            StartAt::Seq(s) => Start::Sequence(s),
        },
        from: args.from,
        n: args.n,
        follow: args.follow,
    };
    if args.follow && std::fs::symlink_metadata(inspect::segment_path(&args.name)).is_err() {
        // As `tail -F` waits for a file: say so once, then wait for the segment to appear.
        // Everything in a segment created after we started is new: print it from its oldest.
        inspect::validate_name(&args.name)?;
        output::install_stop_handler()?;
        eprintln!(
            "shmbus: {} does not exist yet; waiting for it to be created",
            text::sanitize(&args.name)
        );
        if !wait_for_segment(&args.name) {
            return Ok(());
        }
        plan.start = Start::Oldest;
    }
    kinds::of_segment(&args.name).tail(&args.name, &plan, &printer)
}

/// Waits until segment `name` exists and can be opened (as a bus or a records segment), or
/// until SIGINT/SIGTERM; returns whether it is there.
fn wait_for_segment(name: &str) -> bool {
    while !output::stopped() {
        // Once its header is complete, whatever its kind: the open that follows reports a
        // kind that tail does not read.
        if inspect::probe(name).is_ok() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    false
}
