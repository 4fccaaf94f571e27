//! An epoll loop that waits on a subscriber's readiness descriptor next to other descriptors
//! (here a timer): this program creates a bus, starts a publisher thread that publishes a few
//! messages and then lets go of the bus, and receives them from the loop until the bus closes.
//!
//! ```sh
//! cargo run --example epoll_loop
//! ```
//!
//! The pattern: register the descriptor for `EPOLLIN`; when it is readable, call `try_recv`
//! until it returns `Empty` (that receive re-arms the descriptor, so nothing published in between
//! is missed), then go back to `epoll_wait`.

use std::os::fd::AsFd;
use std::time::Duration;

use nix::sys::epoll::{Epoll, EpollCreateFlags, EpollEvent, EpollFlags, EpollTimeout};
use nix::sys::time::TimeSpec;
use nix::sys::timerfd::{ClockId, Expiration, TimerFd, TimerFlags, TimerSetTimeFlags};
use shmbus::{Bus, BusBuilder, Recv, Start};

const BUS: u64 = 1;
const TIMER: u64 = 2;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let name = format!("example-epoll-{}", std::process::id());
    let bus = BusBuilder::new(&name).create()?;
    let result = run(&bus);
    Bus::remove(&name)?;
    result
}

fn run(bus: &Bus) -> Result<(), Box<dyn std::error::Error>> {
    let mut rx = bus.subscribe(Start::Next).into_readiness()?;
    let mut tx = bus.publisher()?;
    let publisher = std::thread::spawn(move || {
        for i in 0..5u32 {
            std::thread::sleep(Duration::from_millis(30));
            tx.publish_bytes(format!("reading {i}").as_bytes())
                .expect("fits the slot");
        }
        // Dropping the publisher leaves the bus without a producer: the loop sees it closed.
    });

    // A periodic timer, to show the bus beside other event sources.
    let timer = TimerFd::new(ClockId::CLOCK_MONOTONIC, TimerFlags::TFD_CLOEXEC)?;
    timer.set(
        Expiration::Interval(TimeSpec::from_duration(Duration::from_millis(50))),
        TimerSetTimeFlags::empty(),
    )?;

    let epoll = Epoll::new(EpollCreateFlags::EPOLL_CLOEXEC)?;
    epoll.add(rx.as_fd(), EpollEvent::new(EpollFlags::EPOLLIN, BUS))?;
    epoll.add(timer.as_fd(), EpollEvent::new(EpollFlags::EPOLLIN, TIMER))?;
    // The first receive arms the descriptor (or returns what is already there).
    let mut events = [EpollEvent::empty(); 4];
    let mut drain = true;
    loop {
        if drain {
            loop {
                match rx.try_recv() {
                    Recv::Message(m) => {
                        println!("#{}: {}", m.seq(), String::from_utf8_lossy(m.bytes()))
                    }
                    Recv::Lapped { lost } => println!("fell behind: {lost} messages lost"),
                    Recv::Closed => {
                        println!("no producer left: done");
                        publisher.join().expect("publisher thread");
                        return Ok(());
                    }
                    // Nothing more: the descriptor is armed again.
                    Recv::Empty => break,
                }
            }
        }
        let n = epoll.wait(&mut events, EpollTimeout::NONE)?;
        drain = false;
        for ev in &events[..n] {
            match ev.data() {
                BUS => drain = true,
                TIMER => {
                    timer.wait()?;
                    println!("tick");
                }
                _ => {}
            }
        }
    }
}
