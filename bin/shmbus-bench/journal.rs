//! `shmbus-bench journal`: how fast a journal records, next to the sequential write bandwidth of
//! the same file system measured in the same run.
//!
//! The recorded figure is the appender alone (`JournalWriter::append_message`: the entry's atomic
//! word stores, the marker, and the file's growth), in one process; receiving from a bus is
//! measured by the other commands. The floor writes the same number of bytes to a file in the
//! same directory with plain `write(2)` calls of 1 MiB; both stay in the page cache (neither
//! syncs), so the ratio compares like with like.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

use serde::Serialize;
use shmbus::journal::{Journal, JournalShape};

/// Options of the journal benchmark.
#[derive(clap::Args, Debug, Clone)]
pub struct JournalArgs {
    /// Directory on the file system to measure (default: the system's temporary directory).
    #[arg(long, value_name = "DIR")]
    pub dir: Option<PathBuf>,
    /// File bytes written per case, in MiB (default 256; 16 with --quick).
    #[arg(long, value_name = "MIB")]
    pub mib: Option<u64>,
}

#[derive(Serialize)]
struct Floor {
    bytes: u64,
    seconds: f64,
    gb_per_s: f64,
}

#[derive(Serialize)]
struct Case {
    payload: usize,
    messages: u64,
    seconds: f64,
    msgs_per_s: f64,
    /// Payload bytes per second.
    payload_gb_per_s: f64,
    /// File bytes (entry headers and padding included) per second.
    file_gb_per_s: f64,
    /// `file_gb_per_s` over the floor's bandwidth.
    ratio_to_floor: f64,
}

#[derive(Serialize)]
struct JournalReport {
    dir: String,
    floor: Floor,
    cases: Vec<Case>,
}

/// Removes a file when dropped, also when a case fails.
struct Scratch(PathBuf);

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

fn scratch(dir: &Path, what: &str) -> Scratch {
    Scratch(dir.join(format!("shmbus-bench-{what}-{}", std::process::id())))
}

/// Sequential `write(2)` of `bytes` to a new file: the file system's bandwidth floor.
fn floor(dir: &Path, bytes: u64) -> Result<Floor, String> {
    let file = scratch(dir, "floor");
    let mut f = std::fs::File::create(&file.0).map_err(|e| format!("{}: {e}", file.0.display()))?;
    let buf = vec![0x5au8; 1 << 20];
    let t = Instant::now();
    let mut left = bytes;
    while left > 0 {
        let n = left.min(buf.len() as u64) as usize;
        f.write_all(&buf[..n]).map_err(|e| e.to_string())?;
        left -= n as u64;
    }
    let seconds = t.elapsed().as_secs_f64();
    Ok(Floor {
        bytes,
        seconds,
        gb_per_s: bytes as f64 / seconds / 1e9,
    })
}

/// Appends messages of `payload` bytes until the journal holds about `bytes`.
fn case(dir: &Path, payload: usize, bytes: u64, floor_gbps: f64) -> Result<Case, String> {
    let file = scratch(dir, &format!("journal-{payload}"));
    let shape = JournalShape {
        slots: 1024,
        capacity: payload as u64,
        mode: shmbus::ProducerMode::Single,
        message_type: shmbus::TypeInfo::raw(),
    };
    let entry = shmbus::journal::ENTRY_HEADER_BYTES + payload.next_multiple_of(8) as u64;
    let messages = (bytes / entry).max(1);
    let msg: Vec<u8> = (0..payload).map(|i| i as u8).collect();
    let t = Instant::now();
    let mut w = Journal::create(&file.0, &shape).map_err(|e| e.to_string())?;
    for seq in 0..messages {
        w.append_message(seq, seq, &msg)
            .map_err(|e| e.to_string())?;
    }
    drop(w);
    let seconds = t.elapsed().as_secs_f64();
    let file_gbps = (messages * entry) as f64 / seconds / 1e9;
    Ok(Case {
        payload,
        messages,
        seconds,
        msgs_per_s: messages as f64 / seconds,
        payload_gb_per_s: (messages * payload as u64) as f64 / seconds / 1e9,
        file_gb_per_s: file_gbps,
        ratio_to_floor: file_gbps / floor_gbps,
    })
}

/// Runs the floor, the cases (64 B and 4 KiB), and the floor again (the better floor counts).
pub fn run(args: &JournalArgs, quick: bool, json: bool) -> Result<(), String> {
    let dir = args.dir.clone().unwrap_or_else(std::env::temp_dir);
    let bytes = args.mib.unwrap_or(if quick { 16 } else { 256 }) << 20;
    let before = floor(&dir, bytes)?;
    let mut cases = Vec::new();
    for payload in [64, 4096] {
        cases.push(case(&dir, payload, bytes, before.gb_per_s)?);
    }
    let after = floor(&dir, bytes)?;
    let best = if after.gb_per_s > before.gb_per_s {
        after
    } else {
        before
    };
    for c in &mut cases {
        c.ratio_to_floor = c.file_gb_per_s / best.gb_per_s;
    }
    let report = JournalReport {
        dir: dir.display().to_string(),
        floor: best,
        cases,
    };
    let mut out = std::io::stdout().lock();
    let r = if json {
        writeln!(
            out,
            "{}",
            serde_json::to_string(&report).map_err(|e| e.to_string())?
        )
    } else {
        print_table(&mut out, &report)
    };
    r.map_err(|e| e.to_string())
}

fn print_table(out: &mut impl Write, r: &JournalReport) -> std::io::Result<()> {
    writeln!(
        out,
        "journal record throughput in {} (floor: sequential write(2) of {} MiB, {:.2} GB/s)",
        r.dir,
        r.floor.bytes >> 20,
        r.floor.gb_per_s
    )?;
    writeln!(
        out,
        "{:>8} {:>12} {:>14} {:>14} {:>12}",
        "payload", "msgs/s", "payload GB/s", "file GB/s", "x floor"
    )?;
    for c in &r.cases {
        writeln!(
            out,
            "{:>8} {:>12.0} {:>14.3} {:>14.3} {:>12.2}",
            c.payload, c.msgs_per_s, c.payload_gb_per_s, c.file_gb_per_s, c.ratio_to_floor
        )?;
    }
    Ok(())
}
