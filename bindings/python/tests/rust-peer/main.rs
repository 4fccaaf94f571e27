//! The Rust side of the Python tests of typed buses, over the `Tick` type that
//! `tests/test_typed.py` mirrors with a `ctypes.Structure` and a numpy dtype, and of
//! `bench.py`:
//!
//! - `rust-peer publish NAME N`: creates bus NAME for `Tick` (type name "Tick") and publishes
//!   N ticks, tick i being `{ price: i + 0.5, qty: 10 * i, side: i % 2 }`;
//! - `rust-peer read NAME N`: opens bus NAME for `Tick` (so the fingerprint is checked) and
//!   prints the first N ticks from the oldest, one `seq price qty side` line each;
//! - `rust-peer rate NAME N SIZE`: on a new raw bus NAME, publishes N messages of SIZE bytes
//!   and receives each with `try_recv` in the same thread (what bench.py times in Python), then
//!   prints the nanoseconds per publish alone and per publish + receive, and removes the bus;
//! - `rust-peer flood NAME N SIZE`: publishes N messages of SIZE bytes to the existing raw bus
//!   NAME as fast as it can, then prints the nanoseconds per publish.

use std::process::ExitCode;
use std::time::{Duration, Instant};

use shmbus::bytemuck::{Pod, Zeroable};
use shmbus::{BusBuilder, Recv, Start};

#[derive(Clone, Copy, Pod, Zeroable)]
#[bytemuck(crate = "shmbus::bytemuck")]
#[repr(C)]
struct Tick {
    price: f64,
    qty: u32,
    side: u8,
    _pad: [u8; 3],
}

fn run(args: &[String]) -> Result<(), String> {
    if let [cmd, name, n, size] = args {
        let n = n.parse().map_err(|e| format!("N: {e}"))?;
        let size = size.parse().map_err(|e| format!("SIZE: {e}"))?;
        match cmd.as_str() {
            "rate" => return rate(name, n, size),
            "flood" => return flood(name, n, size),
            _ => {}
        }
    }
    let [cmd, name, n] = args else {
        return Err(
            "usage: rust-peer publish|read NAME N, or rust-peer rate|flood NAME N SIZE".into(),
        );
    };
    let n: u32 = n.parse().map_err(|e| format!("N: {e}"))?;
    let builder = BusBuilder::new(name)
        .message_type::<Tick>()
        .type_name("Tick");
    match cmd.as_str() {
        "publish" => {
            let bus = builder.slots(1024).create().map_err(|e| e.to_string())?;
            let mut tx = bus.publisher().map_err(|e| e.to_string())?;
            for i in 0..n {
                tx.publish(&Tick {
                    price: f64::from(i) + 0.5,
                    qty: 10 * i,
                    side: (i % 2) as u8,
                    _pad: [0; 3],
                });
            }
            Ok(())
        }
        "read" => {
            let bus = builder.open().map_err(|e| e.to_string())?;
            let mut rx = bus.subscribe(Start::Oldest);
            for _ in 0..n {
                match rx.recv_timeout(Duration::from_secs(30)) {
                    Recv::Message(m) => {
                        println!("{} {} {} {}", m.seq(), m.price, m.qty, m.side);
                    }
                    other => return Err(format!("expected a tick, got {other:?}")),
                }
            }
            Ok(())
        }
        other => Err(format!("unknown command {other:?}: publish or read")),
    }
}

/// The loops bench.py runs in Python, in Rust: prints `publish_ns publish_recv_ns`, the
/// nanoseconds per message of publishing alone and of publishing then receiving each.
fn rate(name: &str, n: u32, size: usize) -> Result<(), String> {
    let bus = BusBuilder::new(name)
        .slots(1024)
        .capacity(size.max(8))
        .create()
        .map_err(|e| e.to_string())?;
    let result = rate_on(&bus, n, size);
    shmbus::Bus::remove(name).map_err(|e| e.to_string())?;
    let (publish, both) = result?;
    let per = |d: Duration| d.as_nanos() as f64 / f64::from(n.max(1));
    println!("{:.1} {:.1}", per(publish), per(both));
    Ok(())
}

fn rate_on(bus: &shmbus::Bus, n: u32, size: usize) -> Result<(Duration, Duration), String> {
    let mut tx = bus.publisher().map_err(|e| e.to_string())?;
    let msg = vec![7u8; size];
    let start = Instant::now();
    for _ in 0..n {
        std::hint::black_box(tx.publish_bytes(&msg).map_err(|e| e.to_string())?);
    }
    let publish = start.elapsed();
    // Made after the loop above, so that it starts at the next message.
    let mut rx = bus.subscriber();
    let start = Instant::now();
    for i in 0..n {
        tx.publish_bytes(&msg).map_err(|e| e.to_string())?;
        match rx.try_recv() {
            Recv::Message(m) => {
                std::hint::black_box(m.bytes());
            }
            other => return Err(format!("message {i}: expected it back, got {other:?}")),
        }
    }
    Ok((publish, start.elapsed()))
}

/// Publishes `n` messages of `size` bytes to bus `name` flat out: prints ns per publish.
fn flood(name: &str, n: u32, size: usize) -> Result<(), String> {
    let bus = shmbus::Bus::open(name).map_err(|e| e.to_string())?;
    let mut tx = bus.publisher().map_err(|e| e.to_string())?;
    let msg = vec![7u8; size];
    let start = Instant::now();
    for _ in 0..n {
        tx.publish_bytes(&msg).map_err(|e| e.to_string())?;
    }
    println!(
        "{:.1}",
        start.elapsed().as_nanos() as f64 / f64::from(n.max(1))
    );
    Ok(())
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("rust-peer: {e}");
            ExitCode::FAILURE
        }
    }
}
