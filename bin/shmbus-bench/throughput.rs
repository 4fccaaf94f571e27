//! Throughput: one producer (this process) publishing flat out to consumer processes, for each
//! payload size and ring size; messages and bytes per second, and what each consumer lost.

use shmbus::BusBuilder;

use crate::fanout::{consumer_cores, publish_flat, start_consumers, stop_consumers};
use crate::report::{ConsumerCount, Report, ThroughputRow};
use crate::sys::{self, BusGuard};
use crate::Ctx;

pub fn run_one(
    ctx: &Ctx,
    report: &mut Report,
    payload: usize,
    slots: u64,
    consumers: usize,
    producer: usize,
    messages: u64,
) -> Result<(), String> {
    let payload = payload.max(8);
    let guard = BusGuard::new("throughput");
    let bus = BusBuilder::new(guard.name())
        .slots(slots)
        .capacity(payload)
        .create()
        .map_err(|e| format!("cannot create bus {}: {e}", guard.name()))?;
    let mut tx = bus
        .publisher()
        .map_err(|e| format!("cannot publish on {}: {e}", guard.name()))?;
    let cores = consumer_cores(ctx, producer, consumers);
    let mut peers = start_consumers(ctx, guard.name(), &cores)?;
    sys::pin(producer)?;
    let mut buf = vec![0u8; payload];
    let flat = publish_flat(ctx, &mut tx, &mut buf, messages)?;
    let results = stop_consumers(tx, &mut buf, &mut peers)?;
    let (rate, secs) = (flat.rate(), flat.secs.max(1e-12));
    report.throughput.push(ThroughputRow {
        transport: "shmbus",
        payload,
        slots,
        messages: flat.sent,
        seconds: secs,
        msgs_per_s: rate,
        gb_per_s: rate * payload as f64 / 1e9,
        per_consumer: results
            .iter()
            .zip(&cores)
            .map(|(r, &core)| ConsumerCount {
                core,
                received: r.received,
                lost: r.lost,
                msgs_per_s: r.received as f64 / secs,
            })
            .collect(),
    });
    Ok(())
}
