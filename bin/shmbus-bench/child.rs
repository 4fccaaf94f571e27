//! The roles this binary plays when it re-executes itself (`shmbus-bench __child ROLE ...`): echo,
//! consumer, idle subscriber, producer, c2c echo. A child pins itself, says `ready` on stdout, does
//! its part, and ends with one JSON line of results when it has any.

use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use shmbus::{Bus, Recv, Start};

use crate::clock::ClockKind;
use crate::latency::stamp_of;
use crate::stats::{histogram, TickSummary};
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
        #[arg(long)]
        ping: String,
        #[arg(long)]
        pong: String,
        #[arg(long)]
        core: usize,
        #[arg(long, value_enum)]
        clock: ClockKind,
        /// Answer with our receive stamp instead of the message's own word.
        #[arg(long)]
        stamp: bool,
        /// How to wait for each message.
        #[arg(long, value_enum, default_value_t)]
        wait: crate::latency::WaitMode,
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
        #[arg(long)]
        ping: String,
        #[arg(long)]
        pong: String,
        #[arg(long)]
        core: usize,
        #[arg(long, value_enum)]
        clock: ClockKind,
        #[arg(long)]
        stamp: bool,
        #[arg(long)]
        payload: usize,
    },
    /// Read every record until the stop record (a records segment's throughput consumer).
    RecordsConsume {
        #[arg(long)]
        bus: String,
        #[arg(long)]
        core: usize,
        #[arg(long, value_enum)]
        clock: ClockKind,
    },
    /// Read everything, recording latencies of phase-1 messages, until the stop message.
    Consume {
        #[arg(long)]
        bus: String,
        #[arg(long)]
        core: usize,
        #[arg(long, value_enum)]
        clock: ClockKind,
    },
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

/// Writes one line to stdout, where the parent reads it.
pub fn say(line: &str) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}

pub fn run(args: &ChildArgs) -> Result<(), String> {
    sys::die_with_parent();
    match &args.role {
        Role::C2c { shm, core } => crate::c2c::child(shm, *core),
        Role::Echo {
            ping,
            pong,
            core,
            clock,
            stamp,
            wait,
        } => crate::latency::child_echo(ping, pong, *core, *clock, *stamp, *wait),
        Role::FutexEcho { shm, core } => crate::latency::child_futex_echo(shm, *core),
        Role::RecordsEcho {
            ping,
            pong,
            core,
            clock,
            stamp,
            payload,
        } => crate::records::child_echo(ping, pong, *core, *clock, *stamp, *payload),
        Role::RecordsConsume { bus, core, clock } => {
            crate::records::child_consume(bus, *core, *clock)
        }
        Role::Consume { bus, core, clock } => consume(bus, *core, *clock),
        Role::Idle { bus, core, poll_ms } => idle(bus, *core, *poll_ms),
        Role::Produce(p) => crate::mp::child_produce(p),
        #[cfg(feature = "peers")]
        Role::IoxEcho(a) => crate::peer::child_echo(a),
        #[cfg(feature = "peers")]
        Role::IoxIdle(a) => crate::peer::child_idle(a),
        #[cfg(feature = "peers")]
        Role::IoxConsume(a) => crate::peer::child_consume(a),
    }
}

/// Message kinds in word 1 of fan-out and throughput messages (word 0 is the send stamp; a stamp
/// of 0 is the stop message).
pub const PHASE_LATENCY: u64 = 1;
pub const PHASE_RATE: u64 = 2;
/// Answered with a `drained` line: everything before it was read.
pub const PHASE_BARRIER: u64 = 3;

pub fn phase_of(bytes: &[u8]) -> u64 {
    bytes
        .get(8..16)
        .map_or(0, |b| u64::from_ne_bytes(b.try_into().expect("8 bytes")))
}

/// What a consumer saw.
#[derive(Debug, Serialize, Deserialize)]
pub struct Consumed {
    pub latency: TickSummary,
    pub received: u64,
    pub lost: u64,
}

/// What a consumer's next poll found.
pub enum Next {
    /// A message: its send stamp (0: the stop message) and phase.
    Message {
        stamp: u64,
        phase: u64,
    },
    /// This many messages were skipped.
    Lost(u64),
    Empty,
}

/// A consumer's end of some transport.
pub trait Source {
    fn next(&mut self) -> Next;
    /// Whether the producer has left and nothing is left to read (checked now and then, for a stop
    /// message lost in a lap).
    fn finished(&self) -> bool;
}

/// Reads until the stop message: latencies of phase-1 messages, counts of the rest, a `drained`
/// line for each barrier.
pub fn consume_loop(src: &mut impl Source, clock: ClockKind) -> Consumed {
    let mut h = histogram();
    let (mut received, mut lost) = (0u64, 0u64);
    let mut empty: u32 = 0;
    loop {
        match src.next() {
            Next::Message { stamp: 0, .. } => break,
            Next::Message { stamp, phase } => {
                let now = clock.now();
                match phase {
                    PHASE_BARRIER => {
                        say("drained");
                        continue;
                    }
                    PHASE_LATENCY => h.saturating_record(now.saturating_sub(stamp)),
                    _ => {}
                }
                received += 1;
            }
            Next::Lost(l) => lost += l,
            Next::Empty => {
                empty = empty.wrapping_add(1);
                if empty.is_multiple_of(1 << 16) && src.finished() {
                    break;
                }
                std::hint::spin_loop();
            }
        }
    }
    Consumed {
        latency: TickSummary::of(&h),
        received,
        lost,
    }
}

struct BusSource {
    bus: Bus,
    rx: shmbus::Subscriber,
}

impl Source for BusSource {
    #[inline]
    fn next(&mut self) -> Next {
        match self.rx.try_recv() {
            Recv::Message(m) => Next::Message {
                stamp: stamp_of(m.bytes()),
                phase: phase_of(m.bytes()),
            },
            Recv::Lapped { lost } => Next::Lost(lost),
            Recv::Empty | Recv::Closed => Next::Empty,
        }
    }

    fn finished(&self) -> bool {
        !self.bus.has_producers() && self.rx.next_seq() == self.bus.cursor()
    }
}

fn consume(name: &str, core: usize, clock: ClockKind) -> Result<(), String> {
    let bus = Bus::open_read_only(name).map_err(|e| format!("cannot open {name}: {e}"))?;
    let rx = bus.subscribe(Start::Next);
    let mut src = BusSource { bus, rx };
    sys::pin(core)?;
    say("ready");
    let out = consume_loop(&mut src, clock);
    say(&serde_json::to_string(&out).map_err(|e| e.to_string())?);
    Ok(())
}

fn idle(name: &str, core: usize, poll_ms: u64) -> Result<(), String> {
    let bus = Bus::open_read_only(name).map_err(|e| format!("cannot open {name}: {e}"))?;
    let mut rx = bus.subscribe(Start::Next);
    sys::pin(core)?;
    say("ready");
    let slots = bus.slots();
    loop {
        std::thread::sleep(Duration::from_millis(poll_ms));
        for _ in 0..=slots {
            if matches!(rx.try_recv(), Recv::Empty) {
                break;
            }
        }
        if !bus.has_producers() {
            return Ok(());
        }
    }
}
