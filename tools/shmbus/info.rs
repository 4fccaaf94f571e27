//! `shmbus info NAME`: a segment's state, in its kind's report; `shmbus info FILE`: a journal's.

use clap::Args;
use shmbus::inspect;

use std::io::Write as _;

use crate::kinds::Payloads;
use crate::output::{CmdResult, Failure};
use crate::{journal, kinds};

#[derive(Args, Debug)]
pub(crate) struct InfoArgs {
    /// The segment name (the part after "shmbus." in /dev/shm): a bus, queue, board or records
    /// segment; or a journal file (see `shmbus --help`).
    name: String,
    /// Print one JSON object instead of text.
    #[arg(long)]
    json: bool,
    /// Buses and records segments: how long to watch the publish count, in milliseconds (10
    /// to 10000; default 200): the last publish and the rate come from its advance. Buses,
    /// queues and boards: a participant found holding a position or cell (taken, not
    /// completed) is looked at again this much later, and reported stalled if it still holds
    /// it.
    #[arg(long, value_name = "MS",
          value_parser = clap::value_parser!(u64).range(10..=10_000))]
    sample_ms: Option<u64>,
}

pub(crate) fn run(args: &InfoArgs) -> CmdResult {
    if journal::is_journal_path(&args.name) {
        if args.sample_ms.is_some() {
            return Err(Failure(format!(
                "--sample-ms applies to segments, not to journals; {:?} is a journal file",
                args.name
            )));
        }
        return journal::info_file(&args.name, args.json);
    }
    // An invalid name or a missing segment is the whole story: one error line, no report.
    inspect::validate_name(&args.name)?;
    if std::fs::symlink_metadata(inspect::segment_path(&args.name)).is_err() {
        return Err(shmbus::Error::NotFound {
            name: args.name.clone(),
        }
        .into());
    }
    // A segment whose kind cannot be read gets the bus's check-by-check report, which shows
    // where it fails.
    let report =
        kinds::of_segment(&args.name).report(&args.name, args.sample_ms, Payloads::Shown)?;
    let mut out = std::io::stdout().lock();
    if args.json {
        writeln!(out, "{}", report.json)?;
    } else {
        out.write_all(report.text.as_bytes())?;
    }
    report.failure.map_or(Ok(()), Err)
}
