//! The protocol between this process and the children it starts (the leaf of the bench: it
//! imports nothing above the statistics).
//!
//! In a measured message, word 0 (bytes 0..8) is the send stamp and word 1 (bytes 8..16) the
//! phase. A stamp of 0 is the stop message. On its stdout a child says `ready` once it is pinned
//! and attached, `drained` for each barrier, and ends with one JSON line of results when it has
//! any.

use std::io::Write;

use serde::{Deserialize, Serialize};

use crate::stats::TickSummary;

/// A stamp of 0 tells an echo or a consumer to stop (real stamps are never 0).
pub const STOP: u64 = 0;

/// Message kinds in word 1 of fan-out and throughput messages: paced messages whose latency is
/// recorded, and messages published flat out, only counted.
pub const PHASE_LATENCY: u64 = 1;
pub const PHASE_RATE: u64 = 2;
/// Answered with a `drained` line: everything before it was read.
pub const PHASE_BARRIER: u64 = 3;

/// The send stamp of a message (word 0); a message shorter than a word reads as [`STOP`].
pub fn stamp_of(bytes: &[u8]) -> u64 {
    bytes
        .get(..8)
        .map_or(STOP, |b| u64::from_ne_bytes(b.try_into().expect("8 bytes")))
}

/// The phase of a message (word 1); 0 if it has none.
pub fn phase_of(bytes: &[u8]) -> u64 {
    bytes
        .get(8..16)
        .map_or(0, |b| u64::from_ne_bytes(b.try_into().expect("8 bytes")))
}

/// Writes one line to stdout, where the parent reads it.
pub fn say(line: &str) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}

/// Says a child's results: the last line it writes, one JSON object.
pub fn say_result(result: &impl Serialize) -> Result<(), String> {
    say(&serde_json::to_string(result).map_err(|e| e.to_string())?);
    Ok(())
}

/// What a consumer saw.
#[derive(Debug, Serialize, Deserialize)]
pub struct Consumed {
    pub latency: TickSummary,
    pub received: u64,
    pub lost: u64,
}
