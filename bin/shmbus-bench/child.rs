//! The roles this binary plays when it re-executes itself (`shmbus-bench __child ROLE ...`): echo,
//! consumer, idle subscriber, producer, c2c echo. This file only parses a role and hands it to the
//! experiment that plays it; what a child says to its parent is in `proto`. A child pins itself,
//! says `ready` on stdout, does its part, and ends with one JSON line of results when it has any.

use std::path::PathBuf;

use crate::engine::consume::ConsumerArgs;
use crate::engine::pingpong::EchoArgs;
use crate::latency::WaitMode;
use crate::sys;

#[derive(clap::Args, Debug)]
pub struct ChildArgs {
    #[command(subcommand)]
    role: Role,
}

#[derive(clap::Subcommand, Debug)]
enum Role {
    /// Answer c2c pings on a shared page.
    C2c {
        #[arg(long)]
        shm: PathBuf,
        #[arg(long)]
        core: usize,
    },
    /// Answer every message of `ping` with a stamped one on `pong`.
    Echo {
        #[command(flatten)]
        ends: EchoArgs,
        /// How to wait for each message.
        #[arg(long, value_enum, default_value_t)]
        wait: WaitMode,
    },
    /// Answer a raw futex ping-pong on a shared page.
    FutexEcho {
        #[arg(long)]
        shm: PathBuf,
        #[arg(long)]
        core: usize,
    },
    /// Answer every record of `ping` with one of `payload` bytes on `pong` (records segments).
    RecordsEcho {
        #[command(flatten)]
        ends: EchoArgs,
        #[arg(long)]
        payload: usize,
    },
    /// Read every record until the stop record (a records segment's throughput consumer).
    RecordsConsume(ConsumerArgs),
    /// Read everything, recording latencies of phase-1 messages, until the stop message.
    Consume(ConsumerArgs),
    /// Stay attached, polling rarely, until the producer leaves.
    Idle {
        #[arg(long)]
        bus: String,
        #[arg(long)]
        core: usize,
        #[arg(long)]
        poll_ms: u64,
    },
    /// One producer of a multi-producer run (see `mp`).
    Produce(crate::mp::ProduceArgs),
    /// The iceoryx2 echo.
    #[cfg(feature = "peers")]
    IoxEcho(crate::peer::EchoArgs),
    /// An idle iceoryx2 subscriber.
    #[cfg(feature = "peers")]
    IoxIdle(crate::peer::IdleArgs),
    /// An iceoryx2 fan-out consumer.
    #[cfg(feature = "peers")]
    IoxConsume(crate::peer::ConsumeArgs),
}

/// Plays the role `args` names, in a process that dies with its parent.
pub fn run(args: &ChildArgs) -> Result<(), String> {
    sys::die_with_parent();
    match &args.role {
        Role::C2c { shm, core } => crate::c2c::child(shm, *core),
        Role::Echo { ends, wait } => crate::latency::child_echo(ends, *wait),
        Role::FutexEcho { shm, core } => crate::latency::child_futex_echo(shm, *core),
        Role::RecordsEcho { ends, payload } => crate::records::child_echo(ends, *payload),
        Role::RecordsConsume(a) => crate::records::child_consume(a),
        Role::Consume(a) => crate::fanout::child_consume(a),
        Role::Idle { bus, core, poll_ms } => crate::fanout::child_idle(bus, *core, *poll_ms),
        Role::Produce(p) => crate::mp::child_produce(p),
        #[cfg(feature = "peers")]
        Role::IoxEcho(a) => crate::peer::child_echo(a),
        #[cfg(feature = "peers")]
        Role::IoxIdle(a) => crate::peer::child_idle(a),
        #[cfg(feature = "peers")]
        Role::IoxConsume(a) => crate::peer::child_consume(a),
    }
}
