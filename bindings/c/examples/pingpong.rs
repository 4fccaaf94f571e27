//! Ping-pong latency through the Rust API, the twin of `bindings/c/bench/pingpong.c` (the same
//! loop, buses, pinning and clock), so that `bindings/c/bench/latency.sh` can give the cost of
//! the C boundary as a ratio measured in the same run.
//!
//! ```sh
//! pingpong NAME PAYLOAD ITERS          # prints "rust PAYLOAD: one-way p50 N ns, p99 N ns"
//! pingpong --rate NAME PAYLOAD COUNT   # prints "rust PAYLOAD: publish N ns" (no subscriber)
//! ```

use std::process::{Command, ExitCode};
use std::time::Instant;

use shmbus::{Bus, BusBuilder, Publisher, Recv, Start, Subscriber};

const STOP: u64 = u64::MAX;

fn pin(core: usize) {
    // SAFETY: a zeroed cpu_set_t is the empty set; CPU_SET writes inside it; the call reads it.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(core, &mut set);
        // Best effort, as the C twin.
        libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set);
    }
}

/// Spins until a message arrives; returns its first word.
fn wait_word(sub: &mut Subscriber) -> u64 {
    loop {
        if let Recv::Message(m) = sub.try_recv() {
            let mut w = [0u8; 8];
            w.copy_from_slice(&m.bytes()[..8]);
            return u64::from_ne_bytes(w);
        }
    }
}

fn publish(p: &mut Publisher, buf: &[u8]) -> Result<(), String> {
    p.publish_bytes(buf).map_err(|e| e.to_string())?;
    Ok(())
}

fn echo(base: &str, payload: usize) -> Result<(), String> {
    pin(1);
    let e = |e: shmbus::Error| e.to_string();
    let a = Bus::open(&format!("{base}-ping")).map_err(e)?;
    let b = Bus::open(&format!("{base}-pong")).map_err(e)?;
    let mut sub = a.subscribe(Start::Next);
    let mut publisher = b.bytes_publisher().map_err(e)?;
    let mut buf = vec![0u8; payload];
    publish(&mut publisher, &buf)?; // word 0: ready
    loop {
        let w = wait_word(&mut sub);
        if w == STOP {
            return Ok(());
        }
        buf[..8].copy_from_slice(&w.to_ne_bytes());
        publish(&mut publisher, &buf)?;
    }
}

fn run(base: &str, payload: usize, iters: u64) -> Result<(), String> {
    let e = |e: shmbus::Error| e.to_string();
    let (ping, pong) = (format!("{base}-ping"), format!("{base}-pong"));
    let a = BusBuilder::new(&ping)
        .slots(1024)
        .capacity(4096)
        .create()
        .map_err(e)?;
    let b = BusBuilder::new(&pong)
        .slots(1024)
        .capacity(4096)
        .create()
        .map_err(e)?;
    let mut publisher = a.bytes_publisher().map_err(e)?;
    let mut sub = b.subscribe(Start::Next);
    // PINGPONG_ECHO: another echo program taking the same arguments (the C twin).
    let exe = match std::env::var_os("PINGPONG_ECHO") {
        Some(path) => path.into(),
        None => std::env::current_exe().map_err(|e| e.to_string())?,
    };
    let mut child = Command::new(exe)
        .args(["--echo", base, &payload.to_string()])
        .spawn()
        .map_err(|e| e.to_string())?;
    pin(0);
    if wait_word(&mut sub) != 0 {
        return Err("the echo's first message is not its ready word".into());
    }
    let warmup = (iters / 10).max(100);
    let mut rtt = vec![0u64; iters as usize];
    let mut buf = vec![0u8; payload];
    let mut t = Instant::now();
    for i in 0..warmup + iters {
        let word = i + 1;
        buf[..8].copy_from_slice(&word.to_ne_bytes());
        publish(&mut publisher, &buf)?;
        if wait_word(&mut sub) != word {
            return Err(format!("wrong answer to {word}"));
        }
        let t2 = Instant::now();
        if i >= warmup {
            rtt[(i - warmup) as usize] = (t2 - t).as_nanos() as u64;
        }
        t = t2;
    }
    buf[..8].copy_from_slice(&STOP.to_ne_bytes());
    publish(&mut publisher, &buf)?;
    let status = child.wait().map_err(|e| e.to_string())?;
    rtt.sort_unstable();
    let n = rtt.len();
    println!(
        "rust {payload}: one-way p50 {} ns, p99 {} ns",
        rtt[n / 2] / 2,
        rtt[n * 99 / 100] / 2
    );
    let _ = Bus::remove(&ping);
    let _ = Bus::remove(&pong);
    if status.success() {
        Ok(())
    } else {
        Err(format!("the echo failed: {status}"))
    }
}

/// Publish rate: `count` messages of `payload` bytes into a bus of 1024 slots with no
/// subscriber, as fast as one producer can; the mean time per publish.
fn rate(base: &str, payload: usize, count: u64) -> Result<(), String> {
    let e = |e: shmbus::Error| e.to_string();
    let name = format!("{base}-rate");
    let bus = BusBuilder::new(&name)
        .slots(1024)
        .capacity(4096)
        .create()
        .map_err(e)?;
    let mut publisher = bus.bytes_publisher().map_err(e)?;
    pin(0);
    let mut buf = vec![0u8; payload];
    let t0 = Instant::now();
    for i in 0..count {
        buf[..8].copy_from_slice(&i.to_ne_bytes());
        publish(&mut publisher, &buf)?;
    }
    let per = t0.elapsed().as_nanos() as f64 / count as f64;
    println!("rust {payload}: publish {per:.1} ns");
    let _ = Bus::remove(&name);
    Ok(())
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.as_slice() {
        [flag, base, size] if flag == "--echo" => size
            .parse()
            .map_err(|e| format!("bad payload: {e}"))
            .and_then(|p| echo(base, p)),
        [flag, base, size, count] if flag == "--rate" => {
            match (size.parse::<usize>(), count.parse::<u64>()) {
                (Ok(p), Ok(n)) if (8..=4096).contains(&p) && n > 0 => rate(base, p, n),
                _ => Err("PAYLOAD is 8 to 4096 bytes, COUNT at least 1".into()),
            }
        }
        [base, size, iters] => match (size.parse::<usize>(), iters.parse::<u64>()) {
            (Ok(p), Ok(n)) if (8..=4096).contains(&p) && n > 0 => run(base, p, n),
            _ => Err("PAYLOAD is 8 to 4096 bytes, ITERS at least 1".into()),
        },
        _ => Err("usage: pingpong NAME PAYLOAD ITERS".into()),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("pingpong: {e}");
            ExitCode::FAILURE
        }
    }
}
