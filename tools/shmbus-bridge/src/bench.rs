//! `shmbus-bridge bench` (hidden).

use clap::Args;

use crate::error::BridgeError;

/// Flags of `bench`.
#[derive(Args, Debug)]
pub struct BenchArgs {}

/// Runs the bench.
pub fn run(_args: &BenchArgs) -> Result<(), BridgeError> {
    Ok(())
}
