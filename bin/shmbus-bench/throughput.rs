//! Throughput: one producer (this process) publishing flat out to consumer processes, for each
//! payload size and ring size; messages and bytes per second, and what each consumer lost.

use crate::ctx::Ctx;
use crate::engine::publish::{self, Load, Transport};
use crate::report::Report;
use crate::sys::BusGuard;

pub fn run_one(
    ctx: &Ctx,
    report: &mut Report,
    payload: usize,
    slots: u64,
    consumers: usize,
    producer: usize,
    messages: u64,
) -> Result<(), String> {
    let load = Load {
        payload: payload.max(8),
        slots,
        paced: 0,
        gap_ns: 0,
        flat: messages,
    };
    let guard = BusGuard::new("throughput");
    let (_bus, tx) = crate::fanout::create(&guard, &load)?;
    let role = ["consume".into(), "--bus".into(), guard.name().into()];
    let t = Transport {
        name: "shmbus",
        role: &role,
        reports_losses: true,
    };
    let row = publish::throughput(ctx, &t, consumers, producer, &load, tx)?;
    report.throughput.push(row);
    Ok(())
}
