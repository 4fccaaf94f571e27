//! The Rust side of the cross-language tests in `.ci/bindings-c.sh`: publishes, subscribes,
//! sends and receives the same numbered pattern as the C tests (`tests/common.h`), checking
//! every byte, and makes the typed segments that C can only meet, never create.
//!
//! ```sh
//! rust_peer bus-pub NAME N      # create bus NAME, publish messages 0..N, leave it
//! rust_peer bus-sub NAME N      # open bus NAME, read messages 0..N from the oldest, check each
//! rust_peer queue-send NAME N   # open queue NAME, send items 0..N
//! rust_peer queue-recv NAME N   # open queue NAME, receive items 0..N in order, check each
//! rust_peer typed NAME          # create NAME-bus ([u64; 2]), NAME-queue (u64), NAME-board (u32)
//! ```
//!
//! Each prints one line with the count and an FNV-1a checksum of every byte it handled, which
//! the script compares with the C side's; any mismatch exits with status 1.

use std::process::ExitCode;
use std::time::Duration;

use shmbus::{Board, BoardBuilder, Bus, BusBuilder, Queue, QueueBuilder, Recv, Start};

/// How long any single receive may wait before the peer gives up (a hung partner, never a
/// pace: each wait ends as soon as the message is there).
const PATIENCE: Duration = Duration::from_secs(20);

/// Message `i` of the pattern: its index in the first 8 bytes (little endian), then
/// `(i * 31 + j * 7) mod 256` at byte `j`; `8 + (i * 13) mod 97` bytes long. The same as
/// `pattern()` in tests/common.h.
fn pattern(i: u64) -> Vec<u8> {
    let len = 8 + (i * 13 % 97) as usize;
    let mut m = vec![0u8; len];
    m[..8].copy_from_slice(&i.to_le_bytes());
    for (j, b) in m.iter_mut().enumerate().skip(8) {
        *b = (i.wrapping_mul(31).wrapping_add(j as u64 * 7) & 0xff) as u8;
    }
    m
}

/// FNV-1a over every byte handled, in order.
struct Checksum(u64);

impl Checksum {
    fn new() -> Self {
        Checksum(0xcbf2_9ce4_8422_2325)
    }
    fn add(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0 ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
        }
    }
}

fn check(i: u64, got: &[u8]) -> Result<(), String> {
    let want = pattern(i);
    if got != want.as_slice() {
        return Err(format!(
            "message {i}: got {} bytes {:02x?}, expected {} bytes {:02x?}",
            got.len(),
            &got[..got.len().min(16)],
            want.len(),
            &want[..16.min(want.len())]
        ));
    }
    Ok(())
}

fn bus_pub(name: &str, n: u64) -> Result<Checksum, String> {
    let bus = BusBuilder::new(name)
        .slots(n.next_power_of_two().max(8))
        .create()
        .map_err(|e| e.to_string())?;
    let mut publisher = bus.publisher().map_err(|e| e.to_string())?;
    let mut sum = Checksum::new();
    for i in 0..n {
        let m = pattern(i);
        let seq = publisher.publish_bytes(&m).map_err(|e| e.to_string())?;
        if seq != Some(i) {
            return Err(format!("message {i} got sequence {seq:?}"));
        }
        sum.add(&m);
    }
    Ok(sum)
}

fn bus_sub(name: &str, n: u64) -> Result<Checksum, String> {
    let bus = Bus::open_read_only(name).map_err(|e| e.to_string())?;
    let mut sub = bus.subscribe(Start::Oldest);
    let mut sum = Checksum::new();
    for i in 0..n {
        match sub.recv_timeout(PATIENCE) {
            Recv::Message(m) if m.seq() == i => {
                check(i, m.bytes())?;
                sum.add(m.bytes());
            }
            Recv::Message(m) => return Err(format!("expected seq {i}, got {}", m.seq())),
            other => return Err(format!("expected message {i}, got {other:?}")),
        }
    }
    match sub.try_recv() {
        Recv::Empty | Recv::Closed => Ok(sum),
        other => Err(format!(
            "expected nothing after {n} messages, got {other:?}"
        )),
    }
}

fn queue_send(name: &str, n: u64) -> Result<Checksum, String> {
    let queue = Queue::open(name).map_err(|e| e.to_string())?;
    let mut tx = queue.sender().map_err(|e| e.to_string())?;
    let mut sum = Checksum::new();
    for i in 0..n {
        let m = pattern(i);
        tx.send_timeout(&m, PATIENCE)
            .map_err(|e| format!("item {i}: {e:?}"))?;
        sum.add(&m);
    }
    Ok(sum)
}

fn queue_recv(name: &str, n: u64) -> Result<Checksum, String> {
    let queue = Queue::open(name).map_err(|e| e.to_string())?;
    let mut rx = queue.receiver().map_err(|e| e.to_string())?;
    let mut sum = Checksum::new();
    for i in 0..n {
        let Some(item) = rx.recv_timeout(PATIENCE) else {
            return Err(format!(
                "item {i}: nothing came (closed: {})",
                rx.is_closed()
            ));
        };
        check(i, item)?;
        sum.add(item);
    }
    Ok(sum)
}

fn typed(name: &str) -> Result<Checksum, String> {
    let e = |e: shmbus::Error| e.to_string();
    let bus: Bus<[u64; 2]> = BusBuilder::new(&format!("{name}-bus"))
        .message_type::<[u64; 2]>()
        .type_name("Pair")
        .slots(8)
        .create()
        .map_err(e)?;
    let queue: Queue<u64> = QueueBuilder::new(&format!("{name}-queue"))
        .item_type::<u64>()
        .capacity(8)
        .create()
        .map_err(e)?;
    let board: Board<u32> = BoardBuilder::new(&format!("{name}-board"))
        .value_type::<u32>()
        .cells(2)
        .create()
        .map_err(e)?;
    drop((bus, queue, board));
    Ok(Checksum::new())
}

fn run(args: &[String]) -> Result<String, String> {
    let count = |s: Option<&String>| -> Result<u64, String> {
        s.ok_or("missing count")?
            .parse()
            .map_err(|e| format!("bad count: {e}"))
    };
    let (cmd, name) = match args {
        [cmd, name, ..] => (cmd.as_str(), name.as_str()),
        _ => return Err("usage: rust_peer COMMAND NAME [N]".into()),
    };
    let n = || count(args.get(2));
    let sum = match cmd {
        "bus-pub" => bus_pub(name, n()?)?,
        "bus-sub" => bus_sub(name, n()?)?,
        "queue-send" => queue_send(name, n()?)?,
        "queue-recv" => queue_recv(name, n()?)?,
        "typed" => typed(name)?,
        other => return Err(format!("unknown command {other:?}")),
    };
    Ok(format!("{cmd} {name}: checksum {:016x}", sum.0))
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match run(&args) {
        Ok(line) => {
            println!("{line}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("rust_peer: {e}");
            ExitCode::FAILURE
        }
    }
}
