//! `shmbus`: list, inspect, tail, watch, create, publish to and remove buses in `/dev/shm`.
//!
//! Everything here goes through the library's public API (`shmbus::inspect` for read-only
//! views); the inspector never reads segment offsets itself. Every string taken from a segment
//! or from `/dev/shm` is escaped before it reaches the terminal (see `text`).

mod admin;
mod info;
mod list;
mod tail;
mod text;
mod watch;
mod watch_view;

use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};

/// Inspect and drive shmbus buses: shared-memory broadcast rings in /dev/shm.
#[derive(Parser, Debug)]
#[command(name = "shmbus", version, about, after_help = MAIN_EXAMPLES)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

const MAIN_EXAMPLES: &str = "\
Examples:
  shmbus create prices --slots 1024 --size 240
  shmbus publish prices 'hello' 'world'
  shmbus tail prices --from oldest --follow
  shmbus list
  shmbus info prices
  shmbus watch prices
  shmbus rm prices

Every command exits with status 0 on success; on failure it prints one line
'shmbus: error: ...' on stderr and exits with status 1 (2 for a usage error).";

#[derive(Subcommand, Debug)]
enum Command {
    /// List the buses in /dev/shm with their shape, activity and liveness.
    #[command(after_help = "\
Columns: NAME, SLOTS, CAP (payload bytes per slot), TYPE (message type), MODE (single or
multi producer), PUBLISHED (messages since creation), LAST (time since the last publish by
a live producer, '-' if none), CREATOR (pid, alive or gone), PROD (live producers),
STALE (no live producer and creator gone), SIZE, PERM. Unreadable or corrupt segments are
listed with their error.

Examples:
  shmbus list
  shmbus list --all          # also other programs' files in /dev/shm
  shmbus list --json | jq '.[] | select(.bus.stale) | .name'")]
    List(list::ListArgs),

    /// Show a bus's whole header, each validity check, its producers and a slot census.
    #[command(after_help = "\
Each check of the opening pipeline is shown as ok, FAIL (with the reason) or skipped.
Exits with status 1 if the bus cannot be opened.

Examples:
  shmbus info prices
  shmbus info prices --json | jq .checks")]
    Info(info::InfoArgs),

    /// Print a bus's messages; with --follow, keep printing new ones until Ctrl-C.
    #[command(after_help = "\
Opens the bus read-only: tailing never disturbs producers or other subscribers.
Each message is one line: sequence number, length and payload, separated by tabs.
A subscriber that falls behind by a whole ring prints 'lost N messages (seq A..B)'
(A and B inclusive) and goes on with the oldest message still intact.
Control characters, backslashes and invalid UTF-8 in payloads are escaped.

Examples:
  shmbus tail prices                    # the last 10 messages
  shmbus tail prices -n 100 --follow    # the last 100, then new ones until Ctrl-C
  shmbus tail prices --from oldest -n 5 # the 5 oldest messages still in the ring
  shmbus tail prices --from 4711        # from sequence number 4711
  shmbus tail prices --format hex
  shmbus tail prices --format json --json --follow | jq .json")]
    Tail(tail::TailArgs),

    /// Live view of a bus: message and byte rates, a rate sparkline, cursor, producers.
    #[command(after_help = "\
Message rates come from the write cursor; byte rates from message lengths that a
read-only subscriber samples. Press q (or Esc, or Ctrl-C) to quit.

Example:
  shmbus watch prices")]
    Watch(watch::WatchArgs),

    /// Create a bus; it stays in /dev/shm after the command exits, until removed.
    #[command(after_help = "\
The slot count must be a power of two. A bus made here has no live producer and its
creator exits at once, so `shmbus rm --stale` counts it stale while nothing publishes.

Examples:
  shmbus create prices --slots 1024 --size 240
  shmbus create events --slots 65536 --size 48 --multi-producer --mode 0640")]
    Create(admin::CreateArgs),

    /// Publish messages to a bus: the arguments, or one message per line of stdin.
    #[command(after_help = "\
Attaches a producer for the duration of the command. A single-producer bus refuses a
second live producer, so this fails while another program publishes to such a bus.

Examples:
  shmbus publish prices hello world     # two messages
  printf 'a\\nb\\n' | shmbus publish prices # one message per line (without the newline)")]
    Publish(admin::PublishArgs),

    /// Remove buses, or every stale bus of ours.
    #[command(after_help = "\
Processes that have a removed bus open keep using it; new ones no longer find it.
--stale removes only buses owned by us whose creator and producers are all gone; it never
follows symbolic links and skips segments it cannot read.

Examples:
  shmbus rm prices events
  shmbus rm --stale --dry-run
  shmbus rm --stale
  shmbus rm --stale --prefix test-")]
    Rm(admin::RmArgs),
}

/// Payload rendering of `tail`.
#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
enum Format {
    /// UTF-8 text, with control characters and invalid bytes escaped.
    Utf8,
    /// Lower-case hexadecimal.
    Hex,
    /// The payload parsed as JSON when it is valid JSON, else hex.
    Json,
}

/// The one failure type of the commands: a message for the single `shmbus: error:` line.
/// An empty message is a quiet exit: the reader of our output went away.
#[derive(Debug)]
struct Failure(String);

impl From<shmbus::Error> for Failure {
    fn from(e: shmbus::Error) -> Self {
        Failure(e.to_string())
    }
}

impl From<std::io::Error> for Failure {
    fn from(e: std::io::Error) -> Self {
        // `shmbus list | head -1`: a closed pipe ends the command, it is not an error to report.
        if e.kind() == std::io::ErrorKind::BrokenPipe {
            return Failure(String::new());
        }
        Failure(e.to_string())
    }
}

type CmdResult = Result<(), Failure>;

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => return usage_error(e),
    };
    let result = match cli.command {
        Command::List(a) => list::run(&a),
        Command::Info(a) => info::run(&a),
        Command::Tail(a) => tail::run(&a),
        Command::Watch(a) => watch::run(&a),
        Command::Create(a) => admin::create(&a),
        Command::Publish(a) => admin::publish(&a),
        Command::Rm(a) => admin::rm(&a),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(Failure(msg)) if msg.is_empty() => ExitCode::SUCCESS,
        Err(Failure(msg)) => {
            eprintln!("shmbus: error: {}", text::sanitize(&msg));
            ExitCode::FAILURE
        }
    }
}

/// Help and version go to stdout as clap prints them; a usage error becomes one line.
fn usage_error(e: clap::Error) -> ExitCode {
    use clap::error::ErrorKind;
    if matches!(
        e.kind(),
        ErrorKind::DisplayHelp
            | ErrorKind::DisplayVersion
            | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand
    ) {
        let _ = e.print();
        return if e.kind() == ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand {
            ExitCode::from(2)
        } else {
            ExitCode::SUCCESS
        };
    }
    let rendered = e.render().to_string();
    let first = rendered
        .lines()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("invalid arguments");
    let first = first.strip_prefix("error: ").unwrap_or(first);
    eprintln!(
        "shmbus: error: {}; see 'shmbus --help'",
        text::sanitize(first)
    );
    ExitCode::from(2)
}
