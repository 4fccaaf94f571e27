//! A consumer child's side of fan-out and throughput: read until the stop message, recording the
//! latency of paced messages and counting the rest.

use crate::clock::ClockKind;
use crate::proto::{phase_of, say, say_result, stamp_of, Consumed, PHASE_BARRIER, PHASE_LATENCY};
use crate::stats::{histogram, TickSummary};
use crate::sys;

/// The arguments of a consumer child of a named segment.
#[derive(clap::Args, Debug)]
pub struct ConsumerArgs {
    #[arg(long)]
    pub bus: String,
    #[arg(long)]
    pub core: usize,
    #[arg(long, value_enum)]
    pub clock: ClockKind,
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

impl Next {
    /// The message `bytes`, by its stamp and phase.
    #[inline]
    pub fn message(bytes: &[u8]) -> Next {
        Next::Message {
            stamp: stamp_of(bytes),
            phase: phase_of(bytes),
        }
    }
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

/// The whole life of a consumer child once attached: pin to `core`, say `ready`, consume, say
/// the result.
pub fn serve(src: &mut impl Source, core: usize, clock: ClockKind) -> Result<(), String> {
    sys::pin(core)?;
    say("ready");
    let out = consume_loop(src, clock);
    say_result(&out)
}
