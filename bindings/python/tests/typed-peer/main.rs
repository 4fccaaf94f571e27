//! The Rust side of the Python tests of typed buses, over the `Tick` type that
//! `tests/test_typed.py` mirrors with a `ctypes.Structure` and a numpy dtype:
//!
//! - `typed-peer publish NAME N`: creates bus NAME for `Tick` (type name "Tick") and publishes
//!   N ticks, tick i being `{ price: i + 0.5, qty: 10 * i, side: i % 2 }`;
//! - `typed-peer read NAME N`: opens bus NAME for `Tick` (so the fingerprint is checked) and
//!   prints the first N ticks from the oldest, one `seq price qty side` line each.

use std::process::ExitCode;
use std::time::Duration;

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
    let [cmd, name, n] = args else {
        return Err("usage: typed-peer publish|read NAME N".into());
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

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("typed-peer: {e}");
            ExitCode::FAILURE
        }
    }
}
