//! Two processes over one bus: this program creates a typed bus, starts a copy of itself as the
//! subscriber, publishes ten readings and lets go of the bus; the subscriber prints what it
//! receives until it learns that no producer is left.
//!
//! ```sh
//! cargo run --example two_processes
//! ```
//!
//! The subscriber is the same program started with `subscribe NAME`; you can also run that part
//! by hand against a bus someone else publishes to.
//!
//! The message type derives `Pod` through shmbus's re-export of `bytemuck`, so a crate that
//! depends on `shmbus` alone builds this file as it is.

use std::process::{Command, ExitCode};

use shmbus::bytemuck::{Pod, Zeroable};
use shmbus::{Bus, BusBuilder, Recv, Start};

/// The message: plain old data, with the padding spelled out.
#[derive(Clone, Copy, Debug, Pod, Zeroable)]
#[bytemuck(crate = "shmbus::bytemuck")]
#[repr(C)]
struct Reading {
    sensor: u32,
    _pad: u32,
    celsius: f64,
}

/// Both processes name the type the same way, so they agree on it whatever the compiler.
const TYPE_NAME: &str = "example::Reading";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    let result = match args.get(1).map(String::as_str) {
        None => publish(),
        Some("subscribe") if args.len() == 3 => subscribe(&args[2]),
        Some(_) => {
            eprintln!("usage: two_processes [subscribe NAME]");
            return ExitCode::from(2);
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("two_processes: error: {e}");
            ExitCode::FAILURE
        }
    }
}

/// The first process: creates the bus, starts the subscriber, publishes, then removes the bus.
fn publish() -> Result<(), Box<dyn std::error::Error>> {
    let name = format!("example-two-processes-{}", std::process::id());
    let bus = BusBuilder::new(&name)
        .message_type::<Reading>()
        .type_name(TYPE_NAME)
        .slots(64)
        .create()?;
    let result = publish_to(&bus);
    // The segment stays in /dev/shm until removed, also when something above failed.
    Bus::remove(&name)?;
    result
}

fn publish_to(bus: &Bus<Reading>) -> Result<(), Box<dyn std::error::Error>> {
    // Attached before the subscriber starts, so that it never finds the bus without a producer.
    let mut publisher = bus.publisher()?;
    let mut subscriber = Command::new(std::env::current_exe()?)
        .args(["subscribe", bus.name()])
        .spawn()?;
    for i in 0..10u32 {
        publisher.publish(&Reading {
            sensor: i % 3,
            _pad: 0,
            celsius: 20.0 + f64::from(i) / 4.0,
        });
    }
    println!("publisher: sent 10 readings on bus {}", bus.name());
    // With its only producer gone, the subscriber's blocking receive reports `Closed` once it
    // has read everything.
    drop(publisher);
    let status = subscriber.wait()?;
    if !status.success() {
        return Err(format!("the subscriber ended with {status}").into());
    }
    Ok(())
}

/// The second process: opens the bus read-only and prints every reading.
fn subscribe(name: &str) -> Result<(), Box<dyn std::error::Error>> {
    let bus = BusBuilder::new(name)
        .message_type::<Reading>()
        .type_name(TYPE_NAME)
        .read_only()
        .open()?;
    // From the oldest message in the ring: the publisher may have started before we attached.
    let mut rx = bus.subscribe(Start::Oldest);
    loop {
        match rx.recv() {
            Recv::Message(m) => println!("subscriber: #{} {:?}", m.seq(), *m),
            Recv::Lapped { lost } => println!("subscriber: fell behind, lost {lost} readings"),
            Recv::Empty => {}
            Recv::Closed => break,
        }
    }
    println!(
        "subscriber: no producer left, {} readings received",
        rx.stats().received
    );
    Ok(())
}
