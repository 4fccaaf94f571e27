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
//!   NAME as fast as it can, then prints the nanoseconds per publish;
//! - `rust-peer echo PING PONG N`: publishes every message of bus PING again on bus PONG, N
//!   times; `rust-peer ping PING PONG N SIZE` times N round trips through it (Rust's own
//!   latency beside Python's in bench.py).

use std::io::Write;
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

const USAGE: &str = "usage: rust-peer publish|read NAME N | rate|flood NAME N SIZE | \
                     echo PING PONG N | ping PING PONG N SIZE";

fn run(args: &[String]) -> Result<(), String> {
    let num = |s: &String, what: &str| s.parse::<u32>().map_err(|e| format!("{what}: {e}"));
    let size = |s: &String| s.parse::<usize>().map_err(|e| format!("SIZE: {e}"));
    match args {
        [c, name, n] if c == "publish" || c == "read" => ticks(c, name, num(n, "N")?),
        [c, name, n, sz] if c == "rate" => rate(name, num(n, "N")?, size(sz)?),
        [c, name, n, sz] if c == "flood" => flood(name, num(n, "N")?, size(sz)?),
        [c, a, b, n] if c == "echo" => echo(a, b, num(n, "N")?),
        [c, a, b, n, sz] if c == "ping" => ping(a, b, num(n, "N")?, size(sz)?),
        _ => Err(USAGE.into()),
    }
}

/// `publish` and `read` of `Tick`s.
fn ticks(cmd: &str, name: &str, n: u32) -> Result<(), String> {
    let builder = BusBuilder::new(name)
        .message_type::<Tick>()
        .type_name("Tick");
    match cmd {
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
        _ => Err(USAGE.into()),
    }
}

/// Receives every message of bus `ping` and publishes it again on bus `pong`, `n` times,
/// spinning (no sleep) so that the round trip measures the buses, not the scheduler. Prints
/// "ready" once subscribed.
fn echo(ping: &str, pong: &str, n: u32) -> Result<(), String> {
    let mut rx = shmbus::Bus::open(ping)
        .map_err(|e| e.to_string())?
        .subscriber();
    let out = shmbus::Bus::open(pong).map_err(|e| e.to_string())?;
    let mut tx = out.publisher().map_err(|e| e.to_string())?;
    println!("ready");
    std::io::stdout().flush().map_err(|e| e.to_string())?;
    let mut echoed = 0;
    while echoed < n {
        match rx.try_recv() {
            Recv::Message(m) => {
                tx.publish_bytes(m.bytes()).map_err(|e| e.to_string())?;
                echoed += 1;
            }
            Recv::Lapped { lost } => return Err(format!("echo lapped: {lost} lost")),
            _ => std::hint::spin_loop(),
        }
    }
    Ok(())
}

/// Rust's side of bench.py's latency figure: `n` round trips of a `size`-byte message through
/// a running `echo`, spinning; prints the one-way time (half the round trip) at p50 and p99,
/// in ns.
fn ping(ping: &str, pong: &str, n: u32, size: usize) -> Result<(), String> {
    let mut rx = shmbus::Bus::open(pong)
        .map_err(|e| e.to_string())?
        .subscriber();
    let out = shmbus::Bus::open(ping).map_err(|e| e.to_string())?;
    let mut tx = out.publisher().map_err(|e| e.to_string())?;
    let msg = vec![7u8; size];
    let mut one_way = Vec::with_capacity(n as usize);
    for _ in 0..n {
        let start = Instant::now();
        tx.publish_bytes(&msg).map_err(|e| e.to_string())?;
        loop {
            match rx.try_recv() {
                Recv::Message(_) => break,
                Recv::Lapped { lost } => return Err(format!("ping lapped: {lost} lost")),
                _ => std::hint::spin_loop(),
            }
        }
        one_way.push(start.elapsed().as_nanos() as u64 / 2);
    }
    one_way.sort_unstable();
    let at = |q: f64| one_way[((one_way.len() - 1) as f64 * q) as usize];
    println!("{} {}", at(0.5), at(0.99));
    Ok(())
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
