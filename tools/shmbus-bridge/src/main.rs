//! `shmbus-bridge`: carries shmbus buses between hosts over zenoh, with end-to-end loss
//! accounting (docs/design.md §16).

use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod bench;
mod error;
mod export;
mod import;
mod ledger;
mod net;
mod stats;
mod wire;

/// Carries shmbus buses between hosts over zenoh.
///
/// `export NAME` publishes every message of a local bus on a zenoh key (shmbus/NAME by default)
/// with its sequence number; `import NAME` subscribes to the key and publishes into a local bus.
/// The importer accounts for every sequence number: received + lost == published, with losses
/// counted where they happened (on the exporting host, in transit, while no exporter ran, on
/// the importing host).
///
/// Defaults: reliable delivery with blocking congestion control, so nothing is lost between
/// the hosts while the link holds; a slow link then slows the exporter, which, if its own bus
/// laps it, sends a loss marker, never hiding the loss. Choose --best-effort and
/// --congestion drop to keep the exporter at full speed and count losses in transit instead.
#[derive(Parser, Debug)]
#[command(
    name = "shmbus-bridge",
    version,
    about,
    long_about,
    after_help = "\
Examples:
  # host A: publish bus \"prices\" on key shmbus/prices, listening for importers
  shmbus-bridge export prices --listen tcp/0.0.0.0:7447
  # host B: import it into a local bus \"prices\"
  shmbus-bridge import prices --connect tcp/hostA:7447
  # one host: import into another name, on the exported key
  shmbus-bridge import prices-copy --key shmbus/prices
  # latency and throughput through the bridge beside raw zenoh, over loopback
  shmbus-bridge bench"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Publish a local bus on zenoh
    Export(export::ExportArgs),
    /// Publish a zenoh key's stream into a local bus
    Import(import::ImportArgs),
    /// Latency and throughput through export→zenoh→import, beside raw zenoh in the same run
    Bench(bench::BenchArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match &cli.command {
        Command::Export(a) => export::run(a),
        Command::Import(a) => import::run(a),
        Command::Bench(a) => bench::run(a),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("shmbus-bridge: error: {e}");
            ExitCode::FAILURE
        }
    }
}
