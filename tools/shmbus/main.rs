//! `shmbus`: list, inspect, tail, watch, create, publish to and remove segments in `/dev/shm`
//! (buses, queues, records segments, boards), and record and replay journals.
//!
//! Everything here goes through the library's public API (`shmbus::inspect` for read-only
//! views); the inspector never reads segment offsets itself. Every string taken from a segment
//! or from `/dev/shm` is escaped before it reaches the terminal (see `text`).
//!
//! The modules stand in layers, each using only those below it: `text` and `output` (what
//! every command prints through); `kinds` (one file per segment kind behind one trait); the
//! commands, each of which decides a segment's kind once (`kinds::of_segment`) and asks that
//! kind; this file, which parses the command line and runs one command.

// Leaves: what every module prints through.
mod activity;
mod keys;
mod metrics;
mod output;
mod stalls;
mod text;
mod watch_view;

// One file per segment kind, behind one trait.
mod kinds;

// The commands.
mod admin;
mod docs;
mod hz;
mod info;
mod journal;
mod list;
mod push_pop;
mod serve;
mod set_board;
mod tail;
mod watch;

use std::process::ExitCode;

use clap::{CommandFactory, Parser, Subcommand};

use crate::output::{CmdResult, Failure};

/// Inspect and drive shmbus segments in /dev/shm: broadcast buses, work queues, boards,
/// records segments and lanes.
///
/// A bus broadcasts fixed-size messages to every subscriber; a queue hands each item to one
/// receiver; a records segment carries messages of any size in one byte ring; a board holds
/// the latest value of each of its cells; lanes give each producer a byte ring of its own that
/// one consumer reads. `shmbus create --help` shows each kind's options.
#[derive(Parser, Debug)]
#[command(name = "shmbus", version, about, after_help = MAIN_EXAMPLES)]
pub(crate) struct Cli {
    #[command(subcommand)]
    command: Command,
}

const MAIN_EXAMPLES: &str = "\
Examples:
  shmbus create prices --slots 1024 --size 240
  shmbus publish prices 'hello' 'world'
  shmbus tail prices --from oldest --follow
  shmbus hz prices
  shmbus list
  shmbus info prices
  shmbus watch prices
  shmbus rm prices
  shmbus create jobs --kind queue --slots 256 --size 64
  shmbus push jobs 'job 1' 'job 2'
  shmbus pop jobs -n 10
  shmbus create streams --kind lanes --lanes 64 --bytes 65536
  shmbus publish streams 'frame 1' 'frame 2'
  shmbus pop streams --follow
  shmbus serve                         # http://127.0.0.1:9464/ and /metrics
  shmbus record prices run.journal --duration 60
  shmbus replay run.journal prices-copy --rate original
  shmbus completions bash > ~/.local/share/bash-completion/completions/shmbus
  shmbus man | man -l -

tail and info also read journal files: an argument that names an existing file, or
that starts with '/', './' or '../', is a journal file; anything else is a bus name.

Every command exits with status 0 on success; on failure it prints one line
'shmbus: error: ...' on stderr and exits with status 1. A usage error (unknown
option, missing argument, bad value) prints the whole explanation and exits with 2.

A segment is stale when no participant is attached (producer, writer, sender or
receiver) and the process that created it has exited: nothing will write to it unless
a new participant attaches.";

#[derive(Subcommand, Debug)]
enum Command {
    /// List the segments in /dev/shm (buses, queues, boards, records) with their shape,
    /// activity and liveness.
    #[command(after_help = "\
One table per kind, each with its own columns; the first column is the name.
Buses: SLOTS, CAP (payload bytes per slot), TYPE (message type), MODE (single or multi
producer), PUBLISHED (messages since creation), RATE and LAST (see below), CREATOR (pid,
alive or gone), PROD (live producers).
Queues: CAPACITY (items), ITEM (bytes per item), TYPE, LEN (items in the queue), HEAD and
TAIL (next positions taken by receivers and senders), SENDERS and RECEIVERS (live ones),
BOUND (the stall bound: how long a stopped sender or receiver is waited for, or none),
PASSED (positions passed because a live participant held them past the bound).
Boards: CELLS, VALUE (bytes per value), TYPE, KEYS (whether cells are named), WRITERS.
Records: RING (ring size), MAX (largest record), PUBLISHED (records), BYTES (published),
RATE, LAST, PRODUCER. Every kind: CREATOR, STALE (yes when no participant is attached and the
creator has exited), SIZE, PERM.
RATE and LAST come from the publish count (write cursor), which moves with every publish:
list reads it twice, --sample-ms apart (200 ms by default; with --watch, at every
listing too). RATE is publishes per second over the last period. LAST is when the last
publish was: '<200ms' (during the last period), '3.0s' (that long ago, to within one
period), '>200ms' (not since list began looking: it does not know how long before), '-'
(never). (The producers' own activity stamps, shown by info, are written only when they
attach and once in 1024 publishes, so they say little about a slow producer.)
Segments that cannot be read (corrupt, unreadable, foreign) follow in a last table,
each with why. With --json, every entry has a kind (bus, queue, board, records, error
or foreign) and an object of that name with its state.

Examples:
  shmbus list
  shmbus list --prefix md-   # only segments whose name starts with md-
  shmbus list --watch        # redrawn every second until q or Ctrl-C
  shmbus list --all          # also other programs' files in /dev/shm
  shmbus list --json | jq '.[] | select(.bus.stale) | .name'")]
    List(list::ListArgs),

    /// Show a segment: for a bus its whole header, each validity check, its producers and a
    /// slot census; for a queue, board or records segment its state.
    #[command(after_help = "\
Each check of the opening pipeline is shown as ok, FAIL (with the reason), WARN or
skipped. WARN marks an owner or mode that a default open refuses but that can be
trusted explicitly (publish --accept-other-owner / --accept-shared-write): the bus is
readable, so info goes on and exits with status 0. Any FAIL exits with status 1.

Examples:
  shmbus info prices
  shmbus info prices --sample-ms 2000   # a slow producer: watch its cursor longer
  shmbus info prices --json | jq .checks

'last publish' comes from the write cursor, read twice --sample-ms apart (see `shmbus list
--help`); each producer's 'attached or stamped' age is its own activity stamp, written when
it attaches and once in 1024 publishes.")]
    Info(info::InfoArgs),

    /// Serve every segment over HTTP: Prometheus metrics, JSON and a live dashboard page.
    #[command(after_help = "\
Endpoints:
  GET /                      a live dashboard: one row per segment (kind, shape, rate, a
                             sparkline of the last minute), a detail view per segment
  GET /metrics               Prometheus text format: per segment (labels name, kind) what
                             it counts: published, bytes, queue depth, board cells written,
                             live participants by role, staleness, size; and the scan's
                             duration
  GET /api/segments          what `shmbus list --json` prints
  GET /api/segments/NAME     what `shmbus info NAME --json` prints (a board's values only
                             with --show-payloads; a bus's check-by-check report even when
                             a check fails). 404 if there is no such segment.
  GET /api/segments/NAME/hz  what `shmbus hz NAME --window 1 --count 1 --json` prints: a
                             bus's or records segment's rates over one second, and the
                             losses of a read-only subscriber that reads every message
                             (the segment keeps no loss count). At most 4 at once.

The server only reads: every segment is opened read-only, so it needs no write permission
and disturbs no producer. It rescans /dev/shm at most every --refresh-ms, so segments that
appear or go are seen at the next scan; a file that cannot be read as a segment (corrupt,
foreign, permission denied, a FIFO or a symbolic link under a segment's name) is listed
with its error and counted with shmbus_segment_readable 0.

It listens on loopback unless told otherwise. Anyone who can reach the port can read the
segments' names, shapes, counts and participants' pids: a non-loopback --listen is refused
unless --allow-remote is given. Without --allow-remote, a request whose Host header is not
localhost or a loopback address is refused (403), so that a web page elsewhere cannot read
the segments through a browser on this host (DNS rebinding). Payloads are never served
unless --show-payloads is given.
There is no authentication and no TLS: put a reverse proxy in front for either.

The first line on stdout is the address listened on ('listening on http://127.0.0.1:9464/');
with --listen 127.0.0.1:0 it names the port picked. Runs until interrupted (Ctrl-C).

Examples:
  shmbus serve
  shmbus serve --listen 127.0.0.1:0            # any free port, printed on stdout
  shmbus serve --prefix md- --refresh-ms 1000
  shmbus serve --listen 0.0.0.0:9464 --allow-remote
  curl -s localhost:9464/metrics | grep shmbus_queue_depth")]
    Serve(serve::ServeArgs),

    /// Print a bus's messages; with --follow, keep printing new ones until Ctrl-C.
    #[command(after_help = "\
Opens the bus read-only: tailing never disturbs producers or other subscribers.
With --follow, tail follows the bus by name, as `tail -F` does: a bus that does not exist
yet is waited for (said once on stderr), then printed from its oldest message; when the
bus is removed it says so on stderr and waits; when a bus of that name is created again it
says so and prints the new bus's messages from its oldest. Records segments are tailed the
same way.
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

    /// Live view of a bus, records segment, lanes or queue: rates, a rate sparkline, counts,
    /// producers, and who is stalled.
    #[command(after_help = "\
Message rates come from the write cursor; a bus's byte rate from message lengths that a
read-only subscriber samples. 'last publish' is when the cursor last moved, looked at every
100 ms ('over 5.0s ago (none since watch began)' until it moves). On a records segment the view shows records/s, the bytes
it counted as published (so the byte rate is exact), its ring, and how many records the
sampling subscriber lost. On a queue it shows the send rate (the tail's advance) and the
live senders; nothing is received.
'stalled' names a participant holding a position it has not completed, seen at more than
one refresh, and for how long watch has seen it: a queue's sender between claim and
publish or receiver between claim and free (or one passed after the stall bound that
still holds its slot), a multi-producer bus's producer mid-publish. The longest is shown,
with how many others. Press q (or Esc, or Ctrl-C) to quit.

Example:
  shmbus watch prices")]
    Watch(watch::WatchArgs),

    /// Print a bus's (or records segment's) rates and loss rate, once per window, without a UI.
    #[command(after_help = "\
Each window is split into 100 ms ticks. msgs/s (records/s on a records segment) is the
write cursor's advance over the whole window (mean), with the min, max and standard
deviation of the per-tick rates. On a bus, bytes/s comes from the lengths a read-only
subscriber reads; on a records segment, from the bytes it counted as published. The
loss rate comes from that subscriber, which reads every item: 'lost' counts items
overwritten before it could read them (the ring lapped it).
Prints one line per window until Ctrl-C, or --count windows.

Examples:
  shmbus hz prices
  shmbus hz prices --window 10
  shmbus hz prices --window 2 --count 1 --json | jq .msgs_per_s.mean")]
    Hz(hz::HzArgs),

    /// Create a segment of any kind (bus, queue, records, board or lanes); it stays in /dev/shm
    /// after the command exits, until removed.
    #[command(after_help = "\
Kinds and the options each takes (an option given to a kind that does not take it is
refused):
  bus      broadcast: every subscriber sees every message; a subscriber that falls a
           whole ring behind loses the oldest. --slots N (a power of two, default 1024),
           --size BYTES per message (default 240), --multi-producer, --stall-bound-ms N
           (multi-producer only: pass a stopped producer's message after N ms, default
           1000, 0 = wait for it), --wakeup barrier|fence (default barrier: see --help).
  queue    work queue: each item goes to exactly one receiver (push, pop).
           --slots N items (default 1024), --size BYTES per item (default 240),
           --stall-bound-ms N (pass a stopped sender's or receiver's position after N
           ms, default 1000, 0 = wait for it as long as it lives).
  records  messages of any size up to a quarter of one byte ring (publish, tail, watch).
           --bytes SIZE of the ring (a power of two from 4096, default 1048576).
  board    the latest value of each of N cells, set and read by index or key name (set,
           board). --cells N and/or --keys a,b,... (one of them is needed), --size BYTES
           per value (default 64), --single-writer (one writer at a time, no CAS).
  lanes    a pool of byte rings, one per producer, read in place by one consumer (publish
           acquires a lane, pop consumes). --lanes N (1 to 4096, default 64), --bytes SIZE
           per lane (a power of two from 4096, a multiple of the page size, default 65536).
--mode applies to every kind.

A segment made here has no live participant and its creator exits at once, so it counts
as stale until something uses it; this is why `shmbus rm --stale` asks for --prefix or
--all-idle. A mode writable by group or others (such as 0660) makes programs refuse the
segment unless they trust it explicitly (`shmbus publish --accept-shared-write`).

Examples:
  shmbus create prices --slots 1024 --size 240
  shmbus create events --slots 65536 --size 48 --multi-producer --mode 0640
  shmbus create jobs --kind queue --slots 256 --size 64
  shmbus create log --kind records --bytes 1048576
  shmbus create joints --kind board --cells 3 --size 64 --keys hip,knee,ankle
  shmbus create streams --kind lanes --lanes 256 --bytes 65536")]
    Create(kinds::CreateArgs),

    /// Publish messages to a bus or records to a records segment: the arguments, a file, or
    /// one per line of stdin.
    #[command(after_help = "\
Attaches a producer for the duration of the command. A single-producer bus (and every
records segment) refuses a second live producer, so this fails while another program
publishes to it. Every option works on both kinds; on a records segment each message is
one record. If a message is refused (too large for a slot, or for the records ring),
nothing after it is sent and the error says which message it was and what was published
before it. Ctrl-C stops publishing and still prints what was published.

Examples:
  shmbus publish prices hello world     # two messages
  printf 'a\\nb\\n' | shmbus publish prices # one message per line (without the newline)
  shmbus publish prices --hex 00ff10 cafe
  shmbus publish prices --file tick.bin # the whole file as one message
  shmbus publish prices ping --repeat 1000 --rate 100   # 1000 messages over 10 s")]
    Publish(admin::PublishArgs),

    /// Remove segments, or the stale segments of ours.
    #[command(after_help = "\
Processes that have a removed segment open keep using it; new ones no longer find it.
Removing a segment that has live participants (a producer, writer, sender or receiver)
is done, as `rm` removes an open file, with a warning on stderr that names them; use
--stale to remove only segments nobody uses.
--stale removes only segments owned by us that are stale, of every kind: no participant
attached (no producer on a bus or records segment, no writer on a board, no sender or
receiver on a queue) and the creator exited. A segment made by `shmbus create` that
nothing uses yet is stale too, so --stale needs a scope: --prefix P (only names starting
with P) or --all-idle (every stale segment of ours). It never follows symbolic links and
skips segments it cannot read. --prefix and --all-idle only work with --stale; --dry-run
works with both forms and removes nothing.

Examples:
  shmbus rm prices events
  shmbus rm --dry-run prices             # would it go, and who uses it
  shmbus rm --stale --all-idle --dry-run # what would go, and why
  shmbus rm --stale --prefix test-
  shmbus rm --stale --all-idle")]
    Rm(admin::RmArgs),

    /// Push items to a work queue: the arguments, or one item per line of stdin.
    #[command(after_help = "\
Attaches a sender for the duration of the command. While the queue is full it waits
for room, unless --no-wait is given (then it fails, saying how many items it pushed).

Examples:
  shmbus push jobs 'job 1' 'job 2'
  printf 'a\\nb\\n' | shmbus push jobs --no-wait")]
    Push(push_pop::PushArgs),

    /// Take items from a work queue: each item taken here goes to no other receiver.
    #[command(after_help = "\
Attaches a receiver: the items printed are removed from the queue. Each item is one
line: its length and payload, separated by a tab (or one JSON object with --json).
Without --follow it takes at most -n items (default 1) of those in the queue now.

Examples:
  shmbus pop jobs
  shmbus pop jobs -n 100
  shmbus pop jobs --follow --format hex
  shmbus pop jobs -n 5 --json")]
    Pop(push_pop::PopArgs),

    /// Set one cell of a board (made with `shmbus create NAME --kind board`).
    #[command(after_help = "\
Attaches a writer for the duration of the command. The cell is an index or a key name.

Examples:
  shmbus set joints 1 'angle=0.25'
  shmbus set joints knee 0a0b0c --hex")]
    Set(set_board::SetArgs),

    /// Print a board's cells: index, key, version, age and value; live with --watch.
    #[command(after_help = "\
Opens the board read-only. VERSION counts a cell's updates (0: never set); AGE is the time
since the value was set. Control characters, backslashes and invalid UTF-8 are escaped.
Boards are created with `shmbus create NAME --kind board --cells N --size BYTES [--keys a,b]`.

Examples:
  shmbus board joints
  shmbus board joints --watch
  shmbus board joints --json | jq '.[] | select(.version > 0)'")]
    Board(set_board::BoardArgs),

    /// Record a bus's messages and losses into a new journal file, until Ctrl-C, -n or --duration.
    #[command(after_help = "\
Subscribes read-only: recording never disturbs producers or other subscribers. Each
message is kept with its sequence number, its receive time and its payload; a lap
('lost N messages (seq A..B)') is kept as a loss entry. The header keeps the bus's shape
and message type. A recorder killed at any instant leaves a journal that reads cleanly
up to its last complete entry. Read it with `shmbus tail FILE` and `shmbus info FILE`.

Examples:
  shmbus record prices run.journal                  # from now on, until Ctrl-C
  shmbus record prices run.journal --from oldest -n 1000
  shmbus record prices run.journal --duration 30 --json")]
    Record(journal::RecordArgs),

    /// Publish a journal's messages into a bus, created with the recorded shape if absent.
    #[command(after_help = "\
--rate original keeps the recorded gaps between messages; max publishes as fast as
the bus takes them; a number is messages per second. Loss entries publish nothing;
the summary counts them. The replayed messages get the bus's own sequence numbers.

Examples:
  shmbus replay run.journal prices-copy
  shmbus replay run.journal prices-copy --rate max --from 4711
  shmbus replay run.journal prices-copy --rate 1000 --json")]
    Replay(journal::ReplayArgs),

    /// Print a shell completion script for shmbus (bash, zsh, fish, elvish or powershell).
    #[command(after_help = "\
Examples:
  shmbus completions bash > ~/.local/share/bash-completion/completions/shmbus
  shmbus completions zsh > ~/.zfunc/_shmbus     # with fpath+=~/.zfunc before compinit
  shmbus completions fish > ~/.config/fish/completions/shmbus.fish")]
    Completions(docs::CompletionsArgs),

    /// Print the manual page (roff), or write one page per command into a directory.
    #[command(after_help = "\
Examples:
  shmbus man | man -l -
  shmbus man --dir ~/.local/share/man/man1     # shmbus.1, shmbus-list.1, ...")]
    Man(docs::ManArgs),
}

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
        Command::Hz(a) => hz::run(&a),
        Command::Create(a) => admin::create(&a),
        Command::Publish(a) => admin::publish(&a),
        Command::Rm(a) => admin::rm(&a),
        Command::Push(a) => push_pop::push(&a),
        Command::Pop(a) => push_pop::pop(&a),
        Command::Set(a) => set_board::set(&a),
        Command::Board(a) => set_board::show(&a),
        Command::Record(a) => journal::record(&a),
        Command::Replay(a) => journal::replay(&a),
        Command::Completions(a) => docs::completions(&a, Cli::command()),
        Command::Man(a) => docs::man(&a, Cli::command()),
        Command::Serve(a) => serve::run(&a),
    };
    finish(result)
}

/// The exit status of a command's result, its error printed as the one `shmbus: error:` line.
fn finish(result: CmdResult) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(Failure(msg)) if msg.is_empty() => ExitCode::SUCCESS,
        Err(Failure(msg)) => {
            eprintln!("shmbus: error: {}", text::sanitize(&msg));
            ExitCode::FAILURE
        }
    }
}

/// Help and version go to stdout as clap prints them; a usage error goes to stderr whole (what
/// is wrong, the valid values, the usage line), prefixed like every other error.
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
    let body = rendered.strip_prefix("error: ").unwrap_or(&rendered);
    eprint!("shmbus: error: {}", text::sanitize_lines(body));
    ExitCode::from(2)
}
